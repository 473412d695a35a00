//! Results that arrive later: [`AsyncResult`], the lazy [`IMap`] iterator, and the
//! [`ChunkSink`] through which a backend hands chunk results back.
//!
//! Every backend uses these same types, so `get`, `wait`, `ready`, ordering and the
//! "nothing hangs" guarantee are written once: a sink that is dropped before it delivered
//! every chunk (a backend that was terminated, a worker that vanished) completes its
//! results with an error instead of leaving a waiter blocked forever.

mod async_result;
mod block_on;
mod completer;
mod imap;
mod sink;
#[cfg(test)]
mod tests;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use async_result::{AsyncResult, AsyncResultFuture};
pub use block_on::block_on;
pub use completer::Completer;
pub use imap::{IMap, IMapNext};
pub use sink::ChunkSink;
#[cfg(feature = "progress")]
pub(crate) use sink::ChunkTarget;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned mutex only means another thread panicked while holding it; our state
    // transitions are single assignments, so the data is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
