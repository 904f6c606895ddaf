//! Offsets: QUERY_CONSUMER_OFFSET (14), UPDATE_CONSUMER_OFFSET (15), GET_MAX_OFFSET (30),
//! GET_MIN_OFFSET (31), GET_EARLIEST_MSG_STORETIME (32), SEARCH_OFFSET_BY_TIMESTAMP (29)
//! (`ConsumerManageProcessor` and the queue-offset parts of `AdminBrokerProcessor`).

use std::sync::Arc;

use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::*;
use apogee_protocol::{ProtocolError, RemotingCommand};
use apogee_remoting::{not_supported, HandlerFuture, RequestContext};
use apogee_store::BoundaryType as StoreBoundary;

use super::{header, respond, success, try_reply};
use crate::broker::BrokerInner;

pub(crate) fn handle(
    b: &Arc<BrokerInner>,
    _ctx: RequestContext,
    req: RemotingCommand,
) -> HandlerFuture {
    let response = match req.code {
        rc::QUERY_CONSUMER_OFFSET => query_consumer_offset(b, &req),
        rc::UPDATE_CONSUMER_OFFSET => update_consumer_offset(b, &req),
        rc::GET_MAX_OFFSET => {
            let h: GetMaxOffsetRequestHeader = try_reply!(header(&req));
            let offset = b.store.max_offset(&h.topic, h.queue_id) as i64;
            success().with_header(&GetMaxOffsetResponseHeader { offset })
        }
        rc::GET_MIN_OFFSET => {
            let h: GetMinOffsetRequestHeader = try_reply!(header(&req));
            let offset = b.store.min_offset(&h.topic, h.queue_id) as i64;
            success().with_header(&GetMinOffsetResponseHeader { offset })
        }
        rc::GET_EARLIEST_MSG_STORETIME => {
            let h: GetEarliestMsgStoretimeRequestHeader = try_reply!(header(&req));
            let timestamp = b
                .store
                .earliest_message_time(&h.topic, h.queue_id)
                .unwrap_or(-1);
            success().with_header(&GetEarliestMsgStoretimeResponseHeader { timestamp })
        }
        rc::SEARCH_OFFSET_BY_TIMESTAMP => {
            let h: SearchOffsetRequestHeader = try_reply!(header(&req));
            let boundary = match h.boundary() {
                BoundaryType::Lower => StoreBoundary::Lower,
                BoundaryType::Upper => StoreBoundary::Upper,
            };
            let offset =
                b.store
                    .search_offset_by_timestamp(&h.topic, h.queue_id, h.timestamp, boundary)
                    as i64;
            success().with_header(&SearchOffsetResponseHeader { offset })
        }
        _ => not_supported(&req),
    };
    HandlerFuture::reply(response)
}

/// A stored offset, or for a group new to the queue: 0 when the queue still starts at 0 (so a new
/// group on a fresh topic reads from the beginning), else QUERY_NOT_FOUND.
fn query_consumer_offset(b: &BrokerInner, req: &RemotingCommand) -> RemotingCommand {
    let h: QueryConsumerOffsetRequestHeader = match header(req) {
        Ok(h) => h,
        Err(r) => return r,
    };
    if let Some(offset) = b
        .offsets
        .query_offset(&h.consumer_group, &h.topic, h.queue_id)
    {
        if offset >= 0 {
            return success().with_header(&QueryConsumerOffsetResponseHeader { offset });
        }
    }
    if h.set_zero_if_not_found == Some(false) {
        return respond(
            QUERY_NOT_FOUND,
            "Not found, do not set to zero, maybe this group boot first",
        );
    }
    // RocketMQ also asks that the first message still be in the page cache; a record that the
    // store still holds is the nearest equivalent here.
    let min = b.store.min_offset(&h.topic, h.queue_id);
    if min == 0
        && b.store
            .message_at_queue_offset(&h.topic, h.queue_id, 0)
            .is_some()
    {
        return success().with_header(&QueryConsumerOffsetResponseHeader { offset: 0 });
    }
    respond(
        QUERY_NOT_FOUND,
        "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first",
    )
}

fn update_consumer_offset(b: &BrokerInner, req: &RemotingCommand) -> RemotingCommand {
    let h: UpdateConsumerOffsetRequestHeader = match req.decode_header() {
        Ok(h) => h,
        // Java checks these two itself and answers INVALID_PARAMETER.
        Err(ProtocolError::MissingField(field @ ("queueId" | "commitOffset"))) => {
            let topic = req.ext_fields.get("topic").unwrap_or("");
            let what = if field == "queueId" {
                "QueueId"
            } else {
                "Offset"
            };
            return respond(
                INVALID_PARAMETER,
                format!("{what} is null, topic is {topic}"),
            );
        }
        Err(_) => match header::<UpdateConsumerOffsetRequestHeader>(req) {
            Ok(h) => h,
            Err(r) => return r,
        },
    };
    if !b.groups.contains(&h.consumer_group) {
        return respond(
            SUBSCRIPTION_GROUP_NOT_EXIST,
            format!("Group {} not exist!", h.consumer_group),
        );
    }
    if !b.topics.contains(&h.topic) {
        return respond(TOPIC_NOT_EXIST, format!("Topic {} not exist!", h.topic));
    }
    b.offsets
        .commit_offset(&h.consumer_group, &h.topic, h.queue_id, h.commit_offset);
    success()
}
