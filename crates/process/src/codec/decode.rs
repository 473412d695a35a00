//! The decoding half of the codec: a serde deserializer reading the format described in
//! [`super`] from a byte slice.
//!
//! Every read checks that the bytes are there (bad input is an error, never a panic); the
//! checks are `#[inline]` with their errors `#[cold]`, so a `Vec<f64>` decodes in a tight
//! loop.

use multiproc_core::packed::{LEND_ALIGN, LEND_MIN};
use serde::de::{self, DeserializeSeed, Visitor};

use super::CodecError;

/// The deserializer: reads `bytes` from `at` on.
pub(super) struct Deserializer<'de> {
    bytes: &'de [u8],
    /// Where the next value starts (at most `bytes.len()`). One index, not a shrinking
    /// slice: a `Vec<u8>` decodes with one store per element, not two.
    at: usize,
}

#[cold]
fn error(message: &str) -> CodecError {
    CodecError::new(message.to_string(), false)
}

#[cold]
fn unexpected_end() -> CodecError {
    error("the bytes ended in the middle of a value")
}

impl<'de> Deserializer<'de> {
    /// Reads from the start of `bytes`.
    pub(super) fn new(bytes: &'de [u8]) -> Self {
        Deserializer { bytes, at: 0 }
    }

    /// The bytes after what was read.
    pub(super) fn rest(&self) -> &'de [u8] {
        &self.bytes[self.at..]
    }

    #[inline(always)]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        match self.bytes.get(self.at..).and_then(<[u8]>::first_chunk::<N>) {
            Some(head) => {
                self.at += N;
                Ok(*head)
            }
            None => Err(unexpected_end()),
        }
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8, CodecError> {
        match self.bytes.get(self.at) {
            Some(b) => {
                self.at += 1;
                Ok(*b)
            }
            None => Err(unexpected_end()),
        }
    }

    #[inline]
    fn len(&mut self) -> Result<usize, CodecError> {
        let len = u64::from_le_bytes(self.take()?);
        usize::try_from(len).map_err(|_| error("a length too large for this machine"))
    }

    /// A length, then (from [`LEND_MIN`] bytes on) the padding that aligns them, then the
    /// bytes.
    #[inline]
    fn bytes(&mut self) -> Result<&'de [u8], CodecError> {
        let len = self.len()?;
        if len >= LEND_MIN {
            let pad = usize::from(self.byte()?);
            if pad >= LEND_ALIGN {
                return Err(error("a block's pad count past its alignment"));
            }
            self.skip(pad)?;
        }
        self.skip(len)
    }

    /// The next `len` bytes.
    #[inline]
    fn skip(&mut self, len: usize) -> Result<&'de [u8], CodecError> {
        match self.bytes.get(self.at..).and_then(|rest| rest.get(..len)) {
            Some(head) => {
                self.at += len;
                Ok(head)
            }
            None => Err(unexpected_end()),
        }
    }

    /// A sequence's or a map's element count. Past one element per byte left, only elements
    /// that take no bytes (`()`, unit structs) can be there, and a count of those past 2^32 is
    /// refused: nothing else would bound the decoder's loop over a corrupt count.
    fn count(&mut self) -> Result<usize, CodecError> {
        let n = self.len()?;
        let left = self.bytes.len().saturating_sub(self.at);
        if n > left && n > u32::MAX as usize {
            return Err(error(&format!(
                "a sequence of {n} elements in the {left} bytes left"
            )));
        }
        Ok(n)
    }

    /// A length, then that many values of `width` bytes: their bytes (the block path).
    #[inline]
    fn block(&mut self, width: usize) -> Result<&'de [u8], CodecError> {
        let len = self.len()?;
        let len = len.checked_mul(width).ok_or_else(unexpected_end)?;
        self.skip(len)
    }

    #[inline]
    fn str(&mut self) -> Result<&'de str, CodecError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| error("a string that is not UTF-8"))
    }

    #[inline]
    fn variant(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
}

macro_rules! fixed {
    ($($method:ident($ty:ty, $visit:ident)),* $(,)?) => {$(
        #[inline(always)]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
            let v = <$ty>::from_le_bytes(self.take()?);
            visitor.$visit(v)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = CodecError;

    fixed!(
        deserialize_i8(i8, visit_i8),
        deserialize_i16(i16, visit_i16),
        deserialize_i32(i32, visit_i32),
        deserialize_i64(i64, visit_i64),
        deserialize_i128(i128, visit_i128),
        deserialize_u16(u16, visit_u16),
        deserialize_u32(u32, visit_u32),
        deserialize_u64(u64, visit_u64),
        deserialize_u128(u128, visit_u128),
        deserialize_f32(f32, visit_f32),
        deserialize_f64(f64, visit_f64),
    );

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, CodecError> {
        Err(error(
            "the codec is not self-describing: a type that decodes whatever comes \
             (deserialize_any) cannot be decoded from it",
        ))
    }

    #[inline(always)]
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let b = self.byte()?;
        visitor.visit_u8(b)
    }

    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            _ => Err(error("a bool that is neither 0 nor 1")),
        }
    }

    #[inline]
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let c = char::from_u32(u32::from_le_bytes(self.take()?))
            .ok_or_else(|| error("a char that is not a Unicode scalar value"))?;
        visitor.visit_char(c)
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let s = self.str()?;
        visitor.visit_borrowed_str(s)
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        self.deserialize_str(visitor)
    }

    #[inline]
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let b = self.bytes()?;
        visitor.visit_borrowed_bytes(b)
    }

    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        self.deserialize_bytes(visitor)
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.byte()? {
            0 => visitor.visit_none(),
            1 => visitor.visit_some(self),
            _ => Err(error("an Option tag that is neither 0 nor 1")),
        }
    }

    #[inline]
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        visitor.visit_newtype_struct(self)
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        // serde's own visitor of a vector of plain numbers: one block ([`super::block`]).
        if let Some(value) = super::block::decode_seq::<V>(|width| self.block(width)) {
            return value;
        }
        let left = self.count()?;
        visitor.visit_seq(Counted { de: self, left })
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        visitor.visit_seq(Counted {
            de: self,
            left: len,
        })
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_tuple(len, visitor)
    }

    #[inline]
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let left = self.count()?;
        visitor.visit_map(Counted { de: self, left })
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_tuple(fields.len(), visitor)
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        visitor.visit_enum(self)
    }

    #[inline]
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let index = self.variant()?;
        visitor.visit_u32(index)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, CodecError> {
        Err(error(
            "the codec is not self-describing: a value cannot be skipped (deserialize_ignored_any)",
        ))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// A sequence, tuple, struct or map of `left` more elements (entries, for a map).
struct Counted<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Counted<'_, 'de> {
    type Error = CodecError;

    #[inline(always)]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, CodecError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::MapAccess<'de> for Counted<'_, 'de> {
    type Error = CodecError;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, CodecError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, CodecError> {
        seed.deserialize(&mut *self.de)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::EnumAccess<'de> for &mut Deserializer<'de> {
    type Error = CodecError;
    type Variant = Self;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), CodecError> {
        let index = self.variant()?;
        let value = seed.deserialize(de::value::U32Deserializer::<CodecError>::new(index))?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Deserializer<'de> {
    type Error = CodecError;

    #[inline]
    fn unit_variant(self) -> Result<(), CodecError> {
        Ok(())
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, CodecError> {
        seed.deserialize(self)
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        de::Deserializer::deserialize_tuple(self, fields.len(), visitor)
    }
}
