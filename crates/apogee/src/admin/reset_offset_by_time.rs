//! `resetOffsetByTime`: asks each master broker to reset the group with
//! INVOKE_BROKER_TO_RESET_OFFSET (222), which also tells online consumers. A broker that does
//! not serve 222 (or has no consumer of the group online) is handled the old way instead: per
//! queue SEARCH_OFFSET_BY_TIMESTAMP (29) then UPDATE_CONSUMER_OFFSET (15); online consumers then
//! keep their in-memory offsets until restarted. The output says which way each broker went.

use std::collections::BTreeMap;

use apogee_protocol::body::{JsonBody, MessageQueue, ResetOffsetBody, MASTER_ID};
use apogee_protocol::codes::{request_code as rc, response_code};
use apogee_protocol::header::ResetOffsetRequestHeader;
use apogee_protocol::RemotingCommand;
use clap::{ArgAction, Args};
use serde_json::json;

use super::{days_from_civil, failure_text, now_ms, usage, AdminError, Ctx, Result, Table};

#[derive(Args, Debug)]
pub struct Opts {
    /// Consumer group name.
    #[arg(short = 'g', long = "group")]
    pub group: String,
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// `now`, milliseconds since the epoch, or `yyyy-MM-dd#HH:mm:ss:SSS` (UTC).
    #[arg(short = 's', long = "timestamp")]
    pub timestamp: String,
    /// Also move offsets forward (false: only rewind).
    #[arg(short = 'f', long = "force", default_value_t = true, action = ArgAction::Set)]
    pub force: bool,
}

/// Parses the `-s` forms mqadmin accepts.
pub(crate) fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if s == "now" {
        return Some(now_ms());
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let (date, time) = s.split_once('#')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, se, ms) = (t.next()??, t.next()??, t.next()??, t.next()??);
    if d.next().is_some()
        || t.next().is_some()
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
    {
        return None;
    }
    Some(days_from_civil(y, mo, da) * 86_400_000 + ((h * 60 + mi) * 60 + se) * 1000 + ms)
}

struct Row {
    mq: MessageQueue,
    offset: i64,
    how: &'static str,
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let Some(ts) = parse_timestamp(&o.timestamp) else {
        return Err(usage(format!(
            "-s {}: expected now, milliseconds, or yyyy-MM-dd#HH:mm:ss:SSS",
            o.timestamp
        )));
    };
    let route = ctx.route(&o.topic).await?;
    let header = ResetOffsetRequestHeader {
        group: o.group.clone(),
        topic: o.topic.clone(),
        queue_id: -1,
        offset: None,
        timestamp: ts,
        is_force: o.force,
    };
    let mut rows = Vec::new();
    let mut notes = BTreeMap::new();
    for b in &route.broker_datas {
        let Some(addr) = b.broker_addrs.get(&MASTER_ID) else {
            continue;
        };
        let request =
            RemotingCommand::request_with_header(rc::INVOKE_BROKER_TO_RESET_OFFSET, &header);
        let response = ctx.broker_raw(addr, request).await?;
        match response.code {
            response_code::SUCCESS => {
                let table = if response.body.is_empty() {
                    BTreeMap::new()
                } else {
                    ResetOffsetBody::decode(&response.body)?.offset_table
                };
                for (mq, offset) in table {
                    rows.push(Row {
                        mq,
                        offset,
                        how: "INVOKE_BROKER_TO_RESET_OFFSET",
                    });
                }
                notes.insert(
                    b.broker_name.clone(),
                    "reset by the broker (INVOKE_BROKER_TO_RESET_OFFSET), online consumers notified",
                );
            }
            response_code::REQUEST_CODE_NOT_SUPPORTED | response_code::CONSUMER_NOT_ONLINE => {
                let why = if response.code == response_code::CONSUMER_NOT_ONLINE {
                    "no consumer online; offsets written with UPDATE_CONSUMER_OFFSET"
                } else {
                    "broker lacks INVOKE_BROKER_TO_RESET_OFFSET; offsets written with \
                     UPDATE_CONSUMER_OFFSET (restart online consumers to pick them up)"
                };
                notes.insert(b.broker_name.clone(), why);
                let queues = route
                    .queue_datas
                    .iter()
                    .filter(|q| q.broker_name == b.broker_name)
                    .map(|q| q.read_queue_nums.max(q.write_queue_nums))
                    .max()
                    .unwrap_or(0);
                for id in 0..queues {
                    let mq = MessageQueue::new(o.topic.clone(), b.broker_name.clone(), id);
                    let target = ctx.inst.search_offset(&mq, ts).await?;
                    if !o.force {
                        let current = ctx.inst.query_consumer_offset(&o.group, &mq).await?;
                        if current.is_some_and(|c| target > c) {
                            continue;
                        }
                    }
                    ctx.inst
                        .update_consumer_offset(&o.group, &mq, target, false)
                        .await?;
                    rows.push(Row {
                        mq,
                        offset: target,
                        how: "UPDATE_CONSUMER_OFFSET",
                    });
                }
            }
            code => {
                return Err(AdminError::Failed(failure_text(
                    addr,
                    code,
                    response.remark.as_deref().unwrap_or(""),
                )))
            }
        }
    }
    rows.sort_by(|a, b| {
        (&a.mq.broker_name, a.mq.queue_id).cmp(&(&b.mq.broker_name, b.mq.queue_id))
    });
    let value = json!({
        "group": o.group,
        "topic": o.topic,
        "timestamp": ts,
        "brokers": notes,
        "queues": rows.iter().map(|r| json!({
            "brokerName": r.mq.broker_name,
            "queueId": r.mq.queue_id,
            "offset": r.offset,
            "method": r.how,
        })).collect::<Vec<_>>(),
    });
    ctx.emit(&value, || {
        let mut out = String::new();
        for (broker, note) in &notes {
            out.push_str(&format!("{broker}: {note}\n"));
        }
        let mut t = Table::new(&["#Broker Name", "#QID", "#Offset", "#Method"]);
        for r in &rows {
            t.row(vec![
                r.mq.broker_name.clone(),
                r.mq.queue_id.to_string(),
                r.offset.to_string(),
                r.how.to_owned(),
            ]);
        }
        out.push_str(&t.render());
        out
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_in_mqadmin_forms() {
        assert_eq!(parse_timestamp("1700000000123"), Some(1_700_000_000_123));
        assert_eq!(
            parse_timestamp("2023-11-14#22:13:20:123"),
            Some(1_700_000_000_123)
        );
        assert!(parse_timestamp("now").is_some_and(|t| t > 1_700_000_000_000));
        assert_eq!(parse_timestamp("2023-13-14#22:13:20:123"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp(""), None);
    }
}
