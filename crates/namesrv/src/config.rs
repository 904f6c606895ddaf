//! The name server's configuration: every setting with RocketMQ's default, readable from TOML (or
//! any serde format) with missing keys defaulted, and shown to admin tools as Java-named
//! `key=value` lines (GET_NAMESRV_CONFIG / UPDATE_NAMESRV_CONFIG).

use std::path::PathBuf;
use std::time::Duration;

use apogee_remoting::RemotingConfig;
use serde::{Deserialize, Serialize};

use crate::error::NamesrvError;
use crate::route::{RouteSettings, DEFAULT_BROKER_EXPIRY_MS};

/// RocketMQ's name server port.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:9876";
/// Where the KV config lives unless told otherwise (Java: `~/namesrv/kvConfig.json`; here under
/// the data folder, like the rest of Apogee's state).
pub const DEFAULT_KV_CONFIG_PATH: &str = "data/namesrv/kvConfig.json";
/// How often silent brokers are looked for (`scanNotActiveBrokerInterval`).
pub const DEFAULT_SCAN_INTERVAL_MS: u64 = 5_000;

/// Everything the name server can be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamesrvConfig {
    /// `host:port` to listen on; port 0 picks a free port.
    pub listen_addr: String,
    /// The KV config file.
    pub kv_config_path: PathBuf,
    /// How often brokers past their heartbeat timeout are dropped.
    pub scan_not_active_broker_interval_ms: u64,
    /// Silence allowed to a broker that registered without `heartbeatTimeoutMillis`.
    pub broker_expiry_ms: u64,
    /// Add `orderTopicConf` from the `ORDER_TOPIC_CONFIG` KV namespace to routes.
    pub order_message_enable: bool,
    /// Answer a broker's registration with the `ORDER_TOPIC_CONFIG` KV table.
    pub return_order_topic_config_to_broker: bool,
    /// Serve GET_ALL_TOPIC_LIST_FROM_NAMESERVER.
    pub enable_all_topic_list: bool,
    /// Serve GET_TOPICS_BY_CLUSTER and the unit topic lists.
    pub enable_topic_list: bool,
    /// See [`RouteSettings::delete_topic_with_broker_registration`].
    pub delete_topic_with_broker_registration: bool,
    /// See [`RouteSettings::support_acting_master`].
    pub support_acting_master: bool,
    /// Transport limits.
    pub remoting: NamesrvRemotingConfig,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        Self {
            listen_addr: DEFAULT_LISTEN_ADDR.to_owned(),
            kv_config_path: PathBuf::from(DEFAULT_KV_CONFIG_PATH),
            scan_not_active_broker_interval_ms: DEFAULT_SCAN_INTERVAL_MS,
            broker_expiry_ms: DEFAULT_BROKER_EXPIRY_MS.unsigned_abs(),
            order_message_enable: false,
            return_order_topic_config_to_broker: true,
            enable_all_topic_list: true,
            enable_topic_list: true,
            delete_topic_with_broker_registration: true,
            support_acting_master: false,
            remoting: NamesrvRemotingConfig::default(),
        }
    }
}

/// The server-side transport limits of [`RemotingConfig`], in a form serde can read. Defaults are
/// `RemotingConfig`'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamesrvRemotingConfig {
    pub max_frame_bytes: usize,
    pub max_connections: usize,
    pub max_in_flight_per_connection: usize,
    pub outgoing_queue_capacity: usize,
    /// 0 keeps idle connections forever.
    pub idle_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
}

impl Default for NamesrvRemotingConfig {
    fn default() -> Self {
        let d = RemotingConfig::default();
        Self {
            max_frame_bytes: d.max_frame_bytes,
            max_connections: d.max_connections,
            max_in_flight_per_connection: d.max_in_flight_per_connection,
            outgoing_queue_capacity: d.outgoing_queue_capacity,
            idle_timeout_ms: d.idle_timeout_ms,
            shutdown_grace_ms: d.shutdown_grace_ms,
        }
    }
}

impl NamesrvConfig {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), NamesrvError> {
        if self.scan_not_active_broker_interval_ms == 0 {
            return Err(NamesrvError::InvalidConfig(
                "scan_not_active_broker_interval_ms must be above 0".into(),
            ));
        }
        if self.broker_expiry_ms == 0 || i64::try_from(self.broker_expiry_ms).is_err() {
            return Err(NamesrvError::InvalidConfig(
                "broker_expiry_ms must be between 1 and i64::MAX".into(),
            ));
        }
        let r = &self.remoting;
        if r.max_frame_bytes < 1024 || r.max_connections == 0 || r.max_in_flight_per_connection == 0
        {
            return Err(NamesrvError::InvalidConfig(
                "remoting limits must allow at least one connection, one request and 1 KiB frames"
                    .into(),
            ));
        }
        if r.outgoing_queue_capacity == 0 {
            return Err(NamesrvError::InvalidConfig(
                "remoting.outgoing_queue_capacity must be above 0".into(),
            ));
        }
        Ok(())
    }

    pub fn scan_interval(&self) -> Duration {
        Duration::from_millis(self.scan_not_active_broker_interval_ms)
    }

    /// The transport config for the server.
    pub fn remoting_config(&self) -> RemotingConfig {
        let r = &self.remoting;
        RemotingConfig {
            max_frame_bytes: r.max_frame_bytes,
            max_connections: r.max_connections,
            max_in_flight_per_connection: r.max_in_flight_per_connection,
            outgoing_queue_capacity: r.outgoing_queue_capacity,
            idle_timeout_ms: r.idle_timeout_ms,
            shutdown_grace_ms: r.shutdown_grace_ms,
            ..RemotingConfig::default()
        }
    }

    /// The route-table switches.
    pub fn route_settings(&self) -> RouteSettings {
        RouteSettings {
            default_broker_expiry_ms: i64::try_from(self.broker_expiry_ms)
                .unwrap_or(DEFAULT_BROKER_EXPIRY_MS),
            delete_topic_with_broker_registration: self.delete_topic_with_broker_registration,
            support_acting_master: self.support_acting_master,
        }
    }

    /// The settings as Java-named properties, sorted by name (the GET_NAMESRV_CONFIG body is
    /// these as `key=value` lines).
    pub fn to_properties(&self) -> Vec<(&'static str, String)> {
        let port = self
            .listen_addr
            .rsplit_once(':')
            .map(|(_, p)| p.to_owned())
            .unwrap_or_default();
        let mut props = vec![
            ("brokerExpiryMillis", self.broker_expiry_ms.to_string()),
            ("configBlackList", CONFIG_BLACK_LIST.join(";")),
            (
                "deleteTopicWithBrokerRegistration",
                self.delete_topic_with_broker_registration.to_string(),
            ),
            ("enableAllTopicList", self.enable_all_topic_list.to_string()),
            ("enableTopicList", self.enable_topic_list.to_string()),
            ("kvConfigPath", self.kv_config_path.display().to_string()),
            ("listenAddr", self.listen_addr.clone()),
            ("listenPort", port),
            ("orderMessageEnable", self.order_message_enable.to_string()),
            (
                "returnOrderTopicConfigToBroker",
                self.return_order_topic_config_to_broker.to_string(),
            ),
            (
                "scanNotActiveBrokerInterval",
                self.scan_not_active_broker_interval_ms.to_string(),
            ),
            (
                "serverChannelMaxIdleTimeSeconds",
                (self.remoting.idle_timeout_ms / 1000).to_string(),
            ),
            (
                "supportActingMaster",
                self.support_acting_master.to_string(),
            ),
        ];
        props.sort_by_key(|(k, _)| *k);
        props
    }

    /// The GET_NAMESRV_CONFIG body: `key=value` lines.
    pub fn to_properties_text(&self) -> String {
        self.to_properties()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }

    /// Applies UPDATE_NAMESRV_CONFIG properties: all of them or none. Only switches that are safe
    /// to flip at run time can change; paths, addresses and the black list never can (remote
    /// config updates were the vector of public RocketMQ exploits).
    pub fn apply_properties(
        &mut self,
        props: &[(String, String)],
    ) -> Result<(), ConfigUpdateError> {
        let mut next = self.clone();
        for (key, value) in props {
            if CONFIG_BLACK_LIST.contains(&key.as_str()) {
                return Err(ConfigUpdateError::BlackListed(key.clone()));
            }
            let flag = match key.as_str() {
                "orderMessageEnable" => &mut next.order_message_enable,
                "returnOrderTopicConfigToBroker" => &mut next.return_order_topic_config_to_broker,
                "enableAllTopicList" => &mut next.enable_all_topic_list,
                "enableTopicList" => &mut next.enable_topic_list,
                "deleteTopicWithBrokerRegistration" => {
                    &mut next.delete_topic_with_broker_registration
                }
                "supportActingMaster" => &mut next.support_acting_master,
                "brokerExpiryMillis" => {
                    next.broker_expiry_ms = value
                        .trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|v| *v > 0 && i64::try_from(*v).is_ok())
                        .ok_or_else(|| ConfigUpdateError::BadValue {
                            key: key.clone(),
                            value: value.clone(),
                        })?;
                    continue;
                }
                "listenAddr"
                | "listenPort"
                | "scanNotActiveBrokerInterval"
                | "serverChannelMaxIdleTimeSeconds" => {
                    return Err(ConfigUpdateError::ReadOnly(key.clone()))
                }
                _ => return Err(ConfigUpdateError::Unknown(key.clone())),
            };
            *flag = parse_bool(value).ok_or_else(|| ConfigUpdateError::BadValue {
                key: key.clone(),
                value: value.clone(),
            })?;
        }
        *self = next;
        Ok(())
    }
}

/// Keys no remote request may change (Java's `configBlackList` default plus `rocketmqHome`).
pub const CONFIG_BLACK_LIST: &[&str] = &[
    "configBlackList",
    "configStorePath",
    "kvConfigPath",
    "rocketmqHome",
];

/// Why an UPDATE_NAMESRV_CONFIG was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigUpdateError {
    /// Java answers NO_PERMISSION with this text.
    #[error("Can not update config in black list.")]
    BlackListed(String),
    #[error("name server config `{0}` cannot be changed at run time")]
    ReadOnly(String),
    #[error("unknown name server config `{0}`")]
    Unknown(String),
    #[error("invalid value {value:?} for name server config `{key}`")]
    BadValue { key: String, value: String },
}

fn parse_bool(value: &str) -> Option<bool> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Reads Java `.properties` text as `MixAll.string2Properties` would for the simple forms admin
/// tools send: one `key=value`, `key:value` or `key value` per line, `#`/`!` comments, blank lines
/// skipped, whitespace around the separator ignored. Line continuations and escapes are not
/// interpreted. Later duplicates win, as in `Properties`.
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let key_end = line
            .find(|c: char| c == '=' || c == ':' || c.is_whitespace())
            .unwrap_or(line.len());
        let (key, rest) = line.split_at(key_end);
        let rest = rest.trim_start();
        let rest = rest
            .strip_prefix('=')
            .or_else(|| rest.strip_prefix(':'))
            .unwrap_or(rest);
        let value = rest.trim_start().trim_end_matches(['\r', '\n']);
        out.retain(|(k, _)| k != key);
        out.push((key.to_owned(), value.to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_rocketmq() {
        let c = NamesrvConfig::default();
        assert_eq!(c.listen_addr, "0.0.0.0:9876");
        assert_eq!(c.scan_not_active_broker_interval_ms, 5_000);
        assert_eq!(c.broker_expiry_ms, 120_000);
        assert!(!c.order_message_enable);
        assert!(c.return_order_topic_config_to_broker);
        assert_eq!(c.remoting_config(), RemotingConfig::default());
        c.validate().unwrap();
    }

    #[test]
    fn missing_keys_take_defaults_and_unknown_keys_are_refused() {
        let c: NamesrvConfig = serde_json::from_str(
            r#"{"listen_addr":"127.0.0.1:0","order_message_enable":true,"remoting":{"max_connections":5}}"#,
        )
        .unwrap();
        assert_eq!(c.listen_addr, "127.0.0.1:0");
        assert!(c.order_message_enable);
        assert_eq!(c.remoting.max_connections, 5);
        assert_eq!(c.remoting.idle_timeout_ms, 120_000);
        assert_eq!(c.broker_expiry_ms, 120_000);
        assert!(serde_json::from_str::<NamesrvConfig>(r#"{"listen_adr":"x"}"#).is_err());
    }

    #[test]
    fn zero_scan_interval_is_invalid() {
        let c = NamesrvConfig {
            scan_not_active_broker_interval_ms: 0,
            ..NamesrvConfig::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn properties_text_is_sorted_java_named_lines() {
        let text = NamesrvConfig::default().to_properties_text();
        assert!(text.contains("\norderMessageEnable=false\n"), "{text}");
        assert!(text.contains("\nlistenPort=9876\n"), "{text}");
        assert!(
            text.contains("\nscanNotActiveBrokerInterval=5000\n"),
            "{text}"
        );
        assert!(text.starts_with("brokerExpiryMillis=120000\n"), "{text}");
        let keys: Vec<_> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, _)| k)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn properties_parse_like_java_for_simple_forms() {
        let props = parse_properties(
            "# comment\n! other\n\norderMessageEnable=true\r\n  enableTopicList : false\nkey value with spaces\nempty=\nonly\na=1\na=2\n",
        );
        assert_eq!(
            props,
            vec![
                ("orderMessageEnable".to_owned(), "true".to_owned()),
                ("enableTopicList".to_owned(), "false".to_owned()),
                ("key".to_owned(), "value with spaces".to_owned()),
                ("empty".to_owned(), String::new()),
                ("only".to_owned(), String::new()),
                ("a".to_owned(), "2".to_owned()),
            ]
        );
    }

    #[test]
    fn updates_change_known_switches_atomically_and_refuse_the_rest() {
        let mut c = NamesrvConfig::default();
        let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        c.apply_properties(&[
            p("orderMessageEnable", "true"),
            p("brokerExpiryMillis", "30000"),
        ])
        .unwrap();
        assert!(c.order_message_enable);
        assert_eq!(c.broker_expiry_ms, 30_000);

        let before = c.clone();
        let cases = [
            (
                p("kvConfigPath", "/tmp/evil"),
                ConfigUpdateError::BlackListed("kvConfigPath".into()),
            ),
            (
                p("listenPort", "1"),
                ConfigUpdateError::ReadOnly("listenPort".into()),
            ),
            (
                p("rocketmqHome", "/"),
                ConfigUpdateError::BlackListed("rocketmqHome".into()),
            ),
            (p("nope", "1"), ConfigUpdateError::Unknown("nope".into())),
            (
                p("enableTopicList", "yes"),
                ConfigUpdateError::BadValue {
                    key: "enableTopicList".into(),
                    value: "yes".into(),
                },
            ),
        ];
        for (bad, expected) in cases {
            let err = c
                .apply_properties(&[p("enableAllTopicList", "false"), bad])
                .unwrap_err();
            assert_eq!(err, expected);
            assert_eq!(c, before, "a refused update changes nothing");
        }
    }
}
