//! LOCK_BATCH_MQ (41) / UNLOCK_BATCH_MQ (42) bodies: orderly consumers lock their queues on the broker.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{JsonBody, MessageQueue};
use crate::json::lenient;

/// `body/LockBatchRequestBody.java`. The C++ client leaves out `onlyThisBroker`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchRequestBody {
    #[serde(deserialize_with = "lenient::string")]
    pub client_id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub consumer_group: String,
    pub mq_set: BTreeSet<MessageQueue>,
    /// Lock on this broker only, not on the other replicas (strict lock mode).
    #[serde(deserialize_with = "lenient::boolean")]
    pub only_this_broker: bool,
}

impl JsonBody for LockBatchRequestBody {}

/// `body/LockBatchResponseBody.java`: the queues now locked by the requester.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet")]
    pub lock_ok_mq_set: BTreeSet<MessageQueue>,
}

impl JsonBody for LockBatchResponseBody {}

/// `body/UnlockBatchRequestBody.java`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UnlockBatchRequestBody {
    #[serde(deserialize_with = "lenient::string")]
    pub client_id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub consumer_group: String,
    pub mq_set: BTreeSet<MessageQueue>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub only_this_broker: bool,
}

impl JsonBody for UnlockBatchRequestBody {}
