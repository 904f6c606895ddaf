use std::collections::BTreeMap;
use std::sync::Arc;

use apogee_protocol::body::{
    DataVersion, JsonBody, KVTable, QueueData, RegisterBrokerBody, TopicConfig,
    TopicConfigSerializeWrapper, TopicList, TopicRouteData,
};
use apogee_protocol::codes::{request_code as rc, response_code as code};
use apogee_protocol::header::*;
use apogee_protocol::message::crc32_masked;
use apogee_protocol::{ExtFields, RemotingCommand};

use super::*;
use crate::clock::ManualClock;
use crate::route::SELF_TEST_TOPIC;

fn processor() -> (NamesrvProcessor, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let p = NamesrvProcessor::new(
        NamesrvConfig::default(),
        Arc::new(KvConfigManager::in_memory()),
        clock.clone(),
    );
    (p, clock)
}

async fn call(p: &NamesrvProcessor, request: RemotingCommand) -> RemotingCommand {
    p.process(None, request).await.expect("a response")
}

fn register_request(name: &str, id: i64, addr: &str, topics: &[&str]) -> RemotingCommand {
    let mut table = BTreeMap::new();
    for t in topics.iter().copied().chain([SELF_TEST_TOPIC]) {
        table.insert(t.to_owned(), TopicConfig::new(t));
    }
    let body = RegisterBrokerBody {
        filter_server_list: vec![],
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            data_version: DataVersion::new(5),
            topic_config_table: table,
        },
    }
    .encode()
    .unwrap();
    let h = RegisterBrokerRequestHeader {
        broker_name: name.into(),
        broker_addr: addr.into(),
        cluster_name: "c1".into(),
        ha_server_addr: "h:10912".into(),
        broker_id: id,
        body_crc32: crc32_masked(&body) as i32,
        ..Default::default()
    };
    RemotingCommand::request_with_header(rc::REGISTER_BROKER, &h).with_body(body)
}

#[tokio::test]
async fn every_served_code_answers_garbage_headers_with_an_error_not_a_panic() {
    let (p, _) = processor();
    let garbage: ExtFields = [
        ("brokerId", "x"),
        ("topic", ""),
        ("heartbeatTimeoutMillis", "soon"),
        ("bodyCrc32", "abc"),
        ("cluster", "\u{0}"),
    ]
    .into_iter()
    .collect();
    for &c in SERVED_CODES {
        for ext in [ExtFields::new(), garbage.clone()] {
            let mut req = RemotingCommand::request(c).with_body(&b"{not json"[..]);
            req.ext_fields = ext;
            let resp = call(&p, req).await;
            assert!(resp.is_response());
            // Header-less commands may succeed; the rest must say why they failed.
            if resp.code != code::SUCCESS {
                assert!(resp.remark.is_some(), "code {c}: no remark");
            }
        }
    }
}

#[tokio::test]
async fn unknown_code_is_not_supported_with_javas_remark() {
    let (p, _) = processor();
    let resp = call(&p, RemotingCommand::request(10)).await;
    assert_eq!(resp.code, code::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(
        resp.remark.as_deref(),
        Some(" request type 10 not supported")
    );
}

#[tokio::test]
async fn register_then_route_then_unregister() {
    let (p, _) = processor();
    let resp = call(&p, register_request("a", 0, "1.1.1.1:10911", &["T"])).await;
    assert_eq!(resp.code, code::SUCCESS, "{:?}", resp.remark);
    // No ORDER_TOPIC_CONFIG namespace: no body, as Java.
    assert!(resp.body.is_empty());

    let req = RemotingCommand::request_with_header(
        rc::GET_ROUTEINFO_BY_TOPIC,
        &GetRouteInfoRequestHeader {
            topic: "T".into(),
            ..Default::default()
        },
    );
    let resp = call(&p, req.clone()).await;
    assert_eq!(resp.code, code::SUCCESS);
    let route = TopicRouteData::decode(&resp.body).unwrap();
    assert_eq!(route.broker_datas[0].master_addr(), Some("1.1.1.1:10911"));

    let unreg = UnRegisterBrokerRequestHeader {
        broker_name: "a".into(),
        broker_addr: "1.1.1.1:10911".into(),
        cluster_name: "c1".into(),
        broker_id: 0,
    };
    let resp = call(
        &p,
        RemotingCommand::request_with_header(rc::UNREGISTER_BROKER, &unreg),
    )
    .await;
    assert_eq!(resp.code, code::SUCCESS);
    let resp = call(&p, req).await;
    assert_eq!(resp.code, code::TOPIC_NOT_EXIST);
    assert!(resp.remark.unwrap().contains("T"));
}

#[tokio::test]
async fn register_with_a_bad_body_or_compression_is_refused() {
    let (p, _) = processor();
    let mut req = register_request("a", 0, "1.1.1.1:10911", &[]);
    req.body = Vec::from(&b"{\"topicConfigSerializeWrapper\":[1,2]}"[..]).into();
    req.ext_fields.insert("bodyCrc32", "0");
    let resp = call(&p, req).await;
    assert_eq!(resp.code, code::SYSTEM_ERROR);
    assert!(resp.remark.unwrap().contains("RegisterBrokerBody"));

    let mut req = register_request("a", 0, "1.1.1.1:10911", &[]);
    req.ext_fields.insert("compressed", "true");
    let resp = call(&p, req).await;
    assert_eq!(resp.code, code::SYSTEM_ERROR);
    assert!(p.with_route(|r| r.broker_data("a").is_none()));
}

#[tokio::test]
async fn register_with_an_empty_body_registers_the_broker_without_topics() {
    let (p, _) = processor();
    let mut req = register_request("a", 0, "1.1.1.1:10911", &[]);
    req.body = Default::default();
    req.ext_fields.insert("bodyCrc32", "0");
    assert_eq!(call(&p, req).await.code, code::SUCCESS);
    assert!(p.with_route(|r| r.broker_data("a").is_some()));
}

#[tokio::test]
async fn registering_broker_gets_the_order_topic_table() {
    let (p, _) = processor();
    p.kv()
        .put(NAMESPACE_ORDER_TOPIC_CONFIG, "T", "a:4")
        .unwrap();
    let resp = call(&p, register_request("a", 0, "1.1.1.1:10911", &["T"])).await;
    assert_eq!(resp.code, code::SUCCESS);
    let table = KVTable::decode(&resp.body).unwrap();
    assert_eq!(
        table.table,
        BTreeMap::from([("T".to_owned(), "a:4".to_owned())])
    );
}

#[tokio::test]
async fn order_topic_conf_is_added_only_when_enabled() {
    let (p, _) = processor();
    call(&p, register_request("a", 0, "1.1.1.1:10911", &["T"])).await;
    p.kv()
        .put(NAMESPACE_ORDER_TOPIC_CONFIG, "T", "a:8")
        .unwrap();
    let req = RemotingCommand::request_with_header(
        rc::GET_ROUTEINFO_BY_TOPIC,
        &GetRouteInfoRequestHeader {
            topic: "T".into(),
            ..Default::default()
        },
    );
    let route = TopicRouteData::decode(&call(&p, req.clone()).await.body).unwrap();
    assert_eq!(route.order_topic_conf, None);

    let update = RemotingCommand::request(rc::UPDATE_NAMESRV_CONFIG)
        .with_body(&b"orderMessageEnable=true\n"[..]);
    assert_eq!(call(&p, update).await.code, code::SUCCESS);
    assert!(p.config().order_message_enable);
    let route = TopicRouteData::decode(&call(&p, req).await.body).unwrap();
    assert_eq!(route.order_topic_conf.as_deref(), Some("a:8"));
}

#[tokio::test]
async fn config_update_refuses_black_listed_and_unknown_keys() {
    let (p, _) = processor();
    let resp = call(
        &p,
        RemotingCommand::request(rc::UPDATE_NAMESRV_CONFIG).with_body(&b"kvConfigPath=/etc/x"[..]),
    )
    .await;
    assert_eq!(resp.code, code::NO_PERMISSION);
    assert_eq!(
        resp.remark.as_deref(),
        Some("Can not update config in black list.")
    );
    let resp = call(
        &p,
        RemotingCommand::request(rc::UPDATE_NAMESRV_CONFIG).with_body(&b"whatever=1"[..]),
    )
    .await;
    assert_eq!(resp.code, code::INVALID_PARAMETER);
    assert!(resp.remark.unwrap().contains("whatever"));

    let resp = call(&p, RemotingCommand::request(rc::GET_NAMESRV_CONFIG)).await;
    let text = String::from_utf8(resp.body.to_vec()).unwrap();
    assert!(
        text.contains("kvConfigPath=data/namesrv/kvConfig.json\n"),
        "{text}"
    );
}

#[tokio::test]
async fn topic_lists_can_be_disabled() {
    let (p, _) = processor();
    let update = RemotingCommand::request(rc::UPDATE_NAMESRV_CONFIG)
        .with_body(&b"enableAllTopicList=false\nenableTopicList=false"[..]);
    assert_eq!(call(&p, update).await.code, code::SUCCESS);
    for c in [
        rc::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
        rc::GET_UNIT_TOPIC_LIST,
        rc::GET_HAS_UNIT_SUB_TOPIC_LIST,
        rc::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST,
    ] {
        let resp = call(&p, RemotingCommand::request(c)).await;
        assert_eq!(resp.code, code::SYSTEM_ERROR);
        assert_eq!(resp.remark.as_deref(), Some("disable"));
    }
}

#[tokio::test]
async fn unit_topic_lists_are_empty_topic_lists_by_default() {
    let (p, _) = processor();
    call(&p, register_request("a", 0, "1.1.1.1:10911", &["T"])).await;
    for c in [
        rc::GET_UNIT_TOPIC_LIST,
        rc::GET_HAS_UNIT_SUB_TOPIC_LIST,
        rc::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST,
    ] {
        let resp = call(&p, RemotingCommand::request(c)).await;
        assert_eq!(resp.code, code::SUCCESS);
        assert_eq!(&resp.body[..], b"{\"topicList\":[]}");
    }
}

#[tokio::test]
async fn kv_get_miss_is_query_not_found_and_list_by_namespace_works() {
    let (p, _) = processor();
    let get = RemotingCommand::request_with_header(
        rc::GET_KV_CONFIG,
        &GetKVConfigRequestHeader {
            namespace: "ns".into(),
            key: "k".into(),
        },
    );
    let resp = call(&p, get.clone()).await;
    assert_eq!(resp.code, code::QUERY_NOT_FOUND);
    assert_eq!(
        resp.remark.as_deref(),
        Some("No config item, Namespace: ns Key: k")
    );

    let put = RemotingCommand::request_with_header(
        rc::PUT_KV_CONFIG,
        &PutKVConfigRequestHeader {
            namespace: "ns".into(),
            key: "k".into(),
            value: "v".into(),
        },
    );
    assert_eq!(call(&p, put).await.code, code::SUCCESS);
    let resp = call(&p, get.clone()).await;
    assert_eq!(resp.code, code::SUCCESS);
    assert_eq!(resp.ext_fields.get("value"), Some("v"));

    let list = RemotingCommand::request_with_header(
        rc::GET_KVLIST_BY_NAMESPACE,
        &GetKVListByNamespaceRequestHeader {
            namespace: "ns".into(),
        },
    );
    let resp = call(&p, list.clone()).await;
    assert_eq!(&resp.body[..], b"{\"table\":{\"k\":\"v\"}}");

    let del = RemotingCommand::request_with_header(
        rc::DELETE_KV_CONFIG,
        &DeleteKVConfigRequestHeader {
            namespace: "ns".into(),
            key: "k".into(),
        },
    );
    assert_eq!(call(&p, del).await.code, code::SUCCESS);
    assert_eq!(call(&p, get).await.code, code::QUERY_NOT_FOUND);
    let resp = call(&p, list).await;
    assert_eq!(resp.code, code::QUERY_NOT_FOUND);
    assert_eq!(
        resp.remark.as_deref(),
        Some("No config item, Namespace: ns")
    );
}

#[tokio::test]
async fn query_data_version_heartbeat_and_expiry() {
    let (p, clock) = processor();
    call(&p, register_request("a", 0, "1.1.1.1:10911", &["T"])).await;
    let h = QueryDataVersionRequestHeader {
        broker_name: "a".into(),
        broker_addr: "1.1.1.1:10911".into(),
        cluster_name: "c1".into(),
        broker_id: 0,
    };
    let same = DataVersion::new(5).encode().unwrap();
    let resp = call(
        &p,
        RemotingCommand::request_with_header(rc::QUERY_DATA_VERSION, &h).with_body(same.clone()),
    )
    .await;
    assert_eq!(resp.code, code::SUCCESS);
    assert_eq!(resp.ext_fields.get("changed"), Some("false"));
    assert_eq!(
        DataVersion::decode(&resp.body).unwrap(),
        DataVersion::new(5)
    );
    let other = DataVersion::new(6).encode().unwrap();
    let resp = call(
        &p,
        RemotingCommand::request_with_header(rc::QUERY_DATA_VERSION, &h).with_body(other),
    )
    .await;
    assert_eq!(resp.ext_fields.get("changed"), Some("true"));
    let resp = call(
        &p,
        RemotingCommand::request_with_header(rc::QUERY_DATA_VERSION, &h),
    )
    .await;
    assert_eq!(resp.code, code::SYSTEM_ERROR);

    clock.advance(100_000);
    let hb = BrokerHeartbeatRequestHeader {
        cluster_name: "c1".into(),
        broker_addr: "1.1.1.1:10911".into(),
        broker_name: "a".into(),
        ..Default::default()
    };
    let resp = call(
        &p,
        RemotingCommand::request_with_header(rc::BROKER_HEARTBEAT, &hb),
    )
    .await;
    assert_eq!(resp.code, code::SUCCESS);
    clock.advance(100_000);
    assert!(p.scan_not_active_brokers().is_empty());
    clock.advance(20_001);
    assert_eq!(p.scan_not_active_brokers().len(), 1);
}

#[tokio::test]
async fn wipe_add_delete_and_register_topic_through_the_processor() {
    let (p, _) = processor();
    call(&p, register_request("a", 0, "1.1.1.1:10911", &["T", "U"])).await;

    let wipe = RemotingCommand::request_with_header(
        rc::WIPE_WRITE_PERM_OF_BROKER,
        &WipeWritePermOfBrokerRequestHeader {
            broker_name: "a".into(),
        },
    );
    let resp = call(&p, wipe).await;
    assert_eq!(resp.ext_fields.get("wipeTopicCount"), Some("3"));
    let add = RemotingCommand::request_with_header(
        rc::ADD_WRITE_PERM_OF_BROKER,
        &AddWritePermOfBrokerRequestHeader {
            broker_name: "a".into(),
        },
    );
    let resp = call(&p, add).await;
    assert_eq!(resp.ext_fields.get("addTopicCount"), Some("3"));

    let del = RemotingCommand::request_with_header(
        rc::DELETE_TOPIC_IN_NAMESRV,
        &DeleteTopicFromNamesrvRequestHeader {
            topic: "U".into(),
            cluster_name: Some("c1".into()),
        },
    );
    assert_eq!(call(&p, del).await.code, code::SUCCESS);
    assert!(p.with_route(|r| r.topic_queues("U").is_none()));

    let route = TopicRouteData {
        queue_datas: vec![QueueData {
            broker_name: "a".into(),
            perm: 6,
            read_queue_nums: 2,
            topic_sys_flag: 0,
            write_queue_nums: 2,
        }],
        ..Default::default()
    };
    let reg = RemotingCommand::request_with_header(
        rc::REGISTER_TOPIC_IN_NAMESRV,
        &RegisterTopicRequestHeader {
            topic: "New".into(),
        },
    )
    .with_body(route.encode().unwrap());
    assert_eq!(call(&p, reg).await.code, code::SUCCESS);
    let topics = call(
        &p,
        RemotingCommand::request(rc::GET_ALL_TOPIC_LIST_FROM_NAMESERVER),
    )
    .await;
    let list = TopicList::decode(&topics.body).unwrap();
    assert_eq!(
        list.topic_list.into_iter().collect::<Vec<_>>(),
        ["New", SELF_TEST_TOPIC, "T"]
    );
}

#[tokio::test]
async fn broker_member_group_lists_the_groups_addresses() {
    let (p, _) = processor();
    call(&p, register_request("a", 0, "1.1.1.1:10911", &["T"])).await;
    call(&p, register_request("a", 1, "1.1.1.2:10911", &["T"])).await;
    let req = RemotingCommand::request_with_header(
        rc::GET_BROKER_MEMBER_GROUP,
        &GetBrokerMemberGroupRequestHeader {
            cluster_name: "c1".into(),
            broker_name: "a".into(),
        },
    );
    let resp = call(&p, req).await;
    assert_eq!(
        std::str::from_utf8(&resp.body).unwrap(),
        r#"{"brokerMemberGroup":{"brokerAddrs":{0:"1.1.1.1:10911",1:"1.1.1.2:10911"},"brokerName":"a","cluster":"c1"}}"#
    );
}

#[tokio::test]
async fn a_java_5x_registration_body_with_mapping_tables_is_read() {
    let (p, _) = processor();
    let body = br#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},"mappingDataVersion":{"counter":0,"stateVersion":0,"timestamp":1700000000001},"topicConfigTable":{"SELF_TEST_TOPIC":{"attributes":{},"order":false,"perm":6,"readQueueNums":1,"topicFilterType":"SINGLE_TAG","topicName":"SELF_TEST_TOPIC","topicSysFlag":0,"writeQueueNums":1},"TopicTest":{"attributes":{"+message.type":"NORMAL"},"order":false,"perm":6,"readQueueNums":8,"topicFilterType":"SINGLE_TAG","topicName":"TopicTest","topicSysFlag":0,"writeQueueNums":8}},"topicQueueMappingDetailMap":{},"topicQueueMappingInfoMap":{}}}"#;
    // A 4.x broker: no enableActingMaster, JSON numbers as header strings, CRC checked.
    let ext: ExtFields = [
        ("brokerName", "broker-a"),
        ("brokerAddr", "10.1.1.1:10911"),
        ("clusterName", "DefaultCluster"),
        ("haServerAddr", "10.1.1.1:10912"),
        ("brokerId", "0"),
        ("compressed", "false"),
    ]
    .into_iter()
    .collect();
    let mut req = RemotingCommand::request(rc::REGISTER_BROKER).with_body(&body[..]);
    req.ext_fields = ext;
    req.ext_fields
        .insert("bodyCrc32", crc32_masked(body).to_string());
    req.version = 373;
    let resp = call(&p, req).await;
    assert_eq!(resp.code, code::SUCCESS, "{:?}", resp.remark);
    let queues = p
        .with_route(|r| r.topic_queues("TopicTest").cloned())
        .unwrap();
    assert_eq!(queues["broker-a"].read_queue_nums, 8);
    let version = p.with_route(|r| r.broker_data_version("DefaultCluster", "10.1.1.1:10911"));
    assert_eq!(version.map(|v| v.counter), Some(3));
    assert!(!p.with_route(|r| r.broker_data("broker-a").unwrap().enable_acting_master));
}
