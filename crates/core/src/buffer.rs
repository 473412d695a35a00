//! [`SharedBuffer`]: a byte region that every worker of an executor can read and write.
//!
//! [`HeapBuffer`] is the in-process implementation (threads share the heap); the
//! shared-memory implementation that forked and spawned workers can see lives in
//! `multiproc-shared-array`. Safe access goes through atomics, which are sound however many
//! threads or processes touch the bytes at once; typed bulk access is `unsafe` here and made
//! safe by the shared-array crate's types.
//!
//! # One access width per region
//!
//! Atomics make concurrent access sound only when the racing accesses have the *same size*:
//! a 1-byte atomic store racing with a 64-bit atomic on the same bytes is undefined behaviour
//! by Rust's rules (as in C++; Miri reports it). So a region is accessed in one
//! [`AccessWidth`] for its whole life: the first typed view fixes it
//! ([`claim_width`](SharedBuffer::claim_width): the byte API claims [`AccessWidth::U8`],
//! [`as_atomic_u64s`](SharedBuffer::as_atomic_u64s) [`AccessWidth::U64`], the shared-array
//! crate's typed arrays the width of their element's atomic unit, its process-shared
//! primitives [`AccessWidth::Structured`]), and a view of another width is refused. The record
//! is one word that every handle of the region sees — for shared memory, a word *in* the
//! shared memory, so the width holds across forks and descriptor hand-offs.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::error::{Error, Result};

/// The one size in which a shared region's bytes are accessed atomically.
///
/// Atomics make races sound only between accesses of the *same size*: a 1-byte atomic store
/// racing a 64-bit atomic on the same bytes is undefined behaviour by Rust's rules (Miri reports
/// it). So a [`SharedBuffer`] is accessed in one width for its whole life: the first typed view
/// fixes it ([`SharedBuffer::claim_width`]) and views of another width are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AccessWidth {
    /// 1-byte atomics: the byte API ([`write_at`](SharedBuffer::write_at),
    /// [`read_at`](SharedBuffer::read_at), [`as_atomic_bytes`](SharedBuffer::as_atomic_bytes)),
    /// arrays of 1-aligned elements.
    U8,
    /// 2-byte atomics at 2-aligned offsets (arrays of 2-aligned elements).
    U16,
    /// 4-byte atomics at 4-aligned offsets (arrays of 4-aligned elements such as `f32`).
    U32,
    /// 8-byte atomics at 8-aligned offsets ([`as_atomic_u64s`](SharedBuffer::as_atomic_u64s),
    /// arrays of `u64`, `f64`, ...).
    U64,
    /// A fixed layout of words of several sizes at fixed offsets, owned by one type (a
    /// process-shared lock or other primitive): no generic view of any width is allowed.
    Structured,
}

impl AccessWidth {
    /// The width of a unit of `bytes` bytes (1, 2, 4 or 8), else `None`.
    pub fn of_size(bytes: usize) -> Option<Self> {
        match bytes {
            1 => Some(AccessWidth::U8),
            2 => Some(AccessWidth::U16),
            4 => Some(AccessWidth::U32),
            8 => Some(AccessWidth::U64),
            _ => None,
        }
    }

    /// The value stored in a region's width word (never 0, which means "not fixed yet").
    pub fn code(self) -> u32 {
        match self {
            AccessWidth::U8 => 1,
            AccessWidth::U16 => 2,
            AccessWidth::U32 => 4,
            AccessWidth::U64 => 8,
            AccessWidth::Structured => 0x5354_5255, // "STRU"
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        [
            AccessWidth::U8,
            AccessWidth::U16,
            AccessWidth::U32,
            AccessWidth::U64,
            AccessWidth::Structured,
        ]
        .into_iter()
        .find(|w| w.code() == code)
    }

    fn describe(self) -> &'static str {
        match self {
            AccessWidth::U8 => "1-byte units",
            AccessWidth::U16 => "2-byte units",
            AccessWidth::U32 => "4-byte units",
            AccessWidth::U64 => "8-byte words",
            AccessWidth::Structured => "the fixed layout of a process-shared primitive",
        }
    }
}

/// A region of bytes that every worker of an executor sees, at one address per process.
///
/// # Safety
///
/// An implementor guarantees that for as long as the value lives:
/// - [`as_ptr`](SharedBuffer::as_ptr) is non-null, aligned to at least 8 bytes, and valid for
///   reads and writes of [`len`](SharedBuffer::len) bytes;
/// - the bytes are initialised (zeroed at creation) and are never moved or unmapped;
/// - the memory tolerates concurrent access from several threads (and, where the type says
///   so, processes) through atomic operations, i.e. it is not a `&mut`-owned region;
/// - [`width_word`](SharedBuffer::width_word) is the *same* word for every handle of the region,
///   in every thread and process that can reach the bytes (for memory shared between
///   processes: a word in the shared memory, outside the `len` bytes), zero until a width is
///   claimed, and written only by [`claim_width`](SharedBuffer::claim_width).
pub unsafe trait SharedBuffer: Send + Sync {
    /// The length in bytes.
    fn len(&self) -> usize;

    /// The start of the region.
    fn as_ptr(&self) -> *mut u8;

    /// The word recording the region's [`AccessWidth`] (0: not fixed yet). Use
    /// [`access_width`](Self::access_width) and [`claim_width`](Self::claim_width).
    ///
    /// # Safety
    ///
    /// The caller only loads the word, or sets it from 0 with a compare-and-swap to the code
    /// of one [`AccessWidth`] (what `claim_width` does). Any other write — zeroing it, or
    /// storing another width — would let views of two widths race on the same bytes, which is
    /// undefined behaviour.
    unsafe fn width_word(&self) -> &AtomicU32;

    /// Whether the region has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The width the region's bytes are accessed in, if one was fixed. `Err` for a word that
    /// holds no width (memory from an untrusted sender): every access is refused then.
    fn access_width(&self) -> Result<Option<AccessWidth>> {
        // SAFETY: a load.
        match unsafe { self.width_word() }.load(Ordering::Acquire) {
            0 => Ok(None),
            code => AccessWidth::from_code(code).map(Some).ok_or_else(|| {
                Error::invalid(
                    "self",
                    format!("the region's width record holds {code:#x}, which is no width"),
                )
            }),
        }
    }

    /// Fixes the region's access width to `width`, or checks that it already is `width`.
    ///
    /// Errors: the region is already accessed in another width (or its record is garbage):
    /// [`Error::InvalidArgument`] naming `name`, saying which width it has — accessing it in
    /// another size would race with those accesses, which is undefined behaviour.
    fn claim_width(&self, width: AccessWidth, name: &'static str) -> Result<()> {
        // SAFETY: only a compare-and-swap from 0 to one width's code, below.
        let word = unsafe { self.width_word() };
        let code = width.code();
        let current = match word.load(Ordering::Acquire) {
            0 => match word.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(now) => now,
            },
            now => now,
        };
        if current == code {
            return Ok(());
        }
        let held = AccessWidth::from_code(current)
            .map_or("an unknown width (a corrupt record)", AccessWidth::describe);
        Err(Error::invalid(
            name,
            format!(
                "this shared memory is accessed as {held} (fixed by its first typed view); \
                 accessing it as {} too would race with those accesses (atomics of different \
                 sizes on the same bytes are undefined behaviour)",
                width.describe()
            ),
        ))
    }

    /// The region as atomic bytes (claims [`AccessWidth::U8`]).
    ///
    /// Errors: the region is accessed in another width (naming `self`).
    fn try_as_atomic_bytes(&self) -> Result<&[AtomicU8]> {
        self.claim_width(AccessWidth::U8, "self")?;
        // SAFETY: the trait contract says the pointer is valid, initialised and shared for
        // `len` bytes while `self` lives; AtomicU8 has the layout of u8 and permits
        // concurrent access through a shared reference; the region is accessed in 1-byte
        // units only (claimed above, and the claim never changes).
        Ok(unsafe { std::slice::from_raw_parts(self.as_ptr().cast::<AtomicU8>(), self.len()) })
    }

    /// The region as atomic 64-bit words, `len / 8` of them (claims [`AccessWidth::U64`]):
    /// counters and flags that workers update concurrently.
    ///
    /// Errors: the region is accessed in another width (naming `self`).
    fn try_as_atomic_u64s(&self) -> Result<&[AtomicU64]> {
        self.claim_width(AccessWidth::U64, "self")?;
        // SAFETY: as above; the contract guarantees 8-byte alignment, `len / 8` whole words
        // fit in `len` bytes, and the region is accessed in 8-byte words only.
        Ok(
            unsafe {
                std::slice::from_raw_parts(self.as_ptr().cast::<AtomicU64>(), self.len() / 8)
            },
        )
    }

    /// [`try_as_atomic_bytes`](Self::try_as_atomic_bytes), for a region known to be bytes.
    ///
    /// Panics if the region is accessed in another width (as `RefCell::borrow` panics where
    /// `try_borrow` errs).
    fn as_atomic_bytes(&self) -> &[AtomicU8] {
        self.try_as_atomic_bytes()
            .unwrap_or_else(|e| panic!("SharedBuffer::as_atomic_bytes: {e}"))
    }

    /// [`try_as_atomic_u64s`](Self::try_as_atomic_u64s), for a region known to be words.
    ///
    /// Panics if the region is accessed in another width.
    fn as_atomic_u64s(&self) -> &[AtomicU64] {
        self.try_as_atomic_u64s()
            .unwrap_or_else(|e| panic!("SharedBuffer::as_atomic_u64s: {e}"))
    }

    /// Copies `src` into the region at `offset`, with 1-byte atomic stores.
    ///
    /// Errors: out of range (naming `offset`); the region is accessed in another width
    /// (naming `self`).
    fn write_at(&self, offset: usize, src: &[u8]) -> Result<()> {
        let dst = checked_range(self.len(), offset, src.len())?;
        for (d, s) in self.try_as_atomic_bytes()?[dst].iter().zip(src) {
            d.store(*s, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Copies bytes at `offset` into `dst`, with 1-byte atomic loads. Errors as
    /// [`write_at`](Self::write_at).
    fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        let src = checked_range(self.len(), offset, dst.len())?;
        for (d, s) in dst.iter_mut().zip(&self.try_as_atomic_bytes()?[src]) {
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
///
/// Its [width record](SharedBuffer::width_word) is a field of the value: every thread that
/// can reach the bytes reaches them through this one value.
pub struct HeapBuffer {
    words: Box<[AtomicU64]>,
    len: usize,
    width: AtomicU32,
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
            width: AtomicU32::new(0),
        })
    }
}

// SAFETY: the boxed slice is 8-aligned, zero-initialised, never moved (the box's heap
// allocation is stable), at least `len` bytes long, and made of atomics, which allow shared
// concurrent access. The width word is a field of the one value every thread shares (a forked
// child gets a private copy-on-write copy of the bytes *and* of the word).
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

    unsafe fn width_word(&self) -> &AtomicU32 {
        &self.width
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_buffer_reads_what_was_written() {
        let b = HeapBuffer::zeroed(20).unwrap();
        assert_eq!(b.len(), 20);
        assert_eq!(b.access_width().unwrap(), None);
        b.write_at(3, b"hello").unwrap();
        let mut out = [0u8; 5];
        b.read_at(3, &mut out).unwrap();
        assert_eq!(&out, b"hello");
        assert_eq!(b.access_width().unwrap(), Some(AccessWidth::U8));
        let w = HeapBuffer::zeroed(20).unwrap();
        assert_eq!(w.as_atomic_u64s().len(), 2);
        w.as_atomic_u64s()[1].fetch_add(5, Ordering::Relaxed);
        assert_eq!(w.as_atomic_u64s()[1].load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_fixed_width_is_kept_and_others_are_refused() {
        let b = HeapBuffer::zeroed(16).unwrap();
        b.claim_width(AccessWidth::U32, "buf").unwrap();
        b.claim_width(AccessWidth::U32, "buf").unwrap();
        match b.claim_width(AccessWidth::U64, "buf") {
            Err(Error::InvalidArgument {
                name: "buf",
                reason,
            }) => {
                assert!(reason.contains("4-byte units"), "{reason}");
                assert!(reason.contains("8-byte words"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(b.try_as_atomic_u64s().is_err());
        assert!(b.try_as_atomic_bytes().is_err());
        assert!(std::panic::catch_unwind(|| b.as_atomic_u64s().len()).is_err());
        // A record corrupted from outside (a forged handoff): refused, never trusted.
        // SAFETY: breaks the contract on purpose; no view of `b` exists to race with.
        unsafe { b.width_word() }.store(12345, Ordering::Relaxed);
        assert!(b.access_width().is_err());
        assert!(b.claim_width(AccessWidth::U32, "buf").is_err());
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

    /// Issue 11, item 7: byte writes racing with 64-bit atomics on the same bytes are
    /// mixed-size atomic accesses, undefined behaviour by Rust's rules (Miri flags them). The
    /// first typed view fixes the region's width; a view of another width is refused.
    #[test]
    fn a_byte_write_beside_64_bit_atomics_is_refused() {
        let b = HeapBuffer::zeroed(16).unwrap();
        let words = b.as_atomic_u64s(); // the first typed view: 8-byte words
        std::thread::scope(|s| {
            s.spawn(|| words[0].fetch_add(1, Ordering::Relaxed));
            assert!(
                b.write_at(0, &[0xFF]).is_err(),
                "a 1-byte write raced a 64-bit atomic on the same word"
            );
        });
        assert_eq!(b.as_atomic_u64s()[0].load(Ordering::Relaxed), 1);
    }

    #[test]
    fn absurd_sizes_are_refused() {
        assert!(matches!(
            HeapBuffer::zeroed(usize::MAX),
            Err(Error::InvalidArgument { name: "len", .. })
        ));
    }
}
