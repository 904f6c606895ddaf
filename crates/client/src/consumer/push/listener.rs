//! What the application gives a push consumer: a concurrent or an orderly listener, the status
//! each returns, and the context it may adjust (retry delay, how much of a batch succeeded, how
//! long to pause a queue).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use apogee_protocol::body::MessageQueue;

use crate::message::MessageExt;

/// The future a listener returns.
pub type ListenerFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The outcome of a concurrent listener call (`ConsumeConcurrentlyStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumeConcurrentlyStatus {
    /// The batch is done (up to [`ConsumeConcurrentlyContext::ack_index`]).
    ConsumeSuccess,
    /// Deliver the batch again later, through the group's retry topic.
    ReconsumeLater,
}

/// The outcome of an orderly listener call (`ConsumeOrderlyStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumeOrderlyStatus {
    /// The batch is done; its offset is committed.
    Success,
    /// Pause this queue and deliver the same batch again (same order), up to the maximum
    /// number of reconsumptions; after that the messages go to the dead-letter queue.
    SuspendCurrentQueueAMoment,
}

/// What a concurrent listener can read and adjust for one call (`ConsumeConcurrentlyContext`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeConcurrentlyContext {
    message_queue: MessageQueue,
    /// The retry delay level for messages that are not acknowledged: 0 lets the broker pick
    /// (`3 + reconsumeTimes`, i.e. 10 s, 30 s, 1 min, ...), -1 sends them straight to the
    /// dead-letter queue, a positive level picks that delay.
    pub delay_level_when_next_consume: i32,
    /// With [`ConsumeConcurrentlyStatus::ConsumeSuccess`], the messages after this index are
    /// treated as failed. Default: every message succeeded.
    pub ack_index: i32,
}

impl ConsumeConcurrentlyContext {
    pub fn new(message_queue: MessageQueue) -> Self {
        Self {
            message_queue,
            delay_level_when_next_consume: 0,
            ack_index: i32::MAX,
        }
    }

    /// The queue the batch came from (topic without namespace; a retry queue for redeliveries).
    pub fn message_queue(&self) -> &MessageQueue {
        &self.message_queue
    }
}

/// What an orderly listener can read and adjust for one call (`ConsumeOrderlyContext`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeOrderlyContext {
    message_queue: MessageQueue,
    /// How long [`ConsumeOrderlyStatus::SuspendCurrentQueueAMoment`] pauses the queue, in ms
    /// (clamped to 10..=30 000); -1 uses the consumer's `suspend_current_queue_time_ms`.
    pub suspend_current_queue_time_ms: i64,
}

impl ConsumeOrderlyContext {
    pub fn new(message_queue: MessageQueue) -> Self {
        Self {
            message_queue,
            suspend_current_queue_time_ms: -1,
        }
    }

    /// The queue the batch came from (topic without namespace).
    pub fn message_queue(&self) -> &MessageQueue {
        &self.message_queue
    }
}

/// Consumes batches from many queues at once (`MessageListenerConcurrently`).
///
/// Calls run on tokio tasks, at most `consume_thread_max` at a time. A plain closure
/// `Fn(&[MessageExt], &mut ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus` is a
/// listener; it runs on the consume task, so it should not block for long (do blocking work in
/// `tokio::task::spawn_blocking` from an async listener). A listener that panics or runs longer
/// than the consume timeout counts as [`ConsumeConcurrentlyStatus::ReconsumeLater`].
///
/// ```
/// use apogee_client::consumer::push::{
///     ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, ListenerFuture,
///     MessageListenerConcurrently,
/// };
/// use apogee_client::MessageExt;
///
/// struct Store;
///
/// impl MessageListenerConcurrently for Store {
///     fn consume_message<'a>(
///         &'a self,
///         msgs: &'a [MessageExt],
///         _context: &'a mut ConsumeConcurrentlyContext,
///     ) -> ListenerFuture<'a, ConsumeConcurrentlyStatus> {
///         Box::pin(async move {
///             for m in msgs {
///                 println!("{} {}", m.msg_id, m.queue_offset);
///             }
///             ConsumeConcurrentlyStatus::ConsumeSuccess
///         })
///     }
/// }
/// ```
pub trait MessageListenerConcurrently: Send + Sync + 'static {
    fn consume_message<'a>(
        &'a self,
        msgs: &'a [MessageExt],
        context: &'a mut ConsumeConcurrentlyContext,
    ) -> ListenerFuture<'a, ConsumeConcurrentlyStatus>;
}

impl<F> MessageListenerConcurrently for F
where
    F: Fn(&[MessageExt], &mut ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus
        + Send
        + Sync
        + 'static,
{
    fn consume_message<'a>(
        &'a self,
        msgs: &'a [MessageExt],
        context: &'a mut ConsumeConcurrentlyContext,
    ) -> ListenerFuture<'a, ConsumeConcurrentlyStatus> {
        Box::pin(async move { self(msgs, context) })
    }
}

/// Consumes each queue's messages one batch at a time, in queue order
/// (`MessageListenerOrderly`). Different queues run in parallel (at most `consume_thread_max`
/// at once). A plain closure `Fn(&[MessageExt], &mut ConsumeOrderlyContext) ->
/// ConsumeOrderlyStatus` is a listener. A listener that panics counts as
/// [`ConsumeOrderlyStatus::SuspendCurrentQueueAMoment`].
pub trait MessageListenerOrderly: Send + Sync + 'static {
    fn consume_message<'a>(
        &'a self,
        msgs: &'a [MessageExt],
        context: &'a mut ConsumeOrderlyContext,
    ) -> ListenerFuture<'a, ConsumeOrderlyStatus>;
}

impl<F> MessageListenerOrderly for F
where
    F: Fn(&[MessageExt], &mut ConsumeOrderlyContext) -> ConsumeOrderlyStatus
        + Send
        + Sync
        + 'static,
{
    fn consume_message<'a>(
        &'a self,
        msgs: &'a [MessageExt],
        context: &'a mut ConsumeOrderlyContext,
    ) -> ListenerFuture<'a, ConsumeOrderlyStatus> {
        Box::pin(async move { self(msgs, context) })
    }
}

/// The listener of a push consumer: concurrent or orderly.
#[derive(Clone)]
pub enum MessageListener {
    Concurrently(Arc<dyn MessageListenerConcurrently>),
    Orderly(Arc<dyn MessageListenerOrderly>),
}

impl MessageListener {
    pub fn concurrently(listener: impl MessageListenerConcurrently) -> Self {
        MessageListener::Concurrently(Arc::new(listener))
    }

    pub fn orderly(listener: impl MessageListenerOrderly) -> Self {
        MessageListener::Orderly(Arc::new(listener))
    }

    pub fn is_orderly(&self) -> bool {
        matches!(self, MessageListener::Orderly(_))
    }
}

impl fmt::Debug for MessageListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageListener::Concurrently(_) => "MessageListener::Concurrently",
            MessageListener::Orderly(_) => "MessageListener::Orderly",
        })
    }
}

/// Runs a listener's future, turning a panic into an `Err` instead of unwinding through the
/// consume task.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *inner).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// The text of a panic payload, for logs.
pub(crate) fn panic_text(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq() -> MessageQueue {
        MessageQueue::new("T", "b", 0)
    }

    #[tokio::test]
    async fn closures_are_listeners_and_run_when_polled() {
        let l = MessageListener::concurrently(
            |msgs: &[MessageExt], ctx: &mut ConsumeConcurrentlyContext| {
                ctx.delay_level_when_next_consume = 2;
                if msgs.is_empty() {
                    ConsumeConcurrentlyStatus::ReconsumeLater
                } else {
                    ConsumeConcurrentlyStatus::ConsumeSuccess
                }
            },
        );
        let MessageListener::Concurrently(l) = l else {
            panic!("not concurrent")
        };
        let mut ctx = ConsumeConcurrentlyContext::new(mq());
        assert_eq!(ctx.ack_index, i32::MAX);
        let msgs = vec![MessageExt::default()];
        let status = l.consume_message(&msgs, &mut ctx).await;
        assert_eq!(status, ConsumeConcurrentlyStatus::ConsumeSuccess);
        assert_eq!(ctx.delay_level_when_next_consume, 2);
        assert_eq!(ctx.message_queue(), &mq());
    }

    #[tokio::test]
    async fn a_panicking_listener_is_caught() {
        let l: Arc<dyn MessageListenerOrderly> = Arc::new(
            |_: &[MessageExt], _: &mut ConsumeOrderlyContext| -> ConsumeOrderlyStatus {
                panic!("listener failed")
            },
        );
        let mut ctx = ConsumeOrderlyContext::new(mq());
        assert_eq!(ctx.suspend_current_queue_time_ms, -1);
        let result = CatchUnwind(l.consume_message(&[], &mut ctx)).await;
        let panic = result.unwrap_err();
        assert_eq!(panic_text(panic.as_ref()), "listener failed");
        assert!(MessageListener::Orderly(l).is_orderly());
    }
}
