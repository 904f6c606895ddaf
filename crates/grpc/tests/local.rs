//! Local mode end to end: the generated tonic client against the gRPC endpoint over a real
//! in-process broker.

use std::net::SocketAddr;
use std::sync::Arc;

use apogee_broker::local::{LocalPull, LocalServices};
use apogee_broker::{Broker, BrokerConfig, BrokerHandle, StoreOptions};
use apogee_grpc::pb;
use apogee_grpc::pb::messaging_service_client::MessagingServiceClient;
use apogee_grpc::{GrpcConfig, GrpcServer, GrpcServerHandle, LocalBackend};
use apogee_protocol::codes::request_code::UPDATE_AND_CREATE_TOPIC;
use apogee_protocol::header::CreateTopicRequestHeader;
use apogee_protocol::message::keys;
use apogee_protocol::RemotingCommand;
use pb_build::resource;
use tonic::transport::Channel;

#[path = "support/pb_build.rs"]
mod pb_build;

struct Setup {
    _dir: tempfile::TempDir,
    broker: Option<BrokerHandle>,
    grpc: GrpcServerHandle,
    client: MessagingServiceClient<Channel>,
}

impl Setup {
    async fn start() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = Broker::start(BrokerConfig {
            listen_addr: "127.0.0.1:0".into(),
            broker_ip1: Some("127.0.0.1".into()),
            data_dir: dir.path().to_path_buf(),
            store: StoreOptions::for_tests(),
            ..BrokerConfig::default()
        })
        .await
        .expect("broker starts");
        let backend = Arc::new(LocalBackend::new(
            broker.services(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        ));
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
        let client = MessagingServiceClient::new(channel);
        Setup {
            _dir: dir,
            broker: Some(broker),
            grpc,
            client,
        }
    }

    fn services(&self) -> LocalServices {
        self.broker.as_ref().expect("running").services()
    }

    async fn create_topic(&self, topic: &str, message_type: &str, queues: i32) {
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
            .services()
            .invoke(
                None,
                RemotingCommand::request_with_header(UPDATE_AND_CREATE_TOPIC, &header),
            )
            .await;
        assert_eq!(response.code, 0, "{:?}", response.remark);
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

async fn send(setup: &mut Setup, msg: pb::Message) -> pb::SendMessageResponse {
    setup
        .client
        .send_message(pb::SendMessageRequest {
            messages: vec![msg],
        })
        .await
        .expect("rpc ok")
        .into_inner()
}

async fn read_all(
    setup: &Setup,
    topic: &str,
    queues: i32,
) -> Vec<apogee_protocol::message::MessageRecord> {
    let mut out = Vec::new();
    for queue_id in 0..queues {
        let result = setup
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

#[tokio::test]
async fn query_route_lists_master_read_write_queues_with_the_grpc_endpoint_and_types() {
    let mut setup = Setup::start().await;
    setup.create_topic("FifoTopic", "FIFO", 4).await;
    let route = setup
        .client
        .query_route(pb::QueryRouteRequest {
            topic: resource("FifoTopic"),
            endpoints: None,
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(route.status.as_ref().map(|s| s.code), Some(20000));
    assert_eq!(route.message_queues.len(), 4);
    let port = i32::from(setup.grpc.local_addr().port());
    for (i, q) in route.message_queues.iter().enumerate() {
        assert_eq!(q.id, i as i32);
        assert_eq!(q.permission, pb::Permission::ReadWrite as i32);
        assert_eq!(q.accept_message_types, vec![pb::MessageType::Fifo as i32]);
        let broker = q.broker.as_ref().expect("broker");
        assert_eq!(broker.id, 0);
        assert_eq!(broker.name, "broker-a");
        let endpoints = broker.endpoints.as_ref().expect("endpoints");
        assert_eq!(endpoints.scheme, pb::AddressScheme::IPv4 as i32);
        assert_eq!(endpoints.addresses[0].host, "127.0.0.1");
        assert_eq!(endpoints.addresses[0].port, port);
    }

    // A topic that does not exist yet but may be auto-created takes NORMAL messages.
    let route = setup
        .client
        .query_route(pb::QueryRouteRequest {
            topic: resource("AutoTopic"),
            endpoints: None,
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(route.status.map(|s| s.code), Some(20000));
    assert!(!route.message_queues.is_empty());
    assert_eq!(
        route.message_queues[0].accept_message_types,
        vec![pb::MessageType::Normal as i32]
    );
    setup.stop().await;
}

#[tokio::test]
async fn a_normal_message_is_stored_with_the_client_message_id_and_properties() {
    let mut setup = Setup::start().await;
    let response = send(
        &mut setup,
        message(
            "NormalTopic",
            "0123456789ABCDEF0123456789ABCDEF",
            pb::MessageType::Normal,
        ),
    )
    .await;
    assert_eq!(response.status.map(|s| s.code), Some(20000));
    assert_eq!(response.entries.len(), 1);
    assert_eq!(
        response.entries[0].message_id,
        "0123456789ABCDEF0123456789ABCDEF"
    );
    assert!(response.entries[0].transaction_id.is_empty());

    let stored = read_all(&setup, "NormalTopic", 8).await;
    assert_eq!(stored.len(), 1);
    let record = &stored[0];
    assert_eq!(
        &record.body[..],
        b"body of 0123456789ABCDEF0123456789ABCDEF"
    );
    let props = record.properties_map();
    assert_eq!(props.uniq_key(), Some("0123456789ABCDEF0123456789ABCDEF"));
    assert_eq!(props.tags(), Some("TagA"));
    assert_eq!(props.keys().collect::<Vec<_>>(), vec!["k1"]);
    assert_eq!(props.get("color"), Some("blue"));
    assert_eq!(props.get(keys::PGROUP), Some("NormalTopic"));
    setup.stop().await;
}

#[tokio::test]
async fn a_message_of_the_wrong_type_is_rejected_with_conflict_with_type() {
    let mut setup = Setup::start().await;
    setup.create_topic("FifoOnly", "FIFO", 4).await;
    let response = send(
        &mut setup,
        message("FifoOnly", "AA01", pb::MessageType::Normal),
    )
    .await;
    assert_eq!(
        response.status.map(|s| s.code),
        Some(pb::Code::MessagePropertyConflictWithType as i32)
    );
    assert_eq!(
        response.entries[0].status.as_ref().map(|s| s.code),
        Some(40014)
    );

    // The right type goes through, to the queue its message group hashes to, every time.
    let mut fifo = message("FifoOnly", "AA02", pb::MessageType::Fifo);
    if let Some(sp) = fifo.system_properties.as_mut() {
        sp.message_group = Some("order-7".into());
    }
    let mut again = fifo.clone();
    if let Some(sp) = again.system_properties.as_mut() {
        sp.message_id = "AA03".into();
    }
    assert_eq!(
        send(&mut setup, fifo).await.status.map(|s| s.code),
        Some(20000)
    );
    assert_eq!(
        send(&mut setup, again).await.status.map(|s| s.code),
        Some(20000)
    );
    let stored = read_all(&setup, "FifoOnly", 4).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].queue_id, stored[1].queue_id);
    assert_eq!(
        stored[0].properties_map().get(keys::SHARDING_KEY),
        Some("order-7")
    );
    setup.stop().await;
}

#[tokio::test]
async fn a_committed_transaction_becomes_visible_and_a_rolled_back_one_does_not() {
    let mut setup = Setup::start().await;
    setup.create_topic("TxTopic", "TRANSACTION", 2).await;
    let mut ends = Vec::new();
    for (id, resolution) in [
        ("TX01", pb::TransactionResolution::Commit),
        ("TX02", pb::TransactionResolution::Rollback),
    ] {
        let response = send(
            &mut setup,
            message("TxTopic", id, pb::MessageType::Transaction),
        )
        .await;
        assert_eq!(response.status.map(|s| s.code), Some(20000));
        let transaction_id = response.entries[0].transaction_id.clone();
        assert!(!transaction_id.is_empty());
        ends.push((id, transaction_id, resolution));
    }
    assert!(
        read_all(&setup, "TxTopic", 2).await.is_empty(),
        "half messages are hidden"
    );

    for (id, transaction_id, resolution) in ends {
        let end = setup
            .client
            .end_transaction(pb::EndTransactionRequest {
                topic: resource("TxTopic"),
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
    let stored = read_all(&setup, "TxTopic", 2).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].properties_map().uniq_key(), Some("TX01"));

    let bogus = setup
        .client
        .end_transaction(pb::EndTransactionRequest {
            topic: resource("TxTopic"),
            message_id: "TX03".into(),
            transaction_id: "not-a-transaction".into(),
            resolution: pb::TransactionResolution::Commit as i32,
            source: pb::TransactionSource::SourceClient as i32,
            trace_context: String::new(),
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(
        bogus.status.map(|s| s.code),
        Some(pb::Code::InvalidTransactionId as i32)
    );
    setup.stop().await;
}

#[tokio::test]
async fn pull_and_offsets_work_over_grpc() {
    use tokio_stream::StreamExt;
    let mut setup = Setup::start().await;
    setup.create_topic("PullTopic", "NORMAL", 1).await;
    for id in ["P1", "P2"] {
        send(
            &mut setup,
            message("PullTopic", id, pb::MessageType::Normal),
        )
        .await;
    }
    let queue = pb::MessageQueue {
        topic: resource("PullTopic"),
        id: 0,
        ..Default::default()
    };
    let end = setup
        .client
        .query_offset(pb::QueryOffsetRequest {
            message_queue: Some(queue.clone()),
            query_offset_policy: pb::QueryOffsetPolicy::End as i32,
            timestamp: None,
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(end.offset, 2);
    let mut stream = setup
        .client
        .pull_message(pb::PullMessageRequest {
            group: resource("G1"),
            message_queue: Some(queue.clone()),
            offset: 0,
            batch_size: 10,
            filter_expression: None,
            long_polling_timeout: None,
        })
        .await
        .expect("rpc ok")
        .into_inner();
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item.expect("item").content.expect("content"));
    }
    use pb::pull_message_response::Content;
    assert!(matches!(&items[0], Content::Status(s) if s.code == 20000));
    let ids: Vec<String> = items
        .iter()
        .filter_map(|c| match c {
            Content::Message(m) => m.system_properties.as_ref().map(|p| p.message_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec!["P1", "P2"]);
    assert!(matches!(items.last(), Some(Content::NextOffset(2))));

    let update = setup
        .client
        .update_offset(pb::UpdateOffsetRequest {
            group: resource("G1"),
            message_queue: Some(queue.clone()),
            offset: 2,
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(update.status.map(|s| s.code), Some(20000));
    let got = setup
        .client
        .get_offset(pb::GetOffsetRequest {
            group: resource("G1"),
            message_queue: Some(queue),
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(got.offset, 2);
    setup.stop().await;
}

fn receive_request(
    group: &str,
    topic: &str,
    invisible_ms: u64,
    poll_ms: u64,
) -> pb::ReceiveMessageRequest {
    let duration = |ms: u64| prost_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    };
    pb::ReceiveMessageRequest {
        group: resource(group),
        message_queue: Some(pb::MessageQueue {
            topic: resource(topic),
            id: 0,
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
    }
}

/// The stream's items in order: statuses, messages and delivery timestamps.
async fn receive(
    setup: &mut Setup,
    request: pb::ReceiveMessageRequest,
) -> Vec<pb::receive_message_response::Content> {
    let mut stream = setup
        .client
        .receive_message(request)
        .await
        .expect("rpc ok")
        .into_inner();
    let mut items = Vec::new();
    while let Some(item) = stream.message().await.expect("stream ok") {
        items.push(item.content.expect("content set"));
    }
    items
}

fn received(items: &[pb::receive_message_response::Content]) -> Vec<pb::Message> {
    use pb::receive_message_response::Content;
    assert!(
        matches!(items.first(), Some(Content::Status(s)) if s.code == pb::Code::Ok as i32),
        "status OK first: {items:?}"
    );
    assert!(
        matches!(items.last(), Some(Content::DeliveryTimestamp(_))),
        "delivery timestamp last: {items:?}"
    );
    items
        .iter()
        .filter_map(|c| match c {
            Content::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn is_not_found(items: &[pb::receive_message_response::Content]) -> bool {
    use pb::receive_message_response::Content;
    items.len() == 1
        && matches!(&items[0], Content::Status(s) if s.code == pb::Code::MessageNotFound as i32)
}

async fn ack(
    setup: &mut Setup,
    group: &str,
    topic: &str,
    m: &pb::Message,
) -> pb::AckMessageResponse {
    let sp = m.system_properties.clone().expect("system properties");
    setup
        .client
        .ack_message(pb::AckMessageRequest {
            group: resource(group),
            topic: resource(topic),
            entries: vec![pb::AckMessageEntry {
                message_id: sp.message_id,
                receipt_handle: sp.receipt_handle.expect("receipt handle"),
                lite_topic: None,
            }],
        })
        .await
        .expect("rpc ok")
        .into_inner()
}

#[tokio::test]
async fn received_messages_carry_every_delivery_field_and_acked_ones_never_return() {
    let mut setup = Setup::start().await;
    setup.create_topic("PopT", "NORMAL", 2).await;
    let sent = send(
        &mut setup,
        message("PopT", "01AABBCC", pb::MessageType::Normal),
    )
    .await;
    assert_eq!(sent.status.expect("status").code, pb::Code::Ok as i32);

    let items = receive(&mut setup, receive_request("PopG", "PopT", 300, 2_000)).await;
    let messages = received(&items);
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.body, b"body of 01AABBCC");
    assert_eq!(
        m.user_properties.get("color").map(String::as_str),
        Some("blue")
    );
    let sp = m.system_properties.as_ref().expect("system properties");
    assert_eq!(sp.message_id, "01AABBCC");
    assert_eq!(sp.tag.as_deref(), Some("TagA"));
    assert_eq!(sp.keys, vec!["k1".to_owned()]);
    assert_eq!(sp.body_encoding, pb::Encoding::Identity as i32);
    let digest = sp.body_digest.as_ref().expect("digest");
    assert_eq!(digest.r#type, pb::DigestType::Crc32 as i32);
    assert_eq!(
        digest.checksum,
        format!("{:08X}", crc32fast::hash(b"body of 01AABBCC"))
    );
    assert!(sp.receipt_handle.as_ref().is_some_and(|h| !h.is_empty()));
    assert_eq!(sp.delivery_attempt, Some(1));
    assert_eq!(sp.queue_offset, Some(0));
    assert!((0..2).contains(&sp.queue_id));
    assert_eq!(
        sp.invisible_duration,
        Some(prost_types::Duration {
            seconds: 0,
            nanos: 300_000_000
        })
    );
    assert!(sp.store_timestamp.is_some());
    assert!(!sp.store_host.is_empty());
    assert!(sp.born_timestamp.is_some());

    let acked = ack(&mut setup, "PopG", "PopT", m).await;
    assert_eq!(acked.status.expect("status").code, pb::Code::Ok as i32);
    assert_eq!(acked.entries.len(), 1);
    assert_eq!(
        acked.entries[0].status.as_ref().expect("entry status").code,
        pb::Code::Ok as i32
    );

    // Long polling well past the invisible time: the acked message does not come back.
    let again = receive(&mut setup, receive_request("PopG", "PopT", 300, 1_000)).await;
    assert!(is_not_found(&again), "{again:?}");
    setup.stop().await;
}

#[tokio::test]
async fn an_unacked_message_is_redelivered_with_attempt_two_after_its_invisible_time() {
    let mut setup = Setup::start().await;
    setup.create_topic("PopR", "NORMAL", 1).await;
    send(
        &mut setup,
        message("PopR", "01DDEEFF", pb::MessageType::Normal),
    )
    .await;
    let first = received(&receive(&mut setup, receive_request("PopRG", "PopR", 200, 2_000)).await);
    assert_eq!(first.len(), 1);
    let first_handle = first[0]
        .system_properties
        .as_ref()
        .and_then(|sp| sp.receipt_handle.clone());

    let second =
        received(&receive(&mut setup, receive_request("PopRG", "PopR", 5_000, 5_000)).await);
    assert_eq!(second.len(), 1);
    let sp = second[0]
        .system_properties
        .as_ref()
        .expect("system properties");
    assert_eq!(sp.message_id, "01DDEEFF");
    assert_eq!(sp.delivery_attempt, Some(2));
    assert_ne!(sp.receipt_handle, first_handle);

    // The first delivery's handle is stale now; the second one acks.
    let stale = ack(&mut setup, "PopRG", "PopR", &first[0]).await;
    assert_eq!(
        stale.entries[0].status.as_ref().expect("entry status").code,
        pb::Code::InvalidReceiptHandle as i32
    );
    let acked = ack(&mut setup, "PopRG", "PopR", &second[0]).await;
    assert_eq!(acked.status.expect("status").code, pb::Code::Ok as i32);
    setup.stop().await;
}

#[tokio::test]
async fn change_invisible_duration_returns_a_new_handle_that_acks() {
    let mut setup = Setup::start().await;
    setup.create_topic("PopC", "NORMAL", 1).await;
    send(
        &mut setup,
        message("PopC", "01CC0001", pb::MessageType::Normal),
    )
    .await;
    let got = received(&receive(&mut setup, receive_request("PopCG", "PopC", 10_000, 2_000)).await);
    assert_eq!(got.len(), 1);
    let sp = got[0].system_properties.clone().expect("system properties");
    let old = sp.receipt_handle.clone().expect("handle");
    let changed = setup
        .client
        .change_invisible_duration(pb::ChangeInvisibleDurationRequest {
            group: resource("PopCG"),
            topic: resource("PopC"),
            receipt_handle: old.clone(),
            invisible_duration: Some(prost_types::Duration {
                seconds: 20,
                nanos: 0,
            }),
            message_id: sp.message_id.clone(),
            lite_topic: None,
            suspend: None,
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(changed.status.expect("status").code, pb::Code::Ok as i32);
    assert!(!changed.receipt_handle.is_empty());
    assert_ne!(changed.receipt_handle, old);

    let mut renewed = got[0].clone();
    if let Some(sp) = renewed.system_properties.as_mut() {
        sp.receipt_handle = Some(changed.receipt_handle);
    }
    let acked = ack(&mut setup, "PopCG", "PopC", &renewed).await;
    assert_eq!(acked.status.expect("status").code, pb::Code::Ok as i32);
    let again = receive(&mut setup, receive_request("PopCG", "PopC", 10_000, 0)).await;
    assert!(is_not_found(&again), "{again:?}");
    setup.stop().await;
}

#[tokio::test]
async fn forward_to_dead_letter_queue_stores_the_message_in_the_group_dlq_and_acks_it() {
    let mut setup = Setup::start().await;
    setup.create_topic("PopD", "NORMAL", 1).await;
    send(
        &mut setup,
        message("PopD", "01DD0001", pb::MessageType::Normal),
    )
    .await;
    let got = received(&receive(&mut setup, receive_request("PopDG", "PopD", 200, 2_000)).await);
    assert_eq!(got.len(), 1);
    let sp = got[0].system_properties.clone().expect("system properties");
    let forwarded = setup
        .client
        .forward_message_to_dead_letter_queue(pb::ForwardMessageToDeadLetterQueueRequest {
            group: resource("PopDG"),
            topic: resource("PopD"),
            receipt_handle: sp.receipt_handle.clone().expect("handle"),
            message_id: sp.message_id.clone(),
            delivery_attempt: 1,
            max_delivery_attempts: 17,
            lite_topic: None,
        })
        .await
        .expect("rpc ok")
        .into_inner();
    assert_eq!(forwarded.status.expect("status").code, pb::Code::Ok as i32);

    let services = setup.services();
    let dlq = services
        .pull(LocalPull {
            group: "dlq-reader".into(),
            topic: "%DLQ%PopDG".into(),
            queue_id: 0,
            offset: 0,
            max_messages: 8,
            expression_type: "TAG".into(),
            expression: "*".into(),
            peer: None,
        })
        .await
        .expect("dlq pull");
    assert_eq!(dlq.messages.len(), 1);
    assert_eq!(
        dlq.messages[0].properties_map().uniq_key(),
        Some("01DD0001")
    );
    // Acked: it does not come back once its invisible time is over.
    let again = receive(&mut setup, receive_request("PopDG", "PopD", 200, 1_000)).await;
    assert!(is_not_found(&again), "{again:?}");
    setup.stop().await;
}
