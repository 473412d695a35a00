//! [`Queue`] and [`JoinableQueue`]: Python's `multiprocessing.Queue` and `JoinableQueue` on
//! a shared-memory ring.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_core::handoff::collect_fds;
use multiproc_core::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::ring::{self, Ring};

thread_local! {
    /// A reusable encode/decode buffer per thread, so a put or get of a small item does not
    /// allocate.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH.with(Cell::take);
    let r = f(&mut buf);
    if buf.capacity() <= 1 << 16 {
        SCRATCH.with(|s| s.set(buf));
    }
    r
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// A first-in first-out queue for many producers and many consumers, across threads, forked
/// and spawned processes (Python's `multiprocessing.Queue`).
///
/// Items are serde values, copied in (encoded by the one codec) on [`put`](Self::put) and decoded on
/// [`get`](Self::get); `T` need not be `Send`, since no value is ever shared. A handle is
/// cheap to [`clone`](Clone) and usable from any thread; a forked child inherits it; a
/// spawned process receives it as an argument (it serializes through
/// [`multiproc_core::handoff`]: its shared memory travels as file descriptors).
///
/// # How it works, and its limits
///
/// The items live in a ring of anonymous shared memory (memfd), guarded by two robust
/// process-shared locks: one that producers take, one that consumers take. A put or get that
/// has its lock and finds room or an item is a few atomic operations, no system call; a
/// waiter spins briefly and then sleeps on a futex. See [`ring`](crate::ring) for the design
/// and why a process that dies in the middle of a put or get leaves the queue consistent.
///
/// - **Ring size**: [`new`](Self::new) gives a ring of
///   [`DEFAULT_RING_BYTES`](crate::ring::DEFAULT_RING_BYTES) (1 MiB, whose pages cost memory
///   only once written); [`with_capacity`](Self::with_capacity) chooses it. An item takes its
///   encoded size plus at most 15 bytes. An item larger than the whole ring is refused with
///   [`Error::InvalidArgument`] naming `item` and both sizes — never a hang.
/// - **"Unbounded"** (`maxsize` 0) means bounded only by the ring's bytes and by
///   [`MAX_ITEMS`](crate::ring::MAX_ITEMS) (16,777,215) items: a put beyond either waits for a
///   get, as a put on a full bounded queue does. (Python's unbounded queue buffers without
///   limit in the putting process's memory instead.)
/// - **Values that own file descriptors** (shared arrays, locks, `Connection`s, queues)
///   cannot go through a `Queue`, whose bytes are in shared memory; send them over a
///   [`Pipe`](crate::pipe) or pass them as a process argument. Trying is an
///   [`Error::Serialization`] that says so.
///
/// # Errors (Python's exceptions)
///
/// | Python | here |
/// |---|---|
/// | `queue.Empty` (`get` with a timeout, `get_nowait`) | [`Error::Empty`] |
/// | `queue.Full` (`put` with a timeout, `put_nowait`) | [`Error::Full`] |
/// | `ValueError: Queue is closed` | [`Error::QueueClosed`] ([`is_closed`](crate::is_closed)) |
/// | unpicklable object | [`Error::Serialization`] |
///
/// As in Python, a `get_timeout` that runs out of time is [`Error::Empty`], not
/// [`Error::Timeout`]: the two mean the same thing for a queue (no item came), and a consumer
/// loop matches one variant for "nothing yet" whether it polls (`get_nowait`) or waits
/// (`get_timeout`). The same holds for `put_timeout` and [`Error::Full`].
/// [`JoinableQueue::join_timeout`], which is not about items, is [`Error::Timeout`].
///
/// A blocking `put`/`get` whose lock was held by a process that died (SIGKILL while waiting
/// in `get`, say) takes the lock over and goes on; the dead process's unfinished operation
/// left nothing half-done behind. Every blocking call has a `_timeout` form.
///
/// ```
/// use std::time::Duration;
/// use multiproc_ipc::Queue;
///
/// let q = Queue::<(u32, String)>::new(2)?; // maxsize 2
/// q.put(&(1, "one".into()))?;
/// q.put(&(2, "two".into()))?;
/// assert!(q.full());
/// assert!(matches!(
///     q.put_timeout(&(3, "three".into()), Duration::from_millis(10)),
///     Err(multiproc_ipc::Error::Full)
/// ));
///
/// let worker = {
///     let q = q.clone();
///     std::thread::spawn(move || q.get())
/// };
/// assert_eq!(worker.join().unwrap()?, (1, "one".to_string()));
/// assert_eq!(q.qsize(), 1);
/// q.close(); // no more puts; gets drain what is left
/// assert_eq!(q.get()?.0, 2);
/// assert!(matches!(q.get(), Err(multiproc_ipc::Error::QueueClosed)));
/// # Ok::<(), multiproc_core::Error>(())
/// ```
pub struct Queue<T> {
    ring: Arc<Ring>,
    _items: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            ring: self.ring.clone(),
            _items: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.qsize())
            .field("maxsize", &self.maxsize())
            .field("ring_bytes", &self.ring.capacity())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T> Queue<T> {
    /// A queue that holds at most `maxsize` items (Python's `Queue(maxsize)`; 0: no item
    /// limit beyond the ring, see the [type docs](Self)), with a ring of
    /// [`DEFAULT_RING_BYTES`](crate::ring::DEFAULT_RING_BYTES).
    ///
    /// Errors: `maxsize` above [`MAX_ITEMS`](crate::ring::MAX_ITEMS) is
    /// [`Error::InvalidArgument`] naming `maxsize`; running out of descriptors or memory is
    /// [`Error::Io`].
    pub fn new(maxsize: usize) -> Result<Self> {
        Self::with_capacity(maxsize, ring::DEFAULT_RING_BYTES)
    }

    /// A queue of at most `maxsize` items whose ring has `ring_bytes` bytes (rounded up to a
    /// power of two, between [`MIN_RING_BYTES`](crate::ring::MIN_RING_BYTES) and
    /// [`MAX_RING_BYTES`](crate::ring::MAX_RING_BYTES); otherwise an error naming
    /// `ring_bytes`). The largest item is `ring_bytes - 8` encoded bytes.
    pub fn with_capacity(maxsize: usize, ring_bytes: usize) -> Result<Self> {
        Ok(Self::from_ring(Ring::new(maxsize, ring_bytes, false)?))
    }

    pub(crate) fn from_ring(ring: Ring) -> Self {
        Queue {
            ring: Arc::new(ring),
            _items: PhantomData,
        }
    }

    pub(crate) fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The number of items in the queue (Python's `qsize`). Other processes may change it at
    /// any moment, so it is a snapshot.
    pub fn qsize(&self) -> usize {
        self.ring.len()
    }

    /// Whether the queue holds no item now (Python's `empty`; a snapshot).
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// Whether the queue holds `maxsize` items now (Python's `full`; a snapshot). A put can
    /// also wait when the ring's bytes are used up, which this does not report.
    pub fn full(&self) -> bool {
        self.ring.is_full()
    }

    /// The item limit it was created with (0: none).
    pub fn maxsize(&self) -> usize {
        self.ring.maxsize()
    }

    /// The largest item, in encoded bytes, that fits in the ring.
    pub fn max_item_bytes(&self) -> usize {
        self.ring.max_item_bytes()
    }

    /// Closes the queue, for every handle in every process: from now on a put fails, and a
    /// get returns the items still queued and then fails at once instead of waiting. Puts and
    /// gets waiting at the moment of the close wake up and fail. (Python's `close` is
    /// per-process and only stops that process's puts; a closing that consumers can see is
    /// what makes "no more items" a state rather than a timeout.)
    pub fn close(&self) {
        self.ring.close();
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }
}

impl<T: Serialize + 'static> Queue<T> {
    /// Puts `item` at the end, waiting while the queue is full (Python's `put(obj)`).
    ///
    /// Errors: the queue is closed ([`Error::QueueClosed`]); the item does not
    /// encode, owns a file descriptor, or is larger than the ring
    /// ([`Error::Serialization`] / [`Error::InvalidArgument`]).
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_until(item, None)
    }

    /// Like [`put`](Self::put), but gives up after `timeout` with [`Error::Full`] (Python's
    /// `put(obj, timeout=t)` raising `queue.Full`).
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_until(item, deadline_after(timeout))
    }

    /// Puts `item` only if there is room now; otherwise [`Error::Full`] (Python's
    /// `put_nowait` raising `queue.Full`).
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.put_until(item, Some(Instant::now()))
    }

    fn put_until(&self, item: &T, deadline: Option<Instant>) -> Result<()> {
        with_scratch(|buf| {
            let (encoded, fds) = collect_fds(|| codec::encode_into(item, std::mem::take(buf)));
            *buf = encoded?;
            if !fds.is_empty() {
                return Err(Error::Serialization(format!(
                    "this {} owns file descriptors (shared memory, a lock, a Connection or a \
                     queue), which cannot travel through a Queue's shared memory; send it over \
                     a Pipe or pass it to the process as an argument",
                    std::any::type_name::<T>()
                )));
            }
            self.ring.put(buf, deadline).map_err(|e| e.into_error(true))
        })
    }
}

impl<T: DeserializeOwned + 'static> Queue<T> {
    /// Removes and returns the first item, waiting for one (Python's `get()`).
    ///
    /// Errors: the queue is closed and empty ([`Error::QueueClosed`]); the item does not
    /// decode as a `T` ([`Error::Serialization`]; the item is consumed).
    pub fn get(&self) -> Result<T> {
        self.get_until(None)
    }

    /// Like [`get`](Self::get), but gives up after `timeout` with [`Error::Empty`] (Python's
    /// `get(timeout=t)` raising `queue.Empty`; see the [type docs](Self) on why not
    /// [`Error::Timeout`]).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_until(deadline_after(timeout))
    }

    /// Returns the first item if there is one now; otherwise [`Error::Empty`] (Python's
    /// `get_nowait` raising `queue.Empty`).
    pub fn get_nowait(&self) -> Result<T> {
        self.get_until(Some(Instant::now()))
    }

    fn get_until(&self, deadline: Option<Instant>) -> Result<T> {
        with_scratch(|buf| {
            self.ring
                .get(buf, deadline)
                .map_err(|e| e.into_error(false))?;
            codec::decode(buf)
        })
    }
}

/// Python's `multiprocessing.JoinableQueue`: a [`Queue`] (all of its methods, through
/// `Deref`) whose consumers mark each item done with [`task_done`](Self::task_done), so that
/// [`join`](Self::join) can wait until every item put has been processed.
///
/// The count of unfinished items lives in the queue's shared memory, so producers, consumers
/// and joiners may be in different processes. An item taken by a consumer that then died is
/// never marked done: `join` waits for it, which is why [`join_timeout`](Self::join_timeout)
/// exists. At most [`MAX_ITEMS`](crate::ring::MAX_ITEMS) items may be unfinished at once; a put
/// beyond that waits as on a full queue.
///
/// ```
/// use std::time::Duration;
/// use multiproc_ipc::JoinableQueue;
///
/// let q = JoinableQueue::<u64>::new(0)?;
/// for i in 0..10 {
///     q.put(&i)?;
/// }
/// let worker = {
///     let q = q.clone();
///     std::thread::spawn(move || -> multiproc_core::Result<u64> {
///         let mut sum = 0;
///         for _ in 0..10 {
///             sum += q.get()?;
///             q.task_done()?;
///         }
///         Ok(sum)
///     })
/// };
/// q.join_timeout(Duration::from_secs(10))?; // every item was marked done
/// assert_eq!(worker.join().unwrap()?, 45);
/// assert!(q.task_done().is_err()); // one more than was put
/// # Ok::<(), multiproc_core::Error>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.queue)
            .field("unfinished", &self.unfinished())
            .finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T> JoinableQueue<T> {
    /// A joinable queue of at most `maxsize` items (0: no item limit beyond the ring); see
    /// [`Queue::new`].
    pub fn new(maxsize: usize) -> Result<Self> {
        Self::with_capacity(maxsize, ring::DEFAULT_RING_BYTES)
    }

    /// A joinable queue with a ring of `ring_bytes` bytes; see [`Queue::with_capacity`].
    pub fn with_capacity(maxsize: usize, ring_bytes: usize) -> Result<Self> {
        Ok(JoinableQueue {
            queue: Queue::from_ring(Ring::new(maxsize, ring_bytes, true)?),
        })
    }

    pub(crate) fn from_queue(queue: Queue<T>) -> Self {
        JoinableQueue { queue }
    }

    /// The plain queue handle (the same queue).
    pub fn queue(&self) -> &Queue<T> {
        &self.queue
    }

    /// Marks one item taken with `get` as processed (Python's `task_done`).
    ///
    /// Errors: called more times than items were put ([`Error::InvalidArgument`] naming
    /// `task_done`; Python's `ValueError`).
    pub fn task_done(&self) -> Result<()> {
        self.queue.ring().task_done()
    }

    /// Items put and not yet marked done.
    pub fn unfinished(&self) -> usize {
        self.queue.ring().unfinished()
    }

    /// Waits until every item put has been marked done (Python's `join`).
    pub fn join(&self) -> Result<()> {
        self.queue.ring().join(None);
        Ok(())
    }

    /// Like [`join`](Self::join), but gives up after `timeout` with [`Error::Timeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        if self.queue.ring().join(deadline_after(timeout)) {
            Ok(())
        } else {
            Err(Error::Timeout(timeout))
        }
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<X: Send + Sync>() {}
    is::<Queue<std::rc::Rc<u8>>>();
    is::<JoinableQueue<std::rc::Rc<u8>>>();
}

// ---------------------------------------------------------------------------------------------
// Crossing into another process
// ---------------------------------------------------------------------------------------------

/// What a queue is on the wire: its kind and its three pieces of shared memory (ring, put
/// lock, get lock), each a [`ShmBuffer`](multiproc_shared_array::ShmBuffer) that travels as a
/// descriptor through [`multiproc_core::handoff`] and is checked on arrival (a sealed memfd of
/// the announced size; a lock's own header); the ring's header is checked by `Ring::attach`.
mod wire {
    use multiproc_shared_array::{ProcessLock, ShmBuffer};
    use serde::{Deserialize, Serialize};

    use crate::ring::Ring;

    pub(super) fn serialize<S: serde::Serializer>(
        ring: &Ring,
        joinable: bool,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        if !multiproc_core::handoff::collecting() {
            return Err(serde::ser::Error::custom(
                "a Queue lives in shared memory: it can only be sent over a Pipe or passed to \
                 a process by multiproc, not serialized to bytes alone",
            ));
        }
        let (buf, put_lock, get_lock) = ring.parts();
        (joinable, buf, put_lock, get_lock).serialize(s)
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
        joinable: bool,
    ) -> std::result::Result<Ring, D::Error> {
        let (sent_joinable, buf, put_lock, get_lock) =
            <(bool, ShmBuffer, ProcessLock, ProcessLock)>::deserialize(d)?;
        if sent_joinable != joinable {
            return Err(serde::de::Error::custom(
                "a Queue and a JoinableQueue are not interchangeable",
            ));
        }
        Ring::attach(buf, put_lock, get_lock, joinable)
            .map_err(|e| serde::de::Error::custom(format!("cannot attach a received Queue: {e}")))
    }
}

/// A queue serializes as descriptors of its shared memory (see
/// [`multiproc_core::handoff`]), so it can be passed to a spawned process or sent over a
/// [`Connection`](crate::Connection); the receiver gets a handle to the same queue.
/// Serializing it to bytes alone is an error.
impl<T> Serialize for Queue<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        wire::serialize(&self.ring, false, s)
    }
}

impl<'de, T> serde::Deserialize<'de> for Queue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Queue::from_ring(wire::deserialize(d, false)?))
    }
}

/// As for [`Queue`]: a joinable queue crosses into another process as its shared memory.
impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        wire::serialize(&self.queue.ring, true, s)
    }
}

impl<'de, T> serde::Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(JoinableQueue::from_queue(Queue::from_ring(
            wire::deserialize(d, true)?,
        )))
    }
}
