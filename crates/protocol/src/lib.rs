//! `apogee-protocol`: RocketMQ's 4.x remoting protocol as pure data and codecs.
//!
//! No sockets and no async here: the transport (`apogee-remoting`), the store and the broker import
//! these types so that every code, header field name and byte layout is defined in exactly one place.

pub mod body;
pub mod codes;
pub mod command;
pub mod error;
pub mod header;
pub mod json;
pub mod message;

pub use command::{ExtFields, LanguageCode, RemotingCommand, SerializeType};
pub use error::{ProtocolError, Result};
