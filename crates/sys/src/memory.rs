//! Hints to the allocator and to the kernel's paging (they change how memory is backed, never
//! what it holds), and [`vec_from_bytes`], which fills fresh memory with its page faults
//! spread over several cores.

use std::mem::MaybeUninit;
use std::sync::{Mutex, PoisonError};
use std::thread;

use bytemuck::Pod;

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

/// The least a thread of its own is given to copy by [`vec_from_bytes`]: below this, starting
/// the thread would cost more than the page faults it takes off this one.
pub const PART: usize = 8 << 20;

/// The page size the parts of [`vec_from_bytes`] are aligned to (a larger page only means
/// that two threads may touch one).
const PAGE: usize = 4096;

/// The most threads one [`vec_from_bytes`] copies on, this one included.
const MAX_PARTS: usize = 4;

/// A new `Vec<T>`, allocated once at its exact length, holding the values whose in-memory
/// bytes are `bytes` (any alignment).
///
/// A large vector lands in fresh pages, and on a virtual machine faulting a fresh page in
/// costs several times the copy itself (1.7 µs per 4 KiB page on our 2-core VM, against a
/// warm copy of 10 GB/s). The faults of different pages proceed in parallel on different
/// cores, so from twice [`PART`] bytes on the copy is split into parts of at least that size,
/// each on a thread of its own (at most 4, and no more than the machine has cores); on our VM
/// two threads copied 100 MiB into fresh memory in 40–47 ms against 74–92 ms on one. A
/// thread the system refuses to start leaves its part to this one.
///
/// # Panics
///
/// If `T` is zero-sized or `bytes.len()` is not a whole number of `T`s.
///
/// ```
/// let values: Vec<u32> = multiproc_sys::memory::vec_from_bytes(&[1, 0, 0, 0, 2, 0, 0, 0]);
/// assert_eq!(values, if cfg!(target_endian = "little") { [1, 2] } else { [1 << 24, 2 << 24] });
/// ```
pub fn vec_from_bytes<T: Pod>(bytes: &[u8]) -> Vec<T> {
    let size = std::mem::size_of::<T>();
    assert!(
        size > 0 && bytes.len() % size == 0,
        "vec_from_bytes: {} bytes are not a whole number of {size}-byte values",
        bytes.len()
    );
    let len = bytes.len() / size;
    let mut v = Vec::<T>::with_capacity(len);
    let spare = &mut v.spare_capacity_mut()[..len];
    // SAFETY: `spare` is `len` values of `v`'s allocated, unused capacity, `bytes.len()`
    // bytes in all, mutably borrowed for this scope; any bit pattern is a valid
    // `MaybeUninit<u8>`, and a `u8`'s alignment is 1.
    let dst = unsafe {
        std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<MaybeUninit<u8>>(), bytes.len())
    };
    copy_spread(bytes, dst);
    // SAFETY: `copy_spread` wrote all `bytes.len()` bytes of the first `len` values, and `T`
    // is `Pod`: every bit pattern of its size is a valid `T`.
    unsafe { v.set_len(len) };
    v
}

/// How many parts [`vec_from_bytes`] splits a copy of `bytes` bytes into.
fn parts(bytes: usize) -> usize {
    (bytes / PART).clamp(1, MAX_PARTS.min(crate::thread::cpus_once()))
}

/// Copies `src` into `dst`, as [`vec_from_bytes`] fills its vector: from twice [`PART`] bytes
/// on, in parts of at least [`PART`] bytes on as many threads (at most 4, and no more than
/// the machine has cores), so that the page faults of a fresh `dst` — or, warm, the copy
/// itself — proceed in parallel; below that, in place.
///
/// # Panics
///
/// If the lengths differ.
///
/// ```
/// use std::mem::MaybeUninit;
///
/// let mut dst = [MaybeUninit::<u8>::uninit(); 3];
/// multiproc_sys::memory::copy_spread(&[1, 2, 3], &mut dst);
/// // SAFETY: every byte was written.
/// assert_eq!(unsafe { std::mem::transmute::<_, [u8; 3]>(dst) }, [1, 2, 3]);
/// ```
pub fn copy_spread(src: &[u8], dst: &mut [MaybeUninit<u8>]) {
    assert_eq!(
        src.len(),
        dst.len(),
        "copy_spread of slices of different lengths"
    );
    if parts(src.len()) == 1 {
        // No thread, no scope, no allocation: the codec copies every small vector this way.
        return copy(src, dst);
    }
    // Parts of whole pages, their bounds on page boundaries of `dst` (the first part also
    // takes the bytes before its first boundary), so that no page is faulted in by two
    // threads.
    let part = src
        .len()
        .div_ceil(parts(src.len()))
        .next_multiple_of(PAGE)
        .max(PAGE);
    let lead = dst.as_ptr().align_offset(PAGE).min(src.len());
    // Each part in a slot, so that a part whose thread did not start is still at hand here.
    let mut slots: Vec<Mutex<Part<'_>>> = Vec::new();
    let (mut src, mut dst) = (src, dst);
    let mut next = lead + part;
    while !src.is_empty() {
        let n = next.min(src.len());
        let (s, src_rest) = src.split_at(n);
        let (d, dst_rest) = dst.split_at_mut(n);
        slots.push(Mutex::new(Some((s, d))));
        (src, dst, next) = (src_rest, dst_rest, part);
    }
    thread::scope(|scope| {
        for slot in slots.iter().skip(1) {
            let started = thread::Builder::new()
                .name("multiproc-copy".into())
                .spawn_scoped(scope, || copy_part(slot));
            if started.is_err() {
                copy_part(slot);
            }
        }
        if let Some(first) = slots.first() {
            copy_part(first);
        }
    });
}

/// A part of [`copy_spread`]'s copy, until a thread takes it.
type Part<'a> = Option<(&'a [u8], &'a mut [MaybeUninit<u8>])>;

/// Copies the part in `slot`, unless a thread took it already.
fn copy_part(slot: &Mutex<Part<'_>>) {
    let part = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some((s, d)) = part {
        copy(s, d);
    }
}

/// One part of [`copy_spread`].
fn copy(src: &[u8], dst: &mut [MaybeUninit<u8>]) {
    assert_eq!(src.len(), dst.len());
    // SAFETY: both are valid for `src.len()` bytes (checked above), `dst` for writes; they
    // cannot overlap, as `dst` is borrowed mutably while `src` is borrowed.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), src.len())
    };
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

    #[test]
    fn vec_from_bytes_copies_every_byte_at_any_alignment() {
        let bytes: Vec<u8> = (0..2 * PART + 3 * 4096 + 24)
            .map(|i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes()[7])
            .collect();
        // Lengths below one part, at two and at three parts (more than one thread where the
        // machine has the cores), each from an odd offset.
        for len in [0, 8, 4096 + 16, 2 * PART, 2 * PART + 3 * 4096 + 16] {
            let src = &bytes[1..1 + len];
            let v: Vec<u64> = vec_from_bytes(src);
            assert_eq!((v.len(), v.capacity()), (len / 8, len / 8));
            assert_eq!(bytemuck::cast_slice::<u64, u8>(&v), src);
            let w: Vec<u8> = vec_from_bytes(src);
            assert_eq!(w, src);
        }
    }

    #[test]
    fn a_large_copy_is_split_over_the_cores_in_whole_parts() {
        let cores = crate::thread::cpus_once();
        assert_eq!(parts(0), 1);
        assert_eq!(parts(2 * PART - 1), 1);
        assert_eq!(parts(2 * PART), 2.min(cores));
        assert_eq!(parts(100 * PART), 4.min(cores));
    }

    #[test]
    #[should_panic(expected = "not a whole number of 8-byte values")]
    fn ragged_bytes_are_refused() {
        let _: Vec<f64> = vec_from_bytes(&[0; 12]);
    }
}
