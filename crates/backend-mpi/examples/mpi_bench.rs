//! Measurements of the MPI backend beside the fork and spawn pools of the same machine, in
//! the same run (rank 0 makes the fork and spawn pools itself). Run under `mpirun -n N`:
//!
//! - `mpi_bench tiny [--n 10000]`: N trivial tasks, chunksize 1, on every worker rank; then
//!   the same on a fork pool with as many workers. Prints the per-task cost of each (best of
//!   5 runs) and the MPI throughput (the rank sweep runs this at N = 2..16).
//! - `mpi_bench sum [--mb 500]`: the tutorial's chunked sum, 13 chunks: MPI broadcast once
//!   (initializer) + map and MPI shared windows (one copy per node, read in place), beside
//!   fork/inherit (an `Inherited` static set before the pool)
//!   and spawn/shm (a sealed shared-memory array whose descriptor each worker gets through
//!   the initializer). Each timing is pool creation + map + close + join: best of 2 for the
//!   two MPI variants (a broadcast run takes 1.5 s on a 2-core machine: the bench's `all` has
//!   3 minutes), best of 3 for fork and spawn.

mod common;

use common::{arg, random_data};

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use multiproc_core::{Executor, Inherited, Packed};
use multiproc_shared_array::FrozenArray;

fn noop(x: u32) -> u32 {
    x
}

fn best<F: FnMut() -> Duration>(runs: usize, mut f: F) -> Duration {
    (0..runs).map(|_| f()).min().expect("at least one run")
}

fn tiny(workers: usize) -> multiproc_core::Result<()> {
    let n = arg("--n", 10_000);
    let mpi_pool = multiproc_mpi::Pool::new(workers)?;
    let mpi = best(5, || {
        let t = Instant::now();
        let r = mpi_pool.map_chunked(noop, 0..n as u32, 1).expect("map");
        assert_eq!(r.len(), n);
        t.elapsed()
    });
    drop(mpi_pool);
    let fork_pool = multiproc_fork::ForkPool::new(workers)?;
    let fork = best(5, || {
        let t = Instant::now();
        let r = fork_pool.map_chunked(noop, 0..n as u32, 1).expect("map");
        assert_eq!(r.len(), n);
        t.elapsed()
    });
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "tiny: {n} tasks, chunksize 1, {workers} workers: mpi {:.2} us/task ({:.0} tasks/s), \
         fork {:.2} us/task ({:.0} tasks/s)",
        per(mpi),
        n as f64 / mpi.as_secs_f64(),
        per(fork),
        n as f64 / fork.as_secs_f64()
    );
    Ok(())
}

/// The MPI side of the sum: data broadcast to each worker rank once.
static BCAST: OnceLock<std::sync::Mutex<Vec<f64>>> = OnceLock::new();
fn load(d: Packed<f64>) {
    *BCAST.get_or_init(Default::default).lock().unwrap() = d.into_inner();
}
fn sum_bcast((o, n): (usize, usize)) -> f64 {
    let d = BCAST.get().expect("set by the initializer").lock().unwrap();
    d[o..(o + n).min(d.len())].iter().sum()
}

/// The fork side: inherited.
static DATA: Inherited<Vec<f64>> = Inherited::new("DATA");
fn sum_inherited((o, n): (usize, usize)) -> f64 {
    let d = DATA.get().expect("set before the pool");
    d[o..(o + n).min(d.len())].iter().sum()
}

/// The MPI side again, read in place in the node's shared window.
fn sum_window((o, n): (usize, usize)) -> f64 {
    let d = multiproc_mpi::shared::<f64>().expect("a shared pool");
    d[o..(o + n).min(d.len())].iter().sum()
}

/// The spawn side: shared memory, its descriptor sent once per worker.
static SHM: OnceLock<FrozenArray<f64>> = OnceLock::new();
fn attach(a: FrozenArray<f64>) {
    let _ = SHM.set(a);
}
fn sum_shm((o, n): (usize, usize)) -> f64 {
    let d = SHM.get().expect("set by the initializer").as_slice();
    d[o..(o + n).min(d.len())].iter().sum()
}

fn sum(workers: usize) -> multiproc_core::Result<()> {
    let mb = arg("--mb", 500);
    let data = random_data(mb);
    let nelems = data.len() / 12;
    let chunks: Vec<(usize, usize)> = (0..data.len())
        .step_by(nelems)
        .map(|o| (o, nelems))
        .collect();
    let expected: f64 = chunks.iter().map(|&c| sum_inherited_of(&data, c)).sum();
    let shm = FrozenArray::from_slice(&data).expect("shared memory");
    let packed = Packed::from(data.clone());
    DATA.set(data).expect("once");

    let check = |got: Vec<f64>| assert_eq!(got.iter().sum::<f64>(), expected);
    let mpi = best(2, || {
        let t = Instant::now();
        let p = multiproc_mpi::Pool::with_initializer(workers, load, &packed).expect("pool");
        check(p.map(sum_bcast, chunks.clone()).expect("map"));
        p.close();
        p.join().expect("join");
        t.elapsed()
    });
    let window = best(2, || {
        let t = Instant::now();
        let p = multiproc_mpi::Pool::with_shared(workers, DATA.get().expect("set")).expect("pool");
        check(p.map(sum_window, chunks.clone()).expect("map"));
        p.close();
        p.join().expect("join");
        t.elapsed()
    });
    let fork = best(3, || {
        let t = Instant::now();
        let p = multiproc_fork::ForkPool::new(workers).expect("pool");
        check(p.map(sum_inherited, chunks.clone()).expect("map"));
        p.close();
        p.join().expect("join");
        t.elapsed()
    });
    let spawn = best(3, || {
        let t = Instant::now();
        let p = multiproc_spawn::SpawnPool::with_initializer(workers, attach, &shm).expect("pool");
        check(p.map(sum_shm, chunks.clone()).expect("map"));
        p.close();
        p.join().expect("join");
        t.elapsed()
    });
    println!(
        "sum: {mb} MB, {} chunks, {workers} workers: mpi/bcast {:.3} s, mpi/shared-window \
         {:.3} s, fork/inherit {:.3} s, spawn/shm {:.3} s",
        chunks.len(),
        mpi.as_secs_f64(),
        window.as_secs_f64(),
        fork.as_secs_f64(),
        spawn.as_secs_f64()
    );
    Ok(())
}

fn sum_inherited_of(d: &[f64], (o, n): (usize, usize)) -> f64 {
    d[o..(o + n).min(d.len())].iter().sum()
}

fn main() -> multiproc_core::Result<()> {
    multiproc_mpi::init();
    let workers = multiproc_mpi::worker_ranks();
    match std::env::args().nth(1).as_deref() {
        Some("sum") => sum(workers),
        _ => tiny(workers),
    }
}
