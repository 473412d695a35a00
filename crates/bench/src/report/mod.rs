//! The results: the table on stdout, `--json`, and the report folder's markdown and
//! `results.json`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::backend::Backend;
use crate::config::Config;
use crate::limits::{self, Rates};
use crate::python::{PyCell, PyRun, INSTALL};
use crate::runner::{Cell, Outcome, Rate};
use crate::steal::Stage;
use crate::Res;

mod peers;

use peers::peer_columns;
pub(crate) use peers::PeerRow;

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
    /// The cell's limit (see `limits.rs`) with this run's rates, seconds.
    pub limit_s: Option<f64>,
    /// What the limit is made of (`read 524 MB on 2 + fault 524 MB / 2`).
    pub limit_of: Option<String>,
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
            cores: multiproc_core::cpu_count(),
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
    /// Each workload's process, the Python run and its workloads: wall time (untimed set-up
    /// and checks included) and, where measured, the host's share of the CPU time.
    pub stages: Vec<Stage>,
    /// `python version, numpy version`, if the Python side ran.
    pub python: Option<String>,
    /// Why the Python side did not run, if it did not.
    pub python_missing: Option<String>,
    /// The rows, grouped by workload and variant in the order they first ran.
    pub rows: Vec<Row>,
    /// The limit rows' rates.
    pub rates: Rates,
    /// The Python peers' cells.
    pub peers: Vec<PeerRow>,
}

impl Report {
    /// Joins our cells with the serial baselines and Python's cells.
    pub(crate) fn new(
        cfg: &Config,
        cells: &[Cell],
        python: Result<(String, PyRun), String>,
        elapsed: Duration,
        stages: Vec<Stage>,
    ) -> Report {
        let (py_version, py_cells, missing) = match python {
            Ok((version, run)) => (Some(version), run.cells, None),
            Err(why) => (None, Vec::new(), Some(why)),
        };
        let rates = rates_of(cells);
        let mut rows: Vec<Row> = cells
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
                    limit_s: cell.limit.and_then(|l| l.seconds(&rates)),
                    limit_of: cell.limit.map(|l| l.describe()),
                    python,
                    cell: cell.clone(),
                }
            })
            .collect();
        group(&mut rows);
        let peers = py_cells
            .iter()
            .filter(|p| crate::python::PEERS.contains(&p.backend.as_str()))
            .map(|p| {
                let ours = cells
                    .iter()
                    .find(|c| {
                        c.id.workload == p.workload
                            && c.id.variant == p.variant
                            && c.id.backend == Backend::Fork
                            && c.id.strategy.name() == p.strategy
                            && c.id.workers == p.workers
                    })
                    .and_then(Cell::measured)
                    .map(|m| m.median_s);
                PeerRow {
                    vs_ours: p.median_s.zip(ours).map(|(p, o)| p / o),
                    python: p.clone(),
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
            rates,
            peers,
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
            "options: workers {:?}, {} runs after a warm-up (fewer past {} s a cell, but 3 while they take under 3 budgets; {} s and at least 1 on the Python side), \
             sum {} MiB and cow {} MiB in {} chunks, voxels {}³ in {} jobs, crunch {} images ×{} waits on {} \
             workers, overhead {} tasks, payload {} MiB",
            c.workers,
            c.reps,
            c.cell_seconds,
            c.py_cell_seconds,
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
            .map(|st| format!("{} {:.1} s", st.name, st.secs))
            .collect();
        let _ = writeln!(
            s,
            "wall time: {:.1} s ({})",
            self.elapsed_s,
            stages.join(", ")
        );
        let steal: Vec<String> = self
            .stages
            .iter()
            .filter_map(|st| Some(format!("{} {:.1}%", st.name, st.steal? * 100.0)))
            .collect();
        if !steal.is_empty() {
            let _ = writeln!(
                s,
                "host steal (the share of this machine's CPU time its hypervisor took; beyond a \
                 few percent, runs spread): {}",
                steal.join(", ")
            );
        }
        match (&self.python, &self.python_missing) {
            (Some(v), _) => {
                let _ = writeln!(s, "python: {v}, same run");
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
        let widths = [9, 22, 15, 3, 10, 10, 10, 2, 8, 14, 9, 16, 17, 10, 9];
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
            "limit (×)",
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
                for peer in self.peers_of(last) {
                    s.push_str(&line(&peer_columns(peer)));
                }
                s.push('\n');
            }
            last = &row.cell.id.workload;
            s.push_str(&line(&self.columns(row)));
        }
        for peer in self.peers_of(last) {
            s.push_str(&line(&peer_columns(peer)));
        }
        let _ = writeln!(s, "\n{LEGEND}");
        for note in self.notes() {
            let _ = writeln!(s, "{note}");
        }
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
                        .as_ref()
                        .map_or("".into(), |(v, unit)| format!("{v:.2} {unit}")),
                    row.limit_s.map_or("-".into(), |l| limit(l, m.median_s)),
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

    /// The peers' rows of `workload`.
    fn peers_of<'a>(&'a self, workload: &'a str) -> impl Iterator<Item = &'a PeerRow> + 'a {
        self.peers
            .iter()
            .filter(move |p| p.python.workload == workload)
    }

    /// The notes of the peers' cells, each once, as `backend: note`.
    fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = Vec::new();
        for p in &self.peers {
            if let Some(note) = &p.python.note {
                let note = format!("{}: {note}", p.python.backend);
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
        }
        notes
    }

    /// The markdown report.
    pub(crate) fn markdown(&self, plots: &[(String, String)]) -> String {
        let mut s = String::from("# multiproc-bench report\n\n");
        let _ = writeln!(s, "```text\n{}```\n", self.header());
        if self.python.is_none() {
            let _ = writeln!(
                s,
                "The \"vs Python\" column needs Python 3 with numpy: {INSTALL}.\n"
            );
        }
        s.push_str(
            "| workload | variant | how | w | median | min | max | n | speedup | peak MB (+Δ) | IPC MB | per item | limit (×) | Python | vs Py |\n\
             |---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        let md = |s: &mut String, mut cols: Vec<String>| {
            if cols.len() == 5 {
                // n/a or failed: the note in the median column, the rest empty.
                cols.extend(std::iter::repeat(String::new()).take(10));
            }
            let _ = writeln!(s, "| {} |", cols.join(" | "));
        };
        let mut last = "";
        for row in &self.rows {
            if row.cell.id.workload != last {
                for peer in self.peers_of(last) {
                    md(&mut s, peer_columns(peer));
                }
            }
            last = &row.cell.id.workload;
            md(&mut s, self.columns(row));
        }
        for peer in self.peers_of(last) {
            md(&mut s, peer_columns(peer));
        }
        let _ = writeln!(s, "\n{LEGEND}\n");
        for note in self.notes() {
            let _ = writeln!(s, "- {note}");
        }
        if let Some(limits) = self.rates.summary() {
            let _ = writeln!(s, "\nLimits of this run: {limits}.");
        }
        s.push('\n');
        s.push_str("## Plots\n\n");
        for (file, what) in plots {
            let _ = writeln!(s, "### {what}\n\n![{what}]({file})\n");
        }
        s
    }

    /// Writes `report.md` (showing `plots`: file and title) and `results.json` into `dir`.
    pub(crate) fn write(&self, dir: &Path, plots: &[(String, String)]) -> Res<()> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let put = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
        };
        put("report.md", self.markdown(plots))?;
        put("results.json", self.json()?)
    }
}

/// What the columns mean, under the table.
const LEGEND: &str = "speedup: serial median / median. limit (×): the least time the \
    machine allows for the row's memory traffic, page faults or round trips (from the limits \
    rows of this run), and median / limit. vs Py: Python median / ours (>1: faster than \
    Python); on a py row (a Python peer), its median / our fork row's. peak MB: the process \
    tree's PSS (the workload's process and its workers) at its highest during the warm-up, \
    and above what it held before. IPC MB: encoded arguments and results crossing between processes \
    per run (0 in-process).";

/// A limit and how far the median is from it: `8.50 ms 3.7x`.
fn limit(limit_s: f64, median_s: f64) -> String {
    format!("{} {:.1}x", time(limit_s), median_s / limit_s)
}

/// The rates of the limit rows among `cells` (their medians).
fn rates_of(cells: &[Cell]) -> Rates {
    let mut rates = Rates::default();
    for cell in cells.iter().filter(|c| c.id.workload == limits::WORKLOAD) {
        let (Some(m), Some(rate)) = (cell.measured(), cell.rate) else {
            continue;
        };
        let threads = cell.id.workers.unwrap_or(1);
        let s = m.median_s;
        match (cell.id.variant.as_str(), rate) {
            (limits::READ, Rate::Throughput(b)) => rates.read.push((threads, b as f64 / s)),
            (limits::MEMCPY, Rate::Throughput(b)) => rates.copy.push((threads, b as f64 / s)),
            (limits::FAULT, Rate::PerPage(n)) => rates.fault_per_page = Some(s / n as f64),
            (limits::HEAP_FAULT, Rate::PerPage(n)) => rates.heap_per_page = Some(s / n as f64),
            (limits::MAP, Rate::PerPage(n)) => rates.map_per_page = Some(s / n as f64),
            (limits::ROUND_TRIP, Rate::PerTrip(n)) => rates.round_trip = Some(s / n as f64),
            (limits::FORK, Rate::PerChild(n)) => rates.fork_per_child = Some(s / n as f64),
            (limits::SPAWN, Rate::PerChild(n)) => rates.spawn_per_child = Some(s / n as f64),
            _ => {}
        }
    }
    rates
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

/// Orders rows by workload, then by variant, each in the order it first ran (a warm row
/// runs right after its cold twin; the table shows each variant's rows together).
fn group(rows: &mut [Row]) {
    fn first<'a>(seen: &mut Vec<(&'a str, &'a str)>, key: (&'a str, &'a str)) -> usize {
        seen.iter().position(|k| *k == key).unwrap_or_else(|| {
            seen.push(key);
            seen.len() - 1
        })
    }
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let keys: Vec<(usize, usize)> = rows
        .iter()
        .map(|r| {
            let id = &r.cell.id;
            (
                first(&mut seen, (&id.workload, "")),
                first(&mut seen, (&id.workload, &id.variant)),
            )
        })
        .collect();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    let sorted: Vec<Row> = order.iter().map(|&i| rows[i].clone()).collect();
    rows.clone_from_slice(&sorted);
}

#[cfg(test)]
mod tests;
