//! Conformance suites that every backend runs (feature `testing`).
//!
//! - [`executor`]: what any [`Executor`](crate::Executor) must do — one line per backend with
//!   [`executor_conformance!`](crate::executor_conformance).
//! - [`process`]: what an executor whose workers are processes must do when one dies —
//!   [`process_executor_conformance!`](crate::process_executor_conformance).
//! - [`sync`]: what any [`SyncFamily`](crate::SyncFamily) must do, run in a [`Harness`] that
//!   says how to start a concurrent worker (a thread, a forked process) and where to put
//!   memory that both sides see — [`sync_conformance!`](crate::sync_conformance).
//!
//! Each check panics with a message on failure, so it can be called from any `#[test]`.

pub mod executor;
pub mod process;
pub mod sync;

use std::thread::JoinHandle;

use crate::buffer::{HeapBuffer, SharedBuffer};

/// Where the sync suite runs: how to start a worker that runs concurrently with the test,
/// and how to allocate memory that the test and its workers all see.
pub trait Harness {
    /// The memory that workers share with the test.
    type Buffer: SharedBuffer + 'static;
    /// A started worker.
    type Worker: Worker;
    /// A zeroed buffer of `len` bytes visible to workers started afterwards.
    fn buffer(&self, len: usize) -> Self::Buffer;
    /// Starts `f` concurrently (in a thread, a forked process, ...).
    fn spawn<F: FnOnce() + Send + 'static>(&self, f: F) -> Self::Worker;
}

/// A worker started by a [`Harness`].
pub trait Worker {
    /// Waits for the worker; `Err` with a description if it panicked or died.
    fn join(self) -> Result<(), String>;
}

/// The harness whose workers are threads of this process.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadHarness;

/// A thread started by [`ThreadHarness`].
#[derive(Debug)]
pub struct ThreadWorker(JoinHandle<()>);

impl Harness for ThreadHarness {
    type Buffer = HeapBuffer;
    type Worker = ThreadWorker;

    fn buffer(&self, len: usize) -> HeapBuffer {
        HeapBuffer::zeroed(len).expect("a small test buffer")
    }

    fn spawn<F: FnOnce() + Send + 'static>(&self, f: F) -> ThreadWorker {
        ThreadWorker(std::thread::spawn(f))
    }
}

impl Worker for ThreadWorker {
    fn join(self) -> Result<(), String> {
        self.0
            .join()
            .map_err(|p| crate::Error::from_panic(p).to_string())
    }
}

/// Joins every worker, panicking with the first failure.
pub fn join_all<W: Worker>(workers: impl IntoIterator<Item = W>) {
    let failures: Vec<String> = workers.into_iter().filter_map(|w| w.join().err()).collect();
    assert!(failures.is_empty(), "worker(s) failed: {failures:?}");
}
