//! Cluster mode end to end: an in-process name server and two brokers (broker-a, broker-b), the
//! gRPC endpoint over a [`RemoteBackend`], and the generated tonic client.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use apogee_broker::local::LocalPull;
use apogee_broker::{Broker, BrokerConfig, BrokerHandle, StoreOptions};
use apogee_grpc::pb;
use apogee_grpc::pb::messaging_service_client::MessagingServiceClient;
use apogee_grpc::renew::RenewConfig;
use apogee_grpc::SessionRegistry;
use apogee_grpc::{GrpcConfig, GrpcServer, GrpcServerHandle, RemoteBackend, RemoteConfig};
use apogee_namesrv::{NameServer, NameServerHandle, NamesrvConfig};
use apogee_protocol::body::{JsonBody, TopicRouteData};
use apogee_protocol::codes::{request_code, response_code};
use apogee_protocol::header::{CreateTopicRequestHeader, GetRouteInfoRequestHeader};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{RemotingClient, RemotingConfig};
use pb_build::{message, resource};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

#[path = "support/pb_build.rs"]
mod pb_build;

const DEADLINE: Duration = Duration::from_secs(20);

struct Cluster {
    _dir: tempfile::TempDir,
    ns: NameServerHandle,
    ns_addr: String,
    brokers: Vec<BrokerHandle>,
    backend: RemoteBackend,
    grpc: GrpcServerHandle,
    client: MessagingServiceClient<Channel>,
    remoting: RemotingClient,
}

impl Cluster {
    async fn start() -> Cluster {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tune: impl Fn(&mut BrokerConfig)) -> Cluster {
        Self::start_full(tune, RenewConfig::default()).await
    }

    async fn start_renewing(renew: RenewConfig) -> Cluster {
        Self::start_full(|_| {}, renew).await
    }

    async fn start_full(tune: impl Fn(&mut BrokerConfig), renew: RenewConfig) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ns = NameServer::start(NamesrvConfig {
            listen_addr: "127.0.0.1:0".into(),
            kv_config_path: dir.path().join("kvConfig.json"),
            ..NamesrvConfig::default()
        })
        .await
        .expect("name server starts");
        let ns_addr = ns.local_addr().to_string();
        let mut brokers = Vec::new();
        for name in ["broker-a", "broker-b"] {
            let mut config = BrokerConfig {
                listen_addr: "127.0.0.1:0".into(),
                broker_ip1: Some("127.0.0.1".into()),
                broker_name: name.into(),
                data_dir: dir.path().join(name),
                namesrv_addrs: vec![ns_addr.clone()],
                store: StoreOptions::for_tests(),
                ..BrokerConfig::default()
            };
            tune(&mut config);
            let broker = Broker::start(config).await.expect("broker starts");
            brokers.push(broker);
        }
        let sessions = Arc::new(SessionRegistry::new(1024));
        let mut config =
            RemoteConfig::new(vec![ns_addr.clone()], SocketAddr::from(([127, 0, 0, 1], 0)));
        config.route_ttl = Duration::from_millis(200);
        let backend = RemoteBackend::new(config, sessions.clone()).with_renewal(renew);
        let grpc = GrpcServer::start_with_sessions(
            GrpcConfig {
                listen_addr: "127.0.0.1:0".into(),
                ..GrpcConfig::default()
            },
            Arc::new(backend.clone()),
            sessions,
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
        Cluster {
            _dir: dir,
            ns,
            ns_addr,
            brokers,
            backend,
            grpc,
            client: MessagingServiceClient::new(channel),
            remoting: RemotingClient::new(RemotingConfig::default()),
        }
    }

    /// Creates `topic` on both brokers and waits until the name server routes to both.
    async fn create_topic(&self, topic: &str, message_type: &str, queues: i32) {
        for broker in &self.brokers {
            let header = CreateTopicRequestHeader {
                topic: topic.into(),
                default_topic: "TBW102".into(),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: 6,
                topic_filter_type: "SINGLE_TAG".into(),
                topic_sys_flag: Some(0),
                order: false,
                attributes: Some(format!("+message.type={message_type}")),
                force: false,
            };
            let response = self
                .remoting
                .invoke(
                    broker.broker_addr(),
                    RemotingCommand::request_with_header(
                        request_code::UPDATE_AND_CREATE_TOPIC,
                        &header,
                    ),
                    Duration::from_secs(5),
                )
                .await
                .expect("broker answers");
            assert_eq!(response.code, 0, "{:?}", response.remark);
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            let header = GetRouteInfoRequestHeader {
                topic: topic.into(),
                ..Default::default()
            };
            let request =
                RemotingCommand::request_with_header(request_code::GET_ROUTEINFO_BY_TOPIC, &header);
            if let Ok(r) = self
                .remoting
                .invoke(&self.ns_addr, request, Duration::from_secs(3))
                .await
            {
                if r.code == response_code::SUCCESS {
                    let route = TopicRouteData::decode(&r.body).expect("route");
                    if route.queue_datas.len() == self.brokers.len() {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "route of {topic} never listed both brokers"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.grpc.shutdown().await;
        self.backend.shutdown().await;
        for b in self.brokers {
            b.shutdown().await.expect("broker stops");
        }
        self.ns.shutdown().await;
    }
}

async fn send(cluster: &mut Cluster, msg: pb::Message) -> pb::SendResultEntry {
    let response = cluster
        .client
        .send_message(pb::SendMessageRequest {
            messages: vec![msg],
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(
        response.status.as_ref().map(|s| s.code),
        Some(pb::Code::Ok as i32),
        "{response:?}"
    );
    response.entries.into_iter().next().expect("one entry")
}

fn duration(ms: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

async fn receive(
    cluster: &mut Cluster,
    group: &str,
    topic: &str,
    invisible_ms: u64,
    poll_ms: u64,
) -> Vec<pb::Message> {
    use pb::receive_message_response::Content;
    let mut stream = cluster
        .client
        .receive_message(pb::ReceiveMessageRequest {
            group: resource(group),
            message_queue: Some(pb::MessageQueue {
                topic: resource(topic),
                ..Default::default()
            }),
            filter_expression: Some(pb::FilterExpression {
                r#type: pb::FilterType::Tag as i32,
                expression: "*".into(),
            }),
            batch_size: 16,
            invisible_duration: Some(duration(invisible_ms)),
            auto_renew: false,
            long_polling_timeout: Some(duration(poll_ms)),
            attempt_id: None,
        })
        .await
        .expect("rpc ok")
        .into_inner();
    let mut out = Vec::new();
    let mut first = true;
    while let Some(item) = stream.message().await.expect("stream ok") {
        match item.content.expect("content") {
            Content::Status(s) if first => assert!(
                s.code == pb::Code::Ok as i32 || s.code == pb::Code::MessageNotFound as i32,
                "{s:?}"
            ),
            Content::Message(m) => out.push(m),
            _ => {}
        }
        first = false;
    }
    out
}

/// Receives until `want` distinct message ids arrived; returns them by id.
async fn receive_until(
    cluster: &mut Cluster,
    group: &str,
    topic: &str,
    want: usize,
) -> BTreeMap<String, pb::Message> {
    let deadline = Instant::now() + DEADLINE;
    let mut got = BTreeMap::new();
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} arrived",
            got.len()
        );
        for m in receive(cluster, group, topic, 30_000, 500).await {
            let id = m.system_properties.as_ref().expect("sp").message_id.clone();
            got.insert(id, m);
        }
    }
    got
}

fn handle(m: &pb::Message) -> String {
    m.system_properties
        .as_ref()
        .and_then(|sp| sp.receipt_handle.clone())
        .expect("receipt handle")
}

fn broker_of_handle(handle: &str) -> String {
    handle.split(' ').nth(5).expect("broker field").to_owned()
}

async fn ack(cluster: &mut Cluster, group: &str, topic: &str, messages: &[&pb::Message]) {
    let response = cluster
        .client
        .ack_message(pb::AckMessageRequest {
            group: resource(group),
            topic: resource(topic),
            entries: messages
                .iter()
                .map(|m| pb::AckMessageEntry {
                    message_id: m.system_properties.as_ref().expect("sp").message_id.clone(),
                    receipt_handle: handle(m),
                    lite_topic: None,
                })
                .collect(),
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(
        response.status.map(|s| s.code),
        Some(pb::Code::Ok as i32),
        "{:?}",
        response.entries
    );
}

#[tokio::test]
async fn route_lists_every_broker_and_messages_round_trip_across_both() {
    let mut cluster = Cluster::start().await;
    cluster.create_topic("ClusterT", "NORMAL", 2).await;
    let route = cluster
        .client
        .query_route(pb::QueryRouteRequest {
            topic: resource("ClusterT"),
            endpoints: None,
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(route.status.map(|s| s.code), Some(20000));
    assert_eq!(route.message_queues.len(), 4);
    let port = i32::from(cluster.grpc.local_addr().port());
    let mut brokers = BTreeSet::new();
    for q in &route.message_queues {
        assert_eq!(q.permission, pb::Permission::ReadWrite as i32);
        assert_eq!(q.accept_message_types, vec![pb::MessageType::Normal as i32]);
        let broker = q.broker.as_ref().expect("broker");
        brokers.insert(broker.name.clone());
        let endpoints = broker.endpoints.as_ref().expect("endpoints");
        assert_eq!(
            endpoints.addresses[0].port, port,
            "the proxy is the endpoint"
        );
    }
    assert_eq!(
        brokers,
        BTreeSet::from(["broker-a".to_owned(), "broker-b".to_owned()])
    );

    // A missing topic is TOPIC_NOT_FOUND.
    let missing = cluster
        .client
        .query_route(pb::QueryRouteRequest {
            topic: resource("NoSuchTopic"),
            endpoints: None,
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(
        missing.status.map(|s| s.code),
        Some(pb::Code::TopicNotFound as i32)
    );

    // Sends rotate over the queues of both brokers.
    let ids: Vec<String> = (0..8).map(|i| format!("0A0B0C0D{i:02}")).collect();
    for id in &ids {
        let entry = send(
            &mut cluster,
            message("ClusterT", id, pb::MessageType::Normal, None),
        )
        .await;
        assert_eq!(&entry.message_id, id);
    }
    let got = receive_until(&mut cluster, "ClusterG", "ClusterT", ids.len()).await;
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), ids);
    let from: BTreeSet<String> = got.values().map(|m| broker_of_handle(&handle(m))).collect();
    assert_eq!(from.len(), 2, "both brokers delivered: {from:?}");
    for m in got.values() {
        let sp = m.system_properties.as_ref().expect("sp");
        assert_eq!(sp.tag.as_deref(), Some("TagA"));
        assert_eq!(sp.delivery_attempt, Some(1));
        assert_eq!(
            m.user_properties.get("color").map(String::as_str),
            Some("blue")
        );
    }
    let all: Vec<&pb::Message> = got.values().collect();
    ack(&mut cluster, "ClusterG", "ClusterT", &all).await;
    assert!(receive(&mut cluster, "ClusterG", "ClusterT", 30_000, 0)
        .await
        .is_empty());
    cluster.stop().await;
}

#[tokio::test]
async fn fifo_messages_of_one_group_share_a_queue_and_wrong_types_are_refused() {
    let mut cluster = Cluster::start().await;
    cluster.create_topic("FifoC", "FIFO", 2).await;
    let response = cluster
        .client
        .send_message(pb::SendMessageRequest {
            messages: vec![message("FifoC", "BB00", pb::MessageType::Normal, None)],
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(
        response.status.map(|s| s.code),
        Some(pb::Code::MessagePropertyConflictWithType as i32)
    );
    let ids: Vec<String> = (1..=4).map(|i| format!("BB0{i}")).collect();
    for id in &ids {
        send(
            &mut cluster,
            message("FifoC", id, pb::MessageType::Fifo, Some("order-7")),
        )
        .await;
    }
    let got = receive_until(&mut cluster, "FifoG", "FifoC", ids.len()).await;
    let places: BTreeSet<(String, i32)> = got
        .values()
        .map(|m| {
            let sp = m.system_properties.as_ref().expect("sp");
            assert_eq!(sp.message_group.as_deref(), Some("order-7"));
            (broker_of_handle(&handle(m)), sp.queue_id)
        })
        .collect();
    assert_eq!(places.len(), 1, "one queue: {places:?}");
    cluster.stop().await;
}

#[tokio::test]
async fn a_changed_invisible_time_brings_the_message_back_and_the_new_handle_acks_it() {
    let mut cluster = Cluster::start().await;
    cluster.create_topic("InvisT", "NORMAL", 1).await;
    send(
        &mut cluster,
        message("InvisT", "CC01", pb::MessageType::Normal, None),
    )
    .await;
    let first = receive_until(&mut cluster, "InvisG", "InvisT", 1).await;
    let m = first.values().next().expect("one");
    let changed = cluster
        .client
        .change_invisible_duration(pb::ChangeInvisibleDurationRequest {
            group: resource("InvisG"),
            topic: resource("InvisT"),
            receipt_handle: handle(m),
            invisible_duration: Some(duration(100)),
            message_id: "CC01".into(),
            lite_topic: None,
            suspend: None,
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(changed.status.map(|s| s.code), Some(20000));
    assert_ne!(changed.receipt_handle, handle(m));
    assert_eq!(
        broker_of_handle(&changed.receipt_handle),
        broker_of_handle(&handle(m))
    );

    // Redelivered once the 100 ms are over, as attempt 2.
    let deadline = Instant::now() + DEADLINE;
    let again = loop {
        let got = receive(&mut cluster, "InvisG", "InvisT", 30_000, 200).await;
        if let Some(m) = got.into_iter().next() {
            break m;
        }
        assert!(Instant::now() < deadline, "never redelivered");
    };
    let sp = again.system_properties.as_ref().expect("sp");
    assert_eq!(sp.message_id, "CC01");
    assert_eq!(sp.delivery_attempt, Some(2));
    ack(&mut cluster, "InvisG", "InvisT", &[&again]).await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_committed_transaction_is_delivered_and_a_rolled_back_one_is_not() {
    let mut cluster = Cluster::start().await;
    cluster.create_topic("TxC", "TRANSACTION", 2).await;
    let mut ends = Vec::new();
    for (id, resolution) in [
        ("DD01", pb::TransactionResolution::Commit),
        ("DD02", pb::TransactionResolution::Rollback),
    ] {
        let entry = send(
            &mut cluster,
            message("TxC", id, pb::MessageType::Transaction, None),
        )
        .await;
        assert!(!entry.transaction_id.is_empty());
        ends.push((id, entry.transaction_id, resolution));
    }
    for (id, transaction_id, resolution) in ends {
        let end = cluster
            .client
            .end_transaction(pb::EndTransactionRequest {
                topic: resource("TxC"),
                message_id: id.into(),
                transaction_id,
                resolution: resolution as i32,
                source: pb::TransactionSource::SourceClient as i32,
                trace_context: String::new(),
            })
            .await
            .expect("rpc ok")
            .into_inner();
        assert_eq!(end.status.map(|s| s.code), Some(20000));
    }
    let got = receive_until(&mut cluster, "TxG", "TxC", 1).await;
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        vec!["DD01".to_owned()]
    );
    assert!(receive(&mut cluster, "TxG", "TxC", 30_000, 0)
        .await
        .is_empty());

    // A made-up transaction id is refused.
    let bad = cluster
        .client
        .end_transaction(pb::EndTransactionRequest {
            topic: resource("TxC"),
            message_id: "DD09".into(),
            transaction_id: "nonsense".into(),
            resolution: pb::TransactionResolution::Commit as i32,
            source: pb::TransactionSource::SourceClient as i32,
            trace_context: String::new(),
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(
        bad.status.map(|s| s.code),
        Some(pb::Code::InvalidTransactionId as i32)
    );
    cluster.stop().await;
}

#[tokio::test]
async fn a_broker_check_back_reaches_the_producer_on_telemetry_and_its_answer_commits() {
    let mut cluster = Cluster::start_with(|c| {
        c.transaction_check_interval_ms = 100;
        c.transaction_timeout_ms = 0;
    })
    .await;
    cluster.create_topic("TxCheck", "TRANSACTION", 1).await;

    // A producer of the topic with its Telemetry stream open.
    let (outbound, rx) = mpsc::channel(8);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    let client_id: MetadataValue<_> = "checker@1@0@x".parse().expect("header");
    request.metadata_mut().insert("x-mq-client-id", client_id);
    let mut inbound = cluster
        .client
        .telemetry(request)
        .await
        .expect("telemetry accepted")
        .into_inner();
    outbound
        .send(pb::TelemetryCommand {
            status: None,
            command: Some(pb::telemetry_command::Command::Settings(pb::Settings {
                client_type: Some(pb::ClientType::Producer as i32),
                pub_sub: Some(pb::settings::PubSub::Publishing(pb::Publishing {
                    topics: vec![pb::Resource {
                        resource_namespace: String::new(),
                        name: "TxCheck".into(),
                    }],
                    ..Default::default()
                })),
                ..Default::default()
            })),
        })
        .await
        .expect("stream open");
    let reply = tokio::time::timeout(DEADLINE, inbound.message())
        .await
        .expect("settings reply in time")
        .expect("no transport error")
        .expect("a reply");
    assert!(matches!(
        reply.command,
        Some(pb::telemetry_command::Command::Settings(_))
    ));

    // A half message nobody ends: the broker asks, the proxy forwards the question.
    send(
        &mut cluster,
        message("TxCheck", "EE01", pb::MessageType::Transaction, None),
    )
    .await;
    let (message_id, transaction_id) = loop {
        let command = tokio::time::timeout(DEADLINE, inbound.message())
            .await
            .expect("a check-back in time")
            .expect("no transport error")
            .expect("stream open");
        if let Some(pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(c)) =
            command.command
        {
            let m = c.message.expect("the half message");
            assert_eq!(m.topic.as_ref().map(|t| t.name.as_str()), Some("TxCheck"));
            break (
                m.system_properties.expect("sp").message_id,
                c.transaction_id,
            );
        }
    };
    assert_eq!(message_id, "EE01");
    let end = cluster
        .client
        .end_transaction(pb::EndTransactionRequest {
            topic: resource("TxCheck"),
            message_id,
            transaction_id,
            resolution: pb::TransactionResolution::Commit as i32,
            source: pb::TransactionSource::SourceServerCheck as i32,
            trace_context: String::new(),
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(end.status.map(|s| s.code), Some(20000));
    let got = receive_until(&mut cluster, "TxCheckG", "TxCheck", 1).await;
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        vec!["EE01".to_owned()]
    );
    drop(outbound);
    cluster.stop().await;
}

#[tokio::test]
async fn a_delay_message_recalled_through_the_proxy_is_never_delivered() {
    let mut cluster = Cluster::start_with(|c| c.timer_precision_ms = 100).await;
    cluster.create_topic("DelayR", "DELAY", 2).await;
    let now_ms = apogee_broker::manager::now_ms();
    let deliver_ms = now_ms + 1_500;
    let delayed = |id: &str| {
        let mut m = message("DelayR", id, pb::MessageType::Delay, None);
        if let Some(sp) = m.system_properties.as_mut() {
            sp.delivery_timestamp = Some(prost_types::Timestamp {
                seconds: deliver_ms / 1000,
                nanos: ((deliver_ms % 1000) * 1_000_000) as i32,
            });
        }
        m
    };
    let recalled = send(&mut cluster, delayed("EE01")).await;
    let kept = send(&mut cluster, delayed("EE02")).await;
    assert!(!recalled.recall_handle.is_empty(), "{recalled:?}");
    assert!(!kept.recall_handle.is_empty(), "{kept:?}");

    let recall = |topic: &str, handle: &str| pb::RecallMessageRequest {
        topic: resource(topic),
        recall_handle: handle.into(),
    };
    let answer = cluster
        .client
        .recall_message(recall("DelayR", &recalled.recall_handle))
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(answer.status.map(|s| s.code), Some(pb::Code::Ok as i32));
    assert_eq!(answer.message_id, "EE01");
    let bad = cluster
        .client
        .recall_message(recall("DelayR", "not a handle"))
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(
        bad.status.map(|s| s.code),
        Some(pb::Code::BadRequest as i32)
    );

    let got = receive_until(&mut cluster, "DelayG", "DelayR", 1).await;
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), vec!["EE02"]);
    // Both brokers' timers are past the tick: whatever was due has been delivered.
    let deadline = Instant::now() + DEADLINE;
    while !cluster.brokers.iter().all(|b| {
        b.timer_stats()
            .is_some_and(|s| (s.cursor_tick + 1) * 100 > deliver_ms)
    }) {
        assert!(
            Instant::now() < deadline,
            "the timers never passed the tick"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(receive(&mut cluster, "DelayG", "DelayR", 30_000, 200)
        .await
        .is_empty());
    let cancelled: u64 = cluster
        .brokers
        .iter()
        .filter_map(|b| b.timer_stats())
        .map(|s| s.cancelled)
        .sum();
    assert_eq!(cancelled, 1);

    // Delivered: too late to recall, refused by the broker that held it.
    let late = cluster
        .client
        .recall_message(recall("DelayR", &kept.recall_handle))
        .await
        .expect("rpc ok")
        .into_inner();
    let status = late.status.expect("status");
    assert_eq!(status.code, pb::Code::BadRequest as i32);
    assert!(status.message.contains("timestamp invalid"), "{status:?}");
    cluster.stop().await;
}

/// A receive as `client_id` in group `group`: a push consumer's (auto renew, no invisible time)
/// when `invisible_ms` is `None`, else a simple consumer's.
async fn receive_as(
    cluster: &mut Cluster,
    client_id: &str,
    group: &str,
    topic: &str,
    invisible_ms: Option<u64>,
    poll_ms: u64,
) -> Vec<pb::Message> {
    use pb::receive_message_response::Content;
    let mut request = tonic::Request::new(pb::ReceiveMessageRequest {
        group: resource(group),
        message_queue: Some(pb::MessageQueue {
            topic: resource(topic),
            ..Default::default()
        }),
        filter_expression: Some(pb::FilterExpression {
            r#type: pb::FilterType::Tag as i32,
            expression: "*".into(),
        }),
        batch_size: 16,
        invisible_duration: invisible_ms.map(duration),
        auto_renew: invisible_ms.is_none(),
        long_polling_timeout: Some(duration(poll_ms)),
        attempt_id: None,
    });
    request
        .metadata_mut()
        .insert("x-mq-client-id", client_id.parse().expect("ascii"));
    let mut stream = cluster
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

/// Receives as `client_id` until something arrives (a long poll reaches one broker at a time).
async fn receive_first(
    cluster: &mut Cluster,
    client_id: &str,
    group: &str,
    topic: &str,
    invisible_ms: Option<u64>,
) -> Vec<pb::Message> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = receive_as(cluster, client_id, group, topic, invisible_ms, 500).await;
        if !got.is_empty() {
            return got;
        }
        assert!(Instant::now() < deadline, "nothing arrived");
    }
}

/// Receives as a simple consumer for `window`; returns everything that arrived.
async fn receive_during(
    cluster: &mut Cluster,
    group: &str,
    topic: &str,
    window: Duration,
) -> Vec<pb::Message> {
    let until = Instant::now() + window;
    let mut out = Vec::new();
    while Instant::now() < until {
        out.extend(receive_as(cluster, "simple-1", group, topic, Some(10_000), 200).await);
    }
    out
}

#[tokio::test]
async fn a_push_consumers_message_stays_invisible_until_acked_with_its_original_handle() {
    let mut cluster = Cluster::start_renewing(RenewConfig {
        invisible: Duration::from_millis(1_000),
        period: Duration::from_millis(100),
        ahead: Duration::from_millis(600),
        slice: Duration::from_millis(1_000),
        ..RenewConfig::default()
    })
    .await;
    cluster.create_topic("PushT", "NORMAL", 1).await;
    send(
        &mut cluster,
        message("PushT", "F001", pb::MessageType::Normal, None),
    )
    .await;
    let got = receive_first(&mut cluster, "push-1", "PushG", "PushT", None).await;
    assert_eq!(got.len(), 1);
    assert_eq!(cluster.backend.renewing(), 1);

    // Unrenewed, it would be visible again after 1 s.
    let other = receive_during(&mut cluster, "PushG", "PushT", Duration::from_millis(2_500)).await;
    assert!(
        other.is_empty(),
        "renewed messages stay invisible: {other:?}"
    );
    assert_eq!(cluster.backend.renewing(), 1);

    // The client acks with the handle it was given; the proxy uses the latest renewal's.
    ack(&mut cluster, "PushG", "PushT", &[&got[0]]).await;
    assert_eq!(cluster.backend.renewing(), 0);
    let after = receive_during(&mut cluster, "PushG", "PushT", Duration::from_millis(2_000)).await;
    assert!(
        after.is_empty(),
        "an acked message never returns: {after:?}"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn a_terminated_push_consumers_messages_come_back_soon() {
    let mut cluster = Cluster::start_renewing(RenewConfig {
        clear: Duration::from_millis(200),
        ..RenewConfig::default()
    })
    .await;
    cluster.create_topic("PushGone", "NORMAL", 1).await;
    send(
        &mut cluster,
        message("PushGone", "F002", pb::MessageType::Normal, None),
    )
    .await;
    let got = receive_first(&mut cluster, "push-2", "PushGoneG", "PushGone", None).await;
    assert_eq!(got.len(), 1);
    assert_eq!(cluster.backend.renewing(), 1);

    let mut bye = tonic::Request::new(pb::NotifyClientTerminationRequest {
        group: resource("PushGoneG"),
    });
    bye.metadata_mut()
        .insert("x-mq-client-id", "push-2".parse().expect("ascii"));
    cluster
        .client
        .notify_client_termination(bye)
        .await
        .expect("rpc ok");
    assert_eq!(cluster.backend.renewing(), 0);

    // Its invisible time was 30 s; released, it is delivered again well before (DEADLINE is 20 s).
    let again = receive_first(
        &mut cluster,
        "simple-2",
        "PushGoneG",
        "PushGone",
        Some(10_000),
    )
    .await;
    assert_eq!(again.len(), 1);
    let sp = again[0].system_properties.as_ref().expect("sp");
    assert_eq!(sp.message_id, "F002");
    assert_eq!(sp.delivery_attempt, Some(2));
    cluster.stop().await;
}

async fn query_offset(
    cluster: &mut Cluster,
    queue: &pb::MessageQueue,
    policy: pb::QueryOffsetPolicy,
) -> i64 {
    let response = cluster
        .client
        .query_offset(pb::QueryOffsetRequest {
            message_queue: Some(queue.clone()),
            query_offset_policy: policy as i32,
            timestamp: None,
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(response.status.map(|s| s.code), Some(20000));
    response.offset
}

async fn get_offset(cluster: &mut Cluster, group: &str, queue: &pb::MessageQueue) -> pb::Status {
    let response = cluster
        .client
        .get_offset(pb::GetOffsetRequest {
            group: resource(group),
            message_queue: Some(queue.clone()),
        })
        .await
        .expect("rpc ok")
        .into_inner();
    let mut status = response.status.expect("status");
    if status.code == pb::Code::Ok as i32 {
        status.message = response.offset.to_string();
    }
    status
}

/// Pulls `queue` from `offset`: (head status code, message ids, next offset).
async fn pull(
    cluster: &mut Cluster,
    group: &str,
    queue: &pb::MessageQueue,
    offset: i64,
) -> (i32, Vec<String>, i64) {
    use pb::pull_message_response::Content;
    let mut stream = cluster
        .client
        .pull_message(pb::PullMessageRequest {
            group: resource(group),
            message_queue: Some(queue.clone()),
            offset,
            batch_size: 32,
            filter_expression: Some(pb::FilterExpression {
                r#type: pb::FilterType::Tag as i32,
                expression: "*".into(),
            }),
            long_polling_timeout: Some(duration(0)),
        })
        .await
        .expect("rpc ok")
        .into_inner();
    let (mut code, mut ids, mut next) = (None, Vec::new(), None);
    while let Some(item) = stream.message().await.expect("stream ok") {
        match item.content.expect("content") {
            Content::Status(s) => code = Some(s.code),
            Content::Message(m) => ids.push(m.system_properties.expect("sp").message_id),
            Content::NextOffset(n) => next = Some(n),
        }
    }
    (code.expect("a status"), ids, next.expect("a next offset"))
}

#[tokio::test]
async fn assignments_list_both_brokers_and_pull_walks_each_queue_with_stored_offsets() {
    let mut cluster = Cluster::start().await;
    cluster.create_topic("PullT", "NORMAL", 1).await;
    let assigned = cluster
        .client
        .query_assignment(pb::QueryAssignmentRequest {
            topic: resource("PullT"),
            group: resource("PullG"),
            endpoints: None,
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(assigned.status.map(|s| s.code), Some(20000));
    let queues: Vec<pb::MessageQueue> = assigned
        .assignments
        .into_iter()
        .map(|a| a.message_queue.expect("queue"))
        .collect();
    let brokers: BTreeSet<String> = queues
        .iter()
        .map(|q| q.broker.as_ref().expect("broker").name.clone())
        .collect();
    assert_eq!(
        brokers,
        BTreeSet::from(["broker-a".to_owned(), "broker-b".to_owned()])
    );
    assert_eq!(queues.len(), 2);
    let port = i32::from(cluster.grpc.local_addr().port());
    for q in &queues {
        let endpoints = q.broker.as_ref().and_then(|b| b.endpoints.as_ref());
        assert_eq!(endpoints.expect("endpoints").addresses[0].port, port);
    }

    // Four sends rotate over the two queues.
    let ids: Vec<String> = (1..=4).map(|i| format!("PA0{i}")).collect();
    for id in &ids {
        send(
            &mut cluster,
            message("PullT", id, pb::MessageType::Normal, None),
        )
        .await;
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut total = 0;
        for q in &queues {
            total += query_offset(&mut cluster, q, pb::QueryOffsetPolicy::End).await;
        }
        if total == ids.len() as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "only {total} messages stored");
    }

    let mut pulled = BTreeSet::new();
    for q in &queues {
        assert_eq!(
            query_offset(&mut cluster, q, pb::QueryOffsetPolicy::Beginning).await,
            0
        );
        let end = query_offset(&mut cluster, q, pb::QueryOffsetPolicy::End).await;
        assert_eq!(
            get_offset(&mut cluster, "PullG", q).await.code,
            pb::Code::OffsetNotFound as i32,
            "no offset stored yet"
        );
        let (code, got, next) = pull(&mut cluster, "PullG", q, 0).await;
        assert_eq!(code, 20000);
        assert_eq!(got.len() as i64, end);
        assert_eq!(next, end);
        pulled.extend(got);
        let (code, got, next) = pull(&mut cluster, "PullG", q, end).await;
        assert_eq!(code, pb::Code::MessageNotFound as i32);
        assert!(got.is_empty());
        assert_eq!(next, end);

        let updated = cluster
            .client
            .update_offset(pb::UpdateOffsetRequest {
                group: resource("PullG"),
                message_queue: Some(q.clone()),
                offset: next,
            })
            .await
            .expect("rpc ok")
            .into_inner();
        assert_eq!(updated.status.map(|s| s.code), Some(20000));
        let stored = get_offset(&mut cluster, "PullG", q).await;
        assert_eq!(stored.code, 20000, "{stored:?}");
        assert_eq!(stored.message, next.to_string());
    }
    assert_eq!(pulled, ids.iter().cloned().collect::<BTreeSet<_>>());
    cluster.stop().await;
}

#[tokio::test]
async fn forward_to_dead_letter_queue_stores_the_message_in_the_group_dlq_on_its_broker() {
    let mut cluster = Cluster::start().await;
    cluster.create_topic("DlqT", "NORMAL", 1).await;
    send(
        &mut cluster,
        message("DlqT", "DE01", pb::MessageType::Normal, None),
    )
    .await;
    let got = receive_first(&mut cluster, "simple-3", "DlqG", "DlqT", Some(1_000)).await;
    assert_eq!(got.len(), 1);
    let receipt_handle = handle(&got[0]);
    let forwarded = cluster
        .client
        .forward_message_to_dead_letter_queue(pb::ForwardMessageToDeadLetterQueueRequest {
            group: resource("DlqG"),
            topic: resource("DlqT"),
            receipt_handle: receipt_handle.clone(),
            message_id: "DE01".into(),
            delivery_attempt: 1,
            max_delivery_attempts: 17,
            lite_topic: None,
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(forwarded.status.map(|s| s.code), Some(20000));

    let index = match broker_of_handle(&receipt_handle).as_str() {
        "broker-a" => 0,
        _ => 1,
    };
    let services = cluster.brokers[index].services();
    let deadline = Instant::now() + DEADLINE;
    let dlq = loop {
        let pulled = services
            .pull(LocalPull {
                group: "dlq-reader".into(),
                topic: "%DLQ%DlqG".into(),
                queue_id: 0,
                offset: 0,
                max_messages: 8,
                expression_type: "TAG".into(),
                expression: "*".into(),
                peer: None,
            })
            .await;
        if let Ok(p) = pulled {
            if !p.messages.is_empty() {
                break p.messages;
            }
        }
        assert!(Instant::now() < deadline, "nothing in %DLQ%DlqG");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].properties_map().uniq_key(), Some("DE01"));
    // Acked: it does not come back once its 1 s invisible time is over.
    let again = receive_during(&mut cluster, "DlqG", "DlqT", Duration::from_millis(2_000)).await;
    assert!(again.is_empty(), "{again:?}");
    cluster.stop().await;
}
