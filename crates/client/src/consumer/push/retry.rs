//! Retries of failed messages: CONSUMER_SEND_MSG_BACK to the broker, and the fallback a Java
//! consumer uses when the broker refuses or cannot be reached: the message is sent as a normal
//! message to the group's retry topic `%RETRY%<group>`, carrying its real topic in
//! `RETRY_TOPIC`, its first id in `ORIGIN_MESSAGE_ID` and its reconsume count (which the
//! producer moves into the send header). Redeliveries from the retry topic get their real topic
//! back before the listener sees them.

use apogee_protocol::message::keys;
use tracing::{debug, warn};

use super::PushInner;
use crate::message::{Message, MessageExt};
use crate::namespace;
use crate::util::now_ms;

/// Properties a pull or a consume call adds to a received message, meaningless on a new one.
const CLIENT_SIDE_PROPERTIES: &[&str] =
    &[keys::MIN_OFFSET, keys::MAX_OFFSET, keys::CONSUME_START_TIME];

/// The fallback retry message for `msg` (whose topic is the real topic as it travels):
/// `retry_topic` (as it travels), same body, flag and properties, with `RETRY_TOPIC`,
/// `ORIGIN_MESSAGE_ID` (kept from an earlier hop), `RECONSUME_TIME`, `MAX_RECONSUME_TIMES` and
/// delay level `3 + msg.reconsume_times` (`DefaultMQPushConsumerImpl.sendMessageBack`).
pub(crate) fn retry_message(
    msg: &MessageExt,
    retry_topic: &str,
    reconsume_times: i32,
    max_reconsume_times: i32,
) -> Message {
    let mut props = msg.properties.clone();
    for key in CLIENT_SIDE_PROPERTIES {
        props.remove(key);
    }
    props.remove(keys::TRAN_MSG);
    if props
        .get(keys::ORIGIN_MESSAGE_ID)
        .is_none_or(|id| id.trim().is_empty())
    {
        props.insert(keys::ORIGIN_MESSAGE_ID, msg.msg_id.clone());
    }
    props.insert(keys::RETRY_TOPIC, msg.topic.clone());
    props.insert(keys::RECONSUME_TIME, reconsume_times.to_string());
    props.insert(keys::MAX_RECONSUME_TIMES, max_reconsume_times.to_string());
    props.insert(
        keys::DELAY,
        3_i32.saturating_add(msg.reconsume_times).to_string(),
    );
    let mut out = Message::new(retry_topic, msg.body.clone()).with_flag(msg.flag);
    *out.properties_mut() = props;
    out
}

/// Prepares a pulled message for the listener (`resetRetryAndNamespace`): a redelivery from
/// the group's retry topic (`user_retry_topic`, without namespace) gets its real topic back
/// from `RETRY_TOPIC`, without namespace; `CONSUME_START_TIME` is stamped.
pub(crate) fn for_listener(
    mut msg: MessageExt,
    user_retry_topic: &str,
    namespace: Option<&str>,
) -> MessageExt {
    if msg.topic == user_retry_topic {
        if let Some(real) = msg.property(keys::RETRY_TOPIC) {
            let real = namespace::unwrap(namespace, real);
            msg.topic = real;
        }
    }
    msg.properties
        .insert(keys::CONSUME_START_TIME, now_ms().to_string());
    msg
}

impl PushInner {
    fn wire_message(&self, msg: &MessageExt) -> MessageExt {
        let mut wire = msg.clone();
        wire.topic = namespace::wrap(self.namespace.as_deref(), &msg.topic);
        wire
    }

    /// Hands a failed message back for a later redelivery (concurrent consumption): the
    /// broker's CONSUMER_SEND_MSG_BACK with `delay_level`, else the retry topic directly. False
    /// when both failed (the caller retries locally).
    pub(super) async fn send_back(&self, msg: &MessageExt, delay_level: i32) -> bool {
        let max = self.max_reconsume_times();
        let wire = self.wire_message(msg);
        match self
            .instance
            .send_message_back(&wire, &self.wire_group, delay_level, max)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                debug!(msg_id = %msg.msg_id, error = %e, "send-back refused, sending to the retry topic");
                let retry = retry_message(
                    &wire,
                    &self.retry_topic,
                    wire.reconsume_times.saturating_add(1),
                    max,
                );
                self.send_retry(retry, &msg.msg_id).await
            }
        }
    }

    /// Sends a message that exhausted its reconsume times (orderly consumption) to the
    /// dead-letter queue: CONSUMER_SEND_MSG_BACK with delay level -1, else the retry topic
    /// directly, where the broker's own rule (reconsume times past the maximum, or a group
    /// holding queue locks) diverts it. False when both failed.
    pub(super) async fn send_to_dead_letter_queue(&self, msg: &MessageExt) -> bool {
        let max = self.max_reconsume_times();
        let wire = self.wire_message(msg);
        match self
            .instance
            .send_message_back(&wire, &self.wire_group, -1, max)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                debug!(msg_id = %msg.msg_id, error = %e, "send-back refused, sending to the retry topic");
                let retry = retry_message(&wire, &self.retry_topic, wire.reconsume_times, max);
                self.send_retry(retry, &msg.msg_id).await
            }
        }
    }

    async fn send_retry(&self, retry: Message, msg_id: &str) -> bool {
        match self.fallback.send(retry).await {
            Ok(_) => true,
            Err(e) => {
                warn!(%msg_id, error = %e, "cannot hand a failed message back; it is retried locally");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_protocol::message::MessageProperties;

    fn received() -> MessageExt {
        let mut props = MessageProperties::new();
        props.set_tags("TagA");
        props.set_uniq_key("UNIQ1");
        props.insert(keys::MIN_OFFSET, "0");
        props.insert(keys::MAX_OFFSET, "9");
        props.insert(keys::CONSUME_START_TIME, "123");
        props.insert(keys::TRAN_MSG, "true");
        MessageExt {
            topic: "ns%Orders".into(),
            flag: 7,
            body: bytes::Bytes::from_static(b"body"),
            properties: props,
            msg_id: "UNIQ1".into(),
            reconsume_times: 2,
            ..Default::default()
        }
    }

    #[test]
    fn the_fallback_message_carries_the_real_topic_and_counts() {
        let m = retry_message(&received(), "%RETRY%ns%G", 3, 16);
        assert_eq!(m.topic(), "%RETRY%ns%G");
        assert_eq!(m.body().as_ref(), b"body");
        assert_eq!(m.flag(), 7);
        assert_eq!(m.property(keys::RETRY_TOPIC), Some("ns%Orders"));
        assert_eq!(m.property(keys::ORIGIN_MESSAGE_ID), Some("UNIQ1"));
        assert_eq!(m.property(keys::RECONSUME_TIME), Some("3"));
        assert_eq!(m.property(keys::MAX_RECONSUME_TIMES), Some("16"));
        assert_eq!(m.delay_level(), 5);
        assert_eq!(m.tags(), Some("TagA"));
        assert_eq!(m.uniq_key(), Some("UNIQ1"));
        for gone in [
            keys::MIN_OFFSET,
            keys::MAX_OFFSET,
            keys::CONSUME_START_TIME,
            keys::TRAN_MSG,
        ] {
            assert_eq!(m.property(gone), None, "{gone}");
        }
    }

    #[test]
    fn a_second_hop_keeps_the_first_origin_id() {
        let mut msg = received();
        msg.properties.insert(keys::ORIGIN_MESSAGE_ID, "FIRST");
        let m = retry_message(&msg, "%RETRY%G", 3, 16);
        assert_eq!(m.property(keys::ORIGIN_MESSAGE_ID), Some("FIRST"));
    }

    #[test]
    fn redeliveries_get_their_real_topic_back() {
        let mut msg = received();
        msg.topic = "%RETRY%G".into();
        msg.properties.insert(keys::RETRY_TOPIC, "ns%Orders");
        let m = for_listener(msg, "%RETRY%G", Some("ns"));
        assert_eq!(m.topic, "Orders");
        assert!(m.property(keys::CONSUME_START_TIME).is_some());

        // A message of another topic keeps its topic even with RETRY_TOPIC set.
        let mut other = received();
        other.topic = "Orders".into();
        other.properties.insert(keys::RETRY_TOPIC, "X");
        assert_eq!(for_listener(other, "%RETRY%G", None).topic, "Orders");
    }
}
