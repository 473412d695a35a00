//! Copy-on-write: the tutorial's read-only sum, modified so that each task *writes* its
//! chunk (`data[offset:offset + nelems] += 1`) and returns its sum.
//!
//! - **inherit** (fork): the tutorial's exercise. The data is the module-level array, here a
//!   `static Mutex<Vec<f64>>` filled before the pool; each forked worker locks *its own copy*
//!   and writes it, so the kernel copies every page it touches: the memory column and the
//!   memory plot show the tree growing by the size of the data, and the parent's data is
//!   unchanged afterwards (checked) — "the changes made by each child process are being
//!   lost". On threads there is one copy and nothing to copy on write: n/a (threads write
//!   shared data through the shm row).
//! - **shm**: the data is a [`RawArray`]; each task streams its chunk through a local buffer
//!   (`read_range`, `+= 1`, `write_range`). Nothing is copied, the parent sees the writes
//!   (checked).
//! - **copy**: each task gets its chunk as an argument and returns `(sum, chunk)`; the
//!   parent writes the chunks back (checked). Twice the data crosses the socket.
//!
//! Before each run (untimed) the data a run writes is restored from a pristine copy. A timed run creates
//! the pool, maps, and closes it.
//!
//! The copy and shm rows have a warm twin, `write chunks, warm pool`, on a pool created once
//! before the cell (see `pooled.rs`); fork/inherit has none: a warm worker keeps the pages it
//! copied, so its writes pile up and the second run copies nothing. The limit of a row is one
//! pass over the data (read, add one, write) at as many threads, plus, for a cold row on
//! processes, faulting in the pages the workers map (shm) or copy on write (inherit).

use std::sync::{Mutex, MutexGuard};

use multiproc_core::{Executor, Inherited};
use multiproc_shared_array::RawArray;
use rayon::prelude::*;

use serde::{Deserialize, Serialize};

use super::{random_f64s, Lanes, BLOCK, SPAWN_INHERITS_NOTHING};
use crate::backend::{Backend, Pool, Strategy};
use crate::limits::Limit;
use crate::runner::{CellId, Runner, Spec};
use crate::{with_pool, Res};

/// The tutorial's writable module-level data, filled before the pools.
static DATA: Mutex<Vec<f64>> = Mutex::new(Vec::new());

/// The chunk length, set with the data.
static NELEMS: Mutex<usize> = Mutex::new(0);

/// The same values in shared memory, made once before any pool (set by the initializer in a
/// spawned worker).
#[derive(Serialize, Deserialize)]
struct Shared {
    data: RawArray<f64>,
    nelems: usize,
}

static SHM: Inherited<Shared> = Inherited::new("cow SHM");

/// A spawned worker's initializer.
fn init_shm(shared: Shared) {
    let _ = SHM.set(shared);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `data[offset:offset + nelems] += 1; return data[offset:offset + nelems].sum()`
fn add_one(chunk: &mut [f64]) -> f64 {
    for v in chunk.iter_mut() {
        *v += 1.0;
    }
    super::chunk_sum(chunk)
}

/// The tutorial's task on the inherited (copy-on-write) data.
fn process_chunk(offset: usize) -> f64 {
    let nelems = *lock(&NELEMS);
    let mut data = lock(&DATA);
    let end = (offset + nelems).min(data.len());
    add_one(&mut data[offset..end])
}

/// The same on shared memory, block by block.
fn process_chunk_shm(offset: usize) -> f64 {
    let shared = SHM.get().expect("the shared data is set before the tasks");
    let shm = &shared.data;
    let end = (offset + shared.nelems).min(shm.len());
    let mut lanes = Lanes::default();
    let mut buf = vec![0.0; BLOCK];
    for start in (offset..end).step_by(BLOCK) {
        let block = &mut buf[..BLOCK.min(end - start)];
        shm.read_range(start, block)
            .expect("chunk within the array");
        for v in block.iter_mut() {
            *v += 1.0;
        }
        shm.write_range(start, block)
            .expect("chunk within the array");
        lanes.add(block);
    }
    lanes.total()
}

/// The copy strategy's task: the chunk goes out and comes back.
fn process_copied(mut chunk: Vec<f64>) -> (f64, Vec<f64>) {
    let sum = add_one(&mut chunk);
    (sum, chunk)
}

const WORKLOAD: &str = "cow";
const VARIANT: &str = "write chunks";
/// The same on a pool created once before the cell and reused.
const WARM: &str = "write chunks, warm pool";

/// What the parent's data must look like after a run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    /// The writes were lost (copy-on-write in the workers).
    Unchanged,
    /// The writes reached the parent.
    PlusOne,
}

/// Measures the matrix at every worker count, then frees the data.
pub(crate) fn run(r: &mut Runner) -> Res<()> {
    r.status("cow: creating the data");
    let pristine = random_f64s(crate::config::Config::f64s(r.cfg.cow_mb), 0xC0);
    let len = pristine.len();
    let nelems = len / r.cfg.chunks;
    {
        let mut data = lock(&DATA);
        *data = super::with_hugepages(len);
        data.extend_from_slice(&pristine);
        *lock(&NELEMS) = nelems;
    }
    if !SHM.is_set() {
        SHM.set(Shared {
            data: RawArray::from_slice(&pristine).map_err(|e| e.to_string())?,
            nelems,
        })
        .map_err(|e| e.to_string())?;
    }
    let shared = SHM.get().map_err(|e| e.to_string())?;
    let shm = &shared.data;
    if shm.len() != len {
        return Err("cow: the shared array was made for another --size-mb".into());
    }
    let offsets: Vec<usize> = (0..len).step_by(nelems).collect();
    let bytes = (len * std::mem::size_of::<f64>()) as u64;
    let end = |o: usize| (o + nelems).min(len);
    // Chunk sums of `get(start, block)`'s blocks plus `plus`, as the tasks sum them.
    let sums_by = |get: &dyn Fn(usize, &mut [f64]), plus: f64| -> Vec<f64> {
        let mut buf = vec![0.0; BLOCK];
        offsets
            .iter()
            .map(|&o| {
                let mut lanes = Lanes::default();
                for start in (o..end(o)).step_by(BLOCK) {
                    let block = &mut buf[..BLOCK.min(end(o) - start)];
                    get(start, block);
                    for v in block.iter_mut() {
                        *v += plus;
                    }
                    lanes.add(block);
                }
                lanes.total()
            })
            .collect()
    };
    let sums = |values: &[f64], plus: f64| {
        sums_by(
            &|start, block: &mut [f64]| block.copy_from_slice(&values[start..start + block.len()]),
            plus,
        )
    };
    let shm_sums = || {
        sums_by(
            &|start, block: &mut [f64]| shm.read_range(start, block).expect("within the array"),
            0.0,
        )
    };
    let original = sums(&pristine, 0.0);
    let expected = sums(&pristine, 1.0);

    // Puts back the data a run writes: the parent's vector, or the shared array.
    let restore_data = || -> Res<()> {
        lock(&DATA).copy_from_slice(&pristine);
        Ok(())
    };
    let restore_shm = || shm.write_range(0, &pristine).map_err(|e| e.to_string());
    let check = |got: &Vec<f64>, after: After, strategy: Strategy| -> Res<()> {
        if got
            .iter()
            .zip(&expected)
            .any(|(a, b)| a.to_bits() != b.to_bits())
            || got.len() != expected.len()
        {
            return Err(format!("task sums {got:?}, expected {expected:?}"));
        }
        let parent = if strategy == Strategy::Shm {
            shm_sums()
        } else {
            sums(&lock(&DATA), 0.0)
        };
        let want = match after {
            After::Unchanged => &original,
            After::PlusOne => &expected,
        };
        if parent == *want {
            Ok(())
        } else if after == After::Unchanged {
            Err("the parent's data changed: writes in forked workers leaked into it".into())
        } else {
            Err("the parent's data does not hold the writes".into())
        }
    };

    r.measure(
        CellId::new(WORKLOAD, VARIANT, Backend::Serial, Strategy::Direct, None),
        Spec::limit(Limit::copy(bytes, 1)),
        restore_data,
        |()| {
            let mut data = lock(&DATA);
            Ok(offsets
                .iter()
                .map(|&o| add_one(&mut data[o..end(o)]))
                .collect::<Vec<f64>>())
        },
        |got| check(got, After::PlusOne, Strategy::Direct),
    );
    for &workers in &r.cfg.workers.clone() {
        let rayon_pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .build()
            .map_err(|e| e.to_string())?;
        let pass = Limit::copy(bytes, workers);
        r.measure(
            CellId::new(
                WORKLOAD,
                VARIANT,
                Backend::Rayon,
                Strategy::Direct,
                Some(workers),
            ),
            Spec::limit(Limit::copy(bytes, workers)),
            restore_data,
            |()| {
                let mut guard = lock(&DATA);
                let data: &mut [f64] = &mut guard;
                Ok(rayon_pool.install(|| data.par_chunks_mut(nelems).map(add_one).collect()))
            },
            |got| check(got, After::PlusOne, Strategy::Direct),
        );
        for backend in Backend::POOLS {
            for strategy in Strategy::SELECTABLE {
                let id = CellId::new(WORKLOAD, VARIANT, backend, strategy, Some(workers));
                let after = match (backend, strategy) {
                    (Backend::Spawn, Strategy::Inherit) => {
                        r.not_applicable(id, SPAWN_INHERITS_NOTHING);
                        continue;
                    }
                    (Backend::Threads, Strategy::Inherit) => {
                        r.not_applicable(
                            id,
                            "threads share one copy of the data: there is nothing to copy on \
                             write (the shm row is how threads write shared data)",
                        );
                        continue;
                    }
                    (_, Strategy::Inherit) => After::Unchanged,
                    _ => After::PlusOne,
                };
                let make = || Pool::for_strategy(backend, workers, strategy, init_shm, shared);
                let work = |pool: &Pool, ()| {
                    with_pool!(pool, p => match strategy {
                        Strategy::Copy => {
                            let chunks: Vec<Vec<f64>> = {
                                let data = lock(&DATA);
                                offsets.iter().map(|&o| super::copy_of(&data[o..end(o)])).collect()
                            };
                            p.map(process_copied, chunks).map(|parts| {
                                let mut data = lock(&DATA);
                                offsets
                                    .iter()
                                    .zip(parts)
                                    .map(|(&o, (sum, chunk))| {
                                        data[o..end(o)].copy_from_slice(&chunk);
                                        sum
                                    })
                                    .collect::<Vec<f64>>()
                            })
                        }
                        Strategy::Shm => p.map(process_chunk_shm, offsets.clone()),
                        _ => p.map(process_chunk, offsets.clone()),
                    })
                    .map_err(|e| e.to_string())
                };
                let restore = || match strategy {
                    Strategy::Shm => restore_shm(),
                    _ => restore_data(),
                };
                let check = |got: &Vec<f64>| check(got, after, strategy);
                // The writes are one pass over the data (read, add, write); fresh processes
                // map the shared pages, and copy-on-write faults in a fresh copy of each page.
                let (cold, warm) = match (backend, strategy) {
                    (_, Strategy::Copy) => (Spec::default(), Spec::default()),
                    (Backend::Threads, _) => (Spec::limit(pass), Spec::limit(pass)),
                    (_, Strategy::Inherit) => {
                        (Spec::limit(pass.plus_fault(bytes)), Spec::limit(pass))
                    }
                    _ => (Spec::limit(pass.plus_map(bytes)), Spec::limit(pass)),
                };
                if strategy == Strategy::Inherit {
                    r.measure(
                        id.clone(),
                        cold,
                        restore,
                        |()| {
                            let pool = make()?;
                            let got = work(&pool, ())?;
                            pool.finish()?;
                            Ok(got)
                        },
                        check,
                    );
                    r.not_applicable(
                        CellId {
                            variant: WARM.into(),
                            ..id
                        },
                        "a warm pool's workers keep the pages they copied on the first run: \
                         their writes pile up there and there is nothing left to copy",
                    );
                    continue;
                }
                r.measure_cold_and_warm(id, WARM, cold, warm, make, restore, work, check);
            }
        }
    }
    // Give the memory back: later workloads fork smaller processes.
    *lock(&DATA) = Vec::new();
    Ok(())
}
