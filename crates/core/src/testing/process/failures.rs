//! Workers that die mid-task (signals, `abort`, `exit`), the rest of a map, zombies,
//! and large arguments that must arrive whole, before and after a death.

use super::*;

/// A worker killed by SIGKILL, abort, a segfault or `exit(7)` mid-task fails that task with
/// [`Error::WorkerDied`] naming the signal or code; the pool replaces it and stays usable.
pub fn a_dying_worker_fails_only_its_task<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    for (how, expected) in [
        (1, ExitCause::Signal(Signal::SIGKILL as i32)),
        (2, ExitCause::Signal(Signal::SIGABRT as i32)),
        (3, ExitCause::Signal(Signal::SIGSEGV as i32)),
        (4, ExitCause::Code(7)),
    ] {
        match p.apply(die, how) {
            Err(Error::WorkerDied { cause, pid }) => {
                assert_eq!(cause, expected, "way {how}");
                assert!(pid > 0);
            }
            other => panic!("way {how}: expected WorkerDied, got {other:?}"),
        }
        assert_eq!(p.map(die, [0, 5, 6, 8]).unwrap(), vec![0, 5, 6, 8]);
    }
}

/// When one worker is killed during an `imap`, every other item still gets its result;
/// a whole `map_async` fails with the death rather than hanging.
pub fn the_rest_of_a_map_completes<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let items = vec![10, 11, 1, 12, 13, 14, 15, 16];
    let results: Vec<_> = p.imap(die, items.clone()).unwrap().collect();
    assert_eq!(results.len(), items.len());
    for (item, r) in items.iter().zip(&results) {
        match (item, r) {
            (1, Err(Error::WorkerDied { cause, .. })) => {
                assert_eq!(*cause, ExitCause::Signal(Signal::SIGKILL as i32))
            }
            (1, other) => panic!("the killed task gave {other:?}"),
            (n, Ok(v)) => assert_eq!(n, v),
            (n, Err(e)) => panic!("task {n} failed with {e}"),
        }
    }
    let mut whole = p.map_async_chunked(die, items, 1).unwrap();
    assert!(matches!(
        whole.get_timeout(Duration::from_secs(10)),
        Err(Error::WorkerDied { .. })
    ));
}

/// A worker that dies after a run of fast tasks (whose replies it may send in batches) fails
/// only the task that killed it: the tasks it finished before keep their results, and none
/// is blamed or run again.
pub fn results_finished_before_a_death_are_kept<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    // Deaths at a few places in the run, so that one falls between two batches.
    for killed in [43, 45, 50] {
        let items: Vec<u32> = (10..74).map(|i| if i == killed { 1 } else { i }).collect();
        let results: Vec<_> = p.imap(die, items.clone()).unwrap().collect();
        assert_eq!(results.len(), items.len());
        for (at, (item, r)) in items.iter().zip(&results).enumerate() {
            match (item, r) {
                (1, Err(Error::WorkerDied { .. })) => {}
                (1, other) => panic!("the killed task gave {other:?}"),
                (n, Ok(v)) => assert_eq!(n, v),
                (n, Err(e)) => panic!("task {n} (item {at}, death at {killed}) failed with {e}"),
            }
        }
    }
}

/// The death of an idle-pool worker mid-task is reported as such, by the supervisor that
/// watches the worker's socket, without anyone waiting for a timeout: `apply` (which has no
/// timeout) returns `WorkerDied`. How fast (milliseconds here) is the bench's to measure; the
/// bound below only turns a hang into a failure.
pub fn a_death_is_noticed_at_once<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    p.map_chunked(die, [0, 0], 1).unwrap(); // both workers up and idle
    let t = Instant::now();
    assert!(matches!(p.apply(die, 1), Err(Error::WorkerDied { .. })));
    let took = t.elapsed();
    assert!(took < LIMIT, "took {took:?}");
}

/// Dropping a pool (close + join) and terminating one leave no zombie and no live worker;
/// terminate does not wait for a running task.
pub fn no_zombies_after_drop_or_terminate<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 3);
    let pids = worker_pids(&p);
    assert!(
        !pids.contains(&std::process::id()),
        "a task ran in the parent"
    );
    assert_eq!(p.map(sleep_then, [1, 1, 1]).unwrap(), vec![1, 1, 1]);
    drop(p);
    for &pid in &pids {
        assert!(
            !is_zombie_child(pid) && !is_child(pid),
            "worker {pid} left after drop"
        );
    }

    let p = pool(make, 2);
    let pids = worker_pids(&p);
    // A task that runs until its worker is killed: it waits at a gate nobody opens.
    let gate = GateControl::new();
    let slow = p.apply_async(pid_at_gate, gate.gate()).unwrap();
    gate.wait_started(1);
    let t = Instant::now();
    p.terminate().unwrap();
    assert!(matches!(slow.get(), Err(Error::PoolClosed(_))));
    p.join().unwrap();
    // The task waits at a gate nobody opens: had terminate waited for it, it would never
    // have returned; the bound turns that hang into a failure.
    assert!(t.elapsed() < LIMIT, "terminate waited for the task");
    for &pid in &pids {
        assert!(
            !is_zombie_child(pid) && !is_child(pid),
            "worker {pid} left after terminate"
        );
    }
}

/// As many one-item tasks as workers, each waiting until all have started, run in different
/// workers at once (a pool that gave two to one worker would fail at the gate), and none
/// runs in the parent.
pub fn work_is_spread_over_all_workers<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 3);
    let pids = worker_pids(&p);
    assert_eq!(pids.len(), 3, "tasks shared workers: {pids:?}");
    assert!(
        !pids.contains(&std::process::id()),
        "a task ran in the parent"
    );
}

/// Returns its argument: a large argument and a large result.
pub fn echo_bytes(v: Vec<u8>) -> Vec<u8> {
    v
}

/// A `map` whose arguments and results are both larger than a socket's buffer completes:
/// pipelining never lets the pool and a worker block writing to each other.
pub fn large_arguments_and_results_do_not_deadlock<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let items: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; 300_000]).collect();
    let mut pending = p.map_async_chunked(echo_bytes, items.clone(), 1).unwrap();
    match pending.get_timeout(Duration::from_secs(30)) {
        Ok(out) => assert!(out == items, "results differ from the arguments"),
        Err(e) => panic!("large map did not complete: {e}"),
    }
}

/// A checksum of `v` that depends on every element and its position.
pub fn checksum(v: Packed<u64>) -> u64 {
    v.iter().fold(v.len() as u64, |h, &x| h.rotate_left(7) ^ x)
}

/// Aborts the worker on an empty argument; otherwise [`checksum`].
pub fn checksum_or_die(v: Packed<u64>) -> u64 {
    if v.is_empty() {
        std::process::abort();
    }
    checksum(v)
}

/// `len` values that differ for every `seed` (and from those of every other seed).
fn numbers(seed: u64, len: usize) -> Packed<u64> {
    Packed::new(
        (0..len as u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed)
            .collect(),
    )
}

/// [`checksum`] of `v`, after passing `gate`: tasks queued behind it at its worker wait
/// unread until the test opens the gate.
pub fn checksum_at_gate((v, gate): (Packed<u64>, Gate)) -> u64 {
    gate.pass();
    checksum(v)
}

/// Arguments of several MiB — larger than a socket buffer, and than the process pools'
/// threshold for sending a body through shared memory — arrive intact: also when the next
/// map is encoded while arguments of the last one wait unread at their worker (a buffer
/// reused before its task is answered would be overwritten under the worker), and when later
/// maps reuse the buffers of answered ones (sizes vary, so a reused buffer holds a longer
/// stale value than the next one).
///
/// Deterministic: the first map's tasks wait at a gate; the second map is encoded only after
/// every worker has started one of them (so every task sent with them has been sent), and the
/// gate opens only after that encoding.
pub fn large_arguments_arrive_intact<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let round = |r: u64| {
        let items: Vec<Packed<u64>> = (0..6u64)
            .map(|i| numbers(r * 100 + i, [600_000, 150_000, 400_000][i as usize % 3]))
            .collect();
        let expected: Vec<u64> = items.iter().map(|v| checksum(v.clone())).collect();
        (items, expected)
    };
    let check =
        |mut pending: crate::AsyncResult<Vec<u64>>, expected: Vec<u64>, r: u64| match pending
            .get_timeout(LIMIT)
        {
            Ok(got) => assert_eq!(got, expected, "round {r}"),
            Err(e) => panic!("round {r}: {e}"),
        };
    let ((items0, expected0), (items1, expected1)) = (round(0), round(1));
    let gate = GateControl::new();
    let gated: Vec<(Packed<u64>, Gate)> = items0.into_iter().map(|v| (v, gate.gate())).collect();
    let first = p.map_async_chunked(checksum_at_gate, gated, 1).unwrap();
    // Each worker runs one task of the first map, and the tasks pipelined behind it were
    // sent with it; none has been answered.
    gate.wait_started(2);
    let second = p.map_async_chunked(checksum, items1, 1).unwrap();
    gate.open(6);
    check(first, expected0, 0);
    check(second, expected1, 1);
    for r in 2..4 {
        let (items, expected) = round(r);
        check(
            p.map_async_chunked(checksum, items, 1).unwrap(),
            expected,
            r,
        );
    }
}

/// Large arguments queued behind a task that kills its worker are sent whole to the
/// replacement.
pub fn large_arguments_behind_a_death_are_resent_whole<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    let items = vec![
        Packed::new(Vec::new()),
        numbers(1, 300_000),
        numbers(2, 500_000),
        numbers(3, 200_000),
    ];
    let expected: Vec<u64> = items[1..].iter().map(|v| checksum(v.clone())).collect();
    let results: Vec<_> = p.imap(checksum_or_die, items).unwrap().collect();
    assert!(
        matches!(results[0], Err(Error::WorkerDied { .. })),
        "the aborting task gave {:?}",
        results[0]
    );
    let rest: Vec<u64> = results[1..]
        .iter()
        .map(|r| r.as_ref().copied().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert_eq!(rest, expected);
}
