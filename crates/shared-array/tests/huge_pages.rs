//! Shared arrays in huge pages where the system offers them, ordinary pages otherwise — and
//! the same behaviour either way, in this process, in forked children and in a process that
//! receives the descriptor (as a spawned worker does).
//!
//! The huge-page tests change the system's settings for their duration (they need root) and
//! skip with a message where they cannot; one at a time, under `SETTINGS`.

mod common;

use std::sync::Mutex;

use common::fork_child;
use multiproc_shared_array::{recv_buffer, send_buffer, FrozenArray, LocalArray, RawArray};
use multiproc_sys::pages::{self, PageKind, ShmemThp, TempSetting, HUGE_MIN};

/// Held by every test here: the policy they read must not change under them.
static SETTINGS: Mutex<()> = Mutex::new(());

/// Enough u64s for a file past the huge-page threshold (8 MiB).
const BIG: usize = 2 * HUGE_MIN / 8;

/// The system's shmem in transparent huge pages, KiB (`ShmemHugePages` of `/proc/meminfo`).
fn shmem_huge_kib() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    multiproc_sys::procfs::kb_field(&meminfo, "ShmemHugePages").unwrap() / 1024
}

/// Checks that `a` works in this process, in a forked child, and in a child that receives
/// its descriptor over a socket, and that every handle reports `kind`.
fn works_everywhere(a: &RawArray<u64>, kind: PageKind) {
    assert_eq!(a.pages(), kind);
    assert_eq!(a.buffer().pages(), kind);
    a.store(BIG - 1, 5).unwrap();
    // SAFETY: the child only stores atomically into the shared array.
    let child = unsafe {
        fork_child(|| {
            assert_eq!(a.pages(), kind);
            assert_eq!(a.load(BIG - 1).unwrap(), 5);
            a.write_range(0, &[1, 2, 3]).unwrap();
        })
    };
    child.wait().unwrap();
    assert_eq!(a.load(2).unwrap(), 3);

    let (parent_end, child_end) = std::os::unix::net::UnixStream::pair().unwrap();
    let received = move || {
        let buf = recv_buffer(&child_end).unwrap();
        assert_eq!(buf.pages(), kind);
        let b = RawArray::<u64>::from_buffer(buf, BIG).unwrap();
        assert_eq!(b.load(BIG - 1).unwrap(), 5);
        b.store(BIG / 2, 9).unwrap();
    };
    // SAFETY: the child uses only its own socket end and the buffer it receives.
    let child = unsafe { fork_child(received) };
    send_buffer(&parent_end, a.buffer()).unwrap();
    child.wait().unwrap();
    assert_eq!(a.load(BIG / 2).unwrap(), 9);
}

/// A frozen copy of `BIG` values reports `kind` and reads back in a forked child.
fn freezes(kind: PageKind) {
    let values: Vec<u64> = (0..BIG as u64).collect();
    let frozen = FrozenArray::from_slice(&values).unwrap();
    assert_eq!(frozen.pages(), kind);
    let first_wrong = frozen.iter().zip(&values).position(|(a, b)| a != b);
    assert_eq!((frozen.len(), first_wrong), (values.len(), None));
    // SAFETY: the child only reads the sealed array.
    let child = unsafe {
        fork_child(|| assert_eq!(frozen.iter().sum::<u64>(), values.iter().sum::<u64>()))
    };
    child.wait().unwrap();
}

#[test]
fn arrays_get_what_the_system_offers_and_small_ones_ordinary_pages() {
    let _one = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(RawArray::<u64>::zeros(16).unwrap().pages(), PageKind::Base);
    let expected = pages::policy().choose(BIG * 8 + 8);
    let a = RawArray::<u64>::zeros(BIG).unwrap();
    works_everywhere(&a, expected);
    freezes(pages::policy().choose(BIG * 8 + 8));
}

#[test]
fn reserved_huge_pages_back_big_arrays_across_processes() {
    let _one = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    let pool = match TempSetting::hugetlb_pages(16) {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("skipped: cannot reserve hugetlb pages here ({e})");
            return;
        }
    };
    let a = RawArray::<u64>::zeros(BIG).unwrap();
    works_everywhere(&a, PageKind::HugeTlb);
    // Sealing a hugetlb file read-only works as for shmem, once the writable mapping is gone.
    let frozen = a.freeze().map_err(|e| e.to_string()).unwrap();
    assert_eq!(frozen.pages(), PageKind::HugeTlb);
    assert_eq!(frozen[BIG / 2], 9);
    drop(frozen);
    freezes(PageKind::HugeTlb);
    // A LocalArray in hugetlb pages: a forked child's copy is replaced by private zeros of the
    // same (whole huge pages) length, and the parent's elements stay its own.
    let mut local = LocalArray::<u64>::zeros(BIG).unwrap();
    local.fill(4);
    let slice: &[u64] = local.as_slice();
    // SAFETY: the child only reads its own (detached) copy of the slice.
    let child = unsafe { fork_child(|| assert!(slice.iter().all(|&x| x == 0))) };
    child.wait().unwrap();
    assert!(local.iter().all(|&x| x == 4));
    assert_eq!(local.share().pages(), PageKind::HugeTlb);
    drop(pool);
}

#[test]
fn advised_transparent_huge_pages_back_big_arrays_across_processes() {
    let _one = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    let thp = match TempSetting::shmem_thp(ShmemThp::Advise) {
        Ok(thp) => thp,
        Err(e) => {
            eprintln!("skipped: cannot set shmem THP to advise here ({e})");
            return;
        }
    };
    if pages::policy().hugetlb_available > 0 {
        eprintln!("skipped: hugetlb pages are free here, so they would be chosen first");
        return;
    }
    let a = RawArray::<u64>::zeros(BIG).unwrap();
    works_everywhere(&a, PageKind::Transparent);
    drop(a);
    // The frozen copy's file really is in huge pages (written through an advised mapping:
    // `write` would have filled it in 4 KiB pages).
    let before = shmem_huge_kib();
    let values: Vec<u64> = (0..BIG as u64).collect();
    let frozen = FrozenArray::from_slice(&values).unwrap();
    let grown = shmem_huge_kib().saturating_sub(before);
    assert!(grown >= 4096, "ShmemHugePages grew by {grown} KiB only");
    drop(frozen);
    freezes(PageKind::Transparent);
    drop(thp);
}
