//! Typed shared arrays: [`RawArray`] (shared, unsynchronised, atomic element access),
//! [`Array`] (under a process-shared lock) and [`Value`] (one value under a lock, with atomics
//! for integers). Their siblings [`LocalArray`](crate::LocalArray) (not shared yet: plain
//! slices) and [`FrozenArray`] (shared and immutable: plain slices) live in
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
//! | [`FrozenArray`]: `&[T]`, views | the memfd is sealed with `F_SEAL_WRITE`, which the kernel grants only when no process maps it writably and which forbids every later write (mapping, `write(2)`, hole punching, resizing): the bytes can never change again |
//! | `unsafe` [`RawArray::slice_unchecked`], [`slice_mut_unchecked`](RawArray::slice_mut_unchecked), [`view_unchecked`](RawArray::view_unchecked), [`view_mut_unchecked`](RawArray::view_mut_unchecked) | the caller's proof, per the `# Safety` sections: zero-copy access for code that knows which process writes what and when |
//!
//! The [`SharedBuffer`] byte API of [`ShmBuffer`] is atomic too. The process-shared locks are
//! atomics in shared memory.
//!
//! Atomics are sound under races only when the racing accesses have the same size, so each
//! region of shared memory is accessed in one [`AccessWidth`], recorded in the memory itself
//! and fixed by its first typed view: a `RawArray<T>` uses its element's atomic unit (its
//! alignment, at most 8 bytes), and viewing the same memory in another width — a
//! `RawArray<u8>` of a `RawArray<u64>`'s buffer, the byte API on a `Value<u64>`'s cell or a
//! lock's buffer — is refused with [`Error::InvalidArgument`].
//!
//! Deserialized handles (a spawned worker's arguments, see [`multiproc_core::handoff`]) are
//! the same types under the same rules: a deserialized `RawArray` is, by construction, a second
//! process's handle, and it offers exactly the atomic access above.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, Range};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use bytemuck::Pod;
use multiproc_core::{AccessWidth, Error, Lock, LockError, LockResult, Result, SharedBuffer};

use crate::frozen::{FreezeError, FrozenArray};
use crate::sync::ProcessRLock;
use crate::ShmBuffer;

/// The number of bytes of `len` elements of `T`, checked: zero-sized and over-aligned element
/// types name `T`, zero or overflowing lengths name `len_name`.
pub(crate) fn bytes_for<T>(len: usize, len_name: &'static str) -> Result<usize> {
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
pub(crate) fn check_shape(shape: &[usize], len: usize) -> Result<()> {
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

/// Checks that `range` lies within `0..len`; errors name `name`.
pub(crate) fn check_range(start: usize, end: usize, len: usize, name: &'static str) -> Result<()> {
    if start > end || end > len {
        return Err(Error::invalid(
            name,
            format!("{start}..{end} is not within 0..{len}"),
        ));
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// Atomic element copies
// ----------------------------------------------------------------------------------------------

/// Copies `src` into shared memory at `dst` with atomic stores of the widest unit that `T`'s
/// alignment allows (its alignment, at most 8 bytes; a Pod type's size is a multiple of it).
///
/// # Safety
///
/// `dst` is valid for writes of `src.len()` elements and aligned for `T`; every other access to
/// that memory, in any thread or process, is atomic or excluded by whoever is entitled to it.
unsafe fn atomic_copy_in<T: Pod>(dst: *mut T, src: &[T]) {
    macro_rules! copy {
        ($atomic:ty, $int:ty) => {{
            let words: &[$int] = bytemuck::cast_slice(src);
            // SAFETY: `dst` is valid and aligned for `src.len()` elements of `T` (caller), so
            // for `words.len()` units of the unit's size and alignment; atomics of that size
            // have the integer's layout and allow concurrent access.
            let shared = unsafe { std::slice::from_raw_parts(dst.cast::<$atomic>(), words.len()) };
            for (d, &w) in shared.iter().zip(words) {
                d.store(w, Relaxed);
            }
        }};
    }
    match unit_of::<T>() {
        8 => copy!(AtomicU64, u64),
        4 => copy!(AtomicU32, u32),
        2 => copy!(AtomicU16, u16),
        _ => copy!(AtomicU8, u8),
    }
}

/// Copies shared memory at `src` into `dst` with atomic loads.
///
/// # Safety
///
/// As for [`atomic_copy_in`], with `src` valid for reads of `dst.len()` elements.
unsafe fn atomic_copy_out<T: Pod>(src: *const T, dst: &mut [T]) {
    macro_rules! copy {
        ($atomic:ty, $int:ty) => {{
            let words: &mut [$int] = bytemuck::cast_slice_mut(dst);
            // SAFETY: as in atomic_copy_in, reading.
            let shared = unsafe { std::slice::from_raw_parts(src.cast::<$atomic>(), words.len()) };
            for (w, s) in words.iter_mut().zip(shared) {
                *w = s.load(Relaxed);
            }
        }};
    }
    match unit_of::<T>() {
        8 => copy!(AtomicU64, u64),
        4 => copy!(AtomicU32, u32),
        2 => copy!(AtomicU16, u16),
        _ => copy!(AtomicU8, u8),
    }
}

/// The atomic unit for `T`: its alignment, at most 8 (sizes are multiples of alignment).
fn unit_of<T>() -> usize {
    std::mem::align_of::<T>().min(8)
}

/// The [`AccessWidth`] of a `RawArray<T>`'s memory: that of its atomic unit.
pub(crate) fn width_of<T>() -> AccessWidth {
    AccessWidth::of_size(unit_of::<T>()).expect("alignments are powers of two")
}

/// Renames a width refusal (an error naming `buf`) to the caller's argument.
fn rename_buf(e: Error, name: &'static str) -> Error {
    match e {
        Error::InvalidArgument {
            name: "buf",
            reason,
        } => Error::InvalidArgument { name, reason },
        e => e,
    }
}

// ----------------------------------------------------------------------------------------------
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
    /// Safe: a `RawArray` only ever copies elements atomically, whoever else maps the memory,
    /// and always in the same size — its element's atomic unit (its alignment, at most 8
    /// bytes), which this call fixes as the memory's [`AccessWidth`] if it is not fixed yet.
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

    /// The shared memory (to [`send_buffer`](crate::send_buffer) it, or for atomic byte
    /// access when `T` is made of bytes: its [`AccessWidth`] is the array's, so the byte API
    /// refuses the memory of wider elements).
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

    /// A pointer to the first element (valid for `len` elements while `self` lives). Reading
    /// or writing through it is subject to the same conditions as
    /// [`slice_unchecked`](Self::slice_unchecked) / [`slice_mut_unchecked`](Self::slice_mut_unchecked).
    pub fn as_ptr(&self) -> *mut T {
        self.buf.as_ptr().cast()
    }

    fn check_range(&self, start: usize, end: usize, name: &'static str) -> Result<()> {
        check_range(start, end, self.len, name)
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

    /// A raw ndarray view of `shape` (C order): ndarray's pointer-like view, safe to make and
    /// to reshape or split (`split_at`, `index_axis`, ...), `unsafe` to read or write through
    /// (`deref_into_view`, `deref_into_view_mut`), with the conditions of
    /// [`slice_unchecked`](Self::slice_unchecked) / [`slice_mut_unchecked`](Self::slice_mut_unchecked)
    /// for the elements it covers. Shape errors name `shape`.
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

    /// The value, read under the lock.
    ///
    /// [`Error::OwnerDied`]: a process died holding the lock; nothing was read and the lock
    /// is free again (a retry reads; [`lock`](Self::lock) hands over a guard to inspect the
    /// value first).
    pub fn get(&self) -> Result<T> {
        Ok(*self.lock()?)
    }

    /// Sets the value under the lock. [`Error::OwnerDied`]: as for [`get`](Self::get), and
    /// nothing was written.
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
    /// error with `?` (which gives [`Error::OwnerDied`]).
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
                // word operations), so atomic access from any process is sound. Every access
                // has this atomic's size: the cell's RawArray fixed the memory's AccessWidth
                // to the integer's unit (its alignment, which equals its size for these
                // integers), and views of any other width are refused, in every process.
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

// ----------------------------------------------------------------------------------------------
// Crossing into another process as serde values (multiproc_core::handoff)
// ----------------------------------------------------------------------------------------------

/// The element type a shared array was made for, sent along so that the receiver cannot
/// reinterpret it by mistake (the sender and receiver run the same binary).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ElemType {
    size: u64,
    align: u64,
    name: String,
}

impl ElemType {
    pub(crate) fn of<T>() -> Self {
        ElemType {
            size: std::mem::size_of::<T>() as u64,
            align: std::mem::align_of::<T>() as u64,
            name: std::any::type_name::<T>().to_owned(),
        }
    }

    /// Errors (naming `T`) unless this is `T`.
    pub(crate) fn check<T>(&self) -> Result<()> {
        let want = Self::of::<T>();
        if *self != want {
            return Err(Error::invalid(
                "T",
                format!(
                    "the array was sent as {} ({} bytes, align {}), received as {} ({} bytes, \
                     align {})",
                    self.name, self.size, self.align, want.name, want.size, want.align
                ),
            ));
        }
        Ok(())
    }
}

/// Converts a length from the wire, naming `len`.
pub(crate) fn wire_len(len: u64) -> Result<usize> {
    usize::try_from(len).map_err(|_| Error::invalid("len", format!("{len} is too large")))
}

/// Through a multiproc transport, a `RawArray` travels as its buffer's descriptor, its length
/// and its element type; the receiver maps the same memory and gets a `RawArray` — atomic
/// access only, like every other handle. Outside a transport, serializing it is an error (see
/// [`multiproc_core::handoff`]).
impl<T: Pod> serde::Serialize for RawArray<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.buf, self.len as u64, ElemType::of::<T>()).serialize(s)
    }
}

/// Checks the element type (an error naming `T`), the descriptor (see [`ShmBuffer`]'s
/// `Deserialize`) and that `len` elements fit in it (naming `len`).
impl<'de, T: Pod> serde::Deserialize<'de> for RawArray<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (buf, len, elem) = <(ShmBuffer, u64, ElemType)>::deserialize(d)?;
        elem.check::<T>()
            .and_then(|()| RawArray::from_buffer(buf, wire_len(len)?))
            .map_err(|e| D::Error::custom(rename_buf(e, "T")))
    }
}

/// An `Array` travels as its elements and its lock; both ends then share both.
impl<T: Pod> serde::Serialize for Array<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.data, &self.lock).serialize(s)
    }
}

impl<'de, T: Pod> serde::Deserialize<'de> for Array<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (data, lock) = <(RawArray<T>, ProcessRLock)>::deserialize(d)?;
        Ok(Array::from_parts(data, lock))
    }
}

/// A `Value` travels as its cell and its lock; both ends then share both.
impl<T: Pod> serde::Serialize for Value<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.cell, &self.lock).serialize(s)
    }
}

impl<'de, T: Pod> serde::Deserialize<'de> for Value<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (cell, lock) = <(RawArray<T>, ProcessRLock)>::deserialize(d)?;
        Value::from_parts(cell, lock).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_and_atomic_ranges() {
        let a = RawArray::<u16>::from_slice(&[1, 2, 3]).unwrap();
        assert_eq!(a.to_vec(), [1, 2, 3]);
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
        assert_eq!(z.load(4).unwrap(), [1, 2, 3]);
        assert_eq!(z.to_vec()[..4], [[0; 3]; 4]);
        let it = RawArray::from_iter((0..10u64).map(|x| x * x)).unwrap();
        assert_eq!(it.load(9).unwrap(), 81);
    }

    #[test]
    fn atomic_copies_work_for_every_unit() {
        #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Zeroable, bytemuck::Pod)]
        #[repr(C, align(16))]
        struct Wide([u64; 4]);
        let w = RawArray::from_slice(&[Wide([1, 2, 3, 4]), Wide([5, 6, 7, 8])]).unwrap();
        assert_eq!(w.load(1).unwrap(), Wide([5, 6, 7, 8]));
        let h = RawArray::<u16>::from_iter(0..1000).unwrap();
        let mut out = [0u16; 3];
        h.read_range(997, &mut out).unwrap();
        assert_eq!(out, [997, 998, 999]);
        let f = RawArray::<f32>::zeros(10_000).unwrap();
        f.fill(2.5);
        assert!(f.to_vec().iter().all(|&x| x == 2.5));
        let b = RawArray::<i8>::zeros(3).unwrap();
        b.fill(-1);
        assert_eq!(b.to_vec(), [-1, -1, -1]);
        assert!(matches!(
            h.read_range(usize::MAX, &mut out),
            Err(Error::InvalidArgument { name: "start", .. })
        ));
    }

    #[test]
    fn from_buffer_is_safe_and_checks_the_length() {
        let a = RawArray::<u32>::from_slice(&[1, 2, 3]).unwrap();
        let b = RawArray::<u32>::from_buffer(a.into_buffer(), 3).unwrap();
        assert_eq!(b.to_vec(), [1, 2, 3]);
        let buf = b.into_buffer();
        // Same width (4-byte units): fine.
        let floats = RawArray::<f32>::from_buffer(buf, 3).unwrap();
        assert_eq!(floats.load(1).unwrap().to_bits(), 2);
        // Another width: refused, naming the buffer.
        let again = floats.buffer().try_clone().unwrap();
        assert!(matches!(
            RawArray::<u8>::from_buffer(again, 12),
            Err(Error::InvalidArgument { name: "buf", .. })
        ));
        assert!(matches!(
            RawArray::<u64>::from_buffer(floats.into_buffer(), 2),
            Err(Error::InvalidArgument { name: "len", .. })
        ));
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
        // SAFETY: nothing writes the array while `r` lives.
        let r = unsafe { a.slice_unchecked(0..4) }.unwrap();
        assert_eq!(r, [0.0, 2.0, 2.0, 0.0]);
        let (start, end) = (3, 1);
        // SAFETY: the call fails before making a reference.
        let reversed = unsafe { a.slice_unchecked(start..end) };
        assert!(matches!(
            reversed,
            Err(Error::InvalidArgument { name: "range", .. })
        ));
    }

    #[test]
    fn a_guard_lends_a_copy_and_writes_it_back_only_if_changed() {
        let a = Array::<u32>::from_slice(&[1, 2, 3]).unwrap();
        {
            let g = a.lock().unwrap();
            assert_eq!(*g, [1, 2, 3]);
            // Someone who ignores the lock (atomically) meanwhile: a clean guard does not undo it.
            a.get_obj().store(0, 10).unwrap();
            assert_eq!(g[0], 1, "the guard reads its own copy");
        }
        assert_eq!(a.to_vec().unwrap(), [10, 2, 3]);
        {
            let mut g = a.lock().unwrap();
            g[2] = 30;
            assert_eq!(a.get_obj().load(2).unwrap(), 3, "written back only on drop");
        }
        assert_eq!(a.to_vec().unwrap(), [10, 2, 30]);
        let (data, lock) = a.into_parts();
        let b = Array::from_parts(data, lock);
        assert_eq!(b.get(2).unwrap(), 30);
    }

    #[test]
    fn array_guards_do_not_alias() {
        let a = Array::<u8>::zeros(3).unwrap();
        let mut g = a.lock().unwrap();
        g[0] = 1;
        assert!(matches!(
            a.lock(),
            Err(LockError::Other(Error::InvalidArgument {
                name: "self",
                ..
            }))
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
        let (cell, lock) = n.into_parts();
        let again = Value::from_parts(cell, lock).unwrap();
        assert_eq!(again.get().unwrap(), -5);
        let two = RawArray::<i32>::zeros(2).unwrap();
        assert!(matches!(
            Value::from_parts(two, ProcessRLock::new().unwrap()),
            Err(Error::InvalidArgument { name: "cell", .. })
        ));
    }
}
