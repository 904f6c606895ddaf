//! `apache.rocketmq.v2.MessagingService` over a [`MessagingBackend`]. Telemetry, Heartbeat and
//! NotifyClientTermination are answered here (sessions and settings need no broker); every other
//! RPC is the backend's, with its errors turned into body statuses. Transport errors are left to
//! tonic (malformed frames, oversized messages).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Streaming};
use tracing::{debug, warn};

use crate::backend::{MessagingBackend, OfflineReason, RequestContext};
use crate::config::GrpcConfig;
use crate::pb;
use crate::pb::messaging_service_server::MessagingService;
use crate::session::{SessionError, SessionRegistry, TelemetrySender};
use crate::settings::merge_server_settings;
use crate::status::{ok, FromStatus, RpcError, RpcResult};

type RpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

/// State shared by every call and by the server handle.
pub(crate) struct Shared {
    pub(crate) config: GrpcConfig,
    pub(crate) backend: Arc<dyn MessagingBackend>,
    pub(crate) sessions: Arc<SessionRegistry>,
    /// Flips to true on shutdown; ends every Telemetry stream.
    pub(crate) stop: watch::Sender<bool>,
}

/// The tonic service; wrap it in `MessagingServiceServer` (as [`crate::GrpcServer`] does).
#[derive(Clone)]
pub struct MessagingServiceImpl {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MessagingServiceImpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagingServiceImpl")
            .field("sessions", &self.shared.sessions)
            .finish_non_exhaustive()
    }
}

impl MessagingServiceImpl {
    pub fn new(
        config: GrpcConfig,
        backend: Arc<dyn MessagingBackend>,
        sessions: Arc<SessionRegistry>,
    ) -> Self {
        backend.attach_sessions(&sessions);
        let (stop, _) = watch::channel(false);
        Self::from_shared(Arc::new(Shared {
            config,
            backend,
            sessions,
            stop,
        }))
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    pub fn sessions(&self) -> &Arc<SessionRegistry> {
        &self.shared.sessions
    }

    /// Context of a call, refreshing the caller's session if it has one.
    fn context<T>(&self, request: &Request<T>) -> RequestContext {
        let ctx = RequestContext::from_request(request);
        if let Some(client_id) = ctx.client_id() {
            self.shared.sessions.touch(client_id, Instant::now());
        }
        ctx
    }
}

/// The backend's answer, or its error as a body status.
fn answer<T: FromStatus>(rpc: &str, result: RpcResult<T>) -> Result<Response<T>, tonic::Status> {
    Ok(Response::new(result.unwrap_or_else(|error| {
        debug!(rpc, %error, "answered with an error status");
        T::from_error(&error)
    })))
}

fn answer_stream<T: FromStatus + Send + 'static>(
    rpc: &str,
    result: RpcResult<crate::backend::BackendStream<T>>,
) -> Result<Response<RpcStream<T>>, tonic::Status> {
    let stream: RpcStream<T> = match result {
        Ok(items) => Box::pin(items.map(Ok)),
        Err(error) => {
            debug!(rpc, %error, "answered with an error status");
            Box::pin(tokio_stream::once(Ok(T::from_error(&error))))
        }
    };
    Ok(Response::new(stream))
}

/// Time kept back from a call's deadline for answering a long poll (the proxy's
/// `longPollingReserveTimeInMillis`).
pub const LONG_POLLING_RESERVE: std::time::Duration = std::time::Duration::from_millis(100);

/// Makes a receive's long poll end before the client's deadline, as the proxy does: a poll that
/// would outlast `deadline` (or one not given) waits `deadline - LONG_POLLING_RESERVE`, and a
/// deadline shorter than the reserve is refused with ILLEGAL_POLLING_TIME.
pub fn bound_long_polling(
    request: &mut pb::ReceiveMessageRequest,
    deadline: std::time::Duration,
) -> RpcResult<()> {
    let asked = request
        .long_polling_timeout
        .as_ref()
        .and_then(|d| std::time::Duration::try_from(*d).ok());
    if asked.is_some_and(|asked| asked + LONG_POLLING_RESERVE <= deadline) {
        return Ok(());
    }
    let Some(bounded) = deadline.checked_sub(LONG_POLLING_RESERVE) else {
        return Err(RpcError::new(
            pb::Code::IllegalPollingTime,
            "the deadline time remaining is not enough for polling",
        ));
    };
    request.long_polling_timeout = Some(crate::settings::to_proto_duration(bounded));
    Ok(())
}

fn client_id_required(rpc: &str) -> RpcError {
    RpcError::new(
        pb::Code::ClientIdRequired,
        format!("{rpc} needs the x-mq-client-id header"),
    )
}

fn too_many_clients(error: SessionError) -> RpcError {
    RpcError::new(pb::Code::TooManyRequests, error.to_string())
}

#[tonic::async_trait]
impl MessagingService for MessagingServiceImpl {
    async fn query_route(
        &self,
        request: Request<pb::QueryRouteRequest>,
    ) -> Result<Response<pb::QueryRouteResponse>, tonic::Status> {
        let ctx = self.context(&request);
        let result = self
            .shared
            .backend
            .query_route(&ctx, request.into_inner())
            .await;
        answer("QueryRoute", result)
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, tonic::Status> {
        let ctx = RequestContext::from_request(&request);
        let heartbeat = request.into_inner();
        answer("Heartbeat", self.record_heartbeat(&ctx, &heartbeat).await)
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, tonic::Status> {
        let ctx = self.context(&request);
        let result = self
            .shared
            .backend
            .send_message(&ctx, request.into_inner())
            .await;
        answer("SendMessage", result)
    }

    async fn query_assignment(
        &self,
        request: Request<pb::QueryAssignmentRequest>,
    ) -> Result<Response<pb::QueryAssignmentResponse>, tonic::Status> {
        let ctx = self.context(&request);
        let result = self
            .shared
            .backend
            .query_assignment(&ctx, request.into_inner())
            .await;
        answer("QueryAssignment", result)
    }

    type ReceiveMessageStream = RpcStream<pb::ReceiveMessageResponse>;

    async fn receive_message(
        &self,
        request: Request<pb::ReceiveMessageRequest>,
    ) -> Result<Response<Self::ReceiveMessageStream>, tonic::Status> {
        let ctx = self.context(&request);
        let deadline = crate::metadata::grpc_timeout(request.metadata());
        let mut receive = request.into_inner();
        let result = match deadline {
            Some(deadline) => bound_long_polling(&mut receive, deadline),
            None => Ok(()),
        };
        let result = match result {
            Ok(()) => self.shared.backend.receive_message(&ctx, receive).await,
            Err(error) => Err(error),
        };
        answer_stream("ReceiveMessage", result)
    }

    async fn ack_message(
        &self,
        request: Request<pb::AckMessageRequest>,
    ) -> Result<Response<pb::AckMessageResponse>, tonic::Status> {
        let ctx = self.context(&request);
        let result = self
            .shared
            .backend
            .ack_message(&ctx, request.into_inner())
            .await;
        answer("AckMessage", result)
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        request: Request<pb::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Result<Response<pb::ForwardMessageToDeadLetterQueueResponse>, tonic::Status> {
        let ctx = self.context(&request);
        let result = self
            .shared
            .backend
            .forward_message_to_dead_letter_queue(&ctx, request.into_inner())
            .await;
        answer("ForwardMessageToDeadLetterQueue", result)
    }

    type PullMessageStream = RpcStream<pb::PullMessageResponse>;

    async fn pull_message(
        &self,
        request: Request<pb::PullMessageRequest>,
    ) -> Result<Response<Self::PullMessageStream>, tonic::Status> {
        let ctx = self.context(&request);
        let result = self
            .shared
            .backend
            .pull_message(&ctx, request.into_inner())
            .await;
        answer_stream("PullMessage", result)
    }

    async fn update_offset(
        &self,
        request: Request<pb::UpdateOffsetRequest>,
    ) -> Result<Response<pb::UpdateOffsetResponse>, tonic::Status> {
        let ctx = self.context(&request);
        let result = self
            .shared
            .backend
            .update_offset(&ctx, request.into_inner())
            .await;
        answer("UpdateOffset", result)
    }

    async fn get_offset(
        &self,
        request: Request<pb::GetOffsetRequest>,
    ) -> Result<Response<pb::GetOffsetResponse>, tonic::Status> {
        let ctx = self.context(&request);
        let result = self
            .shared
            .backend
            .get_offset(&ctx, request.into_inner())
            .await;
        answer("GetOffset", result)
    }

    async fn query_offset(
        &self,
        request: Request<pb::QueryOffsetRequest>,
    ) -> Result<Response<pb::QueryOffsetResponse>, tonic::Status> {
        let ctx = self.context(&request);
        let result = self
            .shared
            .backend
            .query_offset(&ctx, request.into_inner())
            .await;
        answer("QueryOffset", result)
    }

    async fn end_transaction(
        &self,
        request: Request<pb::EndTransactionRequest>,
    ) -> Result<Response<pb::EndTransactionResponse>, tonic::Status> {
        let ctx = self.context(&request);
        let result = self
            .shared
            .backend
            .end_transaction(&ctx, request.into_inner())
            .await;
        answer("EndTransaction", result)
    }

    type TelemetryStream = RpcStream<pb::TelemetryCommand>;

    /// Returns at once, so the response headers go out before any command is exchanged (the
    /// Rust SDK waits for them); a task then answers the client's commands.
    async fn telemetry(
        &self,
        request: Request<Streaming<pb::TelemetryCommand>>,
    ) -> Result<Response<Self::TelemetryStream>, tonic::Status> {
        let ctx = self.context(&request);
        let inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(self.shared.config.telemetry_queue_capacity);
        tokio::spawn(telemetry_loop(self.shared.clone(), ctx, inbound, sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn notify_client_termination(
        &self,
        request: Request<pb::NotifyClientTerminationRequest>,
    ) -> Result<Response<pb::NotifyClientTerminationResponse>, tonic::Status> {
        let ctx = RequestContext::from_request(&request);
        // Nothing to forget without a client id; the client is leaving either way.
        if let Some(client_id) = ctx.client_id() {
            let session = self.shared.sessions.remove(client_id);
            self.shared
                .backend
                .client_offline(client_id, session.as_ref(), OfflineReason::Terminated)
                .await;
        }
        Ok(Response::new(pb::NotifyClientTerminationResponse {
            status: Some(ok()),
        }))
    }

    async fn change_invisible_duration(
        &self,
        request: Request<pb::ChangeInvisibleDurationRequest>,
    ) -> Result<Response<pb::ChangeInvisibleDurationResponse>, tonic::Status> {
        let ctx = self.context(&request);
        let result = self
            .shared
            .backend
            .change_invisible_duration(&ctx, request.into_inner())
            .await;
        answer("ChangeInvisibleDuration", result)
    }

    async fn recall_message(
        &self,
        request: Request<pb::RecallMessageRequest>,
    ) -> Result<Response<pb::RecallMessageResponse>, tonic::Status> {
        let ctx = self.context(&request);
        let result = self
            .shared
            .backend
            .recall_message(&ctx, request.into_inner())
            .await;
        answer("RecallMessage", result)
    }

    async fn sync_lite_subscription(
        &self,
        request: Request<pb::SyncLiteSubscriptionRequest>,
    ) -> Result<Response<pb::SyncLiteSubscriptionResponse>, tonic::Status> {
        let ctx = self.context(&request);
        let result = self
            .shared
            .backend
            .sync_lite_subscription(&ctx, request.into_inner())
            .await;
        answer("SyncLiteSubscription", result)
    }
}

impl MessagingServiceImpl {
    async fn record_heartbeat(
        &self,
        ctx: &RequestContext,
        heartbeat: &pb::HeartbeatRequest,
    ) -> RpcResult<pb::HeartbeatResponse> {
        let client_id = ctx
            .client_id()
            .ok_or_else(|| client_id_required("Heartbeat"))?;
        let client_type = pb::ClientType::try_from(heartbeat.client_type)
            .ok()
            .filter(|t| *t != pb::ClientType::Unspecified);
        self.shared
            .sessions
            .record_heartbeat(
                client_id,
                &ctx.metadata,
                ctx.remote_addr,
                client_type,
                heartbeat.group.clone(),
                Instant::now(),
            )
            .map_err(too_many_clients)?;
        self.shared.backend.heartbeat(ctx, heartbeat).await?;
        Ok(pb::HeartbeatResponse { status: Some(ok()) })
    }
}

/// Serves one Telemetry stream until the client closes it, the connection drops, or the server
/// stops. Dropping `sender` (here and in the registry) ends the response stream.
async fn telemetry_loop(
    shared: Arc<Shared>,
    ctx: RequestContext,
    mut inbound: Streaming<pb::TelemetryCommand>,
    sender: TelemetrySender,
) {
    let stream_id = shared.sessions.new_stream_id();
    let mut stop = shared.stop.subscribe();
    let mut attached = false;
    loop {
        let next = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            next = inbound.message() => next,
        };
        let command = match next {
            Ok(Some(command)) => command,
            Ok(None) => break,
            Err(status) => {
                debug!(client_id = ?ctx.client_id(), %status, "telemetry stream failed");
                break;
            }
        };
        match command.command {
            Some(pb::telemetry_command::Command::Settings(settings)) => {
                let reply = match settings_reply(&shared, &ctx, settings, stream_id, &sender).await
                {
                    Ok(settings) => {
                        attached = true;
                        pb::TelemetryCommand {
                            status: Some(ok()),
                            command: Some(pb::telemetry_command::Command::Settings(settings)),
                        }
                    }
                    Err(error) => {
                        warn!(client_id = ?ctx.client_id(), %error, "client settings refused");
                        pb::TelemetryCommand::from_error(&error)
                    }
                };
                if sender.send(Ok(reply)).await.is_err() {
                    break;
                }
            }
            Some(
                pb::telemetry_command::Command::ThreadStackTrace(_)
                | pb::telemetry_command::Command::VerifyMessageResult(_),
            ) => shared.backend.telemetry_report(&ctx, command).await,
            other => debug!(command = ?other, "ignored telemetry command from a client"),
        }
        if let Some(client_id) = ctx.client_id() {
            shared.sessions.touch(client_id, Instant::now());
        }
    }
    if attached {
        if let Some(client_id) = ctx.client_id() {
            shared
                .sessions
                .detach_telemetry(client_id, stream_id, Instant::now());
        }
    }
}

/// Registers a client's settings and builds the server's overrides.
async fn settings_reply(
    shared: &Shared,
    ctx: &RequestContext,
    settings: pb::Settings,
    stream_id: u64,
    sender: &TelemetrySender,
) -> RpcResult<pb::Settings> {
    let client_id = ctx
        .client_id()
        .ok_or_else(|| client_id_required("Telemetry"))?;
    let group = match &settings.pub_sub {
        Some(pb::settings::PubSub::Publishing(_)) => None,
        Some(pb::settings::PubSub::Subscription(subscription)) => subscription.group.clone(),
        None => {
            return Err(RpcError::new(
                pb::Code::BadRequest,
                "settings carry neither publishing nor subscription",
            ))
        }
    };
    shared.backend.register_client(ctx, &settings).await?;
    let policy = match &group {
        Some(group) => shared.backend.group_policy(ctx, group).await?,
        None => None,
    };
    let config = &shared.config;
    let policy = policy.unwrap_or_else(|| config.consumer.default_group.clone());
    shared
        .sessions
        .record_settings(
            client_id,
            &ctx.metadata,
            ctx.remote_addr,
            &settings,
            stream_id,
            sender,
            Instant::now(),
        )
        .map_err(too_many_clients)?;
    Ok(merge_server_settings(
        &settings,
        &config.producer,
        &config.consumer,
        &policy,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn receive(poll_ms: Option<u64>) -> pb::ReceiveMessageRequest {
        pb::ReceiveMessageRequest {
            long_polling_timeout: poll_ms.map(crate::settings::duration_ms),
            ..Default::default()
        }
    }

    #[test]
    fn a_long_poll_within_the_deadline_is_left_alone() {
        let mut request = receive(Some(20_000));
        bound_long_polling(&mut request, Duration::from_millis(23_000)).expect("fits");
        assert_eq!(
            request.long_polling_timeout,
            Some(crate::settings::duration_ms(20_000))
        );
    }

    #[test]
    fn a_long_poll_past_the_deadline_or_unset_ends_a_reserve_before_it() {
        for asked in [Some(20_000), Some(5_000), None] {
            let mut request = receive(asked);
            bound_long_polling(&mut request, Duration::from_millis(5_050)).expect("bounded");
            assert_eq!(
                request.long_polling_timeout,
                Some(crate::settings::duration_ms(4_950)),
                "{asked:?}"
            );
        }
    }

    #[test]
    fn a_deadline_shorter_than_the_reserve_is_refused() {
        let mut request = receive(Some(1_000));
        let error =
            bound_long_polling(&mut request, Duration::from_millis(50)).expect_err("refused");
        assert_eq!(error.code, pb::Code::IllegalPollingTime);
    }
}
