//! [`ForkPool`]: the fork backend's [`Executor`].
//!
//! Workers are forked when the pool is created, so they inherit everything the parent had
//! at that moment — the tutorial's read-only sharing, with no copy until someone writes — and
//! then run the shared worker loop of `multiproc-process`. Dispatch, pipelining, dead-worker
//! supervision and shutdown are that crate's [`ProcessPool`]; this file only says how to
//! start a worker: fork (see [`crate::fork`] for how that is made safe in a multithreaded
//! parent) and serve one end of a socket pair.

use multiproc_core::{Payload, Result, Task};
use multiproc_process::{
    Builder, FromOptions, Initializer, IpcStats, Launcher, ProcessPool, Worker,
};
use nix::unistd::Pid;

use crate::fork::{fork_worker, fork_workers};

/// Starts a worker by forking this process. The worker's socket pair is made by the forker
/// thread right before the fork, so no other child inherits it, and no lock is held across
/// the fork by the calling thread (a worker may create a pool of its own).
#[derive(Debug, Default, Clone, Copy)]
pub struct ForkLauncher;

// SAFETY: `fork_worker` returns the pid of the child it has just forked (ours, unreaped,
// known to nobody else) and the parent's end of the socket that child serves on.
unsafe impl Launcher for ForkLauncher {
    fn launch(&self) -> Result<Worker> {
        let (pid, stream) = fork_worker()?;
        // SAFETY: as for this impl: our own fresh child, serving the other end of `stream`,
        // which only this end reaches.
        Ok(unsafe { Worker::new(pid, stream) })
    }

    fn launch_many(&self, n: usize) -> (Vec<Worker>, Option<multiproc_core::Error>) {
        let (forked, failure) = fork_workers(n);
        let workers = forked
            .into_iter()
            // SAFETY: as in `launch`, for each child forked.
            .map(|(pid, stream)| unsafe { Worker::new(pid, stream) })
            .collect();
        (workers, failure)
    }
}

/// A pool of forked worker processes with Python's `Pool` API.
///
/// Data created before the pool (in a `static` such as [`Inherited`](multiproc_core::Inherited))
/// is visible to every task without being copied. Tasks are `fn` items or non-capturing
/// closures; arguments and results travel over Unix sockets (in shared memory from 1 MiB on),
/// encoded by the one codec (`multiproc_process::codec`).
///
/// A worker that dies (a signal, `abort`, `exit`) fails only the task it was running, with
/// [`Error::WorkerDied`](multiproc_core::Error::WorkerDied), and is replaced. Dropping the
/// pool closes it and waits for its work (Python's `close` + `join`);
/// [`terminate`](multiproc_core::Executor::terminate) kills the workers.
///
/// ```
/// use multiproc_fork::{Executor, ForkPool};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = ForkPool::new(2)?;
/// assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
/// # Ok::<(), multiproc_fork::Error>(())
/// ```
#[derive(Debug)]
pub struct ForkPool {
    inner: ProcessPool<ForkLauncher>,
}

impl ForkPool {
    /// Forks `workers` worker processes (Python's `Pool(processes=workers)`).
    /// Zero is [`Error::InvalidArgument`](multiproc_core::Error::InvalidArgument) on `processes`.
    pub fn new(workers: usize) -> Result<Self> {
        Ok(ForkPool {
            inner: ProcessPool::new(workers, ForkLauncher)?,
        })
    }

    /// Like [`new`](Self::new), and every worker runs `initializer(arg)` once before its first
    /// task (Python's `Pool(processes, initializer, initargs)`); `arg` is encoded once and
    /// copied once per worker. If the initializer panics, the pool stops and its tasks fail with
    /// [`Error::InitializerFailed`](multiproc_core::Error::InitializerFailed).
    pub fn with_initializer<A: Payload>(
        workers: usize,
        initializer: Task<A, ()>,
        arg: &A,
    ) -> Result<Self> {
        let init = Initializer::new(initializer, arg)?;
        Ok(ForkPool {
            inner: ProcessPool::with_initializer(workers, ForkLauncher, Some(init))?,
        })
    }

    /// The bytes (and file descriptors) that crossed this pool's sockets so far.
    pub fn ipc_stats(&self) -> IpcStats {
        self.inner.ipc_stats()
    }

    /// The workers' process ids (a slot is `None` while its worker is being replaced, or after
    /// no replacement could be started). Empty in a forked copy of the pool.
    pub fn pids(&self) -> Vec<Option<Pid>> {
        self.inner.pids()
    }
}

impl ForkPool {
    /// A [`Builder`] for this pool: every option of Python's `Pool` and those of the pools
    /// people leave it for (`task_timeout`, `retries`), set one by one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc_fork::{Executor, ForkPool};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = ForkPool::builder()
    ///     .processes(2)                         // default: multiproc_core::cpu_count()
    ///     .max_tasks_per_child(100)             // a fresh worker every 100 tasks
    ///     .task_timeout(Duration::from_secs(60)) // a task running longer kills its worker
    ///     .retries(1)                           // ... and runs once more on a fresh one
    ///     .build()?;
    /// assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
    /// # Ok::<(), multiproc_fork::Error>(())
    /// ```
    pub fn builder() -> Builder<ForkPool> {
        Builder::new()
    }
}

impl FromOptions for ForkPool {
    fn from_options(
        init: Option<Initializer>,
        options: multiproc_core::PoolOptions,
    ) -> Result<Self> {
        Ok(ForkPool {
            inner: ProcessPool::with_options(ForkLauncher, init, options)?,
        })
    }
}

multiproc_process::forward_executor!(ForkPool);
