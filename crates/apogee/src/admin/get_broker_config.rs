//! `getBrokerConfig`: GET_BROKER_CONFIG (26); the body is `key=value` lines.

use std::collections::BTreeMap;

use apogee_protocol::codes::request_code as rc;
use apogee_protocol::RemotingCommand;
use clap::Args;
use serde_json::json;

use super::{Ctx, Result};

#[derive(Args, Debug)]
pub struct Opts {
    /// Broker address.
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker_addr: Option<String>,
    /// Every master of this cluster.
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
}

/// Java properties text (`key=value`, `#` comments, `\` escapes of `:` and `=`) as a map.
pub(crate) fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        let unescape = |s: &str| s.trim().replace("\\:", ":").replace("\\=", "=");
        out.insert(unescape(k), unescape(v));
    }
    out
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let addrs = ctx
        .targets(o.broker_addr.as_deref(), o.cluster.as_deref())
        .await?;
    let mut all = BTreeMap::new();
    for addr in &addrs {
        let response = ctx
            .broker(addr, RemotingCommand::request(rc::GET_BROKER_CONFIG))
            .await?;
        let text = String::from_utf8_lossy(&response.body);
        all.insert(addr.clone(), parse_properties(&text));
    }
    let value = json!(all);
    ctx.emit(&value, || {
        let mut out = String::new();
        for (addr, cfg) in &all {
            out.push_str(&format!("============{addr}============\n"));
            for (k, v) in cfg {
                out.push_str(&format!("{k:<50}=  {v}\n"));
            }
        }
        out
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_text_parses_with_comments_and_escapes() {
        let m = parse_properties("#c\nbrokerName=broker-a\nnamesrvAddr=127.0.0.1\\:9876\nempty=\n");
        assert_eq!(m.get("brokerName").map(String::as_str), Some("broker-a"));
        assert_eq!(
            m.get("namesrvAddr").map(String::as_str),
            Some("127.0.0.1:9876")
        );
        assert_eq!(m.get("empty").map(String::as_str), Some(""));
        assert_eq!(m.len(), 3);
    }
}
