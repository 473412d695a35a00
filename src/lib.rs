//! # multiproc
//!
//! Python's `threading` and `multiprocessing`, the Rust way: threads, locks, events,
//! processes, pools with `map`/`starmap`/`apply_async`, and shared arrays, behind pluggable
//! execution backends that one workload runs on unchanged.
//!
//! | you want | Python | multiproc |
//! |---|---|---|
//! | a thread | `threading.Thread` | [`Thread`] (`threads` feature) |
//! | a lock, event, ... | `threading.Lock`, `Event`, ... | [`Lock`], [`RLock`], [`Event`], [`Condition`], [`Semaphore`], [`BoundedSemaphore`], [`Barrier`] |
//! | a process | `multiprocessing.Process` | [`Process`] (fork or spawn, by [`set_start_method`]); `fork::Process`, `spawn::Process` — the same `Process::new(f, args)` on each; a started one is a [`ProcessHandle`] |
//! | a pool | `multiprocessing.Pool` | [`Pool`] (fork or spawn, by [`set_start_method`]); `threads::Pool`, `fork::Pool`, `spawn::Pool` |
//! | `if __name__ == "__main__":` | the guard spawned workers need | [`init()`] first in `main` |
//! | `Queue`, `Pipe`, `JoinableQueue` | `multiprocessing.*` | `ipc::*` (feature `ipc`) |
//! | module-level data made before the Pool | a global | [`Inherited`] |
//! | `RawArray`, `Array`, `Value` | `multiprocessing.*` | `shared_array::*` (feature `shared-array`; ndarray views and `shared_array::ndarray` with feature `ndarray`) |
//! | the pool API | `map`, `starmap`, `apply_async`, `imap`, ... | the [`Executor`] trait |
//! | a pending result | `AsyncResult` | [`AsyncResult`] |
//! | an exception | `RuntimeError`, ... | [`Error`] |
//!
//! Each backend is a module with the same names (`Pool`, `Process`, ...) and shapes, so that
//! switching backends is one line: `use multiproc::fork::Process;` to
//! `use multiproc::spawn::Process;`, or [`set_start_method`] for [`Process`] and [`Pool`]. The traits live in [`core`]; [`prelude`] imports them all.
//!
//! ## Quick start
//!
//! ```
//! use multiproc::prelude::*;
//! use multiproc::threads as backend; // the one line that picks a backend
//!
//! fn crunch_image(imgfile: String) -> usize {
//!     imgfile.len() // use your imagination
//! }
//!
//! let imgfiles: Vec<String> = (0..20).map(|i| format!("{i:02}.nii.gz")).collect();
//! let pool = backend::Pool::new(4)?;
//! let results = pool.map(crunch_image, imgfiles)?;
//! assert_eq!(results, vec![9; 20]);
//!
//! let pending = pool.apply_async(crunch_image, "MNI152_T1_2mm.nii.gz".to_string())?;
//! assert_eq!(pending.get()?, 20);
//! # Ok::<(), multiproc::Error>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
// The crate page links every backend's items; with some features off (the default has only
// `threads`) those items do not exist, and the links are left as text rather than failing a
// user's `cargo doc`. CI builds the docs with every feature and `-D warnings`, where every link
// must resolve.
#![cfg_attr(
    not(all(
        feature = "fork",
        feature = "spawn",
        feature = "ipc",
        feature = "shared-array"
    )),
    allow(rustdoc::broken_intra_doc_links)
)]

/// The backend-independent vocabulary: traits, [`Error`], [`AsyncResult`].
#[doc(inline)]
pub use multiproc_core as core;
pub use multiproc_core::{cpu_count, AsyncResult, Error, Executor, IMap, PoolOptions, Result};

/// The threads backend: workers are threads of this process (feature `threads`).
#[cfg(feature = "threads")]
#[doc(inline)]
pub use multiproc_threads as threads;

/// The fork backend: workers are forked children that inherit this process's memory (feature
/// `fork`).
#[cfg(feature = "fork")]
#[doc(inline)]
pub use multiproc_fork as fork;

/// The spawn backend: workers are fresh processes of this same program (feature `spawn`).
/// Call [`init`] first in `main`.
#[cfg(feature = "spawn")]
#[doc(inline)]
pub use multiproc_spawn as spawn;

/// Python's `Pipe`, `Queue` and `JoinableQueue`, between threads, forked and spawned processes
/// (feature `ipc`).
#[cfg(feature = "ipc")]
#[doc(inline)]
pub use multiproc_ipc as ipc;

#[cfg(any(feature = "fork", feature = "spawn"))]
mod start;
/// A started child process, whichever backend started it: `pid`, `is_alive`, `join`,
/// `exitcode`, `terminate`, `kill`.
#[cfg(feature = "fork")]
#[doc(inline)]
pub use multiproc_fork::ProcessHandle;
#[cfg(all(feature = "spawn", not(feature = "fork")))]
#[doc(inline)]
pub use multiproc_spawn::ProcessHandle;
#[cfg(any(feature = "fork", feature = "spawn"))]
pub use start::{
    get_start_method, set_start_method, Pool, PoolBuilder, Process, StartMethod, START_METHOD_ENV,
};

/// Recognises a spawned worker and runs it, never returning; returns at once in any other
/// process. Call it first in `main`: everything before it runs again in every spawned worker.
/// Without the `spawn` feature it does nothing.
pub fn init() {
    #[cfg(feature = "spawn")]
    multiproc_spawn::init();
}

/// Shared memory that forked and spawned workers read and write: `RawArray`, `Array`, `Value`,
/// and process-shared locks (feature `shared-array`; ndarray views with feature `ndarray`).
#[cfg(feature = "shared-array")]
#[doc(inline)]
pub use multiproc_shared_array as shared_array;

pub use multiproc_core::Inherited;

#[cfg(feature = "threads")]
pub use multiproc_threads::{
    mutex, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Run, Semaphore, Thread,
    ThreadHandle,
};

/// Imports every trait, so that pool and primitive methods resolve: `use multiproc::prelude::*;`
pub mod prelude {
    pub use multiproc_core::sync::{
        Barrier as _, Condition as _, Event as _, Lock as _, RLock as _, Semaphore as _,
    };
    pub use multiproc_core::{AsyncResult, Error, Executor, Result};
}
