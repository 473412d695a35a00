//! The child's side: what [`init`] does in a process that was started as a worker.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use multiproc_core::{Error, Result};
use multiproc_process::trampoline;
use multiproc_process::wire::{FrameReader, Kind};
use multiproc_sys::socket::recv_with_fds;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::signal::Signal;
use nix::sys::socket::{getsockopt, recv, sockopt::PeerCredentials, MsgFlags};
use nix::sys::stat::Mode;
use nix::unistd::{dup2, getpid, getppid};

use crate::launch::{Claim, Role, ENV, HELLO_LEN};

/// Set once [`init`] has run in this process and returned (it is not a worker).
static INIT_RETURNED: AtomicBool = AtomicBool::new(false);

/// Turns this process into a worker if it was started as one; returns at once otherwise.
///
/// Call it first thing in `main` (before parsing arguments, starting threads or printing):
/// in a process started by this crate it runs the worker and **never returns**, so
/// everything before it runs once more in every worker. In a test binary, use
/// [`test_worker!`](crate::test_worker) instead.
///
/// A process is a worker only if its parent started it as one: the environment variable
/// [`ENV`](crate::launch::ENV) names the parent and a per-launch secret, and the parent's
/// socket, as stdin, already carries the same secret. A stray variable, with or without
/// junk on stdin, makes nobody a worker: `init` returns and the program runs normally.
///
/// ```
/// // The first line of `main`:
/// multiproc_spawn::init();
/// // ... the program, which may create `SpawnPool`s and `Process`es ...
/// ```
pub fn init() {
    let claim = Claim::from_env();
    let Some(claim) = claim.filter(stdin_carries_hello) else {
        INIT_RETURNED.store(true, Ordering::Relaxed);
        return;
    };
    // From here on we are the worker our parent started. The variable is not passed on to
    // processes this one starts; removed while the worker is single-threaded.
    std::env::remove_var(ENV);
    // Die with the parent; if it is already gone, we have been re-parented.
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || getppid() != claim.parent {
        exit(1);
    }
    let stream = take_stdin_socket();
    receive_hello(&stream);
    let code = match claim.role {
        Role::Worker => {
            // The handshake: the pool waits for this byte before sending work, so a program
            // that never reaches `init` is an error at pool creation, not a silent hang.
            if (&stream).write_all(b"R").is_err() {
                exit(2);
            }
            // SAFETY: the socket came from the pool that started us with `/proc/self/exe`
            // (its peer is our parent, and it carried the secret of our worker token): the
            // same executable, so the same image.
            unsafe { multiproc_process::serve(stream) }
        }
        Role::Process => run_target(stream),
    };
    exit(code)
}

/// Whether stdin is the socket that `claim`'s parent made, with the parent's hello queued on
/// it: checked without waiting (the parent queues the hello before it starts the child) and
/// without consuming anything, so a normal program's stdin is left as it was.
fn stdin_carries_hello(claim: &Claim) -> bool {
    let stdin = std::io::stdin();
    // Fails on anything but a socket; the peer of a socket pair is the process that made it.
    match getsockopt(&stdin.as_fd(), PeerCredentials) {
        Ok(cred) if cred.pid() == claim.parent.as_raw() => {}
        _ => return false,
    }
    let mut hello = [0u8; HELLO_LEN];
    match recv(
        stdin.as_fd().as_raw_fd(),
        &mut hello,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(HELLO_LEN) => claim.is_hello(&hello),
        _ => false,
    }
}

/// The bootstrapping check (Python's `_check_not_importing_main`), made before a pool or a
/// process is created: [`SpawnPool`](crate::SpawnPool) and [`Process`](crate::Process) make
/// it, and so does the `multiproc` facade's `Pool` and `Process` whatever their start
/// method. In a process whose [`ENV`] names its parent but that did not become a worker in
/// [`init`] — `init` was not called, so `main` is running again in a worker — it tells the
/// parent (one byte, `I`, on the parent's socket: the parent's pool creation then fails at
/// once with [`Error::InitNotCalled`] and kills this process) and returns that error,
/// instead of letting the worker start workers of its own (the runaway). Everywhere else it
/// returns `Ok`. `creating` names what was being created, for the message.
pub fn check_init(creating: &str) -> Result<()> {
    let Some(claim) = Claim::from_env() else {
        return Ok(());
    };
    if getppid() != claim.parent {
        // A stray variable that names some other process.
        return Ok(());
    }
    let tell_parent = !INIT_RETURNED.load(Ordering::Relaxed) && stdin_carries_hello(&claim);
    let error = if INIT_RETURNED.load(Ordering::Relaxed) {
        // `init` ran and found no hello from the parent that the variable names: not a worker,
        // but a process that looks like one to whoever set the variable. Starting children
        // from it could be the runaway, so refuse.
        Error::Io(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{ENV} names this process's parent, but init() found no spawn handshake from \
                 it: refusing {creating} in what may be a spawned worker (unset \
                 {ENV})"
            ),
        ))
    } else {
        Error::InitNotCalled(format!(
            "process {} was started as a spawned {} and called {creating} without having run \
             init()",
            getpid(),
            match claim.role {
                Role::Worker => "pool worker",
                Role::Process => "Process",
            }
        ))
    };
    // Printed first: the parent kills this process as soon as it reads the byte.
    eprintln!("multiproc-spawn: {error}");
    if tell_parent {
        let _ = nix::unistd::write(std::io::stdin(), b"I");
    }
    Err(error)
}

/// Consumes the parent's hello (see `launch::send_hello`) and makes the descriptor it
/// carries our stdout; without one, stdout stays `/dev/null`.
fn receive_hello(stream: &UnixStream) {
    let mut hello = [0u8; HELLO_LEN];
    let Ok(got) = recv_with_fds(stream.as_fd(), &mut hello, 1, MsgFlags::MSG_WAITALL) else {
        return;
    };
    if let Some(fd) = got.fds.first() {
        let _ = dup2(fd.as_raw_fd(), 1);
    }
}

/// The socket arrives as stdin: move it to a fresh descriptor and give fd 0 `/dev/null`.
fn take_stdin_socket() -> UnixStream {
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
