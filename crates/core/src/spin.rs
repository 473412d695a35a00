//! [`spin_until`]: a brief busy wait before a blocking one, for waits that usually end within
//! microseconds.

use std::time::{Duration, Instant};

/// How long a caller waiting for a result checks it before sleeping, and how long an idle
/// supervisor checks its pool's queue: about half a process-to-process round trip on our VM
/// (40–50 µs), where waking a sleeping thread costs tens of microseconds.
pub const SPIN: Duration = Duration::from_micros(25);

/// Checks `done` in a loop, for at most `budget`, and returns `true` as soon as it holds;
/// `false` when the budget ran out. Spins only where the process may run on two CPUs or more:
/// on one, a spinner would only delay the thread it waits for, so `done` is checked once.
///
/// Meant for the moment before a blocking wait whose wake-up costs more than the budget (a
/// futex or condition-variable sleep): a result that arrives within the budget is taken
/// without the sleeper's wake-up.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::Duration;
///
/// let ready = AtomicBool::new(true);
/// assert!(multiproc_core::spin_until(Duration::from_micros(10), || ready.load(Ordering::Acquire)));
/// ready.store(false, Ordering::Release);
/// assert!(!multiproc_core::spin_until(Duration::from_micros(10), || ready.load(Ordering::Acquire)));
/// ```
pub fn spin_until(budget: Duration, mut done: impl FnMut() -> bool) -> bool {
    if done() {
        return true;
    }
    if budget.is_zero() || !several_cpus() {
        return false;
    }
    let start = Instant::now();
    loop {
        // The clock is read once per 32 checks: a check is an atomic load, a clock read tens
        // of nanoseconds on a virtual machine.
        for _ in 0..32 {
            std::hint::spin_loop();
            if done() {
                return true;
            }
        }
        if start.elapsed() >= budget {
            return done();
        }
    }
}

/// Whether this process may run on two CPUs or more (asked once).
fn several_cpus() -> bool {
    multiproc_sys::thread::cpus_once() > 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Barrier;

    #[test]
    fn a_spin_ends_when_its_condition_holds_or_its_budget_is_spent() {
        // Already true: one check, no spinning.
        let checks = AtomicUsize::new(0);
        assert!(spin_until(Duration::from_secs(3600), || {
            checks.fetch_add(1, Ordering::Relaxed);
            true
        }));
        assert_eq!(checks.load(Ordering::Relaxed), 1);
        // Never true: the budget ends it (an hour-long wait here would hang the test).
        let start = Instant::now();
        assert!(!spin_until(Duration::from_millis(2), || false));
        assert!(start.elapsed() >= Duration::from_millis(2) || !several_cpus());
        assert!(!spin_until(Duration::ZERO, || false));
        // Set by another thread while spinning (the budget is far beyond the handshake).
        let ready = AtomicBool::new(false);
        let go = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                go.wait();
                ready.store(true, Ordering::Release);
            });
            go.wait();
            let seen = spin_until(Duration::from_secs(3600), || ready.load(Ordering::Acquire));
            // On one CPU the spin checks once and leaves the wait to its caller.
            assert!(seen || !several_cpus());
        });
    }
}
