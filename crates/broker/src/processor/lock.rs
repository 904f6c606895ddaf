//! LOCK_BATCH_MQ (41) / UNLOCK_BATCH_MQ (42): orderly consumers lock their queues on the broker
//! (`AdminBrokerProcessor.lockBatchMQ/unlockBatchMQ`). Strict lock mode across replicas does not
//! apply to a single broker, so `onlyThisBroker` changes nothing.

use std::sync::Arc;

use apogee_protocol::body::{
    JsonBody, LockBatchRequestBody, LockBatchResponseBody, UnlockBatchRequestBody,
};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::SYSTEM_ERROR;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{not_supported, HandlerFuture, RequestContext};

use super::{respond, success};
use crate::broker::BrokerInner;
use crate::manager::now_ms;

pub(crate) fn handle(
    b: &Arc<BrokerInner>,
    _ctx: RequestContext,
    req: RemotingCommand,
) -> HandlerFuture {
    let response = match req.code {
        rc::LOCK_BATCH_MQ => match LockBatchRequestBody::decode(&req.body) {
            Ok(body) => {
                let locked = b.locks.try_lock_batch(
                    &body.consumer_group,
                    &body.mq_set,
                    &body.client_id,
                    now_ms(),
                );
                let reply = LockBatchResponseBody {
                    lock_ok_mq_set: locked,
                };
                match reply.encode() {
                    Ok(bytes) => success().with_body(bytes),
                    Err(e) => respond(SYSTEM_ERROR, e.to_string()),
                }
            }
            Err(e) => respond(SYSTEM_ERROR, format!("cannot decode the lock body: {e}")),
        },
        rc::UNLOCK_BATCH_MQ => match UnlockBatchRequestBody::decode(&req.body) {
            Ok(body) => {
                b.locks
                    .unlock_batch(&body.consumer_group, &body.mq_set, &body.client_id);
                success()
            }
            Err(e) => respond(SYSTEM_ERROR, format!("cannot decode the unlock body: {e}")),
        },
        _ => not_supported(&req),
    };
    HandlerFuture::reply(response)
}
