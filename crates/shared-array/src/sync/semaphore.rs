//! [`ProcessSemaphore`]: Python's `multiprocessing.Semaphore` and `BoundedSemaphore`.

use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use std::time::Duration;

use multiproc_core::sync::checked_release;
use multiproc_core::{Error, Result, Semaphore, SyncPrimitive};
use multiproc_sys::futex::Futex;

use super::layout::{attach, create, u32s, Kind, LOCK_BYTES};
use super::robust::deadline_of;
use crate::os::{self, Deadline};
use crate::ShmBuffer;

/// A process-shared counting semaphore (Python's `Semaphore`; with
/// [`bounded`](Self::bounded), `BoundedSemaphore`).
///
/// The counter is a futex word; sleepers register in a second word so that `release` makes a
/// wake-up system call only when someone sleeps. Values are limited to `u32::MAX`.
/// A semaphore has no owner (as in Python): a process that dies after `acquire` does not give
/// its unit back.
#[derive(Debug)]
pub struct ProcessSemaphore {
    buf: ShmBuffer,
}

const SEM_COUNT: usize = 64 / 4;
const SEM_SLEEPERS: usize = 68 / 4;
const SEM_BOUND: usize = 72 / 4;
const SEM_BOUNDED: usize = 76 / 4;

impl ProcessSemaphore {
    /// A semaphore starting at `value` (at most `u32::MAX`, else an error naming `value`).
    pub fn new(value: usize) -> Result<Self> {
        Self::create(value, false)
    }

    /// A bounded semaphore (Python's `BoundedSemaphore`): releasing above `value` is
    /// [`Error::InvalidArgument`] and changes nothing.
    pub fn bounded(value: usize) -> Result<Self> {
        Self::create(value, true)
    }

    fn create(value: usize, bounded: bool) -> Result<Self> {
        let v = u32::try_from(value).map_err(|_| {
            Error::invalid("value", format!("{value} is above the limit {}", u32::MAX))
        })?;
        let buf = create(Kind::Semaphore, LOCK_BYTES)?;
        let w = u32s(&buf);
        w[SEM_COUNT].store(v, Relaxed);
        w[SEM_BOUND].store(v, Relaxed);
        w[SEM_BOUNDED].store(u32::from(bounded), Release);
        Ok(ProcessSemaphore { buf })
    }

    /// Attaches to a semaphore received from another process.
    pub fn from_buffer(buf: ShmBuffer) -> Result<Self> {
        attach(&buf, Kind::Semaphore, LOCK_BYTES)?;
        Ok(ProcessSemaphore { buf })
    }

    /// The shared memory holding the semaphore, to send to another process. Its bytes are the
    /// semaphore's alone: the [`SharedBuffer`](multiproc_core::SharedBuffer) byte and word
    /// accessors refuse it ([`AccessWidth::Structured`](multiproc_core::AccessWidth::Structured)).
    pub fn buffer(&self) -> &ShmBuffer {
        &self.buf
    }

    fn w(&self, i: usize) -> &AtomicU32 {
        &u32s(&self.buf)[i]
    }

    fn acquire_until(&self, deadline: Deadline) -> bool {
        let count = self.w(SEM_COUNT);
        loop {
            let c = count.load(SeqCst);
            if c > 0 {
                if count
                    .compare_exchange_weak(c, c - 1, SeqCst, Relaxed)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            if os::expired(deadline, os::mono_now()) {
                return false;
            }
            let sleepers = self.w(SEM_SLEEPERS);
            sleepers.fetch_add(1, SeqCst);
            Futex::new(count).wait_until(0, deadline);
            sleepers.fetch_sub(1, SeqCst);
        }
    }
}

impl SyncPrimitive for ProcessSemaphore {
    fn kind(&self) -> &'static str {
        if self.is_bounded() {
            "ProcessBoundedSemaphore"
        } else {
            "ProcessSemaphore"
        }
    }
}

impl Semaphore for ProcessSemaphore {
    fn acquire(&self) -> Result<()> {
        self.acquire_until(None);
        Ok(())
    }

    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.acquire_until(deadline_of(timeout)))
    }

    fn release(&self, n: usize) -> Result<()> {
        let bound = self
            .is_bounded()
            .then(|| self.w(SEM_BOUND).load(Relaxed) as usize);
        let count = self.w(SEM_COUNT);
        let mut c = count.load(SeqCst);
        loop {
            // The one release check of both families (n, the counter's range, the bound).
            let new = checked_release(c as usize, n, u32::MAX as usize, bound)? as u32;
            match count.compare_exchange_weak(c, new, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(actual) => c = actual,
            }
        }
        if self.w(SEM_SLEEPERS).load(SeqCst) > 0 {
            Futex::new(count).wake(n);
        }
        Ok(())
    }

    fn value(&self) -> usize {
        self.w(SEM_COUNT).load(Relaxed) as usize
    }

    fn is_bounded(&self) -> bool {
        self.w(SEM_BOUNDED).load(Relaxed) != 0
    }
}
