//! The conformance suite of `Queue`, `JoinableQueue` and `Pipe` (feature `testing`): the
//! same checks with workers that are threads, forked processes or spawned processes.
//!
//! A check is a function `check(&harness)` that panics on failure. Its workers are `fn`
//! items taking their queues and connections as one serde argument, so that a [`Harness`]
//! can start them in a thread, a forked child, or a spawned process (which receives the
//! handles through [`multiproc_core::handoff`]). A worker reports failure by panicking,
//! which the harness turns into an error on join.
//!
//! [`ipc_conformance!`](crate::ipc_conformance) turns the whole list into `#[test]`s:
//!
//! ```
//! # fn main() {}
//! # mod demo {
//! multiproc_ipc::ipc_conformance!(multiproc_ipc::testing::ThreadHarness);
//! # }
//! ```
//!
//! Process harnesses add the checks that kill a worker while it holds a queue's lock:
//! `ipc_conformance!(MyForkHarness, processes);`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_core::{Error, Lock, Payload, Result, Task};
use multiproc_shared_array::{ProcessLock, RawArray};

use crate::{is_closed, pipe, Connection, JoinableQueue, Queue};

/// How long any single wait of a check may take before the check fails: generous, because
/// the machines that run the suite are small and busy. A correct implementation answers in
/// microseconds to milliseconds.
pub const LONG: Duration = Duration::from_secs(30);

/// Where the suite's workers run.
pub trait Harness {
    /// A started worker.
    type Worker: Worker;

    /// Starts `f(args)` concurrently: in a thread, a forked child, a spawned process.
    fn start<A>(&self, f: Task<A, ()>, args: A) -> Result<Self::Worker>
    where
        A: Payload;
}

/// A worker started by a [`Harness`].
pub trait Worker {
    /// Waits up to `timeout` for the worker to end: `Ok` if it returned normally, an error
    /// if it panicked or died, [`Error::Timeout`] if it still runs.
    fn join_timeout(&self, timeout: Duration) -> Result<()>;

    /// Kills the worker at once (SIGKILL). Only process workers can be killed.
    fn kill(&self) -> Result<()>;
}

/// The harness whose workers are threads of this process.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadHarness;

/// A thread started by [`ThreadHarness`].
#[derive(Debug)]
pub struct ThreadWorker(Mutex<Option<JoinHandle<()>>>);

impl Harness for ThreadHarness {
    type Worker = ThreadWorker;

    fn start<A>(&self, f: Task<A, ()>, args: A) -> Result<ThreadWorker>
    where
        A: Payload,
    {
        Ok(ThreadWorker(Mutex::new(Some(std::thread::spawn(
            move || f(args),
        )))))
    }
}

impl Worker for ThreadWorker {
    fn join_timeout(&self, timeout: Duration) -> Result<()> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(handle) = slot.as_ref() else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        while !handle.is_finished() {
            if Instant::now() >= deadline {
                return Err(Error::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        slot.take()
            .expect("checked above")
            .join()
            .map_err(Error::from_panic)
    }

    fn kill(&self) -> Result<()> {
        Err(Error::invalid("self", "a thread cannot be killed"))
    }
}

fn start<H: Harness, A: Payload>(h: &H, f: Task<A, ()>, args: A) -> H::Worker {
    h.start(f, args)
        .unwrap_or_else(|e| panic!("starting a worker failed: {e}"))
}

fn join<W: Worker>(w: &W) {
    if let Err(e) = w.join_timeout(LONG) {
        panic!("worker failed: {e}");
    }
}

fn queue<T>(maxsize: usize, ring_bytes: usize) -> Queue<T> {
    Queue::with_capacity(maxsize, ring_bytes).expect("creating a queue")
}

// ---------------------------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------------------------

fn produce_range((q, n): (Queue<u64>, u64)) {
    for i in 0..n {
        q.put_timeout(&i, LONG).expect("put");
    }
}

/// One producer's items come out in the order they were put — through a small ring, so that
/// the producer also waits for room and the ring wraps many times.
pub fn fifo_one_producer<H: Harness>(h: &H) {
    const N: u64 = 20_000;
    for ring_bytes in [256, 1 << 20] {
        let q = queue::<u64>(0, ring_bytes);
        let w = start(h, produce_range, (q.clone(), N));
        for i in 0..N {
            assert_eq!(q.get_timeout(LONG).expect("get"), i, "ring of {ring_bytes}");
        }
        join(&w);
        assert!(q.empty());
        assert!(q.get_nowait().is_err());
    }
}

/// An item of the many-to-many check: `(producer, sequence number)`, or `None` to stop.
type Tagged = Option<(u32, u32)>;

fn produce_tagged((q, tag, n): (Queue<Tagged>, u32, u32)) {
    for i in 0..n {
        q.put_timeout(&Some((tag, i)), LONG).expect("put");
    }
}

fn consume_until_none((q, results): (Queue<Tagged>, Queue<Vec<(u32, u32)>>)) {
    let mut got = Vec::new();
    while let Some(item) = q.get_timeout(LONG).expect("get") {
        got.push(item);
    }
    results.put_timeout(&got, LONG).expect("put results");
}

/// N producers × M consumers: every item is delivered exactly once, and each consumer sees
/// each producer's items in the order they were put.
pub fn many_producers_many_consumers<H: Harness>(h: &H) {
    const PRODUCERS: u32 = 3;
    const CONSUMERS: u32 = 3;
    const EACH: u32 = 3_000;
    let q = queue::<Tagged>(0, 4096);
    let results = queue::<Vec<(u32, u32)>>(0, 1 << 20);
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| start(h, consume_until_none, (q.clone(), results.clone())))
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|tag| start(h, produce_tagged, (q.clone(), tag, EACH)))
        .collect();
    producers.iter().for_each(join);
    for _ in 0..CONSUMERS {
        q.put_timeout(&None, LONG).expect("put a stop marker");
    }
    let mut seen: BTreeMap<(u32, u32), u32> = BTreeMap::new();
    for _ in 0..CONSUMERS {
        let got = results.get_timeout(LONG).expect("a consumer's results");
        let mut last: BTreeMap<u32, u32> = BTreeMap::new();
        for &(tag, i) in &got {
            if let Some(&prev) = last.get(&tag) {
                assert!(prev < i, "producer {tag}: {i} after {prev} at one consumer");
            }
            last.insert(tag, i);
            *seen.entry((tag, i)).or_default() += 1;
        }
    }
    consumers.iter().for_each(join);
    assert_eq!(seen.len(), (PRODUCERS * EACH) as usize, "items lost");
    assert!(
        seen.values().all(|&n| n == 1),
        "an item was delivered twice"
    );
    assert!(q.empty());
}

fn expect_empty(q: Queue<u64>) {
    let t = Instant::now();
    match q.get_timeout(Duration::from_millis(100)) {
        Err(Error::Empty) => {}
        other => panic!("get_timeout on an empty queue gave {other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(100), "returned early");
    match q.get_nowait() {
        Err(Error::Empty) => {}
        other => panic!("get_nowait on an empty queue gave {other:?}"),
    }
    assert!(q.empty());
    assert_eq!(q.qsize(), 0);
}

/// `get_timeout` on an empty queue waits the timeout and gives [`Error::Empty`] (Python's
/// `queue.Empty`); so does `get_nowait`, at once.
pub fn get_timeout_on_empty_times_out<H: Harness>(h: &H) {
    let q = queue::<u64>(0, 1024);
    join(&start(h, expect_empty, q.clone()));
    expect_empty(q);
}

fn fill_then_block((q, ready): (Queue<u64>, Queue<u8>)) {
    q.put(&0).expect("put 0");
    q.put(&1).expect("put 1");
    assert!(q.full());
    let t = Instant::now();
    match q.put_timeout(&9, Duration::from_millis(100)) {
        Err(Error::Full) => {}
        other => panic!("put_timeout on a full queue gave {other:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(100), "returned early");
    match q.put_nowait(&9) {
        Err(Error::Full) => {}
        other => panic!("put_nowait on a full queue gave {other:?}"),
    }
    ready.put(&1).expect("ready");
    q.put_timeout(&2, LONG)
        .expect("a blocked put goes through once there is room");
}

/// A put on a full bounded queue waits: with a timeout it gives [`Error::Full`] (Python's
/// `queue.Full`), without one it completes when a get makes room.
pub fn put_on_full_blocks_then_times_out<H: Harness>(h: &H) {
    let q = queue::<u64>(2, 1024);
    let ready = queue::<u8>(0, 1024);
    let w = start(h, fill_then_block, (q.clone(), ready.clone()));
    ready
        .get_timeout(LONG)
        .expect("the worker filled the queue");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(q.qsize(), 2, "the put on a full queue did not wait");
    assert!(q.full());
    assert_eq!(q.get_timeout(LONG).expect("get"), 0);
    join(&w);
    assert_eq!(q.get_timeout(LONG).expect("get"), 1);
    assert_eq!(q.get_timeout(LONG).expect("get"), 2);
}

fn after_close(q: Queue<u64>) {
    assert!(q.is_closed());
    let e = q.put(&9).unwrap_err();
    assert!(matches!(e, Error::QueueClosed), "put after close: {e:?}");
    assert!(is_closed(&e));
    assert_eq!(q.get().expect("drain 1"), 1);
    assert_eq!(q.get().expect("drain 2"), 2);
    let t = Instant::now();
    for e in [q.get_timeout(LONG).unwrap_err(), q.get().unwrap_err()] {
        assert!(matches!(e, Error::QueueClosed), "get after close: {e:?}");
        assert!(is_closed(&e));
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "a get on a closed, empty queue waited"
    );
}

fn blocked_get((q, ready): (Queue<u64>, Queue<u8>)) {
    ready.put(&1).expect("ready");
    let e = q
        .get_timeout(LONG)
        .expect_err("the queue was closed, not filled");
    assert!(matches!(e, Error::QueueClosed), "{e:?}");
}

fn blocked_put((q, ready): (Queue<u64>, Queue<u8>)) {
    q.put(&0).expect("fill");
    ready.put(&1).expect("ready");
    let e = q
        .put_timeout(&1, LONG)
        .expect_err("the queue was closed, not emptied");
    assert!(matches!(e, Error::QueueClosed), "{e:?}");
}

/// After `close` (seen by every process): puts fail, gets drain the remaining items and then
/// fail at once; a get or put that was waiting when the queue closed wakes up and fails.
pub fn close_semantics<H: Harness>(h: &H) {
    let q = queue::<u64>(0, 1024);
    q.put(&1).unwrap();
    q.put(&2).unwrap();
    q.close();
    join(&start(h, after_close, q.clone()));

    for maxsize in [0, 1] {
        let q = queue::<u64>(maxsize, 1024);
        let ready = queue::<u8>(0, 1024);
        // A worker is a `fn` item (code only), so each kind is started by name.
        let w = if maxsize == 0 {
            start(h, blocked_get, (q.clone(), ready.clone()))
        } else {
            start(h, blocked_put, (q.clone(), ready.clone()))
        };
        ready
            .get_timeout(LONG)
            .expect("the worker is about to wait");
        std::thread::sleep(Duration::from_millis(50));
        q.close();
        join(&w);
    }
}

fn process_tasks((q, n): (JoinableQueue<u64>, u64)) {
    for _ in 0..n {
        q.get_timeout(LONG).expect("get");
        std::thread::sleep(Duration::from_millis(10));
        q.task_done().expect("task_done");
    }
}

/// `JoinableQueue::join` returns only once every item put was marked done; a `task_done`
/// too many is an error.
pub fn joinable_join_waits_for_task_done<H: Harness>(h: &H) {
    let q = JoinableQueue::<u64>::with_capacity(0, 1024).expect("creating a queue");
    for i in 0..5 {
        q.put(&i).unwrap();
    }
    assert_eq!(q.unfinished(), 5);
    let w = start(h, process_tasks, (q.clone(), 5));
    assert!(
        matches!(
            q.join_timeout(Duration::from_millis(5)),
            Err(Error::Timeout(_))
        ),
        "join returned before the tasks were done"
    );
    q.join_timeout(LONG).expect("join");
    assert_eq!(q.unfinished(), 0);
    assert!(q.empty());
    join(&w);
    assert!(matches!(
        q.task_done(),
        Err(Error::InvalidArgument {
            name: "task_done",
            ..
        })
    ));
}

fn get_forever((q, ready): (Queue<u64>, Queue<u8>)) {
    ready.put(&1).expect("ready");
    let _ = q.get();
    panic!("the queue was empty: get should have waited until the kill");
}

fn put_forever((q, ready): (Queue<u64>, Queue<u8>)) {
    ready.put(&1).expect("ready");
    let _ = q.put(&1);
    panic!("the queue was full: put should have waited until the kill");
}

/// A consumer SIGKILLed while it waits in `get` (holding the consumers' lock), and a
/// producer SIGKILLed while it waits in `put` on a full queue (holding the producers' lock),
/// do not block the others: the next get/put takes the dead process's lock over and works.
/// Process harnesses only.
pub fn killed_lock_holder_does_not_hang_the_others<H: Harness>(h: &H) {
    // The consumer side.
    let q = queue::<u64>(0, 1024);
    let ready = queue::<u8>(0, 1024);
    let w = start(h, get_forever, (q.clone(), ready.clone()));
    ready.get_timeout(LONG).expect("the worker is about to get");
    std::thread::sleep(Duration::from_millis(100));
    w.kill().expect("kill");
    assert!(w.join_timeout(LONG).is_err(), "the worker should have died");
    q.put(&7).unwrap();
    let t = Instant::now();
    assert_eq!(q.get_timeout(LONG).expect("get after the holder died"), 7);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );

    // The producer side.
    let q = queue::<u64>(1, 1024);
    q.put(&0).unwrap();
    let w = start(h, put_forever, (q.clone(), ready.clone()));
    ready.get_timeout(LONG).expect("the worker is about to put");
    std::thread::sleep(Duration::from_millis(100));
    w.kill().expect("kill");
    assert!(w.join_timeout(LONG).is_err(), "the worker should have died");
    assert_eq!(q.get_timeout(LONG).unwrap(), 0);
    let t = Instant::now();
    q.put_timeout(&2, LONG).expect("put after the holder died");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(q.qsize(), 1);
    assert_eq!(q.get_timeout(LONG).unwrap(), 2);
}

fn put_sequence_forever(q: Queue<u64>) {
    for i in 0.. {
        q.put(&i).expect("put");
    }
}

fn get_forever_counting(q: Queue<u64>) {
    loop {
        q.get().expect("get");
    }
}

/// Drains `q` and checks that what is left is a run of consecutive numbers, with `qsize`
/// agreeing; returns the last one (or `after` if the queue was empty).
fn drain_consecutive(q: &Queue<u64>, after: Option<u64>) -> Option<u64> {
    let size = q.qsize();
    let mut last = after;
    let mut n = 0;
    while let Ok(x) = q.get_timeout(Duration::from_millis(200)) {
        if let Some(prev) = last {
            assert_eq!(x, prev + 1, "an item was lost, duplicated or corrupted");
        }
        last = Some(x);
        n += 1;
    }
    assert_eq!(n, size, "qsize disagreed with the items that came out");
    last
}

/// A producer and a consumer SIGKILLed at arbitrary points of a busy stream (so sometimes in
/// the middle of writing or reading an item) leave the queue consistent: the items in it are
/// exactly those committed, in order, and the queue keeps working. Process harnesses only.
pub fn killed_mid_stream_leaves_the_queue_consistent<H: Harness>(h: &H) {
    for round in 0..6u64 {
        let q = queue::<u64>(0, 512);
        // The producer side: kill it while it puts as fast as it can; the parent consumes.
        let w = start(h, put_sequence_forever, q.clone());
        let mut last = None;
        let stop = Instant::now() + Duration::from_millis(20 + 7 * round);
        while Instant::now() < stop {
            let x = q.get_timeout(LONG).expect("get");
            if let Some(prev) = last {
                assert_eq!(x, prev + 1);
            }
            last = Some(x);
        }
        w.kill().expect("kill");
        assert!(
            w.join_timeout(LONG).is_err(),
            "the producer should have died"
        );
        let last = drain_consecutive(&q, last);
        q.put_timeout(&u64::MAX, LONG)
            .expect("put after the producer died");
        assert_eq!(q.get_timeout(LONG).expect("get"), u64::MAX);

        // The consumer side: the parent fills, the worker consumes, and dies mid-stream.
        let w = start(h, get_forever_counting, q.clone());
        let mut next = last.map_or(0, |l| l + 1);
        let start_at = next;
        let stop = Instant::now() + Duration::from_millis(20 + 7 * round);
        while Instant::now() < stop {
            q.put_timeout(&next, LONG).expect("put");
            next += 1;
        }
        w.kill().expect("kill");
        assert!(
            w.join_timeout(LONG).is_err(),
            "the consumer should have died"
        );
        if let Ok(first) = q.get_timeout(Duration::from_millis(200)) {
            assert!((start_at..next).contains(&first), "{first} was never put");
            let last = drain_consecutive(&q, Some(first));
            assert_eq!(last, Some(next - 1), "the newest items are missing");
        }
        q.put_timeout(&7, LONG)
            .expect("put after the consumer died");
        assert_eq!(q.get_timeout(LONG).expect("get after the consumer died"), 7);
    }
}

// ---------------------------------------------------------------------------------------------
// Pipe
// ---------------------------------------------------------------------------------------------

fn echo_plus_one(end: Connection) {
    end.send(&"ready".to_string()).expect("send first");
    while let Some(x) = end.recv_timeout::<Option<u64>>(LONG).expect("recv") {
        end.send(&(x + 1)).expect("send");
    }
}

/// A duplex pipe works both ways: the worker speaks first, then answers each request.
pub fn pipe_duplex_both_ways<H: Harness>(h: &H) {
    let (here, there) = pipe(true).expect("pipe");
    let w = start(h, echo_plus_one, there);
    assert_eq!(here.recv_timeout::<String>(LONG).expect("recv"), "ready");
    for i in 0..200u64 {
        here.send(&Some(i)).expect("send");
        assert_eq!(here.recv_timeout::<u64>(LONG).expect("recv"), i + 1);
    }
    here.send(&None::<u64>).expect("send stop");
    join(&w);
}

fn poll_then_recv(end: Connection) {
    let t = Instant::now();
    assert!(!end.poll(Duration::from_millis(100)).expect("poll"));
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "poll returned early"
    );
    assert!(matches!(
        end.recv_timeout::<u64>(Duration::from_millis(20)),
        Err(Error::Timeout(_))
    ));
    end.send(&"polled".to_string()).expect("send");
    assert!(end.poll(LONG).expect("poll"));
    assert!(end.poll(Duration::ZERO).expect("poll"), "still ready");
    assert_eq!(end.recv::<u64>().expect("recv"), 42);
}

/// `poll(timeout)` waits at most the timeout when nothing comes, and says `true` once a
/// message is ready; `recv_timeout` on a quiet pipe gives [`Error::Timeout`] and leaves the
/// connection usable.
pub fn pipe_poll_with_timeout<H: Harness>(h: &H) {
    let (here, there) = pipe(true).expect("pipe");
    let w = start(h, poll_then_recv, there);
    assert_eq!(here.recv_timeout::<String>(LONG).expect("recv"), "polled");
    here.send(&42u64).expect("send");
    join(&w);
}

fn send_then_drop(end: Connection) {
    end.send(&1u64).expect("send");
    drop(end);
}

/// Once the other end is dropped (and its process gone), `recv` drains what was sent and
/// then fails with [`Error::PipeClosed`] (Python's `EOFError`); `poll` reports the end as
/// ready; `send` fails with [`Error::PipeClosed`] too (Python's `BrokenPipeError`).
pub fn pipe_eof_after_peer_dropped<H: Harness>(h: &H) {
    let (here, there) = pipe(true).expect("pipe");
    let w = start(h, send_then_drop, there);
    join(&w);
    assert_eq!(here.recv_timeout::<u64>(LONG).expect("recv"), 1);
    assert!(here.poll(LONG).expect("poll"), "end of file is ready");
    let e = here.recv_timeout::<u64>(LONG).unwrap_err();
    assert!(matches!(e, Error::PipeClosed), "recv: {e:?}");
    assert!(is_closed(&e));
    let e = here.send(&2u64).unwrap_err();
    assert!(matches!(e, Error::PipeClosed), "send: {e:?}");
    assert!(is_closed(&e));
}

fn use_received_connection(end: Connection) {
    let passed: Connection = end.recv_timeout(LONG).expect("recv a Connection");
    passed
        .send(&"through the passed end".to_string())
        .expect("send on it");
    let got: u64 = passed.recv_timeout(LONG).expect("recv on it");
    end.send(&got).expect("report");
}

/// A `Connection` sent over a pipe works on the receiving side, both ways.
pub fn pipe_carries_a_connection<H: Harness>(h: &H) {
    let (here, there) = pipe(true).expect("pipe");
    let (x, y) = pipe(true).expect("pipe");
    let w = start(h, use_received_connection, there);
    here.send(&y).expect("send a Connection");
    drop(y);
    assert_eq!(
        x.recv_timeout::<String>(LONG).expect("recv"),
        "through the passed end"
    );
    x.send(&99u64).expect("send");
    assert_eq!(here.recv_timeout::<u64>(LONG).expect("recv"), 99);
    join(&w);
}

fn use_received_queue(end: Connection) {
    let q: Queue<String> = end.recv_timeout(LONG).expect("recv a Queue");
    q.put(&"through the passed queue".to_string()).expect("put");
    let j: JoinableQueue<u64> = end.recv_timeout(LONG).expect("recv a JoinableQueue");
    j.get_timeout(LONG).expect("get");
    j.task_done().expect("task_done");
}

/// A `Queue` (and a `JoinableQueue`) sent over a pipe is the same queue on the receiving
/// side.
pub fn pipe_carries_a_queue<H: Harness>(h: &H) {
    let (here, there) = pipe(true).expect("pipe");
    let q = queue::<String>(0, 1024);
    let j = JoinableQueue::<u64>::new(0).expect("creating a queue");
    j.put(&5).unwrap();
    let w = start(h, use_received_queue, there);
    here.send(&q).expect("send a Queue");
    here.send(&j).expect("send a JoinableQueue");
    assert_eq!(
        q.get_timeout(LONG).expect("get"),
        "through the passed queue"
    );
    j.join_timeout(LONG).expect("join");
    join(&w);
}

fn use_received_array(end: Connection) {
    let (data, lock): (RawArray<u64>, ProcessLock) =
        end.recv_timeout(LONG).expect("recv an array and a lock");
    lock.acquire().expect("acquire");
    for i in 0..data.len() {
        data.store(i, data.load(i).expect("load") * 2)
            .expect("store");
    }
    end.send(&data.len()).expect("report");
    let _: String = end.recv_timeout(LONG).expect("wait for go");
    lock.release().expect("release");
    end.send(&"released".to_string()).expect("report");
}

/// A shared array and a process-shared lock sent over a pipe arrive as the *same* shared
/// memory: the worker's writes are seen here, and the lock it holds is held here too.
pub fn pipe_carries_a_shared_array_and_a_lock<H: Harness>(h: &H) {
    let (here, there) = pipe(true).expect("pipe");
    let data = RawArray::<u64>::from_iter(0..16).expect("array");
    let lock = ProcessLock::new().expect("lock");
    let w = start(h, use_received_array, there);
    here.send(&(&data, &lock)).expect("send");
    assert_eq!(here.recv_timeout::<usize>(LONG).expect("recv"), 16);
    assert_eq!(data.to_vec(), (0..16).map(|i| i * 2).collect::<Vec<u64>>());
    assert!(lock.locked(), "the worker holds the lock");
    assert!(!lock
        .acquire_timeout(Duration::from_millis(10))
        .expect("acquire_timeout"));
    here.send(&"go".to_string()).expect("send");
    assert_eq!(here.recv_timeout::<String>(LONG).expect("recv"), "released");
    assert!(
        lock.acquire_timeout(LONG).expect("acquire"),
        "released there, free here"
    );
    lock.release().expect("release");
    join(&w);
}

/// Generates one `#[test]` per check of [`testing`](crate::testing) for a harness; add
/// `processes` for a harness whose workers are processes (adds the kill checks).
#[macro_export]
macro_rules! ipc_conformance {
    ($harness:expr) => {
        $crate::ipc_conformance!(@tests $harness;
            fifo_one_producer,
            many_producers_many_consumers,
            get_timeout_on_empty_times_out,
            put_on_full_blocks_then_times_out,
            close_semantics,
            joinable_join_waits_for_task_done,
            pipe_duplex_both_ways,
            pipe_poll_with_timeout,
            pipe_eof_after_peer_dropped,
            pipe_carries_a_connection,
            pipe_carries_a_queue,
            pipe_carries_a_shared_array_and_a_lock,
        );
    };
    ($harness:expr, processes) => {
        $crate::ipc_conformance!($harness);
        $crate::ipc_conformance!(@tests $harness;
            killed_lock_holder_does_not_hang_the_others,
            killed_mid_stream_leaves_the_queue_consistent,
        );
    };
    (@tests $harness:expr; $($check:ident,)+) => {
        $(
            #[test]
            fn $check() {
                $crate::testing::$check(&$harness);
            }
        )+
    };
}
