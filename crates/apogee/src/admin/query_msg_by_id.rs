//! `queryMsgById`: an offset message id is decoded into its broker address and commit-log
//! offset and fetched with VIEW_MESSAGE_BY_ID (33); when that fails and `-t` is given, the id is
//! looked up as a `UNIQ_KEY` with QUERY_MESSAGE (12, `_UNIQUE_KEY_QUERY`).

use apogee_client::MessageExt;
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::header::ViewMessageRequestHeader;
use apogee_protocol::message::id::OffsetMsgId;
use apogee_protocol::RemotingCommand;
use clap::Args;

use super::query_msg_by_key::query_index;
use super::{emit_messages, now_ms, AdminError, Ctx, Result};

#[derive(Args, Debug)]
pub struct Opts {
    /// Message id(s), comma-separated: offset ids, or UNIQ_KEYs with -t.
    #[arg(short = 'i', long = "msgId")]
    pub msg_id: String,
    /// Topic (needed to look a UNIQ_KEY up).
    #[arg(short = 't', long = "topic")]
    pub topic: Option<String>,
}

async fn by_offset_id(ctx: &Ctx, id: &str, topic: Option<&str>) -> Result<MessageExt> {
    let parsed = OffsetMsgId::parse(id)
        .map_err(|e| AdminError::Failed(format!("{id} is not an offset message id: {e}")))?;
    let addr = parsed.store_host.to_string();
    let header = ViewMessageRequestHeader {
        topic: topic.map(str::to_owned),
        offset: parsed.physical_offset,
    };
    let request = RemotingCommand::request_with_header(rc::VIEW_MESSAGE_BY_ID, &header);
    let response = ctx.broker(&addr, request).await?;
    let (m, _) = MessageExt::decode(&response.body)?;
    Ok(m)
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let mut found = Vec::new();
    for id in o.msg_id.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match by_offset_id(ctx, id, o.topic.as_deref()).await {
            Ok(m) => found.push(m),
            Err(offset_err) => {
                let Some(topic) = o.topic.as_deref() else {
                    return Err(offset_err);
                };
                let msgs = query_index(ctx, topic, id, true, 32, 0, now_ms() + 1).await?;
                if msgs.is_empty() {
                    return Err(AdminError::Failed(format!(
                        "message {id} not found (as offset id: {}; as UNIQ_KEY of {topic}: no match)",
                        match offset_err {
                            AdminError::Failed(s) | AdminError::Usage(s) => s,
                        }
                    )));
                }
                found.extend(msgs);
            }
        }
    }
    emit_messages(ctx, &found);
    Ok(())
}
