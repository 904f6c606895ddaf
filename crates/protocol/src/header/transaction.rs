//! END_TRANSACTION (37, producer -> broker, oneway) and CHECK_TRANSACTION_STATE (39, broker ->
//! producer, oneway), RESUME_CHECK_HALF_MESSAGE (323).

crate::command_header! {
    pub struct EndTransactionRequestHeader {
        topic: Option<String> => "topic",
        producer_group: String => "producerGroup",
        /// The half message's consume-queue offset.
        tran_state_table_offset: i64 => "tranStateTableOffset",
        /// The half message's commit-log offset.
        commit_log_offset: i64 => "commitLogOffset",
        /// `MessageSysFlag` transaction type: 0 unknown, 8 commit, 12 rollback.
        commit_or_rollback: i32 => "commitOrRollback",
        /// True when answering a CHECK_TRANSACTION_STATE.
        from_transaction_check: bool => "fromTransactionCheck" = false,
        /// The message's `UNIQ_KEY`.
        msg_id: String => "msgId",
        transaction_id: Option<String> => "transactionId",
    }
}

crate::command_header! {
    /// Empty.
    pub struct EndTransactionResponseHeader {}
}

crate::command_header! {
    /// The body is the half message as a stored record, with its real topic and queue restored.
    pub struct CheckTransactionStateRequestHeader {
        topic: Option<String> => "topic",
        tran_state_table_offset: i64 => "tranStateTableOffset",
        commit_log_offset: i64 => "commitLogOffset",
        /// The message's `UNIQ_KEY`.
        msg_id: Option<String> => "msgId",
        transaction_id: Option<String> => "transactionId",
        offset_msg_id: Option<String> => "offsetMsgId",
        /// Inherited `bname`: the broker that holds the half message.
        broker_name: Option<String> => "bname",
    }
}

crate::command_header! {
    pub struct CheckTransactionStateResponseHeader {
        producer_group: String => "producerGroup",
        tran_state_table_offset: i64 => "tranStateTableOffset",
        commit_log_offset: i64 => "commitLogOffset",
        commit_or_rollback: i32 => "commitOrRollback",
    }
}

crate::command_header! {
    pub struct ResumeCheckHalfMessageRequestHeader {
        topic: Option<String> => "topic",
        msg_id: Option<String> => "msgId",
    }
}
