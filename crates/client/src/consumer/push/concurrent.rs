//! Concurrent consumption (`ConsumeMessageConcurrentlyService`): pulled messages are cut into
//! batches of `consume_message_batch_max_size`, each batch runs on its own task once one of
//! the `consume_thread_max` permits is free, and the result decides what leaves the queue's
//! cache: acknowledged messages, and failed ones once they are safely back on the broker.

use std::sync::Arc;
use std::time::Duration;

use apogee_protocol::body::MessageModel;
use tracing::warn;

use super::listener::{
    panic_text, CatchUnwind, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, MessageListener,
};
use super::process_queue::{sleep_unless_dropped, ProcessQueue};
use super::retry::for_listener;
use super::PushInner;
use crate::message::MessageExt;

/// Failed messages that could not be handed back are consumed again locally after this long
/// (`submitConsumeRequestLater`).
const LOCAL_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Ends a listener call's registration however the task ends.
struct InFlight<'a>(&'a ProcessQueue);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.end_consume();
    }
}

impl PushInner {
    /// Queues `msgs` (just cached in `pq`) for the listener, one task per batch.
    pub(super) fn submit_concurrently(
        self: &Arc<Self>,
        pq: &Arc<ProcessQueue>,
        msgs: Vec<MessageExt>,
    ) {
        let size = self.options.consume_message_batch_max_size.max(1);
        let mut rest = msgs.into_iter().peekable();
        while rest.peek().is_some() {
            let batch: Vec<MessageExt> = rest.by_ref().take(size).collect();
            tokio::spawn(consume_batch(Arc::clone(self), Arc::clone(pq), batch));
        }
    }

    /// `processConsumeResult`: acknowledged messages leave the cache; failed ones go back to
    /// the broker (clustering) or are dropped with a warning (broadcasting); those that could
    /// not go back stay cached and are consumed again later. The consumed offset only grows.
    async fn process_concurrent_result(
        self: &Arc<Self>,
        pq: &Arc<ProcessQueue>,
        msgs: Vec<MessageExt>,
        status: ConsumeConcurrentlyStatus,
        context: &ConsumeConcurrentlyContext,
    ) {
        let last = i32::try_from(msgs.len()).unwrap_or(i32::MAX) - 1;
        let ack_index = match status {
            ConsumeConcurrentlyStatus::ConsumeSuccess => context.ack_index.clamp(-1, last),
            ConsumeConcurrentlyStatus::ReconsumeLater => -1,
        };
        let first_failed = usize::try_from(ack_index + 1).unwrap_or(0);
        let mut retry_later = Vec::new();
        for msg in msgs.iter().skip(first_failed) {
            match self.options.message_model {
                MessageModel::Broadcasting => {
                    warn!(msg_id = %msg.msg_id, queue = %pq.mq, "broadcasting: the message failed and is dropped");
                }
                MessageModel::Clustering => {
                    if !self
                        .send_back(msg, context.delay_level_when_next_consume)
                        .await
                    {
                        let mut again = msg.clone();
                        again.reconsume_times = again.reconsume_times.saturating_add(1);
                        retry_later.push(again);
                    }
                }
            }
        }
        let done: Vec<i64> = msgs
            .iter()
            .map(|m| m.queue_offset)
            .filter(|o| !retry_later.iter().any(|r| r.queue_offset == *o))
            .collect();
        pq.remove_messages(&done, |offset| {
            self.store.update_offset(&pq.mq, offset, true);
        });
        if !retry_later.is_empty() {
            let inner = Arc::clone(self);
            let pq = Arc::clone(pq);
            tokio::spawn(async move {
                sleep_unless_dropped(&pq, LOCAL_RETRY_DELAY).await;
                if !pq.is_dropped() && !inner.is_shut_down() {
                    inner.submit_concurrently(&pq, retry_later);
                }
            });
        }
    }
}

async fn consume_batch(inner: Arc<PushInner>, pq: Arc<ProcessQueue>, msgs: Vec<MessageExt>) {
    let MessageListener::Concurrently(listener) = &inner.listener else {
        return;
    };
    let Ok(_permit) = Arc::clone(&inner.permits).acquire_owned().await else {
        return;
    };
    if !pq.begin_consume() {
        return;
    }
    let _in_flight = InFlight(&pq);
    let msgs: Vec<MessageExt> = msgs
        .into_iter()
        .map(|m| for_listener(m, &inner.user_retry_topic, inner.namespace.as_deref()))
        .collect();
    let mut context = ConsumeConcurrentlyContext::new(inner.user_queue(&pq.mq));
    let timeout = Duration::from_millis(inner.options.consume_timeout_ms);
    let call = CatchUnwind(listener.consume_message(&msgs, &mut context));
    let status = match tokio::time::timeout(timeout, call).await {
        Ok(Ok(status)) => status,
        Ok(Err(panic)) => {
            warn!(queue = %pq.mq, panic = panic_text(panic.as_ref()), "the listener panicked; the batch is retried");
            ConsumeConcurrentlyStatus::ReconsumeLater
        }
        Err(_) => {
            warn!(queue = %pq.mq, timeout_ms = inner.options.consume_timeout_ms, "the listener timed out; the batch is retried");
            ConsumeConcurrentlyStatus::ReconsumeLater
        }
    };
    inner
        .process_concurrent_result(&pq, msgs, status, &context)
        .await;
}
