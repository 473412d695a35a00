//! The axes of the matrix (backends, data strategies), the pools of the pool backends, the
//! IPC byte counter and the watchdog that keeps a stuck cell from hanging the run.
//!
//! Adding a backend is a variant of [`Backend`], a variant of [`Exec`] with its constructor
//! in [`Pool::with_init`], and an arm in [`with_pool!`](crate::with_pool): every workload is
//! written once against [`Pool`] and runs on every variant.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use multiproc_core::{Executor, Payload, Task};
use multiproc_fork::ForkPool;
use multiproc_spawn::SpawnPool;
use multiproc_threads::ThreadPool;
use serde::{Deserialize, Serialize};

use crate::Res;

/// How a cell runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Backend {
    /// One thread, no pool: the baseline of the speedup column.
    Serial,
    /// Plain rayon in this process: the in-process baseline a Rust programmer would write.
    Rayon,
    /// multiproc's threads backend (`ThreadPool`).
    Threads,
    /// multiproc's fork backend (`ForkPool`).
    Fork,
    /// multiproc's spawn backend (`SpawnPool`).
    Spawn,
}

impl Backend {
    /// The pool backends: the ones with a multiproc `Executor`.
    pub(crate) const POOLS: [Backend; 3] = [Backend::Threads, Backend::Fork, Backend::Spawn];

    /// The name used in tables, JSON and by the Python script.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Serial => "serial",
            Backend::Rayon => "rayon",
            Backend::Threads => "threads",
            Backend::Fork => "fork",
            Backend::Spawn => "spawn",
        }
    }

    /// Why this build cannot run the backend, if it cannot (every backend is built now; a
    /// backend added to the list before its crate exists says so here).
    pub(crate) fn unavailable(self) -> Option<&'static str> {
        None
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a workload's data reaches the workers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Strategy {
    /// No strategy: serial and rayon read the data where it is; start-up moves no data.
    Direct,
    /// Arguments and results are serde values: copied over the socket on process backends,
    /// moved in memory on threads.
    Copy,
    /// The data sits in a `static` set before the pool: a copy-on-write snapshot on fork, the
    /// same address space on threads, nothing at all on spawn.
    Inherit,
    /// The data sits in shared memory (`RawArray`, `FrozenArray`) every worker maps: made
    /// before the pool and inherited on fork, handed to each spawned worker once through the
    /// pool's initializer (its descriptor crosses the socket, not its bytes).
    Shm,
}

impl Strategy {
    /// The strategies a user can select (`Direct` comes with the baselines).
    pub(crate) const SELECTABLE: [Strategy; 3] = [Strategy::Copy, Strategy::Inherit, Strategy::Shm];

    /// The name used in tables, JSON and by the Python script.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Strategy::Direct => "-",
            Strategy::Copy => "copy",
            Strategy::Inherit => "inherit",
            Strategy::Shm => "shm",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The executor inside a [`Pool`] (`Executor` has generic methods, so it cannot be a trait
/// object).
#[derive(Debug)]
pub(crate) enum Exec {
    /// multiproc's threads backend.
    Threads(ThreadPool),
    /// multiproc's fork backend.
    Fork(ForkPool),
    /// multiproc's spawn backend.
    Spawn(SpawnPool),
}

/// Bytes of encoded arguments and results that pools have moved between processes, as the
/// pools count them (`ipc_stats`), added up by [`Pool::account`].
static IPC_BYTES: AtomicU64 = AtomicU64::new(0);

/// The IPC bytes counted so far; a cell's bytes are the difference over one run.
pub(crate) fn ipc_bytes() -> u64 {
    IPC_BYTES.load(Ordering::Relaxed)
}

/// A pool of one of the pool backends, so that a workload is written once for all of them.
#[derive(Debug)]
pub(crate) struct Pool {
    /// The executor.
    pub exec: Exec,
    accounted: AtomicU64,
}

/// A no-op initializer, for pools that need none.
fn no_init(_: ()) {}

impl Pool {
    /// Starts a pool of `workers` on `backend`.
    pub(crate) fn new(backend: Backend, workers: usize) -> Res<Pool> {
        Pool::with_init(backend, workers, no_init, &())
    }

    /// Starts a pool whose spawned workers each run `init(arg)` first (Python's
    /// `Pool(initializer=..., initargs=...)`): how a spawned worker gets what the others
    /// inherit. Threads and forked workers already see the parent's statics and skip it.
    pub(crate) fn with_init<A>(
        backend: Backend,
        workers: usize,
        init: Task<A, ()>,
        arg: &A,
    ) -> Res<Pool>
    where
        A: Payload,
    {
        let exec = match backend {
            Backend::Threads => ThreadPool::new(workers).map(Exec::Threads),
            Backend::Fork => ForkPool::new(workers).map(Exec::Fork),
            Backend::Spawn => SpawnPool::with_initializer(workers, init, arg).map(Exec::Spawn),
            other => return Err(format!("{other} is not a pool backend")),
        };
        let exec = exec.map_err(|e| format!("starting a {backend} pool: {e}"))?;
        Ok(Pool {
            exec,
            accounted: AtomicU64::new(0),
        })
    }

    /// Starts the pool a cell of `strategy` uses: with `init(arg)` for spawned workers on the
    /// shm strategy (how they get the shared arrays the others inherit), plain otherwise.
    pub(crate) fn for_strategy<A: Payload>(
        backend: Backend,
        workers: usize,
        strategy: Strategy,
        init: Task<A, ()>,
        arg: &A,
    ) -> Res<Pool> {
        if strategy == Strategy::Shm {
            Pool::with_init(backend, workers, init, arg)
        } else {
            Pool::new(backend, workers)
        }
    }

    /// Adds the IPC bytes this pool moved since the last call to the global count.
    pub(crate) fn account(&self) {
        let stats = match &self.exec {
            Exec::Threads(_) => return,
            Exec::Fork(p) => p.ipc_stats(),
            Exec::Spawn(p) => p.ipc_stats(),
        };
        let total = stats.bytes_sent + stats.bytes_received;
        let before = self.accounted.swap(total, Ordering::Relaxed);
        IPC_BYTES.fetch_add(total.saturating_sub(before), Ordering::Relaxed);
    }

    /// Python's `close()` + `join()`: waits for the workers to finish and exit.
    pub(crate) fn finish(self) -> Res<()> {
        self.account();
        crate::with_pool!(&self, p => {
            p.close();
            p.join()
        })
        .map_err(|e| format!("joining the pool: {e}"))
    }
}

/// Runs `$body` with `$p` bound to the executor inside a [`Pool`] (each arm is compiled
/// for its own executor type, so `$body` may call any generic `Executor` method).
#[macro_export]
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match &$pool.exec {
            $crate::backend::Exec::Threads($p) => $body,
            $crate::backend::Exec::Fork($p) => $body,
            $crate::backend::Exec::Spawn($p) => $body,
        }
    };
}

/// The watchdog's deadline for the run in progress.
static DEADLINE: Mutex<Option<Instant>> = Mutex::new(None);

/// Whether the watchdog had to kill workers during the run in progress.
static FIRED: AtomicU64 = AtomicU64::new(0);

/// Starts the watchdog thread: while a run is past its deadline, it SIGKILLs every process
/// below this one (a cell's pool workers: the bench has no other children while a cell runs),
/// so that a stuck pool fails its tasks with `WorkerDied` instead of hanging the bench.
pub(crate) fn start_watchdog() {
    std::thread::Builder::new()
        .name("bench-watchdog".into())
        .spawn(|| loop {
            std::thread::sleep(Duration::from_millis(100));
            let late = DEADLINE
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|d| Instant::now() > d);
            if late {
                let me = std::process::id();
                if let Ok(tree) = multiproc_core::process_tree(me) {
                    for pid in tree.into_iter().skip(1) {
                        let pid = nix::unistd::Pid::from_raw(pid as i32);
                        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
                            FIRED.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        })
        .expect("starting the watchdog thread");
}

/// Arms the watchdog for a run that must end within `limit`.
pub(crate) fn arm(limit: Duration) {
    FIRED.store(0, Ordering::Relaxed);
    *DEADLINE.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + limit);
}

/// Disarms it; returns whether it killed anything during the run.
pub(crate) fn disarm() -> bool {
    *DEADLINE.lock().unwrap_or_else(|p| p.into_inner()) = None;
    FIRED.load(Ordering::Relaxed) > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u64) -> u64 {
        2 * x
    }

    #[test]
    fn in_process_pool_backends_run_a_map() {
        // Spawned workers re-execute the test binary, which has no `multiproc_spawn::init`:
        // the spawn backend is exercised by running the bench itself.
        for backend in [Backend::Threads, Backend::Fork] {
            let pool = Pool::new(backend, 2).unwrap();
            let got = with_pool!(pool, p => p.map(double, 0..10u64)).unwrap();
            assert_eq!(got, (0..10).map(double).collect::<Vec<_>>());
            pool.finish().unwrap();
        }
    }

    #[test]
    fn fork_pools_count_their_ipc_bytes() {
        let before = ipc_bytes();
        let pool = Pool::new(Backend::Fork, 1).unwrap();
        with_pool!(pool, p => p.map(double, 0..100u64)).unwrap();
        pool.finish().unwrap();
        assert!(ipc_bytes() >= before + 200, "{} -> {}", before, ipc_bytes());
    }

    #[test]
    fn baselines_are_not_pools() {
        assert!(Pool::new(Backend::Serial, 1).is_err());
        assert!(Pool::new(Backend::Rayon, 1).is_err());
    }
}
