//! # multiproc-bench
//!
//! The researchers' comparison: the tutorial's workloads on each backend and data strategy,
//! side by side in one run. This cut compares the threads and fork backends with plain rayon
//! and a serial baseline on the chunked sum, per-task overhead and pool start-up.
//!
//! ```text
//! cargo run --release -p multiproc-bench -- all
//! cargo run --release -p multiproc-bench -- sum --size-mb 500 --chunks 12 --workers 2
//! cargo run --release -p multiproc-bench -- overhead --tasks 100000 --chunksize 1 --chunksize 100
//! ```

mod report;
mod stats;
mod workloads;

use clap::{Args, Parser, Subcommand};

/// Command-line interface.
#[derive(Debug, Parser)]
#[command(
    name = "multiproc-bench",
    about = "Compare multiproc backends and data strategies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every workload takes.
#[derive(Debug, Args, Clone)]
struct Common {
    /// Worker threads or processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Timed repetitions after one warm-up run.
    #[arg(long, default_value_t = 5)]
    reps: usize,
}

/// Options of the chunked sum.
#[derive(Debug, Args, Clone)]
struct SumArgs {
    /// Size of the array in MiB of f64.
    #[arg(long, default_value_t = 500)]
    size_mb: usize,
    /// Number of chunks (the tutorial: 12, giving 13 tasks).
    #[arg(long, default_value_t = 12)]
    chunks: usize,
}

/// Options of the overhead measurement.
#[derive(Debug, Args, Clone)]
struct OverheadArgs {
    /// Number of trivial tasks.
    #[arg(long, default_value_t = 100_000)]
    tasks: u64,
    /// Chunk sizes to measure (repeat the flag).
    #[arg(long = "chunksize", default_values_t = [1, 100, 12_500])]
    chunksizes: Vec<usize>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The tutorial's chunked sum of a large array.
    Sum {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        sum: SumArgs,
    },
    /// Per-task dispatch cost of many trivial tasks.
    Overhead {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        overhead: OverheadArgs,
    },
    /// Pool start-up and shutdown on each backend.
    Startup {
        #[command(flatten)]
        common: Common,
    },
    /// Every workload with its defaults.
    All {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        sum: SumArgs,
        #[command(flatten)]
        overhead: OverheadArgs,
    },
}

fn check_common(c: &Common) -> Result<(), String> {
    if c.workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    if c.reps == 0 {
        return Err("--reps must be at least 1".into());
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), String> {
    let mut rows = Vec::new();
    let (common, sum, overhead, startup) = match cli.command {
        Command::Sum { common, sum } => (common, Some(sum), None, false),
        Command::Overhead { common, overhead } => (common, None, Some(overhead), false),
        Command::Startup { common } => (common, None, None, true),
        Command::All {
            common,
            sum,
            overhead,
        } => (common, Some(sum), Some(overhead), true),
    };
    check_common(&common)?;
    println!(
        "multiproc-bench: {} workers, {} repetitions after a warm-up, {} cores available",
        common.workers,
        common.reps,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if let Some(s) = sum {
        workloads::sum::prepare(s.size_mb, s.chunks)?;
        rows.extend(workloads::sum::run(common.workers, common.reps)?);
    }
    if let Some(o) = overhead {
        rows.extend(workloads::overhead::run(
            common.workers,
            common.reps,
            o.tasks,
            &o.chunksizes,
        )?);
    }
    if startup {
        rows.extend(workloads::overhead::startup(common.workers, common.reps)?);
    }
    report::print_table(&rows);
    Ok(())
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("multiproc-bench: {e}");
        std::process::exit(1);
    }
}
