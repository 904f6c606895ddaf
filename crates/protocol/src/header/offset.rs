//! Consumer offsets and queue offsets: QUERY_CONSUMER_OFFSET (14), UPDATE_CONSUMER_OFFSET (15),
//! SEARCH_OFFSET_BY_TIMESTAMP (29), GET_MAX_OFFSET (30), GET_MIN_OFFSET (31),
//! GET_EARLIEST_MSG_STORETIME (32), QUERY_CONSUME_TIME_SPAN (303), QUERY_CORRECTION_OFFSET (308),
//! CLONE_GROUP_OFFSET (314), QUERY_CONSUME_QUEUE (321).

use super::{FieldKind, HeaderValue};

crate::command_header! {
    pub struct QueryConsumerOffsetRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        /// Answer offset 0 instead of QUERY_NOT_FOUND for a group new to a fresh queue.
        set_zero_if_not_found: Option<bool> => "setZeroIfNotFound",
    }
}

crate::command_header! {
    pub struct QueryConsumerOffsetResponseHeader {
        offset: i64 => "offset",
    }
}

crate::command_header! {
    pub struct UpdateConsumerOffsetRequestHeader {
        consumer_group: String => "consumerGroup",
        topic: String => "topic",
        queue_id: i32 => "queueId",
        commit_offset: i64 => "commitOffset",
    }
}

crate::command_header! {
    /// Empty.
    pub struct UpdateConsumerOffsetResponseHeader {}
}

crate::command_header! {
    pub struct GetMaxOffsetRequestHeader {
        topic: String => "topic",
        queue_id: i32 => "queueId",
        /// Count only committed (replicated) entries.
        committed: bool => "committed" = true,
    }
}

crate::command_header! {
    pub struct GetMaxOffsetResponseHeader {
        offset: i64 => "offset",
    }
}

crate::command_header! {
    pub struct GetMinOffsetRequestHeader {
        topic: String => "topic",
        queue_id: i32 => "queueId",
    }
}

crate::command_header! {
    pub struct GetMinOffsetResponseHeader {
        offset: i64 => "offset",
    }
}

crate::command_header! {
    pub struct GetEarliestMsgStoretimeRequestHeader {
        topic: String => "topic",
        queue_id: i32 => "queueId",
    }
}

crate::command_header! {
    pub struct GetEarliestMsgStoretimeResponseHeader {
        timestamp: i64 => "timestamp",
    }
}

/// Which side of a run of messages with the same store time SEARCH_OFFSET_BY_TIMESTAMP returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BoundaryType {
    /// The first matching offset.
    #[default]
    Lower,
    /// The last matching offset.
    Upper,
}

impl HeaderValue for BoundaryType {
    const KIND: FieldKind = FieldKind::Enum(&["LOWER", "UPPER"]);

    /// Like Java's `BoundaryType.getType`: `upper` in any case is Upper, anything else Lower.
    fn parse_wire(raw: &str) -> Option<Self> {
        if raw.trim().eq_ignore_ascii_case("upper") {
            Some(Self::Upper)
        } else {
            Some(Self::Lower)
        }
    }

    /// The Java enum's `toString()`, which is what Java clients put on the wire.
    fn to_wire(&self) -> String {
        match self {
            Self::Lower => "LOWER",
            Self::Upper => "UPPER",
        }
        .to_owned()
    }
}

crate::command_header! {
    pub struct SearchOffsetRequestHeader {
        topic: String => "topic",
        queue_id: i32 => "queueId",
        /// Store time in ms.
        timestamp: i64 => "timestamp",
        /// Absent means [`BoundaryType::Lower`].
        boundary_type: Option<BoundaryType> => "boundaryType",
    }
}

impl SearchOffsetRequestHeader {
    pub fn boundary(&self) -> BoundaryType {
        self.boundary_type.unwrap_or_default()
    }
}

crate::command_header! {
    pub struct SearchOffsetResponseHeader {
        offset: i64 => "offset",
    }
}

crate::command_header! {
    pub struct QueryConsumeTimeSpanRequestHeader {
        topic: String => "topic",
        group: String => "group",
    }
}

crate::command_header! {
    /// QUERY_CORRECTION_OFFSET (308).
    pub struct QueryCorrectionOffsetHeader {
        /// Comma-separated groups to leave out.
        filter_groups: Option<String> => "filterGroups",
        compare_group: String => "compareGroup",
        topic: String => "topic",
    }
}

crate::command_header! {
    pub struct CloneGroupOffsetRequestHeader {
        src_group: String => "srcGroup",
        dest_group: String => "destGroup",
        topic: Option<String> => "topic",
        offline: bool => "offline" = false,
    }
}

crate::command_header! {
    /// QUERY_CONSUME_QUEUE (321): dump `count` consume-queue entries from `index`.
    pub struct QueryConsumeQueueRequestHeader {
        topic: Option<String> => "topic",
        queue_id: i32 => "queueId" = 0,
        index: i64 => "index" = 0,
        count: i32 => "count" = 0,
        consumer_group: Option<String> => "consumerGroup",
    }
}
