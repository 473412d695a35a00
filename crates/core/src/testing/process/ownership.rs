//! Who a pool belongs to and what it is made of: a copy in a forked child refuses, a pool
//! inside a worker works, `pids()`, and a pool that cannot replace its workers.

use super::*;

/// What a forked child of the test finds when it uses its copy of the pool. Exit codes of the
/// child in [`a_pool_used_from_a_forked_child_refuses_at_once`].
fn use_a_foreign_copy<E: Executor>(p: &E) -> i32 {
    let foreign = |r: crate::Result<()>| matches!(r, Err(Error::ForeignProcess { .. }));
    if !foreign(p.apply_async(sleep_then, 0).map(drop)) {
        return 10;
    }
    if !foreign(p.map(sleep_then, [0, 0]).map(drop)) {
        return 11;
    }
    if !foreign(p.terminate()) {
        return 12;
    }
    p.close();
    if !foreign(p.join()) {
        return 13;
    }
    let message = p.apply(sleep_then, 0).map(drop).unwrap_err().to_string();
    if !message.contains(&std::process::id().to_string()) {
        return 14;
    }
    // SAFETY: the child owns its copy of the pool; the parent's frame that owns `p` never
    // runs again in this process (the child leaves with `_exit`), so this is the copy's only
    // drop here.
    drop(unsafe { std::ptr::read(p) });
    0
}

/// A pool reached from a forked child of its creator (a `static`, a value captured by a
/// forked closure) has none of its threads or workers there: every call fails at once with
/// [`Error::ForeignProcess`] naming both processes, and dropping it does nothing — it
/// neither hangs nor stops the creator's workers, whose pool carries on.
pub fn a_pool_used_from_a_forked_child_refuses_at_once<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let before = worker_pids(&p);
    match in_forked_child(|| use_a_foreign_copy(&p)) {
        Ok(0) => {}
        Ok(10) => panic!("apply_async in a forked child did not fail with ForeignProcess"),
        Ok(11) => panic!("map in a forked child did not fail with ForeignProcess"),
        Ok(12) => panic!("terminate in a forked child did not fail with ForeignProcess"),
        Ok(13) => panic!("join in a forked child did not fail with ForeignProcess"),
        Ok(14) => panic!("the error does not name the child's pid"),
        other => panic!("the forked child: {other:?}"),
    }
    assert_eq!(
        worker_pids(&p),
        before,
        "the child's copy touched the workers"
    );
    assert_eq!(p.map(sleep_then, [0, 0, 0]).unwrap(), vec![0, 0, 0]);
}

/// A pool created inside a worker of this pool (a nested pool, of the same backend) works:
/// `nested(n)` creates one and maps squares over `0..n` (the macro defines it from the
/// constructor). A hang fails after [`LIMIT`].
pub fn a_pool_inside_a_worker_works<E: Executor>(
    make: MakePool<E>,
    nested: Task<u64, Result<Vec<u64>, String>>,
) {
    let p = pool(make, 2);
    let mut pending = p.map_async_chunked(nested, [3, 5], 1).unwrap();
    match pending.get_timeout(LIMIT) {
        Ok(got) => assert_eq!(
            got,
            vec![Ok(vec![0, 1, 4]), Ok(vec![0, 1, 4, 9, 16])],
            "nested pools"
        ),
        Err(e) => {
            let _ = p.terminate();
            panic!("a pool inside a worker: {e}");
        }
    }
}

/// `pids()` names each live worker once: the pids of tasks that run in every worker at once,
/// before and after a worker is replaced, never this process.
pub fn pids_name_the_live_workers<E: Executor>(
    make: MakePool<E>,
    pids: fn(&E) -> Vec<Option<u32>>,
) {
    let p = pool(make, 2);
    let listed = |p: &E| -> BTreeSet<u32> {
        let all = pids(p);
        assert_eq!(all.len(), 2, "one slot per worker: {all:?}");
        all.into_iter()
            .map(|pid| pid.expect("every slot has a worker"))
            .collect()
    };
    let first = listed(&p);
    assert_eq!(first.len(), 2);
    assert!(!first.contains(&std::process::id()));
    assert_eq!(worker_pids(&p), first);
    let dead = match p.apply(die, 1) {
        Err(Error::WorkerDied { pid, .. }) => pid,
        other => panic!("expected WorkerDied, got {other:?}"),
    };
    assert!(
        first.contains(&dead),
        "the dead worker {dead} was not listed"
    );
    // Both workers hold a task at once: the replacement has been listed before its first task.
    let now = worker_pids(&p);
    assert_eq!(listed(&p), now);
    assert!(!now.contains(&dead));
}

/// A pool whose workers all die and cannot be replaced (`make_limited(n)` builds a pool of `n`
/// whose launcher fails with `EAGAIN` after `n` launches, as `fork` does at the process limit)
/// closes itself with [`Error::NoWorkers`] carrying the cause: pending work fails with it,
/// every later call returns it at once, and `join` and `Drop` return promptly.
pub fn a_pool_that_cannot_replace_its_workers_breaks<E: Executor + 'static>(
    make_limited: MakePool<E>,
) {
    let p = make_limited(2).expect("the first launches succeed");
    for _ in 0..2 {
        assert!(matches!(p.apply(die, 1), Err(Error::WorkerDied { .. })));
    }
    let broken = |e: &Error| matches!(e, Error::NoWorkers { cause } if cause.to_string().contains("os error 11"));
    // The last replacement may still be failing: accepted work must then fail, not wait.
    match p.apply_async(sleep_then, 0) {
        Err(e) => assert!(broken(&e), "{e}"),
        Ok(mut r) => match r.get_timeout(LIMIT) {
            Err(e) => assert!(broken(&e), "queued work got {e}"),
            Ok(v) => panic!("a task ran without workers: {v}"),
        },
    }
    for _ in 0..2 {
        let e = p.apply_async(sleep_then, 0).map(drop).unwrap_err();
        assert!(broken(&e), "a later call got {e}");
        let e = p.map(sleep_then, [1, 2]).unwrap_err();
        assert!(broken(&e), "a later map got {e}");
    }
    let p = within_limit("join of a broken pool", move || {
        p.close();
        let joined = p.join();
        assert!(matches!(&joined, Err(e) if broken(e)), "{joined:?}");
        p
    });
    within_limit("drop of a broken pool", move || drop(p));
}
