//! Run with: `cargo run --release --features fork,spawn --example pool_crunch_map [-- --workers N]`
//!
//! Tutorial: "`Pool.map`" — crunch 20 images in a pool of 16 forked worker processes.
//!
//! Each image takes 0.2 s to "crunch" (the tutorial's 2 s, scaled down). Serially the 20
//! images would take 4 s; with 16 processes they take two rounds, about 0.4 s. The number of
//! workers can also be set with `MULTIPROC_WORKERS=N`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use multiproc::prelude::*;
use multiproc::Pool;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A random-number generator seeded from this process's id and the clock.
///
/// Every worker is a fork of this process and would otherwise start from the same generator
/// state, drawing the same "random" numbers — the reason the tutorial calls
/// `np.random.seed()` in each task.
fn reseeded_rng() -> StdRng {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    StdRng::seed_from_u64(u64::from(std::process::id()) << 32 ^ nanos)
}

fn crunch_image(imgfile: String) -> u32 {
    // Load a nifti image, do stuff to it. Use your imagination to fill in this function.
    std::thread::sleep(Duration::from_millis(200));

    let result = reseeded_rng().gen_range(1..100); // np.random.randint(1, 100, 1)
    println!("{imgfile} : [{result}]");
    result
}

/// `--workers N`, or `MULTIPROC_WORKERS`, or the tutorial's 16.
fn workers() -> usize {
    let args: Vec<String> = std::env::args().collect();
    let from_args = args
        .iter()
        .position(|a| a == "--workers")
        .and_then(|i| args.get(i + 1).cloned());
    from_args
        .or_else(|| std::env::var("MULTIPROC_WORKERS").ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(16)
}

fn main() -> multiproc::Result<()> {
    // First in main: a spawned worker runs from here and never returns.
    multiproc::init();
    // Python's `mp.set_start_method(...)` is `multiproc::set_start_method(...)`; here the
    // environment picks it: MULTIPROC_START_METHOD=spawn (default fork).
    println!("Start method: {}", multiproc::get_start_method()?);
    let imgfiles: Vec<String> = (0..20).map(|i| format!("{i:02}.nii.gz")).collect();

    println!("Crunching images...");

    let start = Instant::now();
    let results = {
        // `with mp.Pool(processes=16) as p:` — dropping the pool closes it and joins the workers.
        let pool = Pool::new(workers())?;
        pool.map(crunch_image, imgfiles)?
    };
    let elapsed = start.elapsed();

    println!("Results: {results:?}");
    println!("Total execution time: {:.2} seconds", elapsed.as_secs_f64());
    Ok(())
}
