//! The broker's services for an endpoint embedded in the same process (the gRPC endpoint in
//! "local mode"). Like RocketMQ's `LocalMessageService`, each call builds the remoting request a
//! client would send and runs the broker's own processor on it in-process (no socket, no frame
//! codec), so sends, transaction ends, pulls and offset calls get exactly the validation and
//! behaviour that remoting clients get. Answers come back typed, failures as the RocketMQ response
//! code and remark ([`LocalError`]), which the caller maps onto its own protocol.

use std::net::SocketAddr;
use std::sync::Arc;

use apogee_protocol::body::TopicConfig;
use apogee_protocol::codes::pull_sys_flag;
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{
    CheckTransactionStateRequestHeader, CommandHeader, EndTransactionRequestHeader,
    GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader, GetMinOffsetRequestHeader,
    GetMinOffsetResponseHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader,
    RecallMessageRequestHeader, RecallMessageResponseHeader, SearchOffsetRequestHeader,
    SearchOffsetResponseHeader, SendMessageRequestHeader, SendMessageResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};
use apogee_protocol::message::{keys, sysflag, MessageProperties, MessageRecord};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{RequestContext, RequestHandler, Router};
use bytes::Bytes;

use crate::broker::BrokerInner;
use crate::names;
use crate::processor;

/// A call the broker refused: its RocketMQ response code and remark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalError {
    pub code: i32,
    pub remark: String,
}

impl LocalError {
    fn new(code: i32, remark: impl Into<String>) -> Self {
        Self {
            code,
            remark: remark.into(),
        }
    }

    fn from_response(response: &RemotingCommand) -> Self {
        Self::new(response.code, response.remark.clone().unwrap_or_default())
    }
}

impl std::fmt::Display for LocalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "broker answered code {}: {}", self.code, self.remark)
    }
}

impl std::error::Error for LocalError {}

pub type LocalResult<T> = std::result::Result<T, LocalError>;

/// One message to store, as a producer would send it.
#[derive(Debug, Clone, Default)]
pub struct LocalSend {
    pub topic: String,
    /// Written as `PGROUP` (transaction check-back group) and the header's producer group.
    pub producer_group: String,
    pub body: Bytes,
    /// Properties as stored (TAGS, KEYS, UNIQ_KEY, TRAN_MSG, TIMER_DELIVER_MS, ...).
    pub properties: MessageProperties,
    /// `MessageSysFlag` bits (compression, transaction prepared).
    pub sys_flag: i32,
    pub flag: i32,
    pub born_timestamp: i64,
    /// Negative: the broker picks a queue.
    pub queue_id: i32,
    pub reconsume_times: i32,
    /// The client, written as bornHost.
    pub peer: Option<SocketAddr>,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSendResult {
    /// SUCCESS, or FLUSH_DISK_TIMEOUT / FLUSH_SLAVE_TIMEOUT / SLAVE_NOT_AVAILABLE for a message
    /// stored but not made durable as asked.
    pub code: i32,
    /// The broker's offsetMsgId(s).
    pub offset_msg_id: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    /// For a transaction half message: the handle [`LocalServices::end_transaction`] takes.
    pub transaction_handle: Option<String>,
    /// For a message that went to the timer: the handle [`LocalServices::recall`] takes.
    pub recall_handle: Option<String>,
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionResolution {
    Commit,
    Rollback,
}

/// A transaction to end.
#[derive(Debug, Clone)]
pub struct LocalEndTransaction {
    pub topic: String,
    pub producer_group: String,
    /// The message's UNIQ_KEY.
    pub msg_id: String,
    /// [`LocalSendResult::transaction_handle`].
    pub transaction_handle: String,
    pub resolution: TransactionResolution,
    /// Answering a check-back rather than the producer's own decision.
    pub from_check: bool,
    pub peer: Option<SocketAddr>,
}

/// A pull of one queue.
#[derive(Debug, Clone)]
pub struct LocalPull {
    pub group: String,
    pub topic: String,
    pub queue_id: i32,
    pub offset: i64,
    pub max_messages: i32,
    /// `TAG` or `SQL92`.
    pub expression_type: String,
    pub expression: String,
    pub peer: Option<SocketAddr>,
}

/// What a pull found. `code` is SUCCESS (messages), PULL_NOT_FOUND, PULL_RETRY_IMMEDIATELY
/// (nothing matched the filter) or PULL_OFFSET_MOVED (the offset was out of range).
#[derive(Debug, Clone)]
pub struct LocalPullResult {
    pub code: i32,
    pub next_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    pub messages: Vec<MessageRecord>,
}

/// A transaction check-back for a producer the broker does not reach over remoting (one of the
/// embedded endpoint's clients): ask it how the transaction of `message` ended, then resolve it
/// with [`LocalServices::end_transaction`] (`from_check` set) and `transaction_handle`.
#[derive(Debug, Clone)]
pub struct LocalTransactionCheck {
    /// The half message's `PGROUP`.
    pub producer_group: String,
    /// The half message with its real topic and queue restored.
    pub message: MessageRecord,
    /// The handle of the re-queued copy the check is about.
    pub transaction_handle: String,
}

/// Called by the transaction check service for a group with no remoting producer connected;
/// returns true when the check reached one of the endpoint's producers. Called on a runtime
/// thread: it must not block.
pub type TransactionCheckHook = Arc<dyn Fn(LocalTransactionCheck) -> bool + Send + Sync>;

/// The typed check-back of a CHECK_TRANSACTION_STATE request built by the check service.
pub(crate) fn local_check(group: &str, request: &RemotingCommand) -> Option<LocalTransactionCheck> {
    let header = request
        .decode_header::<CheckTransactionStateRequestHeader>()
        .ok()?;
    let (message, _) = MessageRecord::decode_bytes(&request.body).ok()?;
    Some(LocalTransactionCheck {
        producer_group: group.to_owned(),
        message,
        transaction_handle: encode_transaction_handle(
            header.commit_log_offset,
            header.tran_state_table_offset,
        ),
    })
}

/// Handle to a running broker's services; cheap to clone.
#[derive(Clone)]
pub struct LocalServices {
    inner: Arc<BrokerInner>,
    router: Router,
}

impl std::fmt::Debug for LocalServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalServices")
            .field("broker", &self.inner.broker_addr)
            .finish_non_exhaustive()
    }
}

/// Peer reported for a call that names none.
fn default_peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl LocalServices {
    pub(crate) fn new(inner: Arc<BrokerInner>) -> Self {
        let router = processor::router(Arc::clone(&inner));
        Self { inner, router }
    }

    pub fn broker_name(&self) -> &str {
        &self.inner.config.broker_name
    }

    pub fn cluster_name(&self) -> &str {
        &self.inner.config.broker_cluster_name
    }

    /// 0 for a master.
    pub fn broker_id(&self) -> i64 {
        self.inner.config.broker_id
    }

    /// The address the broker advertises (its IP is what other endpoints should advertise too).
    pub fn store_host(&self) -> SocketAddr {
        self.inner.store_host
    }

    /// Queues of a topic created by a send (`defaultTopicQueueNums`).
    pub fn default_topic_queue_nums(&self) -> i32 {
        self.inner.config.default_topic_queue_nums
    }

    /// The broker-wide permission (`brokerPermission`).
    pub fn broker_permission(&self) -> i32 {
        self.inner.live.broker_permission()
    }

    /// The topic's config, if this broker has the topic.
    pub fn topic(&self, topic: &str) -> Option<TopicConfig> {
        self.inner.topics.select(topic)
    }

    /// The POP API (receive with receipt handles, ack, change of invisible time).
    pub fn pop_api(&self) -> crate::pop::PopApi {
        crate::pop::PopApi {
            inner: Arc::clone(&self.inner),
        }
    }

    /// The subscription group's config, if the broker has the group.
    pub fn subscription_group(
        &self,
        group: &str,
    ) -> Option<apogee_protocol::body::SubscriptionGroupConfig> {
        self.inner.groups.get(group)
    }

    /// Whether a send to a missing `topic` would create it (`autoCreateTopicEnable` and a
    /// valid, non-system name).
    pub fn can_auto_create_topic(&self, topic: &str) -> bool {
        self.inner.config.auto_create_topic_enable
            && names::validate_topic(topic).is_ok()
            && !names::is_not_allowed_send_topic(topic)
    }

    /// Installs (or with `None` removes) where check-backs go for producer groups that have no
    /// remoting producer connected. One hook per broker; a later call replaces the earlier one.
    pub fn set_transaction_check_hook(&self, hook: Option<TransactionCheckHook>) {
        self.inner.transactions.set_check_hook(hook);
    }

    /// Cancels the pending timer message of `topic` whose UNIQ_KEY is `uniq_key` (RecallMessage).
    /// The timer service reads the delete marker on its next poll, before the message's tick.
    pub async fn cancel_timer_message(
        &self,
        topic: &str,
        uniq_key: &str,
    ) -> LocalResult<crate::timer::CancelOutcome> {
        let store = Arc::clone(&self.inner.store);
        let host = self.inner.store_host;
        let (topic, uniq_key) = (topic.to_owned(), uniq_key.to_owned());
        tokio::task::spawn_blocking(move || {
            crate::timer::cancel_timer(&store, host, &topic, &uniq_key, crate::manager::now_ms())
        })
        .await
        .map_err(|e| LocalError::new(SYSTEM_ERROR, format!("cancel task failed: {e}")))?
        .map_err(|e| LocalError::new(SYSTEM_ERROR, format!("cannot store the cancel marker: {e}")))
    }

    /// Recalls the timer message `recall_handle` names through the RECALL_MESSAGE processor;
    /// returns its message id (UNIQ_KEY).
    pub async fn recall(
        &self,
        topic: &str,
        producer_group: Option<String>,
        recall_handle: &str,
        peer: Option<SocketAddr>,
    ) -> LocalResult<String> {
        let header = RecallMessageRequestHeader {
            producer_group,
            topic: topic.to_owned(),
            recall_handle: recall_handle.to_owned(),
        };
        let request = RemotingCommand::request_with_header(rc::RECALL_MESSAGE, &header);
        let response = self.invoke(peer, request).await;
        expect_success(&response)?;
        Ok(decode::<RecallMessageResponseHeader>(&response)?.msg_id)
    }

    /// Runs the broker's processor for `request` as if `peer` had sent it.
    pub async fn invoke(
        &self,
        peer: Option<SocketAddr>,
        request: RemotingCommand,
    ) -> RemotingCommand {
        let ctx =
            RequestContext::detached(peer.unwrap_or_else(default_peer), self.inner.store_host);
        let code = request.code;
        match self.router.handle(ctx, request).await {
            Some(response) => response,
            // Only oneway-style handlers answer nothing; say so rather than invent a success.
            None => RemotingCommand::response(
                SYSTEM_ERROR,
                Some(format!("request code {code} produced no response")),
            ),
        }
    }

    /// Stores one message through the send processor (topic checks and auto-create,
    /// transaction half messages, size limits, sync flush).
    pub async fn send(&self, message: LocalSend) -> LocalResult<LocalSendResult> {
        let half = message.sys_flag & sysflag::TRANSACTION_PREPARED_TYPE != 0;
        let header = SendMessageRequestHeader {
            producer_group: message.producer_group,
            topic: message.topic,
            default_topic: names::AUTO_CREATE_TOPIC_KEY_TOPIC.to_owned(),
            default_topic_queue_nums: self.inner.config.default_topic_queue_nums,
            queue_id: message.queue_id,
            sys_flag: message.sys_flag,
            born_timestamp: message.born_timestamp,
            flag: message.flag,
            properties: Some(message.properties.encode_to_string()),
            reconsume_times: Some(message.reconsume_times),
            unit_mode: Some(false),
            batch: Some(false),
            max_reconsume_times: None,
            broker_name: Some(self.inner.config.broker_name.clone()),
        };
        let request =
            RemotingCommand::request_with_header(rc::SEND_MESSAGE, &header).with_body(message.body);
        let response = self.invoke(message.peer, request).await;
        match response.code {
            SUCCESS | FLUSH_DISK_TIMEOUT | FLUSH_SLAVE_TIMEOUT | SLAVE_NOT_AVAILABLE => {}
            _ => return Err(LocalError::from_response(&response)),
        }
        let h: SendMessageResponseHeader = decode(&response)?;
        let transaction_handle = if half {
            let physical = physical_offset_of(&h.msg_id).ok_or_else(|| {
                LocalError::new(SYSTEM_ERROR, format!("unreadable offsetMsgId {}", h.msg_id))
            })?;
            Some(encode_transaction_handle(physical, h.queue_offset))
        } else {
            None
        };
        Ok(LocalSendResult {
            code: response.code,
            offset_msg_id: h.msg_id,
            queue_id: h.queue_id,
            queue_offset: h.queue_offset,
            transaction_handle,
            recall_handle: h.recall_handle,
        })
    }

    /// Commits or rolls back a half message through the END_TRANSACTION processor.
    pub async fn end_transaction(&self, end: LocalEndTransaction) -> LocalResult<()> {
        let (commit_log_offset, tran_state_table_offset) =
            decode_transaction_handle(&end.transaction_handle).ok_or_else(|| {
                LocalError::new(
                    INVALID_PARAMETER,
                    format!("unknown transaction id {}", end.transaction_handle),
                )
            })?;
        let header = EndTransactionRequestHeader {
            topic: Some(end.topic),
            producer_group: end.producer_group,
            tran_state_table_offset,
            commit_log_offset,
            commit_or_rollback: match end.resolution {
                TransactionResolution::Commit => sysflag::TRANSACTION_COMMIT_TYPE,
                TransactionResolution::Rollback => sysflag::TRANSACTION_ROLLBACK_TYPE,
            },
            from_transaction_check: end.from_check,
            msg_id: end.msg_id,
            transaction_id: Some(end.transaction_handle),
        };
        let request = RemotingCommand::request_with_header(rc::END_TRANSACTION, &header);
        let response = self.invoke(end.peer, request).await;
        if response.code == SUCCESS {
            Ok(())
        } else {
            Err(LocalError::from_response(&response))
        }
    }

    /// Reads up to `max_messages` from one queue through the pull processor (no long polling),
    /// with the subscription given in the request.
    pub async fn pull(&self, pull: LocalPull) -> LocalResult<LocalPullResult> {
        let header = PullMessageRequestHeader {
            consumer_group: pull.group,
            topic: pull.topic,
            queue_id: pull.queue_id,
            queue_offset: pull.offset,
            max_msg_nums: pull.max_messages,
            sys_flag: pull_sys_flag::FLAG_SUBSCRIPTION,
            commit_offset: 0,
            suspend_timeout_millis: 0,
            subscription: Some(pull.expression),
            sub_version: 0,
            expression_type: Some(pull.expression_type),
            max_msg_bytes: None,
            request_source: None,
            proxy_forward_client_id: None,
        };
        let request = RemotingCommand::request_with_header(rc::PULL_MESSAGE, &header);
        let response = self.invoke(pull.peer, request).await;
        match response.code {
            SUCCESS | PULL_NOT_FOUND | PULL_RETRY_IMMEDIATELY | PULL_OFFSET_MOVED => {}
            _ => return Err(LocalError::from_response(&response)),
        }
        let h: PullMessageResponseHeader = decode(&response)?;
        let mut messages = Vec::new();
        if response.code == SUCCESS {
            for record in MessageRecord::decode_all(&response.body) {
                let record = record.map_err(|e| {
                    LocalError::new(SYSTEM_ERROR, format!("unreadable stored message: {e}"))
                })?;
                messages.push(record);
            }
        }
        Ok(LocalPullResult {
            code: response.code,
            next_offset: h.next_begin_offset,
            min_offset: h.min_offset,
            max_offset: h.max_offset,
            messages,
        })
    }

    /// The group's committed offset of a queue; `None` if it has none.
    pub async fn query_consumer_offset(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
    ) -> LocalResult<Option<i64>> {
        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: topic.to_owned(),
            queue_id,
            set_zero_if_not_found: Some(false),
        };
        let request = RemotingCommand::request_with_header(rc::QUERY_CONSUMER_OFFSET, &header);
        let response = self.invoke(None, request).await;
        match response.code {
            SUCCESS => Ok(Some(
                decode::<QueryConsumerOffsetResponseHeader>(&response)?.offset,
            )),
            QUERY_NOT_FOUND => Ok(None),
            _ => Err(LocalError::from_response(&response)),
        }
    }

    pub async fn update_consumer_offset(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
    ) -> LocalResult<()> {
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: topic.to_owned(),
            queue_id,
            commit_offset: offset,
        };
        let request = RemotingCommand::request_with_header(rc::UPDATE_CONSUMER_OFFSET, &header);
        let response = self.invoke(None, request).await;
        if response.code == SUCCESS {
            Ok(())
        } else {
            Err(LocalError::from_response(&response))
        }
    }

    /// The queue's min (first readable) offset.
    pub async fn min_offset(&self, topic: &str, queue_id: i32) -> LocalResult<i64> {
        let header = GetMinOffsetRequestHeader {
            topic: topic.to_owned(),
            queue_id,
        };
        let request = RemotingCommand::request_with_header(rc::GET_MIN_OFFSET, &header);
        let response = self.invoke(None, request).await;
        expect_success(&response)?;
        Ok(decode::<GetMinOffsetResponseHeader>(&response)?.offset)
    }

    /// The queue's max offset (the offset the next message gets).
    pub async fn max_offset(&self, topic: &str, queue_id: i32) -> LocalResult<i64> {
        let header = GetMaxOffsetRequestHeader {
            topic: topic.to_owned(),
            queue_id,
            committed: true,
        };
        let request = RemotingCommand::request_with_header(rc::GET_MAX_OFFSET, &header);
        let response = self.invoke(None, request).await;
        expect_success(&response)?;
        Ok(decode::<GetMaxOffsetResponseHeader>(&response)?.offset)
    }

    /// The first offset whose message was stored at or after `timestamp_ms`.
    pub async fn offset_by_timestamp(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp_ms: i64,
    ) -> LocalResult<i64> {
        let header = SearchOffsetRequestHeader {
            topic: topic.to_owned(),
            queue_id,
            timestamp: timestamp_ms,
            boundary_type: None,
        };
        let request = RemotingCommand::request_with_header(rc::SEARCH_OFFSET_BY_TIMESTAMP, &header);
        let response = self.invoke(None, request).await;
        expect_success(&response)?;
        Ok(decode::<SearchOffsetResponseHeader>(&response)?.offset)
    }
}

fn expect_success(response: &RemotingCommand) -> LocalResult<()> {
    if response.code == SUCCESS {
        Ok(())
    } else {
        Err(LocalError::from_response(response))
    }
}

fn decode<H: CommandHeader>(response: &RemotingCommand) -> LocalResult<H> {
    response
        .decode_header::<H>()
        .map_err(|e| LocalError::new(SYSTEM_ERROR, format!("unreadable broker response: {e}")))
}

/// The commit-log offset at the end of an offsetMsgId (its last 16 hex digits).
fn physical_offset_of(offset_msg_id: &str) -> Option<i64> {
    let first = offset_msg_id.split(',').next()?;
    let tail = first.get(first.len().checked_sub(16)?..)?;
    u64::from_str_radix(tail, 16).ok().map(|v| v as i64)
}

/// A transaction handle names the half message: its commit-log offset and its offset in the half
/// queue, as 32 upper-case hex digits. It needs no broker-side state, so it survives restarts.
pub fn encode_transaction_handle(commit_log_offset: i64, queue_offset: i64) -> String {
    format!(
        "{:016X}{:016X}",
        commit_log_offset as u64, queue_offset as u64
    )
}

/// `(commit_log_offset, queue_offset)` of a handle made by [`encode_transaction_handle`].
pub fn decode_transaction_handle(handle: &str) -> Option<(i64, i64)> {
    if handle.len() != 32 || !handle.is_ascii() {
        return None;
    }
    let commit_log = u64::from_str_radix(&handle[..16], 16).ok()? as i64;
    let queue = u64::from_str_radix(&handle[16..], 16).ok()? as i64;
    Some((commit_log, queue))
}

/// The properties a message is stored with carry these; callers must not take them from users.
pub fn is_system_property(name: &str) -> bool {
    matches!(
        name,
        keys::TAGS
            | keys::KEYS
            | keys::UNIQ_KEY
            | keys::TRAN_MSG
            | keys::PGROUP
            | keys::DELAY
            | keys::WAIT
            | keys::CLUSTER
            | keys::SHARDING_KEY
            | keys::TIMER_DELIVER_MS
            | keys::TIMER_DELAY_MS
            | keys::TIMER_DELAY_SEC
            | keys::REAL_TOPIC
            | keys::REAL_QID
            | keys::RETRY_TOPIC
            | keys::MIN_OFFSET
            | keys::MAX_OFFSET
            | keys::RECONSUME_TIME
            | keys::MAX_RECONSUME_TIMES
            | keys::CHECK_IMMUNITY_TIME_IN_SECONDS
            | keys::TRAN_PREPARED_QUEUE_OFFSET
            | keys::POP_CK
            | keys::BORN_HOST
            | keys::BORN_TIMESTAMP
            | keys::TRACE_CONTEXT
            | keys::MSG_REGION
            | keys::TRACE_ON
            | keys::TRANSFER_FLAG
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_handles_round_trip_and_reject_garbage() {
        let handle = encode_transaction_handle(0x1234, 7);
        assert_eq!(handle, "00000000000012340000000000000007");
        assert_eq!(decode_transaction_handle(&handle), Some((0x1234, 7)));
        assert_eq!(decode_transaction_handle("abc"), None);
        assert_eq!(decode_transaction_handle(&"Z".repeat(32)), None);
        assert_eq!(decode_transaction_handle(&"é".repeat(16)), None);
    }

    #[test]
    fn physical_offset_is_read_from_the_end_of_an_offset_msg_id() {
        assert_eq!(
            physical_offset_of("7F00000100002A9F00000000000004D2"),
            Some(1234)
        );
        assert_eq!(physical_offset_of("short"), None);
    }
}
