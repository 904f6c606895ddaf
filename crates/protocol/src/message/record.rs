//! The stored message record ("MessageExt" layout, reference §3.1), big-endian:
//!
//! ```text
//! TOTALSIZE i32 | MAGICCODE u32 | BODYCRC u32 | QUEUEID i32 | FLAG i32 | QUEUEOFFSET i64 |
//! PHYSICALOFFSET i64 | SYSFLAG i32 | BORNTIMESTAMP i64 | BORNHOST 4+4 or 16+4 |
//! STORETIMESTAMP i64 | STOREHOST 4+4 or 16+4 | RECONSUMETIMES i32 | PREPAREDTRANSACTIONOFFSET i64 |
//! BODYLEN i32 + BODY | TOPICLEN (V1: i8, V2: i16) + TOPIC | PROPERTIESLEN i16 + PROPERTIES
//! ```
//!
//! The same bytes are appended to the CommitLog and sent back in pull, pop, query and view replies,
//! so the store builds a record once ([`MessageRecord::encode_into`]), patches QUEUEOFFSET,
//! PHYSICALOFFSET and STORETIMESTAMP in place under its lock ([`patch_queue_offset`] and friends),
//! and later reads it back without copying ([`RecordView`]).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ProtocolError, Result};
use crate::message::crc32_masked;
use crate::message::hash::tags_code;
use crate::message::id::OffsetMsgId;
use crate::message::properties::{self, keys, MessageProperties};
use crate::message::sysflag;

/// MAGICCODE of a V1 record (−626843481 as a Java int).
pub const MAGIC_CODE_V1: u32 = 0xDAA3_20A7;
/// MAGICCODE of a V2 record (2-byte topic length; 5.1+ stores use it for topics over 127 bytes).
pub const MAGIC_CODE_V2: u32 = 0xDAA3_20AB;
/// MAGICCODE of the end-of-file blank record (−875286124 as a Java int).
pub const BLANK_MAGIC_CODE: u32 = 0xCBD4_3194;
/// Bytes a blank record writes (TOTALSIZE + MAGICCODE); the rest of the file is left as is.
pub const BLANK_RECORD_LEN: usize = 8;

pub const TOTAL_SIZE_POSITION: usize = 0;
pub const MAGIC_CODE_POSITION: usize = 4;
pub const BODY_CRC_POSITION: usize = 8;
pub const QUEUE_ID_POSITION: usize = 12;
pub const FLAG_POSITION: usize = 16;
pub const QUEUE_OFFSET_POSITION: usize = 20;
pub const PHYSICAL_OFFSET_POSITION: usize = 28;
pub const SYS_FLAG_POSITION: usize = 36;
pub const BORN_TIMESTAMP_POSITION: usize = 40;
pub const BORN_HOST_POSITION: usize = 48;
/// STORETIMESTAMP position when the born host is IPv4; see [`store_timestamp_position`].
pub const STORE_TIMESTAMP_POSITION_IPV4: usize = 56;
/// BODYLEN position when both hosts are IPv4 (Java's `BODY_SIZE_POSITION`).
pub const BODY_LENGTH_POSITION_IPV4: usize = 84;

/// Length of an encoded host: 4 address bytes + 4 port bytes.
pub const IPV4_HOST_LEN: usize = 8;
/// Length of an encoded host: 16 address bytes + 4 port bytes.
pub const IPV6_HOST_LEN: usize = 20;
/// The smallest record: V1, IPv4 hosts, empty body, topic and properties.
pub const MIN_RECORD_LEN: usize = 91;
pub const MAX_TOPIC_LEN_V1: usize = i8::MAX as usize;
pub const MAX_TOPIC_LEN_V2: usize = i16::MAX as usize;
/// PROPERTIESLEN is a signed short (`PROPERTIES_SIZE_EXCEEDED` above it).
pub const MAX_PROPERTIES_LEN: usize = i16::MAX as usize;

/// Encoded length of BORNHOST for a record with `sys_flag`.
pub const fn born_host_len(sys_flag: i32) -> usize {
    if sysflag::born_host_is_v6(sys_flag) {
        IPV6_HOST_LEN
    } else {
        IPV4_HOST_LEN
    }
}

/// Encoded length of STOREHOST for a record with `sys_flag`.
pub const fn store_host_len(sys_flag: i32) -> usize {
    if sysflag::store_host_is_v6(sys_flag) {
        IPV6_HOST_LEN
    } else {
        IPV4_HOST_LEN
    }
}

pub const fn store_timestamp_position(sys_flag: i32) -> usize {
    BORN_HOST_POSITION + born_host_len(sys_flag)
}

pub const fn store_host_position(sys_flag: i32) -> usize {
    store_timestamp_position(sys_flag) + 8
}

pub const fn reconsume_times_position(sys_flag: i32) -> usize {
    store_host_position(sys_flag) + store_host_len(sys_flag)
}

pub const fn prepared_transaction_offset_position(sys_flag: i32) -> usize {
    reconsume_times_position(sys_flag) + 4
}

pub const fn body_length_position(sys_flag: i32) -> usize {
    prepared_transaction_offset_position(sys_flag) + 8
}

/// Record format version, told apart by MAGICCODE. It only changes the TOPICLEN field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MessageVersion {
    /// 1-byte signed topic length; what every client can read.
    #[default]
    V1,
    /// 2-byte topic length; Java clients cannot decode it, so only for topics over 127 bytes.
    V2,
}

impl MessageVersion {
    pub const fn magic_code(self) -> u32 {
        match self {
            MessageVersion::V1 => MAGIC_CODE_V1,
            MessageVersion::V2 => MAGIC_CODE_V2,
        }
    }

    pub const fn from_magic_code(magic: u32) -> Option<Self> {
        match magic {
            MAGIC_CODE_V1 => Some(MessageVersion::V1),
            MAGIC_CODE_V2 => Some(MessageVersion::V2),
            _ => None,
        }
    }

    /// Bytes of the TOPICLEN field.
    pub const fn topic_length_size(self) -> usize {
        match self {
            MessageVersion::V1 => 1,
            MessageVersion::V2 => 2,
        }
    }

    pub const fn max_topic_len(self) -> usize {
        match self {
            MessageVersion::V1 => MAX_TOPIC_LEN_V1,
            MessageVersion::V2 => MAX_TOPIC_LEN_V2,
        }
    }

    /// The version a store writes for a topic of `topic_len` bytes (`autoMessageVersionOnTopicLen`).
    pub const fn for_topic_len(topic_len: usize) -> Self {
        if topic_len <= MAX_TOPIC_LEN_V1 {
            MessageVersion::V1
        } else {
            MessageVersion::V2
        }
    }
}

/// Length of a record with these parts.
pub const fn record_len(
    version: MessageVersion,
    born_host_v6: bool,
    store_host_v6: bool,
    body_len: usize,
    topic_len: usize,
    properties_len: usize,
) -> usize {
    let born = if born_host_v6 {
        IPV6_HOST_LEN
    } else {
        IPV4_HOST_LEN
    };
    let store = if store_host_v6 {
        IPV6_HOST_LEN
    } else {
        IPV4_HOST_LEN
    };
    MIN_RECORD_LEN - 2 * IPV4_HOST_LEN - 1
        + born
        + store
        + version.topic_length_size()
        + body_len
        + topic_len
        + properties_len
}

fn host_sys_flag_bits(born_host: &SocketAddr, store_host: &SocketAddr) -> i32 {
    let mut bits = 0;
    if born_host.is_ipv6() {
        bits |= sysflag::BORNHOST_V6_FLAG;
    }
    if store_host.is_ipv6() {
        bits |= sysflag::STOREHOSTADDRESS_V6_FLAG;
    }
    bits
}

fn put_host<B: BufMut>(buf: &mut B, host: &SocketAddr) {
    match host {
        SocketAddr::V4(a) => buf.put_slice(&a.ip().octets()),
        SocketAddr::V6(a) => buf.put_slice(&a.ip().octets()),
    }
    buf.put_i32(i32::from(host.port()));
}

fn unspecified_host() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
}

/// The space-separated keys of a raw `KEYS` value, as text.
fn split_keys_lossy(value: &[u8]) -> impl Iterator<Item = Cow<'_, str>> {
    value
        .split(|&b| b == b' ')
        .filter(|k| !k.is_empty())
        .map(String::from_utf8_lossy)
}

/// One stored message with owned parts. `body` and `properties` are `Bytes`, so decoding from a
/// `Bytes` buffer ([`MessageRecord::decode_bytes`]) shares memory instead of copying.
///
/// Hosts are encoded as they are: an IPv4-mapped IPv6 peer address takes the 20-byte form. Pass
/// peer addresses through [`crate::message::id::normalize_host`] first, as Java would see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub version: MessageVersion,
    /// Masked CRC32 of `body` as stored (see [`crc32_masked`]); written as is by the encoder.
    pub body_crc: u32,
    pub queue_id: i32,
    /// The user flag.
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    /// The sysflag; its two host-family bits are rewritten from the hosts when encoding.
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    /// The body as stored (still compressed when `sys_flag` says so).
    pub body: Bytes,
    pub topic: String,
    /// The raw properties string (`name \u{1} value \u{2}` ...), UTF-8.
    pub properties: Bytes,
}

impl Default for MessageRecord {
    fn default() -> Self {
        Self {
            version: MessageVersion::V1,
            body_crc: 0,
            queue_id: 0,
            flag: 0,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: unspecified_host(),
            store_timestamp: 0,
            store_host: unspecified_host(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::new(),
            topic: String::new(),
            properties: Bytes::new(),
        }
    }
}

impl MessageRecord {
    /// A record for `topic` with the version its length calls for and a computed BODYCRC; every
    /// other field zero and both hosts `0.0.0.0:0`.
    pub fn new(topic: impl Into<String>, body: Bytes, properties: Bytes) -> Self {
        let topic = topic.into();
        Self {
            version: MessageVersion::for_topic_len(topic.len()),
            body_crc: crc32_masked(&body),
            body,
            topic,
            properties,
            ..Self::default()
        }
    }

    /// `sys_flag` with the host-family bits matching `born_host` and `store_host`: what is written.
    pub fn effective_sys_flag(&self) -> i32 {
        (self.sys_flag & !sysflag::HOST_V6_FLAGS)
            | host_sys_flag_bits(&self.born_host, &self.store_host)
    }

    /// Recomputes BODYCRC from the body.
    pub fn update_body_crc(&mut self) {
        self.body_crc = crc32_masked(&self.body);
    }

    pub fn body_crc_matches(&self) -> bool {
        self.body_crc == crc32_masked(&self.body)
    }

    /// Bytes [`MessageRecord::encode_into`] writes (TOTALSIZE).
    pub fn encoded_len(&self) -> usize {
        record_len(
            self.version,
            self.born_host.is_ipv6(),
            self.store_host.is_ipv6(),
            self.body.len(),
            self.topic.len(),
            self.properties.len(),
        )
    }

    fn check_encodable(&self) -> Result<usize> {
        if self.topic.len() > self.version.max_topic_len() {
            return Err(ProtocolError::InvalidRecord(format!(
                "topic of {} bytes does not fit a {:?} record (max {})",
                self.topic.len(),
                self.version,
                self.version.max_topic_len()
            )));
        }
        if self.properties.len() > MAX_PROPERTIES_LEN {
            return Err(ProtocolError::InvalidRecord(format!(
                "properties of {} bytes exceed {MAX_PROPERTIES_LEN}",
                self.properties.len()
            )));
        }
        let total = self.encoded_len();
        if total > i32::MAX as usize {
            return Err(ProtocolError::InvalidRecord(format!(
                "record of {total} bytes exceeds i32::MAX"
            )));
        }
        Ok(total)
    }

    /// Appends the record to `buf`. Fails, writing nothing, if the topic does not fit the version,
    /// the properties exceed 32767 bytes, the record exceeds `i32::MAX`, or `buf` lacks room.
    pub fn encode_into<B: BufMut>(&self, buf: &mut B) -> Result<()> {
        let total = self.check_encodable()?;
        if buf.remaining_mut() < total {
            return Err(ProtocolError::Truncated {
                what: "output buffer for a message record",
                needed: total - buf.remaining_mut(),
            });
        }
        buf.put_i32(total as i32);
        buf.put_u32(self.version.magic_code());
        buf.put_u32(self.body_crc);
        buf.put_i32(self.queue_id);
        buf.put_i32(self.flag);
        buf.put_i64(self.queue_offset);
        buf.put_i64(self.physical_offset);
        buf.put_i32(self.effective_sys_flag());
        buf.put_i64(self.born_timestamp);
        put_host(buf, &self.born_host);
        buf.put_i64(self.store_timestamp);
        put_host(buf, &self.store_host);
        buf.put_i32(self.reconsume_times);
        buf.put_i64(self.prepared_transaction_offset);
        buf.put_i32(self.body.len() as i32);
        buf.put_slice(&self.body);
        match self.version {
            MessageVersion::V1 => buf.put_u8(self.topic.len() as u8),
            MessageVersion::V2 => buf.put_u16(self.topic.len() as u16),
        }
        buf.put_slice(self.topic.as_bytes());
        buf.put_u16(self.properties.len() as u16);
        buf.put_slice(&self.properties);
        Ok(())
    }

    /// The record as a new buffer.
    pub fn encode(&self) -> Result<Bytes> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut buf)?;
        Ok(buf.freeze())
    }

    /// Decodes the record at the start of `buf`, copying its parts; returns it and TOTALSIZE.
    /// BODYCRC is not checked (see [`MessageRecord::decode_checked`]).
    pub fn decode(buf: &[u8]) -> Result<(Self, usize)> {
        let view = RecordView::parse(buf)?;
        Ok((view.to_record(), view.total_size()))
    }

    /// Like [`MessageRecord::decode`], also failing when BODYCRC does not match the body.
    pub fn decode_checked(buf: &[u8]) -> Result<(Self, usize)> {
        let view = RecordView::parse(buf)?;
        view.verify_body_crc()?;
        Ok((view.to_record(), view.total_size()))
    }

    /// Decodes the record at the start of `buf` without copying body or properties.
    pub fn decode_bytes(buf: &Bytes) -> Result<(Self, usize)> {
        let view = RecordView::parse(buf)?;
        Ok((view.record_sharing(buf), view.total_size()))
    }

    /// Iterates the records of a buffer holding several back to back (a pull or query body).
    pub fn decode_all(buf: &Bytes) -> Records {
        Records {
            buf: buf.clone(),
            pos: 0,
            failed: false,
        }
    }

    /// The properties parsed into a map.
    pub fn properties_map(&self) -> MessageProperties {
        MessageProperties::decode(&self.properties)
    }

    pub fn set_properties(&mut self, props: &MessageProperties) {
        self.properties = props.to_bytes();
    }

    /// One property, read from the raw string without parsing the others.
    pub fn property(&self, name: &str) -> Option<Cow<'_, str>> {
        properties::find_str(&self.properties, name)
    }

    pub fn tags(&self) -> Option<Cow<'_, str>> {
        self.property(keys::TAGS)
    }

    /// The keys of the `KEYS` property, split on spaces.
    pub fn keys(&self) -> impl Iterator<Item = Cow<'_, str>> {
        properties::find(&self.properties, keys::KEYS)
            .into_iter()
            .flat_map(split_keys_lossy)
    }

    pub fn uniq_key(&self) -> Option<Cow<'_, str>> {
        self.property(keys::UNIQ_KEY)
    }

    /// The consume-queue tag code: Java hash of `TAGS`, 0 without tags.
    pub fn tags_code(&self) -> i64 {
        tags_code(self.tags().as_deref())
    }

    /// The broker-made id of this record (store host + physical offset).
    pub fn offset_msg_id(&self) -> OffsetMsgId {
        OffsetMsgId::new(self.store_host, self.physical_offset)
    }
}

/// What the first 8 bytes of a CommitLog position hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordHead {
    Message {
        total_size: usize,
        version: MessageVersion,
    },
    /// End-of-file filler: skip `total_size` bytes, i.e. to the next file.
    Blank { total_size: usize },
}

impl RecordHead {
    pub fn total_size(&self) -> usize {
        match *self {
            RecordHead::Message { total_size, .. } | RecordHead::Blank { total_size } => total_size,
        }
    }
}

fn be_u32_at(buf: &[u8], pos: usize) -> Option<u32> {
    let bytes = buf.get(pos..pos.checked_add(4)?)?;
    let mut arr = [0u8; 4];
    arr.copy_from_slice(bytes);
    Some(u32::from_be_bytes(arr))
}

/// Reads TOTALSIZE and MAGICCODE only: the cheap first step of a recovery scan. Fails with
/// `Truncated` under 8 bytes and with `InvalidRecord` for an unknown magic or an impossible size.
/// It does not check that `buf` holds the whole record.
pub fn peek_record(buf: &[u8]) -> Result<RecordHead> {
    let (Some(total), Some(magic)) = (
        be_u32_at(buf, TOTAL_SIZE_POSITION),
        be_u32_at(buf, MAGIC_CODE_POSITION),
    ) else {
        return Err(ProtocolError::Truncated {
            what: "message record header",
            needed: BLANK_RECORD_LEN - buf.len().min(BLANK_RECORD_LEN),
        });
    };
    let total = total as i32;
    let min = match MessageVersion::from_magic_code(magic) {
        Some(version) => record_len(version, false, false, 0, 0, 0),
        None if magic == BLANK_MAGIC_CODE => BLANK_RECORD_LEN,
        None => {
            return Err(ProtocolError::InvalidRecord(format!(
                "unknown magic code {magic:#010X}"
            )));
        }
    };
    let total_size = usize::try_from(total)
        .ok()
        .filter(|&t| t >= min)
        .ok_or_else(|| {
            ProtocolError::InvalidRecord(format!("TOTALSIZE {total} is below the minimum {min}"))
        })?;
    Ok(match MessageVersion::from_magic_code(magic) {
        Some(version) => RecordHead::Message {
            total_size,
            version,
        },
        None => RecordHead::Blank { total_size },
    })
}

/// TOTALSIZE of the record or blank at the start of `buf` (see [`peek_record`]).
pub fn peek_total_size(buf: &[u8]) -> Result<usize> {
    peek_record(buf).map(|head| head.total_size())
}

/// The 8 bytes of an end-of-file blank record covering `total_size` bytes (the rest of the file).
pub fn blank_record(total_size: u32) -> [u8; BLANK_RECORD_LEN] {
    let mut out = [0u8; BLANK_RECORD_LEN];
    out[..4].copy_from_slice(&total_size.to_be_bytes());
    out[4..].copy_from_slice(&BLANK_MAGIC_CODE.to_be_bytes());
    out
}

/// Writes a blank record covering `remaining_bytes` (at least 8, at most `i32::MAX`) to `buf`.
pub fn encode_blank_into<B: BufMut>(buf: &mut B, remaining_bytes: usize) -> Result<()> {
    if !(BLANK_RECORD_LEN..=i32::MAX as usize).contains(&remaining_bytes) {
        return Err(ProtocolError::InvalidRecord(format!(
            "a blank record must cover 8..=i32::MAX bytes, not {remaining_bytes}"
        )));
    }
    if buf.remaining_mut() < BLANK_RECORD_LEN {
        return Err(ProtocolError::Truncated {
            what: "output buffer for a blank record",
            needed: BLANK_RECORD_LEN,
        });
    }
    buf.put_slice(&blank_record(remaining_bytes as u32));
    Ok(())
}

/// True if `buf` starts with an end-of-file blank record.
pub fn is_blank_record(buf: &[u8]) -> bool {
    matches!(peek_record(buf), Ok(RecordHead::Blank { .. }))
}

fn patch_at(record: &mut [u8], pos: usize, value: &[u8], field: &'static str) -> Result<()> {
    let len = record.len();
    let slot = record
        .get_mut(pos..pos + value.len())
        .ok_or(ProtocolError::Truncated {
            what: field,
            needed: (pos + value.len()).saturating_sub(len),
        })?;
    slot.copy_from_slice(value);
    Ok(())
}

/// Overwrites QUEUEOFFSET of an encoded record.
pub fn patch_queue_offset(record: &mut [u8], queue_offset: i64) -> Result<()> {
    patch_at(
        record,
        QUEUE_OFFSET_POSITION,
        &queue_offset.to_be_bytes(),
        "QUEUEOFFSET",
    )
}

/// Overwrites PHYSICALOFFSET of an encoded record.
pub fn patch_physical_offset(record: &mut [u8], physical_offset: i64) -> Result<()> {
    patch_at(
        record,
        PHYSICAL_OFFSET_POSITION,
        &physical_offset.to_be_bytes(),
        "PHYSICALOFFSET",
    )
}

/// Overwrites STORETIMESTAMP of an encoded record, found through the record's own SYSFLAG.
pub fn patch_store_timestamp(record: &mut [u8], store_timestamp_ms: i64) -> Result<()> {
    let sys_flag = be_u32_at(record, SYS_FLAG_POSITION).ok_or(ProtocolError::Truncated {
        what: "SYSFLAG",
        needed: (SYS_FLAG_POSITION + 4).saturating_sub(record.len()),
    })? as i32;
    patch_at(
        record,
        store_timestamp_position(sys_flag),
        &store_timestamp_ms.to_be_bytes(),
        "STORETIMESTAMP",
    )
}

/// Reads fields inside one record whose TOTALSIZE is already known to be available.
struct FieldReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> FieldReader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or_else(|| {
                ProtocolError::InvalidRecord(format!(
                    "{field} ({n} bytes at {}) runs past TOTALSIZE {}",
                    self.pos,
                    self.buf.len()
                ))
            })?;
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn i32(&mut self, field: &'static str) -> Result<i32> {
        self.array(field).map(i32::from_be_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32> {
        self.array(field).map(u32::from_be_bytes)
    }

    fn i64(&mut self, field: &'static str) -> Result<i64> {
        self.array(field).map(i64::from_be_bytes)
    }

    fn length(&mut self, size: usize, field: &'static str) -> Result<usize> {
        let value: i64 = match size {
            1 => i64::from(i8::from_be_bytes(self.array(field)?)),
            2 => i64::from(i16::from_be_bytes(self.array(field)?)),
            _ => i64::from(self.i32(field)?),
        };
        usize::try_from(value)
            .map_err(|_| ProtocolError::InvalidRecord(format!("negative {field} {value}")))
    }

    fn host(&mut self, v6: bool, field: &'static str) -> Result<SocketAddr> {
        let ip: IpAddr = if v6 {
            Ipv6Addr::from(self.array::<16>(field)?).into()
        } else {
            Ipv4Addr::from(self.array::<4>(field)?).into()
        };
        let port = self.i32(field)?;
        let port = u16::try_from(port).map_err(|_| {
            ProtocolError::InvalidRecord(format!("{field} port {port} out of range"))
        })?;
        Ok(SocketAddr::new(ip, port))
    }
}

/// A validated record borrowed from a buffer: every field decoded, body, topic and properties as
/// slices. Parsing costs a few reads and no allocation, which suits recovery scans, dispatch and
/// filtering pull results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    raw: &'a [u8],
    pub version: MessageVersion,
    pub body_crc: u32,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    pub topic: &'a [u8],
    pub properties: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// Parses the record at the start of `buf` (trailing bytes are ignored) and checks that the
    /// field lengths add up to TOTALSIZE. `Truncated` means `buf` ends inside the record; a blank
    /// record, bad magic, negative length or size mismatch is `InvalidRecord`.
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        let (total, version) = match peek_record(buf)? {
            RecordHead::Message {
                total_size,
                version,
            } => (total_size, version),
            RecordHead::Blank { .. } => {
                return Err(ProtocolError::InvalidRecord(
                    "end-of-file blank record, not a message".into(),
                ));
            }
        };
        let raw = buf.get(..total).ok_or(ProtocolError::Truncated {
            what: "message record",
            needed: total.saturating_sub(buf.len()),
        })?;
        let mut r = FieldReader {
            buf: raw,
            pos: BODY_CRC_POSITION,
        };
        let body_crc = r.u32("BODYCRC")?;
        let queue_id = r.i32("QUEUEID")?;
        let flag = r.i32("FLAG")?;
        let queue_offset = r.i64("QUEUEOFFSET")?;
        let physical_offset = r.i64("PHYSICALOFFSET")?;
        let sys_flag = r.i32("SYSFLAG")?;
        let born_timestamp = r.i64("BORNTIMESTAMP")?;
        let born_host = r.host(sysflag::born_host_is_v6(sys_flag), "BORNHOST")?;
        let store_timestamp = r.i64("STORETIMESTAMP")?;
        let store_host = r.host(sysflag::store_host_is_v6(sys_flag), "STOREHOST")?;
        let reconsume_times = r.i32("RECONSUMETIMES")?;
        let prepared_transaction_offset = r.i64("PREPAREDTRANSACTIONOFFSET")?;
        let body_len = r.length(4, "BODYLEN")?;
        let body = r.take(body_len, "BODY")?;
        let topic_len = r.length(version.topic_length_size(), "TOPICLEN")?;
        let topic = r.take(topic_len, "TOPIC")?;
        let properties_len = r.length(2, "PROPERTIESLEN")?;
        let properties = r.take(properties_len, "PROPERTIES")?;
        if r.pos != total {
            return Err(ProtocolError::InvalidRecord(format!(
                "TOTALSIZE {total} but the fields end at {}",
                r.pos
            )));
        }
        Ok(Self {
            raw,
            version,
            body_crc,
            queue_id,
            flag,
            queue_offset,
            physical_offset,
            sys_flag,
            born_timestamp,
            born_host,
            store_timestamp,
            store_host,
            reconsume_times,
            prepared_transaction_offset,
            body,
            topic,
            properties,
        })
    }

    /// Iterates the records of a buffer holding several back to back.
    pub fn iter(buf: &'a [u8]) -> RecordViews<'a> {
        RecordViews {
            rest: buf,
            failed: false,
        }
    }

    /// The whole record, exactly as stored: what a pull reply sends.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn total_size(&self) -> usize {
        self.raw.len()
    }

    pub fn body_crc_matches(&self) -> bool {
        self.body_crc == crc32_masked(self.body)
    }

    /// Fails with `InvalidRecord` when BODYCRC does not match the body (`checkCRCOnRecover`).
    pub fn verify_body_crc(&self) -> Result<()> {
        let actual = crc32_masked(self.body);
        if self.body_crc == actual {
            Ok(())
        } else {
            Err(ProtocolError::InvalidRecord(format!(
                "BODYCRC {:#010X} does not match the body's {actual:#010X}",
                self.body_crc
            )))
        }
    }

    /// The topic as text (invalid UTF-8 replaced, as Java's decoder does).
    pub fn topic(&self) -> Cow<'a, str> {
        String::from_utf8_lossy(self.topic)
    }

    pub fn property(&self, name: &str) -> Option<Cow<'a, str>> {
        properties::find_str(self.properties, name)
    }

    pub fn properties_map(&self) -> MessageProperties {
        MessageProperties::decode(self.properties)
    }

    pub fn tags(&self) -> Option<Cow<'a, str>> {
        self.property(keys::TAGS)
    }

    pub fn keys(&self) -> impl Iterator<Item = Cow<'a, str>> {
        properties::find(self.properties, keys::KEYS)
            .into_iter()
            .flat_map(split_keys_lossy)
    }

    pub fn uniq_key(&self) -> Option<Cow<'a, str>> {
        self.property(keys::UNIQ_KEY)
    }

    pub fn tags_code(&self) -> i64 {
        tags_code(self.tags().as_deref())
    }

    pub fn offset_msg_id(&self) -> OffsetMsgId {
        OffsetMsgId::new(self.store_host, self.physical_offset)
    }

    fn with_parts(&self, body: Bytes, properties: Bytes) -> MessageRecord {
        MessageRecord {
            version: self.version,
            body_crc: self.body_crc,
            queue_id: self.queue_id,
            flag: self.flag,
            queue_offset: self.queue_offset,
            physical_offset: self.physical_offset,
            sys_flag: self.sys_flag,
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            store_timestamp: self.store_timestamp,
            store_host: self.store_host,
            reconsume_times: self.reconsume_times,
            prepared_transaction_offset: self.prepared_transaction_offset,
            body,
            topic: self.topic().into_owned(),
            properties,
        }
    }

    /// An owned copy.
    pub fn to_record(&self) -> MessageRecord {
        self.with_parts(
            Bytes::copy_from_slice(self.body),
            Bytes::copy_from_slice(self.properties),
        )
    }

    /// An owned record sharing `source`'s memory; `self` must have been parsed from `source`.
    fn record_sharing(&self, source: &Bytes) -> MessageRecord {
        self.with_parts(share(source, self.body), share(source, self.properties))
    }
}

/// `part` as a slice of `source` when it lies inside it (always, for views parsed from it),
/// otherwise a copy, so this can never panic.
fn share(source: &Bytes, part: &[u8]) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(source.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if start <= source.len() && end <= source.len() => source.slice(start..end),
        _ => Bytes::copy_from_slice(part),
    }
}

/// Views of records back to back in one buffer. Yields an error once and then stops.
#[derive(Debug, Clone)]
pub struct RecordViews<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for RecordViews<'a> {
    type Item = Result<RecordView<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match RecordView::parse(self.rest) {
            Ok(view) => {
                self.rest = self.rest.get(view.total_size()..).unwrap_or_default();
                Some(Ok(view))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Owned records back to back in one `Bytes` buffer, decoded without copying body or properties.
/// Yields an error once and then stops.
#[derive(Debug, Clone)]
pub struct Records {
    buf: Bytes,
    pos: usize,
    failed: bool,
}

impl Iterator for Records {
    type Item = Result<MessageRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = self.buf.slice(self.pos..);
        match MessageRecord::decode_bytes(&rest) {
            Ok((record, used)) => {
                self.pos += used;
                Some(Ok(record))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::id::normalize_host;
    use std::net::SocketAddrV6;

    const PROPS_40: &[u8] = b"TAGS\x01TagA\x02KEYS\x01order-1\x02WAIT\x01true\x02ID\x01x12\x02";

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port))
    }

    fn v6(s: &str, port: u16) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(s.parse().unwrap(), port, 0, 0))
    }

    fn example() -> MessageRecord {
        MessageRecord {
            version: MessageVersion::V1,
            body_crc: crc32_masked(b"hello"),
            queue_id: 3,
            flag: 0,
            queue_offset: 7,
            physical_offset: 1000,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: v4([10, 0, 0, 5], 50000),
            store_timestamp: 1_700_000_000_123,
            store_host: v4([10, 0, 0, 1], 10911),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::from_static(b"hello"),
            topic: "T1".to_owned(),
            properties: Bytes::from_static(PROPS_40),
        }
    }

    fn encode_vec(record: &MessageRecord) -> Vec<u8> {
        let mut buf = Vec::new();
        record.encode_into(&mut buf).unwrap();
        buf
    }

    #[test]
    fn worked_example_10_3_golden_bytes() {
        assert_eq!(PROPS_40.len(), 40);
        let mut g: Vec<u8> = Vec::new();
        g.extend_from_slice(&138i32.to_be_bytes()); // TOTALSIZE = 91 + 5 + 2 + 40
        g.extend_from_slice(&[0xDA, 0xA3, 0x20, 0xA7]); // MAGICCODE V1
        g.extend_from_slice(&crc32_masked(b"hello").to_be_bytes()); // BODYCRC
        g.extend_from_slice(&3i32.to_be_bytes()); // QUEUEID
        g.extend_from_slice(&0i32.to_be_bytes()); // FLAG
        g.extend_from_slice(&7i64.to_be_bytes()); // QUEUEOFFSET
        g.extend_from_slice(&1000i64.to_be_bytes()); // PHYSICALOFFSET
        g.extend_from_slice(&0i32.to_be_bytes()); // SYSFLAG
        g.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // BORNTIMESTAMP
        g.extend_from_slice(&[10, 0, 0, 5]); // BORNHOST address
        g.extend_from_slice(&50000i32.to_be_bytes()); // BORNHOST port
        g.extend_from_slice(&1_700_000_000_123i64.to_be_bytes()); // STORETIMESTAMP
        g.extend_from_slice(&[10, 0, 0, 1]); // STOREHOST address
        g.extend_from_slice(&10911i32.to_be_bytes()); // STOREHOST port
        g.extend_from_slice(&0i32.to_be_bytes()); // RECONSUMETIMES
        g.extend_from_slice(&0i64.to_be_bytes()); // PREPARED TRANSACTION OFFSET
        g.extend_from_slice(&5i32.to_be_bytes()); // BODYLEN
        g.extend_from_slice(b"hello");
        g.push(2); // TOPICLEN
        g.extend_from_slice(b"T1");
        g.extend_from_slice(&40i16.to_be_bytes()); // PROPERTIESLEN
        g.extend_from_slice(PROPS_40);

        // The offsets the reference lists for this example.
        assert_eq!(g.len(), 138);
        assert_eq!(
            &g[QUEUE_OFFSET_POSITION..QUEUE_OFFSET_POSITION + 8],
            &7i64.to_be_bytes()
        );
        assert_eq!(
            &g[PHYSICAL_OFFSET_POSITION..PHYSICAL_OFFSET_POSITION + 8],
            &1000i64.to_be_bytes()
        );
        assert_eq!(
            &g[STORE_TIMESTAMP_POSITION_IPV4..STORE_TIMESTAMP_POSITION_IPV4 + 8],
            &1_700_000_000_123i64.to_be_bytes()
        );
        assert_eq!(&g[84..88], &5i32.to_be_bytes());
        assert_eq!(&g[88..93], b"hello");
        assert_eq!(g[93], 2);
        assert_eq!(&g[94..96], b"T1");
        assert_eq!(&g[96..98], &40i16.to_be_bytes());
        assert_eq!(&g[98..138], PROPS_40);

        let record = example();
        assert_eq!(record.encoded_len(), 138);
        assert_eq!(encode_vec(&record), g);
        assert_eq!(record.encode().unwrap().as_ref(), &g[..]);

        let (decoded, used) = MessageRecord::decode_checked(&g).unwrap();
        assert_eq!(used, 138);
        assert_eq!(decoded, record);
        assert_eq!(decoded.tags_code(), 2_598_919);
        assert_eq!(
            decoded.offset_msg_id().to_string(),
            "0A00000100002A9F00000000000003E8"
        );
    }

    #[test]
    fn position_helpers_agree_with_the_layout() {
        assert_eq!(store_timestamp_position(0), STORE_TIMESTAMP_POSITION_IPV4);
        assert_eq!(body_length_position(0), BODY_LENGTH_POSITION_IPV4);
        assert_eq!(store_timestamp_position(sysflag::BORNHOST_V6_FLAG), 68);
        assert_eq!(store_host_position(0), 64);
        assert_eq!(reconsume_times_position(0), 72);
        assert_eq!(prepared_transaction_offset_position(0), 76);
        assert_eq!(body_length_position(sysflag::HOST_V6_FLAGS), 84 + 24);
        assert_eq!(
            record_len(MessageVersion::V1, false, false, 0, 0, 0),
            MIN_RECORD_LEN
        );
        assert_eq!(
            record_len(MessageVersion::V2, true, true, 1, 2, 3),
            91 + 1 + 24 + 6
        );
    }

    fn variants() -> Vec<MessageRecord> {
        let base = example();
        let long_topic = "t".repeat(200);
        vec![
            base.clone(),
            MessageRecord {
                born_host: v6("2001:db8::5", 40000),
                ..base.clone()
            },
            MessageRecord {
                store_host: v6("fe80::1", 10911),
                ..base.clone()
            },
            MessageRecord {
                born_host: v6("::1", 1),
                store_host: v6("2001:db8::1", 65535),
                sys_flag: sysflag::TRANSACTION_COMMIT_TYPE | sysflag::COMPRESSED_FLAG,
                ..base.clone()
            },
            MessageRecord {
                version: MessageVersion::V2,
                ..base.clone()
            },
            MessageRecord::new(long_topic, Bytes::from(vec![7u8; 1000]), Bytes::new()),
            MessageRecord::new("", Bytes::new(), Bytes::new()),
            MessageRecord {
                topic: "t".repeat(127),
                queue_offset: i64::MAX,
                physical_offset: i64::MIN,
                flag: -1,
                reconsume_times: i32::MAX,
                prepared_transaction_offset: 42,
                ..base
            },
        ]
    }

    #[test]
    fn round_trip_for_ipv4_ipv6_v1_and_v2() {
        for record in variants() {
            let bytes = encode_vec(&record);
            assert_eq!(bytes.len(), record.encoded_len());
            let (decoded, used) = MessageRecord::decode(&bytes).unwrap();
            assert_eq!(used, bytes.len());
            let expected = MessageRecord {
                sys_flag: record.effective_sys_flag(),
                ..record.clone()
            };
            assert_eq!(decoded, expected);
            assert_eq!(encode_vec(&decoded), bytes, "re-encoding is byte exact");
        }
    }

    #[test]
    fn host_family_sets_the_sysflag_bits_and_the_layout() {
        let base = example();
        let born6 = MessageRecord {
            born_host: v6("2001:db8::5", 1),
            ..base.clone()
        };
        let bytes = encode_vec(&born6);
        assert_eq!(bytes.len(), 138 + 12);
        assert_eq!(&bytes[36..40], &sysflag::BORNHOST_V6_FLAG.to_be_bytes());
        assert_eq!(
            &bytes[48..64],
            &"2001:db8::5".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(&bytes[68..76], &base.store_timestamp.to_be_bytes());

        let store6 = MessageRecord {
            store_host: v6("2001:db8::9", 2),
            ..base.clone()
        };
        let bytes = encode_vec(&store6);
        assert_eq!(
            &bytes[36..40],
            &sysflag::STOREHOSTADDRESS_V6_FLAG.to_be_bytes()
        );
        assert_eq!(
            &bytes[64..80],
            &"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(&bytes[80..84], &2i32.to_be_bytes());

        // Stale host bits in sys_flag are corrected from the hosts.
        let stale = MessageRecord {
            sys_flag: sysflag::HOST_V6_FLAGS | 0x1,
            ..base
        };
        assert_eq!(&encode_vec(&stale)[36..40], &0x1i32.to_be_bytes());
    }

    #[test]
    fn v2_records_carry_a_two_byte_topic_length() {
        let record = MessageRecord::new("x".repeat(300), Bytes::from_static(b"b"), Bytes::new());
        assert_eq!(record.version, MessageVersion::V2);
        let bytes = encode_vec(&record);
        assert_eq!(&bytes[4..8], &[0xDA, 0xA3, 0x20, 0xAB]);
        assert_eq!(&bytes[89..91], &300u16.to_be_bytes());
        assert_eq!(bytes.len(), 91 + 1 + 1 + 300);
        assert_eq!(MessageVersion::for_topic_len(127), MessageVersion::V1);
        assert_eq!(MessageVersion::for_topic_len(128), MessageVersion::V2);
        assert_eq!(MAGIC_CODE_V1 as i32, -626_843_481);
        assert_eq!(MAGIC_CODE_V2 as i32, -626_843_477);
        assert_eq!(BLANK_MAGIC_CODE as i32, -875_286_124);
    }

    #[test]
    fn encode_rejects_what_the_format_cannot_hold() {
        let v1_long = MessageRecord {
            topic: "t".repeat(128),
            ..example()
        };
        assert!(v1_long.encode().is_err());
        let big_props = MessageRecord {
            properties: Bytes::from(vec![b'a'; 32768]),
            ..example()
        };
        assert!(big_props.encode().is_err());
        let ok_props = MessageRecord {
            properties: Bytes::from(vec![b'a'; 32767]),
            ..example()
        };
        assert!(ok_props.encode().is_ok());
        let mut small = [0u8; 137];
        let mut out = &mut small[..];
        assert!(matches!(
            example().encode_into(&mut out),
            Err(ProtocolError::Truncated { needed: 1, .. })
        ));
        let mut exact = [0u8; 138];
        let mut out = &mut exact[..];
        example().encode_into(&mut out).unwrap();
        assert_eq!(&exact[..], &encode_vec(&example())[..]);
    }

    #[test]
    fn every_truncation_point_is_an_error() {
        for record in variants() {
            let bytes = encode_vec(&record);
            for cut in 0..bytes.len() {
                let err = MessageRecord::decode(&bytes[..cut]).unwrap_err();
                assert!(
                    matches!(err, ProtocolError::Truncated { .. }),
                    "cut {cut}: {err}"
                );
                assert!(RecordView::parse(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn total_size_must_match_the_fields() {
        let bytes = encode_vec(&example());
        for delta in [-1i32, 1, 5] {
            let mut bad = bytes.clone();
            bad.extend_from_slice(&[0; 8]);
            bad[..4].copy_from_slice(&(138 + delta).to_be_bytes());
            let err = MessageRecord::decode(&bad).unwrap_err();
            assert!(
                matches!(err, ProtocolError::InvalidRecord(_)),
                "delta {delta}: {err}"
            );
        }
    }

    #[test]
    fn negative_and_oversized_lengths_are_errors() {
        let bytes = encode_vec(&example());
        let patch = |pos: usize, value: &[u8]| {
            let mut b = bytes.clone();
            b[pos..pos + value.len()].copy_from_slice(value);
            MessageRecord::decode(&b)
        };
        assert!(patch(84, &(-1i32).to_be_bytes()).is_err());
        assert!(patch(84, &i32::MAX.to_be_bytes()).is_err());
        assert!(patch(84, &1000i32.to_be_bytes()).is_err());
        assert!(patch(93, &[0x80]).is_err()); // topic length byte read as signed: -128
        assert!(patch(93, &[0x7F]).is_err());
        assert!(patch(96, &(-1i16).to_be_bytes()).is_err());
        assert!(patch(0, &(-5i32).to_be_bytes()).is_err());
        assert!(patch(0, &90i32.to_be_bytes()).is_err());
        assert!(patch(4, &[0, 0, 0, 0]).is_err());
        // A port that is not a port.
        assert!(patch(52, &70000i32.to_be_bytes()).is_err());
        // The V6 bit on an IPv4 record shifts every later field: the sizes no longer add up.
        assert!(patch(36, &sysflag::BORNHOST_V6_FLAG.to_be_bytes()).is_err());
    }

    #[test]
    fn corrupted_body_crc_is_detected_only_when_checking() {
        let mut bytes = encode_vec(&example());
        bytes[88] ^= 0xFF;
        assert!(MessageRecord::decode(&bytes).is_ok());
        let err = MessageRecord::decode_checked(&bytes).unwrap_err();
        assert!(matches!(err, ProtocolError::InvalidRecord(_)));
        let view = RecordView::parse(&bytes).unwrap();
        assert!(!view.body_crc_matches());
        assert!(view.verify_body_crc().is_err());
        let mut record = view.to_record();
        assert!(!record.body_crc_matches());
        record.update_body_crc();
        assert!(record.body_crc_matches());
    }

    #[test]
    fn decode_all_walks_three_concatenated_records() {
        let records: Vec<MessageRecord> = variants().into_iter().take(3).collect();
        let mut buf = BytesMut::new();
        for r in &records {
            r.encode_into(&mut buf).unwrap();
        }
        let buf = buf.freeze();
        let decoded: Vec<MessageRecord> = MessageRecord::decode_all(&buf)
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(decoded.len(), 3);
        for (d, r) in decoded.iter().zip(&records) {
            assert_eq!(d.topic, r.topic);
            assert_eq!(d.born_host, r.born_host);
            assert_eq!(d.store_host, r.store_host);
            assert_eq!(d.body, r.body);
        }
        // Zero copy: bodies point into the pull body.
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        assert!(range.contains(&(decoded[2].body.as_ptr() as usize)));

        let views: Vec<RecordView<'_>> = RecordView::iter(&buf).collect::<Result<_>>().unwrap();
        assert_eq!(views.len(), 3);
        let mut reassembled = Vec::new();
        for v in &views {
            reassembled.extend_from_slice(v.raw());
        }
        assert_eq!(reassembled, buf.to_vec());
    }

    #[test]
    fn decode_all_reports_trailing_garbage_once_then_stops() {
        let mut buf = BytesMut::new();
        example().encode_into(&mut buf).unwrap();
        buf.put_slice(&[1, 2, 3]);
        let buf = buf.freeze();
        let results: Vec<_> = MessageRecord::decode_all(&buf).collect();
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok());
        assert!(results[1].is_err());
        assert_eq!(MessageRecord::decode_all(&Bytes::new()).count(), 0);
    }

    #[test]
    fn blank_record_is_written_and_recognized() {
        let blank = blank_record(4096);
        assert_eq!(blank, [0, 0, 0x10, 0, 0xCB, 0xD4, 0x31, 0x94]);
        let mut buf = BytesMut::new();
        encode_blank_into(&mut buf, 4096).unwrap();
        assert_eq!(&buf[..], &blank);
        assert!(is_blank_record(&blank));
        assert_eq!(
            peek_record(&blank).unwrap(),
            RecordHead::Blank { total_size: 4096 }
        );
        assert_eq!(peek_total_size(&blank).unwrap(), 4096);
        assert!(MessageRecord::decode(&blank).is_err());
        assert!(encode_blank_into(&mut buf, 7).is_err());
        assert!(!is_blank_record(&encode_vec(&example())));
        assert!(!is_blank_record(&blank[..7]));
        // The smallest blank covers just its own 8 bytes.
        assert_eq!(peek_total_size(&blank_record(8)).unwrap(), 8);
        assert!(peek_record(&blank_record(7)).is_err());
    }

    #[test]
    fn peek_reads_size_and_version_from_eight_bytes() {
        let bytes = encode_vec(&example());
        assert_eq!(
            peek_record(&bytes[..8]).unwrap(),
            RecordHead::Message {
                total_size: 138,
                version: MessageVersion::V1
            }
        );
        assert!(matches!(
            peek_record(&bytes[..7]),
            Err(ProtocolError::Truncated { needed: 1, .. })
        ));
        assert!(peek_record(&[0u8; 8]).is_err());
    }

    #[test]
    fn patches_rewrite_offsets_and_store_time_in_place() {
        for record in variants() {
            let mut bytes = encode_vec(&record);
            patch_queue_offset(&mut bytes, 99).unwrap();
            patch_physical_offset(&mut bytes, 1 << 33).unwrap();
            patch_store_timestamp(&mut bytes, 1_234_567).unwrap();
            let view = RecordView::parse(&bytes).unwrap();
            assert_eq!(view.queue_offset, 99);
            assert_eq!(view.physical_offset, 1 << 33);
            assert_eq!(view.store_timestamp, 1_234_567);
            assert_eq!(view.born_timestamp, record.born_timestamp);
            assert_eq!(view.store_host, record.store_host);
            assert_eq!(view.body, &record.body[..]);
        }
        let mut short = [0u8; 30];
        assert!(patch_queue_offset(&mut short, 1).is_ok());
        assert!(patch_physical_offset(&mut short, 1).is_err());
        assert!(patch_store_timestamp(&mut short, 1).is_err());
    }

    #[test]
    fn property_helpers_read_the_raw_string() {
        let mut record = example();
        assert_eq!(record.tags().as_deref(), Some("TagA"));
        assert_eq!(record.keys().collect::<Vec<_>>(), vec!["order-1"]);
        assert_eq!(record.uniq_key(), None);
        let mut props = record.properties_map();
        props.set_uniq_key("ABC");
        props.set_keys(["a", "b"]);
        record.set_properties(&props);
        assert_eq!(record.uniq_key().as_deref(), Some("ABC"));
        let bytes = encode_vec(&record);
        let view = RecordView::parse(&bytes).unwrap();
        assert_eq!(view.keys().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(view.topic(), "T1");
        assert_eq!(view.tags_code(), 2_598_919);
        assert_eq!(view.properties_map(), props);
        let untagged = MessageRecord::new("T", Bytes::new(), Bytes::new());
        assert_eq!(untagged.tags_code(), 0);
    }

    #[test]
    fn ipv4_mapped_hosts_are_encoded_faithfully_unless_normalized() {
        let mapped: SocketAddr = "[::ffff:10.0.0.5]:50000".parse().unwrap();
        let faithful = MessageRecord {
            born_host: mapped,
            ..example()
        };
        assert_eq!(faithful.encoded_len(), 150);
        let normalized = MessageRecord {
            born_host: normalize_host(mapped),
            ..example()
        };
        assert_eq!(encode_vec(&normalized), encode_vec(&example()));
    }

    #[test]
    fn garbage_and_bit_flips_never_panic() {
        let bytes = encode_vec(&variants()[3]);
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xFF] {
                let mut bad = bytes.clone();
                bad[i] ^= mask;
                let _ = MessageRecord::decode(&bad);
                let _ = MessageRecord::decode_bytes(&Bytes::from(bad));
            }
        }
        let mut seed = 0xDEAD_BEEFu32;
        for len in 0..400i32 {
            let mut data: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 24) as u8
                })
                .collect();
            if len >= 8 {
                // Give half the samples a valid magic so parsing goes deeper.
                if len % 2 == 0 {
                    data[4..8].copy_from_slice(&MAGIC_CODE_V1.to_be_bytes());
                    data[..4].copy_from_slice(&len.to_be_bytes());
                }
            }
            let _ = MessageRecord::decode(&data);
            let _ = RecordView::iter(&data).count();
        }
    }
}
