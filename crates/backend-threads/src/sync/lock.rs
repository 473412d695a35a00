//! [`Lock`]: Python's `threading.Lock`.

use std::sync::Mutex;
use std::time::Duration;

use multiproc_core::{Error, LockGuard, Result, SyncPrimitive};

use super::condvar::{guard, wait_while, Cond};
use super::infallible;

/// A mutual-exclusion lock (Python's `threading.Lock`).
///
/// Not tied to a thread: like Python's, it may be released by a thread other than the one
/// that acquired it. Use [`lock`](Lock::lock) for a guard that releases on drop (`with lock:`).
///
/// ```
/// use multiproc_threads::Lock;
/// static LOCK: Lock = Lock::new();
/// {
///     let _held = LOCK.lock();
///     assert!(LOCK.locked());
/// }
/// assert!(!LOCK.locked());
/// ```
#[derive(Debug, Default)]
pub struct Lock {
    held: Mutex<bool>,
    freed: Cond,
}

impl Lock {
    /// A new, unlocked lock.
    pub const fn new() -> Self {
        Lock {
            held: Mutex::new(false),
            freed: Cond::new(),
        }
    }

    fn acquire_for(&self, timeout: Option<Duration>) -> bool {
        let (mut held, ok) = wait_while(&self.freed, guard(&self.held), timeout, |h| *h);
        if ok {
            *held = true;
        }
        ok
    }

    /// Blocks until the lock is acquired.
    pub fn acquire(&self) {
        self.acquire_for(None);
    }

    /// Tries for at most `timeout`; returns whether the lock was acquired.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_for(Some(timeout))
    }

    /// Acquires only if the lock is free now (Python's `acquire(blocking=False)`).
    pub fn try_acquire(&self) -> bool {
        self.acquire_for(Some(Duration::ZERO))
    }

    /// Releases the lock; [`Error::NotHeld`] if it is not locked.
    pub fn release(&self) -> Result<()> {
        let mut held = guard(&self.held);
        if !*held {
            return Err(Error::NotHeld("release of an unlocked Lock"));
        }
        *held = false;
        drop(held);
        self.freed.notify_one();
        Ok(())
    }

    /// Whether the lock is held by anyone.
    pub fn locked(&self) -> bool {
        *guard(&self.held)
    }

    /// Acquires and returns a guard that releases on drop.
    pub fn lock(&self) -> LockGuard<'_, Self> {
        infallible(multiproc_core::Lock::lock(self))
    }
}

impl SyncPrimitive for Lock {
    fn kind(&self) -> &'static str {
        "Lock"
    }
}

impl multiproc_core::Lock for Lock {
    fn acquire(&self) -> Result<()> {
        Lock::acquire(self);
        Ok(())
    }
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(Lock::acquire_timeout(self, timeout))
    }
    fn release(&self) -> Result<()> {
        Lock::release(self)
    }
    fn locked(&self) -> bool {
        Lock::locked(self)
    }
}
