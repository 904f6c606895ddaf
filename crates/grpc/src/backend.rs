//! The broker-facing side of the endpoint. The gRPC layer handles transport, headers, sessions
//! and Telemetry settings itself and hands every broker operation to a [`MessagingBackend`]. It
//! is meant to be implemented twice: over the in-process broker ("local mode") and over remoting
//! to a cluster ("proxy mode"). Backends answer in RocketMQ's own terms: a response body with a
//! `Status`, or an [`RpcError`] that the service turns into one.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;

use crate::config::GroupPolicy;
use crate::metadata::ClientMetadata;
use crate::pb;
use crate::session::{ClientSession, SessionRegistry};
use crate::status::{RpcError, RpcResult};

/// Who is calling: the client's headers and addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub metadata: ClientMetadata,
    pub remote_addr: Option<SocketAddr>,
    pub local_addr: Option<SocketAddr>,
}

impl RequestContext {
    pub fn from_request<T>(request: &tonic::Request<T>) -> Self {
        Self {
            metadata: ClientMetadata::from_metadata(request.metadata()),
            remote_addr: request.remote_addr(),
            local_addr: request.local_addr(),
        }
    }

    pub fn client_id(&self) -> Option<&str> {
        self.metadata.client_id.as_deref()
    }
}

/// A server-streaming answer (ReceiveMessage, PullMessage): items in the order the client must
/// see them (status, messages, then the trailer item).
pub type BackendStream<T> = Pin<Box<dyn Stream<Item = T> + Send + 'static>>;

/// Why a client went away, for [`MessagingBackend::client_offline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineReason {
    /// It said so (NotifyClientTermination).
    Terminated,
    /// No call and no Telemetry stream for `client_idle_timeout_ms`.
    Expired,
}

/// Broker operations behind the RPCs. Data-plane methods have no default, so an implementation
/// states what it does for each; the client lifecycle hooks default to doing nothing.
#[async_trait::async_trait]
pub trait MessagingBackend: Send + Sync + 'static {
    /// QueryRoute: the topic's queues, with broker endpoints the client can dial.
    async fn query_route(
        &self,
        ctx: &RequestContext,
        request: pb::QueryRouteRequest,
    ) -> RpcResult<pb::QueryRouteResponse>;

    /// SendMessage: normal, FIFO, delay and transaction (half) messages.
    async fn send_message(
        &self,
        ctx: &RequestContext,
        request: pb::SendMessageRequest,
    ) -> RpcResult<pb::SendMessageResponse>;

    /// QueryAssignment: server-side load balancing for push consumers.
    async fn query_assignment(
        &self,
        ctx: &RequestContext,
        request: pb::QueryAssignmentRequest,
    ) -> RpcResult<pb::QueryAssignmentResponse>;

    /// ReceiveMessage: POP receive with long polling.
    async fn receive_message(
        &self,
        ctx: &RequestContext,
        request: pb::ReceiveMessageRequest,
    ) -> RpcResult<BackendStream<pb::ReceiveMessageResponse>>;

    async fn ack_message(
        &self,
        ctx: &RequestContext,
        request: pb::AckMessageRequest,
    ) -> RpcResult<pb::AckMessageResponse>;

    async fn forward_message_to_dead_letter_queue(
        &self,
        ctx: &RequestContext,
        request: pb::ForwardMessageToDeadLetterQueueRequest,
    ) -> RpcResult<pb::ForwardMessageToDeadLetterQueueResponse>;

    /// ChangeInvisibleDuration: answers with a new receipt handle.
    async fn change_invisible_duration(
        &self,
        ctx: &RequestContext,
        request: pb::ChangeInvisibleDurationRequest,
    ) -> RpcResult<pb::ChangeInvisibleDurationResponse>;

    async fn end_transaction(
        &self,
        ctx: &RequestContext,
        request: pb::EndTransactionRequest,
    ) -> RpcResult<pb::EndTransactionResponse>;

    /// PullMessage: offset-based pull for PullConsumer.
    async fn pull_message(
        &self,
        ctx: &RequestContext,
        request: pb::PullMessageRequest,
    ) -> RpcResult<BackendStream<pb::PullMessageResponse>>;

    async fn update_offset(
        &self,
        ctx: &RequestContext,
        request: pb::UpdateOffsetRequest,
    ) -> RpcResult<pb::UpdateOffsetResponse>;

    async fn get_offset(
        &self,
        ctx: &RequestContext,
        request: pb::GetOffsetRequest,
    ) -> RpcResult<pb::GetOffsetResponse>;

    async fn query_offset(
        &self,
        ctx: &RequestContext,
        request: pb::QueryOffsetRequest,
    ) -> RpcResult<pb::QueryOffsetResponse>;

    /// RecallMessage: withdraw an undelivered DELAY message.
    async fn recall_message(
        &self,
        ctx: &RequestContext,
        request: pb::RecallMessageRequest,
    ) -> RpcResult<pb::RecallMessageResponse>;

    async fn sync_lite_subscription(
        &self,
        ctx: &RequestContext,
        request: pb::SyncLiteSubscriptionRequest,
    ) -> RpcResult<pb::SyncLiteSubscriptionResponse>;

    /// The server's session registry, given once when the server starts, so the backend can push
    /// commands down clients' Telemetry streams (transaction check-back).
    fn attach_sessions(&self, _sessions: &Arc<SessionRegistry>) {}

    /// A client reported its settings on Telemetry: register the producer on its topics or the
    /// consumer in its group with its subscriptions. An error is answered on the stream.
    async fn register_client(
        &self,
        _ctx: &RequestContext,
        _settings: &pb::Settings,
    ) -> RpcResult<()> {
        Ok(())
    }

    /// The group's fifo flag and retry policy, for the consumer settings reply; `None` means
    /// unknown group, and the configured default applies.
    async fn group_policy(
        &self,
        _ctx: &RequestContext,
        _group: &pb::Resource,
    ) -> RpcResult<Option<GroupPolicy>> {
        Ok(None)
    }

    /// A Heartbeat arrived (the session is already refreshed): keep broker-side consumer and
    /// producer registrations alive.
    async fn heartbeat(
        &self,
        _ctx: &RequestContext,
        _request: &pb::HeartbeatRequest,
    ) -> RpcResult<()> {
        Ok(())
    }

    /// A client left or expired: drop its broker-side registrations. `session` is what the
    /// registry knew, if anything.
    async fn client_offline(
        &self,
        _client_id: &str,
        _session: Option<&ClientSession>,
        _reason: OfflineReason,
    ) {
    }

    /// A client answered a server command on Telemetry (`thread_stack_trace`,
    /// `verify_message_result`).
    async fn telemetry_report(&self, _ctx: &RequestContext, _command: pb::TelemetryCommand) {}
}

/// Answers every broker operation with `NOT_IMPLEMENTED` (50100) in the response body, so a
/// client gets a clear error instead of a transport failure. Lifecycle hooks accept everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotImplementedBackend;

fn not_implemented<T>(rpc: &str) -> RpcResult<T> {
    Err(RpcError::not_implemented(rpc))
}

#[async_trait::async_trait]
impl MessagingBackend for NotImplementedBackend {
    async fn query_route(
        &self,
        _: &RequestContext,
        _: pb::QueryRouteRequest,
    ) -> RpcResult<pb::QueryRouteResponse> {
        not_implemented("QueryRoute")
    }

    async fn send_message(
        &self,
        _: &RequestContext,
        _: pb::SendMessageRequest,
    ) -> RpcResult<pb::SendMessageResponse> {
        not_implemented("SendMessage")
    }

    async fn query_assignment(
        &self,
        _: &RequestContext,
        _: pb::QueryAssignmentRequest,
    ) -> RpcResult<pb::QueryAssignmentResponse> {
        not_implemented("QueryAssignment")
    }

    async fn receive_message(
        &self,
        _: &RequestContext,
        _: pb::ReceiveMessageRequest,
    ) -> RpcResult<BackendStream<pb::ReceiveMessageResponse>> {
        not_implemented("ReceiveMessage")
    }

    async fn ack_message(
        &self,
        _: &RequestContext,
        _: pb::AckMessageRequest,
    ) -> RpcResult<pb::AckMessageResponse> {
        not_implemented("AckMessage")
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        _: &RequestContext,
        _: pb::ForwardMessageToDeadLetterQueueRequest,
    ) -> RpcResult<pb::ForwardMessageToDeadLetterQueueResponse> {
        not_implemented("ForwardMessageToDeadLetterQueue")
    }

    async fn change_invisible_duration(
        &self,
        _: &RequestContext,
        _: pb::ChangeInvisibleDurationRequest,
    ) -> RpcResult<pb::ChangeInvisibleDurationResponse> {
        not_implemented("ChangeInvisibleDuration")
    }

    async fn end_transaction(
        &self,
        _: &RequestContext,
        _: pb::EndTransactionRequest,
    ) -> RpcResult<pb::EndTransactionResponse> {
        not_implemented("EndTransaction")
    }

    async fn pull_message(
        &self,
        _: &RequestContext,
        _: pb::PullMessageRequest,
    ) -> RpcResult<BackendStream<pb::PullMessageResponse>> {
        not_implemented("PullMessage")
    }

    async fn update_offset(
        &self,
        _: &RequestContext,
        _: pb::UpdateOffsetRequest,
    ) -> RpcResult<pb::UpdateOffsetResponse> {
        not_implemented("UpdateOffset")
    }

    async fn get_offset(
        &self,
        _: &RequestContext,
        _: pb::GetOffsetRequest,
    ) -> RpcResult<pb::GetOffsetResponse> {
        not_implemented("GetOffset")
    }

    async fn query_offset(
        &self,
        _: &RequestContext,
        _: pb::QueryOffsetRequest,
    ) -> RpcResult<pb::QueryOffsetResponse> {
        not_implemented("QueryOffset")
    }

    async fn recall_message(
        &self,
        _: &RequestContext,
        _: pb::RecallMessageRequest,
    ) -> RpcResult<pb::RecallMessageResponse> {
        not_implemented("RecallMessage")
    }

    async fn sync_lite_subscription(
        &self,
        _: &RequestContext,
        _: pb::SyncLiteSubscriptionRequest,
    ) -> RpcResult<pb::SyncLiteSubscriptionResponse> {
        not_implemented("SyncLiteSubscription")
    }
}
