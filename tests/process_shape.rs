//! One shape of `Process`: `multiproc::fork::Process`, `multiproc::spawn::Process`
//! and `multiproc::Process` (under either start method) are built and started by the same
//! code, so switching a program's processes from one to another is one line.
//!
//! Every child exits with a code made of its arguments plus [`INHERITED`]: a forked child sees
//! the value its parent stored there before the fork; a spawned child runs this program afresh
//! and sees 0. So the exit code says both that the arguments arrived and how the child started.

use std::sync::atomic::{AtomicI32, Ordering};

use multiproc::{Process, StartMethod};
use multiproc_sys::exit::exit_now;

// This test binary doubles as the spawned children.
multiproc::spawn::test_worker!();

/// Set by the parent before it starts a child (always to [`MARK`]).
static INHERITED: AtomicI32 = AtomicI32::new(0);
const MARK: i32 = 100;

/// The target: the length of the word, plus `n`, plus what this process inherited.
fn exit_with((word, n): (String, i32)) {
    exit_now(word.len() as i32 + n + INHERITED.load(Ordering::Relaxed));
}

/// Starts `exit_with(("shape", n))` as `$P` (a `Process` type), with the same constructor,
/// builder methods, `start`, `join` and `exitcode` whatever `$P` is; returns the exit code.
macro_rules! exit_code_of {
    ($($P:ident)::+, $n:expr) => {{
        INHERITED.store(MARK, Ordering::Relaxed);
        let p = $($P)::+::new(exit_with, ("shape".to_string(), $n))
            .name("shape")
            .daemon(false)
            .start()
            .expect("start");
        p.join().expect("join");
        p.exitcode()
    }};
}

#[test]
fn fork_process_takes_a_task_and_its_args() {
    assert_eq!(
        exit_code_of!(multiproc::fork::Process, 1),
        Some(5 + 1 + MARK)
    );
}

#[test]
fn spawn_process_takes_a_task_and_its_args() {
    assert_eq!(exit_code_of!(multiproc::spawn::Process, 2), Some(5 + 2));
}

/// Python's `get_context(method).Process(target=f, args=(...))`.
#[test]
fn facade_process_with_each_start_method() {
    for (method, expected) in [
        (StartMethod::Fork, 5 + 3 + MARK),
        (StartMethod::Spawn, 5 + 3),
    ] {
        INHERITED.store(MARK, Ordering::Relaxed);
        let p = Process::with_start_method(exit_with, ("shape".to_string(), 3), method)
            .name("shape")
            .start()
            .unwrap();
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(expected), "{method}");
    }
}

/// The only test of this binary that touches the process-wide start method (the variable,
/// then `set_start_method`, which overrides it): the others name theirs.
#[test]
fn facade_process_follows_the_start_method() {
    std::env::set_var(multiproc::START_METHOD_ENV, "spawn");
    assert_eq!(exit_code_of!(Process, 4), Some(5 + 4));
    std::env::set_var(multiproc::START_METHOD_ENV, "fork");
    assert_eq!(exit_code_of!(Process, 4), Some(5 + 4 + MARK));

    multiproc::set_start_method(StartMethod::Spawn); // overrides the variable
    assert_eq!(exit_code_of!(multiproc::Process, 5), Some(5 + 5));
    multiproc::set_start_method(StartMethod::Fork);
    assert_eq!(exit_code_of!(multiproc::Process, 5), Some(5 + 5 + MARK));
    std::env::remove_var(multiproc::START_METHOD_ENV);
}

/// Fork's own strength stays, under a name that says what it is: a forked child may run a
/// closure that captures (even borrows) the parent's values.
#[test]
fn fork_process_from_a_capturing_closure() {
    let words = vec!["a".to_string(), "bb".to_string()];
    let borrowed = &words;
    let p = multiproc::fork::Process::from_closure(move || {
        exit_now(borrowed.iter().map(String::len).sum::<usize>() as i32)
    })
    .start()
    .unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(3));
}
