//! Memory accounting: what the tutorial measures with `free --mega`, and the footprint of a
//! process tree (this process and its workers) as the sum of PSS.
//!
//! RSS counts a page once in *every* process that maps it, so a 500 MB array inherited by
//! four forked workers shows up as 2.5 GB of RSS. PSS (proportional set size) divides each
//! page among the processes sharing it, so the PSS of a whole tree is what the tree really
//! costs — and copy-on-write copies show up in it as they happen.
//!
//! Linux only: everything here reads `/proc`. Sizes are bytes unless a name says `mb`, and
//! `mb` means 10⁶ bytes, as in `free --mega`.
//!
//! ```no_run
//! use multiproc_core::{memusage, self_tree_pss};
//!
//! println!("system: {}", memusage()?);                  // e.g. "1234 / 24000 MB"
//! println!("this tree: {} MB", self_tree_pss()? / 1_000_000);
//! # Ok::<(), multiproc_core::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;

use multiproc_sys::procfs;

use crate::{Error, Result};

/// One megabyte as `free --mega` counts it.
const MB: u64 = 1_000_000;

/// The system's memory, as `free` reports it (see [`memusage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemMemory {
    /// Physical memory (`MemTotal`), in bytes.
    pub total: u64,
    /// Memory available for starting new work without swapping (`MemAvailable`), in bytes.
    pub available: u64,
}

impl SystemMemory {
    /// Bytes in use: `total - available`, the "used" column of `free`.
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }

    /// [`used`](Self::used) in megabytes (10⁶ bytes, rounded down), as `free --mega`.
    pub fn used_mb(&self) -> u64 {
        self.used() / MB
    }

    /// [`total`](Self::total) in megabytes (10⁶ bytes, rounded down), as `free --mega`.
    pub fn total_mb(&self) -> u64 {
        self.total / MB
    }
}

impl fmt::Display for SystemMemory {
    /// `used / total MB`, e.g. `1234 / 24000 MB`: the tutorial's `memusage()` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} / {} MB", self.used_mb(), self.total_mb())
    }
}

/// The system's used and total memory, like the tutorial's `free --mega` helper; its
/// `Display` is `used / total MB`.
///
/// Read from `/proc/meminfo`: total is `MemTotal`, used is `MemTotal - MemAvailable`, as
/// `free` computes it.
pub fn memusage() -> Result<SystemMemory> {
    let (total, available) = procfs::meminfo()?;
    Ok(SystemMemory { total, available })
}

/// The proportional set size of one process, in bytes (`Pss` of `/proc/PID/smaps_rollup`).
///
/// Fails with [`Error::Io`] if the process does not exist (or is not ours to inspect).
pub fn pss_bytes(pid: u32) -> Result<u64> {
    Ok(procfs::pss(pid)?)
}

/// The resident set size of one process, in bytes (`VmRSS` of `/proc/PID/status`). Counts
/// shared pages in full; see [`tree_pss`] for why PSS is the better total.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    Ok(procfs::vm_rss(pid)?)
}

/// The parent of every process currently visible in `/proc`.
fn parents() -> Result<HashMap<u32, u32>> {
    let mut parents = HashMap::new();
    for pid in procfs::pids()? {
        // A process that exited meanwhile is left out.
        if let Ok(stat) = procfs::stat(pid) {
            parents.insert(pid, stat.ppid);
        }
    }
    Ok(parents)
}

/// `root` and all its descendants that exist right now, `root` first.
pub fn process_tree(root: u32) -> Result<Vec<u32>> {
    let parents = parents()?;
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &ppid) in &parents {
        children.entry(ppid).or_default().push(pid);
    }
    let mut tree = vec![root];
    let mut next = 0;
    while let Some(&pid) = tree.get(next) {
        next += 1;
        if let Some(kids) = children.get(&pid) {
            tree.extend(kids.iter().copied().filter(|&kid| kid != pid));
        }
    }
    Ok(tree)
}

/// The memory footprint of a process tree in bytes: the sum of PSS over `root` and all its
/// descendants (its workers, their children, ...).
///
/// RSS counts a page once in *every* process that maps it, so a 500 MB array inherited by
/// four forked workers shows up as 2.5 GB of RSS. PSS (proportional set size) divides each
/// page among the processes sharing it, so the PSS of a whole tree is what the tree really
/// costs — and copy-on-write copies show up in it as they happen.
///
/// Descendants are found by walking the parent pids in `/proc/*/stat`; a process that exits
/// during the walk (or is not ours to inspect) counts as zero instead of failing. Fails with
/// [`Error::Io`] if `root` itself cannot be read.
pub fn tree_pss(root: u32) -> Result<u64> {
    let tree = process_tree(root)?;
    let mut total = pss_bytes(root)?;
    for &pid in &tree[1..] {
        match pss_bytes(pid) {
            Ok(pss) => total += pss,
            Err(Error::Io(e)) if procfs::vanished(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// [`tree_pss`] of this process: what this program and all its workers cost, in bytes.
pub fn self_tree_pss() -> Result<u64> {
    tree_pss(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memusage_reads_meminfo_and_prints_like_free_mega() {
        let m = memusage().unwrap();
        assert!(m.total > 0 && m.available > 0);
        assert!(m.used() <= m.total);
        let shown = m.to_string();
        assert_eq!(shown, format!("{} / {} MB", m.used_mb(), m.total_mb()));
        let (used, rest) = shown.split_once(" / ").unwrap();
        assert!(
            used.parse::<u64>().is_ok() && rest.ends_with(" MB"),
            "{shown}"
        );
    }

    #[test]
    fn display_uses_decimal_megabytes() {
        let m = SystemMemory {
            total: 24_000_000_000,
            available: 22_766_000_000,
        };
        assert_eq!(m.to_string(), "1234 / 24000 MB");
    }

    #[test]
    fn the_tree_of_this_process_starts_with_it() {
        let me = std::process::id();
        let tree = process_tree(me).unwrap();
        assert_eq!(tree[0], me);
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(pss_bytes(me).unwrap() > 0);
    }

    #[test]
    fn a_missing_root_is_an_error() {
        // Pids are below 2^22 on Linux.
        assert!(matches!(tree_pss(u32::MAX - 1), Err(Error::Io(_))));
    }

    #[test]
    fn tree_pss_grows_with_touched_memory() {
        const SIZE: usize = 64 << 20;
        let before = self_tree_pss().unwrap();
        assert!(before > 0);
        let mut block = vec![0u8; SIZE];
        // Touch every page (a zeroed allocation may not be backed yet).
        for page in block.chunks_mut(4096) {
            page[0] = 1;
        }
        let block = std::hint::black_box(block);
        let after = self_tree_pss().unwrap();
        assert!(
            after >= before + (32 << 20),
            "PSS grew only from {before} to {after} after touching 64 MiB"
        );
        drop(block);
    }
}
