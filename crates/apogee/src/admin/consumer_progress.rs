//! `consumerProgress`: GET_CONSUME_STATS (208) on every master broker; per queue the broker
//! offset, the group's committed offset and the difference, then the total.

use apogee_protocol::body::{ConsumeStats, JsonBody, MessageQueue, OffsetWrapper};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::header::GetConsumeStatsRequestHeader;
use apogee_protocol::RemotingCommand;
use clap::Args;
use serde_json::json;

use super::{fmt_ms, ok, AdminError, Ctx, Result, Table};

#[derive(Args, Debug)]
pub struct Opts {
    /// Consumer group name.
    #[arg(short = 'g', long = "groupName")]
    pub group: String,
    /// Only this topic.
    #[arg(short = 't', long = "topicName")]
    pub topic: Option<String>,
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let masters = ctx.all_masters().await?;
    let header = GetConsumeStatsRequestHeader {
        consumer_group: o.group.clone(),
        topic: o.topic.clone(),
        topic_list: None,
    };
    let mut rows: Vec<(MessageQueue, OffsetWrapper)> = Vec::new();
    let mut tps = 0.0;
    let mut answered = 0;
    let mut last_error = None;
    for (_, addr) in &masters {
        let request = RemotingCommand::request_with_header(rc::GET_CONSUME_STATS, &header);
        // A broker that does not know the group answers an error; the others still count.
        match ctx
            .broker_raw(addr, request)
            .await
            .and_then(|r| ok(addr, r))
        {
            Ok(response) => {
                let stats = ConsumeStats::decode(&response.body)?;
                tps += stats.consume_tps;
                rows.extend(stats.offset_table);
                answered += 1;
            }
            Err(e) => last_error = Some(e),
        }
    }
    if answered == 0 {
        return Err(last_error.unwrap_or_else(|| {
            AdminError::Failed("the name server knows no master broker".to_owned())
        }));
    }
    rows.sort_by(|a, b| {
        (&a.0.topic, &a.0.broker_name, a.0.queue_id).cmp(&(
            &b.0.topic,
            &b.0.broker_name,
            b.0.queue_id,
        ))
    });
    let diff = |w: &OffsetWrapper| (w.broker_offset - w.consumer_offset.max(0)).max(0);
    let total: i64 = rows.iter().map(|(_, w)| diff(w)).sum();
    let value = json!({
        "group": o.group,
        "consumeTps": tps,
        "diffTotal": total,
        "queues": rows.iter().map(|(mq, w)| json!({
            "topic": mq.topic,
            "brokerName": mq.broker_name,
            "queueId": mq.queue_id,
            "brokerOffset": w.broker_offset,
            "consumerOffset": w.consumer_offset,
            "diff": diff(w),
            "lastTimestamp": w.last_timestamp,
        })).collect::<Vec<_>>(),
    });
    ctx.emit(&value, || {
        let mut t = Table::new(&[
            "Topic",
            "Broker Name",
            "QID",
            "Broker Offset",
            "Consumer Offset",
            "Diff",
            "LastTime",
        ]);
        for (mq, w) in &rows {
            t.row(vec![
                mq.topic.clone(),
                mq.broker_name.clone(),
                mq.queue_id.to_string(),
                w.broker_offset.to_string(),
                w.consumer_offset.to_string(),
                diff(w).to_string(),
                fmt_ms(w.last_timestamp),
            ]);
        }
        format!(
            "{}\nConsume TPS: {tps:.2}\nDiff Total: {total}\n",
            t.render()
        )
    });
    Ok(())
}
