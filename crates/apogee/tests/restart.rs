//! Restarts of the real binary on the same data dir, after a graceful stop (SIGTERM) and after a
//! crash (SIGKILL), with sync flush: every acknowledged message comes back byte for byte, and
//! consumer offsets, topics and subscription groups survive.
//!
//! The offset guarantee, as RocketMQ's: commits live in memory and are written to
//! `config/consumerOffset.json` every `flushConsumerOffsetInterval` (5 s by default) and at a
//! graceful stop. After a graceful stop every commit is back; after a crash each offset is at
//! least the last value written before it, and commits made after that write may be lost (a
//! consumer then sees those messages again: at-least-once).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use apogee_protocol::body::{
    JsonBody, SubscriptionGroupConfig, TopicConfigSerializeWrapper, TopicRouteData,
};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{
    CreateTopicRequestHeader, GetRouteInfoRequestHeader, GetSubscriptionGroupConfigRequestHeader,
    QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader, SendMessageResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};
use apogee_protocol::message::MessageRecord;
use apogee_protocol::RemotingCommand;
use apogee_remoting::RemotingClient;
use common::*;

const QUEUES: i32 = 3;

/// What a test sent and had acknowledged: queue, queue offset, body, keys, uniq key.
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    queue_id: i32,
    queue_offset: i64,
    body: Vec<u8>,
    keys: String,
    uniq: String,
}

async fn create_topic(c: &RemotingClient, broker: &str, topic: &str, queues: i32) {
    let h = CreateTopicRequestHeader {
        topic: topic.into(),
        default_topic: "TBW102".into(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".into(),
        topic_sys_flag: None,
        order: false,
        attributes: None,
        force: false,
    };
    let r = call(
        c,
        broker,
        RemotingCommand::request_with_header(rc::UPDATE_AND_CREATE_TOPIC, &h),
    )
    .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
}

async fn create_group(c: &RemotingClient, broker: &str, group: &str, retry_max_times: i32) {
    let mut config = SubscriptionGroupConfig::new(group);
    config.retry_max_times = retry_max_times;
    let r = call(
        c,
        broker,
        RemotingCommand::request(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
            .with_body(config.encode().unwrap()),
    )
    .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
}

/// Sends `n` messages round-robin over the queues, each acknowledged (WAIT=true: the reply comes
/// after the fsync).
async fn send_acknowledged(
    c: &RemotingClient,
    broker: &str,
    topic: &str,
    n: usize,
    tag: &str,
) -> Vec<Sent> {
    let mut sent = Vec::new();
    for i in 0..n {
        let queue_id = (i % QUEUES as usize) as i32;
        let keys = format!("{tag}-key-{i}");
        let uniq = format!("{tag}{i:031}");
        let body = format!("{tag} message {i}: {}", "payload ".repeat(i % 17)).into_bytes();
        let p = props(&[
            ("TAGS", tag),
            ("KEYS", &keys),
            ("UNIQ_KEY", &uniq),
            ("WAIT", "true"),
        ]);
        let r = call(c, broker, send(topic, queue_id, &p, &body)).await;
        assert_eq!(r.code, SUCCESS, "send {i}: {r:?}");
        let h: SendMessageResponseHeader = r.decode_header().unwrap();
        sent.push(Sent {
            queue_id,
            queue_offset: h.queue_offset,
            body,
            keys,
            uniq,
        });
    }
    sent
}

fn as_sent(r: &MessageRecord) -> Sent {
    Sent {
        queue_id: r.queue_id,
        queue_offset: r.queue_offset,
        body: r.body.to_vec(),
        keys: r.keys().collect::<Vec<_>>().join(" "),
        uniq: r.uniq_key().unwrap_or_default().into_owned(),
    }
}

/// Every message of the topic, by queue and offset.
async fn read_all(c: &RemotingClient, broker: &str, topic: &str) -> Vec<Sent> {
    let mut all = Vec::new();
    for q in 0..QUEUES {
        let (records, _) = pull_all(c, broker, "CG_READER", topic, q).await;
        all.extend(records.iter().map(as_sent));
    }
    all.sort_by_key(|s| (s.queue_id, s.queue_offset));
    all
}

fn sorted(mut v: Vec<Sent>) -> Vec<Sent> {
    v.sort_by_key(|s| (s.queue_id, s.queue_offset));
    v
}

async fn commit(c: &RemotingClient, broker: &str, group: &str, topic: &str, offsets: &[i64]) {
    for (q, offset) in offsets.iter().enumerate() {
        let h = UpdateConsumerOffsetRequestHeader {
            consumer_group: group.into(),
            topic: topic.into(),
            queue_id: q as i32,
            commit_offset: *offset,
        };
        let r = call(
            c,
            broker,
            RemotingCommand::request_with_header(rc::UPDATE_CONSUMER_OFFSET, &h),
        )
        .await;
        assert_eq!(r.code, SUCCESS, "{r:?}");
    }
}

async fn offsets_of(c: &RemotingClient, broker: &str, group: &str, topic: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for q in 0..QUEUES {
        let h = QueryConsumerOffsetRequestHeader {
            consumer_group: group.into(),
            topic: topic.into(),
            queue_id: q,
            set_zero_if_not_found: Some(false),
        };
        let r = call(
            c,
            broker,
            RemotingCommand::request_with_header(rc::QUERY_CONSUMER_OFFSET, &h),
        )
        .await;
        assert_eq!(r.code, SUCCESS, "offset of {group} {topic}/{q}: {r:?}");
        out.push(
            r.decode_header::<QueryConsumerOffsetResponseHeader>()
                .unwrap()
                .offset,
        );
    }
    out
}

async fn topic_queues(c: &RemotingClient, broker: &str) -> BTreeMap<String, i32> {
    let r = call(
        c,
        broker,
        RemotingCommand::request(rc::GET_ALL_TOPIC_CONFIG),
    )
    .await;
    assert_eq!(r.code, SUCCESS);
    TopicConfigSerializeWrapper::decode(&r.body)
        .unwrap()
        .topic_config_table
        .into_iter()
        .map(|(name, config)| (name, config.write_queue_nums))
        .collect()
}

async fn group_config(c: &RemotingClient, broker: &str, group: &str) -> SubscriptionGroupConfig {
    let r = call(
        c,
        broker,
        RemotingCommand::request_with_header(
            rc::GET_SUBSCRIPTIONGROUP_CONFIG,
            &GetSubscriptionGroupConfigRequestHeader {
                group: group.into(),
            },
        ),
    )
    .await;
    assert_eq!(r.code, SUCCESS, "group {group}: {r:?}");
    SubscriptionGroupConfig::decode(&r.body).unwrap()
}

/// The name server has the topic's route (the restarted broker registered it).
async fn route_has(c: &RemotingClient, namesrv: &str, topic: &str, queues: i32) {
    let request = || {
        RemotingCommand::request_with_header(
            rc::GET_ROUTEINFO_BY_TOPIC,
            &GetRouteInfoRequestHeader {
                topic: topic.into(),
                accept_standard_json_only: None,
                zone_name: None,
                zone_mode: None,
            },
        )
    };
    let r = call(c, namesrv, request()).await;
    assert_eq!(r.code, SUCCESS, "route of {topic}: {r:?}");
    let route = TopicRouteData::decode(&r.body).unwrap();
    assert_eq!(route.queue_datas[0].write_queue_nums, queues);
}

/// Polls `config/consumerOffset.json` until it holds `needle` (written by the periodic task).
fn wait_for_file_to_contain(path: &Path, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never contained {needle}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_graceful_restart_keeps_messages_offsets_topics_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let c = client();
    create_topic(&c, &server.broker, "Durable", QUEUES).await;
    create_group(&c, &server.broker, "CG_DURABLE", 3).await;
    let sent = send_acknowledged(&c, &server.broker, "Durable", 300, "A").await;
    commit(&c, &server.broker, "CG_DURABLE", "Durable", &[37, 100, 0]).await;
    // A group that was never created by hand: made by its first pull (auto-create).
    let _ = pull_all(&c, &server.broker, "CG_AUTO", "Durable", 0).await;
    commit(&c, &server.broker, "CG_AUTO", "Durable", &[5, 6, 7]).await;
    c.close();
    server.stop();

    let server = Server::start(&data);
    let c = client();
    // Ready means ready: the name server already routes to the restarted broker's topics.
    route_has(&c, &server.namesrv, "Durable", QUEUES).await;
    assert_eq!(read_all(&c, &server.broker, "Durable").await, sorted(sent));
    assert_eq!(
        offsets_of(&c, &server.broker, "CG_DURABLE", "Durable").await,
        [37, 100, 0]
    );
    assert_eq!(
        offsets_of(&c, &server.broker, "CG_AUTO", "Durable").await,
        [5, 6, 7]
    );
    assert_eq!(
        topic_queues(&c, &server.broker).await.get("Durable"),
        Some(&QUEUES)
    );
    assert_eq!(
        group_config(&c, &server.broker, "CG_DURABLE")
            .await
            .retry_max_times,
        3
    );
    group_config(&c, &server.broker, "CG_AUTO").await;
    route_has(&c, &server.namesrv, "Durable", QUEUES).await;
    // The queues go on where they stopped.
    let more = send_acknowledged(&c, &server.broker, "Durable", 3, "B").await;
    assert_eq!(
        more.iter().map(|s| s.queue_offset).collect::<Vec<_>>(),
        [100, 100, 100]
    );
    c.close();
    server.stop();
}

#[tokio::test]
async fn after_sigkill_every_acknowledged_message_and_the_last_written_offsets_are_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Offsets are written every 500 ms here instead of every 5 s, to keep the test short.
    let config = "flushConsumerOffsetInterval = 500\n";
    let server = Server::start_with(&data, config);
    let c = client();
    create_topic(&c, &server.broker, "Crash", QUEUES).await;
    create_group(&c, &server.broker, "CG_CRASH", 5).await;
    let mut sent = send_acknowledged(&c, &server.broker, "Crash", 240, "A").await;
    commit(&c, &server.broker, "CG_CRASH", "Crash", &[10, 20, 30]).await;
    // The periodic writer puts these on disk: the "last written" value.
    let offsets_file = data.join("config").join("consumerOffset.json");
    wait_for_file_to_contain(
        &offsets_file,
        r#""Crash@CG_CRASH":{0:10,1:20,2:30}"#,
        Duration::from_secs(20),
    );
    // Newer commits that may not have been written when the crash comes.
    commit(&c, &server.broker, "CG_CRASH", "Crash", &[11, 21, 31]).await;
    // The last messages are acknowledged right before the crash.
    sent.extend(send_acknowledged(&c, &server.broker, "Crash", 60, "B").await);
    c.close();
    server.kill();

    let server = Server::start_with(&data, config);
    let c = client();
    assert_eq!(read_all(&c, &server.broker, "Crash").await, sorted(sent));
    let offsets = offsets_of(&c, &server.broker, "CG_CRASH", "Crash").await;
    for (q, (got, (written, committed))) in offsets
        .iter()
        .zip([10, 20, 30].iter().zip([11, 21, 31].iter()))
        .enumerate()
    {
        assert!(
            got == written || got == committed,
            "queue {q}: offset {got}, want the written {written} or the later {committed}"
        );
    }
    assert_eq!(
        topic_queues(&c, &server.broker).await.get("Crash"),
        Some(&QUEUES)
    );
    assert_eq!(
        group_config(&c, &server.broker, "CG_CRASH")
            .await
            .retry_max_times,
        5
    );
    route_has(&c, &server.namesrv, "Crash", QUEUES).await;
    // Recovery put the queue ends right: new messages follow the acknowledged ones.
    let more = send_acknowledged(&c, &server.broker, "Crash", 3, "C").await;
    assert_eq!(
        more.iter().map(|s| s.queue_offset).collect::<Vec<_>>(),
        [100, 100, 100]
    );
    // A second crash right after recovery loses nothing either.
    c.close();
    server.kill();
    let server = Server::start(&data);
    let c = client();
    assert_eq!(read_all(&c, &server.broker, "Crash").await.len(), 303);
    c.close();
    server.stop();
}
