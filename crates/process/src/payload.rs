//! A task's encoded arguments on the parent's side: in a byte vector for the socket, or —
//! from [`BULK_MIN`] bytes on — in a shared-memory [`BulkBuf`] (see [`crate::bulk`]); and the
//! buffers of finished tasks, kept for encoding the next ones.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, MutexGuard, PoisonError};

use multiproc_core::handoff::collect_fds;
use postcard::ser_flavors::Flavor;

use crate::bulk::{BulkBuf, BULK_MIN};

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

    /// The bytes that go through the socket (a bulk body sends only its frame header).
    pub(crate) fn socket_len(&self) -> usize {
        match self {
            Body::Inline(v) => v.len(),
            Body::Bulk(_) => 0,
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
#[derive(Debug, Default)]
pub(crate) struct Spare {
    vecs: Vec<Vec<u8>>,
    bulks: Vec<BulkBuf>,
    bytes: usize,
}

/// The most payload memory a pool keeps for reuse.
const SPARE_BYTES: usize = 256 << 20;
/// Byte vectors smaller than this are not worth keeping.
const SPARE_MIN: usize = 64 << 10;

fn lock(spare: &Mutex<Spare>) -> MutexGuard<'_, Spare> {
    // The critical sections push and pop; they cannot panic half-way.
    spare.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Spare {
    fn take_vec(&mut self) -> Vec<u8> {
        match self.vecs.pop() {
            Some(v) => {
                self.bytes -= v.capacity();
                v
            }
            None => Vec::new(),
        }
    }

    /// The largest spare bulk buffer, or a new one.
    fn take_bulk(&mut self, at_least: usize) -> io::Result<BulkBuf> {
        match self.bulks.pop() {
            Some(mut b) => {
                self.bytes -= b.capacity();
                b.clear();
                Ok(b)
            }
            None => BulkBuf::with_capacity(at_least),
        }
    }

    /// Keeps a finished job's buffer, if it is worth keeping and there is room.
    pub(crate) fn give(&mut self, body: Body) {
        let cap = match &body {
            Body::Inline(v) if v.capacity() < SPARE_MIN => return,
            Body::Inline(v) => v.capacity(),
            Body::Bulk(b) => b.capacity(),
        };
        if self.bytes + cap > SPARE_BYTES {
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

/// Encodes `value` with postcard, collecting the descriptors it owns, into a spare buffer:
/// a byte vector while it is small, a bulk buffer once it reaches [`BULK_MIN`] bytes.
pub(crate) fn encode_body<T: serde::Serialize + ?Sized>(
    value: &T,
    spare: &Mutex<Spare>,
) -> Result<(Body, Vec<OwnedFd>), String> {
    let mut inline = lock(spare).take_vec();
    inline.clear();
    let mut failure = None;
    let writer = BodyWriter {
        inline,
        bulk: None,
        spare,
        failure: &mut failure,
    };
    let (encoded, fds) =
        collect_fds(|| postcard::serialize_with_flavor::<T, BodyWriter<'_>, _>(value, writer));
    match (encoded, failure) {
        (Ok(body), None) => Ok((body, fds)),
        (_, Some(e)) => Err(format!("a shared-memory buffer for a large argument: {e}")),
        (Err(e), None) => Err(e.to_string()),
    }
}

/// The postcard output of [`encode_body`].
struct BodyWriter<'a> {
    inline: Vec<u8>,
    bulk: Option<BulkBuf>,
    spare: &'a Mutex<Spare>,
    /// Why a bulk buffer could not be made or grown (postcard's errors carry no message).
    failure: &'a mut Option<io::Error>,
}

impl BodyWriter<'_> {
    /// Moves to shared memory, with what was written so far, and appends `data`; or records
    /// why a bulk buffer could not be had or grown.
    #[cold]
    #[inline(never)]
    fn extend_slow(&mut self, data: &[u8]) -> postcard::Result<()> {
        let grown = match self.bulk.take() {
            Some(mut bulk) => bulk.extend_from_slice(data).map(|()| bulk),
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
            Ok(bulk) => {
                self.bulk = Some(bulk);
                Ok(())
            }
            Err(e) => {
                *self.failure = Some(e);
                Err(postcard::Error::SerializeBufferFull)
            }
        }
    }
}

impl Flavor for BodyWriter<'_> {
    type Output = Body;

    // Inlined into postcard's serializer: a per-element encoding (a `Vec<f64>`) calls this
    // once per element, and the call costs more than the 8-byte copy.
    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        match &mut self.bulk {
            Some(bulk) if bulk.len() + data.len() <= bulk.capacity() => bulk
                .extend_from_slice(data)
                .map_err(|_| postcard::Error::SerializeBufferFull),
            None if self.inline.len() + data.len() < BULK_MIN => {
                self.inline.extend_from_slice(data);
                Ok(())
            }
            _ => self.extend_slow(data),
        }
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        if self.bulk.is_none() && self.inline.len() + 1 < BULK_MIN {
            self.inline.push(data);
            Ok(())
        } else {
            self.try_extend(&[data])
        }
    }

    fn finalize(self) -> postcard::Result<Body> {
        Ok(match self.bulk {
            Some(bulk) => {
                lock(self.spare).give(Body::Inline(self.inline));
                Body::Bulk(bulk)
            }
            None => Body::Inline(self.inline),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_stay_inline_and_large_ones_go_to_shared_memory() {
        let spare = Mutex::new(Spare::default());
        let (small, fds) = encode_body(&vec![1u32, 2, 3], &spare).unwrap();
        assert!(matches!(small, Body::Inline(_)) && fds.is_empty());
        assert_eq!(
            postcard::from_bytes::<Vec<u32>>(small.as_slice()).unwrap(),
            [1, 2, 3]
        );
        let big: Vec<u64> = (0..(BULK_MIN as u64)).collect();
        let (body, _) = encode_body(&big, &spare).unwrap();
        assert!(matches!(body, Body::Bulk(_)));
        assert_eq!((body.socket_len(), body.len() > BULK_MIN), (0, true));
        assert_eq!(
            postcard::from_bytes::<Vec<u64>>(body.as_slice()).unwrap(),
            big
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
            postcard::from_bytes::<Vec<u8>>(body.as_slice()).unwrap(),
            again
        );
        assert!(lock(&spare).bulks.is_empty());
    }
}
