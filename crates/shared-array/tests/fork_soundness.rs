//! The soundness rules against the workspace's *safe* forks (`multiproc_fork::Process::start`,
//! which runs any `FnOnce() + Send` closure — borrowing allowed — in a child, and `ForkPool`,
//! whose workers reach statics), run in the multithreaded test process.
//!
//! What must hold: nothing a forked child can reach lets it write memory that the parent
//! treats as its own (`LocalArray` slices, `ArrayGuard` slices), shared handles work across the
//! fork (`RawArray`, `FrozenArray`), and freezing is refused while another process could still
//! write.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use multiproc_core::{Error, Event, Executor, Inherited};
use multiproc_fork::{ForkPool, Process};
use multiproc_shared_array::{Array, FrozenArray, LocalArray, ProcessEvent, RawArray, Value};

/// Runs `f` in a forked child (safe API) and fails the test if the child failed.
fn in_child(f: impl FnOnce() + Send) {
    let child = Process::from_closure(f).start().expect("fork");
    child.join().expect("join");
    child.check().expect("the child succeeded");
}

#[test]
fn a_local_slice_captured_by_a_fork_is_the_childs_own_zeroed_memory() {
    let mut local = LocalArray::<u64>::from_iter(1..=1000).unwrap();
    let seen = Value::<u64>::new(u64::MAX).unwrap();
    let seen_ref = &seen;
    let slice: &mut [u64] = local.as_mut_slice();
    let child = Process::from_closure(move || {
        // The parent's elements are 1..=1000; the child's copy of the reference sees zeros.
        seen_ref.set(slice.iter().sum()).unwrap();
        // Writes stay in the child (with a shared mapping this would race the parent's fill).
        slice.fill(7);
        assert!(slice.iter().all(|&x| x == 7));
    })
    .start()
    .unwrap();
    // The borrow ended when the closure was handed over: the parent writes at the same time.
    local.fill(3);
    child.join().unwrap();
    child.check().unwrap();
    assert_eq!(
        seen.get().unwrap(),
        0,
        "the child saw the parent's elements"
    );
    assert!(
        local.iter().all(|&x| x == 3),
        "the child's writes reached the parent"
    );
}

#[cfg(feature = "ndarray")]
#[test]
fn a_captured_view_of_a_local_array_is_private_too() {
    let mut local = LocalArray::<f64>::zeros(24).unwrap();
    local.fill(1.5);
    let seen = Value::<f64>::zeroed().unwrap();
    let seen_ref = &seen;
    let view = local.view((2, 3, 4)).unwrap();
    in_child(move || seen_ref.set(view.sum()).unwrap());
    assert_eq!(seen.get().unwrap(), 0.0);
    assert_eq!(local.iter().sum::<f64>(), 36.0);
}

#[test]
fn a_shared_array_is_seen_by_the_child_and_its_writes_by_the_parent() {
    let mut local = LocalArray::<u32>::zeros(100).unwrap();
    local[10] = 10;
    let shared = local.share();
    let seen = Value::<u32>::zeroed().unwrap();
    let (shared_ref, seen_ref) = (&shared, &seen);
    in_child(move || {
        seen_ref.set(shared_ref.load(10).unwrap()).unwrap();
        shared_ref.write_range(0, &[1, 2, 3]).unwrap();
    });
    assert_eq!(seen.get().unwrap(), 10);
    assert_eq!(shared.to_vec()[..4], [1, 2, 3, 0]);
}

#[test]
fn a_childs_own_local_array_is_protected_from_its_own_children() {
    let seen = Value::<u64>::new(u64::MAX).unwrap();
    let parents = LocalArray::<u64>::from_slice(&[5; 16]).unwrap();
    let seen_ref = &seen;
    let parents_slice: &[u64] = &parents;
    in_child(move || {
        // The inherited slice is a private zero mapping here...
        assert_eq!(parents_slice.iter().sum::<u64>(), 0);
        // ... and a LocalArray made in the child is exclusive to the child in turn.
        let mut mine = LocalArray::<u64>::from_slice(&[9; 16]).unwrap();
        let mine_slice: &mut [u64] = &mut mine;
        let grandchild = Process::from_closure(move || {
            seen_ref.set(mine_slice.iter().sum()).unwrap();
            mine_slice.fill(1);
        })
        .start()
        .unwrap();
        grandchild.join().unwrap();
        grandchild.check().unwrap();
        assert!(mine.iter().all(|&x| x == 9));
        // Sharing in the child works too.
        let shared = mine.share();
        assert_eq!(shared.load(3).unwrap(), 9);
    });
    assert_eq!(
        seen.get().unwrap(),
        0,
        "the grandchild saw the child's elements"
    );
    assert!(parents.iter().all(|&x| x == 5));
}

#[test]
fn a_guard_slice_captured_by_a_fork_never_reaches_the_shared_elements() {
    let array = Array::<u32>::zeros(4).unwrap();
    let mut guard = array.lock().unwrap();
    guard[0] = 5;
    let slice: &mut [u32] = &mut guard;
    in_child(move || {
        // The child has a copy of the guard's private copy; the lock is not the child's.
        assert_eq!(slice[0], 5);
        slice[1] = 99;
    });
    assert_eq!(guard[1], 0);
    drop(guard);
    assert_eq!(array.to_vec().unwrap(), [5, 0, 0, 0]);
}

#[test]
fn forks_while_other_threads_create_and_drop_local_arrays_stay_correct() {
    let stop = AtomicBool::new(false);
    let long_lived = LocalArray::<u8>::from_slice(&[1; 4096]).unwrap();
    let seen = RawArray::<u64>::zeros(1).unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut n = 0u64;
                while !stop.load(SeqCst) {
                    let mut a = LocalArray::<u64>::zeros(1 + (n % 64) as usize).unwrap();
                    a[0] = n;
                    if n % 3 == 0 {
                        let _ = a.share();
                    } else if n % 3 == 1 {
                        let _ = a.freeze().unwrap();
                    }
                    n += 1;
                }
            });
        }
        for _ in 0..30 {
            let slice: &[u8] = &long_lived;
            let seen = &seen;
            in_child(move || {
                let sum: u64 = slice.iter().map(|&b| u64::from(b)).sum();
                seen.store(0, seen.load(0).unwrap() + sum).unwrap();
            });
        }
        stop.store(true, SeqCst);
    });
    assert_eq!(
        seen.load(0).unwrap(),
        0,
        "a child saw the parent's elements"
    );
    assert!(long_lived.iter().all(|&b| b == 1));
}

#[test]
fn freezing_waits_until_no_other_process_maps_the_array_writably() {
    let data = RawArray::<u64>::from_iter(0..512).unwrap();
    let go = ProcessEvent::new().unwrap();
    let (data_ref, go_ref) = (&data, &go);
    let child = Process::from_closure(move || {
        // Holds the inherited writable mapping until told to exit.
        assert!(go_ref.wait_timeout(Duration::from_secs(20)).unwrap());
        assert_eq!(data_ref.load(511).unwrap(), 511);
    })
    .start()
    .unwrap();
    let err = data.freeze().unwrap_err();
    assert!(matches!(
        err.error(),
        Error::InvalidArgument { name: "self", .. }
    ));
    let data = err.into_array().expect("the array comes back");
    assert_eq!(data.load(7).unwrap(), 7, "the array came back intact");
    go.set().unwrap();
    child.join().unwrap();
    child.check().unwrap();
    // Other tests of this process fork too (pool workers live as long as their pool), and
    // their children inherit this array while they live: retry until they are gone.
    let frozen = common::freeze_eventually(data);
    assert_eq!(frozen.iter().sum::<u64>(), 511 * 512 / 2);
}

#[test]
fn frozen_memory_refuses_every_way_of_writing() {
    use nix::errno::Errno;
    use std::os::fd::AsRawFd;
    let frozen = FrozenArray::<u8>::from_slice(&[42; 4096]).unwrap();
    let fd = frozen.fd();
    assert_eq!(nix::unistd::write(fd, &[0]), Err(Errno::EPERM));
    assert_eq!(nix::sys::uio::pwrite(fd, &[0], 0), Err(Errno::EPERM));
    assert_eq!(nix::unistd::ftruncate(fd, 0), Err(Errno::EPERM));
    let punch = nix::fcntl::fallocate(
        fd.as_raw_fd(),
        nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
            | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
        0,
        4096,
    );
    assert_eq!(punch, Err(Errno::EPERM));
    // SAFETY: a writable shared mapping of a sealed memfd is refused by the kernel, so no
    // mapping is made (if one were, it would alias nothing Rust owns and is dropped unused).
    let map = unsafe {
        nix::sys::mman::mmap(
            None,
            std::num::NonZeroUsize::new(4096).unwrap(),
            nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
            nix::sys::mman::MapFlags::MAP_SHARED,
            fd,
            0,
        )
    };
    assert_eq!(map.err(), Some(Errno::EPERM));
    assert!(frozen.iter().all(|&b| b == 42));
}

#[test]
fn a_frozen_copy_holds_every_element_across_pages() {
    // Not a whole number of pages, and no two elements alike.
    let values: Vec<u64> = (0..3 * 512 + 5).map(|i| i * 0x9E37_79B9 + 7).collect();
    let frozen = FrozenArray::from_slice(&values).unwrap();
    assert_eq!(&frozen[..], &values[..]);
}

static INPUT: Inherited<FrozenArray<f64>> = Inherited::new("INPUT");
static OUTPUT: Inherited<RawArray<f64>> = Inherited::new("OUTPUT");

/// A pool task: squares `len` elements from `start`, reading the frozen input through a plain
/// slice and writing the shared output atomically.
fn square_slab(start: usize, len: usize) -> f64 {
    let input = INPUT.get().expect("set before the pool");
    let squares: Vec<f64> = input[start..start + len].iter().map(|v| v * v).collect();
    OUTPUT
        .get()
        .expect("set before the pool")
        .write_range(start, &squares)
        .expect("in bounds");
    squares.iter().sum()
}

#[test]
fn a_fork_pool_slices_frozen_statics_and_writes_shared_ones() {
    let n = 10_000;
    INPUT
        .set(FrozenArray::from_iter((0..n).map(|i| i as f64)).unwrap())
        .unwrap();
    OUTPUT.set(RawArray::zeros(n).unwrap()).unwrap();
    let pool = ForkPool::new(2).unwrap();
    let slabs: Vec<(usize, usize)> = (0..n).step_by(1000).map(|s| (s, 1000)).collect();
    let sums = pool.starmap(square_slab, slabs).unwrap();
    drop(pool);
    let expected: Vec<f64> = (0..n).map(|i| (i * i) as f64).collect();
    assert_eq!(OUTPUT.get().unwrap().to_vec(), expected);
    assert_eq!(sums.iter().sum::<f64>(), expected.iter().sum::<f64>());
}

/// The inode of the file mapped at `addr` (from `/proc/self/maps`).
fn inode_mapped_at(addr: usize) -> u64 {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| {
            let start = l.split('-').next().unwrap();
            usize::from_str_radix(start, 16).unwrap() == addr
        })
        .expect("a mapping starts at the array");
    line.split_whitespace().nth(4).unwrap().parse().unwrap()
}

/// The descriptors of this process that refer to the memfd with inode `ino`.
fn fds_of_inode(ino: u64) -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| {
            // A number closed meanwhile (read_dir's own) makes fstat fail, which is fine.
            let st = nix::sys::stat::fstat(fd);
            st.is_ok_and(|st| st.st_ino == ino && st.st_mode & libc::S_IFMT == libc::S_IFREG)
        })
        .collect()
}

/// Issue 11, item 8: a forked child must not be able to reach a `LocalArray`'s memory through
/// an inherited descriptor (`/proc/self/fd/N`, or a raw-fd `mmap`/`pread`): no descriptor in
/// the child refers to its memfd.
#[test]
fn a_forked_child_has_no_descriptor_of_a_local_array() {
    let mut local = LocalArray::<u64>::from_iter(1..=1000).unwrap();
    let ino = inode_mapped_at(local.as_ptr() as usize);
    let in_parent = fds_of_inode(ino);
    assert_eq!(in_parent.len(), 1, "the parent holds the memfd once");
    let fd = in_parent[0];
    let slice = local.as_mut_slice();
    in_child(move || {
        assert_eq!(slice.iter().sum::<u64>(), 0);
        let open = fds_of_inode(ino);
        assert!(
            open.is_empty(),
            "the child can reach the parent's LocalArray through descriptor(s) {open:?}"
        );
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        assert!(!link.contains("multiproc-shm"), "fd {fd} is {link}");
    });
    assert_eq!(local.iter().sum::<u64>(), 500_500);
}
