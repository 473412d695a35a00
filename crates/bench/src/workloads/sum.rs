//! The tutorial's read-only sharing workload: the sum of a large array, in chunks.
//!
//! 500 MB of f64, `nelems = len / 12`, one task per offset in `range(0, len, nelems)` — 13
//! tasks, the last one short, exactly as in the tutorial. The data lives in a `static`
//! set once before any pool exists: the Rust form of the tutorial's "module-level data,
//! created before the Pool", and what a task (a plain `fn`) can reach on every backend.

use std::sync::OnceLock;

use multiproc_core::Executor;
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

static DATA: OnceLock<Data> = OnceLock::new();

fn data() -> &'static Data {
    DATA.get()
        .expect("the data is created before any task runs")
}

/// The task: the tutorial's `process_chunk(offset)`, without its sleep.
fn process_chunk(offset: usize) -> f64 {
    let d = data();
    chunk_sum(&d.values, offset, d.nelems)
}

fn chunk_sum(values: &[f64], offset: usize, nelems: usize) -> f64 {
    let end = (offset + nelems).min(values.len());
    values[offset..end].iter().sum()
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
    DATA.get_or_init(|| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
        let values: Vec<f64> = (0..len).map(|_| rng.gen::<f64>()).collect();
        Data {
            values,
            nelems: len / chunks,
        }
    });
    Ok(())
}

/// Measures the chunked sum: serial, plain rayon, and the threads backend through the
/// `Executor` trait (the portable form) and through its closure-taking `map_fn`.
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
