//! The push consumer (RocketMQ's `DefaultMQPushConsumer`): the application registers a listener
//! and the consumer pulls, caches and delivers messages itself.
//!
//! Per assigned queue there is a process queue (the pulled, not yet consumed messages by
//! offset) and a pull task that long-polls the broker, holds back while the cache is full, and
//! hands messages to the consume service:
//!
//! * concurrent ([`MessageListenerConcurrently`]): batches run on tokio tasks, at most
//!   `consume_thread_max` listener calls at once over all queues; the queue's offset moves to
//!   the smallest offset still cached. Failed messages go back to the broker
//!   (CONSUMER_SEND_MSG_BACK, else straight to `%RETRY%<group>`) and come back through the
//!   retry topic, which clustering consumers subscribe to automatically.
//! * orderly ([`MessageListenerOrderly`]): a queue is consumed by one task, one batch at a
//!   time, in offset order, and (clustering) only while this client holds the queue's lock on
//!   the broker (LOCK_BATCH_MQ, renewed every 20 s).
//!
//! Rebalance runs on the shared [`ClientInstance`] every 20 s and at once when a broker reports
//! that the group changed. A queue that leaves the assignment is handed over cleanly: no new
//! listener call starts, running ones finish (up to a bounded wait), then its offset is
//! committed and (orderly) its lock released, so the next owner starts where this one stopped.

mod concurrent;
mod listener;
mod orderly;
mod process_queue;
mod puller;
mod rebalance;
mod retry;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use apogee_protocol::body::{
    ConsumeFromWhere, ConsumeType, ConsumerData, MessageModel, MessageQueue, SubscriptionData,
};
use apogee_protocol::json::WireEnum;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

pub use listener::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeOrderlyContext,
    ConsumeOrderlyStatus, ListenerFuture, MessageListener, MessageListenerConcurrently,
    MessageListenerOrderly,
};
pub(crate) use process_queue::ProcessQueue;

use super::allocate::{AllocateStrategy, Averagely};
use super::offset_store::{LocalFileOffsetStore, OffsetStore, ReadOffsetType, RemoteOffsetStore};
use super::pull::PullApi;
use super::subscription::{build_subscription, MessageSelector};
use super::{
    ConsumerRunningInfo, PROP_CLIENT_VERSION, PROP_CONSUMER_START_TIMESTAMP, PROP_CONSUME_ORDERLY,
    PROP_CONSUME_TYPE, PROP_NAMESERVER_ADDR,
};
use crate::config::{split_name_servers, ClientConfig};
use crate::error::{ClientError, Result};
use crate::instance::{BoxFuture, ClientInstance, ConsumerHook};
use crate::namespace;
use crate::producer::Producer;
use crate::util::{lock, now_ms};

/// Push consumer settings, with RocketMQ's defaults (`DefaultMQPushConsumer`).
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Clustering (the group shares the queues; offsets on brokers; failed messages retried
    /// through the retry topic) or broadcasting (every consumer reads everything; offsets in a
    /// local file; failed messages are dropped after a warning). Default: clustering.
    pub message_model: MessageModel,
    /// Where a queue starts when the group has no committed offset. Default: last offset.
    pub consume_from_where: ConsumeFromWhere,
    /// The time for [`ConsumeFromWhere::ConsumeFromTimestamp`], ms since the epoch. Default:
    /// 30 minutes before the options were made.
    pub consume_timestamp_ms: i64,
    /// Accepted for RocketMQ compatibility (1..=1000, at most `consume_thread_max`). RocketMQ:
    /// 20.
    pub consume_thread_min: usize,
    /// At most this many listener calls run at once (1..=1000). RocketMQ: 20.
    pub consume_thread_max: usize,
    /// Messages per listener call (1..=1024). RocketMQ: 1.
    pub consume_message_batch_max_size: usize,
    /// Messages per pull (1..=1024; brokers cap it, 32 by default). RocketMQ: 32.
    pub pull_batch_size: i32,
    /// Pause after each pull that found messages. RocketMQ: 0.
    pub pull_interval_ms: u64,
    /// A queue stops pulling while it caches more than this many messages (1..=65535).
    /// RocketMQ: 1000.
    pub pull_threshold_for_queue: usize,
    /// A queue stops pulling while its cached bodies exceed this many MiB (1..=1024).
    /// RocketMQ: 100.
    pub pull_threshold_size_for_queue_mib: usize,
    /// Concurrent consumption: a queue stops pulling while the offsets it caches span more
    /// than this (1..=65535), so that one slow message cannot hold the committed offset back
    /// arbitrarily far. RocketMQ: 2000.
    pub consume_concurrently_max_span: i64,
    /// Redeliveries before a message goes to the dead-letter queue; -1 means 16 for concurrent
    /// and unlimited for orderly consumption, as in RocketMQ. RocketMQ: -1.
    pub max_reconsume_times: i32,
    /// How long an orderly queue pauses after
    /// [`ConsumeOrderlyStatus::SuspendCurrentQueueAMoment`] (10..=30 000 ms). RocketMQ: 1 s.
    pub suspend_current_queue_time_ms: u64,
    /// A concurrent listener call running longer is abandoned (its future dropped) and its
    /// batch retried. RocketMQ: 15 min.
    pub consume_timeout_ms: u64,
    /// How long a broker may hold a pull with nothing to return. RocketMQ: 15 s.
    pub broker_suspend_max_ms: u64,
    /// Timeout of a pull the broker may hold. RocketMQ: 30 s.
    pub consumer_timeout_when_suspend_ms: u64,
    /// Pause after a failed pull. RocketMQ: 3 s.
    pub pull_delay_on_exception_ms: u64,
    /// Send the subscription with every pull (FLAG_SUBSCRIPTION) instead of relying on the one
    /// registered by heartbeat. RocketMQ: false.
    pub post_subscription_when_pull: bool,
    /// Orderly clustering: how often held queue locks are renewed. RocketMQ: 20 s.
    pub lock_interval_ms: u64,
    /// How long shutdown waits for running listener calls before committing offsets. Default
    /// 5 s. (A rebalance handover waits at most 1 s, as RocketMQ's orderly consumer does.)
    pub await_termination_ms: u64,
    /// Root of the broadcasting offset files (default `~/.rocketmq_offsets`).
    pub local_offset_store_dir: Option<PathBuf>,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::ConsumeFromLastOffset,
            consume_timestamp_ms: now_ms() - 30 * 60 * 1000,
            consume_thread_min: 20,
            consume_thread_max: 20,
            consume_message_batch_max_size: 1,
            pull_batch_size: 32,
            pull_interval_ms: 0,
            pull_threshold_for_queue: 1_000,
            pull_threshold_size_for_queue_mib: 100,
            consume_concurrently_max_span: 2_000,
            max_reconsume_times: -1,
            suspend_current_queue_time_ms: 1_000,
            consume_timeout_ms: 15 * 60 * 1000,
            broker_suspend_max_ms: 15_000,
            consumer_timeout_when_suspend_ms: 30_000,
            pull_delay_on_exception_ms: 3_000,
            post_subscription_when_pull: false,
            lock_interval_ms: 20_000,
            await_termination_ms: 5_000,
            local_offset_store_dir: None,
        }
    }
}

impl PushOptions {
    /// RocketMQ's `checkConfig` ranges.
    fn validate(&self) -> Result<()> {
        fn check(ok: bool, what: &str) -> Result<()> {
            if ok {
                Ok(())
            } else {
                Err(ClientError::InvalidArgument(what.to_owned()))
            }
        }
        check(
            (1..=1000).contains(&self.consume_thread_min),
            "consume_thread_min must be in [1, 1000]",
        )?;
        check(
            (1..=1000).contains(&self.consume_thread_max),
            "consume_thread_max must be in [1, 1000]",
        )?;
        check(
            self.consume_thread_min <= self.consume_thread_max,
            "consume_thread_min must not exceed consume_thread_max",
        )?;
        check(
            (1..=65535).contains(&self.consume_concurrently_max_span),
            "consume_concurrently_max_span must be in [1, 65535]",
        )?;
        check(
            (1..=65535).contains(&self.pull_threshold_for_queue),
            "pull_threshold_for_queue must be in [1, 65535]",
        )?;
        check(
            (1..=1024).contains(&self.pull_threshold_size_for_queue_mib),
            "pull_threshold_size_for_queue_mib must be in [1, 1024]",
        )?;
        check(
            self.pull_interval_ms <= 65535,
            "pull_interval_ms must be in [0, 65535]",
        )?;
        check(
            (1..=1024).contains(&self.consume_message_batch_max_size),
            "consume_message_batch_max_size must be in [1, 1024]",
        )?;
        check(
            (1..=1024).contains(&self.pull_batch_size),
            "pull_batch_size must be in [1, 1024]",
        )?;
        check(
            self.max_reconsume_times >= -1,
            "max_reconsume_times must be -1 or more",
        )?;
        check(
            self.consume_timeout_ms > 0,
            "consume_timeout_ms must be positive",
        )
    }
}

/// Builds a [`PushConsumer`].
pub struct PushConsumerBuilder {
    group: String,
    config: ClientConfig,
    instance: Option<ClientInstance>,
    namespace: Option<String>,
    options: PushOptions,
    strategy: Arc<dyn AllocateStrategy>,
    subscriptions: Vec<(String, MessageSelector)>,
    listener: Option<MessageListener>,
}

impl fmt::Debug for PushConsumerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushConsumerBuilder")
            .field("group", &self.group)
            .field("name_servers", &self.config.name_server_addrs)
            .field("namespace", &self.namespace)
            .field("options", &self.options)
            .field("strategy", &self.strategy.name())
            .field("subscriptions", &self.subscriptions)
            .field("listener", &self.listener)
            .finish()
    }
}

impl PushConsumerBuilder {
    common_consumer_setters!();

    pub fn consume_thread_min(mut self, n: usize) -> Self {
        self.options.consume_thread_min = n;
        self
    }

    /// At most `n` listener calls at once.
    pub fn consume_thread_max(mut self, n: usize) -> Self {
        self.options.consume_thread_max = n;
        self
    }

    pub fn consume_message_batch_max_size(mut self, n: usize) -> Self {
        self.options.consume_message_batch_max_size = n;
        self
    }

    pub fn pull_batch_size(mut self, n: i32) -> Self {
        self.options.pull_batch_size = n;
        self
    }

    pub fn pull_interval(mut self, interval: Duration) -> Self {
        self.options.pull_interval_ms = duration_ms(interval);
        self
    }

    pub fn pull_threshold_for_queue(mut self, n: usize) -> Self {
        self.options.pull_threshold_for_queue = n;
        self
    }

    pub fn pull_threshold_size_for_queue_mib(mut self, mib: usize) -> Self {
        self.options.pull_threshold_size_for_queue_mib = mib;
        self
    }

    pub fn consume_concurrently_max_span(mut self, span: i64) -> Self {
        self.options.consume_concurrently_max_span = span;
        self
    }

    pub fn max_reconsume_times(mut self, times: i32) -> Self {
        self.options.max_reconsume_times = times;
        self
    }

    pub fn suspend_current_queue_time(mut self, d: Duration) -> Self {
        self.options.suspend_current_queue_time_ms = duration_ms(d);
        self
    }

    pub fn consume_timeout(mut self, d: Duration) -> Self {
        self.options.consume_timeout_ms = duration_ms(d);
        self
    }

    /// How long a broker may hold a pull with nothing to return; the pull's own timeout
    /// becomes this plus 15 s.
    pub fn broker_suspend_max(mut self, d: Duration) -> Self {
        self.options.broker_suspend_max_ms = duration_ms(d);
        self.options.consumer_timeout_when_suspend_ms =
            self.options.broker_suspend_max_ms.saturating_add(15_000);
        self
    }

    pub fn pull_delay_on_exception(mut self, d: Duration) -> Self {
        self.options.pull_delay_on_exception_ms = duration_ms(d);
        self
    }

    pub fn lock_interval(mut self, d: Duration) -> Self {
        self.options.lock_interval_ms = duration_ms(d);
        self
    }

    pub fn await_termination(mut self, d: Duration) -> Self {
        self.options.await_termination_ms = duration_ms(d);
        self
    }

    pub fn local_offset_store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.options.local_offset_store_dir = Some(dir.into());
        self
    }

    /// All options at once.
    pub fn options(mut self, options: PushOptions) -> Self {
        self.options = options;
        self
    }

    /// Subscribes `topic` with a tag expression (`"*"`, `"TagA || TagB"`) or a
    /// [`MessageSelector`].
    pub fn subscribe(
        mut self,
        topic: impl Into<String>,
        selector: impl Into<MessageSelector>,
    ) -> Self {
        self.subscriptions.push((topic.into(), selector.into()));
        self
    }

    /// The listener (required).
    pub fn register_listener(mut self, listener: MessageListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// A concurrent listener (see [`MessageListenerConcurrently`]).
    pub fn register_concurrently(self, listener: impl MessageListenerConcurrently) -> Self {
        self.register_listener(MessageListener::concurrently(listener))
    }

    /// An orderly listener (see [`MessageListenerOrderly`]).
    pub fn register_orderly(self, listener: impl MessageListenerOrderly) -> Self {
        self.register_listener(MessageListener::orderly(listener))
    }

    /// Joins (or creates) the client instance, registers the group, sends a heartbeat and takes
    /// the first assignment. Must be called inside a tokio runtime.
    pub async fn start(self) -> Result<PushConsumer> {
        namespace::validate_group(&self.group).map_err(ClientError::InvalidArgument)?;
        if self.group == DEFAULT_CONSUMER_GROUP {
            return Err(ClientError::InvalidArgument(
                "the consumer group must be set (not DEFAULT_CONSUMER)".into(),
            ));
        }
        self.options.validate()?;
        let listener = self.listener.ok_or_else(|| {
            ClientError::InvalidArgument("a message listener must be registered".into())
        })?;
        let options = self.options;
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
        let retry_topic = namespace::retry_topic(self.namespace.as_deref(), &self.group);
        let user_retry_topic = namespace::unwrap(self.namespace.as_deref(), &retry_topic);
        let mut subscriptions = BTreeMap::new();
        for (topic, selector) in &self.subscriptions {
            namespace::validate_topic(topic).map_err(ClientError::InvalidArgument)?;
            let wire_topic = namespace::wrap(self.namespace.as_deref(), topic);
            let sub = build_subscription(&wire_topic, selector, now_ms())?;
            subscriptions.insert(wire_topic, sub);
        }
        if options.message_model == MessageModel::Clustering {
            let sub = build_subscription(&retry_topic, &MessageSelector::all(), now_ms())?;
            subscriptions.insert(retry_topic.clone(), sub);
        }
        let permits = Arc::new(Semaphore::new(options.consume_thread_max));
        let pull_api = PullApi::new(instance.clone(), wire_group.clone(), self.namespace.clone());
        let fallback = Producer::internal(instance.clone());
        let inner = Arc::new_cyclic(|weak| PushInner {
            weak: weak.clone(),
            group: self.group,
            wire_group: wire_group.clone(),
            namespace: self.namespace,
            instance: instance.clone(),
            options,
            strategy: self.strategy,
            listener,
            pull_api,
            store,
            fallback,
            retry_topic,
            user_retry_topic,
            subscriptions: Mutex::new(subscriptions),
            queues: Mutex::new(HashMap::new()),
            permits,
            rebalance_lock: tokio::sync::Mutex::new(()),
            shut_down: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            started_ms: now_ms(),
        });
        let as_hook: Arc<dyn ConsumerHook> = inner.clone();
        instance.register_consumer(Arc::downgrade(&as_hook), &wire_group)?;
        let consumer = PushConsumer {
            guard: Arc::new(DropGuard {
                inner: Arc::downgrade(&inner),
            }),
            inner,
        };
        if consumer.inner.orderly_clustering() {
            consumer.inner.start_lock_loop();
        }
        consumer.inner.after_subscription_change().await;
        debug!(group = %wire_group, client_id = %instance.client_id(), "push consumer started");
        Ok(consumer)
    }
}

/// RocketMQ's `getMaxReconsumeTimes`: -1 is 16 for concurrent, unlimited for orderly
/// consumption.
fn effective_max_reconsume_times(configured: i32, orderly: bool) -> i32 {
    match configured {
        -1 if orderly => i32::MAX,
        -1 => 16,
        n => n,
    }
}

/// Java's placeholder group, which a real consumer may not use.
const DEFAULT_CONSUMER_GROUP: &str = "DEFAULT_CONSUMER";

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A consumer that delivers messages to a listener. Cheap to clone; when the last clone is
/// dropped without [`shutdown`](Self::shutdown), pulling and consuming stop at once (offsets
/// consumed since the last periodic commit are not sent, and the group is not unregistered).
///
/// ```no_run
/// # async fn demo() -> Result<(), apogee_client::ClientError> {
/// use apogee_client::consumer::push::{ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus};
/// use apogee_client::{MessageExt, PushConsumer};
///
/// let consumer = PushConsumer::builder()
///     .group("PushGroup")
///     .name_server("127.0.0.1:9876")
///     .subscribe("TopicTest", "TagA || TagB")
///     .register_concurrently(|msgs: &[MessageExt], _ctx: &mut ConsumeConcurrentlyContext| {
///         for m in msgs {
///             println!("{} {:?}", m.msg_id, m.body);
///         }
///         ConsumeConcurrentlyStatus::ConsumeSuccess
///     })
///     .start()
///     .await?;
/// // ... later
/// consumer.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PushConsumer {
    inner: Arc<PushInner>,
    guard: Arc<DropGuard>,
}

impl fmt::Debug for PushConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushConsumer")
            .field("group", &self.inner.group)
            .field("client_id", &self.inner.instance.client_id())
            .field("listener", &self.inner.listener)
            .field("assigned", &lock(&self.inner.queues).len())
            .finish()
    }
}

/// One held queue's cache, as [`PushConsumer::queue_stats`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// The queue (topic without namespace).
    pub queue: MessageQueue,
    /// Messages pulled and not yet consumed.
    pub cached_msg_count: usize,
    /// Their body bytes.
    pub cached_msg_bytes: usize,
    /// The most messages this queue has cached at once.
    pub max_cached_msg_count: usize,
    /// Times pulling of this queue was held back by flow control.
    pub flow_control_times: u64,
    /// Orderly clustering: this client holds the queue's broker lock.
    pub locked: bool,
}

/// Stops everything when the last handle goes away (the tasks hold the consumer otherwise).
struct DropGuard {
    inner: Weak<PushInner>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.stop_everything();
        }
    }
}

impl PushConsumer {
    pub fn builder() -> PushConsumerBuilder {
        PushConsumerBuilder {
            group: DEFAULT_CONSUMER_GROUP.into(),
            config: ClientConfig::default(),
            instance: None,
            namespace: None,
            options: PushOptions::default(),
            strategy: Arc::new(Averagely),
            subscriptions: Vec::new(),
            listener: None,
        }
    }

    /// The group as configured (without namespace).
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    pub fn client_instance(&self) -> &ClientInstance {
        &self.inner.instance
    }

    pub fn options(&self) -> &PushOptions {
        &self.inner.options
    }

    /// Subscribes `topic` (replacing an earlier subscription of it) and rebalances at once.
    pub async fn subscribe(&self, topic: &str, selector: impl Into<MessageSelector>) -> Result<()> {
        self.inner.check_running()?;
        namespace::validate_topic(topic).map_err(ClientError::InvalidArgument)?;
        let wire_topic = namespace::wrap(self.inner.namespace.as_deref(), topic);
        let sub = build_subscription(&wire_topic, &selector.into(), now_ms())?;
        let changed = {
            let mut subs = lock(&self.inner.subscriptions);
            let changed = subs.get(&wire_topic).is_some_and(|old| {
                old.sub_string != sub.sub_string || old.expression_type != sub.expression_type
            });
            subs.insert(wire_topic.clone(), sub);
            changed
        };
        if changed {
            // Queues keep the subscription they were made with; hand them over and start anew.
            let _one_at_a_time = self.inner.rebalance_lock.lock().await;
            self.inner
                .set_assignment(
                    &|mq: &MessageQueue| mq.topic == wire_topic,
                    Vec::new(),
                    None,
                )
                .await;
        }
        self.inner.after_subscription_change().await;
        Ok(())
    }

    /// Stops consuming `topic`.
    pub async fn unsubscribe(&self, topic: &str) -> Result<()> {
        self.inner.check_running()?;
        let wire_topic = namespace::wrap(self.inner.namespace.as_deref(), topic);
        lock(&self.inner.subscriptions).remove(&wire_topic);
        {
            let _one_at_a_time = self.inner.rebalance_lock.lock().await;
            self.inner
                .set_assignment(
                    &|mq: &MessageQueue| mq.topic == wire_topic,
                    Vec::new(),
                    None,
                )
                .await;
        }
        self.inner.instance.send_heartbeat_to_all_brokers().await;
        Ok(())
    }

    /// Stops pulling (messages already cached are still consumed) until [`resume`](Self::resume).
    pub fn suspend(&self) {
        self.inner.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.inner.paused.store(false, Ordering::SeqCst);
    }

    /// The queues this consumer holds now (topics without namespace; the retry topic keeps its
    /// `%RETRY%` name), sorted.
    pub fn assignment(&self) -> Vec<MessageQueue> {
        let mut out: Vec<MessageQueue> = lock(&self.inner.queues)
            .iter()
            .filter(|(_, pq)| !pq.is_dropped())
            .map(|(mq, _)| self.inner.user_queue(mq))
            .collect();
        out.sort();
        out
    }

    /// The cache of every held queue, sorted by queue.
    pub fn queue_stats(&self) -> Vec<QueueStats> {
        let mut out: Vec<QueueStats> = lock(&self.inner.queues)
            .iter()
            .filter(|(_, pq)| !pq.is_dropped())
            .map(|(mq, pq)| {
                let s = pq.cache_stats();
                QueueStats {
                    queue: self.inner.user_queue(mq),
                    cached_msg_count: s.cached,
                    cached_msg_bytes: s.size_bytes,
                    max_cached_msg_count: s.high_water,
                    flow_control_times: pq.flow_control_times.load(Ordering::Relaxed),
                    locked: pq.is_locked(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        out
    }

    /// What GET_CONSUMER_RUNNING_INFO answers (`mqadmin consumerStatus`).
    pub fn running_info(&self) -> ConsumerRunningInfo {
        self.inner.running_info()
    }

    /// Runs a rebalance now instead of waiting for the next one.
    pub async fn rebalance_now(&self) {
        self.inner.rebalance().await;
    }

    /// The committed offset of `mq` as the broker (or the offsets file) has it.
    pub async fn committed(&self, mq: &MessageQueue) -> Result<Option<i64>> {
        self.inner.check_running()?;
        let wire = self.inner.wire_queue(mq);
        self.inner
            .store
            .read_offset(&wire, ReadOffsetType::ReadFromStore)
            .await
    }

    /// Stops pulling, lets running listener calls finish (up to `await_termination_ms`),
    /// commits every offset and waits for the brokers (or the offsets file), releases queue
    /// locks (orderly), unregisters the group and leaves the instance (shutting it down if
    /// nothing else uses it).
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        if inner.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        inner.stop_tasks();
        let held: Vec<Arc<ProcessQueue>> = lock(&inner.queues).values().cloned().collect();
        for pq in &held {
            pq.mark_dropped();
        }
        let deadline = Instant::now() + Duration::from_millis(inner.options.await_termination_ms);
        let mut guards = Vec::new();
        for pq in &held {
            if inner.is_orderly() {
                match tokio::time::timeout_at(deadline, pq.consume_lock.lock()).await {
                    Ok(g) => guards.push(g),
                    Err(_) => warn!(queue = %pq.mq, "orderly listener still running at shutdown"),
                }
            } else if !pq.wait_idle(deadline).await {
                warn!(queue = %pq.mq, "listener calls still running at shutdown");
            }
        }
        inner.permits.close();
        let mqs: Vec<MessageQueue> = held.iter().map(|pq| pq.mq.clone()).collect();
        if let Err(e) = inner.store.persist_all(&mqs, false).await {
            warn!(error = %e, "offsets not fully persisted at shutdown");
        }
        for pq in &held {
            pq.release();
        }
        if inner.orderly_clustering() {
            inner.unlock_queues(&held).await;
        }
        drop(guards);
        inner.instance.unregister_consumer(&inner.wire_group).await;
        let _ = &self.guard;
        debug!(group = %inner.wire_group, "push consumer shut down");
    }
}

pub(crate) struct PushInner {
    weak: Weak<PushInner>,
    group: String,
    wire_group: String,
    namespace: Option<String>,
    instance: ClientInstance,
    options: PushOptions,
    strategy: Arc<dyn AllocateStrategy>,
    listener: MessageListener,
    pull_api: PullApi,
    store: OffsetStore,
    /// Sends failed messages to the retry topic when the broker refuses CONSUMER_SEND_MSG_BACK.
    fallback: Producer,
    /// `%RETRY%<group>` as it travels.
    retry_topic: String,
    /// `%RETRY%<group>` as pulled messages name it (namespace removed).
    user_retry_topic: String,
    /// Wire topic -> subscription, the retry topic included (clustering).
    subscriptions: Mutex<BTreeMap<String, SubscriptionData>>,
    /// Held queues (wire topics). A dropped queue stays here until its handover completes.
    queues: Mutex<HashMap<MessageQueue, Arc<ProcessQueue>>>,
    /// One permit per running listener call (orderly: per queue being consumed).
    permits: Arc<Semaphore>,
    rebalance_lock: tokio::sync::Mutex<()>,
    shut_down: AtomicBool,
    paused: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    started_ms: i64,
}

impl PushInner {
    fn check_running(&self) -> Result<()> {
        if self.is_shut_down() {
            return Err(ClientError::Shutdown);
        }
        self.instance.check_running()
    }

    fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::SeqCst)
    }

    fn is_orderly(&self) -> bool {
        self.listener.is_orderly()
    }

    fn clustering(&self) -> bool {
        self.options.message_model == MessageModel::Clustering
    }

    fn orderly_clustering(&self) -> bool {
        self.is_orderly() && self.clustering()
    }

    fn max_reconsume_times(&self) -> i32 {
        effective_max_reconsume_times(self.options.max_reconsume_times, self.is_orderly())
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

    /// Queues held and not being handed over.
    fn active_queues(&self) -> Vec<MessageQueue> {
        lock(&self.queues)
            .iter()
            .filter(|(_, pq)| !pq.is_dropped())
            .map(|(mq, _)| mq.clone())
            .collect()
    }

    fn stop_tasks(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        for pq in lock(&self.queues).values() {
            pq.abort_task();
        }
    }

    /// What dropping the last handle does: everything stops, nothing is committed.
    fn stop_everything(&self) {
        self.shut_down.store(true, Ordering::SeqCst);
        self.stop_tasks();
        for pq in lock(&self.queues).values() {
            pq.mark_dropped();
        }
        self.permits.close();
    }

    /// Fetches the subscribed topics' routes, tells brokers about the subscriptions, and
    /// rebalances.
    async fn after_subscription_change(&self) {
        let topics: Vec<String> = lock(&self.subscriptions).keys().cloned().collect();
        for topic in &topics {
            if let Err(e) = self.instance.update_topic_route(topic).await {
                // The retry topic of a new group appears once the broker registers it.
                debug!(topic = %topic, error = %e, "no route for a subscribed topic yet");
            }
        }
        self.instance.send_heartbeat_to_all_brokers().await;
        self.rebalance().await;
    }

    fn running_info(&self) -> ConsumerRunningInfo {
        let mut info = ConsumerRunningInfo::default();
        info.properties.insert(
            PROP_CONSUME_TYPE.into(),
            WireEnum::name(ConsumeType::ConsumePassively).into(),
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
            .insert(PROP_CONSUME_ORDERLY.into(), self.is_orderly().to_string());
        info.subscription_set = lock(&self.subscriptions).values().cloned().collect();
        let offsets = self.store.offsets();
        for (mq, pq) in lock(&self.queues).iter() {
            let commit = offsets.get(mq).copied().unwrap_or(-1);
            info.mq_table.insert(mq.clone(), pq.info(commit));
        }
        info
    }
}

impl ConsumerHook for PushInner {
    fn wire_group(&self) -> &str {
        &self.wire_group
    }

    fn consumer_data(&self) -> ConsumerData {
        ConsumerData {
            consume_from_where: Some(self.options.consume_from_where),
            consume_type: ConsumeType::ConsumePassively,
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
        Box::pin(PushInner::rebalance(self))
    }

    fn persist_offsets(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.is_shut_down() {
                return;
            }
            let mqs = self.active_queues();
            if let Err(e) = self.store.persist_all(&mqs, true).await {
                debug!(error = %e, "periodic offset persist failed");
            }
        })
    }

    fn running_info(&self) -> ConsumerRunningInfo {
        PushInner::running_info(self)
    }

    /// An admin reset the group's offsets: held queues of `topic` are handed over, the new
    /// offsets stored, and the next rebalance takes the queues again from there.
    fn reset_offset(&self, topic: &str, offsets: Vec<(MessageQueue, i64)>) {
        let Some(inner) = self.weak.upgrade() else {
            return;
        };
        let topic = topic.to_owned();
        tokio::spawn(async move { inner.reset_offsets(&topic, offsets).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_rocketmq() {
        let o = PushOptions::default();
        assert_eq!(o.message_model, MessageModel::Clustering);
        assert_eq!(
            o.consume_from_where,
            ConsumeFromWhere::ConsumeFromLastOffset
        );
        assert_eq!((o.consume_thread_min, o.consume_thread_max), (20, 20));
        assert_eq!(o.consume_message_batch_max_size, 1);
        assert_eq!(o.pull_batch_size, 32);
        assert_eq!(o.pull_interval_ms, 0);
        assert_eq!(o.pull_threshold_for_queue, 1_000);
        assert_eq!(o.pull_threshold_size_for_queue_mib, 100);
        assert_eq!(o.consume_concurrently_max_span, 2_000);
        assert_eq!(o.max_reconsume_times, -1);
        assert_eq!(o.suspend_current_queue_time_ms, 1_000);
        assert_eq!(o.consume_timeout_ms, 15 * 60 * 1000);
        assert_eq!(o.broker_suspend_max_ms, 15_000);
        assert_eq!(o.consumer_timeout_when_suspend_ms, 30_000);
        assert_eq!(o.lock_interval_ms, 20_000);
        assert!(o.validate().is_ok());
    }

    #[test]
    fn out_of_range_options_are_refused_as_rocketmq_does() {
        let bad: Vec<(&str, PushOptions)> = vec![
            (
                "thread min 0",
                PushOptions {
                    consume_thread_min: 0,
                    ..Default::default()
                },
            ),
            (
                "min above max",
                PushOptions {
                    consume_thread_min: 30,
                    consume_thread_max: 20,
                    ..Default::default()
                },
            ),
            (
                "thread max 1001",
                PushOptions {
                    consume_thread_min: 1,
                    consume_thread_max: 1001,
                    ..Default::default()
                },
            ),
            (
                "span 0",
                PushOptions {
                    consume_concurrently_max_span: 0,
                    ..Default::default()
                },
            ),
            (
                "queue threshold 65536",
                PushOptions {
                    pull_threshold_for_queue: 65_536,
                    ..Default::default()
                },
            ),
            (
                "size threshold 1025 MiB",
                PushOptions {
                    pull_threshold_size_for_queue_mib: 1_025,
                    ..Default::default()
                },
            ),
            (
                "batch 0",
                PushOptions {
                    consume_message_batch_max_size: 0,
                    ..Default::default()
                },
            ),
            (
                "pull batch 1025",
                PushOptions {
                    pull_batch_size: 1_025,
                    ..Default::default()
                },
            ),
            (
                "pull interval 65536",
                PushOptions {
                    pull_interval_ms: 65_536,
                    ..Default::default()
                },
            ),
            (
                "reconsume -2",
                PushOptions {
                    max_reconsume_times: -2,
                    ..Default::default()
                },
            ),
        ];
        for (what, o) in bad {
            assert!(
                matches!(o.validate(), Err(ClientError::InvalidArgument(_))),
                "{what}"
            );
        }
    }

    #[test]
    fn minus_one_reconsume_times_is_16_concurrently_and_unlimited_orderly() {
        assert_eq!(effective_max_reconsume_times(-1, false), 16);
        assert_eq!(effective_max_reconsume_times(-1, true), i32::MAX);
        assert_eq!(effective_max_reconsume_times(3, false), 3);
        assert_eq!(effective_max_reconsume_times(0, true), 0);
    }

    #[tokio::test]
    async fn start_needs_a_group_and_a_listener() {
        let no_group = PushConsumer::builder()
            .name_server("127.0.0.1:1")
            .register_concurrently(
                |_: &[crate::MessageExt], _: &mut ConsumeConcurrentlyContext| {
                    ConsumeConcurrentlyStatus::ConsumeSuccess
                },
            )
            .start()
            .await
            .unwrap_err();
        assert!(
            matches!(no_group, ClientError::InvalidArgument(_)),
            "{no_group:?}"
        );
        let no_listener = PushConsumer::builder()
            .group("G")
            .name_server("127.0.0.1:1")
            .start()
            .await
            .unwrap_err();
        assert!(
            matches!(no_listener, ClientError::InvalidArgument(ref m) if m.contains("listener")),
            "{no_listener:?}"
        );
    }
}
