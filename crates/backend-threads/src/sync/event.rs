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
    flag: Mutex<Flag>,
    changed: Cond,
}

/// The flag, and how many times it was set: a waiter woken by a `set` returns even if a
/// `clear` came before it woke up, as in Python (every thread waiting at `set` returns `True`).
#[derive(Debug, Default)]
struct Flag {
    set: bool,
    sets: u64,
}

impl Event {
    /// A new event, not set.
    pub const fn new() -> Self {
        Event {
            flag: Mutex::new(Flag {
                set: false,
                sets: 0,
            }),
            changed: Cond::new(),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mut f = guard(&self.flag);
        f.set = true;
        f.sets = f.sets.wrapping_add(1);
        drop(f);
        self.changed.notify_all();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        guard(&self.flag).set = false;
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        guard(&self.flag).set
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) {
        let _ = self.wait_for(None);
    }

    /// Blocks until the flag is set or `timeout` passes; returns whether it was set (at the
    /// call, or by a `set` during the wait, even one already undone by a `clear`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_for(Some(timeout))
    }

    fn wait_for(&self, timeout: Option<Duration>) -> bool {
        let f = guard(&self.flag);
        let seen = f.sets;
        wait_while(&self.changed, f, timeout, |f| !f.set && f.sets == seen).1
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_at_set_returns_even_if_a_clear_came_before_it_woke() {
        let event = Event::new();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| event.wait_timeout(Duration::from_secs(60)));
            // Until the waiter sleeps (counted under the flag's mutex, before it waits).
            while event.changed.waiting() == 0 {
                std::thread::yield_now();
            }
            // Set and cleared before the waiter can take the mutex back.
            let mut f = guard(&event.flag);
            f.set = true;
            f.sets += 1;
            event.changed.notify_all();
            f.set = false;
            drop(f);
            assert!(waiter.join().unwrap(), "the waiter went back to sleep");
        });
    }
}
