//! Creating and dropping buffers leaks no descriptor, no mapping and no file of ours in
//! /dev/shm.
//! (One test in its own binary, so no other test opens descriptors meanwhile.)

use multiproc_core::handoff::{collect_fds, provide_fds};
use multiproc_core::SharedBuffer;
use multiproc_shared_array::{
    Array, FrozenArray, LocalArray, ProcessLock, ProcessRLock, RawArray, ShmBuffer,
};

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The entries of /dev/shm that could be ours: everything this library names (its memfds:
/// `multiproc-shm`, `multiproc-bulk`, ...) carries "multiproc". The rest of /dev/shm is the
/// machine's: other processes create and remove files there at any time.
fn dev_shm() -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir("/dev/shm") {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("multiproc"))
            .collect(),
        Err(_) => Vec::new(), // no /dev/shm at all: nothing can appear there either
    };
    names.sort();
    names
}

/// The files in /dev/shm this process holds open or mapped, whatever their names (one
/// unlinked since shows with " (deleted)").
fn held_in_dev_shm() -> Vec<String> {
    let fds = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned());
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mapped = maps
        .lines()
        .filter_map(|l| l.find("/dev/shm/").map(|at| l[at..].to_string()));
    let mut held: Vec<String> = fds
        .chain(mapped)
        .filter(|path| path.starts_with("/dev/shm/"))
        .collect();
    held.sort();
    held
}

fn memfd_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:multiproc-shm"))
        .count()
}

#[test]
fn ten_thousand_buffers_leave_fds_maps_and_dev_shm_unchanged() {
    let (fd0, shm0, maps0) = (fds(), dev_shm(), memfd_mappings());
    let held0 = held_in_dev_shm();
    for i in 0..10_000usize {
        let b = ShmBuffer::new(1 + i % 8192).unwrap();
        b.as_atomic_bytes()[i % b.len()].store(1, std::sync::atomic::Ordering::Relaxed);
        if i == 5_000 {
            // While buffers live they are memfds, not files in /dev/shm.
            assert_eq!(memfd_mappings(), maps0 + 1);
            assert_eq!(fds(), fd0 + 1);
            assert_eq!(dev_shm(), shm0);
            assert_eq!(held_in_dev_shm(), held0);
        }
    }
    for i in 0..1_000 {
        let _a = RawArray::<f64>::zeros(100).unwrap();
        let _l = ProcessLock::new().unwrap();
        let mut local = LocalArray::<u32>::zeros(1 + i % 5000).unwrap();
        local[0] = 1;
        if i % 2 == 0 {
            let shared = local.share();
            // A round trip through the handoff tables, as a transport makes it.
            let array = Array::from_parts(shared, ProcessRLock::new().unwrap());
            let (bytes, fds) = collect_fds(|| postcard::to_stdvec(&array));
            let bytes = bytes.unwrap();
            let back: Array<u32> = provide_fds(fds, || postcard::from_bytes(&bytes)).unwrap();
            assert_eq!(back.get(0).unwrap(), 1);
        } else {
            let frozen: FrozenArray<u32> = local.freeze().unwrap();
            assert_eq!(frozen[0], 1);
        }
    }
    assert_eq!(fds(), fd0, "descriptors leaked");
    assert_eq!(memfd_mappings(), maps0, "mappings leaked");
    assert_eq!(dev_shm(), shm0, "files of ours appeared in /dev/shm");
    assert_eq!(held_in_dev_shm(), held0, "/dev/shm files held");
}
