//! Consumer offsets and queue offsets.

use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::*;
use apogee_protocol::RemotingCommand;

use crate::common::*;

pub fn query_offset(
    group: &str,
    topic: &str,
    queue_id: i32,
    zero: Option<bool>,
) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::QUERY_CONSUMER_OFFSET,
        &QueryConsumerOffsetRequestHeader {
            consumer_group: group.into(),
            topic: topic.into(),
            queue_id,
            set_zero_if_not_found: zero,
        },
    )
}

pub fn update_offset(group: &str, topic: &str, queue_id: i32, offset: i64) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::UPDATE_CONSUMER_OFFSET,
        &UpdateConsumerOffsetRequestHeader {
            consumer_group: group.into(),
            topic: topic.into(),
            queue_id,
            commit_offset: offset,
        },
    )
}

#[tokio::test]
async fn consumer_offsets_follow_rocketmq_rules() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    // Nothing stored and an empty queue: not found.
    assert_eq!(
        b.call(query_offset("G", "TQ", 0, None)).await.code,
        QUERY_NOT_FOUND
    );
    assert_eq!(
        b.call(send_v2(&send_header("TQ", 0, &props(&[])), b"m"))
            .await
            .code,
        SUCCESS
    );
    // A new group on a queue that still starts at 0 reads from 0...
    let r = b.call(query_offset("G", "TQ", 0, None)).await;
    assert_eq!(r.code, SUCCESS);
    assert_eq!(
        r.decode_header::<QueryConsumerOffsetResponseHeader>()
            .unwrap()
            .offset,
        0
    );
    // ...unless it asks not to.
    assert_eq!(
        b.call(query_offset("G", "TQ", 0, Some(false))).await.code,
        QUERY_NOT_FOUND
    );

    // Groups exist once a client used them (heartbeat or pull); updates need one.
    assert_eq!(
        b.call(update_offset("G", "TQ", 0, 1)).await.code,
        SUBSCRIPTION_GROUP_NOT_EXIST
    );
    assert_eq!(
        b.call(pull(&pull_header("G", "TQ", 0, 0))).await.code,
        SUCCESS
    );
    assert_eq!(b.call(update_offset("G", "TQ", 0, 1)).await.code, SUCCESS);
    let r = b.call(query_offset("G", "TQ", 0, Some(false))).await;
    assert_eq!(
        r.decode_header::<QueryConsumerOffsetResponseHeader>()
            .unwrap()
            .offset,
        1
    );

    // Oneway updates, as Java clients send them.
    let mut oneway = update_offset("G", "TQ", 0, 5);
    oneway.mark_oneway();
    b.client.invoke_oneway(&b.addr, oneway).await.unwrap();
    let r = b.call(query_offset("G", "TQ", 0, None)).await;
    assert_eq!(
        r.decode_header::<QueryConsumerOffsetResponseHeader>()
            .unwrap()
            .offset,
        5
    );

    // A pull with FLAG_COMMIT_OFFSET stores the consumer's offset too.
    let mut h = pull_header("G", "TQ", 0, 0);
    h.sys_flag |= 0x1;
    h.commit_offset = 7;
    assert_eq!(b.call(pull(&h)).await.code, SUCCESS);
    let r = b.call(query_offset("G", "TQ", 0, None)).await;
    assert_eq!(
        r.decode_header::<QueryConsumerOffsetResponseHeader>()
            .unwrap()
            .offset,
        7
    );

    assert_eq!(
        b.call(update_offset("G", "Nope", 0, 1)).await.code,
        TOPIC_NOT_EXIST
    );
    assert_eq!(
        b.call(update_offset("Never Seen", "TQ", 0, 1)).await.code,
        SUBSCRIPTION_GROUP_NOT_EXIST
    );
    let mut no_queue = update_offset("G", "TQ", 0, 1);
    no_queue.ext_fields.remove("queueId");
    let r = b.call(no_queue).await;
    assert_eq!(r.code, INVALID_PARAMETER);
    assert_eq!(r.remark.as_deref(), Some("QueueId is null, topic is TQ"));
    b.stop().await;
}

#[tokio::test]
async fn queue_offsets_times_and_search() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let mut times = Vec::new();
    for _ in 0..3 {
        assert_eq!(
            b.call(send_v2(&send_header("TM", 2, &props(&[])), b"m"))
                .await
                .code,
            SUCCESS
        );
    }
    let recs = records(&b.call(pull(&pull_header("G", "TM", 2, 0))).await.body);
    times.extend(recs.iter().map(|r| r.store_timestamp));

    let max = b
        .call(RemotingCommand::request_with_header(
            rc::GET_MAX_OFFSET,
            &GetMaxOffsetRequestHeader {
                topic: "TM".into(),
                queue_id: 2,
                committed: true,
            },
        ))
        .await;
    assert_eq!(
        max.decode_header::<GetMaxOffsetResponseHeader>()
            .unwrap()
            .offset,
        3
    );
    let min = b
        .call(RemotingCommand::request_with_header(
            rc::GET_MIN_OFFSET,
            &GetMinOffsetRequestHeader {
                topic: "TM".into(),
                queue_id: 2,
            },
        ))
        .await;
    assert_eq!(
        min.decode_header::<GetMinOffsetResponseHeader>()
            .unwrap()
            .offset,
        0
    );
    let empty = b
        .call(RemotingCommand::request_with_header(
            rc::GET_MAX_OFFSET,
            &GetMaxOffsetRequestHeader {
                topic: "TM".into(),
                queue_id: 0,
                committed: true,
            },
        ))
        .await;
    assert_eq!(
        empty
            .decode_header::<GetMaxOffsetResponseHeader>()
            .unwrap()
            .offset,
        0
    );

    let earliest = b
        .call(RemotingCommand::request_with_header(
            rc::GET_EARLIEST_MSG_STORETIME,
            &GetEarliestMsgStoretimeRequestHeader {
                topic: "TM".into(),
                queue_id: 2,
            },
        ))
        .await;
    assert_eq!(
        earliest
            .decode_header::<GetEarliestMsgStoretimeResponseHeader>()
            .unwrap()
            .timestamp,
        times[0]
    );

    let search = |ts: i64, boundary: BoundaryType| {
        RemotingCommand::request_with_header(
            rc::SEARCH_OFFSET_BY_TIMESTAMP,
            &SearchOffsetRequestHeader {
                topic: "TM".into(),
                queue_id: 2,
                timestamp: ts,
                boundary_type: Some(boundary),
            },
        )
    };
    let r = b.call(search(0, BoundaryType::Lower)).await;
    assert_eq!(
        r.decode_header::<SearchOffsetResponseHeader>()
            .unwrap()
            .offset,
        0
    );
    let r = b.call(search(i64::MAX, BoundaryType::Lower)).await;
    assert_eq!(
        r.decode_header::<SearchOffsetResponseHeader>()
            .unwrap()
            .offset,
        3
    );
    let r = b.call(search(times[2], BoundaryType::Upper)).await;
    assert_eq!(
        r.decode_header::<SearchOffsetResponseHeader>()
            .unwrap()
            .offset,
        2
    );
    b.stop().await;
}
