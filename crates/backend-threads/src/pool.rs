//! [`ThreadPool`]: the threads backend's [`Executor`], on a dedicated rayon pool.
//!
//! A submission becomes one rayon job that splits the batch with rayon's own indexed
//! `chunks`, so work-stealing balances the load and the per-item cost is rayon's. Each
//! chunk runs under `catch_unwind`: a panic fails that chunk's result only.

use std::mem::ManuallyDrop;
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use multiproc_core::{
    check_chunksize, check_workers, default_chunksize, AsyncResult, Batch, ChunkSink, Error,
    Executor, Home, Payload, Result, Task,
};
use rayon::prelude::*;

#[derive(Debug, Default)]
struct State {
    closed: bool,
    outstanding: usize,
}

struct Shared {
    state: Mutex<State>,
    idle: Condvar,
    terminated: AtomicBool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts a submission as outstanding until dropped, even if its job unwinds.
struct Outstanding(Arc<Shared>);

impl Drop for Outstanding {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.outstanding -= 1;
        if s.outstanding == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// A pool of worker threads with Python's `Pool` API.
///
/// It implements [`Executor`] (tasks are `fn` items or non-capturing closures, taken as
/// function pointers, as on every backend), and also takes ordinary closures through [`map_fn`](Self::map_fn) and
/// [`apply_async_fn`](Self::apply_async_fn), because threads share memory and need nothing
/// to cross a process boundary.
///
/// Dropping the pool closes it and waits for submitted work (Python's `close` + `join`).
///
/// A pool belongs to the process that created it: a forked child's copy (a `static`, a value
/// captured by a forked closure) has none of its threads, so there every method fails at once
/// with [`Error::ForeignProcess`] (`close` does nothing) and dropping it does nothing.
///
/// ```
/// use multiproc_threads::{Executor, ThreadPool};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = ThreadPool::new(2)?;
/// assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
///
/// // Closures that borrow local data work too, on this backend only.
/// let data = vec![1.5_f64; 1000];
/// let sums = pool.map_fn(|offset: usize| data[offset..offset + 100].iter().sum::<f64>(),
///                        (0..1000).step_by(100), 1)?;
/// assert_eq!(sums.iter().sum::<f64>(), 1500.0);
/// # Ok::<(), multiproc_threads::Error>(())
/// ```
///
/// The [`Executor`] methods take the same tasks as the process pools, so a capturing closure
/// given to `map` is a type error here too ("closures can only be coerced to `fn` types if
/// they do not capture any variables"); on this backend, `map_fn` is what takes it:
///
/// ```compile_fail,E0308
/// use multiproc_threads::{Executor, ThreadPool};
///
/// let pool = ThreadPool::new(2)?;
/// let data = vec![1.5_f64; 1000];
/// let sums = pool.map(move |i: usize| data[i], 0..10)?; // use `pool.map_fn(...)` instead
/// # Ok::<(), multiproc_threads::Error>(())
/// ```
pub struct ThreadPool {
    /// The process that created the pool; its threads exist only there.
    home: Home,
    /// Neither field is dropped in another process (see `Drop`).
    rayon: ManuallyDrop<rayon::ThreadPool>,
    shared: ManuallyDrop<Arc<Shared>>,
    workers: usize,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ThreadPool");
        d.field("home", &self.home).field("workers", &self.workers);
        if self.check_home().is_ok() {
            let s = self.shared.state();
            d.field("closed", &s.closed)
                .field("outstanding", &s.outstanding);
        }
        d.finish()
    }
}

impl ThreadPool {
    /// A pool of `workers` threads (Python's `Pool(processes=workers)`).
    /// Zero is [`Error::InvalidArgument`] on `processes`; threads that cannot be started
    /// are [`Error::NoWorkers`].
    pub fn new(workers: usize) -> Result<Self> {
        let workers = check_workers(workers)?.get();
        let rayon = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("multiproc-worker-{i}"))
            .build()
            .map_err(|e| Error::NoWorkers {
                cause: std::sync::Arc::new(Error::Io(std::io::Error::other(e))),
            })?;
        Ok(ThreadPool {
            home: Home::here("pool"),
            rayon: ManuallyDrop::new(rayon),
            shared: ManuallyDrop::new(Arc::new(Shared {
                state: Mutex::new(State::default()),
                idle: Condvar::new(),
                terminated: AtomicBool::new(false),
            })),
            workers,
        })
    }

    /// `Ok` in the process that created the pool; [`Error::ForeignProcess`] elsewhere.
    fn check_home(&self) -> Result<()> {
        self.home.check()
    }

    /// A pool with one worker per available core (Python's `Pool()`).
    pub fn with_available_parallelism() -> Result<Self> {
        Self::new(std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
    }

    /// Registers a submission, or refuses it if the pool is closed.
    fn admit(&self) -> Result<Outstanding> {
        self.check_home()?;
        let mut s = self.shared.state();
        if s.closed {
            return Err(Error::PoolClosed("the pool no longer accepts work"));
        }
        s.outstanding += 1;
        Ok(Outstanding(Arc::clone(&self.shared)))
    }

    /// Like [`Executor::map_chunked`], for any closure — including ones that borrow local
    /// data — because it blocks until every chunk is done. `chunksize` 0 is an error.
    pub fn map_fn<A, R, F, I>(&self, f: F, items: I, chunksize: usize) -> Result<Vec<R>>
    where
        A: Send,
        R: Send + 'static,
        F: Fn(A) -> R + Sync,
        I: IntoIterator<Item = A>,
    {
        let batch = Batch::new(items.into_iter().collect(), check_chunksize(chunksize)?);
        let _outstanding = self.admit()?;
        let (sink, result) = ChunkSink::collect(batch.n_chunks());
        let terminated = &self.shared.terminated;
        self.rayon
            .install(|| run_chunks(&f, batch, terminated, &sink));
        drop(sink);
        result.get()
    }

    /// Like [`map_fn`](Self::map_fn) with Python's default chunk size.
    pub fn map_fn_default<A, R, F, I>(&self, f: F, items: I) -> Result<Vec<R>>
    where
        A: Send,
        R: Send + 'static,
        F: Fn(A) -> R + Sync,
        I: IntoIterator<Item = A>,
    {
        let items: Vec<A> = items.into_iter().collect();
        let chunksize = default_chunksize(items.len(), self.workers).get();
        self.map_fn(f, items, chunksize)
    }

    /// Like [`Executor::apply_async`], for any `'static` closure, capturing or not.
    pub fn apply_async_fn<R, F>(&self, f: F) -> Result<AsyncResult<R>>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let outstanding = self.admit()?;
        let (completer, result) = AsyncResult::pending();
        let shared = Arc::clone(&self.shared);
        self.rayon.spawn(move || {
            let _outstanding = outstanding;
            completer.complete(catch(|| guarded(f, &shared.terminated)));
        });
        Ok(result)
    }
}

/// Runs `batch` on the current rayon pool and hands the results to `sink`. Tasks not yet
/// started when `terminated` is set are skipped and their results fail.
///
/// A sink that wants the whole result (`map`, `apply`) gets rayon's own indexed collect,
/// split into pieces of exactly `chunksize` items, so the per-item cost is rayon's: there is
/// no per-item wrapper, a panic is caught once around the collect. (rayon's `join` re-raises
/// the panic of its left half first, so the reported failure is the first in item order.)
/// A sink that streams (`imap`) gets each chunk as soon as it is done.
fn run_chunks<A, R, F>(f: &F, batch: Batch<A>, terminated: &AtomicBool, sink: &ChunkSink<R>)
where
    A: Send,
    R: Send + 'static,
    F: Fn(A) -> R + Sync,
{
    let (items, chunksize) = batch.into_parts();
    let task = |item| guarded(|| f(item), terminated);
    if sink.wants_whole() {
        let outcome = catch(|| {
            items
                .into_par_iter()
                .with_min_len(chunksize.get())
                .with_max_len(chunksize.get())
                .map(task)
                .collect()
        });
        sink.deliver_whole(outcome, chunksize);
        return;
    }
    items
        .into_par_iter()
        .chunks(chunksize.get())
        .enumerate()
        .for_each(|(index, chunk)| {
            sink.deliver(index, catch(|| chunk.into_iter().map(task).collect()));
        });
}

/// The unwind payload that abandons a task after `terminate`: raised with `resume_unwind`,
/// so no panic message is printed.
struct Terminated;

/// Runs one task, unless the pool was terminated.
fn guarded<R>(task: impl FnOnce() -> R, terminated: &AtomicBool) -> R {
    if terminated.load(Ordering::Relaxed) {
        panic::resume_unwind(Box::new(Terminated));
    }
    task()
}

/// Runs `work`, turning a task's panic into [`Error::TaskPanicked`] and a termination into
/// [`Error::PoolClosed`].
fn catch<T>(work: impl FnOnce() -> T) -> Result<T> {
    panic::catch_unwind(AssertUnwindSafe(work)).map_err(|payload| {
        if payload.is::<Terminated>() {
            Error::PoolClosed("the pool was terminated before the task ran")
        } else {
            Error::from_panic(payload)
        }
    })
}

impl Executor for ThreadPool {
    fn processes(&self) -> usize {
        self.workers
    }

    fn submit<A, R>(&self, f: Task<A, R>, batch: Batch<A>, sink: ChunkSink<R>) -> Result<()>
    where
        A: Payload,
        R: Payload,
    {
        let outstanding = self.admit()?;
        let shared = Arc::clone(&self.shared);
        self.rayon.spawn(move || {
            let _outstanding = outstanding;
            run_chunks(&f, batch, &shared.terminated, &sink);
        });
        Ok(())
    }

    fn close(&self) {
        if self.check_home().is_ok() {
            self.shared.state().closed = true;
        }
    }

    fn join(&self) -> Result<()> {
        self.check_home()?;
        let s = self.shared.state();
        if !s.closed {
            return Err(Error::JoinBeforeClose);
        }
        drop(
            self.shared
                .idle
                .wait_while(s, |s| s.outstanding > 0)
                .unwrap_or_else(PoisonError::into_inner),
        );
        Ok(())
    }

    fn terminate(&self) -> Result<()> {
        self.check_home()?;
        self.shared.terminated.store(true, Ordering::Release);
        self.close();
        Ok(())
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        if self.check_home().is_err() {
            // A forked copy: the rayon threads exist only in the creator, and a lock of the
            // copy may have been held by one of them at the fork. Touch nothing.
            return;
        }
        self.close();
        // Cannot fail once closed.
        let _ = self.join();
        // SAFETY: both fields are dropped exactly once, here, and never used again.
        unsafe {
            ManuallyDrop::drop(&mut self.rayon);
            ManuallyDrop::drop(&mut self.shared);
        }
    }
}
