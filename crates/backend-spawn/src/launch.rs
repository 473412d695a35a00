//! Starting a fresh copy of this program as a worker, and recognising one: `spawn_child`
//! in the parent, [`init`](crate::init) in the child.
//!
//! ## How a worker is started
//!
//! The parent executes `/proc/self/exe` — the very file this process runs, even if it has
//! been replaced on disk since — with `argv[0]` unchanged, the environment variable
//! [`ENV`] set to `role:parent-pid`, and one end of a Unix socket pair as its **stdin**.
//! Passing the socket as stdin lets `std::process::Command` start the child with
//! `posix_spawn` (no fork of a large parent, no window in which another thread's child
//! could inherit the socket); the child moves the socket off fd 0 and puts `/dev/null`
//! there, which is what Python's workers get as stdin too.
//!
//! In a test binary, the arguments [`TEST_ARGS`] make libtest run only the hook test that
//! [`test_worker!`](crate::test_worker) defines, which calls `init`. A normal program ignores
//! them: its `main` calls `init` first, and `init` never returns in a worker.
//!
//! ## Dying with the parent
//!
//! Every child is started from one long-lived thread of the parent (`multiproc-spawn`),
//! because Linux delivers `PR_SET_PDEATHSIG` when the *thread* that started the child ends.
//! The child sets `PR_SET_PDEATHSIG(SIGKILL)` in `init` and then checks that its parent is
//! still the pid in [`ENV`]; if the parent died before that, it exits at once.

use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex, PoisonError};
use std::thread;

use multiproc_core::{Error, Result};
use nix::unistd::{getpid, Pid};

/// The environment variable that marks a process as a spawned worker: `role:parent-pid`.
pub const ENV: &str = "MULTIPROC_SPAWN";

/// What a spawned child does once [`init`](crate::init) recognises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A pool worker: the shared worker loop until shutdown.
    Worker,
    /// A `Process`: one target, then exit.
    Process,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Process => "process",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Role> {
        match s {
            "worker" => Some(Role::Worker),
            "process" => Some(Role::Process),
            _ => None,
        }
    }
}

/// The name of the test that [`test_worker!`](crate::test_worker) defines.
pub const TEST_HOOK: &str = "__multiproc_spawn_worker";

/// The arguments every child gets: in a libtest binary they select the hook test, quietly
/// and with output going straight to the inherited stdout.
pub const TEST_ARGS: [&str; 4] = [TEST_HOOK, "--nocapture", "--test-threads=1", "--quiet"];

type Job = Box<dyn FnOnce() + Send>;

/// The spawner thread's channel and the process it belongs to (a forked child has none).
static SPAWNER: Mutex<Option<(Pid, mpsc::Sender<Job>)>> = Mutex::new(None);

/// Runs `job` on the spawner thread and waits for it.
fn on_spawner<R: Send + 'static>(job: impl FnOnce() -> R + Send + 'static) -> Result<R> {
    let gone = || Error::Io(io::Error::other("the multiproc-spawn thread is gone"));
    let sender = {
        let mut slot = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
        let me = getpid();
        match slot.as_ref().filter(|(pid, _)| *pid == me) {
            Some((_, s)) => s.clone(),
            None => {
                let (tx, rx) = mpsc::channel::<Job>();
                thread::Builder::new()
                    .name("multiproc-spawn".into())
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            job();
                        }
                    })
                    .map_err(Error::Io)?;
                if let Some(stale) = slot.replace((me, tx.clone())) {
                    // Inherited through a fork: its thread does not exist here. Never touch it.
                    std::mem::forget(stale);
                }
                tx
            }
        }
    };
    let (reply, answer) = mpsc::sync_channel(1);
    sender
        .send(Box::new(move || {
            let _ = reply.send(job());
        }))
        .map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())
}

/// Starts this program again as a child with `role`, connected to the returned stream.
pub(crate) fn spawn_child(role: Role) -> Result<(Pid, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    let token = format!("{}:{}", role.as_str(), getpid());
    let argv0: OsString = std::env::args_os()
        .next()
        .unwrap_or_else(|| "multiproc".into());
    let pid = on_spawner(move || -> io::Result<Pid> {
        let child = Command::new("/proc/self/exe")
            .arg0(argv0)
            .args(TEST_ARGS)
            .env(ENV, token)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            // Until `init` puts ours back (see `send_stdout`): what a test harness prints
            // before it runs the hook test goes nowhere.
            .stdout(Stdio::null())
            .spawn()?;
        // `Child` neither waits nor kills on drop: the pid is ours to reap (waitpid).
        Ok(Pid::from_raw(child.id() as i32))
    })??;
    send_stdout(&ours);
    Ok((pid, ours))
}

/// The first message on a child's socket: one byte, with our stdout as an `SCM_RIGHTS`
/// descriptor if we have one. The child starts with stdout on `/dev/null`, so that libtest's
/// "running 1 test" header in a test binary is not printed once per worker; `init` makes
/// this descriptor its stdout before anything of the worker runs, so a task's prints reach
/// our stdout as in Python. A failure leaves the child's stdout on `/dev/null`; the child
/// notices a dead socket on its own.
fn send_stdout(sock: &UnixStream) {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    let stdout = [1];
    let with_fd = [ControlMessage::ScmRights(&stdout)];
    let have_stdout = nix::fcntl::fcntl(1, nix::fcntl::FcntlArg::F_GETFD).is_ok();
    let cmsgs: &[ControlMessage<'_>] = if have_stdout { &with_fd } else { &[] };
    let _ = sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(b"O")],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    );
}
