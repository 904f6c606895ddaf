//! Topic and subscription-group administration: UPDATE_AND_CREATE_TOPIC (17), GET_ALL_TOPIC_CONFIG
//! (21), GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201), GET_TOPIC_STATS_INFO (202), DELETE_SUBSCRIPTIONGROUP
//! (207), DELETE_TOPIC_IN_BROKER (215), GET_TOPIC_CONFIG (351), GET_SUBSCRIPTIONGROUP_CONFIG (352),
//! UPDATE_AND_GET_GROUP_FORBIDDEN (353). Creating a subscription group has a body only.

crate::command_header! {
    pub struct CreateTopicRequestHeader {
        topic: String => "topic",
        default_topic: String => "defaultTopic",
        read_queue_nums: i32 => "readQueueNums",
        write_queue_nums: i32 => "writeQueueNums",
        /// `PermName` bits.
        perm: i32 => "perm",
        /// `SINGLE_TAG` or `MULTI_TAG`.
        topic_filter_type: String => "topicFilterType",
        topic_sys_flag: Option<i32> => "topicSysFlag",
        /// Java initializes it to false, so an absent value reads as false.
        order: bool => "order" = false,
        /// `+key=value,+key2=value2` (`-key` deletes).
        attributes: Option<String> => "attributes",
        force: bool => "force" = false,
    }
}

crate::command_header! {
    pub struct DeleteTopicRequestHeader {
        topic: String => "topic",
    }
}

crate::command_header! {
    pub struct GetTopicStatsInfoRequestHeader {
        topic: String => "topic",
    }
}

crate::command_header! {
    pub struct GetTopicConfigRequestHeader {
        topic: String => "topic",
    }
}

crate::command_header! {
    /// GET_ALL_TOPIC_CONFIG paging (5.x). 4.x admin tools send no header at all, so the fields are
    /// optional here although Java marks `topicSeq` required: absent means "everything at once".
    pub struct GetAllTopicConfigRequestHeader {
        topic_seq: Option<i32> => "topicSeq",
        data_version: Option<String> => "dataVersion",
        max_topic_num: Option<i32> => "maxTopicNum",
    }
}

crate::command_header! {
    pub struct GetAllTopicConfigResponseHeader {
        total_topic_num: i32 => "totalTopicNum",
    }
}

crate::command_header! {
    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG paging (5.x); optional for the same reason as
    /// [`GetAllTopicConfigRequestHeader`].
    pub struct GetAllSubscriptionGroupRequestHeader {
        group_seq: Option<i32> => "groupSeq",
        data_version: Option<String> => "dataVersion",
        max_group_num: Option<i32> => "maxGroupNum",
    }
}

crate::command_header! {
    pub struct GetAllSubscriptionGroupResponseHeader {
        total_group_num: i32 => "totalGroupNum",
    }
}

crate::command_header! {
    pub struct DeleteSubscriptionGroupRequestHeader {
        group_name: String => "groupName",
        /// Also delete the group's consumer offsets.
        clean_offset: bool => "cleanOffset" = false,
    }
}

crate::command_header! {
    pub struct GetSubscriptionGroupConfigRequestHeader {
        group: String => "group",
    }
}

crate::command_header! {
    /// UPDATE_AND_GET_GROUP_FORBIDDEN (353): absent `readable` only queries.
    pub struct UpdateGroupForbiddenRequestHeader {
        group: String => "group",
        topic: String => "topic",
        readable: Option<bool> => "readable",
    }
}
