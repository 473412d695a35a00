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
//!   it back at the front of the queue, and launches a replacement.
//! - **shutdown**: `close` refuses new work; `join` waits for the work, then sends each worker a
//!   shutdown frame and reaps it; `terminate` drops queued work and SIGKILLs the workers. Every
//!   task's result is delivered or failed — a dropped job fails its chunk through the
//!   [`ChunkSink`] — so nothing waits forever, and every child is reaped, so no zombie is left.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_core::{
    check_workers, Batch, ChunkSink, Error, Executor, ExitCause, Payload, Result, Task,
};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::child::ExitWatch;
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
pub trait Launcher: Send + Sync + 'static {
    /// Starts a worker connected to the returned stream. Called when the pool is created, and
    /// from a supervisor thread to replace a worker that died.
    fn launch(&self) -> Result<Worker>;

    /// Waits until a launched worker is ready to serve. The pool launches all its workers
    /// first and then waits for each, so that they start up in parallel. On `Err`, the
    /// launcher has already ended and reaped the worker. The default: ready at once (a forked
    /// worker serves from the moment it exists).
    fn ready(&self, worker: &Worker) -> Result<()> {
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

struct Shared<L> {
    launcher: L,
    spare: Mutex<Spare>,
    init: Option<Initializer>,
    init_error: Mutex<Option<String>>,
    counters: Counters,
    queue: Mutex<Queue>,
    work: Condvar,
    idle: Arc<Idle>,
    pids: Mutex<Vec<Option<Pid>>>,
    workers: usize,
}

impl<L> Shared<L> {
    /// The error for work refused by a closed pool.
    fn refusal(&self) -> Error {
        match &*lock(&self.init_error) {
            Some(message) => Error::InitializerFailed(message.clone()),
            None => Error::PoolClosed("the pool no longer accepts work"),
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
pub struct ProcessPool<L: Launcher> {
    shared: Arc<Shared<L>>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
}

impl<L: Launcher> std::fmt::Debug for ProcessPool<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPool")
            .field("workers", &self.shared.workers)
            .field("pids", &*lock(&self.shared.pids))
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
            match launcher.ready(&w) {
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
            counters: Counters::default(),
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            idle: Arc::new(Idle {
                outstanding: Mutex::new(0),
                zero: Condvar::new(),
            }),
            pids: Mutex::new(started.iter().map(|w| Some(w.pid)).collect()),
            workers,
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
                    let pool = ProcessPool {
                        shared,
                        supervisors: Mutex::new(supervisors),
                    };
                    let _ = pool.terminate();
                    return Err(Error::Io(e));
                }
            }
        }
        Ok(ProcessPool {
            shared,
            supervisors: Mutex::new(supervisors),
        })
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.shared.workers
    }

    /// The current workers' process ids (a slot is `None` while its worker is replaced).
    pub fn pids(&self) -> Vec<Option<Pid>> {
        lock(&self.shared.pids).clone()
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

    /// Refuses new work from now on.
    pub fn close(&self) {
        lock(&self.shared.queue).closed = true;
    }

    /// Waits for all submitted work, then stops and reaps the workers. Needs `close` (or
    /// `terminate`) first: otherwise [`Error::JoinBeforeClose`].
    pub fn join(&self) -> Result<()> {
        if !lock(&self.shared.queue).closed {
            return Err(Error::JoinBeforeClose);
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
        Ok(())
    }

    /// Drops queued work (its results fail with [`Error::PoolClosed`]) and kills the workers.
    pub fn terminate(&self) -> Result<()> {
        let dropped = {
            let mut q = lock(&self.shared.queue);
            q.closed = true;
            q.terminated = true;
            q.stopping = true;
            std::mem::take(&mut q.jobs)
        };
        drop(dropped);
        self.shared.work.notify_all();
        for pid in lock(&self.shared.pids).iter().flatten() {
            let _ = kill(*pid, Signal::SIGKILL);
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
        self.close();
        let _ = self.join();
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

/// The supervisor of worker slot `slot`: serves it, and replaces it when it dies.
fn supervise<L: Launcher>(shared: &Shared<L>, slot: usize, mut worker: Worker) {
    loop {
        match serve(shared, &worker) {
            End::InitFailed(message, sent) => {
                shared.initializer_failed(message, sent);
                lock(&shared.pids)[slot] = None;
                drop(worker.stream);
                reap(worker.pid);
                return;
            }
            End::Stop => {
                let terminated = lock(&shared.queue).terminated;
                lock(&shared.pids)[slot] = None;
                stop_and_reap(worker, terminated);
                return;
            }
            End::Broken(mut sent) => {
                let pid = worker.pid;
                drop(worker.stream);
                let cause = reap(pid);
                lock(&shared.pids)[slot] = None;
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
                    Some(w) => {
                        lock(&shared.pids)[slot] = Some(w.pid);
                        worker = w;
                    }
                    None => return,
                }
            }
        }
    }
}

/// Starts a replacement worker, retrying a few times. If none can be started and no worker is
/// left, the queued work is failed rather than left waiting.
fn launch_replacement<L: Launcher>(shared: &Shared<L>) -> Option<Worker> {
    let mut last_error = None;
    for attempt in 0..3 {
        if lock(&shared.queue).stopping {
            return None;
        }
        match shared
            .launcher
            .launch()
            .and_then(|w| shared.launcher.ready(&w).map(|()| w))
        {
            Ok(w) => return Some(w),
            Err(e) => last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(10 << attempt));
    }
    if lock(&shared.pids).iter().all(Option::is_none) {
        let jobs = std::mem::take(&mut lock(&shared.queue).jobs);
        let cause = std::sync::Arc::new(last_error.unwrap_or(Error::PoolClosed("stopping")));
        for job in jobs {
            (job.on_done)(Err(Error::NoWorkers {
                cause: cause.clone(),
            }));
        }
    }
    None
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
pub fn reap(pid: Pid) -> ExitCause {
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

/// Asks a healthy worker to stop (or kills it, after `terminate`), then reaps it.
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
        reap(worker.pid);
        return;
    }
    drop(worker.stream);
    reap(worker.pid);
}
