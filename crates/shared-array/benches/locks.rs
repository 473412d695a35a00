//! The process-shared locks, with criterion:
//!
//! ```text
//! cargo bench -p multiproc-shared-array --bench locks
//! cargo bench -p multiproc-shared-array --bench locks -- --quick      # a few seconds
//! ```
//!
//! - `uncontended/*`: `ProcessLock` and `ProcessRLock` acquire+release in one process, and
//!   `std::sync::Mutex` lock+unlock for reference;
//! - `contended by 2 processes/ProcessLock`: this process and a forked one each acquire the
//!   lock, increment a counter in shared memory under it and release it; one iteration is
//!   one such pair in each process, and the throughput is pairs per second in total. Every
//!   sample checks that no increment was lost.
//!
//! (The memory a 500 MB `RawArray` costs when created moved to `benches/arrays.rs`.)

use std::hint::black_box;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use multiproc_core::{Lock, SharedBuffer};
use multiproc_fork::Process;
use multiproc_shared_array::{ProcessLock, ProcessRLock, ShmBuffer};

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended");
    let lock = ProcessLock::new().unwrap();
    g.bench_function("ProcessLock acquire+release", |b| {
        b.iter(|| {
            lock.acquire().unwrap();
            lock.release().unwrap();
        })
    });
    let rlock = ProcessRLock::new().unwrap();
    g.bench_function("ProcessRLock acquire+release", |b| {
        b.iter(|| {
            rlock.acquire().unwrap();
            rlock.release().unwrap();
        })
    });
    let m = std::sync::Mutex::new(0u64);
    g.bench_function("std Mutex lock+unlock (reference)", |b| {
        b.iter(|| *black_box(&m).lock().unwrap() += 1)
    });
    g.finish();
}

// Words of the shared control block.
/// Bumped by the parent to start a sample.
const ROUND: usize = 0;
/// The pairs each process runs in this sample (`u64::MAX`: the partner exits).
const PAIRS: usize = 1;
/// The round the partner is ready for (spinning on GO).
const READY: usize = 2;
/// The round both may start.
const GO: usize = 3;
/// The round the partner finished.
const DONE: usize = 4;
/// The counter incremented under the lock.
const COUNTER: usize = 5;

fn wait_for(word: &AtomicU64, value: u64) {
    while word.load(SeqCst) != value {
        // Yield rather than spin: the other process may need this core.
        std::thread::yield_now();
    }
}

fn pairs(lock: &ProcessLock, counter: &AtomicU64, n: u64) {
    for _ in 0..n {
        lock.acquire().unwrap();
        // A plain read-modify-write, which the lock alone keeps from losing updates.
        let v = counter.load(Relaxed);
        counter.store(v + 1, Relaxed);
        lock.release().unwrap();
    }
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("contended by 2 processes");
    g.throughput(Throughput::Elements(2));
    let lock = ProcessLock::new().unwrap();
    let mem = ShmBuffer::new(64).unwrap();
    let w = mem.as_atomic_u64s();
    let partner = Process::from_closure(|| {
        let mut round = 0;
        loop {
            round += 1;
            wait_for(&w[ROUND], round);
            let n = w[PAIRS].load(SeqCst);
            if n == u64::MAX {
                return;
            }
            w[READY].store(round, SeqCst);
            wait_for(&w[GO], round);
            pairs(&lock, &w[COUNTER], n);
            w[DONE].store(round, SeqCst);
        }
    })
    .start()
    .expect("fork");
    let mut round = 0;
    g.bench_function("ProcessLock (a pair in each process)", |b| {
        b.iter_custom(|n| {
            round += 1;
            w[COUNTER].store(0, SeqCst);
            w[PAIRS].store(n, SeqCst);
            w[ROUND].store(round, SeqCst);
            wait_for(&w[READY], round);
            let t = Instant::now();
            w[GO].store(round, SeqCst);
            pairs(&lock, &w[COUNTER], n);
            wait_for(&w[DONE], round);
            let took = t.elapsed();
            assert_eq!(
                w[COUNTER].load(SeqCst),
                2 * n,
                "lost updates under the lock"
            );
            took
        })
    });
    w[PAIRS].store(u64::MAX, SeqCst);
    w[ROUND].store(round + 1, SeqCst);
    partner
        .join_timeout(Duration::from_secs(60))
        .expect("the partner exits");
    partner.check().expect("the partner process failed");
    g.finish();
}

// Written out instead of `criterion_group!`/`criterion_main!`, whose generated function has
// no documentation (the workspace denies `missing_docs`).
fn main() {
    let mut c = Criterion::default().configure_from_args();
    uncontended(&mut c);
    contended(&mut c);
    c.final_summary();
}
