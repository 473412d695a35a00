//! The block path: a vector of plain numbers (`Vec<u8>`, `Vec<f64>`, … see [`is_block`])
//! encoded and decoded as one block of bytes, with the bytes that serde's element-by-element
//! path writes (its length as a `u64`, then each value fixed-width little-endian).
//!
//! serde hands a `Vec<f64>` to a format one element at a time, and decodes one by growing a
//! vector (its pre-allocation capped at 1 MiB). Here the type is known (`T: 'static`, tested
//! by [`TypeId`] through `&dyn Any`, which the compiler resolves per type), so encoding is one
//! copy of the values' bytes (little-endian targets; a big-endian one converts them in
//! blocks) and decoding allocates the vector once, at its exact length, and fills it in one
//! pass. Only the value itself takes the path (and each item of a pool's chunk): a vector
//! nested in a tuple or a struct goes element by element.

use std::any::{Any, TypeId};

use super::decode::Deserializer;
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
/// `u32`, `i32`, `u64`, `i64`, `usize`, `isize`, `f32` or `f64`.
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

/// Encodes `value` on the block path if it takes it; `false` if it does not.
#[inline]
pub(super) fn encode<T: 'static, O: Output>(value: &T, out: &mut O) -> bool {
    let value = value as &dyn Any;
    macro_rules! try_encode {
        ($t:ty, $wire:ty) => {
            if let Some(v) = value.downcast_ref::<Vec<$t>>() {
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

/// Decodes a `T` on the block path if it takes it (`None` if it does not): the length, then
/// the values into a vector allocated once at that length. Bytes that end early are an
/// error.
#[inline]
pub(super) fn decode<T: 'static>(de: &mut Deserializer<'_>) -> Option<Result<T, CodecError>> {
    let mut slot: Option<T> = None;
    let out = &mut slot as &mut dyn Any;
    macro_rules! try_decode {
        ($t:ty, $wire:ty) => {
            if let Some(out) = out.downcast_mut::<Option<Vec<$t>>>() {
                const N: usize = size_of::<$wire>();
                let bytes = match de.block(N) {
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
                *out = Some(v);
                return slot.map(Ok);
            }
        };
    }
    plain_numbers!(try_decode);
    None
}

#[cfg(test)]
mod tests {
    use super::super::{
        decode_items_fds, encode_borrowed_into, encode_into, encode_items_fds, take_from_bytes,
        Output,
    };
    use super::*;
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    /// The element-by-element path's bytes (no type test).
    fn slow<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        encode_borrowed_into(value, Vec::new()).unwrap()
    }

    /// Both paths give the same bytes and read each other's, for a value of `Vec<T>`; the
    /// values compare through their bytes (a NaN is not equal to itself).
    fn same_bytes_both_ways<T>(values: Vec<T>)
    where
        T: Clone + 'static,
        Vec<T>: Serialize + DeserializeOwned,
    {
        assert!(is_block::<Vec<T>>());
        let len = values.len();
        let fast = encode_into(&values, Vec::new()).unwrap();
        let expected = slow(&values);
        assert_eq!(fast, expected, "{} of {len}", std::any::type_name::<T>());
        assert_eq!(fast.len(), 8 + len * (expected.len() - 8) / len.max(1));
        // Block decode of the element-by-element bytes, with bytes after it.
        let mut longer = expected.clone();
        longer.extend([1, 2, 3]);
        let (back, rest) = take_from_bytes::<Vec<T>>(&longer).unwrap();
        assert_eq!((rest, back.capacity()), (&[1u8, 2, 3][..], len));
        assert_eq!(slow(&back), expected);
        // Element-by-element decode (a 1-tuple has the same bytes, and no block path) of the
        // block's bytes.
        let ((back,), rest) = take_from_bytes::<(Vec<T>,)>(&fast).unwrap();
        assert!(rest.is_empty());
        assert_eq!(slow(&back), expected);
        // A pool's chunk: each item on the block path, the bytes of a Vec of them.
        let items = vec![values.clone(), Vec::new(), values];
        let (chunk, fds) = encode_items_fds(&items).unwrap();
        assert!(fds.is_empty());
        assert_eq!(chunk, slow(&items));
        let back = decode_items_fds::<Vec<T>>(&chunk, Vec::new()).unwrap();
        assert_eq!(slow(&back), chunk);
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
        let odd = [f64::NAN, -0.0, f64::INFINITY, f64::MIN_POSITIVE / 2.0, -1.5];
        same_bytes_both_ways(odd.to_vec());
        same_bytes_both_ways(odd.iter().map(|x| *x as f32).collect::<Vec<_>>());
        same_bytes_both_ways(vec![usize::MAX, 0, usize::MAX / 3]);
        same_bytes_both_ways(vec![isize::MIN, -1, isize::MAX]);
    }

    #[test]
    fn only_top_level_vectors_of_plain_numbers_take_the_block_path() {
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
