//! What a pool's handle and its supervisor threads share: the queue and its condition
//! variable, the table of live workers that `terminate` signals ([`Listed`]), the counters of
//! [`IpcStats`](super::IpcStats), and how the pool stops (closed, broken, initializer failed).

use std::collections::VecDeque;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use multiproc_core::{Error, PoolOptions};
use multiproc_sys::pidfd::PidFd;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::queue::{Idle, Job, Queue};
use super::{lock, Initializer, Worker};
use crate::payload::Spare;

#[derive(Default)]
pub(super) struct Counters {
    pub(super) sent: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) fds: AtomicU64,
    pub(super) shared: AtomicU64,
    pub(super) received_shared: AtomicU64,
}

/// A live worker in the table that `terminate` signals: its pid, and a pidfd opened while it
/// was known to be our unreaped child. A slot is emptied *before* its worker is reaped, and
/// signals go through the pidfd, so `terminate` never signals a pid that was reaped (and
/// perhaps reused by another process). Whoever empties the slot reaps the worker, with that
/// pidfd: its supervisor, or `join` ([`Shared::shut_idle_workers`]), which also holds a second
/// descriptor of the worker's socket to end its stream.
pub(super) struct Listed {
    pub(super) pid: Pid,
    pub(super) pidfd: Option<PidFd>,
    /// The parent's end of the worker's socket (another descriptor of its supervisor's), for
    /// `join` to shut; `None` if it could not be duplicated (the supervisor then stops it).
    stream: Option<UnixStream>,
}

impl Listed {
    /// Lists `worker`, an unreaped child of ours.
    pub(super) fn new(worker: &Worker) -> Listed {
        Listed {
            pid: worker.pid,
            pidfd: PidFd::open(worker.pid).ok(),
            stream: worker.stream.try_clone().ok(),
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
    /// Supervisors on their way to the queue, or watching it off its lock before they sleep
    /// (see [`Shared::announce`]): a submission finding one skips its wake-up.
    pub(super) looking: AtomicUsize,
    /// Bumped by every submission once its jobs are queued (under the queue lock): what an
    /// idle supervisor's brief spin watches, off the lock (see the supervisor's queue visit).
    pub(super) submissions: AtomicUsize,
    /// Times a supervisor woke up in `work` to find no job and the pool not stopping.
    #[cfg(test)]
    pub(super) idle_wakeups: AtomicUsize,
    /// Frames supervisors read from their workers' sockets (replies and journal announcements,
    /// not journal records).
    #[cfg(test)]
    pub(super) socket_frames: AtomicUsize,
    pub(super) idle: Arc<Idle>,
    pub(super) pids: Mutex<Vec<Option<Listed>>>,
    pub(super) workers: usize,
    /// Supervisors still serving a worker (or replacing one); the last to give up breaks the
    /// pool.
    pub(super) supervising: AtomicUsize,
    /// Per slot, the submission (its [`Job::submission`]) of the task its worker is running,
    /// 0 when none: what [`kill_running`](Self::kill_running) looks for.
    pub(super) running: Box<[AtomicUsize]>,
    /// Per slot, the submission that [`kill_running`](Self::kill_running) killed the worker
    /// for (0: none): a worker that had moved on to another task by then fails nothing, its
    /// task goes back to the queue.
    pub(super) killed_for: Box<[AtomicUsize]>,
    /// With `task_timeout` (and no `memory_limit`, whose supervisors watch their workers
    /// themselves): per slot, the task its worker runs, for the [`watchdog`] — the low 32
    /// bits of its wire id and the millisecond (since `epoch`, plus one) it started, packed
    /// in one word written once per task; 0 when idle.
    pub(super) heads: Box<[AtomicU64]>,
    /// Per slot, the packed head (as in `heads`) whose worker the watchdog killed for its
    /// timeout; 0 if none.
    pub(super) timed_out: Box<[AtomicU64]>,
    pub(super) epoch: Instant,
    pub(super) options: PoolOptions,
}

/// Packs a head for `Shared::heads`: the wire id's low 32 bits, and the start millisecond.
pub(super) fn pack_head(wire_id: u64, started_ms: u32) -> u64 {
    (wire_id << 32) | u64::from(started_ms)
}

/// The wire id's low 32 bits of a packed head.
pub(super) fn head_wire(head: u64) -> u32 {
    (head >> 32) as u32
}

/// Kills the workers whose task has run past `task_timeout`: the pool's one timer, so that a
/// supervisor blocks in its read as without the option, and a task costs one clock read and
/// one store. Wakes every `limit / 10` (at most 10 ms), so the error comes at most that late;
/// ends within one wake-up of the pool's stop.
pub(super) fn watchdog<L: Send + Sync>(shared: &Weak<Shared<L>>) {
    let Some(limit) = shared.upgrade().and_then(|s| s.options.task_timeout) else {
        return;
    };
    let tick = (limit / 10).clamp(Duration::from_micros(200), Duration::from_millis(10));
    let limit_ms = u32::try_from(limit.as_millis().max(1)).unwrap_or(u32::MAX);
    loop {
        std::thread::sleep(tick);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if lock(&shared.queue).stopping {
            return; // nothing runs any more (`join` waited for it, `terminate` kills it)
        }
        let now = shared.now_ms();
        for (slot, head) in shared.heads.iter().enumerate() {
            let h = head.load(Ordering::Acquire);
            let started = h as u32;
            if started == 0 || now.wrapping_sub(started) < limit_ms {
                continue;
            }
            let pids = lock(&shared.pids);
            // Still the same task (its supervisor changes the head before it reads on).
            if head.load(Ordering::Acquire) == h {
                if let Some(worker) = &pids[slot] {
                    shared.timed_out[slot].store(h, Ordering::Release);
                    worker.kill();
                }
            }
        }
    }
}

impl<L: Send + Sync> multiproc_core::Canceller for Shared<L> {
    fn cancel_submission(&self, id: usize) {
        self.cancel_queued_and_running(id);
    }
}

impl<L> Shared<L> {
    /// Whether this pool's `task_timeout` is kept by the [`watchdog`] (with `memory_limit`,
    /// each supervisor watches its worker itself, the deadline included).
    pub(super) fn watchdog_needed(&self) -> bool {
        self.options.task_timeout.is_some() && self.options.memory_limit.is_none()
    }

    /// Milliseconds since the pool started, plus one (0 means "no task"), wrapping.
    pub(super) fn now_ms(&self) -> u32 {
        (self.epoch.elapsed().as_millis() as u32)
            .wrapping_add(1)
            .max(1)
    }

    /// A supervisor about to deliver its idle worker's last reply announces that it will
    /// look at the queue next, before the delivery can wake the caller: a caller submitting
    /// its next task at once then lets this supervisor take it instead of waking a sleeping
    /// one that would find nothing (on two cores that wake-up competes with the worker). An
    /// idle supervisor announces itself again while it spins for a task off the queue lock,
    /// before it sleeps. Every announcement is followed by [`arrive`](Self::arrive) under the
    /// queue lock, and then by a look at the queue in the same hold of the lock.
    pub(super) fn announce(&self) {
        self.looking.fetch_add(1, Ordering::SeqCst);
    }

    /// An announced supervisor has the queue lock (`_queue`): it takes a job if there is one.
    /// Announcements are only ever withdrawn under that lock, here or by
    /// [`wakeups_needed`](Self::wakeups_needed), so the count never exceeds the supervisors
    /// still on their way.
    pub(super) fn arrive(&self, _queue: &MutexGuard<'_, Queue>) {
        self.withdraw_announcements(1);
    }

    /// How many sleeping supervisors `added` new jobs must wake, called with the queue lock
    /// (`_queue`) held after queueing them: each supervisor on its way to the queue will take
    /// one of them (it takes at least one job when its worker is idle), so each spares one
    /// wake-up.
    pub(super) fn wakeups_needed(&self, _queue: &MutexGuard<'_, Queue>, added: usize) -> usize {
        added - self.withdraw_announcements(added)
    }

    /// Withdraws up to `at_most` announcements in one step; how many there were to withdraw.
    /// Called only under the queue lock (see [`arrive`](Self::arrive)).
    fn withdraw_announcements(&self, at_most: usize) -> usize {
        self.looking
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n - n.min(at_most))
            })
            .map_or(0, |before| before.min(at_most))
    }

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

    /// Cancels submission `id`: drops its queued jobs (their results are already failed
    /// with `Cancelled` or unwanted) and kills the workers running one of its tasks (their
    /// supervisors replace them). The supervisors publish a task in `running` before they
    /// check its token, and this runs after the token is set, so a task is either dropped by
    /// its supervisor or found here.
    pub(super) fn cancel_queued_and_running(&self, id: usize) {
        let dropped: VecDeque<Job> = {
            let mut q = lock(&self.queue);
            if q.jobs.iter().all(|j| j.submission() != id) {
                VecDeque::new()
            } else {
                let (gone, keep) = std::mem::take(&mut q.jobs)
                    .into_iter()
                    .partition(|j| j.submission() == id);
                q.jobs = keep;
                gone
            }
        };
        for job in dropped {
            job.finish(Err(Error::Cancelled));
        }
        self.kill_running(id);
    }

    /// Kills every worker whose running task belongs to submission `id`.
    pub(super) fn kill_running(&self, id: usize) {
        let pids = lock(&self.pids);
        for (slot, running) in self.running.iter().enumerate() {
            if running.load(Ordering::SeqCst) == id {
                if let Some(worker) = &pids[slot] {
                    self.killed_for[slot].store(id, Ordering::SeqCst);
                    worker.kill();
                }
            }
        }
    }

    /// Kills the worker in slot `slot` (a task of its ran out of time, or was cancelled).
    pub(super) fn kill_slot(&self, slot: usize) {
        if let Some(worker) = &lock(&self.pids)[slot] {
            worker.kill();
        }
    }

    /// Lists `worker`, a replacement, in slot `slot`, after clearing what the slot's last
    /// session published (its running submission, a kill recorded for it, its head and
    /// deadline), so that a cancel meant for the old session cannot reach the new worker.
    /// Returns `false` if the pool was terminated: `terminate` may have signalled the listed
    /// workers before this one was listed, so the caller gives it no task.
    pub(super) fn list_replacement(&self, slot: usize, worker: &Worker) -> bool {
        self.running[slot].store(0, Ordering::SeqCst);
        self.killed_for[slot].store(0, Ordering::SeqCst);
        self.heads[slot].store(0, Ordering::Release);
        self.timed_out[slot].store(0, Ordering::Release);
        lock(&self.pids)[slot] = Some(Listed::new(worker));
        // After the listing: a `terminate` that sets the flag later kills this worker itself.
        !lock(&self.queue).terminated
    }

    /// Empties worker slot `slot`; a worker must be unlisted before it is reaped. Returns the
    /// worker it held: `None` means that `join` took it (or it was never listed), and reaps
    /// it — the caller must not.
    pub(super) fn unlist(&self, slot: usize) -> Option<Listed> {
        lock(&self.pids)[slot].take()
    }

    /// For `join`, once no job is left and the pool is stopping: takes every listed worker out
    /// of its slot and shuts its stream for writing. The worker reads the end of its stream
    /// and exits, as after a shutdown frame, without waiting for its supervisor to wake and
    /// send one; the caller reaps those returned. A worker whose socket could not be
    /// duplicated stays listed, for its supervisor to stop.
    pub(super) fn shut_idle_workers(&self) -> Vec<Listed> {
        let mut pids = lock(&self.pids);
        let mut taken = Vec::new();
        for slot in pids.iter_mut() {
            let shut = slot.as_ref().is_some_and(|w| {
                w.stream
                    .as_ref()
                    .is_some_and(|s| s.shutdown(Shutdown::Write).is_ok())
            });
            if shut {
                taken.extend(slot.take());
            }
        }
        taken
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
            job.finish(Err(error()));
        }
    }
}
