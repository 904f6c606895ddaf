//! `MessageQueue`: one queue of a topic on one broker, the unit of assignment, locking and offsets.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::json::{lenient, ObjectKey};

/// One queue of a topic on one broker (`common/message/MessageQueue.java`).
///
/// Usable as a map key in bodies: the fastjson form writes it as a bare object key, the standard form
/// as a string holding its JSON, and it reads both (as well as a plain object elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    pub broker_name: String,
    pub queue_id: i32,
    pub topic: String,
}

impl MessageQueue {
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: i32) -> Self {
        MessageQueue {
            broker_name: broker_name.into(),
            queue_id,
            topic: topic.into(),
        }
    }
}

/// Java's `compareTo`: topic, then broker name, then queue id.
impl Ord for MessageQueue {
    fn cmp(&self, other: &Self) -> Ordering {
        self.topic
            .cmp(&other.topic)
            .then_with(|| self.broker_name.cmp(&other.broker_name))
            .then_with(|| self.queue_id.cmp(&other.queue_id))
    }
}

impl PartialOrd for MessageQueue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Java's `toString`, which appears in logs and remarks.
impl fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MessageQueue [topic={}, brokerName={}, queueId={}]",
            self.topic, self.broker_name, self.queue_id
        )
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Fields {
    #[serde(deserialize_with = "lenient::string")]
    broker_name: String,
    #[serde(deserialize_with = "lenient::int32")]
    queue_id: i32,
    #[serde(deserialize_with = "lenient::string")]
    topic: String,
}

impl<'de> Deserialize<'de> for MessageQueue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ObjectKey(f) = ObjectKey::<Fields>::deserialize(d)?;
        Ok(MessageQueue {
            broker_name: f.broker_name,
            queue_id: f.queue_id,
            topic: f.topic,
        })
    }
}
