//! The tutorial's read-only sharing: the sum of a large array (500 MB of f64), in chunks.
//!
//! `nelems = len / 12`, one task per offset in `range(0, len, nelems)` — 13 tasks, the last
//! one short, as in the tutorial (without its `sleep(1)`). A timed run of a pool backend is
//! the tutorial's `with Pool(n) as pool: pool.map(process_chunk, offsets)`: create, map with
//! the default chunk size, close and join. The three strategies:
//!
//! - **inherit**: the array lives in an [`Inherited`] static set before any pool exists (the
//!   tutorial's module-level `data`); tasks get offsets. Forked workers read their
//!   copy-on-write snapshot, threads the same memory; spawned workers inherit nothing (n/a).
//! - **shm**: the same values in a [`FrozenArray`] (shared memory sealed read-only, so every
//!   process may slice it) made before the pools; tasks get offsets. Forked workers inherit
//!   the mapping; each spawned worker receives its descriptor once, through the pool's
//!   initializer (Python: `Pool(initializer=..., initargs=(raw_array,))`).
//! - **copy**: each task gets its chunk as a `Vec<f64>` argument: the parent copies the
//!   chunks out (numpy's pickling), process backends send them over the socket.
//!
//! Each pool row has a warm twin, `map, warm pool`: the same map on a pool created once
//! before the cell and reused by every run (see `pooled.rs`). The limit of a row is reading
//! the array once at the read bandwidth of as many threads (plus, for a cold shm row on
//! processes, faulting its pages into the fresh workers' mappings).

use multiproc_core::{Executor, Inherited};
use multiproc_shared_array::FrozenArray;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{chunk_sum, random_f64s, same_f64, SPAWN_INHERITS_NOTHING};
use crate::backend::{Backend, Pool, Strategy};
use crate::limits::Limit;
use crate::runner::{CellId, Runner, Spec};
use crate::{with_pool, Res};

/// The data, set once before any pool.
struct Data {
    values: Vec<f64>,
    nelems: usize,
}

static DATA: Inherited<Data> = Inherited::new("sum DATA");

/// The data in shared memory: set before any pool in the parent, by the initializer in a
/// spawned worker.
#[derive(Serialize, Deserialize)]
struct Shared {
    values: FrozenArray<f64>,
    nelems: usize,
}

static SHM: Inherited<Shared> = Inherited::new("sum SHM");

/// A spawned worker's initializer.
fn init_shm(shared: Shared) {
    let _ = SHM.set(shared);
}

fn data() -> &'static Data {
    DATA.get()
        .expect("the sum's data is created before any pool")
}

/// The tutorial's `process_chunk(offset)` on inherited data.
fn process_chunk(offset: usize) -> f64 {
    let d = data();
    chunk_sum(&d.values[offset..(offset + d.nelems).min(d.values.len())])
}

/// The same on shared memory.
fn process_chunk_shm(offset: usize) -> f64 {
    let s = SHM.get().expect("the shared data is set before the tasks");
    chunk_sum(&s.values[offset..(offset + s.nelems).min(s.values.len())])
}

/// The copy strategy's task: the chunk itself is the argument.
fn sum_chunk(chunk: Vec<f64>) -> f64 {
    chunk_sum(&chunk)
}

const WORKLOAD: &str = "sum";
const VARIANT: &str = "Pool+map+close";
/// The same map on a pool created once before the cell and reused.
const WARM: &str = "map, warm pool";

/// Creates `size_mb` MiB of random f64 (and its shared-memory copy) to be split into
/// `chunks`. Only the first call allocates.
fn prepare(size_mb: usize, chunks: usize) -> Res<()> {
    if DATA.is_set() {
        return Ok(());
    }
    let values = random_f64s(crate::config::Config::f64s(size_mb), 0x5EED);
    let nelems = values.len() / chunks;
    SHM.set(Shared {
        values: FrozenArray::from_slice(&values).map_err(|e| e.to_string())?,
        nelems,
    })
    .map_err(|e| e.to_string())?;
    DATA.set(Data { values, nelems }).map_err(|e| e.to_string())
}

/// Measures the matrix at every worker count of the options, then (if `sweep`) the
/// parallel inherit and shm cells at the sweep's counts, for the speedup plot.
pub(crate) fn run(r: &mut Runner, sweep: bool) -> Res<()> {
    r.status("sum: creating the data");
    prepare(r.cfg.size_mb, r.cfg.chunks)?;
    let d = data();
    let shared = SHM.get().map_err(|e| e.to_string())?;
    let offsets: Vec<usize> = (0..d.values.len()).step_by(d.nelems).collect();
    let expected: f64 = offsets.iter().map(|&o| process_chunk(o)).sum();
    let ends = |o: usize| (o + d.nelems).min(d.values.len());
    let bytes = std::mem::size_of_val(&d.values[..]) as u64;

    let serial = CellId::new(WORKLOAD, VARIANT, Backend::Serial, Strategy::Direct, None);
    r.measure(
        serial,
        Spec::limit(Limit::read(bytes, 1)),
        || Ok(()),
        |()| Ok(offsets.iter().map(|&o| process_chunk(o)).sum::<f64>()),
        |&got| same_f64("sum", got, expected),
    );

    let mut counts = r.cfg.workers.clone();
    let matrix = counts.len();
    if sweep {
        counts.extend(r.cfg.sweep.iter().filter(|w| !r.cfg.workers.contains(w)));
    }
    for (i, &workers) in counts.iter().enumerate() {
        let in_sweep = i >= matrix;
        let rayon_pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .build()
            .map_err(|e| e.to_string())?;
        r.measure(
            CellId::new(
                WORKLOAD,
                VARIANT,
                Backend::Rayon,
                Strategy::Direct,
                Some(workers),
            ),
            Spec::limit(Limit::read(bytes, workers)),
            || Ok(()),
            |()| {
                Ok(rayon_pool.install(|| {
                    offsets
                        .par_iter()
                        .map(|&o| process_chunk(o))
                        .collect::<Vec<f64>>()
                        .iter()
                        .sum::<f64>()
                }))
            },
            |&got| same_f64("sum", got, expected),
        );
        let read = Limit::read(bytes, workers);
        for backend in Backend::POOLS {
            for strategy in Strategy::SELECTABLE {
                let id = CellId::new(WORKLOAD, VARIANT, backend, strategy, Some(workers));
                if in_sweep && strategy == Strategy::Copy {
                    continue;
                }
                if backend == Backend::Spawn && strategy == Strategy::Inherit {
                    if !in_sweep {
                        r.not_applicable(id, SPAWN_INHERITS_NOTHING);
                    }
                    continue;
                }
                let make = || Pool::for_strategy(backend, workers, strategy, init_shm, shared);
                let work = |pool: &Pool, ()| {
                    let sums = with_pool!(pool, p => match strategy {
                        Strategy::Copy => {
                            let chunks: Vec<Vec<f64>> =
                                offsets.iter().map(|&o| super::copy_of(&d.values[o..ends(o)])).collect();
                            p.map(sum_chunk, chunks)
                        }
                        Strategy::Shm => p.map(process_chunk_shm, offsets.clone()),
                        _ => p.map(process_chunk, offsets.clone()),
                    })
                    .map_err(|e| e.to_string())?;
                    Ok(sums.iter().sum::<f64>())
                };
                // Copies have no memory limit worth the name (the socket is the cost); a
                // fresh process maps the shared pages it reads.
                let (cold, warm) = match (backend, strategy) {
                    (_, Strategy::Copy) => (Spec::default(), Spec::default()),
                    (Backend::Fork | Backend::Spawn, Strategy::Shm) => {
                        (Spec::limit(read.plus_map(bytes)), Spec::limit(read))
                    }
                    _ => (Spec::limit(read), Spec::limit(read)),
                };
                let check = |&got: &f64| same_f64("sum", got, expected);
                if in_sweep {
                    // The sweep is for the speedup plot: cold rows only.
                    r.measure_cold(id, cold, make, || Ok(()), work, check);
                } else {
                    r.measure_cold_and_warm(id, WARM, cold, warm, make, || Ok(()), work, check);
                }
            }
        }
    }
    Ok(())
}
