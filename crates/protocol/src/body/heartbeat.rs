//! HEART_BEAT (34) body: the producer and consumer groups of one client instance and each
//! consumer's subscriptions (`protocol/heartbeat/*.java`).
//!
//! Read as leniently as Java's broker reads it, because the C++ client writes enums as ordinals,
//! `subVersion` as a string, leaves out `tagsSet`/`codeSet`/`expressionType`/`unitMode`, and sends a
//! pull consumer without `subscriptionDataSet`.

use serde::{Deserialize, Serialize};

use super::JsonBody;
use crate::json::lenient::{self, wire_enum};

/// `ExpressionType.TAG`: the default subscription expression type.
pub const EXPRESSION_TYPE_TAG: &str = "TAG";

wire_enum! {
    /// How a consumer gets messages (`ConsumeType.java`). Also read: the Java `typeCN` names.
    #[derive(Default)]
    pub enum ConsumeType: "ConsumeType" {
        /// Pull and lite-pull consumers.
        ConsumeActively = 0, "CONSUME_ACTIVELY" | "PULL";
        /// Push consumers; the default for a consumer that does not say, the common case.
        #[default]
        ConsumePassively = 1, "CONSUME_PASSIVELY" | "PUSH";
        /// 5.x POP consumers.
        ConsumePop = 2, "CONSUME_POP" | "POP";
    }
}

wire_enum! {
    /// Whether each message goes to one consumer of the group or to all (`MessageModel.java`).
    #[derive(Default)]
    pub enum MessageModel: "MessageModel" {
        Broadcasting = 0, "BROADCASTING";
        /// Java clients' default.
        #[default]
        Clustering = 1, "CLUSTERING";
    }
}

wire_enum! {
    /// Where a group with no committed offset starts (`common/consumer/ConsumeFromWhere.java`).
    #[derive(Default)]
    pub enum ConsumeFromWhere: "ConsumeFromWhere" {
        /// Java clients' default.
        #[default]
        ConsumeFromLastOffset = 0, "CONSUME_FROM_LAST_OFFSET";
        /// Deprecated in Java; behaves as `ConsumeFromLastOffset`.
        ConsumeFromLastOffsetAndFromMinWhenBootFirst = 1, "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST";
        /// Deprecated in Java; behaves as `ConsumeFromLastOffset`.
        ConsumeFromMinOffset = 2, "CONSUME_FROM_MIN_OFFSET";
        /// Deprecated in Java; behaves as `ConsumeFromLastOffset`.
        ConsumeFromMaxOffset = 3, "CONSUME_FROM_MAX_OFFSET";
        ConsumeFromFirstOffset = 4, "CONSUME_FROM_FIRST_OFFSET";
        ConsumeFromTimestamp = 5, "CONSUME_FROM_TIMESTAMP";
    }
}

/// The HEART_BEAT body (`HeartbeatData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatData {
    /// `clientIP@instanceName[@unitName]`.
    #[serde(
        rename = "clientID",
        alias = "clientId",
        deserialize_with = "lenient::string"
    )]
    pub client_id: String,
    pub consumer_data_set: Vec<ConsumerData>,
    /// Non-zero marks a "heartbeat v2" client, which may leave subscriptions out when unchanged.
    #[serde(deserialize_with = "lenient::int32")]
    pub heartbeat_fingerprint: i32,
    pub producer_data_set: Vec<ProducerData>,
    /// Set by v2 clients when the subscriptions are left out (fingerprint unchanged).
    #[serde(deserialize_with = "lenient::boolean")]
    pub without_sub: bool,
}

impl JsonBody for HeartbeatData {}

/// A producer group of the client (`ProducerData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    #[serde(deserialize_with = "lenient::string")]
    pub group_name: String,
}

/// A consumer group of the client and its subscriptions (`ConsumerData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    /// Absent or unknown values read as `None` (harmless: only reported, and only used by the
    /// client itself).
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::enum_or_none"
    )]
    pub consume_from_where: Option<ConsumeFromWhere>,
    pub consume_type: ConsumeType,
    #[serde(deserialize_with = "lenient::string")]
    pub group_name: String,
    pub message_model: MessageModel,
    pub subscription_data_set: Vec<SubscriptionData>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub unit_mode: bool,
}

/// One subscription of a consumer group (`SubscriptionData.java`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    #[serde(deserialize_with = "lenient::boolean")]
    pub class_filter_mode: bool,
    /// Java `String.hashCode` of each tag, matched against the consume queue's tags code.
    pub code_set: Vec<i32>,
    /// `TAG` or `SQL92`.
    #[serde(deserialize_with = "lenient::string")]
    pub expression_type: String,
    /// The expression as the user wrote it: `*`, `TagA || TagB`, or an SQL92 filter.
    #[serde(deserialize_with = "lenient::string")]
    pub sub_string: String,
    /// Version of the subscription (the client's ms timestamp when it was made).
    #[serde(deserialize_with = "lenient::int64")]
    pub sub_version: i64,
    pub tags_set: Vec<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub topic: String,
}

impl Default for SubscriptionData {
    fn default() -> Self {
        SubscriptionData {
            class_filter_mode: false,
            code_set: Vec::new(),
            expression_type: EXPRESSION_TYPE_TAG.to_owned(),
            sub_string: String::new(),
            sub_version: 0,
            tags_set: Vec::new(),
            topic: String::new(),
        }
    }
}

/// CHECK_CLIENT_CONFIG (46) body (`body/CheckClientRequestBody.java`): a consumer about to start
/// asks a broker whether it can filter by one of its subscriptions (SQL92 in practice).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CheckClientRequestBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The consumer group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// 5.x clients only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_data: Option<SubscriptionData>,
}

impl JsonBody for CheckClientRequestBody {}
