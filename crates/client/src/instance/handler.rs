//! Requests brokers send to clients (RocketMQ's `ClientRemotingProcessor`):
//! CHECK_TRANSACTION_STATE goes to the producer of the message's group, NOTIFY_CONSUMER_IDS_CHANGED
//! wakes the rebalance, GET_CONSUMER_RUNNING_INFO is answered from the consumer, and
//! RESET_CONSUMER_CLIENT_OFFSET is handed to it. Anything else is answered
//! REQUEST_CODE_NOT_SUPPORTED by the router.

use std::sync::{Arc, Weak};

use apogee_protocol::body::{JsonBody, ResetOffsetBody};
use apogee_protocol::codes::{request_code, response_code};
use apogee_protocol::header::{
    CheckTransactionStateRequestHeader, GetConsumerRunningInfoRequestHeader,
    NotifyConsumerIdsChangedRequestHeader, ResetOffsetRequestHeader,
};
use apogee_protocol::json::{self, JsonForm};
use apogee_protocol::message::keys;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{HandlerFuture, RequestContext, Router};
use tracing::{debug, warn};

use super::{ClientInstance, InstanceInner};
use crate::message::MessageExt;

fn instance(weak: &Weak<InstanceInner>) -> Option<ClientInstance> {
    weak.upgrade()
        .filter(|i| !i.shut_down.load(std::sync::atomic::Ordering::SeqCst))
        .map(|inner| ClientInstance { inner })
}

/// The router every connection of the instance runs for requests from brokers.
pub(super) fn router(weak: Weak<InstanceInner>) -> Router {
    let w1 = weak.clone();
    let w2 = weak.clone();
    let w3 = weak.clone();
    let w4 = weak;
    Router::new()
        .route(
            request_code::CHECK_TRANSACTION_STATE,
            move |ctx: RequestContext, req: RemotingCommand| {
                if let Some(inst) = instance(&w1) {
                    check_transaction_state(&inst, ctx, req);
                }
                HandlerFuture::no_reply()
            },
        )
        .route(
            request_code::NOTIFY_CONSUMER_IDS_CHANGED,
            move |_ctx: RequestContext, req: RemotingCommand| {
                if let Some(inst) = instance(&w2) {
                    let group = req
                        .decode_header::<NotifyConsumerIdsChangedRequestHeader>()
                        .map(|h| h.consumer_group)
                        .unwrap_or_default();
                    debug!(%group, "consumer ids changed, rebalancing");
                    inst.trigger_rebalance();
                }
                HandlerFuture::no_reply()
            },
        )
        .route(
            request_code::GET_CONSUMER_RUNNING_INFO,
            move |_ctx: RequestContext, req: RemotingCommand| {
                let response = match instance(&w3) {
                    Some(inst) => consumer_running_info(&inst, &req),
                    None => RemotingCommand::response_to(
                        &req,
                        response_code::SYSTEM_ERROR,
                        Some("client is shut down".into()),
                    ),
                };
                HandlerFuture::reply(response)
            },
        )
        .route(
            request_code::RESET_CONSUMER_CLIENT_OFFSET,
            move |_ctx: RequestContext, req: RemotingCommand| {
                if let Some(inst) = instance(&w4) {
                    reset_offset(&inst, &req);
                }
                HandlerFuture::no_reply()
            },
        )
}

fn check_transaction_state(inst: &ClientInstance, ctx: RequestContext, req: RemotingCommand) {
    let header = match req.decode_header::<CheckTransactionStateRequestHeader>() {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "bad CHECK_TRANSACTION_STATE header");
            return;
        }
    };
    let msg = match MessageExt::decode(&req.body) {
        Ok((msg, _)) => msg,
        Err(e) => {
            warn!(error = %e, "CHECK_TRANSACTION_STATE body is not a message record");
            return;
        }
    };
    let Some(group) = msg.property(keys::PGROUP).map(str::to_owned) else {
        warn!("CHECK_TRANSACTION_STATE for a message without producer group");
        return;
    };
    match inst.producer_hook(&group) {
        Some(producer) => producer.check_transaction_state(ctx.connection().clone(), header, msg),
        None => debug!(%group, "CHECK_TRANSACTION_STATE for a group this client does not have"),
    }
}

fn consumer_running_info(inst: &ClientInstance, req: &RemotingCommand) -> RemotingCommand {
    let header = match req.decode_header::<GetConsumerRunningInfoRequestHeader>() {
        Ok(h) => h,
        Err(e) => {
            return RemotingCommand::response_to(
                req,
                response_code::SYSTEM_ERROR,
                Some(e.to_string()),
            )
        }
    };
    let Some(consumer) = inst.consumer_hook(&header.consumer_group) else {
        return RemotingCommand::response_to(
            req,
            response_code::SYSTEM_ERROR,
            Some(format!(
                "The Consumer Group <{}> not exist in this consumer",
                header.consumer_group
            )),
        );
    };
    let mut info = consumer.running_info();
    if header.jstack_enable {
        info.jstack = Some(String::new());
    }
    match json::to_vec(&info, JsonForm::Fastjson) {
        Ok(body) => RemotingCommand::response_to(req, response_code::SUCCESS, None).with_body(body),
        Err(e) => {
            RemotingCommand::response_to(req, response_code::SYSTEM_ERROR, Some(e.to_string()))
        }
    }
}

fn reset_offset(inst: &ClientInstance, req: &RemotingCommand) {
    let header = match req.decode_header::<ResetOffsetRequestHeader>() {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "bad RESET_CONSUMER_CLIENT_OFFSET header");
            return;
        }
    };
    let body = match ResetOffsetBody::decode(&req.body) {
        Ok(b) => b,
        Err(e) => {
            warn!(error = %e, "bad RESET_CONSUMER_CLIENT_OFFSET body");
            return;
        }
    };
    if let Some(consumer) = inst.consumer_hook(&header.group) {
        let consumer: Arc<dyn super::ConsumerHook> = consumer;
        consumer.reset_offset(&header.topic, body.offset_table.into_iter().collect());
    }
}
