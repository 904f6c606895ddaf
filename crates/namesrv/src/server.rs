//! Runs a name server: loads the KV config, binds the remoting server with the processor, and
//! drops silent brokers every `scan_not_active_broker_interval_ms`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use apogee_remoting::RemotingServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::clock::{Clock, MonotonicClock};
use crate::config::NamesrvConfig;
use crate::error::NamesrvError;
use crate::kvconfig::KvConfigManager;
use crate::processor::NamesrvProcessor;

/// Entry point: `NameServer::start(config).await?` inside a tokio runtime.
#[derive(Debug, Clone, Copy)]
pub struct NameServer;

impl NameServer {
    /// Loads the KV config, listens on `config.listen_addr` and starts the expiry scan.
    pub async fn start(config: NamesrvConfig) -> Result<NameServerHandle, NamesrvError> {
        Self::start_with_clock(config, Arc::new(MonotonicClock::new())).await
    }

    /// [`start`](Self::start) with a given clock for broker expiry.
    pub async fn start_with_clock(
        config: NamesrvConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<NameServerHandle, NamesrvError> {
        config.validate()?;
        let kv_path = config.kv_config_path.clone();
        let kv = tokio::task::spawn_blocking(move || KvConfigManager::load(kv_path))
            .await
            .map_err(|e| NamesrvError::Io {
                context: "loading KV config".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let processor = NamesrvProcessor::new(config.clone(), Arc::new(kv), clock);
        let server = RemotingServer::bind(
            config.listen_addr.as_str(),
            config.remoting_config(),
            processor.clone(),
        )
        .await
        .map_err(|source| NamesrvError::Bind {
            addr: config.listen_addr.clone(),
            source,
        })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let scan = tokio::spawn(scan_loop(processor.clone(), config.clone(), stop_rx));
        info!(addr = %server.local_addr(), "name server started");
        Ok(NameServerHandle {
            server,
            processor,
            stop: stop_tx,
            scan: Mutex::new(Some(scan)),
        })
    }
}

async fn scan_loop(
    processor: NamesrvProcessor,
    config: NamesrvConfig,
    mut stop: watch::Receiver<bool>,
) {
    let period = config.scan_interval();
    // First scan one period after start, as Java schedules it.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let removed = processor.scan_not_active_brokers();
                if !removed.is_empty() {
                    info!(brokers = removed.len(), "expired brokers removed");
                }
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
    }
}

/// A running name server. Dropping it stops the expiry scan and closes every connection at once;
/// [`shutdown`](Self::shutdown) stops gracefully.
pub struct NameServerHandle {
    server: RemotingServer,
    processor: NamesrvProcessor,
    stop: watch::Sender<bool>,
    scan: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for NameServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameServerHandle")
            .field("local_addr", &self.server.local_addr())
            .finish_non_exhaustive()
    }
}

impl NameServerHandle {
    /// The address actually listened on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The request processor, for in-process access to the route table and KV config.
    pub fn processor(&self) -> &NamesrvProcessor {
        &self.processor
    }

    /// Stops the expiry scan, stops accepting, lets in-flight requests finish and closes every
    /// connection. Safe to call more than once.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let scan = self
            .scan
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(scan) = scan {
            // The loop only ends by itself; a join error means it panicked, nothing to undo.
            let _ = scan.await;
        }
        self.server.shutdown().await;
        info!("name server stopped");
    }
}

impl Drop for NameServerHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(scan) = self
            .scan
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            scan.abort();
        }
    }
}
