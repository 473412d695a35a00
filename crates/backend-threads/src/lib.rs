//! # multiproc-threads
//!
//! The threads backend of multiproc: everything in the "Threading" part of Python's tutorial.
//!
//! | Python | here |
//! |---|---|
//! | `threading.Thread(target=f, args=(...))`, `start`, `join`, `is_alive`, `daemon` | [`Thread`] |
//! | subclass `Thread`, override `run` | implement [`Run`] |
//! | `Lock`, `RLock`, `Event`, `Condition`, `Semaphore`, `BoundedSemaphore`, `Barrier` | [`Lock`], [`RLock`], [`Event`], [`Condition`], [`Semaphore`], [`BoundedSemaphore`], [`Barrier`] |
//! | the tutorial's `mutex` decorator | [`mutex`] |
//! | `multiprocessing.Pool`, but threads | [`ThreadPool`] (an [`Executor`]) |
//!
//! ```
//! use std::sync::Arc;
//! use multiproc_threads::{Event, Thread};
//!
//! let finished = Arc::new(Event::new());
//! let signal = finished.clone();
//! let t = Thread::new(move || {
//!     let data: Vec<u32> = (1..=99).collect();
//!     let mean = data.iter().sum::<u32>() as f64 / data.len() as f64;
//!     signal.set();
//!     mean
//! })
//! .start()?;
//! finished.wait();
//! assert_eq!(t.join()?, 50.0);
//! # Ok::<(), multiproc_threads::Error>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod mutex;
mod pool;
mod sync;
mod thread;

pub use multiproc_core::{AsyncResult, Error, Executor, LockGuard, Result};
pub use mutex::mutex;
pub use pool::{ThreadPool, ThreadPoolBuilder};
pub use sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, ThreadSync};
pub use thread::{Run, Thread, ThreadHandle};

/// The backend's pool under the name every backend uses, so that switching backends is a
/// one-line change: `use multiproc::threads as backend; backend::Pool::new(2)`.
pub type Pool = ThreadPool;
