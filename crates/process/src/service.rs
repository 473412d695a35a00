//! [`ServiceThread`]: run a closure on one long-lived thread of this process and get its
//! result back.
//!
//! The fork backend forks its children, and the spawn backend starts its children, from such
//! a thread (`multiproc-fork`, `multiproc-spawn`). The reason is `PR_SET_PDEATHSIG`: Linux
//! sends a child its death signal when the *thread* that started it ends, not when the
//! process does. A pool created inside a short-lived thread (a `cargo test` thread, tokio's
//! `spawn_blocking`, a rayon task) would otherwise lose its workers when that thread ends. A
//! service thread is started on first use and lives as long as the process, so a child gets
//! its signal exactly when the parent process dies.
//!
//! The process's main thread (the one whose id is the pid) lives as long as the process too —
//! `main` returning ends it — so [`ServiceThread::run_lasting`] runs a job right there when
//! called from it: no two hand-overs between threads, and a process that only starts children
//! from `main` never starts the service thread (every thread of a process makes each of its
//! forks, and its children's exits, slower). The one program this would not suit is one whose
//! main thread ends alone (`pthread_exit`) while the others carry on, which Rust's `main`
//! never does.
//!
//! ## Per process, without a lock
//!
//! A forked child inherits the parent's memory but none of its threads: the service thread's
//! channel is there, its thread is not. So the thread's channel is kept in a `ProcessLocal`
//! record (`crate::process_local`): a forked child starts a thread of its own and leaves the
//! inherited record alone. There is no lock: a child forked while another thread of its
//! parent held one (starting the thread, or cloning its channel) would wait for that lock
//! forever, which hung spawn pools created inside fork-pool workers.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;

use multiproc_core::{Error, Result};
use nix::unistd::getpid;

use crate::process_local::ProcessLocal;

type Job = Box<dyn FnOnce() + Send>;

/// The service thread of one process, reached through its job channel.
struct Started {
    jobs: mpsc::Sender<Job>,
}

/// A long-lived thread of this process, started on first use, that runs closures for its
/// callers one at a time. Meant for a `static`.
///
/// A child started on it gets its `PR_SET_PDEATHSIG` when the process ends — Linux sends it
/// when the *thread* that started the child ends, which would otherwise be whatever
/// short-lived thread created the pool. The state is per process and lock-free: a forked
/// child, which inherits the record but not the thread, starts a thread of its own on first
/// use and never touches its parent's.
///
/// ```
/// use multiproc_process::ServiceThread;
///
/// static STARTER: ServiceThread = ServiceThread::new("my-starter");
///
/// let on_it = STARTER.run(|| std::thread::current().name().map(String::from))?;
/// assert_eq!(on_it.as_deref(), Some("my-starter"));
/// # Ok::<(), multiproc_core::Error>(())
/// ```
#[derive(Debug)]
pub struct ServiceThread {
    name: &'static str,
    /// `None`: the platform's default.
    stack_size: Option<usize>,
    /// This process's thread. A forked child inherits its parent's record, whose thread is
    /// not in it, and starts its own.
    current: ProcessLocal<Started>,
}

impl ServiceThread {
    /// A service thread named `name` (not started yet).
    pub const fn new(name: &'static str) -> ServiceThread {
        ServiceThread {
            name,
            stack_size: None,
            current: ProcessLocal::new(),
        }
    }

    /// A service thread named `name` with a stack of `bytes` (for jobs that run deep code on
    /// it, such as a forked child that runs on the forking thread's stack).
    pub const fn with_stack_size(name: &'static str, bytes: usize) -> ServiceThread {
        ServiceThread {
            name,
            stack_size: Some(bytes),
            current: ProcessLocal::new(),
        }
    }

    /// This process's thread, started if needed.
    fn started(&self) -> Result<&Started> {
        self.current.get_or_try_init(|| {
            let (jobs, incoming) = mpsc::channel::<Job>();
            let mut builder = thread::Builder::new().name(self.name.into());
            if let Some(bytes) = self.stack_size {
                builder = builder.stack_size(bytes);
            }
            builder
                .spawn(move || {
                    while let Ok(job) = incoming.recv() {
                        job();
                    }
                })
                .map_err(Error::Io)?;
            // If another thread of this process installs its thread first, this record is
            // dropped: that closes its channel, which ends its thread.
            Ok(Started { jobs })
        })
    }

    /// [`run`](Self::run), but on the calling thread itself when it is the process's main
    /// thread (the one whose id is the pid), which lives as long as the process too — `main`
    /// returning ends it: what the service thread is for (`PR_SET_PDEATHSIG`) holds there as
    /// well, without two hand-overs between threads, and without starting the service thread
    /// (each thread of a process makes its forks slower). Not for a program whose main thread
    /// ends alone (`pthread_exit`) while others carry on. A job that panics is dropped during
    /// the unwinding and the call fails with [`Error::Io`], as with `run`.
    pub fn run_lasting<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R> {
        if multiproc_sys::thread::gettid() != getpid().as_raw() {
            return self.run(job);
        }
        panic::catch_unwind(AssertUnwindSafe(job)).map_err(|_| {
            Error::Io(io::Error::other(format!(
                "a job for the {} thread panicked",
                self.name
            )))
        })
    }

    /// Runs `job` on this process's service thread (starting it if needed) and waits for its
    /// result.
    ///
    /// `job` is consumed before this returns, whatever happens: run (and dropped) on the
    /// service thread, or dropped on the calling thread if that thread cannot be started or
    /// reached. A job that panics is dropped during the unwinding, on the service thread,
    /// which carries on; the call then fails with [`Error::Io`], as it does when the thread
    /// cannot be started.
    pub fn run<R: Send + 'static>(&self, job: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        let name = self.name;
        let gone = || Error::Io(io::Error::other(format!("the {name} thread is gone")));
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = reply.send(panic::catch_unwind(AssertUnwindSafe(job)));
        });
        if let Err(mpsc::SendError(job)) = self.started()?.jobs.send(job) {
            drop(job);
            return Err(gone());
        }
        match answer.recv() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(Error::Io(io::Error::other(format!(
                "a job on the {name} thread panicked"
            )))),
            Err(_) => Err(gone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    static LASTING: ServiceThread = ServiceThread::new("multiproc-test-lasting");

    /// On the main thread (here: the only thread of a forked child), `run_lasting` runs the
    /// job right there and never starts the service thread; elsewhere it hands it over.
    #[test]
    fn run_lasting_runs_on_the_main_thread_itself_and_hands_over_elsewhere() {
        let me = multiproc_sys::thread::gettid();
        let there = LASTING.run_lasting(multiproc_sys::thread::gettid).unwrap();
        assert_ne!(there, me, "a test thread is not the main thread");
        assert!(matches!(
            LASTING.run_lasting(|| panic!("boom")),
            Err::<(), _>(Error::Io(_))
        ));
        static FRESH: ServiceThread = ServiceThread::new("multiproc-test-fresh");
        // SAFETY: the child only reads its ids and its thread list, compares them and leaves
        // with `_exit`; it takes no lock that another thread of this process may hold (the
        // directory read allocates: glibc's fork handlers keep the allocator usable).
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let main = multiproc_sys::thread::gettid();
                let ran_on = FRESH.run_lasting(multiproc_sys::thread::gettid);
                // The service thread would be this process's second thread.
                let started = std::fs::read_dir("/proc/self/task").map_or(true, |d| d.count() != 1);
                let code = match ran_on {
                    Ok(tid) if tid == main && !started => 0,
                    Ok(tid) if tid == main => 2,
                    _ => 1,
                };
                multiproc_sys::exit::exit_now(code)
            }
            ForkResult::Parent { child } => {
                let status = waitpid(child, None).unwrap();
                assert_eq!(
                    status,
                    WaitStatus::Exited(child, 0),
                    "1: not run on the main thread, 2: the service thread was started"
                );
            }
        }
    }

    static ONE: ServiceThread = ServiceThread::new("multiproc-test-service");

    #[test]
    fn jobs_run_on_one_thread_that_outlives_its_callers_and_survives_a_panic() {
        let first = std::thread::spawn(|| ONE.run(|| thread::current().id()).unwrap())
            .join()
            .unwrap();
        let second = ONE.run(|| thread::current().id()).unwrap();
        assert_eq!(first, second, "one thread, whoever asks");
        assert_ne!(second, thread::current().id());
        assert!(matches!(
            ONE.run(|| panic!("boom")),
            Err::<(), _>(Error::Io(_))
        ));
        assert_eq!(ONE.run(|| thread::current().id()).unwrap(), second);
    }
}
