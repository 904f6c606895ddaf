//! A serde `Serializer` that writes JSON in one of two forms: standard JSON, or the shape fastjson
//! writes by default (map keys that are not strings are written as bare values: `{0:"a"}`,
//! `{{"brokerName":"b","queueId":0,"topic":"t"}:1}`).
//!
//! Scalars and strings are delegated to `serde_json`, so for any value `serde_json` can serialize the
//! standard form is byte for byte what `serde_json::to_vec` produces. Map keys are serialized like any
//! other value and then fixed up by the kind of text they produced (see `Compound::serialize_key`).

use std::fmt::{self, Display};
use std::io::Write as _;

use serde::ser::{self, Serialize};

/// Which of the two JSON dialects to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum JsonForm {
    /// Standard JSON: every object key is a quoted string. A key that is a number is quoted (`"0"`);
    /// a key that is an object or array becomes a string holding its compact JSON text.
    Standard,
    /// What fastjson writes by default (`JSON.toJSONString` with no features): keys that are numbers,
    /// booleans or objects are written bare. Java peers parse this; strict JSON parsers do not.
    #[default]
    Fastjson,
}

/// An error raised by a `Serialize` implementation while writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError(String);

impl Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WriteError {}

impl ser::Error for WriteError {
    fn custom<T: Display>(msg: T) -> Self {
        WriteError(msg.to_string())
    }
}

type WResult<T = ()> = std::result::Result<T, WriteError>;

/// Serializes `value` in the given form, appending to `out`.
pub fn write_to<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T, form: JsonForm) -> WResult {
    let mut w = Writer { out, form };
    value.serialize(&mut w)
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    form: JsonForm,
}

impl Writer<'_> {
    fn scalar<T: Serialize + ?Sized>(&mut self, v: &T) -> WResult {
        serde_json::to_writer(&mut *self.out, v).map_err(|e| WriteError(e.to_string()))
    }

    fn display<T: Display>(&mut self, v: T) -> WResult {
        write!(self.out, "{v}").map_err(|e| WriteError(e.to_string()))
    }
}

impl<'w, 'a> ser::Serializer for &'w mut Writer<'a> {
    type Ok = ();
    type Error = WriteError;
    type SerializeSeq = Compound<'w, 'a>;
    type SerializeTuple = Compound<'w, 'a>;
    type SerializeTupleStruct = Compound<'w, 'a>;
    type SerializeTupleVariant = Compound<'w, 'a>;
    type SerializeMap = Compound<'w, 'a>;
    type SerializeStruct = Compound<'w, 'a>;
    type SerializeStructVariant = Compound<'w, 'a>;

    fn serialize_bool(self, v: bool) -> WResult {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> WResult {
        self.display(v)
    }
    fn serialize_i16(self, v: i16) -> WResult {
        self.display(v)
    }
    fn serialize_i32(self, v: i32) -> WResult {
        self.display(v)
    }
    fn serialize_i64(self, v: i64) -> WResult {
        self.display(v)
    }
    fn serialize_i128(self, v: i128) -> WResult {
        self.display(v)
    }
    fn serialize_u8(self, v: u8) -> WResult {
        self.display(v)
    }
    fn serialize_u16(self, v: u16) -> WResult {
        self.display(v)
    }
    fn serialize_u32(self, v: u32) -> WResult {
        self.display(v)
    }
    fn serialize_u64(self, v: u64) -> WResult {
        self.display(v)
    }
    fn serialize_u128(self, v: u128) -> WResult {
        self.display(v)
    }
    fn serialize_f32(self, v: f32) -> WResult {
        self.scalar(&v)
    }
    fn serialize_f64(self, v: f64) -> WResult {
        self.scalar(&v)
    }
    fn serialize_char(self, v: char) -> WResult {
        self.scalar(&v)
    }
    fn serialize_str(self, v: &str) -> WResult {
        self.scalar(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> WResult {
        self.scalar(v)
    }
    fn serialize_none(self) -> WResult {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> WResult {
        value.serialize(self)
    }
    fn serialize_unit(self) -> WResult {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _name: &'static str) -> WResult {
        self.serialize_none()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> WResult {
        self.scalar(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> WResult {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> WResult {
        self.out.push(b'{');
        self.scalar(variant)?;
        self.out.push(b':');
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> WResult<Self::SerializeSeq> {
        self.out.push(b'[');
        Ok(Compound::new(self, b']', false))
    }
    fn serialize_tuple(self, len: usize) -> WResult<Self::SerializeTuple> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> WResult<Self::SerializeTupleStruct> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _len: usize,
    ) -> WResult<Self::SerializeTupleVariant> {
        self.out.push(b'{');
        self.scalar(variant)?;
        self.out.extend_from_slice(b":[");
        Ok(Compound::new(self, b']', true))
    }
    fn serialize_map(self, _len: Option<usize>) -> WResult<Self::SerializeMap> {
        self.out.push(b'{');
        Ok(Compound::new(self, b'}', false))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> WResult<Self::SerializeStruct> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _len: usize,
    ) -> WResult<Self::SerializeStructVariant> {
        self.out.push(b'{');
        self.scalar(variant)?;
        self.out.extend_from_slice(b":{");
        Ok(Compound::new(self, b'}', true))
    }
}

/// An array or object being written.
struct Compound<'w, 'a> {
    w: &'w mut Writer<'a>,
    first: bool,
    close: u8,
    /// Also close the `{"Variant":` wrapper of an enum variant.
    close_variant: bool,
}

impl<'w, 'a> Compound<'w, 'a> {
    fn new(w: &'w mut Writer<'a>, close: u8, close_variant: bool) -> Self {
        Compound {
            w,
            first: true,
            close,
            close_variant,
        }
    }

    fn comma(&mut self) {
        if !self.first {
            self.w.out.push(b',');
        }
        self.first = false;
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> WResult {
        self.comma();
        value.serialize(&mut *self.w)
    }

    fn finish(self) -> WResult {
        self.w.out.push(self.close);
        if self.close_variant {
            self.w.out.push(b'}');
        }
        Ok(())
    }

    /// Writes a map key: the key is serialized as a value, then its text is fixed up by kind.
    /// A string stays as it is. A number, boolean or null stays bare in the fastjson form and is
    /// quoted in the standard form. An object or array stays bare in the fastjson form and becomes a
    /// string holding its (standard, compact) JSON text in the standard form.
    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> WResult {
        self.comma();
        let start = self.w.out.len();
        key.serialize(&mut *self.w)?;
        if self.w.form == JsonForm::Fastjson {
            return Ok(());
        }
        match self.w.out.get(start).copied() {
            Some(b'"') => Ok(()),
            Some(b'{') | Some(b'[') => {
                let text = self.w.out.split_off(start);
                let text = String::from_utf8(text).map_err(|e| WriteError(e.to_string()))?;
                self.w.scalar(&text)
            }
            Some(_) => {
                // Numbers and literals contain nothing that needs escaping inside a string.
                self.w.out.insert(start, b'"');
                self.w.out.push(b'"');
                Ok(())
            }
            None => Err(WriteError("map key serialized to nothing".into())),
        }
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> WResult {
        self.element(value)
    }
    fn end(self) -> WResult {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> WResult {
        self.element(value)
    }
    fn end(self) -> WResult {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> WResult {
        self.element(value)
    }
    fn end(self) -> WResult {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> WResult {
        self.element(value)
    }
    fn end(self) -> WResult {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> WResult {
        self.key(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> WResult {
        self.w.out.push(b':');
        value.serialize(&mut *self.w)
    }
    fn end(self) -> WResult {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> WResult {
        self.comma();
        self.w.scalar(name)?;
        self.w.out.push(b':');
        value.serialize(&mut *self.w)
    }
    fn end(self) -> WResult {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = WriteError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> WResult {
        ser::SerializeStruct::serialize_field(self, name, value)
    }
    fn end(self) -> WResult {
        self.finish()
    }
}
