//! Subscription-group configs as brokers keep them (`config/subscriptionGroup.json`) and serve them
//! (GET_ALL_SUBSCRIPTIONGROUP_CONFIG).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DataVersion, JsonBody, MASTER_ID};
use crate::json::lenient::wire_enum;

/// One consumer group's config (`subscription/SubscriptionGroupConfig.java`); absent fields take
/// Java's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupConfig {
    pub attributes: BTreeMap<String, String>,
    /// Broker id to pull from normally (0, the master).
    pub broker_id: i64,
    pub consume_broadcast_enable: bool,
    pub consume_enable: bool,
    pub consume_from_min_enable: bool,
    pub consume_message_orderly: bool,
    /// Push consumers only: how long one message may be processed, minutes.
    pub consume_timeout_minute: i32,
    pub group_name: String,
    pub group_retry_policy: GroupRetryPolicy,
    pub group_sys_flag: i32,
    pub notify_consumer_ids_changed_enable: bool,
    /// Deliveries before a message goes to the DLQ.
    pub retry_max_times: i32,
    /// Queues of `%RETRY%<group>`.
    pub retry_queue_nums: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_data_set: Option<Vec<SimpleSubscriptionData>>,
    /// Broker id to pull from when the master is slow.
    pub which_broker_when_consume_slowly: i64,
}

impl SubscriptionGroupConfig {
    pub fn new(group_name: impl Into<String>) -> Self {
        SubscriptionGroupConfig {
            group_name: group_name.into(),
            ..SubscriptionGroupConfig::default()
        }
    }
}

impl Default for SubscriptionGroupConfig {
    fn default() -> Self {
        SubscriptionGroupConfig {
            attributes: BTreeMap::new(),
            broker_id: MASTER_ID,
            consume_broadcast_enable: true,
            consume_enable: true,
            consume_from_min_enable: true,
            consume_message_orderly: false,
            consume_timeout_minute: 15,
            group_name: String::new(),
            group_retry_policy: GroupRetryPolicy::default(),
            group_sys_flag: 0,
            notify_consumer_ids_changed_enable: true,
            retry_max_times: 16,
            retry_queue_nums: 1,
            subscription_data_set: None,
            which_broker_when_consume_slowly: 1,
        }
    }
}

wire_enum! {
    /// `subscription/GroupRetryPolicyType.java`.
    #[derive(Default)]
    pub enum GroupRetryPolicyType: "GroupRetryPolicyType" {
        Exponential = 0, "EXPONENTIAL";
        #[default]
        Customized = 1, "CUSTOMIZED";
    }
}

/// How retries of a group are delayed (`subscription/GroupRetryPolicy.java`). With no policy object
/// of the chosen type, Java uses the customized policy's default delays.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GroupRetryPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customized_retry_policy: Option<CustomizedRetryPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exponential_retry_policy: Option<ExponentialRetryPolicy>,
    #[serde(rename = "type")]
    pub policy_type: GroupRetryPolicyType,
}

/// Delay before retry n is `next[n + 2]` (clamped to the last), ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CustomizedRetryPolicy {
    pub next: Vec<i64>,
}

impl Default for CustomizedRetryPolicy {
    /// 1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h: the delay levels.
    fn default() -> Self {
        const S: i64 = 1000;
        const M: i64 = 60 * S;
        CustomizedRetryPolicy {
            next: vec![
                S,
                5 * S,
                10 * S,
                30 * S,
                M,
                2 * M,
                3 * M,
                4 * M,
                5 * M,
                6 * M,
                7 * M,
                8 * M,
                9 * M,
                10 * M,
                20 * M,
                30 * M,
                60 * M,
                120 * M,
            ],
        }
    }
}

/// Delay before retry n is `min(max, initial * multiplier^n)`, ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExponentialRetryPolicy {
    pub initial: i64,
    pub max: i64,
    pub multiplier: i64,
}

impl Default for ExponentialRetryPolicy {
    fn default() -> Self {
        ExponentialRetryPolicy {
            initial: 5_000,
            max: 2 * 3_600_000,
            multiplier: 2,
        }
    }
}

/// A subscription kept with a group's config (`subscription/SimpleSubscriptionData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SimpleSubscriptionData {
    pub expression: String,
    pub expression_type: String,
    pub topic: String,
    pub version: i64,
}

/// All subscription-group configs of a broker (`body/SubscriptionGroupWrapper.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupWrapper {
    pub data_version: DataVersion,
    /// Group -> topic -> forbidden permission bits.
    pub forbidden_table: BTreeMap<String, BTreeMap<String, i32>>,
    /// Group name -> config.
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
}

impl JsonBody for SubscriptionGroupWrapper {}
impl JsonBody for SubscriptionGroupConfig {}
