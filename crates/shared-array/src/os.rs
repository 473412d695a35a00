//! What the primitives need from the OS, on top of `multiproc_sys`: monotonic deadlines for
//! the absolute futex waits, and the identity and liveness of the processes that hold locks.
//! The system calls themselves (futex, `/proc/<pid>/stat`, `pthread_atfork`, `gettid`) are
//! `multiproc_sys`'s.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use multiproc_sys::once::PerProcess;
use multiproc_sys::procfs;
use nix::errno::Errno;

// ----------------------------------------------------------------------------------------------
// Clock and deadlines
// ----------------------------------------------------------------------------------------------

/// Now on `CLOCK_MONOTONIC`, as the time since its epoch (boot): the clock of
/// `Futex::wait_until`.
pub(crate) use multiproc_sys::futex::monotonic_now as mono_now;

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
/// Registration of the atfork handler, once per process (not a `std::sync::Once`, which a
/// fork could leave "running" for ever in the child: see [`PerProcess`]).
static ATFORK: PerProcess = PerProcess::new();

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
    let handler_in_place = ATFORK.ensure(|| {
        // SAFETY: the child handler only stores to an atomic, which is async-signal-safe and
        // therefore fine in a child of a multithreaded fork; it cannot unwind and lives for
        // the whole program.
        unsafe { multiproc_sys::atfork::register(None, None, Some(forget_process_identity)) }
            .is_ok()
    });
    let pid = nix::unistd::getpid().as_raw() as u32;
    let tag = procfs::stat(pid).map_or(0, |st| st.start_time & TAG_MASK);
    let packed = u64::from(pid) | tag << 32;
    // Cache only once the handler that forgets the cache in a forked child is in place. While
    // another thread registers it (or out of memory) the identity is computed afresh on each
    // call: slower, never wrong.
    if handler_in_place {
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
            let tid = multiproc_sys::thread::gettid() as u32;
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
    let (own_pid, own_tag) = process();
    if pid == own_pid {
        // We are running: the holder is this process, unless it is a dead one that had our
        // pid before us (another start time). A tag of 0 is unknown: taken as this process.
        return tag == 0 || own_tag == 0 || tag == own_tag;
    }
    match procfs::stat(pid) {
        Ok(st) => {
            let recycled = tag != 0 && st.start_time & TAG_MASK != tag;
            !st.is_dead() && !recycled
        }
        // /proc may hide other processes (hidepid) or be absent: ask the kernel directly.
        Err(_) => !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None),
            Err(Errno::ESRCH)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_expire() {
        assert_eq!(deadline_after(Duration::MAX), None);
        let d = deadline_after(Duration::from_millis(10));
        assert!(!expired(d, mono_now()));
        assert!(expired(d, mono_now() + Duration::from_millis(11)));
    }

    /// A word naming this process's pid with another start time is a dead process that had
    /// the pid before us (a replacement worker given its predecessor's pid): dead, so that
    /// its lock is taken over rather than waited for for ever.
    #[test]
    fn our_pid_with_another_start_time_is_a_dead_holder() {
        let (pid, tag) = process();
        assert!(holder_alive(pack(pid, 1, tag)), "this process");
        let other = if tag == 1 { 2 } else { 1 };
        // (Our start time unknown, /proc unreadable: nothing can be told apart.)
        if tag != 0 {
            assert!(
                !holder_alive(pack(pid, 1, other)),
                "a predecessor with our pid"
            );
        }
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
    fn dead_and_recycled_pids_are_not_alive() {
        // pid 0 never holds a lock.
        assert!(!holder_alive(pack(0, 1, 0)));
        // pid 1 runs, but not with this start-time tag unless by a 2^-19 coincidence.
        let start = procfs::stat(1).unwrap().start_time;
        let tag = (start + 1) & TAG_MASK;
        assert!(!holder_alive(pack(1, 1, if tag == 0 { 1 } else { tag })));
        assert!(holder_alive(pack(1, 1, start & TAG_MASK)));
    }
}
