//! The properties string of a message: `name \u{1} value \u{2}` for every entry, UTF-8 on the wire.
//! It travels in the send header (`properties` / `i`) and is stored verbatim in the record.
//!
//! Decoding follows RocketMQ's reader: a segment counts only with a non-empty key and a non-empty
//! value; the value runs from the first `\u{1}` to the segment end; a later duplicate key wins.
//! Because both separators are ASCII, the raw bytes can be scanned without decoding them first.

use std::borrow::Cow;
use std::collections::HashSet;

use bytes::{BufMut, Bytes};

/// Separates a name from its value (`MessageDecoder.NAME_VALUE_SEPARATOR`).
pub const NAME_VALUE_SEPARATOR: u8 = 1;
/// Ends every entry (`MessageDecoder.PROPERTY_SEPARATOR`).
pub const PROPERTY_SEPARATOR: u8 = 2;
/// Separates several keys inside the `KEYS` property (`MessageConst.KEY_SEPARATOR`).
pub const KEY_SEPARATOR: char = ' ';

/// Names of the well-known properties (`MessageConst`).
pub mod keys {
    /// Space-separated business keys, indexed by the broker.
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    /// waitStoreMsgOK, default true.
    pub const WAIT: &str = "WAIT";
    /// Delay level (1-based).
    pub const DELAY: &str = "DELAY";
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QID: &str = "REAL_QID";
    /// "true" for transaction half messages.
    pub const TRAN_MSG: &str = "TRAN_MSG";
    /// Producer group.
    pub const PGROUP: &str = "PGROUP";
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    pub const BUYER_ID: &str = "BUYER_ID";
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    pub const TRANSFER_FLAG: &str = "TRANSFER_FLAG";
    pub const CORRECTION_FLAG: &str = "CORRECTION_FLAG";
    pub const MQ2_FLAG: &str = "MQ2_FLAG";
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    pub const MSG_REGION: &str = "MSG_REGION";
    pub const TRACE_ON: &str = "TRACE_ON";
    /// The client unique id, the user-visible msgId.
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    pub const EXTEND_UNIQ_INFO: &str = "EXTEND_UNIQ_INFO";
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
    pub const INNER_NUM: &str = "INNER_NUM";
    pub const INNER_BASE: &str = "INNER_BASE";
    pub const DUP_INFO: &str = "DUP_INFO";
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
    pub const TRAN_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
    pub const TRANSACTION_ID: &str = "__transactionId__";
    pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    pub const INSTANCE_ID: &str = "INSTANCE_ID";
    pub const CORRELATION_ID: &str = "CORRELATION_ID";
    pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
    /// Request-reply message time-to-live (`PROPERTY_MESSAGE_TTL`).
    pub const TTL: &str = "TTL";
    pub const ARRIVE_TIME: &str = "ARRIVE_TIME";
    pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
    pub const CLUSTER: &str = "CLUSTER";
    pub const MSG_TYPE: &str = "MSG_TYPE";
    /// Reserved for the broker's pop checkpoints; stripped from client sends.
    pub const POP_CK: &str = "POP_CK";
    pub const POP_CK_OFFSET: &str = "POP_CK_OFFSET";
    pub const FIRST_POP_TIME: &str = "1ST_POP_TIME";
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
    pub const FORWARD_QUEUE_ID: &str = "PROPERTY_FORWARD_QUEUE_ID";
    pub const REDIRECT: &str = "REDIRECT";
    pub const INNER_MULTI_DISPATCH: &str = "INNER_MULTI_DISPATCH";
    pub const INNER_MULTI_QUEUE_OFFSET: &str = "INNER_MULTI_QUEUE_OFFSET";
    pub const TRACE_CONTEXT: &str = "TRACE_CONTEXT";
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    pub const TIMER_ENQUEUE_MS: &str = "TIMER_ENQUEUE_MS";
    pub const TIMER_DEQUEUE_MS: &str = "TIMER_DEQUEUE_MS";
    pub const TIMER_ROLL_TIMES: &str = "TIMER_ROLL_TIMES";
    pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
    pub const TIMER_DEL_UNIQKEY: &str = "TIMER_DEL_UNIQKEY";
    pub const TIMER_DEL_MS: &str = "TIMER_DEL_MS";
    pub const TIMER_DELAY_LEVEL: &str = "TIMER_DELAY_LEVEL";
    pub const BORN_HOST: &str = "__BORNHOST";
    pub const BORN_TIMESTAMP: &str = "BORN_TIMESTAMP";
    /// Optional properties CRC appended by 5.x stores (reference §3.2).
    pub const CRC32: &str = "__CRC32#";
    pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
    pub const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";
    /// Properties whose name starts with this are never stored.
    pub const TRANSIENT_PREFIX: &str = "__RMQ.TRANSIENT.";
    pub const TRANSIENT_TOPIC_CONFIG: &str = "__RMQ.TRANSIENT.TOPIC_SYS_FLAG";
    pub const TRANSIENT_GROUP_CONFIG: &str = "__RMQ.TRANSIENT.GROUP_SYS_FLAG";
}

/// Iterates the valid `(name, value)` pairs of a raw properties string, in order, duplicates included.
#[derive(Debug, Clone)]
pub struct PropertyIter<'a> {
    rest: &'a [u8],
}

/// The valid `(name, value)` pairs of `raw`, as byte slices borrowed from it.
pub fn iter(raw: &[u8]) -> PropertyIter<'_> {
    PropertyIter { rest: raw }
}

impl<'a> Iterator for PropertyIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let (segment, rest) = match self.rest.iter().position(|&b| b == PROPERTY_SEPARATOR) {
                Some(end) => (&self.rest[..end], &self.rest[end + 1..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            if let Some(sep) = segment.iter().position(|&b| b == NAME_VALUE_SEPARATOR) {
                if sep > 0 && sep + 1 < segment.len() {
                    return Some((&segment[..sep], &segment[sep + 1..]));
                }
            }
        }
        None
    }
}

/// The value of `name` in the raw properties string (the last valid occurrence, as Java's map
/// keeps), without decoding anything else.
pub fn find<'a>(raw: &'a [u8], name: &str) -> Option<&'a [u8]> {
    iter(raw)
        .filter(|(k, _)| *k == name.as_bytes())
        .last()
        .map(|(_, v)| v)
}

/// Like [`find`], as text; invalid UTF-8 becomes U+FFFD as Java's decoder does.
pub fn find_str<'a>(raw: &'a [u8], name: &str) -> Option<Cow<'a, str>> {
    find(raw, name).map(String::from_utf8_lossy)
}

/// The space-separated keys of a `KEYS` value, empty pieces skipped.
pub fn split_keys(value: &str) -> impl Iterator<Item = &str> {
    value.split(KEY_SEPARATOR).filter(|k| !k.is_empty())
}

/// A message's properties as an insertion-ordered map. Order has no meaning to readers (Java writes
/// HashMap order); keeping it makes encoding deterministic. Lookups are linear: messages carry few
/// properties, and decoding deduplicates in one pass, so hostile input stays linear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    entries: Vec<(String, String)>,
}

impl MessageProperties {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
        }
    }

    /// Parses a raw properties string. Never fails: segments without a name or value are dropped,
    /// invalid UTF-8 is replaced, and the last of duplicate names wins.
    pub fn decode(raw: &[u8]) -> Self {
        let pairs: Vec<(&[u8], &[u8])> = iter(raw).collect();
        let mut seen: HashSet<&[u8]> = HashSet::with_capacity(pairs.len());
        let mut entries = Vec::with_capacity(pairs.len());
        // Walk backwards so the last occurrence of a name is the one kept.
        for (k, v) in pairs.into_iter().rev() {
            if seen.insert(k) {
                entries.push((
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
        }
        entries.reverse();
        Self { entries }
    }

    pub fn decode_str(raw: &str) -> Self {
        Self::decode(raw.as_bytes())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` to `value`, keeping the entry's position when it exists; returns the old value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> Option<String> {
        let name = name.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == name) {
            Some((_, old)) => Some(std::mem::replace(old, value)),
            None => {
                self.entries.push((name, value));
                None
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let index = self.entries.iter().position(|(k, _)| k == name)?;
        Some(self.entries.remove(index).1)
    }

    /// Keeps only the entries for which `keep` returns true (e.g. dropping transient properties).
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.entries.retain(|(k, v)| keep(k, v));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn tags(&self) -> Option<&str> {
        self.get(keys::TAGS)
    }

    pub fn set_tags(&mut self, tags: impl Into<String>) {
        self.insert(keys::TAGS, tags);
    }

    /// The keys of the `KEYS` property, split on spaces.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.get(keys::KEYS).into_iter().flat_map(split_keys)
    }

    /// Sets `KEYS` to the given keys joined with single spaces.
    pub fn set_keys<I, S>(&mut self, message_keys: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut joined = String::new();
        for key in message_keys {
            if !joined.is_empty() {
                joined.push(KEY_SEPARATOR);
            }
            joined.push_str(key.as_ref());
        }
        self.insert(keys::KEYS, joined);
    }

    pub fn uniq_key(&self) -> Option<&str> {
        self.get(keys::UNIQ_KEY)
    }

    pub fn set_uniq_key(&mut self, uniq_key: impl Into<String>) {
        self.insert(keys::UNIQ_KEY, uniq_key);
    }

    /// Bytes of the encoded string.
    pub fn encoded_len(&self) -> usize {
        self.entries
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum()
    }

    /// Appends `name \u{1} value \u{2}` for every entry. Names and values are written as they are:
    /// one containing a separator byte would not read back, so callers must not store such text.
    /// Panics only if `buf` is a fixed-size buffer without room, like any `BufMut` write.
    pub fn encode_into<B: BufMut>(&self, buf: &mut B) {
        for (k, v) in &self.entries {
            buf.put_slice(k.as_bytes());
            buf.put_u8(NAME_VALUE_SEPARATOR);
            buf.put_slice(v.as_bytes());
            buf.put_u8(PROPERTY_SEPARATOR);
        }
    }

    /// The encoded string, as carried in the send header.
    pub fn encode_to_string(&self) -> String {
        let mut out = String::with_capacity(self.encoded_len());
        for (k, v) in &self.entries {
            out.push_str(k);
            out.push(char::from(NAME_VALUE_SEPARATOR));
            out.push_str(v);
            out.push(char::from(PROPERTY_SEPARATOR));
        }
        out
    }

    /// The encoded string as bytes, ready for a record's PROPERTIES field.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.encode_to_string())
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for MessageProperties {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(items: T) -> Self {
        let mut props = MessageProperties::new();
        for (k, v) in items {
            props.insert(k, v);
        }
        props
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for MessageProperties {
    fn extend<T: IntoIterator<Item = (K, V)>>(&mut self, items: T) {
        for (k, v) in items {
            self.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_writes_name_soh_value_stx_for_each_entry() {
        let mut props = MessageProperties::new();
        props.insert(keys::TAGS, "TagA");
        props.insert(keys::KEYS, "order-1");
        props.insert(keys::WAIT, "true");
        let expected = "TAGS\u{1}TagA\u{2}KEYS\u{1}order-1\u{2}WAIT\u{1}true\u{2}";
        assert_eq!(props.encode_to_string(), expected);
        assert_eq!(props.encoded_len(), expected.len());
        assert_eq!(&props.to_bytes()[..], expected.as_bytes());
        let mut buf = Vec::new();
        props.encode_into(&mut buf);
        assert_eq!(buf, expected.as_bytes());
        assert_eq!(MessageProperties::new().encode_to_string(), "");
    }

    #[test]
    fn decode_round_trips_encode_including_unicode() {
        let props: MessageProperties = [
            (keys::TAGS, "标签"),
            ("用户", "值 with spaces"),
            ("emoji", "\u{1F600}"),
            (keys::UNIQ_KEY, "7F0000010A8C18B4AAC2650DB5A40000"),
        ]
        .into_iter()
        .collect();
        let decoded = MessageProperties::decode(&props.to_bytes());
        assert_eq!(decoded, props);
        assert_eq!(decoded.tags(), Some("标签"));
        assert_eq!(decoded.uniq_key(), Some("7F0000010A8C18B4AAC2650DB5A40000"));
    }

    #[test]
    fn decode_drops_segments_without_name_or_value() {
        let raw = "\u{1}v\u{2}k\u{1}\u{2}\u{2}novalue\u{2}ok\u{1}1\u{2}x\u{2}a\u{1}b";
        let props = MessageProperties::decode_str(raw);
        // "a\u{1}b" lacks the trailing separator but is still a valid last segment.
        assert_eq!(
            props.iter().collect::<Vec<_>>(),
            vec![("ok", "1"), ("a", "b")]
        );
    }

    #[test]
    fn decode_drops_a_segment_whose_first_separator_starts_it_even_if_another_follows() {
        // Java looks only at the first \u{1}: at position 0 the key is empty, so the whole
        // segment is dropped.
        let props = MessageProperties::decode_str("\u{1}k\u{1}v\u{2}");
        assert!(props.is_empty());
    }

    #[test]
    fn decode_keeps_later_separators_inside_the_value() {
        let props = MessageProperties::decode_str("k\u{1}a\u{1}b\u{2}");
        assert_eq!(props.get("k"), Some("a\u{1}b"));
    }

    #[test]
    fn decode_keeps_the_last_of_duplicate_names() {
        let raw = "k\u{1}first\u{2}other\u{1}x\u{2}k\u{1}second\u{2}";
        let props = MessageProperties::decode_str(raw);
        assert_eq!(props.get("k"), Some("second"));
        assert_eq!(props.len(), 2);
        assert_eq!(find(raw.as_bytes(), "k"), Some(&b"second"[..]));
    }

    #[test]
    fn decode_of_empty_or_separator_only_input_is_empty() {
        for raw in ["", "\u{2}", "\u{1}", "\u{2}\u{2}\u{1}\u{2}", "ab"] {
            assert!(MessageProperties::decode_str(raw).is_empty(), "{raw:?}");
        }
    }

    #[test]
    fn decode_replaces_invalid_utf8_instead_of_failing() {
        let raw = b"k\x01\xff\xfe\x02TAGS\x01A\x02";
        let props = MessageProperties::decode(raw);
        assert_eq!(props.get("k"), Some("\u{FFFD}\u{FFFD}"));
        assert_eq!(props.tags(), Some("A"));
        assert_eq!(find_str(raw, "k").as_deref(), Some("\u{FFFD}\u{FFFD}"));
    }

    #[test]
    fn find_reads_one_value_without_decoding_the_rest() {
        let raw = b"TAGS\x01TagA\x02KEYS\x01k1 k2\x02";
        assert_eq!(find(raw, keys::TAGS), Some(&b"TagA"[..]));
        assert_eq!(find(raw, keys::UNIQ_KEY), None);
        // A name must match a whole key, not a prefix.
        assert_eq!(find(raw, "TAG"), None);
    }

    #[test]
    fn keys_are_split_on_spaces_and_joined_with_one_space() {
        let mut props = MessageProperties::new();
        props.set_keys(["k1", "k2", "k3"]);
        assert_eq!(props.get(keys::KEYS), Some("k1 k2 k3"));
        assert_eq!(props.keys().collect::<Vec<_>>(), vec!["k1", "k2", "k3"]);
        props.insert(keys::KEYS, " a  b ");
        assert_eq!(props.keys().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(MessageProperties::new().keys().count(), 0);
    }

    #[test]
    fn insert_replaces_in_place_and_remove_and_retain_work() {
        let mut props = MessageProperties::new();
        assert_eq!(props.insert("a", "1"), None);
        props.insert("b", "2");
        assert_eq!(props.insert("a", "3"), Some("1".to_owned()));
        assert_eq!(
            props.iter().collect::<Vec<_>>(),
            vec![("a", "3"), ("b", "2")]
        );
        assert_eq!(props.remove("a"), Some("3".to_owned()));
        assert_eq!(props.remove("a"), None);
        props.insert("__RMQ.TRANSIENT.X", "1");
        props.retain(|k, _| !k.starts_with(keys::TRANSIENT_PREFIX));
        assert_eq!(props.iter().collect::<Vec<_>>(), vec![("b", "2")]);
        assert!(props.contains_key("b"));
    }

    #[test]
    fn decode_of_many_distinct_names_is_fast() {
        // 8000 tiny entries fit in the 32767-byte limit; decoding must stay linear.
        let mut raw = Vec::new();
        for i in 0..8000u32 {
            raw.extend_from_slice(format!("{i:x}\u{1}v\u{2}").as_bytes());
        }
        let props = MessageProperties::decode(&raw);
        assert_eq!(props.len(), 8000);
    }

    #[test]
    fn well_known_names_match_rocketmq() {
        assert_eq!(keys::FIRST_POP_TIME, "1ST_POP_TIME");
        assert_eq!(keys::SHARDING_KEY, "__SHARDINGKEY");
        assert_eq!(keys::TRANSACTION_ID, "__transactionId__");
        assert_eq!(keys::BORN_HOST, "__BORNHOST");
        assert_eq!(keys::CRC32, "__CRC32#");
        assert_eq!(keys::FORWARD_QUEUE_ID, "PROPERTY_FORWARD_QUEUE_ID");
        assert_eq!(keys::TTL, "TTL");
    }
}
