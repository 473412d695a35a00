//! [`Barrier`]: Python's `threading.Barrier`.

use std::sync::Mutex;
use std::time::Duration;

use multiproc_core::{Error, Result, SyncPrimitive};

use super::condvar::{guard, wait_while, Cond};

#[derive(Debug)]
struct BarrierState {
    waiting: usize,
    generation: u64,
    epoch: u64,
    broken: bool,
}

/// A barrier for a fixed number of threads (Python's `threading.Barrier`). Cyclic: once
/// all parties pass, it is ready for the next round.
#[derive(Debug)]
pub struct Barrier {
    parties: usize,
    state: Mutex<BarrierState>,
    changed: Cond,
}

impl Barrier {
    /// A barrier for `parties` threads; 0 is [`Error::InvalidArgument`] on `parties`.
    pub fn new(parties: usize) -> Result<Self> {
        if parties == 0 {
            return Err(Error::invalid(
                "parties",
                "a Barrier needs at least 1 party",
            ));
        }
        Ok(Barrier {
            parties,
            state: Mutex::new(BarrierState {
                waiting: 0,
                generation: 0,
                epoch: 0,
                broken: false,
            }),
            changed: Cond::new(),
        })
    }

    fn wait_for(&self, timeout: Option<Duration>) -> Result<usize> {
        let mut s = guard(&self.state);
        if s.broken {
            return Err(Error::BrokenBarrier);
        }
        let index = s.waiting;
        s.waiting += 1;
        if s.waiting == self.parties {
            s.waiting = 0;
            s.generation += 1;
            drop(s);
            self.changed.notify_all();
            return Ok(index);
        }
        let (generation, epoch) = (s.generation, s.epoch);
        let (mut s, passed) = wait_while(&self.changed, s, timeout, |s| {
            s.generation == generation && s.epoch == epoch && !s.broken
        });
        // Released first: a round that let everyone through before a `reset` let this
        // waiter through too, whether it woke before the reset or after (as in Python).
        if s.generation != generation {
            return Ok(index);
        }
        if s.epoch != epoch {
            return Err(Error::BrokenBarrier); // reset while we waited
        }
        s.waiting -= 1;
        if passed {
            return Err(Error::BrokenBarrier); // aborted or broken by another's timeout
        }
        s.broken = true;
        drop(s);
        self.changed.notify_all();
        Err(Error::Timeout(timeout.unwrap_or_default()))
    }

    /// Waits until all parties wait, then releases them; returns a distinct index in
    /// `0..parties`. [`Error::BrokenBarrier`] if broken.
    pub fn wait(&self) -> Result<usize> {
        self.wait_for(None)
    }

    /// Like [`wait`](Self::wait), but a timeout breaks the barrier and returns
    /// [`Error::Timeout`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_for(Some(timeout))
    }

    /// Breaks the barrier; waiters get [`Error::BrokenBarrier`].
    pub fn abort(&self) {
        guard(&self.state).broken = true;
        self.changed.notify_all();
    }

    /// Returns the barrier to its empty, unbroken state; current waiters get
    /// [`Error::BrokenBarrier`].
    pub fn reset(&self) {
        let mut s = guard(&self.state);
        s.epoch += 1;
        s.waiting = 0;
        s.broken = false;
        drop(s);
        self.changed.notify_all();
    }

    /// The number of parties needed to pass.
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// How many threads are waiting now.
    pub fn n_waiting(&self) -> usize {
        guard(&self.state).waiting
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        guard(&self.state).broken
    }
}

impl SyncPrimitive for Barrier {
    fn kind(&self) -> &'static str {
        "Barrier"
    }
}

impl multiproc_core::Barrier for Barrier {
    fn wait(&self) -> Result<usize> {
        Barrier::wait(self)
    }
    fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        Barrier::wait_timeout(self, timeout)
    }
    fn abort(&self) {
        Barrier::abort(self)
    }
    fn reset(&self) {
        Barrier::reset(self)
    }
    fn parties(&self) -> usize {
        Barrier::parties(self)
    }
    fn n_waiting(&self) -> usize {
        Barrier::n_waiting(self)
    }
    fn broken(&self) -> bool {
        Barrier::broken(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_that_released_everyone_is_not_undone_by_a_reset() {
        let b = Barrier::new(2).unwrap();
        for _ in 0..50 {
            std::thread::scope(|s| {
                let waiter = s.spawn(|| b.wait());
                // Until it sleeps in the barrier: this thread's wait is then the last one.
                while b.changed.waiting() == 0 {
                    std::thread::yield_now();
                }
                assert!(b.wait().is_ok());
                b.reset(); // may come before the other waiter wakes
                assert!(waiter.join().unwrap().is_ok(), "released, then told broken");
            });
        }
    }
}
