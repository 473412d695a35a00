//! The two things rsmpi's safe API does not give a long-lived event loop: non-blocking sends
//! whose buffers the loop owns (rsmpi ties a request to a borrow scope), and a polite wait.

use std::ffi::{c_int, c_void};
use std::time::Duration;

use mpi::ffi;

/// Non-blocking sends in flight, each owning its buffer until MPI is done with it.
///
/// Why rank 0 never uses a blocking send: a blocking send of a large message waits until
/// the receiver posts a matching receive (the rendezvous protocol). A worker busy with a task
/// posts none; if that task's result is large too, the worker's own blocking send waits for
/// rank 0 to receive, and both wait forever. A non-blocking send cannot deadlock that way.
pub(crate) struct Outbox {
    requests: Vec<ffi::MPI_Request>,
    buffers: Vec<Vec<u8>>,
}

impl Outbox {
    pub(crate) fn new() -> Outbox {
        Outbox {
            requests: Vec::new(),
            buffers: Vec::new(),
        }
    }

    /// Starts sending `buf` to `rank` of `MPI_COMM_WORLD` with `tag`; the buffer is kept until
    /// the send completes. Panics on a message of 2 GiB or more (MPI counts are `int`; callers
    /// refuse such payloads first).
    pub(crate) fn send(&mut self, rank: i32, tag: i32, buf: Vec<u8>) {
        let count = c_int::try_from(buf.len()).expect("an MPI message under 2 GiB");
        // SAFETY: MPI_REQUEST_NULL is a plain constant of the MPI library, initialised at load.
        let mut request = unsafe { ffi::RSMPI_REQUEST_NULL };
        // SAFETY: `buf` is `count` initialised bytes; its heap block does not move or get freed
        // until `poll` has seen the request complete (the vector is moved into `buffers`,
        // which moves only the vector's header). MPI is initialised, and only this thread makes
        // MPI calls (MPI_THREAD_FUNNELED).
        let rc = unsafe {
            ffi::MPI_Isend(
                buf.as_ptr().cast::<c_void>(),
                count,
                ffi::RSMPI_UINT8_T,
                rank,
                tag,
                ffi::RSMPI_COMM_WORLD,
                &mut request,
            )
        };
        // MPI_ERRORS_ARE_FATAL is in force on MPI_COMM_WORLD: a failing call aborts the job.
        debug_assert_eq!(rc, 0);
        self.requests.push(request);
        self.buffers.push(buf);
    }

    /// Whether any send is still in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Lets MPI progress, and frees the buffers of completed sends. Returns whether any
    /// completed.
    pub(crate) fn poll(&mut self) -> bool {
        let mut completed = false;
        let mut i = 0;
        while i < self.requests.len() {
            let mut flag: c_int = 0;
            // SAFETY: `requests[i]` is an active request from MPI_Isend (completed ones are
            // removed below, so none is tested after MPI freed it); the status is ignored.
            unsafe {
                ffi::MPI_Test(&mut self.requests[i], &mut flag, ffi::RSMPI_STATUS_IGNORE);
            }
            if flag != 0 {
                self.requests.swap_remove(i);
                self.buffers.swap_remove(i);
                completed = true;
            } else {
                i += 1;
            }
        }
        completed
    }
}

/// Spinning, then yielding, then sleeping longer and longer (up to 1 ms) while there is
/// nothing to do. Open MPI's blocking calls spin on a core; on a machine with more ranks than
/// cores that core is taken from a rank with work.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    idle: u32,
}

const SPINS: u32 = 64;
const YIELDS: u32 = 256;
const MAX_SLEEP: Duration = Duration::from_millis(1);

impl Backoff {
    /// Something happened: the next wait starts with spinning again.
    pub(crate) fn reset(&mut self) {
        self.idle = 0;
    }

    /// How long to wait now: `None` to spin or yield (already done), or a sleep to take.
    pub(crate) fn next(&mut self) -> Option<Duration> {
        self.idle = self.idle.saturating_add(1);
        if self.idle < SPINS {
            std::hint::spin_loop();
            None
        } else if self.idle < YIELDS {
            std::thread::yield_now();
            None
        } else {
            let steps = (self.idle - YIELDS).min(10);
            Some((Duration::from_micros(5) * (1 << steps)).min(MAX_SLEEP))
        }
    }
}
