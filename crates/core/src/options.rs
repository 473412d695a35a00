//! [`PoolOptions`]: what a pool builder collects besides the initializer, shared by every
//! backend's builder (and by the conformance suite, which builds pools with options), and
//! [`cpu_count`].

use std::num::NonZeroUsize;
use std::time::Duration;

/// The number of CPUs this process may run on (Python's `os.process_cpu_count()`, which
/// `multiprocessing.Pool()` uses when `processes` is not given): the affinity mask and cgroup
/// quota are taken into account. At least 1.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// A pool's options, as a builder collects them. Every field's default is "off": no limit,
/// no retry; `processes: None` means [`cpu_count`].
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
}

impl PoolOptions {
    /// The number of workers these options ask for.
    pub fn workers(&self) -> usize {
        self.processes.unwrap_or_else(cpu_count)
    }

    /// Whether every option that changes how tasks run is off (the pool's plain path).
    pub fn is_plain(&self) -> bool {
        self.max_tasks_per_child.is_none()
            && self.task_timeout.is_none()
            && self.retries == 0
            && self.memory_limit.is_none()
    }
}
