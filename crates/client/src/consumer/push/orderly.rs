//! Orderly consumption (`ConsumeMessageOrderlyService`): one worker task per queue with cached
//! messages takes batches in offset order and runs them one at a time, holding a permit of
//! the consume pool and the queue's consume lock. In clustering mode it consumes only while
//! this client holds a fresh broker lock on the queue. A suspended batch goes back in front of
//! the queue and the queue pauses; a message past its reconsume limit goes to the dead-letter
//! queue instead.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::listener::{
    panic_text, CatchUnwind, ConsumeOrderlyContext, ConsumeOrderlyStatus, MessageListener,
    MessageListenerOrderly,
};
use super::process_queue::{sleep_unless_dropped, ProcessQueue};
use super::retry::for_listener;
use super::PushInner;
use crate::message::MessageExt;

/// A worker gives its permit back after consuming this long, so that other queues get a turn
/// (`MAX_TIME_CONSUME_CONTINUOUSLY`).
const MAX_TIME_CONSUME_CONTINUOUSLY: Duration = Duration::from_secs(60);
/// Pause before trying again to lock a queue the broker would not give
/// (`tryLockLaterAndReconsume`, 3 s after a failure).
const LOCK_RETRY_DELAY: Duration = Duration::from_secs(3);
/// Bounds of a suspension (`ConsumeMessageOrderlyService` clamps to 10 ms ..= 30 s).
const MIN_SUSPEND_MS: u64 = 10;
const MAX_SUSPEND_MS: u64 = 30_000;

/// What a worker does after giving its permit back.
enum Next {
    /// Take a permit again (its turn was long enough, or the lock needs renewing).
    Continue,
    /// Pause the queue this long, then continue.
    Suspend(Duration),
    /// The queue is dropped or drained; the worker ends.
    Stop,
}

impl PushInner {
    pub(super) fn spawn_orderly_worker(self: &Arc<Self>, pq: &Arc<ProcessQueue>) {
        tokio::spawn(orderly_worker(Arc::clone(self), Arc::clone(pq)));
    }

    fn suspend_time(&self, context: &ConsumeOrderlyContext) -> Duration {
        suspend_duration(
            context.suspend_current_queue_time_ms,
            self.options.suspend_current_queue_time_ms,
        )
    }

    /// Whether this client may consume `pq` now (broadcasting needs no lock).
    fn holds_lock(&self, pq: &ProcessQueue) -> bool {
        !self.clustering() || (pq.is_locked() && !pq.is_lock_expired())
    }

    /// Runs one batch through the listener and applies the result, under the queue's consume
    /// lock. `None` when the queue was dropped before the listener could start.
    async fn consume_orderly_batch(
        &self,
        listener: &Arc<dyn MessageListenerOrderly>,
        pq: &ProcessQueue,
        batch: Vec<MessageExt>,
    ) -> Option<Next> {
        let _consuming = pq.consume_lock.lock().await;
        if !pq.begin_consume() {
            return None;
        }
        let view: Vec<MessageExt> = batch
            .iter()
            .cloned()
            .map(|m| for_listener(m, &self.user_retry_topic, self.namespace.as_deref()))
            .collect();
        let mut context = ConsumeOrderlyContext::new(self.user_queue(&pq.mq));
        let status = match CatchUnwind(listener.consume_message(&view, &mut context)).await {
            Ok(status) => status,
            Err(panic) => {
                warn!(queue = %pq.mq, panic = panic_text(panic.as_ref()), "the orderly listener panicked; the queue is suspended");
                ConsumeOrderlyStatus::SuspendCurrentQueueAMoment
            }
        };
        pq.end_consume();
        let commit = |offset| self.store.update_offset(&pq.mq, offset, false);
        match status {
            ConsumeOrderlyStatus::Success => {
                pq.commit_consuming(commit);
                Some(Next::Continue)
            }
            ConsumeOrderlyStatus::SuspendCurrentQueueAMoment => {
                let max = self.max_reconsume_times();
                let mut again = Vec::new();
                for (cached, seen) in batch.into_iter().zip(&view) {
                    if cached.reconsume_times >= max && self.send_to_dead_letter_queue(seen).await {
                        continue;
                    }
                    let mut m = cached;
                    m.reconsume_times = m.reconsume_times.saturating_add(1);
                    again.push(m);
                }
                if again.is_empty() {
                    pq.commit_consuming(commit);
                    Some(Next::Continue)
                } else {
                    pq.requeue(again);
                    Some(Next::Suspend(self.suspend_time(&context)))
                }
            }
        }
    }
}

/// The pause a suspension asks for: the listener's value (-1: the consumer's), clamped.
fn suspend_duration(asked_ms: i64, default_ms: u64) -> Duration {
    let ms = u64::try_from(asked_ms).unwrap_or(default_ms);
    Duration::from_millis(ms.clamp(MIN_SUSPEND_MS, MAX_SUSPEND_MS))
}

/// Consumes `pq` until it has nothing cached, is dropped, or the consumer stops. The queue's
/// `worker_active` flag, set when the worker was spawned, guarantees one worker per queue.
async fn orderly_worker(inner: Arc<PushInner>, pq: Arc<ProcessQueue>) {
    let MessageListener::Orderly(listener) = inner.listener.clone() else {
        pq.worker_stopped();
        return;
    };
    loop {
        if pq.is_dropped() || inner.is_shut_down() {
            pq.worker_stopped();
            return;
        }
        if !inner.holds_lock(&pq) && !inner.lock_one(&pq).await {
            sleep_unless_dropped(&pq, LOCK_RETRY_DELAY).await;
            continue;
        }
        let Ok(permit) = Arc::clone(&inner.permits).acquire_owned().await else {
            pq.worker_stopped();
            return;
        };
        let began = tokio::time::Instant::now();
        let next = loop {
            if pq.is_dropped() || inner.is_shut_down() {
                break Next::Stop;
            }
            if !inner.holds_lock(&pq) || began.elapsed() > MAX_TIME_CONSUME_CONTINUOUSLY {
                break Next::Continue;
            }
            let batch = pq.take_messages(inner.options.consume_message_batch_max_size);
            if batch.is_empty() {
                // `take_messages` marked the worker inactive: the next pull starts another.
                drop(permit);
                return;
            }
            match inner.consume_orderly_batch(&listener, &pq, batch).await {
                Some(Next::Continue) => {}
                Some(next) => break next,
                None => break Next::Stop,
            }
        };
        drop(permit);
        match next {
            Next::Stop => {
                pq.worker_stopped();
                return;
            }
            Next::Continue => tokio::task::yield_now().await,
            Next::Suspend(d) => sleep_unless_dropped(&pq, d).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspension_uses_the_listeners_time_or_the_default_within_bounds() {
        assert_eq!(suspend_duration(-1, 1_000), Duration::from_millis(1_000));
        assert_eq!(suspend_duration(200, 1_000), Duration::from_millis(200));
        assert_eq!(suspend_duration(1, 1_000), Duration::from_millis(10));
        assert_eq!(
            suspend_duration(60_000, 1_000),
            Duration::from_millis(30_000)
        );
        assert_eq!(suspend_duration(-1, 0), Duration::from_millis(10));
    }
}
