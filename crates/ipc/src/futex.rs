//! Shared (not `FUTEX_PRIVATE`) futex wait and wake on the low half of a 64-bit word that
//! lives in memory mapped by several processes, and the "someone sleeps" flag protocol that
//! keeps wake-ups off the fast path.
//!
//! A waiter sets the flag word (SeqCst), re-checks the condition, and sleeps only if the
//! watched word still holds the value it saw; a waker changes the watched word (SeqCst), then
//! reads the flag, and only if it is set clears it and wakes *everyone*. Sleepers re-set the
//! flag each time they go back to sleep, so clearing it never strands one: a sleeper that
//! set it after the waker read it re-checks the watched word after the waker changed it.
//! Every sleep is also cut into slices of [`SLICE`], so a waker that dies between its change
//! and its wake-up delays a sleeper by one slice at most, never forever.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

/// The longest single sleep: after it the waiter re-checks its condition whatever happened.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// The futex half of a 64-bit word: its low 32 bits.
fn low_half(word: &AtomicU64) -> *const u32 {
    let p = word.as_ptr().cast::<u32>();
    #[cfg(target_endian = "big")]
    // SAFETY: the word is 8 bytes; its low half is the second u32 on big-endian targets.
    let p = unsafe { p.add(1) };
    p
}

/// Sleeps while the low half of `word` equals `expected`, at most `timeout` (and at most
/// [`SLICE`]). Returns on a wake-up, a signal, a changed word, or the timeout alike: the
/// caller re-checks its condition.
fn wait(word: &AtomicU64, expected: u32, timeout: Duration) {
    let timeout = timeout.min(SLICE);
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT reads the u32 at `low_half(word)`, which is inside the live atomic
    // `word` (borrowed for the whole call), and the relative timeout on this stack frame. The
    // kernel writes through neither pointer. The word is in MAP_SHARED memory, so the
    // non-private futex is the right key for every process mapping it.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            low_half(word),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every sleeper on `word`.
fn wake_all(word: &AtomicU64) {
    // SAFETY: FUTEX_WAKE uses the address only as a key; it points into the live atomic
    // `word`. No memory is read or written through it by the kernel beyond validation.
    unsafe {
        libc::syscall(libc::SYS_futex, low_half(word), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// How long a waiter polls the watched word before it sleeps. A partner process on another
/// core usually answers within this window, and then a put+get between processes costs a
/// few hundred nanoseconds instead of two futex system calls and a wake-up (several
/// microseconds); see `benches/queue.rs`. Longer would only burn CPU that a busy machine
/// needs.
const SPIN_FOR: Duration = Duration::from_micros(20);

/// Waits until `ready()` holds or `deadline` passes; `ready` is re-evaluated after every
/// change of `word`. Returns whether `ready()` held.
///
/// `flag` is the sleepers flag that wakers of `word` consult (see [`notify`]).
pub(crate) fn wait_until(
    word: &AtomicU64,
    flag: &AtomicU64,
    deadline: Option<Instant>,
    mut ready: impl FnMut(u64) -> bool,
) -> bool {
    let mut seen = word.load(SeqCst);
    if ready(seen) {
        return true;
    }
    let spin_until = Instant::now() + SPIN_FOR;
    let mut i = 0u32;
    loop {
        std::hint::spin_loop();
        i = i.wrapping_add(1);
        if i % 32 == 0 {
            let now = Instant::now();
            if now >= spin_until || deadline.is_some_and(|d| now >= d) {
                break;
            }
        }
        let now = word.load(SeqCst);
        if now != seen {
            seen = now;
            if ready(seen) {
                return true;
            }
        }
    }
    loop {
        let timeout = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(t) if !t.is_zero() => t,
                _ => return ready(word.load(SeqCst)),
            },
            None => SLICE,
        };
        flag.store(1, SeqCst);
        let now = word.load(SeqCst);
        if now != seen {
            seen = now;
            if ready(seen) {
                return true;
            }
            continue;
        }
        wait(word, seen as u32, timeout);
        seen = word.load(SeqCst);
        if ready(seen) {
            return true;
        }
    }
}

/// Wakes the sleepers of `word` if its flag says there are any. Call after changing `word`
/// with a SeqCst operation.
#[inline]
pub(crate) fn notify(word: &AtomicU64, flag: &AtomicU64) {
    if flag.load(SeqCst) != 0 {
        flag.store(0, SeqCst);
        wake_all(word);
    }
}

/// Wakes every sleeper of `word` whatever its flag says (for rare events such as `close`,
/// which change `word` too).
pub(crate) fn notify_all(word: &AtomicU64, flag: &AtomicU64) {
    flag.store(0, SeqCst);
    wake_all(word);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
