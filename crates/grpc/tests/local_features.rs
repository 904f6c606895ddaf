//! Local mode, the server-driven features: transaction check-back down Telemetry, RecallMessage,
//! consumer settings that follow the subscription group, and push-consumer receipt renewal. The
//! generated tonic client talks to the endpoint over a real in-process broker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apogee_broker::local::{LocalPull, LocalServices};
use apogee_broker::{Broker, BrokerConfig, BrokerHandle, StoreOptions};
use apogee_grpc::local::recall::RecallHandle;
use apogee_grpc::local::renew::RenewConfig;
use apogee_grpc::pb;
use apogee_grpc::pb::messaging_service_client::MessagingServiceClient;
use apogee_grpc::{GrpcConfig, GrpcServer, GrpcServerHandle, LocalBackend};
use apogee_protocol::body::{JsonBody, SubscriptionGroupConfig};
use apogee_protocol::codes::request_code::{
    UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, UPDATE_AND_CREATE_TOPIC,
};
use apogee_protocol::header::CreateTopicRequestHeader;
use apogee_protocol::RemotingCommand;
use pb_build::resource;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

#[path = "support/pb_build.rs"]
mod pb_build;

/// Bound on waits for something the server must do on its own (a check-back, a delivery).
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

struct Setup {
    _dir: tempfile::TempDir,
    broker: Option<BrokerHandle>,
    grpc: GrpcServerHandle,
    client: MessagingServiceClient<Channel>,
}

impl Setup {
    async fn start(tune: impl FnOnce(&mut BrokerConfig)) -> Setup {
        Self::start_with(tune, RenewConfig::default()).await.0
    }

    async fn start_with(
        tune: impl FnOnce(&mut BrokerConfig),
        renew: RenewConfig,
    ) -> (Setup, Arc<LocalBackend>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = BrokerConfig {
            listen_addr: "127.0.0.1:0".into(),
            broker_ip1: Some("127.0.0.1".into()),
            data_dir: dir.path().to_path_buf(),
            store: StoreOptions::for_tests(),
            ..BrokerConfig::default()
        };
        tune(&mut config);
        let broker = Broker::start(config).await.expect("broker starts");
        let backend = Arc::new(
            LocalBackend::new(broker.services(), SocketAddr::from(([127, 0, 0, 1], 0)))
                .with_renewal(renew),
        );
        let grpc = GrpcServer::start(
            GrpcConfig {
                listen_addr: "127.0.0.1:0".into(),
                ..GrpcConfig::default()
            },
            backend.clone(),
        )
        .await
        .expect("grpc starts");
        backend.set_advertised(grpc.local_addr());
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", grpc.local_addr()))
                .expect("endpoint")
                .connect()
                .await
                .expect("client connects");
        let setup = Setup {
            _dir: dir,
            broker: Some(broker),
            grpc,
            client: MessagingServiceClient::new(channel),
        };
        (setup, backend)
    }

    fn services(&self) -> LocalServices {
        self.broker.as_ref().expect("running").services()
    }

    async fn create_topic(&self, topic: &str, message_type: &str) {
        let header = CreateTopicRequestHeader {
            topic: topic.into(),
            default_topic: "TBW102".into(),
            read_queue_nums: 2,
            write_queue_nums: 2,
            perm: 6,
            topic_filter_type: "SINGLE_TAG".into(),
            topic_sys_flag: Some(0),
            order: false,
            attributes: Some(format!("+message.type={message_type}")),
            force: false,
        };
        let response = self
            .services()
            .invoke(
                None,
                RemotingCommand::request_with_header(UPDATE_AND_CREATE_TOPIC, &header),
            )
            .await;
        assert_eq!(response.code, 0, "{:?}", response.remark);
    }

    async fn create_group(&self, group: SubscriptionGroupConfig) {
        let request = RemotingCommand::request(UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
            .with_body(group.encode().expect("encodes"));
        let response = self.services().invoke(None, request).await;
        assert_eq!(response.code, 0, "{:?}", response.remark);
    }

    /// Opens a Telemetry stream as `client_id`, sends `settings` and returns the server's reply
    /// with the stream (keep the sender alive to keep the stream open).
    async fn telemetry(
        &mut self,
        client_id: &str,
        settings: pb::Settings,
    ) -> (
        mpsc::Sender<pb::TelemetryCommand>,
        Streaming<pb::TelemetryCommand>,
        pb::Settings,
    ) {
        let (tx, rx) = mpsc::channel(8);
        tx.send(pb::TelemetryCommand {
            status: None,
            command: Some(pb::telemetry_command::Command::Settings(settings)),
        })
        .await
        .expect("queued");
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        request
            .metadata_mut()
            .insert("x-mq-client-id", client_id.parse().expect("ascii"));
        let mut inbound = self
            .client
            .telemetry(request)
            .await
            .expect("telemetry opens")
            .into_inner();
        let reply = inbound
            .message()
            .await
            .expect("stream ok")
            .expect("a reply");
        assert_eq!(reply.status.map(|s| s.code), Some(20000));
        let Some(pb::telemetry_command::Command::Settings(settings)) = reply.command else {
            panic!("settings reply expected, got {:?}", reply.command);
        };
        (tx, inbound, settings)
    }

    async fn read_all(&self, topic: &str) -> Vec<apogee_protocol::message::MessageRecord> {
        let mut out = Vec::new();
        for queue_id in 0..2 {
            let result = self
                .services()
                .pull(LocalPull {
                    group: "reader".into(),
                    topic: topic.into(),
                    queue_id,
                    offset: 0,
                    max_messages: 32,
                    expression_type: "TAG".into(),
                    expression: "*".into(),
                    peer: None,
                })
                .await
                .expect("pull");
            out.extend(result.messages);
        }
        out
    }

    async fn stop(mut self) {
        self.grpc.shutdown().await;
        if let Some(b) = self.broker.take() {
            b.shutdown().await.expect("broker stops");
        }
    }
}

fn message(topic: &str, id: &str, kind: pb::MessageType) -> pb::Message {
    pb_build::message(topic, id, kind, None)
}

fn producer_settings(topic: &str) -> pb::Settings {
    pb::Settings {
        client_type: Some(pb::ClientType::Producer as i32),
        pub_sub: Some(pb::settings::PubSub::Publishing(pb::Publishing {
            topics: vec![pb::Resource {
                resource_namespace: String::new(),
                name: topic.into(),
            }],
            max_body_size: 0,
            validate_message_type: false,
        })),
        ..Default::default()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn send(setup: &mut Setup, msg: pb::Message) -> pb::SendResultEntry {
    let response = setup
        .client
        .send_message(pb::SendMessageRequest {
            messages: vec![msg],
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(response.status.map(|s| s.code), Some(20000));
    response.entries.into_iter().next().expect("one entry")
}

/// Polls the store until `topic` holds a message with UNIQ_KEY `id` (the broker offers no event
/// for a timer delivery).
async fn wait_stored(setup: &Setup, topic: &str, id: &str) {
    tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            if setup
                .read_all(topic)
                .await
                .iter()
                .any(|r| r.properties_map().uniq_key() == Some(id))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{id} never reached {topic}"));
}

#[tokio::test]
async fn an_unended_transaction_is_checked_back_on_telemetry_and_the_answer_commits_it() {
    let mut setup = Setup::start(|c| {
        c.transaction_check_interval_ms = 100;
        c.transaction_timeout_ms = 200;
    })
    .await;
    setup.create_topic("TxTopic", "TRANSACTION").await;
    let (_keep, mut inbound, _) = setup
        .telemetry("tx-producer", producer_settings("TxTopic"))
        .await;
    let sent = send(
        &mut setup,
        message(
            "TxTopic",
            "7A0000000000000000000000000000A1",
            pb::MessageType::Transaction,
        ),
    )
    .await;
    assert!(!sent.transaction_id.is_empty());
    assert!(setup.read_all("TxTopic").await.is_empty());

    let command = tokio::time::timeout(EVENT_TIMEOUT, inbound.message())
        .await
        .expect("a check-back in time")
        .expect("stream ok")
        .expect("a command");
    let Some(pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(recover)) =
        command.command
    else {
        panic!("recover command expected, got {:?}", command.command);
    };
    let checked = recover.message.expect("the half message");
    let sp = checked.system_properties.clone().unwrap_or_default();
    assert_eq!(sp.message_id, "7A0000000000000000000000000000A1");
    assert_eq!(checked.topic, resource("TxTopic"));
    assert_eq!(checked.body, b"body of 7A0000000000000000000000000000A1");
    assert_eq!(sp.tag.as_deref(), Some("TagA"));
    assert_eq!(
        checked.user_properties.get("color").map(String::as_str),
        Some("blue")
    );
    assert!(!recover.transaction_id.is_empty());

    let ended = setup
        .client
        .end_transaction(pb::EndTransactionRequest {
            topic: resource("TxTopic"),
            message_id: sp.message_id.clone(),
            transaction_id: recover.transaction_id,
            resolution: pb::TransactionResolution::Commit as i32,
            source: pb::TransactionSource::SourceServerCheck as i32,
            trace_context: String::new(),
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(ended.status.map(|s| s.code), Some(20000));
    let stored = setup.read_all("TxTopic").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].properties_map().uniq_key(),
        Some("7A0000000000000000000000000000A1")
    );
    setup.stop().await;
}

#[tokio::test]
async fn a_check_back_skips_producers_of_other_topics() {
    let mut setup = Setup::start(|c| {
        c.transaction_check_interval_ms = 100;
        c.transaction_timeout_ms = 200;
    })
    .await;
    setup.create_topic("TxMine", "TRANSACTION").await;
    let (_keep, _inbound, _) = setup
        .telemetry("other-producer", producer_settings("SomethingElse"))
        .await;
    send(
        &mut setup,
        message(
            "TxMine",
            "7A00000000000000000000000000B2",
            pb::MessageType::Transaction,
        ),
    )
    .await;
    let broker = setup.broker.as_ref().expect("running");
    tokio::time::timeout(
        EVENT_TIMEOUT,
        broker.wait_transaction_stats(|s| s.checks_without_producer >= 1),
    )
    .await
    .expect("the check found no producer");
    setup.stop().await;
}

#[tokio::test]
async fn a_recalled_delay_message_is_never_delivered_and_bad_handles_are_refused() {
    let mut setup = Setup::start(|_| {}).await;
    setup.create_topic("DelayTopic", "DELAY").await;
    let deliver_ms = now_ms() + 2_000;
    let delayed = |id: &str| {
        let mut m = message("DelayTopic", id, pb::MessageType::Delay);
        if let Some(sp) = m.system_properties.as_mut() {
            sp.delivery_timestamp = Some(prost_types::Timestamp {
                seconds: deliver_ms / 1000,
                nanos: ((deliver_ms % 1000) * 1_000_000) as i32,
            });
        }
        m
    };
    let recalled = send(&mut setup, delayed("D0000000000000000000000000000001")).await;
    let kept = send(&mut setup, delayed("D0000000000000000000000000000002")).await;
    let handle = RecallHandle::decode(&recalled.recall_handle).expect("a v1 handle");
    assert_eq!(handle.topic, "DelayTopic");
    assert_eq!(handle.broker_name, "broker-a");
    // As RocketMQ's broker writes it: one past the delivery time rounded to the timer tick.
    let tick_ms = 1000;
    let rounded = if deliver_ms % tick_ms == 0 {
        deliver_ms - tick_ms
    } else {
        deliver_ms / tick_ms * tick_ms
    };
    assert_eq!(handle.timestamp, (rounded + 1).to_string());
    assert_eq!(handle.message_id, "D0000000000000000000000000000001");

    let recall = |topic: &str, handle: &str| pb::RecallMessageRequest {
        topic: resource(topic),
        recall_handle: handle.into(),
    };
    let answer = setup
        .client
        .recall_message(recall("DelayTopic", &recalled.recall_handle))
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(answer.status.map(|s| s.code), Some(20000));
    assert_eq!(answer.message_id, "D0000000000000000000000000000001");

    for (topic, bogus) in [
        ("DelayTopic", "not-a-handle!"),
        ("DelayTopic", ""),
        ("OtherTopic", kept.recall_handle.as_str()),
    ] {
        if topic == "OtherTopic" {
            setup.create_topic("OtherTopic", "DELAY").await;
        }
        let answer = setup
            .client
            .recall_message(recall(topic, bogus))
            .await
            .expect("rpc ok")
            .into_inner();
        assert_eq!(
            answer.status.map(|s| s.code),
            Some(pb::Code::BadRequest as i32),
            "{bogus:?}"
        );
    }

    wait_stored(&setup, "DelayTopic", "D0000000000000000000000000000002").await;
    let stored = setup.read_all("DelayTopic").await;
    assert_eq!(
        stored.len(),
        1,
        "only the message not recalled is delivered"
    );

    // Once delivered, a message can no longer be recalled.
    let late = setup
        .client
        .recall_message(recall("DelayTopic", &kept.recall_handle))
        .await
        .expect("rpc ok")
        .into_inner();
    let status = late.status.expect("status");
    assert_eq!(status.code, pb::Code::BadRequest as i32);
    assert!(status.message.contains("timestamp invalid"), "{status:?}");
    setup.stop().await;
}

#[tokio::test]
async fn normal_messages_carry_no_recall_handle() {
    let mut setup = Setup::start(|_| {}).await;
    let entry = send(
        &mut setup,
        message(
            "PlainTopic",
            "E0000000000000000000000000000001",
            pb::MessageType::Normal,
        ),
    )
    .await;
    assert!(entry.recall_handle.is_empty());
    setup.stop().await;
}

fn consumer_settings(kind: pb::ClientType, group: &str) -> pb::Settings {
    pb::Settings {
        client_type: Some(kind as i32),
        pub_sub: Some(pb::settings::PubSub::Subscription(pb::Subscription {
            group: resource(group),
            subscriptions: vec![pb::SubscriptionEntry {
                topic: resource("AnyTopic"),
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

#[tokio::test]
async fn consumer_settings_follow_the_subscription_group_config() {
    let mut setup = Setup::start(|_| {}).await;
    let mut group = SubscriptionGroupConfig::new("OrderlyGroup");
    group.consume_message_orderly = true;
    group.retry_max_times = 3;
    setup.create_group(group).await;

    for kind in [pb::ClientType::SimpleConsumer, pb::ClientType::PushConsumer] {
        let (_keep, _inbound, settings) = setup
            .telemetry(
                &format!("consumer-{}", kind as i32),
                consumer_settings(kind, "OrderlyGroup"),
            )
            .await;
        let Some(pb::settings::PubSub::Subscription(sub)) = settings.pub_sub else {
            panic!("subscription expected");
        };
        assert_eq!(sub.fifo, Some(true), "{kind:?}");
        assert_eq!(
            settings.backoff_policy.map(|b| b.max_attempts),
            Some(4),
            "{kind:?}"
        );
    }

    // A group the broker does not know gets the defaults: not FIFO, 16 retries.
    let (_keep, _inbound, settings) = setup
        .telemetry(
            "consumer-unknown",
            consumer_settings(pb::ClientType::SimpleConsumer, "NoSuchGroup"),
        )
        .await;
    let Some(pb::settings::PubSub::Subscription(sub)) = settings.pub_sub else {
        panic!("subscription expected");
    };
    assert_eq!(sub.fifo, Some(false));
    assert_eq!(settings.backoff_policy.map(|b| b.max_attempts), Some(17));
    setup.stop().await;
}

fn proto_ms(ms: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// A receive as `client_id`: a push consumer's (auto renew, no invisible time) when
/// `invisible_ms` is `None`, else a simple consumer's.
async fn receive_as(
    setup: &mut Setup,
    client_id: &str,
    topic: &str,
    invisible_ms: Option<u64>,
    poll_ms: u64,
) -> Vec<pb::Message> {
    use pb::receive_message_response::Content;
    let mut request = tonic::Request::new(pb::ReceiveMessageRequest {
        group: resource("PushGroup"),
        message_queue: Some(pb::MessageQueue {
            topic: resource(topic),
            ..Default::default()
        }),
        filter_expression: Some(pb::FilterExpression {
            r#type: pb::FilterType::Tag as i32,
            expression: "*".into(),
        }),
        batch_size: 16,
        invisible_duration: invisible_ms.map(proto_ms),
        auto_renew: invisible_ms.is_none(),
        long_polling_timeout: Some(proto_ms(poll_ms)),
        attempt_id: None,
    });
    request
        .metadata_mut()
        .insert("x-mq-client-id", client_id.parse().expect("ascii"));
    let mut stream = setup
        .client
        .receive_message(request)
        .await
        .expect("rpc ok")
        .into_inner();
    let mut messages = Vec::new();
    while let Some(item) = stream.message().await.expect("stream ok") {
        if let Some(Content::Message(m)) = item.content {
            messages.push(m);
        }
    }
    messages
}

fn handle_of(m: &pb::Message) -> String {
    m.system_properties
        .as_ref()
        .and_then(|sp| sp.receipt_handle.clone())
        .expect("receipt handle")
}

#[tokio::test]
async fn a_push_consumers_message_stays_invisible_until_acked_with_its_original_handle() {
    let (mut setup, backend) = Setup::start_with(
        |_| {},
        RenewConfig {
            invisible: Duration::from_millis(1_000),
            period: Duration::from_millis(100),
            ahead: Duration::from_millis(600),
            slice: Duration::from_millis(1_000),
            ..RenewConfig::default()
        },
    )
    .await;
    setup.create_topic("PushTopic", "NORMAL").await;
    send(
        &mut setup,
        message(
            "PushTopic",
            "F0000000000000000000000000000001",
            pb::MessageType::Normal,
        ),
    )
    .await;
    let got = receive_as(&mut setup, "push-1", "PushTopic", None, 2_000).await;
    assert_eq!(got.len(), 1);
    assert_eq!(backend.renewing(), 1);

    // Unrenewed, it would be visible again after 1 s: a 2.5 s poll finds nothing.
    let other = receive_as(&mut setup, "simple-1", "PushTopic", Some(10_000), 2_500).await;
    assert!(
        other.is_empty(),
        "renewed messages stay invisible: {other:?}"
    );

    let acked = setup
        .client
        .ack_message(pb::AckMessageRequest {
            group: resource("PushGroup"),
            topic: resource("PushTopic"),
            entries: vec![pb::AckMessageEntry {
                message_id: "F0000000000000000000000000000001".into(),
                receipt_handle: handle_of(&got[0]),
                lite_topic: None,
            }],
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(
        acked.status.as_ref().map(|s| s.code),
        Some(20000),
        "{acked:?}"
    );
    assert_eq!(backend.renewing(), 0);
    let after = receive_as(&mut setup, "simple-1", "PushTopic", Some(10_000), 1_500).await;
    assert!(after.is_empty(), "an acked message never returns");
    setup.stop().await;
}

#[tokio::test]
async fn a_terminated_push_consumers_messages_come_back_soon() {
    let (mut setup, backend) = Setup::start_with(
        |_| {},
        RenewConfig {
            clear: Duration::from_millis(200),
            ..RenewConfig::default()
        },
    )
    .await;
    setup.create_topic("PushGone", "NORMAL").await;
    send(
        &mut setup,
        message(
            "PushGone",
            "F0000000000000000000000000000002",
            pb::MessageType::Normal,
        ),
    )
    .await;
    let got = receive_as(&mut setup, "push-2", "PushGone", None, 2_000).await;
    assert_eq!(got.len(), 1);
    assert_eq!(backend.renewing(), 1);

    let mut bye = tonic::Request::new(pb::NotifyClientTerminationRequest {
        group: resource("PushGroup"),
    });
    bye.metadata_mut()
        .insert("x-mq-client-id", "push-2".parse().expect("ascii"));
    setup
        .client
        .notify_client_termination(bye)
        .await
        .expect("rpc ok");
    assert_eq!(backend.renewing(), 0);

    // Its invisible time was 30 s; released, it is delivered again well within this poll.
    let again = receive_as(&mut setup, "simple-2", "PushGone", Some(10_000), 10_000).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0]
            .system_properties
            .as_ref()
            .and_then(|sp| sp.delivery_attempt),
        Some(2)
    );
    setup.stop().await;
}
