//! [`BulkMaps`]: a receiver keeps its mapping of the last bulk buffer it read, for the next
//! body that arrives in the same buffer.
//!
//! Why: a 100 MiB body is 25,600 pages to map (its page tables filled at once) and to unmap
//! again after decoding, on every frame. A sender reuses its buffers — the pool its spare
//! ones, a worker its result buffer once the pool has released it — so the next large body
//! usually arrives in a buffer the receiver has mapped already.
//!
//! Why it is sound: the mapping is read-only, of a file sealed against shrinking (so it stays
//! backed) and against any writer but the sender. The sender writes the buffer between two
//! bodies, while no view of it is alive: a view borrows the `BulkMaps` mutably, and the
//! protocol has the receiver drop it before it answers the frame. A buffer is known by its
//! device and inode: the kept mapping holds the file, so no other file can have them while
//! it is kept.
//!
//! What it costs: the kept buffer stays in memory until a body arrives in another buffer or
//! the `BulkMaps` is dropped (a worker's when it exits, a supervisor's when its worker's
//! session ends) — one buffer per receiver at most, which its sender usually keeps for reuse
//! anyway — and it counts in the receiver's resident memory meanwhile. It is not inherited
//! by a child forked meanwhile (`MADV_DONTFORK`). Hugetlb buffers are not kept: they map in
//! few pages, and their reserved pages are scarce.

use super::*;

/// A kept read-only mapping of a bulk buffer.
#[derive(Debug)]
struct Kept {
    map: NonNull<u8>,
    map_len: usize,
    /// The file's device and inode.
    file: (libc::dev_t, libc::ino_t),
}

impl Drop for Kept {
    fn drop(&mut self) {
        // SAFETY: our mapping of `map_len` bytes; every view of it borrowed the `BulkMaps`
        // that owns `self`, so none is alive.
        let _ = unsafe { munmap(self.map.cast(), self.map_len) };
    }
}

/// A receiver's mapping of the last bulk buffer it read (see the [module](self)).
#[derive(Debug, Default)]
pub(crate) struct BulkMaps {
    kept: Option<Kept>,
}

impl BulkMaps {
    /// The first `len` bytes of the memfd `fd` (received in a bulk frame), through the kept
    /// mapping when `fd` is the file it maps and it covers `len` bytes; otherwise mapped as
    /// [`BulkView::map`] does (with its checks), and kept instead of the previous mapping (a
    /// hugetlb file's is the view's own).
    ///
    /// # Safety
    ///
    /// As [`BulkView::map`]: until the view is dropped, the sender must not write the first
    /// `len` bytes.
    pub(crate) unsafe fn view(&mut self, fd: OwnedFd, len: usize) -> io::Result<BulkView<'_>> {
        let Some(size) = NonZeroUsize::new(len) else {
            // SAFETY: this function's contract.
            return unsafe { BulkView::map(fd, 0) };
        };
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(os)?;
        let file = (st.st_dev, st.st_ino);
        let kept = match self.kept.take() {
            Some(k) if k.file == file && k.map_len >= len => k,
            previous => {
                if memfd::granularity(fd.as_fd()).map_err(os)? > PAGE {
                    self.kept = previous;
                    // SAFETY: this function's contract.
                    return unsafe { BulkView::map(fd, len) };
                }
                // Unmapped first: one kept mapping at a time.
                drop(previous);
                // SAFETY: this function's contract (the view made below borrows `self`).
                let (map, map_len) = unsafe { map_sealed(fd.as_fd(), size) }?;
                let kept = Kept { map, map_len, file };
                // SAFETY: exactly our fresh mapping; MADV_DONTFORK only keeps it out of
                // forked children, never changes its contents or our access.
                unsafe { madvise(map.cast(), map_len, MmapAdvise::MADV_DONTFORK) }.map_err(os)?;
                kept
            }
        };
        let map = kept.map;
        self.kept = Some(kept);
        Ok(BulkView {
            map: Some(map),
            len,
            #[cfg(test)]
            inode: file.1,
            own_len: 0,
            _maps: PhantomData,
        })
    }
}

/// The read-only mappings of this process whose file has `inode` (the kept ones: a sender's
/// own mapping is writable).
#[cfg(test)]
pub(crate) fn read_only_maps_of(inode: u64) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 4 && fields[1].starts_with("r--") && fields[4] == inode.to_string()
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd_of(b: &BulkBuf) -> OwnedFd {
        b.fd().try_clone_to_owned().unwrap()
    }

    /// A view of `b`'s bytes through `maps`.
    fn view_of<'m>(maps: &'m mut BulkMaps, b: &BulkBuf) -> BulkView<'m> {
        // SAFETY: the test writes `b` only after dropping the view.
        unsafe { maps.view(fd_of(b), b.len()) }.unwrap()
    }

    #[test]
    fn a_body_in_the_kept_buffer_is_read_through_the_same_mapping() {
        let mut maps = BulkMaps::default();
        let mut b = BulkBuf::with_capacity(4 * PAGE).unwrap();
        b.extend_from_slice(&[1; 3 * PAGE]).unwrap();
        let view = view_of(&mut maps, &b);
        let (first, inode) = (view.as_slice().as_ptr(), view.inode);
        assert_eq!(view.as_slice(), &[1; 3 * PAGE]);
        drop(view);
        assert_eq!(read_only_maps_of(inode), 1, "kept after the view");
        // The sender writes again, shorter: the kept mapping shows the new bytes.
        b.clear();
        b.extend_from_slice(&[2; PAGE + 5]).unwrap();
        let view = view_of(&mut maps, &b);
        assert_eq!(view.as_slice().as_ptr(), first, "mapped again");
        assert_eq!(view.as_slice(), &[2; PAGE + 5]);
        drop(view);
        // Longer than the kept mapping (the buffer grew): mapped again, whole.
        b.extend_from_slice(&[3; 6 * PAGE]).unwrap();
        let view = view_of(&mut maps, &b);
        assert_eq!(view.as_slice().len(), 7 * PAGE + 5);
        assert_eq!(&view.as_slice()[PAGE + 5..], &[3; 6 * PAGE]);
        drop(view);
        assert_eq!(
            read_only_maps_of(inode),
            1,
            "the shorter mapping was replaced"
        );
        // Another buffer: its mapping replaces the first's.
        let mut other = BulkBuf::with_capacity(PAGE).unwrap();
        other.extend_from_slice(b"other").unwrap();
        let view = view_of(&mut maps, &other);
        assert_eq!(view.as_slice(), b"other");
        let other_inode = view.inode;
        drop(view);
        assert_eq!(
            read_only_maps_of(inode),
            0,
            "the first buffer is no longer kept"
        );
        assert_eq!(read_only_maps_of(other_inode), 1);
        // An empty body maps nothing; an unsealed file is refused, and the kept one stays.
        // SAFETY: an empty view reads nothing.
        assert!(unsafe { maps.view(fd_of(&other), 0) }
            .unwrap()
            .as_slice()
            .is_empty());
        let plain =
            nix::sys::memfd::memfd_create(c"plain", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
                .unwrap();
        nix::unistd::ftruncate(&plain, PAGE as libc::off_t).unwrap();
        // SAFETY: refused before mapping.
        assert!(unsafe { maps.view(plain, 10) }.is_err());
        drop(maps);
        assert_eq!(
            read_only_maps_of(other_inode),
            0,
            "unmapped with the BulkMaps"
        );
    }
}
