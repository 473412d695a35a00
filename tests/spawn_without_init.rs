//! A program that creates spawn pools or processes without calling `init()` first.
//! Without the bootstrapping check, every worker re-ran `main` and started its own
//! pool: a runaway, and when the pool was created on only some code path, the parent's error
//! did not mention `init()`.
//!
//! `harness = false`: this file's `main` is both the program under test (when `ROLE` is set;
//! it never calls `init()`) and the orchestrator that runs it, with a watchdog, several times
//! per scenario. Every process that runs `main` appends its depth (0: the program, 1: one of
//! its workers, 2: a worker's child) to a log; a process at depth 2 is the runaway, and exits
//! at once so that the old behaviour stays bounded under test.

use std::fs::OpenOptions;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use multiproc::prelude::*;
use multiproc_core::testing::run_with_watchdog;

const ROLE: &str = "WITHOUT_INIT_ROLE";
const LOG: &str = "WITHOUT_INIT_LOG";
const DEPTH: &str = "WITHOUT_INIT_DEPTH";
/// "Every run": each scenario runs this many times.
const RUNS: usize = 5;
/// The watchdog: a run that has not ended by then hung. How long the pool-creation error
/// took is printed, not asserted: a run starts and execs its workers, which a loaded machine
/// can stall for seconds; speed belongs in the benchmarks.
const HANG: Duration = Duration::from_secs(90);

fn square(x: u64) -> u64 {
    x * x
}

fn nothing(_: ()) {}

fn main() {
    match std::env::var(ROLE) {
        Ok(role) => program(&role),
        Err(_) => orchestrate(),
    }
}

/// The program under test. It does **not** call `multiproc::init()`.
fn program(role: &str) {
    let depth: u32 = std::env::var(DEPTH)
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    if let Ok(path) = std::env::var(LOG) {
        let mut log = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        log.write_all(format!("{depth} {}\n", std::process::id()).as_bytes())
            .unwrap();
    }
    if depth >= 2 {
        // A worker's worker: the runaway. Stop here so that the old code stays bounded.
        std::process::exit(3);
    }
    // Single-threaded here: no other thread reads the environment.
    std::env::set_var(DEPTH, (depth + 1).to_string());
    let started = Instant::now();
    let result: multiproc::Result<String> = match role {
        "spawn-pool" => multiproc::spawn::SpawnPool::new(2)
            .and_then(|p| p.map(square, 0..4))
            .map(|v| format!("{v:?}")),
        // With MULTIPROC_START_METHOD=spawn in the environment.
        "facade-pool" => multiproc::Pool::new(2)
            .and_then(|p| p.map(square, 0..4))
            .map(|v| format!("{v:?}")),
        // Only on one code path: the workers, started without this argument, never get here.
        "conditional" => {
            if !std::env::args().any(|a| a == "--make-pool") {
                println!("no pool on this path");
                return;
            }
            multiproc::spawn::SpawnPool::new(2)
                .and_then(|p| p.map(square, 0..4))
                .map(|v| format!("{v:?}"))
        }
        "process" => multiproc::spawn::Process::new(nothing, ())
            .start()
            .and_then(|p| p.join().map(|()| format!("exitcode {:?}", p.exitcode()))),
        // The program spawns a Process; its child, running `main` again, starts a facade
        // Process by *fork*, which the spawn backend never sees: the facade's own check
        // refuses it.
        "facade-process-fork" => if depth == 0 {
            multiproc::spawn::Process::new(nothing, ()).start()
        } else {
            multiproc::Process::with_start_method(nothing, (), multiproc::StartMethod::Fork).start()
        }
        .and_then(|p| p.join().map(|()| format!("exitcode {:?}", p.exitcode()))),
        other => panic!("unknown role {other}"),
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok(v) => println!("ok {ms:.1} {v}"),
        Err(e) => println!("err {ms:.1} {e}"),
    }
}

struct Scenario {
    role: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    /// Whether the program's own call is the one that must fail (a pool); a `Process` starts
    /// (Python's `start` does not wait for the child), and the child's refusal is on stderr.
    parent_fails: bool,
    /// What the refusal (the parent's error, or the child's stderr) must say.
    refusal: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        role: "spawn-pool",
        args: &[],
        env: &[],
        parent_fails: true,
        refusal: "init()",
    },
    Scenario {
        role: "facade-pool",
        args: &[],
        env: &[("MULTIPROC_START_METHOD", "spawn")],
        parent_fails: true,
        refusal: "init()",
    },
    Scenario {
        role: "conditional",
        args: &["--make-pool"],
        env: &[],
        parent_fails: true,
        refusal: "init()",
    },
    Scenario {
        role: "process",
        args: &[],
        env: &[],
        parent_fails: false,
        refusal: "init()",
    },
    Scenario {
        role: "facade-process-fork",
        args: &[],
        env: &[],
        parent_fails: false,
        refusal: "called multiproc::Process::start without having run init()",
    },
];

fn orchestrate() {
    let exe = std::env::current_exe().unwrap();
    let dir = std::env::temp_dir().join(format!("multiproc-without-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    for s in SCENARIOS {
        if s.role == "facade-process-fork" && !cfg!(feature = "fork") {
            // Its child starts a Process by fork, which a build without `fork` cannot.
            println!("{}: skipped (built without the fork feature)", s.role);
            continue;
        }
        let mut slowest = 0.0f64;
        for run in 0..RUNS {
            let log = dir.join(format!("{}-{run}.log", s.role));
            let mut cmd = Command::new(&exe);
            cmd.args(s.args)
                .env(ROLE, s.role)
                .env(LOG, &log)
                .env_remove(DEPTH)
                .env_remove("MULTIPROC_SPAWN")
                .env_remove("MULTIPROC_START_METHOD");
            for (k, v) in s.env {
                cmd.env(k, v);
            }
            let what = format!("{} run {run}", s.role);
            let out = match run_with_watchdog(cmd, HANG) {
                Ok(out) => out,
                Err(e) => {
                    failures.push(format!("{what}: {e}"));
                    continue;
                }
            };
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let depths: Vec<u32> = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split(' ').next()?.parse().ok())
                .collect();
            let workers = depths.iter().filter(|&&d| d == 1).count();
            let runaway = depths.iter().filter(|&&d| d >= 2).count();
            if runaway > 0 {
                failures.push(format!(
                    "{what}: {runaway} workers of workers ran main (a runaway); {workers} workers"
                ));
            }
            if workers > 2 {
                failures.push(format!("{what}: {workers} workers for a pool of 2"));
            }
            let line = stdout
                .lines()
                .find(|l| l.starts_with("ok ") || l.starts_with("err "))
                .unwrap_or("");
            let mut parts = line.splitn(3, ' ');
            let (verdict, ms, message) = (
                parts.next().unwrap_or(""),
                parts.next().and_then(|m| m.parse::<f64>().ok()),
                parts.next().unwrap_or(""),
            );
            if s.parent_fails {
                if verdict != "err" || !message.contains(s.refusal) {
                    failures.push(format!(
                        "{what}: expected an error naming init(), got {line:?} (stderr: {stderr:?})"
                    ));
                }
                match ms {
                    Some(ms) => slowest = slowest.max(ms),
                    None => failures.push(format!("{what}: no duration in {line:?}")),
                }
            } else if !stderr.contains(s.refusal) {
                failures.push(format!(
                    "{what}: the child's refusal ({:?}) is not on stderr: {stderr:?} \
                     (stdout: {stdout:?})",
                    s.refusal
                ));
            }
        }
        if s.parent_fails {
            println!(
                "{}: {RUNS} runs, slowest pool-creation error {slowest:.1} ms",
                s.role
            );
        } else {
            println!("{}: {RUNS} runs, refused in the child", s.role);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("FAILED {f}");
        }
        std::process::exit(1);
    }
    println!("spawn_without_init: all scenarios passed");
}
