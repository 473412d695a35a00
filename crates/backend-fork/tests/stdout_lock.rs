//! A caller that holds stdout's lock while it waits for a fork pool (printing results as
//! they come, under one `stdout().lock()`) does not stop the pool from forking workers.

use std::time::Duration;

use multiproc_fork::{Executor, ForkPool};

fn same(x: u64) -> u64 {
    x
}

#[test]
fn a_caller_holding_stdout_does_not_stop_replacement_workers() {
    // One task per worker: every task after the first needs a fresh fork, made by the
    // forker thread while this thread holds stdout.
    let pool = ForkPool::builder()
        .processes(1)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    let out = std::io::stdout().lock();
    let got = pool
        .map_async_chunked(same, 0..3u64, 1)
        .unwrap()
        .get_timeout(Duration::from_secs(20));
    drop(out);
    if got.is_err() {
        std::mem::forget(pool); // its drop would wait for the fork too
    }
    assert_eq!(got.unwrap(), vec![0, 1, 2]);
}
