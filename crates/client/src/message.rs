//! What users send and receive: [`Message`] (topic, tags, keys, properties, body), the
//! [`MessageExt`] a consumer gets back (decoded from a stored record, body decompressed), and
//! the [`SendResult`] of a send.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use apogee_protocol::body::MessageQueue;
use apogee_protocol::message::compression::decompress_body;
use apogee_protocol::message::properties::split_keys;
use apogee_protocol::message::sysflag;
use apogee_protocol::message::{keys, MessageProperties, RecordView};
use apogee_protocol::ProtocolError;
use bytes::Bytes;

/// Largest body a consumer inflates a compressed message to. A compressed body can legally
/// expand beyond the 4 MiB send limit only by a hostile or broken producer; the cap keeps one
/// such message from exhausting memory.
pub const MAX_DECOMPRESSED_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A message to send.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    topic: String,
    flag: i32,
    properties: MessageProperties,
    body: Bytes,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("flag", &self.flag)
            .field("properties", &self.properties)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Message {
    /// A message for `topic`. Like Java's constructors it asks the broker to confirm only once
    /// the message is stored (`WAIT=true`).
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        let mut properties = MessageProperties::new();
        properties.insert(keys::WAIT, "true");
        Self {
            topic: topic.into(),
            flag: 0,
            properties,
            body: body.into(),
        }
    }

    /// Sets the tag (`TAGS`), which consumers filter on.
    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        self.properties.set_tags(tags);
        self
    }

    /// Sets the business keys (`KEYS`, space-separated), which the broker indexes.
    pub fn with_keys<I, S>(mut self, message_keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.properties.set_keys(message_keys);
        self
    }

    /// Sets one business key.
    pub fn with_key(self, key: impl AsRef<str>) -> Self {
        self.with_keys([key])
    }

    /// Sets a user property. Names and values must not contain the separator characters
    /// `\u{1}` and `\u{2}`.
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name, value);
        self
    }

    /// Delays delivery by one of the broker's levels (1 = 1 s, 2 = 5 s, ... 18 = 2 h); 0 clears.
    pub fn with_delay_level(mut self, level: i32) -> Self {
        self.set_delay_level(level);
        self
    }

    /// The user flag stored with the message.
    pub fn with_flag(mut self, flag: i32) -> Self {
        self.flag = flag;
        self
    }

    /// Whether the broker answers only once the message is stored (and flushed or replicated
    /// when the broker is configured so). Default true.
    pub fn with_wait_store_msg_ok(mut self, wait: bool) -> Self {
        self.properties
            .insert(keys::WAIT, if wait { "true" } else { "false" });
        self
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn set_topic(&mut self, topic: impl Into<String>) {
        self.topic = topic.into();
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    pub fn set_body(&mut self, body: impl Into<Bytes>) {
        self.body = body.into();
    }

    pub fn flag(&self) -> i32 {
        self.flag
    }

    pub fn tags(&self) -> Option<&str> {
        self.properties.tags()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.properties.keys()
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name)
    }

    pub fn set_property(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.properties.insert(name, value);
    }

    pub fn remove_property(&mut self, name: &str) -> Option<String> {
        self.properties.remove(name)
    }

    pub fn properties(&self) -> &MessageProperties {
        &self.properties
    }

    /// The delay level, 0 when none.
    pub fn delay_level(&self) -> i32 {
        self.properties
            .get(keys::DELAY)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn set_delay_level(&mut self, level: i32) {
        if level > 0 {
            self.properties.insert(keys::DELAY, level.to_string());
        } else {
            self.properties.remove(keys::DELAY);
        }
    }

    pub fn wait_store_msg_ok(&self) -> bool {
        self.properties.get(keys::WAIT) != Some("false")
    }

    /// The client-made unique id (`UNIQ_KEY`), set when the message is sent.
    pub fn uniq_key(&self) -> Option<&str> {
        self.properties.uniq_key()
    }

    /// The transaction id (the `UNIQ_KEY` of a half message), set by a transactional send.
    pub fn transaction_id(&self) -> Option<&str> {
        self.properties
            .get(keys::TRANSACTION_ID)
            .or_else(|| self.properties.uniq_key())
    }

    pub(crate) fn properties_mut(&mut self) -> &mut MessageProperties {
        &mut self.properties
    }
}

/// A received message: every field of the stored record, the properties, and the body already
/// decompressed.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageExt {
    /// The topic (without the consumer's namespace).
    pub topic: String,
    pub flag: i32,
    pub properties: MessageProperties,
    /// The body, decompressed when the producer compressed it.
    pub body: Bytes,
    /// The broker the message was read from.
    pub broker_name: String,
    pub queue_id: i32,
    /// Bytes of the stored record.
    pub store_size: i32,
    /// Logical offset in its queue.
    pub queue_offset: i64,
    /// The record's sysflag, with the compressed bit cleared once the body is inflated.
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    /// The user-visible id: `UNIQ_KEY` when the producer set one, else the offset id.
    pub msg_id: String,
    /// The broker-made id (store host + commit-log offset, 32 or 56 hex characters).
    pub offset_msg_id: String,
    /// Physical offset of the record in the broker's CommitLog.
    pub commit_log_offset: i64,
    pub body_crc: u32,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    /// Set for half messages (the `UNIQ_KEY`).
    pub transaction_id: Option<String>,
}

impl fmt::Debug for MessageExt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageExt")
            .field("topic", &self.topic)
            .field("broker_name", &self.broker_name)
            .field("queue_id", &self.queue_id)
            .field("queue_offset", &self.queue_offset)
            .field("msg_id", &self.msg_id)
            .field("offset_msg_id", &self.offset_msg_id)
            .field("properties", &self.properties)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Default for MessageExt {
    fn default() -> Self {
        let host = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        Self {
            topic: String::new(),
            flag: 0,
            properties: MessageProperties::new(),
            body: Bytes::new(),
            broker_name: String::new(),
            queue_id: 0,
            store_size: 0,
            queue_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: host,
            store_timestamp: 0,
            store_host: host,
            msg_id: String::new(),
            offset_msg_id: String::new(),
            commit_log_offset: 0,
            body_crc: 0,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            transaction_id: None,
        }
    }
}

impl MessageExt {
    /// Decodes the stored record at the start of `buf`; returns it and the record's size.
    /// A compressed body is inflated (at most [`MAX_DECOMPRESSED_BODY_BYTES`]).
    pub fn decode(buf: &[u8]) -> Result<(Self, usize), ProtocolError> {
        let view = RecordView::parse(buf)?;
        let msg = Self::from_view(&view, None)?;
        Ok((msg, view.total_size()))
    }

    /// `source` is the buffer `view` was parsed from, when the caller has it as `Bytes`: an
    /// uncompressed body is then a slice of it instead of a copy.
    fn from_view(view: &RecordView<'_>, source: Option<&Bytes>) -> Result<Self, ProtocolError> {
        let body = match decompress_body(view.body, view.sys_flag, MAX_DECOMPRESSED_BODY_BYTES)? {
            Cow::Borrowed(b) => match source {
                Some(src) if !b.is_empty() => src.slice_ref(b),
                _ => Bytes::copy_from_slice(b),
            },
            Cow::Owned(v) => Bytes::from(v),
        };
        let mut sys_flag = view.sys_flag;
        if sysflag::is_compressed(sys_flag) {
            sys_flag = sysflag::clear_compressed_flag(sys_flag);
        }
        let properties = view.properties_map();
        let offset_msg_id = view.offset_msg_id().to_string();
        let msg_id = properties
            .uniq_key()
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| offset_msg_id.clone());
        let transaction_id = match properties.get(keys::TRAN_MSG) {
            Some(v) if v.eq_ignore_ascii_case("true") => properties.uniq_key().map(str::to_owned),
            _ => None,
        };
        Ok(Self {
            topic: view.topic().into_owned(),
            flag: view.flag,
            body,
            broker_name: String::new(),
            queue_id: view.queue_id,
            store_size: i32::try_from(view.total_size()).unwrap_or(i32::MAX),
            queue_offset: view.queue_offset,
            sys_flag,
            born_timestamp: view.born_timestamp,
            born_host: view.born_host,
            store_timestamp: view.store_timestamp,
            store_host: view.store_host,
            msg_id,
            offset_msg_id,
            commit_log_offset: view.physical_offset,
            body_crc: view.body_crc,
            reconsume_times: view.reconsume_times,
            prepared_transaction_offset: view.prepared_transaction_offset,
            transaction_id,
            properties,
        })
    }

    /// Decodes records laid back to back (a pull or query reply body). Like Java's decoder it
    /// keeps the messages before the first record it cannot decode and reports that error
    /// alongside them instead of discarding everything.
    pub fn decode_all(body: &[u8]) -> (Vec<Self>, Option<ProtocolError>) {
        Self::decode_records(body, None)
    }

    /// [`decode_all`](Self::decode_all) for a body held as `Bytes` (a pull answer): the messages'
    /// uncompressed bodies share that buffer instead of being copied out of it.
    pub fn decode_all_shared(body: &Bytes) -> (Vec<Self>, Option<ProtocolError>) {
        Self::decode_records(body, Some(body))
    }

    fn decode_records(body: &[u8], source: Option<&Bytes>) -> (Vec<Self>, Option<ProtocolError>) {
        let mut out = Vec::new();
        for view in RecordView::iter(body) {
            match view.and_then(|v| Self::from_view(&v, source)) {
                Ok(msg) => out.push(msg),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    pub fn tags(&self) -> Option<&str> {
        self.properties.tags()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.properties
            .get(keys::KEYS)
            .into_iter()
            .flat_map(split_keys)
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name)
    }

    pub fn delay_level(&self) -> i32 {
        self.properties
            .get(keys::DELAY)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The queue this message came from.
    pub fn queue(&self) -> MessageQueue {
        MessageQueue::new(self.topic.clone(), self.broker_name.clone(), self.queue_id)
    }

    /// The message as one to send again (topic, flag, properties, body).
    pub fn to_message(&self) -> Message {
        Message {
            topic: self.topic.clone(),
            flag: self.flag,
            properties: self.properties.clone(),
            body: self.body.clone(),
        }
    }
}

/// The outcome a broker reported for a stored message. Anything else is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendStatus {
    /// Stored (and flushed/replicated when the broker waits for that).
    SendOk,
    /// Stored, but the synchronous flush did not finish in time.
    FlushDiskTimeout,
    /// Stored, but the slave did not confirm in time.
    FlushSlaveTimeout,
    /// Stored on the master; no slave is available to replicate to.
    SlaveNotAvailable,
}

impl SendStatus {
    /// Java's enum name.
    pub fn name(self) -> &'static str {
        match self {
            SendStatus::SendOk => "SEND_OK",
            SendStatus::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
            SendStatus::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
            SendStatus::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
        }
    }
}

impl fmt::Display for SendStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a successful send returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub status: SendStatus,
    /// The client-made id (`UNIQ_KEY`); for a batch, the ids joined with commas.
    pub msg_id: String,
    /// The broker-made id(s) (store host + commit-log offset).
    pub offset_msg_id: String,
    /// The queue the message went to (topic without namespace).
    pub queue: MessageQueue,
    /// The logical offset of the (first) message in its queue.
    pub queue_offset: i64,
    /// The transaction id the broker assigned (its `UNIQ_KEY`).
    pub transaction_id: Option<String>,
    /// The broker's region (`MSG_REGION`), `DefaultRegion` when absent.
    pub region_id: String,
    /// Whether the broker has message tracing on (`TRACE_ON`).
    pub trace_on: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_protocol::message::compression::CompressionType;
    use apogee_protocol::message::MessageRecord;

    fn record(body: &[u8], sys_flag: i32, props: &MessageProperties) -> MessageRecord {
        let mut r = MessageRecord::new("TopicTest", Bytes::copy_from_slice(body), props.to_bytes());
        r.sys_flag = sys_flag;
        r.queue_id = 3;
        r.queue_offset = 42;
        r.physical_offset = 0x1234;
        r.flag = 7;
        r.born_timestamp = 1_700_000_000_000;
        r.store_timestamp = 1_700_000_000_005;
        r.born_host = "10.0.0.5:50000".parse().unwrap();
        r.store_host = "10.0.0.1:10911".parse().unwrap();
        r.reconsume_times = 2;
        r
    }

    #[test]
    fn message_new_asks_the_broker_to_wait_for_storage() {
        let m = Message::new("T", "x");
        assert_eq!(m.property(keys::WAIT), Some("true"));
        assert!(m.wait_store_msg_ok());
        assert!(!m.clone().with_wait_store_msg_ok(false).wait_store_msg_ok());
    }

    #[test]
    fn message_builders_set_the_well_known_properties() {
        let m = Message::new("T", "x")
            .with_tags("TagA")
            .with_keys(["k1", "k2"])
            .with_delay_level(3)
            .with_property("color", "red");
        assert_eq!(m.tags(), Some("TagA"));
        assert_eq!(m.property(keys::KEYS), Some("k1 k2"));
        assert_eq!(m.keys().collect::<Vec<_>>(), vec!["k1", "k2"]);
        assert_eq!(m.delay_level(), 3);
        assert_eq!(m.property("color"), Some("red"));
        assert_eq!(m.with_delay_level(0).delay_level(), 0);
    }

    #[test]
    fn decodes_every_field_of_a_stored_record() {
        let mut props = MessageProperties::new();
        props.set_tags("TagA");
        props.insert(keys::KEYS, "order-1 order-2");
        props.set_uniq_key("0A000005C35000000000000000000001");
        let rec = record(b"hello", 0, &props);
        let bytes = rec.encode().unwrap();
        let (m, size) = MessageExt::decode(&bytes).unwrap();
        assert_eq!(size, bytes.len());
        assert_eq!(m.store_size as usize, bytes.len());
        assert_eq!(m.topic, "TopicTest");
        assert_eq!(&m.body[..], b"hello");
        assert_eq!(m.queue_id, 3);
        assert_eq!(m.queue_offset, 42);
        assert_eq!(m.commit_log_offset, 0x1234);
        assert_eq!(m.flag, 7);
        assert_eq!(m.reconsume_times, 2);
        assert_eq!(m.born_timestamp, 1_700_000_000_000);
        assert_eq!(m.store_timestamp, 1_700_000_000_005);
        assert_eq!(m.born_host, "10.0.0.5:50000".parse().unwrap());
        assert_eq!(m.tags(), Some("TagA"));
        assert_eq!(m.keys().collect::<Vec<_>>(), vec!["order-1", "order-2"]);
        assert_eq!(m.msg_id, "0A000005C35000000000000000000001");
        // store host 10.0.0.1, port 10911 = 0x2A9F, offset 0x1234.
        assert_eq!(m.offset_msg_id, "0A00000100002A9F0000000000001234");
        assert_eq!(m.transaction_id, None);
    }

    #[test]
    fn msg_id_falls_back_to_the_offset_id_without_uniq_key() {
        let rec = record(b"x", 0, &MessageProperties::new());
        let (m, _) = MessageExt::decode(&rec.encode().unwrap()).unwrap();
        assert_eq!(m.msg_id, m.offset_msg_id);
    }

    #[test]
    fn compressed_bodies_are_inflated_and_the_flag_cleared() {
        let plain: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for ty in [
            CompressionType::Zlib,
            CompressionType::Lz4,
            CompressionType::Zstd,
        ] {
            let compressed = ty.compress(&plain, 5).unwrap();
            let flag = sysflag::with_compression(0, ty);
            let rec = record(&compressed, flag, &MessageProperties::new());
            let (m, _) = MessageExt::decode(&rec.encode().unwrap()).unwrap();
            assert_eq!(&m.body[..], &plain[..], "{ty}");
            assert!(!sysflag::is_compressed(m.sys_flag), "{ty}");
        }
        // Legacy producers set only bit 0: that means ZLIB.
        let compressed = CompressionType::Zlib.compress(&plain, 5).unwrap();
        let rec = record(
            &compressed,
            sysflag::COMPRESSED_FLAG,
            &MessageProperties::new(),
        );
        let (m, _) = MessageExt::decode(&rec.encode().unwrap()).unwrap();
        assert_eq!(&m.body[..], &plain[..]);
    }

    #[test]
    fn half_messages_carry_their_transaction_id() {
        let mut props = MessageProperties::new();
        props.insert(keys::TRAN_MSG, "true");
        props.set_uniq_key("ABC");
        let rec = record(b"x", 0, &props);
        let (m, _) = MessageExt::decode(&rec.encode().unwrap()).unwrap();
        assert_eq!(m.transaction_id.as_deref(), Some("ABC"));
    }

    #[test]
    fn decode_all_keeps_the_messages_before_a_corrupt_record() {
        let a = record(b"a", 0, &MessageProperties::new()).encode().unwrap();
        let b = record(b"b", 0, &MessageProperties::new()).encode().unwrap();
        let mut buf = Vec::new();
        buf.extend_from_slice(&a);
        buf.extend_from_slice(&b);
        let (all, err) = MessageExt::decode_all(&buf);
        assert_eq!(all.len(), 2);
        assert!(err.is_none());
        buf.extend_from_slice(&a[..20]);
        let (some, err) = MessageExt::decode_all(&buf);
        assert_eq!(some.len(), 2);
        assert!(err.is_some());
    }

    #[test]
    fn shared_decoding_slices_bodies_out_of_the_answer_and_matches_the_copying_decoder() {
        let a = record(b"first body", 0, &MessageProperties::new())
            .encode()
            .unwrap();
        let b = record(b"second", 0, &MessageProperties::new())
            .encode()
            .unwrap();
        let mut buf = Vec::new();
        buf.extend_from_slice(&a);
        buf.extend_from_slice(&b);
        buf.extend_from_slice(&a[..20]);
        let buf = Bytes::from(buf);
        let (copied, e1) = MessageExt::decode_all(&buf);
        let (shared, e2) = MessageExt::decode_all_shared(&buf);
        assert_eq!(copied, shared);
        assert_eq!(e1.is_some(), e2.is_some());
        let range = buf.as_ptr_range();
        for m in &shared {
            assert!(
                range.contains(&m.body.as_ptr()),
                "body is a slice of the answer"
            );
        }
    }

    #[test]
    fn decoding_every_truncation_of_a_record_fails_without_panicking() {
        let bytes = record(b"hello", 0, &MessageProperties::new())
            .encode()
            .unwrap();
        for cut in 0..bytes.len() {
            assert!(MessageExt::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_corrupt_compressed_body_is_an_error() {
        let rec = record(
            b"not zlib at all",
            sysflag::with_compression(0, CompressionType::Zlib),
            &MessageProperties::new(),
        );
        assert!(MessageExt::decode(&rec.encode().unwrap()).is_err());
    }
}
