//! Per-task overhead: many trivial tasks through `map` at a given chunk size, on each
//! backend, against rayon splitting the same items into pieces of exactly that size
//! (`with_min_len` and `with_max_len`): the same chunking, without multiproc's result
//! delivery (and, for fork, without crossing a process boundary). Plus `apply_async` + `get`
//! one task at a time, and pool start-up and shutdown.

use multiproc_core::{Executor, Result};
use multiproc_fork::ForkPool;
use multiproc_threads::ThreadPool;
use rayon::prelude::*;

use crate::report::Row;
use crate::stats::Samples;

/// The trivial task.
fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

fn per_task(s: &Samples, tasks: u64) -> Option<(f64, &'static str)> {
    Some((s.median().as_secs_f64() * 1e9 / tasks as f64, "ns/task"))
}

fn row(strategy: String, samples: Samples, baseline: Option<String>, tasks: u64) -> Row {
    Row {
        workload: "overhead".into(),
        per_item: per_task(&samples, tasks),
        strategy,
        samples,
        baseline,
    }
}

fn map_rows<E: Executor>(
    name: &str,
    pool: &E,
    reps: usize,
    items: &[u64],
    chunksize: usize,
    expected: &[u64],
    baseline: &str,
) -> std::result::Result<Row, String> {
    let (samples, got) =
        Samples::measure(reps, || pool.map_chunked(inc, items.to_vec(), chunksize));
    if got.map_err(|e| e.to_string())? != expected {
        return Err(format!("overhead: {name} gave a wrong result"));
    }
    Ok(row(
        format!("{name} chunksize={chunksize}"),
        samples,
        Some(baseline.into()),
        items.len() as u64,
    ))
}

fn apply_async_row<E: Executor>(
    name: &str,
    pool: &E,
    reps: usize,
    tasks: u64,
) -> std::result::Result<Row, String> {
    let (samples, got) = Samples::measure(reps, || -> Result<u64> {
        let pending = (0..tasks)
            .map(|i| pool.apply_async(inc, i))
            .collect::<Result<Vec<_>>>()?;
        pending
            .into_iter()
            .try_fold(0u64, |acc, r| Ok(acc.wrapping_add(r.get()?)))
    });
    let expected = (0..tasks).map(inc).fold(0, u64::wrapping_add);
    if got.map_err(|e| e.to_string())? != expected {
        return Err(format!("overhead: {name} apply_async gave a wrong result"));
    }
    Ok(row(format!("{name} apply_async+get"), samples, None, tasks))
}

/// Measures `tasks` trivial tasks at each chunk size in `chunksizes`, on rayon, threads and
/// fork, and `apply_async` on both backends.
pub fn run(
    workers: usize,
    reps: usize,
    tasks: u64,
    chunksizes: &[usize],
) -> std::result::Result<Vec<Row>, String> {
    let expected: Vec<u64> = (0..tasks).map(inc).collect();
    let items: Vec<u64> = (0..tasks).collect();
    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()
        .map_err(|e| e.to_string())?;
    let threads = ThreadPool::new(workers).map_err(|e| e.to_string())?;
    let fork = ForkPool::new(workers).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for &chunksize in chunksizes {
        if chunksize == 0 {
            return Err("--chunksize must be at least 1".into());
        }
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
        let rayon_name = format!("rayon len={chunksize}");
        rows.push(row(rayon_name.clone(), rayon, None, tasks));
        rows.push(map_rows(
            "threads",
            &threads,
            reps,
            &items,
            chunksize,
            &expected,
            &rayon_name,
        )?);
        rows.push(map_rows(
            "fork",
            &fork,
            reps,
            &items,
            chunksize,
            &expected,
            &rayon_name,
        )?);
    }
    let apply_tasks = tasks.min(20_000);
    rows.push(apply_async_row("threads", &threads, reps, apply_tasks)?);
    rows.push(apply_async_row("fork", &fork, reps, apply_tasks)?);
    Ok(rows)
}

/// Pool start-up and shutdown: create a pool of `workers`, run one task (so every worker is
/// really up), and drop it (close + join).
pub fn startup(workers: usize, reps: usize) -> std::result::Result<Vec<Row>, String> {
    fn once<E: Executor>(make: impl Fn(usize) -> Result<E>, workers: usize) -> Result<u64> {
        let pool = make(workers)?;
        pool.map_chunked(inc, vec![1; workers], 1)
            .map(|v| v.iter().sum())
    }
    let (threads, got) = Samples::measure(reps, || once(ThreadPool::new, workers));
    got.map_err(|e| e.to_string())?;
    let (fork, got) = Samples::measure(reps, || once(ForkPool::new, workers));
    got.map_err(|e| e.to_string())?;
    // What each forked worker adds to the process tree's memory (sum of PSS), with a pool
    // that has run tasks.
    let before = multiproc_core::self_tree_pss().map_err(|e| e.to_string())?;
    let pool = ForkPool::new(workers).map_err(|e| e.to_string())?;
    pool.map_chunked(inc, (0..1000).collect::<Vec<u64>>(), 1)
        .map_err(|e| e.to_string())?;
    let after = multiproc_core::self_tree_pss().map_err(|e| e.to_string())?;
    drop(pool);
    println!(
        "fork: each worker adds {} KiB to the process tree's PSS ({} workers, after 1000 tasks)",
        after.saturating_sub(before) / 1024 / workers as u64,
        workers
    );
    let make = |strategy: &str, samples| Row {
        workload: "startup".into(),
        strategy: strategy.into(),
        samples,
        baseline: None,
        per_item: None,
    };
    Ok(vec![
        make("threads create+task+drop", threads),
        make("fork create+task+drop", fork),
    ])
}
