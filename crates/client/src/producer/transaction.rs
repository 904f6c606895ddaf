//! Transactional messages, client side: a half message (`TRAN_MSG=true`, `PGROUP=<group>`) is
//! sent, the local transaction runs, and END_TRANSACTION (oneway) commits or rolls it back.
//! When the outcome never arrived, the broker asks again with CHECK_TRANSACTION_STATE and the
//! [`TransactionListener`] answers from the application's own records.

use std::any::Any;
use std::fmt;

use apogee_protocol::codes::request_code;
use apogee_protocol::header::{CheckTransactionStateRequestHeader, EndTransactionRequestHeader};
use apogee_protocol::message::sysflag;
use apogee_protocol::RemotingCommand;

use crate::instance::EXT_BROKER_NAME;
use crate::message::{Message, MessageExt, SendResult};

/// The outcome of a local transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalTransactionState {
    /// Deliver the message.
    CommitMessage,
    /// Discard the message.
    RollbackMessage,
    /// Not known yet; the broker will ask again later.
    Unknown,
}

impl LocalTransactionState {
    /// The END_TRANSACTION `commitOrRollback` value (a `MessageSysFlag` transaction type).
    pub fn commit_or_rollback(self) -> i32 {
        match self {
            LocalTransactionState::CommitMessage => sysflag::TRANSACTION_COMMIT_TYPE,
            LocalTransactionState::RollbackMessage => sysflag::TRANSACTION_ROLLBACK_TYPE,
            LocalTransactionState::Unknown => sysflag::TRANSACTION_NOT_TYPE,
        }
    }

    /// Java's enum name.
    pub fn name(self) -> &'static str {
        match self {
            LocalTransactionState::CommitMessage => "COMMIT_MESSAGE",
            LocalTransactionState::RollbackMessage => "ROLLBACK_MESSAGE",
            LocalTransactionState::Unknown => "UNKNOW",
        }
    }
}

impl fmt::Display for LocalTransactionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The application side of transactional messages.
///
/// Both methods are plain functions. `execute_local` runs on the task that called
/// [`Producer::send_in_transaction`](crate::Producer::send_in_transaction) (use
/// [`Producer::send_in_transaction_with`](crate::Producer::send_in_transaction_with) for an
/// async local transaction); `check_local` runs on tokio's blocking pool, so it may block on
/// a database call.
pub trait TransactionListener: Send + Sync + 'static {
    /// Runs the local transaction after the half message was stored. `arg` is what the caller
    /// passed to `send_in_transaction`.
    fn execute_local(&self, msg: &Message, arg: &(dyn Any + Send + Sync)) -> LocalTransactionState;

    /// Reports the outcome of the local transaction of `msg` (a half message whose outcome the
    /// broker never received).
    fn check_local(&self, msg: &MessageExt) -> LocalTransactionState;
}

/// What a transactional send returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionSendResult {
    /// The half message's send result.
    pub send_result: SendResult,
    /// What the local transaction decided (rollback when the half message was not stored
    /// cleanly).
    pub local_state: LocalTransactionState,
}

/// END_TRANSACTION after a transactional send, as `DefaultMQProducerImpl.endTransaction` builds
/// it: the half message's queue offset and commit-log offset (decoded from its offset id), its
/// `UNIQ_KEY` and transaction id.
pub(crate) fn end_transaction_request(
    wire_topic: &str,
    producer_group: &str,
    send_result: &SendResult,
    commit_log_offset: i64,
    broker_name: &str,
    state: LocalTransactionState,
    remark: Option<String>,
) -> RemotingCommand {
    let header = EndTransactionRequestHeader {
        topic: Some(wire_topic.to_owned()),
        producer_group: producer_group.to_owned(),
        tran_state_table_offset: send_result.queue_offset,
        commit_log_offset,
        commit_or_rollback: state.commit_or_rollback(),
        from_transaction_check: false,
        msg_id: send_result.msg_id.clone(),
        transaction_id: send_result.transaction_id.clone(),
    };
    let mut request = RemotingCommand::request_with_header(request_code::END_TRANSACTION, &header);
    request.ext_fields.insert(EXT_BROKER_NAME, broker_name);
    request.remark = remark;
    request
}

/// END_TRANSACTION answering a CHECK_TRANSACTION_STATE (`fromTransactionCheck=true`), echoing
/// the check's offsets and ids.
pub(crate) fn check_answer_request(
    check: &CheckTransactionStateRequestHeader,
    msg: &MessageExt,
    producer_group: &str,
    state: LocalTransactionState,
    remark: Option<String>,
) -> RemotingCommand {
    let msg_id = msg
        .properties
        .uniq_key()
        .map(str::to_owned)
        .unwrap_or_else(|| msg.msg_id.clone());
    let header = EndTransactionRequestHeader {
        topic: check.topic.clone(),
        producer_group: producer_group.to_owned(),
        tran_state_table_offset: check.tran_state_table_offset,
        commit_log_offset: check.commit_log_offset,
        commit_or_rollback: state.commit_or_rollback(),
        from_transaction_check: true,
        msg_id,
        transaction_id: check.transaction_id.clone(),
    };
    let mut request = RemotingCommand::request_with_header(request_code::END_TRANSACTION, &header);
    if let Some(bname) = check.broker_name.as_deref() {
        request.ext_fields.insert(EXT_BROKER_NAME, bname);
    }
    request.remark = remark;
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::SendStatus;
    use apogee_protocol::body::MessageQueue;
    use apogee_protocol::message::MessageProperties;

    #[test]
    fn states_map_to_commit_or_rollback_values() {
        assert_eq!(LocalTransactionState::CommitMessage.commit_or_rollback(), 8);
        assert_eq!(
            LocalTransactionState::RollbackMessage.commit_or_rollback(),
            12
        );
        assert_eq!(LocalTransactionState::Unknown.commit_or_rollback(), 0);
    }

    #[test]
    fn end_transaction_carries_offsets_and_ids_of_the_half_message() {
        let sr = SendResult {
            status: SendStatus::SendOk,
            msg_id: "UNIQ".into(),
            offset_msg_id: "0A00000100002A9F0000000000001234".into(),
            queue: MessageQueue::new("T", "broker-a", 1),
            queue_offset: 9,
            transaction_id: Some("TX".into()),
            region_id: "DefaultRegion".into(),
            trace_on: true,
        };
        let req = end_transaction_request(
            "T",
            "G",
            &sr,
            0x1234,
            "broker-a",
            LocalTransactionState::CommitMessage,
            None,
        );
        assert_eq!(req.code, 37);
        let get = |k: &str| req.ext_fields.get(k).map(str::to_owned);
        assert_eq!(get("topic").as_deref(), Some("T"));
        assert_eq!(get("producerGroup").as_deref(), Some("G"));
        assert_eq!(get("tranStateTableOffset").as_deref(), Some("9"));
        assert_eq!(get("commitLogOffset").as_deref(), Some("4660"));
        assert_eq!(get("commitOrRollback").as_deref(), Some("8"));
        assert_eq!(get("fromTransactionCheck").as_deref(), Some("false"));
        assert_eq!(get("msgId").as_deref(), Some("UNIQ"));
        assert_eq!(get("transactionId").as_deref(), Some("TX"));
        assert_eq!(get("bname").as_deref(), Some("broker-a"));
    }

    #[test]
    fn check_answer_echoes_the_check_and_marks_itself() {
        let check = CheckTransactionStateRequestHeader {
            topic: Some("T".into()),
            tran_state_table_offset: 5,
            commit_log_offset: 100,
            msg_id: Some("UNIQ".into()),
            transaction_id: Some("TX".into()),
            offset_msg_id: None,
            broker_name: Some("broker-a".into()),
        };
        let mut props = MessageProperties::new();
        props.set_uniq_key("UNIQ");
        let msg = MessageExt {
            properties: props,
            ..Default::default()
        };
        let req = check_answer_request(
            &check,
            &msg,
            "G",
            LocalTransactionState::RollbackMessage,
            None,
        );
        let h: EndTransactionRequestHeader = req.decode_header().unwrap();
        assert!(h.from_transaction_check);
        assert_eq!(h.commit_or_rollback, 12);
        assert_eq!(h.tran_state_table_offset, 5);
        assert_eq!(h.commit_log_offset, 100);
        assert_eq!(h.msg_id, "UNIQ");
        assert_eq!(h.transaction_id.as_deref(), Some("TX"));
        assert_eq!(req.ext_fields.get("bname"), Some("broker-a"));
    }
}
