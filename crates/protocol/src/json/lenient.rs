//! Field-level leniency for bodies written by non-Java clients: numbers and booleans given as
//! strings (the C++ client writes `subVersion` as `"1700000000000"`), enums given by name or by
//! ordinal, and map keys that are objects.
//!
//! Use the functions with `#[serde(default, deserialize_with = "...")]`, so that a missing field
//! also falls back to the default (a `null` member is already dropped by the reader).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// An integer given as a JSON number, an integral float, or a string holding one. `null` reads as 0.
pub fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(IntVisitor)
}

/// [`int64`] narrowed to `i32`; out-of-range values are an error.
pub fn int32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let v = d.deserialize_any(IntVisitor)?;
    i32::try_from(v).map_err(|_| de::Error::custom(format!("integer {v} out of range for i32")))
}

/// A boolean given as `true`/`false`, a number (non-zero is true) or a string (`"true"`, `"1"`,
/// `"false"`, `"0"`, any case). `null` reads as false.
pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_any(BoolVisitor)
}

/// A string, or a number or boolean turned into its text. `null` reads as "".
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(StringVisitor)
}

/// The default value when the field is `null`.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An enum given by name or ordinal; an unknown value reads as `None` instead of failing. For
/// fields where an unknown value is harmless (Java's fastjson reads it as null too).
pub fn enum_or_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: WireEnum,
{
    d.deserialize_any(EnumOrNoneVisitor::<T>(PhantomData))
}

struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer or a string holding one")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("integer {v} out of range for i64")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        // 2^63 is exactly representable, so the range is exact.
        const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
        if v.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&v) {
            Ok(v as i64)
        } else {
            Err(E::custom(format!("{v} is not an integer")))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        let t = v.trim();
        if t.is_empty() {
            return Ok(0);
        }
        if let Ok(n) = t.parse::<i64>() {
            return Ok(n);
        }
        match t.parse::<f64>() {
            Ok(f) => self.visit_f64(f),
            Err(_) => Err(E::custom(format!("{v:?} is not an integer"))),
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
        Ok(0)
    }
    fn visit_none<E: de::Error>(self) -> Result<i64, E> {
        Ok(0)
    }
}

struct BoolVisitor;

impl Visitor<'_> for BoolVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a boolean, 0/1, or a string holding one")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        Ok(v != 0)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        Ok(v != 0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        let t = v.trim();
        if t.eq_ignore_ascii_case("true") || t == "1" {
            Ok(true)
        } else if t.eq_ignore_ascii_case("false") || t == "0" || t.is_empty() {
            Ok(false)
        } else {
            Err(E::custom(format!("{v:?} is not a boolean")))
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

struct StringVisitor;

impl Visitor<'_> for StringVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
}

/// A Java enum on the wire: written by name, read by name (or alias) or by ordinal.
pub trait WireEnum: Sized + Copy + 'static {
    /// The Java class name, for error messages.
    const JAVA_NAME: &'static str;
    /// The Java constant name, as fastjson writes it.
    fn name(self) -> &'static str;
    /// The Java ordinal, as the C++ client writes it.
    fn ordinal(self) -> i32;
    /// Reads a constant name or one of its aliases.
    fn from_name(name: &str) -> Option<Self>;
    /// Reads an ordinal.
    fn from_ordinal(ordinal: i64) -> Option<Self>;

    /// Reads a name, an alias, or an ordinal (as a number or in a string).
    fn from_wire_str(s: &str) -> Option<Self> {
        let t = s.trim();
        Self::from_name(t).or_else(|| t.parse::<i64>().ok().and_then(Self::from_ordinal))
    }
}

/// Deserializes a [`WireEnum`]; `Option` so that [`enum_or_none`] can read `null` too.
pub(crate) struct EnumVisitor<T>(pub(crate) PhantomData<T>);

impl<T: WireEnum> Visitor<'_> for EnumVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} name or ordinal", T::JAVA_NAME)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<T>, E> {
        T::from_wire_str(v)
            .map(Some)
            .ok_or_else(|| E::custom(format!("unknown {} {v:?}", T::JAVA_NAME)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<T>, E> {
        T::from_ordinal(v)
            .map(Some)
            .ok_or_else(|| E::custom(format!("unknown {} ordinal {v}", T::JAVA_NAME)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<T>, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => Err(E::custom(format!("unknown {} ordinal {v}", T::JAVA_NAME))),
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
}

/// Like [`EnumVisitor`] but never fails: anything that is not a known name or ordinal (including
/// objects and arrays, which are consumed) reads as `None`.
struct EnumOrNoneVisitor<T>(PhantomData<T>);

impl<'de, T: WireEnum> Visitor<'de> for EnumOrNoneVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} name or ordinal", T::JAVA_NAME)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<T>, E> {
        Ok(T::from_wire_str(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<T>, E> {
        Ok(T::from_ordinal(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<T>, E> {
        Ok(i64::try_from(v).ok().and_then(T::from_ordinal))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// Declares a Java enum: a Rust enum, its [`WireEnum`] table, `Serialize` by name and a lenient
/// `Deserialize` (name, alias or ordinal; `null` is an error, use `Option` and
/// [`enum_or_none`] where absence is allowed).
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $java:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $ordinal:literal, $wire:literal $(| $alias:literal)* ; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $crate::json::WireEnum for $name {
            const JAVA_NAME: &'static str = $java;
            fn name(self) -> &'static str {
                match self { $( $name::$variant => $wire, )+ }
            }
            fn ordinal(self) -> i32 {
                match self { $( $name::$variant => $ordinal, )+ }
            }
            fn from_name(name: &str) -> Option<Self> {
                $(
                    if name.eq_ignore_ascii_case($wire) $(|| name.eq_ignore_ascii_case($alias))* {
                        return Some($name::$variant);
                    }
                )+
                None
            }
            fn from_ordinal(ordinal: i64) -> Option<Self> {
                match ordinal {
                    $( $ordinal => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str($crate::json::WireEnum::name(*self))
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                d.deserialize_any($crate::json::lenient::EnumVisitor::<$name>(std::marker::PhantomData))?
                    .ok_or_else(|| <D::Error as serde::de::Error>::custom(concat!("null ", $java)))
            }
        }
    };
}
pub(crate) use wire_enum;

/// A map key that is an object: reads either the object itself (when the value is used outside a
/// key position) or a string holding its JSON (what the reader turns an object key into, and what
/// the standard form writes). Key types such as `body::MessageQueue` build their `Deserialize` on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey<T>(pub T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for ObjectKey<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjectKeyVisitor(PhantomData))
    }
}

struct ObjectKeyVisitor<T>(PhantomData<T>);

impl<'de, T: DeserializeOwned> Visitor<'de> for ObjectKeyVisitor<T> {
    type Value = ObjectKey<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object, or a string holding an object's JSON")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<ObjectKey<T>, E> {
        super::from_str(v).map(ObjectKey).map_err(E::custom)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ObjectKey<T>, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(ObjectKey)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ObjectKey<T>, A::Error> {
        T::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(ObjectKey)
    }
}
