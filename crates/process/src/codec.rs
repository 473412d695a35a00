//! The one codec of multiproc: a compact binary serde format of our own, built for memory
//! speed.
//!
//! Everything that crosses between processes — a pool's arguments, results and initializer,
//! a `Pipe`'s and a `Queue`'s values — is encoded and decoded here, with the descriptors it
//! owns collected and provided beside the bytes ([`multiproc_core::handoff`]).
//!
//! ## The format
//!
//! Not self-describing (like bincode or postcard): the reader knows the type. Every number is
//! fixed-width little-endian, so a `Vec<f64>` or `Vec<u32>` is its length and then its
//! values' bytes, written and read in one tight loop per element (no varints to branch on):
//!
//! | serde type | bytes |
//! |---|---|
//! | `bool` | 1 byte, 0 or 1 |
//! | `u8`, `i8` | 1 byte |
//! | `u16` … `u128`, `i16` … `i128`, `f32`, `f64` | their width, little-endian |
//! | `char` | its scalar value as a `u32` |
//! | `str`, bytes | length (`u64`), then the bytes; from [`LEND_MIN`] bytes on, a pad count (`u8`, below [`LEND_ALIGN`]) and that many zero bytes between the two, so that the bytes start at a multiple of [`LEND_ALIGN`] of the encoder's output |
//! | `Option` | 0 (`None`) or 1 then the value |
//! | unit, unit struct | nothing |
//! | newtype struct | the value |
//! | sequence, map | number of elements (`u64`), then each element (key, value) |
//! | tuple, tuple struct, struct | the fields in order |
//! | enum variant | its index (`u32`), then its content as above |
//!
//! A vector of plain numbers ([`is_block`]) takes the block path wherever it is — the value
//! itself, an item of a pool's chunk, a field of a tuple, a struct or an enum: the same bytes,
//! written in one block and read into one allocation of the exact length.
//!
//! The padding lets a large [`Packed`](multiproc_core::Packed) be read where it lies: a pool's
//! worker decodes its arguments from a shared-memory buffer whose start is page-aligned, and
//! lends that memory to the `Packed` values it decodes ([`multiproc_core::packed::lend`]).
//! So a type that serializes as bytes (`serialize_bytes`) must deserialize as bytes
//! (`deserialize_bytes` or `deserialize_byte_buf`, as `serde_bytes` and `Packed` do): from
//! [`LEND_MIN`] bytes on, they are not laid out as a sequence of `u8`.
//!
//! A sequence of unknown length cannot be encoded, nor one whose `Serialize` writes more or
//! fewer elements than it announced; types that need a self-describing format
//! (`deserialize_any`, `deserialize_ignored_any`) cannot be decoded: all are errors naming the
//! reason. An error of a value's own `Serialize`/`Deserialize` (a serde `custom`
//! error) keeps its message ([`CodecError::is_custom`]); bad bytes say what was wrong.

use std::fmt;
use std::os::fd::OwnedFd;

use multiproc_core::handoff::{collect_fds, provide_fds};
#[cfg(doc)]
use multiproc_core::packed::{LEND_ALIGN, LEND_MIN};
use serde::de::{self, DeserializeOwned};
use serde::ser::{self, Serialize};

mod block;
mod decode;
mod encode;

pub use block::is_block;

/// Encoded bytes and the file descriptors that travel beside them (see
/// [`multiproc_core::handoff`]).
pub type Encoded = (Vec<u8>, Vec<OwnedFd>);

/// Why a value could not be encoded or decoded: the message of the value's own
/// `Serialize`/`Deserialize` (a serde `custom` error), or the codec's description of what was
/// wrong with the value or the bytes.
///
/// One pointer wide, so that the `Result` of every element decoded stays small (a wider error
/// made decoding measurably slower).
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

    /// Whether the message is the value's own (a serde `custom` error) rather than the
    /// codec's.
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

/// Where the encoder writes: a byte vector, or the pool's body writer (which moves to shared
/// memory past a size). Writing cannot fail; an output that can run out of room must fall
/// back on its own (the body writer falls back to a byte vector).
pub trait Output {
    /// Appends `bytes`.
    fn write(&mut self, bytes: &[u8]);

    /// How many bytes were written so far: where the next one goes, counted from the start
    /// of the output (the encoder aligns large blocks of bytes to it).
    fn written(&self) -> usize;

    /// Appends one byte.
    #[inline(always)]
    fn push(&mut self, byte: u8) {
        self.write(&[byte]);
    }
}

impl Output for Vec<u8> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    #[inline(always)]
    fn written(&self) -> usize {
        self.len()
    }

    #[inline(always)]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }
}

/// Encodes `value` at the end of `out`: every vector of plain numbers in it ([`is_block`]) as
/// one block, everything else element by element.
#[inline]
pub fn encode_with<T: Serialize + ?Sized, O: Output>(
    value: &T,
    out: &mut O,
) -> Result<(), CodecError> {
    value.serialize(&mut encode::Serializer { out })
}

/// Encodes `items` at the end of `out` as a sequence (the bytes of a `Vec<T>` of them): a
/// pool's chunk of arguments or results.
#[inline]
pub fn encode_items_with<T: Serialize, O: Output>(
    items: &[T],
    out: &mut O,
) -> Result<(), CodecError> {
    encode_with(items, out)
}

/// Encodes `value` into `buf` (cleared first), reusing its allocation.
pub fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, CodecError> {
    buf.clear();
    encode_with(value, &mut buf)?;
    Ok(buf)
}

/// Decodes a `T` from the start of `bytes`; returns it and the bytes after it. A vector of
/// plain numbers ([`is_block`]) is allocated once and filled in one pass.
pub fn take_from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), CodecError> {
    let mut deserializer = decode::Deserializer::new(bytes);
    let value = T::deserialize(&mut deserializer)?;
    Ok((value, deserializer.rest()))
}

/// Decodes a sequence of `T`s (as [`encode_items_with`] writes it) from the start of `bytes`;
/// returns them and the bytes after them.
pub fn take_items_from_bytes<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<(Vec<T>, &[u8]), CodecError> {
    take_from_bytes(bytes)
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

/// Encodes `items` as [`encode_items_with`] does, collecting the descriptors they own.
pub fn encode_items_fds<T: Serialize>(items: &[T]) -> Result<Encoded, CodecError> {
    let mut bytes = Vec::new();
    let (encoded, fds) = collect_fds(|| encode_items_with(items, &mut bytes));
    encoded?;
    Ok((bytes, fds))
}

/// Decodes a `T` from `bytes`, giving it the descriptors that came beside them. Bytes left
/// after the value are an error: they were not written for a `T`.
pub fn decode_fds<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, CodecError> {
    provide_fds(fds, || take_from_bytes(bytes)).and_then(|(value, rest)| whole(value, rest))
}

/// Decodes a sequence of `T`s from `bytes` (as [`take_items_from_bytes`] does), giving them
/// the descriptors that came beside them. Bytes left after the sequence are an error.
pub fn decode_items_fds<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<Vec<T>, CodecError> {
    provide_fds(fds, || take_items_from_bytes(bytes)).and_then(|(items, rest)| whole(items, rest))
}

/// `value`, if nothing is `rest`.
fn whole<T>(value: T, rest: &[u8]) -> Result<T, CodecError> {
    match rest.len() {
        0 => Ok(value),
        1 => Err(CodecError::new("1 byte left after the value".into(), false)),
        n => Err(CodecError::new(
            format!("{n} bytes left after the value"),
            false,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize};

    #[test]
    fn a_count_of_empty_elements_past_any_reason_is_an_error_not_a_spin() {
        // `()` takes no bytes, so nothing but the count bounds the loop: 2^64 - 1 of them
        // would keep the decoder (a supervisor, for a result) busy for good.
        let bytes = u64::MAX.to_le_bytes();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(take_from_bytes::<Vec<()>>(&bytes).map(|(v, _)| v.len()));
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(20));
        assert!(matches!(got, Ok(Err(_))), "{got:?}");
        // A count of empty elements that is merely large still decodes.
        let mut ok = Vec::new();
        ok.extend_from_slice(&1000u64.to_le_bytes());
        assert_eq!(take_from_bytes::<Vec<()>>(&ok).unwrap().0.len(), 1000);
    }

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
    fn every_shape_round_trips() {
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
            (true, i8::MIN, -2i16, u32::MAX, f64::NAN.to_bits(), -7i128),
        );
        let ours = encode_into(&value, Vec::new()).unwrap();
        type Value = (
            Vec<Shape>,
            Option<Box<u128>>,
            std::collections::BTreeMap<u8, ()>,
            (bool, i8, i16, u32, u64, i128),
        );
        let (back, rest) = take_from_bytes::<Value>(&ours).unwrap();
        assert!(rest.is_empty());
        assert_eq!(back, value);
        // Every shorter prefix is an error, never a panic or a value.
        for end in 0..ours.len() {
            let e = take_from_bytes::<Value>(&ours[..end]).err().unwrap();
            assert!(!e.is_custom(), "{e}");
        }
    }

    #[test]
    fn the_bytes_are_the_documented_format() {
        let bytes = |v: &dyn erased::Encode| v.encode();
        // A sequence: its length as a u64, then each value fixed-width little-endian.
        let mut expected = 2u64.to_le_bytes().to_vec();
        expected.extend(1.5f64.to_le_bytes());
        expected.extend((-2.0f64).to_le_bytes());
        assert_eq!(bytes(&vec![1.5f64, -2.0]), expected);
        assert_eq!(bytes(&vec![1u8, 2]), [2, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(bytes(&(258u16, -1i32)), [2, 1, 255, 255, 255, 255]);
        assert_eq!(bytes(&"é"), [2, 0, 0, 0, 0, 0, 0, 0, 0xc3, 0xa9]);
        assert_eq!(bytes(&'A'), [65, 0, 0, 0]);
        assert_eq!(bytes(&(None::<u8>, Some(true), ())), [0, 1, 1]);
        assert_eq!(bytes(&Shape::New(9)), [1, 0, 0, 0, 9]);
        assert_eq!(bytes(&Shape::Unit), [0, 0, 0, 0]);
    }

    /// A block of bytes large enough to be read in place ([`LEND_MIN`]) starts at a multiple
    /// of [`LEND_ALIGN`] of the encoder's output, whatever came before it: a pad count after
    /// its length, then that many zero bytes. Smaller blocks have no padding.
    #[test]
    fn a_block_large_enough_to_lend_is_aligned_for_its_values() {
        use multiproc_core::packed::{LEND_ALIGN, LEND_MIN};
        use multiproc_core::Packed;
        let large = Packed::new((0..(LEND_MIN as u64 / 8)).collect::<Vec<u64>>());
        for before in 0..=LEND_ALIGN {
            let value = (vec![7u8; before], large.clone(), "after".to_string());
            let ours = encode_into(&value, Vec::new()).unwrap();
            let value_bytes: &[u8] = bytemuck::cast_slice(&large[..]);
            let at = ours
                .windows(16)
                .position(|w| w == &value_bytes[..16])
                .unwrap();
            assert_eq!(at % LEND_ALIGN, 0, "{before} bytes before");
            let (back, rest) = take_from_bytes::<(Vec<u8>, Packed<u64>, String)>(&ours).unwrap();
            assert!(rest.is_empty());
            assert_eq!(back, value);
            // Every shorter prefix is an error.
            for end in [at - 1, at, ours.len() - 6] {
                assert!(take_from_bytes::<(Vec<u8>, Packed<u64>, String)>(&ours[..end]).is_err());
            }
        }
        // Below the size, no padding: the length, then the bytes.
        let small = encode_into(&Packed::new(vec![1u8; LEND_MIN - 1]), Vec::new()).unwrap();
        assert_eq!(small.len(), 8 + LEND_MIN - 1);
        // A pad count past the alignment is bad bytes.
        let mut bad = encode_into(&Packed::new(vec![1u8; LEND_MIN]), Vec::new()).unwrap();
        bad[8] = LEND_ALIGN as u8;
        let e = take_from_bytes::<Packed<u8>>(&bad).err().unwrap();
        assert!(e.message().contains("pad"), "{e}");
    }

    /// Encoding behind a trait object, so that one closure takes values of several types.
    mod erased {
        pub(super) trait Encode {
            fn encode(&self) -> Vec<u8>;
        }

        impl<T: serde::Serialize + 'static> Encode for T {
            fn encode(&self) -> Vec<u8> {
                super::encode_into(self, Vec::new()).unwrap()
            }
        }
    }

    #[test]
    fn bad_bytes_and_unsupported_shapes_say_why() {
        let e = take_from_bytes::<bool>(&[2]).err().unwrap();
        assert!(e.message().contains("bool"), "{e}");
        let e = take_from_bytes::<Option<u8>>(&[7, 0]).err().unwrap();
        assert!(e.message().contains("Option"), "{e}");
        let e = take_from_bytes::<char>(&0xd800u32.to_le_bytes())
            .err()
            .unwrap();
        assert!(e.message().contains("char"), "{e}");
        let mut not_utf8 = 1u64.to_le_bytes().to_vec();
        not_utf8.push(0xff);
        let e = take_from_bytes::<String>(&not_utf8).err().unwrap();
        assert!(e.message().contains("UTF-8"), "{e}");
        // A length that claims more bytes than there are is refused before allocating.
        let e = take_from_bytes::<Vec<u8>>(&u64::MAX.to_le_bytes())
            .err()
            .unwrap();
        assert!(!e.is_custom(), "{e}");
        let e = take_from_bytes::<serde_json_like::Any>(&[0]).err().unwrap();
        assert!(e.message().contains("self-describing"), "{e}");
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                s.serialize_seq(None)?.end()
            }
        }
        let e = encode_into(&Unsized, Vec::new()).err().unwrap();
        assert!(e.message().contains("length"), "{e}");
    }

    /// A type that only a self-describing format can decode.
    mod serde_json_like {
        pub(super) struct Any;

        impl<'de> serde::Deserialize<'de> for Any {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(serde::de::IgnoredAny).map(|_| Any)
            }
        }
    }

    struct Refuses;

    impl<'de> Deserialize<'de> for Refuses {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            u8::deserialize(d)?;
            Err(de::Error::custom("bad thing"))
        }
    }

    #[test]
    fn a_custom_message_survives_and_bad_bytes_say_so() {
        let bytes = encode_into(&vec![Some((1u8, 2u8))], Vec::new()).unwrap();
        let e = take_from_bytes::<Vec<Option<(u8, Refuses)>>>(&bytes)
            .err()
            .unwrap();
        assert_eq!((e.message(), e.is_custom()), ("bad thing", true));
        let mut short = 5u64.to_le_bytes().to_vec();
        short.push(b'a');
        let e = take_from_bytes::<String>(&short).err().unwrap();
        assert!(!e.is_custom() && !e.message().is_empty(), "{e}");
        // A value cut short is the codec's error.
        let e = take_from_bytes::<u64>(&[]).err().unwrap();
        assert!(!e.is_custom(), "{e}");
    }

    /// A sequence or map that writes more or fewer elements than it announced is an error
    /// when it is encoded, not a body that decodes into something else.
    #[test]
    fn a_sequence_that_breaks_its_announced_length_is_refused() {
        struct Liar {
            announced: usize,
            written: usize,
            map: bool,
        }
        impl Serialize for Liar {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::{SerializeMap, SerializeSeq};
                if self.map {
                    let mut m = s.serialize_map(Some(self.announced))?;
                    for i in 0..self.written {
                        m.serialize_entry(&(i as u8), &"v")?;
                    }
                    m.end()
                } else {
                    let mut q = s.serialize_seq(Some(self.announced))?;
                    for i in 0..self.written {
                        q.serialize_element(&(i as u16, "x"))?;
                    }
                    q.end()
                }
            }
        }
        for map in [false, true] {
            for (announced, written) in [(3, 2), (2, 3), (0, 1), (1, 0)] {
                let liar = Liar {
                    announced,
                    written,
                    map,
                };
                let e = encode_into(&liar, Vec::new()).err().unwrap();
                assert!(!e.is_custom(), "{e}");
                assert!(
                    e.message().contains(&format!("announced {announced}")),
                    "{e}"
                );
            }
            let honest = Liar {
                announced: 2,
                written: 2,
                map,
            };
            assert!(encode_into(&honest, Vec::new()).is_ok());
        }
    }

    /// A body with bytes after its value was not written for that type (a `Serialize` that
    /// wrote more than its `Deserialize` reads, or a value of another type): an error, not a
    /// value decoded from the first bytes.
    #[test]
    fn bytes_left_after_the_value_are_an_error() {
        let mut bytes = encode_items_fds(&[1u64, 2]).unwrap().0;
        assert_eq!(decode_items_fds::<u64>(&bytes, Vec::new()).unwrap(), [1, 2]);
        bytes.push(0);
        let e = decode_items_fds::<u64>(&bytes, Vec::new()).err().unwrap();
        assert!(e.message().contains("1 byte"), "{e}");
        // A u32 where a u64 was written: the count says one item, and 4 bytes are left.
        let one_u64 = encode_items_fds(&[1u64]).unwrap().0;
        let e = decode_items_fds::<u32>(&one_u64, Vec::new()).err().unwrap();
        assert!(e.message().contains("4 bytes"), "{e}");
        let mut one = encode_fds(&7u8).unwrap().0;
        one.push(1);
        assert!(decode_fds::<u8>(&one, Vec::new()).is_err());
    }
}
