//! The broker settings UPDATE_BROKER_CONFIG may change while the broker runs. Each is an atomic
//! read where it is used; [`BrokerConfig`] keeps the values the broker started with. The two
//! auto-create switches live in the topic and subscription group managers, which use them.
//!
//! Changes are not written anywhere: a restart goes back to the config file.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

use crate::config::BrokerConfig;

/// The runtime-changeable values, initialised from the config.
#[derive(Debug)]
pub(crate) struct LiveConfig {
    broker_permission: AtomicI32,
    long_polling_enable: AtomicBool,
    short_polling_time_ms: AtomicU64,
    lite_pull_message_enable: AtomicBool,
    trace_on: AtomicBool,
    validate_system_topic_when_update_topic: AtomicBool,
    max_transfer_count: AtomicUsize,
    max_transfer_bytes: AtomicUsize,
    transaction_check_interval_ms: AtomicU64,
}

/// One parsed `key=value` of an UPDATE_BROKER_CONFIG body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setting {
    AutoCreateTopicEnable(bool),
    AutoCreateSubscriptionGroup(bool),
    BrokerPermission(i32),
    LongPollingEnable(bool),
    ShortPollingTimeMills(u64),
    LitePullMessageEnable(bool),
    TraceOn(bool),
    ValidateSystemTopicWhenUpdateTopic(bool),
    MaxTransferCountOnMessageInMemory(usize),
    MaxTransferBytesOnMessageInMemory(usize),
    TransactionCheckInterval(u64),
}

/// Keys GET_BROKER_CONFIG shows that only take effect at startup.
const STATIC_KEYS: &[&str] = &[
    "brokerName",
    "brokerClusterName",
    "brokerId",
    "brokerIP1",
    "listenPort",
    "namesrvAddr",
    "defaultTopicQueueNums",
    "clusterTopicEnable",
    "brokerTopicEnable",
    "regionId",
    "registerNameServerPeriod",
    "registerBrokerTimeoutMills",
    "channelExpiredTimeout",
    "flushConsumerOffsetInterval",
    "storePathRootDir",
    "flushDiskType",
    "maxMessageSize",
    "mappedFileSizeCommitLog",
    "syncFlushTimeout",
    "fileReservedTime",
    "deleteWhen",
    "cleanResourceInterval",
    "diskMaxUsedSpaceRatio",
    "diskSpaceCleanForciblyRatio",
    "diskSpaceWarningLevelRatio",
];

/// Why a `key=value` cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SettingError {
    /// Known, but read only at startup.
    Static(String),
    Unknown(String),
    BadValue {
        key: String,
        value: String,
    },
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingError::Static(k) => write!(f, "{k} cannot be changed at runtime"),
            SettingError::Unknown(k) => write!(f, "{k} is not a known broker config"),
            SettingError::BadValue { key, value } => write!(f, "{key}: bad value {value:?}"),
        }
    }
}

impl Setting {
    /// Parses one key and its value (booleans as `true`/`false`, any case).
    pub fn parse(key: &str, value: &str) -> Result<Setting, SettingError> {
        let v = value.trim();
        let bad = || SettingError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
        };
        let boolean = || match v.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(bad()),
        };
        let number = || v.parse::<u64>().map_err(|_| bad());
        let size = || v.parse::<usize>().map_err(|_| bad());
        Ok(match key {
            "autoCreateTopicEnable" => Setting::AutoCreateTopicEnable(boolean()?),
            "autoCreateSubscriptionGroup" => Setting::AutoCreateSubscriptionGroup(boolean()?),
            "brokerPermission" => {
                let p = v.parse::<i32>().map_err(|_| bad())?;
                // PermName bits: PRIORITY 8, READ 4, WRITE 2, INHERIT 1.
                if !(0..=15).contains(&p) {
                    return Err(bad());
                }
                Setting::BrokerPermission(p)
            }
            "longPollingEnable" => Setting::LongPollingEnable(boolean()?),
            "shortPollingTimeMills" => Setting::ShortPollingTimeMills(number()?),
            "litePullMessageEnable" => Setting::LitePullMessageEnable(boolean()?),
            "traceOn" => Setting::TraceOn(boolean()?),
            "validateSystemTopicWhenUpdateTopic" => {
                Setting::ValidateSystemTopicWhenUpdateTopic(boolean()?)
            }
            "maxTransferCountOnMessageInMemory" => {
                Setting::MaxTransferCountOnMessageInMemory(size()?)
            }
            "maxTransferBytesOnMessageInMemory" => {
                Setting::MaxTransferBytesOnMessageInMemory(size()?)
            }
            "transactionCheckInterval" => Setting::TransactionCheckInterval(number()?),
            k if STATIC_KEYS.contains(&k) => return Err(SettingError::Static(k.to_owned())),
            k => return Err(SettingError::Unknown(k.to_owned())),
        })
    }
}

impl LiveConfig {
    pub fn new(c: &BrokerConfig) -> Self {
        Self {
            broker_permission: AtomicI32::new(c.broker_permission),
            long_polling_enable: AtomicBool::new(c.long_polling_enable),
            short_polling_time_ms: AtomicU64::new(c.short_polling_time_ms),
            lite_pull_message_enable: AtomicBool::new(c.lite_pull_message_enable),
            trace_on: AtomicBool::new(c.trace_on),
            validate_system_topic_when_update_topic: AtomicBool::new(
                c.validate_system_topic_when_update_topic,
            ),
            max_transfer_count: AtomicUsize::new(c.max_transfer_count),
            max_transfer_bytes: AtomicUsize::new(c.max_transfer_bytes),
            transaction_check_interval_ms: AtomicU64::new(c.transaction_check_interval_ms),
        }
    }

    /// Stores `s` if it is one of this struct's values; false for the auto-create switches,
    /// which belong to the managers.
    pub fn set(&self, s: Setting) -> bool {
        let o = Ordering::Relaxed;
        match s {
            Setting::BrokerPermission(v) => self.broker_permission.store(v, o),
            Setting::LongPollingEnable(v) => self.long_polling_enable.store(v, o),
            Setting::ShortPollingTimeMills(v) => self.short_polling_time_ms.store(v, o),
            Setting::LitePullMessageEnable(v) => self.lite_pull_message_enable.store(v, o),
            Setting::TraceOn(v) => self.trace_on.store(v, o),
            Setting::ValidateSystemTopicWhenUpdateTopic(v) => {
                self.validate_system_topic_when_update_topic.store(v, o)
            }
            Setting::MaxTransferCountOnMessageInMemory(v) => self.max_transfer_count.store(v, o),
            Setting::MaxTransferBytesOnMessageInMemory(v) => self.max_transfer_bytes.store(v, o),
            Setting::TransactionCheckInterval(v) => self.transaction_check_interval_ms.store(v, o),
            Setting::AutoCreateTopicEnable(_) | Setting::AutoCreateSubscriptionGroup(_) => {
                return false
            }
        }
        true
    }

    pub fn broker_permission(&self) -> i32 {
        self.broker_permission.load(Ordering::Relaxed)
    }

    pub fn long_polling_enable(&self) -> bool {
        self.long_polling_enable.load(Ordering::Relaxed)
    }

    pub fn short_polling_time_ms(&self) -> u64 {
        self.short_polling_time_ms.load(Ordering::Relaxed)
    }

    pub fn lite_pull_message_enable(&self) -> bool {
        self.lite_pull_message_enable.load(Ordering::Relaxed)
    }

    pub fn trace_on(&self) -> bool {
        self.trace_on.load(Ordering::Relaxed)
    }

    pub fn validate_system_topic_when_update_topic(&self) -> bool {
        self.validate_system_topic_when_update_topic
            .load(Ordering::Relaxed)
    }

    pub fn max_transfer_count(&self) -> usize {
        self.max_transfer_count.load(Ordering::Relaxed)
    }

    pub fn max_transfer_bytes(&self) -> usize {
        self.max_transfer_bytes.load(Ordering::Relaxed)
    }

    pub fn transaction_check_interval_ms(&self) -> u64 {
        self.transaction_check_interval_ms.load(Ordering::Relaxed)
    }
}

/// `key=value` pairs of a Java properties text: `#`/`!` comments, `=`, `:` or blank as separator,
/// backslash escapes and line continuations.
pub(crate) fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut logical = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        // Leading blanks go, on continuation lines too.
        let line = raw.trim_start();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        // An odd number of trailing backslashes continues the line.
        let trailing = line.chars().rev().take_while(|&c| c == '\\').count();
        if trailing % 2 == 1 {
            pending.push_str(&line[..line.len() - 1]);
            continue;
        }
        pending.push_str(line);
        logical.push(std::mem::take(&mut pending));
    }
    if !pending.is_empty() {
        logical.push(pending);
    }
    logical.iter().map(|l| split_pair(l)).collect()
}

fn split_pair(line: &str) -> (String, String) {
    let mut key = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    key.push(unescape(n));
                }
            }
            '=' | ':' => break,
            c if c.is_whitespace() => {
                // Blanks, then optionally one `=` or `:`, separate the key from the value.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if chars.peek().is_some_and(|&c| c == '=' || c == ':') {
                    chars.next();
                }
                break;
            }
            c => key.push(c),
        }
    }
    while chars.peek().is_some_and(|c| c.is_whitespace()) {
        chars.next();
    }
    let mut value = String::new();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                value.push(unescape(n));
            }
        } else {
            value.push(c);
        }
    }
    (key, value)
}

fn unescape(c: char) -> char {
    match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'f' => '\u{c}',
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_text_parses_like_java() {
        let text = "# comment\n! other\n\nautoCreateTopicEnable=false\n  traceOn : true\n\
                    key\\=with\\:escapes = a\\=b\nsplit=one\\\n   two\nbare\nspaced value x\n";
        let pairs = parse_properties(text);
        assert_eq!(
            pairs,
            vec![
                ("autoCreateTopicEnable".into(), "false".into()),
                ("traceOn".into(), "true".into()),
                ("key=with:escapes".into(), "a=b".into()),
                ("split".into(), "onetwo".into()),
                ("bare".into(), "".into()),
                ("spaced".into(), "value x".into()),
            ]
        );
        assert!(parse_properties("").is_empty());
        assert_eq!(parse_properties("a=1\\"), vec![("a".into(), "1".into())]);
    }

    #[test]
    fn settings_parse_known_keys_and_refuse_the_rest() {
        assert_eq!(
            Setting::parse("autoCreateTopicEnable", "FALSE"),
            Ok(Setting::AutoCreateTopicEnable(false))
        );
        assert_eq!(
            Setting::parse("brokerPermission", "4"),
            Ok(Setting::BrokerPermission(4))
        );
        assert_eq!(
            Setting::parse("brokerName", "x"),
            Err(SettingError::Static("brokerName".into()))
        );
        assert_eq!(
            Setting::parse("noSuchKey", "x"),
            Err(SettingError::Unknown("noSuchKey".into()))
        );
        assert!(matches!(
            Setting::parse("longPollingEnable", "yes"),
            Err(SettingError::BadValue { .. })
        ));
        assert!(Setting::parse("brokerPermission", "16").is_err());
        assert!(Setting::parse("shortPollingTimeMills", "-1").is_err());
    }

    #[test]
    fn live_values_follow_their_settings() {
        let live = LiveConfig::new(&BrokerConfig::default());
        assert!(live.long_polling_enable());
        assert!(live.set(Setting::LongPollingEnable(false)));
        assert!(!live.long_polling_enable());
        assert!(live.set(Setting::BrokerPermission(4)));
        assert_eq!(live.broker_permission(), 4);
        assert!(!live.set(Setting::AutoCreateTopicEnable(false)));
    }
}
