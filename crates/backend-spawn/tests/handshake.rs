//! The spawn handshake trusts nothing but its parent: a stray
//! `MULTIPROC_SPAWN`, with or without junk on stdin, makes nobody a worker — `init()` returns
//! and `main` runs; and the workers of a program that is not a test binary get no libtest
//! arguments.
//!
//! `harness = false`: a normal program (its `main` calls `init()` first, and there is no
//! `test_worker!`), which also orchestrates the cases, each a copy of itself started with a
//! forged environment and stdin, under a watchdog.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use multiproc_core::testing::run_with_watchdog;
use multiproc_spawn::{Executor, SpawnPool};

const ROLE: &str = "HANDSHAKE_ROLE";
const HANG: Duration = Duration::from_secs(60);

fn worker_args(_: ()) -> Vec<String> {
    std::env::args().collect()
}

fn square(x: u64) -> u64 {
    x * x
}

fn main() {
    multiproc_spawn::init();
    match std::env::var(ROLE).as_deref() {
        Ok("program") => println!("main ran"),
        Ok("program-with-pool") => {
            println!("main ran");
            let pool = SpawnPool::new(1).expect("a pool in a normal program");
            assert_eq!(pool.map(square, 0..4).unwrap(), vec![0, 1, 4, 9]);
            println!("pool ok");
        }
        Ok(other) => panic!("unknown role {other}"),
        Err(_) => orchestrate(),
    }
}

/// What a forged start gives the copy as stdin.
enum Stdin {
    /// One end of a socket pair (so the peer is really the parent), with these bytes written
    /// into it first; the other end is read for anything the copy sends back.
    Socket(Vec<u8>),
    /// A pipe carrying these bytes.
    Pipe(Vec<u8>),
    Null,
}

struct Forged {
    what: &'static str,
    role: &'static str,
    /// The value of `MULTIPROC_SPAWN`; `{ppid}` is replaced by this process's pid (the copy's
    /// parent), so that a check of the parent pid alone would accept it.
    env: &'static str,
    stdin: Stdin,
    expect: &'static [&'static str],
}

fn cases() -> Vec<Forged> {
    // A task frame as the old child read it, after the one-byte stdout message: junk that
    // names an "address".
    let mut junk = b"O".to_vec();
    junk.extend_from_slice(&[0xAB; 64]);
    vec![
        Forged {
            what: "old-style token naming the parent, junk on a socket stdin",
            role: "program",
            env: "worker:{ppid}",
            stdin: Stdin::Socket(junk.clone()),
            expect: &["main ran"],
        },
        Forged {
            what: "process token naming the parent, junk on a socket stdin",
            role: "program",
            env: "process:{ppid}",
            stdin: Stdin::Socket(junk.clone()),
            expect: &["main ran"],
        },
        Forged {
            what: "a token with a secret that the socket does not carry",
            role: "program",
            env: "worker:{ppid}:00112233445566778899aabbccddeeff",
            stdin: Stdin::Socket(junk.clone()),
            expect: &["main ran"],
        },
        Forged {
            what: "old-style token naming the parent, junk on a pipe",
            role: "program",
            env: "worker:{ppid}",
            stdin: Stdin::Pipe(junk),
            expect: &["main ran"],
        },
        Forged {
            what: "garbage",
            role: "program-with-pool",
            env: "not a token",
            stdin: Stdin::Null,
            expect: &["main ran", "pool ok"],
        },
        Forged {
            what: "a token naming another parent",
            role: "program-with-pool",
            env: "worker:1:00112233445566778899aabbccddeeff",
            stdin: Stdin::Null,
            expect: &["main ran", "pool ok"],
        },
    ]
}

fn run_forged(case: Forged) -> Result<(), String> {
    let exe = std::env::current_exe().unwrap();
    let token = case.env.replace("{ppid}", &std::process::id().to_string());
    let mut cmd = Command::new(exe);
    cmd.env(ROLE, case.role)
        .env("MULTIPROC_SPAWN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut ours = None;
    match case.stdin {
        Stdin::Socket(bytes) => {
            let (mut a, b) = UnixStream::pair().unwrap();
            a.write_all(&bytes).unwrap();
            cmd.stdin(Stdio::from(OwnedFd::from(b)));
            ours = Some(a);
        }
        Stdin::Pipe(bytes) => {
            let (r, w) = nix::unistd::pipe().unwrap();
            std::fs::File::from(w).write_all(&bytes).unwrap();
            cmd.stdin(Stdio::from(r));
        }
        Stdin::Null => {
            cmd.stdin(Stdio::null());
        }
    }
    let out = run_with_watchdog(cmd, HANG)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut problems = Vec::new();
    if !out.status.success() {
        problems.push(format!("exited with {}", out.status));
    }
    for line in case.expect {
        if !stdout.lines().any(|l| l == *line) {
            problems.push(format!("no {line:?} on stdout"));
        }
    }
    if let Some(mut ours) = ours {
        // The copy has exited: whatever it wrote back is buffered, then EOF.
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        let _ = ours.read_to_end(&mut back);
        if !back.is_empty() {
            problems.push(format!("it answered on the socket: {back:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: acted as a worker: {} (stdout {stdout:?}, stderr {stderr:?})",
            case.what,
            problems.join("; ")
        ))
    }
}

fn orchestrate() {
    let mut failures = Vec::new();
    for case in cases() {
        if let Err(e) = run_forged(case) {
            failures.push(e);
        }
    }
    // A normal program's workers get their program's arguments, not libtest's.
    let pool = SpawnPool::new(1).unwrap();
    let args = pool.apply(worker_args, ()).unwrap();
    if args.len() != 1 {
        failures.push(format!(
            "a normal program's worker got the arguments {:?}",
            &args[1..]
        ));
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("FAILED {f}");
        }
        std::process::exit(1);
    }
    println!("handshake: a forged start is never a worker; workers get no harness arguments");
}
