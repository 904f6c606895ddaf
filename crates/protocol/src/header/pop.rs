//! Pop consumption (5.x): POP_MESSAGE (200050), ACK_MESSAGE (200051), PEEK_MESSAGE (200052),
//! CHANGE_MESSAGE_INVISIBLETIME (200053), NOTIFICATION (200054), POLLING_INFO (200055).
//! BATCH_ACK_MESSAGE carries a body only. The codes do not fit a binary header: JSON only.

crate::command_header! {
    pub struct PopMessageRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        /// -1: every queue, starting from a random one.
        queue_id: i32 => "queueId",
        max_msg_nums: i32 => "maxMsgNums",
        invisible_time: i64 => "invisibleTime",
        /// Long-poll time in ms.
        poll_time: i64 => "pollTime",
        born_time: i64 => "bornTime",
        /// Where a group without an offset starts: 0 min, 1 max.
        init_mode: i32 => "initMode",
        exp_type: Option<String> => "expType",
        exp: Option<String> => "exp",
        /// FIFO pop.
        order: bool => "order" = false,
        attempt_id: Option<String> => "attemptId",
    }
}

crate::command_header! {
    pub struct PopMessageResponseHeader {
        pop_time: i64 => "popTime",
        invisible_time: i64 => "invisibleTime",
        /// 999 for orderly pop.
        revive_qid: i32 => "reviveQid",
        /// Messages left.
        rest_num: i64 => "restNum",
        /// `<retryFlag> <queueId> <startOffset>;...`
        start_offset_info: Option<String> => "startOffsetInfo",
        /// `<retryFlag> <queueId> <off1>,<off2>;...`
        msg_offset_info: Option<String> => "msgOffsetInfo",
        order_count_info: Option<String> => "orderCountInfo",
    }
}

crate::command_header! {
    pub struct AckMessageRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        /// The message's `POP_CK` (space-separated receipt fields).
        extra_info: String => "extraInfo",
        /// Queue offset of the message.
        offset: i64 => "offset",
    }
}

crate::command_header! {
    pub struct ChangeInvisibleTimeRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        extra_info: String => "extraInfo",
        offset: i64 => "offset",
        invisible_time: i64 => "invisibleTime",
    }
}

crate::command_header! {
    pub struct ChangeInvisibleTimeResponseHeader {
        pop_time: i64 => "popTime",
        invisible_time: i64 => "invisibleTime",
        revive_qid: i32 => "reviveQid",
    }
}

crate::command_header! {
    pub struct PeekMessageRequestHeader {
        topic: String => "topic",
        queue_id: i32 => "queueId",
        max_msg_nums: i32 => "maxMsgNums",
        consumer_group: String => "consumerGroup",
    }
}

crate::command_header! {
    /// Long-poll until a queue has messages, without popping them.
    pub struct NotificationRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        poll_time: i64 => "pollTime",
        born_time: i64 => "bornTime",
        order: bool => "order" = false,
        attempt_id: Option<String> => "attemptId",
    }
}

crate::command_header! {
    pub struct NotificationResponseHeader {
        has_msg: bool => "hasMsg" = false,
        polling_full: bool => "pollingFull" = false,
    }
}

crate::command_header! {
    pub struct PollingInfoRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
    }
}

crate::command_header! {
    pub struct PollingInfoResponseHeader {
        polling_num: i32 => "pollingNum",
    }
}
