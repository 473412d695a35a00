//! A pool row in its two lives: **cold**, the tutorial's `with Pool(n) as p: p.map(...)`
//! (each timed run creates the pool, runs the tasks, closes and joins it), and **warm**, a
//! pool created once before the cell (untimed) and reused by the warm-up and every timed run
//! (the pool a program keeps for many maps). A workload writes its work on a pool once and
//! gets both rows.

use crate::backend::{Pool, Strategy};
use crate::runner::{Cell, CellId, Outcome, Runner, Spec};
use crate::Res;

/// Why a copy row has no warm twin.
pub(crate) const COPY_IS_COLD: &str = "the copy strategy moves all the data every run, warm \
    pool or not: its cold row is its cost (warm rows are measured for the sharing strategies)";

/// The variant of a warm row whose cold row is `variant` (`index lists` → `index lists,
/// warm pool`).
pub(crate) fn warm(variant: &str) -> String {
    format!("{variant}, warm pool")
}

impl Runner {
    /// Measures `id` cold (each run: `make`, `work`, close and join) and its warm twin, the
    /// variant `warm_variant` (`make` once before the cell, `work` on it each run, close and
    /// join after). `setup` and `check` are those of [`Runner::measure`]. A copy row's warm
    /// twin is n/a ([`COPY_IS_COLD`]): it would move the same data again, and take as long.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn measure_cold_and_warm<S, T>(
        &mut self,
        id: CellId,
        warm_variant: &str,
        spec: Spec,
        warm_spec: Spec,
        make: impl Fn() -> Res<Pool>,
        mut setup: impl FnMut() -> Res<S>,
        work: impl Fn(&Pool, S) -> Res<T>,
        mut check: impl FnMut(&T) -> Res<()>,
    ) {
        let warm_id = CellId {
            variant: warm_variant.to_string(),
            ..id.clone()
        };
        let copy = id.strategy == Strategy::Copy;
        self.measure_cold(id, spec, &make, &mut setup, &work, &mut check);
        if copy {
            self.not_applicable(warm_id, COPY_IS_COLD);
        } else {
            self.measure_warm(warm_id, warm_spec, &make, setup, &work, check);
        }
    }

    /// Measures `id` cold only: each run `make`s a pool, `work`s on it, closes and joins it.
    pub(crate) fn measure_cold<S, T>(
        &mut self,
        id: CellId,
        spec: Spec,
        make: impl Fn() -> Res<Pool>,
        setup: impl FnMut() -> Res<S>,
        work: impl Fn(&Pool, S) -> Res<T>,
        check: impl FnMut(&T) -> Res<()>,
    ) {
        self.measure(
            id,
            spec,
            setup,
            |s| {
                let pool = make()?;
                let out = work(&pool, s)?;
                pool.finish()?;
                Ok(out)
            },
            check,
        );
    }

    /// Measures `id` on one pool made by `make` before the cell (untimed) and closed after
    /// it: the warm-up run is the pool's first use, the timed runs reuse it.
    pub(crate) fn measure_warm<S, T>(
        &mut self,
        id: CellId,
        spec: Spec,
        make: impl FnOnce() -> Res<Pool>,
        setup: impl FnMut() -> Res<S>,
        work: impl Fn(&Pool, S) -> Res<T>,
        check: impl FnMut(&T) -> Res<()>,
    ) {
        if !self.wants(id.backend, id.strategy) {
            return;
        }
        let pool = match make() {
            Ok(pool) => pool,
            Err(error) => return self.failed(id, error),
        };
        self.measure(
            id,
            spec,
            setup,
            |s| {
                let out = work(&pool, s);
                pool.account();
                out
            },
            check,
        );
        if let Err(error) = pool.finish() {
            self.progress()
                .println(format!("FAILED closing a warm pool: {error}"));
            if let Some(cell) = self.cells.last_mut() {
                cell.outcome = Outcome::Failed { error };
            }
        }
    }

    /// Records a cell that failed before it could run.
    pub(crate) fn failed(&mut self, id: CellId, error: String) {
        self.progress().println(format!(
            "FAILED {} {} {}: {error}",
            id.workload,
            id.variant,
            id.how()
        ));
        self.cells.push(Cell {
            id,
            outcome: Outcome::Failed { error },
            rate: None,
            limit: None,
            pid: std::process::id(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::config::Config;
    use std::cell::Cell as Counter;

    #[test]
    fn the_cold_row_makes_a_pool_per_run_and_the_warm_row_one_pool() {
        let mut r = Runner::new(Config::for_tests(), 1);
        let made = Counter::new(0);
        let id = CellId::new("t", "map", Backend::Threads, Strategy::Inherit, Some(2));
        r.measure_cold_and_warm(
            id,
            &warm("map"),
            Spec::default(),
            Spec::default(),
            || {
                made.set(made.get() + 1);
                Pool::new(Backend::Threads, 2)
            },
            || Ok(()),
            |_, ()| Ok(1),
            |&x| if x == 1 { Ok(()) } else { Err("wrong".into()) },
        );
        // cold: one warm-up and three timed runs; warm: one pool.
        assert_eq!(made.get(), 4 + 1);
        let variants: Vec<&str> = r.cells.iter().map(|c| c.id.variant.as_str()).collect();
        assert_eq!(variants, ["map", "map, warm pool"]);
        assert!(r.cells.iter().all(|c| c.measured().is_some()));
    }

    #[test]
    fn a_copy_row_has_an_na_warm_twin() {
        let mut r = Runner::new(Config::for_tests(), 1);
        let id = CellId::new("t", "map", Backend::Threads, Strategy::Copy, Some(2));
        r.measure_cold_and_warm(
            id,
            &warm("map"),
            Spec::default(),
            Spec::default(),
            || Pool::new(Backend::Threads, 2),
            || Ok(()),
            |_, ()| Ok(()),
            |_| Ok(()),
        );
        assert!(r.cells[0].measured().is_some());
        assert!(matches!(
            &r.cells[1].outcome,
            Outcome::NotApplicable { reason } if reason == COPY_IS_COLD
        ));
    }

    #[test]
    fn a_warm_pool_that_cannot_start_is_a_failed_row() {
        let mut r = Runner::new(Config::for_tests(), 1);
        let id = CellId::new(
            "t",
            "map, warm pool",
            Backend::Threads,
            Strategy::Copy,
            Some(2),
        );
        r.measure_warm(
            id,
            Spec::default(),
            || Err("no pool".to_string()),
            || Ok(()),
            |_, ()| Ok(()),
            |_| Ok(()),
        );
        assert!(matches!(
            &r.cells[0].outcome,
            Outcome::Failed { error } if error == "no pool"
        ));
    }
}
