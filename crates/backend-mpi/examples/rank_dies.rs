//! What a dead rank does to the job: run under `mpirun -n 3`, with one of
//!
//! - `sigkill`: a task kills its worker rank with SIGKILL;
//! - `exit`: a task calls `std::process::exit(3)` on its worker rank;
//! - `abort`: a task aborts its worker rank;
//! - `root-panics`: rank 0's `main` panics while the pool has work.
//!
//! Open MPI 4 has no fault tolerance: `mpirun` must kill every rank and exit non-zero, with
//! a message naming the rank, promptly — never hang, never print a result. This program
//! prints `UNREACHABLE` only if the job survived the death; `run-suite` checks that `mpirun`
//! exits non-zero within a bound and that the line is absent.

use multiproc_core::Executor;
use multiproc_mpi::Pool;

fn die(how: String) -> u64 {
    match how.as_str() {
        // Raises SIGKILL on itself (the process suite's own way to die).
        "sigkill" => multiproc_core::testing::process::die(1) as u64,
        "exit" => std::process::exit(3),
        "abort" => std::process::abort(),
        _ => 1,
    }
}

fn slow(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

fn main() {
    multiproc_mpi::init();
    let how = std::env::args().nth(1).unwrap_or_else(|| "sigkill".into());
    let pool = Pool::new(multiproc_mpi::worker_ranks()).expect("a pool");
    if how == "root-panics" {
        let _pending = pool.map_async(slow, vec![50; 8]).expect("queued");
        panic!("rank 0 panics with work in flight");
    }
    let others = pool.map_async(slow, vec![20; 8]).expect("queued");
    let r = pool.apply(die, how);
    let _ = others.get();
    println!("UNREACHABLE: the job survived a dead rank: {r:?}");
}
