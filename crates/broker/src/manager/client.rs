//! Connected clients: consumer groups with their channels and subscriptions (`ConsumerManager`),
//! and producer groups with their channels (`ProducerManager`).
//!
//! Both are plain state machines: methods take the current time and return the connections a
//! membership change must notify (NOTIFY_CONSUMER_IDS_CHANGED), so the logic is tested without
//! sockets and the caller does the sending.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use apogee_protocol::body::{
    Connection, ConsumeFromWhere, ConsumeType, ConsumerConnection, MessageModel, SubscriptionData,
};
use apogee_protocol::LanguageCode;
use apogee_remoting::ConnectionHandle;

use crate::manager::lock;

/// One client connection as a group member (`ClientChannelInfo`).
#[derive(Debug, Clone)]
pub struct ClientChannel {
    pub connection: ConnectionHandle,
    pub client_id: String,
    pub language: LanguageCode,
    pub version: i32,
    pub last_update_ms: i64,
}

impl ClientChannel {
    pub fn id(&self) -> u64 {
        self.connection.id()
    }

    /// The admin view (`Connection` body).
    pub fn to_connection(&self) -> Connection {
        Connection {
            client_addr: self.connection.peer_addr().to_string(),
            client_id: self.client_id.clone(),
            language: self.language,
            version: self.version,
        }
    }
}

/// A consumer group's live state (`ConsumerGroupInfo`).
#[derive(Debug, Clone)]
pub struct ConsumerGroupInfo {
    /// By connection id.
    pub channels: HashMap<u64, ClientChannel>,
    /// By topic.
    pub subscriptions: BTreeMap<String, SubscriptionData>,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: Option<ConsumeFromWhere>,
}

impl ConsumerGroupInfo {
    fn new(
        consume_type: ConsumeType,
        message_model: MessageModel,
        consume_from_where: Option<ConsumeFromWhere>,
    ) -> Self {
        Self {
            channels: HashMap::new(),
            subscriptions: BTreeMap::new(),
            consume_type,
            message_model,
            consume_from_where,
        }
    }

    /// Client ids in a stable order (clients sort them anyway).
    pub fn client_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .channels
            .values()
            .map(|c| c.client_id.clone())
            .collect();
        ids.sort();
        ids
    }

    fn connections(&self) -> Vec<ConnectionHandle> {
        self.channels
            .values()
            .map(|c| c.connection.clone())
            .collect()
    }

    /// Adds or refreshes a channel; true when it is new.
    fn update_channel(
        &mut self,
        channel: ClientChannel,
        consume_type: ConsumeType,
        message_model: MessageModel,
        consume_from_where: Option<ConsumeFromWhere>,
    ) -> bool {
        self.consume_type = consume_type;
        self.message_model = message_model;
        self.consume_from_where = consume_from_where;
        match self.channels.get_mut(&channel.id()) {
            Some(existing) => {
                existing.last_update_ms = channel.last_update_ms;
                if existing.client_id != channel.client_id {
                    existing.client_id = channel.client_id;
                }
                false
            }
            None => {
                self.channels.insert(channel.id(), channel);
                true
            }
        }
    }

    /// Replaces the subscriptions; true when the set of topics changed. A newer version of a
    /// known topic's subscription replaces the old one without counting as a change, as in Java.
    fn update_subscriptions(&mut self, subs: &[SubscriptionData]) -> bool {
        let mut changed = false;
        for sub in subs {
            match self.subscriptions.get(&sub.topic) {
                None => {
                    self.subscriptions.insert(sub.topic.clone(), sub.clone());
                    changed = true;
                }
                Some(old) if sub.sub_version > old.sub_version => {
                    self.subscriptions.insert(sub.topic.clone(), sub.clone());
                }
                Some(_) => {}
            }
        }
        let before = self.subscriptions.len();
        self.subscriptions
            .retain(|topic, _| subs.iter().any(|s| &s.topic == topic));
        changed || self.subscriptions.len() != before
    }
}

/// What a membership change asks of the caller.
#[derive(Debug, Default)]
pub struct Membership {
    /// The registration added a channel or changed the subscribed topics.
    pub changed: bool,
    /// Send NOTIFY_CONSUMER_IDS_CHANGED for `group` to these connections.
    pub notify: Vec<(String, ConnectionHandle)>,
    /// Expired connections the caller should close.
    pub close: Vec<ConnectionHandle>,
}

/// A consumer registration from a heartbeat.
#[derive(Debug, Clone)]
pub struct ConsumerRegistration<'a> {
    pub group: &'a str,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: Option<ConsumeFromWhere>,
    /// `None`: a heartbeat v2 without subscriptions (keep the known ones).
    pub subscriptions: Option<&'a [SubscriptionData]>,
    /// The group's `notifyConsumerIdsChangedEnable`.
    pub notify_enabled: bool,
}

#[derive(Default)]
pub struct ConsumerManager {
    groups: Mutex<HashMap<String, ConsumerGroupInfo>>,
}

impl ConsumerManager {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&self, reg: ConsumerRegistration<'_>, channel: ClientChannel) -> Membership {
        let mut groups = lock(&self.groups);
        let info = groups.entry(reg.group.to_owned()).or_insert_with(|| {
            ConsumerGroupInfo::new(reg.consume_type, reg.message_model, reg.consume_from_where)
        });
        let new_channel = info.update_channel(
            channel,
            reg.consume_type,
            reg.message_model,
            reg.consume_from_where,
        );
        let new_subs = match reg.subscriptions {
            Some(subs) => info.update_subscriptions(subs),
            None => false,
        };
        let changed = new_channel || new_subs;
        let mut out = Membership {
            changed,
            ..Membership::default()
        };
        if changed && reg.notify_enabled && info.message_model != MessageModel::Broadcasting {
            out.notify = notify_all(reg.group, info);
        }
        out
    }

    /// UNREGISTER_CLIENT for one group.
    pub fn unregister(&self, group: &str, connection_id: u64, notify_enabled: bool) -> Membership {
        let mut groups = lock(&self.groups);
        let mut out = Membership::default();
        let Some(info) = groups.get_mut(group) else {
            return out;
        };
        out.changed = info.channels.remove(&connection_id).is_some();
        let broadcast = info.message_model == MessageModel::Broadcasting;
        if info.channels.is_empty() {
            groups.remove(group);
        } else if notify_enabled && !broadcast {
            out.notify = notify_all(group, info);
        }
        out
    }

    /// A connection closed: it leaves every group it was in.
    pub fn channel_closed(&self, connection_id: u64) -> Membership {
        let mut groups = lock(&self.groups);
        let mut out = Membership::default();
        groups.retain(|group, info| {
            if info.channels.remove(&connection_id).is_none() {
                return true;
            }
            out.changed = true;
            if info.channels.is_empty() {
                return false;
            }
            if info.message_model != MessageModel::Broadcasting {
                out.notify.extend(notify_all(group, info));
            }
            true
        });
        out
    }

    /// Drops channels silent for longer than `timeout_ms`; the rest of their groups are notified
    /// and the expired connections handed back to be closed.
    pub fn scan_expired(&self, now_ms: i64, timeout_ms: u64) -> Membership {
        let mut groups = lock(&self.groups);
        let mut out = Membership::default();
        let timeout = i64::try_from(timeout_ms).unwrap_or(i64::MAX);
        groups.retain(|group, info| {
            let before = info.channels.len();
            info.channels.retain(|_, c| {
                let expired = now_ms.saturating_sub(c.last_update_ms) > timeout;
                if expired {
                    tracing::warn!(group, client = %c.client_id, "consumer channel expired");
                    out.close.push(c.connection.clone());
                }
                !expired
            });
            if info.channels.len() == before {
                return true;
            }
            out.changed = true;
            if info.channels.is_empty() {
                return false;
            }
            if info.message_model != MessageModel::Broadcasting {
                out.notify.extend(notify_all(group, info));
            }
            true
        });
        out
    }

    pub fn group(&self, group: &str) -> Option<ConsumerGroupInfo> {
        lock(&self.groups).get(group).cloned()
    }

    pub fn subscription(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        lock(&self.groups)
            .get(group)
            .and_then(|g| g.subscriptions.get(topic))
            .cloned()
    }

    pub fn client_ids(&self, group: &str) -> Vec<String> {
        lock(&self.groups)
            .get(group)
            .map(ConsumerGroupInfo::client_ids)
            .unwrap_or_default()
    }

    /// The admin view of a group (`GET_CONSUMER_CONNECTION_LIST`).
    pub fn connection_view(&self, group: &str) -> Option<ConsumerConnection> {
        let groups = lock(&self.groups);
        let info = groups.get(group)?;
        let mut connection_set: Vec<Connection> = info
            .channels
            .values()
            .map(ClientChannel::to_connection)
            .collect();
        connection_set.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Some(ConsumerConnection {
            connection_set,
            consume_from_where: info.consume_from_where,
            consume_type: info.consume_type,
            message_model: info.message_model,
            subscription_table: info.subscriptions.clone(),
        })
    }

    /// Groups currently online.
    pub fn group_names(&self) -> Vec<String> {
        lock(&self.groups).keys().cloned().collect()
    }
}

fn notify_all(group: &str, info: &ConsumerGroupInfo) -> Vec<(String, ConnectionHandle)> {
    info.connections()
        .into_iter()
        .map(|c| (group.to_owned(), c))
        .collect()
}

#[derive(Default)]
pub struct ProducerManager {
    groups: Mutex<HashMap<String, HashMap<u64, ClientChannel>>>,
    /// Round-robin position of [`ProducerManager::available_channel`].
    next_channel: AtomicUsize,
}

impl ProducerManager {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&self, group: &str, channel: ClientChannel) {
        let mut groups = lock(&self.groups);
        let members = groups.entry(group.to_owned()).or_default();
        match members.get_mut(&channel.id()) {
            Some(existing) => existing.last_update_ms = channel.last_update_ms,
            None => {
                members.insert(channel.id(), channel);
            }
        }
    }

    pub fn unregister(&self, group: &str, connection_id: u64) {
        let mut groups = lock(&self.groups);
        if let Some(members) = groups.get_mut(group) {
            members.remove(&connection_id);
            if members.is_empty() {
                groups.remove(group);
            }
        }
    }

    /// One open connection of `group` (`getAvailableChannel`), taking members in turn so that
    /// check-backs spread over the group; closed connections not yet dropped are passed over.
    pub fn available_channel(&self, group: &str) -> Option<ConnectionHandle> {
        let groups = lock(&self.groups);
        let members = groups.get(group)?;
        let mut open: Vec<&ClientChannel> = members
            .values()
            .filter(|c| !c.connection.is_closed())
            .collect();
        if open.is_empty() {
            return None;
        }
        open.sort_by_key(|c| c.id());
        let turn = self.next_channel.fetch_add(1, Ordering::Relaxed);
        Some(open[turn % open.len()].connection.clone())
    }

    pub fn channel_closed(&self, connection_id: u64) {
        lock(&self.groups).retain(|_, members| {
            members.remove(&connection_id);
            !members.is_empty()
        });
    }

    /// Drops channels silent for longer than `timeout_ms`; returns their connections to close.
    pub fn scan_expired(&self, now_ms: i64, timeout_ms: u64) -> Vec<ConnectionHandle> {
        let timeout = i64::try_from(timeout_ms).unwrap_or(i64::MAX);
        let mut close = Vec::new();
        lock(&self.groups).retain(|group, members| {
            members.retain(|_, c| {
                let expired = now_ms.saturating_sub(c.last_update_ms) > timeout;
                if expired {
                    tracing::warn!(group, client = %c.client_id, "producer channel expired");
                    close.push(c.connection.clone());
                }
                !expired
            });
            !members.is_empty()
        });
        close
    }

    /// The admin view of a group (`GET_PRODUCER_CONNECTION_LIST`).
    pub fn connections(&self, group: &str) -> Option<Vec<Connection>> {
        let groups = lock(&self.groups);
        let members = groups.get(group)?;
        let mut list: Vec<Connection> =
            members.values().map(ClientChannel::to_connection).collect();
        list.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Some(list)
    }

    pub fn group_names(&self) -> Vec<String> {
        lock(&self.groups).keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use apogee_protocol::RemotingCommand;
    use apogee_remoting::{
        HandlerFuture, RemotingClient, RemotingConfig, RemotingServer, RequestContext,
    };
    use tokio::sync::mpsc;

    use super::*;

    /// `n` real server-side connection handles (the manager keeps handles, which only a live
    /// connection has).
    async fn connections(n: usize) -> (RemotingServer, Vec<RemotingClient>, Vec<ConnectionHandle>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let server = RemotingServer::bind(
            "127.0.0.1:0",
            RemotingConfig::default(),
            move |ctx: RequestContext, _req: RemotingCommand| {
                let _ = tx.send(ctx.connection().clone());
                HandlerFuture::reply(RemotingCommand::response(0, None))
            },
        )
        .await
        .unwrap();
        let addr = server.local_addr().to_string();
        let mut clients = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..n {
            let c = RemotingClient::new(RemotingConfig::default());
            c.invoke(&addr, RemotingCommand::request(1), Duration::from_secs(5))
                .await
                .unwrap();
            handles.push(rx.recv().await.unwrap());
            clients.push(c);
        }
        (server, clients, handles)
    }

    fn channel(conn: &ConnectionHandle, id: &str, at_ms: i64) -> ClientChannel {
        ClientChannel {
            connection: conn.clone(),
            client_id: id.into(),
            language: LanguageCode::Java,
            version: 0,
            last_update_ms: at_ms,
        }
    }

    fn reg<'a>(subs: &'a [SubscriptionData], model: MessageModel) -> ConsumerRegistration<'a> {
        ConsumerRegistration {
            group: "G",
            consume_type: ConsumeType::ConsumePassively,
            message_model: model,
            consume_from_where: None,
            subscriptions: Some(subs),
            notify_enabled: true,
        }
    }

    fn sub(topic: &str, version: i64) -> SubscriptionData {
        SubscriptionData {
            topic: topic.into(),
            sub_string: "*".into(),
            sub_version: version,
            ..SubscriptionData::default()
        }
    }

    #[tokio::test]
    async fn joins_and_subscription_changes_notify_the_whole_group() {
        let (_server, _clients, conns) = connections(2).await;
        let m = ConsumerManager::new();
        let subs = [sub("T", 1)];
        let first = m.register(
            reg(&subs, MessageModel::Clustering),
            channel(&conns[0], "a", 0),
        );
        assert!(first.changed);
        assert_eq!(first.notify.len(), 1);
        let again = m.register(
            reg(&subs, MessageModel::Clustering),
            channel(&conns[0], "a", 10),
        );
        assert!(!again.changed && again.notify.is_empty());
        // A newer version of the same subscription replaces it quietly.
        let newer = [sub("T", 2)];
        assert!(
            !m.register(
                reg(&newer, MessageModel::Clustering),
                channel(&conns[0], "a", 20)
            )
            .changed
        );
        assert_eq!(m.subscription("G", "T").unwrap().sub_version, 2);
        let second = m.register(
            reg(&newer, MessageModel::Clustering),
            channel(&conns[1], "b", 20),
        );
        assert_eq!(second.notify.len(), 2);
        assert_eq!(m.client_ids("G"), ["a", "b"]);
        // Another topic is a change.
        let more = [sub("T", 2), sub("U", 1)];
        assert!(
            m.register(
                reg(&more, MessageModel::Clustering),
                channel(&conns[1], "b", 30)
            )
            .changed
        );
        // Leaving notifies the rest; the last one leaving removes the group.
        let left = m.unregister("G", conns[1].id(), true);
        assert!(left.changed);
        assert_eq!(left.notify.len(), 1);
        assert!(m.unregister("G", conns[0].id(), true).notify.is_empty());
        assert!(m.group("G").is_none());
    }

    #[tokio::test]
    async fn broadcasting_groups_are_not_notified() {
        let (_server, _clients, conns) = connections(2).await;
        let m = ConsumerManager::new();
        let subs = [sub("T", 1)];
        m.register(
            reg(&subs, MessageModel::Broadcasting),
            channel(&conns[0], "a", 0),
        );
        let joined = m.register(
            reg(&subs, MessageModel::Broadcasting),
            channel(&conns[1], "b", 0),
        );
        assert!(joined.changed && joined.notify.is_empty());
        assert!(m.channel_closed(conns[1].id()).notify.is_empty());
    }

    #[tokio::test]
    async fn available_channels_take_turns_and_skip_closed_connections() {
        let (_server, _clients, conns) = connections(3).await;
        let p = ProducerManager::new();
        assert!(p.available_channel("P").is_none());
        p.register("P", channel(&conns[0], "a", 0));
        p.register("P", channel(&conns[1], "b", 0));
        p.register("Q", channel(&conns[2], "c", 0));
        let picked: HashSet<u64> = (0..4)
            .map(|_| p.available_channel("P").unwrap().id())
            .collect();
        assert_eq!(picked, HashSet::from([conns[0].id(), conns[1].id()]));
        conns[0].close();
        conns[0].closed().await;
        for _ in 0..4 {
            assert_eq!(p.available_channel("P").unwrap().id(), conns[1].id());
        }
        conns[1].close();
        conns[1].closed().await;
        assert!(p.available_channel("P").is_none());
        assert_eq!(p.available_channel("Q").unwrap().id(), conns[2].id());
    }

    #[tokio::test]
    async fn silent_channels_expire_by_the_injected_clock() {
        let (_server, _clients, conns) = connections(2).await;
        let m = ConsumerManager::new();
        let p = ProducerManager::new();
        let subs = [sub("T", 1)];
        m.register(
            reg(&subs, MessageModel::Clustering),
            channel(&conns[0], "old", 0),
        );
        m.register(
            reg(&subs, MessageModel::Clustering),
            channel(&conns[1], "fresh", 100_000),
        );
        p.register("P", channel(&conns[0], "old", 0));
        assert!(m.scan_expired(120_000, 120_000).close.is_empty());
        assert!(p.scan_expired(120_000, 120_000).is_empty());
        let expired = m.scan_expired(120_001, 120_000);
        assert_eq!(expired.close.len(), 1);
        assert_eq!(expired.close[0].id(), conns[0].id());
        assert_eq!(expired.notify.len(), 1);
        assert_eq!(expired.notify[0].1.id(), conns[1].id());
        assert_eq!(m.client_ids("G"), ["fresh"]);
        assert_eq!(p.scan_expired(120_001, 120_000).len(), 1);
        assert!(p.connections("P").is_none());
    }
}
