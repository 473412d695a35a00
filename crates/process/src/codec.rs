//! The one codec of multiproc: postcard, keeping serde's own error messages.
//!
//! Everything that crosses between processes — a pool's arguments, results and initializer,
//! a `Pipe`'s and a `Queue`'s values — is encoded and decoded here, with the descriptors it
//! owns collected and provided beside the bytes ([`multiproc_core::handoff`]).
//!
//! postcard is fast and compact, but its error type drops the message of a serde `custom`
//! error: a value whose `Deserialize` says "13 is unlucky" fails as "Serde Deserialization
//! Error". So the codec runs postcard through a thin adapter (`Keep`) whose error type
//! keeps the message: a `Serialize`/`Deserialize` of the value sees that error type, and where
//! the message must cross postcard's own error on the way out, it waits in a thread-local
//! until the adapter one level up takes it back. The adapter forwards every call of serde's
//! data model unchanged, so the bytes are postcard's.

use std::cell::RefCell;
use std::fmt;
use std::os::fd::OwnedFd;

use multiproc_core::handoff::{collect_fds, provide_fds};
use postcard::ser_flavors::Flavor;
use serde::de::{self, DeserializeOwned};
use serde::ser::{self, Serialize};

mod de_adapter;
mod ser_adapter;

/// Encoded bytes and the file descriptors that travel beside them (see
/// [`multiproc_core::handoff`]).
pub type Encoded = (Vec<u8>, Vec<OwnedFd>);

/// Why a value could not be encoded or decoded: the message of the value's own
/// `Serialize`/`Deserialize` (a serde `custom` error), or postcard's description of what was
/// wrong with the bytes.
///
/// One pointer wide, so that the `Result` of every element decoded stays as small as with
/// postcard's own one-byte error (a wider error made decoding measurably slower).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(Box<Detail>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Detail {
    message: String,
    custom: bool,
}

impl CodecError {
    #[cold]
    fn new(message: String, custom: bool) -> CodecError {
        CodecError(Box::new(Detail { message, custom }))
    }

    /// Whether the message is the value's own (a serde `custom` error) rather than
    /// postcard's.
    pub fn is_custom(&self) -> bool {
        self.0.custom
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for CodecError {}

impl ser::Error for CodecError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        CodecError::new(msg.to_string(), true)
    }
}

impl de::Error for CodecError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        CodecError::new(msg.to_string(), true)
    }
}

thread_local! {
    /// A [`CodecError`] on its way through postcard's error type, which cannot carry it.
    static IN_TRANSIT: RefCell<Option<CodecError>> = const { RefCell::new(None) };
}

/// Turns our error into postcard's (`E`), leaving the message in [`IN_TRANSIT`].
fn lower<E: fmt::Display + FromCustom>(e: CodecError) -> E {
    let out = E::from_custom(e.message());
    IN_TRANSIT.with(|t| *t.borrow_mut() = Some(e));
    out
}

/// Turns postcard's error back into ours: the message in transit if there is one, postcard's
/// own description otherwise.
fn lift<E: fmt::Display>(e: E) -> CodecError {
    IN_TRANSIT
        .with(|t| t.borrow_mut().take())
        .unwrap_or_else(|| CodecError::new(e.to_string(), false))
}

/// `custom` of either serde error trait, for [`lower`].
trait FromCustom {
    fn from_custom(message: &str) -> Self;
}

/// The adapter: a serializer, deserializer, visitor, access or seed of postcard's (`0`), seen
/// through [`CodecError`].
struct Keep<T>(T);

/// Starts an encoding or decoding: nothing from an earlier one is in transit.
fn fresh() {
    IN_TRANSIT.with(|t| t.borrow_mut().take());
}

/// Encodes `value` into postcard's output `flavor` and returns what it finalizes to.
pub fn encode_with<T: Serialize + ?Sized, F: Flavor>(
    value: &T,
    flavor: F,
) -> Result<F::Output, CodecError> {
    fresh();
    let mut serializer = postcard::Serializer { output: flavor };
    value.serialize(Keep(&mut serializer))?;
    serializer.output.finalize().map_err(lift)
}

/// Encodes `value` into `buf` (cleared first), reusing its allocation.
pub fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, CodecError> {
    buf.clear();
    encode_with(value, postcard::ser_flavors::ExtendFlavor::new(buf))
}

/// Decodes a `T` from the start of `bytes`; returns it and the bytes after it.
pub fn take_from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), CodecError> {
    fresh();
    let mut deserializer = postcard::Deserializer::from_bytes(bytes);
    let value = T::deserialize(Keep(&mut deserializer))?;
    let rest = deserializer.finalize().map_err(lift)?;
    Ok((value, rest))
}

/// Encodes `value`, collecting the descriptors it owns.
pub fn encode_fds<T: Serialize + ?Sized>(value: &T) -> Result<Encoded, CodecError> {
    encode_fds_into(value, Vec::new())
}

/// [`encode_fds`] into `buf` (cleared first), reusing its allocation.
pub fn encode_fds_into<T: Serialize + ?Sized>(
    value: &T,
    buf: Vec<u8>,
) -> Result<Encoded, CodecError> {
    let (bytes, fds) = collect_fds(|| encode_into(value, buf));
    Ok((bytes?, fds))
}

/// Decodes a `T` from the start of `bytes`, giving it the descriptors that came beside them.
pub fn decode_fds<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, CodecError> {
    provide_fds(fds, || take_from_bytes(bytes)).map(|(value, _)| value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Unit,
        New(u8),
        Tuple(i64, f32),
        Struct {
            name: String,
            bytes: serde_bytes_like::Bytes,
            map: Vec<(u16, char)>,
        },
    }

    /// A byte buffer serialized as bytes (not a sequence), without another dependency.
    mod serde_bytes_like {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        #[derive(Debug, PartialEq)]
        pub(super) struct Bytes(pub(super) Vec<u8>);

        impl Serialize for Bytes {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for Bytes {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Vec::<u8>::deserialize(d).map(Bytes)
            }
        }
    }

    #[test]
    fn the_bytes_are_postcards_own() {
        let values = vec![
            Shape::Unit,
            Shape::New(7),
            Shape::Tuple(-3, 1.5),
            Shape::Struct {
                name: "n".into(),
                bytes: serde_bytes_like::Bytes(vec![1, 2, 3]),
                map: vec![(1, 'x'), (2, 'é')],
            },
        ];
        let value = (
            values,
            Some(Box::new(5u128)),
            std::collections::BTreeMap::from([(1u8, ())]),
        );
        let ours = encode_into(&value, Vec::new()).unwrap();
        assert_eq!(ours, postcard::to_stdvec(&value).unwrap());
        let (back, rest) = take_from_bytes::<(
            Vec<Shape>,
            Option<Box<u128>>,
            std::collections::BTreeMap<u8, ()>,
        )>(&ours)
        .unwrap();
        assert!(rest.is_empty());
        assert_eq!(back, value);
    }

    struct Refuses;

    impl<'de> Deserialize<'de> for Refuses {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            u8::deserialize(d)?;
            Err(de::Error::custom("bad thing"))
        }
    }

    #[test]
    fn a_custom_message_crosses_postcard_and_bad_bytes_say_so() {
        let bytes = encode_into(&vec![Some((1u8, 2u8))], Vec::new()).unwrap();
        let e = take_from_bytes::<Vec<Option<(u8, Refuses)>>>(&bytes)
            .err()
            .unwrap();
        assert_eq!((e.message(), e.is_custom()), ("bad thing", true));
        let e = take_from_bytes::<String>(&[5, b'a']).err().unwrap();
        assert!(!e.is_custom() && !e.message().is_empty(), "{e}");
        // Nothing stays in transit to be blamed on the next value.
        let e = take_from_bytes::<u64>(&[]).err().unwrap();
        assert!(!e.is_custom(), "{e}");
    }
}
