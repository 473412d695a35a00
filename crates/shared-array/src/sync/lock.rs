//! [`ProcessLock`]: Python's `multiprocessing.Lock`.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::time::Duration;

use multiproc_core::{Error, Lock, Result, SyncPrimitive};

use super::layout::{attach, create, u64s, Kind, LOCK_BYTES, WORD};
use super::robust::{deadline_of, raw_lock, raw_unlock, Acquired};
use crate::os::{self, Deadline};
use crate::ShmBuffer;

/// A robust process-shared lock (Python's `multiprocessing.Lock`).
///
/// Any thread of any process that shares it may release it, as in Python. If the process that
/// holds it dies, the next acquirer gets [`Error::OwnerDied`] and holds the lock afterwards;
/// the lock keeps working. See the [module docs](crate::sync) for the mechanism.
#[derive(Debug)]
pub struct ProcessLock {
    buf: ShmBuffer,
}

impl ProcessLock {
    /// A new, unlocked lock in its own shared memory.
    pub fn new() -> Result<Self> {
        Ok(ProcessLock {
            buf: create(Kind::Lock, LOCK_BYTES)?,
        })
    }

    /// Attaches to a lock received from another process (see [`buffer`](Self::buffer)).
    pub fn from_buffer(buf: ShmBuffer) -> Result<Self> {
        attach(&buf, Kind::Lock, LOCK_BYTES)?;
        Ok(ProcessLock { buf })
    }

    /// The shared memory holding the lock, to send to another process (or
    /// [`try_clone`](ShmBuffer::try_clone) for [`from_buffer`](Self::from_buffer)). Its bytes are
    /// the lock's alone: the [`SharedBuffer`](multiproc_core::SharedBuffer) byte and word accessors
    /// refuse it ([`AccessWidth::Structured`](multiproc_core::AccessWidth::Structured)).
    pub fn buffer(&self) -> &ShmBuffer {
        &self.buf
    }

    pub(super) fn word(&self) -> &AtomicU64 {
        &u64s(&self.buf)[WORD]
    }

    fn acquire_until(&self, deadline: Deadline) -> Result<bool> {
        match raw_lock(self.word(), os::me(), deadline) {
            Acquired::Yes => Ok(true),
            Acquired::OwnerDied => Err(Error::OwnerDied),
            Acquired::TimedOut => Ok(false),
        }
    }
}

impl SyncPrimitive for ProcessLock {
    fn kind(&self) -> &'static str {
        "ProcessLock"
    }
}

impl Lock for ProcessLock {
    /// Blocks until acquired. `Err(OwnerDied)`: the previous holder died; the caller holds
    /// the lock now.
    #[inline]
    fn acquire(&self) -> Result<()> {
        self.acquire_until(None).map(|_| ())
    }

    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        if self
            .word()
            .compare_exchange(0, os::me(), Acquire, Relaxed)
            .is_ok()
        {
            return Ok(true);
        }
        self.acquire_until(deadline_of(timeout))
    }

    #[inline]
    fn release(&self) -> Result<()> {
        if raw_unlock(self.word()) {
            Ok(())
        } else {
            Err(Error::NotHeld("release of an unlocked Lock"))
        }
    }

    fn locked(&self) -> bool {
        self.word().load(Relaxed) != 0
    }
}
