//! Typed shared arrays: [`RawArray`] (unsynchronised), [`Array`] (under a process-shared
//! lock) and [`Value`] (one value under a lock, with atomics for integers).
//!
//! # Soundness across processes
//!
//! Rust's rules say that while a `&[T]` lives nobody writes the elements, and while a
//! `&mut [T]` lives nobody else reads or writes them. Shared memory is reachable from other
//! processes, which Rust's borrow checker cannot see. This crate keeps safe code sound by
//! giving each kind of access its own justification:
//!
//! | access | why it is sound |
//! |---|---|
//! | [`RawArray::load`], [`store`](RawArray::store), [`read_range`](RawArray::read_range), [`write_range`](RawArray::write_range) | element words are copied with atomic loads and stores; no reference into shared memory is ever made, so any number of processes may do this at once (a race gives torn *values* for elements wider than a word, never UB) |
//! | [`Array::lock`] → [`ArrayGuard`] (`&mut [T]`, views) | the guard holds the array's process-shared lock, which every process that reaches the data must take; the lock is re-entrant but the guard is not: a second guard in the same thread is an error, and the lock's `release` refuses to give up a guard's hold |
//! | [`Value`] | only copies in and out (atomically), and real atomics for integers |
//! | [`RawArray::as_slice`], [`as_mut_slice`](RawArray::as_mut_slice), [`view`](RawArray::view), [`view_mut`](RawArray::view_mut) | `&self` / `&mut self` exclude every other access *in this process*. Another process reaches the memory only through an `unsafe` step — `fork` (which is `unsafe` in `nix`/`libc`) or [`RawArray::from_buffer`] — whose caller takes on the obligation below |
//!
//! **The obligation of whoever shares a `RawArray` with another process** (by forking while it
//! exists, or by sending its buffer): while one process holds a reference from `as_slice`,
//! `as_mut_slice`, `view`, `view_mut` or [`RawArray::slice_mut_unchecked`], no other process
//! writes the referenced elements, and while one holds a mutable one, no other process reads
//! them either. The usual ways to meet it: give each process its own disjoint part (split
//! `as_mut_slice()` with `chunks_mut`/`split_at_mut` before forking, and have the parent touch
//! the array only after joining the children — see the `voxel_slabs` example), or use the
//! atomic range methods, or use [`Array`].

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, Range};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use bytemuck::Pod;
use multiproc_core::{Error, Lock, Result, SharedBuffer};

use crate::sync::ProcessRLock;
use crate::ShmBuffer;

/// The number of bytes of `len` elements of `T`, checked: zero-sized and over-aligned element
/// types name `T`, zero or overflowing lengths name `len_name`.
fn bytes_for<T>(len: usize, len_name: &'static str) -> Result<usize> {
    let size = std::mem::size_of::<T>();
    if size == 0 {
        return Err(Error::invalid(
            "T",
            format!("{} is zero-sized", std::any::type_name::<T>()),
        ));
    }
    if std::mem::align_of::<T>() > 4096 {
        return Err(Error::invalid(
            "T",
            "alignment above the 4096-byte page alignment of shared memory",
        ));
    }
    if len == 0 {
        return Err(Error::invalid(
            len_name,
            "a shared array needs at least 1 element",
        ));
    }
    len.checked_mul(size)
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| {
            Error::invalid(
                len_name,
                format!(
                    "{len} elements of {size} bytes ({}) overflow the address space",
                    std::any::type_name::<T>()
                ),
            )
        })
}

/// Checks an ndarray shape against a length: the element count must match exactly.
#[cfg_attr(not(feature = "ndarray"), allow(dead_code))]
fn check_shape(shape: &[usize], len: usize) -> Result<()> {
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::invalid("shape", format!("{shape:?} overflows usize elements")))?;
    if n != len {
        return Err(Error::invalid(
            "shape",
            format!("{shape:?} has {n} elements but the array has {len}"),
        ));
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// Atomic element copies
// ----------------------------------------------------------------------------------------------

/// Copies `src` into shared memory at `dst` with atomic stores of the widest unit that `T`'s
/// alignment allows.
///
/// # Safety
///
/// `dst` is valid for writes of `src.len()` bytes, aligned to `unit`, and the memory is
/// only accessed atomically or by whoever is entitled to it.
unsafe fn atomic_copy_in(dst: *mut u8, src: &[u8], unit: usize) {
    macro_rules! copy {
        ($atomic:ty, $int:ty, $w:expr) => {
            for (k, chunk) in src.chunks_exact($w).enumerate() {
                let v = <$int>::from_ne_bytes(chunk.try_into().expect("unit-sized chunk"));
                // SAFETY: the caller guarantees `dst` is valid and `unit`-aligned for
                // `src.len()` bytes; `k * unit` stays inside; atomics allow concurrent access.
                unsafe { (*dst.add(k * $w).cast::<$atomic>()).store(v, Relaxed) };
            }
        };
    }
    match unit {
        8 => copy!(AtomicU64, u64, 8),
        4 => copy!(AtomicU32, u32, 4),
        2 => copy!(AtomicU16, u16, 2),
        _ => copy!(AtomicU8, u8, 1),
    }
}

/// Copies shared memory at `src` into `dst` with atomic loads.
///
/// # Safety
///
/// As for [`atomic_copy_in`], with `src` valid for reads of `dst.len()` bytes.
unsafe fn atomic_copy_out(src: *const u8, dst: &mut [u8], unit: usize) {
    macro_rules! copy {
        ($atomic:ty, $w:expr) => {
            for (k, chunk) in dst.chunks_exact_mut($w).enumerate() {
                // SAFETY: as in atomic_copy_in.
                let v = unsafe { (*src.add(k * $w).cast::<$atomic>()).load(Relaxed) };
                chunk.copy_from_slice(&v.to_ne_bytes());
            }
        };
    }
    match unit {
        8 => copy!(AtomicU64, 8),
        4 => copy!(AtomicU32, 4),
        2 => copy!(AtomicU16, 2),
        _ => copy!(AtomicU8, 1),
    }
}

/// The atomic unit for `T`: its alignment, at most 8 (sizes are multiples of alignment).
fn unit_of<T>() -> usize {
    std::mem::align_of::<T>().min(8)
}

// ----------------------------------------------------------------------------------------------
// RawArray
// ----------------------------------------------------------------------------------------------

/// An array of `T` in shared memory without a lock (Python's `multiprocessing.RawArray`).
///
/// Created zeroed, from a slice or from an iterator; never empty. Its memory is a
/// [`ShmBuffer`]: a forked child sees it, a spawned process can be sent it. See the
/// [module docs](self) for which access is sound when, and the `voxel_slabs` example for
/// disjoint parallel writers.
///
/// ```
/// use multiproc_shared_array::RawArray;
///
/// let mut a = RawArray::<f64>::from_iter((0..6).map(f64::from))?;
/// a.as_mut_slice()[5] = 50.0;
/// assert_eq!(a.load(5)?, 50.0);
/// a.write_range(0, &[9.0, 8.0])?; // atomic: fine even while other processes read
/// # #[cfg(feature = "ndarray")] {
/// let v = a.view((2, 3))?;
/// assert_eq!(v[[1, 2]], 50.0);
/// # }
/// # Ok::<(), multiproc_core::Error>(())
/// ```
pub struct RawArray<T: Pod> {
    buf: ShmBuffer,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> std::fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawArray")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .finish()
    }
}

impl<T: Pod> RawArray<T> {
    /// `len` zeroed elements. Touches no memory: pages appear when first written.
    ///
    /// Errors ([`Error::InvalidArgument`]): `len` is 0, or `len * size_of::<T>()` overflows or
    /// cannot be mapped (naming `len`); `T` is zero-sized (naming `T`).
    pub fn zeros(len: usize) -> Result<Self> {
        let bytes = bytes_for::<T>(len, "len")?;
        Ok(RawArray {
            buf: ShmBuffer::new(bytes)?,
            len,
            _t: PhantomData,
        })
    }

    /// A copy of `values` (not empty: an error naming `values`).
    pub fn from_slice(values: &[T]) -> Result<Self> {
        let bytes = bytes_for::<T>(values.len(), "values")?;
        let buf = ShmBuffer::new(bytes)?;
        // SAFETY: the mapping is fresh (no other process or reference can see it yet), valid
        // for `bytes` = `values.len() * size_of::<T>()` bytes and page-aligned; the source is a
        // live slice that cannot overlap a new mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(values.as_ptr(), buf.as_ptr().cast::<T>(), values.len())
        };
        Ok(RawArray {
            buf,
            len: values.len(),
            _t: PhantomData,
        })
    }

    /// The elements of `iter` (at least one: an error naming `iter`).
    #[allow(clippy::should_implement_trait)] // fallible, unlike FromIterator
    pub fn from_iter(iter: impl IntoIterator<Item = T>) -> Result<Self> {
        let values: Vec<T> = iter.into_iter().collect();
        if values.is_empty() {
            return Err(Error::invalid(
                "iter",
                "a shared array needs at least 1 element",
            ));
        }
        Self::from_slice(&values)
    }

    /// Attaches to a buffer holding `len` elements, typically one from
    /// [`recv_buffer`](crate::recv_buffer).
    ///
    /// Errors: `len` elements do not fit in the buffer (naming `len`).
    ///
    /// # Safety
    ///
    /// Other processes may hold the same memory. The caller takes on the obligation in the
    /// [module docs](self): while this process holds a reference from `as_slice`,
    /// `as_mut_slice`, `view`, `view_mut` or `slice_mut_unchecked`, no other process writes the
    /// referenced elements (nor reads them, for a mutable reference). The atomic methods
    /// (`load`, `store`, `read_range`, `write_range`) carry no such condition.
    pub unsafe fn from_buffer(buf: ShmBuffer, len: usize) -> Result<Self> {
        let bytes = bytes_for::<T>(len, "len")?;
        if bytes > buf.len() {
            return Err(Error::invalid(
                "len",
                format!(
                    "{len} elements need {bytes} bytes; the buffer has {}",
                    buf.len()
                ),
            ));
        }
        Ok(RawArray {
            buf,
            len,
            _t: PhantomData,
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: shared arrays have at least one element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The shared memory (to [`send_buffer`](crate::send_buffer) it, or for atomic byte
    /// access).
    pub fn buffer(&self) -> &ShmBuffer {
        &self.buf
    }

    /// Gives the shared memory back.
    pub fn into_buffer(self) -> ShmBuffer {
        self.buf
    }

    /// A pointer to the first element (valid for `len` elements while `self` lives).
    pub fn as_ptr(&self) -> *mut T {
        self.buf.as_ptr().cast()
    }

    /// The elements as a slice. No other process may write them while it lives (see the
    /// [module docs](self)).
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: the mapping holds `len` initialised (zeroed or copied) elements of a Pod type,
        // aligned (page-aligned start, size a multiple of alignment) and alive while `self` is
        // borrowed. `&self` excludes `&mut` access in this process; other processes are
        // excluded by the obligation of the `unsafe` step that shared the memory.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The elements as a mutable slice. No other process may access them while it lives (see
    /// the [module docs](self)). Split it (`chunks_mut`, `split_at_mut`) for disjoint writers.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`; `&mut self` excludes every other access in this process.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }

    /// A mutable slice of `range` obtained through a shared reference: the escape hatch for
    /// workers that each write their own part of one array (a pool task that received the
    /// array by inheritance, for example).
    ///
    /// Errors: `range` is reversed or out of bounds (naming `range`).
    ///
    /// # Safety
    ///
    /// For as long as the returned slice lives (call it *the borrow*):
    /// - no other reference to any element of `range` exists or is created, in this or any
    ///   other process: no `as_slice`/`as_mut_slice`/`view`/`view_mut` covering the range, no
    ///   overlapping `slice_mut_unchecked`, no ndarray view made from such a slice;
    /// - no other thread or process accesses those elements at all, not even through the
    ///   atomic methods (`load`, `read_range`, ...) or the [`SharedBuffer`] byte API, because a
    ///   plain write racing with an atomic access is still a data race;
    /// - the memory stays mapped: `self` (or, in another process, its copy or the buffer it was
    ///   attached from) outlives the borrow, which the lifetime enforces here only for this
    ///   process;
    /// - the elements outside `range` are not affected: others may use them as the rules for
    ///   their own accesses allow.
    ///
    /// Overlapping ranges, a range given to two processes, or a parent that reads the range
    /// before it has joined the writer, all break the contract and are undefined behaviour.
    #[allow(clippy::mut_from_ref)] // exactly what this escape hatch is for
    pub unsafe fn slice_mut_unchecked(&self, range: Range<usize>) -> Result<&mut [T]> {
        self.check_range(range.start, range.end, "range")?;
        // SAFETY: in bounds by the check; aligned and initialised as in `as_slice`; exclusive by
        // the caller's contract.
        Ok(unsafe {
            std::slice::from_raw_parts_mut(self.as_ptr().add(range.start), range.end - range.start)
        })
    }

    fn check_range(&self, start: usize, end: usize, name: &'static str) -> Result<()> {
        if start > end || end > self.len {
            return Err(Error::invalid(
                name,
                format!("{start}..{end} is not within 0..{}", self.len),
            ));
        }
        Ok(())
    }

    /// Element `index`, read atomically (word by word). Out of bounds names `index`.
    pub fn load(&self, index: usize) -> Result<T> {
        let mut v = T::zeroed();
        self.read_range(index, std::slice::from_mut(&mut v))
            .map_err(|_| self.out_of_bounds(index))?;
        Ok(v)
    }

    /// Sets element `index`, atomically word by word. Out of bounds names `index`.
    pub fn store(&self, index: usize, value: T) -> Result<()> {
        self.write_range(index, std::slice::from_ref(&value))
            .map_err(|_| self.out_of_bounds(index))
    }

    fn out_of_bounds(&self, index: usize) -> Error {
        Error::invalid(
            "index",
            format!("{index} is out of bounds for length {}", self.len),
        )
    }

    /// Copies `out.len()` elements starting at `start` into `out`, with atomic loads: sound
    /// whatever other processes do meanwhile. Out of bounds names `start`.
    pub fn read_range(&self, start: usize, out: &mut [T]) -> Result<()> {
        self.check_range(start, start.saturating_add(out.len()), "start")?;
        if start.checked_add(out.len()).is_none() {
            return Err(Error::invalid("start", "overflows"));
        }
        // SAFETY: in bounds by the check; the source is aligned for `T` and so for its unit;
        // the access is atomic; `out` is local memory.
        unsafe {
            atomic_copy_out(
                self.as_ptr().add(start).cast(),
                bytemuck::cast_slice_mut(out),
                unit_of::<T>(),
            )
        };
        Ok(())
    }

    /// Copies `src` into the array starting at `start`, with atomic stores: any process may do
    /// this through `&self` at any time; keeping writers apart is a matter of correctness, not
    /// of soundness. Out of bounds names `start`.
    pub fn write_range(&self, start: usize, src: &[T]) -> Result<()> {
        self.check_range(start, start.saturating_add(src.len()), "start")?;
        if start.checked_add(src.len()).is_none() {
            return Err(Error::invalid("start", "overflows"));
        }
        // SAFETY: as in `read_range`, writing.
        unsafe {
            atomic_copy_in(
                self.as_ptr().add(start).cast(),
                bytemuck::cast_slice(src),
                unit_of::<T>(),
            )
        };
        Ok(())
    }

    /// All elements, copied atomically.
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = vec![T::zeroed(); self.len];
        self.read_range(0, &mut v)
            .expect("the whole array is in bounds");
        v
    }
}

#[cfg(feature = "ndarray")]
impl<T: Pod> RawArray<T> {
    /// An ndarray view of any dimension, C order: `a.view((4, 4, 4))?`. The shape's element
    /// count must equal [`len`](Self::len) (an error naming `shape` otherwise). The same
    /// condition as [`as_slice`](Self::as_slice) applies.
    pub fn view<D: ndarray::Dimension>(
        &self,
        shape: impl ndarray::IntoDimension<Dim = D>,
    ) -> Result<ndarray::ArrayView<'_, T, D>> {
        view_of(self.as_slice(), shape)
    }

    /// A mutable ndarray view, C order (see [`view`](Self::view)).
    pub fn view_mut<D: ndarray::Dimension>(
        &mut self,
        shape: impl ndarray::IntoDimension<Dim = D>,
    ) -> Result<ndarray::ArrayViewMut<'_, T, D>> {
        view_mut_of(self.as_mut_slice(), shape)
    }
}

#[cfg(feature = "ndarray")]
fn view_of<T, D: ndarray::Dimension>(
    data: &[T],
    shape: impl ndarray::IntoDimension<Dim = D>,
) -> Result<ndarray::ArrayView<'_, T, D>> {
    let dim = shape.into_dimension();
    check_shape(dim.slice(), data.len())?;
    ndarray::ArrayView::from_shape(dim, data).map_err(|e| Error::invalid("shape", e.to_string()))
}

#[cfg(feature = "ndarray")]
fn view_mut_of<T, D: ndarray::Dimension>(
    data: &mut [T],
    shape: impl ndarray::IntoDimension<Dim = D>,
) -> Result<ndarray::ArrayViewMut<'_, T, D>> {
    let dim = shape.into_dimension();
    check_shape(dim.slice(), data.len())?;
    ndarray::ArrayViewMut::from_shape(dim, data).map_err(|e| Error::invalid("shape", e.to_string()))
}

// ----------------------------------------------------------------------------------------------
// Array
// ----------------------------------------------------------------------------------------------

/// An array of `T` in shared memory guarded by a process-shared re-entrant lock (Python's
/// `multiprocessing.Array` with `lock=True`).
///
/// All access to the elements goes through the lock: [`lock`](Self::lock) returns an
/// [`ArrayGuard`] that derefs to `[T]` and makes ndarray views; [`get`](Self::get),
/// [`set`](Self::set) and [`to_vec`](Self::to_vec) take the lock for one call, as Python's
/// item access does. That is what makes `&mut [T]` through a guard sound across processes.
///
/// ```
/// use multiproc_shared_array::Array;
///
/// let a = Array::<i32>::zeros(4)?;
/// {
///     let mut g = a.lock()?;
///     g[0] = 7;
///     g[1..].fill(1);
/// }
/// assert_eq!(a.to_vec()?, vec![7, 1, 1, 1]);
/// # Ok::<(), multiproc_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Array<T: Pod> {
    data: RawArray<T>,
    lock: ProcessRLock,
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

    /// Takes the lock and returns a guard giving access to the elements.
    ///
    /// Errors: [`Error::OwnerDied`] — a process died holding the lock; the caller holds it
    /// (once, without a guard: call `lock` again for a guard, and release the extra hold with
    /// `get_lock().release()`); the elements may be half-written. A second guard in a thread
    /// that already has one is [`Error::InvalidArgument`] (it would alias the first).
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>> {
        self.lock.acquire()?;
        self.guard()
    }

    /// [`lock`](Self::lock) with a timeout: `Ok(None)` if the lock was not free in time.
    pub fn lock_timeout(&self, timeout: std::time::Duration) -> Result<Option<ArrayGuard<'_, T>>> {
        if !self.lock.acquire_timeout(timeout)? {
            return Ok(None);
        }
        self.guard().map(Some)
    }

    fn guard(&self) -> Result<ArrayGuard<'_, T>> {
        if let Err(e) = self.lock.pin() {
            let _ = self.lock.release();
            return Err(e);
        }
        Ok(ArrayGuard {
            array: self,
            _not_send: PhantomData,
        })
    }

    /// Element `index`, under the lock. Out of bounds names `index`.
    pub fn get(&self, index: usize) -> Result<T> {
        let g = self.lock()?;
        g.get(index)
            .copied()
            .ok_or_else(|| self.data.out_of_bounds(index))
    }

    /// Sets element `index`, under the lock. Out of bounds names `index`.
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        let mut g = self.lock()?;
        match g.get_mut(index) {
            Some(x) => {
                *x = value;
                Ok(())
            }
            None => Err(self.data.out_of_bounds(index)),
        }
    }

    /// A copy of all elements, under the lock.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.lock()?.to_vec())
    }
}

/// Access to an [`Array`]'s elements while holding its lock; releases on drop.
///
/// Derefs to `[T]`; [`view`](Self::view) / [`view_mut`](Self::view_mut) make ndarray views.
/// Not `Send`: the lock belongs to the thread that took it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod> {
    array: &'a Array<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> std::fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("len", &self.array.len())
            .finish()
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the guard holds the array's process-shared lock, pinned so that `release`
        // cannot drop it while the guard lives, and no second guard can exist in this thread.
        // Every process accesses an Array's elements only under that lock, so no one else
        // touches them. Layout and initialisation as in RawArray::as_slice.
        unsafe { std::slice::from_raw_parts(self.array.data.as_ptr(), self.array.data.len) }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference from this guard.
        unsafe { std::slice::from_raw_parts_mut(self.array.data.as_ptr(), self.array.data.len) }
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
        self.array.lock.unpin_release();
    }
}

// ----------------------------------------------------------------------------------------------
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
    cell: RawArray<T>,
    lock: ProcessRLock,
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

    /// The lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &ProcessRLock {
        &self.lock
    }

    /// The value, read under the lock. [`Error::OwnerDied`]: see [`lock`](Self::lock).
    pub fn get(&self) -> Result<T> {
        Ok(*self.lock()?)
    }

    /// Sets the value under the lock.
    pub fn set(&self, value: T) -> Result<()> {
        *self.lock()? = value;
        Ok(())
    }

    /// Takes the lock and returns a guard holding a copy of the value; the copy is written
    /// back (atomically) and the lock released when the guard drops.
    ///
    /// [`Error::OwnerDied`]: a process died holding the lock; the caller holds it (release it
    /// with `get_lock().release()`, or take a guard with `lock` again and release once more).
    pub fn lock(&self) -> Result<ValueGuard<'_, T>> {
        self.lock.acquire()?;
        Ok(ValueGuard {
            local: self.cell.load(0).expect("index 0 exists"),
            value: self,
            _not_send: PhantomData,
        })
    }
}

/// A locked [`Value`]: derefs to a local copy, written back on drop. Not `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: Pod> {
    value: &'a Value<T>,
    local: T,
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
        &mut self.local
    }
}

impl<T: Pod> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        let _ = self.value.cell.store(0, self.local);
        let _ = self.value.lock.release();
    }
}

macro_rules! atomic_values {
    ($($t:ty => $atomic:ty),* $(,)?) => {$(
        impl Value<$t> {
            #[doc = concat!("The value as a `", stringify!($atomic), "`: lock-free atomic \
                operations on the shared memory, from any process. They bypass the lock.")]
            pub fn atomic(&self) -> &$atomic {
                // SAFETY: the cell is page-aligned, holds one initialised integer with the
                // same size and bit validity as the atomic, lives as long as `self`, and is
                // otherwise only accessed atomically (ValueGuard copies in and out with atomic
                // word operations), so atomic access from any process is sound.
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
    u64 => std::sync::atomic::AtomicU64,
    i64 => std::sync::atomic::AtomicI64,
    usize => std::sync::atomic::AtomicUsize,
    isize => std::sync::atomic::AtomicIsize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_and_atomic_ranges() {
        let a = RawArray::<u16>::from_slice(&[1, 2, 3]).unwrap();
        assert_eq!(a.as_slice(), &[1, 2, 3]);
        a.write_range(1, &[20, 30]).unwrap();
        assert_eq!(a.to_vec(), vec![1, 20, 30]);
        assert_eq!(a.load(2).unwrap(), 30);
        assert!(matches!(
            a.load(3),
            Err(Error::InvalidArgument { name: "index", .. })
        ));
        assert!(matches!(
            a.write_range(2, &[1, 2]),
            Err(Error::InvalidArgument { name: "start", .. })
        ));
        let z = RawArray::<[u8; 3]>::zeros(5).unwrap();
        z.store(4, [1, 2, 3]).unwrap();
        assert_eq!(z.as_slice()[4], [1, 2, 3]);
        let it = RawArray::from_iter((0..10u64).map(|x| x * x)).unwrap();
        assert_eq!(it.load(9).unwrap(), 81);
    }

    #[test]
    fn escape_hatch_checks_the_range() {
        let a = RawArray::<f32>::zeros(4).unwrap();
        // SAFETY: no other reference to the array exists in this single-threaded test.
        let s = unsafe { a.slice_mut_unchecked(1..3) }.unwrap();
        s.fill(2.0);
        assert_eq!(a.to_vec(), vec![0.0, 2.0, 2.0, 0.0]);
        // SAFETY: the call fails before making a reference.
        let bad = unsafe { a.slice_mut_unchecked(3..5) };
        assert!(matches!(
            bad,
            Err(Error::InvalidArgument { name: "range", .. })
        ));
    }

    #[test]
    fn array_guards_do_not_alias() {
        let a = Array::<u8>::zeros(3).unwrap();
        let mut g = a.lock().unwrap();
        g[0] = 1;
        assert!(matches!(
            a.lock(),
            Err(Error::InvalidArgument { name: "self", .. })
        ));
        assert!(matches!(a.get(0), Err(Error::InvalidArgument { .. })));
        // The lock is re-entrant for plain holds, but cannot be released under the guard.
        a.get_lock().acquire().unwrap();
        a.get_lock().release().unwrap();
        assert!(matches!(a.get_lock().release(), Err(Error::NotHeld(_))));
        drop(g);
        assert!(!a.get_lock().locked());
        assert_eq!(a.to_vec().unwrap(), vec![1, 0, 0]);
        a.set(2, 9).unwrap();
        assert_eq!(a.get(2).unwrap(), 9);
        assert!(matches!(
            a.set(3, 9),
            Err(Error::InvalidArgument { name: "index", .. })
        ));
    }

    #[test]
    fn values_copy_in_and_out() {
        let v = Value::new(1.5f64).unwrap();
        *v.lock().unwrap() *= 2.0;
        assert_eq!(v.get().unwrap(), 3.0);
        let n = Value::<i32>::zeroed().unwrap();
        n.atomic().fetch_sub(5, Relaxed);
        assert_eq!(n.get().unwrap(), -5);
        assert!(matches!(
            Value::new(()),
            Err(Error::InvalidArgument { name: "T", .. })
        ));
    }
}
