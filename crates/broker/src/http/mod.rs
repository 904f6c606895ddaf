//! The broker's HTTP server: `GET /metrics` (Prometheus), `GET /` (a self-contained web page) and
//! `GET /api/*` (the JSON the page polls). A minimal HTTP/1.1 server on tokio: GET and HEAD only,
//! one request per connection (`Connection: close`), bounded request head and read time.

mod api;
mod metrics;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::broker::BrokerInner;

/// Largest request head accepted (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;

/// A running HTTP server; stops when dropped or on [`HttpServer::shutdown`].
pub struct HttpServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting; requests in flight finish on their own tasks.
    pub fn shutdown(self) {}
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn start(inner: Arc<BrokerInner>, addr: &str) -> std::io::Result<HttpServer> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    info!(addr = %local_addr, "http server started");
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return;
            };
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    debug!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let inner = Arc::clone(&inner);
            tokio::spawn(async move {
                if let Err(e) = serve(inner, stream).await {
                    debug!(%peer, error = %e, "http connection failed");
                }
                drop(permit);
            });
        }
    });
    Ok(HttpServer { local_addr, task })
}

/// A response: status, content type, body.
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(
            status,
            "application/json; charset=utf-8",
            serde_json::to_vec(value).unwrap_or_default(),
        )
    }

    pub fn text(status: u16, text: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", text.as_bytes())
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

async fn serve(inner: Arc<BrokerInner>, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head_len = loop {
        if let Some(end) = find_head_end(&buf) {
            break Some(end);
        }
        if buf.len() >= MAX_HEAD_BYTES {
            break None;
        }
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let (reply, head_only) = match head_len {
        None => (Reply::text(431, "request head too large\n"), false),
        Some(end) => {
            let head = String::from_utf8_lossy(buf.get(..end).unwrap_or_default());
            let mut parts = head.lines().next().unwrap_or("").split_whitespace();
            let method = parts.next().unwrap_or("");
            let target = parts.next().unwrap_or("");
            match method {
                "GET" | "HEAD" => {
                    let inner = Arc::clone(&inner);
                    let target = target.to_owned();
                    // Building a reply reads the store: off the async workers.
                    let reply = tokio::task::spawn_blocking(move || route(&inner, &target))
                        .await
                        .unwrap_or_else(|_| Reply::text(500, "internal error\n"));
                    (reply, method == "HEAD")
                }
                _ => (Reply::text(405, "only GET and HEAD\n"), false),
            }
        }
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&reply.body);
    }
    stream.write_all(&out).await?;
    stream.shutdown().await
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

fn route(b: &BrokerInner, target: &str) -> Reply {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = parse_query(query);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match path {
        "/" | "/index.html" => Reply::new(200, "text/html; charset=utf-8", PAGE.as_bytes()),
        "/metrics" => Reply::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(b),
        ),
        "/api/cluster.json" => Reply::json(200, &api::cluster(b)),
        "/api/topics.json" => Reply::json(200, &api::topics(b)),
        "/api/groups.json" => Reply::json(200, &api::groups(b)),
        "/api/stats" | "/api/stats.json" => Reply::json(200, &api::stats(b)),
        "/api/message" | "/api/message.json" => match param("id") {
            Some(id) => api::message_by_id(b, id, param("topic")),
            None => Reply::json(400, &serde_json::json!({"error": "missing id"})),
        },
        "/api/messages" | "/api/messages.json" => match (param("topic"), param("key")) {
            (Some(topic), Some(key)) => api::messages_by_key(b, topic, key),
            _ => Reply::json(400, &serde_json::json!({"error": "missing topic or key"})),
        },
        _ => Reply::text(404, "not found\n"),
    }
}

/// `a=1&b=x%20y` into pairs, percent- and plus-decoded.
fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The web page: HTML, CSS and JS in one string, no external assets.
const PAGE: &str = include_str!("page.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_and_plus_decoded() {
        assert_eq!(
            parse_query("topic=a%20b&key=x+y&bad=%zz&empty"),
            vec![
                ("topic".into(), "a b".into()),
                ("key".into(), "x y".into()),
                ("bad".into(), "%zz".into()),
                ("empty".into(), "".into()),
            ]
        );
        assert_eq!(decode("%E4%BD%A0"), "你");
        assert_eq!(decode("%4"), "%4");
    }

    #[test]
    fn head_end_is_found_only_after_blank_line() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
    }
}
