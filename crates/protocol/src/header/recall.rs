//! RECALL_MESSAGE (370, 5.3+): withdraw a timer/delay message before delivery, and the recall
//! handle a send response's `recallHandle` carries for it.
//!
//! The handle is RocketMQ's `RecallMessageHandle.HandleV1`: URL-safe base64, with padding, of
//! `"v1 <topic> <broker name> <delivery time ms> <message id>"`. The broker that stored the message
//! makes it; any endpoint (a proxy routing the recall, the broker checking it) reads it.

use crate::error::{ProtocolError, Result};

crate::command_header! {
    pub struct RecallMessageRequestHeader {
        producer_group: Option<String> => "producerGroup",
        topic: String => "topic",
        /// The handle returned in the send response's `recallHandle`.
        recall_handle: String => "recallHandle",
    }
}

crate::command_header! {
    pub struct RecallMessageResponseHeader {
        msg_id: String => "msgId",
    }
}

const VERSION_1: &str = "v1";

/// The remark a Java broker answers for a handle it cannot read.
pub const INVALID_RECALL_HANDLE: &str = "recall handle is invalid";

/// What a recall handle names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallHandle {
    pub topic: String,
    pub broker_name: String,
    /// The delivery time in ms, as the decimal string the handle carries (the broker checks it
    /// only when recalling, as Java does).
    pub timestamp: String,
    /// The message's UNIQ_KEY (the client's message id).
    pub message_id: String,
}

impl RecallHandle {
    pub fn encode(&self) -> String {
        let raw = [
            VERSION_1,
            &self.topic,
            &self.broker_name,
            &self.timestamp,
            &self.message_id,
        ]
        .join(" ");
        base64_url_encode(raw.as_bytes())
    }

    /// Reads a handle as Java's `RecallMessageHandle.decodeHandle` does: padded or unpadded
    /// URL-safe base64, fields split on single spaces with trailing empty fields dropped, fields
    /// after the fifth ignored.
    pub fn decode(handle: &str) -> Result<Self> {
        let invalid = || ProtocolError::InvalidField {
            field: "recallHandle",
            value: handle.to_owned(),
        };
        let raw = base64_url_decode(handle).ok_or_else(invalid)?;
        let raw = String::from_utf8_lossy(&raw);
        let mut items: Vec<&str> = raw.split(' ').collect();
        while items.last().is_some_and(|s| s.is_empty()) {
            items.pop();
        }
        match items.as_slice() {
            [VERSION_1, topic, broker_name, timestamp, message_id, ..] => Ok(Self {
                topic: (*topic).to_owned(),
                broker_name: (*broker_name).to_owned(),
                timestamp: (*timestamp).to_owned(),
                message_id: (*message_id).to_owned(),
            }),
            _ => Err(invalid()),
        }
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// URL-safe base64 with `=` padding (Java's `Base64.getUrlEncoder()`).
fn base64_url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
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

/// Decodes URL-safe base64 as Java's `Base64.getUrlDecoder()` does: padding is optional, but when
/// present it must complete the last group; `None` on any other character or a bad length.
fn base64_url_decode(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim_end_matches('=');
    let padding = text.len() - trimmed.len();
    if padding > 2 || trimmed.len() % 4 == 1 || (padding > 0 && !text.len().is_multiple_of(4)) {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in trimmed.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecallHandle {
        RecallHandle {
            topic: "T".into(),
            broker_name: "broker-a".into(),
            timestamp: "1700000000000".into(),
            message_id: "01AB".into(),
        }
    }

    #[test]
    fn handles_match_java_bytes_and_round_trip() {
        let handle = sample();
        // base64url("v1 T broker-a 1700000000000 01AB"), padded as Java's URL encoder pads.
        assert_eq!(
            handle.encode(),
            "djEgVCBicm9rZXItYSAxNzAwMDAwMDAwMDAwIDAxQUI="
        );
        assert_eq!(RecallHandle::decode(&handle.encode()), Ok(handle.clone()));
        let unpadded = handle.encode().trim_end_matches('=').to_owned();
        assert_eq!(RecallHandle::decode(&unpadded), Ok(handle));
    }

    #[test]
    fn bad_handles_do_not_decode() {
        for bad in [
            "",
            "not a handle!",
            "a",
            "djE==",
            "djE===",
            &base64_url_encode(b"v2 T b 1 id"),
            &base64_url_encode(b"v1 T b 1"),
            // Java's split drops the trailing empty field: four fields.
            &base64_url_encode(b"v1 T b 1 "),
            &base64_url_encode(&[0xff, 0xfe, 0x20]),
        ] {
            assert!(RecallHandle::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn extra_fields_after_the_fifth_are_ignored() {
        let h = RecallHandle::decode(&base64_url_encode(b"v1 T b 1 id extra")).unwrap();
        assert_eq!(h.message_id, "id");
    }

    #[test]
    fn every_truncation_of_a_handle_is_refused_or_a_shorter_handle_without_panicking() {
        let full = sample().encode();
        for cut in 0..full.len() {
            match RecallHandle::decode(&full[..cut]) {
                // Cut inside the last field: still five fields, with a shorter message id.
                Ok(h) => assert!(sample().message_id.starts_with(&h.message_id)),
                Err(e) => assert!(matches!(e, ProtocolError::InvalidField { .. })),
            }
        }
        // Cutting before the last field's first byte leaves four fields.
        let raw = "v1 T broker-a 1700000000000 ";
        assert!(RecallHandle::decode(&base64_url_encode(raw.as_bytes())).is_err());
    }

    #[test]
    fn base64_round_trips_every_length() {
        for n in 0..10u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(97)).collect();
            assert_eq!(base64_url_decode(&base64_url_encode(&bytes)), Some(bytes));
        }
        assert_eq!(base64_url_encode(b"\xfb\xff"), "-_8=");
    }
}
