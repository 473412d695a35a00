//! `ThreadPool`'s closure API, which no other backend has: `map_fn` (closures that borrow
//! local data), `map_fn_default` and `apply_async_fn` (capturing `'static` closures).
//! Synchronised with handshakes (a `Barrier`, an `Event`), never sleeps; every wait has a
//! "never hangs" bound far above what the check needs.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc_threads::{Barrier, Error, Event, Executor, ThreadPool};

const NEVER_HANGS: Duration = Duration::from_secs(60);

#[test]
fn map_fn_runs_borrowing_closures_in_order_for_any_chunksize() {
    let pool = ThreadPool::new(2).unwrap();
    let data: Vec<u64> = (0..1000).collect(); // borrowed, not moved, by the closure
    let offset = 7;
    let expected: Vec<u64> = (0..1000).map(|i| data[i] * 2 + offset).collect();
    for chunksize in [1, 7, 1000, 5000] {
        let got = pool
            .map_fn(|i: usize| data[i] * 2 + offset, 0..1000, chunksize)
            .unwrap();
        assert_eq!(got, expected, "chunksize {chunksize}");
    }
    let got = pool
        .map_fn_default(|i: usize| data[i] * 2 + offset, 0..1000)
        .unwrap();
    assert_eq!(got, expected);
    assert!(pool.map_fn(|i: u8| i, Vec::new(), 1).unwrap().is_empty());
    // Non-Copy arguments and results, moved in and out.
    let words = vec!["woozle".to_string(), "wuzzle".to_string()];
    let suffix = String::from("!");
    assert_eq!(
        pool.map_fn(|w: String| w + &suffix, words, 1).unwrap(),
        vec!["woozle!", "wuzzle!"]
    );
}

#[test]
fn map_fn_runs_on_every_worker_thread_at_once() {
    // Two items that each wait at a 2-party barrier can only both pass if two worker threads
    // run them at the same time (a serial map_fn would time the barrier out).
    let pool = ThreadPool::new(2).unwrap();
    let barrier = Barrier::new(2).unwrap();
    let names = Mutex::new(BTreeSet::new());
    let caller = std::thread::current().id();
    pool.map_fn(
        |_: u8| {
            assert_ne!(std::thread::current().id(), caller, "ran on the caller");
            names
                .lock()
                .unwrap()
                .insert(std::thread::current().name().map(str::to_owned));
            barrier
                .wait_timeout(NEVER_HANGS)
                .expect("both items at once");
        },
        [0, 1],
        1,
    )
    .unwrap();
    let names = names.into_inner().unwrap();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.iter().all(|n| n
            .as_deref()
            .is_some_and(|n| n.starts_with("multiproc-worker-"))),
        "{names:?}"
    );
}

#[test]
fn map_fn_errors() {
    let pool = ThreadPool::new(2).unwrap();
    assert!(matches!(
        pool.map_fn(|x: u8| x, [1, 2], 0),
        Err(Error::InvalidArgument {
            name: "chunksize",
            ..
        })
    ));
    // A panic fails the whole map with its message, and the pool stays usable.
    match pool.map_fn(
        |x: u64| {
            if x == 13 {
                panic!("item {x} is unlucky");
            }
            x
        },
        0..40,
        3,
    ) {
        Err(Error::TaskPanicked { message }) => assert!(message.contains("item 13 is unlucky")),
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    assert_eq!(pool.map_fn(|x: u64| x + 1, 0..3, 1).unwrap(), vec![1, 2, 3]);
    pool.close();
    assert!(matches!(
        pool.map_fn(|x: u8| x, [1], 1),
        Err(Error::PoolClosed(_))
    ));
    assert!(matches!(
        pool.apply_async_fn(|| 1),
        Err(Error::PoolClosed(_))
    ));
    pool.join().unwrap();
}

#[test]
fn apply_async_fn_runs_capturing_closures() {
    let pool = ThreadPool::new(2).unwrap();
    let data = Arc::new(vec![1u64, 2, 3]);
    let pending: Vec<_> = (0..10u64)
        .map(|k| {
            let data = data.clone();
            pool.apply_async_fn(move || data.iter().sum::<u64>() * k)
                .unwrap()
        })
        .collect();
    let got: Vec<u64> = pending.into_iter().map(|r| r.get().unwrap()).collect();
    assert_eq!(got, (0..10).map(|k| 6 * k).collect::<Vec<_>>());
    // Non-Copy captures, moved in.
    let name = String::from("woozle");
    assert_eq!(
        pool.apply_async_fn(move || name.to_uppercase())
            .unwrap()
            .get()
            .unwrap(),
        "WOOZLE"
    );
    let r = pool.apply_async_fn(|| -> u8 { panic!("boom") }).unwrap();
    match r.get() {
        Err(Error::TaskPanicked { message }) => assert!(message.contains("boom")),
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
}

#[test]
fn apply_async_fn_is_pending_until_its_closure_returns() {
    let pool = ThreadPool::new(1).unwrap();
    let go = Arc::new(Event::new());
    let g = go.clone();
    let mut r = pool
        .apply_async_fn(move || {
            assert!(g.wait_timeout(NEVER_HANGS), "never released");
            5
        })
        .unwrap();
    assert!(matches!(
        r.get_timeout(Duration::from_millis(10)),
        Err(Error::Timeout(_))
    ));
    assert!(!r.ready());
    go.set();
    assert_eq!(r.get_timeout(NEVER_HANGS).unwrap(), 5);
}

#[test]
fn drop_waits_for_apply_async_fn_work() {
    let pool = ThreadPool::new(1).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Event::new());
    let go = Arc::new(Event::new());
    let (r, s, g) = (ran.clone(), started.clone(), go.clone());
    let pending = pool
        .apply_async_fn(move || {
            s.set();
            assert!(g.wait_timeout(NEVER_HANGS), "never released");
            r.fetch_add(1, Ordering::SeqCst)
        })
        .unwrap();
    let queued: Vec<_> = (0..5)
        .map(|_| {
            let r = ran.clone();
            pool.apply_async_fn(move || r.fetch_add(1, Ordering::SeqCst))
                .unwrap()
        })
        .collect();
    assert!(started.wait_timeout(NEVER_HANGS));
    go.set();
    drop(pool);
    assert_eq!(
        ran.load(Ordering::SeqCst),
        6,
        "drop returned before the work ran"
    );
    assert_eq!(pending.get().unwrap(), 0);
    for r in queued {
        r.get().unwrap();
    }
}

#[test]
fn terminate_abandons_queued_apply_async_fn_and_refuses_map_fn() {
    let pool = ThreadPool::new(1).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Event::new());
    let go = Arc::new(Event::new());
    let (s, g) = (started.clone(), go.clone());
    let busy = pool
        .apply_async_fn(move || {
            s.set();
            assert!(g.wait_timeout(NEVER_HANGS), "never released");
            1
        })
        .unwrap();
    assert!(started.wait_timeout(NEVER_HANGS)); // the only worker is busy
    let queued: Vec<_> = (0..5)
        .map(|_| {
            let r = ran.clone();
            pool.apply_async_fn(move || r.fetch_add(1, Ordering::SeqCst))
                .unwrap()
        })
        .collect();
    pool.terminate().unwrap();
    assert!(matches!(
        pool.map_fn(|x: u8| x, [1], 1),
        Err(Error::PoolClosed(_))
    ));
    go.set(); // a thread cannot be stopped: let the busy closure return
    assert_eq!(busy.get().unwrap(), 1);
    for r in queued {
        assert!(matches!(r.get(), Err(Error::PoolClosed(_))));
    }
    pool.join().unwrap();
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "queued closures ran after terminate"
    );
}

#[test]
fn a_pool_dropped_in_its_own_task_does_not_wait_for_that_task() {
    let pool = Arc::new(ThreadPool::new(1).unwrap());
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let inner = Arc::clone(&pool);
    let mut r = pool
        .apply_async_fn(move || {
            let _ = wait.recv_timeout(NEVER_HANGS);
            drop(inner); // the last handle, by then: the pool's drop runs on this thread
            7
        })
        .unwrap();
    drop(pool);
    go.send(()).unwrap();
    assert_eq!(r.get_timeout(NEVER_HANGS).unwrap(), 7);
    // And joining from a task of the pool is an error, not a wait for itself.
    let pool = Arc::new(ThreadPool::new(1).unwrap());
    let inner = Arc::clone(&pool);
    let mut r = pool
        .apply_async_fn(move || {
            inner.close();
            matches!(
                inner.join(),
                Err(Error::InvalidArgument { name: "self", .. })
            )
        })
        .unwrap();
    assert!(r.get_timeout(NEVER_HANGS).unwrap(), "join inside a task");
}

static RAN: AtomicUsize = AtomicUsize::new(0);
static FIRST_STARTED: std::sync::LazyLock<Event> = std::sync::LazyLock::new(Event::new);
static FIRST_GOES: std::sync::LazyLock<Event> = std::sync::LazyLock::new(Event::new);

fn count_after_first(x: u64) -> u64 {
    if x == 0 {
        FIRST_STARTED.set();
        assert!(FIRST_GOES.wait_timeout(NEVER_HANGS));
    }
    RAN.fetch_add(1, Ordering::SeqCst);
    x
}

#[test]
fn a_cancelled_map_runs_no_task_that_had_not_started() {
    let pool = ThreadPool::new(1).unwrap();
    let r = pool
        .map_async_chunked(count_after_first, 0..4u64, 1)
        .unwrap();
    assert!(FIRST_STARTED.wait_timeout(NEVER_HANGS));
    assert!(r.cancel());
    FIRST_GOES.set();
    pool.close();
    pool.join().unwrap();
    assert_eq!(RAN.load(Ordering::SeqCst), 1, "only the task under way ran");
}

/// A result whose drop panics.
struct Touchy;

impl Drop for Touchy {
    fn drop(&mut self) {
        panic!("Touchy's drop");
    }
}

#[test]
fn a_result_nobody_takes_may_panic_in_its_drop_without_taking_the_process_down() {
    let pool = ThreadPool::new(1).unwrap();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let r = pool
        .apply_async_fn(move || {
            let _ = wait.recv_timeout(NEVER_HANGS);
            Touchy
        })
        .unwrap();
    assert!(r.cancel()); // nobody takes its result: it is dropped on the pool's thread
    go.send(()).unwrap();
    pool.close();
    pool.join().unwrap();
}
