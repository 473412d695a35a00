//! The thin OS layer under the primitives: the monotonic clock and deadlines, shared futexes,
//! and the identity and liveness of the processes that hold locks.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

use nix::errno::Errno;
use nix::time::{clock_gettime, ClockId};

// ----------------------------------------------------------------------------------------------
// Clock and deadlines
// ----------------------------------------------------------------------------------------------

/// Now on `CLOCK_MONOTONIC`, as the time since its epoch (boot).
pub(crate) fn mono_now() -> Duration {
    // CLOCK_MONOTONIC cannot fail on Linux with a valid clock id; a zero fallback would only
    // make deadlines expire early, never hang.
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC)
        .unwrap_or_else(|_| nix::sys::time::TimeSpec::new(0, 0));
    Duration::new(
        ts.tv_sec().max(0) as u64,
        ts.tv_nsec().clamp(0, 999_999_999) as u32,
    )
}

/// An absolute point on `CLOCK_MONOTONIC`, or `None` for "never" (no timeout, or a timeout
/// so long that the deadline overflows).
pub(crate) type Deadline = Option<Duration>;

/// The deadline `timeout` from now.
pub(crate) fn deadline_after(timeout: Duration) -> Deadline {
    mono_now().checked_add(timeout)
}

/// Whether `deadline` has passed at `now`.
pub(crate) fn expired(deadline: Deadline, now: Duration) -> bool {
    deadline.is_some_and(|d| now >= d)
}

/// A normalised `timespec` (`0 <= tv_nsec < 1e9`) for an absolute monotonic time. Seconds that
/// do not fit `time_t` saturate (a deadline some 292 billion years away).
pub(crate) fn timespec(t: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        // subsec_nanos is always below 1e9: the timespec is normalised by construction.
        tv_nsec: t.subsec_nanos() as libc::c_long,
    }
}

// ----------------------------------------------------------------------------------------------
// Futexes (shared, not FUTEX_PRIVATE: the words live in memory mapped by several processes)
// ----------------------------------------------------------------------------------------------

/// How a futex wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Woken by a `futex_wake`, a signal, or because the word no longer held the expected
    /// value: the caller re-checks its condition.
    Retry,
    /// The absolute deadline passed.
    TimedOut,
}

/// Sleeps while `*word == expected`, until woken or until the absolute monotonic `until`.
pub(crate) fn futex_wait(word: *const u32, expected: u32, until: Deadline) -> Wake {
    let ts = until.map(timespec);
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT_BITSET reads the u32 at `word` (callers pass the address of a live
    // atomic in a mapping that outlives the call) and the timespec, which lives on this stack
    // frame; without FUTEX_CLOCK_REALTIME the absolute timeout is on CLOCK_MONOTONIC. The
    // kernel writes nothing through either pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAIT_BITSET,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    if r == -1 && Errno::last() == Errno::ETIMEDOUT {
        Wake::TimedOut
    } else {
        Wake::Retry
    }
}

/// Wakes up to `n` sleepers on `word`.
pub(crate) fn futex_wake(word: *const u32, n: usize) {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    // SAFETY: FUTEX_WAKE only uses the address as a key (it does not dereference user memory
    // beyond validating the address); `word` points into a live mapping.
    unsafe {
        libc::syscall(libc::SYS_futex, word, libc::FUTEX_WAKE, n);
    }
}

/// The futex half of a 64-bit lock word: its low 32 bits.
pub(crate) fn low_half(word: &AtomicU64) -> *const u32 {
    let p = word.as_ptr().cast::<u32>();
    #[cfg(target_endian = "big")]
    // SAFETY: the word is 8 bytes; its low half is the second u32 on big-endian targets.
    let p = unsafe { p.add(1) };
    p
}

/// The address of an `AtomicU32`, for the futex calls.
pub(crate) fn addr(word: &AtomicU32) -> *const u32 {
    word.as_ptr()
}

// ----------------------------------------------------------------------------------------------
// Identity: who holds a lock
// ----------------------------------------------------------------------------------------------
//
// A lock word identifies its holder by (pid, tid, start-time tag) packed in 63 bits; bit 31 is
// the "someone sleeps" flag and is never part of an identity:
//
//   bits  0..22  tid of the holding thread (pid_max is at most 2^22 on Linux)
//   bits 22..31  low 9 bits of the tag
//   bit  31      WAITERS
//   bits 32..54  pid of the holding process
//   bits 54..64  high 10 bits of the tag
//
// The tag is the holder process's start time (in clock ticks since boot, /proc/<pid>/stat
// field 22) modulo 2^19: a pid that was recycled after the holder died belongs to a process
// with another start time, so a recycled pid is not mistaken for the dead holder.

/// The "someone sleeps on this word" flag of a lock word.
pub(crate) const WAITERS: u64 = 1 << 31;
const ID_MASK: u64 = (1 << 22) - 1;
const TAG_BITS: u32 = 19;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

/// This process, packed as `pid | tag << 32`; 0 until first computed and again after a fork
/// (reset by the `pthread_atfork` child handler).
static PROCESS: AtomicU64 = AtomicU64::new(0);
/// Registration of the atfork handler: 0 none, 1 under way, 2 done. Deliberately not a
/// `std::sync::Once`: a `Once` that another thread is running when this thread forks stays
/// "running" forever in the child, and the child would block on it.
static ATFORK: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// (pid the cache was made in, tid of this thread).
    static THREAD: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

extern "C" fn forget_process_identity() {
    // Runs in the child right after fork(): the child is a new process with a new pid.
    PROCESS.store(0, Relaxed);
}

#[cold]
fn init_process() -> u64 {
    if ATFORK.compare_exchange(0, 1, SeqCst, SeqCst).is_ok() {
        // SAFETY: registers a handler that only stores to an atomic, which is async-signal
        // safe and therefore fine in a child of a multithreaded fork.
        unsafe {
            libc::pthread_atfork(None, None, Some(forget_process_identity));
        }
        ATFORK.store(2, SeqCst);
    }
    let pid = nix::unistd::getpid().as_raw() as u32;
    let tag = proc_stat(pid).map_or(0, |(_, start)| start & TAG_MASK);
    let packed = u64::from(pid) | tag << 32;
    // Cache only once the handler that forgets the cache in a forked child is in place. While
    // another thread registers it (or in a child forked meanwhile, where it never finishes)
    // the identity is computed afresh on each call: slower, never wrong.
    if ATFORK.load(SeqCst) == 2 {
        PROCESS.store(packed, Relaxed);
    }
    packed
}

/// `(pid, tag)` of this process.
fn process() -> (u32, u64) {
    let mut p = PROCESS.load(Relaxed);
    if p == 0 {
        p = init_process();
    }
    (p as u32, p >> 32)
}

/// The lock-word identity of the calling thread: never 0, never has [`WAITERS`] set.
#[inline]
pub(crate) fn me() -> u64 {
    let (pid, tag) = process();
    let tid = THREAD.with(|c| {
        let (cached_pid, tid) = c.get();
        if cached_pid == pid {
            tid
        } else {
            let tid = nix::unistd::gettid().as_raw() as u32;
            c.set((pid, tid));
            tid
        }
    });
    pack(pid, tid, tag)
}

fn pack(pid: u32, tid: u32, tag: u64) -> u64 {
    let lo = (u64::from(tid) & ID_MASK) | (tag & 0x1FF) << 22;
    let hi = (u64::from(pid) & ID_MASK) | (tag >> 9) << 22;
    hi << 32 | lo
}

/// The holder's `(pid, tid, tag)` in a lock word.
pub(crate) fn unpack(word: u64) -> (u32, u32, u64) {
    let pid = (word >> 32 & ID_MASK) as u32;
    let tid = (word & ID_MASK) as u32;
    let tag = (word >> 54) << 9 | (word >> 22 & 0x1FF);
    (pid, tid, tag)
}

/// Whether the process named in a lock word (or a waiter record) still runs. Dead means: no
/// such pid, a zombie (killed but not yet reaped), or a pid now used by a process with another
/// start time. Slow (reads `/proc`); only called after a wait slice expires.
pub(crate) fn holder_alive(word: u64) -> bool {
    let (pid, _, tag) = unpack(word);
    if pid == 0 {
        return false;
    }
    if pid == process().0 {
        return true; // we are running, so the holder's process is too
    }
    match proc_stat(pid) {
        Ok((state, start)) => {
            let zombie = matches!(state, b'Z' | b'X' | b'x');
            let recycled = tag != 0 && start & TAG_MASK != tag;
            !zombie && !recycled
        }
        // /proc may hide other processes (hidepid) or be absent: ask the kernel directly.
        Err(_) => !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None),
            Err(Errno::ESRCH)
        ),
    }
}

/// `(state, starttime)` from `/proc/<pid>/stat`, reading into stack buffers only (this runs in
/// forked children of multithreaded processes).
fn proc_stat(pid: u32) -> Result<(u8, u64), Errno> {
    let mut path = [0u8; 32];
    let mut n = 0;
    for &b in b"/proc/" {
        path[n] = b;
        n += 1;
    }
    let mut digits = [0u8; 10];
    let (mut d, mut v) = (0, pid);
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        path[n] = digits[d];
        n += 1;
    }
    for &b in b"/stat" {
        path[n] = b;
        n += 1;
    }
    let fd = nix::fcntl::open(
        &path[..n],
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: `open` just returned this descriptor and nothing else owns it.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut buf = [0u8; 1024];
    let mut len = 0;
    loop {
        match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf[len..]) {
            Ok(0) => break,
            Ok(k) => {
                len += k;
                if len == buf.len() {
                    break;
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    parse_stat(&buf[..len]).ok_or(Errno::EINVAL)
}

/// Parses state (field 3) and starttime (field 22) out of a `/proc/<pid>/stat` line. The
/// command name (field 2) may contain spaces and parentheses, so fields are counted from
/// the last `)`.
fn parse_stat(stat: &[u8]) -> Option<(u8, u64)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let mut fields = stat[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    let start = fields.nth(18)?; // fields 4..=21 skipped: field 22 is the 19th after state
    let mut v: u64 = 0;
    for &b in start {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some((state, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespecs_are_normalised() {
        let ts = timespec(Duration::new(5, 999_999_999) + Duration::from_nanos(2));
        assert_eq!((ts.tv_sec, ts.tv_nsec), (6, 1));
        let ts = timespec(Duration::MAX);
        assert!(ts.tv_nsec < 1_000_000_000);
        assert_eq!(ts.tv_sec, libc::time_t::MAX);
        assert_eq!(deadline_after(Duration::MAX), None);
        let d = deadline_after(Duration::from_millis(10));
        assert!(!expired(d, mono_now()));
        assert!(expired(d, mono_now() + Duration::from_millis(11)));
    }

    #[test]
    fn identities_round_trip() {
        let w = pack(4_194_303, 12_345, TAG_MASK);
        assert_eq!(unpack(w), (4_194_303, 12_345, TAG_MASK));
        assert_eq!(w & WAITERS, 0);
        let me = me();
        assert_ne!(me, 0);
        assert_eq!(unpack(me).0, std::process::id());
        assert!(holder_alive(me));
        assert!(holder_alive(me | WAITERS));
    }

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let line = b"123 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 99 0\n";
        assert_eq!(parse_stat(line), Some((b'S', 424_242)));
        let mine = proc_stat(std::process::id()).unwrap();
        assert!(matches!(mine.0, b'R' | b'S'));
        assert!(mine.1 > 0);
        assert!(parse_stat(b"garbage").is_none());
    }

    #[test]
    fn dead_and_recycled_pids_are_not_alive() {
        // pid 0 never holds a lock.
        assert!(!holder_alive(pack(0, 1, 0)));
        // pid 1 runs, but not with this start-time tag unless by a 2^-19 coincidence.
        let (_, start) = proc_stat(1).unwrap();
        let tag = (start + 1) & TAG_MASK;
        assert!(!holder_alive(pack(1, 1, if tag == 0 { 1 } else { tag })));
        assert!(holder_alive(pack(1, 1, start & TAG_MASK)));
    }
}
