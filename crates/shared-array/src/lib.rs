//! # multiproc-shared-array
//!
//! Python's read/write sharing (`multiprocessing.RawArray`, `Array`, `Value`, and the
//! process-shared `Lock`, `RLock`, `Event`, `Condition`, `Semaphore`, `BoundedSemaphore`,
//! `Barrier`) on anonymous shared memory, for threads, forked and spawned processes alike —
//! without a data race reachable from safe code, although safe code can fork.
//!
//! | Python | here | notes |
//! |---|---|---|
//! | shared memory block | [`ShmBuffer`] | memfd + `MAP_SHARED`, mode 0600, sealed size; nothing in `/dev/shm`; a [`SharedBuffer`](multiproc_core::SharedBuffer) (atomic access) |
//! | passing it to a spawned process | serde through [`multiproc_core::handoff`], or [`send_buffer`] / [`recv_buffer`] | the descriptor over a Unix socket (`SCM_RIGHTS`); every type below is `Serialize + Deserialize` (except `LocalArray`) |
//! | `RawArray(typecode, n)` | [`RawArray<T>`] | `T: bytemuck::Pod`; `Send + Sync`; atomic `load`/`store`/`read_range`/`write_range`/`fill`/`to_vec`; `unsafe` zero-copy slices and views |
//! | filling it with numpy before the pool | [`LocalArray<T>`] | this thread's alone: `&mut [T]`, ndarray views; [`share`](LocalArray::share) → `RawArray` without a copy |
//! | read-only data every worker slices | [`FrozenArray<T>`] | sealed immutable by the kernel: `&[T]` and views in every process, `Send + Sync` |
//! | `Array(typecode, n)` | [`Array<T>`] | `get_lock()`, `lock()` → [`ArrayGuard`] (`&mut [T]`, views, of a private copy written back on drop) |
//! | `Value(typecode, v)` | [`Value<T>`] | `get`/`set`/`lock()`; `atomic()` for integers |
//! | `np.frombuffer(arr).reshape(shape)` | [`LocalArray::view`], [`FrozenArray::view`], [`RawArray::to_ndarray`] (copy) | feature `ndarray`; shape errors name `shape` |
//! | `multiprocessing.Lock`, `RLock`, ... | [`ProcessLock`], [`ProcessRLock`], [`ProcessEvent`], [`ProcessCondition`], [`ProcessSemaphore`], [`ProcessBarrier`] | the [`ProcessSync`] family of core's traits; the locks are robust ([`Error::OwnerDied`](multiproc_core::Error::OwnerDied)) |
//!
//! Which access to shared elements is sound when, across processes, is argued in
//! [`array`](crate::array#soundness-across-processes) (and for `LocalArray` in
//! [`local`]); how the robust lock works, and why it is a futex word rather
//! than a pthread robust mutex, in [`sync`](crate::sync#the-robust-lock).
//!
//! ```
//! use multiproc_core::Lock;
//! use multiproc_shared_array::{LocalArray, ProcessLock, RawArray, Value};
//!
//! // Build the data with plain slices, then share it (no copy) before forking workers.
//! let mut data = LocalArray::<f64>::from_iter((0..8).map(f64::from))?;
//! for x in data.iter_mut() {
//!     *x *= *x;
//! }
//! let data: RawArray<f64> = data.share();
//! let total = Value::new(0.0_f64)?;
//! let lock = ProcessLock::new()?;
//!
//! // What a worker does: atomic copies in and out of the shared array.
//! let mut chunk = [0.0; 4];
//! data.read_range(4, &mut chunk)?;
//! {
//!     let _held = lock.lock()?;
//!     *total.lock()? += chunk.iter().sum::<f64>();
//! }
//! assert_eq!(total.get()?, 126.0);
//! # Ok::<(), multiproc_core::Error>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod array;
mod buffer;
mod clone;
pub mod frozen;
pub mod local;
mod os;
pub mod sync;

pub use array::{Array, ArrayGuard, RawArray, Value, ValueGuard};
pub use buffer::{recv_buffer, send_buffer, ShmBuffer};
pub use frozen::{FreezeError, FrozenArray};
pub use local::LocalArray;
/// Which pages back a buffer ([`ShmBuffer::pages`], [`RawArray::pages`],
/// [`FrozenArray::pages`]): huge pages where the system offers them, see
/// [`multiproc_sys::pages`].
pub use multiproc_sys::pages::PageKind;
pub use sync::{
    ProcessBarrier, ProcessCondition, ProcessEvent, ProcessLock, ProcessRLock, ProcessSemaphore,
    ProcessSync,
};

/// The `ndarray` crate that the views ([`LocalArray::view`], [`FrozenArray::view`],
/// [`RawArray::to_ndarray`], ...) are made of (feature `ndarray`). Name ndarray's types through
/// it — `multiproc_shared_array::ndarray::ArrayView2`, or `multiproc::shared_array::ndarray`
/// from the facade — and they are the same types as this crate's, whichever ndarray release
/// your own crate depends on. This crate accepts ndarray 0.16 and 0.17, so a crate of yours
/// that depends on 0.16 can have both use one copy: `cargo update -p ndarray@0.17.2 --precise
/// 0.16.1` (naming the 0.17 release your lock file holds).
#[cfg(feature = "ndarray")]
pub use ndarray;
