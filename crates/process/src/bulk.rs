//! Large frame bodies through shared memory instead of the socket.
//!
//! Sending 100 MB through a Unix socket costs two kernel copies (into socket buffers the
//! kernel allocates, then out of them) and, worse on our machines, fresh pages on the way. A
//! body of at least [`BULK_MIN`] bytes is therefore encoded straight into a [`BulkBuf`] — a
//! memfd the sender maps read-write and keeps for the next large body, so its pages are
//! already in memory — and only the frame header crosses the socket, with the memfd as one
//! more descriptor. The receiver maps it read-only ([`BulkView`]) and decodes from there:
//! one copy on each side, both into warm memory.
//!
//! This is a transport, not sharing: the receiver copies what it needs out while decoding,
//! and the sender writes the buffer again only after the receiver has answered the frame
//! that carried it (the pool keeps a task's buffer until its reply arrives, and reuses it
//! after). That ordering is the contract of [`BulkView::map`].

use std::ffi::c_void;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::mman::{mmap, mremap, munmap, MRemapFlags, MapFlags, ProtFlags};

/// Bodies at least this large travel in shared memory (when the frame has room for one more
/// descriptor); smaller ones through the socket, where a copy is cheaper than a mapping.
pub const BULK_MIN: usize = 1 << 20;

const PAGE: usize = 4096;

fn os(e: nix::errno::Errno) -> io::Error {
    io::Error::from(e)
}

/// A growable byte buffer in shared memory (a memfd mapped read-write), owned by the sender.
///
/// Its pages stay in memory between uses, which is the point: a large body encoded into it
/// the second time lands on warm pages.
#[derive(Debug)]
pub struct BulkBuf {
    fd: OwnedFd,
    map: NonNull<u8>,
    cap: usize,
    len: usize,
}

// SAFETY: a `BulkBuf` exclusively owns its mapping in this process (nothing else in the
// process has its address), like a `Vec<u8>` owns its allocation: moving it to another thread
// moves that ownership, and `&BulkBuf` only allows reading. Another process may map the same
// memfd read-only; it never writes it.
unsafe impl Send for BulkBuf {}
// SAFETY: shared references only read the initialised prefix (see `Send`).
unsafe impl Sync for BulkBuf {}

impl BulkBuf {
    /// An empty buffer with room for at least `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> io::Result<BulkBuf> {
        let cap = round_up(capacity.max(PAGE))?;
        let fd = memfd_create(c"multiproc-bulk", MemFdCreateFlag::MFD_CLOEXEC).map_err(os)?;
        nix::unistd::ftruncate(&fd, file_len(cap)?).map_err(os)?;
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
        Ok(BulkBuf {
            fd,
            map: map.cast(),
            cap,
            len: 0,
        })
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `cap >= len` bytes, readable, and its first `len` bytes were
        // written by `extend_from_slice` (the file's bytes beyond are zeros, never exposed).
        // Only this process writes it, and only through `&mut self`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len) }
    }

    /// How many bytes were written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes the mapping holds without growing.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The memfd, to send to the receiver.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Forgets the contents (keeping the memory).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `bytes`, growing the file and the mapping when needed.
    #[inline(always)]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> io::Result<()> {
        // `len <= cap <= isize::MAX` and a slice is at most `isize::MAX` bytes: no overflow.
        let end = self.len + bytes.len();
        if end > self.cap {
            self.grow(end)?;
        }
        // SAFETY: `len..end` lies inside the writable mapping (`end <= cap`), and `bytes`
        // (memory of this process outside the mapping, or we would hold `&mut self` and `&`
        // to it at once) does not overlap it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_ptr().add(self.len),
                bytes.len(),
            );
        }
        self.len = end;
        Ok(())
    }

    /// Grows to hold at least `needed` bytes: the file first, then the mapping (moved if it
    /// must be; the pages already written stay where they are in the file).
    #[cold]
    #[inline(never)]
    fn grow(&mut self, needed: usize) -> io::Result<()> {
        let cap = round_up(needed.max(self.cap.saturating_mul(2)))?;
        nix::unistd::ftruncate(&self.fd, file_len(cap)?).map_err(os)?;
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
        Ok(())
    }
}

impl Drop for BulkBuf {
    fn drop(&mut self) {
        // SAFETY: `map` is our mapping of `cap` bytes, and no reference into it outlives
        // `self`. A receiver's own mapping of the memfd is unaffected.
        let _ = unsafe { munmap(self.map.cast(), self.cap) };
    }
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

/// A received bulk body: the first `len` bytes of the sender's [`BulkBuf`], mapped
/// read-only until dropped.
#[derive(Debug)]
pub struct BulkView {
    map: Option<NonNull<u8>>,
    len: usize,
}

impl BulkView {
    /// Maps the first `len` bytes of the memfd `fd` (received in a bulk frame).
    ///
    /// The mapping is populated at once (`MAP_POPULATE`): one call instead of a page fault
    /// per 64 KiB while decoding. An `fd` shorter than `len` is an error, not a later
    /// `SIGBUS`.
    ///
    /// # Safety
    ///
    /// Until the view is dropped, no process may write the first `len` bytes of the file or
    /// shrink it: the view hands them out as `&[u8]`. The pool's protocol guarantees it — a
    /// sender writes its buffer again only after the frame that carried it was answered —
    /// so a caller must only map descriptors from a peer that follows that protocol.
    pub unsafe fn map(fd: OwnedFd, len: usize) -> io::Result<BulkView> {
        let Some(size) = NonZeroUsize::new(len) else {
            return Ok(BulkView { map: None, len: 0 });
        };
        let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd)).map_err(os)?;
        if u64::try_from(st.st_size).unwrap_or(0) < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a bulk body of {len} bytes arrived in a file of {} bytes",
                    st.st_size
                ),
            ));
        }
        // SAFETY: a fresh read-only mapping of `len` bytes of a file at least that long:
        // no existing memory is affected, and every mapped byte is backed.
        let map = unsafe {
            mmap(
                None,
                size,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE,
                &fd,
                0,
            )
        }
        .map_err(os)?;
        Ok(BulkView {
            map: Some(map.cast()),
            len,
        })
    }

    /// The body.
    pub fn as_slice(&self) -> &[u8] {
        match self.map {
            // SAFETY: `map` is our read-only mapping of `len` bytes, alive as long as `self`;
            // by `map`'s contract nobody writes them meanwhile.
            Some(map) => unsafe { std::slice::from_raw_parts(map.as_ptr(), self.len) },
            None => &[],
        }
    }
}

impl Drop for BulkView {
    fn drop(&mut self) {
        if let Some(map) = self.map {
            // SAFETY: our mapping of `len` bytes; the slices `as_slice` lent borrow `self`,
            // so none is alive.
            let _ = unsafe { munmap(map.cast(), self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_grows_and_its_receiver_sees_the_bytes() {
        let mut b = BulkBuf::with_capacity(10).unwrap();
        assert_eq!(b.capacity(), PAGE);
        let chunk: Vec<u8> = (0..=255).collect();
        for _ in 0..100 {
            b.extend_from_slice(&chunk).unwrap();
        }
        assert_eq!(b.len(), 25_600);
        assert!(b.capacity() >= 25_600);
        let fd = b.fd().try_clone_to_owned().unwrap();
        // SAFETY: `b` is not written while the view lives.
        let view = unsafe { BulkView::map(fd, b.len()) }.unwrap();
        assert_eq!(view.as_slice(), b.as_slice());
        assert_eq!(&view.as_slice()[256..512], &chunk[..]);
        drop(view);
        b.clear();
        b.extend_from_slice(b"again").unwrap();
        assert_eq!(b.as_slice(), b"again");
    }

    #[test]
    fn a_body_longer_than_its_file_is_refused() {
        let mut b = BulkBuf::with_capacity(PAGE).unwrap();
        b.extend_from_slice(b"short").unwrap();
        let fd = b.fd().try_clone_to_owned().unwrap();
        // SAFETY: `b` is not written while the view would live.
        let err = unsafe { BulkView::map(fd, 10 * PAGE) }.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // SAFETY: as above.
        let empty = unsafe { BulkView::map(b.fd().try_clone_to_owned().unwrap(), 0) }.unwrap();
        assert!(empty.as_slice().is_empty());
    }
}
