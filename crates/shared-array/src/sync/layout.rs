//! The memory layout every primitive shares: the header (magic number, kind), the
//! Structured atomic views of a primitive's buffer, `create`/`attach`, and the lock's offsets.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};

use multiproc_core::{AccessWidth, Error, Result, SharedBuffer};

use crate::ShmBuffer;

const MAGIC: u32 = u32::from_le_bytes(*b"mpsy");

/// The kind tags stored in each primitive's header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub(super) enum Kind {
    Lock = 1,
    RLock = 2,
    Event = 3,
    Condition = 4,
    Semaphore = 5,
    Barrier = 6,
}

// ----------------------------------------------------------------------------------------------
// Memory layout helpers
// ----------------------------------------------------------------------------------------------

// The layout views below are only made of buffers whose AccessWidth is Structured (fixed by
// `create`, checked by `attach`): nothing but this module's code accesses their bytes, and it
// accesses every location always in the same size — the header and the u32 fields as u32s,
// the lock words and the u64 fields as u64s, at the fixed offsets below, which never overlap.

pub(super) fn u32s(buf: &ShmBuffer) -> &[AtomicU32] {
    // SAFETY: the mapping is page-aligned and valid for `len` bytes while `buf` lives;
    // AtomicU32 has u32's layout and allows shared concurrent access, and any bit pattern is a
    // valid u32. The buffer is Structured (see above): each location is accessed in one size.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<AtomicU32>(), buf.len() / 4) }
}

pub(super) fn u64s(buf: &ShmBuffer) -> &[AtomicU64] {
    // SAFETY: as for `u32s`, with 8-byte words (the mapping is page-aligned).
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<AtomicU64>(), buf.len() / 8) }
}

/// A new buffer of `len` bytes, Structured, whose header says `kind`.
pub(super) fn create(kind: Kind, len: usize) -> Result<ShmBuffer> {
    let buf = ShmBuffer::new(len)?;
    buf.claim_width(AccessWidth::Structured, "buffer")?;
    u32s(&buf)[1].store(kind as u32, Relaxed);
    u32s(&buf)[0].store(MAGIC, Release);
    Ok(buf)
}

/// Checks that a received buffer holds a primitive of `kind` and is at least `len` bytes.
///
/// Only a Structured buffer is read at all: any other width means that other views access
/// the bytes in their own size (and a buffer whose width is not fixed never held a primitive,
/// since `create` fixes it) — and claiming it here would take it from its owner.
pub(super) fn attach(buf: &ShmBuffer, kind: Kind, len: usize) -> Result<()> {
    if !matches!(
        buf.access_width(),
        Ok(Some(multiproc_core::AccessWidth::Structured))
    ) {
        return Err(Error::invalid(
            "buffer",
            format!(
                "does not hold a process-shared {kind:?} (its memory is not a primitive's: \
                 it is unused or accessed as {})",
                match buf.access_width() {
                    Ok(Some(w)) => format!("{w:?} units"),
                    Ok(None) => "nothing yet".to_owned(),
                    Err(_) => "an unknown width".to_owned(),
                }
            ),
        ));
    }
    if buf.len() < len
        || u32s(buf)[0].load(Acquire) != MAGIC
        || u32s(buf)[1].load(Relaxed) != kind as u32
    {
        return Err(Error::invalid(
            "buffer",
            format!("does not hold a process-shared {kind:?}"),
        ));
    }
    Ok(())
}

// Byte offsets (all primitives): header at 0..8; state from 64 on.
pub(super) const WORD: usize = 64 / 8; // u64 index of the lock word
pub(super) const COUNT: usize = 72 / 4; // u32 index of the RLock recursion count
pub(super) const PINS: usize = 76 / 4; // u32 index of holds pinned by ArrayGuards
pub(super) const LOCK_BYTES: usize = 128;
