//! Forking a child from a process that may have other threads: [`fork_child`] (a
//! [`Process`](crate::Process)) and [`fork_worker`] (a pool's worker).
//!
//! Both go through `fork_here`, so the "prepare, fork, clean up" sequence that keeps a child
//! of a multithreaded parent usable exists once.
//!
//! ## The forker thread
//!
//! Forks from any thread but the process's main thread do not happen on the calling thread
//! but on one dedicated, never-ending thread of the process (`multiproc-fork`), started on
//! first use: a [`ServiceThread`](multiproc_process::ServiceThread), the pattern the spawn
//! backend's launcher thread shares. The reason is `PR_SET_PDEATHSIG`: Linux sends the death
//! signal when the *thread* that forked the child exits, not when the process does. A pool
//! created inside a short-lived thread (a `cargo test` thread, tokio's `spawn_blocking`, a
//! rayon task) would otherwise lose all its workers when that thread ends. The forker thread
//! lives as long as the process, so a child gets SIGKILL exactly when the parent process dies.
//! A forked child starts a forker thread of its own when it forks (its parent's is not in it).
//!
//! The main thread (the one whose id is the pid: `main`'s thread, or the only thread of a
//! forked child) forks by itself
//! ([`ServiceThread::run_lasting`](multiproc_process::ServiceThread::run_lasting)): it too
//! lives as long as the process — `main` returning ends the process — so its children die
//! exactly with it as well. That saves the two hand-overs between threads of a visit to the
//! forker, and a process that only forks from its main thread never starts the forker: every
//! thread of a process makes each of its forks (and its children's exits) slower.
//!
//! ## Why the child can run Rust code
//!
//! POSIX only promises async-signal-safe functions in the child of a multithreaded fork. On
//! Linux (glibc and musl) what goes wrong otherwise is concrete: the child is an exact copy of
//! the parent's memory in which only the forking thread exists, so a lock that another thread
//! held at the moment of the fork stays locked forever in the child. glibc's own `fork` takes
//! and resets the allocator's locks around the fork, so `malloc` works in the child. The
//! locks a child is known to need are taken by the forker thread *before* the fork and
//! released in both processes after it:
//!
//! - `std::io::stdout()` and `std::io::stderr()` (flushed first, so that buffered output is
//!   written once, by the parent, and not again by the child) — except for a pool's worker
//!   forked on the forker thread (a replacement, or a pool made off the main thread): a caller
//!   may wait on that pool while holding stdout's lock (printing each result under one
//!   `stdout().lock()`), and the fork would wait for ever. Such a worker inherits what was
//!   buffered then (a partial line may be printed twice), and a lock another thread held then
//!   stays held in it: a task that prints there waits (a hang of that worker, which
//!   `task_timeout` ends);
//! - the registry of children in `multiproc-process` (the forker's own state needs no lock:
//!   it is per process, behind an atomic pointer).
//!
//! No other thread holds a lock of ours across a fork: a pool worker's socket pair is made
//! here, on the forker thread, just before its fork ([`fork_worker`]), rather than by a caller
//! holding a launch lock (which the child would inherit locked — a pool created inside a
//! worker then waited for it forever). A closure's leftovers are dropped by the caller, not
//! here ([`fork_child`]).
//!
//! What remains is the classic hazard of forking a multithreaded process: if the child touches *another* lock that a
//! different thread of the parent held when it forked (a user's `Mutex`, `std::env`'s lock
//! during a concurrent `set_var`, the global rayon pool, and std's own runtime cleanup in
//! `std::process::exit`, which takes a lock that thread creation and exit take too — a task
//! that must end its worker early is safer with `libc::_exit` or a panic), the child
//! deadlocks. That is a hang,
//! not memory unsafety — every value the child can reach is either behind such a lock or was
//! in a consistent state, exactly as if the other threads had been descheduled forever — and
//! the parent can always [`kill`](crate::ProcessHandle::kill) the child.
//!
//! **Do not fork while this thread holds `stdout().lock()` or `stderr().lock()`**: the forker
//! thread needs those locks and would wait for them forever.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};

use multiproc_core::{Error, Result};
use multiproc_process::{serve, ServiceThread};
use nix::sys::signal::Signal;
use nix::unistd::{getpid, getppid, ForkResult, Pid};

/// What the forker thread runs in the child.
type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

/// What a child is forked for.
enum Work {
    /// A closure ([`fork_child`]).
    Run(Job),
    /// A pool worker serving one end of a socket pair made just before the fork
    /// ([`fork_worker`]).
    Worker,
}

/// The forker's answer: the child's pid (and the parent's end of a worker's socket), and the
/// closure of a [`Work::Run`] handed back, so that the caller drops it — not the forker
/// thread, which every fork of the process waits for.
type Answer = (Result<(Pid, Option<UnixStream>)>, Option<Job>);

/// The forker thread. The child runs on its stack: give it a main thread's size.
static FORKER: ServiceThread = ServiceThread::with_stack_size("multiproc-fork", 8 << 20);

/// Forks a child process that runs `child` and exits with the code it returns (1 if it
/// panics). Returns the child's pid to the parent, which must reap it (`waitpid`).
///
/// Safe to call from any thread of a multithreaded process; see the [module
/// documentation](self) for how, and for the one remaining hazard. The child:
///
/// 1. is forked by the process's forker thread (by the calling thread itself if it is the
///    main thread), after stdout and stderr were locked and flushed (so nothing buffered is
///    printed twice, and neither lock is inherited locked);
/// 2. sets `PR_SET_PDEATHSIG(SIGKILL)` and exits at once if its parent already died before
///    that (`getppid` differs from the parent's pid), so it never outlives its parent;
/// 3. runs `child` under `catch_unwind` — on the forking thread's stack, with the memory of the
///    parent as it was at the fork, so `child` may borrow or capture anything;
/// 4. flushes stdout and leaves with `_exit(code)`: no destructors, no `atexit` handlers, no
///    second flush of buffers that belong to the parent. (`std::process::exit` in `child`
///    does run `atexit` handlers; this crate's handler does nothing in a child it did not
///    start children from.)
///
/// In the parent, `child` is dropped by the calling thread once the child exists (its captured
/// values belong to the child now). So a captured value whose drop blocks — a pool, which
/// waits for its work — blocks only this call, never the forker thread that every other fork
/// (a pool's replacement worker included) needs.
///
/// Fails with [`Error::Io`] when `fork` fails (`EAGAIN`: process limit, `ENOMEM`) or the
/// forker thread cannot be started.
pub(crate) fn fork_child<'a>(child: impl FnOnce() -> i32 + Send + 'a) -> Result<Pid> {
    let job: Box<dyn FnOnce() -> i32 + Send + 'a> = Box::new(child);
    // SAFETY: only the lifetime changes (same layout). The forking thread (the forker, or this
    // one on the main thread) runs the box only in the child; in this process it hands it back
    // in its answer (or drops it, if the fork preparation unwinds) before it answers, and
    // `ask` returns only after that answer, or after dropping the box on this thread when the
    // forker cannot be reached.
    // This function drops the box it gets back before returning — all within `'a`.
    let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() -> i32 + Send + 'a>, Job>(job) };
    let (result, leftover) = ask(Work::Run(job));
    drop(leftover);
    result.map(|(pid, _)| pid)
}

/// Forks a pool worker: a socket pair is made on the forking thread just before the fork, the
/// child serves one end ([`multiproc_process::serve`]) and exits with its code, and the parent's
/// copy of that end is closed before the next fork — so no other child ever inherits it, and
/// no lock is held across the fork by any thread but the forking one (a lock held by a
/// launching thread would stay locked in the child: a pool created inside a worker would wait
/// for it forever). Returns the child's pid and the parent's end.
pub(crate) fn fork_worker() -> Result<(Pid, UnixStream)> {
    let (result, _) = ask(Work::Worker);
    let (pid, stream) = result?;
    Ok((pid, stream.expect("a worker fork returns its stream")))
}

/// Forks `n` pool workers as [`fork_worker`] does, in one visit to the forker thread (a pool's
/// first workers: each visit is a hand-over between threads, two wake-ups), or on this thread
/// if it is the main thread. Returns those
/// forked, and the error that stopped the rest.
pub(crate) fn fork_workers(n: usize) -> (Vec<(Pid, UnixStream)>, Option<Error>) {
    let fork_all = move || {
        let mut forked = Vec::with_capacity(n);
        for _ in 0..n {
            let answer = panic::catch_unwind(AssertUnwindSafe(|| fork_here(Work::Worker)));
            match answer {
                Ok((Ok((pid, Some(stream))), _)) => forked.push((pid, stream)),
                Ok((Ok((_, None)), _)) => unreachable!("a worker fork returns its stream"),
                Ok((Err(e), _)) => return (forked, Some(e)),
                Err(_) => {
                    let e = Error::Io(io::Error::other("fork preparation panicked"));
                    return (forked, Some(e));
                }
            }
        }
        (forked, None)
    };
    FORKER
        .run_lasting(fork_all)
        .unwrap_or_else(|e| (Vec::new(), Some(e)))
}

/// Forks for `work` on this thread if it is the main thread, otherwise hands `work` to the
/// forker thread and waits for its answer. If the forker thread cannot be started, `work` is
/// dropped here, on the calling thread.
fn ask(work: Work) -> Answer {
    let fork = move || {
        // `fork_here` runs the job in the child or hands it back; if it unwinds, the job is
        // dropped during the unwinding — before this answer is sent either way.
        panic::catch_unwind(AssertUnwindSafe(|| fork_here(work))).unwrap_or_else(|_| {
            (
                Err(Error::Io(io::Error::other("fork preparation panicked"))),
                None,
            )
        })
    };
    FORKER.run_lasting(fork).unwrap_or_else(|e| (Err(e), None))
}

/// Runs on the forking thread (the forker, or the main thread): prepare, fork, clean up in
/// both processes.
fn fork_here(work: Work) -> Answer {
    let parent = getpid();
    // Lock order: stdout, stderr, then the registry. Nothing holds the registry while
    // printing, so a thread that prints while holding stdout's lock cannot deadlock with us.
    // Not for a pool's worker forked on the forker thread (a replacement, or a pool made off
    // the main thread): a caller may be waiting on that pool while it holds stdout (printing
    // results under one `stdout().lock()`), and this would wait for ever. Such a worker
    // inherits whatever was buffered, or locked, then (see the module docs).
    let on_main_thread = multiproc_sys::thread::gettid() == parent.as_raw();
    let (stdout, stderr) = if matches!(work, Work::Run(_)) || on_main_thread {
        let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
        let _ = out.flush();
        let _ = err.flush();
        (Some(out), Some(err))
    } else {
        (None, None)
    };
    let children = multiproc_process::registry();
    // A worker's socket pair is made under the registry's lock, which every fork here takes,
    // and the parent closes the worker's end before releasing it: a fork on another thread
    // (the main thread forks by itself while the forker forks for the others) cannot inherit
    // that end, which would keep the connection open after the worker died.
    let (job, pair) = match work {
        Work::Run(job) => (Some(job), None),
        Work::Worker => match UnixStream::pair() {
            Ok(pair) => (None, Some(pair)),
            Err(e) => return (Err(Error::Io(e)), None),
        },
    };
    // No bulk buffer is made or dropped across the fork; the child closes their descriptors.
    let bulk = multiproc_process::bulk_fds();
    // SAFETY: `fork` is unsafe because the child of a multithreaded process is a copy in which
    // only this thread runs. The child below touches only: the guards this thread holds
    // (released by their owner, this thread), our state (locked by us, so consistent), the
    // allocator (made fork-safe by libc's own fork handlers), and then `run_child`, which runs
    // the caller's closure (or the worker loop) and `_exit`s without returning into code that
    // ran before the fork. Locks that other threads held stay locked in the child: touching
    // one deadlocks the child (a hang the parent can end with kill), it cannot observe a torn
    // value. The parent continues normally.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            // The registry's entries are the parent's: its next access here drops them.
            drop(children);
            // SAFETY: this is the child of the fork above, taken while the guard was held,
            // and nothing in it has opened a descriptor yet.
            unsafe { bulk.close_inherited() };
            drop(stderr);
            drop(stdout);
            let job = match (job, pair) {
                (Some(job), _) => job,
                (None, Some((ours, theirs))) => {
                    // The child's copy of the parent's end would keep the connection open
                    // after the parent died.
                    drop(ours);
                    // SAFETY: the other end is the pool of our parent, which forked us from
                    // this same image, and is the only holder of that end.
                    Box::new(move || unsafe { serve(theirs) })
                }
                (None, None) => multiproc_sys::exit::exit_now(1),
            };
            run_child(parent, job)
        }
        Ok(ForkResult::Parent { child }) => {
            // Closed before the registry is released, so no other child inherits the
            // worker's end (above).
            let ours = pair.map(|(ours, theirs)| {
                drop(theirs);
                ours
            });
            drop(bulk);
            drop(children);
            drop(stderr);
            drop(stdout);
            (Ok((child, ours)), job)
        }
        Err(errno) => {
            drop(bulk);
            drop(children);
            drop(stderr);
            drop(stdout);
            drop(pair);
            (Err(Error::Io(errno.into())), job)
        }
    }
}

/// The child's whole life after the fork.
fn run_child(parent: Pid, job: Job) -> ! {
    // Die with the parent: SIGKILL when the thread that forked us ends (the forker or the main
    // thread), i.e. when the parent process exits. If the parent died before the line above
    // took effect, we have been re-parented.
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || getppid() != parent {
        multiproc_sys::exit::exit_now(1);
    }
    let code = match panic::catch_unwind(AssertUnwindSafe(job)) {
        Ok(code) => code,
        Err(payload) => {
            // The panic hook has printed the message. Dropping the payload could panic again.
            std::mem::forget(payload);
            1
        }
    };
    // `print!` without a newline stays in stdout's buffer; `_exit` would lose it.
    let _ = io::stdout().flush();
    multiproc_sys::exit::exit_now(code)
}
