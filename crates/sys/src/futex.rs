//! Shared futexes: sleeping on a 32-bit word of memory that several processes map, and waking
//! the sleepers.
//!
//! The futexes are *shared* (not `FUTEX_PRIVATE_FLAG`): the kernel keys them by the physical
//! page, so a waiter in one process and a waker in another that map the same memory meet.
//! A word in private memory works too (the key is then that process's page).
//!
//! One type, [`Futex`], names the word; it is made from a `&AtomicU32`, or from the low half
//! of a `&AtomicU64` ([`Futex::low_half`]: the lock and queue words are 64 bits, the futex
//! half is their low 32 bits on either endianness). Two waits, for the two ways callers count
//! time:
//!
//! - [`Futex::wait`]: a *relative* timeout (`FUTEX_WAIT`), for callers that cut their sleeps
//!   into slices anyway (the ipc queues' flag-word protocol);
//! - [`Futex::wait_until`]: an *absolute* deadline on `CLOCK_MONOTONIC` (`FUTEX_WAIT_BITSET`,
//!   see [`monotonic_now`]), for callers that keep one deadline across many wake-ups (the
//!   robust locks of shared-array), so that spurious wake-ups never stretch the timeout.
//!
//! Both return on a wake-up, a signal, or a word that no longer holds the expected value
//! alike ([`Wake::Retry`]): the caller re-checks its condition.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use nix::errno::Errno;
use nix::time::{clock_gettime, ClockId};

/// How a futex wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Woken by a wake-up, a signal, or because the word no longer held the expected value:
    /// the caller re-checks its condition.
    Retry,
    /// The timeout or deadline passed.
    TimedOut,
}

/// A futex word: a 32-bit atomic, borrowed for as long as the `Futex` lives, so the address
/// handed to the kernel always points into a live atomic.
#[derive(Debug, Clone, Copy)]
pub struct Futex<'a> {
    word: *const u32,
    _word: PhantomData<&'a AtomicU32>,
}

impl<'a> Futex<'a> {
    /// The futex on `word`.
    pub fn new(word: &'a AtomicU32) -> Futex<'a> {
        Futex {
            word: word.as_ptr(),
            _word: PhantomData,
        }
    }

    /// The futex on the low 32 bits of a 64-bit word (the first four bytes on little-endian
    /// targets, the last four on big-endian ones). The rest of the word is never read by the
    /// kernel; a change to it alone does not make a wait return.
    pub fn low_half(word: &'a AtomicU64) -> Futex<'a> {
        let p = word.as_ptr().cast::<u32>();
        #[cfg(target_endian = "big")]
        // SAFETY: the word is 8 bytes; its low half is the second u32 on big-endian targets,
        // still inside the same allocation.
        let p = unsafe { p.add(1) };
        Futex {
            word: p,
            _word: PhantomData,
        }
    }

    /// Sleeps while the word holds `expected`, at most `timeout` (`FUTEX_WAIT`, relative).
    pub fn wait(&self, expected: u32, timeout: Duration) -> Wake {
        let ts = timespec(timeout);
        // SAFETY: FUTEX_WAIT reads the u32 at `self.word`, which points into an atomic that
        // `self` borrows for its whole life (so for the whole call), and the relative timeout,
        // which lives on this stack frame. The kernel writes through neither pointer; the
        // unused `uaddr2` is null and `val3` is ignored for FUTEX_WAIT.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word,
                libc::FUTEX_WAIT,
                expected,
                &ts as *const libc::timespec,
                std::ptr::null::<u32>(),
                0u32,
            )
        };
        outcome(r)
    }

    /// Sleeps while the word holds `expected`, until the absolute `deadline` on
    /// `CLOCK_MONOTONIC` (a time since its epoch, as [`monotonic_now`] returns it; `None`:
    /// no deadline). `FUTEX_WAIT_BITSET` with every bit set, which is `FUTEX_WAIT` with an
    /// absolute timeout.
    pub fn wait_until(&self, expected: u32, deadline: Option<Duration>) -> Wake {
        let ts = deadline.map(timespec);
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: FUTEX_WAIT_BITSET reads the u32 at `self.word` (inside an atomic `self`
        // borrows for the whole call) and the timespec, which lives on this stack frame or is
        // null (no timeout); without FUTEX_CLOCK_REALTIME the absolute timeout is on
        // CLOCK_MONOTONIC. The kernel writes nothing through either pointer; `uaddr2` is
        // unused and null.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word,
                libc::FUTEX_WAIT_BITSET,
                expected,
                ts_ptr,
                std::ptr::null::<u32>(),
                libc::FUTEX_BITSET_MATCH_ANY,
            )
        };
        outcome(r)
    }

    /// Wakes up to `n` sleepers on the word.
    pub fn wake(&self, n: usize) {
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        // SAFETY: FUTEX_WAKE uses the address only as a key (the kernel validates it but reads
        // and writes no memory through it); it points into an atomic `self` borrows.
        unsafe {
            libc::syscall(libc::SYS_futex, self.word, libc::FUTEX_WAKE, n);
        }
    }

    /// Wakes every sleeper on the word.
    pub fn wake_all(&self) {
        self.wake(usize::MAX);
    }
}

fn outcome(r: libc::c_long) -> Wake {
    if r == -1 && Errno::last() == Errno::ETIMEDOUT {
        Wake::TimedOut
    } else {
        Wake::Retry
    }
}

/// Now on `CLOCK_MONOTONIC`, as the time since its epoch (boot): the clock of
/// [`Futex::wait_until`]'s deadlines.
pub fn monotonic_now() -> Duration {
    // CLOCK_MONOTONIC cannot fail on Linux with a valid clock id; a zero fallback would only
    // make deadlines expire early, never hang.
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC)
        .unwrap_or_else(|_| nix::sys::time::TimeSpec::new(0, 0));
    Duration::new(
        ts.tv_sec().max(0) as u64,
        ts.tv_nsec().clamp(0, 999_999_999) as u32,
    )
}

/// A normalised `timespec` (`0 <= tv_nsec < 1e9`) for `t`. Seconds that do not fit `time_t`
/// saturate (some 292 billion years).
fn timespec(t: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        // subsec_nanos is always below 1e9: the timespec is normalised by construction.
        tv_nsec: t.subsec_nanos() as libc::c_long,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn timespecs_are_normalised() {
        let ts = timespec(Duration::new(5, 999_999_999) + Duration::from_nanos(2));
        assert_eq!((ts.tv_sec, ts.tv_nsec), (6, 1));
        let ts = timespec(Duration::MAX);
        assert!(ts.tv_nsec < 1_000_000_000);
        assert_eq!(ts.tv_sec, libc::time_t::MAX);
    }

    #[test]
    fn the_low_half_is_the_low_32_bits() {
        let w = AtomicU64::new(0x1234_5678_9abc_def0);
        let f = Futex::low_half(&w);
        // SAFETY: `f.word` points into `w`, alive and not written concurrently.
        assert_eq!(unsafe { *f.word }, 0x9abc_def0);
    }

    #[test]
    fn waits_time_out_relative_and_absolute() {
        let w = AtomicU32::new(0);
        let f = Futex::new(&w);
        let t = Instant::now();
        assert_eq!(f.wait(0, Duration::from_millis(20)), Wake::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(20));
        let deadline = monotonic_now() + Duration::from_millis(20);
        assert_eq!(f.wait_until(0, Some(deadline)), Wake::TimedOut);
        assert!(monotonic_now() >= deadline);
        // A word that no longer holds the expected value returns at once.
        assert_eq!(f.wait(1, Duration::from_secs(10)), Wake::Retry);
        assert_eq!(f.wait_until(1, None), Wake::Retry);
    }

    #[test]
    fn a_wake_ends_a_wait() {
        let w = Arc::new(AtomicU64::new(0));
        let w2 = w.clone();
        let waiter = std::thread::spawn(move || {
            let f = Futex::low_half(&w2);
            while w2.load(SeqCst) == 0 {
                f.wait_until(0, None);
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        w.store(1 << 32 | 1, SeqCst);
        Futex::low_half(&w).wake_all();
        waiter.join().unwrap();
    }
}
