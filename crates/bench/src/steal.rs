//! How much CPU time the host took from this machine while a stage ran: the `steal` column
//! of `/proc/stat`, time a virtual CPU was ready to run but its hypervisor ran something
//! else. On a shared host it is what makes a row's runs spread (a round trip that took 30 µs
//! one minute takes 200 µs the next), so the report prints it beside each stage's wall time.
//!
//! `/proc/stat` counts in clock ticks (10 ms on Linux), summed over the CPUs: a stage of a
//! few seconds on 2 CPUs spans hundreds of ticks, enough for a share in percent; a single
//! cell is too short for one, so the share is per stage, not per cell.

/// The whole machine's CPU time so far, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    /// Ticks the hypervisor took (`steal`).
    steal: u64,
    /// Ticks of every kind (user, nice, system, idle, iowait, irq, softirq, steal).
    total: u64,
}

impl CpuTimes {
    /// The counters now; `None` where `/proc/stat` cannot be read or has no `steal` column.
    pub(crate) fn now() -> Option<CpuTimes> {
        parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The share of the CPU time from `self` to `later` that the host took, from 0 to 1;
    /// `None` if no tick passed in between.
    pub(crate) fn stolen_until(self, later: CpuTimes) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let steal = later.steal.checked_sub(self.steal)?;
        (total > 0).then(|| steal as f64 / total as f64)
    }
}

/// The machine-wide `cpu` line of `/proc/stat`: `cpu user nice system idle iowait irq
/// softirq steal [guest guest_nice]` (guest time is already counted in user and nice).
fn parse(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    if ticks.len() < 8 {
        return None;
    }
    Some(CpuTimes {
        steal: ticks[7],
        total: ticks.iter().sum(),
    })
}

/// One stage of a run: a workload's process, the Python run, or one of its workloads.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Stage {
    /// `sum`, `python`, `py sum`, ...
    pub name: String,
    /// Wall time, set-up and checks included.
    pub secs: f64,
    /// The share of the machine's CPU time its host took meanwhile (0 to 1), if known.
    pub steal: Option<f64>,
}

impl Stage {
    /// Runs `f` as the stage `name`, timing it and counting the host's share meanwhile.
    pub(crate) fn time<T>(name: impl Into<String>, f: impl FnOnce() -> T) -> (Stage, T) {
        let before = CpuTimes::now();
        let t = std::time::Instant::now();
        let out = f();
        let secs = t.elapsed().as_secs_f64();
        let steal = before
            .zip(CpuTimes::now())
            .and_then(|(b, a)| b.stolen_until(a));
        (
            Stage {
                name: name.into(),
                secs,
                steal,
            },
            out,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_line_gives_steal_and_the_total() {
        let stat = "cpu  6329617 10474 1880167 4405252 35780 0 8036 113767 0 0\n\
                    cpu0 3164808 5237 940083 2202626 17890 0 4018 56883 0 0\n\
                    intr 123\n";
        let t = parse(stat).unwrap();
        assert_eq!(t.steal, 113767);
        assert_eq!(
            t.total,
            6329617 + 10474 + 1880167 + 4405252 + 35780 + 8036 + 113767
        );
        // A kernel too old for the steal column, and a line that is not numbers.
        assert_eq!(parse("cpu  1 2 3 4 5 6 7\n"), None);
        assert_eq!(parse("cpu  1 2 3 4 5 6 7 x\n"), None);
        assert_eq!(parse("intr 1\n"), None);
    }

    #[test]
    fn the_share_is_of_the_ticks_that_passed() {
        let before = CpuTimes {
            steal: 100,
            total: 1000,
        };
        let later = CpuTimes {
            steal: 125,
            total: 1200,
        };
        assert_eq!(before.stolen_until(later), Some(0.125));
        assert_eq!(before.stolen_until(before), None, "no tick passed");
        assert_eq!(later.stolen_until(before), None, "counters do not go back");
        // This machine's own counters: readable, and a stage gets a share or none.
        if let Some(now) = CpuTimes::now() {
            assert!(now.total >= now.steal);
            let (stage, v) = Stage::time("x", || 7);
            assert_eq!((stage.name.as_str(), v), ("x", 7));
            if let Some(s) = stage.steal {
                assert!((0.0..=1.0).contains(&s), "{s}");
            }
        }
    }
}
