//! [`ProcessPool`]: the pool machinery shared by every process backend.
//!
//! A backend supplies a [`Launcher`] (how to start one worker connected by a Unix socket:
//! fork it, or execute the binary again); everything else is here, once:
//!
//! - **dispatch**: submitted chunks go into one shared queue, encoded with postcard; each
//!   worker has a supervisor thread that pulls from the queue, so the load balances itself.
//!   While the queue holds at least two tasks per worker, a supervisor keeps up to
//!   [`PIPELINE_DEPTH`] tasks in flight to its worker, so the worker never waits on a round
//!   trip; near the end of a batch it takes one at a time, so no worker hoards the tail.
//! - **supervision**: the supervisor reads its worker's replies. If the stream breaks, the
//!   worker died: the supervisor reaps it, fails the one task it was running with
//!   [`Error::WorkerDied`] (its pid, and the signal or exit code), puts the tasks queued behind
//!   it back at the front of the queue, and launches a replacement. If none can be started and
//!   no worker is left, the pool *breaks*: it closes itself, and pending and later calls fail
//!   with [`Error::PoolBroken`] naming the cause.
//! - **ownership**: a pool belongs to the process that created it; a forked copy refuses every
//!   call with [`Error::ForeignProcess`] and its `Drop` does nothing.
//! - **shutdown**: `close` refuses new work; `join` waits for the work, then sends each worker a
//!   shutdown frame and reaps it; `terminate` drops queued work and SIGKILLs the workers
//!   (through pidfds; a worker leaves the table before it is reaped, so no reused pid is hit). Every
//!   task's result is delivered or failed — a dropped job fails its chunk through the
//!   [`ChunkSink`] — so nothing waits forever, and every child is reaped, so no zombie is left.

use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_core::{
    check_workers, Batch, ChunkSink, Error, Executor, ExitCause, Payload, Result, Task,
};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, Pid};

use crate::child::{pidfd_open, ExitWatch};
use crate::payload::{encode_body, Body, Spare, SPARE_BYTES};
use crate::trampoline::{decode, offset_of};
use crate::wire::{FrameReader, FrameWriter, Header, Kind};
use crate::worker::INIT_ID;

/// The most tasks a supervisor keeps in flight to its worker.
pub const PIPELINE_DEPTH: usize = 4;

/// The most argument bytes a supervisor sends ahead of a worker that is still busy. Pipelined
/// tasks must fit in the socket's buffer: a worker blocked writing a large reply reads nothing,
/// and a supervisor blocked writing a large task would read nothing either — a deadlock. So a
/// task larger than this is only ever sent to an idle worker, alone.
pub const PIPELINE_BYTES: usize = 32 * 1024;

/// A started worker process and the parent's end of its socket.
#[derive(Debug)]
pub struct Worker {
    /// Its process id.
    pub pid: Pid,
    /// The parent's end of the connection; the worker runs [`serve`](crate::serve) on the other.
    pub stream: UnixStream,
}

/// How a backend starts one worker.
///
/// # Safety
///
/// The pool signals (`SIGKILL` on `terminate`) and reaps the pid of every [`Worker`] that
/// `launch` returns, so an implementation promises that the pid is a child of this process
/// that it has just started, has not reaped, and hands over to the caller: nothing else
/// waits for, reaps or signals it. And `stream` is connected to that child, which runs
/// [`serve`](crate::serve) on the other end.
pub unsafe trait Launcher: Send + Sync + 'static {
    /// Starts a worker connected to the returned stream. Called when the pool is created, and
    /// from a supervisor thread to replace a worker that died.
    fn launch(&self) -> Result<Worker>;

    /// Waits until a launched worker is ready to serve. The pool launches all its workers
    /// first and then waits for each, so that they start up in parallel. On `Err`, the
    /// launcher has already ended and reaped the worker. The default: ready at once (a forked
    /// worker serves from the moment it exists).
    ///
    /// # Safety
    ///
    /// `worker` must have been returned by this launcher's [`launch`](Self::launch) and not
    /// be handed to a pool yet: on failure, the launcher kills and reaps its pid.
    unsafe fn ready(&self, worker: &Worker) -> Result<()> {
        let _ = worker;
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections here are queue operations that cannot panic half-way.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A reply's encoded results, borrowed from the supervisor's receive buffer (reused for the
/// next reply, so a large result does not land on fresh pages twice), and its descriptors.
type Reply<'a> = (&'a [u8], Vec<OwnedFd>);

type OnDone = Box<dyn for<'a> FnOnce(Result<Reply<'a>>) + Send>;

/// One encoded chunk on its way to a worker.
struct Job {
    call: u64,
    payload: Body,
    fds: Vec<OwnedFd>,
    on_done: OnDone,
    _ticket: Ticket,
}

impl Job {
    /// The bytes its frame puts on the socket (see [`Body::socket_len`]).
    fn socket_len(&self) -> usize {
        self.payload.socket_len(self.fds.len())
    }
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
        let (payload, fds) =
            encode_body(std::slice::from_ref(arg), &Mutex::default()).map_err(|e| {
                Error::Serialization(format!("encoding the initializer's argument: {e}"))
            })?;
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
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    fds: AtomicU64,
    shared: AtomicU64,
}

/// Counts a job as outstanding until it is dropped (delivered or abandoned).
struct Ticket(Arc<Idle>);

struct Idle {
    outstanding: Mutex<usize>,
    zero: Condvar,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut n = lock(&self.0.outstanding);
        *n -= 1;
        if *n == 0 {
            self.0.zero.notify_all();
        }
    }
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
    stopping: bool,
    terminated: bool,
}

/// A live worker in the table that `terminate` signals: its pid, and a pidfd opened while it
/// was known to be our unreaped child. A slot is emptied *before* its worker is reaped, and
/// signals go through the pidfd, so `terminate` never signals a pid that was reaped (and
/// perhaps reused by another process).
struct Listed {
    pid: Pid,
    pidfd: Option<OwnedFd>,
}

impl Listed {
    /// Lists `pid`, an unreaped child of ours.
    fn new(pid: Pid) -> Listed {
        Listed {
            pid,
            pidfd: pidfd_open(pid),
        }
    }

    /// Sends SIGKILL to this worker and to nothing else.
    fn kill(&self) {
        match &self.pidfd {
            Some(fd) => {
                // SAFETY: pidfd_send_signal takes a descriptor we own (open for the call), a
                // signal number, a null `siginfo` (allowed: the kernel fills one in) and no
                // flags; it reads and writes no memory of ours.
                let _ = unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        libc::SIGKILL,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
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

struct Shared<L> {
    launcher: L,
    spare: Mutex<Spare>,
    init: Option<Initializer>,
    init_error: Mutex<Option<String>>,
    /// Why the pool broke: it lost every worker and could not start one.
    broken: Mutex<Option<String>>,
    counters: Counters,
    queue: Mutex<Queue>,
    work: Condvar,
    idle: Arc<Idle>,
    pids: Mutex<Vec<Option<Listed>>>,
    workers: usize,
    /// Supervisors still serving a worker (or replacing one); the last to give up breaks the
    /// pool.
    supervising: AtomicUsize,
}

impl<L> Shared<L> {
    /// The error for work refused by a closed pool.
    fn refusal(&self) -> Error {
        if let Some(message) = &*lock(&self.init_error) {
            return Error::InitializerFailed(message.clone());
        }
        match &*lock(&self.broken) {
            Some(reason) => Error::PoolBroken(reason.clone()),
            None => Error::PoolClosed("the pool no longer accepts work"),
        }
    }

    /// Empties worker slot `slot`; a worker must be unlisted before it is reaped.
    fn unlist(&self, slot: usize) {
        lock(&self.pids)[slot] = None;
    }

    /// No worker is left and none can be started: close the pool with
    /// [`Error::PoolBroken`] for every pending and later call.
    fn break_pool(&self, reason: String) {
        lock(&self.broken).get_or_insert(reason.clone());
        let queued = {
            let mut q = lock(&self.queue);
            q.closed = true;
            q.stopping = true;
            std::mem::take(&mut q.jobs)
        };
        self.work.notify_all();
        for job in queued {
            (job.on_done)(Err(Error::PoolBroken(reason.clone())));
        }
    }

    /// The initializer failed in a worker: stop the pool and fail everything pending.
    fn initializer_failed(&self, message: String, sent: VecDeque<Job>) {
        lock(&self.init_error).get_or_insert(message.clone());
        let queued = {
            let mut q = lock(&self.queue);
            q.closed = true;
            q.stopping = true;
            std::mem::take(&mut q.jobs)
        };
        self.work.notify_all();
        for job in sent.into_iter().chain(queued) {
            (job.on_done)(Err(Error::InitializerFailed(message.clone())));
        }
    }
}

/// A supervised pool of worker processes, generic over how they are started.
///
/// A pool belongs to the process that created it. A forked child's copy (reached through a
/// `static`, or moved into a forked closure) has none of its supervisor threads or workers:
/// there every method fails at once with [`Error::ForeignProcess`] (or, where it cannot fail,
/// does nothing), and dropping it does nothing.
pub struct ProcessPool<L: Launcher> {
    owner: Pid,
    /// Never dropped in a process other than `owner`: its queue may hold sinks and locks that
    /// a thread of the owner held at the fork.
    shared: ManuallyDrop<Arc<Shared<L>>>,
    supervisors: ManuallyDrop<Mutex<Vec<JoinHandle<()>>>>,
}

impl<L: Launcher> std::fmt::Debug for ProcessPool<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPool")
            .field("owner", &self.owner)
            .field("workers", &self.shared.workers)
            .field("pids", &self.pids())
            .finish()
    }
}

impl<L: Launcher> ProcessPool<L> {
    /// Starts `workers` workers with `launcher` (all of them before any pool thread exists),
    /// then one supervisor thread per worker. Zero workers is [`Error::InvalidArgument`].
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
        let workers = check_workers(workers)?.get();
        let mut started = Vec::with_capacity(workers);
        for _ in 0..workers {
            match launcher.launch() {
                Ok(w) => started.push(w),
                Err(e) => {
                    for w in started {
                        stop_and_reap(w, true);
                    }
                    return Err(e);
                }
            }
        }
        let mut failure = None;
        let mut ready = Vec::with_capacity(workers);
        for w in started {
            if failure.is_some() {
                stop_and_reap(w, true);
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
                stop_and_reap(w, true);
            }
            return Err(e);
        }
        let started = ready;
        let shared = Arc::new(Shared {
            launcher,
            spare: Mutex::new(Spare::default()),
            init,
            init_error: Mutex::new(None),
            broken: Mutex::new(None),
            counters: Counters::default(),
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            idle: Arc::new(Idle {
                outstanding: Mutex::new(0),
                zero: Condvar::new(),
            }),
            pids: Mutex::new(started.iter().map(|w| Some(Listed::new(w.pid))).collect()),
            workers,
            supervising: AtomicUsize::new(workers),
        });
        let mut supervisors = Vec::with_capacity(workers);
        for (slot, worker) in started.into_iter().enumerate() {
            let for_thread = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("multiproc-supervisor-{slot}"))
                .spawn(move || supervise(&for_thread, slot, worker));
            match spawned {
                Ok(h) => supervisors.push(h),
                Err(e) => {
                    let pool = ProcessPool::assemble(shared, supervisors);
                    let _ = pool.terminate();
                    return Err(Error::Io(e));
                }
            }
        }
        Ok(ProcessPool::assemble(shared, supervisors))
    }

    fn assemble(shared: Arc<Shared<L>>, supervisors: Vec<JoinHandle<()>>) -> Self {
        ProcessPool {
            owner: getpid(),
            shared: ManuallyDrop::new(shared),
            supervisors: ManuallyDrop::new(Mutex::new(supervisors)),
        }
    }

    /// Whether this is the process that created the pool.
    fn at_home(&self) -> bool {
        getpid() == self.owner
    }

    /// `Ok` in the process that created the pool; [`Error::ForeignProcess`] elsewhere.
    fn check_home(&self) -> Result<()> {
        if self.at_home() {
            Ok(())
        } else {
            Err(Error::ForeignProcess {
                what: "pool",
                owner: self.owner.as_raw().unsigned_abs(),
                current: getpid().as_raw().unsigned_abs(),
            })
        }
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
        }
    }

    /// Encodes every chunk of `batch` and queues it; results reach `sink`.
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
        let mut jobs = Vec::with_capacity(batch.n_chunks());
        let mut payloads = Vec::with_capacity(batch.n_chunks());
        for (_, chunk) in batch.into_chunks() {
            payloads.push(
                encode_body(&chunk, &self.shared.spare)
                    .map_err(|e| Error::Serialization(format!("encoding the arguments: {e}")))?,
            );
        }
        *lock(&self.shared.idle.outstanding) += payloads.len();
        for (index, (payload, fds)) in payloads.into_iter().enumerate() {
            let sink = sink.clone();
            jobs.push(Job {
                call,
                payload,
                fds,
                on_done: Box::new(move |reply: Result<Reply<'_>>| {
                    sink.deliver(
                        index,
                        reply.and_then(|(bytes, fds)| {
                            decode::<Vec<R>>(bytes, fds).map_err(|e| {
                                Error::Serialization(format!("decoding the results: {e}"))
                            })
                        }),
                    )
                }),
                _ticket: Ticket(self.shared.idle.clone()),
            });
        }
        let mut q = lock(&self.shared.queue);
        if q.closed {
            drop(q);
            drop(jobs); // their tickets and sinks fail the chunks
            return Err(self.shared.refusal());
        }
        let added = jobs.len();
        q.jobs.extend(jobs);
        drop(q);
        // Only idle supervisors wait, and each takes one job at least: wake as many as there
        // are new jobs (an `apply_async` wakes one, not every supervisor to find one job).
        if added >= self.shared.workers {
            self.shared.work.notify_all();
        } else {
            for _ in 0..added {
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
    /// `terminate`) first. On a pool that broke ([`Error::PoolBroken`]) it returns that error,
    /// once everything is reaped.
    pub fn join(&self) -> Result<()> {
        self.check_home()?;
        if !lock(&self.shared.queue).closed {
            return Err(Error::invalid(
                "self",
                "join() needs close() or terminate() first (the pool is still running)",
            ));
        }
        {
            let n = lock(&self.shared.idle.outstanding);
            drop(
                self.shared
                    .idle
                    .zero
                    .wait_while(n, |n| *n > 0)
                    .unwrap_or_else(PoisonError::into_inner),
            );
        }
        lock(&self.shared.queue).stopping = true;
        self.shared.work.notify_all();
        let supervisors = std::mem::take(&mut *lock(&self.supervisors));
        for s in supervisors {
            let _ = s.join();
        }
        match &*lock(&self.shared.broken) {
            Some(reason) => Err(Error::PoolBroken(reason.clone())),
            None => Ok(()),
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

impl<L: Launcher> Executor for ProcessPool<L> {
    fn processes(&self) -> usize {
        self.workers()
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

    fn terminate(&self) -> Result<()> {
        ProcessPool::terminate(self)
    }
}

/// Implements [`Executor`] for a backend's pool type, a struct whose field `inner` is a
/// [`ProcessPool`], by forwarding every method to it — so each process backend's pool is the
/// one shared machinery under its own name.
#[macro_export]
macro_rules! forward_executor {
    ($pool:ty) => {
        impl $crate::__private::Executor for $pool {
            fn processes(&self) -> usize {
                $crate::__private::Executor::processes(&self.inner)
            }

            fn submit<A, R>(
                &self,
                f: $crate::__private::Task<A, R>,
                batch: $crate::__private::Batch<A>,
                sink: $crate::__private::ChunkSink<R>,
            ) -> $crate::__private::Result<()>
            where
                A: $crate::__private::Payload,
                R: $crate::__private::Payload,
            {
                $crate::__private::Executor::submit(&self.inner, f, batch, sink)
            }

            fn close(&self) {
                $crate::__private::Executor::close(&self.inner)
            }

            fn join(&self) -> $crate::__private::Result<()> {
                $crate::__private::Executor::join(&self.inner)
            }

            fn terminate(&self) -> $crate::__private::Result<()> {
                $crate::__private::Executor::terminate(&self.inner)
            }
        }
    };
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

/// How a session with one worker ended.
enum End {
    /// The pool is stopping; the worker is healthy.
    Stop,
    /// The stream broke: the worker died. These jobs were sent to it, oldest first.
    Broken(VecDeque<Job>),
    /// The worker reported that the initializer failed (and exits); these jobs were sent.
    InitFailed(String, VecDeque<Job>),
}

/// The supervisor of worker slot `slot`: serves it, and replaces it when it dies. A worker is
/// always unlisted (its slot emptied) before it is reaped, so `terminate` never signals a
/// reaped pid.
fn supervise<L: Launcher>(shared: &Shared<L>, slot: usize, mut worker: Worker) {
    loop {
        match serve(shared, &worker) {
            End::InitFailed(message, sent) => {
                shared.initializer_failed(message, sent);
                shared.unlist(slot);
                drop(worker.stream);
                note_reap(shared, worker.pid);
                // SAFETY: the launcher handed this child to the pool (`Launcher`'s contract);
                // only this supervisor reaps it, and it is unlisted, so nothing signals it.
                unsafe { reap(worker.pid) };
                return;
            }
            End::Stop => {
                let terminated = lock(&shared.queue).terminated;
                shared.unlist(slot);
                note_reap(shared, worker.pid);
                stop_and_reap(worker, terminated);
                return;
            }
            End::Broken(mut sent) => {
                let pid = worker.pid;
                drop(worker.stream);
                shared.unlist(slot);
                note_reap(shared, pid);
                // SAFETY: as above: our child, unlisted, reaped only here.
                let cause = unsafe { reap(pid) };
                let terminated = lock(&shared.queue).terminated;
                if let Some(running) = sent.pop_front() {
                    if !terminated {
                        (running.on_done)(Err(Error::WorkerDied {
                            pid: pid.as_raw() as u32,
                            cause,
                        }));
                    }
                }
                {
                    let mut q = lock(&shared.queue);
                    if q.terminated {
                        drop(q);
                        drop(sent); // fail with PoolClosed
                        return;
                    }
                    while let Some(job) = sent.pop_back() {
                        q.jobs.push_front(job);
                    }
                }
                shared.work.notify_all();
                match launch_replacement(shared) {
                    Ok(w) => {
                        lock(&shared.pids)[slot] = Some(Listed::new(w.pid));
                        worker = w;
                    }
                    Err(None) => return, // the pool is stopping
                    Err(Some(e)) => {
                        // This slot stays empty; the pool carries on with the others. The last
                        // supervisor to give up breaks it.
                        if shared.supervising.fetch_sub(1, Ordering::AcqRel) == 1 {
                            shared.break_pool(e.to_string());
                        }
                        return;
                    }
                }
            }
        }
    }
}

/// Records, in this crate's unit tests, whether a worker was still listed when it was reaped.
#[cfg(test)]
fn note_reap<L>(shared: &Shared<L>, pid: Pid) {
    let listed = lock(&shared.pids).iter().flatten().any(|w| w.pid == pid);
    lock(&tests::REAPED).push((pid, listed));
}

#[cfg(not(test))]
fn note_reap<L>(_: &Shared<L>, _: Pid) {}

/// Starts a replacement worker, retrying a few times. `Err(None)` if the pool is stopping;
/// `Err(Some(e))` with the last launch error if no worker could be started.
fn launch_replacement<L: Launcher>(shared: &Shared<L>) -> Result<Worker, Option<Error>> {
    let mut last_error = None;
    for attempt in 0..3 {
        if lock(&shared.queue).stopping {
            return Err(None);
        }
        match shared
            .launcher
            .launch()
            // SAFETY: `w` was just returned by this launcher's `launch` and is not in a pool.
            .and_then(|w| unsafe { shared.launcher.ready(&w) }.map(|()| w))
        {
            Ok(w) => return Ok(w),
            Err(e) => last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(10 << attempt));
    }
    if lock(&shared.queue).stopping {
        return Err(None);
    }
    Err(last_error)
}

/// Feeds the worker from the queue and delivers its replies until the pool stops or the
/// worker's stream breaks. A worker's session starts with the pool's initializer, if any.
fn serve<L: Launcher>(shared: &Shared<L>, worker: &Worker) -> End {
    let (Ok(read_half), Ok(write_half)) = (worker.stream.try_clone(), worker.stream.try_clone())
    else {
        return End::Broken(VecDeque::new());
    };
    let mut reader = FrameReader::new(read_half);
    let mut writer = FrameWriter::new(write_half);
    let counters = &shared.counters;
    if let Some(init) = &shared.init {
        let header = Header {
            kind: Kind::Init,
            id: INIT_ID,
            call: init.call,
        };
        if send_body(&mut writer, header, &init.payload, &init.fds, counters).is_err() {
            return End::Broken(VecDeque::new());
        }
    }
    let mut sent: VecDeque<(u64, Job)> = VecDeque::new();
    let mut next_id = 0u64;
    let mut payload = Vec::new();
    let broken =
        |sent: VecDeque<(u64, Job)>| End::Broken(sent.into_iter().map(|(_, j)| j).collect());
    // Once a write fails the worker is dying, but replies it sent before may still be in the
    // socket: read them all before blaming the oldest unanswered task for the death.
    let mut write_broken = false;
    loop {
        let mut batch = Vec::new();
        if !write_broken {
            let mut q = lock(&shared.queue);
            loop {
                let in_flight = sent.len() + batch.len();
                let plenty = q.jobs.len() >= 2 * shared.workers;
                if in_flight >= PIPELINE_DEPTH || (in_flight >= 1 && !plenty) {
                    break;
                }
                let queued_bytes: usize = sent
                    .iter()
                    .map(|(_, j)| j.socket_len())
                    .chain(batch.iter().map(Job::socket_len))
                    .sum();
                let fits =
                    |job: &Job| in_flight == 0 || queued_bytes + job.socket_len() <= PIPELINE_BYTES;
                if q.jobs.front().is_some_and(|job| !fits(job)) {
                    break;
                }
                if let Some(job) = q.jobs.pop_front() {
                    batch.push(job);
                } else if in_flight > 0 {
                    break;
                } else if q.stopping {
                    return End::Stop;
                } else {
                    q = shared.work.wait(q).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
        for job in batch {
            if !write_broken {
                let header = Header {
                    kind: Kind::Task,
                    id: next_id,
                    call: job.call,
                };
                write_broken =
                    send_body(&mut writer, header, &job.payload, &job.fds, counters).is_err();
            }
            // The job keeps its payload and descriptors until its reply arrives: if the worker
            // dies first, the job is requeued and sent whole to another worker.
            sent.push_back((next_id, job));
            next_id += 1;
        }
        if !write_broken && writer.flush().is_err() {
            write_broken = true;
        }
        if sent.is_empty() {
            // Only after a failed write: nothing left to read a reply for.
            return broken(sent);
        }
        let (header, fds) = match reader.recv(&mut payload) {
            Ok(Some(frame)) => frame,
            _ => return broken(sent),
        };
        if header.id == INIT_ID {
            let message = String::from_utf8_lossy(&payload).into_owned();
            return End::InitFailed(message, sent.into_iter().map(|(_, j)| j).collect());
        }
        if sent.front().map_or(true, |(id, _)| *id != header.id) {
            return broken(sent);
        }
        let (_, mut job) = sent.pop_front().expect("checked above");
        // The worker has answered: it no longer reads the job's buffer.
        lock(&shared.spare).give(std::mem::replace(
            &mut job.payload,
            Body::Inline(Vec::new()),
        ));
        counters
            .received
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let outcome = match header.kind {
            Kind::Done => Ok((&payload[..], fds)),
            Kind::Panicked => Err(Error::TaskPanicked {
                message: String::from_utf8_lossy(&payload).into_owned(),
            }),
            Kind::Failed => Err(Error::Serialization(
                String::from_utf8_lossy(&payload).into_owned(),
            )),
            Kind::Task | Kind::Shutdown | Kind::Init | Kind::Message => {
                sent.push_front((header.id, job));
                return broken(sent);
            }
        };
        (job.on_done)(outcome);
        if payload.capacity() > SPARE_BYTES {
            // Kept for the next reply, but not a huge one for the rest of the session.
            payload = Vec::new();
        }
    }
}

/// Queues one frame carrying `body` (a bulk frame for a bulk body, when the frame has room
/// for its descriptor; otherwise the bytes go through the socket) and counts what it carries.
/// The caller keeps `body` unchanged until the worker has answered the frame.
fn send_body(
    writer: &mut FrameWriter,
    header: Header,
    body: &Body,
    fds: &[OwnedFd],
    counters: &Counters,
) -> std::io::Result<()> {
    let result = match body.bulk(fds.len()) {
        Some(bulk) => {
            counters
                .shared
                .fetch_add(bulk.len() as u64, Ordering::Relaxed);
            writer.send_bulk(header, bulk, fds)
        }
        None => writer.send(header, body.as_slice(), fds),
    };
    counters
        .sent
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    counters.fds.fetch_add(fds.len() as u64, Ordering::Relaxed);
    result
}

/// Waits for a worker whose stream has closed and says how it ended. It is exiting; if it
/// has not exited within a second (it closed the socket but lives on), it is killed. Also for
/// a [`Launcher::ready`] that must reap a worker that died before it was ready.
///
/// # Safety
///
/// `pid` must be a child of this process that the caller owns and has not reaped, and that
/// nothing else waits for or signals: after a second, `reap` sends it `SIGKILL`, which for a
/// pid reaped elsewhere (and perhaps reused) would reach a process this program does not own.
pub unsafe fn reap(pid: Pid) -> ExitCause {
    let deadline = Instant::now() + Duration::from_secs(1);
    // Exiting takes from microseconds to a few milliseconds (a large inherited address space
    // to tear down): wake the moment it has ended.
    let mut watch = ExitWatch::open(pid);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return ExitCause::Code(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return ExitCause::Signal(signal as i32),
            Ok(_) if Instant::now() < deadline => {
                // An error here (EINTR is retried inside) can only come from poll itself;
                // the deadline still bounds the loop.
                if watch.pause(Some(deadline - Instant::now())).is_err() {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
            Ok(_) => {
                let _ = kill(pid, Signal::SIGKILL);
                return match waitpid(pid, None) {
                    Ok(WaitStatus::Exited(_, code)) => ExitCause::Code(code),
                    _ => ExitCause::Signal(Signal::SIGKILL as i32),
                };
            }
            // Already reaped (ECHILD): nothing more to learn.
            Err(_) => return ExitCause::Code(-1),
        }
    }
}

/// Asks a healthy worker to stop (or kills it, after `terminate`), then reaps it. `worker`
/// came from the pool's [`Launcher`] (so it is our child, handed over) and is no longer
/// listed in a slot, so nothing else signals or reaps it.
fn stop_and_reap(worker: Worker, kill_it: bool) {
    if kill_it {
        let _ = kill(worker.pid, Signal::SIGKILL);
    } else {
        let bye = Header {
            kind: Kind::Shutdown,
            id: 0,
            call: 0,
        };
        let mut writer = FrameWriter::new(worker.stream);
        if writer
            .send(bye, &[], &[])
            .and_then(|()| writer.flush())
            .is_err()
        {
            let _ = kill(worker.pid, Signal::SIGKILL);
        }
        drop(writer);
        // SAFETY: see this function's comment: our child, reaped only here.
        unsafe { reap(worker.pid) };
        return;
    }
    drop(worker.stream);
    // SAFETY: as above.
    unsafe { reap(worker.pid) };
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::process::Command;
    use std::sync::Mutex;
    use std::time::Duration;

    use multiproc_core::{Error, Executor, ExitCause, Result};
    use nix::unistd::Pid;

    use super::{Launcher, ProcessPool, Worker};

    /// Every worker reaped by a supervisor, and whether it was still listed then.
    pub(super) static REAPED: Mutex<Vec<(Pid, bool)>> = Mutex::new(Vec::new());

    /// Launches one stand-in worker (a `sleep` process, and a socket whose far end the test
    /// holds), then fails with `EAGAIN`.
    struct OneSleeper {
        far_end: Mutex<Option<UnixStream>>,
        launched: Mutex<bool>,
    }

    // SAFETY: `launch` returns the `sleep` child it just started, and hands it over.
    unsafe impl Launcher for OneSleeper {
        fn launch(&self) -> Result<Worker> {
            let mut launched = self.launched.lock().unwrap();
            if *launched {
                return Err(Error::Io(std::io::Error::from_raw_os_error(libc::EAGAIN)));
            }
            *launched = true;
            let child = Command::new("sleep").arg("600").spawn()?;
            let (ours, theirs) = UnixStream::pair()?;
            *self.far_end.lock().unwrap() = Some(theirs);
            Ok(Worker {
                pid: Pid::from_raw(child.id() as i32),
                stream: ours,
            })
        }
    }

    fn never_runs(x: u8) -> u8 {
        x
    }

    /// The death of a worker that cannot be replaced: the worker is unlisted before it is
    /// reaped (so `terminate` cannot signal its pid once it may be reused), its task fails
    /// with its death, and the pool breaks with the launch error.
    #[test]
    fn a_dead_worker_is_unlisted_before_it_is_reaped() {
        let pool = ProcessPool::new(
            1,
            OneSleeper {
                far_end: Mutex::new(None),
                launched: Mutex::new(false),
            },
        )
        .unwrap();
        let pid = pool.pids()[0].expect("listed");
        let mut r = pool.apply_async(never_runs, 1).unwrap();
        let mut queued = pool.apply_async(never_runs, 2).unwrap();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        drop(pool.shared.launcher.far_end.lock().unwrap().take());
        match r.get_timeout(Duration::from_secs(30)) {
            Err(Error::WorkerDied { pid: died, cause }) => {
                assert_eq!(died, pid.as_raw() as u32);
                assert_eq!(cause, ExitCause::Signal(libc::SIGKILL));
            }
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        let broken = |e: &Error| matches!(e, Error::PoolBroken(m) if m.contains("os error 11"));
        match queued.get_timeout(Duration::from_secs(30)) {
            Err(e) => assert!(broken(&e), "the queued task got {e}"),
            Ok(v) => panic!("a task ran without a worker: {v}"),
        }
        assert!(matches!(pool.apply_async(never_runs, 3), Err(e) if broken(&e)));
        pool.close();
        assert!(matches!(pool.join(), Err(e) if broken(&e)));
        let reaped: Vec<bool> = REAPED
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| *p == pid)
            .map(|(_, listed)| *listed)
            .collect();
        assert_eq!(reaped, vec![false], "reaped while listed");
        assert!(pool.pids().iter().all(Option::is_none));
    }
}
