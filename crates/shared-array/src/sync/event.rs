//! [`ProcessEvent`]: Python's `multiprocessing.Event`.

use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::time::Duration;

use multiproc_core::{Event, Result, SyncPrimitive};
use multiproc_sys::futex::{Futex, Wake};

use super::layout::{attach, create, u32s, Kind, LOCK_BYTES};
use super::robust::deadline_of;
use crate::os::{self, Deadline};
use crate::ShmBuffer;

/// A process-shared event (Python's `multiprocessing.Event`).
///
/// One futex word holds the flag (bit 0) and a generation count (the other bits), bumped by
/// every `set`: a waiter that was asleep when the event was set returns `true` even if it was
/// cleared again before the waiter ran, as in Python.
#[derive(Debug)]
pub struct ProcessEvent {
    buf: ShmBuffer,
}

const EVENT: usize = 64 / 4;

impl ProcessEvent {
    /// A new, clear event.
    pub fn new() -> Result<Self> {
        Ok(ProcessEvent {
            buf: create(Kind::Event, LOCK_BYTES)?,
        })
    }

    /// Attaches to an event received from another process.
    pub fn from_buffer(buf: ShmBuffer) -> Result<Self> {
        attach(&buf, Kind::Event, LOCK_BYTES)?;
        Ok(ProcessEvent { buf })
    }

    /// The shared memory holding the event, to send to another process. Its bytes are the event's
    /// alone: the [`SharedBuffer`](multiproc_core::SharedBuffer) byte and word accessors refuse it
    /// ([`AccessWidth::Structured`](multiproc_core::AccessWidth::Structured)).
    pub fn buffer(&self) -> &ShmBuffer {
        &self.buf
    }

    fn word(&self) -> &AtomicU32 {
        &u32s(&self.buf)[EVENT]
    }

    fn wait_until(&self, deadline: Deadline) -> bool {
        let w = self.word();
        let seen = w.load(Acquire);
        if seen & 1 == 1 {
            return true;
        }
        loop {
            let r = Futex::new(w).wait_until(seen, deadline);
            let now = w.load(Acquire);
            if now & 1 == 1 || now >> 1 != seen >> 1 {
                return true;
            }
            if r == Wake::TimedOut || os::expired(deadline, os::mono_now()) {
                return false;
            }
        }
    }
}

impl SyncPrimitive for ProcessEvent {
    fn kind(&self) -> &'static str {
        "ProcessEvent"
    }
}

impl Event for ProcessEvent {
    fn set(&self) -> Result<()> {
        let w = self.word();
        let changed = w
            .fetch_update(SeqCst, Relaxed, |v| {
                (v & 1 == 0).then_some(v.wrapping_add(2) | 1)
            })
            .is_ok();
        if changed {
            Futex::new(w).wake(usize::MAX);
        }
        Ok(())
    }

    fn clear(&self) -> Result<()> {
        self.word().fetch_and(!1, SeqCst);
        Ok(())
    }

    fn is_set(&self) -> bool {
        self.word().load(Acquire) & 1 == 1
    }

    fn wait(&self) -> Result<()> {
        self.wait_until(None);
        Ok(())
    }

    fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.wait_until(deadline_of(timeout)))
    }
}
