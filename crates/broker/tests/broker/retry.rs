//! CONSUMER_SEND_MSG_BACK: a message handed back goes to %RETRY%<group> through a delay level,
//! comes back with the same message id, and lands in %DLQ%<group> after the last retry.

use std::path::Path;

use apogee_broker::BrokerConfig;
use apogee_protocol::body::{JsonBody, SubscriptionGroupConfig};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::ConsumerSendMsgBackRequestHeader;
use apogee_protocol::message::{MessageRecord, OffsetMsgId};
use apogee_protocol::RemotingCommand;

use crate::common::*;
use crate::delay::{all_records, topic_config, wait_records};

/// Every delay level is one second: retries come back quickly.
fn retry_config(dir: &Path) -> BrokerConfig {
    let mut c = config(dir);
    c.message_delay_level = vec!["1s"; 20].join(" ");
    c
}

fn send_back(offset: i64, group: &str, delay_level: i32, max: Option<i32>) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::CONSUMER_SEND_MSG_BACK,
        &ConsumerSendMsgBackRequestHeader {
            offset,
            group: group.into(),
            delay_level,
            origin_msg_id: Some("ORIGIN".into()),
            origin_topic: Some("RTopic".into()),
            unit_mode: false,
            max_reconsume_times: max,
        },
    )
}

async fn send_one(b: &TestBroker, topic: &str, uniq: &str) -> MessageRecord {
    let p = props(&[("UNIQ_KEY", uniq), ("TAGS", "TagR"), ("KEYS", "rk")]);
    assert_eq!(
        b.call(send_v2(&send_header(topic, 0, &p), b"payload"))
            .await
            .code,
        SUCCESS
    );
    all_records(b, topic, 0)
        .await
        .into_iter()
        .find(|r| r.uniq_key().as_deref() == Some(uniq))
        .expect("sent message")
}

#[tokio::test]
async fn a_message_sent_back_retries_with_a_delay_then_goes_to_the_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(retry_config(dir.path())).await;
    let original = send_one(&b, "RTopic", "R0000001").await;
    let origin_id = OffsetMsgId::new(original.store_host, original.physical_offset).to_string();

    // First failure: level 3 + 0, through SCHEDULE_TOPIC_XXXX queue 2.
    let r = b
        .call(send_back(original.physical_offset, "CGR", 0, Some(2)))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let waiting = all_records(&b, "SCHEDULE_TOPIC_XXXX", 2).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        waiting[0].property("REAL_TOPIC").as_deref(),
        Some("%RETRY%CGR")
    );
    assert_eq!(waiting[0].property("DELAY").as_deref(), Some("3"));
    let config = topic_config(&b, "%RETRY%CGR").await;
    assert!(config.contains(r#""writeQueueNums":1"#), "{config}");

    let retry = wait_records(&b, "%RETRY%CGR", 0, 1).await;
    let first = &retry[0];
    assert_eq!(first.uniq_key().as_deref(), Some("R0000001"));
    assert_eq!(&first.body[..], b"payload");
    assert_eq!(first.tags().as_deref(), Some("TagR"));
    assert_eq!(first.reconsume_times, 1);
    assert_eq!(first.property("RETRY_TOPIC").as_deref(), Some("RTopic"));
    assert_eq!(
        first.property("ORIGIN_MESSAGE_ID").as_deref(),
        Some(origin_id.as_str())
    );
    assert_eq!(first.property("RECONSUME_TIME").as_deref(), Some("1"));
    assert_eq!(first.property("MAX_RECONSUME_TIMES").as_deref(), Some("2"));
    assert_eq!(first.born_timestamp, original.born_timestamp);

    // Second failure: level 3 + 1; the origin id and retry topic stay those of the first hop.
    let r = b
        .call(send_back(first.physical_offset, "CGR", 0, Some(2)))
        .await;
    assert_eq!(r.code, SUCCESS);
    assert_eq!(all_records(&b, "SCHEDULE_TOPIC_XXXX", 3).await.len(), 1);
    let retry = wait_records(&b, "%RETRY%CGR", 0, 2).await;
    let second = &retry[1];
    assert_eq!(second.reconsume_times, 2);
    assert_eq!(second.uniq_key().as_deref(), Some("R0000001"));
    assert_eq!(second.property("RETRY_TOPIC").as_deref(), Some("RTopic"));
    assert_eq!(
        second.property("ORIGIN_MESSAGE_ID").as_deref(),
        Some(origin_id.as_str())
    );

    // Third failure: max reconsume times reached, to the DLQ at once.
    let r = b
        .call(send_back(second.physical_offset, "CGR", 0, Some(2)))
        .await;
    assert_eq!(r.code, SUCCESS);
    let dlq = all_records(&b, "%DLQ%CGR", 0).await;
    assert_eq!(dlq.len(), 1);
    let dead = &dlq[0];
    assert_eq!(dead.uniq_key().as_deref(), Some("R0000001"));
    assert_eq!(dead.reconsume_times, 3);
    assert_eq!(dead.property("DELAY").as_deref(), Some("0"));
    assert_eq!(dead.property("DLQ_ORIGIN_TOPIC").as_deref(), Some("RTopic"));
    assert_eq!(
        dead.property("DLQ_ORIGIN_MESSAGE_ID").as_deref(),
        Some("R0000001")
    );
    let config = topic_config(&b, "%DLQ%CGR").await;
    assert!(config.contains(r#""perm":6"#), "{config}");
    assert!(config.contains(r#""readQueueNums":1"#), "{config}");
    assert_eq!(all_records(&b, "%RETRY%CGR", 0).await.len(), 2);
    b.stop().await;
}

#[tokio::test]
async fn delay_level_minus_one_and_the_groups_max_send_to_the_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(retry_config(dir.path())).await;
    let m = send_one(&b, "RT2", "R0000002").await;
    let r = b.call(send_back(m.physical_offset, "CG2", -1, None)).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    assert_eq!(all_records(&b, "%DLQ%CG2", 0).await.len(), 1);

    // Without a header max (or from an old client), the group's retryMaxTimes counts.
    let mut g = SubscriptionGroupConfig::new("CG3");
    g.retry_max_times = 0;
    let r = b
        .call(
            RemotingCommand::request(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(g.encode().unwrap()),
        )
        .await;
    assert_eq!(r.code, SUCCESS);
    let mut old_client = send_back(m.physical_offset, "CG3", 0, Some(16));
    old_client.version = 100;
    assert_eq!(b.call(old_client).await.code, SUCCESS);
    assert_eq!(all_records(&b, "%DLQ%CG3", 0).await.len(), 1);
    b.stop().await;
}

#[tokio::test]
async fn send_back_refusals_and_a_group_without_retry_queues() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = retry_config(dir.path());
    c.auto_create_subscription_group = false;
    let b = TestBroker::start(c).await;
    let m = send_one(&b, "RT3", "R0000003").await;
    let r = b
        .call(send_back(m.physical_offset, "Unknown", 0, None))
        .await;
    assert_eq!(r.code, SUBSCRIPTION_GROUP_NOT_EXIST, "{r:?}");

    let mut g = SubscriptionGroupConfig::new("NoRetry");
    g.retry_queue_nums = 0;
    let r = b
        .call(
            RemotingCommand::request(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(g.encode().unwrap()),
        )
        .await;
    assert_eq!(r.code, SUCCESS);
    // Dropped, and the consumer is told all is well.
    let r = b
        .call(send_back(m.physical_offset, "NoRetry", 0, None))
        .await;
    assert_eq!(r.code, SUCCESS);
    assert!(all_records(&b, "SCHEDULE_TOPIC_XXXX", 2).await.is_empty());

    let r = b
        .call(send_back(
            m.physical_offset + 1_000_000,
            "TOOLS_CONSUMER",
            0,
            None,
        ))
        .await;
    assert_eq!(r.code, SYSTEM_ERROR);
    assert!(r.remark.unwrap().contains("look message by offset failed"));
    b.stop().await;
}

#[tokio::test]
async fn a_retry_topic_send_with_a_delay_level_waits_like_any_delayed_message() {
    // What a client does when CONSUMER_SEND_MSG_BACK fails: a plain send to %RETRY%<group>.
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(retry_config(dir.path())).await;
    let p = props(&[
        ("UNIQ_KEY", "R0000004"),
        ("DELAY", "4"),
        ("RETRY_TOPIC", "RT4"),
        ("RECONSUME_TIME", "1"),
        ("MAX_RECONSUME_TIMES", "16"),
    ]);
    let mut h = send_header("%RETRY%CG4", 0, &p);
    h.reconsume_times = Some(1);
    h.max_reconsume_times = Some(16);
    let r = b.call(send_v2(&h, b"fallback")).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    assert_eq!(all_records(&b, "SCHEDULE_TOPIC_XXXX", 3).await.len(), 1);
    let got = wait_records(&b, "%RETRY%CG4", 0, 1).await;
    assert_eq!(got[0].uniq_key().as_deref(), Some("R0000004"));
    assert_eq!(got[0].reconsume_times, 1);
    // A consumer pulls its retry topic like any other.
    let resp = b.call(pull(&pull_header("CG4", "%RETRY%CG4", 0, 0))).await;
    assert_eq!(resp.code, SUCCESS);
    assert_eq!(records(&resp.body).len(), 1);
    b.stop().await;
}
