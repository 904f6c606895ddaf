//! Compiled SQL92 filters (`ConsumerFilterManager`): those of the subscriptions consumers
//! register by heartbeat, per consumer group and topic with the subscription's version, and a small
//! cache for expressions that arrive with each pull (FLAG_SUBSCRIPTION).
//!
//! Registration follows RocketMQ: a newer version with a changed expression is compiled again; an
//! older or equal version is ignored; a heartbeat's answer never depends on the expression, so a
//! bad one is kept as its error and reported when a pull asks for it (FILTER_DATA_NOT_EXIST).
//! Unlike RocketMQ, which keeps the filters of topics a group stopped subscribing to for a day,
//! they are dropped with the next heartbeat that no longer lists them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apogee_protocol::body::SubscriptionData;

use super::sql92::{ParseError, Sql92Filter};
use super::ExpressionKind;
use crate::manager::lock;

/// Expressions kept compiled for pulls that carry them.
const CACHED_EXPRESSIONS: usize = 256;
/// Longer expressions are compiled on every pull instead of taking cache room.
const CACHED_EXPRESSION_MAX_BYTES: usize = 4096;

/// The filter registered for one (group, topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredFilter {
    pub expression: String,
    /// The subscription's `subVersion` (`ConsumerFilterData.clientVersion`).
    pub sub_version: i64,
    /// The compiled filter, or why the expression does not compile.
    pub compiled: Result<Arc<Sql92Filter>, String>,
}

#[derive(Default)]
struct State {
    /// group → topic → filter.
    groups: HashMap<String, HashMap<String, RegisteredFilter>>,
    cache: HashMap<String, Result<Arc<Sql92Filter>, ParseError>>,
}

#[derive(Default)]
pub struct FilterRegistry {
    state: Mutex<State>,
}

impl FilterRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The compiled form of `text`, from the cache when it was compiled before.
    pub fn compile(&self, text: &str) -> Result<Arc<Sql92Filter>, ParseError> {
        if let Some(hit) = lock(&self.state).cache.get(text) {
            return hit.clone();
        }
        // Compiled outside the lock: it is the slow part.
        let compiled = Sql92Filter::compile(text).map(Arc::new);
        if text.len() <= CACHED_EXPRESSION_MAX_BYTES {
            let mut state = lock(&self.state);
            if state.cache.len() >= CACHED_EXPRESSIONS {
                state.cache.clear();
            }
            state.cache.insert(text.to_owned(), compiled.clone());
        }
        compiled
    }

    /// Takes the subscriptions of a consumer group's heartbeat. Returns the (topic, error) of
    /// every SQL92 expression newly found not to compile, for the caller to log.
    pub fn register_group(&self, group: &str, subs: &[SubscriptionData]) -> Vec<(String, String)> {
        let sql: Vec<&SubscriptionData> = subs
            .iter()
            .filter(|s| ExpressionKind::of(Some(&s.expression_type)) == ExpressionKind::Sql92)
            .filter(|s| !s.sub_string.is_empty())
            .collect();
        let mut failures = Vec::new();
        let mut to_compile = Vec::new();
        {
            let mut state = lock(&self.state);
            let known = state.groups.entry(group.to_owned()).or_default();
            known.retain(|topic, _| sql.iter().any(|s| &s.topic == topic));
            for sub in &sql {
                match known.get_mut(&sub.topic) {
                    Some(old) if sub.sub_version <= old.sub_version => {}
                    Some(old) if old.expression == sub.sub_string => {
                        old.sub_version = sub.sub_version;
                    }
                    _ => to_compile.push(*sub),
                }
            }
            if known.is_empty() {
                state.groups.remove(group);
            }
        }
        if to_compile.is_empty() {
            return failures;
        }
        let compiled: Vec<(&SubscriptionData, RegisteredFilter)> = to_compile
            .into_iter()
            .map(|sub| {
                let compiled = self.compile(&sub.sub_string).map_err(|e| e.to_string());
                if let Err(why) = &compiled {
                    failures.push((sub.topic.clone(), why.clone()));
                }
                let filter = RegisteredFilter {
                    expression: sub.sub_string.clone(),
                    sub_version: sub.sub_version,
                    compiled,
                };
                (sub, filter)
            })
            .collect();
        let mut state = lock(&self.state);
        let known = state.groups.entry(group.to_owned()).or_default();
        for (sub, filter) in compiled {
            // Another heartbeat may have registered a newer version meanwhile.
            let newer_known = known
                .get(&sub.topic)
                .is_some_and(|old| old.sub_version >= filter.sub_version);
            if !newer_known {
                known.insert(sub.topic.clone(), filter);
            }
        }
        failures
    }

    /// The filter registered for a group's subscription to `topic`.
    pub fn get(&self, group: &str, topic: &str) -> Option<RegisteredFilter> {
        lock(&self.state)
            .groups
            .get(group)
            .and_then(|g| g.get(topic))
            .cloned()
    }

    /// Forgets the filters of groups for which `keep` is false.
    pub fn retain_groups(&self, keep: impl Fn(&str) -> bool) {
        lock(&self.state).groups.retain(|group, _| keep(group));
    }

    /// Groups with registered filters.
    pub fn group_count(&self) -> usize {
        lock(&self.state).groups.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(topic: &str, expr: &str, version: i64) -> SubscriptionData {
        SubscriptionData {
            topic: topic.into(),
            sub_string: expr.into(),
            expression_type: "SQL92".into(),
            sub_version: version,
            ..SubscriptionData::default()
        }
    }

    fn tag(topic: &str) -> SubscriptionData {
        SubscriptionData {
            topic: topic.into(),
            sub_string: "*".into(),
            ..SubscriptionData::default()
        }
    }

    fn source(r: &FilterRegistry, group: &str, topic: &str) -> Option<(String, i64)> {
        let f = r.get(group, topic)?;
        Some((f.compiled.ok()?.source().to_owned(), f.sub_version))
    }

    #[test]
    fn heartbeat_subscriptions_are_compiled_per_group_and_topic() {
        let r = FilterRegistry::new();
        assert!(r
            .register_group("G", &[sql("T", "a > 1", 10), tag("U")])
            .is_empty());
        assert_eq!(source(&r, "G", "T"), Some(("a > 1".into(), 10)));
        assert_eq!(r.get("G", "U"), None);
        assert_eq!(r.get("H", "T"), None);

        // Same expression, newer version: the version moves on.
        r.register_group("G", &[sql("T", "a > 1", 11)]);
        assert_eq!(source(&r, "G", "T"), Some(("a > 1".into(), 11)));
        // An older or equal version is ignored, even with another expression.
        r.register_group("G", &[sql("T", "a > 2", 11)]);
        assert_eq!(source(&r, "G", "T"), Some(("a > 1".into(), 11)));
        // A newer version with another expression replaces it.
        r.register_group("G", &[sql("T", "a > 2", 12)]);
        assert_eq!(source(&r, "G", "T"), Some(("a > 2".into(), 12)));
    }

    #[test]
    fn bad_expressions_are_kept_as_their_error() {
        let r = FilterRegistry::new();
        let failures = r.register_group("G", &[sql("T", "a >", 1)]);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0, "T");
        let f = r.get("G", "T").unwrap();
        assert!(f.compiled.unwrap_err().contains("column 4"));
        // Fixed by a newer subscription.
        assert!(r.register_group("G", &[sql("T", "a > 1", 2)]).is_empty());
        assert_eq!(source(&r, "G", "T"), Some(("a > 1".into(), 2)));
        // Broken again: the good filter is gone.
        r.register_group("G", &[sql("T", "a = NULL", 3)]);
        assert!(r.get("G", "T").unwrap().compiled.is_err());
    }

    #[test]
    fn topics_no_longer_subscribed_by_sql_are_dropped() {
        let r = FilterRegistry::new();
        r.register_group("G", &[sql("T", "a > 1", 1), sql("U", "b = 'x'", 1)]);
        r.register_group("G", &[tag("T"), sql("U", "b = 'x'", 1)]);
        assert_eq!(r.get("G", "T"), None);
        assert!(r.get("G", "U").is_some());
        r.register_group("G", &[tag("T")]);
        assert_eq!(r.group_count(), 0);
        r.register_group("G", &[sql("T", "a > 1", 1)]);
        r.register_group("H", &[sql("T", "a > 1", 1)]);
        r.retain_groups(|g| g == "H");
        assert_eq!(r.get("G", "T"), None);
        assert!(r.get("H", "T").is_some());
    }

    #[test]
    fn the_pull_cache_returns_the_same_compiled_filter_and_errors() {
        let r = FilterRegistry::new();
        let a = r.compile("a > 1").unwrap();
        let b = r.compile("a > 1").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(r.compile("a >").unwrap_err(), r.compile("a >").unwrap_err());
        for i in 0..(CACHED_EXPRESSIONS * 2) {
            r.compile(&format!("a > {i}")).unwrap();
        }
        assert!(lock(&r.state).cache.len() <= CACHED_EXPRESSIONS);
    }
}
