//! `Process` on fork: exit codes, signals, timeouts, inheritance, stdout, daemon semantics,
//! death with the parent, no zombies, forking while other threads hold stdout, and the
//! memory footprint of a child.
//!
//! These run as threads of one multithreaded process under `cargo test` (and as one process
//! per test under `cargo nextest`): every fork here is a fork from a multithreaded process.
//! Tests that need a separate parent re-execute this test binary with `--exact <name>` and
//! the environment variable [`ROLE`]; those role tests do nothing when it is not set.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_core::{tree_pss, Error, ExitCause};
use multiproc_fork::{Process, ProcessHandle};
use multiproc_sys::exit::{exit_now, exit_with_handlers};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);

/// Selects what a re-executed copy of this test binary does.
const ROLE: &str = "MULTIPROC_FORK_TEST_ROLE";

/// Joins with [`LIMIT`]; on timeout kills the child (so nothing is left behind) and fails.
fn join(p: &ProcessHandle) -> i32 {
    if let Err(e) = p.join_timeout(LIMIT) {
        let _ = p.kill();
        let _ = p.join_timeout(LIMIT);
        panic!("{} did not end within {LIMIT:?}: {e}", p.name());
    }
    p.exitcode().expect("a joined process has an exit code")
}

/// Kills and reaps the child when a test fails halfway.
struct KillOnDrop(ProcessHandle);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.join_timeout(LIMIT);
    }
}

#[test]
fn returning_is_exit_code_zero() {
    let p = Process::from_closure(|| {}).start().unwrap();
    assert!(p.pid() > 0 && p.pid() != std::process::id());
    assert_eq!(join(&p), 0);
    assert_eq!(p.exit_cause(), Some(ExitCause::Code(0)));
    assert!(!p.is_alive());
    p.check().unwrap();
    // Joining again is harmless, as in Python.
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn a_panic_is_exit_code_one() {
    let p = Process::from_closure(|| panic!("deliberate panic in a child"))
        .start()
        .unwrap();
    assert_eq!(join(&p), 1);
    assert!(matches!(
        p.check(),
        Err(Error::WorkerDied { cause: ExitCause::Code(1), pid }) if pid == p.pid()
    ));
}

#[test]
fn process_exit_sets_the_exit_code() {
    // The child ends itself with the C library's `exit(code)`, the call `std::process::exit`
    // ends with, so the code comes out the same way — without std's runtime cleanup before it,
    // which takes a std lock another thread of this test process may have held at the fork.
    // SAFETY: the closure runs on the child's only thread; the exit hooks it inherited may run
    // (the fork backend holds the registry across its fork, so it is not locked here).
    let p = Process::new(|code: i32| unsafe { exit_with_handlers(code) }, 3)
        .start()
        .unwrap();
    assert_eq!(join(&p), 3);
}

#[test]
fn kill_is_minus_nine() {
    let p = KillOnDrop(
        Process::from_closure(|| std::thread::sleep(Duration::from_secs(30)))
            .daemon(true)
            .start()
            .unwrap(),
    );
    assert!(p.0.is_alive());
    assert_eq!(p.0.exitcode(), None);
    p.0.kill().unwrap();
    assert_eq!(join(&p.0), -9);
    assert!(!p.0.is_alive());
    assert_eq!(p.0.exit_cause(), Some(ExitCause::Signal(9)));
    let err = p.0.check().unwrap_err();
    assert!(err.to_string().contains("SIGKILL"), "{err}");
    // Signalling a reaped child does nothing.
    p.0.kill().unwrap();
    p.0.terminate().unwrap();
}

#[test]
fn terminate_is_minus_fifteen() {
    let p = KillOnDrop(
        Process::from_closure(|| std::thread::sleep(Duration::from_secs(30)))
            .daemon(true)
            .start()
            .unwrap(),
    );
    p.0.terminate().unwrap();
    assert_eq!(join(&p.0), -15);
}

#[test]
fn join_timeout_times_out_and_the_child_stays_joinable() {
    // The child runs until we write to its pipe, so it cannot end during the timed join.
    let (release_r, release_w) = nix::unistd::pipe().unwrap();
    let p = KillOnDrop(
        Process::from_closure(move || {
            let mut byte = [0u8; 1];
            let _ = nix::unistd::read(release_r.as_raw_fd(), &mut byte);
        })
        .daemon(true)
        .start()
        .unwrap(),
    );
    let started = Instant::now();
    assert!(matches!(
        p.0.join_timeout(Duration::from_millis(50)),
        Err(Error::Timeout(_))
    ));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(50), "{waited:?}");
    assert!(p.0.is_alive());
    assert_eq!(p.0.exitcode(), None);
    assert!(matches!(p.0.check(), Err(Error::Timeout(_))));
    nix::unistd::write(&release_w, b"x").unwrap();
    assert_eq!(join(&p.0), 0);
}

#[test]
fn names_default_to_process_n() {
    let a = Process::from_closure(|| {}).start().unwrap();
    let b = Process::from_closure(|| {}).name("worker").start().unwrap();
    assert!(a.name().starts_with("Process-"), "{}", a.name());
    assert!(a.name()["Process-".len()..].parse::<usize>().is_ok());
    assert_eq!(b.name(), "worker");
    assert!(!a.is_daemon());
    assert_eq!(join(&a), 0);
    assert_eq!(join(&b), 0);
}

#[test]
fn the_child_inherits_captured_and_borrowed_data() {
    let data: Vec<u64> = (0..1_000_000).collect();
    let expected: u64 = data.iter().sum();
    // Moved in.
    let owned = data.clone();
    let p = Process::from_closure(move || {
        if owned.iter().sum::<u64>() != expected {
            exit_now(7);
        }
    })
    .start()
    .unwrap();
    assert_eq!(join(&p), 0);
    // Borrowed: the child has its own copy of this stack frame.
    let mut local = data;
    let p = Process::from_closure(|| {
        local[0] = 99; // changes the child's copy only (copy-on-write)
        if local.iter().sum::<u64>() != expected + 99 {
            exit_now(7);
        }
    })
    .start()
    .unwrap();
    assert_eq!(join(&p), 0);
    assert_eq!(local[0], 0, "the parent's data is unchanged");
}

#[test]
fn a_child_forked_by_a_thread_outlives_that_thread() {
    // PR_SET_PDEATHSIG fires when the *thread* that forked exits; forks happen on the
    // crate's long-lived forker thread, so a short-lived starting thread does not matter.
    // The child runs until we write to its pipe, so only a signal can end it before that.
    let (release_r, release_w) = nix::unistd::pipe().unwrap();
    let (p, tid) = std::thread::spawn(move || {
        let p = Process::from_closure(move || {
            let mut byte = [0u8; 1];
            let _ = nix::unistd::read(release_r.as_raw_fd(), &mut byte);
        })
        .daemon(true)
        .start()
        .unwrap();
        (p, nix::unistd::gettid())
    })
    .join()
    .unwrap();
    let p = KillOnDrop(p);
    // Gone from the kernel too (a join returns before the kernel's exit sends death signals).
    eventually("the starting thread is gone", || {
        !std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
    });
    assert!(
        p.0.is_alive(),
        "the child died with the thread that started it"
    );
    // A death signal sent when the thread ended would have ended it with -9, not 0.
    nix::unistd::write(&release_w, b"x").unwrap();
    assert_eq!(join(&p.0), 0);
}

#[test]
fn one_thread_joins_while_another_kills() {
    let p = Arc::new(KillOnDrop(
        Process::from_closure(|| std::thread::sleep(Duration::from_secs(30)))
            .daemon(true)
            .start()
            .unwrap(),
    ));
    let joiner = {
        let p = p.clone();
        std::thread::spawn(move || p.0.join_timeout(LIMIT))
    };
    std::thread::sleep(Duration::from_millis(50));
    p.0.kill().unwrap();
    joiner.join().unwrap().unwrap();
    assert_eq!(p.0.exitcode(), Some(-9));
}

/// The state of a process from `/proc/PID/stat` (`None` once it is gone).
fn proc_state(pid: u32) -> Option<char> {
    multiproc_sys::procfs::stat(pid)
        .ok()
        .map(|s| char::from(s.state))
}

/// Waits until `pid` is gone or a zombie of someone else; bounded by [`LIMIT`].
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LIMIT, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_dropped_handle_leaves_no_zombie() {
    // The child runs until we write to its pipe (a write, not a close: another test's fork may
    // hold a copy of the write end, and the child would not see the end of the pipe).
    let (release_r, release_w) = nix::unistd::pipe().unwrap();
    let p = Process::from_closure(move || {
        let mut byte = [0u8; 1];
        let _ = nix::unistd::read(release_r.as_raw_fd(), &mut byte);
    })
    .start()
    .unwrap();
    let pid = p.pid();
    drop(p); // still running: handed over to the crate
    nix::unistd::write(&release_w, b"x").unwrap();
    // Ends; a zombie until reaped (another test's start may already have reaped it).
    eventually("the dropped child has ended", || {
        matches!(proc_state(pid), Some('Z') | None)
    });
    // Any later start (or drop) reaps it.
    let q = Process::from_closure(|| {}).start().unwrap();
    assert_eq!(join(&q), 0);
    assert_eq!(proc_state(pid), None, "the orphaned child was reaped");
}

#[test]
fn many_children_all_reaped() {
    let handles: Vec<_> = (0..16)
        .map(|i| Process::from_closure(move || exit_now(i)).start().unwrap())
        .collect();
    for (i, p) in handles.iter().enumerate() {
        assert_eq!(join(p), i as i32);
        assert_eq!(proc_state(p.pid()), None);
    }
}

/// Forks 20 children that print while another thread keeps taking stdout's lock (holding it
/// 1 ms at a time, then leaving it free for 1 ms, so that the forks are not starved of it):
/// the fork must not hand a child a locked stdout. A child that got one never ends, and its
/// `join` fails after `LIMIT`.
#[test]
fn forking_while_another_thread_holds_stdout_does_not_deadlock() {
    let stop = Arc::new(AtomicBool::new(false));
    let hog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = std::io::stdout().lock();
                std::thread::sleep(Duration::from_millis(1));
                drop(out);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let children: Vec<_> = (0..20)
        .map(|i| {
            KillOnDrop(
                Process::from_closure(move || {
                    println!("child {i} prints"); // libtest may capture this one...
                    let _ = writeln!(std::io::stdout(), "child {i} writes"); // ...not this
                    eprintln!("child {i} prints to stderr");
                })
                .daemon(true)
                .start()
                .unwrap(),
            )
        })
        .collect();
    let codes: Vec<i32> = children.iter().map(|p| join(&p.0)).collect();
    stop.store(true, Ordering::Relaxed);
    hog.join().unwrap();
    assert_eq!(codes, vec![0; 20]);
}

#[test]
fn a_child_touching_memory_grows_the_tree_pss() {
    const SIZE: usize = 64 << 20;
    let me = std::process::id();
    // The child touches 64 MiB, reports it is done through a pipe, and waits to be killed.
    let (mut done_rx, mut done_tx) = std::io::pipe().unwrap();
    let before = tree_pss(me).unwrap();
    let p = KillOnDrop(
        Process::from_closure(move || {
            let mut block = vec![0u8; SIZE];
            for page in block.chunks_mut(4096) {
                page[0] = 1;
            }
            let _ = done_tx.write_all(b"x");
            drop(done_tx);
            std::thread::sleep(Duration::from_secs(30));
            drop(std::hint::black_box(block));
        })
        .daemon(true)
        .start()
        .unwrap(),
    );
    let mut byte = [0u8; 1];
    done_rx.read_exact(&mut byte).unwrap();
    let during = tree_pss(me).unwrap();
    p.0.kill().unwrap();
    assert_eq!(join(&p.0), -9);
    assert!(
        during >= before + (32 << 20),
        "tree PSS went from {before} to only {during} while a child held 64 MiB"
    );
}

// ---- tests that need their own parent process: this binary re-executed in a role ----

/// Runs this test binary's test `name` alone, with [`ROLE`] set to `role`, and returns its
/// stdout; fails if it does not finish within [`LIMIT`].
fn run_role(name: &str, role: &str) -> (std::process::ExitStatus, String) {
    run_role_within(name, role, LIMIT)
}

/// [`run_role`], failing if the role does not finish within `limit`.
fn run_role_within(name: &str, role: &str, limit: Duration) -> (std::process::ExitStatus, String) {
    let mut child = spawn_role(name, role);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            return (status, out);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("role {role} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn spawn_role(name: &str, role: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

#[test]
fn role_child_process() {
    match role().as_deref() {
        Some("stdout") => {
            // Buffered (no newline): must be flushed before the fork, or the child prints
            // it again when it flushes its copy of the buffer.
            print!("partial");
            let p = Process::from_closure(|| println!("child")).start().unwrap();
            assert_eq!(join(&p), 0);
            println!();
        }
        Some("exit") => {
            // Returns right away; the process exit handler then kills the daemon and waits
            // for the other one.
            let daemon = Process::from_closure(|| std::thread::sleep(Duration::from_secs(60)))
                .daemon(true)
                .start()
                .unwrap();
            let worker = Process::from_closure(|| {
                std::thread::sleep(Duration::from_millis(300));
                println!("non-daemon finished");
            })
            .start()
            .unwrap();
            println!("daemon={} worker={}", daemon.pid(), worker.pid());
            std::mem::forget(daemon);
            std::mem::forget(worker);
        }
        Some("orphan") => {
            // Prints the child's pid, then waits to be SIGKILLed by the test.
            let p = Process::from_closure(|| std::thread::sleep(Duration::from_secs(60)))
                .start()
                .unwrap();
            println!("child={}", p.pid());
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        Some("foreign_fork") => a_foreign_fork_in_a_single_threaded_process(),
        _ => {}
    }
}

#[test]
fn buffered_stdout_is_not_printed_twice() {
    let (status, out) = run_role("role_child_process", "stdout");
    assert!(status.success(), "{status:?}\n{out}");
    assert_eq!(out.matches("partial").count(), 1, "{out}");
    assert_eq!(out.matches("child\n").count(), 1, "{out}");
}

fn pid_after(out: &str, key: &str) -> u32 {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {out:?}"))
}

#[test]
fn at_exit_daemons_are_killed_and_others_waited_for() {
    let (status, out) = run_role("role_child_process", "exit");
    assert!(status.success(), "{status:?}\n{out}");
    assert_eq!(out.matches("non-daemon finished").count(), 1, "{out}");
    // The daemon was killed, and both were reaped by the parent before it exited.
    let daemon = pid_after(&out, "daemon=");
    eventually("the daemon child is gone", || proc_state(daemon).is_none());
}

#[test]
fn children_die_with_their_parent() {
    let mut parent = spawn_role("role_child_process", "orphan");
    let mut stdout = parent.stdout.take().unwrap();
    let mut out = String::new();
    let mut buf = [0u8; 256];
    let start = Instant::now();
    while !out.contains("child=") || !out[out.find("child=").unwrap()..].contains('\n') {
        assert!(start.elapsed() < LIMIT, "no pid from the role: {out:?}");
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "the role ended early: {out:?}");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let child = pid_after(&out, "child=");
    assert!(matches!(proc_state(child), Some(s) if s != 'Z'));
    parent.kill().unwrap(); // SIGKILL: no exit handler runs
    parent.wait().unwrap();
    eventually("the orphaned child died with its parent", || {
        matches!(proc_state(child), None | Some('Z'))
    });
}

/// Bounds the wait for a child of a raw `fork` (far above the milliseconds its exit takes).
const RAW_FORK_LIMIT: Duration = Duration::from_secs(30);

/// Waits for `child`, a child of a raw `fork` of ours, until [`RAW_FORK_LIMIT`]; on timeout
/// kills it (it is unreaped, so the pid is still ours) and fails.
fn wait_raw_child(child: Pid) -> WaitStatus {
    let start = Instant::now();
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)).unwrap() {
            WaitStatus::StillAlive => {}
            status => return status,
        }
        if start.elapsed() > RAW_FORK_LIMIT {
            // Left a zombie: the role's process ends with this failure, and init reaps it.
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            panic!("the child of the raw fork did not end within {RAW_FORK_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A child made by a fork that is not the fork backend's (the user's own `fork`, a C
/// library's) and that exits normally runs the exit hooks it inherited. Those must leave the
/// parent's children alone: the registry it inherited is the parent's, not its own. Before
/// the registry knew its process, such a child SIGKILLed the parent's daemon children.
///
/// Runs in a re-executed copy of this binary: a raw `fork` from this multithreaded test process
/// could copy a lock (the registry) that another test's thread holds, and the child's exit
/// hooks would wait for it for ever — the caller's bug, not the library's.
#[test]
fn a_child_of_a_foreign_fork_leaves_the_parents_daemons_alone() {
    let (status, out) =
        run_role_within("role_child_process", "foreign_fork", RAW_FORK_LIMIT + LIMIT);
    assert!(status.success(), "{status:?}\n{out}");
}

/// The role of [`a_child_of_a_foreign_fork_leaves_the_parents_daemons_alone`]: the only test
/// of its process, so no other test's thread exists at the raw fork; the threads that may
/// (libtest's waiting main thread, the fork backend's forker) are idle and hold no lock.
fn a_foreign_fork_in_a_single_threaded_process() {
    // A daemon child of ours that waits on a pipe we never write.
    let (keep_r, keep_w) = nix::unistd::pipe().unwrap();
    let daemon = KillOnDrop(
        Process::from_closure(move || {
            let mut byte = [0u8; 1];
            let _ = nix::unistd::read(keep_r.as_raw_fd(), &mut byte);
        })
        .daemon(true)
        .start()
        .unwrap(),
    );
    // SAFETY: the child only calls the C library's `exit` (below) and ends.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            // SAFETY: runs the atexit handlers this process registered (multiproc's exit
            // hooks among them) and ends it; no other thread runs in the child, so nothing
            // else calls `exit` at the same time.
            unsafe { multiproc_sys::exit::exit_with_handlers(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = wait_raw_child(child);
            assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
        }
    }
    assert!(
        daemon.0.is_alive(),
        "the foreign fork's exit killed its parent's daemon child"
    );
    nix::unistd::write(&keep_w, b"x").unwrap();
    assert_eq!(join(&daemon.0), 0);
}
