//! What the shared arrays and their soundness rules cost, with criterion:
//!
//! ```text
//! cargo bench -p multiproc-shared-array --bench arrays
//! cargo bench -p multiproc-shared-array --bench arrays -- --quick      # under a minute
//! ```
//!
//! - `copy 100 MB/*`: atomic element copies (`RawArray::read_range` / `write_range`) against
//!   `memcpy`, on warm pages, 100 MB of f64; `to_vec` into a fresh `Vec`;
//! - `element by element/*`: the tutorial's voxel loop, `store(i, load(i)²)` over 1 Mi f64
//!   of a `RawArray` (one bounds check and one atomic access each), against the same loop on a
//!   slice;
//! - `sum 500 MB/*`: summing 500 MB of f64, a plain slice of a `FrozenArray` against atomic
//!   copies through a buffer;
//! - `fork+exit+wait/*`: a child that exits at once, with 0, 100 and 1000 live `LocalArray`s
//!   (the fork handler swaps each one's mapping in the child);
//! - `lifecycle/*`: creating (and dropping) a 1 MiB `RawArray` or `LocalArray`, sharing and
//!   freezing a `LocalArray`, creating a 500 MB `RawArray`; locking a 16-element `Array` (its
//!   guard copies in and out) and `set` on it, with `ProcessLock` for reference.
//!
//! Before the benchmarks, one line (not a criterion timing: a memory figure) says how much
//! resident memory creating a 500 MB `RawArray` cost: creating touches no page, so about
//! none.

use std::cell::RefCell;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use multiproc_core::Lock;
use multiproc_shared_array::{Array, FrozenArray, LocalArray, ProcessLock, RawArray};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

/// Resident memory of this process before and after creating a 500 MB `RawArray`, printed
/// once.
fn memory_of_a_new_500_mb_array() {
    let rss = || multiproc_core::rss_bytes(std::process::id()).expect("VmRSS") / 1024;
    let before = rss();
    let a = RawArray::<u8>::zeros(500_000_000).unwrap();
    let after = rss();
    println!(
        "memory: creating a 500 MB RawArray took VmRSS from {before} KiB to {after} KiB \
         (+{} KiB)",
        after.saturating_sub(before)
    );
    drop(black_box(a));
}

/// 100 MB of f64 in a `Vec`, another `Vec` and a `RawArray` (pages warm).
struct Copies {
    src: Vec<f64>,
    dst: Vec<f64>,
    raw: RawArray<f64>,
}

const COPY_LEN: usize = 100_000_000 / 8;

fn copies(c: &mut Criterion) {
    let mut g = c.benchmark_group("copy 100 MB");
    g.sample_size(10)
        .throughput(Throughput::Bytes(COPY_LEN as u64 * 8));
    // Made by the first benchmark that runs (none, if a filter excludes them all).
    let data = RefCell::new(None::<Copies>);
    let with = |f: &mut dyn FnMut(&mut Copies)| {
        let mut data = data.borrow_mut();
        f(data.get_or_insert_with(|| {
            let src: Vec<f64> = (0..COPY_LEN).map(|i| i as f64).collect();
            let raw = RawArray::<f64>::zeros(COPY_LEN).unwrap();
            raw.write_range(0, &src).unwrap(); // warm the shared pages
            Copies {
                dst: vec![0.0f64; COPY_LEN],
                src,
                raw,
            }
        }))
    };
    g.bench_function("memcpy (warm)", |b| {
        with(&mut |d| b.iter(|| d.dst.copy_from_slice(black_box(&d.src))))
    });
    g.bench_function("RawArray::write_range (warm)", |b| {
        with(&mut |d| b.iter(|| d.raw.write_range(0, black_box(&d.src)).unwrap()))
    });
    g.bench_function("RawArray::read_range (warm)", |b| {
        with(&mut |d| b.iter(|| d.raw.read_range(0, black_box(&mut d.dst)).unwrap()))
    });
    g.bench_function("RawArray::to_vec (fresh Vec)", |b| {
        with(&mut |d| b.iter(|| drop(black_box(d.raw.to_vec()))))
    });
    g.finish();
}

/// Elements of the element-by-element loop.
const ELEMENTS: usize = 1 << 20;

fn elements(c: &mut Criterion) {
    let mut g = c.benchmark_group("element by element");
    g.throughput(Throughput::Elements(ELEMENTS as u64));
    let src: Vec<f64> = (0..ELEMENTS).map(|i| i as f64).collect();
    let (input, output) = (
        RawArray::from_slice(&src).unwrap(),
        RawArray::<f64>::zeros(ELEMENTS).unwrap(),
    );
    g.bench_function("RawArray load + store", |b| {
        b.iter(|| {
            for i in 0..ELEMENTS {
                let v = input.load(black_box(i)).unwrap();
                output.store(i, v * v).unwrap();
            }
        })
    });
    let mut dst = vec![0.0f64; ELEMENTS];
    g.bench_function("slice index (reference)", |b| {
        b.iter(|| {
            for i in 0..ELEMENTS {
                let v = src[black_box(i)];
                dst[i] = v * v;
            }
        })
    });
    g.finish();
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

/// 500 MB of f64 as a `FrozenArray` and as a `RawArray`, and the sum of either.
struct Sums {
    frozen: FrozenArray<f64>,
    raw: RawArray<f64>,
    expected: f64,
    buf: Vec<f64>,
}

const SUM_LEN: usize = 500_000_000 / 8;

fn sums(c: &mut Criterion) {
    let mut g = c.benchmark_group("sum 500 MB");
    g.sample_size(10)
        .throughput(Throughput::Bytes(SUM_LEN as u64 * 8));
    // Made by the first benchmark that runs (none, if a filter excludes them all).
    let data = RefCell::new(None::<Sums>);
    let with = |f: &mut dyn FnMut(&mut Sums)| {
        let mut data = data.borrow_mut();
        f(data.get_or_insert_with(|| {
            let mut local = LocalArray::<f64>::zeros(SUM_LEN).unwrap();
            for (i, x) in local.iter_mut().enumerate() {
                *x = (i % 1000) as f64;
            }
            let raw = RawArray::from_slice(&local).unwrap();
            let frozen = local.freeze().unwrap();
            Sums {
                expected: sum(&frozen),
                frozen,
                raw,
                buf: vec![0.0f64; 1 << 15],
            }
        }))
    };
    g.bench_function("FrozenArray slice", |b| {
        with(&mut |d| b.iter(|| sum(black_box(&d.frozen))))
    });
    g.bench_function("RawArray read_range blocks of 256 KiB", |b| {
        with(&mut |d| {
            b.iter(|| {
                let mut s = 0.0;
                let mut at = 0;
                while at < SUM_LEN {
                    let k = d.buf.len().min(SUM_LEN - at);
                    d.raw.read_range(at, &mut d.buf[..k]).unwrap();
                    s += sum(&d.buf[..k]);
                    at += k;
                }
                assert_eq!(s, d.expected);
                s
            })
        })
    });
    g.finish();
}

fn fork_wait() {
    // SAFETY: the bench process has one thread when it forks (criterion without its rayon
    // feature measures on the calling thread), and the child only `_exit`s.
    match unsafe { fork() }.unwrap() {
        // Leave at once, without running anything of the parent's.
        ForkResult::Child => multiproc_sys::exit::exit_now(0),
        ForkResult::Parent { child } => {
            waitpid(child, None).unwrap();
        }
    }
}

fn forks(c: &mut Criterion) {
    let mut g = c.benchmark_group("fork+exit+wait");
    g.sample_size(20);
    let mut live: Vec<LocalArray<u8>> = Vec::new();
    for count in [0, 100, 1000] {
        while live.len() < count {
            live.push(LocalArray::zeros(4096).unwrap());
        }
        g.bench_with_input(
            BenchmarkId::new("live LocalArrays", count),
            &count,
            |b, _| b.iter(fork_wait),
        );
    }
    g.finish();
}

fn lifecycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("lifecycle");
    const MIB: usize = 1 << 20;
    g.bench_function("RawArray::zeros(1 MiB) + drop", |b| {
        b.iter(|| drop(black_box(RawArray::<u8>::zeros(MIB).unwrap())))
    });
    g.bench_function("LocalArray::zeros(1 MiB) + drop", |b| {
        b.iter(|| drop(black_box(LocalArray::<u8>::zeros(MIB).unwrap())))
    });
    g.bench_function("LocalArray::zeros(1 MiB) + share + drop", |b| {
        b.iter(|| drop(black_box(LocalArray::<u8>::zeros(MIB).unwrap().share())))
    });
    g.bench_function("LocalArray::zeros(1 MiB) + freeze + drop", |b| {
        b.iter(|| {
            drop(black_box(
                LocalArray::<u8>::zeros(MIB).unwrap().freeze().unwrap(),
            ))
        })
    });
    g.bench_function("RawArray::zeros(500 MB) + drop", |b| {
        b.iter(|| drop(black_box(RawArray::<u8>::zeros(500_000_000).unwrap())))
    });
    let a = Array::<f64>::zeros(16).unwrap();
    g.bench_function("Array<f64> of 16: lock + modify + unlock", |b| {
        b.iter(|| black_box(a.lock().unwrap())[3] += 1.0)
    });
    let mut i = 0.0;
    g.bench_function("Array<f64> of 16: set", |b| {
        b.iter(|| {
            i += 1.0;
            a.set(3, black_box(i)).unwrap()
        })
    });
    let lock = ProcessLock::new().unwrap();
    g.bench_function("ProcessLock acquire + release (reference)", |b| {
        b.iter(|| {
            lock.acquire().unwrap();
            lock.release().unwrap();
        })
    });
    g.finish();
}

// Written out instead of `criterion_group!`/`criterion_main!`, whose generated function has
// no documentation (the workspace denies `missing_docs`), and to print the memory figure
// first.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    if !std::env::args().any(|a| a == "--list") {
        memory_of_a_new_500_mb_array();
    }
    copies(&mut c);
    elements(&mut c);
    sums(&mut c);
    forks(&mut c);
    lifecycle(&mut c);
    c.final_summary();
}
