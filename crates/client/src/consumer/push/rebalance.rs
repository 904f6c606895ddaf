//! Queue assignment of a push consumer: the rebalance (strategy over the sorted queues and
//! the sorted consumer ids), taking queues (orderly clustering: only those the broker lets
//! this client lock), handing queues over cleanly, and the broker locks of orderly consumers.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use apogee_protocol::body::{MessageModel, MessageQueue, SubscriptionData};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::process_queue::ProcessQueue;
use super::puller::pull_loop;
use super::PushInner;
use crate::consumer::offset_store::{OffsetStore, ReadOffsetType};
use crate::consumer::{start_offset, StartOffset};
use crate::error::Result;
use crate::namespace;
use crate::util::lock;

/// How long a rebalance waits for running listener calls of the queues it gives up (RocketMQ's
/// orderly consumer waits 1 s for the queue's consume lock).
const HANDOVER_WAIT: Duration = Duration::from_secs(1);
/// Another rebalance this soon when some new queue could not be locked (`rebalanceLater(500)`).
const REBALANCE_LATER: Duration = Duration::from_millis(500);

/// Selects the held queues a call of [`PushInner::set_assignment`] is about.
pub(super) type Scope<'a> = &'a (dyn Fn(&MessageQueue) -> bool + Send + Sync);

impl PushInner {
    pub(super) async fn rebalance(&self) {
        if self.is_shut_down() {
            return;
        }
        let _one_at_a_time = self.rebalance_lock.lock().await;
        if self.is_shut_down() {
            return;
        }
        let subs: Vec<(String, SubscriptionData)> = lock(&self.subscriptions)
            .iter()
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect();
        let mut all_locked = true;
        for (topic, sub) in &subs {
            let entry = match self.instance.route_entry(topic) {
                Some(e) => e,
                None => match self.instance.update_topic_route(topic).await {
                    Ok(e) => e,
                    Err(e) => {
                        debug!(topic = %topic, error = %e, "rebalance: no route");
                        continue;
                    }
                },
            };
            let mut all: Vec<MessageQueue> = entry.subscribe.to_vec();
            all.sort();
            let mine = match self.options.message_model {
                MessageModel::Broadcasting => all,
                MessageModel::Clustering => {
                    let mut ids = match self
                        .instance
                        .consumer_id_list(topic, &self.wire_group)
                        .await
                    {
                        Ok(ids) if !ids.is_empty() => ids,
                        Ok(_) => continue,
                        Err(e) => {
                            debug!(topic = %topic, error = %e, "rebalance: no consumer list");
                            continue;
                        }
                    };
                    ids.sort();
                    ids.dedup();
                    self.strategy
                        .allocate(&self.wire_group, self.instance.client_id(), &all, &ids)
                }
            };
            let in_topic = |mq: &MessageQueue| mq.topic == *topic;
            all_locked &= self.set_assignment(&in_topic, mine, Some(sub)).await;
        }
        let topics: HashSet<&String> = subs.iter().map(|(t, _)| t).collect();
        let unsubscribed = |mq: &MessageQueue| !topics.contains(&mq.topic);
        self.set_assignment(&unsubscribed, Vec::new(), None).await;
        if !all_locked {
            self.rebalance_later();
        }
    }

    fn rebalance_later(&self) {
        let weak = self.weak.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REBALANCE_LATER).await;
            if let Some(inner) = weak.upgrade() {
                if !inner.is_shut_down() {
                    inner.instance.trigger_rebalance();
                }
            }
        });
    }

    /// Makes the held queues `in_scope` selects exactly `wanted` (subscribed with `sub`):
    /// queues no longer wanted, and earlier handovers that did not complete, are handed over;
    /// wanted queues not held are taken. Returns false when some wanted queue could not be
    /// locked on its broker (orderly clustering), so the caller tries again soon.
    pub(super) async fn set_assignment(
        &self,
        in_scope: Scope<'_>,
        wanted: Vec<MessageQueue>,
        sub: Option<&SubscriptionData>,
    ) -> bool {
        let wanted_set: HashSet<&MessageQueue> = wanted.iter().collect();
        let leaving: Vec<Arc<ProcessQueue>> = lock(&self.queues)
            .iter()
            .filter(|(mq, pq)| in_scope(mq) && (pq.is_dropped() || !wanted_set.contains(mq)))
            .map(|(_, pq)| Arc::clone(pq))
            .collect();
        if !leaving.is_empty() {
            for pq in &leaving {
                pq.mark_dropped();
            }
            let deadline = Instant::now() + HANDOVER_WAIT;
            for pq in &leaving {
                if self.hand_over(pq, deadline).await {
                    let mut queues = lock(&self.queues);
                    if queues.get(&pq.mq).is_some_and(|cur| Arc::ptr_eq(cur, pq)) {
                        queues.remove(&pq.mq);
                    }
                    debug!(queue = %pq.mq, "queue handed over");
                }
            }
        }
        let Some(sub) = sub else {
            return true;
        };
        let new: Vec<MessageQueue> = {
            let queues = lock(&self.queues);
            wanted
                .into_iter()
                .filter(|mq| !queues.contains_key(mq))
                .collect()
        };
        if new.is_empty() {
            return true;
        }
        let (granted, all_locked) = if self.orderly_clustering() {
            self.lock_new_queues(new).await
        } else {
            (new, true)
        };
        for mq in granted {
            let pq = Arc::new(ProcessQueue::new(mq.clone(), sub.clone()));
            if self.orderly_clustering() {
                pq.set_locked(true);
            }
            let inserted = {
                let mut queues = lock(&self.queues);
                if self.is_shut_down() || queues.contains_key(&mq) {
                    false
                } else {
                    queues.insert(mq, Arc::clone(&pq));
                    true
                }
            };
            if inserted {
                debug!(queue = %pq.mq, "queue assigned");
                self.start_pull_task(&pq);
            }
        }
        all_locked
    }

    fn start_pull_task(&self, pq: &Arc<ProcessQueue>) {
        let task = tokio::spawn(pull_loop(self.weak.clone(), Arc::clone(pq)));
        if let Some(old) = lock(&pq.task).replace(task) {
            old.abort();
        }
        if pq.is_dropped() || self.is_shut_down() {
            pq.abort_task();
        }
    }

    /// Completes the handover of a dropped queue: once no listener call of it runs (orderly:
    /// once its consume lock is free), its offset is committed and waited for, and (orderly
    /// clustering) its broker lock released. A concurrent queue whose calls outlive `deadline`
    /// is handed over anyway (their results are then ignored, as in RocketMQ); an orderly one
    /// stays held (dropped) and is tried again at the next rebalance. True when done.
    async fn hand_over(&self, pq: &Arc<ProcessQueue>, deadline: Instant) -> bool {
        if self.orderly_clustering() {
            let Ok(guard) = tokio::time::timeout_at(deadline, pq.consume_lock.lock()).await else {
                debug!(queue = %pq.mq, "orderly queue still consuming; handover retried later");
                return false;
            };
            self.commit_and_release(pq).await;
            self.unlock_queues(std::slice::from_ref(pq)).await;
            drop(guard);
            return true;
        }
        if !pq.wait_idle(deadline).await {
            debug!(queue = %pq.mq, "listener calls still running; handing the queue over anyway");
        }
        self.commit_and_release(pq).await;
        true
    }

    async fn commit_and_release(&self, pq: &ProcessQueue) {
        pq.release();
        if let Err(e) = self.store.persist(&pq.mq).await {
            warn!(queue = %pq.mq, error = %e, "offset of a handed-over queue not persisted");
        }
        // RocketMQ's local store keeps the offsets of queues it gave up; the remote one forgets.
        if matches!(self.store, OffsetStore::Remote(_)) {
            self.store.remove_offset(&pq.mq);
        }
    }

    /// Where the first pull of `mq` starts: the committed offset (from the broker, or the
    /// offsets file), else the consume-from-where rule.
    pub(super) async fn compute_start(&self, mq: &MessageQueue) -> Result<i64> {
        let how = match self.store {
            OffsetStore::Remote(_) => ReadOffsetType::ReadFromStore,
            OffsetStore::Local(_) => ReadOffsetType::MemoryFirstThenStore,
        };
        let committed = self.store.read_offset(mq, how).await?;
        match start_offset(
            self.options.consume_from_where,
            committed,
            namespace::is_retry_topic(&mq.topic),
            self.options.consume_timestamp_ms,
        ) {
            StartOffset::At(o) => Ok(o),
            StartOffset::MaxOffset => self.instance.max_offset(mq).await,
            StartOffset::Timestamp(t) => self.instance.search_offset(mq, t).await,
        }
    }

    /// RESET_CONSUMER_CLIENT_OFFSET: the queues of `topic` are handed over, the new offsets
    /// committed, and the rebalance takes them again from there.
    pub(super) async fn reset_offsets(&self, topic: &str, offsets: Vec<(MessageQueue, i64)>) {
        if self.is_shut_down() {
            return;
        }
        {
            let _one_at_a_time = self.rebalance_lock.lock().await;
            let targets: HashSet<MessageQueue> = offsets
                .iter()
                .filter(|(mq, _)| mq.topic == topic)
                .map(|(mq, _)| mq.clone())
                .collect();
            let in_reset = |mq: &MessageQueue| targets.contains(mq);
            self.set_assignment(&in_reset, Vec::new(), None).await;
            for (mq, offset) in offsets.iter().filter(|(mq, _)| mq.topic == topic) {
                self.store.update_offset(mq, *offset, false);
                if let Err(e) = self.store.persist(mq).await {
                    warn!(queue = %mq, error = %e, "reset offset not persisted");
                }
                if matches!(self.store, OffsetStore::Remote(_)) {
                    self.store.remove_offset(mq);
                }
            }
        }
        self.rebalance().await;
    }

    // ---- broker locks (orderly clustering) ---------------------------------------------------

    /// Locks `new` queues before taking them; returns those granted and whether all were.
    async fn lock_new_queues(&self, new: Vec<MessageQueue>) -> (Vec<MessageQueue>, bool) {
        let mut by_broker: BTreeMap<String, BTreeSet<MessageQueue>> = BTreeMap::new();
        for mq in new {
            by_broker
                .entry(mq.broker_name.clone())
                .or_default()
                .insert(mq);
        }
        let mut granted = Vec::new();
        let mut all = true;
        for (broker, mqs) in by_broker {
            let asked = mqs.len();
            match self
                .instance
                .lock_batch_mq(&broker, &self.wire_group, mqs.clone())
                .await
            {
                Ok(ok) => {
                    let got: Vec<MessageQueue> =
                        mqs.into_iter().filter(|mq| ok.contains(mq)).collect();
                    if got.len() < asked {
                        debug!(broker = %broker, asked, got = got.len(), "some new queues are still locked by another client");
                        all = false;
                    }
                    granted.extend(got);
                }
                Err(e) => {
                    debug!(broker = %broker, error = %e, "cannot lock new queues");
                    all = false;
                }
            }
        }
        (granted, all)
    }

    pub(super) fn start_lock_loop(&self) {
        let weak = self.weak.clone();
        let every = Duration::from_millis(self.options.lock_interval_ms.max(100));
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval_at(Instant::now() + every, every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.is_shut_down() {
                    return;
                }
                inner.lock_all().await;
            }
        });
        lock(&self.tasks).push(task);
    }

    /// Renews the locks of every held queue (`RebalanceImpl.lockAll`).
    async fn lock_all(&self) {
        let held: Vec<Arc<ProcessQueue>> = lock(&self.queues)
            .values()
            .filter(|pq| !pq.is_dropped())
            .cloned()
            .collect();
        for (broker, pqs) in by_broker(&held) {
            let mqs: BTreeSet<MessageQueue> = pqs.iter().map(|pq| pq.mq.clone()).collect();
            match self
                .instance
                .lock_batch_mq(&broker, &self.wire_group, mqs)
                .await
            {
                Ok(granted) => {
                    for pq in pqs {
                        let ok = granted.contains(&pq.mq);
                        if !ok && pq.is_locked() {
                            warn!(queue = %pq.mq, "queue lock lost");
                        }
                        pq.set_locked(ok);
                    }
                }
                Err(e) => debug!(broker = %broker, error = %e, "lock renewal failed"),
            }
        }
    }

    /// Tries to lock one queue now (an orderly worker that found its lock missing or stale).
    pub(super) async fn lock_one(&self, pq: &ProcessQueue) -> bool {
        let mqs = BTreeSet::from([pq.mq.clone()]);
        match self
            .instance
            .lock_batch_mq(&pq.mq.broker_name, &self.wire_group, mqs)
            .await
        {
            Ok(granted) => {
                let ok = granted.contains(&pq.mq);
                pq.set_locked(ok);
                ok
            }
            Err(e) => {
                debug!(queue = %pq.mq, error = %e, "lock failed");
                false
            }
        }
    }

    /// Releases the broker locks of `pqs` and waits for the brokers.
    pub(super) async fn unlock_queues(&self, pqs: &[Arc<ProcessQueue>]) {
        for (broker, pqs) in by_broker(pqs) {
            let mqs: BTreeSet<MessageQueue> = pqs.iter().map(|pq| pq.mq.clone()).collect();
            if let Err(e) = self
                .instance
                .unlock_batch_mq(&broker, &self.wire_group, mqs, false)
                .await
            {
                debug!(broker = %broker, error = %e, "unlock failed; the broker lock expires by itself");
            }
            for pq in pqs {
                pq.set_locked(false);
            }
        }
    }
}

fn by_broker(pqs: &[Arc<ProcessQueue>]) -> BTreeMap<String, Vec<Arc<ProcessQueue>>> {
    let mut out: BTreeMap<String, Vec<Arc<ProcessQueue>>> = BTreeMap::new();
    for pq in pqs {
        out.entry(pq.mq.broker_name.clone())
            .or_default()
            .push(Arc::clone(pq));
    }
    out
}
