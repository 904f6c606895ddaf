//! What can stop the gRPC endpoint from starting.

use std::io;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GrpcError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// A configuration value that cannot work (e.g. a zero session limit).
    #[error("invalid gRPC config: {0}")]
    InvalidConfig(String),
}
