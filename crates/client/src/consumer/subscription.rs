//! Subscription expressions: a tag expression (`*`, `TagA || TagB`) or an SQL92 filter, turned
//! into the `SubscriptionData` brokers receive (`FilterAPI.buildSubscriptionData`), and the
//! client-side re-check by tag string that every RocketMQ client applies to pulled messages
//! (brokers filter by tag hash, which can collide).

use apogee_protocol::body::{SubscriptionData, EXPRESSION_TYPE_TAG};
use apogee_protocol::message::java_string_hash;

use crate::error::{ClientError, Result};

/// The expression that matches every message.
pub const SUB_ALL: &str = "*";
/// `ExpressionType.SQL92`.
pub const EXPRESSION_TYPE_SQL92: &str = "SQL92";

/// How a consumer selects messages of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageSelector {
    /// Tags separated by `||`; `*` or empty for all.
    Tag(String),
    /// An SQL92 expression over message properties (brokers need `enablePropertyFilter`).
    Sql92(String),
}

impl MessageSelector {
    pub fn tag(expression: impl Into<String>) -> Self {
        MessageSelector::Tag(expression.into())
    }

    pub fn sql92(expression: impl Into<String>) -> Self {
        MessageSelector::Sql92(expression.into())
    }

    /// Every message.
    pub fn all() -> Self {
        MessageSelector::Tag(SUB_ALL.into())
    }
}

impl From<&str> for MessageSelector {
    fn from(expression: &str) -> Self {
        MessageSelector::tag(expression)
    }
}

impl From<String> for MessageSelector {
    fn from(expression: String) -> Self {
        MessageSelector::Tag(expression)
    }
}

/// The subscription of `topic` for `selector`, versioned `sub_version` (a ms timestamp).
///
/// Tags are split on `||` and trimmed, empty ones dropped; each tag's Java hash goes into the
/// code set. An empty tag expression means `*`. An SQL92 expression must not be empty.
pub fn build_subscription(
    topic: &str,
    selector: &MessageSelector,
    sub_version: i64,
) -> Result<SubscriptionData> {
    let mut sub = SubscriptionData {
        topic: topic.to_owned(),
        sub_version,
        ..Default::default()
    };
    match selector {
        MessageSelector::Tag(expr) => {
            sub.expression_type = EXPRESSION_TYPE_TAG.to_owned();
            if expr.trim().is_empty() || expr.trim() == SUB_ALL {
                sub.sub_string = SUB_ALL.to_owned();
                return Ok(sub);
            }
            sub.sub_string = expr.clone();
            for tag in expr.split("||").map(str::trim).filter(|t| !t.is_empty()) {
                if !sub.tags_set.iter().any(|t| t == tag) {
                    sub.tags_set.push(tag.to_owned());
                    sub.code_set.push(java_string_hash(tag));
                }
            }
            if sub.tags_set.is_empty() {
                // Only separators: like Java, nothing to match against, so everything passes.
                sub.sub_string = SUB_ALL.to_owned();
            }
        }
        MessageSelector::Sql92(expr) => {
            if expr.trim().is_empty() {
                return Err(ClientError::InvalidArgument(
                    "an SQL92 expression must not be empty".into(),
                ));
            }
            sub.expression_type = EXPRESSION_TYPE_SQL92.to_owned();
            sub.sub_string = expr.clone();
        }
    }
    Ok(sub)
}

/// Whether the client keeps a message with `tags` for `sub`: always for `*`, SQL92 and class
/// filters; otherwise only when the message's tag is one of the subscribed tags.
pub fn tags_match(sub: &SubscriptionData, tags: Option<&str>) -> bool {
    if sub.tags_set.is_empty() || sub.class_filter_mode {
        return true;
    }
    tags.is_some_and(|t| sub.tags_set.iter().any(|s| s == t))
}

/// True for a `TAG` (or unset) expression type.
pub fn is_tag_type(sub: &SubscriptionData) -> bool {
    sub.expression_type.is_empty()
        || sub
            .expression_type
            .eq_ignore_ascii_case(EXPRESSION_TYPE_TAG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_and_empty_expressions_subscribe_to_everything() {
        for expr in ["*", "", "  ", " * "] {
            let s = build_subscription("T", &MessageSelector::tag(expr), 1).unwrap();
            assert_eq!(s.sub_string, "*", "{expr:?}");
            assert!(s.tags_set.is_empty());
            assert!(s.code_set.is_empty());
            assert_eq!(s.expression_type, "TAG");
        }
    }

    #[test]
    fn tag_expressions_are_split_trimmed_and_hashed() {
        let s = build_subscription("T", &MessageSelector::tag("TagA || TagB||TagA|| "), 7).unwrap();
        assert_eq!(s.sub_string, "TagA || TagB||TagA|| ");
        assert_eq!(s.tags_set, vec!["TagA", "TagB"]);
        assert_eq!(s.code_set, vec![2_598_919, 2_598_920]);
        assert_eq!(s.sub_version, 7);
        assert_eq!(s.topic, "T");
    }

    #[test]
    fn sql92_keeps_the_expression_and_has_no_tags() {
        let s = build_subscription("T", &MessageSelector::sql92("a > 5"), 1).unwrap();
        assert_eq!(s.expression_type, "SQL92");
        assert_eq!(s.sub_string, "a > 5");
        assert!(s.tags_set.is_empty());
        assert!(build_subscription("T", &MessageSelector::sql92(" "), 1).is_err());
    }

    #[test]
    fn client_side_filter_compares_tag_strings() {
        let all = build_subscription("T", &MessageSelector::all(), 1).unwrap();
        let ab = build_subscription("T", &MessageSelector::tag("A||B"), 1).unwrap();
        let sql = build_subscription("T", &MessageSelector::sql92("x=1"), 1).unwrap();
        assert!(tags_match(&all, None));
        assert!(tags_match(&all, Some("Z")));
        assert!(tags_match(&ab, Some("A")));
        assert!(tags_match(&ab, Some("B")));
        assert!(!tags_match(&ab, Some("C")));
        assert!(!tags_match(&ab, None));
        // A hash collision at the broker ("Aa" and "BB" share a Java hash) is caught here.
        assert_eq!(java_string_hash("Aa"), java_string_hash("BB"));
        let aa = build_subscription("T", &MessageSelector::tag("Aa"), 1).unwrap();
        assert!(!tags_match(&aa, Some("BB")));
        assert!(tags_match(&sql, Some("whatever")));
    }
}
