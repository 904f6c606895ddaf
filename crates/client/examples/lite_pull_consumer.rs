//! A lite pull consumer: subscribe, poll, commit. Run two of them with different
//! `INSTANCE_NAME`s to see the queues split between them.
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p apogee-client --example lite_pull_consumer`

use std::time::Duration;

use apogee_client::{ConsumeFromWhere, LitePullConsumer};

#[tokio::main]
async fn main() -> Result<(), apogee_client::ClientError> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let mut builder = LitePullConsumer::builder()
        .group("ExampleLitePullGroup")
        .name_server(namesrv)
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .auto_commit(false)
        .subscribe("TopicTest", "TagA || TagB");
    if let Ok(name) = std::env::var("INSTANCE_NAME") {
        builder = builder.instance_name(name);
    }
    let consumer = builder.start().await?;
    println!("assigned: {:?}", consumer.assignment());

    let mut total = 0;
    for _ in 0..10 {
        let batch = consumer.poll(Duration::from_secs(1)).await?;
        for msg in &batch {
            println!(
                "{} {}#{} {} {}",
                msg.msg_id,
                msg.queue(),
                msg.queue_offset,
                msg.tags().unwrap_or("-"),
                String::from_utf8_lossy(&msg.body)
            );
        }
        total += batch.len();
        if !batch.is_empty() {
            consumer.commit_sync().await?;
        }
    }
    println!("{total} messages");

    // Read a queue again from its start.
    if let Some(mq) = consumer.assignment().first() {
        consumer.seek_to_begin(mq).await?;
        let again = consumer.poll(Duration::from_secs(1)).await?;
        println!("after seek_to_begin on {mq}: {} messages", again.len());
    }

    consumer.shutdown().await;
    Ok(())
}
