//! The Python side: `python/bench.py` runs the tutorial's Python code for the same workloads
//! with the same sizes, and prints its timings as JSON; the report puts them beside ours.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::Res;

/// The script, embedded so that the binary runs it from anywhere.
const SCRIPT: &str = include_str!("../python/bench.py");

/// How to get numpy, for the messages.
pub(crate) const INSTALL: &str = "python3 -m pip install --user numpy";

/// The Python peers of `multiprocessing` the script measures (the `backend` of their cells):
/// what a Python user would pick instead.
pub(crate) const PEERS: [&str; 3] = ["mpire", "pebble", "joblib"];

/// One cell measured in Python.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PyCell {
    /// The workload, as ours.
    pub workload: String,
    /// The variant, as ours.
    pub variant: String,
    /// `serial`, `threads` (`multiprocessing.pool.ThreadPool`), `fork` or `spawn`.
    pub backend: String,
    /// `-`, `copy`, `inherit` or `shm`, as ours.
    pub strategy: String,
    /// Pool size (`None` for serial).
    pub workers: Option<usize>,
    /// Median of the timed runs, seconds.
    pub median_s: Option<f64>,
    /// Fastest timed run, seconds.
    pub min_s: Option<f64>,
    /// Slowest timed run, seconds.
    pub max_s: Option<f64>,
    /// Timed runs.
    pub reps: Option<usize>,
    /// What went wrong, if it failed.
    pub error: Option<String>,
    /// What the reader must know about this cell (a peer's n/a reason, or how it differs
    /// from ours).
    #[serde(default)]
    pub note: Option<String>,
}

/// What the script prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PyRun {
    /// `sys.version`, first word.
    pub python: String,
    /// `numpy.__version__`.
    pub numpy: String,
    /// The cells.
    pub cells: Vec<PyCell>,
}

/// The interpreter's and numpy's versions, or why the Python side cannot run.
pub(crate) fn probe(python: &str) -> Res<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import sys, numpy; print(sys.version.split()[0], numpy.__version__)",
        ])
        .output()
        .map_err(|e| {
            format!("{python} not found ({e}): install Python 3, then numpy with `{INSTALL}`")
        })?;
    if !out.status.success() {
        return Err(format!(
            "{python} has no numpy: install it with `{INSTALL}` for the \"vs Python\" column"
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs the script for `workloads` with the options of `cfg`, showing its progress lines on
/// `bar`. The script is written into `report` (so that a spawned Python worker can import
/// it, and so that the report says what ran).
pub(crate) fn run(
    python: &str,
    cfg: &Config,
    workloads: &[&str],
    report: &Path,
    bar: &ProgressBar,
) -> Res<PyRun> {
    std::fs::create_dir_all(report).map_err(|e| format!("{}: {e}", report.display()))?;
    let script = report.join("python_bench.py");
    std::fs::write(&script, SCRIPT).map_err(|e| format!("{}: {e}", script.display()))?;
    let mut config = serde_json::to_value(cfg).map_err(|e| e.to_string())?;
    config["workloads"] = serde_json::json!(workloads);
    let mut child = Command::new(python)
        .arg(&script)
        .arg(config.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{python}: {e}"))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let bar = bar.clone();
    let progress = std::thread::spawn(move || {
        let mut other = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            match line.strip_prefix("progress: ") {
                Some(msg) => bar.set_message(format!("python: {msg}")),
                None => other.push(line),
            }
        }
        other
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_string(&mut stdout)
        .map_err(|e| e.to_string())?;
    let status = child.wait().map_err(|e| e.to_string())?;
    let other = progress.join().unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = other
            .iter()
            .rev()
            .take(15)
            .rev()
            .map(String::as_str)
            .collect();
        return Err(format!(
            "{python} {} exited with {status}:\n{}",
            script.display(),
            tail.join("\n")
        ));
    }
    serde_json::from_str(&stdout).map_err(|e| format!("the script's output is not its JSON: {e}"))
}
