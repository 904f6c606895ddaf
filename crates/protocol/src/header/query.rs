//! QUERY_MESSAGE (12) by key or unique key, and VIEW_MESSAGE_BY_ID (33) by commit-log offset.

crate::command_header! {
    pub struct QueryMessageRequestHeader {
        topic: String => "topic",
        key: String => "key",
        max_num: i32 => "maxNum",
        begin_timestamp: i64 => "beginTimestamp",
        end_timestamp: i64 => "endTimestamp",
        /// Extra extField (`MixAll.UNIQUE_MSG_QUERY_FLAG`): look `key` up as a `UNIQ_KEY`.
        unique_key_query: Option<bool> => "_UNIQUE_KEY_QUERY",
    }
}

impl QueryMessageRequestHeader {
    pub fn is_unique_key_query(&self) -> bool {
        self.unique_key_query.unwrap_or(false)
    }
}

crate::command_header! {
    pub struct QueryMessageResponseHeader {
        index_last_update_timestamp: i64 => "indexLastUpdateTimestamp",
        index_last_update_phyoffset: i64 => "indexLastUpdatePhyoffset",
    }
}

crate::command_header! {
    pub struct ViewMessageRequestHeader {
        topic: Option<String> => "topic",
        /// Commit-log offset, decoded by the client from the offset message id.
        offset: i64 => "offset",
    }
}

crate::command_header! {
    /// Empty; the body is the stored record.
    pub struct ViewMessageResponseHeader {}
}
