//! # multiproc-fork
//!
//! The fork backend of multiproc: Python's `multiprocessing` with the "fork" start method.
//!
//! | Python | here |
//! |---|---|
//! | `multiprocessing.Pool` (fork) | [`ForkPool`] (an [`Executor`]) |
//! | module-level data created before the Pool | [`Inherited`] (or any `static`) |
//! | what a worker does | `multiproc-process`'s shared worker loop |
//!
//! Workers are forked when the pool is created: they inherit the parent's memory as it was
//! then (copy-on-write), so read-only data set up before the pool reaches every task with no
//! copy. Forking from a multithreaded parent is handled by the crate's forker thread (see the
//! `fork` module's documentation): stdout and stderr are locked and flushed around every fork,
//! and workers die with their parent.
//!
//! ```
//! use multiproc_fork::{Executor, ForkPool, Inherited};
//!
//! static DATA: Inherited<Vec<f64>> = Inherited::new("DATA");
//!
//! fn process_chunk(offset: usize) -> f64 {
//!     DATA.get().map_or(f64::NAN, |d| d[offset..offset + 250].iter().sum())
//! }
//!
//! DATA.set(vec![1.0; 1000])?;          // the data first...
//! let pool = ForkPool::new(2)?;        // ...then the pool
//! let sums = pool.map(process_chunk, (0..1000).step_by(250))?;
//! assert_eq!(sums.iter().sum::<f64>(), 1000.0);
//! # Ok::<(), multiproc_fork::Error>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod fork;
mod pool;
mod process;

pub use multiproc_core::{cpu_count, PoolOptions};
pub use multiproc_core::{AsyncResult, Error, Executor, Inherited, Result};
pub use multiproc_process::{Builder, FromOptions, Initializer, IpcStats, ProcessHandle};
#[doc(hidden)]
pub use pool::ForkLauncher;
pub use pool::ForkPool;
pub use process::Process;

/// The backend's pool under the name every backend uses (`multiproc::fork::Pool`).
pub type Pool = ForkPool;
