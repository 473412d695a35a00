//! [`ProcessPool`]: the pool machinery shared by every process backend.
//!
//! A backend supplies a [`Launcher`] (how to start one worker connected by a Unix socket:
//! fork it, or execute the binary again); everything else is here, once:
//!
//! - **dispatch**: submitted chunks go into one shared queue, encoded with the codec; each
//!   worker has a supervisor thread that pulls from the queue, so the load balances itself.
//!   A supervisor keeps up to [`PIPELINE_DEPTH`] tasks in flight to its worker, but never
//!   more than its share of the queue (queued / workers), so the worker never waits on a
//!   round trip while there is work, and near the end of a batch no worker hoards the tail.
//!   It tops the pipeline up only once it has drained to half, many tasks in one write.
//! - **supervision**: the supervisor reads its worker's replies. If the stream breaks, the
//!   worker died: the supervisor reaps it, fails the one task it was running with
//!   [`Error::WorkerDied`] (its pid, and the signal or exit code), puts the tasks queued behind
//!   it back at the front of the queue, and launches a replacement. If none can be started and
//!   no worker is left, the pool *breaks*: it closes itself, and pending and later calls fail
//!   with [`Error::NoWorkers`] carrying the cause.
//! - **ownership**: a pool belongs to the process that created it; a forked copy refuses every
//!   call with [`Error::ForeignProcess`] and its `Drop` does nothing.
//! - **shutdown**: `close` refuses new work; `join` waits for the work, then ends each idle
//!   worker's stream (it exits as after a shutdown frame, without waiting for its supervisor to
//!   wake) and reaps it on the joining thread, with the pidfd its slot kept; `terminate` drops
//!   queued work and SIGKILLs the workers (through pidfds; a worker leaves the table before it
//!   is reaped, so no reused pid is hit). Every task's result is delivered or failed — a
//!   dropped job fails its chunk through the [`ChunkSink`] — so nothing waits forever, and
//!   every child is reaped, so no zombie is left.
//!
//! This file is the public API (the pool, its [`Initializer`] and [`IpcStats`]); the
//! machinery behind it is split by concept:
//!
//! | piece | module |
//! |---|---|
//! | how a backend starts a worker ([`Launcher`]) and what it hands over ([`Worker`]) | `pool/launcher.rs` |
//! | the job queue and the count of outstanding jobs | `pool/queue.rs` |
//! | what the handle and the supervisors share; the table of live workers | `pool/shared.rs` |
//! | a worker's supervisor: its replacement when it dies, the task it failed | `pool/supervisor.rs` |
//! | a supervisor's session with one worker: feeding it, delivering its replies | `pool/supervisor/session.rs` |
//! | the supervisors' threads, kept idle between pools for a second | `pool/crew.rs` |
//! | watching a running task's memory (and deadline) with `memory_limit` | `pool/watch.rs` |
//! | waiting for a worker to end, stopping one | `pool/reap.rs` |
//! | a backend's pool type as this pool under its own name | `forward.rs` |

use std::mem::ManuallyDrop;
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use multiproc_core::{
    check_workers, panic_message, Batch, ChunkSink, Error, Executor, Home, Payload, PoolOptions,
    Result, Task,
};
use nix::unistd::Pid;

use crate::codec::decode_items_fds;
use crate::payload::{encode_body, Body, Spare, POOL_SPARE_BYTES};
use crate::trampoline::offset_of;

mod crew;
mod launcher;
mod queue;
mod reap;
mod shared;
mod supervisor;
#[cfg(test)]
mod tests;
mod watch;

pub use launcher::{Launcher, Worker};
pub use reap::reap;

use crew::Finished;
use queue::{Destination, Idle, Job, Queue, Reply, Ticket};
use reap::{reap_with, stop_and_reap};
use shared::{Counters, Listed, Shared};
use supervisor::supervise;

/// The most tasks a supervisor keeps in flight to its worker.
pub const PIPELINE_DEPTH: usize = 64;

/// A supervisor tops its worker's pipeline up (to [`PIPELINE_DEPTH`]) only once this few
/// tasks or fewer are in flight: it then sends many tasks in one write and takes the queue's
/// lock once for them, instead of a write and a lock per answered task.
pub(crate) const PIPELINE_REFILL: usize = PIPELINE_DEPTH / 2;

// A worker announces its journalled replies twice per refill (see `crate::journal`).
const _: () = assert!(2 * crate::journal::ANNOUNCE_EVERY == PIPELINE_REFILL);

/// The most argument bytes a supervisor sends ahead of a worker that is still busy. Pipelined
/// tasks must fit in the socket's buffer: a worker blocked writing a large reply reads nothing,
/// and a supervisor blocked writing a large task would read nothing either — a deadlock. So a
/// task larger than this is only ever sent to an idle worker, alone.
pub const PIPELINE_BYTES: usize = 32 * 1024;

/// `submit` queues the chunks encoded so far once they hold this many bytes (a bulk
/// buffer's worth): a worker then starts on them while the caller encodes the rest.
const QUEUE_AFTER: usize = crate::bulk::BULK_MIN;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections here are queue operations that cannot panic half-way.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pool initializer (Python's `Pool(initializer=f, initargs=...)`), encoded once and sent
/// to every worker — each replacement included — before its first task.
#[derive(Debug)]
pub struct Initializer {
    call: u64,
    /// Encoded once; a large one is a bulk buffer that every worker maps, and nothing writes
    /// it again.
    payload: Body,
    fds: Vec<OwnedFd>,
}

impl Initializer {
    /// `f(arg)` runs once in each worker before any task; `arg` is copied once per worker.
    pub fn new<A: Payload>(f: Task<A, ()>, arg: &A) -> Result<Self> {
        let (mut payload, fds) = encode_body(std::slice::from_ref(arg), &Mutex::default())
            .map_err(|e| {
                Error::Serialization(format!("encoding the initializer's argument: {e}"))
            })?;
        if let Body::Bulk(b) = &mut payload {
            // Each worker reads it once: nothing to keep mapped.
            b.retire();
        }
        Ok(Initializer {
            call: offset_of(f)?,
            payload,
            fds,
        })
    }
}

/// What crossed a pool's sockets so far (frame headers not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpcStats {
    /// Encoded argument bytes sent to workers (tasks and initializers).
    pub bytes_sent: u64,
    /// Encoded result bytes received from workers.
    pub bytes_received: u64,
    /// File descriptors sent to workers (in the arguments).
    pub fds_sent: u64,
    /// Of `bytes_sent`, those that crossed in shared memory rather than through the socket
    /// (encoded arguments of at least 1 MiB).
    pub bytes_shared: u64,
    /// Of `bytes_received`, those that crossed in shared memory rather than through the
    /// socket (encoded results of at least 1 MiB).
    pub bytes_received_shared: u64,
}

/// A submission's [`Destination`]: decodes each reply into `Vec<R>` for its sink.
struct Decode<R> {
    sink: ChunkSink<R>,
}

impl<R: Payload> Destination for Decode<R> {
    /// Runs on a supervisor's thread, and so does the user's code in it (`R`'s `Deserialize`,
    /// and its `Drop` where nobody takes the results): a panic there fails this chunk instead
    /// of unwinding the supervisor, which would leave the pool's later tasks, `join` and drop
    /// waiting for ever.
    fn deliver(&self, index: usize, reply: Result<Reply<'_>>) {
        let decoded = reply.and_then(|(bytes, fds)| {
            match catch_unwind(AssertUnwindSafe(|| decode_items_fds::<R>(bytes, fds))) {
                Ok(r) => r.map_err(|e| Error::Serialization(format!("decoding the results: {e}"))),
                Err(p) => Err(Error::Serialization(format!(
                    "decoding the results panicked: {}",
                    panic_message(&*p)
                ))),
            }
        });
        // A panic here is a result's `Drop`: the results are delivered or gone by then.
        let _ = catch_unwind(AssertUnwindSafe(|| self.sink.deliver(index, decoded)));
    }

    fn cancel(&self) -> &Arc<multiproc_core::CancelToken> {
        self.sink.cancel_token()
    }
}

/// A supervised pool of worker processes, generic over how they are started.
///
/// A pool belongs to the process that created it. A forked child's copy (reached through a
/// `static`, or moved into a forked closure) has none of its supervisor threads or workers:
/// there every method fails at once with [`Error::ForeignProcess`] (or, where it cannot fail,
/// does nothing), and dropping it does nothing.
pub struct ProcessPool<L: Launcher> {
    home: Home,
    /// Never dropped in a process other than `home`: its queue may hold sinks and locks that
    /// a thread of the owner held at the fork.
    shared: ManuallyDrop<Arc<Shared<L>>>,
    supervisors: ManuallyDrop<Mutex<Vec<Finished>>>,
}

impl<L: Launcher> std::fmt::Debug for ProcessPool<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPool")
            .field("home", &self.home)
            .field("workers", &self.shared.workers)
            .field("pids", &self.pids())
            .finish()
    }
}

impl<L: Launcher> ProcessPool<L> {
    /// Starts `workers` workers with `launcher` (all of them before any pool thread exists),
    /// then one supervisor thread per worker: a thread that a closed pool left idle, or a new
    /// one (an idle thread ends after a second without work). Zero workers is
    /// [`Error::InvalidArgument`].
    pub fn new(workers: usize, launcher: L) -> Result<Self> {
        Self::with_initializer(workers, launcher, None)
    }

    /// [`new`](Self::new), with an [`Initializer`] that every worker runs before its first
    /// task. If it fails in a worker, the pool stops: pending and later tasks get
    /// [`Error::InitializerFailed`] (no endless restarts).
    pub fn with_initializer(
        workers: usize,
        launcher: L,
        init: Option<Initializer>,
    ) -> Result<Self> {
        let options = PoolOptions {
            processes: Some(workers),
            ..PoolOptions::default()
        };
        Self::with_options(launcher, init, options)
    }

    /// [`with_initializer`](Self::with_initializer), with the builder's [`PoolOptions`]
    /// (worker count, `task_timeout`, `max_tasks_per_child`, `retries`).
    pub fn with_options(
        launcher: L,
        init: Option<Initializer>,
        options: PoolOptions,
    ) -> Result<Self> {
        if options.task_timeout == Some(std::time::Duration::ZERO) {
            return Err(Error::invalid(
                "task_timeout",
                "must be longer than zero (no task can finish in no time)",
            ));
        }
        let workers = check_workers(options.workers())?.get();
        let (started, failure) = launcher.launch_many(workers);
        if let Some(e) = failure {
            for w in started {
                stop_and_reap(w, true, None);
            }
            return Err(e);
        }
        let mut failure = None;
        let mut ready = Vec::with_capacity(workers);
        for w in started {
            if failure.is_some() {
                stop_and_reap(w, true, None);
                continue;
            }
            // SAFETY: `w` was just returned by this launcher's `launch` and is not in a pool.
            match unsafe { launcher.ready(&w) } {
                Ok(()) => ready.push(w),
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            for w in ready {
                stop_and_reap(w, true, None);
            }
            return Err(e);
        }
        let started = ready;
        let shared = Arc::new(Shared {
            launcher,
            spare: Mutex::new(Spare::with_limit(POOL_SPARE_BYTES)),
            init,
            init_error: Mutex::new(None),
            broken: Mutex::new(None),
            counters: Counters::default(),
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            looking: AtomicUsize::new(0),
            submissions: AtomicUsize::new(0),
            #[cfg(test)]
            idle_wakeups: AtomicUsize::new(0),
            #[cfg(test)]
            socket_frames: AtomicUsize::new(0),
            idle: Arc::new(Idle::default()),
            pids: Mutex::new(started.iter().map(|w| Some(Listed::new(w))).collect()),
            workers,
            supervising: AtomicUsize::new(workers),
            running: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            killed_for: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            heads: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            timed_out: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            epoch: std::time::Instant::now(),
            options,
        });
        let pids: Vec<Pid> = started.iter().map(|w| w.pid).collect();
        if shared.watchdog_needed() {
            let weak = Arc::downgrade(&shared);
            let spawned = std::thread::Builder::new()
                .name("multiproc-watchdog".into())
                .spawn(move || shared::watchdog(&weak));
            if let Err(e) = spawned {
                abandon(shared, Vec::new(), &pids, 0);
                return Err(Error::Io(e));
            }
        }
        let mut supervisors = Vec::with_capacity(workers);
        for (slot, worker) in started.into_iter().enumerate() {
            let for_thread = shared.clone();
            let spawned = crew::hire("multiproc-supervisor", move || {
                // A panic that escapes a supervisor (user code in it is caught where it
                // runs: a bug, then) breaks the pool: its jobs fail rather than wait.
                let run = AssertUnwindSafe(|| supervise(&for_thread, slot, worker));
                if let Err(p) = catch_unwind(run) {
                    for_thread.break_pool(Error::from_panic(p));
                }
            });
            match spawned {
                Ok(h) => supervisors.push(h),
                Err(e) => {
                    abandon(shared, supervisors, &pids, slot);
                    return Err(Error::Io(e));
                }
            }
        }
        Ok(ProcessPool::assemble(shared, supervisors))
    }

    fn assemble(shared: Arc<Shared<L>>, supervisors: Vec<Finished>) -> Self {
        ProcessPool {
            home: Home::here("pool"),
            shared: ManuallyDrop::new(shared),
            supervisors: ManuallyDrop::new(Mutex::new(supervisors)),
        }
    }

    /// Whether this is the process that created the pool.
    fn at_home(&self) -> bool {
        self.home.is_here()
    }

    /// `Ok` in the process that created the pool; [`Error::ForeignProcess`] elsewhere.
    fn check_home(&self) -> Result<()> {
        self.home.check()
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.shared.workers
    }

    /// The current workers' process ids (a slot is `None` while its worker is replaced, or
    /// after no replacement could be started). Empty in a process other than the pool's
    /// creator, which has none of its workers.
    pub fn pids(&self) -> Vec<Option<Pid>> {
        if !self.at_home() {
            return Vec::new();
        }
        lock(&self.shared.pids)
            .iter()
            .map(|w| w.as_ref().map(|w| w.pid))
            .collect()
    }

    /// What crossed this pool's sockets so far.
    pub fn ipc_stats(&self) -> IpcStats {
        let c = &self.shared.counters;
        IpcStats {
            bytes_sent: c.sent.load(Ordering::Relaxed),
            bytes_received: c.received.load(Ordering::Relaxed),
            fds_sent: c.fds.load(Ordering::Relaxed),
            bytes_shared: c.shared.load(Ordering::Relaxed),
            bytes_received_shared: c.received_shared.load(Ordering::Relaxed),
        }
    }

    /// Encodes every chunk of `batch` and queues it; results reach `sink`.
    ///
    /// Chunks are queued as they are encoded, in runs of at least 1 MiB of encoded
    /// bytes (and the rest at the end): a worker starts on a large argument while the caller
    /// encodes the next, and a batch of small ones is still queued with one lock and one
    /// wake-up. If a chunk cannot be encoded, the chunks queued before it still run (their
    /// results go to `sink`, which the caller has no handle to once this fails), and the
    /// error is returned.
    pub fn submit<A, R>(&self, f: Task<A, R>, batch: Batch<A>, sink: ChunkSink<R>) -> Result<()>
    where
        A: Payload,
        R: Payload,
    {
        self.check_home()?;
        // Refuse early, before encoding anything; checked again when queueing, under the lock.
        if lock(&self.shared.queue).closed {
            return Err(self.shared.refusal());
        }
        let call = offset_of(f)?;
        let canceller: std::sync::Weak<dyn multiproc_core::Canceller> =
            Arc::downgrade(&*self.shared) as _;
        sink.cancel_token().on_cancel(canceller);
        let dest: Arc<dyn Destination> = Arc::new(Decode { sink });
        let mut jobs = Vec::new();
        let mut encoded = 0;
        for (index, (_, chunk)) in batch.into_chunks().enumerate() {
            let (payload, fds) = encode_body(&chunk, &self.shared.spare)
                .map_err(|e| Error::Serialization(format!("encoding the arguments: {e}")))?;
            encoded += payload.len();
            self.shared.idle.add(1);
            jobs.push(Job {
                call,
                payload,
                fds,
                dest: dest.clone(),
                index,
                _ticket: Ticket(self.shared.idle.clone()),
                history: Vec::new(),
                lent_away: false,
            });
            if encoded >= QUEUE_AFTER {
                self.enqueue(std::mem::take(&mut jobs))?;
                encoded = 0;
            }
        }
        drop(dest);
        self.enqueue(jobs)
    }

    /// Queues `jobs` and wakes the supervisors they need; a closed queue drops them (their
    /// tickets and sinks fail the chunks) and refuses.
    fn enqueue(&self, jobs: Vec<Job>) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut q = lock(&self.shared.queue);
        if q.closed {
            drop(q);
            drop(jobs); // their tickets and sinks fail the chunks
            return Err(self.shared.refusal());
        }
        let added = jobs.len();
        q.jobs.extend(jobs);
        self.shared.submissions.fetch_add(1, Ordering::Release);
        let wake = self.shared.wakeups_needed(&q, added);
        drop(q);
        // Only idle supervisors wait, and each takes one job at least: wake as many as there
        // are new jobs no supervisor on its way to the queue takes (an `apply_async` wakes
        // one, not every supervisor to find one job).
        if wake >= self.shared.workers {
            self.shared.work.notify_all();
        } else {
            for _ in 0..wake {
                self.shared.work.notify_one();
            }
        }
        Ok(())
    }

    /// Refuses new work from now on. Does nothing in a process other than the pool's creator.
    pub fn close(&self) {
        if self.at_home() {
            lock(&self.shared.queue).closed = true;
        }
    }

    /// Waits for all submitted work, then stops and reaps the workers. Needs `close` (or
    /// `terminate`) first, otherwise [`Error::JoinBeforeClose`]. On a pool that broke
    /// ([`Error::NoWorkers`]) it returns that error, once everything is reaped.
    ///
    /// The pool's supervisor threads are idle then, not ended: a pool made within a second
    /// runs on them, otherwise they end by themselves. Code that needs this process to have
    /// one thread (`unshare(CLONE_NEWUSER)`, for one) must allow for that second.
    pub fn join(&self) -> Result<()> {
        self.join_until(None).map(drop)
    }

    /// [`join`](Self::join), waiting at most `timeout` for the work: `Ok(false)` if some was
    /// still running then (nothing changed).
    pub fn join_timeout(&self, timeout: std::time::Duration) -> Result<bool> {
        self.join_until(Some(timeout))
    }

    /// `join`, waiting for the work at most `timeout` if one is given (`Ok(false)`: some was
    /// still running); once none is left, stops and reaps the (idle) workers, joins the
    /// supervisors, and reports a pool that broke.
    fn join_until(&self, timeout: Option<std::time::Duration>) -> Result<bool> {
        self.check_home()?;
        if !lock(&self.shared.queue).closed {
            return Err(Error::JoinBeforeClose);
        }
        if !self.shared.idle.wait_zero(timeout) {
            return Ok(false);
        }
        lock(&self.shared.queue).stopping = true;
        // No job is left: the workers are idle. Ending their streams here lets them exit
        // while their supervisors wake; this thread reaps them (their supervisors find their
        // slots empty and leave them alone).
        let shut = self.shared.shut_idle_workers();
        self.shared.work.notify_all();
        for worker in shut {
            // SAFETY: a child of ours from the launcher (its contract), unlisted by
            // `shut_idle_workers` under the table's lock, so nothing else signals or reaps
            // it; the pidfd is its slot's.
            unsafe { reap_with(worker.pid, worker.pidfd) };
        }
        let supervisors = std::mem::take(&mut *lock(&self.supervisors));
        for s in supervisors {
            s.wait();
        }
        match &*lock(&self.shared.broken) {
            Some(cause) => Err(Error::NoWorkers {
                cause: cause.clone(),
            }),
            None => Ok(true),
        }
    }

    /// Drops queued work (its results fail with [`Error::PoolClosed`]) and kills the workers.
    pub fn terminate(&self) -> Result<()> {
        self.check_home()?;
        let dropped = {
            let mut q = lock(&self.shared.queue);
            q.closed = true;
            q.terminated = true;
            q.stopping = true;
            std::mem::take(&mut q.jobs)
        };
        drop(dropped);
        self.shared.work.notify_all();
        for worker in lock(&self.shared.pids).iter().flatten() {
            worker.kill();
        }
        Ok(())
    }
}

/// Pool creation failed after its workers started (a thread could not be started): kills them
/// all. The supervisors in `supervisors` reap theirs; the workers from slot `from` on have
/// none, so they are unlisted and reaped here, and none is left a zombie.
fn abandon<L: Launcher>(
    shared: Arc<Shared<L>>,
    supervisors: Vec<Finished>,
    pids: &[Pid],
    from: usize,
) {
    let pool = ProcessPool::assemble(shared.clone(), supervisors);
    let _ = pool.terminate();
    for (slot, &pid) in pids.iter().enumerate().skip(from) {
        let pidfd = shared.unlist(slot).and_then(|w| w.pidfd);
        // SAFETY: a child of ours from the launcher (its contract), killed by `terminate`
        // above, which no supervisor watches: reaped only here (`pool`'s `join` takes only
        // listed workers, and this one is not any more).
        unsafe { reap_with(pid, pidfd) };
    }
}

impl<L: Launcher> Executor for ProcessPool<L> {
    fn processes(&self) -> usize {
        self.workers()
    }

    fn shows_progress(&self) -> bool {
        self.shared.options.progress
    }

    fn submit<A, R>(&self, f: Task<A, R>, batch: Batch<A>, sink: ChunkSink<R>) -> Result<()>
    where
        A: Payload,
        R: Payload,
    {
        ProcessPool::submit(self, f, batch, sink)
    }

    fn close(&self) {
        ProcessPool::close(self)
    }

    fn join(&self) -> Result<()> {
        ProcessPool::join(self)
    }

    fn join_timeout(&self, timeout: std::time::Duration) -> Result<bool> {
        ProcessPool::join_timeout(self, timeout)
    }

    fn terminate(&self) -> Result<()> {
        ProcessPool::terminate(self)
    }
}

impl<L: Launcher> Drop for ProcessPool<L> {
    fn drop(&mut self) {
        if !self.at_home() {
            // A forked copy: its threads and workers exist only in the creator. Touch nothing
            // (a lock of the copy may have been held by a thread of the creator at the fork);
            // the copy's memory is simply not freed.
            return;
        }
        self.close();
        let _ = self.join();
        // SAFETY: both fields are dropped exactly once, here, and never used again.
        unsafe {
            ManuallyDrop::drop(&mut self.supervisors);
            ManuallyDrop::drop(&mut self.shared);
        }
    }
}
