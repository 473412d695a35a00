//! The conformance suite for [`Executor`]s. Each function takes a constructor
//! `fn(workers) -> Result<E>` and panics on failure; [`executor_conformance!`](crate::executor_conformance)
//! turns the whole list into `#[test]`s.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{Error, Executor, Result};

/// A "never hangs" bound: how long a check waits for something that a correct pool does at
/// once, before it fails. Far above what any check needs, so it is never machine-tuned.
pub const NEVER_HANGS: Duration = Duration::from_secs(60);

/// A directory through which a test and its tasks signal each other, whatever the backend:
/// threads, forked and spawned workers all see the same files. Tasks get its
/// [`path`](Self::path) in their argument and record events ([`gated`], [`counted`]); the
/// test waits for them ([`wait_for`](Self::wait_for)), counts them, and opens the gate that
/// [`gated`] tasks wait at. Removed on drop, which lets every gated task go: a check that
/// fails with tasks still waiting does not also wait for them.
#[derive(Debug)]
pub struct Handshake {
    dir: PathBuf,
}

impl Default for Handshake {
    fn default() -> Self {
        Self::new()
    }
}

impl Handshake {
    /// A new, empty directory under the system's temporary directory, its gate closed.
    pub fn new() -> Handshake {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "multiproc-handshake-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a handshake directory");
        Handshake { dir }
    }

    /// The directory, for a task's argument.
    pub fn path(&self) -> String {
        self.dir
            .to_str()
            .expect("a UTF-8 temporary directory")
            .to_owned()
    }

    /// How many times tasks have recorded `event` (`"started"`, `"ran"`).
    pub fn count(&self, event: &str) -> usize {
        std::fs::metadata(self.dir.join(event)).map_or(0, |m| m.len() as usize)
    }

    /// Waits (polling) until tasks have recorded `event` at least `n` times, failing after
    /// [`NEVER_HANGS`].
    pub fn wait_for(&self, event: &str, n: usize) {
        let start = Instant::now();
        while self.count(event) < n {
            assert!(
                start.elapsed() < NEVER_HANGS,
                "timed out waiting for {n} tasks to record {event:?} (got {})",
                self.count(event)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Opens the gate: every [`gated`] task, waiting or to come, goes on.
    pub fn open(&self) {
        std::fs::write(self.dir.join("gate"), b"open").expect("opening the gate");
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Appends one byte to the file `event` in `dir`: one record, atomic between processes.
/// Records nothing once the directory is gone: the test that made it has ended.
fn record(dir: &str, event: &str) {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(dir).join(event));
    match f {
        Ok(mut f) => f.write_all(b"x").expect("recording a handshake event"),
        Err(_) if !Path::new(dir).exists() => {}
        Err(e) => panic!("opening a handshake file in {dir}: {e}"),
    }
}

/// A task that records `"started"`, waits until the test [opens](Handshake::open) the gate of
/// the [`Handshake`] at `dir` (or drops it), and returns `x`. It panics after [`NEVER_HANGS`] rather than
/// wait for good.
pub fn gated((dir, x): (String, u64)) -> u64 {
    record(&dir, "started");
    let gate = Path::new(&dir).join("gate");
    let start = Instant::now();
    // A removed directory counts as open: its test has ended (perhaps failed) and dropped
    // the handshake, and must not wait for this task.
    while !gate.exists() && Path::new(&dir).exists() {
        assert!(start.elapsed() < NEVER_HANGS, "the gate never opened");
        std::thread::sleep(Duration::from_millis(1));
    }
    x
}

/// A task that records `"ran"` in the [`Handshake`] at `dir` and returns `x`.
pub fn counted((dir, x): (String, u64)) -> u64 {
    record(&dir, "ran");
    x
}

/// [`gated`] for `x == 0`, [`counted`] for every other `x`: the first item of a map waits
/// while the others finish.
pub fn first_waits(arg: (String, u64)) -> u64 {
    if arg.1 == 0 {
        gated(arg)
    } else {
        counted(arg)
    }
}

fn args(hs: &Handshake, xs: impl IntoIterator<Item = u64>) -> Vec<(String, u64)> {
    xs.into_iter().map(|x| (hs.path(), x)).collect()
}

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

/// `get_timeout` gives up with `Timeout` on a task that cannot finish yet without losing
/// it; `wait`, `ready` and `successful` report progress. The tasks wait at a [`Handshake`]'s
/// gate, so "not finished yet" is a fact, not a race against a sleep.
pub fn get_timeout_wait_ready<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let hs = Handshake::new();
    let mut slow = p.apply_async(gated, (hs.path(), 300)).unwrap();
    let t = Instant::now();
    assert!(matches!(
        slow.get_timeout(Duration::from_millis(20)),
        Err(Error::Timeout(_))
    ));
    assert!(
        t.elapsed() >= Duration::from_millis(20),
        "get_timeout returned early"
    );
    assert!(!slow.ready());
    assert_eq!(slow.successful(), None);
    assert!(!slow.wait_timeout(Duration::from_millis(1)));
    let m = p.map_async(gated, args(&hs, [10, 20, 30])).unwrap();
    assert!(!m.ready(), "map_async ready before its tasks could finish");
    assert!(!m.wait_timeout(Duration::from_millis(1)));
    hs.open();
    assert!(slow.wait_timeout(NEVER_HANGS), "the task never finished");
    slow.wait();
    assert!(slow.ready());
    assert_eq!(slow.successful(), Some(true));
    assert_eq!(slow.get_timeout(NEVER_HANGS).unwrap(), 300);
    assert!(m.wait_timeout(NEVER_HANGS), "map_async never finished");
    assert!(m.ready());
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

/// `imap` yields in input order — it holds back later results until the first is done —
/// and `imap_unordered` yields each result as it is done, every result once. The first item
/// waits at a [`Handshake`]'s gate until a later one has finished.
pub fn imap_ordered_and_unordered<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 2);
    let n = 8;
    let hs = Handshake::new();
    let mut it = p.imap(first_waits, args(&hs, 0..n)).unwrap();
    hs.wait_for("ran", 1); // a later item is done; the first one waits at the gate
    assert!(
        matches!(
            it.next_timeout(Duration::from_millis(10)),
            Some(Err(Error::Timeout(_)))
        ),
        "imap yielded before its first item was done"
    );
    hs.open();
    let ordered: Vec<u64> = it.map(|r| r.unwrap()).collect();
    assert_eq!(ordered, (0..n).collect::<Vec<_>>());

    let hs = Handshake::new();
    let mut it = p.imap_unordered(first_waits, args(&hs, 0..n)).unwrap();
    match it.next_timeout(NEVER_HANGS) {
        Some(Ok(x)) => assert_ne!(x, 0, "the first item cannot be done: its gate is closed"),
        other => panic!("imap_unordered did not yield a finished result: {other:?}"),
    }
    hs.open();
    let rest: Vec<u64> = it.map(|r| r.unwrap()).collect();
    assert_eq!(rest.len() as u64, n - 1);

    let delays = vec![60, 10, 40, 0, 20];
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

/// `join_timeout`: refused before `close`, as `join` is; with the only worker busy at a
/// [`Handshake`]'s gate, `Ok(false)` once its timeout passes, the pool untouched (the busy
/// task still finishes); after the gate opens, `Ok(true)`.
pub fn join_timeout_gives_up_and_comes_back<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    assert!(matches!(
        p.join_timeout(Duration::ZERO),
        Err(Error::JoinBeforeClose)
    ));
    let hs = Handshake::new();
    let busy = p.apply_async(gated, (hs.path(), 7)).unwrap();
    hs.wait_for("started", 1);
    p.close();
    assert!(
        !p.join_timeout(Duration::from_millis(20)).unwrap(),
        "joined while a task waits at its gate"
    );
    hs.open();
    assert!(p.join_timeout(NEVER_HANGS).unwrap());
    assert_eq!(busy.get().unwrap(), 7);
}

/// `terminate` abandons queued work: with the only worker busy (its task waits at a
/// [`Handshake`]'s gate), the `apply_async`, `map_async` and `imap` work queued behind it
/// fails with [`Error::PoolClosed`] (an `imap`: at least once, then it ends) and never runs (the tasks count their runs in the
/// handshake's files, which every backend's workers see). New work is refused, the busy task
/// ends with its value (threads cannot be stopped) or an error, and nothing hangs.
pub fn terminate_abandons_queued_work<E: Executor>(make: MakePool<E>) {
    let p = pool(make, 1);
    let hs = Handshake::new();
    let mut busy = p.apply_async(gated, (hs.path(), 7)).unwrap();
    hs.wait_for("started", 1); // the only worker is busy: what follows is queued
    let mut queued: Vec<_> = args(&hs, 0..20)
        .into_iter()
        .map(|a| p.apply_async(counted, a).unwrap())
        .collect();
    let mut mapped = p.map_async_chunked(counted, args(&hs, 0..10), 1).unwrap();
    let imapped = p.imap(counted, args(&hs, 0..5)).unwrap();
    p.terminate().unwrap();
    assert!(matches!(
        p.apply_async(square, 1),
        Err(Error::PoolClosed(_))
    ));
    hs.open(); // a worker thread cannot be killed: let the busy task end
    for r in queued.iter_mut() {
        match r.get_timeout(NEVER_HANGS) {
            Err(Error::PoolClosed(_)) => {}
            other => panic!("a task queued at terminate gave {other:?}, not PoolClosed"),
        }
    }
    match mapped.get_timeout(NEVER_HANGS) {
        Err(Error::PoolClosed(_)) => {}
        other => panic!("a map_async queued at terminate gave {other:?}, not PoolClosed"),
    }
    // An imap yields PoolClosed for its lost chunks — one per chunk, or once for all of them
    // when the pool went away (IMap's rule) — and then ends; never a value.
    let mut imapped = imapped;
    let mut failures = 0;
    loop {
        match imapped.next_timeout(NEVER_HANGS) {
            None => break,
            Some(Err(Error::PoolClosed(_))) => failures += 1,
            other => panic!("an imap item queued at terminate gave {other:?}, not PoolClosed"),
        }
    }
    assert!(
        failures >= 1,
        "an imap queued at terminate ended without an error"
    );
    match busy.get_timeout(NEVER_HANGS) {
        Ok(7) | Err(Error::PoolClosed(_)) | Err(Error::WorkerDied { .. }) => {}
        other => panic!("the busy task gave {other:?} after terminate"),
    }
    p.join().unwrap();
    assert_eq!(hs.count("ran"), 0, "work queued at terminate ran");
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
            fn join_timeout_gives_up_and_comes_back() {
                suite::join_timeout_gives_up_and_comes_back($make)
            }
            #[test]
            fn terminate_abandons_queued_work() {
                suite::terminate_abandons_queued_work($make)
            }
            #[test]
            fn many_tiny_tasks() {
                suite::many_tiny_tasks($make)
            }
        }
    };
}
