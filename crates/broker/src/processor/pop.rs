//! POP_MESSAGE (200050), ACK_MESSAGE (200051), BATCH_ACK_MESSAGE (200151) and
//! CHANGE_MESSAGE_INVISIBLETIME (200053) over remoting: header decoding and response building
//! around [`crate::pop`].

use std::sync::Arc;

use apogee_protocol::body::{BatchAckMessageRequestBody, JsonBody};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    PopMessageRequestHeader, PopMessageResponseHeader,
};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{HandlerFuture, RequestContext};

use super::{header, respond, success, try_reply};
use crate::broker::BrokerInner;
use crate::pop::{service, InitMode, PopError, PopRequest, PopStatus, ReceiptHandle};

pub(crate) const CODES: &[i32] = &[
    rc::POP_MESSAGE,
    rc::ACK_MESSAGE,
    rc::BATCH_ACK_MESSAGE,
    rc::CHANGE_MESSAGE_INVISIBLETIME,
];

pub(crate) fn handle(
    b: &Arc<BrokerInner>,
    ctx: RequestContext,
    req: RemotingCommand,
) -> HandlerFuture {
    match req.code {
        rc::POP_MESSAGE => pop(b, ctx, &req),
        rc::ACK_MESSAGE => HandlerFuture::reply(ack(b, &req)),
        rc::BATCH_ACK_MESSAGE => HandlerFuture::reply(batch_ack(b, &req)),
        _ => HandlerFuture::reply(change_invisible(b, &req)),
    }
}

fn error(e: PopError) -> RemotingCommand {
    respond(e.code(), e.remark().to_owned())
}

fn pop(b: &Arc<BrokerInner>, ctx: RequestContext, req: &RemotingCommand) -> HandlerFuture {
    let h: PopMessageRequestHeader = try_reply!(header(req));
    let request = PopRequest {
        group: h.consumer_group,
        topic: h.topic,
        queue_id: (h.queue_id >= 0).then_some(h.queue_id),
        max_messages: h.max_msg_nums,
        invisible_ms: h.invisible_time,
        poll_ms: h.poll_time,
        init_mode: InitMode::from_code(h.init_mode),
        expression_type: h.exp_type,
        expression: h.exp,
        fifo: h.order,
        attempt_id: h.attempt_id,
    };
    // Kept for the traffic counters (one copy per request, not per message).
    let (group, topic) = (request.group.clone(), request.topic.clone());
    let b = Arc::clone(b);
    let detached = ctx.is_detached();
    HandlerFuture::new(async move {
        let result = tokio::select! {
            r = service::pop(&b, request) => r,
            _ = ctx.connection().closed() => return None,
        };
        let r = match result {
            Ok(r) => r,
            Err(e) => return Some(error(e)),
        };
        let code = match r.status {
            PopStatus::Found => SUCCESS,
            PopStatus::NoMessage => POLLING_TIMEOUT,
            PopStatus::PollingFull => POLLING_FULL,
        };
        let header = PopMessageResponseHeader {
            pop_time: r.pop_time_ms,
            invisible_time: r.invisible_ms,
            revive_qid: r.revive_qid,
            rest_num: r.rest_num,
            start_offset_info: r.start_offset_info,
            msg_offset_info: r.msg_offset_info,
            order_count_info: r.order_count_info,
        };
        let mut response = RemotingCommand::response(code, None).with_header(&header);
        if !r.messages.is_empty() {
            let body_len: usize = r.messages.iter().map(|m| m.record.len()).sum();
            b.stats.got_messages.fetch_add(
                r.messages.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            b.stats
                .traffic
                .record_out(&topic, &group, r.messages.len() as u64, body_len as u64);
            let records = r.messages.into_iter().map(|m| m.record).collect();
            response = response.with_body_chunks(records);
        }
        Some(super::pull::for_caller(detached, response))
    })
}

fn ack(b: &BrokerInner, req: &RemotingCommand) -> RemotingCommand {
    let h: AckMessageRequestHeader = match header(req) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let handle = match ReceiptHandle::parse(&h.extra_info) {
        Ok(x) => x,
        Err(e) => return error(e),
    };
    // A stale handle is answered SUCCESS as by Java (the newer delivery stays in flight).
    match service::ack(
        b,
        &h.consumer_group,
        &h.topic,
        h.queue_id,
        h.offset,
        &handle,
    ) {
        Ok(_) => success(),
        Err(e) => error(e),
    }
}

fn batch_ack(b: &BrokerInner, req: &RemotingCommand) -> RemotingCommand {
    let body = match BatchAckMessageRequestBody::decode(&req.body) {
        Ok(body) => body,
        Err(e) => return respond(SYSTEM_ERROR, format!("invalid batch ack body: {e}")),
    };
    for a in &body.acks {
        let handle = ReceiptHandle {
            start_offset: a.start_offset,
            pop_time_ms: a.pop_time,
            invisible_ms: a.invisible_time,
            revive_qid: a.revive_queue_id,
            retry_flag: a.retry.clone(),
            broker_name: body.broker_name.clone(),
            queue_id: a.queue_id,
            queue_offset: None,
            commit_log_offset: None,
        };
        for offset in a.acked_offsets() {
            // Each entry stands alone: one bad offset does not fail the others.
            if let Err(e) =
                service::ack(b, &a.consumer_group, &a.topic, a.queue_id, offset, &handle)
            {
                tracing::debug!(topic = %a.topic, offset, "batch ack entry refused: {e}");
            }
        }
    }
    success()
}

fn change_invisible(b: &BrokerInner, req: &RemotingCommand) -> RemotingCommand {
    let h: ChangeInvisibleTimeRequestHeader = match header(req) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let handle = match ReceiptHandle::parse(&h.extra_info) {
        Ok(x) => x,
        Err(e) => return error(e),
    };
    match service::change_invisible(
        b,
        &h.consumer_group,
        &h.topic,
        h.queue_id,
        h.offset,
        &handle,
        h.invisible_time,
    ) {
        Ok(c) => RemotingCommand::response(SUCCESS, None).with_header(
            &ChangeInvisibleTimeResponseHeader {
                pop_time: c.pop_time_ms,
                invisible_time: c.invisible_ms,
                revive_qid: c.revive_qid,
            },
        ),
        Err(e) => error(e),
    }
}
