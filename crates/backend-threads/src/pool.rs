//! [`ThreadPool`]: the threads backend's [`Executor`], on a dedicated rayon pool.
//!
//! A submission becomes one rayon job that splits the batch with rayon's own indexed
//! `chunks`, so work-stealing balances the load and the per-item cost is rayon's. Each
//! chunk runs under `catch_unwind`: a panic fails that chunk's result only.

use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use multiproc_core::{
    check_chunksize, check_workers, default_chunksize, AsyncResult, Batch, CancelToken, ChunkSink,
    Error, Executor, Home, Payload, PoolOptions, Result, Task,
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

type ThreadInit = Arc<dyn Fn() + Send + Sync>;

/// Collects a [`ThreadPool`]'s options; [`build`](Self::build) starts it. Made by
/// [`ThreadPool::builder`].
#[derive(Default)]
#[must_use = "a ThreadPoolBuilder does nothing until `build` is called"]
pub struct ThreadPoolBuilder {
    options: PoolOptions,
    init: Option<ThreadInit>,
    refused: Option<Error>,
}

impl std::fmt::Debug for ThreadPoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPoolBuilder")
            .field("options", &self.options)
            .field("initializer", &self.init.is_some())
            .finish()
    }
}

impl ThreadPoolBuilder {
    /// The number of threads; default: [`cpu_count`](multiproc_core::cpu_count).
    pub fn processes(mut self, n: usize) -> Self {
        self.options.processes = Some(n);
        self
    }

    /// Every thread runs `f(arg.clone())` once, before the pool takes work (Python's
    /// `initializer`, `initargs`). If it panics, `build` fails with
    /// [`Error::InitializerFailed`]. (`Clone + Sync` here, where the process pools encode
    /// `arg` once: threads share it.)
    pub fn initializer<A: Payload + Clone + Sync>(mut self, f: Task<A, ()>, arg: A) -> Self {
        self.init = Some(Arc::new(move || f(arg.clone())));
        self
    }

    /// Refused by `build`: a thread cannot be replaced to give back what its tasks leaked
    /// (threads share one heap). Use a process pool.
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        let _ = n;
        self.refused.get_or_insert(Error::invalid(
            "max_tasks_per_child",
            "threads share one process, so replacing a thread gives back nothing its tasks \
             leaked: use a process pool (multiproc::fork::Pool, multiproc::spawn::Pool)",
        ));
        self
    }

    /// Refused by `build`: a thread cannot be killed, so a task that runs too long cannot
    /// be stopped. Use a process pool.
    pub fn task_timeout(mut self, limit: std::time::Duration) -> Self {
        let _ = limit;
        self.refused.get_or_insert(Error::invalid(
            "task_timeout",
            "a thread cannot be killed, so a task running past its timeout could not be \
             stopped: use a process pool (multiproc::fork::Pool, multiproc::spawn::Pool)",
        ));
        self
    }

    /// Refused by `build`: threads share one process, whose memory no thread owns.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        let _ = bytes;
        self.refused.get_or_insert(Error::invalid(
            "memory_limit",
            "threads share one process's memory, so no thread can be measured or replaced \
             to give it back: use a process pool (multiproc::fork::Pool, multiproc::spawn::Pool)",
        ));
        self
    }

    /// Accepted for the same code on every backend, and without effect: a thread never dies
    /// under its task (a panic is caught, and a panic is never retried).
    pub fn retries(mut self, n: u32) -> Self {
        self.options.retries = n;
        self
    }

    /// Accepted for the same code on every backend, and without effect: the threads run in
    /// this process, whose allocator settings are the program's own and are never changed.
    pub fn retain_freed_memory(mut self, bytes: u64) -> Self {
        self.options.retain_freed_memory = Some(bytes);
        self
    }

    /// `map`, `starmap` and `imap` draw a progress bar on stderr — items done, rate and ETA —
    /// when stderr is a terminal (`isatty(2)`, the test indicatif itself makes), and nothing
    /// otherwise, as on the process pools.
    ///
    /// ```
    /// use multiproc_threads::{Executor, ThreadPool};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = ThreadPool::builder().processes(2).progress(true).build()?;
    /// assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]); // a bar, on a terminal
    /// # Ok::<(), multiproc_threads::Error>(())
    /// ```
    #[cfg(feature = "progress")]
    #[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
    pub fn progress(mut self, show: bool) -> Self {
        self.options.progress = show;
        self
    }

    /// Sets every option at once (`task_timeout`, `max_tasks_per_child` and `memory_limit`
    /// are refused; `progress` draws only with the `progress` feature).
    pub fn options(mut self, options: PoolOptions) -> Self {
        if let Some(limit) = options.task_timeout {
            self = self.task_timeout(limit);
        }
        if let Some(n) = options.max_tasks_per_child {
            self = self.max_tasks_per_child(n.get());
        }
        if let Some(bytes) = options.memory_limit {
            self = self.memory_limit(bytes);
        }
        self.options = options;
        self
    }

    /// Starts the pool, and runs the initializer on every thread.
    pub fn build(self) -> Result<ThreadPool> {
        if let Some(e) = self.refused {
            return Err(e);
        }
        let mut pool = ThreadPool::new(self.options.workers())?;
        pool.progress = self.options.progress;
        if let Some(init) = self.init {
            panic::catch_unwind(AssertUnwindSafe(|| pool.rayon.broadcast(|_| init())))
                .map_err(|p| Error::InitializerFailed(Error::from_panic(p).to_string()))?;
        }
        Ok(pool)
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
    /// Built with `.progress(true)`: `map`, `starmap` and `imap` draw a bar.
    progress: bool,
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
            progress: false,
        })
    }

    /// `Ok` in the process that created the pool; [`Error::ForeignProcess`] elsewhere.
    fn check_home(&self) -> Result<()> {
        self.home.check()
    }

    /// `join`, waiting at most `timeout` if one is given: whether no work was left. Refused on
    /// one of the pool's own threads (from a task), which would wait for that task itself.
    fn join_until(&self, timeout: Option<Duration>) -> Result<bool> {
        self.check_home()?;
        if self.rayon.current_thread_index().is_some() {
            return Err(Error::invalid(
                "self",
                "join from a task of this pool would wait for that task itself",
            ));
        }
        let s = self.shared.state();
        if !s.closed {
            return Err(Error::JoinBeforeClose);
        }
        let busy = |s: &mut State| s.outstanding > 0;
        let idle = &self.shared.idle;
        let s = match timeout {
            None => idle
                .wait_while(s, busy)
                .unwrap_or_else(PoisonError::into_inner),
            Some(t) => {
                idle.wait_timeout_while(s, t, busy)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
        Ok(s.outstanding == 0)
    }

    /// A [`ThreadPoolBuilder`]: the number of threads, an initializer and (feature
    /// `progress`) a progress bar. The options that need a worker to be killed, replaced or
    /// measured (`task_timeout`, `max_tasks_per_child`, `memory_limit`) are refused by its
    /// `build`, with the reason: a thread cannot be killed.
    ///
    /// ```
    /// use multiproc_threads::{Executor, ThreadPool};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    /// fn hello(name: String) { assert_eq!(name, "worker") }
    ///
    /// let pool = ThreadPool::builder()
    ///     .processes(2) // default: multiproc_core::cpu_count()
    ///     .initializer(hello, "worker".to_string())
    ///     .build()?;
    /// assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
    ///
    /// let refused = ThreadPool::builder()
    ///     .task_timeout(std::time::Duration::from_secs(1))
    ///     .build();
    /// assert!(refused.unwrap_err().to_string().contains("cannot be killed"));
    /// # Ok::<(), multiproc_threads::Error>(())
    /// ```
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder::default()
    }

    /// A pool with one worker per available core (Python's `Pool()`).
    pub fn with_available_parallelism() -> Result<Self> {
        Self::new(multiproc_core::cpu_count())
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
            let outcome = catch(|| guarded(f, &shared.terminated, None));
            contained(|| completer.complete(outcome));
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
    let task = |item| guarded(|| f(item), terminated, Some(sink.cancel_token()));
    // A cancelled submission's chunks that have not started never do (one that runs cannot
    // be stopped: threads cannot be killed; its result is dropped).
    let cancelled = || sink.cancel_token().is_cancelled();
    if sink.wants_whole() {
        if cancelled() {
            sink.deliver_whole(Err(Error::Cancelled), chunksize);
            return;
        }
        let outcome = catch(|| {
            items
                .into_par_iter()
                .with_min_len(chunksize.get())
                .with_max_len(chunksize.get())
                .map(task)
                .collect()
        });
        contained(|| sink.deliver_whole(outcome, chunksize));
        return;
    }
    items
        .into_par_iter()
        .chunks(chunksize.get())
        .enumerate()
        .for_each(|(index, chunk)| {
            if cancelled() {
                sink.deliver(index, Err(Error::Cancelled));
                return;
            }
            let outcome = catch(|| chunk.into_iter().map(task).collect());
            contained(|| sink.deliver(index, outcome));
        });
}

/// The unwind payload that abandons a task after `terminate`: raised with `resume_unwind`,
/// so no panic message is printed.
struct Terminated;

/// The unwind payload that abandons a task of a cancelled submission.
struct Cancelled;

/// Runs one task, unless the pool was terminated or its submission cancelled (a task under
/// way cannot be stopped: threads cannot be killed; the ones after it do not start).
fn guarded<R>(
    task: impl FnOnce() -> R,
    terminated: &AtomicBool,
    cancel: Option<&CancelToken>,
) -> R {
    if terminated.load(Ordering::Relaxed) {
        panic::resume_unwind(Box::new(Terminated));
    }
    if cancel.is_some_and(CancelToken::is_cancelled) {
        panic::resume_unwind(Box::new(Cancelled));
    }
    task()
}

/// Runs `deliver` (which may drop results nobody takes, running the user's `Drop`) so that a
/// panic there cannot unwind into rayon, which aborts the process on a panic in a spawned job.
fn contained(deliver: impl FnOnce()) {
    let _ = panic::catch_unwind(AssertUnwindSafe(deliver));
}

/// Runs `work`, turning a task's panic into [`Error::TaskPanicked`] and a termination into
/// [`Error::PoolClosed`].
fn catch<T>(work: impl FnOnce() -> T) -> Result<T> {
    panic::catch_unwind(AssertUnwindSafe(work)).map_err(|payload| {
        if payload.is::<Terminated>() {
            Error::PoolClosed("the pool was terminated before the task ran")
        } else if payload.is::<Cancelled>() {
            Error::Cancelled
        } else {
            Error::from_panic(payload)
        }
    })
}

impl Executor for ThreadPool {
    fn processes(&self) -> usize {
        self.workers
    }

    fn shows_progress(&self) -> bool {
        self.progress
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
        self.join_until(None).map(drop)
    }

    fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.join_until(Some(timeout))
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
        // Cannot fail once closed, but on one of the pool's own threads (the last handle
        // dropped by a task): that task would wait for itself, so the pool is dropped
        // without waiting (rayon lets its threads finish what they hold, then end).
        let _ = self.join();
        // SAFETY: both fields are dropped exactly once, here, and never used again.
        unsafe {
            ManuallyDrop::drop(&mut self.rayon);
            ManuallyDrop::drop(&mut self.shared);
        }
    }
}
