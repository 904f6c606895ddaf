//! Route data served by the name server: `TopicRouteData` (GET_ROUTEINFO_BY_TOPIC) and
//! `ClusterInfo` (GET_BROKER_CLUSTER_INFO).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::JsonBody;
use crate::command::VERSION_V4_9_4;
use crate::error::Result;
use crate::json::JsonForm;

/// Broker id of a group's master (`MixAll.MASTER_ID`); slaves have ids >= 1.
pub const MASTER_ID: i64 = 0;

/// The route of one topic (`route/TopicRouteData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    pub broker_datas: Vec<BrokerData>,
    /// Broker address -> filter server addresses (normally empty).
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// `"brokerName:queueNum;..."`, only for ordered topics configured in the name server's KV store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    pub queue_datas: Vec<QueueData>,
}

impl JsonBody for TopicRouteData {}

/// The form a route body takes for a requester: standard JSON for clients at V4_9_4 (401) or later
/// or when the request says `acceptStandardJsonOnly=true`, the fastjson-default form otherwise
/// (older Java clients expect `{0:"..."}`).
pub fn route_json_form(request_version: i32, accept_standard_json_only: bool) -> JsonForm {
    if accept_standard_json_only || request_version >= VERSION_V4_9_4 {
        JsonForm::Standard
    } else {
        JsonForm::Fastjson
    }
}

impl TopicRouteData {
    /// Encodes the body for a GET_ROUTEINFO_BY_TOPIC requester (see [`route_json_form`]).
    pub fn encode_for(
        &self,
        request_version: i32,
        accept_standard_json_only: bool,
    ) -> Result<Vec<u8>> {
        self.encode_as(route_json_form(request_version, accept_standard_json_only))
    }
}

/// One broker group: its name, cluster, and the address of each member by broker id
/// (`route/BrokerData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    /// Broker id -> `ip:port`; id 0 ([`MASTER_ID`]) is the master.
    pub broker_addrs: BTreeMap<i64, String>,
    pub broker_name: String,
    pub cluster: String,
    pub enable_acting_master: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

impl BrokerData {
    /// The master's address, if the group has a master online.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }
}

/// The queues of a topic on one broker group (`route/QueueData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    pub broker_name: String,
    /// `PermName` bits: 4 read, 2 write, 1 inherit, 8 priority.
    pub perm: i32,
    pub read_queue_nums: i32,
    /// Name servers before 4.9.x wrote this as `topicSynFlag`.
    #[serde(alias = "topicSynFlag")]
    pub topic_sys_flag: i32,
    pub write_queue_nums: i32,
}

/// Every broker group and the clusters they belong to (`body/ClusterInfo.java`). Java name servers
/// always send this in the fastjson-default form.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterInfo {
    /// Broker name -> its group.
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Cluster name -> broker names.
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

impl JsonBody for ClusterInfo {}
