//! `apogee-broker`: a RocketMQ 4.x broker. Request processors (one file per family of request
//! codes, `processor/`), the managers that hold topics, subscription groups, offsets, connected
//! clients and queue locks (`manager/`), long polling, and registration with name servers, over
//! the `apogee-store` message store and the `apogee-remoting` transport.
//!
//! Embeddable: [`Broker::start`] returns a [`BrokerHandle`] that a host process (the `apogee`
//! binary's standalone mode runs a name server and a broker together) stops with
//! [`BrokerHandle::shutdown`].

mod broker;
pub mod config;
pub mod error;
pub mod filter;
pub mod long_polling;
pub mod manager;
pub mod names;
mod persist;
mod processor;
mod register;

pub use broker::{Broker, BrokerHandle};
pub use config::{BrokerConfig, FlushDiskTypeConfig, StoreOptions};
pub use error::{BrokerError, Result};
