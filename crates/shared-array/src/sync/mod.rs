//! Process-shared synchronisation primitives that live in shared memory: [`ProcessLock`],
//! [`ProcessRLock`], [`ProcessEvent`], [`ProcessCondition`], [`ProcessSemaphore`] (also
//! bounded), [`ProcessBarrier`], and the family [`ProcessSync`].
//!
//! Each primitive owns a small [`ShmBuffer`](crate::ShmBuffer) holding its state. A forked child
//! inherits the mapping, so an `Arc<ProcessLock>` cloned into a child is the same lock; a spawned
//! process gets it as a serde value (every primitive is `Serialize + Deserialize` through
//! [`multiproc_core::handoff`]: a pool's argument, a `Pipe` message), or with
//! [`send_buffer`](crate::send_buffer) / [`recv_buffer`](crate::recv_buffer) and the primitive's
//! `from_buffer`. Their state is atomics only, of 32 and 64 bits at fixed offsets; the buffer's
//! [`AccessWidth`](multiproc_core::AccessWidth) is
//! [`Structured`](multiproc_core::AccessWidth::Structured) from creation on, so the generic byte
//! and word accessors of [`SharedBuffer`](multiproc_core::SharedBuffer) refuse it (a byte write
//! racing the lock word's 64-bit CAS would be undefined behaviour), and no typed array can be made
//! of it. `from_buffer` accepts only such a buffer, and checks a magic number and kind to catch
//! mix-ups.
//!
//! # The robust lock
//!
//! All locking rests on one 64-bit word per lock: 0 when free, otherwise the holder's `(pid, tid,
//! start-time tag)` plus a "sleepers" bit. Acquiring is one compare-and-swap (about 10 ns
//! uncontended); a contended acquirer spins briefly, then sleeps on a shared futex (the word's low
//! half) in slices of 50 ms. Each time a slice (or the caller's timeout) expires, it checks whether
//! the holder's process still runs: `/proc/<pid>/stat` missing, in state zombie, or with another
//! start time (the pid was recycled) means dead. The waiter then takes the lock over with one CAS
//! and gets [`Error::OwnerDied`](multiproc_core::Error::OwnerDied), holding the lock; the lock
//! keeps working as before (no `pthread_mutex_consistent` step).
//!
//! Why not `PTHREAD_MUTEX_ROBUST`? A pthread mutex belongs to a *thread*: only the locking
//! thread may unlock it (`EPERM` otherwise), and its death — even a plain thread exit in a live
//! process — marks it owner-dead. Python's `Lock` has no owner: any worker may release it (the
//! conformance suite checks exactly that), and a lock handed from one thread to another must
//! not be "stolen" when the first thread exits. A futex word with process-level liveness gives
//! both, and one implementation serves Lock and RLock (whose owner is `(pid, tid)`).
//! The price: death is noticed on a waiter's slice boundary (≤ 50 ms) instead of at once, and
//! liveness is judged by pid and start time within one pid namespace.

mod barrier;
mod condition;
mod event;
mod family;
mod layout;
mod lock;
mod rlock;
mod robust;
mod semaphore;

pub use barrier::ProcessBarrier;
pub use condition::ProcessCondition;
pub use event::ProcessEvent;
pub use family::ProcessSync;
pub use lock::ProcessLock;
pub use rlock::ProcessRLock;
pub use semaphore::ProcessSemaphore;

#[cfg(test)]
mod tests;
