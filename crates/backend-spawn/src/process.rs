//! [`Process`]: Python's `multiprocessing.Process` with the spawn start method.

use std::fmt;
use std::io::ErrorKind;

use multiproc_core::{Error, Payload, Result, Task};
use multiproc_process::codec::{encode_items_fds, Encoded};
use multiproc_process::trampoline::offset_of;
use multiproc_process::wire::{FrameWriter, Header, Kind};
use multiproc_process::{next_process_name, ProcessHandle};

use crate::child::check_init;
use crate::launch::{spawn_child, Role};
use crate::pool::READY_TIMEOUT;

/// A process that has not started yet: a target function, its arguments, a name and a daemon
/// flag (Python's `Process(target=f, args=(...))` under the spawn context).
///
/// The target is a `fn` item or a non-capturing closure (code that exists in the child too,
/// since it runs this same program); `args` is a serde value, copied to the child — with any
/// shared arrays, locks, queues or pipe ends in it passed as file descriptors, so the child
/// works on the same shared memory. A started process is a [`ProcessHandle`], the same type as
/// the fork backend's: `pid`, `is_alive`, `join`, `join_timeout`, `exitcode`, `terminate`,
/// `kill`. A panic in the target is exit code 1 (the child prints the message); death by a
/// signal is `-signal`.
///
/// **One shape with the fork backend.** `multiproc_fork::Process::new` and
/// `multiproc::Process::new` (which follows the start method) take the same target and
/// arguments, with the same bounds, and have the same builder methods and `start`: switching
/// between them is one line. The fork backend also has `from_closure`, for a target that
/// captures; there is none here, because a spawned child is this program executed again: it
/// can run only code that exists in it (a function, named by its address in the program) on
/// data sent to it (serde), not a closure's captured state living in this process's memory.
///
/// ```
/// use multiproc_spawn::Process;
///
/// fn greet(name: String) {
///     println!("hello from a fresh process, {name}");
/// }
///
/// # multiproc_spawn::init();
/// let p = Process::new(greet, "bob".to_string()).name("greeter").start()?;
/// p.join()?;
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), multiproc_spawn::Error>(())
/// ```
#[must_use = "a Process does nothing until `start` is called"]
pub struct Process {
    /// The task's `call` word, or why it cannot cross (reported by `start`).
    call: Result<u64>,
    /// The encoded arguments, or why they could not be encoded (reported by `start`).
    encoded: Result<Encoded>,
    name: Option<String>,
    daemon: bool,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field(
                "payload_bytes",
                &self.encoded.as_ref().map(|(p, _)| p.len()).ok(),
            )
            .finish_non_exhaustive()
    }
}

impl Process {
    /// A process that will run `target(args)`. If `args` cannot be encoded,
    /// [`start`](Self::start) says so.
    pub fn new<A: Payload>(target: Task<A, ()>, args: A) -> Process {
        Process {
            call: offset_of(target),
            encoded: encode_items_fds(std::slice::from_ref(&args))
                .map_err(|e| Error::Serialization(format!("encoding the arguments: {e}"))),
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

    /// Starts the child and sends it its target. Fails with [`Error::Serialization`] if the
    /// arguments could not be encoded, [`Error::Io`] if the child could not be started, and
    /// [`Error::InitNotCalled`] in a spawned worker whose `main` did not call
    /// [`init`](crate::init) (instead of starting a process that would run `main` again), and
    /// [`Error::Io`] (the child killed) if a target too large for the socket's buffer is not
    /// read within [`READY_TIMEOUT`] — a program whose `main` runs long before `init`. A
    /// target that fits in the buffer is left there and `start` returns at once, as Python's
    /// does: a child that never reaches `init` then never runs it, and only
    /// [`join_timeout`](ProcessHandle::join_timeout) bounds the wait for it.
    pub fn start(self) -> Result<ProcessHandle> {
        let call = self.call?;
        let (payload, fds) = self.encoded?;
        let name = self.name.unwrap_or_else(next_process_name);
        check_init("Process::start")?;
        let (pid, stream) = spawn_child(Role::Process)?;
        // SAFETY: `pid` is the child just started by `spawn_child`, unreaped, handed over.
        let handle = unsafe { ProcessHandle::register(pid, name, self.daemon) };
        // A child that never reaches `init` never reads: a target larger than the socket's
        // buffer would block this call for as long as the child's `main` runs.
        let _ = stream.set_write_timeout(Some(READY_TIMEOUT));
        let mut writer = FrameWriter::new(stream);
        let header = Header {
            kind: Kind::Task,
            id: 0,
            call,
        };
        // If the child died before reading its target, the write fails; its exit code says
        // why (for example a program that does not call `init`).
        match writer
            .send(header, &payload, &fds)
            .and_then(|()| writer.flush())
        {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                let _ = handle.kill();
                let _ = handle.join_timeout(READY_TIMEOUT);
                Err(Error::Io(std::io::Error::new(
                    e.kind(),
                    format!(
                        "spawned process {} did not read its target within {READY_TIMEOUT:?} \
                         (does its main call init() first?); killed",
                        handle.pid()
                    ),
                )))
            }
            _ => Ok(handle),
        }
    }
}
