//! The fork backend against core's Executor conformance suite. `cargo test` runs these as
//! threads of one process, so every pool here is forked from a multithreaded parent.

use multiproc_fork::ForkPool;

multiproc_core::executor_conformance!(ForkPool::new);
