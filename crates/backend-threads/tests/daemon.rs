//! Python's daemon semantics, checked in a child process: the test binary re-runs itself
//! with an environment variable that selects the child's part.

use std::process::Command;
use std::time::{Duration, Instant};

use multiproc_threads::Thread;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult};

const ROLE: &str = "MULTIPROC_DAEMON_TEST_ROLE";

/// Runs this test binary again, executing only `test`, in `role`; returns its stdout and how
/// long it took.
fn run_child(test: &str, role: &str) -> (String, Duration) {
    let start = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .output()
        .expect("re-running the test binary");
    assert!(out.status.success(), "child failed: {out:?}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        start.elapsed(),
    )
}

#[test]
fn a_non_daemon_thread_keeps_the_program_alive() {
    if std::env::var(ROLE).as_deref() == Ok("child") {
        Thread::new(|| {
            std::thread::sleep(Duration::from_millis(300));
            println!("non-daemon thread finished");
        })
        .start()
        .unwrap();
        return; // the test, and then main, return before the thread finishes
    }
    let (stdout, _) = run_child("a_non_daemon_thread_keeps_the_program_alive", "child");
    assert!(
        stdout.contains("non-daemon thread finished"),
        "the program exited before its non-daemon thread finished:\n{stdout}"
    );
}

#[test]
fn a_daemon_thread_is_abandoned_at_exit() {
    if std::env::var(ROLE).as_deref() == Ok("child") {
        Thread::new(|| {
            std::thread::sleep(Duration::from_secs(20));
            println!("daemon thread finished");
        })
        .daemon(true)
        .start()
        .unwrap();
        return;
    }
    let (stdout, took) = run_child("a_daemon_thread_is_abandoned_at_exit", "child");
    assert!(!stdout.contains("daemon thread finished"), "{stdout}");
    assert!(
        took < Duration::from_secs(15),
        "exit waited for a daemon thread: {took:?}"
    );
}

#[test]
fn a_forked_child_that_exits_does_not_wait_for_its_parents_threads() {
    if std::env::var(ROLE).as_deref() == Ok("child") {
        // The non-daemon thread runs until the forked child has been reaped: a child whose
        // exit waited for it (it does not exist there) would never end.
        let (reaped, wait_reaped) = std::sync::mpsc::channel::<()>();
        let t = Thread::new(move || {
            let _ = wait_reaped.recv();
        })
        .start()
        .unwrap();
        // SAFETY: the child only calls the C library's `exit`, which runs the inherited exit
        // handlers — the code under test — and nothing that could need a lock held by another
        // thread. Not `std::process::exit`: std's runtime cleanup before it takes a std lock
        // that a thread's start and end take too (`t` was just started), and could hang.
        match unsafe { fork() }.expect("fork failed") {
            // SAFETY: no other thread runs in the child, so none calls `exit` at the same time;
            // running the exit handlers it inherited is what this test checks.
            ForkResult::Child => unsafe { multiproc_sys::exit::exit_with_handlers(0) },
            ForkResult::Parent { child } => {
                let start = Instant::now();
                // A "never hangs" bound, far above the milliseconds a child's exit takes.
                while waitpid(child, Some(WaitPidFlag::WNOHANG)).unwrap() == WaitStatus::StillAlive
                {
                    if start.elapsed() > Duration::from_secs(30) {
                        // `child` is our unreaped child, so the pid is still ours.
                        let _ = kill(child, Signal::SIGKILL);
                        panic!("the forked child waited for its parent's thread at exit");
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                println!("child exited at once");
            }
        }
        reaped.send(()).unwrap();
        t.join().unwrap();
        return;
    }
    let (stdout, _) = run_child(
        "a_forked_child_that_exits_does_not_wait_for_its_parents_threads",
        "child",
    );
    assert!(stdout.contains("child exited at once"), "{stdout}");
}
