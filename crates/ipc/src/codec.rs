//! This crate's errors around [`multiproc_process::codec`], the one codec of multiproc
//! (a fixed-width binary serde format, keeping serde's messages).

use multiproc_core::{Error, Result};
use multiproc_process::codec::{self, CodecError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Appends the encoding of `value` to `buf` (cleared first) and returns it: every vector of
/// plain numbers in it as one block ([`codec::is_block`]).
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, buf: Vec<u8>) -> Result<Vec<u8>> {
    encode_error(codec::encode_into(value, buf))
}

/// The codec's encoding error as this crate's.
fn encode_error(encoded: std::result::Result<Vec<u8>, CodecError>) -> Result<Vec<u8>> {
    encoded.map_err(|e| {
        Error::Serialization(if e.is_custom() {
            e.to_string()
        } else {
            format!("encoding failed: {e}")
        })
    })
}

/// Decodes a `T` from exactly `bytes`: every vector of plain numbers in one pass
/// ([`codec::is_block`]).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let wrong_type = |what: String| {
        format!(
            "decoding a {} {what} (was a value of another type sent?)",
            std::any::type_name::<T>()
        )
    };
    let (value, rest) = codec::take_from_bytes::<T>(bytes).map_err(|e: CodecError| {
        Error::Serialization(if e.is_custom() {
            e.to_string()
        } else {
            wrong_type(format!("failed: {e}"))
        })
    })?;
    if !rest.is_empty() {
        return Err(Error::Serialization(wrong_type(format!(
            "left {} bytes unread",
            rest.len()
        ))));
    }
    Ok(value)
}
