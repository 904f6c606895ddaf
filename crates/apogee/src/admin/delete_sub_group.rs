//! `deleteSubGroup`: DELETE_SUBSCRIPTIONGROUP (207).

use apogee_protocol::codes::request_code as rc;
use apogee_protocol::header::DeleteSubscriptionGroupRequestHeader;
use apogee_protocol::RemotingCommand;
use clap::{ArgAction, Args};
use serde_json::json;

use super::{Ctx, Result};

#[derive(Args, Debug)]
pub struct Opts {
    /// Consumer group name.
    #[arg(short = 'g', long = "groupName")]
    pub group: String,
    /// Delete on this broker (address).
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker_addr: Option<String>,
    /// Delete on every master of this cluster.
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
    /// Also remove the group's consumer offsets.
    #[arg(short = 'r', long = "removeOffset", default_value_t = false, action = ArgAction::Set)]
    pub remove_offset: bool,
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let addrs = ctx
        .targets(o.broker_addr.as_deref(), o.cluster.as_deref())
        .await?;
    let header = DeleteSubscriptionGroupRequestHeader {
        group_name: o.group.clone(),
        clean_offset: o.remove_offset,
    };
    for addr in &addrs {
        let request = RemotingCommand::request_with_header(rc::DELETE_SUBSCRIPTIONGROUP, &header);
        ctx.broker(addr, request).await?;
    }
    let value = json!({"group": o.group, "brokers": addrs});
    ctx.emit(&value, || {
        addrs
            .iter()
            .map(|a| {
                format!(
                    "delete subscription group [{}] from {a} success.\n",
                    o.group
                )
            })
            .collect()
    });
    Ok(())
}
