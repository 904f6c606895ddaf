//! The endpoint over real HTTP/2 on 127.0.0.1:0, driven by the tonic client generated from the
//! same schema, with the header sets the official SDKs send.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apogee_grpc::pb;
use apogee_grpc::pb::messaging_service_client::MessagingServiceClient;
use apogee_grpc::{
    BackendStream, GroupPolicy, GrpcConfig, GrpcServer, GrpcServerHandle, MessagingBackend,
    NotImplementedBackend, OfflineReason, RequestContext, RpcError, RpcResult,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Streaming};

/// Bounds every wait so a broken server fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

type Headers = &'static [(&'static str, &'static str)];

/// Java client headers.
const JAVA: Headers = &[
    ("x-mq-client-id", "host@4021@0@1a2b3c"),
    ("x-mq-language", "JAVA"),
    ("x-mq-client-version", "5.0.7"),
    ("x-mq-protocol", "v2"),
    ("x-mq-date-time", "20261124T094508Z"),
    ("x-mq-request-id", "0f6b2a4e-7d1c-4c5e-9a7b-3e2d1c0b9a88"),
    ("x-mq-namespace", ""),
];
/// Python `rocketmq-python-client` 5.1.2: protocol GRPC_V2 and an authorization header even
/// without credentials.
const PYTHON: Headers = &[
    ("x-mq-client-id", "vm@4739@0@dn3celkfkhl2"),
    ("x-mq-language", "PYTHON"),
    ("x-mq-client-version", "5.1.2"),
    ("x-mq-protocol", "GRPC_V2"),
    ("x-mq-date-time", "20261124T094508Z"),
    ("x-mq-request-id", "9b1e7c1a-1f2d-4a55-8f0e-2c4b6d8e0a11"),
    ("x-mq-namespace", ""),
    (
        "authorization",
        "MQv2-HMAC-SHA1 Credential=, SignedHeaders=x-mq-date-time, Signature=5e2d4c6a8b0f1e3d5c7b9a1f3e5d7c9b1a3f5e7d",
    ),
];
/// Node `rocketmq-client-nodejs` 1.0.8: language HTTP, no namespace header.
const NODE: Headers = &[
    ("x-mq-client-id", "node-host@77@0@k2j3h4"),
    ("x-mq-language", "HTTP"),
    ("x-mq-client-version", "1.0.8"),
    ("x-mq-protocol", "v2"),
    ("x-mq-date-time", "20261124T094508Z"),
    ("x-mq-request-id", "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f"),
];
/// Rust crate `rocketmq` 5.0.0: x-mq-protocol-version, RFC 3339 date, no request id.
const RUST: Headers = &[
    ("x-mq-client-id", "vm@5788#0"),
    ("x-mq-language", "RUST"),
    ("x-mq-client-version", "5.0.0"),
    ("x-mq-protocol-version", "2.0.0"),
    ("x-mq-date-time", "2026-11-24T09:45:08.38Z"),
];

fn with_headers<T>(message: T, headers: Headers) -> Request<T> {
    let mut request = Request::new(message);
    for (key, value) in headers {
        let value: MetadataValue<_> = value.parse().expect("test header value");
        request.metadata_mut().insert(*key, value);
    }
    request
}

fn client_id(headers: Headers) -> &'static str {
    headers
        .iter()
        .find(|(k, _)| *k == "x-mq-client-id")
        .map(|(_, v)| *v)
        .expect("header set has a client id")
}

async fn start(
    backend: Arc<dyn MessagingBackend>,
) -> (GrpcServerHandle, MessagingServiceClient<Channel>) {
    start_with(GrpcConfig::default(), backend).await
}

async fn start_with(
    config: GrpcConfig,
    backend: Arc<dyn MessagingBackend>,
) -> (GrpcServerHandle, MessagingServiceClient<Channel>) {
    let config = GrpcConfig {
        listen_addr: "127.0.0.1:0".into(),
        ..config
    };
    let handle = GrpcServer::start(config, backend)
        .await
        .expect("server starts");
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", handle.local_addr()))
            .expect("valid uri")
            .connect()
            .await
            .expect("client connects");
    (handle, MessagingServiceClient::new(channel))
}

async fn start_default() -> (GrpcServerHandle, MessagingServiceClient<Channel>) {
    start(Arc::new(NotImplementedBackend)).await
}

fn resource(name: &str) -> pb::Resource {
    pb::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    }
}

fn producer_settings() -> pb::Settings {
    pb::Settings {
        client_type: Some(pb::ClientType::Producer as i32),
        access_point: Some(pb::Endpoints {
            scheme: pb::AddressScheme::IPv4 as i32,
            addresses: vec![pb::Address {
                host: "127.0.0.1".into(),
                port: 8081,
            }],
        }),
        request_timeout: Some(prost_types::Duration {
            seconds: 3,
            nanos: 0,
        }),
        pub_sub: Some(pb::settings::PubSub::Publishing(pb::Publishing {
            topics: vec![resource("TopicA")],
            max_body_size: 0,
            validate_message_type: false,
        })),
        user_agent: Some(pb::Ua {
            language: pb::Language::Java as i32,
            version: "5.0.7".into(),
            platform: "Linux".into(),
            hostname: "host".into(),
        }),
        ..Default::default()
    }
}

fn consumer_settings(client_type: pb::ClientType, group: &str) -> pb::Settings {
    pb::Settings {
        client_type: Some(client_type as i32),
        pub_sub: Some(pb::settings::PubSub::Subscription(pb::Subscription {
            group: Some(resource(group)),
            subscriptions: vec![pb::SubscriptionEntry {
                topic: Some(resource("TopicA")),
                expression: Some(pb::FilterExpression {
                    r#type: pb::FilterType::Tag as i32,
                    expression: "*".into(),
                }),
            }],
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn settings_command(settings: pb::Settings) -> pb::TelemetryCommand {
    pb::TelemetryCommand {
        status: None,
        command: Some(pb::telemetry_command::Command::Settings(settings)),
    }
}

/// An open Telemetry call: the sending half and the server's replies.
struct Telemetry {
    outbound: mpsc::Sender<pb::TelemetryCommand>,
    inbound: Streaming<pb::TelemetryCommand>,
}

impl Telemetry {
    async fn open(client: &mut MessagingServiceClient<Channel>, headers: Headers) -> Self {
        let (outbound, rx) = mpsc::channel(8);
        let response = tokio::time::timeout(
            WAIT,
            client.telemetry(with_headers(ReceiverStream::new(rx), headers)),
        )
        .await
        .expect("response headers arrive without any command sent")
        .expect("telemetry call accepted");
        Self {
            outbound,
            inbound: response.into_inner(),
        }
    }

    async fn exchange(&mut self, command: pb::TelemetryCommand) -> pb::TelemetryCommand {
        self.outbound.send(command).await.expect("stream open");
        self.next().await.expect("server replies")
    }

    async fn next(&mut self) -> Option<pb::TelemetryCommand> {
        tokio::time::timeout(WAIT, self.inbound.message())
            .await
            .expect("reply within the wait")
            .expect("no transport error")
    }
}

fn code_of(status: &Option<pb::Status>) -> Option<pb::Code> {
    status
        .as_ref()
        .and_then(|s| pb::Code::try_from(s.code).ok())
}

fn reply_settings(reply: &pb::TelemetryCommand) -> &pb::Settings {
    match &reply.command {
        Some(pb::telemetry_command::Command::Settings(settings)) => settings,
        other => panic!("settings reply expected, got {other:?}"),
    }
}

fn ms(ms: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: ms / 1000,
        nanos: i32::try_from((ms % 1000) * 1_000_000).expect("sub-second nanos fit"),
    }
}

#[tokio::test]
async fn telemetry_answers_producer_settings_with_ok_and_publishing_overrides() {
    let (handle, mut client) = start_default().await;
    let mut telemetry = Telemetry::open(&mut client, JAVA).await;
    let reply = telemetry
        .exchange(settings_command(producer_settings()))
        .await;

    assert_eq!(code_of(&reply.status), Some(pb::Code::Ok));
    let settings = reply_settings(&reply);
    let Some(pb::settings::PubSub::Publishing(publishing)) = &settings.pub_sub else {
        panic!("publishing expected, got {:?}", settings.pub_sub);
    };
    assert_eq!(publishing.max_body_size, 4 * 1024 * 1024);
    assert!(publishing.validate_message_type);
    assert_eq!(publishing.topics, vec![resource("TopicA")]);
    let backoff = settings
        .backoff_policy
        .as_ref()
        .expect("backoff policy set");
    assert_eq!(backoff.max_attempts, 3);
    let Some(pb::retry_policy::Strategy::ExponentialBackoff(exponential)) = &backoff.strategy
    else {
        panic!("exponential backoff expected, got {:?}", backoff.strategy);
    };
    assert_eq!(exponential.initial, Some(ms(10)));
    assert_eq!(exponential.max, Some(ms(1_000)));
    assert_eq!(exponential.multiplier, 2.0);
    assert_eq!(settings.client_type, Some(pb::ClientType::Producer as i32));
    assert_eq!(settings.metric.as_ref().map(|m| m.on), Some(false));

    let session = handle
        .sessions()
        .get(client_id(JAVA))
        .expect("session registered");
    assert!(session.telemetry_open);
    assert_eq!(session.client_type, Some(pb::ClientType::Producer));
    assert_eq!(session.language.as_deref(), Some("JAVA"));
    handle.shutdown().await;
}

#[tokio::test]
async fn telemetry_answers_consumer_settings_with_subscription_and_retry_overrides() {
    let (handle, mut client) = start_default().await;
    let mut telemetry = Telemetry::open(&mut client, JAVA).await;
    let reply = telemetry
        .exchange(settings_command(consumer_settings(
            pb::ClientType::PushConsumer,
            "GroupA",
        )))
        .await;

    assert_eq!(code_of(&reply.status), Some(pb::Code::Ok));
    let settings = reply_settings(&reply);
    let Some(pb::settings::PubSub::Subscription(subscription)) = &settings.pub_sub else {
        panic!("subscription expected, got {:?}", settings.pub_sub);
    };
    assert_eq!(subscription.fifo, Some(false));
    assert_eq!(subscription.receive_batch_size, Some(32));
    assert_eq!(subscription.long_polling_timeout, Some(ms(20_000)));
    assert_eq!(subscription.group, Some(resource("GroupA")));
    assert_eq!(subscription.subscriptions.len(), 1, "subscriptions echoed");
    let backoff = settings
        .backoff_policy
        .as_ref()
        .expect("backoff policy set");
    assert_eq!(backoff.max_attempts, 17);
    let Some(pb::retry_policy::Strategy::CustomizedBackoff(customized)) = &backoff.strategy else {
        panic!("customized backoff expected, got {:?}", backoff.strategy);
    };
    assert_eq!(customized.next.first(), Some(&ms(1_000)));
    assert_eq!(customized.next.last(), Some(&ms(7_200_000)));
    assert_eq!(customized.next.len(), 18);

    let session = handle
        .sessions()
        .get(client_id(JAVA))
        .expect("session registered");
    assert_eq!(session.group, Some(resource("GroupA")));
    handle.shutdown().await;
}

#[tokio::test]
async fn telemetry_settings_without_client_id_answer_client_id_required() {
    let (handle, mut client) = start_default().await;
    let mut telemetry = Telemetry::open(&mut client, &[("x-mq-language", "JAVA")]).await;
    let reply = telemetry
        .exchange(settings_command(producer_settings()))
        .await;
    assert_eq!(code_of(&reply.status), Some(pb::Code::ClientIdRequired));
    assert!(reply.command.is_none());
    assert!(handle.sessions().is_empty());
    handle.shutdown().await;
}

#[tokio::test]
async fn telemetry_settings_without_publishing_or_subscription_answer_bad_request() {
    let (handle, mut client) = start_default().await;
    let mut telemetry = Telemetry::open(&mut client, JAVA).await;
    let settings = pb::Settings {
        client_type: Some(pb::ClientType::Producer as i32),
        ..Default::default()
    };
    let reply = telemetry.exchange(settings_command(settings)).await;
    assert_eq!(code_of(&reply.status), Some(pb::Code::BadRequest));
    // The stream stays usable: a correct settings message is answered next.
    let reply = telemetry
        .exchange(settings_command(producer_settings()))
        .await;
    assert_eq!(code_of(&reply.status), Some(pb::Code::Ok));
    handle.shutdown().await;
}

#[tokio::test]
async fn heartbeat_answers_ok_and_records_the_session() {
    let (handle, mut client) = start_default().await;
    let request = pb::HeartbeatRequest {
        group: Some(resource("GroupA")),
        client_type: pb::ClientType::SimpleConsumer as i32,
    };
    let response = client
        .heartbeat(with_headers(request, JAVA))
        .await
        .expect("heartbeat call succeeds")
        .into_inner();
    assert_eq!(code_of(&response.status), Some(pb::Code::Ok));
    let session = handle
        .sessions()
        .get(client_id(JAVA))
        .expect("session created");
    assert_eq!(session.client_type, Some(pb::ClientType::SimpleConsumer));
    assert_eq!(session.group, Some(resource("GroupA")));
    assert!(!session.telemetry_open);
    handle.shutdown().await;
}

#[tokio::test]
async fn heartbeat_without_client_id_answers_client_id_required() {
    let (handle, mut client) = start_default().await;
    let response = client
        .heartbeat(pb::HeartbeatRequest::default())
        .await
        .expect("heartbeat call succeeds at the transport level")
        .into_inner();
    assert_eq!(code_of(&response.status), Some(pb::Code::ClientIdRequired));
    assert!(handle.sessions().is_empty());
    handle.shutdown().await;
}

#[tokio::test]
async fn notify_client_termination_answers_ok_and_forgets_the_client() {
    let (handle, mut client) = start_default().await;
    let heartbeat = pb::HeartbeatRequest {
        group: None,
        client_type: pb::ClientType::Producer as i32,
    };
    client
        .heartbeat(with_headers(heartbeat, JAVA))
        .await
        .expect("heartbeat");
    assert_eq!(handle.sessions().len(), 1);
    let response = client
        .notify_client_termination(with_headers(
            pb::NotifyClientTerminationRequest::default(),
            JAVA,
        ))
        .await
        .expect("termination call succeeds")
        .into_inner();
    assert_eq!(code_of(&response.status), Some(pb::Code::Ok));
    assert!(handle.sessions().is_empty());
    // Unknown or anonymous clients are answered OK too: they are leaving anyway.
    let response = client
        .notify_client_termination(pb::NotifyClientTerminationRequest::default())
        .await
        .expect("anonymous termination succeeds")
        .into_inner();
    assert_eq!(code_of(&response.status), Some(pb::Code::Ok));
    handle.shutdown().await;
}

#[tokio::test]
async fn header_variants_of_python_node_and_rust_clients_are_accepted() {
    let (handle, mut client) = start_default().await;
    for (headers, language) in [(PYTHON, "PYTHON"), (NODE, "HTTP"), (RUST, "RUST")] {
        let heartbeat = pb::HeartbeatRequest {
            group: None,
            client_type: pb::ClientType::Producer as i32,
        };
        let response = client
            .heartbeat(with_headers(heartbeat, headers))
            .await
            .expect("heartbeat accepted")
            .into_inner();
        assert_eq!(
            code_of(&response.status),
            Some(pb::Code::Ok),
            "{language} heartbeat"
        );

        let mut telemetry = Telemetry::open(&mut client, headers).await;
        let reply = telemetry
            .exchange(settings_command(producer_settings()))
            .await;
        assert_eq!(
            code_of(&reply.status),
            Some(pb::Code::Ok),
            "{language} settings"
        );

        let session = handle
            .sessions()
            .get(client_id(headers))
            .expect("session recorded");
        assert_eq!(session.language.as_deref(), Some(language));
        assert!(session.telemetry_open);
    }
    assert_eq!(handle.sessions().len(), 3);
    handle.shutdown().await;
}

#[tokio::test]
async fn delegated_unary_rpcs_answer_not_implemented_in_the_body() {
    let (handle, mut client) = start_default().await;
    let mut statuses: Vec<(&str, Option<pb::Status>)> = Vec::new();
    macro_rules! call {
        ($name:literal, $method:ident, $request:expr) => {
            let response = client
                .$method(with_headers($request, PYTHON))
                .await
                .expect(concat!($name, " succeeds at the transport level"))
                .into_inner();
            statuses.push(($name, response.status));
        };
    }
    call!("QueryRoute", query_route, pb::QueryRouteRequest::default());
    call!(
        "SendMessage",
        send_message,
        pb::SendMessageRequest::default()
    );
    call!(
        "QueryAssignment",
        query_assignment,
        pb::QueryAssignmentRequest::default()
    );
    call!("AckMessage", ack_message, pb::AckMessageRequest::default());
    call!(
        "ForwardMessageToDeadLetterQueue",
        forward_message_to_dead_letter_queue,
        pb::ForwardMessageToDeadLetterQueueRequest::default()
    );
    call!(
        "UpdateOffset",
        update_offset,
        pb::UpdateOffsetRequest::default()
    );
    call!("GetOffset", get_offset, pb::GetOffsetRequest::default());
    call!(
        "QueryOffset",
        query_offset,
        pb::QueryOffsetRequest::default()
    );
    call!(
        "EndTransaction",
        end_transaction,
        pb::EndTransactionRequest::default()
    );
    call!(
        "ChangeInvisibleDuration",
        change_invisible_duration,
        pb::ChangeInvisibleDurationRequest::default()
    );
    call!(
        "RecallMessage",
        recall_message,
        pb::RecallMessageRequest::default()
    );
    call!(
        "SyncLiteSubscription",
        sync_lite_subscription,
        pb::SyncLiteSubscriptionRequest::default()
    );
    assert_eq!(statuses.len(), 12);
    for (rpc, status) in statuses {
        let status = status.unwrap_or_else(|| panic!("{rpc}: body status missing"));
        assert_eq!(status.code, pb::Code::NotImplemented as i32, "{rpc}");
        assert!(
            status.message.contains(rpc),
            "{rpc}: message {:?}",
            status.message
        );
    }
    handle.shutdown().await;
}

#[tokio::test]
async fn receive_and_pull_streams_answer_a_single_not_implemented_status() {
    let (handle, mut client) = start_default().await;
    let mut receive = client
        .receive_message(with_headers(pb::ReceiveMessageRequest::default(), RUST))
        .await
        .expect("receive accepted")
        .into_inner();
    let first = receive
        .message()
        .await
        .expect("no transport error")
        .expect("one item");
    assert_eq!(
        first.content,
        Some(pb::receive_message_response::Content::Status(pb::Status {
            code: pb::Code::NotImplemented as i32,
            message: "ReceiveMessage is not implemented by this endpoint".into(),
        }))
    );
    assert!(receive.message().await.expect("clean end").is_none());

    let mut pull = client
        .pull_message(with_headers(pb::PullMessageRequest::default(), RUST))
        .await
        .expect("pull accepted")
        .into_inner();
    let first = pull
        .message()
        .await
        .expect("no transport error")
        .expect("one item");
    assert!(matches!(
        first.content,
        Some(pb::pull_message_response::Content::Status(pb::Status { code, .. }))
            if code == pb::Code::NotImplemented as i32
    ));
    assert!(pull.message().await.expect("clean end").is_none());
    handle.shutdown().await;
}

#[tokio::test]
async fn server_pushes_commands_down_the_clients_telemetry_stream() {
    let (handle, mut client) = start_default().await;
    let mut telemetry = Telemetry::open(&mut client, JAVA).await;
    telemetry
        .exchange(settings_command(producer_settings()))
        .await;

    let check = pb::TelemetryCommand {
        status: None,
        command: Some(
            pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(
                pb::RecoverOrphanedTransactionCommand {
                    message: None,
                    transaction_id: "tx-1".into(),
                },
            ),
        ),
    };
    handle
        .sessions()
        .push_command(client_id(JAVA), check.clone())
        .expect("client attached");
    assert_eq!(telemetry.next().await, Some(check));
    handle.shutdown().await;
}

#[tokio::test]
async fn closing_telemetry_detaches_the_session_and_shutdown_ends_open_streams() {
    let (handle, mut client) = start_default().await;
    let mut first = Telemetry::open(&mut client, JAVA).await;
    first.exchange(settings_command(producer_settings())).await;
    let Telemetry {
        outbound,
        mut inbound,
    } = first;
    drop(outbound);
    let end = tokio::time::timeout(WAIT, inbound.message())
        .await
        .expect("ends in time");
    assert!(
        matches!(end, Ok(None)),
        "server ends its half when the client ends its own, got {end:?}"
    );
    // The session outlives the stream, but no longer counts as attached.
    let detached = async {
        while handle
            .sessions()
            .get(client_id(JAVA))
            .is_some_and(|s| s.telemetry_open)
        {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(WAIT, detached)
        .await
        .expect("detached");

    let mut second = Telemetry::open(&mut client, PYTHON).await;
    second.exchange(settings_command(producer_settings())).await;
    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("shutdown completes");
    let ended = tokio::time::timeout(WAIT, second.inbound.message())
        .await
        .expect("stream ends on shutdown");
    assert!(matches!(ended, Ok(None) | Err(_)), "got {ended:?}");
}

/// A backend that serves QueryRoute and knows one FIFO group, recording lifecycle hooks.
#[derive(Default)]
struct RecordingBackend {
    events: Mutex<Vec<String>>,
    /// Signalled on every event (a stored permit, so no wake-up is lost).
    recorded: tokio::sync::Notify,
}

impl RecordingBackend {
    fn record(&self, event: String) {
        self.events.lock().expect("not poisoned").push(event);
        self.recorded.notify_one();
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().expect("not poisoned").clone()
    }
}

#[async_trait::async_trait]
impl MessagingBackend for RecordingBackend {
    async fn query_route(
        &self,
        ctx: &RequestContext,
        request: pb::QueryRouteRequest,
    ) -> RpcResult<pb::QueryRouteResponse> {
        self.record(format!("route from {:?}", ctx.client_id()));
        let topic = request.topic.unwrap_or_default();
        if topic.name != "TopicA" {
            return Err(RpcError::new(
                pb::Code::TopicNotFound,
                format!("no topic {}", topic.name),
            ));
        }
        Ok(pb::QueryRouteResponse {
            status: Some(apogee_grpc::status::ok()),
            message_queues: vec![pb::MessageQueue {
                topic: Some(topic),
                id: 0,
                permission: pb::Permission::ReadWrite as i32,
                broker: None,
                accept_message_types: vec![pb::MessageType::Normal as i32],
            }],
        })
    }

    async fn send_message(
        &self,
        _: &RequestContext,
        _: pb::SendMessageRequest,
    ) -> RpcResult<pb::SendMessageResponse> {
        Err(RpcError::internal("store unavailable"))
    }

    async fn query_assignment(
        &self,
        c: &RequestContext,
        r: pb::QueryAssignmentRequest,
    ) -> RpcResult<pb::QueryAssignmentResponse> {
        NotImplementedBackend.query_assignment(c, r).await
    }

    async fn receive_message(
        &self,
        _: &RequestContext,
        _: pb::ReceiveMessageRequest,
    ) -> RpcResult<BackendStream<pb::ReceiveMessageResponse>> {
        let items = vec![
            pb::ReceiveMessageResponse {
                content: Some(pb::receive_message_response::Content::Status(pb::Status {
                    code: pb::Code::MessageNotFound as i32,
                    message: "no new message".into(),
                })),
            },
            pb::ReceiveMessageResponse {
                content: Some(pb::receive_message_response::Content::DeliveryTimestamp(
                    prost_types::Timestamp {
                        seconds: 1,
                        nanos: 0,
                    },
                )),
            },
        ];
        Ok(Box::pin(tokio_stream::iter(items)))
    }

    async fn ack_message(
        &self,
        c: &RequestContext,
        r: pb::AckMessageRequest,
    ) -> RpcResult<pb::AckMessageResponse> {
        NotImplementedBackend.ack_message(c, r).await
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        c: &RequestContext,
        r: pb::ForwardMessageToDeadLetterQueueRequest,
    ) -> RpcResult<pb::ForwardMessageToDeadLetterQueueResponse> {
        NotImplementedBackend
            .forward_message_to_dead_letter_queue(c, r)
            .await
    }

    async fn change_invisible_duration(
        &self,
        c: &RequestContext,
        r: pb::ChangeInvisibleDurationRequest,
    ) -> RpcResult<pb::ChangeInvisibleDurationResponse> {
        NotImplementedBackend.change_invisible_duration(c, r).await
    }

    async fn end_transaction(
        &self,
        c: &RequestContext,
        r: pb::EndTransactionRequest,
    ) -> RpcResult<pb::EndTransactionResponse> {
        NotImplementedBackend.end_transaction(c, r).await
    }

    async fn pull_message(
        &self,
        c: &RequestContext,
        r: pb::PullMessageRequest,
    ) -> RpcResult<BackendStream<pb::PullMessageResponse>> {
        NotImplementedBackend.pull_message(c, r).await
    }

    async fn update_offset(
        &self,
        c: &RequestContext,
        r: pb::UpdateOffsetRequest,
    ) -> RpcResult<pb::UpdateOffsetResponse> {
        NotImplementedBackend.update_offset(c, r).await
    }

    async fn get_offset(
        &self,
        c: &RequestContext,
        r: pb::GetOffsetRequest,
    ) -> RpcResult<pb::GetOffsetResponse> {
        NotImplementedBackend.get_offset(c, r).await
    }

    async fn query_offset(
        &self,
        c: &RequestContext,
        r: pb::QueryOffsetRequest,
    ) -> RpcResult<pb::QueryOffsetResponse> {
        NotImplementedBackend.query_offset(c, r).await
    }

    async fn recall_message(
        &self,
        c: &RequestContext,
        r: pb::RecallMessageRequest,
    ) -> RpcResult<pb::RecallMessageResponse> {
        NotImplementedBackend.recall_message(c, r).await
    }

    async fn sync_lite_subscription(
        &self,
        c: &RequestContext,
        r: pb::SyncLiteSubscriptionRequest,
    ) -> RpcResult<pb::SyncLiteSubscriptionResponse> {
        NotImplementedBackend.sync_lite_subscription(c, r).await
    }

    async fn register_client(
        &self,
        ctx: &RequestContext,
        settings: &pb::Settings,
    ) -> RpcResult<()> {
        self.record(format!(
            "register {:?} type {:?}",
            ctx.client_id(),
            settings.client_type
        ));
        Ok(())
    }

    async fn group_policy(
        &self,
        _: &RequestContext,
        group: &pb::Resource,
    ) -> RpcResult<Option<GroupPolicy>> {
        Ok((group.name == "FifoGroup").then(|| GroupPolicy {
            fifo: true,
            max_retry_times: 3,
            ..GroupPolicy::default()
        }))
    }

    async fn heartbeat(&self, ctx: &RequestContext, _: &pb::HeartbeatRequest) -> RpcResult<()> {
        self.record(format!("heartbeat {:?}", ctx.client_id()));
        Ok(())
    }

    async fn client_offline(
        &self,
        client_id: &str,
        session: Option<&apogee_grpc::ClientSession>,
        reason: OfflineReason,
    ) {
        self.record(format!(
            "offline {client_id} known={} {reason:?}",
            session.is_some()
        ));
    }
}

#[tokio::test]
async fn backend_answers_reach_the_client_and_lifecycle_hooks_are_called() {
    let backend = Arc::new(RecordingBackend::default());
    let (handle, mut client) = start(backend.clone()).await;

    let route = client
        .query_route(with_headers(
            pb::QueryRouteRequest {
                topic: Some(resource("TopicA")),
                endpoints: None,
            },
            NODE,
        ))
        .await
        .expect("route call")
        .into_inner();
    assert_eq!(code_of(&route.status), Some(pb::Code::Ok));
    assert_eq!(route.message_queues.len(), 1);

    let missing = client
        .query_route(pb::QueryRouteRequest {
            topic: Some(resource("Nope")),
            endpoints: None,
        })
        .await
        .expect("route call")
        .into_inner();
    assert_eq!(code_of(&missing.status), Some(pb::Code::TopicNotFound));
    assert_eq!(
        missing.status.map(|s| s.message),
        Some("no topic Nope".into())
    );

    let send = client
        .send_message(pb::SendMessageRequest::default())
        .await
        .expect("send call")
        .into_inner();
    assert_eq!(code_of(&send.status), Some(pb::Code::InternalServerError));

    let mut receive = client
        .receive_message(pb::ReceiveMessageRequest::default())
        .await
        .expect("receive call")
        .into_inner();
    let mut items = Vec::new();
    while let Some(item) = receive.message().await.expect("no transport error") {
        items.push(item);
    }
    assert_eq!(items.len(), 2, "status then delivery timestamp");

    let mut telemetry = Telemetry::open(&mut client, NODE).await;
    let reply = telemetry
        .exchange(settings_command(consumer_settings(
            pb::ClientType::PushConsumer,
            "FifoGroup",
        )))
        .await;
    let Some(pb::settings::PubSub::Subscription(subscription)) = &reply_settings(&reply).pub_sub
    else {
        panic!("subscription expected");
    };
    assert_eq!(
        subscription.fifo,
        Some(true),
        "group policy from the backend"
    );
    assert_eq!(
        reply_settings(&reply)
            .backoff_policy
            .as_ref()
            .map(|b| b.max_attempts),
        Some(4)
    );

    client
        .heartbeat(with_headers(pb::HeartbeatRequest::default(), NODE))
        .await
        .expect("heartbeat");
    client
        .notify_client_termination(with_headers(
            pb::NotifyClientTerminationRequest::default(),
            NODE,
        ))
        .await
        .expect("termination");

    let id = client_id(NODE);
    assert_eq!(
        backend.events(),
        vec![
            format!("route from Some({id:?})"),
            "route from None".to_owned(),
            format!(
                "register Some({id:?}) type Some({})",
                pb::ClientType::PushConsumer as i32
            ),
            format!("heartbeat Some({id:?})"),
            format!("offline {id} known=true Terminated"),
        ]
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn idle_sessions_expire_and_the_backend_is_told() {
    let backend = Arc::new(RecordingBackend::default());
    let config = GrpcConfig {
        client_idle_timeout_ms: 50,
        ..GrpcConfig::default()
    };
    let (handle, mut client) = start_with(config, backend.clone()).await;
    client
        .heartbeat(with_headers(pb::HeartbeatRequest::default(), RUST))
        .await
        .expect("heartbeat");
    let expected = format!("offline {} known=true Expired", client_id(RUST));
    let expired = async {
        while !backend.events().contains(&expected) {
            backend.recorded.notified().await;
        }
    };
    tokio::time::timeout(WAIT, expired)
        .await
        .expect("session expires");
    assert!(handle.sessions().is_empty());
    handle.shutdown().await;
}
