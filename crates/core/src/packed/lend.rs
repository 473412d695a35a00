//! Memory a decoder lends to the [`Packed`](super::Packed) values it decodes, so that a large
//! block is read where it arrived instead of copied out.
//!
//! A process pool's worker decodes a large argument from the shared-memory buffer its pool
//! wrote it in. It calls [`lend`] around the decoding, naming that memory and the handle
//! (`owner`) that keeps it valid; a `Packed` whose bytes lie inside it, are at least
//! [`LEND_MIN`] long and aligned for its values keeps a clone of `owner` and reads them there.
//! Afterwards the worker asks whether any clone is still alive: if one is, the values
//! outlived the task, and the pool must never write that buffer again.
//!
//! The lender is per thread and per call: only a decode that runs on the calling thread,
//! inside `f`, from bytes inside the lent memory, borrows it.

use std::cell::RefCell;
use std::panic::RefUnwindSafe;
use std::sync::Arc;

/// What keeps lent memory valid: any shared value; the memory stays lent while a clone of the
/// `Arc` lives. (`RefUnwindSafe`, so that a `Packed` stays `UnwindSafe`.)
pub type LoanOwner = Arc<dyn Send + Sync + RefUnwindSafe>;

/// The fewest bytes a [`Packed`](super::Packed) borrows from lent memory: a smaller block is
/// copied (a copy of it is cheap, and a borrowed one would hold its whole buffer).
pub const LEND_MIN: usize = 64 << 10;

/// The alignment an encoder gives a block of [`LEND_MIN`] bytes or more, counted from the
/// start of what it writes, so that the values can be read in place (any `Pod` type up to
/// this alignment).
pub const LEND_ALIGN: usize = 64;

/// The memory lent on this thread, if any.
struct Loan {
    start: usize,
    end: usize,
    owner: LoanOwner,
}

thread_local! {
    static LOAN: RefCell<Option<Loan>> = const { RefCell::new(None) };
}

/// Runs `f` with `memory` lent to the [`Packed`](super::Packed) values decoded on this
/// thread inside it: a block of at least [`LEND_MIN`] bytes inside `memory`, aligned for its
/// values, is read in place, and the `Packed` keeps a clone of `owner`. Returns what `f`
/// returns. Whether any value kept the memory: `Arc::get_mut` on `owner` afterwards fails
/// (unlike `Arc::strong_count`, it also orders the other holders' reads before what the
/// caller does next, such as letting the memory be written again).
///
/// # Safety
///
/// For as long as `owner` or any clone of it is alive — after `lend` returns too — the bytes
/// of `memory` must stay mapped and readable and must not change (nobody writes them: not
/// this process, not another one that maps the same memory). This holds in every process
/// forked while a clone is alive too, where that process's copy of the clone is alive: the
/// memory must be mapped there (no `MADV_DONTFORK`) and not written by anyone.
pub unsafe fn lend<R>(memory: &[u8], owner: &LoanOwner, f: impl FnOnce() -> R) -> R {
    let loan = Loan {
        start: memory.as_ptr() as usize,
        end: memory.as_ptr() as usize + memory.len(),
        owner: Arc::clone(owner),
    };
    /// Puts back the loan that was there before (a `lend` inside `f`), also when `f` panics.
    struct Restore(Option<Loan>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take();
            LOAN.with(|l| *l.borrow_mut() = before);
        }
    }
    let _restore = Restore(LOAN.with(|l| l.borrow_mut().replace(loan)));
    f()
}

/// The owner of the memory lent on this thread, if `bytes` lie inside it, are at least
/// [`LEND_MIN`] long and start at a multiple of `align`.
pub(super) fn owner_of(bytes: &[u8], align: usize) -> Option<LoanOwner> {
    let start = bytes.as_ptr() as usize;
    if bytes.len() < LEND_MIN || start % align != 0 {
        return None;
    }
    LOAN.with(|l| {
        l.borrow()
            .as_ref()
            .filter(|loan| loan.start <= start && start + bytes.len() <= loan.end)
            .map(|loan| Arc::clone(&loan.owner))
    })
}
