//! Run with: `cargo run --release --features fork,spawn --example pool_crunch_starmap`
//!
//! Tutorial: "`Pool.starmap`" — a task with two arguments, `(imgfile, modality)`.
//!
//! `starmap` unpacks each tuple into the task's parameters, as Python's does. T1 images get a
//! result in 1..100 and T2 images one in 100..200; each takes 0.2 s (the tutorial's 2 s,
//! scaled down), so 20 images in 16 processes take about 0.4 s.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use multiproc::prelude::*;
use multiproc::Pool;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A generator seeded from the process id and the clock: forked workers would otherwise all
/// share the parent's generator state (the tutorial's `np.random.seed()`).
fn reseeded_rng() -> StdRng {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    StdRng::seed_from_u64(u64::from(std::process::id()) << 32 ^ nanos)
}

fn crunch_image(imgfile: String, modality: String) -> u32 {
    std::thread::sleep(Duration::from_millis(200));

    let mut rng = reseeded_rng();
    let result = match modality.as_str() {
        "t1" => rng.gen_range(1..100),
        "t2" => rng.gen_range(100..200),
        other => panic!("unknown modality {other:?}"),
    };
    println!("{imgfile} :  [{result}]");
    result
}

fn main() -> multiproc::Result<()> {
    // First in main: a spawned worker runs from here and never returns.
    multiproc::init();
    // Python's `mp.set_start_method(...)` is `multiproc::set_start_method(...)`; here the
    // environment picks it: MULTIPROC_START_METHOD=spawn (default fork).
    println!("Start method: {}", multiproc::get_start_method()?);
    let imgfiles = (0..10)
        .map(|i| format!("t1_{i:02}.nii.gz"))
        .chain((0..10).map(|i| format!("t2_{i:02}.nii.gz")));
    let modalities = ["t1"; 10].into_iter().chain(["t2"; 10]);

    // args = [(f, m) for f, m in zip(imgfiles, modalities)]
    let args: Vec<(String, String)> = imgfiles
        .zip(modalities)
        .map(|(f, m)| (f, m.to_string()))
        .collect();

    println!("Crunching images...");

    let start = Instant::now();
    let results = {
        let pool = Pool::new(16)?;
        pool.starmap(crunch_image, args)?
    };
    let elapsed = start.elapsed();

    println!("Results: {results:?}");
    println!("Total execution time: {:.2} seconds", elapsed.as_secs_f64());
    Ok(())
}
