//! Run with: `cargo run --release --features fork --example fork_copy_on_write [-- --fast]`
//!
//! Tutorial: read-only sharing, modified so that each job *writes* its chunk of the data
//! (`data[offset:offset + nelems] += 1`) — copy-on-write in action.
//!
//! The workers are forks of this process. After a fork, parent and child share every page of
//! memory until one of them writes to a page: then the kernel gives the writer its own copy of
//! that page. So when a job adds 1 to its chunk of the inherited 500 MB, the kernel copies the
//! chunk into that worker, and:
//!
//! - memory use grows while the jobs run, up to twice the data (watch the memory lines);
//! - the changes land in the workers' copies: the sums they return include the `+= 1`, but the
//!   parent's data is unchanged afterwards — "the changes made by each child process are
//!   being lost".
//!
//! For writes that everybody sees, use shared memory (`pool_process_dataset`).
//!
//! In Rust, data inherited read-only ([`Inherited`](multiproc::Inherited)) cannot be written at
//! all, so this example keeps the data in a `static Mutex<Vec<f64>>`. Each worker inherits its
//! own copy of the mutex, unlocked (the parent does not hold it when the pool is created), and
//! locks it to get a `&mut Vec` — to its own copy of the data. Jobs sleep 1 s before writing
//! (`--fast` or `MULTIPROC_FAST=1` skips the sleeps).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use multiproc::fork as backend;
use multiproc::prelude::*;
use rand::Rng;

/// The tutorial's module-level `data`, this time writable: filled before the pool is created.
static DATA: Mutex<Vec<f64>> = Mutex::new(Vec::new());

/// Whether jobs skip their 1 s sleep; set before the pool, so workers inherit it.
static FAST: AtomicBool = AtomicBool::new(false);

/// The tutorial's `memusage(msg)`: the system's used / total memory as `free --mega` shows
/// it, and what this program and its workers occupy (their total PSS — a page shared by
/// parent and workers counts once, a copied page once per copy).
fn memusage(msg: &str) {
    let system = multiproc::core::memusage().map_or_else(|e| e.to_string(), |m| m.to_string());
    let tree = multiproc::core::self_tree_pss()
        .map_or_else(|e| e.to_string(), |b| format!("{} MB", b / 1_000_000));
    println!("Memory usage {msg}: {system} (this program and its workers: {tree})");
}

/// Adds 1 to each of `nelems` values from `offset` — in this worker's copy — and sums them.
fn process_chunk((offset, nelems): (usize, usize)) -> f64 {
    if !FAST.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut data = DATA.lock().unwrap_or_else(|p| p.into_inner());
    let end = (offset + nelems).min(data.len());
    let chunk = &mut data[offset..end];
    // data[offset:offset + nelems] += 1: the first write to each page makes the kernel copy it.
    for x in chunk.iter_mut() {
        *x += 1.0;
    }
    chunk.iter().sum()
}

fn main() -> multiproc::Result<()> {
    let fast = std::env::args().any(|a| a == "--fast")
        || std::env::var("MULTIPROC_FAST").is_ok_and(|v| v == "1");
    FAST.store(fast, Ordering::Relaxed);

    memusage("before creating data");

    // Allocate 500MB of data.
    let (len, original_sum) = {
        let mut rng = rand::thread_rng();
        let mut data = DATA.lock().unwrap_or_else(|p| p.into_inner());
        *data = (0..500 * (1_048_576 / 8)).map(|_| rng.gen()).collect();
        (data.len(), data.iter().sum::<f64>())
    }; // the lock is released here, before the fork: each worker inherits it unlocked
    let nelems = len / 12;

    memusage("after creating data");

    let offsets: Vec<(usize, usize)> = (0..len).step_by(nelems).map(|o| (o, nelems)).collect();

    let total: f64 = {
        let pool = backend::Pool::new(4)?;
        let results = pool.map_async(process_chunk, offsets)?;

        let mut elapsed = 0;
        while !results.ready() {
            memusage(&format!("after {elapsed} seconds"));
            results.wait_timeout(Duration::from_secs(1));
            elapsed += 1;
        }
        memusage("when the jobs are done (the workers still hold their copies)");
        results.get()?.iter().sum()
    }; // the pool is dropped: its workers exit, and their copies are freed
    memusage("after the pool has shut down");

    let parent_sum: f64 = DATA.lock().unwrap_or_else(|p| p.into_inner()).iter().sum();
    println!("Total sum:    {total}");
    println!("Sanity check: {parent_sum}");
    println!();
    println!("Original sum:                          {original_sum}");
    println!(
        "Original sum + 1 for each of {len} values: {}",
        original_sum + len as f64
    );
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs();
    if close(total, original_sum + len as f64) && close(parent_sum, original_sum) {
        println!(
            "The workers added 1 to every value of their own copies, but the parent's data is \
             unchanged: the changes made by each child process are being lost."
        );
        Ok(())
    } else {
        Err(multiproc::Error::invalid(
            "DATA",
            "the sums do not show copy-on-write as expected",
        ))
    }
}
