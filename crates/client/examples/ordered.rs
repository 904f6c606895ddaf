//! Ordered messages: every message of one order goes to the same queue, so consumers read the
//! steps of an order in the order they were sent. `SelectByHash` hashes keys as Java does, so a
//! Java producer using `SelectMessageQueueByHash` with the same keys picks the same queues.
//!
//! `NAMESRV_ADDR=127.0.0.1:9876 cargo run -p apogee-client --example ordered`

use apogee_client::{Message, MessageQueue, Producer, SelectByHash};

#[tokio::main]
async fn main() -> Result<(), apogee_client::ClientError> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let producer = Producer::builder()
        .group("ExampleOrderedGroup")
        .name_server(namesrv)
        .start()
        .await?;

    let steps = ["created", "paid", "shipped", "delivered"];
    for order_id in 100..105i64 {
        for step in steps {
            let msg = Message::new("OrderTopic", format!("order {order_id}: {step}"))
                .with_tags(step)
                .with_key(order_id.to_string());
            // The order id is the sharding key (hashed like Java's Long.hashCode).
            let result = producer
                .send_with_selector(msg, &SelectByHash, &order_id)
                .await?;
            println!("order {order_id} {step} -> {}", result.queue);
        }
    }

    // A custom selector is any closure over (queues, message, arg).
    let first_queue = |queues: &[MessageQueue], _msg: &Message, _arg: &()| queues.first().cloned();
    let result = producer
        .send_with_selector(
            Message::new("OrderTopic", "to the first queue"),
            &first_queue,
            &(),
        )
        .await?;
    println!("custom selector -> {}", result.queue);

    producer.shutdown().await;
    Ok(())
}
