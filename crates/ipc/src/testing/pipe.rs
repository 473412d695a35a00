//! The checks of `Pipe` and its `Connection`s: both directions, poll, EOF, and carrying
//! connections, queues, shared arrays and locks.

use std::time::{Duration, Instant};

use multiproc_core::{Error, Lock};
use multiproc_shared_array::{ProcessLock, RawArray};

use super::{join, queue, start, Harness, LONG};
use crate::{is_closed, pipe, Connection, JoinableQueue, Queue};

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
