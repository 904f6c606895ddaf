//! `updateSubGroup`: UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200), the group config as the JSON body.

use apogee_protocol::body::{JsonBody, SubscriptionGroupConfig};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::RemotingCommand;
use clap::{ArgAction, Args};
use serde_json::json;

use super::{Ctx, Result};

#[derive(Args, Debug)]
pub struct Opts {
    /// Consumer group name.
    #[arg(short = 'g', long = "groupName")]
    pub group: String,
    /// Create on this broker (address).
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker_addr: Option<String>,
    /// Create on every master of this cluster.
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
    /// Consume enable.
    #[arg(short = 's', long = "consumeEnable", default_value_t = true, action = ArgAction::Set)]
    pub consume_enable: bool,
    /// Consume from min offset when the group has none.
    #[arg(short = 'm', long = "consumeFromMinEnable", default_value_t = false, action = ArgAction::Set)]
    pub from_min: bool,
    /// Broadcast consumption.
    #[arg(short = 'd', long = "consumeBroadcastEnable", default_value_t = false, action = ArgAction::Set)]
    pub broadcast: bool,
    /// Orderly consumption.
    #[arg(short = 'o', long = "consumeMessageOrderly", default_value_t = false, action = ArgAction::Set)]
    pub orderly: bool,
    /// Retry queue count.
    #[arg(short = 'q', long = "retryQueueNums", default_value_t = 1)]
    pub retry_queue_nums: i32,
    /// Maximum redeliveries before the DLQ.
    #[arg(short = 'r', long = "retryMaxTimes", default_value_t = 16)]
    pub retry_max_times: i32,
    /// Consume from this broker id.
    #[arg(short = 'i', long = "brokerId", default_value_t = 0)]
    pub broker_id: i64,
    /// Broker id to switch to when consuming slowly.
    #[arg(
        short = 'w',
        long = "whichBrokerWhenConsumeSlowly",
        default_value_t = 1
    )]
    pub slow_broker_id: i64,
    /// Notify consumers when the group's membership changes.
    #[arg(short = 'a', long = "notifyConsumerIdsChanged", default_value_t = true, action = ArgAction::Set)]
    pub notify: bool,
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let addrs = ctx
        .targets(o.broker_addr.as_deref(), o.cluster.as_deref())
        .await?;
    let mut cfg = SubscriptionGroupConfig::new(o.group.clone());
    cfg.consume_enable = o.consume_enable;
    cfg.consume_from_min_enable = o.from_min;
    cfg.consume_broadcast_enable = o.broadcast;
    cfg.consume_message_orderly = o.orderly;
    cfg.retry_queue_nums = o.retry_queue_nums;
    cfg.retry_max_times = o.retry_max_times;
    cfg.broker_id = o.broker_id;
    cfg.which_broker_when_consume_slowly = o.slow_broker_id;
    cfg.notify_consumer_ids_changed_enable = o.notify;
    let body = cfg.encode()?;
    for addr in &addrs {
        let request = RemotingCommand::request(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
            .with_body(body.clone());
        ctx.broker(addr, request).await?;
    }
    let value = json!({"group": o.group, "brokers": addrs});
    ctx.emit(&value, || {
        addrs
            .iter()
            .map(|a| format!("create subscription group [{}] to {a} success.\n", o.group))
            .collect()
    });
    Ok(())
}
