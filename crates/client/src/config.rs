//! What a [`ClientInstance`](crate::ClientInstance) is made from: the name servers, the
//! instance name, and every interval and timeout of its background loops, with RocketMQ's
//! defaults (`ClientConfig.java`).

use std::time::Duration;

use apogee_protocol::LanguageCode;
use apogee_remoting::RemotingConfig;

/// Configuration shared by everything that runs on one client instance.
///
/// Two builders asking for the same name servers and instance name get the same instance; the
/// configuration of the first one wins.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Name server addresses (`host:port`). Required.
    pub name_server_addrs: Vec<String>,
    /// The part after `@` in the client id. RocketMQ's default is the process id, so that every
    /// producer and consumer of a process shares one instance (and one connection per broker).
    /// Giving each object its own name defeats that sharing.
    pub instance_name: String,
    /// The address in the client id; `None` detects the local address used to reach the first
    /// name server.
    pub client_ip: Option<String>,
    /// Appended to the client id as `@unitName` when set.
    pub unit_name: Option<String>,
    /// The language announced in every request header.
    pub language: LanguageCode,
    /// Heartbeat to every broker of every produced or consumed topic. RocketMQ: 30 s.
    pub heartbeat_interval_ms: u64,
    /// Refresh of every known topic route from the name server. RocketMQ: 30 s.
    pub poll_name_server_interval_ms: u64,
    /// Consumer offsets are sent to brokers this often. RocketMQ: 5 s.
    pub persist_consumer_offset_interval_ms: u64,
    /// Consumers rebalance this often (and at once on NOTIFY_CONSUMER_IDS_CHANGED). RocketMQ: 20 s.
    pub rebalance_interval_ms: u64,
    /// Timeout of name-server calls and other small administrative calls. RocketMQ: 3 s.
    pub api_timeout_ms: u64,
    /// The transport's limits and timeouts.
    pub remoting: RemotingConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            name_server_addrs: Vec::new(),
            instance_name: std::process::id().to_string(),
            client_ip: None,
            unit_name: None,
            language: LanguageCode::Rust,
            heartbeat_interval_ms: 30_000,
            poll_name_server_interval_ms: 30_000,
            persist_consumer_offset_interval_ms: 5_000,
            rebalance_interval_ms: 20_000,
            api_timeout_ms: 3_000,
            remoting: RemotingConfig::default(),
        }
    }
}

impl ClientConfig {
    /// A configuration for the given name servers (`"host:port"`, or several separated by `;`
    /// as RocketMQ's `namesrvAddr` allows) with every other value at its default.
    pub fn new(name_servers: impl AsRef<str>) -> Self {
        Self {
            name_server_addrs: split_name_servers(name_servers.as_ref()),
            ..Self::default()
        }
    }

    pub fn api_timeout(&self) -> Duration {
        Duration::from_millis(self.api_timeout_ms)
    }

    /// The key under which instances are shared: the sorted name-server set, the instance name
    /// and the unit name.
    pub(crate) fn registry_key(&self) -> String {
        let mut addrs = self.name_server_addrs.clone();
        addrs.sort();
        addrs.dedup();
        let mut key = addrs.join(";");
        key.push('@');
        key.push_str(&self.instance_name);
        if let Some(unit) = &self.unit_name {
            key.push('@');
            key.push_str(unit);
        }
        key
    }

    /// `ip@instanceName[@unitName]` (`ClientConfig.buildMQClientId`).
    pub(crate) fn build_client_id(&self, ip: &str) -> String {
        let mut id = format!("{ip}@{}", self.instance_name);
        if let Some(unit) = self.unit_name.as_deref().filter(|u| !u.trim().is_empty()) {
            id.push('@');
            id.push_str(unit);
        }
        id
    }
}

/// Splits RocketMQ's `namesrvAddr` form (`a:9876;b:9876`), trimming blanks.
pub fn split_name_servers(addrs: &str) -> Vec<String> {
    addrs
        .split([';', ','])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_rocketmq() {
        let c = ClientConfig::new("127.0.0.1:9876");
        assert_eq!(c.heartbeat_interval_ms, 30_000);
        assert_eq!(c.poll_name_server_interval_ms, 30_000);
        assert_eq!(c.persist_consumer_offset_interval_ms, 5_000);
        assert_eq!(c.rebalance_interval_ms, 20_000);
        assert_eq!(c.instance_name, std::process::id().to_string());
    }

    #[test]
    fn name_server_list_accepts_semicolons_and_blanks() {
        assert_eq!(
            split_name_servers(" a:1; b:2 ;;c:3"),
            vec!["a:1".to_owned(), "b:2".to_owned(), "c:3".to_owned()]
        );
    }

    #[test]
    fn registry_key_ignores_name_server_order() {
        let a = ClientConfig::new("b:2;a:1");
        let b = ClientConfig::new("a:1;b:2");
        assert_eq!(a.registry_key(), b.registry_key());
        let mut c = ClientConfig::new("a:1;b:2");
        c.instance_name = "other".into();
        assert_ne!(a.registry_key(), c.registry_key());
    }

    #[test]
    fn client_id_is_ip_at_instance_name() {
        let mut c = ClientConfig::new("a:1");
        c.instance_name = "1234".into();
        assert_eq!(c.build_client_id("10.0.0.5"), "10.0.0.5@1234");
        c.unit_name = Some("unitA".into());
        assert_eq!(c.build_client_id("10.0.0.5"), "10.0.0.5@1234@unitA");
    }
}
