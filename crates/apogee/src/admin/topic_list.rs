//! `topicList`: GET_ALL_TOPIC_LIST_FROM_NAMESERVER (206).

use apogee_protocol::body::{JsonBody, TopicList};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::RemotingCommand;
use clap::Args;
use serde_json::json;

use super::{Ctx, Result};

#[derive(Args, Debug)]
pub struct Opts {}

pub async fn run(ctx: &Ctx, _o: Opts) -> Result<()> {
    let response = ctx
        .namesrv(RemotingCommand::request(
            rc::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
        ))
        .await?;
    let list = TopicList::decode(&response.body)?;
    let value = json!({"topicList": list.topic_list});
    ctx.emit(&value, || {
        list.topic_list
            .iter()
            .map(|t| format!("{t}\n"))
            .collect::<String>()
    });
    Ok(())
}
