//! The facade's `Pool` and Python's start methods: `Pool::with_start_method`,
//! `set_start_method`, `get_start_method` and the `MULTIPROC_START_METHOD` variable.
//!
//! The start method is process-wide state (a static and the environment), so every check
//! that sets it runs in a fresh copy of this test binary (`in_child`), never in the test
//! process where other tests run at the same time. A worker proves how it started: a forked
//! one sees a value this process set at run time; a spawned one, a fresh program, does not.
#![cfg(all(feature = "fork", feature = "spawn"))]

use std::process::Command;
use std::sync::OnceLock;

use multiproc::prelude::*;
use multiproc::{get_start_method, set_start_method, Pool, StartMethod, START_METHOD_ENV};

// Spawned workers are this test binary run again: this hook test makes them workers.
multiproc::spawn::test_worker!();

/// The environment variable that selects a check in a child copy of this binary.
const ROLE: &str = "MULTIPROC_START_METHOD_TEST_ROLE";

/// Set at run time in the parent: a forked worker sees it, a spawned one does not.
static SET_AT_RUN_TIME: OnceLock<u64> = OnceLock::new();

fn inherited(_: u8) -> Option<u64> {
    SET_AT_RUN_TIME.get().copied()
}

fn worker_pid(_: u8) -> u32 {
    std::process::id()
}

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// Sets [`SET_AT_RUN_TIME`]: call it before creating the pools that [`observed_method`]
/// looks at (forked workers copy this process when the pool starts them).
fn mark() {
    SET_AT_RUN_TIME.get_or_init(|| 42);
}

/// How `pool`'s workers really started, seen from a task ([`mark`] must have run before the
/// pool was created).
fn observed_method(pool: &Pool) -> StartMethod {
    assert!(SET_AT_RUN_TIME.get().is_some(), "mark() first");
    match pool.apply(inherited, 0).unwrap() {
        Some(42) => StartMethod::Fork,
        None => StartMethod::Spawn,
        other => panic!("a worker saw {other:?}"),
    }
}

/// Runs this binary again with only `test`, in `role`, with `MULTIPROC_START_METHOD` set to
/// `env` (or removed); panics unless it passes.
fn in_child(test: &str, role: &str, env: Option<&str>) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role);
    match env {
        Some(v) => cmd.env(START_METHOD_ENV, v),
        None => cmd.env_remove(START_METHOD_ENV),
    };
    let out = cmd.output().expect("re-running the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child {role} (env {env:?}) failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

#[test]
fn pool_with_each_start_method_is_a_full_executor() {
    mark();
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let pool = Pool::with_start_method(2, method).unwrap();
        assert_eq!(pool.start_method(), method);
        assert_eq!(observed_method(&pool), method, "{method} pool");
        assert_eq!(pool.processes(), 2);
        assert_eq!(
            pool.map(square, 0..10).unwrap(),
            (0..10).map(|x| x * x).collect::<Vec<_>>()
        );
        assert_eq!(pool.starmap(add, [(1, 2), (3, 4)]).unwrap(), vec![3, 7]);
        assert_eq!(pool.apply_async(square, 9).unwrap().get().unwrap(), 81);
        let imapped: Vec<u64> = pool
            .imap(square, 0..5)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(imapped, vec![0, 1, 4, 9, 16]);
        let pids = pool.map_chunked(worker_pid, vec![0u8; 8], 1).unwrap();
        assert!(
            !pids.contains(&std::process::id()),
            "{method}: a task ran in the parent"
        );
        pool.close();
        assert!(matches!(pool.apply(square, 1), Err(Error::PoolClosed(_))));
        pool.join().unwrap();

        let pool = Pool::with_start_method(1, method).unwrap();
        pool.terminate().unwrap();
        assert!(matches!(pool.apply(square, 1), Err(Error::PoolClosed(_))));
        pool.join().unwrap();
    }
    assert!(matches!(
        Pool::with_start_method(0, StartMethod::Fork),
        Err(Error::InvalidArgument {
            name: "processes",
            ..
        })
    ));
}

#[test]
fn start_methods_parse_and_print_as_python_spells_them() {
    for (name, method) in [("fork", StartMethod::Fork), ("spawn", StartMethod::Spawn)] {
        assert_eq!(StartMethod::parse(name).unwrap(), method);
        assert_eq!(method.name(), name);
        assert_eq!(method.to_string(), name);
    }
    for bad in ["forkserver", "Fork", ""] {
        assert!(matches!(
            StartMethod::parse(bad),
            Err(Error::InvalidArgument { .. })
        ));
    }
}

#[test]
fn without_the_variable_the_default_is_fork() {
    match role().as_deref() {
        Some("default") => {
            mark();
            assert_eq!(get_start_method().unwrap(), StartMethod::Fork);
            let pool = Pool::new(1).unwrap();
            assert_eq!(pool.start_method(), StartMethod::Fork);
            assert_eq!(observed_method(&pool), StartMethod::Fork);
        }
        Some(_) => {}
        None => in_child("without_the_variable_the_default_is_fork", "default", None),
    }
}

#[test]
fn the_variable_picks_the_start_method() {
    match role().as_deref() {
        Some("env") => {
            mark();
            let want = StartMethod::parse(&std::env::var(START_METHOD_ENV).unwrap()).unwrap();
            assert_eq!(get_start_method().unwrap(), want);
            let pool = Pool::new(2).unwrap();
            assert_eq!(pool.start_method(), want);
            assert_eq!(observed_method(&pool), want);
            assert_eq!(pool.map(square, 0..4).unwrap(), vec![0, 1, 4, 9]);
        }
        Some(_) => {}
        None => {
            for env in ["fork", "spawn"] {
                in_child("the_variable_picks_the_start_method", "env", Some(env));
            }
        }
    }
}

#[test]
fn a_bad_variable_is_an_error_that_names_it() {
    match role().as_deref() {
        Some("bad") => {
            match get_start_method() {
                Err(Error::InvalidArgument { name, reason }) => {
                    assert_eq!(name, START_METHOD_ENV);
                    assert!(reason.contains("forkserver"), "{reason}");
                }
                other => panic!("expected InvalidArgument, got {other:?}"),
            }
            assert!(matches!(
                Pool::new(1),
                Err(Error::InvalidArgument {
                    name: START_METHOD_ENV,
                    ..
                })
            ));
            // An explicit method does not read the variable.
            let pool = Pool::with_start_method(1, StartMethod::Fork).unwrap();
            assert_eq!(pool.apply(square, 3).unwrap(), 9);
            // Nor does a set one.
            set_start_method(StartMethod::Spawn);
            assert_eq!(get_start_method().unwrap(), StartMethod::Spawn);
        }
        Some(_) => {}
        None => in_child(
            "a_bad_variable_is_an_error_that_names_it",
            "bad",
            Some("forkserver"),
        ),
    }
}

#[test]
fn set_start_method_overrides_the_variable() {
    match role().as_deref() {
        Some("set") => {
            mark();
            assert_eq!(get_start_method().unwrap(), StartMethod::Fork); // from the variable
            set_start_method(StartMethod::Spawn);
            assert_eq!(get_start_method().unwrap(), StartMethod::Spawn);
            let pool = Pool::new(1).unwrap();
            assert_eq!(pool.start_method(), StartMethod::Spawn);
            assert_eq!(observed_method(&pool), StartMethod::Spawn);
            set_start_method(StartMethod::Fork);
            let pool = Pool::new(1).unwrap();
            assert_eq!(pool.start_method(), StartMethod::Fork);
            assert_eq!(observed_method(&pool), StartMethod::Fork);
        }
        Some(_) => {}
        None => in_child(
            "set_start_method_overrides_the_variable",
            "set",
            Some("fork"),
        ),
    }
}

static INIT_ARG: OnceLock<u64> = OnceLock::new();

fn remember(x: u64) {
    INIT_ARG
        .set(x)
        .expect("the initializer runs once per worker");
}

fn remembered(_: u8) -> Option<u64> {
    INIT_ARG.get().copied()
}

#[test]
fn with_initializer_follows_the_start_method() {
    match role().as_deref() {
        Some("init") => {
            let want = get_start_method().unwrap();
            let pool = Pool::with_initializer(2, remember, &5).unwrap();
            assert_eq!(pool.start_method(), want);
            let seen = pool.map_chunked(remembered, vec![0u8; 8], 1).unwrap();
            assert!(seen.iter().all(|s| *s == Some(5)), "{seen:?}");
            assert_eq!(INIT_ARG.get(), None, "the initializer ran in the parent");
        }
        Some(_) => {}
        None => {
            for env in ["fork", "spawn"] {
                in_child(
                    "with_initializer_follows_the_start_method",
                    "init",
                    Some(env),
                );
            }
        }
    }
}

/// `Pool::builder()`: `start_method` picks the method per pool (whatever the process-wide
/// one), `processes` defaults to `cpu_count`, and the options reach the pool (a
/// `max_tasks_per_child(1)` pool gives every task a fresh worker).
#[test]
fn the_builder_picks_the_start_method_and_the_options() {
    mark();
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let pool = Pool::builder()
            .start_method(method)
            .processes(2)
            .max_tasks_per_child(1)
            .build()
            .unwrap();
        assert_eq!(pool.start_method(), method);
        assert_eq!(observed_method(&pool), method);
        let pids = pool.map_chunked(worker_pid, [0u8; 4], 1).unwrap();
        let distinct: std::collections::BTreeSet<u32> = pids.iter().copied().collect();
        assert_eq!(distinct.len(), 4, "{pids:?}");
    }
    let pool = Pool::builder()
        .start_method(StartMethod::Fork)
        .build()
        .unwrap();
    assert_eq!(pool.processes(), multiproc::cpu_count());
    assert!(matches!(
        Pool::builder().processes(0).build(),
        Err(multiproc::Error::InvalidArgument {
            name: "processes",
            ..
        })
    ));
}
