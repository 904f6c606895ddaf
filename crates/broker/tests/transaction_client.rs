//! Transactional messages end to end: the Rust client's transactional producer against an
//! in-process name server and broker on loopback. Commit, rollback, an unknown outcome resolved
//! by the check-back, a crashed producer whose group mate answers for it, and the discard after
//! `transactionCheckMax` checks.

use std::any::Any;
use std::time::Duration;

use apogee_broker::{Broker, BrokerConfig, BrokerHandle, StoreOptions};
use apogee_client::{
    ClientConfig, ConsumeFromWhere, LitePullConsumer, LocalTransactionState, Message, MessageExt,
    Producer, SendStatus, TransactionListener,
};
use apogee_namesrv::{NameServer, NameServerHandle, NamesrvConfig};
use apogee_protocol::codes::{request_code, response_code};
use apogee_protocol::header::{GetRouteInfoRequestHeader, PullMessageRequestHeader};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{RemotingClient, RemotingConfig};
use tokio::sync::mpsc;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(20);
const CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";

struct Cluster {
    ns: NameServerHandle,
    broker: BrokerHandle,
    ns_addr: String,
    broker_addr: String,
    reader: RemotingClient,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// A cluster whose broker scans for transactions to check every `interval_ms` and checks
    /// those older than `timeout_ms`, at most `check_max` times.
    async fn start(interval_ms: u64, timeout_ms: u64, check_max: i32) -> Cluster {
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
            transaction_check_interval_ms: interval_ms,
            transaction_timeout_ms: timeout_ms,
            transaction_check_max: check_max,
            store: StoreOptions::for_tests(),
            ..BrokerConfig::default()
        })
        .await
        .unwrap();
        let broker_addr = broker.local_addr().to_string();
        let cluster = Cluster {
            ns,
            broker,
            ns_addr,
            broker_addr,
            reader: RemotingClient::new(RemotingConfig::default()),
            _dir: dir,
        };
        cluster.wait_for_route("TBW102").await;
        cluster
    }

    /// Waits until the name server serves `topic`'s route (brokers register asynchronously).
    async fn wait_for_route(&self, topic: &str) {
        let header = GetRouteInfoRequestHeader {
            topic: topic.into(),
            ..Default::default()
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            let request =
                RemotingCommand::request_with_header(request_code::GET_ROUTEINFO_BY_TOPIC, &header);
            if let Ok(r) = self
                .reader
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

    fn client_config(&self, instance: &str) -> ClientConfig {
        let mut c = ClientConfig::new(&self.ns_addr);
        c.instance_name = instance.to_owned();
        c.client_ip = Some("127.0.0.1".into());
        c
    }

    /// A transactional producer of `group` on its own client instance, known to the broker
    /// (it has heartbeated) before it sends anything.
    async fn producer(&self, group: &str, instance: &str, listener: Listener) -> Producer {
        let p = Producer::builder()
            .group(group)
            .client_config(self.client_config(instance))
            .transaction_listener(listener)
            .start()
            .await
            .unwrap();
        p.client_instance()
            .update_topic_route("TBW102")
            .await
            .unwrap();
        p.client_instance().send_heartbeat_to_all_brokers().await;
        p
    }

    /// Every message stored in `topic` (queues 0..8), read by plain pulls.
    async fn read_topic(&self, topic: &str) -> Vec<MessageExt> {
        let mut out = Vec::new();
        for queue_id in 0..8 {
            let header = PullMessageRequestHeader {
                consumer_group: "TxReader".into(),
                topic: topic.into(),
                queue_id,
                queue_offset: 0,
                max_msg_nums: 32,
                sys_flag: 0x4,
                commit_offset: 0,
                suspend_timeout_millis: 0,
                subscription: Some("*".into()),
                sub_version: 0,
                expression_type: Some("TAG".into()),
                max_msg_bytes: None,
                request_source: None,
                proxy_forward_client_id: None,
            };
            let request = RemotingCommand::request_with_header(request_code::PULL_MESSAGE, &header);
            let r = self
                .reader
                .invoke(&self.broker_addr, request, Duration::from_secs(5))
                .await
                .unwrap();
            if r.code == response_code::SUCCESS {
                let (msgs, err) = MessageExt::decode_all(&r.body);
                assert!(err.is_none(), "{err:?}");
                out.extend(msgs);
            }
        }
        out
    }

    async fn stop(self) {
        self.reader.close();
        self.broker.shutdown().await.unwrap();
        self.ns.shutdown().await;
    }
}

/// A listener answering with fixed states and reporting every check-back on a channel.
struct Listener {
    local: LocalTransactionState,
    check: LocalTransactionState,
    checked: mpsc::UnboundedSender<MessageExt>,
}

impl Listener {
    fn new(
        local: LocalTransactionState,
        check: LocalTransactionState,
    ) -> (Listener, mpsc::UnboundedReceiver<MessageExt>) {
        let (checked, rx) = mpsc::unbounded_channel();
        (
            Listener {
                local,
                check,
                checked,
            },
            rx,
        )
    }
}

impl TransactionListener for Listener {
    fn execute_local(
        &self,
        _msg: &Message,
        _arg: &(dyn Any + Send + Sync),
    ) -> LocalTransactionState {
        self.local
    }

    fn check_local(&self, msg: &MessageExt) -> LocalTransactionState {
        let _ = self.checked.send(msg.clone());
        self.check
    }
}

async fn next_check(rx: &mut mpsc::UnboundedReceiver<MessageExt>) -> MessageExt {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("a check-back arrives")
        .expect("listener alive")
}

fn order(topic: &str) -> Message {
    Message::new(topic, "order paid")
        .with_tags("TagA")
        .with_keys(["order-7", "user-3"])
        .with_property("region", "eu")
}

#[tokio::test]
async fn a_committed_transaction_is_consumed_once_with_its_properties() {
    // No check-backs in this test: the timeout is far away.
    let cluster = Cluster::start(100, 60_000, 15).await;
    let (listener, _checks) = Listener::new(
        LocalTransactionState::CommitMessage,
        LocalTransactionState::CommitMessage,
    );
    let producer = cluster.producer("TxCommitPG", "tx-commit", listener).await;
    let result = producer
        .send_in_transaction_with(order("TxCommit"), |_m: &Message| async {
            // The half message is stored but nobody reading the topic sees it yet.
            assert!(cluster.read_topic("TxCommit").await.is_empty());
            LocalTransactionState::CommitMessage
        })
        .await
        .unwrap();
    assert_eq!(result.send_result.status, SendStatus::SendOk);
    assert_eq!(result.local_state, LocalTransactionState::CommitMessage);
    cluster
        .broker
        .wait_transaction_stats(|s| s.committed == 1)
        .await;

    cluster.wait_for_route("TxCommit").await;
    let consumer = LitePullConsumer::builder()
        .group("TxCommitCG")
        .client_config(cluster.client_config("tx-commit-consumer"))
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .subscribe("TxCommit", "TagA")
        .start()
        .await
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    while got.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the committed message never came"
        );
        got = consumer.poll(Duration::from_millis(200)).await.unwrap();
    }
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(
        m.msg_id, result.send_result.msg_id,
        "same UNIQ_KEY as the send"
    );
    assert_eq!(m.topic, "TxCommit");
    assert_eq!(m.queue_id, result.send_result.queue.queue_id);
    assert_eq!(&m.body[..], b"order paid");
    assert_eq!(m.tags(), Some("TagA"));
    assert_eq!(m.keys().collect::<Vec<_>>(), ["order-7", "user-3"]);
    assert_eq!(m.property("region"), Some("eu"));
    assert_eq!(cluster.read_topic("TxCommit").await.len(), 1);
    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_rolled_back_transaction_is_never_visible() {
    let cluster = Cluster::start(100, 60_000, 15).await;
    let (listener, _checks) = Listener::new(
        LocalTransactionState::RollbackMessage,
        LocalTransactionState::CommitMessage,
    );
    let producer = cluster
        .producer("TxRollbackPG", "tx-rollback", listener)
        .await;
    let result = producer
        .send_in_transaction(order("TxRollback"), &())
        .await
        .unwrap();
    assert_eq!(result.local_state, LocalTransactionState::RollbackMessage);
    cluster
        .broker
        .wait_transaction_stats(|s| s.rolled_back == 1)
        .await;
    assert!(cluster.read_topic("TxRollback").await.is_empty());
    producer.shutdown().await;
    cluster.stop().await;
}

#[tokio::test]
async fn an_unknown_outcome_is_resolved_by_the_check_back() {
    let cluster = Cluster::start(100, 200, 15).await;
    let (listener, mut checks) = Listener::new(
        LocalTransactionState::Unknown,
        LocalTransactionState::CommitMessage,
    );
    let producer = cluster
        .producer("TxUnknownPG", "tx-unknown", listener)
        .await;
    let result = producer
        .send_in_transaction(order("TxUnknown"), &())
        .await
        .unwrap();
    assert_eq!(result.local_state, LocalTransactionState::Unknown);
    assert!(cluster.read_topic("TxUnknown").await.is_empty());

    let asked = next_check(&mut checks).await;
    assert_eq!(asked.msg_id, result.send_result.msg_id);
    assert_eq!(asked.topic, "TxUnknown");
    assert_eq!(asked.queue_id, result.send_result.queue.queue_id);
    assert_eq!(asked.property("TRANSACTION_CHECK_TIMES"), Some("1"));
    cluster
        .broker
        .wait_transaction_stats(|s| s.committed == 1)
        .await;
    let visible = cluster.read_topic("TxUnknown").await;
    assert_eq!(visible.len(), 1);
    assert_eq!(visible[0].msg_id, result.send_result.msg_id);
    producer.shutdown().await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_live_group_member_answers_for_a_crashed_producer() {
    // The timeout leaves time to crash the first producer before any check-back.
    let cluster = Cluster::start(100, 1_000, 15).await;
    let (crashing, mut crashed_checks) = Listener::new(
        LocalTransactionState::Unknown,
        LocalTransactionState::Unknown,
    );
    let (surviving, mut live_checks) = Listener::new(
        LocalTransactionState::Unknown,
        LocalTransactionState::CommitMessage,
    );
    let a = cluster.producer("TxCrashPG", "tx-crash-a", crashing).await;
    let b = cluster.producer("TxCrashPG", "tx-crash-b", surviving).await;
    let result = a.send_in_transaction(order("TxCrash"), &()).await.unwrap();
    assert_eq!(result.local_state, LocalTransactionState::Unknown);
    // The first producer dies without a word: its connections just close.
    a.client_instance().remoting().close();

    let asked = next_check(&mut live_checks).await;
    assert_eq!(asked.msg_id, result.send_result.msg_id);
    cluster
        .broker
        .wait_transaction_stats(|s| s.committed == 1)
        .await;
    let visible = cluster.read_topic("TxCrash").await;
    assert_eq!(visible.len(), 1);
    assert_eq!(visible[0].msg_id, result.send_result.msg_id);
    assert!(crashed_checks.try_recv().is_err());
    b.shutdown().await;
    cluster.stop().await;
}

#[tokio::test]
async fn a_transaction_unknown_after_the_max_checks_is_discarded() {
    let cluster = Cluster::start(100, 200, 3).await;
    let (listener, mut checks) = Listener::new(
        LocalTransactionState::Unknown,
        LocalTransactionState::Unknown,
    );
    let producer = cluster.producer("TxMaxPG", "tx-max", listener).await;
    let result = producer
        .send_in_transaction(order("TxMax"), &())
        .await
        .unwrap();
    for times in 1..=3 {
        let asked = next_check(&mut checks).await;
        assert_eq!(asked.msg_id, result.send_result.msg_id);
        assert_eq!(
            asked.property("TRANSACTION_CHECK_TIMES"),
            Some(times.to_string().as_str())
        );
    }
    cluster
        .broker
        .wait_transaction_stats(|s| s.discarded == 1)
        .await;
    let runs = cluster.broker.transaction_stats().check_runs;
    cluster
        .broker
        .wait_transaction_stats(|s| s.check_runs >= runs + 2)
        .await;
    assert!(checks.try_recv().is_err(), "checked after the discard");
    assert_eq!(cluster.broker.transaction_stats().checks, 3);
    assert!(cluster.read_topic("TxMax").await.is_empty());
    let dropped = cluster.read_topic(CHECK_MAX_TIME_TOPIC).await;
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].property("REAL_TOPIC"), Some("TxMax"));
    producer.shutdown().await;
    cluster.stop().await;
}
