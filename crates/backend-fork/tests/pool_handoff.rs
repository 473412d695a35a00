//! What crosses into a worker besides plain values: an initializer run once per worker,
//! file descriptors inside arguments and results, and the byte counts of what crossed.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::time::Duration;

use multiproc_core::Error;
use multiproc_fork::{Executor, ForkPool};

static GREETING: OnceLock<String> = OnceLock::new();

fn set_greeting(greeting: String) {
    GREETING
        .set(greeting)
        .expect("the initializer runs once per worker");
}

fn greet(name: String) -> String {
    format!(
        "{}, {name}",
        GREETING.get().expect("the initializer ran first")
    )
}

#[test]
fn the_initializer_runs_in_every_worker_before_its_tasks() {
    let pool = ForkPool::with_initializer(2, set_greeting, &"hello".to_string()).unwrap();
    let names: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    let out = pool.map_chunked(greet, names.clone(), 1).unwrap();
    let want: Vec<String> = names.iter().map(|n| format!("hello, {n}")).collect();
    assert_eq!(out, want);
    assert!(
        GREETING.get().is_none(),
        "the parent did not run the initializer"
    );
}

fn failing_init(_: u32) {
    panic!("no configuration file");
}

fn one(x: u32) -> u32 {
    x
}

#[test]
fn a_failing_initializer_fails_the_tasks_instead_of_restarting_forever() {
    let pool = ForkPool::with_initializer(2, failing_init, &0).unwrap();
    let mut pending = pool.map_async(one, 0..10).unwrap();
    match pending.get_timeout(Duration::from_secs(10)) {
        Err(Error::InitializerFailed(message)) => {
            assert!(message.contains("no configuration file"), "{message}")
        }
        other => panic!("expected InitializerFailed, got {other:?}"),
    }
    assert!(matches!(
        pool.map(one, 0..2),
        Err(Error::InitializerFailed(_))
    ));
}

/// An argument that owns a socket end: it crosses as a descriptor, not as a number.
#[derive(serde::Serialize, serde::Deserialize)]
struct Reply {
    #[serde(with = "multiproc_core::handoff::fd")]
    to: OwnedFd,
    text: String,
}

fn answer(reply: Reply) -> usize {
    let mut stream = UnixStream::from(reply.to);
    stream.write_all(reply.text.as_bytes()).unwrap();
    reply.text.len()
}

#[test]
fn descriptors_in_arguments_reach_a_worker_created_before_them() {
    let pool = ForkPool::new(2).unwrap();
    // Created after the fork: the workers can only get it through the socket.
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let n = pool
        .apply(
            answer,
            Reply {
                to: theirs.into(),
                text: "from the worker".into(),
            },
        )
        .unwrap();
    let mut got = vec![0u8; n];
    ours.read_exact(&mut got).unwrap();
    assert_eq!(got, b"from the worker");
    assert_eq!(pool.ipc_stats().fds_sent, 1);
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Made {
    #[serde(with = "multiproc_core::handoff::fd")]
    end: OwnedFd,
}

fn make_socket(_: u32) -> Made {
    let (a, b) = UnixStream::pair().unwrap();
    // The worker writes into one end and returns the other; the parent reads from it.
    (&a).write_all(b"made in a worker").unwrap();
    std::mem::forget(a); // keep it open until the worker exits
    Made { end: b.into() }
}

#[test]
fn descriptors_in_results_come_back_to_the_parent() {
    let pool = ForkPool::new(1).unwrap();
    let made = pool.apply(make_socket, 0).unwrap();
    let mut stream = UnixStream::from(made.end);
    let mut got = [0u8; 16];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"made in a worker");
}

fn len(v: Vec<u8>) -> usize {
    v.len()
}

#[test]
fn ipc_stats_count_what_crossed() {
    let pool = ForkPool::new(2).unwrap();
    let out = pool.map(len, vec![vec![7u8; 1000]; 4]).unwrap();
    assert_eq!(out, vec![1000; 4]);
    let stats = pool.ipc_stats();
    assert!(stats.bytes_sent >= 4000, "{stats:?}");
    assert!(stats.bytes_received >= 4, "{stats:?}");
    assert_eq!(stats.fds_sent, 0);
}
