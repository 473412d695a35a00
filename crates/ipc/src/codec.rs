//! postcard encoding with readable errors.
//!
//! postcard drops the message of a serde `custom` error (it keeps only "Serde Serialization
//! Error"); the types of this crate record theirs here first, so that the user sees why.

use std::cell::RefCell;

use multiproc_core::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

thread_local! {
    static DETAIL: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A serde error carrying `message`, remembered for [`encode_into`] / [`decode`].
pub(crate) fn custom<E: serde::ser::Error>(message: String) -> E {
    DETAIL.with(|d| *d.borrow_mut() = Some(message.clone()));
    E::custom(message)
}

/// A serde deserialization error carrying `message` (see [`custom`]).
pub(crate) fn custom_de<E: serde::de::Error>(message: String) -> E {
    DETAIL.with(|d| *d.borrow_mut() = Some(message.clone()));
    E::custom(message)
}

fn take_detail() -> Option<String> {
    DETAIL.with(|d| d.borrow_mut().take())
}

/// Appends the encoding of `value` to `buf` (cleared first) and returns it.
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, mut buf: Vec<u8>) -> Result<Vec<u8>> {
    buf.clear();
    take_detail();
    postcard::to_extend(value, buf).map_err(|e| {
        Error::Serialization(take_detail().unwrap_or_else(|| format!("encoding failed: {e}")))
    })
}

/// Decodes a `T` from exactly `bytes`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    take_detail();
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|e| {
        Error::Serialization(take_detail().unwrap_or_else(|| {
            format!(
                "decoding a {} failed: {e} (was a value of another type sent?)",
                std::any::type_name::<T>()
            )
        }))
    })?;
    if !rest.is_empty() {
        return Err(Error::Serialization(format!(
            "decoding a {} left {} bytes unread (was a value of another type sent?)",
            std::any::type_name::<T>(),
            rest.len()
        )));
    }
    Ok(value)
}
