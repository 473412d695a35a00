//! The pool's wake-ups and its reply journal, with workers that are threads of this test
//! serving the real worker loop or a script (each paired with a `cat` child as the pid the
//! pool reaps).

use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use multiproc_core::{Executor, Result};
use nix::unistd::Pid;

use super::{Launcher, ProcessPool, Worker};

/// Launches workers that are threads running [`crate::worker::serve`] ([`thread_worker`]).
struct ThreadWorkers;

/// A worker that is a thread of this test running `run` on its end of the stream; its pid is
/// a `cat` child that exits when the thread ends (its stdin closes).
fn thread_worker(run: impl FnOnce(UnixStream) + Send + 'static) -> Result<Worker> {
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let stdin = child.stdin.take();
    let (ours, theirs) = UnixStream::pair()?;
    std::thread::spawn(move || {
        run(theirs);
        drop(stdin);
    });
    Ok(Worker {
        pid: Pid::from_raw(child.id() as i32),
        stream: ours,
    })
}

// SAFETY: `launch` hands over the `cat` child it just started, which nothing else waits
// for or signals.
unsafe impl Launcher for ThreadWorkers {
    fn launch(&self) -> Result<Worker> {
        thread_worker(|theirs| {
            // SAFETY: the other end is a pool of this process, which sends offsets made by
            // `offset_of` in this process and keeps to the bulk protocol.
            unsafe { crate::worker::serve(theirs) };
        })
    }
}

fn inc(x: u64) -> u64 {
    x + 1
}

/// `apply` after `apply` on a pool of two: the supervisor that delivered a result takes the
/// caller's next task itself, so the other supervisor sleeps through them all (waking it
/// only for it to find the queue empty costs a wake-up that, on two cores, competes with
/// the worker).
#[test]
fn one_task_after_another_wakes_no_idle_supervisor_for_nothing() {
    let pool = ProcessPool::new(2, ThreadWorkers).unwrap();
    for i in 0..300 {
        assert_eq!(pool.apply(inc, i).unwrap(), i + 1);
    }
    let idle = pool.shared.idle_wakeups.load(Ordering::Relaxed);
    pool.close();
    pool.join().unwrap();
    // A condition variable may wake spuriously now and then; the old behaviour woke the
    // other supervisor for most of the 300 tasks.
    assert!(idle <= 10, "{idle} wake-ups found no job in 300 tasks");
}

/// A job whose submission was cancelled before a supervisor took it (the flag is set before
/// the canceller removes queued jobs; here, before the job is even queued) is finished by
/// that supervisor before it sleeps: held across the sleep, its ticket would keep `join`
/// waiting for ever.
#[test]
fn a_job_cancelled_before_a_supervisor_takes_it_does_not_keep_join_waiting() {
    use multiproc_core::{Batch, ChunkSink, Error};
    use std::num::NonZeroUsize;
    use std::sync::mpsc;
    use std::time::Duration;

    let pool = std::sync::Arc::new(ProcessPool::new(1, ThreadWorkers).unwrap());
    // The supervisor is idle after this: it will sleep once it finds the queue empty.
    assert_eq!(pool.apply(inc, 1).unwrap(), 2);
    let (sink, result) = ChunkSink::<u64>::single();
    assert!(result.cancel());
    let one = NonZeroUsize::new(1).unwrap();
    pool.submit(inc, Batch::new(vec![7u64], one), sink).unwrap();
    pool.close();
    let (done, joined) = mpsc::channel();
    let joiner = pool.clone();
    std::thread::spawn(move || done.send(joiner.join()));
    // A generous deadline: `join` has nothing to wait for but one cancelled job.
    let outcome = joined.recv_timeout(Duration::from_secs(20));
    assert!(
        matches!(outcome, Ok(Ok(()))),
        "join did not return: {outcome:?}"
    );
    assert!(matches!(result.get(), Err(Error::Cancelled)));
}

/// A `map` of trivial tasks: the worker's replies reach the pool in batches (through its
/// reply journal), not in one socket frame each — a frame per reply was a `send` and a
/// supervisor wake-up per task, most of the cost of such a map.
#[test]
fn replies_of_many_small_tasks_arrive_in_batches() {
    let pool = ProcessPool::new(1, ThreadWorkers).unwrap();
    let n = 2000u64;
    let out = pool.map_chunked(inc, 0..n, 1).unwrap();
    assert_eq!(out, (1..=n).collect::<Vec<_>>());
    let frames = pool.shared.socket_frames.load(Ordering::Relaxed);
    pool.close();
    pool.join().unwrap();
    assert!(
        frames < n as usize / 4,
        "{frames} socket frames for {n} replies"
    );
}

/// The gate a [`wait_for_gate`] task waits at, opened by the test.
static GATE: (std::sync::Mutex<bool>, std::sync::Condvar) =
    (std::sync::Mutex::new(false), std::sync::Condvar::new());

/// Returns `x + 1`; for `x == 1`, only once the test opens [`GATE`].
fn wait_for_gate(x: u64) -> u64 {
    if x == 1 {
        let (open, opened) = &GATE;
        let mut open = open.lock().unwrap();
        while !*open {
            open = opened.wait(open).unwrap();
        }
    }
    x + 1
}

/// A fast task's result reaches the caller while the next task, already at the worker, still
/// runs: a reply the worker kept back for a batch is not held up by a long task after it.
#[test]
fn a_result_is_not_held_back_by_the_long_task_after_it() {
    use std::time::Duration;

    let pool = ProcessPool::new(1, ThreadWorkers).unwrap();
    // The supervisor sends tasks 0 and 1 together (its share of a queue of four).
    let mut results = pool.imap(wait_for_gate, 0..4u64).unwrap();
    // Task 1 cannot finish before the gate opens, which happens only after this.
    let first = results.next_timeout(Duration::from_secs(20));
    {
        let (open, opened) = &GATE;
        *open.lock().unwrap() = true;
        opened.notify_all();
    }
    assert_eq!(first.map(|r| r.unwrap()), Some(1));
    let rest: Vec<u64> = results.map(|r| r.unwrap()).collect();
    assert_eq!(rest, [2, 3, 4]);
    pool.close();
    pool.join().unwrap();
}

/// Opened by the task of a [`Large`] argument's first chunk.
static FIRST_RAN: (std::sync::Mutex<bool>, std::sync::Condvar) =
    (std::sync::Mutex::new(false), std::sync::Condvar::new());

/// An argument of `.1` bytes; unless it is the first (`.0`), encoding it waits (up to 20 s)
/// until the first one's task has run.
#[derive(serde::Deserialize)]
struct Large(bool, Vec<u8>);

impl serde::Serialize for Large {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if !self.0 {
            let (ran, signal) = &FIRST_RAN;
            let ran = ran.lock().unwrap();
            let (ran, _) = signal
                .wait_timeout_while(ran, std::time::Duration::from_secs(20), |ran| !*ran)
                .unwrap();
            if !*ran {
                return Err(serde::ser::Error::custom(
                    "still encoding the second chunk: the first never ran",
                ));
            }
        }
        (self.0, &self.1).serialize(s)
    }
}

/// The size of a [`Large`], noting that a task ran.
fn note_ran(arg: Large) -> usize {
    let (ran, signal) = &FIRST_RAN;
    *ran.lock().unwrap() = true;
    signal.notify_all();
    arg.1.len()
}

/// A map of large arguments: a chunk is on its way to a worker as soon as it is encoded, not
/// once the whole batch is (encoding 400 MB of index lists took the caller 0.4 s, while the
/// workers waited).
#[test]
fn a_large_chunk_starts_while_the_next_is_encoded() {
    let pool = ProcessPool::new(1, ThreadWorkers).unwrap();
    let args = vec![Large(true, vec![1; 2 << 20]), Large(false, vec![2; 16])];
    let sizes = pool.map_chunked(note_ran, args, 1);
    pool.close();
    pool.join().unwrap();
    assert_eq!(sizes.unwrap(), [2 << 20, 16]);
}

/// Returns `x + 1`; for every third `x`, after about a millisecond of work (0.8–1.4 ms).
fn fast_or_about_a_ms(x: u64) -> u64 {
    if x % 3 == 1 {
        let t = std::time::Instant::now();
        let us = 800 + (x * 7919 % 600);
        while t.elapsed() < std::time::Duration::from_micros(us) {}
    }
    x + 1
}

/// Fast and slower tasks mixed, so that the supervisor's looks at the journal's tail (while
/// it waits with tasks out) meet replies arriving at every moment: none is ever missed — a
/// frame that arrived between a wait's end and a look was once buffered and never read.
#[test]
fn replies_arriving_while_the_supervisor_looks_at_the_journal_are_all_read() {
    use std::time::Duration;

    let pool = ProcessPool::new(1, ThreadWorkers).unwrap();
    for round in 0..500u64 {
        let base = round * 3;
        let mut results = pool.imap(fast_or_about_a_ms, base..base + 3).unwrap();
        for i in 0..3 {
            let r = results.next_timeout(Duration::from_secs(10));
            if !matches!(r, Some(Ok(v)) if v == base + i + 1) {
                // Left behind: dropping a pool whose supervisor is stuck would wait for it.
                std::mem::forget(results);
                std::mem::forget(pool);
                panic!("round {round}, result {i}: {r:?}");
            }
        }
    }
    pool.close();
    pool.join().unwrap();
}

// A cancel's kill, the reply journal and the end of a worker: scripted workers that answer
// (or die) exactly when the test says.

/// Waits (bounded) until the supervisor of slot 0 publishes a running submission that is
/// not 0 and not `not`, and returns it.
fn published_head<L: Launcher>(pool: &ProcessPool<L>, not: usize) -> usize {
    let since = std::time::Instant::now();
    loop {
        let head = pool.shared.running[0].load(Ordering::SeqCst);
        if head != 0 && head != not {
            return head;
        }
        assert!(
            since.elapsed() < std::time::Duration::from_secs(10),
            "no head published"
        );
        std::thread::yield_now();
    }
}

use std::sync::mpsc::{Receiver, Sender};
use std::sync::Mutex as StdMutex;

/// Reads frames until `n` tasks have come, and runs them: their headers and reply bodies.
fn run_tasks(r: &mut crate::wire::FrameReader, n: usize) -> Vec<(crate::wire::Header, Vec<u8>)> {
    let mut tasks = Vec::new();
    let mut p = Vec::new();
    while tasks.len() < n {
        let (h, fds) = r.recv(&mut p).unwrap().unwrap();
        if h.kind == crate::wire::Kind::Task {
            tasks.push((h, run_task(h, &p, fds)));
        }
    }
    tasks
}

/// Answers `tasks` (headers and reply bodies, as [`run_tasks`] returns them) in order, as the
/// worker loop would: a `Done` frame each, flushed together.
fn answer(w: &mut crate::wire::FrameWriter, tasks: &[(crate::wire::Header, Vec<u8>)]) {
    for (h, body) in tasks {
        let done = crate::wire::Header {
            kind: crate::wire::Kind::Done,
            id: h.id,
            call: 0,
        };
        w.send(done, body, &[]).unwrap();
    }
    w.flush().unwrap();
}

/// Runs a task frame as the worker loop would, and returns its reply body.
fn run_task(
    header: crate::wire::Header,
    payload: &[u8],
    fds: Vec<std::os::fd::OwnedFd>,
) -> Vec<u8> {
    let spare = std::sync::Mutex::new(crate::payload::Spare::default());
    // SAFETY: the frame comes from a pool of this process, whose offsets `offset_of` made here.
    let run = unsafe { crate::trampoline::resolve(header.call) };
    let (body, _) = run.run_into(payload, fds, &spare).unwrap();
    body.as_slice().to_vec()
}

/// A worker that answers its first task through the socket, then journals the answers to
/// its next two and ends without announcing them, as a worker killed by its third task
/// would. It tells `ready` when it holds a task (the first, then the next three) and waits
/// for `go` before answering.
fn dies_with_journalled_replies(ready: Sender<()>, go: Receiver<()>) -> Behaviour {
    Box::new(move |theirs: UnixStream| {
        use crate::wire::{FrameReader, FrameWriter, Kind};
        let mut r = FrameReader::new(theirs.try_clone().unwrap());
        let mut w = FrameWriter::new(theirs);
        let mut p = Vec::new();
        // warm-up task W: answered through the socket once the test says so
        loop {
            let (h, fds) = r.recv(&mut p).unwrap().unwrap();
            if h.kind == Kind::Task {
                let body = run_task(h, &p, fds);
                ready.send(()).unwrap();
                go.recv().unwrap();
                answer(&mut w, &[(h, body)]);
                break;
            }
        }
        let mut j = crate::journal::JournalWriter::start(&mut w)
            .unwrap()
            .unwrap();
        let tasks = run_tasks(&mut r, 3);
        ready.send(()).unwrap();
        go.recv().unwrap();
        // Q1 and P answered in the journal; "crash" while running Q2.
        for (h, body) in &tasks[..2] {
            assert!(j.append(Kind::Done, h.id, body));
        }
    })
}

/// A cancel of a task whose reply waits in the journal of a worker that then died does not
/// make the task that killed it innocent: that one fails with `WorkerDied`, not run again.
#[test]
fn a_task_that_killed_its_worker_is_not_requeued_for_a_cancel_seen_after_the_end() {
    use std::time::Duration;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    let first = dies_with_journalled_replies(ready_tx, go_rx);
    let pool = ProcessPool::new(1, Scripted(StdMutex::new(vec![first].into()))).unwrap();
    let w = pool.apply_async(inc, 100).unwrap();
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let w_head = published_head(&pool, 0);
    // queued while the supervisor waits for W
    let q1 = pool.apply_async(inc, 1).unwrap();
    let p = pool.apply_async(inc, 2).unwrap();
    let mut q2 = pool.apply_async(inc, 3).unwrap();
    let fillers: Vec<_> = (10..15)
        .map(|x| pool.apply_async(inc, x).unwrap())
        .collect();
    go_tx.send(()).unwrap();
    assert_eq!(w.get().unwrap(), 101);
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // The supervisor's head is Q1 now: cancelling P kills nothing.
    published_head(&pool, w_head);
    assert!(p.cancel());
    go_tx.send(()).unwrap();
    assert_eq!(q1.get().unwrap(), 2);
    let r = q2.get_timeout(Duration::from_secs(20));
    for f in fillers {
        let _ = f.get();
    }
    pool.close();
    pool.join().unwrap();
    assert!(
        matches!(r, Err(multiproc_core::Error::WorkerDied { .. })),
        "Q2 killed its worker (nothing else did) but got {r:?}"
    );
}

/// What a scripted worker does with its end of the stream.
type Behaviour = Box<dyn FnOnce(UnixStream) + Send>;
/// Launches workers that follow the scripts, in order, then [`ThreadWorkers`].
struct Scripted(StdMutex<std::collections::VecDeque<Behaviour>>);

// SAFETY: as `ThreadWorkers`: the `cat` child is handed over and nothing else waits for it.
unsafe impl Launcher for Scripted {
    fn launch(&self) -> Result<Worker> {
        match self.0.lock().unwrap().pop_front() {
            Some(script) => thread_worker(script),
            None => ThreadWorkers.launch(),
        }
    }
}

/// A kill recorded for a cancelled head (whose reply was already on its way) ends with its
/// session: after `max_tasks_per_child` recycles the worker, the next worker's death still
/// fails the task that caused it.
///
/// A supervisor sends a busy worker more tasks only from what is queued when it looks, so the
/// first worker holds a blocker task until A, H and X are all queued: its reply makes the
/// supervisor find the three at once and send A and H together. (Without the blocker the
/// supervisor could look between A and H, send A alone, and the worker, waiting for two
/// tasks, never answered: CI saw that once.) Every wait has a timeout, and a failure leaves
/// the pool behind rather than dropping it: its drop would wait for the stuck worker.
#[test]
fn a_kill_for_a_cancelled_head_does_not_outlive_a_recycled_session() {
    use crate::wire::{FrameReader, FrameWriter, Kind};
    use std::time::Duration;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (queued_tx, queued_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let first: Behaviour = Box::new(move |s: UnixStream| {
        let mut r = FrameReader::new(s.try_clone().unwrap());
        let mut w = FrameWriter::new(s);
        let mut p = Vec::new();
        let blocker = run_tasks(&mut r, 1);
        ready_tx.send(()).unwrap();
        queued_rx.recv().unwrap();
        answer(&mut w, &blocker);
        let tasks = run_tasks(&mut r, 2);
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        answer(&mut w, &tasks);
        // serve until the end of the stream or a shutdown
        while let Ok(Some((h, _))) = r.recv(&mut p) {
            if h.kind == Kind::Shutdown {
                break;
            }
        }
    });
    // the next worker dies on its first task
    let second: Behaviour = Box::new(move |s: UnixStream| {
        let mut r = FrameReader::new(s);
        let mut p = Vec::new();
        while let Ok(Some((h, _))) = r.recv(&mut p) {
            if h.kind == Kind::Task {
                break;
            }
        }
    });
    let launcher = Scripted(StdMutex::new(vec![first, second].into()));
    let options = multiproc_core::PoolOptions {
        processes: Some(1),
        // The blocker, A and H.
        max_tasks_per_child: std::num::NonZeroUsize::new(3),
        ..Default::default()
    };
    let pool = ProcessPool::with_options(launcher, None, options).unwrap();
    let ten = Duration::from_secs(10);
    let leave = |pool: ProcessPool<Scripted>, what: &str| -> ! {
        std::mem::forget(pool);
        panic!("{what}");
    };
    let mut blocker = pool.apply_async(inc, 0).unwrap();
    if ready_rx.recv_timeout(ten).is_err() {
        leave(pool, "the blocker never reached the worker");
    }
    let blocker_head = published_head(&pool, 0);
    let mut a = pool.apply_async(inc, 1).unwrap();
    let h = pool.apply_async(inc, 2).unwrap();
    let mut x = pool.apply_async(inc, 3).unwrap();
    queued_tx.send(()).unwrap();
    if blocker.get_timeout(ten).ok() != Some(1) || ready_rx.recv_timeout(ten).is_err() {
        leave(pool, "A and H did not reach the worker together");
    }
    // The head (A) is published: H is cancelled behind it.
    published_head(&pool, blocker_head);
    assert!(h.cancel());
    go_tx.send(()).unwrap();
    assert_eq!(a.get_timeout(ten).unwrap(), 2);
    let r = x.get_timeout(Duration::from_secs(20));
    pool.close();
    pool.join().unwrap();
    assert!(
        matches!(r, Err(multiproc_core::Error::WorkerDied { .. })),
        "X killed its worker (nothing else did) but got {r:?}"
    );
}

/// A result whose own `Deserialize` panics on 13 (it runs on a supervisor's thread).
#[derive(Debug, PartialEq, serde::Serialize)]
struct Touchy(u64);

impl<'de> serde::Deserialize<'de> for Touchy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        assert_ne!(v, 13, "Touchy refuses 13");
        Ok(Touchy(v))
    }
}

fn touchy(x: u64) -> Touchy {
    Touchy(x)
}

/// A panic in the user's code that decodes a result fails that task; before, it unwound the
/// supervisor's thread, and the pool's later tasks, `join` and drop waited for ever.
#[test]
fn a_result_whose_decoding_panics_fails_its_task_and_the_pool_carries_on() {
    let limit = std::time::Duration::from_secs(30);
    for workers in [1, 2] {
        let pool = ProcessPool::new(workers, ThreadWorkers).unwrap();
        match pool.apply_async(touchy, 13).unwrap().get_timeout(limit) {
            Err(multiproc_core::Error::Serialization(m)) => {
                assert!(m.contains("Touchy refuses 13"), "{m}")
            }
            other => panic!("{workers} workers: {other:?}"),
        }
        let next = pool.apply_async(touchy, 1).unwrap().get_timeout(limit);
        if next.is_err() {
            std::mem::forget(pool); // its drop would wait for ever
            panic!("{workers} workers: the next task: {next:?}");
        }
        assert_eq!(next.unwrap(), Touchy(1));
    }
}

static RAN_AFTER_TERMINATE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn note_run(x: u64) -> u64 {
    RAN_AFTER_TERMINATE.fetch_add(1, Ordering::SeqCst);
    x
}

/// The first worker dies on its first task; the replacement's launch waits for the test.
struct ReplacedLate {
    first: StdMutex<Option<Behaviour>>,
    launching: StdMutex<Sender<()>>,
    go: StdMutex<Receiver<()>>,
}

// SAFETY: as `ThreadWorkers`: each `cat` child is handed over and nothing else waits for it.
unsafe impl Launcher for ReplacedLate {
    fn launch(&self) -> Result<Worker> {
        if let Some(script) = self.first.lock().unwrap().take() {
            return thread_worker(script);
        }
        let _ = self.launching.lock().unwrap().send(());
        let limit = std::time::Duration::from_secs(10);
        let _ = self.go.lock().unwrap().recv_timeout(limit);
        ThreadWorkers.launch()
    }
}

/// `terminate` while a supervisor starts the replacement of a worker that died: the task it
/// holds for a retry fails as the queued ones do (`PoolClosed`) and never runs, and `join`
/// returns. Before, the replacement, listed after `terminate` had signalled the workers, ran it.
#[test]
fn a_task_held_for_a_retry_does_not_run_after_terminate() {
    use std::time::Duration;
    let dies: Behaviour = Box::new(|s: UnixStream| {
        let mut r = crate::wire::FrameReader::new(s);
        let mut p = Vec::new();
        while let Ok(Some((h, _))) = r.recv(&mut p) {
            if h.kind == crate::wire::Kind::Task {
                return; // its stream ends: the worker "died" running it
            }
        }
    });
    let (launching_tx, launching_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    let launcher = ReplacedLate {
        first: StdMutex::new(Some(dies)),
        launching: StdMutex::new(launching_tx),
        go: StdMutex::new(go_rx),
    };
    let options = multiproc_core::PoolOptions {
        processes: Some(1),
        retries: 1,
        ..Default::default()
    };
    let pool = ProcessPool::with_options(launcher, None, options).unwrap();
    let mut r = pool.apply_async(note_run, 5).unwrap();
    launching_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    pool.terminate().unwrap();
    go_tx.send(()).unwrap();
    let got = r.get_timeout(Duration::from_secs(10));
    let joined = pool.join_timeout(Duration::from_secs(10));
    if !matches!(joined, Ok(true)) {
        std::mem::forget(pool); // its drop would wait as join did
    }
    assert!(
        matches!(got, Err(multiproc_core::Error::PoolClosed(_))),
        "{got:?}"
    );
    assert_eq!(RAN_AFTER_TERMINATE.load(Ordering::SeqCst), 0, "it ran");
    assert!(matches!(joined, Ok(true)), "{joined:?}");
}

/// The inode of the file mapped where `p`'s values lie (0 if they are not in a mapped file).
fn arg_inode(p: multiproc_core::Packed<u8>) -> u64 {
    let at = p.as_ptr() as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (start, end) = fields[0].split_once('-')?;
            let range =
                usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?;
            range.contains(&at).then(|| fields[4].parse().unwrap())
        })
        .unwrap_or(0)
}

/// A worker that died running a task may have lent that task's arguments to a process it
/// forked, which outlives it: the buffer is resent to the retry as it is, and never written
/// again afterwards (a later argument of the same size comes in another buffer).
#[test]
fn the_buffer_of_a_task_whose_worker_died_is_never_written_again() {
    use std::time::Duration;
    let (inode_tx, inode_rx) = std::sync::mpsc::channel();
    let dies: Behaviour = Box::new(move |s: UnixStream| {
        let mut r = crate::wire::FrameReader::new(s);
        let mut p = Vec::new();
        // SAFETY: the pool of this test keeps to the bulk protocol.
        while let Ok(Some((h, _, view))) = unsafe { r.recv_with_bulk(&mut p) } {
            if h.kind == crate::wire::Kind::Task {
                let _ = inode_tx.send(view.map_or(0, |v| v.inode));
                return; // its stream ends: the worker "died" running it
            }
        }
    });
    let options = multiproc_core::PoolOptions {
        processes: Some(1),
        retries: 1,
        ..Default::default()
    };
    let launcher = Scripted(StdMutex::new(vec![dies].into()));
    let pool = ProcessPool::with_options(launcher, None, options).unwrap();
    let arg = || multiproc_core::Packed::new(vec![7u8; 2 << 20]);
    let retried = pool.apply(arg_inode, arg()).unwrap();
    let died_with = inode_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_ne!(died_with, 0, "a bulk body");
    assert_eq!(retried, died_with, "the retry reads the same buffer");
    for _ in 0..3 {
        assert_ne!(
            pool.apply(arg_inode, arg()).unwrap(),
            died_with,
            "written again"
        );
    }
    pool.close();
    pool.join().unwrap();
}

/// Tasks a worker held when it died, after the pool had stopped (an initializer failed, or
/// the pool broke), fail with the pool's refusal: put back on the queue, as for a pool that
/// goes on, nothing would ever run or fail them, and their results would wait for ever.
#[test]
fn tasks_a_worker_held_when_it_died_after_the_pool_stopped_fail() {
    use crate::wire::{FrameReader, FrameWriter};
    use std::time::Duration;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let script: Behaviour = Box::new(move |s: UnixStream| {
        let mut r = FrameReader::new(s.try_clone().unwrap());
        let mut w = FrameWriter::new(s);
        // A blocker, held until the test has queued three more: the supervisor then finds
        // them at once and sends two together (the third stays queued).
        let blocker = run_tasks(&mut r, 1);
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        answer(&mut w, &blocker);
        let _held = run_tasks(&mut r, 2);
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        // Dies holding both.
    });
    let pool = ProcessPool::new(1, Scripted(StdMutex::new(vec![script].into()))).unwrap();
    let mut blocker = pool.apply_async(inc, 0).unwrap();
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut a = pool.apply_async(inc, 1).unwrap();
    let mut b = pool.apply_async(inc, 2).unwrap();
    let mut c = pool.apply_async(inc, 3).unwrap();
    go_tx.send(()).unwrap();
    assert_eq!(blocker.get_timeout(Duration::from_secs(10)).unwrap(), 1);
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // The pool stops as an initializer failing in a new worker stops it.
    pool.shared
        .initializer_failed("a test stops the pool".into(), Default::default());
    go_tx.send(()).unwrap();
    let _ = a.get_timeout(Duration::from_secs(10));
    let queued = c.get_timeout(Duration::from_secs(10));
    assert!(
        matches!(queued, Err(multiproc_core::Error::InitializerFailed(_))),
        "the queued task got {queued:?}"
    );
    let r = b.get_timeout(Duration::from_secs(10));
    if !matches!(r, Err(multiproc_core::Error::InitializerFailed(_))) {
        // Left behind: its drop would wait for the task for ever.
        std::mem::forget(pool);
        panic!("the held task got {r:?}");
    }
}

/// A worker that died while idle (killed from outside, the OOM killer) is found out by the
/// next task's write, which none of reached it: that task did not kill it, and runs on the
/// replacement instead of failing with `WorkerDied`.
#[test]
fn a_task_sent_to_a_worker_that_died_idle_runs_on_its_replacement() {
    use crate::wire::{FrameReader, FrameWriter};
    use std::time::Duration;
    let (gone_tx, gone_rx) = std::sync::mpsc::channel::<()>();
    let script: Behaviour = Box::new(move |s: UnixStream| {
        let mut r = FrameReader::new(s.try_clone().unwrap());
        let mut w = FrameWriter::new(s);
        answer(&mut w, &run_tasks(&mut r, 1));
        // Dies idle: both ends of its stream closed before the test sends more.
        drop((r, w));
        gone_tx.send(()).unwrap();
    });
    let pool = ProcessPool::new(1, Scripted(StdMutex::new(vec![script].into()))).unwrap();
    assert_eq!(pool.apply(inc, 1).unwrap(), 2);
    gone_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut next = pool.apply_async(inc, 5).unwrap();
    let r = next.get_timeout(Duration::from_secs(10));
    pool.close();
    pool.join().unwrap();
    assert!(
        matches!(r, Ok(6)),
        "the task sent to a dead idle worker got {r:?}"
    );
}
