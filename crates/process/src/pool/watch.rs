//! A supervisor watching its worker while a task runs, with `memory_limit` (and the
//! deadline of `task_timeout` when both are set): poll the socket, sample the worker's
//! resident memory every [`MEMORY_SAMPLE`] — and why a supervisor kills its worker
//! ([`Killed`]).

use std::time::{Duration, Instant};

use crate::wire::readable_by;

/// Why a supervisor killed its worker, as it concerns the oldest unanswered task.
#[derive(Clone, Copy)]
pub(super) enum Killed {
    /// That task ran past the pool's `task_timeout`.
    TimedOut(Duration),
    /// The worker was over the pool's `memory_limit` while that task ran, or when it ended:
    /// `(limit, observed)`.
    Memory(u64, u64),
    /// Another task ran out of time, but answered just before the kill: this one is
    /// innocent and goes back to the queue.
    Innocent,
}

/// How often a supervisor samples its worker's memory while a task runs (`memory_limit`).
const MEMORY_SAMPLE: Duration = Duration::from_millis(10);

/// The resident memory of worker `pid`, in bytes (0 if it cannot be read: it is exiting):
/// the second field of `/proc/PID/statm` (pages), the cheapest place the kernel gives it
/// (read at the end of every task with `memory_limit`; `/proc/PID/status` costs several
/// times more).
pub(super) fn rss_of(pid: nix::unistd::Pid) -> u64 {
    multiproc_sys::procfs::resident_bytes(pid.as_raw().unsigned_abs()).unwrap_or(0)
}

/// Waits for the worker's reply while watching the task that runs since `since`: `Some` with
/// the reason if it must be killed (past `timeout`, or over `memory_limit`), `None` once
/// the stream is readable.
pub(super) fn watch(
    stream: &std::os::unix::net::UnixStream,
    pid: nix::unistd::Pid,
    since: Instant,
    timeout: Option<Duration>,
    memory_limit: Option<u64>,
) -> Option<Killed> {
    let deadline = timeout.map(|limit| since + limit);
    loop {
        let wake = match (deadline, memory_limit) {
            (Some(d), Some(_)) => d.min(Instant::now() + MEMORY_SAMPLE),
            (Some(d), None) => d,
            (None, _) => Instant::now() + MEMORY_SAMPLE,
        };
        if readable_by(stream, wake) {
            return None;
        }
        if let (Some(d), Some(limit)) = (deadline, timeout) {
            if Instant::now() >= d {
                return Some(Killed::TimedOut(limit));
            }
        }
        if let Some(limit) = memory_limit {
            let observed = rss_of(pid);
            if observed > limit {
                return Some(Killed::Memory(limit, observed));
            }
        }
    }
}
