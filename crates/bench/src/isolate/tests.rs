//! A workload's process: what it hands back, and how it fails (a crash, an error exit, no
//! cells, no end) without hanging the run.

use super::*;
use crate::runner::Outcome;

/// A file name for one test's cells.
fn out(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "multiproc-bench-isolate-test-{}-{name}.json",
        std::process::id()
    ))
}

/// `sh -c script`, with `$1` = `arg` and `$2` = `out`.
fn sh(script: &str, arg: &str, out: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script, "sh", arg]).arg(out);
    cmd
}

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn the_cells_a_process_writes_come_back() {
    let cells = vec![Cell {
        id: CellId::new(
            "sum",
            "Pool+map+close",
            Backend::Fork,
            Strategy::Shm,
            Some(2),
        ),
        outcome: Outcome::Failed {
            error: "wrong result".into(),
        },
        rate: None,
        limit: None,
        pid: 7,
    }];
    let json = serde_json::to_string(&Handoff {
        cells,
        error: Some("stopped".into()),
    })
    .unwrap();
    let path = out("written");
    let cmd = sh(
        r#"echo "progress: working" >&2; printf %s "$1" > "$2""#,
        &json,
        &path,
    );
    let h = run(cmd, &path, &ProgressBar::hidden(), MINUTE).unwrap();
    assert_eq!(h.error.as_deref(), Some("stopped"));
    assert_eq!(h.cells.len(), 1);
    assert_eq!(h.cells[0].id.variant, "Pool+map+close");
    assert_eq!(h.cells[0].pid, 7);
    assert!(!path.exists(), "the parent removes the file it read");
}

#[test]
fn a_process_killed_by_a_signal_fails_with_its_last_lines() {
    let path = out("crash");
    let cmd = sh(
        r#"echo "progress: not quoted" >&2; echo "about to crash" >&2; kill -SEGV $$"#,
        "",
        &path,
    );
    let err = run(cmd, &path, &ProgressBar::hidden(), MINUTE).unwrap_err();
    assert!(err.contains("signal: 11"), "{err}");
    assert!(
        err.ends_with("its last lines on stderr:\nabout to crash"),
        "{err}"
    );
}

#[test]
fn a_process_that_fails_or_writes_nothing_fails() {
    let path = out("exit");
    let fails = |script: &str| {
        run(sh(script, "", &path), &path, &ProgressBar::hidden(), MINUTE).unwrap_err()
    };
    let err = fails("exit 3");
    assert!(err.contains("exit status: 3"), "{err}");
    let err = fails("true");
    assert!(err.starts_with("its process wrote no cells"), "{err}");
    let err = fails(r#"echo '{"cells": 1}' > "$2""#);
    assert!(
        err.starts_with("its cells are not the bench's JSON"),
        "{err}"
    );
}

#[test]
fn a_process_with_no_end_is_killed_with_everything_below_it() {
    let path = out("hang");
    // A grandchild that would hold the stderr pipe open forever, its pid on stderr, and a
    // shell that waits for it.
    let cmd = sh(r#"sleep 600 & echo "$!" >&2; wait"#, "", &path);
    let t = Instant::now();
    let err = run(
        cmd,
        &path,
        &ProgressBar::hidden(),
        Duration::from_millis(300),
    )
    .unwrap_err();
    assert!(t.elapsed() < MINUTE, "no hang: {:?}", t.elapsed());
    assert!(err.starts_with("no result after 0.3 s"), "{err}");
    let grandchild: i32 = err.lines().last().unwrap().parse().unwrap();
    match PidFd::open(Pid::from_raw(grandchild)) {
        // Still a process (a zombie until its new parent reaps it): it must end at once.
        Ok(fd) => assert!(fd.wait_timeout(Some(MINUTE)).unwrap(), "the sleep ended"),
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(nix::errno::Errno::ESRCH as i32),
            "{e}"
        ),
    }
}

/// A cell measured with every field set (`rate`, `limit`, a unit cost, a memory trace), with
/// times that decimal JSON does not write exactly.
fn measured(workload: &str, backend: Backend, median_s: f64) -> Cell {
    use crate::limits::Limit;
    use crate::runner::{Measurement, Rate};
    let rate = Rate::Throughput(524_288_000);
    Cell {
        id: CellId::new(
            workload,
            "Pool+map+close",
            backend,
            Strategy::Inherit,
            Some(2),
        ),
        outcome: Outcome::Measured(Measurement {
            median_s,
            min_s: median_s / 3.0,
            max_s: median_s * std::f64::consts::PI,
            reps: 5,
            warmup_s: median_s * 1.1,
            base_pss: 4_251_648,
            peak_pss: 1_900_000_001,
            ipc_bytes: 123,
            per_item: Some((
                rate.show(Duration::from_secs_f64(median_s)).0,
                "GB/s".into(),
            )),
            memory_trace: vec![(0.0026481, 4_288_512), (0.1 + 0.2, 1_900_000_001)],
        }),
        rate: Some(rate),
        limit: Some(Limit::read(524_288_000, 2)),
        pid: 4242,
    }
}

#[test]
fn cells_handed_back_by_two_processes_make_the_report_of_one() {
    use crate::limits;
    use crate::report::Report;
    let limits = vec![
        Cell {
            id: CellId::new(
                limits::WORKLOAD,
                limits::READ,
                Backend::Rayon,
                Strategy::Direct,
                Some(2),
            ),
            ..measured("x", Backend::Rayon, 0.037_123_456_789)
        },
        Cell {
            id: CellId::new("limits", "n/a", Backend::Threads, Strategy::Shm, None),
            outcome: Outcome::NotApplicable {
                reason: "no such thing".into(),
            },
            rate: None,
            limit: None,
            pid: 4241,
        },
    ];
    let sum = vec![
        measured("sum", Backend::Serial, 0.1 + 0.2),
        measured("sum", Backend::Fork, 1.0 / 3.0),
        Cell {
            outcome: Outcome::Failed {
                error: "wrong result: got 1, serial computed 2".into(),
            },
            ..measured("sum", Backend::Spawn, 0.0)
        },
    ];
    let one: Vec<Cell> = limits.iter().chain(&sum).cloned().collect();
    let mut merged: Vec<Cell> = Vec::new();
    for cells in [limits, sum] {
        let json = serde_json::to_string(&Handoff { cells, error: None }).unwrap();
        let back: Handoff = serde_json::from_str(&json).unwrap();
        merged.extend(back.cells);
    }
    let report = |cells: &[Cell]| {
        Report::new(
            &Config::for_tests(),
            cells,
            Err("not run".into()),
            Duration::from_secs(1),
            Vec::new(),
        )
    };
    let (one, merged) = (report(&one), report(&merged));
    assert!(one.rows[3].limit_s.is_some(), "the fork row has its limit");
    assert_eq!(merged.json().unwrap(), one.json().unwrap());
    assert_eq!(merged.table(), one.table());
    let plots = crate::plots::planned(&one);
    assert_eq!(merged.markdown(&plots), one.markdown(&plots));
}
