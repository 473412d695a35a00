//! Per-task overhead: many trivial tasks (`x + 1`) through `map` with chunk size 1 and with
//! Python's default chunk size, and through `apply_async` + `get` one task at a time, on
//! pools created beforehand (untimed), so that the time is dispatch alone.
//!
//! Baselines: a serial loop, and rayon splitting the same items into pieces of exactly the
//! same size (`with_min_len`/`with_max_len`) — the same chunking without multiproc's result
//! delivery (and, for process backends, without crossing a process boundary); for
//! `apply_async`, one `rayon::Scope::spawn` per task.
//!
//! The variant `apply, one at a time` sends at most 1000 tasks with `apply`, each waiting for
//! its result: a round trip per task, whose limit is the raw Unix-socket round trip between
//! two processes of the limits rows.

use std::sync::mpsc;

use multiproc_core::{default_chunksize, Executor};
use rayon::prelude::*;

use crate::backend::{Backend, Pool, Strategy};
use crate::limits::Limit;
use crate::runner::{CellId, Rate, Runner, Spec};
use crate::{with_pool, Res};

/// The trivial task.
fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

const WORKLOAD: &str = "overhead";

fn same(got: &[u64], expected: &[u64]) -> Res<()> {
    if got == expected {
        Ok(())
    } else {
        Err("the results differ from the serial ones".into())
    }
}

/// The variant of single round trips.
pub(crate) const APPLY: &str = "apply, one at a time";

/// Round trips of the `apply` variant: at most 1000 (each is a wake-up on both sides; 2000 until 2026-12-02, halved to keep `all` within 3 minutes: Python's round trip here is 0.4–0.7 ms).
pub(crate) fn apply_tasks(tasks: usize) -> u64 {
    tasks.min(1_000) as u64
}

/// `apply` one task after the other: each task is a round trip to a worker, the limit is a
/// raw Unix-socket round trip between two processes (the limits rows). rayon's counterpart is
/// one `install` per task.
fn apply_one_at_a_time(
    r: &mut Runner,
    workers: usize,
    rayon_pool: &rayon::ThreadPool,
    pools: &[(Backend, Res<Pool>)],
) {
    let n = apply_tasks(r.cfg.tasks);
    let expected: Vec<u64> = (0..n).map(inc).collect();
    let spec = Spec::rate(Rate::PerTask(n));
    let id = |backend, strategy, w| CellId::new(WORKLOAD, APPLY, backend, strategy, w);
    if workers == r.cfg.workers[0] {
        r.measure(
            id(Backend::Serial, Strategy::Direct, None),
            spec,
            || Ok(()),
            |()| Ok((0..n).map(inc).collect::<Vec<u64>>()),
            |got| same(got, &expected),
        );
    }
    r.measure(
        id(Backend::Rayon, Strategy::Direct, Some(workers)),
        spec,
        || Ok(()),
        |()| {
            Ok((0..n)
                .map(|i| rayon_pool.install(|| inc(i)))
                .collect::<Vec<u64>>())
        },
        |got| same(got, &expected),
    );
    for (backend, pool) in pools {
        let spec = match backend {
            Backend::Threads => spec,
            _ => spec.with_limit(Limit::trips(n)),
        };
        r.measure(
            id(*backend, Strategy::Copy, Some(workers)),
            spec,
            || Ok(()),
            |()| {
                let pool = pool.as_ref().map_err(Clone::clone)?;
                let out = with_pool!(pool, p => (0..n).map(|i| p.apply(inc, i)).collect::<multiproc_core::Result<Vec<u64>>>())
                    .map_err(|e| e.to_string());
                pool.account();
                out
            },
            |got| same(got, &expected),
        );
    }
}

/// Measures the variants at every worker count.
pub(crate) fn run(r: &mut Runner) -> Res<()> {
    let tasks = r.cfg.tasks as u64;
    let items: Vec<u64> = (0..tasks).collect();
    let expected: Vec<u64> = items.iter().copied().map(inc).collect();
    let spec = Spec::rate(Rate::PerTask(tasks));
    for &workers in &r.cfg.workers.clone() {
        let default = default_chunksize(items.len(), workers).get();
        let variants = [
            ("map chunksize=1".to_string(), Some(1)),
            ("map default chunksize".to_string(), Some(default)),
            ("apply_async+get".to_string(), None),
        ];
        let rayon_pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .build()
            .map_err(|e| e.to_string())?;
        let pools: Vec<(Backend, Res<Pool>)> = Backend::POOLS
            .into_iter()
            .filter(|&b| r.wants(b, Strategy::Copy) && b.unavailable().is_none())
            .map(|b| (b, Pool::new(b, workers)))
            .collect();
        for (variant, chunksize) in &variants {
            let id = |backend, strategy, w| CellId::new(WORKLOAD, variant, backend, strategy, w);
            if workers == r.cfg.workers[0] {
                r.measure(
                    id(Backend::Serial, Strategy::Direct, None),
                    spec,
                    || Ok(()),
                    |()| Ok(items.iter().copied().map(inc).collect::<Vec<u64>>()),
                    |got| same(got, &expected),
                );
            }
            r.measure(
                id(Backend::Rayon, Strategy::Direct, Some(workers)),
                spec,
                || Ok(()),
                |()| {
                    Ok(rayon_pool.install(|| match chunksize {
                        Some(len) => items
                            .par_iter()
                            .copied()
                            .with_min_len(*len)
                            .with_max_len(*len)
                            .map(inc)
                            .collect::<Vec<u64>>(),
                        None => {
                            let (tx, rx) = mpsc::channel();
                            rayon::scope(|s| {
                                for &i in &items {
                                    let tx = tx.clone();
                                    s.spawn(move |_| {
                                        let _ = tx.send((i, inc(i)));
                                    });
                                }
                            });
                            drop(tx);
                            let mut out = vec![0; items.len()];
                            for (i, v) in rx {
                                out[i as usize] = v;
                            }
                            out
                        }
                    }))
                },
                |got| same(got, &expected),
            );
            for backend in Backend::POOLS {
                for strategy in [Strategy::Inherit, Strategy::Shm] {
                    r.not_applicable(
                        id(backend, strategy, Some(workers)),
                        "trivial tasks: there is no data to share",
                    );
                }
                let Some((_, pool)) = pools.iter().find(|(b, _)| *b == backend) else {
                    if let Some(reason) = backend.unavailable() {
                        r.not_applicable(id(backend, Strategy::Copy, Some(workers)), reason);
                    }
                    continue;
                };
                r.measure(
                    id(backend, Strategy::Copy, Some(workers)),
                    spec,
                    || Ok(()),
                    |()| {
                        let pool = pool.as_ref().map_err(Clone::clone)?;
                        let out = with_pool!(pool, p => match chunksize {
                            Some(len) => p.map_chunked(inc, items.clone(), *len),
                            None => items
                                .iter()
                                .map(|&i| p.apply_async(inc, i))
                                .collect::<multiproc_core::Result<Vec<_>>>()
                                .and_then(|pending| pending.into_iter().map(|r| r.get()).collect()),
                        })
                        .map_err(|e| e.to_string());
                        pool.account();
                        out
                    },
                    |got| same(got, &expected),
                );
            }
        }
        apply_one_at_a_time(r, workers, &rayon_pool, &pools);
        for (_, pool) in pools {
            pool?.finish()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apply_variant_caps_its_round_trips() {
        assert_eq!(apply_tasks(10_000), 1_000);
        assert_eq!(apply_tasks(300), 300);
    }
}
