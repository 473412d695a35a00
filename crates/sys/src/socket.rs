//! Socket reads the `nix` wrappers cannot express.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

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
