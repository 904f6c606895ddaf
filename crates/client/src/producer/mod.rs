//! The producer: sync, async, oneway, batch, ordered (selector) and transactional sends on a
//! shared [`ClientInstance`].
//!
//! A synchronous send picks a queue round-robin (avoiding the broker that just failed, and with
//! latency fault avoidance on, brokers that were slow or failing), and retries on another
//! broker after a transport failure or one of the response codes Java retries on.

mod request;
mod selector;
mod transaction;

use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use apogee_protocol::body::MessageQueue;
use apogee_protocol::codes::response_code;
use apogee_protocol::header::CheckTransactionStateRequestHeader;
use apogee_protocol::message::compression::CompressionType;
use apogee_protocol::message::{keys, OffsetMsgId};
use apogee_remoting::ConnectionHandle;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::{split_name_servers, ClientConfig};
use crate::error::{ClientError, Result};
use crate::fault::FaultStrategy;
use crate::instance::{ClientInstance, ProducerHook};
use crate::message::{Message, MessageExt, SendResult, SendStatus};
use crate::namespace::{self, AUTO_CREATE_TOPIC_KEY_TOPIC};
use crate::route::{default_route_for_new_topic, publish_info_from_route, TopicPublishInfo};
use crate::util::{lock, now_ms};

pub use request::{
    build_send_request, prepare_batch, prepare_message, process_send_response, send_header,
    PreparedMessage, WireOptions, DEFAULT_REGION_ID,
};
pub use selector::{JavaHashCode, QueueSelector, SelectByHash, SelectByRandom};
pub use transaction::{LocalTransactionState, TransactionListener, TransactionSendResult};

/// Check-backs waiting for the listener beyond this many are dropped (the broker asks again).
/// RocketMQ: `checkRequestHoldMax` = 2000.
const MAX_PENDING_CHECKS: usize = 2_000;

/// Producer settings, with RocketMQ's defaults.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// Overall time budget of one send, retries included. RocketMQ: 3 s.
    pub send_timeout_ms: u64,
    /// Extra attempts of a synchronous send on another broker. RocketMQ: 2.
    pub retry_times: u32,
    /// Also retry when the broker stored the message but reported a flush or replication
    /// timeout (this may duplicate it). RocketMQ: false.
    pub retry_another_broker_when_not_store_ok: bool,
    /// Latency-based fault avoidance (`sendLatencyFaultEnable`). RocketMQ: false.
    pub latency_fault_enabled: bool,
    /// What goes on the wire: compression, size limit, auto-create queue count.
    pub wire: WireOptions,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        Self {
            send_timeout_ms: 3_000,
            retry_times: 2,
            retry_another_broker_when_not_store_ok: false,
            latency_fault_enabled: false,
            wire: WireOptions::default(),
        }
    }
}

/// Builds a [`Producer`].
pub struct ProducerBuilder {
    group: String,
    config: ClientConfig,
    instance: Option<ClientInstance>,
    namespace: Option<String>,
    options: ProducerOptions,
    listener: Option<Arc<dyn TransactionListener>>,
}

impl fmt::Debug for ProducerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerBuilder")
            .field("group", &self.group)
            .field("name_servers", &self.config.name_server_addrs)
            .field("namespace", &self.namespace)
            .field("options", &self.options)
            .finish()
    }
}

impl ProducerBuilder {
    /// The producer group. Only transactional producers need it to be meaningful (the broker
    /// asks a producer of the group about open transactions).
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

    /// The instance name in the client id (default: the process id, so every producer and
    /// consumer of the process shares one instance).
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

    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.options.send_timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self
    }

    pub fn retry_times(mut self, times: u32) -> Self {
        self.options.retry_times = times;
        self
    }

    pub fn retry_another_broker_when_not_store_ok(mut self, on: bool) -> Self {
        self.options.retry_another_broker_when_not_store_ok = on;
        self
    }

    pub fn compress_over_bytes(mut self, bytes: usize) -> Self {
        self.options.wire.compress_over_bytes = bytes;
        self
    }

    pub fn compress_level(mut self, level: i32) -> Self {
        self.options.wire.compress_level = level;
        self
    }

    pub fn compression(mut self, compression: CompressionType) -> Self {
        self.options.wire.compression = compression;
        self
    }

    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.options.wire.max_message_bytes = bytes;
        self
    }

    pub fn default_topic_queue_nums(mut self, nums: i32) -> Self {
        self.options.wire.default_topic_queue_nums = nums;
        self
    }

    pub fn latency_fault_enabled(mut self, on: bool) -> Self {
        self.options.latency_fault_enabled = on;
        self
    }

    /// All options at once.
    pub fn options(mut self, options: ProducerOptions) -> Self {
        self.options = options;
        self
    }

    /// Makes this a transactional producer: the listener runs local transactions and answers
    /// the broker's check-backs.
    pub fn transaction_listener(mut self, listener: impl TransactionListener) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Joins (or creates) the client instance and registers the group. Must be called inside
    /// a tokio runtime.
    pub async fn start(self) -> Result<Producer> {
        namespace::validate_group(&self.group).map_err(ClientError::InvalidArgument)?;
        if self.options.wire.default_topic_queue_nums <= 0 {
            return Err(ClientError::InvalidArgument(
                "default topic queue nums must be positive".into(),
            ));
        }
        let instance = match self.instance {
            Some(i) => {
                i.check_running()?;
                i
            }
            None => ClientInstance::get_or_create(self.config)?,
        };
        let wire_group = namespace::wrap(self.namespace.as_deref(), &self.group);
        let inner = Arc::new(ProducerInner {
            group: self.group,
            wire_group: wire_group.clone(),
            namespace: self.namespace,
            fault: FaultStrategy::new(self.options.latency_fault_enabled),
            options: self.options,
            instance: instance.clone(),
            topics: Mutex::new(BTreeSet::new()),
            fallback: Mutex::new(HashMap::new()),
            listener: self.listener,
            pending_checks: Arc::new(AtomicUsize::new(0)),
            shut_down: AtomicBool::new(false),
        });
        let as_hook: Arc<dyn ProducerHook> = inner.clone();
        let hook: Weak<dyn ProducerHook> = Arc::downgrade(&as_hook);
        instance.register_producer(hook, &wire_group)?;
        debug!(group = %wire_group, client_id = %instance.client_id(), "producer started");
        Ok(Producer { inner })
    }
}

/// A message producer. Cheap to clone; clones share everything.
///
/// ```no_run
/// # async fn demo() -> Result<(), apogee_client::ClientError> {
/// use apogee_client::{Message, Producer};
///
/// let producer = Producer::builder()
///     .group("ProducerGroupName")
///     .name_server("127.0.0.1:9876")
///     .start()
///     .await?;
/// let result = producer
///     .send(Message::new("TopicTest", "Hello RocketMQ").with_tags("TagA"))
///     .await?;
/// println!("{} -> {:?} offset {}", result.msg_id, result.queue, result.queue_offset);
/// producer.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Producer {
    inner: Arc<ProducerInner>,
}

pub(crate) struct ProducerInner {
    group: String,
    wire_group: String,
    namespace: Option<String>,
    options: ProducerOptions,
    fault: FaultStrategy,
    instance: ClientInstance,
    /// Topics (as they travel) this producer has sent to; their routes are kept fresh.
    topics: Mutex<BTreeSet<String>>,
    /// Auto-create routes built from `TBW102` for topics no name server knows yet.
    fallback: Mutex<HashMap<String, Arc<TopicPublishInfo>>>,
    listener: Option<Arc<dyn TransactionListener>>,
    pending_checks: Arc<AtomicUsize>,
    shut_down: AtomicBool,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("group", &self.inner.group)
            .field("namespace", &self.inner.namespace)
            .field("client_id", &self.inner.instance.client_id())
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sync,
    Oneway,
}

/// A send running on its own task (see [`Producer::send_async`]). Awaiting it gives the
/// result; dropping it lets the send finish unobserved.
#[derive(Debug)]
pub struct SendHandle {
    task: JoinHandle<Result<SendResult>>,
}

impl Future for SendHandle {
    type Output = Result<SendResult>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task)
            .poll(cx)
            .map(|joined| match joined {
                Ok(result) => result,
                Err(e) => Err(ClientError::IllegalState(format!("send task failed: {e}"))),
            })
    }
}

impl Producer {
    pub fn builder() -> ProducerBuilder {
        ProducerBuilder {
            group: "DEFAULT_PRODUCER".into(),
            config: ClientConfig::default(),
            instance: None,
            namespace: None,
            options: ProducerOptions::default(),
            listener: None,
        }
    }

    /// A producer for a consumer's own sends (the retry-topic fallback of failed messages),
    /// in the instance's inner producer group and not registered with the instance (Java's
    /// `MQClientInstance.defaultMQProducer`; the heartbeat lists that group anyway).
    pub(crate) fn internal(instance: ClientInstance) -> Producer {
        let group = crate::instance::CLIENT_INNER_PRODUCER_GROUP.to_owned();
        Producer {
            inner: Arc::new(ProducerInner {
                group: group.clone(),
                wire_group: group,
                namespace: None,
                options: ProducerOptions::default(),
                fault: FaultStrategy::new(false),
                instance,
                topics: Mutex::new(BTreeSet::new()),
                fallback: Mutex::new(HashMap::new()),
                listener: None,
                pending_checks: Arc::new(AtomicUsize::new(0)),
                shut_down: AtomicBool::new(false),
            }),
        }
    }

    /// The group as configured (without namespace).
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    pub fn namespace(&self) -> Option<&str> {
        self.inner.namespace.as_deref()
    }

    pub fn options(&self) -> &ProducerOptions {
        &self.inner.options
    }

    /// The instance this producer runs on.
    pub fn client_instance(&self) -> &ClientInstance {
        &self.inner.instance
    }

    /// The latency fault strategy (for inspection and tests).
    pub fn fault_strategy(&self) -> &FaultStrategy {
        &self.inner.fault
    }

    /// Sends `msg` and waits for the broker's answer, retrying on another broker as configured,
    /// within the producer's send timeout.
    pub async fn send(&self, msg: Message) -> Result<SendResult> {
        self.send_with_timeout(msg, self.inner.send_timeout()).await
    }

    /// [`send`](Self::send) with its own time budget.
    pub async fn send_with_timeout(
        &self,
        mut msg: Message,
        timeout: Duration,
    ) -> Result<SendResult> {
        let prepared = self.inner.prepare(&mut msg)?;
        self.inner
            .send_default(&prepared, Mode::Sync, timeout)
            .await?
            .ok_or_else(|| ClientError::IllegalState("synchronous send without result".into()))
    }

    /// Starts a send on its own task and returns at once. Await the handle for the result, or
    /// drop it (the send still completes).
    pub fn send_async(&self, msg: Message) -> SendHandle {
        let producer = self.clone();
        SendHandle {
            task: tokio::spawn(async move { producer.send(msg).await }),
        }
    }

    /// Starts a send on its own task and calls `callback` with the result.
    pub fn send_with_callback<F>(&self, msg: Message, callback: F)
    where
        F: FnOnce(Result<SendResult>) + Send + 'static,
    {
        let producer = self.clone();
        tokio::spawn(async move { callback(producer.send(msg).await) });
    }

    /// Sends `msg` without waiting for an answer (one attempt; returns once the request is
    /// queued on the connection). Fastest, and the message may be lost.
    pub async fn send_oneway(&self, mut msg: Message) -> Result<()> {
        let prepared = self.inner.prepare(&mut msg)?;
        self.inner
            .send_default(&prepared, Mode::Oneway, self.inner.send_timeout())
            .await
            .map(|_| ())
    }

    /// Sends several messages of one topic in one request (SEND_BATCH_MESSAGE); they land on
    /// one queue with consecutive offsets. `msg_id` of the result lists their ids, comma-joined.
    pub async fn send_batch(&self, msgs: impl IntoIterator<Item = Message>) -> Result<SendResult> {
        let mut msgs: Vec<Message> = msgs.into_iter().collect();
        self.inner.check_running()?;
        let instance = self.inner.instance.clone();
        let prepared = prepare_batch(
            &mut msgs,
            self.inner.namespace.as_deref(),
            &self.inner.options.wire,
            || instance.next_uniq_id(),
        )?;
        self.inner
            .send_default(&prepared, Mode::Sync, self.inner.send_timeout())
            .await?
            .ok_or_else(|| ClientError::IllegalState("synchronous send without result".into()))
    }

    /// The queues `topic` can be written to (topics without namespace), fetching the route if
    /// needed.
    pub async fn fetch_publish_queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        let wire_topic = namespace::wrap(self.inner.namespace.as_deref(), topic);
        let info = self.inner.find_publish_info(&wire_topic).await?;
        Ok(info
            .queues
            .iter()
            .map(|q| MessageQueue::new(topic, q.broker_name.clone(), q.queue_id))
            .collect())
    }

    /// Sends `msg` to exactly `mq` (one attempt: a queue choice must not silently change).
    pub async fn send_to_queue(&self, mut msg: Message, mq: &MessageQueue) -> Result<SendResult> {
        if mq.topic != msg.topic() {
            return Err(ClientError::InvalidArgument(format!(
                "message topic {} differs from queue topic {}",
                msg.topic(),
                mq.topic
            )));
        }
        let prepared = self.inner.prepare(&mut msg)?;
        let wire_mq = MessageQueue::new(
            prepared.wire_topic.clone(),
            mq.broker_name.clone(),
            mq.queue_id,
        );
        self.inner.topics_insert(&prepared.wire_topic);
        self.inner
            .send_once(&prepared, &wire_mq, self.inner.send_timeout())
            .await
    }

    /// Sends `msg` to the queue `selector` picks for `arg`, typically an order key with
    /// [`SelectByHash`] so that all messages of one key stay in order on one queue. One attempt.
    pub async fn send_with_selector<A, S>(
        &self,
        mut msg: Message,
        selector: &S,
        arg: &A,
    ) -> Result<SendResult>
    where
        A: ?Sized,
        S: QueueSelector<A> + ?Sized,
    {
        let started = Instant::now();
        let prepared = self.inner.prepare(&mut msg)?;
        let info = self.inner.find_publish_info(&prepared.wire_topic).await?;
        let user_queues: Vec<MessageQueue> = info
            .queues
            .iter()
            .map(|q| {
                MessageQueue::new(
                    prepared.user_topic.clone(),
                    q.broker_name.clone(),
                    q.queue_id,
                )
            })
            .collect();
        let chosen = selector.select(&user_queues, &msg, arg).ok_or_else(|| {
            ClientError::InvalidArgument("the queue selector chose no queue".into())
        })?;
        let wire_mq = MessageQueue::new(
            prepared.wire_topic.clone(),
            chosen.broker_name,
            chosen.queue_id,
        );
        let left = self.inner.send_timeout().saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(self.inner.timeout_error());
        }
        self.inner.send_once(&prepared, &wire_mq, left).await
    }

    /// Sends `msg` as a half message, runs the listener's `execute_local` with `arg`, then
    /// commits or rolls back (END_TRANSACTION). Requires a
    /// [`transaction_listener`](ProducerBuilder::transaction_listener).
    pub async fn send_in_transaction(
        &self,
        msg: Message,
        arg: &(dyn Any + Send + Sync),
    ) -> Result<TransactionSendResult> {
        let listener = self.inner.listener.clone().ok_or_else(|| {
            ClientError::IllegalState("send_in_transaction needs a transaction listener".into())
        })?;
        self.send_in_transaction_with(msg, |m: &Message| {
            let outcome = catch_unwind(AssertUnwindSafe(|| listener.execute_local(m, arg)));
            let state = outcome.unwrap_or_else(|_| {
                warn!("execute_local panicked; reporting the transaction as unknown");
                LocalTransactionState::Unknown
            });
            std::future::ready(state)
        })
        .await
    }

    /// Like [`send_in_transaction`](Self::send_in_transaction) with an async local transaction.
    /// Check-backs still go to the listener, so a transactional producer should have one.
    pub async fn send_in_transaction_with<F, Fut>(
        &self,
        mut msg: Message,
        local: F,
    ) -> Result<TransactionSendResult>
    where
        F: FnOnce(&Message) -> Fut,
        Fut: Future<Output = LocalTransactionState>,
    {
        if self.inner.listener.is_none() {
            debug!("transactional send without a listener: check-backs will go unanswered");
        }
        // Delays do not apply to transactional messages (Java drops them too).
        msg.remove_property(keys::DELAY);
        msg.set_property(keys::TRAN_MSG, "true");
        msg.set_property(keys::PGROUP, self.inner.wire_group.clone());
        let prepared = self.inner.prepare(&mut msg)?;
        let send_result = self
            .inner
            .send_default(&prepared, Mode::Sync, self.inner.send_timeout())
            .await?
            .ok_or_else(|| ClientError::IllegalState("synchronous send without result".into()))?;
        let local_state = match send_result.status {
            SendStatus::SendOk => {
                if let Some(tx) = &send_result.transaction_id {
                    msg.set_property(keys::TRANSACTION_ID, tx.clone());
                }
                local(&msg).await
            }
            _ => LocalTransactionState::RollbackMessage,
        };
        if let Err(e) = self
            .inner
            .end_transaction(&prepared.wire_topic, &send_result, local_state)
            .await
        {
            warn!(error = %e, state = %local_state, "local transaction done but END_TRANSACTION failed; the broker will check back");
        }
        Ok(TransactionSendResult {
            send_result,
            local_state,
        })
    }

    /// Leaves the instance: unregisters the group from every broker and shuts the instance down
    /// if nothing else uses it.
    pub async fn shutdown(&self) {
        if self.inner.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner
            .instance
            .unregister_producer(&self.inner.wire_group)
            .await;
    }
}

impl ProducerInner {
    fn send_timeout(&self) -> Duration {
        Duration::from_millis(self.options.send_timeout_ms)
    }

    fn timeout_error(&self) -> ClientError {
        ClientError::Timeout {
            what: "send",
            timeout_ms: self.options.send_timeout_ms,
        }
    }

    fn check_running(&self) -> Result<()> {
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(ClientError::Shutdown);
        }
        self.instance.check_running()
    }

    fn topics_insert(&self, wire_topic: &str) {
        let mut topics = lock(&self.topics);
        if !topics.contains(wire_topic) {
            topics.insert(wire_topic.to_owned());
        }
    }

    fn prepare(&self, msg: &mut Message) -> Result<PreparedMessage> {
        self.check_running()?;
        let instance = &self.instance;
        prepare_message(msg, self.namespace.as_deref(), &self.options.wire, || {
            instance.next_uniq_id()
        })
    }

    /// The queues of `wire_topic`: the instance's route, else this producer's auto-create
    /// fallback, else a fresh lookup; a topic no name server knows gets `TBW102`'s route.
    async fn find_publish_info(&self, wire_topic: &str) -> Result<Arc<TopicPublishInfo>> {
        self.topics_insert(wire_topic);
        if let Some(entry) = self.instance.route_entry(wire_topic) {
            if entry.publish.ok() {
                return Ok(Arc::clone(&entry.publish));
            }
        }
        if let Some(info) = lock(&self.fallback).get(wire_topic) {
            if info.ok() {
                return Ok(Arc::clone(info));
            }
        }
        match self.instance.update_topic_route(wire_topic).await {
            Ok(entry) if entry.publish.ok() => {
                lock(&self.fallback).remove(wire_topic);
                return Ok(Arc::clone(&entry.publish));
            }
            Ok(_) => {
                return Err(ClientError::NoRoute {
                    topic: wire_topic.to_owned(),
                })
            }
            Err(e) if e.response_code() == Some(response_code::TOPIC_NOT_EXIST) => {}
            Err(e) => return Err(e),
        }
        let template = self
            .instance
            .fetch_topic_route(AUTO_CREATE_TOPIC_KEY_TOPIC)
            .await
            .map_err(|e| {
                debug!(topic = wire_topic, error = %e, "no route and no auto-create template");
                ClientError::NoRoute {
                    topic: wire_topic.to_owned(),
                }
            })?;
        // The template's brokers must be known to find their addresses.
        self.instance
            .install_route(AUTO_CREATE_TOPIC_KEY_TOPIC, template.clone());
        let shaped =
            default_route_for_new_topic(template, self.options.wire.default_topic_queue_nums);
        let mut info = publish_info_from_route(wire_topic, &shaped);
        info.have_route = false;
        if !info.ok() {
            return Err(ClientError::NoRoute {
                topic: wire_topic.to_owned(),
            });
        }
        let info = Arc::new(info);
        lock(&self.fallback).insert(wire_topic.to_owned(), Arc::clone(&info));
        Ok(info)
    }

    /// `sendDefaultImpl`: choose a queue, send, and on a retryable failure try again on another
    /// broker, all within `timeout`.
    async fn send_default(
        &self,
        prepared: &PreparedMessage,
        mode: Mode,
        timeout: Duration,
    ) -> Result<Option<SendResult>> {
        let started = Instant::now();
        let info = self.find_publish_info(&prepared.wire_topic).await?;
        let attempts_allowed = match mode {
            Mode::Sync => 1 + self.options.retry_times,
            Mode::Oneway => 1,
        };
        let mut last_broker: Option<String> = None;
        let mut brokers_sent = Vec::new();
        let mut attempts: usize = 0;
        let mut last_error: Option<ClientError> = None;
        let mut not_stored_ok: Option<SendResult> = None;
        for _ in 0..attempts_allowed {
            let Some(mq) = self
                .fault
                .select_queue(&info, last_broker.as_deref(), now_ms())
            else {
                break;
            };
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(self.timeout_error());
            }
            attempts += 1;
            let begin = Instant::now();
            let outcome = match mode {
                Mode::Sync => self.send_once(prepared, &mq, left).await.map(Some),
                Mode::Oneway => self.send_oneway_once(prepared, &mq).await.map(|()| None),
            };
            let latency_ms = u64::try_from(begin.elapsed().as_millis()).unwrap_or(u64::MAX);
            match outcome {
                Ok(Some(result)) => {
                    self.fault
                        .update(&mq.broker_name, latency_ms, false, now_ms());
                    if result.status != SendStatus::SendOk
                        && self.options.retry_another_broker_when_not_store_ok
                    {
                        brokers_sent.push(mq.broker_name.clone());
                        not_stored_ok = Some(result);
                        last_broker = Some(mq.broker_name);
                        continue;
                    }
                    return Ok(Some(result));
                }
                Ok(None) => {
                    self.fault
                        .update(&mq.broker_name, latency_ms, false, now_ms());
                    return Ok(None);
                }
                Err(e) => {
                    self.fault
                        .update(&mq.broker_name, latency_ms, true, now_ms());
                    debug!(broker = %mq.broker_name, error = %e, "send attempt failed");
                    // Broker names are kept for the error only, so only failed attempts pay
                    // for the copy.
                    brokers_sent.push(mq.broker_name.clone());
                    if !e.is_retryable_send() {
                        if let Some(result) = not_stored_ok {
                            return Ok(Some(result));
                        }
                        return Err(e);
                    }
                    last_error = Some(e);
                    last_broker = Some(mq.broker_name);
                }
            }
        }
        if let Some(result) = not_stored_ok {
            return Ok(Some(result));
        }
        let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
        match last_error {
            Some(last) => Err(ClientError::SendFailed {
                topic: prepared.user_topic.clone(),
                attempts,
                brokers: brokers_sent,
                last: Box::new(last),
            }),
            None => Err(ClientError::NoRoute {
                topic: prepared.wire_topic.clone(),
            }),
        }
    }

    /// One synchronous attempt to `mq` (whose topic is the wire topic).
    async fn send_once(
        &self,
        prepared: &PreparedMessage,
        mq: &MessageQueue,
        timeout: Duration,
    ) -> Result<SendResult> {
        let addr = self
            .instance
            .master_addr_or_refresh(&mq.broker_name, &mq.topic)
            .await?;
        let request = build_send_request(
            prepared,
            &self.wire_group,
            mq,
            self.options.wire.default_topic_queue_nums,
            now_ms(),
        );
        let response = self.instance.invoke_broker(&addr, request, timeout).await?;
        process_send_response(
            &response,
            &addr,
            &prepared.user_topic,
            &mq.broker_name,
            &prepared.msg_id,
        )
    }

    async fn send_oneway_once(&self, prepared: &PreparedMessage, mq: &MessageQueue) -> Result<()> {
        let addr = self
            .instance
            .master_addr_or_refresh(&mq.broker_name, &mq.topic)
            .await?;
        let request = build_send_request(
            prepared,
            &self.wire_group,
            mq,
            self.options.wire.default_topic_queue_nums,
            now_ms(),
        );
        self.instance.invoke_broker_oneway(&addr, request).await
    }

    async fn end_transaction(
        &self,
        wire_topic: &str,
        send_result: &SendResult,
        state: LocalTransactionState,
    ) -> Result<()> {
        let id = OffsetMsgId::parse(&send_result.offset_msg_id)
            .or_else(|_| OffsetMsgId::parse(&send_result.msg_id))?;
        let broker_name = &send_result.queue.broker_name;
        let addr = self
            .instance
            .master_addr_or_refresh(broker_name, wire_topic)
            .await?;
        let request = transaction::end_transaction_request(
            wire_topic,
            &self.wire_group,
            send_result,
            id.physical_offset,
            broker_name,
            state,
            None,
        );
        self.instance.invoke_broker_oneway(&addr, request).await
    }
}

impl ProducerHook for ProducerInner {
    fn wire_group(&self) -> &str {
        &self.wire_group
    }

    fn publish_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = lock(&self.topics).iter().cloned().collect();
        // Auto-create routes stand in until the name server knows the topic; while any is in
        // use, the template's route (and so its brokers' addresses) must stay fresh too.
        let mut fallback = lock(&self.fallback);
        fallback.retain(|topic, _| {
            self.instance
                .route_entry(topic)
                .is_none_or(|e| !e.publish.ok())
        });
        if !fallback.is_empty() {
            topics.push(AUTO_CREATE_TOPIC_KEY_TOPIC.to_owned());
        }
        topics
    }

    fn check_transaction_state(
        &self,
        conn: ConnectionHandle,
        header: CheckTransactionStateRequestHeader,
        mut msg: MessageExt,
    ) {
        let Some(listener) = self.listener.clone() else {
            warn!(group = %self.wire_group, "transaction check-back but no transaction listener");
            return;
        };
        if self.pending_checks.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING_CHECKS {
            self.pending_checks.fetch_sub(1, Ordering::SeqCst);
            warn!(group = %self.wire_group, "too many transaction check-backs pending, dropping one");
            return;
        }
        msg.topic = namespace::unwrap(self.namespace.as_deref(), &msg.topic);
        let group = self.wire_group.clone();
        let language = self.instance.config().language;
        let pending = Arc::clone(&self.pending_checks);
        tokio::spawn(async move {
            let checked = tokio::task::spawn_blocking(move || {
                let outcome = catch_unwind(AssertUnwindSafe(|| listener.check_local(&msg)));
                (outcome, msg)
            })
            .await;
            pending.fetch_sub(1, Ordering::SeqCst);
            let (state, remark, msg) = match checked {
                Ok((Ok(state), msg)) => (state, None, msg),
                Ok((Err(_), msg)) => (
                    LocalTransactionState::Unknown,
                    Some("checkLocalTransactionState Exception: check_local panicked".to_owned()),
                    msg,
                ),
                Err(e) => {
                    warn!(error = %e, "transaction check task failed");
                    return;
                }
            };
            let mut request =
                transaction::check_answer_request(&header, &msg, &group, state, remark);
            request.language = language;
            if let Err(e) = conn.invoke_oneway(request).await {
                warn!(error = %e, "cannot answer transaction check-back");
            }
        });
    }
}
