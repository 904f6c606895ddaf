//! Send and pull: records as sent, offsets, auto-create, the send checks and the pull corrections.

use apogee_broker::FlushDiskTypeConfig;
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{
    CreateTopicRequestHeader, GetTopicConfigRequestHeader, PullMessageResponseHeader,
    SendMessageResponseHeader, ViewMessageRequestHeader,
};
use apogee_protocol::message::id::offset_msg_id;
use apogee_protocol::message::{java_string_hash, OffsetMsgId};
use apogee_protocol::RemotingCommand;
use bytes::BytesMut;

use crate::common::*;

#[tokio::test]
async fn send_v1_v2_and_batch_then_pull_back_byte_exact_records() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;

    let p1 = props(&[
        ("TAGS", "TagA"),
        ("KEYS", "k1"),
        ("UNIQ_KEY", "AAAA0001"),
        ("WAIT", "true"),
    ]);
    let r1 = b.call(send_v1(&send_header("T1", 0, &p1), b"hello")).await;
    assert_eq!(r1.code, SUCCESS, "{r1:?}");
    assert_eq!(ext(&r1, "MSG_REGION"), "DefaultRegion");
    assert_eq!(ext(&r1, "TRACE_ON"), "true");
    let h1: SendMessageResponseHeader = r1.decode_header().unwrap();
    assert_eq!((h1.queue_id, h1.queue_offset), (0, 0));
    assert_eq!(h1.transaction_id.as_deref(), Some("AAAA0001"));

    let p2 = props(&[("TAGS", "TagB")]);
    let r2 = b.call(send_v2(&send_header("T1", 0, &p2), b"world")).await;
    assert_eq!(r2.code, SUCCESS, "{r2:?}");
    let h2: SendMessageResponseHeader = r2.decode_header().unwrap();
    assert_eq!(h2.queue_offset, 1);
    // The broker made a UNIQ_KEY for the message that had none.
    let generated = h2.transaction_id.clone().unwrap();
    assert_eq!(generated.len(), 32);

    let rb = b
        .call(send_batch(
            "T1",
            0,
            &[(b"b-one", "BBBB0001"), (b"b-two", "BBBB0002")],
        ))
        .await;
    assert_eq!(rb.code, SUCCESS, "{rb:?}");
    let hb: SendMessageResponseHeader = rb.decode_header().unwrap();
    assert_eq!(hb.queue_offset, 2);
    let batch_ids: Vec<&str> = hb.msg_id.split(',').collect();
    assert_eq!(batch_ids.len(), 2);

    let resp = b.call(pull(&pull_header("G", "T1", 0, 0))).await;
    assert_eq!(resp.code, SUCCESS, "{resp:?}");
    assert_eq!(resp.remark.as_deref(), Some("FOUND"));
    let ph: PullMessageResponseHeader = resp.decode_header().unwrap();
    assert_eq!(
        (ph.next_begin_offset, ph.min_offset, ph.max_offset),
        (4, 0, 4)
    );
    let recs = records(&resp.body);
    assert_eq!(recs.len(), 4);
    let bodies: Vec<&[u8]> = recs.iter().map(|r| &r.body[..]).collect();
    assert_eq!(bodies, [&b"hello"[..], b"world", b"b-one", b"b-two"]);
    let store_host: std::net::SocketAddr = b.addr.parse().unwrap();
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.topic, "T1");
        assert_eq!(r.queue_offset, i as i64);
        assert_eq!(r.store_host, store_host);
        assert_eq!(r.born_host.ip().to_string(), "127.0.0.1");
        assert_eq!(r.born_timestamp, 1_700_000_000_000);
        assert!(r.body_crc_matches());
        assert_eq!(
            r.property("CLUSTER").as_deref(),
            if i < 2 { Some("DefaultCluster") } else { None }
        );
    }
    assert_eq!((recs[0].flag, recs[2].flag), (7, 3));
    assert_eq!(recs[0].uniq_key().as_deref(), Some("AAAA0001"));
    assert_eq!(recs[0].keys().collect::<Vec<_>>(), ["k1"]);
    assert_eq!(recs[1].uniq_key().as_deref(), Some(generated.as_str()));
    assert_eq!(recs[2].uniq_key().as_deref(), Some("BBBB0001"));
    assert_eq!(recs[3].uniq_key().as_deref(), Some("BBBB0002"));
    assert_eq!(
        h1.msg_id,
        offset_msg_id(store_host, recs[0].physical_offset)
    );
    assert_eq!(
        batch_ids[1],
        offset_msg_id(store_host, recs[3].physical_offset)
    );

    // The pull body is the stored bytes, record for record.
    let mut stored = BytesMut::new();
    for id in std::iter::once(h1.msg_id.as_str())
        .chain([h2.msg_id.as_str()])
        .chain(batch_ids)
    {
        let off = OffsetMsgId::parse(id).unwrap().physical_offset;
        let view = b
            .call(RemotingCommand::request_with_header(
                rc::VIEW_MESSAGE_BY_ID,
                &ViewMessageRequestHeader {
                    topic: None,
                    offset: off,
                },
            ))
            .await;
        assert_eq!(view.code, SUCCESS);
        stored.extend_from_slice(&view.body);
    }
    assert_eq!(&stored[..], &resp.body[..]);

    // Reading from the middle, with a message count limit.
    let mut h = pull_header("G", "T1", 0, 1);
    h.max_msg_nums = 2;
    let resp = b.call(pull(&h)).await;
    let ph: PullMessageResponseHeader = resp.decode_header().unwrap();
    assert_eq!(ph.next_begin_offset, 3);
    assert_eq!(records(&resp.body).len(), 2);
    b.stop().await;
}

#[tokio::test]
async fn new_topic_is_auto_created_from_tbw102_with_the_smaller_queue_count() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let mut h = send_header("Fresh", -1, &props(&[]));
    h.default_topic_queue_nums = 4;
    let r = b.call(send_v2(&h, b"x")).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let sent: SendMessageResponseHeader = r.decode_header().unwrap();
    assert!((0..4).contains(&sent.queue_id));

    let cfg = b
        .call(RemotingCommand::request_with_header(
            rc::GET_TOPIC_CONFIG,
            &GetTopicConfigRequestHeader {
                topic: "Fresh".into(),
            },
        ))
        .await;
    assert_eq!(cfg.code, SUCCESS);
    let text = String::from_utf8(cfg.body.to_vec()).unwrap();
    assert!(
        text.contains(r#""writeQueueNums":4"#) && text.contains(r#""perm":6"#),
        "{text}"
    );

    // Asking for more queues than the template has gives the template's count.
    let mut h = send_header("Wide", -1, &props(&[]));
    h.default_topic_queue_nums = 64;
    assert_eq!(b.call(send_v2(&h, b"x")).await.code, SUCCESS);
    let cfg = b
        .call(RemotingCommand::request_with_header(
            rc::GET_TOPIC_CONFIG,
            &GetTopicConfigRequestHeader {
                topic: "Wide".into(),
            },
        ))
        .await;
    assert!(String::from_utf8_lossy(&cfg.body).contains(r#""writeQueueNums":8"#));

    // Without inherit permission on the template, nothing is created.
    let mut h = send_header("Orphan", 0, &props(&[]));
    h.default_topic = "Fresh".into();
    let r = b.call(send_v2(&h, b"x")).await;
    assert_eq!(r.code, TOPIC_NOT_EXIST, "{r:?}");
    assert_eq!(ext(&r, "MSG_REGION"), "DefaultRegion");
    b.stop().await;
}

#[tokio::test]
async fn auto_create_off_refuses_unknown_topics() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.auto_create_topic_enable = false;
    let b = TestBroker::start(c).await;
    let r = b
        .call(send_v2(&send_header("Nope", 0, &props(&[])), b"x"))
        .await;
    assert_eq!(r.code, TOPIC_NOT_EXIST);
    b.stop().await;
}

#[tokio::test]
async fn send_checks_answer_rocketmq_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_message_size_bytes = 1024;
    let b = TestBroker::start(c).await;

    let r = b
        .call(send_v2(&send_header("bad topic!", 0, &props(&[])), b"x"))
        .await;
    assert_eq!(r.code, INVALID_PARAMETER, "{r:?}");
    assert!(r.remark.unwrap().contains("illegal characters"));
    let long = "t".repeat(128);
    assert_eq!(
        b.call(send_v2(&send_header(&long, 0, &props(&[])), b"x"))
            .await
            .code,
        INVALID_PARAMETER
    );

    let r = b
        .call(send_v2(&send_header("T", 0, &props(&[])), &[0u8; 1025]))
        .await;
    assert_eq!(r.code, MESSAGE_ILLEGAL, "{r:?}");
    assert_eq!(
        b.call(send_v2(&send_header("T", 0, &props(&[])), &[0u8; 1024]))
            .await
            .code,
        SUCCESS
    );

    let r = b
        .call(send_v2(
            &send_header("SCHEDULE_TOPIC_XXXX", 0, &props(&[])),
            b"x",
        ))
        .await;
    assert_eq!(r.code, NO_PERMISSION);

    let r = b
        .call(send_v2(&send_header("T", 99, &props(&[])), b"x"))
        .await;
    assert_eq!(r.code, INVALID_PARAMETER);

    let r = b.call(send_batch("%RETRY%G", 0, &[(b"a", "U1")])).await;
    assert_eq!(r.code, MESSAGE_ILLEGAL);

    let mut broken = send_batch("T", 0, &[(b"a", "U1")]);
    broken.body = broken.body.slice(..broken.body.len() - 3);
    assert_eq!(b.call(broken).await.code, MESSAGE_ILLEGAL);

    let big_props = props(&[("KEYS", &"k".repeat(40_000))]);
    let r = b
        .call(send_v2(&send_header("T", 0, &big_props), b"x"))
        .await;
    assert_eq!(r.code, MESSAGE_ILLEGAL, "{r:?}");
    b.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_error_responses_and_the_broker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;

    let r = b.call(RemotingCommand::request(9999)).await;
    assert_eq!(r.code, REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        r.remark.as_deref(),
        Some(" request type 9999 not supported")
    );

    let mut garbage = send_v2(&send_header("T", 0, &props(&[])), b"x");
    garbage.ext_fields.insert("e", "not-a-number");
    let r = b.call(garbage).await;
    assert_eq!(r.code, SYSTEM_ERROR);
    assert!(r.remark.unwrap().contains('e'));

    let mut missing = pull(&pull_header("G", "T", 0, 0));
    missing.ext_fields.remove("topic");
    let r = b.call(missing).await;
    assert_eq!(r.code, SYSTEM_ERROR);
    assert!(r.remark.unwrap().contains("topic"));

    for body in [&b""[..], b"{", b"\xff\xfe", b"{\"consumerDataSet\":7}"] {
        let r = b
            .call(RemotingCommand::request(rc::HEART_BEAT).with_body(body.to_vec()))
            .await;
        assert_eq!(r.code, SYSTEM_ERROR, "{body:?}");
    }
    for body in [&b""[..], b"{", b"\xff\xfe", b"{\"mqSet\":{\"a\":1}}"] {
        let r = b
            .call(RemotingCommand::request(rc::LOCK_BATCH_MQ).with_body(body.to_vec()))
            .await;
        assert_eq!(r.code, SYSTEM_ERROR, "{body:?}");
    }
    let r = b
        .call(RemotingCommand::request(rc::UPDATE_AND_CREATE_TOPIC))
        .await;
    assert_eq!(r.code, SYSTEM_ERROR);

    // Still serving.
    assert_eq!(
        b.call(send_v2(&send_header("T", 0, &props(&[])), b"x"))
            .await
            .code,
        SUCCESS
    );
    b.stop().await;
}

#[tokio::test]
async fn pull_filters_by_tag_hash() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    for tag in ["TagA", "TagB", "TagC", "TagA"] {
        let r = b
            .call(send_v2(
                &send_header("TF", 0, &props(&[("TAGS", tag)])),
                tag.as_bytes(),
            ))
            .await;
        assert_eq!(r.code, SUCCESS);
    }
    let mut h = pull_header("G", "TF", 0, 0);
    h.subscription = Some("TagA || TagC".into());
    let resp = b.call(pull(&h)).await;
    assert_eq!(resp.code, SUCCESS);
    let tags: Vec<String> = records(&resp.body)
        .iter()
        .map(|r| r.tags().unwrap().into_owned())
        .collect();
    assert_eq!(tags, ["TagA", "TagC", "TagA"]);
    let ph: PullMessageResponseHeader = resp.decode_header().unwrap();
    assert_eq!(ph.next_begin_offset, 4);

    // Only unmatched entries ahead: retry at once from past them.
    let mut h = pull_header("G", "TF", 0, 1);
    h.subscription = Some("TagB".into());
    h.max_msg_nums = 1;
    let resp = b.call(pull(&h)).await;
    assert_eq!(resp.code, SUCCESS);
    let mut h = pull_header("G", "TF", 0, 2);
    h.subscription = Some("TagZ".into());
    let resp = b.call(pull(&h)).await;
    assert_eq!(resp.code, PULL_RETRY_IMMEDIATELY);
    assert_eq!(resp.remark.as_deref(), Some("NO_MATCHED_MESSAGE"));
    let ph: PullMessageResponseHeader = resp.decode_header().unwrap();
    assert_eq!(ph.next_begin_offset, 4);

    let mut h = pull_header("G", "TF", 0, 0);
    h.expression_type = Some("SQL92".into());
    h.subscription = Some("a > 1".into());
    // SQL92 is on by default; these messages have no `a` (see sql_filter.rs for more).
    assert_eq!(b.call(pull(&h)).await.code, PULL_RETRY_IMMEDIATELY);
    let mut h = pull_header("G", "TF", 0, 0);
    h.subscription = Some("||".into());
    assert_eq!(b.call(pull(&h)).await.code, SUBSCRIPTION_PARSE_FAILED);
    assert_eq!(java_string_hash("TagA"), 2_598_919);
    b.stop().await;
}

#[tokio::test]
async fn pull_corrects_bad_offsets_as_rocketmq_does() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    for _ in 0..3 {
        assert_eq!(
            b.call(send_v2(&send_header("TO", 1, &props(&[])), b"m"))
                .await
                .code,
            SUCCESS
        );
    }
    let check = |resp: &RemotingCommand, code: i32, remark: &str, next: i64| {
        assert_eq!(resp.code, code, "{resp:?}");
        assert_eq!(resp.remark.as_deref(), Some(remark));
        let h: PullMessageResponseHeader = resp.decode_header().unwrap();
        assert_eq!(h.next_begin_offset, next);
        assert_eq!((h.min_offset, h.max_offset), (0, 3));
    };
    // At the end: nothing new.
    check(
        &b.call(pull(&pull_header("G", "TO", 1, 3))).await,
        PULL_NOT_FOUND,
        "OFFSET_OVERFLOW_ONE",
        3,
    );
    // Past the end: moved back to the max.
    check(
        &b.call(pull(&pull_header("G", "TO", 1, 9))).await,
        PULL_OFFSET_MOVED,
        "OFFSET_OVERFLOW_BADLY",
        3,
    );
    // Below the start: moved up to the min.
    check(
        &b.call(pull(&pull_header("G", "TO", 1, -5))).await,
        PULL_OFFSET_MOVED,
        "OFFSET_TOO_SMALL",
        0,
    );
    // An empty queue: offset 0 is "not found", anything else moves to 0.
    let empty0 = b.call(pull(&pull_header("G", "TO", 2, 0))).await;
    assert_eq!(empty0.code, PULL_NOT_FOUND);
    let empty5 = b.call(pull(&pull_header("G", "TO", 2, 5))).await;
    assert_eq!(empty5.code, PULL_OFFSET_MOVED);
    let h: PullMessageResponseHeader = empty5.decode_header().unwrap();
    assert_eq!(h.next_begin_offset, 0);

    // Unknown topic, bad queue, no registered subscription.
    assert_eq!(
        b.call(pull(&pull_header("G", "Nope", 0, 0))).await.code,
        TOPIC_NOT_EXIST
    );
    assert_eq!(
        b.call(pull(&pull_header("G", "TO", 99, 0))).await.code,
        INVALID_PARAMETER
    );
    let mut h = pull_header("G", "TO", 0, 0);
    h.sys_flag = 0;
    assert_eq!(b.call(pull(&h)).await.code, SUBSCRIPTION_NOT_EXIST);
    b.stop().await;
}

#[tokio::test]
async fn compressed_bodies_are_stored_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let compressed = apogee_protocol::message::CompressionType::Zlib
        .compress(&[b'z'; 8192], 5)
        .unwrap();
    let mut h = send_header("TZ", 0, &props(&[]));
    h.sys_flag = 0x301;
    assert_eq!(b.call(send_v2(&h, &compressed)).await.code, SUCCESS);
    let recs = records(&b.call(pull(&pull_header("G", "TZ", 0, 0))).await.body);
    assert_eq!(recs[0].sys_flag, 0x301);
    assert_eq!(&recs[0].body[..], &compressed[..]);
    assert!(recs[0].body_crc_matches());
    b.stop().await;
}

#[tokio::test]
async fn sync_flush_send_answers_after_the_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.flush_disk_type = FlushDiskTypeConfig::SyncFlush;
    let b = TestBroker::start(c).await;
    let r = b
        .call(send_v2(
            &send_header("TS", 0, &props(&[("WAIT", "true")])),
            b"durable",
        ))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let r = b
        .call(send_v2(
            &send_header("TS", 0, &props(&[("WAIT", "false")])),
            b"fast",
        ))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let resp = b.call(pull(&pull_header("G", "TS", 0, 0))).await;
    assert_eq!(records(&resp.body).len(), 2);
    b.stop().await;
}

#[tokio::test]
async fn retry_topic_sends_go_to_the_dlq_past_max_reconsume_times() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let mut h = send_header("%RETRY%CG", 0, &props(&[]));
    h.reconsume_times = Some(3);
    let r = b.call(send_v2(&h, b"again")).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    assert_eq!(
        records(
            &b.call(pull(&pull_header("CG", "%RETRY%CG", 0, 0)))
                .await
                .body
        )
        .len(),
        1
    );

    h.reconsume_times = Some(17);
    let r = b.call(send_v2(&h, b"dead")).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let dlq = records(&b.call(pull(&pull_header("CG", "%DLQ%CG", 0, 0))).await.body);
    assert_eq!(dlq.len(), 1);
    assert_eq!(&dlq[0].body[..], b"dead");
    assert_eq!(dlq[0].property("DELAY").as_deref(), Some("-1"));

    // A header max applies from client version V3_4_9 on.
    h.reconsume_times = Some(2);
    h.max_reconsume_times = Some(1);
    assert_eq!(b.call(send_v2(&h, b"dead2")).await.code, SUCCESS);
    assert_eq!(
        records(&b.call(pull(&pull_header("CG", "%DLQ%CG", 0, 0))).await.body).len(),
        2
    );

    // An unknown group with auto-create off cannot take retries.
    let dir2 = tempfile::tempdir().unwrap();
    let mut c = config(dir2.path());
    c.auto_create_subscription_group = false;
    let b2 = TestBroker::start(c).await;
    let r = b2
        .call(send_v2(&send_header("%RETRY%Nobody", 0, &props(&[])), b"x"))
        .await;
    assert_eq!(r.code, SUBSCRIPTION_GROUP_NOT_EXIST, "{r:?}");
    b2.stop().await;

    let create = CreateTopicRequestHeader {
        topic: "Admin1".into(),
        default_topic: "TBW102".into(),
        read_queue_nums: 2,
        write_queue_nums: 2,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".into(),
        topic_sys_flag: None,
        order: false,
        attributes: None,
        force: false,
    };
    let r = b
        .call(RemotingCommand::request_with_header(
            rc::UPDATE_AND_CREATE_TOPIC,
            &create,
        ))
        .await;
    assert_eq!(r.code, SUCCESS);
    b.stop().await;
}
