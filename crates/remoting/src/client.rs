//! The connecting side: one multiplexed connection per remote address, made on first use and
//! remade on the next call after it closed. Concurrent callers share one connect attempt.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apogee_protocol::{RemotingCommand, SerializeType};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::config::RemotingConfig;
use crate::connection::{spawn_connection, ConnectionHandle};
use crate::error::RemotingError;
use crate::handler::{RequestHandler, Router};
use crate::util::lock;

/// A remoting client. Cheap to clone; clones share connections. Dropping the last clone closes
/// every connection.
#[derive(Clone)]
pub struct RemotingClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    config: Arc<RemotingConfig>,
    handler: Arc<dyn RequestHandler>,
    /// A std mutex: held for one map operation, never across `.await`.
    slots: Mutex<HashMap<String, Slot>>,
    next_attempt: AtomicU64,
    closed: AtomicBool,
}

type ConnectOutcome = Result<ConnectionHandle, ConnectFailure>;

enum Slot {
    Ready(ConnectionHandle),
    /// A connect attempt in progress; its result is published on the channel.
    Connecting {
        attempt: u64,
        outcome: watch::Receiver<Option<ConnectOutcome>>,
    },
}

/// A connect error that can be handed to every caller waiting on the same attempt.
#[derive(Clone, Debug)]
struct ConnectFailure {
    kind: io::ErrorKind,
    message: String,
}

impl ConnectFailure {
    fn from_io(e: &io::Error) -> Self {
        Self {
            kind: e.kind(),
            message: e.to_string(),
        }
    }

    fn into_error(self, addr: &str) -> RemotingError {
        RemotingError::Connect {
            addr: addr.to_owned(),
            source: io::Error::new(self.kind, self.message),
        }
    }
}

impl fmt::Debug for RemotingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotingClient")
            .field("connections", &lock(&self.inner.slots).len())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl RemotingClient {
    /// A client that answers server-to-client requests with `REQUEST_CODE_NOT_SUPPORTED`.
    pub fn new(config: RemotingConfig) -> Self {
        Self::with_handler(config, Router::new())
    }

    /// A client whose connections run `handler` for requests the server sends (for a consumer:
    /// NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE, ...).
    pub fn with_handler(config: RemotingConfig, handler: impl RequestHandler) -> Self {
        Self {
            inner: Arc::new(ClientInner {
                config: Arc::new(config),
                handler: Arc::new(handler),
                slots: Mutex::new(HashMap::new()),
                next_attempt: AtomicU64::new(1),
                closed: AtomicBool::new(false),
            }),
        }
    }

    pub fn config(&self) -> &RemotingConfig {
        &self.inner.config
    }

    /// The open connection to `addr`, if there is one; never connects.
    pub fn ready_connection(&self, addr: &str) -> Option<ConnectionHandle> {
        match lock(&self.inner.slots).get(addr) {
            Some(Slot::Ready(conn)) if !conn.is_closed() => Some(conn.clone()),
            _ => None,
        }
    }

    /// The connection to `addr` ("host:port"), connecting if there is none or it closed.
    pub async fn connection(&self, addr: &str) -> Result<ConnectionHandle, RemotingError> {
        loop {
            let mut outcome = {
                let mut slots = lock(&self.inner.slots);
                if self.inner.closed.load(Ordering::SeqCst) {
                    return Err(RemotingError::Shutdown);
                }
                match slots.get(addr) {
                    Some(Slot::Ready(conn)) if !conn.is_closed() => return Ok(conn.clone()),
                    // A live attempt (its task still holds the sender): wait for it.
                    Some(Slot::Connecting { outcome, .. }) if outcome.has_changed().is_ok() => {
                        outcome.clone()
                    }
                    _ => {
                        let attempt = self.inner.next_attempt.fetch_add(1, Ordering::Relaxed);
                        let (tx, rx) = watch::channel(None);
                        slots.insert(
                            addr.to_owned(),
                            Slot::Connecting {
                                attempt,
                                outcome: rx.clone(),
                            },
                        );
                        // The attempt runs on its own task so a caller that gives up does not
                        // cancel it for the others.
                        tokio::spawn(connect_attempt(
                            Arc::clone(&self.inner),
                            addr.to_owned(),
                            attempt,
                            tx,
                        ));
                        rx
                    }
                }
            };
            let result = match outcome.wait_for(Option::is_some).await {
                Ok(result) => match result.as_ref() {
                    Some(Ok(conn)) => Ok(conn.clone()),
                    Some(Err(failure)) => Err(failure.clone().into_error(addr)),
                    None => Err(RemotingError::ConnectionClosed),
                },
                // The attempt's task vanished (runtime shutting down): start over.
                Err(_) => continue,
            };
            return result;
        }
    }

    /// A client configured for the binary header form sends every request in it; otherwise each
    /// request keeps the form it was built with (JSON unless the caller chose).
    fn apply_serialize_type(&self, request: &mut RemotingCommand) {
        if self.inner.config.serialize_type == SerializeType::RocketMq {
            request.serialize_type = SerializeType::RocketMq;
        }
    }

    /// Sends `request` to `addr` and waits for its response; `timeout` covers connecting too.
    pub async fn invoke(
        &self,
        addr: &str,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        self.apply_serialize_type(&mut request);
        if let Some(conn) = self.ready_connection(addr) {
            return conn.invoke(request, timeout).await;
        }
        let started = Instant::now();
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let conn = tokio::time::timeout(timeout, self.connection(addr))
            .await
            .map_err(|_| RemotingError::Timeout { timeout_ms })??;
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(RemotingError::Timeout { timeout_ms });
        }
        conn.invoke(request, left).await
    }

    /// [`invoke`](Self::invoke) with the configured `request_timeout_ms`.
    pub async fn invoke_default_timeout(
        &self,
        addr: &str,
        request: RemotingCommand,
    ) -> Result<RemotingCommand, RemotingError> {
        self.invoke(addr, request, self.inner.config.request_timeout())
            .await
    }

    /// Sends a oneway request to `addr`; connecting is bounded by `request_timeout_ms`.
    pub async fn invoke_oneway(
        &self,
        addr: &str,
        mut request: RemotingCommand,
    ) -> Result<(), RemotingError> {
        self.apply_serialize_type(&mut request);
        let conn = match self.ready_connection(addr) {
            Some(conn) => conn,
            None => {
                let timeout = self.inner.config.request_timeout();
                let timeout_ms = self.inner.config.request_timeout_ms;
                tokio::time::timeout(timeout, self.connection(addr))
                    .await
                    .map_err(|_| RemotingError::Timeout { timeout_ms })??
            }
        };
        conn.invoke_oneway(request).await
    }

    /// Closes the connection to `addr`, if any; the next call reconnects.
    pub fn close_connection(&self, addr: &str) {
        if let Some(Slot::Ready(conn)) = lock(&self.inner.slots).remove(addr) {
            conn.close();
        }
    }

    /// Closes every connection; later calls fail with [`RemotingError::Shutdown`].
    pub fn close(&self) {
        self.inner.close();
    }
}

impl ClientInner {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let slots = std::mem::take(&mut *lock(&self.slots));
        for slot in slots.into_values() {
            if let Slot::Ready(conn) = slot {
                conn.close();
            }
        }
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        self.close();
    }
}

async fn connect_attempt(
    inner: Arc<ClientInner>,
    addr: String,
    attempt: u64,
    tx: watch::Sender<Option<ConnectOutcome>>,
) {
    let outcome = match tokio::time::timeout(
        inner.config.connect_timeout(),
        TcpStream::connect(addr.as_str()),
    )
    .await
    {
        Ok(Ok(stream)) => spawn_connection(
            stream,
            Arc::clone(&inner.config),
            Arc::clone(&inner.handler),
        )
        .map_err(|e| ConnectFailure::from_io(&e)),
        Ok(Err(e)) => Err(ConnectFailure::from_io(&e)),
        Err(_) => Err(ConnectFailure {
            kind: io::ErrorKind::TimedOut,
            message: format!(
                "connect timed out after {} ms",
                inner.config.connect_timeout_ms
            ),
        }),
    };
    {
        let mut slots = lock(&inner.slots);
        let ours =
            matches!(slots.get(&addr), Some(Slot::Connecting { attempt: a, .. }) if *a == attempt);
        let closed = inner.closed.load(Ordering::SeqCst);
        if ours {
            match &outcome {
                Ok(conn) if !closed => {
                    slots.insert(addr.clone(), Slot::Ready(conn.clone()));
                }
                _ => {
                    slots.remove(&addr);
                }
            }
        }
        if closed {
            if let Ok(conn) = &outcome {
                conn.close();
            }
        }
    }
    match &outcome {
        Ok(conn) => debug!(%addr, id = conn.id(), "connected"),
        Err(e) => debug!(%addr, error = %e.message, "connect failed"),
    }
    tx.send_replace(Some(outcome));
}
