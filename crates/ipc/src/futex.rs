//! The "someone sleeps" count that keeps wake-ups off the fast path, over shared futexes on
//! the low half of 64-bit words in memory mapped by several processes (the futex calls
//! themselves are `multiproc_sys::futex`).
//!
//! A waiter counts itself in the count word (SeqCst), re-checks the watched word, sleeps only
//! if it still holds the value it saw, and uncounts itself when it wakes; a waker changes the
//! watched word (SeqCst), then reads the count, and only if it is not zero wakes *everyone*.
//! Wakers never change the count, so none can make a sleeper that counted itself look gone
//! (with a flag that wakers cleared, a waiter that set it just after a waker read it, and
//! went to sleep on the value that waker wrote, missed the next wake-up until its slice
//! ended). A waiter that dies asleep stays counted: wakers then pay a wake-up call each
//! time, never a lost sleeper. Every sleep is also cut into slices of [`SLICE`], so a waker
//! that dies between its change and its wake-up delays a sleeper by one slice at most, never
//! forever.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use multiproc_core::{spin_until, SPIN};
use multiproc_sys::futex::Futex;

/// The longest single sleep: after it the waiter re-checks its condition whatever happened.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// Waits until `ready()` holds or `deadline` passes; `ready` is re-evaluated after every
/// change of `word`. Returns whether `ready()` held.
///
/// `count` is the count of sleepers that wakers of `word` consult (see [`notify`]).
pub(crate) fn wait_until(
    word: &AtomicU64,
    count: &AtomicU64,
    deadline: Option<Instant>,
    mut ready: impl FnMut(u64) -> bool,
) -> bool {
    let mut seen = word.load(SeqCst);
    if ready(seen) {
        return true;
    }
    // A partner process on another core usually answers within a moment, and then a put+get
    // between processes costs a few hundred nanoseconds instead of two futex system calls and
    // a wake-up (see `benches/queue.rs`): poll the word for that long (no longer than the
    // deadline) before sleeping, as the pools' waits do.
    let budget = deadline.map_or(SPIN, |d| {
        d.saturating_duration_since(Instant::now()).min(SPIN)
    });
    let changed_and_ready = spin_until(budget, || {
        let now = word.load(SeqCst);
        if now == seen {
            return false;
        }
        seen = now;
        ready(seen)
    });
    if changed_and_ready {
        return true;
    }
    loop {
        let timeout = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(t) if !t.is_zero() => t,
                _ => return ready(word.load(SeqCst)),
            },
            None => SLICE,
        };
        count.fetch_add(1, SeqCst);
        let now = word.load(SeqCst);
        if now == seen {
            // Relative and cut to a slice: the loop re-checks `ready` and the deadline anyway.
            Futex::low_half(word).wait(seen as u32, timeout.min(SLICE));
        }
        count.fetch_sub(1, SeqCst);
        seen = word.load(SeqCst);
        if ready(seen) {
            return true;
        }
    }
}

/// Wakes the sleepers of `word` if its count says there are any. Call after changing `word`
/// with a SeqCst operation.
#[inline]
pub(crate) fn notify(word: &AtomicU64, count: &AtomicU64) {
    if count.load(SeqCst) != 0 {
        Futex::low_half(word).wake_all();
    }
}

/// Wakes every sleeper of `word` whatever its count says (for rare events such as `close`,
/// which change `word` too).
pub(crate) fn notify_all(word: &AtomicU64) {
    Futex::low_half(word).wake_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_waker_leaves_the_count_of_sleepers_alone() {
        // A waiter counted just after a waker's change (it will sleep on the value that waker
        // wrote) stays counted through that waker's notify, so the next change wakes it.
        let (word, count) = (AtomicU64::new(0), AtomicU64::new(0));
        word.store(1, SeqCst); // waker 1's change
        count.fetch_add(1, SeqCst); // a waiter counts itself, then sees 1 and sleeps on it
        notify(&word, &count); // waker 1's notify
        assert_eq!(count.load(SeqCst), 1, "the sleeper no longer looks asleep");
    }

    #[test]
    fn a_wait_times_out_and_a_change_wakes_it() {
        let word = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let t = Instant::now();
        assert!(!wait_until(
            &word[0],
            &word[1],
            Some(t + Duration::from_millis(30)),
            |w| w != 0
        ));
        assert!(t.elapsed() >= Duration::from_millis(30));
        let w2 = word.clone();
        let waiter = std::thread::spawn(move || wait_until(&w2[0], &w2[1], None, |w| w == 7));
        std::thread::sleep(Duration::from_millis(20));
        word[0].store(7, SeqCst);
        notify(&word[0], &word[1]);
        assert!(waiter.join().unwrap());
    }
}
