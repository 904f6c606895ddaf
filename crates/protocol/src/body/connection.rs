//! Admin views of a group's connected clients (GET_CONSUMER_CONNECTION_LIST,
//! GET_PRODUCER_CONNECTION_LIST).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConsumeFromWhere, ConsumeType, JsonBody, MessageModel, SubscriptionData};
use crate::command::LanguageCode;
use crate::json::lenient;

/// One client channel (`body/Connection.java`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Connection {
    /// `ip:port` of the channel.
    pub client_addr: String,
    pub client_id: String,
    #[serde(with = "language_code")]
    pub language: LanguageCode,
    /// The client's `MQVersion` ordinal.
    #[serde(deserialize_with = "lenient::int32")]
    pub version: i32,
}

/// `body/ConsumerConnection.java`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerConnection {
    pub connection_set: Vec<Connection>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::enum_or_none"
    )]
    pub consume_from_where: Option<ConsumeFromWhere>,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    /// Topic -> subscription.
    pub subscription_table: BTreeMap<String, SubscriptionData>,
}

impl JsonBody for ConsumerConnection {}

/// `body/ProducerConnection.java`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerConnection {
    pub connection_set: Vec<Connection>,
}

impl JsonBody for ProducerConnection {}

/// `LanguageCode` by name (`"JAVA"`); also read by code. Unknown values read as `OTHER`.
mod language_code {
    use serde::{Deserializer, Serializer};

    use crate::command::LanguageCode;

    pub fn serialize<S: Serializer>(l: &LanguageCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(l.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LanguageCode, D::Error> {
        let raw = crate::json::lenient::string(d)?;
        Ok(match raw.parse::<u8>() {
            Ok(code) => LanguageCode::from_code(code),
            Err(_) => LanguageCode::from_name(&raw),
        })
    }
}
