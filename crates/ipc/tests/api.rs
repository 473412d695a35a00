//! The public API's edges: bad arguments name themselves, oversized and fd-owning items are
//! refused (never a hang), wrong types are serialization errors.

use std::time::Duration;

use multiproc_core::Error;
use multiproc_ipc::ring::{DEFAULT_RING_BYTES, MAX_ITEMS, MAX_RING_BYTES};
use multiproc_ipc::{is_closed, pipe, JoinableQueue, Queue};

/// Runs `f` on a thread of its own and fails if it has not returned within 30 s: a call that
/// must not block is bounded against a hang, not timed (the thread is then left behind,
/// blocked, and the test fails instead of hanging).
fn within_limit<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    const LIMIT: Duration = Duration::from_secs(30);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|e| panic!("{what} did not return within {LIMIT:?}: {e}"))
}

#[test]
fn bad_sizes_are_errors_that_name_the_argument() {
    for maxsize in [MAX_ITEMS + 1, usize::MAX] {
        match Queue::<u8>::new(maxsize) {
            Err(Error::InvalidArgument {
                name: "maxsize",
                reason,
            }) => {
                assert!(reason.contains(&maxsize.to_string()), "{reason}")
            }
            other => panic!("maxsize {maxsize}: {other:?}"),
        }
        assert!(JoinableQueue::<u8>::new(maxsize).is_err());
    }
    for ring in [0, 1, 63, MAX_RING_BYTES + 1, usize::MAX] {
        assert!(
            matches!(
                Queue::<u8>::with_capacity(0, ring),
                Err(Error::InvalidArgument {
                    name: "ring_bytes",
                    ..
                })
            ),
            "ring_bytes {ring}"
        );
    }
    let q = Queue::<u8>::new(MAX_ITEMS).unwrap();
    assert_eq!(q.maxsize(), MAX_ITEMS);
    assert_eq!(q.max_item_bytes(), DEFAULT_RING_BYTES - 8);
}

#[test]
fn an_item_larger_than_the_ring_is_refused_naming_its_size() {
    let q = Queue::<Vec<u8>>::with_capacity(0, 1024).unwrap();
    let put = {
        let q = q.clone();
        within_limit("putting an item larger than the ring", move || {
            q.put(&vec![7u8; 5000])
        })
    };
    match put {
        Err(Error::InvalidArgument {
            name: "item",
            reason,
        }) => {
            assert!(
                reason.contains("5008") && reason.contains("1016"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    // The largest that fits goes through.
    let biggest = vec![1u8; q.max_item_bytes() - 8]; // 8 bytes of length prefix
    q.put(&biggest).unwrap();
    assert_eq!(q.get().unwrap(), biggest);
}

#[test]
fn large_items_pass_through_a_large_ring() {
    let q = Queue::<Vec<u64>>::with_capacity(0, 64 << 20).unwrap();
    let item: Vec<u64> = (0..1_000_000).collect();
    let consumer = {
        let q = q.clone();
        std::thread::spawn(move || q.get().unwrap())
    };
    q.put(&item).unwrap();
    assert_eq!(consumer.join().unwrap(), item);
}

#[test]
fn values_that_own_descriptors_are_refused_by_a_queue() {
    let q = Queue::<multiproc_ipc::Connection>::new(0).unwrap();
    let (a, _b) = pipe(true).unwrap();
    match q.put(&a) {
        Err(Error::Serialization(m)) => assert!(m.contains("Pipe"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(q.empty());
    let qq = Queue::<Queue<u8>>::new(0).unwrap();
    assert!(matches!(
        qq.put(&Queue::new(0).unwrap()),
        Err(Error::Serialization(_))
    ));
}

#[test]
fn a_wrong_type_is_a_serialization_error() {
    let q = Queue::<String>::new(0).unwrap();
    q.put(&"not a number".to_string()).unwrap();
    // Another handle type on the same memory: only possible by sending it; model it with a
    // pipe, which gives the receiver the type it asks for.
    let (a, b) = pipe(true).unwrap();
    a.send(&q).unwrap();
    let wrong: Queue<Vec<f64>> = b.recv().unwrap();
    assert!(matches!(wrong.get(), Err(Error::Serialization(_))));
    // A Queue is not a JoinableQueue.
    a.send(&q).unwrap();
    assert!(matches!(
        b.recv::<JoinableQueue<String>>(),
        Err(Error::Serialization(m)) if m.contains("not interchangeable")
    ));
}

#[test]
fn queues_do_not_serialize_to_bytes_alone() {
    let q = Queue::<u8>::new(0).unwrap();
    let e = postcard::to_stdvec(&q).unwrap_err();
    assert!(!e.to_string().is_empty());
}

#[test]
fn close_is_visible_through_every_handle() {
    let q = Queue::<u8>::new(0).unwrap();
    let other = q.clone();
    assert!(!other.is_closed());
    q.close();
    assert!(other.is_closed());
    for e in [other.put(&1).unwrap_err(), other.get_nowait().unwrap_err()] {
        assert!(matches!(e, Error::QueueClosed), "{e:?}");
        assert!(is_closed(&e));
    }
    q.close(); // twice is fine
}

#[test]
fn task_done_too_many_is_an_error_and_changes_nothing() {
    let q = JoinableQueue::<u8>::new(0).unwrap();
    assert!(q.task_done().is_err());
    q.put(&1).unwrap();
    q.get().unwrap();
    q.task_done().unwrap();
    assert!(matches!(
        q.task_done(),
        Err(Error::InvalidArgument {
            name: "task_done",
            ..
        })
    ));
    assert_eq!(q.unfinished(), 0);
    q.join_timeout(Duration::ZERO).unwrap();
}

#[test]
fn nowait_and_zero_timeouts_do_not_block() {
    let q = Queue::<u8>::new(1).unwrap();
    let q = within_limit("the nowait and zero-timeout calls", move || {
        for e in [
            q.get_nowait().unwrap_err(),
            q.get_timeout(Duration::ZERO).unwrap_err(),
        ] {
            assert!(matches!(e, Error::Empty), "{e:?}");
            assert!(!is_closed(&e));
        }
        q.put_nowait(&1).unwrap();
        for e in [
            q.put_nowait(&2).unwrap_err(),
            q.put_timeout(&2, Duration::ZERO).unwrap_err(),
        ] {
            assert!(matches!(e, Error::Full), "{e:?}");
            assert!(!is_closed(&e));
        }
        q
    });
    assert_eq!(q.get_nowait().unwrap(), 1);
}
