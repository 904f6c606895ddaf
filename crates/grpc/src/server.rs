//! Runs the endpoint: binds the listener, serves `MessagingService` over plain HTTP/2 (no TLS),
//! expires idle client sessions, and shuts down gracefully within `shutdown_grace_ms`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::backend::{MessagingBackend, OfflineReason};
use crate::config::GrpcConfig;
use crate::error::GrpcError;
use crate::pb::messaging_service_server::MessagingServiceServer;
use crate::service::{MessagingServiceImpl, Shared};
use crate::session::SessionRegistry;

/// Entry point: `GrpcServer::start(config, backend).await?` inside a tokio runtime.
#[derive(Debug, Clone, Copy)]
pub struct GrpcServer;

impl GrpcServer {
    /// Listens on `config.listen_addr` and serves until [`GrpcServerHandle::shutdown`].
    pub async fn start(
        config: GrpcConfig,
        backend: Arc<dyn MessagingBackend>,
    ) -> Result<GrpcServerHandle, GrpcError> {
        let sessions = Arc::new(SessionRegistry::new(config.max_client_sessions));
        Self::start_with_sessions(config, backend, sessions).await
    }

    /// [`start`](Self::start) with a registry made beforehand, e.g. one the backend also holds
    /// to push commands down clients' Telemetry streams.
    pub async fn start_with_sessions(
        config: GrpcConfig,
        backend: Arc<dyn MessagingBackend>,
        sessions: Arc<SessionRegistry>,
    ) -> Result<GrpcServerHandle, GrpcError> {
        config.validate()?;
        backend.attach_sessions(&sessions);
        let bind_error = |source| GrpcError::Bind {
            addr: config.listen_addr.clone(),
            source,
        };
        let listener = TcpListener::bind(config.listen_addr.as_str())
            .await
            .map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));

        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            config: config.clone(),
            backend,
            sessions,
            stop,
        });
        let service = MessagingServiceImpl::from_shared(shared.clone());
        let server = MessagingServiceServer::new(service)
            .max_decoding_message_size(config.max_inbound_message_bytes);
        let mut stopped = shared.stop.subscribe();
        let serve = tonic::transport::Server::builder()
            .max_concurrent_streams(config.max_concurrent_streams)
            .http2_keepalive_interval(config.http2_keepalive_interval())
            .http2_keepalive_timeout(Some(config.http2_keepalive_timeout()))
            .serve_with_incoming_shutdown(server, incoming, async move {
                // An error means the sender is gone, which only happens once serving is over.
                let _ = stopped.wait_for(|stop| *stop).await;
            });
        let server_task = tokio::spawn(serve);
        let sweeper = tokio::spawn(sweep_idle_sessions(shared.clone()));
        info!(addr = %local_addr, "gRPC endpoint started");
        Ok(GrpcServerHandle {
            local_addr,
            shared,
            server_task: Mutex::new(Some(server_task)),
            sweeper: Mutex::new(Some(sweeper)),
        })
    }
}

/// A running endpoint. Dropping it stops accepting calls, like [`shutdown`](Self::shutdown)
/// without waiting.
pub struct GrpcServerHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    server_task: Mutex<Option<JoinHandle<Result<(), tonic::transport::Error>>>>,
    sweeper: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for GrpcServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServerHandle")
            .field("local_addr", &self.local_addr)
            .field("sessions", &self.shared.sessions)
            .finish_non_exhaustive()
    }
}

impl GrpcServerHandle {
    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The client session registry (also the way to push Telemetry commands to clients).
    pub fn sessions(&self) -> &Arc<SessionRegistry> {
        &self.shared.sessions
    }

    /// Stops accepting connections, ends Telemetry streams, lets in-flight calls finish for up to
    /// `shutdown_grace_ms`, then cuts what is left. Calling it again does nothing.
    pub async fn shutdown(&self) {
        self.shared.stop.send_replace(true);
        self.shared.sessions.detach_all_telemetry();
        let sweeper = take(&self.sweeper);
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        let Some(mut server) = take(&self.server_task) else {
            return;
        };
        match tokio::time::timeout(self.shared.config.shutdown_grace(), &mut server).await {
            Ok(Ok(Ok(()))) => info!(addr = %self.local_addr, "gRPC endpoint stopped"),
            Ok(Ok(Err(error))) => warn!(%error, "gRPC endpoint stopped with an error"),
            Ok(Err(error)) => warn!(%error, "gRPC endpoint task failed"),
            Err(_) => {
                warn!("gRPC calls still open after the grace period; closing them");
                server.abort();
            }
        }
    }
}

impl Drop for GrpcServerHandle {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
        self.shared.sessions.detach_all_telemetry();
        if let Some(sweeper) = take(&self.sweeper) {
            sweeper.abort();
        }
    }
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// Forgets clients that stopped calling, and tells the backend.
async fn sweep_idle_sessions(shared: Arc<Shared>) {
    let idle_timeout = shared.config.client_idle_timeout();
    let period = (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for session in shared.sessions.expire_idle(Instant::now(), idle_timeout) {
            info!(client_id = %session.client_id, "client session expired");
            shared
                .backend
                .client_offline(&session.client_id, Some(&session), OfflineReason::Expired)
                .await;
        }
    }
}
