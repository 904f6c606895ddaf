//! Consumer building blocks and the lite pull consumer.
//!
//! * [`pull`]: one pull call, its answer decoded and re-filtered.
//! * [`allocate`]: rebalance strategies as pure functions.
//! * [`offset_store`]: offsets on brokers or in a local file.
//! * [`subscription`]: tag and SQL92 expressions.
//! * [`start_offset`]: where a queue starts when the group has no committed offset.
//! * [`LitePullConsumer`]: `poll()` over background per-queue pulls.
//! * [`PushConsumer`]: a listener called with pulled messages,
//!   concurrently or in queue order.

/// The builder setters the lite and push consumers share: both builders hold `group`, `config`,
/// `instance`, `namespace`, `options` (with `message_model`, `consume_from_where` and
/// `consume_timestamp_ms`) and `strategy`.
macro_rules! common_consumer_setters {
    () => {
        pub fn group(mut self, group: impl Into<String>) -> Self {
            self.group = group.into();
            self
        }

        /// Name server address(es): `"host:9876"` or `"a:9876;b:9876"`. Adds to earlier calls.
        pub fn name_server(mut self, addrs: impl AsRef<str>) -> Self {
            self.config
                .name_server_addrs
                .extend(split_name_servers(addrs.as_ref()));
            self
        }

        pub fn instance_name(mut self, name: impl Into<String>) -> Self {
            self.config.instance_name = name.into();
            self
        }

        /// The whole client configuration (name servers, instance name, intervals, transport).
        pub fn client_config(mut self, config: ClientConfig) -> Self {
            self.config = config;
            self
        }

        /// Runs on this instance instead of the shared one for the configured name servers.
        pub fn client_instance(mut self, instance: ClientInstance) -> Self {
            self.instance = Some(instance);
            self
        }

        /// Prefixes topics and the group with `namespace%`.
        pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
            self.namespace = Some(namespace.into()).filter(|n: &String| !n.is_empty());
            self
        }

        pub fn message_model(mut self, model: MessageModel) -> Self {
            self.options.message_model = model;
            self
        }

        pub fn consume_from_where(mut self, from_where: ConsumeFromWhere) -> Self {
            self.options.consume_from_where = from_where;
            self
        }

        /// Start time for [`ConsumeFromWhere::ConsumeFromTimestamp`] (ms since the epoch).
        pub fn consume_timestamp_ms(mut self, timestamp_ms: i64) -> Self {
            self.options.consume_timestamp_ms = timestamp_ms;
            self
        }

        pub fn allocate_strategy(mut self, strategy: impl AllocateStrategy + 'static) -> Self {
            self.strategy = Arc::new(strategy);
            self
        }
    };
}

pub mod allocate;
mod lite;
pub mod offset_store;
pub mod pull;
pub mod push;
pub mod subscription;

use std::collections::BTreeMap;

use apogee_protocol::body::{ConsumeFromWhere, MessageQueue, SubscriptionData};
use serde::Serialize;

pub use lite::{LiteOptions, LitePullConsumer, LitePullConsumerBuilder};
pub use push::{PushConsumer, PushConsumerBuilder, PushOptions};

/// `ConsumerRunningInfo.PROP_CONSUME_TYPE`.
pub const PROP_CONSUME_TYPE: &str = "PROP_CONSUME_TYPE";
/// `ConsumerRunningInfo.PROP_CONSUMER_START_TIMESTAMP`.
pub const PROP_CONSUMER_START_TIMESTAMP: &str = "PROP_CONSUMER_START_TIMESTAMP";
/// `ConsumerRunningInfo.PROP_NAMESERVER_ADDR`.
pub const PROP_NAMESERVER_ADDR: &str = "PROP_NAMESERVER_ADDR";
/// `ConsumerRunningInfo.PROP_CLIENT_VERSION`.
pub const PROP_CLIENT_VERSION: &str = "PROP_CLIENT_VERSION";
/// `ConsumerRunningInfo.PROP_CONSUME_ORDERLY` (the Java constant's value).
pub const PROP_CONSUME_ORDERLY: &str = "PROP_CONSUMEORDERLY";

/// The answer to GET_CONSUMER_RUNNING_INFO (`ConsumerRunningInfo`): enough for `mqadmin
/// consumerStatus` and the dashboard to show the consumer's type, subscriptions and queues.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerRunningInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jstack: Option<String>,
    pub mq_table: BTreeMap<MessageQueue, ProcessQueueInfo>,
    pub properties: BTreeMap<String, String>,
    pub status_table: BTreeMap<String, serde_json::Value>,
    pub subscription_set: Vec<SubscriptionData>,
}

/// One queue's state in [`ConsumerRunningInfo`] (`ProcessQueueInfo`, the fields a client has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessQueueInfo {
    pub cached_msg_count: i64,
    pub cached_msg_max_offset: i64,
    pub cached_msg_min_offset: i64,
    pub commit_offset: i64,
    /// Spelt as Java spells it.
    pub droped: bool,
    pub last_consume_timestamp: i64,
    pub last_pull_timestamp: i64,
    pub locked: bool,
}

/// Where a queue starts when the group has no committed offset for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// This offset.
    At(i64),
    /// The queue's max offset (skip what is there).
    MaxOffset,
    /// The first message stored at or after this time (SEARCH_OFFSET_BY_TIMESTAMP).
    Timestamp(i64),
}

/// RocketMQ's consume-from-where rule (`RebalanceLitePullImpl` / `RebalancePushImpl`
/// `computePullFromWhereWithException`) given the committed offset (`None`: the broker has
/// none). A committed offset always wins. Without one: LAST (and its deprecated aliases) skips
/// history, except for retry topics, which start at 0; FIRST starts at 0 (the broker corrects
/// it to the real minimum); TIMESTAMP searches by time, except for retry topics, which skip.
pub fn start_offset(
    from_where: ConsumeFromWhere,
    committed: Option<i64>,
    is_retry_topic: bool,
    consume_timestamp_ms: i64,
) -> StartOffset {
    if let Some(o) = committed.filter(|o| *o >= 0) {
        return StartOffset::At(o);
    }
    match from_where {
        ConsumeFromWhere::ConsumeFromFirstOffset => StartOffset::At(0),
        ConsumeFromWhere::ConsumeFromTimestamp if is_retry_topic => StartOffset::MaxOffset,
        ConsumeFromWhere::ConsumeFromTimestamp => StartOffset::Timestamp(consume_timestamp_ms),
        _ if is_retry_topic => StartOffset::At(0),
        _ => StartOffset::MaxOffset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_protocol::json::{self, JsonForm};

    #[test]
    fn start_offset_follows_rocketmq_rules() {
        use ConsumeFromWhere::*;
        // (from where, committed, retry topic, expected)
        let table = [
            (ConsumeFromLastOffset, Some(42), false, StartOffset::At(42)),
            (ConsumeFromFirstOffset, Some(42), false, StartOffset::At(42)),
            (ConsumeFromTimestamp, Some(0), false, StartOffset::At(0)),
            (ConsumeFromLastOffset, None, false, StartOffset::MaxOffset),
            (ConsumeFromLastOffset, None, true, StartOffset::At(0)),
            (ConsumeFromMaxOffset, None, false, StartOffset::MaxOffset),
            (ConsumeFromMinOffset, None, false, StartOffset::MaxOffset),
            (
                ConsumeFromLastOffsetAndFromMinWhenBootFirst,
                None,
                true,
                StartOffset::At(0),
            ),
            (ConsumeFromFirstOffset, None, false, StartOffset::At(0)),
            (ConsumeFromFirstOffset, None, true, StartOffset::At(0)),
            (
                ConsumeFromTimestamp,
                None,
                false,
                StartOffset::Timestamp(1_000),
            ),
            (ConsumeFromTimestamp, None, true, StartOffset::MaxOffset),
            (
                ConsumeFromLastOffset,
                Some(-1),
                false,
                StartOffset::MaxOffset,
            ),
        ];
        for (w, committed, retry, want) in table {
            assert_eq!(
                start_offset(w, committed, retry, 1_000),
                want,
                "{w:?} {committed:?} {retry}"
            );
        }
    }

    #[test]
    fn running_info_serializes_with_java_field_names() {
        let mut info = ConsumerRunningInfo::default();
        info.properties
            .insert(PROP_CONSUME_TYPE.into(), "CONSUME_ACTIVELY".into());
        info.mq_table.insert(
            MessageQueue::new("T", "b", 0),
            ProcessQueueInfo {
                commit_offset: 5,
                ..Default::default()
            },
        );
        let text = json::to_string(&info, JsonForm::Fastjson).unwrap();
        assert!(
            text.contains(r#""properties":{"PROP_CONSUME_TYPE":"CONSUME_ACTIVELY"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"{"brokerName":"b","queueId":0,"topic":"T"}:{"#),
            "{text}"
        );
        assert!(text.contains(r#""commitOffset":5"#), "{text}");
        assert!(text.contains(r#""subscriptionSet":[]"#), "{text}");
        assert!(!text.contains("jstack"), "{text}");
    }
}
