//! [`RawArray`]: Python's `multiprocessing.RawArray`, and the (feature `ndarray`) views made
//! of typed slices.

use std::marker::PhantomData;
use std::ops::Range;

use bytemuck::Pod;
use multiproc_core::{Error, Result, SharedBuffer};

#[cfg(feature = "ndarray")]
use super::checks::check_shape;
use super::checks::{bytes_for, check_range};
use super::copy::{atomic_copy_in, atomic_copy_out, width_of};
use crate::frozen::{FreezeError, FrozenArray};
use crate::ShmBuffer;

// RawArray
// ----------------------------------------------------------------------------------------------

/// An array of `T` in shared memory without a lock (Python's `multiprocessing.RawArray`): the
/// handle that other processes reach.
///
/// Created zeroed, from a slice or from an iterator (or by
/// [`LocalArray::share`](crate::LocalArray::share)); never empty. Its memory is a
/// [`ShmBuffer`]: a forked child sees it (put it in an `Inherited` static before the pool, or
/// capture it), a spawned process can be sent it (it is `Serialize`/`Deserialize` through
/// [`multiproc_core::handoff`]).
///
/// `RawArray` is `Send + Sync`, and every safe access is an **atomic copy** of elements:
/// [`load`](Self::load)/[`store`](Self::store) one element, [`read_range`](Self::read_range)/
/// [`write_range`](Self::write_range) a run of them, [`fill`](Self::fill),
/// [`to_vec`](Self::to_vec), and (feature `ndarray`) [`to_ndarray`](Self::to_ndarray). Those
/// are sound whatever other threads and processes do at the same time — which is the point:
/// a `RawArray` can always be reached by another process (a fork duplicates every handle), so
/// it never lends a plain `&[T]` or `&mut [T]` safely. Writers that each own a part of the
/// array (the tutorial's voxel lists or slabs) write their parts with `store`/`write_range`;
/// giving them disjoint parts is a question of getting the right answer, not of soundness.
///
/// Zero-copy access:
///
/// - build the data in a [`LocalArray`](crate::LocalArray) (plain slices, not shared yet), then
///   [`share`](crate::LocalArray::share) it without a copy;
/// - read-only data: [`freeze`](Self::freeze) it into a [`FrozenArray`] (plain slices and
///   views, from every process), once no other handle maps it writably;
/// - everything else: the `unsafe` [`slice_unchecked`](Self::slice_unchecked),
///   [`slice_mut_unchecked`](Self::slice_mut_unchecked),
///   [`view_unchecked`](Self::view_unchecked), [`view_mut_unchecked`](Self::view_mut_unchecked)
///   and the safe raw views ([`raw_view_mut`](Self::raw_view_mut)), whose contracts say
///   exactly which processes may do what meanwhile.
///
/// ```
/// use multiproc_shared_array::RawArray;
///
/// let a = RawArray::<f64>::from_iter((0..6).map(f64::from))?;
/// a.store(5, 50.0)?;
/// a.write_range(0, &[9.0, 8.0])?; // atomic: fine even while other processes read
/// assert_eq!(a.load(5)?, 50.0);
/// assert_eq!(a.to_vec(), [9.0, 8.0, 2.0, 3.0, 4.0, 50.0]);
/// # #[cfg(feature = "ndarray")] {
/// let v = a.to_ndarray((2, 3))?; // a copy, as numpy's `np.array(raw).reshape(...)`
/// assert_eq!(v[[1, 2]], 50.0);
/// # }
/// # Ok::<(), multiproc_core::Error>(())
/// ```
///
/// There is no safe slice of a `RawArray`, because another process may write it meanwhile:
///
/// ```compile_fail
/// let mut a = multiproc_shared_array::RawArray::<f64>::zeros(4)?;
/// a.as_mut_slice()[0] = 1.0; // no such method: build it in a LocalArray, or use `store`
/// # Ok::<(), multiproc_core::Error>(())
/// ```
///
/// ```compile_fail
/// let a = multiproc_shared_array::RawArray::<f64>::zeros(4)?;
/// let s: &[f64] = a.slice_unchecked(0..4)?; // unsafe: the caller must prove no one writes
/// # Ok::<(), multiproc_core::Error>(())
/// ```
pub struct RawArray<T: Pod> {
    pub(super) buf: ShmBuffer,
    pub(super) len: usize,
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
        let buf = ShmBuffer::new(bytes)?;
        buf.claim_width(width_of::<T>(), "buf")?;
        Ok(RawArray {
            buf,
            len,
            _t: PhantomData,
        })
    }

    /// A copy of `values` (not empty: an error naming `values`).
    pub fn from_slice(values: &[T]) -> Result<Self> {
        let bytes = bytes_for::<T>(values.len(), "values")?;
        let buf = ShmBuffer::new(bytes)?;
        buf.claim_width(width_of::<T>(), "buf")?;
        // SAFETY: the mapping was created just now, in this call: no handle, reference or
        // other process can name it yet (a process forked meanwhile inherits the mapping but
        // has no way to reach it). It is valid for `values.len()` elements and page-aligned;
        // the source is a live slice that cannot overlap a new mapping.
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

    /// Views a buffer as `len` elements, typically one from [`recv_buffer`](crate::recv_buffer).
    /// Safe: a `RawArray` only ever copies elements atomically, whoever else maps the memory, and
    /// always in the same size — its element's atomic unit (its alignment, at most 8 bytes), which
    /// this call fixes as the memory's [`AccessWidth`](multiproc_core::AccessWidth) if it is not
    /// fixed yet.
    ///
    /// Errors: `len` is 0 or its elements do not fit in the buffer (naming `len`); `T` is
    /// zero-sized (naming `T`); the memory is already accessed in another width — for example
    /// it holds a `RawArray<u64>` and `T` is `u8` (mixed-size atomics on the same bytes are
    /// undefined behaviour), or it holds a process-shared primitive — naming `buf`.
    pub fn from_buffer(buf: ShmBuffer, len: usize) -> Result<Self> {
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
        buf.claim_width(width_of::<T>(), "buf")?;
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

    /// The pages behind the array: huge pages where the system offered them when its memory
    /// was made (see [`multiproc_sys::pages`]), ordinary ones otherwise.
    pub fn pages(&self) -> multiproc_sys::pages::PageKind {
        self.buf.pages()
    }

    /// The shared memory (to [`send_buffer`](crate::send_buffer) it, or for atomic byte access when
    /// `T` is made of bytes: its [`AccessWidth`](multiproc_core::AccessWidth) is the array's, so
    /// the byte API refuses the memory of wider elements).
    pub fn buffer(&self) -> &ShmBuffer {
        &self.buf
    }

    /// Gives the shared memory back.
    pub fn into_buffer(self) -> ShmBuffer {
        self.buf
    }

    /// A second handle to the same elements (the descriptor duplicated and mapped again),
    /// for example one per task argument of a pool. Within one process an `Arc<RawArray>` is
    /// cheaper.
    ///
    /// Errors: out of descriptors or address space ([`Error::Io`]).
    pub fn try_clone(&self) -> Result<Self> {
        Ok(RawArray {
            buf: self.buf.try_clone()?,
            len: self.len,
            _t: PhantomData,
        })
    }

    /// A pointer to the first element (valid for `len` elements while `self` lives). Reading or
    /// writing through it is subject to the same conditions as
    /// [`slice_unchecked`](Self::slice_unchecked) /
    /// [`slice_mut_unchecked`](Self::slice_mut_unchecked).
    #[inline]
    pub fn as_ptr(&self) -> *mut T {
        self.buf.as_ptr().cast()
    }

    fn check_range(&self, start: usize, end: usize, name: &'static str) -> Result<()> {
        check_range(start, end, self.len, name)
    }

    /// Element `index`, read atomically (word by word). Out of bounds names `index`.
    ///
    /// Inlined, with the bounds check its only branch: the tutorial's voxel-by-voxel loops
    /// call it once per element.
    #[inline]
    pub fn load(&self, index: usize) -> Result<T> {
        if index >= self.len {
            return Err(self.out_of_bounds(index));
        }
        let mut v = T::zeroed();
        // SAFETY: `index` is in bounds (checked above); as in `read_range`.
        unsafe { atomic_copy_out(self.as_ptr().add(index), std::slice::from_mut(&mut v)) };
        Ok(v)
    }

    /// Sets element `index`, atomically word by word. Out of bounds names `index`.
    #[inline]
    pub fn store(&self, index: usize, value: T) -> Result<()> {
        if index >= self.len {
            return Err(self.out_of_bounds(index));
        }
        // SAFETY: `index` is in bounds (checked above); as in `write_range`.
        unsafe { atomic_copy_in(self.as_ptr().add(index), std::slice::from_ref(&value)) };
        Ok(())
    }

    #[cold]
    pub(crate) fn out_of_bounds(&self, index: usize) -> Error {
        Error::invalid(
            "index",
            format!("{index} is out of bounds for length {}", self.len),
        )
    }

    /// The end of `start..start + n`, or an error naming `start` if it overflows or leaves the
    /// array.
    fn span(&self, start: usize, n: usize) -> Result<usize> {
        let end = start
            .checked_add(n)
            .ok_or_else(|| Error::invalid("start", format!("{start} + {n} overflows")))?;
        self.check_range(start, end, "start")?;
        Ok(end)
    }

    /// Copies `out.len()` elements starting at `start` into `out`, with atomic loads: sound
    /// whatever other processes do meanwhile. Out of bounds names `start`.
    pub fn read_range(&self, start: usize, out: &mut [T]) -> Result<()> {
        self.span(start, out.len())?;
        // SAFETY: in bounds by the check; the source is aligned for `T` (page-aligned start,
        // element-sized steps); the access is atomic; `out` is local memory.
        unsafe { atomic_copy_out(self.as_ptr().add(start), out) };
        Ok(())
    }

    /// Copies `src` into the array starting at `start`, with atomic stores: any process may do
    /// this through `&self` at any time; keeping writers apart is a matter of correctness, not
    /// of soundness. Out of bounds names `start`.
    pub fn write_range(&self, start: usize, src: &[T]) -> Result<()> {
        self.span(start, src.len())?;
        // SAFETY: as in `read_range`, writing.
        unsafe { atomic_copy_in(self.as_ptr().add(start), src) };
        Ok(())
    }

    /// Sets every element to `value`, with atomic stores.
    pub fn fill(&self, value: T) {
        let chunk = vec![value; self.len.min(4096)];
        let mut start = 0;
        while start < self.len {
            let n = chunk.len().min(self.len - start);
            self.write_range(start, &chunk[..n])
                .expect("in bounds by construction");
            start += n;
        }
    }

    /// All elements, copied atomically.
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = vec![T::zeroed(); self.len];
        self.read_range(0, &mut v)
            .expect("the whole array is in bounds");
        v
    }

    /// A shared slice of `range`, without a copy.
    ///
    /// Errors: `range` is reversed or out of bounds (naming `range`).
    ///
    /// # Safety
    ///
    /// For as long as the returned slice lives (*the borrow*), **no thread of any process
    /// writes any element of `range`**, by any means: not through a `RawArray` handle's
    /// atomic methods (`store`, `write_range`, `fill`), not through
    /// [`slice_mut_unchecked`](Self::slice_mut_unchecked) or a mutable view, not through the
    /// [`SharedBuffer`] byte API of [`buffer`](Self::buffer), not through `write(2)` or
    /// `fallocate(2)` on its descriptor. Concurrent reads, atomic or not, are fine.
    ///
    /// Count every process that can reach the memory: those forked while this array (or any
    /// handle, buffer or `Array`/`Value` built on its buffer) existed — a fork copies every
    /// handle and every captured reference — and those it was sent to. The usual proof is
    /// "the writers have exited (joined), and no handle that could write remains", or "this
    /// data is written only before the readers start". If the data never changes again, prefer
    /// [`freeze`](Self::freeze), which lets the kernel prove it.
    pub unsafe fn slice_unchecked(&self, range: Range<usize>) -> Result<&[T]> {
        self.check_range(range.start, range.end, "range")?;
        // SAFETY: in bounds by the check; the mapping holds initialised (zeroed or written)
        // elements of a Pod type, aligned, alive while `self` is borrowed; nobody writes them
        // while the borrow lives, by the caller's contract.
        Ok(unsafe {
            std::slice::from_raw_parts(self.as_ptr().add(range.start), range.end - range.start)
        })
    }

    /// A mutable slice of `range` obtained through a shared reference: zero-copy writing for
    /// workers that each own a part of one array.
    ///
    /// Errors: `range` is reversed or out of bounds (naming `range`).
    ///
    /// # Safety
    ///
    /// For as long as the returned slice lives (*the borrow*):
    /// - no other reference to any element of `range` exists or is created, in this or any
    ///   other process: no overlapping `slice_unchecked`/`slice_mut_unchecked`, no view
    ///   covering the range;
    /// - no other thread of any process accesses those elements at all, not even through the
    ///   atomic methods (`load`, `read_range`, `to_vec`, ...), the [`SharedBuffer`] byte API,
    ///   or `read(2)`/`write(2)` on the descriptor: a plain write racing with an atomic access
    ///   is still a data race;
    /// - the memory stays mapped: `self` outlives the borrow, which the lifetime enforces.
    ///
    /// Elements outside `range` are not affected: others may use them as their own rules
    /// allow. As for [`slice_unchecked`](Self::slice_unchecked), every process that inherited
    /// or received the memory counts. Overlapping ranges, a range given to two processes, or
    /// a parent that reads the range before it has joined the writer, all break the contract
    /// and are undefined behaviour.
    #[allow(clippy::mut_from_ref)] // exactly what this escape hatch is for
    pub unsafe fn slice_mut_unchecked(&self, range: Range<usize>) -> Result<&mut [T]> {
        self.check_range(range.start, range.end, "range")?;
        // SAFETY: in bounds by the check; aligned and initialised as in `slice_unchecked`;
        // exclusive by the caller's contract.
        Ok(unsafe {
            std::slice::from_raw_parts_mut(self.as_ptr().add(range.start), range.end - range.start)
        })
    }

    /// Makes the array immutable and gives it back as a [`FrozenArray`], which lends plain
    /// slices and views to every process — without a copy.
    ///
    /// The kernel does the proof: it seals the memfd against writing (`F_SEAL_WRITE`), which
    /// it grants only if **no process maps the memory writably** any more. So first drop every
    /// other handle of it — in this process and in every other (forked workers that inherited
    /// it must have exited; a pool's workers live until the pool is dropped). Read-only
    /// mappings do not count: other `FrozenArray`s of the same memory are fine. Note that
    /// *any* child forked while this array existed inherited a writable mapping of it and
    /// keeps it until it exits — in a program that forks from several threads, also children
    /// forked for other purposes. Data that is read-only from the start is better built in a
    /// [`LocalArray`](crate::LocalArray) and frozen from there: no child ever inherits a
    /// `LocalArray`'s mapping, so that freeze cannot meet another process.
    ///
    /// Errors: another writable mapping exists (`EBUSY`), named `self`; the array comes back
    /// inside the [`FreezeError`] (mapped again, possibly at another address).
    pub fn freeze(self) -> std::result::Result<FrozenArray<T>, FreezeError<RawArray<T>>> {
        let len = self.len;
        FrozenArray::seal(self.buf, len).map_err(|failed| FreezeError {
            error: failed.error,
            array: failed.buf.map(|buf| RawArray {
                buf,
                len,
                _t: PhantomData,
            }),
        })
    }
}

#[cfg(feature = "ndarray")]
impl<T: Pod> RawArray<T> {
    /// A copy of the elements as an owned ndarray of `shape` (C order), made with atomic loads:
    /// numpy's `np.array(raw).reshape(shape)`. The shape's element count must equal
    /// [`len`](Self::len) (an error naming `shape` otherwise).
    pub fn to_ndarray<D: ndarray::Dimension>(
        &self,
        shape: impl ndarray::IntoDimension<Dim = D>,
    ) -> Result<ndarray::Array<T, D>> {
        let dim = shape.into_dimension();
        check_shape(dim.slice(), self.len)?;
        ndarray::Array::from_shape_vec(dim, self.to_vec())
            .map_err(|e| Error::invalid("shape", e.to_string()))
    }

    /// A raw ndarray view of `shape` (C order): ndarray's pointer-like view, safe to make and to
    /// reshape or split (`split_at`, `index_axis`, ...), `unsafe` to read or write through
    /// (`deref_into_view`, `deref_into_view_mut`), with the conditions of
    /// [`slice_unchecked`](Self::slice_unchecked) /
    /// [`slice_mut_unchecked`](Self::slice_mut_unchecked) for the elements it covers. Shape errors
    /// name `shape`.
    pub fn raw_view_mut<D: ndarray::Dimension>(
        &self,
        shape: impl ndarray::IntoDimension<Dim = D>,
    ) -> Result<ndarray::RawArrayViewMut<T, D>> {
        let dim = shape.into_dimension();
        check_shape(dim.slice(), self.len)?;
        // SAFETY: the shape covers exactly `len` contiguous elements in C order starting at
        // the (aligned, non-null) first element, all inside one live allocation (the mapping);
        // making a raw view dereferences nothing.
        Ok(unsafe { ndarray::RawArrayViewMut::from_shape_ptr(dim, self.as_ptr()) })
    }

    /// A zero-copy view of `shape` (C order). Shape errors name `shape`.
    ///
    /// # Safety
    ///
    /// That of [`slice_unchecked`](Self::slice_unchecked) for the whole array: while the view
    /// lives, no thread of any process writes any element.
    pub unsafe fn view_unchecked<D: ndarray::Dimension>(
        &self,
        shape: impl ndarray::IntoDimension<Dim = D>,
    ) -> Result<ndarray::ArrayView<'_, T, D>> {
        // SAFETY: the caller's contract is slice_unchecked's, for the whole range.
        view_of(unsafe { self.slice_unchecked(0..self.len) }?, shape)
    }

    /// A zero-copy mutable view of `shape` (C order). Shape errors name `shape`.
    ///
    /// # Safety
    ///
    /// That of [`slice_mut_unchecked`](Self::slice_mut_unchecked) for the whole array: while
    /// the view lives, no other thread of any process accesses any element, by any means.
    pub unsafe fn view_mut_unchecked<D: ndarray::Dimension>(
        &self,
        shape: impl ndarray::IntoDimension<Dim = D>,
    ) -> Result<ndarray::ArrayViewMut<'_, T, D>> {
        // SAFETY: the caller's contract is slice_mut_unchecked's, for the whole range.
        view_mut_of(unsafe { self.slice_mut_unchecked(0..self.len) }?, shape)
    }
}

#[cfg(feature = "ndarray")]
pub(crate) fn view_of<T, D: ndarray::Dimension>(
    data: &[T],
    shape: impl ndarray::IntoDimension<Dim = D>,
) -> Result<ndarray::ArrayView<'_, T, D>> {
    let dim = shape.into_dimension();
    check_shape(dim.slice(), data.len())?;
    ndarray::ArrayView::from_shape(dim, data).map_err(|e| Error::invalid("shape", e.to_string()))
}

#[cfg(feature = "ndarray")]
pub(crate) fn view_mut_of<T, D: ndarray::Dimension>(
    data: &mut [T],
    shape: impl ndarray::IntoDimension<Dim = D>,
) -> Result<ndarray::ArrayViewMut<'_, T, D>> {
    let dim = shape.into_dimension();
    check_shape(dim.slice(), data.len())?;
    ndarray::ArrayViewMut::from_shape(dim, data).map_err(|e| Error::invalid("shape", e.to_string()))
}

/// Internal constructor for the sibling types: `buf` is a `LocalArray`'s memory, which no one
/// else has accessed (so its width is not fixed yet, and this fixes it).
pub(crate) fn raw_from_parts<T: Pod>(buf: ShmBuffer, len: usize) -> RawArray<T> {
    debug_assert!(len * std::mem::size_of::<T>() <= buf.len());
    buf.claim_width(width_of::<T>(), "buf")
        .expect("a LocalArray's memory was never accessed through another width");
    RawArray {
        buf,
        len,
        _t: PhantomData,
    }
}

// ----------------------------------------------------------------------------------------------
