//! [`Process`]: Python's `multiprocessing.Process` with the fork start method.
//!
//! See [`Process`] for the behaviour, which follows Python's.

use std::fmt;

use multiproc_core::{Payload, Result, Task};
use multiproc_process::{next_process_name, ProcessHandle};

use crate::fork::fork_child;

/// A process that has not started yet: its target, name and daemon flag (Python's
/// `multiprocessing.Process(target=..., args=..., name=..., daemon=...)`).
///
/// A process is configured ([`Process::new`], [`name`](Process::name),
/// [`daemon`](Process::daemon)), started ([`start`](Process::start)) and then observed
/// through its [`ProcessHandle`]: `pid`, `is_alive`, `join`, `join_timeout`, `exitcode`,
/// `terminate`, `kill`.
///
/// **One shape with the spawn backend.** [`Process::new`] takes a task (a `fn` item or
/// non-capturing closure, [`Task`]) and its arguments, with the same bounds as
/// `multiproc_spawn::Process::new` and `multiproc::Process::new`, so switching a program's
/// processes between fork, spawn and the start method is one line:
///
/// ```
/// use multiproc_fork::Process; // or multiproc_spawn::Process, or multiproc::Process
///
/// fn summer(numbers: Vec<u64>) {
///     assert_eq!(numbers.iter().sum::<u64>(), 5050);
/// }
///
/// let p = Process::new(summer, (1..=100).collect()).name("summer").start()?;
/// p.join()?;
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), multiproc_fork::Error>(())
/// ```
///
/// **Fork's own strength: [`Process::from_closure`].** A forked child is a copy of this
/// process, so it can run a closure that captures — or even borrows — anything, with no
/// serialization:
///
/// ```
/// use multiproc_fork::Process;
///
/// let numbers: Vec<u64> = (1..=100).collect(); // made before the fork: the child inherits it
/// let p = Process::from_closure(|| {
///     assert_eq!(numbers.iter().sum::<u64>(), 5050);
/// })
/// .start()?;
/// p.join()?;
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), multiproc_fork::Error>(())
/// ```
///
/// A spawned child cannot do this: it is this program executed again, so what it runs must
/// be code that exists in it (a function) and data that can be sent (serde), which is what
/// `new`'s shape says. A program that uses `from_closure` is tied to the fork backend.
///
/// **The target runs in a forked copy of this process.** What it changes stays in the child.
/// It ends the child: returning is exit code 0, a panic is exit code 1
/// (the panic message is printed by the child), `std::process::exit(n)` is `n`, death by a
/// signal is `-signal`, as in Python.
///
/// **`join` does not report failure — [`exitcode`](ProcessHandle::exitcode) does.** This is
/// Python's contract (`join()` returns `None`, you inspect `exitcode`), kept because a child
/// that exits non-zero on purpose is not an error of `join`. [`ProcessHandle::exit_cause`]
/// gives the same information as an [`ExitCause`](multiproc_core::ExitCause) and [`ProcessHandle::check`] turns a
/// non-zero end into [`Error::WorkerDied`](multiproc_core::Error::WorkerDied) for `?`.
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
/// The lifetime lets a [`from_closure`](Self::from_closure) target borrow from the caller:
/// the child gets its own copy of everything at the fork, and [`start`](Self::start) returns
/// only after the fork. A process made by [`new`](Self::new) borrows nothing.
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
    /// A process that will run `target(args)` (Python's `Process(target=f, args=(...))`).
    ///
    /// The shape and bounds are those of `multiproc_spawn::Process::new` and
    /// `multiproc::Process::new`. Fork itself needs no serialization — `args` reaches the
    /// child as part of its copy of this process, never encoded — but `A: Payload` keeps the
    /// one-line switch real: a program that compiles here compiles under spawn. For a target
    /// that captures, see [`from_closure`](Self::from_closure).
    pub fn new<A: Payload>(target: Task<A, ()>, args: A) -> Self {
        Self::from_closure(move || target(args))
    }

    /// A process that will run a closure, which may capture or borrow anything: the forked
    /// child has its own copy of this process's memory. Fork only — a spawned child cannot
    /// receive a closure (see the type's documentation); [`new`](Self::new) is the shape every
    /// backend shares.
    pub fn from_closure(target: impl FnOnce() + Send + 'a) -> Self {
        Process {
            target: Box::new(target),
            name: None,
            daemon: false,
        }
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

    /// Forks the child and starts the target in it. Fails with
    /// [`Error::Io`](multiproc_core::Error::Io) if `fork` fails.
    ///
    /// In this process the target is dropped by this call, once the child exists: values it
    /// captured belong to the child now. A captured pool is closed and joined here, as a
    /// dropped pool is; the child's copy of it refuses every call
    /// ([`Error::ForeignProcess`](multiproc_core::Error::ForeignProcess)). Other forks of the
    /// process do not wait for that.
    pub fn start(self) -> Result<ProcessHandle> {
        let name = self.name.unwrap_or_else(next_process_name);
        let target = self.target;
        let pid = fork_child(move || {
            target();
            0
        })?;
        // SAFETY: `pid` is the child just forked above, unreaped, and handed to the handle.
        Ok(unsafe { ProcessHandle::register(pid, name, self.daemon) })
    }
}
