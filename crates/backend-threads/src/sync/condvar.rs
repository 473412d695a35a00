//! The waiter-counting condition variable every thread primitive waits with, and the
//! poison-tolerant mutex lock they all take.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub(super) fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below is a handful of field assignments that cannot panic
    // half-way, so a poisoned mutex still holds consistent state.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A condition variable that skips the wake-up system call when nobody waits: std's
/// `Condvar::notify_*` always makes one (a futex wake), which made an uncontended
/// `Lock` acquire + release cost ~10× a `Mutex` lock + unlock.
///
/// `waiters` is changed only by [`wait_while`], under the mutex the waiter waits with. A
/// notifier changes the shared state under that same mutex before it notifies, so a waiter
/// counted after the notifier's critical section saw the new state and did not wait, and a
/// waiter counted before it is visible to the notifier (the mutex orders the two).
#[derive(Debug, Default)]
pub(super) struct Cond {
    cv: Condvar,
    waiters: AtomicUsize,
}

impl Cond {
    pub(super) const fn new() -> Self {
        Cond {
            cv: Condvar::new(),
            waiters: AtomicUsize::new(0),
        }
    }

    pub(super) fn notify_one(&self) {
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.cv.notify_one();
        }
    }

    pub(super) fn notify_all(&self) {
        if self.waiters.load(Ordering::Relaxed) > 0 {
            self.cv.notify_all();
        }
    }

    /// How many threads wait (for tests that must know a waiter sleeps).
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }
}

/// Waits on `cv` while `blocked` holds, for at most `timeout`; returns the guard and whether
/// the condition was met (false: timed out).
pub(super) fn wait_while<'a, T>(
    cv: &Cond,
    g: MutexGuard<'a, T>,
    timeout: Option<Duration>,
    mut blocked: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    let mut g = g;
    if !blocked(&mut g) {
        return (g, true);
    }
    // Counted under the mutex, before it is released by the wait (see `Cond`).
    cv.waiters.fetch_add(1, Ordering::Relaxed);
    let (g, met) = match timeout {
        None => (
            cv.cv
                .wait_while(g, blocked)
                .unwrap_or_else(PoisonError::into_inner),
            true,
        ),
        Some(t) => {
            let (mut g, _) = cv
                .cv
                .wait_timeout_while(g, t, &mut blocked)
                .unwrap_or_else(PoisonError::into_inner);
            let met = !blocked(&mut g);
            (g, met)
        }
    };
    cv.waiters.fetch_sub(1, Ordering::Relaxed);
    (g, met)
}
