//! Run with: `mpirun -n 3 target/release/examples/voxel_slabs [--side 256] [--slabs 16]`
//! (build: `cargo build --release --manifest-path crates/backend-mpi/Cargo.toml --examples`)
//!
//! The tutorial's voxel squaring on MPI ranks, in contiguous slabs: rank 0 holds a 3-D image
//! (`side`³ `f64`s, C order), cuts it into slabs along the first axis and maps a task over
//! them; each task gets its slab (copied per task: ranks on other hosts share no memory) and
//! returns it squared; rank 0 writes each slab back in place. Exits non-zero unless every
//! voxel of the output is its input squared.

mod common;

use common::arg;

use std::time::Instant;

use multiproc_core::{Executor, Packed};
use multiproc_mpi::Pool;

/// Squares every voxel of a slab.
fn square_slab((start, mut slab): (usize, Packed<f64>)) -> (usize, Packed<f64>) {
    for v in slab.iter_mut() {
        *v *= *v;
    }
    (start, slab)
}

fn main() -> multiproc_core::Result<()> {
    multiproc_mpi::init();
    let side = arg("--side", 256);
    let slabs = arg("--slabs", 16).clamp(1, side);
    let workers = multiproc_mpi::worker_ranks();
    let plane = side * side;
    let indata: Vec<f64> = (0..side * plane).map(|i| (i % 1009) as f64 * 0.5).collect();
    let mut outdata = vec![0.0f64; indata.len()];

    let pool = Pool::new(workers)?;
    let t = Instant::now();
    let per = side.div_ceil(slabs);
    let jobs: Vec<(usize, Packed<f64>)> = (0..side)
        .step_by(per)
        .map(|x| {
            let (a, b) = (x * plane, ((x + per).min(side)) * plane);
            (a, Packed::from(indata[a..b].to_vec()))
        })
        .collect();
    let n = jobs.len();
    for r in pool.imap_unordered(square_slab, jobs)? {
        let (start, slab) = r?;
        outdata[start..start + slab.len()].copy_from_slice(&slab);
    }
    println!(
        "voxel squaring: {side}^3 voxels ({} MB) in {n} slabs on {workers} worker ranks: {:.3} s",
        indata.len() * 8 / 1_000_000,
        t.elapsed().as_secs_f64()
    );
    let bad = indata
        .iter()
        .zip(&outdata)
        .filter(|(i, o)| **o != **i * **i)
        .count();
    if bad != 0 {
        eprintln!("MISMATCH: {bad} voxels are not their input squared");
        std::process::exit(1);
    }
    println!("every voxel of the output is its input squared");
    Ok(())
}
