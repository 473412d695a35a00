//! [`FrozenArray`]: shared memory that can never change again, so every process may hold
//! plain slices and views of it — the kernel, not a promise, rules out writers.

use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use bytemuck::Pod;
use multiproc_core::{Error, Result, SharedBuffer};
use multiproc_sys::memfd::{self, SealFlag};
use multiproc_sys::pages::{self, PageKind};
use nix::errno::Errno;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use crate::array::bytes_for;
use crate::buffer::{check_memfd, io, new_memfd, rename};
use crate::ShmBuffer;

/// A read-only array of `T` in shared memory, the same bytes in every process that holds it:
/// plain `&[T]` and ndarray views, safely, from any thread of any process.
///
/// Made by [`LocalArray::freeze`](crate::LocalArray::freeze) or
/// [`RawArray::freeze`](crate::RawArray::freeze) (no copy), or
/// [`from_slice`](Self::from_slice) / [`from_iter`](Self::from_iter). Freezing seals the
/// memfd with `F_SEAL_WRITE`: the kernel grants that seal only when no process maps the file
/// writably, and from then on refuses every way of changing it — a writable mapping,
/// `write(2)`, hole punching, resizing — in every process. So no reference handed out here can
/// ever see a write: the soundness argument is the kernel's.
///
/// It is the zero-copy, `unsafe`-free form of the tutorial's read-only sharing: freeze the
/// data, put it in an `Inherited` static (or capture it, or send it to a spawned worker: it is
/// `Serialize`), and let the workers slice it.
///
/// ```
/// use multiproc_shared_array::{FrozenArray, LocalArray};
///
/// let mut data = LocalArray::<f64>::zeros(1000)?;
/// for (i, x) in data.iter_mut().enumerate() {
///     *x = i as f64;
/// }
/// let data: FrozenArray<f64> = data.freeze()?; // no copy
/// let chunk: &[f64] = &data[100..200]; // a plain slice, in any process
/// assert_eq!(chunk.iter().sum::<f64>(), 14_950.0);
/// # Ok::<(), multiproc_core::Error>(())
/// ```
///
/// It is `Send + Sync` (for `Send`/`Sync` elements), so it fits a `static`:
///
/// ```
/// use multiproc_core::Inherited;
/// use multiproc_shared_array::FrozenArray;
///
/// static INPUT: Inherited<FrozenArray<f64>> = Inherited::new("INPUT");
/// INPUT.set(FrozenArray::from_slice(&[1.0, 2.0, 3.0])?)?;
/// assert_eq!(INPUT.get()?[..].iter().sum::<f64>(), 6.0);
/// # Ok::<(), multiproc_core::Error>(())
/// ```
pub struct FrozenArray<T: Pod> {
    ptr: NonNull<T>,
    len: usize,
    map_len: usize,
    fd: OwnedFd,
    pages: PageKind,
    _t: PhantomData<T>,
}

// SAFETY: the struct owns a read-only mapping (like a `Box<[T]>` that nobody can write) and a
// descriptor; sending it sends the right to read `T`s.
unsafe impl<T: Pod + Send> Send for FrozenArray<T> {}
// SAFETY: `&FrozenArray` only lends `&[T]` of memory that no one, in any process, can change.
unsafe impl<T: Pod + Sync> Sync for FrozenArray<T> {}

impl<T: Pod> std::fmt::Debug for FrozenArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenArray")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .finish()
    }
}

impl<T: Pod> FrozenArray<T> {
    /// A frozen copy of `values` (not empty: an error naming `values`).
    ///
    /// The bytes are written into the memfd with `pwrite` before anything maps it: the kernel
    /// fills its pages directly, instead of taking a page fault per 4 KiB page of a writable
    /// mapping (1 MiB: 225 µs against 530 µs through a mapping, criterion on our 2-core machine).
    /// Memory in huge pages ([`pages`](Self::pages)) is written through a mapping instead: a
    /// fault per 2 MiB, and the only way to get transparent huge pages when THP is `advise`.
    pub fn from_slice(values: &[T]) -> Result<Self> {
        let bytes = bytes_for::<T>(values.len(), "values")?;
        let (fd, map_len, pages) = new_memfd(bytes).map_err(|e| rename(e, "values"))?;
        let raw: &[u8] = bytemuck::cast_slice(values);
        if pages != PageKind::Base {
            // hugetlbfs has no `write`, and shmem's `write` fills a file in 4 KiB pages unless
            // THP is `always`: copy through a mapping, which faults in 2 MiB at a time.
            let buf = ShmBuffer::map(fd, bytes, map_len, pages)?;
            // SAFETY: the buffer was made just now and no other handle of it exists in any
            // process, so plain writes into its `bytes >= values.len()` mapped bytes race with
            // nothing; `values` is memory of ours outside the new mapping.
            unsafe {
                std::ptr::copy_nonoverlapping(raw.as_ptr(), buf.as_ptr(), raw.len());
            }
            return Self::seal(buf, values.len()).map_err(|failure| failure.error);
        }
        let mut rest = raw;
        while !rest.is_empty() {
            let offset = libc::off_t::try_from(bytes - rest.len())
                .map_err(|_| Error::invalid("values", "too large for a file offset"))?;
            match nix::sys::uio::pwrite(&fd, rest, offset) {
                Ok(0) => return Err(io(Errno::EIO)),
                Ok(n) => rest = &rest[n..],
                Err(Errno::EINTR) => {}
                Err(e) => return Err(io(e)),
            }
        }
        // No mapping exists, so the kernel grants the write seal at once.
        memfd::add_seals(fd.as_fd(), SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SEAL).map_err(io)?;
        Self::map(fd, values.len(), map_len, pages)
    }

    /// The elements of `iter`, frozen (at least one: an error naming `iter`).
    #[allow(clippy::should_implement_trait)] // fallible, unlike FromIterator
    pub fn from_iter(iter: impl IntoIterator<Item = T>) -> Result<Self> {
        let values: Vec<T> = iter.into_iter().collect();
        if values.is_empty() {
            bytes_for::<T>(0, "iter")?;
        }
        Self::from_slice(&values)
    }

    /// Seals `buf` (whose first `len` elements become the array) against writing and maps it
    /// read-only. On failure, gives back the buffer (mapped again, writable) when it can.
    pub(crate) fn seal(buf: ShmBuffer, len: usize) -> std::result::Result<Self, SealFailure> {
        let (fd, blen, map_len, pages) = buf.into_fd();
        let sealed = memfd::add_seals(fd.as_fd(), SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SEAL);
        if let Err(e) = sealed {
            let busy = e == Errno::EBUSY;
            let error = if busy {
                Error::invalid(
                    "self",
                    "another writable mapping of this memory exists (another handle in this \
                     process, or a process that inherited or received it and still runs — a \
                     pool's workers live until the pool is dropped); drop them all first",
                )
            } else {
                io(e)
            };
            return Err(SealFailure {
                buf: ShmBuffer::map(fd, blen, map_len, pages).ok(),
                error,
                busy,
            });
        }
        Self::map(fd, len, map_len, pages).map_err(|error| SealFailure {
            buf: None,
            error,
            busy: false,
        })
    }

    /// Maps a sealed descriptor read-only.
    fn map(fd: OwnedFd, len: usize, map_len: usize, pages: PageKind) -> Result<Self> {
        let length = NonZeroUsize::new(map_len).ok_or_else(|| Error::invalid("len", "is 0"))?;
        // Private, not shared: the file is sealed against writes, so a private read-only
        // mapping sees exactly what a shared one would (the same page-cache pages, never
        // copied: nothing can write them), and Linux before 6.7 refuses any MAP_SHARED
        // mapping of a write-sealed memfd (EPERM), read-only or not.
        // SAFETY: a fresh read-only mapping at an address the kernel chooses cannot alias any
        // Rust object; the file is at least `map_len` bytes and sealed against shrinking and
        // writing, so every mapped byte stays backed and unchanged.
        let ptr = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ,
                MapFlags::MAP_PRIVATE,
                &fd,
                0,
            )
        }
        .map_err(io)?;
        // SAFETY: the range is the mapping just made.
        unsafe { pages::advise(ptr, map_len, pages) };
        Ok(FrozenArray {
            ptr: ptr.cast(),
            len,
            map_len,
            fd,
            pages,
            _t: PhantomData,
        })
    }

    /// Attaches to a received descriptor: it must be a memfd sealed against writing and
    /// shrinking, holding at least `len` elements. Errors name `name`.
    pub(crate) fn from_fd(fd: OwnedFd, len: usize, name: &'static str) -> Result<Self> {
        let bytes = bytes_for::<T>(len, "len")?;
        let info = check_memfd(fd.as_fd(), bytes, name)?;
        if info.seals & SealFlag::F_SEAL_WRITE.bits() == 0 {
            return Err(Error::invalid(
                name,
                "the memfd is not sealed against writing, so it is not a FrozenArray",
            ));
        }
        let pages = memfd::page_kind(fd.as_fd(), info.bytes).map_err(io)?;
        Self::map(fd, len, info.bytes, pages)
    }

    /// The pages behind the array: huge pages where the system offered them when its memory
    /// was made (see [`multiproc_sys::pages`]), ordinary ones otherwise.
    pub fn pages(&self) -> PageKind {
        self.pages
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
        // SAFETY: the mapping holds at least `len` initialised elements of a Pod type (sizes
        // were checked when it was made or received), page-aligned, mapped while `self` lives,
        // and sealed: no process can change them (see the type's docs).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The memfd behind the array (sealed: reading it is all anyone can do).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(feature = "ndarray")]
impl<T: Pod> FrozenArray<T> {
    /// An ndarray view of any dimension, C order: `a.view((4, 4, 4))?`. The shape's element
    /// count must equal [`len`](Self::len) (an error naming `shape` otherwise).
    pub fn view<D: ndarray::Dimension>(
        &self,
        shape: impl ndarray::IntoDimension<Dim = D>,
    ) -> Result<ndarray::ArrayView<'_, T, D>> {
        crate::array::view_of(self.as_slice(), shape)
    }
}

impl<T: Pod> Deref for FrozenArray<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Pod> AsRef<[T]> for FrozenArray<T> {
    fn as_ref(&self) -> &[T] {
        self
    }
}

impl<T: Pod> AsFd for FrozenArray<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<T: Pod> Drop for FrozenArray<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `map` with this address and length and is
        // unmapped only here; `&mut self` means no borrow of it outlives this call.
        let _ = unsafe { munmap(self.ptr.cast(), self.map_len) };
    }
}

/// Why [`FrozenArray::seal`] failed, with the buffer when it could be mapped again.
pub(crate) struct SealFailure {
    pub(crate) buf: Option<ShmBuffer>,
    pub(crate) error: Error,
    /// `EBUSY`: some process still maps the memory writably.
    pub(crate) busy: bool,
}

/// Freezing failed; the error says why, and the array comes back (when it could be mapped
/// again) so nothing is lost. Converts into [`Error`] for `?`.
pub struct FreezeError<A> {
    pub(crate) error: Error,
    pub(crate) array: Option<A>,
}

impl<A> FreezeError<A> {
    /// Why freezing failed.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The array that was to be frozen, unchanged (`None` only if the system could not map it
    /// again after a failed seal).
    pub fn into_array(self) -> Option<A> {
        self.array
    }

    /// The error alone.
    pub fn into_error(self) -> Error {
        self.error
    }
}

impl<A> std::fmt::Debug for FreezeError<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreezeError")
            .field("error", &self.error)
            .field("array_returned", &self.array.is_some())
            .finish()
    }
}

impl<A> std::fmt::Display for FreezeError<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot freeze the array: {}", self.error)
    }
}

impl<A> std::error::Error for FreezeError<A> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<A> From<FreezeError<A>> for Error {
    fn from(e: FreezeError<A>) -> Self {
        e.error
    }
}

// ----------------------------------------------------------------------------------------------
// Crossing into another process as a serde value (multiproc_core::handoff)
// ----------------------------------------------------------------------------------------------

/// Through a multiproc transport, a `FrozenArray` travels as a [`RawArray`](crate::RawArray)
/// does — its memory's descriptor and length, its length and its element type — and the
/// receiver maps the same (immutable) memory read-only.
impl<T: Pod> serde::Serialize for FrozenArray<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let buffer = crate::buffer::BufferOut {
            fd: self.fd.as_fd(),
            len: (self.len * std::mem::size_of::<T>()) as u64,
        };
        serde::Serialize::serialize(
            &(buffer, self.len as u64, crate::array::ElemType::of::<T>()),
            s,
        )
    }
}

/// Checks the element type (naming `T`), and that the descriptor is a memfd sealed against
/// writing and shrinking that holds `len` elements (naming `fd`; an impossible length names
/// `len`).
impl<'de, T: Pod> serde::Deserialize<'de> for FrozenArray<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (buffer, len, elem) = <(crate::buffer::BufferIn, u64, crate::array::ElemType) as serde::Deserialize>::deserialize(d)?;
        elem.check::<T>()
            .and_then(|()| FrozenArray::from_fd(buffer.fd, crate::array::wire_len(len)?, "fd"))
            .map_err(D::Error::custom)
    }
}
