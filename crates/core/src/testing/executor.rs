//! The conformance suite for [`Executor`]s. Each function takes a constructor
//! `fn(workers) -> Result<E>` and panics on failure; [`executor_conformance!`](crate::executor_conformance)
//! turns the whole list into `#[test]`s.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::{Error, Executor, Result};

/// How a suite gets a pool with a given number of workers.
pub type MakePool<E> = fn(usize) -> Result<E>;

fn pool<E: Executor>(make: MakePool<E>, workers: usize) -> E {
    make(workers).unwrap_or_else(|e| panic!("creating a pool of {workers} failed: {e}"))
}

/// Squares its argument.
pub fn square(x: u64) -> u64 {
    x * x
}

/// Sleeps `ms` milliseconds and returns `ms`.
pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Panics for 13, squares everything else.
pub fn unlucky(x: u64) -> u64 {
    if x == 13 {
        panic!("task {x} is unlucky");
    }
    x * x
}

/// Upper-cases a string: owned, heap-allocated arguments and results.
pub fn shout(s: String) -> String {
    s.to_uppercase()
}

/// `map` returns results in input order, for any chunk size, including 1 and sizes larger
/// than the input.
pub fn map_preserves_order<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let expected: Vec<u64> = (0..1000).map(|x| x * x).collect();
    assert_eq!(p.map(square, 0..1000).unwrap(), expected);
    for chunksize in [1, 7, 1000, 5000] {
        assert_eq!(
            p.map_chunked(square, 0..1000, chunksize).unwrap(),
            expected,
            "chunksize {chunksize}"
        );
    }
    let words = vec!["woozle".to_string(), "wuzzle".to_string()];
    assert_eq!(p.map(shout, words).unwrap(), vec!["WOOZLE", "WUZZLE"]);
}

/// `starmap` unpacks tuples of 1 to 6 elements into the function's parameters.
pub fn starmap_unpacks_tuples<E: Executor>(make: MakePool<E>) {
    fn one(a: u32) -> u32 {
        a
    }
    fn two(a: u32, b: String) -> String {
        format!("{b}{a}")
    }
    fn three(a: u32, b: u32, c: u32) -> u32 {
        a * 100 + b * 10 + c
    }
    fn six(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8) -> Vec<u8> {
        vec![a, b, c, d, e, f]
    }
    let p = pool(make, 2);
    assert_eq!(p.starmap(one, [(1,), (2,)]).unwrap(), vec![1, 2]);
    assert_eq!(
        p.starmap(two, [(1, "t1_".to_string()), (2, "t2_".to_string())])
            .unwrap(),
        vec!["t1_1", "t2_2"]
    );
    assert_eq!(
        p.starmap_chunked(three, [(1, 2, 3), (4, 5, 6), (7, 8, 9)], 2)
            .unwrap(),
        vec![123, 456, 789]
    );
    assert_eq!(
        p.starmap(six, [(1, 2, 3, 4, 5, 6)]).unwrap(),
        vec![vec![1, 2, 3, 4, 5, 6]]
    );
    assert_eq!(p.apply_star(three, (3, 2, 1)).unwrap(), 321);
    assert_eq!(
        p.starmap_async(three, [(0, 0, 1)]).unwrap().get().unwrap(),
        vec![1]
    );
}

/// `apply` and `apply_async` run single tasks; many outstanding `AsyncResult`s each get
/// their own value.
pub fn apply_and_apply_async<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    assert_eq!(p.apply(square, 7).unwrap(), 49);
    let pending: Vec<_> = (0..50).map(|i| p.apply_async(square, i).unwrap()).collect();
    let got: Vec<u64> = pending.into_iter().map(|r| r.get().unwrap()).collect();
    assert_eq!(got, (0..50).map(|x| x * x).collect::<Vec<_>>());
}

/// `get_timeout` gives up with `Timeout` on a slow task without losing it; `wait`, `ready`
/// and `successful` report progress.
pub fn get_timeout_wait_ready<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let mut slow = p.apply_async(sleep_ms, 300).unwrap();
    let t = Instant::now();
    assert!(matches!(
        slow.get_timeout(Duration::from_millis(20)),
        Err(Error::Timeout(_))
    ));
    assert!(
        t.elapsed() < Duration::from_millis(290),
        "get_timeout overslept"
    );
    assert!(!slow.ready());
    assert_eq!(slow.successful(), None);
    assert!(!slow.wait_timeout(Duration::from_millis(1)));
    slow.wait();
    assert!(slow.ready());
    assert_eq!(slow.successful(), Some(true));
    assert_eq!(slow.get_timeout(Duration::from_secs(5)).unwrap(), 300);

    let m = p.map_async(sleep_ms, [10, 20, 30]).unwrap();
    let mut polls = 0;
    while !m.ready() {
        polls += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(polls > 0, "map_async returned before its tasks ran");
    assert_eq!(m.get().unwrap(), vec![10, 20, 30]);
}

/// A panicking task fails only its own result, with the panic message; the pool stays usable.
pub fn panic_fails_only_its_task<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let results: Vec<_> = (10..16)
        .map(|i| p.apply_async(unlucky, i).unwrap())
        .collect();
    for (i, r) in (10..16).zip(results) {
        match r.get() {
            Ok(v) => assert_eq!(v, i * i),
            Err(Error::TaskPanicked { message }) => {
                assert_eq!(i, 13);
                assert!(message.contains("task 13 is unlucky"), "message: {message}");
            }
            Err(e) => panic!("unexpected error for {i}: {e}"),
        }
    }
    let failed = p.map_chunked(unlucky, 0..40, 3);
    assert!(
        matches!(failed, Err(Error::TaskPanicked { .. })),
        "{failed:?}"
    );
    let r = p.apply_async(unlucky, 13).unwrap();
    r.wait();
    assert_eq!(r.successful(), Some(false));
    assert_eq!(
        p.map(square, 0..10).unwrap()[9],
        81,
        "pool unusable after a panic"
    );
}

/// `imap` yields in input order, lazily; `imap_unordered` yields every result once.
pub fn imap_ordered_and_unordered<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let delays = vec![60, 10, 40, 0, 20];
    let ordered: Vec<u64> = p
        .imap(sleep_ms, delays.clone())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(ordered, delays);
    let unordered: BTreeSet<u64> = p
        .imap_unordered(sleep_ms, delays.clone())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(unordered, delays.iter().copied().collect());
    let chunked: Vec<u64> = p
        .imap_chunked(square, 0..100, 8)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(chunked, (0..100).map(|x| x * x).collect::<Vec<_>>());
    let mut it = p.imap(sleep_ms, [200]).unwrap();
    assert!(matches!(
        it.next_timeout(Duration::from_millis(10)),
        Some(Err(Error::Timeout(_)))
    ));
    assert_eq!(it.next().unwrap().unwrap(), 200);
    assert!(it.next().is_none());
}

/// Empty input gives empty output from every method.
pub fn empty_input<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    assert!(p.map(square, Vec::new()).unwrap().is_empty());
    assert!(p.map_chunked(square, Vec::new(), 1).unwrap().is_empty());
    assert!(p.starmap(square, Vec::<(u64,)>::new()).unwrap().is_empty());
    assert_eq!(p.imap(square, Vec::new()).unwrap().count(), 0);
    assert_eq!(p.imap_unordered(square, Vec::new()).unwrap().count(), 0);
}

/// Bad arguments are errors that name the argument: chunksize 0, zero workers.
pub fn bad_arguments_are_errors<E: Executor>(make: MakePool<E>) {
    match make(0) {
        Err(Error::InvalidArgument { name, .. }) => assert_eq!(name, "processes"),
        Err(e) => panic!("zero workers gave the wrong error: {e}"),
        Ok(_) => panic!("a pool with zero workers was created"),
    }
    let p = pool(make, 1);
    for r in [
        p.map_chunked(square, 0..3, 0).map(drop),
        p.starmap_chunked(square, [(1,)], 0).map(drop),
        p.imap_chunked(square, 0..3, 0).map(drop),
        p.imap_unordered_chunked(square, 0..3, 0).map(drop),
    ] {
        assert!(
            matches!(
                r,
                Err(Error::InvalidArgument {
                    name: "chunksize",
                    ..
                })
            ),
            "{r:?}"
        );
    }
    assert_eq!(p.processes(), 1);
}

/// `close` refuses new work but finishes old work; `join` waits for it and needs `close`
/// first; dropping a pool waits for its work (close + join).
pub fn close_join_and_drop<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    assert!(
        matches!(p.join(), Err(Error::JoinBeforeClose)),
        "join on a running pool must be refused, as in Python"
    );
    let pending: Vec<_> = (0..6)
        .map(|_| p.apply_async(sleep_ms, 30).unwrap())
        .collect();
    p.close();
    assert!(matches!(
        p.apply_async(square, 1),
        Err(Error::PoolClosed(_))
    ));
    assert!(matches!(p.map(square, 0..3), Err(Error::PoolClosed(_))));
    p.join().unwrap();
    for r in &pending {
        assert!(r.ready(), "join returned before the work finished");
    }
    for r in pending {
        assert_eq!(r.get().unwrap(), 30);
    }

    let p = pool(make, 2);
    let late = p.apply_async(sleep_ms, 50).unwrap();
    drop(p);
    assert_eq!(late.get().unwrap(), 50, "drop must finish submitted work");
}

/// `terminate` refuses new work and every outstanding result completes (with its value or an
/// error) instead of hanging.
pub fn terminate_never_hangs<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let mut pending: Vec<_> = (0..20)
        .map(|_| p.apply_async(sleep_ms, 50).unwrap())
        .collect();
    let m = p.map_async_chunked(sleep_ms, vec![50; 10], 1).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    p.terminate().unwrap();
    assert!(matches!(
        p.apply_async(square, 1),
        Err(Error::PoolClosed(_))
    ));
    for r in pending.iter_mut() {
        match r.get_timeout(Duration::from_secs(10)) {
            Ok(50) | Err(Error::PoolClosed(_)) | Err(Error::WorkerDied { .. }) => {}
            other => panic!("unexpected outcome after terminate: {other:?}"),
        }
    }
    assert!(
        m.wait_timeout(Duration::from_secs(10)),
        "map_async hung after terminate"
    );
    p.join().unwrap();
}

/// 100 000 tiny tasks, with the default chunk size and with chunksize 1.
pub fn many_tiny_tasks<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let n = 100_000u64;
    let sum: u64 = p.map(square, 0..n).unwrap().iter().sum();
    let expected: u64 = (0..n).map(|x| x * x).sum();
    assert_eq!(sum, expected);
    let sum: u64 = p.map_chunked(square, 0..n, 1).unwrap().iter().sum();
    assert_eq!(sum, expected);
    let count = p
        .imap_unordered_chunked(square, 0..n, 100)
        .unwrap()
        .filter(|r| r.is_ok())
        .count();
    assert_eq!(count as u64, n);
}

/// Generates one `#[test]` per executor conformance check, for a pool constructor
/// `fn(workers) -> Result<E>`:
///
/// ```ignore
/// multiproc_core::executor_conformance!(|n| ThreadPool::new(n));
/// ```
#[macro_export]
macro_rules! executor_conformance {
    ($make:expr) => {
        mod executor_conformance {
            #[allow(unused_imports)]
            use super::*;
            use $crate::testing::executor as suite;

            #[test]
            fn map_preserves_order() {
                suite::map_preserves_order($make)
            }
            #[test]
            fn starmap_unpacks_tuples() {
                suite::starmap_unpacks_tuples($make)
            }
            #[test]
            fn apply_and_apply_async() {
                suite::apply_and_apply_async($make)
            }
            #[test]
            fn get_timeout_wait_ready() {
                suite::get_timeout_wait_ready($make)
            }
            #[test]
            fn panic_fails_only_its_task() {
                suite::panic_fails_only_its_task($make)
            }
            #[test]
            fn imap_ordered_and_unordered() {
                suite::imap_ordered_and_unordered($make)
            }
            #[test]
            fn empty_input() {
                suite::empty_input($make)
            }
            #[test]
            fn bad_arguments_are_errors() {
                suite::bad_arguments_are_errors($make)
            }
            #[test]
            fn close_join_and_drop() {
                suite::close_join_and_drop($make)
            }
            #[test]
            fn terminate_never_hangs() {
                suite::terminate_never_hangs($make)
            }
            #[test]
            fn many_tiny_tasks() {
                suite::many_tiny_tasks($make)
            }
        }
    };
}
