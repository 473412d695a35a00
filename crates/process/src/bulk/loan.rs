//! [`Loan`]: a received bulk body's memory, lent to the values decoded from it, so that a
//! large [`Packed`](multiproc_core::Packed) argument or result is read where its sender wrote
//! it instead of copied out ([`multiproc_core::packed::lend`]).
//!
//! The bulk protocol keeps a buffer unwritten until its receiver says it is done with it. A
//! lent value may outlive that moment, and a process forked meanwhile has a copy of every
//! value alive then, so a loan moves the moment to when the last value goes:
//!
//! - **Arguments** (the worker lends its pool's buffer for one task). When the task is done
//!   the worker asks [`Loan::end`] whether the memory is still lent — the token that every
//!   lent value holds has another holder, or the process forked meanwhile — and if so its
//!   reply says so ([`crate::wire::REPLY_KEPT_ARGUMENTS`]): the pool drops that buffer
//!   instead of writing it again, and the memory lives on in the worker's mapping for as long
//!   as the values do. A worker that dies answers nothing; the pool then never writes the
//!   buffers of the jobs it had again either (they go to a retry as they are).
//! - **Results** (a supervisor lends its worker's result buffer to the caller's values,
//!   [`deliver_lent`]). The worker writes that buffer again only after a `Release` frame for
//!   the task; the token queues that `Release` ([`Releases`]) when its last holder drops it —
//!   at once if no value kept it, later if the caller kept one — and never if this process
//!   forked while the memory was lent.
//!
//! While a loan lasts, the mapping goes to forked children too (`MADV_DOFORK`), so a child's
//! copy of a lent value reads mapped memory; a kept mapping goes back to `MADV_DONTFORK` when
//! the last value goes without a fork.

use std::panic::RefUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use multiproc_core::packed::{LoanOwner, LEND_MIN};
use multiproc_sys::process::forks;

use super::*;

/// What a lent value holds: the mapping, alive as long as any value decoded from it; when
/// the last holder lets it go, the mapping leaves forked children again and the receiver
/// tells its sender it may write the buffer again (`release`) — unless the process forked
/// while it was lent.
struct Token {
    mapping: Arc<Mapping>,
    /// The forks counted when the loan started (`None`: not counted, so assume one).
    forks: Option<u64>,
    /// Whom to tell (a result's task, on its supervisor's queue).
    release: Option<(u64, Arc<Releases>)>,
}

/// Whether this process may have forked since `count` was taken from [`forks`] (a count that
/// could not be taken means yes).
fn forked_since(count: Option<u64>) -> bool {
    count.is_none() || forks() != count
}

impl Drop for Token {
    fn drop(&mut self) {
        if self.mapping.owner != getpid() {
            // A forked child's copy: the loan, its advice and its release are the parent's.
            // The child touches none of them (the release queue's lock may have been held
            // at the fork).
            return;
        }
        // After a fork a child may hold a copy of a value: the memory stays lent (and
        // forked) for good, and its sender is told to drop the buffer rather than reuse it.
        let forked = forked_since(self.forks);
        if !forked && self.mapping.dont_fork {
            // Back out of forked children; should that fail, children get a mapping they do
            // not use, no worse.
            let _ = self.mapping.set_forked(false);
        }
        if let Some((id, releases)) = self.release.take() {
            releases.lent.fetch_sub(1, Ordering::Relaxed);
            releases.push(id, !forked);
        }
    }
}

// A `Packed` holds its owner across `catch_unwind` (the worker's task runs under one).
const _: fn() = || {
    fn unwind_safe<T: RefUnwindSafe>() {}
    unwind_safe::<Token>();
};

/// The most results of one worker lent at once ([`deliver_lent`]): each holds one of the
/// worker's result buffers (and its descriptor) until the caller drops it, so past this a
/// large result is copied out and its buffer given back at once.
pub(crate) const MOST_LENT_RESULTS: usize = crate::payload::SPARE_BULKS;

/// The tasks whose result buffers a supervisor's worker is done with: queued by the tokens of
/// lent results when their last holder drops them (on any thread), and sent as `Release`
/// frames by the supervisor — each with whether the worker may write the buffer again (not
/// after a fork while it was lent: then the worker drops it).
#[derive(Debug, Default)]
pub(crate) struct Releases {
    queue: Mutex<Vec<(u64, bool)>>,
    /// The session's results lent now (their tokens alive).
    lent: AtomicUsize,
}

impl Releases {
    fn push(&self, id: u64, reuse: bool) {
        // A push and a take cannot panic half-way.
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.push((id, reuse));
    }

    /// The tasks queued so far, in the order they were queued, each with whether its buffer
    /// may be written again.
    pub(crate) fn take(&self) -> Vec<(u64, bool)> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A received body's memory, lent to the values decoded from it (see the [module](self)).
pub(crate) struct Loan {
    token: LoanOwner,
    /// The forks counted when the loan started, as its token has them.
    forks: Option<u64>,
}

impl Loan {
    /// Lends `view`'s memory, if its body is large enough to hold a value worth lending and
    /// the mapping can go to forked children meanwhile. `release`: the task to queue on the
    /// supervisor's [`Releases`] once no value holds the memory (a result's).
    fn lend(view: &BulkView<'_>, release: Option<(u64, Arc<Releases>)>) -> Option<Loan> {
        let mapping = view
            .mapping()
            .filter(|_| view.as_slice().len() >= LEND_MIN)?;
        if mapping.dont_fork {
            mapping.set_forked(true).ok()?;
        }
        let forks = forks();
        if let Some((_, releases)) = &release {
            releases.lent.fetch_add(1, Ordering::Relaxed);
        }
        let token = Token {
            mapping: Arc::clone(mapping),
            forks,
            release,
        };
        Some(Loan {
            token: Arc::new(token),
            forks,
        })
    }

    /// Lends a task's arguments (see [`end`](Self::end)).
    pub(crate) fn start(view: &BulkView<'_>) -> Option<Loan> {
        Loan::lend(view, None)
    }

    /// The owner to lend the memory under ([`multiproc_core::packed::lend`]).
    pub(crate) fn owner(&self) -> &LoanOwner {
        &self.token
    }

    /// Ends an argument's loan; returns whether the memory is still lent: a value decoded
    /// from it is alive, or the process forked while the loan lasted (a child may hold a copy
    /// of one). Then its sender must never write it again.
    pub(crate) fn end(mut self) -> bool {
        // `get_mut` synchronises with the drops of the other holders (if there are none, their
        // reads of the memory happened before this returns).
        let lent = Arc::get_mut(&mut self.token).is_none();
        lent || forked_since(self.forks)
    }
}

/// Runs `deliver` — which decodes task `id`'s reply from `view` — with the view's memory lent
/// to the `Packed` values it decodes (if `lend`), and queues the task's `Release` on
/// `releases` once no value holds that memory: at once if none kept it, when the caller
/// drops the last one otherwise; after a fork while it was lent, as a `Release` that tells
/// the worker to drop the buffer. A body too small to lend, one whose mapping cannot go to
/// forked children, and one that would make more than [`MOST_LENT_RESULTS`] lent at once are
/// copied out as before and released at once. (Pass `lend` false where the worker's memory is
/// watched: a lent result's buffer stays in the worker, and counts there.)
///
/// # Safety
///
/// `view` must be a bulk reply from a worker that writes the buffer again only after a
/// `Release` frame for task `id` that allows it, and the caller must send `Release` frames
/// only for the tasks it takes from `releases` (this session's), allowing a rewrite only
/// where the queue says so. `releases` belongs to this one worker connection, `id` names the
/// buffer `view` was read from (unique among that worker's replies whose buffers are not
/// released yet), and no other loan of `view`'s mapping is alive: a token's drop takes the
/// mapping out of forked children again, which another live loan would still need.
pub(crate) unsafe fn deliver_lent<R>(
    view: &BulkView<'_>,
    id: u64,
    releases: &Arc<Releases>,
    lend: bool,
    deliver: impl FnOnce() -> R,
) -> R {
    let room = lend && releases.lent.load(Ordering::Relaxed) < MOST_LENT_RESULTS;
    match room
        .then(|| Loan::lend(view, Some((id, Arc::clone(releases)))))
        .flatten()
    {
        // SAFETY: the memory is the view's mapping, which the token keeps alive; the worker
        // writes it again only after a `Release` that allows it, which the token queues when
        // its last holder drops it, and not after a fork while it was lent (the mapping is
        // `MADV_DOFORK` meanwhile): this function's contract.
        Some(loan) => unsafe {
            multiproc_core::packed::lend(view.as_slice(), loan.owner(), deliver)
        },
        None => {
            releases.push(id, true);
            deliver()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use multiproc_core::packed::lend;
    use multiproc_core::Packed;

    /// A kept view of a buffer holding `values` as an encoded `Packed<u64>`.
    fn buffer_of(values: &[u64]) -> BulkBuf {
        let bytes = crate::codec::encode_into(&Packed::new(values.to_vec()), Vec::new()).unwrap();
        let mut b = BulkBuf::with_capacity(bytes.len()).unwrap();
        b.extend_from_slice(&bytes).unwrap();
        b
    }

    /// A view of `b`'s body through a mapping `maps` keeps. The tests write no buffer while a
    /// view or a value read there lives.
    fn kept_view<'m>(maps: &'m mut BulkMaps, b: &BulkBuf) -> BulkView<'m> {
        let fd = b.fd().try_clone_to_owned().unwrap();
        // SAFETY: see above.
        unsafe { maps.view(fd, b.len()) }.unwrap()
    }

    fn decode_lent(view: &BulkView<'_>, loan: &Loan) -> Packed<u64> {
        // SAFETY: the test writes no buffer while a loan or a value from it lives.
        unsafe {
            lend(view.as_slice(), loan.owner(), || {
                crate::codec::take_from_bytes(view.as_slice()).unwrap().0
            })
        }
    }

    #[test]
    fn a_value_alive_after_the_task_keeps_the_memory_and_one_dropped_does_not() {
        let values: Vec<u64> = (0..(LEND_MIN as u64 / 8)).collect();
        let b = buffer_of(&values);
        let mut maps = BulkMaps::default();
        let view = kept_view(&mut maps, &b);
        let forks_before = forks();
        let loan = Loan::start(&view).expect("large enough to lend");
        let p = decode_lent(&view, &loan);
        assert!(p.is_lent());
        assert_eq!(&*p, &values[..]);
        drop(p);
        let kept = loan.end();
        // Another test of this process may fork meanwhile, and a fork keeps the memory lent.
        if forks() == forks_before {
            assert!(!kept, "nothing outlived the task");
        }
        let loan = Loan::start(&view).unwrap();
        let p = decode_lent(&view, &loan);
        assert!(loan.end(), "a value outlived the task");
        drop(view);
        drop(maps);
        drop(b);
        // The buffer, its sender's mapping and the receiver's kept one are gone: the value's
        // token keeps the memory.
        assert_eq!(&*p, &values[..]);
    }

    #[test]
    fn a_fork_during_the_loan_keeps_the_memory_and_the_child_can_read_it() {
        let values: Vec<u64> = (0..(LEND_MIN as u64 / 8)).collect();
        let b = buffer_of(&values);
        let mut maps = BulkMaps::default();
        let view = kept_view(&mut maps, &b);
        let loan = Loan::start(&view).unwrap();
        let p = decode_lent(&view, &loan);
        let expected: u64 = values.iter().sum();
        // SAFETY: the child only sums memory and leaves with `_exit`.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let ok = p.iter().sum::<u64>() == expected;
                multiproc_sys::exit::exit_now(if ok { 0 } else { 1 })
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        drop(p);
        assert!(loan.end(), "a child may hold a copy");
    }

    /// A forked child that drops the last copy it holds of a lent result leaves its parent's
    /// release queue alone: that queue's lock may have been held at the fork (by the
    /// supervisor sending releases), and the child would wait for it for ever.
    #[test]
    fn a_forked_child_dropping_a_lent_result_touches_no_release_queue() {
        let values: Vec<u64> = (0..(LEND_MIN as u64 / 8)).collect();
        let b = buffer_of(&values);
        let mut maps = BulkMaps::default();
        let view = kept_view(&mut maps, &b);
        let releases = Arc::new(Releases::default());
        let loan = Loan::lend(&view, Some((7, Arc::clone(&releases)))).unwrap();
        let p = decode_lent(&view, &loan);
        drop(loan);
        // Held across the fork, as a supervisor taking the queue would.
        let held = releases.queue.lock().unwrap();
        // SAFETY: the child drops its copy of the value and leaves with `_exit`; the lock
        // it must not touch is the one held here.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                drop(p);
                multiproc_sys::exit::exit_now(0)
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(held);
                use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                let status = loop {
                    match waitpid(child, Some(WaitPidFlag::WNOHANG)).unwrap() {
                        WaitStatus::StillAlive if std::time::Instant::now() < deadline => {
                            std::thread::yield_now()
                        }
                        WaitStatus::StillAlive => {
                            let _ = nix::sys::signal::kill(child, nix::sys::signal::SIGKILL);
                            let _ = waitpid(child, None);
                            panic!("the child waited for its parent's release queue");
                        }
                        status => break status,
                    }
                };
                assert_eq!(status, WaitStatus::Exited(child, 0));
            }
        }
        drop(p);
        assert_eq!(
            releases.take(),
            [(7, false)],
            "the parent's release, after a fork"
        );
    }
}
