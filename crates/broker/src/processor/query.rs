//! QUERY_MESSAGE (12) by key or unique key, and VIEW_MESSAGE_BY_ID (33) by commit-log offset
//! (`QueryMessageProcessor`). Bodies are stored records, exactly as in the CommitLog.

use std::sync::Arc;

use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{
    QueryMessageRequestHeader, QueryMessageResponseHeader, ViewMessageRequestHeader,
};
use apogee_protocol::message::RecordView;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{not_supported, HandlerFuture, RequestContext};
use bytes::BytesMut;

use super::{header, respond, success, try_reply};
use crate::broker::BrokerInner;
use crate::manager::now_ms;

/// `maxMsgsNumBatch`: most records one key query returns.
const MAX_MSGS_NUM_BATCH: usize = 64;

pub(crate) fn handle(
    b: &Arc<BrokerInner>,
    _ctx: RequestContext,
    req: RemotingCommand,
) -> HandlerFuture {
    let response = match req.code {
        rc::QUERY_MESSAGE => {
            let h: QueryMessageRequestHeader = try_reply!(header(&req));
            query_message(b, &h)
        }
        rc::VIEW_MESSAGE_BY_ID => {
            let h: ViewMessageRequestHeader = try_reply!(header(&req));
            view_message(b, h.offset)
        }
        _ => not_supported(&req),
    };
    HandlerFuture::reply(response)
}

fn query_message(b: &BrokerInner, h: &QueryMessageRequestHeader) -> RemotingCommand {
    let max = if h.is_unique_key_query() {
        b.config.default_query_max_num
    } else {
        usize::try_from(h.max_num).unwrap_or(0)
    }
    .clamp(1, MAX_MSGS_NUM_BATCH);
    let found = b
        .store
        .query_by_key(&h.topic, &h.key, max, h.begin_timestamp, h.end_timestamp);
    let header = QueryMessageResponseHeader {
        index_last_update_timestamp: now_ms(),
        index_last_update_phyoffset: b.store.commitlog_max_offset() as i64,
    };
    if found.is_empty() {
        return respond(
            QUERY_NOT_FOUND,
            "can not find message, maybe time range not correct",
        )
        .with_header(&header);
    }
    let mut body = BytesMut::with_capacity(found.iter().map(|r| r.len()).sum());
    for r in &found {
        body.extend_from_slice(r);
    }
    success().with_header(&header).with_body(body.freeze())
}

fn view_message(b: &BrokerInner, offset: i64) -> RemotingCommand {
    let not_found = || {
        respond(
            SYSTEM_ERROR,
            format!("can not find message by the offset, {offset}"),
        )
    };
    let Ok(at) = u64::try_from(offset) else {
        return not_found();
    };
    // An offset that does not start a record must not return whatever bytes are there.
    match b.store.message_at(at) {
        Some(record) if RecordView::parse(&record).is_ok_and(|v| v.physical_offset == offset) => {
            success().with_body(record)
        }
        _ => not_found(),
    }
}
