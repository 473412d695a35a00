//! [`CancelToken`]: how a caller's `cancel` (or a dropped [`IMap`](crate::IMap)) reaches the
//! backend that runs the work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, Weak};

use crate::Home;

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
pub struct CancelToken {
    cancelled: AtomicBool,
    hook: OnceLock<Weak<dyn Canceller>>,
    /// The process the submission was made in: only there does a cancel reach the pool (a
    /// forked child's copy of a pool's state is not the pool, and its copies of the pool's
    /// descriptors would kill the parent's workers).
    home: Home,
}

impl Default for CancelToken {
    fn default() -> Self {
        CancelToken {
            cancelled: AtomicBool::new(false),
            hook: OnceLock::new(),
            home: Home::here("result"),
        }
    }
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

    /// `Ok` in the process that made the submission; [`Error::ForeignProcess`](crate::Error)
    /// (of a `"result"`) in a forked child, where nothing completes its results.
    pub(crate) fn check_home(&self) -> crate::Result<()> {
        self.home.check()
    }

    /// An identity for the submission: the token's address, the same through every clone of
    /// its `Arc`.
    pub fn id(&self) -> usize {
        self as *const Self as usize
    }

    /// Cancels: sets the flag, then calls the canceller (once) if it still exists and this is
    /// the process that made the submission (in a forked child only the child's copy of the
    /// flag is set).
    pub(crate) fn cancel(&self) {
        if !self.cancelled.swap(true, Ordering::SeqCst) && self.home.is_here() {
            if let Some(canceller) = self.hook.get().and_then(Weak::upgrade) {
                canceller.cancel_submission(self.id());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::sync::Arc;

    /// Writes a byte to a pipe for every cancel it is asked for: visible across a fork.
    struct Tell(OwnedFd);

    impl Canceller for Tell {
        fn cancel_submission(&self, _: usize) {
            let _ = nix::unistd::write(&self.0, b"!");
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri does not emulate fork")]
    fn a_cancel_reaches_the_pool_only_in_the_process_that_submitted() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let flags = nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(r.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
        let pool: Arc<dyn Canceller> = Arc::new(Tell(w));
        let token = CancelToken::default();
        assert!(token.on_cancel(Arc::downgrade(&pool)));
        // SAFETY: the child only cancels (an atomic swap, a pid check, and a `write` here)
        // and leaves with `_exit`.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                token.cancel();
                multiproc_sys::exit::exit_now(if token.is_cancelled() { 0 } else { 1 })
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        let mut byte = [0u8; 1];
        assert_eq!(
            nix::unistd::read(r.as_raw_fd(), &mut byte),
            Err(nix::errno::Errno::EAGAIN),
            "the child's cancel reached the parent's pool"
        );
        assert!(!token.is_cancelled(), "nor set the parent's flag");
        token.cancel();
        assert_eq!(nix::unistd::read(r.as_raw_fd(), &mut byte), Ok(1));
    }
}
