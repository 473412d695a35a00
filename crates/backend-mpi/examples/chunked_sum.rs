//! Run with: `mpirun -n 3 target/release/examples/chunked_sum [--mb 500] [--tasks 13]`
//! (build: `cargo build --release --manifest-path crates/backend-mpi/Cargo.toml --examples`)
//!
//! The tutorial's chunked sum on MPI ranks: 500 MB of data made on rank 0 *before* the pool,
//! summed in chunks by the worker ranks. On one machine the fork backend lets workers inherit
//! the data; ranks on other hosts cannot, so the data goes to every worker rank once, through
//! the pool's initializer — by `MPI_Bcast` (a tree: rank 0 sends it about log2(N) times, not
//! N-1 times) — and each task then names only its range. Exits non-zero unless every chunk's
//! sum equals the one rank 0 computes itself.

mod common;

use common::{arg, random_data};

use std::sync::OnceLock;
use std::time::Instant;

use multiproc_core::{Executor, Packed};
use multiproc_mpi::Pool;

/// The data on a worker rank, set once by the initializer.
static DATA: OnceLock<Vec<f64>> = OnceLock::new();

/// The pool's initializer: keeps the broadcast data.
fn load(data: Packed<f64>) {
    DATA.set(data.into_inner())
        .expect("one pool per run, so each rank is initialised once");
}

/// Each job sums `nelems` values from `offset` (clipped at the end, as numpy does).
fn process_chunk((offset, nelems): (usize, usize)) -> f64 {
    let data = DATA.get().expect("DATA is set by the initializer");
    let end = (offset + nelems).min(data.len());
    data[offset..end].iter().sum()
}

fn main() -> multiproc_core::Result<()> {
    multiproc_mpi::init();
    let mb = arg("--mb", 500);
    let tasks = arg("--tasks", 13).max(2);
    let workers = multiproc_mpi::worker_ranks();

    let data = random_data(mb);
    // As in the tutorial: 12 jobs, and a 13th for the values left over (with --tasks 13).
    let nelems = data.len() / (tasks - 1);
    let chunks: Vec<(usize, usize)> = (0..tasks).map(|i| (i * nelems, nelems)).collect();

    let t = Instant::now();
    let data = Packed::from(data);
    let pool = Pool::with_initializer(workers, load, &data)?;
    let bcast = t.elapsed();
    let t = Instant::now();
    let sums = pool.map_chunked(process_chunk, chunks.clone(), 1)?;
    let map = t.elapsed();
    println!(
        "chunked sum: {mb} MB on {workers} worker ranks: broadcast once + initializer {:.3} s, \
         map of {tasks} chunks {:.3} s, total {:.3} s",
        bcast.as_secs_f64(),
        map.as_secs_f64(),
        (bcast + map).as_secs_f64()
    );

    let expected: Vec<f64> = chunks
        .iter()
        .map(|&(o, n)| data[o..(o + n).min(data.len())].iter().sum())
        .collect();
    let total: f64 = sums.iter().sum();
    println!("sum = {total:.6} over {} values", data.len());
    if sums != expected {
        eprintln!("MISMATCH: the ranks' chunk sums {sums:?} differ from {expected:?}");
        std::process::exit(1);
    }
    println!("every chunk's sum matches rank 0's own");
    Ok(())
}
