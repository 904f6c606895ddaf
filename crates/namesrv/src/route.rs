//! The route table: which brokers exist, which clusters they belong to, which topics they serve,
//! and when each was last heard from. Pure state with an injected clock; the processor guards it
//! with one lock (as Java's `RouteInfoManager` does) and the runner drives expiry.
//!
//! Behaviour follows `namesrv/…/routeinfo/RouteInfoManager.java` (5.x) unless a comment says why not.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use apogee_protocol::body::{
    BrokerData, ClusterInfo, DataVersion, QueueData, TopicConfigSerializeWrapper, TopicList,
    TopicRouteData, MASTER_ID,
};
use apogee_protocol::codes::perm;
use apogee_protocol::header::UnRegisterBrokerRequestHeader;
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::clock::Clock;

/// How long a broker may stay silent before it is dropped, unless it registered with its own
/// `heartbeatTimeoutMillis` (`RouteInfoManager.DEFAULT_BROKER_CHANNEL_EXPIRED_TIME`).
pub const DEFAULT_BROKER_EXPIRY_MS: i64 = 120_000;

/// A topic every broker creates at start and lists in each full registration
/// (`TopicValidator.RMQ_SYS_SELF_TEST_TOPIC`). Registrations sent after a topic is created or
/// updated list only the changed topics, so only a registration listing this one is taken as the
/// broker's complete topic set.
pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";

/// `TopicSysFlag.FLAG_UNIT`.
pub const TOPIC_SYS_FLAG_UNIT: i32 = 0x1;
/// `TopicSysFlag.FLAG_UNIT_SUB`.
pub const TOPIC_SYS_FLAG_UNIT_SUB: i32 = 0x2;

/// Route-table behaviour switches (a subset of `NamesrvConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    /// Silence allowed to a broker that did not say otherwise when registering.
    pub default_broker_expiry_ms: i64,
    /// Drop a broker's queues of topics missing from its latest full master registration (one that
    /// lists [`SELF_TEST_TOPIC`]). Java's default is off, and Java applies it to every registration,
    /// which makes an incremental registration (sent on topic creation, listing only the new topic)
    /// drop all the others; here it is on, and only full registrations delete, so a topic deleted on
    /// a broker leaves the routes within one registration period.
    pub delete_topic_with_broker_registration: bool,
    /// Report the lowest-id slave of a master-less group as its master in routes
    /// (`supportActingMaster`, for groups registered with `enableActingMaster`).
    pub support_acting_master: bool,
}

impl Default for RouteSettings {
    fn default() -> Self {
        Self {
            default_broker_expiry_ms: DEFAULT_BROKER_EXPIRY_MS,
            delete_topic_with_broker_registration: true,
            support_acting_master: false,
        }
    }
}

/// One REGISTER_BROKER, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub cluster_name: String,
    /// `ip:port`.
    pub broker_addr: String,
    pub broker_name: String,
    /// 0 = master.
    pub broker_id: i64,
    /// `ip:haPort`.
    pub ha_server_addr: String,
    pub zone_name: Option<String>,
    /// The broker's own expiry; `None` = [`RouteSettings::default_broker_expiry_ms`].
    pub heartbeat_timeout_ms: Option<i64>,
    /// `None` for brokers older than 5.0, which do not send the field.
    pub enable_acting_master: Option<bool>,
    pub topic_config: TopicConfigSerializeWrapper,
    pub filter_server_list: Vec<String>,
    /// The connection the registration came on, so its close can unregister the broker.
    pub channel_id: Option<u64>,
}

/// What a registering broker is told back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterBrokerResult {
    /// The master's HA address, for a slave whose master is alive.
    pub ha_server_addr: Option<String>,
    /// The master's address, for a slave whose master is alive.
    pub master_addr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
    /// A single-topic registration arrived before the broker's first full registration.
    #[error("broker {broker_name} id {broker_id} ({broker_addr}) has not registered yet")]
    BrokerNotRegistered {
        broker_name: String,
        broker_id: i64,
        broker_addr: String,
    },
}

/// What the table knows about one live broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerLiveInfo {
    pub last_update_ms: i64,
    pub heartbeat_timeout_ms: i64,
    /// The topic-config version of its latest registration.
    pub data_version: DataVersion,
    pub channel_id: Option<u64>,
    pub ha_server_addr: String,
}

/// A broker dropped for silence or because its connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedBroker {
    pub cluster_name: String,
    pub broker_addr: String,
    /// Its connection, which the caller should close (Java closes the channel of an expired broker).
    pub channel_id: Option<u64>,
}

/// Live-table key: brokers are told apart by cluster and address (`BrokerAddrInfo`).
type AddrKey = (String, String);

fn addr_key(cluster: &str, addr: &str) -> AddrKey {
    (cluster.to_owned(), addr.to_owned())
}

/// The name server's route table.
pub struct RouteInfoManager {
    settings: RouteSettings,
    clock: Arc<dyn Clock>,
    /// topic -> broker name -> queues.
    topic_queue_table: BTreeMap<String, BTreeMap<String, QueueData>>,
    /// broker name -> group.
    broker_addr_table: BTreeMap<String, BrokerData>,
    /// cluster -> broker names.
    cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
    broker_live_table: HashMap<AddrKey, BrokerLiveInfo>,
    filter_server_table: HashMap<AddrKey, Vec<String>>,
}

impl std::fmt::Debug for RouteInfoManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteInfoManager")
            .field("settings", &self.settings)
            .field("topics", &self.topic_queue_table.len())
            .field("brokers", &self.broker_addr_table.len())
            .field("live", &self.broker_live_table.len())
            .finish()
    }
}

impl RouteInfoManager {
    pub fn new(settings: RouteSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings,
            clock,
            topic_queue_table: BTreeMap::new(),
            broker_addr_table: BTreeMap::new(),
            cluster_addr_table: BTreeMap::new(),
            broker_live_table: HashMap::new(),
            filter_server_table: HashMap::new(),
        }
    }

    pub fn settings(&self) -> &RouteSettings {
        &self.settings
    }

    pub fn settings_mut(&mut self) -> &mut RouteSettings {
        &mut self.settings
    }

    // ---- registration ----------------------------------------------------------------------

    /// Registers (or refreshes) a broker and, for a master, its topics.
    pub fn register_broker(
        &mut self,
        reg: BrokerRegistration,
    ) -> Result<RegisterBrokerResult, RouteError> {
        let now = self.clock.now_ms();
        let new_version = reg.topic_config.data_version;

        // Checks first, so a refused registration leaves no trace (Java leaves an empty group
        // behind in the second case).
        let existing_addr = self
            .broker_addr_table
            .get(&reg.broker_name)
            .and_then(|bd| bd.broker_addrs.get(&reg.broker_id))
            .cloned();
        if let Some(old_addr) = existing_addr.as_deref().filter(|a| *a != reg.broker_addr) {
            if let Some(old) = self
                .broker_live_table
                .get(&addr_key(&reg.cluster_name, old_addr))
            {
                if old.data_version.state_version > new_version.state_version {
                    warn!(
                        cluster = %reg.cluster_name, broker = %reg.broker_name, id = reg.broker_id,
                        old_addr, new_addr = %reg.broker_addr,
                        "registration conflicts with a newer broker at the same id, ignored"
                    );
                    self.broker_live_table
                        .remove(&addr_key(&reg.cluster_name, &reg.broker_addr));
                    return Ok(RegisterBrokerResult::default());
                }
            }
        }
        let table = &reg.topic_config.topic_config_table;
        // Java's marker of an incremental registration is a table of one topic; a lone
        // SELF_TEST_TOPIC is a (small) full registration.
        if existing_addr.is_none() && table.len() == 1 && !table.contains_key(SELF_TEST_TOPIC) {
            return Err(RouteError::BrokerNotRegistered {
                broker_name: reg.broker_name,
                broker_id: reg.broker_id,
                broker_addr: reg.broker_addr,
            });
        }

        self.cluster_addr_table
            .entry(reg.cluster_name.clone())
            .or_default()
            .insert(reg.broker_name.clone());

        let mut register_first = false;
        let broker_data = self
            .broker_addr_table
            .entry(reg.broker_name.clone())
            .or_insert_with(|| {
                register_first = true;
                BrokerData {
                    broker_addrs: BTreeMap::new(),
                    broker_name: reg.broker_name.clone(),
                    cluster: reg.cluster_name.clone(),
                    enable_acting_master: false,
                    zone_name: None,
                }
            });
        let old_version_broker = reg.enable_acting_master.is_none();
        broker_data.enable_acting_master = reg.enable_acting_master == Some(true);
        broker_data.zone_name = reg.zone_name.clone();
        // One address has one id: a slave promoted to master re-registers under id 0.
        broker_data
            .broker_addrs
            .retain(|id, addr| *addr != reg.broker_addr || *id == reg.broker_id);
        let old_addr = broker_data
            .broker_addrs
            .insert(reg.broker_id, reg.broker_addr.clone());
        register_first |= old_addr.as_deref().is_none_or(str::is_empty);

        let is_master = reg.broker_id == MASTER_ID;
        let min_id = broker_data.broker_addrs.keys().next().copied();
        let is_prime_slave = !old_version_broker && !is_master && min_id == Some(reg.broker_id);
        let acting_master = broker_data.enable_acting_master;

        if is_master || is_prime_slave {
            let table = &reg.topic_config.topic_config_table;
            if self.settings.delete_topic_with_broker_registration
                && table.contains_key(SELF_TEST_TOPIC)
            {
                let gone: Vec<String> = self
                    .topic_queue_table
                    .iter()
                    .filter(|(topic, queues)| {
                        queues.contains_key(&reg.broker_name) && !table.contains_key(*topic)
                    })
                    .map(|(topic, _)| topic.clone())
                    .collect();
                for topic in gone {
                    info!(topic, broker = %reg.broker_name, "topic left the broker's registration, removing its queues");
                    self.remove_queue_data(&topic, &reg.broker_name);
                }
            }
            let version_changed = self.is_broker_topic_config_changed(
                &reg.cluster_name,
                &reg.broker_addr,
                &new_version,
            );
            for (topic, config) in table {
                let changed = register_first
                    || version_changed
                    || !self
                        .topic_queue_table
                        .get(topic)
                        .is_some_and(|q| q.contains_key(&reg.broker_name));
                if !changed {
                    continue;
                }
                let mut perm_bits = config.perm;
                if is_prime_slave && acting_master {
                    // A slave standing in for its master serves reads only.
                    perm_bits &= !perm::WRITE;
                }
                let queue_data = QueueData {
                    broker_name: reg.broker_name.clone(),
                    perm: perm_bits,
                    read_queue_nums: config.read_queue_nums,
                    topic_sys_flag: config.topic_sys_flag,
                    write_queue_nums: config.write_queue_nums,
                };
                let queues = self.topic_queue_table.entry(topic.clone()).or_default();
                match queues.get(&reg.broker_name) {
                    Some(existing) if *existing == queue_data => {}
                    Some(existing) => {
                        info!(topic, old = ?existing, new = ?queue_data, "topic changed");
                        queues.insert(reg.broker_name.clone(), queue_data);
                    }
                    None => {
                        debug!(topic, queues = ?queue_data, "topic registered");
                        queues.insert(reg.broker_name.clone(), queue_data);
                    }
                }
            }
        }

        let key = addr_key(&reg.cluster_name, &reg.broker_addr);
        let previous = self.broker_live_table.insert(
            key.clone(),
            BrokerLiveInfo {
                last_update_ms: now,
                heartbeat_timeout_ms: reg
                    .heartbeat_timeout_ms
                    .unwrap_or(self.settings.default_broker_expiry_ms),
                data_version: new_version,
                channel_id: reg.channel_id,
                ha_server_addr: reg.ha_server_addr.clone(),
            },
        );
        if previous.is_none() {
            info!(cluster = %reg.cluster_name, addr = %reg.broker_addr, ha = %reg.ha_server_addr, "new broker registered");
        }
        if reg.filter_server_list.is_empty() {
            self.filter_server_table.remove(&key);
        } else {
            self.filter_server_table
                .insert(key, reg.filter_server_list.clone());
        }

        let mut result = RegisterBrokerResult::default();
        if !is_master {
            let master_addr = self
                .broker_addr_table
                .get(&reg.broker_name)
                .and_then(|bd| bd.master_addr())
                .map(str::to_owned);
            if let Some(master_addr) = master_addr {
                if let Some(master) = self
                    .broker_live_table
                    .get(&addr_key(&reg.cluster_name, &master_addr))
                {
                    result.ha_server_addr = Some(master.ha_server_addr.clone());
                    result.master_addr = Some(master_addr);
                }
            }
        }
        Ok(result)
    }

    /// Removes brokers as UNREGISTER_BROKER asks: the address leaves its group, an empty group
    /// leaves its cluster and takes its queues with it, and topics left without queues go.
    pub fn unregister_brokers(&mut self, requests: &[UnRegisterBrokerRequestHeader]) {
        let mut removed_names = BTreeSet::new();
        let mut reduced_names = BTreeSet::new();
        for req in requests {
            let key = addr_key(&req.cluster_name, &req.broker_addr);
            let was_live = self.broker_live_table.remove(&key).is_some();
            self.filter_server_table.remove(&key);
            info!(cluster = %req.cluster_name, addr = %req.broker_addr, name = %req.broker_name, was_live, "unregistering broker");

            let mut group_gone = false;
            if let Some(bd) = self.broker_addr_table.get_mut(&req.broker_name) {
                bd.broker_addrs.retain(|_, addr| *addr != req.broker_addr);
                if bd.broker_addrs.is_empty() {
                    self.broker_addr_table.remove(&req.broker_name);
                    group_gone = true;
                }
            }
            if group_gone {
                if let Some(names) = self.cluster_addr_table.get_mut(&req.cluster_name) {
                    names.remove(&req.broker_name);
                    if names.is_empty() {
                        self.cluster_addr_table.remove(&req.cluster_name);
                    }
                }
                removed_names.insert(req.broker_name.clone());
            } else {
                reduced_names.insert(req.broker_name.clone());
            }
        }

        let no_master_acting: BTreeSet<&String> = reduced_names
            .iter()
            .filter(|name| {
                self.broker_addr_table.get(*name).is_some_and(|bd| {
                    bd.enable_acting_master
                        && bd
                            .broker_addrs
                            .keys()
                            .next()
                            .is_none_or(|id| *id > MASTER_ID)
                })
            })
            .collect();
        self.topic_queue_table.retain(|_, queues| {
            for name in &removed_names {
                queues.remove(name);
            }
            for name in &no_master_acting {
                if let Some(qd) = queues.get_mut(*name) {
                    // The master left: the remaining slaves cannot take writes.
                    qd.perm &= !perm::WRITE;
                }
            }
            !queues.is_empty()
        });
    }

    /// [`unregister_brokers`](Self::unregister_brokers) for one broker.
    pub fn unregister_broker(&mut self, request: &UnRegisterBrokerRequestHeader) {
        self.unregister_brokers(std::slice::from_ref(request));
    }

    /// Drops every broker whose last registration or heartbeat is older than its timeout, and
    /// returns them so their connections can be closed.
    pub fn scan_not_active_brokers(&mut self) -> Vec<RemovedBroker> {
        let now = self.clock.now_ms();
        let expired: Vec<(AddrKey, Option<u64>)> = self
            .broker_live_table
            .iter()
            .filter(|(_, live)| {
                live.last_update_ms
                    .saturating_add(live.heartbeat_timeout_ms)
                    < now
            })
            .map(|(key, live)| (key.clone(), live.channel_id))
            .collect();
        let mut removed = Vec::with_capacity(expired.len());
        for (key, channel_id) in expired {
            warn!(cluster = %key.0, addr = %key.1, "broker expired");
            self.remove_live_broker(&key);
            removed.push(RemovedBroker {
                cluster_name: key.0,
                broker_addr: key.1,
                channel_id,
            });
        }
        removed
    }

    /// Unregisters every broker that registered over the connection `channel_id`, which has
    /// closed (Java's `onChannelDestroy`).
    pub fn on_channel_destroy(&mut self, channel_id: u64) -> Vec<RemovedBroker> {
        let keys: Vec<AddrKey> = self
            .broker_live_table
            .iter()
            .filter(|(_, live)| live.channel_id == Some(channel_id))
            .map(|(key, _)| key.clone())
            .collect();
        keys.into_iter()
            .map(|key| {
                info!(cluster = %key.0, addr = %key.1, "broker connection closed, unregistering");
                self.remove_live_broker(&key);
                RemovedBroker {
                    cluster_name: key.0,
                    broker_addr: key.1,
                    channel_id: Some(channel_id),
                }
            })
            .collect()
    }

    /// Unregisters the broker at `key`, finding its name and id in the group table.
    fn remove_live_broker(&mut self, key: &AddrKey) {
        let found = self.broker_addr_table.values().find_map(|bd| {
            if bd.cluster != key.0 {
                return None;
            }
            bd.broker_addrs
                .iter()
                .find(|(_, addr)| **addr == key.1)
                .map(|(id, _)| (bd.broker_name.clone(), *id))
        });
        match found {
            Some((broker_name, broker_id)) => {
                self.unregister_broker(&UnRegisterBrokerRequestHeader {
                    broker_name,
                    broker_addr: key.1.clone(),
                    cluster_name: key.0.clone(),
                    broker_id,
                })
            }
            None => {
                // Its id was taken over by another address: only the live entry is left. Java
                // keeps it (and finds it expired on every scan); it serves nothing, so drop it.
                self.broker_live_table.remove(key);
                self.filter_server_table.remove(key);
            }
        }
    }

    // ---- liveness and versions -------------------------------------------------------------

    /// BROKER_HEARTBEAT: refreshes the broker's last-update time. False for an unknown broker.
    pub fn broker_heartbeat(&mut self, cluster_name: &str, broker_addr: &str) -> bool {
        let now = self.clock.now_ms();
        match self
            .broker_live_table
            .get_mut(&addr_key(cluster_name, broker_addr))
        {
            Some(live) => {
                live.last_update_ms = now;
                true
            }
            None => false,
        }
    }

    /// Whether `version` differs from the one the broker last registered (true when unknown).
    pub fn is_broker_topic_config_changed(
        &self,
        cluster_name: &str,
        broker_addr: &str,
        version: &DataVersion,
    ) -> bool {
        self.broker_data_version(cluster_name, broker_addr)
            .is_none_or(|known| known != *version)
    }

    /// The topic-config version the broker last registered.
    pub fn broker_data_version(
        &self,
        cluster_name: &str,
        broker_addr: &str,
    ) -> Option<DataVersion> {
        self.broker_live_table
            .get(&addr_key(cluster_name, broker_addr))
            .map(|live| live.data_version)
    }

    /// QUERY_DATA_VERSION: whether the broker's version changed, the version known here, and a
    /// refreshed last-update time (the query doubles as a heartbeat).
    pub fn query_data_version(
        &mut self,
        cluster_name: &str,
        broker_addr: &str,
        version: &DataVersion,
    ) -> (bool, Option<DataVersion>) {
        let changed = self.is_broker_topic_config_changed(cluster_name, broker_addr, version);
        self.broker_heartbeat(cluster_name, broker_addr);
        (changed, self.broker_data_version(cluster_name, broker_addr))
    }

    // ---- queries ---------------------------------------------------------------------------

    /// The route of `topic`: its queues and the groups serving them. `None` (TOPIC_NOT_EXIST) when
    /// the topic is unknown or none of its groups is registered. `orderTopicConf` is left for the
    /// caller, which owns the KV config.
    pub fn pick_topic_route(&self, topic: &str) -> Option<TopicRouteData> {
        let queues = self.topic_queue_table.get(topic)?;
        let mut route = TopicRouteData {
            queue_datas: queues.values().cloned().collect(),
            ..TopicRouteData::default()
        };
        for name in queues.keys() {
            let Some(bd) = self.broker_addr_table.get(name) else {
                continue;
            };
            if !self.filter_server_table.is_empty() {
                for addr in bd.broker_addrs.values() {
                    if let Some(list) = self.filter_server_table.get(&addr_key(&bd.cluster, addr)) {
                        route.filter_server_table.insert(addr.clone(), list.clone());
                    }
                }
            }
            route.broker_datas.push(bd.clone());
        }
        if route.broker_datas.is_empty() {
            return None;
        }
        if self.settings.support_acting_master {
            self.apply_acting_master(&mut route);
        }
        Some(route)
    }

    /// In a master-less group whose queues are read-only, the lowest-id slave is reported under
    /// id 0 so clients read from it as from a master.
    fn apply_acting_master(&self, route: &mut TopicRouteData) {
        let queue_perms: HashMap<&str, i32> = route
            .queue_datas
            .iter()
            .map(|q| (q.broker_name.as_str(), q.perm))
            .collect();
        for bd in &mut route.broker_datas {
            if bd.broker_addrs.is_empty()
                || bd.broker_addrs.contains_key(&MASTER_ID)
                || !bd.enable_acting_master
            {
                continue;
            }
            let read_only = queue_perms
                .get(bd.broker_name.as_str())
                .is_some_and(|p| !perm::is_writeable(*p));
            if read_only {
                if let Some((_, addr)) = bd.broker_addrs.pop_first() {
                    bd.broker_addrs.insert(MASTER_ID, addr);
                }
            }
        }
    }

    /// GET_BROKER_CLUSTER_INFO.
    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            broker_addr_table: self.broker_addr_table.clone(),
            cluster_addr_table: self.cluster_addr_table.clone(),
        }
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER.
    pub fn all_topics(&self) -> TopicList {
        TopicList {
            broker_addr: None,
            topic_list: self.topic_queue_table.keys().cloned().collect(),
        }
    }

    /// GET_TOPICS_BY_CLUSTER: topics with queues on any broker of `cluster` (empty if unknown).
    pub fn topics_by_cluster(&self, cluster: &str) -> TopicList {
        let mut list = TopicList::default();
        if let Some(names) = self.cluster_addr_table.get(cluster) {
            for (topic, queues) in &self.topic_queue_table {
                if names.iter().any(|name| queues.contains_key(name)) {
                    list.topic_list.insert(topic.clone());
                }
            }
        }
        list
    }

    /// GET_SYSTEM_TOPIC_LIST_FROM_NS: every cluster name and broker name (each is also a topic on
    /// its brokers), and one broker address to ask for the rest.
    pub fn system_topic_list(&self) -> TopicList {
        let mut list = TopicList::default();
        for (cluster, names) in &self.cluster_addr_table {
            list.topic_list.insert(cluster.clone());
            list.topic_list.extend(names.iter().cloned());
        }
        list.broker_addr = self
            .broker_addr_table
            .values()
            .find_map(|bd| bd.broker_addrs.values().next().cloned());
        list
    }

    /// GET_UNIT_TOPIC_LIST: topics whose (first) queue data has the unit flag.
    pub fn unit_topics(&self) -> TopicList {
        self.topics_by_flag(|flag| flag & TOPIC_SYS_FLAG_UNIT != 0)
    }

    /// GET_HAS_UNIT_SUB_TOPIC_LIST.
    pub fn has_unit_sub_topics(&self) -> TopicList {
        self.topics_by_flag(|flag| flag & TOPIC_SYS_FLAG_UNIT_SUB != 0)
    }

    /// GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST.
    pub fn has_unit_sub_ununit_topics(&self) -> TopicList {
        self.topics_by_flag(|flag| {
            flag & TOPIC_SYS_FLAG_UNIT == 0 && flag & TOPIC_SYS_FLAG_UNIT_SUB != 0
        })
    }

    fn topics_by_flag(&self, pred: impl Fn(i32) -> bool) -> TopicList {
        TopicList {
            broker_addr: None,
            topic_list: self
                .topic_queue_table
                .iter()
                .filter(|(_, queues)| {
                    queues
                        .values()
                        .next()
                        .is_some_and(|q| pred(q.topic_sys_flag))
                })
                .map(|(topic, _)| topic.clone())
                .collect(),
        }
    }

    /// GET_BROKER_MEMBER_GROUP: the addresses of a group by broker id (empty if unknown).
    pub fn broker_member_group(&self, broker_name: &str) -> BTreeMap<i64, String> {
        self.broker_addr_table
            .get(broker_name)
            .map(|bd| bd.broker_addrs.clone())
            .unwrap_or_default()
    }

    pub fn broker_data(&self, broker_name: &str) -> Option<&BrokerData> {
        self.broker_addr_table.get(broker_name)
    }

    pub fn live_broker(&self, cluster_name: &str, broker_addr: &str) -> Option<&BrokerLiveInfo> {
        self.broker_live_table
            .get(&addr_key(cluster_name, broker_addr))
    }

    pub fn live_broker_count(&self) -> usize {
        self.broker_live_table.len()
    }

    /// The queues of `topic` by broker name.
    pub fn topic_queues(&self, topic: &str) -> Option<&BTreeMap<String, QueueData>> {
        self.topic_queue_table.get(topic)
    }

    pub fn cluster_brokers(&self, cluster: &str) -> Option<&BTreeSet<String>> {
        self.cluster_addr_table.get(cluster)
    }

    // ---- admin changes ---------------------------------------------------------------------

    /// DELETE_TOPIC_IN_NAMESRV without a cluster: the topic goes everywhere.
    pub fn delete_topic(&mut self, topic: &str) -> bool {
        self.topic_queue_table.remove(topic).is_some()
    }

    /// DELETE_TOPIC_IN_NAMESRV with a cluster: only that cluster's brokers lose the topic.
    pub fn delete_topic_in_cluster(&mut self, topic: &str, cluster: &str) -> bool {
        let Some(names) = self.cluster_addr_table.get(cluster) else {
            return false;
        };
        let Some(queues) = self.topic_queue_table.get_mut(topic) else {
            return false;
        };
        let before = queues.len();
        for name in names {
            queues.remove(name);
        }
        let changed = queues.len() != before;
        if queues.is_empty() {
            self.topic_queue_table.remove(topic);
        }
        changed
    }

    fn remove_queue_data(&mut self, topic: &str, broker_name: &str) {
        if let Some(queues) = self.topic_queue_table.get_mut(topic) {
            queues.remove(broker_name);
            if queues.is_empty() {
                self.topic_queue_table.remove(topic);
            }
        }
    }

    /// WIPE_WRITE_PERM_OF_BROKER: makes every topic on `broker_name` read-only; returns how many
    /// topics it touched.
    pub fn wipe_write_perm_of_broker(&mut self, broker_name: &str) -> i32 {
        self.operate_write_perm(broker_name, |p| p & !perm::WRITE)
    }

    /// ADD_WRITE_PERM_OF_BROKER: sets every topic on `broker_name` to read-write (Java sets the
    /// perm to exactly RW, dropping other bits); returns how many topics it touched.
    pub fn add_write_perm_of_broker(&mut self, broker_name: &str) -> i32 {
        self.operate_write_perm(broker_name, |_| perm::READ | perm::WRITE)
    }

    fn operate_write_perm(&mut self, broker_name: &str, f: impl Fn(i32) -> i32) -> i32 {
        let mut count = 0i32;
        for queues in self.topic_queue_table.values_mut() {
            if let Some(qd) = queues.get_mut(broker_name) {
                qd.perm = f(qd.perm);
                count = count.saturating_add(1);
            }
        }
        count
    }

    /// REGISTER_TOPIC_IN_NAMESRV: adds the given queues to `topic`. All-or-nothing: refused
    /// (false) if any names a broker group that is not registered, or the list is empty.
    pub fn register_topic(&mut self, topic: &str, queue_datas: &[QueueData]) -> bool {
        if queue_datas.is_empty() {
            return false;
        }
        if let Some(bad) = queue_datas
            .iter()
            .find(|qd| !self.broker_addr_table.contains_key(&qd.broker_name))
        {
            warn!(topic, broker = %bad.broker_name, "topic registration names an unknown broker, ignored");
            return false;
        }
        let queues = self.topic_queue_table.entry(topic.to_owned()).or_default();
        for qd in queue_datas {
            queues.insert(qd.broker_name.clone(), qd.clone());
        }
        true
    }
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
