//! An orderly push consumer: each queue is consumed one batch at a time in queue order, and
//! (clustering) only while this client holds the queue's lock on the broker, so that the steps
//! of one order (sent to one queue by `--example ordered`) are processed in sequence even while
//! consumers come and go. Different queues run in parallel.
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 RUN_SECS=60 cargo run -p apogee-client --example orderly_consumer`

use std::time::Duration;

use apogee_client::{
    ConsumeFromWhere, ConsumeOrderlyContext, ConsumeOrderlyStatus, MessageExt, PushConsumer,
};

#[tokio::main]
async fn main() -> Result<(), apogee_client::ClientError> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let run_secs: u64 = std::env::var("RUN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let consumer = PushConsumer::builder()
        .group("ExampleOrderlyGroup")
        .name_server(namesrv)
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        // After 3 failed attempts a message goes to %DLQ%ExampleOrderlyGroup instead of
        // holding its queue forever (the default, -1, retries without limit).
        .max_reconsume_times(3)
        .suspend_current_queue_time(Duration::from_millis(500))
        .subscribe("OrderTopic", "*")
        .register_orderly(|msgs: &[MessageExt], ctx: &mut ConsumeOrderlyContext| {
            for msg in msgs {
                let text = String::from_utf8_lossy(&msg.body);
                println!(
                    "{}#{} attempt {} {text}",
                    ctx.message_queue(),
                    msg.queue_offset,
                    msg.reconsume_times + 1
                );
                if text.is_empty() {
                    // Pause this queue (only this one) and deliver the same batch again.
                    return ConsumeOrderlyStatus::SuspendCurrentQueueAMoment;
                }
            }
            ConsumeOrderlyStatus::Success
        })
        .start()
        .await?;
    println!("assigned: {:?}", consumer.assignment());
    tokio::time::sleep(Duration::from_secs(run_secs)).await;
    // Waits for the batch in progress, commits, and releases the queue locks.
    consumer.shutdown().await;
    Ok(())
}
