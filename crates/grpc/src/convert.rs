//! What both backends share: the proxy's rules written as pure functions. Message type checks,
//! gRPC messages to stored properties (and back), the FIFO queue choice, receive parameters,
//! invisible times, and the mapping of broker codes to gRPC codes.

use std::net::SocketAddr;

use apogee_broker::local::{is_system_property, LocalError, LocalSend};
use apogee_broker::pop::{
    InitMode, PopError, PopRequest, PoppedMessage, MAX_POLL_MS, MAX_POP_MESSAGES,
};
use apogee_protocol::body::TopicConfig;
use apogee_protocol::codes::response_code as rc;
use apogee_protocol::message::{keys, sysflag, MessageProperties, MessageRecord};
use bytes::Bytes;

use crate::pb;
use crate::status::{ok, status, RpcError, RpcResult};

/// Topic attribute naming the message type a topic accepts (`TopicAttributes`).
pub const MESSAGE_TYPE_ATTRIBUTE: &str = "message.type";
/// Most user properties on one message (`userPropertyMaxNum`).
pub const MAX_USER_PROPERTIES: usize = 128;
/// Most bytes of user properties, keys and tag together (`maxUserPropertySize`).
pub const MAX_USER_PROPERTY_BYTES: usize = 16 * 1024;
/// Largest message group in bytes, exclusive (`maxMessageGroupSize`).
pub const MAX_MESSAGE_GROUP_BYTES: usize = 64;

/// A topic's `message.type` (`TopicMessageType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicMessageType {
    Normal,
    Fifo,
    Delay,
    Transaction,
    Mixed,
}

impl TopicMessageType {
    /// The attribute of `config`; a topic without one is NORMAL, as in RocketMQ 5 (auto-created
    /// topics included). An unknown value also reads as NORMAL.
    pub fn of(config: &TopicConfig) -> Self {
        match config
            .attributes
            .get(MESSAGE_TYPE_ATTRIBUTE)
            .map(|v| v.to_ascii_uppercase())
            .as_deref()
        {
            Some("FIFO") => Self::Fifo,
            Some("DELAY") => Self::Delay,
            Some("TRANSACTION") => Self::Transaction,
            Some("MIXED") => Self::Mixed,
            _ => Self::Normal,
        }
    }

    /// `accept_message_types` of the topic's queues.
    pub fn accepted(self) -> Vec<i32> {
        match self {
            Self::Normal => vec![pb::MessageType::Normal as i32],
            Self::Fifo => vec![pb::MessageType::Fifo as i32],
            Self::Delay => vec![pb::MessageType::Delay as i32],
            Self::Transaction => vec![pb::MessageType::Transaction as i32],
            Self::Mixed => vec![
                pb::MessageType::Normal as i32,
                pb::MessageType::Fifo as i32,
                pb::MessageType::Delay as i32,
                pb::MessageType::Transaction as i32,
            ],
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Fifo => "FIFO",
            Self::Delay => "DELAY",
            Self::Transaction => "TRANSACTION",
            Self::Mixed => "MIXED",
        }
    }

    /// The type of a message from its stored properties (`parseFromMessageProperty`).
    pub(crate) fn of_properties(props: &MessageProperties) -> Self {
        if props
            .get(keys::TRAN_MSG)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            Self::Transaction
        } else if props.contains_key(keys::DELAY)
            || props.contains_key(keys::TIMER_DELIVER_MS)
            || props.contains_key(keys::TIMER_DELAY_MS)
            || props.contains_key(keys::TIMER_DELAY_SEC)
        {
            Self::Delay
        } else if props.contains_key(keys::SHARDING_KEY) {
            Self::Fifo
        } else {
            Self::Normal
        }
    }
}

pub(crate) fn endpoints_of(advertised: SocketAddr) -> pb::Endpoints {
    let scheme = if advertised.is_ipv4() {
        pb::AddressScheme::IPv4
    } else {
        pb::AddressScheme::IPv6
    };
    pb::Endpoints {
        scheme: scheme as i32,
        addresses: vec![pb::Address {
            host: advertised.ip().to_string(),
            port: i32::from(advertised.port()),
        }],
    }
}

pub(crate) fn resource(name: &str) -> pb::Resource {
    pb::Resource {
        resource_namespace: String::new(),
        name: name.to_owned(),
    }
}

pub(crate) fn required_name<'a>(
    resource: &'a Option<pb::Resource>,
    what: &str,
) -> RpcResult<&'a str> {
    match resource {
        Some(r) if !r.name.is_empty() => Ok(&r.name),
        _ => Err(RpcError::new(
            pb::Code::BadRequest,
            format!("{what} is required"),
        )),
    }
}

/// A broker refusal in gRPC terms (the proxy's mapping of remoting codes).
pub(crate) fn map_broker_error(error: LocalError) -> RpcError {
    let code = match error.code {
        rc::TOPIC_NOT_EXIST => pb::Code::TopicNotFound,
        rc::SUBSCRIPTION_GROUP_NOT_EXIST => pb::Code::ConsumerGroupNotFound,
        rc::NO_PERMISSION => pb::Code::Forbidden,
        rc::MESSAGE_ILLEGAL | rc::INVALID_PARAMETER => pb::Code::BadRequest,
        rc::SYSTEM_BUSY => pb::Code::TooManyRequests,
        rc::SERVICE_NOT_AVAILABLE => pb::Code::InternalServerError,
        rc::QUERY_NOT_FOUND => pb::Code::OffsetNotFound,
        _ => pb::Code::InternalServerError,
    };
    RpcError::new(code, error.remark)
}

/// A broker's refusal of RECALL_MESSAGE in gRPC terms. A bad handle, another topic or broker, or
/// a time already past (ILLEGAL_OPERATION) is the caller's mistake: BAD_REQUEST with the broker's
/// remark. (Java's proxy answers INTERNAL_SERVER_ERROR for every refusal.)
pub(crate) fn map_recall_error(error: LocalError) -> RpcError {
    match error.code {
        rc::ILLEGAL_OPERATION => RpcError::new(pb::Code::BadRequest, error.remark),
        _ => map_broker_error(error),
    }
}

pub(crate) fn has_control_char(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() && c != '\t' && c != '\n' && c != '\r')
}

pub(crate) struct BuiltSend {
    pub(crate) send: LocalSend,
    pub(crate) message_id: String,
}

/// The stored form of one gRPC message, checked as the proxy checks it.
pub(crate) fn build_send(
    topic: &str,
    message: pb::Message,
    peer: Option<SocketAddr>,
) -> RpcResult<BuiltSend> {
    let sp = message.system_properties.unwrap_or_default();
    let bad = |code, msg: String| Err(RpcError::new(code, msg));
    if message.user_properties.len() > MAX_USER_PROPERTIES {
        return bad(
            pb::Code::MessagePropertiesTooLarge,
            format!("too many user properties, max is {MAX_USER_PROPERTIES}"),
        );
    }
    let mut props = MessageProperties::new();
    let mut user_bytes = 0usize;
    for (k, v) in &message.user_properties {
        if is_system_property(k) || k.is_empty() {
            return bad(
                pb::Code::IllegalMessagePropertyKey,
                format!("property is used by system: {k}"),
            );
        }
        if has_control_char(k) || has_control_char(v) {
            return bad(
                pb::Code::IllegalMessagePropertyKey,
                "the key or value of a property cannot contain control characters".into(),
            );
        }
        user_bytes += k.len() + v.len();
        props.insert(k.clone(), v.clone());
    }
    if let Some(tag) = sp.tag.as_deref() {
        if tag.trim().is_empty() || tag.contains('|') || has_control_char(tag) {
            return bad(
                pb::Code::IllegalMessageTag,
                "tag cannot be blank, contain '|' or control characters".into(),
            );
        }
        user_bytes += tag.len();
        props.set_tags(tag);
    }
    for key in &sp.keys {
        if key.trim().is_empty() || has_control_char(key) {
            return bad(
                pb::Code::IllegalMessageKey,
                "key cannot be blank or contain control characters".into(),
            );
        }
        user_bytes += key.len();
    }
    if !sp.keys.is_empty() {
        props.set_keys(sp.keys.iter());
    }
    if user_bytes > MAX_USER_PROPERTY_BYTES {
        return bad(
            pb::Code::MessagePropertiesTooLarge,
            format!(
                "the total size of user property is too large, max is {MAX_USER_PROPERTY_BYTES}"
            ),
        );
    }
    if sp.message_id.trim().is_empty() {
        return bad(
            pb::Code::IllegalMessageId,
            "message id cannot be empty".into(),
        );
    }
    props.set_uniq_key(sp.message_id.clone());
    let message_type = pb::MessageType::try_from(sp.message_type).unwrap_or_default();
    let mut sys_flag = 0;
    if message_type == pb::MessageType::Transaction {
        props.insert(keys::TRAN_MSG, "true");
        sys_flag |= sysflag::TRANSACTION_PREPARED_TYPE;
        if let Some(d) = &sp.orphaned_transaction_recovery_duration {
            props.insert(keys::CHECK_IMMUNITY_TIME_IN_SECONDS, d.seconds.to_string());
        }
    }
    if let Some(ts) = &sp.delivery_timestamp {
        props.insert(keys::TIMER_DELIVER_MS, timestamp_ms(ts).to_string());
    }
    props.insert(keys::PGROUP, topic);
    if let Some(group) = sp.message_group.as_deref().filter(|g| !g.is_empty()) {
        if group.trim().is_empty()
            || group.len() >= MAX_MESSAGE_GROUP_BYTES
            || has_control_char(group)
        {
            return bad(
                pb::Code::IllegalMessageGroup,
                format!("message group must be non-blank, without control characters, under {MAX_MESSAGE_GROUP_BYTES} bytes"),
            );
        }
        props.insert(keys::SHARDING_KEY, group);
    }
    if let Some(trace) = sp.trace_context.as_deref().filter(|t| !t.is_empty()) {
        props.insert(keys::TRACE_CONTEXT, trace);
    }
    if pb::Encoding::try_from(sp.body_encoding) == Ok(pb::Encoding::Gzip) {
        sys_flag |= sysflag::COMPRESSED_FLAG;
    }
    let born_timestamp = sp
        .born_timestamp
        .as_ref()
        .map(timestamp_ms)
        .unwrap_or_else(now_ms);
    Ok(BuiltSend {
        message_id: sp.message_id,
        send: LocalSend {
            topic: topic.to_owned(),
            producer_group: topic.to_owned(),
            body: Bytes::from(message.body),
            properties: props,
            sys_flag,
            flag: 0,
            born_timestamp,
            queue_id: -1,
            reconsume_times: sp.delivery_attempt.unwrap_or(0).max(0),
            peer,
        },
    })
}

pub(crate) fn timestamp_ms(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

pub(crate) fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Java's `String.hashCode` over UTF-16 code units.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Guava's `Hashing.consistentHash(long, buckets)`, which the proxy uses to map a message group
/// onto a write queue.
pub fn consistent_hash(input: i32, buckets: i32) -> i32 {
    if buckets <= 1 {
        return 0;
    }
    let mut state = i64::from(input);
    let mut candidate: i32 = 0;
    loop {
        state = state
            .wrapping_mul(2_862_933_555_777_941_757)
            .wrapping_add(1);
        let next_double = f64::from(((state as u64) >> 33) as i32 + 1) / 2_147_483_648.0;
        let next = (f64::from(candidate + 1) / next_double) as i64;
        if next >= 0 && next < i64::from(buckets) {
            candidate = next as i32;
        } else {
            return candidate;
        }
    }
}

/// A stored record as a gRPC message.
pub(crate) fn to_pb_message(record: &MessageRecord) -> pb::Message {
    let props = record.properties_map();
    let mut user_properties = std::collections::HashMap::new();
    for (k, v) in props.iter() {
        if !is_system_property(k) && k != keys::TRANSACTION_ID {
            user_properties.insert(k.to_owned(), v.to_owned());
        }
    }
    let message_id = props.uniq_key().map(str::to_owned).unwrap_or_else(|| {
        let mut id = String::new();
        record.offset_msg_id().write_to(&mut id);
        id
    });
    let message_type = match TopicMessageType::of_properties(&props) {
        TopicMessageType::Fifo => pb::MessageType::Fifo,
        TopicMessageType::Delay => pb::MessageType::Delay,
        TopicMessageType::Transaction => pb::MessageType::Transaction,
        _ => pb::MessageType::Normal,
    };
    let encoding = if record.sys_flag & sysflag::COMPRESSED_FLAG != 0 {
        pb::Encoding::Gzip
    } else {
        pb::Encoding::Identity
    };
    pb::Message {
        topic: Some(resource(&record.topic)),
        user_properties,
        system_properties: Some(pb::SystemProperties {
            tag: props.tags().map(str::to_owned),
            keys: props.keys().map(str::to_owned).collect(),
            message_id,
            body_digest: Some(pb::Digest {
                r#type: pb::DigestType::Crc32 as i32,
                checksum: format!("{:08X}", crc32fast::hash(&record.body)),
            }),
            body_encoding: encoding as i32,
            message_type: message_type as i32,
            born_timestamp: Some(timestamp(record.born_timestamp)),
            born_host: record.born_host.ip().to_string(),
            store_timestamp: Some(timestamp(record.store_timestamp)),
            store_host: record.store_host.to_string(),
            delivery_timestamp: props
                .get(keys::TIMER_DELIVER_MS)
                .and_then(|v| v.parse().ok())
                .map(timestamp),
            queue_id: record.queue_id,
            queue_offset: Some(record.queue_offset),
            delivery_attempt: Some(record.reconsume_times.saturating_add(1)),
            message_group: props.get(keys::SHARDING_KEY).map(str::to_owned),
            trace_context: props.get(keys::TRACE_CONTEXT).map(str::to_owned),
            ..Default::default()
        }),
        body: record.body.to_vec(),
    }
}

/// Invisible time of a receive with `auto_renew` (the server picks it and the client renews).
pub const AUTO_RENEW_INVISIBLE_MS: i64 = 30_000;
/// Longest invisible time a client may ask for (`maxInvisibleTimeMills`).
pub const MAX_INVISIBLE_MS: i64 = 12 * 60 * 60 * 1000;

pub(crate) fn duration_ms(d: &prost_types::Duration) -> i64 {
    d.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(d.nanos) / 1_000_000)
}

pub(crate) fn duration_of_ms(ms: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub(crate) fn check_invisible_ms(ms: i64) -> RpcResult<()> {
    if ms <= 0 || ms > MAX_INVISIBLE_MS {
        return Err(RpcError::new(
            pb::Code::IllegalInvisibleTime,
            format!("the invisible time must be in (0, {MAX_INVISIBLE_MS}] ms, was {ms} ms"),
        ));
    }
    Ok(())
}

/// A refusal of the POP API in gRPC terms.
pub(crate) fn map_pop_error(error: PopError) -> RpcError {
    let code = match &error {
        PopError::NoPermission(_) => pb::Code::Forbidden,
        PopError::TopicNotExist(_) => pb::Code::TopicNotFound,
        PopError::GroupNotExist(_) => pb::Code::ConsumerGroupNotFound,
        PopError::InvalidParameter(_) | PopError::MessageIllegal(_) => pb::Code::BadRequest,
        PopError::NoMessage(_) | PopError::InvalidHandle(_) => pb::Code::InvalidReceiptHandle,
        PopError::SubscriptionParseFailed(_) => pb::Code::IllegalFilterExpression,
        PopError::System(_) => pb::Code::InternalServerError,
    };
    RpcError::new(code, error.remark())
}

/// The status of a batch: the entries' code when they agree, MULTIPLE_RESULTS otherwise.
pub(crate) fn overall_status<'a>(entries: impl Iterator<Item = &'a pb::Status>) -> pb::Status {
    let mut first: Option<&pb::Status> = None;
    for s in entries {
        match first {
            None => first = Some(s),
            Some(f) if f.code != s.code => {
                return status(pb::Code::MultipleResults, "MULTIPLE_RESULTS")
            }
            Some(_) => {}
        }
    }
    first
        .cloned()
        .unwrap_or_else(|| status(pb::Code::InternalServerError, "status is empty"))
}

/// A popped message as a gRPC message: the stored record plus its delivery.
pub(crate) fn popped_to_pb(popped: &PoppedMessage) -> RpcResult<pb::Message> {
    let (record, _) = MessageRecord::decode_bytes(&popped.record)
        .map_err(|e| RpcError::internal(format!("stored message is unreadable: {e}")))?;
    let mut message = to_pb_message(&record);
    if let Some(sp) = message.system_properties.as_mut() {
        sp.receipt_handle = Some(popped.receipt_handle.clone());
        sp.queue_id = popped.queue_id;
        sp.queue_offset = Some(popped.queue_offset as i64);
        sp.delivery_attempt =
            Some(i32::try_from(popped.delivery_attempt.max(1)).unwrap_or(i32::MAX));
        sp.invisible_duration = Some(duration_of_ms(popped.invisible_ms));
    }
    Ok(message)
}

/// One entry of an AckMessage answer.
pub(crate) fn ack_result(
    entry: &pb::AckMessageEntry,
    outcome: RpcResult<()>,
) -> pb::AckMessageResultEntry {
    pb::AckMessageResultEntry {
        message_id: entry.message_id.clone(),
        receipt_handle: entry.receipt_handle.clone(),
        status: Some(match outcome {
            Ok(()) => ok(),
            Err(e) => e.to_status(),
        }),
    }
}

/// The AckMessage answer: the entries, and an overall status summing them up.
pub(crate) fn ack_response(entries: Vec<pb::AckMessageResultEntry>) -> pb::AckMessageResponse {
    pb::AckMessageResponse {
        status: Some(overall_status(
            entries.iter().filter_map(|e| e.status.as_ref()),
        )),
        entries,
    }
}

/// The queue a request names; BAD_REQUEST without one.
pub(crate) fn message_queue_required(
    queue: &Option<pb::MessageQueue>,
) -> RpcResult<&pb::MessageQueue> {
    queue
        .as_ref()
        .ok_or_else(|| RpcError::new(pb::Code::BadRequest, "message queue is required"))
}

/// A filter expression as brokers take it: its type (`TAG` or `SQL92`) and the expression, a
/// blank one meaning every message (`*`).
pub(crate) fn broker_filter(filter: Option<pb::FilterExpression>) -> (&'static str, String) {
    let filter = filter.unwrap_or_default();
    let kind = if filter.r#type == pb::FilterType::Sql as i32 {
        "SQL92"
    } else {
        "TAG"
    };
    let expression = if filter.expression.trim().is_empty() {
        "*".to_owned()
    } else {
        filter.expression
    };
    (kind, expression)
}

/// The pop a ReceiveMessage asks for; `fifo` is left false (the group's config decides it).
/// `auto_renew_ms` is the invisible time given to push consumers' receives (`auto_renew`), which
/// leave it to the server.
pub(crate) fn pop_request(
    request: pb::ReceiveMessageRequest,
    auto_renew_ms: i64,
) -> RpcResult<PopRequest> {
    let group = required_name(&request.group, "group")?.to_owned();
    let queue = message_queue_required(&request.message_queue)?;
    let topic = required_name(&queue.topic, "topic")?.to_owned();
    let (expression_type, expression) = broker_filter(request.filter_expression);
    let invisible_ms = match (&request.invisible_duration, request.auto_renew) {
        (Some(d), false) => duration_ms(d),
        // Push consumers leave the invisible time to the server.
        _ => auto_renew_ms,
    };
    check_invisible_ms(invisible_ms)?;
    let poll_ms = match &request.long_polling_timeout {
        Some(d) => {
            let ms = duration_ms(d);
            if ms < 0 {
                return Err(RpcError::new(
                    pb::Code::IllegalPollingTime,
                    "the long polling timeout cannot be negative",
                ));
            }
            // The client waits request_timeout + long_polling_timeout, so answering within
            // long_polling_timeout leaves it the whole request timeout.
            ms.min(MAX_POLL_MS)
        }
        None => 0,
    };
    Ok(PopRequest {
        group,
        topic,
        // Like the proxy, a receive pops every readable queue of the topic.
        queue_id: None,
        max_messages: request.batch_size.clamp(1, MAX_POP_MESSAGES),
        invisible_ms,
        poll_ms,
        init_mode: InitMode::Min,
        expression_type: Some(expression_type.to_owned()),
        expression: Some(expression),
        fifo: false,
        attempt_id: request.attempt_id,
    })
}

/// The one topic of a SendMessage request: every message must name the same one.
pub(crate) fn send_topic(request: &pb::SendMessageRequest) -> RpcResult<String> {
    let Some(first) = request.messages.first() else {
        return Err(RpcError::new(
            pb::Code::MessageCorrupted,
            "no message to send",
        ));
    };
    let topic = required_name(&first.topic, "topic")?;
    if request
        .messages
        .iter()
        .any(|m| m.topic.as_ref().map(|t| t.name.as_str()) != Some(topic))
    {
        return Err(RpcError::new(
            pb::Code::MessageCorrupted,
            "topic in message is not same",
        ));
    }
    Ok(topic.to_owned())
}

/// RocketMQ 5's check that a message's type (from its properties) is the one its topic accepts.
pub(crate) fn check_message_type(
    topic_type: TopicMessageType,
    props: &MessageProperties,
) -> RpcResult<()> {
    let message_type = TopicMessageType::of_properties(props);
    if topic_type == TopicMessageType::Mixed || message_type == topic_type {
        return Ok(());
    }
    Err(RpcError::new(
        pb::Code::MessagePropertyConflictWithType,
        format!(
            "TopicMessageType validate failed, the expected type is {}, but actual type is {}",
            topic_type.name(),
            message_type.name()
        ),
    ))
}

/// The status of a SendMessage answer: the entries' common status, MULTIPLE_RESULTS otherwise.
pub(crate) fn send_status(entries: &[pb::SendResultEntry]) -> pb::Status {
    let mut codes: Vec<i32> = entries
        .iter()
        .filter_map(|e| e.status.as_ref().map(|s| s.code))
        .collect();
    codes.dedup();
    match codes.as_slice() {
        [code] => {
            let code = pb::Code::try_from(*code).unwrap_or(pb::Code::InternalServerError);
            let message = entries
                .first()
                .and_then(|e| e.status.as_ref())
                .map(|s| s.message.clone())
                .unwrap_or_default();
            status(code, message)
        }
        [] => status(pb::Code::InternalServerError, "send status is empty"),
        _ => status(pb::Code::MultipleResults, "MULTIPLE_RESULTS"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_reach_brokers_as_tag_or_sql_with_blank_meaning_everything() {
        let f = |kind: pb::FilterType, e: &str| {
            Some(pb::FilterExpression {
                r#type: kind as i32,
                expression: e.to_owned(),
            })
        };
        assert_eq!(broker_filter(None), ("TAG", "*".to_owned()));
        assert_eq!(
            broker_filter(f(pb::FilterType::Tag, "  ")),
            ("TAG", "*".to_owned())
        );
        assert_eq!(
            broker_filter(f(pb::FilterType::Tag, "a || b")),
            ("TAG", "a || b".to_owned())
        );
        assert_eq!(
            broker_filter(f(pb::FilterType::Sql, "x > 1")),
            ("SQL92", "x > 1".to_owned())
        );
        assert!(message_queue_required(&None).is_err());
    }

    #[test]
    fn java_string_hash_matches_java() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("abc"), 96354);
        assert_eq!(java_string_hash("hello world"), 1_794_106_052);
    }

    #[test]
    fn consistent_hash_stays_in_range_and_is_stable() {
        for input in [-5, 0, 1, 42, i32::MAX, i32::MIN] {
            let a = consistent_hash(input, 8);
            assert!((0..8).contains(&a));
            assert_eq!(a, consistent_hash(input, 8));
        }
        assert_eq!(consistent_hash(123, 1), 0);
    }

    #[test]
    fn message_type_follows_the_stored_properties() {
        let mut p = MessageProperties::new();
        assert_eq!(
            TopicMessageType::of_properties(&p),
            TopicMessageType::Normal
        );
        p.insert(keys::SHARDING_KEY, "g");
        assert_eq!(TopicMessageType::of_properties(&p), TopicMessageType::Fifo);
        p.insert(keys::TIMER_DELIVER_MS, "1");
        assert_eq!(TopicMessageType::of_properties(&p), TopicMessageType::Delay);
        p.insert(keys::TRAN_MSG, "true");
        assert_eq!(
            TopicMessageType::of_properties(&p),
            TopicMessageType::Transaction
        );
    }

    #[test]
    fn user_properties_may_not_use_system_keys() {
        let message = pb::Message {
            topic: Some(resource("T")),
            user_properties: [("UNIQ_KEY".to_owned(), "x".to_owned())].into(),
            system_properties: Some(pb::SystemProperties {
                message_id: "01".into(),
                ..Default::default()
            }),
            body: b"b".to_vec(),
        };
        let error = build_send("T", message, None).err().expect("rejected");
        assert_eq!(error.code, pb::Code::IllegalMessagePropertyKey);
    }
}
