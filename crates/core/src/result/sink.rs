//! [`ChunkSink`]: where a backend delivers each chunk's outcome, and the targets it feeds (one
//! `AsyncResult` of the whole batch, one of a single value, an `IMap`, or nothing).

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::Waker;

use super::{lock, AsyncResult, Completer, IMap};
use crate::cancel::CancelToken;
use crate::error::{Error, Result};

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
                    tx: Some(tx),
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
                lost: false,
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
    /// `None` only while dropping: the sender goes before the waiting task is woken.
    tx: Option<mpsc::Sender<(usize, Result<Vec<R>>)>>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl<R: Send> ChunkTarget<R> for Channel<R> {
    fn deliver(&self, index: usize, outcome: Result<Vec<R>>) {
        // The receiver may be gone (the iterator was dropped); then nobody wants the value.
        if let Some(tx) = &self.tx {
            let _ = tx.send((index, outcome));
        }
        wake(&self.waker);
    }
}

impl<R> Drop for Channel<R> {
    fn drop(&mut self) {
        // The last sender going away ends (or fails) the iterator: an awaiting task must look,
        // once it is gone (woken before, the task could look while it was still there, and
        // wait again for a wake-up that would never come).
        drop(self.tx.take());
        wake(&self.waker);
    }
}

fn wake(waker: &Mutex<Option<Waker>>) {
    let waker = lock(waker).take();
    if let Some(w) = waker {
        w.wake();
    }
}
