//! Heartbeats, consumer lists, NOTIFY_CONSUMER_IDS_CHANGED, unregistration, connection views and
//! queue locks.

use std::collections::BTreeSet;
use std::time::Duration;

use apogee_protocol::body::{
    ConsumerConnection, GetConsumerListByGroupResponseBody, JsonBody, LockBatchRequestBody,
    LockBatchResponseBody, MessageQueue, ProducerConnection, UnlockBatchRequestBody,
};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{
    GetConsumerConnectionListRequestHeader, GetConsumerListByGroupRequestHeader,
    GetProducerConnectionListRequestHeader, GetTopicConfigRequestHeader,
    NotifyConsumerIdsChangedRequestHeader, UnregisterClientRequestHeader,
};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{HandlerFuture, RemotingClient, RemotingConfig, RequestContext, Router};
use tokio::sync::mpsc;

use crate::common::*;

fn consumer_list(group: &str) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::GET_CONSUMER_LIST_BY_GROUP,
        &GetConsumerListByGroupRequestHeader {
            consumer_group: group.into(),
        },
    )
}

/// A client that forwards NOTIFY_CONSUMER_IDS_CHANGED requests to a channel.
fn notified_client() -> (RemotingClient, mpsc::UnboundedReceiver<(String, bool)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let router = Router::new().route(
        rc::NOTIFY_CONSUMER_IDS_CHANGED,
        move |_ctx: RequestContext, req: RemotingCommand| {
            let h: NotifyConsumerIdsChangedRequestHeader = req.decode_header().unwrap();
            let _ = tx.send((h.consumer_group, req.is_oneway()));
            HandlerFuture::no_reply()
        },
    );
    (
        RemotingClient::with_handler(RemotingConfig::default(), router),
        rx,
    )
}

#[tokio::test]
async fn heartbeat_registers_a_consumer_and_its_retry_topic() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let r = b
        .call(heartbeat("10.0.0.5@1", "CG1", "T1", "TagA || TagB"))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    assert_eq!(ext(&r, "IS_SUPPORT_HEART_BEAT_V2"), "true");
    assert_eq!(ext(&r, "IS_SUB_CHANGE"), "true");

    let r = b.call(consumer_list("CG1")).await;
    assert_eq!(r.code, SUCCESS);
    let ids = GetConsumerListByGroupResponseBody::decode(&r.body).unwrap();
    assert_eq!(ids.consumer_id_list, ["10.0.0.5@1"]);

    let r = b
        .call(RemotingCommand::request_with_header(
            rc::GET_TOPIC_CONFIG,
            &GetTopicConfigRequestHeader {
                topic: "%RETRY%CG1".into(),
            },
        ))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    assert!(String::from_utf8_lossy(&r.body).contains(r#""writeQueueNums":1"#));

    let r = b
        .call(RemotingCommand::request_with_header(
            rc::GET_CONSUMER_CONNECTION_LIST,
            &GetConsumerConnectionListRequestHeader {
                consumer_group: "CG1".into(),
            },
        ))
        .await;
    assert_eq!(r.code, SUCCESS);
    let view = ConsumerConnection::decode(&r.body).unwrap();
    assert_eq!(view.connection_set.len(), 1);
    assert_eq!(view.subscription_table["T1"].tags_set, ["TagA", "TagB"]);

    let r = b
        .call(RemotingCommand::request_with_header(
            rc::GET_PRODUCER_CONNECTION_LIST,
            &GetProducerConnectionListRequestHeader {
                producer_group: "PG".into(),
            },
        ))
        .await;
    assert_eq!(r.code, SUCCESS);
    assert_eq!(
        ProducerConnection::decode(&r.body).unwrap().connection_set[0].client_id,
        "10.0.0.5@1"
    );

    let r = b.call(consumer_list("Nobody")).await;
    assert_eq!(r.code, SYSTEM_ERROR);
    assert_eq!(
        r.remark.as_deref(),
        Some("no consumer for this group, Nobody")
    );
    b.stop().await;
}

#[tokio::test]
async fn registered_subscription_filters_pulls_without_the_subscription_flag() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    assert_eq!(
        b.call(heartbeat("c@1", "CG2", "TS2", "TagB")).await.code,
        SUCCESS
    );
    for tag in ["TagA", "TagB"] {
        let r = b
            .call(send_v2(
                &send_header("TS2", 0, &props(&[("TAGS", tag)])),
                b"x",
            ))
            .await;
        assert_eq!(r.code, SUCCESS);
    }
    let mut h = pull_header("CG2", "TS2", 0, 0);
    h.sys_flag = 0x1; // commit offset only: the heartbeat's subscription applies
    h.commit_offset = 0;
    h.subscription = None;
    let resp = b.call(pull(&h)).await;
    assert_eq!(resp.code, SUCCESS);
    let recs = records(&resp.body);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].tags().as_deref(), Some("TagB"));
    // A client newer than the registered subscription is told so.
    h.sub_version = 99;
    assert_eq!(b.call(pull(&h)).await.code, SUBSCRIPTION_NOT_LATEST);
    b.stop().await;
}

#[tokio::test]
async fn cpp_client_heartbeat_shapes_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let body = br#"{"clientID":"192.168.0.2@cpp","consumerDataSet":[{"consumeFromWhere":0,"consumeType":1,
        "groupName":"CppG","messageModel":1,"subscriptionDataSet":[{"classFilterMode":false,"subString":"A || B",
        "subVersion":"1700000000000","topic":"CppT"}],"unitMode":"0"},{"groupName":"CppPull","consumeType":0,"messageModel":1}],
        "producerDataSet":[{"groupName":"CppP"}]}
"#;
    let r = b
        .call(RemotingCommand::request(rc::HEART_BEAT).with_body(body.to_vec()))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let ids = GetConsumerListByGroupResponseBody::decode(&b.call(consumer_list("CppG")).await.body)
        .unwrap();
    assert_eq!(ids.consumer_id_list, ["192.168.0.2@cpp"]);
    assert_eq!(b.call(consumer_list("CppPull")).await.code, SUCCESS);
    let r = b
        .call(RemotingCommand::request_with_header(
            rc::GET_CONSUMER_CONNECTION_LIST,
            &GetConsumerConnectionListRequestHeader {
                consumer_group: "CppG".into(),
            },
        ))
        .await;
    let view = ConsumerConnection::decode(&r.body).unwrap();
    let sub = &view.subscription_table["CppT"];
    assert_eq!(sub.tags_set, ["A", "B"]);
    assert_eq!(sub.code_set, [65, 66]);
    b.stop().await;
}

#[tokio::test]
async fn a_second_consumer_joining_notifies_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let (first, mut first_rx) = notified_client();
    let (second, mut second_rx) = notified_client();
    let hb = |id: &str| heartbeat(id, "CGN", "TN", "*");

    let r = first.invoke(&b.addr, hb("c@1"), TIMEOUT).await.unwrap();
    assert_eq!(r.code, SUCCESS);
    // Its own registration changed the group: it hears about itself.
    assert_eq!(first_rx.recv().await.unwrap(), ("CGN".to_owned(), true));

    // The same client again: no change, no notification.
    first.invoke(&b.addr, hb("c@1"), TIMEOUT).await.unwrap();
    second.invoke(&b.addr, hb("c@2"), TIMEOUT).await.unwrap();
    assert_eq!(first_rx.recv().await.unwrap().0, "CGN");
    assert_eq!(second_rx.recv().await.unwrap().0, "CGN");
    let ids = GetConsumerListByGroupResponseBody::decode(&b.call(consumer_list("CGN")).await.body)
        .unwrap();
    assert_eq!(ids.consumer_id_list, ["c@1", "c@2"]);

    // The second unregisters: the first is told, the list shrinks.
    let unreg = RemotingCommand::request_with_header(
        rc::UNREGISTER_CLIENT,
        &UnregisterClientRequestHeader {
            client_id: "c@2".into(),
            producer_group: Some("PG".into()),
            consumer_group: Some("CGN".into()),
        },
    );
    assert_eq!(
        second.invoke(&b.addr, unreg, TIMEOUT).await.unwrap().code,
        SUCCESS
    );
    assert_eq!(first_rx.recv().await.unwrap().0, "CGN");
    let ids = GetConsumerListByGroupResponseBody::decode(&b.call(consumer_list("CGN")).await.body)
        .unwrap();
    assert_eq!(ids.consumer_id_list, ["c@1"]);

    // The second comes back, then its connection drops: the first is told again.
    second.invoke(&b.addr, hb("c@2"), TIMEOUT).await.unwrap();
    assert_eq!(first_rx.recv().await.unwrap().0, "CGN");
    second.close();
    assert_eq!(first_rx.recv().await.unwrap().0, "CGN");
    let ids = GetConsumerListByGroupResponseBody::decode(&b.call(consumer_list("CGN")).await.body)
        .unwrap();
    assert_eq!(ids.consumer_id_list, ["c@1"]);
    first.close();
    b.stop().await;
}

#[tokio::test]
async fn silent_consumers_expire_and_the_rest_are_notified() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.channel_expired_timeout_ms = 300;
    c.client_scan_interval_ms = 50;
    let b = TestBroker::start(c).await;
    let (keeper, mut keeper_rx) = notified_client();
    let (quiet, _quiet_rx) = notified_client();
    quiet
        .invoke(&b.addr, heartbeat("q@1", "CGE", "TE", "*"), TIMEOUT)
        .await
        .unwrap();
    keeper
        .invoke(&b.addr, heartbeat("k@1", "CGE", "TE", "*"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(keeper_rx.recv().await.unwrap().0, "CGE");
    // Keep heartbeating one of them; the other goes silent and expires.
    loop {
        tokio::select! {
            n = keeper_rx.recv() => {
                assert_eq!(n.unwrap().0, "CGE");
                break;
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                keeper.invoke(&b.addr, heartbeat("k@1", "CGE", "TE", "*"), TIMEOUT).await.unwrap();
            }
        }
    }
    let ids = GetConsumerListByGroupResponseBody::decode(&b.call(consumer_list("CGE")).await.body)
        .unwrap();
    assert_eq!(ids.consumer_id_list, ["k@1"]);
    keeper.close();
    quiet.close();
    b.stop().await;
}

#[tokio::test]
async fn queue_locks_over_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let mqs: BTreeSet<MessageQueue> = (0..2)
        .map(|i| MessageQueue::new("TL", "broker-a", i))
        .collect();
    let lock = |client: &str, mqs: &BTreeSet<MessageQueue>| {
        let body = LockBatchRequestBody {
            client_id: client.into(),
            consumer_group: "CGL".into(),
            mq_set: mqs.clone(),
            only_this_broker: false,
        };
        RemotingCommand::request(rc::LOCK_BATCH_MQ).with_body(body.encode().unwrap())
    };
    let r = b.call(lock("c1", &mqs)).await;
    assert_eq!(r.code, SUCCESS);
    assert_eq!(
        LockBatchResponseBody::decode(&r.body)
            .unwrap()
            .lock_ok_mq_set,
        mqs
    );
    let r = b.call(lock("c2", &mqs)).await;
    assert!(LockBatchResponseBody::decode(&r.body)
        .unwrap()
        .lock_ok_mq_set
        .is_empty());

    let unlock = UnlockBatchRequestBody {
        client_id: "c1".into(),
        consumer_group: "CGL".into(),
        mq_set: mqs.iter().take(1).cloned().collect(),
        only_this_broker: false,
    };
    let mut req = RemotingCommand::request(rc::UNLOCK_BATCH_MQ).with_body(unlock.encode().unwrap());
    req.mark_oneway();
    b.client.invoke_oneway(&b.addr, req).await.unwrap();
    // The C++ client's body, without onlyThisBroker; the oneway unlock above was handled first on
    // this connection.
    let body = br#"{"consumerGroup":"CGL","clientId":"c2","mqSet":[{"topic":"TL","brokerName":"broker-a","queueId":0},{"topic":"TL","brokerName":"broker-a","queueId":1}]}"#;
    let r = b
        .call(RemotingCommand::request(rc::LOCK_BATCH_MQ).with_body(body.to_vec()))
        .await;
    let got = LockBatchResponseBody::decode(&r.body)
        .unwrap()
        .lock_ok_mq_set;
    assert_eq!(got.into_iter().map(|m| m.queue_id).collect::<Vec<_>>(), [0]);
    b.stop().await;
}

#[tokio::test]
async fn heartbeat_v2_reports_when_the_broker_needs_the_subscriptions_again() {
    use apogee_protocol::body::HeartbeatData;
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let v2 = |fingerprint: i32, without_sub: bool| {
        let full = heartbeat("c@v2", "CGV", "TV", "*");
        let mut data = HeartbeatData::decode(&full.body).unwrap();
        data.heartbeat_fingerprint = fingerprint;
        data.without_sub = without_sub;
        if without_sub {
            for c in &mut data.consumer_data_set {
                c.subscription_data_set.clear();
            }
        }
        RemotingCommand::request(rc::HEART_BEAT).with_body(data.encode().unwrap())
    };
    // Subscriptions left out for a group the broker does not know: send them again.
    let r = b.call(v2(5, true)).await;
    assert_eq!(ext(&r, "IS_SUB_CHANGE"), "true");
    let r = b.call(v2(5, false)).await;
    assert_eq!(ext(&r, "IS_SUB_CHANGE"), "false");
    let r = b.call(v2(5, true)).await;
    assert_eq!(ext(&r, "IS_SUB_CHANGE"), "false");
    // The subscription registered by the full heartbeat is kept.
    let mut h = pull_header("CGV", "TV", 0, 0);
    h.sys_flag = 0;
    assert_eq!(
        b.call(send_v2(&send_header("TV", 0, &props(&[])), b"x"))
            .await
            .code,
        SUCCESS
    );
    assert_eq!(b.call(pull(&h)).await.code, SUCCESS);
    let r = b.call(v2(6, false)).await;
    assert_eq!(ext(&r, "IS_SUB_CHANGE"), "true");
    b.stop().await;
}
