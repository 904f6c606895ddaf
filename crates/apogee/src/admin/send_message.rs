//! `sendMessage`: one message through a producer (SEND_MESSAGE_V2), to a chosen queue when `-b`
//! and `-i` are given.

use apogee_client::{Message, MessageQueue, Producer};
use clap::Args;
use serde_json::json;

use super::{usage, Ctx, Result, Table};

#[derive(Args, Debug)]
pub struct Opts {
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Message body (UTF-8).
    #[arg(short = 'p', long = "body")]
    pub body: String,
    /// Message keys (space-separated for several).
    #[arg(short = 'k', long = "keys")]
    pub keys: Option<String>,
    /// Message tags.
    #[arg(short = 'c', long = "tags")]
    pub tags: Option<String>,
    /// Send to this broker name (with -i).
    #[arg(short = 'b', long = "broker")]
    pub broker: Option<String>,
    /// Send to this queue id (with -b).
    #[arg(short = 'i', long = "qid")]
    pub queue_id: Option<i32>,
    /// Producer group.
    #[arg(short = 'g', long = "producerGroup", default_value = "TOOLS_PRODUCER")]
    pub group: String,
}

pub async fn run(ctx: &Ctx, o: Opts) -> Result<()> {
    let mut msg = Message::new(o.topic.clone(), o.body.clone().into_bytes());
    if let Some(tags) = &o.tags {
        msg = msg.with_tags(tags.clone());
    }
    if let Some(keys) = &o.keys {
        msg = msg.with_keys(keys.split_whitespace());
    }
    let producer = Producer::builder()
        .group(o.group.clone())
        .client_instance(ctx.inst.clone())
        .send_timeout(ctx.timeout)
        .start()
        .await?;
    let sent = match (&o.broker, o.queue_id) {
        (Some(b), Some(q)) => {
            producer
                .send_to_queue(msg, &MessageQueue::new(o.topic.clone(), b.clone(), q))
                .await
        }
        (None, None) => producer.send(msg).await,
        _ => {
            producer.shutdown().await;
            return Err(usage("-b (broker name) and -i (queue id) go together"));
        }
    };
    producer.shutdown().await;
    let sent = sent?;
    let value = json!({
        "topic": o.topic,
        "brokerName": sent.queue.broker_name,
        "queueId": sent.queue.queue_id,
        "queueOffset": sent.queue_offset,
        "sendStatus": sent.status.name(),
        "msgId": sent.msg_id,
        "offsetMsgId": sent.offset_msg_id,
    });
    ctx.emit(&value, || {
        let mut t = Table::new(&[
            "#Broker Name",
            "#QID",
            "#Queue Offset",
            "#Send Result",
            "#MsgId",
            "#OffsetMsgId",
        ]);
        t.row(vec![
            sent.queue.broker_name.clone(),
            sent.queue.queue_id.to_string(),
            sent.queue_offset.to_string(),
            sent.status.name().to_owned(),
            sent.msg_id.clone(),
            sent.offset_msg_id.clone(),
        ]);
        t.render()
    });
    Ok(())
}
