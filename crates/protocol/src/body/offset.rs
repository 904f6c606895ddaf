//! Offset tables: the broker's consumer offsets (`config/consumerOffset.json`, also a body), and the
//! admin bodies keyed by `MessageQueue` (topic stats, consume stats, offset reset).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DataVersion, JsonBody, MessageQueue};

/// Committed consumer offsets (`body/ConsumerOffsetSerializeWrapper.java`):
/// `{"offsetTable":{"topic@group":{0:123,1:456}}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerOffsetSerializeWrapper {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_version: Option<DataVersion>,
    /// `topic@group` -> queue id -> next offset to consume.
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl JsonBody for ConsumerOffsetSerializeWrapper {}

/// Offset range of each queue of a topic (`admin/TopicStatsTable.java`, GET_TOPIC_STATS_INFO).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicStatsTable {
    pub offset_table: BTreeMap<MessageQueue, TopicOffset>,
    pub topic_put_tps: f64,
}

impl JsonBody for TopicStatsTable {}

/// One queue's offset range (`admin/TopicOffset.java`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicOffset {
    /// Store time of the last message, ms.
    pub last_update_timestamp: i64,
    pub max_offset: i64,
    pub min_offset: i64,
}

/// A group's progress on each queue (`admin/ConsumeStats.java`, GET_CONSUME_STATS).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumeStats {
    pub consume_tps: f64,
    pub offset_table: BTreeMap<MessageQueue, OffsetWrapper>,
}

impl JsonBody for ConsumeStats {}

/// One queue's offsets for a group (`admin/OffsetWrapper.java`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OffsetWrapper {
    pub broker_offset: i64,
    pub consumer_offset: i64,
    /// Store time of the last consumed message, ms.
    pub last_timestamp: i64,
    pub pull_offset: i64,
}

/// Offsets to reset a group to, per queue (`body/ResetOffsetBody.java`, INVOKE_BROKER_TO_RESET_OFFSET
/// response and RESET_CONSUMER_CLIENT_OFFSET request).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResetOffsetBody {
    pub offset_table: BTreeMap<MessageQueue, i64>,
}

impl JsonBody for ResetOffsetBody {}
