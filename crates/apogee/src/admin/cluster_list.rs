//! `clusterList`: GET_BROKER_CLUSTER_INFO (106), plus GET_BROKER_RUNTIME_INFO (28) of each broker
//! for its version and traffic (a broker that does not answer shows `-`).

use std::collections::BTreeMap;

use apogee_protocol::body::{JsonBody, KVTable};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::RemotingCommand;
use clap::Args;
use serde_json::json;

use super::{ok, Ctx, Result, Table};

#[derive(Args, Debug)]
pub struct Opts {
    /// Only this cluster.
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let info = ctx.cluster_info().await?;
    let mut rows = Vec::new();
    for (cluster, names) in &info.cluster_addr_table {
        if o.cluster.as_ref().is_some_and(|c| c != cluster) {
            continue;
        }
        for name in names {
            let Some(data) = info.broker_addr_table.get(name) else {
                continue;
            };
            for (id, addr) in &data.broker_addrs {
                let request = RemotingCommand::request(rc::GET_BROKER_RUNTIME_INFO);
                let runtime = match ctx
                    .broker_raw(addr, request)
                    .await
                    .and_then(|r| ok(addr, r))
                {
                    Ok(r) => KVTable::decode(&r.body)
                        .map(|t| t.table)
                        .unwrap_or_default(),
                    Err(_) => BTreeMap::new(),
                };
                rows.push((cluster.clone(), name.clone(), *id, addr.clone(), runtime));
            }
        }
    }
    let get = |kv: &BTreeMap<String, String>, k: &str| kv.get(k).cloned().unwrap_or("-".into());
    let value = json!(rows
        .iter()
        .map(|(c, n, id, a, kv)| json!({
            "cluster": c,
            "brokerName": n,
            "brokerId": id,
            "addr": a,
            "version": kv.get("brokerVersionDesc"),
            "putTps": kv.get("putTps"),
            "getTransferredTps": kv.get("getTransferedTps").or(kv.get("getTransferredTps")),
        }))
        .collect::<Vec<_>>());
    ctx.emit(&value, || {
        let mut t = Table::new(&[
            "#Cluster Name",
            "#Broker Name",
            "#BID",
            "#Addr",
            "#Version",
            "#InTPS",
            "#OutTPS",
        ]);
        for (c, n, id, a, kv) in &rows {
            t.row(vec![
                c.clone(),
                n.clone(),
                id.to_string(),
                a.clone(),
                get(kv, "brokerVersionDesc"),
                get(kv, "putTps"),
                kv.get("getTransferedTps")
                    .or(kv.get("getTransferredTps"))
                    .cloned()
                    .unwrap_or("-".into()),
            ]);
        }
        t.render()
    });
    Ok(())
}
