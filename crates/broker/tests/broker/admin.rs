//! Admin commands: topics, subscription groups, statistics, runtime info, config.

use apogee_protocol::body::{
    ConsumeStats, JsonBody, KVTable, SubscriptionGroupConfig, SubscriptionGroupWrapper,
    TopicConfigSerializeWrapper, TopicStatsTable,
};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::*;
use apogee_protocol::RemotingCommand;

use crate::common::*;
use crate::offsets::update_offset;

fn create_topic(topic: &str, queues: i32) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::UPDATE_AND_CREATE_TOPIC,
        &CreateTopicRequestHeader {
            topic: topic.into(),
            default_topic: "TBW102".into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: 6,
            topic_filter_type: "SINGLE_TAG".into(),
            topic_sys_flag: Some(0),
            order: false,
            attributes: Some("+message.type=NORMAL".into()),
            force: false,
        },
    )
}

#[tokio::test]
async fn topic_admin_creates_lists_stats_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    assert_eq!(b.call(create_topic("AdminT", 2)).await.code, SUCCESS);
    // Idempotent.
    assert_eq!(b.call(create_topic("AdminT", 2)).await.code, SUCCESS);
    assert_eq!(
        b.call(create_topic("bad name", 2)).await.code,
        INVALID_PARAMETER
    );
    assert_eq!(
        b.call(create_topic("SCHEDULE_TOPIC_XXXX", 2)).await.code,
        INVALID_PARAMETER
    );
    assert_eq!(
        b.call(create_topic("DefaultCluster", 2)).await.code,
        INVALID_PARAMETER
    );

    let all = b
        .call(RemotingCommand::request(rc::GET_ALL_TOPIC_CONFIG))
        .await;
    assert_eq!(all.code, SUCCESS);
    let wrapper = TopicConfigSerializeWrapper::decode(&all.body).unwrap();
    let t = &wrapper.topic_config_table["AdminT"];
    assert_eq!(
        (t.read_queue_nums, t.attributes["message.type"].as_str()),
        (2, "NORMAL")
    );
    assert!(wrapper.topic_config_table.contains_key("TBW102"));
    let total = all
        .decode_header::<GetAllTopicConfigResponseHeader>()
        .unwrap()
        .total_topic_num;
    assert_eq!(total as usize, wrapper.topic_config_table.len());

    for _ in 0..2 {
        assert_eq!(
            b.call(send_v2(&send_header("AdminT", 1, &props(&[])), b"s"))
                .await
                .code,
            SUCCESS
        );
    }
    let stats = b
        .call(RemotingCommand::request_with_header(
            rc::GET_TOPIC_STATS_INFO,
            &GetTopicStatsInfoRequestHeader {
                topic: "AdminT".into(),
            },
        ))
        .await;
    assert_eq!(stats.code, SUCCESS);
    let table = TopicStatsTable::decode(&stats.body).unwrap();
    let offsets: Vec<(i32, i64, bool)> = table
        .offset_table
        .iter()
        .map(|(mq, o)| (mq.queue_id, o.max_offset, o.last_update_timestamp > 0))
        .collect();
    assert_eq!(offsets, [(0, 0, false), (1, 2, true)]);

    assert_eq!(
        b.call(pull(&pull_header("AdminG", "AdminT", 1, 0)))
            .await
            .code,
        SUCCESS
    );
    assert_eq!(
        b.call(update_offset("AdminG", "AdminT", 1, 1)).await.code,
        SUCCESS
    );
    let cs = b
        .call(RemotingCommand::request_with_header(
            rc::GET_CONSUME_STATS,
            &GetConsumeStatsRequestHeader {
                consumer_group: "AdminG".into(),
                topic: None,
                topic_list: None,
            },
        ))
        .await;
    assert_eq!(cs.code, SUCCESS);
    let cs = ConsumeStats::decode(&cs.body).unwrap();
    let q1 = cs
        .offset_table
        .iter()
        .find(|(mq, _)| mq.queue_id == 1)
        .unwrap()
        .1;
    assert_eq!((q1.broker_offset, q1.consumer_offset), (2, 1));
    assert!(q1.last_timestamp > 0);

    let del = RemotingCommand::request_with_header(
        rc::DELETE_TOPIC_IN_BROKER,
        &DeleteTopicRequestHeader {
            topic: "AdminT".into(),
        },
    );
    assert_eq!(b.call(del).await.code, SUCCESS);
    let stats = b
        .call(RemotingCommand::request_with_header(
            rc::GET_TOPIC_STATS_INFO,
            &GetTopicStatsInfoRequestHeader {
                topic: "AdminT".into(),
            },
        ))
        .await;
    assert_eq!(stats.code, TOPIC_NOT_EXIST);
    let del = RemotingCommand::request_with_header(
        rc::DELETE_TOPIC_IN_BROKER,
        &DeleteTopicRequestHeader {
            topic: "TBW102".into(),
        },
    );
    assert_eq!(b.call(del).await.code, INVALID_PARAMETER);
    b.stop().await;
}

#[tokio::test]
async fn subscription_group_admin() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let mut g = SubscriptionGroupConfig::new("AdminGroup");
    g.retry_max_times = 3;
    let r = b
        .call(
            RemotingCommand::request(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(g.encode().unwrap()),
        )
        .await;
    assert_eq!(r.code, SUCCESS);
    let all = b
        .call(RemotingCommand::request(
            rc::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
        ))
        .await;
    let wrapper = SubscriptionGroupWrapper::decode(&all.body).unwrap();
    assert_eq!(
        wrapper.subscription_group_table["AdminGroup"].retry_max_times,
        3
    );
    assert!(wrapper
        .subscription_group_table
        .contains_key("TOOLS_CONSUMER"));
    let one = b
        .call(RemotingCommand::request_with_header(
            rc::GET_SUBSCRIPTIONGROUP_CONFIG,
            &GetSubscriptionGroupConfigRequestHeader {
                group: "AdminGroup".into(),
            },
        ))
        .await;
    assert_eq!(
        SubscriptionGroupConfig::decode(&one.body)
            .unwrap()
            .retry_max_times,
        3
    );
    let del = RemotingCommand::request_with_header(
        rc::DELETE_SUBSCRIPTIONGROUP,
        &DeleteSubscriptionGroupRequestHeader {
            group_name: "AdminGroup".into(),
            clean_offset: true,
        },
    );
    assert_eq!(b.call(del).await.code, SUCCESS);
    let one = b
        .call(RemotingCommand::request_with_header(
            rc::GET_SUBSCRIPTIONGROUP_CONFIG,
            &GetSubscriptionGroupConfigRequestHeader {
                group: "AdminGroup".into(),
            },
        ))
        .await;
    assert_eq!(one.code, SUBSCRIPTION_GROUP_NOT_EXIST);
    b.stop().await;
}

#[tokio::test]
async fn runtime_info_and_broker_config() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    assert_eq!(
        b.call(send_v2(&send_header("RT", 0, &props(&[])), b"s"))
            .await
            .code,
        SUCCESS
    );
    let r = b
        .call(RemotingCommand::request(rc::GET_BROKER_RUNTIME_INFO))
        .await;
    assert_eq!(r.code, SUCCESS);
    let kv = KVTable::decode(&r.body).unwrap();
    assert_eq!(kv.table["msgPutTotalTodayNow"], "1");
    assert!(kv.table.contains_key("brokerVersionDesc"));

    let r = b
        .call(RemotingCommand::request(rc::GET_BROKER_CONFIG))
        .await;
    assert_eq!(r.code, SUCCESS);
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(text.contains("brokerName=broker-a\n"), "{text}");
    assert!(text.contains("brokerIP1=127.0.0.1\n"));
    // Store settings as the broker runs them (the test harness raises the disk ratios).
    assert!(text.contains("deleteWhen=04\n"), "{text}");
    assert!(text.contains("diskSpaceWarningLevelRatio=100\n"), "{text}");
    assert!(r
        .decode_header::<GetBrokerConfigResponseHeader>()
        .unwrap()
        .version
        .contains("counter"));
    b.stop().await;
}

async fn max_offset(b: &TestBroker, topic: &str, queue_id: i32) -> i64 {
    let r = b
        .call(RemotingCommand::request_with_header(
            rc::GET_MAX_OFFSET,
            &GetMaxOffsetRequestHeader {
                topic: topic.into(),
                queue_id,
                committed: true,
            },
        ))
        .await;
    assert_eq!(r.code, SUCCESS, "{:?}", r.remark);
    r.decode_header::<GetMaxOffsetResponseHeader>()
        .unwrap()
        .offset
}

#[tokio::test]
async fn storage_maintenance_drops_unused_topics_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    for t in ["KeepT", "DropT"] {
        assert_eq!(b.call(create_topic(t, 1)).await.code, SUCCESS);
        let h = send_header(t, 0, &props(&[]));
        assert_eq!(b.call(send_v2(&h, b"m")).await.code, SUCCESS);
    }
    // A delayed message: its queue is in SCHEDULE_TOPIC_XXXX, a system topic with no config.
    let h = send_header("KeepT", 0, &props(&[("DELAY", "18")]));
    assert_eq!(b.call(send_v2(&h, b"later")).await.code, SUCCESS);
    b.stop().await;

    // The broker loses DropT's config (edited by hand, or deleted elsewhere); its queues stay.
    let path = dir.path().join("config").join("topics.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(v["topicConfigTable"]
        .as_object_mut()
        .unwrap()
        .remove("DropT")
        .is_some());
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    assert_eq!(max_offset(&b, "DropT", 0).await, 1);

    let r = b
        .call(RemotingCommand::request(rc::CLEAN_UNUSED_TOPIC))
        .await;
    assert_eq!(r.code, SUCCESS);
    assert!(
        r.remark.as_deref().unwrap().ends_with(": DropT"),
        "{:?}",
        r.remark
    );
    assert_eq!(max_offset(&b, "DropT", 0).await, 0);
    assert!(!dir.path().join("store/consumequeue/DropT").exists());
    assert_eq!(max_offset(&b, "KeepT", 0).await, 1);
    assert_eq!(max_offset(&b, "SCHEDULE_TOPIC_XXXX", 17).await, 1);

    // Nothing is past the reserved time: nothing goes, and the queues still read.
    let r = b
        .call(RemotingCommand::request(rc::DELETE_EXPIRED_COMMITLOG))
        .await;
    assert_eq!(r.code, SUCCESS);
    assert!(
        r.remark.as_deref().unwrap().contains("deleted 0"),
        "{:?}",
        r.remark
    );
    let r = b
        .call(RemotingCommand::request(rc::CLEAN_EXPIRED_CONSUMEQUEUE))
        .await;
    assert_eq!(r.code, SUCCESS);
    let got = records(&b.call(pull(&pull_header("G", "KeepT", 0, 0))).await.body);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], b"m");
    b.stop().await;
}
