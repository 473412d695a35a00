//! The reply journal: a worker's small replies, written into shared memory and announced to
//! its pool in batches.
//!
//! Why: with one reply frame per task, a `map` of trivial tasks costs a `send` in the worker
//! and a wake-up of its supervisor per task, and spends three quarters of its time in the
//! kernel. A reply cannot simply wait in the worker's own buffer for the next ones: if the
//! next task kills the process, the replies buffered before it die with it, and the pool would
//! blame (and run again) tasks that had finished. Written into the journal, they outlive the
//! process: the supervisor reads them after the worker's end, before it blames the oldest task
//! left unanswered.
//!
//! How:
//!
//! - The journal is a [`BulkBuf`] of the worker's (a sealed memfd only the worker can write):
//!   a header whose first word is the *tail* — how many bytes of records were ever written,
//!   stored with `Release` after each record — and then a ring of [`RING`] bytes.
//! - A record is 16 bytes — its body's length (`u32`), its [`Kind`] (`u8`), 3 bytes of
//!   padding, the task id (`u64`) — then the body, padded to 8 bytes. A reply goes in only
//!   when it is a plain one (no descriptors, not bulk) of at most [`MAX_BODY`] bytes, the
//!   worker has its next frame at hand, the task ran less than [`SLOW`], and the ring has
//!   room; any other reply goes through the socket as before.
//! - The worker sends the memfd in a [`Kind::Journal`] frame as soon as it makes the journal
//!   (announcing a tail of 0), and announces its records with more such frames, whose `call`
//!   is the tail: before any reply it sends through the socket, so that the supervisor reads
//!   the replies in their order; before it waits for input; and after [`ANNOUNCE_EVERY`]
//!   records, so that its supervisor tops its pipeline up in time.
//! - The supervisor reads the records up to the last announced tail, one reply each. When
//!   the stream ends or breaks, it reads the tail word itself, delivers everything up to it,
//!   and reads and sends nothing more. While it waits for its worker with tasks out, it looks
//!   at the tail word after [`LOOK_FIRST`] without a frame (then after twice as long, up to
//!   [`LOOK_MAX`]): a fast task's reply written before a long next task reaches the caller
//!   then, not after the long task. It may take records the worker has not announced only
//!   when no frame has arrived: any frame sent later was sent after those records were
//!   written, so none overtakes them.
//! - A supervisor that kills its worker because the head task was cancelled records it
//!   (`killed_for`), as `cancel` does: the worker may have moved on to another task, whose
//!   reply was still to come; that task is then requeued, not failed.
//! - The supervisor tells the worker how far it has read with a [`Kind::Drained`] frame,
//!   queued with its next tasks; the worker writes over records only below that point.
//! - The pool allows the journal in its [`Kind::Setup`] frame
//!   ([`SETUP_JOURNAL`](crate::wire::SETUP_JOURNAL)), and not with `task_timeout` or
//!   `memory_limit` (their watchers must know at once which task a worker runs), nor on
//!   32-bit targets ([`ALLOWED`]). A head whose reply is already the next record is not
//!   killed for a cancel: it has finished.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::bulk::{map_sealed, BulkBuf, Mapping};
use crate::wire::{readable_by, FrameReader, FrameWriter, Header, Kind};

/// Whether pools use journals on this target: the pool loads the tail word from a read-only
/// mapping, which Rust allows for atomics no wider than a pointer.
pub(crate) const ALLOWED: bool = cfg!(target_pointer_width = "64");

/// The ring's size in bytes (a power of two).
const RING: usize = 64 * 1024;
/// The header before the ring: the tail word, alone on its cache line.
const HEAD: usize = 64;
/// A record's fixed part.
const RECORD: usize = 16;
/// The largest reply body that goes in the journal.
pub(crate) const MAX_BODY: usize = RING / 8;
/// The worker announces its records at the latest once this many are unannounced: half of
/// the pool's `PIPELINE_REFILL`, so that its supervisor tops the pipeline up before the
/// worker runs dry (`pool.rs` checks the relation).
pub(crate) const ANNOUNCE_EVERY: usize = 16;
/// The reply of a task that ran this long goes through the socket at once.
pub(crate) const SLOW: Duration = Duration::from_millis(1);
/// How long a supervisor with tasks out first waits for a frame before it looks at the tail.
const LOOK_FIRST: Duration = Duration::from_millis(1);
/// The longest it waits between two looks while nothing arrives (each wait for a frame starts
/// again at [`LOOK_FIRST`]).
const LOOK_MAX: Duration = Duration::from_millis(64);

/// Where `len` bytes from byte position `pos` on lie in the ring: their offset, and how many
/// of them fit before its end (the rest wrap to its start).
fn ring_span(pos: u64, len: usize) -> (usize, usize) {
    debug_assert!(len <= RING);
    let at = pos as usize & (RING - 1);
    (at, len.min(RING - at))
}

/// The bytes a record of a `len`-byte body takes in the ring.
fn record_len(len: usize) -> u64 {
    (RECORD + len.next_multiple_of(8)) as u64
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("reply journal: {message}"),
    )
}

/// The worker's side: appends records and announces them.
#[derive(Debug)]
pub(crate) struct JournalWriter {
    buf: BulkBuf,
    /// Bytes of records written (the tail word's value).
    tail: u64,
    /// Bytes the pool has read (from its last `Drained` frame): the ring below is free.
    drained: u64,
    /// The tail in the last `Journal` frame.
    announced: u64,
    /// Records written since that frame.
    unannounced: usize,
}

impl JournalWriter {
    /// An empty journal (a new memfd, mapped by this process alone), not yet announced.
    fn new() -> io::Result<JournalWriter> {
        Ok(JournalWriter {
            buf: BulkBuf::with_capacity(HEAD + RING)?,
            tail: 0,
            drained: 0,
            announced: 0,
            unannounced: 0,
        })
    }

    /// A new journal, whose memfd goes to the pool at once (a [`Kind::Journal`] frame of tail
    /// 0, flushed), so that the pool can look at replies not yet announced (before a long
    /// task, say). `Ok(None)`: no journal could be made, and replies go through the socket; an
    /// error is the socket's.
    pub(crate) fn start(writer: &mut FrameWriter) -> io::Result<Option<JournalWriter>> {
        let Ok(journal) = JournalWriter::new() else {
            return Ok(None);
        };
        let fd = journal.buf.fd().try_clone_to_owned()?;
        writer.send(journal.frame(), &[], &[fd])?;
        writer.flush()?;
        Ok(Some(journal))
    }

    /// Copies `bytes` into the ring from byte position `pos` on, wrapping at its end.
    fn write_at(&mut self, pos: u64, bytes: &[u8]) {
        let (at, first) = ring_span(pos, bytes.len());
        // SAFETY: the mapping is at least `HEAD + RING` bytes (`new`), writable by this
        // process, and the two copies cover `at..at + first` and `0..bytes.len() - first` of the
        // ring, both inside it. The bytes lie beyond the published tail and no more than `RING`
        // above `drained` (`append` checks), so the pool, which reads only below the tail and
        // at or above `drained`, is not reading them; `bytes` is this process's memory
        // outside the mapping.
        unsafe {
            let ring = self.buf.as_mut_ptr().as_ptr().add(HEAD);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ring.add(at), first);
            std::ptr::copy_nonoverlapping(bytes.as_ptr().add(first), ring, bytes.len() - first);
        }
    }

    /// Appends a reply; `false`, with nothing written, when its body is larger than
    /// [`MAX_BODY`] or the ring lacks the room (the pool has not read far enough).
    pub(crate) fn append(&mut self, kind: Kind, id: u64, body: &[u8]) -> bool {
        let size = record_len(body.len());
        if body.len() > MAX_BODY || self.tail - self.drained + size > RING as u64 {
            return false;
        }
        let mut head = [0u8; RECORD];
        head[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
        head[4] = kind as u8;
        head[8..].copy_from_slice(&id.to_le_bytes());
        self.write_at(self.tail, &head);
        self.write_at(self.tail + RECORD as u64, body);
        self.tail += size;
        // SAFETY: the mapping starts page-aligned and its first 8 bytes are the tail word,
        // which this process only ever accesses as this atomic (the ring starts after it).
        let word = unsafe { self.buf.as_mut_ptr().cast::<AtomicU64>().as_ref() };
        word.store(self.tail, Ordering::Release);
        self.unannounced += 1;
        true
    }

    /// The pool has read the ring up to byte `upto` (a [`Kind::Drained`] frame). A value
    /// outside what was written and not yet drained is ignored: the ring below `drained`
    /// stays unwritten.
    pub(crate) fn drained(&mut self, upto: u64) {
        if (self.drained..=self.tail).contains(&upto) {
            self.drained = upto;
        }
    }

    /// Whether records await an announcement.
    pub(crate) fn pending(&self) -> bool {
        self.tail > self.announced
    }

    /// Whether [`ANNOUNCE_EVERY`] records await one.
    pub(crate) fn due(&self) -> bool {
        self.unannounced >= ANNOUNCE_EVERY
    }

    /// The [`Kind::Journal`] frame announcing every record written so far.
    fn frame(&self) -> Header {
        Header {
            kind: Kind::Journal,
            id: 0,
            call: self.tail,
        }
    }

    /// Queues the [`Kind::Journal`] frame announcing every record written (the memfd went
    /// with the first, in [`start`](Self::start)).
    pub(crate) fn announce(&mut self, writer: &mut FrameWriter) -> io::Result<()> {
        writer.send(self.frame(), &[], &[])?;
        self.announced = self.tail;
        self.unannounced = 0;
        Ok(())
    }
}

/// The pool's side: reads the records of one worker's journal (none until its first
/// [`Kind::Journal`] frame).
#[derive(Debug, Default)]
pub(crate) struct JournalReader {
    /// The read-only mapping of the journal and its length, once announced.
    map: Option<Mapping>,
    /// Bytes of records read.
    head: u64,
    /// Bytes of records the pool may read: announced, or taken from the tail word.
    mark: u64,
    /// The position in the last `Drained` frame.
    acked: u64,
}

// SAFETY: the mapping is this process's, read-only, and owned by the reader alone (unmapped
// on drop); moving the reader to another thread moves that ownership.
unsafe impl Send for JournalReader {}

impl JournalReader {
    /// Takes a [`Kind::Journal`] frame: maps the journal's memfd with the first, and lets the
    /// pool read up to `mark`. A frame that breaks the protocol is an error.
    ///
    /// # Safety
    ///
    /// The peer must be a worker that follows this module's protocol: it writes no byte of
    /// the ring between the position in the pool's last `Drained` frame and the tail it
    /// published — the records this reader copies out.
    pub(crate) unsafe fn announced(&mut self, mark: u64, mut fds: Vec<OwnedFd>) -> io::Result<()> {
        if !ALLOWED {
            return Err(invalid("no journal on this target"));
        }
        match (fds.pop(), self.map.is_some()) {
            (None, true) if fds.is_empty() => {}
            (Some(fd), false) if fds.is_empty() => {
                let len = NonZeroUsize::new(HEAD + RING).expect("not 0");
                // SAFETY: the journal is written only as this function's contract says, and
                // the reader copies out only records below the published tail.
                let mut map = unsafe { map_sealed(fd.as_fd(), len) }?;
                // Kept out of forked children, as the bulk buffers' mappings.
                map.keep_out_of_children()?;
                self.map = Some(map);
            }
            _ => return Err(invalid("a Journal frame with the wrong descriptors")),
        }
        self.advance(mark)
    }

    fn advance(&mut self, mark: u64) -> io::Result<()> {
        if mark < self.mark || mark % 8 != 0 || mark - self.head > RING as u64 {
            return Err(invalid("a tail outside the ring"));
        }
        self.mark = mark;
        Ok(())
    }

    /// The worker's tail word.
    fn tail(&self) -> Option<u64> {
        let map = self.map.as_ref()?.as_ptr();
        // SAFETY: the mapping is page-aligned, at least `HEAD` bytes, and alive while `self`
        // is; its first word is only ever accessed atomically. This mapping is read-only: a
        // `Relaxed` load of at most a pointer's width is what Rust allows there (a journal is
        // mapped only on 64-bit targets: `announced`).
        let tail = unsafe { map.cast::<AtomicU64>().as_ref() }.load(Ordering::Relaxed);
        // Pairs with the worker's `Release` store: the records below `tail` are visible.
        fence(Ordering::Acquire);
        Some(tail)
    }

    /// Whether records are ready to read ([`next`](Self::next)).
    pub(crate) fn has_records(&self) -> bool {
        self.head < self.mark
    }

    /// Whether the worker has a journal: then a supervisor waiting for a frame with tasks out
    /// looks at its tail now and then ([`look_at_tail`](Self::look_at_tail)).
    pub(crate) fn is_open(&self) -> bool {
        self.map.is_some()
    }

    /// After a wait for a frame that timed out: takes the records the worker wrote and has not
    /// announced yet, provided `socket_quiet` (called after the tail word was read) says that
    /// no frame has arrived — one that had would have to be read before them. Returns whether
    /// records are ready.
    pub(crate) fn look_at_tail(&mut self, socket_quiet: impl FnOnce() -> bool) -> io::Result<bool> {
        let tail = self.tail().unwrap_or(self.mark);
        if tail > self.mark && socket_quiet() {
            self.advance(tail)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Waits for the worker's next frame while tasks are out and no record is ready: the
    /// wait on `stream` ends after [`LOOK_FIRST`] (then twice as long each time, up to
    /// [`LOOK_MAX`]) for a look at the tail ([`look_at_tail`](Self::look_at_tail)), whose
    /// read without waiting is `reader`'s. Returns once a frame has begun to arrive (in the
    /// socket or in `reader`'s buffer) or records are ready. An error is the stream's (a read
    /// that failed took bytes off it) or a tail outside the ring.
    pub(crate) fn wait(&mut self, reader: &mut FrameReader, stream: &UnixStream) -> io::Result<()> {
        let mut look = LOOK_FIRST;
        while !reader.has_buffered() && !readable_by(stream, Instant::now() + look) {
            let mut failed = None;
            let quiet = || match reader.ready() {
                Ok(ready) => !ready,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            };
            if self.look_at_tail(quiet)? {
                return Ok(());
            }
            if let Some(e) = failed {
                return Err(e);
            }
            look = (look * 2).min(LOOK_MAX);
        }
        Ok(())
    }

    /// After the worker's stream ended: takes every record it wrote. Returns whether records
    /// are ready.
    pub(crate) fn after_end(&mut self) -> io::Result<bool> {
        if let Some(tail) = self.tail().filter(|&t| t > self.mark) {
            self.advance(tail)?;
        }
        Ok(self.has_records())
    }

    /// Copies `out.len()` bytes of the ring from byte position `pos` on.
    fn read_at(&self, pos: u64, out: &mut [u8]) {
        let map = self
            .map
            .as_ref()
            .expect("records come after the mapping")
            .as_ptr();
        let (at, first) = ring_span(pos, out.len());
        // SAFETY: the mapping is at least `HEAD + RING` bytes (`map_sealed` with that length),
        // and the copies cover `at..at + first` and `0..out.len() - first` of the ring; the
        // bytes are below the worker's published tail and above what the pool drained, which
        // the worker does not write (the contract of `announced`); `out` is our own memory.
        unsafe {
            let ring = map.as_ptr().add(HEAD);
            std::ptr::copy_nonoverlapping(ring.add(at), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(ring, out.as_mut_ptr().add(first), out.len() - first);
        }
    }

    /// The next ready record: its header (`call` 0), its body in `payload`. `Ok(None)` when
    /// none is ready; a malformed record is an error.
    pub(crate) fn next(&mut self, payload: &mut Vec<u8>) -> io::Result<Option<Header>> {
        if !self.has_records() {
            return Ok(None);
        }
        let mut head = [0u8; RECORD];
        let left = self.mark - self.head;
        if left < RECORD as u64 {
            return Err(invalid("a record cut short"));
        }
        self.read_at(self.head, &mut head);
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let kind = match head[4] {
            k if k == Kind::Done as u8 => Kind::Done,
            k if k == Kind::Panicked as u8 => Kind::Panicked,
            k if k == Kind::Failed as u8 => Kind::Failed,
            _ => return Err(invalid("a record that is not a reply")),
        };
        if len > MAX_BODY || record_len(len) > left {
            return Err(invalid("a record longer than what was written"));
        }
        payload.clear();
        payload.resize(len, 0);
        self.read_at(self.head + RECORD as u64, payload);
        self.head += record_len(len);
        Ok(Some(Header {
            kind,
            id: u64::from_le_bytes(head[8..].try_into().expect("8 bytes")),
            call: 0,
        }))
    }

    /// Queues a [`Kind::Drained`] frame when the pool has read records since the last one:
    /// call it with the frames that give the worker its next tasks.
    pub(crate) fn ack(&mut self, writer: &mut FrameWriter) -> io::Result<()> {
        if self.head == self.acked {
            return Ok(());
        }
        let header = Header {
            kind: Kind::Drained,
            id: 0,
            call: self.head,
        };
        writer.send(header, &[], &[])?;
        self.acked = self.head;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker's journal and a pool's reader of it, joined by the first announcement.
    fn pair() -> (JournalWriter, JournalReader, FrameWriter, FrameReader) {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut to_pool, mut from_worker) = (FrameWriter::new(a), FrameReader::new(b));
        let writer = JournalWriter::start(&mut to_pool).unwrap().unwrap();
        let mut reader = JournalReader::default();
        let (header, fds) = from_worker.recv(&mut Vec::new()).unwrap().unwrap();
        assert_eq!((header.kind, header.call, fds.len()), (Kind::Journal, 0, 1));
        // SAFETY: the writer follows the protocol: it writes only beyond what it published.
        unsafe { reader.announced(header.call, fds) }.unwrap();
        (writer, reader, to_pool, from_worker)
    }

    /// Announces `writer`'s records and hands the frame to `reader`.
    fn announce(
        w: &mut JournalWriter,
        r: &mut JournalReader,
        tx: &mut FrameWriter,
        rx: &mut FrameReader,
    ) {
        w.announce(tx).unwrap();
        tx.flush().unwrap();
        let (header, fds) = rx.recv(&mut Vec::new()).unwrap().unwrap();
        assert!(
            fds.is_empty(),
            "the memfd goes only with the first announcement"
        );
        // SAFETY: as in `pair`.
        unsafe { r.announced(header.call, fds) }.unwrap();
    }

    #[test]
    fn replies_cross_in_order_and_the_ring_wraps_once_drained() {
        let (mut w, mut r, mut tx, mut rx) = pair();
        let mut payload = Vec::new();
        let mut id = 0u64;
        // Bodies of many lengths, over several turns of the ring.
        for round in 0..40usize {
            let sent: Vec<(u64, Vec<u8>)> = (0..20)
                .map(|i| {
                    id += 1;
                    (id, vec![(round + i) as u8; (round * 37 + i * 101) % 1500])
                })
                .collect();
            for (id, body) in &sent {
                assert!(w.append(Kind::Done, *id, body), "room after a drain");
            }
            assert!(!r.has_records(), "nothing before the announcement");
            announce(&mut w, &mut r, &mut tx, &mut rx);
            for (id, body) in &sent {
                let header = r.next(&mut payload).unwrap().expect("a record");
                assert_eq!((header.kind, header.id), (Kind::Done, *id));
                assert_eq!(&payload, body);
            }
            assert_eq!(r.next(&mut payload).unwrap(), None);
            r.ack(&mut tx).unwrap();
            tx.flush().unwrap();
            let (header, _) = rx.recv(&mut Vec::new()).unwrap().unwrap();
            assert_eq!(header.kind, Kind::Drained);
            w.drained(header.call);
        }
    }

    #[test]
    fn a_full_ring_refuses_a_reply_until_the_pool_drains_it() {
        let (mut w, mut r, mut tx, mut rx) = pair();
        let body = vec![7u8; MAX_BODY];
        let mut written = 0;
        while w.append(Kind::Panicked, written, &body) {
            written += 1;
        }
        assert_eq!(written as usize, RING / record_len(MAX_BODY) as usize);
        assert!(
            !w.append(Kind::Done, 99, &vec![0; MAX_BODY + 1]),
            "too large"
        );
        // The rest of the ring, in small records.
        while w.append(Kind::Done, 99, b"x") {}
        // A drain beyond what was written is ignored: the ring stays full.
        w.drained(u64::MAX);
        assert!(!w.append(Kind::Done, 99, b"x"));
        announce(&mut w, &mut r, &mut tx, &mut rx);
        let mut payload = Vec::new();
        let first = r.next(&mut payload).unwrap().unwrap();
        assert_eq!(
            (first.kind, first.id, payload.len()),
            (Kind::Panicked, 0, MAX_BODY)
        );
        w.drained(record_len(MAX_BODY));
        assert!(w.append(Kind::Failed, 100, b"fits again"));
    }

    #[test]
    fn after_the_end_of_the_stream_the_pool_reads_up_to_the_tail() {
        let (mut w, mut r, _tx, _rx) = pair();
        assert!(w.append(Kind::Done, 1, b"one"));
        assert!(w.append(Kind::Done, 2, b"two"));
        // Never announced: the worker died. Its journal outlives it.
        drop(w);
        assert!(r.after_end().unwrap());
        let mut payload = Vec::new();
        assert_eq!(r.next(&mut payload).unwrap().unwrap().id, 1);
        assert_eq!(r.next(&mut payload).unwrap().unwrap().id, 2);
        assert_eq!(payload, b"two");
        assert!(!r.after_end().unwrap());
    }

    #[test]
    fn unannounced_records_are_taken_only_while_the_socket_is_quiet() {
        let (mut w, mut r, _tx, _rx) = pair();
        assert!(!r.look_at_tail(|| true).unwrap(), "nothing written");
        assert!(w.append(Kind::Done, 1, b"one"));
        assert!(!r.look_at_tail(|| false).unwrap(), "a frame came first");
        assert!(r.look_at_tail(|| true).unwrap());
        assert_eq!(r.next(&mut Vec::new()).unwrap().unwrap().id, 1);
    }

    #[test]
    fn a_tail_outside_the_ring_is_an_error() {
        let (_w, mut r, _tx, _rx) = pair();
        // SAFETY: no records are read after these refusals.
        unsafe {
            assert!(
                r.announced(RING as u64 + 8, Vec::new()).is_err(),
                "past the ring"
            );
            assert!(
                r.announced(12, Vec::new()).is_err(),
                "not a record boundary"
            );
        }
    }
}
