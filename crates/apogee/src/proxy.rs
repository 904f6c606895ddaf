//! `apogee proxy`: the RocketMQ 5.x gRPC endpoint in front of a cluster ("cluster mode"), reaching
//! brokers through the name servers given with `--namesrv-addr`. Reads an optional TOML file
//! (`[proxy]` for the cluster side, `[grpc]` for the endpoint), applies flags on top, prints one
//! ready line and stops gracefully on SIGINT/SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apogee_grpc::{GrpcConfig, GrpcServer, RemoteBackend, RemoteConfig, SessionRegistry};
use clap::Args;
use serde::Deserialize;

use crate::server::{init_logging, ready, runtime, stop_signal};

#[derive(Args, Debug, Clone)]
pub struct ProxyArgs {
    /// TOML configuration file (`[proxy]`, `[grpc]`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Name servers of the cluster, `;`-separated.
    #[arg(short = 'n', long, value_name = "ADDRS")]
    pub namesrv_addr: Option<String>,
    /// gRPC listen address (default 0.0.0.0:8081; port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT")]
    pub grpc_listen: Option<String>,
    /// The IP routes tell clients to dial (default: the listen IP, or when listening on every
    /// interface, this host's address towards the first name server).
    #[arg(long, value_name = "IP")]
    pub advertised_ip: Option<String>,
    /// Log level: error, warn, info (default), debug, trace.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// `[proxy]` of the TOML file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ProxyFile {
    /// `;`-separated, like the flag.
    namesrv_addr: Option<String>,
    advertised_ip: Option<String>,
    request_timeout_ms: Option<u64>,
    route_ttl_ms: Option<u64>,
    heartbeat_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    proxy: Option<ProxyFile>,
    grpc: Option<GrpcConfig>,
}

fn load_file(path: Option<&Path>) -> Result<FileConfig, String> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// What the flags and the file say, flags first.
#[derive(Debug)]
struct Settings {
    name_servers: Vec<String>,
    grpc: GrpcConfig,
    advertised_ip: Option<IpAddr>,
    request_timeout: Option<Duration>,
    route_ttl: Option<Duration>,
    heartbeat_interval: Option<Duration>,
}

fn settings(args: &ProxyArgs, file: FileConfig) -> Result<Settings, String> {
    let proxy = file.proxy.unwrap_or_default();
    let namesrv = args
        .namesrv_addr
        .clone()
        .or(proxy.namesrv_addr)
        .or_else(|| std::env::var("NAMESRV_ADDR").ok())
        .unwrap_or_default();
    let name_servers: Vec<String> = namesrv
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if name_servers.is_empty() {
        return Err(
            "apogee proxy needs the cluster's name servers: -n HOST:PORT[;HOST:PORT]".into(),
        );
    }
    let mut grpc = file.grpc.unwrap_or_default();
    if let Some(l) = &args.grpc_listen {
        grpc.listen_addr = l.clone();
    }
    let advertised_ip = match args.advertised_ip.clone().or(proxy.advertised_ip) {
        Some(ip) => Some(
            ip.parse()
                .map_err(|_| format!("--advertised-ip must be an IP address, not {ip:?}"))?,
        ),
        None => None,
    };
    let ms = |v: Option<u64>| v.map(Duration::from_millis);
    Ok(Settings {
        name_servers,
        grpc,
        advertised_ip,
        request_timeout: ms(proxy.request_timeout_ms),
        route_ttl: ms(proxy.route_ttl_ms),
        heartbeat_interval: ms(proxy.heartbeat_interval_ms),
    })
}

/// This host's address on the way to `target` (no packet is sent).
fn local_ip_towards(target: &str) -> Option<IpAddr> {
    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(target)
        .ok()?
        .next()?;
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(addr).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

pub fn run(args: ProxyArgs) -> Result<(), String> {
    init_logging(&args.log_level)?;
    let s = settings(&args, load_file(args.config.as_deref())?)?;
    runtime()?.block_on(async move {
        let listen_ip: Option<IpAddr> = s
            .grpc
            .listen_addr
            .rsplit_once(':')
            .and_then(|(host, _)| host.trim_matches(['[', ']']).parse().ok());
        let ip = s
            .advertised_ip
            .or(listen_ip.filter(|ip| !ip.is_unspecified()))
            .or_else(|| s.name_servers.first().and_then(|ns| local_ip_towards(ns)))
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let mut config = RemoteConfig::new(s.name_servers.clone(), SocketAddr::new(ip, 0));
        config.validate_message_type = s.grpc.producer.validate_message_type;
        if let Some(t) = s.request_timeout {
            config.request_timeout = t;
        }
        if let Some(t) = s.route_ttl {
            config.route_ttl = t;
        }
        if let Some(t) = s.heartbeat_interval {
            config.heartbeat_interval = t;
        }
        let sessions = Arc::new(SessionRegistry::new(s.grpc.max_client_sessions));
        let backend = RemoteBackend::new(config, sessions.clone());
        let grpc = GrpcServer::start_with_sessions(s.grpc, Arc::new(backend.clone()), sessions)
            .await
            .map_err(|e| format!("gRPC: {e}"))?;
        let advertised = SocketAddr::new(ip, grpc.local_addr().port());
        backend.set_advertised(advertised);
        ready(&format!(
            "apogee {} ready: proxy grpc={advertised} namesrv={}",
            env!("CARGO_PKG_VERSION"),
            s.name_servers.join(";")
        ));
        stop_signal().await;
        tracing::info!("stopping");
        grpc.shutdown().await;
        backend.shutdown().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        args: ProxyArgs,
    }

    fn args(v: &[&str]) -> ProxyArgs {
        T::parse_from(std::iter::once("t").chain(v.iter().copied())).args
    }

    #[test]
    fn flags_override_the_file_and_name_servers_split_on_semicolons() {
        let file: FileConfig = toml::from_str(
            r#"
            [proxy]
            namesrv_addr = "10.0.0.1:9876"
            route_ttl_ms = 1000
            [grpc]
            listen_addr = "127.0.0.1:18081"
            "#,
        )
        .unwrap();
        let s = settings(
            &args(&["-n", "a:1; b:2", "--grpc-listen", "127.0.0.1:0"]),
            file,
        )
        .unwrap();
        assert_eq!(s.name_servers, vec!["a:1", "b:2"]);
        assert_eq!(s.grpc.listen_addr, "127.0.0.1:0");
        assert_eq!(s.route_ttl, Some(Duration::from_millis(1000)));

        let file: FileConfig = toml::from_str("[proxy]\nnamesrv_addr = \"c:3\"\n").unwrap();
        let s = settings(&args(&[]), file).unwrap();
        assert_eq!(s.name_servers, vec!["c:3"]);
        assert_eq!(s.grpc.listen_addr, apogee_grpc::DEFAULT_LISTEN_ADDR);
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let err = settings(
            &args(&["-n", "a:1", "--advertised-ip", "nope"]),
            FileConfig::default(),
        )
        .unwrap_err();
        assert!(err.contains("--advertised-ip"), "{err}");
        assert!(toml::from_str::<FileConfig>("[proxy]\nnamesrv = \"x\"\n").is_err());
    }
}
