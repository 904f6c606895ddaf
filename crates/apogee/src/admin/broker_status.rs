//! `brokerStatus`: GET_BROKER_RUNTIME_INFO (28), the broker's key-value runtime table.

use std::collections::BTreeMap;

use apogee_protocol::body::{JsonBody, KVTable};
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

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let addrs = ctx
        .targets(o.broker_addr.as_deref(), o.cluster.as_deref())
        .await?;
    let mut all = BTreeMap::new();
    for addr in &addrs {
        let response = ctx
            .broker(addr, RemotingCommand::request(rc::GET_BROKER_RUNTIME_INFO))
            .await?;
        all.insert(addr.clone(), KVTable::decode(&response.body)?.table);
    }
    let value = if let (1, Some(t)) = (all.len(), all.values().next()) {
        json!(t)
    } else {
        json!(all)
    };
    ctx.emit(&value, || {
        let mut out = String::new();
        for (addr, table) in &all {
            for (k, v) in table {
                if all.len() > 1 {
                    out.push_str(&format!("{addr:<24}"));
                }
                out.push_str(&format!("{k:<32}: {v}\n"));
            }
        }
        out
    });
    Ok(())
}
