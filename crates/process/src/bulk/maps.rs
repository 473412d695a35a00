//! [`BulkMaps`]: a receiver keeps its mappings of the bulk buffers it read, for the next
//! bodies that arrive in the same buffers.
//!
//! Why: a 100 MiB body is 25,600 pages to map (its page tables filled at once) and to unmap
//! again after decoding, on every frame. A sender reuses its buffers — the pool its spare
//! ones, a worker its result buffer once the pool has released it — so the next large body
//! usually arrives in a buffer the receiver has mapped already. A pool keeps several spare
//! buffers and hands them out in turn (a `starmap` over nine 50 MB argument tuples fills
//! nine of them), so a receiver keeps several mappings too: with only the last one kept, a
//! worker mapped and unmapped 50 MB for every task of such a map.
//!
//! Why it is sound: the mapping is read-only, of a file sealed against shrinking (so it stays
//! backed) and against any writer but the sender. The sender writes the buffer between two
//! bodies, while no view of it is alive: a view borrows the `BulkMaps` mutably, and the
//! protocol has the receiver drop it before it answers the frame. A buffer is known by its
//! device and inode: the kept mapping holds the file, so no other file can have them while
//! it is kept.
//!
//! What it costs, and how it is bounded: a kept mapping holds its file, so its memory stays
//! alive as long as it is kept, even after the sender dropped the buffer. Three rules keep
//! that small:
//!
//! - **Only what the sender keeps.** A sender marks a buffer's file retired (it clears the
//!   file's permission bits, which nothing else does to a bulk file) when it drops the buffer,
//!   and already when it sends a body in a buffer it will not keep afterwards (its spare
//!   buffers are full: [`Spare::settle`](crate::payload::Spare::settle)). A body in a retired
//!   file is read through a mapping of the view's own, and each new view first unmaps the kept
//!   mappings of files retired since. So a receiver keeps only buffers its sender still kept
//!   when the receiver last read a bulk body (one the sender dropped since stays mapped until
//!   the next bulk body, or until the receiver ends).
//! - **A budget.** The kept mappings total at most [`KEEP_BYTES`] (the most spare memory a
//!   pool keeps), or the newest alone when it is larger (one body may be larger than any
//!   budget), and number at most [`KEEP_BUFFERS`] in a worker, [`RESULT_MAPS`] in a pool's
//!   supervisor (every supervisor holds descriptors); the least recently used go first. A
//!   worker whose pool has a `memory_limit` keeps one (the limit counts kept mappings).
//! - **Nothing crosses a fork.** A kept mapping is `MADV_DONTFORK` (but for the time a task
//!   is lent its memory, and for good once values read there outlive the task: see
//!   [`Loan`](super::Loan)), and its descriptor (kept
//!   to ask whether the file is retired) is registered with the bulk buffers' ([`bulk_fds`]),
//!   so a child forked by the fork backend closes it; `exec` closes it too (close-on-exec).
//!   One window remains, as for any received descriptor: a fork by another thread between
//!   the frame's arrival and the mapping's registration leaves that child a copy of the
//!   descriptor (and of the mapping, before `MADV_DONTFORK`) until it exits. Closing it would
//!   mean holding the registry's lock while the mapping is populated, which every other
//!   receiver and every fork would wait for.
//!
//! A kept mapping counts in the receiver's resident memory (the pages are the sender's:
//! shared, not copied). Hugetlb buffers are not kept: they map in few pages, and their
//! reserved pages are scarce.

use super::*;

/// The most bytes of mappings a receiver keeps (unless its newest alone is larger): the most
/// spare memory a pool keeps for its own buffers, which are the ones worth keeping mapped.
const KEEP_BYTES: usize = crate::payload::POOL_SPARE_BYTES;
/// The most mappings a worker keeps (each holds a descriptor): as many buffers as a pool
/// keeps.
const KEEP_BUFFERS: usize = crate::payload::SPARE_BULKS;
/// The most mappings a pool's supervisor keeps of its worker's result buffers: a worker keeps
/// each until the pool releases it, so a few are in use at once; and every supervisor of a
/// pool holds descriptors for its own (16 each would near the usual limit of 1,024 open
/// files at 64 workers).
const RESULT_MAPS: usize = 4;

/// A kept read-only mapping of a bulk buffer.
#[derive(Debug)]
struct Kept {
    /// The mapping (`MADV_DONTFORK`); shared with a [`Loan`] while one lasts, and with the
    /// values that outlive it.
    map: Arc<Mapping>,
    /// The file's device and inode.
    file: (libc::dev_t, libc::ino_t),
    /// The file: to see whether its sender has retired it. Registered in [`LIVE`].
    fd: Option<OwnedFd>,
    /// The process that mapped it: the only one with the mapping (`MADV_DONTFORK`).
    owner: Pid,
}

impl Kept {
    /// Whether the sender dropped the buffer (or the file can no longer be asked).
    fn retired(&self) -> bool {
        self.fd.as_ref().map_or(true, |fd| {
            nix::sys::stat::fstat(fd.as_raw_fd()).map_or(true, |st| is_retired(&st))
        })
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if self.owner != getpid() {
            // A forked child's copy (never dropped there in practice: the child never
            // returns into the code that owns it). The descriptor was closed with the other
            // bulk descriptors, and the mapping (inherited only during a loan) is left to
            // `Mapping`'s drop, which leaves a copy in a child alone.
            if let Some(fd) = self.fd.take() {
                let _ = fd.into_raw_fd();
            }
            return;
        }
        // The mapping goes with its last handle (this one, unless a loan's values outlive it).
        if let Some(fd) = self.fd.take() {
            // Closed under the registry's lock, as a buffer's (see `BulkBuf`'s `Drop`).
            let mut live = live();
            live.remove(&fd.as_raw_fd());
            drop(fd);
        }
    }
}

/// A receiver's mappings of the bulk buffers it read (see the [module](self)).
#[derive(Debug)]
pub(crate) struct BulkMaps {
    /// Least recently used first.
    kept: Vec<Kept>,
    /// The most bytes kept (unless the newest alone is larger): [`KEEP_BYTES`].
    budget: usize,
    /// The most mappings kept: [`KEEP_BUFFERS`], or fewer.
    most: usize,
}

impl Default for BulkMaps {
    /// A worker's, for the pool's argument buffers.
    fn default() -> Self {
        BulkMaps::with_limits(KEEP_BYTES, KEEP_BUFFERS)
    }
}

impl BulkMaps {
    /// Keeping at most `budget` bytes of mappings (or the newest alone, if it is larger) and
    /// at most `most` of them (at least 1).
    pub(crate) fn with_limits(budget: usize, most: usize) -> Self {
        BulkMaps {
            kept: Vec::new(),
            budget,
            most: most.max(1),
        }
    }

    /// A pool's supervisor's, for its worker's result buffers.
    pub(crate) fn for_results() -> Self {
        BulkMaps::with_limits(KEEP_BYTES, RESULT_MAPS)
    }

    /// A receiver that keeps one mapping, whatever its size: a worker whose pool watches its
    /// memory (kept mappings count in its resident memory).
    pub(crate) fn one() -> Self {
        BulkMaps::with_limits(0, 1)
    }

    /// The first `len` bytes of the memfd `fd` (received in a bulk frame), through a kept
    /// mapping when one maps `fd`'s file and covers `len` bytes; otherwise mapped as
    /// [`BulkView::map`] does (with its checks) and kept, after the mappings of retired files
    /// and those past the budget are unmapped (a retired or hugetlb file's mapping is the
    /// view's own).
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
        self.kept.retain(|k| !k.retired());
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(os)?;
        let file = (st.st_dev, st.st_ino);
        if let Some(at) = self.kept.iter().position(|k| k.file == file) {
            let k = self.kept.remove(at);
            if k.map.len >= len {
                self.kept.push(k);
                return Ok(self.newest_view(len));
            }
            // Too short (the buffer grew): mapped again below, whole.
        }
        if is_retired(&st) || memfd::granularity(fd.as_fd()).map_err(os)? > PAGE {
            // A buffer its sender may drop once the body is read, or a hugetlb file: mapped
            // for this view only.
            // SAFETY: this function's contract.
            return unsafe { BulkView::map(fd, len) };
        }
        // SAFETY: this function's contract (the view made below borrows `self`).
        let mut map = unsafe { map_sealed(fd.as_fd(), size) }?;
        // Owned at once (by `map`, then `kept`), so that an error below unmaps it.
        map.keep_out_of_children()?;
        let map_len = map.len;
        let mut kept = Kept {
            map: Arc::new(map),
            file,
            fd: None,
            owner: getpid(),
        };
        live().insert(fd.as_raw_fd());
        kept.fd = Some(fd);
        // Room made once the new one is mapped: a file refused above evicts nothing.
        self.make_room(map_len);
        self.kept.push(kept);
        Ok(self.newest_view(len))
    }

    /// Unmaps the least recently used mappings until one of `bytes` more fits the budget
    /// and the count (all of them, if it alone is past the budget).
    fn make_room(&mut self, bytes: usize) {
        let mut total: usize = self.kept.iter().map(|k| k.map.len).sum::<usize>() + bytes;
        let mut gone = 0;
        while gone < self.kept.len() && (total > self.budget || self.kept.len() - gone >= self.most)
        {
            total -= self.kept[gone].map.len;
            gone += 1;
        }
        self.kept.drain(..gone);
    }

    /// A view of the first `len` bytes of the newest kept mapping.
    fn newest_view(&self, len: usize) -> BulkView<'_> {
        let newest = self.kept.last().expect("just kept");
        BulkView {
            mapping: Some(Arc::clone(&newest.map)),
            len,
            #[cfg(test)]
            inode: newest.file.1,
            _maps: PhantomData,
        }
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

    /// A pool rotates its spare buffers: the bodies of one `map` arrive in several of them,
    /// and the next `map`'s in the same ones again. Each is mapped once.
    #[test]
    fn buffers_that_take_turns_are_each_mapped_once() {
        let mut maps = BulkMaps::default();
        let mut bufs: Vec<BulkBuf> = (0..3)
            .map(|i| {
                let mut b = BulkBuf::with_capacity(2 * PAGE).unwrap();
                b.extend_from_slice(&[i; PAGE + 1]).unwrap();
                b
            })
            .collect();
        let mut first = Vec::new();
        for b in &bufs {
            let view = view_of(&mut maps, b);
            first.push((view.as_slice().as_ptr(), view.inode));
        }
        for round in 0..2u8 {
            for (i, b) in bufs.iter_mut().enumerate() {
                b.clear();
                b.extend_from_slice(&[10 * round + i as u8; PAGE + 1])
                    .unwrap();
                let view = view_of(&mut maps, b);
                assert_eq!(
                    view.as_slice().as_ptr(),
                    first[i].0,
                    "buffer {i} mapped again"
                );
                assert_eq!(view.as_slice(), &[10 * round + i as u8; PAGE + 1]);
            }
        }
        for (_, inode) in &first {
            assert_eq!(read_only_maps_of(*inode), 1);
        }
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
        // Another buffer: kept beside the first.
        let mut other = BulkBuf::with_capacity(PAGE).unwrap();
        other.extend_from_slice(b"other").unwrap();
        let view = view_of(&mut maps, &other);
        assert_eq!(view.as_slice(), b"other");
        let other_inode = view.inode;
        drop(view);
        assert_eq!(read_only_maps_of(inode), 1, "the first buffer is kept too");
        assert_eq!(read_only_maps_of(other_inode), 1);
        // Its sender drops the first buffer: the next view lets its mapping go.
        drop(b);
        assert_eq!(
            read_only_maps_of(inode),
            1,
            "nothing has told the receiver yet"
        );
        assert_eq!(view_of(&mut maps, &other).as_slice(), b"other");
        assert_eq!(
            read_only_maps_of(inode),
            0,
            "a retired buffer's mapping is kept"
        );
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

    /// Mappings past the budget go, least recently used first, but the newest stays whatever
    /// its size; so do mappings past the count. Their descriptors are in the registry a fork
    /// closes in the child.
    #[test]
    fn kept_mappings_stay_within_the_budget_and_the_count() {
        let mut maps = BulkMaps::with_limits(4 * PAGE, KEEP_BUFFERS);
        let filled = |pages: usize| {
            let mut b = BulkBuf::with_capacity(pages * PAGE).unwrap();
            b.extend_from_slice(&vec![7; pages * PAGE]).unwrap();
            b
        };
        let inode = |maps: &mut BulkMaps, b: &BulkBuf| view_of(maps, b).inode;
        let (a, b, c) = (filled(2), filled(2), filled(2));
        let (ia, ib) = (inode(&mut maps, &a), inode(&mut maps, &b));
        // a, then b: a is the least recently used; seen again, it is the most.
        assert_eq!(inode(&mut maps, &a), ia);
        // c makes 6 pages: past the budget of 4 besides the newest, so b goes.
        let ic = inode(&mut maps, &c);
        assert_eq!(read_only_maps_of(ib), 0, "the least recently used stayed");
        assert_eq!((read_only_maps_of(ia), read_only_maps_of(ic)), (1, 1));
        // One body past the whole budget is kept alone.
        let big = filled(9);
        let ibig = inode(&mut maps, &big);
        assert_eq!(
            read_only_maps_of(ibig),
            1,
            "the newest is kept whatever its size"
        );
        assert_eq!((read_only_maps_of(ia), read_only_maps_of(ic)), (0, 0));
        // The count: small buffers, one past the most kept.
        let mut maps = BulkMaps::with_limits(usize::MAX / 2, KEEP_BUFFERS);
        let small: Vec<BulkBuf> = (0..=KEEP_BUFFERS).map(|_| filled(1)).collect();
        let inodes: Vec<u64> = small.iter().map(|b| inode(&mut maps, b)).collect();
        assert_eq!(read_only_maps_of(inodes[0]), 0, "past the count");
        assert!(inodes[1..].iter().all(|&i| read_only_maps_of(i) == 1));
        // Their descriptors are registered, for a fork to close.
        let kept_fds = maps.kept.iter().map(|k| k.fd.as_ref().unwrap().as_raw_fd());
        let registry = crate::bulk::bulk_fds();
        assert!(kept_fds.clone().all(|fd| registry.0.contains(&fd)));
        drop(registry);
        let fds: Vec<RawFd> = kept_fds.collect();
        drop(maps);
        let registry = crate::bulk::bulk_fds();
        assert!(
            !fds.iter().any(|fd| registry.0.contains(fd)),
            "left registered"
        );
    }

    /// A body in a buffer its sender will not keep is read through a mapping of the view's
    /// own; once the sender promises to keep the buffer, its mapping is kept again.
    #[test]
    fn a_retired_buffer_is_mapped_for_its_view_only() {
        let mut maps = BulkMaps::default();
        let mut b = BulkBuf::with_capacity(2 * PAGE).unwrap();
        b.extend_from_slice(&[4; PAGE + 3]).unwrap();
        b.retire();
        let view = view_of(&mut maps, &b);
        assert_eq!(view.as_slice(), &[4; PAGE + 3]);
        let inode = view.inode;
        assert_eq!(read_only_maps_of(inode), 1);
        drop(view);
        assert_eq!(read_only_maps_of(inode), 0, "kept");
        b.promise(&Arc::default());
        drop(view_of(&mut maps, &b));
        assert_eq!(read_only_maps_of(inode), 1, "not kept once promised");
    }
}
