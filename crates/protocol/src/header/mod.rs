//! Typed request and response headers: one struct per command, converted to and from the
//! stringified `extFields` map exactly as RocketMQ's `CommandCustomHeader` reflection does.
//!
//! Every header is declared with [`command_header!`](crate::command_header), which writes the
//! struct, its [`CommandHeader`] impl and its [`HeaderSchema`] from one compact field list. Parsing
//! is as lenient as real clients need: numbers and booleans are trimmed, booleans also accept
//! `"1"`/`"0"`, a blank number counts as absent, and unknown keys (`ns`, `bname`, `AccessKey`, ...)
//! are ignored.
//!
//! How Java's field declarations map onto the three field shapes:
//! * `@CFNotNull` without an initializer: a required `T` (absent -> [`ProtocolError::MissingField`]);
//! * a field with an initializer, or an unannotated primitive: `T` with a default (Java keeps the
//!   initial value when the key is absent, and always writes the field);
//! * any other boxed field: `Option<T>`, written only when present.

use crate::command::ExtFields;
use crate::error::{ProtocolError, Result};

pub mod broker;
pub mod client;
pub mod consumer;
pub mod namesrv;
pub mod offset;
pub mod pop;
pub mod pull;
pub mod query;
pub mod recall;
pub mod rpc;
pub mod send;
pub mod topic;
pub mod transaction;

#[cfg(test)]
mod tests;

pub use broker::*;
pub use client::*;
pub use consumer::*;
pub use namesrv::*;
pub use offset::*;
pub use pop::*;
pub use pull::*;
pub use query::*;
pub use recall::*;
pub use rpc::*;
pub use send::*;
pub use topic::*;
pub use transaction::*;

/// A header that travels in a command's `extFields`.
pub trait CommandHeader: Sized {
    /// Writes every present field as `name -> value` (numbers in decimal, booleans as `true`/`false`).
    fn write_ext_fields(&self, ext: &mut ExtFields);
    /// Reads the header; a missing required field or an unparsable value is an error naming it.
    fn from_ext_fields(ext: &ExtFields) -> Result<Self>;
}

/// The wire description of a header's fields, in declaration order.
pub trait HeaderSchema {
    const FIELDS: &'static [FieldSpec];
}

/// One field of a header as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// The extFields key (Java's field name).
    pub wire: &'static str,
    pub kind: FieldKind,
    /// Absent -> `MissingField`. False for `Option` fields and fields with a default.
    pub required: bool,
    /// The field has a default used when absent (and is therefore always written).
    pub defaulted: bool,
}

/// The value type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    String,
    Int,
    Long,
    Bool,
    /// An enum written as one of these names (read case-insensitively).
    Enum(&'static [&'static str]),
}

/// A scalar that can be a header field value.
pub trait HeaderValue: Sized {
    const KIND: FieldKind;
    /// Parses the wire text, `None` if it is not a valid value. Called with the raw text: types
    /// other than strings trim it themselves.
    fn parse_wire(raw: &str) -> Option<Self>;
    fn to_wire(&self) -> String;
}

impl HeaderValue for String {
    const KIND: FieldKind = FieldKind::String;
    fn parse_wire(raw: &str) -> Option<Self> {
        Some(raw.to_owned())
    }
    fn to_wire(&self) -> String {
        self.clone()
    }
}

impl HeaderValue for i32 {
    const KIND: FieldKind = FieldKind::Int;
    fn parse_wire(raw: &str) -> Option<Self> {
        raw.trim().parse().ok()
    }
    fn to_wire(&self) -> String {
        self.to_string()
    }
}

impl HeaderValue for i64 {
    const KIND: FieldKind = FieldKind::Long;
    fn parse_wire(raw: &str) -> Option<Self> {
        raw.trim().parse().ok()
    }
    fn to_wire(&self) -> String {
        self.to_string()
    }
}

impl HeaderValue for bool {
    const KIND: FieldKind = FieldKind::Bool;
    /// `true`/`false` in any case, and `1`/`0` as the C++ client writes them. Java would read
    /// `"1"` as false, which turns a C++ batch into one message; reading it as true is what the
    /// sender meant.
    fn parse_wire(raw: &str) -> Option<Self> {
        let s = raw.trim();
        if s == "1" || s.eq_ignore_ascii_case("true") {
            Some(true)
        } else if s == "0" || s.eq_ignore_ascii_case("false") {
            Some(false)
        } else {
            None
        }
    }
    fn to_wire(&self) -> String {
        if *self { "true" } else { "false" }.to_owned()
    }
}

/// How a field type reads and writes itself: plain values are required, `Option`s are optional.
/// Implemented for every [`HeaderValue`] and for `Option` of one.
pub trait HeaderField: Sized {
    const KIND: FieldKind;
    const REQUIRED: bool;
    /// `Ok(None)` when the key is absent (or blank, for non-strings) and the type has no absent
    /// value of its own; the caller then applies the default or reports the missing field.
    fn read_field(ext: &ExtFields, wire: &'static str) -> Result<Option<Self>>;
    fn write_field(&self, ext: &mut ExtFields, wire: &'static str);
}

/// The value of `wire`, with a blank value of a non-string type treated as absent (the binary
/// header cannot carry empty strings, and a blank number is no number).
fn lookup<'a, T: HeaderValue>(ext: &'a ExtFields, wire: &str) -> Option<&'a str> {
    let raw = ext.get(wire)?;
    if !matches!(T::KIND, FieldKind::String) && raw.trim().is_empty() {
        return None;
    }
    Some(raw)
}

fn parse_value<T: HeaderValue>(raw: &str, wire: &'static str) -> Result<T> {
    T::parse_wire(raw).ok_or_else(|| ProtocolError::InvalidField {
        field: wire,
        value: raw.to_owned(),
    })
}

impl<T: HeaderValue> HeaderField for T {
    const KIND: FieldKind = T::KIND;
    const REQUIRED: bool = true;
    fn read_field(ext: &ExtFields, wire: &'static str) -> Result<Option<Self>> {
        lookup::<T>(ext, wire)
            .map(|raw| parse_value(raw, wire))
            .transpose()
    }
    fn write_field(&self, ext: &mut ExtFields, wire: &'static str) {
        ext.insert_static(wire, self.to_wire());
    }
}

impl<T: HeaderValue> HeaderField for Option<T> {
    const KIND: FieldKind = T::KIND;
    const REQUIRED: bool = false;
    fn read_field(ext: &ExtFields, wire: &'static str) -> Result<Option<Self>> {
        match lookup::<T>(ext, wire) {
            Some(raw) => parse_value(raw, wire).map(|v| Some(Some(v))),
            None => Ok(Some(None)),
        }
    }
    fn write_field(&self, ext: &mut ExtFields, wire: &'static str) {
        if let Some(v) = self {
            ext.insert_static(wire, v.to_wire());
        }
    }
}

/// Declares a header struct with its [`CommandHeader`] and [`HeaderSchema`] impls.
///
/// ```
/// apogee_protocol::command_header! {
///     /// What the header is for.
///     pub struct ExampleRequestHeader {
///         /// Required: absent -> `MissingField("topic")`.
///         topic: String => "topic",
///         queue_id: i32 => "queueId",
///         /// Optional: absent -> `None`, written only when `Some`.
///         sub_version: Option<i64> => "subVersion",
///         /// Defaulted: absent -> the default; always written.
///         committed: bool => "committed" = true,
///     }
/// }
/// ```
///
/// Field types are `String`, `i32`, `i64`, `bool`, any other [`HeaderValue`], or an `Option` of
/// one. All fields are `pub`. The struct derives `Debug, Clone, PartialEq, Eq`; `Default` fills
/// required fields with their type's default, defaulted fields with their default and optional
/// fields with `None`.
#[macro_export]
macro_rules! command_header {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $ty:ty => $wire:literal $(= $default:expr)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        $vis struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl ::core::default::Default for $name {
            fn default() -> Self {
                Self {
                    $( $field: $crate::command_header!(@default $ty $(, $default)?), )*
                }
            }
        }

        impl $crate::header::CommandHeader for $name {
            fn write_ext_fields(&self, ext: &mut $crate::command::ExtFields) {
                let _ = &ext;
                $( $crate::header::HeaderField::write_field(&self.$field, ext, $wire); )*
            }

            fn from_ext_fields(ext: &$crate::command::ExtFields) -> $crate::error::Result<Self> {
                let _ = ext;
                Ok(Self {
                    $(
                        $field: match <$ty as $crate::header::HeaderField>::read_field(ext, $wire)? {
                            ::core::option::Option::Some(v) => v,
                            ::core::option::Option::None => {
                                $crate::command_header!(@absent $wire $(, $default)?)
                            }
                        },
                    )*
                })
            }
        }

        impl $crate::header::HeaderSchema for $name {
            const FIELDS: &'static [$crate::header::FieldSpec] = &[
                $(
                    $crate::header::FieldSpec {
                        wire: $wire,
                        kind: <$ty as $crate::header::HeaderField>::KIND,
                        required: <$ty as $crate::header::HeaderField>::REQUIRED
                            && !$crate::command_header!(@has_default $($default)?),
                        defaulted: $crate::command_header!(@has_default $($default)?),
                    },
                )*
            ];
        }
    };

    (@default $ty:ty) => { <$ty as ::core::default::Default>::default() };
    (@default $ty:ty, $default:expr) => { $default };
    (@absent $wire:literal) => {
        return ::core::result::Result::Err($crate::error::ProtocolError::MissingField($wire))
    };
    (@absent $wire:literal, $default:expr) => { $default };
    (@has_default) => { false };
    (@has_default $default:expr) => { true };
}
