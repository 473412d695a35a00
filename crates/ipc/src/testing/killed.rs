//! The checks that SIGKILL a worker while it uses a queue (process harnesses only): the
//! others neither hang nor see the queue inconsistent.

use std::time::{Duration, Instant};

use super::{queue, start, Harness, Worker, LONG};
use crate::Queue;

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
