//! `deleteTopic`: DELETE_TOPIC_IN_BROKER (215) on every master of the cluster, then
//! DELETE_TOPIC_IN_NAMESRV (216) on every name server.

use apogee_protocol::codes::request_code as rc;
use apogee_protocol::header::{DeleteTopicFromNamesrvRequestHeader, DeleteTopicRequestHeader};
use apogee_protocol::RemotingCommand;
use clap::Args;
use serde_json::json;

use super::{Ctx, Result};

#[derive(Args, Debug)]
pub struct Opts {
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Delete from every master of this cluster.
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: String,
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let masters = ctx.cluster_masters(&o.cluster).await?;
    let header = DeleteTopicRequestHeader {
        topic: o.topic.clone(),
    };
    let mut brokers = Vec::new();
    for (_, addr) in &masters {
        let request = RemotingCommand::request_with_header(rc::DELETE_TOPIC_IN_BROKER, &header);
        ctx.broker(addr, request).await?;
        brokers.push(addr.clone());
    }
    let ns_header = DeleteTopicFromNamesrvRequestHeader {
        topic: o.topic.clone(),
        cluster_name: Some(o.cluster.clone()),
    };
    let namesrvs = ctx
        .every_namesrv(RemotingCommand::request_with_header(
            rc::DELETE_TOPIC_IN_NAMESRV,
            &ns_header,
        ))
        .await?;
    let value = json!({"topic": o.topic, "brokers": brokers, "namesrvs": namesrvs});
    ctx.emit(&value, || {
        format!(
            "delete topic [{}] from cluster [{}] success (brokers {}; name servers {}).\n",
            o.topic,
            o.cluster,
            brokers.join(", "),
            namesrvs.join(", ")
        )
    });
    Ok(())
}
