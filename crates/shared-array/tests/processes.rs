//! Shared arrays, values and robust locks across forked processes.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{fork_child, ForkHarness};
use multiproc_core::testing::sync::eventually;
use multiproc_core::testing::{Harness, Worker};
use multiproc_core::{Error, Lock, RLock, SharedBuffer};
use multiproc_shared_array::{
    recv_buffer, send_buffer, Array, ProcessLock, ProcessRLock, RawArray, ShmBuffer, Value,
};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};

#[test]
fn the_fork_harness_reports_failing_children() {
    let err = ForkHarness
        .spawn(|| panic!("boom in child"))
        .join()
        .unwrap_err();
    assert!(err.contains("boom in child"), "{err}");
    ForkHarness.spawn(|| ()).join().unwrap();
}

#[test]
fn a_child_writes_an_array_and_the_parent_reads_it() {
    let a = RawArray::<f64>::zeros(1000).unwrap();
    let ptr = a.as_ptr() as usize;
    // SAFETY: the child only stores atomically, and needs no other thread of this process.
    let child = unsafe {
        fork_child(|| {
            let values: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5).collect();
            a.write_range(0, &values).unwrap();
        })
    };
    child.wait().unwrap();
    assert_eq!(a.as_ptr() as usize, ptr);
    // The child has exited, so no other process maps the array: the kernel lets it freeze,
    // and the parent reads it with a plain slice, without a copy. (Other tests' children may
    // hold it a little longer: they were forked from this process while it existed.)
    let frozen = common::freeze_eventually(a);
    assert_eq!(frozen[0], 0.0);
    assert_eq!(frozen[999], 499.5);
    assert!(frozen.iter().enumerate().all(|(i, &x)| x == i as f64 * 0.5));
}

#[test]
fn children_write_disjoint_ranges_atomically() {
    let a = std::sync::Arc::new(RawArray::<u32>::zeros(4000).unwrap());
    let workers: Vec<_> = (0..4)
        .map(|k| {
            let a = a.clone();
            ForkHarness.spawn(move || {
                let part: Vec<u32> = (0..1000).map(|i| (k * 1000 + i) as u32).collect();
                a.write_range(k * 1000, &part).unwrap();
            })
        })
        .collect();
    multiproc_core::testing::join_all(workers);
    assert_eq!(a.to_vec(), (0..4000).collect::<Vec<u32>>());
}

#[cfg(feature = "ndarray")]
#[test]
fn an_ndarray_view_in_the_child_sees_the_parents_writes() {
    use multiproc_core::Event;
    use multiproc_shared_array::ProcessEvent;
    let a = RawArray::<i64>::zeros(24).unwrap();
    let ready = ProcessEvent::new().unwrap();
    let a_ref = &a;
    let ready_ref = &ready;
    let in_child = move || {
        assert!(ready_ref.wait_timeout(Duration::from_secs(10)).unwrap());
        // SAFETY: the parent writes the array only before setting `ready`, and not again
        // until this child has exited: nobody writes it while this view lives.
        let v = unsafe { a_ref.view_unchecked((2, 3, 4)) }.unwrap();
        assert_eq!(v.shape(), &[2, 3, 4]);
        for ((i, j, k), &x) in v.indexed_iter() {
            assert_eq!(x, (i * 100 + j * 10 + k) as i64, "at {i},{j},{k}");
        }
        // The safe way costs a copy.
        assert_eq!(a_ref.to_ndarray((2, 3, 4)).unwrap(), v);
    };
    // SAFETY: the child uses only the array (as argued above) and a process-shared event.
    let child = unsafe { fork_child(in_child) };
    // Written after the fork: the child can only see this through shared memory.
    {
        // SAFETY: the child does not touch the array until `ready` is set below.
        let mut v = unsafe { a.view_mut_unchecked((2, 3, 4)) }.unwrap();
        for ((i, j, k), x) in v.indexed_iter_mut() {
            *x = (i * 100 + j * 10 + k) as i64;
        }
    }
    ready.set().unwrap();
    child.wait().unwrap();
}

#[test]
fn two_processes_increment_a_value_under_its_lock() {
    let v = std::sync::Arc::new(Value::<u64>::zeroed().unwrap());
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let v = v.clone();
            ForkHarness.spawn(move || {
                for _ in 0..100_000 {
                    *v.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    multiproc_core::testing::join_all(workers);
    assert_eq!(v.get().unwrap(), 200_000);

    // The same with the lock-free atomic.
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let v = v.clone();
            ForkHarness.spawn(move || {
                for _ in 0..100_000 {
                    v.atomic().fetch_add(1, SeqCst);
                }
            })
        })
        .collect();
    multiproc_core::testing::join_all(workers);
    assert_eq!(v.get().unwrap(), 400_000);
}

#[test]
fn array_guards_exclude_other_processes() {
    let a = std::sync::Arc::new(Array::<u64>::zeros(8).unwrap());
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let a = a.clone();
            ForkHarness.spawn(move || {
                for _ in 0..20_000 {
                    let mut g = a.lock().unwrap();
                    // Non-atomic read-modify-write of every element: only the lock protects it.
                    for x in g.iter_mut() {
                        *x += 1;
                    }
                }
            })
        })
        .collect();
    multiproc_core::testing::join_all(workers);
    assert_eq!(a.to_vec().unwrap(), vec![40_000; 8]);
}

/// Forks a child that takes `lock`, says so through `held`, and sleeps until killed.
fn holder<L: Lock>(lock: &L, held: &ShmBuffer) -> common::Child {
    // SAFETY: the child only uses the lock and an atomic flag.
    unsafe {
        fork_child(|| {
            lock.acquire().unwrap();
            held.as_atomic_u64s()[0].store(1, SeqCst);
            // Bounded, in case the parent dies without killing us.
            std::thread::sleep(Duration::from_secs(30));
        })
    }
}

fn kill_and_reap(child: common::Child) {
    kill(child.pid, Signal::SIGKILL).unwrap();
    assert!(matches!(
        waitpid(child.pid, None).unwrap(),
        WaitStatus::Signaled(_, Signal::SIGKILL, _)
    ));
}

#[test]
fn a_lock_whose_holder_is_killed_reports_owner_died_and_recovers() {
    let lock = ProcessLock::new().unwrap();
    let held = ShmBuffer::new(8).unwrap();
    let child = holder(&lock, &held);
    eventually("the child holds the lock", || {
        held.as_atomic_u64s()[0].load(SeqCst) == 1
    });
    // A live holder is not robbed: several liveness slices pass without a takeover.
    let t = Instant::now();
    assert!(!lock.acquire_timeout(Duration::from_millis(200)).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(190));

    kill_and_reap(child);
    // Bounded against a hang (the death must be noticed within 10 s), not timed.
    match lock.acquire_timeout(Duration::from_secs(10)) {
        Err(Error::OwnerDied) => {}
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(lock.locked(), "the caller holds the lock after OwnerDied");
    lock.release().unwrap();
    // The lock works as before, also across processes.
    assert!(lock.try_acquire().unwrap());
    lock.release().unwrap();
    held.as_atomic_u64s()[0].store(0, SeqCst);
    let child = holder(&lock, &held);
    eventually("a new child holds the lock", || {
        held.as_atomic_u64s()[0].load(SeqCst) == 1
    });
    assert!(!lock.try_acquire().unwrap());
    kill_and_reap(child);
    assert!(matches!(lock.acquire(), Err(Error::OwnerDied)));
    lock.release().unwrap();
}

#[test]
fn a_killed_but_unreaped_holder_is_noticed_too() {
    let lock = ProcessLock::new().unwrap();
    let held = ShmBuffer::new(8).unwrap();
    let child = holder(&lock, &held);
    eventually("the child holds the lock", || {
        held.as_atomic_u64s()[0].load(SeqCst) == 1
    });
    kill(child.pid, Signal::SIGKILL).unwrap();
    // Not reaped: the holder is a zombie, which kill(pid, 0) would call alive.
    match lock.acquire_timeout(Duration::from_secs(10)) {
        Err(Error::OwnerDied) => {}
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    lock.release().unwrap();
    assert!(child.wait().unwrap_err().contains("SIGKILL"));
}

#[test]
fn an_rlock_whose_owner_is_killed_is_taken_over() {
    let rlock = ProcessRLock::new().unwrap();
    let held = ShmBuffer::new(8).unwrap();
    let child = holder(&rlock, &held);
    eventually("the child owns the rlock", || {
        held.as_atomic_u64s()[0].load(SeqCst) == 1
    });
    assert!(!rlock.is_owned());
    kill_and_reap(child);
    assert!(matches!(
        rlock.acquire_timeout(Duration::from_secs(10)),
        Err(Error::OwnerDied)
    ));
    assert!(rlock.is_owned());
    assert_eq!(rlock.recursion_depth(), 1);
    rlock.acquire().unwrap();
    rlock.release().unwrap();
    rlock.release().unwrap();
    assert!(!rlock.locked());
}

#[test]
fn a_buffer_sent_over_a_socket_is_shared_with_the_other_process() {
    let (parent_end, child_end) = std::os::unix::net::UnixStream::pair().unwrap();
    let in_child = move || {
        let buf = recv_buffer(&child_end).unwrap();
        assert_eq!(buf.len(), 64);
        let a = RawArray::<u64>::from_buffer(buf, 8).unwrap();
        assert_eq!(a.load(0).unwrap(), 7);
        a.write_range(1, &[1, 2, 3, 4, 5, 6, 7]).unwrap();
    };
    // SAFETY: the child uses only its own socket end and the buffer it receives.
    let child = unsafe { fork_child(in_child) };
    // Made after the fork, so the child can only get it through the socket.
    let a = RawArray::<u64>::from_slice(&[7; 8]).unwrap();
    send_buffer(&parent_end, a.buffer()).unwrap();
    child.wait().unwrap();
    assert_eq!(a.to_vec(), vec![7, 1, 2, 3, 4, 5, 6, 7]);
}

/// Forks a child that takes `lock` and exits holding it, and reaps the child.
fn die_holding<L: Lock>(lock: &L) {
    // SAFETY: the child only takes the lock, in shared memory, and exits.
    let child = unsafe {
        fork_child(|| {
            lock.acquire().unwrap();
        })
    };
    child.wait().unwrap();
}

/// Whether another process can take `lock` within 10 s (and release it again).
fn another_process_can_lock<L: Lock>(lock: &L) -> bool {
    // SAFETY: the child only takes and releases the lock, in shared memory.
    let child = unsafe {
        fork_child(|| {
            assert!(
                lock.acquire_timeout(Duration::from_secs(10)).unwrap(),
                "the lock stayed held after OwnerDied"
            );
            lock.release().unwrap();
        })
    };
    child.wait().is_ok()
}

/// Issue 11, item 12: `Value::get` reports `OwnerDied` once and leaves no hold behind, so the
/// natural retry works and every other process can still take the lock.
#[test]
fn owner_died_from_value_get_leaves_the_lock_usable_by_everyone() {
    let v = Value::new(5_u64).unwrap();
    die_holding(v.get_lock());
    assert!(matches!(v.get(), Err(Error::OwnerDied)));
    assert_eq!(v.get().unwrap(), 5, "the natural retry");
    v.set(6).unwrap();
    assert!(
        another_process_can_lock(v.get_lock()),
        "the lock is still held by the caller that got OwnerDied"
    );
    assert_eq!(v.get().unwrap(), 6);
}

/// The same for `Array`'s one-call accessors.
#[test]
fn owner_died_from_array_get_leaves_the_lock_usable_by_everyone() {
    let a = Array::<u32>::from_slice(&[1, 2, 3]).unwrap();
    die_holding(a.get_lock());
    assert!(matches!(a.get(1), Err(Error::OwnerDied)));
    assert_eq!(a.get(1).unwrap(), 2, "the natural retry");
    assert!(
        another_process_can_lock(a.get_lock()),
        "the lock is still held by the caller that got OwnerDied"
    );
    die_holding(a.get_lock());
    assert!(matches!(a.to_vec(), Err(Error::OwnerDied)));
    assert!(another_process_can_lock(a.get_lock()));
}

/// A `ProcessLock` taken with `Lock::lock` (the guard form): an `OwnerDied` that the caller
/// turns into an error with `?` releases the lock.
#[test]
fn owner_died_from_a_lock_guard_releases_when_dropped() {
    let lock = ProcessLock::new().unwrap();
    die_holding(&lock);
    let with_question_mark = || -> multiproc_core::Result<()> {
        let _held = lock.lock()?;
        Ok(())
    };
    assert!(matches!(with_question_mark(), Err(Error::OwnerDied)));
    assert!(
        another_process_can_lock(&lock),
        "the lock is still held by the caller that got OwnerDied"
    );
}

/// `Array::lock`, `Array::lock_timeout` and `Value::lock` hand the caller the guard with
/// `OwnerDied`: what it writes through the guard is kept, and dropping it frees the lock.
#[test]
fn owner_died_hands_over_the_guard() {
    use multiproc_core::LockError;
    let a = Array::<u32>::from_slice(&[1, 2, 3]).unwrap();
    die_holding(a.get_lock());
    match a.lock() {
        Err(LockError::OwnerDied(mut g)) => g[0] = 10,
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(another_process_can_lock(a.get_lock()));
    assert_eq!(a.to_vec().unwrap(), [10, 2, 3]);
    die_holding(a.get_lock());
    match a.lock_timeout(Duration::from_secs(10)) {
        Err(e) => assert!(e.is_owner_died(), "{e:?}"),
        Ok(g) => panic!("{g:?}"),
    }
    assert!(another_process_can_lock(a.get_lock()));

    let v = Value::new(1_u8).unwrap();
    die_holding(v.get_lock());
    let mut g = v.lock().unwrap_err().into_guard().expect("the guard");
    *g += 1;
    drop(g);
    assert!(another_process_can_lock(v.get_lock()));
    assert_eq!(v.get().unwrap(), 2);
}
