//! "Local mode": a [`MessagingBackend`] over the broker in the same process
//! ([`apogee_broker::local::LocalServices`]), as RocketMQ runs its proxy inside the broker.
//!
//! What RocketMQ's proxy does is done here: routes list this broker's queues with the gRPC
//! endpoint as the address to dial; SendMessage turns each message's system properties into
//! stored properties (UNIQ_KEY = the client's message id, TAGS, KEYS, `__SHARDINGKEY` for FIFO,
//! TIMER_DELIVER_MS for DELAY, TRAN_MSG and PGROUP = topic for transactions), checks the topic's
//! `message.type` and picks the FIFO queue by consistent hash of the message group; the rest goes
//! through the broker's own processors. ReceiveMessage, AckMessage and ChangeInvisibleDuration go
//! to the broker's POP API (a receive pops every queue of the topic, FIFO when the group consumes
//! orderly); ForwardMessageToDeadLetterQueue hands the message back with delay level -1, which
//! stores it in `%DLQ%<group>`, then acks it.

mod checkback;
pub mod policy;
pub mod recall;
pub mod renew;

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use apogee_broker::local::{
    is_system_property, LocalEndTransaction, LocalError, LocalPull, LocalSend, LocalServices,
    TransactionResolution,
};
use apogee_broker::pop::{
    AckOutcome, InitMode, PopError, PopRequest, PopStatus, PoppedMessage, ReceiptHandle,
    MAX_POLL_MS, MAX_POP_MESSAGES,
};
use apogee_protocol::body::TopicConfig;
use apogee_protocol::codes::perm;
use apogee_protocol::codes::request_code;
use apogee_protocol::codes::response_code as rc;
use apogee_protocol::header::ConsumerSendMsgBackRequestHeader;
use apogee_protocol::message::{keys, sysflag, MessageProperties, MessageRecord};
use apogee_protocol::RemotingCommand;
use bytes::Bytes;

use crate::backend::{BackendStream, MessagingBackend, RequestContext};
use crate::pb;
use crate::session::SessionRegistry;
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

    fn name(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Fifo => "FIFO",
            Self::Delay => "DELAY",
            Self::Transaction => "TRANSACTION",
            Self::Mixed => "MIXED",
        }
    }

    /// The type of a message from its stored properties (`parseFromMessageProperty`).
    fn of_properties(props: &MessageProperties) -> Self {
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

/// The in-process backend.
#[derive(Debug)]
pub struct LocalBackend {
    services: LocalServices,
    /// Set again once the listener's real port is known (see [`LocalBackend::set_advertised`]).
    endpoints: RwLock<pb::Endpoints>,
    validate_message_type: bool,
    /// Push consumers' receipt handles being renewed (see [`renew`]).
    renewals: Arc<renew::Renewals>,
    renew_config: renew::RenewConfig,
    renew_task: std::sync::OnceLock<()>,
}

fn endpoints_of(advertised: SocketAddr) -> pb::Endpoints {
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

impl LocalBackend {
    /// `advertised` is the gRPC address clients dial (the broker's IP and the gRPC port).
    pub fn new(services: LocalServices, advertised: SocketAddr) -> Self {
        Self {
            services,
            endpoints: RwLock::new(endpoints_of(advertised)),
            validate_message_type: true,
            renewals: Arc::default(),
            renew_config: renew::RenewConfig::default(),
            renew_task: std::sync::OnceLock::new(),
        }
    }

    /// Changes how push consumers' receipt handles are renewed.
    pub fn with_renewal(mut self, config: renew::RenewConfig) -> Self {
        self.renew_config = config;
        self
    }

    /// Receipt handles being renewed right now.
    pub fn renewing(&self) -> usize {
        self.renewals.len()
    }

    /// Changes the address routes advertise (e.g. once a listener on port 0 got its port).
    pub fn set_advertised(&self, advertised: SocketAddr) {
        *self
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner) = endpoints_of(advertised);
    }

    /// Whether SendMessage checks the topic's `message.type` (`enableTopicMessageTypeCheck`);
    /// keep it equal to the producer settings' `validate_message_type`.
    pub fn with_validate_message_type(mut self, validate: bool) -> Self {
        self.validate_message_type = validate;
        self
    }

    /// The endpoints routes advertise.
    pub fn endpoints(&self) -> pb::Endpoints {
        self.endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The topic's config, or what a send would auto-create.
    fn topic_or_template(&self, topic: &str) -> RpcResult<TopicConfig> {
        if let Some(config) = self.services.topic(topic) {
            return Ok(config);
        }
        if self.services.can_auto_create_topic(topic) {
            if let Some(template) = self
                .services
                .topic(apogee_broker::names::AUTO_CREATE_TOPIC_KEY_TOPIC)
            {
                let queues = template
                    .write_queue_nums
                    .min(self.services.default_topic_queue_nums());
                let mut config = TopicConfig::new(topic);
                config.read_queue_nums = queues;
                config.write_queue_nums = queues;
                config.perm = perm::READ | perm::WRITE;
                return Ok(config);
            }
        }
        Err(RpcError::new(
            pb::Code::TopicNotFound,
            format!("topic {topic} does not exist"),
        ))
    }

    fn queue(&self, config: &TopicConfig, id: i32, types: &[i32]) -> pb::MessageQueue {
        let readable = perm::is_readable(config.perm) && id < config.read_queue_nums;
        let writable = perm::is_writeable(config.perm)
            && perm::is_writeable(self.services.broker_permission())
            && id < config.write_queue_nums;
        let permission = match (readable, writable) {
            (true, true) => pb::Permission::ReadWrite,
            (true, false) => pb::Permission::Read,
            (false, true) => pb::Permission::Write,
            (false, false) => pb::Permission::None,
        };
        pb::MessageQueue {
            topic: Some(resource(&config.topic_name)),
            id,
            permission: permission as i32,
            broker: Some(pb::Broker {
                name: self.services.broker_name().to_owned(),
                id: self.services.broker_id() as i32,
                endpoints: Some(self.endpoints()),
            }),
            accept_message_types: types.to_vec(),
        }
    }

    fn queues(&self, config: &TopicConfig) -> Vec<pb::MessageQueue> {
        let types = TopicMessageType::of(config).accepted();
        let n = config.read_queue_nums.max(config.write_queue_nums);
        (0..n).map(|id| self.queue(config, id, &types)).collect()
    }

    async fn send_one(
        &self,
        ctx: &RequestContext,
        topic_type: TopicMessageType,
        write_queues: i32,
        message: pb::Message,
    ) -> pb::SendResultEntry {
        match self
            .try_send_one(ctx, topic_type, write_queues, message)
            .await
        {
            Ok(entry) => entry,
            Err(error) => pb::SendResultEntry {
                status: Some(error.to_status()),
                ..Default::default()
            },
        }
    }

    async fn try_send_one(
        &self,
        ctx: &RequestContext,
        topic_type: TopicMessageType,
        write_queues: i32,
        message: pb::Message,
    ) -> RpcResult<pb::SendResultEntry> {
        let topic = message
            .topic
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let built = build_send(&topic, message, ctx.remote_addr)?;
        let mut send = built.send;
        let message_type = TopicMessageType::of_properties(&send.properties);
        if self.validate_message_type
            && topic_type != TopicMessageType::Mixed
            && message_type != topic_type
        {
            return Err(RpcError::new(
                pb::Code::MessagePropertyConflictWithType,
                format!(
                    "TopicMessageType validate failed, the expected type is {}, but actual type is {}",
                    topic_type.name(),
                    message_type.name()
                ),
            ));
        }
        if let Some(group) = send.properties.get(keys::SHARDING_KEY) {
            if write_queues > 0 {
                send.queue_id = consistent_hash(java_string_hash(group), write_queues);
            }
        }
        let recall_handle = recall::handle_for(
            &self.services,
            &topic,
            send.properties.get(keys::TIMER_DELIVER_MS),
            &built.message_id,
        );
        let result = self.services.send(send).await.map_err(map_broker_error)?;
        let code = match result.code {
            rc::SUCCESS => pb::Code::Ok,
            rc::FLUSH_DISK_TIMEOUT => pb::Code::MasterPersistenceTimeout,
            rc::FLUSH_SLAVE_TIMEOUT => pb::Code::SlavePersistenceTimeout,
            _ => pb::Code::HaNotAvailable,
        };
        if code != pb::Code::Ok {
            return Err(RpcError::new(
                code,
                format!("send message failed, code {}", result.code),
            ));
        }
        Ok(pb::SendResultEntry {
            status: Some(ok()),
            message_id: built.message_id,
            transaction_id: result.transaction_handle.unwrap_or_default(),
            offset: result.queue_offset,
            recall_handle,
        })
    }
}

fn resource(name: &str) -> pb::Resource {
    pb::Resource {
        resource_namespace: String::new(),
        name: name.to_owned(),
    }
}

fn required_name<'a>(resource: &'a Option<pb::Resource>, what: &str) -> RpcResult<&'a str> {
    match resource {
        Some(r) if !r.name.is_empty() => Ok(&r.name),
        _ => Err(RpcError::new(
            pb::Code::BadRequest,
            format!("{what} is required"),
        )),
    }
}

/// A broker refusal in gRPC terms (the proxy's mapping of remoting codes).
fn map_broker_error(error: LocalError) -> RpcError {
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

fn has_control_char(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() && c != '\t' && c != '\n' && c != '\r')
}

struct BuiltSend {
    send: LocalSend,
    message_id: String,
}

/// The stored form of one gRPC message, checked as the proxy checks it.
fn build_send(topic: &str, message: pb::Message, peer: Option<SocketAddr>) -> RpcResult<BuiltSend> {
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

fn timestamp_ms(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn now_ms() -> i64 {
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
fn to_pb_message(record: &MessageRecord) -> pb::Message {
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

fn duration_ms(d: &prost_types::Duration) -> i64 {
    d.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(d.nanos) / 1_000_000)
}

fn duration_of_ms(ms: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn check_invisible_ms(ms: i64) -> RpcResult<()> {
    if ms <= 0 || ms > MAX_INVISIBLE_MS {
        return Err(RpcError::new(
            pb::Code::IllegalInvisibleTime,
            format!("the invisible time must be in (0, {MAX_INVISIBLE_MS}] ms, was {ms} ms"),
        ));
    }
    Ok(())
}

/// A refusal of the POP API in gRPC terms.
fn map_pop_error(error: PopError) -> RpcError {
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
fn overall_status<'a>(entries: impl Iterator<Item = &'a pb::Status>) -> pb::Status {
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
fn popped_to_pb(popped: &PoppedMessage) -> RpcResult<pb::Message> {
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

impl LocalBackend {
    /// Starts renewing the handles of `popped`, received by push consumer `client_id`.
    fn track_renewals(&self, client_id: &str, group: &str, topic: &str, popped: &[PoppedMessage]) {
        renew::ensure_task(
            &self.renew_task,
            &self.renewals,
            self.services.pop_api(),
            self.renew_config,
        );
        let now = std::time::Instant::now();
        for m in popped {
            let invisible = std::time::Duration::from_millis(m.invisible_ms.max(0) as u64);
            if !self.renewals.track(
                client_id,
                group,
                topic,
                &m.receipt_handle,
                invisible,
                now,
                self.renew_config.max_handles,
            ) {
                tracing::warn!(client_id, "too many receipt handles to renew; not renewed");
            }
        }
    }

    /// The pop a ReceiveMessage asks for.
    fn pop_request(&self, request: pb::ReceiveMessageRequest) -> RpcResult<PopRequest> {
        let group = required_name(&request.group, "group")?.to_owned();
        let queue = request
            .message_queue
            .as_ref()
            .ok_or_else(|| RpcError::new(pb::Code::BadRequest, "message queue is required"))?;
        let topic = required_name(&queue.topic, "topic")?.to_owned();
        let filter = request.filter_expression.unwrap_or_default();
        let expression_type = if filter.r#type == pb::FilterType::Sql as i32 {
            "SQL92"
        } else {
            "TAG"
        };
        let expression = if filter.expression.trim().is_empty() {
            "*".to_owned()
        } else {
            filter.expression
        };
        let invisible_ms = match (&request.invisible_duration, request.auto_renew) {
            (Some(d), false) => duration_ms(d),
            // Push consumers leave the invisible time to the server.
            _ => i64::try_from(self.renew_config.invisible.as_millis()).unwrap_or(i64::MAX),
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
        let fifo = self
            .services
            .subscription_group(&group)
            .is_some_and(|g| g.consume_message_orderly);
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
            fifo,
            attempt_id: request.attempt_id,
        })
    }
}

#[async_trait::async_trait]
impl MessagingBackend for LocalBackend {
    fn attach_sessions(&self, sessions: &Arc<SessionRegistry>) {
        checkback::install(&self.services, sessions);
    }

    async fn client_offline(
        &self,
        client_id: &str,
        _session: Option<&crate::session::ClientSession>,
        _reason: crate::backend::OfflineReason,
    ) {
        renew::release(
            &self.renewals,
            &self.services.pop_api(),
            &self.renew_config,
            client_id,
        );
    }

    async fn group_policy(
        &self,
        _ctx: &RequestContext,
        group: &pb::Resource,
    ) -> RpcResult<Option<crate::config::GroupPolicy>> {
        Ok(self
            .services
            .subscription_group(&group.name)
            .map(|g| policy::group_policy_of(&g)))
    }

    async fn query_route(
        &self,
        _ctx: &RequestContext,
        request: pb::QueryRouteRequest,
    ) -> RpcResult<pb::QueryRouteResponse> {
        let topic = required_name(&request.topic, "topic")?;
        let config = self.topic_or_template(topic)?;
        Ok(pb::QueryRouteResponse {
            status: Some(ok()),
            message_queues: self.queues(&config),
        })
    }

    async fn send_message(
        &self,
        ctx: &RequestContext,
        request: pb::SendMessageRequest,
    ) -> RpcResult<pb::SendMessageResponse> {
        let Some(first) = request.messages.first() else {
            return Err(RpcError::new(
                pb::Code::MessageCorrupted,
                "no message to send",
            ));
        };
        let topic = required_name(&first.topic, "topic")?.to_owned();
        if request
            .messages
            .iter()
            .any(|m| m.topic.as_ref().map(|t| t.name.as_str()) != Some(topic.as_str()))
        {
            return Err(RpcError::new(
                pb::Code::MessageCorrupted,
                "topic in message is not same",
            ));
        }
        let config = self.topic_or_template(&topic)?;
        let topic_type = TopicMessageType::of(&config);
        let mut entries = Vec::with_capacity(request.messages.len());
        for message in request.messages {
            entries.push(
                self.send_one(ctx, topic_type, config.write_queue_nums, message)
                    .await,
            );
        }
        let mut codes: Vec<i32> = entries
            .iter()
            .filter_map(|e| e.status.as_ref().map(|s| s.code))
            .collect();
        codes.dedup();
        let overall = match codes.as_slice() {
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
        };
        Ok(pb::SendMessageResponse {
            status: Some(overall),
            entries,
        })
    }

    async fn query_assignment(
        &self,
        _ctx: &RequestContext,
        request: pb::QueryAssignmentRequest,
    ) -> RpcResult<pb::QueryAssignmentResponse> {
        let topic = required_name(&request.topic, "topic")?;
        required_name(&request.group, "group")?;
        let config = self.services.topic(topic).ok_or_else(|| {
            RpcError::new(
                pb::Code::TopicNotFound,
                format!("topic {topic} does not exist"),
            )
        })?;
        let assignments = self
            .queues(&config)
            .into_iter()
            .filter(|q| {
                q.permission == pb::Permission::Read as i32
                    || q.permission == pb::Permission::ReadWrite as i32
            })
            .map(|q| pb::Assignment {
                message_queue: Some(q),
            })
            .collect();
        Ok(pb::QueryAssignmentResponse {
            status: Some(ok()),
            assignments,
        })
    }

    async fn receive_message(
        &self,
        ctx: &RequestContext,
        request: pb::ReceiveMessageRequest,
    ) -> RpcResult<BackendStream<pb::ReceiveMessageResponse>> {
        use pb::receive_message_response::Content;
        let auto_renew = request.auto_renew;
        let pop = self.pop_request(request)?;
        let renew_for = ctx
            .client_id()
            .filter(|_| auto_renew)
            .map(|id| (id.to_owned(), pop.group.clone(), pop.topic.clone()));
        let result = self
            .services
            .pop_api()
            .pop(pop)
            .await
            .map_err(map_pop_error)?;
        let mut items = Vec::with_capacity(result.messages.len() + 2);
        let mut messages = Vec::with_capacity(result.messages.len());
        for popped in &result.messages {
            messages.push(popped_to_pb(popped)?);
        }
        if let Some((client_id, group, topic)) = renew_for.filter(|_| !messages.is_empty()) {
            self.track_renewals(&client_id, &group, &topic, &result.messages);
        }
        if result.status != PopStatus::Found || messages.is_empty() {
            items.push(pb::ReceiveMessageResponse {
                content: Some(Content::Status(status(
                    pb::Code::MessageNotFound,
                    "no match message",
                ))),
            });
        } else {
            items.push(pb::ReceiveMessageResponse {
                content: Some(Content::Status(ok())),
            });
            items.extend(messages.into_iter().map(|m| pb::ReceiveMessageResponse {
                content: Some(Content::Message(m)),
            }));
            items.push(pb::ReceiveMessageResponse {
                content: Some(Content::DeliveryTimestamp(timestamp(result.pop_time_ms))),
            });
        }
        Ok(Box::pin(tokio_stream::iter(items)))
    }

    async fn ack_message(
        &self,
        _ctx: &RequestContext,
        request: pb::AckMessageRequest,
    ) -> RpcResult<pb::AckMessageResponse> {
        let group = required_name(&request.group, "group")?;
        let topic = required_name(&request.topic, "topic")?;
        if request.entries.is_empty() {
            return Err(RpcError::new(pb::Code::BadRequest, "no entry to ack"));
        }
        let api = self.services.pop_api();
        let entries: Vec<pb::AckMessageResultEntry> = request
            .entries
            .iter()
            .map(|entry| {
                let outcome = if entry.receipt_handle.is_empty() {
                    Err(RpcError::new(
                        pb::Code::InvalidReceiptHandle,
                        "receipt handle cannot be empty",
                    ))
                } else {
                    let handle = self.renewals.take(group, &entry.receipt_handle);
                    api.ack(group, topic, &handle, None)
                        .map_err(map_pop_error)
                        .and_then(|outcome| match outcome {
                            // Acking what is no longer in flight (acked already) succeeds, as
                            // the broker's ack does.
                            AckOutcome::Acked | AckOutcome::NotInFlight => Ok(()),
                            AckOutcome::Stale => Err(RpcError::new(
                                pb::Code::InvalidReceiptHandle,
                                "receipt handle is expired: the message was delivered again",
                            )),
                        })
                };
                pb::AckMessageResultEntry {
                    message_id: entry.message_id.clone(),
                    receipt_handle: entry.receipt_handle.clone(),
                    status: Some(match outcome {
                        Ok(()) => ok(),
                        Err(e) => e.to_status(),
                    }),
                }
            })
            .collect();
        Ok(pb::AckMessageResponse {
            status: Some(overall_status(
                entries.iter().filter_map(|e| e.status.as_ref()),
            )),
            entries,
        })
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        ctx: &RequestContext,
        request: pb::ForwardMessageToDeadLetterQueueRequest,
    ) -> RpcResult<pb::ForwardMessageToDeadLetterQueueResponse> {
        let group = required_name(&request.group, "group")?.to_owned();
        let topic = required_name(&request.topic, "topic")?.to_owned();
        let current = self.renewals.take(&group, &request.receipt_handle);
        let handle = ReceiptHandle::parse(&current).map_err(map_pop_error)?;
        let commit_log_offset = handle.commit_log_offset.ok_or_else(|| {
            RpcError::new(
                pb::Code::InvalidReceiptHandle,
                "receipt handle has no commit log offset",
            )
        })?;
        // The broker's send-back with delay level -1 copies the message into %DLQ%<group>.
        let header = ConsumerSendMsgBackRequestHeader {
            offset: commit_log_offset,
            group: group.clone(),
            delay_level: -1,
            origin_msg_id: Some(request.message_id.clone()).filter(|id| !id.is_empty()),
            origin_topic: Some(topic.clone()),
            unit_mode: false,
            max_reconsume_times: Some(request.max_delivery_attempts.max(1) - 1),
        };
        let response = self
            .services
            .invoke(
                ctx.remote_addr,
                RemotingCommand::request_with_header(request_code::CONSUMER_SEND_MSG_BACK, &header),
            )
            .await;
        if response.code != rc::SUCCESS {
            return Err(map_broker_error(LocalError {
                code: response.code,
                remark: response.remark.unwrap_or_default(),
            }));
        }
        self.services
            .pop_api()
            .ack(&group, &topic, &current, None)
            .map_err(map_pop_error)?;
        Ok(pb::ForwardMessageToDeadLetterQueueResponse { status: Some(ok()) })
    }

    async fn change_invisible_duration(
        &self,
        _ctx: &RequestContext,
        request: pb::ChangeInvisibleDurationRequest,
    ) -> RpcResult<pb::ChangeInvisibleDurationResponse> {
        let group = required_name(&request.group, "group")?;
        let topic = required_name(&request.topic, "topic")?;
        if request.receipt_handle.is_empty() {
            return Err(RpcError::new(
                pb::Code::InvalidReceiptHandle,
                "receipt handle cannot be empty",
            ));
        }
        let invisible_ms = request
            .invisible_duration
            .as_ref()
            .map(duration_ms)
            .ok_or_else(|| {
                RpcError::new(
                    pb::Code::IllegalInvisibleTime,
                    "invisible duration is required",
                )
            })?;
        check_invisible_ms(invisible_ms)?;
        let current = self.renewals.take(group, &request.receipt_handle);
        let changed = self
            .services
            .pop_api()
            .change_invisible(group, topic, &current, None, invisible_ms)
            .map_err(map_pop_error)?;
        Ok(pb::ChangeInvisibleDurationResponse {
            status: Some(ok()),
            receipt_handle: changed.receipt_handle,
        })
    }

    async fn end_transaction(
        &self,
        ctx: &RequestContext,
        request: pb::EndTransactionRequest,
    ) -> RpcResult<pb::EndTransactionResponse> {
        let topic = required_name(&request.topic, "topic")?.to_owned();
        if request.transaction_id.is_empty() {
            return Err(RpcError::new(
                pb::Code::InvalidTransactionId,
                "transaction id cannot be empty",
            ));
        }
        let resolution = match pb::TransactionResolution::try_from(request.resolution) {
            Ok(pb::TransactionResolution::Commit) => TransactionResolution::Commit,
            Ok(pb::TransactionResolution::Rollback) => TransactionResolution::Rollback,
            // Unknown leaves the half message to the check-back, as the broker does.
            _ => {
                return Ok(pb::EndTransactionResponse { status: Some(ok()) });
            }
        };
        let from_check = request.source == pb::TransactionSource::SourceServerCheck as i32;
        let end = LocalEndTransaction {
            producer_group: topic.clone(),
            topic,
            msg_id: request.message_id,
            transaction_handle: request.transaction_id,
            resolution,
            from_check,
            peer: ctx.remote_addr,
        };
        match self.services.end_transaction(end).await {
            Ok(()) => Ok(pb::EndTransactionResponse { status: Some(ok()) }),
            Err(e) if e.code == rc::INVALID_PARAMETER => {
                Err(RpcError::new(pb::Code::InvalidTransactionId, e.remark))
            }
            Err(e) => Err(map_broker_error(e)),
        }
    }

    async fn pull_message(
        &self,
        ctx: &RequestContext,
        request: pb::PullMessageRequest,
    ) -> RpcResult<BackendStream<pb::PullMessageResponse>> {
        use pb::pull_message_response::Content;
        let group = required_name(&request.group, "group")?.to_owned();
        let queue = request
            .message_queue
            .ok_or_else(|| RpcError::new(pb::Code::BadRequest, "message queue is required"))?;
        let topic = required_name(&queue.topic, "topic")?.to_owned();
        let filter = request.filter_expression.unwrap_or_default();
        let expression_type = if filter.r#type == pb::FilterType::Sql as i32 {
            "SQL92"
        } else {
            "TAG"
        };
        let expression = if filter.expression.is_empty() {
            "*".to_owned()
        } else {
            filter.expression
        };
        let result = self
            .services
            .pull(LocalPull {
                group,
                topic,
                queue_id: queue.id,
                offset: request.offset,
                max_messages: request.batch_size.clamp(1, 32),
                expression_type: expression_type.to_owned(),
                expression,
                peer: ctx.remote_addr,
            })
            .await
            .map_err(map_broker_error)?;
        let head = match result.code {
            rc::SUCCESS => ok(),
            rc::PULL_OFFSET_MOVED => status(pb::Code::IllegalOffset, "the offset is out of range"),
            _ => status(pb::Code::MessageNotFound, "no new message"),
        };
        let mut items = vec![pb::PullMessageResponse {
            content: Some(Content::Status(head)),
        }];
        items.extend(result.messages.iter().map(|r| pb::PullMessageResponse {
            content: Some(Content::Message(to_pb_message(r))),
        }));
        items.push(pb::PullMessageResponse {
            content: Some(Content::NextOffset(result.next_offset)),
        });
        Ok(Box::pin(tokio_stream::iter(items)))
    }

    async fn update_offset(
        &self,
        _ctx: &RequestContext,
        request: pb::UpdateOffsetRequest,
    ) -> RpcResult<pb::UpdateOffsetResponse> {
        let group = required_name(&request.group, "group")?;
        let queue = request
            .message_queue
            .as_ref()
            .ok_or_else(|| RpcError::new(pb::Code::BadRequest, "message queue is required"))?;
        let topic = required_name(&queue.topic, "topic")?;
        self.services
            .update_consumer_offset(group, topic, queue.id, request.offset)
            .await
            .map_err(map_broker_error)?;
        Ok(pb::UpdateOffsetResponse { status: Some(ok()) })
    }

    async fn get_offset(
        &self,
        _ctx: &RequestContext,
        request: pb::GetOffsetRequest,
    ) -> RpcResult<pb::GetOffsetResponse> {
        let group = required_name(&request.group, "group")?;
        let queue = request
            .message_queue
            .as_ref()
            .ok_or_else(|| RpcError::new(pb::Code::BadRequest, "message queue is required"))?;
        let topic = required_name(&queue.topic, "topic")?;
        match self
            .services
            .query_consumer_offset(group, topic, queue.id)
            .await
            .map_err(map_broker_error)?
        {
            Some(offset) => Ok(pb::GetOffsetResponse {
                status: Some(ok()),
                offset,
            }),
            None => Err(RpcError::new(
                pb::Code::OffsetNotFound,
                format!("group {group} has no offset for {topic} queue {}", queue.id),
            )),
        }
    }

    async fn query_offset(
        &self,
        _ctx: &RequestContext,
        request: pb::QueryOffsetRequest,
    ) -> RpcResult<pb::QueryOffsetResponse> {
        let queue = request
            .message_queue
            .as_ref()
            .ok_or_else(|| RpcError::new(pb::Code::BadRequest, "message queue is required"))?;
        let topic = required_name(&queue.topic, "topic")?;
        let offset = match pb::QueryOffsetPolicy::try_from(request.query_offset_policy) {
            Ok(pb::QueryOffsetPolicy::Beginning) => self.services.min_offset(topic, queue.id).await,
            Ok(pb::QueryOffsetPolicy::End) => self.services.max_offset(topic, queue.id).await,
            Ok(pb::QueryOffsetPolicy::Timestamp) => {
                let ts = request
                    .timestamp
                    .as_ref()
                    .ok_or_else(|| RpcError::new(pb::Code::BadRequest, "timestamp is required"))?;
                self.services
                    .offset_by_timestamp(topic, queue.id, timestamp_ms(ts))
                    .await
            }
            Err(_) => {
                return Err(RpcError::new(
                    pb::Code::BadRequest,
                    "unknown query offset policy",
                ))
            }
        }
        .map_err(map_broker_error)?;
        Ok(pb::QueryOffsetResponse {
            status: Some(ok()),
            offset,
        })
    }

    async fn recall_message(
        &self,
        _ctx: &RequestContext,
        request: pb::RecallMessageRequest,
    ) -> RpcResult<pb::RecallMessageResponse> {
        recall::recall(&self.services, request, now_ms()).await
    }

    async fn sync_lite_subscription(
        &self,
        _: &RequestContext,
        _: pb::SyncLiteSubscriptionRequest,
    ) -> RpcResult<pb::SyncLiteSubscriptionResponse> {
        Err(RpcError::not_implemented("SyncLiteSubscription"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
