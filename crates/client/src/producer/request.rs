//! The wire side of a send, as pure functions: turning a [`Message`] into the body, sysflag and
//! properties a Java producer would send (UNIQ_KEY, compression, transaction flag, batch
//! encoding), building the SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE request, and reading the answer.

use apogee_protocol::body::MessageQueue;
use apogee_protocol::codes::{request_code, response_code};
use apogee_protocol::header::{
    SendMessageRequestHeader, SendMessageResponseHeader, EXT_MSG_REGION, EXT_TRACE_ON,
};
use apogee_protocol::message::batch::{encode_batch, encoded_batch_len, BatchEntry};
use apogee_protocol::message::compression::CompressionType;
use apogee_protocol::message::{keys, sysflag, MessageProperties};
use apogee_protocol::{ExtFields, RemotingCommand};
use bytes::{Bytes, BytesMut};

use crate::error::{ClientError, Result};
use crate::message::{Message, SendResult, SendStatus};
use crate::namespace::{self, AUTO_CREATE_TOPIC_KEY_TOPIC};

/// The region a send result reports when the broker does not say (`MixAll.DEFAULT_TRACE_REGION_ID`).
pub const DEFAULT_REGION_ID: &str = "DefaultRegion";

/// Producer settings that shape what goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireOptions {
    /// Bodies of at least this many bytes are compressed (batches never are). RocketMQ: 4096.
    pub compress_over_bytes: usize,
    /// ZLIB/ZSTD level. RocketMQ: 5.
    pub compress_level: i32,
    pub compression: CompressionType,
    /// Largest body (batch: the whole encoded batch) accepted. RocketMQ: 4 MiB.
    pub max_message_bytes: usize,
    /// Queue count the broker gives a topic it auto-creates. RocketMQ producer default: 4.
    pub default_topic_queue_nums: i32,
}

impl Default for WireOptions {
    fn default() -> Self {
        Self {
            compress_over_bytes: 4096,
            compress_level: 5,
            compression: CompressionType::Zlib,
            max_message_bytes: 4 * 1024 * 1024,
            default_topic_queue_nums: 4,
        }
    }
}

/// A message ready to go: everything but the queue and the born timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedMessage {
    /// The topic as the user wrote it.
    pub user_topic: String,
    /// The topic as it travels (namespace applied).
    pub wire_topic: String,
    /// The body as sent (compressed, or the encoded batch).
    pub body: Bytes,
    pub sys_flag: i32,
    pub flag: i32,
    /// The properties string for the header's `i` field.
    pub properties: String,
    /// The `UNIQ_KEY` (for a batch, the inner ids joined with commas).
    pub msg_id: String,
    pub is_batch: bool,
    /// `RECONSUME_TIME` and `MAX_RECONSUME_TIMES` of a message sent to a retry topic, which go
    /// into the header instead of the properties.
    pub reconsume_times: Option<i32>,
    pub max_reconsume_times: Option<i32>,
}

impl PreparedMessage {
    pub fn request_code(&self) -> i32 {
        if self.is_batch {
            request_code::SEND_BATCH_MESSAGE
        } else {
            request_code::SEND_MESSAGE_V2
        }
    }
}

fn check_topic_and_body(msg: &Message, opts: &WireOptions) -> Result<()> {
    namespace::validate_topic(msg.topic()).map_err(ClientError::InvalidArgument)?;
    if msg.body().is_empty() {
        return Err(ClientError::InvalidArgument(
            "the message body length is zero".into(),
        ));
    }
    if msg.body().len() > opts.max_message_bytes {
        return Err(ClientError::InvalidArgument(format!(
            "the message body size {} exceeds the maximum {} bytes",
            msg.body().len(),
            opts.max_message_bytes
        )));
    }
    Ok(())
}

/// Prepares one message: validates it, gives it a `UNIQ_KEY` unless it has one (`uniq_id` is
/// called only then), stamps `INSTANCE_ID` with the namespace, compresses a large body, and sets
/// the prepared-transaction bit for half messages. `msg` keeps the `UNIQ_KEY`, so a retry of
/// the same message carries the same id.
pub fn prepare_message(
    msg: &mut Message,
    namespace: Option<&str>,
    opts: &WireOptions,
    uniq_id: impl FnOnce() -> String,
) -> Result<PreparedMessage> {
    check_topic_and_body(msg, opts)?;
    if msg.uniq_key().is_none_or(str::is_empty) {
        msg.properties_mut().set_uniq_key(uniq_id());
    }
    let wire_topic = namespace::wrap(namespace, msg.topic());
    let mut props = msg.properties().clone();
    if let Some(ns) = namespace.filter(|ns| !ns.is_empty()) {
        props.insert(keys::INSTANCE_ID, ns);
    }
    let mut sys_flag = 0;
    let mut body = msg.body().clone();
    if body.len() >= opts.compress_over_bytes {
        let compressed = opts.compression.compress(&body, opts.compress_level)?;
        body = Bytes::from(compressed);
        sys_flag = sysflag::with_compression(sys_flag, opts.compression);
    }
    if props
        .get(keys::TRAN_MSG)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        sys_flag |= sysflag::TRANSACTION_PREPARED_TYPE;
    }
    let (reconsume_times, max_reconsume_times) = if namespace::is_retry_topic(&wire_topic) {
        let r = props
            .remove(keys::RECONSUME_TIME)
            .and_then(|v| v.trim().parse().ok());
        let m = props
            .remove(keys::MAX_RECONSUME_TIMES)
            .and_then(|v| v.trim().parse().ok());
        (r, m)
    } else {
        (None, None)
    };
    Ok(PreparedMessage {
        user_topic: msg.topic().to_owned(),
        wire_topic,
        body,
        sys_flag,
        flag: msg.flag(),
        properties: props.encode_to_string(),
        msg_id: msg.uniq_key().unwrap_or_default().to_owned(),
        is_batch: false,
        reconsume_times,
        max_reconsume_times,
    })
}

/// Prepares a batch (SEND_BATCH_MESSAGE): every message of one topic and one `WAIT` setting,
/// none delayed or bound for a retry topic; each gets its own `UNIQ_KEY`; the batch itself gets
/// another one (only in the header, never copied into the messages). Batches are not
/// compressed.
pub fn prepare_batch(
    msgs: &mut [Message],
    namespace: Option<&str>,
    opts: &WireOptions,
    mut uniq_id: impl FnMut() -> String,
) -> Result<PreparedMessage> {
    let Some(first) = msgs.first() else {
        return Err(ClientError::InvalidArgument(
            "a batch needs at least one message".into(),
        ));
    };
    let topic = first.topic().to_owned();
    let wait = first.wait_store_msg_ok();
    for m in msgs.iter() {
        if m.delay_level() > 0 {
            return Err(ClientError::InvalidArgument(
                "a delay level is not supported for batched messages".into(),
            ));
        }
        if namespace::is_retry_topic(m.topic()) {
            return Err(ClientError::InvalidArgument(
                "retry topics are not supported for batched messages".into(),
            ));
        }
        if m.topic() != topic {
            return Err(ClientError::InvalidArgument(
                "all messages of a batch must have the same topic".into(),
            ));
        }
        if m.wait_store_msg_ok() != wait {
            return Err(ClientError::InvalidArgument(
                "all messages of a batch must have the same waitStoreMsgOK".into(),
            ));
        }
        check_topic_and_body(m, opts)?;
    }
    let mut entries = Vec::with_capacity(msgs.len());
    let mut ids = Vec::with_capacity(msgs.len());
    for m in msgs.iter_mut() {
        if m.uniq_key().is_none_or(str::is_empty) {
            m.properties_mut().set_uniq_key(uniq_id());
        }
        ids.push(m.uniq_key().unwrap_or_default().to_owned());
        entries.push(BatchEntry::new(m.flag(), m.body().clone(), m.properties()));
    }
    let len = encoded_batch_len(&entries);
    if len > opts.max_message_bytes {
        return Err(ClientError::InvalidArgument(format!(
            "the batch size {len} exceeds the maximum {} bytes",
            opts.max_message_bytes
        )));
    }
    let mut body = BytesMut::with_capacity(len);
    encode_batch(&entries, &mut body)?;
    let mut props = MessageProperties::new();
    props.insert(keys::WAIT, if wait { "true" } else { "false" });
    props.set_uniq_key(uniq_id());
    if let Some(ns) = namespace.filter(|ns| !ns.is_empty()) {
        props.insert(keys::INSTANCE_ID, ns);
    }
    Ok(PreparedMessage {
        user_topic: topic.clone(),
        wire_topic: namespace::wrap(namespace, &topic),
        body: body.freeze(),
        sys_flag: 0,
        flag: 0,
        properties: props.encode_to_string(),
        msg_id: ids.join(","),
        is_batch: true,
        reconsume_times: None,
        max_reconsume_times: None,
    })
}

/// The send header exactly as `DefaultMQProducerImpl.sendKernelImpl` fills it.
pub fn send_header(
    p: &PreparedMessage,
    producer_group: &str,
    mq: &MessageQueue,
    default_topic_queue_nums: i32,
    born_timestamp_ms: i64,
) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: producer_group.to_owned(),
        topic: p.wire_topic.clone(),
        default_topic: AUTO_CREATE_TOPIC_KEY_TOPIC.to_owned(),
        default_topic_queue_nums,
        queue_id: mq.queue_id,
        sys_flag: p.sys_flag,
        born_timestamp: born_timestamp_ms,
        flag: p.flag,
        properties: Some(p.properties.clone()),
        reconsume_times: Some(p.reconsume_times.unwrap_or(0)),
        unit_mode: Some(false),
        batch: Some(p.is_batch),
        max_reconsume_times: p.max_reconsume_times,
        broker_name: Some(mq.broker_name.clone()),
    }
}

/// The SEND_MESSAGE_V2 (or SEND_BATCH_MESSAGE) request with its one-letter header.
pub fn build_send_request(
    p: &PreparedMessage,
    producer_group: &str,
    mq: &MessageQueue,
    default_topic_queue_nums: i32,
    born_timestamp_ms: i64,
) -> RemotingCommand {
    let mut request = RemotingCommand::request(p.request_code()).with_body(p.body.clone());
    // What `send_header(..).write_ext_fields_v2(..)` writes, without the header's copies of the
    // strings: this runs on every send.
    let ext = &mut request.ext_fields;
    *ext = ExtFields::with_capacity(14);
    ext.insert_static("a", producer_group.to_owned());
    ext.insert_static("b", p.wire_topic.clone());
    ext.insert_static("c", AUTO_CREATE_TOPIC_KEY_TOPIC.to_owned());
    ext.insert_static("d", default_topic_queue_nums.to_string());
    ext.insert_static("e", mq.queue_id.to_string());
    ext.insert_static("f", p.sys_flag.to_string());
    ext.insert_static("g", born_timestamp_ms.to_string());
    ext.insert_static("h", p.flag.to_string());
    ext.insert_static("i", p.properties.clone());
    ext.insert_static("j", p.reconsume_times.unwrap_or(0).to_string());
    ext.insert_static("k", "false".to_owned());
    if let Some(max) = p.max_reconsume_times {
        ext.insert_static("l", max.to_string());
    }
    ext.insert_static("m", p.is_batch.to_string());
    ext.insert_static("n", mq.broker_name.clone());
    request
}

/// Reads a send answer as `MQClientAPIImpl.processSendResponse` does: SUCCESS and the three
/// "stored but" codes give a result, anything else is an error carrying code and remark.
pub fn process_send_response(
    response: &RemotingCommand,
    addr: &str,
    user_topic: &str,
    broker_name: &str,
    msg_id: &str,
) -> Result<SendResult> {
    let status = match response.code {
        response_code::SUCCESS => SendStatus::SendOk,
        response_code::FLUSH_DISK_TIMEOUT => SendStatus::FlushDiskTimeout,
        response_code::FLUSH_SLAVE_TIMEOUT => SendStatus::FlushSlaveTimeout,
        response_code::SLAVE_NOT_AVAILABLE => SendStatus::SlaveNotAvailable,
        code => return Err(ClientError::broker(code, response.remark.clone(), addr)),
    };
    let header: SendMessageResponseHeader = response.decode_header()?;
    let region_id = response
        .ext_fields
        .get(EXT_MSG_REGION)
        .filter(|r| !r.is_empty())
        .unwrap_or(DEFAULT_REGION_ID)
        .to_owned();
    let trace_on = response.ext_fields.get(EXT_TRACE_ON) != Some("false");
    Ok(SendResult {
        status,
        msg_id: msg_id.to_owned(),
        offset_msg_id: header.msg_id,
        queue: MessageQueue::new(user_topic, broker_name, header.queue_id),
        queue_offset: header.queue_offset,
        transaction_id: header.transaction_id,
        region_id,
        trace_on,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_protocol::message::batch::decode_batch;

    const UNIQ: &str = "0A0000050F8A3FE2B3B9000000000001";

    fn fixed_id() -> String {
        UNIQ.to_owned()
    }

    fn mq() -> MessageQueue {
        MessageQueue::new("TopicTest", "broker-a", 2)
    }

    /// The extFields in the order a reader would list them.
    fn ext(req: &RemotingCommand) -> Vec<(String, String)> {
        req.ext_fields
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn send_v2_ext_fields_are_exactly_what_a_java_producer_writes() {
        let mut msg = Message::new("TopicTest", "Hello")
            .with_tags("TagA")
            .with_key("order-1");
        let p = prepare_message(&mut msg, None, &WireOptions::default(), fixed_id).unwrap();
        let req = build_send_request(&p, "ProducerGroupName", &mq(), 4, 1_700_000_000_123);
        assert_eq!(req.code, 310);
        assert_eq!(&req.body[..], b"Hello");
        let props = "WAIT\u{1}true\u{2}TAGS\u{1}TagA\u{2}KEYS\u{1}order-1\u{2}UNIQ_KEY\u{1}0A0000050F8A3FE2B3B9000000000001\u{2}";
        assert_eq!(
            ext(&req),
            pairs(&[
                ("a", "ProducerGroupName"),
                ("b", "TopicTest"),
                ("c", "TBW102"),
                ("d", "4"),
                ("e", "2"),
                ("f", "0"),
                ("g", "1700000000123"),
                ("h", "0"),
                ("i", props),
                ("j", "0"),
                ("k", "false"),
                ("m", "false"),
                ("n", "broker-a"),
            ])
        );
    }

    #[test]
    fn the_direct_v2_fields_equal_the_send_header_written_as_v2() {
        let mut plain = Message::new("TopicTest", "Hello").with_tags("TagA");
        let plain =
            prepare_message(&mut plain, Some("ns1"), &WireOptions::default(), fixed_id).unwrap();
        let mut retry = plain.clone();
        retry.reconsume_times = Some(3);
        retry.max_reconsume_times = Some(16);
        retry.sys_flag = 4;
        retry.flag = 7;
        let mut batch = plain.clone();
        batch.is_batch = true;
        for p in [plain, retry, batch] {
            let req = build_send_request(&p, "G", &mq(), 8, 1_700_000_000_123);
            let mut expected = ExtFields::new();
            send_header(&p, "G", &mq(), 8, 1_700_000_000_123).write_ext_fields_v2(&mut expected);
            assert_eq!(req.ext_fields, expected);
            assert_eq!(req.code, p.request_code());
        }
    }

    #[test]
    fn large_bodies_are_zlib_compressed_with_sysflag_769() {
        let body = vec![b'x'; 5000];
        let mut msg = Message::new("TopicTest", body.clone());
        let p = prepare_message(&mut msg, None, &WireOptions::default(), fixed_id).unwrap();
        assert_eq!(p.sys_flag, 769);
        let req = build_send_request(&p, "G", &mq(), 4, 1);
        assert_eq!(req.ext_fields.get("f"), Some("769"));
        let inflated = CompressionType::Zlib
            .decompress(&req.body, 1 << 20)
            .unwrap();
        assert_eq!(inflated, body);
        // 4095 bytes stay as they are.
        let mut small = Message::new("TopicTest", vec![b'x'; 4095]);
        let p = prepare_message(&mut small, None, &WireOptions::default(), fixed_id).unwrap();
        assert_eq!(p.sys_flag, 0);
        assert_eq!(p.body.len(), 4095);
    }

    #[test]
    fn half_messages_carry_the_prepared_transaction_bit() {
        let mut msg = Message::new("T", "x")
            .with_property(keys::TRAN_MSG, "true")
            .with_property(keys::PGROUP, "G");
        let p = prepare_message(&mut msg, None, &WireOptions::default(), fixed_id).unwrap();
        assert_eq!(p.sys_flag, sysflag::TRANSACTION_PREPARED_TYPE);
    }

    #[test]
    fn uniq_key_is_assigned_once_and_kept_for_retries() {
        let mut msg = Message::new("T", "x");
        let a = prepare_message(&mut msg, None, &WireOptions::default(), fixed_id).unwrap();
        let b = prepare_message(&mut msg, None, &WireOptions::default(), || {
            panic!("a message with a UNIQ_KEY must not get another")
        })
        .unwrap();
        assert_eq!(a.msg_id, UNIQ);
        assert_eq!(b.msg_id, UNIQ);
    }

    #[test]
    fn namespace_wraps_the_topic_and_stamps_instance_id() {
        let mut msg = Message::new("TopicTest", "x");
        let p = prepare_message(&mut msg, Some("ns1"), &WireOptions::default(), fixed_id).unwrap();
        assert_eq!(p.wire_topic, "ns1%TopicTest");
        assert_eq!(p.user_topic, "TopicTest");
        assert!(p.properties.contains("INSTANCE_ID\u{1}ns1\u{2}"));
        // The user's message keeps its own topic.
        assert_eq!(msg.topic(), "TopicTest");
    }

    #[test]
    fn retry_topic_sends_move_reconsume_counts_into_the_header() {
        let mut msg = Message::new("%RETRY%G", "x")
            .with_property(keys::RECONSUME_TIME, "3")
            .with_property(keys::MAX_RECONSUME_TIMES, "16");
        let p = prepare_message(&mut msg, None, &WireOptions::default(), fixed_id).unwrap();
        let req = build_send_request(&p, "G", &mq(), 4, 1);
        assert_eq!(req.ext_fields.get("j"), Some("3"));
        assert_eq!(req.ext_fields.get("l"), Some("16"));
        assert!(!p.properties.contains("RECONSUME_TIME"));
    }

    #[test]
    fn invalid_messages_are_refused_before_sending() {
        let opts = WireOptions::default();
        assert!(prepare_message(&mut Message::new("", "x"), None, &opts, fixed_id).is_err());
        assert!(prepare_message(&mut Message::new("T", ""), None, &opts, fixed_id).is_err());
        assert!(
            prepare_message(&mut Message::new("bad topic", "x"), None, &opts, fixed_id).is_err()
        );
        let big = vec![0u8; opts.max_message_bytes + 1];
        assert!(prepare_message(&mut Message::new("T", big), None, &opts, fixed_id).is_err());
    }

    #[test]
    fn batch_body_holds_each_message_with_its_own_uniq_key() {
        let mut n = 0;
        let mut ids = || {
            n += 1;
            format!("ID{n}")
        };
        let mut msgs = vec![
            Message::new("T", "one").with_tags("A"),
            Message::new("T", "two").with_flag(5),
        ];
        let p = prepare_batch(&mut msgs, None, &WireOptions::default(), &mut ids).unwrap();
        assert!(p.is_batch);
        assert_eq!(p.msg_id, "ID1,ID2");
        let req = build_send_request(&p, "G", &mq(), 4, 1);
        assert_eq!(req.code, 320);
        assert_eq!(req.ext_fields.get("m"), Some("true"));
        assert_eq!(
            req.ext_fields.get("i"),
            Some("WAIT\u{1}true\u{2}UNIQ_KEY\u{1}ID3\u{2}")
        );
        let entries = decode_batch(&req.body).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(&entries[0].body[..], b"one");
        assert_eq!(entries[0].property(keys::UNIQ_KEY).as_deref(), Some("ID1"));
        assert_eq!(entries[0].property(keys::TAGS).as_deref(), Some("A"));
        assert_eq!(entries[1].flag, 5);
        assert_eq!(entries[1].property(keys::UNIQ_KEY).as_deref(), Some("ID2"));
    }

    #[test]
    fn batches_refuse_mixed_topics_delays_and_retry_topics() {
        let opts = WireOptions::default();
        let mut mixed = vec![Message::new("A", "x"), Message::new("B", "x")];
        assert!(prepare_batch(&mut mixed, None, &opts, fixed_id).is_err());
        let mut delayed = vec![Message::new("A", "x").with_delay_level(2)];
        assert!(prepare_batch(&mut delayed, None, &opts, fixed_id).is_err());
        let mut retry = vec![Message::new("%RETRY%G", "x")];
        assert!(prepare_batch(&mut retry, None, &opts, fixed_id).is_err());
        assert!(prepare_batch(&mut [], None, &opts, fixed_id).is_err());
    }

    fn send_response(code: i32) -> RemotingCommand {
        let header = SendMessageResponseHeader {
            msg_id: "0A00000100002A9F0000000000001234".into(),
            queue_id: 2,
            queue_offset: 77,
            transaction_id: Some(UNIQ.into()),
            ..Default::default()
        };
        let mut r = RemotingCommand::response(code, None).with_header(&header);
        r.ext_fields.insert("MSG_REGION", "RegionA");
        r.ext_fields.insert("TRACE_ON", "false");
        r
    }

    #[test]
    fn stored_codes_map_to_send_statuses() {
        let table = [
            (0, SendStatus::SendOk),
            (10, SendStatus::FlushDiskTimeout),
            (12, SendStatus::FlushSlaveTimeout),
            (11, SendStatus::SlaveNotAvailable),
        ];
        for (code, status) in table {
            let r =
                process_send_response(&send_response(code), "addr", "T", "broker-a", UNIQ).unwrap();
            assert_eq!(r.status, status);
            assert_eq!(r.msg_id, UNIQ);
            assert_eq!(r.offset_msg_id, "0A00000100002A9F0000000000001234");
            assert_eq!(r.queue, MessageQueue::new("T", "broker-a", 2));
            assert_eq!(r.queue_offset, 77);
            assert_eq!(r.transaction_id.as_deref(), Some(UNIQ));
            assert_eq!(r.region_id, "RegionA");
            assert!(!r.trace_on);
        }
    }

    #[test]
    fn failure_codes_become_errors_with_code_and_remark() {
        let resp = RemotingCommand::response(13, Some("message illegal".into()));
        let e = process_send_response(&resp, "1.2.3.4:10911", "T", "b", UNIQ).unwrap_err();
        match e {
            ClientError::Broker { code, remark, addr } => {
                assert_eq!(code, 13);
                assert_eq!(remark, "message illegal");
                assert_eq!(addr, "1.2.3.4:10911");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn missing_region_defaults_and_trace_is_on_unless_false() {
        let header = SendMessageResponseHeader {
            msg_id: "X".into(),
            ..Default::default()
        };
        let resp = RemotingCommand::response(0, None).with_header(&header);
        let r = process_send_response(&resp, "a", "T", "b", UNIQ).unwrap();
        assert_eq!(r.region_id, DEFAULT_REGION_ID);
        assert!(r.trace_on);
    }
}
