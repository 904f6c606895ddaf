//! POP consumption (RocketMQ 5.x `PopMessageProcessor` and friends, on the 4.x remoting codes,
//! and the API the gRPC layer builds ReceiveMessage / AckMessage / ChangeInvisibleDuration on).
//!
//! Messages are popped per message, not per queue: a pop returns messages and makes each one
//! invisible for `invisibleTime`; an ack with its receipt handle removes it for good; one not acked
//! in time becomes poppable again, in place (same topic, queue and offset) with its reconsume
//! count one higher, until it has been redelivered `retryMaxTimes` times, after which it goes to
//! `%DLQ%<group>`. See `docs/pop.md` for the model, the handle formats and what is persisted.
//!
//! - [`state`]: the in-flight table, a state machine without I/O.
//! - [`journal`]: the append-only file that rebuilds it after a restart.
//! - [`service`]: pops, acks and invisible-time changes against the store, long polling.

pub mod journal;
pub(crate) mod service;
pub mod state;

use std::sync::Arc;

use apogee_protocol::codes::response_code as code;
use bytes::Bytes;

use crate::broker::BrokerInner;
pub use state::AckOutcome;

/// `KeyBuilder.POP_ORDER_REVIVE_QUEUE`: the reviveQid of FIFO pops.
pub const ORDER_REVIVE_QID: i32 = 999;
/// `reviveQueueNum`: non-FIFO pops spread their reviveQid over this many values.
pub const REVIVE_QUEUE_NUM: i32 = 8;
/// Most messages one pop returns (Java refuses more than 32).
pub const MAX_POP_MESSAGES: i32 = 32;
/// Longest a pop may be held, whatever the client asks.
pub const MAX_POLL_MS: i64 = 300_000;

/// Where a group without a pop offset starts (`ConsumeInitMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitMode {
    /// The queue's min offset (0).
    #[default]
    Min,
    /// The queue's max offset: only messages sent from now on (1).
    Max,
}

impl InitMode {
    pub fn from_code(code: i32) -> Self {
        if code == 1 {
            InitMode::Max
        } else {
            InitMode::Min
        }
    }
}

/// One pop.
#[derive(Debug, Clone, Default)]
pub struct PopRequest {
    pub group: String,
    pub topic: String,
    /// `None`: every readable queue, starting from a random one.
    pub queue_id: Option<i32>,
    /// 1..=32.
    pub max_messages: i32,
    /// How long popped messages stay invisible (at least 1 ms).
    pub invisible_ms: i64,
    /// Long polling: how long to wait for a message when none is there (0 = answer at once).
    pub poll_ms: i64,
    pub init_mode: InitMode,
    /// `TAG` (default) or `SQL92`.
    pub expression_type: Option<String>,
    /// The filter expression; `None` or `*` = everything.
    pub expression: Option<String>,
    /// FIFO: at most one batch of a queue in flight; later messages wait until it is acked.
    pub fifo: bool,
    /// Accepted, not used (Java uses it to dedupe retried FIFO pops).
    pub attempt_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopStatus {
    Found,
    /// Nothing to pop (within `poll_ms`, if it was held).
    NoMessage,
    /// Too many pops are held already; not held.
    PollingFull,
}

/// One popped message.
#[derive(Debug, Clone)]
pub struct PoppedMessage {
    /// The stored record, RECONSUMETIMES set to `reconsume_times`.
    pub record: Bytes,
    pub queue_id: i32,
    pub queue_offset: u64,
    pub commit_log_offset: u64,
    /// Times this message was delivered before this delivery.
    pub reconsume_times: i32,
    /// `reconsume_times + 1` (gRPC `delivery_attempt`).
    pub delivery_attempt: u32,
    pub pop_time_ms: i64,
    pub invisible_ms: i64,
    /// The receipt handle (5.x `ReceiptHandle` text, 9 fields); ack and change with it.
    pub receipt_handle: String,
}

impl PoppedMessage {
    /// The 8-field POP_CK / `extraInfo` a 4.x client builds for this message.
    pub fn extra_info(&self) -> String {
        match self.receipt_handle.rsplit_once(' ') {
            Some((head, _)) => head.to_owned(),
            None => self.receipt_handle.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PopResult {
    pub status: PopStatus,
    pub messages: Vec<PoppedMessage>,
    pub pop_time_ms: i64,
    pub invisible_ms: i64,
    pub revive_qid: i32,
    /// Messages left in the queues looked at.
    pub rest_num: i64,
    /// Response header fields for remoting clients (`None` when empty).
    pub start_offset_info: Option<String>,
    pub msg_offset_info: Option<String>,
    pub order_count_info: Option<String>,
}

/// A request the broker refuses, with the RocketMQ response code it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PopError {
    NoPermission(String),
    TopicNotExist(String),
    GroupNotExist(String),
    InvalidParameter(String),
    /// Bad queue id in an ack or change (MESSAGE_ILLEGAL, as Java).
    MessageIllegal(String),
    /// Offset outside the queue, or (change of invisible time) a handle that is not current.
    NoMessage(String),
    SubscriptionParseFailed(String),
    /// An unparsable receipt handle.
    InvalidHandle(String),
    System(String),
}

impl PopError {
    pub fn code(&self) -> i32 {
        match self {
            PopError::NoPermission(_) => code::NO_PERMISSION,
            PopError::TopicNotExist(_) => code::TOPIC_NOT_EXIST,
            PopError::GroupNotExist(_) => code::SUBSCRIPTION_GROUP_NOT_EXIST,
            PopError::InvalidParameter(_) | PopError::InvalidHandle(_) => code::INVALID_PARAMETER,
            PopError::MessageIllegal(_) => code::MESSAGE_ILLEGAL,
            PopError::NoMessage(_) => code::NO_MESSAGE,
            PopError::SubscriptionParseFailed(_) => code::SUBSCRIPTION_PARSE_FAILED,
            PopError::System(_) => code::SYSTEM_ERROR,
        }
    }

    pub fn remark(&self) -> &str {
        match self {
            PopError::NoPermission(r)
            | PopError::TopicNotExist(r)
            | PopError::GroupNotExist(r)
            | PopError::InvalidParameter(r)
            | PopError::MessageIllegal(r)
            | PopError::NoMessage(r)
            | PopError::SubscriptionParseFailed(r)
            | PopError::InvalidHandle(r)
            | PopError::System(r) => r,
        }
    }
}

impl std::fmt::Display for PopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.remark(), self.code())
    }
}

impl std::error::Error for PopError {}

/// A receipt handle: RocketMQ's POP_CK / `extraInfo` (8 space-separated fields: startOffset
/// popTime invisibleTime reviveQid retryFlag brokerName queueId queueOffset) or the 5.x
/// `ReceiptHandle` (the same plus commitLogOffset). The first 7 fields are `ExtraInfoUtil`'s
/// short form, accepted with the queue offset taken from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptHandle {
    pub start_offset: i64,
    pub pop_time_ms: i64,
    pub invisible_ms: i64,
    pub revive_qid: i32,
    /// "0" normal topic, "1"/"2" pop retry topic.
    pub retry_flag: String,
    pub broker_name: String,
    pub queue_id: i32,
    pub queue_offset: Option<i64>,
    pub commit_log_offset: Option<i64>,
}

impl ReceiptHandle {
    pub fn parse(text: &str) -> Result<Self, PopError> {
        let bad = || PopError::InvalidHandle(format!("invalid receipt handle: {text:?}"));
        let f: Vec<&str> = text.split(' ').collect();
        if f.len() < 7 {
            return Err(bad());
        }
        let int = |i: usize| -> Result<i64, PopError> {
            f.get(i).and_then(|s| s.parse::<i64>().ok()).ok_or_else(bad)
        };
        let opt = |i: usize| -> Result<Option<i64>, PopError> {
            match f.get(i) {
                None => Ok(None),
                Some(s) => s.parse::<i64>().map(Some).map_err(|_| bad()),
            }
        };
        Ok(ReceiptHandle {
            start_offset: int(0)?,
            pop_time_ms: int(1)?,
            invisible_ms: int(2)?,
            revive_qid: i32::try_from(int(3)?).map_err(|_| bad())?,
            retry_flag: f.get(4).copied().unwrap_or("0").to_owned(),
            broker_name: f.get(5).copied().unwrap_or("").to_owned(),
            queue_id: i32::try_from(int(6)?).map_err(|_| bad())?,
            queue_offset: opt(7)?,
            commit_log_offset: opt(8)?,
        })
    }

    /// The text form: 8 fields, 9 with a commit log offset.
    pub fn encode(&self) -> String {
        let mut s = format!(
            "{} {} {} {} {} {} {}",
            self.start_offset,
            self.pop_time_ms,
            self.invisible_ms,
            self.revive_qid,
            self.retry_flag,
            self.broker_name,
            self.queue_id
        );
        if let Some(o) = self.queue_offset {
            s.push_str(&format!(" {o}"));
            if let Some(c) = self.commit_log_offset {
                s.push_str(&format!(" {c}"));
            }
        }
        s
    }

    pub fn is_fifo(&self) -> bool {
        self.revive_qid == ORDER_REVIVE_QID
    }
}

/// A new delivery after a change of invisible time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedInvisible {
    pub pop_time_ms: i64,
    pub invisible_ms: i64,
    pub revive_qid: i32,
    /// The new receipt handle (same form as the one given, with the new times).
    pub receipt_handle: String,
}

/// The POP API of a running broker, for the gRPC layer. Cheap to clone.
#[derive(Clone)]
pub struct PopApi {
    pub(crate) inner: Arc<BrokerInner>,
}

impl PopApi {
    /// Pops, holding the call up to `poll_ms` when nothing is there. Dropping the future
    /// cancels the wait.
    pub async fn pop(&self, request: PopRequest) -> Result<PopResult, PopError> {
        service::pop(&self.inner, request).await
    }

    /// Acks the delivery `handle` names. `queue_offset` is required when the handle has only 7
    /// fields.
    pub fn ack(
        &self,
        group: &str,
        topic: &str,
        handle: &str,
        queue_offset: Option<i64>,
    ) -> Result<AckOutcome, PopError> {
        let h = ReceiptHandle::parse(handle)?;
        let offset = h
            .queue_offset
            .or(queue_offset)
            .ok_or_else(|| PopError::InvalidHandle("the handle has no queue offset".into()))?;
        service::ack(&self.inner, group, topic, h.queue_id, offset, &h)
    }

    /// Makes the delivery `handle` names invisible for `invisible_ms` from now; returns the new
    /// handle. A handle that is not current (acked, redelivered, changed) is refused with
    /// [`PopError::NoMessage`].
    pub fn change_invisible(
        &self,
        group: &str,
        topic: &str,
        handle: &str,
        queue_offset: Option<i64>,
        invisible_ms: i64,
    ) -> Result<ChangedInvisible, PopError> {
        let h = ReceiptHandle::parse(handle)?;
        let offset = h
            .queue_offset
            .or(queue_offset)
            .ok_or_else(|| PopError::InvalidHandle("the handle has no queue offset".into()))?;
        service::change_invisible(
            &self.inner,
            group,
            topic,
            h.queue_id,
            offset,
            &h,
            invisible_ms,
        )
    }

    /// Pops held by long polling right now.
    pub fn parked(&self) -> usize {
        self.inner.pop.parked()
    }

    /// Messages popped and not yet acked, across every group.
    pub fn in_flight(&self) -> usize {
        self.inner.pop.in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_parse_in_all_three_lengths_and_round_trip() {
        let five = "10 1700000000000 30000 3 0 broker-a 2 12 4096";
        let h = ReceiptHandle::parse(five).unwrap();
        assert_eq!(
            h,
            ReceiptHandle {
                start_offset: 10,
                pop_time_ms: 1_700_000_000_000,
                invisible_ms: 30_000,
                revive_qid: 3,
                retry_flag: "0".into(),
                broker_name: "broker-a".into(),
                queue_id: 2,
                queue_offset: Some(12),
                commit_log_offset: Some(4096),
            }
        );
        assert_eq!(h.encode(), five);
        let eight = "10 1700000000000 30000 999 0 broker-a 2 12";
        let h8 = ReceiptHandle::parse(eight).unwrap();
        assert!(h8.is_fifo());
        assert_eq!(h8.encode(), eight);
        let seven = ReceiptHandle::parse("10 1 2 3 0 b 2").unwrap();
        assert_eq!(seven.queue_offset, None);
    }

    #[test]
    fn malformed_handles_are_errors_not_panics() {
        for bad in [
            "",
            "1 2 3",
            "a 1 2 3 0 b 2 3",
            "1 2 3 4 0 b x 3",
            "1 2 3 4 0 b 2 x",
        ] {
            let e = ReceiptHandle::parse(bad).unwrap_err();
            assert_eq!(e.code(), code::INVALID_PARAMETER, "{bad}");
        }
    }
}
