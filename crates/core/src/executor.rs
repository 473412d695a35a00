//! The [`Executor`] trait: Python's `Pool` API, one definition for every backend.
//!
//! A backend implements four things: how many workers it has, how to run a [`Batch`] of
//! chunks and hand each chunk's outcome to a [`ChunkSink`], and `close`/`join`/`terminate`.
//! Everything a user calls — `map`, `starmap`, `apply_async`, `imap`, ... — is a provided
//! method built on that, so argument checking, chunking, result ordering and the
//! compile-time task check are the same on every backend.

use std::num::NonZeroUsize;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::result::{AsyncResult, ChunkSink, IMap};
use crate::task::{star_task, Payload, StarTask, Task};

/// How many chunks per worker [`default_chunksize`] aims for.
///
/// Python aims for 4: a chunk costs it about 15–25 µs of pickling and pipe traffic. A chunk
/// costs our process pools about 2 µs, so finer chunks are cheap, and they balance the load:
/// the last chunk a worker takes is at most 1/16 of its share, not 1/4. (The tutorial's 13
/// chunked-sum tasks on 2 workers: Python's formula makes 7 chunks of 2 tasks, one worker sums
/// 8 tasks while the other sums 5; ours sends them one by one.)
pub const CHUNKS_PER_WORKER: usize = 16;

/// The default `chunksize` of `map` and `starmap`: about [`CHUNKS_PER_WORKER`] chunks per
/// worker (Python's formula with 16 for its 4).
pub fn default_chunksize(n_items: usize, workers: usize) -> NonZeroUsize {
    let per = n_items.div_ceil(workers.max(1).saturating_mul(CHUNKS_PER_WORKER));
    NonZeroUsize::new(per).unwrap_or(NonZeroUsize::MIN)
}

/// Checks a user-supplied `chunksize`.
pub fn check_chunksize(chunksize: usize) -> Result<NonZeroUsize> {
    NonZeroUsize::new(chunksize)
        .ok_or_else(|| Error::invalid("chunksize", "must be at least 1, got 0"))
}

/// Checks a user-supplied worker count (`processes` in Python).
pub fn check_workers(workers: usize) -> Result<NonZeroUsize> {
    NonZeroUsize::new(workers)
        .ok_or_else(|| Error::invalid("processes", "a pool needs at least 1 worker, got 0"))
}

/// A pool of workers with Python's `multiprocessing.Pool` API.
///
/// Tasks are `fn` items or non-capturing closures, taken as function pointers ([`Task`]);
/// arguments and results are serde types ([`Payload`]). The bounds are the same for every
/// backend, so one workload compiles for threads, fork and spawn. A closure that captures
/// data is a type error, reported by `cargo check` (see [`Task`]).
///
/// Only [`processes`](Self::processes), [`submit`](Self::submit), [`close`](Self::close),
/// [`join`](Self::join) and [`terminate`](Self::terminate) are implemented by a backend;
/// everything else is provided.
///
/// ```
/// # #[derive(Default)] struct Inline(std::sync::atomic::AtomicBool);
/// # use multiproc_core::{Batch, ChunkSink, Executor, Payload, Result, Task, Error};
/// # impl Executor for Inline {
/// #   fn processes(&self) -> usize { 1 }
/// #   fn submit<A: Payload, R: Payload>(&self, f: Task<A, R>, b: Batch<A>, s: ChunkSink<R>) -> Result<()> {
/// #     for (i, c) in b.into_chunks() { s.deliver(i, Ok(c.into_iter().map(f).collect())) } Ok(())
/// #   }
/// #   fn close(&self) {} fn join(&self) -> Result<()> { Ok(()) } fn terminate(&self) -> Result<()> { Ok(()) }
/// #   fn join_timeout(&self, _: std::time::Duration) -> Result<bool> { Ok(true) }
/// # }
/// # let pool = Inline::default();
/// fn square(x: u64) -> u64 { x * x }
/// fn add(a: u64, b: u64) -> u64 { a + b }
///
/// assert_eq!(pool.map(square, 1..=4)?, vec![1, 4, 9, 16]);
/// assert_eq!(pool.starmap(add, [(1, 2), (3, 4)])?, vec![3, 7]);
/// let pending = pool.apply_async(square, 12)?;
/// assert_eq!(pending.get()?, 144);
/// # Ok::<(), multiproc_core::Error>(())
/// ```
pub trait Executor: Send + Sync {
    /// The number of workers (Python's `processes`).
    fn processes(&self) -> usize;

    /// Backend hook: run `f` over every chunk of `batch`, in parallel, and deliver each
    /// chunk's outcome to `sink` exactly once (`Ok` with one result per item, in order, or the
    /// error that ended the chunk). Returns once the work is queued, not when it is done.
    ///
    /// Returns [`Error::PoolClosed`] if the pool no longer takes work. Users call `map`,
    /// `apply_async` and the rest instead; those check their arguments and `f` first.
    fn submit<A, R>(&self, f: Task<A, R>, batch: Batch<A>, sink: ChunkSink<R>) -> Result<()>
    where
        A: Payload,
        R: Payload;

    /// Stops accepting work; work already submitted still runs (Python's `close`).
    fn close(&self);

    /// Waits until all submitted work has finished. The pool must have been closed or
    /// terminated first, as in Python; otherwise this is [`Error::JoinBeforeClose`] and waits
    /// for nothing.
    fn join(&self) -> Result<()>;

    /// [`join`](Self::join), waiting at most `timeout` for the submitted work: `Ok(true)` once
    /// it has finished (the pool is then joined, as by `join`), `Ok(false)` if work was still
    /// running when `timeout` passed — nothing changed: call it again, or
    /// [`terminate`](Self::terminate). Before `close`, [`Error::JoinBeforeClose`] at once.
    fn join_timeout(&self, timeout: std::time::Duration) -> Result<bool>;

    /// Stops accepting work and abandons work not yet started, whose results fail with
    /// [`Error::PoolClosed`]. Process backends kill their workers; the threads backend lets
    /// running tasks finish (threads cannot be killed).
    fn terminate(&self) -> Result<()>;

    /// Whether `map`, `starmap` and `imap` draw a progress bar (a pool built with
    /// `.progress(true)`, with the `progress` feature). Default: `false`.
    fn shows_progress(&self) -> bool {
        false
    }

    /// Applies `f` to every item, in parallel, and returns the results in order, with
    /// The default chunk size ([`default_chunksize`]: about sixteen chunks per worker).
    /// The first failure (in item order) is returned as the error.
    fn map<A, R, I>(&self, f: Task<A, R>, items: I) -> Result<Vec<R>>
    where
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items)?.get()
    }

    /// Applies `f` to every item, in parallel, and returns every item's own outcome, in
    /// order: where [`map`](Self::map) fails as a whole when one item fails (Python's
    /// contract), this keeps every finished result, and each failed item carries its own
    /// error (a panic, or the death of its worker: [`Error::WorkerDied`],
    /// [`Error::TaskTimedOut`], ...). Items go to the workers one at a time, so one death
    /// fails exactly one item. The outer `Err` is for a submission refused as a whole (a
    /// closed pool).
    ///
    /// ```
    /// # #[derive(Default)] struct Inline;
    /// # use multiproc_core::{Batch, ChunkSink, Executor, Payload, Result, Task, Error};
    /// # impl Executor for Inline {
    /// #   fn processes(&self) -> usize { 1 }
    /// #   fn submit<A: Payload, R: Payload>(&self, f: Task<A, R>, b: Batch<A>, s: ChunkSink<R>) -> Result<()> {
    /// #     for (i, c) in b.into_chunks() { s.deliver(i, std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.into_iter().map(f).collect())).map_err(Error::from_panic)) } Ok(())
    /// #   }
    /// #   fn close(&self) {} fn join(&self) -> Result<()> { Ok(()) } fn terminate(&self) -> Result<()> { Ok(()) }
    /// #   fn join_timeout(&self, _: std::time::Duration) -> Result<bool> { Ok(true) }
    /// # }
    /// # let pool = Inline;
    /// fn inverse(x: u32) -> u32 { 100 / x } // panics on 0
    ///
    /// let outcomes = pool.map_results(inverse, [4, 0, 10])?;
    /// assert_eq!(outcomes[0].as_ref().ok(), Some(&25));
    /// assert!(matches!(outcomes[1], Err(Error::TaskPanicked { .. })));
    /// assert_eq!(outcomes[2].as_ref().ok(), Some(&10));
    /// assert!(pool.map(inverse, [4, 0, 10]).is_err()); // map: all or error
    /// # Ok::<(), multiproc_core::Error>(())
    /// ```
    fn map_results<A, R, I>(&self, f: Task<A, R>, items: I) -> Result<Vec<Result<R>>>
    where
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        let items: Vec<A> = items.into_iter().collect();
        let n = items.len();
        let mut outcomes: Vec<Result<R>> = self.imap(f, items)?.collect();
        // A pool that went away early ends the iterator with one `PoolClosed`: every item
        // still missing gets its own.
        outcomes.truncate(n);
        outcomes.resize_with(n, || {
            Err(Error::PoolClosed(
                "the pool went away before delivering every result",
            ))
        });
        Ok(outcomes)
    }

    /// [`map_results`](Self::map_results) with each item a tuple unpacked into `f`'s
    /// parameters, as [`starmap`](Self::starmap) does.
    fn starmap_results<F, T, R, I>(&self, f: F, items: I) -> Result<Vec<Result<R>>>
    where
        F: StarTask<T, Output = R>,
        T: Payload,
        R: Payload,
        I: IntoIterator<Item = T>,
    {
        self.map_results(star_task(f), items)
    }

    /// [`map`](Self::map) with an explicit `chunksize` (items sent to a worker at a time).
    fn map_chunked<A, R, I>(&self, f: Task<A, R>, items: I, chunksize: usize) -> Result<Vec<R>>
    where
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        self.map_async_chunked(f, items, chunksize)?.get()
    }

    /// Starts a [`map`](Self::map) and returns at once.
    fn map_async<A, R, I>(&self, f: Task<A, R>, items: I) -> Result<AsyncResult<Vec<R>>>
    where
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        let items: Vec<A> = items.into_iter().collect();
        let chunksize = default_chunksize(items.len(), self.processes());
        self.map_async_chunked(f, items, chunksize.get())
    }

    /// Starts a [`map_chunked`](Self::map_chunked) and returns at once.
    fn map_async_chunked<A, R, I>(
        &self,
        f: Task<A, R>,
        items: I,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        let batch = Batch::new(items.into_iter().collect(), check_chunksize(chunksize)?);
        let (sink, result) = ChunkSink::collect(batch.n_chunks());
        #[cfg(feature = "progress")]
        let sink = crate::progress::attach(self.shows_progress(), sink, &batch);
        self.submit(f, batch, sink)?;
        Ok(result)
    }

    /// Like [`map`](Self::map), but each item is a tuple unpacked into `f`'s parameters
    /// (1 to 6 of them), as Python's `starmap` does.
    fn starmap<F, T, R, I>(&self, f: F, items: I) -> Result<Vec<R>>
    where
        F: StarTask<T, Output = R>,
        T: Payload,
        R: Payload,
        I: IntoIterator<Item = T>,
    {
        self.starmap_async(f, items)?.get()
    }

    /// [`starmap`](Self::starmap) with an explicit `chunksize`.
    fn starmap_chunked<F, T, R, I>(&self, f: F, items: I, chunksize: usize) -> Result<Vec<R>>
    where
        F: StarTask<T, Output = R>,
        T: Payload,
        R: Payload,
        I: IntoIterator<Item = T>,
    {
        self.starmap_async_chunked(f, items, chunksize)?.get()
    }

    /// Starts a [`starmap`](Self::starmap) and returns at once.
    fn starmap_async<F, T, R, I>(&self, f: F, items: I) -> Result<AsyncResult<Vec<R>>>
    where
        F: StarTask<T, Output = R>,
        T: Payload,
        R: Payload,
        I: IntoIterator<Item = T>,
    {
        let items: Vec<T> = items.into_iter().collect();
        let chunksize = default_chunksize(items.len(), self.processes());
        self.starmap_async_chunked(f, items, chunksize.get())
    }

    /// Starts a [`starmap_chunked`](Self::starmap_chunked) and returns at once.
    fn starmap_async_chunked<F, T, R, I>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        F: StarTask<T, Output = R>,
        T: Payload,
        R: Payload,
        I: IntoIterator<Item = T>,
    {
        self.map_async_chunked(star_task(f), items, chunksize)
    }

    /// Runs `f(arg)` on a worker and waits for the result (Python's `apply`).
    /// Several arguments go as a tuple: see [`apply_star`](Self::apply_star).
    fn apply<A, R>(&self, f: Task<A, R>, arg: A) -> Result<R>
    where
        A: Payload,
        R: Payload,
    {
        self.apply_async(f, arg)?.get()
    }

    /// Starts `f(arg)` on a worker and returns at once (Python's `apply_async`).
    fn apply_async<A, R>(&self, f: Task<A, R>, arg: A) -> Result<AsyncResult<R>>
    where
        A: Payload,
        R: Payload,
    {
        let (sink, result) = ChunkSink::single();
        self.submit(f, Batch::new(vec![arg], NonZeroUsize::MIN), sink)?;
        Ok(result)
    }

    /// Runs `f(a, b, ...)` with the tuple `args` unpacked, and waits: Python's
    /// `pool.apply(f, (a, b))`.
    fn apply_star<F, T, R>(&self, f: F, args: T) -> Result<R>
    where
        F: StarTask<T, Output = R>,
        T: Payload,
        R: Payload,
    {
        self.apply_star_async(f, args)?.get()
    }

    /// Starts `f(a, b, ...)` with the tuple `args` unpacked: Python's
    /// `pool.apply_async(f, (a, b))`.
    fn apply_star_async<F, T, R>(&self, f: F, args: T) -> Result<AsyncResult<R>>
    where
        F: StarTask<T, Output = R>,
        T: Payload,
        R: Payload,
    {
        self.apply_async(star_task(f), args)
    }

    /// A lazy iterator over `f(item)` in item order (Python's `imap`, `chunksize=1`).
    /// All tasks are queued at once; results are yielded as soon as they are next in order.
    fn imap<A, R, I>(&self, f: Task<A, R>, items: I) -> Result<IMap<R>>
    where
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        self.imap_chunked(f, items, 1)
    }

    /// [`imap`](Self::imap) with an explicit `chunksize`.
    fn imap_chunked<A, R, I>(&self, f: Task<A, R>, items: I, chunksize: usize) -> Result<IMap<R>>
    where
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        imap_with(self, f, items, chunksize, true)
    }

    /// Like [`imap`](Self::imap), but yields results in the order they finish.
    fn imap_unordered<A, R, I>(&self, f: Task<A, R>, items: I) -> Result<IMap<R>>
    where
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        self.imap_unordered_chunked(f, items, 1)
    }

    /// [`imap_unordered`](Self::imap_unordered) with an explicit `chunksize`.
    fn imap_unordered_chunked<A, R, I>(
        &self,
        f: Task<A, R>,
        items: I,
        chunksize: usize,
    ) -> Result<IMap<R>>
    where
        A: Payload,
        R: Payload,
        I: IntoIterator<Item = A>,
    {
        imap_with(self, f, items, chunksize, false)
    }
}

fn imap_with<E, A, R, I>(
    executor: &E,
    f: Task<A, R>,
    items: I,
    chunksize: usize,
    ordered: bool,
) -> Result<IMap<R>>
where
    E: Executor + ?Sized,
    A: Payload,
    R: Payload,
    I: IntoIterator<Item = A>,
{
    let batch = Batch::new(items.into_iter().collect(), check_chunksize(chunksize)?);
    let (sink, iter) = ChunkSink::imap(batch.n_chunks(), ordered);
    #[cfg(feature = "progress")]
    let sink = crate::progress::attach(executor.shows_progress(), sink, &batch);
    executor.submit(f, batch, sink)?;
    Ok(iter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_chunksize_is_pythons_formula_with_16_chunks_per_worker() {
        // Python: chunksize, extra = divmod(len, 4 * processes); if extra: chunksize += 1
        assert_eq!(default_chunksize(100, 2).get(), 4);
        assert_eq!(default_chunksize(13, 2).get(), 1);
        assert_eq!(default_chunksize(100_000, 2).get(), 3125);
        assert_eq!(default_chunksize(0, 2).get(), 1);
        assert_eq!(default_chunksize(1000, 0).get(), 63);
    }

    #[test]
    fn bad_arguments_are_named() {
        let e = check_chunksize(0).unwrap_err();
        assert!(matches!(
            e,
            Error::InvalidArgument {
                name: "chunksize",
                ..
            }
        ));
        let e = check_workers(0).unwrap_err();
        assert!(matches!(
            e,
            Error::InvalidArgument {
                name: "processes",
                ..
            }
        ));
    }
}
