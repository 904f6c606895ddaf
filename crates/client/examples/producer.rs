//! Sends a few messages synchronously, one asynchronously and one oneway.
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p apogee-client --example producer`

use apogee_client::{Message, Producer};

#[tokio::main]
async fn main() -> Result<(), apogee_client::ClientError> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let producer = Producer::builder()
        .group("ExampleProducerGroup")
        .name_server(namesrv)
        .start()
        .await?;

    for i in 0..10 {
        let msg = Message::new("TopicTest", format!("Hello RocketMQ {i}"))
            .with_tags("TagA")
            .with_key(format!("key-{i}"));
        let result = producer.send(msg).await?;
        println!(
            "{} msgId={} offsetMsgId={} queue={} offset={}",
            result.status, result.msg_id, result.offset_msg_id, result.queue, result.queue_offset
        );
    }

    // Async: the send runs on its own task; await the handle whenever convenient.
    let pending = producer.send_async(Message::new("TopicTest", "async hello").with_tags("TagB"));
    println!("async: {:?}", pending.await.map(|r| r.msg_id));

    // Oneway: no answer, no retry.
    producer
        .send_oneway(Message::new("TopicTest", "fire and forget"))
        .await?;

    producer.shutdown().await;
    Ok(())
}
