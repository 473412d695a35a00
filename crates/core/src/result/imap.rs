//! [`IMap`]: the lazy iterator of `imap` and `imap_unordered`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The lazy iterator of Python's `imap` (ordered) and `imap_unordered`.
///
/// Each item is the result of one task. A chunk that failed yields a single `Err` in place
/// of its items. If the pool goes away before delivering everything, the iterator yields
/// [`Error::PoolClosed`] once and ends — it never blocks forever.
pub struct IMap<R> {
    pub(super) rx: mpsc::Receiver<(usize, Result<Vec<R>>)>,
    pub(super) ordered: bool,
    pub(super) n_chunks: usize,
    pub(super) received: usize,
    pub(super) next_chunk: usize,
    pub(super) waiting: BTreeMap<usize, Result<Vec<R>>>,
    pub(super) current: VecDeque<R>,
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

impl<R> Iterator for IMap<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        match self.step(None) {
            Step::Item(r) => Some(r),
            Step::Finished | Step::TimedOut => None,
        }
    }
}
