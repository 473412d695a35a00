//! [`Thread`]: Python's `threading.Thread`, with Python's daemon semantics.
//!
//! A thread is configured ([`Thread::new`], [`name`](Thread::name),
//! [`daemon`](Thread::daemon)), started ([`start`](Thread::start)) and then observed through
//! its [`ThreadHandle`] (`is_alive`, `join`, `join_timeout`, `ident`, `native_id`).
//!
//! **Daemon semantics, as in Python.** The process does not exit until every non-daemon
//! thread started here has finished: when `main` returns (or `std::process::exit` is called),
//! an exit handler waits for them. Daemon threads are abandoned at exit. Rust's own
//! `std::thread` threads are all "daemon" in this sense; a [`Thread`] is non-daemon unless you
//! say otherwise, as in Python.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::Duration;

use multiproc_core::exit::{at_exit, ExitStage};
use multiproc_core::{Error, Result};

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Live non-daemon threads, and the exit handler that waits for them.
static LIVE_NON_DAEMON: Mutex<usize> = Mutex::new(0);
static NON_DAEMON_DONE: Condvar = Condvar::new();
/// The process whose threads `LIVE_NON_DAEMON` counts. A forked child inherits the count and
/// the exit handler, but none of the threads: there the handler must not wait.
static COUNTING_PID: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static IS_NON_DAEMON: Cell<bool> = const { Cell::new(false) };
}

/// The exit hook ([`ExitStage::Threads`]: before child processes are handled, as in Python).
fn wait_for_non_daemon_threads() {
    if std::process::id() != COUNTING_PID.load(Ordering::Relaxed) {
        return; // a forked child: the counted threads are not here
    }
    // A non-daemon thread that calls `exit` itself must not wait for itself.
    let me = usize::from(IS_NON_DAEMON.try_with(Cell::get).unwrap_or(false));
    let live = guard(&LIVE_NON_DAEMON);
    drop(
        NON_DAEMON_DONE
            .wait_while(live, |n| *n > me)
            .unwrap_or_else(PoisonError::into_inner),
    );
}

fn register_exit_handler() {
    // The first call of the process claims the count; no `Once`, whose copy a fork during
    // `call_once` would leave "running" for ever in the child. A child inherits a non-zero
    // pid, its parent's, and its hook then does nothing (see above).
    if COUNTING_PID
        .compare_exchange(0, std::process::id(), Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        at_exit(ExitStage::Threads, wait_for_non_daemon_threads);
    }
}

/// Marks one non-daemon thread as finished when dropped (also when it unwinds).
struct NonDaemonGuard;

impl Drop for NonDaemonGuard {
    fn drop(&mut self) {
        let _ = IS_NON_DAEMON.try_with(|c| c.set(false));
        *guard(&LIVE_NON_DAEMON) -= 1;
        NON_DAEMON_DONE.notify_all();
    }
}

/// Python's "subclass `Thread` and override `run`": implement this for your type and start
/// it with [`Thread::from_run`].
///
/// ```
/// use multiproc_threads::{Run, Thread};
///
/// struct LongRunningThread { niters: u32 }
///
/// impl Run for LongRunningThread {
///     type Output = u32;
///     fn run(self) -> u32 {
///         (0..self.niters).filter(|i| i % 2 == 0).count() as u32 // the ticks
///     }
/// }
///
/// let t = Thread::from_run(LongRunningThread { niters: 6 }).start()?;
/// assert_eq!(t.join()?, 3);
/// # Ok::<(), multiproc_threads::Error>(())
/// ```
pub trait Run: Send + 'static {
    /// What `run` returns; [`ThreadHandle::join`] hands it back.
    type Output: Send + 'static;
    /// The thread's body.
    fn run(self) -> Self::Output;
}

/// A thread that has not started yet: its target, name and daemon flag.
#[must_use = "a Thread does nothing until `start` is called"]
pub struct Thread<R> {
    target: Box<dyn FnOnce() -> R + Send + 'static>,
    name: Option<String>,
    daemon: bool,
}

impl<R> std::fmt::Debug for Thread<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Thread")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .finish()
    }
}

impl<R: Send + 'static> Thread<R> {
    /// A thread that will run `target` (Python's `Thread(target=f)`).
    pub fn new(target: impl FnOnce() -> R + Send + 'static) -> Self {
        Thread {
            target: Box::new(target),
            name: None,
            daemon: false,
        }
    }

    /// A thread that will run `target(args)` (Python's `Thread(target=f, args=(...))`).
    pub fn with_args<A: Send + 'static>(
        target: impl FnOnce(A) -> R + Send + 'static,
        args: A,
    ) -> Self {
        Self::new(move || target(args))
    }

    /// A thread that will call `runner.run()` (Python's `Thread` subclass with `run`).
    pub fn from_run<T: Run<Output = R>>(runner: T) -> Self {
        Self::new(move || runner.run())
    }

    /// Sets the thread's name (visible in panics and debuggers).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Marks the thread as a daemon: the program may exit while it still runs.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// Starts the thread.
    pub fn start(self) -> Result<ThreadHandle<R>> {
        let state = Arc::new(Shared {
            outcome: Mutex::new(Outcome::Running),
            finished: Condvar::new(),
            native_id: Mutex::new(None),
        });
        let non_daemon = !self.daemon;
        if non_daemon {
            register_exit_handler();
            *guard(&LIVE_NON_DAEMON) += 1;
        }
        let worker_state = state.clone();
        let target = self.target;
        let mut builder = thread::Builder::new();
        if let Some(name) = self.name.clone() {
            builder = builder.name(name);
        }
        let spawned = builder.spawn(move || {
            let _non_daemon = non_daemon.then(|| {
                IS_NON_DAEMON.with(|c| c.set(true));
                NonDaemonGuard
            });
            *guard(&worker_state.native_id) = Some(multiproc_sys::thread::gettid());
            let result = panic::catch_unwind(AssertUnwindSafe(target)).map_err(Error::from_panic);
            *guard(&worker_state.outcome) = Outcome::Finished(result);
            worker_state.finished.notify_all();
        });
        let handle = match spawned {
            Ok(handle) => handle,
            Err(e) => {
                if non_daemon {
                    *guard(&LIVE_NON_DAEMON) -= 1;
                    NON_DAEMON_DONE.notify_all();
                }
                return Err(Error::Io(e));
            }
        };
        Ok(ThreadHandle {
            ident: handle.thread().id(),
            name: self.name,
            daemon: self.daemon,
            join: Mutex::new(Some(handle)),
            state,
        })
    }
}

enum Outcome<R> {
    Running,
    Finished(Result<R>),
    Joined,
}

struct Shared<R> {
    outcome: Mutex<Outcome<R>>,
    finished: Condvar,
    native_id: Mutex<Option<i32>>,
}

/// A started [`Thread`].
///
/// Dropping the handle does not stop or detach-and-forget the thread: a non-daemon thread
/// still holds the program open at exit.
pub struct ThreadHandle<R> {
    ident: ThreadId,
    name: Option<String>,
    daemon: bool,
    join: Mutex<Option<JoinHandle<()>>>,
    state: Arc<Shared<R>>,
}

impl<R> std::fmt::Debug for ThreadHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadHandle")
            .field("ident", &self.ident)
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl<R> ThreadHandle<R> {
    /// Whether the thread is still running its target.
    pub fn is_alive(&self) -> bool {
        matches!(*guard(&self.state.outcome), Outcome::Running)
    }

    /// The thread's identifier within this process (Python's `ident`).
    pub fn ident(&self) -> ThreadId {
        self.ident
    }

    /// The operating system's id for the thread (Python's `native_id`), once it has started
    /// running.
    pub fn native_id(&self) -> Option<i32> {
        *guard(&self.state.native_id)
    }

    /// The name given with [`Thread::name`].
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether it is a daemon thread.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The outcome of a finished target. `reap`: wait for the OS thread to end too (its
    /// thread-locals' destructors run after the target returned); otherwise it is detached,
    /// and ends by itself, so that a `join_timeout` keeps its bound.
    fn take(&self, outcome: &mut Outcome<R>, reap: bool) -> Result<R> {
        match std::mem::replace(outcome, Outcome::Joined) {
            Outcome::Finished(r) => {
                if let Some(handle) = guard(&self.join).take() {
                    // The target has returned; the OS thread is exiting. Its body cannot
                    // panic after the outcome is stored.
                    if reap {
                        let _ = handle.join();
                    }
                }
                r
            }
            Outcome::Joined => Err(Error::invalid("self", "this thread was already joined")),
            Outcome::Running => unreachable!("take is called only after the thread finished"),
        }
    }

    /// Waits for the thread to finish and returns what its target returned, or
    /// [`Error::TaskPanicked`]. Joining a second time is [`Error::InvalidArgument`].
    pub fn join(&self) -> Result<R> {
        let outcome = guard(&self.state.outcome);
        let mut outcome = self
            .state
            .finished
            .wait_while(outcome, |o| matches!(o, Outcome::Running))
            .unwrap_or_else(PoisonError::into_inner);
        self.take(&mut outcome, true)
    }

    /// Like [`join`](Self::join), but gives up with [`Error::Timeout`] after `timeout`, leaving
    /// the thread running and joinable.
    pub fn join_timeout(&self, timeout: Duration) -> Result<R> {
        let outcome = guard(&self.state.outcome);
        let (mut outcome, _) = self
            .state
            .finished
            .wait_timeout_while(outcome, timeout, |o| matches!(o, Outcome::Running))
            .unwrap_or_else(PoisonError::into_inner);
        if matches!(*outcome, Outcome::Running) {
            return Err(Error::Timeout(timeout));
        }
        self.take(&mut outcome, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_returns_the_value_and_a_second_join_is_an_error() {
        let t = Thread::with_args(|n: u32| n * 2, 21)
            .name("doubler")
            .start()
            .unwrap();
        assert_eq!(t.name(), Some("doubler"));
        assert_eq!(t.join().unwrap(), 42);
        assert!(!t.is_alive());
        assert!(matches!(
            t.join(),
            Err(Error::InvalidArgument { name: "self", .. })
        ));
        assert!(matches!(
            t.join_timeout(Duration::from_millis(1)),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn join_timeout_keeps_its_bound_while_thread_locals_are_destroyed() {
        struct Slow(std::sync::mpsc::Receiver<()>);
        impl Drop for Slow {
            fn drop(&mut self) {
                let _ = self.0.recv_timeout(Duration::from_secs(30));
            }
        }
        thread_local! {
            static SLOW: std::cell::RefCell<Option<Slow>> = const { std::cell::RefCell::new(None) };
        }
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let t = Thread::new(move || SLOW.with(|s| *s.borrow_mut() = Some(Slow(wait))))
            .start()
            .unwrap();
        // The target returns at once; its thread-local's destructor then waits for `go`.
        let start = std::time::Instant::now();
        let joined = t.join_timeout(Duration::from_secs(5));
        let took = start.elapsed();
        let _ = go.send(()); // (gone already if the destructor gave up waiting)
        assert!(joined.is_ok(), "{joined:?}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
    }

    #[test]
    fn join_timeout_leaves_a_running_thread_joinable() {
        // The thread runs until the test lets it go (or, should the test fail first, 30 s).
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let t = Thread::new(move || wait.recv_timeout(Duration::from_secs(30)).is_ok())
            .start()
            .unwrap();
        assert!(t.is_alive());
        assert!(matches!(
            t.join_timeout(Duration::from_millis(10)),
            Err(Error::Timeout(_))
        ));
        assert!(t.is_alive());
        go.send(()).unwrap();
        assert!(
            t.join_timeout(Duration::from_secs(10)).unwrap(),
            "not let go"
        );
        assert!(!t.is_alive());
    }

    #[test]
    fn a_panicking_target_is_an_error_with_its_message() {
        let t = Thread::new(|| -> u8 { panic!("woozle") }).start().unwrap();
        match t.join() {
            Err(Error::TaskPanicked { message }) => assert_eq!(message, "woozle"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ident_and_native_id_identify_the_thread() {
        let t = Thread::new(|| std::thread::current().id()).start().unwrap();
        let ident = t.ident();
        assert_eq!(t.join().unwrap(), ident);
        assert!(t.native_id().is_some_and(|id| id > 0));
    }
}
