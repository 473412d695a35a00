//! [`Process`]: Python's `multiprocessing.Process` with the fork start method.
//!
//! See [`Process`] for the behaviour, which follows Python's.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use multiproc_core::{Error, ExitCause, Result};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::fork::{fork_child, state, ChildEntry, ForkState};

/// Numbers the default names `Process-1`, `Process-2`, ... as Python does.
static STARTED: AtomicUsize = AtomicUsize::new(0);
static REGISTER_EXIT_HANDLER: Once = Once::new();

/// A process that has not started yet: its target, name and daemon flag (Python's
/// `multiprocessing.Process(target=..., args=..., name=..., daemon=...)`).
///
/// A process is configured ([`Process::new`], [`Process::with_args`],
/// [`name`](Process::name), [`daemon`](Process::daemon)), started
/// ([`start`](Process::start)) and then observed through its [`ProcessHandle`]: `pid`,
/// `is_alive`, `join`, `join_timeout`, `exitcode`, `terminate`, `kill`.
///
/// ```
/// use multiproc_fork::Process;
///
/// let numbers: Vec<u64> = (1..=100).collect(); // made before the fork: the child inherits it
/// let p = Process::new(move || {
///     assert_eq!(numbers.iter().sum::<u64>(), 5050);
/// })
/// .name("summer")
/// .start()?;
/// p.join()?;
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), multiproc_fork::Error>(())
/// ```
///
/// **The target runs in a forked copy of this process.** It may capture or even borrow
/// anything (the child has its own copy of all memory as it was at the fork); what it changes
/// stays in the child. It ends the child: returning is exit code 0, a panic is exit code 1
/// (the panic message is printed by the child), `std::process::exit(n)` is `n`, death by a
/// signal is `-signal`, as in Python.
///
/// **`join` does not report failure — [`exitcode`](ProcessHandle::exitcode) does.** This is
/// Python's contract (`join()` returns `None`, you inspect `exitcode`), kept because a child
/// that exits non-zero on purpose is not an error of `join`. [`ProcessHandle::exit_cause`]
/// gives the same information as an [`ExitCause`] and [`ProcessHandle::check`] turns a
/// non-zero end into [`Error::WorkerDied`] for `?`.
///
/// **Daemon semantics, as in Python.** When this process exits normally (`main` returns, or
/// `std::process::exit`), an exit handler kills (SIGKILL) the children started as
/// [`daemon`](Process::daemon) and waits for the others. Whatever way the parent dies, every
/// child gets SIGKILL with it (`PR_SET_PDEATHSIG`), so no child outlives its parent.
///
/// **No zombies.** Joining (or any call that sees the child has ended) reaps it. A handle
/// dropped while its child still runs hands the child over to this crate, which reaps it on
/// a later `start` or drop of another handle, and at exit as above; so at most the children
/// that end between two such calls wait as zombies.
///
/// **Forking from a multithreaded program.** Children are forked by one dedicated thread of
/// this process, after it has locked and flushed stdout and stderr: nothing buffered is
/// printed twice, and a child never inherits those locks held by another thread. So a
/// process may be started while other threads run, print or hold locks. The remaining
/// hazard is a lock *the target* takes that another thread held at the moment of the fork:
/// the child then hangs (you can still [`kill`](ProcessHandle::kill) it). One rule: do not
/// call [`start`](Self::start) while the *calling* thread holds `stdout().lock()` or
/// `stderr().lock()` — the forking thread would wait for it forever.
///
/// The lifetime lets the target borrow from the caller: the child gets its own copy of
/// everything at the fork, and [`start`](Self::start) returns only after the fork.
#[must_use = "a Process does nothing until `start` is called"]
pub struct Process<'a> {
    target: Box<dyn FnOnce() + Send + 'a>,
    name: Option<String>,
    daemon: bool,
}

impl fmt::Debug for Process<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .finish_non_exhaustive()
    }
}

impl<'a> Process<'a> {
    /// A process that will run `target` (Python's `Process(target=f)`).
    pub fn new(target: impl FnOnce() + Send + 'a) -> Self {
        Process {
            target: Box::new(target),
            name: None,
            daemon: false,
        }
    }

    /// A process that will run `target(args)` (Python's `Process(target=f, args=(...))`).
    pub fn with_args<A: Send + 'a>(target: impl FnOnce(A) + Send + 'a, args: A) -> Self {
        Self::new(move || target(args))
    }

    /// Sets the process's name (default `Process-N`, numbered in start order).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Marks the process as a daemon: it is killed when this process exits, instead of being
    /// waited for.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// Forks the child and starts the target in it. Fails with [`Error::Io`] if `fork` fails.
    pub fn start(self) -> Result<ProcessHandle> {
        REGISTER_EXIT_HANDLER.call_once(|| {
            // SAFETY: `atexit` only records the function pointer. The handler is an
            // `extern "C" fn` without arguments that touches only statics living for the
            // whole program, and it cannot unwind (nothing in it panics).
            let rc = unsafe { libc::atexit(at_exit) };
            debug_assert_eq!(rc, 0, "atexit registration failed");
        });
        let number = STARTED.fetch_add(1, Ordering::Relaxed) + 1;
        let name = self.name.unwrap_or_else(|| format!("Process-{number}"));
        let target = self.target;
        let pid = fork_child(move || {
            target();
            0
        })?;
        let mut st = state();
        st.children.push(ChildEntry {
            pid,
            daemon: self.daemon,
            orphaned: false,
        });
        sweep_orphans(&mut st);
        drop(st);
        Ok(ProcessHandle {
            pid,
            name,
            daemon: self.daemon,
            status: OnceLock::new(),
        })
    }
}

/// A started [`Process`].
///
/// The handle is `Send + Sync`: one thread may `join` while another calls `terminate`.
/// Dropping it does not stop the child (see [`Process`]).
pub struct ProcessHandle {
    pid: Pid,
    name: String,
    daemon: bool,
    /// Set once, under the state lock, when the child has been reaped.
    status: OnceLock<ExitCause>,
}

impl fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("pid", &self.pid.as_raw())
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("exitcode", &self.status.get().map(|c| c.exitcode()))
            .finish()
    }
}

/// Translates a `waitpid`/`waitid` status; `None` while the child runs (or only stopped).
fn ended(status: WaitStatus) -> Option<ExitCause> {
    match status {
        WaitStatus::Exited(_, code) => Some(ExitCause::Code(code)),
        WaitStatus::Signaled(_, signal, _) => Some(ExitCause::Signal(signal as i32)),
        _ => None,
    }
}

/// Reaps `pid` if it has ended, without blocking. Must be called with the state locked, so
/// that no signal is ever sent to a pid after it was reaped (and possibly reused).
fn try_reap(st: &mut ForkState, pid: Pid) -> Result<Option<ExitCause>> {
    let cause = loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => break ended(status),
            Err(Errno::EINTR) => continue,
            Err(errno) => {
                // ECHILD: someone else reaped it (`SIGCHLD` set to `SIG_IGN`, or a
                // `waitpid(-1)` elsewhere). Forget it either way.
                st.children.retain(|c| c.pid != pid);
                return Err(Error::Io(io::Error::from(errno)));
            }
        }
    };
    if cause.is_some() {
        st.children.retain(|c| c.pid != pid);
    }
    Ok(cause)
}

/// Reaps the children whose handle was dropped, if they have ended.
fn sweep_orphans(st: &mut ForkState) {
    let orphans: Vec<Pid> = st
        .children
        .iter()
        .filter(|c| c.orphaned)
        .map(|c| c.pid)
        .collect();
    for pid in orphans {
        let _ = try_reap(st, pid);
    }
}

/// `pidfd_open(pid)`: a descriptor that becomes readable when the process ends.
fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: the raw syscall takes two integers and returns a new descriptor or -1; it reads
    // and writes no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` was just returned by pidfd_open, so it is open and owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl ProcessHandle {
    /// The child's process id (Python's `pid`).
    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// The name given with [`Process::name`], or `Process-N`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it was started as a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Checks (without blocking) whether the child has ended; reaps it if so.
    fn poll(&self) -> Result<Option<ExitCause>> {
        if let Some(cause) = self.status.get() {
            return Ok(Some(*cause));
        }
        let mut st = state();
        if let Some(cause) = self.status.get() {
            return Ok(Some(*cause));
        }
        let cause = try_reap(&mut st, self.pid)?;
        if let Some(cause) = cause {
            let _ = self.status.set(cause);
        }
        Ok(cause)
    }

    /// Whether the child is still running (Python's `is_alive()`).
    pub fn is_alive(&self) -> bool {
        matches!(self.poll(), Ok(None))
    }

    /// How the child ended, or `None` while it runs (Python's `exitcode`): the exit code, or
    /// the negated number of the signal that killed it (`-9` for SIGKILL).
    pub fn exitcode(&self) -> Option<i32> {
        self.exit_cause().map(ExitCause::exitcode)
    }

    /// How the child ended, or `None` while it runs.
    pub fn exit_cause(&self) -> Option<ExitCause> {
        self.poll().ok().flatten()
    }

    /// `Ok` if the child ended with exit code 0; [`Error::WorkerDied`] naming the code or
    /// signal otherwise; [`Error::Timeout`] (zero) while it still runs.
    pub fn check(&self) -> Result<()> {
        match self.poll()? {
            Some(ExitCause::Code(0)) => Ok(()),
            Some(cause) => Err(Error::WorkerDied {
                pid: self.pid(),
                cause,
            }),
            None => Err(Error::Timeout(Duration::ZERO)),
        }
    }

    /// Waits until the child has ended and reaps it (Python's `join()`). Returns `Ok` however
    /// the child ended; see [`exitcode`](Self::exitcode). Joining again returns at once.
    ///
    /// Fails with [`Error::Io`] (`ECHILD`) only if something else reaped the child, e.g.
    /// `SIGCHLD` set to `SIG_IGN` or a `waitpid(-1)` elsewhere in the program.
    pub fn join(&self) -> Result<()> {
        self.wait(None)
    }

    /// Like [`join`](Self::join), but gives up with [`Error::Timeout`] after `timeout`,
    /// leaving the child running and joinable (Python's `join(timeout)`, which returns with
    /// `exitcode` still `None`).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait(Some(timeout))
    }

    fn wait(&self, timeout: Option<Duration>) -> Result<()> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        // Opened while the child is known not to be reaped, so the descriptor names it and
        // not a later process that reused its pid.
        let pidfd = {
            let st = state();
            if self.status.get().is_some() {
                return Ok(());
            }
            let fd = pidfd_open(self.pid);
            drop(st);
            fd
        };
        let mut backoff = Duration::from_micros(50);
        loop {
            if self.poll()?.is_some() {
                return Ok(());
            }
            let remaining = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Error::Timeout(timeout.unwrap_or_default()));
                    }
                    Some(deadline - now)
                }
                None => None, // no timeout, or one too large to represent: wait forever
            };
            match &pidfd {
                Some(fd) => {
                    let ms = remaining.map(|r| r.as_nanos().div_ceil(1_000_000));
                    let ms = ms.map_or(-1, |ms| i32::try_from(ms).unwrap_or(i32::MAX));
                    let mut pfd = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: `pfd` is one valid, initialised pollfd that outlives the call,
                    // and `fd` stays open for its duration.
                    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
                    if rc < 0 {
                        let errno = Errno::last();
                        if errno != Errno::EINTR {
                            return Err(Error::Io(io::Error::from(errno)));
                        }
                    }
                }
                // No pidfd (a kernel before 5.3, or out of descriptors): poll with backoff.
                None => {
                    let nap = remaining.map_or(backoff, |r| r.min(backoff));
                    std::thread::sleep(nap);
                    backoff = (backoff * 2).min(Duration::from_millis(5));
                }
            }
        }
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        let st = state();
        // Under the state lock the child cannot be reaped concurrently, so `pid` is still
        // ours (alive or a zombie) when it is not marked as ended.
        if self.status.get().is_some() {
            return Ok(());
        }
        let result = kill(self.pid, signal);
        drop(st);
        match result {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(errno) => Err(Error::Io(io::Error::from(errno))),
        }
    }

    /// Sends SIGTERM (Python's `terminate()`); `exitcode` becomes `-15` unless the child
    /// handles the signal. Does nothing if the child has already ended and been reaped.
    pub fn terminate(&self) -> Result<()> {
        self.signal(Signal::SIGTERM)
    }

    /// Sends SIGKILL (Python's `kill()`); `exitcode` becomes `-9`. Does nothing if the child
    /// has already ended and been reaped.
    pub fn kill(&self) -> Result<()> {
        self.signal(Signal::SIGKILL)
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        if self.status.get().is_some() {
            return;
        }
        let mut st = state();
        if let Ok(None) = try_reap(&mut st, self.pid) {
            if let Some(entry) = st.children.iter_mut().find(|c| c.pid == self.pid) {
                entry.orphaned = true;
            }
        }
        sweep_orphans(&mut st);
    }
}

/// Python's exit behaviour: kill daemon children, wait for the others. Runs in this process
/// only for children it started (a forked child starts with an empty list).
extern "C" fn at_exit() {
    let st = state();
    let daemons: Vec<Pid> = st
        .children
        .iter()
        .filter(|c| c.daemon)
        .map(|c| c.pid)
        .collect();
    for pid in &daemons {
        // Not reaped yet (the list is updated under this lock when reaping), so still ours.
        let _ = kill(*pid, Signal::SIGKILL);
    }
    let waits: Vec<Pid> = st.children.iter().map(|c| c.pid).collect();
    drop(st);
    for pid in waits {
        // Wait without reaping, then reap under the lock, like everything else.
        while let Err(Errno::EINTR) =
            waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
        {}
        let mut st = state();
        let _ = try_reap(&mut st, pid);
    }
}
