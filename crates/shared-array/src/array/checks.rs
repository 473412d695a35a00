//! Checked sizes, shapes and ranges of typed shared memory: the arithmetic every array type
//! (`RawArray`, `LocalArray`, `FrozenArray`) does before touching memory.

use multiproc_core::{Error, Result};

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
