//! [`Builder`]: a process pool's options, set one by one (`rayon::ThreadPoolBuilder`'s
//! style), so that options do not multiply constructors.

use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::time::Duration;

use multiproc_core::{Error, Payload, PoolOptions, Result, Task, MAX_RETAINED_MEMORY};

use crate::pool::Initializer;

/// A pool type that a [`Builder`] can build: each process backend's pool.
pub trait FromOptions: Sized {
    /// Starts the pool with these options and initializer.
    fn from_options(init: Option<Initializer>, options: PoolOptions) -> Result<Self>;
}

/// Collects a process pool's options; [`build`](Self::build) starts it. Every option is off
/// by default, and then the pool runs exactly as one made by its `new`. Made by each pool's
/// `builder()` (`multiproc::fork::Pool::builder()`, `multiproc::spawn::Pool::builder()`;
/// `multiproc::Pool::builder()` adds `start_method`).
///
/// | option | Python | what it does |
/// |---|---|---|
/// | [`processes`](Self::processes) | `Pool(processes)` | workers; default [`cpu_count`](multiproc_core::cpu_count) |
/// | [`initializer`](Self::initializer) | `initializer`, `initargs` | runs once in each worker (replacements too) |
/// | [`max_tasks_per_child`](Self::max_tasks_per_child) | `maxtasksperchild` | a worker is replaced after that many tasks |
/// | [`task_timeout`](Self::task_timeout) | (pebble's `timeout`) | a task running longer kills its worker: [`Error::TaskTimedOut`] |
/// | [`retries`](Self::retries) | — | a task whose worker died runs again on a fresh worker |
/// | [`memory_limit`](Self::memory_limit) | (loky's memory-leak restart) | a worker over the limit during or at the end of a task is replaced, and that task fails: [`Error::MemoryLimit`] |
/// | [`retain_freed_memory`](Self::retain_freed_memory) | — | how much memory its tasks freed a worker keeps for the next task (default 256 MiB) |
pub struct Builder<P> {
    options: PoolOptions,
    init: Option<Initializer>,
    error: Option<Error>,
    _pool: PhantomData<fn() -> P>,
}

impl<P> std::fmt::Debug for Builder<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("options", &self.options)
            .field("initializer", &self.init.is_some())
            .finish()
    }
}

impl<P: FromOptions> Default for Builder<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: FromOptions> Builder<P> {
    /// Every option off; [`cpu_count`](multiproc_core::cpu_count) workers.
    pub fn new() -> Self {
        Builder {
            options: PoolOptions::default(),
            init: None,
            error: None,
            _pool: PhantomData,
        }
    }

    fn fail(&mut self, e: Error) {
        self.error.get_or_insert(e);
    }

    /// The number of workers (Python's `processes`); default:
    /// [`cpu_count`](multiproc_core::cpu_count). Zero is refused by `build`.
    pub fn processes(mut self, n: usize) -> Self {
        self.options.processes = Some(n);
        self
    }

    /// Every worker (each replacement too) runs `f(arg)` once before its first task
    /// (Python's `initializer`, `initargs`); `arg` is encoded once. If it panics, the pool
    /// stops and its tasks fail with [`Error::InitializerFailed`].
    pub fn initializer<A: Payload>(mut self, f: Task<A, ()>, arg: A) -> Self {
        match Initializer::new(f, &arg) {
            Ok(init) => self.init = Some(init),
            Err(e) => self.fail(e),
        }
        self
    }

    /// Replaces a worker after it has run `n` tasks (chunks; Python's `maxtasksperchild`):
    /// it is stopped and a fresh one is started, so memory a task leaks or fragments is
    /// given back. Zero is refused by `build`.
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        match NonZeroUsize::new(n) {
            Some(n) => self.options.max_tasks_per_child = Some(n),
            None => self.fail(Error::invalid(
                "max_tasks_per_child",
                "must be at least 1 (a worker runs at least one task)",
            )),
        }
        self
    }

    /// A task (a chunk, for `map` with `chunksize` > 1) that runs longer than `limit` kills
    /// its worker: the task fails with [`Error::TaskTimedOut`] (the limit and the pid), the
    /// worker is replaced, and every other task goes on. The clock starts when the worker
    /// starts the task, not when it was submitted; the pool's watchdog checks every
    /// `limit / 10` (at most 10 ms), so the error comes at most that long after the deadline.
    /// Zero is refused by `build`.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.options.task_timeout = Some(limit);
        self
    }

    /// A task whose worker died (a signal, `exit`, [`task_timeout`](Self::task_timeout))
    /// runs again, first on the fresh worker that replaces it, up to `n` more times. A panic
    /// is not retried (it would panic again). When every attempt failed, the error is
    /// [`Error::AttemptsExhausted`]: how many attempts, and why each ended.
    pub fn retries(mut self, n: u32) -> Self {
        self.options.retries = n;
        self
    }

    /// Replaces a worker whose resident memory (RSS) goes above `bytes` (loky's restart on
    /// memory growth), failing the task that took it there with [`Error::MemoryLimit`] (the
    /// limit and the size seen), just that task. The supervisor samples the worker every
    /// 10 ms while a task runs (over: the worker is killed at once) and checks it once more
    /// when the task ends, before its result is delivered (over: the result is dropped, the
    /// worker killed). So a task that leaks past the limit fails, however its end fell
    /// between two samples; a peak shorter than a sample period, freed before the task ends,
    /// may go unseen. The next task runs on a fresh worker (tasks sent ahead to the killed
    /// worker go back to the queue). A forked worker's RSS counts the pages it shares with
    /// the parent, the freed memory a worker keeps for later tasks
    /// ([`retain_freed_memory`](Self::retain_freed_memory)) and its mapping of the last large
    /// argument's shared buffer (kept for the next one: with a memory limit, a worker keeps
    /// one such mapping, not one per buffer the pool keeps). Zero is refused by `build`.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        if bytes == 0 {
            self.fail(Error::invalid("memory_limit", "must be more than 0 bytes"));
        } else {
            self.options.memory_limit = Some(bytes);
        }
        self
    }

    /// How many bytes of the memory its tasks freed each worker process keeps for its next
    /// tasks, instead of handing them back to the kernel; default
    /// [`DEFAULT_RETAINED_MEMORY`](multiproc_core::DEFAULT_RETAINED_MEMORY) (256 MiB), `0`:
    /// the C library's own policy. Above [`MAX_RETAINED_MEMORY`] (2 GiB − 1) is refused by
    /// `build`.
    ///
    /// Why: a page the kernel hands out afresh must be faulted in and zeroed: on our 2-core
    /// VM, writing 100 MiB of fresh 4 KiB pages took 78–141 ms, writing the same memory again
    /// 10–12 ms. glibc serves every block
    /// above its `mmap` threshold (32 MiB at most) with a fresh mapping and unmaps it on
    /// `free`, so a worker would pay those faults for every large argument it decodes. With
    /// this option a worker serves large blocks from its heap (`mallopt(M_MMAP_MAX, 0)`) and
    /// keeps up to `bytes` free at its top (`M_TRIM_THRESHOLD` and `M_TOP_PAD`), so a warm
    /// pool decodes the next argument into warm memory.
    ///
    /// Where it applies: only in the pool's worker processes (set by the worker itself, after
    /// the fork or the start: the process that makes the pool keeps its own allocator
    /// settings), and only where the C library is glibc (elsewhere, and under a
    /// `#[global_allocator]` other than the system's, it changes nothing). A worker forked
    /// for a pool made on any thread but the main one runs its tasks on a thread with its own
    /// glibc arena, whose heaps hold blocks of at most 64 MiB: larger blocks are still mapped
    /// afresh there (a pool made on the main thread forks from it, and its workers, like
    /// spawned ones, run in the main arena, whose heap has no such bound). Retained memory is resident: it counts
    /// towards [`memory_limit`](Self::memory_limit), and freed blocks that are not at the top
    /// of the heap may stay resident beyond `bytes` (glibc returns only the top).
    pub fn retain_freed_memory(mut self, bytes: u64) -> Self {
        if bytes > MAX_RETAINED_MEMORY {
            self.fail(Error::invalid(
                "retain_freed_memory",
                format!(
                    "{bytes} bytes is more than the allocator can be told to keep \
                     ({MAX_RETAINED_MEMORY} bytes, glibc's limit)"
                ),
            ));
        } else {
            self.options.retain_freed_memory = Some(bytes);
        }
        self
    }

    /// `map`, `starmap` and `imap` draw a progress bar on stderr — items done, rate and ETA —
    /// when stderr is a terminal, and nothing otherwise (mpire's `progress_bar`).
    ///
    /// ```
    /// # fn main() -> multiproc_core::Result<()> {
    /// # struct P; impl multiproc_process::FromOptions for P {
    /// #   fn from_options(_: Option<multiproc_process::Initializer>, o: multiproc_core::PoolOptions) -> multiproc_core::Result<P> { assert!(o.progress); Ok(P) } }
    /// // let pool = multiproc::fork::Pool::builder().processes(4).progress(true).build()?;
    /// let pool = multiproc_process::Builder::<P>::new().processes(4).progress(true).build()?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "progress")]
    #[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
    pub fn progress(mut self, show: bool) -> Self {
        self.options.progress = show;
        self
    }

    /// Sets every option at once from `options` (keeps the initializer).
    pub fn options(mut self, options: PoolOptions) -> Self {
        self.options = options;
        self
    }

    /// The options and initializer collected, or the first option that was refused.
    pub fn into_parts(self) -> Result<(Option<Initializer>, PoolOptions)> {
        match self.error {
            Some(e) => Err(e),
            None => Ok((self.init, self.options)),
        }
    }

    /// Starts the pool.
    pub fn build(self) -> Result<P> {
        let (init, options) = self.into_parts()?;
        P::from_options(init, options)
    }
}

#[cfg(test)]
mod tests {
    use multiproc_core::DEFAULT_RETAINED_MEMORY;

    use super::*;

    /// A pool that is just the options it was built with.
    struct Options(PoolOptions);

    impl FromOptions for Options {
        fn from_options(_: Option<Initializer>, options: PoolOptions) -> Result<Self> {
            Ok(Options(options))
        }
    }

    fn built(b: Builder<Options>) -> Result<PoolOptions> {
        b.build().map(|o| o.0)
    }

    #[test]
    fn retain_freed_memory_defaults_to_256_mib_and_refuses_more_than_glibc_takes() {
        let default = built(Builder::new()).unwrap();
        assert_eq!(default.retain_freed_memory, None);
        assert_eq!(default.retained_memory(), DEFAULT_RETAINED_MEMORY);
        assert_eq!(DEFAULT_RETAINED_MEMORY, 256 << 20);
        for bytes in [0, 1 << 20, MAX_RETAINED_MEMORY] {
            let o = built(Builder::new().retain_freed_memory(bytes)).unwrap();
            assert_eq!(o.retained_memory(), bytes);
        }
        match built(Builder::new().retain_freed_memory(MAX_RETAINED_MEMORY + 1)) {
            Err(Error::InvalidArgument { name, reason }) => {
                assert_eq!(name, "retain_freed_memory");
                assert!(reason.contains("glibc"), "{reason}");
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }
}
