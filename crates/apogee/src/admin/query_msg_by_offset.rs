//! `queryMsgByOffset`: one PULL_MESSAGE (11) of a single message at broker, queue and offset.

use std::time::Duration;

use apogee_client::consumer::pull::{PullApi, PullRequest, PullStatus};
use apogee_client::consumer::subscription::{build_subscription, MessageSelector};
use apogee_client::MessageQueue;
use clap::Args;

use super::{emit_messages, AdminError, Ctx, Result, TOOLS_GROUP};

#[derive(Args, Debug)]
pub struct Opts {
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Broker name.
    #[arg(short = 'b', long = "brokerName")]
    pub broker_name: String,
    /// Queue id.
    #[arg(short = 'i', long = "queueId")]
    pub queue_id: i32,
    /// Queue offset.
    #[arg(short = 'o', long = "offset")]
    pub offset: i64,
}

/// Pulls up to `max` messages of `mq` from `offset` (one request).
pub(crate) async fn pull_once(
    ctx: &Ctx,
    mq: &MessageQueue,
    offset: i64,
    max: i32,
) -> Result<apogee_client::consumer::pull::PullResult> {
    ctx.inst.update_topic_route(&mq.topic).await?;
    let api = PullApi::new(ctx.inst.clone(), TOOLS_GROUP, None);
    let subscription = build_subscription(&mq.topic, &MessageSelector::all(), 0)?;
    let req = PullRequest {
        mq: mq.clone(),
        subscription,
        offset,
        max_nums: max,
        max_bytes: None,
        commit_offset: None,
        suspend_timeout_ms: None,
        send_subscription: true,
        lite: false,
        timeout: ctx.timeout.max(Duration::from_secs(1)),
    };
    Ok(api.pull(&req).await?)
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let mq = MessageQueue::new(o.topic.clone(), o.broker_name.clone(), o.queue_id);
    let result = pull_once(ctx, &mq, o.offset, 1).await?;
    match result.status {
        PullStatus::Found if !result.messages.is_empty() => {
            let msgs: Vec<_> = result.messages.into_iter().take(1).collect();
            emit_messages(ctx, &msgs);
            Ok(())
        }
        status => Err(AdminError::Failed(format!(
            "no message at {}/{}/{} offset {} ({status:?}; queue offsets {}..{})",
            o.topic, o.broker_name, o.queue_id, o.offset, result.min_offset, result.max_offset
        ))),
    }
}
