//! `all` measures each workload in a process of its own: the bench started again with the
//! hidden `workload` subcommand runs one workload with the parent's options and hands its
//! cells back as JSON in a file, which the parent merges, in order, into the one report.
//!
//! Why: a workload keeps its data until its process ends (the sum's 500 MB array and its
//! shared-memory copy sit in `Inherited` statics, for its forked workers to inherit). In one
//! process for every workload, a later workload's forks copy the page tables of everything
//! the earlier ones kept, and its memory column counts it. In a process of its own, a
//! workload's forks and its process tree's PSS are its own.
//!
//! A workload's process that crashes, exits with an error, or has no result after
//! `--workload-timeout` (then it and its workers are killed) is one FAILED row of that
//! workload; the run goes on with the next.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use multiproc_sys::pidfd::PidFd;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Strategy};
use crate::config::Config;
use crate::runner::{Cell, CellId, Runner, PROGRESS};
use crate::{Res, Workload};

/// The hidden subcommand's name.
const SUBCOMMAND: &str = "workload";

/// The variant of the row that stands for a whole workload whose process failed.
pub(crate) const WHOLE: &str = "its own process";

/// Lines of a failed process's stderr quoted in its row.
const TAIL: usize = 15;

/// The hidden subcommand: one workload of `all` in a process of its own.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WorkloadArgs {
    /// The workload.
    #[arg(long)]
    workload: String,
    /// The options of the run: the parent's `Config` as JSON.
    #[arg(long)]
    config: String,
    /// The file to write the cells into (JSON).
    #[arg(long)]
    cells_out: PathBuf,
    /// The parent's pid: this process dies with it.
    #[arg(long)]
    parent: u32,
}

/// What a workload's process hands back.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Handoff {
    /// Its cells, in the order they ran.
    pub cells: Vec<Cell>,
    /// The error that ended the workload before its last cell, if one did.
    pub error: Option<String>,
}

/// The hidden subcommand: measures the workload and writes its cells for the parent.
pub(crate) fn child(args: WorkloadArgs) -> Res<()> {
    // A bench killed while a workload runs takes the workload (and, through the watchdog's
    // and the pools' own means, its workers) with it.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("prctl: {e}"))?;
    if std::os::unix::process::parent_id() != args.parent {
        return Err("the bench that started this workload has ended".into());
    }
    let workload = Workload::named(&args.workload)
        .ok_or_else(|| format!("--workload: no workload is called {:?}", args.workload))?;
    let cfg: Config = serde_json::from_str(&args.config).map_err(|e| format!("--config: {e}"))?;
    let mut r = Runner::relaying(cfg);
    let error = workload.run(&mut r).err();
    let handoff = Handoff {
        cells: r.cells,
        error,
    };
    let json = serde_json::to_string(&handoff).map_err(|e| e.to_string())?;
    std::fs::write(&args.cells_out, json).map_err(|e| format!("{}: {e}", args.cells_out.display()))
}

/// Measures `workload` in a process of its own with `r`'s options and adds its cells to `r`
/// (or one FAILED row for the workload, with why).
pub(crate) fn measure(r: &mut Runner, workload: Workload, timeout: Duration) {
    let out = std::env::temp_dir().join(format!(
        "multiproc-bench-{}-{}.json",
        std::process::id(),
        workload.name()
    ));
    let handoff = serde_json::to_string(&r.cfg)
        .map_err(|e| e.to_string())
        .and_then(|config| {
            let exe = std::env::current_exe().map_err(|e| format!("the bench's path: {e}"))?;
            let mut cmd = Command::new(exe);
            cmd.args([
                SUBCOMMAND,
                "--workload",
                workload.name(),
                "--config",
                &config,
            ])
            .arg("--parent")
            .arg(std::process::id().to_string())
            .arg("--cells-out")
            .arg(&out);
            run(cmd, &out, r.bar(), timeout)
        });
    let id = || {
        CellId::new(
            workload.name(),
            WHOLE,
            Backend::Serial,
            Strategy::Direct,
            None,
        )
    };
    match handoff {
        Ok(h) => {
            r.cells.extend(h.cells);
            if let Some(error) = h.error {
                r.failed(id(), error);
            }
        }
        Err(error) => r.failed(id(), error),
    }
}

/// Runs `cmd` (its stdout to nowhere, its stderr shown on `bar`: [`PROGRESS`] lines as the
/// bar's message, others above it) and reads the [`Handoff`] it writes into `out`. Fails if
/// the process ends other than with success, writes nothing readable, or has not ended
/// after `timeout` (then it and every process below it are killed).
pub(crate) fn run(
    mut cmd: Command,
    out: &Path,
    bar: &ProgressBar,
    timeout: Duration,
) -> Result<Handoff, String> {
    let _ = std::fs::remove_file(out);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {:?}: {e}", cmd.get_program()))?;
    // The child is ours and not yet reaped: the descriptor names exactly it.
    let pid = Pid::from_raw(child.id() as i32);
    let fd = PidFd::open(pid);
    let tail = Arc::new(Mutex::new(VecDeque::<String>::new()));
    let (done, relayed) = mpsc::channel::<()>();
    {
        let stderr = child.stderr.take().expect("piped stderr");
        let (bar, tail) = (bar.clone(), Arc::clone(&tail));
        std::thread::Builder::new()
            .name("workload-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    match line.strip_prefix(PROGRESS) {
                        Some(msg) => bar.set_message(msg.to_string()),
                        None => {
                            bar.suspend(|| eprintln!("{line}"));
                            let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                            if tail.len() == TAIL {
                                tail.pop_front();
                            }
                            tail.push_back(line);
                        }
                    }
                }
                let _ = done.send(());
            })
            .map_err(|e| format!("starting the stderr reader: {e}"))?;
    }
    let deadline = Instant::now() + timeout;
    let ended = match &fd {
        Ok(fd) => loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match fd.wait_timeout(Some(left)) {
                Ok(true) => break true,
                Ok(false) if left.is_zero() => break false,
                Ok(false) => continue,
                Err(e) => {
                    kill_tree(pid);
                    let _ = child.wait();
                    return Err(format!("waiting for the workload's process: {e}"));
                }
            }
        },
        Err(e) => {
            kill_tree(pid);
            let _ = child.wait();
            return Err(format!("pidfd_open for the workload's process: {e}"));
        }
    };
    if !ended {
        kill_tree(pid);
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    // Its stderr ends with it, unless a process it left behind still holds the pipe.
    let _ = relayed.recv_timeout(Duration::from_secs(2));
    let tail = Vec::from(tail.lock().unwrap_or_else(|p| p.into_inner()).clone()).join("\n");
    let read = std::fs::read_to_string(out);
    let _ = std::fs::remove_file(out);
    let why = if !ended {
        format!(
            "no result after {} s: its process and workers were killed",
            timeout.as_secs_f64()
        )
    } else if !status.success() {
        format!("its process exited with {status}")
    } else {
        match read {
            Err(e) => format!("its process wrote no cells ({}: {e})", out.display()),
            Ok(json) => {
                return serde_json::from_str(&json)
                    .map_err(|e| format!("its cells are not the bench's JSON: {e}"))
            }
        }
    };
    Err(if tail.is_empty() {
        why
    } else {
        format!("{why}; its last lines on stderr:\n{tail}")
    })
}

/// Kills `root` and every process below it: stopped first, so that it starts no more
/// while the tree is listed.
fn kill_tree(root: Pid) {
    let _ = kill(root, Signal::SIGSTOP);
    let tree = multiproc_core::process_tree(root.as_raw() as u32).unwrap_or_default();
    let _ = kill(root, Signal::SIGKILL);
    for pid in tree.into_iter().skip(1) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests;
