//! `apogee-namesrv`: a RocketMQ-compatible name server.
//!
//! Brokers register their topics here; clients and admin tools ask for topic routes and cluster
//! info. [`RouteInfoManager`] is the pure route table, [`KvConfigManager`] the persisted KV config,
//! [`NamesrvProcessor`] maps request codes onto them, and [`NameServer`] runs it all on a remoting
//! server with broker expiry.
//!
//! ```no_run
//! # async fn run() -> Result<(), apogee_namesrv::NamesrvError> {
//! let handle = apogee_namesrv::NameServer::start(apogee_namesrv::NamesrvConfig::default()).await?;
//! println!("listening on {}", handle.local_addr());
//! handle.shutdown().await;
//! # Ok(()) }
//! ```

pub mod clock;
pub mod config;
pub mod error;
pub mod kvconfig;
pub mod processor;
pub mod route;
pub mod server;

pub use clock::{Clock, ManualClock, MonotonicClock};
pub use config::{
    parse_properties, ConfigUpdateError, NamesrvConfig, NamesrvRemotingConfig, DEFAULT_LISTEN_ADDR,
};
pub use error::NamesrvError;
pub use kvconfig::{KvConfigManager, NAMESPACE_ORDER_TOPIC_CONFIG};
pub use processor::{NamesrvProcessor, SERVED_CODES};
pub use route::{
    BrokerLiveInfo, BrokerRegistration, RegisterBrokerResult, RemovedBroker, RouteError,
    RouteInfoManager, RouteSettings, DEFAULT_BROKER_EXPIRY_MS, SELF_TEST_TOPIC,
};
pub use server::{NameServer, NameServerHandle};
