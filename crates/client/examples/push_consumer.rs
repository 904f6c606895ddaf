//! A push consumer with a concurrent listener: the consumer pulls and calls the listener, at
//! most `consume_thread_max` calls at once. A message whose listener call answers
//! `ReconsumeLater` comes back later through the group's retry topic. Run two of them with
//! different `INSTANCE_NAME`s to see the queues split between them.
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 RUN_SECS=60 cargo run -p apogee-client --example push_consumer`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apogee_client::consumer::push::ListenerFuture;
use apogee_client::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere, MessageExt,
    MessageListenerConcurrently, PushConsumer,
};

/// An async listener: it may await (here a pretend database write) without blocking a thread.
struct Printer {
    count: Arc<AtomicUsize>,
}

impl MessageListenerConcurrently for Printer {
    fn consume_message<'a>(
        &'a self,
        msgs: &'a [MessageExt],
        ctx: &'a mut ConsumeConcurrentlyContext,
    ) -> ListenerFuture<'a, ConsumeConcurrentlyStatus> {
        Box::pin(async move {
            for msg in msgs {
                println!(
                    "{} {}#{} retry {} {}",
                    msg.msg_id,
                    ctx.message_queue(),
                    msg.queue_offset,
                    msg.reconsume_times,
                    String::from_utf8_lossy(&msg.body)
                );
                if msg.body.is_empty() {
                    // Try again in 5 s (delay level 2) instead of the broker's default.
                    ctx.delay_level_when_next_consume = 2;
                    return ConsumeConcurrentlyStatus::ReconsumeLater;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            self.count.fetch_add(msgs.len(), Ordering::Relaxed);
            ConsumeConcurrentlyStatus::ConsumeSuccess
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), apogee_client::ClientError> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let run_secs: u64 = std::env::var("RUN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let count = Arc::new(AtomicUsize::new(0));
    let mut builder = PushConsumer::builder()
        .group("ExamplePushGroup")
        .name_server(namesrv)
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .consume_thread_max(8)
        .subscribe("TopicTest", "TagA || TagB")
        .register_concurrently(Printer {
            count: Arc::clone(&count),
        });
    if let Ok(name) = std::env::var("INSTANCE_NAME") {
        builder = builder.instance_name(name);
    }
    let consumer = builder.start().await?;
    println!("assigned: {:?}", consumer.assignment());

    tokio::time::sleep(Duration::from_secs(run_secs)).await;
    for stats in consumer.queue_stats() {
        println!(
            "{}: {} cached, flow control {} times",
            stats.queue, stats.cached_msg_count, stats.flow_control_times
        );
    }
    // Lets running calls finish and commits every offset before leaving the group.
    consumer.shutdown().await;
    println!("{} messages", count.load(Ordering::Relaxed));
    Ok(())
}
