//! A task's encoded arguments on the parent's side: in a byte vector for the socket, or —
//! from [`BULK_MIN`] bytes on — in a shared-memory [`BulkBuf`] (see [`crate::bulk`]); and the
//! buffers of finished tasks, kept for encoding the next ones.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use multiproc_core::handoff::collect_fds;

use multiproc_core::handoff::MAX_FDS;

use crate::bulk::{BulkBuf, Promises, BULK_MIN};
use crate::codec::Output;

/// Encoded arguments.
#[derive(Debug)]
pub(crate) enum Body {
    /// Sent through the socket.
    Inline(Vec<u8>),
    /// Sent as a bulk frame: the worker maps the buffer.
    Bulk(BulkBuf),
}

impl Body {
    /// The encoded size.
    pub(crate) fn len(&self) -> usize {
        match self {
            Body::Inline(v) => v.len(),
            Body::Bulk(b) => b.len(),
        }
    }

    /// The buffer to send as a bulk frame beside `nfds` descriptors of the arguments' own:
    /// `None` for an inline body, and for a bulk one when the frame has no room left for the
    /// buffer's descriptor (its bytes then go through the socket).
    pub(crate) fn bulk(&self, nfds: usize) -> Option<&BulkBuf> {
        match self {
            Body::Bulk(b) if nfds < MAX_FDS => Some(b),
            _ => None,
        }
    }

    /// The bytes that go through the socket, beside `nfds` descriptors (a bulk frame sends
    /// only its header).
    pub(crate) fn socket_len(&self, nfds: usize) -> usize {
        if self.bulk(nfds).is_some() {
            0
        } else {
            self.len()
        }
    }

    /// The encoded bytes, in a byte vector (a copy for a bulk body).
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        match self {
            Body::Inline(v) => v,
            Body::Bulk(b) => b.as_slice().to_vec(),
        }
    }

    /// The encoded bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Body::Inline(v) => v,
            Body::Bulk(b) => b.as_slice(),
        }
    }
}

/// Buffers of finished jobs, kept for encoding the next ones: a large argument is then encoded
/// into memory that is already mapped, instead of fresh pages that the kernel must fault in
/// (the slow part of copying 100 MB on our machines).
#[derive(Debug)]
pub(crate) struct Spare {
    vecs: Vec<Vec<u8>>,
    bulks: Vec<BulkBuf>,
    bytes: usize,
    /// The most bytes kept: [`SPARE_BYTES`], or a pool's [`POOL_SPARE_BYTES`].
    limit: usize,
    /// The room promised to bulk buffers out with a body ([`settle`](Self::settle)).
    promises: Arc<Promises>,
}

impl Default for Spare {
    /// A worker's, for its results (and a one-off encoding's).
    fn default() -> Self {
        Spare::with_limit(SPARE_BYTES)
    }
}

/// The most payload memory a worker keeps for reuse (its results' buffers).
pub(crate) const SPARE_BYTES: usize = 256 << 20;
/// The most payload memory a pool keeps for reuse (its arguments' buffers): room for the
/// tutorial's index lists (nine argument tuples of 50 MB), whose `starmap` on a warm pool
/// took 91–106 ms with it against 127–135 ms with 256 MiB, when four of the nine were
/// encoded into fresh shared pages every time (2-core VM, three runs alternated).
pub(crate) const POOL_SPARE_BYTES: usize = 512 << 20;
/// The most bulk buffers a pool or a worker keeps for reuse (each holds a descriptor), and
/// the most mappings a worker keeps of its pool's.
pub(crate) const SPARE_BULKS: usize = 16;
/// Byte vectors smaller than this are not worth keeping.
const SPARE_MIN: usize = 64 << 10;

pub(crate) fn lock(spare: &Mutex<Spare>) -> MutexGuard<'_, Spare> {
    // The critical sections push and pop; they cannot panic half-way.
    spare.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Spare {
    /// Keeping at most `limit` bytes.
    pub(crate) fn with_limit(limit: usize) -> Self {
        Spare {
            vecs: Vec::new(),
            bulks: Vec::new(),
            bytes: 0,
            limit,
            promises: Arc::default(),
        }
    }

    /// Whether a buffer of `cap` bytes fits beside what is kept and what is promised.
    fn has_room(&self, cap: usize, bulk: bool) -> bool {
        let (promised, out) = self.promises.total();
        self.bytes + promised + cap <= self.limit && (!bulk || self.bulks.len() + out < SPARE_BULKS)
    }

    /// Decides, once its body is written, whether `bulk` comes back to be kept when its
    /// task is done: promised if there is room for it now (the room stays promised until
    /// it comes back or is dropped), otherwise marked retired at once, so that its receiver
    /// keeps no mapping of memory that is about to be freed.
    pub(crate) fn settle(&self, bulk: &mut BulkBuf) {
        if self.has_room(bulk.capacity(), true) {
            bulk.promise(&self.promises);
        } else {
            bulk.retire();
        }
    }

    fn take_vec(&mut self) -> Vec<u8> {
        match self.vecs.pop() {
            Some(v) => {
                self.bytes -= v.capacity();
                v
            }
            None => Vec::new(),
        }
    }

    /// The largest spare bulk buffer, or a new one. In a forked child, the parent's spare
    /// buffers are dropped unused (they are the parent's memory).
    fn take_bulk(&mut self, at_least: usize) -> io::Result<BulkBuf> {
        while let Some(mut b) = self.bulks.pop() {
            self.bytes -= b.capacity();
            if b.is_ours() {
                b.clear();
                return Ok(b);
            }
        }
        BulkBuf::with_capacity(at_least)
    }

    /// Whether `give` may keep `body` (checked before taking the pool's lock: a small
    /// inline body, the common case, is simply dropped).
    pub(crate) fn worth_keeping(body: &Body) -> bool {
        match body {
            Body::Inline(v) => v.capacity() >= SPARE_MIN,
            Body::Bulk(_) => true,
        }
    }

    /// Keeps a finished job's buffer, if it is worth keeping and there is room (a bulk
    /// buffer promised by [`settle`](Self::settle) has its room).
    pub(crate) fn give(&mut self, mut body: Body) {
        let (cap, bulk) = match &mut body {
            Body::Inline(v) if v.capacity() < SPARE_MIN => return,
            Body::Inline(v) => (v.capacity(), false),
            Body::Bulk(b) if !b.is_ours() => return,
            Body::Bulk(b) => {
                // Its promised room, if any, becomes room kept.
                b.end_promise();
                (b.capacity(), true)
            }
        };
        if !self.has_room(cap, bulk) {
            return;
        }
        self.bytes += cap;
        match body {
            Body::Inline(v) => self.vecs.push(v),
            Body::Bulk(b) => {
                self.bulks.push(b);
                // Largest last: the next large body takes the one most likely to fit.
                self.bulks.sort_by_key(BulkBuf::capacity);
            }
        }
    }
}

/// Encodes `items` (a chunk of arguments or results: [`crate::codec::encode_items_with`]),
/// collecting the descriptors they own, into a spare buffer: a byte vector while it is small,
/// a bulk buffer once it reaches [`BULK_MIN`] bytes.
pub(crate) fn encode_body<T: serde::Serialize + 'static>(
    items: &[T],
    spare: &Mutex<Spare>,
) -> Result<(Body, Vec<OwnedFd>), String> {
    let mut inline = lock(spare).take_vec();
    inline.clear();
    let mut writer = BodyWriter {
        inline,
        bulk: None,
        no_bulk: false,
        spare,
    };
    let (encoded, fds) = collect_fds(|| crate::codec::encode_items_with(items, &mut writer));
    match encoded {
        Ok(()) => Ok((writer.finish(), fds)),
        Err(e) => {
            writer.finish();
            Err(e.to_string())
        }
    }
}

/// The codec's output in [`encode_body`].
struct BodyWriter<'a> {
    inline: Vec<u8>,
    bulk: Option<BulkBuf>,
    /// Shared memory could not be had (out of descriptors, say): the socket it is.
    no_bulk: bool,
    spare: &'a Mutex<Spare>,
}

impl BodyWriter<'_> {
    /// Moves to shared memory, with what was written so far, and appends `data`. If a bulk
    /// buffer cannot be made or grown (no descriptors or memory left for one), the body
    /// stays in — or moves back to — the byte vector, and goes through the socket.
    #[cold]
    #[inline(never)]
    fn extend_slow(&mut self, data: &[u8]) {
        if self.no_bulk {
            self.inline.extend_from_slice(data);
            return;
        }
        let grown = match self.bulk.take() {
            Some(mut bulk) => match bulk.extend_from_slice(data) {
                Ok(()) => Ok(bulk),
                Err(e) => {
                    self.inline.clear();
                    self.inline.extend_from_slice(bulk.as_slice());
                    Err(e)
                }
            },
            None => lock(self.spare)
                .take_bulk(2 * BULK_MIN)
                .and_then(|mut bulk| {
                    bulk.extend_from_slice(&self.inline)?;
                    bulk.extend_from_slice(data)?;
                    self.inline.clear();
                    Ok(bulk)
                }),
        };
        match grown {
            Ok(bulk) => self.bulk = Some(bulk),
            Err(_) => {
                self.no_bulk = true;
                self.inline.extend_from_slice(data);
            }
        }
    }

    /// The body written.
    fn finish(self) -> Body {
        match self.bulk {
            Some(mut bulk) => {
                let mut spare = lock(self.spare);
                // Settled first: the room is the large buffer's before the small vector's.
                spare.settle(&mut bulk);
                spare.give(Body::Inline(self.inline));
                Body::Bulk(bulk)
            }
            None => Body::Inline(self.inline),
        }
    }
}

impl Output for BodyWriter<'_> {
    // Inlined into the codec's serializer: a per-element encoding (a `Vec<f64>`) calls this
    // once per element, and the call costs more than the 8-byte copy.
    #[inline(always)]
    fn write(&mut self, data: &[u8]) {
        match &mut self.bulk {
            Some(bulk) if bulk.fits(data.len()) => bulk.extend_within_capacity(data),
            None if self.no_bulk || self.inline.len() + data.len() < BULK_MIN => {
                self.inline.extend_from_slice(data);
            }
            _ => self.extend_slow(data),
        }
    }

    #[inline(always)]
    fn written(&self) -> usize {
        // The bytes move from the vector to the bulk buffer whole: the count carries over.
        self.bulk.as_ref().map_or(self.inline.len(), BulkBuf::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn small_values_stay_inline_and_large_ones_go_to_shared_memory() {
        let spare = Mutex::new(Spare::default());
        let (small, fds) = encode_body(&[1u32, 2, 3], &spare).unwrap();
        assert!(matches!(small, Body::Inline(_)) && fds.is_empty());
        assert_eq!(
            crate::codec::take_from_bytes::<Vec<u32>>(small.as_slice())
                .unwrap()
                .0,
            [1, 2, 3]
        );
        let big: Vec<u64> = (0..(BULK_MIN as u64)).collect();
        // A chunk of one large vector: the block path, moving to shared memory part-way.
        let (body, _) = encode_body(std::slice::from_ref(&big), &spare).unwrap();
        assert!(matches!(body, Body::Bulk(_)));
        assert_eq!((body.socket_len(0), body.len() > BULK_MIN), (0, true));
        // A frame without room for the buffer's descriptor sends the bytes.
        assert_eq!(body.socket_len(MAX_FDS), body.len());
        assert_eq!(
            crate::codec::take_items_from_bytes::<Vec<u64>>(body.as_slice())
                .unwrap()
                .0,
            [big]
        );
        // Its buffer is reused for the next large value.
        let cap = match &body {
            Body::Bulk(b) => b.capacity(),
            Body::Inline(_) => unreachable!(),
        };
        lock(&spare).give(body);
        let again: Vec<u8> = vec![7; 3 * BULK_MIN];
        let (body, _) = encode_body(&again, &spare).unwrap();
        assert!(matches!(&body, Body::Bulk(b) if b.capacity() >= cap));
        assert_eq!(
            crate::codec::take_from_bytes::<Vec<u8>>(body.as_slice())
                .unwrap()
                .0,
            again
        );
        assert!(lock(&spare).bulks.is_empty());
    }

    /// Whether `body`'s file is marked retired, as its receiver sees it.
    fn retired(body: &Body) -> bool {
        let Body::Bulk(b) = body else {
            panic!("an inline body")
        };
        crate::bulk::is_retired(&nix::sys::stat::fstat(b.fd().as_raw_fd()).unwrap())
    }

    /// A bulk body is promised its spare room when it is written, or, with none left, arrives
    /// marked retired, so that its receiver keeps no mapping of a buffer about to be freed.
    #[test]
    fn a_bulk_body_without_spare_room_arrives_retired() {
        let big: Vec<u8> = vec![1; 2 * BULK_MIN];
        // Room for one such buffer, not two.
        let (probe, _) = encode_body(std::slice::from_ref(&big), &Mutex::default()).unwrap();
        let spare = Mutex::new(Spare::with_limit(probe.len() * 3 / 2 + BULK_MIN));
        let Body::Bulk(probe) = probe else {
            panic!("an inline body")
        };
        assert!(probe.capacity() <= probe.len() * 3 / 2 + BULK_MIN);
        let (first, _) = encode_body(std::slice::from_ref(&big), &spare).unwrap();
        let (second, _) = encode_body(std::slice::from_ref(&big), &spare).unwrap();
        assert!(!retired(&first), "the room for it was there");
        assert!(retired(&second), "past the room the first was promised");
        // The first comes back into its promised room; the second is dropped.
        lock(&spare).give(first);
        lock(&spare).give(second);
        assert_eq!(lock(&spare).bulks.len(), 1);
        assert_eq!(lock(&spare).promises.total(), (0, 0));
        // The kept buffer is reused and promised again, its file no longer retired even if
        // it was; a promised body dropped instead of given back returns its room.
        let (again, _) = encode_body(std::slice::from_ref(&big), &spare).unwrap();
        assert!(!retired(&again));
        assert_eq!(lock(&spare).promises.total().1, 1);
        drop(again);
        assert_eq!(lock(&spare).promises.total(), (0, 0));
    }
}
