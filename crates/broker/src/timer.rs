//! The timer service (RocketMQ 5.x `TimerMessageStore`'s enqueue and dequeue sides) over the
//! store's timer files: it reads `rmq_sys_wheel_timer`/0 into the timer log and wheel, walks the
//! due ticks and re-puts each message to its real topic, and cancels pending timers by unique
//! key. Design, files and crash safety: docs/storage-format.md, "Timer".

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apogee_protocol::message::properties::keys;
use apogee_protocol::message::{MessageProperties, MessageRecord, RecordView};
use apogee_store::timer::{TimerConfig, TimerStore, TimerUnit};
use apogee_store::{GetMessageStatus, MessageStore, StoreError};
use bytes::{Bytes, BytesMut};
use tracing::{debug, error, info, warn};

use crate::error::{BrokerError, Result};
use crate::manager::{lock, now_ms};
use crate::names::TIMER_TOPIC;
use crate::reput::{already_reput, encode_reput};
use crate::worker::Worker;

/// Timer records read from the queue per step.
const ENQUEUE_BATCH: usize = 1024;
/// Units walked per step: a large tick does not hold up enqueueing and checkpoints.
const DEQUEUE_BATCH: usize = 4096;
/// Longest sleep between steps.
const POLL_MS: i64 = 100;
/// Back-off after a store error.
const BACKOFF_MS: i64 = 1_000;

/// `TimerMessageStore.buildDeleteKey`: what `TIMER_DEL_UNIQKEY` holds.
pub fn delete_key(topic: &str, uniq_key: &str) -> String {
    format!("{topic}+{uniq_key}")
}

/// The timer state, driven one step at a time (by the service's thread, or by a test).
pub(crate) struct TimerCore {
    store: Arc<MessageStore>,
    timer: TimerStore,
    /// `TIMER_DEL_UNIQKEY`s met so far in the walk of `deletes_tick`.
    deletes: HashSet<String>,
    deletes_tick: Option<i64>,
    flush_interval_ms: i64,
    last_checkpoint_ms: i64,
    /// Ticks due at or before this moment may have been delivered before the start.
    started_ms: i64,
    /// CommitLog end when the service started.
    start_log_end: u64,
    backoff_until: i64,
    delivered: u64,
    cancelled: u64,
}

/// Counters for tests and runtime info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerStats {
    /// Entries the service holds in memory (changed wheel slots, delete keys of the current tick):
    /// bounded, whatever the number of pending timers.
    pub memory_entries: usize,
    /// Next timer-queue offset to enqueue.
    pub enqueue_offset: u64,
    /// First tick not fully delivered.
    pub cursor_tick: i64,
    /// Messages re-put to their real topic since the start.
    pub delivered: u64,
    /// Pending timers dropped by a delete marker since the start.
    pub cancelled: u64,
}

/// What [`cancel_timer`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// A delete marker was stored; the message will not be delivered.
    Cancelled,
    /// No pending timer message of that topic has that unique key.
    NotFound,
    /// The message is due already (it may be on its way).
    TooLate,
}

impl TimerCore {
    pub fn open(store: Arc<MessageStore>) -> Result<TimerCore> {
        Self::open_at(store, now_ms())
    }

    /// Opens as if started at `now` (ticks due by then may have been delivered before).
    pub fn open_at(store: Arc<MessageStore>, now: i64) -> Result<TimerCore> {
        let cfg = store.config();
        let flush_interval_ms = cfg.timer_flush_interval_ms as i64;
        let timer = TimerStore::open(
            &cfg.root_dir,
            TimerConfig::from_store(cfg),
            now,
            store.min_offset(TIMER_TOPIC, 0),
        )?;
        Ok(TimerCore {
            start_log_end: store.commitlog_max_offset(),
            store,
            timer,
            deletes: HashSet::new(),
            deletes_tick: None,
            flush_interval_ms,
            last_checkpoint_ms: now,
            started_ms: now,
            backoff_until: 0,
            delivered: 0,
            cancelled: 0,
        })
    }

    pub fn stats(&self) -> TimerStats {
        TimerStats {
            memory_entries: self.timer.memory_entries() + self.deletes.len(),
            enqueue_offset: self.timer.enqueue_offset(),
            cursor_tick: self.timer.cursor(),
            delivered: self.delivered,
            cancelled: self.cancelled,
        }
    }

    /// Enqueues new timer records, delivers the due ticks and checkpoints when it is time;
    /// returns when to run again.
    pub fn step(&mut self, now: i64) -> i64 {
        if now < self.backoff_until {
            return self.backoff_until;
        }
        let result = self.enqueue().and_then(|more_in| {
            let more_out = self.dequeue(now)?;
            Ok(more_in || more_out)
        });
        let more = match result {
            Ok(more) => more,
            Err(e) => {
                error!("timer service: {e}; retrying in {BACKOFF_MS} ms");
                self.backoff_until = now + BACKOFF_MS;
                false
            }
        };
        if self.timer.needs_checkpoint() || now - self.last_checkpoint_ms >= self.flush_interval_ms
        {
            self.last_checkpoint_ms = now;
            if let Err(e) = self.timer.checkpoint() {
                error!("timer checkpoint failed: {e}");
            }
        }
        if more {
            now
        } else {
            (now + POLL_MS).min(self.timer.due_ms(self.timer.cursor()))
        }
    }

    /// Moves one batch of timer records into the timer log; true when more are waiting.
    fn enqueue(&mut self) -> std::result::Result<bool, StoreError> {
        let from = self.timer.enqueue_offset();
        let res = self
            .store
            .get_messages(TIMER_TOPIC, 0, from, ENQUEUE_BATCH, usize::MAX, &|_| true);
        match res.status {
            GetMessageStatus::Found => {}
            GetMessageStatus::OffsetTooSmall
            | GetMessageStatus::OffsetFoundNull
            | GetMessageStatus::MessageWasRemoving
            | GetMessageStatus::NoMatchedMessage => {
                if res.next_begin_offset > from {
                    warn!(
                        "timer queue offsets {from}..{} are gone; skipped",
                        res.next_begin_offset
                    );
                    self.timer.skip_to(res.next_begin_offset);
                }
                return Ok(false);
            }
            _ => return Ok(false),
        }
        for (rec, qo) in res.messages.iter().zip(res.queue_offsets.iter().copied()) {
            let v = match RecordView::parse(rec) {
                Ok(v) => v,
                Err(e) => {
                    warn!("timer record {qo} cannot be read ({e}); skipped");
                    self.timer.skip_to(qo + 1);
                    continue;
                }
            };
            let Some(out_ms) = v
                .property(keys::TIMER_OUT_MS)
                .and_then(|s| s.trim().parse::<i64>().ok())
            else {
                warn!("timer record {qo} has no TIMER_OUT_MS; skipped");
                self.timer.skip_to(qo + 1);
                continue;
            };
            let delete = v.property(keys::TIMER_DEL_UNIQKEY).is_some();
            self.timer.add(
                qo,
                v.physical_offset as u64,
                v.total_size() as u32,
                out_ms,
                delete,
            )?;
            if self.timer.needs_checkpoint() {
                self.timer.checkpoint()?;
            }
        }
        self.timer.skip_to(res.next_begin_offset);
        Ok(res.next_begin_offset < res.max_offset)
    }

    /// Walks due ticks (a bounded number of units); true when more is due now.
    fn dequeue(&mut self, now: i64) -> std::result::Result<bool, StoreError> {
        let mut budget = DEQUEUE_BATCH;
        while self.timer.is_due(now) {
            if budget == 0 {
                return Ok(true);
            }
            let tick = self.timer.cursor();
            if self.deletes_tick != Some(tick) {
                self.deletes.clear();
                self.deletes_tick = Some(tick);
                self.rebuild_deletes()?;
            }
            let Some((_, unit)) = self.timer.walk_next()? else {
                self.deletes.clear();
                self.deletes_tick = None;
                continue;
            };
            self.handle(&unit, now)?;
            budget -= 1;
            if self.timer.walk_done(&unit) {
                self.deletes.clear();
                self.deletes_tick = None;
            }
        }
        Ok(false)
    }

    /// A walk resumed after a restart: the delete markers it already passed still count.
    fn rebuild_deletes(&mut self) -> std::result::Result<(), StoreError> {
        let mut markers = Vec::new();
        self.timer.for_each_walked(|_, u| {
            if u.is_delete() && !u.is_roll() {
                markers.push(u.commitlog_offset);
            }
        })?;
        for off in markers {
            if let Some(k) = self.store.message_at(off).and_then(|r| {
                RecordView::parse(&r)
                    .ok()?
                    .property(keys::TIMER_DEL_UNIQKEY)
                    .map(|k| k.into_owned())
            }) {
                self.deletes.insert(k);
            }
        }
        Ok(())
    }

    /// Delivers (or rolls, or records the delete of) one due unit.
    fn handle(&mut self, unit: &TimerUnit, now: i64) -> std::result::Result<(), StoreError> {
        let off = unit.commitlog_offset;
        let Some(rec) = self.store.message_at(off) else {
            warn!("timer message at {off} is gone from the log; skipped");
            return Ok(());
        };
        let v = match RecordView::parse(&rec) {
            Ok(v) => v,
            Err(e) => {
                warn!("timer message at {off} cannot be read ({e}); skipped");
                return Ok(());
            }
        };
        let roll = unit.is_roll();
        if unit.is_delete() && !roll {
            if let Some(k) = v.property(keys::TIMER_DEL_UNIQKEY) {
                self.deletes.insert(k.into_owned());
            }
            return Ok(());
        }
        let mut props = v.properties_map();
        let uniq = props.uniq_key().map(str::to_owned);
        let Some(real_topic) = props.get(keys::REAL_TOPIC).map(str::to_owned) else {
            warn!("timer message at {off} has no REAL_TOPIC; skipped");
            return Ok(());
        };
        if !roll {
            if let Some(u) = &uniq {
                if self.deletes.contains(&delete_key(&real_topic, u)) {
                    debug!("timer message {u} for {real_topic} was cancelled");
                    self.cancelled += 1;
                    return Ok(());
                }
            }
        }
        let (topic, queue_id) = if roll {
            let times = props
                .get(keys::TIMER_ROLL_TIMES)
                .and_then(|t| t.parse::<i64>().ok())
                .unwrap_or(0);
            props.insert(keys::TIMER_ROLL_TIMES, (times + 1).to_string());
            (TIMER_TOPIC.to_owned(), 0)
        } else {
            let Some(qid) = props
                .get(keys::REAL_QID)
                .and_then(|q| q.trim().parse::<i32>().ok())
            else {
                warn!("timer message at {off} has no REAL_QID; skipped");
                return Ok(());
            };
            props.remove(keys::REAL_TOPIC);
            props.remove(keys::REAL_QID);
            (real_topic, qid)
        };
        if self.timer.due_ms(unit.tick) <= self.started_ms && off < self.start_log_end {
            if let Some(u) = &uniq {
                if already_reput(&self.store, &topic, u, off, v.store_timestamp) {
                    debug!("timer message at {off} was delivered before the restart");
                    return Ok(());
                }
            }
        }
        props.insert(keys::TIMER_ENQUEUE_MS, v.store_timestamp.to_string());
        props.insert(keys::TIMER_DEQUEUE_MS, now.to_string());
        let mut bytes = encode_reput(&v, off, &topic, queue_id, props)
            .map_err(|e| StoreError::MessageIllegal(format!("timer message at {off}: {e}")));
        let bytes = match bytes.as_mut() {
            Ok(b) => b,
            Err(e) => {
                warn!("{e}; skipped");
                return Ok(());
            }
        };
        match self.store.append(bytes) {
            Ok(_) => {
                if !roll {
                    self.delivered += 1;
                }
                Ok(())
            }
            Err(e @ (StoreError::MessageIllegal(_) | StoreError::PropertiesTooLarge(_))) => {
                warn!("timer message at {off} cannot be delivered ({e}); skipped");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the checkpoint (at shutdown).
    pub fn checkpoint(&mut self) {
        if let Err(e) = self.timer.checkpoint() {
            error!("timer checkpoint failed: {e}");
        }
    }
}

/// Cancels the pending timer message of `topic` with `uniq_key` (RocketMQ 5.x's delete marker):
/// finds it through the index, and stores a marker for the same tick. The gRPC RecallMessage builds
/// on this.
pub fn cancel_timer(
    store: &MessageStore,
    store_host: SocketAddr,
    topic: &str,
    uniq_key: &str,
    now: i64,
) -> std::result::Result<CancelOutcome, StoreError> {
    let target = store
        .query_by_key(TIMER_TOPIC, uniq_key, 64, 0, i64::MAX)
        .iter()
        .filter_map(|rec| {
            let v = RecordView::parse(rec).ok()?;
            if v.property(keys::TIMER_DEL_UNIQKEY).is_some()
                || v.property(keys::REAL_TOPIC).as_deref() != Some(topic)
            {
                return None;
            }
            v.property(keys::TIMER_OUT_MS)?.trim().parse::<i64>().ok()
        })
        .max();
    let Some(out_ms) = target else {
        return Ok(CancelOutcome::NotFound);
    };
    let precision = store.config().timer_precision_ms.max(1) as i64;
    if (out_ms.div_euclid(precision) + 1) * precision <= now {
        return Ok(CancelOutcome::TooLate);
    }
    store_delete_marker(store, store_host, topic, uniq_key, out_ms, now)?;
    Ok(CancelOutcome::Cancelled)
}

/// Stores the delete marker of `topic`'s timer message `uniq_key` for the tick of `out_ms`
/// (RocketMQ's recall message), whether or not that message is known yet: a recall racing the
/// index of a message just sent still lands in the message's tick.
pub(crate) fn store_delete_marker(
    store: &MessageStore,
    store_host: SocketAddr,
    topic: &str,
    uniq_key: &str,
    out_ms: i64,
    now: i64,
) -> std::result::Result<(), StoreError> {
    let mut props = MessageProperties::new();
    props.insert(keys::TIMER_DEL_UNIQKEY, delete_key(topic, uniq_key));
    props.insert(keys::TIMER_OUT_MS, out_ms.to_string());
    props.insert(keys::REAL_TOPIC, topic);
    props.insert(keys::REAL_QID, "0");
    props.set_uniq_key(uniq_key);
    let mut r = MessageRecord::new(TIMER_TOPIC, Bytes::from_static(b"0"), props.to_bytes());
    r.born_timestamp = now;
    r.born_host = store_host;
    r.store_host = store_host;
    let mut bytes = BytesMut::with_capacity(r.encoded_len());
    r.encode_into(&mut bytes)
        .map_err(|e| StoreError::MessageIllegal(e.to_string()))?;
    store.append(&mut bytes)?;
    Ok(())
}

/// The running timer service.
pub(crate) struct TimerService {
    core: Arc<Mutex<TimerCore>>,
    worker: Worker,
}

impl TimerService {
    pub fn start(core: TimerCore) -> Result<TimerService> {
        let s = core.stats();
        info!(
            cursor = s.cursor_tick,
            enqueue_offset = s.enqueue_offset,
            "timer service starting"
        );
        let core = Arc::new(Mutex::new(core));
        let c = Arc::clone(&core);
        let worker = Worker::spawn("apogee-timer", move || {
            let now = now_ms();
            let next = lock(&c).step(now);
            Duration::from_millis((next - now).clamp(0, POLL_MS) as u64)
        })
        .map_err(|e| BrokerError::io("timer service thread", e))?;
        Ok(TimerService { core, worker })
    }

    pub fn stats(&self) -> TimerStats {
        lock(&self.core).stats()
    }

    /// Runs a step now (a timer record was just stored).
    pub fn wake(&self) {
        self.worker.wake();
    }

    /// Stops the service and writes its checkpoint.
    pub fn shutdown(mut self) {
        self.worker.stop();
        lock(&self.core).checkpoint();
    }
}

#[cfg(test)]
mod tests;
