//! `apogee-namesrv`: a RocketMQ-compatible name server.
//!
//! Brokers register their topics here; clients and admin tools ask for topic routes and cluster
//! info. [`RouteInfoManager`] is the pure route table, [`KvConfigManager`] the persisted KV config,
//! [`NamesrvProcessor`] maps request codes onto them, and [`NameServer`] runs it all on a
//! remoting server with broker expiry.

pub mod clock;
pub mod route;

pub use clock::{Clock, ManualClock, MonotonicClock};
pub use route::{
    BrokerLiveInfo, BrokerRegistration, RegisterBrokerResult, RemovedBroker, RouteError,
    RouteInfoManager, RouteSettings, DEFAULT_BROKER_EXPIRY_MS, SELF_TEST_TOPIC,
};
