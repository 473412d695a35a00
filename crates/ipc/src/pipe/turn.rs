//! [`Turn`]: whose turn it is to use one direction of a [`Connection`](super::Connection) —
//! a lock whose waits have deadlines, and which a forked child refuses instead of waiting for.
//!
//! A `std::sync::Mutex` held across a blocking `recv` would make every other thread's
//! `recv_timeout` or `poll(0)` wait for that `recv`, without bound; and a child forked while a
//! thread held it inherits it locked, by a thread that does not exist there. Here who has the
//! turn is one atomic word, changed by compare-and-swap, and a thread waiting for the turn
//! sleeps on that word (a futex, with the call's deadline): there is no lock a fork could
//! leave held.

use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use multiproc_core::{Error, Result};

use crate::futex;

/// The holder's pid, in the low half of [`Turn::state`] (0: nobody has the turn).
const PID: u64 = u32::MAX as u64;
/// The value was retired while a thread had the turn: reset it when the turn comes back.
const RETIRED: u64 = 1 << 32;

/// A value used by one thread at a time, taken with [`take`](Self::take), and retired (reset
/// to its default: dropped) with [`retire`](Self::retire).
pub(super) struct Turn<T> {
    /// Who has the turn (the holder's pid in [`PID`], 0 if nobody) and [`RETIRED`], changed
    /// together by compare-and-swap: there is no lock a fork could leave held.
    state: AtomicU64,
    /// Threads asleep waiting for the turn (see [`futex`]).
    sleepers: AtomicU64,
    value: UnsafeCell<T>,
    /// Resets the value to its default (`T::default`).
    reset: fn(&mut T),
}

// SAFETY: `value` is only reached through a `TurnGuard`, and at most one guard exists at a
// time (`take` hands one out only by moving `state` from nobody to its pid, and `retire`
// reaches the value only likewise), so sharing a `Turn` between threads shares `T` by moving
// it between them: `T: Send` suffices.
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

fn reset_to_default<T: Default>(value: &mut T) {
    *value = T::default();
}

/// This process, as a holder.
fn me() -> u64 {
    u64::from(multiproc_sys::process::current_pid())
}

impl<T: Default> Turn<T> {
    pub(super) fn new(value: T) -> Self {
        Turn {
            state: AtomicU64::new(0),
            sleepers: AtomicU64::new(0),
            value: UnsafeCell::new(value),
            reset: reset_to_default::<T>,
        }
    }
}

impl<T> Turn<T> {
    /// Waits for the turn until `deadline` (`None`: as long as it takes). Errors:
    /// [`Error::Timeout`] (of `waited`, the caller's whole timeout) once the deadline passes;
    /// [`Error::Io`] in a forked child whose copy was taken by a thread of its parent (that
    /// thread does not exist here, so the turn would never come back).
    pub(super) fn take(
        &self,
        deadline: Option<Instant>,
        waited: Duration,
    ) -> Result<TurnGuard<'_, T>> {
        let me = me();
        loop {
            if let Some(guard) = self.try_take() {
                return Ok(guard);
            }
            let holder = self.state.load(SeqCst) & PID;
            if holder != 0 && holder != me {
                return Err(Error::Io(std::io::Error::other(
                    "another thread was using this end of the connection when this process \
                     was forked from its parent: that copy of it cannot be used here",
                )));
            }
            let free = |state: u64| state & PID == 0;
            if !futex::wait_until(&self.state, &self.sleepers, deadline, free) {
                return Err(Error::Timeout(waited));
            }
        }
    }

    /// The turn if nobody has it now, without waiting.
    pub(super) fn try_take(&self) -> Option<TurnGuard<'_, T>> {
        // Nobody has it only with `state` at 0 (a retirement of a free value is carried out
        // at once).
        self.state.compare_exchange(0, me(), SeqCst, SeqCst).ok()?;
        Some(TurnGuard {
            turn: self,
            _not_sync: PhantomData,
        })
    }

    /// Resets the value to its default (drops it) at once if nobody has the turn, otherwise
    /// when its holder gives the turn back: each of the two acts on a compare-and-swap of
    /// the same word, so a retirement that races the release is carried out by exactly one
    /// of them, never by neither. Does not wait.
    pub(super) fn retire(&self) {
        loop {
            if let Some(mut guard) = self.try_take() {
                // The turn for a moment: retired now, given back at once.
                (self.reset)(&mut *guard);
                return;
            }
            let state = self.state.load(SeqCst);
            if state & RETIRED != 0 {
                return;
            }
            if state & PID != 0
                && self
                    .state
                    .compare_exchange(state, state | RETIRED, SeqCst, SeqCst)
                    .is_ok()
            {
                return;
            }
        }
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
        let state = &self.turn.state;
        let mut seen = state.load(SeqCst);
        loop {
            if seen & RETIRED != 0 {
                // Still ours until the swap below: retired while we had it.
                (self.turn.reset)(&mut **self);
            }
            // Fails only if a retirement came meanwhile: then reset and try again.
            match state.compare_exchange(seen, 0, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        futex::notify(state, &self.turn.sleepers);
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
            // SAFETY: the child only tries the turn (atomics, and an atomic pid cache) and
            // leaves with `_exit`.
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

    /// A child forked while another thread of its parent takes and gives back the turn, over
    /// and over, finds out at once whether its copy is usable: nothing it needs to look at
    /// the turn can have been held at the fork (a lock would stay held in the child, by a
    /// thread that does not exist there, and its first call would wait for ever).
    #[test]
    fn a_child_forked_while_the_turn_changes_hands_never_waits_for_it() {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        let turn = Turn::new(0u32);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(SeqCst) {
                    let mut g = turn.take(None, Duration::ZERO).unwrap();
                    *g += 1;
                }
            });
            for round in 0..200 {
                // SAFETY: the child only looks at the turn (atomics, no lock), and leaves
                // with `_exit`.
                match unsafe { nix::unistd::fork() }.unwrap() {
                    nix::unistd::ForkResult::Child => {
                        let t = Duration::from_millis(1);
                        // Free at the fork (taken now), or the parent's thread's (refused).
                        let ok = match turn.take(Some(Instant::now() + t), t) {
                            Ok(_) => true,
                            Err(e) => matches!(e, Error::Io(_)),
                        };
                        multiproc_sys::exit::exit_now(if ok { 0 } else { 1 })
                    }
                    nix::unistd::ForkResult::Parent { child } => {
                        let deadline = Instant::now() + Duration::from_secs(10);
                        let status = loop {
                            match waitpid(child, Some(WaitPidFlag::WNOHANG)).unwrap() {
                                WaitStatus::StillAlive if Instant::now() < deadline => {
                                    std::thread::yield_now()
                                }
                                WaitStatus::StillAlive => {
                                    let _ =
                                        nix::sys::signal::kill(child, nix::sys::signal::SIGKILL);
                                    let _ = waitpid(child, None);
                                    stop.store(true, SeqCst);
                                    panic!("round {round}: the child waited for the turn");
                                }
                                status => break status,
                            }
                        };
                        assert_eq!(status, WaitStatus::Exited(child, 0), "round {round}");
                    }
                }
            }
            stop.store(true, SeqCst);
        });
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
