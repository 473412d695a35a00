//! [`Packed`]: a vector of plain numbers that crosses to a worker as one block of bytes, and
//! that a worker may read where it arrived instead of copying it ([`lend`]).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;

use bytemuck::Pod;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

mod lend;

pub use lend::{lend, LoanOwner, LEND_ALIGN, LEND_MIN};

/// A vector of plain numbers (`f64`, `u8`, `i32`, ... any [`bytemuck::Pod`]) that serializes
/// as one block of bytes: one `memcpy` on the sending side, and on the receiving side one
/// `memcpy` — or none, where the block arrived in shared memory ([`lend`]).
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
/// let samples = Packed::new(vec![1.0, 2.0, 3.0, 6.0]);
/// assert_eq!(mean(samples), 3.0);
/// ```
///
/// ## Read where it arrived
///
/// A large argument (from [`LEND_MIN`] bytes) reaches a process pool's worker in a
/// shared-memory buffer, and a large result reaches the caller in one. A `Packed` decoded
/// there is *lent* that memory rather than copied out of it ([`is_lent`](Self::is_lent)): the
/// task reads its argument where the pool wrote it, the caller its result where the worker
/// wrote it, and 100 MiB cost the receiver no copy and no fresh pages. The lent values are
/// read-only; the first write through [`DerefMut`], [`as_mut_slice`](Self::as_mut_slice) or
/// [`to_mut`](Self::to_mut) copies them into a vector of its own first (as a `Cow` does), and
/// [`into_inner`](Self::into_inner) copies them out. A lent `Packed` may be kept as long as
/// you like (in a static, sent to a thread, a forked child's copy): its sender does not write
/// that buffer again while it is. It holds the whole buffer it arrived in, so to keep a small
/// part of a large one, copy that part out (`p[a..b].to_vec()`).
///
/// The bytes are the values' in-memory representation, so both sides must agree on it —
/// always true between a pool and its workers (the same binary on the same machine).
pub struct Packed<T: Pod> {
    data: Data<T>,
}

enum Data<T: Pod> {
    Owned(Vec<T>),
    Lent(Lent<T>),
}

/// Values in memory that a decoder lent ([`lend`]).
struct Lent<T> {
    ptr: NonNull<T>,
    len: usize,
    /// Keeps the memory valid and unchanged while alive (the contract of [`lend`]).
    owner: LoanOwner,
}

// SAFETY: a lent `Packed` reads `len` values of `T` that nothing writes while `owner` lives
// (the contract of `lend`), so it is a shared read-only slice plus an `Arc`: `Send` and `Sync`
// exactly when `&[T]` is; an owned one is a `Vec<T>`.
unsafe impl<T: Pod + Send + Sync> Send for Packed<T> {}
// SAFETY: as `Send`: `&Packed<T>` only reads.
unsafe impl<T: Pod + Sync> Sync for Packed<T> {}

impl<T: Pod> Packed<T> {
    /// The values of `values`.
    pub fn new(values: Vec<T>) -> Self {
        Packed {
            data: Data::Owned(values),
        }
    }

    /// The values, as a vector (a copy, for lent values).
    pub fn into_inner(self) -> Vec<T> {
        match self.data {
            Data::Owned(v) => v,
            Data::Lent(lent) => lent.as_slice().to_vec(),
        }
    }

    /// The values.
    pub fn as_slice(&self) -> &[T] {
        match &self.data {
            Data::Owned(v) => v,
            Data::Lent(lent) => lent.as_slice(),
        }
    }

    /// The values, writable (lent values are copied into a vector of their own first).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        self.to_mut()
    }

    /// The vector of values, for changes of length too (lent values are copied into a
    /// vector of their own first).
    ///
    /// ```
    /// let mut p = multiproc_core::Packed::new(vec![1u32, 2]);
    /// p.to_mut().push(3);
    /// assert_eq!(&*p, &[1, 2, 3]);
    /// ```
    pub fn to_mut(&mut self) -> &mut Vec<T> {
        if let Data::Lent(lent) = &self.data {
            self.data = Data::Owned(lent.as_slice().to_vec());
        }
        match &mut self.data {
            Data::Owned(v) => v,
            Data::Lent(_) => unreachable!("made owned above"),
        }
    }

    /// Whether the values are read where they arrived, in memory a decoder lent ([`lend`]),
    /// rather than from a vector of this value's own.
    pub fn is_lent(&self) -> bool {
        matches!(self.data, Data::Lent(_))
    }
}

impl<T> Lent<T> {
    fn as_slice(&self) -> &[T] {
        // SAFETY: `ptr` is aligned for `T` and points to `len` initialised values (a `Pod`
        // type: any bytes are valid values) inside the memory the decoder lent, which stays
        // mapped and unchanged while `owner` lives (the contract of `lend`); `self` holds
        // `owner` for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Pod> Clone for Packed<T> {
    /// A copy of owned values; lent values are shared (the memory stays lent while any clone
    /// lives).
    fn clone(&self) -> Self {
        let data = match &self.data {
            Data::Owned(v) => Data::Owned(v.clone()),
            Data::Lent(lent) => Data::Lent(Lent {
                ptr: lent.ptr,
                len: lent.len,
                owner: Arc::clone(&lent.owner),
            }),
        };
        Packed { data }
    }
}

impl<T: Pod> Default for Packed<T> {
    fn default() -> Self {
        Packed::new(Vec::new())
    }
}

impl<T: Pod + PartialEq> PartialEq for Packed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Packed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Packed").field(&self.as_slice()).finish()
    }
}

impl<T: Pod> Deref for Packed<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Pod> DerefMut for Packed<T> {
    /// Lent values are copied into a vector of their own first.
    fn deref_mut(&mut self) -> &mut [T] {
        self.to_mut()
    }
}

impl<T: Pod> From<Vec<T>> for Packed<T> {
    fn from(v: Vec<T>) -> Self {
        Packed::new(v)
    }
}

impl<T: Pod> From<Packed<T>> for Vec<T> {
    fn from(p: Packed<T>) -> Self {
        p.into_inner()
    }
}

impl<T: Pod> FromIterator<T> for Packed<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Packed::new(iter.into_iter().collect())
    }
}

impl<T: Pod> Serialize for Packed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if std::mem::size_of::<T>() == 0 {
            // No bytes would say how many: one zero byte per value, as the decoder expects.
            return s.serialize_bytes(&vec![0u8; self.len()]);
        }
        s.serialize_bytes(bytemuck::cast_slice(self.as_slice()))
    }
}

impl<'de, T: Pod> Deserialize<'de> for Packed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes<T>(PhantomData<T>);
        impl<'de, T: Pod> Visitor<'de> for Bytes<T> {
            type Value = Packed<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a block of {}-byte values", std::mem::size_of::<T>())
            }
            fn visit_borrowed_bytes<E: de::Error>(self, bytes: &'de [u8]) -> Result<Packed<T>, E> {
                check_whole::<T, E>(bytes)?;
                let owner = match std::mem::size_of::<T>() {
                    0 => None,
                    _ => lend::owner_of(bytes, std::mem::align_of::<T>()),
                };
                if let Some(owner) = owner {
                    let ptr = NonNull::from(bytes).cast::<T>();
                    let len = bytes.len() / std::mem::size_of::<T>();
                    return Ok(Packed {
                        data: Data::Lent(Lent { ptr, len, owner }),
                    });
                }
                Ok(copied(bytes))
            }
            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Packed<T>, E> {
                check_whole::<T, E>(bytes)?;
                Ok(copied(bytes))
            }
            fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Packed<T>, E> {
                self.visit_bytes(&bytes)
            }
        }
        d.deserialize_bytes(Bytes(PhantomData))
    }
}

/// The values of `bytes`, a whole number of `T`s ([`check_whole`]), copied into a vector.
fn copied<T: Pod>(bytes: &[u8]) -> Packed<T> {
    if std::mem::size_of::<T>() == 0 {
        return Packed::new(vec![T::zeroed(); bytes.len()]);
    }
    // Read into a Vec<T> in one pass (no zero-fill first), so alignment is T's whatever the
    // input's was (in 4 KiB pages, as the codec's vectors of numbers), a large one with its
    // pages' faults spread over the cores.
    Packed::new(multiproc_sys::memory::vec_from_bytes(bytes))
}

/// Whether `bytes` are a whole number of `T`s (one byte per value for a zero-sized `T`).
fn check_whole<T, E: de::Error>(bytes: &[u8]) -> Result<(), E> {
    let size = std::mem::size_of::<T>().max(1);
    if bytes.len() % size != 0 {
        return Err(E::custom(format!(
            "{} bytes are not a whole number of {size}-byte values",
            bytes.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
