//! [`Event`]: Python's `threading.Event`.

use std::sync::Mutex;
use std::time::Duration;

use multiproc_core::{Result, SyncPrimitive};

use super::condvar::{guard, wait_while, Cond};

/// A flag threads can wait on (Python's `threading.Event`).
///
/// ```
/// use std::sync::Arc;
/// use multiproc_threads::Event;
/// let done = Arc::new(Event::new());
/// let d = done.clone();
/// std::thread::spawn(move || d.set());
/// done.wait();
/// assert!(done.is_set());
/// ```
#[derive(Debug, Default)]
pub struct Event {
    flag: Mutex<bool>,
    changed: Cond,
}

impl Event {
    /// A new event, not set.
    pub const fn new() -> Self {
        Event {
            flag: Mutex::new(false),
            changed: Cond::new(),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        *guard(&self.flag) = true;
        self.changed.notify_all();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        *guard(&self.flag) = false;
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        *guard(&self.flag)
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) {
        let _ = wait_while(&self.changed, guard(&self.flag), None, |f| !*f);
    }

    /// Blocks until the flag is set or `timeout` passes; returns the flag.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        wait_while(&self.changed, guard(&self.flag), Some(timeout), |f| !*f).1
    }
}

impl SyncPrimitive for Event {
    fn kind(&self) -> &'static str {
        "Event"
    }
}

impl multiproc_core::Event for Event {
    fn set(&self) -> Result<()> {
        Event::set(self);
        Ok(())
    }
    fn clear(&self) -> Result<()> {
        Event::clear(self);
        Ok(())
    }
    fn is_set(&self) -> bool {
        Event::is_set(self)
    }
    fn wait(&self) -> Result<()> {
        Event::wait(self);
        Ok(())
    }
    fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(Event::wait_timeout(self, timeout))
    }
}
