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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use multiproc_core::handoff::{collect_fds, provide_fds};
use multiproc_core::{Error, Result};
use multiproc_process::wire::{FrameReader, FrameWriter, Header, Kind};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;

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
/// [`send`](Self::send) and [`recv`](Self::recv) move serde values (postcard-encoded), and
/// values that own file descriptors too: a shared array, a process-shared lock, a
/// [`Queue`](crate::Queue) or another `Connection` travels as descriptors (`SCM_RIGHTS`)
/// beside its bytes, through [`multiproc_core::handoff`]. Methods take `&self`:
/// one thread may send while another receives; sends (and receives) from several threads
/// are serialised, each message whole.
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
/// [`recv_timeout`](Self::recv_timeout), [`send_timeout`](Self::send_timeout) and
/// [`poll`](Self::poll) bound every wait. A timeout that strikes in the *middle* of a
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
    reader: Mutex<Option<ReadHalf>>,
    writer: Mutex<Option<WriteHalf>>,
    readable: bool,
    writable: bool,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a half-written frame that we would then
    // misread: `broken` is set before any partial I/O is reported. So the data is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
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

/// A socket timeout for `remaining` (never zero, which would mean "none").
fn socket_timeout(remaining: Duration) -> Option<Duration> {
    Some(remaining.max(Duration::from_micros(100)))
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
            reader: Mutex::new(Some(ReadHalf {
                frames: FrameReader::new(read_sock),
                payload: Vec::new(),
                broken: false,
            })),
            writer: Mutex::new(Some(WriteHalf {
                frames: FrameWriter::new(sock),
                broken: false,
            })),
            readable,
            writable,
        })
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
        lock(&self.writer).is_none()
    }

    /// Closes this end (Python's `close`); dropping it does the same. The other end then
    /// reads to its end of file, once every copy of this end (in forked children, or sent
    /// away) is closed too.
    pub fn close(&self) {
        *lock(&self.writer) = None;
        *lock(&self.reader) = None;
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
        let mut guard = lock(&self.writer);
        let half = guard.as_mut().ok_or_else(handle_closed)?;
        if half.broken {
            return Err(Error::Io(io::Error::other(
                "an earlier send timed out in the middle of a message; this connection can no \
                 longer send",
            )));
        }
        let sock = half.frames.get_ref();
        if let Some(t) = timeout {
            sock.set_write_timeout(socket_timeout(t))?;
        }
        let mut r = half.frames.send(MESSAGE, bytes, fds);
        if r.is_ok() {
            r = half.frames.flush();
        }
        if timeout.is_some() {
            half.frames.get_ref().set_write_timeout(None)?;
        }
        match r {
            Ok(()) => Ok(()),
            Err(e) if is_timeout(&e) => {
                half.broken = true;
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
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        self.recv_until(None)
    }

    /// Like [`recv`](Self::recv), but gives up after `timeout` with [`Error::Timeout`].
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
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

    fn recv_until<T: DeserializeOwned>(&self, timeout: Option<Duration>) -> Result<T> {
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
        let mut guard = lock(&self.reader);
        let half = guard.as_mut().ok_or_else(handle_closed)?;
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
            let remaining = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            half.frames
                .get_ref()
                .set_read_timeout(socket_timeout(remaining))?;
        }
        let r = half.frames.recv(&mut half.payload);
        if deadline.is_some() {
            half.frames.get_ref().set_read_timeout(None)?;
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
        let guard = lock(&self.reader);
        let half = guard.as_ref().ok_or_else(handle_closed)?;
        if half.frames.has_buffered() {
            return Ok(true);
        }
        poll_readable(half.frames.get_ref().as_fd(), deadline)
    }

    /// The socket, for a caller's own `poll`/`select` (Python's `fileno`).
    pub fn fileno(&self) -> Result<i32> {
        let guard = lock(&self.writer);
        Ok(guard
            .as_ref()
            .ok_or_else(handle_closed)?
            .frames
            .get_ref()
            .as_raw_fd())
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

/// What a `Connection` is on the wire: its direction and its socket, which travels as a
/// descriptor (see [`multiproc_core::handoff`]).
#[derive(Serialize)]
struct WireRef<'a> {
    readable: bool,
    writable: bool,
    #[serde(serialize_with = "multiproc_core::handoff::fd::serialize")]
    sock: BorrowedFd<'a>,
}

#[derive(Deserialize)]
struct WireOwned {
    readable: bool,
    writable: bool,
    #[serde(deserialize_with = "multiproc_core::handoff::fd::deserialize")]
    sock: OwnedFd,
}

/// A `Connection` serializes as its socket's descriptor, so it can be sent over another
/// `Connection` or passed to a spawned process (encoding outside
/// [`collect_fds`] is an error). The sender keeps its end open: both processes then hold the
/// same end, as after Python pickles a `Connection`. An end that has received bytes not yet
/// read, or is closed, refuses to serialize.
impl Serialize for Connection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if !multiproc_core::handoff::collecting() {
            return Err(codec::custom(
                "a Connection owns a file descriptor: it can only be sent over a Pipe or passed \
                 to a process by multiproc, not serialized to bytes alone"
                    .into(),
            ));
        }
        let reader = lock(&self.reader);
        let writer = lock(&self.writer);
        let (Some(r), Some(w)) = (reader.as_ref(), writer.as_ref()) else {
            return Err(codec::custom("a closed Connection cannot be sent".into()));
        };
        if r.frames.has_buffered() || r.broken || w.broken {
            return Err(codec::custom(
                "this Connection has received bytes it has not handed out yet (or a timeout \
                 broke it); only a Connection with nothing pending can be sent"
                    .into(),
            ));
        }
        WireRef {
            readable: self.readable,
            writable: self.writable,
            sock: w.frames.get_ref().as_fd(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = WireOwned::deserialize(d)?;
        let sock = UnixStream::from(w.sock);
        Connection::from_stream(sock, w.readable, w.writable)
            .map_err(|e| codec::custom_de(format!("cannot attach a received Connection: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_way_ends_refuse_the_other_direction() {
        let (r, w) = pipe(false).unwrap();
        assert!(
            (r.readable(), r.writable(), w.readable(), w.writable()) == (true, false, false, true)
        );
        assert!(matches!(
            r.send(&1u8),
            Err(Error::InvalidArgument { name: "self", .. })
        ));
        assert!(matches!(
            w.recv::<u8>(),
            Err(Error::InvalidArgument { name: "self", .. })
        ));
        assert!(w.poll(Duration::ZERO).is_err());
        w.send(&5u8).unwrap();
        assert_eq!(r.recv::<u8>().unwrap(), 5);
    }

    #[test]
    fn closed_ends_say_so() {
        let (a, b) = pipe(true).unwrap();
        a.close();
        assert!(a.closed());
        for e in [a.send(&1u8).unwrap_err(), a.recv::<u8>().unwrap_err()] {
            assert!(
                matches!(e, Error::Io(ref io) if io.kind() == io::ErrorKind::NotConnected),
                "{e}"
            );
        }
        let e = b.recv::<u8>().unwrap_err();
        assert!(matches!(e, Error::PipeClosed), "recv: {e:?}");
        assert!(
            b.poll(Duration::ZERO).unwrap(),
            "end of file counts as ready"
        );
        let e = b.send(&1u8).unwrap_err();
        assert!(matches!(e, Error::PipeClosed), "send: {e:?}");
        assert!(crate::is_closed(&e));
    }

    #[test]
    fn a_peer_that_closes_with_messages_unread_is_pipe_closed_both_ways() {
        // Linux resets the connection when an end closes with bytes unread
        // (ECONNRESET on the survivor's next call), which is the same event for the survivor.
        let (a, b) = pipe(true).unwrap();
        a.send(&1u8).unwrap();
        drop(b);
        let e = a.recv::<u8>().unwrap_err();
        assert!(matches!(e, Error::PipeClosed), "recv: {e:?}");
        let e = a.send(&2u8).unwrap_err();
        assert!(matches!(e, Error::PipeClosed), "send: {e:?}");
    }

    #[test]
    fn a_peer_that_ends_in_the_middle_of_a_message_is_pipe_closed() {
        use std::io::Write;
        let (raw, sock) = UnixStream::pair().unwrap();
        let conn = Connection::from_stream(sock, true, true).unwrap();
        // A frame header announcing 100 payload bytes, then 10 of them, then the end.
        let mut frame = Vec::new();
        frame.extend_from_slice(&100u64.to_le_bytes());
        frame.push(Kind::Message as u8);
        frame.extend_from_slice(&[0u8; 8 + 8 + 4]);
        frame.extend_from_slice(&[1u8; 10]);
        (&raw).write_all(&frame).unwrap();
        drop(raw);
        let e = conn.recv::<Vec<u8>>().unwrap_err();
        assert!(matches!(e, Error::PipeClosed), "{e:?}");
    }

    #[test]
    fn a_wrong_type_is_a_serialization_error_and_the_stream_goes_on() {
        let (a, b) = pipe(true).unwrap();
        a.send(&"text").unwrap();
        a.send(&7u32).unwrap();
        assert!(matches!(b.recv::<Vec<f64>>(), Err(Error::Serialization(_))));
        assert_eq!(b.recv::<u32>().unwrap(), 7);
        a.send_bytes(b"raw").unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"raw");
    }

    #[test]
    fn outside_a_transport_a_connection_does_not_serialize() {
        let (a, _b) = pipe(true).unwrap();
        let e = codec::encode_into(&a, Vec::new()).unwrap_err();
        assert!(e.to_string().contains("file descriptor"), "{e}");
    }
    #[test]
    fn a_timeout_in_the_middle_of_a_message_breaks_that_direction_only() {
        use std::io::Write;
        let (raw, sock) = UnixStream::pair().unwrap();
        let conn = Connection::from_stream(sock, true, true).unwrap();
        // A frame header announcing 100 payload bytes (len, kind Message, id, call, nfds),
        // followed by only 10 of them.
        let mut frame = Vec::new();
        frame.extend_from_slice(&100u64.to_le_bytes());
        frame.push(Kind::Message as u8);
        frame.extend_from_slice(&[0u8; 8 + 8 + 4]);
        frame.extend_from_slice(&[1u8; 10]);
        (&raw).write_all(&frame).unwrap();
        let t = Instant::now();
        assert!(matches!(
            conn.recv_timeout::<Vec<u8>>(Duration::from_millis(50)),
            Err(Error::Timeout(_))
        ));
        assert!(t.elapsed() < Duration::from_secs(5));
        let e = conn.recv::<Vec<u8>>().unwrap_err();
        assert!(e.to_string().contains("no longer receive"), "{e}");
        // Sending still works.
        conn.send(&1u8).unwrap();
    }

    #[test]
    fn a_send_that_cannot_finish_times_out() {
        let (a, _b) = pipe(true).unwrap();
        let big = vec![7u8; 8 << 20]; // far more than a socket buffer; nobody reads
        let t = Instant::now();
        assert!(matches!(
            a.send_timeout(&big, Duration::from_millis(100)),
            Err(Error::Timeout(_))
        ));
        assert!(t.elapsed() < Duration::from_secs(5));
        let e = a.send(&1u8).unwrap_err();
        assert!(e.to_string().contains("no longer send"), "{e}");
        assert!(a.poll(Duration::ZERO).is_ok(), "receiving is unaffected");
    }
}
