//! Client membership: HEART_BEAT (34), UNREGISTER_CLIENT (35), GET_CONSUMER_LIST_BY_GROUP (38),
//! NOTIFY_CONSUMER_IDS_CHANGED (40, broker -> client), LOCK_BATCH_MQ (41), UNLOCK_BATCH_MQ (42).
//! Heartbeats and locks carry everything in their JSON bodies.

crate::command_header! {
    /// No fields of its own; the body is the heartbeat data.
    pub struct HeartbeatRequestHeader {}
}

crate::command_header! {
    pub struct UnregisterClientRequestHeader {
        /// Spelt `clientID` on the wire.
        client_id: String => "clientID",
        producer_group: Option<String> => "producerGroup",
        consumer_group: Option<String> => "consumerGroup",
    }
}

crate::command_header! {
    /// Empty.
    pub struct UnregisterClientResponseHeader {}
}

crate::command_header! {
    pub struct GetConsumerListByGroupRequestHeader {
        consumer_group: String => "consumerGroup",
    }
}

crate::command_header! {
    /// Empty; the ids are in the body.
    pub struct GetConsumerListByGroupResponseHeader {}
}

crate::command_header! {
    pub struct NotifyConsumerIdsChangedRequestHeader {
        consumer_group: String => "consumerGroup",
    }
}

crate::command_header! {
    /// No fields of its own; the body lists the queues.
    pub struct LockBatchMqRequestHeader {}
}

crate::command_header! {
    /// No fields of its own; the body lists the queues.
    pub struct UnlockBatchMqRequestHeader {}
}
