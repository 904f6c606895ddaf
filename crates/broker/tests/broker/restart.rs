//! What survives a restart: topics, subscription groups, consumer offsets, messages.

use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{GetTopicConfigRequestHeader, QueryConsumerOffsetResponseHeader};
use apogee_protocol::RemotingCommand;

use crate::common::*;
use crate::offsets::{query_offset, update_offset};

#[tokio::test]
async fn offsets_topics_and_messages_persist_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let mut h = send_header("Durable", 1, &props(&[]));
    h.default_topic_queue_nums = 3;
    assert_eq!(b.call(send_v2(&h, b"kept")).await.code, SUCCESS);
    assert_eq!(
        b.call(pull(&pull_header("CGR", "Durable", 1, 0)))
            .await
            .code,
        SUCCESS
    );
    assert_eq!(
        b.call(update_offset("CGR", "Durable", 1, 1)).await.code,
        SUCCESS
    );
    b.stop().await;
    assert!(dir.path().join("config/topics.json").exists());
    assert!(dir.path().join("config/consumerOffset.json").exists());
    assert!(dir.path().join("config/subscriptionGroup.json").exists());

    let b = TestBroker::start(config(dir.path())).await;
    let r = b.call(query_offset("CGR", "Durable", 1, Some(false))).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    assert_eq!(
        r.decode_header::<QueryConsumerOffsetResponseHeader>()
            .unwrap()
            .offset,
        1
    );
    let r = b
        .call(RemotingCommand::request_with_header(
            rc::GET_TOPIC_CONFIG,
            &GetTopicConfigRequestHeader {
                topic: "Durable".into(),
            },
        ))
        .await;
    assert_eq!(r.code, SUCCESS);
    assert!(String::from_utf8_lossy(&r.body).contains(r#""writeQueueNums":3"#));
    let recs = records(
        &b.call(pull(&pull_header("CGR", "Durable", 1, 0)))
            .await
            .body,
    );
    assert_eq!(recs.len(), 1);
    assert_eq!(&recs[0].body[..], b"kept");
    // Offsets keep growing after the restart.
    let r = b
        .call(send_v2(&send_header("Durable", 1, &props(&[])), b"next"))
        .await;
    assert_eq!(r.code, SUCCESS);
    let h: apogee_protocol::header::SendMessageResponseHeader = r.decode_header().unwrap();
    assert_eq!(h.queue_offset, 1);
    b.stop().await;
}

#[tokio::test]
async fn offsets_are_persisted_periodically_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.flush_consumer_offset_interval_ms = 100;
    let b = TestBroker::start(c).await;
    assert_eq!(
        b.call(send_v2(&send_header("TP", 0, &props(&[])), b"x"))
            .await
            .code,
        SUCCESS
    );
    assert_eq!(
        b.call(pull(&pull_header("CGP", "TP", 0, 0))).await.code,
        SUCCESS
    );
    assert_eq!(b.call(update_offset("CGP", "TP", 0, 1)).await.code, SUCCESS);
    let path = dir.path().join("config/consumerOffset.json");
    // The periodic task is the event here; check its output as it lands.
    let landed = async {
        let mut interval = tokio::time::interval(std::time::Duration::from_millis(20));
        loop {
            interval.tick().await;
            if std::fs::read_to_string(&path).is_ok_and(|t| t.contains(r#""TP@CGP":{0:1}"#)) {
                break;
            }
        }
    };
    tokio::time::timeout(TIMEOUT, landed)
        .await
        .expect("offsets persisted");
    b.stop().await;
}
