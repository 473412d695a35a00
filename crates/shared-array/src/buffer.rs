//! [`ShmBuffer`]: anonymous shared memory (memfd + `MAP_SHARED`), and its transfer to another
//! process as a file descriptor ([`send_buffer`] / [`recv_buffer`]).

use std::io::{IoSlice, IoSliceMut};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use multiproc_core::{Error, Result, SharedBuffer};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::stat::{fchmod, fstat, Mode};

/// The seals every buffer carries: its size can never change, so no process holding the
/// descriptor can truncate the file under another process's mapping (which would turn
/// accesses into SIGBUS).
const SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SEAL);

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
/// same time; the typed arrays in this crate build on it.
pub struct ShmBuffer {
    ptr: NonNull<u8>,
    len: usize,
    map_len: usize,
    fd: OwnedFd,
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

impl ShmBuffer {
    /// A new zeroed buffer of `len` bytes.
    ///
    /// Errors: `len == 0`, or so large that it cannot be mapped (more than `isize::MAX`, or
    /// than the address space allows) is [`Error::InvalidArgument`] naming `len`; running out
    /// of descriptors is [`Error::Io`].
    pub fn new(len: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::invalid(
                "len",
                "a shared buffer needs at least 1 byte",
            ));
        }
        let page = page_size();
        let map_len = len
            .checked_next_multiple_of(page)
            .filter(|&m| m <= isize::MAX as usize)
            .ok_or_else(|| {
                Error::invalid(
                    "len",
                    format!("{len} bytes is larger than any mapping can be (isize::MAX)"),
                )
            })?;
        let fd = memfd_create(
            c"multiproc-shm",
            MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
        )
        .map_err(io)?;
        fchmod(fd.as_raw_fd(), Mode::S_IRUSR | Mode::S_IWUSR).map_err(io)?;
        let size = libc::off_t::try_from(map_len)
            .map_err(|_| Error::invalid("len", format!("{len} bytes does not fit off_t")))?;
        nix::unistd::ftruncate(&fd, size).map_err(|e| match e {
            Errno::EFBIG | Errno::EINVAL | Errno::ENOSPC | Errno::ENOMEM => Error::invalid(
                "len",
                format!("cannot create a shared buffer of {len} bytes: {e}"),
            ),
            e => io(e),
        })?;
        fcntl(fd.as_raw_fd(), FcntlArg::F_ADD_SEALS(SEALS)).map_err(io)?;
        Self::map(fd, len, map_len)
    }

    fn map(fd: OwnedFd, len: usize, map_len: usize) -> Result<Self> {
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
        Ok(ShmBuffer {
            ptr: ptr.cast(),
            len,
            map_len,
            fd,
        })
    }

    /// Attaches to a received descriptor: checks that it is a sealed memfd of at least `len`
    /// bytes and maps it.
    fn from_fd(fd: OwnedFd, len: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::invalid("len", "a shared buffer has at least 1 byte"));
        }
        let seals = fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS).map_err(|e| {
            Error::invalid(
                "socket",
                format!("the received descriptor is not a sealable memfd: {e}"),
            )
        })?;
        if seals & SealFlag::F_SEAL_SHRINK.bits() == 0 {
            return Err(Error::invalid(
                "socket",
                "the received memfd is not sealed against shrinking; mapping it could SIGBUS",
            ));
        }
        let st = fstat(fd.as_raw_fd()).map_err(io)?;
        let size = usize::try_from(st.st_size).unwrap_or(0);
        if size < len {
            return Err(Error::invalid(
                "socket",
                format!("the received memfd has {size} bytes, the message claims {len}"),
            ));
        }
        Self::map(fd, len, size)
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
// from any number of threads and processes.
unsafe impl SharedBuffer for ShmBuffer {
    fn len(&self) -> usize {
        self.len
    }

    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

fn io(e: Errno) -> Error {
    Error::Io(std::io::Error::from(e))
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
    let mut cmsg_space = nix::cmsg_space!([RawFd; 4]);
    let (bytes, truncated, mut fds) = loop {
        let mut iov = [IoSliceMut::new(&mut msg)];
        match recvmsg::<()>(
            socket.as_fd().as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_WAITALL,
        ) {
            Ok(r) => {
                let mut fds = Vec::new();
                for c in r.cmsgs().map_err(io)? {
                    if let ControlMessageOwned::ScmRights(received) = c {
                        for fd in received {
                            // SAFETY: SCM_RIGHTS just installed this descriptor in our table;
                            // nothing else owns it, so taking ownership closes it on drop.
                            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    }
                }
                break (r.bytes, r.flags.contains(MsgFlags::MSG_CTRUNC), fds);
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io(e)),
        }
    };
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
    ShmBuffer::from_fd(fds.pop().expect("one descriptor"), len)
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
        let st = fstat(b.fd().as_raw_fd()).unwrap();
        assert_eq!(st.st_mode & 0o777, 0o600);
        let seals = fcntl(b.fd().as_raw_fd(), FcntlArg::F_GET_SEALS).unwrap();
        assert_eq!(seals & SEALS.bits(), SEALS.bits());
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
