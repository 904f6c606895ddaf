//! `updateTopic`: UPDATE_AND_CREATE_TOPIC (17) on one broker (`-b`) or every master of a cluster
//! (`-c`).

use apogee_protocol::codes::request_code as rc;
use apogee_protocol::header::CreateTopicRequestHeader;
use apogee_protocol::RemotingCommand;
use clap::Args;
use serde_json::json;

use super::{Ctx, Result, Table, DEFAULT_TOPIC};

#[derive(Args, Debug)]
pub struct Opts {
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Create on this broker (address).
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker_addr: Option<String>,
    /// Create on every master of this cluster.
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
    /// Read queue count.
    #[arg(short = 'r', long = "readQueueNums", default_value_t = 8)]
    pub read_queue_nums: i32,
    /// Write queue count.
    #[arg(short = 'w', long = "writeQueueNums", default_value_t = 8)]
    pub write_queue_nums: i32,
    /// Permission: 2 write, 4 read, 6 read and write.
    #[arg(short = 'p', long = "perm", default_value_t = 6)]
    pub perm: i32,
    /// Ordered topic (true/false).
    #[arg(short = 'o', long = "order", default_value_t = false, action = clap::ArgAction::Set)]
    pub order: bool,
    /// Attributes: `+key=value,+key2=value2`, `-key` removes.
    #[arg(short = 'a', long = "attributes")]
    pub attributes: Option<String>,
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let addrs = ctx
        .targets(o.broker_addr.as_deref(), o.cluster.as_deref())
        .await?;
    let header = CreateTopicRequestHeader {
        topic: o.topic.clone(),
        default_topic: DEFAULT_TOPIC.to_owned(),
        read_queue_nums: o.read_queue_nums,
        write_queue_nums: o.write_queue_nums,
        perm: o.perm,
        topic_filter_type: "SINGLE_TAG".to_owned(),
        topic_sys_flag: Some(0),
        order: o.order,
        attributes: o.attributes.clone(),
        force: false,
    };
    let mut table = Table::new(&[
        "Broker", "Topic", "Read", "Write", "Perm", "Order", "Result",
    ]);
    for addr in &addrs {
        let request = RemotingCommand::request_with_header(rc::UPDATE_AND_CREATE_TOPIC, &header);
        ctx.broker(addr, request).await?;
        table.row(vec![
            addr.clone(),
            o.topic.clone(),
            o.read_queue_nums.to_string(),
            o.write_queue_nums.to_string(),
            o.perm.to_string(),
            o.order.to_string(),
            "created".to_owned(),
        ]);
    }
    let value = json!({
        "topic": o.topic,
        "brokers": addrs,
        "readQueueNums": o.read_queue_nums,
        "writeQueueNums": o.write_queue_nums,
        "perm": o.perm,
        "order": o.order,
    });
    ctx.emit(&value, || table.render());
    Ok(())
}
