//! `topicStatus`: GET_TOPIC_STATS_INFO (202) on every master of the topic's route.

use apogee_protocol::body::{JsonBody, TopicStatsTable, MASTER_ID};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::header::GetTopicStatsInfoRequestHeader;
use apogee_protocol::RemotingCommand;
use clap::Args;
use serde_json::json;

use super::{fmt_ms, Ctx, Result, Table};

#[derive(Args, Debug)]
pub struct Opts {
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let route = ctx.route(&o.topic).await?;
    let header = GetTopicStatsInfoRequestHeader {
        topic: o.topic.clone(),
    };
    let mut rows = Vec::new();
    for b in &route.broker_datas {
        let Some(addr) = b.broker_addrs.get(&MASTER_ID) else {
            continue;
        };
        let request = RemotingCommand::request_with_header(rc::GET_TOPIC_STATS_INFO, &header);
        let response = ctx.broker(addr, request).await?;
        let stats = TopicStatsTable::decode(&response.body)?;
        for (mq, off) in stats.offset_table {
            rows.push((mq, off));
        }
    }
    rows.sort_by(|a, b| (&a.0.broker_name, a.0.queue_id).cmp(&(&b.0.broker_name, b.0.queue_id)));
    let value = json!(rows
        .iter()
        .map(|(mq, off)| json!({
            "brokerName": mq.broker_name,
            "queueId": mq.queue_id,
            "minOffset": off.min_offset,
            "maxOffset": off.max_offset,
            "lastUpdateTimestamp": off.last_update_timestamp,
        }))
        .collect::<Vec<_>>());
    ctx.emit(&value, || {
        let mut t = Table::new(&[
            "Broker Name",
            "QID",
            "Min Offset",
            "Max Offset",
            "Last Updated",
        ]);
        for (mq, off) in &rows {
            t.row(vec![
                mq.broker_name.clone(),
                mq.queue_id.to_string(),
                off.min_offset.to_string(),
                off.max_offset.to_string(),
                fmt_ms(off.last_update_timestamp),
            ]);
        }
        t.render()
    });
    Ok(())
}
