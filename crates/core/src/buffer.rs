//! [`SharedBuffer`]: a byte region that every worker of an executor can read and write.
//!
//! [`HeapBuffer`] is the in-process implementation (threads share the heap); the
//! shared-memory implementation that forked and spawned workers can see lives in
//! `multiproc-shared-array`. Safe access goes through atomics, which are sound however many
//! threads or processes touch the bytes at once; typed bulk access is `unsafe` here and made
//! safe by the shared-array crate's types.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::error::{Error, Result};

/// A region of bytes that every worker of an executor sees, at one address per process.
///
/// # Safety
///
/// An implementor guarantees that for as long as the value lives:
/// - [`as_ptr`](SharedBuffer::as_ptr) is non-null, aligned to at least 8 bytes, and valid for
///   reads and writes of [`len`](SharedBuffer::len) bytes;
/// - the bytes are initialised (zeroed at creation) and are never moved or unmapped;
/// - the memory tolerates concurrent access from several threads (and, where the type says
///   so, processes) through atomic operations, i.e. it is not a `&mut`-owned region.
pub unsafe trait SharedBuffer: Send + Sync {
    /// The length in bytes.
    fn len(&self) -> usize;

    /// The start of the region.
    fn as_ptr(&self) -> *mut u8;

    /// Whether the region has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The region as atomic bytes: safe to read and write from any number of workers.
    fn as_atomic_bytes(&self) -> &[AtomicU8] {
        // SAFETY: the trait contract says the pointer is valid, initialised and shared for
        // `len` bytes while `self` lives; AtomicU8 has the layout of u8 and permits
        // concurrent access through a shared reference.
        unsafe { std::slice::from_raw_parts(self.as_ptr().cast::<AtomicU8>(), self.len()) }
    }

    /// The region as atomic 64-bit words (`len / 8` of them): counters and flags that
    /// workers update concurrently.
    fn as_atomic_u64s(&self) -> &[AtomicU64] {
        // SAFETY: as above; the contract guarantees 8-byte alignment, and `len / 8` whole
        // words fit in `len` bytes.
        unsafe { std::slice::from_raw_parts(self.as_ptr().cast::<AtomicU64>(), self.len() / 8) }
    }

    /// Copies `src` into the region at `offset`.
    fn write_at(&self, offset: usize, src: &[u8]) -> Result<()> {
        let dst = checked_range(self.len(), offset, src.len())?;
        for (d, s) in self.as_atomic_bytes()[dst].iter().zip(src) {
            d.store(*s, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Copies bytes at `offset` into `dst`.
    fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        let src = checked_range(self.len(), offset, dst.len())?;
        for (d, s) in dst.iter_mut().zip(&self.as_atomic_bytes()[src]) {
            *d = s.load(Ordering::Relaxed);
        }
        Ok(())
    }
}

fn checked_range(len: usize, offset: usize, count: usize) -> Result<std::ops::Range<usize>> {
    let end = offset
        .checked_add(count)
        .filter(|&end| end <= len)
        .ok_or_else(|| {
            Error::invalid(
                "offset",
                format!("{count} bytes at offset {offset} do not fit in a buffer of {len} bytes"),
            )
        })?;
    Ok(offset..end)
}

/// A [`SharedBuffer`] on the heap: shared by the threads of one process.
///
/// Forked children get a private copy of it (copy-on-write), so it is *not* shared with
/// process workers; use the shared-array crate's buffer for that.
pub struct HeapBuffer {
    words: Box<[AtomicU64]>,
    len: usize,
}

impl std::fmt::Debug for HeapBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapBuffer")
            .field("len", &self.len)
            .finish()
    }
}

impl HeapBuffer {
    /// A zeroed buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Result<Self> {
        let words = len.div_ceil(8);
        if words > isize::MAX as usize / 8 {
            return Err(Error::invalid("len", format!("{len} bytes is too large")));
        }
        Ok(HeapBuffer {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            len,
        })
    }
}

// SAFETY: the boxed slice is 8-aligned, zero-initialised, never moved (the box's heap
// allocation is stable), at least `len` bytes long, and made of atomics, which allow shared
// concurrent access.
unsafe impl SharedBuffer for HeapBuffer {
    fn len(&self) -> usize {
        self.len
    }

    fn as_ptr(&self) -> *mut u8 {
        if self.words.is_empty() {
            return std::ptr::NonNull::<u64>::dangling().as_ptr().cast();
        }
        self.words.as_ptr().cast_mut().cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_buffer_reads_what_was_written() {
        let b = HeapBuffer::zeroed(20).unwrap();
        assert_eq!(b.len(), 20);
        assert_eq!(b.as_atomic_u64s().len(), 2);
        b.write_at(3, b"hello").unwrap();
        let mut out = [0u8; 5];
        b.read_at(3, &mut out).unwrap();
        assert_eq!(&out, b"hello");
        b.as_atomic_u64s()[1].fetch_add(5, Ordering::Relaxed);
        assert_eq!(b.as_atomic_u64s()[1].load(Ordering::Relaxed), 5);
    }

    #[test]
    fn out_of_range_access_is_an_error() {
        let b = HeapBuffer::zeroed(4).unwrap();
        assert!(matches!(
            b.write_at(2, b"abc"),
            Err(Error::InvalidArgument { name: "offset", .. })
        ));
        assert!(b.read_at(usize::MAX, &mut [0u8; 2]).is_err());
        let empty = HeapBuffer::zeroed(0).unwrap();
        assert!(empty.is_empty());
        assert!(empty.as_atomic_bytes().is_empty());
    }

    #[test]
    fn absurd_sizes_are_refused() {
        assert!(matches!(
            HeapBuffer::zeroed(usize::MAX),
            Err(Error::InvalidArgument { name: "len", .. })
        ));
    }
}
