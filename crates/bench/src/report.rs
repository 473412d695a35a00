//! The results: the table on stdout, `--json`, and the report folder's markdown and
//! `results.json`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::backend::Backend;
use crate::config::Config;
use crate::python::{PyCell, PyRun, INSTALL};
use crate::runner::{Cell, Outcome};
use crate::Res;

/// A cell with what is computed from the others: speedup over serial and the Python
/// counterpart.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// The cell.
    #[serde(flatten)]
    pub cell: Cell,
    /// Serial median / this median, for the same workload and variant.
    pub speedup: Option<f64>,
    /// The same cell in Python, if it ran.
    pub python: Option<PyCell>,
    /// Python's median / ours: how many times faster than Python.
    pub vs_python: Option<f64>,
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    /// `model name` of `/proc/cpuinfo`.
    pub cpu: String,
    /// Cores available to this process.
    pub cores: usize,
    /// Physical memory, bytes.
    pub memory: u64,
    /// Kernel release.
    pub kernel: String,
    /// The pages shared memory of the sizes measured here gets, and why.
    pub pages: String,
}

impl Machine {
    fn probe() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory: multiproc_core::memusage().map_or(0, |m| m.total),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            pages: {
                let policy = multiproc_sys::pages::policy();
                format!(
                    "shared arrays and bulk buffers of {} MiB and more in {} pages ({policy})",
                    multiproc_sys::pages::HUGE_MIN >> 20,
                    policy.choose(multiproc_sys::pages::HUGE_MIN)
                )
            },
        }
    }
}

/// Everything one run produced.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// Where.
    pub machine: Machine,
    /// With which options.
    pub config: Config,
    /// Seconds for the Rust cells and the Python run together.
    pub elapsed_s: f64,
    /// Seconds each workload (and the Python run) took, untimed set-up and checks included.
    pub stages: Vec<(String, f64)>,
    /// `python version, numpy version`, if the Python side ran.
    pub python: Option<String>,
    /// Why the Python side did not run, if it did not.
    pub python_missing: Option<String>,
    /// The rows, in the order they ran.
    pub rows: Vec<Row>,
}

impl Report {
    /// Joins our cells with the serial baselines and Python's cells.
    pub(crate) fn new(
        cfg: &Config,
        cells: &[Cell],
        python: Result<(String, PyRun), String>,
        elapsed: Duration,
        stages: Vec<(String, f64)>,
    ) -> Report {
        let (py_version, py_cells, missing) = match python {
            Ok((version, run)) => (Some(version), run.cells, None),
            Err(why) => (None, Vec::new(), Some(why)),
        };
        let rows = cells
            .iter()
            .map(|cell| {
                let median = cell.measured().map(|m| m.median_s);
                let serial = cells
                    .iter()
                    .find(|c| {
                        c.id.workload == cell.id.workload
                            && c.id.variant == cell.id.variant
                            && c.id.backend == Backend::Serial
                    })
                    .and_then(Cell::measured)
                    .map(|m| m.median_s);
                let python = py_cells
                    .iter()
                    .find(|p| {
                        p.workload == cell.id.workload
                            && p.variant == cell.id.variant
                            && p.backend == cell.id.backend.name()
                            && p.strategy == cell.id.strategy.name()
                            && p.workers == cell.id.workers
                    })
                    .cloned();
                let py_median = python.as_ref().and_then(|p| p.median_s);
                Row {
                    speedup: serial.zip(median).map(|(s, m)| s / m),
                    vs_python: py_median.zip(median).map(|(p, m)| p / m),
                    python,
                    cell: cell.clone(),
                }
            })
            .collect();
        Report {
            machine: Machine::probe(),
            config: cfg.clone(),
            elapsed_s: elapsed.as_secs_f64(),
            stages,
            python: py_version,
            python_missing: missing,
            rows,
        }
    }

    /// Cells that failed (an error or a wrong result).
    pub(crate) fn failures(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| matches!(r.cell.outcome, Outcome::Failed { .. }))
            .count()
    }

    /// The whole report as JSON.
    pub(crate) fn json(&self) -> Res<String> {
        serde_json::to_string_pretty(self).map_err(|e| e.to_string())
    }

    fn header(&self) -> String {
        let m = &self.machine;
        let mut s = format!(
            "machine: {}, {} cores, {:.1} GB, Linux {}\n",
            m.cpu,
            m.cores,
            m.memory as f64 / 1e9,
            m.kernel
        );
        let _ = writeln!(s, "pages: {}", m.pages);
        let c = &self.config;
        let _ = writeln!(
            s,
            "options: workers {:?}, {} runs after a warm-up (fewer, at least 1, past {} s a cell), \
             sum {} MiB and cow {} MiB in {} chunks, voxels {}³ in {} jobs, crunch {} images ×{} waits on {} \
             workers, overhead {} tasks, payload {} MiB",
            c.workers,
            c.reps,
            c.cell_seconds,
            c.size_mb,
            c.cow_mb,
            c.chunks,
            c.voxel_side,
            c.voxel_jobs,
            c.images,
            c.wait_scale,
            c.crunch_workers,
            c.tasks,
            c.payload_mb
        );
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|(name, secs)| format!("{name} {secs:.1} s"))
            .collect();
        let _ = writeln!(
            s,
            "wall time: {:.1} s ({})",
            self.elapsed_s,
            stages.join(", ")
        );
        match (&self.python, &self.python_missing) {
            (Some(v), _) => {
                let _ = writeln!(s, "python: {v} (python, numpy), same run");
            }
            (None, Some(why)) => {
                let _ = writeln!(s, "python: not run: {why}");
            }
            _ => {}
        }
        s
    }

    /// The table for the terminal.
    pub(crate) fn table(&self) -> String {
        let mut s = self.header();
        let widths = [9, 22, 15, 3, 10, 10, 10, 2, 8, 14, 9, 16, 10, 9];
        let head = [
            "workload",
            "variant",
            "how",
            "w",
            "median",
            "min",
            "max",
            "n",
            "speedup",
            "peak MB (+Δ)",
            "IPC MB",
            "per item",
            "Python",
            "vs Py",
        ];
        let line = |cols: &[String]| -> String {
            let mut l = String::new();
            for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
                if i < 3 {
                    let _ = write!(l, "{c:<w$} ");
                } else {
                    let _ = write!(l, "{c:>w$} ");
                }
            }
            l.trim_end().to_string() + "\n"
        };
        s.push_str(&line(&head.map(String::from)));
        let mut last = "";
        for row in &self.rows {
            if row.cell.id.workload != last && !last.is_empty() {
                s.push('\n');
            }
            last = row.cell.id.workload;
            s.push_str(&line(&self.columns(row)));
        }
        let _ = writeln!(
            s,
            "\nspeedup: serial median / median. vs Py: Python median / ours (>1: faster than \
             Python). peak MB: the process tree's PSS at its highest during the warm-up, and \
             above what it held before. IPC MB: encoded arguments and results crossing \
             between processes per run."
        );
        if self.failures() > 0 {
            let _ = writeln!(s, "{} cells FAILED", self.failures());
        }
        s
    }

    /// The columns of one row (shared by the terminal table and the markdown).
    fn columns(&self, row: &Row) -> Vec<String> {
        let id = &row.cell.id;
        let mut cols = vec![
            id.workload.to_string(),
            id.variant.clone(),
            id.how(),
            id.workers.map_or("-".into(), |w| w.to_string()),
        ];
        match &row.cell.outcome {
            Outcome::Measured(m) => {
                cols.extend([
                    time(m.median_s),
                    time(m.min_s),
                    time(m.max_s),
                    m.reps.to_string(),
                    row.speedup.map_or("-".into(), |x| format!("{x:.2}x")),
                    format!(
                        "{:.0} (+{:.0})",
                        m.peak_pss as f64 / 1e6,
                        m.extra_pss() as f64 / 1e6
                    ),
                    mb(m.ipc_bytes),
                    m.per_item
                        .map_or("".into(), |(v, unit)| format!("{v:.2} {unit}")),
                    row.python
                        .as_ref()
                        .map_or("-".into(), |p| match (&p.error, p.median_s) {
                            (Some(_), _) => "failed".into(),
                            (None, Some(t)) => time(t),
                            (None, None) => "n/a".into(),
                        }),
                    row.vs_python.map_or("-".into(), |x| format!("{x:.2}x")),
                ]);
            }
            Outcome::NotApplicable { reason } => cols.push(format!("n/a: {reason}")),
            Outcome::Failed { error } => cols.push(format!("FAILED: {error}")),
        }
        cols
    }

    /// The markdown report.
    pub(crate) fn markdown(&self) -> String {
        let mut s = String::from("# multiproc-bench report\n\n");
        let _ = writeln!(s, "```text\n{}```\n", self.header());
        if self.python.is_none() {
            let _ = writeln!(
                s,
                "The \"vs Python\" column needs python3 with numpy: `{INSTALL}`.\n"
            );
        }
        s.push_str(
            "| workload | variant | how | w | median | min | max | n | speedup | peak MB (+Δ) | IPC MB | per item | Python | vs Py |\n\
             |---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for row in &self.rows {
            let mut cols = self.columns(row);
            if cols.len() == 5 {
                // n/a or failed: the note in the median column, the rest empty.
                cols.extend(std::iter::repeat(String::new()).take(9));
            }
            let _ = writeln!(s, "| {} |", cols.join(" | "));
        }
        s.push_str(
            "\nspeedup: serial median / median. vs Py: Python median / ours (>1: faster than \
             Python). peak MB: the process tree's PSS (sum over this process and its workers) \
             at its highest during the warm-up run, and how much above what it held before. \
             IPC MB: postcard-encoded arguments and results that cross between processes per \
             run (0 in-process).\n\n",
        );
        s.push_str("## Plots\n\n");
        for (file, what) in crate::plots::planned(self) {
            let _ = writeln!(s, "### {what}\n\n![{what}]({file})\n");
        }
        s
    }

    /// Writes `report.md` and `results.json` into `dir`.
    pub(crate) fn write(&self, dir: &Path) -> Res<()> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let put = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
        };
        put("report.md", self.markdown())?;
        put("results.json", self.json()?)
    }
}

/// Seconds as µs, ms or s with three significant digits.
pub(crate) fn time(secs: f64) -> String {
    if secs < 1e-3 {
        format!("{:.1} µs", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{secs:.2} s")
    }
}

fn mb(bytes: u64) -> String {
    if bytes == 0 {
        "0".into()
    } else if bytes < 100_000 {
        format!("{:.3}", bytes as f64 / 1e6)
    } else {
        format!("{:.1}", bytes as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_pick_a_readable_unit() {
        assert_eq!(time(0.000_014_4), "14.4 µs");
        assert_eq!(time(0.0351), "35.10 ms");
        assert_eq!(time(1.316), "1.32 s");
        assert_eq!(mb(0), "0");
        assert_eq!(mb(524_288_000), "524.3");
    }
}
