//! Atomic element copies into and out of shared memory, in the array's atomic unit (its
//! [`AccessWidth`]): what makes every safe access of a [`RawArray`](super::RawArray) sound.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use bytemuck::Pod;
use multiproc_core::{AccessWidth, Error};

// Atomic element copies
// ----------------------------------------------------------------------------------------------

/// Copies `src` into shared memory at `dst` with atomic stores of the widest unit that `T`'s
/// alignment allows (its alignment, at most 8 bytes; a Pod type's size is a multiple of it).
///
/// # Safety
///
/// `dst` is valid for writes of `src.len()` elements and aligned for `T`; every other access to
/// that memory, in any thread or process, is atomic or excluded by whoever is entitled to it.
#[inline]
pub(super) unsafe fn atomic_copy_in<T: Pod>(dst: *mut T, src: &[T]) {
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
#[inline]
pub(super) unsafe fn atomic_copy_out<T: Pod>(src: *const T, dst: &mut [T]) {
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
#[inline]
pub(super) fn unit_of<T>() -> usize {
    std::mem::align_of::<T>().min(8)
}

/// The [`AccessWidth`] of a `RawArray<T>`'s memory: that of its atomic unit.
pub(crate) fn width_of<T>() -> AccessWidth {
    AccessWidth::of_size(unit_of::<T>()).expect("alignments are powers of two")
}

/// Renames a width refusal (an error naming `buf`) to the caller's argument.
pub(super) fn rename_buf(e: Error, name: &'static str) -> Error {
    match e {
        Error::InvalidArgument {
            name: "buf",
            reason,
        } => Error::InvalidArgument { name, reason },
        e => e,
    }
}

// ----------------------------------------------------------------------------------------------
