//! Typed request and response headers: one struct per command, converted to and from the
//! stringified `extFields` map exactly as RocketMQ's `CommandCustomHeader` reflection does.

use crate::command::ExtFields;
use crate::error::Result;

/// A header that travels in a command's `extFields`.
pub trait CommandHeader: Sized {
    /// Writes every present field as `name -> value` (numbers in decimal, booleans as `true`/`false`).
    fn write_ext_fields(&self, ext: &mut ExtFields);
    /// Reads the header; a missing required field or an unparsable value is an error naming it.
    fn from_ext_fields(ext: &ExtFields) -> Result<Self>;
}
