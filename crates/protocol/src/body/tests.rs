use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::*;
use crate::command::VERSION_V4_9_4;
use crate::json::tests::garbage_inputs;
use crate::json::{JsonForm, WireEnum};

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

/// Every body type encodes and decodes back to itself in both forms.
fn assert_round_trips<T: JsonBody + PartialEq + Debug>(v: &T) {
    for form in [JsonForm::Fastjson, JsonForm::Standard] {
        let bytes = v.encode_as(form).unwrap();
        let back = T::decode(&bytes)
            .unwrap_or_else(|e| panic!("{form:?} {}: {e}", String::from_utf8_lossy(&bytes)));
        assert_eq!(&back, v, "{form:?} round trip");
    }
    assert_keys_sorted(&v.encode_standard().unwrap());
}

/// fastjson writes bean properties sorted by name; our structs declare fields in that order.
/// Checks every object of a standard-form document (samples keep map keys sorted too).
fn assert_keys_sorted(json: &[u8]) {
    struct Check;
    impl<'de> Visitor<'de> for Check {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut prev: Option<String> = None;
            while let Some(k) = map.next_key::<String>()? {
                if let Some(p) = &prev {
                    if p.as_str() >= k.as_str() {
                        return Err(de::Error::custom(format!("key {k:?} after {p:?}")));
                    }
                }
                map.next_value::<Any>()?;
                prev = Some(k);
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<Any>()?.is_some() {}
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }
    struct Any;
    impl<'de> serde::Deserialize<'de> for Any {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Any, D::Error> {
            d.deserialize_any(Check).map(|_| Any)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    if let Err(e) = de.deserialize_any(Check) {
        panic!("{}: {e}", String::from_utf8_lossy(json));
    }
}

// ---- heartbeat ----

/// Reference §10.4, with `<hash(TagA)>` = Java "TagA".hashCode() and `<ms>` = 1700000000000.
const HEARTBEAT_EXAMPLE: &str = r#"{"clientID":"10.0.0.5@12345","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"G1","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG","subString":"TagA","subVersion":1700000000000,"tagsSet":["TagA"],"topic":"T1"},{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1700000000000,"tagsSet":[],"topic":"%RETRY%G1"}],"unitMode":false}],"heartbeatFingerprint":0,"producerDataSet":[{"groupName":"P1"},{"groupName":"CLIENT_INNER_PRODUCER"}],"withoutSub":false}"#;

#[test]
fn heartbeat_reference_example_decodes() {
    let h = HeartbeatData::decode(HEARTBEAT_EXAMPLE.as_bytes()).unwrap();
    assert_eq!(h.client_id, "10.0.0.5@12345");
    assert_eq!(h.producer_data_set.len(), 2);
    assert_eq!(h.producer_data_set[1].group_name, "CLIENT_INNER_PRODUCER");
    let c = &h.consumer_data_set[0];
    assert_eq!(c.group_name, "G1");
    assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
    assert_eq!(c.message_model, MessageModel::Clustering);
    assert_eq!(
        c.consume_from_where,
        Some(ConsumeFromWhere::ConsumeFromLastOffset)
    );
    assert_eq!(
        c.subscription_data_set[0],
        SubscriptionData {
            class_filter_mode: false,
            code_set: vec![2598919],
            expression_type: "TAG".into(),
            sub_string: "TagA".into(),
            sub_version: 1_700_000_000_000,
            tags_set: vec!["TagA".into()],
            topic: "T1".into(),
        }
    );
    assert_eq!(c.subscription_data_set[1].topic, "%RETRY%G1");
    assert!(!h.without_sub);
}

#[test]
fn heartbeat_encodes_exactly_as_the_java_client_writes_it() {
    let h = HeartbeatData::decode(HEARTBEAT_EXAMPLE.as_bytes()).unwrap();
    assert_eq!(text(h.encode().unwrap()), HEARTBEAT_EXAMPLE);
    assert_eq!(text(h.encode_standard().unwrap()), HEARTBEAT_EXAMPLE);
    assert_round_trips(&h);
}

/// The C++ client: enums as ordinals, subVersion as a string, no tagsSet/codeSet/expressionType/
/// unitMode, a pull consumer with no subscriptionDataSet, and a trailing newline.
const CPP_HEARTBEAT: &str = "{\"clientID\":\"10.0.0.6@4321\",\"consumerDataSet\":[{\"consumeFromWhere\":4,\"consumeType\":1,\"groupName\":\"G2\",\"messageModel\":1,\"subscriptionDataSet\":[{\"subString\":\"TagA || TagB\",\"subVersion\":\"1700000000001\",\"topic\":\"T2\"}]},{\"consumeFromWhere\":0,\"consumeType\":0,\"groupName\":\"PULL_G\",\"messageModel\":0}],\"producerDataSet\":[{\"groupName\":\"P2\"}]}\n";

#[test]
fn heartbeat_from_cpp_client_decodes() {
    let h = HeartbeatData::decode(CPP_HEARTBEAT.as_bytes()).unwrap();
    assert_eq!(h.client_id, "10.0.0.6@4321");
    assert_eq!(h.heartbeat_fingerprint, 0);
    let push = &h.consumer_data_set[0];
    assert_eq!(push.consume_type, ConsumeType::ConsumePassively);
    assert_eq!(push.message_model, MessageModel::Clustering);
    assert_eq!(
        push.consume_from_where,
        Some(ConsumeFromWhere::ConsumeFromFirstOffset)
    );
    assert!(!push.unit_mode);
    let sub = &push.subscription_data_set[0];
    assert_eq!(sub.sub_version, 1_700_000_000_001);
    assert_eq!(sub.sub_string, "TagA || TagB");
    assert!(sub.tags_set.is_empty() && sub.code_set.is_empty());
    assert_eq!(sub.expression_type, EXPRESSION_TYPE_TAG);
    let pull = &h.consumer_data_set[1];
    assert_eq!(pull.consume_type, ConsumeType::ConsumeActively);
    assert_eq!(pull.message_model, MessageModel::Broadcasting);
    assert!(pull.subscription_data_set.is_empty());
    assert_eq!(h.producer_data_set[0].group_name, "P2");
}

#[test]
fn heartbeat_tolerates_unknown_consume_from_where_and_minimal_bodies() {
    let h = HeartbeatData::decode(
        br#"{"clientID":"c","consumerDataSet":[{"groupName":"g","consumeFromWhere":99,"consumeType":"PUSH","unitMode":"1"}]}"#,
    )
    .unwrap();
    let c = &h.consumer_data_set[0];
    assert_eq!(c.consume_from_where, None);
    assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
    assert_eq!(c.message_model, MessageModel::Clustering);
    assert!(c.unit_mode);
    // Absent lists and a null list are empty; a bare `{}` is an empty heartbeat.
    let h = HeartbeatData::decode(br#"{"clientID":"c","producerDataSet":null}"#).unwrap();
    assert!(h.producer_data_set.is_empty() && h.consumer_data_set.is_empty());
    assert_eq!(
        HeartbeatData::decode(b"{}").unwrap(),
        HeartbeatData::default()
    );
}

#[test]
fn heartbeat_rejects_an_unknown_consume_type_or_message_model() {
    for body in [
        r#"{"consumerDataSet":[{"consumeType":7}]}"#,
        r#"{"consumerDataSet":[{"messageModel":"SOMETIMES"}]}"#,
    ] {
        assert!(HeartbeatData::decode(body.as_bytes()).is_err(), "{body}");
    }
}

#[test]
fn consume_enums_match_java_ordinals() {
    use ConsumeFromWhere::*;
    let all = [
        (ConsumeFromLastOffset, 0, "CONSUME_FROM_LAST_OFFSET"),
        (
            ConsumeFromLastOffsetAndFromMinWhenBootFirst,
            1,
            "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        ),
        (ConsumeFromMinOffset, 2, "CONSUME_FROM_MIN_OFFSET"),
        (ConsumeFromMaxOffset, 3, "CONSUME_FROM_MAX_OFFSET"),
        (ConsumeFromFirstOffset, 4, "CONSUME_FROM_FIRST_OFFSET"),
        (ConsumeFromTimestamp, 5, "CONSUME_FROM_TIMESTAMP"),
    ];
    for (v, ord, name) in all {
        assert_eq!((v.ordinal(), v.name()), (ord, name));
        assert_eq!(ConsumeFromWhere::from_ordinal(i64::from(ord)), Some(v));
    }
    assert_eq!(ConsumeType::ConsumeActively.ordinal(), 0);
    assert_eq!(ConsumeType::ConsumePassively.ordinal(), 1);
    assert_eq!(ConsumeType::ConsumePop.ordinal(), 2);
    assert_eq!(MessageModel::Broadcasting.ordinal(), 0);
    assert_eq!(MessageModel::Clustering.ordinal(), 1);
}

// ---- route ----

fn sample_route() -> TopicRouteData {
    TopicRouteData {
        broker_datas: vec![BrokerData {
            broker_addrs: [(0, "10.0.0.1:10911".into()), (1, "10.0.0.2:10911".into())]
                .into_iter()
                .collect(),
            broker_name: "broker-a".into(),
            cluster: "DefaultCluster".into(),
            enable_acting_master: false,
            zone_name: None,
        }],
        filter_server_table: BTreeMap::new(),
        order_topic_conf: None,
        queue_datas: vec![QueueData {
            broker_name: "broker-a".into(),
            perm: 6,
            read_queue_nums: 4,
            topic_sys_flag: 0,
            write_queue_nums: 4,
        }],
    }
}

#[test]
fn route_data_encodes_in_both_forms_exactly() {
    let r = sample_route();
    assert_eq!(
        text(r.encode().unwrap()),
        r#"{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
    );
    assert_eq!(
        text(r.encode_standard().unwrap()),
        r#"{"brokerDatas":[{"brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
    );
    assert_eq!(r.broker_datas[0].master_addr(), Some("10.0.0.1:10911"));
    assert_round_trips(&r);
}

#[test]
fn route_form_follows_request_version_and_standard_json_flag() {
    assert_eq!(route_json_form(VERSION_V4_9_4, false), JsonForm::Standard);
    assert_eq!(route_json_form(479, false), JsonForm::Standard);
    assert_eq!(
        route_json_form(VERSION_V4_9_4 - 1, false),
        JsonForm::Fastjson
    );
    assert_eq!(route_json_form(0, true), JsonForm::Standard);
    let r = sample_route();
    assert_eq!(r.encode_for(317, false).unwrap(), r.encode().unwrap());
    assert_eq!(
        r.encode_for(401, false).unwrap(),
        r.encode_standard().unwrap()
    );
}

#[test]
fn route_from_old_fastjson_name_server_decodes() {
    // Unquoted broker ids and the pre-4.9 `topicSynFlag` key, with a zone and an order config.
    let body = br#"{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",2:"10.0.0.3:10911"},"brokerName":"b","cluster":"c","zoneName":"z1"}],"filterServerTable":{},"orderTopicConf":"b:4","queueDatas":[{"brokerName":"b","perm":7,"readQueueNums":8,"topicSynFlag":3,"writeQueueNums":8}],"topicQueueMappingByBroker":{}}"#;
    let r = TopicRouteData::decode(body).unwrap();
    let b = &r.broker_datas[0];
    assert_eq!(
        b.broker_addrs.get(&2).map(String::as_str),
        Some("10.0.0.3:10911")
    );
    assert_eq!(b.zone_name.as_deref(), Some("z1"));
    assert!(!b.enable_acting_master);
    assert_eq!(r.queue_datas[0].topic_sys_flag, 3);
    assert_eq!(r.queue_datas[0].perm, 7);
    assert_eq!(r.order_topic_conf.as_deref(), Some("b:4"));
    assert_round_trips(&r);
}

#[test]
fn cluster_info_round_trips_in_fastjson_form() {
    let mut info = ClusterInfo::default();
    info.broker_addr_table
        .insert("broker-a".into(), sample_route().broker_datas[0].clone());
    info.cluster_addr_table.insert(
        "DefaultCluster".into(),
        BTreeSet::from(["broker-a".to_string()]),
    );
    assert_eq!(
        text(info.encode().unwrap()),
        r#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#
    );
    assert_round_trips(&info);
}

// ---- offsets ----

#[test]
fn consumer_offset_table_round_trips_in_fastjson_form() {
    let body = r#"{"offsetTable":{"t@g":{0:12,1:30}}}"#;
    let w = ConsumerOffsetSerializeWrapper::decode(body.as_bytes()).unwrap();
    assert_eq!(w.offset_table["t@g"][&1], 30);
    assert_eq!(w.data_version, None);
    assert_eq!(text(w.encode().unwrap()), body);
    assert_eq!(
        text(w.encode_standard().unwrap()),
        r#"{"offsetTable":{"t@g":{"0":12,"1":30}}}"#
    );
    assert_round_trips(&w);
    let with_version = ConsumerOffsetSerializeWrapper {
        data_version: Some(DataVersion::new(1_700_000_000_000)),
        ..w
    };
    assert_round_trips(&with_version);
}

fn mq(topic: &str, broker: &str, queue_id: i32) -> MessageQueue {
    MessageQueue::new(topic, broker, queue_id)
}

#[test]
fn message_queue_keyed_tables_round_trip_through_fastjson_form() {
    let mut stats = TopicStatsTable::default();
    stats.offset_table.insert(
        mq("t", "b", 0),
        TopicOffset {
            last_update_timestamp: 1_700_000_000_000,
            max_offset: 10,
            min_offset: 2,
        },
    );
    assert_eq!(
        text(stats.encode().unwrap()),
        r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"t"}:{"lastUpdateTimestamp":1700000000000,"maxOffset":10,"minOffset":2}},"topicPutTps":0.0}"#
    );
    assert_round_trips(&stats);
    stats
        .offset_table
        .insert(mq("t", "b", 1), TopicOffset::default());
    stats
        .offset_table
        .insert(mq("a", "z", 0), TopicOffset::default());
    let fj = stats.encode().unwrap();
    assert_eq!(TopicStatsTable::decode(&fj).unwrap(), stats);
    assert_eq!(
        TopicStatsTable::decode(&stats.encode_standard().unwrap()).unwrap(),
        stats
    );

    let mut cs = ConsumeStats {
        consume_tps: 12.5,
        ..ConsumeStats::default()
    };
    cs.offset_table.insert(
        mq("t", "b", 3),
        OffsetWrapper {
            broker_offset: 100,
            consumer_offset: 90,
            last_timestamp: 5,
            pull_offset: 95,
        },
    );
    assert_eq!(
        text(cs.encode().unwrap()),
        r#"{"consumeTps":12.5,"offsetTable":{{"brokerName":"b","queueId":3,"topic":"t"}:{"brokerOffset":100,"consumerOffset":90,"lastTimestamp":5,"pullOffset":95}}}"#
    );
    assert_round_trips(&cs);

    let mut reset = ResetOffsetBody::default();
    reset.offset_table.insert(mq("t", "b", 0), 7);
    reset.offset_table.insert(mq("t", "b", 1), -1);
    assert_eq!(
        text(reset.encode().unwrap()),
        r#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"t"}:7,{"brokerName":"b","queueId":1,"topic":"t"}:-1}}"#
    );
    assert_round_trips(&reset);
}

#[test]
fn message_queue_keys_from_java_decode_whatever_the_member_order_and_spacing() {
    let body = br#"{"offsetTable":{{"topic":"t","queueId":1,"brokerName":"b"}:5, { "brokerName" : "b" , "queueId" : 0 , "topic" : "t" } : 4}}"#;
    let r = ResetOffsetBody::decode(body).unwrap();
    assert_eq!(r.offset_table[&mq("t", "b", 1)], 5);
    assert_eq!(r.offset_table[&mq("t", "b", 0)], 4);
}

#[test]
fn message_queue_orders_like_java_and_displays_like_java() {
    let mut v = vec![
        mq("b", "a", 0),
        mq("a", "z", 1),
        mq("a", "z", 0),
        mq("a", "b", 9),
    ];
    v.sort();
    assert_eq!(
        v,
        vec![
            mq("a", "b", 9),
            mq("a", "z", 0),
            mq("a", "z", 1),
            mq("b", "a", 0)
        ]
    );
    assert_eq!(
        mq("t", "b", 2).to_string(),
        "MessageQueue [topic=t, brokerName=b, queueId=2]"
    );
}

// ---- topic configs and registration ----

fn sample_topic_wrapper() -> TopicConfigSerializeWrapper {
    let mut t = TopicConfig::new("T1");
    t.read_queue_nums = 8;
    t.write_queue_nums = 8;
    let mut w = TopicConfigSerializeWrapper {
        data_version: DataVersion {
            counter: 3,
            state_version: 0,
            timestamp: 1_700_000_000_000,
        },
        ..Default::default()
    };
    w.topic_config_table.insert("T1".into(), t);
    w
}

#[test]
fn register_broker_body_encodes_like_the_reference() {
    let body = RegisterBrokerBody {
        filter_server_list: vec![],
        topic_config_serialize_wrapper: sample_topic_wrapper(),
    };
    assert_eq!(
        text(body.encode().unwrap()),
        r#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},"topicConfigTable":{"T1":{"attributes":{},"order":false,"perm":6,"readQueueNums":8,"topicFilterType":"SINGLE_TAG","topicName":"T1","topicSysFlag":0,"writeQueueNums":8}}}}"#
    );
    assert_round_trips(&body);
}

#[test]
fn register_broker_body_accepts_5x_mapping_keys_and_the_bare_wrapper() {
    let full = br#"{"filterServerList":["f:1"],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},"topicConfigTable":{"T1":{"attributes":{},"order":false,"perm":6,"readQueueNums":8,"topicFilterType":"SINGLE_TAG","topicName":"T1","topicSysFlag":0,"writeQueueNums":8}},"topicQueueMappingInfoMap":{},"topicQueueMappingDetailMap":{},"mappingDataVersion":{"counter":0,"stateVersion":0,"timestamp":1}}}"#;
    let b = RegisterBrokerBody::decode(full).unwrap();
    assert_eq!(b.filter_server_list, vec!["f:1".to_string()]);
    assert_eq!(b.topic_config_serialize_wrapper, sample_topic_wrapper());

    let bare = sample_topic_wrapper().encode().unwrap();
    let b = RegisterBrokerBody::decode(&bare).unwrap();
    assert!(b.filter_server_list.is_empty());
    assert_eq!(b.topic_config_serialize_wrapper, sample_topic_wrapper());
}

#[test]
fn topic_config_absent_fields_take_java_defaults() {
    let w = TopicConfigSerializeWrapper::decode(br#"{"topicConfigTable":{"T":{"topicName":"T"}}}"#)
        .unwrap();
    let t = &w.topic_config_table["T"];
    assert_eq!(t, &TopicConfig::new("T"));
    assert_eq!((t.read_queue_nums, t.write_queue_nums, t.perm), (16, 16, 6));
    assert_eq!(t.topic_filter_type, TopicFilterType::SingleTag);
    assert_round_trips(&sample_topic_wrapper());
}

#[test]
fn data_version_compares_like_java() {
    use std::cmp::Ordering;
    let mut a = DataVersion::new(10);
    let b = a;
    a.next_version(5, 0);
    assert_eq!(a.counter, 1);
    assert_eq!(a.compare(&b), Ordering::Greater);
    let newer_state = DataVersion {
        state_version: 1,
        ..DataVersion::new(0)
    };
    assert_eq!(newer_state.compare(&a), Ordering::Greater);
}

// ---- subscription groups ----

#[test]
fn subscription_group_config_defaults_match_java_and_encode_sorted() {
    let g = SubscriptionGroupConfig::decode(br#"{"groupName":"G1"}"#).unwrap();
    assert_eq!(g, SubscriptionGroupConfig::new("G1"));
    assert!(g.consume_enable && g.consume_from_min_enable && g.consume_broadcast_enable);
    assert!(!g.consume_message_orderly && g.notify_consumer_ids_changed_enable);
    assert_eq!((g.retry_queue_nums, g.retry_max_times), (1, 16));
    assert_eq!((g.broker_id, g.which_broker_when_consume_slowly), (0, 1));
    assert_eq!(g.consume_timeout_minute, 15);
    assert_eq!(
        text(g.encode().unwrap()),
        r#"{"attributes":{},"brokerId":0,"consumeBroadcastEnable":true,"consumeEnable":true,"consumeFromMinEnable":true,"consumeMessageOrderly":false,"consumeTimeoutMinute":15,"groupName":"G1","groupRetryPolicy":{"type":"CUSTOMIZED"},"groupSysFlag":0,"notifyConsumerIdsChangedEnable":true,"retryMaxTimes":16,"retryQueueNums":1,"whichBrokerWhenConsumeSlowly":1}"#
    );
    assert_round_trips(&g);
}

#[test]
fn subscription_group_wrapper_round_trips() {
    let mut g = SubscriptionGroupConfig::new("G1");
    g.group_retry_policy = GroupRetryPolicy {
        customized_retry_policy: Some(CustomizedRetryPolicy::default()),
        exponential_retry_policy: Some(ExponentialRetryPolicy::default()),
        policy_type: GroupRetryPolicyType::Exponential,
    };
    g.subscription_data_set = Some(vec![SimpleSubscriptionData {
        expression: "*".into(),
        expression_type: "TAG".into(),
        topic: "T1".into(),
        version: 1,
    }]);
    let mut w = SubscriptionGroupWrapper {
        data_version: DataVersion::new(1),
        ..Default::default()
    };
    w.subscription_group_table.insert("G1".into(), g);
    w.forbidden_table
        .insert("G1".into(), BTreeMap::from([("T1".to_string(), 2)]));
    assert_round_trips(&w);
    assert_eq!(CustomizedRetryPolicy::default().next.len(), 18);
}

// ---- small bodies ----

#[test]
fn small_bodies_round_trip_with_java_key_names() {
    let kv = KVTable {
        table: BTreeMap::from([("T1".to_string(), "b:4".to_string())]),
    };
    assert_eq!(text(kv.encode().unwrap()), r#"{"table":{"T1":"b:4"}}"#);
    assert_round_trips(&kv);

    let kv_file = KVConfigSerializeWrapper {
        config_table: BTreeMap::from([("ORDER_TOPIC_CONFIG".to_string(), kv.table.clone())]),
    };
    assert_eq!(
        text(kv_file.encode().unwrap()),
        r#"{"configTable":{"ORDER_TOPIC_CONFIG":{"T1":"b:4"}}}"#
    );
    assert_round_trips(&kv_file);

    let tl = TopicList {
        broker_addr: None,
        topic_list: BTreeSet::from(["A".to_string(), "B".to_string()]),
    };
    assert_eq!(text(tl.encode().unwrap()), r#"{"topicList":["A","B"]}"#);
    assert_round_trips(&tl);
    assert_round_trips(&TopicList {
        broker_addr: Some("10.0.0.1:10911".into()),
        ..tl
    });

    let ids = GetConsumerListByGroupResponseBody {
        consumer_id_list: vec!["10.0.0.5@1".into(), "10.0.0.6@2".into()],
    };
    assert_eq!(
        text(ids.encode().unwrap()),
        r#"{"consumerIdList":["10.0.0.5@1","10.0.0.6@2"]}"#
    );
    assert_round_trips(&ids);
}

#[test]
fn lock_bodies_round_trip_and_only_this_broker_defaults_to_false() {
    let req = LockBatchRequestBody::decode(
        br#"{"consumerGroup":"G","clientId":"c@1","mqSet":[{"topic":"t","brokerName":"b","queueId":1},{"topic":"t","brokerName":"b","queueId":0}]}"#,
    )
    .unwrap();
    assert!(!req.only_this_broker);
    assert_eq!(
        req.mq_set.iter().cloned().collect::<Vec<_>>(),
        vec![mq("t", "b", 0), mq("t", "b", 1)]
    );
    assert_eq!(
        text(req.encode().unwrap()),
        r#"{"clientId":"c@1","consumerGroup":"G","mqSet":[{"brokerName":"b","queueId":0,"topic":"t"},{"brokerName":"b","queueId":1,"topic":"t"}],"onlyThisBroker":false}"#
    );
    assert_round_trips(&req);

    let resp = LockBatchResponseBody {
        lock_ok_mq_set: BTreeSet::from([mq("t", "b", 0)]),
    };
    assert_eq!(
        text(resp.encode().unwrap()),
        r#"{"lockOKMQSet":[{"brokerName":"b","queueId":0,"topic":"t"}]}"#
    );
    assert_round_trips(&resp);

    let unlock = UnlockBatchRequestBody {
        client_id: "c@1".into(),
        consumer_group: "G".into(),
        mq_set: BTreeSet::from([mq("t", "b", 2)]),
        only_this_broker: true,
    };
    assert_round_trips(&unlock);
}

#[test]
fn batch_ack_uses_short_keys_and_base64_bit_set() {
    let mut ack = BatchAck {
        consumer_group: "G".into(),
        invisible_time: 60_000,
        pop_time: 1_700_000_000_000,
        queue_id: 1,
        retry: "0".into(),
        revive_queue_id: 3,
        start_offset: 100,
        topic: "T".into(),
        ..Default::default()
    };
    ack.set_acked(0);
    ack.set_acked(2);
    ack.set_acked(9);
    assert_eq!(ack.bit_set, vec![0b0000_0101, 0b0000_0010]);
    assert_eq!(ack.acked_offsets().collect::<Vec<_>>(), vec![100, 102, 109]);
    let body = BatchAckMessageRequestBody {
        acks: vec![ack.clone()],
        broker_name: "broker-a".into(),
    };
    assert_eq!(
        text(body.encode().unwrap()),
        r#"{"acks":[{"b":"BQI=","c":"G","it":60000,"pt":1700000000000,"q":1,"r":"0","rq":3,"so":100,"t":"T"}],"brokerName":"broker-a"}"#
    );
    assert_round_trips(&body);
    // Long names and a byte array are read too.
    let long = BatchAckMessageRequestBody::decode(
        br#"{"brokerName":"broker-a","acks":[{"bitSet":[5,2],"consumerGroup":"G","invisibleTime":60000,"popTime":1700000000000,"queueId":1,"retry":"0","reviveQueueId":3,"startOffset":100,"topic":"T"}]}"#,
    )
    .unwrap();
    assert_eq!(long, body);
}

#[test]
fn connections_round_trip_with_language_names() {
    let conn = Connection {
        client_addr: "10.0.0.5:50000".into(),
        client_id: "10.0.0.5@1".into(),
        language: crate::LanguageCode::Cpp,
        version: 479,
    };
    let mut cc = ConsumerConnection {
        connection_set: vec![conn.clone()],
        consume_from_where: Some(ConsumeFromWhere::ConsumeFromFirstOffset),
        consume_type: ConsumeType::ConsumePassively,
        message_model: MessageModel::Clustering,
        subscription_table: BTreeMap::new(),
    };
    cc.subscription_table
        .insert("T1".into(), SubscriptionData::default());
    assert_round_trips(&cc);
    let pc = ProducerConnection {
        connection_set: vec![conn],
    };
    assert_eq!(
        text(pc.encode().unwrap()),
        r#"{"connectionSet":[{"clientAddr":"10.0.0.5:50000","clientId":"10.0.0.5@1","language":"CPP","version":479}]}"#
    );
    assert_round_trips(&pc);
    let by_code = ProducerConnection::decode(br#"{"connectionSet":[{"language":0}]}"#).unwrap();
    assert_eq!(
        by_code.connection_set[0].language,
        crate::LanguageCode::Java
    );
}

/// CHECK_CLIENT_CONFIG as a Java push consumer sends it at start for a SQL92 subscription.
const CHECK_CLIENT_EXAMPLE: &str = r#"{"clientId":"10.0.0.5@12345","group":"G1","subscriptionData":{"classFilterMode":false,"codeSet":[],"expressionType":"SQL92","subString":"a > 5 AND TAGS IS NOT NULL","subVersion":1700000000000,"tagsSet":[],"topic":"T1"}}"#;

#[test]
fn check_client_body_matches_the_java_client() {
    let body = CheckClientRequestBody::decode(CHECK_CLIENT_EXAMPLE.as_bytes()).unwrap();
    assert_eq!(body.client_id.as_deref(), Some("10.0.0.5@12345"));
    assert_eq!(body.group.as_deref(), Some("G1"));
    assert_eq!(body.namespace, None);
    let sub = body.subscription_data.as_ref().unwrap();
    assert_eq!(sub.expression_type, "SQL92");
    assert_eq!(sub.sub_string, "a > 5 AND TAGS IS NOT NULL");
    assert_eq!(text(body.encode().unwrap()), CHECK_CLIENT_EXAMPLE);
    assert_round_trips(&body);
    let with_ns = CheckClientRequestBody {
        namespace: Some("ns".into()),
        ..body
    };
    assert_round_trips(&with_ns);
    // An empty body object (no subscription) and explicit nulls decode.
    let empty = CheckClientRequestBody::decode(b"{}").unwrap();
    assert_eq!(empty, CheckClientRequestBody::default());
    assert_eq!(text(empty.encode().unwrap()), "{}");
    let nulls =
        CheckClientRequestBody::decode(br#"{"clientId":null,"subscriptionData":null}"#).unwrap();
    assert_eq!(nulls, CheckClientRequestBody::default());
}

// ---- robustness ----

fn assert_decoder_never_panics<T: JsonBody>(seed: &[u8]) {
    assert!(T::decode(seed).is_ok());
    for end in 0..seed.len() {
        assert!(T::decode(&seed[..end]).is_err(), "prefix {end}");
    }
    for input in garbage_inputs(&[seed]) {
        let _ = T::decode(&input);
    }
}

#[test]
fn body_decoders_reject_prefixes_and_survive_garbage() {
    assert_decoder_never_panics::<HeartbeatData>(HEARTBEAT_EXAMPLE.as_bytes());
    assert_decoder_never_panics::<HeartbeatData>(CPP_HEARTBEAT.trim_end().as_bytes());
    assert_decoder_never_panics::<CheckClientRequestBody>(CHECK_CLIENT_EXAMPLE.as_bytes());
    assert_decoder_never_panics::<TopicRouteData>(&sample_route().encode().unwrap());
    assert_decoder_never_panics::<RegisterBrokerBody>(
        &RegisterBrokerBody::default().encode().unwrap(),
    );
    let mut reset = ResetOffsetBody::default();
    reset.offset_table.insert(mq("t", "b", 0), 7);
    assert_decoder_never_panics::<ResetOffsetBody>(&reset.encode().unwrap());
    assert_decoder_never_panics::<ConsumerOffsetSerializeWrapper>(
        br#"{"offsetTable":{"t@g":{0:12,1:30}}}"#,
    );
}
