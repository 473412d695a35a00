//! The tutorial's read/write sharing: `process_dataset` squares every voxel of a 3-D image
//! (256³ f64), `outdata[idxs] = indata[idxs] ** 2`.
//!
//! Two variants, as in the `fork_process_dataset` example:
//!
//! - **index lists** (the tutorial's code): `np.meshgrid` voxel coordinates split into
//!   `nprocs` lists and a remainder; each job loads and stores voxel by voxel in the shared
//!   input and output [`RawArray`]s. Only the shm strategy is this code.
//! - **slabs**: `nprocs` contiguous `(start, len)` ranges. With shm, each job streams its
//!   slab through a local buffer with `read_range`/`write_range`; with copy, the slab's
//!   values are the argument and the squares the result; with inherit, the input comes from
//!   an inherited static and the squares come back as the result.
//!
//! A timed run builds the jobs' arguments (for index lists: the meshgrid, 400 MB of indices),
//! creates the pool, runs `starmap`/`map`, closes it, and for copy and inherit assembles the
//! output. The shared arrays are created and filled before (untimed), and the output is
//! reset to NaN before each run, so that a voxel nobody wrote cannot pass the check.
//!
//! Each pool row has a warm twin (`index lists, warm pool`, `slabs, warm pool`): the same
//! jobs on a pool created once before the cell (see `pooled.rs`). The limit of the serial,
//! rayon and shm rows is one copy of the image (every voxel read, its square written) at as
//! many threads, plus, for a cold shm row on processes, faulting both arrays into the fresh
//! workers' mappings. An index-list row on a pool adds what its 400 MB of indices cost at the
//! least: one pass writing them (the timed run builds them); on processes, two copies (into
//! what carries them, out of it into the worker's vectors), and on a cold pool, the fresh
//! workers map the carrier's pages and decode into fresh heap pages.

use std::cell::RefCell;

use multiproc_core::{Executor, Inherited};
use multiproc_shared_array::RawArray;
use rayon::prelude::*;

use serde::{Deserialize, Serialize};

use super::{BLOCK, SPAWN_INHERITS_NOTHING};
use crate::backend::{Backend, Pool, Strategy};
use crate::limits::Limit;
use crate::pooled::warm;
use crate::runner::{CellId, Runner, Spec};
use crate::{with_pool, Res};

/// `(xlen, ylen, zlen)`
type Shape = (usize, usize, usize);

/// Voxel coordinates: `(xs, ys, zs)`.
type Indices = (Vec<usize>, Vec<usize>, Vec<usize>);

/// The image, set once before any pool.
struct Data {
    shape: Shape,
    input: Vec<f64>,
}

static DATA: Inherited<Data> = Inherited::new("voxels DATA");

/// The tutorial's `process_chunk.input_data` and `.output_data`: set before any pool in the
/// parent, by the initializer in a spawned worker.
#[derive(Serialize, Deserialize)]
struct Shared {
    shm_in: RawArray<f64>,
    shm_out: RawArray<f64>,
}

static SHM: Inherited<Shared> = Inherited::new("voxels SHM");

/// A spawned worker's initializer.
fn init_shm(shared: Shared) {
    let _ = SHM.set(shared);
}

fn data() -> &'static Data {
    DATA.get().expect("the image is created before any pool")
}

fn shm() -> &'static Shared {
    SHM.get()
        .expect("the shared arrays are set before the tasks")
}

/// The tutorial's `process_chunk(shape, idxs)`.
fn process_chunk(shape: Shape, (xs, ys, zs): Indices) {
    let d = shm();
    let (_, ylen, zlen) = shape;
    for ((x, y), z) in xs.into_iter().zip(ys).zip(zs) {
        let i = (x * ylen + y) * zlen + z;
        let v = d.shm_in.load(i).expect("voxel within the image");
        d.shm_out.store(i, v * v).expect("voxel within the image");
    }
}

/// A slab in shared memory, streamed through a local buffer.
fn process_slab(start: usize, len: usize) {
    let d = shm();
    let mut buf = vec![0.0; BLOCK.min(len)];
    let mut at = start;
    while at < start + len {
        let n = BLOCK.min(start + len - at);
        let block = &mut buf[..n];
        d.shm_in
            .read_range(at, block)
            .expect("slab within the image");
        for v in block.iter_mut() {
            *v *= *v;
        }
        d.shm_out
            .write_range(at, block)
            .expect("slab within the image");
        at += n;
    }
}

/// The copy strategy: the slab is the argument, its squares the result.
fn square_slab(slab: Vec<f64>) -> Vec<f64> {
    slab.into_iter().map(|v| v * v).collect()
}

/// The inherit strategy: the slab is read from the inherited input.
fn square_inherited(start: usize, len: usize) -> Vec<f64> {
    let mut out = super::with_hugepages(len);
    out.extend(data().input[start..start + len].iter().map(|v| v * v));
    out
}

/// The tutorial's meshgrid: coordinates of every voxel in `np.meshgrid(arange(xlen),
/// arange(ylen), arange(zlen))` order (its default `xy` indexing runs over y, then x, then z),
/// split into `jobs` lists of `size / jobs` voxels and a last list with the remainder.
fn index_lists(shape: Shape, jobs: usize) -> Vec<(Shape, Indices)> {
    let (xlen, ylen, zlen) = shape;
    let size = xlen * ylen * zlen;
    let nvox = size / jobs;
    // numpy fills the three flattened grids in vectorised loops and slices them (views);
    // here each job's lists are filled directly, in the same order, one z run at a time
    // (`x` and `y` repeated, `z` counting up: loops the compiler vectorises), so that the
    // indices are written once.
    (0..=jobs)
        .map(|job| {
            let start = job * nvox;
            let end = if job < jobs { start + nvox } else { size };
            let v = || super::with_hugepages(end - start);
            let (mut xs, mut ys, mut zs) = (v(), v(), v());
            let mut k = start;
            while k < end {
                // Voxel `k` in meshgrid order: k = (y * xlen + x) * zlen + z.
                let (row, z) = (k / zlen, k % zlen);
                let (y, x) = (row / xlen, row % xlen);
                let run = (zlen - z).min(end - k);
                xs.resize(xs.len() + run, x);
                ys.resize(ys.len() + run, y);
                zs.extend(z..z + run);
                k += run;
            }
            (shape, (xs, ys, zs))
        })
        .collect()
}

/// `jobs` contiguous `(start, len)` slabs covering `size` voxels.
fn slabs(size: usize, jobs: usize) -> Vec<(usize, usize)> {
    let slab = size.div_ceil(jobs);
    (0..size)
        .step_by(slab)
        .map(|start| (start, slab.min(size - start)))
        .collect()
}

/// Every output voxel is the square of its input voxel.
fn check_squares(out: &[f64], input: &[f64]) -> Res<()> {
    if out.len() != input.len() {
        return Err(format!("{} voxels, expected {}", out.len(), input.len()));
    }
    match out.iter().zip(input).position(|(o, i)| *o != i * i) {
        None => Ok(()),
        Some(k) => Err(format!(
            "voxel {k} is {}, expected {}² = {}",
            out[k],
            input[k],
            input[k] * input[k]
        )),
    }
}

const WORKLOAD: &str = "voxels";
const INDEX_LISTS: &str = "index lists";
const SLABS: &str = "slabs";

/// Creates the image (`arange` as f64, as the tutorial's `np.arange(64).reshape(4, 4, 4)`)
/// and its shared input and output. Only the first call allocates.
fn prepare(side: usize) -> Res<()> {
    if DATA.is_set() {
        return Ok(());
    }
    let size = side * side * side;
    let mut input = super::with_hugepages(size);
    input.extend((0..size).map(|i| i as f64));
    SHM.set(Shared {
        shm_in: RawArray::from_slice(&input).map_err(|e| e.to_string())?,
        shm_out: RawArray::zeros(size).map_err(|e| e.to_string())?,
    })
    .map_err(|e| e.to_string())?;
    DATA.set(Data {
        shape: (side, side, side),
        input,
    })
    .map_err(|e| e.to_string())
}

/// Measures both variants at every worker count.
pub(crate) fn run(r: &mut Runner) -> Res<()> {
    r.status("voxels: creating the image");
    prepare(r.cfg.voxel_side)?;
    let d = data();
    let shared = shm();
    let jobs = r.cfg.voxel_jobs;
    let size = d.input.len();
    let bytes = std::mem::size_of_val(&d.input[..]) as u64;
    // The index lists: three coordinates of every voxel.
    let indices = (3 * size * std::mem::size_of::<usize>()) as u64;
    let reset_shm = || {
        shared.shm_out.fill(f64::NAN);
        Ok(())
    };
    let check_shm = |_: &()| {
        let mut block = vec![0.0; BLOCK];
        for start in (0..size).step_by(BLOCK) {
            let n = BLOCK.min(size - start);
            shared
                .shm_out
                .read_range(start, &mut block[..n])
                .map_err(|e| e.to_string())?;
            check_squares(&block[..n], &d.input[start..start + n])
                .map_err(|e| format!("from voxel {start}: {e}"))?;
        }
        Ok(())
    };

    for variant in [INDEX_LISTS, SLABS] {
        let mut out = super::with_hugepages(size);
        out.resize(size, f64::NAN);
        let serial_out = RefCell::new(out);
        r.measure(
            CellId::new(WORKLOAD, variant, Backend::Serial, Strategy::Direct, None),
            Spec::limit(Limit::copy(bytes, 1)),
            || Ok(()),
            |()| {
                for (o, i) in serial_out.borrow_mut().iter_mut().zip(&d.input) {
                    *o = i * i;
                }
                Ok(())
            },
            |_| check_squares(&serial_out.borrow(), &d.input),
        );
        for &workers in &r.cfg.workers.clone() {
            let rayon_pool = rayon::ThreadPoolBuilder::new()
                .num_threads(workers)
                .build()
                .map_err(|e| e.to_string())?;
            let slab = size.div_ceil(jobs);
            // Reading every voxel and writing its square: one copy of the image.
            let squares = Limit::copy(bytes, workers);
            r.measure(
                CellId::new(
                    WORKLOAD,
                    variant,
                    Backend::Rayon,
                    Strategy::Direct,
                    Some(workers),
                ),
                Spec::limit(Limit::copy(bytes, workers)),
                || {
                    serial_out.borrow_mut().fill(f64::NAN);
                    Ok(())
                },
                |()| {
                    let mut out = serial_out.borrow_mut();
                    let out: &mut [f64] = &mut out;
                    rayon_pool.install(|| {
                        out.par_chunks_mut(slab)
                            .zip(d.input.par_chunks(slab))
                            .for_each(|(o, i)| {
                                for (o, i) in o.iter_mut().zip(i) {
                                    *o = i * i;
                                }
                            })
                    });
                    Ok(())
                },
                |_| check_squares(&serial_out.borrow(), &d.input),
            );
            for backend in Backend::POOLS {
                for strategy in Strategy::SELECTABLE {
                    let id = CellId::new(WORKLOAD, variant, backend, strategy, Some(workers));
                    if variant == INDEX_LISTS && strategy != Strategy::Shm {
                        r.not_applicable(
                            id,
                            "the tutorial's index lists index shared arrays; copy and inherit \
                             are measured with slabs",
                        );
                        continue;
                    }
                    if backend == Backend::Spawn && strategy == Strategy::Inherit {
                        r.not_applicable(id, SPAWN_INHERITS_NOTHING);
                        continue;
                    }
                    let warm = warm(variant);
                    match strategy {
                        Strategy::Shm => {
                            let (cold, warm_limit) = match (variant, backend) {
                                (INDEX_LISTS, Backend::Threads) => {
                                    let built = squares.plus_read(indices);
                                    (built, built)
                                }
                                (INDEX_LISTS, _) => {
                                    let sent = squares.plus_read(indices).plus_copy(2 * indices);
                                    let fresh = sent.plus_map(2 * bytes + indices);
                                    (fresh.plus_heap(indices), sent)
                                }
                                (_, Backend::Threads) => (squares, squares),
                                _ => (squares.plus_map(2 * bytes), squares),
                            };
                            r.measure_cold_and_warm(
                                id,
                                &warm,
                                Spec::limit(cold),
                                Spec::limit(warm_limit),
                                || Pool::with_init(backend, workers, init_shm, shared),
                                reset_shm,
                                |pool, ()| {
                                    with_pool!(pool, p => if variant == INDEX_LISTS {
                                        p.starmap(process_chunk, index_lists(d.shape, jobs)).map(drop)
                                    } else {
                                        p.starmap(process_slab, slabs(size, jobs)).map(drop)
                                    })
                                    .map_err(|e| e.to_string())
                                },
                                check_shm,
                            );
                        }
                        Strategy::Copy | Strategy::Inherit => {
                            r.measure_cold_and_warm(
                                id,
                                &warm,
                                Spec::default(),
                                Spec::default(),
                                || Pool::new(backend, workers),
                                || Ok(()),
                                |pool, ()| {
                                    let parts =
                                        with_pool!(pool, p => if strategy == Strategy::Copy {
                                            let args: Vec<Vec<f64>> = slabs(size, jobs)
                                                .into_iter()
                                                .map(|(s, n)| super::copy_of(&d.input[s..s + n]))
                                                .collect();
                                            p.map(square_slab, args)
                                        } else {
                                            p.starmap(square_inherited, slabs(size, jobs))
                                        })
                                        .map_err(|e| e.to_string())?;
                                    let mut out = super::with_hugepages(size);
                                    for part in parts {
                                        out.extend_from_slice(&part);
                                    }
                                    Ok(out)
                                },
                                |out| check_squares(out, &d.input),
                            );
                        }
                        Strategy::Direct => {}
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lists_cover_every_voxel_once_in_meshgrid_order() {
        let shape = (3, 4, 5);
        let args = index_lists(shape, 7);
        assert_eq!(args.len(), 8);
        let mut seen = vec![0; 60];
        let mut order = Vec::new();
        for (_, (xs, ys, zs)) in &args {
            for ((x, y), z) in xs.iter().zip(ys).zip(zs) {
                seen[(x * 4 + y) * 5 + z] += 1;
                order.push((*x, *y, *z));
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        assert_eq!(&order[..3], &[(0, 0, 0), (0, 0, 1), (0, 0, 2)]);
        assert_eq!(
            order[5],
            (1, 0, 0),
            "x varies before y, as np.meshgrid's xy indexing"
        );
    }

    #[test]
    fn slabs_tile_the_image() {
        assert_eq!(slabs(10, 3), vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(slabs(8, 8).len(), 8);
    }
}
