//! POP consumption over the 4.x codes: pop, ack, batch ack, change of invisible time,
//! redelivery, DLQ, FIFO, long polling, restart. Invisible times are a few hundred ms and every
//! wait is a long-polling pop that returns as soon as the message is poppable again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use apogee_protocol::body::{
    BatchAck, BatchAckMessageRequestBody, JsonBody, SubscriptionGroupConfig,
};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    PopMessageRequestHeader, PopMessageResponseHeader,
};
use apogee_protocol::message::MessageRecord;
use apogee_protocol::RemotingCommand;

use crate::common::*;

const G: &str = "PopGroup";

fn pop_cmd(topic: &str, queue_id: i32, invisible: i64, poll: i64, order: bool) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::POP_MESSAGE,
        &PopMessageRequestHeader {
            consumer_group: G.into(),
            topic: topic.into(),
            queue_id,
            max_msg_nums: 32,
            invisible_time: invisible,
            poll_time: poll,
            born_time: 0,
            init_mode: 0,
            exp_type: Some("TAG".into()),
            exp: Some("*".into()),
            order,
            attempt_id: None,
        },
    )
}

/// A popped message with the POP_CK a Java client builds from the response header.
struct Popped {
    rec: MessageRecord,
    extra_info: String,
}

/// Decodes a pop response as `MQClientAPIImpl.processPopResponse` does.
fn popped(r: &RemotingCommand) -> Vec<Popped> {
    if r.code != SUCCESS {
        return Vec::new();
    }
    let h: PopMessageResponseHeader = r.decode_header().unwrap();
    let mut start: HashMap<String, i64> = HashMap::new();
    for seg in h.start_offset_info.as_deref().unwrap_or("").split(';') {
        let f: Vec<&str> = seg.split(' ').collect();
        assert_eq!(f.len(), 3, "{seg}");
        start.insert(format!("{}@{}", f[0], f[1]), f[2].parse().unwrap());
    }
    let mut listed: HashMap<String, Vec<i64>> = HashMap::new();
    for seg in h.msg_offset_info.as_deref().unwrap_or("").split(';') {
        let f: Vec<&str> = seg.split(' ').collect();
        assert_eq!(f.len(), 3, "{seg}");
        listed.insert(
            format!("{}@{}", f[0], f[1]),
            f[2].split(',').map(|o| o.parse().unwrap()).collect(),
        );
    }
    records(&r.body)
        .into_iter()
        .map(|rec| {
            let key = format!("0@{}", rec.queue_id);
            assert!(listed[&key].contains(&rec.queue_offset), "{key}");
            let extra_info = format!(
                "{} {} {} {} 0 broker-a {} {}",
                start[&key],
                h.pop_time,
                h.invisible_time,
                h.revive_qid,
                rec.queue_id,
                rec.queue_offset
            );
            Popped { rec, extra_info }
        })
        .collect()
}

fn ack_cmd(topic: &str, p: &Popped) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::ACK_MESSAGE,
        &AckMessageRequestHeader {
            consumer_group: G.into(),
            topic: topic.into(),
            queue_id: p.rec.queue_id,
            extra_info: p.extra_info.clone(),
            offset: p.rec.queue_offset,
        },
    )
}

fn change_cmd(topic: &str, p: &Popped, invisible: i64) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::CHANGE_MESSAGE_INVISIBLETIME,
        &ChangeInvisibleTimeRequestHeader {
            consumer_group: G.into(),
            topic: topic.into(),
            queue_id: p.rec.queue_id,
            extra_info: p.extra_info.clone(),
            offset: p.rec.queue_offset,
            invisible_time: invisible,
        },
    )
}

async fn send(b: &TestBroker, topic: &str, queue_id: i32, body: &str, tag: &str) {
    let r = b
        .call(send_v2(
            &send_header(topic, queue_id, &props(&[("TAGS", tag)])),
            body.as_bytes(),
        ))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
}

fn bodies(p: &[Popped]) -> Vec<String> {
    p.iter()
        .map(|m| String::from_utf8_lossy(&m.rec.body).into_owned())
        .collect()
}

#[tokio::test]
async fn pop_returns_messages_and_header_fields_and_acked_ones_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    for body in ["a", "b", "c"] {
        send(&b, "PopT", 0, body, "A").await;
    }
    let r = b.call(pop_cmd("PopT", 0, 300, 0, false)).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let h: PopMessageResponseHeader = r.decode_header().unwrap();
    assert_eq!(h.invisible_time, 300);
    assert_eq!(h.start_offset_info.as_deref(), Some("0 0 0"));
    assert_eq!(h.msg_offset_info.as_deref(), Some("0 0 0,1,2"));
    assert!((0..8).contains(&h.revive_qid));
    assert_eq!(h.rest_num, 0);
    assert!(h.pop_time > 0);
    let p = popped(&r);
    assert_eq!(bodies(&p), ["a", "b", "c"]);
    assert!(p.iter().all(|m| m.rec.reconsume_times == 0));
    assert_eq!(b.call(ack_cmd("PopT", &p[0])).await.code, SUCCESS);
    assert_eq!(b.call(ack_cmd("PopT", &p[2])).await.code, SUCCESS);

    // Only the un-acked one comes back, after its invisible time, with one more reconsume.
    let started = Instant::now();
    let r = b.call(pop_cmd("PopT", 0, 300, 5_000, false)).await;
    let again = popped(&r);
    assert_eq!(bodies(&again), ["b"]);
    assert_eq!(again[0].rec.reconsume_times, 1);
    assert!(started.elapsed() < Duration::from_millis(4_000));
    assert_eq!(b.call(ack_cmd("PopT", &again[0])).await.code, SUCCESS);
    assert_eq!(b.handle.pop_api().in_flight(), 0);
    let r = b.call(pop_cmd("PopT", 0, 300, 0, false)).await;
    assert_eq!(r.code, POLLING_TIMEOUT);
    b.stop().await;
}

#[tokio::test]
async fn a_stale_handle_does_not_ack_the_newer_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    send(&b, "PopStale", 0, "x", "A").await;
    let first = popped(&b.call(pop_cmd("PopStale", 0, 200, 0, false)).await);
    let second = popped(&b.call(pop_cmd("PopStale", 0, 60_000, 5_000, false)).await);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].rec.reconsume_times, 1);
    // Java answers a stale ack SUCCESS; the newer delivery stays in flight.
    assert_eq!(b.call(ack_cmd("PopStale", &first[0])).await.code, SUCCESS);
    assert_eq!(b.handle.pop_api().in_flight(), 1);
    assert_eq!(
        b.call(change_cmd("PopStale", &first[0], 10)).await.code,
        NO_MESSAGE
    );
    assert_eq!(b.call(ack_cmd("PopStale", &second[0])).await.code, SUCCESS);
    assert_eq!(b.handle.pop_api().in_flight(), 0);
    b.stop().await;
}

#[tokio::test]
async fn change_invisible_time_shortens_and_extends() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    send(&b, "PopChg", 0, "x", "A").await;
    let p = popped(&b.call(pop_cmd("PopChg", 0, 60_000, 0, false)).await);
    let r = b.call(change_cmd("PopChg", &p[0], 200)).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let c: ChangeInvisibleTimeResponseHeader = r.decode_header().unwrap();
    assert_eq!(c.invisible_time, 200);
    assert!(c.pop_time >= p[0].extra_info.split(' ').nth(1).unwrap().parse().unwrap());
    // Shortened: back well before the original 60 s.
    let back = popped(&b.call(pop_cmd("PopChg", 0, 200, 5_000, false)).await);
    assert_eq!(bodies(&back), ["x"]);
    assert_eq!(back[0].rec.reconsume_times, 1);
    // Extended: not back within the original 200 ms (and a bit).
    let r = b.call(change_cmd("PopChg", &back[0], 60_000)).await;
    assert_eq!(r.code, SUCCESS);
    let r = b.call(pop_cmd("PopChg", 0, 200, 500, false)).await;
    assert_eq!(r.code, POLLING_TIMEOUT);
    // The handle the first change replaced is stale now.
    assert_eq!(
        b.call(change_cmd("PopChg", &back[0], 60_000)).await.code,
        NO_MESSAGE
    );
    b.stop().await;
}

#[tokio::test]
async fn a_message_lands_in_the_dlq_after_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let mut g = SubscriptionGroupConfig::new(G);
    g.retry_max_times = 1;
    let r = b
        .call(
            RemotingCommand::request(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(g.encode().unwrap()),
        )
        .await;
    assert_eq!(r.code, SUCCESS);
    send(&b, "PopDlq", 0, "doomed", "A").await;
    let first = popped(&b.call(pop_cmd("PopDlq", 0, 200, 0, false)).await);
    assert_eq!(first.len(), 1);
    let second = popped(&b.call(pop_cmd("PopDlq", 0, 200, 5_000, false)).await);
    assert_eq!(second[0].rec.reconsume_times, 1);
    // The second expiry moves it to the DLQ instead of a third delivery.
    let r = b.call(pop_cmd("PopDlq", 0, 200, 800, false)).await;
    assert_eq!(r.code, POLLING_TIMEOUT);
    assert_eq!(b.handle.pop_api().in_flight(), 0);
    let r = b
        .call(pull(&pull_header("Reader", "%DLQ%PopGroup", 0, 0)))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let dlq = records(&r.body);
    assert_eq!(dlq.len(), 1);
    assert_eq!(&dlq[0].body[..], b"doomed");
    assert_eq!(dlq[0].reconsume_times, 2);
    assert_eq!(dlq[0].properties_map().get("RETRY_TOPIC"), Some("PopDlq"));
    b.stop().await;
}

#[tokio::test]
async fn fifo_pop_holds_back_a_queue_until_its_batch_is_acked() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    send(&b, "PopFifo", 0, "1", "A").await;
    let mut cmd = pop_cmd("PopFifo", 0, 60_000, 0, true);
    let r = b.call(cmd.clone()).await;
    let h: PopMessageResponseHeader = r.decode_header().unwrap();
    assert_eq!(h.revive_qid, 999);
    assert_eq!(h.order_count_info.as_deref(), Some("0 qo0%0 0"));
    let p = popped(&r);
    assert_eq!(bodies(&p), ["1"]);
    send(&b, "PopFifo", 0, "2", "A").await;
    assert_eq!(b.call(cmd.clone()).await.code, POLLING_TIMEOUT);
    // Non-FIFO pops of other groups are not affected; this group's queue is locked.
    assert_eq!(b.call(ack_cmd("PopFifo", &p[0])).await.code, SUCCESS);
    cmd.ext_fields.insert("pollTime", "2000");
    let p = popped(&b.call(cmd).await);
    assert_eq!(bodies(&p), ["2"]);
    b.stop().await;
}

#[tokio::test]
async fn a_parked_pop_is_woken_by_a_send() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    send(&b, "PopLp", 0, "old", "A").await;
    let p = popped(&b.call(pop_cmd("PopLp", 0, 60_000, 0, false)).await);
    assert_eq!(b.call(ack_cmd("PopLp", &p[0])).await.code, SUCCESS);
    let client = b.client.clone();
    let addr = b.addr.clone();
    let started = Instant::now();
    let parked = tokio::spawn(async move {
        client
            .invoke(
                &addr,
                pop_cmd("PopLp", 0, 60_000, 20_000, false),
                TIMEOUT * 3,
            )
            .await
            .unwrap()
    });
    let api = b.handle.pop_api();
    let deadline = Instant::now() + TIMEOUT;
    while api.parked() == 0 {
        assert!(Instant::now() < deadline, "the pop never parked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    send(&b, "PopLp", 0, "new", "A").await;
    let r = parked.await.unwrap();
    assert_eq!(bodies(&popped(&r)), ["new"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(api.parked(), 0);
    b.stop().await;
}

#[tokio::test]
async fn unacked_messages_come_back_after_a_restart_and_acked_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    send(&b, "PopRs", 0, "acked", "A").await;
    send(&b, "PopRs", 0, "pending", "A").await;
    let p = popped(&b.call(pop_cmd("PopRs", 0, 300, 0, false)).await);
    assert_eq!(p.len(), 2);
    assert_eq!(b.call(ack_cmd("PopRs", &p[0])).await.code, SUCCESS);
    b.stop().await;

    let b = TestBroker::start(config(dir.path())).await;
    assert_eq!(b.handle.pop_api().in_flight(), 1);
    let back = popped(&b.call(pop_cmd("PopRs", 0, 300, 5_000, false)).await);
    assert_eq!(bodies(&back), ["pending"]);
    assert_eq!(back[0].rec.reconsume_times, 1);
    assert_eq!(b.call(ack_cmd("PopRs", &back[0])).await.code, SUCCESS);
    assert_eq!(
        b.call(pop_cmd("PopRs", 0, 300, 0, false)).await.code,
        POLLING_TIMEOUT
    );
    b.stop().await;
}

#[tokio::test]
async fn batch_ack_acks_the_offsets_of_its_bitset() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    for body in ["a", "b", "c"] {
        send(&b, "PopBa", 0, body, "A").await;
    }
    let r = b.call(pop_cmd("PopBa", 0, 60_000, 0, false)).await;
    let h: PopMessageResponseHeader = r.decode_header().unwrap();
    let mut ack = BatchAck {
        consumer_group: G.into(),
        topic: "PopBa".into(),
        retry: "0".into(),
        start_offset: 0,
        queue_id: 0,
        revive_queue_id: h.revive_qid,
        pop_time: h.pop_time,
        invisible_time: h.invisible_time,
        bit_set: Vec::new(),
    };
    ack.set_acked(0);
    ack.set_acked(2);
    let body = BatchAckMessageRequestBody {
        broker_name: "broker-a".into(),
        acks: vec![ack],
    };
    let r = b
        .call(RemotingCommand::request(rc::BATCH_ACK_MESSAGE).with_body(body.encode().unwrap()))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    assert_eq!(b.handle.pop_api().in_flight(), 1);
    b.stop().await;
}

#[tokio::test]
async fn pop_of_all_queues_filters_by_tag_and_acks_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    send(&b, "PopAll", 0, "q0", "A").await;
    send(&b, "PopAll", 1, "q1", "A").await;
    send(&b, "PopAll", 2, "q2-b", "B").await;
    let mut cmd = pop_cmd("PopAll", -1, 60_000, 0, false);
    cmd.ext_fields.insert("exp", "A");
    let r = b.call(cmd).await;
    let h: PopMessageResponseHeader = r.decode_header().unwrap();
    assert_eq!(h.start_offset_info.unwrap().split(';').count(), 2);
    let mut got = bodies(&popped(&r));
    got.sort();
    assert_eq!(got, ["q0", "q1"]);

    let p = popped(&b.call(pop_cmd("PopAll", 2, 60_000, 0, false)).await);
    assert!(
        p.is_empty(),
        "the tag-filtered message was skipped for this group"
    );
    let mut bad = ack_cmd(
        "PopAll",
        &Popped {
            rec: MessageRecord {
                queue_id: 0,
                queue_offset: 0,
                ..MessageRecord::default()
            },
            extra_info: "0 1 60000 0 0 broker-a 0 0".into(),
        },
    );
    bad.ext_fields.insert("queueId", "99");
    assert_eq!(b.call(bad.clone()).await.code, MESSAGE_ILLEGAL);
    bad.ext_fields.insert("queueId", "0");
    bad.ext_fields.insert("offset", "50");
    assert_eq!(b.call(bad).await.code, NO_MESSAGE);
    let r = b.call(pop_cmd("PopAll", 99, 60_000, 0, false)).await;
    assert_eq!(r.code, INVALID_PARAMETER);
    b.stop().await;
}

#[tokio::test]
async fn init_mode_max_starts_a_new_group_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    send(&b, "PopInit", 0, "before", "A").await;
    let mut cmd = pop_cmd("PopInit", 0, 60_000, 0, false);
    cmd.ext_fields.insert("initMode", "1");
    assert_eq!(b.call(cmd.clone()).await.code, POLLING_TIMEOUT);
    send(&b, "PopInit", 0, "after", "A").await;
    assert_eq!(bodies(&popped(&b.call(cmd).await)), ["after"]);
    b.stop().await;
}
