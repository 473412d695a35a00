//! Where the suite's workers run: the [`Harness`] and [`Worker`] traits, and the
//! [`ThreadHarness`] whose workers are threads.

use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_core::{Error, Payload, Result, Task};

/// Where the suite's workers run.
pub trait Harness {
    /// A started worker.
    type Worker: Worker;

    /// Starts `f(args)` concurrently: in a thread, a forked child, a spawned process.
    fn start<A>(&self, f: Task<A, ()>, args: A) -> Result<Self::Worker>
    where
        A: Payload;
}

/// A worker started by a [`Harness`].
pub trait Worker {
    /// Waits up to `timeout` for the worker to end: `Ok` if it returned normally, an error
    /// if it panicked or died, [`Error::Timeout`] if it still runs.
    fn join_timeout(&self, timeout: Duration) -> Result<()>;

    /// Kills the worker at once (SIGKILL). Only process workers can be killed.
    fn kill(&self) -> Result<()>;
}

/// The harness whose workers are threads of this process.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadHarness;

/// A thread started by [`ThreadHarness`].
#[derive(Debug)]
pub struct ThreadWorker(Mutex<Option<JoinHandle<()>>>);

impl Harness for ThreadHarness {
    type Worker = ThreadWorker;

    fn start<A>(&self, f: Task<A, ()>, args: A) -> Result<ThreadWorker>
    where
        A: Payload,
    {
        Ok(ThreadWorker(Mutex::new(Some(std::thread::spawn(
            move || f(args),
        )))))
    }
}

impl Worker for ThreadWorker {
    fn join_timeout(&self, timeout: Duration) -> Result<()> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(handle) = slot.as_ref() else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        while !handle.is_finished() {
            if Instant::now() >= deadline {
                return Err(Error::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        slot.take()
            .expect("checked above")
            .join()
            .map_err(Error::from_panic)
    }

    fn kill(&self) -> Result<()> {
        Err(Error::invalid("self", "a thread cannot be killed"))
    }
}
