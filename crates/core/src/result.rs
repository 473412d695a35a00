//! Results that arrive later: [`AsyncResult`], the lazy [`IMap`] iterator, and the
//! [`ChunkSink`] through which a backend hands chunk results back.
//!
//! Every backend uses these same types, so `get`, `wait`, `ready`, ordering and the
//! "nothing hangs" guarantee are written once: a sink that is dropped before it delivered
//! every chunk (a backend that was terminated, a worker that vanished) completes its
//! results with an error instead of leaving a waiter blocked forever.

use std::collections::{BTreeMap, VecDeque};
use std::future::{Future, IntoFuture};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::cancel::CancelToken;
use crate::error::{Error, Result};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned mutex only means another thread panicked while holding it; our state
    // transitions are single assignments, so the data is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

enum State<T> {
    Pending,
    Done(Result<T>),
    Taken { successful: bool },
}

struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    /// The task awaiting it (`.await`), registered under `state`'s lock.
    waker: Mutex<Option<Waker>>,
}

impl<T> Slot<T> {
    fn complete(&self, value: Result<T>) {
        let mut state = lock(&self.state);
        if matches!(*state, State::Pending) {
            *state = State::Done(value);
            self.ready.notify_all();
            let waker = lock(&self.waker).take();
            drop(state);
            if let Some(w) = waker {
                w.wake();
            }
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
    /// Set when the result came from an executor (`cancel` then stops the work too).
    cancel: Option<Arc<CancelToken>>,
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
        if !self.slot.is_pending() {
            return false;
        }
        self.slot.complete(Err(Error::Cancelled));
        if let Some(token) = &self.cancel {
            token.cancel();
        }
        true
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

/// The sending half of an [`AsyncResult`]: completes it exactly once.
///
/// Dropping a `Completer` that never completed fails its result with
/// [`Error::PoolClosed`], so a waiter is never left blocked.
pub struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> Completer<T> {
    /// Delivers the value (or error) to the waiting [`AsyncResult`].
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

/// Where the backend delivers a chunk's outcome: `Ok(values)` for the chunk's items in
/// order, or the error that ended the chunk.
pub(crate) trait ChunkTarget<R>: Send + Sync {
    fn deliver(&self, index: usize, outcome: Result<Vec<R>>);
    /// Takes the whole batch at once, if this target assembles one value anyway; gives the
    /// outcome back otherwise.
    fn deliver_whole(&self, outcome: Result<Vec<R>>) -> Option<Result<Vec<R>>> {
        Some(outcome)
    }
    fn wants_whole(&self) -> bool {
        false
    }
}

/// The backend's end of a batch of chunks: deliver each chunk's outcome exactly once.
///
/// Cloning is cheap; clones share one destination. When the last clone is dropped, every
/// chunk not yet delivered is failed with [`Error::PoolClosed`], so a backend that is
/// terminated (or loses a job) cannot leave a caller waiting forever.
pub struct ChunkSink<R> {
    target: Arc<dyn ChunkTarget<R>>,
    cancel: Arc<CancelToken>,
}

impl<R> Clone for ChunkSink<R> {
    fn clone(&self) -> Self {
        ChunkSink {
            target: self.target.clone(),
            cancel: self.cancel.clone(),
        }
    }
}

impl<R: Send + 'static> ChunkSink<R> {
    /// Hands over the outcome of chunk `index` (0-based, in submission order).
    pub fn deliver(&self, index: usize, outcome: Result<Vec<R>>) {
        self.target.deliver(index, outcome)
    }

    /// This sink with its destination wrapped by `wrap` (a progress bar's counter).
    #[cfg(feature = "progress")]
    pub(crate) fn wrap(
        self,
        wrap: impl FnOnce(Arc<dyn ChunkTarget<R>>) -> Arc<dyn ChunkTarget<R>>,
    ) -> Self {
        ChunkSink {
            target: wrap(self.target),
            cancel: self.cancel,
        }
    }

    /// The submission's cancellation: check it before starting a chunk, and register what
    /// stops running chunks with [`CancelToken::on_cancel`].
    pub fn cancel_token(&self) -> &Arc<CancelToken> {
        &self.cancel
    }

    /// Whether this sink only wants the assembled result (it feeds `map` or `apply`, not
    /// `imap`). A backend that computes a whole batch in one go may then hand it over with
    /// [`deliver_whole`](Self::deliver_whole) instead of chunk by chunk.
    pub fn wants_whole(&self) -> bool {
        self.target.wants_whole()
    }

    /// Hands over every item's result at once (`Ok` with one value per item, in order, or the
    /// error of the first failed item). For a sink that does not
    /// [`want it whole`](Self::wants_whole), the values are split back into chunks of
    /// `chunksize` and delivered one by one (an error goes to chunk 0). Use either this or
    /// [`deliver`](Self::deliver) for a batch, not both.
    pub fn deliver_whole(&self, outcome: Result<Vec<R>>, chunksize: NonZeroUsize) {
        let Some(outcome) = self.target.deliver_whole(outcome) else {
            return;
        };
        match outcome {
            Err(e) => self.deliver(0, Err(e)),
            Ok(values) => {
                let mut values = values.into_iter();
                let mut index = 0;
                loop {
                    let chunk: Vec<R> = values.by_ref().take(chunksize.get()).collect();
                    if chunk.is_empty() {
                        break;
                    }
                    self.deliver(index, Ok(chunk));
                    index += 1;
                }
            }
        }
    }

    /// A sink that assembles all chunks, in order, into one `AsyncResult<Vec<R>>`.
    /// The first error (in chunk order) wins, as in Python, where `map` raises the
    /// exception of the first failed task.
    pub fn collect(n_chunks: usize) -> (ChunkSink<R>, AsyncResult<Vec<R>>) {
        let (completer, mut result) = AsyncResult::pending();
        let cancel = Arc::new(CancelToken::default());
        result.cancel = Some(cancel.clone());
        if n_chunks == 0 {
            completer.complete(Ok(Vec::new()));
            return (
                ChunkSink {
                    target: Arc::new(Discard),
                    cancel,
                },
                result,
            );
        }
        let target = Collect {
            parts: (0..n_chunks).map(|_| Mutex::new(None)).collect(),
            remaining: AtomicUsize::new(n_chunks),
            completer: Mutex::new(Some(completer)),
        };
        (
            ChunkSink {
                target: Arc::new(target),
                cancel,
            },
            result,
        )
    }

    /// A sink for a single task: chunk 0 holds exactly one value.
    pub fn single() -> (ChunkSink<R>, AsyncResult<R>) {
        let (completer, mut result) = AsyncResult::pending();
        let cancel = Arc::new(CancelToken::default());
        result.cancel = Some(cancel.clone());
        (
            ChunkSink {
                target: Arc::new(Single {
                    completer: Mutex::new(Some(completer)),
                }),
                cancel,
            },
            result,
        )
    }

    /// A sink feeding an [`IMap`] iterator, ordered or in completion order.
    pub fn imap(n_chunks: usize, ordered: bool) -> (ChunkSink<R>, IMap<R>) {
        let (tx, rx) = mpsc::channel();
        let cancel = Arc::new(CancelToken::default());
        let waker = Arc::new(Mutex::new(None));
        (
            ChunkSink {
                target: Arc::new(Channel {
                    tx,
                    waker: waker.clone(),
                }),
                cancel: cancel.clone(),
            },
            IMap {
                cancel,
                waker,
                rx,
                ordered,
                n_chunks,
                received: 0,
                next_chunk: 0,
                waiting: BTreeMap::new(),
                current: VecDeque::new(),
            },
        )
    }
}

struct Discard;
impl<R> ChunkTarget<R> for Discard {
    fn deliver(&self, _: usize, _: Result<Vec<R>>) {}
    fn deliver_whole(&self, _: Result<Vec<R>>) -> Option<Result<Vec<R>>> {
        None
    }
    fn wants_whole(&self) -> bool {
        true
    }
}

type Part<R> = Mutex<Option<Result<Vec<R>>>>;

struct Collect<R> {
    parts: Box<[Part<R>]>,
    remaining: AtomicUsize,
    completer: Mutex<Option<Completer<Vec<R>>>>,
}

impl<R: Send> ChunkTarget<R> for Collect<R> {
    fn deliver(&self, index: usize, outcome: Result<Vec<R>>) {
        let Some(part) = self.parts.get(index) else {
            return;
        };
        {
            let mut part = lock(part);
            if part.is_some() {
                return; // delivered twice: keep the first
            }
            *part = Some(outcome);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let Some(completer) = lock(&self.completer).take() else {
                return;
            };
            let mut values = Vec::new();
            let mut failure = None;
            for part in self.parts.iter() {
                match lock(part).take() {
                    Some(Ok(chunk)) if failure.is_none() => values.extend(chunk),
                    Some(Err(e)) if failure.is_none() => failure = Some(e),
                    _ => {}
                }
            }
            completer.complete(match failure {
                Some(e) => Err(e),
                None => Ok(values),
            });
        }
    }

    fn deliver_whole(&self, outcome: Result<Vec<R>>) -> Option<Result<Vec<R>>> {
        if let Some(completer) = lock(&self.completer).take() {
            completer.complete(outcome);
        }
        None
    }

    fn wants_whole(&self) -> bool {
        true
    }
}

struct Single<R> {
    completer: Mutex<Option<Completer<R>>>,
}

impl<R: Send> ChunkTarget<R> for Single<R> {
    fn deliver(&self, _index: usize, outcome: Result<Vec<R>>) {
        if let Some(completer) = lock(&self.completer).take() {
            completer.complete(outcome.and_then(|mut v| {
                if v.len() == 1 {
                    Ok(v.remove(0))
                } else {
                    Err(Error::invalid(
                        "chunk",
                        format!("a single task returned {} values", v.len()),
                    ))
                }
            }));
        }
    }

    fn deliver_whole(&self, outcome: Result<Vec<R>>) -> Option<Result<Vec<R>>> {
        self.deliver(0, outcome);
        None
    }

    fn wants_whole(&self) -> bool {
        true
    }
}

struct Channel<R> {
    tx: mpsc::Sender<(usize, Result<Vec<R>>)>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl<R: Send> ChunkTarget<R> for Channel<R> {
    fn deliver(&self, index: usize, outcome: Result<Vec<R>>) {
        // The receiver may be gone (the iterator was dropped); then nobody wants the value.
        let _ = self.tx.send((index, outcome));
        wake(&self.waker);
    }
}

impl<R> Drop for Channel<R> {
    fn drop(&mut self) {
        // The last sender going away ends (or fails) the iterator: an awaiting task must look.
        wake(&self.waker);
    }
}

fn wake(waker: &Mutex<Option<Waker>>) {
    let waker = lock(waker).take();
    if let Some(w) = waker {
        w.wake();
    }
}

/// The lazy iterator of Python's `imap` (ordered) and `imap_unordered`.
///
/// Each item is the result of one task. A chunk that failed yields a single `Err` in place
/// of its items. If the pool goes away before delivering everything, the iterator yields
/// [`Error::PoolClosed`] once and ends — it never blocks forever. Dropping it before its end
/// cancels the rest: chunks not started never run, and a process pool kills (and replaces)
/// the workers running its chunks.
pub struct IMap<R> {
    cancel: Arc<CancelToken>,
    /// The task awaiting [`next_async`](IMap::next_async).
    waker: Arc<Mutex<Option<Waker>>>,
    rx: mpsc::Receiver<(usize, Result<Vec<R>>)>,
    ordered: bool,
    n_chunks: usize,
    received: usize,
    next_chunk: usize,
    waiting: BTreeMap<usize, Result<Vec<R>>>,
    current: VecDeque<R>,
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
            let outcome = self.waiting.remove(&self.next_chunk)?;
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
                Err(true) => {
                    // Every sender is gone but chunks are missing: report once, then end.
                    self.received = self.n_chunks;
                    self.next_chunk = self.n_chunks;
                    self.waiting.clear();
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

/// Runs `future` to completion on this thread, parking it while the future waits: the
/// smallest executor, for code that awaits a pool's results without an async runtime (and
/// for this crate's examples). Any runtime works as well.
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

impl<R> Drop for IMap<R> {
    fn drop(&mut self) {
        if !self.finished() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_assembles_chunks_in_order() {
        let (sink, result) = ChunkSink::collect(3);
        sink.deliver(2, Ok(vec![5, 6]));
        sink.deliver(0, Ok(vec![1, 2]));
        assert!(!result.ready());
        sink.deliver(1, Ok(vec![3, 4]));
        assert_eq!(result.get().unwrap(), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn dropped_sink_fails_instead_of_hanging() {
        let (sink, result) = ChunkSink::<u8>::collect(2);
        sink.deliver(0, Ok(vec![1]));
        drop(sink);
        assert!(matches!(result.get(), Err(Error::PoolClosed(_))));

        let (sink, mut imap) = ChunkSink::<u8>::imap(2, true);
        sink.deliver(0, Ok(vec![1]));
        drop(sink);
        assert_eq!(imap.next().unwrap().unwrap(), 1);
        assert!(matches!(imap.next(), Some(Err(Error::PoolClosed(_)))));
        assert!(imap.next().is_none());
    }

    #[test]
    fn whole_delivery_completes_map_and_splits_for_imap() {
        let (sink, result) = ChunkSink::collect(3);
        assert!(sink.wants_whole());
        sink.deliver_whole(Ok(vec![1, 2, 3, 4, 5]), NonZeroUsize::new(2).unwrap());
        assert_eq!(result.get().unwrap(), vec![1, 2, 3, 4, 5]);

        let (sink, imap) = ChunkSink::imap(3, true);
        assert!(!sink.wants_whole());
        sink.deliver_whole(Ok(vec![1, 2, 3, 4, 5]), NonZeroUsize::new(2).unwrap());
        drop(sink);
        assert_eq!(
            imap.map(Result::unwrap).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );

        let (sink, result) = ChunkSink::<u8>::single();
        sink.deliver_whole(Err(Error::Timeout(Duration::ZERO)), NonZeroUsize::MIN);
        assert!(matches!(result.get(), Err(Error::Timeout(_))));
    }

    #[test]
    fn get_timeout_then_get() {
        let (completer, mut result) = AsyncResult::<u32>::pending();
        assert!(matches!(
            result.get_timeout(Duration::from_millis(10)),
            Err(Error::Timeout(_))
        ));
        assert_eq!(result.successful(), None);
        completer.complete(Ok(7));
        assert_eq!(result.successful(), Some(true));
        assert_eq!(result.get_timeout(Duration::from_millis(10)).unwrap(), 7);
        assert!(matches!(
            result.get_timeout(Duration::ZERO),
            Err(Error::ResultTaken)
        ));
        assert_eq!(result.successful(), Some(true));
    }

    #[test]
    fn imap_ordered_reorders_and_unordered_does_not() {
        let (sink, imap) = ChunkSink::imap(3, true);
        sink.deliver(2, Ok(vec![3]));
        sink.deliver(1, Ok(vec![2]));
        sink.deliver(0, Ok(vec![1]));
        assert_eq!(imap.map(Result::unwrap).collect::<Vec<_>>(), vec![1, 2, 3]);

        let (sink, imap) = ChunkSink::imap(3, false);
        sink.deliver(2, Ok(vec![3]));
        sink.deliver(1, Ok(vec![2]));
        sink.deliver(0, Ok(vec![1]));
        assert_eq!(imap.map(Result::unwrap).collect::<Vec<_>>(), vec![3, 2, 1]);
    }

    /// Chunks delivered from several threads at once, in any order, each sink's last clone
    /// dropped on whichever thread finishes last, while the consumer already waits: the
    /// concurrency that every pool creates (run under Miri and ThreadSanitizer by `.ci/run`).
    #[test]
    fn concurrent_deliveries_from_many_threads() {
        const CHUNKS: usize = 12;
        const THREADS: usize = 3;
        let (sink, result) = ChunkSink::collect(CHUNKS);
        let (ordered_sink, ordered) = ChunkSink::imap(CHUNKS, true);
        let (unordered_sink, unordered) = ChunkSink::imap(CHUNKS, false);
        let (lossy_sink, lossy) = ChunkSink::<usize>::collect(CHUNKS);
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let sinks = (
                    sink.clone(),
                    ordered_sink.clone(),
                    unordered_sink.clone(),
                    lossy_sink.clone(),
                );
                std::thread::spawn(move || {
                    // Thread t delivers chunks t, t + THREADS, ... from the last one down.
                    for c in (t..CHUNKS).step_by(THREADS).rev() {
                        sinks.0.deliver(c, Ok(vec![2 * c, 2 * c + 1]));
                        sinks.1.deliver(c, Ok(vec![2 * c, 2 * c + 1]));
                        sinks.2.deliver(c, Ok(vec![2 * c, 2 * c + 1]));
                        sinks.0.deliver(c, Ok(vec![0])); // a second delivery is ignored
                        if c != 0 {
                            sinks.3.deliver(c, Ok(vec![c])); // chunk 0 is never delivered
                        }
                    }
                })
            })
            .collect();
        drop((sink, ordered_sink, unordered_sink, lossy_sink));
        let all: Vec<usize> = (0..2 * CHUNKS).collect();
        assert_eq!(result.get().unwrap(), all);
        assert_eq!(ordered.map(Result::unwrap).collect::<Vec<_>>(), all);
        let mut got: Vec<usize> = unordered.map(Result::unwrap).collect();
        got.sort_unstable();
        assert_eq!(got, all);
        assert!(matches!(lossy.get(), Err(Error::PoolClosed(_))));
        for w in workers {
            w.join().unwrap();
        }
    }

    #[test]
    fn imap_next_timeout_resumes() {
        let (sink, mut imap) = ChunkSink::imap(1, true);
        assert!(matches!(
            imap.next_timeout(Duration::from_millis(5)),
            Some(Err(Error::Timeout(_)))
        ));
        sink.deliver(0, Ok(vec![9]));
        assert_eq!(
            imap.next_timeout(Duration::from_secs(5)).unwrap().unwrap(),
            9
        );
        assert!(imap.next_timeout(Duration::from_secs(5)).is_none());
    }
}
