//! Rank 0's dispatcher: the one thread of rank 0 that makes MPI calls. Pools talk to it
//! through a channel; it owns every queue, every worker rank's state and every request.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, Sender};

use mpi::point_to_point::{MatchedReceiveVec, Source};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::Root;

use multiproc_core::{Error, Result};

use crate::protocol::{take_reply, Reply, Work, WorkTrailer, TAG_CANCEL, TAG_REPLY, TAG_WORK};
use crate::raw::{Backoff, Outbox};
use crate::shared::{self, Comms};

/// Hands a chunk's outcome (its encoded results) to whoever waits for it.
pub(crate) type Deliver = Box<dyn FnOnce(Result<&[u8]>) + Send>;

/// One encoded chunk.
pub(crate) struct Job {
    /// The encoded arguments (the trailer is appended when it is sent).
    pub(crate) payload: Vec<u8>,
    /// The `call` word (`offset_of`).
    pub(crate) call: u64,
    /// Where its outcome goes.
    pub(crate) deliver: Deliver,
}

/// The initializer of a new pool: its `call` word and encoded argument.
pub(crate) struct InitSpec {
    pub(crate) call: u64,
    pub(crate) payload: Vec<u8>,
}

/// Data to publish in the nodes' shared windows: the creating thread's slice, which it does
/// not touch while it waits for the dispatcher's reply.
pub(crate) struct SharedSrc {
    pub(crate) ptr: *const u8,
    pub(crate) len: usize,
}

// SAFETY: the pointer is only read, by the dispatcher, while the thread that owns the slice
// is blocked waiting for the reply to the command that carries it (`Pool::with_shared`).
unsafe impl Send for SharedSrc {}

/// What pools ask of the dispatcher.
pub(crate) enum Cmd {
    /// Claim `workers` free ranks, run the initializer on each, reply with the pool's id.
    NewPool {
        workers: usize,
        init: Option<InitSpec>,
        shared: Option<SharedSrc>,
        reply: Sender<Result<u64>>,
    },
    /// Queue these chunks.
    Submit { pool: u64, jobs: Vec<Job> },
    /// Take no more work.
    Close { pool: u64 },
    /// Fail queued work, ask the ranks to skip what they have not started.
    Terminate { pool: u64, reply: Sender<()> },
    /// Reply once the (closed) pool has no work left; its ranks are then free.
    Join {
        pool: u64,
        reply: Sender<Result<()>>,
    },
    /// Shut every worker rank down and end the loop (MPI is finalised after it).
    Finalize,
}

/// How many chunks a worker rank may hold (running + queued at it) while the pool's queue has
/// at least two chunks per rank: the next chunk is already there when one finishes, so a
/// worker never waits a round trip. Near the tail, one at a time, so that no rank hoards.
pub const PIPELINE_DEPTH: usize = 4;
/// A chunk larger than this goes only to a rank that holds nothing: a rank does not collect
/// large arguments it will not read for a while.
pub const PIPELINE_BYTES: usize = 32 << 10;
/// An initializer argument of at least this size goes by `MPI_Bcast` when the pool has every
/// worker rank (a tree: log2(N) steps, rank 0 sends it once or twice); smaller ones, and
/// pools of some ranks only, get one message per rank.
pub const BCAST_MIN: usize = 64 << 10;

#[derive(Debug, Default)]
struct RankState {
    pool: Option<u64>,
    in_flight: usize,
    init_pending: bool,
    gone: bool,
}

impl RankState {
    fn is_free(&self) -> bool {
        self.pool.is_none() && self.in_flight == 0 && !self.init_pending && !self.gone
    }
}

#[derive(Default)]
struct PoolState {
    ranks: Vec<i32>,
    queue: VecDeque<Job>,
    closed: bool,
    terminated: bool,
    joiners: Vec<Sender<Result<()>>>,
    creating: Option<Sender<Result<u64>>>,
    init_pending: usize,
    init_error: Option<String>,
}

struct InFlight {
    rank: i32,
    pool: u64,
    deliver: Option<Deliver>,
}

pub(crate) struct Dispatcher<'w> {
    world: &'w SimpleCommunicator,
    comms: &'w Comms,
    ranks: Vec<RankState>,
    pools: HashMap<u64, PoolState>,
    in_flight: HashMap<u64, InFlight>,
    outbox: Outbox,
    next_pool: u64,
    next_job: u64,
    finalizing: bool,
}

fn closed_err(why: &'static str) -> Error {
    Error::PoolClosed(why)
}

impl<'w> Dispatcher<'w> {
    pub(crate) fn new(world: &'w SimpleCommunicator, comms: &'w Comms) -> Self {
        let size = world.size() as usize;
        let mut ranks: Vec<RankState> = (0..size).map(|_| RankState::default()).collect();
        ranks[0].gone = true; // rank 0 is us, never a worker
        Dispatcher {
            world,
            comms,
            ranks,
            pools: HashMap::new(),
            in_flight: HashMap::new(),
            outbox: Outbox::new(),
            next_pool: 1,
            next_job: 1,
            finalizing: false,
        }
    }

    /// Runs until [`Cmd::Finalize`] (or every pool handle and the runtime are gone) and every
    /// worker rank has left.
    pub(crate) fn run(mut self, rx: Receiver<Cmd>) {
        let mut backoff = Backoff::default();
        loop {
            let mut progressed = false;
            while let Ok(cmd) = rx.try_recv() {
                self.handle(cmd);
                progressed = true;
            }
            while let Some(m) = self
                .world
                .any_process()
                .immediate_matched_probe_with_tag(TAG_REPLY)
            {
                let (mut frame, status) = m.matched_receive_vec::<u8>();
                self.reply(status.source_rank(), &mut frame);
                progressed = true;
            }
            progressed |= self.outbox.poll();
            progressed |= self.dispatch();
            self.settle();
            if self.finalizing
                && self.outbox.is_empty()
                && self.ranks.iter().skip(1).all(|r| r.gone)
            {
                return;
            }
            if progressed {
                backoff.reset();
                continue;
            }
            let busy = self.finalizing
                || !self.in_flight.is_empty()
                || !self.outbox.is_empty()
                || self.pools.values().any(|p| p.init_pending > 0);
            if !busy {
                // Nothing can happen but a command: block on the channel.
                match rx.recv() {
                    Ok(cmd) => self.handle(cmd),
                    Err(_) => self.handle(Cmd::Finalize),
                }
                backoff.reset();
            } else if let Some(pause) = backoff.next() {
                if let Ok(cmd) = rx.recv_timeout(pause) {
                    self.handle(cmd);
                    backoff.reset();
                }
            }
        }
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::NewPool {
                workers,
                init,
                shared,
                reply,
            } => self.new_pool(workers, init, shared, reply),
            Cmd::Submit { pool, jobs } => match self.pools.get_mut(&pool) {
                Some(p) if !p.closed => p.queue.extend(jobs),
                _ => {
                    for job in jobs {
                        (job.deliver)(Err(closed_err("the pool was closed")));
                    }
                }
            },
            Cmd::Close { pool } => {
                if let Some(p) = self.pools.get_mut(&pool) {
                    p.closed = true;
                }
            }
            Cmd::Terminate { pool, reply } => {
                self.terminate(pool);
                let _ = reply.send(());
            }
            Cmd::Join { pool, reply } => match self.pools.get_mut(&pool) {
                Some(p) if p.closed => p.joiners.push(reply),
                Some(_) => {
                    let _ = reply.send(Err(Error::invalid(
                        "join",
                        "the pool must be closed or terminated first, as in Python",
                    )));
                }
                None => {
                    let _ = reply.send(Ok(()));
                }
            },
            Cmd::Finalize => self.finalize(),
        }
    }

    fn new_pool(
        &mut self,
        workers: usize,
        init: Option<InitSpec>,
        shared: Option<SharedSrc>,
        reply: Sender<Result<u64>>,
    ) {
        if self.finalizing {
            let _ = reply.send(Err(closed_err("MPI was finalised")));
            return;
        }
        let all = self.ranks.len() - 1;
        let free: Vec<i32> = (1..self.ranks.len())
            .filter(|&r| self.ranks[r].is_free())
            .map(|r| r as i32)
            .take(workers)
            .collect();
        if free.len() < workers {
            let _ = reply.send(Err(Error::invalid(
                "processes",
                format!(
                    "asked for {workers} workers, but {} of this job's {all} worker ranks are \
                     free (a live pool keeps its ranks until it is joined or dropped; launch \
                     with `mpirun -n {}` or more for {workers} workers)",
                    free.len(),
                    workers + 1
                ),
            )));
            return;
        }
        if shared.is_some() && workers != all {
            let _ = reply.send(Err(Error::invalid(
                "workers",
                format!(
                    "a pool with shared data needs every worker rank ({all}): allocating the \
                     nodes' shared windows is collective over every rank"
                ),
            )));
            return;
        }
        let id = self.next_pool;
        self.next_pool += 1;
        let mut pool = PoolState {
            ranks: free.clone(),
            ..PoolState::default()
        };
        for &r in &free {
            self.ranks[r as usize].pool = Some(id);
        }
        if let Some(src) = shared {
            pool.creating = Some(reply);
            pool.init_pending = free.len();
            for &r in &free {
                self.ranks[r as usize].init_pending = true;
                let mut frame = Vec::with_capacity(32);
                WorkTrailer {
                    pool: id,
                    id: src.len as u64,
                    call: 0,
                    kind: Work::Shared,
                }
                .append_to(&mut frame);
                self.outbox.send(r, TAG_WORK, frame);
            }
            // SAFETY: `SharedSrc`'s contract: the creating thread's slice of `len` bytes,
            // unchanged and alive until that thread gets its reply, sent after this.
            let bytes = unsafe { std::slice::from_raw_parts(src.ptr, src.len) };
            // Every rank is free and reads the frame above at once, then joins in.
            shared::publish(self.comms, src.len, Some(bytes));
            self.pools.insert(id, pool);
            return;
        }
        match init {
            None => {
                let _ = reply.send(Ok(id));
            }
            Some(init) => {
                pool.creating = Some(reply);
                pool.init_pending = free.len();
                let bcast = free.len() == all && init.payload.len() >= BCAST_MIN;
                for &r in &free {
                    self.ranks[r as usize].init_pending = true;
                    let mut frame = if bcast {
                        Vec::with_capacity(32)
                    } else {
                        init.payload.clone()
                    };
                    WorkTrailer {
                        pool: id,
                        id: if bcast { init.payload.len() as u64 } else { 0 },
                        call: init.call,
                        kind: if bcast { Work::InitBcast } else { Work::Init },
                    }
                    .append_to(&mut frame);
                    self.outbox.send(r, TAG_WORK, frame);
                }
                if bcast {
                    // Every worker rank is in this pool and free, so each reaches the
                    // broadcast as soon as it reads the frame above.
                    let mut payload = init.payload;
                    self.world
                        .process_at_rank(0)
                        .broadcast_into(&mut payload[..]);
                }
            }
        }
        self.pools.insert(id, pool);
    }

    fn terminate(&mut self, pool: u64) {
        let Some(p) = self.pools.get_mut(&pool) else {
            return;
        };
        p.closed = true;
        p.terminated = true;
        for job in p.queue.drain(..) {
            (job.deliver)(Err(closed_err("the pool was terminated")));
        }
        for f in self.in_flight.values_mut().filter(|f| f.pool == pool) {
            if let Some(d) = f.deliver.take() {
                d(Err(closed_err(
                    "the pool was terminated (a task already running on a rank finishes: \
                     an MPI rank cannot be stopped without ending the job)",
                )));
            }
        }
        for &r in &p.ranks {
            self.outbox.send(r, TAG_CANCEL, pool.to_le_bytes().to_vec());
        }
    }

    fn finalize(&mut self) {
        if self.finalizing {
            return;
        }
        self.finalizing = true;
        let ids: Vec<u64> = self.pools.keys().copied().collect();
        for id in ids {
            self.terminate(id);
        }
        for r in 1..self.ranks.len() {
            let mut frame = Vec::with_capacity(32);
            WorkTrailer {
                pool: 0,
                id: 0,
                call: 0,
                kind: Work::Shutdown,
            }
            .append_to(&mut frame);
            self.outbox.send(r as i32, TAG_WORK, frame);
        }
    }

    fn reply(&mut self, rank: i32, frame: &mut Vec<u8>) {
        let Some((id, kind)) = take_reply(frame) else {
            eprintln!("multiproc-mpi: rank 0 got a malformed reply from rank {rank}");
            self.world.abort(70);
        };
        let text = || String::from_utf8_lossy(frame).into_owned();
        match kind {
            Reply::Done | Reply::Panicked | Reply::Failed | Reply::Skipped => {
                let Some(f) = self.in_flight.remove(&id) else {
                    return;
                };
                self.ranks[f.rank as usize].in_flight -= 1;
                if let Some(deliver) = f.deliver {
                    deliver(match kind {
                        Reply::Done => Ok(&frame[..]),
                        Reply::Panicked => Err(Error::TaskPanicked { message: text() }),
                        Reply::Failed => Err(Error::Serialization(text())),
                        _ => Err(closed_err("the pool was terminated")),
                    });
                }
            }
            Reply::InitOk | Reply::InitFailed => {
                self.ranks[rank as usize].init_pending = false;
                if let Some(p) = self.pools.get_mut(&id) {
                    p.init_pending -= 1;
                    if kind == Reply::InitFailed && p.init_error.is_none() {
                        p.init_error = Some(format!("rank {rank}: {}", text()));
                    }
                }
            }
            Reply::Bye => self.ranks[rank as usize].gone = true,
        }
    }

    /// Sends queued chunks to their pools' ranks; returns whether it sent any.
    fn dispatch(&mut self) -> bool {
        let mut sent_any = false;
        for (&id, p) in self.pools.iter_mut() {
            if p.terminated || p.init_pending > 0 || p.creating.is_some() || p.queue.is_empty() {
                continue;
            }
            let depth = if p.queue.len() >= 2 * p.ranks.len() {
                PIPELINE_DEPTH
            } else {
                1
            };
            loop {
                let mut sent = false;
                for &r in &p.ranks {
                    let Some(front) = p.queue.front() else { break };
                    let rs = &mut self.ranks[r as usize];
                    if rs.in_flight >= depth
                        || (rs.in_flight > 0 && front.payload.len() > PIPELINE_BYTES)
                    {
                        continue;
                    }
                    let job = p.queue.pop_front().expect("a front job");
                    let job_id = self.next_job;
                    self.next_job += 1;
                    let mut frame = job.payload;
                    WorkTrailer {
                        pool: id,
                        id: job_id,
                        call: job.call,
                        kind: Work::Task,
                    }
                    .append_to(&mut frame);
                    self.outbox.send(r, TAG_WORK, frame);
                    rs.in_flight += 1;
                    self.in_flight.insert(
                        job_id,
                        InFlight {
                            rank: r,
                            pool: id,
                            deliver: Some(job.deliver),
                        },
                    );
                    sent = true;
                }
                if !sent {
                    break;
                }
                sent_any = true;
            }
        }
        sent_any
    }

    /// Answers pool creations whose initializers have all replied, and joins of pools with no
    /// work left (their ranks become free).
    fn settle(&mut self) {
        let mut done = Vec::new();
        for (&id, p) in self.pools.iter_mut() {
            if p.init_pending == 0 {
                if let Some(reply) = p.creating.take() {
                    match p.init_error.take() {
                        None => {
                            let _ = reply.send(Ok(id));
                        }
                        Some(e) => {
                            let _ = reply.send(Err(Error::InitializerFailed(e)));
                            done.push(id);
                            continue;
                        }
                    }
                }
            }
            let idle = p.queue.is_empty()
                && p.init_pending == 0
                && p.ranks
                    .iter()
                    .all(|&r| self.ranks[r as usize].in_flight == 0);
            if p.closed && idle && (!p.joiners.is_empty() || self.finalizing) {
                for j in p.joiners.drain(..) {
                    let _ = j.send(Ok(()));
                }
                done.push(id);
            }
        }
        for id in done {
            if let Some(p) = self.pools.remove(&id) {
                for r in p.ranks {
                    self.ranks[r as usize].pool = None;
                }
            }
        }
    }
}
