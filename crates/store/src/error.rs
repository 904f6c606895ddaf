//! Store errors. Each maps onto one RocketMQ put or get status, so the broker can answer with the
//! right response code.

use std::io;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The store is refusing writes: disk full, or shutting down. RocketMQ: SERVICE_NOT_AVAILABLE.
    #[error("store not available for writes: {0}")]
    ServiceNotAvailable(String),
    /// The message breaks a limit or a format rule. RocketMQ: MESSAGE_ILLEGAL.
    #[error("illegal message: {0}")]
    MessageIllegal(String),
    /// Properties longer than 32767 bytes. RocketMQ: PROPERTIES_SIZE_EXCEEDED (answered as 13).
    #[error("properties of {0} bytes exceed 32767")]
    PropertiesTooLarge(usize),
    /// The sync flush did not complete in time; the record may still become durable.
    #[error("flush did not complete within {0} ms")]
    FlushTimeout(u64),
    /// Another process holds the store's lock.
    #[error("store directory {0} is locked by another process")]
    Locked(String),
    /// The files on disk contradict each other in a way recovery must not guess about.
    #[error("store is damaged: {0}")]
    Corrupt(String),
    /// The configuration is inconsistent, or does not match what the files were built with.
    #[error("store configuration: {0}")]
    Config(String),
}

impl StoreError {
    pub(crate) fn io(path: impl std::fmt::Display, source: io::Error) -> Self {
        StoreError::Io {
            path: path.to_string(),
            source,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
