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

/// The peers' part of it (imported by the script from the same folder).
const PEERS_SCRIPT: &str = include_str!("../python/peers.py");

/// How the Python column comes about, for the messages.
pub(crate) const INSTALL: &str = "run without --quick: the bench makes a virtual environment \
    under target/ with numpy, mpire, pebble and joblib (or pass --python with an interpreter \
    that has numpy)";

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
    /// The peers' versions (`None`: not installed).
    #[serde(default)]
    pub peers: std::collections::BTreeMap<String, Option<String>>,
    /// Seconds each workload took on the Python side.
    #[serde(default)]
    pub stages: Vec<(String, f64)>,
}

impl PyRun {
    /// `Python 3.11.7, numpy 2.4.6, mpire 2.10.2, ...` (a missing peer: `mpire -`).
    pub(crate) fn versions(&self) -> String {
        let mut s = format!("Python {}, numpy {}", self.python, self.numpy);
        for (name, version) in &self.peers {
            s.push_str(&format!(", {name} {}", version.as_deref().unwrap_or("-")));
        }
        s
    }
}

/// Runs the script for `workloads` with the options of `cfg`, showing its progress lines on
/// `bar`. The script is written into `report` (so that a spawned Python worker can import
/// it, and so that the report says what ran).
pub(crate) fn run(
    python: &Path,
    cfg: &Config,
    workloads: &[&str],
    report: &Path,
    bar: &ProgressBar,
) -> Res<PyRun> {
    std::fs::create_dir_all(report).map_err(|e| format!("{}: {e}", report.display()))?;
    let script = report.join("python_bench.py");
    std::fs::write(&script, SCRIPT).map_err(|e| format!("{}: {e}", script.display()))?;
    let peers = report.join("peers.py");
    std::fs::write(&peers, PEERS_SCRIPT).map_err(|e| format!("{}: {e}", peers.display()))?;
    let mut config = serde_json::to_value(cfg).map_err(|e| e.to_string())?;
    config["workloads"] = serde_json::json!(workloads);
    let mut child = Command::new(python)
        .arg(&script)
        .arg(config.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", python.display()))?;
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
            "{} {} exited with {status}:\n{}",
            python.display(),
            script.display(),
            tail.join("\n")
        ));
    }
    serde_json::from_str(&stdout).map_err(|e| format!("the script's output is not its JSON: {e}"))
}
