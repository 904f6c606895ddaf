//! The name server's request processor: decodes each request's header and body, applies it to the
//! route table or the KV config, and builds the response, as Java's `DefaultRequestProcessor` and
//! `ClientRequestProcessor` do. A header or body that cannot be read is answered `SYSTEM_ERROR`
//! with a remark (Java's answer to a processor exception); nothing here panics on input.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use apogee_protocol::body::{DataVersion, JsonBody, KVTable, RegisterBrokerBody, TopicRouteData};
use apogee_protocol::codes::{request_code as rc, response_code as code};
use apogee_protocol::header::{
    AddWritePermOfBrokerRequestHeader, AddWritePermOfBrokerResponseHeader,
    BrokerHeartbeatRequestHeader, CommandHeader, DeleteKVConfigRequestHeader,
    DeleteTopicFromNamesrvRequestHeader, GetBrokerMemberGroupRequestHeader,
    GetKVConfigRequestHeader, GetKVConfigResponseHeader, GetKVListByNamespaceRequestHeader,
    GetRouteInfoRequestHeader, GetTopicsByClusterRequestHeader, PutKVConfigRequestHeader,
    QueryDataVersionRequestHeader, QueryDataVersionResponseHeader, RegisterBrokerRequestHeader,
    RegisterBrokerResponseHeader, RegisterTopicRequestHeader, UnRegisterBrokerRequestHeader,
    WipeWritePermOfBrokerRequestHeader, WipeWritePermOfBrokerResponseHeader,
};
use apogee_protocol::message::crc32_masked;
use apogee_protocol::RemotingCommand;
use apogee_remoting::{
    not_supported, ConnectionHandle, HandlerFuture, RequestContext, RequestHandler,
};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::config::{parse_properties, ConfigUpdateError, NamesrvConfig};
use crate::kvconfig::{KvConfigManager, NAMESPACE_ORDER_TOPIC_CONFIG};
use crate::route::{BrokerRegistration, RemovedBroker, RouteInfoManager};

/// Every request code the name server answers; anything else gets REQUEST_CODE_NOT_SUPPORTED.
pub const SERVED_CODES: &[i32] = &[
    rc::PUT_KV_CONFIG,
    rc::GET_KV_CONFIG,
    rc::DELETE_KV_CONFIG,
    rc::REGISTER_BROKER,
    rc::UNREGISTER_BROKER,
    rc::GET_ROUTEINFO_BY_TOPIC,
    rc::GET_BROKER_CLUSTER_INFO,
    rc::WIPE_WRITE_PERM_OF_BROKER,
    rc::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
    rc::DELETE_TOPIC_IN_NAMESRV,
    rc::REGISTER_TOPIC_IN_NAMESRV,
    rc::GET_KVLIST_BY_NAMESPACE,
    rc::GET_TOPICS_BY_CLUSTER,
    rc::GET_SYSTEM_TOPIC_LIST_FROM_NS,
    rc::GET_UNIT_TOPIC_LIST,
    rc::GET_HAS_UNIT_SUB_TOPIC_LIST,
    rc::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST,
    rc::UPDATE_NAMESRV_CONFIG,
    rc::GET_NAMESRV_CONFIG,
    rc::QUERY_DATA_VERSION,
    rc::ADD_WRITE_PERM_OF_BROKER,
    rc::GET_BROKER_MEMBER_GROUP,
    rc::BROKER_HEARTBEAT,
];

/// The name server's request handler. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct NamesrvProcessor {
    inner: Arc<Inner>,
}

struct Inner {
    /// One lock over the whole route table, as Java has. A std lock: held only for in-memory
    /// work, never across `.await`.
    route: RwLock<RouteInfoManager>,
    kv: Arc<KvConfigManager>,
    config: RwLock<NamesrvConfig>,
    /// Connections that registered a broker, by id: watched so their close unregisters the
    /// broker, and closed when their broker expires.
    broker_connections: Mutex<HashMap<u64, ConnectionHandle>>,
}

impl std::fmt::Debug for NamesrvProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamesrvProcessor")
            .field("route", &*self.inner.route_read())
            .finish_non_exhaustive()
    }
}

impl NamesrvProcessor {
    pub fn new(config: NamesrvConfig, kv: Arc<KvConfigManager>, clock: Arc<dyn Clock>) -> Self {
        let route = RouteInfoManager::new(config.route_settings(), clock);
        Self {
            inner: Arc::new(Inner {
                route: RwLock::new(route),
                kv,
                config: RwLock::new(config),
                broker_connections: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn kv(&self) -> &Arc<KvConfigManager> {
        &self.inner.kv
    }

    /// The current configuration (UPDATE_NAMESRV_CONFIG may have changed some switches).
    pub fn config(&self) -> NamesrvConfig {
        self.inner.config_read().clone()
    }

    /// Runs `f` with read access to the route table.
    pub fn with_route<R>(&self, f: impl FnOnce(&RouteInfoManager) -> R) -> R {
        f(&self.inner.route_read())
    }

    /// Drops brokers past their heartbeat timeout and closes their connections. Returns them.
    pub fn scan_not_active_brokers(&self) -> Vec<RemovedBroker> {
        let removed = self.inner.route_write().scan_not_active_brokers();
        if !removed.is_empty() {
            let conns = self.inner.connections();
            for broker in &removed {
                if let Some(conn) = broker.channel_id.and_then(|id| conns.get(&id)) {
                    conn.close();
                }
            }
        }
        removed
    }

    /// Handles one request. `conn` is the connection it came on (`None` when called directly,
    /// e.g. in tests: then a registration cannot be tied to a connection).
    pub fn process(
        &self,
        conn: Option<&ConnectionHandle>,
        request: RemotingCommand,
    ) -> HandlerFuture {
        let inner = &self.inner;
        let reply = match request.code {
            rc::PUT_KV_CONFIG => return self.put_kv_config(request),
            rc::DELETE_KV_CONFIG => return self.delete_kv_config(request),
            rc::GET_KV_CONFIG => inner.get_kv_config(&request),
            rc::REGISTER_BROKER => self.register_broker(conn, &request),
            rc::UNREGISTER_BROKER => inner.unregister_broker(&request),
            rc::GET_ROUTEINFO_BY_TOPIC => inner.get_route_info(&request),
            rc::GET_BROKER_CLUSTER_INFO => encoded(&request, &inner.route_read().cluster_info()),
            rc::WIPE_WRITE_PERM_OF_BROKER => inner.wipe_write_perm(&request),
            rc::ADD_WRITE_PERM_OF_BROKER => inner.add_write_perm(&request),
            rc::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
                if inner.config_read().enable_all_topic_list {
                    encoded(&request, &inner.route_read().all_topics())
                } else {
                    disabled(&request)
                }
            }
            rc::DELETE_TOPIC_IN_NAMESRV => inner.delete_topic(&request),
            rc::REGISTER_TOPIC_IN_NAMESRV => inner.register_topic(&request),
            rc::GET_KVLIST_BY_NAMESPACE => inner.get_kv_list(&request),
            rc::GET_TOPICS_BY_CLUSTER => inner.get_topics_by_cluster(&request),
            rc::GET_SYSTEM_TOPIC_LIST_FROM_NS => {
                encoded(&request, &inner.route_read().system_topic_list())
            }
            rc::GET_UNIT_TOPIC_LIST
            | rc::GET_HAS_UNIT_SUB_TOPIC_LIST
            | rc::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST => inner.get_unit_topics(&request),
            rc::QUERY_DATA_VERSION => inner.query_data_version(&request),
            rc::BROKER_HEARTBEAT => inner.broker_heartbeat(&request),
            rc::GET_BROKER_MEMBER_GROUP => inner.get_broker_member_group(&request),
            rc::UPDATE_NAMESRV_CONFIG => inner.update_config(conn, &request),
            rc::GET_NAMESRV_CONFIG => {
                success(&request).with_body(inner.config_read().to_properties_text().into_bytes())
            }
            _ => not_supported(&request),
        };
        HandlerFuture::reply(reply)
    }

    // ---- KV config (writes touch the disk, so they run on the blocking pool) ------------------

    fn put_kv_config(&self, request: RemotingCommand) -> HandlerFuture {
        let h: PutKVConfigRequestHeader = match header(&request) {
            Ok(h) => h,
            Err(resp) => return HandlerFuture::reply(resp),
        };
        let kv = Arc::clone(&self.inner.kv);
        HandlerFuture::new(async move {
            let result =
                tokio::task::spawn_blocking(move || kv.put(&h.namespace, &h.key, &h.value)).await;
            Some(match result {
                Ok(Ok(())) => success(&request),
                Ok(Err(e)) => system_error(&request, format!("persisting KV config failed: {e}")),
                Err(e) => system_error(&request, format!("KV config write failed: {e}")),
            })
        })
    }

    fn delete_kv_config(&self, request: RemotingCommand) -> HandlerFuture {
        let h: DeleteKVConfigRequestHeader = match header(&request) {
            Ok(h) => h,
            Err(resp) => return HandlerFuture::reply(resp),
        };
        let kv = Arc::clone(&self.inner.kv);
        HandlerFuture::new(async move {
            let result = tokio::task::spawn_blocking(move || kv.delete(&h.namespace, &h.key)).await;
            Some(match result {
                Ok(Ok(_)) => success(&request),
                Ok(Err(e)) => system_error(&request, format!("persisting KV config failed: {e}")),
                Err(e) => system_error(&request, format!("KV config write failed: {e}")),
            })
        })
    }

    // ---- broker registration ---------------------------------------------------------------

    fn register_broker(
        &self,
        conn: Option<&ConnectionHandle>,
        request: &RemotingCommand,
    ) -> RemotingCommand {
        let h: RegisterBrokerRequestHeader = match header(request) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        if h.body_crc32 != 0 {
            let crc = crc32_masked(&request.body);
            if i64::from(crc) != i64::from(h.body_crc32) {
                warn!(broker = %h.broker_addr, expected = h.body_crc32, actual = crc, "register broker: body crc32 mismatch");
                return system_error(request, "crc32 not match");
            }
        }
        if h.compressed {
            // Java brokers never set it (they send `compressed=false` even for a compressed body).
            return system_error(request, "compressed RegisterBrokerBody is not supported");
        }
        let body = if request.body.is_empty() {
            RegisterBrokerBody::default()
        } else {
            match RegisterBrokerBody::decode(&request.body) {
                Ok(b) => b,
                Err(e) => {
                    return system_error(
                        request,
                        format!("Failed to decode RegisterBrokerBody: {e}"),
                    )
                }
            }
        };
        let reg = BrokerRegistration {
            cluster_name: h.cluster_name,
            broker_addr: h.broker_addr,
            broker_name: h.broker_name,
            broker_id: h.broker_id,
            ha_server_addr: h.ha_server_addr,
            zone_name: h.zone_name,
            heartbeat_timeout_ms: h.heartbeat_timeout_millis,
            enable_acting_master: h.enable_acting_master,
            topic_config: body.topic_config_serialize_wrapper,
            filter_server_list: body.filter_server_list,
            channel_id: conn.map(ConnectionHandle::id),
        };
        let (broker_addr, broker_name) = (reg.broker_addr.clone(), reg.broker_name.clone());
        let result = self.inner.route_write().register_broker(reg);
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "register broker refused");
                return system_error(request, "register broker failed");
            }
        };
        debug!(broker = %broker_name, addr = %broker_addr, "broker registered");
        if let Some(conn) = conn {
            self.watch_connection(conn);
        }
        let mut response = success(request).with_header(&RegisterBrokerResponseHeader {
            ha_server_addr: result.ha_server_addr,
            master_addr: result.master_addr,
        });
        if self.inner.config_read().return_order_topic_config_to_broker {
            if let Some(table) = self.inner.kv.list(NAMESPACE_ORDER_TOPIC_CONFIG) {
                match (KVTable { table }).encode() {
                    Ok(bytes) => response = response.with_body(bytes),
                    Err(e) => {
                        return system_error(request, format!("encoding KV table failed: {e}"))
                    }
                }
            }
        }
        response
    }

    /// Unregisters the brokers of `conn` once it closes (Java's `onChannelDestroy`).
    fn watch_connection(&self, conn: &ConnectionHandle) {
        let id = conn.id();
        {
            let mut conns = self.inner.connections();
            if conns.contains_key(&id) {
                return;
            }
            conns.insert(id, conn.clone());
        }
        let inner = Arc::downgrade(&self.inner);
        let conn = conn.clone();
        tokio::spawn(async move {
            conn.closed().await;
            if let Some(inner) = inner.upgrade() {
                inner.connections().remove(&id);
                let removed = inner.route_write().on_channel_destroy(id);
                if !removed.is_empty() {
                    info!(
                        connection = id,
                        brokers = removed.len(),
                        "broker connection closed, brokers unregistered"
                    );
                }
            }
        });
    }
}

impl RequestHandler for NamesrvProcessor {
    fn handle(&self, ctx: RequestContext, request: RemotingCommand) -> HandlerFuture {
        self.process(Some(ctx.connection()), request)
    }
}

impl Inner {
    fn route_read(&self) -> RwLockReadGuard<'_, RouteInfoManager> {
        self.route.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn route_write(&self) -> RwLockWriteGuard<'_, RouteInfoManager> {
        self.route.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn config_read(&self) -> RwLockReadGuard<'_, NamesrvConfig> {
        self.config.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn connections(&self) -> MutexGuard<'_, HashMap<u64, ConnectionHandle>> {
        self.broker_connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn get_kv_config(&self, request: &RemotingCommand) -> RemotingCommand {
        let h: GetKVConfigRequestHeader = match header(request) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        match self.kv.get(&h.namespace, &h.key) {
            Some(value) => {
                success(request).with_header(&GetKVConfigResponseHeader { value: Some(value) })
            }
            None => RemotingCommand::response_to(
                request,
                code::QUERY_NOT_FOUND,
                Some(format!(
                    "No config item, Namespace: {} Key: {}",
                    h.namespace, h.key
                )),
            ),
        }
    }

    fn get_kv_list(&self, request: &RemotingCommand) -> RemotingCommand {
        let h: GetKVListByNamespaceRequestHeader = match header(request) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        match self.kv.list(&h.namespace) {
            Some(table) => encoded(request, &KVTable { table }),
            None => RemotingCommand::response_to(
                request,
                code::QUERY_NOT_FOUND,
                Some(format!("No config item, Namespace: {}", h.namespace)),
            ),
        }
    }

    fn unregister_broker(&self, request: &RemotingCommand) -> RemotingCommand {
        let h: UnRegisterBrokerRequestHeader = match header(request) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        self.route_write().unregister_broker(&h);
        success(request)
    }

    fn get_route_info(&self, request: &RemotingCommand) -> RemotingCommand {
        let h: GetRouteInfoRequestHeader = match header(request) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        let Some(mut route) = self.route_read().pick_topic_route(&h.topic) else {
            return RemotingCommand::response_to(
                request,
                code::TOPIC_NOT_EXIST,
                Some(format!(
                    "No topic route info in name server for the topic: {}",
                    h.topic
                )),
            );
        };
        if self.config_read().order_message_enable {
            route.order_topic_conf = self.kv.get(NAMESPACE_ORDER_TOPIC_CONFIG, &h.topic);
        }
        match route.encode_for(
            request.version,
            h.accept_standard_json_only.unwrap_or(false),
        ) {
            Ok(body) => success(request).with_body(body),
            Err(e) => system_error(request, format!("encoding route failed: {e}")),
        }
    }

    fn wipe_write_perm(&self, request: &RemotingCommand) -> RemotingCommand {
        let h: WipeWritePermOfBrokerRequestHeader = match header(request) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        let count = self.route_write().wipe_write_perm_of_broker(&h.broker_name);
        info!(broker = %h.broker_name, topics = count, "write permission wiped");
        success(request).with_header(&WipeWritePermOfBrokerResponseHeader {
            wipe_topic_count: count,
        })
    }

    fn add_write_perm(&self, request: &RemotingCommand) -> RemotingCommand {
        let h: AddWritePermOfBrokerRequestHeader = match header(request) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        let count = self.route_write().add_write_perm_of_broker(&h.broker_name);
        info!(broker = %h.broker_name, topics = count, "write permission added");
        success(request).with_header(&AddWritePermOfBrokerResponseHeader {
            add_topic_count: count,
        })
    }

    fn delete_topic(&self, request: &RemotingCommand) -> RemotingCommand {
        let h: DeleteTopicFromNamesrvRequestHeader = match header(request) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        let mut route = self.route_write();
        match h.cluster_name.as_deref().filter(|c| !c.is_empty()) {
            Some(cluster) => route.delete_topic_in_cluster(&h.topic, cluster),
            None => route.delete_topic(&h.topic),
        };
        info!(topic = %h.topic, cluster = ?h.cluster_name, "topic deleted from name server");
        success(request)
    }

    fn register_topic(&self, request: &RemotingCommand) -> RemotingCommand {
        let h: RegisterTopicRequestHeader = match header(request) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        if request.body.is_empty() {
            return success(request);
        }
        let route = match TopicRouteData::decode(&request.body) {
            Ok(r) => r,
            Err(e) => {
                return system_error(request, format!("Failed to decode TopicRouteData: {e}"))
            }
        };
        if !route.queue_datas.is_empty() {
            self.route_write()
                .register_topic(&h.topic, &route.queue_datas);
        }
        success(request)
    }

    fn get_topics_by_cluster(&self, request: &RemotingCommand) -> RemotingCommand {
        if !self.config_read().enable_topic_list {
            return disabled(request);
        }
        let h: GetTopicsByClusterRequestHeader = match header(request) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        encoded(request, &self.route_read().topics_by_cluster(&h.cluster))
    }

    fn get_unit_topics(&self, request: &RemotingCommand) -> RemotingCommand {
        if !self.config_read().enable_topic_list {
            return disabled(request);
        }
        let route = self.route_read();
        let list = match request.code {
            rc::GET_UNIT_TOPIC_LIST => route.unit_topics(),
            rc::GET_HAS_UNIT_SUB_TOPIC_LIST => route.has_unit_sub_topics(),
            _ => route.has_unit_sub_ununit_topics(),
        };
        encoded(request, &list)
    }

    fn query_data_version(&self, request: &RemotingCommand) -> RemotingCommand {
        let h: QueryDataVersionRequestHeader = match header(request) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        let version = match DataVersion::decode(&request.body) {
            Ok(v) => v,
            Err(e) => return system_error(request, format!("Failed to decode DataVersion: {e}")),
        };
        let (changed, known) =
            self.route_write()
                .query_data_version(&h.cluster_name, &h.broker_addr, &version);
        let mut response =
            success(request).with_header(&QueryDataVersionResponseHeader { changed });
        if let Some(known) = known {
            match known.encode() {
                Ok(bytes) => response = response.with_body(bytes),
                Err(e) => {
                    return system_error(request, format!("encoding data version failed: {e}"))
                }
            }
        }
        response
    }

    fn broker_heartbeat(&self, request: &RemotingCommand) -> RemotingCommand {
        let h: BrokerHeartbeatRequestHeader = match header(request) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        self.route_write()
            .broker_heartbeat(&h.cluster_name, &h.broker_addr);
        success(request)
    }

    fn get_broker_member_group(&self, request: &RemotingCommand) -> RemotingCommand {
        let h: GetBrokerMemberGroupRequestHeader = match header(request) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        let broker_addrs = self.route_read().broker_member_group(&h.broker_name);
        encoded(
            request,
            &GetBrokerMemberGroupResponseBody {
                broker_member_group: BrokerMemberGroup {
                    broker_addrs,
                    broker_name: h.broker_name,
                    cluster: h.cluster_name,
                },
            },
        )
    }

    fn update_config(
        &self,
        conn: Option<&ConnectionHandle>,
        request: &RemotingCommand,
    ) -> RemotingCommand {
        let peer = conn.map(|c| c.peer_addr().to_string()).unwrap_or_default();
        if request.body.is_empty() {
            return success(request);
        }
        let Ok(text) = std::str::from_utf8(&request.body) else {
            return system_error(request, "config body is not UTF-8");
        };
        let props = parse_properties(text);
        let mut config = self.config.write().unwrap_or_else(PoisonError::into_inner);
        match config.apply_properties(&props) {
            Ok(()) => {
                *self.route_write().settings_mut() = config.route_settings();
                info!(%peer, ?props, "name server config updated");
                success(request)
            }
            Err(e) => {
                warn!(%peer, error = %e, "name server config update refused");
                let response_code = match e {
                    ConfigUpdateError::BlackListed(_) => code::NO_PERMISSION,
                    _ => code::INVALID_PARAMETER,
                };
                RemotingCommand::response_to(request, response_code, Some(e.to_string()))
            }
        }
    }
}

/// `body/BrokerMemberGroup.java`.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BrokerMemberGroup {
    broker_addrs: std::collections::BTreeMap<i64, String>,
    broker_name: String,
    cluster: String,
}

/// `body/GetBrokerMemberGroupResponseBody.java`.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetBrokerMemberGroupResponseBody {
    broker_member_group: BrokerMemberGroup,
}

impl JsonBody for GetBrokerMemberGroupResponseBody {}

fn header<H: CommandHeader>(request: &RemotingCommand) -> Result<H, RemotingCommand> {
    request
        .decode_header()
        .map_err(|e| system_error(request, format!("invalid request header: {e}")))
}

fn success(request: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(request, code::SUCCESS, None)
}

fn system_error(request: &RemotingCommand, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::response_to(request, code::SYSTEM_ERROR, Some(remark.into()))
}

/// Java's answer when a topic list is switched off.
fn disabled(request: &RemotingCommand) -> RemotingCommand {
    system_error(request, "disable")
}

/// SUCCESS with `body` in the fastjson-default form, as Java's `encode()` writes it.
fn encoded<B: JsonBody>(request: &RemotingCommand, body: &B) -> RemotingCommand {
    match body.encode() {
        Ok(bytes) => success(request).with_body(bytes),
        Err(e) => system_error(request, format!("encoding response body failed: {e}")),
    }
}

#[cfg(test)]
#[path = "processor_tests.rs"]
mod tests;
