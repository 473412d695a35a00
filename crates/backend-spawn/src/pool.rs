//! [`SpawnPool`]: the spawn backend's [`Executor`].
//!
//! Workers are fresh processes of this same program (see [`crate::launch`]): they inherit
//! nothing, so they are safe to start from any multithreaded parent, and everything they get
//! crosses a socket — arguments and results encoded by the one codec, shared arrays and other
//! descriptor-owning values as descriptors (`SCM_RIGHTS`). Dispatch, pipelining, dead-worker
//! supervision and shutdown are `multiproc-process`'s [`ProcessPool`], the same code the fork
//! backend runs; this file only says how to start a worker and how to know it is ready.

use std::io::{self, Read};
use std::time::Duration;

use multiproc_core::{Error, Payload, Result, Task};
use multiproc_process::{
    reap, Builder, FromOptions, Initializer, IpcStats, Launcher, ProcessPool, Worker,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::child::check_init;
use crate::launch::{spawn_child, Role};

/// How long a new worker may take to reach [`init`](crate::init) before the pool gives up on
/// it (a program that does heavy work before `init` pays that in every worker).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One `read` of `stream`, again after a signal handler interrupted it: with a receive timeout
/// set, the kernel does not restart it, whatever `SA_RESTART` says.
fn read_retrying(mut stream: &std::os::unix::net::UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Starts a worker by executing this program again.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpawnLauncher;

// SAFETY: `spawn_child` returns the pid of the child it has just started (ours, unreaped,
// known to nobody else) and the parent's end of the socket that is that child's stdin.
unsafe impl Launcher for SpawnLauncher {
    fn launch(&self) -> Result<Worker> {
        check_init("SpawnPool::new")?;
        let (pid, stream) = spawn_child(Role::Worker)?;
        // SAFETY: as for this impl: our own fresh child, whose stdin is the other end of
        // `stream`, which only this end reaches.
        Ok(unsafe { Worker::new(pid, stream) })
    }

    unsafe fn ready(&self, worker: &Worker) -> Result<()> {
        // SAFETY: only read here: the worker's readiness byte.
        let stream = unsafe { worker.stream() };
        let mut byte = [0u8; 1];
        let result = stream
            .set_read_timeout(Some(READY_TIMEOUT))
            .and_then(|()| read_retrying(stream, &mut byte));
        let _ = stream.set_read_timeout(None);
        match result {
            Ok(1) if byte[0] == b'R' => Ok(()),
            Ok(1) if byte[0] == b'I' => {
                // It reached pool or process creation without `init` and said so; it cannot
                // serve, and whatever its `main` does next is not ours to wait for.
                let _ = kill(worker.pid(), Signal::SIGKILL);
                // SAFETY: our caller's contract: `worker` is our launched, unreaped child,
                // in no pool, so only this launcher may signal and reap it.
                unsafe { reap(worker.pid()) };
                Err(Error::InitNotCalled(format!(
                    "spawned worker {} ran main again and reached pool or process creation \
                     without having run init()",
                    worker.pid()
                )))
            }
            // The socket closed (a program that exits with the hello unread resets it): the
            // worker ended before `init` recognised it.
            Ok(0) => {
                // SAFETY: our caller's contract, passed on.
                Err(unsafe { ended_before_init(worker) })
            }
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => {
                // SAFETY: our caller's contract, passed on.
                Err(unsafe { ended_before_init(worker) })
            }
            Ok(_) => {
                let _ = kill(worker.pid(), Signal::SIGKILL);
                // SAFETY: our caller's contract: `worker` is our launched, unreaped child,
                // in no pool, so only this launcher may signal and reap it.
                unsafe { reap(worker.pid()) };
                Err(Error::Io(io::Error::other(format!(
                    "spawned worker {} broke the handshake (sent {:?})",
                    worker.pid(),
                    byte[0]
                ))))
            }
            Err(e) => {
                let _ = kill(worker.pid(), Signal::SIGKILL);
                // SAFETY: our caller's contract: `worker` is our launched, unreaped child,
                // in no pool, so only this launcher may signal and reap it.
                unsafe { reap(worker.pid()) };
                Err(Error::Io(io::Error::new(
                    e.kind(),
                    format!(
                        "spawned worker {} did not start serving within {READY_TIMEOUT:?}: {e}",
                        worker.pid()
                    ),
                )))
            }
        }
    }
}

/// The error for a worker whose socket closed before it was ready: it ended (reaped here)
/// before `init` recognised it — `main` ran again and finished without calling `init`, or the
/// program died before reaching it.
///
/// # Safety
///
/// As [`Launcher::ready`]'s: `worker` is a launched child of ours, unreaped, in no pool.
unsafe fn ended_before_init(worker: &Worker) -> Error {
    // SAFETY: this function's contract.
    let cause = unsafe { reap(worker.pid()) };
    Error::InitNotCalled(format!(
        "spawned worker {} {cause} before init() recognised it as a worker",
        worker.pid()
    ))
}

/// A pool of spawned worker processes with Python's `Pool` API (`multiprocessing` with the
/// "spawn" start method).
///
/// Workers start from scratch: nothing the parent set up reaches them except what is sent.
/// Arguments and results are serde values; a shared array
/// ([`RawArray`](https://docs.rs/multiproc-shared-array)) or a process-shared lock passed as
/// an argument travels as a file descriptor, so the worker maps the same memory, however
/// late the array was created. Context data can be sent once per worker with
/// [`with_initializer`](Self::with_initializer) instead of once per task.
///
/// The program must call [`init`](crate::init) first in `main` (in tests:
/// [`test_worker!`](crate::test_worker)); otherwise creating the pool fails with an error
/// that says so.
///
/// ```
/// use multiproc_spawn::{Executor, SpawnPool};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// # multiproc_spawn::init();
/// let pool = SpawnPool::new(2)?;
/// assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
/// # Ok::<(), multiproc_spawn::Error>(())
/// ```
#[derive(Debug)]
pub struct SpawnPool {
    inner: ProcessPool<SpawnLauncher>,
}

impl SpawnPool {
    /// Starts `workers` worker processes (Python's `Pool(processes=workers)` under the spawn
    /// context) and waits until each is ready. Zero is [`Error::InvalidArgument`]. A program
    /// whose `main` does not call [`init`](crate::init) first gets [`Error::InitNotCalled`],
    /// in the parent and in the worker alike, instead of workers that start pools of their own.
    pub fn new(workers: usize) -> Result<Self> {
        Ok(SpawnPool {
            inner: ProcessPool::new(workers, SpawnLauncher)?,
        })
    }

    /// Like [`new`](Self::new), and every worker runs `initializer(arg)` once before its first
    /// task (Python's `Pool(processes, initializer, initargs)`): `arg` is encoded once and
    /// copied once per worker, not once per task. If the initializer panics, the pool stops and its tasks fail
    /// with [`Error::InitializerFailed`].
    pub fn with_initializer<A: Payload>(
        workers: usize,
        initializer: Task<A, ()>,
        arg: &A,
    ) -> Result<Self> {
        let init = Initializer::new(initializer, arg)?;
        Ok(SpawnPool {
            inner: ProcessPool::with_initializer(workers, SpawnLauncher, Some(init))?,
        })
    }

    /// The workers' process ids (a slot is `None` while its worker is being replaced).
    pub fn pids(&self) -> Vec<Option<Pid>> {
        self.inner.pids()
    }

    /// The bytes (and file descriptors) that crossed this pool's sockets so far.
    pub fn ipc_stats(&self) -> IpcStats {
        self.inner.ipc_stats()
    }
}

impl SpawnPool {
    /// A [`Builder`] for this pool: every option of Python's `Pool` and those of the pools
    /// people leave it for (`task_timeout`, `retries`), set one by one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc_spawn::{Executor, SpawnPool};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// # multiproc_spawn::init();
    /// let pool = SpawnPool::builder()
    ///     .processes(2)                         // default: multiproc_core::cpu_count()
    ///     .max_tasks_per_child(100)             // a fresh worker every 100 tasks
    ///     .task_timeout(Duration::from_secs(60)) // a task running longer kills its worker
    ///     .retries(1)                           // ... and runs once more on a fresh one
    ///     .build()?;
    /// assert_eq!(pool.map(square, 0..5)?, vec![0, 1, 4, 9, 16]);
    /// # Ok::<(), multiproc_spawn::Error>(())
    /// ```
    pub fn builder() -> Builder<SpawnPool> {
        Builder::new()
    }
}

impl FromOptions for SpawnPool {
    fn from_options(
        init: Option<Initializer>,
        options: multiproc_core::PoolOptions,
    ) -> Result<Self> {
        Ok(SpawnPool {
            inner: ProcessPool::with_options(SpawnLauncher, init, options)?,
        })
    }
}

multiproc_process::forward_executor!(SpawnPool);
