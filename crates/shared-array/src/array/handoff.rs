//! `RawArray`, `Array` and `Value` as serde values (see [`multiproc_core::handoff`]): the
//! descriptors, the length and the element type, checked on arrival.

use bytemuck::Pod;
use multiproc_core::{Error, Result};

use super::copy::rename_buf;
use super::locked::Array;
use super::raw::RawArray;
use super::value::Value;
use crate::sync::ProcessRLock;
use crate::ShmBuffer;

// Crossing into another process as serde values (multiproc_core::handoff)
// ----------------------------------------------------------------------------------------------

/// The element type a shared array was made for, sent along so that the receiver cannot
/// reinterpret it by mistake (the sender and receiver run the same binary).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ElemType {
    size: u64,
    align: u64,
    name: String,
}

impl ElemType {
    pub(crate) fn of<T>() -> Self {
        ElemType {
            size: std::mem::size_of::<T>() as u64,
            align: std::mem::align_of::<T>() as u64,
            name: std::any::type_name::<T>().to_owned(),
        }
    }

    /// Errors (naming `T`) unless this is `T`.
    pub(crate) fn check<T>(&self) -> Result<()> {
        let want = Self::of::<T>();
        if *self != want {
            return Err(Error::invalid(
                "T",
                format!(
                    "the array was sent as {} ({} bytes, align {}), received as {} ({} bytes, \
                     align {})",
                    self.name, self.size, self.align, want.name, want.size, want.align
                ),
            ));
        }
        Ok(())
    }
}

/// Converts a length from the wire, naming `len`.
pub(crate) fn wire_len(len: u64) -> Result<usize> {
    usize::try_from(len).map_err(|_| Error::invalid("len", format!("{len} is too large")))
}

/// Through a multiproc transport, a `RawArray` travels as its buffer's descriptor, its length
/// and its element type; the receiver maps the same memory and gets a `RawArray` — atomic
/// access only, like every other handle. Outside a transport, serializing it is an error (see
/// [`multiproc_core::handoff`]).
impl<T: Pod> serde::Serialize for RawArray<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.buf, self.len as u64, ElemType::of::<T>()).serialize(s)
    }
}

/// Checks the element type (an error naming `T`), the descriptor (see [`ShmBuffer`]'s
/// `Deserialize`) and that `len` elements fit in it (naming `len`).
impl<'de, T: Pod> serde::Deserialize<'de> for RawArray<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (buf, len, elem) = <(ShmBuffer, u64, ElemType)>::deserialize(d)?;
        elem.check::<T>()
            .and_then(|()| RawArray::from_buffer(buf, wire_len(len)?))
            .map_err(|e| D::Error::custom(rename_buf(e, "T")))
    }
}

/// An `Array` travels as its elements and its lock; both ends then share both.
impl<T: Pod> serde::Serialize for Array<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.data, &self.lock).serialize(s)
    }
}

impl<'de, T: Pod> serde::Deserialize<'de> for Array<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (data, lock) = <(RawArray<T>, ProcessRLock)>::deserialize(d)?;
        Ok(Array::from_parts(data, lock))
    }
}

/// A `Value` travels as its cell and its lock; both ends then share both.
impl<T: Pod> serde::Serialize for Value<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.cell, &self.lock).serialize(s)
    }
}

impl<'de, T: Pod> serde::Deserialize<'de> for Value<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (cell, lock) = <(RawArray<T>, ProcessRLock)>::deserialize(d)?;
        Value::from_parts(cell, lock).map_err(D::Error::custom)
    }
}
