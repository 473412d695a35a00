//! The pool's job queue: one encoded chunk on its way to a worker ([`Job`]), the queue the
//! supervisors pull from ([`Queue`]), and the count of outstanding jobs that `join` waits for
//! ([`Ticket`], [`Idle`]).

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};

use multiproc_core::{CancelToken, Result};

use super::lock;
use crate::payload::Body;

/// A reply's encoded results, borrowed from the supervisor's receive buffer (reused for the
/// next reply, so a large result does not land on fresh pages twice), and its descriptors.
pub(super) type Reply<'a> = (&'a [u8], Vec<OwnedFd>);

pub(super) type OnDone = Box<dyn for<'a> FnOnce(Result<Reply<'a>>) + Send>;

/// One encoded chunk on its way to a worker.
pub(super) struct Job {
    pub(super) call: u64,
    pub(super) payload: Body,
    pub(super) fds: Vec<OwnedFd>,
    pub(super) on_done: OnDone,
    pub(super) _ticket: Ticket,
    /// Its submission's cancellation.
    pub(super) cancel: Arc<CancelToken>,
    /// Why each earlier attempt ended (with `retries`): its workers died.
    pub(super) history: Vec<String>,
}

impl Job {
    /// The bytes its frame puts on the socket (see [`Body::socket_len`]).
    pub(super) fn socket_len(&self) -> usize {
        self.payload.socket_len(self.fds.len())
    }

    /// Its submission's identity (see [`CancelToken::id`]).
    pub(super) fn submission(&self) -> usize {
        self.cancel.id()
    }
}

/// Counts a job as outstanding until it is dropped (delivered or abandoned).
pub(super) struct Ticket(pub(super) Arc<Idle>);

pub(super) struct Idle {
    pub(super) outstanding: Mutex<usize>,
    pub(super) zero: Condvar,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut n = lock(&self.0.outstanding);
        *n -= 1;
        if *n == 0 {
            self.0.zero.notify_all();
        }
    }
}

#[derive(Default)]
pub(super) struct Queue {
    pub(super) jobs: VecDeque<Job>,
    pub(super) closed: bool,
    pub(super) stopping: bool,
    pub(super) terminated: bool,
}
