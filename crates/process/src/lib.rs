//! # multiproc-process
//!
//! The process machinery that multiproc's fork and spawn backends share, written once:
//!
//! | piece | module |
//! |---|---|
//! | how a task crosses: a code offset, not data | `trampoline` (hidden) |
//! | the one codec (a fixed-width binary serde format, keeping serde's messages) of pools, pipes and queues | `codec` (hidden) |
//! | the frames on the socket between pool and worker | `wire` (hidden) |
//! | large frame bodies through shared memory instead (a sealed memfd per buffer) | `bulk` (internal) |
//! | what a worker runs | `serve` (hidden) |
//! | dispatch, pipelining, supervision of dead workers, shutdown | [`ProcessPool`], [`Launcher`] |
//! | a started child: wait, reap, signal, daemons at exit | [`ProcessHandle`] |
//! | the long-lived thread that starts children (so `PR_SET_PDEATHSIG` fires with the process) | [`ServiceThread`] |
//!
//! A backend provides a [`Launcher`] (an `unsafe trait`: the pool signals and reaps the pids
//! it returns) that starts one worker process serving on one end of a Unix socket;
//! [`ProcessPool`] does the rest. Users do not use this crate directly: the plumbing the
//! backends call is hidden from these docs, and whatever in it could close a descriptor,
//! signal a pid or call an address that the caller does not own is `unsafe` with its
//! contract. Each of these is refused in safe code:
//!
//! ```compile_fail,E0133
//! // Would close descriptors that other owners hold, in a process that was not just forked.
//! multiproc_process::bulk_fds().close_inherited();
//! ```
//!
//! ```compile_fail,E0133
//! // Would let a handle signal and reap a pid this program does not own.
//! let pid = nix::unistd::Pid::from_raw(1);
//! let handle = multiproc_process::ProcessHandle::register(pid, "init".into(), false);
//! ```
//!
//! ```compile_fail,E0133
//! // Would SIGKILL a pid after a second of waiting, whoever it belongs to.
//! multiproc_process::reap(nix::unistd::Pid::from_raw(1));
//! ```
//!
//! ```compile_fail,E0200
//! // A launcher hands the pool pids to signal and reap: implementing one is a promise.
//! struct AnyPid;
//! impl multiproc_process::Launcher for AnyPid {
//!     fn launch(&self) -> multiproc_core::Result<multiproc_process::Worker> {
//!         let (stream, _) = std::os::unix::net::UnixStream::pair()?;
//!         // SAFETY: not a child, and nothing serves the stream: this impl is what cannot be.
//!         Ok(unsafe { multiproc_process::Worker::new(nix::unistd::Pid::from_raw(1), stream) })
//!     }
//! }
//! ```
//!
//! ```compile_fail,E0133
//! // A worker trusts every frame on its stream (a task frame's `call` is a code address):
//! // reaching the stream, to write one, is `unsafe`.
//! fn forge(w: &multiproc_process::Worker) -> &std::os::unix::net::UnixStream {
//!     w.stream()
//! }
//! ```
//!
//! ```compile_fail,E0133
//! // Would call whatever lies at the address a peer sent.
//! let task = multiproc_process::trampoline::resolve(0x1234_5678);
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod bulk;
pub mod child;
#[doc(hidden)]
pub mod codec;
mod forward;
mod journal;
mod payload;
mod pool;
mod process_local;
mod service;
#[doc(hidden)]
pub mod testing;
#[doc(hidden)]
pub mod trampoline;
#[doc(hidden)]
pub mod wire;
mod worker;

// The documented API: what a backend builds on.
pub use builder::{Builder, FromOptions};
pub use child::{next_process_name, ProcessHandle};
pub use pool::{Initializer, IpcStats, Launcher, ProcessPool, Worker};
pub use service::ServiceThread;

// Plumbing the fork and spawn backends call; hidden from the docs. What could break another
// owner's descriptor or pid is `unsafe` with its contract (`BulkFds::close_inherited`,
// `reap`, `ProcessHandle::register`, `Launcher`), and what runs code
// at a received address is `unsafe` too (`serve`, `trampoline::resolve`).
#[doc(hidden)]
pub use bulk::{bulk_fds, BulkFds};
#[doc(hidden)]
pub use child::registry;
#[doc(hidden)]
pub use pool::{reap, PIPELINE_BYTES, PIPELINE_DEPTH};
#[doc(hidden)]
pub use worker::{serve, INIT_FAILED, INIT_ID};

/// What [`forward_executor!`] expands to refers to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use multiproc_core::{Batch, ChunkSink, Executor, Payload, Result, Task};
}
