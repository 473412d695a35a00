//! Starting a fresh copy of this program as a worker, and recognising one: `spawn_child`
//! in the parent, [`init`](crate::init) in the child.
//!
//! ## How a worker is started
//!
//! The parent executes `/proc/self/exe` — the very file this process runs, even if it has
//! been replaced on disk since — with `argv[0]` unchanged, the environment variable
//! [`ENV`] set to `role:parent-pid:secret`, and one end of a Unix socket pair as its
//! **stdin**. Passing the socket as stdin lets `std::process::Command` start the child with
//! `posix_spawn` (no fork of a large parent, no window in which another thread's child
//! could inherit the socket); the child moves the socket off fd 0 and puts `/dev/null`
//! there, which is what Python's workers get as stdin too.
//!
//! ## The handshake: nothing but the parent makes a worker
//!
//! The secret is 128 random bits drawn for this one launch. Before the child exists, the
//! parent writes a hello into the socket: a magic, the same secret, and its stdout as an
//! `SCM_RIGHTS` descriptor. `init` is a worker only if all of these hold, checked without
//! waiting and without consuming anything: [`ENV`] parses, stdin is a Unix socket whose peer
//! (`SO_PEERCRED`) is the parent the token names, and the hello is already queued on it with
//! the token's secret. Otherwise `init` returns and `main` runs as a normal program: a stray
//! variable, or a variable with junk on stdin, makes nobody a worker, so nothing else that
//! starts this program can make it run a task (that is, jump to an offset it chose). A
//! process that can set a program's environment *and* be its parent could equally set
//! `LD_PRELOAD`; the handshake does not pretend to defend against that.
//!
//! In a test binary, the arguments [`TEST_ARGS`] make libtest run only the hook test that
//! [`test_worker!`](crate::test_worker) defines, which calls `init`. They are passed only
//! when `test_worker!`'s startup function has marked this executable as a test binary: a
//! normal program's workers get `argv[0]` and nothing else.
//!
//! ## A program that forgot `init`
//!
//! Everything `main` does before `init` runs again in every worker, so a program that never
//! calls it would have every worker create pools of its own. Pool and process creation check
//! first: a process whose [`ENV`] names its parent and that did not become a worker in
//! `init` refuses with [`Error::InitNotCalled`], after writing one byte (`I`) into the
//! parent's socket so that the parent's pool creation fails at once with the same error.
//!
//! ## Dying with the parent
//!
//! Every child is started from one long-lived thread of the parent (`multiproc-spawn`, a
//! [`ServiceThread`], the pattern the fork backend's forker thread shares), because Linux
//! delivers `PR_SET_PDEATHSIG` when the *thread* that started the child ends — or from the
//! main thread itself, which lives as long as the process
//! ([`ServiceThread::run_lasting`]): no hand-over between threads, and no launcher thread in
//! a program that only starts pools from `main`.
//! The child sets `PR_SET_PDEATHSIG(SIGKILL)` in `init` and then checks that its parent is
//! still the pid in [`ENV`]; if the parent died before that, it exits at once.

use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use multiproc_core::{Error, Result};
use multiproc_process::ServiceThread;
use nix::unistd::{getpid, Pid};

/// The environment variable that names a process as a spawned worker:
/// `role:parent-pid:secret` (the secret: 32 hex digits). It alone makes nobody a worker; see
/// the module documentation.
pub const ENV: &str = "MULTIPROC_SPAWN";

/// The first bytes of the parent's hello.
const MAGIC: &[u8; 8] = b"MPSPAWN1";
/// The length of the per-launch secret, in bytes.
const SECRET_LEN: usize = 16;
/// The hello's length: the magic, then the secret.
pub(crate) const HELLO_LEN: usize = MAGIC.len() + SECRET_LEN;

/// What [`ENV`] says about this process: who started it, as what, with which secret.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim {
    pub(crate) role: Role,
    pub(crate) parent: Pid,
    secret: [u8; SECRET_LEN],
}

impl Claim {
    /// The claim in this process's environment, if [`ENV`] is set and well formed.
    pub(crate) fn from_env() -> Option<Claim> {
        Claim::parse(&std::env::var(ENV).ok()?)
    }

    /// Parses `role:parent-pid:secret`; `None` for anything else.
    fn parse(value: &str) -> Option<Claim> {
        let mut parts = value.split(':');
        let role = Role::parse(parts.next()?)?;
        let parent = parts.next()?.parse::<i32>().ok().filter(|&p| p > 0)?;
        let hex = parts.next()?;
        if parts.next().is_some() || hex.len() != 2 * SECRET_LEN {
            return None;
        }
        let mut secret = [0u8; SECRET_LEN];
        for (i, byte) in secret.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Claim {
            role,
            parent: Pid::from_raw(parent),
            secret,
        })
    }

    fn encode(&self) -> String {
        let hex: String = self.secret.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:{}:{hex}", self.role.as_str(), self.parent)
    }

    /// The hello the parent writes into the socket before the child exists.
    fn hello(&self) -> [u8; HELLO_LEN] {
        let mut hello = [0u8; HELLO_LEN];
        hello[..MAGIC.len()].copy_from_slice(MAGIC);
        hello[MAGIC.len()..].copy_from_slice(&self.secret);
        hello
    }

    /// Whether `bytes` is this claim's hello (compared in full, whatever differs first).
    pub(crate) fn is_hello(&self, bytes: &[u8]) -> bool {
        bytes.len() == HELLO_LEN
            && bytes
                .iter()
                .zip(self.hello())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// 128 fresh random bits from the kernel (`getrandom`).
fn fresh_secret() -> io::Result<[u8; SECRET_LEN]> {
    let mut secret = [0u8; SECRET_LEN];
    multiproc_sys::random::fill(&mut secret)?;
    Ok(secret)
}

/// Set (before `main`) in an executable that contains [`test_worker!`](crate::test_worker).
static TEST_BINARY: AtomicBool = AtomicBool::new(false);

/// Marks this executable as a libtest binary whose spawned copies must be given [`TEST_ARGS`].
/// Called by the startup function that [`test_worker!`](crate::test_worker) registers; not for
/// direct use.
#[doc(hidden)]
pub fn mark_test_binary() {
    TEST_BINARY.store(true, Ordering::Relaxed);
}

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

/// The arguments a child gets when this executable is a test binary (one that contains
/// [`test_worker!`](crate::test_worker)): they make libtest run only the hook test, quietly
/// and with output going straight to the inherited stdout. Other programs' children get none.
pub const TEST_ARGS: [&str; 4] = [TEST_HOOK, "--nocapture", "--test-threads=1", "--quiet"];

/// The launcher thread: every child of this process started from another thread than the main
/// one is started from it (see "Dying with the parent" above). A forked child starts its own.
static SPAWNER: ServiceThread = ServiceThread::new("multiproc-spawn");

/// Starts this program again as a child with `role`, connected to the returned stream.
/// Callers make the bootstrapping check first ([`check_init`](crate::check_init)): a worker
/// that forgot `init` must not start children of its own.
pub(crate) fn spawn_child(role: Role) -> Result<(Pid, UnixStream)> {
    let claim = Claim {
        role,
        parent: getpid(),
        secret: fresh_secret()?,
    };
    let token = claim.encode();
    let test_args: &[&str] = if TEST_BINARY.load(Ordering::Relaxed) {
        &TEST_ARGS
    } else {
        &[]
    };
    let argv0: OsString = std::env::args_os()
        .next()
        .unwrap_or_else(|| "multiproc".into());
    SPAWNER.run_lasting(move || -> Result<(Pid, UnixStream)> {
        // Under the lock that every fork of multiproc's takes, and the child's end closed here
        // before it is released: a fork made meanwhile on another thread (a fork pool's
        // worker, a `Process`) cannot inherit that end, which would keep the connection open
        // after this child died.
        let _forks = multiproc_process::registry();
        let (ours, theirs) = UnixStream::pair()?;
        // Queued before the child exists, so that `init` checks it without waiting.
        send_hello(&ours, &claim)?;
        let child = Command::new("/proc/self/exe")
            .arg0(argv0)
            .args(test_args)
            .env(ENV, token)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            // Until `init` puts ours back (see `send_hello`): what a test harness prints
            // before it runs the hook test goes nowhere.
            .stdout(Stdio::null())
            .spawn()?;
        // (The `Command`, and with it the child's end, went at the end of that statement.)
        // `Child` neither waits nor kills on drop: the pid is ours to reap (waitpid).
        Ok((Pid::from_raw(child.id() as i32), ours))
    })?
}

/// The first message on a child's socket: the [`Claim::hello`], with our stdout as an
/// `SCM_RIGHTS` descriptor if we have one. The child starts with stdout on `/dev/null`, so
/// that libtest's "running 1 test" header in a test binary is not printed once per worker;
/// `init` makes this descriptor its stdout before anything of the worker runs, so a task's
/// prints reach our stdout as in Python.
fn send_hello(sock: &UnixStream, claim: &Claim) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    let stdout = [1];
    let with_fd = [ControlMessage::ScmRights(&stdout)];
    let have_stdout = nix::fcntl::fcntl(1, nix::fcntl::FcntlArg::F_GETFD).is_ok();
    let cmsgs: &[ControlMessage<'_>] = if have_stdout { &with_fd } else { &[] };
    let hello = claim.hello();
    let sent = sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&hello)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(io::Error::from)?;
    if sent != HELLO_LEN {
        return Err(Error::Io(io::Error::other("the spawn hello was cut short")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_its_hello_matches_only_itself() {
        let claim = Claim {
            role: Role::Worker,
            parent: Pid::from_raw(4321),
            secret: fresh_secret().unwrap(),
        };
        let parsed = Claim::parse(&claim.encode()).unwrap();
        assert_eq!(parsed.role, Role::Worker);
        assert_eq!(parsed.parent, Pid::from_raw(4321));
        assert!(parsed.is_hello(&claim.hello()));
        let mut other = claim.hello();
        other[HELLO_LEN - 1] ^= 1;
        assert!(!parsed.is_hello(&other));
        assert!(!parsed.is_hello(&claim.hello()[..HELLO_LEN - 1]));
        assert_ne!(
            fresh_secret().unwrap(),
            claim.secret,
            "a fresh secret per launch"
        );
    }

    #[test]
    fn anything_but_a_full_token_is_no_claim() {
        for bad in [
            "",
            "worker",
            "worker:42",
            "process:42",
            "worker:0:00112233445566778899aabbccddeeff",
            "worker:-1:00112233445566778899aabbccddeeff",
            "worker:42:0011",
            "worker:42:00112233445566778899aabbccddeefg",
            "worker:42:00112233445566778899aabbccddeeff:x",
            "boss:42:00112233445566778899aabbccddeeff",
        ] {
            assert!(Claim::parse(bad).is_none(), "{bad:?}");
        }
        assert!(Claim::parse("process:42:00112233445566778899aabbccddeeff").is_some());
    }
}
