//! The physical limits a row is compared with: what the machine's memory and kernel allow,
//! measured in the same run by the `limits` workload (`workloads/limits.rs`), and how a row
//! declares which of them bound it ([`Limit`]). The report turns a row's [`Limit`] into
//! seconds with the [`Rates`] of the run and shows the row's distance from it.

use serde::{Deserialize, Serialize};

/// The workload name of the limit rows.
pub(crate) const WORKLOAD: &str = "limits";
/// Variant: summing warm memory with rayon (read bandwidth).
pub(crate) const READ: &str = "read bandwidth (rayon sum, warm)";
/// Variant: copying warm memory into warm memory.
pub(crate) const MEMCPY: &str = "memcpy (warm)";
/// Variant: creating a fresh shared mapping and writing one value per page.
pub(crate) const FAULT: &str = "fault in fresh shm pages";
/// Variant: a fresh heap allocation (what a decoded result or a newly built vector gets)
/// and one write per page.
pub(crate) const HEAP_FAULT: &str = "fault in fresh heap pages";
/// Variant: mapping shared pages that already exist again and reading one value per page.
pub(crate) const MAP: &str = "map resident shm pages";
/// Variant: one byte to another process over a Unix socket and back.
pub(crate) const ROUND_TRIP: &str = "Unix socket round trip";
/// Variant: forking children that exit at once, and reaping them.
pub(crate) const FORK: &str = "fork, exit and reap";
/// Variant: starting this binary again in children that exit at once, and reaping them.
pub(crate) const SPAWN: &str = "spawn, exit and reap";

/// The page size the fault row counts in (the kernel's base page).
pub(crate) const PAGE: u64 = 4096;

/// What bounds a row from below: bytes that must be read, bytes that must be copied (read
/// and written), fresh pages that must be faulted in (allocated: copy-on-write), existing
/// shared pages that must be mapped into a fresh process, fresh heap pages written for the
/// first time, round trips between two processes, child processes forked (or this binary
/// spawned) and reaped; read
/// and copy at the bandwidth of `threads` threads, faults and mappings shared by `threads`
/// processes, round trips and forks one after the other. A row's limit is the sum of the
/// terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Limit {
    /// Bytes read once.
    pub read: u64,
    /// Bytes copied once (read and written).
    pub copy: u64,
    /// Bytes of fresh pages faulted in (allocated and filled: copy-on-write).
    pub fault: u64,
    /// Bytes of existing shared pages faulted into fresh mappings (a new worker's).
    pub map: u64,
    /// Bytes of fresh heap pages written for the first time (a new allocation this large
    /// comes straight from the kernel: a decoded result, a vector decoded in a fresh worker).
    pub heap: u64,
    /// Round trips to another process, one after the other.
    pub trips: u64,
    /// Child processes the caller forks, and reaps once they have exited.
    pub forks: u64,
    /// Child processes running this binary again that the caller starts, and reaps once they
    /// have exited.
    pub spawns: u64,
    /// Threads (or processes) sharing the work.
    pub threads: usize,
}

impl Limit {
    /// Reading `bytes` on `threads` threads.
    pub(crate) fn read(bytes: u64, threads: usize) -> Limit {
        Limit {
            read: bytes,
            threads,
            ..Limit::default()
        }
    }

    /// Copying `bytes` on `threads` threads.
    pub(crate) fn copy(bytes: u64, threads: usize) -> Limit {
        Limit {
            copy: bytes,
            threads,
            ..Limit::default()
        }
    }

    /// `trips` round trips between two processes.
    pub(crate) fn trips(trips: u64) -> Limit {
        Limit {
            trips,
            threads: 1,
            ..Limit::default()
        }
    }

    /// `forks` children forked and reaped by the caller.
    pub(crate) fn forks(forks: u64) -> Limit {
        Limit {
            forks,
            threads: 1,
            ..Limit::default()
        }
    }

    /// `spawns` children started from this binary and reaped by the caller.
    pub(crate) fn spawns(spawns: u64) -> Limit {
        Limit {
            spawns,
            threads: 1,
            ..Limit::default()
        }
    }

    /// Adds `trips` round trips.
    pub(crate) fn plus_trips(self, trips: u64) -> Limit {
        Limit {
            trips: self.trips + trips,
            ..self
        }
    }

    /// Adds `bytes` copied.
    pub(crate) fn plus_copy(self, bytes: u64) -> Limit {
        Limit {
            copy: self.copy + bytes,
            ..self
        }
    }

    /// Adds `bytes` read.
    pub(crate) fn plus_read(self, bytes: u64) -> Limit {
        Limit {
            read: self.read + bytes,
            ..self
        }
    }

    /// Adds `bytes` of fresh pages faulted in.
    pub(crate) fn plus_fault(self, bytes: u64) -> Limit {
        Limit {
            fault: self.fault + bytes,
            ..self
        }
    }

    /// Adds `bytes` of fresh heap pages written for the first time.
    pub(crate) fn plus_heap(self, bytes: u64) -> Limit {
        Limit {
            heap: self.heap + bytes,
            ..self
        }
    }

    /// Adds `bytes` of existing shared pages mapped into fresh mappings.
    pub(crate) fn plus_map(self, bytes: u64) -> Limit {
        Limit {
            map: self.map + bytes,
            ..self
        }
    }

    /// The limit in seconds with this run's rates, or `None` when a term's rate was not
    /// measured.
    pub(crate) fn seconds(&self, rates: &Rates) -> Option<f64> {
        let threads = self.threads.max(1);
        let mut total = 0.0;
        if self.read > 0 {
            total += self.read as f64 / rates.read_bps(threads)?;
        }
        if self.copy > 0 {
            total += self.copy as f64 / rates.copy_bps(threads)?;
        }
        if self.fault > 0 {
            let pages = self.fault.div_ceil(PAGE) as f64;
            total += pages * rates.fault_per_page? / threads as f64;
        }
        if self.map > 0 {
            let pages = self.map.div_ceil(PAGE) as f64;
            total += pages * rates.map_per_page? / threads as f64;
        }
        if self.heap > 0 {
            let pages = self.heap.div_ceil(PAGE) as f64;
            total += pages * rates.heap_per_page? / threads as f64;
        }
        if self.trips > 0 {
            total += self.trips as f64 * rates.round_trip?;
        }
        if self.forks > 0 {
            total += self.forks as f64 * rates.fork_per_child?;
        }
        if self.spawns > 0 {
            total += self.spawns as f64 * rates.spawn_per_child?;
        }
        Some(total)
    }

    /// What the limit is made of, for the notes: `read 500 MB ×2 + fault 500 MB / 2`.
    pub(crate) fn describe(&self) -> String {
        let mb = |b: u64| format!("{:.0} MB", b as f64 / 1e6);
        let mut terms = Vec::new();
        if self.read > 0 {
            terms.push(format!("read {} on {}", mb(self.read), self.threads));
        }
        if self.copy > 0 {
            terms.push(format!("copy {} on {}", mb(self.copy), self.threads));
        }
        if self.fault > 0 {
            terms.push(format!("fault {} / {}", mb(self.fault), self.threads));
        }
        if self.map > 0 {
            terms.push(format!("map {} / {}", mb(self.map), self.threads));
        }
        if self.heap > 0 {
            terms.push(format!("fresh heap {} / {}", mb(self.heap), self.threads));
        }
        if self.forks > 0 {
            terms.push(format!("{} forks", self.forks));
        }
        if self.spawns > 0 {
            terms.push(format!("{} spawns", self.spawns));
        }
        match self.trips {
            0 => {}
            1 => terms.push("1 round trip".into()),
            n => terms.push(format!("{n} round trips")),
        }
        terms.join(" + ")
    }
}

/// The rates the limit rows measured in this run.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Rates {
    /// Read bandwidth by thread count, bytes per second.
    pub read: Vec<(usize, f64)>,
    /// memcpy bandwidth by thread count, bytes per second.
    pub copy: Vec<(usize, f64)>,
    /// Seconds to fault in one fresh shared page.
    pub fault_per_page: Option<f64>,
    /// Seconds to fault in one fresh heap page.
    pub heap_per_page: Option<f64>,
    /// Seconds to fault one existing shared page into a new mapping.
    pub map_per_page: Option<f64>,
    /// Seconds for one round trip over a Unix socket between two processes.
    pub round_trip: Option<f64>,
    /// Seconds to fork a child that exits at once, and reap it.
    pub fork_per_child: Option<f64>,
    /// Seconds to start this binary again in a child that exits at once, and reap it.
    pub spawn_per_child: Option<f64>,
}

impl Rates {
    /// One line for the report: `read 12.6 GB/s ×1, 13.1 GB/s ×2; memcpy ...; fault
    /// 0.30 µs per page (39.3 ms per 500 MiB); round trip 40.1 µs`, or `None` when no limit
    /// row ran.
    pub(crate) fn summary(&self) -> Option<String> {
        let bw = |v: &[(usize, f64)]| {
            v.iter()
                .map(|(t, b)| format!("{:.1} GB/s ×{t}", b / 1e9))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !self.read.is_empty() {
            parts.push(format!("read {}", bw(&self.read)));
        }
        if !self.copy.is_empty() {
            parts.push(format!("memcpy {}", bw(&self.copy)));
        }
        if let Some(f) = self.fault_per_page {
            let per_500 = f * (500 * 1_048_576 / PAGE) as f64;
            parts.push(format!(
                "fault {:.2} µs per 4 KiB page ({:.1} ms per 500 MiB on one core)",
                f * 1e6,
                per_500 * 1e3
            ));
        }
        if let Some(f) = self.heap_per_page {
            parts.push(format!("fresh heap page {:.2} µs", f * 1e6));
        }
        if let Some(f) = self.map_per_page {
            parts.push(format!(
                "mapping an existing page {:.2} µs ({:.1} ms per 500 MiB)",
                f * 1e6,
                f * (500 * 1_048_576 / PAGE) as f64 * 1e3
            ));
        }
        if let Some(t) = self.round_trip {
            parts.push(format!("Unix socket round trip {:.1} µs", t * 1e6));
        }
        if let Some(t) = self.fork_per_child {
            parts.push(format!("fork, exit and reap a child {:.1} µs", t * 1e6));
        }
        if let Some(t) = self.spawn_per_child {
            parts.push(format!(
                "spawn this binary, exit and reap it {:.1} µs",
                t * 1e6
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    fn read_bps(&self, threads: usize) -> Option<f64> {
        self.read
            .iter()
            .find(|(t, _)| *t == threads)
            .map(|&(_, b)| b)
    }

    fn copy_bps(&self, threads: usize) -> Option<f64> {
        self.copy
            .iter()
            .find(|(t, _)| *t == threads)
            .map(|&(_, b)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates() -> Rates {
        Rates {
            read: vec![(1, 10e9), (2, 20e9)],
            copy: vec![(1, 5e9)],
            fault_per_page: Some(0.5e-6),
            map_per_page: Some(0.1e-6),
            heap_per_page: Some(0.2e-6),
            round_trip: Some(40e-6),
            fork_per_child: Some(150e-6),
            spawn_per_child: Some(900e-6),
        }
    }

    #[test]
    fn a_limit_adds_its_terms_at_the_rates_of_its_thread_count() {
        let r = rates();
        let read = Limit::read(1_000_000_000, 2);
        assert!((read.seconds(&r).unwrap() - 0.05).abs() < 1e-12);
        // 1e9 bytes = 244 141 pages (rounded up) at 0.5 µs, shared by 2 processes.
        let faulted = read.plus_fault(1_000_000_000);
        let pages = 1_000_000_000_u64.div_ceil(PAGE) as f64;
        let want = 0.05 + pages * 0.5e-6 / 2.0;
        assert!((faulted.seconds(&r).unwrap() - want).abs() < 1e-12);
        let copy = Limit::copy(500_000_000, 1).plus_read(1_000_000_000);
        assert!((copy.seconds(&r).unwrap() - 0.2).abs() < 1e-12);
        let copies = Limit::copy(250_000_000, 1).plus_copy(250_000_000);
        assert!((copies.seconds(&r).unwrap() - 0.1).abs() < 1e-12);
        assert!((Limit::trips(1000).seconds(&r).unwrap() - 0.04).abs() < 1e-12);
        let mapped = Limit::read(1_000_000_000, 2).plus_map(1_000_000_000);
        let want = 0.05 + pages * 0.1e-6 / 2.0;
        assert!((mapped.seconds(&r).unwrap() - want).abs() < 1e-12);
        let built = Limit::copy(500_000_000, 1).plus_heap(1_000_000_000);
        let want = 0.1 + pages * 0.2e-6;
        assert!((built.seconds(&r).unwrap() - want).abs() < 1e-12);
        let decoded = Limit::read(1_000_000_000, 2).plus_heap(1_000_000_000);
        let want = 0.05 + pages * 0.2e-6 / 2.0;
        assert!((decoded.seconds(&r).unwrap() - want).abs() < 1e-12);
        // Forks are the caller's too, one after the other: 2 × 150 µs + one round trip.
        let started = Limit::forks(2).plus_trips(1);
        assert!((started.seconds(&r).unwrap() - 340e-6).abs() < 1e-12);
        // Spawns too: 2 × 900 µs + one round trip.
        let spawned = Limit::spawns(2).plus_trips(1);
        assert!((spawned.seconds(&r).unwrap() - 1840e-6).abs() < 1e-12);
    }

    #[test]
    fn a_limit_whose_rate_was_not_measured_is_none() {
        let r = rates();
        assert_eq!(
            Limit::read(1, 4).seconds(&r),
            None,
            "no read row at 4 threads"
        );
        assert_eq!(
            Limit::copy(1, 2).seconds(&r),
            None,
            "no memcpy row at 2 threads"
        );
        let none = Rates::default();
        assert_eq!(Limit::trips(3).seconds(&none), None);
        assert_eq!(Limit::read(1, 1).plus_fault(1).seconds(&none), None);
        assert_eq!(Limit::read(1, 1).plus_map(1).seconds(&none), None);
        assert_eq!(Limit::copy(1, 1).plus_heap(1).seconds(&none), None);
        assert_eq!(Limit::forks(2).seconds(&none), None);
        assert_eq!(Limit::spawns(2).seconds(&none), None);
    }

    #[test]
    fn the_rates_sum_up_in_one_line() {
        assert_eq!(Rates::default().summary(), None);
        let line = rates().summary().unwrap();
        assert_eq!(
            line,
            "read 10.0 GB/s ×1, 20.0 GB/s ×2; memcpy 5.0 GB/s ×1; fault 0.50 µs per 4 KiB \
             page (64.0 ms per 500 MiB on one core); fresh heap page 0.20 µs; mapping an \
             existing page 0.10 µs (12.8 ms per 500 MiB); \
             Unix socket round trip 40.0 µs; fork, exit and reap a child 150.0 µs; spawn \
             this binary, exit and reap it 900.0 µs"
        );
    }

    #[test]
    fn a_limit_describes_its_terms() {
        let l = Limit::read(500_000_000, 2).plus_fault(500_000_000);
        assert_eq!(l.describe(), "read 500 MB on 2 + fault 500 MB / 2");
        let l = Limit::read(500_000_000, 2).plus_map(500_000_000);
        assert_eq!(l.describe(), "read 500 MB on 2 + map 500 MB / 2");
        assert_eq!(Limit::trips(2000).describe(), "2000 round trips");
        let l = Limit::copy(100_000_000, 1).plus_heap(100_000_000);
        assert_eq!(l.describe(), "copy 100 MB on 1 + fresh heap 100 MB / 1");
        assert_eq!(
            Limit::forks(2).plus_trips(1).describe(),
            "2 forks + 1 round trip"
        );
        assert_eq!(
            Limit::spawns(2).plus_trips(1).describe(),
            "2 spawns + 1 round trip"
        );
    }
}
