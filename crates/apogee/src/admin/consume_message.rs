//! `consumeMessage`: pulls up to `-c` messages from a topic (all readable queues, or `-b`/`-i`),
//! from `-o` or each queue's min offset, and prints them. Commits nothing.

use apogee_client::consumer::pull::PullStatus;
use apogee_client::MessageQueue;
use clap::Args;

use super::query_msg_by_offset::pull_once;
use super::{emit_messages, Ctx, Result};

#[derive(Args, Debug)]
pub struct Opts {
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Only this broker name.
    #[arg(short = 'b', long = "brokerName")]
    pub broker_name: Option<String>,
    /// Only this queue id.
    #[arg(short = 'i', long = "queueId")]
    pub queue_id: Option<i32>,
    /// Start offset in each queue (default: its min offset).
    #[arg(short = 'o', long = "offset")]
    pub offset: Option<i64>,
    /// Stop after this many messages.
    #[arg(short = 'c', long = "MessageNumber", default_value_t = 128)]
    pub count: usize,
}

/// Messages pulled per request.
const BATCH: i32 = 32;

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let route = ctx.route(&o.topic).await?;
    let mut queues = Vec::new();
    for q in &route.queue_datas {
        if o.broker_name.as_ref().is_some_and(|b| *b != q.broker_name) {
            continue;
        }
        for id in 0..q.read_queue_nums {
            if o.queue_id.is_none_or(|want| want == id) {
                queues.push(MessageQueue::new(
                    o.topic.clone(),
                    q.broker_name.clone(),
                    id,
                ));
            }
        }
    }
    let mut out = Vec::new();
    'queues: for mq in &queues {
        let mut offset = o.offset.unwrap_or(0);
        loop {
            if out.len() >= o.count {
                break 'queues;
            }
            let result = pull_once(ctx, mq, offset, BATCH).await?;
            match result.status {
                PullStatus::Found | PullStatus::NoMatchedMsg => {
                    for mut m in result.messages {
                        m.broker_name = mq.broker_name.clone();
                        out.push(m);
                    }
                    if result.next_begin_offset <= offset {
                        break;
                    }
                    offset = result.next_begin_offset;
                }
                // Below the min: continue from where the broker says the queue starts.
                PullStatus::OffsetIllegal
                    if o.offset.is_none() && result.next_begin_offset > offset =>
                {
                    offset = result.next_begin_offset;
                }
                _ => break,
            }
        }
    }
    out.truncate(o.count);
    emit_messages(ctx, &out);
    Ok(())
}
