//! Typed shared arrays: [`RawArray`] (shared, unsynchronised, atomic element access),
//! [`Array`] (under a process-shared lock) and [`Value`] (one value under a lock, with atomics
//! for integers). Their siblings [`LocalArray`](crate::LocalArray) (not shared yet: plain
//! slices) and [`FrozenArray`](crate::FrozenArray) (shared and immutable: plain slices) live in
//! their own modules.
//!
//! # Soundness across processes
//!
//! Rust's rules say that while a `&[T]` lives nobody writes the elements, and while a
//! `&mut [T]` lives nobody else reads or writes them. Shared memory is reachable from other
//! processes, which the borrow checker cannot see — and in this workspace a process can be
//! created by *safe* code: `multiproc_fork::Process::start` runs any `FnOnce() + Send`
//! closure (capturing, even borrowing) in a forked child, and `ForkPool::new` forks workers
//! that reach `static`s. A fork duplicates *everything*: every handle, every reference the
//! closure captured, every static. So no safe API of this crate may rely on "I am the only
//! handle" for memory that a forked or receiving process maps shared. Each kind of access has
//! its own argument instead:
//!
//! | access | why it is sound, whatever other processes do |
//! |---|---|
//! | [`RawArray`]: [`load`](RawArray::load), [`store`](RawArray::store), [`read_range`](RawArray::read_range), [`write_range`](RawArray::write_range), [`fill`](RawArray::fill), [`to_vec`](RawArray::to_vec) | element words are copied with atomic loads and stores; no reference into shared memory is ever made, so any number of threads and processes may do this at once (a race gives torn *values* for elements wider than a word, never UB) |
//! | [`Array::lock`] → [`ArrayGuard`] (`&mut [T]`, views) | the guard holds the array's process-shared lock, and the slice it lends is a *private copy* made with atomic loads, written back with atomic stores when the guard drops: the reference never points into shared memory, so a forked child that captured it writes its own copy-on-write memory |
//! | [`Value`] | only copies in and out (atomically), and real atomics for integers |
//! | [`LocalArray`](crate::LocalArray): `&[T]`, `&mut [T]`, views | not shared yet: it is `!Send + !Sync` (no closure handed to a fork, no `static` can hold it or a reference to it), its descriptor is never exposed, and a child forked while it exists gets a private zero-filled mapping at its address instead of the shared one — so even a slice borrowed from it and captured by a fork closure points at the child's own memory |
//! | [`FrozenArray`](crate::FrozenArray): `&[T]`, views | the memfd is sealed with `F_SEAL_WRITE`, which the kernel grants only when no process maps it writably and which forbids every later write (mapping, `write(2)`, hole punching, resizing): the bytes can never change again |
//! | `unsafe` [`RawArray::slice_unchecked`], [`slice_mut_unchecked`](RawArray::slice_mut_unchecked), [`view_unchecked`](RawArray::view_unchecked), [`view_mut_unchecked`](RawArray::view_mut_unchecked) | the caller's proof, per the `# Safety` sections: zero-copy access for code that knows which process writes what and when |
//!
//! The [`SharedBuffer`](multiproc_core::SharedBuffer) byte API of [`ShmBuffer`](crate::ShmBuffer)
//! is atomic too. The process-shared locks are atomics in shared memory.
//!
//! Atomics are sound under races only when the racing accesses have the same size, so each region
//! of shared memory is accessed in one [`AccessWidth`](multiproc_core::AccessWidth), recorded in
//! the memory itself and fixed by its first typed view: a `RawArray<T>` uses its element's atomic
//! unit (its alignment, at most 8 bytes), and viewing the same memory in another width — a
//! `RawArray<u8>` of a `RawArray<u64>`'s buffer, the byte API on a `Value<u64>`'s cell or a lock's
//! buffer — is refused with [`Error::InvalidArgument`](multiproc_core::Error::InvalidArgument).
//!
//! Deserialized handles (a spawned worker's arguments, see [`multiproc_core::handoff`]) are
//! the same types under the same rules: a deserialized `RawArray` is, by construction, a second
//! process's handle, and it offers exactly the atomic access above.

mod checks;
mod copy;
mod handoff;
mod locked;
mod raw;
mod value;

pub use locked::{Array, ArrayGuard};
pub use raw::RawArray;
pub use value::{Value, ValueGuard};

pub(crate) use checks::bytes_for;
pub(crate) use handoff::{wire_len, ElemType};
pub(crate) use raw::raw_from_parts;
#[cfg(feature = "ndarray")]
pub(crate) use raw::{view_mut_of, view_of};

#[cfg(test)]
mod tests;
