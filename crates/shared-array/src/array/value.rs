//! [`Value`] and its [`ValueGuard`]: Python's `multiprocessing.Value`, with atomics for
//! integers.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;
use multiproc_core::{Error, Lock, LockError, LockResult, Result};

use super::copy::rename_buf;
use super::raw::RawArray;
use crate::sync::ProcessRLock;
use crate::ShmBuffer;

// Value
// ----------------------------------------------------------------------------------------------

/// One `T` in shared memory with a process-shared re-entrant lock (Python's
/// `multiprocessing.Value`).
///
/// [`get`](Self::get) / [`set`](Self::set) take the lock (Python's `.value`);
/// [`lock`](Self::lock) returns a guard holding a copy that is written back when the guard
/// drops (`with v.get_lock(): v.value += 1` is `*v.lock()? += 1`). For integer types,
/// [`atomic`](Value::<u64>::atomic) gives the std atomic (`fetch_add`, `compare_exchange`, ...)
/// on the same memory, without the lock: don't mix the two disciplines on one value, or
/// updates are lost (never memory safety: every access is atomic).
///
/// ```
/// use multiproc_shared_array::Value;
///
/// let v = Value::new(40_u64)?;
/// *v.lock()? += 1;
/// v.atomic().fetch_add(1, std::sync::atomic::Ordering::SeqCst);
/// assert_eq!(v.get()?, 42);
/// # Ok::<(), multiproc_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Value<T: Pod> {
    pub(super) cell: RawArray<T>,
    pub(super) lock: ProcessRLock,
}

impl<T: Pod> Value<T> {
    /// A shared value starting at `value` (`T` must not be zero-sized).
    pub fn new(value: T) -> Result<Self> {
        Ok(Value {
            cell: RawArray::from_slice(std::slice::from_ref(&value))?,
            lock: ProcessRLock::new()?,
        })
    }

    /// A shared value starting at zero.
    pub fn zeroed() -> Result<Self> {
        Self::new(T::zeroed())
    }

    /// A `Value` made of its two parts: a one-element array holding the value, and its lock
    /// (for example both received from another process).
    ///
    /// Errors: `cell` does not have exactly one element (naming `cell`).
    pub fn from_parts(cell: RawArray<T>, lock: ProcessRLock) -> Result<Self> {
        if cell.len() != 1 {
            return Err(Error::invalid(
                "cell",
                format!("a Value holds 1 element; this array has {}", cell.len()),
            ));
        }
        Ok(Value { cell, lock })
    }

    /// Attaches to a `Value` whose buffers were received from another process
    /// ([`recv_buffer`](crate::recv_buffer)): `cell` holds the value, `lock` the
    /// [`ProcessRLock`] (see [`into_parts`](Self::into_parts)).
    ///
    /// Errors: `cell` is too small for a `T` (naming `len`) or accessed in another width than
    /// `T`'s (naming `cell`, see [`RawArray::from_buffer`]); `lock` does not hold an RLock
    /// (naming `buffer`).
    pub fn from_buffer(cell: ShmBuffer, lock: ShmBuffer) -> Result<Self> {
        Ok(Value {
            cell: RawArray::from_buffer(cell, 1).map_err(|e| rename_buf(e, "cell"))?,
            lock: ProcessRLock::from_buffer(lock)?,
        })
    }

    /// The two parts, to send them elsewhere.
    pub fn into_parts(self) -> (RawArray<T>, ProcessRLock) {
        (self.cell, self.lock)
    }

    /// The lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &ProcessRLock {
        &self.lock
    }

    /// The value, read under the lock. A guard of this value held by the calling thread is
    /// an error naming `self` (read through the guard: its copy may have changed).
    ///
    /// [`Error::OwnerDied`]: a process died holding the lock; nothing was read and the lock
    /// is free again (a retry reads; [`lock`](Self::lock) hands over a guard to inspect the
    /// value first).
    pub fn get(&self) -> Result<T> {
        Ok(*self.lock()?)
    }

    /// Sets the value under the lock. [`Error::OwnerDied`]: as for [`get`](Self::get), and
    /// nothing was written; a guard of this value held by the calling thread is an error
    /// naming `self` (write through the guard, which would overwrite this when it drops).
    pub fn set(&self, value: T) -> Result<()> {
        *self.lock()? = value;
        Ok(())
    }

    /// Takes the lock and returns a guard holding a copy of the value; the copy is written
    /// back (atomically, if it was borrowed mutably) and the lock released when the guard
    /// drops.
    ///
    /// [`LockError::OwnerDied`]`(guard)`: a process died holding the lock; the caller holds it
    /// now, through the guard it gets with the error, and the lock is released when that
    /// guard drops — whether the caller recovers ([`LockError::recover`]) or propagates the
    /// error with `?` (which gives [`Error::OwnerDied`]). [`LockError::Other`]: a second guard
    /// in a thread that already has one is [`Error::InvalidArgument`] naming `self` (its copy
    /// would not see the first guard's changes).
    ///
    /// ```
    /// use multiproc_core::LockError;
    /// use multiproc_shared_array::Value;
    ///
    /// let v = Value::new(1_u64)?;
    /// // Whoever held the lock before may have died: accept the value as it is.
    /// let mut g = v.lock().or_else(LockError::recover)?;
    /// *g += 1;
    /// drop(g);
    /// assert_eq!(v.get()?, 2);
    /// # Ok::<(), multiproc_core::Error>(())
    /// ```
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        let died = match self.lock.acquire() {
            Ok(()) => false,
            Err(Error::OwnerDied) => true,
            Err(e) => return Err(LockError::Other(e)),
        };
        // One guard per thread, as for an `Array`: a second one's copy would not see the
        // first's changes (nor would `get`, which takes a guard).
        if let Err(e) = self.lock.pin() {
            let _ = self.lock.release();
            return Err(LockError::Other(e));
        }
        let guard = ValueGuard {
            local: self.cell.load(0).expect("index 0 exists"),
            value: self,
            dirty: false,
            _not_send: PhantomData,
        };
        if died {
            Err(LockError::OwnerDied(guard))
        } else {
            Ok(guard)
        }
    }
}

impl<T: Pod> Value<T> {
    /// The one-element array holding the value (for [`try_clone`](Value::try_clone)).
    pub(crate) fn cell(&self) -> &RawArray<T> {
        &self.cell
    }
}

/// A locked [`Value`]: derefs to a local copy, written back on drop. Not `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: Pod> {
    value: &'a Value<T>,
    local: T,
    dirty: bool,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ValueGuard").field(&self.local).finish()
    }
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.local
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.dirty = true;
        &mut self.local
    }
}

impl<T: Pod> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        if self.dirty {
            let _ = self.value.cell.store(0, self.local);
        }
        self.value.lock.unpin_release();
    }
}

macro_rules! atomic_values {
    ($($(#[$cfg:meta])* $t:ty => $atomic:ty),* $(,)?) => {$(
        $(#[$cfg])*
        impl Value<$t> {
            #[doc = concat!("The value as a `", stringify!($atomic), "`: lock-free atomic \
                operations on the shared memory, from any process. They bypass the lock.")]
            pub fn atomic(&self) -> &$atomic {
                // The cell's accesses are in units of the integer's alignment (see below):
                // only where that is its size are they the atomic's size too.
                const { assert!(std::mem::align_of::<$t>() == std::mem::size_of::<$t>()) };
                // SAFETY: the cell is page-aligned, holds one initialised integer with the
                // same size and bit validity as the atomic, lives as long as `self`, and is
                // otherwise only accessed atomically (ValueGuard copies in and out with atomic
                // word operations), so atomic access from any process is sound. Every access
                // has this atomic's size: the cell's RawArray fixed the memory's AccessWidth
                // to the integer's unit (its alignment, which equals its size, asserted
                // above), and views of any other width are refused, in every process.
                unsafe { &*self.cell.as_ptr().cast::<$atomic>() }
            }
        }
    )*};
}

atomic_values! {
    u8 => std::sync::atomic::AtomicU8,
    i8 => std::sync::atomic::AtomicI8,
    u16 => std::sync::atomic::AtomicU16,
    i16 => std::sync::atomic::AtomicI16,
    u32 => std::sync::atomic::AtomicU32,
    i32 => std::sync::atomic::AtomicI32,
    // A 32-bit target may align 64-bit integers to 4 bytes (i686 does): the cell would then
    // be copied in 4-byte units, which an 8-byte atomic must not mix with.
    #[cfg(target_pointer_width = "64")]
    u64 => std::sync::atomic::AtomicU64,
    #[cfg(target_pointer_width = "64")]
    i64 => std::sync::atomic::AtomicI64,
    usize => std::sync::atomic::AtomicUsize,
    isize => std::sync::atomic::AtomicIsize,
}

// ----------------------------------------------------------------------------------------------
