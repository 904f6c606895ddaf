//! "Cluster mode": a [`MessagingBackend`] over the remoting protocol, in front of brokers found
//! through name servers, as RocketMQ's proxy runs when it is deployed apart from the brokers.
//!
//! The rules are local mode's (see [`crate::convert`]); only the way to the broker differs:
//!
//! - QueryRoute asks a name server for the topic's route and lists the queues of every broker
//!   with a master, each advertising this endpoint; the topic's `message.type` comes from a
//!   broker (GET_TOPIC_CONFIG). Routes and topic configs are cached for [`RemoteConfig::route_ttl`].
//! - SendMessage picks the queue (consistent hash of the message group over every writable queue
//!   for FIFO, round robin otherwise) and sends SEND_MESSAGE_V2 to that queue's master. The
//!   transaction id of a half message names its broker, commit-log and half-queue offsets.
//! - ReceiveMessage pops (POP_MESSAGE) every queue of one broker at a time: first each broker
//!   in turn without waiting, then a long poll on the next broker in the rotation. Receipt
//!   handles carry the broker name, so AckMessage, ChangeInvisibleDuration and
//!   ForwardMessageToDeadLetterQueue go back to the broker that delivered the message.
//! - Producers and consumers that report their settings are announced to the brokers with
//!   HEART_BEAT under this proxy's client id (producer group = topic, as local mode writes
//!   `PGROUP`), so a broker's transaction check-back (CHECK_TRANSACTION_STATE) comes to this
//!   proxy; it is handed to a producer of the topic as a `RecoverOrphanedTransactionCommand` on
//!   its Telemetry stream, and its EndTransaction (source SERVER_CHECK) goes back to the broker.
//! - SendMessage returns the broker's recall handle of a timer message; RecallMessage sends
//!   RECALL_MESSAGE to the master of the broker the handle names.
//! - Push consumers' receipt handles (ReceiveMessage with `auto_renew`) are renewed with
//!   CHANGE_MESSAGE_INVISIBLETIME until acked (see [`renew`]).

mod renew;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use apogee_broker::local::{decode_transaction_handle, encode_transaction_handle, LocalError};
use apogee_broker::pop::{PoppedMessage, ReceiptHandle};
use apogee_protocol::body::{
    ConsumeType, ConsumerData, HeartbeatData, JsonBody, MessageModel, ProducerData,
    SubscriptionData, SubscriptionGroupConfig, TopicConfig, TopicRouteData,
};
use apogee_protocol::codes::response_code as rc;
use apogee_protocol::codes::{perm, pull_sys_flag, request_code};
use apogee_protocol::header::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    CheckTransactionStateRequestHeader, CommandHeader, ConsumerSendMsgBackRequestHeader,
    EndTransactionRequestHeader, GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader,
    GetMinOffsetRequestHeader, GetMinOffsetResponseHeader, GetRouteInfoRequestHeader,
    GetSubscriptionGroupConfigRequestHeader, GetTopicConfigRequestHeader, PopMessageRequestHeader,
    PopMessageResponseHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader, RecallHandle,
    RecallMessageRequestHeader, RecallMessageResponseHeader, SearchOffsetRequestHeader,
    SearchOffsetResponseHeader, SendMessageRequestHeader, SendMessageRequestHeaderV2,
    SendMessageResponseHeader, UnregisterClientRequestHeader, UpdateConsumerOffsetRequestHeader,
    INVALID_RECALL_HANDLE,
};
use apogee_protocol::message::{keys, sysflag, MessageRecord, OffsetMsgId};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{HandlerFuture, RemotingClient, RemotingConfig, Router};
use bytes::Bytes;
use tracing::{debug, warn};

use crate::backend::{BackendStream, MessagingBackend, OfflineReason, RequestContext};
use crate::config::GroupPolicy;
use crate::convert::{
    ack_response, ack_result, broker_filter, build_send, check_invisible_ms, check_message_type,
    consistent_hash, duration_ms, endpoints_of, java_string_hash, map_broker_error,
    map_recall_error, message_queue_required, pop_request, popped_to_pb, required_name, resource,
    send_status, send_topic, timestamp, timestamp_ms, to_pb_message, TopicMessageType,
};
use crate::pb;
use crate::session::{ClientSession, SessionRegistry};
use crate::status::{ok, status, RpcError, RpcResult};

/// How the proxy reaches the cluster.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Name server addresses (`host:port`).
    pub name_servers: Vec<String>,
    /// The gRPC address routes advertise (see [`RemoteBackend::set_advertised`]).
    pub advertised: SocketAddr,
    /// Whether SendMessage checks the topic's `message.type` (keep it equal to the producer
    /// settings' `validate_message_type`).
    pub validate_message_type: bool,
    /// Timeout of one remoting call (a long poll gets its poll time on top).
    pub request_timeout: Duration,
    /// How long a fetched route or topic config is used before it is fetched again.
    pub route_ttl: Duration,
    /// How often the registered producers and consumers are announced to the brokers.
    pub heartbeat_interval: Duration,
    /// The client id brokers see for this proxy (`ip@instance`).
    pub client_id: String,
    pub remoting: RemotingConfig,
}

impl RemoteConfig {
    /// Defaults for `name_servers`, with routes advertising `advertised`.
    pub fn new(name_servers: Vec<String>, advertised: SocketAddr) -> Self {
        Self {
            name_servers,
            advertised,
            validate_message_type: true,
            request_timeout: Duration::from_secs(3),
            route_ttl: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(10),
            client_id: format!("{}@proxy-{}", advertised.ip(), std::process::id()),
            remoting: RemotingConfig::default(),
        }
    }
}

/// The cluster-mode backend. Cheap to clone; the heartbeat loop stops when the last clone is
/// dropped or on [`RemoteBackend::shutdown`].
#[derive(Clone)]
pub struct RemoteBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RemoteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBackend")
            .field("name_servers", &self.inner.config.name_servers)
            .field("client_id", &self.inner.config.client_id)
            .finish_non_exhaustive()
    }
}

struct Cached<T> {
    at: Instant,
    value: T,
}

/// A consumer group's subscriptions: topic -> (expression type, expression).
type Subscriptions = BTreeMap<String, (String, String)>;

/// Who this proxy announces to the brokers.
#[derive(Default)]
struct Registrations {
    /// gRPC client id -> topics it publishes to.
    producers: HashMap<String, BTreeSet<String>>,
    /// gRPC client id -> (consumer group, its subscriptions as topic -> (type, expression)).
    consumers: HashMap<String, (String, Subscriptions)>,
}

struct Inner {
    config: RemoteConfig,
    remoting: RemotingClient,
    sessions: Arc<SessionRegistry>,
    endpoints: RwLock<pb::Endpoints>,
    name_server_index: AtomicUsize,
    routes: Mutex<HashMap<String, Cached<Arc<TopicRouteData>>>>,
    topic_configs: Mutex<HashMap<String, Cached<Option<TopicConfig>>>>,
    group_configs: Mutex<HashMap<String, Cached<Option<SubscriptionGroupConfig>>>>,
    /// Broker name -> master address, from every route seen.
    masters: RwLock<HashMap<String, String>>,
    /// Rotations for sends and receives.
    send_index: AtomicUsize,
    receive_index: AtomicUsize,
    registrations: Mutex<Registrations>,
    heartbeat_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Push consumers' receipt handles being renewed.
    renewal: renew::Renewal,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn broker_error(response: &RemotingCommand) -> RpcError {
    map_broker_error(LocalError {
        code: response.code,
        remark: response.remark.clone().unwrap_or_default(),
    })
}

fn unreachable_broker(addr: &str, error: impl std::fmt::Display) -> RpcError {
    RpcError::new(
        pb::Code::ProxyTimeout,
        format!("broker {addr} did not answer: {error}"),
    )
}

fn decode<H: CommandHeader>(response: &RemotingCommand) -> RpcResult<H> {
    response
        .decode_header::<H>()
        .map_err(|e| RpcError::internal(format!("unreadable broker response: {e}")))
}

/// A transaction id names the half message and its broker: 32 hex digits (commit-log offset,
/// half-queue offset) then the broker name.
fn encode_transaction_id(broker: &str, commit_log_offset: i64, queue_offset: i64) -> String {
    format!(
        "{}{broker}",
        encode_transaction_handle(commit_log_offset, queue_offset)
    )
}

fn decode_transaction_id(id: &str) -> Option<(String, i64, i64)> {
    let head = id.get(..32)?;
    let broker = id.get(32..)?;
    if broker.is_empty() {
        return None;
    }
    let (commit_log, queue) = decode_transaction_handle(head)?;
    Some((broker.to_owned(), commit_log, queue))
}

/// `startOffsetInfo` of a POP answer: queue id -> (retry flag, first offset of the batch).
fn start_offsets(info: Option<&str>) -> HashMap<i32, (String, i64)> {
    let mut out = HashMap::new();
    for entry in info.unwrap_or_default().split(';') {
        let mut f = entry.split(' ');
        let (Some(flag), Some(qid), Some(start)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let (Ok(qid), Ok(start)) = (qid.parse(), start.parse()) {
            out.insert(qid, (flag.to_owned(), start));
        }
    }
    out
}

/// The messages of a POP answer from `broker`, each with its receipt handle.
fn popped_messages(
    broker: &str,
    header: &PopMessageResponseHeader,
    body: &Bytes,
) -> RpcResult<Vec<PoppedMessage>> {
    let starts = start_offsets(header.start_offset_info.as_deref());
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let rest = body.slice(pos..);
        let (record, size) = MessageRecord::decode_bytes(&rest)
            .map_err(|e| RpcError::internal(format!("broker sent an unreadable message: {e}")))?;
        if size == 0 {
            break;
        }
        let (retry_flag, start) = starts
            .get(&record.queue_id)
            .cloned()
            .unwrap_or_else(|| ("0".to_owned(), record.queue_offset));
        let handle = ReceiptHandle {
            start_offset: start,
            pop_time_ms: header.pop_time,
            invisible_ms: header.invisible_time,
            revive_qid: header.revive_qid,
            retry_flag,
            broker_name: broker.to_owned(),
            queue_id: record.queue_id,
            queue_offset: Some(record.queue_offset),
            commit_log_offset: Some(record.physical_offset),
        };
        let reconsume_times = record.reconsume_times.max(0);
        out.push(PoppedMessage {
            record: rest.slice(..size.min(rest.len())),
            queue_id: record.queue_id,
            queue_offset: record.queue_offset.max(0) as u64,
            commit_log_offset: record.physical_offset.max(0) as u64,
            reconsume_times,
            delivery_attempt: reconsume_times as u32 + 1,
            pop_time_ms: header.pop_time,
            invisible_ms: header.invisible_time,
            receipt_handle: handle.encode(),
        });
        pos += size;
    }
    Ok(out)
}

fn parse_handle(handle: &str) -> RpcResult<ReceiptHandle> {
    if handle.is_empty() {
        return Err(RpcError::new(
            pb::Code::InvalidReceiptHandle,
            "receipt handle cannot be empty",
        ));
    }
    let h = ReceiptHandle::parse(handle)
        .map_err(|e| RpcError::new(pb::Code::InvalidReceiptHandle, e.remark().to_owned()))?;
    if h.broker_name.is_empty() || h.queue_offset.is_none() {
        return Err(RpcError::new(
            pb::Code::InvalidReceiptHandle,
            "receipt handle names no broker or offset",
        ));
    }
    Ok(h)
}

fn broker_of(queue: &pb::MessageQueue) -> RpcResult<&str> {
    match &queue.broker {
        Some(b) if !b.name.is_empty() => Ok(&b.name),
        _ => Err(RpcError::new(
            pb::Code::BadRequest,
            "the message queue names no broker",
        )),
    }
}

/// A readable or writable queue of the route.
#[derive(Debug, Clone)]
struct RouteQueue {
    broker: String,
    id: i32,
    readable: bool,
    writable: bool,
}

fn route_queues(route: &TopicRouteData) -> Vec<RouteQueue> {
    let with_master: BTreeSet<&str> = route
        .broker_datas
        .iter()
        .filter(|b| b.master_addr().is_some())
        .map(|b| b.broker_name.as_str())
        .collect();
    let mut datas: Vec<_> = route
        .queue_datas
        .iter()
        .filter(|q| with_master.contains(q.broker_name.as_str()))
        .collect();
    datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    let mut out = Vec::new();
    for q in datas {
        let n = q.read_queue_nums.max(q.write_queue_nums).max(0);
        for id in 0..n {
            out.push(RouteQueue {
                broker: q.broker_name.clone(),
                id,
                readable: perm::is_readable(q.perm) && id < q.read_queue_nums,
                writable: perm::is_writeable(q.perm) && id < q.write_queue_nums,
            });
        }
    }
    out
}

impl RemoteBackend {
    /// A backend for `config`'s cluster. `sessions` must be the registry the gRPC server uses
    /// ([`crate::GrpcServer::start_with_sessions`]): transaction check-backs are pushed to
    /// producers through it. Starts the heartbeat loop, so it must be called in a runtime.
    pub fn new(config: RemoteConfig, sessions: Arc<SessionRegistry>) -> Self {
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let remoting =
                RemotingClient::with_handler(config.remoting.clone(), check_router(weak.clone()));
            Inner {
                endpoints: RwLock::new(endpoints_of(config.advertised)),
                remoting,
                sessions,
                name_server_index: AtomicUsize::new(0),
                routes: Mutex::new(HashMap::new()),
                topic_configs: Mutex::new(HashMap::new()),
                group_configs: Mutex::new(HashMap::new()),
                masters: RwLock::new(HashMap::new()),
                send_index: AtomicUsize::new(0),
                receive_index: AtomicUsize::new(0),
                registrations: Mutex::new(Registrations::default()),
                heartbeat_task: Mutex::new(None),
                renewal: renew::Renewal::default(),
                config,
            }
        });
        let weak = Arc::downgrade(&inner);
        let every = inner
            .config
            .heartbeat_interval
            .max(Duration::from_millis(100));
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                inner.heartbeat_all().await;
            }
        });
        *lock(&inner.heartbeat_task) = Some(task);
        Self { inner }
    }

    /// Changes the address routes advertise (e.g. once a listener on port 0 got its port).
    pub fn set_advertised(&self, advertised: SocketAddr) {
        *self
            .inner
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner) = endpoints_of(advertised);
    }

    /// The endpoints routes advertise.
    pub fn endpoints(&self) -> pb::Endpoints {
        self.inner.endpoints()
    }

    /// Changes how push consumers' receipt handles are renewed (before the first receive).
    pub fn with_renewal(self, config: crate::renew::RenewConfig) -> Self {
        self.inner.renewal.set_config(config);
        self
    }

    /// Receipt handles being renewed right now.
    pub fn renewing(&self) -> usize {
        self.inner.renewal.len()
    }

    /// Stops the heartbeat loop, unregisters the proxy's groups from the brokers and closes
    /// the connections.
    pub async fn shutdown(&self) {
        if let Some(task) = lock(&self.inner.heartbeat_task).take() {
            task.abort();
        }
        self.inner.renewal.stop();
        let (producers, consumers) = {
            let r = lock(&self.inner.registrations);
            (r.producer_groups(), r.consumer_groups())
        };
        for g in producers {
            self.inner.unregister(Some(g), None).await;
        }
        for g in consumers {
            self.inner.unregister(None, Some(g)).await;
        }
        self.inner.remoting.close();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.heartbeat_task).take() {
            task.abort();
        }
        self.remoting.close();
    }
}

impl Registrations {
    fn producer_groups(&self) -> BTreeSet<String> {
        self.producers.values().flatten().cloned().collect()
    }

    fn consumer_groups(&self) -> BTreeSet<String> {
        self.consumers.values().map(|(g, _)| g.clone()).collect()
    }

    fn heartbeat(&self, client_id: &str) -> HeartbeatData {
        let mut groups: BTreeMap<String, Subscriptions> = BTreeMap::new();
        for (group, subs) in self.consumers.values() {
            groups
                .entry(group.clone())
                .or_default()
                .extend(subs.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        HeartbeatData {
            client_id: client_id.to_owned(),
            producer_data_set: self
                .producer_groups()
                .into_iter()
                .map(|group_name| ProducerData { group_name })
                .collect(),
            consumer_data_set: groups
                .into_iter()
                .map(|(group_name, subs)| ConsumerData {
                    consume_from_where: None,
                    consume_type: ConsumeType::ConsumePop,
                    group_name,
                    message_model: MessageModel::Clustering,
                    subscription_data_set: subs
                        .into_iter()
                        .map(|(topic, (kind, expression))| SubscriptionData {
                            expression_type: kind,
                            sub_string: expression,
                            topic,
                            ..SubscriptionData::default()
                        })
                        .collect(),
                    unit_mode: false,
                })
                .collect(),
            ..HeartbeatData::default()
        }
    }
}

/// The router of the proxy's broker connections: brokers call back only for transaction
/// check-backs; everything else is answered "not supported" by the router.
fn check_router(weak: Weak<Inner>) -> Router {
    Router::new().route(
        request_code::CHECK_TRANSACTION_STATE,
        move |ctx: apogee_remoting::RequestContext, req: RemotingCommand| {
            if let Some(inner) = weak.upgrade() {
                inner.check_transaction_state(ctx.peer_addr(), &req);
            }
            HandlerFuture::no_reply()
        },
    )
}

impl Inner {
    fn endpoints(&self) -> pb::Endpoints {
        self.endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn timeout(&self) -> Duration {
        self.config.request_timeout
    }

    async fn call(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> RpcResult<RemotingCommand> {
        self.remoting
            .invoke(addr, request, timeout)
            .await
            .map_err(|e| unreachable_broker(addr, e))
    }

    /// Calls a name server: the current one, then each other in turn.
    async fn call_name_server(&self, request: RemotingCommand) -> RpcResult<RemotingCommand> {
        let addrs = &self.config.name_servers;
        if addrs.is_empty() {
            return Err(RpcError::internal("no name server is configured"));
        }
        let start = self.name_server_index.load(Ordering::Relaxed);
        let mut last = String::new();
        for i in 0..addrs.len() {
            let index = (start + i) % addrs.len();
            let Some(addr) = addrs.get(index) else {
                continue;
            };
            match self
                .remoting
                .invoke(addr, request.clone(), self.timeout())
                .await
            {
                Ok(response) => {
                    self.name_server_index.store(index, Ordering::Relaxed);
                    return Ok(response);
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        Err(RpcError::new(
            pb::Code::ProxyTimeout,
            format!("no name server answered ({last})"),
        ))
    }

    /// The topic's route, from the cache when `fresh` is false and it is recent enough.
    async fn route(&self, topic: &str, fresh: bool) -> RpcResult<Arc<TopicRouteData>> {
        if !fresh {
            if let Some(c) = lock(&self.routes).get(topic) {
                if c.at.elapsed() < self.config.route_ttl {
                    return Ok(c.value.clone());
                }
            }
        }
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: Some(true),
            ..Default::default()
        };
        let response = self
            .call_name_server(RemotingCommand::request_with_header(
                request_code::GET_ROUTEINFO_BY_TOPIC,
                &header,
            ))
            .await?;
        if response.code == rc::TOPIC_NOT_EXIST {
            lock(&self.routes).remove(topic);
            return Err(RpcError::new(
                pb::Code::TopicNotFound,
                format!("topic {topic} does not exist"),
            ));
        }
        if response.code != rc::SUCCESS {
            return Err(broker_error(&response));
        }
        let route = TopicRouteData::decode(&response.body)
            .map_err(|e| RpcError::internal(format!("unreadable route of {topic}: {e}")))?;
        {
            let mut masters = self.masters.write().unwrap_or_else(PoisonError::into_inner);
            for b in &route.broker_datas {
                if let Some(addr) = b.master_addr() {
                    masters.insert(b.broker_name.clone(), addr.to_owned());
                }
            }
        }
        let route = Arc::new(route);
        lock(&self.routes).insert(
            topic.to_owned(),
            Cached {
                at: Instant::now(),
                value: route.clone(),
            },
        );
        Ok(route)
    }

    fn known_master(&self, broker: &str) -> Option<String> {
        self.masters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(broker)
            .cloned()
    }

    /// The master address of `broker`, refreshing `topic`'s route when it is unknown.
    async fn master(&self, broker: &str, topic: &str) -> RpcResult<String> {
        if let Some(addr) = self.known_master(broker) {
            return Ok(addr);
        }
        self.route(topic, true).await?;
        self.known_master(broker).ok_or_else(|| {
            RpcError::new(
                pb::Code::MasterPersistenceTimeout,
                format!("broker {broker} has no master online"),
            )
        })
    }

    fn all_masters(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .masters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort();
        v
    }

    /// The topic's config from one of its brokers (`None`: no broker knows it).
    async fn topic_config(&self, topic: &str, route: &TopicRouteData) -> Option<TopicConfig> {
        if let Some(c) = lock(&self.topic_configs).get(topic) {
            if c.at.elapsed() < self.config.route_ttl {
                return c.value.clone();
            }
        }
        let mut found = None;
        for b in &route.broker_datas {
            let Some(addr) = b.master_addr() else {
                continue;
            };
            let header = GetTopicConfigRequestHeader {
                topic: topic.to_owned(),
            };
            let request =
                RemotingCommand::request_with_header(request_code::GET_TOPIC_CONFIG, &header);
            match self.remoting.invoke(addr, request, self.timeout()).await {
                Ok(r) if r.code == rc::SUCCESS => {
                    match apogee_protocol::json::from_slice::<TopicConfig>(&r.body) {
                        Ok(config) => {
                            found = Some(config);
                            break;
                        }
                        Err(e) => debug!(%topic, %addr, "unreadable topic config: {e}"),
                    }
                }
                Ok(r) => debug!(%topic, %addr, code = r.code, "no topic config"),
                Err(e) => debug!(%topic, %addr, "topic config call failed: {e}"),
            }
        }
        lock(&self.topic_configs).insert(
            topic.to_owned(),
            Cached {
                at: Instant::now(),
                value: found.clone(),
            },
        );
        found
    }

    async fn topic_type(&self, topic: &str, route: &TopicRouteData) -> TopicMessageType {
        self.topic_config(topic, route)
            .await
            .map_or(TopicMessageType::Normal, |c| TopicMessageType::of(&c))
    }

    /// The subscription group's config from a broker master (`None`: unknown).
    async fn group_config(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        if let Some(c) = lock(&self.group_configs).get(group) {
            if c.at.elapsed() < self.config.route_ttl {
                return c.value.clone();
            }
        }
        let mut found = None;
        for (_, addr) in self.all_masters() {
            let header = GetSubscriptionGroupConfigRequestHeader {
                group: group.to_owned(),
            };
            let request = RemotingCommand::request_with_header(
                request_code::GET_SUBSCRIPTIONGROUP_CONFIG,
                &header,
            );
            if let Ok(r) = self.remoting.invoke(&addr, request, self.timeout()).await {
                if r.code == rc::SUCCESS {
                    if let Ok(config) = SubscriptionGroupConfig::decode(&r.body) {
                        found = Some(config);
                        break;
                    }
                }
            }
        }
        lock(&self.group_configs).insert(
            group.to_owned(),
            Cached {
                at: Instant::now(),
                value: found.clone(),
            },
        );
        found
    }

    fn pb_queue(&self, topic: &str, q: &RouteQueue, types: &[i32]) -> pb::MessageQueue {
        let permission = match (q.readable, q.writable) {
            (true, true) => pb::Permission::ReadWrite,
            (true, false) => pb::Permission::Read,
            (false, true) => pb::Permission::Write,
            (false, false) => pb::Permission::None,
        };
        pb::MessageQueue {
            topic: Some(resource(topic)),
            id: q.id,
            permission: permission as i32,
            broker: Some(pb::Broker {
                name: q.broker.clone(),
                id: 0,
                endpoints: Some(self.endpoints()),
            }),
            accept_message_types: types.to_vec(),
        }
    }

    async fn send_one(
        &self,
        ctx: &RequestContext,
        topic_type: TopicMessageType,
        writable: &[RouteQueue],
        message: pb::Message,
    ) -> pb::SendResultEntry {
        match self.try_send_one(ctx, topic_type, writable, message).await {
            Ok(entry) => entry,
            Err(error) => pb::SendResultEntry {
                status: Some(error.to_status()),
                ..Default::default()
            },
        }
    }

    async fn try_send_one(
        &self,
        ctx: &RequestContext,
        topic_type: TopicMessageType,
        writable: &[RouteQueue],
        message: pb::Message,
    ) -> RpcResult<pb::SendResultEntry> {
        let topic = message
            .topic
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let built = build_send(&topic, message, ctx.remote_addr)?;
        let send = built.send;
        if self.config.validate_message_type {
            check_message_type(topic_type, &send.properties)?;
        }
        if writable.is_empty() {
            return Err(RpcError::new(
                pb::Code::Forbidden,
                format!("topic {topic} has no writable queue"),
            ));
        }
        let index = match send.properties.get(keys::SHARDING_KEY) {
            Some(group) => {
                let buckets = i32::try_from(writable.len()).unwrap_or(i32::MAX);
                consistent_hash(java_string_hash(group), buckets).max(0) as usize
            }
            None => self.send_index.fetch_add(1, Ordering::Relaxed),
        } % writable.len();
        let queue = writable
            .get(index)
            .ok_or_else(|| RpcError::internal("no queue to send to"))?;
        let addr = self.master(&queue.broker, &topic).await?;
        let half = send.sys_flag & sysflag::TRANSACTION_PREPARED_TYPE != 0;
        let header = SendMessageRequestHeader {
            producer_group: send.producer_group,
            topic: send.topic,
            default_topic: "TBW102".to_owned(),
            default_topic_queue_nums: 4,
            queue_id: queue.id,
            sys_flag: send.sys_flag,
            born_timestamp: send.born_timestamp,
            flag: send.flag,
            properties: Some(send.properties.encode_to_string()),
            reconsume_times: Some(send.reconsume_times),
            unit_mode: Some(false),
            batch: Some(false),
            max_reconsume_times: None,
            broker_name: Some(queue.broker.clone()),
        };
        let request = RemotingCommand::request_with_header(
            request_code::SEND_MESSAGE_V2,
            &SendMessageRequestHeaderV2::from(header),
        )
        .with_body(send.body);
        let response = self.call(&addr, request, self.timeout()).await?;
        let code = match response.code {
            rc::SUCCESS => pb::Code::Ok,
            rc::FLUSH_DISK_TIMEOUT => pb::Code::MasterPersistenceTimeout,
            rc::FLUSH_SLAVE_TIMEOUT => pb::Code::SlavePersistenceTimeout,
            rc::SLAVE_NOT_AVAILABLE => pb::Code::HaNotAvailable,
            _ => return Err(broker_error(&response)),
        };
        if code != pb::Code::Ok {
            return Err(RpcError::new(
                code,
                format!("send message failed, code {}", response.code),
            ));
        }
        let h: SendMessageResponseHeader = decode(&response)?;
        let transaction_id = if half {
            let physical = h
                .msg_id
                .split(',')
                .next()
                .and_then(|id| OffsetMsgId::parse(id).ok())
                .map(|id| id.physical_offset)
                .ok_or_else(|| {
                    RpcError::internal(format!("unreadable offsetMsgId {}", h.msg_id))
                })?;
            encode_transaction_id(&queue.broker, physical, h.queue_offset)
        } else {
            String::new()
        };
        Ok(pb::SendResultEntry {
            status: Some(ok()),
            message_id: built.message_id,
            transaction_id,
            offset: h.queue_offset,
            recall_handle: h.recall_handle.unwrap_or_default(),
        })
    }

    /// Brokers of the topic that hold readable queues, in name order.
    fn readable_brokers(route: &TopicRouteData) -> Vec<String> {
        let mut v: Vec<String> = route_queues(route)
            .into_iter()
            .filter(|q| q.readable)
            .map(|q| q.broker)
            .collect();
        v.dedup();
        v
    }

    /// One POP to `broker`.
    async fn pop_from(
        &self,
        broker: &str,
        pop: &apogee_broker::pop::PopRequest,
        poll_ms: i64,
    ) -> RpcResult<(i32, PopMessageResponseHeader, Vec<PoppedMessage>)> {
        let addr = self.master(broker, &pop.topic).await?;
        let header = PopMessageRequestHeader {
            consumer_group: pop.group.clone(),
            topic: pop.topic.clone(),
            queue_id: -1,
            max_msg_nums: pop.max_messages,
            invisible_time: pop.invisible_ms,
            poll_time: poll_ms,
            born_time: crate::convert::now_ms(),
            init_mode: 0,
            exp_type: pop.expression_type.clone(),
            exp: pop.expression.clone(),
            order: pop.fifo,
            attempt_id: pop.attempt_id.clone(),
        };
        let request = RemotingCommand::request_with_header(request_code::POP_MESSAGE, &header);
        let timeout = self.timeout() + Duration::from_millis(poll_ms.max(0) as u64);
        let response = self.call(&addr, request, timeout).await?;
        match response.code {
            rc::SUCCESS => {
                let h: PopMessageResponseHeader = decode(&response)?;
                let messages = popped_messages(broker, &h, &response.body)?;
                Ok((rc::SUCCESS, h, messages))
            }
            rc::POLLING_TIMEOUT | rc::POLLING_FULL | rc::PULL_NOT_FOUND | rc::NO_MESSAGE => {
                let h = decode(&response).unwrap_or_default();
                Ok((response.code, h, Vec::new()))
            }
            _ => Err(broker_error(&response)),
        }
    }

    async fn heartbeat_all(&self) {
        let data = lock(&self.registrations).heartbeat(&self.config.client_id);
        if data.producer_data_set.is_empty() && data.consumer_data_set.is_empty() {
            return;
        }
        let body = match data.encode() {
            Ok(b) => b,
            Err(e) => {
                warn!("cannot encode the heartbeat: {e}");
                return;
            }
        };
        for (name, addr) in self.all_masters() {
            let request =
                RemotingCommand::request(request_code::HEART_BEAT).with_body(body.clone());
            match self.remoting.invoke(&addr, request, self.timeout()).await {
                Ok(r) if r.code == rc::SUCCESS => {}
                Ok(r) => debug!(broker = %name, code = r.code, "heartbeat refused"),
                Err(e) => debug!(broker = %name, "heartbeat failed: {e}"),
            }
        }
    }

    async fn unregister(&self, producer_group: Option<String>, consumer_group: Option<String>) {
        let header = UnregisterClientRequestHeader {
            client_id: self.config.client_id.clone(),
            producer_group,
            consumer_group,
        };
        for (_, addr) in self.all_masters() {
            let request =
                RemotingCommand::request_with_header(request_code::UNREGISTER_CLIENT, &header);
            let _ = self.remoting.invoke(&addr, request, self.timeout()).await;
        }
    }

    /// A broker asks about a half message: hand it to a producer of the topic.
    fn check_transaction_state(&self, peer: SocketAddr, req: &RemotingCommand) {
        let header = match req.decode_header::<CheckTransactionStateRequestHeader>() {
            Ok(h) => h,
            Err(e) => {
                warn!("bad CHECK_TRANSACTION_STATE header: {e}");
                return;
            }
        };
        let record = match MessageRecord::decode_bytes(&req.body) {
            Ok((r, _)) => r,
            Err(e) => {
                warn!("CHECK_TRANSACTION_STATE body is not a message: {e}");
                return;
            }
        };
        let props = record.properties_map();
        let topic = props
            .get(keys::REAL_TOPIC)
            .map(str::to_owned)
            .or_else(|| props.get(keys::PGROUP).map(str::to_owned))
            .unwrap_or_else(|| record.topic.clone());
        let broker = header
            .broker_name
            .clone()
            .filter(|b| !b.is_empty())
            .or_else(|| {
                let peer = peer.to_string();
                self.all_masters()
                    .into_iter()
                    .find(|(_, addr)| *addr == peer)
                    .map(|(name, _)| name)
            });
        let Some(broker) = broker else {
            debug!(%peer, "check-back from a broker this proxy does not know");
            return;
        };
        let transaction_id = encode_transaction_id(
            &broker,
            header.commit_log_offset,
            header.tran_state_table_offset,
        );
        let mut message = to_pb_message(&record);
        message.topic = Some(resource(&topic));
        let command = pb::TelemetryCommand {
            status: None,
            command: Some(
                pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(
                    pb::RecoverOrphanedTransactionCommand {
                        message: Some(message),
                        transaction_id,
                    },
                ),
            ),
        };
        let candidates: Vec<String> = lock(&self.registrations)
            .producers
            .iter()
            .filter(|(_, topics)| topics.contains(&topic))
            .map(|(client, _)| client.clone())
            .collect();
        for client in candidates {
            match self.sessions.push_command(&client, command.clone()) {
                Ok(()) => return,
                Err(e) => debug!(%client, "cannot push the check-back: {e}"),
            }
        }
        debug!(%topic, "no producer of the topic to ask about a half message");
    }
}

#[async_trait::async_trait]
impl MessagingBackend for RemoteBackend {
    async fn query_route(
        &self,
        _ctx: &RequestContext,
        request: pb::QueryRouteRequest,
    ) -> RpcResult<pb::QueryRouteResponse> {
        let topic = required_name(&request.topic, "topic")?;
        let route = self.inner.route(topic, true).await?;
        let types = self.inner.topic_type(topic, &route).await.accepted();
        let message_queues = route_queues(&route)
            .iter()
            .map(|q| self.inner.pb_queue(topic, q, &types))
            .collect();
        Ok(pb::QueryRouteResponse {
            status: Some(ok()),
            message_queues,
        })
    }

    async fn send_message(
        &self,
        ctx: &RequestContext,
        request: pb::SendMessageRequest,
    ) -> RpcResult<pb::SendMessageResponse> {
        let topic = send_topic(&request)?;
        let route = self.inner.route(&topic, false).await?;
        let topic_type = self.inner.topic_type(&topic, &route).await;
        let writable: Vec<RouteQueue> = route_queues(&route)
            .into_iter()
            .filter(|q| q.writable)
            .collect();
        let mut entries = Vec::with_capacity(request.messages.len());
        for message in request.messages {
            entries.push(
                self.inner
                    .send_one(ctx, topic_type, &writable, message)
                    .await,
            );
        }
        Ok(pb::SendMessageResponse {
            status: Some(send_status(&entries)),
            entries,
        })
    }

    async fn query_assignment(
        &self,
        _ctx: &RequestContext,
        request: pb::QueryAssignmentRequest,
    ) -> RpcResult<pb::QueryAssignmentResponse> {
        let topic = required_name(&request.topic, "topic")?;
        required_name(&request.group, "group")?;
        let route = self.inner.route(topic, false).await?;
        let types = self.inner.topic_type(topic, &route).await.accepted();
        let assignments = route_queues(&route)
            .iter()
            .filter(|q| q.readable)
            .map(|q| pb::Assignment {
                message_queue: Some(self.inner.pb_queue(topic, q, &types)),
            })
            .collect();
        Ok(pb::QueryAssignmentResponse {
            status: Some(ok()),
            assignments,
        })
    }

    async fn receive_message(
        &self,
        ctx: &RequestContext,
        request: pb::ReceiveMessageRequest,
    ) -> RpcResult<BackendStream<pb::ReceiveMessageResponse>> {
        use pb::receive_message_response::Content;
        let auto_renew = request.auto_renew;
        let mut pop = pop_request(request, self.inner.renewal.invisible_ms())?;
        pop.fifo = self
            .inner
            .group_config(&pop.group)
            .await
            .is_some_and(|g| g.consume_message_orderly);
        let route = self.inner.route(&pop.topic, false).await?;
        let brokers = Inner::readable_brokers(&route);
        if brokers.is_empty() {
            return Err(RpcError::new(
                pb::Code::Forbidden,
                format!("topic {} has no readable queue", pop.topic),
            ));
        }
        let start = self.inner.receive_index.fetch_add(1, Ordering::Relaxed);
        let order: Vec<&String> = (0..brokers.len())
            .filter_map(|i| brokers.get((start + i) % brokers.len()))
            .collect();
        // Every broker once without waiting, then a long poll on the first of the rotation.
        let mut found = None;
        for broker in &order {
            let (_, h, messages) = self.inner.pop_from(broker, &pop, 0).await?;
            if !messages.is_empty() {
                found = Some((h, messages));
                break;
            }
        }
        if found.is_none() && pop.poll_ms > 0 {
            if let Some(broker) = order.first() {
                let (_, h, messages) = self.inner.pop_from(broker, &pop, pop.poll_ms).await?;
                if !messages.is_empty() {
                    found = Some((h, messages));
                }
            }
        }
        let mut items = Vec::new();
        match found {
            Some((h, popped)) => {
                let mut messages = Vec::with_capacity(popped.len());
                for p in &popped {
                    messages.push(popped_to_pb(p)?);
                }
                if let Some(client_id) = ctx.client_id().filter(|_| auto_renew) {
                    let inner = Arc::downgrade(&self.inner);
                    let renewal = &self.inner.renewal;
                    renewal.track(inner, client_id, &pop.group, &pop.topic, &popped);
                }
                items.push(pb::ReceiveMessageResponse {
                    content: Some(Content::Status(ok())),
                });
                items.extend(messages.into_iter().map(|m| pb::ReceiveMessageResponse {
                    content: Some(Content::Message(m)),
                }));
                items.push(pb::ReceiveMessageResponse {
                    content: Some(Content::DeliveryTimestamp(timestamp(h.pop_time))),
                });
            }
            None => items.push(pb::ReceiveMessageResponse {
                content: Some(Content::Status(status(
                    pb::Code::MessageNotFound,
                    "no match message",
                ))),
            }),
        }
        Ok(Box::pin(tokio_stream::iter(items)))
    }

    async fn ack_message(
        &self,
        _ctx: &RequestContext,
        request: pb::AckMessageRequest,
    ) -> RpcResult<pb::AckMessageResponse> {
        let group = required_name(&request.group, "group")?;
        let topic = required_name(&request.topic, "topic")?;
        if request.entries.is_empty() {
            return Err(RpcError::new(pb::Code::BadRequest, "no entry to ack"));
        }
        let mut entries = Vec::with_capacity(request.entries.len());
        for entry in &request.entries {
            let handle = self
                .inner
                .renewed_handle(group, &entry.receipt_handle)
                .await;
            let outcome = self.inner.ack(group, topic, &handle).await;
            entries.push(ack_result(entry, outcome));
        }
        Ok(ack_response(entries))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        _ctx: &RequestContext,
        request: pb::ForwardMessageToDeadLetterQueueRequest,
    ) -> RpcResult<pb::ForwardMessageToDeadLetterQueueResponse> {
        let group = required_name(&request.group, "group")?.to_owned();
        let topic = required_name(&request.topic, "topic")?.to_owned();
        let current = self
            .inner
            .renewed_handle(&group, &request.receipt_handle)
            .await;
        let handle = parse_handle(&current)?;
        let commit_log_offset = handle.commit_log_offset.ok_or_else(|| {
            RpcError::new(
                pb::Code::InvalidReceiptHandle,
                "receipt handle has no commit log offset",
            )
        })?;
        let addr = self.inner.master(&handle.broker_name, &topic).await?;
        let header = ConsumerSendMsgBackRequestHeader {
            offset: commit_log_offset,
            group: group.clone(),
            delay_level: -1,
            origin_msg_id: Some(request.message_id.clone()).filter(|id| !id.is_empty()),
            origin_topic: Some(topic.clone()),
            unit_mode: false,
            max_reconsume_times: Some(request.max_delivery_attempts.max(1) - 1),
        };
        let response = self
            .inner
            .call(
                &addr,
                RemotingCommand::request_with_header(request_code::CONSUMER_SEND_MSG_BACK, &header),
                self.inner.timeout(),
            )
            .await?;
        if response.code != rc::SUCCESS {
            return Err(broker_error(&response));
        }
        self.inner.ack(&group, &topic, &current).await?;
        Ok(pb::ForwardMessageToDeadLetterQueueResponse { status: Some(ok()) })
    }

    async fn change_invisible_duration(
        &self,
        _ctx: &RequestContext,
        request: pb::ChangeInvisibleDurationRequest,
    ) -> RpcResult<pb::ChangeInvisibleDurationResponse> {
        let group = required_name(&request.group, "group")?;
        let topic = required_name(&request.topic, "topic")?;
        parse_handle(&request.receipt_handle)?;
        let invisible_ms = request
            .invisible_duration
            .as_ref()
            .map(duration_ms)
            .ok_or_else(|| {
                RpcError::new(
                    pb::Code::IllegalInvisibleTime,
                    "invisible duration is required",
                )
            })?;
        check_invisible_ms(invisible_ms)?;
        let current = self
            .inner
            .renewed_handle(group, &request.receipt_handle)
            .await;
        let receipt_handle = self
            .inner
            .change_invisible(group, topic, &current, invisible_ms)
            .await?;
        Ok(pb::ChangeInvisibleDurationResponse {
            status: Some(ok()),
            receipt_handle,
        })
    }

    async fn end_transaction(
        &self,
        _ctx: &RequestContext,
        request: pb::EndTransactionRequest,
    ) -> RpcResult<pb::EndTransactionResponse> {
        let topic = required_name(&request.topic, "topic")?.to_owned();
        if request.transaction_id.is_empty() {
            return Err(RpcError::new(
                pb::Code::InvalidTransactionId,
                "transaction id cannot be empty",
            ));
        }
        let Some((broker, commit_log_offset, tran_state_table_offset)) =
            decode_transaction_id(&request.transaction_id)
        else {
            return Err(RpcError::new(
                pb::Code::InvalidTransactionId,
                format!("unknown transaction id {}", request.transaction_id),
            ));
        };
        let commit_or_rollback = match pb::TransactionResolution::try_from(request.resolution) {
            Ok(pb::TransactionResolution::Commit) => sysflag::TRANSACTION_COMMIT_TYPE,
            Ok(pb::TransactionResolution::Rollback) => sysflag::TRANSACTION_ROLLBACK_TYPE,
            // Unknown leaves the half message to the check-back, as the broker does.
            _ => return Ok(pb::EndTransactionResponse { status: Some(ok()) }),
        };
        let addr = self.inner.master(&broker, &topic).await?;
        let header = EndTransactionRequestHeader {
            topic: Some(topic.clone()),
            producer_group: topic,
            tran_state_table_offset,
            commit_log_offset,
            commit_or_rollback,
            from_transaction_check: request.source
                == pb::TransactionSource::SourceServerCheck as i32,
            msg_id: request.message_id,
            transaction_id: Some(request.transaction_id),
        };
        let response = self
            .inner
            .call(
                &addr,
                RemotingCommand::request_with_header(request_code::END_TRANSACTION, &header),
                self.inner.timeout(),
            )
            .await?;
        match response.code {
            rc::SUCCESS => Ok(pb::EndTransactionResponse { status: Some(ok()) }),
            rc::INVALID_PARAMETER => Err(RpcError::new(
                pb::Code::InvalidTransactionId,
                response.remark.unwrap_or_default(),
            )),
            _ => Err(broker_error(&response)),
        }
    }

    async fn pull_message(
        &self,
        _ctx: &RequestContext,
        request: pb::PullMessageRequest,
    ) -> RpcResult<BackendStream<pb::PullMessageResponse>> {
        use pb::pull_message_response::Content;
        let group = required_name(&request.group, "group")?.to_owned();
        let queue = message_queue_required(&request.message_queue)?;
        let topic = required_name(&queue.topic, "topic")?.to_owned();
        let addr = self.inner.master(broker_of(queue)?, &topic).await?;
        let (expression_type, expression) = broker_filter(request.filter_expression.clone());
        let poll_ms = request
            .long_polling_timeout
            .as_ref()
            .map_or(0, duration_ms)
            .clamp(0, apogee_broker::pop::MAX_POLL_MS);
        let mut sys_flag = pull_sys_flag::FLAG_SUBSCRIPTION;
        if poll_ms > 0 {
            sys_flag |= pull_sys_flag::FLAG_SUSPEND;
        }
        let header = PullMessageRequestHeader {
            consumer_group: group,
            topic,
            queue_id: queue.id,
            queue_offset: request.offset,
            max_msg_nums: request.batch_size.clamp(1, 32),
            sys_flag,
            commit_offset: 0,
            suspend_timeout_millis: poll_ms,
            subscription: Some(expression),
            sub_version: 0,
            expression_type: Some(expression_type.to_owned()),
            max_msg_bytes: None,
            request_source: None,
            proxy_forward_client_id: None,
        };
        let timeout = self.inner.timeout() + Duration::from_millis(poll_ms as u64);
        let response = self
            .inner
            .call(
                &addr,
                RemotingCommand::request_with_header(request_code::PULL_MESSAGE, &header),
                timeout,
            )
            .await?;
        let head = match response.code {
            rc::SUCCESS => ok(),
            rc::PULL_OFFSET_MOVED => status(pb::Code::IllegalOffset, "the offset is out of range"),
            rc::PULL_NOT_FOUND | rc::PULL_RETRY_IMMEDIATELY => {
                status(pb::Code::MessageNotFound, "no new message")
            }
            _ => return Err(broker_error(&response)),
        };
        let h: PullMessageResponseHeader = decode(&response)?;
        let mut items = vec![pb::PullMessageResponse {
            content: Some(Content::Status(head)),
        }];
        if response.code == rc::SUCCESS {
            for record in MessageRecord::decode_all(&response.body) {
                let record = record.map_err(|e| {
                    RpcError::internal(format!("broker sent an unreadable message: {e}"))
                })?;
                items.push(pb::PullMessageResponse {
                    content: Some(Content::Message(to_pb_message(&record))),
                });
            }
        }
        items.push(pb::PullMessageResponse {
            content: Some(Content::NextOffset(h.next_begin_offset)),
        });
        Ok(Box::pin(tokio_stream::iter(items)))
    }

    async fn update_offset(
        &self,
        _ctx: &RequestContext,
        request: pb::UpdateOffsetRequest,
    ) -> RpcResult<pb::UpdateOffsetResponse> {
        let group = required_name(&request.group, "group")?;
        let queue = message_queue_required(&request.message_queue)?;
        let topic = required_name(&queue.topic, "topic")?;
        let addr = self.inner.master(broker_of(queue)?, topic).await?;
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: topic.to_owned(),
            queue_id: queue.id,
            commit_offset: request.offset,
        };
        let response = self
            .inner
            .call(
                &addr,
                RemotingCommand::request_with_header(request_code::UPDATE_CONSUMER_OFFSET, &header),
                self.inner.timeout(),
            )
            .await?;
        if response.code != rc::SUCCESS {
            return Err(broker_error(&response));
        }
        Ok(pb::UpdateOffsetResponse { status: Some(ok()) })
    }

    async fn get_offset(
        &self,
        _ctx: &RequestContext,
        request: pb::GetOffsetRequest,
    ) -> RpcResult<pb::GetOffsetResponse> {
        let group = required_name(&request.group, "group")?;
        let queue = message_queue_required(&request.message_queue)?;
        let topic = required_name(&queue.topic, "topic")?;
        let addr = self.inner.master(broker_of(queue)?, topic).await?;
        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: topic.to_owned(),
            queue_id: queue.id,
            set_zero_if_not_found: Some(false),
        };
        let response = self
            .inner
            .call(
                &addr,
                RemotingCommand::request_with_header(request_code::QUERY_CONSUMER_OFFSET, &header),
                self.inner.timeout(),
            )
            .await?;
        match response.code {
            rc::SUCCESS => Ok(pb::GetOffsetResponse {
                status: Some(ok()),
                offset: decode::<QueryConsumerOffsetResponseHeader>(&response)?.offset,
            }),
            rc::QUERY_NOT_FOUND => Err(RpcError::new(
                pb::Code::OffsetNotFound,
                format!("group {group} has no offset for {topic} queue {}", queue.id),
            )),
            _ => Err(broker_error(&response)),
        }
    }

    async fn query_offset(
        &self,
        _ctx: &RequestContext,
        request: pb::QueryOffsetRequest,
    ) -> RpcResult<pb::QueryOffsetResponse> {
        let queue = message_queue_required(&request.message_queue)?;
        let topic = required_name(&queue.topic, "topic")?;
        let addr = self.inner.master(broker_of(queue)?, topic).await?;
        let request = match pb::QueryOffsetPolicy::try_from(request.query_offset_policy) {
            Ok(pb::QueryOffsetPolicy::Beginning) => RemotingCommand::request_with_header(
                request_code::GET_MIN_OFFSET,
                &GetMinOffsetRequestHeader {
                    topic: topic.to_owned(),
                    queue_id: queue.id,
                },
            ),
            Ok(pb::QueryOffsetPolicy::End) => RemotingCommand::request_with_header(
                request_code::GET_MAX_OFFSET,
                &GetMaxOffsetRequestHeader {
                    topic: topic.to_owned(),
                    queue_id: queue.id,
                    committed: true,
                },
            ),
            Ok(pb::QueryOffsetPolicy::Timestamp) => {
                let ts = request
                    .timestamp
                    .as_ref()
                    .ok_or_else(|| RpcError::new(pb::Code::BadRequest, "timestamp is required"))?;
                RemotingCommand::request_with_header(
                    request_code::SEARCH_OFFSET_BY_TIMESTAMP,
                    &SearchOffsetRequestHeader {
                        topic: topic.to_owned(),
                        queue_id: queue.id,
                        timestamp: timestamp_ms(ts),
                        boundary_type: None,
                    },
                )
            }
            Err(_) => {
                return Err(RpcError::new(
                    pb::Code::BadRequest,
                    "unknown query offset policy",
                ))
            }
        };
        let code = request.code;
        let response = self
            .inner
            .call(&addr, request, self.inner.timeout())
            .await?;
        if response.code != rc::SUCCESS {
            return Err(broker_error(&response));
        }
        let offset = match code {
            request_code::GET_MIN_OFFSET => decode::<GetMinOffsetResponseHeader>(&response)?.offset,
            request_code::GET_MAX_OFFSET => decode::<GetMaxOffsetResponseHeader>(&response)?.offset,
            _ => decode::<SearchOffsetResponseHeader>(&response)?.offset,
        };
        Ok(pb::QueryOffsetResponse {
            status: Some(ok()),
            offset,
        })
    }

    async fn recall_message(
        &self,
        _: &RequestContext,
        request: pb::RecallMessageRequest,
    ) -> RpcResult<pb::RecallMessageResponse> {
        let topic = required_name(&request.topic, "topic")?;
        // The handle names the broker that holds the message; that broker checks the rest.
        let handle = RecallHandle::decode(&request.recall_handle)
            .map_err(|_| RpcError::new(pb::Code::BadRequest, INVALID_RECALL_HANDLE))?;
        let addr = self.inner.master(&handle.broker_name, topic).await?;
        let request = RemotingCommand::request_with_header(
            request_code::RECALL_MESSAGE,
            &RecallMessageRequestHeader {
                producer_group: None,
                topic: topic.to_owned(),
                recall_handle: request.recall_handle,
            },
        );
        let response = self
            .inner
            .call(&addr, request, self.inner.timeout())
            .await?;
        if response.code != rc::SUCCESS {
            return Err(map_recall_error(LocalError {
                code: response.code,
                remark: response.remark.unwrap_or_default(),
            }));
        }
        Ok(pb::RecallMessageResponse {
            status: Some(ok()),
            message_id: decode::<RecallMessageResponseHeader>(&response)?.msg_id,
        })
    }

    async fn sync_lite_subscription(
        &self,
        _: &RequestContext,
        _: pb::SyncLiteSubscriptionRequest,
    ) -> RpcResult<pb::SyncLiteSubscriptionResponse> {
        Err(RpcError::not_implemented("SyncLiteSubscription"))
    }

    async fn register_client(
        &self,
        ctx: &RequestContext,
        settings: &pb::Settings,
    ) -> RpcResult<()> {
        let Some(client_id) = ctx.client_id().map(str::to_owned) else {
            return Ok(());
        };
        let topics: Vec<String> = match &settings.pub_sub {
            Some(pb::settings::PubSub::Publishing(p)) => {
                let topics: BTreeSet<String> = p
                    .topics
                    .iter()
                    .filter(|t| !t.name.is_empty())
                    .map(|t| t.name.clone())
                    .collect();
                let list = topics.iter().cloned().collect();
                lock(&self.inner.registrations)
                    .producers
                    .insert(client_id, topics);
                list
            }
            Some(pb::settings::PubSub::Subscription(s)) => {
                let Some(group) = s.group.as_ref().filter(|g| !g.name.is_empty()) else {
                    return Ok(());
                };
                let subs: Subscriptions = s
                    .subscriptions
                    .iter()
                    .filter_map(|e| {
                        let topic = e.topic.as_ref()?.name.clone();
                        let (kind, expression) = broker_filter(e.expression.clone());
                        Some((topic, (kind.to_owned(), expression)))
                    })
                    .collect();
                let list = subs.keys().cloned().collect();
                lock(&self.inner.registrations)
                    .consumers
                    .insert(client_id, (group.name.clone(), subs));
                list
            }
            None => Vec::new(),
        };
        // Learn the brokers of the topics, then announce the new member to them at once.
        for topic in &topics {
            if let Err(e) = self.inner.route(topic, false).await {
                debug!(%topic, "no route while registering a client: {}", e.message);
            }
        }
        self.inner.heartbeat_all().await;
        Ok(())
    }

    async fn group_policy(
        &self,
        _ctx: &RequestContext,
        group: &pb::Resource,
    ) -> RpcResult<Option<GroupPolicy>> {
        Ok(self
            .inner
            .group_config(&group.name)
            .await
            .map(|g| GroupPolicy {
                fifo: g.consume_message_orderly,
                max_retry_times: g.retry_max_times,
                ..GroupPolicy::default()
            }))
    }

    async fn client_offline(
        &self,
        client_id: &str,
        _session: Option<&ClientSession>,
        _reason: OfflineReason,
    ) {
        renew::release(&self.inner, client_id).await;
        let (gone_producers, gone_consumer) = {
            let mut r = lock(&self.inner.registrations);
            let before = r.producer_groups();
            r.producers.remove(client_id);
            let after = r.producer_groups();
            let consumer = r.consumers.remove(client_id).map(|(g, _)| g);
            let gone_consumer = consumer.filter(|g| !r.consumer_groups().contains(g));
            let gone: Vec<String> = before.difference(&after).cloned().collect();
            (gone, gone_consumer)
        };
        for g in gone_producers {
            self.inner.unregister(Some(g), None).await;
        }
        if let Some(g) = gone_consumer {
            self.inner.unregister(None, Some(g)).await;
        }
    }
}

impl Inner {
    async fn ack(&self, group: &str, topic: &str, receipt_handle: &str) -> RpcResult<()> {
        let handle = parse_handle(receipt_handle)?;
        let addr = self.master(&handle.broker_name, topic).await?;
        let header = AckMessageRequestHeader {
            consumer_group: group.to_owned(),
            topic: topic.to_owned(),
            queue_id: handle.queue_id,
            extra_info: receipt_handle.to_owned(),
            offset: handle.queue_offset.unwrap_or_default(),
        };
        let response = self
            .call(
                &addr,
                RemotingCommand::request_with_header(request_code::ACK_MESSAGE, &header),
                self.timeout(),
            )
            .await?;
        if response.code == rc::SUCCESS {
            Ok(())
        } else {
            Err(handle_error(&response))
        }
    }
}

impl Inner {
    /// The handle to use for a message the client names by `handle`: its latest renewal's,
    /// once any renewal call under way is over. Stops renewing it.
    async fn renewed_handle(&self, group: &str, handle: &str) -> String {
        self.renewal.take(group, handle, self.timeout()).await
    }

    /// CHANGE_MESSAGE_INVISIBLETIME to the broker named in `receipt_handle`; returns the new
    /// handle.
    async fn change_invisible(
        &self,
        group: &str,
        topic: &str,
        receipt_handle: &str,
        invisible_ms: i64,
    ) -> RpcResult<String> {
        let handle = parse_handle(receipt_handle)?;
        let addr = self.master(&handle.broker_name, topic).await?;
        let header = ChangeInvisibleTimeRequestHeader {
            consumer_group: group.to_owned(),
            topic: topic.to_owned(),
            queue_id: handle.queue_id,
            extra_info: receipt_handle.to_owned(),
            offset: handle.queue_offset.unwrap_or_default(),
            invisible_time: invisible_ms,
        };
        let response = self
            .call(
                &addr,
                RemotingCommand::request_with_header(
                    request_code::CHANGE_MESSAGE_INVISIBLETIME,
                    &header,
                ),
                self.timeout(),
            )
            .await?;
        if response.code != rc::SUCCESS {
            return Err(handle_error(&response));
        }
        let h: ChangeInvisibleTimeResponseHeader = decode(&response)?;
        let changed = ReceiptHandle {
            pop_time_ms: h.pop_time,
            invisible_ms: h.invisible_time,
            revive_qid: h.revive_qid,
            ..handle
        };
        Ok(changed.encode())
    }
}

/// A refused ack or change of invisible time: a handle that is no longer current reads as an
/// invalid receipt handle, as in local mode.
fn handle_error(response: &RemotingCommand) -> RpcError {
    match response.code {
        rc::NO_MESSAGE | rc::INVALID_PARAMETER | rc::MESSAGE_ILLEGAL => RpcError::new(
            pb::Code::InvalidReceiptHandle,
            response.remark.clone().unwrap_or_default(),
        ),
        _ => broker_error(response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_name_the_broker_and_round_trip() {
        let id = encode_transaction_id("broker-b", 0x1234, 7);
        assert_eq!(id, "00000000000012340000000000000007broker-b");
        assert_eq!(
            decode_transaction_id(&id),
            Some(("broker-b".to_owned(), 0x1234, 7))
        );
        assert_eq!(
            decode_transaction_id("00000000000012340000000000000007"),
            None
        );
        assert_eq!(decode_transaction_id("short"), None);
        assert_eq!(decode_transaction_id(&format!("{}x", "Z".repeat(32))), None);
        assert_eq!(decode_transaction_id(&"é".repeat(20)), None);
    }

    #[test]
    fn start_offsets_are_read_per_queue_and_garbage_is_skipped() {
        let m = start_offsets(Some("0 1 5;1 3 9;junk;0 x 1"));
        assert_eq!(m.get(&1), Some(&("0".to_owned(), 5)));
        assert_eq!(m.get(&3), Some(&("1".to_owned(), 9)));
        assert_eq!(m.len(), 2);
        assert!(start_offsets(None).is_empty());
    }

    #[test]
    fn handles_without_broker_or_offset_are_invalid() {
        assert_eq!(
            parse_handle("").err().map(|e| e.code),
            Some(pb::Code::InvalidReceiptHandle)
        );
        assert_eq!(
            parse_handle("1 2 3 4 0 b 1").err().map(|e| e.code),
            Some(pb::Code::InvalidReceiptHandle)
        );
        let h = parse_handle("1 2 3 4 0 broker-a 1 5 99").expect("valid");
        assert_eq!(h.broker_name, "broker-a");
        assert_eq!(h.queue_offset, Some(5));
    }
}
