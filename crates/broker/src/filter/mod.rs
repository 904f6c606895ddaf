//! Subscription expressions and the filters a pull reads through (`FilterAPI`,
//! `ExpressionMessageFilter`, `ConsumerFilterManager`).
//!
//! A TAG expression is `*` (or empty) for everything, else tags joined by `||`; each tag is trimmed
//! and matched by its Java hash against the consume queue's tags code. Hashes collide, so clients
//! re-check the tag string. A SQL92 expression ([`sql92`]) cannot be decided from the consume
//! queue: the broker reads each candidate record and evaluates the expression over its
//! properties. SQL92 needs `enablePropertyFilter`, on by default here (RocketMQ's default is off);
//! with it off, SQL92 subscriptions are refused the way a Java broker refuses them.

pub mod registry;
pub mod sql92;

use std::collections::HashSet;
use std::sync::Arc;

use apogee_protocol::message::java_string_hash;

pub use registry::FilterRegistry;
pub use sql92::Sql92Filter;

/// `SubscriptionData.SUB_ALL`.
pub const SUB_ALL: &str = "*";
pub const EXPRESSION_TYPE_TAG: &str = "TAG";
pub const EXPRESSION_TYPE_SQL92: &str = "SQL92";

/// Why a subscription cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// The expression does not parse (SUBSCRIPTION_PARSE_FAILED).
    Parse(String),
    /// An expression type this broker does not filter by, or SQL92 with `enablePropertyFilter`
    /// off (SYSTEM_ERROR).
    Unsupported(String),
}

/// The kind of a subscription's `expressionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpressionKind<'a> {
    /// `TAG`, empty or absent.
    Tag,
    Sql92,
    Other(&'a str),
}

impl<'a> ExpressionKind<'a> {
    pub fn of(expression_type: Option<&'a str>) -> Self {
        match expression_type.map(str::trim).unwrap_or("") {
            "" | EXPRESSION_TYPE_TAG => ExpressionKind::Tag,
            EXPRESSION_TYPE_SQL92 => ExpressionKind::Sql92,
            other => ExpressionKind::Other(other),
        }
    }
}

/// The SYSTEM_ERROR remark of a Java broker asked to filter by a type it does not offer.
pub fn unsupported_remark(expression_type: &str) -> String {
    format!("The broker does not support consumer to filter message by {expression_type}")
}

/// Which consume-queue entries a pull returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageFilter {
    All,
    /// Java hashes of the subscribed tags.
    Tags(HashSet<i32>),
    /// A SQL92 expression over the stored record's properties.
    Sql(Arc<Sql92Filter>),
}

impl MessageFilter {
    /// Whether an entry with this tags code passes (`isMatchedByConsumeQueue`): Java compares the
    /// code truncated to an int. SQL92 passes everything here and decides on the record.
    pub fn matches(&self, tags_code: i64) -> bool {
        match self {
            MessageFilter::All | MessageFilter::Sql(_) => true,
            MessageFilter::Tags(codes) => codes.contains(&(tags_code as i32)),
        }
    }

    /// The filter on the stored record (`isMatchedByCommitLog`), if this one has any.
    pub fn record_filter(&self) -> Option<&Sql92Filter> {
        match self {
            MessageFilter::Sql(f) => Some(f),
            _ => None,
        }
    }

    /// Builds the filter of an expression (`FilterAPI.build` + `ConsumerFilterManager.build`),
    /// compiling SQL92 with `compile` (a cache, in the broker).
    pub fn build_with(
        sub_string: Option<&str>,
        expression_type: Option<&str>,
        property_filter_enabled: bool,
        compile: impl FnOnce(&str) -> Result<Arc<Sql92Filter>, sql92::ParseError>,
    ) -> Result<Self, FilterError> {
        let kind = ExpressionKind::of(expression_type);
        if kind == ExpressionKind::Tag {
            return Self::build_tags(sub_string);
        }
        let Some(expression) = sub_string.filter(|s| !s.trim().is_empty()) else {
            let ty = expression_type.map(str::trim).unwrap_or("");
            return Err(FilterError::Parse(format!("empty {ty} expression")));
        };
        match kind {
            ExpressionKind::Sql92 if property_filter_enabled => compile(expression)
                .map(MessageFilter::Sql)
                .map_err(|e| FilterError::Parse(e.to_string())),
            ExpressionKind::Sql92 => Err(FilterError::Unsupported(unsupported_remark(
                EXPRESSION_TYPE_SQL92,
            ))),
            ExpressionKind::Other(ty) => Err(FilterError::Unsupported(unsupported_remark(ty))),
            ExpressionKind::Tag => Self::build_tags(sub_string),
        }
    }

    /// [`MessageFilter::build_with`] compiling SQL92 afresh.
    pub fn build(
        sub_string: Option<&str>,
        expression_type: Option<&str>,
        property_filter_enabled: bool,
    ) -> Result<Self, FilterError> {
        Self::build_with(
            sub_string,
            expression_type,
            property_filter_enabled,
            |text| Sql92Filter::compile(text).map(Arc::new),
        )
    }

    /// A TAG expression's filter.
    pub fn build_tags(sub_string: Option<&str>) -> Result<Self, FilterError> {
        let raw = sub_string.unwrap_or("");
        // Java takes only "" and "*" as everything; blanks around the star are forgiven here.
        let sub = raw.trim();
        if sub.is_empty() || sub == SUB_ALL {
            return Ok(MessageFilter::All);
        }
        let pieces: Vec<&str> = raw.split("||").collect();
        // Java's split drops trailing empty pieces: an expression made of separators alone splits
        // into nothing, an error; blank pieces are dropped after trimming, possibly leaving no
        // tag at all, which subscribes to nothing.
        if pieces.iter().all(|p| p.is_empty()) {
            return Err(FilterError::Parse(format!(
                "subString split error: {raw:?}"
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
            let f = MessageFilter::build(sub, None, true).unwrap();
            assert_eq!(f, MessageFilter::All);
            assert!(f.matches(0) && f.matches(12345));
            assert!(f.record_filter().is_none());
        }
        assert_eq!(
            MessageFilter::build(Some("*"), Some("TAG"), true).unwrap(),
            MessageFilter::All
        );
    }

    #[test]
    fn tags_are_split_trimmed_and_hashed() {
        let f = MessageFilter::build(Some("TagA || TagB||  "), Some("TAG"), true).unwrap();
        assert!(f.matches(i64::from(java_string_hash("TagA"))));
        assert!(f.matches(i64::from(java_string_hash("TagB"))));
        assert!(!f.matches(i64::from(java_string_hash("TagC"))));
        // A message without tags has tags code 0 and reaches only `*` subscribers.
        assert!(!f.matches(0));
        assert_eq!(tags_of("TagA || TagB"), ["TagA", "TagB"]);
        // The C++ client leaves spaces around `||`, and may lead with one.
        let cpp = MessageFilter::build(Some(" ||TagA ||  TagB"), Some(""), true).unwrap();
        assert_eq!(cpp, f);
        // A negative hash, sign-extended in the consume queue, still matches.
        let neg = MessageFilter::build(Some("Hello World"), None, true).unwrap();
        assert!(neg.matches(-862_545_276));
        // Pieces that are all blank subscribe to nothing, as in Java.
        let blank = MessageFilter::build(Some(" || "), None, true).unwrap();
        assert_eq!(blank, MessageFilter::Tags(HashSet::new()));
    }

    #[test]
    fn separators_only_and_empty_expressions_fail_to_parse() {
        for sub in ["||", "||||"] {
            assert!(matches!(
                MessageFilter::build(Some(sub), None, true),
                Err(FilterError::Parse(_))
            ));
        }
        for ty in ["SQL92", "FOO"] {
            for sub in [None, Some(""), Some("  ")] {
                assert!(matches!(
                    MessageFilter::build(sub, Some(ty), true),
                    Err(FilterError::Parse(_))
                ));
            }
        }
    }

    #[test]
    fn sql92_compiles_when_enabled_and_is_refused_when_off() {
        let f = MessageFilter::build(Some("a > 1"), Some("SQL92"), true).unwrap();
        assert!(f.matches(0), "the consume queue cannot decide SQL92");
        let sql = f.record_filter().expect("a record filter");
        assert_eq!(sql.source(), "a > 1");
        match MessageFilter::build(Some("a >"), Some("SQL92"), true) {
            Err(FilterError::Parse(why)) => assert!(why.contains("column 4"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            MessageFilter::build(Some("a > 1"), Some("SQL92"), false),
            Err(FilterError::Unsupported(
                "The broker does not support consumer to filter message by SQL92".into()
            ))
        );
        assert!(matches!(
            MessageFilter::build(Some("a > 1"), Some("FOO"), true),
            Err(FilterError::Unsupported(_))
        ));
        // The type is case-sensitive, as Java's FilterFactory lookup is.
        assert!(matches!(
            MessageFilter::build(Some("a > 1"), Some("sql92"), true),
            Err(FilterError::Unsupported(_))
        ));
    }
}
