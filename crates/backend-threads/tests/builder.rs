//! `ThreadPool::builder()`: the thread count and initializer work; the options that need a
//! worker to be killed or replaced are refused with the reason (`retain_freed_memory`, a worker
//! process's setting, is accepted and changes nothing); `progress` is kept;
//! `map_results` and `cancel`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use multiproc_core::{cpu_count, Error};
use multiproc_threads::{Executor, ThreadPool};

static INITIALIZED: AtomicUsize = AtomicUsize::new(0);

fn count(step: usize) {
    INITIALIZED.fetch_add(step, Ordering::SeqCst);
}

fn inverse(x: u32) -> u32 {
    100 / x
}

#[test]
fn the_builder_sets_threads_and_runs_the_initializer_on_each() {
    let pool = ThreadPool::builder()
        .processes(3)
        .initializer(count, 1)
        .build()
        .unwrap();
    assert_eq!(pool.processes(), 3);
    assert_eq!(INITIALIZED.load(Ordering::SeqCst), 3);
    assert_eq!(pool.map(inverse, [1, 2]).unwrap(), vec![100, 50]);
    assert_eq!(
        ThreadPool::builder().build().unwrap().processes(),
        cpu_count()
    );
}

#[test]
fn killing_options_are_refused_with_the_reason() {
    match ThreadPool::builder()
        .task_timeout(Duration::from_secs(1))
        .build()
    {
        Err(Error::InvalidArgument {
            name: "task_timeout",
            reason,
        }) => assert!(reason.contains("cannot be killed"), "{reason}"),
        other => panic!("task_timeout accepted: {other:?}"),
    }
    match ThreadPool::builder().max_tasks_per_child(5).build() {
        Err(Error::InvalidArgument {
            name: "max_tasks_per_child",
            reason,
        }) => assert!(reason.contains("process pool"), "{reason}"),
        other => panic!("max_tasks_per_child accepted: {other:?}"),
    }
    match ThreadPool::builder().memory_limit(1 << 30).build() {
        Err(Error::InvalidArgument {
            name: "memory_limit",
            reason,
        }) => assert!(reason.contains("process pool"), "{reason}"),
        other => panic!("memory_limit accepted: {other:?}"),
    }
    assert!(ThreadPool::builder().retries(2).build().is_ok());
    // A setting of worker processes: threads have none, and this process's allocator is left
    // alone.
    assert!(ThreadPool::builder()
        .retain_freed_memory(1 << 20)
        .build()
        .is_ok());
}

#[test]
fn map_results_and_cancel() {
    let pool = ThreadPool::new(2).unwrap();
    let out = pool.map_results(inverse, [4, 0, 10]).unwrap();
    assert_eq!(out[0].as_ref().ok(), Some(&25));
    assert!(matches!(out[1], Err(Error::TaskPanicked { .. })));
    assert_eq!(out[2].as_ref().ok(), Some(&10));
    let r = pool.apply_async(inverse, 1).unwrap();
    r.wait();
    assert!(!r.cancel(), "a finished task cannot be cancelled");
    assert_eq!(r.get().unwrap(), 100);
}

/// `.progress(true)` (and `options` with `progress`) is kept: `map`, `starmap` and `imap`
/// then draw (on a terminal: `tests/progress_bar.rs` of the facade checks what is drawn).
#[cfg(feature = "progress")]
#[test]
fn progress_is_kept_by_build() {
    assert!(!ThreadPool::new(1).unwrap().shows_progress());
    assert!(!ThreadPool::builder().build().unwrap().shows_progress());
    let pool = ThreadPool::builder()
        .processes(1)
        .progress(true)
        .build()
        .unwrap();
    assert!(pool.shows_progress());
    assert_eq!(pool.map(inverse, [1, 2]).unwrap(), vec![100, 50]);
    let options = multiproc_core::PoolOptions {
        progress: true,
        ..Default::default()
    };
    let pool = ThreadPool::builder().options(options).build().unwrap();
    assert!(pool.shows_progress());
}
