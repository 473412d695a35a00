//! The encoding half of the codec: a serde serializer that writes the format described in
//! [`super`] into an [`Output`].
//!
//! Everything is `#[inline]`: a `Vec<f64>` calls `serialize_f64` once per element, and the
//! whole loop — capacity check, 8-byte store — must compile into the caller's.

use multiproc_core::packed::{LEND_ALIGN, LEND_MIN};
use serde::ser::{self, Serialize};

use super::{CodecError, Output};

/// The serializer: appends to `out`.
pub(super) struct Serializer<'a, O: Output> {
    pub(super) out: &'a mut O,
}

impl<O: Output> Serializer<'_, O> {
    #[inline(always)]
    fn len(&mut self, len: usize) {
        // `usize` is at most 64 bits on every target Rust supports.
        self.out.write(&(len as u64).to_le_bytes());
    }

    #[inline(always)]
    fn variant(&mut self, index: u32) {
        self.out.write(&index.to_le_bytes());
    }
}

#[cold]
fn unknown_length() -> CodecError {
    CodecError::new(
        "a sequence or map must know its length to be encoded".to_string(),
        false,
    )
}

macro_rules! fixed {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        #[inline(always)]
        fn $method(self, v: $ty) -> Result<(), CodecError> {
            self.out.write(&v.to_le_bytes());
            Ok(())
        }
    )*};
}

impl<'s, 'a, O: Output> ser::Serializer for &'s mut Serializer<'a, O> {
    type Ok = ();
    type Error = CodecError;
    type SerializeSeq = Counted<'s, 'a, O>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Counted<'s, 'a, O>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fixed!(
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
    );

    #[inline(always)]
    fn serialize_bool(self, v: bool) -> Result<(), CodecError> {
        self.out.push(u8::from(v));
        Ok(())
    }

    #[inline(always)]
    fn serialize_i8(self, v: i8) -> Result<(), CodecError> {
        self.out.push(v as u8);
        Ok(())
    }

    #[inline(always)]
    fn serialize_u8(self, v: u8) -> Result<(), CodecError> {
        self.out.push(v);
        Ok(())
    }

    #[inline]
    fn serialize_char(self, v: char) -> Result<(), CodecError> {
        self.out.write(&u32::from(v).to_le_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), CodecError> {
        self.serialize_bytes(v.as_bytes())
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CodecError> {
        self.len(v.len());
        if v.len() >= LEND_MIN {
            // Aligned for reading in place (see the format in `super`): the count, then the
            // zeros up to the next multiple of the alignment.
            let pad = (LEND_ALIGN - (self.out.written() + 1) % LEND_ALIGN) % LEND_ALIGN;
            self.out.push(pad as u8);
            self.out.write(&[0; LEND_ALIGN][..pad]);
        }
        self.out.write(v);
        Ok(())
    }

    #[inline]
    fn serialize_none(self) -> Result<(), CodecError> {
        self.out.push(0);
        Ok(())
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CodecError> {
        self.out.push(1);
        value.serialize(self)
    }

    #[inline]
    fn serialize_unit(self) -> Result<(), CodecError> {
        Ok(())
    }

    #[inline]
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), CodecError> {
        Ok(())
    }

    #[inline]
    fn serialize_unit_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
    ) -> Result<(), CodecError> {
        self.variant(index);
        Ok(())
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CodecError> {
        value.serialize(self)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), CodecError> {
        self.variant(index);
        value.serialize(self)
    }

    /// serde's `Serialize` for a `Vec` or a slice calls this with a reference to itself: a
    /// vector of plain numbers goes as one block ([`super::block`]), anything else through
    /// `serialize_seq` element by element (serde's own default, written out).
    #[inline]
    fn collect_seq<I>(self, iter: I) -> Result<(), CodecError>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        if super::block::encode_seq(&iter, self.out) {
            return Ok(());
        }
        let mut iter = iter.into_iter();
        let len = match iter.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(lo),
            _ => None,
        };
        let mut seq = self.serialize_seq(len)?;
        iter.try_for_each(|item| ser::SerializeSeq::serialize_element(&mut seq, &item))?;
        ser::SerializeSeq::end(seq)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Counted<'s, 'a, O>, CodecError> {
        let len = len.ok_or_else(unknown_length)?;
        self.len(len);
        Ok(Counted {
            ser: self,
            announced: len,
            written: 0,
        })
    }

    #[inline]
    fn serialize_tuple(self, _: usize) -> Result<Self, CodecError> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, CodecError> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, CodecError> {
        self.variant(index);
        Ok(self)
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Counted<'s, 'a, O>, CodecError> {
        self.serialize_seq(len)
    }

    #[inline]
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, CodecError> {
        Ok(self)
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, CodecError> {
        self.variant(index);
        Ok(self)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

macro_rules! compound {
    ($trait:ident, $method:ident $(, $key:ty)?) => {
        impl<O: Output> ser::$trait for &mut Serializer<'_, O> {
            type Ok = ();
            type Error = CodecError;

            #[inline(always)]
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $(_: $key,)?
                value: &T,
            ) -> Result<(), CodecError> {
                value.serialize(&mut **self)
            }

            #[inline]
            fn end(self) -> Result<(), CodecError> {
                Ok(())
            }
        }
    };
}

compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeStruct, serialize_field, &'static str);
compound!(SerializeStructVariant, serialize_field, &'static str);

/// A sequence or a map being written: its elements (a map's entries) are counted against
/// the length written before them, which the decoder trusts — a `Serialize` that breaks its
/// announced length is an error here, not a body that decodes into other values.
pub(super) struct Counted<'s, 'a, O: Output> {
    ser: &'s mut Serializer<'a, O>,
    announced: usize,
    written: usize,
}

impl<O: Output> Counted<'_, '_, O> {
    /// Counts one more element: an error past the announced length.
    #[inline(always)]
    fn one_more(&mut self) -> Result<(), CodecError> {
        if self.written == self.announced {
            return Err(self.broken("more"));
        }
        self.written += 1;
        Ok(())
    }

    #[cold]
    fn broken(&self, what: &str) -> CodecError {
        CodecError::new(
            format!(
                "a sequence or map announced {} elements and wrote {what}",
                self.announced
            ),
            false,
        )
    }

    #[inline]
    fn finish(self) -> Result<(), CodecError> {
        if self.written == self.announced {
            Ok(())
        } else {
            Err(self.broken(&self.written.to_string()))
        }
    }
}

impl<O: Output> ser::SerializeSeq for Counted<'_, '_, O> {
    type Ok = ();
    type Error = CodecError;

    #[inline(always)]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        self.one_more()?;
        value.serialize(&mut *self.ser)
    }

    #[inline]
    fn end(self) -> Result<(), CodecError> {
        self.finish()
    }
}

impl<O: Output> ser::SerializeMap for Counted<'_, '_, O> {
    type Ok = ();
    type Error = CodecError;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CodecError> {
        self.one_more()?;
        key.serialize(&mut *self.ser)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        value.serialize(&mut *self.ser)
    }

    #[inline]
    fn end(self) -> Result<(), CodecError> {
        self.finish()
    }
}
