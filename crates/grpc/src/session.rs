//! Who is connected: one entry per client, keyed by its `x-mq-client-id`. An entry is created by
//! the first Heartbeat or Telemetry settings, refreshed by each, and dropped on
//! NotifyClientTermination or after `client_idle_timeout_ms` without calls (a client holding an
//! open Telemetry stream is alive by definition). The entry also holds the client's Telemetry
//! sender so the broker can push commands to it (transaction check-back, thread dumps).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::mpsc;

use crate::metadata::ClientMetadata;
use crate::pb;

/// Items of a Telemetry response stream.
pub type TelemetrySender = mpsc::Sender<Result<pb::TelemetryCommand, tonic::Status>>;

/// What the server knows about one client.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSession {
    pub client_id: String,
    /// `x-mq-language` as sent.
    pub language: Option<String>,
    pub client_version: Option<String>,
    pub namespace: Option<String>,
    pub remote_addr: Option<SocketAddr>,
    /// From the settings or the latest heartbeat.
    pub client_type: Option<pb::ClientType>,
    /// The consumer group, from the settings or the latest heartbeat.
    pub group: Option<pb::Resource>,
    /// The settings the client last reported, as sent (before server overrides).
    pub settings: Option<pb::Settings>,
    pub last_seen: Instant,
    pub telemetry_open: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SessionError {
    #[error("too many clients (limit {limit})")]
    Full { limit: usize },
}

/// Why a command could not be queued for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PushError {
    #[error("no such client")]
    UnknownClient,
    #[error("the client has no open Telemetry stream")]
    NoTelemetry,
    #[error("the client's Telemetry queue is full")]
    QueueFull,
}

struct Entry {
    session: ClientSession,
    telemetry: Option<(u64, TelemetrySender)>,
}

/// The per-client registry. A std mutex is right here: no lock is held across an `.await`.
pub struct SessionRegistry {
    entries: Mutex<HashMap<String, Entry>>,
    max_sessions: usize,
    next_stream_id: AtomicU64,
}

impl std::fmt::Debug for SessionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRegistry")
            .field("sessions", &self.len())
            .field("max_sessions", &self.max_sessions)
            .finish()
    }
}

impl SessionRegistry {
    pub fn new(max_sessions: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_sessions,
            next_stream_id: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere cannot leave an entry half-written, so a poisoned map is still usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh id for a Telemetry stream, so a closing stream detaches only itself.
    pub fn new_stream_id(&self) -> u64 {
        self.next_stream_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Creates or refreshes `client_id`'s entry and lets `update` amend it.
    fn upsert(
        &self,
        client_id: &str,
        meta: &ClientMetadata,
        remote_addr: Option<SocketAddr>,
        now: Instant,
        update: impl FnOnce(&mut Entry),
    ) -> Result<(), SessionError> {
        let mut entries = self.lock();
        if !entries.contains_key(client_id) && entries.len() >= self.max_sessions {
            return Err(SessionError::Full {
                limit: self.max_sessions,
            });
        }
        let entry = entries
            .entry(client_id.to_owned())
            .or_insert_with(|| Entry {
                session: ClientSession {
                    client_id: client_id.to_owned(),
                    language: None,
                    client_version: None,
                    namespace: None,
                    remote_addr: None,
                    client_type: None,
                    group: None,
                    settings: None,
                    last_seen: now,
                    telemetry_open: false,
                },
                telemetry: None,
            });
        let session = &mut entry.session;
        // Headers may differ call to call (Node omits the namespace when unset): keep what we had.
        if meta.language.is_some() {
            session.language.clone_from(&meta.language);
        }
        if meta.client_version.is_some() {
            session.client_version.clone_from(&meta.client_version);
        }
        if meta.namespace.is_some() {
            session.namespace.clone_from(&meta.namespace);
        }
        if remote_addr.is_some() {
            session.remote_addr = remote_addr;
        }
        session.last_seen = session.last_seen.max(now);
        update(entry);
        Ok(())
    }

    /// Records a Heartbeat.
    pub fn record_heartbeat(
        &self,
        client_id: &str,
        meta: &ClientMetadata,
        remote_addr: Option<SocketAddr>,
        client_type: Option<pb::ClientType>,
        group: Option<pb::Resource>,
        now: Instant,
    ) -> Result<(), SessionError> {
        self.upsert(client_id, meta, remote_addr, now, |entry| {
            if client_type.is_some() {
                entry.session.client_type = client_type;
            }
            if group.is_some() {
                entry.session.group = group;
            }
        })
    }

    /// Records the settings a client sent on Telemetry stream `stream`, whose replies go to
    /// `sender`; a newer stream of the same client replaces an older one.
    #[allow(clippy::too_many_arguments)]
    pub fn record_settings(
        &self,
        client_id: &str,
        meta: &ClientMetadata,
        remote_addr: Option<SocketAddr>,
        settings: &pb::Settings,
        stream: u64,
        sender: &TelemetrySender,
        now: Instant,
    ) -> Result<(), SessionError> {
        self.upsert(client_id, meta, remote_addr, now, |entry| {
            let session = &mut entry.session;
            if let Some(client_type) = settings
                .client_type
                .and_then(|t| pb::ClientType::try_from(t).ok())
            {
                session.client_type = Some(client_type);
            }
            if let Some(pb::settings::PubSub::Subscription(sub)) = &settings.pub_sub {
                if sub.group.is_some() {
                    session.group.clone_from(&sub.group);
                }
            }
            session.settings = Some(settings.clone());
            session.telemetry_open = true;
            entry.telemetry = Some((stream, sender.clone()));
        })
    }

    /// Refreshes `client_id`'s last-seen time if it is known.
    pub fn touch(&self, client_id: &str, now: Instant) {
        if let Some(entry) = self.lock().get_mut(client_id) {
            entry.session.last_seen = entry.session.last_seen.max(now);
        }
    }

    /// Forgets Telemetry stream `stream` of `client_id` (if it is still the current one); the
    /// session stays until it terminates or idles out. Idle time counts from `now`.
    pub fn detach_telemetry(&self, client_id: &str, stream: u64, now: Instant) {
        if let Some(entry) = self.lock().get_mut(client_id) {
            if entry
                .telemetry
                .as_ref()
                .is_some_and(|(id, _)| *id == stream)
            {
                entry.telemetry = None;
                entry.session.telemetry_open = false;
                entry.session.last_seen = entry.session.last_seen.max(now);
            }
        }
    }

    /// Drops every Telemetry sender, so the streams end once their own tasks stop (shutdown).
    pub fn detach_all_telemetry(&self) {
        for entry in self.lock().values_mut() {
            entry.telemetry = None;
            entry.session.telemetry_open = false;
        }
    }

    /// Removes a client (NotifyClientTermination), returning what was known about it.
    pub fn remove(&self, client_id: &str) -> Option<ClientSession> {
        self.lock().remove(client_id).map(|entry| entry.session)
    }

    /// Removes and returns clients with no Telemetry stream and no call for `idle_timeout`.
    pub fn expire_idle(&self, now: Instant, idle_timeout: Duration) -> Vec<ClientSession> {
        let mut entries = self.lock();
        let expired: Vec<String> = entries
            .iter()
            .filter(|(_, entry)| {
                entry.telemetry.is_none()
                    && now.saturating_duration_since(entry.session.last_seen) >= idle_timeout
            })
            .map(|(id, _)| id.clone())
            .collect();
        expired
            .iter()
            .filter_map(|id| entries.remove(id).map(|entry| entry.session))
            .collect()
    }

    pub fn get(&self, client_id: &str) -> Option<ClientSession> {
        self.lock()
            .get(client_id)
            .map(|entry| entry.session.clone())
    }

    pub fn client_ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Producers publishing `topic` (as their settings declare) with an open Telemetry stream,
    /// by client id: the clients a transaction check-back for producer group `topic` may go to
    /// (5.x producers use the topic as their group).
    pub fn producers_of(&self, topic: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, entry)| {
                entry.telemetry.is_some()
                    && entry.session.client_type == Some(pb::ClientType::Producer)
                    && publishes(entry.session.settings.as_ref(), topic)
            })
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Queues a server-to-client command (e.g. `RecoverOrphanedTransactionCommand`) on the
    /// client's Telemetry stream without waiting.
    pub fn push_command(
        &self,
        client_id: &str,
        command: pb::TelemetryCommand,
    ) -> Result<(), PushError> {
        let sender = {
            let entries = self.lock();
            let entry = entries.get(client_id).ok_or(PushError::UnknownClient)?;
            let (_, sender) = entry.telemetry.as_ref().ok_or(PushError::NoTelemetry)?;
            sender.clone()
        };
        sender.try_send(Ok(command)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PushError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => PushError::NoTelemetry,
        })
    }
}

fn publishes(settings: Option<&pb::Settings>, topic: &str) -> bool {
    matches!(
        settings.and_then(|s| s.pub_sub.as_ref()),
        Some(pb::settings::PubSub::Publishing(p)) if p.topics.iter().any(|t| t.name == topic)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(language: &str) -> ClientMetadata {
        ClientMetadata {
            client_id: Some("c1".into()),
            language: Some(language.into()),
            ..Default::default()
        }
    }

    fn group(name: &str) -> pb::Resource {
        pb::Resource {
            resource_namespace: String::new(),
            name: name.into(),
        }
    }

    #[test]
    fn heartbeat_creates_then_refreshes_a_session() {
        let registry = SessionRegistry::new(8);
        let t0 = Instant::now();
        registry
            .record_heartbeat(
                "c1",
                &meta("JAVA"),
                None,
                Some(pb::ClientType::PushConsumer),
                Some(group("G")),
                t0,
            )
            .expect("room");
        let later = t0 + Duration::from_secs(5);
        registry
            .record_heartbeat("c1", &ClientMetadata::default(), None, None, None, later)
            .expect("room");
        let session = registry.get("c1").expect("known");
        assert_eq!(
            session.language.as_deref(),
            Some("JAVA"),
            "kept when a later call omits it"
        );
        assert_eq!(session.client_type, Some(pb::ClientType::PushConsumer));
        assert_eq!(session.group, Some(group("G")));
        assert_eq!(session.last_seen, later);
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn a_new_client_beyond_the_limit_is_refused_but_known_ones_still_refresh() {
        let registry = SessionRegistry::new(1);
        let now = Instant::now();
        registry
            .record_heartbeat("a", &meta("JAVA"), None, None, None, now)
            .expect("room");
        assert_eq!(
            registry.record_heartbeat("b", &meta("JAVA"), None, None, None, now),
            Err(SessionError::Full { limit: 1 })
        );
        assert!(registry
            .record_heartbeat("a", &meta("JAVA"), None, None, None, now)
            .is_ok());
    }

    #[test]
    fn idle_clients_without_telemetry_expire_and_streaming_ones_do_not() {
        let registry = SessionRegistry::new(8);
        let t0 = Instant::now();
        let (tx, _rx) = mpsc::channel(1);
        registry
            .record_heartbeat("idle", &meta("JAVA"), None, None, None, t0)
            .expect("room");
        let stream = registry.new_stream_id();
        registry
            .record_settings(
                "streaming",
                &meta("JAVA"),
                None,
                &pb::Settings::default(),
                stream,
                &tx,
                t0,
            )
            .expect("room");
        let idle = Duration::from_secs(120);
        assert!(registry
            .expire_idle(t0 + Duration::from_secs(119), idle)
            .is_empty());
        let expired = registry.expire_idle(t0 + idle, idle);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].client_id, "idle");
        assert!(registry.get("streaming").is_some());

        registry.detach_telemetry("streaming", stream, t0 + idle);
        assert!(registry
            .expire_idle(t0 + idle + Duration::from_secs(119), idle)
            .is_empty());
        assert_eq!(registry.expire_idle(t0 + idle * 2, idle).len(), 1);
        assert!(registry.is_empty());
    }

    #[test]
    fn an_old_stream_closing_does_not_detach_its_replacement() {
        let registry = SessionRegistry::new(8);
        let now = Instant::now();
        let (tx, mut rx) = mpsc::channel(4);
        let old = registry.new_stream_id();
        let new = registry.new_stream_id();
        let settings = pb::Settings::default();
        registry
            .record_settings("c1", &meta("GO"), None, &settings, old, &tx, now)
            .expect("room");
        registry
            .record_settings("c1", &meta("GO"), None, &settings, new, &tx, now)
            .expect("room");
        registry.detach_telemetry("c1", old, now);
        assert!(registry.get("c1").is_some_and(|s| s.telemetry_open));
        registry
            .push_command("c1", pb::TelemetryCommand::default())
            .expect("still attached");
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn push_command_reports_why_it_cannot_deliver() {
        let registry = SessionRegistry::new(8);
        let now = Instant::now();
        assert_eq!(
            registry.push_command("nobody", pb::TelemetryCommand::default()),
            Err(PushError::UnknownClient)
        );
        registry
            .record_heartbeat("c1", &meta("JAVA"), None, None, None, now)
            .expect("room");
        assert_eq!(
            registry.push_command("c1", pb::TelemetryCommand::default()),
            Err(PushError::NoTelemetry)
        );
        let (tx, rx) = mpsc::channel(1);
        let stream = registry.new_stream_id();
        registry
            .record_settings(
                "c1",
                &meta("JAVA"),
                None,
                &pb::Settings::default(),
                stream,
                &tx,
                now,
            )
            .expect("room");
        registry
            .push_command("c1", pb::TelemetryCommand::default())
            .expect("queued");
        assert_eq!(
            registry.push_command("c1", pb::TelemetryCommand::default()),
            Err(PushError::QueueFull)
        );
        drop(rx);
        assert_eq!(
            registry.push_command("c1", pb::TelemetryCommand::default()),
            Err(PushError::NoTelemetry)
        );
    }

    #[test]
    fn settings_record_client_type_and_subscription_group() {
        let registry = SessionRegistry::new(8);
        let (tx, _rx) = mpsc::channel(1);
        let settings = pb::Settings {
            client_type: Some(pb::ClientType::SimpleConsumer as i32),
            pub_sub: Some(pb::settings::PubSub::Subscription(pb::Subscription {
                group: Some(group("G1")),
                ..Default::default()
            })),
            ..Default::default()
        };
        let stream = registry.new_stream_id();
        registry
            .record_settings(
                "c1",
                &meta("PYTHON"),
                None,
                &settings,
                stream,
                &tx,
                Instant::now(),
            )
            .expect("room");
        let session = registry.get("c1").expect("known");
        assert_eq!(session.client_type, Some(pb::ClientType::SimpleConsumer));
        assert_eq!(session.group, Some(group("G1")));
        assert_eq!(session.settings, Some(settings));
        assert!(session.telemetry_open);
        assert_eq!(
            registry.remove("c1").map(|s| s.client_id),
            Some("c1".into())
        );
        assert!(registry.get("c1").is_none());
    }
}
