//! Starting and stopping a broker: open the store, load the managers, bind the remoting server,
//! start the background tasks (registration, offset persistence, client expiry, transaction
//! check-back), and undo all of it in order on shutdown.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use apogee_protocol::codes::request_code::NOTIFY_CONSUMER_IDS_CHANGED;
use apogee_protocol::codes::response_code::SYSTEM_BUSY;
use apogee_protocol::header::NotifyConsumerIdsChangedRequestHeader;
use apogee_protocol::message::UniqIdGenerator;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{
    ConnectionHandle, HandlerFuture, RemotingClient, RemotingConfig, RemotingServer,
    RequestContext, RequestHandler, Router,
};
use apogee_store::MessageStore;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::filter::FilterRegistry;
use crate::live_config::LiveConfig;
use crate::long_polling::PullHoldService;
use crate::manager::{
    lock, now_ms, ConsumerManager, ConsumerOffsetManager, Membership, ProducerManager,
    RebalanceLockManager, SubscriptionGroupManager, TopicConfigManager,
};
use crate::pop::service::PopManager;
use crate::schedule::{ScheduleCore, ScheduleService};
use crate::timer::{cancel_timer, CancelOutcome, TimerCore, TimerService, TimerStats};
use crate::transaction::{self, TransactionStats, Transactions};
use crate::{processor, register};

/// Counters reported by GET_BROKER_RUNTIME_INFO.
#[derive(Default)]
pub(crate) struct Stats {
    pub put_messages: AtomicU64,
    pub got_messages: AtomicU64,
    /// Per topic / group / request code counters for `/metrics` and the web page.
    pub traffic: crate::traffic::Traffic,
}

/// Everything the processors share.
pub(crate) struct BrokerInner {
    /// The settings the broker started with.
    pub config: BrokerConfig,
    /// The settings UPDATE_BROKER_CONFIG may change; read these, not `config`, for them.
    pub live: LiveConfig,
    pub store: Arc<MessageStore>,
    /// STOREHOST of every record and the address in offsetMsgIds.
    pub store_host: SocketAddr,
    /// `ip:port` advertised to name servers.
    pub broker_addr: String,
    pub ha_server_addr: String,
    pub topics: TopicConfigManager,
    pub groups: SubscriptionGroupManager,
    pub offsets: ConsumerOffsetManager,
    pub consumers: ConsumerManager,
    pub producers: ProducerManager,
    pub locks: RebalanceLockManager,
    pub holds: Arc<PullHoldService>,
    pub uniq_ids: UniqIdGenerator,
    /// Transaction outcomes and counters (the rest of their state is in the store).
    pub transactions: Transactions,
    /// Woken on every topic change: the registration task re-registers at once.
    pub topics_changed: Arc<Notify>,
    /// The topic data version (counter) of the last finished registration round.
    pub registered_topics_version: watch::Sender<i64>,
    /// Connections with a task waiting for their close.
    watched: Mutex<HashSet<u64>>,
    /// Heartbeat-v2 fingerprint of each consumer group.
    pub heartbeat_fingerprints: Mutex<HashMap<String, i32>>,
    /// Compiled SQL92 filters of the consumers' subscriptions.
    pub filters: FilterRegistry,
    /// POP consumption: in-flight messages, their journal, parked pops.
    pub pop: Arc<PopManager>,
    pub stats: Stats,
    pub started_ms: i64,
    pub shutting_down: AtomicBool,
}

impl BrokerInner {
    /// Makes sure the broker hears when `conn` closes, to drop its client registrations. One task
    /// per connection, started on its first heartbeat.
    pub fn watch_connection(self: &Arc<Self>, conn: &ConnectionHandle) {
        if !lock(&self.watched).insert(conn.id()) {
            return;
        }
        let weak: Weak<BrokerInner> = Arc::downgrade(self);
        let conn = conn.clone();
        tokio::spawn(async move {
            conn.closed().await;
            let id = conn.id();
            drop(conn);
            if let Some(inner) = weak.upgrade() {
                lock(&inner.watched).remove(&id);
                inner.producers.channel_closed(id);
                let membership = inner.consumers.channel_closed(id);
                inner.apply_membership(membership);
            }
        });
    }

    /// Sends the NOTIFY_CONSUMER_IDS_CHANGED a membership change asks for and closes expired
    /// connections. Sending runs on its own task so a slow client cannot hold up the caller.
    pub fn apply_membership(&self, m: Membership) {
        for conn in m.close {
            conn.close();
        }
        if m.notify.is_empty() {
            return;
        }
        tokio::spawn(async move {
            for (group, conn) in m.notify {
                let header = NotifyConsumerIdsChangedRequestHeader {
                    consumer_group: group,
                };
                let request =
                    RemotingCommand::request_with_header(NOTIFY_CONSUMER_IDS_CHANGED, &header);
                if let Err(e) = conn.invoke_oneway(request).await {
                    debug!(peer = %conn.peer_addr(), error = %e, "cannot notify consumer ids changed");
                }
            }
        });
    }

    /// Resolves once a registration round carrying topic data version `version` or newer has
    /// finished with every name server, or after `max_wait`. As RocketMQ's send path registers
    /// before it answers the send that created a topic, a client that asks a name server for the
    /// route right after that send finds it (instead of waiting for its next route refresh, 30 s).
    pub async fn wait_registered(&self, version: i64, max_wait: Duration) {
        if self.config.namesrv_addrs.is_empty() || self.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let mut rx = self.registered_topics_version.subscribe();
        let _ = tokio::time::timeout(max_wait, rx.wait_for(|v| *v >= version)).await;
    }

    /// Persists every config table (best effort: errors are logged).
    pub fn persist_all(&self) {
        if let Err(e) = self.offsets.persist() {
            error!("persisting consumer offsets failed: {e}");
        }
        if let Err(e) = self.topics.persist() {
            error!("persisting topics failed: {e}");
        }
        if let Err(e) = self.groups.persist() {
            error!("persisting subscription groups failed: {e}");
        }
    }
}

/// Entry point.
pub struct Broker;

impl Broker {
    /// Opens the store under `<data>/store`, loads `<data>/config`, binds `config.listen_addr`,
    /// starts serving, and registers with the configured name servers (the first registration
    /// has finished, or failed, when this returns).
    pub async fn start(config: BrokerConfig) -> Result<BrokerHandle> {
        config.check().map_err(BrokerError::Config)?;
        let ip = config.advertised_ip().map_err(BrokerError::Config)?;
        let store_config = config.store_config();
        let store = tokio::task::spawn_blocking(move || MessageStore::open(store_config))
            .await
            .map_err(|e| BrokerError::Config(format!("store open task failed: {e}")))??;
        let store = Arc::new(store);

        // Requests can arrive the moment the socket is bound, before the broker knows its port
        // (needed for STOREHOST); they wait behind this gate and are refused as busy until then.
        let gate: Arc<OnceLock<Router>> = Arc::new(OnceLock::new());
        let bind_addr = config.bind_addr();
        let server = RemotingServer::bind(
            bind_addr.as_str(),
            RemotingConfig::default(),
            Gate(Arc::clone(&gate)),
        )
        .await
        .map_err(|e| BrokerError::io(&bind_addr, e))?;
        let local_addr = server.local_addr();
        let store_host = SocketAddr::new(ip, local_addr.port());
        let ha_port = config
            .ha_listen_port
            .unwrap_or_else(|| local_addr.port().wrapping_add(1));

        let topics_changed = Arc::new(Notify::new());
        let inner = Arc::new(BrokerInner {
            topics: TopicConfigManager::load(&config, Arc::clone(&topics_changed))?,
            groups: SubscriptionGroupManager::load(&config)?,
            offsets: ConsumerOffsetManager::load(&config)?,
            consumers: ConsumerManager::new(),
            producers: ProducerManager::new(),
            locks: RebalanceLockManager::new(config.lock_max_live_time_ms),
            holds: PullHoldService::new(config.max_parked_pulls),
            uniq_ids: UniqIdGenerator::new(Some(ip)),
            transactions: Transactions::new(),
            topics_changed,
            registered_topics_version: watch::Sender::new(i64::MIN),
            watched: Mutex::new(HashSet::new()),
            heartbeat_fingerprints: Mutex::new(HashMap::new()),
            filters: FilterRegistry::new(),
            pop: Arc::new(PopManager::open(&config)?),
            stats: Stats::default(),
            started_ms: now_ms(),
            shutting_down: AtomicBool::new(false),
            broker_addr: store_host.to_string(),
            ha_server_addr: SocketAddr::new(ip, ha_port).to_string(),
            store_host,
            store,
            live: LiveConfig::new(&config),
            config,
        });
        inner.topics.persist()?;
        inner.groups.persist()?;
        crate::pop::service::raise_pop_offsets(&inner);

        let holds = Arc::clone(&inner.holds);
        let pop = Arc::clone(&inner.pop);
        inner
            .store
            .set_append_listener(Arc::new(move |topic, queue_id, max| {
                holds.notify(topic, queue_id, max);
                pop.notify_arrival(topic);
            }));
        let _ = gate.set(processor::router(Arc::clone(&inner)));
        let (schedule, timer) = start_delivery(&inner).await?;

        let (stop_tx, stop_rx) = watch::channel(false);
        let client = RemotingClient::new(RemotingConfig::default());
        // Once `start` returns, name servers route to this broker's topics: a client started
        // right after finds them (each call is bounded by registerBrokerTimeoutMills).
        register::register_all(&inner, &client).await;
        let tasks = vec![
            tokio::spawn(register::run(
                Arc::clone(&inner),
                client.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(persist_offsets(Arc::clone(&inner), stop_rx.clone())),
            tokio::spawn(transaction::check::run(Arc::clone(&inner), stop_rx.clone())),
            tokio::spawn(scan_clients(Arc::clone(&inner), stop_rx)),
        ];
        info!(
            addr = %local_addr,
            advertised = %inner.broker_addr,
            name = %inner.config.broker_name,
            cluster = %inner.config.broker_cluster_name,
            "broker started"
        );
        Ok(BrokerHandle {
            inner,
            server,
            client,
            stop_tx,
            tasks,
            schedule,
            timer,
        })
    }
}

/// Starts the delay-level and timer delivery threads (the timer one only when timers are on).
async fn start_delivery(
    inner: &Arc<BrokerInner>,
) -> Result<(Option<ScheduleService>, Option<TimerService>)> {
    let store = Arc::clone(&inner.store);
    let config_dir = inner.config.config_dir();
    let interval = inner.config.flush_delay_offset_interval_ms;
    let timers = inner.config.timer_wheel_enable;
    tokio::task::spawn_blocking(move || -> Result<_> {
        let schedule = ScheduleService::start(ScheduleCore::load(
            Arc::clone(&store),
            config_dir,
            interval,
        )?)?;
        let timer = if timers {
            Some(TimerService::start(TimerCore::open(store)?)?)
        } else {
            None
        };
        Ok((Some(schedule), timer))
    })
    .await
    .map_err(|e| BrokerError::Config(format!("delivery services task failed: {e}")))?
}

/// A running broker.
pub struct BrokerHandle {
    inner: Arc<BrokerInner>,
    server: RemotingServer,
    client: RemotingClient,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    schedule: Option<ScheduleService>,
    timer: Option<TimerService>,
}

impl BrokerHandle {
    /// The address the remoting server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// `ip:port` advertised to name servers and written as STOREHOST.
    pub fn broker_addr(&self) -> &str {
        &self.inner.broker_addr
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// The broker's services for an endpoint in the same process (see [`crate::local`]).
    pub fn services(&self) -> crate::local::LocalServices {
        crate::local::LocalServices::new(Arc::clone(&self.inner))
    }

    /// Pulls parked by long polling right now.
    pub fn parked_pulls(&self) -> usize {
        self.inner.holds.parked()
    }

    /// Resolves once exactly `n` pulls are parked.
    pub async fn wait_parked_pulls(&self, n: usize) {
        self.inner.holds.wait_parked(n).await
    }

    /// Next offset to deliver of each delay level (what `config/delayOffset.json` will say once the
    /// re-puts are durable).
    pub fn delay_offsets(&self) -> BTreeMap<i32, i64> {
        self.schedule
            .as_ref()
            .map(|s| lock(s.core()).offsets())
            .unwrap_or_default()
    }

    /// The timer service's counters; `None` when timers are disabled.
    pub fn timer_stats(&self) -> Option<TimerStats> {
        self.timer.as_ref().map(|t| t.stats())
    }

    /// Cancels the pending timer message of `topic` with unique key `uniq_key` (see
    /// [`crate::timer::cancel_timer`]).
    pub async fn cancel_timer_message(&self, topic: &str, uniq_key: &str) -> Result<CancelOutcome> {
        let store = Arc::clone(&self.inner.store);
        let host = self.inner.store_host;
        let (topic, uniq_key) = (topic.to_owned(), uniq_key.to_owned());
        let outcome = tokio::task::spawn_blocking(move || {
            cancel_timer(&store, host, &topic, &uniq_key, now_ms())
        })
        .await
        .map_err(|e| BrokerError::Config(format!("cancel task failed: {e}")))??;
        if let Some(t) = &self.timer {
            t.wake();
        }
        Ok(outcome)
    }

    /// Counters of transactional messages: commits, rollbacks, check-backs, discards.
    pub fn transaction_stats(&self) -> TransactionStats {
        self.inner.transactions.stats()
    }

    /// Resolves once the transaction counters satisfy `ready` (checked at once and after every
    /// change).
    pub async fn wait_transaction_stats(&self, ready: impl Fn(&TransactionStats) -> bool) {
        let mut rx = self.inner.transactions.subscribe();
        let _ = rx.wait_for(|s| ready(s)).await;
    }

    /// Starts the HTTP server (`/metrics`, the web page at `/`, its JSON under `/api/`) on
    /// `addr` (`HOST:PORT`; port 0 picks a free port). It stops when the returned handle drops.
    pub async fn start_http(&self, addr: &str) -> Result<crate::http::HttpServer> {
        crate::http::start(Arc::clone(&self.inner), addr)
            .await
            .map_err(|e| BrokerError::io(addr, e))
    }

    /// The POP API (receive with receipt handles, ack, change invisible time) for the gRPC
    /// layer.
    pub fn pop_api(&self) -> crate::pop::PopApi {
        crate::pop::PopApi {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Stops gracefully: parked pulls are answered, the server stops accepting and finishes the
    /// requests in flight, the broker unregisters from its name servers, configs and offsets are
    /// written, and the store is closed cleanly.
    pub async fn shutdown(self) -> Result<()> {
        let BrokerHandle {
            inner,
            server,
            client,
            stop_tx,
            tasks,
            schedule,
            timer,
        } = self;
        inner.shutting_down.store(true, Ordering::SeqCst);
        inner.holds.shutdown();
        inner.pop.shutdown();
        server.shutdown().await;
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(s) = schedule {
                s.shutdown();
            }
            if let Some(t) = timer {
                t.shutdown();
            }
        })
        .await;
        register::unregister_all(&inner, &client).await;
        client.close();
        inner.persist_all();
        let store = Arc::clone(&inner.store);
        tokio::task::spawn_blocking(move || store.close())
            .await
            .map_err(|e| BrokerError::Config(format!("store close task failed: {e}")))??;
        info!(name = %inner.config.broker_name, "broker stopped");
        Ok(())
    }
}

/// Holds requests until the router exists (see [`Broker::start`]).
struct Gate(Arc<OnceLock<Router>>);

impl RequestHandler for Gate {
    fn handle(&self, ctx: RequestContext, request: RemotingCommand) -> HandlerFuture {
        match self.0.get() {
            Some(router) => router.handle(ctx, request),
            None => HandlerFuture::reply(RemotingCommand::response(
                SYSTEM_BUSY,
                Some("broker is starting, try again".into()),
            )),
        }
    }
}

/// Writes consumer offsets every `flushConsumerOffsetInterval`.
async fn persist_offsets(inner: Arc<BrokerInner>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(inner.config.flush_consumer_offset_interval_ms.max(100));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let inner2 = Arc::clone(&inner);
        let result = tokio::task::spawn_blocking(move || inner2.offsets.persist_if_dirty()).await;
        if let Ok(Err(e)) = result {
            warn!("persisting consumer offsets failed: {e}");
        }
    }
}

/// Drops clients silent for longer than `channelExpiredTimeout`.
async fn scan_clients(inner: Arc<BrokerInner>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(inner.config.client_scan_interval_ms.max(10));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let now = now_ms();
        let timeout = inner.config.channel_expired_timeout_ms;
        for conn in inner.producers.scan_expired(now, timeout) {
            conn.close();
        }
        let membership = inner.consumers.scan_expired(now, timeout);
        inner.apply_membership(membership);
    }
}
