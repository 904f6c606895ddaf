//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use apogee_broker::{Broker, BrokerConfig, BrokerHandle, StoreOptions};
use apogee_protocol::body::{
    ConsumerData, HeartbeatData, JsonBody, ProducerData, SubscriptionData,
};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::header::{PullMessageRequestHeader, SendMessageRequestHeader};
use apogee_protocol::message::batch::{encode_batch, BatchEntry};
use apogee_protocol::message::{java_string_hash, MessageProperties, MessageRecord};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{RemotingClient, RemotingConfig};
use bytes::{Bytes, BytesMut};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A broker config for tests: loopback, ephemeral port, small store files, no name servers.
pub fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        listen_addr: "127.0.0.1:0".into(),
        broker_ip1: Some("127.0.0.1".into()),
        data_dir: dir.to_path_buf(),
        store: StoreOptions::for_tests(),
        ..BrokerConfig::default()
    }
}

pub struct TestBroker {
    pub handle: BrokerHandle,
    pub addr: String,
    pub client: RemotingClient,
}

impl TestBroker {
    pub async fn start(config: BrokerConfig) -> TestBroker {
        let handle = Broker::start(config).await.expect("broker starts");
        let addr = handle.local_addr().to_string();
        TestBroker {
            handle,
            addr,
            client: RemotingClient::new(RemotingConfig::default()),
        }
    }

    pub async fn call(&self, request: RemotingCommand) -> RemotingCommand {
        self.client
            .invoke(&self.addr, request, TIMEOUT)
            .await
            .expect("response")
    }

    pub async fn stop(self) {
        self.client.close();
        self.handle.shutdown().await.expect("clean shutdown");
    }
}

pub fn props(pairs: &[(&str, &str)]) -> MessageProperties {
    pairs.iter().map(|(k, v)| (*k, *v)).collect()
}

pub fn send_header(
    topic: &str,
    queue_id: i32,
    props: &MessageProperties,
) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "PG".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 7,
        properties: Some(props.encode_to_string()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        max_reconsume_times: None,
        broker_name: None,
    }
}

/// SEND_MESSAGE_V2 with the one-letter header, as Java producers send it.
pub fn send_v2(h: &SendMessageRequestHeader, body: &[u8]) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(rc::SEND_MESSAGE_V2);
    h.write_ext_fields_v2(&mut cmd.ext_fields);
    cmd.with_body(Bytes::copy_from_slice(body))
}

/// SEND_MESSAGE with the long-name header.
pub fn send_v1(h: &SendMessageRequestHeader, body: &[u8]) -> RemotingCommand {
    RemotingCommand::request_with_header(rc::SEND_MESSAGE, h)
        .with_body(Bytes::copy_from_slice(body))
}

/// SEND_BATCH_MESSAGE of `bodies`, each with its own UNIQ_KEY and the given tag.
pub fn send_batch(topic: &str, queue_id: i32, bodies: &[(&[u8], &str)]) -> RemotingCommand {
    let entries: Vec<BatchEntry> = bodies
        .iter()
        .map(|(body, uniq)| {
            BatchEntry::new(
                3,
                Bytes::copy_from_slice(body),
                &props(&[("UNIQ_KEY", uniq), ("TAGS", "B"), ("WAIT", "true")]),
            )
        })
        .collect();
    let mut buf = BytesMut::new();
    encode_batch(&entries, &mut buf).expect("batch encodes");
    let mut h = send_header(
        topic,
        queue_id,
        &props(&[("UNIQ_KEY", "BATCHID"), ("WAIT", "true")]),
    );
    h.batch = Some(true);
    let mut cmd = RemotingCommand::request(rc::SEND_BATCH_MESSAGE);
    h.write_ext_fields_v2(&mut cmd.ext_fields);
    cmd.with_body(buf.freeze())
}

pub fn pull_header(
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        // FLAG_SUBSCRIPTION: the expression travels with the pull.
        sys_flag: 0x4,
        commit_offset: 0,
        suspend_timeout_millis: 0,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
        request_source: None,
        proxy_forward_client_id: None,
    }
}

pub fn pull(h: &PullMessageRequestHeader) -> RemotingCommand {
    RemotingCommand::request_with_header(rc::PULL_MESSAGE, h)
}

/// Every record of a pull or query body.
pub fn records(body: &Bytes) -> Vec<MessageRecord> {
    MessageRecord::decode_all(body)
        .map(|r| r.expect("valid record"))
        .collect()
}

pub fn subscription(topic: &str, expr: &str) -> SubscriptionData {
    let tags: Vec<String> = if expr == "*" {
        Vec::new()
    } else {
        expr.split("||").map(|t| t.trim().to_owned()).collect()
    };
    SubscriptionData {
        code_set: tags.iter().map(|t| java_string_hash(t)).collect(),
        tags_set: tags,
        sub_string: expr.into(),
        sub_version: 1,
        topic: topic.into(),
        ..SubscriptionData::default()
    }
}

/// A HEART_BEAT of one push consumer of `group` subscribed to `topic`, plus a producer group.
pub fn heartbeat(client_id: &str, group: &str, topic: &str, expr: &str) -> RemotingCommand {
    let data = HeartbeatData {
        client_id: client_id.into(),
        consumer_data_set: vec![ConsumerData {
            group_name: group.into(),
            subscription_data_set: vec![
                subscription(topic, expr),
                subscription(&format!("%RETRY%{group}"), "*"),
            ],
            ..ConsumerData::default()
        }],
        producer_data_set: vec![ProducerData {
            group_name: "PG".into(),
        }],
        ..HeartbeatData::default()
    };
    RemotingCommand::request(rc::HEART_BEAT).with_body(data.encode().expect("heartbeat encodes"))
}

pub fn ext<'a>(cmd: &'a RemotingCommand, key: &str) -> &'a str {
    cmd.ext_fields
        .get(key)
        .unwrap_or_else(|| panic!("missing extField {key} in {cmd:?}"))
}
