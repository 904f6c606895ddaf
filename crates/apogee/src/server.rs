//! The server subcommands: `standalone` (name server and broker in one process), `namesrv` and
//! `broker`. Each reads an optional TOML file, then applies command-line flags on top, starts, prints
//! one ready line on stdout (scripts and tests wait for it), and stops gracefully on SIGINT/SIGTERM.

use std::io::Write;
use std::path::{Path, PathBuf};

use std::net::SocketAddr;
use std::sync::Arc;

use apogee_broker::{Broker, BrokerConfig, BrokerHandle};
use apogee_grpc::{GrpcConfig, GrpcServer, GrpcServerHandle, LocalBackend};
use apogee_namesrv::{NameServer, NamesrvConfig};
use clap::Args;
use serde::Deserialize;

/// The TOML file: `data_dir` at the top, then a `[namesrv]` table (snake_case keys, see
/// `NamesrvConfig`) and a `[broker]` table (RocketMQ's camelCase `broker.conf` keys).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    namesrv: Option<toml::Value>,
    broker: Option<toml::Value>,
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// TOML configuration file (`data_dir`, `[namesrv]`, `[broker]`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder for all state (default ./data): store, broker configs, name server KV config.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Name server listen address (default 0.0.0.0:9876; port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT")]
    pub namesrv_listen: Option<String>,
    /// Broker listen address (default 0.0.0.0:10911; port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT")]
    pub broker_listen: Option<String>,
    /// HTTP listen address for /metrics and the web page (default 0.0.0.0:8080; port 0 picks a
    /// free port).
    #[arg(long, value_name = "HOST:PORT", default_value = "0.0.0.0:8080")]
    pub http_listen: String,
    /// Address the broker advertises to clients (RocketMQ's brokerIP1).
    #[arg(long, value_name = "IP")]
    pub broker_ip: Option<String>,
    /// Name servers the broker registers with, `;`-separated (broker subcommand).
    #[arg(long, value_name = "ADDRS")]
    pub namesrv_addr: Option<String>,
    /// `async` (default) or `sync`: when a send is acknowledged.
    #[arg(long, value_name = "TYPE")]
    pub flush_disk_type: Option<String>,
    /// The broker group's name (default broker-a).
    #[arg(long)]
    pub broker_name: Option<String>,
    /// The cluster's name (default DefaultCluster).
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// gRPC endpoint (RocketMQ 5.x clients) listen address: default 0.0.0.0:8081 for
    /// `standalone`, off for `broker` unless given; port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT")]
    pub grpc_listen: Option<String>,
    /// Log level: error, warn, info (default), debug, trace.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

fn load_file(path: Option<&Path>) -> Result<FileConfig, String> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn data_dir(args: &ServerArgs, file: &FileConfig) -> PathBuf {
    args.data_dir
        .clone()
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("./data"))
}

fn namesrv_config(args: &ServerArgs, file: &FileConfig) -> Result<NamesrvConfig, String> {
    let mut cfg: NamesrvConfig = match &file.namesrv {
        Some(v) => v
            .clone()
            .try_into()
            .map_err(|e| format!("[namesrv]: {e}"))?,
        None => NamesrvConfig::default(),
    };
    let has_kv_path = file
        .namesrv
        .as_ref()
        .and_then(|v| v.get("kv_config_path"))
        .is_some();
    if !has_kv_path {
        cfg.kv_config_path = data_dir(args, file).join("namesrv").join("kvConfig.json");
    }
    if let Some(l) = &args.namesrv_listen {
        cfg.listen_addr = l.clone();
    }
    Ok(cfg)
}

fn broker_config(args: &ServerArgs, file: &FileConfig) -> Result<BrokerConfig, String> {
    let mut cfg: BrokerConfig = match &file.broker {
        Some(v) => v.clone().try_into().map_err(|e| format!("[broker]: {e}"))?,
        None => BrokerConfig::default(),
    };
    let has_data_dir = file
        .broker
        .as_ref()
        .and_then(|v| v.get("dataDir"))
        .is_some();
    if !has_data_dir || args.data_dir.is_some() {
        cfg.data_dir = data_dir(args, file);
    }
    if let Some(l) = &args.broker_listen {
        cfg.listen_addr = l.clone();
        cfg.listen_port = None;
    }
    if let Some(ip) = &args.broker_ip {
        cfg.broker_ip1 = Some(ip.clone());
    }
    if let Some(a) = &args.namesrv_addr {
        cfg.namesrv_addrs = a
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    if let Some(t) = &args.flush_disk_type {
        cfg.flush_disk_type = match t.to_ascii_lowercase().as_str() {
            "async" | "async_flush" => apogee_broker::FlushDiskTypeConfig::AsyncFlush,
            "sync" | "sync_flush" => apogee_broker::FlushDiskTypeConfig::SyncFlush,
            other => {
                return Err(format!(
                    "--flush-disk-type must be async or sync, not {other:?}"
                ))
            }
        };
    }
    if let Some(n) = &args.broker_name {
        cfg.broker_name = n.clone();
    }
    if let Some(c) = &args.cluster_name {
        cfg.broker_cluster_name = c.clone();
    }
    Ok(cfg)
}

pub(crate) fn init_logging(level: &str) -> Result<(), String> {
    let level: tracing::Level = level
        .parse()
        .map_err(|_| format!("unknown log level {level:?}"))?;
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    Ok(())
}

pub(crate) fn ready(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Resolves once SIGINT or SIGTERM arrives.
pub(crate) async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("apogee")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Which servers a subcommand runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Standalone,
    Namesrv,
    Broker,
}

pub fn run(role: Role, args: ServerArgs) -> Result<(), String> {
    init_logging(&args.log_level)?;
    let file = load_file(args.config.as_deref())?;
    runtime()?.block_on(async move {
        let namesrv = if role != Role::Broker {
            let cfg = namesrv_config(&args, &file)?;
            Some(
                NameServer::start(cfg)
                    .await
                    .map_err(|e| format!("name server: {e}"))?,
            )
        } else {
            None
        };
        let broker = if role != Role::Namesrv {
            let mut cfg = broker_config(&args, &file)?;
            if let Some(ns) = &namesrv {
                // In one process the broker reaches its name server over loopback.
                let port = ns.local_addr().port();
                let own = format!("127.0.0.1:{port}");
                if !cfg.namesrv_addrs.contains(&own) {
                    cfg.namesrv_addrs.insert(0, own);
                }
            }
            Some(
                Broker::start(cfg)
                    .await
                    .map_err(|e| format!("broker: {e}"))?,
            )
        } else {
            None
        };
        let grpc = match (&broker, grpc_listen(role, &args)) {
            (Some(b), Some(listen)) => Some(start_grpc(b, listen).await?),
            _ => None,
        };
        let http = match &broker {
            Some(b) => Some(
                b.start_http(&args.http_listen)
                    .await
                    .map_err(|e| format!("http: {e}"))?,
            ),
            None => None,
        };
        let mut line = format!("apogee {} ready:", env!("CARGO_PKG_VERSION"));
        if let Some(ns) = &namesrv {
            line.push_str(&format!(" namesrv={}", ns.local_addr()));
        }
        if let Some(b) = &broker {
            line.push_str(&format!(" broker={}", b.broker_addr()));
        }
        if let (Some(g), Some(b)) = (&grpc, &broker) {
            line.push_str(&format!(" grpc={}", grpc_advertised(b, g)));
        }
        if let Some(h) = &http {
            line.push_str(&format!(" http={}", h.local_addr()));
        }
        ready(&line);
        stop_signal().await;
        tracing::info!("stopping");
        if let Some(g) = grpc {
            g.shutdown().await;
        }
        drop(http);
        if let Some(b) = broker {
            b.shutdown()
                .await
                .map_err(|e| format!("broker shutdown: {e}"))?;
        }
        if let Some(ns) = namesrv {
            ns.shutdown().await;
        }
        Ok(())
    })
}

/// The gRPC listen address a role uses, if any.
fn grpc_listen(role: Role, args: &ServerArgs) -> Option<String> {
    match (role, &args.grpc_listen) {
        (_, Some(listen)) => Some(listen.clone()),
        (Role::Standalone, None) => Some(apogee_grpc::DEFAULT_LISTEN_ADDR.to_owned()),
        _ => None,
    }
}

/// Where clients dial the gRPC endpoint: the broker's advertised IP and the bound gRPC port.
fn grpc_advertised(broker: &BrokerHandle, grpc: &GrpcServerHandle) -> SocketAddr {
    SocketAddr::new(
        broker.services().store_host().ip(),
        grpc.local_addr().port(),
    )
}

/// Serves RocketMQ 5.x gRPC clients over the in-process broker.
async fn start_grpc(broker: &BrokerHandle, listen: String) -> Result<GrpcServerHandle, String> {
    let config = GrpcConfig {
        listen_addr: listen,
        ..GrpcConfig::default()
    };
    let validate = config.producer.validate_message_type;
    let ip = broker.services().store_host().ip();
    // The port is known once bound (port 0); routes advertise it from then on, before the
    // ready line lets any client in.
    let backend = Arc::new(
        LocalBackend::new(broker.services(), SocketAddr::new(ip, 0))
            .with_validate_message_type(validate),
    );
    let handle = GrpcServer::start(config, backend.clone())
        .await
        .map_err(|e| format!("gRPC: {e}"))?;
    backend.set_advertised(SocketAddr::new(ip, handle.local_addr().port()));
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        args: ServerArgs,
    }

    fn args(v: &[&str]) -> ServerArgs {
        T::parse_from(std::iter::once("t").chain(v.iter().copied())).args
    }

    #[test]
    fn flags_override_the_file_and_defaults_follow_rocketmq() {
        let file: FileConfig = toml::from_str(
            r#"
            data_dir = "/var/apogee"
            [namesrv]
            listen_addr = "127.0.0.1:19876"
            [broker]
            brokerName = "broker-x"
            listenAddr = "127.0.0.1:20911"
            flushDiskType = "SYNC_FLUSH"
            mappedFileSizeCommitLog = 67108864
            diskSpaceWarningLevelRatio = 97
            "#,
        )
        .unwrap();
        let a = args(&["--broker-listen", "127.0.0.1:0", "--broker-ip", "127.0.0.1"]);
        let ns = namesrv_config(&a, &file).unwrap();
        assert_eq!(ns.listen_addr, "127.0.0.1:19876");
        assert_eq!(
            ns.kv_config_path,
            Path::new("/var/apogee/namesrv/kvConfig.json")
        );
        let b = broker_config(&a, &file).unwrap();
        assert_eq!(b.broker_name, "broker-x");
        assert_eq!(b.listen_addr, "127.0.0.1:0");
        assert_eq!(b.broker_ip1.as_deref(), Some("127.0.0.1"));
        assert_eq!(b.data_dir, Path::new("/var/apogee"));
        assert_eq!(
            b.flush_disk_type,
            apogee_broker::FlushDiskTypeConfig::SyncFlush
        );
        let store = b.store_config();
        assert_eq!(store.commitlog_segment_bytes, 64 * 1024 * 1024);
        assert_eq!(store.disk_deny_write_ratio_percent, 97);

        let d = broker_config(&args(&[]), &FileConfig::default()).unwrap();
        assert_eq!(d.data_dir, Path::new("./data"));
        assert_eq!(d.bind_addr(), "0.0.0.0:10911");
        assert_eq!(
            namesrv_config(&args(&[]), &FileConfig::default())
                .unwrap()
                .listen_addr,
            "0.0.0.0:9876"
        );
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let err = broker_config(
            &args(&["--flush-disk-type", "later"]),
            &FileConfig::default(),
        )
        .unwrap_err();
        assert!(err.contains("async or sync"), "{err}");
        let file: Result<FileConfig, _> = toml::from_str("[brokr]\nx = 1\n");
        assert!(file.is_err());
        let file: FileConfig = toml::from_str("[broker]\nlistenPort = \"x\"\n").unwrap();
        assert!(broker_config(&args(&[]), &file)
            .unwrap_err()
            .contains("[broker]"));
    }
}
