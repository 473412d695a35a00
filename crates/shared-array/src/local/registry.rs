//! The registry of every live [`LocalArray`](super::LocalArray)'s mapping and descriptor in this
//! process, and the `pthread_atfork` handlers that give a forked child private zeros in their place
//! (see [the module docs](super#why-its-slices-are-sound-although-it-lives-in-map_shared-memory)).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

use multiproc_core::{Result, SharedBuffer};
use multiproc_sys::once::PerProcess;
use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};

use crate::ShmBuffer;

/// Set in the lock word while a fork holds the lock (from the prepare handler to the parent
/// or child handler).
const FORKING: u64 = 1 << 63;

/// The lock word of the holder: `pid | tid << 32` of the calling thread (never 0).
///
/// The id comes from `getpid`, not from `multiproc_sys::process::current_pid`'s cache: the
/// fork handlers call this, and in a process that has not asked for it yet, the cache would
/// register a `pthread_atfork` handler from inside a fork's prepare handler (glibc before
/// 2.34 and musl then deadlock on their atfork lock; later glibc skips that handler's child
/// half, and the child would keep its parent's id for good).
fn me() -> u64 {
    let pid = std::process::id();
    let tid = multiproc_sys::thread::gettid() as u32;
    u64::from(pid) | u64::from(tid) << 32
}

fn pid_of(word: u64) -> u32 {
    word as u32
}

/// The ranges `(address, length)` of every live [`LocalArray`](super::LocalArray)'s mapping in this
/// process, with the number of the memfd descriptor behind each.
struct Registry {
    /// 0 when free; otherwise the holder's [`me`], plus [`FORKING`] when a fork holds it.
    lock: AtomicU64,
    ranges: UnsafeCell<Vec<Registered>>,
}

/// One live [`LocalArray`](super::LocalArray): its mapping and its descriptor's number.
#[derive(Clone, Copy)]
pub(super) struct Registered {
    pub(super) addr: usize,
    len: usize,
    fd: std::os::fd::RawFd,
}

// SAFETY: `ranges` is only accessed while `lock` is held (by `Held`, or by the fork handlers
// between prepare and parent/child), which makes those accesses mutually exclusive.
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry {
    lock: AtomicU64::new(0),
    ranges: UnsafeCell::new(Vec::new()),
};

/// Whether this process's fork handlers are installed (once per process; not a
/// `std::sync::Once`, which a fork could leave "running" for ever in the child: see
/// [`PerProcess`]).
static HANDLERS: PerProcess = PerProcess::new();

/// Installs the fork handlers once per process (before the first range is registered).
///
/// A child forked while a thread of its parent was installing them installs them again; the
/// handlers may then run twice per fork, which they tolerate.
///
/// Errors: `pthread_atfork` failed (out of memory) — [`Error::Io`](multiproc_core::Error::Io).
pub(super) fn ensure_handlers() -> Result<()> {
    loop {
        let mut failed = None;
        let installed = HANDLERS.ensure(|| {
            // SAFETY: the three handlers are `extern "C"` functions that cannot unwind and
            // live for the whole program; they only use atomics, the registry under its lock
            // (taken by `prepare` in the forking thread itself, so the child's copy is never
            // held by a thread that is gone) and raw system calls that are async-signal-safe.
            match unsafe {
                multiproc_sys::atfork::register(Some(prepare), Some(parent), Some(child))
            } {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        });
        if installed {
            return Ok(());
        }
        if let Some(e) = failed {
            // ENOMEM: without the handlers a LocalArray would not be fork-proof.
            return Err(multiproc_core::Error::Io(e));
        }
        // Another thread of this process is installing them: they are needed before the
        // first range is registered, so wait for it (it takes microseconds).
        std::hint::spin_loop();
        std::thread::yield_now();
    }
}

/// The registry lock, held.
pub(super) struct Held;

impl Held {
    pub(super) fn acquire() -> Held {
        let me = me();
        loop {
            match REGISTRY.lock.compare_exchange(0, me, Acquire, Relaxed) {
                Ok(_) => return Held,
                Err(holder) if pid_of(holder) != pid_of(me) => {
                    // Held by a thread of another process: this process is a child forked
                    // while that thread held it and no prepare handler waited for it — which
                    // happens only before the handlers were installed, when the list had not
                    // been touched yet. That thread does not exist here: take the lock over.
                    if REGISTRY
                        .lock
                        .compare_exchange(holder, me, Acquire, Relaxed)
                        .is_ok()
                    {
                        return Held;
                    }
                }
                Err(_) => {
                    std::hint::spin_loop();
                    std::thread::yield_now();
                }
            }
        }
    }

    pub(super) fn ranges(&mut self) -> &mut Vec<Registered> {
        // SAFETY: the lock is held (by `self`, which is not Clone), so nothing else accesses
        // the list; the `&mut self` borrow makes this the only reference made through it.
        unsafe { &mut *REGISTRY.ranges.get() }
    }

    pub(super) fn register(&mut self, buf: &ShmBuffer) {
        self.ranges().push(Registered {
            addr: buf.as_ptr() as usize,
            len: buf.map_len(),
            fd: std::os::fd::AsRawFd::as_raw_fd(&buf.fd()),
        });
    }

    pub(super) fn deregister(&mut self, buf: &ShmBuffer) {
        let addr = buf.as_ptr() as usize;
        let ranges = self.ranges();
        if let Some(i) = ranges.iter().position(|r| r.addr == addr) {
            ranges.swap_remove(i);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        REGISTRY.lock.store(0, Release);
    }
}

/// `pthread_atfork` prepare handler: takes the registry lock for the fork.
extern "C" fn prepare() {
    let mine = me() | FORKING;
    loop {
        match REGISTRY.lock.compare_exchange(0, mine, Acquire, Relaxed) {
            Ok(_) => return,
            // Installed twice (see `ensure_handlers`): this fork already holds it.
            Err(holder) if holder == mine => return,
            Err(holder) if pid_of(holder) != pid_of(mine) => {
                // A stale holder inherited from our parent (see `Held::acquire`).
                if REGISTRY
                    .lock
                    .compare_exchange(holder, mine, Acquire, Relaxed)
                    .is_ok()
                {
                    return;
                }
            }
            // Another thread of this process holds it for a short critical section.
            Err(_) => {
                std::hint::spin_loop();
                std::thread::yield_now();
            }
        }
    }
}

/// `pthread_atfork` parent handler: releases the lock the prepare handler took.
extern "C" fn parent() {
    let mine = me() | FORKING;
    let _ = REGISTRY.lock.compare_exchange(mine, 0, Release, Relaxed);
}

/// `pthread_atfork` child handler: replaces every registered mapping with a private
/// zero-filled one at the same address, and every registered descriptor with one of an empty
/// memfd of the child's own (`dup3` over the same number, so the child's copy of the
/// `LocalArray` still owns exactly that number, and closing it on drop closes nothing else),
/// then releases the lock.
extern "C" fn child() {
    let held = REGISTRY.lock.load(Acquire);
    if held & FORKING == 0 {
        return; // already done (handlers installed twice), or not our fork sequence
    }
    // SAFETY: the prepare handler took the lock in the parent before the fork, so the list is
    // consistent, and this child has one thread: nothing else accesses it.
    let ranges = unsafe { &*REGISTRY.ranges.get() };
    if !ranges.is_empty() {
        detach_descriptors(ranges);
    }
    for &Registered { addr, len, .. } in ranges.iter() {
        let (Some(addr), Some(len)) = (
            std::num::NonZeroUsize::new(addr),
            std::num::NonZeroUsize::new(len),
        ) else {
            continue;
        };
        // SAFETY: `addr..addr + len` is exactly a mapping this process inherited from a live
        // LocalArray of the parent; replacing it (MAP_FIXED) with private anonymous memory
        // keeps every inherited reference into it valid (mapped, initialised to zeros, same
        // size) while cutting it off from the shared memory. Nothing else lives in that range.
        let placed = unsafe {
            mmap_anonymous(
                Some(addr),
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED,
            )
        };
        if placed.is_err() {
            detach_failed();
        }
    }
    REGISTRY.lock.store(0, Release);
}

/// In a forked child: points every registered descriptor number at a fresh, empty memfd of the
/// child's own, so that nothing in the child (`/proc/self/fd/N`, `mmap`/`pread` on the raw
/// number) reaches the memory the parent holds as `&mut [T]`. Async-signal-safe: system calls
/// only.
fn detach_descriptors(ranges: &[Registered]) {
    let Ok(spare) = multiproc_sys::memfd::create(c"multiproc-local-detached") else {
        detach_failed()
    };
    let empty = std::os::fd::AsRawFd::as_raw_fd(&spare);
    for r in ranges {
        // `dup3` atomically closes the inherited memfd at `r.fd` and puts the empty one there
        // (close-on-exec, like the original). The number stays owned by the child's copy of
        // the LocalArray's buffer — the only owner of it in this process — so no other
        // descriptor is touched. (Closing it instead would let the number be reused while that
        // copy still owns it.)
        if nix::unistd::dup3(empty, r.fd, nix::fcntl::OFlag::O_CLOEXEC).is_err() {
            detach_failed();
        }
    }
    drop(spare); // the spare number; every registered number now refers to the empty memfd
}

/// Continuing would leave the child sharing memory the parent treats as its own: abort.
fn detach_failed() -> ! {
    let msg = b"multiproc-shared-array: cannot detach a LocalArray in a forked child\n";
    // SAFETY: fd 2 is only borrowed for this one write.
    let stderr = unsafe { std::os::fd::BorrowedFd::borrow_raw(2) };
    let _ = nix::unistd::write(stderr, msg);
    std::process::abort();
}
