//! Per-task overhead: many trivial tasks through `map` at a given chunk size, against
//! rayon splitting the same items into pieces of exactly that size (`with_min_len` and
//! `with_max_len`): the same chunking, without multiproc's per-chunk result delivery.

use multiproc_core::Executor;
use multiproc_threads::ThreadPool;
use rayon::prelude::*;

use crate::report::Row;
use crate::stats::Samples;

/// The trivial task.
fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// Measures `tasks` trivial tasks at each chunk size in `chunksizes`.
pub fn run(
    workers: usize,
    reps: usize,
    tasks: u64,
    chunksizes: &[usize],
) -> Result<Vec<Row>, String> {
    let expected: Vec<u64> = (0..tasks).map(inc).collect();
    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .map_err(|e| e.to_string())?;
    let pool = ThreadPool::new(workers).map_err(|e| e.to_string())?;
    let per_task = |s: &Samples| Some((s.median().as_secs_f64() * 1e9 / tasks as f64, "ns/task"));
    let mut rows = Vec::new();
    for &chunksize in chunksizes {
        if chunksize == 0 {
            return Err("--chunksize must be at least 1".into());
        }
        let items: Vec<u64> = (0..tasks).collect();
        let (rayon, got) = Samples::measure(reps, || {
            rayon_pool.install(|| {
                items
                    .clone()
                    .into_par_iter()
                    .with_min_len(chunksize)
                    .with_max_len(chunksize)
                    .map(inc)
                    .collect::<Vec<u64>>()
            })
        });
        if got != expected {
            return Err("overhead: rayon gave a wrong result".into());
        }
        let (threads, got) =
            Samples::measure(reps, || pool.map_chunked(inc, items.clone(), chunksize));
        if got.map_err(|e| e.to_string())? != expected {
            return Err("overhead: threads gave a wrong result".into());
        }
        let rayon_name = format!("rayon len={chunksize}");
        rows.push(Row {
            workload: "overhead".into(),
            strategy: rayon_name.clone(),
            per_item: per_task(&rayon),
            samples: rayon,
            baseline: None,
        });
        rows.push(Row {
            workload: "overhead".into(),
            strategy: format!("threads chunksize={chunksize}"),
            per_item: per_task(&threads),
            samples: threads,
            baseline: Some(rayon_name),
        });
    }
    Ok(rows)
}
