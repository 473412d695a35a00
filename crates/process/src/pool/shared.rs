//! What a pool's handle and its supervisor threads share: the queue and its condition
//! variable, the table of live workers that `terminate` signals ([`Listed`]), the counters of
//! [`IpcStats`](super::IpcStats), and how the pool stops (closed, broken, initializer failed).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex};

use multiproc_core::Error;
use multiproc_sys::pidfd::PidFd;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::queue::{Idle, Job, Queue};
use super::{lock, Initializer};
use crate::payload::Spare;

#[derive(Default)]
pub(super) struct Counters {
    pub(super) sent: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) fds: AtomicU64,
    pub(super) shared: AtomicU64,
}

/// A live worker in the table that `terminate` signals: its pid, and a pidfd opened while it
/// was known to be our unreaped child. A slot is emptied *before* its worker is reaped, and
/// signals go through the pidfd, so `terminate` never signals a pid that was reaped (and
/// perhaps reused by another process).
pub(super) struct Listed {
    pub(super) pid: Pid,
    pub(super) pidfd: Option<PidFd>,
}

impl Listed {
    /// Lists `pid`, an unreaped child of ours.
    pub(super) fn new(pid: Pid) -> Listed {
        Listed {
            pid,
            pidfd: PidFd::open(pid).ok(),
        }
    }

    /// Sends SIGKILL to this worker and to nothing else.
    pub(super) fn kill(&self) {
        match &self.pidfd {
            Some(fd) => {
                let _ = fd.send_signal(Signal::SIGKILL);
            }
            // No pidfd (a kernel before 5.3, or out of descriptors): the pid is still ours,
            // because slots are emptied before their worker is reaped and this runs under the
            // table's lock.
            None => {
                let _ = kill(self.pid, Signal::SIGKILL);
            }
        }
    }
}

pub(super) struct Shared<L> {
    pub(super) launcher: L,
    pub(super) spare: Mutex<Spare>,
    pub(super) init: Option<Initializer>,
    pub(super) init_error: Mutex<Option<String>>,
    /// Why the pool broke: it lost every worker and could not start one.
    pub(super) broken: Mutex<Option<Arc<Error>>>,
    pub(super) counters: Counters,
    pub(super) queue: Mutex<Queue>,
    pub(super) work: Condvar,
    pub(super) idle: Arc<Idle>,
    pub(super) pids: Mutex<Vec<Option<Listed>>>,
    pub(super) workers: usize,
    /// Supervisors still serving a worker (or replacing one); the last to give up breaks the
    /// pool.
    pub(super) supervising: AtomicUsize,
}

impl<L> Shared<L> {
    /// The error for work refused by a closed pool.
    pub(super) fn refusal(&self) -> Error {
        if let Some(message) = &*lock(&self.init_error) {
            return Error::InitializerFailed(message.clone());
        }
        match &*lock(&self.broken) {
            Some(cause) => Error::NoWorkers {
                cause: cause.clone(),
            },
            None => Error::PoolClosed("the pool no longer accepts work"),
        }
    }

    /// Empties worker slot `slot`; a worker must be unlisted before it is reaped.
    pub(super) fn unlist(&self, slot: usize) {
        lock(&self.pids)[slot] = None;
    }

    /// No worker is left and none can be started: close the pool with
    /// [`Error::NoWorkers`] (carrying `cause`, why the last launch failed) for every pending
    /// and later call.
    pub(super) fn break_pool(&self, cause: Error) {
        let cause = lock(&self.broken).get_or_insert(Arc::new(cause)).clone();
        self.stop_failing(VecDeque::new(), || Error::NoWorkers {
            cause: cause.clone(),
        });
    }

    /// The initializer failed in a worker: stop the pool and fail everything pending.
    pub(super) fn initializer_failed(&self, message: String, sent: VecDeque<Job>) {
        lock(&self.init_error).get_or_insert(message.clone());
        self.stop_failing(sent, || Error::InitializerFailed(message.clone()));
    }

    /// Closes and stops the pool, wakes every supervisor, and fails `sent` and every queued
    /// job with `error()`.
    fn stop_failing(&self, sent: VecDeque<Job>, error: impl Fn() -> Error) {
        let queued = {
            let mut q = lock(&self.queue);
            q.closed = true;
            q.stopping = true;
            std::mem::take(&mut q.jobs)
        };
        self.work.notify_all();
        for job in sent.into_iter().chain(queued) {
            (job.on_done)(Err(error()));
        }
    }
}
