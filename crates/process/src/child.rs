//! [`ProcessHandle`]: a started child process, whichever backend started it — Python's
//! `Process` after `start()`: `pid`, `is_alive`, `join`, `join_timeout`, `exitcode`,
//! `terminate`, `kill`, and daemon semantics at exit.
//!
//! The fork and spawn backends start children differently and hand them to
//! [`ProcessHandle::register`]; waiting, reaping, signalling, the registry of children that
//! the exit handler kills (daemons) or waits for, and the reaping of children whose handle was
//! dropped live here, once.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use multiproc_core::exit::{at_exit, ExitStage};
use multiproc_core::{Error, ExitCause, Home, Result};
use multiproc_sys::pidfd::PidFd;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Numbers the default names `Process-1`, `Process-2`, ... as Python does.
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// The next default process name, `Process-N`, numbered in start order across backends.
pub fn next_process_name() -> String {
    format!("Process-{}", STARTED.fetch_add(1, Ordering::Relaxed) + 1)
}

/// A child started through [`ProcessHandle::register`], remembered for the exit handler and
/// for reaping children whose handle was dropped.
#[derive(Debug, Clone, Copy)]
struct ChildEntry {
    pid: Pid,
    /// Killed at exit (daemon) or waited for at exit (non-daemon).
    daemon: bool,
    /// Its handle was dropped while it ran: nobody else will reap it.
    orphaned: bool,
}

/// The children of this process that have not been reaped yet.
///
/// Its lock is also what makes signalling safe: a pid is only signalled under it while not
/// marked as reaped, and only reaped under it, so a signal never reaches a recycled pid. A
/// backend that forks holds it across the fork ([`registry`]), so a child never inherits it
/// locked by another thread.
///
/// The registry belongs to the process that filled it: a forked copy (whoever forked — the
/// fork backend, the user's own `fork`, a C library) finds entries recorded by another
/// process and drops them at its first access, so a child never signals, reaps or waits at
/// exit for its parent's children.
#[derive(Debug)]
pub struct Registry {
    /// The process whose children these are (0: none recorded yet).
    home: u32,
    children: Vec<ChildEntry>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    home: 0,
    children: Vec::new(),
});

/// Locks the registry of children. Never print, fork (except as described on [`Registry`]) or
/// block while holding it.
pub fn registry() -> MutexGuard<'static, Registry> {
    let mut st = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    let here = std::process::id();
    if st.home != here {
        // A copy inherited through a fork: these children are another process's.
        st.children.clear();
        st.home = here;
    }
    st
}

/// A started child process (Python's `Process` after `start()`).
///
/// The handle is `Send + Sync`: one thread may `join` while another calls `terminate`.
/// Dropping it does not stop the child: a dropped handle's child is reaped by a later
/// registration or drop of another handle once it ends, and waited for (or, as a daemon,
/// killed) when this process exits.
///
/// A handle belongs to the process that started its child. A forked child's copy of it (a
/// `static`, a value captured by a forked closure) refuses every call that waits for,
/// signals or reaps the child with [`Error::ForeignProcess`] — `is_alive` is `false` and
/// `exitcode` `None` there — and its `Drop` does nothing: only the parent may reap or signal
/// its child.
pub struct ProcessHandle {
    pid: Pid,
    /// The process that started the child (its parent).
    home: Home,
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
pub(crate) fn ended(status: WaitStatus) -> Option<ExitCause> {
    match status {
        WaitStatus::Exited(_, code) => Some(ExitCause::Code(code)),
        WaitStatus::Signaled(_, signal, _) => Some(ExitCause::Signal(signal as i32)),
        _ => None,
    }
}

/// Reaps `pid` if it has ended, without blocking. Must be called with the state locked, so
/// that no signal is ever sent to a pid after it was reaped (and possibly reused).
fn try_reap(st: &mut Registry, pid: Pid) -> Result<Option<ExitCause>> {
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
fn sweep_orphans(st: &mut Registry) {
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

/// Waits for a child process to end, without reaping it: on its pidfd where the kernel has
/// them (woken the moment the child ends), otherwise by sleeping with a backoff.
pub(crate) struct ExitWatch {
    pidfd: Option<PidFd>,
    backoff: Duration,
}

impl ExitWatch {
    /// Watches the child that `pidfd` names (opened while it was our unreaped child, so that
    /// it names that child and not a later process that reused its number); with `None`,
    /// naps.
    pub(crate) fn new(pidfd: Option<PidFd>) -> ExitWatch {
        ExitWatch {
            pidfd,
            backoff: Duration::from_micros(20),
        }
    }

    /// Returns when the child may have ended, or after `timeout` (`None`: no limit). The
    /// caller checks with `waitpid`/`waitid` and calls again if it has not.
    pub(crate) fn pause(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match &self.pidfd {
            Some(fd) => {
                fd.wait_timeout(timeout)?;
            }
            // No pidfd (a kernel before 5.3, or out of descriptors): sleep with a backoff.
            None => {
                let nap = timeout.map_or(self.backoff, |r| r.min(self.backoff));
                std::thread::sleep(nap);
                self.backoff = (self.backoff * 2).min(Duration::from_millis(2));
            }
        }
        Ok(())
    }
}

impl ProcessHandle {
    /// Takes charge of a child that a backend has just started: it joins the registry (killed
    /// at exit if `daemon`, waited for otherwise), and the handle waits for, signals and reaps
    /// it.
    ///
    /// # Safety
    ///
    /// `pid` must be a child of this process that the caller has just started, has not
    /// reaped, and hands over: nothing else may wait for, reap or signal it afterwards. The
    /// handle signals `pid` (`terminate`, `kill`, a daemon at exit) and reaps it; if the pid
    /// were someone else's, or reaped elsewhere and reused, those signals would reach a
    /// process this program does not own.
    pub unsafe fn register(pid: Pid, name: String, daemon: bool) -> ProcessHandle {
        at_exit(ExitStage::Children, children_at_exit);
        let mut st = registry();
        st.children.push(ChildEntry {
            pid,
            daemon,
            orphaned: false,
        });
        sweep_orphans(&mut st);
        drop(st);
        ProcessHandle {
            pid,
            home: Home::here("process handle"),
            name,
            daemon,
            status: OnceLock::new(),
        }
    }

    /// The child's process id (Python's `pid`).
    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// The name the backend gave it (Python's `name`: the one passed to the builder, or
    /// `Process-N`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it was started as a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// `Ok` in the process that started the child; [`Error::ForeignProcess`] elsewhere.
    fn check_home(&self) -> Result<()> {
        self.home.check()
    }

    /// Checks (without blocking) whether the child has ended; reaps it if so.
    fn poll(&self) -> Result<Option<ExitCause>> {
        self.check_home()?;
        if let Some(cause) = self.status.get() {
            return Ok(Some(*cause));
        }
        let mut st = registry();
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
        self.check_home()?;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        // Opened while the child is known not to be reaped, so the descriptor names it and
        // not a later process that reused its pid.
        let pidfd = {
            let st = registry();
            if self.status.get().is_some() {
                return Ok(());
            }
            let fd = PidFd::open(self.pid).ok();
            drop(st);
            fd
        };
        let mut watch = ExitWatch::new(pidfd);
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
            watch.pause(remaining).map_err(Error::Io)?;
        }
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        self.check_home()?;
        let st = registry();
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
        if self.status.get().is_some() || !self.home.is_here() {
            return;
        }
        let mut st = registry();
        if let Ok(None) = try_reap(&mut st, self.pid) {
            if let Some(entry) = st.children.iter_mut().find(|c| c.pid == self.pid) {
                entry.orphaned = true;
            }
        }
        sweep_orphans(&mut st);
    }
}

/// Python's exit behaviour: kill daemon children, wait for the others. Runs in this process
/// only for children it started (a forked child starts with an empty list). The exit hook of
/// [`ExitStage::Children`]: after non-daemon threads were waited for, as in Python.
fn children_at_exit() {
    let st = registry();
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
        let mut st = registry();
        let _ = try_reap(&mut st, pid);
    }
}
