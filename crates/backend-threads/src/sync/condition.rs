//! [`Condition`]: Python's `threading.Condition`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc_core::{Error, LockGuard, Result, SyncPrimitive};

use super::condvar::{guard, wait_while, Cond};
use super::{infallible, RLock};

#[derive(Debug, Default)]
struct Waiter {
    notified: Mutex<bool>,
    wake: Cond,
}

/// A condition variable with its own re-entrant lock (Python's `threading.Condition`).
///
/// Python's algorithm: each waiter parks on its own flag, queued in arrival order, and
/// `notify(n)` hands the flag to the first `n`. So `notify(1)` wakes exactly one waiter and
/// there are no spurious wake-ups.
#[derive(Debug, Default)]
pub struct Condition {
    lock: RLock,
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
}

impl Condition {
    /// A new condition with its own re-entrant lock.
    pub const fn new() -> Self {
        Condition {
            lock: RLock::new(),
            waiters: Mutex::new(VecDeque::new()),
        }
    }

    /// Acquires the condition's lock.
    pub fn acquire(&self) {
        self.lock.acquire()
    }

    /// Releases the condition's lock; [`Error::NotHeld`] if the calling thread does not own it.
    pub fn release(&self) -> Result<()> {
        self.lock.release()
    }

    /// Acquires the lock and returns a guard that releases it on drop (`with cond:`).
    pub fn lock(&self) -> LockGuard<'_, Self> {
        infallible(multiproc_core::Lock::lock(self))
    }

    fn wait_for_notify(&self, timeout: Option<Duration>) -> Result<bool> {
        if !self.lock.is_owned() {
            return Err(Error::NotHeld("wait on a Condition whose lock is not held"));
        }
        let me = Arc::new(Waiter::default());
        guard(&self.waiters).push_back(me.clone());
        let depth = self.lock.release_all()?;
        let (notified, mut ok) = wait_while(&me.wake, guard(&me.notified), timeout, |n| !*n);
        drop(notified);
        if !ok {
            // Timed out, unless a notify picked us between the timeout and now.
            let mut waiters = guard(&self.waiters);
            match waiters.iter().position(|w| Arc::ptr_eq(w, &me)) {
                Some(i) => {
                    waiters.remove(i);
                }
                None => ok = true,
            }
        }
        self.lock.acquire_depth(None, depth);
        Ok(ok)
    }

    /// Releases the lock, waits for a notification, re-acquires the lock (at its previous
    /// recursion depth). [`Error::NotHeld`] if the calling thread does not own the lock.
    pub fn wait(&self) -> Result<()> {
        self.wait_for_notify(None).map(drop)
    }

    /// Like [`wait`](Self::wait) for at most `timeout`; `Ok(false)` on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_for_notify(Some(timeout))
    }

    /// Waits until `predicate()` holds or `timeout` passes; returns the predicate's last value.
    pub fn wait_for(&self, predicate: impl FnMut() -> bool, timeout: Duration) -> Result<bool> {
        multiproc_core::Condition::wait_for(self, predicate, timeout)
    }

    /// Wakes up to `n` waiters, longest-waiting first. The lock must be held.
    pub fn notify(&self, n: usize) -> Result<()> {
        if !self.lock.is_owned() {
            return Err(Error::NotHeld(
                "notify on a Condition whose lock is not held",
            ));
        }
        let mut waiters = guard(&self.waiters);
        for _ in 0..n {
            let Some(w) = waiters.pop_front() else { break };
            *guard(&w.notified) = true;
            w.wake.notify_one();
        }
        Ok(())
    }

    /// Wakes every waiter. The lock must be held.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(usize::MAX)
    }
}

impl SyncPrimitive for Condition {
    fn kind(&self) -> &'static str {
        "Condition"
    }
}

impl multiproc_core::Lock for Condition {
    fn acquire(&self) -> Result<()> {
        Condition::acquire(self);
        Ok(())
    }
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.lock.acquire_timeout(timeout))
    }
    fn release(&self) -> Result<()> {
        Condition::release(self)
    }
    fn locked(&self) -> bool {
        self.lock.locked()
    }
}

impl multiproc_core::Condition for Condition {
    fn wait(&self) -> Result<()> {
        Condition::wait(self)
    }
    fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        Condition::wait_timeout(self, timeout)
    }
    fn notify(&self, n: usize) -> Result<()> {
        Condition::notify(self, n)
    }
    fn notify_all(&self) -> Result<()> {
        Condition::notify_all(self)
    }
}
