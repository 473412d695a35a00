//! What happens when workers die, and when they must: failure isolation, replacement,
//! no zombies, fork inheritance, and fork safety in a busy multithreaded parent.

use std::io::Write;
use std::time::{Duration, Instant};

use multiproc_core::{Error, ExitCause, Inherited};
use multiproc_fork::{Executor, ForkPool};
use nix::sys::signal::{kill, raise, signal, SigHandler, Signal};
use nix::unistd::{getpid, Pid};

/// Ends the worker running it in the way `how` says; returns `how` otherwise.
fn die(how: u32) -> u32 {
    match how {
        1 => {
            let _ = kill(getpid(), Signal::SIGKILL);
        }
        2 => std::process::abort(),
        3 => {
            // A real fault re-faults once Rust's stack-overflow handler has restored the
            // default action; a raised signal does not, so restore it first.
            // SAFETY: installing the default disposition for SIGSEGV has no preconditions.
            let _ = unsafe { signal(Signal::SIGSEGV, SigHandler::SigDfl) };
            let _ = raise(Signal::SIGSEGV);
        }
        4 => std::process::exit(7),
        _ => return how,
    }
    std::thread::sleep(Duration::from_secs(5));
    how
}

fn sleep_then(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn pid_of_worker(_: u8) -> i32 {
    getpid().as_raw()
}

#[test]
fn a_dying_worker_fails_only_its_task_and_is_replaced() {
    let pool = ForkPool::new(2).unwrap();
    for (how, expected) in [
        (1, ExitCause::Signal(9)),
        (2, ExitCause::Signal(6)),
        (3, ExitCause::Signal(11)),
        (4, ExitCause::Code(7)),
    ] {
        let t = Instant::now();
        match pool.apply(die, how) {
            Err(Error::WorkerDied { cause, pid }) => {
                assert_eq!(cause, expected, "way {how}");
                assert!(pid > 0);
            }
            other => panic!("way {how}: expected WorkerDied, got {other:?}"),
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "noticing took {:?}",
            t.elapsed()
        );
        // The pool is still whole: both workers answer.
        assert_eq!(pool.map(die, [0, 5, 6, 8]).unwrap(), vec![0, 5, 6, 8]);
    }
}

#[test]
fn the_rest_of_a_map_completes_when_one_worker_is_killed() {
    let pool = ForkPool::new(2).unwrap();
    let items = vec![10, 11, 1, 12, 13, 14, 15, 16];
    let results: Vec<_> = pool.imap(die, items.clone()).unwrap().collect();
    assert_eq!(results.len(), items.len());
    for (item, r) in items.iter().zip(&results) {
        match (item, r) {
            (1, Err(Error::WorkerDied { cause, .. })) => assert_eq!(*cause, ExitCause::Signal(9)),
            (1, other) => panic!("the killed task gave {other:?}"),
            (n, Ok(v)) => assert_eq!(n, v),
            (n, Err(e)) => panic!("task {n} failed with {e}"),
        }
    }
    let whole = pool.map_async_chunked(die, items, 1).unwrap();
    assert!(matches!(whole.get(), Err(Error::WorkerDied { .. })));
}

#[test]
fn the_death_is_noticed_within_100_ms() {
    let pool = ForkPool::new(2).unwrap();
    // Warm up: both workers up and idle.
    pool.map_chunked(die, [0, 0], 1).unwrap();
    let t = Instant::now();
    assert!(matches!(pool.apply(die, 1), Err(Error::WorkerDied { .. })));
    let took = t.elapsed();
    assert!(took < Duration::from_millis(100), "took {took:?}");
}

fn is_reaped(pid: Pid) -> bool {
    // A zombie still accepts signal 0; only a reaped process is gone (ESRCH).
    matches!(kill(pid, None), Err(nix::errno::Errno::ESRCH))
}

#[test]
fn no_zombies_after_drop_or_terminate() {
    let pool = ForkPool::new(3).unwrap();
    let pids: Vec<Pid> = pool.pids().into_iter().flatten().collect();
    assert_eq!(pids.len(), 3);
    assert_eq!(pool.map(sleep_then, [1, 1, 1]).unwrap(), vec![1, 1, 1]);
    drop(pool);
    assert!(
        pids.iter().all(|&p| is_reaped(p)),
        "zombies after drop: {pids:?}"
    );

    let pool = ForkPool::new(2).unwrap();
    let pids: Vec<Pid> = pool.pids().into_iter().flatten().collect();
    let slow = pool.apply_async(sleep_then, 5_000).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    pool.terminate().unwrap();
    assert!(matches!(slow.get(), Err(Error::PoolClosed(_))));
    pool.join().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "terminate waited for the task"
    );
    assert!(
        pids.iter().all(|&p| is_reaped(p)),
        "zombies after terminate: {pids:?}"
    );
}

#[test]
fn work_is_spread_over_all_workers() {
    let pool = ForkPool::new(2).unwrap();
    let pids = pool.map_chunked(pid_of_worker, vec![0u8; 200], 1).unwrap();
    let distinct: std::collections::BTreeSet<_> = pids.iter().collect();
    assert_eq!(distinct.len(), 2, "one worker did everything");
    assert!(
        !pids.contains(&getpid().as_raw()),
        "a task ran in the parent"
    );
}

static BEFORE: Inherited<Vec<u64>> = Inherited::new("BEFORE");
static AFTER: Inherited<Vec<u64>> = Inherited::new("AFTER");

fn sum_before(_: ()) -> u64 {
    BEFORE.get().map(|v| v.iter().sum()).unwrap_or(0)
}

fn after_error(_: ()) -> String {
    match AFTER.get() {
        Ok(_) => "visible".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn inherited_data_set_before_the_pool_is_seen_and_after_is_a_clear_error() {
    BEFORE.set((1..=1000).collect()).unwrap();
    let pool = ForkPool::new(2).unwrap();
    AFTER.set(vec![1]).unwrap();
    assert_eq!(pool.apply(sum_before, ()).unwrap(), 500_500);
    let message = pool.apply(after_error, ()).unwrap();
    assert!(
        message.contains("AFTER") && message.contains("before the pool"),
        "{message}"
    );
}

#[test]
fn forking_while_other_threads_hold_stdout_does_not_deadlock() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut out = std::io::stdout().lock();
                    let _ = write!(out, "");
                    std::thread::sleep(Duration::from_micros(200));
                    drop(out);
                }
            })
        })
        .collect();
    fn chatty(i: u32) -> u32 {
        println!("worker prints {i}");
        i
    }
    let t = Instant::now();
    for _ in 0..5 {
        let pool = ForkPool::new(2).unwrap();
        let mut r = pool.map_async_chunked(chatty, 0..20, 1).unwrap();
        assert_eq!(
            r.get_timeout(Duration::from_secs(10)).unwrap(),
            (0..20).collect::<Vec<_>>()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for b in busy {
        b.join().unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn forking_while_a_rayon_pool_is_at_work_does_not_deadlock() {
    use rayon::prelude::*;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let busy = std::thread::spawn(move || {
        let mut rounds = 0u64;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            let v: Vec<u64> = (0..50_000u64).into_par_iter().map(|x| x * x).collect();
            rounds += v.len() as u64;
        }
        rounds
    });
    fn allocate_and_sum(n: u64) -> u64 {
        (0..n).collect::<Vec<u64>>().iter().sum()
    }
    for _ in 0..5 {
        let pool = ForkPool::new(2).unwrap();
        let mut r = pool.map_async_chunked(allocate_and_sum, 0..40, 1).unwrap();
        let got = r.get_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(got[39], (0..39).sum::<u64>());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(busy.join().unwrap() > 0, "the rayon pool never ran");
}
