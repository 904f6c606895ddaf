//! BATCH_ACK_MESSAGE (200151) body: acknowledgements of popped messages, one bit per message
//! (`body/BatchAckMessageRequestBody.java`, `body/BatchAck.java`).

use serde::{Deserialize, Serialize};

use super::JsonBody;
use crate::json::lenient;

/// `body/BatchAckMessageRequestBody.java`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BatchAckMessageRequestBody {
    pub acks: Vec<BatchAck>,
    pub broker_name: String,
}

impl JsonBody for BatchAckMessageRequestBody {}

/// The acks of one pop result (`body/BatchAck.java`). Written with Java's short keys; the long
/// names are read too.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchAck {
    /// Java `BitSet.toByteArray()` (little-endian bits): bit i acks offset `start_offset + i`.
    /// Written as base64, as fastjson writes a `byte[]`; read from base64 or an array of bytes.
    #[serde(rename = "b", alias = "bitSet", with = "bit_bytes")]
    pub bit_set: Vec<u8>,
    #[serde(
        rename = "c",
        alias = "consumerGroup",
        deserialize_with = "lenient::string"
    )]
    pub consumer_group: String,
    #[serde(
        rename = "it",
        alias = "invisibleTime",
        deserialize_with = "lenient::int64"
    )]
    pub invisible_time: i64,
    #[serde(rename = "pt", alias = "popTime", deserialize_with = "lenient::int64")]
    pub pop_time: i64,
    #[serde(rename = "q", alias = "queueId", deserialize_with = "lenient::int32")]
    pub queue_id: i32,
    /// `"1"` when the messages came from a pop retry topic.
    #[serde(rename = "r", alias = "retry", deserialize_with = "lenient::string")]
    pub retry: String,
    #[serde(
        rename = "rq",
        alias = "reviveQueueId",
        deserialize_with = "lenient::int32"
    )]
    pub revive_queue_id: i32,
    #[serde(
        rename = "so",
        alias = "startOffset",
        deserialize_with = "lenient::int64"
    )]
    pub start_offset: i64,
    #[serde(rename = "t", alias = "topic", deserialize_with = "lenient::string")]
    pub topic: String,
}

impl BatchAck {
    /// Indexes of the set bits, ascending.
    pub fn acked_indexes(&self) -> impl Iterator<Item = u32> + '_ {
        self.bit_set
            .iter()
            .enumerate()
            .flat_map(|(byte_index, &byte)| {
                (0..8u32).filter_map(move |bit| {
                    if byte & (1 << bit) != 0 {
                        u32::try_from(byte_index)
                            .ok()?
                            .checked_mul(8)?
                            .checked_add(bit)
                    } else {
                        None
                    }
                })
            })
    }

    /// The acked queue offsets, ascending.
    pub fn acked_offsets(&self) -> impl Iterator<Item = i64> + '_ {
        let start = self.start_offset;
        self.acked_indexes().map(move |i| start + i64::from(i))
    }

    /// Sets bit `index`, growing the bytes as needed (Java trims trailing zero bytes; so does this,
    /// since only set bits add bytes).
    pub fn set_acked(&mut self, index: u32) {
        let byte = (index / 8) as usize;
        if self.bit_set.len() <= byte {
            self.bit_set.resize(byte + 1, 0);
        }
        if let Some(b) = self.bit_set.get_mut(byte) {
            *b |= 1 << (index % 8);
        }
    }
}

/// `byte[]` the way fastjson writes it (base64, standard alphabet, padded) and reads it (base64 or
/// an array of numbers, signed or not).
mod bit_bytes {
    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_any(BytesVisitor)
    }

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk.first().copied().unwrap_or(0),
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        let text = text.trim_end_matches('=');
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        let mut acc: u32 = 0;
        let mut bits = 0;
        for c in text.bytes() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' | b'-' => 62,
                b'/' | b'_' => 63,
                _ => return None,
            };
            acc = (acc << 6) | u32::from(v);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        // A lone trailing character carries fewer than 8 bits: not valid base64.
        (bits < 6).then_some(out)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("base64 text or an array of bytes")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            decode(v).ok_or_else(|| E::custom("invalid base64 in bit set"))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(n) = seq.next_element::<i64>()? {
                if !(-128..=255).contains(&n) {
                    return Err(de::Error::custom(format!("{n} is not a byte")));
                }
                out.push(n as u8);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<u8>, E> {
            Ok(Vec::new())
        }
    }
}

#[cfg(test)]
mod base64_tests {
    use super::bit_bytes::{decode, encode};

    #[test]
    fn base64_matches_known_vectors_and_round_trips() {
        let vectors: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (&[0xFF, 0x01, 0x80], "/wGA"),
        ];
        for (raw, text) in vectors {
            assert_eq!(encode(raw), text);
            assert_eq!(decode(text).as_deref(), Some(raw));
        }
    }

    #[test]
    fn base64_rejects_bad_characters_and_lone_trailing_character() {
        assert_eq!(decode("Zm9v!"), None);
        assert_eq!(decode("Z"), None);
        assert_eq!(decode("Zm9vY"), None);
    }
}
