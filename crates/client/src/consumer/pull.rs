//! The pull call (RocketMQ's `PullAPIWrapper`): PULL_MESSAGE / LITE_PULL_MESSAGE with the sysflag
//! bits, the answer's codes mapped to [`PullStatus`], the records of the body decoded into
//! [`MessageExt`]s and re-filtered by tag string, and the broker's "pull from this replica next
//! time" suggestion remembered per queue.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use apogee_protocol::body::{MessageQueue, SubscriptionData, MASTER_ID};
use apogee_protocol::codes::{pull_sys_flag, request_code, response_code};
use apogee_protocol::header::{PullMessageRequestHeader, PullMessageResponseHeader};
use apogee_protocol::message::keys;
use apogee_protocol::RemotingCommand;
use tracing::warn;

use crate::consumer::subscription::{is_tag_type, tags_match};
use crate::error::{ClientError, Result};
use crate::instance::{ClientInstance, EXT_BROKER_NAME};
use crate::message::MessageExt;
use crate::namespace;
use crate::util::lock;

/// What a pull found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullStatus {
    /// Messages (possibly none left after the client-side tag filter).
    Found,
    /// Nothing new at this offset (PULL_NOT_FOUND).
    NoNewMsg,
    /// Messages were scanned but none matched the subscription (PULL_RETRY_IMMEDIATELY).
    NoMatchedMsg,
    /// The offset is outside the queue; continue from `next_begin_offset` (PULL_OFFSET_MOVED).
    OffsetIllegal,
}

/// The answer to one pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullResult {
    pub status: PullStatus,
    /// Where the next pull of this queue starts.
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    /// The replica the broker suggests for the next pull (0 = master).
    pub suggest_which_broker_id: i64,
    /// The messages, after the tag re-check.
    pub messages: Vec<MessageExt>,
}

/// One pull's parameters.
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// The queue as it travels (topic with namespace).
    pub mq: MessageQueue,
    /// The subscription: sent to the broker when `send_subscription`, always used for the
    /// client-side tag re-check.
    pub subscription: SubscriptionData,
    /// First logical offset to read.
    pub offset: i64,
    pub max_nums: i32,
    /// Byte cap of one answer, when the broker supports it.
    pub max_bytes: Option<i32>,
    /// Piggy-backs this committed offset (FLAG_COMMIT_OFFSET); not sent to slaves.
    pub commit_offset: Option<i64>,
    /// Lets the broker hold the request this long when nothing is there (FLAG_SUSPEND).
    pub suspend_timeout_ms: Option<u64>,
    /// Filters with this request's subscription instead of the heartbeat's (FLAG_SUBSCRIPTION).
    pub send_subscription: bool,
    /// LITE_PULL_MESSAGE with FLAG_LITE_PULL_MESSAGE, as lite pull consumers send.
    pub lite: bool,
    /// How long to wait for the answer; must exceed the suspend time.
    pub timeout: Duration,
}

/// The sysflag of `req` for a pull going to a master or (`to_slave`) a slave, which must not
/// persist offsets.
pub fn pull_sys_flag(req: &PullRequest, to_slave: bool) -> i32 {
    let mut flag = pull_sys_flag::build(
        req.commit_offset.is_some() && !to_slave,
        req.suspend_timeout_ms.is_some(),
        req.send_subscription,
        false,
    );
    if req.lite {
        flag |= pull_sys_flag::FLAG_LITE_PULL_MESSAGE;
    }
    flag
}

/// The PULL_MESSAGE / LITE_PULL_MESSAGE request for `req` from consumer group `group`.
pub fn build_pull_request(group: &str, req: &PullRequest, to_slave: bool) -> RemotingCommand {
    let sub = &req.subscription;
    let header = PullMessageRequestHeader {
        consumer_group: group.to_owned(),
        topic: req.mq.topic.clone(),
        queue_id: req.mq.queue_id,
        queue_offset: req.offset,
        max_msg_nums: req.max_nums,
        sys_flag: pull_sys_flag(req, to_slave),
        commit_offset: req.commit_offset.unwrap_or(0),
        suspend_timeout_millis: i64::try_from(req.suspend_timeout_ms.unwrap_or(0))
            .unwrap_or(i64::MAX),
        subscription: Some(sub.sub_string.clone()),
        // Tag filters do not depend on a version; SQL92 filters are cached by it on the broker.
        sub_version: if is_tag_type(sub) { 0 } else { sub.sub_version },
        expression_type: Some(sub.expression_type.clone()),
        max_msg_bytes: req.max_bytes,
        request_source: None,
        proxy_forward_client_id: None,
    };
    let code = if req.lite {
        request_code::LITE_PULL_MESSAGE
    } else {
        request_code::PULL_MESSAGE
    };
    let mut request = RemotingCommand::request_with_header(code, &header);
    request
        .ext_fields
        .insert(EXT_BROKER_NAME, req.mq.broker_name.clone());
    request
}

/// Reads a pull answer (`MQClientAPIImpl.processPullResponse` + `PullAPIWrapper.processPullResult`).
/// Found messages get the queue's broker name and id, the `MIN_OFFSET`/`MAX_OFFSET` properties
/// and their topic without `namespace`; those whose tag the subscription does not list are
/// dropped. Records after one that cannot be decoded are dropped too (with a warning), as Java
/// does; `next_begin_offset` still moves past them.
pub fn process_pull_response(
    response: &RemotingCommand,
    addr: &str,
    mq: &MessageQueue,
    sub: &SubscriptionData,
    namespace: Option<&str>,
) -> Result<PullResult> {
    let status = match response.code {
        response_code::SUCCESS => PullStatus::Found,
        response_code::PULL_NOT_FOUND => PullStatus::NoNewMsg,
        response_code::PULL_RETRY_IMMEDIATELY => PullStatus::NoMatchedMsg,
        response_code::PULL_OFFSET_MOVED => PullStatus::OffsetIllegal,
        code => return Err(ClientError::broker(code, response.remark.clone(), addr)),
    };
    let header: PullMessageResponseHeader = response.decode_header()?;
    let mut messages = Vec::new();
    if status == PullStatus::Found {
        let (decoded, error) = MessageExt::decode_all_shared(&response.body);
        if let Some(e) = error {
            warn!(queue = %mq, error = %e, "undecodable record in pull answer, dropping the rest");
        }
        let min = header.min_offset.to_string();
        let max = header.max_offset.to_string();
        messages = decoded
            .into_iter()
            .filter(|m| tags_match(sub, m.tags()))
            .map(|mut m| {
                m.properties.insert(keys::MIN_OFFSET, min.clone());
                m.properties.insert(keys::MAX_OFFSET, max.clone());
                m.broker_name = mq.broker_name.clone();
                m.queue_id = mq.queue_id;
                if let Some(delta) = header.offset_delta {
                    m.queue_offset += delta;
                }
                m.topic = namespace::unwrap(namespace, &m.topic);
                m
            })
            .collect();
    }
    Ok(PullResult {
        status,
        next_begin_offset: header.next_begin_offset,
        min_offset: header.min_offset,
        max_offset: header.max_offset,
        suggest_which_broker_id: header.suggest_which_broker_id,
        messages,
    })
}

/// Pulls for one consumer group, remembering per queue which replica to read next.
#[derive(Debug)]
pub struct PullApi {
    instance: ClientInstance,
    /// The group as it travels.
    group: String,
    namespace: Option<String>,
    pull_from: Mutex<HashMap<MessageQueue, i64>>,
}

impl PullApi {
    pub fn new(
        instance: ClientInstance,
        wire_group: impl Into<String>,
        namespace: Option<String>,
    ) -> Self {
        Self {
            instance,
            group: wire_group.into(),
            namespace,
            pull_from: Mutex::new(HashMap::new()),
        }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    fn replica_for(&self, mq: &MessageQueue) -> i64 {
        lock(&self.pull_from).get(mq).copied().unwrap_or(MASTER_ID)
    }

    /// Sends one pull and reads the answer.
    pub async fn pull(&self, req: &PullRequest) -> Result<PullResult> {
        let replica = self.replica_for(&req.mq);
        let mut found = self
            .instance
            .find_broker_addr(&req.mq.broker_name, replica, false);
        if found.is_none() {
            self.instance.update_topic_route(&req.mq.topic).await?;
            found = self
                .instance
                .find_broker_addr(&req.mq.broker_name, replica, false);
        }
        let (addr, is_slave) = found.ok_or_else(|| ClientError::BrokerNotFound {
            broker_name: req.mq.broker_name.clone(),
        })?;
        let request = build_pull_request(&self.group, req, is_slave);
        let response = self
            .instance
            .invoke_broker(&addr, request, req.timeout)
            .await?;
        let result = process_pull_response(
            &response,
            &addr,
            &req.mq,
            &req.subscription,
            self.namespace.as_deref(),
        )?;
        lock(&self.pull_from).insert(req.mq.clone(), result.suggest_which_broker_id);
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::subscription::{build_subscription, MessageSelector};
    use apogee_protocol::message::{MessageProperties, MessageRecord};
    use bytes::{Bytes, BytesMut};

    fn mq() -> MessageQueue {
        MessageQueue::new("ns%T", "broker-a", 1)
    }

    fn req(sub: SubscriptionData) -> PullRequest {
        PullRequest {
            mq: mq(),
            subscription: sub,
            offset: 10,
            max_nums: 32,
            max_bytes: None,
            commit_offset: Some(7),
            suspend_timeout_ms: Some(20_000),
            send_subscription: true,
            lite: true,
            timeout: Duration::from_secs(30),
        }
    }

    fn record(tag: &str, offset: i64) -> Bytes {
        let mut props = MessageProperties::new();
        props.set_tags(tag);
        let mut r = MessageRecord::new("ns%T", Bytes::from_static(b"body"), props.to_bytes());
        r.queue_id = 1;
        r.queue_offset = offset;
        r.physical_offset = 1000 + offset;
        r.store_host = "10.0.0.1:10911".parse().unwrap();
        r.encode().unwrap()
    }

    fn response(code: i32, body: Bytes) -> RemotingCommand {
        let header = PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: 13,
            min_offset: 0,
            max_offset: 20,
            ..Default::default()
        };
        RemotingCommand::response(code, None)
            .with_header(&header)
            .with_body(body)
    }

    #[test]
    fn lite_pull_request_sets_suspend_subscription_commit_and_lite_bits() {
        let sub = build_subscription("ns%T", &MessageSelector::tag("A||B"), 99).unwrap();
        let r = build_pull_request("G", &req(sub), false);
        assert_eq!(r.code, request_code::LITE_PULL_MESSAGE);
        let h: PullMessageRequestHeader = r.decode_header().unwrap();
        assert_eq!(h.sys_flag, 0x1 | 0x2 | 0x4 | 0x10);
        assert_eq!(h.consumer_group, "G");
        assert_eq!(h.topic, "ns%T");
        assert_eq!(h.queue_id, 1);
        assert_eq!(h.queue_offset, 10);
        assert_eq!(h.max_msg_nums, 32);
        assert_eq!(h.commit_offset, 7);
        assert_eq!(h.suspend_timeout_millis, 20_000);
        assert_eq!(h.subscription.as_deref(), Some("A||B"));
        assert_eq!(h.expression_type.as_deref(), Some("TAG"));
        // Tag subscriptions are sent with version 0.
        assert_eq!(h.sub_version, 0);
        assert_eq!(r.ext_fields.get("bname"), Some("broker-a"));
    }

    #[test]
    fn pulls_from_a_slave_never_commit_offsets() {
        let sub = build_subscription("T", &MessageSelector::all(), 1).unwrap();
        let mut rq = req(sub);
        rq.lite = false;
        let r = build_pull_request("G", &rq, true);
        assert_eq!(r.code, request_code::PULL_MESSAGE);
        let h: PullMessageRequestHeader = r.decode_header().unwrap();
        assert_eq!(h.sys_flag & pull_sys_flag::FLAG_COMMIT_OFFSET, 0);
    }

    #[test]
    fn sql92_pulls_carry_the_subscription_version() {
        let sub = build_subscription("T", &MessageSelector::sql92("a>1"), 1234).unwrap();
        let h: PullMessageRequestHeader = build_pull_request("G", &req(sub), false)
            .decode_header()
            .unwrap();
        assert_eq!(h.sub_version, 1234);
        assert_eq!(h.expression_type.as_deref(), Some("SQL92"));
    }

    #[test]
    fn response_codes_map_to_pull_statuses() {
        let sub = build_subscription("T", &MessageSelector::all(), 1).unwrap();
        let table = [
            (response_code::SUCCESS, PullStatus::Found),
            (response_code::PULL_NOT_FOUND, PullStatus::NoNewMsg),
            (
                response_code::PULL_RETRY_IMMEDIATELY,
                PullStatus::NoMatchedMsg,
            ),
            (response_code::PULL_OFFSET_MOVED, PullStatus::OffsetIllegal),
        ];
        for (code, status) in table {
            let r = process_pull_response(&response(code, Bytes::new()), "a", &mq(), &sub, None)
                .unwrap();
            assert_eq!(r.status, status);
            assert_eq!(r.next_begin_offset, 13);
            assert_eq!(r.min_offset, 0);
            assert_eq!(r.max_offset, 20);
        }
        let e = process_pull_response(
            &RemotingCommand::response(
                response_code::SUBSCRIPTION_NOT_EXIST,
                Some("no sub".into()),
            ),
            "a",
            &mq(),
            &sub,
            None,
        )
        .unwrap_err();
        assert_eq!(e.response_code(), Some(24));
    }

    #[test]
    fn found_messages_are_decoded_filtered_by_tag_and_stamped() {
        let mut body = BytesMut::new();
        for (tag, off) in [("A", 10), ("C", 11), ("B", 12)] {
            body.extend_from_slice(&record(tag, off));
        }
        let sub = build_subscription("ns%T", &MessageSelector::tag("A || B"), 1).unwrap();
        let r = process_pull_response(&response(0, body.freeze()), "a", &mq(), &sub, Some("ns"))
            .unwrap();
        let offsets: Vec<i64> = r.messages.iter().map(|m| m.queue_offset).collect();
        assert_eq!(offsets, vec![10, 12]);
        for m in &r.messages {
            assert_eq!(m.broker_name, "broker-a");
            assert_eq!(m.queue_id, 1);
            assert_eq!(m.topic, "T");
            assert_eq!(m.property(keys::MIN_OFFSET), Some("0"));
            assert_eq!(m.property(keys::MAX_OFFSET), Some("20"));
        }
    }

    #[test]
    fn a_truncated_pull_body_keeps_the_whole_records() {
        let mut body = BytesMut::new();
        body.extend_from_slice(&record("A", 10));
        let second = record("A", 11);
        body.extend_from_slice(&second[..second.len() - 3]);
        let sub = build_subscription("T", &MessageSelector::all(), 1).unwrap();
        let r = process_pull_response(&response(0, body.freeze()), "a", &mq(), &sub, None).unwrap();
        assert_eq!(r.messages.len(), 1);
    }
}
