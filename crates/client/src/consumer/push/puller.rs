//! The pull task of one queue (`DefaultMQPushConsumerImpl.pullMessage`): flow control, the
//! long-poll pull with the consumed offset piggy-backed (clustering), offset corrections, and
//! the hand-off of found messages to the consume service.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use apogee_protocol::codes::response_code;
use tracing::{debug, warn};

use super::listener::MessageListener;
use super::process_queue::{Flow, ProcessQueue};
use super::PushInner;
use crate::consumer::offset_store::ReadOffsetType;
use crate::consumer::pull::{PullRequest, PullStatus};
use crate::util::now_ms;

/// Longest wait for room in a full cache before looking again
/// (`PULL_TIME_DELAY_MILLS_WHEN_CACHE_FLOW_CONTROL`).
const FLOW_CONTROL_DELAY: Duration = Duration::from_millis(50);
/// Pause after the broker answered FLOW_CONTROL (`..._WHEN_BROKER_FLOW_CONTROL`).
const BROKER_FLOW_CONTROL_DELAY: Duration = Duration::from_millis(20);
/// Pause of a suspended consumer (`PULL_TIME_DELAY_MILLS_WHEN_SUSPEND`).
const SUSPENDED_DELAY: Duration = Duration::from_secs(1);
/// Longest wait for the broker lock of an orderly queue before looking again
/// (`PULL_TIME_DELAY_MILLS_WHEN_EXCEPTION`, which Java uses there).
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// What a pull task does next.
pub(super) enum Step {
    Again,
    Wait(Duration),
    WaitForRoom,
    WaitForLock,
    Stop,
}

pub(super) async fn pull_loop(weak: Weak<PushInner>, pq: Arc<ProcessQueue>) {
    loop {
        let room = pq.room.notified();
        tokio::pin!(room);
        room.as_mut().enable();
        let granted = pq.lock_granted.notified();
        tokio::pin!(granted);
        granted.as_mut().enable();
        let step = {
            let Some(inner) = weak.upgrade() else { return };
            inner.pull_once(&pq).await
        };
        match step {
            Step::Again => {}
            Step::Stop => return,
            Step::Wait(d) => tokio::time::sleep(d).await,
            Step::WaitForRoom => {
                let _ = tokio::time::timeout(FLOW_CONTROL_DELAY, room).await;
            }
            Step::WaitForLock => {
                let _ = tokio::time::timeout(LOCK_WAIT, granted).await;
            }
        }
    }
}

impl PushInner {
    async fn pull_once(self: &Arc<Self>, pq: &Arc<ProcessQueue>) -> Step {
        if self.is_shut_down() || pq.is_dropped() {
            return Step::Stop;
        }
        if self.paused.load(Ordering::SeqCst) {
            return Step::Wait(SUSPENDED_DELAY);
        }
        let max_span = (!self.is_orderly()).then_some(self.options.consume_concurrently_max_span);
        let (flow, first) = pq.flow(
            self.options.pull_threshold_for_queue,
            self.options
                .pull_threshold_size_for_queue_mib
                .saturating_mul(1024 * 1024),
            max_span,
        );
        if flow == Flow::Hold {
            if first {
                let s = pq.cache_stats();
                warn!(
                    queue = %pq.mq,
                    cached = s.cached,
                    cached_bytes = s.size_bytes,
                    min_offset = s.min_offset,
                    max_offset = s.max_offset,
                    "the cached messages exceed the threshold, so do flow control"
                );
            }
            return Step::WaitForRoom;
        }
        if self.orderly_clustering() && !pq.is_locked() {
            return Step::WaitForLock;
        }
        let offset = match pq.pull_offset() {
            Some(o) => o,
            None => match self.compute_start(&pq.mq).await {
                Ok(o) => {
                    debug!(queue = %pq.mq, offset = o, "first pull");
                    pq.set_pull_offset(o);
                    o
                }
                Err(e) => {
                    warn!(queue = %pq.mq, error = %e, "cannot compute the start offset");
                    return Step::Wait(Duration::from_millis(
                        self.options.pull_delay_on_exception_ms,
                    ));
                }
            },
        };
        let commit_offset = if self.clustering() {
            self.store
                .read_offset(&pq.mq, ReadOffsetType::ReadFromMemory)
                .await
                .ok()
                .flatten()
                .filter(|o| *o > 0)
        } else {
            None
        };
        pq.last_pull_ms.store(now_ms(), Ordering::Relaxed);
        let request = PullRequest {
            mq: pq.mq.clone(),
            subscription: pq.subscription.clone(),
            offset,
            max_nums: self.options.pull_batch_size,
            max_bytes: None,
            commit_offset,
            suspend_timeout_ms: Some(self.options.broker_suspend_max_ms),
            send_subscription: self.options.post_subscription_when_pull,
            lite: false,
            timeout: Duration::from_millis(self.options.consumer_timeout_when_suspend_ms),
        };
        let result = match self.pull_api.pull(&request).await {
            Ok(r) => r,
            Err(e) => {
                debug!(queue = %pq.mq, error = %e, "pull failed");
                let delay = if e.response_code() == Some(response_code::FLOW_CONTROL) {
                    BROKER_FLOW_CONTROL_DELAY
                } else {
                    Duration::from_millis(self.options.pull_delay_on_exception_ms)
                };
                return Step::Wait(delay);
            }
        };
        if pq.is_dropped() {
            return Step::Stop;
        }
        let next = result.next_begin_offset;
        match result.status {
            PullStatus::Found if !result.messages.is_empty() => {
                let (kept, start_worker) = pq.put_messages(&result.messages, next);
                if !kept {
                    return Step::Stop;
                }
                match &self.listener {
                    MessageListener::Concurrently(_) => {
                        self.submit_concurrently(pq, result.messages);
                    }
                    MessageListener::Orderly(_) => {
                        if start_worker {
                            self.spawn_orderly_worker(pq);
                        }
                    }
                }
                if self.options.pull_interval_ms > 0 {
                    return Step::Wait(Duration::from_millis(self.options.pull_interval_ms));
                }
            }
            PullStatus::Found | PullStatus::NoNewMsg | PullStatus::NoMatchedMsg => {
                pq.set_pull_offset(next);
                // Nothing cached: the consumed offset may skip what the filter skipped.
                pq.commit_if_empty(next, |o| self.store.update_offset(&pq.mq, o, true));
            }
            PullStatus::OffsetIllegal => {
                warn!(queue = %pq.mq, offset, next, "the pull offset is illegal, moving on");
                pq.set_pull_offset(next);
                if pq.commit_if_empty(next, |o| self.store.update_offset(&pq.mq, o, false)) {
                    if let Err(e) = self.store.persist(&pq.mq).await {
                        debug!(queue = %pq.mq, error = %e, "corrected offset not persisted");
                    }
                }
            }
        }
        Step::Again
    }
}
