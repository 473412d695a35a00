//! The wire protocol between a pool and its workers: length-prefixed frames over a Unix
//! stream socket. The header is fixed-size and hand-encoded (little-endian); the payload is
//! the codec's encoding of the chunk's arguments or results (see `crate::codec`).
//!
//! ```text
//! frame := len:u64  kind:u8  id:u64  call:u64  nfds:u32  payload[len]
//! ```
//!
//! A *bulk* frame (the high bit of `kind` set) carries no payload bytes on the socket: its
//! `len` bytes are in a shared-memory buffer whose memfd is the frame's last descriptor (see
//! the crate's internal `bulk` module). Only the pool's own workers accept one: the public
//! [`FrameReader::recv`] refuses it.
//!
//! `call` is the task's trampoline as an offset into this binary (see [`crate::trampoline`]).
//! `nfds` file descriptors (shared arrays, locks, queues in the arguments or results — see
//! [`multiproc_core::handoff`]) travel beside the frame as `SCM_RIGHTS`; [`FrameWriter`] and
//! [`FrameReader`] keep the two together. The crate's bounded wait for a frame to begin
//! (`readable_by`, a `poll` with a deadline) is here too: the supervisors' watchers and their
//! looks at a reply journal use it.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use multiproc_core::handoff::MAX_FDS;
use multiproc_sys::socket::{recv_into_spare, recv_with_fds};

use crate::bulk::{BulkBuf, BulkMaps, BulkView};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{send, sendmsg, ControlMessage, MsgFlags};

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Parent → worker: run trampoline `call` on `payload`.
    Task = 1,
    /// Parent → worker: finish and exit.
    Shutdown = 2,
    /// Worker → parent: the results of task `id`; `call` holds flags
    /// ([`REPLY_KEPT_ARGUMENTS`]).
    Done = 3,
    /// Worker → parent: task `id` panicked; the payload is the message (UTF-8).
    Panicked = 4,
    /// Worker → parent: task `id` failed to decode or encode; the payload is the message.
    Failed = 5,
    /// Parent → worker: run initializer `call` on `payload` once, before any task.
    Init = 6,
    /// A message of another user of this framing (a `Pipe`).
    Message = 7,
    /// Parent → worker: the bulk reply to task `id` is decoded, and no value read there is
    /// left; the worker may write its buffer again, or, with [`RELEASE_DROP`] in `call`, must
    /// drop it (see the crate's internal `bulk` module).
    Release = 8,
    /// Parent → worker, first in every session when the pool has settings for the worker
    /// process: `call` is how many bytes of freed memory its allocator keeps for later tasks
    /// (the pool's `retain_freed_memory`); `id` holds flags ([`SETUP_JOURNAL`]).
    Setup = 9,
    /// Worker → parent: the replies in the worker's reply journal up to byte `call` are
    /// written; the first such frame carries the journal's memfd (see the crate's internal
    /// `journal` module).
    Journal = 10,
    /// Parent → worker: the pool has read the reply journal up to byte `call`; the worker may
    /// write over what lies before.
    Drained = 11,
}

/// A flag of a [`Kind::Setup`] frame's `id`: the worker may put small replies in a reply
/// journal and announce them in batches ([`Kind::Journal`]).
pub const SETUP_JOURNAL: u64 = 1;

/// A flag of a [`Kind::Setup`] frame's `id`: the worker keeps a mapping of one argument
/// buffer at most (the pool watches its memory, in which kept mappings count).
pub const SETUP_ONE_MAP: u64 = 2;

/// A flag of a [`Kind::Release`] frame's `call`: values read in the buffer may still be
/// alive (in a process the parent forked while they were lent): the worker drops the buffer
/// instead of writing it again.
pub const RELEASE_DROP: u64 = 1;

/// A flag of a reply's `call` ([`Kind::Done`], [`Kind::Panicked`], [`Kind::Failed`]): the
/// task's arguments arrived in a bulk buffer that values decoded from them still read (they
/// outlived the task, or the worker forked meanwhile: see the crate's internal `bulk`
/// module's `Loan`). The pool must never write that buffer again: it drops it.
pub const REPLY_KEPT_ARGUMENTS: u64 = 1;

impl Kind {
    fn from_u8(b: u8) -> io::Result<Kind> {
        Ok(match b {
            1 => Kind::Task,
            2 => Kind::Shutdown,
            3 => Kind::Done,
            4 => Kind::Panicked,
            5 => Kind::Failed,
            6 => Kind::Init,
            7 => Kind::Message,
            8 => Kind::Release,
            9 => Kind::Setup,
            10 => Kind::Journal,
            11 => Kind::Drained,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown frame kind {b}"),
                ))
            }
        })
    }
}

const HEADER: usize = 8 + 1 + 8 + 8 + 4;

/// The bit of the kind byte that marks a bulk frame.
const BULK: u8 = 0x80;

/// Payloads at least this large bypass the writer's buffer and the reader's.
const BUFFER: usize = 64 * 1024;

/// The reader's buffer at first: one page, which it doubles up to [`BUFFER`] while its reads
/// fill it. Zeroing all of `BUFFER` at once was a quarter of a fork pool's start-up: after a
/// fork each of its 16 pages is a copy-on-write fault, on both sides.
const FIRST_BUFFER: usize = 4096;

/// A frame's fixed fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the frame carries.
    pub kind: Kind,
    /// The task id the frame belongs to.
    pub id: u64,
    /// The trampoline offset (tasks only; 0 otherwise).
    pub call: u64,
}

fn encode_header(header: Header, len: usize, fds: usize, bulk: bool) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(&(len as u64).to_le_bytes());
    h[8] = header.kind as u8 | if bulk { BULK } else { 0 };
    h[9..17].copy_from_slice(&header.id.to_le_bytes());
    h[17..25].copy_from_slice(&header.call.to_le_bytes());
    h[25..29].copy_from_slice(&(fds as u32).to_le_bytes());
    h
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Writes frames to a Unix stream socket, buffering small ones until [`flush`](Self::flush).
///
/// A frame's file descriptors travel as `SCM_RIGHTS` ancillary data on the first byte of its
/// header, so they arrive together with the frame they belong to. Writes use `MSG_NOSIGNAL`: a
/// peer that is gone is an `Err`, never a `SIGPIPE`.
#[derive(Debug)]
pub struct FrameWriter {
    sock: UnixStream,
    buf: Vec<u8>,
    /// Bytes written to the socket so far.
    written: u64,
    /// When writes give up ([`set_deadline`](Self::set_deadline)).
    deadline: Option<Instant>,
}

impl FrameWriter {
    /// Writes frames to `sock`.
    pub fn new(sock: UnixStream) -> Self {
        FrameWriter {
            sock,
            buf: Vec::with_capacity(BUFFER),
            written: 0,
            deadline: None,
        }
    }

    /// Makes every later write give up at `deadline` (an error of kind `TimedOut` or
    /// `WouldBlock`): before each system call the socket's send timeout is set to what is
    /// left of it, so a peer that reads slowly cannot stretch a frame past it. `None` waits
    /// again for as long as the peer takes (and clears the socket's send timeout).
    pub fn set_deadline(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        self.deadline = deadline;
        if deadline.is_none() {
            self.sock.set_write_timeout(None)?;
        }
        Ok(())
    }

    /// The socket.
    pub fn get_ref(&self) -> &UnixStream {
        &self.sock
    }

    /// Bytes written to the socket so far: unchanged across a failed write means that no byte
    /// of it went out (what was buffered is dropped on failure), so the stream is still whole.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Queues one frame carrying `payload` and `fds` (at most
    /// [`MAX_FDS`]). Small frames without descriptors wait in
    /// the buffer for [`flush`](Self::flush); a frame with descriptors, or a large payload,
    /// flushes what came before it and is written at once.
    pub fn send(&mut self, header: Header, payload: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        self.send_frame(header, payload.len(), payload, &raw, false)
    }

    /// Queues one bulk frame: its body is the contents of `body`, which the receiver maps
    /// (the memfd travels as the frame's last descriptor, after `fds`); only the header
    /// crosses the socket. The caller must not write `body` again before the receiver has
    /// answered this frame (see [`crate::bulk`]). `fds` may hold at most
    /// [`MAX_FDS`](multiproc_core::handoff::MAX_FDS)` - 1` descriptors.
    pub(crate) fn send_bulk(
        &mut self,
        header: Header,
        body: &BulkBuf,
        fds: &[OwnedFd],
    ) -> io::Result<()> {
        let mut raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        raw.push(body.fd().as_raw_fd());
        self.send_frame(header, body.len(), &[], &raw, true)
    }

    fn send_frame(
        &mut self,
        header: Header,
        len: usize,
        payload: &[u8],
        fds: &[RawFd],
        bulk: bool,
    ) -> io::Result<()> {
        if fds.len() > MAX_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a frame carries at most {MAX_FDS} file descriptors, not {}",
                    fds.len()
                ),
            ));
        }
        let h = encode_header(header, len, fds.len(), bulk);
        if fds.is_empty() {
            self.buf.extend_from_slice(&h);
        } else {
            self.flush()?;
            let rights = [ControlMessage::ScmRights(fds)];
            let sent = loop {
                arm(self.deadline, |t| self.sock.set_write_timeout(t))?;
                match sendmsg::<()>(
                    self.sock.as_raw_fd(),
                    &[IoSlice::new(&h)],
                    &rights,
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                ) {
                    Ok(n) => break n,
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            self.written += sent as u64;
            // The descriptors went with the first byte; the rest of a short write follows.
            send_all(&self.sock, &h[sent..], &mut self.written, self.deadline)?;
        }
        if payload.len() >= BUFFER {
            self.flush()?;
            send_all(&self.sock, payload, &mut self.written, self.deadline)
        } else {
            self.buf.extend_from_slice(payload);
            if self.buf.len() >= BUFFER {
                self.flush()?;
            }
            Ok(())
        }
    }

    /// Writes everything buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        let result = send_all(&self.sock, &self.buf, &mut self.written, self.deadline);
        self.buf.clear();
        result
    }
}

/// Writes all of `bytes`, counting what went out in `written`, giving up at `deadline`.
fn send_all(
    sock: &UnixStream,
    mut bytes: &[u8],
    written: &mut u64,
    deadline: Option<Instant>,
) -> io::Result<()> {
    while !bytes.is_empty() {
        arm(deadline, |t| sock.set_write_timeout(t))?;
        match send(sock.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *written += n as u64;
                bytes = &bytes[n..];
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Before a blocking call on a socket that must give up at `deadline`: its timeout (set by
/// `set`, the send or the receive one) becomes what is left, and once the deadline has
/// passed, the least the kernel waits (a call whose bytes are ready still goes through: a
/// read that takes nothing must not break the stream). Nothing without a deadline.
fn arm(
    deadline: Option<Instant>,
    set: impl FnOnce(Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    let Some(deadline) = deadline else {
        return Ok(());
    };
    let left = deadline.saturating_duration_since(Instant::now());
    // Never zero, which would mean no timeout at all.
    set(Some(left.max(Duration::from_micros(1))))
}

/// Reads frames from a Unix stream socket, with the file descriptors that came with them.
///
/// Every read is a `recvmsg` with room for descriptors (received close-on-exec), so none is
/// ever dropped by the kernel for lack of space; they queue up and each frame takes the number
/// its header announces.
pub struct FrameReader {
    sock: UnixStream,
    buf: Box<[u8]>,
    /// The last read filled `buf`: the next one gets twice the room (up to [`BUFFER`]).
    grow: bool,
    start: usize,
    end: usize,
    fds: VecDeque<OwnedFd>,
    /// A read failed after taking bytes of the stream: where frames begin is unknown from
    /// there on, so every later read fails with an error of this kind instead of taking the
    /// middle of a frame for a header.
    broken: Option<io::ErrorKind>,
    /// When reads give up ([`set_deadline`](Self::set_deadline)).
    deadline: Option<Instant>,
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("sock", &self.sock)
            .field("buffered", &(self.end - self.start))
            .field("fds", &self.fds.len())
            .finish()
    }
}

impl FrameReader {
    /// Reads frames from `sock`.
    pub fn new(sock: UnixStream) -> Self {
        FrameReader {
            sock,
            buf: vec![0u8; FIRST_BUFFER].into_boxed_slice(),
            grow: false,
            start: 0,
            end: 0,
            fds: VecDeque::new(),
            broken: None,
            deadline: None,
        }
    }

    /// Makes every later read give up at `deadline` (an error of kind `TimedOut` or
    /// `WouldBlock`, after which the reader is broken if the frame had begun): before each
    /// system call the socket's receive timeout is set to what is left of it, so a peer that
    /// trickles a frame in cannot stretch the read past it. `None` waits again for as long as
    /// the peer takes (and clears the socket's receive timeout).
    pub fn set_deadline(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        self.deadline = deadline;
        if deadline.is_none() {
            self.sock.set_read_timeout(None)?;
        }
        Ok(())
    }

    /// The socket (for `poll`, timeouts, or a second handle).
    pub fn get_ref(&self) -> &UnixStream {
        &self.sock
    }

    /// Whether bytes of a next frame are already buffered (so `poll` on the socket would
    /// under-report).
    pub fn has_buffered(&self) -> bool {
        self.end > self.start
    }

    /// Whether a read failed part-way, leaving the stream at an unknown place: every later
    /// read fails, and the socket must not be handed on to a reader that would trust it.
    pub fn failed(&self) -> bool {
        self.broken.is_some()
    }

    /// Whether a next frame has begun to arrive: bytes are buffered, or a read that does not
    /// wait finds some in the socket (or its end), which it buffers.
    pub fn ready(&mut self) -> io::Result<bool> {
        self.check()?;
        if self.has_buffered() {
            return Ok(true);
        }
        match self.fill(MsgFlags::MSG_DONTWAIT) {
            Ok(_) => Ok(true),
            // Nothing was there, nothing was taken.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(self.break_on(e)),
        }
    }

    /// `Err` if an earlier read left the stream at an unknown place.
    fn check(&self) -> io::Result<()> {
        match self.broken {
            None => Ok(()),
            Some(kind) => Err(io::Error::new(
                kind,
                "an earlier read of this connection failed part-way, so where its frames begin \
                 is unknown: it can no longer be read",
            )),
        }
    }

    /// Marks the reader broken by `e` (see `broken`) and returns `e`.
    fn break_on(&mut self, e: io::Error) -> io::Error {
        self.broken.get_or_insert(e.kind());
        self.fds.clear();
        e
    }

    /// Reads one frame into `payload` (reusing its allocation) and returns its header and
    /// descriptors. `Ok(None)` on a clean end of stream before a frame starts. A bulk frame
    /// is an error here: only a pool's worker, which trusts its peer, maps those.
    pub fn recv(&mut self, payload: &mut Vec<u8>) -> io::Result<Option<(Header, Vec<OwnedFd>)>> {
        match self.recv_frame(payload)? {
            None => Ok(None),
            Some((header, fds, None)) => Ok(Some((header, fds))),
            Some((_, _, Some(_))) => Err(invalid(
                "a bulk frame arrived on a connection that does not accept them",
            )),
        }
    }

    /// Like [`recv`](Self::recv), and also accepts bulk frames: their body is not copied into
    /// `payload` but mapped through `maps`, and returned as the [`BulkView`] (`payload` is
    /// then empty; the memfd is not among the returned descriptors). A body in a buffer an
    /// earlier one came in is read through the mapping `maps` kept; the view borrows `maps`
    /// until it is dropped.
    ///
    /// # Safety
    ///
    /// The peer must follow the bulk protocol: it does not write or shrink a bulk frame's
    /// buffer until this process has answered the frame, and the view is dropped before that
    /// answer (the contract of [`BulkView::map`]). The pool and its workers do.
    #[allow(clippy::type_complexity)]
    pub(crate) unsafe fn recv_with_maps<'m>(
        &mut self,
        payload: &mut Vec<u8>,
        maps: &'m mut BulkMaps,
    ) -> io::Result<Option<(Header, Vec<OwnedFd>, Option<BulkView<'m>>)>> {
        let Some((header, fds, bulk)) = self.recv_frame(payload)? else {
            return Ok(None);
        };
        let view = match bulk {
            // SAFETY: the caller vouches for the peer (this function's contract).
            Some((memfd, len)) => Some(unsafe { maps.view(memfd, len) }?),
            None => None,
        };
        Ok(Some((header, fds, view)))
    }

    /// [`recv_with_maps`](Self::recv_with_maps), each bulk body in a mapping of its own view:
    /// for tests that hold several views at once.
    ///
    /// # Safety
    ///
    /// As [`recv_with_maps`](Self::recv_with_maps).
    #[cfg(test)]
    #[allow(clippy::type_complexity)]
    pub(crate) unsafe fn recv_with_bulk(
        &mut self,
        payload: &mut Vec<u8>,
    ) -> io::Result<Option<(Header, Vec<OwnedFd>, Option<BulkView<'static>>)>> {
        let Some((header, fds, bulk)) = self.recv_frame(payload)? else {
            return Ok(None);
        };
        let view = match bulk {
            // SAFETY: the caller vouches for the peer (this function's contract).
            Some((memfd, len)) => Some(unsafe { BulkView::map(memfd, len) }?),
            None => None,
        };
        Ok(Some((header, fds, view)))
    }

    /// Reads one frame; a bulk frame's memfd and length come back unmapped. After a failed
    /// read every later one fails (see `broken`).
    #[allow(clippy::type_complexity)]
    fn recv_frame(
        &mut self,
        payload: &mut Vec<u8>,
    ) -> io::Result<Option<(Header, Vec<OwnedFd>, Option<(OwnedFd, usize)>)>> {
        self.check()?;
        self.read_frame(payload).map_err(|e| self.break_on(e))
    }

    /// [`recv_frame`](Self::recv_frame) without the check.
    #[allow(clippy::type_complexity)]
    fn read_frame(
        &mut self,
        payload: &mut Vec<u8>,
    ) -> io::Result<Option<(Header, Vec<OwnedFd>, Option<(OwnedFd, usize)>)>> {
        let mut h = [0u8; HEADER];
        let mut got = 0;
        while got < HEADER {
            if self.start == self.end && self.fill(MsgFlags::empty())? == 0 {
                if got == 0 {
                    return Ok(None);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let n = (HEADER - got).min(self.end - self.start);
            h[got..got + n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.start += n;
            got += n;
        }
        let len = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
        let len = usize::try_from(len).map_err(|_| invalid("frame too large"))?;
        let bulk = h[8] & BULK != 0;
        let header = Header {
            kind: Kind::from_u8(h[8] & !BULK)?,
            id: u64::from_le_bytes(h[9..17].try_into().expect("8 bytes")),
            call: u64::from_le_bytes(h[17..25].try_into().expect("8 bytes")),
        };
        let nfds = u32::from_le_bytes(h[25..29].try_into().expect("4 bytes")) as usize;
        if nfds > self.fds.len() {
            return Err(invalid(format!(
                "the frame announces {nfds} file descriptors but {} arrived",
                self.fds.len()
            )));
        }
        let mut fds: Vec<OwnedFd> = self.fds.drain(..nfds).collect();
        payload.clear();
        if bulk {
            let memfd = fds
                .pop()
                .ok_or_else(|| invalid("a bulk frame without its buffer's descriptor"))?;
            return Ok(Some((header, fds, Some((memfd, len)))));
        }
        payload.try_reserve_exact(len).map_err(|_| {
            io::Error::new(io::ErrorKind::OutOfMemory, format!("frame of {len} bytes"))
        })?;
        let buffered = len.min(self.end - self.start);
        payload.extend_from_slice(&self.buf[self.start..self.start + buffered]);
        self.start += buffered;
        while payload.len() < len {
            let remaining = len - payload.len();
            let n = if remaining >= BUFFER / 2 {
                // Large remainders go straight into the payload, not through the buffer.
                self.recv_body(payload, remaining)?
            } else if self.fill(MsgFlags::empty())? == 0 {
                0
            } else {
                let n = remaining.min(self.end - self.start);
                payload.extend_from_slice(&self.buf[self.start..self.start + n]);
                self.start += n;
                n
            };
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(Some((header, fds, None)))
    }

    /// Receives up to `max` bytes of a frame's body straight into `payload`'s spare capacity
    /// (reserved by the caller), without zero-filling it first. A body carries no descriptors
    /// (they travel with the header), so a plain `recv` is enough.
    fn recv_body(&mut self, payload: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        arm(self.deadline, |t| self.sock.set_read_timeout(t))?;
        recv_into_spare(self.sock.as_fd(), payload, max)
    }

    /// Refills the (drained) buffer with one read (`flags` added to its own); returns the
    /// bytes read, 0 at the end of the stream.
    fn fill(&mut self, flags: MsgFlags) -> io::Result<usize> {
        debug_assert_eq!(self.start, self.end);
        self.start = 0;
        self.end = 0;
        if self.grow {
            self.buf = vec![0u8; (2 * self.buf.len()).min(BUFFER)].into_boxed_slice();
        }
        let mut buf = std::mem::take(&mut self.buf);
        let n = self.recv_into_direct(&mut buf, flags);
        self.buf = buf;
        let n = n?;
        self.grow = n == self.buf.len() && n < BUFFER;
        self.end = n;
        Ok(n)
    }

    /// One `recvmsg` into `dst`; descriptors that came with it join the queue. Descriptors
    /// the kernel cut short (out of descriptor numbers here) are an error, and those that did
    /// arrive are closed with it.
    fn recv_into_direct(&mut self, dst: &mut [u8], flags: MsgFlags) -> io::Result<usize> {
        arm(self.deadline, |t| self.sock.set_read_timeout(t))?;
        let got = recv_with_fds(self.sock.as_fd(), dst, MAX_FDS, flags)?;
        if got.fds_truncated {
            return Err(invalid(format!(
                "file descriptors were cut short in transit ({} arrived; is this process out \
                 of descriptors?)",
                got.fds.len()
            )));
        }
        self.fds.extend(got.fds);
        Ok(got.bytes)
    }
}

/// Waits until `stream` has something to read (or has ended) or `deadline` passes; returns
/// whether it became readable.
pub(crate) fn readable_by(stream: &UnixStream, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        // Rounded up to a whole millisecond: never wake before the deadline.
        let ms = u16::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return true,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            // Let the read report the problem.
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests;
