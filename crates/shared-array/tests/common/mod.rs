//! Test helpers: forking a child that runs one closure, and the `ForkHarness` that runs core's
//! conformance suite with forked processes.
//!
//! `cargo test` runs tests as threads of one process, so every fork here is a fork from a
//! multithreaded process. The child therefore only runs its closure (inside `catch_unwind`) and
//! leaves with `_exit`: no destructors, no atexit handlers, no flushing of stdio locks that
//! another thread may have held at the moment of the fork. A panic message travels back to the
//! parent through a pipe, written with one `write(2)`.

#![allow(dead_code)] // each test binary uses a different part

use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use multiproc_core::testing::{Harness, Worker};
use multiproc_shared_array::ShmBuffer;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// How long `join` waits for a child before killing it and failing.
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A forked child running one closure.
#[derive(Debug)]
pub(crate) struct Child {
    pub pid: Pid,
    panic_pipe: OwnedFd,
}

/// Forks a child that runs `f` and exits: 0 if `f` returned, 1 if it panicked.
///
/// # Safety
///
/// The child is a copy of this process in which only the calling thread exists. `f` must not
/// need another thread's progress (a lock another thread held at fork time stays locked in
/// the child), and while the child runs, neither process may hold a reference into shared
/// memory that the other writes (the contracts of the `unsafe` accessors of
/// `multiproc_shared_array::RawArray`; its safe API needs nothing).
pub(crate) unsafe fn fork_child<F: FnOnce()>(f: F) -> Child {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    // SAFETY: the caller upholds the contract above; the child below only runs `f` and
    // `_exit`s, never returning into the code that called us.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(read);
            let code = match catch_unwind(AssertUnwindSafe(f)) {
                Ok(()) => 0,
                Err(payload) => {
                    let msg = multiproc_core::Error::from_panic(payload).to_string();
                    let _ = nix::unistd::write(&write, msg.as_bytes());
                    1
                }
            };
            // `_exit` ends the process at once without running anything else, which is what a
            // child of a multithreaded fork must do.
            multiproc_sys::exit::exit_now(code)
        }
        ForkResult::Parent { child } => {
            drop(write);
            Child {
                pid: child,
                panic_pipe: read,
            }
        }
    }
}

impl Child {
    /// Waits (at most [`JOIN_TIMEOUT`], then SIGKILL) and reports how the child ended.
    pub(crate) fn wait(self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {
                    if start.elapsed() > JOIN_TIMEOUT {
                        let _ = kill(self.pid, Signal::SIGKILL);
                        let _ = waitpid(self.pid, None);
                        return Err(format!("child {} timed out and was killed", self.pid));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
                Ok(WaitStatus::Exited(_, code)) => {
                    let mut msg = vec![0u8; 4096];
                    let n = nix::unistd::read(
                        std::os::fd::AsRawFd::as_raw_fd(&self.panic_pipe),
                        &mut msg,
                    )
                    .unwrap_or(0);
                    return Err(format!(
                        "child {} exited with {code}: {}",
                        self.pid,
                        String::from_utf8_lossy(&msg[..n])
                    ));
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    return Err(format!("child {} killed by {sig:?}", self.pid))
                }
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("waitpid: {e}")),
            }
        }
    }
}

/// Runs the sync conformance suite with forked processes as workers and [`ShmBuffer`]s as the
/// shared memory.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ForkHarness;

impl Harness for ForkHarness {
    type Buffer = ShmBuffer;
    type Worker = Child;

    fn buffer(&self, len: usize) -> ShmBuffer {
        ShmBuffer::new(len).expect("a small shared buffer")
    }

    fn spawn<F: FnOnce() + Send + 'static>(&self, f: F) -> Child {
        // SAFETY: the conformance checks' closures use only process-shared primitives and
        // atomics in shared buffers (no references into memory the parent writes), and need
        // no other thread of this process.
        unsafe { fork_child(f) }
    }
}

impl Worker for Child {
    fn join(self) -> Result<(), String> {
        self.wait()
    }
}

/// A minimal multiproc transport for the tests: a serde value encoded with postcard inside
/// `collect_fds`, its bytes and descriptors sent as one `SCM_RIGHTS` message on a
/// `SOCK_SEQPACKET` socket (which keeps message boundaries).
pub(crate) mod transport {
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

    use multiproc_core::handoff::{collect_fds, provide_fds};
    use nix::sys::socket::{
        recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
        SockFlag, SockType,
    };

    /// Two connected ends.
    pub(crate) fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair")
    }

    /// Encodes `value` and sends it with its descriptors.
    pub(crate) fn send<T: serde::Serialize>(socket: impl AsFd, value: &T) {
        let (bytes, fds) = collect_fds(|| postcard::to_stdvec(value));
        let bytes = bytes.expect("encodable inside collect_fds");
        send_raw(socket, &bytes, &fds);
    }

    /// Sends `bytes` and `fds` as one message.
    pub(crate) fn send_raw(socket: impl AsFd, bytes: &[u8], fds: &[OwnedFd]) {
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let cmsg: Vec<ControlMessage<'_>> = if raw.is_empty() {
            Vec::new()
        } else {
            vec![ControlMessage::ScmRights(&raw)]
        };
        let sent = sendmsg::<()>(
            socket.as_fd().as_raw_fd(),
            &[IoSlice::new(bytes)],
            &cmsg,
            MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
        assert_eq!(sent, bytes.len());
    }

    /// Receives one message and decodes it inside `provide_fds`.
    pub(crate) fn recv<T: serde::de::DeserializeOwned>(socket: impl AsFd) -> postcard::Result<T> {
        let mut buf = vec![0u8; 1 << 16];
        let mut space = nix::cmsg_space!([RawFd; 64]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            socket.as_fd().as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg");
        let n = msg.bytes;
        let mut fds = Vec::new();
        for c in msg.cmsgs().expect("control messages") {
            if let ControlMessageOwned::ScmRights(received) = c {
                for fd in received {
                    // SAFETY: SCM_RIGHTS just installed this descriptor; nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        provide_fds(fds, || postcard::from_bytes(&buf[..n]))
    }
}

/// Freezes `array`, retrying while another process still maps it writably. In this
/// multithreaded test process, every test's forked children (pool workers, lock holders)
/// inherit every other test's arrays for as long as they live, so a first attempt can meet
/// one of them; they all end within [`JOIN_TIMEOUT`].
pub(crate) fn freeze_eventually<T: bytemuck::Pod>(
    mut array: multiproc_shared_array::RawArray<T>,
) -> multiproc_shared_array::FrozenArray<T> {
    let start = Instant::now();
    loop {
        match array.freeze() {
            Ok(frozen) => return frozen,
            Err(e) => {
                assert!(
                    start.elapsed() < JOIN_TIMEOUT,
                    "still not freezable after {JOIN_TIMEOUT:?}: {e}"
                );
                array = e.into_array().expect("the array comes back");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}
