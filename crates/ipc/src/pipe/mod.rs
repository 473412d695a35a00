//! [`pipe`] and [`Connection`]: Python's `multiprocessing.Pipe`, on a Unix stream socket.
//!
//! Each message is one frame of `multiproc-process`'s wire protocol ([`FrameWriter`] /
//! [`FrameReader`], kind `Message`), so the values it carries may own file descriptors: a
//! shared array, a process-shared lock, a [`Queue`](crate::Queue) or another `Connection` is
//! encoded inside [`collect_fds`], its descriptors travel as `SCM_RIGHTS` with the frame, and
//! the receiver decodes inside [`provide_fds`]. That is also how a `Connection` itself reaches
//! a spawned process: it is `Serialize`/`Deserialize` through [`multiproc_core::handoff`].

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use multiproc_core::handoff::{collect_fds, provide_fds};
use multiproc_core::{Error, Result};
use multiproc_process::wire::{FrameReader, FrameWriter, Header, Kind};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;

mod handoff;
mod turn;

use turn::{Turn, TurnGuard};

/// Creates a pair of connected [`Connection`]s (Python's `multiprocessing.Pipe(duplex)`).
///
/// With `duplex` both ends send and receive. Without it the first end only receives and the
/// second only sends, as in Python (`r, w = Pipe(False)`); using an end the other way is an
/// [`Error::InvalidArgument`].
///
/// Both ends are close-on-exec Unix stream sockets. A forked child inherits *both* ends of a
/// pipe made before the fork; as in Python, an end is at its end of file only when every copy
/// of the other end is closed, so drop the end a process does not use.
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    let (a, b) = UnixStream::pair()?;
    if !duplex {
        a.shutdown(std::net::Shutdown::Write)?;
        b.shutdown(std::net::Shutdown::Read)?;
    }
    Ok((
        Connection::from_stream(a, true, duplex)?,
        Connection::from_stream(b, duplex, true)?,
    ))
}

struct ReadHalf {
    frames: FrameReader,
    payload: Vec<u8>,
    /// A timeout cut a message off in the middle: the stream is out of step for good.
    broken: bool,
}

struct WriteHalf {
    frames: FrameWriter,
    broken: bool,
}

/// One end of a [`pipe`] (Python's `multiprocessing.connection.Connection`).
///
/// [`send`](Self::send) and [`recv`](Self::recv) move serde values (encoded by the one codec), and
/// values that own file descriptors too: a shared array, a process-shared lock, a
/// [`Queue`](crate::Queue) or another `Connection` travels as descriptors (`SCM_RIGHTS`)
/// beside its bytes, through [`multiproc_core::handoff`]. Methods take `&self`:
/// one thread may send while another receives; sends (and receives) from several threads
/// are serialised, each message whole, and a timeout bounds the wait for another thread's
/// message too. [`close`](Self::close) does not wait for a call under way on another thread.
/// A child forked while another thread was sending or receiving gets an error from that
/// direction, rather than waiting for a thread it does not have.
///
/// # Errors
///
/// | Python | here |
/// |---|---|
/// | `EOFError` from `recv` (the other end is closed and nothing is left) | [`Error::PipeClosed`] ([`is_closed`](crate::is_closed)) |
/// | `BrokenPipeError` (or `ConnectionResetError`) from `send` or `recv` (the other end is closed) | [`Error::PipeClosed`] |
/// | `OSError: handle is closed` (after [`close`](Self::close)) | [`Error::Io`] of kind `NotConnected` |
/// | unpicklable object | [`Error::Serialization`] |
///
/// # Timeouts
///
/// [`recv_timeout`](Self::recv_timeout), [`recv_bytes_timeout`](Self::recv_bytes_timeout),
/// [`send_timeout`](Self::send_timeout), [`send_bytes_timeout`](Self::send_bytes_timeout) and
/// [`poll`](Self::poll) bound every wait, and the whole call: a peer that trickles a message
/// in, or reads one slowly, does not stretch it. A timeout that strikes in the *middle* of a
/// message (its first bytes arrived, the rest did not, or only part of a large message could
/// be written) leaves the byte stream out of step: that direction of the connection is then
/// broken, and further calls in it fail with an error that says so.
///
/// ```
/// use multiproc_ipc::pipe;
///
/// let (parent, child) = pipe(true)?;
/// let t = std::thread::spawn(move || -> multiproc_core::Result<()> {
///     let question: String = child.recv()?;
///     child.send(&(question.len(), vec![1.5_f64, 2.5]))
/// });
/// parent.send(&"how long?".to_string())?;
/// let (n, xs): (usize, Vec<f64>) = parent.recv()?;
/// assert_eq!((n, xs), (9, vec![1.5, 2.5]));
/// t.join().unwrap()?;
/// // The other end is gone: recv is at its end of file.
/// assert!(matches!(
///     parent.recv::<String>(),
///     Err(multiproc_ipc::Error::PipeClosed)
/// ));
/// # Ok::<(), multiproc_core::Error>(())
/// ```
pub struct Connection {
    /// Each direction is used by one thread at a time, its turn taken with the call's own
    /// deadline: a thread blocked in `recv` does not make another's `recv_timeout` or
    /// `poll` wait beyond theirs (see [`Turn`]).
    reader: Turn<Option<ReadHalf>>,
    writer: Turn<Option<WriteHalf>>,
    /// `close` was called: a half not in use went then, one in use goes when that call ends
    /// (each half is retired: [`Turn::retire`]).
    closing: AtomicBool,
    /// The socket's number, for `fileno`.
    fd: RawFd,
    readable: bool,
    writable: bool,
}

/// A half of the connection in use by this thread; if `close` was called meanwhile, the half
/// is dropped when the use ends (its turn retired it).
struct InUse<'a, H> {
    guard: TurnGuard<'a, Option<H>>,
}

impl<H> Deref for InUse<'_, H> {
    type Target = H;
    fn deref(&self) -> &H {
        self.guard.as_ref().expect("an InUse holds a half")
    }
}

impl<H> DerefMut for InUse<'_, H> {
    fn deref_mut(&mut self) -> &mut H {
        self.guard.as_mut().expect("an InUse holds a half")
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .field("closed", &self.closed())
            .finish()
    }
}

fn handle_closed() -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::NotConnected,
        "the connection is closed",
    ))
}

/// Whether an error of the socket means that the other end is closed: end of file in the
/// middle of a message (`UnexpectedEof`), a write to a closed end (`BrokenPipe`), or an end
/// that closed with bytes unread, which Linux reports to the survivor as a reset.
fn peer_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

const MESSAGE: Header = Header {
    kind: Kind::Message,
    id: 0,
    call: 0,
};

impl Connection {
    fn from_stream(sock: UnixStream, readable: bool, writable: bool) -> Result<Self> {
        let read_sock = sock.try_clone()?;
        Ok(Connection {
            fd: sock.as_raw_fd(),
            reader: Turn::new(Some(ReadHalf {
                frames: FrameReader::new(read_sock),
                payload: Vec::new(),
                broken: false,
            })),
            writer: Turn::new(Some(WriteHalf {
                frames: FrameWriter::new(sock),
                broken: false,
            })),
            closing: AtomicBool::new(false),
            readable,
            writable,
        })
    }

    /// Takes the turn of `half` (waiting until `deadline`; a timeout is [`Error::Timeout`]
    /// of `waited`) and the half itself; a closed connection is an error.
    fn use_half<'a, H>(
        &'a self,
        half: &'a Turn<Option<H>>,
        deadline: Option<Instant>,
        waited: Duration,
    ) -> Result<InUse<'a, H>> {
        let in_use = InUse {
            guard: half.take(deadline, waited)?,
        };
        if self.closing.load(SeqCst) || in_use.guard.is_none() {
            return Err(handle_closed()); // (the drop lets the half go)
        }
        Ok(in_use)
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether [`close`](Self::close) was called.
    pub fn closed(&self) -> bool {
        self.closing.load(SeqCst)
    }

    /// Closes this end (Python's `close`); dropping it does the same. The other end then
    /// reads to its end of file, once every copy of this end (in forked children, or sent
    /// away) is closed too. It does not wait: a direction that another thread is using (a
    /// `recv` waiting for a message) is closed when that call returns, and every call made
    /// after `close` fails.
    pub fn close(&self) {
        self.closing.store(true, SeqCst);
        self.writer.retire();
        self.reader.retire();
    }

    /// Sends `value` (Python's `send(obj)`). Blocks only while the socket's buffer is full,
    /// i.e. while the other end does not read a large message; see
    /// [`send_timeout`](Self::send_timeout).
    ///
    /// Errors: the other end is closed ([`Error::PipeClosed`]); the value does not encode
    /// ([`Error::Serialization`]).
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.send_until(value, None)
    }

    /// Like [`send`](Self::send), but gives up with [`Error::Timeout`] if the message cannot
    /// be written within `timeout` (see the type's docs on timeouts).
    pub fn send_timeout<T: Serialize + ?Sized>(&self, value: &T, timeout: Duration) -> Result<()> {
        self.send_until(value, Some(timeout))
    }

    /// Sends raw bytes as one message (Python's `send_bytes`); the other end reads them with
    /// [`recv_bytes`](Self::recv_bytes).
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.write_frame(bytes, &[], None)
    }

    /// Like [`send_bytes`](Self::send_bytes), but gives up with [`Error::Timeout`] if the
    /// message cannot be written within `timeout` (see the type's docs on timeouts).
    pub fn send_bytes_timeout(&self, bytes: &[u8], timeout: Duration) -> Result<()> {
        self.write_frame(bytes, &[], Some(timeout))
    }

    fn send_until<T: Serialize + ?Sized>(
        &self,
        value: &T,
        timeout: Option<Duration>,
    ) -> Result<()> {
        if !self.writable {
            return Err(Error::invalid(
                "self",
                "this end of a one-way Pipe only receives",
            ));
        }
        let (bytes, fds) = collect_fds(|| codec::encode_into(value, Vec::new()));
        self.write_frame(&bytes?, &fds, timeout)
    }

    fn write_frame(&self, bytes: &[u8], fds: &[OwnedFd], timeout: Option<Duration>) -> Result<()> {
        if !self.writable {
            return Err(Error::invalid(
                "self",
                "this end of a one-way Pipe only receives",
            ));
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut half = self.use_half(&self.writer, deadline, timeout.unwrap_or_default())?;
        if half.broken {
            return Err(Error::Io(io::Error::other(
                "an earlier send timed out in the middle of a message; this connection can no \
                 longer send",
            )));
        }
        // Every write gives up at the deadline (what is left of the timeout after waiting for
        // the turn), not each one after the whole timeout.
        half.frames.set_deadline(deadline)?;
        let before = half.frames.written();
        let mut r = half.frames.send(MESSAGE, bytes, fds);
        if r.is_ok() {
            r = half.frames.flush();
        }
        if deadline.is_some() {
            half.frames.set_deadline(None)?;
        }
        match r {
            Ok(()) => Ok(()),
            Err(e) if is_timeout(&e) => {
                // Broken only if part of the message went out; none did: nothing was sent.
                half.broken = half.frames.written() != before;
                Err(Error::Timeout(timeout.unwrap_or_default()))
            }
            Err(e) if peer_closed(&e) => Err(Error::PipeClosed),
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// Receives the next value, waiting for it (Python's `recv()`).
    ///
    /// Errors: the other end is closed and nothing is left ([`Error::PipeClosed`]); the
    /// message does not decode as a `T` ([`Error::Serialization`]; the message is consumed).
    pub fn recv<T: DeserializeOwned + 'static>(&self) -> Result<T> {
        self.recv_until(None)
    }

    /// Like [`recv`](Self::recv), but gives up after `timeout` with [`Error::Timeout`].
    pub fn recv_timeout<T: DeserializeOwned + 'static>(&self, timeout: Duration) -> Result<T> {
        self.recv_until(Some(timeout))
    }

    /// Receives the next message as raw bytes (Python's `recv_bytes`). Descriptors that came
    /// with it are closed.
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.read_frame(None, |bytes, _fds| Ok(bytes.to_vec()))
    }

    /// Like [`recv_bytes`](Self::recv_bytes), with a timeout.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.read_frame(Some(timeout), |bytes, _fds| Ok(bytes.to_vec()))
    }

    fn recv_until<T: DeserializeOwned + 'static>(&self, timeout: Option<Duration>) -> Result<T> {
        self.read_frame(timeout, |bytes, fds| {
            provide_fds(fds, || codec::decode(bytes))
        })
    }

    fn read_frame<R>(
        &self,
        timeout: Option<Duration>,
        decode: impl FnOnce(&[u8], Vec<OwnedFd>) -> Result<R>,
    ) -> Result<R> {
        if !self.readable {
            return Err(Error::invalid(
                "self",
                "this end of a one-way Pipe only sends",
            ));
        }
        let deadline = timeout.map(|t| Instant::now().checked_add(t));
        let mut half = self.use_half(
            &self.reader,
            deadline.flatten(),
            timeout.unwrap_or_default(),
        )?;
        if half.broken {
            return Err(Error::Io(io::Error::other(
                "an earlier receive timed out in the middle of a message; this connection can \
                 no longer receive",
            )));
        }
        if let Some(deadline) = deadline {
            let t = timeout.unwrap_or_default();
            if !half.frames.has_buffered()
                && !poll_readable(half.frames.get_ref().as_fd(), deadline)?
            {
                return Err(Error::Timeout(t));
            }
            // Every read of the message gives up at the deadline, not each one after the
            // whole timeout.
            half.frames.set_deadline(deadline)?;
        }
        let half = &mut *half;
        let r = half.frames.recv(&mut half.payload);
        if deadline.is_some() {
            half.frames.set_deadline(None)?;
        }
        match r {
            Ok(Some((header, fds))) => {
                if header.kind != Kind::Message {
                    half.broken = true;
                    return Err(Error::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a frame of kind {:?} arrived on a Pipe", header.kind),
                    )));
                }
                decode(&half.payload, fds)
            }
            Ok(None) => Err(Error::PipeClosed),
            Err(e) if is_timeout(&e) => {
                half.broken = true;
                Err(Error::Timeout(timeout.unwrap_or_default()))
            }
            Err(e) if peer_closed(&e) => Err(Error::PipeClosed),
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// Whether a message (or the end of file) is ready to be received, waiting up to
    /// `timeout` for one (Python's `poll(timeout)`; `Duration::ZERO` does not wait).
    pub fn poll(&self, timeout: Duration) -> Result<bool> {
        if !self.readable {
            return Err(Error::invalid(
                "self",
                "this end of a one-way Pipe only sends",
            ));
        }
        let deadline = Instant::now().checked_add(timeout);
        // Another thread receiving past the deadline: nothing for this caller in time.
        let half = match self.use_half(&self.reader, deadline, timeout) {
            Err(Error::Timeout(_)) => return Ok(false),
            other => other?,
        };
        if half.frames.has_buffered() {
            return Ok(true);
        }
        poll_readable(half.frames.get_ref().as_fd(), deadline)
    }

    /// The socket, for a caller's own `poll`/`select` (Python's `fileno`).
    pub fn fileno(&self) -> Result<i32> {
        if self.closing.load(SeqCst) {
            return Err(handle_closed());
        }
        Ok(self.fd)
    }
}

/// Waits until `fd` is readable (or at its end) or `deadline` passes.
fn poll_readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<bool> {
    loop {
        let ms = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up, so that a sub-millisecond wait does not become a busy loop.
                let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, ms) {
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(false);
                }
            }
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::Io(e.into())),
        }
    }
}

#[cfg(test)]
mod tests;
