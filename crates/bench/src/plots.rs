//! SVG plots of a report (plotters, SVG backend only): time per cell as bars (ours beside
//! Python's), memory over time during the warm-up of the read-only sharing and copy-on-write
//! runs, and speedup against worker count.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::backend::Backend;
use crate::report::{Report, Row};
use crate::Res;

const RUST: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const PYTHON: RGBColor = RGBColor(0xff, 0x7f, 0x0e);

/// The workloads whose memory over time is plotted.
const MEMORY: [&str; 2] = ["sum", "cow"];

fn label(row: &Row) -> String {
    let id = &row.cell.id;
    let w = id.workers.map(|w| format!(" ×{w}")).unwrap_or_default();
    format!("{} · {}{w}", id.variant, id.how())
}

fn workloads(report: &Report) -> Vec<&str> {
    let mut seen = Vec::new();
    for row in &report.rows {
        if !seen.contains(&row.cell.id.workload.as_str()) {
            seen.push(row.cell.id.workload.as_str());
        }
    }
    seen
}

/// Speedup lines: (workload · variant · how) → (workers, speedup), for the groups measured
/// at two or more worker counts.
fn speedup_lines(report: &Report) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for row in &report.rows {
        let id = &row.cell.id;
        if let (Some(w), Some(s)) = (id.workers, row.speedup) {
            if id.backend != Backend::Serial {
                let key = format!("{} · {} · {}", id.workload, id.variant, id.how());
                lines.entry(key).or_default().push((w as f64, s));
            }
        }
    }
    lines.retain(|_, pts| {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        pts.len() >= 2
    });
    lines
}

/// The plots a report gets: `(file name, what it shows)`.
pub(crate) fn planned(report: &Report) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for w in workloads(report) {
        if report
            .rows
            .iter()
            .any(|r| r.cell.id.workload == w && r.cell.measured().is_some())
        {
            files.push((
                format!("time_{w}.svg"),
                format!("{w}: median time per cell"),
            ));
        }
    }
    for w in MEMORY {
        if report
            .rows
            .iter()
            .any(|r| r.cell.id.workload == w && r.cell.measured().is_some())
        {
            files.push((
                format!("memory_{w}.svg"),
                format!("{w}: process-tree PSS over time during the warm-up run"),
            ));
        }
    }
    if !speedup_lines(report).is_empty() {
        files.push((
            "speedup.svg".into(),
            "speedup over serial against worker count".into(),
        ));
    }
    files
}

/// Writes every planned plot into `dir`.
pub(crate) fn write_all(report: &Report, dir: &Path) -> Res<()> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (file, _) in planned(report) {
        let path = dir.join(&file);
        let done = if let Some(w) = file
            .strip_prefix("time_")
            .and_then(|f| f.strip_suffix(".svg"))
        {
            time_bars(report, w, &path)
        } else if let Some(w) = file
            .strip_prefix("memory_")
            .and_then(|f| f.strip_suffix(".svg"))
        {
            memory_lines(report, w, &path)
        } else {
            speedup(report, &path)
        };
        done.map_err(|e| format!("plotting {}: {e}", path.display()))?;
    }
    Ok(())
}

fn time_bars(report: &Report, workload: &str, path: &Path) -> Result<(), String> {
    let bars: Vec<(String, f64, Option<f64>)> = report
        .rows
        .iter()
        .filter(|r| r.cell.id.workload == workload)
        .filter_map(|r| {
            let m = r.cell.measured()?;
            Some((
                label(r),
                m.median_s * 1e3,
                r.python.as_ref().and_then(|p| p.median_s).map(|s| s * 1e3),
            ))
        })
        .collect();
    let n = bars.len();
    let all = bars.iter().flat_map(|(_, r, p)| [Some(*r), *p]).flatten();
    let (lo, hi) = all.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (lo, hi) = (lo / 2.0, hi * 2.0);
    let height = 90 + 26 * n as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{workload}: median time per cell, ms (log scale)"),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(360)
        .build_cartesian_2d((lo..hi).log_scale(), (0..n as i32).into_segmented())
        .map_err(|e| e.to_string())?;
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("ms")
        .draw()
        .map_err(|e| e.to_string())?;
    let row = |i: usize| {
        (
            SegmentValue::Exact(i as i32),
            SegmentValue::Exact(i as i32 + 1),
        )
    };
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, ms, _))| {
            let (bottom, top) = row(i);
            let mut r = Rectangle::new([(lo, bottom), (*ms, top)], RUST.filled());
            r.set_margin(3, 13, 0, 0);
            r
        }))
        .map_err(|e| e.to_string())?
        .label("multiproc (Rust)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], RUST.filled()));
    if bars.iter().any(|b| b.2.is_some()) {
        chart
            .draw_series(bars.iter().enumerate().filter_map(|(i, (_, _, py))| {
                let (bottom, top) = row(i);
                let mut r = Rectangle::new([(lo, bottom), ((*py)?, top)], PYTHON.filled());
                r.set_margin(13, 3, 0, 0);
                Some(r)
            }))
            .map_err(|e| e.to_string())?
            .label("Python (same run)")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], PYTHON.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn memory_lines(report: &Report, workload: &str, path: &Path) -> Result<(), String> {
    let lines: Vec<(String, Vec<(f64, f64)>)> = report
        .rows
        .iter()
        .filter(|r| r.cell.id.workload == workload)
        // The matrix's worker counts only: the sweep's cells would crowd the plot.
        .filter(|r| {
            r.cell
                .id
                .workers
                .map_or(true, |w| report.config.workers.contains(&w))
        })
        .filter_map(|r| {
            let m = r.cell.measured()?;
            let base = m.base_pss as f64;
            let pts = m
                .memory_trace
                .iter()
                .map(|&(t, b)| (t, (b as f64 - base) / 1e6))
                .collect::<Vec<_>>();
            (!pts.is_empty()).then(|| (label(r), pts))
        })
        .collect();
    let t_max = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let (y_lo, y_hi) = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold((0.0f64, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{workload}: process-tree PSS above the start, warm-up run"),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max * 1.02, y_lo * 1.1..y_hi * 1.1)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds since the run started")
        .y_desc("MB")
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, pts)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn speedup(report: &Report, path: &Path) -> Result<(), String> {
    let lines = speedup_lines(report);
    let w_max = lines
        .values()
        .flat_map(|p| p.iter().map(|q| q.0))
        .fold(1.0f64, f64::max);
    let s_max = lines
        .values()
        .flat_map(|p| p.iter().map(|q| q.1))
        .fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "speedup over serial against workers ({} cores)",
                report.machine.cores
            ),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..w_max + 0.5, 0.0..s_max * 1.15)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("workers")
        .y_desc("speedup (serial median / median)")
        .x_labels(w_max as usize + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, pts)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
