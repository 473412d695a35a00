//! Thread-level synchronisation primitives: Python's `threading.Lock`, `RLock`, `Event`,
//! `Condition`, `Semaphore`, `BoundedSemaphore` and `Barrier`.
//!
//! Each type has inherent methods with Python's names (so no trait import is needed) and
//! implements the matching `multiproc_core::sync` trait; [`ThreadSync`] names the whole set
//! for generic code and the conformance suite. All are built on `std::sync::{Mutex, Condvar}`
//! (the `Condvar` wrapped so that a release nobody waits for makes no system call) and are
//! `const`-constructible where Python code would use a module-level object, so they can be
//! `static`s.

mod barrier;
mod condition;
mod condvar;
mod event;
mod lock;
mod rlock;
mod semaphore;

use multiproc_core::{Result, SyncFamily};

pub use barrier::Barrier;
pub use condition::Condition;
pub use event::Event;
pub use lock::Lock;
pub use rlock::RLock;
pub use semaphore::{BoundedSemaphore, Semaphore};

/// Thread primitives cannot fail to acquire; this turns their trait `Result` back into the
/// plain value the inherent API returns.
fn infallible<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => unreachable!("a thread-level acquire cannot fail: {e}"),
    }
}

/// The threads backend's [`SyncFamily`]: every primitive of this module.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadSync;

impl SyncFamily for ThreadSync {
    const NAME: &'static str = "threads";
    type Lock = Lock;
    type RLock = RLock;
    type Event = Event;
    type Condition = Condition;
    type Semaphore = Semaphore;
    type Barrier = Barrier;

    fn lock() -> Result<Lock> {
        Ok(Lock::new())
    }
    fn rlock() -> Result<RLock> {
        Ok(RLock::new())
    }
    fn event() -> Result<Event> {
        Ok(Event::new())
    }
    fn condition() -> Result<Condition> {
        Ok(Condition::new())
    }
    fn semaphore(value: usize) -> Result<Semaphore> {
        Ok(Semaphore::new(value))
    }
    fn bounded_semaphore(value: usize) -> Result<Semaphore> {
        Ok(Semaphore::bounded(value))
    }
    fn barrier(parties: usize) -> Result<Barrier> {
        Barrier::new(parties)
    }
}
