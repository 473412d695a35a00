//! Process-shared synchronisation primitives that live in shared memory: [`ProcessLock`],
//! [`ProcessRLock`], [`ProcessEvent`], [`ProcessCondition`], [`ProcessSemaphore`] (also
//! bounded), [`ProcessBarrier`], and the family [`ProcessSync`].
//!
//! Each primitive owns a small [`ShmBuffer`] holding its state. A forked child inherits the
//! mapping, so an `Arc<ProcessLock>` cloned into a child is the same lock; a spawned process
//! gets it as a serde value (every primitive is `Serialize + Deserialize` through
//! [`multiproc_core::handoff`]: a pool's argument, a `Pipe` message), or with
//! [`send_buffer`](crate::send_buffer) / [`recv_buffer`](crate::recv_buffer) and the
//! primitive's `from_buffer`. Their state is atomics only, of 32 and 64 bits at fixed offsets;
//! the buffer's [`AccessWidth`] is [`Structured`](AccessWidth::Structured) from creation on, so the generic byte
//! and word accessors of [`SharedBuffer`] refuse it (a byte write racing the lock word's 64-bit
//! CAS would be undefined behaviour), and no typed array can be made of it. `from_buffer`
//! accepts only such a buffer, and checks a magic number and kind to catch mix-ups.
//!
//! # The robust lock
//!
//! All locking rests on one 64-bit word per lock: 0 when free, otherwise the holder's
//! `(pid, tid, start-time tag)` plus a "sleepers" bit. Acquiring is one compare-and-swap
//! (about 10 ns uncontended); a contended acquirer spins briefly, then sleeps on a shared
//! futex (the word's low half) in slices of 50 ms. Each time a slice (or the caller's
//! timeout) expires, it checks whether the holder's process still runs: `/proc/<pid>/stat`
//! missing, in state zombie, or with another start time (the pid was recycled) means dead.
//! The waiter then takes the lock over with one CAS and gets [`Error::OwnerDied`], holding the
//! lock; the lock keeps working as before (no `pthread_mutex_consistent` step).
//!
//! Why not `PTHREAD_MUTEX_ROBUST`? A pthread mutex belongs to a *thread*: only the locking
//! thread may unlock it (`EPERM` otherwise), and its death — even a plain thread exit in a live
//! process — marks it owner-dead. Python's `Lock` has no owner: any worker may release it (the
//! conformance suite checks exactly that), and a lock handed from one thread to another must
//! not be "stolen" when the first thread exits. A futex word with process-level liveness gives
//! both, and one implementation serves Lock and RLock (whose owner is `(pid, tid)`).
//! The price: death is noticed on a waiter's slice boundary (≤ 50 ms) instead of at once, and
//! liveness is judged by pid and start time within one pid namespace.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use multiproc_core::{
    AccessWidth, Barrier, Condition, Error, Event, Lock, RLock, Result, Semaphore, SharedBuffer,
    SyncFamily, SyncPrimitive,
};
use multiproc_sys::futex::{Futex, Wake};

use crate::os::{self, Deadline, WAITERS};
use crate::ShmBuffer;

/// How long a waiter sleeps before checking whether the holder is still alive.
const LIVENESS_SLICE: Duration = Duration::from_millis(50);
/// Spins before sleeping on a contended lock.
const SPINS: u32 = 200;

const MAGIC: u32 = u32::from_le_bytes(*b"mpsy");

/// The kind tags stored in each primitive's header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
enum Kind {
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

fn u32s(buf: &ShmBuffer) -> &[AtomicU32] {
    // SAFETY: the mapping is page-aligned and valid for `len` bytes while `buf` lives;
    // AtomicU32 has u32's layout and allows shared concurrent access, and any bit pattern is a
    // valid u32. The buffer is Structured (see above): each location is accessed in one size.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<AtomicU32>(), buf.len() / 4) }
}

fn u64s(buf: &ShmBuffer) -> &[AtomicU64] {
    // SAFETY: as for `u32s`, with 8-byte words (the mapping is page-aligned).
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<AtomicU64>(), buf.len() / 8) }
}

/// A new buffer of `len` bytes, Structured, whose header says `kind`.
fn create(kind: Kind, len: usize) -> Result<ShmBuffer> {
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
fn attach(buf: &ShmBuffer, kind: Kind, len: usize) -> Result<()> {
    if !matches!(buf.access_width(), Ok(Some(AccessWidth::Structured))) {
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
const WORD: usize = 64 / 8; // u64 index of the lock word
const COUNT: usize = 72 / 4; // u32 index of the RLock recursion count
const PINS: usize = 76 / 4; // u32 index of holds pinned by ArrayGuards
const LOCK_BYTES: usize = 128;

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
fn raw_lock(word: &AtomicU64, me: u64, deadline: Deadline) -> Acquired {
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
fn raw_unlock(word: &AtomicU64) -> bool {
    let old = word.swap(0, Release);
    if old & WAITERS != 0 {
        Futex::low_half(word).wake(1);
    }
    old != 0
}

/// The re-entrant lock algorithm on (word, count, pins), shared by ProcessRLock and the
/// Condition's embedded lock.
#[derive(Clone, Copy)]
struct RawRLock<'a> {
    word: &'a AtomicU64,
    count: &'a AtomicU32,
    pins: &'a AtomicU32,
}

impl RawRLock<'_> {
    fn owned(&self, me: u64) -> bool {
        self.word.load(Relaxed) & !WAITERS == me
    }

    fn acquire(&self, deadline: Deadline) -> Result<bool> {
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

    fn release(&self) -> Result<()> {
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
    fn release_all(&self) -> u32 {
        let c = self.count.swap(0, Relaxed);
        raw_unlock(self.word);
        c
    }

    /// Re-acquires after `release_all`; `Err(OwnerDied)` still leaves the lock held at `depth`.
    fn restore(&self, depth: u32) -> Result<()> {
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

    fn depth(&self) -> usize {
        if self.owned(os::me()) {
            self.count.load(Relaxed) as usize
        } else {
            0
        }
    }
}

fn deadline_of(timeout: Duration) -> Deadline {
    os::deadline_after(timeout)
}

// ----------------------------------------------------------------------------------------------
// Lock
// ----------------------------------------------------------------------------------------------

/// A robust process-shared lock (Python's `multiprocessing.Lock`).
///
/// Any thread of any process that shares it may release it, as in Python. If the process that
/// holds it dies, the next acquirer gets [`Error::OwnerDied`] and holds the lock afterwards;
/// the lock keeps working. See the [module docs](self) for the mechanism.
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
    /// the lock's alone: the [`SharedBuffer`] byte and word accessors refuse it
    /// ([`AccessWidth::Structured`]).
    pub fn buffer(&self) -> &ShmBuffer {
        &self.buf
    }

    fn word(&self) -> &AtomicU64 {
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

// ----------------------------------------------------------------------------------------------
// RLock
// ----------------------------------------------------------------------------------------------

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
    /// the lock's alone: the [`SharedBuffer`] byte and word accessors refuse it
    /// ([`AccessWidth::Structured`]).
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
                "this thread already holds a guard of this array; use that guard",
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

fn raw_rlock(buf: &ShmBuffer) -> RawRLock<'_> {
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

// ----------------------------------------------------------------------------------------------
// Event
// ----------------------------------------------------------------------------------------------

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

    /// The shared memory holding the event, to send to another process. Its bytes are the
    /// event's alone: the [`SharedBuffer`] byte and word accessors refuse it
    /// ([`AccessWidth::Structured`]).
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

// ----------------------------------------------------------------------------------------------
// Semaphore
// ----------------------------------------------------------------------------------------------

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
    /// semaphore's alone: the [`SharedBuffer`] byte and word accessors refuse it
    /// ([`AccessWidth::Structured`]).
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
        if n == 0 {
            return Err(Error::invalid("n", "must be at least 1"));
        }
        let n32 = u32::try_from(n).map_err(|_| Error::invalid("n", "above u32::MAX"))?;
        let bound = self.is_bounded().then(|| self.w(SEM_BOUND).load(Relaxed));
        let count = self.w(SEM_COUNT);
        let mut c = count.load(SeqCst);
        loop {
            let new = c
                .checked_add(n32)
                .ok_or_else(|| Error::invalid("n", "the counter would exceed u32::MAX"))?;
            if let Some(b) = bound {
                if new > b {
                    return Err(Error::invalid(
                        "n",
                        format!(
                            "releasing {n} would take the bounded semaphore to {new}, above \
                             its bound of {b}"
                        ),
                    ));
                }
            }
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

// ----------------------------------------------------------------------------------------------
// Condition
// ----------------------------------------------------------------------------------------------

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
const WAITING: u32 = 1;
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

    fn create(kind: Kind, waiters: usize) -> Result<Self> {
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

    fn attach_kind(buf: ShmBuffer, kind: Kind) -> Result<Self> {
        attach(&buf, kind, COND_SLOTS + SLOT_BYTES)?;
        let capacity = u64s(&buf)[COND_CAPACITY].load(Acquire) as usize;
        // Trust the stored capacity only as far as the mapping reaches.
        let capacity = capacity.min((buf.len() - COND_SLOTS) / SLOT_BYTES);
        Ok(ProcessCondition { buf, capacity })
    }

    /// The shared memory holding the condition, to send to another process. Its bytes are the
    /// condition's alone: the [`SharedBuffer`] byte and word accessors refuse it
    /// ([`AccessWidth::Structured`]).
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

    fn extra(&self, i: usize) -> &AtomicU64 {
        &u64s(&self.buf)[COND_EXTRA + i]
    }

    /// (state, ticket, owner) of slot `i`.
    fn slot(&self, i: usize) -> (&AtomicU32, &AtomicU64, &AtomicU64) {
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

    fn wait_until(&self, deadline: Deadline) -> Result<bool> {
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

// ----------------------------------------------------------------------------------------------
// Barrier
// ----------------------------------------------------------------------------------------------

/// A process-shared barrier (Python's `multiprocessing.Barrier`).
///
/// Python's algorithm (filling, draining, resetting, broken) on a [`ProcessCondition`] whose
/// spare words hold the state. If a party's process dies while holding the barrier's internal
/// lock, the barrier breaks: waiters get [`Error::BrokenBarrier`] until [`reset`](Barrier::reset).
/// A party that dies while *waiting* is not noticed (as in Python); use `wait_timeout`.
#[derive(Debug)]
pub struct ProcessBarrier {
    cond: ProcessCondition,
}

const B_PARTIES: usize = 0;
const B_COUNT: usize = 1;
const B_STATE: usize = 2;
const FILLING: u64 = 0;
const DRAINING: u64 = 1;
const RESETTING: u64 = 2;
const BROKEN: u64 = 3;

/// What a barrier wait ended with.
enum Passed {
    Index(usize),
    Broken,
    TimedOut,
}

impl ProcessBarrier {
    /// A barrier for `parties` parties (at least 1).
    pub fn new(parties: usize) -> Result<Self> {
        if parties == 0 {
            return Err(Error::invalid(
                "parties",
                "a barrier needs at least 1 party",
            ));
        }
        let cond = ProcessCondition::create(Kind::Barrier, parties.saturating_mul(2).max(64))?;
        cond.extra(B_PARTIES).store(parties as u64, Release);
        Ok(ProcessBarrier { cond })
    }

    /// Attaches to a barrier received from another process.
    pub fn from_buffer(buf: ShmBuffer) -> Result<Self> {
        let cond = ProcessCondition::attach_kind(buf, Kind::Barrier)?;
        Ok(ProcessBarrier { cond })
    }

    /// The shared memory holding the barrier, to send to another process. Its bytes are the
    /// barrier's alone: the [`SharedBuffer`] byte and word accessors refuse it
    /// ([`AccessWidth::Structured`]).
    pub fn buffer(&self) -> &ShmBuffer {
        self.cond.buffer()
    }

    fn state(&self) -> &AtomicU64 {
        self.cond.extra(B_STATE)
    }

    fn count(&self) -> &AtomicU64 {
        self.cond.extra(B_COUNT)
    }

    /// Takes the internal lock; a dead holder breaks the barrier.
    fn enter(&self) {
        if let Err(Error::OwnerDied) = self.cond.acquire() {
            self.state().store(BROKEN, Relaxed);
            let _ = self.cond.notify_all();
        }
    }

    fn leave(&self) {
        let _ = self.cond.release();
    }

    /// Condition wait that turns an owner-died re-lock into a broken barrier.
    fn cond_wait(&self, deadline: Deadline) -> bool {
        match self.cond.wait_until(deadline) {
            Ok(notified) => notified,
            Err(_) => {
                self.state().store(BROKEN, Relaxed);
                let _ = self.cond.notify_all();
                true
            }
        }
    }

    fn wait_until(&self, deadline: Deadline) -> Passed {
        self.enter();
        let parties = self.parties();
        // Wait for a previous round to drain or a reset to finish.
        while matches!(self.state().load(Relaxed), DRAINING | RESETTING) {
            if !self.cond_wait(deadline) && os::expired(deadline, os::mono_now()) {
                self.break_locked();
                self.leave();
                return Passed::TimedOut;
            }
        }
        if self.state().load(Relaxed) == BROKEN {
            self.leave();
            return Passed::Broken;
        }
        let index = self.count().fetch_add(1, Relaxed) as usize;
        let result = if index + 1 == parties {
            self.state().store(DRAINING, Relaxed);
            let _ = self.cond.notify_all();
            Passed::Index(index)
        } else {
            let mut result = None;
            while result.is_none() {
                match self.state().load(Relaxed) {
                    FILLING => {
                        if !self.cond_wait(deadline)
                            && self.state().load(Relaxed) == FILLING
                            && os::expired(deadline, os::mono_now())
                        {
                            self.break_locked();
                            result = Some(Passed::TimedOut);
                        }
                    }
                    DRAINING => result = Some(Passed::Index(index)),
                    _ => result = Some(Passed::Broken),
                }
            }
            result.expect("set above")
        };
        // Leave: the last one out of a draining or resetting round re-opens the barrier.
        let left = self.count().fetch_sub(1, Relaxed) - 1;
        if left == 0 && matches!(self.state().load(Relaxed), DRAINING | RESETTING) {
            self.state().store(FILLING, Relaxed);
            let _ = self.cond.notify_all();
        }
        self.leave();
        result
    }

    fn break_locked(&self) {
        self.state().store(BROKEN, Relaxed);
        let _ = self.cond.notify_all();
    }

    fn finish(&self, passed: Passed, timeout: Duration) -> Result<usize> {
        match passed {
            Passed::Index(i) => Ok(i),
            Passed::Broken => Err(Error::BrokenBarrier),
            Passed::TimedOut => Err(Error::Timeout(timeout)),
        }
    }
}

impl SyncPrimitive for ProcessBarrier {
    fn kind(&self) -> &'static str {
        "ProcessBarrier"
    }
}

impl Barrier for ProcessBarrier {
    fn wait(&self) -> Result<usize> {
        let passed = self.wait_until(None);
        self.finish(passed, Duration::MAX)
    }

    fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        let passed = self.wait_until(deadline_of(timeout));
        self.finish(passed, timeout)
    }

    fn abort(&self) {
        self.enter();
        self.break_locked();
        self.leave();
    }

    fn reset(&self) {
        self.enter();
        if self.count().load(Relaxed) > 0 {
            if matches!(self.state().load(Relaxed), FILLING | BROKEN) {
                self.state().store(RESETTING, Relaxed);
            }
        } else {
            self.state().store(FILLING, Relaxed);
        }
        let _ = self.cond.notify_all();
        self.leave();
    }

    fn parties(&self) -> usize {
        self.cond.extra(B_PARTIES).load(Relaxed) as usize
    }

    fn n_waiting(&self) -> usize {
        if self.state().load(Relaxed) == FILLING {
            self.count().load(Relaxed) as usize
        } else {
            0
        }
    }

    fn broken(&self) -> bool {
        self.state().load(Relaxed) == BROKEN
    }
}

// ----------------------------------------------------------------------------------------------
// The family
// ----------------------------------------------------------------------------------------------

/// The process-shared [`SyncFamily`]: every primitive lives in shared memory and works across
/// forked (and, via `from_buffer`, spawned) processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessSync;

impl SyncFamily for ProcessSync {
    const NAME: &'static str = "process";
    type Lock = ProcessLock;
    type RLock = ProcessRLock;
    type Event = ProcessEvent;
    type Condition = ProcessCondition;
    type Semaphore = ProcessSemaphore;
    type Barrier = ProcessBarrier;

    fn lock() -> Result<ProcessLock> {
        ProcessLock::new()
    }
    fn rlock() -> Result<ProcessRLock> {
        ProcessRLock::new()
    }
    fn event() -> Result<ProcessEvent> {
        ProcessEvent::new()
    }
    fn condition() -> Result<ProcessCondition> {
        ProcessCondition::new()
    }
    fn semaphore(value: usize) -> Result<ProcessSemaphore> {
        ProcessSemaphore::new(value)
    }
    fn bounded_semaphore(value: usize) -> Result<ProcessSemaphore> {
        ProcessSemaphore::bounded(value)
    }
    fn barrier(parties: usize) -> Result<ProcessBarrier> {
        ProcessBarrier::new(parties)
    }
}

// ----------------------------------------------------------------------------------------------
// Crossing into another process as serde values (multiproc_core::handoff)
// ----------------------------------------------------------------------------------------------

macro_rules! serde_via_buffer {
    ($($t:ident),* $(,)?) => {$(
        /// Through a multiproc transport (a pool's arguments, a spawned `Process`, a `Pipe`) the
        /// primitive travels as its shared memory's descriptor, and the receiver attaches to the
        /// same state, as [`from_buffer`](Self::from_buffer) does. Outside a transport,
        /// serializing it is an error (see [`multiproc_core::handoff`]).
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                serde::Serialize::serialize(self.buffer(), s)
            }
        }

        /// Checks the descriptor (see [`ShmBuffer`]'s `Deserialize`) and that it holds this kind
        /// of primitive (an error naming `buffer`).
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let buf = <ShmBuffer as serde::Deserialize>::deserialize(d)?;
                $t::from_buffer(buf).map_err(<D::Error as serde::de::Error>::custom)
            }
        }
    )*};
}

serde_via_buffer!(
    ProcessLock,
    ProcessRLock,
    ProcessEvent,
    ProcessCondition,
    ProcessSemaphore,
    ProcessBarrier,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_checks_the_kind() {
        let lock = ProcessLock::new().unwrap();
        lock.acquire().unwrap();
        // Re-attach the same memory through a received descriptor.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        crate::send_buffer(&a, lock.buffer()).unwrap();
        let buf = crate::recv_buffer(&b).unwrap();
        let again = ProcessLock::from_buffer(buf).unwrap();
        assert!(again.locked());
        again.release().unwrap();
        assert!(!lock.locked());
        crate::send_buffer(&a, lock.buffer()).unwrap();
        let buf = crate::recv_buffer(&b).unwrap();
        assert!(matches!(
            ProcessEvent::from_buffer(buf),
            Err(Error::InvalidArgument { name: "buffer", .. })
        ));
        assert!(matches!(
            ProcessLock::from_buffer(ShmBuffer::new(8).unwrap()),
            Err(Error::InvalidArgument { name: "buffer", .. })
        ));
    }

    #[test]
    fn a_lock_whose_holder_is_gone_is_taken_over() {
        // Simulate a dead holder: the largest pid Linux can hand out (2^22 - 1), which no
        // process has on a machine whose pid_max is lower.
        if std::path::Path::new("/proc/4194303").exists() {
            return; // that pid runs here: nothing to simulate with
        }
        let lock = ProcessLock::new().unwrap();
        lock.word().store(((1 << 22) - 1) << 32 | 77, Relaxed);
        match lock.acquire_timeout(Duration::from_millis(10)) {
            Err(Error::OwnerDied) => {}
            other => panic!("{other:?}"),
        }
        assert!(lock.locked());
        lock.release().unwrap();
        assert!(lock.try_acquire().unwrap());
        lock.release().unwrap();
    }

    #[test]
    fn semaphore_and_condition_arguments_are_checked() {
        assert!(matches!(
            ProcessSemaphore::new(usize::MAX),
            Err(Error::InvalidArgument { name: "value", .. })
        ));
        let s = ProcessSemaphore::new(1).unwrap();
        assert!(matches!(
            s.release(0),
            Err(Error::InvalidArgument { name: "n", .. })
        ));
        assert_eq!(s.kind(), "ProcessSemaphore");
        let b = ProcessSemaphore::bounded(1).unwrap();
        match b.release(1) {
            Err(Error::InvalidArgument { name: "n", reason }) => {
                assert!(reason.contains("bound of 1"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.value(), 1);
        assert_eq!(
            ProcessSemaphore::bounded(1).unwrap().kind(),
            "ProcessBoundedSemaphore"
        );
        assert!(matches!(
            ProcessCondition::with_capacity(0),
            Err(Error::InvalidArgument {
                name: "waiters",
                ..
            })
        ));
    }

    #[test]
    fn a_full_condition_table_is_an_error_not_a_hang() {
        let c = std::sync::Arc::new(ProcessCondition::with_capacity(1).unwrap());
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            c2.acquire().unwrap();
            let r = c2.wait_timeout(Duration::from_secs(10));
            c2.release().unwrap();
            r
        });
        // Wait until the thread sits in the table.
        let start = std::time::Instant::now();
        while c.slot(0).0.load(Relaxed) != WAITING {
            assert!(start.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(1));
        }
        c.acquire().unwrap();
        assert!(matches!(
            c.wait_timeout(Duration::from_millis(1)),
            Err(Error::InvalidArgument {
                name: "waiters",
                ..
            })
        ));
        c.notify(1).unwrap();
        c.release().unwrap();
        assert!(t.join().unwrap().unwrap());
    }
}
