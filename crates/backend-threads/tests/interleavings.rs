//! Small runs of every primitive's wait and wake-up paths — the waiter-counting condition
//! variable under all of them — sized for the concurrency checkers that `.ci/run` runs them
//! under: Miri with many scheduling seeds (data races, weak-memory reads of the `Relaxed`
//! waiter count, and a lost wake-up, which Miri reports as a deadlock) and ThreadSanitizer.
//! Each lock-protected counter below is a plain, non-atomic integer, so a primitive that
//! failed to order its holders would be a data race that both checkers report.
//!
//! Natively they are ordinary (fast) tests. No sleeps: every wait is a handshake.

use std::cell::UnsafeCell;
use std::sync::Arc;
use std::thread;

use multiproc_threads::{Barrier, Condition, Event, Lock, RLock, Semaphore};

/// A counter that only a primitive's exclusion protects.
struct Unprotected(UnsafeCell<u64>);

// SAFETY: every access below happens while holding the primitive that the test checks; a
// primitive that let two holders in at once would make it a data race, which is what the
// checkers are there to report.
unsafe impl Sync for Unprotected {}

impl Unprotected {
    fn new() -> Arc<Self> {
        Arc::new(Unprotected(UnsafeCell::new(0)))
    }

    /// # Safety
    ///
    /// The caller holds the primitive that protects this counter.
    unsafe fn bump(&self) {
        // SAFETY: exclusive by the caller's contract.
        unsafe { *self.0.get() += 1 }
    }

    /// # Safety
    ///
    /// As for [`bump`](Self::bump), or every bumping thread has been joined.
    unsafe fn get(&self) -> u64 {
        // SAFETY: by the caller's contract.
        unsafe { *self.0.get() }
    }
}

const THREADS: u64 = 3;
const ROUNDS: u64 = 4;

fn on_threads(n: u64, f: impl Fn(u64) + Send + Sync + 'static) {
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            thread::spawn(move || f(i))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn lock_orders_its_holders() {
    let lock = Arc::new(Lock::new());
    let count = Unprotected::new();
    let (l, c) = (lock.clone(), count.clone());
    on_threads(THREADS, move |_| {
        for _ in 0..ROUNDS {
            let _held = l.lock();
            // SAFETY: under `l`.
            unsafe { c.bump() };
        }
    });
    // SAFETY: every thread was joined.
    assert_eq!(unsafe { count.get() }, THREADS * ROUNDS);
    assert!(!lock.locked());
}

#[test]
fn rlock_orders_its_holders() {
    let lock = Arc::new(RLock::new());
    let count = Unprotected::new();
    let (l, c) = (lock.clone(), count.clone());
    on_threads(THREADS, move |_| {
        for _ in 0..ROUNDS {
            let _outer = l.lock();
            let _inner = l.lock();
            // SAFETY: under `l`.
            unsafe { c.bump() };
        }
    });
    // SAFETY: every thread was joined.
    assert_eq!(unsafe { count.get() }, THREADS * ROUNDS);
}

#[test]
fn event_set_wakes_every_waiter() {
    let event = Arc::new(Event::new());
    let ready = Arc::new(Semaphore::new(0));
    let (e, r) = (event.clone(), ready.clone());
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let (e, r) = (e.clone(), r.clone());
            thread::spawn(move || {
                r.release(1).unwrap();
                e.wait();
                assert!(e.is_set());
            })
        })
        .collect();
    ready.acquire();
    ready.acquire();
    event.set();
    for w in waiters {
        w.join().unwrap();
    }
}

#[test]
fn condition_hands_over_items_one_by_one() {
    // A producer hands ROUNDS items to a consumer through a one-slot mailbox guarded by the
    // condition; each side waits for the other with wait_for + notify(1).
    let cond = Arc::new(Condition::new());
    let slot = Unprotected::new(); // 0: empty, else the item
    let taken = Unprotected::new();
    let (c, s, t) = (cond.clone(), slot.clone(), taken.clone());
    let consumer = thread::spawn(move || {
        for expected in 1..=ROUNDS {
            let _g = c.lock();
            let full = || {
                // SAFETY: wait_for calls the predicate with the condition's lock held.
                unsafe { s.get() != 0 }
            };
            assert!(c.wait_for(full, std::time::Duration::MAX).unwrap());
            // SAFETY: under the condition's lock.
            unsafe {
                assert_eq!(s.get(), expected);
                *s.0.get() = 0;
                t.bump();
            }
            c.notify(1).unwrap();
        }
    });
    for item in 1..=ROUNDS {
        let _g = cond.lock();
        let empty = || {
            // SAFETY: wait_for calls the predicate with the condition's lock held.
            unsafe { slot.get() == 0 }
        };
        assert!(cond.wait_for(empty, std::time::Duration::MAX).unwrap());
        // SAFETY: under the condition's lock.
        unsafe { *slot.0.get() = item };
        cond.notify(1).unwrap();
    }
    consumer.join().unwrap();
    // SAFETY: the consumer was joined.
    assert_eq!(unsafe { taken.get() }, ROUNDS);
}

#[test]
fn semaphore_admits_at_most_its_value() {
    let sem = Arc::new(Semaphore::new(1)); // a semaphore of 1 is a lock
    let count = Unprotected::new();
    let (s, c) = (sem.clone(), count.clone());
    on_threads(THREADS, move |_| {
        for _ in 0..ROUNDS {
            s.acquire();
            // SAFETY: the one permit is held.
            unsafe { c.bump() };
            s.release(1).unwrap();
        }
    });
    // SAFETY: every thread was joined.
    assert_eq!(unsafe { count.get() }, THREADS * ROUNDS);
    assert_eq!(sem.value(), 1);
}

#[test]
fn barrier_releases_each_round_together() {
    let barrier = Arc::new(Barrier::new(THREADS as usize).unwrap());
    let count = Unprotected::new();
    let (b, c) = (barrier.clone(), count.clone());
    on_threads(THREADS, move |_| {
        for round in 0..2 {
            // Exactly one party (index 0) writes per round, between two waits, so the
            // writes are ordered by the barrier alone.
            if b.wait().unwrap() == 0 {
                // SAFETY: only the party with index 0 touches the counter, and the
                // barrier orders it against the other rounds' readers and writers.
                unsafe { c.bump() };
            }
            b.wait().unwrap();
            // SAFETY: between two barrier waits nobody writes.
            assert_eq!(unsafe { c.get() }, round + 1);
            b.wait().unwrap();
        }
    });
}
