//! PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361): RocketMQ's `PullMessageProcessor` with its
//! result handler and long polling.
//!
//! A pull runs the group, topic and subscription checks, reads from the store through the tag
//! filter (and, for SQL92, a property filter on each candidate record), and maps the store's status to a response code and a corrected next offset. When it
//! finds nothing and may be suspended, it parks (see [`crate::long_polling`]) and runs again, without
//! suspension, once the queue grows, its time is up, or the broker stops.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use apogee_protocol::codes::request_code::LITE_PULL_MESSAGE;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::codes::{perm, pull_sys_flag};
use apogee_protocol::header::{PullMessageRequestHeader, PullMessageResponseHeader};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{HandlerFuture, RequestContext};
use apogee_store::{GetMessageResult, GetMessageStatus, RecordFilter};
use tokio::time::Instant;

use super::{header, respond, try_reply};
use crate::broker::BrokerInner;
use crate::filter::{unsupported_remark, ExpressionKind, FilterError, MessageFilter};
use crate::long_polling::Wake;

/// `ForbiddenType` values set with NO_PERMISSION.
const BROKER_FORBIDDEN: i32 = 1;
const GROUP_FORBIDDEN: i32 = 2;
const TOPIC_FORBIDDEN: i32 = 3;
const BROADCASTING_DISABLE_FORBIDDEN: i32 = 4;
const SUBSCRIPTION_FORBIDDEN: i32 = 5;
/// `PermName.INDEX_PERM_READ`: the bit of the forbidden table that blocks reading.
const INDEX_PERM_READ: u32 = 2;
/// Longest a pull may be held, whatever the client asks (Java clients ask 15-20 s).
const MAX_SUSPEND_MS: i64 = 300_000;

pub(crate) fn handle(
    b: &Arc<BrokerInner>,
    ctx: RequestContext,
    req: RemotingCommand,
) -> HandlerFuture {
    let h: PullMessageRequestHeader = try_reply!(header(&req));
    let detached = ctx.is_detached();
    match run(b, req.code, &h, true) {
        Outcome::Respond(r) => HandlerFuture::reply(for_caller(detached, r)),
        Outcome::Suspend { polling_ms } => {
            let b = Arc::clone(b);
            HandlerFuture::new(async move {
                let r = hold(b, ctx, req.code, h, polling_ms).await;
                r.map(|r| for_caller(detached, r))
            })
        }
    }
}

/// A reply's body is the store's record slices, written to a socket without copying; an
/// in-process caller reads `body` directly and gets it joined.
pub(super) fn for_caller(detached: bool, mut response: RemotingCommand) -> RemotingCommand {
    if detached {
        response.make_body_contiguous();
    }
    response
}

enum Outcome {
    Respond(RemotingCommand),
    /// PULL_NOT_FOUND and suspension allowed: hold the request this long.
    Suspend {
        polling_ms: u64,
    },
}

/// A finished pull, with what long polling needs to decide whether to keep waiting.
struct Ran {
    response: RemotingCommand,
    status: Option<GetMessageStatus>,
    next_begin_offset: i64,
}

fn run(b: &BrokerInner, code: i32, h: &PullMessageRequestHeader, allow_suspend: bool) -> Outcome {
    let ran = match pull_once(b, code, h, allow_suspend) {
        Ok(ran) => ran,
        Err(response) => return Outcome::Respond(response),
    };
    if ran.response.code == PULL_NOT_FOUND
        && allow_suspend
        && pull_sys_flag::has_suspend(h.sys_flag)
    {
        let polling_ms = if b.live.long_polling_enable() {
            h.suspend_timeout_millis.clamp(0, MAX_SUSPEND_MS) as u64
        } else {
            b.live.short_polling_time_ms()
        };
        return Outcome::Suspend { polling_ms };
    }
    Outcome::Respond(ran.response)
}

/// Holds a suspended pull, then answers it.
async fn hold(
    b: Arc<BrokerInner>,
    ctx: RequestContext,
    code: i32,
    h: PullMessageRequestHeader,
    polling_ms: u64,
) -> Option<RemotingCommand> {
    let deadline = Instant::now() + Duration::from_millis(polling_ms);
    let long_polling = b.live.long_polling_enable();
    let mut wait_above = h.queue_offset.max(0) as u64;
    loop {
        let Some(mut parked) = b.holds.park(&h.topic, h.queue_id, wait_above, long_polling) else {
            // Full, or stopping: answer now.
            return Some(final_answer(&b, code, &h));
        };
        // A message appended between the pull and the parking did not wake anyone: look again.
        let arrived_meanwhile =
            long_polling && b.store.max_offset(&h.topic, h.queue_id) > wait_above;
        if !arrived_meanwhile {
            tokio::select! {
                wake = parked.woken() => {
                    if wake == Wake::Shutdown {
                        drop(parked);
                        return Some(final_answer(&b, code, &h));
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    drop(parked);
                    return Some(final_answer(&b, code, &h));
                }
                _ = ctx.connection().closed() => return None,
            }
        }
        drop(parked);
        let ran = match pull_once(&b, code, &h, false) {
            Ok(ran) => ran,
            Err(response) => return Some(response),
        };
        // New entries that the filter rejects: keep waiting for matching ones until the time is
        // up, as RocketMQ keeps such a pull parked.
        let unmatched = ran.status == Some(GetMessageStatus::NoMatchedMessage)
            && ran.next_begin_offset as u64 > wait_above;
        if unmatched && Instant::now() < deadline {
            wait_above = ran.next_begin_offset as u64;
            continue;
        }
        return Some(ran.response);
    }
}

fn final_answer(b: &BrokerInner, code: i32, h: &PullMessageRequestHeader) -> RemotingCommand {
    match pull_once(b, code, h, false) {
        Ok(ran) => ran.response,
        Err(response) => response,
    }
}

fn forbidden(remark: String, forbidden_type: i32) -> RemotingCommand {
    let header = PullMessageResponseHeader {
        forbidden_type: Some(forbidden_type),
        ..PullMessageResponseHeader::default()
    };
    respond(NO_PERMISSION, remark).with_header(&header)
}

/// One pass of `PullMessageProcessor.processRequest`.
fn pull_once(
    b: &BrokerInner,
    code: i32,
    h: &PullMessageRequestHeader,
    allow_suspend: bool,
) -> Result<Ran, RemotingCommand> {
    let ip = b.store_host.ip();
    if !perm::is_readable(b.live.broker_permission()) {
        return Err(forbidden(
            format!("the broker[{ip}] pulling message is forbidden"),
            BROKER_FORBIDDEN,
        ));
    }
    if code == LITE_PULL_MESSAGE && !b.live.lite_pull_message_enable() {
        return Err(forbidden(
            format!("the broker[{ip}] for lite pull consumer is forbidden"),
            BROKER_FORBIDDEN,
        ));
    }
    let group = &h.consumer_group;
    let group_config = b
        .groups
        .find_or_create(group)
        .map_err(super::persist_error)?
        .ok_or_else(|| {
            respond(
                SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group [{group}] does not exist"),
            )
        })?;
    if !group_config.consume_enable {
        return Err(forbidden(
            format!("subscription group no permission, {group}"),
            GROUP_FORBIDDEN,
        ));
    }
    let topic = &h.topic;
    let topic_config = b.topics.select(topic).ok_or_else(|| {
        respond(
            TOPIC_NOT_EXIST,
            format!("topic[{topic}] not exist, apply first please!"),
        )
    })?;
    if !perm::is_readable(topic_config.perm) {
        return Err(forbidden(
            format!("the topic[{topic}] pulling message is forbidden"),
            TOPIC_FORBIDDEN,
        ));
    }
    if h.queue_id < 0 || h.queue_id >= topic_config.read_queue_nums {
        return Err(respond(
            INVALID_PARAMETER,
            format!(
                "queueId[{}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{}]",
                h.queue_id, topic_config.read_queue_nums
            ),
        ));
    }

    let property_filter = b.config.enable_property_filter;
    let filter = if pull_sys_flag::has_subscription(h.sys_flag) {
        MessageFilter::build_with(
            h.subscription.as_deref(),
            h.expression_type.as_deref(),
            property_filter,
            |text| b.filters.compile(text),
        )
        .map_err(filter_error)?
    } else {
        let info = b.consumers.group(group).ok_or_else(|| {
            respond(
                SUBSCRIPTION_NOT_EXIST,
                "the consumer's group info not exist",
            )
        })?;
        if !group_config.consume_broadcast_enable
            && info.message_model == apogee_protocol::body::MessageModel::Broadcasting
        {
            return Err(forbidden(
                format!("the consumer group[{group}] can not consume by broadcast way"),
                BROADCASTING_DISABLE_FORBIDDEN,
            ));
        }
        if b.groups.is_forbidden(group, topic, INDEX_PERM_READ) {
            return Err(forbidden(
                format!("the consumer group[{group}] is forbidden for topic[{topic}]"),
                SUBSCRIPTION_FORBIDDEN,
            ));
        }
        let sub = info.subscriptions.get(topic).ok_or_else(|| {
            respond(
                SUBSCRIPTION_NOT_EXIST,
                "the consumer's subscription not exist",
            )
        })?;
        if sub.sub_version < h.sub_version {
            return Err(respond(
                SUBSCRIPTION_NOT_LATEST,
                "the consumer's subscription not latest",
            ));
        }
        match ExpressionKind::of(Some(&sub.expression_type)) {
            ExpressionKind::Tag => {
                MessageFilter::build_tags(Some(&sub.sub_string)).map_err(filter_error)?
            }
            _ => registered_filter(b, group, topic, &sub.expression_type, h.sub_version)?,
        }
    };

    let result = read(b, h, &filter);
    let status = result.status;
    let code = match status {
        GetMessageStatus::Found => SUCCESS,
        GetMessageStatus::MessageWasRemoving | GetMessageStatus::NoMatchedMessage => {
            PULL_RETRY_IMMEDIATELY
        }
        GetMessageStatus::NoMatchedLogicQueue | GetMessageStatus::NoMessageInQueue => {
            if h.queue_offset != 0 {
                PULL_OFFSET_MOVED
            } else {
                PULL_NOT_FOUND
            }
        }
        GetMessageStatus::OffsetFoundNull | GetMessageStatus::OffsetOverflowOne => PULL_NOT_FOUND,
        GetMessageStatus::OffsetOverflowBadly | GetMessageStatus::OffsetTooSmall => {
            PULL_OFFSET_MOVED
        }
    };
    if code == PULL_OFFSET_MOVED {
        tracing::info!(
            topic = %topic, queue_id = h.queue_id, group = %group,
            requested = h.queue_offset, corrected = result.next_begin_offset,
            status = status_name(status), "pull offset corrected"
        );
    }
    let next_begin_offset = result.next_begin_offset as i64;
    let header = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset,
        min_offset: result.min_offset as i64,
        max_offset: result.max_offset as i64,
        offset_delta: None,
        topic_sys_flag: Some(topic_config.topic_sys_flag),
        group_sys_flag: Some(group_config.group_sys_flag),
        forbidden_type: None,
    };
    let mut response = respond(code, status_name(status)).with_header(&header);

    b.offsets
        .commit_pull_offset(group, topic, h.queue_id, next_begin_offset);
    if allow_suspend && pull_sys_flag::has_commit_offset(h.sys_flag) {
        b.offsets
            .commit_offset(group, topic, h.queue_id, h.commit_offset);
    }

    if code == SUCCESS {
        b.stats
            .got_messages
            .fetch_add(result.messages.len() as u64, Ordering::Relaxed);
        b.stats.traffic.record_out(
            topic,
            group,
            result.messages.len() as u64,
            result.total_bytes as u64,
        );
        response = response.with_body_chunks(result.messages);
    }
    Ok(Ran {
        response,
        status: Some(status),
        next_begin_offset,
    })
}

/// The compiled filter of a heartbeat-registered non-TAG subscription, checked as RocketMQ
/// checks its `ConsumerFilterData`: present (FILTER_DATA_NOT_EXIST), at least as new as the
/// pull's `subVersion` (FILTER_DATA_NOT_LATEST), compiled (FILTER_DATA_NOT_EXIST again, here with
/// the parser's message), and property filtering enabled (SYSTEM_ERROR).
fn registered_filter(
    b: &BrokerInner,
    group: &str,
    topic: &str,
    expression_type: &str,
    sub_version: i64,
) -> Result<MessageFilter, RemotingCommand> {
    const NOT_EXIST: &str =
        "The broker's consumer filter data is not exist!Your expression may be wrong!";
    let registered = b
        .filters
        .get(group, topic)
        .ok_or_else(|| respond(FILTER_DATA_NOT_EXIST, NOT_EXIST))?;
    if registered.sub_version < sub_version {
        return Err(respond(
            FILTER_DATA_NOT_LATEST,
            "the consumer's consumer filter data not latest",
        ));
    }
    let filter = registered
        .compiled
        .map_err(|why| respond(FILTER_DATA_NOT_EXIST, format!("{NOT_EXIST} {why}")))?;
    if !b.config.enable_property_filter {
        return Err(respond(SYSTEM_ERROR, unsupported_remark(expression_type)));
    }
    Ok(MessageFilter::Sql(filter))
}

/// Reads from the store with RocketMQ's per-pull limits (32 messages, 256 KiB beyond the first).
fn read(b: &BrokerInner, h: &PullMessageRequestHeader, filter: &MessageFilter) -> GetMessageResult {
    if h.queue_offset < 0 {
        // Below any queue's minimum: the store's "too small" answer, computed here because its
        // offsets are unsigned.
        let min = b.store.min_offset(&h.topic, h.queue_id);
        let max = b.store.max_offset(&h.topic, h.queue_id);
        return GetMessageResult {
            status: if max == 0 {
                GetMessageStatus::NoMessageInQueue
            } else {
                GetMessageStatus::OffsetTooSmall
            },
            next_begin_offset: if max == 0 { 0 } else { min },
            min_offset: min,
            max_offset: max,
            messages: Vec::new(),
            queue_offsets: Vec::new(),
            total_bytes: 0,
        };
    }
    let max_count = (h.max_msg_nums.max(1) as usize).min(b.live.max_transfer_count().max(1));
    let mut max_bytes = b.live.max_transfer_bytes();
    if let Some(limit) = h.max_msg_bytes.filter(|&l| l > 0) {
        max_bytes = max_bytes.min(limit as usize);
    }
    let record_filter = filter.record_filter();
    let by_record = |record: &[u8]| record_filter.is_none_or(|f| f.matches_record(record));
    b.store.get_messages_matching(
        &h.topic,
        h.queue_id,
        h.queue_offset as u64,
        max_count,
        max_bytes,
        &|tags_code| filter.matches(tags_code),
        record_filter.map(|_| &by_record as RecordFilter<'_>),
    )
}

fn filter_error(e: FilterError) -> RemotingCommand {
    match e {
        FilterError::Parse(why) => respond(
            SUBSCRIPTION_PARSE_FAILED,
            format!("parse the consumer's subscription failed: {why}"),
        ),
        FilterError::Unsupported(why) => respond(SYSTEM_ERROR, why),
    }
}

/// RocketMQ's `GetMessageStatus` names, sent as the pull response's remark.
fn status_name(s: GetMessageStatus) -> &'static str {
    match s {
        GetMessageStatus::Found => "FOUND",
        GetMessageStatus::NoMatchedMessage => "NO_MATCHED_MESSAGE",
        GetMessageStatus::MessageWasRemoving => "MESSAGE_WAS_REMOVING",
        GetMessageStatus::OffsetFoundNull => "OFFSET_FOUND_NULL",
        GetMessageStatus::OffsetOverflowBadly => "OFFSET_OVERFLOW_BADLY",
        GetMessageStatus::OffsetOverflowOne => "OFFSET_OVERFLOW_ONE",
        GetMessageStatus::OffsetTooSmall => "OFFSET_TOO_SMALL",
        GetMessageStatus::NoMatchedLogicQueue => "NO_MATCHED_LOGIC_QUEUE",
        GetMessageStatus::NoMessageInQueue => "NO_MESSAGE_IN_QUEUE",
    }
}
