//! [`IMap`]: the lazy iterator of `imap` and `imap_unordered`.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::lock;
use crate::cancel::CancelToken;
use crate::error::{Error, Result};

/// The lazy iterator of Python's `imap` (ordered) and `imap_unordered`.
///
/// Each item is the result of one task. A chunk that failed yields a single `Err` in place
/// of its items. If the pool goes away before delivering everything, it never blocks
/// forever: an ordered one still yields, in order, every result that arrived, with one
/// [`Error::PoolClosed`] in place of each chunk that did not; an unordered one yields
/// `PoolClosed` once and ends. Dropping it before every
/// result has arrived cancels the rest: chunks not started never run, and a process pool
/// kills (and replaces) the workers running its chunks. Dropping it once every result has
/// arrived, read or not, cancels nothing (no worker is touched).
pub struct IMap<R> {
    pub(super) cancel: Arc<CancelToken>,
    /// The task awaiting [`next_async`](IMap::next_async).
    pub(super) waker: Arc<Mutex<Option<Waker>>>,
    pub(super) rx: mpsc::Receiver<(usize, Result<Vec<R>>)>,
    pub(super) ordered: bool,
    pub(super) n_chunks: usize,
    pub(super) received: usize,
    pub(super) next_chunk: usize,
    pub(super) waiting: BTreeMap<usize, Result<Vec<R>>>,
    pub(super) current: VecDeque<R>,
    /// Every sender is gone: a chunk not in `waiting` will never come.
    pub(super) lost: bool,
}

impl<R> std::fmt::Debug for IMap<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMap")
            .field("ordered", &self.ordered)
            .field("chunks", &self.n_chunks)
            .field("received", &self.received)
            .finish()
    }
}

enum Step<R> {
    Item(Result<R>),
    Finished,
    TimedOut,
}

impl<R> IMap<R> {
    fn finished(&self) -> bool {
        self.current.is_empty()
            && if self.ordered {
                self.next_chunk >= self.n_chunks
            } else {
                self.received >= self.n_chunks
            }
    }

    /// Turns the next ready chunk into items; returns an error chunk as one item.
    fn advance(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(v) = self.current.pop_front() {
                return Some(Ok(v));
            }
            if !self.ordered {
                return None;
            }
            let outcome = match self.waiting.remove(&self.next_chunk) {
                Some(outcome) => outcome,
                None if self.lost && self.next_chunk < self.n_chunks => Err(Error::PoolClosed(
                    "the pool went away before delivering this result",
                )),
                None => return None,
            };
            self.next_chunk += 1;
            match outcome {
                Ok(values) => self.current.extend(values),
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn step(&mut self, deadline: Option<Instant>) -> Step<R> {
        loop {
            if let Some(item) = self.advance() {
                return Step::Item(item);
            }
            if self.finished() {
                return Step::Finished;
            }
            if let Err(e) = self.cancel.check_home() {
                // A forked child's copy: nothing here delivers the rest. Said once, then
                // the iterator ends (a `for` loop over it must not wait for ever).
                self.received = self.n_chunks;
                self.waiting.clear();
                self.next_chunk = self.n_chunks;
                return Step::Item(Err(e));
            }
            let message = match deadline {
                None => self.rx.recv().map_err(|_| true),
                Some(d) => self
                    .rx
                    .recv_timeout(d.saturating_duration_since(Instant::now()))
                    .map_err(|e| matches!(e, mpsc::RecvTimeoutError::Disconnected)),
            };
            match message {
                Ok((index, outcome)) => {
                    self.received += 1;
                    if self.ordered {
                        self.waiting.insert(index, outcome);
                    } else {
                        match outcome {
                            Ok(values) => self.current.extend(values),
                            Err(e) => return Step::Item(Err(e)),
                        }
                    }
                }
                Err(true) if self.ordered => {
                    // Every sender is gone but chunks are missing: what arrived is handed
                    // out in order, each missing chunk as one error (in `advance`).
                    self.received = self.n_chunks;
                    self.lost = true;
                }
                Err(true) => {
                    // Unordered, nothing says which items are missing: report once, end.
                    self.received = self.n_chunks;
                    return Step::Item(Err(Error::PoolClosed(
                        "the pool went away before delivering every result",
                    )));
                }
                Err(false) => return Step::TimedOut,
            }
        }
    }

    /// The next result, waiting at most `timeout` for it: `Some(Err(Error::Timeout))` if it
    /// did not arrive in time (the iterator can be resumed), `None` when all results are out.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        let deadline = Instant::now().checked_add(timeout);
        match self.step(deadline) {
            Step::Item(r) => Some(r),
            Step::Finished => None,
            Step::TimedOut => Some(Err(Error::Timeout(timeout))),
        }
    }
}

impl<R> IMap<R> {
    /// The next result without blocking a thread: `imap.next_async().await` is
    /// [`next`](Iterator::next) for async code (a `Stream`'s `next`), on any executor.
    ///
    /// ```
    /// # use multiproc_core::ChunkSink;
    /// # let (sink, mut imap) = ChunkSink::<u64>::imap(2, true);
    /// # sink.deliver(1, Ok(vec![4])); sink.deliver(0, Ok(vec![1])); drop(sink);
    /// // imap = pool.imap(square, [1, 2])?;
    /// let got = multiproc_core::block_on(async move {
    ///     let mut got = Vec::new();
    ///     while let Some(r) = imap.next_async().await {
    ///         got.push(r?);
    ///     }
    ///     Ok::<_, multiproc_core::Error>(got)
    /// })?;
    /// assert_eq!(got, vec![1, 4]);
    /// # Ok::<(), multiproc_core::Error>(())
    /// ```
    pub fn next_async(&mut self) -> IMapNext<'_, R> {
        IMapNext { imap: self }
    }
}

/// The future of [`IMap::next_async`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct IMapNext<'a, R> {
    imap: &'a mut IMap<R>,
}

impl<R> Future for IMapNext<'_, R> {
    type Output = Option<Result<R>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<R>>> {
        let imap = &mut *self.imap;
        // Register first, then look: a delivery after the look wakes us; one before it is
        // seen by the look.
        *lock(&imap.waker) = Some(cx.waker().clone());
        match imap.step(Some(Instant::now())) {
            Step::Item(r) => Poll::Ready(Some(r)),
            Step::Finished => Poll::Ready(None),
            Step::TimedOut => Poll::Pending,
        }
    }
}

impl<R> Drop for IMap<R> {
    fn drop(&mut self) {
        // Results that arrived unread count as arrived: once every chunk is in, nothing is
        // left to cancel (a process pool would kill a worker for nothing).
        while self.received < self.n_chunks && self.rx.try_recv().is_ok() {
            self.received += 1;
        }
        if self.received < self.n_chunks {
            self.cancel.cancel();
        }
    }
}

impl<R> Iterator for IMap<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        match self.step(None) {
            Step::Item(r) => Some(r),
            Step::Finished | Step::TimedOut => None,
        }
    }
}
