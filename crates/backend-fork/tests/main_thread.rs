//! Pools created on a process's main thread: their workers are forked by that thread itself
//! (no hand-over to the forker thread, which is never started), they still die with their
//! process, and a pool's whole life leaves no descriptor and no child behind.
//!
//! Under `cargo test` every test runs on a thread of its own, never on the main thread, so
//! each test here runs its body in a forked child ([`Process::from_closure`]), whose only
//! thread is its main thread, and reads the verdict from its exit code.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use multiproc_fork::{Executor, ForkPool, Process, ProcessHandle};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{getpid, Pid};

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);

fn square(x: u64) -> u64 {
    x * x
}

/// Runs `body` in a forked child, on its main thread, and returns its exit code (the child
/// is killed if it has not ended within [`LIMIT`]).
fn in_a_child(body: impl FnOnce() -> i32 + Send) -> i32 {
    let p = Process::from_closure(move || {
        // This thread is a copy of the one that forked it, the forker thread, and has its
        // name; a thread it starts has that name too until the new thread renames itself, so
        // a supervisor not yet scheduled would pass for the forker thread. Renamed first,
        // nothing here is called "multiproc-fork" unless the forker thread runs.
        let code = if multiproc_sys::thread::gettid() != getpid().as_raw() {
            90 // not the main thread: the test itself is wrong
        } else if std::fs::write("/proc/thread-self/comm", "test-main").is_err() {
            91
        } else {
            body()
        };
        // Leaves without running exit handlers, as a forked child should.
        multiproc_sys::exit::exit_now(code)
    })
    .start()
    .unwrap();
    finish(&p)
}

fn finish(p: &ProcessHandle) -> i32 {
    if let Err(e) = p.join_timeout(LIMIT) {
        let _ = p.kill();
        let _ = p.join_timeout(LIMIT);
        panic!("the child did not end within {LIMIT:?}: {e}");
    }
    p.exitcode().expect("a joined process has an exit code")
}

/// The names of this process's threads other than the calling one (a child forked by the
/// forker thread inherits that thread's name for its main thread).
fn other_thread_names() -> Vec<String> {
    let me = multiproc_sys::thread::gettid().to_string();
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy() == me {
            continue;
        }
        if let Ok(name) = std::fs::read_to_string(entry.path().join("comm")) {
            names.push(name.trim().to_owned());
        }
    }
    names
}

/// The names in a directory of `/proc/self`, sorted.
fn proc_self(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/self/{dir}"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The open descriptors of this process.
fn open_fds() -> Vec<String> {
    proc_self("fd")
}

/// A new pool of two that has mapped `square` over 0..4 (exit code 1: not made, 2: a wrong
/// answer).
fn a_pool_that_ran() -> Result<ForkPool, i32> {
    let pool = ForkPool::new(2).map_err(|_| 1)?;
    if pool.map(square, 0..4u64).ok() != Some(vec![0, 1, 4, 9]) {
        return Err(2);
    }
    Ok(pool)
}

#[test]
fn a_pool_on_the_main_thread_forks_there_and_starts_no_forker_thread() {
    let code = in_a_child(|| {
        let pool = match a_pool_that_ran() {
            Ok(pool) => pool,
            Err(code) => return code,
        };
        if other_thread_names().iter().any(|n| n == "multiproc-fork") {
            return 3; // the workers were forked by the forker thread
        }
        drop(pool);
        0
    });
    assert_eq!(
        code, 0,
        "exit code {code} (3: the forker thread was started)"
    );
}

#[test]
fn a_pool_made_and_dropped_on_the_main_thread_leaves_no_descriptor_and_no_child() {
    let code = in_a_child(|| {
        let before = open_fds();
        for _ in 0..3 {
            let pool = match a_pool_that_ran() {
                Ok(pool) => pool,
                Err(code) => return code,
            };
            drop(pool);
            // No child left, not even a zombie: nothing to wait for.
            if waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG))
                != Err(nix::errno::Errno::ECHILD)
            {
                return 3;
            }
            if open_fds() != before {
                return 4;
            }
        }
        0
    });
    assert_eq!(
        code, 0,
        "exit code {code} (3: a child left, 4: a descriptor left)"
    );
}

/// Whether `pid` still runs (not gone, not a zombie waiting for whoever adopted it).
fn alive(pid: u32) -> bool {
    multiproc_sys::procfs::stat(pid).is_ok_and(|s| s.state != b'Z')
}

#[test]
fn workers_forked_on_the_main_thread_die_with_their_process() {
    let (mut ours, mut theirs) = UnixStream::pair().unwrap();
    let p = Process::from_closure(move || {
        let Ok(pool) = ForkPool::new(2) else {
            multiproc_sys::exit::exit_now(1)
        };
        let pids: Vec<u32> = pool
            .pids()
            .iter()
            .flatten()
            .map(|p| p.as_raw() as u32)
            .collect();
        let line = format!("{} {}\n", pids[0], pids[1]);
        let _ = theirs.write_all(line.as_bytes());
        // Waits for the test to kill this process (the read fails at once if the test died).
        let _ = theirs.read(&mut [0]);
        multiproc_sys::exit::exit_now(0)
    })
    .start()
    .unwrap();
    let mut line = String::new();
    let mut byte = [0u8];
    while !line.ends_with('\n') {
        assert_eq!(ours.read(&mut byte).unwrap(), 1, "the child ended early");
        line.push(char::from(byte[0]));
    }
    let workers: Vec<u32> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(workers.iter().all(|&w| alive(w)));
    p.kill().unwrap();
    finish(&p);
    let start = Instant::now();
    // Orphaned workers are killed (PR_SET_PDEATHSIG) and reaped by whoever adopts them.
    while workers.iter().any(|&w| alive(w)) {
        assert!(start.elapsed() < LIMIT, "a worker outlived its process");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The ids of this process's threads.
fn thread_ids() -> Vec<String> {
    proc_self("task")
}

#[test]
fn a_pool_made_after_another_closed_takes_over_its_supervisor_threads() {
    let code = in_a_child(|| {
        let pool = match a_pool_that_ran() {
            Ok(pool) => pool,
            Err(code) => return code,
        };
        drop(pool);
        let after_first = thread_ids();
        let second = match a_pool_that_ran() {
            Ok(pool) => pool,
            Err(code) => return code,
        };
        // Every thread the second pool runs on was there when the first one closed.
        let started_threads = thread_ids().iter().any(|id| !after_first.contains(id));
        drop(second);
        if started_threads {
            return 3;
        }
        0
    });
    assert_eq!(
        code, 0,
        "exit code {code} (3: the second pool started threads)"
    );
}

#[test]
fn supervisor_threads_left_idle_by_a_closed_pool_end_by_themselves() {
    let code = in_a_child(|| {
        let pool = match a_pool_that_ran() {
            Ok(pool) => pool,
            Err(code) => return code,
        };
        drop(pool);
        let start = Instant::now();
        // Only the calling thread is left once the idle ones have gone (bounded by LIMIT).
        while thread_ids().len() > 1 {
            if start.elapsed() > LIMIT {
                return 3;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        0
    });
    assert_eq!(code, 0, "exit code {code} (3: idle threads lived on)");
}
