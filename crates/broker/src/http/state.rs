//! Snapshots of the broker's state (queues, consumer progress) shared by `/metrics` and the JSON
//! API, computed at request time from the managers and the store.

use std::collections::BTreeMap;

use apogee_protocol::body::MessageModel;
use apogee_protocol::message::RecordView;

use crate::broker::BrokerInner;
use crate::manager::now_ms;
use crate::names;

pub struct QueueState {
    pub queue_id: i32,
    pub min_offset: u64,
    pub max_offset: u64,
}

pub struct TopicState {
    pub topic: String,
    pub perm: i32,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub system: bool,
    pub queues: Vec<QueueState>,
}

pub struct GroupQueueState {
    pub queue_id: i32,
    pub broker_offset: u64,
    pub consumer_offset: u64,
    pub lag: u64,
    /// Milliseconds since the oldest unconsumed message was stored (0 without lag).
    pub lag_latency_ms: u64,
}

pub struct GroupTopicState {
    pub group: String,
    pub topic: String,
    pub online_consumers: usize,
    pub message_model: &'static str,
    pub queues: Vec<GroupQueueState>,
}

impl GroupTopicState {
    pub fn lag(&self) -> u64 {
        self.queues.iter().map(|q| q.lag).sum()
    }

    pub fn lag_latency_ms(&self) -> u64 {
        self.queues
            .iter()
            .map(|q| q.lag_latency_ms)
            .max()
            .unwrap_or(0)
    }
}

pub fn topics(b: &BrokerInner) -> Vec<TopicState> {
    let mut names = b.topics.topic_names();
    names.sort();
    names
        .into_iter()
        .filter_map(|topic| {
            let c = b.topics.select(&topic)?;
            let queues = (0..c.read_queue_nums.max(c.write_queue_nums))
                .map(|queue_id| QueueState {
                    queue_id,
                    min_offset: b.store.min_offset(&topic, queue_id),
                    max_offset: b.store.max_offset(&topic, queue_id),
                })
                .collect();
            Some(TopicState {
                system: b.topics.is_system_topic(&topic),
                perm: c.perm,
                read_queue_nums: c.read_queue_nums,
                write_queue_nums: c.write_queue_nums,
                queues,
                topic,
            })
        })
        .collect()
}

/// Progress of every (group, topic) pair with committed offsets or an online subscription.
pub fn groups(b: &BrokerInner) -> Vec<GroupTopicState> {
    // (group, topic) -> committed offsets per queue.
    let mut pairs: BTreeMap<(String, String), BTreeMap<i32, i64>> = BTreeMap::new();
    for (key, queues) in b.offsets.wrapper().offset_table {
        if let Some((topic, group)) = crate::manager::offset::split_key(&key) {
            pairs.insert((group.to_owned(), topic.to_owned()), queues);
        }
    }
    for group in b.consumers.group_names() {
        if let Some(info) = b.consumers.group(&group) {
            for topic in info.subscriptions.keys() {
                if !names::is_retry_topic(topic) {
                    pairs.entry((group.clone(), topic.clone())).or_default();
                }
            }
        }
    }
    let now = now_ms();
    pairs
        .into_iter()
        .filter_map(|((group, topic), committed)| {
            let config = b.topics.select(&topic)?;
            let info = b.consumers.group(&group);
            let online_consumers = info.as_ref().map(|i| i.channels.len()).unwrap_or(0);
            let message_model = match info.map(|i| i.message_model) {
                Some(MessageModel::Broadcasting) => "BROADCASTING",
                _ => "CLUSTERING",
            };
            let queues = (0..config.read_queue_nums)
                .map(|queue_id| {
                    let broker_offset = b.store.max_offset(&topic, queue_id);
                    let min = b.store.min_offset(&topic, queue_id);
                    let consumer_offset =
                        committed.get(&queue_id).copied().unwrap_or(0).max(0) as u64;
                    let lag = broker_offset.saturating_sub(consumer_offset);
                    let lag_latency_ms = if lag > 0 {
                        store_time_at(b, &topic, queue_id, consumer_offset.max(min))
                            .map(|t| now.saturating_sub(t).max(0) as u64)
                            .unwrap_or(0)
                    } else {
                        0
                    };
                    GroupQueueState {
                        queue_id,
                        broker_offset,
                        consumer_offset,
                        lag,
                        lag_latency_ms,
                    }
                })
                .collect();
            Some(GroupTopicState {
                group,
                topic,
                online_consumers,
                message_model,
                queues,
            })
        })
        .collect()
}

fn store_time_at(b: &BrokerInner, topic: &str, queue_id: i32, offset: u64) -> Option<i64> {
    let record = b.store.message_at_queue_offset(topic, queue_id, offset)?;
    RecordView::parse(&record).ok().map(|v| v.store_timestamp)
}
