//! Topic configs as brokers keep them (`config/topics.json`), serve them (GET_ALL_TOPIC_CONFIG) and
//! register them with name servers (REGISTER_BROKER body).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::JsonBody;
use crate::json::lenient::wire_enum;

/// Version of a config table: name servers re-read a broker's topics only when it changes
/// (`protocol/DataVersion.java`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    pub counter: i64,
    /// Raised on master changes in controller mode; compared first.
    pub state_version: i64,
    /// When the version was last changed, ms.
    pub timestamp: i64,
}

impl DataVersion {
    pub fn new(timestamp_ms: i64) -> Self {
        DataVersion {
            counter: 0,
            state_version: 0,
            timestamp: timestamp_ms,
        }
    }

    /// Marks a change: counter + 1, new timestamp, given state version (Java `nextVersion`).
    pub fn next_version(&mut self, timestamp_ms: i64, state_version: i64) {
        self.counter += 1;
        self.timestamp = timestamp_ms;
        self.state_version = state_version;
    }

    /// Java's `compare`: state version, then counter, then timestamp.
    pub fn compare(&self, other: &DataVersion) -> std::cmp::Ordering {
        (self.state_version, self.counter, self.timestamp).cmp(&(
            other.state_version,
            other.counter,
            other.timestamp,
        ))
    }
}

/// Also the QUERY_DATA_VERSION request body.
impl JsonBody for DataVersion {}

wire_enum! {
    /// `common/TopicFilterType.java`.
    #[derive(Default)]
    pub enum TopicFilterType: "TopicFilterType" {
        #[default]
        SingleTag = 0, "SINGLE_TAG";
        MultiTag = 1, "MULTI_TAG";
    }
}

/// One topic's config on a broker (`common/TopicConfig.java`); absent fields take Java's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    /// Topic attributes such as `message.type`.
    pub attributes: BTreeMap<String, String>,
    pub order: bool,
    /// `PermName` bits: 4 read, 2 write, 1 inherit.
    pub perm: i32,
    pub read_queue_nums: i32,
    pub topic_filter_type: TopicFilterType,
    pub topic_name: String,
    pub topic_sys_flag: i32,
    pub write_queue_nums: i32,
}

impl TopicConfig {
    /// Java's `TopicConfig.defaultReadQueueNums` / `defaultWriteQueueNums`.
    pub const DEFAULT_QUEUE_NUMS: i32 = 16;
    /// Read and write (`PERM_READ | PERM_WRITE`).
    pub const DEFAULT_PERM: i32 = 6;

    pub fn new(topic_name: impl Into<String>) -> Self {
        TopicConfig {
            topic_name: topic_name.into(),
            ..TopicConfig::default()
        }
    }
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            attributes: BTreeMap::new(),
            order: false,
            perm: Self::DEFAULT_PERM,
            read_queue_nums: Self::DEFAULT_QUEUE_NUMS,
            topic_filter_type: TopicFilterType::SingleTag,
            topic_name: String::new(),
            topic_sys_flag: 0,
            write_queue_nums: Self::DEFAULT_QUEUE_NUMS,
        }
    }
}

/// All topic configs of a broker and their version (`body/TopicConfigSerializeWrapper.java`): the
/// content of `topics.json` and the GET_ALL_TOPIC_CONFIG body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfigSerializeWrapper {
    pub data_version: DataVersion,
    /// Topic name -> config.
    pub topic_config_table: BTreeMap<String, TopicConfig>,
}

impl JsonBody for TopicConfigSerializeWrapper {}

/// The REGISTER_BROKER body (`body/RegisterBrokerBody.java`, uncompressed form). Reading also accepts
/// the bare `TopicConfigSerializeWrapper` that brokers before V3_0_11 sent. The static-topic mapping
/// tables of 5.x brokers are not kept.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "RegisterBrokerBodyWire")]
pub struct RegisterBrokerBody {
    pub filter_server_list: Vec<String>,
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
}

impl JsonBody for RegisterBrokerBody {}

/// Every top-level key either shape of the body may have.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RegisterBrokerBodyWire {
    filter_server_list: Vec<String>,
    topic_config_serialize_wrapper: Option<TopicConfigSerializeWrapper>,
    // The bare wrapper's keys.
    data_version: Option<DataVersion>,
    topic_config_table: Option<BTreeMap<String, TopicConfig>>,
}

impl From<RegisterBrokerBodyWire> for RegisterBrokerBody {
    fn from(w: RegisterBrokerBodyWire) -> Self {
        let wrapper = match w.topic_config_serialize_wrapper {
            Some(wrapper) => wrapper,
            None => TopicConfigSerializeWrapper {
                data_version: w.data_version.unwrap_or_default(),
                topic_config_table: w.topic_config_table.unwrap_or_default(),
            },
        };
        RegisterBrokerBody {
            filter_server_list: w.filter_server_list,
            topic_config_serialize_wrapper: wrapper,
        }
    }
}
