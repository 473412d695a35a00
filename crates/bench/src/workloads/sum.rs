//! The tutorial's read-only sharing workload: the sum of a large array, in chunks.
//!
//! 500 MB of f64, `nelems = len / 12`, one task per offset in `range(0, len, nelems)` — 13
//! tasks, the last one short, exactly as in the tutorial. The data lives in a `static`
//! set once before any pool exists: the Rust form of the tutorial's "module-level data,
//! created before the Pool", and what a task (a plain `fn`) can reach on every backend.

use multiproc_core::{Executor, Inherited};
use multiproc_fork::ForkPool;
use multiproc_threads::ThreadPool;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::report::Row;
use crate::stats::Samples;

/// The data and chunk length, set once.
struct Data {
    values: Vec<f64>,
    nelems: usize,
}

static DATA: Inherited<Data> = Inherited::new("DATA");

fn data() -> &'static Data {
    DATA.get().expect("the data is created before any pool")
}

/// The task: the tutorial's `process_chunk(offset)`, without its sleep.
fn process_chunk(offset: usize) -> f64 {
    let d = data();
    chunk_sum(&d.values, offset, d.nelems)
}

/// Sums `values[offset..offset + nelems]` with eight independent accumulators, so the adds
/// vectorise and the loop runs at memory speed, as numpy's pairwise SIMD sum does (a plain
/// `iter().sum()` is one long dependency chain, about 1 ns per element here). Every strategy
/// uses this function, so their results stay bit-identical.
fn chunk_sum(values: &[f64], offset: usize, nelems: usize) -> f64 {
    let end = (offset + nelems).min(values.len());
    let chunk = &values[offset..end];
    let mut lanes = [0.0f64; 8];
    let mut blocks = chunk.chunks_exact(8);
    for block in &mut blocks {
        for (lane, v) in lanes.iter_mut().zip(block) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f64>() + blocks.remainder().iter().sum::<f64>()
}

/// Creates `megabytes` MiB of random f64 to be split into `chunks` (the tutorial: 500, 12).
/// Only the first call allocates.
pub fn prepare(megabytes: usize, chunks: usize) -> Result<(), String> {
    if chunks == 0 {
        return Err("--chunks must be at least 1".into());
    }
    let len = megabytes
        .checked_mul(1_048_576 / 8)
        .ok_or_else(|| format!("--size-mb {megabytes} is too large"))?;
    if len < chunks {
        return Err(format!(
            "--size-mb {megabytes} is too small for {chunks} chunks"
        ));
    }
    if DATA.is_set() {
        return Ok(());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
    let mut values = with_hugepages(len);
    values.extend((0..len).map(|_| rng.gen::<f64>()));
    DATA.set(Data {
        values,
        nelems: len / chunks,
    })
    .map_err(|e| e.to_string())
}

/// An empty vector with room for `len` values whose memory is advised to use transparent
/// huge pages, as numpy does for large arrays. It matters for fork: the kernel copies one
/// page-table entry per page into each child, 128 000 of them for 500 MB of 4 KiB pages
/// (about 5 ms per fork here) against 250 for 2 MiB pages.
fn with_hugepages(len: usize) -> Vec<f64> {
    const HUGE: usize = 2 << 20;
    let v: Vec<f64> = Vec::with_capacity(len);
    let start = v.as_ptr() as usize;
    let first = start.next_multiple_of(HUGE);
    let end = (start + len * std::mem::size_of::<f64>()) / HUGE * HUGE;
    if end > first {
        // SAFETY: [first, end) lies inside the vector's allocation and is page-aligned;
        // MADV_HUGEPAGE only changes how the kernel backs the range, never its contents, and
        // the allocation outlives the call. A failure (THP unavailable) changes nothing.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
    v
}

/// Measures the chunked sum: serial, plain rayon, the threads backend through the `Executor`
/// trait (the portable form) and through its closure-taking `map_fn`, and the fork backend
/// reading the data by inheritance.
pub fn run(workers: usize, reps: usize) -> Result<Vec<Row>, String> {
    let d = data();
    let offsets: Vec<usize> = (0..d.values.len()).step_by(d.nelems).collect();
    let (serial, expected) = Samples::measure(reps, || {
        offsets.iter().map(|&o| process_chunk(o)).sum::<f64>()
    });

    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .map_err(|e| e.to_string())?;
    let (rayon, got) = Samples::measure(reps, || {
        rayon_pool.install(|| {
            offsets
                .par_iter()
                .map(|&o| process_chunk(o))
                .collect::<Vec<f64>>()
                .iter()
                .sum::<f64>()
        })
    });
    check("rayon", Ok(got), expected)?;

    let pool = ThreadPool::new(workers).map_err(|e| e.to_string())?;
    let (threads, got) = Samples::measure(reps, || {
        pool.map_chunked(process_chunk, offsets.clone(), 1)
            .map(|v| v.iter().sum::<f64>())
    });
    check("threads (Executor)", got, expected)?;

    let (threads_fn, got) = Samples::measure(reps, || {
        pool.map_fn(|o| chunk_sum(&d.values, o, d.nelems), offsets.clone(), 1)
            .map(|v| v.iter().sum::<f64>())
    });
    check("threads (map_fn)", got, expected)?;

    // Fork inheritance: the workers see DATA because it was set before they were forked.
    // Python's figure is for create + map + close, so measure that, and the map alone.
    let (fork_whole, got) = Samples::measure(reps, || {
        let pool = ForkPool::new(workers)?;
        let sums = pool.map_chunked(process_chunk, offsets.clone(), 1)?;
        pool.close();
        pool.join()?;
        Ok::<f64, multiproc_core::Error>(sums.iter().sum::<f64>())
    });
    check("fork (create+map+close)", got, expected)?;
    let pool = ForkPool::new(workers).map_err(|e| e.to_string())?;
    let (fork_map, got) = Samples::measure(reps, || {
        pool.map_chunked(process_chunk, offsets.clone(), 1)
            .map(|v| v.iter().sum::<f64>())
    });
    check("fork (map)", got, expected)?;
    drop(pool);

    let row = |strategy: &str, samples, baseline: Option<&str>| Row {
        workload: "sum".into(),
        strategy: strategy.into(),
        samples,
        baseline: baseline.map(Into::into),
        per_item: None,
    };
    Ok(vec![
        row("serial", serial, None),
        row("rayon", rayon, Some("serial")),
        row("threads (Executor)", threads, Some("rayon")),
        row("threads (map_fn)", threads_fn, Some("rayon")),
        row("fork inherited (map)", fork_map, Some("rayon")),
        row(
            "fork inherited (create+map+close)",
            fork_whole,
            Some("rayon"),
        ),
    ])
}

/// A wrong result is a failure, not a number. Every strategy sums the same chunks and then
/// adds the chunk sums in order, so the totals must be bit-identical.
fn check(strategy: &str, got: multiproc_core::Result<f64>, expected: f64) -> Result<(), String> {
    let got = got.map_err(|e| format!("sum: {strategy} failed: {e}"))?;
    if got.to_bits() == expected.to_bits() {
        Ok(())
    } else {
        Err(format!(
            "sum: {strategy} computed {got}, serial computed {expected}"
        ))
    }
}
