//! The cells of the matrix and the runner that measures them: a warm-up run sampled for
//! memory, then timed repetitions, each result checked against the serial one.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Strategy};
use crate::config::Config;
use crate::limits::Limit;
use crate::memory::{self, Point, Sampler};
use crate::stats::{self, Samples};
use crate::Res;

/// Which cell: a workload's variant, on one backend, with one data strategy and a worker
/// count (`None` for serial, which has no workers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct CellId {
    /// The workload (`sum`, `voxels`, ...).
    pub workload: String,
    /// The variant within the workload (`index lists`, `map chunksize=1`, ...).
    pub variant: String,
    /// The backend.
    pub backend: Backend,
    /// How the data reaches the workers.
    pub strategy: Strategy,
    /// Worker threads or processes.
    pub workers: Option<usize>,
}

impl CellId {
    /// A cell id.
    pub(crate) fn new(
        workload: impl Into<String>,
        variant: impl Into<String>,
        backend: Backend,
        strategy: Strategy,
        workers: Option<usize>,
    ) -> CellId {
        CellId {
            workload: workload.into(),
            variant: variant.into(),
            backend,
            strategy,
            workers,
        }
    }

    /// `backend/strategy` as shown in the tables.
    pub(crate) fn how(&self) -> String {
        match self.strategy {
            Strategy::Direct => self.backend.name().to_string(),
            s => format!("{}/{}", self.backend, s),
        }
    }
}

/// A unit cost derived from the median.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) enum Rate {
    /// The median divided by this many tasks, shown in µs per task.
    PerTask(u64),
    /// This many bytes per median, shown in GB/s.
    Throughput(u64),
    /// The median divided by this many pages, shown in µs per page.
    PerPage(u64),
    /// The median divided by this many round trips, shown in µs per round trip.
    PerTrip(u64),
    /// The median divided by this many child processes, shown in µs per child.
    PerChild(u64),
}

impl Rate {
    /// The value and its unit for a median of `median`.
    pub(crate) fn show(self, median: Duration) -> (f64, &'static str) {
        match self {
            Rate::PerTask(n) => (median.as_secs_f64() * 1e6 / n.max(1) as f64, "µs/task"),
            Rate::Throughput(b) => (b as f64 / median.as_secs_f64() / 1e9, "GB/s"),
            Rate::PerPage(n) => (median.as_secs_f64() * 1e6 / n.max(1) as f64, "µs/page"),
            Rate::PerTrip(n) => (median.as_secs_f64() * 1e6 / n.max(1) as f64, "µs/trip"),
            Rate::PerChild(n) => (median.as_secs_f64() * 1e6 / n.max(1) as f64, "µs/child"),
        }
    }
}

/// What a cell declares about itself, beside its timings.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Spec {
    /// A unit cost to show beside the time.
    pub rate: Option<Rate>,
    /// What bounds the cell from below (see [`Limit`]).
    pub limit: Option<Limit>,
}

impl Spec {
    /// A cell with a unit cost.
    pub(crate) fn rate(rate: Rate) -> Spec {
        Spec {
            rate: Some(rate),
            limit: None,
        }
    }

    /// A cell with a limit.
    pub(crate) fn limit(limit: Limit) -> Spec {
        Spec {
            rate: None,
            limit: Some(limit),
        }
    }

    /// The same with a limit.
    pub(crate) fn with_limit(self, limit: Limit) -> Spec {
        Spec {
            limit: Some(limit),
            ..self
        }
    }
}

/// A measured cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Measurement {
    /// Median of the timed runs, seconds.
    pub median_s: f64,
    /// Fastest timed run, seconds.
    pub min_s: f64,
    /// Slowest timed run, seconds.
    pub max_s: f64,
    /// Number of timed runs.
    pub reps: usize,
    /// The warm-up run, seconds (sampled for memory, not counted in the timings).
    pub warmup_s: f64,
    /// The process tree's PSS just before the warm-up, bytes.
    pub base_pss: u64,
    /// The largest PSS of the process tree seen during the warm-up, bytes.
    pub peak_pss: u64,
    /// Bytes of encoded arguments and results moved between processes per timed run, as the
    /// pools counted them (0 in-process).
    pub ipc_bytes: u64,
    /// The unit cost, if the workload has one: `(value, unit)`.
    pub per_item: Option<(f64, String)>,
    /// The PSS samples of the warm-up: `(seconds, bytes)`.
    pub memory_trace: Vec<Point>,
}

impl Measurement {
    /// Peak PSS above what the tree held before the run, bytes.
    pub(crate) fn extra_pss(&self) -> u64 {
        self.peak_pss.saturating_sub(self.base_pss)
    }
}

/// What became of a cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// It ran and its results were right.
    Measured(Measurement),
    /// The pairing makes no sense (or cannot run in this build), and why.
    NotApplicable {
        /// Why.
        reason: String,
    },
    /// It failed, or computed a wrong result.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// One cell of the matrix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Cell {
    /// Which cell.
    #[serde(flatten)]
    pub id: CellId,
    /// What came of it.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The unit cost it declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// What bounds it from below, if it declared it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    /// The process that measured it (`all` runs each workload in a process of its own).
    pub pid: u32,
}

impl Cell {
    /// The measurement, if the cell was measured.
    pub(crate) fn measured(&self) -> Option<&Measurement> {
        match &self.outcome {
            Outcome::Measured(m) => Some(m),
            _ => None,
        }
    }
}

/// How a line on stderr of a workload's own process (`isolate.rs`) starts when it says what
/// runs now; its parent shows the rest on its bar.
pub(crate) const PROGRESS: &str = "progress: ";

/// Where a runner says what it is doing: its progress bar (on stderr, drawn only on a
/// terminal), or, in a workload's own process, lines on stderr for the parent's bar.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    bar: ProgressBar,
    lines: bool,
}

impl Progress {
    /// Says what runs now.
    pub(crate) fn message(&self, msg: impl Into<std::borrow::Cow<'static, str>>) {
        if self.lines {
            eprintln!("{PROGRESS}{}", msg.into());
        } else {
            self.bar.set_message(msg);
        }
    }

    /// A line above the bar (a failure).
    pub(crate) fn println(&self, line: impl AsRef<str>) {
        if self.lines {
            eprintln!("{}", line.as_ref());
        } else {
            self.bar.println(line);
        }
    }
}

/// Measures cells and collects them.
#[derive(Debug)]
pub(crate) struct Runner {
    /// The options of this run.
    pub cfg: Config,
    /// Every cell so far, in the order they ran.
    pub cells: Vec<Cell>,
    progress: Progress,
}

impl Runner {
    /// A runner with a progress bar (on stderr, drawn only on a terminal) over `workloads`
    /// steps.
    pub(crate) fn new(cfg: Config, workloads: u64) -> Runner {
        let bar = ProgressBar::new(workloads);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:24} {pos}/{len} {msg}",
            )
            .expect("a valid progress template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Runner {
            cfg,
            cells: Vec::new(),
            progress: Progress { bar, lines: false },
        }
    }

    /// A runner for a workload's own process: no bar; what it is doing goes to stderr as
    /// [`PROGRESS`] lines, failures as plain lines, for the parent to show.
    pub(crate) fn relaying(cfg: Config) -> Runner {
        Runner {
            cfg,
            cells: Vec::new(),
            progress: Progress {
                bar: ProgressBar::hidden(),
                lines: true,
            },
        }
    }

    /// The progress bar, for stages outside cells (the Python run, a workload's process).
    pub(crate) fn bar(&self) -> &ProgressBar {
        &self.progress.bar
    }

    /// Where to say what runs now and report failures.
    pub(crate) fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Says what is being prepared.
    pub(crate) fn status(&self, msg: impl Into<std::borrow::Cow<'static, str>>) {
        self.progress.message(msg);
    }

    /// One step of the bar is done.
    pub(crate) fn step(&self) {
        self.progress.bar.inc(1);
    }

    /// Ends the bar.
    pub(crate) fn finish(&self) {
        self.progress.bar.finish_and_clear();
    }

    /// Whether the options select this backend and strategy.
    pub(crate) fn wants(&self, backend: Backend, strategy: Strategy) -> bool {
        self.cfg.backends.contains(&backend)
            && (strategy == Strategy::Direct || self.cfg.strategies.contains(&strategy))
    }

    /// Records a pairing that makes no sense, with the reason (if the options select it).
    pub(crate) fn not_applicable(&mut self, id: CellId, reason: impl Into<String>) {
        if self.wants(id.backend, id.strategy) {
            self.cells.push(Cell {
                id,
                outcome: Outcome::NotApplicable {
                    reason: reason.into(),
                },
                rate: None,
                limit: None,
                pid: std::process::id(),
            });
        }
    }

    /// Measures one cell, if the options select it: `setup` (untimed) prepares each run's
    /// input, `body` is the timed run, `check` compares its result with the serial one.
    /// One warm-up run is sampled for memory; then up to `reps` timed runs (fewer if they
    /// would take longer than the cell budget, but three while they take less than three
    /// budgets: [`stats::one_more_run`]).
    pub(crate) fn measure<S, T>(
        &mut self,
        id: CellId,
        spec: Spec,
        mut setup: impl FnMut() -> Res<S>,
        mut body: impl FnMut(S) -> Res<T>,
        mut check: impl FnMut(&T) -> Res<()>,
    ) {
        if !self.wants(id.backend, id.strategy) {
            return;
        }
        if let Some(reason) = id.backend.unavailable() {
            return self.not_applicable(id, reason);
        }
        let label = format!(
            "{} {} {}{}",
            id.workload,
            id.variant,
            id.how(),
            id.workers.map(|w| format!(" ×{w}")).unwrap_or_default()
        );
        let interval = Duration::from_millis(self.cfg.sample_ms);
        let limit = Duration::from_secs_f64(self.cfg.cell_timeout);
        let guarded = |out: Res<T>| -> Res<T> {
            if crate::backend::disarm() {
                Err(format!(
                    "no result after {} s: the watchdog killed the workers ({})",
                    limit.as_secs_f64(),
                    out.err().unwrap_or_else(|| "the run then returned".into())
                ))
            } else {
                out
            }
        };
        let (reps, budget) = (
            self.cfg.reps,
            Duration::from_secs_f64(self.cfg.cell_seconds),
        );
        let progress = self.progress.clone();
        let mut run = || -> Res<Measurement> {
            progress.message(format!("{label}: warm-up"));
            let input = setup()?;
            let base_pss = multiproc_core::self_tree_pss().map_err(|e| e.to_string())?;
            let sampler = Sampler::start(interval);
            crate::backend::arm(limit);
            let t = Instant::now();
            let out = body(input);
            let warmup = t.elapsed();
            let out = guarded(out);
            let trace = sampler.stop();
            check(&out?).map_err(|e| format!("wrong result (warm-up): {e}"))?;
            let mut times = Vec::with_capacity(reps);
            let ipc_before = crate::backend::ipc_bytes();
            while stats::one_more_run(&times, reps, budget) {
                let i = times.len();
                progress.message(format!("{label}: run {}", i + 1));
                let input = setup()?;
                crate::backend::arm(limit);
                let t = Instant::now();
                let out = std::hint::black_box(body(input));
                times.push(t.elapsed());
                let out = guarded(out);
                check(&out?).map_err(|e| format!("wrong result (run {}): {e}", i + 1))?;
            }
            let ipc_bytes = (crate::backend::ipc_bytes() - ipc_before) / times.len() as u64;
            let s = Samples::new(times);
            Ok(Measurement {
                median_s: s.median().as_secs_f64(),
                min_s: s.min().as_secs_f64(),
                max_s: s.max().as_secs_f64(),
                reps: s.len(),
                warmup_s: warmup.as_secs_f64(),
                base_pss,
                peak_pss: memory::peak(&trace).max(base_pss),
                ipc_bytes,
                per_item: spec.rate.map(|r| {
                    let (value, unit) = r.show(s.median());
                    (value, unit.to_string())
                }),
                memory_trace: trace,
            })
        };
        let outcome = run();
        crate::backend::disarm();
        let outcome = match outcome {
            Ok(m) => Outcome::Measured(m),
            Err(error) => {
                self.progress.println(format!("FAILED {label}: {error}"));
                Outcome::Failed { error }
            }
        };
        self.cells.push(Cell {
            id,
            outcome,
            rate: spec.rate,
            limit: spec.limit,
            pid: std::process::id(),
        });
    }
}
