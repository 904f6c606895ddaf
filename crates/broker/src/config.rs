//! Every setting of the broker in one place, with RocketMQ's defaults. Rust names carry their unit;
//! serde reads RocketMQ's camelCase names (`brokerName`, `registerNameServerPeriod`, ...), so a
//! `broker.conf` translated to JSON keeps its keys.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::PathBuf;

use apogee_store::{DelayLevels, FlushDiskType, StoreConfig};
use serde::{Deserialize, Deserializer};

/// `flushDiskType` as RocketMQ spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum FlushDiskTypeConfig {
    #[default]
    #[serde(rename = "ASYNC_FLUSH", alias = "async", alias = "ASYNC")]
    AsyncFlush,
    #[serde(rename = "SYNC_FLUSH", alias = "sync", alias = "SYNC")]
    SyncFlush,
}

impl From<FlushDiskTypeConfig> for FlushDiskType {
    fn from(t: FlushDiskTypeConfig) -> Self {
        match t {
            FlushDiskTypeConfig::AsyncFlush => FlushDiskType::Async,
            FlushDiskTypeConfig::SyncFlush => FlushDiskType::Sync,
        }
    }
}

/// Store tunables a broker config may override; absent ones keep [`StoreConfig`]'s defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct StoreOptions {
    #[serde(alias = "mappedFileSizeCommitLog")]
    pub commitlog_segment_bytes: Option<u64>,
    pub consume_queue_entries_per_file: Option<u64>,
    #[serde(alias = "maxHashSlotNum")]
    pub index_slots: Option<u32>,
    #[serde(alias = "maxIndexNum")]
    pub index_entries: Option<u32>,
    #[serde(alias = "flushIntervalCommitLog")]
    pub flush_interval_ms: Option<u64>,
    #[serde(alias = "syncFlushTimeout")]
    pub sync_flush_timeout_ms: Option<u64>,
    #[serde(alias = "fileReservedTime")]
    pub file_reserved_hours: Option<u64>,
    pub dispatch_flush_interval_ms: Option<u64>,
    /// Slots of the timer wheel file (one per tick).
    pub timer_wheel_slots: Option<u64>,
    #[serde(alias = "mappedFileSizeTimerLog")]
    pub timer_log_file_bytes: Option<u64>,
    /// How often the timer service writes its checkpoint.
    pub timer_flush_interval_ms: Option<u64>,
    /// Hours when expired segments are deleted: `deleteWhen`, "04" or "04;16" (an integer is
    /// taken too).
    #[serde(deserialize_with = "hours_text")]
    pub delete_when: Option<String>,
    /// How often retention and the disk-use check run (`cleanResourceInterval`).
    #[serde(alias = "cleanResourceInterval")]
    pub clean_interval_ms: Option<u64>,
    /// Disk use (percent) above which expired segments are deleted at any hour
    /// (`diskMaxUsedSpaceRatio`).
    #[serde(alias = "diskMaxUsedSpaceRatio")]
    pub disk_clean_ratio_percent: Option<u8>,
    /// Disk use (percent) above which the oldest segments go even if not expired
    /// (`diskSpaceCleanForciblyRatio`).
    #[serde(alias = "diskSpaceCleanForciblyRatio")]
    pub disk_force_clean_ratio_percent: Option<u8>,
    /// Disk use (percent) above which sends are refused (`diskSpaceWarningLevelRatio`).
    #[serde(alias = "diskSpaceWarningLevelRatio")]
    pub disk_deny_write_ratio_percent: Option<u8>,
}

impl StoreOptions {
    /// Settings for tests that run a broker: 4 MiB log segments, small consume-queue and index
    /// files, and the disk-use ratios at 100% so that no test depends on how full the machine's
    /// disk is (the store's own tests cover retention and the disk-full refusal).
    pub fn for_tests() -> StoreOptions {
        StoreOptions {
            commitlog_segment_bytes: Some(4 * 1024 * 1024),
            consume_queue_entries_per_file: Some(1024),
            index_slots: Some(1024),
            index_entries: Some(4096),
            disk_clean_ratio_percent: Some(100),
            disk_force_clean_ratio_percent: Some(100),
            disk_deny_write_ratio_percent: Some(100),
            ..StoreOptions::default()
        }
    }
}

/// The broker's configuration (`BrokerConfig` + the parts of `MessageStoreConfig` and
/// `NettyServerConfig` it needs).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct BrokerConfig {
    /// `brokerName`: the broker group's name.
    pub broker_name: String,
    /// `brokerClusterName`.
    pub broker_cluster_name: String,
    /// 0 = master.
    pub broker_id: i64,
    /// Address the remoting server binds.
    pub listen_addr: String,
    /// RocketMQ's `listenPort`: when set, replaces the port of `listen_addr`.
    pub listen_port: Option<u16>,
    /// `brokerIP1`: the address advertised to name servers and stamped as STOREHOST. `None`: the
    /// first non-loopback IPv4 address of the machine, else 127.0.0.1.
    #[serde(rename = "brokerIP1", alias = "brokerIp1")]
    pub broker_ip1: Option<String>,
    /// HA port advertised as `haServerAddr` (`haListenPort`); `None`: the listen port + 1.
    pub ha_listen_port: Option<u16>,
    /// Name servers (`namesrvAddr`: a `;`-separated string or a list).
    #[serde(rename = "namesrvAddr", deserialize_with = "addr_list")]
    pub namesrv_addrs: Vec<String>,
    /// Root folder: the store lives in `<data>/store`, the JSON configs in `<data>/config`.
    pub data_dir: PathBuf,
    pub auto_create_topic_enable: bool,
    pub auto_create_subscription_group: bool,
    /// Queues of TBW102, the auto-create template.
    pub default_topic_queue_nums: i32,
    /// The cluster-name topic is readable and writable.
    pub cluster_topic_enable: bool,
    /// The broker-name topic is readable and writable.
    pub broker_topic_enable: bool,
    /// `PermName` bits of the broker as a whole (6 = read + write).
    pub broker_permission: i32,
    /// Returned as `MSG_REGION` in send responses.
    pub region_id: String,
    /// Returned as `TRACE_ON` in send responses.
    pub trace_on: bool,
    /// Refuse topic admin on system topic names.
    pub validate_system_topic_when_update_topic: bool,
    pub lite_pull_message_enable: bool,
    pub long_polling_enable: bool,
    /// How long a suspended pull waits when long polling is disabled.
    #[serde(rename = "shortPollingTimeMills")]
    pub short_polling_time_ms: u64,
    /// Pulls parked at once; past it a pull that would park is answered PULL_NOT_FOUND at once.
    pub max_parked_pulls: usize,
    /// Registration with every name server, this often (clamped to 10-60 s as RocketMQ does).
    #[serde(rename = "registerNameServerPeriod")]
    pub register_name_server_period_ms: u64,
    #[serde(rename = "registerBrokerTimeoutMills")]
    pub register_broker_timeout_ms: u64,
    /// Clients silent this long are dropped.
    #[serde(rename = "channelExpiredTimeout")]
    pub channel_expired_timeout_ms: u64,
    /// How often clients are checked for expiry.
    pub client_scan_interval_ms: u64,
    /// Consumer offsets are written to disk this often.
    #[serde(rename = "flushConsumerOffsetInterval")]
    pub flush_consumer_offset_interval_ms: u64,
    /// Orderly-consumption queue locks expire after this long without renewal
    /// (`rocketmq.broker.rebalance.lockMaxLiveTime`).
    #[serde(rename = "lockMaxLiveTime")]
    pub lock_max_live_time_ms: u64,
    pub flush_disk_type: FlushDiskTypeConfig,
    /// Largest message body (`maxMessageSize`).
    #[serde(rename = "maxMessageSize")]
    pub max_message_size_bytes: usize,
    /// Messages one pull returns at most (`maxTransferCountOnMessageInMemory`).
    #[serde(rename = "maxTransferCountOnMessageInMemory")]
    pub max_transfer_count: usize,
    /// Bytes one pull returns at most, beyond the first message (`maxTransferBytesOnMessageInMemory`).
    #[serde(rename = "maxTransferBytesOnMessageInMemory")]
    pub max_transfer_bytes: usize,
    /// Records returned for a unique-key query (`defaultQueryMaxNum`).
    pub default_query_max_num: usize,
    /// The delay of each delay level, `"1s 5s 10s ..."` (`messageDelayLevel`).
    pub message_delay_level: String,
    /// Delay-level delivery offsets are written this often (`flushDelayOffsetInterval`).
    #[serde(rename = "flushDelayOffsetInterval")]
    pub flush_delay_offset_interval_ms: u64,
    /// Accept timer messages (`timerWheelEnable`).
    pub timer_wheel_enable: bool,
    /// Length of a timer tick (`timerPrecisionMs`).
    pub timer_precision_ms: u64,
    /// Longest timer delay accepted (`timerMaxDelaySec`).
    pub timer_max_delay_sec: u64,
    /// Timer messages due this many ticks or more ahead are rolled (`timerRollWindowSlot`).
    #[serde(rename = "timerRollWindowSlot")]
    pub timer_roll_window_slots: u64,
    /// Answer RECALL_MESSAGE (`recallMessageEnable`). On by default, unlike RocketMQ (off since
    /// 5.3.2), so gRPC RecallMessage works without a setting; off, recalls get NO_PERMISSION.
    pub recall_message_enable: bool,
    /// SQL92 property filtering (`enablePropertyFilter`). On by default, unlike RocketMQ; when
    /// off, SQL92 subscriptions get SYSTEM_ERROR as from a Java broker.
    pub enable_property_filter: bool,
    /// Refuse transaction half messages (NO_PERMISSION).
    pub reject_transaction_message: bool,
    /// How often the half queue is scanned for transactions to check back.
    #[serde(rename = "transactionCheckInterval")]
    pub transaction_check_interval_ms: u64,
    /// A half message younger than this (or than its CHECK_IMMUNITY_TIME_IN_SECONDS) is not
    /// checked back yet.
    #[serde(rename = "transactionTimeOut")]
    pub transaction_timeout_ms: u64,
    /// Check-backs per half message; one more unresolved scan moves it to
    /// TRANS_CHECK_MAX_TIME_TOPIC.
    pub transaction_check_max: i32,
    /// POP requests held by long polling at once (`popPollingSize`); past it POLLING_FULL.
    pub pop_polling_size: usize,
    /// The pop journal is compacted once it has grown by this many bytes.
    pub pop_journal_compact_bytes: u64,
    /// Store settings; they sit among the broker's own keys, as in RocketMQ's `broker.conf`.
    #[serde(flatten)]
    pub store: StoreOptions,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            broker_name: "broker-a".into(),
            broker_cluster_name: "DefaultCluster".into(),
            broker_id: 0,
            listen_addr: "0.0.0.0:10911".into(),
            listen_port: None,
            broker_ip1: None,
            ha_listen_port: None,
            namesrv_addrs: Vec::new(),
            data_dir: PathBuf::from("./data"),
            auto_create_topic_enable: true,
            auto_create_subscription_group: true,
            default_topic_queue_nums: 8,
            cluster_topic_enable: true,
            broker_topic_enable: true,
            broker_permission: 6,
            region_id: "DefaultRegion".into(),
            trace_on: true,
            validate_system_topic_when_update_topic: true,
            lite_pull_message_enable: true,
            long_polling_enable: true,
            short_polling_time_ms: 1_000,
            max_parked_pulls: 100_000,
            register_name_server_period_ms: 30_000,
            register_broker_timeout_ms: 24_000,
            channel_expired_timeout_ms: 120_000,
            client_scan_interval_ms: 10_000,
            flush_consumer_offset_interval_ms: 5_000,
            lock_max_live_time_ms: 60_000,
            flush_disk_type: FlushDiskTypeConfig::AsyncFlush,
            max_message_size_bytes: 4 * 1024 * 1024,
            max_transfer_count: 32,
            max_transfer_bytes: 256 * 1024,
            default_query_max_num: 32,
            message_delay_level: apogee_store::DEFAULT_MESSAGE_DELAY_LEVEL.into(),
            flush_delay_offset_interval_ms: 10_000,
            timer_wheel_enable: true,
            timer_precision_ms: 1_000,
            timer_max_delay_sec: 3 * 24 * 3600,
            timer_roll_window_slots: 2 * 24 * 3600,
            recall_message_enable: true,
            enable_property_filter: true,
            reject_transaction_message: false,
            transaction_check_interval_ms: 30_000,
            transaction_timeout_ms: 6_000,
            transaction_check_max: 15,
            pop_polling_size: 1024,
            pop_journal_compact_bytes: 64 * 1024 * 1024,
            store: StoreOptions::default(),
        }
    }
}

impl BrokerConfig {
    /// Reads a JSON config; absent keys keep their defaults.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// `listen_addr`, with its port replaced by `listen_port` when that is set.
    pub fn bind_addr(&self) -> String {
        match self.listen_port {
            Some(port) => {
                let host = self
                    .listen_addr
                    .rsplit_once(':')
                    .map(|(h, _)| h)
                    .unwrap_or(self.listen_addr.as_str());
                format!("{host}:{port}")
            }
            None => self.listen_addr.clone(),
        }
    }

    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    pub fn config_dir(&self) -> PathBuf {
        self.data_dir.join("config")
    }

    /// The delay levels of `messageDelayLevel`.
    pub fn delay_levels(&self) -> Result<DelayLevels, String> {
        DelayLevels::parse(&self.message_delay_level)
    }

    /// The store configuration this broker opens its store with (an unparsable
    /// `messageDelayLevel` keeps the default levels here; [`BrokerConfig::check`] reports it).
    pub fn store_config(&self) -> StoreConfig {
        let mut c = StoreConfig {
            root_dir: self.store_dir(),
            flush_disk_type: self.flush_disk_type.into(),
            max_message_body_bytes: self.max_message_size_bytes,
            delay_levels: self.delay_levels().unwrap_or_default(),
            timer_wheel_enable: self.timer_wheel_enable,
            timer_precision_ms: self.timer_precision_ms,
            timer_max_delay_sec: self.timer_max_delay_sec,
            timer_roll_window_slots: self.timer_roll_window_slots,
            ..StoreConfig::default()
        };
        let o = &self.store;
        if let Some(v) = o.commitlog_segment_bytes {
            c.commitlog_segment_bytes = v;
        }
        if let Some(v) = o.consume_queue_entries_per_file {
            c.consume_queue_entries_per_file = v;
        }
        if let Some(v) = o.index_slots {
            c.index_slots = v;
        }
        if let Some(v) = o.index_entries {
            c.index_entries = v;
        }
        if let Some(v) = o.flush_interval_ms {
            c.flush_interval_ms = v;
        }
        if let Some(v) = o.sync_flush_timeout_ms {
            c.sync_flush_timeout_ms = v;
        }
        if let Some(v) = o.file_reserved_hours {
            c.file_reserved_hours = v;
        }
        if let Some(v) = o.dispatch_flush_interval_ms {
            c.dispatch_flush_interval_ms = v;
        }
        if let Some(v) = o.timer_wheel_slots {
            c.timer_wheel_slots = v;
        }
        if let Some(v) = o.timer_log_file_bytes {
            c.timer_log_file_bytes = v;
        }
        if let Some(v) = o.timer_flush_interval_ms {
            c.timer_flush_interval_ms = v;
        }
        if let Some(hours) = o
            .delete_when
            .as_deref()
            .and_then(|t| apogee_store::parse_delete_when(t).ok())
        {
            c.delete_when_hours = hours;
        }
        if let Some(v) = o.clean_interval_ms {
            c.clean_interval_ms = v;
        }
        if let Some(v) = o.disk_clean_ratio_percent {
            c.disk_clean_ratio_percent = v;
        }
        if let Some(v) = o.disk_force_clean_ratio_percent {
            c.disk_force_clean_ratio_percent = v;
        }
        if let Some(v) = o.disk_deny_write_ratio_percent {
            c.disk_deny_write_ratio_percent = v;
        }
        c
    }

    /// Settings that can be wrong on their own or together; `Err` says which.
    pub fn check(&self) -> Result<(), String> {
        self.delay_levels()
            .map_err(|e| format!("messageDelayLevel: {e}"))?;
        if let Some(t) = &self.store.delete_when {
            apogee_store::parse_delete_when(t)?;
        }
        self.store_config().validate()
    }

    /// The IP written as STOREHOST and advertised to name servers.
    pub fn advertised_ip(&self) -> Result<IpAddr, String> {
        match &self.broker_ip1 {
            Some(ip) => ip
                .trim()
                .parse()
                .map_err(|_| format!("brokerIP1 {ip:?} is not an IP address")),
            None => Ok(detect_local_ipv4()),
        }
    }

    /// `registerNameServerPeriod` clamped to 10-60 s as RocketMQ clamps it.
    pub fn register_period_ms(&self) -> u64 {
        self.register_name_server_period_ms.clamp(10_000, 60_000)
    }
}

/// The machine's first non-loopback IPv4 address: the source address the kernel would pick for a
/// route to a public address (no packet is sent), or 127.0.0.1 without one.
pub fn detect_local_ipv4() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.connect((Ipv4Addr::new(8, 8, 8, 8), 53))?;
        Ok(socket.local_addr()?.ip())
    };
    match probe() {
        Ok(ip) if !ip.is_loopback() && !ip.is_unspecified() => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

/// `"a:9876;b:9876"` (RocketMQ's form) or `["a:9876", "b:9876"]`.
fn addr_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        One(String),
        Many(Vec<String>),
    }
    let list = match Form::deserialize(d)? {
        Form::One(s) => s.split(';').map(str::to_owned).collect(),
        Form::Many(v) => v,
    };
    Ok(list
        .into_iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect())
}

/// `deleteWhen` as text, written as a string ("04;16") or a bare hour (4).
fn hours_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Text(String),
        Hour(u32),
    }
    Ok(Some(match Form::deserialize(d)? {
        Form::Text(s) => s,
        Form::Hour(h) => h.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_rocketmq() {
        let c = BrokerConfig::default();
        assert_eq!(c.broker_name, "broker-a");
        assert_eq!(c.broker_cluster_name, "DefaultCluster");
        assert_eq!(c.listen_addr, "0.0.0.0:10911");
        assert_eq!(c.default_topic_queue_nums, 8);
        assert_eq!(c.region_id, "DefaultRegion");
        assert!(c.auto_create_topic_enable && c.auto_create_subscription_group);
        assert!(c.trace_on && c.long_polling_enable);
        assert_eq!(c.register_name_server_period_ms, 30_000);
        assert_eq!(c.channel_expired_timeout_ms, 120_000);
        assert_eq!(c.max_message_size_bytes, 4 * 1024 * 1024);
        assert!(!c.reject_transaction_message);
        assert_eq!(c.transaction_check_interval_ms, 30_000);
        assert_eq!(c.transaction_timeout_ms, 6_000);
        assert_eq!(c.transaction_check_max, 15);
        assert_eq!(c.store_config().root_dir, PathBuf::from("./data/store"));
    }

    #[test]
    fn json_config_reads_rocketmq_names_and_keeps_other_defaults() {
        let c = BrokerConfig::from_json(
            r#"{"brokerName":"b1","brokerIP1":"10.0.0.7","namesrvAddr":"n1:9876; n2:9876",
                "flushDiskType":"SYNC_FLUSH","registerNameServerPeriod":5000,
                "transactionCheckInterval":200,"transactionTimeOut":100,"transactionCheckMax":3,
                "rejectTransactionMessage":true,"mappedFileSizeCommitLog":1048576}"#,
        )
        .unwrap();
        assert_eq!(c.broker_name, "b1");
        assert_eq!(c.advertised_ip().unwrap().to_string(), "10.0.0.7");
        assert_eq!(c.namesrv_addrs, vec!["n1:9876", "n2:9876"]);
        assert_eq!(c.flush_disk_type, FlushDiskTypeConfig::SyncFlush);
        assert_eq!(c.register_period_ms(), 10_000);
        assert_eq!(c.transaction_check_interval_ms, 200);
        assert_eq!(c.transaction_timeout_ms, 100);
        assert_eq!(c.transaction_check_max, 3);
        assert!(c.reject_transaction_message);
        assert_eq!(c.store_config().commitlog_segment_bytes, 1_048_576);
        assert_eq!(c.store_config().flush_disk_type, FlushDiskType::Sync);
        assert_eq!(c.broker_cluster_name, "DefaultCluster");
        assert_eq!(c.bind_addr(), "0.0.0.0:10911");
        let port = BrokerConfig::from_json(r#"{"listenPort":10921}"#).unwrap();
        assert_eq!(port.bind_addr(), "0.0.0.0:10921");
        let listed = BrokerConfig::from_json(r#"{"namesrvAddr":["a:1","b:2"]}"#).unwrap();
        assert_eq!(listed.namesrv_addrs, vec!["a:1", "b:2"]);
    }

    #[test]
    fn delay_and_timer_settings_reach_the_store() {
        let c = BrokerConfig::from_json(
            r#"{"messageDelayLevel":"1s 2s","timerPrecisionMs":100,"timerMaxDelaySec":60,
                "timerRollWindowSlot":300,"flushDelayOffsetInterval":500,
                "timerWheelSlots":1200,"mappedFileSizeTimerLog":4800}"#,
        )
        .unwrap();
        assert!(c.check().is_ok());
        let s = c.store_config();
        assert_eq!(s.delay_levels.max_level(), 2);
        assert_eq!(s.delay_levels.delay_ms(2), Some(2_000));
        assert_eq!(
            (
                s.timer_precision_ms,
                s.timer_max_delay_sec,
                s.timer_roll_window_slots
            ),
            (100, 60, 300)
        );
        assert_eq!((s.timer_wheel_slots, s.timer_log_file_bytes), (1200, 4800));
        assert_eq!(c.flush_delay_offset_interval_ms, 500);
        let d = BrokerConfig::default();
        assert_eq!(d.store_config().delay_levels.max_level(), 18);
        assert_eq!(d.timer_max_delay_sec, 259_200);
        let bad = BrokerConfig::from_json(r#"{"messageDelayLevel":"1s 2q"}"#).unwrap();
        assert!(bad.check().unwrap_err().contains("messageDelayLevel"));
        let bad = BrokerConfig::from_json(r#"{"timerRollWindowSlot":700000}"#).unwrap();
        assert!(bad.check().is_err());
    }

    #[test]
    fn disk_use_settings_reach_the_store_and_are_checked() {
        let d = BrokerConfig::default().store_config();
        assert_eq!(
            (
                d.disk_clean_ratio_percent,
                d.disk_force_clean_ratio_percent,
                d.disk_deny_write_ratio_percent,
                d.clean_interval_ms
            ),
            (75, 85, 90, 10_000)
        );
        let c = BrokerConfig::from_json(
            r#"{"diskMaxUsedSpaceRatio":60,"diskSpaceCleanForciblyRatio":70,
                "diskSpaceWarningLevelRatio":95,"cleanResourceInterval":2000}"#,
        )
        .unwrap();
        assert!(c.check().is_ok());
        let s = c.store_config();
        assert_eq!(
            (
                s.disk_clean_ratio_percent,
                s.disk_force_clean_ratio_percent,
                s.disk_deny_write_ratio_percent,
                s.clean_interval_ms
            ),
            (60, 70, 95, 2_000)
        );
        for bad in [
            r#"{"diskSpaceWarningLevelRatio":0}"#,
            r#"{"diskMaxUsedSpaceRatio":101}"#,
            r#"{"cleanResourceInterval":0}"#,
        ] {
            let c = BrokerConfig::from_json(bad).unwrap();
            assert!(c.check().is_err(), "{bad} passed the check");
        }
        assert!(BrokerConfig::from_json(r#"{"diskSpaceWarningLevelRatio":300}"#).is_err());
    }

    #[test]
    fn delete_when_takes_one_or_several_hours() {
        assert_eq!(
            BrokerConfig::default().store_config().delete_when_hours,
            [4]
        );
        let c = BrokerConfig::from_json(r#"{"deleteWhen":"04;16"}"#).unwrap();
        assert!(c.check().is_ok());
        assert_eq!(c.store_config().delete_when_hours, [4, 16]);
        let c = BrokerConfig::from_json(r#"{"deleteWhen":2}"#).unwrap();
        assert_eq!(c.store_config().delete_when_hours, [2]);
        for bad in [
            r#"{"deleteWhen":"25"}"#,
            r#"{"deleteWhen":"4am"}"#,
            r#"{"deleteWhen":""}"#,
        ] {
            let c = BrokerConfig::from_json(bad).unwrap();
            let err = c.check().unwrap_err();
            assert!(err.contains("deleteWhen"), "{bad}: {err}");
        }
    }

    #[test]
    fn property_filter_is_on_by_default_and_can_be_turned_off() {
        assert!(BrokerConfig::default().enable_property_filter);
        assert!(
            BrokerConfig::from_json("{}")
                .unwrap()
                .enable_property_filter
        );
        let off = BrokerConfig::from_json(r#"{"enablePropertyFilter":false}"#).unwrap();
        assert!(!off.enable_property_filter);
    }

    #[test]
    fn bad_broker_ip_is_reported() {
        let c = BrokerConfig {
            broker_ip1: Some("not-an-ip".into()),
            ..BrokerConfig::default()
        };
        assert!(c.advertised_ip().is_err());
    }
}
