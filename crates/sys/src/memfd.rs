//! Sealable anonymous files (`memfd_create`) and their seals: the shared memory that crosses
//! between processes as a descriptor.
//!
//! A receiver can trust a memfd it did not create only as far as its seals go: a file sealed
//! against shrinking cannot turn a mapping into `SIGBUS`, one sealed against (future) writes
//! cannot change under a reader. Creating with [`create_sealable`] and checking with [`seals`]
//! are the two halves; the seal *policy* (which seals a bulk body or a shared array carries)
//! stays with the crate that defines the format.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

pub use nix::fcntl::SealFlag;

/// A new, empty memfd named `name` (the name only shows in `/proc/<pid>/fd`), close-on-exec,
/// that accepts seals. Size it with `ftruncate`, then [`add_seals`].
pub fn create_sealable(name: &CStr) -> nix::Result<OwnedFd> {
    memfd_create(
        name,
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
}

/// A new, empty memfd named `name`, close-on-exec, that refuses seals (a file nobody can
/// freeze).
pub fn create(name: &CStr) -> nix::Result<OwnedFd> {
    memfd_create(name, MemFdCreateFlag::MFD_CLOEXEC)
}

/// Adds `seals` to the file (`F_ADD_SEALS`); seals are never removed. Fails with `EPERM` if
/// the file is sealed against new seals (or was not created sealable), and with `EBUSY` for
/// `F_SEAL_WRITE` while a writable shared mapping exists.
pub fn add_seals(fd: BorrowedFd<'_>, seals: SealFlag) -> nix::Result<()> {
    fcntl(fd.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals)).map(drop)
}

/// The file's seals (`F_GET_SEALS`); `EINVAL` for a file that is not sealable (not a memfd or
/// shmem file).
pub fn seals(fd: BorrowedFd<'_>) -> nix::Result<SealFlag> {
    fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS).map(SealFlag::from_bits_retain)
}

/// The file's size in bytes (`fstat`).
pub fn size(fd: BorrowedFd<'_>) -> nix::Result<u64> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    Ok(u64::try_from(st.st_size).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn seals_are_added_and_read_back() {
        let fd = create_sealable(c"test").unwrap();
        nix::unistd::ftruncate(&fd, 4096).unwrap();
        assert_eq!(size(fd.as_fd()).unwrap(), 4096);
        assert!(seals(fd.as_fd()).unwrap().is_empty());
        add_seals(fd.as_fd(), SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_SEAL).unwrap();
        let s = seals(fd.as_fd()).unwrap();
        assert!(s.contains(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_SEAL));
        assert!(add_seals(fd.as_fd(), SealFlag::F_SEAL_GROW).is_err());
        let plain = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(seals(plain.as_fd()).is_err());
        let unsealable = create(c"test").unwrap();
        assert!(add_seals(unsealable.as_fd(), SealFlag::F_SEAL_SHRINK).is_err());
    }
}
