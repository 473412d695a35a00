//! What the soundness rules cost (a plain timing binary, not criterion):
//!
//! ```text
//! cargo bench -p multiproc-shared-array --bench arrays
//! ```
//!
//! - atomic element copies (`RawArray::read_range` / `write_range`) against `memcpy`, on warm
//!   pages, 100 MB of f64;
//! - summing 500 MB of f64: a plain slice of a `FrozenArray` against atomic copies through a
//!   buffer;
//! - `fork` + exit + wait of a child with 0, 100 and 1000 live `LocalArray`s (the fork handler
//!   swaps each one's mapping in the child);
//! - creating, sharing and freezing a `LocalArray`; locking a 16-element `Array` (its guard
//!   copies in and out).

use std::hint::black_box;
use std::time::{Duration, Instant};

use multiproc_core::Lock;
use multiproc_shared_array::{Array, LocalArray, ProcessLock, RawArray};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

/// The best of `reps` timings of `f`.
fn best(reps: usize, mut f: impl FnMut()) -> Duration {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .expect("at least one repetition")
}

fn gbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn copies() {
    let n = 100_000_000 / 8;
    let src: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let mut dst = vec![0.0f64; n];
    let raw = RawArray::<f64>::zeros(n).unwrap();
    raw.write_range(0, &src).unwrap(); // warm the shared pages
    let bytes = n * 8;
    let t = best(5, || dst.copy_from_slice(black_box(&src)));
    println!(
        "memcpy 100 MB (warm):                 {:6.2} GB/s",
        gbps(bytes, t)
    );
    let t = best(5, || raw.write_range(0, black_box(&src)).unwrap());
    println!(
        "RawArray::write_range 100 MB (warm):  {:6.2} GB/s",
        gbps(bytes, t)
    );
    let t = best(5, || raw.read_range(0, black_box(&mut dst)).unwrap());
    println!(
        "RawArray::read_range 100 MB (warm):   {:6.2} GB/s",
        gbps(bytes, t)
    );
    let t = best(3, || drop(black_box(raw.to_vec())));
    println!(
        "RawArray::to_vec 100 MB (fresh Vec):  {:6.2} GB/s",
        gbps(bytes, t)
    );
}

/// Four independent accumulators, so that the compiler may vectorise the sum.
fn sum(values: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let chunks = values.chunks_exact(4);
    let rest: f64 = chunks.remainder().iter().sum();
    for c in chunks {
        for k in 0..4 {
            lanes[k] += c[k];
        }
    }
    lanes.iter().sum::<f64>() + rest
}

fn sums() {
    let n = 500_000_000 / 8;
    let mut local = LocalArray::<f64>::zeros(n).unwrap();
    for (i, x) in local.iter_mut().enumerate() {
        *x = (i % 1000) as f64;
    }
    let raw = RawArray::from_slice(&local).unwrap();
    let frozen = local.freeze().unwrap();
    let bytes = n * 8;
    let mut s = 0.0;
    let t = best(5, || s = sum(black_box(&frozen)));
    println!(
        "sum 500 MB, FrozenArray slice:          {:6.2} GB/s ({:.1} ms)",
        gbps(bytes, t),
        t.as_secs_f64() * 1e3
    );
    let mut buf = vec![0.0f64; 1 << 15];
    let mut s2 = 0.0;
    let t = best(5, || {
        s2 = 0.0;
        let mut at = 0;
        while at < n {
            let k = buf.len().min(n - at);
            raw.read_range(at, &mut buf[..k]).unwrap();
            s2 += sum(&buf[..k]);
            at += k;
        }
    });
    println!(
        "sum 500 MB, RawArray read_range blocks: {:6.2} GB/s ({:.1} ms)",
        gbps(bytes, t),
        t.as_secs_f64() * 1e3
    );
    assert_eq!(s, s2);
}

fn fork_wait() -> Duration {
    best(20, || {
        // SAFETY: this benchmark is single-threaded when it forks; the child only `_exit`s.
        match unsafe { fork() }.unwrap() {
            // SAFETY: leave at once, without running anything of the parent's.
            ForkResult::Child => unsafe { libc::_exit(0) },
            ForkResult::Parent { child } => {
                waitpid(child, None).unwrap();
            }
        }
    })
}

fn forks() {
    println!(
        "fork + _exit + waitpid, 0 LocalArrays:    {:?}",
        fork_wait()
    );
    let mut live: Vec<LocalArray<u8>> = Vec::new();
    for target in [100, 1000] {
        while live.len() < target {
            live.push(LocalArray::zeros(4096).unwrap());
        }
        println!(
            "fork + _exit + waitpid, {target:4} LocalArrays: {:?}",
            fork_wait()
        );
    }
}

fn lifecycle() {
    let t = best(200, || {
        drop(black_box(RawArray::<u8>::zeros(1 << 20).unwrap()))
    });
    println!("RawArray::zeros(1 MiB) + drop:    {t:?}");
    let t = best(200, || {
        drop(black_box(LocalArray::<u8>::zeros(1 << 20).unwrap()))
    });
    println!("LocalArray::zeros(1 MiB) + drop:  {t:?}");
    let t = best(200, || {
        drop(black_box(LocalArray::<u8>::zeros(1 << 20).unwrap().share()))
    });
    println!("LocalArray::zeros + share + drop: {t:?}");
    let t = best(200, || {
        drop(black_box(
            LocalArray::<u8>::zeros(1 << 20).unwrap().freeze().unwrap(),
        ))
    });
    println!("LocalArray::zeros + freeze + drop: {t:?}");
    let a = Array::<f64>::zeros(16).unwrap();
    let n = 1_000_000u32;
    let t = best(3, || {
        for _ in 0..n {
            black_box(a.lock().unwrap())[3] += 1.0;
        }
    });
    println!(
        "Array<f64; 16> lock + modify + unlock: {:.1} ns",
        t.as_nanos() as f64 / f64::from(n)
    );
    let t = best(3, || {
        for i in 0..n {
            a.set(3, f64::from(i)).unwrap();
        }
    });
    println!(
        "Array<f64; 16> set(i):                 {:.1} ns",
        t.as_nanos() as f64 / f64::from(n)
    );
    let lock = ProcessLock::new().unwrap();
    let t = best(3, || {
        for _ in 0..n {
            lock.acquire().unwrap();
            lock.release().unwrap();
        }
    });
    println!(
        "(ProcessLock acquire + release:        {:.1} ns)",
        t.as_nanos() as f64 / f64::from(n)
    );
}

fn main() {
    // `cargo test --benches` passes --test (or --list): return at once.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    copies();
    sums();
    forks();
    lifecycle();
}
