//! The one error type of the protocol crate. Every decoder returns it instead of panicking, so a
//! malformed frame from any peer becomes a clear message (and, at the broker, the right response code).

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The input ended before the structure did. `needed` is how many more bytes the field wanted.
    #[error("truncated {what}: needed {needed} more bytes")]
    Truncated { what: &'static str, needed: usize },
    #[error("frame of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    FrameTooLarge { len_bytes: usize, max_bytes: usize },
    #[error("bad frame: {0}")]
    BadFrame(String),
    #[error("unknown serialize type {0}")]
    UnknownSerializeType(u8),
    #[error("invalid header JSON: {0}")]
    InvalidJson(String),
    #[error("missing required header field `{0}`")]
    MissingField(&'static str),
    #[error("invalid value {value:?} for header field `{field}`")]
    InvalidField { field: &'static str, value: String },
    #[error("invalid message record: {0}")]
    InvalidRecord(String),
    #[error("invalid message id: {0}")]
    InvalidMessageId(String),
    #[error("invalid body: {0}")]
    InvalidBody(String),
    #[error("compression error: {0}")]
    Compression(String),
}

pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;
