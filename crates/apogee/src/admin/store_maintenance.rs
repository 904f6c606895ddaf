//! Storage maintenance on brokers: `deleteExpiredCommitLog` (DELETE_EXPIRED_COMMITLOG, 329),
//! `cleanExpiredCQ` (CLEAN_EXPIRED_CONSUMEQUEUE, 306) and `cleanUnusedTopic` (CLEAN_UNUSED_TOPIC,
//! 316), each sent to one broker (`-b`) or every master of a cluster (`-c`).

use apogee_protocol::RemotingCommand;
use clap::Args;
use serde_json::json;

use super::{Ctx, Result};

#[derive(Args, Debug)]
pub struct Opts {
    /// Broker address.
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker_addr: Option<String>,
    /// Every master of this cluster (mqadmin spells it `--cluster` for these commands; the
    /// `--clusterName` of the other commands is taken too).
    #[arg(short = 'c', long = "cluster", alias = "clusterName")]
    pub cluster: Option<String>,
}

/// Sends `code` to each target broker; prints what each one did (its remark).
pub async fn run(ctx: &Ctx, o: Opts, code: i32, what: &str) -> Result<()> {
    let addrs = ctx
        .targets(o.broker_addr.as_deref(), o.cluster.as_deref())
        .await?;
    let mut done = Vec::new();
    for addr in &addrs {
        let response = ctx.broker_raw(addr, RemotingCommand::request(code)).await?;
        let response = super::ok(addr, response)?;
        done.push((addr.clone(), response.remark.unwrap_or_default()));
    }
    let value = json!({
        "command": what,
        "brokers": done
            .iter()
            .map(|(a, r)| json!({"broker": a, "result": r}))
            .collect::<Vec<_>>(),
    });
    ctx.emit(&value, || {
        done.iter()
            .map(|(a, r)| format!("{what} success, {a}: {r}\n"))
            .collect()
    });
    Ok(())
}
