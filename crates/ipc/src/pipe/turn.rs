//! [`Turn`]: whose turn it is to use one direction of a [`Connection`](super::Connection) —
//! a lock whose waits have deadlines, and which a forked child refuses instead of waiting for.
//!
//! A `std::sync::Mutex` held across a blocking `recv` would make every other thread's
//! `recv_timeout` or `poll(0)` wait for that `recv`, without bound; and a child forked while a
//! thread held it inherits it locked, by a thread that does not exist there. Here the
//! mutex is held only for a moment, to look at or change who has the turn.

use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use multiproc_core::{Error, Result};

/// A value used by one thread at a time, taken with [`take`](Self::take), and retired (reset
/// to its default: dropped) with [`retire`](Self::retire).
pub(super) struct Turn<T> {
    holder: Mutex<Holder>,
    freed: Condvar,
    value: UnsafeCell<T>,
    /// Resets the value to its default (`T::default`).
    reset: fn(&mut T),
}

/// Who has the turn, and whether the value is retired: changed together, under the lock.
#[derive(Default)]
struct Holder {
    /// The process whose thread has the turn, if one has it.
    pid: Option<u32>,
    /// The value was retired while a thread had the turn: reset it when the turn comes back.
    retired: bool,
}

fn reset_to_default<T: Default>(value: &mut T) {
    *value = T::default();
}

// SAFETY: `value` is only reached through a `TurnGuard`, and at most one guard exists at a
// time (`take` hands one out only while `holder` is `None`, and sets it under the mutex), so
// sharing a `Turn` between threads shares `T` by moving it between them: `T: Send` suffices.
unsafe impl<T: Send> Sync for Turn<T> {}

/// The turn, until dropped.
pub(super) struct TurnGuard<'a, T> {
    turn: &'a Turn<T>,
    /// Not `Sync` by default (a `Cell` is not): `&TurnGuard` hands out `&T`, so sharing a
    /// guard between threads shares `T` (see the `Sync` impl below).
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: a shared guard only hands out `&T` (`DerefMut` needs `&mut`), which threads may
// share when `T: Sync`, as with `std::sync::MutexGuard`.
unsafe impl<T: Sync> Sync for TurnGuard<'_, T> {}

fn lock(m: &Mutex<Holder>) -> MutexGuard<'_, Holder> {
    // The guarded data is a pid and a flag, each written whole: a panic cannot leave them
    // half-changed.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T: Default> Turn<T> {
    pub(super) fn new(value: T) -> Self {
        Turn {
            holder: Mutex::new(Holder::default()),
            freed: Condvar::new(),
            value: UnsafeCell::new(value),
            reset: reset_to_default::<T>,
        }
    }
}

impl<T> Turn<T> {
    /// Resets the value to its default (drops it) at once if nobody has the turn, otherwise
    /// when its holder gives the turn back. Decided under the turn's lock, which the holder's
    /// release takes too: a retirement that races the release is carried out by exactly one
    /// of them, never by neither. Does not wait.
    pub(super) fn retire(&self) {
        let mut holder = lock(&self.holder);
        if holder.pid.is_none() {
            // SAFETY: nobody has the turn, and this thread holds the lock under which it is
            // handed out: no guard exists, so no other reference to the value does.
            (self.reset)(unsafe { &mut *self.value.get() });
        } else {
            holder.retired = true;
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
            match holder.pid {
                None => {
                    holder.pid = Some(me);
                    return Ok(TurnGuard {
                        turn: self,
                        _not_sync: PhantomData,
                    });
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
        if holder.pid.is_some() {
            return None;
        }
        holder.pid = Some(me);
        Some(TurnGuard {
            turn: self,
            _not_sync: PhantomData,
        })
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
        let mut holder = lock(&self.turn.holder);
        if std::mem::take(&mut holder.retired) {
            // SAFETY: this guard is the only one and still has the turn (under the lock).
            (self.turn.reset)(unsafe { &mut *self.turn.value.get() });
        }
        holder.pid = None;
        drop(holder);
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

    /// Counts its drops.
    struct Dropped<'a>(&'a std::sync::atomic::AtomicUsize);

    impl Drop for Dropped<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A retired value goes at once if nobody has the turn, and otherwise when its holder
    /// gives the turn back — decided under the turn's lock, so that a retirement racing the
    /// holder's release cannot leave it to neither (a closed connection's socket left open,
    /// and its peer waiting for ever).
    #[test]
    fn a_retired_value_goes_at_once_or_with_its_holders_turn() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let drops = AtomicUsize::new(0);
        let turn = Turn::new(Some(Dropped(&drops)));
        turn.retire();
        assert_eq!(drops.load(SeqCst), 1, "free: at once");
        assert!(turn.take(None, Duration::ZERO).unwrap().is_none());

        let drops = AtomicUsize::new(0);
        let turn = Turn::new(Some(Dropped(&drops)));
        let held = turn.take(None, Duration::ZERO).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| turn.retire()).join().unwrap();
        });
        assert!(held.is_some(), "the holder keeps it while it has the turn");
        assert_eq!(drops.load(SeqCst), 0);
        drop(held);
        assert_eq!(drops.load(SeqCst), 1, "held: when the turn comes back");
        assert!(turn.take(None, Duration::ZERO).unwrap().is_none());
    }
}
