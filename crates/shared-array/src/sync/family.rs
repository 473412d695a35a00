//! [`ProcessSync`], the family of the six primitives, and what every primitive gets from
//! being its buffer: serde through [`multiproc_core::handoff`] and `try_clone` (why not
//! `Clone`: see `crate::clone`). The six are listed once, in `via_buffer!` below.

use multiproc_core::{Result, SyncFamily};

use super::barrier::ProcessBarrier;
use super::condition::ProcessCondition;
use super::event::ProcessEvent;
use super::lock::ProcessLock;
use super::rlock::ProcessRLock;
use super::semaphore::ProcessSemaphore;
use crate::ShmBuffer;

/// The process-shared [`SyncFamily`]: every primitive lives in shared memory and works across
/// forked (and, via `from_buffer`, spawned) processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessSync;

impl SyncFamily for ProcessSync {
    const NAME: &'static str = "process";
    type Lock = ProcessLock;
    type RLock = ProcessRLock;
    type Event = ProcessEvent;
    type Condition = ProcessCondition;
    type Semaphore = ProcessSemaphore;
    type Barrier = ProcessBarrier;

    fn lock() -> Result<ProcessLock> {
        ProcessLock::new()
    }
    fn rlock() -> Result<ProcessRLock> {
        ProcessRLock::new()
    }
    fn event() -> Result<ProcessEvent> {
        ProcessEvent::new()
    }
    fn condition() -> Result<ProcessCondition> {
        ProcessCondition::new()
    }
    fn semaphore(value: usize) -> Result<ProcessSemaphore> {
        ProcessSemaphore::new(value)
    }
    fn bounded_semaphore(value: usize) -> Result<ProcessSemaphore> {
        ProcessSemaphore::bounded(value)
    }
    fn barrier(parties: usize) -> Result<ProcessBarrier> {
        ProcessBarrier::new(parties)
    }
}

// ----------------------------------------------------------------------------------------------
// Crossing into another process as serde values (multiproc_core::handoff), and second handles
// ----------------------------------------------------------------------------------------------

macro_rules! via_buffer {
    ($($t:ident),* $(,)?) => {$(
        impl $t {
            /// A second handle to the same primitive (its descriptor duplicated and mapped
            /// again): the same state whichever handle is used — a hold taken through one
            /// blocks the other, and outlives the handle it was taken through. Not `Clone`,
            /// because a duplicate descriptor and mapping can fail to be had (as for
            /// [`ShmBuffer::try_clone`]); within one process an `Arc` is the cheaper,
            /// infallible share.
            ///
            /// Errors: out of descriptors or address space
            /// ([`Error::Io`](multiproc_core::Error::Io)).
            pub fn try_clone(&self) -> Result<Self> {
                $t::from_buffer(ShmBuffer::try_clone(self.buffer())?)
            }
        }

        /// Through a multiproc transport (a pool's arguments, a spawned `Process`, a `Pipe`) the
        /// primitive travels as its shared memory's descriptor, and the receiver attaches to the
        /// same state, as [`from_buffer`](Self::from_buffer) does. Outside a transport,
        /// serializing it is an error (see [`multiproc_core::handoff`]).
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                serde::Serialize::serialize(self.buffer(), s)
            }
        }

        /// Checks the descriptor (see [`ShmBuffer`]'s `Deserialize`) and that it holds this kind
        /// of primitive (an error naming `buffer`).
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let buf = <ShmBuffer as serde::Deserialize>::deserialize(d)?;
                $t::from_buffer(buf).map_err(<D::Error as serde::de::Error>::custom)
            }
        }
    )*};
}

via_buffer!(
    ProcessLock,
    ProcessRLock,
    ProcessEvent,
    ProcessCondition,
    ProcessSemaphore,
    ProcessBarrier,
);
