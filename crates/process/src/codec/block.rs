//! The block path: a vector of plain numbers (`Vec<u8>`, `Vec<f64>`, … see [`is_block`])
//! encoded and decoded as one block of bytes, with the bytes that serde's element-by-element
//! path writes (its length as a `u64`, then each value fixed-width little-endian).
//!
//! serde hands a format a `Vec<f64>` one element at a time, and decodes one by growing a
//! vector (its pre-allocation capped at 1 MiB). Here the codec looks at the types serde hands
//! it, wherever the vector is — the value itself, a tuple's field, a struct's, an `Option`'s:
//!
//! - **encoding**: serde's `Serialize` for a `Vec<T>` or a `[T]` calls the serializer's
//!   `collect_seq` with a reference to itself; the serializer ([`encode_seq`]) tests that
//!   reference's type and, for plain numbers, writes the values' bytes in one copy
//!   (little-endian targets; a big-endian one converts them in blocks).
//! - **decoding**: serde's `Deserialize` for a `Vec<T>` calls `deserialize_seq` with its own
//!   vector visitor; the deserializer ([`decode_seq`]) recognises that visitor's type (learnt
//!   once per element type by asking serde to deserialize a vector from a probe) and, for
//!   plain numbers, allocates the vector once at its exact length and fills it in one pass,
//!   returning it in the visitor's stead. A visitor of the user's own, even one that makes a
//!   `Vec<u64>`, still gets every element (it may do more than collect them).
//!
//! The types serde hands over borrow (`&'a Vec<T>`) or are not `'static` (a visitor for
//! `'de`), so they are compared with [`typeid::of`], which gives the `TypeId` of a type up to
//! its lifetimes; a match is then a cast between the same type with other lifetimes, used
//! only within the borrow it came with.

use std::any::TypeId;
use std::mem::ManuallyDrop;

use serde::de::{self, Visitor};

use super::{CodecError, Output};

/// Bytes converted per [`Output::write`] on a big-endian target's encoding: a block that stays
/// in the first-level cache.
const BLOCK: usize = 4096;

/// Calls `$apply!(element, wire)` for every element type of the block path and the type its
/// bytes are written as. `usize` and `isize` are 8-byte values (serde serializes them as
/// `u64`/`i64`); they take the path on 64-bit targets only, where reading them back cannot
/// overflow (elsewhere they go element by element, which checks).
macro_rules! plain_numbers {
    ($apply:ident) => {
        $apply!(u8, u8);
        $apply!(i8, i8);
        $apply!(u16, u16);
        $apply!(i16, i16);
        $apply!(u32, u32);
        $apply!(i32, i32);
        $apply!(u64, u64);
        $apply!(i64, i64);
        #[cfg(target_pointer_width = "64")]
        $apply!(usize, u64);
        #[cfg(target_pointer_width = "64")]
        $apply!(isize, i64);
        $apply!(f32, f32);
        $apply!(f64, f64);
    };
}

/// Whether a `T` crosses on the block path: `T` is a `Vec` of `u8`, `i8`, `u16`, `i16`,
/// `u32`, `i32`, `u64`, `i64`, `usize`, `isize` (64-bit targets), `f32` or `f64` — whether it
/// is the value sent or a part of it. A slice of those (`&[T]`, `Box<[T]>`, which serde
/// serializes as the slice) is encoded on the path too; arrays and other collections
/// (`VecDeque`, `[T; N]`) go element by element.
pub fn is_block<T: ?Sized + 'static>() -> bool {
    let id = TypeId::of::<T>();
    macro_rules! test {
        ($t:ty, $wire:ty) => {
            if id == TypeId::of::<Vec<$t>>() {
                return true;
            }
        };
    }
    plain_numbers!(test);
    false
}

/// Encodes `seq` — what serde's `Serialize` for a `Vec` or a slice hands `collect_seq`: a
/// reference to itself — on the block path if it is a vector or slice of plain numbers;
/// `false` if it is not.
#[inline]
pub(super) fn encode_seq<I, O: Output>(seq: &I, out: &mut O) -> bool {
    let id = typeid::of::<I>();
    macro_rules! try_encode {
        ($t:ty, $wire:ty) => {
            let values: Option<&[$t]> = if id == typeid::of::<&Vec<$t>>() {
                // SAFETY: `I` is `&Vec<$t>` up to lifetimes (`typeid::of` ignores them, and
                // they do not change the layout); the vector is read only while `seq`, and
                // so the reference it holds, is borrowed.
                Some(unsafe { &*(seq as *const I).cast::<&Vec<$t>>() }.as_slice())
            } else if id == typeid::of::<&[$t]>() {
                // SAFETY: as above, `I` is `&[$t]`.
                Some(unsafe { *(seq as *const I).cast::<&[$t]>() })
            } else {
                None
            };
            if let Some(v) = values {
                out.write(&(v.len() as u64).to_le_bytes());
                // Little-endian: the values' bytes in memory are the format's, one copy.
                #[cfg(target_endian = "little")]
                out.write(bytemuck::cast_slice::<$t, u8>(v));
                #[cfg(not(target_endian = "little"))]
                write_block(v, |x| (*x as $wire).to_le_bytes(), out);
                return true;
            }
        };
    }
    plain_numbers!(try_encode);
    false
}

/// Writes `values` as `to_bytes` of each, in blocks of [`BLOCK`] bytes: the encoding on a
/// big-endian target (compiled and tested everywhere).
#[cfg_attr(all(target_endian = "little", not(test)), allow(dead_code))]
#[inline]
fn write_block<T, const N: usize, O: Output>(
    values: &[T],
    to_bytes: impl Fn(&T) -> [u8; N],
    out: &mut O,
) {
    let mut block = [0u8; BLOCK];
    for chunk in values.chunks(BLOCK / N) {
        for (bytes, x) in block.chunks_exact_mut(N).zip(chunk) {
            bytes.copy_from_slice(&to_bytes(x));
        }
        out.write(&block[..chunk.len() * N]);
    }
}

/// Decodes the value of `V` on the block path if `V` is serde's own visitor of a `Vec` of
/// plain numbers (`None` if it is not): `block(width)` reads the length and that many values
/// of `width` bytes (bytes that end early are its error), copied into a vector allocated
/// once at that length.
#[inline]
pub(super) fn decode_seq<'de, V: Visitor<'de>>(
    block: impl FnOnce(usize) -> Result<&'de [u8], CodecError>,
) -> Option<Result<V::Value, CodecError>> {
    macro_rules! try_decode {
        ($t:ty, $wire:ty) => {
            // The first test compiles away for every other `V::Value`.
            if typeid::of::<V::Value>() == TypeId::of::<Vec<$t>>()
                && Some(typeid::of::<V>()) == vec_visitor::<$t>()
            {
                const N: usize = size_of::<$wire>();
                let bytes = match block(N) {
                    Ok(bytes) => bytes,
                    Err(e) => return Some(Err(e)),
                };
                // Plain 4 KiB pages, not huge ones: on our VM a fresh transparent huge page
                // was fast one run and ten times slower the next (ARCHITECTURE.md, "One codec").
                // Little-endian: the bytes are the values' own (`$t` and `$wire` have one
                // size), copied with the fresh pages' faults spread over the cores.
                #[cfg(target_endian = "little")]
                let v: Vec<$t> = multiproc_sys::memory::vec_from_bytes(bytes);
                #[cfg(not(target_endian = "little"))]
                let v: Vec<$t> = bytes
                    .chunks_exact(N)
                    .map(|c| {
                        let c: [u8; N] = c.try_into().expect("chunks_exact gives N bytes");
                        <$wire>::from_le_bytes(c) as $t
                    })
                    .collect();
                let v = ManuallyDrop::new(v);
                // SAFETY: `V::Value` is `Vec<$t>` (tested above; a `Vec<$t>` has no
                // lifetimes for `typeid::of` to ignore), so this moves the vector out as its
                // own type; `ManuallyDrop` keeps it from being dropped here too.
                return Some(Ok(unsafe {
                    std::mem::transmute_copy::<Vec<$t>, V::Value>(&v)
                }));
            }
        };
    }
    plain_numbers!(try_decode);
    None
}

/// The type of the visitor that serde's `Deserialize` for `Vec<T>` hands `deserialize_seq`
/// (`None` if it asked for something else): found by deserializing a `Vec<T>` from a
/// [`Probe`], which allocates nothing and fails at once.
///
/// Asked again for every vector rather than kept in a `static`: a `OnceLock` being filled
/// by one thread while another forks would stay "being filled" in the child, and the
/// child's first decode of that type would wait for ever.
#[inline]
fn vec_visitor<T: de::DeserializeOwned>() -> Option<TypeId> {
    let mut seen = None;
    let _ = <Vec<T> as de::Deserialize>::deserialize(Probe(&mut seen));
    seen
}

/// A deserializer that records the type of the visitor handed to `deserialize_seq` and
/// deserializes nothing.
struct Probe<'a>(&'a mut Option<TypeId>);

/// [`Probe`]'s only outcome: no value (an error without a message, so nothing is allocated).
#[derive(Debug)]
struct Probed;

impl std::fmt::Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a probe deserializes nothing")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Probed
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Probed;

    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed)
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        *self.0 = Some(typeid::of::<V>());
        Err(Probed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode_items_fds, encode_into, encode_items_fds, take_from_bytes, Output};
    use super::*;
    use serde::de::DeserializeOwned;
    use serde::{Serialize, Serializer};

    /// The element-by-element bytes of `values`: serialized from an iterator, which is not a
    /// type the block path takes.
    fn slow<T: Serialize>(values: &[T]) -> Vec<u8> {
        struct Elements<'a, T>(&'a [T]);
        impl<T: Serialize> Serialize for Elements<'_, T> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter())
            }
        }
        encode_into(&Elements(values), Vec::new()).unwrap()
    }

    /// The element-by-element bytes of a chunk of vectors.
    fn slow_items<T: Serialize>(items: &[Vec<T>]) -> Vec<u8> {
        let mut bytes = (items.len() as u64).to_le_bytes().to_vec();
        for item in items {
            bytes.extend(slow(item));
        }
        bytes
    }

    /// A `Vec<T>` decoded element by element: a visitor of its own collects it.
    struct ElementWise<T>(Vec<T>);

    impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for ElementWise<T> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit<T>(std::marker::PhantomData<T>);
            impl<'de, T: serde::Deserialize<'de>> Visitor<'de> for Visit<T> {
                type Value = Vec<T>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a sequence")
                }
                fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                    let mut v = Vec::new();
                    while let Some(x) = seq.next_element()? {
                        v.push(x);
                    }
                    Ok(v)
                }
            }
            d.deserialize_seq(Visit(std::marker::PhantomData))
                .map(ElementWise)
        }
    }

    /// Both paths give the same bytes and read each other's, for a value of `Vec<T>`; the
    /// values compare through their bytes (a NaN is not equal to itself).
    fn same_bytes_both_ways<T>(values: Vec<T>)
    where
        T: Clone + Serialize + DeserializeOwned + 'static,
    {
        assert!(is_block::<Vec<T>>());
        let len = values.len();
        let fast = encode_into(&values, Vec::new()).unwrap();
        let expected = slow(&values);
        assert_eq!(fast, expected, "{} of {len}", std::any::type_name::<T>());
        assert_eq!(fast.len(), 8 + len * (expected.len() - 8) / len.max(1));
        // A slice too.
        assert_eq!(encode_into(&values[..], Vec::new()).unwrap(), expected);
        // Block decode of the element-by-element bytes, with bytes after it.
        let mut longer = expected.clone();
        longer.extend([1, 2, 3]);
        let (back, rest) = take_from_bytes::<Vec<T>>(&longer).unwrap();
        assert_eq!((rest, back.capacity()), (&[1u8, 2, 3][..], len));
        assert_eq!(slow(&back), expected);
        // Element-by-element decode of the block's bytes.
        let (ElementWise(back), rest) = take_from_bytes::<ElementWise<T>>(&fast).unwrap();
        assert!(rest.is_empty());
        assert_eq!(slow(&back), expected);
        // A pool's chunk: each item on the block path, the bytes of a Vec of them.
        let items = vec![values.clone(), Vec::new(), values];
        let (chunk, fds) = encode_items_fds(&items).unwrap();
        assert!(fds.is_empty());
        assert_eq!(chunk, slow_items(&items));
        let back = decode_items_fds::<Vec<T>>(&chunk, Vec::new()).unwrap();
        assert_eq!(slow_items(&back), chunk);
        // Every shorter prefix is an error, never a panic or a value.
        for end in (0..fast.len()).filter(|end| *end < 64 || end % 61 == 0) {
            let e = take_from_bytes::<Vec<T>>(&fast[..end]).err().unwrap();
            assert!(!e.is_custom(), "{e}");
        }
        for end in (0..chunk.len()).filter(|end| *end < 64 || end % 61 == 0) {
            assert!(decode_items_fds::<Vec<T>>(&chunk[..end], Vec::new()).is_err());
        }
    }

    /// Pseudo-random bits, so that every byte of every value varies.
    fn bits(i: usize) -> u64 {
        (i as u64 + 1)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29)
            ^ 0xa5a5
    }

    #[test]
    fn every_plain_vector_has_the_same_bytes_on_both_paths() {
        // Empty, short, odd, and across the encoder's blocks.
        for len in [0, 1, 3, 7, 1000, BLOCK + 1, 3 * BLOCK + 5] {
            macro_rules! check {
                ($t:ty) => {
                    same_bytes_both_ways((0..len).map(|i| bits(i) as $t).collect::<Vec<$t>>())
                };
            }
            check!(u8);
            check!(i8);
            check!(u16);
            check!(i16);
            check!(u32);
            check!(i32);
            check!(u64);
            check!(i64);
            check!(usize);
            check!(isize);
            check!(f32);
            check!(f64);
        }
        // NaNs with payloads and signs keep their bits.
        let odd = [
            f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0001),
            f64::from_bits(0xfff8_dead_beef_0001),
            -0.0,
            f64::INFINITY,
            f64::MIN_POSITIVE / 2.0,
            -1.5,
        ];
        same_bytes_both_ways(odd.to_vec());
        same_bytes_both_ways(odd.iter().map(|x| *x as f32).collect::<Vec<_>>());
        same_bytes_both_ways(vec![
            f32::from_bits(0x7fa0_0001),
            f32::from_bits(0xffc0_0003),
        ]);
        same_bytes_both_ways(vec![usize::MAX, 0, usize::MAX / 3]);
        same_bytes_both_ways(vec![isize::MIN, -1, isize::MAX]);
    }

    #[test]
    fn the_probe_finds_serdes_own_vector_visitor_for_every_plain_number() {
        macro_rules! probe {
            ($t:ty, $wire:ty) => {
                assert!(vec_visitor::<$t>().is_some(), "{}", stringify!($t));
            };
        }
        plain_numbers!(probe);
        // One visitor type per element type.
        assert_ne!(vec_visitor::<u8>(), vec_visitor::<u16>());
    }

    #[test]
    fn the_block_path_is_for_vectors_of_plain_numbers() {
        assert!(is_block::<Vec<u8>>() && is_block::<Vec<f64>>() && is_block::<Vec<i16>>());
        assert!(!is_block::<Vec<bool>>());
        assert!(!is_block::<Vec<char>>());
        assert!(!is_block::<Vec<u128>>());
        assert!(!is_block::<Vec<Vec<u8>>>());
        assert!(!is_block::<(Vec<u8>,)>());
        assert!(!is_block::<[u8]>());
        assert!(!is_block::<String>());
    }

    /// Counts the writes of an encoding.
    #[derive(Default)]
    struct Writes {
        calls: usize,
        bytes: Vec<u8>,
    }

    impl Output for Writes {
        fn write(&mut self, bytes: &[u8]) {
            self.calls += 1;
            self.bytes.extend_from_slice(bytes);
        }

        fn written(&self) -> usize {
            self.bytes.len()
        }
    }

    #[test]
    fn a_plain_vector_is_written_in_blocks_and_read_into_one_exact_allocation() {
        let values: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let mut out = Writes::default();
        super::super::encode_with(&values, &mut out).unwrap();
        // The length, then the 8000 bytes in one write (not one write per element).
        assert_eq!(out.calls, 2);
        assert_eq!(out.bytes, slow(&values));
        // The big-endian targets' encoding: the same bytes, in blocks of 4096.
        let mut blocks = Writes::default();
        write_block(&values, |x| x.to_le_bytes(), &mut blocks);
        assert_eq!((blocks.calls, &blocks.bytes[..]), (2, &out.bytes[8..]));
        let odd: Vec<i16> = (0..3001).map(|i| bits(i) as i16).collect();
        let mut blocks = Writes::default();
        write_block(&odd, |x| x.to_le_bytes(), &mut blocks);
        assert_eq!((blocks.calls, &blocks.bytes[..]), (2, &slow(&odd)[8..]));
        // More than serde's 1 MiB of pre-allocation: decoded element by element, the vector
        // would grow by doubling past its length.
        let values: Vec<u32> = (0..300_001).collect();
        let bytes = encode_into(&values, Vec::new()).unwrap();
        let (back, _) = take_from_bytes::<Vec<u32>>(&bytes).unwrap();
        assert_eq!(back.capacity(), values.len());
        assert!(back == values);
    }

    #[test]
    fn a_vector_nested_in_a_tuple_or_a_struct_takes_the_block_path() {
        #[derive(Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Image {
            shape: (usize, usize),
            pixels: Vec<f32>,
            label: Option<Vec<u16>>,
        }
        let xs: Vec<usize> = (0..1000).collect();
        let value = (7u8, (xs.clone(), xs.clone()), Some(vec![1.5f64; 1000]));
        let mut out = Writes::default();
        super::super::encode_with(&value, &mut out).unwrap();
        // 7u8; the two lists, each a length and one block; `Some`; a length and one block:
        // 8 writes, not one per element.
        assert_eq!(out.calls, 8);
        let (back, rest) =
            take_from_bytes::<(u8, (Vec<usize>, Vec<usize>), Option<Vec<f64>>)>(&out.bytes)
                .unwrap();
        assert!(rest.is_empty() && back == value);
        // Past serde's 1 MiB of pre-allocation, element by element a vector grows by
        // doubling; on the block path it is one allocation of its exact length.
        let image = Image {
            shape: (600, 500),
            pixels: (0..300_000).map(|i| i as f32).collect(),
            label: Some((0..300_001).map(|i| i as u16).collect()),
        };
        let bytes = encode_into(&image, Vec::new()).unwrap();
        let (back, _) = take_from_bytes::<Image>(&bytes).unwrap();
        assert_eq!(back.pixels.capacity(), 300_000);
        assert_eq!(back.label.as_ref().map(Vec::capacity), Some(300_001));
        assert_eq!(back, image);
    }

    /// A `Vec<u64>` deserialized by a visitor of its own, which keeps only even values.
    #[derive(Debug)]
    struct Evens(Vec<u64>);

    impl<'de> serde::Deserialize<'de> for Evens {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Vec<u64>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a sequence of u64")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Vec<u64>, A::Error> {
                    let mut evens = Vec::new();
                    while let Some(v) = seq.next_element::<u64>()? {
                        if v % 2 == 0 {
                            evens.push(v);
                        }
                    }
                    Ok(evens)
                }
            }
            d.deserialize_seq(Visit).map(Evens)
        }
    }

    #[test]
    fn a_visitor_of_its_own_still_sees_every_element() {
        // Its value is a `Vec<u64>` too, but only serde's own vector visitor is bypassed.
        let bytes = encode_into(&(vec![1u64, 2, 3, 4, 6],), Vec::new()).unwrap();
        let ((evens,), _) = take_from_bytes::<(Evens,)>(&bytes).unwrap();
        assert_eq!(evens.0, [2, 4, 6]);
        let (evens, _) = take_from_bytes::<Evens>(&bytes).unwrap();
        assert_eq!(evens.0, [2, 4, 6]);
    }

    #[test]
    fn a_length_beyond_the_bytes_is_an_error_before_allocating() {
        for len in [u64::MAX, u64::MAX / 8 + 1, 1 << 40, 2] {
            let mut bytes = len.to_le_bytes().to_vec();
            bytes.extend([0; 8]);
            let e = take_from_bytes::<Vec<f64>>(&bytes).err().unwrap();
            assert!(!e.is_custom() && !e.message().is_empty(), "{e}");
            assert!(take_from_bytes::<Vec<u8>>(&bytes[..9]).is_err());
        }
    }
}
