//! [`LocalArray`]: shared memory that is not shared yet — plain slices and views, then
//! [`share`](LocalArray::share) (or [`freeze`](LocalArray::freeze)) without a copy.
//!
//! # Why its slices are sound although it lives in `MAP_SHARED` memory
//!
//! Safe code in this workspace can fork (`multiproc_fork::Process::start` runs any
//! `FnOnce() + Send` closure, borrowing allowed, in a child; `ForkPool::new` forks workers that
//! read `static`s), and a fork duplicates everything. What a forked child can *name* is: what its closure captured
//! (which is `Send`), `static`s (which are `Sync`), and the thread-locals of the thread that
//! forked. So:
//!
//! 1. `LocalArray` is `!Send + !Sync`: no closure handed to a fork can capture it or a
//!    reference to it, no `static` can hold it. A child cannot reach the *handle*.
//! 2. Its descriptor is never exposed (no `buffer()`, no `fd()`, no `Serialize`), so no other
//!    process can map the memory by being sent it.
//! 3. What a closure *can* capture is a slice or view borrowed from it (`&[T]`, `&mut [T]` and
//!    ndarray views are `Send`). For those, every live `LocalArray`'s mapping is registered in
//!    a process-wide list, and a `pthread_atfork` child handler replaces each registered range
//!    in the child — before `fork` returns there — with a private, zero-filled mapping at the
//!    same address. A reference the child inherited still points at valid, initialised
//!    memory, but it is the child's own: the parent's exclusive slices cannot race with it.
//!    The same handler puts an empty memfd of the child's own over each registered
//!    *descriptor* number (`dup3`), so nothing in the child — `/proc/self/fd/N`, a raw-fd
//!    `mmap` or `pread` — reaches the parent's memory either.
//!    The list is changed only under a lock that the atfork prepare handler holds across the
//!    fork, so a child never sees it half-updated, and a mapping is created and registered (or
//!    deregistered and unmapped, or deregistered and handed to a [`RawArray`]) in one step
//!    under that lock.
//!
//! A child therefore sees a `LocalArray`'s elements as **zeros**, and its writes to them stay
//! in the child. Share the array (turn it into a [`RawArray`]) *before* forking when workers
//! should see it.
//!
//! What this does not cover: a fork that skips the `pthread_atfork` handlers (a raw `clone` or
//! `SYS_fork` system call: `unsafe` code), and opening *another* process's descriptors through
//! `/proc/<pid>/fd` (like `/proc/<pid>/mem`, outside what Rust's guarantees can cover). A fork
//! from a signal handler that interrupted this module's short critical section on the same
//! thread would wait forever for the lock (a hang, not unsoundness; forking in a signal
//! handler is hazardous for the same reason in libc itself).
//!
//! Cost: each fork swaps every live `LocalArray`'s mapping in the child, about 1.4 µs per
//! array on the development machine (`cargo bench -p multiproc-shared-array --bench arrays`,
//! measured before the descriptors were replaced too: that adds one `memfd_create` per fork
//! and one `dup3` per array).

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;
use multiproc_core::{Result, SharedBuffer};

use crate::array::{bytes_for, raw_from_parts, RawArray};
use crate::buffer::rename;
use crate::frozen::{FreezeError, FrozenArray};
use crate::ShmBuffer;

mod registry;
use registry::{ensure_handlers, Held};

/// An array of `T` in shared memory that **this thread owns alone**, with plain slices and
/// ndarray views; [`share`](Self::share) turns it into a [`RawArray`] for other processes (and
/// [`freeze`](Self::freeze) into a read-only [`FrozenArray`]), without copying a byte.
///
/// It is Python's "fill the `RawArray` with numpy before creating the pool", made sound: while
/// it is a `LocalArray`, nothing else can reach the memory (see the [module docs](self)); once
/// shared, it is reached only through atomic copies. Like a `Vec`, it derefs to `[T]`.
///
/// ```
/// use multiproc_shared_array::{LocalArray, RawArray};
///
/// let mut a = LocalArray::<f64>::zeros(8)?;
/// for (i, x) in a.iter_mut().enumerate() {
///     *x = (i * i) as f64;
/// }
/// a[7] = -1.0;
/// assert_eq!(a.iter().sum::<f64>(), 90.0);
/// # #[cfg(feature = "ndarray")]
/// assert_eq!(a.view((2, 4))?[[1, 2]], 36.0);
/// let shared: RawArray<f64> = a.share(); // no copy; workers may now be forked or sent it
/// assert_eq!(shared.load(6)?, 36.0);
/// # Ok::<(), multiproc_core::Error>(())
/// ```
///
/// A `LocalArray` cannot go where a forked child could reach it: not into a closure for a
/// (fork) process, not by reference, not into a `static`.
///
/// ```compile_fail
/// fn fork_like<F: FnOnce() + Send>(_: F) {}
/// let a = multiproc_shared_array::LocalArray::<f64>::zeros(4)?;
/// fork_like(move || drop(a));
/// # Ok::<(), multiproc_core::Error>(())
/// ```
///
/// ```compile_fail
/// fn fork_like<F: FnOnce() + Send>(_: F) {}
/// let a = multiproc_shared_array::LocalArray::<f64>::zeros(4)?;
/// fork_like(|| println!("{}", a[0]));
/// # Ok::<(), multiproc_core::Error>(())
/// ```
///
/// ```compile_fail
/// static DATA: multiproc_core::Inherited<multiproc_shared_array::LocalArray<f64>> =
///     multiproc_core::Inherited::new("DATA");
/// ```
///
/// ```compile_fail
/// static DATA: std::sync::Mutex<Option<multiproc_shared_array::LocalArray<f64>>> =
///     std::sync::Mutex::new(None);
/// ```
///
/// Nor can it be serialized (sent to a spawned process): share it first.
///
/// ```compile_fail
/// fn send_like<T: serde::Serialize>(_: &T) {}
/// let a = multiproc_shared_array::LocalArray::<f64>::zeros(4)?;
/// send_like(&a);
/// # Ok::<(), multiproc_core::Error>(())
/// ```
///
/// A *slice* of it can be captured by a fork closure (slices are `Send`); the child then sees
/// its own zero-filled private memory at that address, never the parent's elements.
pub struct LocalArray<T: Pod> {
    buf: std::mem::ManuallyDrop<ShmBuffer>,
    len: usize,
    /// The process that created it (a copy in another process can only exist through a
    /// handler-skipping fork, `unsafe` code; `share` and `freeze` refuse there).
    owner: u32,
    _not_send_sync: PhantomData<*mut T>,
}

impl<T: Pod> std::fmt::Debug for LocalArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalArray")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .finish()
    }
}

impl<T: Pod> LocalArray<T> {
    /// `len` zeroed elements. Touches no memory: pages appear when first written.
    ///
    /// Errors ([`Error::InvalidArgument`](multiproc_core::Error::InvalidArgument)): `len` is 0,
    /// or `len * size_of::<T>()` overflows or cannot be mapped (naming `len`); `T` is
    /// zero-sized (naming `T`).
    pub fn zeros(len: usize) -> Result<Self> {
        let bytes = bytes_for::<T>(len, "len")?;
        ensure_handlers()?;
        let mut held = Held::acquire();
        // Created and registered under the lock: no fork can copy an unregistered mapping.
        let buf = ShmBuffer::new(bytes)?;
        held.register(&buf);
        drop(held);
        Ok(LocalArray {
            buf: std::mem::ManuallyDrop::new(buf),
            len,
            owner: nix::unistd::getpid().as_raw() as u32,
            _not_send_sync: PhantomData,
        })
    }

    /// A copy of `values` (not empty: an error naming `values`).
    pub fn from_slice(values: &[T]) -> Result<Self> {
        if values.is_empty() {
            bytes_for::<T>(0, "values")?;
        }
        let mut a = Self::zeros(values.len()).map_err(|e| rename(e, "values"))?;
        a.copy_from_slice(values);
        Ok(a)
    }

    /// The elements of `iter` (at least one: an error naming `iter`).
    #[allow(clippy::should_implement_trait)] // fallible, unlike FromIterator
    pub fn from_iter(iter: impl IntoIterator<Item = T>) -> Result<Self> {
        let values: Vec<T> = iter.into_iter().collect();
        if values.is_empty() {
            bytes_for::<T>(0, "iter")?;
        }
        Self::from_slice(&values).map_err(|e| rename(e, "iter"))
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: shared arrays have at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: the mapping holds `len` initialised (zeroed or written) elements of a Pod
        // type, page-aligned, alive while `self` is borrowed. No other process can access it
        // (module docs: !Send + !Sync, descriptor never exposed, forked children get a private
        // mapping here), and `&self` excludes `&mut` access in this thread.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<T>(), self.len) }
    }

    /// The elements, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`; `&mut self` excludes every other access.
        unsafe { std::slice::from_raw_parts_mut(self.buf.as_ptr().cast::<T>(), self.len) }
    }

    fn check_owner(&self, what: &str) {
        let here = nix::unistd::getpid().as_raw() as u32;
        assert_eq!(
            here, self.owner,
            "LocalArray::{what} in process {here}, but the array belongs to process {}: a \
             forked copy (reachable only through unsafe code) cannot share memory its parent \
             treats as its own",
            self.owner
        );
    }

    /// Deregisters the mapping and gives the buffer back, with the registry lock still held.
    fn into_buffer_held(self) -> (ShmBuffer, Held) {
        let mut this = std::mem::ManuallyDrop::new(self);
        let mut held = Held::acquire();
        held.deregister(&this.buf);
        // SAFETY: `this` is never used or dropped again; the buffer is moved out once.
        let buf = unsafe { std::mem::ManuallyDrop::take(&mut this.buf) };
        (buf, held)
    }

    /// Shares the array: from now on other processes may reach it (forked after this call, or
    /// sent it), and it is accessed through [`RawArray`]'s atomic copies. No copy is made.
    ///
    /// Panics in a process other than the one that created it (possible only through `unsafe`
    /// code that forked without the `pthread_atfork` handlers).
    pub fn share(self) -> RawArray<T> {
        self.check_owner("share");
        let len = self.len;
        let (buf, held) = self.into_buffer_held();
        drop(held);
        raw_from_parts(buf, len)
    }

    /// Makes the array immutable and shared: a [`FrozenArray`] lends plain slices and views to
    /// every process, forever. No copy is made.
    ///
    /// No other process ever maps a `LocalArray` writably, with one short exception: a child
    /// forked a moment ago that has not yet run its fork handler (which swaps the inherited
    /// mapping for a private one before any of the child's own code runs). The kernel refuses
    /// the seal meanwhile, so this retries for up to [`FREEZE_PATIENCE`].
    ///
    /// Errors: the kernel still refused to seal the memory after that (a child stopped right
    /// after its fork, pages pinned by an ongoing I/O), named `self`; the array comes back
    /// inside the [`FreezeError`].
    ///
    /// Panics in a process other than the one that created it (see [`share`](Self::share)).
    pub fn freeze(self) -> std::result::Result<FrozenArray<T>, FreezeError<LocalArray<T>>> {
        self.check_owner("freeze");
        let (len, owner) = (self.len, self.owner);
        let start = std::time::Instant::now();
        let mut this = self;
        let mut pause = std::time::Duration::from_micros(20);
        loop {
            let (buf, mut held) = this.into_buffer_held();
            // Sealed under the registry lock: no fork can copy the writable mapping meanwhile.
            let failed = match FrozenArray::seal(buf, len) {
                Ok(frozen) => return Ok(frozen),
                Err(failed) => failed,
            };
            let Some(buf) = failed.buf else {
                return Err(FreezeError {
                    error: failed.error,
                    array: None,
                });
            };
            held.register(&buf);
            drop(held);
            this = LocalArray {
                buf: std::mem::ManuallyDrop::new(buf),
                len,
                owner,
                _not_send_sync: PhantomData,
            };
            if !failed.busy || start.elapsed() >= FREEZE_PATIENCE {
                return Err(FreezeError {
                    error: failed.error,
                    array: Some(this),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(10));
        }
    }
}

/// How long [`LocalArray::freeze`] waits for just-forked children to let go of the mapping.
pub const FREEZE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

impl<T: Pod> Deref for LocalArray<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Pod> DerefMut for LocalArray<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<T: Pod> AsRef<[T]> for LocalArray<T> {
    fn as_ref(&self) -> &[T] {
        self
    }
}

impl<T: Pod> AsMut<[T]> for LocalArray<T> {
    fn as_mut(&mut self) -> &mut [T] {
        self
    }
}

impl<T: Pod> From<LocalArray<T>> for RawArray<T> {
    fn from(local: LocalArray<T>) -> Self {
        local.share()
    }
}

#[cfg(feature = "ndarray")]
impl<T: Pod> LocalArray<T> {
    /// An ndarray view of any dimension, C order: `a.view((4, 4, 4))?`. The shape's element
    /// count must equal [`len`](Self::len) (an error naming `shape` otherwise).
    pub fn view<D: ndarray::Dimension>(
        &self,
        shape: impl ndarray::IntoDimension<Dim = D>,
    ) -> Result<ndarray::ArrayView<'_, T, D>> {
        crate::array::view_of(self.as_slice(), shape)
    }

    /// A mutable ndarray view, C order (see [`view`](Self::view)).
    pub fn view_mut<D: ndarray::Dimension>(
        &mut self,
        shape: impl ndarray::IntoDimension<Dim = D>,
    ) -> Result<ndarray::ArrayViewMut<'_, T, D>> {
        crate::array::view_mut_of(self.as_mut_slice(), shape)
    }
}

impl<T: Pod> Drop for LocalArray<T> {
    fn drop(&mut self) {
        let mut held = Held::acquire();
        held.deregister(&self.buf);
        // SAFETY: `self.buf` is dropped once, here, and never used again.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.buf) };
        drop(held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(addr: usize) -> bool {
        let mut held = Held::acquire();
        held.ranges().iter().any(|r| r.addr == addr)
    }

    #[test]
    fn live_arrays_are_registered_and_leave_the_registry_when_shared_frozen_or_dropped() {
        let a = LocalArray::<u64>::zeros(10).unwrap();
        let b = LocalArray::<u64>::from_slice(&[1, 2]).unwrap();
        let c = LocalArray::<u8>::from_iter(0..=255).unwrap();
        let (pa, pb, pc) = (
            a.as_ptr() as usize,
            b.as_ptr() as usize,
            c.as_ptr() as usize,
        );
        assert!(registered(pa) && registered(pb) && registered(pc));
        drop(a);
        assert!(!registered(pa));
        let shared = b.share();
        assert!(!registered(pb));
        assert_eq!(shared.to_vec(), [1, 2]);
        let frozen = c.freeze().unwrap();
        assert!(!registered(pc));
        assert_eq!(frozen[255], 255);
    }

    #[test]
    fn empty_inputs_name_their_argument() {
        use multiproc_core::Error;
        assert!(matches!(
            LocalArray::<u8>::from_slice(&[]),
            Err(Error::InvalidArgument { name: "values", .. })
        ));
        assert!(matches!(
            LocalArray::<u8>::from_iter(std::iter::empty()),
            Err(Error::InvalidArgument { name: "iter", .. })
        ));
        assert!(matches!(
            LocalArray::<u8>::zeros(0),
            Err(Error::InvalidArgument { name: "len", .. })
        ));
        assert!(matches!(
            LocalArray::<()>::zeros(3),
            Err(Error::InvalidArgument { name: "T", .. })
        ));
    }
}
