//! The builder's options (`task_timeout`, `retries`, `memory_limit`,
//! `max_tasks_per_child`), cancel, `map_results` and `.await`.

use super::*;

/// `AsyncResult` and `IMap` work with `.await` (here on the smallest executor,
/// [`block_on`](crate::block_on)): a result arrives, a dead worker's task is an error, and
/// an `imap` streams every item's outcome.
pub fn results_can_be_awaited<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let (pid, died, streamed) = crate::block_on(async {
        let pid = p.apply_async(worker_pid, 0).unwrap().await;
        let died = p.apply_async(die, 1).unwrap().await;
        let mut imap = p.imap(die, [10, 1, 11]).unwrap();
        let mut streamed = Vec::new();
        while let Some(r) = imap.next_async().await {
            streamed.push(r);
        }
        (pid, died, streamed)
    });
    assert!(pid.unwrap() > 0);
    assert!(matches!(died, Err(Error::WorkerDied { .. })), "{died:?}");
    assert_eq!(streamed.len(), 3);
    assert_eq!(streamed[0].as_ref().ok(), Some(&10));
    assert!(matches!(streamed[1], Err(Error::WorkerDied { .. })));
    assert_eq!(streamed[2].as_ref().ok(), Some(&11));
}

/// Makes a pool with a builder's options (`|o| Pool::builder().options(o).build()`).
pub type MakeWith<E> = fn(PoolOptions) -> crate::Result<E>;

pub(super) fn pool_with<E: Executor>(make: MakeWith<E>, options: PoolOptions) -> E {
    make(options.clone()).unwrap_or_else(|e| panic!("creating a pool with {options:?} failed: {e}"))
}

/// `map_results` keeps every finished result when one item's worker dies, and gives that
/// item its own error; `map` over the same items fails as a whole.
pub fn map_results_keeps_every_finished_result<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let items = [10, 1, 11, 12, 13];
    let outcomes = p.map_results(die, items).unwrap();
    assert_eq!(outcomes.len(), items.len());
    for (item, r) in items.iter().zip(&outcomes) {
        match (item, r) {
            (1, Err(Error::WorkerDied { cause, .. })) => {
                assert_eq!(
                    *cause,
                    ExitCause::Signal(nix::sys::signal::Signal::SIGKILL as i32)
                )
            }
            (1, other) => panic!("the killed item gave {other:?}"),
            (n, Ok(v)) => assert_eq!(n, v),
            (n, Err(e)) => panic!("item {n} failed with {e}"),
        }
    }
    let star = p
        .starmap_results(|a: u32, b: u32| die(a + b), [(5, 5), (0, 1)])
        .unwrap();
    assert_eq!(star[0].as_ref().ok(), Some(&10));
    assert!(matches!(star[1], Err(Error::WorkerDied { .. })));
    assert!(matches!(p.map(die, items), Err(Error::WorkerDied { .. })));
}

/// `cancel` on a queued task drops it and on a running one kills its worker (replaced);
/// `get` returns `Cancelled` for both, and the pool goes on.
pub fn cancel_drops_a_queued_task_and_kills_a_running_one<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    let gate = GateControl::new();
    let running = p.apply_async(pid_at_gate, gate.gate()).unwrap();
    let pid = gate.wait_started(1)[0];
    let queued = p.apply_async(pid_at_gate, gate.gate()).unwrap();
    assert!(queued.cancel());
    assert!(running.cancel());
    assert!(!running.cancel(), "a second cancel does nothing");
    assert!(matches!(running.get(), Err(Error::Cancelled)));
    assert!(matches!(queued.get(), Err(Error::Cancelled)));
    // The running task's worker was killed and replaced, and the queued task never started:
    // on this one-worker pool it would run before this one and wait at the gate, which stays
    // closed, so this task would never finish.
    let mut after = p.apply_async(worker_pid, 0).unwrap();
    let now = after.get_timeout(LIMIT).expect("the pool goes on");
    assert_ne!(now, pid, "the cancelled task's worker was not replaced");
    assert_eq!(p.map(die, [0, 5]).unwrap(), vec![0, 5]);
    // A dropped imap cancels the rest: its running tasks' workers are killed and replaced.
    let p = pool(make, 2);
    let gate = GateControl::new();
    let imap = p
        .imap(pid_at_gate, (0..6).map(|_| gate.gate()).collect::<Vec<_>>())
        .unwrap();
    let started: BTreeSet<u32> = gate.wait_started(2).into_iter().collect();
    drop(imap);
    let now = worker_pids(&p);
    assert!(now.is_disjoint(&started), "{now:?} still has {started:?}");
}

/// Dropping an `imap` whose results have all arrived, none of them read, cancels nothing:
/// no worker is killed or replaced. (The pids are taken by one gate task per worker, queued
/// behind the `imap`'s tasks: each worker answers in order, so once they are back, every
/// `imap` result has been delivered.)
pub fn dropping_a_finished_imap_kills_no_worker<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let imap = p.imap(worker_pid, [0; 8]).unwrap();
    let before = worker_pids(&p);
    drop(imap);
    let after = worker_pids(&p);
    assert_eq!(before, after, "a worker was replaced");
    let imap = p.imap_unordered(worker_pid, [0; 8]).unwrap();
    let before = worker_pids(&p);
    drop(imap);
    assert_eq!(worker_pids(&p), before, "a worker was replaced");
}

/// Builds a pool with `task_timeout`: a task blocked past it fails with `TaskTimedOut`
/// (limit and pid), promptly; its worker is replaced; every other task completes; the pool
/// goes on. Prints how late after the deadline the error came.
pub fn task_timeout_kills_only_that_task<E: Executor>(make: MakeWith<E>) {
    // The timer starts when a task is sent, not when its worker starts it: the gated pid tasks
    // below wait for a replacement worker to start and reach the gate, which a starved machine
    // (other tests keep every core busy) can take longer than a second to do — and a spawned
    // replacement over 2 s (1 of 49 runs with a busy loop alongside). Long enough that no
    // healthy task hits it there; the test waits for it once.
    let limit = Duration::from_secs(5);
    let p = pool_with(
        make,
        PoolOptions {
            processes: Some(2),
            task_timeout: Some(limit),
            ..PoolOptions::default()
        },
    );
    let gate = GateControl::new();
    let mut stuck = p.apply_async(pid_at_gate, gate.gate()).unwrap();
    let pid = gate.wait_started(1)[0];
    let started = Instant::now();
    assert_eq!(p.map(die, [0, 5, 6, 8]).unwrap(), vec![0, 5, 6, 8]);
    match stuck.get_timeout(LIMIT) {
        Err(Error::TaskTimedOut { limit: l, pid: p }) => {
            assert_eq!((l, p), (limit, pid));
        }
        other => panic!("expected TaskTimedOut, got {other:?}"),
    }
    let took = started.elapsed();
    eprintln!("task_timeout {limit:?}: reported {took:?} after the task started");
    // A bound that turns a missed deadline into a failure, not a latency figure.
    assert!(took < limit + Duration::from_secs(10), "took {took:?}");
    let now = worker_pids(&p);
    assert!(!now.contains(&pid), "the timed-out worker is still there");
    assert_eq!(now.len(), 2);
    assert_eq!(p.map(die, [0, 5]).unwrap(), vec![0, 5]);
}

/// The first attempt blocks at the gate (and is killed by the timeout); any later one
/// returns its worker's pid. `marker` is a path that does not exist yet.
pub fn block_first_time((marker, gate): (String, Gate)) -> u32 {
    if std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
        .is_ok()
    {
        gate.pass();
    }
    std::process::id()
}

/// Panics.
pub fn panic_always(x: u32) -> u32 {
    panic!("task {x} panics");
}

/// `retries`: a task that times out on its first attempt runs again on a fresh worker and
/// succeeds; one that fails every attempt reports each; a panic is not retried.
pub fn a_timeout_then_a_retry_succeeds<E: Executor>(make: MakeWith<E>) {
    // The timer starts when a task is sent: a retry is sent to a freshly started worker, which
    // must start and finish it (or reach its gate) within the limit, on a machine that other
    // tests may keep busy. The two cases below run side by side, one per worker, so that the
    // test waits for the limit twice, not three times.
    let limit = Duration::from_secs(2);
    let p = pool_with(
        make,
        PoolOptions {
            processes: Some(2),
            task_timeout: Some(limit),
            retries: 1,
            ..PoolOptions::default()
        },
    );
    let marker = std::env::temp_dir().join(format!(
        "multiproc-retry-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    let once = GateControl::new();
    let mut r = p
        .apply_async(
            block_first_time,
            (marker.to_string_lossy().into_owned(), once.gate()),
        )
        .unwrap();
    let first = once.wait_started(1)[0];
    // Every attempt times out: two attempts, each reported. Sent once the first task runs,
    // so it goes to the other worker.
    let always = GateControl::new();
    let mut every = p.apply_async(pid_at_gate, always.gate()).unwrap();
    let attempt = always.wait_started(1)[0];
    assert_ne!(attempt, first, "both tasks ran on one worker");
    let second = r.get_timeout(LIMIT).expect("the retry succeeds");
    assert_ne!(first, second, "the retry ran on the timed-out worker");
    let _ = std::fs::remove_file(&marker);
    let retried = always.wait_started(1)[0];
    assert_ne!(attempt, retried, "the retry did not run on a fresh worker");
    match every.get_timeout(LIMIT) {
        Err(Error::AttemptsExhausted {
            attempts,
            history,
            last,
        }) => {
            assert_eq!(attempts, 2);
            assert_eq!(history.len(), 2);
            assert!(
                history.iter().all(|h| h.contains("timed out")),
                "{history:?}"
            );
            assert!(matches!(*last, Error::TaskTimedOut { .. }), "{last}");
        }
        other => panic!("expected AttemptsExhausted, got {other:?}"),
    }
    // A death by signal is retried too; a panic is not.
    match p.apply(die, 1) {
        Err(Error::AttemptsExhausted {
            attempts: 2, last, ..
        }) => {
            assert!(matches!(*last, Error::WorkerDied { .. }), "{last}")
        }
        other => panic!("expected AttemptsExhausted, got {other:?}"),
    }
    // Without a timeout: unwinding and printing a panic (a backtrace, with RUST_BACKTRACE set,
    // in a debug build) can take long on a loaded machine.
    let p = pool_with(
        make,
        PoolOptions {
            processes: Some(1),
            retries: 1,
            ..PoolOptions::default()
        },
    );
    assert!(matches!(
        p.apply(panic_always, 3),
        Err(Error::TaskPanicked { .. })
    ));
}

/// Allocates and touches `mib` MiB, then waits at `gate` (for ever, in the suite: its
/// worker is killed).
pub fn grow_at_gate((mib, gate): (usize, Gate)) -> usize {
    let block = vec![1u8; mib << 20];
    std::hint::black_box(&block);
    gate.pass();
    block.len()
}

/// `memory_limit`: a task that drives its worker over the limit while it runs fails with
/// `MemoryLimit` (the limit, the size seen, the pid), just that task; the tasks on the other
/// worker complete meanwhile; the worker is replaced and the pool goes on.
pub fn memory_limit_fails_only_the_task_that_crosses_it<E: Executor>(make: MakeWith<E>) {
    const LIMIT_MIB: u64 = 768;
    let p = pool_with(
        make,
        PoolOptions {
            processes: Some(2),
            memory_limit: Some(LIMIT_MIB << 20),
            ..PoolOptions::default()
        },
    );
    let before = worker_pids(&p);
    let gate = GateControl::new();
    let mut big = p.apply_async(grow_at_gate, (1536, gate.gate())).unwrap();
    assert_eq!(p.map(die, [0, 5, 6, 8]).unwrap(), vec![0, 5, 6, 8]);
    match big.get_timeout(LIMIT) {
        Err(Error::MemoryLimit {
            limit,
            observed,
            pid,
        }) => {
            assert_eq!(limit, LIMIT_MIB << 20);
            assert!(observed > limit, "{observed} <= {limit}");
            assert!(before.contains(&pid), "{pid} is not one of {before:?}");
        }
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
    assert_eq!(p.map(die, [0, 5]).unwrap(), vec![0, 5]);
    assert_eq!(worker_pids(&p).len(), 2);
}

/// `memory_limit` counts the worker's memory, not the caller's: large results the caller
/// keeps (lent where they arrived, without one) do not keep the worker over the limit.
pub fn results_the_caller_keeps_do_not_count_against_memory_limit<E: Executor>(make: MakeWith<E>) {
    let p = pool_with(
        make,
        PoolOptions {
            processes: Some(1),
            memory_limit: Some(300 << 20),
            ..PoolOptions::default()
        },
    );
    let kept: Vec<Packed<u8>> = (0..10)
        .map(|i| {
            p.apply(super::make_bytes, 32 << 20)
                .unwrap_or_else(|e| panic!("result {i}: {e}"))
        })
        .collect();
    assert!(kept.iter().all(|r| r.len() == 32 << 20));
}

/// Grows its worker's resident memory to about `bytes` (a leak: every page touched in order,
/// and kept) and returns the worker's pid: a limit just under `bytes` is crossed as the task
/// ends.
pub fn leak_up_to(bytes: u64) -> u32 {
    let pid = std::process::id();
    let now = procfs::resident_bytes(pid).expect("the worker's own /proc/PID/statm");
    let grow = usize::try_from(bytes.saturating_sub(now)).expect("a size that fits");
    std::mem::forget(std::hint::black_box(vec![1u8; grow]));
    pid
}

/// `memory_limit`, whatever the timing of the supervisor's sampling: a task after which its
/// worker is over the limit — a leak that crosses it as the task ends — fails with
/// `MemoryLimit` (the limit, the size seen, the pid), and the next task runs on a fresh
/// worker; a task that leaves its worker under the limit keeps it.
pub fn a_worker_over_memory_limit_after_a_task_is_replaced<E: Executor>(make: MakeWith<E>) {
    const LIMIT_BYTES: u64 = 256 << 20;
    let p = pool_with(
        make,
        PoolOptions {
            processes: Some(1),
            memory_limit: Some(LIMIT_BYTES),
            ..PoolOptions::default()
        },
    );
    let first = p.apply(leak_up_to, LIMIT_BYTES - (64 << 20)).unwrap();
    assert_eq!(
        p.apply(worker_pid, 0).unwrap(),
        first,
        "replaced under the limit"
    );
    // Over by 2 MiB: the worker is over the limit for the last moments of the task only.
    match p.apply(leak_up_to, LIMIT_BYTES + (2 << 20)) {
        Err(Error::MemoryLimit {
            limit,
            observed,
            pid,
        }) => {
            assert_eq!(limit, LIMIT_BYTES);
            assert!(observed > limit, "{observed} <= {limit}");
            assert_eq!(pid, first);
        }
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
    let next = p.apply(worker_pid, 0).unwrap();
    assert_ne!(next, first, "the worker over the limit was not replaced");
}

/// `max_tasks_per_child(1)`: every task runs in a fresh worker.
pub fn max_tasks_per_child_replaces_workers<E: Executor>(make: MakeWith<E>) {
    let p = pool_with(
        make,
        PoolOptions {
            processes: Some(2),
            max_tasks_per_child: std::num::NonZeroUsize::new(1),
            ..PoolOptions::default()
        },
    );
    let pids = p
        .map_async_chunked(worker_pid, 0..6, 1)
        .unwrap()
        .get_timeout(LIMIT)
        .expect("tasks on recycled workers");
    let distinct: BTreeSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 6, "{pids:?}");
    // No options: `cpu_count` workers, and the plain pool's behaviour.
    let p = pool_with(make, PoolOptions::default());
    assert_eq!(p.processes(), cpu_count());
}
