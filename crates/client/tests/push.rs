//! Push consumer end to end, against a real in-process Apogee name server and broker on
//! loopback: orderly and concurrent listeners, the consume pool bound, redelivery through the
//! retry topic, the dead-letter queue of orderly consumers, flow control, broadcasting, and
//! queue handover when a consumer leaves or dies.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apogee_broker::{Broker, BrokerConfig, BrokerHandle, StoreOptions};
use apogee_client::consumer::push::ListenerFuture;
use apogee_client::{
    ClientConfig, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere,
    ConsumeOrderlyContext, ConsumeOrderlyStatus, LitePullConsumer, Message, MessageExt,
    MessageListenerConcurrently, MessageModel, MessageQueue, Producer, PushConsumer,
    PushConsumerBuilder, SendStatus,
};
use apogee_namesrv::{NameServer, NameServerHandle, NamesrvConfig};
use apogee_protocol::codes::{request_code, response_code};
use apogee_protocol::header::GetRouteInfoRequestHeader;
use apogee_protocol::message::keys;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{RemotingClient, RemotingConfig};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a test waits for anything before failing.
const DEADLINE: Duration = Duration::from_secs(30);

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

    /// A client of its own (`instance`), with short rebalance and commit intervals.
    fn config(&self, instance: &str) -> ClientConfig {
        let mut c = ClientConfig::new(&self.ns_addr);
        c.instance_name = instance.to_owned();
        c.client_ip = Some("127.0.0.1".into());
        c.rebalance_interval_ms = 1_000;
        c.persist_consumer_offset_interval_ms = 200;
        c.heartbeat_interval_ms = 1_000;
        c.poll_name_server_interval_ms = 1_000;
        c
    }

    async fn producer(&self, instance: &str) -> Producer {
        Producer::builder()
            .client_config(self.config(instance))
            .start()
            .await
            .unwrap()
    }

    /// A push consumer builder of `group` on its own client.
    fn push(&self, instance: &str, group: &str) -> PushConsumerBuilder {
        PushConsumer::builder()
            .group(group)
            .client_config(self.config(instance))
            .pull_delay_on_exception(Duration::from_millis(200))
    }

    async fn stop(mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await.unwrap();
        }
        self.ns.shutdown().await;
    }
}

/// Creates `topic` with 4 queues (the producer's auto-create default) and returns them.
async fn create_topic(cluster: &Cluster, producer: &Producer, topic: &str) -> Vec<MessageQueue> {
    let r = producer.send(Message::new(topic, "create")).await.unwrap();
    assert_eq!(r.status, SendStatus::SendOk);
    cluster.wait_for_route(topic).await;
    let queues = producer.fetch_publish_queues(topic).await.unwrap();
    assert_eq!(queues.len(), 4);
    queues
}

fn body(m: &MessageExt) -> String {
    String::from_utf8_lossy(&m.body).into_owned()
}

/// Receives from `rx` into `got` until `done(got)`; fails at the deadline.
async fn collect_until<T>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    got: &mut Vec<T>,
    what: &str,
    mut done: impl FnMut(&[T]) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    while !done(got) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(item)) => got.push(item),
            Ok(None) => panic!("{what}: channel closed"),
            Err(_) => panic!("{what}: only {} items before the deadline", got.len()),
        }
    }
}

/// Waits until `check` holds, looking every 20 ms; fails at the deadline.
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A concurrent listener that reports every message it acknowledges.
fn reporting(
    tx: mpsc::UnboundedSender<MessageExt>,
) -> impl Fn(&[MessageExt], &mut ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus
       + Send
       + Sync
       + 'static {
    move |msgs: &[MessageExt], _ctx: &mut ConsumeConcurrentlyContext| {
        for m in msgs {
            let _ = tx.send(m.clone());
        }
        ConsumeConcurrentlyStatus::ConsumeSuccess
    }
}

/// An orderly listener that records, per queue, every call's offsets and whether two calls of
/// one queue ever overlapped; it suspends the message with body `suspend_body` once.
struct OrderChecker {
    tx: mpsc::UnboundedSender<MessageExt>,
    active: Mutex<HashSet<i32>>,
    overlaps: AtomicUsize,
    suspend_body: String,
    suspended: Mutex<HashSet<String>>,
}

impl apogee_client::MessageListenerOrderly for OrderChecker {
    fn consume_message<'a>(
        &'a self,
        msgs: &'a [MessageExt],
        ctx: &'a mut ConsumeOrderlyContext,
    ) -> ListenerFuture<'a, ConsumeOrderlyStatus> {
        Box::pin(async move {
            let queue = ctx.message_queue().queue_id;
            if !self.active.lock().unwrap().insert(queue) {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            // Give other calls of the same queue a chance to overlap, were that possible.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let mut status = ConsumeOrderlyStatus::Success;
            for m in msgs {
                if body(m) == self.suspend_body
                    && self.suspended.lock().unwrap().insert(m.msg_id.clone())
                {
                    ctx.suspend_current_queue_time_ms = 50;
                    status = ConsumeOrderlyStatus::SuspendCurrentQueueAMoment;
                }
            }
            if status == ConsumeOrderlyStatus::Success {
                for m in msgs {
                    let _ = self.tx.send(m.clone());
                }
            }
            self.active.lock().unwrap().remove(&queue);
            status
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orderly_listener_sees_each_queue_in_offset_order_and_every_message_once() {
    let cluster = Cluster::start().await;
    let producer = cluster.producer("ord-p").await;
    let queues = create_topic(&cluster, &producer, "ItPushOrder").await;
    let mut sent = HashMap::new();
    for i in 0..60 {
        let q = &queues[i % queues.len()];
        let r = producer
            .send_to_queue(Message::new("ItPushOrder", format!("m{i}")), q)
            .await
            .unwrap();
        sent.insert(r.msg_id, r.queue_offset);
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let checker = Arc::new(OrderChecker {
        tx,
        active: Mutex::new(HashSet::new()),
        overlaps: AtomicUsize::new(0),
        suspend_body: "m21".into(),
        suspended: Mutex::new(HashSet::new()),
    });
    let consumer = cluster
        .push("ord-c", "PushOrderGroup")
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .consume_thread_max(4)
        .consume_thread_min(4)
        .consume_message_batch_max_size(2)
        .subscribe("ItPushOrder", "*")
        .register_listener(apogee_client::MessageListener::Orderly(checker.clone()))
        .start()
        .await
        .unwrap();
    let mut got = Vec::new();
    collect_until(&mut rx, &mut got, "orderly messages", |g| {
        g.iter().filter(|m| sent.contains_key(&m.msg_id)).count() >= sent.len()
    })
    .await;

    let mut per_queue: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for m in &got {
        assert_eq!(m.topic, "ItPushOrder");
        per_queue
            .entry(m.queue_id)
            .or_default()
            .push(m.queue_offset);
        assert!(seen.insert(m.msg_id.clone()), "{} delivered twice", body(m));
        if body(m) == "m21" {
            assert_eq!(
                m.reconsume_times, 1,
                "the suspended message comes back once"
            );
        }
    }
    assert_eq!(per_queue.len(), 4);
    for (queue, offsets) in &per_queue {
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "queue {queue} out of order: {offsets:?}"
        );
    }
    for (id, offset) in &sent {
        assert!(
            seen.contains(id),
            "message at offset {offset} never arrived"
        );
    }
    assert_eq!(checker.overlaps.load(Ordering::SeqCst), 0);
    assert!(consumer.queue_stats().iter().all(|s| s.locked));
    consumer.shutdown().await;

    // The shutdown committed every queue's offset and released the locks.
    let instance = producer.client_instance();
    for q in &queues {
        let max = instance.max_offset(q).await.unwrap();
        let committed = instance
            .query_consumer_offset("PushOrderGroup", q)
            .await
            .unwrap();
        assert_eq!(committed, Some(max), "{q}");
    }
    let others = instance
        .lock_batch_mq(
            "broker-a",
            "PushOrderGroup",
            queues.iter().cloned().collect(),
        )
        .await
        .unwrap();
    assert_eq!(others.len(), 4, "locks released at shutdown");
    producer.shutdown().await;
    cluster.stop().await;
}

/// A concurrent listener that counts how many of its calls run at once.
struct Gauge {
    running: AtomicUsize,
    max_running: AtomicUsize,
    tx: mpsc::UnboundedSender<MessageExt>,
}

impl MessageListenerConcurrently for Gauge {
    fn consume_message<'a>(
        &'a self,
        msgs: &'a [MessageExt],
        _ctx: &'a mut ConsumeConcurrentlyContext,
    ) -> ListenerFuture<'a, ConsumeConcurrentlyStatus> {
        Box::pin(async move {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            for m in msgs {
                let _ = self.tx.send(m.clone());
            }
            ConsumeConcurrentlyStatus::ConsumeSuccess
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_listener_calls_never_exceed_the_consume_pool() {
    let cluster = Cluster::start().await;
    let producer = cluster.producer("pool-p").await;
    let queues = create_topic(&cluster, &producer, "ItPushPool").await;
    for i in 0..80 {
        producer
            .send_to_queue(Message::new("ItPushPool", format!("p{i}")), &queues[i % 4])
            .await
            .unwrap();
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let gauge = Arc::new(Gauge {
        running: AtomicUsize::new(0),
        max_running: AtomicUsize::new(0),
        tx,
    });
    let consumer = cluster
        .push("pool-c", "PushPoolGroup")
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .consume_thread_min(3)
        .consume_thread_max(3)
        .subscribe("ItPushPool", "*")
        .register_listener(apogee_client::MessageListener::Concurrently(gauge.clone()))
        .start()
        .await
        .unwrap();
    let mut got = Vec::new();
    collect_until(&mut rx, &mut got, "pool messages", |g| {
        g.iter().filter(|m| body(m).starts_with('p')).count() >= 80
    })
    .await;
    assert_eq!(
        gauge.max_running.load(Ordering::SeqCst),
        3,
        "the pool runs up to, and never more than, 3 calls at once"
    );
    consumer.shutdown().await;
    let instance = producer.client_instance();
    for q in &queues {
        assert_eq!(
            instance
                .query_consumer_offset("PushPoolGroup", q)
                .await
                .unwrap(),
            Some(instance.max_offset(q).await.unwrap()),
            "{q} committed at shutdown"
        );
    }
    producer.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconsume_later_redelivers_through_the_retry_topic() {
    let cluster = Cluster::start().await;
    let producer = cluster.producer("retry-p").await;
    create_topic(&cluster, &producer, "ItPushRetry").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = cluster
        .push("retry-c", "PushRetryGroup")
        .subscribe("ItPushRetry", "TagR")
        .register_concurrently(
            move |msgs: &[MessageExt], ctx: &mut ConsumeConcurrentlyContext| {
                for m in msgs {
                    let _ = tx.send(m.clone());
                }
                if msgs.iter().any(|m| m.reconsume_times == 0) {
                    // 1 s if the broker handles the send-back itself.
                    ctx.delay_level_when_next_consume = 1;
                    ConsumeConcurrentlyStatus::ReconsumeLater
                } else {
                    ConsumeConcurrentlyStatus::ConsumeSuccess
                }
            },
        )
        .start()
        .await
        .unwrap();
    // The retry topic is created by the group's first heartbeat and subscribed automatically.
    cluster.wait_for_route("%RETRY%PushRetryGroup").await;
    wait_until("the consumer holds the retry queue", || {
        consumer
            .assignment()
            .iter()
            .any(|q| q.topic == "%RETRY%PushRetryGroup")
            && consumer.assignment().len() == 5
    })
    .await;
    let mut sent = HashMap::new();
    for i in 0..5 {
        let r = producer
            .send(Message::new("ItPushRetry", format!("r{i}")).with_tags("TagR"))
            .await
            .unwrap();
        sent.insert(r.msg_id, format!("r{i}"));
    }
    let mut got = Vec::new();
    collect_until(&mut rx, &mut got, "redeliveries", |g| {
        g.iter().filter(|m| m.reconsume_times == 1).count() >= sent.len()
    })
    .await;
    for (id, text) in &sent {
        let first: Vec<&MessageExt> = got
            .iter()
            .filter(|m| &m.msg_id == id && m.reconsume_times == 0)
            .collect();
        let again: Vec<&MessageExt> = got
            .iter()
            .filter(|m| &m.msg_id == id && m.reconsume_times == 1)
            .collect();
        assert_eq!(first.len(), 1, "{text} first delivery");
        assert_eq!(again.len(), 1, "{text} redelivery");
        let again = again[0];
        assert_eq!(again.topic, "ItPushRetry", "real topic restored");
        assert_eq!(again.property(keys::RETRY_TOPIC), Some("ItPushRetry"));
        assert_eq!(again.tags(), Some("TagR"));
        assert_eq!(&body(again), text);
        assert!(!again.offset_msg_id.is_empty());
        assert_ne!(again.offset_msg_id, first[0].offset_msg_id, "a new record");
    }
    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderly_message_past_its_reconsume_limit_goes_to_the_dead_letter_queue() {
    let cluster = Cluster::start().await;
    let producer = cluster.producer("dlq-p").await;
    let queues = create_topic(&cluster, &producer, "ItPushDlq").await;
    let q0 = queues[0].clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = cluster
        .push("dlq-c", "PushDlqGroup")
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .max_reconsume_times(2)
        .suspend_current_queue_time(Duration::from_millis(20))
        .subscribe("ItPushDlq", "*")
        .register_orderly(
            move |msgs: &[MessageExt], _ctx: &mut ConsumeOrderlyContext| {
                for m in msgs {
                    let _ = tx.send(m.clone());
                }
                if msgs.iter().any(|m| body(m) == "poison") {
                    ConsumeOrderlyStatus::SuspendCurrentQueueAMoment
                } else {
                    ConsumeOrderlyStatus::Success
                }
            },
        )
        .start()
        .await
        .unwrap();
    let poison = producer
        .send_to_queue(Message::new("ItPushDlq", "poison"), &q0)
        .await
        .unwrap();
    producer
        .send_to_queue(Message::new("ItPushDlq", "after"), &q0)
        .await
        .unwrap();
    let mut got = Vec::new();
    collect_until(&mut rx, &mut got, "orderly deliveries", |g| {
        g.iter().any(|m| body(m) == "after")
    })
    .await;
    let tries: Vec<i32> = got
        .iter()
        .filter(|m| body(m) == "poison")
        .map(|m| m.reconsume_times)
        .collect();
    assert_eq!(tries, vec![0, 1, 2], "delivered until the limit, in place");

    // The message now sits in the group's dead-letter queue.
    cluster.wait_for_route("%DLQ%PushDlqGroup").await;
    let dlq = LitePullConsumer::builder()
        .group("PushDlqReader")
        .client_config(cluster.config("dlq-r"))
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .start()
        .await
        .unwrap();
    dlq.assign([MessageQueue::new("%DLQ%PushDlqGroup", "broker-a", 0)])
        .await
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let dead = loop {
        let batch = dlq.poll(Duration::from_millis(500)).await.unwrap();
        if let Some(m) = batch.into_iter().find(|m| m.msg_id == poison.msg_id) {
            break m;
        }
        assert!(Instant::now() < deadline, "poison never reached the DLQ");
    };
    assert_eq!(body(&dead), "poison");
    assert_eq!(dead.property(keys::RETRY_TOPIC), Some("ItPushDlq"));
    dlq.shutdown().await;
    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.stop().await;
}

/// A concurrent listener that is slow, so that the cache fills up.
struct Slow {
    tx: mpsc::UnboundedSender<MessageExt>,
}

impl MessageListenerConcurrently for Slow {
    fn consume_message<'a>(
        &'a self,
        msgs: &'a [MessageExt],
        _ctx: &'a mut ConsumeConcurrentlyContext,
    ) -> ListenerFuture<'a, ConsumeConcurrentlyStatus> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            for m in msgs {
                let _ = self.tx.send(m.clone());
            }
            ConsumeConcurrentlyStatus::ConsumeSuccess
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_holds_pulling_while_the_cache_is_full() {
    let cluster = Cluster::start().await;
    let producer = cluster.producer("flow-p").await;
    let queues = create_topic(&cluster, &producer, "ItPushFlow").await;
    let q0 = queues[0].clone();
    for i in 0..150 {
        producer
            .send_to_queue(Message::new("ItPushFlow", format!("f{i}")), &q0)
            .await
            .unwrap();
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    const THRESHOLD: usize = 10;
    const BATCH: i32 = 4;
    let consumer = cluster
        .push("flow-c", "PushFlowGroup")
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .consume_thread_min(1)
        .consume_thread_max(1)
        .pull_threshold_for_queue(THRESHOLD)
        .pull_batch_size(BATCH)
        .subscribe("ItPushFlow", "*")
        .register_concurrently(Slow { tx })
        .start()
        .await
        .unwrap();
    let mut got = Vec::new();
    collect_until(&mut rx, &mut got, "slow consumption", |g| {
        g.iter().filter(|m| body(m).starts_with('f')).count() >= 150
    })
    .await;
    let stats = consumer
        .queue_stats()
        .into_iter()
        .find(|s| s.queue == q0)
        .expect("queue 0 held");
    assert!(
        stats.max_cached_msg_count <= THRESHOLD + BATCH as usize,
        "cache grew to {}",
        stats.max_cached_msg_count
    );
    assert!(stats.max_cached_msg_count > THRESHOLD, "{stats:?}");
    assert!(stats.flow_control_times > 0, "{stats:?}");
    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasting_delivers_every_message_to_every_consumer() {
    let cluster = Cluster::start().await;
    let producer = cluster.producer("bc-p").await;
    let queues = create_topic(&cluster, &producer, "ItPushBroadcast").await;
    let offsets_dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, MessageExt)>();
    let mut consumers = Vec::new();
    for n in 0..2 {
        let tx = tx.clone();
        let c = cluster
            .push(&format!("bc-{n}"), "PushBroadcastGroup")
            .message_model(MessageModel::Broadcasting)
            .local_offset_store_dir(offsets_dir.path())
            .subscribe("ItPushBroadcast", "*")
            .register_concurrently(
                move |msgs: &[MessageExt], _ctx: &mut ConsumeConcurrentlyContext| {
                    for m in msgs {
                        let _ = tx.send((n, m.clone()));
                    }
                    ConsumeConcurrentlyStatus::ConsumeSuccess
                },
            )
            .start()
            .await
            .unwrap();
        assert_eq!(c.assignment().len(), 4, "broadcasting holds every queue");
        consumers.push(c);
    }
    // New consumers start at the end of each queue: probe every queue until both consumers
    // have seen a probe of each, so that they are all pulling.
    let mut probed: HashSet<(usize, i32)> = HashSet::new();
    let deadline = Instant::now() + DEADLINE;
    while probed.len() < 8 {
        assert!(
            Instant::now() < deadline,
            "consumers never all pulling: {probed:?}"
        );
        for q in &queues {
            producer
                .send_to_queue(Message::new("ItPushBroadcast", "probe"), q)
                .await
                .unwrap();
        }
        let round_end = Instant::now() + Duration::from_millis(300);
        while let Ok(Some((n, m))) = tokio::time::timeout_at(round_end, rx.recv()).await {
            probed.insert((n, m.queue_id));
        }
    }
    let mut sent = BTreeSet::new();
    for i in 0..20 {
        let r = producer
            .send(Message::new("ItPushBroadcast", format!("b{i}")))
            .await
            .unwrap();
        sent.insert(r.msg_id);
    }
    let mut got = Vec::new();
    collect_until(&mut rx, &mut got, "broadcast messages", |g| {
        (0..2).all(|n| {
            g.iter()
                .filter(|(c, m)| *c == n && sent.contains(&m.msg_id))
                .count()
                >= sent.len()
        })
    })
    .await;
    for n in 0..2 {
        let ids: BTreeSet<String> = got
            .iter()
            .filter(|(c, m)| *c == n && sent.contains(&m.msg_id))
            .map(|(_, m)| m.msg_id.clone())
            .collect();
        assert_eq!(ids, sent, "consumer {n}");
    }
    let first_id = consumers[0].client_instance().client_id().to_owned();
    for c in &consumers {
        c.shutdown().await;
    }
    // Offsets went to the local file, not to the broker.
    let file = offsets_dir
        .path()
        .join(first_id)
        .join("PushBroadcastGroup")
        .join("offsets.json");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(r#""topic":"ItPushBroadcast""#), "{text}");
    // (A broker answers 0 for a group without offsets on a queue that starts at 0.)
    let on_broker = producer
        .client_instance()
        .query_consumer_offset("PushBroadcastGroup", &queues[0])
        .await
        .unwrap();
    assert!(matches!(on_broker, None | Some(0)), "{on_broker:?}");
    producer.shutdown().await;
    cluster.stop().await;
}

/// Starts a concurrent consumer of `group` reporting `(n, message)`.
async fn reporting_consumer(
    cluster: &Cluster,
    instance: &str,
    group: &str,
    topic: &str,
    n: usize,
    tx: mpsc::UnboundedSender<(usize, MessageExt)>,
) -> PushConsumer {
    let (inner_tx, mut inner_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(m) = inner_rx.recv().await {
            if tx.send((n, m)).is_err() {
                return;
            }
        }
    });
    cluster
        .push(instance, group)
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .subscribe(topic, "*")
        .register_concurrently(reporting(inner_tx))
        .start()
        .await
        .unwrap()
}

async fn wait_for_split(a: &PushConsumer, b: &PushConsumer) {
    wait_until("the two consumers split the topic's queues", || {
        let qa: Vec<MessageQueue> = a
            .assignment()
            .into_iter()
            .filter(|q| !q.topic.starts_with('%'))
            .collect();
        let qb: Vec<MessageQueue> = b
            .assignment()
            .into_iter()
            .filter(|q| !q.topic.starts_with('%'))
            .collect();
        qa.len() == 2 && qb.len() == 2 && qa.iter().all(|q| !qb.contains(q))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_leaving_mid_stream_hands_its_queues_over_without_losing_messages() {
    let cluster = Cluster::start().await;
    let producer = cluster.producer("leave-p").await;
    create_topic(&cluster, &producer, "ItPushLeave").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let c0 = reporting_consumer(
        &cluster,
        "leave-0",
        "PushLeaveGroup",
        "ItPushLeave",
        0,
        tx.clone(),
    )
    .await;
    let c1 = reporting_consumer(&cluster, "leave-1", "PushLeaveGroup", "ItPushLeave", 1, tx).await;
    wait_for_split(&c0, &c1).await;

    let sender = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut sent = BTreeSet::new();
            for i in 0..300 {
                let r = producer
                    .send(Message::new("ItPushLeave", format!("s{i}")))
                    .await
                    .unwrap();
                sent.insert(r.msg_id);
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            sent
        })
    };
    let mut got = Vec::new();
    collect_until(&mut rx, &mut got, "first part", |g| {
        (0..2).all(|n| g.iter().filter(|(c, _)| *c == n).count() >= 20)
    })
    .await;
    c1.shutdown().await;
    let sent = sender.await.unwrap();
    collect_until(&mut rx, &mut got, "everything", |g| {
        let ids: HashSet<&String> = g.iter().map(|(_, m)| &m.msg_id).collect();
        sent.iter().all(|id| ids.contains(id))
    })
    .await;
    wait_until("the survivor holds every queue", || {
        c0.assignment()
            .iter()
            .filter(|q| q.topic == "ItPushLeave")
            .count()
            == 4
    })
    .await;
    c0.shutdown().await;
    producer.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumer_queues_are_taken_over_by_the_survivor() {
    let cluster = Cluster::start().await;
    let producer = cluster.producer("kill-p").await;
    let queues = create_topic(&cluster, &producer, "ItPushKill").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let survivor = reporting_consumer(
        &cluster,
        "kill-0",
        "PushKillGroup",
        "ItPushKill",
        0,
        tx.clone(),
    )
    .await;
    let victim = reporting_consumer(&cluster, "kill-1", "PushKillGroup", "ItPushKill", 1, tx).await;
    wait_for_split(&survivor, &victim).await;

    let mut before = BTreeSet::new();
    for q in &queues {
        for i in 0..3 {
            let r = producer
                .send_to_queue(
                    Message::new("ItPushKill", format!("a{}-{i}", q.queue_id)),
                    q,
                )
                .await
                .unwrap();
            before.insert(r.msg_id);
        }
    }
    let mut got = Vec::new();
    collect_until(&mut rx, &mut got, "before the kill", |g| {
        let ids: HashSet<&String> = g.iter().map(|(_, m)| &m.msg_id).collect();
        before.iter().all(|id| ids.contains(id))
    })
    .await;
    assert!(got.iter().any(|(n, _)| *n == 1), "the victim consumed too");

    // No shutdown, no UNREGISTER_CLIENT: its client goes away and its connections close, and
    // the broker drops it and tells the survivor.
    drop(victim);
    wait_until("the survivor holds every queue", || {
        survivor
            .assignment()
            .iter()
            .filter(|q| q.topic == "ItPushKill")
            .count()
            == 4
    })
    .await;
    let mut after = BTreeSet::new();
    for q in &queues {
        for i in 0..3 {
            let r = producer
                .send_to_queue(
                    Message::new("ItPushKill", format!("b{}-{i}", q.queue_id)),
                    q,
                )
                .await
                .unwrap();
            after.insert(r.msg_id);
        }
    }
    let mut later = Vec::new();
    collect_until(&mut rx, &mut later, "after the kill", |g| {
        let ids: HashSet<&String> = g
            .iter()
            .filter(|(n, _)| *n == 0)
            .map(|(_, m)| &m.msg_id)
            .collect();
        after.iter().all(|id| ids.contains(id))
    })
    .await;
    assert!(
        later
            .iter()
            .filter(|(_, m)| after.contains(&m.msg_id))
            .all(|(n, _)| *n == 0),
        "only the survivor consumes after the kill"
    );
    survivor.shutdown().await;
    producer.shutdown().await;
    cluster.stop().await;
}
