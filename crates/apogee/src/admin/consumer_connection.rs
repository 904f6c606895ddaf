//! `consumerConnection`: GET_CONSUMER_CONNECTION_LIST (203), asked of each master broker until
//! one knows the group online.

use apogee_protocol::body::{ConsumerConnection, JsonBody};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::header::GetConsumerConnectionListRequestHeader;
use apogee_protocol::RemotingCommand;
use clap::Args;
use serde_json::json;

use super::{ok, AdminError, Ctx, Result, Table};

#[derive(Args, Debug)]
pub struct Opts {
    /// Consumer group name.
    #[arg(short = 'g', long = "consumerGroup")]
    pub group: String,
    /// Ask this broker only.
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker_addr: Option<String>,
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let addrs = match &o.broker_addr {
        Some(b) => vec![b.clone()],
        None => ctx
            .all_masters()
            .await?
            .into_iter()
            .map(|(_, a)| a)
            .collect(),
    };
    let header = GetConsumerConnectionListRequestHeader {
        consumer_group: o.group.clone(),
    };
    let mut last_error = None;
    for addr in &addrs {
        let request =
            RemotingCommand::request_with_header(rc::GET_CONSUMER_CONNECTION_LIST, &header);
        match ctx
            .broker_raw(addr, request)
            .await
            .and_then(|r| ok(addr, r))
        {
            Ok(response) => {
                let cc = ConsumerConnection::decode(&response.body)?;
                print(ctx, &o.group, addr, &cc);
                return Ok(());
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error
        .unwrap_or_else(|| AdminError::Failed("the name server knows no master broker".to_owned())))
}

fn print(ctx: &Ctx, group: &str, addr: &str, cc: &ConsumerConnection) {
    let value = json!({
        "group": group,
        "broker": addr,
        "consumeType": format!("{:?}", cc.consume_type),
        "messageModel": format!("{:?}", cc.message_model),
        "consumeFromWhere": cc.consume_from_where.map(|w| format!("{w:?}")),
        "connections": cc.connection_set.iter().map(|c| json!({
            "clientId": c.client_id,
            "clientAddr": c.client_addr,
            "language": c.language.name(),
            "version": c.version,
        })).collect::<Vec<_>>(),
        "subscriptions": cc.subscription_table.values().map(|s| json!({
            "topic": s.topic,
            "expressionType": s.expression_type,
            "subString": s.sub_string,
        })).collect::<Vec<_>>(),
    });
    ctx.emit(&value, || {
        let mut c = Table::new(&["#", "ClientId", "ClientAddr", "Language", "Version"]);
        for (i, conn) in cc.connection_set.iter().enumerate() {
            c.row(vec![
                (i + 1).to_string(),
                conn.client_id.clone(),
                conn.client_addr.clone(),
                conn.language.name().to_owned(),
                conn.version.to_string(),
            ]);
        }
        let mut s = Table::new(&["Topic", "Type", "SubExpression"]);
        for sub in cc.subscription_table.values() {
            s.row(vec![
                sub.topic.clone(),
                sub.expression_type.clone(),
                sub.sub_string.clone(),
            ]);
        }
        format!(
            "{}\nBelow is subscription:\n{}\nConsumeType: {:?}\nMessageModel: {:?}\nConsumeFromWhere: {}\n",
            c.render(),
            s.render(),
            cc.consume_type,
            cc.message_model,
            cc.consume_from_where.map_or("-".to_owned(), |w| format!("{w:?}"))
        )
    });
}
