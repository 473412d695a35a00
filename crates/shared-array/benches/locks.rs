//! Timing of the process-shared primitives (a plain timing binary, not criterion):
//!
//! ```text
//! cargo bench -p multiproc-shared-array --bench locks
//! ```
//!
//! - uncontended ProcessLock / ProcessRLock acquire+release, ns per pair (std Mutex beside);
//! - ProcessLock contended between 2 processes, acquire/release pairs per second in total;
//! - resident memory right after creating a 500 MB RawArray.

use std::hint::black_box;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Instant;

use multiproc_core::{Lock, SharedBuffer};
use multiproc_shared_array::{ProcessLock, ProcessRLock, RawArray, ShmBuffer};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

fn best_ns_per_op(iters: u64, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn uncontended() {
    const N: u64 = 5_000_000;
    let lock = ProcessLock::new().unwrap();
    let ns = best_ns_per_op(N, || {
        lock.acquire().unwrap();
        lock.release().unwrap();
    });
    println!("uncontended ProcessLock acquire+release: {ns:.1} ns");
    let rlock = ProcessRLock::new().unwrap();
    let ns = best_ns_per_op(N, || {
        rlock.acquire().unwrap();
        rlock.release().unwrap();
    });
    println!("uncontended ProcessRLock acquire+release: {ns:.1} ns");
    let m = std::sync::Mutex::new(0u64);
    let ns = best_ns_per_op(N, || {
        *black_box(&m).lock().unwrap() += 1;
    });
    println!("uncontended std::sync::Mutex lock+unlock (reference): {ns:.1} ns");
}

fn contended() {
    const N: u64 = 2_000_000;
    let lock = ProcessLock::new().unwrap();
    // word 0: processes ready, word 1: go, word 2: counter protected by the lock.
    let mem = ShmBuffer::new(64).unwrap();
    let w = mem.as_atomic_u64s();
    let run = |w: &[std::sync::atomic::AtomicU64]| {
        w[0].fetch_add(1, SeqCst);
        while w[1].load(SeqCst) == 0 {
            std::hint::spin_loop();
        }
        for _ in 0..N {
            lock.acquire().unwrap();
            let v = w[2].load(std::sync::atomic::Ordering::Relaxed);
            w[2].store(v + 1, std::sync::atomic::Ordering::Relaxed);
            lock.release().unwrap();
        }
    };
    // SAFETY: this benchmark is single-threaded when it forks; the child only uses the lock
    // and atomics in shared memory, then `_exit`s.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            run(w);
            // SAFETY: leave without running the parent's destructors or atexit handlers.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            while w[0].load(SeqCst) != 1 {
                std::hint::spin_loop();
            }
            let t = Instant::now();
            w[1].store(1, SeqCst);
            run(w);
            waitpid(child, None).unwrap();
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(w[2].load(SeqCst), 2 * N, "lost updates under the lock");
            println!(
                "contended ProcessLock, 2 processes x {N} pairs: {:.2} M pairs/s total ({:.0} ns/pair)",
                2.0 * N as f64 / secs / 1e6,
                secs * 1e9 / (2 * N) as f64
            );
        }
    }
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn rss_after_create() {
    let (rss0, shm0) = (status_kib("VmRSS:"), status_kib("RssShmem:"));
    let t = Instant::now();
    let a = RawArray::<u8>::zeros(500_000_000).unwrap();
    let took = t.elapsed();
    let (rss1, shm1) = (status_kib("VmRSS:"), status_kib("RssShmem:"));
    println!(
        "create 500 MB RawArray in {took:?}: VmRSS {rss0} -> {rss1} KiB, RssShmem {shm0} -> {shm1} KiB"
    );
    drop(black_box(a));
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run quickly.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    uncontended();
    contended();
    rss_after_create();
}
