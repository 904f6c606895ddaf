//! The broker's error type: what can stop it from starting or stopping cleanly. Request-level
//! failures are not errors here; they become responses with RocketMQ's codes.

use std::io;

use apogee_protocol::ProtocolError;
use apogee_store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("invalid broker configuration: {0}")]
    Config(String),
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// A persisted config file that cannot be read back.
    #[error("cannot read {path}: {source}")]
    BadConfigFile {
        path: String,
        #[source]
        source: ProtocolError,
    },
}

impl BrokerError {
    pub(crate) fn io(path: impl std::fmt::Display, source: io::Error) -> Self {
        BrokerError::Io {
            path: path.to_string(),
            source,
        }
    }
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
