//! A large payload: a 100 MB argument (the task returns its sum) and a 100 MB result (the
//! task makes it from a length), on pools created beforehand (untimed), one task at a time
//! (`apply`). The rate column is payload bytes per second.
//!
//! - **copy**: the payload is the argument or the result, a `Vec<f64>`: encoded, sent and
//!   decoded on process backends (a large argument or result crosses in a shared-memory
//!   transport buffer), moved on threads. The argument's copy for the next run is made
//!   before the run (untimed), so the time is the transfer alone. The variant "argument,
//!   Packed" sends the same values as a [`Packed`] — one block of bytes (`serialize_bytes`),
//!   as numpy pickles an array; the codec writes a plain `Vec<f64>` as one block too, but a
//!   process worker reads a `Packed` where it arrived (the shared-memory buffer) instead of
//!   copying it into a vector of its own, so the two rows differ by that copy. Likewise
//!   "result, Packed": the caller reads a `Packed` result in the worker's buffer (the worker
//!   writes that buffer again once the caller has dropped the result), where a `Vec` result
//!   is copied into fresh pages of the caller's.
//! - **shm**: the payload goes through a [`RawArray`] made before the pool: the parent
//!   copies the argument into it and the task reads it there; the task writes the result
//!   into it and the parent copies it out into a new `Vec`. Both copies are timed: they are
//!   the cost of this strategy when the data does not originate in shared memory.
//!
//! Inheritance cannot deliver a payload made after the pool exists (the sum measures it).
//!
//! Every pool row here is a warm row: one pool per backend is created before the cells and
//! reused by all of them; each of its workers first makes two results (untimed: a worker's
//! memory is in its steady state from its third 100 MiB result on), then each cell's
//! warm-up run (untimed, its time in `results.json` as `warmup_s`), so every timed run is a
//! repeated use. The limit of a row is
//! one copy of the payload on one thread, plus one pass over it for the shm rows (the task
//! reads the argument there, or writes the result there).

use multiproc_core::{Executor, Inherited, Packed};
use multiproc_shared_array::RawArray;

use serde::{Deserialize, Serialize};

use super::{chunk_sum, random_f64s, same_f64, Lanes, BLOCK};
use crate::backend::{Backend, Pool, Strategy};
use crate::limits::Limit;
use crate::runner::{CellId, Rate, Runner, Spec};
use crate::{with_pool, Res};

/// The exchange arrays, set once before any pool (by the initializer in a spawned worker).
#[derive(Serialize, Deserialize)]
struct Data {
    arg: RawArray<f64>,
    result: RawArray<f64>,
}

static DATA: Inherited<Data> = Inherited::new("payload DATA");

/// A spawned worker's initializer.
fn init_shm(shared: Data) {
    let _ = DATA.set(shared);
}

fn data() -> &'static Data {
    DATA.get()
        .expect("the payload arrays are created before any pool")
}

/// The argument variant's task.
fn sum_vec(values: Vec<f64>) -> f64 {
    chunk_sum(&values)
}

/// The packed argument variant's task.
fn sum_packed(values: Packed<f64>) -> f64 {
    chunk_sum(&values)
}

/// The argument variant's task on shared memory: sums the first `len` elements.
fn sum_shm(len: usize) -> f64 {
    let mut lanes = Lanes::default();
    let mut buf = vec![0.0; BLOCK.min(len)];
    for start in (0..len).step_by(BLOCK) {
        let block = &mut buf[..BLOCK.min(len - start)];
        data()
            .arg
            .read_range(start, block)
            .expect("within the array");
        lanes.add(block);
    }
    lanes.total()
}

/// The result's `i`-th value.
fn value(i: usize) -> f64 {
    i as f64 * 0.5
}

/// The result variant's task.
fn make_vec(len: usize) -> Vec<f64> {
    let mut v = super::with_hugepages(len);
    v.extend((0..len).map(value));
    v
}

/// The packed result variant's task: the same values as a [`Packed`].
fn make_packed(len: usize) -> Packed<f64> {
    Packed::new(make_vec(len))
}

/// The result variant's task on shared memory: writes the result there.
fn make_shm(len: usize) {
    let mut buf = vec![0.0; BLOCK.min(len)];
    for start in (0..len).step_by(BLOCK) {
        let block = &mut buf[..BLOCK.min(len - start)];
        for (k, v) in block.iter_mut().enumerate() {
            *v = value(start + k);
        }
        data()
            .result
            .write_range(start, block)
            .expect("within the array");
    }
}

const WORKLOAD: &str = "payload";

/// Measures both variants at every worker count.
pub(crate) fn run(r: &mut Runner) -> Res<()> {
    let mb = r.cfg.payload_mb;
    let len = crate::config::Config::f64s(mb);
    r.status("payload: creating the data");
    let arg = random_f64s(len, 0xA46);
    if !DATA.is_set() {
        DATA.set(Data {
            arg: RawArray::zeros(len).map_err(|e| e.to_string())?,
            result: RawArray::zeros(len).map_err(|e| e.to_string())?,
        })
        .map_err(|e| e.to_string())?;
        // Touch the exchange arrays once, so that no run pays their first page faults.
        data().arg.write_range(0, &arg).map_err(|e| e.to_string())?;
        make_shm(len);
    }
    let expected_sum = chunk_sum(&arg);
    let expected_result = make_vec(len);
    let bytes = (len * 8) as u64;
    let arg_variant = format!("{mb} MiB argument");
    let result_variant = format!("{mb} MiB result");
    let packed_variant = format!("{mb} MiB argument, Packed");
    let packed_result_variant = format!("{mb} MiB result, Packed");
    let spec = Spec::rate(Rate::Throughput(bytes));
    // The least any transport does: one copy of the payload, on one thread; the shm rows
    // add a pass over it (the task reads the argument there, or writes the result there
    // before the parent copies it out).
    let one_copy = Limit::copy(bytes, 1);
    // A copied result is decoded into a new allocation in the parent: fresh heap pages
    // (4 KiB ones: the decoder allocates plainly) before its one copy.
    let fresh_result = one_copy.plus_heap(bytes);
    let check_result = |got: &Vec<f64>| {
        if *got == expected_result {
            Ok(())
        } else {
            Err("the result differs from the serial one".into())
        }
    };

    r.measure(
        CellId::new(
            WORKLOAD,
            &arg_variant,
            Backend::Serial,
            Strategy::Direct,
            None,
        ),
        spec.with_limit(Limit::read(bytes, 1)),
        || Ok(arg.clone()),
        |values| Ok(sum_vec(values)),
        |&got| same_f64("sum", got, expected_sum),
    );
    r.measure(
        CellId::new(
            WORKLOAD,
            &result_variant,
            Backend::Serial,
            Strategy::Direct,
            None,
        ),
        spec,
        || Ok(()),
        |()| Ok(make_vec(len)),
        check_result,
    );
    for &workers in &r.cfg.workers.clone() {
        for backend in Backend::POOLS {
            for variant in [
                &arg_variant,
                &packed_variant,
                &result_variant,
                &packed_result_variant,
            ] {
                r.not_applicable(
                    CellId::new(WORKLOAD, variant, backend, Strategy::Inherit, Some(workers)),
                    "the payload is made after the pool exists: inheritance cannot deliver it",
                );
            }
            if let Some(reason) = backend.unavailable() {
                for (s, variants) in [
                    (
                        Strategy::Copy,
                        &[
                            &arg_variant,
                            &packed_variant,
                            &result_variant,
                            &packed_result_variant,
                        ][..],
                    ),
                    (Strategy::Shm, &[&arg_variant, &result_variant][..]),
                ] {
                    for variant in variants {
                        let id = CellId::new(WORKLOAD, variant.as_str(), backend, s, Some(workers));
                        r.not_applicable(id, reason);
                    }
                }
                continue;
            }
            if !(r.wants(backend, Strategy::Copy) || r.wants(backend, Strategy::Shm)) {
                continue;
            }
            let pool = Pool::with_init(backend, workers, init_shm, data())?;
            if backend != Backend::Threads && r.wants(backend, Strategy::Copy) {
                // A worker's allocator reaches its steady state for a 100 MiB result only
                // after two of them (it places the second elsewhere: a worker's first three
                // took 190, 110 and 57 ms here), and results alternate between workers when
                // the caller is slower than a supervisor's spin: two per worker, untimed, so
                // that the warm rows are warm on every worker.
                with_pool!(pool, p => p.map_chunked(make_vec, vec![len; 2 * workers], 1))
                    .map_err(|e| e.to_string())?;
                pool.account();
            }
            // On threads a copied argument or result is moved, not copied: no limit.
            let copied = if backend == Backend::Threads {
                spec
            } else {
                spec.with_limit(one_copy)
            };
            let id = |variant: &str, s| CellId::new(WORKLOAD, variant, backend, s, Some(workers));
            r.measure(
                id(&arg_variant, Strategy::Copy),
                copied,
                || Ok(arg.clone()),
                |values| {
                    let out = with_pool!(pool, p => p.apply(sum_vec, values));
                    pool.account();
                    out.map_err(|e| e.to_string())
                },
                |&got| same_f64("sum", got, expected_sum),
            );
            r.measure(
                id(&packed_variant, Strategy::Copy),
                copied,
                || Ok(Packed::new(arg.clone())),
                |values| {
                    let out = with_pool!(pool, p => p.apply(sum_packed, values));
                    pool.account();
                    out.map_err(|e| e.to_string())
                },
                |&got| same_f64("sum", got, expected_sum),
            );
            r.measure(
                id(&arg_variant, Strategy::Shm),
                spec.with_limit(one_copy.plus_read(bytes)),
                || Ok(()),
                |()| {
                    data().arg.write_range(0, &arg).map_err(|e| e.to_string())?;
                    let out = with_pool!(pool, p => p.apply(sum_shm, len));
                    pool.account();
                    out.map_err(|e| e.to_string())
                },
                |&got| same_f64("sum", got, expected_sum),
            );
            let result_copied = if backend == Backend::Threads {
                spec
            } else {
                spec.with_limit(fresh_result)
            };
            r.measure(
                id(&result_variant, Strategy::Copy),
                result_copied,
                || Ok(()),
                |()| {
                    let out = with_pool!(pool, p => p.apply(make_vec, len));
                    pool.account();
                    out.map_err(|e| e.to_string())
                },
                check_result,
            );
            r.measure(
                id(&packed_result_variant, Strategy::Copy),
                copied,
                || Ok(()),
                |()| {
                    let out = with_pool!(pool, p => p.apply(make_packed, len));
                    pool.account();
                    out.map_err(|e| e.to_string())
                },
                |got: &Packed<f64>| {
                    if got[..] == expected_result[..] {
                        Ok(())
                    } else {
                        Err("the result differs from the serial one".into())
                    }
                },
            );
            r.measure(
                id(&result_variant, Strategy::Shm),
                spec.with_limit(one_copy.plus_read(bytes)),
                || {
                    data().result.fill(f64::NAN);
                    Ok(())
                },
                |()| {
                    let out = with_pool!(pool, p => p.apply(make_shm, len));
                    pool.account();
                    out.map_err(|e| e.to_string())?;
                    Ok(data().result.to_vec())
                },
                check_result,
            );
            pool.finish()?;
        }
    }
    Ok(())
}
