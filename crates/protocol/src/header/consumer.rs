//! Consumer management and the broker -> consumer calls: CONSUMER_SEND_MSG_BACK (36),
//! GET_CONSUMER_CONNECTION_LIST (203), GET_PRODUCER_CONNECTION_LIST (204), GET_CONSUME_STATS (208),
//! RESET_CONSUMER_CLIENT_OFFSET (220) / INVOKE_BROKER_TO_RESET_OFFSET (222),
//! GET_CONSUMER_STATUS_FROM_CLIENT (221) / INVOKE_BROKER_TO_GET_CONSUMER_STATUS (223),
//! QUERY_TOPIC_CONSUME_BY_WHO (300), GET_CONSUMER_RUNNING_INFO (307), CONSUME_MESSAGE_DIRECTLY
//! (309), QUERY_TOPICS_BY_CONSUMER (343), QUERY_SUBSCRIPTION_BY_CONSUMER (345),
//! GET_ALL_PRODUCER_INFO (328).

crate::command_header! {
    pub struct ConsumerSendMsgBackRequestHeader {
        /// Commit-log offset of the consumed message.
        offset: i64 => "offset",
        group: String => "group",
        /// 0: the broker uses `3 + reconsumeTimes`; -1: straight to the DLQ.
        delay_level: i32 => "delayLevel",
        origin_msg_id: Option<String> => "originMsgId",
        origin_topic: Option<String> => "originTopic",
        unit_mode: bool => "unitMode" = false,
        max_reconsume_times: Option<i32> => "maxReconsumeTimes",
    }
}

crate::command_header! {
    pub struct GetConsumeStatsRequestHeader {
        consumer_group: String => "consumerGroup",
        /// Absent: every topic the group subscribes to.
        topic: Option<String> => "topic",
        /// Comma-separated topics (5.x).
        topic_list: Option<String> => "topicList",
    }
}

crate::command_header! {
    pub struct GetConsumerConnectionListRequestHeader {
        consumer_group: String => "consumerGroup",
    }
}

crate::command_header! {
    pub struct GetProducerConnectionListRequestHeader {
        producer_group: String => "producerGroup",
    }
}

crate::command_header! {
    /// Empty.
    pub struct GetAllProducerInfoRequestHeader {}
}

crate::command_header! {
    /// Reset a group's offsets to a timestamp (admin -> broker), or push the reset offsets to a
    /// consumer (broker -> client, offsets in the body).
    pub struct ResetOffsetRequestHeader {
        group: String => "group",
        topic: String => "topic",
        /// -1: every queue.
        queue_id: i32 => "queueId" = -1,
        /// Reset to this offset instead of searching by timestamp.
        offset: Option<i64> => "offset",
        timestamp: i64 => "timestamp",
        /// Also move offsets forward (not only back).
        is_force: bool => "isForce",
    }
}

crate::command_header! {
    pub struct GetConsumerStatusRequestHeader {
        topic: String => "topic",
        group: String => "group",
        client_addr: Option<String> => "clientAddr",
    }
}

crate::command_header! {
    pub struct GetConsumerRunningInfoRequestHeader {
        consumer_group: String => "consumerGroup",
        client_id: String => "clientId",
        jstack_enable: bool => "jstackEnable" = false,
    }
}

crate::command_header! {
    /// CONSUME_MESSAGE_DIRECTLY: ask a consumer to consume one message now (body = the record).
    pub struct ConsumeMessageDirectlyResultRequestHeader {
        consumer_group: String => "consumerGroup",
        client_id: Option<String> => "clientId",
        msg_id: Option<String> => "msgId",
        broker_name: Option<String> => "brokerName",
        topic: Option<String> => "topic",
        topic_sys_flag: Option<i32> => "topicSysFlag",
        group_sys_flag: Option<i32> => "groupSysFlag",
    }
}

crate::command_header! {
    pub struct QueryTopicConsumeByWhoRequestHeader {
        topic: String => "topic",
    }
}

crate::command_header! {
    pub struct QueryTopicsByConsumerRequestHeader {
        group: String => "group",
    }
}

crate::command_header! {
    pub struct QuerySubscriptionByConsumerRequestHeader {
        group: String => "group",
        topic: Option<String> => "topic",
    }
}
