//! [`AsyncResult`]: a value that arrives later, and the slot it arrives in.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{lock, Completer};
use crate::error::{Error, Result};

pub(super) enum State<T> {
    Pending,
    Done(Result<T>),
    Taken { successful: bool },
}

pub(super) struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Slot<T> {
    pub(super) fn complete(&self, value: Result<T>) {
        let mut state = lock(&self.state);
        if matches!(*state, State::Pending) {
            *state = State::Done(value);
            self.ready.notify_all();
        }
    }

    fn is_pending(&self) -> bool {
        matches!(*lock(&self.state), State::Pending)
    }
}

/// The result of a task submitted with `apply_async`, `map_async` or `starmap_async`
/// (Python's `multiprocessing.pool.AsyncResult`).
///
/// `get` blocks until the value arrives; every blocking call has a `_timeout` form.
pub struct AsyncResult<T> {
    slot: Arc<Slot<T>>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    /// A result and the [`Completer`] that fills it in. Backends use this; users get
    /// `AsyncResult`s from an executor.
    pub fn pending() -> (Completer<T>, AsyncResult<T>) {
        let slot = Arc::new(Slot {
            state: Mutex::new(State::Pending),
            ready: Condvar::new(),
        });
        (
            Completer {
                slot: Some(slot.clone()),
            },
            AsyncResult { slot },
        )
    }

    /// A result that is already complete.
    pub fn ready_with(value: Result<T>) -> AsyncResult<T> {
        let (completer, result) = Self::pending();
        completer.complete(value);
        result
    }

    /// Whether the task has finished (successfully or not). Never blocks.
    pub fn ready(&self) -> bool {
        !self.slot.is_pending()
    }

    /// `Some(true)` if the task finished without error, `Some(false)` if it failed, `None` if it
    /// has not finished yet (where Python raises `ValueError`).
    pub fn successful(&self) -> Option<bool> {
        match &*lock(&self.slot.state) {
            State::Pending => None,
            State::Done(r) => Some(r.is_ok()),
            State::Taken { successful } => Some(*successful),
        }
    }

    /// Blocks until the task has finished.
    pub fn wait(&self) {
        let mut state = lock(&self.slot.state);
        while matches!(*state, State::Pending) {
            state = self
                .slot
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Blocks until the task has finished or `timeout` has passed; returns whether it finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = lock(&self.slot.state);
        while matches!(*state, State::Pending) {
            let Some(deadline) = deadline else {
                // A timeout too large to represent: wait as if forever.
                state = self
                    .slot
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .slot
                .ready
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    fn take(&self) -> Result<T> {
        let mut state = lock(&self.slot.state);
        match std::mem::replace(&mut *state, State::Taken { successful: false }) {
            State::Done(r) => {
                *state = State::Taken {
                    successful: r.is_ok(),
                };
                r
            }
            State::Taken { successful } => {
                *state = State::Taken { successful };
                Err(Error::ResultTaken)
            }
            State::Pending => unreachable!("take is only called once the slot is complete"),
        }
    }

    /// Blocks until the task has finished and returns its value, or the error that
    /// ended it (a panic, a dead worker, a closed pool).
    pub fn get(self) -> Result<T> {
        self.wait();
        self.take()
    }

    /// Like [`get`](Self::get), but gives up with [`Error::Timeout`] after `timeout`.
    ///
    /// On a timeout the result stays pending and can be waited for again. Once a value has
    /// been returned, later calls return [`Error::ResultTaken`].
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        if self.wait_timeout(timeout) {
            self.take()
        } else {
            Err(Error::Timeout(timeout))
        }
    }
}
