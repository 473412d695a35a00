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

fn byte_sum(v: multiproc_core::Packed<u8>) -> u64 {
    v.iter().map(|&b| u64::from(b)).sum()
}

/// The pool keeps large arguments' shared-memory buffers for reuse. A forked child that
/// inherits the pool must not write them: an argument the parent queued must arrive as the
/// parent encoded it, whatever the child encodes meanwhile.
#[test]
fn a_forked_child_does_not_write_the_parents_argument_buffers() {
    use multiproc_core::Packed;
    const MIB3: usize = 3 << 20;
    let pool = ForkPool::new(1).unwrap();
    // A large argument leaves its buffer in the pool's spare list.
    assert_eq!(
        pool.apply(byte_sum, Packed::new(vec![0u8; MIB3])).unwrap(),
        0
    );
    let child = multiproc_fork::Process::from_closure(|| {
        std::thread::sleep(Duration::from_millis(100));
        // Encoded in the child (never run: the child has no supervisors).
        std::mem::forget(pool.apply_async(byte_sum, Packed::new(vec![2u8; MIB3])));
    })
    .start()
    .unwrap();
    // The parent's argument takes the spare buffer and waits behind a busy worker while the
    // child encodes its own.
    let busy = pool
        .apply_async(multiproc_core::testing::process::sleep_then, 300)
        .unwrap();
    let queued = pool
        .apply_async(byte_sum, Packed::new(vec![1u8; MIB3]))
        .unwrap();
    child.join_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(child.exitcode(), Some(0), "the child ended normally");
    assert_eq!(busy.get().unwrap(), 300);
    assert_eq!(queued.get().unwrap(), MIB3 as u64);
}

/// The descriptors of this process's open `multiproc-bulk` memfds.
fn bulk_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("multiproc-bulk"))
        .count()
}

/// A forked child does not keep the parent's argument buffers (their memory) alive.
#[test]
fn forked_children_close_the_parents_argument_buffers() {
    use multiproc_core::Packed;
    let pool = ForkPool::new(1).unwrap();
    assert_eq!(
        pool.apply(byte_sum, Packed::new(vec![1u8; 2 << 20]))
            .unwrap(),
        2 << 20
    );
    assert!(bulk_descriptors() >= 1, "the pool keeps a spare buffer");
    let child = multiproc_fork::Process::from_closure(|| {
        if bulk_descriptors() != 0 {
            multiproc_sys::exit::exit_now(3);
        }
    })
    .start()
    .unwrap();
    child.join_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(child.exitcode(), Some(0), "the child held bulk descriptors");
}
