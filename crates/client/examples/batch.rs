//! Sends several messages of one topic in one request.
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p apogee-client --example batch`

use apogee_client::{Message, Producer};

#[tokio::main]
async fn main() -> Result<(), apogee_client::ClientError> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let producer = Producer::builder()
        .group("ExampleBatchGroup")
        .name_server(namesrv)
        .start()
        .await?;

    let messages = (0..5).map(|i| {
        Message::new("BatchTest", format!("batch message {i}"))
            .with_tags("TagA")
            .with_key(format!("batch-key-{i}"))
    });
    let result = producer.send_batch(messages).await?;
    // One id per message, comma-joined; the messages have consecutive offsets from here.
    println!(
        "{} ids={} queue={} first offset={}",
        result.status, result.msg_id, result.queue, result.queue_offset
    );

    producer.shutdown().await;
    Ok(())
}
