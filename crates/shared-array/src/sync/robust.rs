//! The robust lock on one futex word (see [the module docs](super#the-robust-lock)): `raw_lock`,
//! owner-died takeover, and the recursive `RawRLock` that `ProcessRLock` and
//! `ProcessCondition` build on.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use multiproc_core::{Error, Result};
use multiproc_sys::futex::Futex;

use crate::os::{self, Deadline, WAITERS};

/// How long a waiter sleeps before checking whether the holder is still alive.
pub(super) const LIVENESS_SLICE: Duration = Duration::from_millis(50);
/// Spins before sleeping on a contended lock.
const SPINS: u32 = 200;

// ----------------------------------------------------------------------------------------------
// The raw robust lock on one word
// ----------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    Yes,
    OwnerDied,
    TimedOut,
}

#[inline]
pub(super) fn raw_lock(word: &AtomicU64, me: u64, deadline: Deadline) -> Acquired {
    if word.compare_exchange(0, me, Acquire, Relaxed).is_ok() {
        return Acquired::Yes;
    }
    raw_lock_slow(word, me, deadline)
}

#[cold]
fn raw_lock_slow(word: &AtomicU64, me: u64, deadline: Deadline) -> Acquired {
    let mut now = os::mono_now();
    if !os::expired(deadline, now) {
        for _ in 0..SPINS {
            if word.load(Relaxed) == 0
                && word.compare_exchange_weak(0, me, Acquire, Relaxed).is_ok()
            {
                return Acquired::Yes;
            }
            std::hint::spin_loop();
        }
        now = os::mono_now();
    }
    let mut slept = false;
    let mut check_at = now + LIVENESS_SLICE;
    loop {
        let cur = word.load(Relaxed);
        if cur == 0 {
            // After sleeping, others may sleep too: keep the flag so release wakes them.
            let new = if slept { me | WAITERS } else { me };
            if word.compare_exchange(0, new, Acquire, Relaxed).is_ok() {
                return Acquired::Yes;
            }
            continue;
        }
        let timed_out = os::expired(deadline, now);
        if timed_out || now >= check_at {
            check_at = now + LIVENESS_SLICE;
            if !os::holder_alive(cur) {
                if word
                    .compare_exchange(cur, me | WAITERS, Acquire, Relaxed)
                    .is_ok()
                {
                    return Acquired::OwnerDied;
                }
                continue;
            }
            if timed_out {
                return Acquired::TimedOut;
            }
        }
        if cur & WAITERS == 0
            && word
                .compare_exchange(cur, cur | WAITERS, Relaxed, Relaxed)
                .is_err()
        {
            continue;
        }
        let until = match deadline {
            Some(d) => d.min(check_at),
            None => check_at,
        };
        Futex::low_half(word).wait_until((cur | WAITERS) as u32, Some(until));
        slept = true;
        now = os::mono_now();
    }
}

/// Releases the word; returns whether it was held.
#[inline]
pub(super) fn raw_unlock(word: &AtomicU64) -> bool {
    let old = word.swap(0, Release);
    if old & WAITERS != 0 {
        Futex::low_half(word).wake(1);
    }
    old != 0
}

/// The re-entrant lock algorithm on (word, count, pins), shared by ProcessRLock and the
/// Condition's embedded lock.
#[derive(Clone, Copy)]
pub(super) struct RawRLock<'a> {
    pub(super) word: &'a AtomicU64,
    pub(super) count: &'a AtomicU32,
    pub(super) pins: &'a AtomicU32,
}

impl RawRLock<'_> {
    pub(super) fn owned(&self, me: u64) -> bool {
        self.word.load(Relaxed) & !WAITERS == me
    }

    pub(super) fn acquire(&self, deadline: Deadline) -> Result<bool> {
        let me = os::me();
        if self.owned(me) {
            let c = self.count.load(Relaxed);
            let c = c
                .checked_add(1)
                .ok_or_else(|| Error::invalid("self", "RLock recursion depth overflows u32"))?;
            self.count.store(c, Relaxed);
            return Ok(true);
        }
        match raw_lock(self.word, me, deadline) {
            Acquired::Yes => {
                self.count.store(1, Relaxed);
                Ok(true)
            }
            Acquired::OwnerDied => {
                self.count.store(1, Relaxed);
                self.pins.store(0, Relaxed);
                Err(Error::OwnerDied)
            }
            Acquired::TimedOut => Ok(false),
        }
    }

    pub(super) fn release(&self) -> Result<()> {
        if !self.owned(os::me()) {
            return Err(Error::NotHeld(
                "RLock released by a thread that does not own it",
            ));
        }
        let c = self.count.load(Relaxed);
        if c <= self.pins.load(Relaxed) {
            return Err(Error::NotHeld(
                "the remaining hold on this lock belongs to a live ArrayGuard; drop the guard",
            ));
        }
        if c > 1 {
            self.count.store(c - 1, Relaxed);
        } else {
            self.count.store(0, Relaxed);
            raw_unlock(self.word);
        }
        Ok(())
    }

    /// Releases every hold (for Condition::wait); returns the depth to restore.
    pub(super) fn release_all(&self) -> u32 {
        let c = self.count.swap(0, Relaxed);
        raw_unlock(self.word);
        c
    }

    /// Re-acquires after `release_all`; `Err(OwnerDied)` still leaves the lock held at `depth`.
    pub(super) fn restore(&self, depth: u32) -> Result<()> {
        let r = match raw_lock(self.word, os::me(), None) {
            Acquired::Yes => Ok(()),
            Acquired::OwnerDied => {
                self.pins.store(0, Relaxed);
                Err(Error::OwnerDied)
            }
            Acquired::TimedOut => unreachable!("no deadline"),
        };
        self.count.store(depth, Relaxed);
        r
    }

    pub(super) fn depth(&self) -> usize {
        if self.owned(os::me()) {
            self.count.load(Relaxed) as usize
        } else {
            0
        }
    }
}

pub(super) fn deadline_of(timeout: Duration) -> Deadline {
    os::deadline_after(timeout)
}
