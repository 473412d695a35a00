//! The report's tests: columns, limits, peers and grouping.

use super::*;
use crate::backend::Strategy;
use crate::limits::{self, Limit};
use crate::runner::{CellId, Measurement, Rate};

fn measured(id: CellId, median_s: f64, rate: Option<Rate>, limit: Option<Limit>) -> Cell {
    Cell {
        id,
        outcome: Outcome::Measured(Measurement {
            median_s,
            min_s: median_s,
            max_s: median_s,
            reps: 3,
            warmup_s: median_s,
            base_pss: 0,
            peak_pss: 0,
            ipc_bytes: 0,
            per_item: None,
            memory_trace: Vec::new(),
        }),
        rate,
        limit,
        pid: 1,
    }
}

fn py(backend: &str, strategy: &str, median_s: Option<f64>, note: Option<&str>) -> PyCell {
    PyCell {
        workload: "sum".into(),
        variant: "Pool+map+close".into(),
        backend: backend.into(),
        strategy: strategy.into(),
        workers: Some(2),
        median_s,
        min_s: median_s,
        max_s: median_s,
        reps: median_s.map(|_| 2),
        error: None,
        note: note.map(String::from),
    }
}

/// A read limit row (1 GB at 2 threads in 50 ms: 20 GB/s), a sum row bound by reading
/// 1 GB on 2 threads, and the Python side with multiprocessing and two peers.
fn report() -> Report {
    let read = CellId::new(
        limits::WORKLOAD,
        limits::READ,
        Backend::Rayon,
        Strategy::Direct,
        Some(2),
    );
    let fork = CellId::new(
        "sum",
        "Pool+map+close",
        Backend::Fork,
        Strategy::Inherit,
        Some(2),
    );
    let cells = [
        measured(read, 0.05, Some(Rate::Throughput(1_000_000_000)), None),
        measured(fork, 0.2, None, Some(Limit::read(1_000_000_000, 2))),
    ];
    let run = PyRun {
        python: "3.11.7".into(),
        numpy: "2.4.6".into(),
        cells: vec![
            py("fork", "inherit", Some(0.3), None),
            py("mpire", "inherit", Some(0.4), None),
            py("joblib", "shm", None, Some("no such thing")),
        ],
        peers: Default::default(),
        stages: Vec::new(),
    };
    Report::new(
        &Config::for_tests(),
        &cells,
        Ok(("3.11.7".into(), run)),
        Duration::from_secs(1),
        vec![
            Stage {
                name: "sum".into(),
                secs: 2.5,
                steal: Some(0.0421),
            },
            Stage {
                name: "python".into(),
                secs: 1.25,
                steal: Some(0.0),
            },
            Stage {
                name: "py sum".into(),
                secs: 1.0,
                steal: None,
            },
        ],
    )
}

#[test]
fn the_header_gives_each_stage_its_time_and_the_hosts_share() {
    let r = report();
    let table = r.table();
    assert!(
        table.contains("wall time: 1.0 s (sum 2.5 s, python 1.2 s, py sum 1.0 s)"),
        "{table}"
    );
    let steal = table
        .lines()
        .find(|l| l.starts_with("host steal"))
        .expect("a line for the host's share");
    assert!(steal.ends_with(": sum 4.2%, python 0.0%"), "{steal}");
    assert!(r.markdown(&[]).contains(steal), "the markdown's header too");
}

#[test]
fn a_row_shows_its_limit_and_its_distance_from_it() {
    let r = report();
    let row = &r.rows[1];
    assert!((row.limit_s.unwrap() - 0.05).abs() < 1e-12);
    assert_eq!(row.limit_of.as_deref(), Some("read 1000 MB on 2"));
    let line = r
        .table()
        .lines()
        .find(|l| l.starts_with("sum "))
        .unwrap()
        .to_string();
    assert!(line.contains("50.00 ms 4.0x"), "{line}");
    assert!(line.contains("1.50x"), "vs Python: 0.3 / 0.2: {line}");
    assert!(r
        .markdown(&[])
        .contains("Limits of this run: read 20.0 GB/s ×2."));
}

#[test]
fn peers_are_rows_under_their_workload_against_our_fork_row() {
    let r = report();
    assert_eq!(r.peers.len(), 2, "multiprocessing's cell is not a peer");
    assert!((r.peers[0].vs_ours.unwrap() - 2.0).abs() < 1e-12);
    let table = r.table();
    let mpire = table
        .lines()
        .find(|l| l.contains("py mpire/inherit"))
        .unwrap();
    assert!(
        mpire.starts_with("sum ") && mpire.ends_with("2.00x"),
        "{mpire}"
    );
    let joblib = table.lines().find(|l| l.contains("py joblib/shm")).unwrap();
    assert!(joblib.contains("n/a: no such thing"), "{joblib}");
    assert!(
        table.contains("joblib: no such thing"),
        "the notes under the table"
    );
    let md = r.markdown(&[]);
    assert!(md.contains("| sum | Pool+map+close | py mpire/inherit | 2 | 400.00 ms |"));
}

#[test]
fn rows_are_grouped_by_variant_in_the_order_they_first_ran() {
    let id = |variant: &str, b| CellId::new("w", variant.to_string(), b, Strategy::Copy, Some(2));
    let cells: Vec<Cell> = [
        id("cold", Backend::Threads),
        id("warm", Backend::Threads),
        id("cold", Backend::Fork),
        id("warm", Backend::Fork),
    ]
    .into_iter()
    .map(|id| measured(id, 0.1, None, None))
    .collect();
    let r = Report::new(
        &Config::for_tests(),
        &cells,
        Err("no".into()),
        Duration::ZERO,
        Vec::new(),
    );
    let order: Vec<(String, Backend)> = r
        .rows
        .iter()
        .map(|row| (row.cell.id.variant.clone(), row.cell.id.backend))
        .collect();
    assert_eq!(
        order,
        [
            ("cold".to_string(), Backend::Threads),
            ("cold".to_string(), Backend::Fork),
            ("warm".to_string(), Backend::Threads),
            ("warm".to_string(), Backend::Fork),
        ]
    );
}

#[test]
fn times_pick_a_readable_unit() {
    assert_eq!(time(0.000_014_4), "14.4 µs");
    assert_eq!(time(0.0351), "35.10 ms");
    assert_eq!(time(1.316), "1.32 s");
    assert_eq!(mb(0), "0");
    assert_eq!(mb(524_288_000), "524.3");
}
