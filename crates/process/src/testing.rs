//! Test support for the process backends' suites; not part of the API.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use multiproc_core::{Error, Result};

use crate::{Launcher, Worker};

/// A [`Launcher`] that starts workers with `L` only `launches` times, and then fails as `fork`
/// does at the process limit (`EAGAIN`): a pool whose workers cannot be replaced.
#[derive(Debug)]
pub struct LaunchLimit<L> {
    inner: L,
    left: AtomicUsize,
}

impl<L> LaunchLimit<L> {
    /// `inner`, for `launches` launches.
    pub fn new(inner: L, launches: usize) -> Self {
        LaunchLimit {
            inner,
            left: AtomicUsize::new(launches),
        }
    }
}

// SAFETY: every worker comes from the inner launcher, whose contract is passed on unchanged.
unsafe impl<L: Launcher> Launcher for LaunchLimit<L> {
    fn launch(&self) -> Result<Worker> {
        if self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(Error::Io(io::Error::from_raw_os_error(libc::EAGAIN)));
        }
        self.inner.launch()
    }

    unsafe fn ready(&self, worker: &Worker) -> Result<()> {
        // SAFETY: our caller's contract: `worker` came from `launch`, i.e. from the inner
        // launcher, and is not in a pool.
        unsafe { self.inner.ready(worker) }
    }
}
