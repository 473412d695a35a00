//! [`RLock`]: Python's `threading.RLock`.

use std::sync::Mutex;
use std::thread::{self, ThreadId};
use std::time::Duration;

use multiproc_core::{Error, LockGuard, Result, SyncPrimitive};

use super::condvar::{guard, wait_while, Cond};
use super::infallible;

#[derive(Debug, Default)]
struct Owner {
    thread: Option<ThreadId>,
    depth: usize,
}

/// A re-entrant lock (Python's `threading.RLock`): its owner may acquire it again and must
/// release it as many times; only the owner may release it.
#[derive(Debug, Default)]
pub struct RLock {
    owner: Mutex<Owner>,
    freed: Cond,
}

impl RLock {
    /// A new, unowned re-entrant lock.
    pub const fn new() -> Self {
        RLock {
            owner: Mutex::new(Owner {
                thread: None,
                depth: 0,
            }),
            freed: Cond::new(),
        }
    }

    pub(super) fn acquire_depth(&self, timeout: Option<Duration>, depth: usize) -> bool {
        let me = thread::current().id();
        let mut owner = guard(&self.owner);
        if owner.thread == Some(me) {
            owner.depth += depth;
            return true;
        }
        let (mut owner, ok) = wait_while(&self.freed, owner, timeout, |o| o.thread.is_some());
        if ok {
            owner.thread = Some(me);
            owner.depth = depth;
        }
        ok
    }

    /// Blocks until the calling thread owns the lock (immediately if it already does).
    pub fn acquire(&self) {
        self.acquire_depth(None, 1);
    }

    /// Tries for at most `timeout`; returns whether the calling thread now owns the lock.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_depth(Some(timeout), 1)
    }

    /// Acquires only if that needs no waiting.
    pub fn try_acquire(&self) -> bool {
        self.acquire_depth(Some(Duration::ZERO), 1)
    }

    /// Releases one level; [`Error::NotHeld`] if the calling thread does not own it.
    pub fn release(&self) -> Result<()> {
        let mut owner = guard(&self.owner);
        if owner.thread != Some(thread::current().id()) {
            return Err(Error::NotHeld(
                "release of an RLock not owned by this thread",
            ));
        }
        owner.depth -= 1;
        if owner.depth == 0 {
            owner.thread = None;
            drop(owner);
            self.freed.notify_one();
        }
        Ok(())
    }

    /// Releases every level at once, returning how many there were (for `Condition::wait`).
    pub(super) fn release_all(&self) -> Result<usize> {
        let mut owner = guard(&self.owner);
        if owner.thread != Some(thread::current().id()) {
            return Err(Error::NotHeld("the Condition's lock is not held"));
        }
        let depth = std::mem::take(&mut owner.depth);
        owner.thread = None;
        drop(owner);
        self.freed.notify_one();
        Ok(depth)
    }

    /// Whether any thread owns it.
    pub fn locked(&self) -> bool {
        guard(&self.owner).thread.is_some()
    }

    /// Whether the calling thread owns it.
    pub fn is_owned(&self) -> bool {
        guard(&self.owner).thread == Some(thread::current().id())
    }

    /// How many times the calling thread holds it (0 if it does not own it).
    pub fn recursion_depth(&self) -> usize {
        let owner = guard(&self.owner);
        if owner.thread == Some(thread::current().id()) {
            owner.depth
        } else {
            0
        }
    }

    /// Acquires and returns a guard that releases one level on drop.
    pub fn lock(&self) -> LockGuard<'_, Self> {
        infallible(multiproc_core::Lock::lock(self))
    }
}

impl SyncPrimitive for RLock {
    fn kind(&self) -> &'static str {
        "RLock"
    }
}

impl multiproc_core::Lock for RLock {
    fn acquire(&self) -> Result<()> {
        RLock::acquire(self);
        Ok(())
    }
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(RLock::acquire_timeout(self, timeout))
    }
    fn release(&self) -> Result<()> {
        RLock::release(self)
    }
    fn locked(&self) -> bool {
        RLock::locked(self)
    }
}

impl multiproc_core::RLock for RLock {
    fn recursion_depth(&self) -> usize {
        RLock::recursion_depth(self)
    }
    fn is_owned(&self) -> bool {
        RLock::is_owned(self)
    }
}
