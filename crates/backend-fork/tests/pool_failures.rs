//! What happens when workers die, and when they must: failure isolation, replacement,
//! no zombies, fork inheritance, and fork safety in a busy multithreaded parent.

use std::io::Write;
use std::time::{Duration, Instant};

use multiproc_core::Inherited;
use multiproc_fork::{Executor, ForkLauncher, ForkPool};
use multiproc_process::testing::LaunchLimit;
use multiproc_process::ProcessPool;

/// A fork pool that can fork only its first `n` workers.
fn limited(n: usize) -> multiproc_core::Result<ProcessPool<LaunchLimit<ForkLauncher>>> {
    ProcessPool::new(n, LaunchLimit::new(ForkLauncher, n))
}

multiproc_core::process_executor_conformance!(
    ForkPool::new,
    pids = |p: &ForkPool| p
        .pids()
        .iter()
        .map(|p| p.map(|p| p.as_raw() as u32))
        .collect(),
    launch_limit = limited,
    options = |o| ForkPool::builder().options(o).build(),
);

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
