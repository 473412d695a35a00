//! The conformance suite for a [`SyncFamily`]: every primitive's behaviour, exercised by
//! concurrent workers that a [`Harness`] starts (threads, forked processes, ...).
//!
//! Each function panics on failure; [`sync_conformance!`](crate::sync_conformance) turns the
//! list into `#[test]`s. Shared counters live in the harness's buffer so that the checks work
//! the same when the workers are processes.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{asleep, join_all, thread_id, Harness};
use crate::buffer::SharedBuffer;
use crate::sync::{Barrier, Condition, Event, Lock, RLock, Semaphore, SyncFamily, SyncPrimitive};
use crate::Error;

fn word<B: SharedBuffer>(b: &B, i: usize) -> &std::sync::atomic::AtomicU64 {
    &b.as_atomic_u64s()[i]
}

/// Waits (polling) until `cond` holds — the other side of a handshake through shared memory —
/// failing the test after 30 s, a "never hangs" bound far above what any check needs.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Under contention from 4 workers, at most one holds the lock at a time and no update made
/// under it is lost.
pub fn lock_mutual_exclusion<F: SyncFamily, H: Harness>(h: &H) {
    const WORKERS: u64 = 4;
    const ITERS: u64 = 2_000;
    let lock = Arc::new(F::lock().unwrap());
    let mem = Arc::new(h.buffer(16)); // word 0: counter, word 1: holders inside
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (lock, mem) = (lock.clone(), mem.clone());
            h.spawn(move || {
                for i in 0..ITERS {
                    let guard = if w % 2 == 0 {
                        Some(lock.lock().unwrap())
                    } else {
                        lock.acquire().unwrap();
                        None
                    };
                    assert_eq!(
                        word(&*mem, 1).fetch_add(1, SeqCst),
                        0,
                        "two holders at once"
                    );
                    // A deliberately non-atomic read-modify-write: only the lock protects it.
                    let v = word(&*mem, 0).load(SeqCst);
                    if i % 64 == 0 {
                        std::thread::yield_now();
                    }
                    word(&*mem, 0).store(v + 1, SeqCst);
                    word(&*mem, 1).fetch_sub(1, SeqCst);
                    match guard {
                        Some(g) => drop(g),
                        None => lock.release().unwrap(),
                    }
                }
            })
        })
        .collect();
    join_all(workers);
    assert_eq!(word(&*mem, 0).load(SeqCst), WORKERS * ITERS, "lost updates");
    assert!(!lock.locked());
}

/// `try_acquire`/`acquire_timeout` fail (after the timeout) while another worker holds the
/// lock; releasing an unlocked lock is `NotHeld`; a Lock may be released by another worker,
/// as in Python.
pub fn lock_timeouts_and_release<F: SyncFamily, H: Harness>(h: &H) {
    let lock = Arc::new(F::lock().unwrap());
    assert!(matches!(lock.release(), Err(Error::NotHeld(_))));
    assert!(lock.try_acquire().unwrap());
    assert!(lock.locked());
    let l = lock.clone();
    join_all([h.spawn(move || {
        assert!(!l.try_acquire().unwrap());
        let t = Instant::now();
        assert!(!l.acquire_timeout(Duration::from_millis(50)).unwrap());
        assert!(
            t.elapsed() >= Duration::from_millis(45),
            "acquire_timeout returned early"
        );
        assert!(l.lock_timeout(Duration::from_millis(1)).unwrap().is_none());
        l.release().unwrap(); // released by a worker that did not acquire it
    })]);
    assert!(!lock.locked());
    assert!(lock.acquire_timeout(Duration::from_millis(50)).unwrap());
    lock.release().unwrap();
}

/// An RLock can be re-acquired by its owner, must be released as often, and only by its
/// owner; others cannot take it meanwhile.
pub fn rlock_reentry<F: SyncFamily, H: Harness>(h: &H) {
    let rlock = Arc::new(F::rlock().unwrap());
    assert!(matches!(rlock.release(), Err(Error::NotHeld(_))));
    rlock.acquire().unwrap();
    rlock.acquire().unwrap();
    assert!(rlock.try_acquire().unwrap());
    assert_eq!(rlock.recursion_depth(), 3);
    assert!(rlock.is_owned());
    let r = rlock.clone();
    join_all([h.spawn(move || {
        assert!(!r.is_owned());
        assert_eq!(r.recursion_depth(), 0);
        assert!(!r.try_acquire().unwrap());
        assert!(!r.acquire_timeout(Duration::from_millis(20)).unwrap());
        assert!(matches!(r.release(), Err(Error::NotHeld(_))));
    })]);
    for _ in 0..3 {
        rlock.release().unwrap();
    }
    assert!(!rlock.locked());
    assert!(matches!(rlock.release(), Err(Error::NotHeld(_))));
    let r = rlock.clone();
    join_all([h.spawn(move || {
        let _g = r.lock().unwrap();
        let _g2 = r.lock().unwrap();
        assert_eq!(r.recursion_depth(), 2);
    })]);
    assert!(!rlock.locked());
}

/// Event: `wait` blocks until `set`, and `set` wakes every waiter; `wait_timeout` reports
/// the flag; `clear` resets it.
///
/// Handshake: each waiter publishes its [`thread_id`] and then waits; the test sets the event
/// only once every waiter is [`asleep`] in `wait` (or has returned from it, which it must
/// not), and records that it did so before calling `set`. A `wait` that returns early fails
/// its waiter's check; a `set` that wakes one waiter leaves the other to fail its join.
pub fn event_set_clear_wait<F: SyncFamily, H: Harness>(h: &H) {
    const WAITERS: usize = 2;
    let event = Arc::new(F::event().unwrap());
    // 0: set() called; 1: waiters returned; 2..: each waiter's thread id
    let mem = Arc::new(h.buffer(8 * (2 + WAITERS)));
    assert!(!event.is_set());
    let t = Instant::now();
    assert!(!event.wait_timeout(Duration::from_millis(30)).unwrap());
    assert!(
        t.elapsed() >= Duration::from_millis(25),
        "wait_timeout returned early"
    );
    let waiters: Vec<_> = (0..WAITERS)
        .map(|i| {
            let (e, m) = (event.clone(), mem.clone());
            h.spawn(move || {
                word(&*m, 2 + i).store(thread_id(), SeqCst);
                e.wait().unwrap();
                let set = word(&*m, 0).load(SeqCst);
                word(&*m, 1).fetch_add(1, SeqCst);
                assert_eq!(set, 1, "wait returned before set");
            })
        })
        .collect();
    eventually("every waiter sleeps in wait()", || {
        word(&*mem, 1).load(SeqCst) > 0
            || (0..WAITERS).all(|i| {
                let tid = word(&*mem, 2 + i).load(SeqCst);
                tid != 0 && asleep(tid)
            })
    });
    word(&*mem, 0).store(1, SeqCst);
    event.set().unwrap();
    join_all(waiters);
    assert_eq!(word(&*mem, 1).load(SeqCst), WAITERS as u64);
    assert!(event.is_set());
    assert!(event.wait_timeout(Duration::ZERO).unwrap());
    event.wait().unwrap(); // a set event does not block
    event.clear().unwrap();
    assert!(!event.is_set());
    assert!(!event.wait_timeout(Duration::from_millis(5)).unwrap());
}

/// Condition: notify(1) wakes exactly one of three waiters each time, notify_all the rest;
/// wait_for waits until the predicate holds, across notifications that do not satisfy it;
/// wait_timeout times out.
///
/// Handshakes use the condition's own lock: a waiter counts itself under the lock and then
/// waits, which releases it, so once the test holds the lock and sees the count, the waiter
/// is inside `wait`. The test stamps each notification with an epoch (under the lock), and a
/// woken waiter records the epoch it woke in; every epoch must wake exactly one waiter, so a
/// notify(1) that woke two leaves the last epoch with nobody to wake, whenever the extra
/// waiter gets to run.
pub fn condition_notify<F: SyncFamily, H: Harness>(h: &H) {
    let cond = Arc::new(F::condition().unwrap());
    // 0: waiting, 1: woken, 2: epoch, 3..6: waiters woken in epoch 1, 2, 3
    let mem = Arc::new(h.buffer(48));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (c, m) = (cond.clone(), mem.clone());
            h.spawn(move || {
                let _g = c.lock().unwrap();
                word(&*m, 0).fetch_add(1, SeqCst);
                c.wait().unwrap();
                let epoch = word(&*m, 2).load(SeqCst);
                assert!((1..=3).contains(&epoch), "woken before any notify");
                word(&*m, 2 + epoch as usize).fetch_add(1, SeqCst);
                word(&*m, 1).fetch_add(1, SeqCst);
            })
        })
        .collect();
    eventually("three waiters wait", || {
        let _g = cond.lock().unwrap();
        word(&*mem, 0).load(SeqCst) == 3
    });
    for epoch in 1..=3u64 {
        {
            let _g = cond.lock().unwrap();
            word(&*mem, 2).store(epoch, SeqCst);
            if epoch < 3 {
                cond.notify(1).unwrap();
            } else {
                cond.notify_all().unwrap();
            }
        }
        if epoch < 3 {
            eventually("a notified waiter wakes", || {
                word(&*mem, 1).load(SeqCst) >= epoch
            });
        }
    }
    join_all(waiters);
    let per_epoch: Vec<u64> = (3..6).map(|i| word(&*mem, i).load(SeqCst)).collect();
    assert_eq!(
        per_epoch,
        [1, 1, 1],
        "waiters woken by notify(1), notify(1), notify_all: notify(1) woke more than one"
    );

    // wait_for: the waiter counts each evaluation of its predicate (under the lock). The
    // test first notifies with the predicate false — wait_for must wait again — and sets it
    // only once the waiter is back in wait.
    let mem = Arc::new(h.buffer(24)); // 0: predicate flag, 1: evaluations, 2: wait_for's result
    let (c, m) = (cond.clone(), mem.clone());
    let waiter = h.spawn(move || {
        let _g = c.lock().unwrap();
        let ok = c
            .wait_for(
                || {
                    word(&*m, 1).fetch_add(1, SeqCst);
                    word(&*m, 0).load(SeqCst) == 1
                },
                Duration::from_secs(30),
            )
            .unwrap();
        word(&*m, 2).store(1 + ok as u64, SeqCst);
        assert!(ok, "wait_for returned false before its 30 s timeout");
        assert_eq!(word(&*m, 0).load(SeqCst), 1, "wait_for returned early");
    });
    let waiting_after = |evaluations: u64| {
        eventually("wait_for waits", || {
            let _g = cond.lock().unwrap();
            word(&*mem, 1).load(SeqCst) >= evaluations || word(&*mem, 2).load(SeqCst) != 0
        })
    };
    waiting_after(1);
    {
        let _g = cond.lock().unwrap();
        cond.notify_all().unwrap(); // the predicate is still false
    }
    waiting_after(2);
    {
        let _g = cond.lock().unwrap();
        word(&*mem, 0).store(1, SeqCst);
        cond.notify_all().unwrap();
    }
    join_all([waiter]);

    let _g = cond.lock().unwrap();
    let t = Instant::now();
    assert!(!cond.wait_timeout(Duration::from_millis(30)).unwrap());
    assert!(
        t.elapsed() >= Duration::from_millis(25),
        "wait_timeout returned early"
    );
    let t = Instant::now();
    assert!(!cond.wait_for(|| false, Duration::from_millis(10)).unwrap());
    assert!(
        t.elapsed() >= Duration::from_millis(8),
        "wait_for returned early"
    );
}

/// Condition: waiting or notifying without holding its lock is `NotHeld`; its lock is
/// re-entrant and `wait` releases it completely.
pub fn condition_requires_lock<F: SyncFamily, H: Harness>(h: &H) {
    let cond = Arc::new(F::condition().unwrap());
    assert!(matches!(
        cond.wait_timeout(Duration::from_millis(1)),
        Err(Error::NotHeld(_))
    ));
    assert!(matches!(cond.notify(1), Err(Error::NotHeld(_))));
    assert!(matches!(cond.notify_all(), Err(Error::NotHeld(_))));
    // Held twice, wait must still let another worker in.
    cond.acquire().unwrap();
    cond.acquire().unwrap();
    let c = cond.clone();
    let other = h.spawn(move || {
        let _g = c.lock().unwrap();
        c.notify_all().unwrap();
    });
    assert!(
        cond.wait_timeout(Duration::from_secs(10)).unwrap(),
        "nobody got in to notify"
    );
    join_all([other]);
    cond.release().unwrap();
    cond.release().unwrap();
    assert!(!cond.locked());
}

/// Semaphore: counts, limits concurrency to its value, times out, and an unbounded one may
/// be released above its initial value.
pub fn semaphore_counts<F: SyncFamily, H: Harness>(h: &H) {
    let sem = Arc::new(F::semaphore(2).unwrap());
    assert!(!sem.is_bounded());
    assert!(sem.try_acquire().unwrap());
    assert!(sem.try_acquire().unwrap());
    assert!(!sem.try_acquire().unwrap());
    assert_eq!(sem.value(), 0);
    let t = Instant::now();
    assert!(!sem.acquire_timeout(Duration::from_millis(30)).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(25));
    sem.release(2).unwrap();
    assert_eq!(sem.value(), 2);

    let mem = Arc::new(h.buffer(16)); // 0: inside now, 1: most inside at once
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (s, m) = (sem.clone(), mem.clone());
            h.spawn(move || {
                for i in 0..300 {
                    s.acquire().unwrap();
                    let inside = word(&*m, 0).fetch_add(1, SeqCst) + 1;
                    word(&*m, 1).fetch_max(inside, SeqCst);
                    if i % 16 == 0 {
                        std::thread::yield_now();
                    }
                    word(&*m, 0).fetch_sub(1, SeqCst);
                    s.release(1).unwrap();
                }
            })
        })
        .collect();
    join_all(workers);
    assert!(
        word(&*mem, 1).load(SeqCst) <= 2,
        "more holders than the semaphore's value"
    );
    assert_eq!(sem.value(), 2);
    sem.release(1).unwrap();
    assert_eq!(
        sem.value(),
        3,
        "an unbounded semaphore may exceed its initial value"
    );
}

/// Semaphore: one at 0 blocks `acquire` until a release, which wakes the sleeper.
///
/// Handshake as in [`event_set_clear_wait`]: the test releases only once the waiter sleeps in
/// `acquire` (or has returned from it, which it must not), recording the release first.
pub fn semaphore_zero_blocks_until_release<F: SyncFamily, H: Harness>(h: &H) {
    let zero = Arc::new(F::semaphore(0).unwrap());
    assert!(!zero.try_acquire().unwrap());
    let mem = Arc::new(h.buffer(24)); // 0: released, 1: acquired, 2: the waiter's thread id
    let (z, m) = (zero.clone(), mem.clone());
    let waiter = h.spawn(move || {
        word(&*m, 2).store(thread_id(), SeqCst);
        z.acquire().unwrap();
        let released = word(&*m, 0).load(SeqCst);
        word(&*m, 1).store(1, SeqCst);
        assert_eq!(
            released, 1,
            "acquire on a zero semaphore returned before any release"
        );
    });
    eventually("the waiter sleeps in acquire()", || {
        let tid = word(&*mem, 2).load(SeqCst);
        word(&*mem, 1).load(SeqCst) == 1 || (tid != 0 && asleep(tid))
    });
    word(&*mem, 0).store(1, SeqCst);
    zero.release(1).unwrap();
    join_all([waiter]);
    assert_eq!(zero.value(), 0);
}

/// BoundedSemaphore: releasing above the initial value is an error that changes nothing.
pub fn bounded_semaphore_over_release<F: SyncFamily, H: Harness>(_h: &H) {
    let sem = F::bounded_semaphore(1).unwrap();
    assert!(sem.is_bounded());
    assert!(matches!(sem.release(1), Err(Error::InvalidArgument { .. })));
    assert_eq!(sem.value(), 1);
    sem.acquire().unwrap();
    assert!(matches!(sem.release(2), Err(Error::InvalidArgument { .. })));
    assert_eq!(sem.value(), 0);
    sem.release(1).unwrap();
    assert_eq!(sem.value(), 1);
}

/// Semaphore: `release(0)` is an error naming `n` that changes nothing, bounded or not
/// (Python: `ValueError('n must be one or more')`).
pub fn semaphore_release_of_nothing_is_refused<F: SyncFamily, H: Harness>(_h: &H) {
    for sem in [F::semaphore(1).unwrap(), F::bounded_semaphore(1).unwrap()] {
        assert!(
            matches!(
                sem.release(0),
                Err(Error::InvalidArgument { name: "n", .. })
            ),
            "release(0) of a {} was accepted",
            sem.kind()
        );
        assert_eq!(sem.value(), 1);
    }
}

/// Barrier: releases all parties together with distinct indices, and can be used again.
pub fn barrier_releases_all_parties<F: SyncFamily, H: Harness>(h: &H) {
    let barrier = Arc::new(F::barrier(3).unwrap());
    assert_eq!(barrier.parties(), 3);
    let mem = Arc::new(h.buffer(16)); // per round: a bit per index
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (b, m) = (barrier.clone(), mem.clone());
            h.spawn(move || {
                for round in 0..2 {
                    let i = b.wait().unwrap();
                    word(&*m, round).fetch_or(1 << i, SeqCst);
                }
            })
        })
        .collect();
    for round in 0..2 {
        let i = barrier.wait().unwrap();
        word(&*mem, round).fetch_or(1 << i, SeqCst);
    }
    join_all(workers);
    assert_eq!(
        word(&*mem, 0).load(SeqCst),
        0b111,
        "indices were not 0, 1, 2"
    );
    assert_eq!(word(&*mem, 1).load(SeqCst), 0b111, "second round failed");
    assert_eq!(barrier.n_waiting(), 0);
}

/// Barrier: a timed-out wait breaks it; abort breaks waiting parties; reset repairs it;
/// zero parties is rejected.
pub fn barrier_timeout_abort_reset<F: SyncFamily, H: Harness>(h: &H) {
    assert!(matches!(
        F::barrier(0),
        Err(Error::InvalidArgument {
            name: "parties",
            ..
        })
    ));
    let barrier = Arc::new(F::barrier(2).unwrap());
    assert!(matches!(
        barrier.wait_timeout(Duration::from_millis(20)),
        Err(Error::Timeout(_))
    ));
    assert!(barrier.broken());
    assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
    barrier.reset();
    assert!(!barrier.broken());

    let b = barrier.clone();
    let waiter = h.spawn(move || {
        assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    });
    eventually("the worker waits", || barrier.n_waiting() == 1);
    barrier.abort();
    join_all([waiter]);
    assert!(barrier.broken());
    barrier.reset();

    let b = barrier.clone();
    let waiter = h.spawn(move || {
        b.wait_timeout(Duration::from_secs(10)).unwrap();
    });
    barrier.wait_timeout(Duration::from_secs(10)).unwrap();
    join_all([waiter]);
}

/// Generates one `#[test]` per sync conformance check, for a [`SyncFamily`] type and a
/// [`Harness`] value:
///
/// ```ignore
/// multiproc_core::sync_conformance!(ThreadSync, multiproc_core::testing::ThreadHarness);
/// ```
#[macro_export]
macro_rules! sync_conformance {
    ($family:ty, $harness:expr) => {
        mod sync_conformance {
            #[allow(unused_imports)]
            use super::*;
            use $crate::testing::sync as suite;

            #[test]
            fn lock_mutual_exclusion() {
                suite::lock_mutual_exclusion::<$family, _>(&$harness)
            }
            #[test]
            fn lock_timeouts_and_release() {
                suite::lock_timeouts_and_release::<$family, _>(&$harness)
            }
            #[test]
            fn rlock_reentry() {
                suite::rlock_reentry::<$family, _>(&$harness)
            }
            #[test]
            fn event_set_clear_wait() {
                suite::event_set_clear_wait::<$family, _>(&$harness)
            }
            #[test]
            fn condition_notify() {
                suite::condition_notify::<$family, _>(&$harness)
            }
            #[test]
            fn condition_requires_lock() {
                suite::condition_requires_lock::<$family, _>(&$harness)
            }
            #[test]
            fn semaphore_counts() {
                suite::semaphore_counts::<$family, _>(&$harness)
            }
            #[test]
            fn semaphore_zero_blocks_until_release() {
                suite::semaphore_zero_blocks_until_release::<$family, _>(&$harness)
            }
            #[test]
            fn bounded_semaphore_over_release() {
                suite::bounded_semaphore_over_release::<$family, _>(&$harness)
            }
            #[test]
            fn semaphore_release_of_nothing_is_refused() {
                suite::semaphore_release_of_nothing_is_refused::<$family, _>(&$harness)
            }
            #[test]
            fn barrier_releases_all_parties() {
                suite::barrier_releases_all_parties::<$family, _>(&$harness)
            }
            #[test]
            fn barrier_timeout_abort_reset() {
                suite::barrier_timeout_abort_reset::<$family, _>(&$harness)
            }
        }
    };
}
