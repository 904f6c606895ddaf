//! Administration (the mqadmin side of `AdminBrokerProcessor`): topics, subscription groups,
//! statistics, client connections, broker runtime info and config (read and runtime update), and
//! resetting a group's offsets to a time (INVOKE_BROKER_TO_RESET_OFFSET).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use apogee_protocol::body::{
    ConsumeStats, JsonBody, KVTable, MessageQueue, OffsetWrapper, ProducerConnection,
    ResetOffsetBody, SubscriptionGroupConfig, TopicConfig, TopicFilterType, TopicOffset,
    TopicStatsTable,
};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::*;
use apogee_protocol::json::{self, JsonForm, WireEnum};
use apogee_protocol::message::RecordView;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{not_supported, HandlerFuture, RequestContext};
use apogee_store::BoundaryType;
use tracing::{debug, info};

use super::{header, persist_error, respond, success, try_reply};
use crate::broker::BrokerInner;
use crate::live_config::{parse_properties, Setting};
use crate::names;

pub(crate) const CODES: &[i32] = &[
    rc::UPDATE_AND_CREATE_TOPIC,
    rc::DELETE_TOPIC_IN_BROKER,
    rc::GET_ALL_TOPIC_CONFIG,
    rc::GET_TOPIC_CONFIG,
    rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
    rc::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
    rc::GET_SUBSCRIPTIONGROUP_CONFIG,
    rc::DELETE_SUBSCRIPTIONGROUP,
    rc::GET_TOPIC_STATS_INFO,
    rc::GET_CONSUME_STATS,
    rc::GET_CONSUMER_CONNECTION_LIST,
    rc::GET_PRODUCER_CONNECTION_LIST,
    rc::GET_BROKER_RUNTIME_INFO,
    rc::GET_BROKER_CONFIG,
    rc::UPDATE_BROKER_CONFIG,
    rc::INVOKE_BROKER_TO_RESET_OFFSET,
    rc::DELETE_EXPIRED_COMMITLOG,
    rc::CLEAN_EXPIRED_CONSUMEQUEUE,
    rc::CLEAN_UNUSED_TOPIC,
];

/// How long telling one consumer about a reset may wait for room on its connection.
const RESET_NOTIFY_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) fn handle(
    b: &Arc<BrokerInner>,
    _ctx: RequestContext,
    req: RemotingCommand,
) -> HandlerFuture {
    let response = match req.code {
        rc::UPDATE_AND_CREATE_TOPIC => try_reply!(update_and_create_topic(b, &req)),
        rc::DELETE_TOPIC_IN_BROKER => {
            let h: DeleteTopicRequestHeader = try_reply!(header(&req));
            return delete_topic(b, h.topic);
        }
        rc::DELETE_EXPIRED_COMMITLOG | rc::CLEAN_EXPIRED_CONSUMEQUEUE | rc::CLEAN_UNUSED_TOPIC => {
            return store_maintenance(b, req.code);
        }
        rc::GET_ALL_TOPIC_CONFIG => {
            let wrapper = b.topics.wrapper();
            let total = wrapper.topic_config_table.len() as i32;
            encoded(&wrapper).with_header(&GetAllTopicConfigResponseHeader {
                total_topic_num: total,
            })
        }
        rc::GET_TOPIC_CONFIG => {
            let h: GetTopicConfigRequestHeader = try_reply!(header(&req));
            match b.topics.select(&h.topic) {
                Some(config) => match json::to_vec(&config, JsonForm::Fastjson) {
                    Ok(bytes) => success().with_body(bytes),
                    Err(e) => respond(SYSTEM_ERROR, e.to_string()),
                },
                None => respond(
                    TOPIC_NOT_EXIST,
                    format!("No topic in this broker. topic: {}", h.topic),
                ),
            }
        }
        rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => try_reply!(update_group(b, &req)),
        rc::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => {
            let wrapper = b.groups.wrapper();
            let total = wrapper.subscription_group_table.len() as i32;
            encoded(&wrapper).with_header(&GetAllSubscriptionGroupResponseHeader {
                total_group_num: total,
            })
        }
        rc::GET_SUBSCRIPTIONGROUP_CONFIG => {
            let h: GetSubscriptionGroupConfigRequestHeader = try_reply!(header(&req));
            match b.groups.get(&h.group) {
                Some(config) => encoded(&config),
                None => respond(
                    SUBSCRIPTION_GROUP_NOT_EXIST,
                    format!("No group in this broker. group: {}", h.group),
                ),
            }
        }
        rc::DELETE_SUBSCRIPTIONGROUP => {
            let h: DeleteSubscriptionGroupRequestHeader = try_reply!(header(&req));
            if let Err(e) = b.groups.delete(&h.group_name) {
                return HandlerFuture::reply(persist_error(e));
            }
            if h.clean_offset {
                b.offsets.remove_group(&h.group_name);
                b.stats.traffic.remove_group(&h.group_name);
            }
            success()
        }
        rc::GET_TOPIC_STATS_INFO => {
            let h: GetTopicStatsInfoRequestHeader = try_reply!(header(&req));
            topic_stats(b, &h.topic)
        }
        rc::GET_CONSUME_STATS => {
            let h: GetConsumeStatsRequestHeader = try_reply!(header(&req));
            consume_stats(b, &h)
        }
        rc::GET_CONSUMER_CONNECTION_LIST => {
            let h: GetConsumerConnectionListRequestHeader = try_reply!(header(&req));
            match b.consumers.connection_view(&h.consumer_group) {
                Some(view) => encoded(&view),
                None => respond(
                    CONSUMER_NOT_ONLINE,
                    format!("the consumer group[{}] not online", h.consumer_group),
                ),
            }
        }
        rc::GET_PRODUCER_CONNECTION_LIST => {
            let h: GetProducerConnectionListRequestHeader = try_reply!(header(&req));
            match b.producers.connections(&h.producer_group) {
                Some(connection_set) => encoded(&ProducerConnection { connection_set }),
                None => respond(
                    SYSTEM_ERROR,
                    format!("the producer group[{}] not exist", h.producer_group),
                ),
            }
        }
        rc::GET_BROKER_RUNTIME_INFO => encoded(&KVTable {
            table: runtime_info(b),
        }),
        rc::GET_BROKER_CONFIG => broker_config(b),
        rc::UPDATE_BROKER_CONFIG => update_broker_config(b, &req),
        rc::INVOKE_BROKER_TO_RESET_OFFSET => {
            let h: ResetOffsetRequestHeader = try_reply!(header(&req));
            return reset_offset(b, h);
        }
        _ => not_supported(&req),
    };
    HandlerFuture::reply(response)
}

/// A SUCCESS response with `body` in fastjson form.
fn encoded<T: JsonBody>(body: &T) -> RemotingCommand {
    match body.encode() {
        Ok(bytes) => success().with_body(bytes),
        Err(e) => respond(SYSTEM_ERROR, format!("cannot encode the response: {e}")),
    }
}

/// Applies `+key=value` / `-key` items (`AttributeParser`) to `current`.
fn apply_attributes(
    current: &BTreeMap<String, String>,
    modification: &str,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = current.clone();
    for item in modification
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if let Some(kv) = item.strip_prefix('+') {
            let (k, v) = kv
                .split_once('=')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| format!("bad attribute {item:?}: expected +key=value"))?;
            out.insert(k.to_owned(), v.to_owned());
        } else if let Some(k) = item.strip_prefix('-').filter(|k| !k.is_empty()) {
            out.remove(k);
        } else {
            return Err(format!(
                "bad attribute {item:?}: expected +key=value or -key"
            ));
        }
    }
    Ok(out)
}

fn update_and_create_topic(
    b: &BrokerInner,
    req: &RemotingCommand,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: CreateTopicRequestHeader = header(req)?;
    let topic = &h.topic;
    names::validate_topic(topic).map_err(|r| respond(INVALID_PARAMETER, r))?;
    if b.live.validate_system_topic_when_update_topic() && b.topics.is_system_topic(topic) {
        return Err(respond(
            INVALID_PARAMETER,
            format!("The topic[{topic}] is conflict with system topic."),
        ));
    }
    let filter_type = TopicFilterType::from_wire_str(&h.topic_filter_type).ok_or_else(|| {
        respond(
            INVALID_PARAMETER,
            format!("unknown topicFilterType {:?}", h.topic_filter_type),
        )
    })?;
    let current = b
        .topics
        .select(topic)
        .map(|t| t.attributes)
        .unwrap_or_default();
    let attributes = apply_attributes(&current, h.attributes.as_deref().unwrap_or(""))
        .map_err(|r| respond(INVALID_PARAMETER, r))?;
    if attributes.get("message.type").map(String::as_str) == Some("MIXED") {
        return Err(respond(
            INVALID_PARAMETER,
            "MIXED message type is not supported.",
        ));
    }
    let config = TopicConfig {
        attributes,
        order: h.order,
        perm: h.perm,
        read_queue_nums: h.read_queue_nums,
        topic_filter_type: filter_type,
        topic_name: topic.clone(),
        topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
        write_queue_nums: h.write_queue_nums,
    };
    b.topics.update(config).map_err(persist_error)?;
    Ok(success())
}

fn delete_topic(b: &Arc<BrokerInner>, topic: String) -> HandlerFuture {
    if topic.trim().is_empty() {
        return HandlerFuture::reply(respond(INVALID_PARAMETER, "The specified topic is blank."));
    }
    if b.live.validate_system_topic_when_update_topic() && b.topics.is_system_topic(&topic) {
        return HandlerFuture::reply(respond(
            INVALID_PARAMETER,
            format!("The topic[{topic}] is conflict with system topic."),
        ));
    }
    if let Err(e) = b.topics.delete(&topic) {
        return HandlerFuture::reply(persist_error(e));
    }
    b.offsets.remove_topic(&topic);
    b.stats.traffic.remove_topic(&topic);
    // Removing the queue files is disk work: keep it off the async workers.
    let store = Arc::clone(&b.store);
    HandlerFuture::new(async move {
        match tokio::task::spawn_blocking(move || store.delete_topic(&topic)).await {
            Ok(()) => Some(success()),
            Err(e) => Some(respond(
                SYSTEM_ERROR,
                format!("deleting the topic's queues failed: {e}"),
            )),
        }
    })
}

/// mqadmin's storage maintenance: `deleteExpiredCommitLog` (expired segments go now, whatever the
/// hour), `cleanExpiredCQ` (queue files below the log's start), `cleanUnusedTopic` (queues of
/// topics the broker no longer has). File work, so off the async workers; the remark says what
/// was done.
fn store_maintenance(b: &Arc<BrokerInner>, code: i32) -> HandlerFuture {
    let b = Arc::clone(b);
    HandlerFuture::new(async move {
        let work = tokio::task::spawn_blocking(move || match code {
            rc::DELETE_EXPIRED_COMMITLOG => {
                let n = b.store.delete_expired_now(std::time::SystemTime::now());
                format!("deleted {n} expired commitlog file(s)")
            }
            rc::CLEAN_EXPIRED_CONSUMEQUEUE => {
                b.store.clean_expired_consume_queues();
                "cleaned expired consume queue files".to_owned()
            }
            _ => {
                let removed = b.store.clean_unused_topics(|t| {
                    b.topics.contains(t)
                        || b.topics.is_system_topic(t)
                        || t.starts_with(names::LMQ_PREFIX)
                });
                format!(
                    "removed the queues of {} unused topic(s): {}",
                    removed.len(),
                    removed.join(", ")
                )
            }
        })
        .await;
        Some(match work {
            Ok(text) => {
                tracing::info!("store maintenance ({code}): {text}");
                success().with_remark(text)
            }
            Err(e) => respond(SYSTEM_ERROR, format!("store maintenance failed: {e}")),
        })
    })
}

fn update_group(
    b: &BrokerInner,
    req: &RemotingCommand,
) -> Result<RemotingCommand, RemotingCommand> {
    let config = SubscriptionGroupConfig::decode(&req.body).map_err(|e| {
        respond(
            SYSTEM_ERROR,
            format!("cannot decode the subscription group body: {e}"),
        )
    })?;
    names::validate_group(&config.group_name).map_err(|r| respond(INVALID_PARAMETER, r))?;
    b.groups.update(config).map_err(persist_error)?;
    Ok(success())
}

/// UPDATE_BROKER_CONFIG: applies a properties body. Every key is checked before any is applied;
/// keys that only take effect at startup, unknown keys and bad values are refused together
/// (INVALID_PARAMETER naming them). Nothing is persisted: a restart goes back to the config file.
fn update_broker_config(b: &BrokerInner, req: &RemotingCommand) -> RemotingCommand {
    let text = String::from_utf8_lossy(&req.body);
    let mut settings = Vec::new();
    let mut refused = Vec::new();
    for (key, value) in parse_properties(&text) {
        match Setting::parse(&key, &value) {
            Ok(s) => settings.push(s),
            Err(e) => refused.push(e.to_string()),
        }
    }
    if !refused.is_empty() {
        return respond(
            INVALID_PARAMETER,
            format!("broker config not updated: {}", refused.join("; ")),
        );
    }
    for s in &settings {
        match *s {
            Setting::AutoCreateTopicEnable(on) => b.topics.set_auto_create_topic_enable(on),
            Setting::AutoCreateSubscriptionGroup(on) => b.groups.set_auto_create(on),
            other => {
                b.live.set(other);
            }
        }
    }
    if settings
        .iter()
        .any(|s| matches!(s, Setting::BrokerPermission(_)))
    {
        // Name servers hear about the broker again at once, with a new data version so that
        // they take the masked topic permissions.
        b.topics.bump_data_version();
        b.topics_changed.notify_one();
    }
    if !settings.is_empty() {
        info!(?settings, "broker config updated");
    }
    success()
}

/// INVOKE_BROKER_TO_RESET_OFFSET, as a RocketMQ 5 broker does it (server-side reset): the group's
/// committed offsets of the topic's queues (or of `queueId` alone) are set to the position of
/// `timestamp` (-1: the end of the queue) or to the explicit `offset`, and the answer lists them.
/// Without `isForce` an offset only moves back, as in RocketMQ 4. Every online consumer of the
/// group is also sent RESET_CONSUMER_CLIENT_OFFSET with the new offsets so it jumps at once
/// instead of committing its old position over the reset; with no consumer online the offsets
/// are still written (consumers that start later resume there).
fn reset_offset(b: &Arc<BrokerInner>, h: ResetOffsetRequestHeader) -> HandlerFuture {
    let (topic, group) = (&h.topic, &h.group);
    let Some(config) = b.topics.select(topic) else {
        return HandlerFuture::reply(respond(
            TOPIC_NOT_EXIST,
            format!("Topic {topic} does not exist"),
        ));
    };
    let online = b.consumers.group(group);
    if !b.groups.contains(group)
        && online.is_none()
        && !b.offsets.topics_of_group(group).contains(topic)
    {
        return HandlerFuture::reply(respond(
            SUBSCRIPTION_GROUP_NOT_EXIST,
            format!("Group {group} does not exist"),
        ));
    }
    let target_by_time = |queue_id: i32| -> i64 {
        if h.timestamp == -1 {
            b.store.max_offset(topic, queue_id) as i64
        } else {
            b.store
                .search_offset_by_timestamp(topic, queue_id, h.timestamp, BoundaryType::Lower)
                as i64
        }
    };
    let mut targets: Vec<(i32, i64)> = Vec::new();
    if h.queue_id >= 0 {
        let queue_id = h.queue_id;
        let target = match h.offset.filter(|&o| o != -1) {
            Some(offset) => {
                let min = b.store.min_offset(topic, queue_id) as i64;
                let max = b.store.max_offset(topic, queue_id) as i64;
                if offset < min || offset > max {
                    return HandlerFuture::reply(respond(
                        SYSTEM_ERROR,
                        format!("Target offset {offset} not in consume queue range [{min}-{max}]"),
                    ));
                }
                offset
            }
            None => target_by_time(queue_id),
        };
        targets.push((queue_id, target));
    } else {
        targets.extend((0..config.read_queue_nums).map(|q| (q, target_by_time(q))));
    }
    if targets.is_empty() {
        return HandlerFuture::reply(respond(SYSTEM_ERROR, "No queues to reset."));
    }

    let mut body = ResetOffsetBody::default();
    for (queue_id, target) in targets {
        let current = b.offsets.query_offset(group, topic, queue_id);
        let offset = match current {
            Some(c) if !h.is_force && target >= c => c,
            _ => target,
        };
        b.offsets.commit_offset(group, topic, queue_id, offset);
        b.offsets.commit_pull_offset(group, topic, queue_id, offset);
        body.offset_table.insert(
            MessageQueue::new(topic.as_str(), b.config.broker_name.as_str(), queue_id),
            offset,
        );
    }
    info!(
        topic = %topic,
        group = %group,
        timestamp = h.timestamp,
        force = h.is_force,
        queues = body.offset_table.len(),
        "offsets reset"
    );
    let encoded_body = match body.encode() {
        Ok(bytes) => bytes,
        Err(e) => {
            return HandlerFuture::reply(respond(
                SYSTEM_ERROR,
                format!("cannot encode the response: {e}"),
            ))
        }
    };
    let connections: Vec<_> = online
        .map(|g| g.channels.into_values().map(|c| c.connection).collect())
        .unwrap_or_default();
    let notify_header = ResetOffsetRequestHeader {
        group: group.clone(),
        topic: topic.clone(),
        queue_id: h.queue_id,
        offset: None,
        timestamp: h.timestamp,
        is_force: h.is_force,
    };
    HandlerFuture::new(async move {
        for conn in connections {
            let request = RemotingCommand::request_with_header(
                rc::RESET_CONSUMER_CLIENT_OFFSET,
                &notify_header,
            )
            .with_body(encoded_body.clone());
            match tokio::time::timeout(RESET_NOTIFY_TIMEOUT, conn.invoke_oneway(request)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(peer = %conn.peer_addr(), error = %e, "cannot send the offset reset")
                }
                Err(_) => debug!(peer = %conn.peer_addr(), "sending the offset reset timed out"),
            }
        }
        Some(success().with_body(encoded_body))
    })
}

/// Store time of the record at logical `offset` of a queue.
fn store_time_at(b: &BrokerInner, topic: &str, queue_id: i32, offset: u64) -> Option<i64> {
    let record = b.store.message_at_queue_offset(topic, queue_id, offset)?;
    RecordView::parse(&record).ok().map(|v| v.store_timestamp)
}

fn topic_stats(b: &BrokerInner, topic: &str) -> RemotingCommand {
    let Some(config) = b.topics.select(topic) else {
        return respond(TOPIC_NOT_EXIST, format!("topic[{topic}] not exist"));
    };
    let mut table = TopicStatsTable::default();
    for queue_id in 0..config.write_queue_nums.max(config.read_queue_nums) {
        let min = b.store.min_offset(topic, queue_id);
        let max = b.store.max_offset(topic, queue_id);
        let last = if max > 0 {
            store_time_at(b, topic, queue_id, max - 1).unwrap_or(0)
        } else {
            0
        };
        table.offset_table.insert(
            MessageQueue::new(topic, b.config.broker_name.as_str(), queue_id),
            TopicOffset {
                last_update_timestamp: last,
                max_offset: max as i64,
                min_offset: min as i64,
            },
        );
    }
    encoded(&table)
}

fn consume_stats(b: &BrokerInner, h: &GetConsumeStatsRequestHeader) -> RemotingCommand {
    let group = &h.consumer_group;
    let mut topics: BTreeSet<String> = BTreeSet::new();
    if let Some(list) = &h.topic_list {
        topics.extend(
            list.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        );
    }
    match h.topic.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => {
            topics.insert(t.to_owned());
        }
        _ if topics.is_empty() => topics = b.offsets.topics_of_group(group),
        _ => {}
    }
    let mut stats = ConsumeStats::default();
    for topic in topics {
        let Some(config) = b.topics.select(&topic) else {
            continue;
        };
        for queue_id in 0..config.read_queue_nums {
            let broker_offset = b.store.max_offset(&topic, queue_id) as i64;
            let consumer_offset = b
                .offsets
                .query_offset(group, &topic, queue_id)
                .unwrap_or(0)
                .max(0);
            let pull_offset = b
                .offsets
                .query_pull_offset(group, &topic, queue_id)
                .unwrap_or(0);
            let last_timestamp = if consumer_offset > 0 {
                store_time_at(b, &topic, queue_id, (consumer_offset - 1) as u64).unwrap_or(0)
            } else {
                0
            };
            stats.offset_table.insert(
                MessageQueue::new(topic.as_str(), b.config.broker_name.as_str(), queue_id),
                OffsetWrapper {
                    broker_offset,
                    consumer_offset,
                    last_timestamp,
                    pull_offset: consumer_offset.max(pull_offset),
                },
            );
        }
    }
    encoded(&stats)
}

fn runtime_info(b: &BrokerInner) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        t.insert(k.to_owned(), v);
    };
    let puts = b.stats.put_messages.load(Ordering::Relaxed);
    let gets = b.stats.got_messages.load(Ordering::Relaxed);
    put("brokerVersionDesc", "V5_3_3".into());
    put(
        "brokerVersion",
        apogee_protocol::command::APOGEE_VERSION.to_string(),
    );
    put("brokerActive", "true".into());
    put("msgPutTotalTodayNow", puts.to_string());
    put("msgGetTotalTodayNow", gets.to_string());
    put("msgPutTotalTodayMorning", "0".into());
    put("msgGetTotalTodayMorning", "0".into());
    put("msgPutTotalYesterdayMorning", "0".into());
    put("msgGetTotalYesterdayMorning", "0".into());
    put("bootTimestamp", b.started_ms.to_string());
    put("startAcceptSendRequestTimeStamp", b.started_ms.to_string());
    put(
        "commitLogMinOffset",
        b.store.commitlog_min_offset().to_string(),
    );
    put(
        "commitLogMaxOffset",
        b.store.commitlog_max_offset().to_string(),
    );
    let unflushed = b
        .store
        .commitlog_max_offset()
        .saturating_sub(b.store.flushed_offset());
    put("remainHowManyDataToFlush", format!("{unflushed} B"));
    put("dispatchBehindBytes", "0".into());
    put("pullParkedNum", b.holds.parked().to_string());
    put(
        "earliestMessageTimeStamp",
        earliest_message_time(b).to_string(),
    );
    put("diskFull", b.store.is_disk_full().to_string());
    put("timerReadBehind", "0".into());
    put("timerOffsetBehind", "0".into());
    put("timerCongestNum", "0".into());
    put("timerEnqueueTps", "0.0".into());
    put("timerDequeueTps", "0.0".into());
    t
}

fn earliest_message_time(b: &BrokerInner) -> i64 {
    b.store
        .message_at(b.store.commitlog_min_offset())
        .and_then(|r| RecordView::parse(&r).ok().map(|v| v.store_timestamp))
        .unwrap_or(-1)
}

/// `key=value` lines, as Java's `Configuration.getAllConfigsFormatString`.
fn broker_config(b: &BrokerInner) -> RemotingCommand {
    let c = &b.config;
    let store = b.store.config();
    let lines: Vec<(&str, String)> = vec![
        ("brokerName", c.broker_name.clone()),
        ("brokerClusterName", c.broker_cluster_name.clone()),
        ("brokerId", c.broker_id.to_string()),
        ("brokerIP1", b.store_host.ip().to_string()),
        ("listenPort", b.store_host.port().to_string()),
        ("namesrvAddr", c.namesrv_addrs.join(";")),
        ("brokerPermission", b.live.broker_permission().to_string()),
        (
            "defaultTopicQueueNums",
            c.default_topic_queue_nums.to_string(),
        ),
        (
            "autoCreateTopicEnable",
            b.topics.auto_create_topic_enable().to_string(),
        ),
        (
            "autoCreateSubscriptionGroup",
            b.groups.auto_create().to_string(),
        ),
        ("clusterTopicEnable", c.cluster_topic_enable.to_string()),
        ("brokerTopicEnable", c.broker_topic_enable.to_string()),
        ("regionId", c.region_id.clone()),
        ("traceOn", b.live.trace_on().to_string()),
        (
            "longPollingEnable",
            b.live.long_polling_enable().to_string(),
        ),
        (
            "shortPollingTimeMills",
            b.live.short_polling_time_ms().to_string(),
        ),
        (
            "transactionCheckInterval",
            b.live.transaction_check_interval_ms().to_string(),
        ),
        (
            "registerNameServerPeriod",
            c.register_name_server_period_ms.to_string(),
        ),
        (
            "registerBrokerTimeoutMills",
            c.register_broker_timeout_ms.to_string(),
        ),
        (
            "channelExpiredTimeout",
            c.channel_expired_timeout_ms.to_string(),
        ),
        (
            "flushConsumerOffsetInterval",
            c.flush_consumer_offset_interval_ms.to_string(),
        ),
        (
            "litePullMessageEnable",
            b.live.lite_pull_message_enable().to_string(),
        ),
        (
            "validateSystemTopicWhenUpdateTopic",
            b.live.validate_system_topic_when_update_topic().to_string(),
        ),
        ("storePathRootDir", store.root_dir.display().to_string()),
        (
            "flushDiskType",
            match store.flush_disk_type {
                apogee_store::FlushDiskType::Async => "ASYNC_FLUSH".into(),
                apogee_store::FlushDiskType::Sync => "SYNC_FLUSH".into(),
            },
        ),
        ("maxMessageSize", c.max_message_size_bytes.to_string()),
        (
            "mappedFileSizeCommitLog",
            store.commitlog_segment_bytes.to_string(),
        ),
        ("syncFlushTimeout", store.sync_flush_timeout_ms.to_string()),
        ("fileReservedTime", store.file_reserved_hours.to_string()),
        (
            "deleteWhen",
            store
                .delete_when_hours
                .iter()
                .map(|h| format!("{h:02}"))
                .collect::<Vec<_>>()
                .join(";"),
        ),
        ("cleanResourceInterval", store.clean_interval_ms.to_string()),
        (
            "diskMaxUsedSpaceRatio",
            store.disk_clean_ratio_percent.to_string(),
        ),
        (
            "diskSpaceCleanForciblyRatio",
            store.disk_force_clean_ratio_percent.to_string(),
        ),
        (
            "diskSpaceWarningLevelRatio",
            store.disk_deny_write_ratio_percent.to_string(),
        ),
        (
            "maxTransferCountOnMessageInMemory",
            b.live.max_transfer_count().to_string(),
        ),
        (
            "maxTransferBytesOnMessageInMemory",
            b.live.max_transfer_bytes().to_string(),
        ),
    ];
    let mut body = String::new();
    for (k, v) in lines {
        body.push_str(k);
        body.push('=');
        body.push_str(&v);
        body.push('\n');
    }
    let version = apogee_protocol::body::DataVersion::new(b.started_ms);
    let version = match version.encode() {
        Ok(v) => String::from_utf8_lossy(&v).into_owned(),
        Err(e) => return respond(SYSTEM_ERROR, e.to_string()),
    };
    success()
        .with_header(&GetBrokerConfigResponseHeader { version })
        .with_body(body.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_modifications_add_replace_and_remove() {
        let mut current = BTreeMap::new();
        current.insert("a".to_owned(), "1".to_owned());
        current.insert("b".to_owned(), "2".to_owned());
        let out = apply_attributes(&current, "+a=9, -b ,+message.type=NORMAL").unwrap();
        assert_eq!(out.get("a").map(String::as_str), Some("9"));
        assert!(!out.contains_key("b"));
        assert_eq!(out.get("message.type").map(String::as_str), Some("NORMAL"));
        assert!(apply_attributes(&current, "a=1").is_err());
        assert!(apply_attributes(&current, "+a").is_err());
        assert_eq!(apply_attributes(&current, "").unwrap(), current);
    }
}
