//! `queryMsgByKey`: QUERY_MESSAGE (12) by `KEYS` on every master of the topic's route. The same
//! request with `_UNIQUE_KEY_QUERY` looks a `UNIQ_KEY` up (used by `queryMsgById`).

use apogee_client::MessageExt;
use apogee_protocol::body::MASTER_ID;
use apogee_protocol::codes::{request_code as rc, response_code};
use apogee_protocol::header::QueryMessageRequestHeader;
use apogee_protocol::RemotingCommand;
use clap::Args;

use super::{emit_messages, now_ms, ok, AdminError, Ctx, Result, Table};

#[derive(Args, Debug)]
pub struct Opts {
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Message key.
    #[arg(short = 'k', long = "msgKey")]
    pub key: String,
    /// Begin timestamp (ms).
    #[arg(short = 'b', long = "beginTimestamp", default_value_t = 0)]
    pub begin_ms: i64,
    /// End timestamp (ms; default now).
    #[arg(short = 'e', long = "endTimestamp")]
    pub end_ms: Option<i64>,
    /// Maximum messages per broker.
    #[arg(short = 'm', long = "maxNum", default_value_t = 64)]
    pub max_num: i32,
    /// Print every message in detail instead of one line each.
    #[arg(short = 'd', long = "detail")]
    pub detail: bool,
}

/// Messages of `topic` whose key (or `UNIQ_KEY`, when `unique`) is `key`, from every master.
pub(crate) async fn query_index(
    ctx: &Ctx,
    topic: &str,
    key: &str,
    unique: bool,
    max_num: i32,
    begin_ms: i64,
    end_ms: i64,
) -> Result<Vec<MessageExt>> {
    let route = ctx.route(topic).await?;
    let header = QueryMessageRequestHeader {
        topic: topic.to_owned(),
        key: key.to_owned(),
        max_num,
        begin_timestamp: begin_ms,
        end_timestamp: end_ms,
        unique_key_query: unique.then_some(true),
    };
    let mut found = Vec::new();
    for b in &route.broker_datas {
        let Some(addr) = b.broker_addrs.get(&MASTER_ID) else {
            continue;
        };
        let request = RemotingCommand::request_with_header(rc::QUERY_MESSAGE, &header);
        let response = ctx.broker_raw(addr, request).await?;
        if response.code == response_code::QUERY_NOT_FOUND {
            continue;
        }
        let response = ok(addr, response)?;
        let (msgs, err) = MessageExt::decode_all(&response.body);
        if let Some(e) = err {
            return Err(AdminError::Failed(format!(
                "{addr}: undecodable record: {e}"
            )));
        }
        for mut m in msgs {
            // The index matches by hash; keep only real matches, as mqadmin does.
            let hit = if unique {
                m.msg_id == key
            } else {
                m.keys().any(|k| k == key)
            };
            if hit && m.topic == topic {
                m.broker_name = b.broker_name.clone();
                found.push(m);
            }
        }
    }
    Ok(found)
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let end = o.end_ms.unwrap_or_else(|| now_ms().saturating_add(1));
    let msgs = query_index(ctx, &o.topic, &o.key, false, o.max_num, o.begin_ms, end).await?;
    if o.detail || ctx.json {
        emit_messages(ctx, &msgs);
        return Ok(());
    }
    let mut t = Table::new(&["#Message ID", "#Broker", "#QID", "#Offset"]);
    for m in &msgs {
        t.row(vec![
            m.msg_id.clone(),
            m.broker_name.clone(),
            m.queue_id.to_string(),
            m.queue_offset.to_string(),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}
