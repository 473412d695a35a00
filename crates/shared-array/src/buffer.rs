//! [`ShmBuffer`]: anonymous shared memory (memfd + `MAP_SHARED`), and its transfer to another
//! process as a file descriptor ([`send_buffer`] / [`recv_buffer`]).

use std::io::IoSlice;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

use multiproc_core::{Error, Result, SharedBuffer};
use multiproc_sys::memfd::{self, SealFlag};
use multiproc_sys::pages::{self, PageKind};
use multiproc_sys::socket::{recv_with_fds, Received};
use nix::errno::Errno;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::{fchmod, Mode};

/// The seals every buffer carries: its size can never change, so no process holding the
/// descriptor can truncate the file under another process's mapping (which would turn
/// accesses into SIGBUS).
///
/// `F_SEAL_SEAL` is deliberately *not* set: [`FrozenArray`](crate::FrozenArray) adds
/// `F_SEAL_WRITE` later, which the kernel grants only when no writable mapping of the file
/// exists in any process. Whoever else holds the descriptor can only add seals that make
/// later mappings or writes fail (an error), never ones that pull memory from under a
/// mapping.
pub(crate) const SEALS: SealFlag = SealFlag::F_SEAL_SHRINK.union(SealFlag::F_SEAL_GROW);

/// The bytes reserved at the end of every buffer's memfd for its
/// [width record](SharedBuffer::width_word): the record is the last 8 bytes of the *file*
/// (whose size the seals fix forever), so every handle of the memory, in every process, finds
/// it at the same place whatever length it was told — never inside anyone's data.
const RECORD: usize = 8;

/// The bytes a memfd needs for `len` bytes of data and the width record (`None`: overflow).
fn bytes_with_record(len: usize) -> Option<usize> {
    len.checked_add(RECORD)
}

/// Marks the one message [`send_buffer`] writes.
const WIRE_MAGIC: u64 = u64::from_le_bytes(*b"mpshmbuf");

/// A zero-initialised region of anonymous shared memory.
///
/// It is a `memfd` (no name in any file system: nothing in `/dev/shm`, nothing on disk, so a
/// crash leaks nothing) of mode `0600`, sealed against resizing, mapped `MAP_SHARED`. Another
/// process sees the same bytes when it
///
/// - is **forked** after the buffer was created (the mapping is inherited), or
/// - **receives** the descriptor with [`recv_buffer`] from a process that called
///   [`send_buffer`] on a Unix socket (`SCM_RIGHTS`).
///
/// Only the owning user can open it: the file is reachable only through a descriptor, which a
/// process gets by inheritance, by `SCM_RIGHTS`, or through `/proc/<pid>/fd/<n>`, which the
/// kernel allows only to processes that may ptrace the owner (same user, or root). The
/// descriptor is close-on-exec, so an unrelated `exec`ed child does not inherit it.
///
/// Pages are allocated on first touch: creating even a huge buffer costs no memory until it
/// is written (memfd files are `VM_NORESERVE`; nothing is pre-faulted).
///
/// As a [`SharedBuffer`] it offers atomic access, sound whatever other processes do at the
/// same time; the typed arrays in this crate build on it. Its [`AccessWidth`] record (one
/// access size per region: the first typed view fixes it, see
/// [`SharedBuffer::claim_width`]) is the last word of the memfd, after the `len` bytes of
/// data, so it is the same record in every process that maps the memory, however it got
/// there.
///
/// [`AccessWidth`]: multiproc_core::AccessWidth
pub struct ShmBuffer {
    ptr: NonNull<u8>,
    len: usize,
    map_len: usize,
    fd: OwnedFd,
    pages: PageKind,
}

// SAFETY: the mapping is process-wide memory; the struct only holds its address, length and
// descriptor, which any thread may use. All access through the SharedBuffer API is atomic.
unsafe impl Send for ShmBuffer {}
// SAFETY: as above: `&ShmBuffer` only exposes the address and atomic views.
unsafe impl Sync for ShmBuffer {}

impl std::fmt::Debug for ShmBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmBuffer")
            .field("len", &self.len)
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize)
}

/// A new zeroed memfd of at least `len` bytes (a whole number of pages: the returned
/// length), in huge pages where the system offers them ([`memfd::create_shared`]), mode
/// 0600, sealed against shrinking and growing, not mapped. Errors as [`ShmBuffer::new`].
pub(crate) fn new_memfd(len: usize) -> Result<(OwnedFd, usize, PageKind)> {
    if len == 0 {
        return Err(Error::invalid(
            "len",
            "a shared buffer needs at least 1 byte",
        ));
    }
    let bytes = bytes_with_record(len)
        .filter(|&b| b <= (isize::MAX as usize) - page_size())
        .ok_or_else(|| {
            Error::invalid(
                "len",
                format!("{len} bytes is larger than any mapping can be (isize::MAX)"),
            )
        })?;
    let file = memfd::create_shared(c"multiproc-shm", bytes).map_err(|e| match e {
        Errno::EFBIG | Errno::EINVAL | Errno::ENOSPC | Errno::ENOMEM => Error::invalid(
            "len",
            format!("cannot create a shared buffer of {len} bytes: {e}"),
        ),
        e => io(e),
    })?;
    fchmod(file.fd.as_raw_fd(), Mode::S_IRUSR | Mode::S_IWUSR).map_err(io)?;
    memfd::add_seals(file.fd.as_fd(), SEALS).map_err(io)?;
    Ok((file.fd, file.len, file.pages))
}

impl ShmBuffer {
    /// A new zeroed buffer of `len` bytes.
    ///
    /// Errors: `len == 0`, or so large that it cannot be mapped (more than `isize::MAX`, or
    /// than the address space allows) is [`Error::InvalidArgument`] naming `len`; running out
    /// of descriptors is [`Error::Io`].
    pub fn new(len: usize) -> Result<Self> {
        let (fd, map_len, pages) = new_memfd(len)?;
        Self::map(fd, len, map_len, pages)
    }

    /// Maps `map_len` bytes of `fd` (the whole file), backed by `pages`.
    pub(crate) fn map(fd: OwnedFd, len: usize, map_len: usize, pages: PageKind) -> Result<Self> {
        if !bytes_with_record(len).is_some_and(|b| b <= map_len) || map_len % RECORD != 0 {
            return Err(Error::invalid(
                "len",
                format!("{len} bytes and the width record do not fit a mapping of {map_len}"),
            ));
        }
        let length = NonZeroUsize::new(map_len).ok_or_else(|| Error::invalid("len", "is 0"))?;
        // SAFETY: a fresh MAP_SHARED mapping at an address the kernel chooses cannot alias any
        // Rust object; the file is at least `map_len` bytes and sealed against shrinking, so
        // every mapped byte stays backed.
        let ptr = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        }
        .map_err(|e| match e {
            Errno::ENOMEM | Errno::EINVAL | Errno::EOVERFLOW => Error::invalid(
                "len",
                format!("cannot map a shared buffer of {len} bytes: {e}"),
            ),
            e => io(e),
        })?;
        // SAFETY: the range is the mapping just made.
        unsafe { pages::advise(ptr, map_len, pages) };
        Ok(ShmBuffer {
            ptr: ptr.cast(),
            len,
            map_len,
            fd,
            pages,
        })
    }

    /// Attaches to a received descriptor: checks that it is a writable memfd sealed against
    /// shrinking and long enough for `len` bytes and the width record (see [`check_memfd`]),
    /// and maps it. Errors name `name`.
    fn from_fd(fd: OwnedFd, len: usize, name: &'static str) -> Result<Self> {
        if len == 0 {
            return Err(Error::invalid(name, "a shared buffer has at least 1 byte"));
        }
        let need = bytes_with_record(len)
            .ok_or_else(|| Error::invalid(name, format!("length {len} is too large")))?;
        let size = check_memfd(fd.as_fd(), need, name)?;
        if size.seals & SealFlag::F_SEAL_GROW.bits() == 0 || size.bytes % RECORD != 0 {
            return Err(Error::invalid(
                name,
                "the memfd is not a multiproc buffer (its size must be sealed, and a multiple \
                 of 8 bytes ending in the width record)",
            ));
        }
        if size.seals & FROZEN_SEALS != 0 {
            return Err(Error::invalid(
                name,
                "the memfd is sealed against writing (a FrozenArray); attach it as a \
                 FrozenArray, not as a writable buffer",
            ));
        }
        let pages = memfd::page_kind(fd.as_fd(), size.bytes).map_err(io)?;
        Self::map(fd, len, size.bytes, pages)
    }

    /// A second handle to the same memory: the descriptor duplicated and mapped again (at
    /// another address). Like every `ShmBuffer`, it offers atomic access only.
    ///
    /// Errors: out of descriptors or address space ([`Error::Io`]).
    pub fn try_clone(&self) -> Result<ShmBuffer> {
        let fd = self.fd.try_clone().map_err(Error::Io)?;
        Self::map(fd, self.len, self.map_len, self.pages)
    }

    /// The pages behind the buffer: huge pages where the system offered them when it was
    /// made (see [`multiproc_sys::pages`]), ordinary ones otherwise.
    pub fn pages(&self) -> PageKind {
        self.pages
    }

    /// The mapping's length in bytes (`len` rounded up to whole pages).
    pub(crate) fn map_len(&self) -> usize {
        self.map_len
    }

    /// Unmaps the buffer and gives back its descriptor, `len` and mapping length.
    ///
    /// Taking `self` by value means no reference into the mapping outlives the unmapping.
    pub(crate) fn into_fd(self) -> (OwnedFd, usize, usize, PageKind) {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: the mapping was created by `map` with this address and length; `self` is
        // consumed (and its Drop suppressed), so nothing refers to the mapping any more.
        let _ = unsafe { munmap(this.ptr.cast(), this.map_len) };
        // SAFETY: `this` is never used or dropped again; the descriptor is moved out once.
        let fd = unsafe { std::ptr::read(&this.fd) };
        (fd, this.len, this.map_len, this.pages)
    }

    /// The memfd behind the buffer (for [`send_buffer`], or to inspect it).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsFd for ShmBuffer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for ShmBuffer {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `map` with this address and length and is unmapped
        // only here; `&mut self` means no borrow of its bytes outlives this call.
        let _ = unsafe { munmap(self.ptr.cast(), self.map_len) };
        // The OwnedFd closes the descriptor; the kernel frees the memory when the last mapping
        // and descriptor (in any process) are gone.
    }
}

// SAFETY: the mapping is page-aligned (so at least 8-aligned), readable and writable for
// `map_len >= len` bytes, zero-filled at creation (a fresh memfd reads as zeros), stays mapped
// at this address until drop, and is MAP_SHARED memory that tolerates concurrent atomic access
// from any number of threads and processes. The width word is in the memfd itself: its last 8
// bytes (every handle maps the whole file, whose size the seals fix), after the data, so every
// handle in every process shares it whatever length it was given.
unsafe impl SharedBuffer for ShmBuffer {
    fn len(&self) -> usize {
        self.len
    }

    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    unsafe fn width_word(&self) -> &AtomicU32 {
        // SAFETY: `map` checked that the mapping (the whole file, whose size is a multiple of
        // 8 and sealed) ends in the record after at least `len` bytes of data; its start is
        // page-aligned, so the word is 8-aligned; the memfd cannot shrink, so it stays backed
        // while mapped; it is zero until claimed, outside the data, and only ever accessed as
        // this AtomicU32, at the same file offset by every process that maps the file.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .add(self.map_len - RECORD)
                .cast::<AtomicU32>()
        }
    }
}

/// Gives a length error the caller's argument name.
pub(crate) fn rename(e: Error, name: &'static str) -> Error {
    match e {
        Error::InvalidArgument {
            name: "len",
            reason,
        } => Error::InvalidArgument { name, reason },
        e => e,
    }
}

pub(crate) fn io(e: Errno) -> Error {
    Error::Io(std::io::Error::from(e))
}

/// The seals that make a memfd's contents immutable (see [`FrozenArray`](crate::FrozenArray)).
pub(crate) const FROZEN_SEALS: i32 =
    SealFlag::F_SEAL_WRITE.bits() | SealFlag::F_SEAL_FUTURE_WRITE.bits();

/// What [`check_memfd`] found out about a descriptor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemfdInfo {
    /// Its size in bytes (at least the length that was asked for).
    pub(crate) bytes: usize,
    /// Its seals (`F_GET_SEALS`).
    pub(crate) seals: i32,
}

/// Checks that `fd` is a memfd (a sealable shmem file) sealed against shrinking, whose size
/// (`fstat`) is at least `len` bytes, with `len > 0`. A descriptor that fails is refused with
/// [`Error::InvalidArgument`] naming `name`: mapping it could not be trusted (a file that can
/// shrink, or is shorter than claimed, turns access into SIGBUS).
pub(crate) fn check_memfd(fd: BorrowedFd<'_>, len: usize, name: &'static str) -> Result<MemfdInfo> {
    if len == 0 {
        return Err(Error::invalid(name, "a shared buffer has at least 1 byte"));
    }
    let seals = memfd::seals(fd).map_err(|e| {
        Error::invalid(
            name,
            format!("the descriptor is not a sealable memfd (F_GET_SEALS: {e})"),
        )
    })?;
    let seals = seals.bits();
    if seals & SealFlag::F_SEAL_SHRINK.bits() == 0 {
        return Err(Error::invalid(
            name,
            "the memfd is not sealed against shrinking; mapping it could SIGBUS",
        ));
    }
    let bytes = usize::try_from(memfd::size(fd).map_err(io)?).unwrap_or(0);
    if bytes < len {
        return Err(Error::invalid(
            name,
            format!("the memfd has {bytes} bytes, fewer than the {len} claimed"),
        ));
    }
    Ok(MemfdInfo { bytes, seals })
}

// ----------------------------------------------------------------------------------------------
// Crossing into another process as a serde value (multiproc_core::handoff)
// ----------------------------------------------------------------------------------------------

/// The wire form of a [`ShmBuffer`]: its descriptor (an index into the message's descriptor
/// table, see [`multiproc_core::handoff`]) and its length.
#[derive(serde::Serialize)]
#[serde(rename = "ShmBuffer")]
pub(crate) struct BufferOut<'a> {
    #[serde(with = "multiproc_core::handoff::fd")]
    pub(crate) fd: BorrowedFd<'a>,
    pub(crate) len: u64,
}

/// See [`BufferOut`].
#[derive(serde::Deserialize)]
#[serde(rename = "ShmBuffer")]
pub(crate) struct BufferIn {
    #[serde(with = "multiproc_core::handoff::fd")]
    pub(crate) fd: OwnedFd,
    pub(crate) len: u64,
}

/// Sent through a multiproc transport (a process pool's arguments, a spawned `Process`, a
/// `Pipe`), a `ShmBuffer` travels as its descriptor (`SCM_RIGHTS`) plus its length, and the
/// receiver maps the same memory. Outside such a transport, serializing it is an error (see
/// [`multiproc_core::handoff`]).
impl serde::Serialize for ShmBuffer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        BufferOut {
            fd: self.fd.as_fd(),
            len: self.len as u64,
        }
        .serialize(s)
    }
}

/// Receiving checks the descriptor before mapping it: a memfd, sealed against shrinking, at
/// least as long as announced, not frozen; anything else is an error naming `fd` (never a
/// mapping that could SIGBUS).
impl<'de> serde::Deserialize<'de> for ShmBuffer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let wire = BufferIn::deserialize(d)?;
        let len = usize::try_from(wire.len).map_err(|_| {
            D::Error::custom(Error::invalid(
                "fd",
                format!("length {} is too large", wire.len),
            ))
        })?;
        ShmBuffer::from_fd(wire.fd, len, "fd").map_err(D::Error::custom)
    }
}

/// Sends `buffer` to the process at the other end of the Unix socket `socket`: its descriptor
/// travels as `SCM_RIGHTS`, its length in a 16-byte message. The receiver calls
/// [`recv_buffer`] and maps the same memory; the buffer stays valid here too.
///
/// Use a `SOCK_STREAM` or `SOCK_SEQPACKET` socket (for example a
/// [`std::os::unix::net::UnixStream`] pair) that carries nothing else at the same time.
pub fn send_buffer(socket: impl AsFd, buffer: &ShmBuffer) -> Result<()> {
    let mut msg = [0u8; 16];
    msg[..8].copy_from_slice(&WIRE_MAGIC.to_le_bytes());
    msg[8..].copy_from_slice(&(buffer.len as u64).to_le_bytes());
    let fds = [buffer.fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(&msg)];
    loop {
        match sendmsg::<()>(
            socket.as_fd().as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(16) => return Ok(()),
            Ok(n) => {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("sent {n} of 16 bytes of a buffer message"),
                )))
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io(e)),
        }
    }
}

/// Receives a buffer sent by [`send_buffer`] on the Unix socket `socket`, and maps it.
///
/// The result aliases memory that the sender (and whoever else holds it) can access at any
/// time: its [`SharedBuffer`] atomic access is always sound, typed access is the `unsafe`
/// attach functions' business (such as [`RawArray::from_buffer`](crate::RawArray::from_buffer)).
///
/// Errors: end of stream is [`Error::Io`] (`UnexpectedEof`); a message that is not a buffer,
/// or a descriptor that is not a sealed memfd of the announced size, is
/// [`Error::InvalidArgument`] naming `socket`. Descriptors that arrive with a bad message are
/// closed, never leaked.
pub fn recv_buffer(socket: impl AsFd) -> Result<ShmBuffer> {
    let mut msg = [0u8; 16];
    // Room for a few more descriptors than the one expected, so that a message with a few
    // extra ones is told apart from one that was cut short; all of them are closed below.
    let Received {
        bytes,
        mut fds,
        fds_truncated: truncated,
    } = recv_with_fds(socket.as_fd(), &mut msg, 4, MsgFlags::MSG_WAITALL).map_err(Error::Io)?;
    if bytes == 0 && fds.is_empty() {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the socket closed before a buffer arrived",
        )));
    }
    if bytes != 16 || msg[..8] != WIRE_MAGIC.to_le_bytes() {
        return Err(Error::invalid(
            "socket",
            format!("received {bytes} bytes that are not a send_buffer message"),
        ));
    }
    if truncated || fds.len() != 1 {
        return Err(Error::invalid(
            "socket",
            format!(
                "expected exactly one descriptor with the message, got {}{}",
                fds.len(),
                if truncated { " (truncated)" } else { "" }
            ),
        ));
    }
    let len = u64::from_le_bytes(msg[8..].try_into().expect("8 bytes"));
    let len = usize::try_from(len)
        .map_err(|_| Error::invalid("socket", format!("announced length {len} is too large")))?;
    ShmBuffer::from_fd(fds.pop().expect("one descriptor"), len, "socket")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_new_buffer_is_zeroed_private_and_sealed() {
        let b = ShmBuffer::new(10_000).unwrap();
        assert_eq!(b.len(), 10_000);
        assert_eq!(b.as_ptr() as usize % page_size(), 0);
        assert!(b.as_atomic_bytes().iter().all(|x| x.load(Relaxed) == 0));
        let st = nix::sys::stat::fstat(b.fd().as_raw_fd()).unwrap();
        assert_eq!(st.st_mode & 0o777, 0o600);
        assert!(memfd::seals(b.fd()).unwrap().contains(SEALS));
    }

    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn buffers_travel_over_unix_sockets() {
        let (a, b) = UnixStream::pair().unwrap();
        let mine = ShmBuffer::new(100).unwrap();
        mine.write_at(90, b"0123456789").unwrap();
        send_buffer(&a, &mine).unwrap();
        let theirs = recv_buffer(&b).unwrap();
        assert_eq!(theirs.len(), 100);
        assert_ne!(theirs.as_ptr(), mine.as_ptr());
        let mut out = [0u8; 10];
        theirs.read_at(90, &mut out).unwrap();
        assert_eq!(&out, b"0123456789");
        theirs.write_at(0, b"x").unwrap();
        mine.read_at(0, &mut out[..1]).unwrap();
        assert_eq!(out[0], b'x');
    }

    #[test]
    fn bad_messages_and_eof_are_errors() {
        use std::io::Write;
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[7u8; 16]).unwrap();
        assert!(matches!(
            recv_buffer(&b),
            Err(Error::InvalidArgument { name: "socket", .. })
        ));
        drop(a);
        assert!(matches!(recv_buffer(&b), Err(Error::Io(_))));
    }

    /// Whether every copy of `w` is closed: `r`, its pipe's read end, reads end-of-file.
    fn all_writers_closed(r: &OwnedFd) -> bool {
        let flags = nix::fcntl::fcntl(r.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(r.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
        let mut byte = [0u8; 1];
        matches!(nix::unistd::read(r.as_raw_fd(), &mut byte), Ok(0))
    }

    #[test]
    fn descriptors_cut_short_in_transit_are_closed_not_leaked() {
        // More descriptors than the receiver has room for: the kernel installs those that
        // fit and flags the message truncated. They must be closed with the error.
        let (a, b) = UnixStream::pair().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut msg = [0u8; 16];
        msg[..8].copy_from_slice(&WIRE_MAGIC.to_le_bytes());
        msg[8..].copy_from_slice(&100u64.to_le_bytes());
        let fds = [w.as_raw_fd(); 6];
        let iov = [IoSlice::new(&msg)];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(a.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).unwrap();
        drop(w);
        assert!(
            !all_writers_closed(&r),
            "the message holds copies of the writer"
        );
        assert!(matches!(
            recv_buffer(&b),
            Err(Error::InvalidArgument { name: "socket", .. })
        ));
        assert!(
            all_writers_closed(&r),
            "the descriptors that arrived were closed with the error"
        );
    }

    #[test]
    fn zero_and_absurd_lengths_name_len() {
        for len in [0, usize::MAX, isize::MAX as usize, 1 << 62] {
            match ShmBuffer::new(len) {
                Err(Error::InvalidArgument { name: "len", .. }) => {}
                other => panic!("len {len}: {other:?}"),
            }
        }
    }
}
