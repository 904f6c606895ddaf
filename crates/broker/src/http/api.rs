//! The JSON behind the web page: cluster and broker, topics and queues, consumer progress,
//! counters for the throughput charts, and message lookup by id and by key.

use std::sync::atomic::Ordering;

use apogee_protocol::message::properties::{self, keys};
use apogee_protocol::message::{OffsetMsgId, RecordView};
use bytes::Bytes;
use serde_json::{json, Value};

use super::{state, Reply};
use crate::broker::BrokerInner;
use crate::manager::now_ms;

/// Most body bytes shown per message.
const MAX_BODY_PREVIEW: usize = 4096;
/// Most messages one key lookup returns.
const MAX_KEY_RESULTS: usize = 32;

pub fn cluster(b: &BrokerInner) -> Value {
    let c = &b.config;
    json!({
        "cluster": c.broker_cluster_name,
        "brokers": [{
            "brokerName": c.broker_name,
            "brokerId": c.broker_id,
            "addr": b.broker_addr,
            "version": apogee_protocol::command::APOGEE_VERSION.to_string(),
            "namesrvAddrs": c.namesrv_addrs,
            "bootTimestamp": b.started_ms,
            "commitLogMinOffset": b.store.commitlog_min_offset(),
            "commitLogMaxOffset": b.store.commitlog_max_offset(),
            "flushedOffset": b.store.flushed_offset(),
            "putMessages": b.stats.put_messages.load(Ordering::Relaxed),
            "getMessages": b.stats.got_messages.load(Ordering::Relaxed),
        }],
    })
}

pub fn topics(b: &BrokerInner) -> Value {
    let list: Vec<Value> = state::topics(b)
        .into_iter()
        .map(|t| {
            json!({
                "topic": t.topic,
                "perm": t.perm,
                "readQueueNums": t.read_queue_nums,
                "writeQueueNums": t.write_queue_nums,
                "system": t.system,
                "queues": t.queues.iter().map(|q| json!({
                    "queueId": q.queue_id,
                    "minOffset": q.min_offset,
                    "maxOffset": q.max_offset,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "topics": list })
}

pub fn groups(b: &BrokerInner) -> Value {
    let list: Vec<Value> = state::groups(b)
        .into_iter()
        .map(|g| {
            json!({
                "group": g.group,
                "topic": g.topic,
                "onlineConsumers": g.online_consumers,
                "messageModel": g.message_model,
                "lag": g.lag(),
                "lagLatencyMs": g.lag_latency_ms(),
                "queues": g.queues.iter().map(|q| json!({
                    "queueId": q.queue_id,
                    "brokerOffset": q.broker_offset,
                    "consumerOffset": q.consumer_offset,
                    "lag": q.lag,
                    "lagLatencyMs": q.lag_latency_ms,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "groups": list })
}

/// Cumulative counters; the page turns successive samples into rates.
pub fn stats(b: &BrokerInner) -> Value {
    let t = &b.stats.traffic;
    let (mut in_msgs, mut in_bytes) = (0u64, 0u64);
    let topics: Vec<Value> = t
        .inputs()
        .into_iter()
        .map(|(topic, m, by)| {
            in_msgs += m;
            in_bytes += by;
            json!({"topic": topic, "messages": m, "bytes": by})
        })
        .collect();
    let (mut out_msgs, mut out_bytes) = (0u64, 0u64);
    for (_, _, m, by) in t.outputs() {
        out_msgs += m;
        out_bytes += by;
    }
    json!({
        "timestampMs": now_ms(),
        "messagesIn": in_msgs,
        "bytesIn": in_bytes,
        "messagesOut": out_msgs,
        "bytesOut": out_bytes,
        "topicsIn": topics,
    })
}

fn message_json(record: &Bytes) -> Option<Value> {
    let v = RecordView::parse(record).ok()?;
    let props: serde_json::Map<String, Value> = properties::iter(v.properties)
        .map(|(k, val)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                Value::String(String::from_utf8_lossy(val).into_owned()),
            )
        })
        .collect();
    let mut msg_id = String::new();
    OffsetMsgId::new(v.store_host, v.physical_offset).write_to(&mut msg_id);
    let body = v.body.get(..MAX_BODY_PREVIEW).unwrap_or(v.body);
    Some(json!({
        "msgId": properties::find_str(v.properties, keys::UNIQ_KEY).map(|s| s.into_owned()),
        "offsetMsgId": msg_id,
        "topic": String::from_utf8_lossy(v.topic),
        "queueId": v.queue_id,
        "queueOffset": v.queue_offset,
        "commitLogOffset": v.physical_offset,
        "tags": properties::find_str(v.properties, keys::TAGS).map(|s| s.into_owned()),
        "keys": properties::find_str(v.properties, keys::KEYS).map(|s| s.into_owned()),
        "bornTimestamp": v.born_timestamp,
        "storeTimestamp": v.store_timestamp,
        "bornHost": v.born_host.to_string(),
        "storeHost": v.store_host.to_string(),
        "reconsumeTimes": v.reconsume_times,
        "sysFlag": v.sys_flag,
        "bodySize": v.body.len(),
        "body": String::from_utf8_lossy(body),
        "bodyTruncated": body.len() < v.body.len(),
        "properties": props,
    }))
}

/// By offsetMsgId (the broker's id: store host and CommitLog offset), or by the client's msgId
/// (UNIQ_KEY) when `topic` is given.
pub fn message_by_id(b: &BrokerInner, id: &str, topic: Option<&str>) -> Reply {
    let id = id.trim();
    if let Ok(parsed) = OffsetMsgId::parse(id) {
        if let Ok(offset) = u64::try_from(parsed.physical_offset) {
            if let Some(record) = b.store.message_at(offset) {
                // The id must name this record: its start offset and its store host.
                if RecordView::parse(&record).is_ok_and(|v| {
                    v.physical_offset == parsed.physical_offset && v.store_host == parsed.store_host
                }) {
                    if let Some(m) = message_json(&record) {
                        return Reply::json(200, &json!({ "messages": [m] }));
                    }
                }
            }
        }
    }
    if let Some(topic) = topic.filter(|t| !t.is_empty()) {
        let found: Vec<Value> = b
            .store
            .query_by_key(topic, id, MAX_KEY_RESULTS, 0, i64::MAX)
            .iter()
            .filter(|r| {
                RecordView::parse(r).is_ok_and(|v| {
                    properties::find_str(v.properties, keys::UNIQ_KEY).as_deref() == Some(id)
                })
            })
            .filter_map(message_json)
            .collect();
        if !found.is_empty() {
            return Reply::json(200, &json!({ "messages": found }));
        }
    }
    Reply::json(
        404,
        &json!({ "error": format!("no message with id {id}"), "messages": [] }),
    )
}

pub fn messages_by_key(b: &BrokerInner, topic: &str, key: &str) -> Reply {
    let found: Vec<Value> = b
        .store
        .query_by_key(topic, key, MAX_KEY_RESULTS, 0, i64::MAX)
        .iter()
        .filter_map(message_json)
        .collect();
    Reply::json(200, &json!({ "messages": found }))
}
