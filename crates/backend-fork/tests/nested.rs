//! Pools and processes inside pool workers, and pools and handles reached from forked
//! children: nested ones work; a forked child's copy of its parent's pool or handle refuses
//! every call at once and its drop does nothing; a pool moved into a forked closure is
//! dropped by the caller, not by the thread that forks for the whole process.

use std::thread;
use std::time::Duration;

use multiproc_core::testing::process::{die, Gate, GateControl};
use multiproc_core::Error;
use multiproc_fork::{Executor, ForkPool, Process};
use multiproc_sys::exit::exit_now;

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);

/// Runs `f` on its own thread; fails if it has not returned within [`LIMIT`].
fn within_limit<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|e| panic!("{what} did not return within {LIMIT:?}: {e}"))
}

/// Starts a forked `Process` that exits with `code`, and returns the exit code it saw.
fn process_in_worker(code: i32) -> Result<i32, String> {
    let p = Process::from_closure(move || exit_now(code))
        .start()
        .map_err(|e| e.to_string())?;
    p.join_timeout(LIMIT).map_err(|e| e.to_string())?;
    p.exitcode().ok_or_else(|| "no exit code".to_string())
}

#[test]
fn a_process_inside_a_pool_worker_works() {
    let pool = ForkPool::new(2).unwrap();
    let mut r = pool
        .map_async_chunked(process_in_worker, [3, 4], 1)
        .unwrap();
    match r.get_timeout(LIMIT) {
        Ok(codes) => assert_eq!(codes, vec![Ok(3), Ok(4)]),
        Err(e) => {
            let _ = pool.terminate();
            panic!("a Process inside a worker: {e}");
        }
    }
}

/// Waits at `gate`, then kills its worker.
fn gate_then_die(gate: Gate) -> u32 {
    gate.pass();
    die(1)
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn a_pool_moved_into_a_process_is_dropped_by_the_caller_not_the_forker() {
    let pool = ForkPool::new(1).unwrap();
    let gate = GateControl::new();
    let mut running = pool.apply_async(gate_then_die, gate.gate()).unwrap();
    gate.wait_started(1);
    // Moving the pool into a forked closure: the child's copy refuses, and the parent's copy
    // is dropped (close + join: it waits for the running task) by the thread that started.
    let mover = thread::spawn(move || {
        let p = Process::from_closure(move || {
            let refused = matches!(pool.apply(square, 3), Err(Error::ForeignProcess { .. }));
            drop(pool); // does nothing here
            exit_now(if refused { 0 } else { 3 });
        })
        .start()
        .unwrap();
        p.join_timeout(LIMIT).unwrap();
        p.exitcode()
    });
    // Meanwhile every other fork of this process goes ahead.
    let code = within_limit("another fork while a moved pool drains", || {
        let p = Process::from_closure(|| exit_now(5)).start().unwrap();
        p.join_timeout(LIMIT).unwrap();
        p.exitcode()
    });
    assert_eq!(code, Some(5));
    // The running task kills its worker; the pool may fork a replacement while draining.
    gate.open(1);
    assert!(matches!(
        running.get_timeout(LIMIT),
        Err(Error::WorkerDied { .. })
    ));
    let child = within_limit("the start that moved the pool", move || mover.join());
    assert_eq!(child.unwrap(), Some(0), "the child's copy did not refuse");
}

#[test]
fn a_handle_used_from_a_forked_child_refuses_and_leaves_the_child_alone() {
    let gate = GateControl::new();
    let theirs = gate.gate();
    let sibling = Process::from_closure(move || theirs.pass())
        .start()
        .unwrap();
    gate.wait_started(1);
    let h = &sibling;
    let user = Process::from_closure(move || {
        let foreign =
            |r: multiproc_core::Result<()>| matches!(r, Err(Error::ForeignProcess { .. }));
        let all = foreign(h.kill())
            && foreign(h.terminate())
            && foreign(h.join())
            && foreign(h.join_timeout(Duration::ZERO))
            && foreign(h.check())
            && h.exitcode().is_none();
        // SAFETY: this forked child owns its copy of the handle; the parent's frame that
        // owns it never runs again here (the child exits below), so this is its only drop.
        drop(unsafe { std::ptr::read(h) });
        exit_now(if all { 0 } else { 3 });
    })
    .start()
    .unwrap();
    user.join_timeout(LIMIT).unwrap();
    assert_eq!(
        user.exitcode(),
        Some(0),
        "the copy did not refuse every call"
    );
    assert!(
        sibling.is_alive(),
        "the child's copy signalled or reaped it"
    );
    gate.open(1);
    sibling.join_timeout(LIMIT).unwrap();
    assert_eq!(sibling.exitcode(), Some(0));
}
