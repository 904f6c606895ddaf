//! CONSUMER_SEND_MSG_BACK (36): a push consumer could not consume a message and hands it back
//! (`AbstractSendMessageProcessor.consumerSendMsgBack`). The broker looks the message up by its
//! CommitLog offset and stores a copy in `%RETRY%<group>` with a delay level (3 + reconsume times
//! unless the consumer chose one), or, after `maxReconsumeTimes` deliveries or when asked with
//! delay level -1, in `%DLQ%<group>`. The copy keeps the message's UNIQ_KEY, so the consumer sees
//! the same message id again.

use std::sync::Arc;

use apogee_protocol::codes::perm;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::ConsumerSendMsgBackRequestHeader;
use apogee_protocol::message::properties::keys;
use apogee_protocol::message::{MessageRecord, RecordView};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{HandlerFuture, RequestContext};
use apogee_store::StoreError;
use bytes::{Bytes, BytesMut};
use tracing::info;

use super::send::{random_u32, VERSION_V3_4_9};
use super::{header, persist_error, respond, success, try_reply};
use crate::broker::BrokerInner;
use crate::manager::now_ms;
use crate::names;
use crate::schedule::handle_schedule_message;

pub(crate) fn handle(
    b: &Arc<BrokerInner>,
    _ctx: RequestContext,
    req: RemotingCommand,
) -> HandlerFuture {
    let h: ConsumerSendMsgBackRequestHeader = try_reply!(header(&req));
    HandlerFuture::reply(send_back(b, &h, req.version).unwrap_or_else(|r| r))
}

fn send_back(
    b: &BrokerInner,
    h: &ConsumerSendMsgBackRequestHeader,
    version: i32,
) -> Result<RemotingCommand, RemotingCommand> {
    let Some(group) = b.groups.find_or_create(&h.group).map_err(persist_error)? else {
        return Err(respond(
            SUBSCRIPTION_GROUP_NOT_EXIST,
            format!("subscription group not exist, {}", h.group),
        ));
    };
    if !perm::is_writeable(b.live.broker_permission()) {
        return Err(respond(
            NO_PERMISSION,
            format!(
                "the broker[{}] sending message is forbidden",
                b.store_host.ip()
            ),
        ));
    }
    if group.retry_queue_nums <= 0 {
        return Ok(success());
    }

    let mut topic = names::retry_topic(&h.group);
    let mut queue_id = (random_u32() % group.retry_queue_nums as u32) as i32;
    let topic_sys_flag = if h.unit_mode { 0x2 } else { 0 };
    let retry = b
        .topics
        .create_in_send_back(
            &topic,
            group.retry_queue_nums,
            perm::READ | perm::WRITE,
            false,
            topic_sys_flag,
        )
        .map_err(persist_error)?
        .config;
    if !perm::is_writeable(retry.perm) {
        return Err(respond(
            NO_PERMISSION,
            format!("the topic[{topic}] sending message is forbidden"),
        ));
    }

    let offset = u64::try_from(h.offset).unwrap_or(u64::MAX);
    let Some(stored) = b.store.message_at(offset) else {
        return Err(respond(
            SYSTEM_ERROR,
            format!("look message by offset failed, {}", h.offset),
        ));
    };
    let v = RecordView::parse(&stored).map_err(|e| {
        respond(
            SYSTEM_ERROR,
            format!("look message by offset failed, {}: {e}", h.offset),
        )
    })?;
    let mut props = v.properties_map();
    let original_topic = v.topic().into_owned();
    if !props.contains_key(keys::RETRY_TOPIC) {
        props.insert(keys::RETRY_TOPIC, original_topic.as_str());
    }
    let max_reconsume_times = match h.max_reconsume_times {
        Some(m) if version >= VERSION_V3_4_9 => m,
        _ => group.retry_max_times,
    };
    let reconsume_times = v.reconsume_times + 1;
    let to_dlq = v.reconsume_times >= max_reconsume_times || h.delay_level < 0;
    if to_dlq {
        topic = names::dlq_topic(&h.group);
        queue_id = (random_u32() % names::DLQ_NUMS_PER_GROUP as u32) as i32;
        b.topics
            .create_in_send_back(
                &topic,
                names::DLQ_NUMS_PER_GROUP,
                perm::READ | perm::WRITE,
                false,
                0,
            )
            .map_err(persist_error)?;
        props.insert(keys::DELAY, "0");
        let origin_topic = props
            .get(keys::RETRY_TOPIC)
            .unwrap_or(original_topic.as_str())
            .to_owned();
        props.insert(keys::DLQ_ORIGIN_TOPIC, origin_topic);
        if let Some(id) = props.uniq_key().map(str::to_owned) {
            props.insert(keys::DLQ_ORIGIN_MESSAGE_ID, id);
        }
    } else {
        let level = if h.delay_level == 0 {
            3 + v.reconsume_times
        } else {
            h.delay_level
        };
        props.insert(keys::DELAY, level.to_string());
    }
    if props
        .get(keys::ORIGIN_MESSAGE_ID)
        .is_none_or(|id| id.trim().is_empty())
    {
        props.insert(keys::ORIGIN_MESSAGE_ID, v.offset_msg_id().to_string());
    }
    props.insert(keys::RECONSUME_TIME, reconsume_times.to_string());
    props.insert(keys::MAX_RECONSUME_TIMES, max_reconsume_times.to_string());
    props.insert(keys::WAIT, "false");

    let final_topic = topic.clone();
    handle_schedule_message(
        b.store.config(),
        &mut props,
        &mut topic,
        &mut queue_id,
        v.sys_flag,
        now_ms(),
    )?;
    let mut record = MessageRecord::new(topic, Bytes::copy_from_slice(v.body), props.to_bytes());
    record.queue_id = queue_id;
    record.flag = v.flag;
    record.sys_flag = v.sys_flag;
    record.born_timestamp = v.born_timestamp;
    record.born_host = v.born_host;
    record.store_host = b.store_host;
    record.reconsume_times = reconsume_times;
    let mut bytes = BytesMut::with_capacity(record.encoded_len());
    record
        .encode_into(&mut bytes)
        .map_err(|e| respond(SYSTEM_ERROR, format!("MESSAGE_ILLEGAL: {e}")))?;
    b.store
        .append(&mut bytes)
        .map_err(|e| respond(SYSTEM_ERROR, put_status_name(&e)))?;
    if to_dlq {
        info!(
            group = %h.group,
            topic = %final_topic,
            uniq_key = props.uniq_key().unwrap_or(""),
            "message sent to the dead letter queue"
        );
    }
    Ok(success())
}

/// RocketMQ's `PutMessageStatus` name for a store error: the remark of a failed send-back.
fn put_status_name(e: &StoreError) -> String {
    match e {
        StoreError::ServiceNotAvailable(_) => "SERVICE_NOT_AVAILABLE",
        StoreError::MessageIllegal(_) => "MESSAGE_ILLEGAL",
        StoreError::PropertiesTooLarge(_) => "PROPERTIES_SIZE_EXCEEDED",
        StoreError::FlushTimeout(_) => "FLUSH_DISK_TIMEOUT",
        _ => "UNKNOWN_ERROR",
    }
    .to_owned()
}
