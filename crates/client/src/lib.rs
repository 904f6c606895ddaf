//! `apogee-client`: a Rust client for RocketMQ's remoting protocol, for Apogee and for any
//! RocketMQ 4.x/5.x broker.
//!
//! # Shape
//!
//! Everything runs on a [`ClientInstance`]: one per process and name-server set (RocketMQ's
//! `MQClientInstance`), shared by every producer and consumer built for those name servers. It
//! keeps one multiplexed connection per broker, one heartbeat loop, one route-refresh loop, one
//! rebalance loop and one offset-persistence loop, whatever the number of producers and
//! consumers, so a process with many groups does not multiply threads or connections. Its
//! client id is `ip@instanceName`, the instance name defaulting to the process id, as in
//! RocketMQ; give two builders different instance names only when they must look like
//! different clients to the brokers.
//!
//! * [`Producer`]: sync ([`Producer::send`]), async ([`Producer::send_async`]), oneway, batch,
//!   ordered ([`Producer::send_with_selector`] with [`SelectByHash`]) and transactional
//!   ([`Producer::send_in_transaction`] with a [`TransactionListener`]) sends, retries on another
//!   broker, optional latency-based fault avoidance ([`fault`]).
//! * [`PushConsumer`]: register a [`MessageListenerConcurrently`] (calls on a bounded pool of
//!   tasks, failed messages redelivered through the group's retry topic) or a
//!   [`MessageListenerOrderly`] (each queue in order, under a broker lock), and the consumer
//!   pulls, caches (with flow control), rebalances and commits offsets itself. Clustering or
//!   broadcasting.
//! * [`LitePullConsumer`]: `subscribe` or `assign`, then [`LitePullConsumer::poll`]; seek,
//!   auto-commit or [`LitePullConsumer::commit_sync`].
//! * Building blocks for other consumers: [`consumer::pull`], [`consumer::allocate`],
//!   [`consumer::offset_store`], [`consumer::subscription`], [`MessageExt`].
//!
//! # Quick start
//!
//! ```no_run
//! use std::time::Duration;
//! use apogee_client::{LitePullConsumer, Message, Producer, SelectByHash};
//!
//! # async fn demo() -> Result<(), apogee_client::ClientError> {
//! let producer = Producer::builder()
//!     .group("OrderProducer")
//!     .name_server("127.0.0.1:9876")
//!     .start()
//!     .await?;
//! let sent = producer
//!     .send(Message::new("TopicTest", "hello").with_tags("TagA").with_key("order-1"))
//!     .await?;
//! println!("stored as {} at {} offset {}", sent.msg_id, sent.queue, sent.queue_offset);
//!
//! // All messages of one order on one queue, in order.
//! for step in ["created", "paid", "shipped"] {
//!     producer
//!         .send_with_selector(Message::new("Orders", step), &SelectByHash, "order-42")
//!         .await?;
//! }
//!
//! let consumer = LitePullConsumer::builder()
//!     .group("OrderConsumer")
//!     .name_server("127.0.0.1:9876")
//!     .subscribe("TopicTest", "TagA")
//!     .start()
//!     .await?;
//! let batch = consumer.poll(Duration::from_secs(3)).await?;
//! for m in &batch {
//!     println!("{} {}", m.msg_id, String::from_utf8_lossy(&m.body));
//! }
//! consumer.commit_sync().await?;
//! consumer.shutdown().await;
//! producer.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Push consumer quick start
//!
//! A listener is a closure or a type implementing [`MessageListenerConcurrently`] (async, see
//! its docs) or [`MessageListenerOrderly`]. Returning
//! [`ReconsumeLater`](ConsumeConcurrentlyStatus::ReconsumeLater) hands the message back; it
//! returns through `%RETRY%<group>` with its real topic restored and `reconsume_times`
//! increased, up to `max_reconsume_times` (then the dead-letter queue `%DLQ%<group>`).
//!
//! ```no_run
//! use apogee_client::{
//!     ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeFromWhere,
//!     ConsumeOrderlyContext, ConsumeOrderlyStatus, MessageExt, PushConsumer,
//! };
//!
//! # async fn demo() -> Result<(), apogee_client::ClientError> {
//! let consumer = PushConsumer::builder()
//!     .group("OrderConsumerGroup")
//!     .name_server("127.0.0.1:9876")
//!     .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
//!     .consume_thread_max(16) // at most 16 listener calls at once
//!     .subscribe("TopicTest", "TagA || TagB")
//!     .register_concurrently(|msgs: &[MessageExt], ctx: &mut ConsumeConcurrentlyContext| {
//!         for m in msgs {
//!             if m.body.is_empty() {
//!                 ctx.delay_level_when_next_consume = 3; // again in 10 s
//!                 return ConsumeConcurrentlyStatus::ReconsumeLater;
//!             }
//!             println!("{} {}", m.msg_id, String::from_utf8_lossy(&m.body));
//!         }
//!         ConsumeConcurrentlyStatus::ConsumeSuccess
//!     })
//!     .start()
//!     .await?;
//!
//! // Per-queue order: one batch of a queue at a time, only while this client holds the
//! // queue's broker lock.
//! let orderly = PushConsumer::builder()
//!     .group("OrderStepsGroup")
//!     .name_server("127.0.0.1:9876")
//!     .subscribe("Orders", "*")
//!     .register_orderly(|msgs: &[MessageExt], _ctx: &mut ConsumeOrderlyContext| {
//!         for m in msgs {
//!             println!("{}#{}", m.queue(), m.queue_offset);
//!         }
//!         ConsumeOrderlyStatus::Success
//!     })
//!     .start()
//!     .await?;
//!
//! // ... when done: running calls finish, offsets are committed, locks released.
//! orderly.shutdown().await;
//! consumer.shutdown().await;
//! # Ok(()) }
//! ```

pub mod config;
pub mod consumer;
pub mod error;
pub mod fault;
mod instance;
pub mod message;
pub mod namespace;
pub mod producer;
pub mod route;
mod util;

pub use apogee_protocol::body::{ConsumeFromWhere, MessageModel, MessageQueue};
pub use config::ClientConfig;
pub use consumer::push::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ConsumeOrderlyContext,
    ConsumeOrderlyStatus, MessageListener, MessageListenerConcurrently, MessageListenerOrderly,
};
pub use consumer::subscription::MessageSelector;
pub use consumer::{
    LiteOptions, LitePullConsumer, LitePullConsumerBuilder, PushConsumer, PushConsumerBuilder,
    PushOptions,
};
pub use error::{ClientError, Result};
pub use instance::{ClientInstance, RouteEntry, CLIENT_INNER_PRODUCER_GROUP};
pub use message::{Message, MessageExt, SendResult, SendStatus};
pub use producer::{
    LocalTransactionState, Producer, ProducerBuilder, ProducerOptions, QueueSelector, SelectByHash,
    SelectByRandom, SendHandle, TransactionListener, TransactionSendResult,
};
