//! Run with: `cargo run --release --features fork --example fork_readonly_sum [-- --fast]`
//!
//! Tutorial: "Read-only sharing" — 500 MB of data made before the pool, summed in chunks by
//! four forked workers without being copied.
//!
//! The data lives in a `static` ([`Inherited`]) that is set *before* the pool is created: the
//! workers are forks of this process, so they inherit its memory — copy-on-write, and since
//! nobody writes, never copied. Watch the memory lines while the jobs run: the system's used
//! memory stays about where it was after creating the data, and so does the footprint of this
//! program and its workers (the sum of their PSS, which splits each shared page between the
//! processes that map it). Each job sleeps for 1 s (`--fast` or `MULTIPROC_FAST=1` skips the
//! sleeps), so 13 jobs on 4 workers take about 4 s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use multiproc::fork as backend;
use multiproc::prelude::*;
use multiproc::Inherited;
use rand::Rng;

/// The tutorial's module-level `data`: set before the pool, read by every job.
static DATA: Inherited<Vec<f64>> = Inherited::new("DATA");

/// Whether jobs skip their 1 s sleep; set before the pool too, so workers inherit it.
static FAST: AtomicBool = AtomicBool::new(false);

/// The tutorial's `memusage(msg)`: the system's used / total memory as `free --mega` shows
/// it, and what this program and its workers occupy (their total PSS).
fn memusage(msg: &str) {
    let system = multiproc::core::memusage().map_or_else(|e| e.to_string(), |m| m.to_string());
    let tree = multiproc::core::self_tree_pss()
        .map_or_else(|e| e.to_string(), |b| format!("{} MB", b / 1_000_000));
    println!("Memory usage {msg}: {system} (this program and its workers: {tree})");
}

/// Each job processes `nelems` values, starting from the specified offset.
fn process_chunk((offset, nelems): (usize, usize)) -> f64 {
    if !FAST.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
    }
    let data = DATA.get().expect("DATA is set before the pool is created");
    let end = (offset + nelems).min(data.len()); // numpy clips a slice at the end
    data[offset..end].iter().sum()
}

fn main() -> multiproc::Result<()> {
    let fast = std::env::args().any(|a| a == "--fast")
        || std::env::var("MULTIPROC_FAST").is_ok_and(|v| v == "1");
    FAST.store(fast, Ordering::Relaxed);

    memusage("before creating data");

    // Allocate 500MB of data.
    let mut rng = rand::thread_rng();
    let data: Vec<f64> = (0..500 * (1_048_576 / 8)).map(|_| rng.gen()).collect();

    // Assign nelems values to each job (hard-coded so we need 12 jobs - and a 13th for the
    // few values left over - to complete the task).
    let nelems = data.len() / 12;
    let len = data.len();
    DATA.set(data)?;

    memusage("after creating data");

    // Generate an offset into the data for each job: process_chunk is called for each one.
    let offsets: Vec<(usize, usize)> = (0..len).step_by(nelems).map(|o| (o, nelems)).collect();

    // Create our worker process pool: *after* the data, so that the workers inherit it.
    let total: f64 = {
        let pool = backend::Pool::new(4)?;
        let results = pool.map_async(process_chunk, offsets)?;

        // Wait for all of the jobs to finish.
        let mut elapsed = 0;
        while !results.ready() {
            memusage(&format!("after {elapsed} seconds"));
            results.wait_timeout(Duration::from_secs(1));
            elapsed += 1;
        }
        results.get()?.iter().sum()
    };

    let data = DATA.get()?;
    println!("Total sum:    {total}");
    println!("Sanity check: {}", data.iter().sum::<f64>());
    Ok(())
}
