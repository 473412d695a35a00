//! `all` runs each workload in a process of its own (so that the data one workload keeps
//! cannot slow the forks of the next), while a single workload's command runs in the bench's
//! own process. Each row of `results.json` names the process that measured it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Runs the bench with `args` and a small matrix (quick sizes, in-process backends, no
/// Python, no MPI) and returns its pid, its output and the report folder.
fn bench(args: &[&str], name: &str) -> (u32, Output, PathBuf) {
    let report = std::env::temp_dir().join(format!(
        "multiproc-bench-isolation-{name}-{}",
        std::process::id()
    ));
    let child = Command::new(env!("CARGO_BIN_EXE_multiproc-bench"))
        .args(args)
        .args(["--quick", "--no-python", "--no-mpi", "--json"])
        .args([
            "--backends",
            "serial,rayon,threads",
            "--strategies",
            "inherit",
        ])
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the bench");
    let pid = child.id();
    let out = child.wait_with_output().expect("waiting for the bench");
    (pid, out, report)
}

/// The pids that measured each workload's rows, from the `--json` output.
fn pids_by_workload(out: &Output) -> BTreeMap<String, Vec<u64>> {
    assert!(
        out.status.success(),
        "the bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--json prints the report");
    let mut pids: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for row in report["rows"].as_array().expect("rows") {
        let workload = row["workload"].as_str().expect("a workload").to_string();
        let pid = row["pid"].as_u64().expect("every row names its process");
        let seen = pids.entry(workload).or_default();
        if !seen.contains(&pid) {
            seen.push(pid);
        }
    }
    pids
}

#[test]
fn all_runs_each_workload_in_a_process_of_its_own() {
    let (bench_pid, out, report) = bench(&["all"], "all");
    let pids = pids_by_workload(&out);
    let workloads = [
        "limits", "startup", "overhead", "crunch", "payload", "voxels", "cow", "sum",
    ];
    assert_eq!(
        pids.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut w = workloads.to_vec();
            w.sort_unstable();
            w
        },
        "every workload has rows"
    );
    let mut all: Vec<u64> = Vec::new();
    for (workload, seen) in &pids {
        assert_eq!(seen.len(), 1, "{workload} ran in one process: {seen:?}");
        assert_ne!(
            seen[0],
            u64::from(bench_pid),
            "{workload} ran in a child, not in the bench's own process"
        );
        all.push(seen[0]);
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        workloads.len(),
        "one process per workload: {pids:?}"
    );
    // The report folder gets the same files as ever, the memory plots among them.
    for file in [
        "report.md",
        "results.json",
        "memory_sum.svg",
        "memory_cow.svg",
    ] {
        assert!(
            report.join(file).is_file(),
            "{file} in {}",
            report.display()
        );
    }
    std::fs::remove_dir_all(&report).expect("removing the report folder");
}

#[test]
fn a_single_workload_runs_in_the_bench_process_limits_first() {
    let (bench_pid, out, report) = bench(&["startup"], "startup");
    let pids = pids_by_workload(&out);
    assert_eq!(
        pids.keys().map(String::as_str).collect::<Vec<_>>(),
        ["limits", "startup"]
    );
    for (workload, seen) in &pids {
        assert_eq!(
            seen,
            &[u64::from(bench_pid)],
            "{workload} ran in the bench's own process"
        );
    }
    std::fs::remove_dir_all(&report).expect("removing the report folder");
}
