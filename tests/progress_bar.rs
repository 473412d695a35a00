//! `.progress(true)`: `map`, `starmap` and `imap` draw a bar on stderr when stderr is a
//! terminal, and write nothing there otherwise — on the threads, fork and spawn pools.
//!
//! `harness = false`: this file's `main` is both the program under test (when `ROLE` names a
//! backend: it builds that pool with `.progress(true)` and runs a `map` of 3 items, a
//! `starmap` of 4 and an `imap` of 5) and the test that runs it twice per backend: once with
//! stderr on a pseudo-terminal, whose other end the test reads until every holder of the
//! terminal (the program and its workers) has closed it, and once with stderr on a pipe.
//! The bar's template shows `{pos}/{len} items`; each bar's last frame (drawn when its
//! submission is done) shows all its items.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use multiproc::prelude::*;
use multiproc_core::testing::run_with_watchdog;
use nix::pty::{openpty, Winsize};

const ROLE: &str = "PROGRESS_BAR_ROLE";
/// A run that has not ended by then hung (it is killed, and the test fails).
const LIMIT: Duration = Duration::from_secs(120);
/// What the program's three bars show once done: `map` (3 items), `starmap` (4), `imap` (5).
const DONE: [&str; 3] = ["3/3 items", "4/4 items", "5/5 items"];
const BACKENDS: [&str; 3] = ["threads", "fork", "spawn"];

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn main() {
    multiproc::init();
    match std::env::var(ROLE) {
        Ok(backend) => program(&backend),
        Err(_) => orchestrate(),
    }
}

/// The program under test: one pool of `backend` with a progress bar, and the three calls
/// that draw one.
fn program(backend: &str) {
    match backend {
        "threads" => calls(
            multiproc::threads::Pool::builder()
                .processes(2)
                .progress(true)
                .build(),
        ),
        "fork" => calls(
            multiproc::fork::Pool::builder()
                .processes(2)
                .progress(true)
                .build(),
        ),
        "spawn" => calls(
            multiproc::spawn::Pool::builder()
                .processes(2)
                .progress(true)
                .build(),
        ),
        other => panic!("unknown backend {other}"),
    }
}

fn calls<E: Executor>(pool: multiproc::Result<E>) {
    let pool = pool.expect("building the pool");
    assert_eq!(pool.map(square, 0..3).unwrap(), vec![0, 1, 4]);
    assert_eq!(
        pool.starmap(add, [(1, 1), (2, 2), (3, 3), (4, 4)]).unwrap(),
        vec![2, 4, 6, 8]
    );
    let streamed: Vec<u64> = pool
        .imap(square, 0..5)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(streamed, vec![0, 1, 4, 9, 16]);
}

fn the_program(backend: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("this test's path"));
    cmd.env(ROLE, backend).stdin(Stdio::null());
    cmd
}

/// Runs the program for `backend` with stderr on a pseudo-terminal; returns what it wrote
/// there.
fn on_a_terminal(backend: &str) -> String {
    let size = Winsize {
        ws_row: 24,
        ws_col: 160,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(&size, None).expect("a pseudo-terminal");
    // The command, and with it this process's copy of the terminal's slave end, is dropped
    // at the end of the statement: the program and its workers hold the only copies.
    let mut child = the_program(backend)
        .stdout(Stdio::null())
        .stderr(Stdio::from(pty.slave))
        .spawn()
        .expect("starting the program");
    let master = File::from(pty.master);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match (&master).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // EIO: every slave end is closed (the program and its workers are gone).
                Err(_) => break,
            }
        }
        let _ = tx.send(all);
    });
    let Ok(written) = rx.recv_timeout(LIMIT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{backend}: the program on a terminal did not end within {LIMIT:?} (killed)");
    };
    let status = child.wait().expect("waiting for the program");
    let written = String::from_utf8_lossy(&written).into_owned();
    assert!(
        status.success(),
        "{backend}: the program on a terminal failed ({status}):\n{written}"
    );
    written
}

fn orchestrate() {
    for backend in BACKENDS {
        let drawn = on_a_terminal(backend);
        for done in DONE {
            assert!(
                drawn.contains(done),
                "{backend}: no bar showing {done:?} on the terminal; it got {drawn:?}"
            );
        }
        let out = run_with_watchdog(the_program(backend), LIMIT)
            .unwrap_or_else(|e| panic!("{backend}: {e}"));
        assert!(
            out.status.success(),
            "{backend}: the program on a pipe failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{backend}: stderr is a pipe, yet the program wrote {:?} there",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("progress_bar: {backend}: drawn on a terminal, silent on a pipe");
    }
}
