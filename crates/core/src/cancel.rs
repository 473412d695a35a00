//! [`CancelToken`]: how a caller's `cancel` (or a dropped [`IMap`](crate::IMap)) reaches the
//! backend that runs the work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, Weak};

/// What stops a cancelled submission's running work: a backend's pool (a process pool kills
/// the workers running it). Held weakly by the token, so a pool that is gone is not kept
/// alive by its results.
pub trait Canceller: Send + Sync {
    /// Stops the work of submission `id` ([`CancelToken::id`]).
    fn cancel_submission(&self, id: usize);
}

/// Shared by a submission's [`ChunkSink`](crate::ChunkSink) and its
/// [`AsyncResult`](crate::AsyncResult) or [`IMap`](crate::IMap): set once when the caller
/// cancels. A backend checks [`is_cancelled`](Self::is_cancelled) before starting a chunk,
/// and may register a hook ([`on_cancel`](Self::on_cancel)) that stops chunks already
/// running (a process pool kills their workers).
#[derive(Default)]
pub struct CancelToken {
    cancelled: AtomicBool,
    hook: OnceLock<Weak<dyn Canceller>>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancelToken {
    /// Whether the submission was cancelled. Sequentially consistent with
    /// a cancel ([`AsyncResult::cancel`](crate::AsyncResult::cancel)), so a backend that publishes "chunk X is starting" and then
    /// checks this cannot miss a cancel that checks its publication after setting the flag.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Registers what stops the submission's running chunks; called at most once per
    /// submission, before the caller gets its result object. Returns `false` if one was
    /// registered already.
    pub fn on_cancel(&self, canceller: Weak<dyn Canceller>) -> bool {
        self.hook.set(canceller).is_ok()
    }

    /// An identity for the submission: the token's address, the same through every clone of
    /// its `Arc`.
    pub fn id(&self) -> usize {
        self as *const Self as usize
    }

    /// Cancels: sets the flag, then calls the canceller (once) if it still exists.
    pub(crate) fn cancel(&self) {
        if !self.cancelled.swap(true, Ordering::SeqCst) {
            if let Some(canceller) = self.hook.get().and_then(Weak::upgrade) {
                canceller.cancel_submission(self.id());
            }
        }
    }
}
