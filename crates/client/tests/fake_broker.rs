//! Protocol-level tests against scripted fake name servers and brokers: route lookup, send and
//! retry, auto-create through TBW102, transactions and their check-back, heartbeats, instance
//! sharing, broker-to-client requests.

mod common;

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use apogee_client::consumer::allocate::ByConfig;
use apogee_client::{
    ClientError, ClientInstance, LitePullConsumer, LocalTransactionState, Message, MessageExt,
    Producer, SelectByHash, SendStatus, TransactionListener,
};
use apogee_protocol::body::{
    ConsumeType, GetConsumerListByGroupResponseBody, HeartbeatData, JsonBody,
};
use apogee_protocol::codes::{request_code, response_code};
use apogee_protocol::header::{
    CheckTransactionStateRequestHeader, EndTransactionRequestHeader,
    GetConsumerRunningInfoRequestHeader, NotifyConsumerIdsChangedRequestHeader,
    UnregisterClientRequestHeader,
};
use apogee_protocol::message::{keys, MessageProperties, MessageRecord, OffsetMsgId};
use apogee_protocol::RemotingCommand;
use bytes::Bytes;
use common::*;

/// A broker that stores every send and answers SUCCESS to everything else.
async fn ok_broker() -> Fake {
    let offsets = Arc::new(AtomicI64::new(0));
    let addr = Arc::new(Mutex::new(String::new()));
    let addr_in = Arc::clone(&addr);
    let fake = Fake::start(move |req| match req.code {
        request_code::SEND_MESSAGE_V2 | request_code::SEND_BATCH_MESSAGE => {
            let a = addr_in.lock().unwrap().clone();
            Some(send_ok(&a, req, &offsets))
        }
        request_code::END_TRANSACTION => None,
        _ => Some(RemotingCommand::response(response_code::SUCCESS, None)),
    })
    .await;
    *addr.lock().unwrap() = fake.addr.clone();
    fake
}

#[tokio::test]
async fn send_looks_up_the_route_and_retries_on_another_broker_after_a_failure() {
    // broker-a refuses every send with a code Java retries on; broker-b stores.
    let bad = Fake::start(|req| {
        Some(match req.code {
            request_code::SEND_MESSAGE_V2 => RemotingCommand::response(
                response_code::SYSTEM_BUSY,
                Some("[REJECTREQUEST]system busy".into()),
            ),
            _ => RemotingCommand::response(response_code::SUCCESS, None),
        })
    })
    .await;
    let mut good = ok_broker().await;
    let mut bad = bad;
    let mut ns = name_server(HashMap::from([(
        "TopicTest".to_owned(),
        route(&[("broker-a", &bad.addr), ("broker-b", &good.addr)], 2),
    )]))
    .await;
    let producer = Producer::builder()
        .group("PG")
        .client_config(client_config(&ns.addr, "retry"))
        .start()
        .await
        .unwrap();

    for i in 0..4 {
        let r = producer
            .send(Message::new("TopicTest", format!("m{i}")))
            .await
            .unwrap();
        assert_eq!(r.status, SendStatus::SendOk);
        assert_eq!(r.queue.broker_name, "broker-b");
        assert_eq!(r.queue.topic, "TopicTest");
    }
    let route_lookup = ns
        .next_with_code(request_code::GET_ROUTEINFO_BY_TOPIC)
        .await;
    assert_eq!(
        route_lookup.request.ext_fields.get("topic"),
        Some("TopicTest")
    );

    // Round robin reaches broker-a at least once in four sends; each refused attempt is
    // retried at once on broker-b with the same UNIQ_KEY.
    let refused = bad.drain_with_code(request_code::SEND_MESSAGE_V2);
    assert!(!refused.is_empty());
    let stored: Vec<String> = good
        .drain_with_code(request_code::SEND_MESSAGE_V2)
        .iter()
        .map(|s| uniq_key_of(&s.request))
        .collect();
    assert_eq!(stored.len(), 4);
    for r in &refused {
        assert!(stored.contains(&uniq_key_of(&r.request)));
    }
    producer.shutdown().await;
}

fn uniq_key_of(req: &RemotingCommand) -> String {
    let h = send_header_of(req);
    MessageProperties::decode_str(h.properties.as_deref().unwrap_or_default())
        .uniq_key()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_refusal_java_does_not_retry_is_returned_with_its_code_and_remark() {
    let mut broker = Fake::start(|req| {
        Some(match req.code {
            request_code::SEND_MESSAGE_V2 => RemotingCommand::response(
                response_code::MESSAGE_ILLEGAL,
                Some(
                    "the message is illegal, maybe msg body or properties length not matched"
                        .into(),
                ),
            ),
            _ => RemotingCommand::response(response_code::SUCCESS, None),
        })
    })
    .await;
    let ns = name_server(HashMap::from([(
        "T".to_owned(),
        route(&[("broker-a", &broker.addr)], 4),
    )]))
    .await;
    let producer = Producer::builder()
        .client_config(client_config(&ns.addr, "illegal"))
        .start()
        .await
        .unwrap();
    let err = producer.send(Message::new("T", "x")).await.unwrap_err();
    assert_eq!(err.response_code(), Some(response_code::MESSAGE_ILLEGAL));
    match &err {
        ClientError::Broker { remark, addr, .. } => {
            assert!(remark.contains("illegal"));
            assert_eq!(addr, &broker.addr);
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(
        broker.drain_with_code(request_code::SEND_MESSAGE_V2).len(),
        1
    );
}

#[tokio::test]
async fn a_topic_unknown_to_the_name_server_is_sent_through_the_tbw102_route() {
    let mut broker = ok_broker().await;
    // TBW102 has 8 queues; the producer asks for at most 4 on a new topic.
    let ns = name_server(HashMap::from([(
        "TBW102".to_owned(),
        route(&[("broker-a", &broker.addr)], 8),
    )]))
    .await;
    let producer = Producer::builder()
        .group("PG")
        .client_config(client_config(&ns.addr, "tbw102"))
        .start()
        .await
        .unwrap();
    let mut queues = Vec::new();
    for _ in 0..8 {
        let r = producer
            .send(Message::new("BrandNewTopic", "x"))
            .await
            .unwrap();
        queues.push(r.queue.queue_id);
    }
    assert!(queues.iter().all(|q| (0..4).contains(q)), "{queues:?}");
    let seen = broker.next_with_code(request_code::SEND_MESSAGE_V2).await;
    let h = send_header_of(&seen.request);
    assert_eq!(h.topic, "BrandNewTopic");
    assert_eq!(h.default_topic, "TBW102");
    assert_eq!(h.default_topic_queue_nums, 4);
    assert_eq!(h.producer_group, "PG");
}

#[tokio::test]
async fn no_route_and_no_template_is_a_no_route_error() {
    let ns = name_server(HashMap::new()).await;
    let producer = Producer::builder()
        .client_config(client_config(&ns.addr, "noroute"))
        .start()
        .await
        .unwrap();
    let err = producer
        .send(Message::new("Nowhere", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NoRoute { .. }), "{err:?}");
}

#[tokio::test]
async fn the_second_name_server_answers_when_the_first_is_down() {
    let broker = ok_broker().await;
    let ns = name_server(HashMap::from([(
        "T".to_owned(),
        route(&[("broker-a", &broker.addr)], 1),
    )]))
    .await;
    // A port nothing listens on: bind, note the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let mut config = client_config(&format!("{dead_addr};{}", ns.addr), "failover");
    config.name_server_addrs = vec![dead_addr, ns.addr.clone()];
    let instance = ClientInstance::new_unshared(config).unwrap();
    for _ in 0..3 {
        let route = instance.fetch_topic_route("T").await.unwrap();
        assert_eq!(route.broker_datas[0].broker_name, "broker-a");
    }
    instance.shutdown().await;
}

#[tokio::test]
async fn ordered_sends_with_the_same_key_go_to_the_same_queue() {
    let mut broker = ok_broker().await;
    let ns = name_server(HashMap::from([(
        "Orders".to_owned(),
        route(&[("broker-a", &broker.addr)], 8),
    )]))
    .await;
    let producer = Producer::builder()
        .client_config(client_config(&ns.addr, "ordered"))
        .start()
        .await
        .unwrap();
    let mut queue_of_key = HashMap::new();
    for i in 0..12 {
        let key = format!("order-{}", i % 3);
        let r = producer
            .send_with_selector(
                Message::new("Orders", format!("{i}")),
                &SelectByHash,
                key.as_str(),
            )
            .await
            .unwrap();
        let q = *queue_of_key.entry(key.clone()).or_insert(r.queue.queue_id);
        assert_eq!(q, r.queue.queue_id, "{key}");
        // The same queue Java's SelectMessageQueueByHash picks.
        let want =
            SelectByHash::index(apogee_protocol::message::java_string_hash(&key), 8).unwrap();
        assert_eq!(r.queue.queue_id as usize, want);
    }
    assert_eq!(
        broker.drain_with_code(request_code::SEND_MESSAGE_V2).len(),
        12
    );
}

#[tokio::test]
async fn batch_send_is_one_request_with_every_message_id() {
    let mut broker = ok_broker().await;
    let ns = name_server(HashMap::from([(
        "T".to_owned(),
        route(&[("broker-a", &broker.addr)], 1),
    )]))
    .await;
    let producer = Producer::builder()
        .client_config(client_config(&ns.addr, "batch"))
        .start()
        .await
        .unwrap();
    let r = producer
        .send_batch((0..3).map(|i| Message::new("T", format!("b{i}"))))
        .await
        .unwrap();
    assert_eq!(r.msg_id.split(',').count(), 3);
    let seen = broker
        .next_with_code(request_code::SEND_BATCH_MESSAGE)
        .await;
    let h = send_header_of(&seen.request);
    assert_eq!(h.batch, Some(true));
    let entries = apogee_protocol::message::decode_batch(&seen.request.body).unwrap();
    let ids: Vec<String> = entries
        .iter()
        .map(|e| e.property(keys::UNIQ_KEY).unwrap().into_owned())
        .collect();
    assert_eq!(ids.join(","), r.msg_id);
}

#[tokio::test]
async fn oneway_and_async_sends_reach_the_broker() {
    let mut broker = ok_broker().await;
    let ns = name_server(HashMap::from([(
        "T".to_owned(),
        route(&[("broker-a", &broker.addr)], 2),
    )]))
    .await;
    let producer = Producer::builder()
        .client_config(client_config(&ns.addr, "oneway"))
        .start()
        .await
        .unwrap();
    producer
        .send_oneway(Message::new("T", "one-way"))
        .await
        .unwrap();
    let seen = broker.next_with_code(request_code::SEND_MESSAGE_V2).await;
    assert!(seen.request.is_oneway());
    let handle = producer.send_async(Message::new("T", "async"));
    let r = handle.await.unwrap();
    assert_eq!(r.status, SendStatus::SendOk);
    let (tx, rx) = tokio::sync::oneshot::channel();
    producer.send_with_callback(Message::new("T", "callback"), move |r| {
        let _ = tx.send(r.map(|r| r.status));
    });
    assert_eq!(rx.await.unwrap().unwrap(), SendStatus::SendOk);
}

/// Records what the transaction listener was asked.
#[derive(Default)]
struct Listener {
    executed: Mutex<Vec<String>>,
    checked: Mutex<Vec<MessageExt>>,
}

struct SharedListener(Arc<Listener>, LocalTransactionState);

impl TransactionListener for SharedListener {
    fn execute_local(&self, msg: &Message, arg: &(dyn Any + Send + Sync)) -> LocalTransactionState {
        let arg = arg.downcast_ref::<&str>().copied().unwrap_or("?");
        self.0.executed.lock().unwrap().push(format!(
            "{}:{arg}",
            msg.transaction_id().unwrap_or_default()
        ));
        self.1
    }

    fn check_local(&self, msg: &MessageExt) -> LocalTransactionState {
        self.0.checked.lock().unwrap().push(msg.clone());
        LocalTransactionState::RollbackMessage
    }
}

#[tokio::test]
async fn a_transaction_sends_a_half_message_then_end_transaction_with_its_offsets() {
    let mut broker = ok_broker().await;
    let ns = name_server(HashMap::from([(
        "TxTopic".to_owned(),
        route(&[("broker-a", &broker.addr)], 1),
    )]))
    .await;
    let listener = Arc::new(Listener::default());
    let producer = Producer::builder()
        .group("TxGroup")
        .client_config(client_config(&ns.addr, "tx-commit"))
        .transaction_listener(SharedListener(
            Arc::clone(&listener),
            LocalTransactionState::CommitMessage,
        ))
        .start()
        .await
        .unwrap();
    let result = producer
        .send_in_transaction(Message::new("TxTopic", "pay 10"), &"order-7")
        .await
        .unwrap();
    assert_eq!(result.local_state, LocalTransactionState::CommitMessage);

    let half = broker.next_with_code(request_code::SEND_MESSAGE_V2).await;
    let h = send_header_of(&half.request);
    assert_eq!(h.sys_flag, 4, "prepared transaction bit");
    let props = MessageProperties::decode_str(h.properties.as_deref().unwrap());
    assert_eq!(props.get(keys::TRAN_MSG), Some("true"));
    assert_eq!(props.get(keys::PGROUP), Some("TxGroup"));
    let uniq = props.uniq_key().unwrap().to_owned();
    assert_eq!(
        listener.executed.lock().unwrap().as_slice(),
        [format!("{uniq}:order-7")]
    );

    let end = broker.next_with_code(request_code::END_TRANSACTION).await;
    assert!(end.request.is_oneway());
    let e: EndTransactionRequestHeader = end.request.decode_header().unwrap();
    assert_eq!(e.producer_group, "TxGroup");
    assert_eq!(e.commit_or_rollback, 8);
    assert!(!e.from_transaction_check);
    assert_eq!(e.tran_state_table_offset, result.send_result.queue_offset);
    let offset_id = OffsetMsgId::parse(&result.send_result.offset_msg_id).unwrap();
    assert_eq!(e.commit_log_offset, offset_id.physical_offset);
    assert_eq!(e.msg_id, uniq);
    assert_eq!(e.transaction_id.as_deref(), Some(uniq.as_str()));
    assert_eq!(end.request.ext_fields.get("bname"), Some("broker-a"));
}

#[tokio::test]
async fn a_failed_local_transaction_is_rolled_back() {
    let mut broker = ok_broker().await;
    let ns = name_server(HashMap::from([(
        "TxTopic".to_owned(),
        route(&[("broker-a", &broker.addr)], 1),
    )]))
    .await;
    let producer = Producer::builder()
        .group("TxGroup2")
        .client_config(client_config(&ns.addr, "tx-rollback"))
        .transaction_listener(SharedListener(
            Arc::default(),
            LocalTransactionState::CommitMessage,
        ))
        .start()
        .await
        .unwrap();
    let result = producer
        .send_in_transaction_with(
            Message::new("TxTopic", "x").with_delay_level(3),
            |_m: &Message| async { LocalTransactionState::RollbackMessage },
        )
        .await
        .unwrap();
    assert_eq!(result.local_state, LocalTransactionState::RollbackMessage);
    let half = broker.next_with_code(request_code::SEND_MESSAGE_V2).await;
    let props =
        MessageProperties::decode_str(send_header_of(&half.request).properties.as_deref().unwrap());
    assert_eq!(
        props.get(keys::DELAY),
        None,
        "transactional messages drop their delay"
    );
    let end = broker.next_with_code(request_code::END_TRANSACTION).await;
    let e: EndTransactionRequestHeader = end.request.decode_header().unwrap();
    assert_eq!(e.commit_or_rollback, 12);
}

#[tokio::test]
async fn a_check_back_is_answered_with_end_transaction_on_the_same_connection() {
    let mut broker = ok_broker().await;
    let ns = name_server(HashMap::from([(
        "TxTopic".to_owned(),
        route(&[("broker-a", &broker.addr)], 1),
    )]))
    .await;
    let listener = Arc::new(Listener::default());
    let producer = Producer::builder()
        .group("TxCheckGroup")
        .client_config(client_config(&ns.addr, "tx-check"))
        .transaction_listener(SharedListener(
            Arc::clone(&listener),
            LocalTransactionState::Unknown,
        ))
        .start()
        .await
        .unwrap();
    let sent = producer
        .send_in_transaction(Message::new("TxTopic", "unknown outcome"), &())
        .await
        .unwrap();
    let half = broker.next_with_code(request_code::SEND_MESSAGE_V2).await;
    let first_end = broker.next_with_code(request_code::END_TRANSACTION).await;
    let e: EndTransactionRequestHeader = first_end.request.decode_header().unwrap();
    assert_eq!(e.commit_or_rollback, 0, "unknown");

    // The broker asks about the half message on the producer's own connection.
    let uniq = sent.send_result.msg_id.clone();
    let mut props = MessageProperties::new();
    props.insert(keys::TRAN_MSG, "true");
    props.insert(keys::PGROUP, "TxCheckGroup");
    props.set_uniq_key(uniq.clone());
    let mut record = MessageRecord::new(
        "TxTopic",
        Bytes::from_static(b"unknown outcome"),
        props.to_bytes(),
    );
    record.queue_offset = 5;
    record.physical_offset = 4242;
    record.store_host = broker.addr.parse().unwrap();
    let check = CheckTransactionStateRequestHeader {
        topic: Some("TxTopic".into()),
        tran_state_table_offset: 5,
        commit_log_offset: 4242,
        msg_id: Some(uniq.clone()),
        transaction_id: Some(uniq.clone()),
        offset_msg_id: Some(record.offset_msg_id().to_string()),
        broker_name: Some("broker-a".into()),
    };
    let request =
        RemotingCommand::request_with_header(request_code::CHECK_TRANSACTION_STATE, &check)
            .with_body(record.encode().unwrap());
    half.conn.invoke_oneway(request).await.unwrap();

    let answer = broker.next_with_code(request_code::END_TRANSACTION).await;
    assert_eq!(answer.conn.id(), half.conn.id());
    let a: EndTransactionRequestHeader = answer.request.decode_header().unwrap();
    assert!(a.from_transaction_check);
    assert_eq!(a.commit_or_rollback, 12);
    assert_eq!(a.producer_group, "TxCheckGroup");
    assert_eq!(a.tran_state_table_offset, 5);
    assert_eq!(a.commit_log_offset, 4242);
    assert_eq!(a.msg_id, uniq);
    assert_eq!(a.transaction_id.as_deref(), Some(uniq.as_str()));
    assert_eq!(answer.request.ext_fields.get("bname"), Some("broker-a"));
    let checked = listener.checked.lock().unwrap();
    assert_eq!(checked.len(), 1);
    assert_eq!(&checked[0].body[..], b"unknown outcome");
    assert_eq!(checked[0].transaction_id.as_deref(), Some(uniq.as_str()));
}

/// A broker that knows the group's consumers and counts GET_CONSUMER_LIST_BY_GROUP calls.
async fn consumer_list_broker(ids: Arc<Mutex<Vec<String>>>, calls: Arc<AtomicUsize>) -> Fake {
    let offsets = Arc::new(AtomicI64::new(0));
    Fake::start(move |req| match req.code {
        request_code::GET_CONSUMER_LIST_BY_GROUP => {
            calls.fetch_add(1, Ordering::SeqCst);
            let body = GetConsumerListByGroupResponseBody {
                consumer_id_list: ids.lock().unwrap().clone(),
            };
            Some(
                RemotingCommand::response(response_code::SUCCESS, None)
                    .with_body(body.encode().unwrap()),
            )
        }
        request_code::SEND_MESSAGE_V2 => Some(send_ok("127.0.0.1:1", req, &offsets)),
        _ => Some(RemotingCommand::response(response_code::SUCCESS, None)),
    })
    .await
}

#[tokio::test]
async fn one_heartbeat_carries_every_group_of_the_shared_instance() {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let mut broker = consumer_list_broker(ids, Arc::default()).await;
    let ns = name_server(HashMap::from([(
        "HbTopic".to_owned(),
        route(&[("broker-a", &broker.addr)], 2),
    )]))
    .await;
    let config = client_config(&ns.addr, "heartbeat");
    let producer = Producer::builder()
        .group("HbProducer")
        .client_config(config.clone())
        .start()
        .await
        .unwrap();
    let consumer = LitePullConsumer::builder()
        .group("HbConsumer")
        .client_config(config)
        .allocate_strategy(ByConfig::default())
        .subscribe("HbTopic", "TagA || TagB")
        .start()
        .await
        .unwrap();
    // One instance for both.
    assert_eq!(
        producer.client_instance().client_id(),
        consumer.client_instance().client_id()
    );
    assert_eq!(
        producer.client_instance().client_id(),
        "127.0.0.1@heartbeat"
    );

    let seen = broker.next_with_code(request_code::HEART_BEAT).await;
    let hb = HeartbeatData::decode(&seen.request.body).unwrap();
    assert_eq!(hb.client_id, "127.0.0.1@heartbeat");
    let producers: Vec<&str> = hb
        .producer_data_set
        .iter()
        .map(|p| p.group_name.as_str())
        .collect();
    assert!(producers.contains(&"HbProducer"), "{producers:?}");
    assert!(
        producers.contains(&"CLIENT_INNER_PRODUCER"),
        "{producers:?}"
    );
    assert_eq!(hb.consumer_data_set.len(), 1);
    let c = &hb.consumer_data_set[0];
    assert_eq!(c.group_name, "HbConsumer");
    assert_eq!(c.consume_type, ConsumeType::ConsumeActively);
    assert_eq!(c.subscription_data_set.len(), 1);
    assert_eq!(c.subscription_data_set[0].topic, "HbTopic");
    assert_eq!(c.subscription_data_set[0].tags_set, vec!["TagA", "TagB"]);

    consumer.shutdown().await;
    let unregister = broker.next_with_code(request_code::UNREGISTER_CLIENT).await;
    let u: UnregisterClientRequestHeader = unregister.request.decode_header().unwrap();
    assert_eq!(u.consumer_group.as_deref(), Some("HbConsumer"));
    assert_eq!(u.client_id, "127.0.0.1@heartbeat");
    // The producer still holds the instance.
    assert!(!producer.client_instance().is_shut_down());
    producer.shutdown().await;
    let unregister = broker.next_with_code(request_code::UNREGISTER_CLIENT).await;
    let u: UnregisterClientRequestHeader = unregister.request.decode_header().unwrap();
    assert_eq!(u.producer_group.as_deref(), Some("HbProducer"));
    assert!(producer.client_instance().is_shut_down());
}

#[tokio::test]
async fn builders_with_the_same_name_servers_and_instance_name_share_one_instance() {
    let ns = name_server(HashMap::new()).await;
    let a = Producer::builder()
        .group("A")
        .name_server(&ns.addr)
        .instance_name("shared-x")
        .start()
        .await
        .unwrap();
    let b = Producer::builder()
        .group("B")
        .name_server(&ns.addr)
        .instance_name("shared-x")
        .start()
        .await
        .unwrap();
    let c = Producer::builder()
        .group("C")
        .name_server(&ns.addr)
        .instance_name("shared-y")
        .start()
        .await
        .unwrap();
    assert_eq!(
        a.client_instance().client_id(),
        b.client_instance().client_id()
    );
    assert_ne!(
        a.client_instance().client_id(),
        c.client_instance().client_id()
    );
    let mut groups = a.client_instance().producer_groups();
    groups.sort();
    assert_eq!(groups, vec!["A", "B"]);
    // A group can be registered once per instance.
    let again = Producer::builder()
        .group("A")
        .name_server(&ns.addr)
        .instance_name("shared-x")
        .start()
        .await;
    assert!(matches!(again, Err(ClientError::IllegalState(_))));
}

#[tokio::test]
async fn notify_consumer_ids_changed_triggers_a_rebalance_and_running_info_is_answered() {
    let ids = Arc::new(Mutex::new(vec!["127.0.0.1@notify".to_owned()]));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut broker = consumer_list_broker(ids, Arc::clone(&calls)).await;
    let ns = name_server(HashMap::from([(
        "NotifyTopic".to_owned(),
        route(&[("broker-a", &broker.addr)], 2),
    )]))
    .await;
    let consumer = LitePullConsumer::builder()
        .group("NotifyGroup")
        .client_config(client_config(&ns.addr, "notify"))
        .allocate_strategy(ByConfig::default())
        .subscribe("NotifyTopic", "*")
        .start()
        .await
        .unwrap();
    // The start rebalanced once.
    let first = broker
        .next_with_code(request_code::GET_CONSUMER_LIST_BY_GROUP)
        .await;
    let before = calls.load(Ordering::SeqCst);
    let notify = RemotingCommand::request_with_header(
        request_code::NOTIFY_CONSUMER_IDS_CHANGED,
        &NotifyConsumerIdsChangedRequestHeader {
            consumer_group: "NotifyGroup".into(),
        },
    );
    first.conn.invoke_oneway(notify).await.unwrap();
    broker
        .next_with_code(request_code::GET_CONSUMER_LIST_BY_GROUP)
        .await;
    assert!(calls.load(Ordering::SeqCst) > before);

    let ask = RemotingCommand::request_with_header(
        request_code::GET_CONSUMER_RUNNING_INFO,
        &GetConsumerRunningInfoRequestHeader {
            consumer_group: "NotifyGroup".into(),
            client_id: "127.0.0.1@notify".into(),
            jstack_enable: false,
        },
    );
    let answer = first.conn.invoke(ask, WAIT).await.unwrap();
    assert_eq!(answer.code, response_code::SUCCESS);
    let text = String::from_utf8(answer.body.to_vec()).unwrap();
    assert!(
        text.contains(r#""PROP_CONSUME_TYPE":"CONSUME_ACTIVELY""#),
        "{text}"
    );
    assert!(text.contains("NotifyTopic"), "{text}");

    let unknown = RemotingCommand::request_with_header(
        request_code::GET_CONSUMER_RUNNING_INFO,
        &GetConsumerRunningInfoRequestHeader {
            consumer_group: "Nobody".into(),
            client_id: "x".into(),
            jstack_enable: false,
        },
    );
    let answer = first.conn.invoke(unknown, WAIT).await.unwrap();
    assert_eq!(answer.code, response_code::SYSTEM_ERROR);
    assert_eq!(
        answer.remark.as_deref(),
        Some("The Consumer Group <Nobody> not exist in this consumer")
    );
    // Anything else a broker might send is refused, not a crash.
    let odd = first
        .conn
        .invoke(
            RemotingCommand::request(request_code::CONSUME_MESSAGE_DIRECTLY),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(odd.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
    consumer.shutdown().await;
}

#[tokio::test]
async fn a_namespace_wraps_topics_and_groups_on_the_wire_only() {
    let mut broker = ok_broker().await;
    let ns = name_server(HashMap::from([(
        "ns1%T".to_owned(),
        route(&[("broker-a", &broker.addr)], 1),
    )]))
    .await;
    let producer = Producer::builder()
        .group("PG")
        .namespace("ns1")
        .client_config(client_config(&ns.addr, "namespace"))
        .start()
        .await
        .unwrap();
    let r = producer.send(Message::new("T", "x")).await.unwrap();
    assert_eq!(r.queue.topic, "T");
    let seen = broker.next_with_code(request_code::SEND_MESSAGE_V2).await;
    let h = send_header_of(&seen.request);
    assert_eq!(h.topic, "ns1%T");
    assert_eq!(h.producer_group, "ns1%PG");
    let props = MessageProperties::decode_str(h.properties.as_deref().unwrap());
    assert_eq!(props.get(keys::INSTANCE_ID), Some("ns1"));
}

#[tokio::test]
async fn a_shut_down_producer_refuses_to_send() {
    let ns = name_server(HashMap::new()).await;
    let producer = Producer::builder()
        .client_config(client_config(&ns.addr, "closed"))
        .start()
        .await
        .unwrap();
    producer.shutdown().await;
    assert!(matches!(
        producer.send(Message::new("T", "x")).await,
        Err(ClientError::Shutdown)
    ));
}

#[tokio::test]
async fn an_assigned_queue_starts_at_the_committed_offset_and_follows_an_admin_reset() {
    use apogee_protocol::body::ResetOffsetBody;
    use apogee_protocol::header::{
        PullMessageRequestHeader, QueryConsumerOffsetResponseHeader, ResetOffsetRequestHeader,
    };
    let mut broker = Fake::start(|req| match req.code {
        request_code::QUERY_CONSUMER_OFFSET => Some(
            RemotingCommand::response(response_code::SUCCESS, None)
                .with_header(&QueryConsumerOffsetResponseHeader { offset: 3 }),
        ),
        // Pulls are left unanswered: the consumer waits as it would on a long poll.
        request_code::LITE_PULL_MESSAGE => None,
        _ => Some(RemotingCommand::response(response_code::SUCCESS, None)),
    })
    .await;
    let ns = name_server(HashMap::from([(
        "ResetTopic".to_owned(),
        route(&[("broker-a", &broker.addr)], 2),
    )]))
    .await;
    let consumer = LitePullConsumer::builder()
        .group("ResetGroup")
        .client_config(client_config(&ns.addr, "reset"))
        .start()
        .await
        .unwrap();
    let q0 = apogee_client::MessageQueue::new("ResetTopic", "broker-a", 0);
    consumer.assign([q0.clone()]).await.unwrap();
    assert_eq!(consumer.assignment(), vec![q0.clone()]);
    let pull = broker.next_with_code(request_code::LITE_PULL_MESSAGE).await;
    let h: PullMessageRequestHeader = pull.request.decode_header().unwrap();
    assert_eq!(
        (h.topic.as_str(), h.queue_id, h.queue_offset),
        ("ResetTopic", 0, 3)
    );
    assert_eq!(h.consumer_group, "ResetGroup");

    let mut body = ResetOffsetBody::default();
    body.offset_table.insert(q0.clone(), 7);
    let reset = RemotingCommand::request_with_header(
        request_code::RESET_CONSUMER_CLIENT_OFFSET,
        &ResetOffsetRequestHeader {
            group: "ResetGroup".into(),
            topic: "ResetTopic".into(),
            timestamp: 0,
            ..Default::default()
        },
    )
    .with_body(body.encode().unwrap());
    pull.conn.invoke_oneway(reset).await.unwrap();
    let next = broker.next_with_code(request_code::LITE_PULL_MESSAGE).await;
    let h: PullMessageRequestHeader = next.request.decode_header().unwrap();
    assert_eq!(h.queue_offset, 7);
    consumer.shutdown().await;
}

#[tokio::test]
async fn send_message_back_names_the_commit_log_offset_and_origin() {
    use apogee_protocol::header::ConsumerSendMsgBackRequestHeader;
    let mut broker = ok_broker().await;
    let ns = name_server(HashMap::from([(
        "T".to_owned(),
        route(&[("broker-a", &broker.addr)], 1),
    )]))
    .await;
    let instance = ClientInstance::new_unshared(client_config(&ns.addr, "sendback")).unwrap();
    instance.update_topic_route("T").await.unwrap();
    let msg = MessageExt {
        topic: "T".into(),
        broker_name: "broker-a".into(),
        commit_log_offset: 9876,
        msg_id: "UNIQ-1".into(),
        ..Default::default()
    };
    instance.send_message_back(&msg, "G", 0, 16).await.unwrap();
    let seen = broker
        .next_with_code(request_code::CONSUMER_SEND_MSG_BACK)
        .await;
    let h: ConsumerSendMsgBackRequestHeader = seen.request.decode_header().unwrap();
    assert_eq!(h.offset, 9876);
    assert_eq!(h.group, "G");
    assert_eq!(h.delay_level, 0);
    assert_eq!(h.origin_msg_id.as_deref(), Some("UNIQ-1"));
    assert_eq!(h.origin_topic.as_deref(), Some("T"));
    assert_eq!(h.max_reconsume_times, Some(16));
    instance.shutdown().await;
}
