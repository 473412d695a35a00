//! Run with: `cargo run --release --features fork,spawn --example pool_registration_apply_async`
//!
//! Tutorial: "`Pool.apply_async`" — linear, then non-linear registration of 20 subjects.
//!
//! Each job is scheduled with `apply_async`, which returns an [`AsyncResult`] at once; `get`
//! then blocks until that job is done. Linear registrations take 0.1 s and non-linear ones
//! 0.3 s (the tutorial's 1 s and 3 s, scaled down), so with 16 processes the 20 subjects take
//! two rounds: about 0.2 s and 0.6 s.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use multiproc::prelude::*;
use multiproc::Pool;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A 4×4 affine transformation matrix.
type Affine = [[f64; 4]; 4];

/// `np.eye(4)`
const IDENTITY: Affine = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
];

/// `apply_async` passes its task one argument: here a `(src, ref)` tuple, taken apart in the
/// parameter list.
fn linear_registration((_src, _reference): (String, String)) -> Affine {
    std::thread::sleep(Duration::from_millis(100));
    IDENTITY
}

/// `apply_star_async` unpacks a tuple into parameters, like Python's `apply_async(f, args)`.
fn nonlinear_registration(_src: String, _reference: String, _affine: Affine) -> u32 {
    std::thread::sleep(Duration::from_millis(300));

    // This number represents a non-linear warp field - use your imagination people! Each
    // worker re-seeds, since forked workers start with the same generator state.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    StdRng::seed_from_u64(u64::from(std::process::id()) << 32 ^ nanos).gen_range(1..100)
}

fn main() -> multiproc::Result<()> {
    // First in main: a spawned worker runs from here and never returns.
    multiproc::init();
    // Python's `mp.set_start_method(...)` is `multiproc::set_start_method(...)`; here the
    // environment picks it: MULTIPROC_START_METHOD=spawn (default fork).
    println!("Start method: {}", multiproc::get_start_method()?);
    let t1s: Vec<String> = (0..20).map(|i| format!("{i:02}_t1.nii.gz")).collect();
    let std = "MNI152_T1_2mm.nii.gz".to_string();

    println!(
        "Running structural-to-standard registration on {} subjects...",
        t1s.len()
    );

    // Run linear registration on all the T1s.
    let start = Instant::now();
    let linresults: Vec<Affine> = {
        let pool = Pool::new(16)?;

        // We build a list of AsyncResult objects...
        let pending = t1s
            .iter()
            .map(|t1| pool.apply_async(linear_registration, (t1.clone(), std.clone())))
            .collect::<multiproc::Result<Vec<_>>>()?;

        // ...then we wait for each job to finish, and replace its AsyncResult with the actual
        // result - an affine transformation matrix.
        pending
            .into_iter()
            .map(AsyncResult::get)
            .collect::<multiproc::Result<_>>()?
    };
    println!(
        "Linear registrations completed in {:.2} seconds",
        start.elapsed().as_secs_f64()
    );

    // Run non-linear registration on all the T1s, using the linear registrations to initialise.
    let start = Instant::now();
    let nlinresults: Vec<u32> = {
        let pool = Pool::new(16)?;
        let pending = t1s
            .iter()
            .zip(&linresults)
            .map(|(t1, aff)| {
                pool.apply_star_async(nonlinear_registration, (t1.clone(), std.clone(), *aff))
            })
            .collect::<multiproc::Result<Vec<_>>>()?;

        // Wait for each non-linear reg to finish, and store the resulting warp field.
        pending
            .into_iter()
            .map(AsyncResult::get)
            .collect::<multiproc::Result<_>>()?
    };
    println!(
        "Non-linear registrations completed in {:.2} seconds",
        start.elapsed().as_secs_f64()
    );

    println!("Linear registration of {}:", t1s[0]);
    for row in &linresults[0] {
        println!("  {row:?}");
    }
    println!("Non linear registrations:");
    for (t1, result) in t1s.iter().zip(&nlinresults) {
        println!("{t1} : [{result}]");
    }
    Ok(())
}
