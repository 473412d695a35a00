//! [`Array`] and its [`ArrayGuard`]: Python's `multiprocessing.Array`, a [`RawArray`] under a
//! process-shared lock.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;
use multiproc_core::{Error, Lock, LockError, LockResult, Result};

use super::copy::rename_buf;
use super::raw::RawArray;
#[cfg(feature = "ndarray")]
use super::raw::{view_mut_of, view_of};
use crate::sync::ProcessRLock;
use crate::ShmBuffer;

// Array
// ----------------------------------------------------------------------------------------------

/// An array of `T` in shared memory guarded by a process-shared re-entrant lock (Python's
/// `multiprocessing.Array` with `lock=True`).
///
/// [`lock`](Self::lock) returns an [`ArrayGuard`] that derefs to `[T]` and makes ndarray
/// views; [`get`](Self::get), [`set`](Self::set) and [`to_vec`](Self::to_vec) take the lock for
/// one call, as Python's item access does.
///
/// The guard's slice is a **private copy** of the elements, taken (with atomic loads) when the
/// lock is acquired and written back (with atomic stores, only if it was borrowed mutably)
/// before the lock is released. Holding the lock, nobody else who follows the lock changes the
/// elements meanwhile, so the copy behaves exactly like the shared elements themselves — and
/// since the slice never points into shared memory, nothing another process does (even one
/// forked while the guard lived, which got a copy of every reference) can race with it. The
/// price is an `O(len)` copy per guard: `Array` is for the small, lock-protected data Python
/// uses it for; large arrays go in a [`RawArray`].
///
/// ```
/// use multiproc_shared_array::Array;
///
/// let a = Array::<i32>::zeros(4)?;
/// {
///     let mut g = a.lock()?;
///     g[0] = 7;
///     g[1..].fill(1);
/// } // written back and unlocked here
/// assert_eq!(a.to_vec()?, vec![7, 1, 1, 1]);
/// # Ok::<(), multiproc_core::Error>(())
/// ```
///
/// A guard cannot leave the thread (or be captured by a fork closure) — the lock belongs to
/// the thread that took it:
///
/// ```compile_fail
/// fn fork_like<F: FnOnce() + Send>(_: F) {}
/// let a = multiproc_shared_array::Array::<i32>::zeros(4)?;
/// let g = a.lock()?;
/// fork_like(move || drop(g));
/// # Ok::<(), multiproc_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Array<T: Pod> {
    pub(super) data: RawArray<T>,
    pub(super) lock: ProcessRLock,
}

impl<T: Pod> Array<T> {
    /// `len` zeroed elements (see [`RawArray::zeros`] for the errors).
    pub fn zeros(len: usize) -> Result<Self> {
        Self::with(RawArray::zeros(len)?)
    }

    /// A copy of `values` (not empty).
    pub fn from_slice(values: &[T]) -> Result<Self> {
        Self::with(RawArray::from_slice(values)?)
    }

    /// The elements of `iter` (at least one).
    #[allow(clippy::should_implement_trait)] // fallible, unlike FromIterator
    pub fn from_iter(iter: impl IntoIterator<Item = T>) -> Result<Self> {
        Self::with(RawArray::from_iter(iter)?)
    }

    fn with(data: RawArray<T>) -> Result<Self> {
        Ok(Array {
            data,
            lock: ProcessRLock::new()?,
        })
    }

    /// An `Array` made of its two parts: the elements and the lock that guards them (for
    /// example both received from another process, or a `RawArray` that from now on should be
    /// used under a lock). Every process should use the same pair.
    pub fn from_parts(data: RawArray<T>, lock: ProcessRLock) -> Self {
        Array { data, lock }
    }

    /// Attaches to an `Array` whose buffers were received from another process
    /// ([`recv_buffer`](crate::recv_buffer)): `data` holds `len` elements, `lock` the
    /// [`ProcessRLock`] (see [`into_parts`](Self::into_parts) and the `buffer()` methods).
    ///
    /// Errors: `len` does not fit `data` (naming `len`); `data` is accessed in another width
    /// than `T`'s (naming `data`, see [`RawArray::from_buffer`]); `lock` does not hold an
    /// RLock (naming `buffer`).
    pub fn from_buffer(data: ShmBuffer, len: usize, lock: ShmBuffer) -> Result<Self> {
        Ok(Array {
            data: RawArray::from_buffer(data, len).map_err(|e| rename_buf(e, "data"))?,
            lock: ProcessRLock::from_buffer(lock)?,
        })
    }

    /// The two parts, to send them or to use the elements without the lock.
    pub fn into_parts(self) -> (RawArray<T>, ProcessRLock) {
        (self.data, self.lock)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len
    }

    /// Always `false`: shared arrays have at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The lock (Python's `get_lock()`). Holding it excludes other processes' guards; its
    /// `release` refuses to give up a hold that belongs to a live [`ArrayGuard`].
    pub fn get_lock(&self) -> &ProcessRLock {
        &self.lock
    }

    /// The elements without the lock (Python's `get_obj()`): atomic access only, as for any
    /// [`RawArray`]. Using it while others follow the lock is up to you.
    pub fn get_obj(&self) -> &RawArray<T> {
        &self.data
    }

    /// Takes the lock and returns a guard giving access to (a private copy of) the elements.
    ///
    /// Errors:
    /// - [`LockError::OwnerDied`]`(guard)` — a process died holding the lock. The caller holds
    ///   it now, *through the guard*, which it gets with the error: the elements may be
    ///   half-written, so look at them (and repair them) through the guard; the lock is
    ///   released when the guard drops, whatever the caller does. `?` into a
    ///   [`multiproc_core::Error`] gives [`Error::OwnerDied`] and drops the guard (the lock is
    ///   released).
    /// - [`LockError::Other`]: a second guard in a thread that already has one is
    ///   [`Error::InvalidArgument`] naming `self` (its copy would not see the first guard's
    ///   changes).
    ///
    /// Recovering from a holder that died — here a forked child that exits holding the lock:
    ///
    /// ```
    /// use multiproc_core::{Lock, LockError};
    /// use multiproc_shared_array::Array;
    ///
    /// let a = Array::<u32>::from_slice(&[1, 2, 3])?;
    /// // SAFETY: the child only takes the lock (atomics in shared memory) and `_exit`s.
    /// match unsafe { nix::unistd::fork() }.expect("fork") {
    ///     nix::unistd::ForkResult::Child => {
    ///         a.get_lock().acquire().ok();
    ///         // SAFETY: ends the child at once, holding the lock.
    ///         unsafe { libc::_exit(0) }
    ///     }
    ///     nix::unistd::ForkResult::Parent { child } => {
    ///         nix::sys::wait::waitpid(child, None).expect("waitpid");
    ///     }
    /// }
    /// let mut guard = match a.lock() {
    ///     Ok(guard) => guard,
    ///     Err(LockError::OwnerDied(mut guard)) => {
    ///         guard.fill(0); // the dead holder may have left them half-written
    ///         guard
    ///     }
    ///     Err(other) => return Err(other.into()),
    /// };
    /// guard[0] = 7;
    /// drop(guard); // written back and released: every process can take the lock again
    /// assert_eq!(a.to_vec()?, [7, 0, 0]);
    /// # Ok::<(), multiproc_core::Error>(())
    /// ```
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        match self.lock.acquire() {
            Ok(()) => self.guard().map_err(LockError::Other),
            Err(Error::OwnerDied) => match self.guard() {
                Ok(guard) => Err(LockError::OwnerDied(guard)),
                Err(e) => Err(LockError::Other(e)),
            },
            Err(e) => Err(LockError::Other(e)),
        }
    }

    /// [`lock`](Self::lock) with a timeout: `Ok(None)` if the lock was not free in time.
    /// An owner that died is reported as by `lock`, with the guard.
    #[allow(clippy::type_complexity)] // LockResult<Option<G>> would put the guard in an Option
    pub fn lock_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> std::result::Result<Option<ArrayGuard<'_, T>>, LockError<ArrayGuard<'_, T>>> {
        match self.lock.acquire_timeout(timeout) {
            Ok(false) => Ok(None),
            Ok(true) => self.guard().map(Some).map_err(LockError::Other),
            Err(Error::OwnerDied) => match self.guard() {
                Ok(guard) => Err(LockError::OwnerDied(guard)),
                Err(e) => Err(LockError::Other(e)),
            },
            Err(e) => Err(LockError::Other(e)),
        }
    }

    /// Pins the hold just acquired (one guard per thread), releasing it on failure.
    fn pin(&self) -> Result<()> {
        if let Err(e) = self.lock.pin() {
            let _ = self.lock.release();
            return Err(e);
        }
        Ok(())
    }

    fn guard(&self) -> Result<ArrayGuard<'_, T>> {
        self.pin()?;
        Ok(ArrayGuard {
            local: self.data.to_vec(),
            array: self,
            dirty: false,
            _not_send: PhantomData,
        })
    }

    /// Runs `f` holding the lock (pinned, like a guard, but without copying the elements).
    ///
    /// A holder that died: `f` does not run, the hold taken over is released again (so the
    /// lock is free for everyone), and the result is [`Error::OwnerDied`].
    fn under_lock<R>(&self, f: impl FnOnce(&RawArray<T>) -> R) -> Result<R> {
        if let Err(e) = self.lock.acquire() {
            if matches!(e, Error::OwnerDied) {
                let _ = self.lock.release();
            }
            return Err(e);
        }
        self.pin()?;
        let r = f(&self.data);
        self.lock.unpin_release();
        Ok(r)
    }

    /// Element `index`, under the lock. Out of bounds names `index`; a guard of this array
    /// held by the calling thread is an error naming `self` (read through the guard).
    ///
    /// [`Error::OwnerDied`]: a process died holding the lock; nothing was read, and the lock
    /// is free again (a retry reads; [`lock`](Self::lock) hands over a guard to inspect or
    /// repair the elements first). The same holds for [`set`](Self::set) (nothing written)
    /// and [`to_vec`](Self::to_vec).
    pub fn get(&self, index: usize) -> Result<T> {
        self.under_lock(|data| data.load(index))?
    }

    /// Sets element `index`, under the lock. Out of bounds names `index`; a guard of this
    /// array held by the calling thread is an error naming `self` (write through the guard).
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        self.under_lock(|data| data.store(index, value))?
    }

    /// A copy of all elements, under the lock.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.under_lock(RawArray::to_vec)
    }
}

/// Access to an [`Array`]'s elements while holding its lock; writes back and releases on
/// drop.
///
/// Derefs to `[T]` — a private copy of the elements taken when the lock was acquired, written
/// back when the guard drops if it was borrowed mutably (see [`Array`] for why);
/// [`view`](Self::view) / [`view_mut`](Self::view_mut) make ndarray views. Not `Send`: the lock
/// belongs to the thread that took it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod> {
    array: &'a Array<T>,
    local: Vec<T>,
    dirty: bool,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> std::fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("len", &self.local.len())
            .field("dirty", &self.dirty)
            .finish()
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.local
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.dirty = true;
        &mut self.local
    }
}

#[cfg(feature = "ndarray")]
impl<T: Pod> ArrayGuard<'_, T> {
    /// An ndarray view of the locked elements (shape checked, naming `shape`).
    pub fn view<D: ndarray::Dimension>(
        &self,
        shape: impl ndarray::IntoDimension<Dim = D>,
    ) -> Result<ndarray::ArrayView<'_, T, D>> {
        view_of(self, shape)
    }

    /// A mutable ndarray view of the locked elements (shape checked, naming `shape`).
    pub fn view_mut<D: ndarray::Dimension>(
        &mut self,
        shape: impl ndarray::IntoDimension<Dim = D>,
    ) -> Result<ndarray::ArrayViewMut<'_, T, D>> {
        view_mut_of(self, shape)
    }
}

impl<T: Pod> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        if self.dirty {
            let _ = self.array.data.write_range(0, &self.local);
        }
        self.array.lock.unpin_release();
    }
}

// ----------------------------------------------------------------------------------------------
