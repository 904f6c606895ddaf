//! The lite pull consumer (RocketMQ's `DefaultLitePullConsumer`): the application calls
//! [`LitePullConsumer::poll`]; behind it one task per assigned queue long-polls the broker and
//! hands batches over a bounded channel.
//!
//! Queues come from `subscribe` (the group's rebalance every 20 s and on
//! NOTIFY_CONSUMER_IDS_CHANGED) or from `assign`. Handover needs no locks: a queue that leaves
//! the assignment is marked dropped, its task stops, its consumed offset is committed, and any
//! batch of it still in the channel is discarded by `poll`. `seek` works the same way with a
//! new epoch for the queue. Flow control: a queue stops pulling while it has
//! `pull_threshold_for_queue` messages waiting in the channel, and the channel itself holds at
//! most `pull_threshold_for_all / pull_batch_size` batches.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use apogee_protocol::body::{
    ConsumeFromWhere, ConsumeType, ConsumerData, MessageModel, MessageQueue, SubscriptionData,
};
use apogee_protocol::codes::response_code;
use apogee_protocol::json::WireEnum;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::allocate::{AllocateStrategy, Averagely};
use super::offset_store::{LocalFileOffsetStore, OffsetStore, ReadOffsetType, RemoteOffsetStore};
use super::pull::{PullApi, PullRequest, PullStatus};
use super::subscription::{build_subscription, MessageSelector};
use super::{
    start_offset, ConsumerRunningInfo, ProcessQueueInfo, StartOffset, PROP_CLIENT_VERSION,
    PROP_CONSUMER_START_TIMESTAMP, PROP_CONSUME_ORDERLY, PROP_CONSUME_TYPE, PROP_NAMESERVER_ADDR,
};
use crate::config::{split_name_servers, ClientConfig};
use crate::error::{ClientError, Result};
use crate::instance::{BoxFuture, ClientInstance, ConsumerHook};
use crate::message::MessageExt;
use crate::namespace;
use crate::util::{lock, now_ms};

/// Pause between pulls of a paused queue (`PULL_TIME_DELAY_MILLS_WHEN_PAUSE`).
const PAUSED_DELAY_MS: u64 = 1_000;
/// Longest wait for room in a full queue before looking again (`..._WHEN_CACHE_FLOW_CONTROL`).
const FLOW_CONTROL_DELAY_MS: u64 = 50;
/// Pause after the broker answered FLOW_CONTROL (`..._WHEN_BROKER_FLOW_CONTROL`).
const BROKER_FLOW_CONTROL_DELAY_MS: u64 = 20;
/// Pause after the start offset could not be computed (`PULL_TIME_DELAY_MILLS_ON_EXCEPTION`).
const START_OFFSET_RETRY_MS: u64 = 3_000;
/// Shortest auto-commit interval (`MIN_AUTOCOMMIT_INTERVAL_MILLIS`).
const MIN_AUTO_COMMIT_INTERVAL_MS: u64 = 1_000;

/// Lite pull consumer settings, with RocketMQ's defaults.
#[derive(Debug, Clone)]
pub struct LiteOptions {
    /// Where a queue starts when the group has no committed offset. Default: last offset.
    pub consume_from_where: ConsumeFromWhere,
    /// The time for [`ConsumeFromWhere::ConsumeFromTimestamp`], ms since the epoch. Default:
    /// 30 minutes before the consumer was built.
    pub consume_timestamp_ms: i64,
    /// Clustering (queues shared by the group, offsets on brokers) or broadcasting (every
    /// consumer reads every queue, offsets in a local file).
    pub message_model: MessageModel,
    /// Messages per pull. RocketMQ: 10.
    pub pull_batch_size: i32,
    /// A queue stops pulling while this many of its messages wait to be polled. RocketMQ: 1000.
    pub pull_threshold_for_queue: usize,
    /// Messages waiting to be polled over all queues (bounds the channel). RocketMQ: 10000.
    pub pull_threshold_for_all: usize,
    /// Commit polled offsets automatically. RocketMQ: true.
    pub auto_commit: bool,
    /// How often auto-commit runs (at least 1 s). RocketMQ: 5 s.
    pub auto_commit_interval_ms: u64,
    /// How long a broker may hold a pull with nothing to return. RocketMQ: 20 s.
    pub broker_suspend_max_ms: u64,
    /// Timeout of a pull the broker may hold. RocketMQ: 30 s.
    pub consumer_timeout_when_suspend_ms: u64,
    /// Pause after a failed pull. RocketMQ: 1 s.
    pub pull_delay_on_exception_ms: u64,
    /// Root of the broadcasting offset files (default `~/.rocketmq_offsets`).
    pub local_offset_store_dir: Option<PathBuf>,
}

impl Default for LiteOptions {
    fn default() -> Self {
        Self {
            consume_from_where: ConsumeFromWhere::ConsumeFromLastOffset,
            consume_timestamp_ms: now_ms() - 30 * 60 * 1000,
            message_model: MessageModel::Clustering,
            pull_batch_size: 10,
            pull_threshold_for_queue: 1_000,
            pull_threshold_for_all: 10_000,
            auto_commit: true,
            auto_commit_interval_ms: 5_000,
            broker_suspend_max_ms: 20_000,
            consumer_timeout_when_suspend_ms: 30_000,
            pull_delay_on_exception_ms: 1_000,
            local_offset_store_dir: None,
        }
    }
}

/// Builds a [`LitePullConsumer`].
pub struct LitePullConsumerBuilder {
    group: String,
    config: ClientConfig,
    instance: Option<ClientInstance>,
    namespace: Option<String>,
    options: LiteOptions,
    strategy: Arc<dyn AllocateStrategy>,
    subscriptions: Vec<(String, MessageSelector)>,
}

impl fmt::Debug for LitePullConsumerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LitePullConsumerBuilder")
            .field("group", &self.group)
            .field("name_servers", &self.config.name_server_addrs)
            .field("namespace", &self.namespace)
            .field("options", &self.options)
            .field("strategy", &self.strategy.name())
            .field("subscriptions", &self.subscriptions)
            .finish()
    }
}

impl LitePullConsumerBuilder {
    common_consumer_setters!();

    pub fn pull_batch_size(mut self, n: i32) -> Self {
        self.options.pull_batch_size = n;
        self
    }

    pub fn pull_threshold_for_queue(mut self, n: usize) -> Self {
        self.options.pull_threshold_for_queue = n;
        self
    }

    pub fn pull_threshold_for_all(mut self, n: usize) -> Self {
        self.options.pull_threshold_for_all = n;
        self
    }

    pub fn auto_commit(mut self, on: bool) -> Self {
        self.options.auto_commit = on;
        self
    }

    pub fn auto_commit_interval(mut self, interval: Duration) -> Self {
        self.options.auto_commit_interval_ms =
            u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// How long the broker may hold a pull with nothing to return; the pull's own timeout
    /// becomes this plus 10 s unless set otherwise.
    pub fn broker_suspend_max(mut self, d: Duration) -> Self {
        self.options.broker_suspend_max_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.options.consumer_timeout_when_suspend_ms =
            self.options.broker_suspend_max_ms.saturating_add(10_000);
        self
    }

    pub fn local_offset_store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.options.local_offset_store_dir = Some(dir.into());
        self
    }

    /// All options at once.
    pub fn options(mut self, options: LiteOptions) -> Self {
        self.options = options;
        self
    }

    /// Subscribes `topic` from the start (same as calling `subscribe` after `start`).
    pub fn subscribe(
        mut self,
        topic: impl Into<String>,
        selector: impl Into<MessageSelector>,
    ) -> Self {
        self.subscriptions.push((topic.into(), selector.into()));
        self
    }

    /// Joins (or creates) the client instance, registers the group and, with subscriptions,
    /// sends a heartbeat and takes its first assignment. Must be called inside a tokio runtime.
    pub async fn start(self) -> Result<LitePullConsumer> {
        namespace::validate_group(&self.group).map_err(ClientError::InvalidArgument)?;
        let mut options = self.options;
        if options.pull_batch_size <= 0 {
            return Err(ClientError::InvalidArgument(
                "pull batch size must be positive".into(),
            ));
        }
        options.auto_commit_interval_ms = options
            .auto_commit_interval_ms
            .max(MIN_AUTO_COMMIT_INTERVAL_MS);
        let instance = match self.instance {
            Some(i) => {
                i.check_running()?;
                i
            }
            None => ClientInstance::get_or_create(self.config)?,
        };
        let wire_group = namespace::wrap(self.namespace.as_deref(), &self.group);
        let store = match options.message_model {
            MessageModel::Clustering => {
                OffsetStore::Remote(RemoteOffsetStore::new(instance.clone(), wire_group.clone()))
            }
            MessageModel::Broadcasting => {
                let local = LocalFileOffsetStore::new(
                    options.local_offset_store_dir.as_deref(),
                    instance.client_id(),
                    &wire_group,
                );
                local.load()?;
                OffsetStore::Local(local)
            }
        };
        let batch = usize::try_from(options.pull_batch_size).unwrap_or(1).max(1);
        let capacity = options.pull_threshold_for_all.div_ceil(batch).max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let pull_api = PullApi::new(instance.clone(), wire_group.clone(), self.namespace.clone());
        let inner = Arc::new_cyclic(|weak| LiteInner {
            weak: weak.clone(),
            group: self.group,
            wire_group: wire_group.clone(),
            namespace: self.namespace,
            instance: instance.clone(),
            next_auto_commit_ms: AtomicI64::new(now_ms() + auto_commit_delay(&options)),
            options,
            strategy: self.strategy,
            pull_api,
            store,
            mode: Mutex::new(Mode::Unset),
            subscriptions: Mutex::new(BTreeMap::new()),
            assign_expressions: Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            tx,
            rx: tokio::sync::Mutex::new(rx),
            rebalance_lock: tokio::sync::Mutex::new(()),
            shut_down: AtomicBool::new(false),
            shutdown_signal: Notify::new(),
            started_ms: now_ms(),
        });
        let as_hook: Arc<dyn ConsumerHook> = inner.clone();
        instance.register_consumer(Arc::downgrade(&as_hook), &wire_group)?;
        let consumer = LitePullConsumer {
            guard: Arc::new(DropGuard {
                inner: Arc::downgrade(&inner),
            }),
            inner,
        };
        for (topic, selector) in self.subscriptions {
            consumer.inner.add_subscription(&topic, &selector)?;
        }
        if !lock(&consumer.inner.subscriptions).is_empty() {
            consumer.inner.after_subscription_change().await;
        }
        debug!(group = %wire_group, client_id = %instance.client_id(), "lite pull consumer started");
        Ok(consumer)
    }
}

fn auto_commit_delay(options: &LiteOptions) -> i64 {
    i64::try_from(options.auto_commit_interval_ms).unwrap_or(i64::MAX)
}

/// A pull consumer the application drives with [`poll`](Self::poll). Cheap to clone; when the
/// last clone is dropped without [`shutdown`](Self::shutdown), its pulls stop (offsets not
/// committed since the last auto-commit are not sent).
///
/// ```no_run
/// # async fn demo() -> Result<(), apogee_client::ClientError> {
/// use std::time::Duration;
/// use apogee_client::LitePullConsumer;
///
/// let consumer = LitePullConsumer::builder()
///     .group("LitePullGroup")
///     .name_server("127.0.0.1:9876")
///     .subscribe("TopicTest", "TagA || TagB")
///     .start()
///     .await?;
/// loop {
///     for msg in consumer.poll(Duration::from_secs(1)).await? {
///         println!("{} {:?}", msg.queue_offset, msg.body);
///     }
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct LitePullConsumer {
    inner: Arc<LiteInner>,
    guard: Arc<DropGuard>,
}

impl fmt::Debug for LitePullConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LitePullConsumer")
            .field("group", &self.inner.group)
            .field("client_id", &self.inner.instance.client_id())
            .field("assigned", &lock(&self.inner.queues).len())
            .finish()
    }
}

/// Stops the pull tasks when the last handle goes away (they hold the consumer otherwise).
struct DropGuard {
    inner: Weak<LiteInner>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.shut_down.store(true, Ordering::SeqCst);
            inner.stop_all_tasks();
            inner.shutdown_signal.notify_waiters();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Unset,
    Subscribe,
    Assign,
}

struct LiteInner {
    weak: Weak<LiteInner>,
    group: String,
    wire_group: String,
    namespace: Option<String>,
    instance: ClientInstance,
    options: LiteOptions,
    strategy: Arc<dyn AllocateStrategy>,
    pull_api: PullApi,
    store: OffsetStore,
    mode: Mutex<Mode>,
    /// Wire topic -> subscription (subscribe mode).
    subscriptions: Mutex<BTreeMap<String, SubscriptionData>>,
    /// Wire topic -> filter for assigned queues (assign mode; default `*`).
    assign_expressions: Mutex<HashMap<String, SubscriptionData>>,
    /// Assigned queues (wire topics).
    queues: Mutex<HashMap<MessageQueue, Arc<QueueState>>>,
    tx: mpsc::Sender<ConsumeRequest>,
    rx: tokio::sync::Mutex<mpsc::Receiver<ConsumeRequest>>,
    next_auto_commit_ms: AtomicI64,
    rebalance_lock: tokio::sync::Mutex<()>,
    shut_down: AtomicBool,
    shutdown_signal: Notify,
    started_ms: i64,
}

/// One assigned queue.
struct QueueState {
    mq: MessageQueue,
    subscription: SubscriptionData,
    dropped: AtomicBool,
    paused: AtomicBool,
    flow: Mutex<QueueFlow>,
    /// Signalled when `poll` takes a batch of this queue.
    room: Notify,
    /// Offset after the last polled message; -1 before the first poll.
    consume_offset: AtomicI64,
    task: Mutex<Option<JoinHandle<()>>>,
    last_pull_ms: AtomicI64,
    last_consume_ms: AtomicI64,
}

/// State a pull task and `poll` share; the epoch changes on `seek`, which invalidates batches
/// and offsets of the previous epoch.
#[derive(Debug, Default)]
struct QueueFlow {
    epoch: u64,
    /// Messages of this epoch in the channel.
    cached: usize,
    pull_offset: Option<i64>,
    seek_offset: Option<i64>,
}

struct ConsumeRequest {
    queue: Arc<QueueState>,
    epoch: u64,
    messages: Vec<MessageExt>,
}

impl QueueState {
    fn new(mq: MessageQueue, subscription: SubscriptionData) -> Arc<Self> {
        Arc::new(Self {
            mq,
            subscription,
            dropped: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            flow: Mutex::new(QueueFlow::default()),
            room: Notify::new(),
            consume_offset: AtomicI64::new(-1),
            task: Mutex::new(None),
            last_pull_ms: AtomicI64::new(0),
            last_consume_ms: AtomicI64::new(0),
        })
    }

    fn abort_task(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// What a pull task does next.
enum Step {
    Again,
    Wait(Duration),
    WaitForRoom,
    Stop,
}

impl LitePullConsumer {
    pub fn builder() -> LitePullConsumerBuilder {
        LitePullConsumerBuilder {
            group: "DEFAULT_CONSUMER".into(),
            config: ClientConfig::default(),
            instance: None,
            namespace: None,
            options: LiteOptions::default(),
            strategy: Arc::new(Averagely),
            subscriptions: Vec::new(),
        }
    }

    /// The group as configured (without namespace).
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    pub fn client_instance(&self) -> &ClientInstance {
        &self.inner.instance
    }

    pub fn options(&self) -> &LiteOptions {
        &self.inner.options
    }

    /// Subscribes `topic` (replacing an earlier subscription of it) and rebalances at once.
    /// Not possible after [`assign`](Self::assign).
    pub async fn subscribe(&self, topic: &str, selector: impl Into<MessageSelector>) -> Result<()> {
        self.inner.check_running()?;
        self.inner.add_subscription(topic, &selector.into())?;
        self.inner.after_subscription_change().await;
        Ok(())
    }

    /// Stops consuming `topic`.
    pub async fn unsubscribe(&self, topic: &str) -> Result<()> {
        self.inner.check_running()?;
        let wire_topic = namespace::wrap(self.inner.namespace.as_deref(), topic);
        lock(&self.inner.subscriptions).remove(&wire_topic);
        self.inner
            .set_assignment(|mq| mq.topic != wire_topic, Vec::new())
            .await;
        self.inner.instance.send_heartbeat_to_all_brokers().await;
        Ok(())
    }

    /// Consumes exactly `queues` (topics without namespace), with no group rebalance. Not
    /// possible after [`subscribe`](Self::subscribe).
    pub async fn assign(&self, queues: impl IntoIterator<Item = MessageQueue>) -> Result<()> {
        self.inner.check_running()?;
        {
            let mut mode = lock(&self.inner.mode);
            if *mode == Mode::Subscribe {
                return Err(ClientError::IllegalState(
                    "subscribe and assign are mutually exclusive".into(),
                ));
            }
            *mode = Mode::Assign;
        }
        let ns = self.inner.namespace.clone();
        let wanted: Vec<MessageQueue> = queues
            .into_iter()
            .map(|q| {
                MessageQueue::new(
                    namespace::wrap(ns.as_deref(), &q.topic),
                    q.broker_name,
                    q.queue_id,
                )
            })
            .collect();
        let topics: BTreeSet<String> = wanted.iter().map(|q| q.topic.clone()).collect();
        for topic in &topics {
            if self.inner.instance.route_entry(topic).is_none() {
                self.inner.instance.update_topic_route(topic).await?;
            }
        }
        // Brokers learn the group from heartbeats; commits of an unknown group are refused.
        self.inner.instance.send_heartbeat_to_all_brokers().await;
        let mut with_subs = Vec::with_capacity(wanted.len());
        for mq in wanted {
            let sub = self.inner.assign_subscription(&mq.topic)?;
            with_subs.push((mq, sub));
        }
        self.inner.set_assignment(|_| true, with_subs).await;
        Ok(())
    }

    /// The filter used for queues of `topic` given to [`assign`](Self::assign) afterwards
    /// (default `*`).
    pub fn set_assign_filter(
        &self,
        topic: &str,
        selector: impl Into<MessageSelector>,
    ) -> Result<()> {
        let wire_topic = namespace::wrap(self.inner.namespace.as_deref(), topic);
        let sub = build_subscription(&wire_topic, &selector.into(), now_ms())?;
        lock(&self.inner.assign_expressions).insert(wire_topic, sub);
        Ok(())
    }

    /// The readable queues of `topic` (topics without namespace).
    pub async fn fetch_message_queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        self.inner.check_running()?;
        let wire_topic = namespace::wrap(self.inner.namespace.as_deref(), topic);
        let entry = self.inner.instance.update_topic_route(&wire_topic).await?;
        Ok(entry
            .subscribe
            .iter()
            .map(|q| MessageQueue::new(topic, q.broker_name.clone(), q.queue_id))
            .collect())
    }

    /// The queues this consumer holds now (topics without namespace), sorted.
    pub fn assignment(&self) -> Vec<MessageQueue> {
        let mut out: Vec<MessageQueue> = lock(&self.inner.queues)
            .keys()
            .map(|q| self.inner.user_queue(q))
            .collect();
        out.sort();
        out
    }

    /// Waits up to `timeout` for the next batch of one queue; an empty batch means the time
    /// ran out. Messages of one queue come in offset order. The offset after the batch counts
    /// as consumed (committed by auto-commit or [`commit_sync`](Self::commit_sync)).
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<MessageExt>> {
        self.inner.check_running()?;
        if self.inner.options.auto_commit {
            self.inner.maybe_auto_commit();
        }
        let deadline = Instant::now() + timeout;
        let stopped = self.inner.shutdown_signal.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        self.inner.check_running()?;
        let mut rx = tokio::select! {
            rx = self.inner.rx.lock() => rx,
            _ = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
            _ = &mut stopped => return Err(ClientError::Shutdown),
        };
        loop {
            let next = tokio::select! {
                next = rx.recv() => next,
                _ = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
                _ = &mut stopped => return Err(ClientError::Shutdown),
            };
            let Some(request) = next else {
                return Err(ClientError::Shutdown);
            };
            if let Some(messages) = self.inner.accept(request) {
                return Ok(messages);
            }
        }
    }

    /// Moves `mq` to `offset` (between its min and max offset): batches already fetched are
    /// discarded and pulling restarts there.
    pub async fn seek(&self, mq: &MessageQueue, offset: i64) -> Result<()> {
        self.inner.check_running()?;
        let q = self.inner.assigned_state(mq)?;
        let min = self.inner.instance.min_offset(&q.mq).await?;
        let max = self.inner.instance.max_offset(&q.mq).await?;
        if offset < min || offset > max {
            return Err(ClientError::InvalidArgument(format!(
                "seek offset {offset} is outside [{min}, {max}] of {mq}"
            )));
        }
        self.inner.reset_queue(&q, offset);
        Ok(())
    }

    /// Moves `mq` to its first retained message.
    pub async fn seek_to_begin(&self, mq: &MessageQueue) -> Result<()> {
        self.inner.check_running()?;
        let q = self.inner.assigned_state(mq)?;
        let min = self.inner.instance.min_offset(&q.mq).await?;
        self.inner.reset_queue(&q, min);
        Ok(())
    }

    /// Moves `mq` past its last message.
    pub async fn seek_to_end(&self, mq: &MessageQueue) -> Result<()> {
        self.inner.check_running()?;
        let q = self.inner.assigned_state(mq)?;
        let max = self.inner.instance.max_offset(&q.mq).await?;
        self.inner.reset_queue(&q, max);
        Ok(())
    }

    /// Stops pulling `queues` until [`resume`](Self::resume).
    pub fn pause(&self, queues: &[MessageQueue]) {
        self.inner.set_paused(queues, true);
    }

    pub fn resume(&self, queues: &[MessageQueue]) {
        self.inner.set_paused(queues, false);
    }

    /// Commits the offsets of everything polled so far and waits for the brokers (or the
    /// offsets file).
    pub async fn commit_sync(&self) -> Result<()> {
        self.inner.check_running()?;
        self.inner.commit_to_store();
        let assigned = self.inner.assigned_queues();
        self.inner.store.persist_all(&assigned, false).await
    }

    /// The committed offset of `mq` as the broker (or file) has it; `None` when there is none.
    pub async fn committed(&self, mq: &MessageQueue) -> Result<Option<i64>> {
        self.inner.check_running()?;
        let wire = self.inner.wire_queue(mq);
        self.inner
            .store
            .read_offset(&wire, ReadOffsetType::ReadFromStore)
            .await
    }

    /// Runs a rebalance now instead of waiting for the next one.
    pub async fn rebalance_now(&self) {
        self.inner.rebalance().await;
    }

    /// Commits polled offsets, stops every pull, unregisters the group from the brokers and
    /// leaves the instance (shutting it down if nothing else uses it).
    pub async fn shutdown(&self) {
        if self.inner.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.stop_all_tasks();
        self.inner.shutdown_signal.notify_waiters();
        self.inner.commit_to_store();
        let assigned = self.inner.assigned_queues();
        if let Err(e) = self.inner.store.persist_all(&assigned, false).await {
            warn!(error = %e, "offsets not fully persisted at shutdown");
        }
        self.inner
            .instance
            .unregister_consumer(&self.inner.wire_group)
            .await;
        let _ = &self.guard;
    }
}

impl LiteInner {
    fn check_running(&self) -> Result<()> {
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(ClientError::Shutdown);
        }
        self.instance.check_running()
    }

    fn wire_queue(&self, mq: &MessageQueue) -> MessageQueue {
        MessageQueue::new(
            namespace::wrap(self.namespace.as_deref(), &mq.topic),
            mq.broker_name.clone(),
            mq.queue_id,
        )
    }

    fn user_queue(&self, mq: &MessageQueue) -> MessageQueue {
        MessageQueue::new(
            namespace::unwrap(self.namespace.as_deref(), &mq.topic),
            mq.broker_name.clone(),
            mq.queue_id,
        )
    }

    fn assigned_state(&self, mq: &MessageQueue) -> Result<Arc<QueueState>> {
        let wire = self.wire_queue(mq);
        lock(&self.queues).get(&wire).cloned().ok_or_else(|| {
            ClientError::IllegalState(format!(
                "{mq} is not assigned to this consumer (it may be rebalancing)"
            ))
        })
    }

    fn assigned_queues(&self) -> Vec<MessageQueue> {
        lock(&self.queues).keys().cloned().collect()
    }

    fn add_subscription(&self, topic: &str, selector: &MessageSelector) -> Result<()> {
        namespace::validate_topic(topic).map_err(ClientError::InvalidArgument)?;
        {
            let mut mode = lock(&self.mode);
            if *mode == Mode::Assign {
                return Err(ClientError::IllegalState(
                    "subscribe and assign are mutually exclusive".into(),
                ));
            }
            *mode = Mode::Subscribe;
        }
        let wire_topic = namespace::wrap(self.namespace.as_deref(), topic);
        let sub = build_subscription(&wire_topic, selector, now_ms())?;
        let changed = {
            let mut subs = lock(&self.subscriptions);
            let changed = subs.get(&wire_topic).is_some_and(|old| {
                old.sub_string != sub.sub_string || old.expression_type != sub.expression_type
            });
            subs.insert(wire_topic.clone(), sub);
            changed
        };
        if changed {
            // Queues keep the subscription they were created with; start them afresh.
            for q in self.take_queues(|mq| mq.topic == wire_topic) {
                q.dropped.store(true, Ordering::SeqCst);
                q.abort_task();
                let offset = q.consume_offset.load(Ordering::SeqCst);
                if offset >= 0 {
                    self.store.update_offset(&q.mq, offset, false);
                }
            }
        }
        Ok(())
    }

    /// Fetches the subscribed topics' routes, tells brokers about the subscription, and
    /// rebalances.
    async fn after_subscription_change(&self) {
        let topics: Vec<String> = lock(&self.subscriptions).keys().cloned().collect();
        for topic in &topics {
            if let Err(e) = self.instance.update_topic_route(topic).await {
                warn!(topic = %topic, error = %e, "cannot fetch the route of a subscribed topic");
            }
        }
        self.instance.send_heartbeat_to_all_brokers().await;
        self.rebalance().await;
    }

    fn assign_subscription(&self, wire_topic: &str) -> Result<SubscriptionData> {
        if let Some(sub) = lock(&self.assign_expressions).get(wire_topic) {
            return Ok(sub.clone());
        }
        build_subscription(wire_topic, &MessageSelector::all(), now_ms())
    }

    fn take_queues(&self, mut pick: impl FnMut(&MessageQueue) -> bool) -> Vec<Arc<QueueState>> {
        let mut queues = lock(&self.queues);
        let keys: Vec<MessageQueue> = queues.keys().filter(|mq| pick(mq)).cloned().collect();
        keys.iter().filter_map(|k| queues.remove(k)).collect()
    }

    /// Makes the queues `in_scope` selects exactly `wanted`: queues in scope but not wanted are
    /// dropped (their consumed offsets committed), wanted queues not yet held start pulling.
    async fn set_assignment(
        &self,
        in_scope: impl Fn(&MessageQueue) -> bool,
        wanted: Vec<(MessageQueue, SubscriptionData)>,
    ) {
        let wanted_set: HashSet<MessageQueue> = wanted.iter().map(|(q, _)| q.clone()).collect();
        let removed = self.take_queues(|mq| in_scope(mq) && !wanted_set.contains(mq));
        let mut added: Vec<Arc<QueueState>> = Vec::new();
        {
            let mut queues = lock(&self.queues);
            for (mq, sub) in wanted {
                if let Entry::Vacant(slot) = queues.entry(mq) {
                    let q = QueueState::new(slot.key().clone(), sub);
                    slot.insert(Arc::clone(&q));
                    added.push(q);
                }
            }
        }
        for q in removed {
            self.drop_queue(&q).await;
        }
        for q in &added {
            debug!(queue = %q.mq, "queue assigned");
            self.start_task(q);
        }
    }

    /// Stops a queue that left the assignment and commits what was polled from it, waiting for
    /// the broker so that the next owner starts where this one stopped.
    async fn drop_queue(&self, q: &QueueState) {
        q.dropped.store(true, Ordering::SeqCst);
        q.abort_task();
        let offset = q.consume_offset.load(Ordering::SeqCst);
        if offset >= 0 {
            self.store.update_offset(&q.mq, offset, false);
            if let Err(e) = self.store.persist(&q.mq).await {
                warn!(queue = %q.mq, error = %e, "offset of a dropped queue not persisted");
            }
        }
        self.store.remove_offset(&q.mq);
        debug!(queue = %q.mq, "queue dropped");
    }

    fn start_task(&self, q: &Arc<QueueState>) {
        if self.shut_down.load(Ordering::SeqCst) || q.dropped.load(Ordering::SeqCst) {
            return;
        }
        let epoch = lock(&q.flow).epoch;
        let task = tokio::spawn(pull_loop(self.weak.clone(), Arc::clone(q), epoch));
        if let Some(old) = lock(&q.task).replace(task) {
            old.abort();
        }
    }

    fn stop_all_tasks(&self) {
        for q in lock(&self.queues).values() {
            q.abort_task();
        }
    }

    /// Restarts `q` at `offset` in a new epoch.
    fn reset_queue(&self, q: &Arc<QueueState>, offset: i64) {
        q.abort_task();
        {
            let mut flow = lock(&q.flow);
            flow.epoch += 1;
            flow.cached = 0;
            flow.pull_offset = None;
            flow.seek_offset = Some(offset);
        }
        q.consume_offset.store(offset, Ordering::SeqCst);
        q.room.notify_one();
        self.start_task(q);
    }

    fn set_paused(&self, queues: &[MessageQueue], paused: bool) {
        let held = lock(&self.queues);
        for mq in queues {
            if let Some(q) = held.get(&self.wire_queue(mq)) {
                q.paused.store(paused, Ordering::SeqCst);
            }
        }
    }

    /// Takes a batch from the channel: stale (dropped queue or old epoch) batches give `None`.
    fn accept(&self, request: ConsumeRequest) -> Option<Vec<MessageExt>> {
        let q = &request.queue;
        {
            let mut flow = lock(&q.flow);
            if flow.epoch != request.epoch {
                return None;
            }
            flow.cached = flow.cached.saturating_sub(request.messages.len());
        }
        q.room.notify_one();
        if q.dropped.load(Ordering::SeqCst) {
            return None;
        }
        if let Some(last) = request.messages.last() {
            q.consume_offset
                .fetch_max(last.queue_offset.saturating_add(1), Ordering::SeqCst);
        }
        q.last_consume_ms.store(now_ms(), Ordering::Relaxed);
        Some(request.messages)
    }

    /// Copies every queue's consumed offset into the offset store.
    fn commit_to_store(&self) {
        for q in lock(&self.queues).values() {
            let offset = q.consume_offset.load(Ordering::SeqCst);
            if offset >= 0 && !q.dropped.load(Ordering::SeqCst) {
                self.store.update_offset(&q.mq, offset, false);
            }
        }
    }

    fn maybe_auto_commit(&self) {
        let now = now_ms();
        let due = self.next_auto_commit_ms.load(Ordering::SeqCst);
        if now >= due
            && self
                .next_auto_commit_ms
                .compare_exchange(
                    due,
                    now + auto_commit_delay(&self.options),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
        {
            self.commit_to_store();
        }
    }

    async fn rebalance(&self) {
        if self.shut_down.load(Ordering::SeqCst) {
            return;
        }
        let _one_at_a_time = self.rebalance_lock.lock().await;
        if *lock(&self.mode) != Mode::Subscribe {
            return;
        }
        let subs: Vec<(String, SubscriptionData)> = lock(&self.subscriptions)
            .iter()
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect();
        for (topic, sub) in &subs {
            let entry = match self.instance.route_entry(topic) {
                Some(e) => e,
                None => match self.instance.update_topic_route(topic).await {
                    Ok(e) => e,
                    Err(e) => {
                        debug!(topic = %topic, error = %e, "rebalance: no route");
                        continue;
                    }
                },
            };
            let mut all: Vec<MessageQueue> = entry.subscribe.to_vec();
            all.sort();
            let mine = match self.options.message_model {
                MessageModel::Broadcasting => all,
                MessageModel::Clustering => {
                    let mut ids = match self
                        .instance
                        .consumer_id_list(topic, &self.wire_group)
                        .await
                    {
                        Ok(ids) if !ids.is_empty() => ids,
                        Ok(_) => continue,
                        Err(e) => {
                            debug!(topic = %topic, error = %e, "rebalance: no consumer list");
                            continue;
                        }
                    };
                    ids.sort();
                    ids.dedup();
                    self.strategy
                        .allocate(&self.wire_group, self.instance.client_id(), &all, &ids)
                }
            };
            let wanted = mine.into_iter().map(|mq| (mq, sub.clone())).collect();
            self.set_assignment(|mq| mq.topic == *topic, wanted).await;
        }
        let topics: HashSet<&String> = subs.iter().map(|(t, _)| t).collect();
        self.set_assignment(|mq| !topics.contains(&mq.topic), Vec::new())
            .await;
    }

    /// Where `mq` starts: its committed offset, else the consume-from-where rule.
    async fn compute_start(&self, mq: &MessageQueue) -> Result<i64> {
        let committed = self
            .store
            .read_offset(mq, ReadOffsetType::MemoryFirstThenStore)
            .await?;
        match start_offset(
            self.options.consume_from_where,
            committed,
            namespace::is_retry_topic(&mq.topic),
            self.options.consume_timestamp_ms,
        ) {
            StartOffset::At(o) => Ok(o),
            StartOffset::MaxOffset => self.instance.max_offset(mq).await,
            StartOffset::Timestamp(t) => self.instance.search_offset(mq, t).await,
        }
    }

    /// The offset of the next pull of `q` in `epoch`; `None` when the epoch is over.
    async fn next_pull_offset(&self, q: &QueueState, epoch: u64) -> Result<Option<i64>> {
        {
            let mut flow = lock(&q.flow);
            if flow.epoch != epoch {
                return Ok(None);
            }
            if let Some(seek) = flow.seek_offset.take() {
                flow.pull_offset = Some(seek);
                return Ok(Some(seek));
            }
            if let Some(p) = flow.pull_offset {
                return Ok(Some(p));
            }
        }
        let start = self.compute_start(&q.mq).await?;
        let mut flow = lock(&q.flow);
        if flow.epoch != epoch {
            return Ok(None);
        }
        Ok(Some(*flow.pull_offset.get_or_insert(start)))
    }

    async fn pull_once(&self, q: &Arc<QueueState>, epoch: u64) -> Step {
        if self.shut_down.load(Ordering::SeqCst) || q.dropped.load(Ordering::SeqCst) {
            return Step::Stop;
        }
        if q.paused.load(Ordering::SeqCst) {
            return Step::Wait(Duration::from_millis(PAUSED_DELAY_MS));
        }
        {
            let flow = lock(&q.flow);
            if flow.epoch != epoch {
                return Step::Stop;
            }
            if flow.cached >= self.options.pull_threshold_for_queue {
                return Step::WaitForRoom;
            }
        }
        let offset = match self.next_pull_offset(q, epoch).await {
            Ok(Some(o)) => o,
            Ok(None) => return Step::Stop,
            Err(e) => {
                warn!(queue = %q.mq, error = %e, "cannot compute the start offset");
                return Step::Wait(Duration::from_millis(START_OFFSET_RETRY_MS));
            }
        };
        q.last_pull_ms.store(now_ms(), Ordering::Relaxed);
        let request = PullRequest {
            mq: q.mq.clone(),
            subscription: q.subscription.clone(),
            offset,
            max_nums: self.options.pull_batch_size,
            max_bytes: None,
            commit_offset: None,
            suspend_timeout_ms: Some(self.options.broker_suspend_max_ms),
            send_subscription: true,
            lite: true,
            timeout: Duration::from_millis(self.options.consumer_timeout_when_suspend_ms),
        };
        match self.pull_api.pull(&request).await {
            Ok(result) => {
                if q.dropped.load(Ordering::SeqCst) {
                    return Step::Stop;
                }
                let found = result.status == PullStatus::Found && !result.messages.is_empty();
                {
                    let mut flow = lock(&q.flow);
                    if flow.epoch != epoch {
                        return Step::Stop;
                    }
                    if found {
                        flow.cached += result.messages.len();
                    }
                    flow.pull_offset = Some(result.next_begin_offset);
                }
                if result.status == PullStatus::OffsetIllegal {
                    warn!(queue = %q.mq, offset, next = result.next_begin_offset, "pull offset illegal, moving on");
                }
                if found {
                    let batch = ConsumeRequest {
                        queue: Arc::clone(q),
                        epoch,
                        messages: result.messages,
                    };
                    if self.tx.send(batch).await.is_err() {
                        return Step::Stop;
                    }
                }
                Step::Again
            }
            Err(e) => {
                debug!(queue = %q.mq, error = %e, "pull failed");
                let delay = if e.response_code() == Some(response_code::FLOW_CONTROL) {
                    BROKER_FLOW_CONTROL_DELAY_MS
                } else {
                    self.options.pull_delay_on_exception_ms
                };
                Step::Wait(Duration::from_millis(delay))
            }
        }
    }

    fn running_info(&self) -> ConsumerRunningInfo {
        let mut info = ConsumerRunningInfo::default();
        info.properties.insert(
            PROP_CONSUME_TYPE.into(),
            WireEnum::name(ConsumeType::ConsumeActively).into(),
        );
        info.properties.insert(
            PROP_CONSUMER_START_TIMESTAMP.into(),
            self.started_ms.to_string(),
        );
        info.properties.insert(
            PROP_NAMESERVER_ADDR.into(),
            self.instance.config().name_server_addrs.join(";"),
        );
        info.properties
            .insert(PROP_CLIENT_VERSION.into(), env!("CARGO_PKG_VERSION").into());
        info.properties
            .insert(PROP_CONSUME_ORDERLY.into(), "false".into());
        info.subscription_set = lock(&self.subscriptions).values().cloned().collect();
        let offsets = self.store.offsets();
        for (mq, q) in lock(&self.queues).iter() {
            let cached = lock(&q.flow).cached;
            info.mq_table.insert(
                mq.clone(),
                ProcessQueueInfo {
                    cached_msg_count: i64::try_from(cached).unwrap_or(i64::MAX),
                    commit_offset: offsets
                        .get(mq)
                        .copied()
                        .unwrap_or_else(|| q.consume_offset.load(Ordering::Relaxed)),
                    droped: q.dropped.load(Ordering::Relaxed),
                    last_pull_timestamp: q.last_pull_ms.load(Ordering::Relaxed),
                    last_consume_timestamp: q.last_consume_ms.load(Ordering::Relaxed),
                    ..Default::default()
                },
            );
        }
        info
    }
}

async fn pull_loop(weak: Weak<LiteInner>, q: Arc<QueueState>, epoch: u64) {
    loop {
        let room = q.room.notified();
        tokio::pin!(room);
        room.as_mut().enable();
        let step = {
            let Some(inner) = weak.upgrade() else { return };
            inner.pull_once(&q, epoch).await
        };
        match step {
            Step::Again => {}
            Step::Stop => return,
            Step::Wait(d) => tokio::time::sleep(d).await,
            Step::WaitForRoom => {
                tokio::select! {
                    _ = &mut room => {}
                    _ = tokio::time::sleep(Duration::from_millis(FLOW_CONTROL_DELAY_MS)) => {}
                }
            }
        }
    }
}

impl ConsumerHook for LiteInner {
    fn wire_group(&self) -> &str {
        &self.wire_group
    }

    fn consumer_data(&self) -> ConsumerData {
        ConsumerData {
            consume_from_where: Some(self.options.consume_from_where),
            consume_type: ConsumeType::ConsumeActively,
            group_name: self.wire_group.clone(),
            message_model: self.options.message_model,
            subscription_data_set: lock(&self.subscriptions).values().cloned().collect(),
            unit_mode: false,
        }
    }

    fn subscribed_topics(&self) -> Vec<String> {
        let mut topics: BTreeSet<String> = lock(&self.subscriptions).keys().cloned().collect();
        topics.extend(lock(&self.queues).keys().map(|q| q.topic.clone()));
        topics.into_iter().collect()
    }

    fn rebalance(&self) -> BoxFuture<'_, ()> {
        Box::pin(LiteInner::rebalance(self))
    }

    fn persist_offsets(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.shut_down.load(Ordering::SeqCst) {
                return;
            }
            if self.options.auto_commit {
                self.maybe_auto_commit();
            }
            let assigned = self.assigned_queues();
            if let Err(e) = self.store.persist_all(&assigned, true).await {
                debug!(error = %e, "periodic offset persist failed");
            }
        })
    }

    fn running_info(&self) -> ConsumerRunningInfo {
        LiteInner::running_info(self)
    }

    /// An admin reset the group's offsets: held queues of `topic` restart at the new offsets.
    fn reset_offset(&self, topic: &str, offsets: Vec<(MessageQueue, i64)>) {
        for (mq, offset) in offsets {
            if mq.topic != topic {
                continue;
            }
            self.store.update_offset(&mq, offset, false);
            let held = lock(&self.queues).get(&mq).cloned();
            if let Some(q) = held {
                self.reset_queue(&q, offset);
            }
        }
    }
}
