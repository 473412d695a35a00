//! [`Turn`]: whose turn it is to use one direction of a [`Connection`](super::Connection) —
//! a lock whose waits have deadlines, and which a forked child refuses instead of waiting for.
//!
//! A `std::sync::Mutex` held across a blocking `recv` would make every other thread's
//! `recv_timeout` or `poll(0)` wait for that `recv`, without bound; and a child forked while a
//! thread held it inherits it locked, by a thread that does not exist there. Here the
//! mutex is held only for a moment, to look at or change who has the turn.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use multiproc_core::{Error, Result};

/// A value used by one thread at a time, taken with [`take`](Self::take).
pub(super) struct Turn<T> {
    /// The process whose thread has the turn, if one has it.
    holder: Mutex<Option<u32>>,
    freed: Condvar,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only reached through a `TurnGuard`, and at most one guard exists at a
// time (`take` hands one out only while `holder` is `None`, and sets it under the mutex), so
// sharing a `Turn` between threads shares `T` by moving it between them: `T: Send` suffices.
unsafe impl<T: Send> Sync for Turn<T> {}

/// The turn, until dropped.
pub(super) struct TurnGuard<'a, T> {
    turn: &'a Turn<T>,
}

fn lock(m: &Mutex<Option<u32>>) -> MutexGuard<'_, Option<u32>> {
    // The guarded data is a pid, written whole: a panic cannot leave it half-changed.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Turn<T> {
    pub(super) fn new(value: T) -> Self {
        Turn {
            holder: Mutex::new(None),
            freed: Condvar::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// Waits for the turn until `deadline` (`None`: as long as it takes). Errors:
    /// [`Error::Timeout`] (of `waited`, the caller's whole timeout) once the deadline passes;
    /// [`Error::Io`] in a forked child whose copy was taken by a thread of its parent (that
    /// thread does not exist here, so the turn would never come back).
    pub(super) fn take(
        &self,
        deadline: Option<Instant>,
        waited: Duration,
    ) -> Result<TurnGuard<'_, T>> {
        let me = multiproc_sys::process::current_pid();
        let mut holder = lock(&self.holder);
        loop {
            match *holder {
                None => {
                    *holder = Some(me);
                    return Ok(TurnGuard { turn: self });
                }
                Some(pid) if pid != me => {
                    return Err(Error::Io(std::io::Error::other(
                        "another thread was using this end of the connection when this process \
                         was forked from its parent: that copy of it cannot be used here",
                    )))
                }
                Some(_) => {}
            }
            holder = match deadline {
                None => self
                    .freed
                    .wait(holder)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout(waited));
                    }
                    self.freed
                        .wait_timeout(holder, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// The turn if nobody has it now, without waiting.
    pub(super) fn try_take(&self) -> Option<TurnGuard<'_, T>> {
        let me = multiproc_sys::process::current_pid();
        let mut holder = lock(&self.holder);
        if holder.is_some() {
            return None;
        }
        *holder = Some(me);
        Some(TurnGuard { turn: self })
    }
}

impl<T> Deref for TurnGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (see `Sync` above) and lives no longer than the
        // turn: no other reference to the value exists while it does.
        unsafe { &*self.turn.value.get() }
    }
}

impl<T> DerefMut for TurnGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference through it.
        unsafe { &mut *self.turn.value.get() }
    }
}

impl<T> Drop for TurnGuard<'_, T> {
    fn drop(&mut self) {
        *lock(&self.turn.holder) = None;
        self.turn.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[test]
    fn a_turn_is_waited_for_until_its_deadline_and_refused_in_a_forked_child() {
        let turn = Turn::new(0u32);
        let holding = Barrier::new(2);
        let release = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut g = turn.take(None, Duration::ZERO).unwrap();
                *g += 1;
                holding.wait();
                release.wait();
            });
            holding.wait();
            let t = Duration::from_millis(10);
            assert!(matches!(
                turn.take(Some(Instant::now() + t), t),
                Err(Error::Timeout(d)) if d == t
            ));
            assert!(turn.try_take().is_none());
            // SAFETY: the child only tries the turn (a mutex no thread holds for more than a
            // moment, an atomic pid cache) and leaves with `_exit`.
            match unsafe { nix::unistd::fork() }.unwrap() {
                nix::unistd::ForkResult::Child => {
                    let refused = matches!(turn.take(None, Duration::ZERO), Err(Error::Io(_)));
                    multiproc_sys::exit::exit_now(if refused { 0 } else { 1 })
                }
                nix::unistd::ForkResult::Parent { child } => {
                    let status = nix::sys::wait::waitpid(child, None).unwrap();
                    assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
                }
            }
            release.wait();
        });
        assert_eq!(*turn.take(None, Duration::ZERO).unwrap(), 1);
    }
}
