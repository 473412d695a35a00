//! At exit, non-daemon threads are waited for *before* child processes are handled, as in
//! Python — whichever backend was used first. Before the one exit registry
//! (`multiproc_core::exit`), each backend registered its own `atexit` handler and the C
//! library ran them in reverse order of registration: a program that started a `Thread`
//! before its first process handled its children first, so a child started by a non-daemon
//! thread during exit was neither killed (daemon) nor waited for.
//!
//! `harness = false`: this file's `main` is both the program under test (when `ROLE` is set)
//! and the test that runs it.

use std::fs::File;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use multiproc::fork::Process;
use multiproc::threads::Thread;

const ROLE: &str = "EXIT_ORDER_ROLE";

/// The program under test. A `Thread` is started before any process (so the threads' exit
/// hook is registered first, the children's one second); it waits until `main` has returned and then starts two
/// children: a daemon `D` holding the write end of a pipe, and a non-daemon `N` that reads
/// the pipe until `D` is gone and then says so. Only if the children are handled after the
/// thread was waited for does the exit handler see both: it kills `D` (so `N` reads the end of
/// the pipe, prints and exits) and waits for `N`. Handled before, neither is seen, and both
/// die unreported with the process.
fn program() {
    let (go, wait) = mpsc::channel::<()>();
    let thread = Thread::new(move || {
        // `main` has returned (the sender is dropped then, at the latest).
        let _ = wait.recv();
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        let daemon = Process::from_closure(move || {
            let _keep = write_end;
            loop {
                std::thread::park();
            }
        })
        .daemon(true)
        .start()
        .unwrap();
        let reader = Process::from_closure(move || {
            let mut pipe = File::from(read_end);
            let mut rest = Vec::new();
            let _ = pipe.read_to_end(&mut rest);
            println!("N: the daemon is gone");
        })
        .start()
        .unwrap();
        println!("thread: started D={} N={}", daemon.pid(), reader.pid());
        // Not joined: the exit handler is in charge of both.
        std::mem::forget(daemon);
        std::mem::forget(reader);
    })
    .start()
    .unwrap();
    // A process started (and joined) after the thread: the children's exit hook is now
    // registered after the threads' one.
    let early = Process::from_closure(|| {}).start().unwrap();
    early.join().unwrap();
    drop(thread);
    drop(go);
}

fn main() {
    if std::env::var_os(ROLE).is_some() {
        program();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?}\n{stdout}", out.status);
    assert!(stdout.contains("thread: started"), "{stdout}");
    assert!(
        stdout.contains("N: the daemon is gone"),
        "the children were not handled after the thread:\n{stdout}"
    );
    println!("exit_order: ok");
}
