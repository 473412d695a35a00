//! Conformance suites that every backend runs (feature `testing`).
//!
//! - [`executor`]: what any [`Executor`](crate::Executor) must do — one line per backend with
//!   [`executor_conformance!`](crate::executor_conformance).
//! - [`process`]: what an executor whose workers are processes must do when one dies —
//!   [`process_executor_conformance!`](crate::process_executor_conformance).
//! - [`sync`]: what any [`SyncFamily`](crate::SyncFamily) must do, run in a [`Harness`] that
//!   says how to start a concurrent worker (a thread, a forked process) and where to put
//!   memory that both sides see — [`sync_conformance!`](crate::sync_conformance).
//!
//! Each check panics with a message on failure, so it can be called from any `#[test]`.

pub mod executor;
pub mod process;
pub mod sync;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::buffer::{HeapBuffer, SharedBuffer};

/// Where the sync suite runs: how to start a worker that runs concurrently with the test,
/// and how to allocate memory that the test and its workers all see.
pub trait Harness {
    /// The memory that workers share with the test.
    type Buffer: SharedBuffer + 'static;
    /// A started worker.
    type Worker: Worker;
    /// A zeroed buffer of `len` bytes visible to workers started afterwards.
    fn buffer(&self, len: usize) -> Self::Buffer;
    /// Starts `f` concurrently (in a thread, a forked process, ...).
    fn spawn<F: FnOnce() + Send + 'static>(&self, f: F) -> Self::Worker;
}

/// A worker started by a [`Harness`].
pub trait Worker {
    /// Waits for the worker; `Err` with a description if it panicked or died.
    fn join(self) -> Result<(), String>;
}

/// The harness whose workers are threads of this process.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadHarness;

/// A thread started by [`ThreadHarness`].
#[derive(Debug)]
pub struct ThreadWorker(JoinHandle<()>);

impl Harness for ThreadHarness {
    type Buffer = HeapBuffer;
    type Worker = ThreadWorker;

    fn buffer(&self, len: usize) -> HeapBuffer {
        HeapBuffer::zeroed(len).expect("a small test buffer")
    }

    fn spawn<F: FnOnce() + Send + 'static>(&self, f: F) -> ThreadWorker {
        ThreadWorker(std::thread::spawn(f))
    }
}

/// How long [`ThreadWorker::join`] waits for its thread: a "never hangs" bound, far above
/// what any check needs, so that a worker stuck on a lost wake-up fails its test instead of
/// hanging the run.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

impl Worker for ThreadWorker {
    /// Waits for the thread, at most [`JOIN_TIMEOUT`]; a thread still running then is left
    /// behind (threads cannot be killed) and reported as a failure.
    fn join(self) -> Result<(), String> {
        let start = Instant::now();
        while !self.0.is_finished() {
            if start.elapsed() > JOIN_TIMEOUT {
                return Err(format!(
                    "worker thread still running after {JOIN_TIMEOUT:?} (a lost wake-up?)"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.0
            .join()
            .map_err(|p| crate::Error::from_panic(p).to_string())
    }
}

/// The kernel's id of the calling thread (for a single-threaded process, its pid): what
/// [`asleep`] looks up, from this process or another.
pub fn thread_id() -> u64 {
    multiproc_sys::thread::gettid() as u64
}

/// Whether thread `tid` (of this process or any other) is asleep in the kernel right now
/// (state `S` in `/proc/<tid>/stat`): the handshake that tells a check that a worker which
/// published its [`thread_id`] just before a blocking call is blocked in it, so that what
/// the check does next reaches a waiter that really waits. `false` once the thread is gone.
///
/// The suites assume that every blocking call of a primitive ends up sleeping in the kernel
/// (a futex wait), as all of multiproc's do; one that only spun would never be seen asleep.
pub fn asleep(tid: u64) -> bool {
    u32::try_from(tid)
        .ok()
        .and_then(|tid| multiproc_sys::procfs::stat(tid).ok())
        .is_some_and(|stat| stat.state == b'S')
}

/// Joins every worker, panicking with the first failure.
pub fn join_all<W: Worker>(workers: impl IntoIterator<Item = W>) {
    let failures: Vec<String> = workers.into_iter().filter_map(|w| w.join().err()).collect();
    assert!(failures.is_empty(), "worker(s) failed: {failures:?}");
}

/// Runs `cmd` to the end and returns its output (stdout and stderr captured), or kills it
/// (`SIGKILL`) and returns an error if it is still running after `limit`: how a test runs a
/// program that may hang without hanging itself.
pub fn run_with_watchdog(
    mut cmd: std::process::Command,
    limit: Duration,
) -> Result<std::process::Output, String> {
    use std::process::Stdio;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.map_err(|e| e.to_string()),
        Err(_) => {
            // `pid` is our unreaped child, so still its number: the thread above owns it and
            // has not returned from waiting for it (it would have sent).
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            Err(format!("hung: still running after {limit:?} (killed)"))
        }
    }
}
