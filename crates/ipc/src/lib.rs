//! # multiproc-ipc
//!
//! Python's ways of exchanging objects between processes — `multiprocessing.Pipe`, `Queue`
//! and `JoinableQueue` — for threads, forked processes and spawned processes alike.
//!
//! | Python | here | transport |
//! |---|---|---|
//! | `Pipe(duplex=True)` | [`pipe`] → two [`Connection`]s | a Unix stream socket; values may carry file descriptors (`SCM_RIGHTS`) |
//! | `conn.send(obj)` / `conn.recv()` | [`Connection::send`] / [`Connection::recv`] | serde values, encoded by the one codec |
//! | `conn.poll(timeout)` | [`Connection::poll`] | |
//! | `Queue(maxsize)` | [`Queue`] (`put`/`get` with `_timeout` and `_nowait` forms, `qsize`, `empty`, `full`, `close`) | a ring in anonymous shared memory, two robust process-shared locks |
//! | `JoinableQueue` | [`JoinableQueue`] (`task_done`, `join`, `join_timeout`) | the same ring, with a shared count of unfinished items |
//! | `queue.Empty`, `queue.Full` (`get`/`put` with a timeout, `_nowait`) | [`Error::Empty`], [`Error::Full`] | |
//! | "Queue is closed" | [`Error::QueueClosed`] | |
//! | `EOFError` (`recv`), `BrokenPipeError` (`send`): the other end is closed | [`Error::PipeClosed`] | |
//!
//! **Which to use.** A [`Queue`] is the fast path for small values between many producers
//! and consumers: a put and a get are a few atomic operations on shared memory, with no
//! system call unless someone has to wait (see `benches/queue.rs` for the numbers). A
//! [`Connection`] costs a system call per message but carries anything serde can encode,
//! including values that own file descriptors — shared arrays, locks, queues, other
//! connections — which a `Queue` refuses.
//!
//! **Crossing into a process.** A forked child inherits queues and connections made before
//! the fork. A spawned process (or a process pool's task) receives them as serde arguments:
//! `Queue`, `JoinableQueue` and `Connection` serialize through
//! [`multiproc_core::handoff`], their shared memory and sockets travelling as descriptors.
//!
//! **Nothing hangs.** Every blocking call has a `_timeout` form. A process that dies while
//! holding a queue's lock (killed inside a `get`, say) does not block the others: the next
//! one takes the lock over within about 50 ms and carries on, because every change to the
//! queue is committed by a single atomic operation ([`ring`] explains the design).
//!
//! ```
//! use std::time::Duration;
//! use multiproc_ipc::{pipe, Queue};
//!
//! // A queue between a producer thread and this one (a forked or spawned process works the
//! // same way).
//! let q = Queue::<Vec<u32>>::new(0)?;
//! let producer = {
//!     let q = q.clone();
//!     std::thread::spawn(move || -> multiproc_core::Result<()> {
//!         for i in 0..3 {
//!             q.put(&vec![i; 3])?;
//!         }
//!         q.close(); // consumers drain, then see the end
//!         Ok(())
//!     })
//! };
//! let mut got = Vec::new();
//! loop {
//!     match q.get_timeout(Duration::from_secs(10)) {
//!         Ok(item) => got.push(item),
//!         Err(multiproc_ipc::Error::QueueClosed) => break,
//!         Err(e) => return Err(e),
//!     }
//! }
//! producer.join().unwrap()?;
//! assert_eq!(got, vec![vec![0; 3], vec![1; 3], vec![2; 3]]);
//!
//! // A pipe can carry a connection (or a shared array, a lock, a queue) to the other side.
//! let (a, b) = pipe(true)?;
//! let (x, y) = pipe(true)?;
//! a.send(&y)?;
//! let y2: multiproc_ipc::Connection = b.recv()?;
//! y2.send(&"through the passed end")?;
//! assert!(x.poll(Duration::from_secs(10))?);
//! assert_eq!(x.recv::<String>()?, "through the passed end");
//! # drop(y);
//! # Ok::<(), multiproc_core::Error>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod codec;
mod futex;
mod pipe;
mod queue;
pub mod ring;
#[cfg(feature = "testing")]
pub mod testing;

pub use multiproc_core::{Error, Result};
pub use pipe::{pipe, Connection};
pub use queue::{JoinableQueue, Queue};

/// Whether `error` means "the other side is gone / the queue is closed":
/// [`Error::PipeClosed`] (a [`Connection`]'s peer closed) or [`Error::QueueClosed`] (a
/// [`Queue`] was [`close`](Queue::close)d). These are the errors a consumer loop ends on,
/// whether it reads a queue or a pipe.
pub fn is_closed(error: &Error) -> bool {
    matches!(error, Error::PipeClosed | Error::QueueClosed)
}
