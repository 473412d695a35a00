//! The comparison table: one row per (workload, strategy) cell.

use std::time::Duration;

use crate::stats::Samples;

/// One measured cell.
#[derive(Debug, Clone)]
pub struct Row {
    /// The workload, such as `sum`.
    pub workload: String,
    /// How it ran, such as `threads (Executor)` or `rayon`.
    pub strategy: String,
    /// Its timings.
    pub samples: Samples,
    /// What the ratio column compares against (a strategy name in the same workload).
    pub baseline: Option<String>,
    /// A unit cost to print beside the time, such as `ns/task`.
    pub per_item: Option<(f64, &'static str)>,
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// Prints the rows as an aligned table, with each row's ratio to its baseline's median.
pub fn print_table(rows: &[Row]) {
    println!(
        "{:<10} {:<34} {:>10} {:>10} {:>10} {:>14} {:>16}",
        "workload", "strategy", "median ms", "min ms", "max ms", "per item", "vs baseline"
    );
    for row in rows {
        let ratio = row
            .baseline
            .as_ref()
            .and_then(|b| {
                rows.iter()
                    .find(|r| r.workload == row.workload && &r.strategy == b)
            })
            .map(|b| {
                format!(
                    "{:.2}x {}",
                    row.samples.median().as_secs_f64() / b.samples.median().as_secs_f64(),
                    b.strategy
                )
            })
            .unwrap_or_default();
        let per = row
            .per_item
            .map(|(v, unit)| format!("{v:.1} {unit}"))
            .unwrap_or_default();
        println!(
            "{:<10} {:<34} {:>10} {:>10} {:>10} {:>14} {:>16}",
            row.workload,
            row.strategy,
            ms(row.samples.median()),
            ms(row.samples.min()),
            ms(row.samples.max()),
            per,
            ratio
        );
    }
}
