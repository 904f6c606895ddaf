//! The name server over TCP on 127.0.0.1:0, driven by the remoting client the way brokers, Java
//! clients and mqadmin drive a RocketMQ name server.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apogee_namesrv::{ManualClock, NameServer, NameServerHandle, NamesrvConfig, SELF_TEST_TOPIC};
use apogee_protocol::body::{
    ClusterInfo, DataVersion, JsonBody, RegisterBrokerBody, TopicConfig,
    TopicConfigSerializeWrapper, TopicList, TopicRouteData,
};
use apogee_protocol::codes::{request_code as rc, response_code as code};
use apogee_protocol::header::*;
use apogee_protocol::message::crc32_masked;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{RemotingClient, RemotingConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(3);
const BROKER_A: &str = "127.0.0.1:10911";
const BROKER_A_SLAVE: &str = "127.0.0.2:10911";
const BROKER_B: &str = "127.0.0.3:10911";
/// A 4.9.3 client: older than V4_9_4 (401), so it gets the fastjson form.
const OLD_CLIENT_VERSION: i32 = 399;
/// A 5.3.3 client.
const NEW_CLIENT_VERSION: i32 = 479;

fn config(dir: &Path) -> NamesrvConfig {
    NamesrvConfig {
        listen_addr: "127.0.0.1:0".into(),
        kv_config_path: dir.join("kvConfig.json"),
        ..NamesrvConfig::default()
    }
}

async fn start(dir: &Path) -> NameServerHandle {
    NameServer::start(config(dir)).await.unwrap()
}

fn client() -> RemotingClient {
    RemotingClient::new(RemotingConfig::default())
}

async fn invoke(
    client: &RemotingClient,
    ns: &NameServerHandle,
    req: RemotingCommand,
) -> RemotingCommand {
    client
        .invoke(&ns.local_addr().to_string(), req, TIMEOUT)
        .await
        .unwrap()
}

/// A REGISTER_BROKER as a Java broker builds it: body JSON, masked CRC32 in the header.
fn register_request(name: &str, id: i64, addr: &str, topics: &[(&str, i32)]) -> RemotingCommand {
    let mut table = BTreeMap::new();
    for (topic, queues) in topics.iter().copied().chain([(SELF_TEST_TOPIC, 1)]) {
        let mut tc = TopicConfig::new(topic);
        tc.read_queue_nums = queues;
        tc.write_queue_nums = queues;
        table.insert(topic.to_owned(), tc);
    }
    let body = RegisterBrokerBody {
        filter_server_list: vec![],
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            data_version: DataVersion::new(1_700_000_000_000),
            topic_config_table: table,
        },
    }
    .encode()
    .unwrap();
    let header = RegisterBrokerRequestHeader {
        broker_name: name.into(),
        broker_addr: addr.into(),
        cluster_name: "DefaultCluster".into(),
        ha_server_addr: addr.replace("10911", "10912"),
        broker_id: id,
        heartbeat_timeout_millis: None,
        enable_acting_master: Some(false),
        compressed: false,
        body_crc32: crc32_masked(&body) as i32,
        zone_name: None,
    };
    let mut req =
        RemotingCommand::request_with_header(rc::REGISTER_BROKER, &header).with_body(body);
    req.version = NEW_CLIENT_VERSION;
    req
}

fn route_request(topic: &str, version: i32, standard_only: Option<bool>) -> RemotingCommand {
    let mut req = RemotingCommand::request_with_header(
        rc::GET_ROUTEINFO_BY_TOPIC,
        &GetRouteInfoRequestHeader {
            topic: topic.into(),
            accept_standard_json_only: standard_only,
            ..Default::default()
        },
    );
    req.version = version;
    req
}

async fn register_two_brokers(c: &RemotingClient, ns: &NameServerHandle) {
    for (name, id, addr, topics) in [
        (
            "broker-a",
            0,
            BROKER_A,
            &[("TopicTest", 8), ("OnlyA", 4)][..],
        ),
        ("broker-a", 1, BROKER_A_SLAVE, &[("TopicTest", 8)][..]),
        ("broker-b", 0, BROKER_B, &[("TopicTest", 4)][..]),
    ] {
        let resp = invoke(c, ns, register_request(name, id, addr, topics)).await;
        assert_eq!(resp.code, code::SUCCESS, "{:?}", resp.remark);
    }
}

/// Waits for `check` to hold, for at most 5 s (an event driven by another task, not a timing).
async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn registered_broker_route_is_standard_json_for_new_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ns = start(dir.path()).await;
    let c = client();
    register_two_brokers(&c, &ns).await;

    let resp = invoke(
        &c,
        &ns,
        route_request("TopicTest", NEW_CLIENT_VERSION, None),
    )
    .await;
    assert_eq!(resp.code, code::SUCCESS);
    // Strict JSON: a standard parser reads it.
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["brokerDatas", "filterServerTable", "queueDatas"]);
    assert_eq!(v["filterServerTable"], serde_json::json!({}));

    let brokers = v["brokerDatas"].as_array().unwrap();
    assert_eq!(brokers.len(), 2);
    assert_eq!(brokers[0]["brokerName"], "broker-a");
    assert_eq!(brokers[0]["cluster"], "DefaultCluster");
    assert_eq!(brokers[0]["enableActingMaster"], false);
    assert_eq!(
        brokers[0]["brokerAddrs"],
        serde_json::json!({"0": BROKER_A, "1": BROKER_A_SLAVE})
    );
    assert_eq!(
        brokers[1]["brokerAddrs"],
        serde_json::json!({"0": BROKER_B})
    );

    let queues = v["queueDatas"].as_array().unwrap();
    assert_eq!(
        queues[0],
        serde_json::json!({"brokerName":"broker-a","perm":6,"readQueueNums":8,"topicSysFlag":0,"writeQueueNums":8})
    );
    assert_eq!(queues[1]["brokerName"], "broker-b");
    assert_eq!(queues[1]["readQueueNums"], 4);
    assert_eq!(queues[1]["writeQueueNums"], 4);

    let text = std::str::from_utf8(&resp.body).unwrap();
    assert!(
        text.contains(&format!(
            r#""brokerAddrs":{{"0":"{BROKER_A}","1":"{BROKER_A_SLAVE}"}}"#
        )),
        "{text}"
    );

    // Only the brokers serving the topic.
    let resp = invoke(&c, &ns, route_request("OnlyA", NEW_CLIENT_VERSION, None)).await;
    let route = TopicRouteData::decode(&resp.body).unwrap();
    assert_eq!(route.broker_datas.len(), 1);
    assert_eq!(route.queue_datas.len(), 1);
    ns.shutdown().await;
}

#[tokio::test]
async fn old_clients_get_the_fastjson_form_unless_they_ask_for_standard_json() {
    let dir = tempfile::tempdir().unwrap();
    let ns = start(dir.path()).await;
    let c = client();
    register_two_brokers(&c, &ns).await;

    let resp = invoke(
        &c,
        &ns,
        route_request("TopicTest", OLD_CLIENT_VERSION, None),
    )
    .await;
    assert_eq!(resp.code, code::SUCCESS);
    let text = std::str::from_utf8(&resp.body).unwrap();
    assert!(
        text.contains(&format!(
            r#""brokerAddrs":{{0:"{BROKER_A}",1:"{BROKER_A_SLAVE}"}}"#
        )),
        "{text}"
    );
    assert!(serde_json::from_slice::<Value>(&resp.body).is_err());
    let route = TopicRouteData::decode(&resp.body).unwrap();
    assert_eq!(route.broker_datas[0].broker_addrs[&0], BROKER_A);

    let resp = invoke(
        &c,
        &ns,
        route_request("TopicTest", OLD_CLIENT_VERSION, Some(true)),
    )
    .await;
    assert!(serde_json::from_slice::<Value>(&resp.body).is_ok());

    let resp = invoke(
        &c,
        &ns,
        route_request("NoSuchTopic", NEW_CLIENT_VERSION, None),
    )
    .await;
    assert_eq!(resp.code, code::TOPIC_NOT_EXIST);
    assert!(resp.body.is_empty());
    ns.shutdown().await;
}

#[tokio::test]
async fn slave_registration_returns_the_masters_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let ns = start(dir.path()).await;
    let c = client();
    invoke(
        &c,
        &ns,
        register_request("broker-a", 0, BROKER_A, &[("T", 4)]),
    )
    .await;
    let resp = invoke(
        &c,
        &ns,
        register_request("broker-a", 1, BROKER_A_SLAVE, &[("T", 4)]),
    )
    .await;
    let h: RegisterBrokerResponseHeader = resp.decode_header().unwrap();
    assert_eq!(h.master_addr.as_deref(), Some(BROKER_A));
    assert_eq!(h.ha_server_addr.as_deref(), Some("127.0.0.1:10912"));
    ns.shutdown().await;
}

#[tokio::test]
async fn cluster_info_and_topic_lists_have_javas_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let ns = start(dir.path()).await;
    let c = client();
    invoke(
        &c,
        &ns,
        register_request("broker-a", 0, BROKER_A, &[("TopicTest", 8)]),
    )
    .await;

    let resp = invoke(
        &c,
        &ns,
        RemotingCommand::request(rc::GET_BROKER_CLUSTER_INFO),
    )
    .await;
    assert_eq!(resp.code, code::SUCCESS);
    assert_eq!(
        std::str::from_utf8(&resp.body).unwrap(),
        format!(
            r#"{{"brokerAddrTable":{{"broker-a":{{"brokerAddrs":{{0:"{BROKER_A}"}},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}}}},"clusterAddrTable":{{"DefaultCluster":["broker-a"]}}}}"#
        )
    );
    let info = ClusterInfo::decode(&resp.body).unwrap();
    assert!(info.cluster_addr_table["DefaultCluster"].contains("broker-a"));

    let resp = invoke(
        &c,
        &ns,
        RemotingCommand::request(rc::GET_ALL_TOPIC_LIST_FROM_NAMESERVER),
    )
    .await;
    assert_eq!(
        &resp.body[..],
        br#"{"topicList":["SELF_TEST_TOPIC","TopicTest"]}"#
    );

    let req = RemotingCommand::request_with_header(
        rc::GET_TOPICS_BY_CLUSTER,
        &GetTopicsByClusterRequestHeader {
            cluster: "DefaultCluster".into(),
        },
    );
    let list = TopicList::decode(&invoke(&c, &ns, req).await.body).unwrap();
    assert_eq!(list.topic_list.len(), 2);

    let resp = invoke(
        &c,
        &ns,
        RemotingCommand::request(rc::GET_SYSTEM_TOPIC_LIST_FROM_NS),
    )
    .await;
    assert_eq!(
        std::str::from_utf8(&resp.body).unwrap(),
        format!(r#"{{"brokerAddr":"{BROKER_A}","topicList":["DefaultCluster","broker-a"]}}"#)
    );
    ns.shutdown().await;
}

#[tokio::test]
async fn kv_config_persists_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let ns = start(dir.path()).await;
    let put = RemotingCommand::request_with_header(
        rc::PUT_KV_CONFIG,
        &PutKVConfigRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG".into(),
            key: "TopicOrder".into(),
            value: "broker-a:4".into(),
        },
    );
    assert_eq!(invoke(&c, &ns, put).await.code, code::SUCCESS);
    ns.shutdown().await;
    drop(ns);

    let ns = start(dir.path()).await;
    let get = RemotingCommand::request_with_header(
        rc::GET_KV_CONFIG,
        &GetKVConfigRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG".into(),
            key: "TopicOrder".into(),
        },
    );
    let resp = invoke(&c, &ns, get).await;
    assert_eq!(resp.code, code::SUCCESS);
    let h: GetKVConfigResponseHeader = resp.decode_header().unwrap();
    assert_eq!(h.value.as_deref(), Some("broker-a:4"));

    // A registering broker is handed the ORDER_TOPIC_CONFIG table.
    let resp = invoke(
        &c,
        &ns,
        register_request("broker-a", 0, BROKER_A, &[("T", 4)]),
    )
    .await;
    assert_eq!(&resp.body[..], br#"{"table":{"TopicOrder":"broker-a:4"}}"#);
    ns.shutdown().await;
}

#[tokio::test]
async fn register_with_a_wrong_crc_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ns = start(dir.path()).await;
    let c = client();
    let mut req = register_request("broker-a", 0, BROKER_A, &[("TopicTest", 8)]);
    let good: i32 = req.ext_fields.get("bodyCrc32").unwrap().parse().unwrap();
    req.ext_fields.insert("bodyCrc32", (good ^ 1).to_string());
    let resp = invoke(&c, &ns, req).await;
    assert_eq!(resp.code, code::SYSTEM_ERROR);
    assert_eq!(resp.remark.as_deref(), Some("crc32 not match"));
    let resp = invoke(
        &c,
        &ns,
        route_request("TopicTest", NEW_CLIENT_VERSION, None),
    )
    .await;
    assert_eq!(resp.code, code::TOPIC_NOT_EXIST);
    ns.shutdown().await;
}

#[tokio::test]
async fn garbage_headers_get_error_responses_and_the_connection_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let ns = start(dir.path()).await;
    let c = client();
    let mut req = register_request("broker-a", 0, BROKER_A, &[("TopicTest", 8)]);
    req.ext_fields.insert("brokerId", "zero");
    let resp = invoke(&c, &ns, req).await;
    assert_eq!(resp.code, code::SYSTEM_ERROR);
    assert!(resp.remark.unwrap().contains("brokerId"));

    let resp = invoke(
        &c,
        &ns,
        RemotingCommand::request(rc::GET_ROUTEINFO_BY_TOPIC),
    )
    .await;
    assert_eq!(resp.code, code::SYSTEM_ERROR);
    assert!(resp.remark.unwrap().contains("topic"));

    let mut req = RemotingCommand::request(rc::QUERY_DATA_VERSION).with_body(&b"\xff\xfe{"[..]);
    for (k, v) in [
        ("brokerName", "a"),
        ("brokerAddr", "x"),
        ("clusterName", "c"),
        ("brokerId", "0"),
    ] {
        req.ext_fields.insert(k, v);
    }
    assert_eq!(invoke(&c, &ns, req).await.code, code::SYSTEM_ERROR);

    let resp = invoke(&c, &ns, RemotingCommand::request(12345)).await;
    assert_eq!(resp.code, code::REQUEST_CODE_NOT_SUPPORTED);

    let resp = invoke(
        &c,
        &ns,
        register_request("broker-a", 0, BROKER_A, &[("TopicTest", 8)]),
    )
    .await;
    assert_eq!(resp.code, code::SUCCESS);
    ns.shutdown().await;
}

#[tokio::test]
async fn a_java_shaped_raw_frame_gets_a_route() {
    let dir = tempfile::tempdir().unwrap();
    let ns = start(dir.path()).await;
    invoke(
        &client(),
        &ns,
        register_request("broker-a", 0, BROKER_A, &[("TopicTest", 8)]),
    )
    .await;

    // The exact header bytes a 4.9.4 Java client sends.
    let header = br#"{"code":105,"extFields":{"topic":"TopicTest"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":401}"#;
    let mut frame = Vec::new();
    frame.extend_from_slice(&(4 + header.len() as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(header);
    let mut stream = tokio::net::TcpStream::connect(ns.local_addr())
        .await
        .unwrap();
    stream.write_all(&frame).await.unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.unwrap();
    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut rest).await.unwrap();
    let mut whole = len.to_vec();
    whole.extend_from_slice(&rest);
    let resp = RemotingCommand::decode_bytes(&whole).unwrap();
    assert_eq!(resp.code, code::SUCCESS);
    assert_eq!(resp.opaque, 1);
    assert!(resp.is_response());
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["brokerDatas"][0]["brokerAddrs"]["0"], BROKER_A);
    ns.shutdown().await;
}

#[tokio::test]
async fn two_name_servers_both_serve_a_broker_registered_with_each() {
    let dir1 = tempfile::tempdir().unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let ns1 = start(dir1.path()).await;
    let ns2 = start(dir2.path()).await;
    assert_ne!(ns1.local_addr(), ns2.local_addr());
    let broker = client();
    for ns in [&ns1, &ns2] {
        let resp = invoke(
            &broker,
            ns,
            register_request("broker-a", 0, BROKER_A, &[("TopicTest", 8)]),
        )
        .await;
        assert_eq!(resp.code, code::SUCCESS);
    }
    let c = client();
    let r1 = invoke(
        &c,
        &ns1,
        route_request("TopicTest", NEW_CLIENT_VERSION, None),
    )
    .await;
    let r2 = invoke(
        &c,
        &ns2,
        route_request("TopicTest", NEW_CLIENT_VERSION, None),
    )
    .await;
    assert_eq!(r1.code, code::SUCCESS);
    assert_eq!(r1.body, r2.body);

    // Unregistering from one leaves the other untouched: name servers do not talk to each other.
    let unreg = RemotingCommand::request_with_header(
        rc::UNREGISTER_BROKER,
        &UnRegisterBrokerRequestHeader {
            broker_name: "broker-a".into(),
            broker_addr: BROKER_A.into(),
            cluster_name: "DefaultCluster".into(),
            broker_id: 0,
        },
    );
    assert_eq!(invoke(&broker, &ns1, unreg).await.code, code::SUCCESS);
    let r1 = invoke(
        &c,
        &ns1,
        route_request("TopicTest", NEW_CLIENT_VERSION, None),
    )
    .await;
    let r2 = invoke(
        &c,
        &ns2,
        route_request("TopicTest", NEW_CLIENT_VERSION, None),
    )
    .await;
    assert_eq!(r1.code, code::TOPIC_NOT_EXIST);
    assert_eq!(r2.code, code::SUCCESS);
    ns1.shutdown().await;
    ns2.shutdown().await;
}

#[tokio::test]
async fn closing_the_brokers_connection_unregisters_it() {
    let dir = tempfile::tempdir().unwrap();
    let ns = start(dir.path()).await;
    let broker = client();
    invoke(
        &broker,
        &ns,
        register_request("broker-a", 0, BROKER_A, &[("TopicTest", 8)]),
    )
    .await;
    let c = client();
    assert_eq!(
        invoke(
            &c,
            &ns,
            route_request("TopicTest", NEW_CLIENT_VERSION, None)
        )
        .await
        .code,
        code::SUCCESS
    );
    // A client's connection closing changes nothing.
    c.close_connection(&ns.local_addr().to_string());
    assert_eq!(
        invoke(
            &c,
            &ns,
            route_request("TopicTest", NEW_CLIENT_VERSION, None)
        )
        .await
        .code,
        code::SUCCESS
    );

    broker.close();
    eventually(|| {
        let c = c.clone();
        let ns = &ns;
        async move {
            invoke(&c, ns, route_request("TopicTest", NEW_CLIENT_VERSION, None))
                .await
                .code
                == code::TOPIC_NOT_EXIST
        }
    })
    .await;
    assert!(ns
        .processor()
        .with_route(|r| r.broker_data("broker-a").is_none()));
    ns.shutdown().await;
}

#[tokio::test]
async fn the_expiry_scan_drops_a_silent_broker_and_closes_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let cfg = NamesrvConfig {
        scan_not_active_broker_interval_ms: 10,
        ..config(dir.path())
    };
    let ns = NameServer::start_with_clock(cfg, clock.clone())
        .await
        .unwrap();
    let broker = client();
    let addr = ns.local_addr().to_string();
    invoke(
        &broker,
        &ns,
        register_request("broker-a", 0, BROKER_A, &[("TopicTest", 8)]),
    )
    .await;
    let conn = broker.ready_connection(&addr).unwrap();

    clock.advance(120_001);
    eventually(|| {
        let gone = ns.processor().with_route(|r| r.live_broker_count() == 0);
        async move { gone }
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap();
    let resp = invoke(
        &client(),
        &ns,
        route_request("TopicTest", NEW_CLIENT_VERSION, None),
    )
    .await;
    assert_eq!(resp.code, code::TOPIC_NOT_EXIST);
    ns.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let dir = tempfile::tempdir().unwrap();
    let ns = start(dir.path()).await;
    let addr = ns.local_addr();
    ns.shutdown().await;
    ns.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn namesrv_config_is_served_as_properties_and_updates_are_restricted() {
    let dir = tempfile::tempdir().unwrap();
    let ns = start(dir.path()).await;
    let c = client();
    let resp = invoke(&c, &ns, RemotingCommand::request(rc::GET_NAMESRV_CONFIG)).await;
    let text = String::from_utf8(resp.body.to_vec()).unwrap();
    assert!(text.lines().all(|l| l.contains('=')), "{text}");
    assert!(text.contains("orderMessageEnable=false\n"));

    let update = RemotingCommand::request(rc::UPDATE_NAMESRV_CONFIG)
        .with_body(&b"configStorePath=/tmp/x\n"[..]);
    assert_eq!(invoke(&c, &ns, update).await.code, code::NO_PERMISSION);
    let update = RemotingCommand::request(rc::UPDATE_NAMESRV_CONFIG)
        .with_body(&b"orderMessageEnable=true\n"[..]);
    assert_eq!(invoke(&c, &ns, update).await.code, code::SUCCESS);
    let resp = invoke(&c, &ns, RemotingCommand::request(rc::GET_NAMESRV_CONFIG)).await;
    assert!(String::from_utf8(resp.body.to_vec())
        .unwrap()
        .contains("orderMessageEnable=true\n"));
    ns.shutdown().await;
}

#[tokio::test]
async fn bind_failure_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ns = start(dir.path()).await;
    let cfg = NamesrvConfig {
        listen_addr: ns.local_addr().to_string(),
        ..config(dir.path())
    };
    let err = NameServer::start(cfg).await.unwrap_err();
    assert!(
        err.to_string().contains(&ns.local_addr().to_string()),
        "{err}"
    );
    ns.shutdown().await;
}
