//! The pool's job queue: one encoded chunk on its way to a worker ([`Job`]), the queue the
//! supervisors pull from ([`Queue`]), and the count of outstanding jobs that `join` waits for
//! ([`Ticket`], [`Idle`]).

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use multiproc_core::{CancelToken, Result};

use super::lock;
use crate::payload::{Body, Spare};
use crate::wire::REPLY_KEPT_ARGUMENTS;

/// A reply's encoded results, borrowed from the supervisor's receive buffer (reused for the
/// next reply, so a large result does not land on fresh pages twice), and its descriptors.
pub(super) type Reply<'a> = (&'a [u8], Vec<OwnedFd>);

/// Where the replies of one submission's jobs go: its sink, which decodes them. Shared by
/// the submission's jobs (one `Arc` clone per job); when the last job is dropped, the sink
/// is, and every chunk it never received fails (the "nothing hangs" guarantee).
pub(super) trait Destination: Send + Sync {
    /// Decodes and delivers the reply (or failure) of chunk `index`.
    fn deliver(&self, index: usize, reply: Result<Reply<'_>>);
    /// The submission's cancellation.
    fn cancel(&self) -> &Arc<CancelToken>;
}

/// One encoded chunk on its way to a worker.
pub(super) struct Job {
    pub(super) call: u64,
    pub(super) payload: Body,
    pub(super) fds: Vec<OwnedFd>,
    /// Its submission's destination, and its chunk's index there.
    pub(super) dest: Arc<dyn Destination>,
    pub(super) index: usize,
    pub(super) _ticket: Ticket,
    /// Why each earlier attempt ended (with `retries`): its workers died.
    pub(super) history: Vec<String>,
    /// Whether a worker that had it died: it may have lent the bulk body to a process it
    /// forked, which outlives it, so the buffer is never written again (dropped, not kept as
    /// a spare, once the job is done).
    pub(super) lent_away: bool,
}

impl Job {
    /// Once a worker answered the job (`reply_flags`: its reply's `call` word): its body, to
    /// keep as a spare, if it may be written again and is worth keeping. Not when values read
    /// in its bulk buffer outlived the task ([`REPLY_KEPT_ARGUMENTS`]), nor when a worker that
    /// had it died ([`lent_away`](Self::lent_away)): the buffer is then dropped, never written
    /// again (the memory lives on in the mappings of whoever still reads it).
    pub(super) fn reusable_body(&mut self, reply_flags: u64) -> Option<Body> {
        let body = std::mem::replace(&mut self.payload, Body::Inline(Vec::new()));
        let kept = self.lent_away || reply_flags & REPLY_KEPT_ARGUMENTS != 0;
        (!kept && Spare::worth_keeping(&body)).then_some(body)
    }

    /// The bytes its frame puts on the socket (see [`Body::socket_len`]).
    pub(super) fn socket_len(&self) -> usize {
        self.payload.socket_len(self.fds.len())
    }

    /// Delivers the job's outcome (its ticket is dropped after).
    pub(super) fn finish(self, outcome: Result<Reply<'_>>) {
        self.dest.deliver(self.index, outcome);
    }

    /// Its submission's cancellation.
    pub(super) fn cancel(&self) -> &CancelToken {
        self.dest.cancel()
    }

    /// Its submission's identity (see [`CancelToken::id`]).
    pub(super) fn submission(&self) -> usize {
        self.dest.cancel().id()
    }
}

/// Counts a job as outstanding until it is dropped (delivered or abandoned).
pub(super) struct Ticket(pub(super) Arc<Idle>);

/// The count of outstanding jobs, which `join` waits to reach zero. The count is an atomic,
/// so that a job costs no lock (the supervisors finish jobs concurrently); the lock and the
/// condition variable are touched only when the count reaches zero and by `join`, and the
/// condition variable is notified only when `join` waits on it (the lock counts the waiters).
#[derive(Default)]
pub(super) struct Idle {
    outstanding: AtomicUsize,
    lock: Mutex<usize>,
    zero: Condvar,
}

impl Idle {
    /// Counts `n` more jobs; before they are queued, so the count never dips to zero early.
    pub(super) fn add(&self, n: usize) {
        self.outstanding.fetch_add(n, Ordering::AcqRel);
    }

    /// Waits until no job is outstanding, for at most `timeout` if one is given; returns
    /// whether none is.
    pub(super) fn wait_zero(&self, timeout: Option<std::time::Duration>) -> bool {
        let mut waiters = lock(&self.lock);
        // The last ticket decrements the count, then takes the lock to notify: it cannot
        // notify between this check and the wait, which releases the lock atomically.
        *waiters += 1;
        let busy = |_: &mut usize| self.outstanding.load(Ordering::Acquire) > 0;
        waiters = match timeout {
            None => self
                .zero
                .wait_while(waiters, busy)
                .unwrap_or_else(PoisonError::into_inner),
            Some(t) => {
                self.zero
                    .wait_timeout_while(waiters, t, busy)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
        *waiters -= 1;
        self.outstanding.load(Ordering::Acquire) == 0
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.0.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            let waiters = lock(&self.0.lock);
            if *waiters > 0 {
                self.0.zero.notify_all();
            }
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
