//! [`Launcher`] and [`Worker`]: how a backend starts a pool's worker processes, and what it
//! hands the pool for each.

use std::os::unix::net::UnixStream;

use multiproc_core::{Error, Result};
use nix::unistd::Pid;

/// A started worker process and the parent's end of its socket.
#[derive(Debug)]
pub struct Worker {
    /// Its process id.
    pub(crate) pid: Pid,
    /// The parent's end of the connection; the worker runs [`serve`](crate::serve) on the other.
    pub(crate) stream: UnixStream,
}

impl Worker {
    /// A worker: `pid`, connected through `stream`.
    ///
    /// # Safety
    ///
    /// `pid` is a child of this process that nothing else waits for or signals (the pool will
    /// signal and reap it), and the other end of `stream` is that child running
    /// [`serve`](crate::serve), which trusts every frame that arrives (a task frame's `call`
    /// is a code address): nobody else may write to `stream`.
    pub unsafe fn new(pid: Pid, stream: UnixStream) -> Worker {
        Worker { pid, stream }
    }

    /// Its process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The parent's end of the connection, for a launcher's handshake before the pool takes
    /// the worker over.
    ///
    /// # Safety
    ///
    /// Nothing may be written to it: the worker trusts every frame that arrives (a task
    /// frame's `call` is a code address it jumps to).
    pub unsafe fn stream(&self) -> &UnixStream {
        &self.stream
    }
}

/// How a backend starts one worker.
///
/// # Safety
///
/// The pool signals (`SIGKILL` on `terminate`) and reaps the pid of every [`Worker`] that
/// `launch` returns, so an implementation promises that the pid is a child of this process
/// that it has just started, has not reaped, and hands over to the caller: nothing else
/// waits for, reaps or signals it. And `stream` is connected to that child, which runs
/// [`serve`](crate::serve) on the other end.
pub unsafe trait Launcher: Send + Sync + 'static {
    /// Starts a worker connected to the returned stream. Called when the pool is created, and
    /// from a supervisor thread to replace a worker that died.
    fn launch(&self) -> Result<Worker>;

    /// Starts the pool's first `n` workers: those started, and the error that stopped the
    /// rest (the pool then stops and reaps those it got). The default calls
    /// [`launch`](Self::launch) `n` times; a launcher that starts every worker from one
    /// thread of its own (the fork backend's forker) starts them all in one visit to it.
    fn launch_many(&self, n: usize) -> (Vec<Worker>, Option<Error>) {
        let mut started = Vec::with_capacity(n);
        for _ in 0..n {
            match self.launch() {
                Ok(w) => started.push(w),
                Err(e) => return (started, Some(e)),
            }
        }
        (started, None)
    }

    /// Waits until a launched worker is ready to serve. The pool launches all its workers
    /// first and then waits for each, so that they start up in parallel. On `Err`, the
    /// launcher has already ended and reaped the worker. The default: ready at once (a forked
    /// worker serves from the moment it exists).
    ///
    /// # Safety
    ///
    /// `worker` must have been returned by this launcher's [`launch`](Self::launch) and not
    /// be handed to a pool yet: on failure, the launcher kills and reaps its pid.
    unsafe fn ready(&self, worker: &Worker) -> Result<()> {
        let _ = worker;
        Ok(())
    }
}
