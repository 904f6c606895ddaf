//! JSON bodies of the remoting protocol: route data, heartbeats, offset tables, topic and
//! subscription-group configs, lock and ack bodies, admin statistics.
//!
//! Every type derives serde with the exact key names Java's getters produce, declares its fields in
//! the order fastjson writes them (sorted by name), omits `None` fields, and fills absent fields with
//! Java's defaults. [`JsonBody`] gives each one a lenient `decode` (see [`crate::json`]) and
//! encoders for both output forms; `encode` writes the fastjson-default form, which is what a Java
//! peer itself would send and what every Java peer parses.

mod connection;
mod heartbeat;
mod lock;
mod message_queue;
mod misc;
mod offset;
mod pop;
mod route;
mod subscription_group;
mod topic_config;

#[cfg(test)]
mod tests;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Result;
use crate::json::{self, JsonForm};

pub use connection::{Connection, ConsumerConnection, ProducerConnection};
pub use heartbeat::{
    CheckClientRequestBody, ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData,
    MessageModel, ProducerData, SubscriptionData, EXPRESSION_TYPE_TAG,
};
pub use lock::{LockBatchRequestBody, LockBatchResponseBody, UnlockBatchRequestBody};
pub use message_queue::MessageQueue;
pub use misc::{GetConsumerListByGroupResponseBody, KVConfigSerializeWrapper, KVTable, TopicList};
pub use offset::{
    ConsumeStats, ConsumerOffsetSerializeWrapper, OffsetWrapper, ResetOffsetBody, TopicOffset,
    TopicStatsTable,
};
pub use pop::{BatchAck, BatchAckMessageRequestBody};
pub use route::{route_json_form, BrokerData, ClusterInfo, QueueData, TopicRouteData, MASTER_ID};
pub use subscription_group::{
    CustomizedRetryPolicy, ExponentialRetryPolicy, GroupRetryPolicy, GroupRetryPolicyType,
    SimpleSubscriptionData, SubscriptionGroupConfig, SubscriptionGroupWrapper,
};
pub use topic_config::{
    DataVersion, RegisterBrokerBody, TopicConfig, TopicConfigSerializeWrapper, TopicFilterType,
};

/// A JSON body: lenient decoding and encoding in either form.
pub trait JsonBody: Serialize + DeserializeOwned {
    /// Reads a body written by fastjson, the C++ client or any JSON writer.
    fn decode(body: &[u8]) -> Result<Self> {
        json::from_slice(body)
    }

    /// The fastjson-default form (bare integer and object map keys): what a Java peer's
    /// `RemotingSerializable.encode()` writes, and what Java tools expect.
    fn encode(&self) -> Result<Vec<u8>> {
        self.encode_as(JsonForm::Fastjson)
    }

    /// Standard JSON (every key quoted; object keys as strings of their JSON).
    fn encode_standard(&self) -> Result<Vec<u8>> {
        self.encode_as(JsonForm::Standard)
    }

    /// Either form.
    fn encode_as(&self, form: JsonForm) -> Result<Vec<u8>> {
        json::to_vec(self, form)
    }
}
