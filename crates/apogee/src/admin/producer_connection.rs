//! `producerConnection`: GET_PRODUCER_CONNECTION_LIST (204) on the masters of the topic's route.

use apogee_protocol::body::{JsonBody, ProducerConnection, MASTER_ID};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::header::GetProducerConnectionListRequestHeader;
use apogee_protocol::RemotingCommand;
use clap::Args;
use serde_json::json;

use super::{ok, AdminError, Ctx, Result, Table};

#[derive(Args, Debug)]
pub struct Opts {
    /// Producer group name.
    #[arg(short = 'g', long = "producerGroup")]
    pub group: String,
    /// A topic the group produces to (its brokers are asked).
    #[arg(short = 't', long = "topic")]
    pub topic: String,
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let route = ctx.route(&o.topic).await?;
    let header = GetProducerConnectionListRequestHeader {
        producer_group: o.group.clone(),
    };
    let mut last_error = None;
    for b in &route.broker_datas {
        let Some(addr) = b.broker_addrs.get(&MASTER_ID) else {
            continue;
        };
        let request =
            RemotingCommand::request_with_header(rc::GET_PRODUCER_CONNECTION_LIST, &header);
        match ctx
            .broker_raw(addr, request)
            .await
            .and_then(|r| ok(addr, r))
        {
            Ok(response) => {
                let pc = ProducerConnection::decode(&response.body)?;
                let value = json!({
                    "group": o.group,
                    "broker": addr,
                    "connections": pc.connection_set.iter().map(|c| json!({
                        "clientId": c.client_id,
                        "clientAddr": c.client_addr,
                        "language": c.language.name(),
                        "version": c.version,
                    })).collect::<Vec<_>>(),
                });
                ctx.emit(&value, || {
                    let mut t = Table::new(&["#", "ClientId", "ClientAddr", "Language", "Version"]);
                    for (i, c) in pc.connection_set.iter().enumerate() {
                        t.row(vec![
                            (i + 1).to_string(),
                            c.client_id.clone(),
                            c.client_addr.clone(),
                            c.language.name().to_owned(),
                            c.version.to_string(),
                        ]);
                    }
                    t.render()
                });
                return Ok(());
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error
        .unwrap_or_else(|| AdminError::Failed(format!("topic {} has no master broker", o.topic))))
}
