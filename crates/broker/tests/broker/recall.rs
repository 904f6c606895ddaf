//! RECALL_MESSAGE (370) and the send response's `recallHandle`: a timer message's handle recalls
//! it before its time, and every refusal carries RocketMQ 5.3's code and remark.

use std::path::Path;

use apogee_broker::BrokerConfig;
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{
    RecallHandle, RecallMessageRequestHeader, RecallMessageResponseHeader,
    SendMessageResponseHeader,
};
use apogee_protocol::RemotingCommand;

use crate::common::*;
use crate::delay::{all_records, uniq_keys, wait_for, wait_records};

const TICK_MS: i64 = 100;

fn recall_config(dir: &Path) -> BrokerConfig {
    let mut c = config(dir);
    c.timer_precision_ms = TICK_MS as u64;
    c.message_delay_level = "1s 2s".into();
    c
}

fn now_ms() -> i64 {
    apogee_broker::manager::now_ms()
}

fn rounded(deliver_ms: i64) -> i64 {
    if deliver_ms % TICK_MS == 0 {
        deliver_ms - TICK_MS
    } else {
        deliver_ms / TICK_MS * TICK_MS
    }
}

fn recall(topic: &str, handle: &str) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::RECALL_MESSAGE,
        &RecallMessageRequestHeader {
            producer_group: Some("PG".into()),
            topic: topic.into(),
            recall_handle: handle.into(),
        },
    )
}

/// Sends `uniq` to `topic` queue 1 with `extra` properties; returns the response's recallHandle.
async fn send(b: &TestBroker, topic: &str, uniq: &str, extra: &[(&str, &str)]) -> Option<String> {
    let mut pairs = vec![("UNIQ_KEY", uniq), ("TAGS", "TT")];
    pairs.extend_from_slice(extra);
    let r = b
        .call(send_v2(&send_header(topic, 1, &props(&pairs)), b"body"))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let h: SendMessageResponseHeader = r.decode_header().unwrap();
    h.recall_handle
}

#[tokio::test]
async fn a_recalled_timer_message_is_never_delivered_and_a_delivered_one_cannot_be_recalled() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(recall_config(dir.path())).await;
    let deliver_ms = now_ms() + 1_200;
    let at = deliver_ms.to_string();
    let recalled = send(&b, "RT", "R0000001", &[("TIMER_DELIVER_MS", &at)])
        .await
        .expect("a timer message gets a recall handle");
    let kept = send(&b, "RT", "R0000002", &[("TIMER_DELIVER_MS", &at)])
        .await
        .expect("a recall handle");
    assert_eq!(
        RecallHandle::decode(&recalled).unwrap(),
        RecallHandle {
            topic: "RT".into(),
            broker_name: "broker-a".into(),
            timestamp: (rounded(deliver_ms) + 1).to_string(),
            message_id: "R0000001".into(),
        }
    );
    // SEND_MESSAGE (long header) and relative timers get one too.
    let v1 = b
        .call(send_v1(
            &send_header(
                "RT",
                1,
                &props(&[("UNIQ_KEY", "R0000003"), ("TIMER_DELAY_SEC", "60")]),
            ),
            b"x",
        ))
        .await;
    let v1: SendMessageResponseHeader = v1.decode_header().unwrap();
    assert_eq!(
        RecallHandle::decode(v1.recall_handle.as_deref().unwrap())
            .unwrap()
            .message_id,
        "R0000003"
    );

    let r = b.call(recall("RT", &recalled)).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    assert_eq!(ext(&r, "MSG_REGION"), "DefaultRegion");
    let h: RecallMessageResponseHeader = r.decode_header().unwrap();
    assert_eq!(h.msg_id, "R0000001");

    let got = wait_records(&b, "RT", 1, 1).await;
    wait_for("the timer cursor to pass the tick", || async {
        let s = b.handle.timer_stats().unwrap();
        ((s.cursor_tick + 1) * TICK_MS > deliver_ms).then_some(())
    })
    .await;
    assert_eq!(uniq_keys(&got), ["R0000002"]);
    assert_eq!(uniq_keys(&all_records(&b, "RT", 1).await), ["R0000002"]);
    assert_eq!(b.handle.timer_stats().unwrap().cancelled, 1);

    let late = b.call(recall("RT", &kept)).await;
    assert_eq!(late.code, ILLEGAL_OPERATION, "{late:?}");
    assert_eq!(
        late.remark.as_deref(),
        Some("recall failed, timestamp invalid")
    );
    b.stop().await;
}

#[tokio::test]
async fn delay_levels_batches_and_plain_messages_carry_no_recall_handle() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(recall_config(dir.path())).await;
    assert_eq!(send(&b, "NH", "N0000001", &[]).await, None);
    assert_eq!(send(&b, "NH", "N0000002", &[("DELAY", "2")]).await, None);
    let r = b
        .call(send_batch(
            "NH",
            1,
            &[(b"a", "N0000003"), (b"b", "N0000004")],
        ))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let h: SendMessageResponseHeader = r.decode_header().unwrap();
    assert_eq!(h.recall_handle, None);
    b.stop().await;
}

#[tokio::test]
async fn recall_refusals_carry_rocketmq_codes_and_remarks() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(recall_config(dir.path())).await;
    let at = (now_ms() + 60_000).to_string();
    let handle = send(&b, "RA", "A0000001", &[("TIMER_DELIVER_MS", &at)])
        .await
        .unwrap();
    send(&b, "RB", "B0000001", &[]).await;
    let decoded = RecallHandle::decode(&handle).unwrap();
    let with = |f: &dyn Fn(&mut RecallHandle)| {
        let mut h = decoded.clone();
        f(&mut h);
        h.encode()
    };
    let cases = [
        (
            recall("NoSuchTopic", &handle),
            TOPIC_NOT_EXIST,
            "recall failed, the topic[NoSuchTopic] not exist",
        ),
        (
            recall("RA", "not a handle"),
            ILLEGAL_OPERATION,
            "recall handle is invalid",
        ),
        (
            recall("RA", ""),
            ILLEGAL_OPERATION,
            "recall handle is invalid",
        ),
        (
            recall("RB", &handle),
            ILLEGAL_OPERATION,
            "recall failed, topic not match",
        ),
        (
            recall("RA", &with(&|h| h.broker_name = "broker-b".into())),
            ILLEGAL_OPERATION,
            "recall failed, broker service not available",
        ),
        (
            recall("RA", &with(&|h| h.timestamp = (now_ms() - 1).to_string())),
            ILLEGAL_OPERATION,
            "recall failed, timestamp invalid",
        ),
        (
            recall("RA", &with(&|h| h.timestamp = "soon".into())),
            ILLEGAL_OPERATION,
            "recall failed, timestamp invalid",
        ),
        (
            recall(
                "RA",
                &with(&|h| h.timestamp = (now_ms() + 259_200_000 + 60_000).to_string()),
            ),
            ILLEGAL_OPERATION,
            "recall failed, timestamp invalid",
        ),
    ];
    for (request, code, remark) in cases {
        let r = b.call(request).await;
        assert_eq!((r.code, r.remark.as_deref()), (code, Some(remark)));
        assert_eq!(ext(&r, "MSG_REGION"), "DefaultRegion");
    }
    // No recallHandle field at all: the header does not decode.
    let mut bare = recall("RA", &handle);
    bare.ext_fields.remove("recallHandle");
    assert_eq!(b.call(bare).await.code, SYSTEM_ERROR);
    // A well-formed handle for a message the broker does not know: Java stores the marker anyway.
    let unknown = with(&|h| h.message_id = "UNKNOWN1".into());
    let r = b.call(recall("RA", &unknown)).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let h: RecallMessageResponseHeader = r.decode_header().unwrap();
    assert_eq!(h.msg_id, "UNKNOWN1");
    // The real one still recalls.
    assert_eq!(b.call(recall("RA", &handle)).await.code, SUCCESS);
    b.stop().await;
}

#[tokio::test]
async fn recall_is_refused_when_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = recall_config(dir.path());
    c.recall_message_enable = false;
    let b = TestBroker::start(c).await;
    let at = (now_ms() + 60_000).to_string();
    let handle = send(&b, "RO", "O0000001", &[("TIMER_DELIVER_MS", &at)])
        .await
        .unwrap();
    let r = b.call(recall("RO", &handle)).await;
    assert_eq!(r.code, NO_PERMISSION);
    assert_eq!(
        r.remark.as_deref(),
        Some("recall failed, operation is forbidden")
    );
    b.stop().await;
}
