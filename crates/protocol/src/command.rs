//! The remoting frame (`RemotingCommand`): a length-prefixed header in JSON or in the ROCKETMQ binary
//! layout, followed by an opaque body.
//!
//! Decoding is lenient in the ways real clients need (the C++ client writes numbers and booleans as
//! JSON values inside `extFields`, omits `serializeTypeCurrentRPC`, and may end the header with a
//! newline); encoding is what the Java peers write. A response is encoded in the serialize type of
//! the request it answers.

use std::borrow::Cow;
use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::error::{ProtocolError, Result};
use crate::header::CommandHeader;

mod fast_json;

/// Default upper bound of a whole frame, length prefix included (RocketMQ's `frameMaxLength`).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Header length occupies the low 24 bits of the second int of a frame.
const MAX_HEADER_BYTES: usize = 0x00FF_FFFF;

/// Bit 0 of `flag`: this command is a response.
pub const FLAG_RESPONSE: i32 = 0b01;
/// Bit 1 of `flag`: this request expects no response.
pub const FLAG_ONEWAY: i32 = 0b10;

/// The `version` Apogee announces: RocketMQ V5_3_3's ordinal, so peers enable their newest behaviour.
pub const APOGEE_VERSION: i32 = 479;
/// `MQVersion.Version.V4_9_4`: the first version that asks for standard JSON route bodies.
pub const VERSION_V4_9_4: i32 = 401;

/// How the header of a frame is serialized: the high byte of the frame's second int.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    #[default]
    Json,
    RocketMq,
}

impl SerializeType {
    pub fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    pub fn from_code(code: u8) -> Result<Self> {
        match code {
            0 => Ok(SerializeType::Json),
            1 => Ok(SerializeType::RocketMq),
            other => Err(ProtocolError::UnknownSerializeType(other)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SerializeType::Json => "JSON",
            SerializeType::RocketMq => "ROCKETMQ",
        }
    }
}

/// `LanguageCode` of the peer that built a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LanguageCode {
    Java,
    Cpp,
    Dotnet,
    Python,
    Delphi,
    Erlang,
    Ruby,
    #[default]
    Other,
    Http,
    Go,
    Php,
    Oms,
    Rust,
    NodeJs,
}

impl LanguageCode {
    const ALL: [LanguageCode; 14] = [
        LanguageCode::Java,
        LanguageCode::Cpp,
        LanguageCode::Dotnet,
        LanguageCode::Python,
        LanguageCode::Delphi,
        LanguageCode::Erlang,
        LanguageCode::Ruby,
        LanguageCode::Other,
        LanguageCode::Http,
        LanguageCode::Go,
        LanguageCode::Php,
        LanguageCode::Oms,
        LanguageCode::Rust,
        LanguageCode::NodeJs,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// Unknown codes map to `OTHER` rather than failing: the language is informational only.
    pub fn from_code(code: u8) -> Self {
        Self::ALL
            .get(code as usize)
            .copied()
            .unwrap_or(LanguageCode::Other)
    }

    pub fn name(self) -> &'static str {
        match self {
            LanguageCode::Java => "JAVA",
            LanguageCode::Cpp => "CPP",
            LanguageCode::Dotnet => "DOTNET",
            LanguageCode::Python => "PYTHON",
            LanguageCode::Delphi => "DELPHI",
            LanguageCode::Erlang => "ERLANG",
            LanguageCode::Ruby => "RUBY",
            LanguageCode::Other => "OTHER",
            LanguageCode::Http => "HTTP",
            LanguageCode::Go => "GO",
            LanguageCode::Php => "PHP",
            LanguageCode::Oms => "OMS",
            LanguageCode::Rust => "RUST",
            LanguageCode::NodeJs => "NODE_JS",
        }
    }

    pub fn from_name(name: &str) -> Self {
        Self::ALL
            .iter()
            .copied()
            .find(|l| l.name().eq_ignore_ascii_case(name))
            .unwrap_or(LanguageCode::Other)
    }
}

/// The custom header fields of a command, stringified, in insertion order.
///
/// A small vector beats a hash map here: headers have at most a few dozen fields, and encoding wants
/// a stable order. Keys written by typed headers are `'static` and stored without allocating.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtFields {
    entries: Vec<(Cow<'static, str>, String)>,
}

impl ExtFields {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| key_eq(k, key))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` to `value`, replacing an earlier value of the same key.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| key_eq(k, &key)) {
            slot.1 = value;
        } else {
            self.entries.push((Cow::Owned(key), value));
        }
    }

    /// [`insert`](Self::insert) for a key known at compile time (typed headers): the key is not
    /// copied.
    pub fn insert_static(&mut self, key: &'static str, value: String) {
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| key_eq(k, key)) {
            slot.1 = value;
        } else {
            self.entries.push((Cow::Borrowed(key), value));
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let pos = self.entries.iter().position(|(k, _)| key_eq(k, key))?;
        Some(self.entries.remove(pos).1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    /// Appends a `'static` key the caller knows is not present yet.
    fn push_static_unchecked(&mut self, key: &'static str, value: String) {
        self.entries.push((Cow::Borrowed(key), value));
    }

    /// Appends without checking for an existing key: for decoders that trust the peer's uniqueness.
    fn push_unchecked(&mut self, key: String, value: String) {
        self.entries.push((Cow::Owned(key), value));
    }
}

/// Key equality without a `memcmp` call: keys are a few bytes long and compared often (every
/// typed header looks each of its fields up).
#[inline]
fn key_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut ext = ExtFields::new();
        for (k, v) in iter {
            ext.insert(k, v);
        }
        ext
    }
}

/// One remoting frame: a request, a oneway request or a response.
#[derive(Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: ExtFields,
    /// The body, or its first part when more parts follow (see [`RemotingCommand::with_body_chunks`]).
    pub body: Bytes,
    /// How the header was (or will be) serialized.
    pub serialize_type: SerializeType,
    /// Body parts that follow `body` on the wire, kept apart so that a reply made of stored
    /// records can be written without copying them into one buffer. Always empty in a decoded
    /// command.
    body_tail: Box<[Bytes]>,
}

impl fmt::Debug for RemotingCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotingCommand")
            .field("code", &self.code)
            .field("language", &self.language)
            .field("version", &self.version)
            .field("opaque", &self.opaque)
            .field("flag", &self.flag)
            .field("remark", &self.remark)
            .field("ext_fields", &self.ext_fields)
            .field("body_len", &self.body_len())
            .field("serialize_type", &self.serialize_type)
            .finish()
    }
}

impl Default for RemotingCommand {
    fn default() -> Self {
        Self {
            code: 0,
            language: LanguageCode::Rust,
            version: APOGEE_VERSION,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
            body_tail: Box::default(),
        }
    }
}

impl RemotingCommand {
    /// A request with `code` and no header fields; the transport assigns `opaque`.
    pub fn request(code: i32) -> Self {
        Self {
            code,
            ..Self::default()
        }
    }

    /// A request carrying a typed header.
    pub fn request_with_header<H: CommandHeader>(code: i32, header: &H) -> Self {
        let mut cmd = Self::request(code);
        header.write_ext_fields(&mut cmd.ext_fields);
        cmd
    }

    /// A response not yet tied to a request (see [`RemotingCommand::response_to`]).
    pub fn response(code: i32, remark: Option<String>) -> Self {
        Self {
            code,
            flag: FLAG_RESPONSE,
            remark,
            ..Self::default()
        }
    }

    /// A response to `request`: same opaque, same serialize type. Responses announce `JAVA`, as every
    /// RocketMQ server does: 4.x Java clients do not know the newer language names.
    pub fn response_to(request: &RemotingCommand, code: i32, remark: Option<String>) -> Self {
        Self {
            code,
            flag: FLAG_RESPONSE,
            opaque: request.opaque,
            remark,
            serialize_type: request.serialize_type,
            language: LanguageCode::Java,
            ..Self::default()
        }
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self.body_tail = Box::default();
        self
    }

    /// Sets the body to the concatenation of `chunks` without copying them: the frame encodes
    /// exactly as if the chunks were one contiguous body, and a transport can write them with a
    /// vectored write. Code that reads `body` directly sees only the first chunk; such readers
    /// (in-process callers of a handler) call [`make_body_contiguous`](Self::make_body_contiguous)
    /// first.
    pub fn with_body_chunks(mut self, chunks: Vec<Bytes>) -> Self {
        let mut chunks = chunks;
        chunks.retain(|c| !c.is_empty());
        if chunks.len() <= 1 {
            self.body = chunks.pop().unwrap_or_default();
            self.body_tail = Box::default();
        } else {
            self.body = Bytes::new();
            self.body_tail = chunks.into_boxed_slice();
        }
        self
    }

    /// The body's length in bytes, all chunks included.
    pub fn body_len(&self) -> usize {
        self.body.len() + self.body_tail.iter().map(Bytes::len).sum::<usize>()
    }

    /// The body's parts in wire order (`body`, then any further chunks); empty parts included.
    pub fn body_chunks(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.body).chain(self.body_tail.iter())
    }

    /// Whether the body is held as more than one part.
    pub fn is_body_chunked(&self) -> bool {
        !self.body_tail.is_empty()
    }

    /// Joins a chunked body into `body` (one copy); a no-op for a contiguous body.
    pub fn make_body_contiguous(&mut self) {
        if self.body_tail.is_empty() {
            return;
        }
        let mut joined = BytesMut::with_capacity(self.body_len());
        for chunk in self.body_chunks() {
            joined.extend_from_slice(chunk);
        }
        self.body = joined.freeze();
        self.body_tail = Box::default();
    }

    pub fn with_header<H: CommandHeader>(mut self, header: &H) -> Self {
        header.write_ext_fields(&mut self.ext_fields);
        self
    }

    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    pub fn with_opaque(mut self, opaque: i32) -> Self {
        self.opaque = opaque;
        self
    }

    pub fn with_serialize_type(mut self, st: SerializeType) -> Self {
        self.serialize_type = st;
        self
    }

    pub fn mark_oneway(&mut self) {
        self.flag |= FLAG_ONEWAY;
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// Decodes the typed header from this command's extFields.
    pub fn decode_header<H: CommandHeader>(&self) -> Result<H> {
        H::from_ext_fields(&self.ext_fields)
    }

    // ---- decoding ------------------------------------------------------------------------------

    /// Looks at the start of `buf` and says whether a whole frame is there, without decoding it.
    ///
    /// Returns `Ok(Some(n))` with the frame's total length (prefix included) when complete,
    /// `Ok(None)` when more bytes are needed, and an error when the announced length is impossible
    /// or over `max_frame_bytes`, in which case the connection cannot be resynchronised.
    pub fn check_frame(buf: &[u8], max_frame_bytes: usize) -> Result<Option<usize>> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if len < 4 {
            return Err(ProtocolError::BadFrame(format!(
                "frame length {len} is shorter than the header length field"
            )));
        }
        let total = len as usize + 4;
        if total > max_frame_bytes {
            return Err(ProtocolError::FrameTooLarge {
                len_bytes: total,
                max_bytes: max_frame_bytes,
            });
        }
        if buf.len() < total {
            return Ok(None);
        }
        Ok(Some(total))
    }

    /// Splits one whole frame off the front of `buf` and decodes it; `Ok(None)` if incomplete.
    pub fn decode_frame(buf: &mut BytesMut, max_frame_bytes: usize) -> Result<Option<Self>> {
        match Self::check_frame(buf, max_frame_bytes)? {
            None => Ok(None),
            Some(total) => {
                let mut frame = buf.split_to(total).freeze();
                frame.advance(4);
                Self::decode_payload(frame).map(Some)
            }
        }
    }

    /// Decodes a whole frame given as one slice, length prefix included.
    pub fn decode_bytes(frame: &[u8]) -> Result<Self> {
        let mut buf = BytesMut::from(frame);
        match Self::decode_frame(&mut buf, usize::MAX)? {
            Some(cmd) if buf.is_empty() => Ok(cmd),
            Some(_) => Err(ProtocolError::BadFrame(
                "trailing bytes after the frame".into(),
            )),
            None => Err(ProtocolError::Truncated {
                what: "frame",
                needed: Self::check_needed(frame),
            }),
        }
    }

    fn check_needed(frame: &[u8]) -> usize {
        if frame.len() < 4 {
            return 4 - frame.len();
        }
        let len = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]).max(0) as usize;
        (len + 4).saturating_sub(frame.len())
    }

    /// Decodes the part of a frame after its 4-byte length prefix: header length and type, header,
    /// body.
    pub fn decode_payload(mut payload: Bytes) -> Result<Self> {
        if payload.len() < 4 {
            return Err(ProtocolError::Truncated {
                what: "header length",
                needed: 4 - payload.len(),
            });
        }
        let len_and_type = payload.get_u32();
        let st = SerializeType::from_code((len_and_type >> 24) as u8)?;
        let header_len = (len_and_type & 0x00FF_FFFF) as usize;
        if header_len > payload.len() {
            return Err(ProtocolError::BadFrame(format!(
                "header length {header_len} exceeds the {} bytes left in the frame",
                payload.len()
            )));
        }
        let header = payload.split_to(header_len);
        let mut cmd = match st {
            SerializeType::Json => decode_json_header(&header)?,
            SerializeType::RocketMq => decode_binary_header(header)?,
        };
        cmd.serialize_type = st;
        cmd.body = payload;
        cmd.body_tail = Box::default();
        Ok(cmd)
    }

    // ---- encoding ------------------------------------------------------------------------------

    /// Appends the whole frame (length prefix included) to `dst`.
    ///
    /// A code that does not fit the binary layout's 16-bit field is written with a JSON header
    /// instead, since a truncated code would change the command's meaning.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<()> {
        self.encode_head(dst)?;
        dst.reserve(self.body_len());
        for chunk in self.body_chunks() {
            dst.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Appends everything of the frame but its body: the length prefix (which counts the body),
    /// the header length and type, and the header. The body's chunks must follow on the wire,
    /// in [`body_chunks`](Self::body_chunks) order.
    pub fn encode_head(&self, dst: &mut BytesMut) -> Result<()> {
        let st = match self.serialize_type {
            SerializeType::RocketMq if i16::try_from(self.code).is_err() => SerializeType::Json,
            other => other,
        };
        let start = dst.len();
        dst.put_u32(0); // frame length, patched below
        dst.put_u32(0); // header length and type, patched below
        let header_start = dst.len();
        let encoded = match st {
            SerializeType::Json => {
                encode_json_header(self, dst);
                Ok(())
            }
            SerializeType::RocketMq => encode_binary_header(self, dst),
        };
        if let Err(e) = encoded {
            dst.truncate(start);
            return Err(e);
        }
        let header_len = dst.len() - header_start;
        if header_len > MAX_HEADER_BYTES {
            dst.truncate(start);
            return Err(ProtocolError::BadFrame(format!(
                "header of {header_len} bytes does not fit the 24-bit header length"
            )));
        }
        let frame_len = 4 + header_len + self.body_len();
        if frame_len > i32::MAX as usize {
            dst.truncate(start);
            return Err(ProtocolError::FrameTooLarge {
                len_bytes: frame_len + 4,
                max_bytes: i32::MAX as usize,
            });
        }
        dst[start..start + 4].copy_from_slice(&(frame_len as u32).to_be_bytes());
        let mark = ((st.code() as u32) << 24) | header_len as u32;
        dst[start + 4..start + 8].copy_from_slice(&mark.to_be_bytes());
        Ok(())
    }

    /// The whole frame as bytes.
    pub fn to_bytes(&self) -> Result<Bytes> {
        let mut buf = BytesMut::with_capacity(128 + self.body_len());
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }
}

// ---- JSON header ---------------------------------------------------------------------------------

/// Writes the header the way fastjson does: keys in alphabetical order, null members omitted.
fn encode_json_header(cmd: &RemotingCommand, dst: &mut BytesMut) {
    dst.put_slice(b"{\"code\":");
    put_int(dst, cmd.code as i64);
    if !cmd.ext_fields.is_empty() {
        dst.put_slice(b",\"extFields\":{");
        for (i, (k, v)) in cmd.ext_fields.iter().enumerate() {
            if i > 0 {
                dst.put_u8(b',');
            }
            put_json_string(dst, k);
            dst.put_u8(b':');
            put_json_string(dst, v);
        }
        dst.put_u8(b'}');
    }
    dst.put_slice(b",\"flag\":");
    put_int(dst, cmd.flag as i64);
    dst.put_slice(b",\"language\":\"");
    dst.put_slice(cmd.language.name().as_bytes());
    dst.put_slice(b"\",\"opaque\":");
    put_int(dst, cmd.opaque as i64);
    if let Some(remark) = &cmd.remark {
        dst.put_slice(b",\"remark\":");
        put_json_string(dst, remark);
    }
    dst.put_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    put_int(dst, cmd.version as i64);
    dst.put_u8(b'}');
}

fn put_int(dst: &mut BytesMut, v: i64) {
    let mut tmp = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        dst.put_u8(b'-');
    }
    dst.put_slice(&tmp[i..]);
}

/// JSON string escaping as fastjson does it: control characters as `\uXXXX`.
pub(crate) fn put_json_string(dst: &mut BytesMut, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    dst.reserve(bytes.len() + 2);
    dst.put_u8(b'"');
    let mut i = 0;
    loop {
        let end = fast_json::find_special(bytes, i);
        dst.extend_from_slice(&bytes[i..end]);
        let Some(&b) = bytes.get(end) else {
            break;
        };
        match b {
            b'"' => dst.extend_from_slice(b"\\\""),
            b'\\' => dst.extend_from_slice(b"\\\\"),
            b'\n' => dst.extend_from_slice(b"\\n"),
            b'\r' => dst.extend_from_slice(b"\\r"),
            b'\t' => dst.extend_from_slice(b"\\t"),
            _ => dst.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]),
        }
        i = end + 1;
    }
    dst.put_u8(b'"');
}

#[derive(Deserialize)]
struct JsonHeader {
    #[serde(default)]
    code: LenientInt,
    #[serde(default)]
    language: Option<JsonLanguage>,
    #[serde(default)]
    version: LenientInt,
    #[serde(default)]
    opaque: LenientInt,
    #[serde(default)]
    flag: LenientInt,
    #[serde(default)]
    remark: Option<LenientString>,
    #[serde(default, rename = "extFields")]
    ext_fields: Option<LenientExtFields>,
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand> {
    // serde would also read a JSON array into the struct, positionally; a RocketMQ header is
    // always an object, and fastjson refuses anything else.
    if header.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ProtocolError::InvalidJson(
            "the header is not a JSON object".into(),
        ));
    }
    if let Some(cmd) = fast_json::decode(header) {
        return Ok(cmd);
    }
    decode_json_header_lenient(header)
}

/// The serde reader, for every header the direct one does not take.
fn decode_json_header_lenient(header: &[u8]) -> Result<RemotingCommand> {
    let h: JsonHeader =
        serde_json::from_slice(header).map_err(|e| ProtocolError::InvalidJson(e.to_string()))?;
    Ok(RemotingCommand {
        code: h.code.0,
        language: h.language.map(|l| l.0).unwrap_or(LanguageCode::Other),
        version: h.version.0,
        opaque: h.opaque.0,
        flag: h.flag.0,
        remark: h.remark.and_then(|r| r.0),
        ext_fields: h.ext_fields.map(|e| e.0).unwrap_or_default(),
        body: Bytes::new(),
        serialize_type: SerializeType::Json,
        body_tail: Box::default(),
    })
}

/// An int that a peer may have written as a number or as a numeric string.
#[derive(Default)]
struct LenientInt(i32);

impl<'de> Deserialize<'de> for LenientInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientInt;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<LenientInt, E> {
                i32::try_from(v)
                    .map(LenientInt)
                    .map_err(|_| E::custom(format!("{v} is out of the int range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<LenientInt, E> {
                i32::try_from(v)
                    .map(LenientInt)
                    .map_err(|_| E::custom(format!("{v} is out of the int range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<LenientInt, E> {
                v.trim()
                    .parse()
                    .map(LenientInt)
                    .map_err(|_| E::custom(format!("{v:?} is not an integer")))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<LenientInt, E> {
                Ok(LenientInt(0))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `language` member: the enum name (Java) or, from some peers, its numeric code.
struct JsonLanguage(LanguageCode);

impl<'de> Deserialize<'de> for JsonLanguage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JsonLanguage;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a language name or code")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<JsonLanguage, E> {
                Ok(JsonLanguage(LanguageCode::from_name(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<JsonLanguage, E> {
                Ok(JsonLanguage(LanguageCode::from_code(
                    u8::try_from(v).unwrap_or(u8::MAX),
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<JsonLanguage, E> {
                Ok(JsonLanguage(LanguageCode::from_code(
                    u8::try_from(v).unwrap_or(u8::MAX),
                )))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<JsonLanguage, E> {
                Ok(JsonLanguage(LanguageCode::Other))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string member that a peer may have written as a string, number, boolean or null.
struct LenientString(Option<String>);

impl<'de> Deserialize<'de> for LenientString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(LenientStringVisitor)
    }
}

struct LenientStringVisitor;

impl<'de> Visitor<'de> for LenientStringVisitor {
    type Value = LenientString;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number, boolean or null")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<LenientString, E> {
        Ok(LenientString(Some(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<LenientString, E> {
        Ok(LenientString(Some(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<LenientString, E> {
        Ok(LenientString(Some(v.to_string())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<LenientString, E> {
        Ok(LenientString(Some(v.to_string())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<LenientString, E> {
        Ok(LenientString(Some(v.to_string())))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<LenientString, E> {
        Ok(LenientString(Some(v.to_string())))
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<LenientString, E> {
        Ok(LenientString(None))
    }
    fn visit_none<E: de::Error>(self) -> std::result::Result<LenientString, E> {
        Ok(LenientString(None))
    }
    // Nested values in extFields are not something RocketMQ peers send; keep their JSON text so a
    // handler can still report them in a remark rather than the frame failing as a whole.
    fn visit_seq<A: de::SeqAccess<'de>>(
        self,
        seq: A,
    ) -> std::result::Result<LenientString, A::Error> {
        let v = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(LenientString(Some(v.to_string())))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<LenientString, A::Error> {
        let v = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(LenientString(Some(v.to_string())))
    }
}

struct LenientExtFields(ExtFields);

impl<'de> Deserialize<'de> for LenientExtFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientExtFields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of header fields")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<LenientExtFields, A::Error> {
                let mut ext = ExtFields::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(k) = map.next_key::<String>()? {
                    let v: LenientString = map.next_value()?;
                    // A null value is an absent field, as in Java's map.
                    if let Some(v) = v.0 {
                        ext.insert(k, v);
                    }
                }
                Ok(LenientExtFields(ext))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<LenientExtFields, E> {
                Ok(LenientExtFields(ExtFields::new()))
            }
        }
        d.deserialize_any(V)
    }
}

// ---- ROCKETMQ binary header ----------------------------------------------------------------------

fn encode_binary_header(cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<()> {
    // The caller falls back to JSON for codes over 16 bits, so this conversion cannot fail there.
    let code = i16::try_from(cmd.code).map_err(|_| {
        ProtocolError::BadFrame(format!("code {} does not fit a binary header", cmd.code))
    })?;
    dst.put_i16(code);
    dst.put_u8(cmd.language.code());
    dst.put_i16(cmd.version as i16);
    dst.put_i32(cmd.opaque);
    dst.put_i32(cmd.flag);
    match &cmd.remark {
        Some(r) if !r.is_empty() => {
            dst.put_i32(r.len() as i32);
            dst.put_slice(r.as_bytes());
        }
        _ => dst.put_i32(0),
    }
    let ext_len: usize = cmd
        .ext_fields
        .iter()
        .map(|(k, v)| 2 + k.len() + 4 + v.len())
        .sum();
    dst.put_i32(ext_len as i32);
    for (k, v) in cmd.ext_fields.iter() {
        if k.len() > i16::MAX as usize {
            return Err(ProtocolError::BadFrame(format!(
                "extFields key of {} bytes does not fit a binary header",
                k.len()
            )));
        }
        dst.put_i16(k.len() as i16);
        dst.put_slice(k.as_bytes());
        dst.put_i32(v.len() as i32);
        dst.put_slice(v.as_bytes());
    }
    Ok(())
}

fn take<'a>(buf: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8]> {
    if buf.len() < n {
        return Err(ProtocolError::Truncated {
            what,
            needed: n - buf.len(),
        });
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn take_i16(buf: &mut &[u8], what: &'static str) -> Result<i16> {
    let b = take(buf, 2, what)?;
    Ok(i16::from_be_bytes([b[0], b[1]]))
}

fn take_i32(buf: &mut &[u8], what: &'static str) -> Result<i32> {
    let b = take(buf, 4, what)?;
    Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn take_len(buf: &mut &[u8], len: i64, limit: usize, what: &'static str) -> Result<usize> {
    if len < 0 || len as u64 > limit as u64 {
        return Err(ProtocolError::BadFrame(format!(
            "{what} length {len} is negative or larger than the header"
        )));
    }
    let _ = buf;
    Ok(len as usize)
}

fn utf8(bytes: &[u8], what: &'static str) -> Result<String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ProtocolError::BadFrame(format!("{what} is not valid UTF-8")))
}

fn decode_binary_header(header: Bytes) -> Result<RemotingCommand> {
    let total = header.len();
    let mut buf: &[u8] = &header;
    let code = take_i16(&mut buf, "code")? as i32;
    let language = LanguageCode::from_code(take(&mut buf, 1, "language")?[0]);
    let version = take_i16(&mut buf, "version")? as i32;
    let opaque = take_i32(&mut buf, "opaque")?;
    let flag = take_i32(&mut buf, "flag")?;
    let remark_len = take_i32(&mut buf, "remark length")?;
    let remark_len = take_len(&mut buf, remark_len as i64, total, "remark")?;
    let remark = if remark_len == 0 {
        None
    } else {
        Some(utf8(take(&mut buf, remark_len, "remark")?, "remark")?)
    };
    let ext_len = take_i32(&mut buf, "extFields length")?;
    let ext_len = take_len(&mut buf, ext_len as i64, total, "extFields")?;
    let mut ext_buf = take(&mut buf, ext_len, "extFields")?;
    let mut ext_fields = ExtFields::new();
    while !ext_buf.is_empty() {
        let klen = take_i16(&mut ext_buf, "extFields key length")?;
        let klen = take_len(&mut ext_buf, klen as i64, total, "extFields key")?;
        let key = utf8(take(&mut ext_buf, klen, "extFields key")?, "extFields key")?;
        let vlen = take_i32(&mut ext_buf, "extFields value length")?;
        let vlen = take_len(&mut ext_buf, vlen as i64, total, "extFields value")?;
        let value = utf8(
            take(&mut ext_buf, vlen, "extFields value")?,
            "extFields value",
        )?;
        // Java decodes a zero-length value as null; null entries are simply absent.
        if klen > 0 && vlen > 0 {
            ext_fields.push_unchecked(key, value);
        }
    }
    if !buf.is_empty() {
        return Err(ProtocolError::BadFrame(format!(
            "{} unexpected bytes after the binary header",
            buf.len()
        )));
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::RocketMq,
        body_tail: Box::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(st: SerializeType) -> RemotingCommand {
        let mut ext = ExtFields::new();
        ext.insert("topic", "T1");
        ext.insert("queueId", "3");
        ext.insert("properties", "TAGS\u{1}TagA\u{2}KEYS\u{1}k \"q\"\u{2}");
        RemotingCommand {
            code: 310,
            language: LanguageCode::Java,
            version: 479,
            opaque: 42,
            flag: 0,
            remark: Some("hello\nworld".into()),
            ext_fields: ext,
            body: Bytes::from_static(b"body-bytes"),
            serialize_type: st,
            body_tail: Box::default(),
        }
    }

    #[test]
    fn json_frame_round_trips() {
        let cmd = sample(SerializeType::Json);
        let bytes = cmd.to_bytes().unwrap();
        assert_eq!(bytes[4], 0, "JSON type byte");
        assert_eq!(RemotingCommand::decode_bytes(&bytes).unwrap(), cmd);
    }

    #[test]
    fn binary_frame_round_trips() {
        let cmd = sample(SerializeType::RocketMq);
        let bytes = cmd.to_bytes().unwrap();
        assert_eq!(bytes[4], 1, "ROCKETMQ type byte");
        assert_eq!(RemotingCommand::decode_bytes(&bytes).unwrap(), cmd);
    }

    #[test]
    fn json_header_matches_worked_example_bytes() {
        // Reference §10.1: the GET_ROUTEINFO_BY_TOPIC request for topic T1.
        let header = br#"{"code":105,"extFields":{"topic":"T1"},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":479}"#;
        let mut cmd = RemotingCommand::request(105);
        cmd.ext_fields.insert("topic", "T1");
        cmd.language = LanguageCode::Java;
        cmd.opaque = 7;
        cmd.version = 479;
        let bytes = cmd.to_bytes().unwrap();
        let l = header.len() as u32;
        let mut expected = Vec::new();
        expected.extend_from_slice(&(4 + l).to_be_bytes());
        expected.extend_from_slice(&l.to_be_bytes());
        expected.extend_from_slice(header);
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn json_response_matches_worked_example_bytes() {
        let header = br#"{"code":0,"flag":1,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":479}"#;
        let mut req = RemotingCommand::request(105);
        req.opaque = 7;
        let mut resp = RemotingCommand::response_to(&req, 0, None).with_body(&b"{}"[..]);
        resp.version = 479;
        let bytes = resp.to_bytes().unwrap();
        let l = header.len() as u32;
        assert_eq!(&bytes[0..4], &(4 + l + 2).to_be_bytes());
        assert_eq!(&bytes[4..8], &l.to_be_bytes());
        assert_eq!(&bytes[8..8 + l as usize], &header[..]);
        assert_eq!(&bytes[8 + l as usize..], b"{}");
    }

    #[test]
    fn binary_header_golden_bytes() {
        let mut cmd = RemotingCommand::request(105);
        cmd.language = LanguageCode::Java;
        cmd.version = 401;
        cmd.opaque = 7;
        cmd.ext_fields.insert("topic", "T1");
        cmd.serialize_type = SerializeType::RocketMq;
        let bytes = cmd.to_bytes().unwrap();
        let header: Vec<u8> = [
            &[0x00, 0x69][..], // code 105
            &[0x00],           // language JAVA
            &[0x01, 0x91],     // version 401
            &[0, 0, 0, 7],     // opaque
            &[0, 0, 0, 0],     // flag
            &[0, 0, 0, 0],     // remark: null
            &[0, 0, 0, 13],    // extFields byte length
            &[0, 5],           // key length
            b"topic",          // key
            &[0, 0, 0, 2],     // value length
            b"T1",             // value
        ]
        .concat();
        let mut expected = Vec::new();
        expected.extend_from_slice(&(4 + header.len() as u32).to_be_bytes());
        expected.extend_from_slice(&((1u32 << 24) | header.len() as u32).to_be_bytes());
        expected.extend_from_slice(&header);
        assert_eq!(&bytes[..], &expected[..]);
    }

    #[test]
    fn every_truncation_of_a_frame_is_an_error_not_a_panic() {
        for st in [SerializeType::Json, SerializeType::RocketMq] {
            let bytes = sample(st).to_bytes().unwrap();
            for cut in 0..bytes.len() {
                assert!(
                    RemotingCommand::decode_bytes(&bytes[..cut]).is_err(),
                    "{st:?} cut at {cut}"
                );
                let mut buf = BytesMut::from(&bytes[..cut]);
                assert_eq!(
                    RemotingCommand::decode_frame(&mut buf, DEFAULT_MAX_FRAME_BYTES).unwrap(),
                    None
                );
            }
        }
    }

    #[test]
    fn binary_header_truncated_inside_a_frame_is_rejected() {
        // Keep the frame length consistent but shrink the declared header so fields run short.
        let cmd = sample(SerializeType::RocketMq);
        let bytes = cmd.to_bytes().unwrap();
        let header_len = u32::from_be_bytes([0, bytes[5], bytes[6], bytes[7]]) as usize;
        for short in 0..header_len {
            let mut payload = BytesMut::new();
            payload.put_u32((1u32 << 24) | short as u32);
            payload.put_slice(&bytes[8..8 + short]);
            assert!(
                RemotingCommand::decode_payload(payload.freeze()).is_err(),
                "header cut to {short} bytes"
            );
        }
    }

    #[test]
    fn json_headers_that_are_not_objects_are_rejected() {
        for header in [
            &b"[310, \"JAVA\", 479, 42, 0]"[..],
            b"[]",
            b"310",
            b"\"code\"",
            b"null",
            b"",
            b"   ",
        ] {
            let mut payload = BytesMut::new();
            payload.put_u32(header.len() as u32);
            payload.put_slice(header);
            assert!(
                matches!(
                    RemotingCommand::decode_payload(payload.freeze()),
                    Err(ProtocolError::InvalidJson(_))
                ),
                "{:?}",
                String::from_utf8_lossy(header)
            );
        }
        // Leading whitespace before the object is still fine.
        let mut payload = BytesMut::new();
        let header = b" \n{\"code\":34}";
        payload.put_u32(header.len() as u32);
        payload.put_slice(header);
        assert_eq!(
            RemotingCommand::decode_payload(payload.freeze())
                .unwrap()
                .code,
            34
        );
    }

    #[test]
    fn oversized_and_negative_lengths_are_rejected() {
        let mut buf = BytesMut::new();
        buf.put_i32(-5);
        assert!(matches!(
            RemotingCommand::decode_frame(&mut buf, DEFAULT_MAX_FRAME_BYTES),
            Err(ProtocolError::BadFrame(_))
        ));
        let mut buf = BytesMut::new();
        buf.put_u32(DEFAULT_MAX_FRAME_BYTES as u32);
        assert!(matches!(
            RemotingCommand::decode_frame(&mut buf, DEFAULT_MAX_FRAME_BYTES),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        // header length larger than the frame
        let mut buf = BytesMut::new();
        buf.put_u32(8);
        buf.put_u32(100);
        buf.put_u32(0);
        assert!(RemotingCommand::decode_frame(&mut buf, 1024).is_err());
        // unknown serialize type
        let mut buf = BytesMut::new();
        buf.put_u32(4);
        buf.put_u32(7 << 24);
        assert!(matches!(
            RemotingCommand::decode_frame(&mut buf, 1024),
            Err(ProtocolError::UnknownSerializeType(7))
        ));
    }

    #[test]
    fn cpp_client_header_habits_are_accepted() {
        // Numbers and booleans as JSON values, no serializeTypeCurrentRPC, trailing newline.
        let header = b"{\"code\":310,\"extFields\":{\"e\":3,\"f\":0,\"k\":false,\"m\":\"1\",\"n\":null},\"flag\":0,\"language\":\"CPP\",\"opaque\":9,\"version\":0}\n";
        let mut frame = BytesMut::new();
        frame.put_u32(4 + header.len() as u32);
        frame.put_u32(header.len() as u32);
        frame.put_slice(header);
        let cmd = RemotingCommand::decode_frame(&mut frame, 1024)
            .unwrap()
            .unwrap();
        assert_eq!(cmd.code, 310);
        assert_eq!(cmd.language, LanguageCode::Cpp);
        assert_eq!(cmd.ext_fields.get("e"), Some("3"));
        assert_eq!(cmd.ext_fields.get("k"), Some("false"));
        assert_eq!(cmd.ext_fields.get("m"), Some("1"));
        assert_eq!(cmd.ext_fields.get("n"), None);
        assert!(frame.is_empty());
    }

    #[test]
    fn pop_codes_fall_back_to_json_in_binary_mode() {
        let mut cmd = sample(SerializeType::RocketMq);
        cmd.code = 200_050;
        let bytes = cmd.to_bytes().unwrap();
        assert_eq!(bytes[4], 0);
        let back = RemotingCommand::decode_bytes(&bytes).unwrap();
        assert_eq!(back.code, 200_050);
    }

    #[test]
    fn response_to_copies_opaque_and_serialize_type() {
        let req = sample(SerializeType::RocketMq);
        let resp = RemotingCommand::response_to(&req, 17, Some("no topic".into()));
        assert!(resp.is_response());
        assert!(!resp.is_oneway());
        assert_eq!(resp.opaque, 42);
        assert_eq!(resp.serialize_type, SerializeType::RocketMq);
    }

    #[test]
    fn two_frames_in_one_buffer_decode_in_order() {
        let mut buf = BytesMut::new();
        let mut a = sample(SerializeType::Json);
        a.opaque = 1;
        let mut b = sample(SerializeType::RocketMq);
        b.opaque = 2;
        a.encode(&mut buf).unwrap();
        b.encode(&mut buf).unwrap();
        buf.put_u8(0); // start of a third frame
        let first = RemotingCommand::decode_frame(&mut buf, 1 << 20)
            .unwrap()
            .unwrap();
        let second = RemotingCommand::decode_frame(&mut buf, 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!((first.opaque, second.opaque), (1, 2));
        assert_eq!(
            RemotingCommand::decode_frame(&mut buf, 1 << 20).unwrap(),
            None
        );
    }

    fn chunked_sample(st: SerializeType) -> (RemotingCommand, RemotingCommand) {
        let parts: Vec<Bytes> = vec![
            Bytes::from_static(b"first record "),
            Bytes::new(),
            Bytes::from(vec![0xAB; 3000]),
            Bytes::from_static(b"\x00\x01last"),
        ];
        let joined: Vec<u8> = parts.concat();
        let mut chunked = sample(st).with_body_chunks(parts);
        chunked.code = 11;
        let mut contiguous = sample(st).with_body(joined);
        contiguous.code = 11;
        (chunked, contiguous)
    }

    #[test]
    fn a_chunked_body_encodes_to_the_same_bytes_as_a_contiguous_one() {
        for st in [SerializeType::Json, SerializeType::RocketMq] {
            let (chunked, contiguous) = chunked_sample(st);
            assert!(chunked.is_body_chunked());
            assert_eq!(chunked.body_len(), contiguous.body.len());
            let a = chunked.to_bytes().unwrap();
            let b = contiguous.to_bytes().unwrap();
            assert_eq!(a, b, "{st:?}");
            // Decoding gives back one contiguous body.
            let back = RemotingCommand::decode_bytes(&a).unwrap();
            assert!(!back.is_body_chunked());
            assert_eq!(back, contiguous);
        }
    }

    #[test]
    fn head_followed_by_the_chunks_is_the_whole_frame() {
        for st in [SerializeType::Json, SerializeType::RocketMq] {
            let (chunked, contiguous) = chunked_sample(st);
            let mut wire = BytesMut::new();
            chunked.encode_head(&mut wire).unwrap();
            let head_len = wire.len();
            for c in chunked.body_chunks() {
                wire.extend_from_slice(c);
            }
            assert_eq!(&wire[..], &contiguous.to_bytes().unwrap()[..]);
            // The length prefix counts the body that encode_head did not write.
            let prefix = u32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
            assert_eq!(prefix + 4, head_len + chunked.body_len());
        }
    }

    #[test]
    fn make_body_contiguous_joins_the_chunks_in_order() {
        let (mut chunked, contiguous) = chunked_sample(SerializeType::Json);
        chunked.make_body_contiguous();
        assert!(!chunked.is_body_chunked());
        assert_eq!(chunked, contiguous);
        // with_body replaces every chunk.
        let (chunked, _) = chunked_sample(SerializeType::Json);
        let plain = chunked.with_body(&b"x"[..]);
        assert_eq!(plain.body_len(), 1);
        assert!(!plain.is_body_chunked());
    }

    #[test]
    fn one_or_no_chunk_is_a_plain_body() {
        let one = RemotingCommand::response(0, None)
            .with_body_chunks(vec![Bytes::new(), Bytes::from_static(b"abc")]);
        assert!(!one.is_body_chunked());
        assert_eq!(&one.body[..], b"abc");
        let none = RemotingCommand::response(0, None).with_body_chunks(Vec::new());
        assert_eq!(none.body_len(), 0);
        assert!(!none.is_body_chunked());
    }

    fn json_header_of(cmd: &RemotingCommand) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode_json_header(cmd, &mut buf);
        buf.to_vec()
    }

    fn header_corpus() -> Vec<Vec<u8>> {
        let mut out = vec![json_header_of(&sample(SerializeType::Json))];
        let mut odd = sample(SerializeType::Json);
        odd.remark = Some("tab\t quote\" back\\ ctl\u{1} é ✓ 😀".into());
        odd.ext_fields.insert("k\u{2}\"", "v\r\n\u{7f}");
        odd.code = -2_147_483_648;
        odd.opaque = 2_147_483_647;
        out.push(json_header_of(&odd));
        out.push(json_header_of(&RemotingCommand::request(105)));
        for text in [
            &br#"{"code":310,"extFields":{"e":3,"f":"0"},"flag":0,"language":"CPP","opaque":9,"version":0}"#[..],
            br#" { "code" : 11 , "language":"JAVA" ,"extFields" : { } , "x":"y", "y": -1 } "#,
            br#"{"code":"11"}"#,
            br#"{"code":11,"code":12}"#,
            br#"{"remark":null,"code":1}"#,
            br#"{"remark":"a\ud83d\ude00b","code":1}"#,
            br#"{"remark":"a\u00e9\/b","code":1}"#,
            br#"{"code":1.0}"#,
            br#"{"code":01}"#,
            br#"{"code":-0}"#,
            br#"{"code":99999999999}"#,
            br#"{"code":1,}"#,
            br#"{}"#,
            br#"{} x"#,
            br#"{"extFields":{"a":"1","a":"2"}}"#,
            br#"{"extFields":null}"#,
            br#"{"language":7}"#,
        ] {
            out.push(text.to_vec());
        }
        out
    }

    #[test]
    fn direct_json_reader_agrees_with_the_lenient_reader() {
        for header in header_corpus() {
            let lenient = decode_json_header_lenient(&header);
            if let Some(fast) = fast_json::decode(&header) {
                assert_eq!(Ok(fast), lenient, "{}", String::from_utf8_lossy(&header));
            }
        }
        // Our own encodings, the common case, take the direct path.
        for header in header_corpus().iter().take(3) {
            assert!(fast_json::decode(header).is_some());
        }
    }

    #[test]
    fn direct_json_reader_accepts_no_mutation_the_lenient_reader_rejects_or_reads_differently() {
        const BYTES: &[u8] = b"\"\\{}[],:0-9 x.eEnt\x01\x7f\xc3\xa9u";
        for header in header_corpus() {
            for at in 0..header.len() {
                let mut variants: Vec<Vec<u8>> = BYTES
                    .iter()
                    .map(|&b| {
                        let mut h = header.clone();
                        h[at] = b;
                        h
                    })
                    .collect();
                let mut cut = header.clone();
                cut.remove(at);
                variants.push(cut);
                variants.push(header[..at].to_vec());
                for h in variants {
                    if let Some(fast) = fast_json::decode(&h) {
                        assert_eq!(
                            Ok(fast),
                            decode_json_header_lenient(&h),
                            "{}",
                            String::from_utf8_lossy(&h)
                        );
                    }
                }
            }
        }
    }

    /// Byte-at-a-time escaping, as the encoder did before it scanned eight bytes at a time.
    fn reference_json_string(s: &str) -> Vec<u8> {
        let mut out = vec![b'"'];
        for ch in s.chars() {
            match ch {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                c => out.extend_from_slice(c.to_string().as_bytes()),
            }
        }
        out.push(b'"');
        out
    }

    #[test]
    fn json_strings_are_escaped_like_fastjson_at_every_position() {
        let mut texts: Vec<String> = (0u8..0x80).map(|b| (b as char).to_string()).collect();
        for pad in 0..17 {
            for special in ['"', '\\', '\u{1}', '\u{1f}', '\n', 'é', '😀', 'x'] {
                let mut t = "a".repeat(pad);
                t.push(special);
                t.push_str(&"b".repeat(17 - pad));
                texts.push(t);
            }
        }
        texts.push("TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2\u{2}UNIQ_KEY\u{1}0A0000050F8A\u{2}".into());
        texts.push(String::new());
        for t in texts {
            let mut buf = BytesMut::new();
            put_json_string(&mut buf, &t);
            assert_eq!(&buf[..], &reference_json_string(&t)[..], "{t:?}");
            // And the reader gives the text back.
            let mut header = b"{\"remark\":".to_vec();
            header.extend_from_slice(&buf);
            header.push(b'}');
            assert_eq!(
                fast_json::decode(&header).unwrap().remark.as_deref(),
                Some(&t[..])
            );
        }
    }
}
