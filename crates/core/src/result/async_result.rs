//! [`AsyncResult`]: a value that arrives later, and the slot it arrives in.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::{lock, Completer};
use crate::cancel::CancelToken;
use crate::error::{Error, Result};
use crate::spin::{spin_until, SPIN};

pub(super) enum State<T> {
    Pending,
    Done(Result<T>),
    Taken { successful: bool },
}

pub(super) struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    /// Threads waiting on `ready`, counted under `state`'s lock: `complete` notifies only when
    /// one waits (a notification is a system call, and most results of a batch of
    /// `apply_async` are complete before anyone waits for them).
    sleepers: AtomicUsize,
    /// Set by `complete` (under `state`'s lock): what a waiter's spin checks without the lock.
    done: AtomicBool,
    /// The task awaiting it (`.await`), registered under `state`'s lock.
    waker: Mutex<Option<Waker>>,
}

impl<T> Slot<T> {
    /// Stores `value` if the slot is still pending; returns whether it did.
    pub(super) fn complete(&self, value: Result<T>) -> bool {
        let mut state = lock(&self.state);
        let pending = matches!(*state, State::Pending);
        if pending {
            *state = State::Done(value);
            self.done.store(true, Ordering::Release);
            let sleeping = self.sleepers.load(Ordering::Relaxed) > 0;
            let waker = lock(&self.waker).take();
            drop(state);
            // Notified after the lock is released, so that a woken sleeper takes it at once
            // rather than waking only to block on it. A sleeper counted above is already
            // waiting (it released the lock inside `wait`, and we took it after): it cannot
            // miss this notification.
            if sleeping {
                self.ready.notify_all();
            }
            if let Some(w) = waker {
                w.wake();
            }
        }
        pending
    }

    fn is_pending(&self) -> bool {
        matches!(*lock(&self.state), State::Pending)
    }

    /// Spins for at most `budget` (capped at [`SPIN`]) until the slot is complete, so that a
    /// result arriving within a round trip is taken without a sleep and its wake-up.
    fn spin(&self, budget: Duration) {
        spin_until(budget.min(SPIN), || self.done.load(Ordering::Acquire));
    }

    /// Waits on `ready` (at most `timeout`), counted in `sleepers` while it does.
    fn sleep<'a>(
        &self,
        state: MutexGuard<'a, State<T>>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, State<T>> {
        // Changed under `state`'s lock only, so `complete` (which holds it) sees every sleeper.
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        let state = match timeout {
            None => self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
            Some(t) => {
                self.ready
                    .wait_timeout(state, t)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        state
    }
}

/// The result of a task submitted with `apply_async`, `map_async` or `starmap_async`
/// (Python's `multiprocessing.pool.AsyncResult`).
///
/// `get` blocks until the value arrives; every blocking call has a `_timeout` form.
pub struct AsyncResult<T> {
    slot: Arc<Slot<T>>,
    /// Set when the result came from an executor (`cancel` then stops the work too).
    pub(super) cancel: Option<Arc<CancelToken>>,
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
            sleepers: AtomicUsize::new(0),
            done: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        (
            Completer {
                slot: Some(slot.clone()),
            },
            AsyncResult { slot, cancel: None },
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

    /// A result still pending in a process other than the one that submitted its task (a
    /// forked child's copy): nothing there completes it, so waiting is refused.
    fn foreign(&self) -> Option<Error> {
        if self.slot.done.load(Ordering::Acquire) {
            return None;
        }
        self.cancel.as_ref()?.check_home().err()
    }

    /// Blocks until the task has finished. In a forked child holding a copy of a result that
    /// was still pending, returns at once (nothing there completes it; `get` says why).
    pub fn wait(&self) {
        if self.foreign().is_some() {
            return;
        }
        self.slot.spin(SPIN);
        let mut state = lock(&self.slot.state);
        while matches!(*state, State::Pending) {
            state = self.slot.sleep(state, None);
        }
    }

    /// Blocks until the task has finished or `timeout` has passed; returns whether it finished.
    /// In a forked child holding a copy of a result that was still pending, `false` at once.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if self.foreign().is_some() {
            return false;
        }
        let deadline = Instant::now().checked_add(timeout);
        self.slot.spin(timeout);
        let mut state = lock(&self.slot.state);
        while matches!(*state, State::Pending) {
            let Some(deadline) = deadline else {
                // A timeout too large to represent: wait as if forever.
                state = self.slot.sleep(state, None);
                continue;
            };
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.slot.sleep(state, Some(deadline - now));
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

    /// Cancels the task: one that has not started never runs; a process pool kills and
    /// replaces the worker of one that is running (a thread cannot be stopped: the threads
    /// pool lets it finish and drops its result). From now on [`get`](Self::get) returns
    /// [`Error::Cancelled`]. Returns `false`, doing nothing, if the task had finished already.
    ///
    /// ```
    /// # use multiproc_core::{AsyncResult, Error};
    /// # let (_completer, pending) = AsyncResult::<u8>::pending();
    /// // pending = pool.apply_async(slow, arg)?;
    /// assert!(pending.cancel());
    /// assert!(matches!(pending.get(), Err(Error::Cancelled)));
    /// ```
    pub fn cancel(&self) -> bool {
        // One step: a result completing meanwhile wins, and then nothing was cancelled.
        if !self.slot.complete(Err(Error::Cancelled)) {
            return false;
        }
        if let Some(token) = &self.cancel {
            token.cancel();
        }
        true
    }

    /// Blocks until the task has finished and returns its value, or the error that
    /// ended it (a panic, a dead worker, a closed pool). In a forked child holding a copy of
    /// a result that was still pending: [`Error::ForeignProcess`] at once.
    pub fn get(self) -> Result<T> {
        if let Some(e) = self.foreign() {
            return Err(e);
        }
        self.wait();
        self.take()
    }

    /// Like [`get`](Self::get), but gives up with [`Error::Timeout`] after `timeout`.
    ///
    /// On a timeout the result stays pending and can be waited for again. Once a value has
    /// been returned, later calls return [`Error::ResultTaken`].
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        if let Some(e) = self.foreign() {
            return Err(e);
        }
        if self.wait_timeout(timeout) {
            self.take()
        } else {
            Err(Error::Timeout(timeout))
        }
    }
}

/// The future of an [`AsyncResult`] (`result.await`): resolves to what
/// [`get`](AsyncResult::get) returns, without blocking a thread. Runtime-agnostic: the
/// pool's supervisor wakes the awaiting task, on any executor (tokio, async-std, smol,
/// `futures::executor::block_on`).
///
/// ```
/// # use multiproc_core::AsyncResult;
/// # let (completer, pending) = AsyncResult::<u64>::pending();
/// # completer.complete(Ok(144));
/// # let block_on = |f| multiproc_core::block_on(f);
/// // pending = pool.apply_async(square, 12)?;
/// let value = block_on(async move { pending.await })?;
/// assert_eq!(value, 144);
/// # Ok::<(), multiproc_core::Error>(())
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct AsyncResultFuture<T> {
    result: AsyncResult<T>,
}

impl<T> std::fmt::Debug for AsyncResultFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.result.fmt(f)
    }
}

impl<T> Future for AsyncResultFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if let Some(e) = self.result.foreign() {
            return Poll::Ready(Err(e));
        }
        let slot = &self.result.slot;
        {
            let state = lock(&slot.state);
            if matches!(*state, State::Pending) {
                // Registered under the state's lock: `complete` takes it after setting the
                // state, under the same lock, so no wake-up is lost.
                *lock(&slot.waker) = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        Poll::Ready(self.result.take())
    }
}

impl<T> IntoFuture for AsyncResult<T> {
    type Output = Result<T>;
    type IntoFuture = AsyncResultFuture<T>;

    fn into_future(self) -> AsyncResultFuture<T> {
        AsyncResultFuture { result: self }
    }
}
