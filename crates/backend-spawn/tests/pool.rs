//! The spawn backend against core's Executor conformance suite and the process-pool failure
//! suite. This test binary is its own worker: `test_worker!` defines the hook test that the
//! spawned copies run.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use multiproc_core::{Error, Packed};
use multiproc_spawn::{Executor, SpawnPool};

multiproc_spawn::test_worker!();

multiproc_core::executor_conformance!(SpawnPool::new);
/// A spawn pool that can start only its first `n` workers.
fn limited(
    n: usize,
) -> multiproc_core::Result<
    multiproc_process::ProcessPool<
        multiproc_process::testing::LaunchLimit<multiproc_spawn::SpawnLauncher>,
    >,
> {
    multiproc_process::ProcessPool::new(
        n,
        multiproc_process::testing::LaunchLimit::new(multiproc_spawn::SpawnLauncher, n),
    )
}

multiproc_core::process_executor_conformance!(
    SpawnPool::new,
    pids = |p: &SpawnPool| p
        .pids()
        .iter()
        .map(|p| p.map(|p| p.as_raw() as u32))
        .collect(),
    launch_limit = limited,
    options = |o| SpawnPool::builder().options(o).build(),
);

static SET_IN_PARENT: OnceLock<u64> = OnceLock::new();

fn parent_state(_: u8) -> Option<u64> {
    SET_IN_PARENT.get().copied()
}

#[test]
fn workers_inherit_nothing() {
    SET_IN_PARENT.get_or_init(|| 42);
    let pool = SpawnPool::new(1).unwrap();
    assert_eq!(pool.apply(parent_state, 0).unwrap(), None);
}

static CONTEXT: OnceLock<Vec<u64>> = OnceLock::new();

fn set_context(data: Vec<u64>) {
    CONTEXT.set(data).expect("once per worker");
}

fn context_sum(offset: usize) -> u64 {
    CONTEXT.get().expect("the initializer ran")[offset..]
        .iter()
        .sum()
}

#[test]
fn context_is_copied_once_per_worker_not_once_per_task() {
    let data: Vec<u64> = (0..100_000).collect();
    let pool = SpawnPool::with_initializer(2, set_context, &data).unwrap();
    let offsets: Vec<usize> = (0..50).map(|i| i * 1000).collect();
    let sums = pool.map_chunked(context_sum, offsets.clone(), 1).unwrap();
    for (o, s) in offsets.iter().zip(&sums) {
        assert_eq!(*s, data[*o..].iter().sum::<u64>());
    }
    let sent = pool.ipc_stats().bytes_sent;
    let one_copy = 100_000 * 8; // fixed-width u64s
    assert!(
        sent < 3 * one_copy,
        "{sent} bytes sent: the context went more than twice (once per worker)"
    );
}

static BIG_CONTEXT: OnceLock<Packed<u64>> = OnceLock::new();

fn set_big_context(data: Packed<u64>) {
    BIG_CONTEXT.set(data).expect("once per worker");
}

/// The sum of the context from `offset` on; aborts the worker on `usize::MAX`.
fn big_context_sum(offset: usize) -> u64 {
    if offset == usize::MAX {
        std::process::abort();
    }
    BIG_CONTEXT.get().expect("the initializer ran")[offset..]
        .iter()
        .sum()
}

#[test]
fn a_large_context_is_mapped_by_every_worker_replacements_included() {
    let data = Packed::new((0..500_000u64).collect::<Vec<_>>()); // 4 MB: a bulk body
    let pool = SpawnPool::with_initializer(2, set_big_context, &data).unwrap();
    let offsets: Vec<usize> = (0..20).map(|i| i * 20_000).collect();
    let expected: Vec<u64> = offsets.iter().map(|&o| data[o..].iter().sum()).collect();
    assert_eq!(
        pool.map_chunked(big_context_sum, offsets.clone(), 1)
            .unwrap(),
        expected
    );
    let shared = pool.ipc_stats().bytes_shared;
    assert!(
        shared >= 2 * 4_000_000,
        "{shared} bytes crossed in shared memory"
    );
    // A replacement worker runs the initializer on the same buffer.
    assert!(matches!(
        pool.apply(big_context_sum, usize::MAX),
        Err(Error::WorkerDied { .. })
    ));
    // The replacement's supervisor sends it the initializer as soon as it has started it,
    // whether or not a task reaches it (the other worker may take them all): wait for that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pool.ipc_stats().bytes_shared < 3 * 4_000_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the replacement never got the initializer's buffer"
        );
        std::thread::yield_now();
    }
    assert_eq!(
        pool.map_chunked(big_context_sum, offsets, 1).unwrap(),
        expected
    );
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Reply {
    #[serde(with = "multiproc_core::handoff::fd")]
    to: OwnedFd,
}

fn write_back(reply: Reply) -> u32 {
    let mut s = UnixStream::from(reply.to);
    s.write_all(b"spawned").unwrap();
    std::process::id()
}

#[test]
fn descriptors_reach_spawned_workers() {
    let pool = SpawnPool::new(2).unwrap();
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let pid = pool.apply(write_back, Reply { to: theirs.into() }).unwrap();
    assert_ne!(pid, std::process::id());
    let mut got = [0u8; 7];
    ours.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"spawned");
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn pool_creation_in_many_threads_at_once() {
    let t = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let pool = SpawnPool::new(2).unwrap();
                pool.map(square, 0..100).unwrap().iter().sum::<u64>()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), (0..100u64).map(|x| x * x).sum());
    }
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_failing_initializer_is_an_error_not_a_restart_loop() {
    fn bad_init(_: u8) {
        panic!("cannot initialise");
    }
    let pool = SpawnPool::with_initializer(2, bad_init, &0).unwrap();
    let mut r = pool.map_async(square, 0..4).unwrap();
    assert!(matches!(
        r.get_timeout(Duration::from_secs(10)),
        Err(Error::InitializerFailed(_))
    ));
}

fn worker_args(_: ()) -> Vec<String> {
    std::env::args().skip(1).collect()
}

#[test]
fn a_test_binarys_workers_select_only_the_hook_test() {
    let pool = SpawnPool::new(1).unwrap();
    assert_eq!(
        pool.apply(worker_args, ()).unwrap(),
        multiproc_spawn::launch::TEST_ARGS
    );
}

/// Creates a fork pool inside a (spawned) worker and maps over it.
fn fork_pool_inside(n: u64) -> Result<Vec<u64>, String> {
    let inner = multiproc_fork::ForkPool::new(2).map_err(|e| e.to_string())?;
    inner.map(square, 0..n).map_err(|e| e.to_string())
}

#[test]
fn a_fork_pool_inside_a_spawn_worker_works() {
    let pool = SpawnPool::new(2).unwrap();
    let mut r = pool.map_async_chunked(fork_pool_inside, [3, 4], 1).unwrap();
    match r.get_timeout(Duration::from_secs(30)) {
        Ok(got) => assert_eq!(got, vec![Ok(vec![0, 1, 4]), Ok(vec![0, 1, 4, 9])]),
        Err(e) => {
            let _ = pool.terminate();
            panic!("a fork pool inside a spawn worker: {e}");
        }
    }
}

/// Creates a spawn pool inside a (forked) worker and maps over it.
fn spawn_pool_inside(n: u64) -> Result<Vec<u64>, String> {
    let inner = SpawnPool::new(2).map_err(|e| e.to_string())?;
    inner.map(square, 0..n).map_err(|e| e.to_string())
}

#[test]
fn a_spawn_pool_inside_a_fork_worker_works() {
    let pool = multiproc_fork::ForkPool::new(2).unwrap();
    let mut r = pool
        .map_async_chunked(spawn_pool_inside, [3, 4], 1)
        .unwrap();
    match r.get_timeout(Duration::from_secs(30)) {
        Ok(got) => assert_eq!(got, vec![Ok(vec![0, 1, 4]), Ok(vec![0, 1, 4, 9])]),
        Err(e) => {
            let _ = pool.terminate();
            panic!("a spawn pool inside a fork worker: {e}");
        }
    }
}
