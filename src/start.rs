//! Python's start methods: one [`Pool`] type whose workers are forked or spawned, and one
//! [`Process`] type whose child is, chosen by [`set_start_method`] (one line), by the
//! `MULTIPROC_START_METHOD` environment variable, or per pool or process with
//! [`Pool::with_start_method`] and [`Process::with_start_method`].
//!
//! ```
//! use multiproc::prelude::*;
//! use multiproc::{Pool, StartMethod};
//!
//! fn square(x: u64) -> u64 { x * x }
//!
//! multiproc::init(); // first in main: a spawned worker never returns from it
//! multiproc::set_start_method(StartMethod::Spawn); // Python's mp.set_start_method("spawn")
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.start_method(), StartMethod::Spawn);
//! assert_eq!(pool.map(square, 0..4)?, vec![0, 1, 4, 9]);
//! # Ok::<(), multiproc::Error>(())
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use multiproc_core::{Batch, ChunkSink, Error, Executor, Payload, Result, Task};

/// How a [`Pool`]'s workers start (Python's `multiprocessing` start methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// Forked from this process: they inherit its memory (copy-on-write). Feature `fork`.
    Fork,
    /// This program executed again: nothing inherited, everything sent. Feature `spawn`.
    Spawn,
}

impl StartMethod {
    /// The method's name as Python spells it: `"fork"` or `"spawn"`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
        }
    }

    /// Parses Python's name for a start method.
    pub fn parse(name: &str) -> Result<StartMethod> {
        match name {
            "fork" => Ok(StartMethod::Fork),
            "spawn" => Ok(StartMethod::Spawn),
            other => Err(Error::invalid(
                "start method",
                format!("{other:?} is not a start method (expected \"fork\" or \"spawn\")"),
            )),
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The environment variable that picks the default start method (`fork` or `spawn`).
pub const START_METHOD_ENV: &str = "MULTIPROC_START_METHOD";

const UNSET: u8 = 0;
static METHOD: AtomicU8 = AtomicU8::new(UNSET);

fn encode(m: StartMethod) -> u8 {
    match m {
        StartMethod::Fork => 1,
        StartMethod::Spawn => 2,
    }
}

/// Sets the start method of pools and processes created by [`Pool::new`] and
/// [`Process::new`] from now on (Python's `multiprocessing.set_start_method`).
pub fn set_start_method(method: StartMethod) {
    METHOD.store(encode(method), Ordering::Relaxed);
}

/// The start method [`Pool::new`] and [`Process::new`] use: the one set by [`set_start_method`], else the one
/// named by `MULTIPROC_START_METHOD`, else fork when the `fork` feature is on (Linux
/// Python's default), else spawn. A bad `MULTIPROC_START_METHOD` is an error.
pub fn get_start_method() -> Result<StartMethod> {
    match METHOD.load(Ordering::Relaxed) {
        1 => return Ok(StartMethod::Fork),
        2 => return Ok(StartMethod::Spawn),
        _ => {}
    }
    match std::env::var(START_METHOD_ENV) {
        Ok(name) => StartMethod::parse(&name).map_err(|_| {
            Error::invalid(
                START_METHOD_ENV,
                format!("{name:?} is not a start method (expected \"fork\" or \"spawn\")"),
            )
        }),
        Err(_) if cfg!(feature = "fork") => Ok(StartMethod::Fork),
        Err(_) => Ok(StartMethod::Spawn),
    }
}

/// A process pool whose workers start by the chosen [`StartMethod`] — the same [`Executor`]
/// API whichever it is, so a program switches with one line ([`set_start_method`]) or one
/// environment variable.
#[derive(Debug)]
pub enum Pool {
    /// Forked workers ([`crate::fork::ForkPool`]).
    #[cfg(feature = "fork")]
    Fork(multiproc_fork::ForkPool),
    /// Spawned workers ([`crate::spawn::SpawnPool`]).
    #[cfg(feature = "spawn")]
    Spawn(multiproc_spawn::SpawnPool),
}

fn not_built(method: StartMethod) -> Error {
    Error::invalid(
        "start method",
        format!("{method} needs multiproc's `{method}` feature, which this build does not enable"),
    )
}

/// The spawn backend's bootstrapping check, whatever the start method: a spawned worker whose
/// `main` skipped [`init`](crate::init) gets [`Error::InitNotCalled`] (and its parent's pool
/// creation fails at once) instead of forking or spawning workers of its own.
fn check_init(creating: &str) -> Result<()> {
    #[cfg(feature = "spawn")]
    multiproc_spawn::check_init(creating)?;
    #[cfg(not(feature = "spawn"))]
    let _ = creating;
    Ok(())
}

impl Pool {
    /// `workers` worker processes, started by [`get_start_method`] (Python's
    /// `Pool(processes=workers)`).
    pub fn new(workers: usize) -> Result<Pool> {
        Pool::with_start_method(workers, get_start_method()?)
    }

    /// `workers` worker processes started by `method` (Python's
    /// `get_context(method).Pool(workers)`).
    pub fn with_start_method(workers: usize, method: StartMethod) -> Result<Pool> {
        check_init("multiproc::Pool::new")?;
        match method {
            #[cfg(feature = "fork")]
            StartMethod::Fork => Ok(Pool::Fork(multiproc_fork::ForkPool::new(workers)?)),
            #[cfg(feature = "spawn")]
            StartMethod::Spawn => Ok(Pool::Spawn(multiproc_spawn::SpawnPool::new(workers)?)),
            #[allow(unreachable_patterns)]
            other => Err(not_built(other)),
        }
    }

    /// Like [`new`](Self::new), and every worker runs `initializer(arg)` once before its first
    /// task (Python's `Pool(processes, initializer, initargs)`).
    pub fn with_initializer<A: Payload>(
        workers: usize,
        initializer: Task<A, ()>,
        arg: &A,
    ) -> Result<Pool> {
        let method = get_start_method()?;
        check_init("multiproc::Pool::new")?;
        match method {
            #[cfg(feature = "fork")]
            StartMethod::Fork => Ok(Pool::Fork(multiproc_fork::ForkPool::with_initializer(
                workers,
                initializer,
                arg,
            )?)),
            #[cfg(feature = "spawn")]
            StartMethod::Spawn => Ok(Pool::Spawn(multiproc_spawn::SpawnPool::with_initializer(
                workers,
                initializer,
                arg,
            )?)),
            #[allow(unreachable_patterns)]
            other => Err(not_built(other)),
        }
    }

    /// How this pool's workers were started.
    pub fn start_method(&self) -> StartMethod {
        match self {
            #[cfg(feature = "fork")]
            Pool::Fork(_) => StartMethod::Fork,
            #[cfg(feature = "spawn")]
            Pool::Spawn(_) => StartMethod::Spawn,
        }
    }

    /// The bytes (and file descriptors) that crossed this pool's sockets so far.
    pub fn ipc_stats(&self) -> multiproc_process_stats::IpcStats {
        match self {
            #[cfg(feature = "fork")]
            Pool::Fork(p) => p.ipc_stats(),
            #[cfg(feature = "spawn")]
            Pool::Spawn(p) => p.ipc_stats(),
        }
    }
}

/// Where [`IpcStats`](multiproc_process_stats::IpcStats) comes from in this build.
mod process_builder {
    #[cfg(feature = "fork")]
    pub(super) use multiproc_fork::{Builder, FromOptions, Initializer};
    #[cfg(all(feature = "spawn", not(feature = "fork")))]
    pub(super) use multiproc_spawn::{Builder, FromOptions, Initializer};
}

impl Pool {
    /// A [`PoolBuilder`]: the start method and every option of Python's `Pool`, plus those
    /// of the pools people leave it for (`task_timeout`, `retries`), set one by one.
    /// Without [`processes`](PoolBuilder::processes), [`cpu_count`](crate::cpu_count)
    /// workers (Python's `Pool()`); without [`start_method`](PoolBuilder::start_method),
    /// [`get_start_method`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc::prelude::*;
    /// use multiproc::{Pool, StartMethod};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// multiproc::init();
    /// let pool = Pool::builder()
    ///     .processes(2)                          // default: multiproc::cpu_count()
    ///     .start_method(StartMethod::Spawn)      // default: get_start_method()
    ///     .max_tasks_per_child(100)              // Python's maxtasksperchild
    ///     .task_timeout(Duration::from_secs(60)) // a task running longer kills its worker
    ///     .retries(2)                            // a task whose worker died runs again
    ///     .build()?;
    /// assert_eq!(pool.map(square, 0..4)?, vec![0, 1, 4, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            method: None,
            inner: process_builder::Builder::new(),
        }
    }

    fn from_parts(
        method: StartMethod,
        init: Option<process_builder::Initializer>,
        options: multiproc_core::PoolOptions,
    ) -> Result<Pool> {
        use process_builder::FromOptions;
        check_init("multiproc::Pool::builder().build()")?;
        match method {
            #[cfg(feature = "fork")]
            StartMethod::Fork => Ok(Pool::Fork(multiproc_fork::ForkPool::from_options(
                init, options,
            )?)),
            #[cfg(feature = "spawn")]
            StartMethod::Spawn => Ok(Pool::Spawn(multiproc_spawn::SpawnPool::from_options(
                init, options,
            )?)),
            #[allow(unreachable_patterns)]
            other => Err(not_built(other)),
        }
    }
}

impl process_builder::FromOptions for Pool {
    fn from_options(
        init: Option<process_builder::Initializer>,
        options: multiproc_core::PoolOptions,
    ) -> Result<Pool> {
        Pool::from_parts(get_start_method()?, init, options)
    }
}

/// Collects a [`Pool`]'s start method and options; [`build`](Self::build) starts it. Made by
/// [`Pool::builder`]. Every option is off by default, and the pool then runs as one made by
/// [`Pool::new`].
#[derive(Debug)]
#[must_use = "a PoolBuilder does nothing until `build` is called"]
pub struct PoolBuilder {
    method: Option<StartMethod>,
    inner: process_builder::Builder<Pool>,
}

impl PoolBuilder {
    /// Forked or spawned workers; default: [`get_start_method`].
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// The number of workers (Python's `processes`); default:
    /// [`cpu_count`](crate::cpu_count). Zero is refused by `build`.
    pub fn processes(mut self, n: usize) -> Self {
        self.inner = self.inner.processes(n);
        self
    }

    /// Every worker (each replacement too) runs `f(arg)` once before its first task
    /// (Python's `initializer`, `initargs`). If it panics, the pool stops and its tasks fail
    /// with [`Error::InitializerFailed`].
    pub fn initializer<A: Payload>(mut self, f: Task<A, ()>, arg: A) -> Self {
        self.inner = self.inner.initializer(f, arg);
        self
    }

    /// Replaces a worker after it has run `n` tasks (Python's `maxtasksperchild`).
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.inner = self.inner.max_tasks_per_child(n);
        self
    }

    /// A task running longer than `limit` kills its worker and fails with
    /// [`Error::TaskTimedOut`]; the worker is replaced, the other tasks go on.
    pub fn task_timeout(mut self, limit: std::time::Duration) -> Self {
        self.inner = self.inner.task_timeout(limit);
        self
    }

    /// A task whose worker died (signal, exit, timeout) runs again on a fresh worker, up to
    /// `n` more times; a panic is not retried. See [`Error::AttemptsExhausted`].
    pub fn retries(mut self, n: u32) -> Self {
        self.inner = self.inner.retries(n);
        self
    }

    /// A worker whose resident memory is above `bytes` while a task runs (sampled every
    /// 10 ms) or when it ends is replaced, and that task fails with [`Error::MemoryLimit`].
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.inner = self.inner.memory_limit(bytes);
        self
    }

    /// How many bytes of the memory its tasks freed each worker process keeps for its next
    /// tasks (default 256 MiB; `0`: the C library's own policy), so that a large argument is
    /// decoded into memory the worker already has rather than into fresh pages. Only in the
    /// workers (never in this process), only with glibc; retained memory counts towards
    /// [`memory_limit`](Self::memory_limit). Above 2 GiB − 1 is refused by `build`.
    pub fn retain_freed_memory(mut self, bytes: u64) -> Self {
        self.inner = self.inner.retain_freed_memory(bytes);
        self
    }

    /// `map`, `starmap` and `imap` draw a progress bar on stderr (items done, rate, ETA) when
    /// stderr is a terminal, and nothing otherwise.
    #[cfg(feature = "progress")]
    #[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
    pub fn progress(mut self, show: bool) -> Self {
        self.inner = self.inner.progress(show);
        self
    }

    /// Sets every option at once (keeps the start method and the initializer).
    pub fn options(mut self, options: multiproc_core::PoolOptions) -> Self {
        self.inner = self.inner.options(options);
        self
    }

    /// Starts the pool.
    pub fn build(self) -> Result<Pool> {
        let method = match self.method {
            Some(m) => m,
            None => get_start_method()?,
        };
        let (init, options) = self.inner.into_parts()?;
        Pool::from_parts(method, init, options)
    }
}

mod multiproc_process_stats {
    #[cfg(feature = "fork")]
    pub(super) use multiproc_fork::IpcStats;
    #[cfg(all(feature = "spawn", not(feature = "fork")))]
    pub(super) use multiproc_spawn::IpcStats;
}

macro_rules! delegate {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            #[cfg(feature = "fork")]
            Pool::Fork($p) => $e,
            #[cfg(feature = "spawn")]
            Pool::Spawn($p) => $e,
        }
    };
}

impl Executor for Pool {
    fn processes(&self) -> usize {
        delegate!(self, p => p.processes())
    }

    fn shows_progress(&self) -> bool {
        delegate!(self, p => p.shows_progress())
    }

    fn submit<A, R>(&self, f: Task<A, R>, batch: Batch<A>, sink: ChunkSink<R>) -> Result<()>
    where
        A: Payload,
        R: Payload,
    {
        delegate!(self, p => p.submit(f, batch, sink))
    }

    fn close(&self) {
        delegate!(self, p => p.close())
    }

    fn join(&self) -> Result<()> {
        delegate!(self, p => p.join())
    }

    fn join_timeout(&self, timeout: std::time::Duration) -> Result<bool> {
        delegate!(self, p => p.join_timeout(timeout))
    }

    fn terminate(&self) -> Result<()> {
        delegate!(self, p => p.terminate())
    }
}

/// A process that has not started yet, whose child starts by the chosen [`StartMethod`]
/// (Python's `multiprocessing.Process(target=f, args=(...))`, which follows
/// `set_start_method`). The same shape as `multiproc::fork::Process` and
/// `multiproc::spawn::Process` — [`new`](Self::new) with a task and its arguments,
/// [`name`](Self::name), [`daemon`](Self::daemon), [`start`](Self::start) giving a
/// [`ProcessHandle`](crate::ProcessHandle) — so a program switches with one line, the `use` or
/// [`set_start_method`]:
///
/// ```
/// use multiproc::{Process, StartMethod}; // or multiproc::fork::Process, multiproc::spawn::Process
///
/// fn greet(name: String) {
///     println!("hello, {name}");
/// }
///
/// multiproc::init(); // first in main: a spawned child never returns from it
/// multiproc::set_start_method(StartMethod::Spawn); // Python's mp.set_start_method("spawn")
/// let p = Process::new(greet, "bob".to_string()).name("greeter").start()?;
/// p.join()?;
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// The start method is read when the process is made ([`new`](Self::new)), as [`Pool::new`]
/// reads it; a bad `MULTIPROC_START_METHOD`, or a method this build lacks, is reported by
/// [`start`](Self::start). The behaviour of the child is the backend's:
/// [`fork::Process`](crate::fork::Process) (the child is a copy of this process; `args` is
/// never encoded) or [`spawn::Process`](crate::spawn::Process) (the child is this program
/// executed again; `args` is encoded and sent, shared objects as file descriptors). A target
/// that captures is fork's alone: [`fork::Process::from_closure`](crate::fork::Process::from_closure).
#[derive(Debug)]
#[must_use = "a Process does nothing until `start` is called"]
pub struct Process {
    /// The backend's process, or why there is none (reported by `start`).
    inner: Result<Unstarted>,
}

/// The backend's unstarted process.
#[derive(Debug)]
enum Unstarted {
    #[cfg(feature = "fork")]
    Fork(multiproc_fork::Process<'static>),
    #[cfg(feature = "spawn")]
    Spawn(multiproc_spawn::Process),
}

impl Process {
    /// A process that will run `target(args)`, started by [`get_start_method`] (Python's
    /// `Process(target=f, args=(...))`).
    pub fn new<A: Payload>(target: Task<A, ()>, args: A) -> Process {
        match get_start_method() {
            Ok(method) => Process::with_start_method(target, args, method),
            Err(e) => Process { inner: Err(e) },
        }
    }

    /// A process that will run `target(args)`, started by `method` (Python's
    /// `get_context(method).Process(target=f, args=(...))`).
    pub fn with_start_method<A: Payload>(
        target: Task<A, ()>,
        args: A,
        method: StartMethod,
    ) -> Process {
        let inner = match method {
            #[cfg(feature = "fork")]
            StartMethod::Fork => Ok(Unstarted::Fork(multiproc_fork::Process::new(target, args))),
            #[cfg(feature = "spawn")]
            StartMethod::Spawn => Ok(Unstarted::Spawn(multiproc_spawn::Process::new(
                target, args,
            ))),
            #[allow(unreachable_patterns)]
            other => {
                let _ = (target, args);
                Err(not_built(other))
            }
        };
        Process { inner }
    }

    /// How the child will start, or `None` if [`start`](Self::start) will fail (a bad
    /// `MULTIPROC_START_METHOD`, or a method this build lacks).
    pub fn start_method(&self) -> Option<StartMethod> {
        match self.inner.as_ref().ok()? {
            #[cfg(feature = "fork")]
            Unstarted::Fork(_) => Some(StartMethod::Fork),
            #[cfg(feature = "spawn")]
            Unstarted::Spawn(_) => Some(StartMethod::Spawn),
        }
    }

    /// Sets the process's name (default `Process-N`, numbered in start order).
    pub fn name(self, name: impl Into<String>) -> Self {
        let inner = self.inner.map(|p| match p {
            #[cfg(feature = "fork")]
            Unstarted::Fork(p) => Unstarted::Fork(p.name(name)),
            #[cfg(feature = "spawn")]
            Unstarted::Spawn(p) => Unstarted::Spawn(p.name(name)),
        });
        Process { inner }
    }

    /// Marks the process as a daemon: it is killed when this process exits, instead of being
    /// waited for.
    pub fn daemon(self, daemon: bool) -> Self {
        let inner = self.inner.map(|p| match p {
            #[cfg(feature = "fork")]
            Unstarted::Fork(p) => Unstarted::Fork(p.daemon(daemon)),
            #[cfg(feature = "spawn")]
            Unstarted::Spawn(p) => Unstarted::Spawn(p.daemon(daemon)),
        });
        Process { inner }
    }

    /// Starts the child, by fork or spawn. Fails with what made the process impossible (a bad
    /// `MULTIPROC_START_METHOD`, a method this build lacks), with the backend's `start` errors
    /// ([`Error::Serialization`] for arguments spawn could not encode, [`Error::Io`] if the
    /// child could not be started), and with [`Error::InitNotCalled`] — whatever the start
    /// method — in a spawned child whose `main` skipped [`init`](crate::init), instead of
    /// starting a process of its own.
    pub fn start(self) -> Result<crate::ProcessHandle> {
        let inner = self.inner?;
        check_init("multiproc::Process::start")?;
        match inner {
            #[cfg(feature = "fork")]
            Unstarted::Fork(p) => p.start(),
            #[cfg(feature = "spawn")]
            Unstarted::Spawn(p) => p.start(),
        }
    }
}
