//! Socket reads the `nix` wrappers cannot express.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::MsgFlags;

/// The most descriptors one message can carry (the kernel's `SCM_MAX_FD`).
pub const SCM_MAX_FD: usize = 253;

/// What one [`recv_with_fds`] brought.
#[derive(Debug)]
pub struct Received {
    /// Bytes written into the buffer (0 at the end of the stream).
    pub bytes: usize,
    /// The descriptors that came with them, in order, now owned by the caller.
    pub fds: Vec<OwnedFd>,
    /// The kernel cut the descriptors short (`MSG_CTRUNC`): more were sent than fitted, or
    /// this process ran out of descriptor numbers. Those in `fds` did arrive; the rest were
    /// closed by the kernel.
    pub fds_truncated: bool,
}

/// One `recvmsg` from the socket `fd` into `buf`, with room for up to `max_fds` descriptors
/// (received close-on-exec), retried when a signal interrupts it before anything arrived.
/// `flags` are added to `MSG_CMSG_CLOEXEC` (`MSG_DONTWAIT`, `MSG_WAITALL`, ...).
///
/// Unlike `nix`'s `RecvMsg::cmsgs`, which refuses to list the descriptors of a message whose
/// control data was truncated, this takes ownership of every descriptor the kernel
/// installed, truncated or not, so none is leaked: the caller decides what a truncation
/// means (usually an error, after which `fds` closes them on drop).
///
/// `max_fds` is at most [`SCM_MAX_FD`], the most one message can carry (more is
/// `InvalidInput`): the room for them is on the stack, so a read allocates nothing.
pub fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
    flags: MsgFlags,
) -> io::Result<Received> {
    const INT: usize = std::mem::size_of::<libc::c_int>();
    // A header and SCM_MAX_FD descriptors, each part padded to 8 bytes, in u64 words: the
    // buffer must be aligned for `cmsghdr`.
    const WORDS: usize =
        std::mem::size_of::<libc::cmsghdr>().div_ceil(8) + (SCM_MAX_FD * INT).div_ceil(8);
    if max_fds > SCM_MAX_FD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("max_fds: one message carries at most {SCM_MAX_FD} descriptors"),
        ));
    }
    // SAFETY: CMSG_SPACE only computes a size from its argument (at most 253 × 4 here).
    let space = unsafe { libc::CMSG_SPACE((max_fds * INT) as u32) } as usize;
    let mut control = [0u64; WORDS];
    debug_assert!(space <= std::mem::size_of_val(&control));
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    loop {
        // SAFETY: an all-zero `msghdr` is a valid value (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` points at one iovec covering `buf` (writable for its length) and at
        // `control`, `space` bytes aligned for `cmsghdr`; both outlive the call, and
        // `recvmsg` writes within those lengths only. `fd` is borrowed, so open.
        let n = unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &mut msg,
                libc::MSG_CMSG_CLOEXEC | flags.bits(),
            )
        };
        if n < 0 {
            let errno = Errno::last();
            if errno == Errno::EINTR {
                continue;
            }
            return Err(errno.into());
        }
        let mut fds = Vec::new();
        // SAFETY: `msg` is the header `recvmsg` just filled: CMSG_FIRSTHDR and CMSG_NXTHDR
        // walk the control messages within its `msg_controllen` (which the kernel set to the
        // bytes it wrote), returning null past the last one.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: a non-null `cmsg` points at a whole, aligned header inside `control`.
            let header = unsafe { &*cmsg };
            if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
                // SAFETY: CMSG_LEN only computes a size.
                let payload = header.cmsg_len as usize - unsafe { libc::CMSG_LEN(0) } as usize;
                // SAFETY: the header's data follows it within `control` and holds
                // `payload` bytes: the descriptors the kernel installed, even when it
                // truncated the message (it sets `cmsg_len` to what it wrote).
                let first = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
                for i in 0..payload / INT {
                    // SAFETY: `i` is within the data (above); it may be unaligned for an int.
                    let raw = unsafe { first.add(i).read_unaligned() };
                    // SAFETY: the kernel has just installed `raw` in this process's table for
                    // this message; nothing else knows its number, so this is its one owner.
                    fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
            // SAFETY: as for CMSG_FIRSTHDR; `cmsg` is a header of this message.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        return Ok(Received {
            bytes: n as usize,
            fds,
            fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
        });
    }
}

/// Receives up to `max` bytes from the stream socket `fd` straight into `buf`'s spare
/// capacity, without zero-filling it first, and appends them to `buf` (`recv` with
/// `MSG_WAITALL`: fewer than `max` only at the end of the stream, on an error after some
/// bytes, or on a signal). Retries when interrupted before any byte arrived; returns how many
/// bytes were appended (0 at the end of the stream).
///
/// # Panics
///
/// If `buf` has fewer than `max` bytes of spare capacity (reserve them first).
pub fn recv_into_spare(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let spare = &mut buf.spare_capacity_mut()[..max];
    loop {
        // SAFETY: `spare` is `max` bytes of `buf`'s allocated, unused capacity, valid for
        // writes for the whole call; `recv` writes at most `spare.len()` bytes there and
        // returns how many. `fd` is borrowed, so open for the call.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_WAITALL,
            )
        };
        if n < 0 {
            let errno = Errno::last();
            if errno == Errno::EINTR {
                continue;
            }
            return Err(errno.into());
        }
        let n = n as usize;
        // SAFETY: `recv` initialised the first `n` bytes of the spare capacity, which
        // directly follow the initialised part.
        unsafe { buf.set_len(buf.len() + n) };
        return Ok(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn every_descriptor_that_arrived_is_owned_even_when_cut_short() {
        use nix::sys::socket::{sendmsg, ControlMessage};
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        let send = |n: usize| {
            let fds = vec![w.as_raw_fd(); n];
            let iov = [std::io::IoSlice::new(b"hi")];
            let cmsg = [ControlMessage::ScmRights(&fds)];
            sendmsg::<()>(a.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).unwrap();
        };
        send(3);
        send(5);
        drop(w);
        let mut buf = [0u8; 2];
        let got = recv_with_fds(b.as_fd(), &mut buf, 4, MsgFlags::empty()).unwrap();
        assert_eq!((got.bytes, got.fds.len(), got.fds_truncated), (2, 3, false));
        let cut = recv_with_fds(b.as_fd(), &mut buf, 4, MsgFlags::empty()).unwrap();
        assert_eq!((cut.bytes, cut.fds.len(), cut.fds_truncated), (2, 4, true));
        let none = recv_with_fds(b.as_fd(), &mut buf, 4, MsgFlags::MSG_DONTWAIT).unwrap_err();
        assert_eq!(none.kind(), io::ErrorKind::WouldBlock);
        // The writer's copies are the descriptors received, and nothing else: once those are
        // dropped, the pipe reads end-of-file (a leaked copy would keep it open).
        drop((got, cut));
        let flags = nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(r.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            nix::unistd::read(r.as_raw_fd(), &mut byte),
            Ok(0),
            "a copy of the writer is still open"
        );
    }

    #[test]
    fn bytes_land_after_the_initialised_part() {
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.write_all(b"hello").unwrap();
        drop(a);
        let mut buf = b"> ".to_vec();
        buf.reserve(16);
        assert_eq!(recv_into_spare(b.as_fd(), &mut buf, 16).unwrap(), 5);
        assert_eq!(buf, b"> hello");
        buf.reserve(16);
        assert_eq!(recv_into_spare(b.as_fd(), &mut buf, 16).unwrap(), 0);
    }
}
