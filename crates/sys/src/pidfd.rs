//! Process descriptors (`pidfd_open`, Linux 5.3): a descriptor that names one process for as
//! long as it is open — never a later process that reuses the number — becomes readable when
//! that process ends, and signals exactly it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// An open process descriptor.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// `pidfd_open(pid, 0)`. Which process it names is decided now: open it for an unreaped
    /// child of ours (whose number nobody else can take yet) to be sure it is that child.
    /// Fails with `ENOSYS` on kernels before 5.3, `ESRCH` if there is no such process, and
    /// `EMFILE` when out of descriptors.
    pub fn open(pid: Pid) -> io::Result<PidFd> {
        // SAFETY: the raw syscall takes two integers and returns a new descriptor or -1; it
        // reads and writes no memory of ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = RawFd::try_from(fd).map_err(|_| io::Error::from(Errno::EBADF))?;
        // SAFETY: `fd` was just returned by pidfd_open, so it is open and owned by nobody else.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// `pidfd_send_signal(fd, signal, NULL, 0)`: signals the process this descriptor names,
    /// even if it has ended (then nothing happens, or `ESRCH` once it is reaped).
    pub fn send_signal(&self, signal: Signal) -> io::Result<()> {
        // SAFETY: pidfd_send_signal takes a descriptor we own (open for the call), a signal
        // number, a null `siginfo` (allowed: the kernel fills one in) and no flags; it reads
        // and writes no memory of ours.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Waits until the process has ended or `timeout` passed (`None`: no limit), with
    /// `poll`; returns whether it has ended. A signal that interrupts the wait returns
    /// `Ok(false)` early: the caller checks and waits again.
    pub fn wait_timeout(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let ms = timeout.map(|r| r.as_nanos().div_ceil(1_000_000));
        let ms = ms.map_or(-1, |ms| i32::try_from(ms).unwrap_or(i32::MAX));
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid, initialised pollfd that outlives the call, and its
        // descriptor stays open for the call's duration (`self` is borrowed).
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let errno = Errno::last();
            if errno != Errno::EINTR {
                return Err(io::Error::from(errno));
            }
            return Ok(false);
        }
        Ok(rc > 0)
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl From<PidFd> for OwnedFd {
    fn from(fd: PidFd) -> OwnedFd {
        fd.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pidfd_sees_its_child_end_and_signals_it() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let fd = PidFd::open(Pid::from_raw(child.id() as i32)).unwrap();
        assert!(!fd.wait_timeout(Some(Duration::from_millis(10))).unwrap());
        fd.send_signal(Signal::SIGKILL).unwrap();
        assert!(fd.wait_timeout(None).unwrap());
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }

    #[test]
    fn no_such_process_is_an_error() {
        // Pids are below 2^22 on Linux.
        assert!(PidFd::open(Pid::from_raw(i32::MAX - 1)).is_err());
    }
}
