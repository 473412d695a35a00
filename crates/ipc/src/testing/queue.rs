//! The checks of `Queue`: order, many producers and consumers, timeouts on empty and full,
//! close.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use multiproc_core::Error;

use super::{join, queue, start, Harness, LONG};
use crate::{is_closed, Queue};

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
