//! Request processors, one file per family of request codes. Each one decodes its typed header (a
//! malformed header or body is answered with an error response, never a panic), does the work
//! through the managers and the store, and builds the response. Codes without a processor are
//! answered REQUEST_CODE_NOT_SUPPORTED by the router.

mod admin;
mod client;
mod lock;
mod offset;
mod pop;
mod pull;
mod query;
mod recall;
mod send;
mod send_back;
mod transaction;

use std::sync::Arc;

use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::SYSTEM_ERROR;
use apogee_protocol::header::CommandHeader;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{HandlerFuture, RequestContext, RequestHandler, Router};

use crate::broker::BrokerInner;

type Handler = fn(&Arc<BrokerInner>, RequestContext, RemotingCommand) -> HandlerFuture;

/// A processor bound to the broker state.
struct Bound {
    inner: Arc<BrokerInner>,
    handler: Handler,
}

impl RequestHandler for Bound {
    fn handle(&self, ctx: RequestContext, request: RemotingCommand) -> HandlerFuture {
        // Latency per request code for `rocketmq_rpc_latency`, measured until the reply is ready
        // (long-polling and sync-flush waits included).
        let started = std::time::Instant::now();
        let code = request.code;
        let reply = (self.handler)(&self.inner, ctx, request);
        let inner = Arc::clone(&self.inner);
        HandlerFuture::new(async move {
            let response = reply.await;
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let response_code = response.as_ref().map(|r| r.code).unwrap_or(-1);
            inner.stats.traffic.record_rpc(code, response_code, us);
            response
        })
    }
}

/// The broker's routing table.
pub(crate) fn router(inner: Arc<BrokerInner>) -> Router {
    let families: &[(&[i32], Handler)] = &[
        (
            &[
                rc::SEND_MESSAGE,
                rc::SEND_MESSAGE_V2,
                rc::SEND_BATCH_MESSAGE,
            ],
            send::handle,
        ),
        (&[rc::CONSUMER_SEND_MSG_BACK], send_back::handle),
        (&[rc::PULL_MESSAGE, rc::LITE_PULL_MESSAGE], pull::handle),
        (
            &[
                rc::QUERY_CONSUMER_OFFSET,
                rc::UPDATE_CONSUMER_OFFSET,
                rc::GET_MAX_OFFSET,
                rc::GET_MIN_OFFSET,
                rc::GET_EARLIEST_MSG_STORETIME,
                rc::SEARCH_OFFSET_BY_TIMESTAMP,
            ],
            offset::handle,
        ),
        (
            &[
                rc::HEART_BEAT,
                rc::UNREGISTER_CLIENT,
                rc::GET_CONSUMER_LIST_BY_GROUP,
                rc::CHECK_CLIENT_CONFIG,
            ],
            client::handle,
        ),
        (&[rc::LOCK_BATCH_MQ, rc::UNLOCK_BATCH_MQ], lock::handle),
        (&[rc::QUERY_MESSAGE, rc::VIEW_MESSAGE_BY_ID], query::handle),
        (&[rc::END_TRANSACTION], transaction::handle),
        (&[rc::RECALL_MESSAGE], recall::handle),
        (admin::CODES, admin::handle),
        (pop::CODES, pop::handle),
    ];
    let mut router = Router::new();
    for (codes, handler) in families {
        let bound: Arc<dyn RequestHandler> = Arc::new(Bound {
            inner: Arc::clone(&inner),
            handler: *handler,
        });
        router = router.route_many(codes, bound);
    }
    router
}

/// A response with `code` and `remark`.
pub(crate) fn respond(code: i32, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::response(code, Some(remark.into()))
}

/// A successful response without remark.
pub(crate) fn success() -> RemotingCommand {
    RemotingCommand::response(apogee_protocol::codes::response_code::SUCCESS, None)
}

/// Decodes a typed header; a missing or unparsable field becomes the SYSTEM_ERROR a Java broker
/// answers when header decoding throws, with the field named in the remark.
pub(crate) fn header<H: CommandHeader>(request: &RemotingCommand) -> Result<H, RemotingCommand> {
    request
        .decode_header::<H>()
        .map_err(|e| respond(SYSTEM_ERROR, format!("invalid request header: {e}")))
}

/// `Ok` value or the ready error response.
macro_rules! try_reply {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(response) => return ::apogee_remoting::HandlerFuture::reply(response),
        }
    };
}
pub(crate) use try_reply;

/// A config-file write failed: the change is in memory but may not survive a restart.
pub(crate) fn persist_error(e: crate::error::BrokerError) -> RemotingCommand {
    respond(SYSTEM_ERROR, format!("cannot persist the change: {e}"))
}
