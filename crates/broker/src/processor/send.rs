//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320): RocketMQ's
//! `SendMessageProcessor`. Checks the topic (auto-creating it from its template when allowed),
//! builds stored records (STOREHOST, bornHost, UNIQ_KEY, CLUSTER), appends them, and under sync
//! flush waits for the fsync without blocking a worker thread.
//!
//! Delay levels and timer messages are rewritten to `SCHEDULE_TOPIC_XXXX` / `rmq_sys_wheel_timer`
//! by [`crate::schedule::handle_schedule_message`] (the response still names the real queue).
//! Transaction half messages go to RMQ_SYS_TRANS_HALF_TOPIC.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apogee_protocol::body::{TopicConfig, TopicFilterType};
use apogee_protocol::codes::perm;
use apogee_protocol::codes::request_code::SEND_BATCH_MESSAGE;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{
    decode_send_request, SendMessageRequestHeader, SendMessageResponseHeader, EXT_MSG_REGION,
    EXT_TRACE_ON,
};
use apogee_protocol::message::batch::batch_views;
use apogee_protocol::message::properties::{self, keys};
use apogee_protocol::message::{
    normalize_host, sysflag, MessageProperties, MessageRecord, OffsetMsgId, TransactionType,
};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{HandlerFuture, RequestContext};
use apogee_store::{FlushDiskType, StoreError};
use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use super::{persist_error, respond};
use crate::broker::BrokerInner;
use crate::manager::now_ms;
use crate::names;
use crate::transaction;

/// `MQVersion.Version.V3_4_9.ordinal()`: from this client version on, the header's
/// `maxReconsumeTimes` overrides the group's `retryMaxTimes`.
pub(super) const VERSION_V3_4_9: i32 = 121;

pub(crate) fn handle(
    b: &Arc<BrokerInner>,
    ctx: RequestContext,
    req: RemotingCommand,
) -> HandlerFuture {
    let h = match decode_send_request(req.code, &req.ext_fields) {
        Ok(h) => h,
        Err(e) => {
            return reply(
                b,
                respond(SYSTEM_ERROR, format!("invalid request header: {e}")),
            )
        }
    };
    let prepared = if req.code == SEND_BATCH_MESSAGE || h.is_batch() {
        prepare_batch(b, &ctx, &req, h)
    } else {
        prepare_single(b, &ctx, &req, h)
    };
    let p = match prepared {
        Ok(p) => p,
        Err(response) => return reply(b, response),
    };
    if !p.created_topic {
        return store(b, p);
    }
    // The topic is new: like RocketMQ, register it before answering, so that a consumer started
    // right after this send finds its route. Bounded, so a slow name server only delays the send.
    let version = b.topics.data_version().counter;
    let b = Arc::clone(b);
    HandlerFuture::new(async move {
        b.wait_registered(version, Duration::from_millis(REGISTER_WAIT_MS))
            .await;
        store(&b, p).await
    })
}

/// How long a send that created its topic waits for the registration carrying it. Clients time
/// sends out after 3 s; a name server on the same network answers in milliseconds.
const REGISTER_WAIT_MS: u64 = 1_000;

/// Size of the per-thread buffer single-message records are encoded into.
const RECORD_ARENA_BYTES: usize = 256 * 1024;

thread_local! {
    static RECORD_ARENA: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// Runs `encode` on an empty buffer of at least `len` bytes carved from a per-thread arena: the
/// record lives only until the store has copied it, so the arena's memory is taken back on a
/// later call instead of one allocation per send.
fn encode_in_arena<E>(
    len: usize,
    encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<BytesMut, E> {
    RECORD_ARENA.with(|cell| {
        let mut arena = cell.borrow_mut();
        arena.clear();
        if !arena.try_reclaim(len) {
            *arena = BytesMut::with_capacity(len.max(RECORD_ARENA_BYTES));
        }
        match encode(&mut arena) {
            Ok(()) => Ok(arena.split()),
            Err(e) => {
                arena.clear();
                Err(e)
            }
        }
    })
}

/// Records ready to append, and what the response needs.
struct Prepared {
    records: BytesMut,
    queue_id: i32,
    count: u64,
    /// The topic the records are stored in (for the traffic counters).
    topic: String,
    /// The UNIQ_KEY echoed as `transactionId`.
    uniq_key: Option<String>,
    /// A timer message's `recallHandle`.
    recall_handle: Option<String>,
    /// `WAIT`: the producer wants the reply after the fsync (sync flush only).
    wait_store_ok: bool,
    /// The send auto-created its topic: the reply waits for the name servers to learn of it.
    created_topic: bool,
}

fn store(b: &Arc<BrokerInner>, mut p: Prepared) -> HandlerFuture {
    let appended = match b.store.append(&mut p.records) {
        Ok(r) => r,
        Err(e) => return reply(b, store_error(e)),
    };
    b.stats.put_messages.fetch_add(p.count, Ordering::Relaxed);
    b.stats
        .traffic
        .record_in(&p.topic, p.count, appended.wrote_bytes);
    let mut msg_id = String::with_capacity(33 * appended.physical_offsets.len());
    for (i, off) in appended.physical_offsets.iter().enumerate() {
        if i > 0 {
            msg_id.push(',');
        }
        OffsetMsgId::new(b.store_host, *off as i64).write_to(&mut msg_id);
    }
    let header = SendMessageResponseHeader {
        msg_id,
        queue_id: p.queue_id,
        queue_offset: appended.queue_offset as i64,
        transaction_id: p.uniq_key,
        batch_uniq_id: None,
        recall_handle: p.recall_handle,
    };
    if b.store.flush_disk_type() != FlushDiskType::Sync || !p.wait_store_ok {
        return reply(b, success_response(SUCCESS, &header));
    }
    let (tx, rx) = oneshot::channel();
    b.store.wait_durable(
        appended.end_offset,
        Box::new(move |ok| {
            let _ = tx.send(ok);
        }),
    );
    let timeout = Duration::from_millis(b.store.config().sync_flush_timeout_ms);
    let b = Arc::clone(b);
    HandlerFuture::new(async move {
        // A flush that failed or did not finish in time is still a stored message: RocketMQ
        // answers FLUSH_DISK_TIMEOUT with the full header, and clients report it as a send status.
        let code = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(true)) => SUCCESS,
            _ => FLUSH_DISK_TIMEOUT,
        };
        Some(stamp(&b, success_response(code, &header)))
    })
}

/// A stored-message response, with room for the header and the two fields `stamp` adds.
fn success_response(code: i32, header: &SendMessageResponseHeader) -> RemotingCommand {
    let mut response = RemotingCommand::response(code, None);
    response.ext_fields = apogee_protocol::ExtFields::with_capacity(8);
    response.with_header(header)
}

fn reply(b: &BrokerInner, response: RemotingCommand) -> HandlerFuture {
    HandlerFuture::reply(stamp(b, response))
}

/// Every send response carries MSG_REGION and TRACE_ON (Java clients read them unconditionally).
fn stamp(b: &BrokerInner, mut response: RemotingCommand) -> RemotingCommand {
    response
        .ext_fields
        .insert(EXT_MSG_REGION, b.config.region_id.as_str());
    response.ext_fields.insert(
        EXT_TRACE_ON,
        if b.live.trace_on() { "true" } else { "false" },
    );
    response
}

fn store_error(e: StoreError) -> RemotingCommand {
    match e {
        StoreError::ServiceNotAvailable(why) => respond(
            SERVICE_NOT_AVAILABLE,
            format!(
                "service not available now. It may be caused by one of the following reasons: \
                 the broker's disk is full, messages are put to the slave, message store has been \
                 shut down, etc. ({why})"
            ),
        ),
        StoreError::MessageIllegal(why) => respond(
            MESSAGE_ILLEGAL,
            format!(
                "the message is illegal, maybe msg body or properties length not matched: {why}"
            ),
        ),
        StoreError::PropertiesTooLarge(n) => respond(
            MESSAGE_ILLEGAL,
            format!("the message is illegal: properties of {n} bytes exceed the limit of 32KB"),
        ),
        StoreError::FlushTimeout(ms) => respond(
            FLUSH_DISK_TIMEOUT,
            format!("flush did not complete within {ms} ms"),
        ),
        other => respond(SYSTEM_ERROR, other.to_string()),
    }
}

/// `AbstractSendMessageProcessor.msgCheck`: permissions, topic name, topic existence (with
/// auto-create) and queue id. Returns the topic's config and whether this call created it.
fn msg_check(
    b: &BrokerInner,
    ctx: &RequestContext,
    h: &SendMessageRequestHeader,
) -> Result<(TopicConfig, bool), RemotingCommand> {
    if !perm::is_writeable(b.live.broker_permission()) && b.topics.is_order_topic(&h.topic) {
        return Err(respond(
            NO_PERMISSION,
            format!(
                "the broker[{}] sending message is forbidden",
                b.store_host.ip()
            ),
        ));
    }
    names::validate_topic(&h.topic).map_err(|remark| respond(INVALID_PARAMETER, remark))?;
    if names::is_not_allowed_send_topic(&h.topic) {
        return Err(respond(
            NO_PERMISSION,
            format!("Sending message to topic[{}] is forbidden.", h.topic),
        ));
    }
    let (config, created_now) = match b.topics.select(&h.topic) {
        Some(c) => (c, false),
        None => {
            let is_retry = names::is_retry_topic(&h.topic);
            let topic_sys_flag = match (h.is_unit_mode(), is_retry) {
                (false, _) => 0,
                (true, true) => 0x2,
                (true, false) => 0x1,
            };
            let created = b
                .topics
                .create_in_send(
                    &h.topic,
                    &h.default_topic,
                    h.default_topic_queue_nums,
                    topic_sys_flag,
                )
                .map_err(persist_error)?;
            let created = match created {
                Some(c) => Some((c.config, c.created)),
                None if is_retry => {
                    let c = b
                        .topics
                        .create_in_send_back(
                            &h.topic,
                            1,
                            perm::READ | perm::WRITE,
                            false,
                            topic_sys_flag,
                        )
                        .map_err(persist_error)?;
                    Some((c.config, c.created))
                }
                None => None,
            };
            created.ok_or_else(|| {
                tracing::warn!(topic = %h.topic, producer = %ctx.peer_addr(), "send to a topic that does not exist");
                respond(
                    TOPIC_NOT_EXIST,
                    format!("topic[{}] not exist, apply first please!", h.topic),
                )
            })?
        }
    };
    let valid = config.write_queue_nums.max(config.read_queue_nums);
    if h.queue_id >= valid {
        return Err(respond(
            INVALID_PARAMETER,
            format!(
                "request queueId[{}] is illegal, {:?} Producer: {}",
                h.queue_id,
                config,
                ctx.peer_addr()
            ),
        ));
    }
    Ok((config, created_now))
}

fn pick_queue(requested: i32, config: &TopicConfig) -> Result<i32, RemotingCommand> {
    if requested >= 0 {
        return Ok(requested);
    }
    if config.write_queue_nums <= 0 {
        return Err(respond(
            NO_PERMISSION,
            format!("topic[{}] has no writable queue", config.topic_name),
        ));
    }
    Ok((random_u32() % config.write_queue_nums as u32) as i32)
}

fn check_body(b: &BrokerInner, len: usize) -> Result<(), RemotingCommand> {
    let max = b.config.max_message_size_bytes;
    if len > max {
        return Err(respond(
            MESSAGE_ILLEGAL,
            format!("the message body size {len} exceeds the limit of {max} bytes"),
        ));
    }
    Ok(())
}

/// Whether the message asks to be a transaction half message.
fn is_transaction_prepared(props: &MessageProperties, sys_flag: i32) -> bool {
    props
        .get(keys::TRAN_MSG)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || TransactionType::from_sys_flag(sys_flag) == TransactionType::Prepared
}

fn wait_store_ok(props: &MessageProperties) -> bool {
    props
        .get(keys::WAIT)
        .is_none_or(|v| v.eq_ignore_ascii_case("true"))
}

fn sys_flag_for(h: &SendMessageRequestHeader, config: &TopicConfig) -> i32 {
    if config.topic_filter_type == TopicFilterType::MultiTag {
        h.sys_flag | sysflag::MULTI_TAGS_FLAG
    } else {
        h.sys_flag
    }
}

fn prepare_single(
    b: &BrokerInner,
    ctx: &RequestContext,
    req: &RemotingCommand,
    h: SendMessageRequestHeader,
) -> Result<Prepared, RemotingCommand> {
    let (mut config, created_topic) = msg_check(b, ctx, &h)?;
    let mut queue_id = pick_queue(h.queue_id, &config)?;
    check_body(b, req.body.len())?;
    let mut props = MessageProperties::decode(h.properties.as_deref().unwrap_or("").as_bytes());
    props.remove(keys::POP_CK);
    let reconsume_times = h.reconsume_times.unwrap_or(0);
    let delay_level: i32 = props
        .get(keys::DELAY)
        .and_then(|d| d.trim().parse().ok())
        .unwrap_or(0);
    // Clients before 4.6.1 marked retries of transaction messages TRAN_MSG too; those are retries.
    let half =
        is_transaction_prepared(&props, h.sys_flag) && !(reconsume_times > 0 && delay_level > 0);
    if half && b.config.reject_transaction_message {
        return Err(respond(
            NO_PERMISSION,
            format!(
                "the broker[{}] sending transaction message is forbidden",
                b.store_host.ip()
            ),
        ));
    }

    let mut topic = h.topic.clone();
    if names::is_retry_topic(&topic) {
        let group = names::group_of_retry_topic(&topic).to_owned();
        let Some(group_config) = b.groups.find_or_create(&group).map_err(persist_error)? else {
            return Err(respond(
                SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group not exist, {group}"),
            ));
        };
        let max_reconsume_times = match h.max_reconsume_times {
            Some(m) if req.version >= VERSION_V3_4_9 => m,
            _ => group_config.retry_max_times,
        };
        let orderly = !b.locks.is_lock_all_expired(&group, now_ms());
        if reconsume_times > max_reconsume_times || orderly {
            // The plain-send routing a client falls back to when CONSUMER_SEND_MSG_BACK fails.
            topic = names::dlq_topic(&group);
            props.insert(keys::DELAY, "-1");
            config = b
                .topics
                .create_in_send_back(
                    &topic,
                    names::DLQ_NUMS_PER_GROUP,
                    perm::READ | perm::WRITE,
                    false,
                    0,
                )
                .map_err(persist_error)?
                .config;
            queue_id = (random_u32() % names::DLQ_NUMS_PER_GROUP as u32) as i32;
        }
    }

    // Delay levels and timers wait in their system topic; the response names the real queue.
    // (A half message waits for its commit instead.)
    let mut record_queue_id = queue_id;
    if !half {
        crate::schedule::handle_schedule_message(
            b.store.config(),
            &mut props,
            &mut topic,
            &mut record_queue_id,
            h.sys_flag,
            now_ms(),
        )?;
    }

    let uniq_key = match props.uniq_key() {
        Some(k) if !k.is_empty() => k.to_owned(),
        _ => {
            let k = b.uniq_ids.next_id();
            props.set_uniq_key(k.clone());
            k
        }
    };
    props.insert(keys::CLUSTER, b.config.broker_cluster_name.as_str());
    let wait = wait_store_ok(&props);
    let recall_handle = super::recall::send_recall_handle(&b.config.broker_name, &props, &uniq_key);

    let mut record = MessageRecord::new(topic, req.body.clone(), props.to_bytes());
    record.queue_id = record_queue_id;
    record.flag = h.flag;
    record.sys_flag = sys_flag_for(&h, &config);
    record.born_timestamp = h.born_timestamp;
    record.born_host = normalize_host(ctx.peer_addr());
    record.store_host = b.store_host;
    record.reconsume_times = reconsume_times;
    if half {
        // Stored in the half queue; the reply still names the real queue.
        transaction::make_half(&mut record, &mut props);
    }
    let records = encode_in_arena(record.encoded_len(), |buf| record.encode_into(buf))
        .map_err(|e| respond(MESSAGE_ILLEGAL, format!("the message is illegal: {e}")))?;
    Ok(Prepared {
        records,
        queue_id,
        count: 1,
        topic: std::mem::take(&mut record.topic),
        uniq_key: Some(uniq_key),
        recall_handle,
        wait_store_ok: wait,
        created_topic,
    })
}

fn prepare_batch(
    b: &BrokerInner,
    ctx: &RequestContext,
    req: &RemotingCommand,
    h: SendMessageRequestHeader,
) -> Result<Prepared, RemotingCommand> {
    let (config, created_topic) = msg_check(b, ctx, &h)?;
    let queue_id = pick_queue(h.queue_id, &config)?;
    if h.topic.len() > i8::MAX as usize {
        return Err(respond(
            MESSAGE_ILLEGAL,
            format!("message topic length too long {}", h.topic.len()),
        ));
    }
    if names::is_retry_topic(&h.topic) {
        return Err(respond(
            MESSAGE_ILLEGAL,
            format!("batch request does not support retry group {}", h.topic),
        ));
    }
    check_body(b, req.body.len())?;
    let batch_props = MessageProperties::decode(h.properties.as_deref().unwrap_or("").as_bytes());
    let delay_level: i32 = batch_props
        .get(keys::DELAY)
        .and_then(|d| d.trim().parse().ok())
        .unwrap_or(0);
    if delay_level > 0 {
        return Err(respond(
            MESSAGE_ILLEGAL,
            "batch messages cannot carry a delay level",
        ));
    }
    if is_transaction_prepared(&batch_props, h.sys_flag)
        || TransactionType::from_sys_flag(h.sys_flag) != TransactionType::NotType
    {
        return Err(respond(
            MESSAGE_ILLEGAL,
            "batch messages cannot be transaction messages",
        ));
    }
    if req.body.is_empty() {
        return Err(respond(MESSAGE_ILLEGAL, "empty batch body"));
    }

    let sys_flag = sys_flag_for(&h, &config);
    let born_host = normalize_host(ctx.peer_addr());
    let reconsume_times = h.reconsume_times.unwrap_or(0);
    let mut records = BytesMut::with_capacity(req.body.len() + 128);
    let mut count = 0u64;
    for entry in batch_views(&req.body) {
        let entry = entry.map_err(|e| respond(MESSAGE_ILLEGAL, format!("bad batch body: {e}")))?;
        // Each message keeps its own properties, UNIQ_KEY included, as the producer sent them.
        let props =
            if properties::find(entry.properties, keys::UNIQ_KEY).is_some_and(|k| !k.is_empty()) {
                slice_of(&req.body, entry.properties)
            } else {
                let mut p = entry.properties_map();
                p.set_uniq_key(b.uniq_ids.next_id());
                p.to_bytes()
            };
        let mut record =
            MessageRecord::new(h.topic.clone(), slice_of(&req.body, entry.body), props);
        record.queue_id = queue_id;
        record.flag = entry.flag;
        record.sys_flag = sys_flag;
        record.born_timestamp = h.born_timestamp;
        record.born_host = born_host;
        record.store_host = b.store_host;
        record.reconsume_times = reconsume_times;
        record
            .encode_into(&mut records)
            .map_err(|e| respond(MESSAGE_ILLEGAL, format!("the message is illegal: {e}")))?;
        count += 1;
    }
    Ok(Prepared {
        records,
        queue_id,
        count,
        topic: h.topic,
        uniq_key: batch_props.uniq_key().map(str::to_owned),
        recall_handle: None,
        wait_store_ok: wait_store_ok(&batch_props),
        created_topic,
    })
}

/// `part` (a slice of `whole`) as shared `Bytes`.
fn slice_of(whole: &Bytes, part: &[u8]) -> Bytes {
    if part.is_empty() {
        Bytes::new()
    } else {
        whole.slice_ref(part)
    }
}

/// A random number for queue selection, without a PRNG dependency: std's randomly keyed hasher
/// over a counter.
pub(super) fn random_u32() -> u32 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 16) as u32
}
