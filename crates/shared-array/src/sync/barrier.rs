//! [`ProcessBarrier`]: Python's `multiprocessing.Barrier`.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::time::Duration;

use multiproc_core::{Barrier, Condition, Error, Lock, Result, SyncPrimitive};

use super::condition::ProcessCondition;
use super::layout::Kind;
use super::robust::deadline_of;
use crate::os::{self, Deadline};
use crate::ShmBuffer;

/// A process-shared barrier (Python's `multiprocessing.Barrier`).
///
/// Python's algorithm (filling, draining, resetting, broken) on a [`ProcessCondition`] whose
/// spare words hold the state. If a party's process dies while holding the barrier's internal
/// lock, the barrier breaks: waiters get [`Error::BrokenBarrier`] until [`reset`](Barrier::reset).
/// A party that dies while *waiting* is not noticed (as in Python): its place in the count is
/// never given back, so the round it was in cannot drain, later calls of `wait` wait for ever
/// and `wait_timeout` times out, and `reset` cannot recover the barrier — make a new one.
/// Where parties may die, wait with `wait_timeout`.
#[derive(Debug)]
pub struct ProcessBarrier {
    cond: ProcessCondition,
}

const B_PARTIES: usize = 0;
const B_COUNT: usize = 1;
const B_STATE: usize = 2;
const FILLING: u64 = 0;
const DRAINING: u64 = 1;
const RESETTING: u64 = 2;
const BROKEN: u64 = 3;

/// What a barrier wait ended with.
enum Passed {
    Index(usize),
    Broken,
    TimedOut,
}

impl ProcessBarrier {
    /// A barrier for `parties` parties (at least 1).
    pub fn new(parties: usize) -> Result<Self> {
        if parties == 0 {
            return Err(Error::invalid(
                "parties",
                "a barrier needs at least 1 party",
            ));
        }
        let cond = ProcessCondition::create(Kind::Barrier, parties.saturating_mul(2).max(64))?;
        cond.extra(B_PARTIES).store(parties as u64, Release);
        Ok(ProcessBarrier { cond })
    }

    /// Attaches to a barrier received from another process.
    pub fn from_buffer(buf: ShmBuffer) -> Result<Self> {
        let cond = ProcessCondition::attach_kind(buf, Kind::Barrier)?;
        Ok(ProcessBarrier { cond })
    }

    /// The shared memory holding the barrier, to send to another process. Its bytes are the
    /// barrier's alone: the [`SharedBuffer`](multiproc_core::SharedBuffer) byte and word accessors
    /// refuse it ([`AccessWidth::Structured`](multiproc_core::AccessWidth::Structured)).
    pub fn buffer(&self) -> &ShmBuffer {
        self.cond.buffer()
    }

    fn state(&self) -> &AtomicU64 {
        self.cond.extra(B_STATE)
    }

    fn count(&self) -> &AtomicU64 {
        self.cond.extra(B_COUNT)
    }

    /// Takes the internal lock; a dead holder breaks the barrier.
    fn enter(&self) {
        if let Err(Error::OwnerDied) = self.cond.acquire() {
            self.state().store(BROKEN, Relaxed);
            let _ = self.cond.notify_all();
        }
    }

    fn leave(&self) {
        let _ = self.cond.release();
    }

    /// Condition wait that turns an owner-died re-lock into a broken barrier.
    fn cond_wait(&self, deadline: Deadline) -> bool {
        match self.cond.wait_until(deadline) {
            Ok(notified) => notified,
            Err(_) => {
                self.state().store(BROKEN, Relaxed);
                let _ = self.cond.notify_all();
                true
            }
        }
    }

    fn wait_until(&self, deadline: Deadline) -> Passed {
        self.enter();
        let parties = self.parties();
        // Wait for a previous round to drain or a reset to finish. A timeout here gives up
        // without breaking anything: this caller has joined no round yet, and the parties of
        // the one that passed are still on their way out.
        while matches!(self.state().load(Relaxed), DRAINING | RESETTING) {
            if !self.cond_wait(deadline) && os::expired(deadline, os::mono_now()) {
                self.leave();
                return Passed::TimedOut;
            }
        }
        if self.state().load(Relaxed) == BROKEN {
            self.leave();
            return Passed::Broken;
        }
        let index = self.count().fetch_add(1, Relaxed) as usize;
        let result = if index + 1 == parties {
            self.state().store(DRAINING, Relaxed);
            let _ = self.cond.notify_all();
            Passed::Index(index)
        } else {
            let mut result = None;
            while result.is_none() {
                match self.state().load(Relaxed) {
                    FILLING => {
                        if !self.cond_wait(deadline)
                            && self.state().load(Relaxed) == FILLING
                            && os::expired(deadline, os::mono_now())
                        {
                            self.break_locked();
                            result = Some(Passed::TimedOut);
                        }
                    }
                    DRAINING => result = Some(Passed::Index(index)),
                    _ => result = Some(Passed::Broken),
                }
            }
            result.expect("set above")
        };
        // Leave: the last one out of a draining or resetting round re-opens the barrier.
        let left = self.count().fetch_sub(1, Relaxed) - 1;
        if left == 0 && matches!(self.state().load(Relaxed), DRAINING | RESETTING) {
            self.state().store(FILLING, Relaxed);
            let _ = self.cond.notify_all();
        }
        self.leave();
        result
    }

    fn break_locked(&self) {
        self.state().store(BROKEN, Relaxed);
        let _ = self.cond.notify_all();
    }

    fn finish(&self, passed: Passed, timeout: Duration) -> Result<usize> {
        match passed {
            Passed::Index(i) => Ok(i),
            Passed::Broken => Err(Error::BrokenBarrier),
            Passed::TimedOut => Err(Error::Timeout(timeout)),
        }
    }
}

impl SyncPrimitive for ProcessBarrier {
    fn kind(&self) -> &'static str {
        "ProcessBarrier"
    }
}

impl Barrier for ProcessBarrier {
    fn wait(&self) -> Result<usize> {
        let passed = self.wait_until(None);
        self.finish(passed, Duration::MAX)
    }

    fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        let passed = self.wait_until(deadline_of(timeout));
        self.finish(passed, timeout)
    }

    fn abort(&self) {
        self.enter();
        self.break_locked();
        self.leave();
    }

    fn reset(&self) {
        self.enter();
        if self.count().load(Relaxed) > 0 {
            if matches!(self.state().load(Relaxed), FILLING | BROKEN) {
                self.state().store(RESETTING, Relaxed);
            }
        } else {
            self.state().store(FILLING, Relaxed);
        }
        let _ = self.cond.notify_all();
        self.leave();
    }

    fn parties(&self) -> usize {
        self.cond.extra(B_PARTIES).load(Relaxed) as usize
    }

    fn n_waiting(&self) -> usize {
        if self.state().load(Relaxed) == FILLING {
            self.count().load(Relaxed) as usize
        } else {
            0
        }
    }

    fn broken(&self) -> bool {
        self.state().load(Relaxed) == BROKEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caller whose timeout runs out while the previous round drains gives up without
    /// breaking the barrier: it never joined a round, and the parties of the round that
    /// passed (released, not yet out) must still get their index (Python's `_enter` does not
    /// break either).
    #[test]
    fn a_timeout_while_the_last_round_drains_leaves_the_barrier_whole() {
        let b = ProcessBarrier::new(2).unwrap();
        // A round passed; one of its parties is released but not yet out.
        b.state().store(DRAINING, Relaxed);
        b.count().store(1, Relaxed);
        assert!(matches!(
            b.wait_timeout(Duration::from_millis(10)),
            Err(Error::Timeout(_))
        ));
        assert!(!b.broken(), "the passed round was broken");
        assert_eq!(b.state().load(Relaxed), DRAINING);
    }
}
