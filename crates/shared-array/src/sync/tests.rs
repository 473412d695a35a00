use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use multiproc_core::{Condition, Error, Lock, Semaphore, SyncPrimitive};

use super::condition::{ProcessCondition, WAITING};
use super::event::ProcessEvent;
use super::lock::ProcessLock;
use super::semaphore::ProcessSemaphore;
use crate::ShmBuffer;

#[test]
fn attach_checks_the_kind() {
    let lock = ProcessLock::new().unwrap();
    lock.acquire().unwrap();
    // Re-attach the same memory through a received descriptor.
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    crate::send_buffer(&a, lock.buffer()).unwrap();
    let buf = crate::recv_buffer(&b).unwrap();
    let again = ProcessLock::from_buffer(buf).unwrap();
    assert!(again.locked());
    again.release().unwrap();
    assert!(!lock.locked());
    crate::send_buffer(&a, lock.buffer()).unwrap();
    let buf = crate::recv_buffer(&b).unwrap();
    assert!(matches!(
        ProcessEvent::from_buffer(buf),
        Err(Error::InvalidArgument { name: "buffer", .. })
    ));
    assert!(matches!(
        ProcessLock::from_buffer(ShmBuffer::new(8).unwrap()),
        Err(Error::InvalidArgument { name: "buffer", .. })
    ));
}

#[test]
fn a_lock_whose_holder_is_gone_is_taken_over() {
    // Simulate a dead holder: the largest pid Linux can hand out (2^22 - 1), which no
    // process has on a machine whose pid_max is lower.
    if std::path::Path::new("/proc/4194303").exists() {
        return; // that pid runs here: nothing to simulate with
    }
    let lock = ProcessLock::new().unwrap();
    lock.word().store(((1 << 22) - 1) << 32 | 77, Relaxed);
    match lock.acquire_timeout(Duration::from_millis(10)) {
        Err(Error::OwnerDied) => {}
        other => panic!("{other:?}"),
    }
    assert!(lock.locked());
    lock.release().unwrap();
    assert!(lock.try_acquire().unwrap());
    lock.release().unwrap();
}

#[test]
fn semaphore_and_condition_arguments_are_checked() {
    assert!(matches!(
        ProcessSemaphore::new(usize::MAX),
        Err(Error::InvalidArgument { name: "value", .. })
    ));
    let s = ProcessSemaphore::new(1).unwrap();
    assert!(matches!(
        s.release(0),
        Err(Error::InvalidArgument { name: "n", .. })
    ));
    assert_eq!(s.kind(), "ProcessSemaphore");
    let b = ProcessSemaphore::bounded(1).unwrap();
    match b.release(1) {
        Err(Error::InvalidArgument { name: "n", reason }) => {
            assert!(reason.contains("bound of 1"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.value(), 1);
    assert_eq!(
        ProcessSemaphore::bounded(1).unwrap().kind(),
        "ProcessBoundedSemaphore"
    );
    assert!(matches!(
        ProcessCondition::with_capacity(0),
        Err(Error::InvalidArgument {
            name: "waiters",
            ..
        })
    ));
}

#[test]
fn a_full_condition_table_is_an_error_not_a_hang() {
    let c = std::sync::Arc::new(ProcessCondition::with_capacity(1).unwrap());
    let c2 = c.clone();
    let t = std::thread::spawn(move || {
        c2.acquire().unwrap();
        let r = c2.wait_timeout(Duration::from_secs(10));
        c2.release().unwrap();
        r
    });
    // Wait until the thread sits in the table.
    let start = std::time::Instant::now();
    while c.slot(0).0.load(Relaxed) != WAITING {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    c.acquire().unwrap();
    assert!(matches!(
        c.wait_timeout(Duration::from_millis(1)),
        Err(Error::InvalidArgument {
            name: "waiters",
            ..
        })
    ));
    c.notify(1).unwrap();
    c.release().unwrap();
    assert!(t.join().unwrap().unwrap());
}
