//! # multiproc-core
//!
//! The vocabulary every multiproc backend speaks. Users normally reach it through the
//! `multiproc` facade; backend authors implement it.
//!
//! | concept | Python | here |
//! |---|---|---|
//! | a pool of workers | `multiprocessing.Pool` | [`Executor`] (`map`, `starmap`, `apply_async`, `imap`, ...) |
//! | a pending result | `AsyncResult` | [`AsyncResult`], and [`IMap`] for `imap` |
//! | what a task may be | a picklable function | [`Task`] (`fn(A) -> R`) / [`StarTask`]: a `fn` item or non-capturing closure |
//! | what may cross | picklable values | [`Payload`]: serde types; [`Packed`] for large arrays of numbers |
//! | module-level data created before the Pool | a global | [`Inherited`] |
//! | Lock, RLock, Event, Condition, Semaphore, Barrier | `threading.*`, `multiprocessing.*` | the traits in [`sync`], one [`SyncFamily`] per backend |
//! | memory workers share | `RawArray` | [`SharedBuffer`] ([`HeapBuffer`] here; shared memory in `multiproc-shared-array`) |
//! | passing a shared array, lock, Queue or Pipe to another process | pickling with fd duplication | [`handoff`]: descriptors inside serde values |
//! | exceptions | `RuntimeError`, `BrokenBarrierError`, ... | [`Error`] |
//!
//! With the `testing` feature, [`testing`] holds the conformance suites every backend
//! runs ([`executor_conformance!`], [`sync_conformance!`]).
//!
//! ## How a backend plugs in
//!
//! An executor implements [`Executor::submit`] (run a [`Batch`] of chunks and deliver each
//! chunk's outcome to a [`ChunkSink`]) plus `processes`, `close`, `join`, `terminate`. All the
//! Python-named methods are provided on top, so they behave identically everywhere:
//!
//! ```
//! use multiproc_core::{Batch, ChunkSink, Executor, Payload, Result, Task};
//!
//! /// The simplest possible backend: runs every chunk on the caller's thread.
//! struct Inline;
//!
//! impl Executor for Inline {
//!     fn processes(&self) -> usize { 1 }
//!     fn submit<A, R>(&self, f: Task<A, R>, batch: Batch<A>, sink: ChunkSink<R>) -> Result<()>
//!     where A: Payload, R: Payload {
//!         for (index, chunk) in batch.into_chunks() {
//!             sink.deliver(index, Ok(chunk.into_iter().map(f).collect()));
//!         }
//!         Ok(())
//!     }
//!     fn close(&self) {}
//!     fn join(&self) -> Result<()> { Ok(()) }
//!     fn join_timeout(&self, _: std::time::Duration) -> Result<bool> { Ok(true) }
//!     fn terminate(&self) -> Result<()> { Ok(()) }
//! }
//!
//! fn crunch(name: String) -> usize { name.len() }
//!
//! let lengths = Inline.map(crunch, ["00.nii.gz".to_string(), "t1_01.nii.gz".to_string()])?;
//! assert_eq!(lengths, vec![9, 12]);
//! let mut pending = Inline.apply_async(crunch, "x".to_string())?;
//! assert_eq!(pending.get_timeout(std::time::Duration::from_secs(1))?, 1);
//! # Ok::<(), multiproc_core::Error>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod batch;
mod buffer;
mod cancel;
mod error;
mod executor;
pub mod exit;
pub mod handoff;
mod home;
mod inherit;
mod memory;
mod options;
pub mod packed;
#[cfg(feature = "progress")]
mod progress;
mod result;
mod spin;
pub mod sync;
mod task;
#[cfg(feature = "testing")]
pub mod testing;

pub use batch::Batch;
pub use buffer::{AccessWidth, HeapBuffer, SharedBuffer};
pub use cancel::{CancelToken, Canceller};
pub use error::{panic_message, signal_name, Error, ExitCause, Result};
pub use executor::{
    check_chunksize, check_workers, default_chunksize, Executor, CHUNKS_PER_WORKER,
};
pub use home::Home;
pub use inherit::Inherited;
pub use memory::{
    memusage, process_tree, pss_bytes, rss_bytes, self_tree_pss, tree_pss, SystemMemory,
};
pub use options::{cpu_count, PoolOptions, DEFAULT_RETAINED_MEMORY, MAX_RETAINED_MEMORY};
pub use packed::Packed;
pub use result::{block_on, AsyncResult, AsyncResultFuture, ChunkSink, Completer, IMap, IMapNext};
pub use spin::{spin_until, SPIN};
pub use sync::{
    Barrier, Condition, Event, Lock, LockError, LockGuard, LockResult, RLock, Semaphore,
    SyncFamily, SyncPrimitive,
};
pub use task::{assert_code_only, Payload, StarTask, Task};
