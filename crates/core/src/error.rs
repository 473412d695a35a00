//! The one error type of multiproc.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The result type used throughout multiproc.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitCause {
    /// It exited by itself with this status code.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
}

impl ExitCause {
    /// Python's `Process.exitcode` convention: the exit code, or the negated signal number.
    pub fn exitcode(self) -> i32 {
        match self {
            ExitCause::Code(c) => c,
            ExitCause::Signal(s) => -s,
        }
    }
}

/// The conventional name of a Linux signal number, when it has a well-known one.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

impl fmt::Display for ExitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitCause::Code(c) => write!(f, "exited with code {c}"),
            ExitCause::Signal(s) => match signal_name(s) {
                Some(name) => write!(f, "killed by signal {s} ({name})"),
                None => write!(f, "killed by signal {s}"),
            },
        }
    }
}

/// Everything that can go wrong in multiproc.
///
/// Python raises; multiproc returns one of these. Each variant says what a Python user
/// would have seen as an exception, and carries enough to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task panicked (Python: the task raised). The pool is still usable.
    #[error("task panicked: {message}")]
    TaskPanicked {
        /// The panic payload, when it was a string; otherwise a placeholder.
        message: String,
    },
    /// The worker running the task died (SIGKILL, abort, segfault, `exit`).
    #[error("worker process {pid} died: {cause}")]
    WorkerDied {
        /// The dead worker's process id.
        pid: u32,
        /// How it ended.
        cause: ExitCause,
    },
    /// The pool's initializer failed in a worker (Python: a worker whose `initializer` raised
    /// is restarted forever; here the pool stops and every pending task gets this error).
    #[error("the pool's initializer failed in a worker: {0}")]
    InitializerFailed(String),
    /// A spawned worker did not run `init()` first in `main` (Python's "an attempt has been made
    /// to start a new process before the current process has finished its bootstrapping
    /// phase"). The worker gets it from pool or process creation instead of starting workers of
    /// its own; its parent gets it from pool creation as soon as the worker reports it or ends.
    #[error(
        "{0}: call multiproc::init() (or multiproc_spawn::init()) first in main, or \
         multiproc_spawn::test_worker!() in a test binary"
    )]
    InitNotCalled(String),
    /// A blocking call with a timeout gave up: joining a thread or process, waiting on a
    /// result, a lock, an event, a pipe. (A queue that stays empty or full is
    /// [`Empty`](Error::Empty) or [`Full`](Error::Full) instead, as in Python.)
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The pool was closed or terminated, so it takes no more work or dropped this work.
    #[error("pool closed: {0}")]
    PoolClosed(&'static str),
    /// `join` was called on a pool that is still running (Python: `ValueError: Pool is still
    /// running`). Nothing was waited for; the pool is unchanged.
    #[error(
        "join() on a running pool: call close() (or terminate()) first, then join() waits for \
         the submitted work"
    )]
    JoinBeforeClose,
    /// A pool has no worker and could not start one, so it cannot run work (Python's
    /// `BrokenProcessPool`): a process pool lost every worker and could not start a
    /// replacement — it closed itself, and every pending and later call fails with this — or
    /// a thread pool could not start its threads (from `new`). `cause` is why the last attempt
    /// failed (`fork` out of processes with `EAGAIN`, out of memory or descriptors, say).
    /// Create a new pool once the cause is dealt with.
    #[error(
        "no worker could be started ({cause}): the pool cannot run work; create a new pool \
         once that is dealt with"
    )]
    NoWorkers {
        /// Why the last attempt to start a worker failed (shared by every task it failed).
        cause: Arc<Error>,
    },
    /// The queue was closed (`multiproc_ipc::Queue::close`): a put on it, or a get once its
    /// last item was taken (Python: `ValueError: Queue is closed`). The end a consumer loop
    /// stops on.
    #[error(
        "the queue is closed: it takes no more items and its last item was taken (stop \
         putting or getting)"
    )]
    QueueClosed,
    /// The other end of a pipe is closed: every copy of it was closed or dropped, or its
    /// process ended (Python: `EOFError` from `recv` once nothing is left, `BrokenPipeError`
    /// from `send`). Nothing more will arrive or can be sent on this connection.
    #[error(
        "the other end of the pipe is closed (dropped, or its process ended): nothing more \
         will arrive or can be sent on this connection"
    )]
    PipeClosed,
    /// A get that may not wait (`get_nowait`), or may wait only so long (`get_timeout`), found
    /// no item (Python: `queue.Empty`).
    #[error(
        "the queue is empty: no item arrived in time (get() waits for one; get_timeout() \
         takes a longer timeout)"
    )]
    Empty,
    /// A put that may not wait (`put_nowait`), or may wait only so long (`put_timeout`), found
    /// no room (Python: `queue.Full`).
    #[error(
        "the queue is full: no room appeared in time (put() waits for it; or give the queue a \
         larger maxsize or ring)"
    )]
    Full,
    /// A pool or process handle was used in a process other than the one that created it —
    /// a forked child's copy, reached through a `static` or moved into a forked `Process`.
    /// That copy has none of its creator's threads or children, so it refuses every call and
    /// its `Drop` does nothing; create a new one in the child instead.
    #[error(
        "this {what} belongs to process {owner}; it cannot be used in process {current} (a \
         forked copy has none of its threads or children): create a new one in this process"
    )]
    ForeignProcess {
        /// What was used (`"pool"`, `"process handle"`).
        what: &'static str,
        /// The process that created it.
        owner: u32,
        /// The process that tried to use it.
        current: u32,
    },
    /// An argument was out of range or inconsistent.
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// The argument's name as it appears in the API.
        name: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The calling thread or process does not hold the lock it tried to release or wait on
    /// (Python: `RuntimeError: release unlocked lock`).
    #[error("not held: {0}")]
    NotHeld(&'static str),
    /// The process that held a process-shared lock died while holding it; the data it
    /// protects may be inconsistent. From `acquire`, the caller now holds the lock (release
    /// it); guard-returning calls hand over the guard instead
    /// ([`LockError::OwnerDied`](crate::LockError::OwnerDied)), and this variant is what `?`
    /// makes of that (dropping the guard releases the lock); one-call accessors such as the
    /// shared arrays' `get`/`set` release the lock again before returning it.
    #[error("the owner of the lock died while holding it; the lock is now held by the caller")]
    OwnerDied,
    /// A barrier was aborted, reset while threads waited, or a wait on it timed out
    /// (Python: `threading.BrokenBarrierError`).
    #[error("barrier is broken")]
    BrokenBarrier,
    /// The value of an [`AsyncResult`](crate::AsyncResult) was already taken by an earlier `get`.
    #[error("the result was already taken by an earlier get")]
    ResultTaken,
    /// A value could not be serialized or deserialized on its way to or from a worker.
    #[error("serialization failed: {0}")]
    Serialization(String),
    /// An operating-system call failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),

    // -- What a pool's options end (the builder's `task_timeout`, `retries`, `cancel`). --
    /// The task ran longer than the pool's `task_timeout`: its worker was killed (and
    /// replaced); the pool's other tasks are not affected.
    #[error("task timed out after {limit:?}: its worker process {pid} was killed and replaced")]
    TaskTimedOut {
        /// The pool's `task_timeout`.
        limit: Duration,
        /// The worker that was killed.
        pid: u32,
    },
    /// The worker running the task was over the pool's `memory_limit` while running it or
    /// when it ended (its result, if any, is dropped), and was killed (and replaced).
    #[error(
        "worker process {pid} went over the memory limit ({observed} > {limit} bytes) while \
         running the task; it was killed and replaced"
    )]
    MemoryLimit {
        /// The pool's `memory_limit`, in bytes.
        limit: u64,
        /// The worker's memory when it was seen over the limit, in bytes.
        observed: u64,
        /// The worker that was killed.
        pid: u32,
    },
    /// The task was cancelled ([`AsyncResult::cancel`](crate::AsyncResult::cancel), or an
    /// [`IMap`](crate::IMap) dropped before its end).
    #[error("the task was cancelled")]
    Cancelled,
    /// With the pool's `retries(n)`, the task's worker died on every attempt (each attempt
    /// ran on a fresh worker); `history` says why each attempt ended, oldest first, and
    /// `last` is the last attempt's error.
    #[error("the task failed on all {attempts} attempts: {}", history.join("; "))]
    AttemptsExhausted {
        /// How many times the task was started.
        attempts: u32,
        /// Why each attempt ended, oldest first.
        history: Vec<String>,
        /// The last attempt's error.
        #[source]
        last: Box<Error>,
    },
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name,
            reason: reason.into(),
        }
    }

    /// Builds [`Error::TaskPanicked`] from a payload caught by `std::panic::catch_unwind`.
    pub fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        Error::TaskPanicked {
            message: panic_message(&*payload),
        }
    }
}

/// The message of a panic payload caught by `std::panic::catch_unwind` (a `&str` or a
/// `String`, as `panic!` makes them), or a placeholder for any other payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_died_names_the_signal() {
        let e = Error::WorkerDied {
            pid: 42,
            cause: ExitCause::Signal(9),
        };
        assert_eq!(
            e.to_string(),
            "worker process 42 died: killed by signal 9 (SIGKILL)"
        );
        assert_eq!(ExitCause::Signal(9).exitcode(), -9);
        assert_eq!(ExitCause::Code(3).exitcode(), 3);
    }

    #[test]
    fn invalid_argument_names_the_argument() {
        let e = Error::invalid("chunksize", "must be at least 1");
        assert_eq!(
            e.to_string(),
            "invalid argument `chunksize`: must be at least 1"
        );
    }

    #[test]
    fn named_conditions_say_what_happened_and_what_to_do() {
        let cause = Arc::new(Error::Io(std::io::Error::other("fork: EAGAIN")));
        let e = Error::NoWorkers { cause };
        assert!(e.to_string().contains("fork: EAGAIN"), "{e}");
        assert!(e.to_string().contains("create a new pool"), "{e}");
        assert!(Error::JoinBeforeClose.to_string().contains("close()"));
        assert!(Error::QueueClosed.to_string().contains("closed"));
        assert!(Error::PipeClosed.to_string().contains("other end"));
        assert!(Error::Empty.to_string().contains("get()"));
        assert!(Error::Full.to_string().contains("put()"));
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Error>();
    }

    #[test]
    fn panic_payloads_become_messages() {
        let e = Error::from_panic(Box::new("boom"));
        assert!(matches!(e, Error::TaskPanicked { ref message } if message == "boom"));
        let e = Error::from_panic(Box::new(String::from("bang")));
        assert!(matches!(e, Error::TaskPanicked { ref message } if message == "bang"));
        let e = Error::from_panic(Box::new(7_u8));
        assert!(matches!(e, Error::TaskPanicked { .. }));
    }
}
