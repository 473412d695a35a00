//! The failure suite for executors whose workers are processes (fork, spawn): a worker that
//! dies fails only its task, at once, is replaced, and leaves no zombie; a pool that
//! cannot replace any worker breaks with an error instead of hanging; a pool reached from a
//! forked child refuses at once; a pool inside a worker works; a large `Packed` argument is
//! read where it arrived. Each function takes a
//! constructor `fn(workers) -> Result<E>` and panics on failure;
//! [`process_executor_conformance!`](crate::process_executor_conformance) turns the list into
//! `#[test]`s.
//!
//! Tasks that must run at the same time, or wait while the test does something, meet the test
//! at a [`Gate`]: a pair of sockets passed to them as arguments (so it reaches forked and
//! spawned workers alike), never a sleep.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use multiproc_sys::exit::exit_now;
use multiproc_sys::procfs;
use nix::sys::signal::{kill, raise, signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult};
use serde::{Deserialize, Serialize};

use crate::testing::executor::MakePool;
use crate::{cpu_count, Error, Executor, ExitCause, Packed, PoolOptions, Task};

mod failures;
mod options;
mod ownership;
mod packed;
mod retention;

pub use failures::*;
pub use options::*;
pub use ownership::*;
pub use packed::*;
pub use retention::*;

/// Every wait of this suite is bounded by this; passing it is a failure (a hang), not a
/// tuning matter.
pub const LIMIT: Duration = Duration::from_secs(30);

/// A task's end of a gate: the task announces that it started (sending its worker's pid)
/// and waits until the test lets it through. Made by [`GateControl::gate`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Gate {
    #[serde(with = "crate::handoff::fd")]
    started: OwnedFd,
    #[serde(with = "crate::handoff::fd")]
    go: OwnedFd,
}

impl Gate {
    /// Announces this worker's pid to the test, then blocks until the test opens the gate
    /// for one task.
    pub fn pass(self) {
        let mut started = UnixStream::from(self.started);
        started
            .write_all(&std::process::id().to_le_bytes())
            .expect("announcing a started task");
        let mut go = UnixStream::from(self.go);
        let mut byte = [0u8; 1];
        go.read_exact(&mut byte).expect("waiting at the gate");
    }
}

/// The test's end of a gate.
#[derive(Debug)]
pub struct GateControl {
    started: UnixStream,
    started_theirs: UnixStream,
    go: UnixStream,
    go_theirs: UnixStream,
}

impl Default for GateControl {
    fn default() -> Self {
        Self::new()
    }
}

impl GateControl {
    /// A closed gate.
    pub fn new() -> GateControl {
        let (started, started_theirs) = UnixStream::pair().expect("a socket pair");
        let (go, go_theirs) = UnixStream::pair().expect("a socket pair");
        started
            .set_read_timeout(Some(LIMIT))
            .expect("a read timeout");
        GateControl {
            started,
            started_theirs,
            go,
            go_theirs,
        }
    }

    /// A task's end (one per task).
    pub fn gate(&self) -> Gate {
        let dup = |s: &UnixStream| OwnedFd::from(s.try_clone().expect("dup"));
        Gate {
            started: dup(&self.started_theirs),
            go: dup(&self.go_theirs),
        }
    }

    /// Waits until `n` tasks have started and returns their workers' pids; panics after
    /// [`LIMIT`].
    pub fn wait_started(&self, n: usize) -> Vec<u32> {
        (0..n)
            .map(|i| {
                let mut pid = [0u8; 4];
                (&self.started).read_exact(&mut pid).unwrap_or_else(|e| {
                    panic!("only {i} of {n} tasks started at the gate within {LIMIT:?}: {e}")
                });
                u32::from_le_bytes(pid)
            })
            .collect()
    }

    /// Lets `n` more tasks through.
    pub fn open(&self, n: usize) {
        (&self.go)
            .write_all(&vec![b'g'; n])
            .expect("opening the gate");
    }
}

/// Passes `gate`, then returns its worker's pid.
pub fn pid_at_gate(gate: Gate) -> u32 {
    gate.pass();
    std::process::id()
}

/// Runs `child` in a forked child of this process and returns its exit code; a child that
/// has not ended within [`LIMIT`] is killed and reported as `Err`. `child` must not panic
/// (its message would need stderr, which another thread may have held at the fork): it
/// returns a code.
fn in_forked_child(child: impl FnOnce() -> i32) -> Result<i32, String> {
    // SAFETY: the child of a multithreaded process is a copy in which only this thread runs;
    // it runs `child` (which, in this suite, only calls methods of a pool copy, allocates and
    // returns) and leaves with `_exit`, never returning into code that ran before the fork.
    // A lock another thread held at the fork could hang it: then the parent kills it below.
    let pid = match unsafe { fork() } {
        Err(e) => return Err(format!("fork failed: {e}")),
        Ok(ForkResult::Child) => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
            exit_now(code)
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    let deadline = Instant::now() + LIMIT;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(status) => return Err(format!("the child ended with {status:?}")),
            Err(e) => return Err(format!("waitpid: {e}")),
        }
        if Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(format!("the child hung (killed after {LIMIT:?})"));
        }
        // A watchdog's poll, not a synchronisation: the child's end is what we wait for.
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs `f` on a thread of its own and fails if it has not returned within [`LIMIT`] (the
/// thread is then left behind, blocked, and the test fails instead of hanging).
fn within_limit<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|e| panic!("{what} did not return within {LIMIT:?}: {e}"))
}

fn pool<E: Executor>(make: MakePool<E>, workers: usize) -> E {
    make(workers).unwrap_or_else(|e| panic!("creating a pool of {workers} failed: {e}"))
}

/// Ends the worker running it the way `how` says — 1: SIGKILL, 2: abort, 3: segfault,
/// 4: `exit(7)` — and returns any other `how` unchanged.
pub fn die(how: u32) -> u32 {
    match how {
        1 => {
            let _ = raise(Signal::SIGKILL);
        }
        2 => std::process::abort(),
        3 => {
            // Rust's own SIGSEGV handler (stack-overflow detection) re-raises only for real
            // faults; put the default action back so a raised SIGSEGV kills the process.
            // SAFETY: SIG_DFL is not a handler of ours, so no code runs in signal context.
            let _ = unsafe { signal(Signal::SIGSEGV, SigHandler::SigDfl) };
            let _ = raise(Signal::SIGSEGV);
        }
        // The C library's `exit` (atexit handlers, stdio flushed), not `std::process::exit`:
        // std's exit also runs its runtime cleanup, which takes std-internal locks (the
        // stack-overflow handler's thread table) that another thread of a multithreaded
        // parent may have held at the fork — in a libtest binary that is likely enough to
        // hang a worker now and then. What this checks is the pool's handling of a worker
        // that exits; the std hazard is documented on the fork backend.
        // SAFETY: a worker runs this on its only task thread, and no other thread of it
        // exits; the process's atexit handlers (multiproc's do nothing in a forked child) may
        // run.
        4 => unsafe { multiproc_sys::exit::exit_with_handlers(7) },
        _ => return how,
    }
    std::thread::sleep(Duration::from_secs(5));
    how
}

/// Sleeps `ms` milliseconds and returns `ms`.
pub fn sleep_then(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// The process id of the worker running it.
pub fn worker_pid(_: u8) -> u32 {
    std::process::id()
}

/// Whether `pid` is a zombie child of this process (ended, not reaped).
fn is_zombie_child(pid: u32) -> bool {
    // Gone: reaped.
    procfs::stat(pid).is_ok_and(|s| s.state == b'Z' && s.ppid == std::process::id())
}

/// Whether `pid` is still a live child of this process.
fn is_child(pid: u32) -> bool {
    procfs::stat(pid).is_ok_and(|s| s.ppid == std::process::id())
}

/// The pids of all a pool's workers, found by one task per worker that waits at a gate until
/// every worker holds one — a worker busy with one of them cannot take another, so each runs
/// in a different worker. Panics after [`LIMIT`] if fewer workers took them.
fn worker_pids<E: Executor>(p: &E) -> BTreeSet<u32> {
    let n = p.processes();
    let gate = GateControl::new();
    let gates: Vec<Gate> = (0..n).map(|_| gate.gate()).collect();
    let mut pending = p
        .map_async_chunked(pid_at_gate, gates, 1)
        .expect("pid tasks");
    let started = gate.wait_started(n);
    gate.open(n);
    let pids: BTreeSet<u32> = pending
        .get_timeout(LIMIT)
        .expect("pid tasks")
        .into_iter()
        .collect();
    assert_eq!(
        pids,
        started.into_iter().collect(),
        "tasks reported other pids"
    );
    pids
}

/// Runs the whole process-pool failure suite as `#[test]`s in a module named
/// `process_executor_conformance`:
///
/// ```ignore
/// multiproc_core::process_executor_conformance!(multiproc_fork::ForkPool::new);
/// ```
///
/// With `pids = f` (`fn(&Pool) -> Vec<Option<u32>>`, the pool's `pids()`) and
/// `launch_limit = g` (a constructor whose pool can launch only as many workers as it is
/// created with: [`a_pool_that_cannot_replace_its_workers_breaks`]) it also runs the checks
/// that need them, in a module named `process_pool_conformance`; adding `options = h` (a
/// [`MakeWith`]: a pool from a builder's [`PoolOptions`]) runs the options' checks
/// (`task_timeout`, `retries`, `max_tasks_per_child`, `memory_limit`,
/// `retain_freed_memory`) in `process_pool_options_conformance`.
#[macro_export]
macro_rules! process_executor_conformance {
    ($make:expr) => {
        mod process_executor_conformance {
            #[allow(unused_imports)]
            use super::*;
            use $crate::testing::process as suite;

            #[test]
            fn a_dying_worker_fails_only_its_task() {
                suite::a_dying_worker_fails_only_its_task($make)
            }
            #[test]
            fn the_rest_of_a_map_completes() {
                suite::the_rest_of_a_map_completes($make)
            }
            #[test]
            fn results_finished_before_a_death_are_kept() {
                suite::results_finished_before_a_death_are_kept($make)
            }
            #[test]
            fn a_death_is_noticed_at_once() {
                suite::a_death_is_noticed_at_once($make)
            }
            #[test]
            fn no_zombies_after_drop_or_terminate() {
                suite::no_zombies_after_drop_or_terminate($make)
            }
            #[test]
            fn large_arguments_and_results_do_not_deadlock() {
                suite::large_arguments_and_results_do_not_deadlock($make)
            }
            #[test]
            fn large_arguments_arrive_intact() {
                suite::large_arguments_arrive_intact($make)
            }
            #[test]
            fn large_arguments_behind_a_death_are_resent_whole() {
                suite::large_arguments_behind_a_death_are_resent_whole($make)
            }
            #[test]
            fn work_is_spread_over_all_workers() {
                suite::work_is_spread_over_all_workers($make)
            }
            #[test]
            fn results_can_be_awaited() {
                suite::results_can_be_awaited($make)
            }
            #[test]
            fn map_results_keeps_every_finished_result() {
                suite::map_results_keeps_every_finished_result($make)
            }
            #[test]
            fn cancel_drops_a_queued_task_and_kills_a_running_one() {
                suite::cancel_drops_a_queued_task_and_kills_a_running_one($make)
            }
            #[test]
            fn dropping_a_finished_imap_kills_no_worker() {
                suite::dropping_a_finished_imap_kills_no_worker($make)
            }
            #[test]
            fn a_pool_used_from_a_forked_child_refuses_at_once() {
                suite::a_pool_used_from_a_forked_child_refuses_at_once($make)
            }
            #[test]
            fn a_large_packed_argument_is_read_where_it_arrived() {
                suite::a_large_packed_argument_is_read_where_it_arrived($make)
            }
            #[test]
            fn a_kept_packed_argument_keeps_its_values() {
                suite::a_kept_packed_argument_keeps_its_values($make)
            }
            #[test]
            fn a_child_forked_by_a_task_reads_its_packed_argument() {
                suite::a_child_forked_by_a_task_reads_its_packed_argument($make)
            }
            #[test]
            fn a_large_packed_result_is_read_where_it_arrived() {
                suite::a_large_packed_result_is_read_where_it_arrived($make)
            }
            #[test]
            fn a_kept_packed_result_keeps_its_values() {
                suite::a_kept_packed_result_keeps_its_values($make)
            }
            #[test]
            fn a_child_forked_by_the_caller_reads_a_packed_result() {
                suite::a_child_forked_by_the_caller_reads_a_packed_result($make)
            }
            #[test]
            fn kept_results_hold_a_bounded_number_of_worker_buffers() {
                suite::kept_results_hold_a_bounded_number_of_worker_buffers($make)
            }
            #[test]
            fn results_lent_across_a_fork_do_not_pile_up_in_the_worker() {
                suite::results_lent_across_a_fork_do_not_pile_up_in_the_worker($make)
            }

            /// Creates a pool of this backend inside a worker and maps over it.
            fn nested_pool(n: u64) -> ::std::result::Result<Vec<u64>, String> {
                let inner = ($make)(2).map_err(|e| e.to_string())?;
                $crate::Executor::map(&inner, $crate::testing::executor::square, 0..n)
                    .map_err(|e| e.to_string())
            }
            #[test]
            fn a_pool_inside_a_worker_works() {
                suite::a_pool_inside_a_worker_works($make, nested_pool)
            }
        }
    };
    ($make:expr, pids = $pids:expr, launch_limit = $limited:expr, options = $with:expr $(,)?) => {
        $crate::process_executor_conformance!($make, pids = $pids, launch_limit = $limited);

        mod process_pool_options_conformance {
            #[allow(unused_imports)]
            use super::*;
            use $crate::testing::process as suite;

            #[test]
            fn task_timeout_kills_only_that_task() {
                suite::task_timeout_kills_only_that_task($with)
            }
            #[test]
            fn a_timeout_then_a_retry_succeeds() {
                suite::a_timeout_then_a_retry_succeeds($with)
            }
            #[test]
            fn memory_limit_fails_only_the_task_that_crosses_it() {
                suite::memory_limit_fails_only_the_task_that_crosses_it($with)
            }
            #[test]
            fn a_worker_over_memory_limit_after_a_task_is_replaced() {
                suite::a_worker_over_memory_limit_after_a_task_is_replaced($with)
            }
            #[test]
            fn results_the_caller_keeps_do_not_count_against_memory_limit() {
                suite::results_the_caller_keeps_do_not_count_against_memory_limit($with)
            }
            #[test]
            fn max_tasks_per_child_replaces_workers() {
                suite::max_tasks_per_child_replaces_workers($with)
            }
            #[test]
            fn a_worker_keeps_freed_memory_for_its_next_task() {
                suite::a_worker_keeps_freed_memory_for_its_next_task($with)
            }
            #[test]
            fn retain_freed_memory_zero_gives_freed_memory_back() {
                suite::retain_freed_memory_zero_gives_freed_memory_back($with)
            }
            #[test]
            fn retain_freed_memory_keeps_at_most_its_bytes() {
                suite::retain_freed_memory_keeps_at_most_its_bytes($with)
            }
        }
    };
    ($make:expr, pids = $pids:expr, launch_limit = $limited:expr $(,)?) => {
        $crate::process_executor_conformance!($make);

        mod process_pool_conformance {
            #[allow(unused_imports)]
            use super::*;
            use $crate::testing::process as suite;

            #[test]
            fn pids_name_the_live_workers() {
                suite::pids_name_the_live_workers($make, $pids)
            }
            #[test]
            fn a_pool_that_cannot_replace_its_workers_breaks() {
                suite::a_pool_that_cannot_replace_its_workers_breaks($limited)
            }
        }
    };
}
