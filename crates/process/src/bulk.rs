//! Large frame bodies through shared memory instead of the socket.
//!
//! Sending 100 MB through a Unix socket costs two kernel copies (into socket buffers the
//! kernel allocates, then out of them) and, worse on our machines, fresh pages on the way. A
//! body of at least [`BULK_MIN`] bytes is therefore encoded straight into a [`BulkBuf`] — a
//! memfd the sender maps read-write and keeps for the next large body, so its pages are
//! already in memory — and only the frame header crosses the socket, with the memfd as one
//! more descriptor. The receiver maps it read-only ([`BulkView`]) and decodes from there:
//! one copy on each side, both into warm memory. The receiver keeps that mapping for the next
//! body in the same buffer ([`BulkMaps`]), so a sender that reuses its buffer costs it no new
//! mapping either.
//!
//! This is a transport, not sharing: the receiver copies what it needs out while decoding,
//! and the sender writes the buffer again only after the receiver has answered the frame
//! that carried it (the pool keeps a task's buffer until its reply arrives, and reuses it
//! after). That ordering is the contract of [`BulkView::map`].
//!
//! The kernel enforces the rest. The memfd is sealed against shrinking and against any *new*
//! write access (`F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE`, then `F_SEAL_SEAL`) as soon as the
//! sender has mapped it: the sender's one mapping can write and grow it, while nothing that
//! obtains the descriptor — the receiver, or anything it passes it to — can write it, map it
//! writable or truncate it (which would turn reads into `SIGBUS`). The receiver checks the
//! seals before mapping. The mapping is `MADV_DONTFORK` and the descriptors are closed in
//! children forked by the fork backend ([`BulkFds`]), so a forked child neither writes the
//! parent's buffers nor keeps their memory alive; a buffer whose owner is another process is
//! inert (never written, unmapped or closed by it).

use std::collections::BTreeSet;
use std::ffi::c_void;
use std::io;
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use multiproc_sys::memfd::{self, SealFlag};
use multiproc_sys::pages::{self, PageKind};
use nix::sys::mman::{madvise, mmap, mremap, munmap, MRemapFlags, MapFlags, MmapAdvise, ProtFlags};
use nix::unistd::{getpid, Pid};

mod loan;
mod maps;

pub(crate) use loan::{deliver_lent, Loan, Releases};
#[cfg(test)]
pub(crate) use maps::read_only_maps_of;
pub(crate) use maps::BulkMaps;

/// Bodies at least this large travel in shared memory (when the frame has room for one more
/// descriptor); smaller ones through the socket, where a copy is cheaper than a mapping.
pub(crate) const BULK_MIN: usize = 1 << 20;

const PAGE: usize = 4096;

fn os(e: nix::errno::Errno) -> io::Error {
    io::Error::from(e)
}

/// The descriptors of this process's live bulk buffers, and of the files whose mappings its
/// receivers keep ([`BulkMaps`]).
static LIVE: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());

fn live() -> MutexGuard<'static, BTreeSet<RawFd>> {
    // Inserts and removes only: nothing can panic half-way.
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The descriptors of this process's bulk buffers (its own, and those it keeps mapped as a
/// receiver), locked: the fork backend holds this across `fork` (so no buffer is made or
/// dropped, and no kept mapping registered or let go, meanwhile) and, in the child, closes
/// them with [`close_inherited`](Self::close_inherited) — a forked worker must not keep its
/// parent's transport memory alive.
#[must_use = "the lock is held until the guard is dropped"]
pub struct BulkFds(MutexGuard<'static, BTreeSet<RawFd>>);

/// Locks the registry of bulk-buffer descriptors (see [`BulkFds`]).
pub fn bulk_fds() -> BulkFds {
    BulkFds(live())
}

impl BulkFds {
    /// In a forked child: closes the descriptors of the parent's bulk buffers, which the
    /// child inherited. The child's copies of those buffers are inert (their owner is
    /// another process), so nothing closes them again.
    ///
    /// # Safety
    ///
    /// Call it only in a child forked while this guard was held (taken with [`bulk_fds`]
    /// before the `fork`), before anything else in the child opens a descriptor. The numbers
    /// it closes belong to the parent's live buffers; in any other process, or later, they may
    /// name descriptors that other owners hold (a file opened since, a buffer's mapping), and
    /// closing those breaks that owner: the next file it opens gets the number, and writes
    /// meant for one land in the other.
    pub unsafe fn close_inherited(mut self) {
        for fd in std::mem::take(&mut *self.0) {
            let _ = nix::unistd::close(fd);
        }
    }
}

impl std::fmt::Debug for BulkFds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkFds")
            .field("open", &self.0.len())
            .finish()
    }
}

/// A growable byte buffer in shared memory (a memfd mapped read-write), owned by the sender.
///
/// Its pages stay in memory between uses, which is the point: a large body encoded into it
/// the second time lands on warm pages.
#[derive(Debug)]
pub(crate) struct BulkBuf {
    /// The memfd; `None` only while [`with_capacity`](Self::with_capacity) makes it. In a
    /// forked child's copy, a number the child closed ([`BulkFds::close_inherited`]): the
    /// copy's drop forgets it, never closes it.
    fd: Option<OwnedFd>,
    map: NonNull<u8>,
    cap: usize,
    len: usize,
    /// The process that made it: the only one with the mapping (`MADV_DONTFORK`).
    owner: Pid,
    /// Huge pages where the system offers them ([`memfd::create_shared`]).
    pages: PageKind,
    /// Its sender's promise to keep it after its current body is read ([`promise`](Self::promise)).
    promise: Option<Promise>,
    /// Whether its file is marked retired ([`retire`](Self::retire)).
    retired: bool,
}

/// What a sender's promises to keep its buffers add up to: the bytes and the number of the
/// buffers out with one ([`BulkBuf::promise`]).
#[derive(Debug, Default)]
pub(crate) struct Promises {
    bytes: AtomicUsize,
    count: AtomicUsize,
}

impl Promises {
    /// The bytes and the number of buffers promised.
    pub(crate) fn total(&self) -> (usize, usize) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }
}

/// One buffer's share of its sender's [`Promises`], given back when it is dropped.
#[derive(Debug)]
struct Promise {
    promises: Arc<Promises>,
    bytes: usize,
}

impl Drop for Promise {
    fn drop(&mut self) {
        self.promises.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
        self.promises.count.fetch_sub(1, Ordering::Relaxed);
    }
}

// SAFETY: a `BulkBuf` exclusively owns its mapping in this process (nothing else in the
// process has its address), like a `Vec<u8>` owns its allocation: moving it to another thread
// moves that ownership, and `&BulkBuf` only allows reading. Other processes can map the memfd
// read-only at most (it is sealed against new write access), and forked children do not
// inherit the mapping.
unsafe impl Send for BulkBuf {}
// SAFETY: shared references only read the initialised prefix (see `Send`).
unsafe impl Sync for BulkBuf {}

/// The seals that make a mapped bulk buffer read-only and unshrinkable for everyone but its
/// first mapping (Linux 5.1+ has `F_SEAL_FUTURE_WRITE`).
const SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_FUTURE_WRITE)
    .union(SealFlag::F_SEAL_SEAL);

impl BulkBuf {
    /// An empty buffer with room for at least `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> io::Result<BulkBuf> {
        // Held from before the descriptor exists until it is registered: the fork backend
        // forks under this lock, so a child inherits the descriptor only when it is
        // registered (and closes it), and never a mapping that is not yet `MADV_DONTFORK`
        // and sealed. (On an error below, `buf` has no descriptor yet, so its `Drop` does not
        // take this lock again.)
        let mut registry = live();
        let file =
            memfd::create_shared(c"multiproc-bulk", round_up(capacity.max(PAGE))?).map_err(os)?;
        let (fd, cap) = (file.fd, file.len);
        // SAFETY: a fresh shared mapping of `cap` bytes of our own memfd, which is `cap` bytes
        // long: no existing memory is affected, and every mapped byte is backed by the file.
        let map = unsafe {
            mmap(
                None,
                NonZeroUsize::new(cap).expect("at least a page"),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        }
        .map_err(os)?;
        let mut buf = BulkBuf {
            fd: None,
            map: map.cast(),
            cap,
            len: 0,
            owner: getpid(),
            pages: file.pages,
            promise: None,
            retired: false,
        };
        buf.dont_fork()?;
        // Our mapping exists: from now on, nothing else may write or shrink the file.
        memfd::add_seals(fd.as_fd(), SEALS).map_err(os)?;
        registry.insert(fd.as_raw_fd());
        buf.fd = Some(fd);
        Ok(buf)
    }

    /// Keeps the mapping out of forked children (and asks for transparent huge pages where
    /// those back it).
    fn dont_fork(&mut self) -> io::Result<()> {
        // SAFETY: the range is exactly our mapping; MADV_DONTFORK changes only whether a
        // child of `fork` gets a copy of it, never its contents or this process's access, and
        // MADV_HUGEPAGE only how its pages are backed.
        unsafe {
            pages::advise(self.map.cast(), self.cap, self.pages);
            madvise(self.map.cast(), self.cap, MmapAdvise::MADV_DONTFORK).map_err(os)
        }
    }

    /// Whether this process made the buffer (a forked child's copy is inert).
    pub(crate) fn is_ours(&self) -> bool {
        self.owner == getpid()
    }

    /// The bytes written so far.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `cap >= len` bytes, readable, and its first `len` bytes were
        // written by `extend_from_slice` (the file's bytes beyond are zeros, never exposed).
        // Only this process writes it, and only through `&mut self`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len) }
    }

    /// The start of the writable mapping (`capacity()` bytes), for a writer that places bytes
    /// itself rather than appending them (the reply journal: see `crate::journal`).
    pub(crate) fn as_mut_ptr(&mut self) -> NonNull<u8> {
        self.map
    }

    /// How many bytes were written.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The bytes the mapping holds without growing.
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    /// The memfd, to send to the receiver (sealed: it can only read it).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd
            .as_ref()
            .expect("a bulk buffer in use has its descriptor")
            .as_fd()
    }

    /// Forgets the contents (keeping the memory).
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Promises that the buffer comes back to its sender's spare buffers once its body is
    /// read, counted in `promises` until [`end_promise`](Self::end_promise) or the drop:
    /// its receivers may keep their mappings of it (its file is not marked retired).
    pub(crate) fn promise(&mut self, promises: &Arc<Promises>) {
        if !self.is_ours() {
            // A forked child's copy: its file is not ours to mark.
            return;
        }
        promises.bytes.fetch_add(self.cap, Ordering::Relaxed);
        promises.count.fetch_add(1, Ordering::Relaxed);
        self.promise = Some(Promise {
            promises: Arc::clone(promises),
            bytes: self.cap,
        });
        if self.retired {
            self.retired = !set_retired(self.fd(), false);
        }
    }

    /// Ends the promise, if there is one (counted no more).
    pub(crate) fn end_promise(&mut self) {
        self.promise = None;
    }

    /// Marks the buffer as one its sender may not keep after its body is read: a receiver
    /// reads such a body through a mapping of its own and keeps nothing of it (see
    /// [`BulkMaps`]). Ends the promise, if there is one.
    pub(crate) fn retire(&mut self) {
        self.promise = None;
        if !self.retired && self.fd.is_some() && self.is_ours() {
            self.retired = set_retired(self.fd(), true);
        }
    }

    /// Whether `more` bytes fit without growing.
    #[inline(always)]
    pub(crate) fn fits(&self, more: usize) -> bool {
        more <= self.cap - self.len
    }

    /// Appends `bytes`, growing the file and the mapping when needed.
    #[inline(always)]
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) -> io::Result<()> {
        if !self.fits(bytes.len()) {
            // `len <= cap <= isize::MAX` and a slice is at most `isize::MAX` bytes: no
            // overflow.
            self.grow(self.len + bytes.len())?;
        }
        self.extend_within_capacity(bytes);
        Ok(())
    }

    /// Appends `bytes`, which must fit ([`fits`](Self::fits)); panics otherwise. A large
    /// block (a vector's values) is copied on several threads
    /// ([`multiproc_sys::memory::copy_spread`]).
    #[inline(always)]
    pub(crate) fn extend_within_capacity(&mut self, bytes: &[u8]) {
        assert!(self.fits(bytes.len()), "a bulk buffer written past its end");
        let end = self.len + bytes.len();
        if bytes.len() >= 2 * multiproc_sys::memory::PART {
            // SAFETY: `len..end` lies inside the writable mapping (`end <= cap`, checked
            // above), which only this process maps writable and which `&mut self` lets no
            // one else touch; any byte is a valid `MaybeUninit<u8>`. `bytes` does not overlap
            // it (memory outside the mapping, or we would hold `&mut self` and `&` to it).
            let dst = unsafe {
                std::slice::from_raw_parts_mut(
                    self.map
                        .as_ptr()
                        .add(self.len)
                        .cast::<std::mem::MaybeUninit<u8>>(),
                    bytes.len(),
                )
            };
            multiproc_sys::memory::copy_spread(bytes, dst);
        } else {
            // SAFETY: as above: `len..end` is inside the writable mapping and `bytes` does
            // not overlap it.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    self.map.as_ptr().add(self.len),
                    bytes.len(),
                );
            }
        }
        self.len = end;
    }

    /// Grows to hold at least `needed` bytes: the file first, then the mapping (moved if it
    /// must be; the pages already written stay where they are in the file).
    #[cold]
    #[inline(never)]
    fn grow(&mut self, needed: usize) -> io::Result<()> {
        // A promise counts the capacity it was made for: buffers grow only while a body is
        // written, before it is settled.
        debug_assert!(self.promise.is_none(), "a promised buffer grown");
        let cap = round_up(needed.max(self.cap.saturating_mul(2)))?;
        if self.pages == PageKind::HugeTlb {
            // A hugetlb mapping cannot be `mremap`ed, and its file may have no reserved pages
            // left to grow into: move to a new buffer (in whatever pages are free now).
            let mut bigger = BulkBuf::with_capacity(cap)?;
            bigger.extend_from_slice(self.as_slice())?;
            *self = bigger;
            return Ok(());
        }
        nix::unistd::ftruncate(self.fd(), file_len(cap)?).map_err(os)?;
        // SAFETY: `map` is our mapping of `self.cap` bytes; MREMAP_MAYMOVE may move it, and we
        // hold `&mut self`, so no reference into the old address is alive. The file is now
        // `cap` bytes long, so the larger mapping is backed throughout.
        let map = unsafe {
            mremap(
                self.map.cast::<c_void>(),
                self.cap,
                cap,
                MRemapFlags::MREMAP_MAYMOVE,
                None,
            )
        }
        .map_err(os)?;
        self.map = map.cast();
        self.cap = cap;
        self.dont_fork()
    }
}

impl Drop for BulkBuf {
    fn drop(&mut self) {
        if !self.is_ours() {
            // A forked child's copy: the mapping was not inherited (MADV_DONTFORK; whatever
            // the child mapped at that address is not ours to unmap), and the descriptor is
            // closed by `BulkFds::close_inherited` — closing it here could close a reused
            // number.
            if let Some(fd) = self.fd.take() {
                let _ = fd.into_raw_fd();
            }
            return;
        }
        // SAFETY: `map` is our mapping of `cap` bytes (also when `with_capacity` failed after
        // making it), and no reference into it outlives `self`. A receiver's own mapping of
        // the memfd is unaffected.
        let _ = unsafe { munmap(self.map.cast(), self.cap) };
        // Receivers that keep a mapping of it can let it go now (see `BulkMaps`).
        self.retire();
        if let Some(fd) = self.fd.take() {
            // Closed under the registry's lock: a fork (which holds it) sees the descriptor
            // either registered and open, or neither.
            let mut live = live();
            live.remove(&fd.as_raw_fd());
            drop(fd);
        }
    }
}

/// Marks a buffer's file retired (its sender may drop it: see [`BulkBuf::retire`]) or not,
/// for the receivers that keep mappings ([`BulkMaps`]): a retired file has no permission bits,
/// which nothing else does to a bulk file (a memfd is made with them set). Whether the mark
/// took (a receiver that cannot be told keeps its mapping until its budget pushes it out).
fn set_retired(fd: BorrowedFd<'_>, retired: bool) -> bool {
    let mode = if retired {
        nix::sys::stat::Mode::empty()
    } else {
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR
    };
    nix::sys::stat::fchmod(fd.as_raw_fd(), mode).is_ok()
}

/// Whether `st` is the status of a file whose sender has marked it retired.
pub(crate) fn is_retired(st: &libc::stat) -> bool {
    st.st_mode & 0o7777 == 0
}

fn round_up(bytes: usize) -> io::Result<usize> {
    bytes
        .checked_next_multiple_of(PAGE)
        .ok_or_else(|| io::Error::new(io::ErrorKind::OutOfMemory, "bulk body too large"))
}

fn file_len(bytes: usize) -> io::Result<libc::off_t> {
    libc::off_t::try_from(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "bulk body too large"))
}

/// A read-only mapping of a bulk buffer's file in this process, unmapped when its last
/// handle goes: a view's ([`BulkView`]), a kept one's ([`BulkMaps`]), a loan's ([`Loan`]).
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Whether it is normally kept out of forked children (`MADV_DONTFORK`: a kept mapping);
    /// a loan lets children have it while it lasts.
    dont_fork: bool,
    /// The process that mapped it. In a child that inherited it (a loan's, see [`Loan`]), its
    /// drop leaves it mapped: whether the child has it is not known there.
    owner: Pid,
}

// SAFETY: a `Mapping` only hands out its address and unmaps on drop: any thread may hold it.
// Reading through the address is each reader's own `unsafe` (a bulk body is unchanged while
// read, by the bulk protocol; the reply journal's mapping is read atomically or below the
// published tail, see `crate::journal`).
unsafe impl Send for Mapping {}
// SAFETY: as `Send`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// The first `len` bytes (at most the mapping's length).
    ///
    /// # Safety
    ///
    /// The bytes must not change while the slice lives (the bulk protocol: see
    /// [`BulkView::map`]).
    unsafe fn bytes(&self, len: usize) -> &[u8] {
        debug_assert!(len <= self.len);
        // SAFETY: `ptr` is a readable mapping of `self.len >= len` bytes, alive while `self`
        // is; the caller promises they do not change meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), len) }
    }

    /// The start of the mapping.
    pub(crate) fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Keeps the mapping out of forked children from now on (`MADV_DONTFORK`), as its normal
    /// state: a [`Loan`] lets children have it only while it lasts.
    pub(crate) fn keep_out_of_children(&mut self) -> io::Result<()> {
        self.set_forked(false)?;
        self.dont_fork = true;
        Ok(())
    }

    /// Sets whether forked children get the mapping (`MADV_DOFORK` or `MADV_DONTFORK`).
    pub(crate) fn set_forked(&self, forked: bool) -> io::Result<()> {
        if self.owner != getpid() {
            // A forked child's copy: the advice is the owner's to give.
            return Ok(());
        }
        let advice = if forked {
            MmapAdvise::MADV_DOFORK
        } else {
            MmapAdvise::MADV_DONTFORK
        };
        // SAFETY: exactly our mapping; the advice changes only whether a child of `fork` gets
        // a copy of it, never its contents or this process's access.
        unsafe { madvise(self.ptr.cast(), self.len, advice) }.map_err(os)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.owner == getpid() {
            // SAFETY: our mapping of `len` bytes; every slice of it borrowed a handle (a view,
            // a kept mapping, a loan's token), and this is the last handle.
            let _ = unsafe { munmap(self.ptr.cast(), self.len) };
        }
    }
}

/// A received bulk body: the first `len` bytes of the sender's [`BulkBuf`], mapped
/// read-only — by the view itself ([`map`](Self::map)), or by a [`BulkMaps`] that keeps the
/// mapping for the next body in the same buffer (then the view borrows it for `'m`).
#[derive(Debug)]
pub(crate) struct BulkView<'m> {
    mapping: Option<Arc<Mapping>>,
    len: usize,
    /// The memfd's inode: which buffer this is (tests check when one is reused).
    #[cfg(test)]
    pub(crate) inode: u64,
    _maps: PhantomData<&'m mut BulkMaps>,
}

/// Checks that `fd` is sealed like a [`BulkBuf`]'s and holds at least `len` bytes, and maps
/// those bytes read-only, populated at once (`MAP_POPULATE`: one call instead of a page
/// fault per 64 KiB while decoding), rounded up to the file's pages.
///
/// # Safety
///
/// As [`BulkView::map`]: the returned memory must not be read while the sender writes it.
pub(crate) unsafe fn map_sealed(fd: BorrowedFd<'_>, len: NonZeroUsize) -> io::Result<Mapping> {
    if !memfd::seals(fd).map_err(os)?.contains(SEALS) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a bulk body arrived in a file that is not sealed against writing and shrinking",
        ));
    }
    let file_size = memfd::size(fd).map_err(os)?;
    if file_size < len.get() as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a bulk body of {len} bytes arrived in a file of {file_size} bytes"),
        ));
    }
    let map_len = len
        .get()
        .checked_next_multiple_of(memfd::granularity(fd).map_err(os)?)
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bulk body too large"))?;
    // SAFETY: a fresh read-only mapping of `len` bytes, rounded up to the file's pages (a
    // hugetlb file maps only in whole huge pages): no existing memory is affected. The file is
    // at least `len` bytes long (checked above) and sealed against shrinking, so the bytes a
    // view lends are backed; the rest of the last page is never read.
    let map = unsafe {
        mmap(
            None,
            map_len,
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE,
            fd,
            0,
        )
    }
    .map_err(os)?;
    Ok(Mapping {
        ptr: map.cast(),
        len: map_len.get(),
        dont_fork: false,
        owner: getpid(),
    })
}

impl BulkView<'static> {
    /// Maps the first `len` bytes of the memfd `fd` (received in a bulk frame), for this view
    /// alone. A descriptor that is not sealed like a [`BulkBuf`]'s, or shorter than `len`, is
    /// an error, not a later `SIGBUS`.
    ///
    /// # Safety
    ///
    /// Until the view is dropped, the sender's own mapping (the one writable mapping the
    /// seals allow) must not write the first `len` bytes: the view hands them out as
    /// `&[u8]`. The pool's protocol guarantees it — a sender writes its buffer again only
    /// after the frame that carried it was answered — so a caller must only map descriptors
    /// from a peer that follows that protocol.
    pub(crate) unsafe fn map(fd: OwnedFd, len: usize) -> io::Result<BulkView<'static>> {
        #[cfg(test)]
        let inode = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(os)?.st_ino;
        let mapping = match NonZeroUsize::new(len) {
            // SAFETY: this function's contract.
            Some(size) => Some(Arc::new(unsafe { map_sealed(fd.as_fd(), size) }?)),
            None => None,
        };
        Ok(BulkView {
            mapping,
            len,
            #[cfg(test)]
            inode,
            _maps: PhantomData,
        })
    }
}

impl BulkView<'_> {
    /// The body.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match &self.mapping {
            // SAFETY: a read-only mapping of at least `len` bytes, alive as long as `self`
            // (which holds a handle); by the contract under which the view was made, nobody
            // writes them meanwhile.
            Some(mapping) => unsafe { mapping.bytes(self.len) },
            None => &[],
        }
    }

    /// The mapping, if the body is not empty.
    pub(crate) fn mapping(&self) -> Option<&Arc<Mapping>> {
        self.mapping.as_ref()
    }
}

#[cfg(test)]
mod tests;
