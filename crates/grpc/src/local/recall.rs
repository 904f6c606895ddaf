//! RecallMessage. A DELAY message sent through the timer gets a recall handle in its send
//! result, in RocketMQ 5.3's format (`RecallMessageHandle.HandleV1`): URL-safe base64, with
//! padding, of `"v1 <topic> <broker name> <delivery time ms> <message id>"`. Recalling decodes it,
//! checks it is for this topic and broker and still in the future, and cancels the timer message;
//! refusals answer as the broker's ILLEGAL_OPERATION does, with BAD_REQUEST and its remark.

use apogee_broker::local::LocalServices;
use apogee_broker::CancelOutcome;

use crate::pb;
use crate::status::{ok, RpcError, RpcResult};

const VERSION_1: &str = "v1";
const INVALID_HANDLE: &str = "recall handle is invalid";

/// What a recall handle names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallHandle {
    pub topic: String,
    pub broker_name: String,
    /// The delivery time in ms, as the decimal string the handle carries.
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

    /// Reads a handle; like Java, extra fields after the fifth are ignored.
    pub fn decode(handle: &str) -> Option<Self> {
        let raw = String::from_utf8(base64_url_decode(handle)?).ok()?;
        let mut items = raw.split(' ');
        if items.next()? != VERSION_1 {
            return None;
        }
        let mut next = || items.next().map(str::to_owned);
        Some(Self {
            topic: next()?,
            broker_name: next()?,
            timestamp: next()?,
            message_id: next()?,
        })
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// URL-safe base64 with `=` padding (Java's `Base64.getUrlEncoder()`).
pub fn base64_url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
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

/// Decodes URL-safe base64, padded or not; `None` on any other character or a bad length.
pub fn base64_url_decode(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim_end_matches('=');
    if text.len() - trimmed.len() > 2 || trimmed.len() % 4 == 1 {
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

fn illegal(remark: &str) -> RpcError {
    RpcError::new(pb::Code::BadRequest, remark)
}

/// The handle a delay message's send result carries, if it went to the timer.
pub(super) fn handle_for(
    services: &LocalServices,
    topic: &str,
    deliver_ms: Option<&str>,
    message_id: &str,
) -> String {
    match deliver_ms {
        Some(ts) if services.timers_enabled() && !topic.contains(' ') => RecallHandle {
            topic: topic.to_owned(),
            broker_name: services.broker_name().to_owned(),
            timestamp: ts.to_owned(),
            message_id: message_id.to_owned(),
        }
        .encode(),
        _ => String::new(),
    }
}

/// Cancels the delay message `request.recall_handle` names.
pub(super) async fn recall(
    services: &LocalServices,
    request: pb::RecallMessageRequest,
    now_ms: i64,
) -> RpcResult<pb::RecallMessageResponse> {
    let topic = super::required_name(&request.topic, "topic")?;
    if services.topic(topic).is_none() {
        return Err(RpcError::new(
            pb::Code::TopicNotFound,
            format!("recall failed, the topic[{topic}] not exist"),
        ));
    }
    let handle =
        RecallHandle::decode(&request.recall_handle).ok_or_else(|| illegal(INVALID_HANDLE))?;
    if handle.topic != topic {
        return Err(illegal("recall failed, topic not match"));
    }
    if handle.broker_name != services.broker_name() {
        return Err(illegal("recall failed, broker service not available"));
    }
    let time_left_ms = handle.timestamp.parse::<i64>().unwrap_or(-1) - now_ms;
    if time_left_ms <= 0 || time_left_ms >= services.timer_max_delay_ms() {
        return Err(illegal("recall failed, timestamp invalid"));
    }
    let outcome = services
        .cancel_timer_message(topic, &handle.message_id)
        .await
        .map_err(super::map_broker_error)?;
    match outcome {
        // The broker stores its delete marker whether or not it finds the message.
        CancelOutcome::Cancelled | CancelOutcome::NotFound => Ok(pb::RecallMessageResponse {
            status: Some(ok()),
            message_id: handle.message_id,
        }),
        CancelOutcome::TooLate => Err(illegal("recall failed, timestamp invalid")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_match_java_bytes_and_round_trip() {
        let handle = RecallHandle {
            topic: "T".into(),
            broker_name: "broker-a".into(),
            timestamp: "1700000000000".into(),
            message_id: "01AB".into(),
        };
        // base64url("v1 T broker-a 1700000000000 01AB"), padded as Java's URL encoder pads.
        assert_eq!(
            handle.encode(),
            "djEgVCBicm9rZXItYSAxNzAwMDAwMDAwMDAwIDAxQUI="
        );
        assert_eq!(RecallHandle::decode(&handle.encode()), Some(handle.clone()));
        let unpadded = handle.encode().trim_end_matches('=').to_owned();
        assert_eq!(RecallHandle::decode(&unpadded), Some(handle));
    }

    #[test]
    fn bad_handles_do_not_decode() {
        for bad in [
            "",
            "not a handle!",
            "a",
            &base64_url_encode(b"v2 T b 1 id"),
            &base64_url_encode(b"v1 T b 1"),
            &base64_url_encode(&[0xff, 0xfe, 0x20]),
        ] {
            assert_eq!(RecallHandle::decode(bad), None, "{bad:?}");
        }
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
