//! A cancel's kill, the reply journal and the end of a worker: scripted workers that answer
//! (or die) exactly when the test says.

use super::*;

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
