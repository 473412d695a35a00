//! Shared arrays in reserved huge pages handed to spawned processes (their descriptors cross
//! the socket; the child maps them afresh): the child sees hugetlb pages and the same memory.
//! Needs root to reserve the pages; skips with a message otherwise. (Fork and a received
//! descriptor without a pool: `crates/shared-array/tests/huge_pages.rs`.)

use multiproc::shared_array::{FrozenArray, PageKind, RawArray};
use multiproc::spawn::Process;
use multiproc_sys::pages::{TempSetting, HUGE_MIN};

// This test binary doubles as the spawned children.
multiproc::spawn::test_worker!();

/// u64s enough for a file past the huge-page threshold.
const BIG: usize = 2 * HUGE_MIN / 8;

fn write_in_child(a: RawArray<u64>) {
    assert_eq!(a.pages(), PageKind::HugeTlb);
    assert_eq!(a.load(BIG - 1).unwrap(), 5);
    a.write_range(0, &[1, 2, 3]).unwrap();
}

fn sum_in_child((f, expected): (FrozenArray<u64>, u64)) {
    assert_eq!(f.pages(), PageKind::HugeTlb);
    assert_eq!(f.iter().sum::<u64>(), expected);
}

#[test]
fn hugetlb_arrays_cross_into_spawned_processes() {
    let pool = match TempSetting::hugetlb_pages(16) {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("skipped: cannot reserve hugetlb pages here ({e})");
            return;
        }
    };
    let a = RawArray::<u64>::zeros(BIG).unwrap();
    assert_eq!(a.pages(), PageKind::HugeTlb);
    a.store(BIG - 1, 5).unwrap();
    let child = Process::new(write_in_child, a.try_clone().unwrap())
        .start()
        .unwrap();
    child.join().unwrap();
    assert_eq!(child.exitcode(), Some(0));
    assert_eq!(a.load(2).unwrap(), 3);

    let values: Vec<u64> = (0..BIG as u64).collect();
    let frozen = FrozenArray::from_slice(&values).unwrap();
    assert_eq!(frozen.pages(), PageKind::HugeTlb);
    let child = Process::new(sum_in_child, (frozen, values.iter().sum::<u64>()))
        .start()
        .unwrap();
    child.join().unwrap();
    assert_eq!(child.exitcode(), Some(0));
    drop((a, pool));
}
