//! [`Loan`]: a received bulk body's memory, lent for one task to the values decoded from it,
//! so that a large [`Packed`](multiproc_core::Packed) argument is read where the pool wrote
//! it instead of copied out ([`multiproc_core::packed::lend`]).
//!
//! The bulk protocol already keeps the buffer unwritten until the worker answers the frame.
//! A lent value may outlive the task (kept in a static, sent to a thread), and a process
//! forked during the task has a copy of every value alive then. So when the task is done the
//! worker asks [`Loan::end`] whether the memory is still lent — the token that every lent
//! value holds has another holder, or the process forked meanwhile — and if so its reply
//! says so ([`crate::wire::REPLY_KEPT_ARGUMENTS`]): the pool drops that buffer instead of
//! writing it again, and the memory lives on in the worker's mapping for as long as the values
//! do. A worker that dies answers nothing; the pool then never writes the buffers of the jobs
//! it had again either (they go to a retry as they are). While the loan lasts, the mapping goes to forked children too (`MADV_DOFORK`), so a
//! child's copy of a lent value reads mapped memory; a kept mapping goes back to
//! `MADV_DONTFORK` when the loan ends with nothing lent.

use std::panic::RefUnwindSafe;

use multiproc_core::packed::{LoanOwner, LEND_MIN};
use multiproc_sys::process::forks;

use super::*;

/// What a lent value holds: the mapping, alive as long as any value decoded from it.
struct Token(#[allow(dead_code)] Arc<Mapping>);

// A `Packed` holds its owner across `catch_unwind` (the worker's task runs under one).
const _: fn() = || {
    fn unwind_safe<T: RefUnwindSafe>() {}
    unwind_safe::<Token>();
};

/// A received body's memory, lent for one task (see the [module](self)).
pub(crate) struct Loan {
    token: LoanOwner,
    mapping: Arc<Mapping>,
    /// The forks counted when the loan started (`None`: not counted, so assume one).
    forks: Option<u64>,
}

impl Loan {
    /// Lends `view`'s memory, if its body is large enough to hold a value worth lending and
    /// the mapping can go to forked children meanwhile.
    pub(crate) fn start(view: &BulkView<'_>) -> Option<Loan> {
        let mapping = view
            .mapping()
            .filter(|_| view.as_slice().len() >= LEND_MIN)?;
        if mapping.dont_fork {
            mapping.set_forked(true).ok()?;
        }
        Some(Loan {
            token: Arc::new(Token(Arc::clone(mapping))),
            mapping: Arc::clone(mapping),
            forks: forks(),
        })
    }

    /// The owner to lend the memory under ([`multiproc_core::packed::lend`]).
    pub(crate) fn owner(&self) -> &LoanOwner {
        &self.token
    }

    /// Ends the loan; returns whether the memory is still lent: a value decoded from it is
    /// alive, or the process forked while the loan lasted (a child may hold a copy of one).
    /// Then its sender must never write it again.
    pub(crate) fn end(mut self) -> bool {
        // `get_mut` synchronises with the drops of the other holders (if there are none, their
        // reads of the memory happened before this returns).
        let lent = Arc::get_mut(&mut self.token).is_none();
        let forked = self.forks.is_none() || forks() != self.forks;
        let kept = lent || forked;
        if !kept && self.mapping.dont_fork {
            // Back out of forked children; should that fail, children get a mapping they do
            // not use, no worse.
            let _ = self.mapping.set_forked(false);
        }
        kept
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
        let fd = b.fd().try_clone_to_owned().unwrap();
        // SAFETY: `b` is not written while the view or a value from it lives.
        let view = unsafe { maps.view(fd, b.len()) }.unwrap();
        let loan = Loan::start(&view).expect("large enough to lend");
        let p = decode_lent(&view, &loan);
        assert!(p.is_lent());
        assert_eq!(&*p, &values[..]);
        drop(p);
        assert!(!loan.end(), "nothing outlived the task");
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
        let fd = b.fd().try_clone_to_owned().unwrap();
        // SAFETY: as above.
        let view = unsafe { maps.view(fd, b.len()) }.unwrap();
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
}
