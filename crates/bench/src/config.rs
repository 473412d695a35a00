//! The options of a run, after the command line has been parsed and checked.

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Strategy};

/// Everything a workload needs to know about this run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Config {
    /// Worker counts of the matrix (each cell runs at each count).
    pub workers: Vec<usize>,
    /// Extra worker counts for the speedup sweep of the chunked sum (`all` and `sum`).
    pub sweep: Vec<usize>,
    /// Timed repetitions after the warm-up.
    pub reps: usize,
    /// Fewer repetitions when they would take longer than this, seconds (at least
    /// [`MIN_RUNS`](crate::stats::MIN_RUNS) while those take less than as many budgets).
    pub cell_seconds: f64,
    /// The same budget for the Python side's cells (smaller by default: the Python
    /// workloads, with the peers, are most of the run's time).
    pub py_cell_seconds: f64,
    /// A run with no result after this many seconds fails (its workers are killed).
    pub cell_timeout: f64,
    /// The backends to run.
    pub backends: Vec<Backend>,
    /// The data strategies to run.
    pub strategies: Vec<Strategy>,
    /// Chunked sum: MiB of f64.
    pub size_mb: usize,
    /// Copy-on-write: MiB of f64.
    pub cow_mb: usize,
    /// Chunked sum and copy-on-write: `nelems = len / chunks` (tasks: `chunks`, plus one for
    /// a remainder).
    pub chunks: usize,
    /// Voxel squaring: the side of the cube.
    pub voxel_side: usize,
    /// Voxel squaring: jobs (the tutorial's `nprocs`: that many index lists and a
    /// remainder, or that many slabs).
    pub voxel_jobs: usize,
    /// crunchImage: number of images.
    pub images: usize,
    /// crunchImage: the tutorial's sleeps are multiplied by this.
    pub wait_scale: f64,
    /// crunchImage: pool size (the tutorial's 16).
    pub crunch_workers: usize,
    /// Trivial-task overhead: number of tasks.
    pub tasks: usize,
    /// Large payload: MiB of f64 in the argument and in the result.
    pub payload_mb: usize,
    /// Memory sampling interval, milliseconds.
    pub sample_ms: u64,
}

impl Config {
    /// Small options for unit tests: threads, copy and inherit, one worker count.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Config {
        Config {
            workers: vec![2],
            sweep: Vec::new(),
            reps: 3,
            cell_seconds: 10.0,
            py_cell_seconds: 10.0,
            cell_timeout: 30.0,
            backends: vec![Backend::Threads],
            strategies: vec![Strategy::Copy, Strategy::Inherit],
            size_mb: 1,
            cow_mb: 1,
            chunks: 1,
            voxel_side: 2,
            voxel_jobs: 1,
            images: 1,
            wait_scale: 0.0,
            crunch_workers: 1,
            tasks: 1,
            payload_mb: 1,
            sample_ms: 10,
        }
    }

    /// Elements of f64 in `mb` MiB.
    pub(crate) fn f64s(mb: usize) -> usize {
        mb * (1_048_576 / 8)
    }

    /// Checks the values that the workloads rely on.
    pub(crate) fn check(&self) -> Result<(), String> {
        let positive = [
            ("--workers", self.workers.iter().copied().min().unwrap_or(0)),
            ("--reps", self.reps),
            ("--size-mb", self.size_mb),
            ("--cow-mb", self.cow_mb),
            ("--chunks", self.chunks),
            ("--voxel-side", self.voxel_side),
            ("--voxel-jobs", self.voxel_jobs),
            ("--images", self.images),
            ("--crunch-workers", self.crunch_workers),
            ("--tasks", self.tasks),
            ("--payload-mb", self.payload_mb),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.sweep.contains(&0) {
            return Err("--sweep counts must be at least 1".into());
        }
        if Config::f64s(self.size_mb.min(self.cow_mb)) < self.chunks {
            return Err(format!(
                "--size-mb {} / --cow-mb {} is too small for {} chunks",
                self.size_mb, self.cow_mb, self.chunks
            ));
        }
        if !(self.cell_timeout > 0.0 && self.cell_timeout.is_finite()) {
            return Err("--cell-timeout must be a positive number of seconds".into());
        }
        if !(self.wait_scale >= 0.0 && self.wait_scale.is_finite()) {
            return Err("--wait-scale must be a finite number >= 0".into());
        }
        if self.backends.is_empty() || self.strategies.is_empty() {
            return Err("select at least one backend and one strategy".into());
        }
        Ok(())
    }
}
