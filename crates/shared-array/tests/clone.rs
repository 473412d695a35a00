//! Second handles: `try_clone` of `Value`, `Array`, `RawArray` and every process-shared
//! primitive refers to the same shared memory as the original — a write through one is seen
//! through the other, a lock held through one blocks the other, in this process and in forked
//! children — and stays valid when the original is dropped.
//!
//! (Spawned children: the root `tests/clone_handles.rs`.)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use multiproc_core::{Barrier, Condition, Event, Lock, RLock, Semaphore};
use multiproc_fork::Process;
use multiproc_shared_array::{
    Array, ProcessBarrier, ProcessCondition, ProcessEvent, ProcessLock, ProcessRLock,
    ProcessSemaphore, RawArray, Value,
};

/// "Never hangs" bound for the blocking calls below; no check waits for it to pass.
const LONG: Duration = Duration::from_secs(30);

#[test]
fn a_value_clone_sees_the_others_writes() {
    let v = Value::new(1_u64).unwrap();
    let c = v.try_clone().unwrap();
    v.set(7).unwrap();
    assert_eq!(c.get().unwrap(), 7);
    *c.lock().unwrap() += 1;
    assert_eq!(v.get().unwrap(), 8);
    c.atomic().fetch_add(2, Ordering::SeqCst);
    assert_eq!(v.atomic().load(Ordering::SeqCst), 10);
}

#[test]
fn an_array_clone_sees_the_others_writes_and_shares_its_lock() {
    let a = Array::<i32>::zeros(4).unwrap();
    let c = a.try_clone().unwrap();
    a.lock().unwrap()[1] = 5;
    assert_eq!(c.to_vec().unwrap(), vec![0, 5, 0, 0]);
    c.set(3, 9).unwrap();
    assert_eq!(a.get(3).unwrap(), 9);

    // One lock behind both: this thread's guard through one refuses a second guard through
    // the other, and another thread cannot take the lock through the clone meanwhile.
    let g = a.lock().unwrap();
    assert!(c.get_lock().is_owned());
    assert!(c.lock().is_err(), "a second guard of the same array");
    std::thread::scope(|s| {
        s.spawn(|| assert!(!c.get_lock().try_acquire().unwrap()));
    });
    drop(g);
    assert!(!c.get_lock().locked());
}

#[test]
fn a_raw_array_clone_sees_the_others_writes() {
    let a = RawArray::<f64>::zeros(3).unwrap();
    let c = a.try_clone().unwrap();
    a.store(2, 1.5).unwrap();
    assert_eq!(c.load(2).unwrap(), 1.5);
}

#[test]
fn a_process_lock_clone_excludes() {
    let lock = ProcessLock::new().unwrap();
    let c = lock.try_clone().unwrap();
    lock.acquire().unwrap();
    assert!(c.locked());
    assert!(!c.try_acquire().unwrap());
    // Python's Lock has no owner: the clone may release what the original acquired.
    c.release().unwrap();
    assert!(!lock.locked());
    assert!(c.try_acquire().unwrap());
    assert!(!lock.try_acquire().unwrap());
    lock.release().unwrap();
}

#[test]
fn a_process_lock_clone_excludes_a_forked_child() {
    let lock = ProcessLock::new().unwrap();
    let c = lock.try_clone().unwrap();
    lock.acquire().unwrap();
    // The child sees the lock taken (it may not take it), through the clone.
    let child = Process::from_closure(move || {
        assert!(c.locked());
        assert!(!c.try_acquire().unwrap());
    })
    .start()
    .unwrap();
    child.join().unwrap();
    assert_eq!(child.exitcode(), Some(0));
    lock.release().unwrap();
}

#[test]
fn a_process_rlock_clone_has_the_same_owner_and_depth() {
    let r = ProcessRLock::new().unwrap();
    let c = r.try_clone().unwrap();
    r.acquire().unwrap();
    assert!(c.is_owned());
    c.acquire().unwrap();
    assert_eq!(r.recursion_depth(), 2);
    std::thread::scope(|s| {
        s.spawn(|| assert!(!c.try_acquire().unwrap()));
    });
    r.release().unwrap();
    c.release().unwrap();
    assert!(!r.locked());
}

#[test]
fn an_event_clone_sees_set_and_clear() {
    let e = ProcessEvent::new().unwrap();
    let c = e.try_clone().unwrap();
    e.set().unwrap();
    assert!(c.is_set());
    assert!(c.wait_timeout(Duration::ZERO).unwrap());
    c.clear().unwrap();
    assert!(!e.is_set());
}

#[test]
fn a_semaphore_clone_shares_the_count_and_the_bound() {
    let s = ProcessSemaphore::bounded(2).unwrap();
    let c = s.try_clone().unwrap();
    assert!(c.is_bounded());
    s.acquire().unwrap();
    assert_eq!(c.value(), 1);
    c.acquire().unwrap();
    assert!(!s.try_acquire().unwrap());
    s.release(2).unwrap();
    assert!(c.release(1).is_err(), "bounded through the clone too");
    assert_eq!(s.value(), 2);
}

#[test]
fn a_condition_clone_notifies_the_originals_waiter() {
    let cond = ProcessCondition::with_capacity(4).unwrap();
    let c = cond.try_clone().unwrap();
    assert_eq!(c.capacity(), 4);
    let waiting = AtomicUsize::new(0);
    let go = AtomicBool::new(false);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            cond.acquire().unwrap();
            waiting.fetch_add(1, Ordering::SeqCst);
            // Counted under the lock: whoever takes the lock after seeing the count finds
            // this thread inside `wait`, which released it.
            let woke = cond.wait_for(|| go.load(Ordering::SeqCst), LONG).unwrap();
            cond.release().unwrap();
            woke
        });
        while waiting.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        c.acquire().unwrap(); // only once the waiter is inside wait: the same lock
        go.store(true, Ordering::SeqCst);
        c.notify(1).unwrap();
        c.release().unwrap();
        assert!(waiter.join().unwrap(), "woken through the clone");
    });
}

#[test]
fn a_barrier_clone_is_the_same_barrier() {
    let b = ProcessBarrier::new(2).unwrap();
    let c = b.try_clone().unwrap();
    assert_eq!(c.parties(), 2);
    let mut indices = std::thread::scope(|s| {
        let t = s.spawn(|| c.wait_timeout(LONG).unwrap());
        let mine = b.wait_timeout(LONG).unwrap();
        vec![mine, t.join().unwrap()]
    });
    indices.sort_unstable();
    assert_eq!(indices, vec![0, 1]);
}

/// Python's `Process(target=f, args=(v,))` twice with one `Value`: each child gets a clone.
#[test]
fn a_value_clone_handed_to_two_forked_processes_works() {
    const ADDS: u64 = 500;
    let v = Value::new(0_u64).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            let mine = v.try_clone().unwrap();
            Process::from_closure(move || {
                for _ in 0..ADDS {
                    *mine.lock().unwrap() += 1;
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    for child in &children {
        child.join().unwrap();
        assert_eq!(child.exitcode(), Some(0));
    }
    assert_eq!(v.get().unwrap(), 2 * ADDS);
}

#[test]
fn dropping_the_original_keeps_the_clone_valid() {
    let v = Value::new(3_i64).unwrap();
    let vc = v.try_clone().unwrap();
    drop(v);
    vc.set(4).unwrap();
    assert_eq!(vc.get().unwrap(), 4);

    let a = Array::from_slice(&[1_u8, 2, 3]).unwrap();
    let ac = a.try_clone().unwrap();
    drop(a);
    ac.lock().unwrap()[0] = 9;
    assert_eq!(ac.to_vec().unwrap(), vec![9, 2, 3]);

    let lock = ProcessLock::new().unwrap();
    let lc = lock.try_clone().unwrap();
    lock.acquire().unwrap();
    drop(lock);
    assert!(
        lc.locked(),
        "the hold outlives the handle it was taken through"
    );
    lc.release().unwrap();
    assert!(lc.try_acquire().unwrap());

    let r = ProcessRLock::new().unwrap();
    let rc = r.try_clone().unwrap();
    drop(r);
    rc.acquire().unwrap();
    rc.release().unwrap();

    let e = ProcessEvent::new().unwrap();
    let ec = e.try_clone().unwrap();
    drop(e);
    ec.set().unwrap();
    assert!(ec.is_set());

    let s = ProcessSemaphore::new(1).unwrap();
    let sc = s.try_clone().unwrap();
    drop(s);
    assert!(sc.try_acquire().unwrap());

    let cond = ProcessCondition::new().unwrap();
    let cc = cond.try_clone().unwrap();
    drop(cond);
    cc.acquire().unwrap();
    assert!(!cc.wait_timeout(Duration::ZERO).unwrap());
    cc.release().unwrap();

    let b = ProcessBarrier::new(1).unwrap();
    let bc = b.try_clone().unwrap();
    drop(b);
    assert_eq!(bc.wait().unwrap(), 0);
}
