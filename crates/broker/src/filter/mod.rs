//! Subscription expressions and the consume-queue filter (`FilterAPI`, `ExpressionMessageFilter`).
//!
//! A TAG expression is `*` (or empty) for everything, else tags joined by `||`; each tag is trimmed
//! and matched by its Java hash against the consume queue's tags code. Hashes collide, so clients
//! re-check the tag string. SQL92 filtering needs `enablePropertyFilter`, which this broker does
//! not offer yet (issue 6), so such subscriptions are refused the way a Java broker with the
//! property filter off refuses them.

pub mod sql92;

use std::collections::HashSet;

use apogee_protocol::message::java_string_hash;

/// `SubscriptionData.SUB_ALL`.
pub const SUB_ALL: &str = "*";
pub const EXPRESSION_TYPE_TAG: &str = "TAG";
pub const EXPRESSION_TYPE_SQL92: &str = "SQL92";

/// Why a subscription cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// The expression does not parse (SUBSCRIPTION_PARSE_FAILED).
    Parse(String),
    /// A non-TAG expression type (SYSTEM_ERROR, as with `enablePropertyFilter=false`).
    Unsupported(String),
}

/// Which consume-queue entries a pull returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageFilter {
    All,
    /// Java hashes of the subscribed tags.
    Tags(HashSet<i32>),
}

impl MessageFilter {
    /// Whether an entry with this tags code passes (`isMatchedByConsumeQueue`): Java compares the
    /// code truncated to an int.
    pub fn matches(&self, tags_code: i64) -> bool {
        match self {
            MessageFilter::All => true,
            MessageFilter::Tags(codes) => codes.contains(&(tags_code as i32)),
        }
    }

    /// Builds the filter of an expression (`FilterAPI.build`).
    pub fn build(
        sub_string: Option<&str>,
        expression_type: Option<&str>,
    ) -> Result<Self, FilterError> {
        let ty = expression_type.map(str::trim).unwrap_or("");
        if !(ty.is_empty() || ty == EXPRESSION_TYPE_TAG) {
            if sub_string.is_none_or(|s| s.is_empty()) {
                return Err(FilterError::Parse(format!("empty {ty} expression")));
            }
            return Err(FilterError::Unsupported(format!(
                "The broker does not support consumer to filter message by {ty}"
            )));
        }
        let sub = sub_string.unwrap_or("").trim();
        if sub.is_empty() || sub == SUB_ALL {
            return Ok(MessageFilter::All);
        }
        let pieces: Vec<&str> = sub.split("||").collect();
        // Java's split drops trailing empty pieces; an expression of separators only is an error.
        if pieces.iter().all(|p| p.is_empty()) {
            return Err(FilterError::Parse(format!(
                "subString split error: {sub:?}"
            )));
        }
        Ok(MessageFilter::Tags(
            pieces
                .iter()
                .map(|p| p.trim())
                .filter(|t| !t.is_empty())
                .map(java_string_hash)
                .collect(),
        ))
    }
}

/// The tags of a TAG expression, trimmed (`tagsSet`).
pub fn tags_of(sub_string: &str) -> Vec<String> {
    let sub = sub_string.trim();
    if sub.is_empty() || sub == SUB_ALL {
        return Vec::new();
    }
    sub.split("||")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_and_empty_match_everything() {
        for sub in [None, Some(""), Some("*"), Some(" * ")] {
            let f = MessageFilter::build(sub, None).unwrap();
            assert_eq!(f, MessageFilter::All);
            assert!(f.matches(0) && f.matches(12345));
        }
        assert_eq!(
            MessageFilter::build(Some("*"), Some("TAG")).unwrap(),
            MessageFilter::All
        );
    }

    #[test]
    fn tags_are_split_trimmed_and_hashed() {
        let f = MessageFilter::build(Some("TagA || TagB||  "), Some("TAG")).unwrap();
        assert!(f.matches(i64::from(java_string_hash("TagA"))));
        assert!(f.matches(i64::from(java_string_hash("TagB"))));
        assert!(!f.matches(i64::from(java_string_hash("TagC"))));
        assert!(!f.matches(0));
        assert_eq!(tags_of("TagA || TagB"), ["TagA", "TagB"]);
        // A negative hash, sign-extended in the consume queue, still matches.
        let neg = MessageFilter::build(Some("Hello World"), None).unwrap();
        assert!(neg.matches(-862_545_276));
    }

    #[test]
    fn separators_only_fail_to_parse_and_sql92_is_unsupported() {
        assert!(matches!(
            MessageFilter::build(Some("||"), None),
            Err(FilterError::Parse(_))
        ));
        assert!(matches!(
            MessageFilter::build(Some("a > 1"), Some("SQL92")),
            Err(FilterError::Unsupported(_))
        ));
        assert!(matches!(
            MessageFilter::build(Some(""), Some("SQL92")),
            Err(FilterError::Parse(_))
        ));
    }
}
