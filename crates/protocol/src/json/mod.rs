//! JSON for fastjson peers: a lenient reader and a writer with two output forms.
//!
//! Java peers write bodies with fastjson, whose default output is not quite JSON: map keys that are
//! numbers or objects are written bare (`{0:"10.0.0.1:10911"}`, `{{"brokerName":"b",...}:12}`). They
//! also read that form back, and some Java tools (mqadmin) only understand it. So:
//!
//! * Reading ([`from_slice`]): [`normalize`] rewrites the input into standard JSON in one linear pass
//!   (bare keys quoted, object keys turned into strings holding their canonical JSON, nulls dropped;
//!   depth bounded), then `serde_json` deserializes it. Integer-keyed maps (`BTreeMap<i64, _>`) read
//!   quoted numeric keys natively; object-keyed maps use a key type whose `Deserialize` accepts such a
//!   string (see [`ObjectKey`] and `body::MessageQueue`).
//! * Writing ([`to_vec`]): one serde `Serializer`, two forms ([`JsonForm`]). The standard form is what
//!   `serde_json` writes (object keys become strings of their JSON); the fastjson form writes
//!   non-string keys bare, as a Java peer would.
//!
//! Field order: fastjson writes bean properties sorted by name, so body structs declare their fields
//! in that order and the writer keeps declaration order.

pub mod lenient;
mod read;
mod write;

#[cfg(test)]
pub(crate) mod tests;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ProtocolError, Result};

pub use lenient::{ObjectKey, WireEnum};
pub use read::{normalize, MAX_DEPTH, MAX_KEY_NESTING};
pub use write::{JsonForm, WriteError};

/// Deserializes a body written as fastjson, the C++ client, or any standard JSON writer would.
pub fn from_slice<T: DeserializeOwned>(input: &[u8]) -> Result<T> {
    let text = normalize(input)?;
    serde_json::from_slice(&text).map_err(|e| ProtocolError::InvalidBody(e.to_string()))
}

/// [`from_slice`] for text.
pub fn from_str<T: DeserializeOwned>(input: &str) -> Result<T> {
    from_slice(input.as_bytes())
}

/// Serializes `value` in the given form.
pub fn to_vec<T: Serialize + ?Sized>(value: &T, form: JsonForm) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    write::write_to(&mut out, value, form)
        .map_err(|e| ProtocolError::InvalidBody(format!("cannot encode: {e}")))?;
    Ok(out)
}

/// [`to_vec`] as text.
pub fn to_string<T: Serialize + ?Sized>(value: &T, form: JsonForm) -> Result<String> {
    String::from_utf8(to_vec(value, form)?)
        .map_err(|e| ProtocolError::InvalidBody(format!("cannot encode: {e}")))
}
