//! RECALL_MESSAGE (370): RocketMQ 5.3's `RecallMessageProcessor`. A timer message's send response
//! carries a recall handle ([`send_recall_handle`]); recalling checks the handle against this
//! broker and the clock, then stores the timer's delete marker for the message's tick, so the
//! message is never delivered. Refusals use Java's codes and remarks: TOPIC_NOT_EXIST, then
//! ILLEGAL_OPERATION for a handle that is unreadable, for another topic or broker, or out of time.

use std::sync::Arc;

use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{
    RecallHandle, RecallMessageRequestHeader, RecallMessageResponseHeader, EXT_MSG_REGION,
    INVALID_RECALL_HANDLE,
};
use apogee_protocol::message::properties::keys;
use apogee_protocol::message::MessageProperties;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{HandlerFuture, RequestContext};

use super::{header, respond};
use crate::broker::BrokerInner;
use crate::manager::now_ms;
use crate::names;
use crate::schedule::round_deliver_ms;
use crate::timer::{self, CancelOutcome};

const UNAVAILABLE: &str = "recall failed, broker service not available";
const TIMESTAMP_INVALID: &str = "recall failed, timestamp invalid";
const EXECUTE_ERROR: &str = "recall failed, execute error";

/// `SendMessageProcessor.attachRecallHandle`: the handle of a message the send put in the timer
/// (`TIMER_OUT_MS` and `REAL_TOPIC` set, not a retry). Its time is one past the rounded delivery
/// time, so that the marker a recall stores rounds down into the same tick. Delay levels get none.
pub(crate) fn send_recall_handle(
    broker_name: &str,
    props: &MessageProperties,
    uniq_key: &str,
) -> Option<String> {
    let out_ms = props.get(keys::TIMER_OUT_MS)?.trim().parse::<i64>().ok()?;
    let real_topic = props.get(keys::REAL_TOPIC)?;
    if names::is_retry_topic(real_topic) {
        return None;
    }
    Some(
        RecallHandle {
            topic: real_topic.to_owned(),
            broker_name: broker_name.to_owned(),
            timestamp: out_ms.saturating_add(1).to_string(),
            message_id: uniq_key.to_owned(),
        }
        .encode(),
    )
}

pub(crate) fn handle(
    b: &Arc<BrokerInner>,
    _ctx: RequestContext,
    req: RemotingCommand,
) -> HandlerFuture {
    let checked = header::<RecallMessageRequestHeader>(&req).and_then(|h| check(b, &h, now_ms()));
    let handle = match checked {
        Ok(handle) => handle,
        Err(response) => return HandlerFuture::reply(stamp(b, response)),
    };
    let b = Arc::clone(b);
    HandlerFuture::new(async move {
        let store = Arc::clone(&b.store);
        let host = b.store_host;
        let precision_ms = b.config.timer_precision_ms.max(1) as i64;
        let h = handle.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            match timer::cancel_timer(&store, host, &h.topic, &h.message_id, now)? {
                // Not indexed yet (or gone): the marker goes to the tick the handle names.
                CancelOutcome::NotFound => {
                    let out_ms = h.timestamp.trim().parse::<i64>().unwrap_or(0);
                    let out_ms = round_deliver_ms(out_ms, precision_ms);
                    timer::store_delete_marker(&store, host, &h.topic, &h.message_id, out_ms, now)?;
                    Ok(CancelOutcome::Cancelled)
                }
                other => Ok(other),
            }
        })
        .await;
        let response = match outcome {
            Ok(Ok(CancelOutcome::TooLate)) => respond(ILLEGAL_OPERATION, TIMESTAMP_INVALID),
            Ok(Ok(_)) => {
                RemotingCommand::response(SUCCESS, None).with_header(&RecallMessageResponseHeader {
                    msg_id: handle.message_id,
                })
            }
            Ok(Err::<_, apogee_store::StoreError>(e)) => {
                tracing::warn!(topic = %handle.topic, "recall failed: {e}");
                respond(SYSTEM_ERROR, EXECUTE_ERROR)
            }
            Err(e) => {
                tracing::warn!(topic = %handle.topic, "recall task failed: {e}");
                respond(SYSTEM_ERROR, EXECUTE_ERROR)
            }
        };
        Some(stamp(&b, response))
    })
}

/// Java's checks, in Java's order; `Ok` is the handle to cancel.
fn check(
    b: &BrokerInner,
    h: &RecallMessageRequestHeader,
    now: i64,
) -> Result<RecallHandle, RemotingCommand> {
    if !b.config.recall_message_enable {
        return Err(respond(
            NO_PERMISSION,
            "recall failed, operation is forbidden",
        ));
    }
    if b.config.broker_id != 0 {
        return Err(respond(SLAVE_NOT_AVAILABLE, UNAVAILABLE));
    }
    if b.topics.select(&h.topic).is_none() {
        return Err(respond(
            TOPIC_NOT_EXIST,
            format!("recall failed, the topic[{}] not exist", h.topic),
        ));
    }
    let handle = RecallHandle::decode(&h.recall_handle)
        .map_err(|_| respond(ILLEGAL_OPERATION, INVALID_RECALL_HANDLE))?;
    if handle.topic != h.topic {
        return Err(respond(ILLEGAL_OPERATION, "recall failed, topic not match"));
    }
    if handle.broker_name != b.config.broker_name {
        return Err(respond(ILLEGAL_OPERATION, UNAVAILABLE));
    }
    // Java's `NumberUtils.toLong(.., -1)`: an unreadable time is in the past.
    let time_left_ms = handle.timestamp.parse::<i64>().unwrap_or(-1) - now;
    let max_delay_ms = i64::try_from(b.config.timer_max_delay_sec)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    if time_left_ms <= 0 || time_left_ms >= max_delay_ms {
        return Err(respond(ILLEGAL_OPERATION, TIMESTAMP_INVALID));
    }
    // Java stores the marker as a timer message, which a broker without timers refuses.
    if !b.config.timer_wheel_enable {
        return Err(respond(SYSTEM_ERROR, EXECUTE_ERROR));
    }
    Ok(handle)
}

/// Every recall response carries MSG_REGION, as Java's does.
fn stamp(b: &BrokerInner, mut response: RemotingCommand) -> RemotingCommand {
    response
        .ext_fields
        .insert(EXT_MSG_REGION, b.config.region_id.as_str());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> MessageProperties {
        let mut p = MessageProperties::new();
        for (k, v) in pairs {
            p.insert(*k, *v);
        }
        p
    }

    #[test]
    fn a_timer_message_gets_a_handle_one_past_its_rounded_time() {
        let p = props(&[("TIMER_OUT_MS", "1700000004000"), ("REAL_TOPIC", "T")]);
        let handle = send_recall_handle("broker-a", &p, "ID1").unwrap();
        assert_eq!(
            RecallHandle::decode(&handle).unwrap(),
            RecallHandle {
                topic: "T".into(),
                broker_name: "broker-a".into(),
                timestamp: "1700000004001".into(),
                message_id: "ID1".into(),
            }
        );
        // The marker a recall stores rounds back into the message's tick.
        assert_eq!(round_deliver_ms(1_700_000_004_001, 1000), 1_700_000_004_000);
    }

    #[test]
    fn delay_levels_retries_and_plain_messages_get_no_handle() {
        let delay = props(&[("DELAY", "3"), ("REAL_TOPIC", "T")]);
        assert_eq!(send_recall_handle("b", &delay, "ID"), None);
        let retry = props(&[("TIMER_OUT_MS", "5000"), ("REAL_TOPIC", "%RETRY%G")]);
        assert_eq!(send_recall_handle("b", &retry, "ID"), None);
        assert_eq!(send_recall_handle("b", &props(&[]), "ID"), None);
    }
}
