//! Nested pools: a spawn pool created inside a task of a spawn-pool
//! worker or of a fork-pool worker, and a spawn `Process` started inside either, works or
//! fails at once — never hangs. Each outer task is awaited with a timeout, after which the
//! outer pool is terminated and the test fails instead of hanging.

use std::time::Duration;

use multiproc_core::Error;
use multiproc_fork::ForkPool;
use multiproc_spawn::{Executor, Process, SpawnPool};

multiproc_spawn::test_worker!();

/// Generous: a hang is what this catches, not slowness.
const HANG: Duration = Duration::from_secs(60);

fn square(x: u64) -> u64 {
    x * x
}

fn exit_with(code: i32) {
    std::process::exit(code);
}

/// In a worker: a spawn pool of two, used, then dropped.
fn sum_of_squares_in_a_spawn_pool(n: u64) -> Result<u64, String> {
    let pool = SpawnPool::new(2).map_err(|e| e.to_string())?;
    let squares = pool.map(square, 0..n).map_err(|e| e.to_string())?;
    Ok(squares.iter().sum())
}

/// In a worker: a spawned `Process`, joined; its exit code.
fn exit_code_of_a_spawned_process(code: i32) -> Result<Option<i32>, String> {
    let p = Process::new(exit_with, code)
        .start()
        .map_err(|e| e.to_string())?;
    p.join().map_err(|e| e.to_string())?;
    Ok(p.exitcode())
}

/// Runs `task(arg)` on `outer` and waits at most [`HANG`]; on a timeout, terminates `outer`
/// (so that dropping it cannot hang either) and fails.
fn within<P, A, R>(outer: &P, task: multiproc_core::Task<A, R>, arg: A, what: &str) -> R
where
    P: Executor,
    A: multiproc_core::Payload,
    R: multiproc_core::Payload,
{
    let mut pending = outer.apply_async(task, arg).unwrap();
    match pending.get_timeout(HANG) {
        Ok(r) => r,
        Err(Error::Timeout(_)) => {
            let _ = outer.terminate();
            panic!("{what}: hung (no answer within {HANG:?})");
        }
        Err(e) => panic!("{what}: the outer task failed: {e}"),
    }
}

#[test]
fn a_spawn_pool_inside_a_spawn_pool_worker_works() {
    let outer = SpawnPool::new(1).unwrap();
    let got = within(
        &outer,
        sum_of_squares_in_a_spawn_pool,
        10,
        "spawn pool in spawn worker",
    );
    assert_eq!(got, Ok(285));
}

#[test]
fn a_spawn_pool_inside_a_fork_pool_worker_works() {
    let outer = ForkPool::new(1).unwrap();
    let got = within(
        &outer,
        sum_of_squares_in_a_spawn_pool,
        10,
        "spawn pool in fork worker",
    );
    assert_eq!(got, Ok(285));
}

#[test]
fn a_spawn_process_inside_a_spawn_pool_worker_works() {
    let outer = SpawnPool::new(1).unwrap();
    let got = within(
        &outer,
        exit_code_of_a_spawned_process,
        7,
        "spawn Process in spawn worker",
    );
    assert_eq!(got, Ok(Some(7)));
}

#[test]
fn a_spawn_process_inside_a_fork_pool_worker_works() {
    let outer = ForkPool::new(1).unwrap();
    let got = within(
        &outer,
        exit_code_of_a_spawned_process,
        7,
        "spawn Process in fork worker",
    );
    assert_eq!(got, Ok(Some(7)));
}

/// A spawn pool in a fork worker forked while this process's `multiproc-spawn` thread already
/// existed (it started the outer spawn pool's workers): the forked worker has no such thread
/// and must start its own.
#[test]
fn a_spawn_pool_inside_a_fork_worker_of_a_process_that_spawned_before_works() {
    let spawned = SpawnPool::new(1).unwrap();
    assert_eq!(spawned.apply(square, 3).unwrap(), 9);
    let outer = ForkPool::new(1).unwrap();
    let got = within(
        &outer,
        sum_of_squares_in_a_spawn_pool,
        10,
        "spawn pool in fork worker after a spawn",
    );
    assert_eq!(got, Ok(285));
}
