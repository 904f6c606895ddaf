//! One assigned queue of a push consumer (RocketMQ's `ProcessQueue`): the messages pulled and
//! not yet consumed, kept by queue offset, the counters flow control reads, and the flags that
//! hand a queue over cleanly (dropped, released, broker lock).
//!
//! The consumed offset of a queue is the smallest offset still cached (a message still in a
//! listener or waiting for one), or one past the largest offset ever cached when nothing is.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use apogee_protocol::body::{MessageQueue, SubscriptionData};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::consumer::ProcessQueueInfo;
use crate::message::MessageExt;
use crate::util::{lock, now_ms};

/// How long a broker lock counts as held without renewal (`rocketmq.client.rebalance.lockMaxLiveTime`).
pub(crate) const LOCK_MAX_LIVE_TIME_MS: i64 = 30_000;

pub(crate) struct ProcessQueue {
    /// The queue as it travels (namespaced topic).
    pub(crate) mq: MessageQueue,
    pub(crate) subscription: SubscriptionData,
    state: Mutex<PqState>,
    /// No pull and no new listener call once set. Written under the state lock.
    dropped: AtomicBool,
    /// Orderly clustering: the broker granted this client the queue.
    locked: AtomicBool,
    last_lock_ms: AtomicI64,
    pub(crate) last_pull_ms: AtomicI64,
    pub(crate) last_consume_ms: AtomicI64,
    /// Times the pull task held back because of this queue's cache.
    pub(crate) flow_control_times: AtomicU64,
    /// Wakes the pull task when consumed messages leave the cache.
    pub(crate) room: Notify,
    /// Wakes the pull task and the orderly worker when the broker lock is granted.
    pub(crate) lock_granted: Notify,
    /// Signalled when the last running listener call of this queue ends.
    idle: Notify,
    /// Orderly: held while a batch is in the listener and its offset is committed; a dropped
    /// queue is handed over only once it can take this lock.
    pub(crate) consume_lock: tokio::sync::Mutex<()>,
    pub(crate) task: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct PqState {
    /// Cached messages waiting for (concurrent: or in) a listener, by queue offset.
    msgs: BTreeMap<i64, MessageExt>,
    /// Orderly: the batch taken out of `msgs` and in the listener now.
    consuming: BTreeMap<i64, MessageExt>,
    /// Body bytes of `msgs` and `consuming`.
    size_bytes: usize,
    /// Largest offset ever cached; -1 before the first message.
    queue_offset_max: i64,
    /// Most messages ever cached at once.
    high_water: usize,
    /// Orderly: a worker task is consuming this queue.
    worker_active: bool,
    /// Listener calls of this queue running now.
    in_flight: usize,
    /// The offset store no longer takes offsets of this queue (its drop completed).
    released: bool,
    /// Where the next pull starts; `None` until computed.
    pull_offset: Option<i64>,
    /// A flow-control episode is under way (it was logged once).
    flow_controlled: bool,
}

impl PqState {
    fn cached(&self) -> usize {
        self.msgs.len() + self.consuming.len()
    }

    /// The consumed offset: the smallest offset still cached, else one past the largest.
    fn consumed_offset(&self) -> i64 {
        let first_waiting = self.msgs.keys().next().copied();
        let first_consuming = self.consuming.keys().next().copied();
        match (first_waiting, first_consuming) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => self.queue_offset_max + 1,
        }
    }
}

/// Flow-control decision for the next pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Pull,
    /// Too many cached messages, too many cached bytes, or (concurrent) too wide an offset span.
    Hold,
}

/// A snapshot of a queue's cache, for [`crate::consumer::push::QueueStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CacheStats {
    pub cached: usize,
    pub size_bytes: usize,
    pub min_offset: i64,
    pub max_offset: i64,
    pub high_water: usize,
    pub worker_active: bool,
}

impl ProcessQueue {
    pub(crate) fn new(mq: MessageQueue, subscription: SubscriptionData) -> Self {
        Self {
            mq,
            subscription,
            state: Mutex::new(PqState {
                queue_offset_max: -1,
                ..PqState::default()
            }),
            dropped: AtomicBool::new(false),
            locked: AtomicBool::new(false),
            last_lock_ms: AtomicI64::new(0),
            last_pull_ms: AtomicI64::new(0),
            last_consume_ms: AtomicI64::new(0),
            flow_control_times: AtomicU64::new(0),
            room: Notify::new(),
            lock_granted: Notify::new(),
            idle: Notify::new(),
            consume_lock: tokio::sync::Mutex::new(()),
            task: Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, PqState> {
        lock(&self.state)
    }

    pub(crate) fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Stops pulls and new listener calls; listener calls already running finish.
    pub(crate) fn mark_dropped(&self) {
        let _state = self.state();
        self.dropped.store(true, Ordering::SeqCst);
        drop(_state);
        self.abort_task();
        // Wake whatever waits on this queue so that it sees the flag.
        self.room.notify_one();
        self.lock_granted.notify_waiters();
    }

    pub(crate) fn abort_task(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }

    // ---- broker lock (orderly clustering) ----------------------------------------------------

    pub(crate) fn is_locked(&self) -> bool {
        self.locked.load(Ordering::SeqCst)
    }

    pub(crate) fn set_locked(&self, locked: bool) {
        if locked {
            self.last_lock_ms.store(now_ms(), Ordering::SeqCst);
        }
        let was = self.locked.swap(locked, Ordering::SeqCst);
        if locked && !was {
            self.lock_granted.notify_waiters();
            self.lock_granted.notify_one();
        }
    }

    /// The lock was not renewed for [`LOCK_MAX_LIVE_TIME_MS`].
    pub(crate) fn is_lock_expired(&self) -> bool {
        now_ms() - self.last_lock_ms.load(Ordering::SeqCst) > LOCK_MAX_LIVE_TIME_MS
    }

    // ---- pull side ---------------------------------------------------------------------------

    pub(crate) fn pull_offset(&self) -> Option<i64> {
        self.state().pull_offset
    }

    pub(crate) fn set_pull_offset(&self, offset: i64) {
        self.state().pull_offset = Some(offset);
    }

    /// Whether the next pull may go out: at most `max_count` cached messages, `max_bytes`
    /// cached bytes, and (when `max_span` is given) an offset span of `max_span`. The first
    /// hold of an episode returns `true` in the second field, for a single log line.
    pub(crate) fn flow(
        &self,
        max_count: usize,
        max_bytes: usize,
        max_span: Option<i64>,
    ) -> (Flow, bool) {
        let mut s = self.state();
        let span = match (s.msgs.keys().next(), s.msgs.keys().next_back()) {
            (Some(first), Some(last)) => last - first,
            _ => 0,
        };
        let hold = s.cached() > max_count
            || s.size_bytes > max_bytes
            || max_span.is_some_and(|m| span > m);
        if !hold {
            s.flow_controlled = false;
            return (Flow::Pull, false);
        }
        self.flow_control_times.fetch_add(1, Ordering::Relaxed);
        let first = !s.flow_controlled;
        s.flow_controlled = true;
        (Flow::Hold, first)
    }

    /// Caches pulled messages (those not cached already) and moves the pull offset to
    /// `next_offset`. Returns false, caching nothing, when the queue was dropped meanwhile.
    /// The second field is true when an orderly worker must be started (none is active and
    /// something was cached); the worker is then marked active.
    pub(crate) fn put_messages(&self, msgs: &[MessageExt], next_offset: i64) -> (bool, bool) {
        let mut s = self.state();
        if self.is_dropped() {
            return (false, false);
        }
        s.pull_offset = Some(next_offset);
        let mut added = 0;
        for m in msgs {
            if s.msgs.contains_key(&m.queue_offset) || s.consuming.contains_key(&m.queue_offset) {
                continue;
            }
            s.size_bytes += m.body.len();
            s.queue_offset_max = s.queue_offset_max.max(m.queue_offset);
            s.msgs.insert(m.queue_offset, m.clone());
            added += 1;
        }
        s.high_water = s.high_water.max(s.cached());
        let start_worker = added > 0 && !s.worker_active;
        if start_worker {
            s.worker_active = true;
        }
        (true, start_worker)
    }

    /// Nothing cached: the consumed offset may follow the pull offset past filtered messages
    /// (`correctTagsOffset`). `commit` runs (under the queue's lock) only then; returns whether
    /// it ran.
    pub(crate) fn commit_if_empty(&self, next_offset: i64, commit: impl FnOnce(i64)) -> bool {
        let s = self.state();
        let empty = s.cached() == 0 && !s.released;
        if empty {
            commit(next_offset);
        }
        empty
    }

    // ---- concurrent consumption --------------------------------------------------------------

    /// Registers a listener call; false when the queue is dropped (no call may start).
    pub(crate) fn begin_consume(&self) -> bool {
        let mut s = self.state();
        if self.is_dropped() {
            return false;
        }
        s.in_flight += 1;
        true
    }

    /// Ends a listener call registered with [`begin_consume`](Self::begin_consume).
    pub(crate) fn end_consume(&self) {
        let idle = {
            let mut s = self.state();
            s.in_flight = s.in_flight.saturating_sub(1);
            s.in_flight == 0
        };
        self.last_consume_ms.store(now_ms(), Ordering::Relaxed);
        if idle {
            self.idle.notify_waiters();
        }
    }

    /// Removes consumed (or handed-back) messages and returns the new consumed offset, unless
    /// the cache was empty already or the queue was released; `commit` runs with the offset
    /// under the queue's lock, so that it cannot race with the queue's release.
    pub(crate) fn remove_messages(&self, offsets: &[i64], commit: impl FnOnce(i64)) {
        let removed_any = {
            let mut s = self.state();
            if s.msgs.is_empty() {
                return;
            }
            let mut removed_any = false;
            for o in offsets {
                if let Some(m) = s.msgs.remove(o) {
                    s.size_bytes = s.size_bytes.saturating_sub(m.body.len());
                    removed_any = true;
                }
            }
            if !s.released {
                commit(s.consumed_offset());
            }
            removed_any
        };
        if removed_any {
            self.room.notify_one();
        }
    }

    /// Waits until no listener call of this queue runs, or `deadline`. True when idle.
    pub(crate) async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.state().in_flight == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.state().in_flight == 0;
            }
        }
    }

    /// The offset store takes no more offsets of this queue.
    pub(crate) fn release(&self) {
        self.state().released = true;
    }

    // ---- orderly consumption -----------------------------------------------------------------

    /// Takes the next (up to) `n` messages in offset order for the listener. When nothing is
    /// waiting, the worker is marked inactive and the result is empty.
    pub(crate) fn take_messages(&self, n: usize) -> Vec<MessageExt> {
        let mut s = self.state();
        let mut out = Vec::new();
        while out.len() < n.max(1) {
            let Some((offset, m)) = s.msgs.pop_first() else {
                break;
            };
            s.consuming.insert(offset, m.clone());
            out.push(m);
        }
        if out.is_empty() {
            s.worker_active = false;
        }
        out
    }

    /// Marks the orderly worker inactive (it stops for good: dropped queue, shutdown).
    pub(crate) fn worker_stopped(&self) {
        self.state().worker_active = false;
    }

    /// The batch in the listener is done: it leaves the cache; returns the consumed offset,
    /// unless the queue was released. `commit` runs under the queue's lock.
    pub(crate) fn commit_consuming(&self, commit: impl FnOnce(i64)) {
        {
            let mut s = self.state();
            let done = std::mem::take(&mut s.consuming);
            for m in done.values() {
                s.size_bytes = s.size_bytes.saturating_sub(m.body.len());
            }
            if !s.released {
                commit(s.consumed_offset());
            }
        }
        self.room.notify_one();
    }

    /// Puts `retry` (part of the batch in the listener, with updated reconsume counts) back in
    /// front of the waiting messages; the rest of the batch leaves the cache.
    pub(crate) fn requeue(&self, retry: Vec<MessageExt>) {
        {
            let mut s = self.state();
            let done = std::mem::take(&mut s.consuming);
            for m in done.values() {
                s.size_bytes = s.size_bytes.saturating_sub(m.body.len());
            }
            for m in retry {
                s.size_bytes += m.body.len();
                s.msgs.insert(m.queue_offset, m);
            }
        }
        self.room.notify_one();
    }

    // ---- reporting ---------------------------------------------------------------------------

    pub(crate) fn cache_stats(&self) -> CacheStats {
        let s = self.state();
        let first = s
            .msgs
            .keys()
            .next()
            .into_iter()
            .chain(s.consuming.keys().next())
            .min()
            .copied();
        let last = s
            .msgs
            .keys()
            .next_back()
            .into_iter()
            .chain(s.consuming.keys().next_back())
            .max()
            .copied();
        CacheStats {
            cached: s.cached(),
            size_bytes: s.size_bytes,
            min_offset: first.unwrap_or(0),
            max_offset: last.unwrap_or(0),
            high_water: s.high_water,
            worker_active: s.worker_active,
        }
    }

    pub(crate) fn info(&self, commit_offset: i64) -> ProcessQueueInfo {
        let stats = self.cache_stats();
        ProcessQueueInfo {
            cached_msg_count: i64::try_from(stats.cached).unwrap_or(i64::MAX),
            cached_msg_min_offset: stats.min_offset,
            cached_msg_max_offset: stats.max_offset,
            commit_offset,
            droped: self.is_dropped(),
            last_consume_timestamp: self.last_consume_ms.load(Ordering::Relaxed),
            last_pull_timestamp: self.last_pull_ms.load(Ordering::Relaxed),
            locked: self.is_locked(),
        }
    }
}

/// Sleeps `d`, waking early when `pq` is dropped.
pub(crate) async fn sleep_unless_dropped(pq: &ProcessQueue, d: Duration) {
    let deadline = Instant::now() + d;
    while !pq.is_dropped() && Instant::now() < deadline {
        let woken = pq.lock_granted.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if pq.is_dropped() {
            return;
        }
        if tokio::time::timeout_at(deadline, woken).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(offset: i64, body: &str) -> MessageExt {
        MessageExt {
            queue_offset: offset,
            body: bytes::Bytes::from(body.to_owned()),
            ..Default::default()
        }
    }

    fn pq() -> ProcessQueue {
        ProcessQueue::new(MessageQueue::new("T", "b", 0), SubscriptionData::default())
    }

    fn committed(pq: &ProcessQueue, offsets: &[i64]) -> Option<i64> {
        let mut out = None;
        pq.remove_messages(offsets, |o| out = Some(o));
        out
    }

    #[test]
    fn the_consumed_offset_is_the_smallest_cached_offset_or_one_past_the_largest() {
        let q = pq();
        let (ok, _) = q.put_messages(&[msg(10, "a"), msg(11, "bb"), msg(12, "c")], 13);
        assert!(ok);
        assert_eq!(q.pull_offset(), Some(13));
        assert_eq!(q.cache_stats().size_bytes, 4);
        // 11 finishes before 10: the offset cannot pass 10 yet.
        assert_eq!(committed(&q, &[11]), Some(10));
        assert_eq!(committed(&q, &[10]), Some(12));
        assert_eq!(committed(&q, &[12]), Some(13));
        assert_eq!(q.cache_stats().cached, 0);
        assert_eq!(q.cache_stats().size_bytes, 0);
        // Nothing cached: nothing to commit.
        assert_eq!(committed(&q, &[12]), None);
        assert_eq!(q.cache_stats().high_water, 3);
    }

    #[test]
    fn a_released_queue_commits_nothing() {
        let q = pq();
        q.put_messages(&[msg(0, "a"), msg(1, "a")], 2);
        q.release();
        assert_eq!(committed(&q, &[0]), None);
        assert!(!q.commit_if_empty(5, |_| panic!("released")));
    }

    #[test]
    fn flow_control_holds_on_count_bytes_and_span_and_reports_an_episode_once() {
        let q = pq();
        let many: Vec<MessageExt> = (0..5).map(|i| msg(i, "xx")).collect();
        q.put_messages(&many, 5);
        assert_eq!(q.flow(5, 100, None), (Flow::Pull, false));
        assert_eq!(q.flow(4, 100, None), (Flow::Hold, true));
        assert_eq!(q.flow(4, 100, None), (Flow::Hold, false));
        assert_eq!(q.flow(10, 100, None), (Flow::Pull, false));
        assert_eq!(q.flow(10, 9, None), (Flow::Hold, true));
        assert_eq!(q.flow(10, 100, Some(3)), (Flow::Hold, false));
        assert_eq!(q.flow(10, 100, Some(4)), (Flow::Pull, false));
        assert_eq!(q.flow_control_times.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn duplicates_are_cached_once_and_a_dropped_queue_caches_nothing() {
        let q = pq();
        q.put_messages(&[msg(1, "a")], 2);
        q.put_messages(&[msg(1, "a"), msg(2, "b")], 3);
        assert_eq!(q.cache_stats().cached, 2);
        q.mark_dropped();
        assert_eq!(q.put_messages(&[msg(3, "c")], 4), (false, false));
        assert!(!q.begin_consume());
    }

    #[test]
    fn orderly_batches_come_in_order_and_a_suspended_batch_comes_back_first() {
        let q = pq();
        let (_, start) = q.put_messages(&[msg(5, "a"), msg(6, "b"), msg(7, "c")], 8);
        assert!(start, "first messages start a worker");
        let (_, again) = q.put_messages(&[msg(8, "d")], 9);
        assert!(!again, "one worker per queue");
        let batch = q.take_messages(2);
        assert_eq!(
            batch.iter().map(|m| m.queue_offset).collect::<Vec<_>>(),
            [5, 6]
        );
        let mut first = batch[0].clone();
        first.reconsume_times = 1;
        // 5 is retried, 6 went to the dead-letter queue.
        q.requeue(vec![first]);
        let batch = q.take_messages(2);
        assert_eq!(
            batch.iter().map(|m| m.queue_offset).collect::<Vec<_>>(),
            [5, 7]
        );
        assert_eq!(batch[0].reconsume_times, 1);
        let mut out = None;
        q.commit_consuming(|o| out = Some(o));
        assert_eq!(out, Some(8));
        assert_eq!(q.take_messages(2).len(), 1);
        q.commit_consuming(|o| out = Some(o));
        assert_eq!(out, Some(9));
        assert!(q.take_messages(2).is_empty());
        assert!(!q.cache_stats().worker_active);
        let (_, start) = q.put_messages(&[msg(9, "e")], 10);
        assert!(start, "an idle queue needs a new worker");
    }

    #[tokio::test]
    async fn waiting_for_idle_ends_when_the_last_call_ends() {
        let q = std::sync::Arc::new(pq());
        assert!(q.wait_idle(Instant::now()).await);
        assert!(q.begin_consume());
        assert!(q.begin_consume());
        let deadline = Instant::now() + Duration::from_secs(10);
        let waiter = {
            let q = std::sync::Arc::clone(&q);
            tokio::spawn(async move { q.wait_idle(deadline).await })
        };
        q.end_consume();
        q.end_consume();
        assert!(waiter.await.unwrap());
        assert!(q.begin_consume());
        assert!(!q.wait_idle(Instant::now()).await);
    }

    #[test]
    fn the_lock_expires_without_renewal() {
        let q = pq();
        assert!(!q.is_locked());
        q.set_locked(true);
        assert!(q.is_locked());
        assert!(!q.is_lock_expired());
        q.last_lock_ms
            .store(now_ms() - LOCK_MAX_LIVE_TIME_MS - 1, Ordering::SeqCst);
        assert!(q.is_lock_expired());
    }
}
