//! The listening side: accepts connections up to a limit, runs one [`ConnectionHandle`] per
//! connection with the server's handler, and shuts down gracefully.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tracing::{debug, info, warn};

use crate::config::RemotingConfig;
use crate::connection::{spawn_connection, ConnectionHandle};
use crate::handler::RequestHandler;
use crate::util::{lock, Signal};

/// How long the accept loop pauses after an accept error (e.g. out of file descriptors) so it
/// does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 50;

/// A running remoting server. Dropping it closes the listener and every connection at once; call
/// [`shutdown`](Self::shutdown) for a graceful stop.
pub struct RemotingServer {
    inner: Arc<ServerInner>,
    local_addr: SocketAddr,
}

struct ServerInner {
    config: Arc<RemotingConfig>,
    handler: Arc<dyn RequestHandler>,
    /// Live connections by id. A std mutex: held only for a map operation, never across `.await`.
    connections: Mutex<HashMap<u64, ConnectionHandle>>,
    stop_accepting: Signal,
    accept_stopped: Signal,
    shutdown_started: AtomicBool,
    stopped: Signal,
    /// Set when the server is dropped without a graceful shutdown.
    aborted: AtomicBool,
}

impl RemotingServer {
    /// Binds `addr` (use port 0 for an ephemeral port) and starts accepting. Must be called inside
    /// a tokio runtime.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        config: RemotingConfig,
        handler: impl RequestHandler,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let inner = Arc::new(ServerInner {
            config: Arc::new(config),
            handler: Arc::new(handler),
            connections: Mutex::new(HashMap::new()),
            stop_accepting: Signal::default(),
            accept_stopped: Signal::default(),
            shutdown_started: AtomicBool::new(false),
            stopped: Signal::default(),
            aborted: AtomicBool::new(false),
        });
        tokio::spawn(accept_loop(Arc::clone(&inner), listener));
        info!(%local_addr, "remoting server listening");
        Ok(Self { inner, local_addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn config(&self) -> &RemotingConfig {
        &self.inner.config
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        lock(&self.inner.connections).len()
    }

    /// Handles to the live connections.
    pub fn connections(&self) -> Vec<ConnectionHandle> {
        lock(&self.inner.connections).values().cloned().collect()
    }

    /// Stops gracefully and returns when stopped: no new connections are accepted, every
    /// connection answers new requests `SYSTEM_BUSY`, the handlers already running finish and
    /// their responses are written, then connections close. After `shutdown_grace_ms` the rest are closed regardless.
    /// Safe to call more than once and from several tasks; the work runs on its own task, so
    /// dropping this future does not interrupt it.
    pub async fn shutdown(&self) {
        if !self.inner.shutdown_started.swap(true, Ordering::SeqCst) {
            tokio::spawn(graceful_shutdown(Arc::clone(&self.inner)));
        }
        self.inner.stopped.wait().await;
    }

    /// Resolves once a shutdown has completed.
    pub async fn stopped(&self) {
        self.inner.stopped.wait().await;
    }

    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.is_fired()
    }
}

impl Drop for RemotingServer {
    fn drop(&mut self) {
        if self.inner.shutdown_started.load(Ordering::SeqCst) {
            return;
        }
        self.inner.aborted.store(true, Ordering::SeqCst);
        self.inner.stop_accepting.fire();
        for conn in lock(&self.inner.connections).values() {
            conn.close();
        }
    }
}

async fn accept_loop(inner: Arc<ServerInner>, listener: TcpListener) {
    let stop = inner.stop_accepting.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => admit(&inner, stream, peer),
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    if inner.aborted.load(Ordering::SeqCst) {
        for conn in lock(&inner.connections).values() {
            conn.close();
        }
    }
    inner.accept_stopped.fire();
}

fn admit(inner: &Arc<ServerInner>, stream: TcpStream, peer: SocketAddr) {
    let limit = inner.config.max_connections;
    if lock(&inner.connections).len() >= limit {
        warn!(%peer, limit, "connection refused: too many connections");
        drop(stream);
        return;
    }
    let conn = match spawn_connection(
        stream,
        Arc::clone(&inner.config),
        Arc::clone(&inner.handler),
    ) {
        Ok(conn) => conn,
        Err(e) => {
            debug!(%peer, error = %e, "cannot set up accepted connection");
            return;
        }
    };
    let id = conn.id();
    lock(&inner.connections).insert(id, conn.clone());
    debug!(id, %peer, "connection accepted");
    // Forget the connection once it closes. Only the accept loop inserts, so the entry above is
    // in place before this can remove it.
    let registry: Weak<ServerInner> = Arc::downgrade(inner);
    tokio::spawn(async move {
        conn.closed().await;
        if let Some(inner) = registry.upgrade() {
            lock(&inner.connections).remove(&id);
        }
    });
}

async fn graceful_shutdown(inner: Arc<ServerInner>) {
    inner.stop_accepting.fire();
    inner.accept_stopped.wait().await;
    let connections: Vec<ConnectionHandle> = lock(&inner.connections).values().cloned().collect();
    for conn in &connections {
        conn.drain();
    }
    let all_closed = async {
        for conn in &connections {
            conn.closed().await;
        }
    };
    if tokio::time::timeout(inner.config.shutdown_grace(), all_closed)
        .await
        .is_err()
    {
        warn!("graceful shutdown deadline passed, closing remaining connections");
        for conn in &connections {
            conn.close();
        }
    }
    inner.stopped.fire();
    info!("remoting server stopped");
}
