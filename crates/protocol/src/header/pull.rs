//! PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361). Flag bits of `sysFlag` are in
//! [`crate::codes::pull_sys_flag`].

crate::command_header! {
    pub struct PullMessageRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        /// Logical offset to read from.
        queue_offset: i64 => "queueOffset",
        max_msg_nums: i32 => "maxMsgNums",
        /// `PullSysFlag` bits.
        sys_flag: i32 => "sysFlag",
        /// The consumer's offset, persisted when `FLAG_COMMIT_OFFSET` is set.
        commit_offset: i64 => "commitOffset",
        /// How long the broker may hold the request (long polling).
        suspend_timeout_millis: i64 => "suspendTimeoutMillis",
        /// The subscription expression, used with `FLAG_SUBSCRIPTION`.
        subscription: Option<String> => "subscription",
        sub_version: i64 => "subVersion",
        /// `TAG` or `SQL92`.
        expression_type: Option<String> => "expressionType",
        max_msg_bytes: Option<i32> => "maxMsgBytes",
        /// -1 SDK, 0 proxy for order, 1 proxy for broadcast, 2 proxy for stream.
        request_source: Option<i32> => "requestSource",
        /// Spelt as Java spells it.
        proxy_forward_client_id: Option<String> => "proxyFrowardClientId",
    }
}

crate::command_header! {
    pub struct PullMessageResponseHeader {
        /// 0 = master; the broker may suggest a slave for slow consumers.
        suggest_which_broker_id: i64 => "suggestWhichBrokerId",
        next_begin_offset: i64 => "nextBeginOffset",
        min_offset: i64 => "minOffset",
        max_offset: i64 => "maxOffset",
        /// Static topics only.
        offset_delta: Option<i64> => "offsetDelta",
        topic_sys_flag: Option<i32> => "topicSysFlag",
        group_sys_flag: Option<i32> => "groupSysFlag",
        /// Set with NO_PERMISSION: 1 broker, 2 group, 3 topic, 4 broadcast disabled,
        /// 5 subscription forbidden.
        forbidden_type: Option<i32> => "forbiddenType",
    }
}
