//! [`ProcessLocal`]: a value of this process's own, made on first use, that a forked child
//! never reads from its parent.
//!
//! A forked child inherits its parent's memory but none of its threads. State that names
//! threads (a service thread's channel, the idle threads kept for the next pool) is wrong in
//! the child, and a lock in it may have been held by a thread of the parent at the fork: the
//! child would wait for it forever. So such state is kept as a leaked record of the value
//! *and the pid that made it*, behind an atomic pointer. A process whose pid differs (a
//! forked child) makes a record of its own on first use and leaves the inherited one alone —
//! it is never read beyond its pid, never freed. There is no lock to inherit.
//!
//! What `thread_local!` is to threads, for processes. Not to be confused with
//! `multiproc_sys::once::PerProcess`, a registration made once and *inherited* by children.
//! A process is told from its ancestors by its pid alone: a descendant that received the
//! very pid of the ancestor that made a record (the pid space wrapped round while that
//! ancestor was dead and the lineage lived on) would take the record for its own, as the
//! pool's home check would take the pool.

use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use nix::unistd::{getpid, Pid};

/// One process's value and the pid of that process.
struct Record<T> {
    pid: Pid,
    value: T,
}

/// A value per process, made on first use and kept (leaked) for the life of the process.
/// Meant for a `static`.
pub(crate) struct ProcessLocal<T> {
    /// This process's record: from `Box::into_raw`, never freed. A forked child inherits its
    /// parent's (another pid) and installs its own.
    current: AtomicPtr<Record<T>>,
    /// Shared across threads as `&T`, and made on any of them.
    _value: PhantomData<T>,
}

impl<T> std::fmt::Debug for ProcessLocal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessLocal").finish_non_exhaustive()
    }
}

impl<T> ProcessLocal<T> {
    /// Nothing made yet.
    pub(crate) const fn new() -> Self {
        ProcessLocal {
            current: AtomicPtr::new(ptr::null_mut()),
            _value: PhantomData,
        }
    }

    /// This process's value, made by `make` if this process has none yet. If two threads
    /// make one at once, one value is kept and the other is dropped (by the thread that
    /// made it); `make`'s error is returned as it is, and nothing is kept.
    pub(crate) fn get_or_try_init<E>(&self, make: impl FnOnce() -> Result<T, E>) -> Result<&T, E> {
        let me = getpid();
        let seen = self.current.load(Ordering::Acquire);
        // SAFETY: every non-null pointer stored in `current` comes from `Box::into_raw` below
        // and is never freed, so it is valid for as long as `self`.
        if let Some(record) = unsafe { seen.as_ref() } {
            if record.pid == me {
                return Ok(&record.value);
            }
            // Our parent's, inherited through fork: left alone.
        }
        let ours = Box::into_raw(Box::new(Record {
            pid: me,
            value: make()?,
        }));
        match self
            .current
            .compare_exchange(seen, ours, Ordering::AcqRel, Ordering::Acquire)
        {
            // SAFETY: `ours` was just made by `Box::into_raw` and, now published, is never
            // freed.
            Ok(_) => Ok(unsafe { &(*ours).value }),
            Err(theirs) => {
                // Another thread of this process installed its record first (only this
                // process's threads write this memory): use that one.
                // SAFETY: `ours` came from `Box::into_raw` above and nobody else has seen it.
                drop(unsafe { Box::from_raw(ours) });
                // SAFETY: non-null (nothing stores null) and from `Box::into_raw`, never freed.
                Ok(unsafe { &(*theirs).value })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_value_is_made_once_process_local_and_a_forked_child_makes_its_own() {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        static VALUE: ProcessLocal<usize> = ProcessLocal::new();
        let make = || Ok::<_, ()>(MADE.fetch_add(1, Ordering::SeqCst));
        let first = *VALUE.get_or_try_init(make).unwrap();
        assert_eq!(*VALUE.get_or_try_init(make).unwrap(), first);
        assert_eq!(MADE.load(Ordering::SeqCst), first + 1, "made once here");
        // A failed `make` keeps nothing.
        static EMPTY: ProcessLocal<usize> = ProcessLocal::new();
        assert_eq!(EMPTY.get_or_try_init(|| Err("no")), Err("no"));
        assert_eq!(EMPTY.get_or_try_init(|| Ok::<_, ()>(7)), Ok(&7));
        // SAFETY: the child makes and reads its own values (glibc's fork handlers keep the
        // allocator usable in it) and leaves with `_exit`; it touches no lock another
        // thread may hold.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let mine = *VALUE.get_or_try_init(make).unwrap();
                let again = *VALUE.get_or_try_init(make).unwrap();
                // Its own value, made once, not the parent's.
                let code = i32::from(mine != first + 1 || again != mine);
                multiproc_sys::exit::exit_now(code)
            }
            ForkResult::Parent { child } => {
                assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
                // The parent's value is untouched by the child's.
                assert_eq!(*VALUE.get_or_try_init(make).unwrap(), first);
            }
        }
    }
}
