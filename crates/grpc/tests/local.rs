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
use tonic::transport::Channel;

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
            store: StoreOptions {
                commitlog_segment_bytes: Some(4 * 1024 * 1024),
                consume_queue_entries_per_file: Some(1024),
                index_slots: Some(1024),
                index_entries: Some(4096),
                ..StoreOptions::default()
            },
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

fn resource(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    })
}

fn message(topic: &str, id: &str, kind: pb::MessageType) -> pb::Message {
    pb::Message {
        topic: resource(topic),
        user_properties: [("color".to_owned(), "blue".to_owned())].into(),
        system_properties: Some(pb::SystemProperties {
            tag: Some("TagA".into()),
            keys: vec!["k1".into()],
            message_id: id.into(),
            body_encoding: pb::Encoding::Identity as i32,
            message_type: kind as i32,
            ..Default::default()
        }),
        body: format!("body of {id}").into_bytes(),
    }
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
