//! Second handles to the same shared memory: `try_clone` for [`Value`] and [`Array`] here, and
//! for every process-shared primitive in `sync::family`, beside their serde impls
//! ([`RawArray::try_clone`](crate::RawArray::try_clone) is the model).
//!
//! # Why `try_clone` and not `Clone`
//!
//! Each handle owns its mapping and its descriptor (a [`ShmBuffer`](crate::ShmBuffer)) outright;
//! there is no reference count between handles. A second handle is therefore a second descriptor
//! (`dup`) and a second mapping (`mmap`) of the same memfd: two system calls that can fail
//! (`EMFILE` when the process is out of descriptors, `ENOMEM` when it is out of address space), and
//! they fail exactly when a program fans one object out to many workers. std calls such a copy
//! `try_clone` (`File`, `UnixStream`, `OwnedFd`), and this crate already did too
//! ([`ShmBuffer::try_clone`](crate::ShmBuffer::try_clone),
//! [`RawArray::try_clone`](crate::RawArray::try_clone)). A `Clone` would have to panic in that
//! case.
//!
//! An infallible `Clone` would need an `Arc` of the mapping inside every handle. That changes
//! the representation of nine types, and the by-value exits (`into_buffer`, `into_parts`,
//! `freeze`) would then have to fail or copy while the memory is shared. `Arc<Value<T>>`
//! (or `Arc<ProcessLock>`, ...) already gives that share within one process, infallibly and
//! without a system call. Across processes a handle travels as a descriptor, which is
//! duplicated anyway. `try_clone` is for an owned handle per task, thread or `Process`.
//!
//! Whatever the route, the clone is the same object as the original: a write through one is
//! seen through the other, a lock held through one blocks the other (the hold is in the
//! shared memory, not in the handle, so it outlives the handle it was taken through), and
//! each handle stays valid after the others are dropped — the memory is freed when the last
//! mapping and descriptor, in any process, are gone.

use bytemuck::Pod;
use multiproc_core::Result;

use crate::{Array, Value};

impl<T: Pod> Value<T> {
    /// A second handle to the same value and the same lock (both descriptors duplicated and mapped
    /// again), for example one per spawned `Process`: a write through either is seen through both,
    /// and each stays valid when the other is dropped. Not `Clone`, because a duplicate descriptor
    /// and mapping can fail to be had (as for [`RawArray::try_clone`](crate::RawArray::try_clone));
    /// within one process, an `Arc<Value<T>>` is the cheaper, infallible share.
    ///
    /// ```
    /// use multiproc_shared_array::Value;
    ///
    /// let v = Value::new(1_u32)?;
    /// let w = v.try_clone()?;
    /// w.set(2)?;
    /// assert_eq!(v.get()?, 2);
    /// # Ok::<(), multiproc_core::Error>(())
    /// ```
    ///
    /// Errors: out of descriptors or address space ([`Error::Io`](multiproc_core::Error::Io)).
    pub fn try_clone(&self) -> Result<Self> {
        Value::from_parts(self.cell().try_clone()?, self.get_lock().try_clone()?)
    }
}

impl<T: Pod> Array<T> {
    /// A second handle to the same elements and the same lock (both descriptors duplicated
    /// and mapped again): a guard taken through one excludes the other's. Not `Clone`, for the
    /// reason given on [`Value::try_clone`].
    ///
    /// Errors: out of descriptors or address space ([`Error::Io`](multiproc_core::Error::Io)).
    pub fn try_clone(&self) -> Result<Self> {
        Ok(Array::from_parts(
            self.get_obj().try_clone()?,
            self.get_lock().try_clone()?,
        ))
    }
}
