//! # multiproc-shared-array
//!
//! Python's read/write sharing (`multiprocessing.RawArray`, `Array`, `Value`, and the
//! process-shared `Lock`, `RLock`, `Event`, `Condition`, `Semaphore`, `BoundedSemaphore`,
//! `Barrier`) on anonymous shared memory, for threads, forked and spawned processes alike.
//!
//! | Python | here | notes |
//! |---|---|---|
//! | shared memory block | [`ShmBuffer`] | memfd + `MAP_SHARED`, mode 0600, sealed size; nothing in `/dev/shm`; a [`SharedBuffer`](multiproc_core::SharedBuffer) |
//! | passing it to a spawned process | [`send_buffer`] / [`recv_buffer`] | the descriptor over a Unix socket (`SCM_RIGHTS`) |
//! | `RawArray(typecode, n)` | [`RawArray<T>`] | `T: bytemuck::Pod`; slices, ndarray views, atomic `load`/`store`/`read_range`/`write_range` |
//! | `Array(typecode, n)` | [`Array<T>`] | `get_lock()`, `lock()` → [`ArrayGuard`] (`&mut [T]`, views) |
//! | `Value(typecode, v)` | [`Value<T>`] | `get`/`set`/`lock()`; `atomic()` for integers |
//! | `np.frombuffer(arr).reshape(shape)` | [`RawArray::view`] / [`view_mut`](RawArray::view_mut) | feature `ndarray`; shape errors name `shape` |
//! | `multiprocessing.Lock`, `RLock`, ... | [`ProcessLock`], [`ProcessRLock`], [`ProcessEvent`], [`ProcessCondition`], [`ProcessSemaphore`], [`ProcessBarrier`] | the [`ProcessSync`] family of core's traits; the locks are robust ([`Error::OwnerDied`](multiproc_core::Error::OwnerDied)) |
//!
//! Which access to shared elements is sound when, across processes, is argued in
//! [`array`](crate::array#soundness-across-processes); how the robust lock works, and why it
//! is a futex word rather than a pthread robust mutex, in [`sync`](crate::sync#the-robust-lock).
//!
//! ```
//! use multiproc_core::Lock;
//! use multiproc_shared_array::{ProcessLock, RawArray, Value};
//!
//! // Created before a fork, these are seen by the child too.
//! let mut data = RawArray::<f64>::from_iter((0..8).map(f64::from))?;
//! let total = Value::new(0.0_f64)?;
//! let lock = ProcessLock::new()?;
//!
//! for x in data.as_mut_slice() {
//!     *x *= *x;
//! }
//! {
//!     let _held = lock.lock()?;
//!     *total.lock()? += data.as_slice().iter().sum::<f64>();
//! }
//! assert_eq!(total.get()?, 140.0);
//! # #[cfg(feature = "ndarray")]
//! assert_eq!(data.view((2, 4))?[[1, 3]], 49.0);
//! # Ok::<(), multiproc_core::Error>(())
//! ```

pub mod array;
mod buffer;
mod os;
pub mod sync;

pub use array::{Array, ArrayGuard, RawArray, Value, ValueGuard};
pub use buffer::{recv_buffer, send_buffer, ShmBuffer};
pub use sync::{
    ProcessBarrier, ProcessCondition, ProcessEvent, ProcessLock, ProcessRLock, ProcessSemaphore,
    ProcessSync,
};
