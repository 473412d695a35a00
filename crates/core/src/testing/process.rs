//! The failure suite for executors whose workers are processes (fork, spawn): a worker that
//! dies fails only its task, at once, is replaced, and leaves no zombie; a pool that
//! cannot replace any worker breaks with an error instead of hanging; a pool reached from a
//! forked child refuses at once; a pool inside a worker works. Each function takes a
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

/// A worker killed by SIGKILL, abort, a segfault or `exit(7)` mid-task fails that task with
/// [`Error::WorkerDied`] naming the signal or code; the pool replaces it and stays usable.
pub fn a_dying_worker_fails_only_its_task<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    for (how, expected) in [
        (1, ExitCause::Signal(Signal::SIGKILL as i32)),
        (2, ExitCause::Signal(Signal::SIGABRT as i32)),
        (3, ExitCause::Signal(Signal::SIGSEGV as i32)),
        (4, ExitCause::Code(7)),
    ] {
        match p.apply(die, how) {
            Err(Error::WorkerDied { cause, pid }) => {
                assert_eq!(cause, expected, "way {how}");
                assert!(pid > 0);
            }
            other => panic!("way {how}: expected WorkerDied, got {other:?}"),
        }
        assert_eq!(p.map(die, [0, 5, 6, 8]).unwrap(), vec![0, 5, 6, 8]);
    }
}

/// When one worker is killed during an `imap`, every other item still gets its result;
/// a whole `map_async` fails with the death rather than hanging.
pub fn the_rest_of_a_map_completes<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let items = vec![10, 11, 1, 12, 13, 14, 15, 16];
    let results: Vec<_> = p.imap(die, items.clone()).unwrap().collect();
    assert_eq!(results.len(), items.len());
    for (item, r) in items.iter().zip(&results) {
        match (item, r) {
            (1, Err(Error::WorkerDied { cause, .. })) => {
                assert_eq!(*cause, ExitCause::Signal(Signal::SIGKILL as i32))
            }
            (1, other) => panic!("the killed task gave {other:?}"),
            (n, Ok(v)) => assert_eq!(n, v),
            (n, Err(e)) => panic!("task {n} failed with {e}"),
        }
    }
    let mut whole = p.map_async_chunked(die, items, 1).unwrap();
    assert!(matches!(
        whole.get_timeout(Duration::from_secs(10)),
        Err(Error::WorkerDied { .. })
    ));
}

/// The death of an idle-pool worker mid-task is reported as such, by the supervisor that
/// watches the worker's socket, without anyone waiting for a timeout: `apply` (which has no
/// timeout) returns `WorkerDied`. How fast (milliseconds here) is the bench's to measure; the
/// bound below only turns a hang into a failure.
pub fn a_death_is_noticed_at_once<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    p.map_chunked(die, [0, 0], 1).unwrap(); // both workers up and idle
    let t = Instant::now();
    assert!(matches!(p.apply(die, 1), Err(Error::WorkerDied { .. })));
    let took = t.elapsed();
    assert!(took < LIMIT, "took {took:?}");
}

/// Dropping a pool (close + join) and terminating one leave no zombie and no live worker;
/// terminate does not wait for a running task.
pub fn no_zombies_after_drop_or_terminate<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 3);
    let pids = worker_pids(&p);
    assert!(
        !pids.contains(&std::process::id()),
        "a task ran in the parent"
    );
    assert_eq!(p.map(sleep_then, [1, 1, 1]).unwrap(), vec![1, 1, 1]);
    drop(p);
    for &pid in &pids {
        assert!(
            !is_zombie_child(pid) && !is_child(pid),
            "worker {pid} left after drop"
        );
    }

    let p = pool(make, 2);
    let pids = worker_pids(&p);
    // A task that runs until its worker is killed: it waits at a gate nobody opens.
    let gate = GateControl::new();
    let slow = p.apply_async(pid_at_gate, gate.gate()).unwrap();
    gate.wait_started(1);
    let t = Instant::now();
    p.terminate().unwrap();
    assert!(matches!(slow.get(), Err(Error::PoolClosed(_))));
    p.join().unwrap();
    // The task waits at a gate nobody opens: had terminate waited for it, it would never
    // have returned; the bound turns that hang into a failure.
    assert!(t.elapsed() < LIMIT, "terminate waited for the task");
    for &pid in &pids {
        assert!(
            !is_zombie_child(pid) && !is_child(pid),
            "worker {pid} left after terminate"
        );
    }
}

/// As many one-item tasks as workers, each waiting until all have started, run in different
/// workers at once (a pool that gave two to one worker would fail at the gate), and none
/// runs in the parent.
pub fn work_is_spread_over_all_workers<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 3);
    let pids = worker_pids(&p);
    assert_eq!(pids.len(), 3, "tasks shared workers: {pids:?}");
    assert!(
        !pids.contains(&std::process::id()),
        "a task ran in the parent"
    );
}

/// Returns its argument: a large argument and a large result.
pub fn echo_bytes(v: Vec<u8>) -> Vec<u8> {
    v
}

/// A `map` whose arguments and results are both larger than a socket's buffer completes:
/// pipelining never lets the pool and a worker block writing to each other.
pub fn large_arguments_and_results_do_not_deadlock<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let items: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 300_000]).collect();
    let mut pending = p.map_async_chunked(echo_bytes, items.clone(), 1).unwrap();
    match pending.get_timeout(Duration::from_secs(30)) {
        Ok(out) => assert!(out == items, "results differ from the arguments"),
        Err(e) => panic!("large map did not complete: {e}"),
    }
}

/// A checksum of `v` that depends on every element and its position.
pub fn checksum(v: Packed<u64>) -> u64 {
    v.iter().fold(v.len() as u64, |h, &x| h.rotate_left(7) ^ x)
}

/// Aborts the worker on an empty argument; otherwise [`checksum`].
pub fn checksum_or_die(v: Packed<u64>) -> u64 {
    if v.is_empty() {
        std::process::abort();
    }
    checksum(v)
}

/// `len` values that differ for every `seed` (and from those of every other seed).
fn numbers(seed: u64, len: usize) -> Packed<u64> {
    Packed(
        (0..len as u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed)
            .collect(),
    )
}

/// [`checksum`] of `v`, after passing `gate`: tasks queued behind it at its worker wait
/// unread until the test opens the gate.
pub fn checksum_at_gate((v, gate): (Packed<u64>, Gate)) -> u64 {
    gate.pass();
    checksum(v)
}

/// Arguments of several MiB — larger than a socket buffer, and than the process pools'
/// threshold for sending a body through shared memory — arrive intact: also when the next
/// map is encoded while arguments of the last one wait unread at their worker (a buffer
/// reused before its task is answered would be overwritten under the worker), and when later
/// maps reuse the buffers of answered ones (sizes vary, so a reused buffer holds a longer
/// stale value than the next one).
///
/// Deterministic: the first map's tasks wait at a gate; the second map is encoded only after
/// every worker has started one of them (so every task sent with them has been sent), and the
/// gate opens only after that encoding.
pub fn large_arguments_arrive_intact<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let round = |r: u64| {
        let items: Vec<Packed<u64>> = (0..6u64)
            .map(|i| numbers(r * 100 + i, [600_000, 150_000, 400_000][i as usize % 3]))
            .collect();
        let expected: Vec<u64> = items.iter().map(|v| checksum(v.clone())).collect();
        (items, expected)
    };
    let check =
        |mut pending: crate::AsyncResult<Vec<u64>>, expected: Vec<u64>, r: u64| match pending
            .get_timeout(LIMIT)
        {
            Ok(got) => assert_eq!(got, expected, "round {r}"),
            Err(e) => panic!("round {r}: {e}"),
        };
    let ((items0, expected0), (items1, expected1)) = (round(0), round(1));
    let gate = GateControl::new();
    let gated: Vec<(Packed<u64>, Gate)> = items0.into_iter().map(|v| (v, gate.gate())).collect();
    let first = p.map_async_chunked(checksum_at_gate, gated, 1).unwrap();
    // Each worker runs one task of the first map, and the tasks pipelined behind it were
    // sent with it; none has been answered.
    gate.wait_started(2);
    let second = p.map_async_chunked(checksum, items1, 1).unwrap();
    gate.open(6);
    check(first, expected0, 0);
    check(second, expected1, 1);
    for r in 2..4 {
        let (items, expected) = round(r);
        check(
            p.map_async_chunked(checksum, items, 1).unwrap(),
            expected,
            r,
        );
    }
}

/// Large arguments queued behind a task that kills its worker are sent whole to the
/// replacement.
pub fn large_arguments_behind_a_death_are_resent_whole<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    let items = vec![
        Packed(Vec::new()),
        numbers(1, 300_000),
        numbers(2, 500_000),
        numbers(3, 200_000),
    ];
    let expected: Vec<u64> = items[1..].iter().map(|v| checksum(v.clone())).collect();
    let results: Vec<_> = p.imap(checksum_or_die, items).unwrap().collect();
    assert!(
        matches!(results[0], Err(Error::WorkerDied { .. })),
        "the aborting task gave {:?}",
        results[0]
    );
    let rest: Vec<u64> = results[1..]
        .iter()
        .map(|r| r.as_ref().copied().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(rest, expected);
}

/// What a forked child of the test finds when it uses its copy of the pool. Exit codes of the
/// child in [`a_pool_used_from_a_forked_child_refuses_at_once`].
fn use_a_foreign_copy<E: Executor>(p: &E) -> i32 {
    let foreign = |r: crate::Result<()>| matches!(r, Err(Error::ForeignProcess { .. }));
    if !foreign(p.apply_async(sleep_then, 0).map(drop)) {
        return 10;
    }
    if !foreign(p.map(sleep_then, [0, 0]).map(drop)) {
        return 11;
    }
    if !foreign(p.terminate()) {
        return 12;
    }
    p.close();
    if !foreign(p.join()) {
        return 13;
    }
    let message = p.apply(sleep_then, 0).map(drop).unwrap_err().to_string();
    if !message.contains(&std::process::id().to_string()) {
        return 14;
    }
    // SAFETY: the child owns its copy of the pool; the parent's frame that owns `p` never
    // runs again in this process (the child leaves with `_exit`), so this is the copy's only
    // drop here.
    drop(unsafe { std::ptr::read(p) });
    0
}

/// A pool reached from a forked child of its creator (a `static`, a value captured by a
/// forked closure) has none of its threads or workers there: every call fails at once with
/// [`Error::ForeignProcess`] naming both processes, and dropping it does nothing — it
/// neither hangs nor stops the creator's workers, whose pool carries on.
pub fn a_pool_used_from_a_forked_child_refuses_at_once<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let before = worker_pids(&p);
    match in_forked_child(|| use_a_foreign_copy(&p)) {
        Ok(0) => {}
        Ok(10) => panic!("apply_async in a forked child did not fail with ForeignProcess"),
        Ok(11) => panic!("map in a forked child did not fail with ForeignProcess"),
        Ok(12) => panic!("terminate in a forked child did not fail with ForeignProcess"),
        Ok(13) => panic!("join in a forked child did not fail with ForeignProcess"),
        Ok(14) => panic!("the error does not name the child's pid"),
        other => panic!("the forked child: {other:?}"),
    }
    assert_eq!(
        worker_pids(&p),
        before,
        "the child's copy touched the workers"
    );
    assert_eq!(p.map(sleep_then, [0, 0, 0]).unwrap(), vec![0, 0, 0]);
}

/// A pool created inside a worker of this pool (a nested pool, of the same backend) works:
/// `nested(n)` creates one and maps squares over `0..n` (the macro defines it from the
/// constructor). A hang fails after [`LIMIT`].
pub fn a_pool_inside_a_worker_works<E: Executor>(
    make: MakePool<E>,
    nested: Task<u64, Result<Vec<u64>, String>>,
) {
    let p = pool(make, 2);
    let mut pending = p.map_async_chunked(nested, [3, 5], 1).unwrap();
    match pending.get_timeout(LIMIT) {
        Ok(got) => assert_eq!(
            got,
            vec![Ok(vec![0, 1, 4]), Ok(vec![0, 1, 4, 9, 16])],
            "nested pools"
        ),
        Err(e) => {
            let _ = p.terminate();
            panic!("a pool inside a worker: {e}");
        }
    }
}

/// `pids()` names each live worker once: the pids of tasks that run in every worker at once,
/// before and after a worker is replaced, never this process.
pub fn pids_name_the_live_workers<E: Executor>(
    make: MakePool<E>,
    pids: fn(&E) -> Vec<Option<u32>>,
) {
    let p = pool(make, 2);
    let listed = |p: &E| -> BTreeSet<u32> {
        let all = pids(p);
        assert_eq!(all.len(), 2, "one slot per worker: {all:?}");
        all.into_iter()
            .map(|pid| pid.expect("every slot has a worker"))
            .collect()
    };
    let first = listed(&p);
    assert_eq!(first.len(), 2);
    assert!(!first.contains(&std::process::id()));
    assert_eq!(worker_pids(&p), first);
    let dead = match p.apply(die, 1) {
        Err(Error::WorkerDied { pid, .. }) => pid,
        other => panic!("expected WorkerDied, got {other:?}"),
    };
    assert!(
        first.contains(&dead),
        "the dead worker {dead} was not listed"
    );
    // Both workers hold a task at once: the replacement has been listed before its first task.
    let now = worker_pids(&p);
    assert_eq!(listed(&p), now);
    assert!(!now.contains(&dead));
}

/// A pool whose workers all die and cannot be replaced (`make_limited(n)` builds a pool of `n`
/// whose launcher fails with `EAGAIN` after `n` launches, as `fork` does at the process limit)
/// closes itself with [`Error::NoWorkers`] carrying the cause: pending work fails with it,
/// every later call returns it at once, and `join` and `Drop` return promptly.
pub fn a_pool_that_cannot_replace_its_workers_breaks<E: Executor + 'static>(
    make_limited: MakePool<E>,
) {
    let p = make_limited(2).expect("the first launches succeed");
    for _ in 0..2 {
        assert!(matches!(p.apply(die, 1), Err(Error::WorkerDied { .. })));
    }
    let broken = |e: &Error| matches!(e, Error::NoWorkers { cause } if cause.to_string().contains("os error 11"));
    // The last replacement may still be failing: accepted work must then fail, not wait.
    match p.apply_async(sleep_then, 0) {
        Err(e) => assert!(broken(&e), "{e}"),
        Ok(mut r) => match r.get_timeout(LIMIT) {
            Err(e) => assert!(broken(&e), "queued work got {e}"),
            Ok(v) => panic!("a task ran without workers: {v}"),
        },
    }
    for _ in 0..2 {
        let e = p.apply_async(sleep_then, 0).map(drop).unwrap_err();
        assert!(broken(&e), "a later call got {e}");
        let e = p.map(sleep_then, [1, 2]).unwrap_err();
        assert!(broken(&e), "a later map got {e}");
    }
    let p = within_limit("join of a broken pool", move || {
        p.close();
        let joined = p.join();
        assert!(matches!(&joined, Err(e) if broken(e)), "{joined:?}");
        p
    });
    within_limit("drop of a broken pool", move || drop(p));
}

/// `AsyncResult` and `IMap` work with `.await` (here on the smallest executor,
/// [`block_on`](crate::block_on)): a result arrives, a dead worker's task is an error, and
/// an `imap` streams every item's outcome.
pub fn results_can_be_awaited<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let (pid, died, streamed) = crate::block_on(async {
        let pid = p.apply_async(worker_pid, 0).unwrap().await;
        let died = p.apply_async(die, 1).unwrap().await;
        let mut imap = p.imap(die, [10, 1, 11]).unwrap();
        let mut streamed = Vec::new();
        while let Some(r) = imap.next_async().await {
            streamed.push(r);
        }
        (pid, died, streamed)
    });
    assert!(pid.unwrap() > 0);
    assert!(matches!(died, Err(Error::WorkerDied { .. })), "{died:?}");
    assert_eq!(streamed.len(), 3);
    assert_eq!(streamed[0].as_ref().ok(), Some(&10));
    assert!(matches!(streamed[1], Err(Error::WorkerDied { .. })));
    assert_eq!(streamed[2].as_ref().ok(), Some(&11));
}

/// Makes a pool with a builder's options (`|o| Pool::builder().options(o).build()`).
pub type MakeWith<E> = fn(PoolOptions) -> crate::Result<E>;

fn pool_with<E: Executor>(make: MakeWith<E>, options: PoolOptions) -> E {
    make(options.clone()).unwrap_or_else(|e| panic!("creating a pool with {options:?} failed: {e}"))
}

/// `map_results` keeps every finished result when one item's worker dies, and gives that
/// item its own error; `map` over the same items fails as a whole.
pub fn map_results_keeps_every_finished_result<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let items = [10, 1, 11, 12, 13];
    let outcomes = p.map_results(die, items).unwrap();
    assert_eq!(outcomes.len(), items.len());
    for (item, r) in items.iter().zip(&outcomes) {
        match (item, r) {
            (1, Err(Error::WorkerDied { cause, .. })) => {
                assert_eq!(
                    *cause,
                    ExitCause::Signal(nix::sys::signal::Signal::SIGKILL as i32)
                )
            }
            (1, other) => panic!("the killed item gave {other:?}"),
            (n, Ok(v)) => assert_eq!(n, v),
            (n, Err(e)) => panic!("item {n} failed with {e}"),
        }
    }
    let star = p
        .starmap_results(|a: u32, b: u32| die(a + b), [(5, 5), (0, 1)])
        .unwrap();
    assert_eq!(star[0].as_ref().ok(), Some(&10));
    assert!(matches!(star[1], Err(Error::WorkerDied { .. })));
    assert!(matches!(p.map(die, items), Err(Error::WorkerDied { .. })));
}

/// `cancel` on a queued task drops it and on a running one kills its worker (replaced);
/// `get` returns `Cancelled` for both, and the pool goes on.
pub fn cancel_drops_a_queued_task_and_kills_a_running_one<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    let gate = GateControl::new();
    let running = p.apply_async(pid_at_gate, gate.gate()).unwrap();
    let pid = gate.wait_started(1)[0];
    let queued = p.apply_async(pid_at_gate, gate.gate()).unwrap();
    assert!(queued.cancel());
    assert!(running.cancel());
    assert!(!running.cancel(), "a second cancel does nothing");
    assert!(matches!(running.get(), Err(Error::Cancelled)));
    assert!(matches!(queued.get(), Err(Error::Cancelled)));
    // The running task's worker was killed and replaced, and the queued task never started:
    // on this one-worker pool it would run before this one and wait at the gate, which stays
    // closed, so this task would never finish.
    let mut after = p.apply_async(worker_pid, 0).unwrap();
    let now = after.get_timeout(LIMIT).expect("the pool goes on");
    assert_ne!(now, pid, "the cancelled task's worker was not replaced");
    assert_eq!(p.map(die, [0, 5]).unwrap(), vec![0, 5]);
    // A dropped imap cancels the rest: its running tasks' workers are killed and replaced.
    let p = pool(make, 2);
    let gate = GateControl::new();
    let imap = p
        .imap(pid_at_gate, (0..6).map(|_| gate.gate()).collect::<Vec<_>>())
        .unwrap();
    let started: BTreeSet<u32> = gate.wait_started(2).into_iter().collect();
    drop(imap);
    let now = worker_pids(&p);
    assert!(now.is_disjoint(&started), "{now:?} still has {started:?}");
}

/// Builds a pool with `task_timeout`: a task blocked past it fails with `TaskTimedOut`
/// (limit and pid), promptly; its worker is replaced; every other task completes; the pool
/// goes on. Prints how late after the deadline the error came.
pub fn task_timeout_kills_only_that_task<E: Executor>(make: MakeWith<E>) {
    let limit = Duration::from_millis(300);
    let p = pool_with(
        make,
        PoolOptions {
            processes: Some(2),
            task_timeout: Some(limit),
            ..PoolOptions::default()
        },
    );
    let gate = GateControl::new();
    let mut stuck = p.apply_async(pid_at_gate, gate.gate()).unwrap();
    let pid = gate.wait_started(1)[0];
    let started = Instant::now();
    assert_eq!(p.map(die, [0, 5, 6, 8]).unwrap(), vec![0, 5, 6, 8]);
    match stuck.get_timeout(LIMIT) {
        Err(Error::TaskTimedOut { limit: l, pid: p }) => {
            assert_eq!((l, p), (limit, pid));
        }
        other => panic!("expected TaskTimedOut, got {other:?}"),
    }
    let took = started.elapsed();
    eprintln!("task_timeout {limit:?}: reported {took:?} after the task started");
    // A bound that turns a missed deadline into a failure, not a latency figure.
    assert!(took < limit + Duration::from_secs(10), "took {took:?}");
    let now = worker_pids(&p);
    assert!(!now.contains(&pid), "the timed-out worker is still there");
    assert_eq!(now.len(), 2);
    assert_eq!(p.map(die, [0, 5]).unwrap(), vec![0, 5]);
}

/// The first attempt blocks at the gate (and is killed by the timeout); any later one
/// returns its worker's pid. `marker` is a path that does not exist yet.
pub fn block_first_time((marker, gate): (String, Gate)) -> u32 {
    if std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
        .is_ok()
    {
        gate.pass();
    }
    std::process::id()
}

/// Panics.
pub fn panic_always(x: u32) -> u32 {
    panic!("task {x} panics");
}

/// `retries`: a task that times out on its first attempt runs again on a fresh worker and
/// succeeds; one that fails every attempt reports each; a panic is not retried.
pub fn a_timeout_then_a_retry_succeeds<E: Executor>(make: MakeWith<E>) {
    let limit = Duration::from_millis(300);
    let p = pool_with(
        make,
        PoolOptions {
            processes: Some(2),
            task_timeout: Some(limit),
            retries: 1,
            ..PoolOptions::default()
        },
    );
    let marker = std::env::temp_dir().join(format!(
        "multiproc-retry-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    let gate = GateControl::new();
    let mut r = p
        .apply_async(
            block_first_time,
            (marker.to_string_lossy().into_owned(), gate.gate()),
        )
        .unwrap();
    let first = gate.wait_started(1)[0];
    let second = r.get_timeout(LIMIT).expect("the retry succeeds");
    assert_ne!(first, second, "the retry ran on the timed-out worker");
    let _ = std::fs::remove_file(&marker);
    // Every attempt times out: two attempts, each reported.
    let mut r = p.apply_async(pid_at_gate, gate.gate()).unwrap();
    let pids = gate.wait_started(2);
    assert_ne!(pids[0], pids[1], "the retry did not run on a fresh worker");
    match r.get_timeout(LIMIT) {
        Err(Error::AttemptsExhausted {
            attempts,
            history,
            last,
        }) => {
            assert_eq!(attempts, 2);
            assert_eq!(history.len(), 2);
            assert!(
                history.iter().all(|h| h.contains("timed out")),
                "{history:?}"
            );
            assert!(matches!(*last, Error::TaskTimedOut { .. }), "{last}");
        }
        other => panic!("expected AttemptsExhausted, got {other:?}"),
    }
    // A death by signal is retried too; a panic is not.
    match p.apply(die, 1) {
        Err(Error::AttemptsExhausted {
            attempts: 2, last, ..
        }) => {
            assert!(matches!(*last, Error::WorkerDied { .. }), "{last}")
        }
        other => panic!("expected AttemptsExhausted, got {other:?}"),
    }
    assert!(matches!(
        p.apply(panic_always, 3),
        Err(Error::TaskPanicked { .. })
    ));
}

/// Allocates and touches `mib` MiB, then waits at `gate` (for ever, in the suite: its
/// worker is killed).
pub fn grow_at_gate((mib, gate): (usize, Gate)) -> usize {
    let block = vec![1u8; mib << 20];
    std::hint::black_box(&block);
    gate.pass();
    block.len()
}

/// `memory_limit`: a task that drives its worker over the limit while it runs fails with
/// `MemoryLimit` (the limit, the size seen, the pid), just that task; the tasks on the other
/// worker complete meanwhile; the worker is replaced and the pool goes on.
pub fn memory_limit_fails_only_the_task_that_crosses_it<E: Executor>(make: MakeWith<E>) {
    const LIMIT_MIB: u64 = 768;
    let p = pool_with(
        make,
        PoolOptions {
            processes: Some(2),
            memory_limit: Some(LIMIT_MIB << 20),
            ..PoolOptions::default()
        },
    );
    let before = worker_pids(&p);
    let gate = GateControl::new();
    let mut big = p.apply_async(grow_at_gate, (1536, gate.gate())).unwrap();
    assert_eq!(p.map(die, [0, 5, 6, 8]).unwrap(), vec![0, 5, 6, 8]);
    match big.get_timeout(LIMIT) {
        Err(Error::MemoryLimit {
            limit,
            observed,
            pid,
        }) => {
            assert_eq!(limit, LIMIT_MIB << 20);
            assert!(observed > limit, "{observed} <= {limit}");
            assert!(before.contains(&pid), "{pid} is not one of {before:?}");
        }
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
    assert_eq!(p.map(die, [0, 5]).unwrap(), vec![0, 5]);
    assert_eq!(worker_pids(&p).len(), 2);
}

/// `max_tasks_per_child(1)`: every task runs in a fresh worker.
pub fn max_tasks_per_child_replaces_workers<E: Executor>(make: MakeWith<E>) {
    let p = pool_with(
        make,
        PoolOptions {
            processes: Some(2),
            max_tasks_per_child: std::num::NonZeroUsize::new(1),
            ..PoolOptions::default()
        },
    );
    let pids = p
        .map_async_chunked(worker_pid, 0..6, 1)
        .unwrap()
        .get_timeout(LIMIT)
        .expect("tasks on recycled workers");
    let distinct: BTreeSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 6, "{pids:?}");
    // No options: `cpu_count` workers, and the plain pool's behaviour.
    let p = pool_with(make, PoolOptions::default());
    assert_eq!(p.processes(), cpu_count());
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
/// (`task_timeout`, `retries`, `max_tasks_per_child`) in `process_pool_options_conformance`.
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
            fn a_pool_used_from_a_forked_child_refuses_at_once() {
                suite::a_pool_used_from_a_forked_child_refuses_at_once($make)
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
            fn max_tasks_per_child_replaces_workers() {
                suite::max_tasks_per_child_replaces_workers($with)
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
