//! # multiproc-mpi
//!
//! The MPI backend of [multiproc](https://docs.rs/multiproc): a [`Pool`] whose workers are the
//! ranks of an MPI job, for the day the workload moves from one machine to a cluster. The
//! same `fn` tasks, the same `map`/`starmap`/`apply_async`/`imap` (the
//! `Executor` trait), on a different backend.
//!
//! **Static launch, mpi4py.futures style.** The program is started by `mpirun -n N` (or
//! Slurm's `srun -n N`): N copies of the same binary. [`init()`] first in `main` initialises
//! MPI; rank 0 returns from it and runs `main`; ranks 1..N-1 become workers inside it and
//! never return (they exit 0 when rank 0 is done). So a pool has at most N-1 workers.
//!
//! ```no_run
//! use multiproc_core::Executor;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> multiproc_core::Result<()> {
//!     multiproc_mpi::init(); // ranks 1.. serve tasks in here and never return
//!     let pool = multiproc_mpi::Pool::new(multiproc_mpi::worker_ranks())?;
//!     assert_eq!(pool.map(square, 0..4)?, vec![0, 1, 4, 9]);
//!     Ok(())
//! } // rank 0 shuts the workers down and finalises MPI when main returns
//! ```
//!
//! Run it with `mpirun -n 3 ./target/release/my_program` (one coordinator, two workers).
//!
//! **How a task crosses.** As in the fork and spawn backends: a task is a function pointer,
//! sent as its offset from a fixed function of the binary (`multiproc_process::trampoline`),
//! with its arguments encoded by the pools' codec, in one MPI message. Every rank runs the same
//! binary; `init` checks that they do (a fingerprint of the image, broadcast by rank 0) and
//! aborts the job if not.
//!
//! **Failures.** A task's panic fails only that task ([`Error::TaskPanicked`]). A rank that
//! dies (a signal, `abort`, `exit`) takes the whole job down: Open MPI 4 has no fault
//! tolerance, and `mpirun` kills every rank and exits non-zero as soon as it notices, with a
//! message naming the rank — never a hang, never a partial result.
//!
//! **Data.** Arguments and results are copied (per task). Data every task needs goes once per
//! worker through the pool's initializer ([`Pool::with_initializer`]): by `MPI_Bcast` when the
//! pool has every worker rank and the argument is large, else one message per rank. Data
//! that every rank of a node can read in place goes once per node into an MPI-3
//! shared-memory window ([`Pool::with_shared`], read with [`shared`]). Values
//! holding file descriptors (shared arrays, queues, pipes) cannot cross between ranks: they
//! are refused with [`Error::Serialization`].
//!
//! Building this crate needs an MPI library (Open MPI or MPICH, with `mpicc`) and libclang
//! (rsmpi generates its bindings with bindgen). It is not part of the multiproc workspace's
//! default build for that reason.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod dispatch;
mod protocol;
mod raw;
mod shared;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

use mpi::topology::Communicator;
use mpi::traits::Root;
use mpi::Threading;

use multiproc_core::exit::ExitStage;
use multiproc_core::{
    check_workers, Batch, ChunkSink, Error, Executor, Home, Payload, Result, Task,
};
use multiproc_process::codec::{decode_items_fds, encode_items_fds};
use multiproc_process::trampoline::offset_of;

use crate::dispatch::{Cmd, Deliver, Dispatcher, InitSpec, Job, SharedSrc};

pub use dispatch::{BCAST_MIN, PIPELINE_BYTES, PIPELINE_DEPTH};

/// This process's MPI state on rank 0 (worker ranks never get past [`init`]).
struct Runtime {
    tx: Mutex<Option<Sender<Cmd>>>,
    size: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Initialises MPI and turns ranks 1..N-1 into workers. Call it first in `main`: on a worker
/// rank it serves tasks until rank 0 is done, then exits the process with code 0, never
/// returning; everything before it runs on every rank. On rank 0 it returns (at once on later
/// calls) and `main` carries on; MPI is finalised when `main` returns or the process calls
/// `exit` (an `atexit` handler), or earlier by [`finalize`].
///
/// It first runs [`multiproc_spawn::init`], so a spawn pool inside a rank works too.
///
/// MPI is initialised with `MPI_THREAD_FUNNELED` on a thread of its own, which then makes
/// every MPI call of the process: any thread of rank 0 may use a pool. A job whose ranks run
/// different binaries is aborted (every rank must run the same file: tasks travel as code
/// offsets).
///
/// Without `mpirun` (a plain `./program`), MPI starts as a singleton: rank 0 of 1, with no
/// worker ranks, so pools cannot be created.
pub fn init() {
    multiproc_spawn::init();
    RUNTIME.get_or_init(start);
}

/// The number of worker ranks of this job (`mpirun -n N` gives N-1), initialising MPI first
/// if [`init`] has not run.
pub fn worker_ranks() -> usize {
    init();
    RUNTIME.get().map_or(0, |r| r.size - 1)
}

/// Shuts every worker rank down and finalises MPI now, instead of at exit. Pools still
/// alive are terminated (their queued work fails with [`Error::PoolClosed`]); tasks running
/// on ranks finish first. Later pool calls fail with [`Error::PoolClosed`]. Idempotent.
pub fn finalize() {
    let Some(rt) = RUNTIME.get() else { return };
    let tx = rt.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(tx) = tx {
        let _ = tx.send(Cmd::Finalize);
    }
    let thread = rt.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = thread {
        let _ = t.join();
    }
}

/// In a task of a pool made by [`Pool::with_shared`]: that pool's data, read in place in
/// this node's shared window (the latest such pool this rank served). On rank 0, and on a
/// rank that has served no such pool, an [`Error::InvalidArgument`]; also if the data's
/// length or alignment does not fit `T`.
///
/// The memory stays mapped until the rank's MPI is finalised, when the worker rank exits:
/// a thread that a task leaves running must not read it after that.
pub fn shared<T: bytemuck::Pod>() -> Result<&'static [T]> {
    let bytes: &'static [u8] = *shared::CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    if bytes.is_empty() {
        return Err(Error::invalid(
            "shared",
            "no shared data here: call it in a task of a pool made by Pool::with_shared",
        ));
    }
    bytemuck::try_cast_slice(bytes).map_err(|e| {
        Error::invalid(
            "shared",
            format!("the shared data does not fit the asked type: {e}"),
        )
    })
}

fn finalize_at_exit() {
    finalize();
}

/// What identifies this binary image: the offset of a task runner from the trampolines'
/// anchor (differs between builds) and the executable's size.
fn fingerprint() -> [u64; 2] {
    fn probe(x: u64) -> u64 {
        x
    }
    let offset = offset_of(probe as Task<u64, u64>).unwrap_or(0);
    let len = std::fs::metadata("/proc/self/exe").map_or(0, |m| m.len());
    [offset, len]
}

/// Makes this thread's short sleeps short: Linux adds a "timer slack" of 50 µs to every
/// sleep by default, so the backoff's 5 µs naps would last 55 µs, long enough for pipelined
/// trivial tasks to run out while the dispatcher dozes. 1 µs of slack instead.
fn precise_sleeps() {
    multiproc_sys::thread::set_timer_slack_ns(1000);
}

fn start() -> Runtime {
    let (ready_tx, ready_rx) = channel::<(i32, i32)>();
    let (tx, rx) = channel::<Cmd>();
    let thread = std::thread::Builder::new()
        .name("multiproc-mpi".into())
        .spawn(move || {
            let Some((universe, provided)) = mpi::initialize_with_threading(Threading::Funneled)
            else {
                eprintln!("multiproc-mpi: MPI was initialised before multiproc_mpi::init()");
                std::process::exit(70);
            };
            let world = universe.world();
            precise_sleeps();
            if provided < Threading::Funneled {
                eprintln!("multiproc-mpi: this MPI library does not support MPI_THREAD_FUNNELED");
                world.abort(70);
            }
            let (rank, size) = (world.rank(), world.size());
            let mut print = fingerprint();
            world.process_at_rank(0).broadcast_into(&mut print[..]);
            if print != fingerprint() {
                eprintln!(
                    "multiproc-mpi: rank {rank} runs a different binary from rank 0 (every \
                     rank must run the same executable file: tasks travel as code offsets)"
                );
                world.abort(71);
            }
            let comms = shared::Comms::new(&world);
            let _ = ready_tx.send((rank, size));
            if rank == 0 {
                Dispatcher::new(&world, &comms).run(rx);
            } else {
                drop(rx);
                // SAFETY: rank 0 runs this same image (checked by the fingerprint above)
                // and sends only frames made by this crate.
                unsafe { worker::serve(&world, &comms) };
            }
            // Every worker has said goodbye (rank 0) or was told to leave (a worker). Our
            // communicators are freed before MPI is finalised.
            drop(comms);
            drop(universe);
        })
        .expect("starting the MPI thread");
    let Ok((rank, size)) = ready_rx.recv() else {
        let _ = thread.join();
        eprintln!("multiproc-mpi: MPI failed to initialise");
        std::process::exit(70);
    };
    if rank != 0 {
        let code = if thread.join().is_ok() { 0 } else { 70 };
        std::process::exit(code);
    }
    // Last at exit, after the pools' threads and children are done with MPI.
    multiproc_core::exit::at_exit(ExitStage::Runtime, finalize_at_exit);
    Runtime {
        tx: Mutex::new(Some(tx)),
        size: size as usize,
        thread: Mutex::new(Some(thread)),
    }
}

fn send(cmd: Cmd) -> Result<()> {
    init();
    let rt = RUNTIME.get().expect("init sets the runtime");
    let tx = rt.tx.lock().unwrap_or_else(|e| e.into_inner());
    match tx.as_ref() {
        Some(tx) => tx
            .send(cmd)
            .map_err(|_| Error::PoolClosed("MPI was finalised")),
        None => Err(Error::PoolClosed("MPI was finalised")),
    }
}

/// A pool of MPI worker ranks with Python's `multiprocessing.Pool` API ([`Executor`]).
///
/// A pool claims worker ranks for itself until it is joined or dropped; pools created one
/// after another reuse them, and pools alive at the same time each need their own.
/// `terminate` fails queued work and tells the ranks to skip what they have not started; a
/// task already running finishes (an MPI rank cannot be stopped without ending the job), and
/// its rank is free again once it has. `Drop` is `close` + `join`.
#[derive(Debug)]
pub struct Pool {
    id: u64,
    workers: usize,
    closed: AtomicBool,
    joined: AtomicBool,
    home: Home,
}

impl Pool {
    /// A pool of `workers` worker ranks; [`worker_ranks()`] gives all of them.
    /// [`Error::InvalidArgument`] if fewer are free. Initialises MPI if [`init`] has not run
    /// (then a worker rank becomes a worker here instead, having run `main` up to this point).
    pub fn new(workers: usize) -> Result<Self> {
        Self::create(workers, None, None)
    }

    /// Like [`new`](Self::new), and every worker rank runs `initializer(arg)` once before its
    /// first task (Python's `Pool(processes, initializer, initargs)`): the argument is encoded
    /// once and sent once per rank — by `MPI_Bcast` when the pool has every worker rank and
    /// the argument is at least [`BCAST_MIN`] bytes. Returns when every rank has run it; if
    /// one panics, [`Error::InitializerFailed`] naming the rank.
    pub fn with_initializer<A: Payload>(
        workers: usize,
        initializer: Task<A, ()>,
        arg: &A,
    ) -> Result<Self> {
        let call = offset_of(initializer)?;
        let payload = encode(std::slice::from_ref(arg), "the initializer's argument")?;
        Self::create(workers, Some(InitSpec { call, payload }), None)
    }

    /// A pool of every worker rank whose tasks read `data` in place through [`shared`]: one
    /// copy per node, in an MPI-3 shared-memory window (`MPI_Win_allocate_shared`) that
    /// every rank of the node maps. Rank 0 copies `data` into its node's window once; the
    /// other nodes' leaders receive it by broadcast among the nodes' leaders. So on one
    /// machine the data is never sent at all, and a cluster moves it once per node, not once
    /// per rank.
    ///
    /// `workers` must be [`worker_ranks()`] (window allocation is collective over every
    /// rank), all free. The windows are not freed before the job ends: make one such pool
    /// per dataset, not one per map.
    pub fn with_shared<T: bytemuck::Pod>(workers: usize, data: &[T]) -> Result<Self> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let src = SharedSrc {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        };
        // `data` stays borrowed, unchanged, until `create` has its reply (SharedSrc's
        // contract).
        Self::create(workers, None, Some(src))
    }

    fn create(workers: usize, init: Option<InitSpec>, shared: Option<SharedSrc>) -> Result<Self> {
        let workers = check_workers(workers)?.get();
        let (reply, answer) = channel();
        send(Cmd::NewPool {
            workers,
            init,
            shared,
            reply,
        })?;
        let id = answer
            .recv()
            .map_err(|_| Error::PoolClosed("MPI was finalised"))??;
        Ok(Pool {
            id,
            workers,
            closed: AtomicBool::new(false),
            joined: AtomicBool::new(false),
            home: Home::here("pool"),
        })
    }

    fn check_owner(&self) -> Result<()> {
        self.home.check()
    }
}

/// Encodes `items` (a chunk) with the pools' codec; items holding descriptors are refused.
fn encode<T: serde::Serialize + 'static>(items: &[T], what: &str) -> Result<Vec<u8>> {
    let (bytes, fds) = encode_items_fds(items)
        .map_err(|e| Error::Serialization(format!("encoding {what}: {e}")))?;
    if !fds.is_empty() {
        return Err(Error::Serialization(format!(
            "{what} holds a file descriptor (a shared array, queue, lock or pipe end), which \
             cannot cross between MPI ranks"
        )));
    }
    if bytes.len() > (i32::MAX as usize) - 64 {
        return Err(Error::Serialization(format!(
            "{what} encodes to {} bytes; an MPI message holds less than 2 GiB: use smaller \
             chunks",
            bytes.len()
        )));
    }
    Ok(bytes)
}

impl Pool {
    /// `join`, waiting at most `timeout` if one is given: `Ok(false)` if the pool was still
    /// busy then. The dispatcher answers every joiner once the pool is idle; one that gave
    /// up has dropped its receiver, which the dispatcher's send tolerates.
    fn join_until(&self, timeout: Option<std::time::Duration>) -> Result<bool> {
        self.check_owner()?;
        if !self.closed.load(Ordering::Acquire) {
            return Err(Error::JoinBeforeClose);
        }
        let (reply, answer) = channel();
        if send(Cmd::Join {
            pool: self.id,
            reply,
        })
        .is_err()
        {
            return Ok(true); // finalised: nothing is left to wait for
        }
        let r = match timeout {
            None => answer.recv().unwrap_or(Ok(())),
            Some(t) => match answer.recv_timeout(t) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Ok(false),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Ok(()),
                Ok(r) => r,
            },
        };
        self.joined.store(true, Ordering::Release);
        r.map(|()| true)
    }
}

impl Executor for Pool {
    fn processes(&self) -> usize {
        self.workers
    }

    fn submit<A, R>(&self, f: Task<A, R>, batch: Batch<A>, sink: ChunkSink<R>) -> Result<()>
    where
        A: Payload,
        R: Payload,
    {
        self.check_owner()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::PoolClosed("the pool was closed"));
        }
        let call = offset_of(f)?;
        let mut jobs = Vec::with_capacity(batch.n_chunks());
        for (index, chunk) in batch.into_chunks() {
            let payload = encode(&chunk, "a chunk of arguments")?;
            let sink = sink.clone();
            let deliver: Deliver = Box::new(move |outcome: Result<&[u8]>| {
                sink.deliver(
                    index,
                    outcome.and_then(|bytes| {
                        decode_items_fds::<R>(bytes, Vec::new())
                            .map_err(|e| Error::Serialization(format!("decoding the results: {e}")))
                    }),
                );
            });
            jobs.push(Job {
                payload,
                call,
                deliver,
            });
        }
        send(Cmd::Submit {
            pool: self.id,
            jobs,
        })
    }

    fn close(&self) {
        if self.check_owner().is_ok() && !self.closed.swap(true, Ordering::AcqRel) {
            let _ = send(Cmd::Close { pool: self.id });
        }
    }

    fn join(&self) -> Result<()> {
        self.join_until(None).map(drop)
    }

    fn join_timeout(&self, timeout: std::time::Duration) -> Result<bool> {
        self.join_until(Some(timeout))
    }

    fn terminate(&self) -> Result<()> {
        self.check_owner()?;
        self.closed.store(true, Ordering::Release);
        let (reply, answer) = channel();
        if send(Cmd::Terminate {
            pool: self.id,
            reply,
        })
        .is_ok()
        {
            let _ = answer.recv();
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.check_owner().is_err() || self.joined.load(Ordering::Acquire) {
            return;
        }
        self.close();
        let _ = self.join();
    }
}
