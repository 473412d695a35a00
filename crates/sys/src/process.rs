//! This process's id, without a system call each time; and how many times it forked.

#[cfg(not(miri))]
use std::sync::atomic::{AtomicU32, Ordering};

#[cfg(not(miri))]
use crate::once::PerProcess;

/// The cached id (0: not known yet in this process).
#[cfg(not(miri))]
static PID: AtomicU32 = AtomicU32::new(0);
/// Whether [`forget`] is registered to run in every child of `fork`.
#[cfg(not(miri))]
static FORGET_IN_CHILDREN: PerProcess = PerProcess::new();

/// Run by `fork` in the child: the cached id is the parent's.
#[cfg(not(miri))]
extern "C" fn forget() {
    PID.store(0, Ordering::Relaxed);
}

/// This process's id, as [`std::process::id`] gives it, but from a cache after the first call
/// (`getpid` is a system call: about 0.1 µs here, on every pool `submit` that checks it runs
/// in its creating process). A `pthread_atfork` child handler clears the cache in every child
/// of `fork` (`nix::unistd::fork`, `libc::fork`, the fork backend), so a child asks the kernel
/// again. A child made by a raw `clone` system call, which runs no atfork handlers, would
/// read its parent's id: do not use multiproc in such a child (exec first).
pub fn current_pid() -> u32 {
    #[cfg(miri)]
    {
        std::process::id()
    }
    #[cfg(not(miri))]
    {
        let cached = PID.load(Ordering::Relaxed);
        if cached != 0 {
            return cached;
        }
        let pid = std::process::id();
        // Cached only once the handler that clears the cache in a forked child is in place
        // (until then — another thread registering it, or out of memory — ask each time).
        let forgotten_in_children = FORGET_IN_CHILDREN.ensure(|| {
            // SAFETY: `forget` only stores to an atomic (async-signal-safe), cannot unwind,
            // and is part of this executable for its whole life.
            unsafe { crate::atfork::register(None, None, Some(forget)) }.is_ok()
        });
        if forgotten_in_children {
            PID.store(pid, Ordering::Relaxed);
        }
        pid
    }
}

/// The forks counted so far ([`forks`]).
#[cfg(not(miri))]
static FORKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Whether [`count_fork`] is registered to run before every `fork`.
#[cfg(not(miri))]
static COUNT_FORKS: PerProcess = PerProcess::new();

/// Run by `fork` in the parent, before the fork.
#[cfg(not(miri))]
extern "C" fn count_fork() {
    FORKS.fetch_add(1, Ordering::SeqCst);
}

/// How many times this process has forked (`fork`: `nix::unistd::fork`, `libc::fork`, the
/// fork backend, and the forks of an inherited count in a parent) since the count started, at
/// the first call in this process or in a parent. Two calls that return the same number saw
/// no fork in between. `None` while the count cannot be kept (another thread is setting it up,
/// or out of memory): a caller must then assume a fork. A child made by a raw `clone`, or by
/// `vfork` or `posix_spawn` (which run no fork handlers), is not counted; those run another
/// program at once, without this process's memory.
pub fn forks() -> Option<u64> {
    #[cfg(miri)]
    {
        // Miri cannot fork.
        Some(0)
    }
    #[cfg(not(miri))]
    {
        let counting = COUNT_FORKS.ensure(|| {
            // SAFETY: `count_fork` only adds to an atomic, cannot unwind, and is part of this
            // executable for its whole life; it runs in the parent, where any code may run.
            unsafe { crate::atfork::register(Some(count_fork), None, None) }.is_ok()
        });
        counting.then(|| FORKS.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::{current_pid, forks};

    #[test]
    fn every_fork_is_counted() {
        let before = forks().expect("counting");
        assert_eq!(forks(), Some(before), "no fork between");
        // SAFETY: the child only leaves with `_exit`.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => crate::exit::exit_now(0),
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
            }
        }
        assert!(forks().unwrap() > before, "a fork not counted");
    }

    #[test]
    fn the_cached_id_is_this_process_s_and_a_forked_child_s_is_its_own() {
        assert_eq!(current_pid(), std::process::id());
        assert_eq!(current_pid(), std::process::id());
        // SAFETY: the child only compares two ids (an atomic load and `getpid`) and leaves
        // with `_exit`, touching no lock another thread may hold.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let ok = current_pid() == std::process::id();
                crate::exit::exit_now(if ok { 0 } else { 1 })
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(
                    status,
                    nix::sys::wait::WaitStatus::Exited(child, 0),
                    "the child read its parent's id"
                );
            }
        }
    }
}
