//! Client-side namespaces: a topic or group `T` of namespace `NS` travels as `NS%T`, and the
//! retry and dead-letter prefixes stay in front (`%RETRY%NS%G`). Brokers know nothing of it; the
//! client wraps names on the way out and strips them on the way in, exactly as RocketMQ's
//! `NamespaceUtil` does, so Java and Rust clients of one namespace share topics and groups.

/// Separates the namespace from the resource name.
pub const NAMESPACE_SEPARATOR: char = '%';
/// Prefix of a consumer group's retry topic (`MixAll.RETRY_GROUP_TOPIC_PREFIX`).
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
/// Prefix of a consumer group's dead-letter topic (`MixAll.DLQ_GROUP_TOPIC_PREFIX`).
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";
/// The auto-create template topic (`TopicValidator.AUTO_CREATE_TOPIC_KEY_TOPIC`).
pub const AUTO_CREATE_TOPIC_KEY_TOPIC: &str = "TBW102";
/// Prefix of system topics (`TopicValidator.SYSTEM_TOPIC_PREFIX`).
pub const SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";
/// Prefix of system consumer groups (`MixAll.CID_RMQ_SYS_PREFIX`).
pub const SYSTEM_GROUP_PREFIX: &str = "CID_RMQ_SYS_";

/// Topics RocketMQ reserves (`TopicValidator.SYSTEM_TOPIC_SET`); never namespaced.
pub const SYSTEM_TOPICS: &[&str] = &[
    AUTO_CREATE_TOPIC_KEY_TOPIC,
    "SCHEDULE_TOPIC_XXXX",
    "BenchmarkTest",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRACE_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
    "CHECKPOINT_TOPIC",
];

/// Topics a client may not send to (`TopicValidator.NOT_ALLOWED_SEND_TOPIC_SET`).
pub const NOT_ALLOWED_SEND_TOPICS: &[&str] = &[
    "SCHEDULE_TOPIC_XXXX",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
];

/// A system topic or system consumer group, which is never namespaced.
pub fn is_system_resource(resource: &str) -> bool {
    SYSTEM_TOPICS.contains(&resource)
        || resource.starts_with(SYSTEM_TOPIC_PREFIX)
        || resource.starts_with(SYSTEM_GROUP_PREFIX)
}

pub fn is_retry_topic(resource: &str) -> bool {
    resource.starts_with(RETRY_GROUP_TOPIC_PREFIX)
}

pub fn is_dlq_topic(resource: &str) -> bool {
    resource.starts_with(DLQ_GROUP_TOPIC_PREFIX)
}

/// `resource` without a leading `%RETRY%` or `%DLQ%`.
pub fn without_retry_and_dlq(resource: &str) -> &str {
    resource
        .strip_prefix(RETRY_GROUP_TOPIC_PREFIX)
        .or_else(|| resource.strip_prefix(DLQ_GROUP_TOPIC_PREFIX))
        .unwrap_or(resource)
}

/// The prefix (`%RETRY%`, `%DLQ%` or nothing) of `resource`.
fn retry_or_dlq_prefix(resource: &str) -> &'static str {
    if is_retry_topic(resource) {
        RETRY_GROUP_TOPIC_PREFIX
    } else if is_dlq_topic(resource) {
        DLQ_GROUP_TOPIC_PREFIX
    } else {
        ""
    }
}

/// True when `resource` already carries `namespace`.
pub fn has_namespace(resource: &str, namespace: &str) -> bool {
    if namespace.is_empty() || resource.is_empty() || is_system_resource(resource) {
        return false;
    }
    let bare = without_retry_and_dlq(resource);
    bare.len() > namespace.len()
        && bare.starts_with(namespace)
        && bare[namespace.len()..].starts_with(NAMESPACE_SEPARATOR)
}

/// `NS%resource`, keeping a `%RETRY%`/`%DLQ%` prefix in front. Unchanged when there is no
/// namespace, the resource is a system one, or it is already wrapped.
pub fn wrap(namespace: Option<&str>, resource: &str) -> String {
    let Some(ns) = namespace.filter(|ns| !ns.is_empty()) else {
        return resource.to_owned();
    };
    if resource.is_empty() || is_system_resource(resource) || has_namespace(resource, ns) {
        return resource.to_owned();
    }
    let prefix = retry_or_dlq_prefix(resource);
    let bare = without_retry_and_dlq(resource);
    let mut out = String::with_capacity(prefix.len() + ns.len() + 1 + bare.len());
    out.push_str(prefix);
    out.push_str(ns);
    out.push(NAMESPACE_SEPARATOR);
    out.push_str(bare);
    out
}

/// Removes `namespace` from `resource` if it carries exactly that namespace; anything else is
/// returned unchanged (a resource of another namespace keeps its prefix, as in Java).
pub fn unwrap(namespace: Option<&str>, resource: &str) -> String {
    match namespace.filter(|ns| !ns.is_empty()) {
        Some(ns) if has_namespace(resource, ns) => {
            let prefix = retry_or_dlq_prefix(resource);
            let bare = without_retry_and_dlq(resource);
            let rest = &bare[ns.len() + NAMESPACE_SEPARATOR.len_utf8()..];
            let mut out = String::with_capacity(prefix.len() + rest.len());
            out.push_str(prefix);
            out.push_str(rest);
            out
        }
        _ => resource.to_owned(),
    }
}

/// The retry topic of a (namespaced) consumer group: `%RETRY%NS%G`.
pub fn retry_topic(namespace: Option<&str>, group: &str) -> String {
    format!("{RETRY_GROUP_TOPIC_PREFIX}{}", wrap(namespace, group))
}

/// Checks a topic name the way Java's `Validators.checkTopic` does: not blank, only
/// `[A-Za-z0-9%|_-]`, at most 127 characters, and not a topic clients may not send to.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.trim().is_empty() {
        return Err("the specified topic is blank".into());
    }
    if topic.len() > 127 {
        return Err(format!(
            "the specified topic is longer than topic max length 127: {topic}"
        ));
    }
    if let Some(bad) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')))
    {
        return Err(format!(
            "the specified topic {topic:?} contains illegal character {bad:?}, allowing only ^[%|a-zA-Z0-9_-]+$"
        ));
    }
    if NOT_ALLOWED_SEND_TOPICS.contains(&topic) {
        return Err(format!("sending message to topic [{topic}] is forbidden"));
    }
    Ok(())
}

/// Checks a group name: not blank, valid characters, at most 120 characters.
pub fn validate_group(group: &str) -> Result<(), String> {
    if group.trim().is_empty() {
        return Err("the specified group is blank".into());
    }
    if group.len() > 120 {
        return Err(format!(
            "the specified group is longer than group max length 120: {group}"
        ));
    }
    if group
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')))
    {
        return Err(format!(
            "the specified group {group:?} contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_follows_java_namespace_util() {
        // (namespace, resource, wrapped)
        let table: &[(Option<&str>, &str, &str)] = &[
            (Some("NS"), "TopicA", "NS%TopicA"),
            (Some("NS"), "%RETRY%GID", "%RETRY%NS%GID"),
            (Some("NS"), "%DLQ%GID", "%DLQ%NS%GID"),
            (Some("NS"), "NS%TopicA", "NS%TopicA"),
            (Some("NS"), "%RETRY%NS%GID", "%RETRY%NS%GID"),
            (Some("NS"), "TBW102", "TBW102"),
            (Some("NS"), "rmq_sys_trace", "rmq_sys_trace"),
            (Some("NS"), "CID_RMQ_SYS_TRANS", "CID_RMQ_SYS_TRANS"),
            (Some("NS"), "", ""),
            (Some(""), "TopicA", "TopicA"),
            (None, "TopicA", "TopicA"),
            // A different namespace is not "already wrapped".
            (Some("NS"), "OTHER%TopicA", "NS%OTHER%TopicA"),
        ];
        for (ns, resource, want) in table {
            assert_eq!(wrap(*ns, resource), *want, "wrap({ns:?}, {resource:?})");
        }
    }

    #[test]
    fn unwrap_strips_only_its_own_namespace() {
        let table: &[(Option<&str>, &str, &str)] = &[
            (Some("NS"), "NS%TopicA", "TopicA"),
            (Some("NS"), "%RETRY%NS%GID", "%RETRY%GID"),
            (Some("NS"), "%DLQ%NS%GID", "%DLQ%GID"),
            (Some("NS"), "OTHER%TopicA", "OTHER%TopicA"),
            (Some("NS"), "%RETRY%OTHER%GID", "%RETRY%OTHER%GID"),
            (Some("NS"), "TopicA", "TopicA"),
            (Some("NS"), "NS%", ""),
            (Some("NS"), "NSX%TopicA", "NSX%TopicA"),
            (None, "NS%TopicA", "NS%TopicA"),
            (Some("NS"), "TBW102", "TBW102"),
        ];
        for (ns, resource, want) in table {
            assert_eq!(unwrap(*ns, resource), *want, "unwrap({ns:?}, {resource:?})");
        }
    }

    #[test]
    fn wrap_then_unwrap_is_identity_for_user_resources() {
        for r in ["T", "%RETRY%G", "%DLQ%G", "a-b_c|d"] {
            assert_eq!(unwrap(Some("ns1"), &wrap(Some("ns1"), r)), r);
        }
    }

    #[test]
    fn retry_topic_puts_the_prefix_before_the_namespace() {
        assert_eq!(retry_topic(Some("NS"), "G"), "%RETRY%NS%G");
        assert_eq!(retry_topic(None, "G"), "%RETRY%G");
    }

    #[test]
    fn topic_validation_matches_java_rules() {
        assert!(validate_topic("Topic_A-1|x%y").is_ok());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("  ").is_err());
        assert!(validate_topic("a b").is_err());
        assert!(validate_topic("tópico").is_err());
        assert!(validate_topic(&"t".repeat(127)).is_ok());
        assert!(validate_topic(&"t".repeat(128)).is_err());
        assert!(validate_topic("SCHEDULE_TOPIC_XXXX").is_err());
        assert!(validate_topic("TBW102").is_ok());
        assert!(validate_group(&"g".repeat(120)).is_ok());
        assert!(validate_group(&"g".repeat(121)).is_err());
        assert!(validate_group("g g").is_err());
    }
}
