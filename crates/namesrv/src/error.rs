//! The name server's error type: what can stop it from starting or from persisting its KV config.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NamesrvError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The KV config file exists but is not a `{"configTable":{...}}` document.
    #[error("KV config file {path} is corrupt: {reason}")]
    KvConfigCorrupt { path: PathBuf, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// A configuration value that cannot work (e.g. a zero scan interval).
    #[error("invalid name server config: {0}")]
    InvalidConfig(String),
}
