//! `retain_freed_memory`: a worker keeps the memory its tasks freed for its next tasks (up to
//! the option's bytes), or hands it back with `0`.

use super::options::pool_with;
use super::*;

/// The block the checks allocate and free in a worker, in MiB: above glibc's largest `mmap`
/// threshold (32 MiB), so that glibc's own policy maps it afresh and unmaps it on free, and
/// within the 64 MiB that a thread's own arena can hold.
const BLOCK_MIB: usize = 48;

/// The 4 KiB pages of the block.
const BLOCK_PAGES: u64 = (BLOCK_MIB as u64) << 8;

/// Whether the C library is glibc, whose allocator the option tunes (elsewhere it changes
/// nothing).
const GLIBC: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// What a block of `mib` MiB costs the worker that runs this: it allocates the block, writes
/// every page, frees it, and returns the minor page faults that took and how many bytes more
/// the worker holds resident after the free than before the allocation.
pub fn block_cost(mib: usize) -> (u64, u64) {
    let pid = std::process::id();
    let faults = || {
        procfs::stat(pid)
            .expect("the worker's own /proc/PID/stat")
            .minor_faults
    };
    let resident = || procfs::resident_bytes(pid).expect("the worker's own /proc/PID/statm");
    let (before, faults_before) = (resident(), faults());
    let block = vec![1u8; mib << 20];
    std::hint::black_box(&block);
    drop(block);
    let faults = faults() - faults_before;
    (faults, resident().saturating_sub(before))
}

fn one_worker(retain: Option<u64>) -> PoolOptions {
    PoolOptions {
        processes: Some(1),
        retain_freed_memory: retain,
        ..PoolOptions::default()
    }
}

/// By default a worker keeps a freed block of 48 MiB resident, and its next task allocates
/// it again without faulting its pages in afresh (on glibc; elsewhere there is nothing to
/// check).
pub fn a_worker_keeps_freed_memory_for_its_next_task<E: Executor>(make: MakeWith<E>) {
    if !GLIBC {
        return;
    }
    let p = pool_with(make, one_worker(None));
    let (_, kept) = p.apply(block_cost, BLOCK_MIB).unwrap();
    assert!(
        kept >= ((BLOCK_MIB as u64) << 20) * 3 / 4,
        "the worker gave back the {BLOCK_MIB} MiB its task freed: it holds {kept} bytes more"
    );
    let (faults, _) = p.apply(block_cost, BLOCK_MIB).unwrap();
    assert!(
        faults < BLOCK_PAGES / 4,
        "the second {BLOCK_MIB} MiB block took {faults} page faults: fresh pages, not the \
         memory the first one freed"
    );
}

/// `retain_freed_memory(0)` leaves the C library's policy: the freed 48 MiB block goes back
/// to the kernel.
pub fn retain_freed_memory_zero_gives_freed_memory_back<E: Executor>(make: MakeWith<E>) {
    let p = pool_with(make, one_worker(Some(0)));
    for _ in 0..2 {
        let (_, kept) = p.apply(block_cost, BLOCK_MIB).unwrap();
        assert!(
            kept <= ((BLOCK_MIB as u64) << 20) / 4,
            "with retain_freed_memory(0) the worker kept {kept} bytes of a freed \
             {BLOCK_MIB} MiB block"
        );
    }
}

/// `retain_freed_memory(16 MiB)`: of a freed 48 MiB block, the worker keeps at most about
/// 16 MiB (glibc keeps the top of a heap up to that size, or gives back a whole heap of a
/// thread's arena), not all of it.
pub fn retain_freed_memory_keeps_at_most_its_bytes<E: Executor>(make: MakeWith<E>) {
    if !GLIBC {
        return;
    }
    const RETAIN: u64 = 16 << 20;
    let p = pool_with(make, one_worker(Some(RETAIN)));
    for _ in 0..2 {
        let (_, kept) = p.apply(block_cost, BLOCK_MIB).unwrap();
        assert!(
            kept <= RETAIN + (8 << 20),
            "with retain_freed_memory({RETAIN}) the worker kept {kept} bytes of a freed \
             {BLOCK_MIB} MiB block"
        );
    }
}
