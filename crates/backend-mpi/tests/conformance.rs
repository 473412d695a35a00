//! Core's executor conformance suite on MPI ranks. Run under `mpirun -n 3` (one coordinator,
//! two workers): `crates/backend-mpi/run-suite`. The suite's `executor_conformance!` macro
//! makes libtest `#[test]`s, and libtest cannot run here (MPI starts once per process, and
//! worker ranks must enter `init()` before anything else), so this program calls the checks
//! one by one, as the macro would.

use multiproc_core::testing::executor as suite;
use multiproc_mpi::Pool;

fn main() {
    multiproc_mpi::init();
    let workers = multiproc_mpi::worker_ranks();
    assert!(
        workers >= 2,
        "run under `mpirun -n 3` (or more): the suite needs 2 worker ranks, got {workers}"
    );
    let make: suite::MakePool<Pool> = Pool::new;
    type Check = fn(suite::MakePool<Pool>);
    let checks: &[(&str, Check)] = &[
        ("map_preserves_order", suite::map_preserves_order),
        ("starmap_unpacks_tuples", suite::starmap_unpacks_tuples),
        ("apply_and_apply_async", suite::apply_and_apply_async),
        ("get_timeout_wait_ready", suite::get_timeout_wait_ready),
        (
            "panic_fails_only_its_task",
            suite::panic_fails_only_its_task,
        ),
        (
            "imap_ordered_and_unordered",
            suite::imap_ordered_and_unordered,
        ),
        ("empty_input", suite::empty_input),
        ("bad_arguments_are_errors", suite::bad_arguments_are_errors),
        ("close_join_and_drop", suite::close_join_and_drop),
        (
            "join_timeout_gives_up_and_comes_back",
            suite::join_timeout_gives_up_and_comes_back,
        ),
        (
            "terminate_abandons_queued_work",
            suite::terminate_abandons_queued_work,
        ),
        ("many_tiny_tasks", suite::many_tiny_tasks),
    ];
    let filter: Vec<String> = std::env::args().skip(1).collect();
    let mut ran = 0;
    for (name, check) in checks {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let t = std::time::Instant::now();
        check(make);
        println!(
            "test executor_conformance::{name} ... ok ({:.2?})",
            t.elapsed()
        );
        ran += 1;
    }
    println!("executor conformance on {workers} MPI worker ranks: {ran} checks passed");
}
