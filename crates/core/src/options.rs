//! [`PoolOptions`]: what a pool builder collects besides the initializer, shared by every
//! backend's builder (and by the conformance suite, which builds pools with options), and
//! [`cpu_count`].

use std::num::NonZeroUsize;
use std::time::Duration;

/// The number of CPUs this process may run on (Python's `os.process_cpu_count()`, which
/// `multiprocessing.Pool()` uses when `processes` is not given): the affinity mask and cgroup
/// quota are taken into account. At least 1.
pub fn cpu_count() -> usize {
    multiproc_sys::thread::cpus()
}

/// How much freed memory each worker process of a pool keeps for its next task when the pool's
/// options do not say ([`PoolOptions::retain_freed_memory`]): 256 MiB.
pub const DEFAULT_RETAINED_MEMORY: u64 = 256 << 20;

/// The most freed memory a worker can be asked to keep: glibc's tunables are C `int`s.
pub const MAX_RETAINED_MEMORY: u64 = i32::MAX as u64;

/// A pool's options, as a builder collects them. Every field's default is "off" — no limit,
/// no retry — except that `processes: None` means [`cpu_count`] and
/// `retain_freed_memory: None` means [`DEFAULT_RETAINED_MEMORY`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolOptions {
    /// The number of workers; `None`: [`cpu_count`].
    pub processes: Option<usize>,
    /// Replace a worker after it has run this many tasks (chunks), Python's
    /// `maxtasksperchild`.
    pub max_tasks_per_child: Option<NonZeroUsize>,
    /// Kill a worker whose task (chunk) runs longer than this; the task fails with
    /// [`Error::TaskTimedOut`](crate::Error::TaskTimedOut).
    pub task_timeout: Option<Duration>,
    /// Run a task whose worker died (signal, exit, timeout) again on a fresh worker, up to
    /// this many times.
    pub retries: u32,
    /// A worker's resident memory (RSS, from `/proc/PID/statm`), in bytes, above which it is
    /// killed and replaced: a task during which (sampled every 10 ms) or at whose end (checked
    /// before its result is delivered) its worker is over the limit fails with
    /// [`Error::MemoryLimit`](crate::Error::MemoryLimit), just that task; the next runs on a
    /// fresh worker.
    pub memory_limit: Option<u64>,
    /// Draw a progress bar on stderr (when it is a terminal) for `map`, `starmap` and
    /// `imap`: items done, rate and ETA. Needs the `progress` feature; without it, nothing is
    /// drawn.
    pub progress: bool,
    /// How many bytes of memory its tasks freed a worker process keeps for its next tasks
    /// instead of handing them back to the kernel, so that a large argument is decoded into
    /// memory the worker already has rather than into fresh pages (see
    /// [`retained_memory`](Self::retained_memory)); `Some(0)`: the C library's own policy.
    /// `None`: [`DEFAULT_RETAINED_MEMORY`]. Only worker processes are affected, never the
    /// process that made the pool, and only where the C library is glibc.
    pub retain_freed_memory: Option<u64>,
}

impl PoolOptions {
    /// The number of workers these options ask for.
    pub fn workers(&self) -> usize {
        self.processes.unwrap_or_else(cpu_count)
    }

    /// The bytes of freed memory each worker keeps: the option, or [`DEFAULT_RETAINED_MEMORY`].
    pub fn retained_memory(&self) -> u64 {
        self.retain_freed_memory.unwrap_or(DEFAULT_RETAINED_MEMORY)
    }

    /// Whether every option that changes how tasks run is off (the pool's plain path).
    pub fn is_plain(&self) -> bool {
        self.max_tasks_per_child.is_none()
            && self.task_timeout.is_none()
            && self.retries == 0
            && self.memory_limit.is_none()
    }
}
