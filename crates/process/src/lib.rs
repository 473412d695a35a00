//! # multiproc-process
//!
//! The process machinery that multiproc's fork and spawn backends share, written once:
//!
//! | piece | module |
//! |---|---|
//! | how a task crosses: a code offset, not data | [`trampoline`] |
//! | the frames on the socket between pool and worker | [`wire`] |
//! | large frame bodies through shared memory instead (a sealed memfd per buffer) | `bulk` (internal; [`bulk_fds`] for the fork backend) |
//! | what a worker runs | [`serve`] |
//! | dispatch, pipelining, supervision of dead workers, shutdown | [`ProcessPool`], [`Launcher`] |
//! | a started child: wait, reap, signal, daemons at exit | [`ProcessHandle`] |
//!
//! A backend provides a [`Launcher`] that starts one worker process running [`serve`] on one
//! end of a Unix socket; [`ProcessPool`] does the rest. Users do not use this crate directly.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod bulk;
pub mod child;
mod payload;
mod pool;
#[doc(hidden)]
pub mod testing;
pub mod trampoline;
pub mod wire;
mod worker;

pub use bulk::{bulk_fds, BulkFds};
pub use child::{next_process_name, registry, ProcessHandle};
pub use pool::{
    reap, Initializer, IpcStats, Launcher, ProcessPool, Worker, PIPELINE_BYTES, PIPELINE_DEPTH,
};
pub use worker::{serve, INIT_FAILED, INIT_ID};

/// What [`forward_executor!`] expands to refers to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use multiproc_core::{Batch, ChunkSink, Executor, Payload, Result, Task};
}
