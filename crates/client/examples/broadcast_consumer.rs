//! A broadcasting push consumer: every consumer of the group receives every message. Offsets
//! stay on this machine (`~/.rocketmq_offsets/<clientId>/<group>/offsets.json`, or
//! `OFFSET_DIR`), so a restarted consumer resumes where it stopped. Failed messages are not
//! retried in broadcasting mode. Run two with different `INSTANCE_NAME`s: both print everything.
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 RUN_SECS=60 cargo run -p apogee-client --example broadcast_consumer`

use std::time::Duration;

use apogee_client::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, MessageExt, MessageModel, PushConsumer,
};

#[tokio::main]
async fn main() -> Result<(), apogee_client::ClientError> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let run_secs: u64 = std::env::var("RUN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut builder = PushConsumer::builder()
        .group("ExampleBroadcastGroup")
        .name_server(namesrv)
        .message_model(MessageModel::Broadcasting)
        .subscribe("TopicTest", "*")
        .register_concurrently(
            |msgs: &[MessageExt], _ctx: &mut ConsumeConcurrentlyContext| {
                for msg in msgs {
                    println!(
                        "{} {}#{} {}",
                        msg.msg_id,
                        msg.queue(),
                        msg.queue_offset,
                        String::from_utf8_lossy(&msg.body)
                    );
                }
                ConsumeConcurrentlyStatus::ConsumeSuccess
            },
        );
    if let Ok(name) = std::env::var("INSTANCE_NAME") {
        builder = builder.instance_name(name);
    }
    if let Ok(dir) = std::env::var("OFFSET_DIR") {
        builder = builder.local_offset_store_dir(dir);
    }
    let consumer = builder.start().await?;
    println!("reading every queue: {:?}", consumer.assignment());
    tokio::time::sleep(Duration::from_secs(run_secs)).await;
    consumer.shutdown().await;
    Ok(())
}
