//! The client instance (RocketMQ's `MQClientInstance`): one per process and name-server set,
//! shared by every producer and consumer made from it. It owns the one [`RemotingClient`] (one
//! multiplexed connection per broker), the route and broker-address tables, the registry of
//! producer and consumer groups, the handler for broker-to-client requests, and four background
//! loops: route refresh, heartbeat, rebalance and offset persistence.
//!
//! Ownership: producers and consumers hold the instance; the instance holds only weak
//! references to them and its loops hold only a weak reference to it, so dropping the last user
//! stops everything. [`ClientInstance::shutdown`] stops it explicitly and unregisters from
//! brokers.

mod api;
mod handler;

pub(crate) use api::EXT_BROKER_NAME;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::Duration;

use apogee_protocol::body::{
    ConsumerData, HeartbeatData, JsonBody, MessageQueue, ProducerData, TopicRouteData, MASTER_ID,
};
use apogee_protocol::codes::{request_code, response_code};
use apogee_protocol::header::{
    CheckTransactionStateRequestHeader, GetRouteInfoRequestHeader, UnregisterClientRequestHeader,
};
use apogee_protocol::message::UniqIdGenerator;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{ConnectionHandle, RemotingClient};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::config::ClientConfig;
use crate::consumer::ConsumerRunningInfo;
use crate::error::{ClientError, Result};
use crate::message::MessageExt;
use crate::namespace::AUTO_CREATE_TOPIC_KEY_TOPIC;
use crate::route::{
    normalize_route, publish_info_from_route, subscribe_queues_from_route, TopicPublishInfo,
};
use crate::util::{local_ip_towards, lock};

/// The producer group every Java client instance registers for its internal sends; brokers see
/// it in heartbeats.
pub const CLIENT_INNER_PRODUCER_GROUP: &str = "CLIENT_INNER_PRODUCER";

/// Delay before the first heartbeat of a new instance (RocketMQ: 1 s).
const FIRST_HEARTBEAT_DELAY_MS: u64 = 1_000;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the instance needs from a producer.
pub(crate) trait ProducerHook: Send + Sync + 'static {
    /// The group as it travels (namespace applied).
    fn wire_group(&self) -> &str;
    /// Topics (as they travel) whose routes the instance keeps fresh.
    fn publish_topics(&self) -> Vec<String>;
    /// A broker asks about a half message of this group. `conn` is the connection it came on,
    /// where the END_TRANSACTION answer goes.
    fn check_transaction_state(
        &self,
        conn: ConnectionHandle,
        header: CheckTransactionStateRequestHeader,
        msg: MessageExt,
    );
}

/// What the instance needs from a consumer. The push consumer implements the same hook.
pub(crate) trait ConsumerHook: Send + Sync + 'static {
    /// The group as it travels (namespace applied).
    fn wire_group(&self) -> &str;
    /// The consumer's entry in heartbeats.
    fn consumer_data(&self) -> ConsumerData;
    /// Topics (as they travel) whose routes the instance keeps fresh.
    fn subscribed_topics(&self) -> Vec<String>;
    /// Recomputes the queue assignment; called every `rebalance_interval_ms` and at once after
    /// NOTIFY_CONSUMER_IDS_CHANGED (several notifications in a row coalesce into one run).
    fn rebalance(&self) -> BoxFuture<'_, ()>;
    /// Sends the consumer's offsets to the broker (or its local file); called every
    /// `persist_consumer_offset_interval_ms`.
    fn persist_offsets(&self) -> BoxFuture<'_, ()>;
    /// The answer to GET_CONSUMER_RUNNING_INFO.
    fn running_info(&self) -> ConsumerRunningInfo;
    /// RESET_CONSUMER_CLIENT_OFFSET from a broker (an admin reset the group's offsets).
    fn reset_offset(&self, _topic: &str, _offsets: Vec<(MessageQueue, i64)>) {}
}

/// A topic's route as last fetched, with the derived queue lists.
#[derive(Debug)]
pub struct RouteEntry {
    pub route: TopicRouteData,
    /// Writable queues, shared by every producer of the instance (with one round-robin index).
    pub publish: Arc<TopicPublishInfo>,
    /// Readable queues, sorted.
    pub subscribe: Arc<Vec<MessageQueue>>,
}

/// A shared client instance. Cheap to clone.
#[derive(Clone)]
pub struct ClientInstance {
    pub(crate) inner: Arc<InstanceInner>,
}

pub(crate) struct InstanceInner {
    client_id: String,
    client_ip: IpAddr,
    config: ClientConfig,
    registry_key: String,
    remoting: RemotingClient,
    /// The name server tried first; moves on after a failure.
    name_server_index: AtomicUsize,
    uniq_ids: UniqIdGenerator,
    routes: RwLock<HashMap<String, Arc<RouteEntry>>>,
    /// Broker name -> broker id -> address, from every route seen.
    brokers: RwLock<HashMap<String, BTreeMap<i64, String>>>,
    producers: Mutex<HashMap<String, Weak<dyn ProducerHook>>>,
    consumers: Mutex<HashMap<String, Weak<dyn ConsumerHook>>>,
    /// Serializes heartbeat rounds.
    heartbeat_lock: tokio::sync::Mutex<()>,
    rebalance_wake: Arc<Notify>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    shut_down: AtomicBool,
}

type Registry = Mutex<HashMap<String, Weak<InstanceInner>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

impl fmt::Debug for ClientInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientInstance")
            .field("client_id", &self.inner.client_id)
            .field("name_servers", &self.inner.config.name_server_addrs)
            .field("shut_down", &self.is_shut_down())
            .finish()
    }
}

impl ClientInstance {
    /// The instance for `config`'s name servers and instance name, created (and its loops
    /// started) on first use. Later calls with the same key return the same instance, whatever
    /// the rest of their configuration says. Must be called inside a tokio runtime.
    pub fn get_or_create(config: ClientConfig) -> Result<ClientInstance> {
        if config.name_server_addrs.is_empty() {
            return Err(ClientError::InvalidArgument(
                "at least one name server address is required".into(),
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ClientError::IllegalState(
                "a client instance must be created inside a tokio runtime".into(),
            ));
        }
        let key = config.registry_key();
        let mut reg = lock(registry());
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(inner) = reg.get(&key).and_then(Weak::upgrade) {
            if !inner.shut_down.load(Ordering::SeqCst) {
                return Ok(ClientInstance { inner });
            }
        }
        let instance = Self::create(config, key.clone());
        reg.insert(key, Arc::downgrade(&instance.inner));
        Ok(instance)
    }

    /// A new instance that is not shared through the registry (for tests and for callers that
    /// really want a separate identity). Must be called inside a tokio runtime.
    pub fn new_unshared(config: ClientConfig) -> Result<ClientInstance> {
        if config.name_server_addrs.is_empty() {
            return Err(ClientError::InvalidArgument(
                "at least one name server address is required".into(),
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ClientError::IllegalState(
                "a client instance must be created inside a tokio runtime".into(),
            ));
        }
        Ok(Self::create(config, String::new()))
    }

    fn create(config: ClientConfig, registry_key: String) -> ClientInstance {
        let client_ip: IpAddr = config
            .client_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .unwrap_or_else(|| {
                local_ip_towards(config.name_server_addrs.first().map_or("", String::as_str))
            });
        let client_id = config.build_client_id(&client_ip.to_string());
        let start_index = crate::util::random_u64() as usize % config.name_server_addrs.len();
        let inner = Arc::new_cyclic(|weak: &Weak<InstanceInner>| {
            let remoting = RemotingClient::with_handler(
                config.remoting.clone(),
                handler::router(weak.clone()),
            );
            InstanceInner {
                client_id,
                client_ip,
                registry_key,
                remoting,
                name_server_index: AtomicUsize::new(start_index),
                uniq_ids: UniqIdGenerator::new(Some(client_ip)),
                routes: RwLock::new(HashMap::new()),
                brokers: RwLock::new(HashMap::new()),
                producers: Mutex::new(HashMap::new()),
                consumers: Mutex::new(HashMap::new()),
                heartbeat_lock: tokio::sync::Mutex::new(()),
                rebalance_wake: Arc::new(Notify::new()),
                tasks: Mutex::new(Vec::new()),
                shut_down: AtomicBool::new(false),
                config,
            }
        });
        let instance = ClientInstance { inner };
        instance.start_loops();
        info!(client_id = %instance.inner.client_id, "client instance started");
        instance
    }

    fn start_loops(&self) {
        let c = &self.inner.config;
        let weak = Arc::downgrade(&self.inner);
        let route_every = Duration::from_millis(c.poll_name_server_interval_ms.max(1));
        let heartbeat_every = Duration::from_millis(c.heartbeat_interval_ms.max(1));
        let persist_every = Duration::from_millis(c.persist_consumer_offset_interval_ms.max(1));
        let rebalance_every = Duration::from_millis(c.rebalance_interval_ms.max(1));
        let tasks = vec![
            tokio::spawn(periodic(weak.clone(), route_every, route_every, |i| {
                Box::pin(async move { i.refresh_all_routes().await })
            })),
            tokio::spawn(periodic(
                weak.clone(),
                Duration::from_millis(FIRST_HEARTBEAT_DELAY_MS),
                heartbeat_every,
                |i| Box::pin(async move { i.send_heartbeat_to_all_brokers().await }),
            )),
            tokio::spawn(periodic(weak.clone(), persist_every, persist_every, |i| {
                Box::pin(async move { i.persist_all_consumer_offsets().await })
            })),
            tokio::spawn(rebalance_loop(
                weak,
                Arc::clone(&self.inner.rebalance_wake),
                rebalance_every,
            )),
        ];
        lock(&self.inner.tasks).extend(tasks);
    }

    /// `ip@instanceName[@unitName]`, as brokers list this client.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    pub fn client_ip(&self) -> IpAddr {
        self.inner.client_ip
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The transport, for calls this crate does not wrap.
    pub fn remoting(&self) -> &RemotingClient {
        &self.inner.remoting
    }

    pub fn is_shut_down(&self) -> bool {
        self.inner.shut_down.load(Ordering::SeqCst)
    }

    pub(crate) fn check_running(&self) -> Result<()> {
        if self.is_shut_down() {
            Err(ClientError::Shutdown)
        } else {
            Ok(())
        }
    }

    /// A new `UNIQ_KEY`.
    pub(crate) fn next_uniq_id(&self) -> String {
        self.inner.uniq_ids.next_id()
    }

    /// Wakes the rebalance loop now. Calls made while a run is pending coalesce into one run.
    pub fn trigger_rebalance(&self) {
        self.inner.rebalance_wake.notify_one();
    }

    // ---- registry of producers and consumers -------------------------------------------------

    pub(crate) fn register_producer(
        &self,
        hook: Weak<dyn ProducerHook>,
        group: &str,
    ) -> Result<()> {
        self.check_running()?;
        let mut producers = lock(&self.inner.producers);
        if producers.get(group).is_some_and(|w| w.strong_count() > 0) {
            return Err(ClientError::IllegalState(format!(
                "the producer group {group} is already registered in client instance {}",
                self.inner.client_id
            )));
        }
        producers.insert(group.to_owned(), hook);
        Ok(())
    }

    pub(crate) fn register_consumer(
        &self,
        hook: Weak<dyn ConsumerHook>,
        group: &str,
    ) -> Result<()> {
        self.check_running()?;
        let mut consumers = lock(&self.inner.consumers);
        if consumers.get(group).is_some_and(|w| w.strong_count() > 0) {
            return Err(ClientError::IllegalState(format!(
                "the consumer group {group} is already registered in client instance {}",
                self.inner.client_id
            )));
        }
        consumers.insert(group.to_owned(), hook);
        Ok(())
    }

    /// Removes a producer group, tells every broker (UNREGISTER_CLIENT), and shuts the instance
    /// down when it was the last member.
    pub(crate) async fn unregister_producer(&self, group: &str) {
        lock(&self.inner.producers).remove(group);
        self.unregister_client(Some(group), None).await;
        self.shutdown_if_unused().await;
    }

    /// Removes a consumer group, tells every broker (UNREGISTER_CLIENT), and shuts the instance
    /// down when it was the last member.
    pub(crate) async fn unregister_consumer(&self, group: &str) {
        lock(&self.inner.consumers).remove(group);
        self.unregister_client(None, Some(group)).await;
        self.shutdown_if_unused().await;
    }

    async fn shutdown_if_unused(&self) {
        let unused = {
            let mut p = lock(&self.inner.producers);
            p.retain(|_, w| w.strong_count() > 0);
            let mut c = lock(&self.inner.consumers);
            c.retain(|_, w| w.strong_count() > 0);
            p.is_empty() && c.is_empty()
        };
        if unused {
            self.shutdown().await;
        }
    }

    pub(crate) fn producer_hooks(&self) -> Vec<Arc<dyn ProducerHook>> {
        lock(&self.inner.producers)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    pub(crate) fn consumer_hooks(&self) -> Vec<Arc<dyn ConsumerHook>> {
        lock(&self.inner.consumers)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    pub(crate) fn producer_hook(&self, group: &str) -> Option<Arc<dyn ProducerHook>> {
        lock(&self.inner.producers)
            .get(group)
            .and_then(Weak::upgrade)
    }

    pub(crate) fn consumer_hook(&self, group: &str) -> Option<Arc<dyn ConsumerHook>> {
        lock(&self.inner.consumers)
            .get(group)
            .and_then(Weak::upgrade)
    }

    /// The producer groups (as they travel) registered here.
    pub fn producer_groups(&self) -> Vec<String> {
        self.producer_hooks()
            .iter()
            .map(|p| p.wire_group().to_owned())
            .collect()
    }

    /// The consumer groups (as they travel) registered here.
    pub fn consumer_groups(&self) -> Vec<String> {
        self.consumer_hooks()
            .iter()
            .map(|c| c.wire_group().to_owned())
            .collect()
    }

    // ---- routes ------------------------------------------------------------------------------

    /// The route of `topic` as last fetched, if any.
    pub fn route_entry(&self, topic: &str) -> Option<Arc<RouteEntry>> {
        read(&self.inner.routes).get(topic).cloned()
    }

    /// Asks the name servers for `topic`'s route (no table update). A topic no name server
    /// knows is `ClientError::Broker { code: TOPIC_NOT_EXIST, .. }`.
    pub async fn fetch_topic_route(&self, topic: &str) -> Result<TopicRouteData> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            ..Default::default()
        };
        let request =
            RemotingCommand::request_with_header(request_code::GET_ROUTEINFO_BY_TOPIC, &header);
        let (addr, response) = self.invoke_name_server(request).await?;
        if response.code != response_code::SUCCESS {
            return Err(ClientError::broker(response.code, response.remark, &addr));
        }
        let route = TopicRouteData::decode(&response.body)?;
        Ok(normalize_route(route))
    }

    /// The auto-create template `TBW102`'s route.
    pub async fn fetch_default_topic_route(&self) -> Result<TopicRouteData> {
        self.fetch_topic_route(AUTO_CREATE_TOPIC_KEY_TOPIC).await
    }

    /// Fetches `topic`'s route and stores it: broker addresses, publish and subscribe queues.
    /// When the route names brokers not seen before, a heartbeat round follows, so that brokers
    /// know this client's groups before the next periodic heartbeat.
    pub async fn update_topic_route(&self, topic: &str) -> Result<Arc<RouteEntry>> {
        self.check_running()?;
        let route = self.fetch_topic_route(topic).await?;
        Ok(self.install_route(topic, route))
    }

    /// Stores a route (as [`update_topic_route`](Self::update_topic_route) does after fetching).
    pub(crate) fn install_route(&self, topic: &str, route: TopicRouteData) -> Arc<RouteEntry> {
        let route = normalize_route(route);
        if let Some(old) = self.route_entry(topic) {
            if old.route == route {
                return old;
            }
        }
        let mut new_broker = false;
        {
            let mut brokers = write(&self.inner.brokers);
            for bd in &route.broker_datas {
                match brokers.get(&bd.broker_name) {
                    Some(addrs) if *addrs == bd.broker_addrs => {}
                    existing => {
                        new_broker |= existing.is_none();
                        brokers.insert(bd.broker_name.clone(), bd.broker_addrs.clone());
                    }
                }
            }
        }
        let entry = Arc::new(RouteEntry {
            publish: Arc::new(publish_info_from_route(topic, &route)),
            subscribe: Arc::new(subscribe_queues_from_route(topic, &route)),
            route,
        });
        write(&self.inner.routes).insert(topic.to_owned(), Arc::clone(&entry));
        debug!(topic, "route updated");
        if new_broker {
            let weak = Arc::downgrade(&self.inner);
            tokio::spawn(async move {
                if let Some(inner) = weak.upgrade() {
                    ClientInstance { inner }
                        .send_heartbeat_to_all_brokers()
                        .await;
                }
            });
        }
        entry
    }

    /// Refreshes the route of every topic a producer or consumer of this instance uses, drops
    /// routes nobody uses any more and forgets brokers no route mentions.
    pub async fn refresh_all_routes(&self) {
        if self.is_shut_down() {
            return;
        }
        let mut topics = BTreeSet::new();
        for p in self.producer_hooks() {
            topics.extend(p.publish_topics());
        }
        for c in self.consumer_hooks() {
            topics.extend(c.subscribed_topics());
        }
        for topic in &topics {
            if let Err(e) = self.update_topic_route(topic).await {
                debug!(topic = %topic, error = %e, "route refresh failed");
            }
        }
        write(&self.inner.routes).retain(|t, _| topics.contains(t));
        let used: BTreeSet<String> = read(&self.inner.routes)
            .values()
            .flat_map(|e| e.route.broker_datas.iter().map(|b| b.broker_name.clone()))
            .collect();
        write(&self.inner.brokers).retain(|name, _| used.contains(name));
    }

    /// The master address of `broker_name`, if known.
    pub fn master_addr(&self, broker_name: &str) -> Option<String> {
        read(&self.inner.brokers)
            .get(broker_name)
            .and_then(|addrs| addrs.get(&MASTER_ID).cloned())
    }

    /// The address of `broker_name`'s member `broker_id`, or (unless `only_this_broker`) any
    /// member, the master first. Returns the address and whether it is a slave.
    pub fn find_broker_addr(
        &self,
        broker_name: &str,
        broker_id: i64,
        only_this_broker: bool,
    ) -> Option<(String, bool)> {
        let brokers = read(&self.inner.brokers);
        let addrs = brokers.get(broker_name)?;
        if let Some(addr) = addrs.get(&broker_id) {
            return Some((addr.clone(), broker_id != MASTER_ID));
        }
        if only_this_broker {
            return None;
        }
        addrs
            .iter()
            .next()
            .map(|(id, addr)| (addr.clone(), *id != MASTER_ID))
    }

    /// The master address of `broker_name`, refreshing `topic`'s route once if it is unknown.
    pub(crate) async fn master_addr_or_refresh(
        &self,
        broker_name: &str,
        topic: &str,
    ) -> Result<String> {
        if let Some(addr) = self.master_addr(broker_name) {
            return Ok(addr);
        }
        let _ = self.update_topic_route(topic).await;
        self.master_addr(broker_name)
            .ok_or_else(|| ClientError::BrokerNotFound {
                broker_name: broker_name.to_owned(),
            })
    }

    /// Every known broker address as (broker name, broker id, address).
    pub fn broker_addrs(&self) -> Vec<(String, i64, String)> {
        read(&self.inner.brokers)
            .iter()
            .flat_map(|(name, addrs)| {
                addrs
                    .iter()
                    .map(move |(id, addr)| (name.clone(), *id, addr.clone()))
            })
            .collect()
    }

    // ---- heartbeat and unregistration --------------------------------------------------------

    /// The HEART_BEAT body: every producer group (plus the inner producer group, as Java
    /// clients send) and every consumer's data.
    pub fn heartbeat_data(&self) -> HeartbeatData {
        let mut producer_groups: BTreeSet<String> = self
            .producer_hooks()
            .iter()
            .map(|p| p.wire_group().to_owned())
            .collect();
        producer_groups.insert(CLIENT_INNER_PRODUCER_GROUP.to_owned());
        let mut consumers: Vec<ConsumerData> = self
            .consumer_hooks()
            .iter()
            .map(|c| c.consumer_data())
            .collect();
        consumers.sort_by(|a, b| a.group_name.cmp(&b.group_name));
        HeartbeatData {
            client_id: self.inner.client_id.clone(),
            consumer_data_set: consumers,
            heartbeat_fingerprint: 0,
            producer_data_set: producer_groups
                .into_iter()
                .map(|group_name| ProducerData { group_name })
                .collect(),
            without_sub: false,
        }
    }

    /// One heartbeat round: HEART_BEAT to every known broker (only masters when the instance
    /// has no consumers, as Java does). Failures are logged; the next round retries.
    pub async fn send_heartbeat_to_all_brokers(&self) {
        if self.is_shut_down() {
            return;
        }
        let _round = self.inner.heartbeat_lock.lock().await;
        let has_producers = !self.producer_hooks().is_empty();
        let has_consumers = !self.consumer_hooks().is_empty();
        if !has_producers && !has_consumers {
            return;
        }
        let data = self.heartbeat_data();
        let body = match data.encode() {
            Ok(body) => bytes::Bytes::from(body),
            Err(e) => {
                warn!(error = %e, "cannot encode heartbeat");
                return;
            }
        };
        for (name, id, addr) in self.broker_addrs() {
            if !has_consumers && id != MASTER_ID {
                continue;
            }
            let request =
                RemotingCommand::request(request_code::HEART_BEAT).with_body(body.clone());
            match self
                .invoke_broker(&addr, request, self.config().api_timeout())
                .await
            {
                Ok(resp) if resp.code == response_code::SUCCESS => {
                    debug!(broker = %name, %addr, "heartbeat sent");
                }
                Ok(resp) => {
                    warn!(broker = %name, %addr, code = resp.code, remark = ?resp.remark, "heartbeat refused")
                }
                Err(e) => debug!(broker = %name, %addr, error = %e, "heartbeat failed"),
            }
        }
    }

    /// UNREGISTER_CLIENT for a producer and/or consumer group to every known broker.
    pub(crate) async fn unregister_client(
        &self,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
    ) {
        let header = UnregisterClientRequestHeader {
            client_id: self.inner.client_id.clone(),
            producer_group: producer_group.map(str::to_owned),
            consumer_group: consumer_group.map(str::to_owned),
        };
        for (name, _, addr) in self.broker_addrs() {
            let request =
                RemotingCommand::request_with_header(request_code::UNREGISTER_CLIENT, &header);
            match self
                .invoke_broker(&addr, request, self.config().api_timeout())
                .await
            {
                Ok(resp) if resp.code == response_code::SUCCESS => {
                    debug!(broker = %name, %addr, ?producer_group, ?consumer_group, "unregistered");
                }
                Ok(resp) => debug!(broker = %name, %addr, code = resp.code, "unregister refused"),
                Err(e) => debug!(broker = %name, %addr, error = %e, "unregister failed"),
            }
        }
    }

    async fn persist_all_consumer_offsets(&self) {
        for c in self.consumer_hooks() {
            c.persist_offsets().await;
        }
    }

    async fn rebalance_all(&self) {
        for c in self.consumer_hooks() {
            c.rebalance().await;
        }
    }

    /// Stops the loops, unregisters every remaining group from the brokers, closes every
    /// connection and leaves the shared registry. Safe to call more than once.
    pub async fn shutdown(&self) {
        if self.inner.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let mut reg = lock(registry());
            let ours = reg
                .get(&self.inner.registry_key)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.inner)));
            if ours {
                reg.remove(&self.inner.registry_key);
            }
        }
        for task in lock(&self.inner.tasks).drain(..) {
            task.abort();
        }
        let producers: Vec<String> = lock(&self.inner.producers)
            .drain()
            .map(|(g, _)| g)
            .collect();
        let consumers: Vec<String> = lock(&self.inner.consumers)
            .drain()
            .map(|(g, _)| g)
            .collect();
        for g in &producers {
            self.unregister_client(Some(g), None).await;
        }
        for g in &consumers {
            self.unregister_client(None, Some(g)).await;
        }
        self.inner.remoting.close();
        info!(client_id = %self.inner.client_id, "client instance shut down");
    }
}

impl Drop for InstanceInner {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        self.remoting.close();
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `tick` every `period` after `first`, for as long as the instance lives and runs.
async fn periodic<F>(weak: Weak<InstanceInner>, first: Duration, period: Duration, tick: F)
where
    F: Fn(ClientInstance) -> BoxFuture<'static, ()> + Send + 'static,
{
    let mut interval = tokio::time::interval_at(Instant::now() + first, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = weak.upgrade() else { break };
        if inner.shut_down.load(Ordering::SeqCst) {
            break;
        }
        tick(ClientInstance { inner }).await;
    }
}

async fn rebalance_loop(weak: Weak<InstanceInner>, wake: Arc<Notify>, period: Duration) {
    loop {
        // Waits without keeping the instance alive: only the `Notify` is held here.
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = wake.notified() => {}
        }
        let Some(inner) = weak.upgrade() else { break };
        if inner.shut_down.load(Ordering::SeqCst) {
            break;
        }
        ClientInstance { inner }.rebalance_all().await;
    }
}
