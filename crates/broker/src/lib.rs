//! `apogee-broker`: a RocketMQ 4.x broker. Request processors (one file per family of request
//! codes, `processor/`), the managers that hold topics, subscription groups, offsets, connected
//! clients and queue locks (`manager/`), long polling, transactional messages and their check-back
//! (`transaction/`), and registration with name servers, over
//! the `apogee-store` message store and the `apogee-remoting` transport.
//!
//! Embeddable: [`Broker::start`] returns a [`BrokerHandle`] that a host process (the `apogee`
//! binary's standalone mode runs a name server and a broker together) stops with
//! [`BrokerHandle::shutdown`].
//!
//! On disk, under `data_dir`: `store/` (the message store, see `docs/storage-format.md`),
//! `pop/journal` (POP messages in flight, see `docs/pop.md`) and `config/`, RocketMQ's JSON
//! files in fastjson form, so a Java broker could read them:
//! `topics.json` (`TopicConfigSerializeWrapper`: `dataVersion` + `topicConfigTable`),
//! `subscriptionGroup.json` (`SubscriptionGroupWrapper`) and `consumerOffset.json`
//! (`{"offsetTable":{"topic@group":{0:12,1:30}}}`). Each is written atomically (temp file, fsync,
//! rename, fsync of the folder); offsets every `flushConsumerOffsetInterval` and at shutdown,
//! the others on every change.
//!
//! Delay levels (`schedule`: `SCHEDULE_TOPIC_XXXX`, `config/delayOffset.json`) and timer messages
//! (`timer`: the store's timer wheel) are delivered by two background threads; CONSUMER_SEND_MSG_BACK
//! feeds `%RETRY%<group>` through the delay levels and `%DLQ%<group>` at the end.

mod broker;
pub mod config;
pub mod error;
pub mod filter;
pub mod http;
mod live_config;
pub mod local;
pub mod long_polling;
pub mod manager;
pub mod names;
mod persist;
pub mod pop;
mod processor;
mod register;
mod reput;
mod schedule;
pub mod timer;
mod traffic;
mod transaction;
mod worker;

pub use broker::{Broker, BrokerHandle};
pub use config::{BrokerConfig, FlushDiskTypeConfig, StoreOptions};
pub use error::{BrokerError, Result};
pub use pop::PopApi;
pub use reput::REPUT_FROM;
pub use schedule::DelayOffsetSerializeWrapper;
pub use timer::{CancelOutcome, TimerStats};
pub use transaction::TransactionStats;
