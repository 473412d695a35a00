//! [`ProcessRLock`]: Python's `multiprocessing.RLock` (and the lock of `Array` and `Value`).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use multiproc_core::{Error, Lock, RLock, Result, SyncPrimitive};

use super::layout::{attach, create, u32s, u64s, Kind, COUNT, LOCK_BYTES, PINS, WORD};
use super::robust::{deadline_of, RawRLock};
use crate::os::{self};
use crate::ShmBuffer;

/// A robust process-shared re-entrant lock (Python's `multiprocessing.RLock`).
///
/// Its owner is a thread of a process, identified by `(pid, tid)`: another thread of the same
/// process does not own it. Only the owner may release it. If the owner's process dies, the
/// next acquirer gets [`Error::OwnerDied`] and owns it once (depth 1).
#[derive(Debug)]
pub struct ProcessRLock {
    buf: ShmBuffer,
}

impl ProcessRLock {
    /// A new, unowned re-entrant lock in its own shared memory.
    pub fn new() -> Result<Self> {
        Ok(ProcessRLock {
            buf: create(Kind::RLock, LOCK_BYTES)?,
        })
    }

    /// Attaches to an RLock received from another process.
    pub fn from_buffer(buf: ShmBuffer) -> Result<Self> {
        attach(&buf, Kind::RLock, LOCK_BYTES)?;
        Ok(ProcessRLock { buf })
    }

    /// The shared memory holding the lock, to send to another process (or
    /// [`try_clone`](ShmBuffer::try_clone) for [`from_buffer`](Self::from_buffer)). Its bytes are
    /// the lock's alone: the [`SharedBuffer`](multiproc_core::SharedBuffer) byte and word accessors
    /// refuse it ([`AccessWidth::Structured`](multiproc_core::AccessWidth::Structured)).
    pub fn buffer(&self) -> &ShmBuffer {
        &self.buf
    }

    fn raw(&self) -> RawRLock<'_> {
        raw_rlock(&self.buf)
    }

    /// Marks one hold of the calling owner as belonging to a guard that hands out references;
    /// `release` refuses to give that hold up (see `crate::ArrayGuard`).
    pub(crate) fn pin(&self) -> Result<()> {
        let raw = self.raw();
        if !raw.owned(os::me()) {
            return Err(Error::NotHeld("pin without holding the lock"));
        }
        if raw.pins.load(Relaxed) != 0 {
            return Err(Error::invalid(
                "self",
                "this thread already holds a guard of this array or value; use that guard",
            ));
        }
        raw.pins.store(raw.count.load(Relaxed), Relaxed);
        Ok(())
    }

    /// Undoes [`pin`](Self::pin) and releases that hold.
    pub(crate) fn unpin_release(&self) {
        let raw = self.raw();
        if raw.owned(os::me()) {
            raw.pins.store(0, Relaxed);
            let _ = raw.release();
        }
    }
}

pub(super) fn raw_rlock(buf: &ShmBuffer) -> RawRLock<'_> {
    RawRLock {
        word: &u64s(buf)[WORD],
        count: &u32s(buf)[COUNT],
        pins: &u32s(buf)[PINS],
    }
}

impl SyncPrimitive for ProcessRLock {
    fn kind(&self) -> &'static str {
        "ProcessRLock"
    }
}

impl Lock for ProcessRLock {
    fn acquire(&self) -> Result<()> {
        self.raw().acquire(None).map(|_| ())
    }

    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.raw().acquire(deadline_of(timeout))
    }

    fn release(&self) -> Result<()> {
        self.raw().release()
    }

    fn locked(&self) -> bool {
        self.raw().word.load(Relaxed) != 0
    }
}

impl RLock for ProcessRLock {
    fn recursion_depth(&self) -> usize {
        self.raw().depth()
    }

    fn is_owned(&self) -> bool {
        self.raw().owned(os::me())
    }
}
