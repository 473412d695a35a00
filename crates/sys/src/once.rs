//! [`PerProcess`]: a registration made once per process, that a `fork` cannot wedge.

use std::sync::atomic::{AtomicU64, Ordering};

/// Done, in the low two bits.
const DONE: u64 = 2;
/// Under way, in the low two bits, by the process in the high bits.
const BUSY: u64 = 1;

/// Something done once per process — registering an `atexit` or `pthread_atfork` handler —
/// whose result survives `fork` (a child inherits the registration).
///
/// Not a `std::sync::Once`: a `Once` that another thread is running when this thread forks
/// stays "running" for ever in the child, and the child's first call blocks for good. Here
/// the state records *which process* is registering; a child that inherited "under way" from
/// a thread that does not exist in it takes the registration over (at worst it is made twice,
/// which the callers' handlers tolerate). And nothing ever waits: while another thread of this
/// process registers, [`ensure`](Self::ensure) returns `false` at once.
#[derive(Debug)]
pub struct PerProcess(AtomicU64);

impl PerProcess {
    /// Not done yet.
    pub const fn new() -> PerProcess {
        PerProcess(AtomicU64::new(0))
    }

    /// `true` once the registration is done (here, or inherited from the parent of a fork).
    /// Otherwise, if no other thread of this process is making it, makes it with `register`
    /// (which returns whether it succeeded; on `false` a later call tries again) and returns
    /// what `register` returned; if another thread is making it, returns `false` at once.
    pub fn ensure(&self, register: impl FnOnce() -> bool) -> bool {
        let me = u64::from(std::process::id()) << 2;
        loop {
            let current = self.0.load(Ordering::Acquire);
            if current & 3 == DONE {
                return true;
            }
            if current == me | BUSY {
                return false; // another thread of this process is registering
            }
            // Not done, or under way in a process that is not this one (frozen by a fork).
            if self
                .0
                .compare_exchange(current, me | BUSY, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let done = register();
                self.0
                    .store(if done { me | DONE } else { 0 }, Ordering::Release);
                return done;
            }
        }
    }
}

impl Default for PerProcess {
    fn default() -> Self {
        PerProcess::new()
    }
}

#[cfg(test)]
mod tests {
    use super::PerProcess;

    #[test]
    fn registers_once_retries_after_a_failure_and_takes_over_a_frozen_registration() {
        let once = PerProcess::new();
        assert!(!once.ensure(|| false), "a failed registration is not done");
        let mut calls = 0;
        assert!(once.ensure(|| {
            calls += 1;
            true
        }));
        assert!(once.ensure(|| unreachable!("done already")));
        assert_eq!(calls, 1);
        // "Under way" in another process (a parent that forked mid-registration): taken over.
        let frozen = PerProcess(std::sync::atomic::AtomicU64::new(
            (u64::from(std::process::id()) + 1) << 2 | super::BUSY,
        ));
        assert!(frozen.ensure(|| true));
        // Under way in this process (another thread): not waited for.
        let busy = PerProcess(std::sync::atomic::AtomicU64::new(
            u64::from(std::process::id()) << 2 | super::BUSY,
        ));
        assert!(!busy.ensure(|| unreachable!("another thread is registering")));
    }
}
