//! Small bodies: KV tables, topic lists, consumer id lists.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::JsonBody;

/// `body/KVTable.java`: a namespace of the name server's KV config, or the ORDER_TOPIC_CONFIG table
/// returned to a registering broker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KVTable {
    pub table: BTreeMap<String, String>,
}

impl JsonBody for KVTable {}

/// The name server's KV store as persisted in `kvConfig.json` (`KVConfigSerializeWrapper.java`):
/// namespace -> key -> value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KVConfigSerializeWrapper {
    pub config_table: BTreeMap<String, BTreeMap<String, String>>,
}

impl JsonBody for KVConfigSerializeWrapper {}

/// `body/TopicList.java` (GET_ALL_TOPIC_LIST_FROM_NAMESERVER, GET_TOPICS_BY_CLUSTER, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicList {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
    pub topic_list: BTreeSet<String>,
}

impl JsonBody for TopicList {}

/// GET_CONSUMER_LIST_BY_GROUP (38) response (`header/GetConsumerListByGroupResponseBody.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GetConsumerListByGroupResponseBody {
    pub consumer_id_list: Vec<String>,
}

impl JsonBody for GetConsumerListByGroupResponseBody {}
