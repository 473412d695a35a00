//! The child's side: what [`init`] does in a process that was started as a worker.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};

use multiproc_process::trampoline;
use multiproc_process::wire::{FrameReader, Kind};
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::signal::Signal;
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::{dup2, getppid, Pid};

use crate::launch::{Role, ENV};

/// Turns this process into a worker if it was started as one; returns at once otherwise.
///
/// Call it first thing in `main` (before parsing arguments, starting threads or printing):
/// in a process started by this crate it runs the worker and **never returns**, so
/// everything before it runs once more in every worker. In a test binary, use
/// [`test_worker!`](crate::test_worker) instead.
///
/// ```
/// // The first line of `main`:
/// multiproc_spawn::init();
/// // ... the program, which may create `SpawnPool`s and `Process`es ...
/// ```
pub fn init() {
    let Some(token) = std::env::var_os(ENV) else {
        return;
    };
    // Not passed on to processes this one starts; done while the worker is single-threaded.
    std::env::remove_var(ENV);
    let token = token.to_string_lossy().into_owned();
    let parsed = token
        .split_once(':')
        .and_then(|(role, pid)| Some((Role::parse(role)?, pid.parse::<i32>().ok()?)));
    let Some((role, parent)) = parsed else {
        fail(&format!("{ENV}={token:?} is not a worker token"));
    };
    // Die with the parent; if it is already gone, we have been re-parented.
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err()
        || getppid() != Pid::from_raw(parent)
    {
        exit(1);
    }
    let stream = take_stdin_socket();
    restore_stdout(&stream);
    let code = match role {
        Role::Worker => {
            // The handshake: the pool waits for this byte before sending work, so a program
            // that never reaches `init` is an error at pool creation, not a silent hang.
            if (&stream).write_all(b"R").is_err() {
                exit(2);
            }
            // SAFETY: the socket came from the pool that started us with `/proc/self/exe`
            // (the worker token says so): the same executable, so the same image.
            unsafe { multiproc_process::serve(stream) }
        }
        Role::Process => run_target(stream),
    };
    exit(code)
}

/// Reads the parent's first message (see `launch::send_stdout`) and makes the descriptor it
/// carries our stdout; without one, stdout stays `/dev/null`.
fn restore_stdout(stream: &UnixStream) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::IoSliceMut;
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let Ok(msg) = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    ) else {
        return;
    };
    let Ok(cmsgs) = msg.cmsgs() else { return };
    for c in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel just installed `fd` for this message; nobody else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                let _ = dup2(fd.as_raw_fd(), 1);
            }
        }
    }
}

/// The socket arrives as stdin: move it to a fresh descriptor and give fd 0 `/dev/null`.
fn take_stdin_socket() -> UnixStream {
    match fstat(0) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK => {}
        _ => fail("started as a worker, but stdin is not the parent's socket"),
    }
    let Ok(fd) = fcntl(0, FcntlArg::F_DUPFD_CLOEXEC(3)) else {
        fail("could not duplicate the parent's socket");
    };
    // SAFETY: `fd` was just returned by fcntl(F_DUPFD_CLOEXEC): open, and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Ok(null) = open(
        "/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        // SAFETY: `null` was just opened here and is owned by nobody else.
        let null = unsafe { OwnedFd::from_raw_fd(null) };
        let _ = dup2(null.as_raw_fd(), 0);
    }
    UnixStream::from(fd)
}

/// A `Process`'s life: read the one task frame, run it, exit 0 (or 1 if it panicked, after
/// the panic hook printed the message, as Python prints the traceback).
fn run_target(stream: UnixStream) -> i32 {
    let mut reader = FrameReader::new(stream);
    let mut payload = Vec::new();
    let (header, fds) = match reader.recv(&mut payload) {
        Ok(Some(frame)) if frame.0.kind == Kind::Task => frame,
        _ => return 2,
    };
    // SAFETY: the offset was produced by `offset_of` in our parent, which runs the same
    // executable (`/proc/self/exe` at the moment it started us), and came over the socket only
    // it holds.
    let run = unsafe { trampoline::resolve(header.call) };
    match panic::catch_unwind(AssertUnwindSafe(|| run.run(&payload, fds))) {
        Ok(Ok(_)) => 0,
        Ok(Err(message)) => {
            eprintln!("multiproc-spawn: {message}");
            1
        }
        Err(_) => 1,
    }
}

fn fail(message: &str) -> ! {
    eprintln!("multiproc-spawn: {message}");
    exit(2)
}

/// Flushes stdout and exits without returning to the code that called `init`.
fn exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}
