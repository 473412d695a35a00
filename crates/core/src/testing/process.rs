//! The failure suite for executors whose workers are processes (fork, spawn): a worker that
//! dies fails only its task, within 100 ms, is replaced, and leaves no zombie. Each function
//! takes a constructor `fn(workers) -> Result<E>` and panics on failure;
//! [`process_executor_conformance!`](crate::process_executor_conformance) turns the list into
//! `#[test]`s.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::testing::executor::MakePool;
use crate::{Error, Executor, ExitCause, Packed};

fn pool<E: Executor>(make: MakePool<E>, workers: usize) -> E {
    make(workers).unwrap_or_else(|e| panic!("creating a pool of {workers} failed: {e}"))
}

/// Ends the worker running it the way `how` says — 1: SIGKILL, 2: abort, 3: segfault,
/// 4: `exit(7)` — and returns any other `how` unchanged.
pub fn die(how: u32) -> u32 {
    match how {
        // SAFETY: raise() only sends a signal to the calling thread; it touches no memory.
        1 => unsafe {
            libc::raise(libc::SIGKILL);
        },
        2 => std::process::abort(),
        3 => {
            // Rust's own SIGSEGV handler (stack-overflow detection) re-raises only for real
            // faults; put the default action back so a raised SIGSEGV kills the process.
            // SAFETY: installing SIG_DFL for SIGSEGV and raising it touch no memory of ours.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            }
        }
        4 => std::process::exit(7),
        _ => return how,
    }
    std::thread::sleep(Duration::from_secs(5));
    how
}

/// Sleeps `ms` milliseconds and returns `ms`.
pub fn sleep_then(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// The process id of the worker running it, after 1 ms of work: long enough that on a loaded
/// machine one worker cannot drain a whole batch before its sibling has taken a task.
pub fn worker_pid(_: u8) -> u32 {
    std::thread::sleep(Duration::from_millis(1));
    std::process::id()
}

/// Whether `pid` is a zombie child of this process (ended, not reaped).
fn is_zombie_child(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false; // gone: reaped
    };
    // "pid (comm) state ppid ...": comm may contain spaces, so parse after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let mut fields = rest.split_whitespace();
    let state = fields.next();
    let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
    state == Some("Z") && ppid == Some(std::process::id())
}

/// Whether `pid` is still a live child of this process.
fn is_child(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id())
}

/// The pids of a pool's workers, found by running enough one-item tasks.
fn worker_pids<E: Executor>(p: &E) -> BTreeSet<u32> {
    let pids = p
        .map_chunked(worker_pid, vec![0u8; 64 * p.processes()], 1)
        .expect("pid tasks");
    pids.into_iter().collect()
}

/// A worker killed by SIGKILL, abort, a segfault or `exit(7)` mid-task fails that task with
/// [`Error::WorkerDied`] naming the signal or code; the pool replaces it and stays usable.
pub fn a_dying_worker_fails_only_its_task<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    for (how, expected) in [
        (1, ExitCause::Signal(libc::SIGKILL)),
        (2, ExitCause::Signal(libc::SIGABRT)),
        (3, ExitCause::Signal(libc::SIGSEGV)),
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
                assert_eq!(*cause, ExitCause::Signal(libc::SIGKILL))
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

/// The death of an idle-pool worker mid-task is reported within 100 ms.
pub fn a_death_is_noticed_within_100_ms<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    p.map_chunked(die, [0, 0], 1).unwrap(); // both workers up and idle
    let t = Instant::now();
    assert!(matches!(p.apply(die, 1), Err(Error::WorkerDied { .. })));
    let took = t.elapsed();
    assert!(took < Duration::from_millis(100), "took {took:?}");
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
    let slow = p.apply_async(sleep_then, 5_000).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    p.terminate().unwrap();
    assert!(matches!(slow.get(), Err(Error::PoolClosed(_))));
    p.join().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "terminate waited for the task"
    );
    for &pid in &pids {
        assert!(
            !is_zombie_child(pid) && !is_child(pid),
            "worker {pid} left after terminate"
        );
    }
}

/// Many one-item tasks are spread over every worker, and none runs in the parent.
pub fn work_is_spread_over_all_workers<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let pids = worker_pids(&p);
    assert_eq!(pids.len(), 2, "one worker did everything: {pids:?}");
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
    Packed(
        (0..len as u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed)
            .collect(),
    )
}

/// [`checksum`], after 50 ms: tasks queued behind it at its worker wait unread.
pub fn checksum_slowly(v: Packed<u64>) -> u64 {
    std::thread::sleep(Duration::from_millis(50));
    checksum(v)
}

/// Arguments of several MiB — larger than a socket buffer, and than the process pools'
/// threshold for sending a body through shared memory — arrive intact: also when the next
/// map is encoded while arguments of the last one wait unread at their worker (a buffer
/// reused before its task is answered would be overwritten under the worker), and when later
/// maps reuse the buffers of answered ones (sizes vary, so a reused buffer holds a longer
/// stale value than the next one).
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
            .get_timeout(Duration::from_secs(30))
        {
            Ok(got) => assert_eq!(got, expected, "round {r}"),
            Err(e) => panic!("round {r}: {e}"),
        };
    let ((items0, expected0), (items1, expected1)) = (round(0), round(1));
    let first = p.map_async_chunked(checksum_slowly, items0, 1).unwrap();
    // The first tasks are sent (three pipelined to one worker) and being run; the next map
    // is encoded meanwhile. (The pause only makes a reuse bug likely to show; correct code
    // passes either way.)
    std::thread::sleep(Duration::from_millis(15));
    let second = p.map_async_chunked(checksum_slowly, items1, 1).unwrap();
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
        Packed(Vec::new()),
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

/// Runs the whole process-pool failure suite as `#[test]`s in a module named
/// `process_executor_conformance`:
///
/// ```ignore
/// multiproc_core::process_executor_conformance!(multiproc_fork::ForkPool::new);
/// ```
#[macro_export]
macro_rules! process_executor_conformance {
    ($make:expr) => {
        mod process_executor_conformance {
            #[allow(unused_imports)]
            use super::*;
            use $crate::testing::process as suite;

            #[test]
            fn a_dying_worker_fails_only_its_task() {
                suite::a_dying_worker_fails_only_its_task($make)
            }
            #[test]
            fn the_rest_of_a_map_completes() {
                suite::the_rest_of_a_map_completes($make)
            }
            #[test]
            fn a_death_is_noticed_within_100_ms() {
                suite::a_death_is_noticed_within_100_ms($make)
            }
            #[test]
            fn no_zombies_after_drop_or_terminate() {
                suite::no_zombies_after_drop_or_terminate($make)
            }
            #[test]
            fn large_arguments_and_results_do_not_deadlock() {
                suite::large_arguments_and_results_do_not_deadlock($make)
            }
            #[test]
            fn large_arguments_arrive_intact() {
                suite::large_arguments_arrive_intact($make)
            }
            #[test]
            fn large_arguments_behind_a_death_are_resent_whole() {
                suite::large_arguments_behind_a_death_are_resent_whole($make)
            }
            #[test]
            fn work_is_spread_over_all_workers() {
                suite::work_is_spread_over_all_workers($make)
            }
        }
    };
}
