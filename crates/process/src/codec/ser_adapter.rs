//! The encoding half of the adapter: postcard's serializer seen through [`CodecError`].

use std::fmt;

use serde::ser::{self, Serialize};

use super::{lift, lower, CodecError, FromCustom, Keep};

/// A value to serialize with postcard's serializer `S`, seen through [`Keep`].
struct KeepValue<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for KeepValue<'_, T> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Keep(s)).map_err(lower_ser::<S::Error>)
    }
}

struct SerError<E>(E);

impl<E: ser::Error> FromCustom for SerError<E> {
    fn from_custom(message: &str) -> Self {
        SerError(E::custom(message))
    }
}

impl<E: fmt::Display> fmt::Display for SerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn lower_ser<E: ser::Error>(e: CodecError) -> E {
    lower::<SerError<E>>(e).0
}

macro_rules! forward_primitives {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method(self, v: $ty) -> Result<Self::Ok, CodecError> {
            self.0.$method(v).map_err(lift)
        }
    )*};
}

impl<S: ser::Serializer> ser::Serializer for Keep<S> {
    type Ok = S::Ok;
    type Error = CodecError;
    type SerializeSeq = Keep<S::SerializeSeq>;
    type SerializeTuple = Keep<S::SerializeTuple>;
    type SerializeTupleStruct = Keep<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Keep<S::SerializeTupleVariant>;
    type SerializeMap = Keep<S::SerializeMap>;
    type SerializeStruct = Keep<S::SerializeStruct>;
    type SerializeStructVariant = Keep<S::SerializeStructVariant>;

    forward_primitives!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Result<S::Ok, CodecError> {
        self.0.serialize_none().map_err(lift)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, CodecError> {
        self.0.serialize_some(&KeepValue(value)).map_err(lift)
    }

    fn serialize_unit(self) -> Result<S::Ok, CodecError> {
        self.0.serialize_unit().map_err(lift)
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, CodecError> {
        self.0
            .serialize_unit_variant(name, index, variant)
            .map_err(lift)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, CodecError> {
        self.0
            .serialize_newtype_struct(name, &KeepValue(value))
            .map_err(lift)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, CodecError> {
        self.0
            .serialize_newtype_variant(name, index, variant, &KeepValue(value))
            .map_err(lift)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, CodecError> {
        self.0.serialize_seq(len).map(Keep).map_err(lift)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, CodecError> {
        self.0.serialize_tuple(len).map(Keep).map_err(lift)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, CodecError> {
        self.0
            .serialize_tuple_struct(name, len)
            .map(Keep)
            .map_err(lift)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, CodecError> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Keep)
            .map_err(lift)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, CodecError> {
        self.0.serialize_map(len).map(Keep).map_err(lift)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, CodecError> {
        self.0.serialize_struct(name, len).map(Keep).map_err(lift)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, CodecError> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Keep)
            .map_err(lift)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! forward_compound {
    ($trait:ident, field) => {
        impl<S: ser::$trait> ser::$trait for Keep<S> {
            type Ok = S::Ok;
            type Error = CodecError;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), CodecError> {
                self.0.serialize_field(key, &KeepValue(value)).map_err(lift)
            }

            fn skip_field(&mut self, key: &'static str) -> Result<(), CodecError> {
                self.0.skip_field(key).map_err(lift)
            }

            fn end(self) -> Result<S::Ok, CodecError> {
                self.0.end().map_err(lift)
            }
        }
    };
    ($trait:ident, $method:ident) => {
        impl<S: ser::$trait> ser::$trait for Keep<S> {
            type Ok = S::Ok;
            type Error = CodecError;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
                self.0.$method(&KeepValue(value)).map_err(lift)
            }

            fn end(self) -> Result<S::Ok, CodecError> {
                self.0.end().map_err(lift)
            }
        }
    };
}

forward_compound!(SerializeSeq, serialize_element);
forward_compound!(SerializeTuple, serialize_element);
forward_compound!(SerializeTupleStruct, serialize_field);
forward_compound!(SerializeTupleVariant, serialize_field);
forward_compound!(SerializeStruct, field);
forward_compound!(SerializeStructVariant, field);

impl<S: ser::SerializeMap> ser::SerializeMap for Keep<S> {
    type Ok = S::Ok;
    type Error = CodecError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CodecError> {
        self.0.serialize_key(&KeepValue(key)).map_err(lift)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        self.0.serialize_value(&KeepValue(value)).map_err(lift)
    }

    fn end(self) -> Result<S::Ok, CodecError> {
        self.0.end().map_err(lift)
    }
}
