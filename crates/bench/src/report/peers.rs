//! The Python peers' rows (mpire, pebble, joblib): what a Python user would pick instead of
//! `multiprocessing`, shown under each workload's rows.

use serde::Serialize;

use super::time;
use crate::python::PyCell;

/// A Python peer's cell (mpire, pebble, joblib): what a Python user would pick instead of
/// `multiprocessing`, beside our fork cell of the same workload, variant, strategy and size.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PeerRow {
    /// The peer's cell.
    pub python: PyCell,
    /// The peer's median / our fork cell's (>1: ours is faster).
    pub vs_ours: Option<f64>,
}

/// The columns of a Python peer's row.
pub(super) fn peer_columns(peer: &PeerRow) -> Vec<String> {
    let p = &peer.python;
    let how = if p.strategy == "-" {
        format!("py {}", p.backend)
    } else {
        format!("py {}/{}", p.backend, p.strategy)
    };
    let mut cols = vec![
        p.workload.clone(),
        p.variant.clone(),
        how,
        p.workers.map_or("-".into(), |w| w.to_string()),
    ];
    match (&p.error, p.median_s, p.min_s, p.max_s) {
        (Some(e), ..) => cols.push(format!("FAILED: {e}")),
        (None, Some(median), Some(min), Some(max)) => cols.extend([
            time(median),
            time(min),
            time(max),
            p.reps.map_or("-".into(), |n| n.to_string()),
            "-".into(),
            String::new(),
            String::new(),
            String::new(),
            "-".into(),
            "-".into(),
            peer.vs_ours.map_or("-".into(), |x| format!("{x:.2}x")),
        ]),
        _ => cols.push(format!(
            "n/a: {}",
            p.note.as_deref().unwrap_or("not measured")
        )),
    }
    cols
}
