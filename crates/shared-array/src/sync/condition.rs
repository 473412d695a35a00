//! [`ProcessCondition`]: Python's `multiprocessing.Condition`.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use multiproc_core::{Condition, Error, Lock, Result, SharedBuffer, SyncPrimitive};
use multiproc_sys::futex::{Futex, Wake};

use super::layout::{attach, create, u32s, u64s, Kind};
use super::rlock::raw_rlock;
use super::robust::{deadline_of, RawRLock};
use crate::os::{self, Deadline};
use crate::ShmBuffer;

/// A process-shared condition variable with its own re-entrant lock (Python's
/// `multiprocessing.Condition`).
///
/// Python's algorithm (a list of waiters, each sleeping on its own lock; `notify(n)` wakes the
/// `n` oldest) adapted to shared memory: the list is a fixed table of waiter slots, each a
/// futex word (`free`, `waiting`, `notified`) with a ticket that orders waiters. The table and
/// the ticket counter are only changed under the condition's lock, so `notify(1)` marks exactly
/// one waiter, and a waiter returns `true` only if its slot was marked: no spurious wake-ups.
/// A waiter that times out while being notified counts as notified, so no notification is
/// lost.
///
/// The table holds [`DEFAULT_WAITERS`](Self::DEFAULT_WAITERS) waiters unless made
/// [`with_capacity`](Self::with_capacity); one more concurrent waiter is an
/// [`Error::InvalidArgument`]. Slots of waiters whose process died are reclaimed when the table
/// is full; a notification given to a waiter that died meanwhile is lost with it.
#[derive(Debug)]
pub struct ProcessCondition {
    buf: ShmBuffer,
    capacity: usize,
}

const COND_TICKET: usize = 80 / 8;
const COND_CAPACITY: usize = 88 / 8;
/// u64 index of the spare words that ProcessBarrier keeps its state in.
const COND_EXTRA: usize = 96 / 8;
const COND_SLOTS: usize = 128;
const SLOT_BYTES: usize = 32;

const FREE: u32 = 0;
pub(super) const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;

impl ProcessCondition {
    /// Waiter slots of [`new`](Self::new).
    pub const DEFAULT_WAITERS: usize = 128;

    /// A new condition with its own re-entrant lock, for up to
    /// [`DEFAULT_WAITERS`](Self::DEFAULT_WAITERS) concurrent waiters.
    pub fn new() -> Result<Self> {
        Self::with_capacity(Self::DEFAULT_WAITERS)
    }

    /// A new condition for up to `waiters` concurrent waiters (at least 1).
    pub fn with_capacity(waiters: usize) -> Result<Self> {
        Self::create(Kind::Condition, waiters)
    }

    pub(super) fn create(kind: Kind, waiters: usize) -> Result<Self> {
        if waiters == 0 || waiters > (1 << 24) {
            return Err(Error::invalid(
                "waiters",
                format!("{waiters} is not in 1..=16777216"),
            ));
        }
        let buf = create(kind, COND_SLOTS + waiters * SLOT_BYTES)?;
        u64s(&buf)[COND_CAPACITY].store(waiters as u64, Release);
        Ok(ProcessCondition {
            buf,
            capacity: waiters,
        })
    }

    /// Attaches to a condition received from another process.
    pub fn from_buffer(buf: ShmBuffer) -> Result<Self> {
        Self::attach_kind(buf, Kind::Condition)
    }

    pub(super) fn attach_kind(buf: ShmBuffer, kind: Kind) -> Result<Self> {
        attach(&buf, kind, COND_SLOTS + SLOT_BYTES)?;
        let capacity = u64s(&buf)[COND_CAPACITY].load(Acquire) as usize;
        // Trust the stored capacity only as far as the mapping reaches.
        let capacity = capacity.min((buf.len() - COND_SLOTS) / SLOT_BYTES);
        Ok(ProcessCondition { buf, capacity })
    }

    /// The shared memory holding the condition, to send to another process. Its bytes are the
    /// condition's alone: the [`SharedBuffer`] byte and word accessors refuse it
    /// ([`AccessWidth::Structured`](multiproc_core::AccessWidth::Structured)).
    pub fn buffer(&self) -> &ShmBuffer {
        &self.buf
    }

    /// How many waiters it can hold at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock_raw(&self) -> RawRLock<'_> {
        raw_rlock(&self.buf)
    }

    pub(super) fn extra(&self, i: usize) -> &AtomicU64 {
        &u64s(&self.buf)[COND_EXTRA + i]
    }

    /// (state, ticket, owner) of slot `i`.
    pub(super) fn slot(&self, i: usize) -> (&AtomicU32, &AtomicU64, &AtomicU64) {
        let base = COND_SLOTS + i * SLOT_BYTES;
        (
            &u32s(&self.buf)[base / 4],
            &u64s(&self.buf)[base / 8 + 1],
            &u64s(&self.buf)[base / 8 + 2],
        )
    }

    fn require_owned(&self) -> Result<()> {
        if self.lock_raw().owned(os::me()) {
            Ok(())
        } else {
            Err(Error::NotHeld(
                "the Condition's lock is not held by the caller",
            ))
        }
    }

    /// Takes a free slot (under the lock).
    fn register(&self) -> Result<usize> {
        let find = || (0..self.capacity).find(|&i| self.slot(i).0.load(Relaxed) == FREE);
        let i = match find() {
            Some(i) => i,
            None => {
                for i in 0..self.capacity {
                    let (state, _, owner) = self.slot(i);
                    if state.load(Relaxed) != FREE && !os::holder_alive(owner.load(Relaxed)) {
                        state.store(FREE, Relaxed);
                    }
                }
                find().ok_or_else(|| {
                    Error::invalid(
                        "waiters",
                        format!(
                            "more than {} concurrent waiters; create the Condition with \
                             with_capacity",
                            self.capacity
                        ),
                    )
                })?
            }
        };
        let (state, ticket, owner) = self.slot(i);
        let t = u64s(&self.buf)[COND_TICKET].fetch_add(1, Relaxed);
        ticket.store(t, Relaxed);
        owner.store(os::me(), Relaxed);
        state.store(WAITING, Release);
        Ok(i)
    }

    pub(super) fn wait_until(&self, deadline: Deadline) -> Result<bool> {
        self.require_owned()?;
        let i = self.register()?;
        let raw = self.lock_raw();
        let depth = raw.release_all();
        let (state, _, _) = self.slot(i);
        loop {
            if state.load(Acquire) != WAITING {
                break;
            }
            if Futex::new(state).wait_until(WAITING, deadline) == Wake::TimedOut
                || os::expired(deadline, os::mono_now())
            {
                break;
            }
        }
        let relocked = raw.restore(depth);
        // Under the lock again: a notify that raced with our timeout still counts.
        let notified = state.load(Acquire) == NOTIFIED;
        state.store(FREE, Relaxed);
        relocked.map(|()| notified)
    }

    fn notify_n(&self, n: usize) -> Result<()> {
        self.require_owned()?;
        let mut waiting: Vec<(u64, usize)> = (0..self.capacity)
            .filter(|&i| self.slot(i).0.load(Relaxed) == WAITING)
            .map(|i| (self.slot(i).1.load(Relaxed), i))
            .collect();
        waiting.sort_unstable();
        for &(_, i) in waiting.iter().take(n) {
            let state = self.slot(i).0;
            state.store(NOTIFIED, Release);
            Futex::new(state).wake(1);
        }
        Ok(())
    }
}

impl SyncPrimitive for ProcessCondition {
    fn kind(&self) -> &'static str {
        "ProcessCondition"
    }
}

impl Lock for ProcessCondition {
    fn acquire(&self) -> Result<()> {
        self.lock_raw().acquire(None).map(|_| ())
    }

    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.lock_raw().acquire(deadline_of(timeout))
    }

    fn release(&self) -> Result<()> {
        self.lock_raw().release()
    }

    fn locked(&self) -> bool {
        self.lock_raw().word.load(Relaxed) != 0
    }
}

impl Condition for ProcessCondition {
    /// Waits for a notification. `Err(OwnerDied)`: the lock's holder died while this waiter
    /// was re-acquiring it; the caller holds the lock (at its previous depth) and should
    /// re-check the state it protects.
    fn wait(&self) -> Result<()> {
        self.wait_until(None).map(|_| ())
    }

    fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_until(deadline_of(timeout))
    }

    fn notify(&self, n: usize) -> Result<()> {
        self.notify_n(n)
    }

    fn notify_all(&self) -> Result<()> {
        self.notify_n(usize::MAX)
    }
}
