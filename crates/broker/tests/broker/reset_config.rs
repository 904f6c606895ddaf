//! INVOKE_BROKER_TO_RESET_OFFSET (offsets reset by time, consumers told with
//! RESET_CONSUMER_CLIENT_OFFSET) and UPDATE_BROKER_CONFIG (settings changed at runtime).

use apogee_protocol::body::{JsonBody, MessageQueue, ResetOffsetBody, SubscriptionGroupConfig};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::*;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{HandlerFuture, RemotingClient, RemotingConfig, RequestContext, Router};
use tokio::sync::mpsc;

use crate::common::*;
use crate::offsets::{query_offset, update_offset};

fn reset(group: &str, topic: &str, timestamp: i64, force: bool) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::INVOKE_BROKER_TO_RESET_OFFSET,
        &ResetOffsetRequestHeader {
            group: group.into(),
            topic: topic.into(),
            queue_id: -1,
            offset: None,
            timestamp,
            is_force: force,
        },
    )
}

async fn committed(b: &TestBroker, group: &str, topic: &str, queue_id: i32) -> i64 {
    let r = b.call(query_offset(group, topic, queue_id, None)).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    r.decode_header::<QueryConsumerOffsetResponseHeader>()
        .unwrap()
        .offset
}

fn table(r: &RemotingCommand) -> Vec<(i32, i64)> {
    assert_eq!(r.code, SUCCESS, "{r:?}");
    ResetOffsetBody::decode(&r.body)
        .unwrap()
        .offset_table
        .into_iter()
        .map(|(mq, o)| (mq.queue_id, o))
        .collect()
}

/// A consumer client that forwards RESET_CONSUMER_CLIENT_OFFSET requests to a channel.
fn consumer_client() -> (
    RemotingClient,
    mpsc::UnboundedReceiver<(ResetOffsetRequestHeader, ResetOffsetBody, bool)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let router = Router::new().route(
        rc::RESET_CONSUMER_CLIENT_OFFSET,
        move |_ctx: RequestContext, req: RemotingCommand| {
            let h: ResetOffsetRequestHeader = req.decode_header().unwrap();
            let body = ResetOffsetBody::decode(&req.body).unwrap();
            let _ = tx.send((h, body, req.is_oneway()));
            HandlerFuture::no_reply()
        },
    );
    (
        RemotingClient::with_handler(RemotingConfig::default(), router),
        rx,
    )
}

#[tokio::test]
async fn reset_offset_moves_committed_offsets_to_the_time_and_notifies_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    for i in 0..4 {
        let r = b
            .call(send_v2(&send_header("RST", 0, &props(&[])), &[b'm', i]))
            .await;
        assert_eq!(r.code, SUCCESS, "{r:?}");
    }
    let queues = b
        .call(RemotingCommand::request_with_header(
            rc::GET_TOPIC_CONFIG,
            &GetTopicConfigRequestHeader {
                topic: "RST".into(),
            },
        ))
        .await;
    assert!(String::from_utf8_lossy(&queues.body).contains(r#""readQueueNums":4"#));
    // Where a search by the third record's store time lands (records may share a millisecond).
    let pulled = b.call(pull(&pull_header("G", "RST", 0, 0))).await;
    let stamps: Vec<i64> = records(&pulled.body)
        .iter()
        .map(|r| r.store_timestamp)
        .collect();
    assert_eq!(stamps.len(), 4);
    let ts = stamps[2];
    let expected = stamps.iter().position(|&t| t >= ts).unwrap() as i64;

    let (consumer, mut notified) = consumer_client();
    let hb = consumer
        .invoke(&b.addr, heartbeat("C1", "RG", "RST", "*"), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(hb.code, SUCCESS);
    assert_eq!(b.call(update_offset("RG", "RST", 0, 4)).await.code, SUCCESS);

    // Rewinding: queue 0 goes back to the time's position, the empty queues stay at 0.
    let r = b.call(reset("RG", "RST", ts, false)).await;
    assert_eq!(table(&r), vec![(0, expected), (1, 0), (2, 0), (3, 0)]);
    assert_eq!(committed(&b, "RG", "RST", 0).await, expected);
    let (h, body, oneway) = tokio::time::timeout(TIMEOUT, notified.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(oneway);
    assert_eq!(
        (h.group.as_str(), h.topic.as_str(), h.timestamp),
        ("RG", "RST", ts)
    );
    assert_eq!(
        body.offset_table
            .get(&MessageQueue::new("RST", "broker-a", 0)),
        Some(&expected)
    );
    assert_eq!(body.encode().unwrap(), r.body.to_vec());

    // Without force a later time does not move the offset forward; with force it does, and -1
    // means the end of the queue.
    let r = b.call(reset("RG", "RST", i64::MAX / 2, false)).await;
    assert_eq!(table(&r)[0], (0, expected));
    let r = b.call(reset("RG", "RST", -1, true)).await;
    assert_eq!(table(&r)[0], (0, 4));
    assert_eq!(committed(&b, "RG", "RST", 0).await, 4);
    let r = b.call(reset("RG", "RST", 0, true)).await;
    assert_eq!(table(&r)[0], (0, 0));
    assert_eq!(committed(&b, "RG", "RST", 0).await, 0);
    consumer.close();

    // Unknown topic or group.
    assert_eq!(
        b.call(reset("RG", "Nope", 0, true)).await.code,
        TOPIC_NOT_EXIST
    );
    assert_eq!(
        b.call(reset("Nobody", "RST", 0, true)).await.code,
        SUBSCRIPTION_GROUP_NOT_EXIST
    );
    b.stop().await;
}

#[tokio::test]
async fn reset_offset_without_online_consumers_still_writes_the_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    for _ in 0..3 {
        let r = b
            .call(send_v2(&send_header("RS2", 1, &props(&[])), b"x"))
            .await;
        assert_eq!(r.code, SUCCESS, "{r:?}");
    }
    let group = RemotingCommand::request(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
        .with_body(SubscriptionGroupConfig::new("OG").encode().unwrap());
    assert_eq!(b.call(group).await.code, SUCCESS);
    assert_eq!(b.call(update_offset("OG", "RS2", 1, 3)).await.code, SUCCESS);
    let r = b.call(reset("OG", "RS2", 0, true)).await;
    assert_eq!(table(&r)[1], (1, 0));
    assert_eq!(committed(&b, "OG", "RS2", 1).await, 0);

    // One queue to an explicit offset, checked against the queue's range.
    let mut one = ResetOffsetRequestHeader {
        group: "OG".into(),
        topic: "RS2".into(),
        queue_id: 1,
        offset: Some(2),
        timestamp: 0,
        is_force: true,
    };
    let r = b
        .call(RemotingCommand::request_with_header(
            rc::INVOKE_BROKER_TO_RESET_OFFSET,
            &one,
        ))
        .await;
    assert_eq!(table(&r), vec![(1, 2)]);
    assert_eq!(committed(&b, "OG", "RS2", 1).await, 2);
    one.offset = Some(9);
    let r = b
        .call(RemotingCommand::request_with_header(
            rc::INVOKE_BROKER_TO_RESET_OFFSET,
            &one,
        ))
        .await;
    assert_eq!(r.code, SYSTEM_ERROR, "{r:?}");
    b.stop().await;
}

fn update_config(body: &str) -> RemotingCommand {
    RemotingCommand::request(rc::UPDATE_BROKER_CONFIG).with_body(body.as_bytes().to_vec())
}

async fn config_text(b: &TestBroker) -> String {
    let r = b
        .call(RemotingCommand::request(rc::GET_BROKER_CONFIG))
        .await;
    assert_eq!(r.code, SUCCESS);
    String::from_utf8(r.body.to_vec()).unwrap()
}

#[tokio::test]
async fn update_broker_config_turns_auto_create_off_at_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    assert!(config_text(&b)
        .await
        .contains("autoCreateTopicEnable=true\n"));
    let r = b
        .call(send_v2(&send_header("Before", 0, &props(&[])), b"x"))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");

    let r = b
        .call(update_config(
            "# from mqadmin\nautoCreateTopicEnable=false\nlongPollingEnable : false\n",
        ))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let text = config_text(&b).await;
    assert!(text.contains("autoCreateTopicEnable=false\n"), "{text}");
    assert!(text.contains("longPollingEnable=false\n"), "{text}");
    let r = b
        .call(send_v2(&send_header("After", 0, &props(&[])), b"x"))
        .await;
    assert_eq!(r.code, TOPIC_NOT_EXIST, "{r:?}");
    // Existing topics are untouched.
    let r = b
        .call(send_v2(&send_header("Before", 0, &props(&[])), b"x"))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    b.stop().await;
}

#[tokio::test]
async fn update_broker_config_refuses_unknown_and_static_keys_and_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let r = b
        .call(update_config(
            "traceOn=false\nnoSuchKey=1\nbrokerName=other\n",
        ))
        .await;
    assert_eq!(r.code, INVALID_PARAMETER, "{r:?}");
    let remark = r.remark.unwrap_or_default();
    assert!(remark.contains("noSuchKey"), "{remark}");
    assert!(
        remark.contains("brokerName cannot be changed at runtime"),
        "{remark}"
    );
    assert!(!remark.contains("traceOn"), "{remark}");
    let r = b.call(update_config("brokerPermission=seven")).await;
    assert_eq!(r.code, INVALID_PARAMETER, "{r:?}");
    let text = config_text(&b).await;
    assert!(text.contains("traceOn=true\n"), "{text}");
    assert!(text.contains("brokerPermission=6\n"), "{text}");
    // An empty body changes nothing, as in RocketMQ.
    assert_eq!(b.call(update_config("")).await.code, SUCCESS);

    // A write-only broker refuses pulls from then on.
    let r = b
        .call(send_v2(&send_header("P", 0, &props(&[])), b"x"))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    assert_eq!(
        b.call(pull(&pull_header("G", "P", 0, 0))).await.code,
        SUCCESS
    );
    let r = b.call(update_config("brokerPermission=2")).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    assert!(config_text(&b).await.contains("brokerPermission=2\n"));
    let r = b.call(pull(&pull_header("G", "P", 0, 0))).await;
    assert_eq!(r.code, NO_PERMISSION, "{r:?}");
    b.stop().await;
}
