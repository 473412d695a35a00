//! Hints to the allocator and to the kernel's paging: they change how memory is backed, never
//! what it holds.

use std::mem::MaybeUninit;

/// A glibc `malloc` tunable (see `mallopt(3)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MallocParam {
    /// `M_MMAP_MAX`: how many allocations may be served by `mmap` at once (0: none, so large
    /// allocations come from the heap and stay there when freed).
    MmapMax,
    /// `M_TRIM_THRESHOLD`: how much free memory at the top of the heap glibc keeps before it
    /// returns some to the kernel.
    TrimThreshold,
    /// `M_TOP_PAD`: how much free memory at the top of the heap glibc keeps when it does
    /// return some (and how much more it asks for when the heap grows, in address space).
    TopPad,
}

/// Sets a glibc `malloc` tunable (`mallopt`); returns whether it was accepted. Always `false`
/// where the C library is not glibc.
pub fn mallopt(param: MallocParam, value: i32) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let param = match param {
            MallocParam::MmapMax => libc::M_MMAP_MAX,
            MallocParam::TrimThreshold => libc::M_TRIM_THRESHOLD,
            MallocParam::TopPad => libc::M_TOP_PAD,
        };
        // SAFETY: mallopt takes two integers and only changes glibc's allocation policy,
        // under malloc's own lock, so it is safe to call while other threads allocate.
        unsafe { libc::mallopt(param, value) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = (param, value);
        false
    }
}

/// Makes glibc keep up to `bytes` of freed memory for later allocations instead of handing it
/// back to the kernel: no allocation is served by a fresh `mmap` any more (`M_MMAP_MAX` 0,
/// so large blocks come from the heap, where a freed block stays), and up to `bytes` free at
/// the top of a heap stay there (`M_TRIM_THRESHOLD` and `M_TOP_PAD`). Returns whether glibc
/// took all three settings; `false`, and nothing changed, where the C library is not glibc.
///
/// For the whole process, for good: call it only in a process whose allocator is yours to
/// tune (a pool's worker, never a library user's process). A thread other than the main one
/// allocates from its own arena, whose heaps hold at most 64 MiB each: a larger block is
/// still mapped afresh there, whatever these settings.
pub fn retain_freed(bytes: i32) -> bool {
    // All three, in this order: large blocks stop being mapped only once freed memory at the
    // top is kept, so no block is handed back between the calls.
    mallopt(MallocParam::TrimThreshold, bytes)
        & mallopt(MallocParam::TopPad, bytes)
        & mallopt(MallocParam::MmapMax, 0)
}

/// Advises the kernel to back the whole 2 MiB-aligned huge pages inside `memory` with
/// transparent huge pages (`madvise(MADV_HUGEPAGE)`), as numpy does for large arrays; the
/// parts before the first and after the last such page are left alone. Returns whether the
/// advice was given and taken (`false`: no whole huge page inside, or THP unavailable, which
/// changes nothing). Pass a fresh allocation's spare capacity
/// (`Vec::spare_capacity_mut`) before writing to it.
pub fn advise_hugepages<T>(memory: &mut [MaybeUninit<T>]) -> bool {
    const HUGE: usize = 2 << 20;
    let start = memory.as_ptr() as usize;
    let first = start.next_multiple_of(HUGE);
    let end = (start + std::mem::size_of_val(memory)) / HUGE * HUGE;
    if end <= first {
        return false;
    }
    // SAFETY: [first, end) lies inside `memory`, which is mutably borrowed for the call, and is
    // page-aligned; MADV_HUGEPAGE only changes how the kernel backs the range, never its
    // contents, so no reference to that memory is invalidated.
    let rc = unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_change_nothing_visible() {
        let _ = mallopt(MallocParam::TrimThreshold, 128 << 10);
        let mut v: Vec<u64> = Vec::with_capacity(1 << 20);
        let _ = advise_hugepages(v.spare_capacity_mut());
        v.extend(0..1 << 20);
        assert_eq!(v[12345], 12345);
        assert!(!advise_hugepages(
            &mut Vec::<u8>::with_capacity(16).spare_capacity_mut()[..16]
        ));
    }
}
