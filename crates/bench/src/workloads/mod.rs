//! The tutorial's workloads. Each module measures one workload under every strategy that
//! this build supports and returns rows for the report.

pub mod overhead;
pub mod sum;
