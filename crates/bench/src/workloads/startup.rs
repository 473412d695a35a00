//! Pool start-up and shutdown: create a pool, run one task per worker (so that every worker
//! is really up), close and join it — Python's `with Pool(n) as p: p.map(f, range(n))`. The
//! memory column shows what the pool adds to the process tree while it exists. A process
//! pool's limit is starting its workers (a fork, or this binary spawned again), reaping
//! them, and one round trip between (the workers answer their tasks side by side).

use multiproc_core::Executor;

use crate::backend::{Backend, Pool, Strategy};
use crate::limits::Limit;
use crate::runner::{CellId, Runner, Spec};
use crate::{with_pool, Res};

/// The one task per worker.
fn inc(x: u64) -> u64 {
    x + 1
}

const WORKLOAD: &str = "startup";
const VARIANT: &str = "create+task+close";

/// Measures start-up at every worker count.
pub(crate) fn run(r: &mut Runner) -> Res<()> {
    for &workers in &r.cfg.workers.clone() {
        let expected: u64 = (0..workers as u64).map(inc).sum();
        let check = |&got: &u64| {
            if got == expected {
                Ok(())
            } else {
                Err(format!("got {got}, expected {expected}"))
            }
        };
        r.measure(
            CellId::new(
                WORKLOAD,
                VARIANT,
                Backend::Rayon,
                Strategy::Direct,
                Some(workers),
            ),
            Spec::default(),
            || Ok(()),
            |()| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(workers)
                    .build()
                    .map_err(|e| e.to_string())?;
                let (tx, rx) = std::sync::mpsc::channel();
                for i in 0..workers as u64 {
                    let tx = tx.clone();
                    pool.spawn(move || {
                        let _ = tx.send(inc(i));
                    });
                }
                drop(tx);
                let sum = rx.iter().sum::<u64>();
                drop(pool);
                Ok(sum)
            },
            check,
        );
        for backend in Backend::POOLS {
            let children = workers as u64;
            let spec = match backend {
                Backend::Fork => Spec::limit(Limit::forks(children).plus_trips(1)),
                Backend::Spawn => Spec::limit(Limit::spawns(children).plus_trips(1)),
                _ => Spec::default(),
            };
            r.measure(
                CellId::new(WORKLOAD, VARIANT, backend, Strategy::Direct, Some(workers)),
                spec,
                || Ok(()),
                |()| {
                    let pool = Pool::new(backend, workers)?;
                    let got = with_pool!(&pool, p => p.map_chunked(inc, 0..workers as u64, 1))
                        .map_err(|e| e.to_string())?;
                    pool.finish()?;
                    Ok(got.iter().sum::<u64>())
                },
                check,
            );
        }
    }
    Ok(())
}
