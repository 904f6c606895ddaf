//! Reserved topic and group names and the name rules (`TopicValidator`, `MixAll`).

/// The auto-create template topic.
pub const AUTO_CREATE_TOPIC_KEY_TOPIC: &str = "TBW102";
pub const SCHEDULE_TOPIC: &str = apogee_store::SCHEDULE_TOPIC;
/// Where timer messages wait for the timer service (`TimerMessageStore.TIMER_TOPIC`); one queue.
pub const TIMER_TOPIC: &str = apogee_store::TIMER_TOPIC;
pub const BENCHMARK_TOPIC: &str = "BenchmarkTest";
pub const TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
pub const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
pub const TRANS_OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
pub const TRANS_CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
pub const OFFSET_MOVED_EVENT: &str = "OFFSET_MOVED_EVENT";
pub const ROCKSDB_OFFSET_TOPIC: &str = "CHECKPOINT_TOPIC";
/// Topics starting with this are system topics.
pub const SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";
/// Light message queues (`MixAll.LMQ_PREFIX`); cleanUnusedTopic leaves them alone, as RocketMQ does.
pub const LMQ_PREFIX: &str = "%LMQ%";
pub const SYNC_BROKER_MEMBER_GROUP_PREFIX: &str = "rmq_sys_SYNC_BROKER_MEMBER_";
pub const REVIVE_TOPIC_PREFIX: &str = "rmq_sys_REVIVE_LOG_";
pub const REPLY_TOPIC_POSTFIX: &str = "REPLY_TOPIC";
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";
/// Queues of SCHEDULE_TOPIC_XXXX: one per delay level.
pub const SCHEDULE_TOPIC_QUEUE_NUM: i32 = 18;
/// Queues of a `%DLQ%` topic.
pub const DLQ_NUMS_PER_GROUP: i32 = 1;

pub const TOOLS_CONSUMER_GROUP: &str = "TOOLS_CONSUMER";
pub const FILTERSRV_CONSUMER_GROUP: &str = "FILTERSRV_CONSUMER";
pub const SELF_TEST_CONSUMER_GROUP: &str = "SELF_TEST_C_GROUP";
pub const ONS_HTTP_PROXY_GROUP: &str = "CID_ONS-HTTP-PROXY";
pub const CID_ONSAPI_PERMISSION_GROUP: &str = "CID_ONSAPI_PERMISSION";
pub const CID_ONSAPI_OWNER_GROUP: &str = "CID_ONSAPI_OWNER";
pub const CID_ONSAPI_PULL_GROUP: &str = "CID_ONSAPI_PULL";
pub const CID_SYS_RMQ_TRANS: &str = "CID_RMQ_SYS_TRANS";

/// Extra extFields of heartbeat responses.
pub const IS_SUPPORT_HEART_BEAT_V2: &str = "IS_SUPPORT_HEART_BEAT_V2";
pub const IS_SUB_CHANGE: &str = "IS_SUB_CHANGE";

const TOPIC_MAX_LENGTH: usize = 127;
const GROUP_MAX_LENGTH: usize = 120;
const RETRY_OR_DLQ_TOPIC_MAX_LENGTH: usize = 255;

/// Topics no client may send to.
const NOT_ALLOWED_SEND_TOPICS: &[&str] = &[
    SCHEDULE_TOPIC,
    TRANS_HALF_TOPIC,
    TRANS_OP_HALF_TOPIC,
    TRANS_CHECK_MAX_TIME_TOPIC,
    SELF_TEST_TOPIC,
    OFFSET_MOVED_EVENT,
];

/// The fixed system topics (the broker adds its cluster- and broker-name topics at start).
pub const STATIC_SYSTEM_TOPICS: &[&str] = &[
    AUTO_CREATE_TOPIC_KEY_TOPIC,
    SCHEDULE_TOPIC,
    BENCHMARK_TOPIC,
    TRANS_HALF_TOPIC,
    TRACE_TOPIC,
    TRANS_OP_HALF_TOPIC,
    TRANS_CHECK_MAX_TIME_TOPIC,
    SELF_TEST_TOPIC,
    OFFSET_MOVED_EVENT,
    ROCKSDB_OFFSET_TOPIC,
    TIMER_TOPIC,
];

fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '%' | '-' | '_' | '|')
}

/// `TopicValidator.validateTopic`: `Err(remark)` when invalid. Lengths count UTF-16 units as Java
/// does; with only ASCII allowed, that is the byte length.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.trim().is_empty() {
        return Err("The specified topic is blank.".into());
    }
    if !topic.chars().all(valid_char) {
        return Err(format!(
            "The specified topic: {topic}, contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        ));
    }
    if is_retry_topic(topic) || is_dlq_topic(topic) {
        if topic.len() > RETRY_OR_DLQ_TOPIC_MAX_LENGTH {
            return Err(format!(
                "The specified topic is DLQ or Retry topic: {topic}, and it's longer than topic max length: {RETRY_OR_DLQ_TOPIC_MAX_LENGTH}"
            ));
        }
    } else if topic.len() > TOPIC_MAX_LENGTH {
        return Err(format!(
            "The specified topic: {topic}, is longer than topic max length: {TOPIC_MAX_LENGTH}"
        ));
    }
    Ok(())
}

/// `TopicValidator.validateGroup`.
pub fn validate_group(group: &str) -> Result<(), String> {
    if group.trim().is_empty() {
        return Err("The specified group is blank.".into());
    }
    if !group.chars().all(valid_char) {
        return Err(format!(
            "The specified group: {group}, contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        ));
    }
    if group.len() > GROUP_MAX_LENGTH {
        return Err(format!(
            "The specified group: {group}, is longer than group max length: {GROUP_MAX_LENGTH}"
        ));
    }
    Ok(())
}

pub fn is_not_allowed_send_topic(topic: &str) -> bool {
    NOT_ALLOWED_SEND_TOPICS.contains(&topic)
}

pub fn is_retry_topic(topic: &str) -> bool {
    topic.starts_with(RETRY_GROUP_TOPIC_PREFIX)
}

pub fn is_dlq_topic(topic: &str) -> bool {
    topic.starts_with(DLQ_GROUP_TOPIC_PREFIX)
}

pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}")
}

pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_GROUP_TOPIC_PREFIX}{group}")
}

/// The group of a `%RETRY%` topic (`KeyBuilder.parseGroup`): pop retry topics
/// `%RETRY%<group>+<topic>` carry the topic after `+`.
pub fn group_of_retry_topic(topic: &str) -> &str {
    let rest = topic
        .strip_prefix(RETRY_GROUP_TOPIC_PREFIX)
        .unwrap_or(topic);
    rest.split('+').next().unwrap_or(rest)
}

/// The cluster's pop revive topic.
pub fn revive_topic(cluster: &str) -> String {
    format!("{REVIVE_TOPIC_PREFIX}{cluster}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_rules_follow_topic_validator() {
        assert!(validate_topic("Topic_A-1|x%").is_ok());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("  ").is_err());
        assert!(validate_topic("bad topic").is_err());
        assert!(validate_topic("t\u{e9}").is_err());
        assert!(validate_topic("t.dot").is_err());
        assert!(validate_topic(&"a".repeat(127)).is_ok());
        assert!(validate_topic(&"a".repeat(128)).is_err());
        assert!(validate_topic(&format!("%RETRY%{}", "g".repeat(200))).is_ok());
        assert!(validate_topic(&format!("%DLQ%{}", "g".repeat(251))).is_err());
    }

    #[test]
    fn group_rules_follow_topic_validator() {
        assert!(validate_group("CG_1").is_ok());
        assert!(validate_group(&"g".repeat(120)).is_ok());
        assert!(validate_group(&"g".repeat(121)).is_err());
        assert!(validate_group("g/1").is_err());
    }

    #[test]
    fn retry_and_dlq_names() {
        assert_eq!(retry_topic("G"), "%RETRY%G");
        assert_eq!(dlq_topic("G"), "%DLQ%G");
        assert_eq!(group_of_retry_topic("%RETRY%G"), "G");
        assert_eq!(group_of_retry_topic("%RETRY%G+T"), "G");
        assert!(is_not_allowed_send_topic(SCHEDULE_TOPIC));
        assert!(!is_not_allowed_send_topic(AUTO_CREATE_TOPIC_KEY_TOPIC));
    }
}
