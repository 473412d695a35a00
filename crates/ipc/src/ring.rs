//! The shared-memory ring under [`Queue`](crate::Queue): a byte ring in one
//! [`ShmBuffer`], made multi-producer multi-consumer by two robust process-shared locks.
//!
//! # Layout
//!
//! ```text
//! 0    magic "mpqu", layout version        (u32, u32)
//! 8    ring capacity in bytes (a power of two)
//! 16   maxsize (0: only the ring and MAX_ITEMS bound it)
//! 24   joinable flag
//! 64   TAIL  = closed:1 | pos:40 (byte position, multiple of 8) | puts:24   (producer line)
//! 72   data sleepers (how many wait for an item)
//! 128  HEAD  = closed:1 | pos:40 | gets:24                                  (consumer line)
//! 136  space sleepers (how many wait for room)
//! 192  DONE  task_done count (mod 2^24), for JoinableQueue
//! 200  join sleepers (how many wait in `join`)
//! 256  the ring: records of [len:u32 | !len:u32] then len bytes, padded to 8
//! ```
//!
//! Bit 0 of TAIL and HEAD is the *closed* flag (positions are multiples of 8, so the low
//! three bits of a position are free): closing flips a bit of the very words sleepers watch,
//! so a close can never slip between a sleeper's check and its sleep.
//!
//! # Concurrency
//!
//! Producers serialise on the *put lock*, consumers on the *get lock*; between the one
//! producer and the one consumer that hold them, the ring is a single-producer
//! single-consumer ring: the producer writes a record beyond TAIL and then publishes it by
//! one compare-and-swap of TAIL (position and item count together), the consumer copies the
//! record out and releases its space by one compare-and-swap of HEAD. Every change of the
//! shared state is therefore a single atomic commit:
//!
//! - a producer that dies before its commit leaves nothing visible (its bytes are beyond
//!   TAIL and are overwritten by the next put); after it, the item is in the queue;
//! - a consumer that dies before its commit leaves the item in the queue for the next one;
//!   after it, the item is gone (delivered to the dead consumer, as with Python);
//! - the next process to take a lock the dead one held gets
//!   [`Error::OwnerDied`] from the robust lock and simply carries on: there is nothing to
//!   repair.
//!
//! All access to the shared bytes is through atomics (records are copied as `AtomicU64`
//! words), and every index is masked into the ring, so even a corrupted or hostile ring can
//! produce an error, never undefined behaviour.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::time::Instant;

use multiproc_core::{AccessWidth, Error, Lock, Result, SharedBuffer};
use multiproc_shared_array::{ProcessLock, ShmBuffer};

use crate::futex;

const MAGIC: u64 = u32::from_le_bytes(*b"mpqu") as u64 | (LAYOUT_VERSION as u64) << 32;
const LAYOUT_VERSION: u32 = 1;
const HEADER: usize = 256;

// u64 word indices in the header.
const W_MAGIC: usize = 0;
const W_CAPACITY: usize = 1;
const W_MAXSIZE: usize = 2;
const W_JOINABLE: usize = 3;
const W_TAIL: usize = 64 / 8;
const W_DATA_SLEEPERS: usize = 72 / 8;
const W_HEAD: usize = 128 / 8;
const W_SPACE_SLEEPERS: usize = 136 / 8;
const W_DONE: usize = 192 / 8;
const W_JOIN_SLEEPERS: usize = 200 / 8;

const CLOSED: u64 = 1;
const POS_BITS: u32 = 40;
const POS_MASK: u64 = ((1 << POS_BITS) - 1) & !7;
const COUNT_MASK: u64 = (1 << (64 - POS_BITS)) - 1;

/// The most items a queue holds at once (its item counters are 24 bits wide), and the most
/// unfinished tasks of a [`JoinableQueue`](crate::JoinableQueue).
pub const MAX_ITEMS: usize = COUNT_MASK as usize;
/// The smallest ring, in bytes.
pub const MIN_RING_BYTES: usize = 64;
/// The largest ring, in bytes (2 GiB).
pub const MAX_RING_BYTES: usize = 1 << 31;
/// The ring size of [`Queue::new`](crate::Queue::new): 1 MiB (pages are allocated only when
/// first written).
pub const DEFAULT_RING_BYTES: usize = 1 << 20;
/// Bytes of bookkeeping per item in the ring: an 8-byte record header, and padding of the
/// encoded item to a multiple of 8.
pub const RECORD_HEADER: usize = 8;

fn pos(word: u64) -> u64 {
    word & POS_MASK
}

fn count(word: u64) -> u64 {
    word >> POS_BITS
}

fn closed(word: u64) -> bool {
    word & CLOSED != 0
}

#[cfg(test)]
thread_local! {
    /// Run by a put of this thread between writing its record and committing it: where a
    /// test closes the queue, as another process may.
    static BEFORE_COMMIT: std::cell::Cell<Option<fn(&Ring)>> = const { std::cell::Cell::new(None) };
}

/// `word` advanced by `bytes` and one item, keeping its closed bit.
fn advance(word: u64, bytes: u64) -> u64 {
    (pos(word).wrapping_add(bytes) & POS_MASK)
        | (count(word).wrapping_add(1) & COUNT_MASK) << POS_BITS
        | (word & CLOSED)
}

fn used_bytes(tail: u64, head: u64) -> u64 {
    pos(tail).wrapping_sub(pos(head)) & POS_MASK
}

/// The error for shared memory that no correct process could have left.
fn corruption(what: String) -> Error {
    Error::Serialization(format!("the queue's shared memory is corrupt ({what})"))
}

fn items(tail: u64, head: u64) -> u64 {
    count(tail).wrapping_sub(count(head)) & COUNT_MASK
}

/// The space an item of `len` encoded bytes takes in the ring.
pub(crate) fn record_bytes(len: usize) -> usize {
    RECORD_HEADER + len.div_ceil(8) * 8
}

/// Why a wait ended without the operation.
pub(crate) enum Stop {
    TimedOut,
    Closed,
}

/// One queue's shared state: the ring and its two locks.
#[derive(Debug)]
pub(crate) struct Ring {
    buf: ShmBuffer,
    put_lock: ProcessLock,
    get_lock: ProcessLock,
    capacity: u64,
    maxsize: u64,
    joinable: bool,
}

/// Releases a lock when dropped (also when the operation under it fails).
struct Held<'a>(&'a ProcessLock);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // A release can only fail if the lock is not held, which the acquire ruled out.
        let _ = self.0.release();
    }
}

/// Acquires `lock` before `deadline`; `None` if the deadline passed first. A previous holder
/// that died is not an error here: every commit of the ring is one atomic store, so the
/// state it left is consistent (see the module docs).
fn acquire(lock: &ProcessLock, deadline: Option<Instant>) -> Result<Option<Held<'_>>> {
    let r = match deadline {
        None => lock.acquire().map(|()| true),
        Some(d) => lock.acquire_timeout(d.saturating_duration_since(Instant::now())),
    };
    match r {
        Ok(true) | Err(Error::OwnerDied) => Ok(Some(Held(lock))),
        Ok(false) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Ring {
    /// A new, empty ring of at least `ring_bytes` bytes (rounded up to a power of two).
    pub(crate) fn new(maxsize: usize, ring_bytes: usize, joinable: bool) -> Result<Self> {
        if maxsize > MAX_ITEMS {
            return Err(Error::invalid(
                "maxsize",
                format!("{maxsize} is above the limit of {MAX_ITEMS} items (0 means unbounded)"),
            ));
        }
        if !(MIN_RING_BYTES..=MAX_RING_BYTES).contains(&ring_bytes) {
            return Err(Error::invalid(
                "ring_bytes",
                format!("{ring_bytes} is not in {MIN_RING_BYTES}..={MAX_RING_BYTES}"),
            ));
        }
        let capacity = ring_bytes.next_power_of_two();
        let buf = ShmBuffer::new(HEADER + capacity)?;
        let w = buf.as_atomic_u64s();
        w[W_CAPACITY].store(capacity as u64, Relaxed);
        w[W_MAXSIZE].store(maxsize as u64, Relaxed);
        w[W_JOINABLE].store(u64::from(joinable), Relaxed);
        w[W_MAGIC].store(MAGIC, Release);
        Ok(Ring {
            buf,
            put_lock: ProcessLock::new()?,
            get_lock: ProcessLock::new()?,
            capacity: capacity as u64,
            maxsize: maxsize as u64,
            joinable,
        })
    }

    /// Attaches to a ring received from another process, checking its header.
    pub(crate) fn attach(
        buf: ShmBuffer,
        put_lock: ProcessLock,
        get_lock: ProcessLock,
        joinable: bool,
    ) -> Result<Self> {
        let bad = |why: String| Error::invalid("queue", why);
        // A queue's memory is 8-byte words from creation on; anything else (unused memory,
        // bytes, a primitive's) is not a queue, and claiming it here would take it from its
        // owner.
        if !matches!(buf.access_width(), Ok(Some(AccessWidth::U64))) {
            return Err(bad("the received memory does not hold a queue".into()));
        }
        let w = buf.as_atomic_u64s();
        if w.len() < HEADER / 8 || w[W_MAGIC].load(Acquire) != MAGIC {
            return Err(bad("the received memory does not hold a queue".into()));
        }
        let capacity = w[W_CAPACITY].load(Relaxed);
        let fits = usize::try_from(capacity)
            .ok()
            .and_then(|c| c.checked_add(HEADER))
            .is_some_and(|n| n <= buf.len());
        if !capacity.is_power_of_two() || capacity < MIN_RING_BYTES as u64 || !fits {
            return Err(bad(format!(
                "the received queue claims a ring of {capacity} bytes"
            )));
        }
        let maxsize = w[W_MAXSIZE].load(Relaxed);
        if maxsize > MAX_ITEMS as u64 {
            return Err(bad(format!("the received queue claims maxsize {maxsize}")));
        }
        if (w[W_JOINABLE].load(Relaxed) != 0) != joinable {
            return Err(bad(
                "a Queue and a JoinableQueue are not interchangeable".into()
            ));
        }
        Ok(Ring {
            buf,
            put_lock,
            get_lock,
            capacity,
            maxsize,
            joinable,
        })
    }

    pub(crate) fn parts(&self) -> (&ShmBuffer, &ProcessLock, &ProcessLock) {
        (&self.buf, &self.put_lock, &self.get_lock)
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        &self.buf.as_atomic_u64s()[i]
    }

    fn data(&self) -> &[AtomicU64] {
        &self.buf.as_atomic_u64s()[HEADER / 8..HEADER / 8 + (self.capacity / 8) as usize]
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity as usize
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.maxsize as usize
    }

    /// The largest encoded item that fits.
    pub(crate) fn max_item_bytes(&self) -> usize {
        self.capacity() - RECORD_HEADER
    }

    /// Items in the queue now (Python's `qsize`: a snapshot that may be stale at once).
    pub(crate) fn len(&self) -> usize {
        // Read HEAD first: TAIL only grows, so the difference is never negative.
        let head = self.word(W_HEAD).load(SeqCst);
        let tail = self.word(W_TAIL).load(SeqCst);
        items(tail, head) as usize
    }

    fn item_limit(&self) -> u64 {
        if self.maxsize == 0 {
            COUNT_MASK
        } else {
            self.maxsize
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len() as u64 >= self.item_limit()
    }

    pub(crate) fn is_closed(&self) -> bool {
        closed(self.word(W_TAIL).load(SeqCst))
    }

    /// Closes the queue for every process: puts fail from now on, gets drain what is left
    /// and then fail instead of blocking. Wakes everyone waiting.
    pub(crate) fn close(&self) {
        for w in [W_TAIL, W_HEAD] {
            self.word(w).fetch_or(CLOSED, SeqCst);
            futex::notify_all(self.word(w));
        }
    }

    /// Appends one record holding `payload`, waiting for room until `deadline`.
    pub(crate) fn put(&self, payload: &[u8], deadline: Option<Instant>) -> Result<(), OpError> {
        let rec = record_bytes(payload.len());
        if rec > self.capacity() {
            return Err(OpError::Fail(Error::invalid(
                "item",
                format!(
                    "it encodes to {} bytes; this queue's ring holds items of at most {} bytes \
                     (create it with a larger `ring_bytes`, or share large data through a \
                     shared array)",
                    payload.len(),
                    self.max_item_bytes()
                ),
            )));
        }
        if self.is_closed() {
            return Err(OpError::Stop(Stop::Closed));
        }
        let Some(_held) = acquire(&self.put_lock, deadline).map_err(OpError::Fail)? else {
            return Err(OpError::Stop(Stop::TimedOut));
        };
        let tail_word = self.word(W_TAIL);
        let head_word = self.word(W_HEAD);
        // Only the holder of the put lock changes TAIL's position and count.
        let tail = tail_word.load(SeqCst);
        let limit = self.item_limit();
        let done = self.word(W_DONE);
        // Positions further apart than the ring are corruption (another process wrote the
        // words): reported at once, never a room computed by wrapping arithmetic.
        let corrupt = |head: u64| used_bytes(tail, head) > self.capacity;
        let has_room = |head: u64| {
            closed(head)
                || corrupt(head)
                || (self.capacity - used_bytes(tail, head) >= rec as u64
                    && items(tail, head) < limit
                    && (!self.joinable || unfinished(tail, done.load(SeqCst)) < COUNT_MASK))
        };
        if !futex::wait_until(head_word, self.word(W_SPACE_SLEEPERS), deadline, has_room) {
            return Err(OpError::Stop(Stop::TimedOut));
        }
        let head = head_word.load(SeqCst);
        if closed(head) {
            return Err(OpError::Stop(Stop::Closed));
        }
        if corrupt(head) {
            return Err(OpError::Fail(corruption(format!(
                "the consumer's position is {} bytes behind the producer's in a ring of {}",
                used_bytes(tail, head),
                self.capacity
            ))));
        }
        self.write_record(pos(tail), payload);
        #[cfg(test)]
        if let Some(hook) = BEFORE_COMMIT.get() {
            hook(self);
        }
        // Commit: one CAS of TAIL publishes the bytes and the count together. Only `close`
        // changes TAIL meanwhile (its closed bit): then the put fails as closed. Its record
        // lies beyond TAIL, where nobody reads, so there is nothing to undo; committed, it
        // would land after consumers may have seen the queue closed and empty, and be lost.
        if tail_word
            .compare_exchange(tail, advance(tail, rec as u64), SeqCst, SeqCst)
            .is_err()
        {
            return Err(OpError::Stop(Stop::Closed));
        }
        futex::notify(tail_word, self.word(W_DATA_SLEEPERS));
        Ok(())
    }

    /// Removes the oldest record into `out`, waiting for one until `deadline`.
    pub(crate) fn get(&self, out: &mut Vec<u8>, deadline: Option<Instant>) -> Result<(), OpError> {
        let Some(_held) = acquire(&self.get_lock, deadline).map_err(OpError::Fail)? else {
            return Err(OpError::Stop(Stop::TimedOut));
        };
        let tail_word = self.word(W_TAIL);
        let head_word = self.word(W_HEAD);
        let head = head_word.load(SeqCst);
        let has_item = |tail: u64| closed(tail) || pos(tail) != pos(head);
        if !futex::wait_until(tail_word, self.word(W_DATA_SLEEPERS), deadline, has_item) {
            return Err(OpError::Stop(Stop::TimedOut));
        }
        let tail = tail_word.load(SeqCst);
        if pos(tail) == pos(head) {
            return Err(OpError::Stop(Stop::Closed));
        }
        let rec = self
            .read_record(pos(head), used_bytes(tail, head), out)
            .map_err(OpError::Fail)?;
        let mut cur = head;
        loop {
            match head_word.compare_exchange(cur, advance(cur, rec), SeqCst, SeqCst) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        futex::notify(head_word, self.word(W_SPACE_SLEEPERS));
        Ok(())
    }

    fn write_record(&self, at: u64, payload: &[u8]) {
        let data = self.data();
        let mask = data.len() - 1;
        let base = (at / 8) as usize;
        let len = payload.len() as u32; // < capacity <= 2^31, checked by the caller
        data[base & mask].store(u64::from(len) | u64::from(!len) << 32, Relaxed);
        let mut i = base + 1;
        let mut chunks = payload.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            data[i & mask].store(w, Relaxed);
            i += 1;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            data[i & mask].store(u64::from_le_bytes(w), Relaxed);
        }
    }

    /// Copies the record at `at` into `out`; returns its size in the ring. `used` is how many
    /// committed bytes follow `at`: a header claiming more is corruption, not a reason to
    /// read on.
    fn read_record(&self, at: u64, used: u64, out: &mut Vec<u8>) -> Result<u64> {
        let data = self.data();
        let mask = data.len() - 1;
        let base = (at / 8) as usize;
        let h = data[base & mask].load(Relaxed);
        let len = h as u32;
        let rec = record_bytes(len as usize) as u64;
        if (h >> 32) as u32 != !len || rec > used || used > self.capacity {
            return Err(corruption(format!(
                "a record header claims {len} bytes, {used} bytes are committed in a ring of {}",
                self.capacity
            )));
        }
        out.clear();
        out.reserve(len as usize);
        let words = (len as usize).div_ceil(8);
        for k in 0..words {
            let w = data[(base + 1 + k) & mask].load(Relaxed).to_le_bytes();
            out.extend_from_slice(&w);
        }
        out.truncate(len as usize);
        Ok(rec)
    }

    // ---- JoinableQueue ----

    /// Items put but not yet marked done.
    pub(crate) fn unfinished(&self) -> usize {
        let done = self.word(W_DONE).load(SeqCst);
        unfinished(self.word(W_TAIL).load(SeqCst), done) as usize
    }

    pub(crate) fn task_done(&self) -> Result<()> {
        let done_word = self.word(W_DONE);
        let mut done = done_word.load(SeqCst);
        loop {
            let left = unfinished(self.word(W_TAIL).load(SeqCst), done);
            if left == 0 {
                return Err(Error::invalid(
                    "task_done",
                    "called more times than there were items put in the queue",
                ));
            }
            match done_word.compare_exchange(done, (done + 1) & COUNT_MASK, SeqCst, SeqCst) {
                Ok(_) => {
                    if left == 1 {
                        futex::notify(done_word, self.word(W_JOIN_SLEEPERS));
                    }
                    return Ok(());
                }
                Err(actual) => done = actual,
            }
        }
    }

    /// Waits until every item put has been marked done; `false` if `deadline` passed first.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> bool {
        let tail = self.word(W_TAIL);
        futex::wait_until(
            self.word(W_DONE),
            self.word(W_JOIN_SLEEPERS),
            deadline,
            |done| unfinished(tail.load(SeqCst), done) == 0,
        )
    }
}

fn unfinished(tail: u64, done: u64) -> u64 {
    count(tail).wrapping_sub(done) & COUNT_MASK
}

/// How a put or get ended without its item.
pub(crate) enum OpError {
    Stop(Stop),
    Fail(Error),
}

impl OpError {
    /// The user-facing error of a put (`put`: true) or a get: Python's `queue.Full` or
    /// `queue.Empty` when the wait ran out, `ValueError: Queue is closed` when it closed.
    pub(crate) fn into_error(self, put: bool) -> Error {
        match self {
            OpError::Stop(Stop::TimedOut) if put => Error::Full,
            OpError::Stop(Stop::TimedOut) => Error::Empty,
            OpError::Stop(Stop::Closed) => Error::QueueClosed,
            OpError::Fail(e) => e,
        }
    }
}

#[cfg(test)]
mod tests;
