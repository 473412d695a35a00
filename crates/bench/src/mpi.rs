//! The MPI cells: the MPI backend (`crates/backend-mpi`) beside the fork and spawn pools.
//!
//! That crate needs an MPI library to build, so the bench does not link it: when `mpirun`
//! and `mpicc` are on `PATH`, it builds the backend's `mpi_bench` example and launches it under
//! `mpirun -n 3 --oversubscribe` (one coordinator, two workers), which measures the MPI pool
//! and, in the same run, a fork pool (trivial tasks) or fork/inherit and spawn/shm (the
//! chunked sum). Without MPI it says how to install it and measures nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::Config;
use crate::Res;

/// How to get MPI on the distribution this project is tested on.
pub(crate) const INSTALL: &str = "MPI cells skipped: no `mpirun`/`mpicc` on PATH. Install Open \
     MPI with `apt-get install openmpi-bin libopenmpi-dev libclang-dev openssh-client` \
     (libclang is for rsmpi's bindings) and run again.";

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The repository's root (this crate is `crates/bench`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the MPI cells at `cfg`'s sizes and returns their lines (`Ok(None)` without MPI).
pub(crate) fn run(cfg: &Config) -> Res<Option<Vec<String>>> {
    if !(on_path("mpirun") && on_path("mpicc")) {
        return Ok(None);
    }
    let root = root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let manifest = root.join("crates/backend-mpi/Cargo.toml");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "-q",
            "--release",
            "--example",
            "mpi_bench",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .map_err(|e| format!("building the MPI backend's bench: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the MPI backend's bench failed ({status})"
        ));
    }
    let program = target.join("release/examples/mpi_bench");
    let tasks = cfg.tasks.to_string();
    let mb = cfg.size_mb.to_string();
    let mut lines = Vec::new();
    for args in [
        ["tiny", "--n", tasks.as_str()],
        ["sum", "--mb", mb.as_str()],
    ] {
        let out = Command::new("timeout")
            .args(["600", "mpirun", "-n", "3", "--oversubscribe"])
            .arg(&program)
            .args(args)
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
            .output()
            .map_err(|e| format!("launching mpirun: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "mpirun -n 3 mpi_bench {}: {}\n{stdout}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        lines.extend(
            stdout
                .lines()
                .filter(|l| l.starts_with("tiny:") || l.starts_with("sum:"))
                .map(|l| format!("mpirun -n 3: {l}")),
        );
    }
    Ok(Some(lines))
}
