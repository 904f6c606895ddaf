//! The transport's error type.

use std::io;

use apogee_protocol::ProtocolError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RemotingError {
    /// No response within the caller's timeout. A response that arrives later is dropped.
    #[error("no response within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    /// The connection closed (peer gone, malformed frame, idle, shutdown) before the exchange finished.
    #[error("connection closed")]
    ConnectionClosed,
    /// The TCP connection to `addr` could not be made (refused, unreachable, timed out).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// A frame over `max_frame_bytes`; it was not sent.
    #[error("frame of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    FrameTooLarge { len_bytes: usize, max_bytes: usize },
    /// A command that cannot be encoded.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// `max_pending_requests_per_connection` requests already await responses on this connection.
    #[error("too many requests awaiting responses on one connection (limit {limit})")]
    TooManyRequests { limit: usize },
    /// The client or server was shut down.
    #[error("remoting endpoint is shut down")]
    Shutdown,
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl RemotingError {
    /// Maps a protocol error, giving frame-size errors their own variant.
    pub(crate) fn from_protocol(e: ProtocolError) -> Self {
        match e {
            ProtocolError::FrameTooLarge {
                len_bytes,
                max_bytes,
            } => RemotingError::FrameTooLarge {
                len_bytes,
                max_bytes,
            },
            other => RemotingError::Protocol(other),
        }
    }
}
