//! Push consumer requests against a scripted fake broker: what a Java broker would see from
//! it (the long-poll pull with its flags, CONSUMER_SEND_MSG_BACK when the broker supports it,
//! LOCK_BATCH_MQ before an orderly pull and UNLOCK_BATCH_MQ at shutdown).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use apogee_client::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeOrderlyContext,
    ConsumeOrderlyStatus, MessageExt, MessageQueue, PushConsumer,
};
use apogee_protocol::body::{
    GetConsumerListByGroupResponseBody, JsonBody, LockBatchRequestBody, LockBatchResponseBody,
    ResetOffsetBody, UnlockBatchRequestBody,
};
use apogee_protocol::codes::{pull_sys_flag, request_code, response_code};
use apogee_protocol::header::{
    ConsumerSendMsgBackRequestHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    QueryConsumerOffsetResponseHeader, ResetOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use apogee_protocol::message::{MessageProperties, MessageRecord};
use apogee_protocol::RemotingCommand;
use bytes::Bytes;
use common::*;
use tokio::sync::mpsc;

const TOPIC: &str = "FakePush";

/// One stored record of `TOPIC` queue 0 at `offset`.
fn record(offset: i64) -> Bytes {
    let mut props = MessageProperties::new();
    props.set_uniq_key(format!("UNIQ-{offset}"));
    let mut r = MessageRecord::new(TOPIC, Bytes::from_static(b"hello"), props.to_bytes());
    r.queue_id = 0;
    r.queue_offset = offset;
    r.physical_offset = 10_000 + offset;
    r.store_host = "127.0.0.1:10911".parse().unwrap();
    r.encode().unwrap()
}

/// A broker with one queue: the group's only consumer is `client_id`, its committed offset
/// starts at 5 (and follows UPDATE_CONSUMER_OFFSET), the first pull finds the record at 5,
/// later pulls are held (no answer, as a long poll).
async fn broker(client_id: &'static str) -> Fake {
    let pulls = Arc::new(AtomicUsize::new(0));
    let committed = Arc::new(AtomicI64::new(5));
    Fake::start(move |req| match req.code {
        request_code::GET_CONSUMER_LIST_BY_GROUP => Some(
            RemotingCommand::response(response_code::SUCCESS, None).with_body(
                GetConsumerListByGroupResponseBody {
                    consumer_id_list: vec![client_id.to_owned()],
                }
                .encode()
                .unwrap(),
            ),
        ),
        request_code::QUERY_CONSUMER_OFFSET => Some(
            RemotingCommand::response(response_code::SUCCESS, None).with_header(
                &QueryConsumerOffsetResponseHeader {
                    offset: committed.load(Ordering::SeqCst),
                },
            ),
        ),
        request_code::UPDATE_CONSUMER_OFFSET => {
            let h: UpdateConsumerOffsetRequestHeader = req.decode_header().unwrap();
            if h.topic == TOPIC {
                committed.store(h.commit_offset, Ordering::SeqCst);
            }
            Some(RemotingCommand::response(response_code::SUCCESS, None))
        }
        request_code::PULL_MESSAGE => {
            let h: PullMessageRequestHeader = req.decode_header().unwrap();
            if h.topic != TOPIC || pulls.fetch_add(1, Ordering::SeqCst) > 0 {
                return None;
            }
            let header = PullMessageResponseHeader {
                next_begin_offset: 6,
                min_offset: 0,
                max_offset: 6,
                ..Default::default()
            };
            Some(
                RemotingCommand::response(response_code::SUCCESS, None)
                    .with_header(&header)
                    .with_body(record(5)),
            )
        }
        request_code::LOCK_BATCH_MQ => {
            let asked = LockBatchRequestBody::decode(&req.body).unwrap();
            Some(
                RemotingCommand::response(response_code::SUCCESS, None).with_body(
                    LockBatchResponseBody {
                        lock_ok_mq_set: asked.mq_set,
                    }
                    .encode()
                    .unwrap(),
                ),
            )
        }
        _ => Some(RemotingCommand::response(response_code::SUCCESS, None)),
    })
    .await
}

async fn name_server_for(broker: &Fake, group: &str) -> Fake {
    name_server(HashMap::from([
        (TOPIC.to_owned(), route(&[("broker-a", &broker.addr)], 1)),
        (
            format!("%RETRY%{group}"),
            route(&[("broker-a", &broker.addr)], 1),
        ),
    ]))
    .await
}

/// The next PULL_MESSAGE for `topic` (the retry topic's pulls are skipped).
async fn next_pull_of(broker: &mut Fake, topic: &str) -> (Seen, PullMessageRequestHeader) {
    loop {
        let seen = broker.next_with_code(request_code::PULL_MESSAGE).await;
        let h: PullMessageRequestHeader = seen.request.decode_header().unwrap();
        if h.topic == topic {
            return (seen, h);
        }
    }
}

fn config(ns: &Fake, instance: &str) -> apogee_client::ClientConfig {
    let mut c = client_config(&ns.addr, instance);
    c.persist_consumer_offset_interval_ms = 100;
    c
}

#[tokio::test]
async fn a_failed_message_goes_back_with_consumer_send_msg_back_when_the_broker_has_it() {
    let mut broker = broker("127.0.0.1@push-fake").await;
    let ns = name_server_for(&broker, "FakePushGroup").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = PushConsumer::builder()
        .group("FakePushGroup")
        .client_config(config(&ns, "push-fake"))
        .subscribe(TOPIC, "*")
        .register_concurrently(
            move |msgs: &[MessageExt], ctx: &mut ConsumeConcurrentlyContext| {
                let _ = tx.send(msgs.to_vec());
                ctx.delay_level_when_next_consume = 4;
                ConsumeConcurrentlyStatus::ReconsumeLater
            },
        )
        .start()
        .await
        .unwrap();

    // The pull: PULL_MESSAGE, long poll of 15 s, the committed offset piggy-backed, no
    // subscription flag (the broker uses the heartbeat's), 32 messages.
    let (pull, h) = next_pull_of(&mut broker, TOPIC).await;
    assert_eq!(h.consumer_group, "FakePushGroup");
    assert_eq!(h.queue_offset, 5);
    assert_eq!(h.max_msg_nums, 32);
    assert_eq!(h.suspend_timeout_millis, 15_000);
    assert_eq!(
        h.sys_flag,
        pull_sys_flag::FLAG_COMMIT_OFFSET | pull_sys_flag::FLAG_SUSPEND
    );
    assert_eq!(h.commit_offset, 5);
    assert_eq!(pull.request.ext_fields.get("bname"), Some("broker-a"));

    let delivered = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].queue_offset, 5);

    let back = broker
        .next_with_code(request_code::CONSUMER_SEND_MSG_BACK)
        .await;
    let h: ConsumerSendMsgBackRequestHeader = back.request.decode_header().unwrap();
    assert_eq!(h.offset, 10_005, "the commit-log offset");
    assert_eq!(h.group, "FakePushGroup");
    assert_eq!(h.delay_level, 4);
    assert_eq!(h.max_reconsume_times, Some(16));
    assert_eq!(h.origin_topic.as_deref(), Some(TOPIC));
    assert_eq!(h.origin_msg_id.as_deref(), Some("UNIQ-5"));

    // Handed back, the message counts as consumed: the offset moves past it.
    loop {
        let update = broker
            .next_with_code(request_code::UPDATE_CONSUMER_OFFSET)
            .await;
        let h: UpdateConsumerOffsetRequestHeader = update.request.decode_header().unwrap();
        if h.topic == TOPIC && h.commit_offset == 6 {
            break;
        }
    }
    // The broker took it: no fallback send to the retry topic.
    assert!(broker
        .drain_with_code(request_code::SEND_MESSAGE_V2)
        .is_empty());
    consumer.shutdown().await;
}

#[tokio::test]
async fn an_orderly_consumer_locks_before_pulling_and_unlocks_at_shutdown() {
    let mut broker = broker("127.0.0.1@push-fake-ord").await;
    let ns = name_server_for(&broker, "FakeOrderGroup").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = PushConsumer::builder()
        .group("FakeOrderGroup")
        .client_config(config(&ns, "push-fake-ord"))
        .subscribe(TOPIC, "*")
        .register_orderly(
            move |msgs: &[MessageExt], _ctx: &mut ConsumeOrderlyContext| {
                let _ = tx.send(msgs.to_vec());
                ConsumeOrderlyStatus::Success
            },
        )
        .start()
        .await
        .unwrap();
    let q0 = MessageQueue::new(TOPIC, "broker-a", 0);
    // The lock comes first (a pull before it would be skipped here and never come again).
    let lock = loop {
        let seen = broker.next_with_code(request_code::LOCK_BATCH_MQ).await;
        let body = LockBatchRequestBody::decode(&seen.request.body).unwrap();
        if body.mq_set.contains(&q0) {
            break body;
        }
    };
    assert_eq!(lock.consumer_group, "FakeOrderGroup");
    assert_eq!(lock.client_id, "127.0.0.1@push-fake-ord");
    let (_, h) = next_pull_of(&mut broker, TOPIC).await;
    assert_eq!(h.queue_offset, 5);
    let delivered = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivered[0].queue_offset, 5);
    assert!(consumer.queue_stats().iter().all(|s| s.locked));

    consumer.shutdown().await;
    // The consumed offset is committed, then the lock released.
    loop {
        let update = broker
            .next_with_code(request_code::UPDATE_CONSUMER_OFFSET)
            .await;
        let h: UpdateConsumerOffsetRequestHeader = update.request.decode_header().unwrap();
        if h.topic == TOPIC && h.commit_offset == 6 {
            break;
        }
    }
    let unlock = loop {
        let seen = broker.next_with_code(request_code::UNLOCK_BATCH_MQ).await;
        let body = UnlockBatchRequestBody::decode(&seen.request.body).unwrap();
        if body.mq_set.contains(&q0) {
            break body;
        }
    };
    assert_eq!(unlock.consumer_group, "FakeOrderGroup");
}

#[tokio::test]
async fn an_admin_reset_restarts_the_queue_at_the_new_offset() {
    let mut broker = broker("127.0.0.1@push-fake-reset").await;
    let ns = name_server_for(&broker, "FakeResetGroup").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = PushConsumer::builder()
        .group("FakeResetGroup")
        .client_config(config(&ns, "push-fake-reset"))
        .subscribe(TOPIC, "*")
        .register_concurrently(
            move |msgs: &[MessageExt], _ctx: &mut ConsumeConcurrentlyContext| {
                let _ = tx.send(msgs.to_vec());
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        )
        .start()
        .await
        .unwrap();
    let (first, _) = next_pull_of(&mut broker, TOPIC).await;
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    // The consumer now waits on a held pull at 6.
    let (_, h) = next_pull_of(&mut broker, TOPIC).await;
    assert_eq!(h.queue_offset, 6);

    let q0 = MessageQueue::new(TOPIC, "broker-a", 0);
    let mut body = ResetOffsetBody::default();
    body.offset_table.insert(q0, 9);
    let reset = RemotingCommand::request_with_header(
        request_code::RESET_CONSUMER_CLIENT_OFFSET,
        &ResetOffsetRequestHeader {
            group: "FakeResetGroup".into(),
            topic: TOPIC.into(),
            timestamp: 0,
            ..Default::default()
        },
    )
    .with_body(body.encode().unwrap());
    first.conn.invoke_oneway(reset).await.unwrap();
    let (_, h) = next_pull_of(&mut broker, TOPIC).await;
    assert_eq!(h.queue_offset, 9, "the queue restarts at the reset offset");
    consumer.shutdown().await;
}
