//! `updateBrokerConfig`: UPDATE_BROKER_CONFIG (25) with a `key=value` body. A broker that does not
//! serve the code is reported as such (exit 1).

use apogee_protocol::codes::{request_code as rc, response_code};
use apogee_protocol::RemotingCommand;
use clap::Args;
use serde_json::json;

use super::{failure_text, AdminError, Ctx, Result};

#[derive(Args, Debug)]
pub struct Opts {
    /// Broker address.
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker_addr: Option<String>,
    /// Every master of this cluster.
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
    /// Config key.
    #[arg(short = 'k', long = "key")]
    pub key: String,
    /// Config value.
    #[arg(short = 'v', long = "value")]
    pub value: String,
}

/// A properties line with `=`, `:` and `\` escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace(':', "\\:")
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let addrs = ctx
        .targets(o.broker_addr.as_deref(), o.cluster.as_deref())
        .await?;
    let body = format!("{}={}\n", escape(&o.key), escape(&o.value));
    for addr in &addrs {
        let request =
            RemotingCommand::request(rc::UPDATE_BROKER_CONFIG).with_body(body.clone().into_bytes());
        let response = ctx.broker_raw(addr, request).await?;
        if response.code == response_code::REQUEST_CODE_NOT_SUPPORTED {
            return Err(AdminError::Failed(format!(
                "broker {addr} does not support UPDATE_BROKER_CONFIG (25); change the setting in its \
                 config file and restart it ({})",
                failure_text(addr, response.code, response.remark.as_deref().unwrap_or(""))
            )));
        }
        super::ok(addr, response)?;
    }
    let value = json!({"key": o.key, "value": o.value, "brokers": addrs});
    ctx.emit(&value, || {
        addrs
            .iter()
            .map(|a| format!("update broker config success, {a}\n"))
            .collect()
    });
    Ok(())
}
