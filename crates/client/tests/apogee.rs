//! End-to-end tests against a real in-process Apogee name server and broker on loopback:
//! sends (auto-create, ordered, batch, compressed) read back through lite pull consumers,
//! rebalance across two consumers of one group, seek, and committed offsets.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use apogee_broker::{Broker, BrokerConfig, BrokerHandle, StoreOptions};
use apogee_client::{
    ClientConfig, ClientError, ConsumeFromWhere, LitePullConsumer, Message, MessageExt,
    MessageQueue, Producer, SelectByHash, SendStatus,
};
use apogee_namesrv::{NameServer, NameServerHandle, NamesrvConfig};
use apogee_protocol::codes::{request_code, response_code};
use apogee_protocol::header::GetRouteInfoRequestHeader;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{RemotingClient, RemotingConfig};
use tokio::time::Instant;

/// How long a test waits for messages before failing.
const DEADLINE: Duration = Duration::from_secs(20);

struct Cluster {
    ns: NameServerHandle,
    broker: Option<BrokerHandle>,
    ns_addr: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ns = NameServer::start(NamesrvConfig {
            listen_addr: "127.0.0.1:0".into(),
            kv_config_path: dir.path().join("kvConfig.json"),
            ..NamesrvConfig::default()
        })
        .await
        .unwrap();
        let ns_addr = ns.local_addr().to_string();
        let broker = Broker::start(BrokerConfig {
            listen_addr: "127.0.0.1:0".into(),
            broker_ip1: Some("127.0.0.1".into()),
            data_dir: dir.path().join("broker"),
            namesrv_addrs: vec![ns_addr.clone()],
            store: StoreOptions::for_tests(),
            ..BrokerConfig::default()
        })
        .await
        .unwrap();
        let cluster = Cluster {
            ns,
            broker: Some(broker),
            ns_addr,
            _dir: dir,
        };
        cluster.wait_for_route("TBW102").await;
        cluster
    }

    /// Waits until the name server serves `topic`'s route (brokers register asynchronously).
    async fn wait_for_route(&self, topic: &str) {
        let client = RemotingClient::new(RemotingConfig::default());
        let header = GetRouteInfoRequestHeader {
            topic: topic.into(),
            ..Default::default()
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            let request =
                RemotingCommand::request_with_header(request_code::GET_ROUTEINFO_BY_TOPIC, &header);
            if let Ok(r) = client
                .invoke(&self.ns_addr, request, Duration::from_secs(3))
                .await
            {
                if r.code == response_code::SUCCESS {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "route of {topic} never appeared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn config(&self, instance: &str) -> ClientConfig {
        let mut c = ClientConfig::new(&self.ns_addr);
        c.instance_name = instance.to_owned();
        c.client_ip = Some("127.0.0.1".into());
        c
    }

    async fn stop(mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await.unwrap();
        }
        self.ns.shutdown().await;
    }
}

/// Polls until `want` messages matched `keep`, or fails at the deadline.
async fn poll_until(
    consumer: &LitePullConsumer,
    want: usize,
    keep: impl Fn(&MessageExt) -> bool,
) -> Vec<MessageExt> {
    let deadline = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} messages arrived",
            got.len()
        );
        for m in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            if keep(&m) {
                got.push(m);
            }
        }
    }
    got
}

fn body(m: &MessageExt) -> String {
    String::from_utf8_lossy(&m.body).into_owned()
}

/// Creates `topic` (the broker's auto-create gives it the producer's 4 queues) and waits for its
/// route.
async fn create_topic(cluster: &Cluster, producer: &Producer, topic: &str) {
    let r = producer.send(Message::new(topic, "create")).await.unwrap();
    assert_eq!(r.status, SendStatus::SendOk);
    cluster.wait_for_route(topic).await;
}

#[tokio::test]
async fn messages_of_one_key_are_read_back_in_order() {
    let cluster = Cluster::start().await;
    let producer = Producer::builder()
        .group("ItOrderProducer")
        .client_config(cluster.config("it-order"))
        .start()
        .await
        .unwrap();
    let mut sent = HashMap::new();
    for seq in 0..30 {
        let key = format!("key-{}", seq % 3);
        let r = producer
            .send_with_selector(
                Message::new("ItOrder", format!("{key}:{seq}")).with_tags("T"),
                &SelectByHash,
                key.as_str(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, SendStatus::SendOk);
        assert_eq!(r.offset_msg_id.len(), 32);
        sent.insert(r.msg_id.clone(), (key, seq));
    }
    cluster.wait_for_route("ItOrder").await;
    let consumer = LitePullConsumer::builder()
        .group("ItOrderGroup")
        .client_config(cluster.config("it-order"))
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .subscribe("ItOrder", "T")
        .start()
        .await
        .unwrap();
    // One instance for producer and consumer.
    assert_eq!(
        producer.client_instance().client_id(),
        consumer.client_instance().client_id()
    );
    let got = poll_until(&consumer, 30, |_| true).await;
    let mut last_seq: HashMap<String, i32> = HashMap::new();
    let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for m in &got {
        let (key, seq) = sent
            .get(&m.msg_id)
            .expect("a message we sent, by its UNIQ_KEY")
            .clone();
        assert_eq!(body(m), format!("{key}:{seq}"));
        assert_eq!(m.topic, "ItOrder");
        assert_eq!(m.tags(), Some("T"));
        if let Some(prev) = last_seq.insert(key.clone(), seq) {
            assert!(prev < seq, "{key}: {prev} then {seq}");
        }
        if let Some(prev) = last_offset.insert(m.queue_id, m.queue_offset) {
            assert!(
                prev < m.queue_offset,
                "queue {}: {prev} then {}",
                m.queue_id,
                m.queue_offset
            );
        }
    }
    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.stop().await;
}

#[tokio::test]
async fn two_lite_consumers_of_one_group_split_the_queues() {
    let cluster = Cluster::start().await;
    let producer = Producer::builder()
        .client_config(cluster.config("split-p"))
        .start()
        .await
        .unwrap();
    create_topic(&cluster, &producer, "ItSplit").await;
    let start = |instance: &str| {
        LitePullConsumer::builder()
            .group("SplitGroup")
            .client_config(cluster.config(instance))
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .subscribe("ItSplit", "*")
            .start()
    };
    let c1 = start("split-1").await.unwrap();
    let c2 = start("split-2").await.unwrap();
    assert_ne!(
        c1.client_instance().client_id(),
        c2.client_instance().client_id()
    );
    // c2 saw both members when it started; c1 learns of c2 at its next rebalance.
    c1.rebalance_now().await;
    c2.rebalance_now().await;
    let a1: BTreeSet<MessageQueue> = c1.assignment().into_iter().collect();
    let a2: BTreeSet<MessageQueue> = c2.assignment().into_iter().collect();
    assert_eq!(a1.len(), 2, "{a1:?}");
    assert_eq!(a2.len(), 2, "{a2:?}");
    assert!(a1.is_disjoint(&a2));
    let queues = producer.fetch_publish_queues("ItSplit").await.unwrap();
    assert_eq!(queues.len(), 4);
    for q in &queues {
        assert!(a1.contains(q) || a2.contains(q), "{q} unassigned");
    }

    for q in &queues {
        for i in 0..2 {
            producer
                .send_to_queue(Message::new("ItSplit", format!("r2-{}-{i}", q.queue_id)), q)
                .await
                .unwrap();
        }
    }
    let is_round2 = |m: &MessageExt| body(m).starts_with("r2-");
    let got1 = poll_until(&c1, 4, is_round2).await;
    let got2 = poll_until(&c2, 4, is_round2).await;
    for m in &got1 {
        assert!(
            a1.contains(&m.queue()),
            "c1 got {} from a queue it does not hold",
            body(m)
        );
    }
    for m in &got2 {
        assert!(
            a2.contains(&m.queue()),
            "c2 got {} from a queue it does not hold",
            body(m)
        );
    }
    let all: BTreeSet<String> = got1.iter().chain(&got2).map(body).collect();
    assert_eq!(all.len(), 8);

    c1.shutdown().await;
    // The survivor takes every queue at its next rebalance.
    c2.rebalance_now().await;
    assert_eq!(c2.assignment().len(), 4);
    c2.shutdown().await;
    producer.shutdown().await;
    cluster.stop().await;
}

#[tokio::test]
async fn seek_moves_an_assigned_queue_back_and_forth() {
    let cluster = Cluster::start().await;
    let producer = Producer::builder()
        .client_config(cluster.config("seek"))
        .start()
        .await
        .unwrap();
    create_topic(&cluster, &producer, "ItSeek").await;
    let q0 = MessageQueue::new("ItSeek", "broker-a", 0);
    for i in 0..6 {
        producer
            .send_to_queue(Message::new("ItSeek", format!("s{i}")), &q0)
            .await
            .unwrap();
    }
    let consumer = LitePullConsumer::builder()
        .group("SeekGroup")
        .client_config(cluster.config("seek"))
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .auto_commit(false)
        .start()
        .await
        .unwrap();
    consumer.assign([q0.clone()]).await.unwrap();
    let max = consumer.client_instance().max_offset(&q0).await.unwrap();
    assert!(max >= 6);
    let all = poll_until(&consumer, max as usize, |_| true).await;
    let offsets: Vec<i64> = all.iter().map(|m| m.queue_offset).collect();
    assert_eq!(offsets, (0..max).collect::<Vec<_>>());

    consumer.seek(&q0, max - 3).await.unwrap();
    let again = poll_until(&consumer, 3, |_| true).await;
    assert_eq!(
        again.iter().map(|m| m.queue_offset).collect::<Vec<_>>(),
        vec![max - 3, max - 2, max - 1]
    );

    consumer.seek_to_begin(&q0).await.unwrap();
    let first = poll_until(&consumer, 1, |_| true).await;
    assert_eq!(first[0].queue_offset, 0);

    consumer.seek_to_end(&q0).await.unwrap();
    assert!(consumer
        .poll(Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());

    let out_of_range = consumer.seek(&q0, max + 10).await.unwrap_err();
    assert!(
        matches!(out_of_range, ClientError::InvalidArgument(_)),
        "{out_of_range:?}"
    );
    let not_mine = consumer
        .seek(&MessageQueue::new("ItSeek", "broker-a", 1), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(not_mine, ClientError::IllegalState(_)),
        "{not_mine:?}"
    );
    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.stop().await;
}

#[tokio::test]
async fn committed_offsets_survive_the_consumer_and_a_new_one_resumes_there() {
    let cluster = Cluster::start().await;
    let producer = Producer::builder()
        .client_config(cluster.config("commit-p"))
        .start()
        .await
        .unwrap();
    create_topic(&cluster, &producer, "ItCommit").await;
    let q0 = MessageQueue::new("ItCommit", "broker-a", 0);
    for i in 0..4 {
        producer
            .send_to_queue(Message::new("ItCommit", format!("first-{i}")), &q0)
            .await
            .unwrap();
    }
    let max = producer.client_instance().max_offset(&q0).await.unwrap();
    let start = |instance: &str| {
        LitePullConsumer::builder()
            .group("CommitGroup")
            .client_config(cluster.config(instance))
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .auto_commit(false)
            .start()
    };
    let a = start("commit-a").await.unwrap();
    a.assign([q0.clone()]).await.unwrap();
    let got = poll_until(&a, max as usize, |_| true).await;
    assert_eq!(got.last().unwrap().queue_offset, max - 1);
    a.commit_sync().await.unwrap();
    assert_eq!(a.committed(&q0).await.unwrap(), Some(max));
    a.shutdown().await;

    producer
        .send_to_queue(Message::new("ItCommit", "after"), &q0)
        .await
        .unwrap();
    let b = start("commit-b").await.unwrap();
    b.assign([q0.clone()]).await.unwrap();
    let next = poll_until(&b, 1, |_| true).await;
    assert_eq!(next[0].queue_offset, max);
    assert_eq!(body(&next[0]), "after");
    b.shutdown().await;
    producer.shutdown().await;
    cluster.stop().await;
}

#[tokio::test]
async fn batches_and_compressed_bodies_round_trip_through_the_broker() {
    let cluster = Cluster::start().await;
    let producer = Producer::builder()
        .client_config(cluster.config("batch"))
        .start()
        .await
        .unwrap();
    create_topic(&cluster, &producer, "ItBatch").await;
    let batch = producer
        .send_batch((0..3).map(|i| Message::new("ItBatch", format!("batch-{i}")).with_tags("B")))
        .await
        .unwrap();
    let batch_ids: Vec<String> = batch.msg_id.split(',').map(str::to_owned).collect();
    assert_eq!(batch_ids.len(), 3);
    let big: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let compressed = producer
        .send(Message::new("ItBatch", big.clone()).with_tags("Z"))
        .await
        .unwrap();

    let consumer = LitePullConsumer::builder()
        .group("BatchGroup")
        .client_config(cluster.config("batch"))
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .subscribe("ItBatch", "B || Z")
        .start()
        .await
        .unwrap();
    let got = poll_until(&consumer, 4, |_| true).await;
    let by_id: HashMap<&str, &MessageExt> = got.iter().map(|m| (m.msg_id.as_str(), m)).collect();
    for (i, id) in batch_ids.iter().enumerate() {
        assert_eq!(body(by_id[id.as_str()]), format!("batch-{i}"));
    }
    let z = by_id[compressed.msg_id.as_str()];
    assert_eq!(body(z), big);
    // The "create" message has no tag and is filtered out by the subscription.
    assert!(got.iter().all(|m| body(m) != "create"));
    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_broadcasting_consumer_reads_every_queue_and_keeps_offsets_in_a_local_file() {
    let cluster = Cluster::start().await;
    let producer = Producer::builder()
        .client_config(cluster.config("broadcast-p"))
        .start()
        .await
        .unwrap();
    create_topic(&cluster, &producer, "ItBroadcast").await;
    let offsets_dir = tempfile::tempdir().unwrap();
    let start = |instance: &str| {
        LitePullConsumer::builder()
            .group("BroadcastGroup")
            .client_config(cluster.config(instance))
            .message_model(apogee_client::MessageModel::Broadcasting)
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .local_offset_store_dir(offsets_dir.path())
            .subscribe("ItBroadcast", "*")
            .start()
    };
    let c1 = start("bc-1").await.unwrap();
    let c2 = start("bc-2").await.unwrap();
    assert_eq!(c1.assignment().len(), 4);
    assert_eq!(c2.assignment().len(), 4);
    for q in producer.fetch_publish_queues("ItBroadcast").await.unwrap() {
        producer
            .send_to_queue(
                Message::new("ItBroadcast", format!("all-{}", q.queue_id)),
                &q,
            )
            .await
            .unwrap();
    }
    let wanted = |m: &MessageExt| body(m).starts_with("all-");
    assert_eq!(poll_until(&c1, 4, wanted).await.len(), 4);
    assert_eq!(poll_until(&c2, 4, wanted).await.len(), 4);
    c1.commit_sync().await.unwrap();
    let file = offsets_dir
        .path()
        .join(c1.client_instance().client_id())
        .join("BroadcastGroup")
        .join("offsets.json");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with(r#"{"offsetTable":{{"brokerName":"broker-a""#),
        "{text}"
    );
    c1.shutdown().await;
    c2.shutdown().await;
    producer.shutdown().await;
    cluster.stop().await;
}

#[tokio::test]
async fn queue_locks_are_exclusive_between_clients_until_released() {
    let cluster = Cluster::start().await;
    let producer = Producer::builder()
        .client_config(cluster.config("lock-p"))
        .start()
        .await
        .unwrap();
    create_topic(&cluster, &producer, "ItLock").await;
    let q0 = MessageQueue::new("ItLock", "broker-a", 0);
    let start = |instance: &str| {
        LitePullConsumer::builder()
            .group("LockGroup")
            .client_config(cluster.config(instance))
            .start()
    };
    let a = start("lock-a").await.unwrap();
    let b = start("lock-b").await.unwrap();
    a.assign([q0.clone()]).await.unwrap();
    b.assign([q0.clone()]).await.unwrap();
    let want: BTreeSet<MessageQueue> = [q0.clone()].into();
    let ia = a.client_instance();
    let ib = b.client_instance();
    assert_eq!(
        ia.lock_batch_mq("broker-a", "LockGroup", want.clone())
            .await
            .unwrap(),
        want
    );
    assert!(ib
        .lock_batch_mq("broker-a", "LockGroup", want.clone())
        .await
        .unwrap()
        .is_empty());
    ia.unlock_batch_mq("broker-a", "LockGroup", want.clone(), false)
        .await
        .unwrap();
    assert_eq!(
        ib.lock_batch_mq("broker-a", "LockGroup", want.clone())
            .await
            .unwrap(),
        want
    );
    a.shutdown().await;
    b.shutdown().await;
    producer.shutdown().await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_client_speaking_binary_headers_sends_and_consumes_with_properties_intact() {
    let cluster = Cluster::start().await;
    let binary = |name: &str| {
        let mut c = cluster.config(name);
        c.remoting.serialize_type = apogee_protocol::SerializeType::RocketMq;
        c
    };
    let producer = Producer::builder()
        .client_config(binary("binary"))
        .start()
        .await
        .unwrap();
    create_topic(&cluster, &producer, "ItBinary").await;
    let sent = producer
        .send(
            Message::new("ItBinary", "über-body")
                .with_tags("T")
                .with_keys(["k1", "k2"])
                .with_property("color", "grün"),
        )
        .await
        .unwrap();
    let batch = producer
        .send_batch((0..3).map(|i| Message::new("ItBinary", format!("b-{i}")).with_tags("T")))
        .await
        .unwrap();
    assert_eq!(batch.msg_id.split(',').count(), 3);
    let consumer = LitePullConsumer::builder()
        .group("BinaryGroup")
        .client_config(binary("binary"))
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .subscribe("ItBinary", "T")
        .start()
        .await
        .unwrap();
    let got = poll_until(&consumer, 4, |_| true).await;
    let one = got
        .iter()
        .find(|m| m.msg_id == sent.msg_id)
        .expect("the single message");
    assert_eq!(body(one), "über-body");
    assert_eq!(one.properties.get("color"), Some("grün"));
    assert_eq!(one.properties.get("KEYS"), Some("k1 k2"));
    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.stop().await;
}
