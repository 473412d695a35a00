//! [`Packed`]: a vector of plain numbers that crosses to a worker as one block of bytes.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A `Vec<T>` of plain numbers (`f64`, `u8`, `i32`, ... any [`bytemuck::Pod`]) that serializes
/// as one block of bytes: one `memcpy` on each side instead of one encoder call per element.
///
/// serde sees a `Vec<f64>` as a sequence and encodes it element by element (postcard managed
/// about 0.7–1.7 GB/s on our 2-core machine); `Packed` is what numpy's buffer protocol is to
/// pickle. The pools' own codec already moves a `Vec` of plain numbers (`u8` … `f64`) in one
/// block wherever it is; `Packed` does it for any `Pod` element (arrays, `#[repr(C)]`
/// structs) and in any serde format:
///
/// ```
/// use multiproc_core::Packed;
///
/// fn mean(samples: Packed<f64>) -> f64 {
///     samples.iter().sum::<f64>() / samples.len() as f64
/// }
///
/// let samples = Packed(vec![1.0, 2.0, 3.0, 6.0]);
/// assert_eq!(mean(samples), 3.0);
/// ```
///
/// The bytes are the values' in-memory representation, so both sides must agree on it —
/// always true between a pool and its workers (the same binary on the same machine).
#[derive(Clone, Default, PartialEq)]
pub struct Packed<T: Pod>(pub Vec<T>);

impl<T: Pod> Packed<T> {
    /// The vector.
    pub fn into_inner(self) -> Vec<T> {
        self.0
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Packed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Packed").field(&self.0).finish()
    }
}

impl<T: Pod> Deref for Packed<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Pod> DerefMut for Packed<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

impl<T: Pod> From<Vec<T>> for Packed<T> {
    fn from(v: Vec<T>) -> Self {
        Packed(v)
    }
}

impl<T: Pod> Serialize for Packed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if std::mem::size_of::<T>() == 0 {
            // No bytes would say how many: one zero byte per value, as the decoder expects.
            return s.serialize_bytes(&vec![0u8; self.0.len()]);
        }
        s.serialize_bytes(bytemuck::cast_slice(&self.0))
    }
}

impl<'de, T: Pod> Deserialize<'de> for Packed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes<T>(PhantomData<T>);
        impl<T: Pod> Visitor<'_> for Bytes<T> {
            type Value = Packed<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a block of {}-byte values", std::mem::size_of::<T>())
            }
            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Packed<T>, E> {
                let size = std::mem::size_of::<T>().max(1);
                if bytes.len() % size != 0 {
                    return Err(E::custom(format!(
                        "{} bytes are not a whole number of {size}-byte values",
                        bytes.len()
                    )));
                }
                if std::mem::size_of::<T>() == 0 {
                    return Ok(Packed(vec![T::zeroed(); bytes.len()]));
                }
                // Read into a Vec<T> in one pass (no zero-fill first), so alignment is T's
                // whatever the input's was (in 4 KiB pages, as the codec's vectors of numbers),
                // a large one with its pages' faults spread over the cores.
                Ok(Packed(multiproc_sys::memory::vec_from_bytes(bytes)))
            }
            fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Packed<T>, E> {
                self.visit_bytes(&bytes)
            }
        }
        d.deserialize_bytes(Bytes(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_ragged_bytes() {
        let v = Packed(vec![1.5f64, -2.0, f64::MAX]);
        let bytes = postcard::to_stdvec(&v).unwrap();
        assert_eq!(bytes.len(), 1 + 24, "a length and the raw bytes");
        assert_eq!(postcard::from_bytes::<Packed<f64>>(&bytes).unwrap(), v);
        let ragged = postcard::to_stdvec(&Packed(vec![1u8; 7])).unwrap();
        assert!(postcard::from_bytes::<Packed<f64>>(&ragged).is_err());
        let units = postcard::to_stdvec(&Packed(vec![(); 5])).unwrap();
        assert_eq!(postcard::from_bytes::<Packed<()>>(&units).unwrap().len(), 5);
        let empty = postcard::to_stdvec(&Packed::<u32>(vec![])).unwrap();
        assert!(postcard::from_bytes::<Packed<u32>>(&empty)
            .unwrap()
            .is_empty());
    }
}
