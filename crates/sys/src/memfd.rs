//! Sealable anonymous files (`memfd_create`) and their seals: the shared memory that crosses
//! between processes as a descriptor.
//!
//! A receiver can trust a memfd it did not create only as far as its seals go: a file sealed
//! against shrinking cannot turn a mapping into `SIGBUS`, one sealed against (future) writes
//! cannot change under a reader. Creating with [`create_sealable`] and checking with [`seals`]
//! are the two halves; the seal *policy* (which seals a bulk body or a shared array carries)
//! stays with the crate that defines the format.

use std::ffi::CStr;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use crate::pages::{self, PageKind, BASE_PAGE};

pub use nix::fcntl::SealFlag;

/// A new, empty memfd named `name` (the name only shows in `/proc/<pid>/fd`), close-on-exec,
/// that accepts seals. Size it with `ftruncate`, then [`add_seals`].
pub fn create_sealable(name: &CStr) -> nix::Result<OwnedFd> {
    memfd_create(
        name,
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
}

/// A sized, sealable memfd made by [`create_shared`].
#[derive(Debug)]
pub struct SharedFile {
    /// The memfd (close-on-exec, accepts seals, none added yet).
    pub fd: OwnedFd,
    /// Its size: the length asked for, rounded up to whole pages of its kind.
    pub len: usize,
    /// The pages behind it.
    pub pages: PageKind,
}

/// A new sealable memfd of at least `len` bytes (rounded up to whole pages), in huge pages
/// where the system offers them (see [`pages`]): hugetlb pages when enough are
/// reserved and free — reserved for this file here, by mapping it once — else shmem with
/// transparent huge pages when `shmem_enabled` allows them (a mapping asks for them with
/// [`pages::advise`]), else ordinary pages. A hugetlb file that cannot be made or reserved
/// falls back to an ordinary one silently.
///
/// Errors: `EINVAL` for a `len` of 0, `EFBIG` for one past `off_t`, and those of
/// `memfd_create` and `ftruncate` (`EFBIG`, `ENOSPC`, `ENOMEM`, `EMFILE`).
pub fn create_shared(name: &CStr, len: usize) -> nix::Result<SharedFile> {
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let mut pages = PageKind::Base;
    if len >= pages::HUGE_MIN {
        let policy = pages::policy();
        pages = policy.choose(len);
        if pages == PageKind::HugeTlb {
            if let Some(file) = create_hugetlb(name, len, policy.hugetlb_page) {
                return Ok(file);
            }
            pages = policy.transparent(len);
        }
    }
    let len = len
        .checked_next_multiple_of(BASE_PAGE)
        .ok_or(Errno::EINVAL)?;
    let fd = create_sealable(name)?;
    set_len(fd.as_fd(), len)?;
    Ok(SharedFile { fd, len, pages })
}

/// A hugetlb memfd of `len` bytes rounded up to `huge` pages, its pages reserved; `None` if
/// any step fails (no pages left, no hugetlbfs).
fn create_hugetlb(name: &CStr, len: usize, huge: usize) -> Option<SharedFile> {
    let len = len.checked_next_multiple_of(huge)?;
    let fd = memfd_create(
        name,
        MemFdCreateFlag::MFD_CLOEXEC
            | MemFdCreateFlag::MFD_ALLOW_SEALING
            | MemFdCreateFlag::MFD_HUGETLB,
    )
    .ok()?;
    set_len(fd.as_fd(), len).ok()?;
    // A shared hugetlb mapping reserves the file's pages for as long as the file lives (not
    // just the mapping): after this, no later mapping of it can fail for want of pages, and
    // no fault in it can SIGBUS.
    // SAFETY: a fresh read-only mapping at an address the kernel chooses, of a file of exactly
    // that length, unmapped at once: no memory of this process is affected.
    let map = unsafe {
        mmap(
            None,
            NonZeroUsize::new(len)?,
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED,
            &fd,
            0,
        )
    }
    .ok()?;
    // SAFETY: the mapping just made, of that length (whole huge pages), used by nobody.
    let _ = unsafe { munmap(map, len) };
    Some(SharedFile {
        fd,
        len,
        pages: PageKind::HugeTlb,
    })
}

/// Sets the file's size (`ftruncate`).
pub fn set_len(fd: BorrowedFd<'_>, len: usize) -> nix::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    nix::unistd::ftruncate(fd, len)
}

/// The pages behind a memfd of `len` bytes that this process did not create (received or
/// inherited): hugetlb if its file system's block is a huge page, else what the shmem policy
/// gives a file of that size. Its mappings must be whole multiples of [`granularity`].
pub fn page_kind(fd: BorrowedFd<'_>, len: usize) -> nix::Result<PageKind> {
    if granularity(fd)? > BASE_PAGE {
        return Ok(PageKind::HugeTlb);
    }
    if len < pages::HUGE_MIN {
        return Ok(PageKind::Base);
    }
    Ok(pages::policy().transparent(len))
}

/// The size a mapping or resize of the file must be a multiple of: its page size
/// (`st_blksize`: a huge page for hugetlbfs, 4 KiB for shmem).
pub fn granularity(fd: BorrowedFd<'_>) -> nix::Result<usize> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    Ok(usize::try_from(st.st_blksize)
        .unwrap_or(BASE_PAGE)
        .max(BASE_PAGE))
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
    use crate::pages::{ShmemThp, TempSetting};
    use std::sync::Mutex;

    /// Held by the tests that change the system's huge-page settings, one at a time.
    static SETTINGS: Mutex<()> = Mutex::new(());

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

    /// A mapping of the whole file, written at both ends and read back.
    fn round_trip(file: &SharedFile) {
        let len = NonZeroUsize::new(file.len).unwrap();
        // SAFETY: a fresh mapping of the whole file, unmapped below, used only here.
        let map = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &file.fd,
                0,
            )
        }
        .unwrap();
        // SAFETY: the range is that mapping.
        unsafe { pages::advise(map, file.len, file.pages) };
        let bytes = map.as_ptr().cast::<u8>();
        // SAFETY: both offsets lie inside the writable mapping.
        unsafe {
            bytes.write(7);
            bytes.add(file.len - 1).write(9);
            assert_eq!(bytes.read() + bytes.add(file.len - 1).read(), 16);
            munmap(map, file.len).unwrap();
        }
    }

    #[test]
    fn shared_files_fall_back_to_what_the_system_offers() {
        let _one = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(create_shared(c"t", 0).unwrap_err(), Errno::EINVAL);
        let small = create_shared(c"t", 5).unwrap();
        assert_eq!((small.len, small.pages), (BASE_PAGE, PageKind::Base));
        assert_eq!(page_kind(small.fd.as_fd(), 5).unwrap(), PageKind::Base);
        let big = create_shared(c"t", pages::HUGE_MIN + 1).unwrap();
        let policy = pages::policy();
        assert_eq!(big.pages, policy.choose(pages::HUGE_MIN + 1));
        assert_eq!(size(big.fd.as_fd()).unwrap(), big.len as u64);
        assert_eq!(big.len % granularity(big.fd.as_fd()).unwrap(), 0);
        round_trip(&big);
    }

    #[test]
    fn reserved_huge_pages_back_big_shared_files() {
        let _one = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
        let pool = match TempSetting::hugetlb_pages(8) {
            Ok(pool) => pool,
            Err(e) => {
                eprintln!("skipped: cannot reserve hugetlb pages here ({e})");
                return;
            }
        };
        let huge = pages::policy().hugetlb_page;
        let file = create_shared(c"t", pages::HUGE_MIN + 1).unwrap();
        assert_eq!(file.pages, PageKind::HugeTlb);
        assert_eq!(file.len, (pages::HUGE_MIN + 1).next_multiple_of(huge));
        assert_eq!(granularity(file.fd.as_fd()).unwrap(), huge);
        assert_eq!(
            page_kind(file.fd.as_fd(), file.len).unwrap(),
            PageKind::HugeTlb
        );
        add_seals(
            file.fd.as_fd(),
            SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW,
        )
        .unwrap();
        round_trip(&file);
        // More than the pool holds: ordinary (or transparent) pages, silently.
        let left = usize::try_from(pages::policy().hugetlb_available).unwrap();
        let too_big = create_shared(c"t", (left + 1) * huge).unwrap();
        assert_ne!(too_big.pages, PageKind::HugeTlb);
        round_trip(&too_big);
        drop((file, pool));
    }

    #[test]
    fn advised_shmem_gets_transparent_huge_pages() {
        let _one = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
        let thp = match TempSetting::shmem_thp(ShmemThp::Advise) {
            Ok(thp) => thp,
            Err(e) => {
                eprintln!("skipped: cannot set shmem THP to advise here ({e})");
                return;
            }
        };
        if pages::policy().hugetlb_available > 0 {
            eprintln!("skipped: hugetlb pages are free, so they would be chosen first");
            return;
        }
        let file = create_shared(c"t", pages::HUGE_MIN).unwrap();
        assert_eq!(file.pages, PageKind::Transparent);
        assert_eq!(
            page_kind(file.fd.as_fd(), file.len).unwrap(),
            PageKind::Transparent
        );
        round_trip(&file);
        drop(thp);
    }
}
