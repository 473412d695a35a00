//! [`CancelToken`]: how a caller's `cancel` (or a dropped [`IMap`](crate::IMap)) reaches the
//! backend that runs the work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

type Hook = Box<dyn Fn() + Send + Sync>;

/// Shared by a submission's [`ChunkSink`](crate::ChunkSink) and its
/// [`AsyncResult`](crate::AsyncResult) or [`IMap`](crate::IMap): set once when the caller
/// cancels. A backend checks [`is_cancelled`](Self::is_cancelled) before starting a chunk,
/// and may register a hook ([`on_cancel`](Self::on_cancel)) that stops chunks already
/// running (a process pool kills their workers).
#[derive(Default)]
pub struct CancelToken {
    cancelled: AtomicBool,
    hook: OnceLock<Hook>,
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
    /// submission, before the caller gets its result object. Returns `false` (and drops `hook`)
    /// if one was registered already.
    pub fn on_cancel(&self, hook: impl Fn() + Send + Sync + 'static) -> bool {
        self.hook.set(Box::new(hook)).is_ok()
    }

    /// An identity for the submission, the same for every clone of its token's `Arc`.
    pub fn id(self: &std::sync::Arc<Self>) -> usize {
        std::sync::Arc::as_ptr(self) as usize
    }

    /// Cancels: sets the flag, then runs the hook (once).
    pub(crate) fn cancel(&self) {
        if !self.cancelled.swap(true, Ordering::SeqCst) {
            if let Some(hook) = self.hook.get() {
                hook();
            }
        }
    }
}
