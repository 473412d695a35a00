//! Creating, using and dropping queues and pipes leaves the descriptor count unchanged.
//!
//! One test in its own binary: other tests running at the same time would open descriptors of
//! their own and make the count meaningless.

use std::time::Duration;

use multiproc_ipc::{pipe, Connection, JoinableQueue, Queue};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

#[test]
fn queues_and_pipes_leak_no_descriptors() {
    // Warm up whatever the first use allocates once per process (thread-locals, caches).
    let q = Queue::<u64>::new(0).unwrap();
    q.put(&1).unwrap();
    let _ = q.get();
    drop(q);
    let before = open_fds();

    for i in 0..300u64 {
        let q = Queue::<u64>::with_capacity(4, 256).unwrap();
        let j = JoinableQueue::<u64>::new(0).unwrap();
        q.put(&i).unwrap();
        j.put(&i).unwrap();
        assert_eq!(q.clone().get().unwrap(), i);
        assert!(q.get_timeout(Duration::from_millis(1)).is_err());
        j.get().unwrap();
        j.task_done().unwrap();

        let (a, b) = pipe(i % 2 == 0).unwrap();
        b.send(&i).unwrap();
        assert_eq!(a.recv::<u64>().unwrap(), i);
        // A queue and a connection sent over the pipe: descriptors in flight and received.
        if i % 2 == 0 {
            b.send(&q).unwrap();
            let _q2: Queue<u64> = a.recv().unwrap();
            let (x, y) = pipe(true).unwrap();
            b.send(&y).unwrap();
            let y2: Connection = a.recv().unwrap();
            y2.send(&1u8).unwrap();
            assert_eq!(x.recv::<u8>().unwrap(), 1);
            let array = multiproc_shared_array::RawArray::<u64>::from_iter(0..8).unwrap();
            b.send(&array).unwrap();
            let received: multiproc_shared_array::RawArray<u64> = a.recv().unwrap();
            assert_eq!(received.load(7).unwrap(), 7);
            // Sent but never received: closed with the pipe.
            b.send(&x).unwrap();
        }
    }
    assert_eq!(open_fds(), before, "descriptors leaked");
}
