//! # multiproc-bench
//!
//! The researchers' comparison: the tutorial's workloads on each backend (serial and rayon
//! baselines, multiproc's threads, fork and spawn) and each way of moving data (copy over IPC,
//! fork inheritance, shared memory), side by side in one run with the same code in Python.
//!
//! ```text
//! cargo run --release -p multiproc-bench -- all
//! cargo run --release -p multiproc-bench -- sum --size-mb 500 --chunks 12 --workers 1,2,4
//! cargo run --release -p multiproc-bench -- overhead --tasks 100000 --backends rayon,fork
//! cargo run --release -p multiproc-bench -- all --quick --no-python     # a smoke test
//! cargo run --release -p multiproc-bench -- mpi     # the MPI cells only (needs Open MPI)
//! ```
//!
//! Each cell gets a warm-up run (sampled for memory: the sum of PSS over the process tree),
//! then timed runs reported as median, min and max; its result is checked against the serial
//! one. The table goes to stdout (or JSON with `--json`); a report folder gets the markdown,
//! `results.json` and SVG plots. `all` runs each workload in a process of its own, so that
//! the data one workload keeps cannot slow another's forks (see `isolate.rs`).

mod backend;
mod config;
mod isolate;
mod limits;
mod memory;
mod mpi;
mod plots;
mod pooled;
mod python;
mod report;
mod runner;
mod stats;
mod steal;
mod venv;
mod workloads;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use crate::backend::{Backend, Strategy};
use crate::config::Config;
use crate::runner::Runner;
use crate::steal::Stage;

/// Errors of the bench: a message for the user.
pub type Res<T> = std::result::Result<T, String>;

/// Command-line interface.
#[derive(Debug, Parser)]
#[command(
    name = "multiproc-bench",
    about = "Compare multiproc backends and data strategies on the tutorial's workloads, \
             side by side with Python's multiprocessing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
enum Workload {
    /// Read-only sharing: the chunked sum of a large array.
    Sum,
    /// Read/write sharing: squaring a 3-D image (index lists and slabs).
    Voxels,
    /// Pool.map / starmap / apply_async over tasks that wait (crunchImage).
    Crunch,
    /// Per-task dispatch cost of many trivial tasks.
    Overhead,
    /// Pool start-up and shutdown.
    Startup,
    /// A large argument and a large result.
    Payload,
    /// Copy-on-write: writing inherited data.
    Cow,
    /// The machine's limits: read bandwidth, memcpy, faulting in shared pages, a round trip.
    Limits,
}

impl Workload {
    /// The order of `all`, each in a process of its own (`isolate.rs`): the limits first,
    /// then the light workloads, the sum last.
    const ALL: [Workload; 8] = [
        Workload::Limits,
        Workload::Startup,
        Workload::Overhead,
        Workload::Crunch,
        Workload::Payload,
        Workload::Voxels,
        Workload::Cow,
        Workload::Sum,
    ];

    /// The workload called `name` (as on the command line).
    fn named(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Workload::Sum => "sum",
            Workload::Voxels => "voxels",
            Workload::Crunch => "crunch",
            Workload::Overhead => "overhead",
            Workload::Startup => "startup",
            Workload::Payload => "payload",
            Workload::Cow => "cow",
            Workload::Limits => "limits",
        }
    }

    /// Measures the workload's cells into `r`.
    fn run(self, r: &mut Runner) -> Res<()> {
        match self {
            Workload::Sum => workloads::sum::run(r, !r.cfg.sweep.is_empty()),
            Workload::Voxels => workloads::voxels::run(r),
            Workload::Crunch => workloads::crunch::run(r),
            Workload::Overhead => workloads::overhead::run(r),
            Workload::Startup => workloads::startup::run(r),
            Workload::Payload => workloads::payload::run(r),
            Workload::Cow => workloads::cow::run(r),
            Workload::Limits => workloads::limits::run(r),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read-only sharing: the chunked sum of a large array.
    Sum(Opts),
    /// Read/write sharing: squaring a 3-D image (index lists and slabs).
    Voxels(Opts),
    /// Pool.map / starmap / apply_async over tasks that wait (crunchImage).
    Crunch(Opts),
    /// Per-task dispatch cost of many trivial tasks.
    Overhead(Opts),
    /// Pool start-up and shutdown.
    Startup(Opts),
    /// A large argument and a large result.
    Payload(Opts),
    /// Copy-on-write: writing inherited data.
    Cow(Opts),
    /// The limit rows alone: read bandwidth, memcpy, faulting in fresh shared and heap pages,
    /// mapping resident shared pages, a Unix socket round trip between two processes, forking
    /// and spawning bare children and reaping them (every other command measures them first).
    Limits(Opts),
    /// Every workload, each in a process of its own (the limits first), then Python, then
    /// the MPI cells when MPI is installed.
    All(Opts),
    /// The MPI cells only: the MPI backend beside fork and spawn, under `mpirun -n 3` (needs
    /// Open MPI; says how to install it when it is missing).
    Mpi(Opts),
    /// Internal: the other end of the round-trip limit row (echoes stdin, a socket).
    #[command(hide = true, name = "echo-peer")]
    EchoPeer,
    /// Internal: one workload of `all`, in a process of its own (see `isolate.rs`).
    #[command(hide = true, name = "workload")]
    Workload(isolate::WorkloadArgs),
}

/// The options every subcommand takes.
#[derive(Debug, Clone, Args)]
struct Opts {
    /// Worker counts of the matrix, comma-separated (each cell runs at each count).
    #[arg(long, value_delimiter = ',', default_value = "2")]
    workers: Vec<usize>,
    /// Extra worker counts for the chunked sum's speedup plot (`all` and `sum`).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    sweep: Vec<usize>,
    /// No speedup sweep.
    #[arg(long)]
    no_sweep: bool,
    /// Timed repetitions after one warm-up.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Fewer repetitions when a cell's runs would take longer than this, seconds: at least 3
    /// while those took less than 3 budgets, at least 1 on the Python side.
    #[arg(long, default_value_t = 1.0)]
    cell_seconds: f64,
    /// `--cell-seconds` for the Python side's cells (a smaller budget keeps `all` within
    /// 3 minutes on 2 cores: Python and its peers are most of the run).
    #[arg(long, default_value_t = 0.3)]
    py_cell_seconds: f64,
    /// A run with no result after this many seconds fails: its workers are killed (10: the
    /// 500 MB copy rows take 2-3 s on a loaded 2-core machine, their first run more).
    #[arg(long, default_value_t = 10.0)]
    cell_timeout: f64,
    /// `all`: a workload's process (each runs in its own) with no result after this many
    /// seconds fails, and it and its workers are killed.
    #[arg(long, default_value_t = 300.0)]
    workload_timeout: f64,
    /// Backends, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "serial,rayon,threads,fork,spawn"
    )]
    backends: Vec<Backend>,
    /// Data strategies, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "copy,inherit,shm"
    )]
    strategies: Vec<Strategy>,
    /// Chunked sum: MiB of f64 (the tutorial's 500 MB).
    #[arg(long, default_value_t = 500)]
    size_mb: usize,
    /// Copy-on-write: MiB of f64 (smaller than the sum's by default, to keep `all` within
    /// 3 minutes: the copy strategies move it out and back every run).
    #[arg(long, default_value_t = 200)]
    cow_mb: usize,
    /// Chunked sum and copy-on-write: chunks (`nelems = len / chunks`; the tutorial's 12).
    #[arg(long, default_value_t = 12)]
    chunks: usize,
    /// Voxel squaring: side of the cube.
    #[arg(long, default_value_t = 256)]
    voxel_side: usize,
    /// Voxel squaring: jobs (the tutorial's nprocs = 8).
    #[arg(long, default_value_t = 8)]
    voxel_jobs: usize,
    /// crunchImage: images (the tutorial's 20).
    #[arg(long, default_value_t = 20)]
    images: usize,
    /// crunchImage: the tutorial's sleeps (2 s, 1 s, 3 s) are multiplied by this.
    #[arg(long, default_value_t = 0.005)]
    wait_scale: f64,
    /// crunchImage: pool size (the tutorial's 16).
    #[arg(long, default_value_t = 16)]
    crunch_workers: usize,
    /// Trivial-task overhead: tasks.
    #[arg(long, default_value_t = 5_000)]
    tasks: usize,
    /// Large payload: MiB of f64.
    #[arg(long, default_value_t = 100)]
    payload_mb: usize,
    /// Memory sampling interval during the warm-up, milliseconds.
    #[arg(long, default_value_t = 10)]
    sample_ms: u64,
    /// Report folder (markdown, results.json, SVG plots).
    #[arg(long, default_value = "target/multiproc-report")]
    report: PathBuf,
    /// Print the results as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Do not run the Python side.
    #[arg(long)]
    no_python: bool,
    /// Do not measure the limit rows (read bandwidth, memcpy, page faults, round trip) that
    /// every command measures first.
    #[arg(long)]
    no_limits: bool,
    /// Do not run the MPI cells (`all`).
    #[arg(long)]
    no_mpi: bool,
    /// The Python interpreter (needs numpy; mpire, pebble and joblib for the peers' rows).
    /// Without it: python3 if it has them all, else a virtual environment under the target
    /// folder (`target/multiproc-bench-venv`), made and filled with pip on the first run.
    #[arg(long)]
    python: Option<String>,
    /// Small sizes and few repetitions: a smoke test of every cell in seconds (overrides
    /// the size, task and repetition options).
    #[arg(long)]
    quick: bool,
}

impl Opts {
    fn config(&self) -> Config {
        let mut cfg = Config {
            workers: self.workers.clone(),
            sweep: if self.no_sweep {
                Vec::new()
            } else {
                self.sweep.clone()
            },
            reps: self.reps,
            cell_seconds: self.cell_seconds,
            py_cell_seconds: self.py_cell_seconds,
            cell_timeout: self.cell_timeout,
            backends: self.backends.clone(),
            strategies: self.strategies.clone(),
            size_mb: self.size_mb,
            cow_mb: self.cow_mb,
            chunks: self.chunks,
            voxel_side: self.voxel_side,
            voxel_jobs: self.voxel_jobs,
            images: self.images,
            wait_scale: self.wait_scale,
            crunch_workers: self.crunch_workers,
            tasks: self.tasks,
            payload_mb: self.payload_mb,
            sample_ms: self.sample_ms,
        };
        if self.quick {
            cfg.size_mb = 16;
            cfg.cow_mb = 16;
            cfg.voxel_side = 48;
            cfg.wait_scale = 0.001;
            cfg.crunch_workers = cfg.crunch_workers.min(4);
            cfg.tasks = 2_000;
            cfg.payload_mb = 8;
            cfg.reps = 2;
            cfg.sweep.clear();
        }
        cfg
    }
}

fn run(cli: Cli) -> Res<bool> {
    let all = matches!(cli.command, Command::All(_));
    let (workloads, opts) = match cli.command {
        Command::Sum(o) => (vec![Workload::Sum], o),
        Command::Voxels(o) => (vec![Workload::Voxels], o),
        Command::Crunch(o) => (vec![Workload::Crunch], o),
        Command::Overhead(o) => (vec![Workload::Overhead], o),
        Command::Startup(o) => (vec![Workload::Startup], o),
        Command::Payload(o) => (vec![Workload::Payload], o),
        Command::Cow(o) => (vec![Workload::Cow], o),
        Command::Limits(o) => (vec![Workload::Limits], o),
        Command::All(o) => (Workload::ALL.to_vec(), o),
        Command::Mpi(o) => return run_mpi(&o.config(), &o.report).map(|()| true),
        Command::EchoPeer => return workloads::limits::echo_peer().map(|()| true),
        Command::Workload(args) => return isolate::child(args).map(|()| true),
    };
    let mut workloads = workloads;
    if opts.no_limits {
        workloads.retain(|&w| w != Workload::Limits);
    } else if !workloads.contains(&Workload::Limits) {
        workloads.insert(0, Workload::Limits);
    }
    let cfg = opts.config();
    cfg.check()?;
    let workload_timeout = Duration::try_from_secs_f64(opts.workload_timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or("--workload-timeout must be a positive number of seconds")?;
    let started = Instant::now();
    let python = if opts.no_python {
        Err("skipped (--no-python)".to_string())
    } else {
        venv::choose(opts.python.as_deref(), opts.quick)
    };
    let steps = workloads.len() as u64 + u64::from(python.is_ok());
    let mut r = Runner::new(cfg.clone(), steps);
    let mut stages: Vec<Stage> = Vec::new();
    for &w in &workloads {
        let (stage, out) = Stage::time(w.name(), || {
            if all {
                isolate::measure(&mut r, w, workload_timeout);
                Ok(())
            } else {
                w.run(&mut r)
            }
        });
        out?;
        stages.push(stage);
        r.step();
    }
    let names: Vec<&str> = workloads.iter().map(|w| w.name()).collect();
    let py = match python {
        Ok((interpreter, _)) => {
            r.status("python: running the same workloads");
            let (stage, out) = Stage::time("python", || {
                python::run(&interpreter, &cfg, &names, &opts.report, r.bar())
            });
            stages.push(stage);
            if let Ok(run) = &out {
                stages.extend(run.stages.iter().map(|(w, secs)| Stage {
                    name: format!("py {w}"),
                    secs: *secs,
                    steal: None,
                }));
            }
            r.step();
            match out {
                Ok(run) => Ok((
                    format!("{} ({})", run.versions(), interpreter.display()),
                    run,
                )),
                Err(e) => Err(format!("the Python run failed: {e}")),
            }
        }
        Err(why) => Err(why),
    };
    r.finish();
    let rust_and_python = started.elapsed();
    let report = report::Report::new(&cfg, &r.cells, py, rust_and_python, stages);
    if opts.json {
        println!("{}", report.json()?);
    } else {
        print!("{}", report.table());
    }
    report.write(&opts.report, &plots::planned(&report))?;
    plots::write_all(&report, &opts.report)?;
    eprintln!(
        "multiproc-bench: {} cells in {:.1} s; report in {}",
        r.cells.len(),
        rust_and_python.as_secs_f64(),
        opts.report.display()
    );
    if all && !opts.no_mpi {
        run_mpi(&cfg, &opts.report)?;
    }
    Ok(report.failures() == 0)
}

/// The MPI cells (see `mpi.rs`): printed, and written to `mpi.txt` in the report folder.
fn run_mpi(cfg: &Config, report: &std::path::Path) -> Res<()> {
    match mpi::run(cfg)? {
        None => eprintln!("multiproc-bench: {}", mpi::INSTALL),
        Some(lines) => {
            println!("\nMPI backend, same runs as fork and spawn (crates/backend-mpi):");
            for l in &lines {
                println!("  {l}");
            }
            std::fs::create_dir_all(report).map_err(|e| e.to_string())?;
            std::fs::write(report.join("mpi.txt"), lines.join("\n") + "\n")
                .map_err(|e| format!("writing mpi.txt: {e}"))?;
        }
    }
    Ok(())
}

fn main() {
    // A spawned worker is this binary started again: it becomes a worker here, before
    // anything else runs, and never returns.
    multiproc_spawn::init();
    backend::start_watchdog();
    match run(Cli::parse()) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("multiproc-bench: some cells FAILED (see the table)");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("multiproc-bench: {e}");
            std::process::exit(1);
        }
    }
}
