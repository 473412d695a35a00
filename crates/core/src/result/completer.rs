//! [`Completer`]: the sending half of an [`AsyncResult`](super::AsyncResult).

use std::sync::Arc;

use super::async_result::Slot;
use crate::error::{Error, Result};

/// The sending half of an [`AsyncResult`](super::AsyncResult): completes it exactly once.
///
/// Dropping a `Completer` that never completed fails its result with
/// [`Error::PoolClosed`], so a waiter is never left blocked.
pub struct Completer<T> {
    pub(super) slot: Option<Arc<Slot<T>>>,
}

impl<T> Completer<T> {
    /// Delivers the value (or error) to the waiting [`AsyncResult`](super::AsyncResult).
    pub fn complete(mut self, value: Result<T>) {
        if let Some(slot) = self.slot.take() {
            slot.complete(value);
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.complete(Err(Error::PoolClosed(
                "the task was dropped before it ran (pool terminated)",
            )));
        }
    }
}
