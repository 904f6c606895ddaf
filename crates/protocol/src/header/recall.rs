//! RECALL_MESSAGE (370, 5.3+): withdraw a timer/delay message before delivery.

crate::command_header! {
    pub struct RecallMessageRequestHeader {
        producer_group: Option<String> => "producerGroup",
        topic: String => "topic",
        /// The handle returned in the send response's `recallHandle`.
        recall_handle: String => "recallHandle",
    }
}

crate::command_header! {
    pub struct RecallMessageResponseHeader {
        msg_id: String => "msgId",
    }
}
