//! POP against the store: validation, collecting messages (redeliveries first, then new ones),
//! acks and invisible-time changes, DLQ after the last attempt, and long polling.
//!
//! One mutex guards the in-flight table and its journal; a pop holds it while it reads its
//! queues (store reads are memory-mapped and short), so two pops never deliver the same offset.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apogee_protocol::codes::perm;
use apogee_protocol::message::record::reconsume_times_position;
use apogee_protocol::message::{keys, MessageRecord, MessageVersion, RecordView};
use apogee_store::RecordFilter;
use bytes::{Bytes, BytesMut};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::warn;

use super::journal::{push_delivery, push_removal, Journal};
use super::state::{AckOutcome, InFlight, PopState, QueueKey};
use super::*;
use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::filter::{FilterError, MessageFilter};
use crate::manager::{lock, now_ms};
use crate::names;

struct Table {
    state: PopState,
    journal: Journal,
}

/// The broker's POP state: the in-flight table and its journal, and the parked pops.
pub(crate) struct PopManager {
    table: Mutex<Table>,
    /// topic -> (woken on arrival, pops parked on it).
    waiters: Mutex<HashMap<String, (Arc<Notify>, usize)>>,
    parked: AtomicUsize,
    max_parked: usize,
    stop: watch::Sender<bool>,
    revive_counter: AtomicU32,
}

impl PopManager {
    pub fn open(config: &BrokerConfig) -> Result<Self> {
        let dir = config.data_dir.join("pop");
        let (journal, state) = Journal::open(&dir, config.pop_journal_compact_bytes)
            .map_err(|e| BrokerError::io(dir.display(), e))?;
        Ok(Self {
            table: Mutex::new(Table { state, journal }),
            waiters: Mutex::new(HashMap::new()),
            parked: AtomicUsize::new(0),
            max_parked: config.pop_polling_size,
            stop: watch::Sender::new(false),
            revive_counter: AtomicU32::new(0),
        })
    }

    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Acquire)
    }

    pub fn in_flight(&self) -> usize {
        lock(&self.table).state.len()
    }

    /// Highest in-flight offset of every queue (to keep pop offsets above them after a crash).
    pub fn max_in_flight_offsets(&self) -> Vec<(QueueKey, u64)> {
        let t = lock(&self.table);
        let mut out: HashMap<QueueKey, u64> = HashMap::new();
        for (k, o, _) in t.state.entries() {
            let m = out.entry(k.clone()).or_insert(o);
            *m = (*m).max(o);
        }
        out.into_iter().collect()
    }

    /// The store's append hook: wakes pops parked on `topic`.
    pub fn notify_arrival(&self, topic: &str) {
        if self.parked.load(Ordering::Acquire) == 0 {
            return;
        }
        if let Some((n, _)) = lock(&self.waiters).get(topic) {
            n.notify_waiters();
        }
    }

    /// Wakes every parked pop, refuses to park more, and syncs the journal.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
        if let Err(e) = lock(&self.table).journal.sync() {
            warn!("syncing the pop journal failed: {e}");
        }
    }

    fn notify_of(&self, topic: &str) -> Arc<Notify> {
        let mut w = lock(&self.waiters);
        let entry = w
            .entry(topic.to_owned())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        Arc::clone(&entry.0)
    }

    fn release(&self, topic: &str) {
        let mut w = lock(&self.waiters);
        if let Some(entry) = w.get_mut(topic) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                w.remove(topic);
            }
        }
    }
}

/// Interest in a topic's arrivals; counted as parked once `park` is called. Undone on drop.
struct Waiting<'a> {
    m: &'a PopManager,
    topic: String,
    notify: Arc<Notify>,
    parked: bool,
}

impl<'a> Waiting<'a> {
    fn new(m: &'a PopManager, topic: &str) -> Self {
        Self {
            notify: m.notify_of(topic),
            m,
            topic: topic.to_owned(),
            parked: false,
        }
    }

    /// Counts this pop as parked; false when the table is full.
    fn park(&mut self) -> bool {
        if self.parked {
            return true;
        }
        let n = self.m.parked.fetch_add(1, Ordering::AcqRel);
        if n >= self.m.max_parked {
            self.m.parked.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        self.parked = true;
        true
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.parked {
            self.m.parked.fetch_sub(1, Ordering::AcqRel);
        }
        self.m.release(&self.topic);
    }
}

/// What a pop needs after validation.
struct Checked {
    queues: Vec<i32>,
    filter: MessageFilter,
    retry_max_times: u32,
}

fn check_pop(b: &BrokerInner, r: &PopRequest) -> Result<Checked, PopError> {
    let ip = b.store_host.ip();
    if !perm::is_readable(b.live.broker_permission()) {
        return Err(PopError::NoPermission(format!(
            "the broker[{ip}] pop message is forbidden"
        )));
    }
    if r.max_messages > MAX_POP_MESSAGES {
        return Err(PopError::InvalidParameter(format!(
            "the broker store num {MAX_POP_MESSAGES} is less than the request num {}",
            r.max_messages
        )));
    }
    let topic = &r.topic;
    let topic_config = b.topics.select(topic).ok_or_else(|| {
        PopError::TopicNotExist(format!("topic[{topic}] not exist, apply first please!"))
    })?;
    if !perm::is_readable(topic_config.perm) {
        return Err(PopError::NoPermission(format!(
            "the topic[{topic}] peeking message is forbidden"
        )));
    }
    let read_queues = topic_config.read_queue_nums;
    let queues = match r.queue_id {
        Some(q) if q < 0 || q >= read_queues => {
            return Err(PopError::InvalidParameter(format!(
                "queueId[{q}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{read_queues}] consumer:[{}]",
                r.group
            )))
        }
        Some(q) => vec![q],
        None if read_queues <= 0 => Vec::new(),
        None => {
            let start = (random_u32() % read_queues as u32) as i32;
            (0..read_queues).map(|i| (start + i) % read_queues).collect()
        }
    };
    let group = &r.group;
    let group_config = b
        .groups
        .find_or_create(group)
        .map_err(|e| PopError::System(format!("cannot persist the change: {e}")))?
        .ok_or_else(|| {
            PopError::GroupNotExist(format!("subscription group [{group}] does not exist"))
        })?;
    if !group_config.consume_enable {
        return Err(PopError::NoPermission(format!(
            "subscription group no permission, {group}"
        )));
    }
    let filter = MessageFilter::build_with(
        r.expression.as_deref(),
        r.expression_type.as_deref(),
        b.config.enable_property_filter,
        |text| b.filters.compile(text),
    )
    .map_err(|e| match e {
        FilterError::Parse(why) => PopError::SubscriptionParseFailed(format!(
            "parse the consumer's subscription failed: {why}"
        )),
        FilterError::Unsupported(why) => PopError::System(why),
    })?;
    Ok(Checked {
        queues,
        filter,
        retry_max_times: group_config.retry_max_times.max(0) as u32,
    })
}

/// A pop, held up to `poll_ms` while nothing is poppable.
pub(crate) async fn pop(b: &Arc<BrokerInner>, mut r: PopRequest) -> Result<PopResult, PopError> {
    r.max_messages = r.max_messages.max(1);
    r.invisible_ms = r.invisible_ms.max(1);
    let checked = check_pop(b, &r)?;
    let poll_ms = r.poll_ms.clamp(0, MAX_POLL_MS);
    let deadline = Instant::now() + Duration::from_millis(poll_ms as u64);
    let mut waiting = Waiting::new(&b.pop, &r.topic);
    let mut stop = b.pop.stop.subscribe();
    loop {
        let notify = Arc::clone(&waiting.notify);
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let result = collect(b, &r, &checked);
        if result.status == PopStatus::Found || poll_ms == 0 || *stop.borrow() {
            return Ok(result);
        }
        if !waiting.park() {
            return Ok(PopResult {
                status: PopStatus::PollingFull,
                ..result
            });
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(result);
        }
        // A message in flight becoming visible again is an arrival too.
        let next_visible =
            lock(&b.pop.table)
                .state
                .next_visible_ms(&r.group, &r.topic, &checked.queues, now_ms());
        let wake_at = match next_visible {
            Some(at) => {
                let wait_ms = (at - now_ms()).max(0) as u64;
                deadline.min(now + Duration::from_millis(wait_ms))
            }
            None => deadline,
        };
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One pass over the queues.
fn collect(b: &BrokerInner, r: &PopRequest, c: &Checked) -> PopResult {
    let now = now_ms();
    let revive_qid = if r.fifo {
        ORDER_REVIVE_QID
    } else {
        (b.pop.revive_counter.fetch_add(1, Ordering::Relaxed) % REVIVE_QUEUE_NUM as u32) as i32
    };
    let retry_flag = if names::is_retry_topic(&r.topic) {
        "1"
    } else {
        "0"
    };
    let mut messages = Vec::new();
    let mut start_info = String::new();
    let mut offset_info = String::new();
    let mut order_info = String::new();
    let mut rest_num = 0i64;
    let mut to_dlq: Vec<(Bytes, u32)> = Vec::new();
    let max = r.max_messages as usize;
    let record_filter = c.filter.record_filter();
    let by_record = |record: &[u8]| record_filter.is_none_or(|f| f.matches_record(record));

    let mut t = lock(&b.pop.table);
    let Table { state, journal } = &mut *t;
    let mut lines = String::new();
    for &qid in &c.queues {
        let key: QueueKey = (r.group.clone(), r.topic.clone(), qid);
        let max_offset = b.store.max_offset(&r.topic, qid);
        let mut batch: Vec<(u64, Bytes, InFlight)> = Vec::new();
        let remaining = max - messages.len();
        let locked = r.fifo && state.is_locked(&key, now);
        let mut redelivering = false;
        if remaining > 0 && !locked {
            for (offset, e) in state.due(&key, now, remaining) {
                let record = b.store.message_at_queue_offset(&r.topic, qid, offset);
                let Some(record) = record else {
                    state.remove(&key, offset);
                    push_removal(&mut lines, &key, offset);
                    continue;
                };
                if e.redeliveries >= c.retry_max_times {
                    state.remove(&key, offset);
                    push_removal(&mut lines, &key, offset);
                    to_dlq.push((record, e.redeliveries + 1));
                    continue;
                }
                let e = state.deliver(&key, offset, now, r.invisible_ms, r.fifo);
                push_delivery(&mut lines, &key, offset, &e);
                batch.push((offset, record, e));
                redelivering = true;
            }
        }
        // Where new messages start; a new group starts at its init mode's end.
        let committed = b.offsets.query_offset(&r.group, &r.topic, qid);
        let mut next = match committed {
            Some(o) => o.max(0) as u64,
            None => {
                let init = match r.init_mode {
                    InitMode::Min => b.store.min_offset(&r.topic, qid),
                    InitMode::Max => max_offset,
                };
                b.offsets
                    .commit_offset(&r.group, &r.topic, qid, init as i64);
                init
            }
        };
        let min_offset = b.store.min_offset(&r.topic, qid);
        next = next.clamp(min_offset, max_offset.max(min_offset));
        let remaining = max - messages.len() - batch.len();
        // FIFO: nothing new while a batch of this queue is in flight or being redelivered.
        if remaining > 0 && !locked && !(r.fifo && redelivering) && next < max_offset {
            let result = b.store.get_messages_matching(
                &r.topic,
                qid,
                next,
                remaining,
                b.live.max_transfer_bytes(),
                &|tags_code| c.filter.matches(tags_code),
                record_filter.map(|_| &by_record as RecordFilter<'_>),
            );
            for (record, offset) in result.messages.iter().zip(&result.queue_offsets) {
                if state.get(&key, *offset).is_some() {
                    // Popped before a crash lost the committed offset: wait for its own time.
                    continue;
                }
                let e = state.deliver(&key, *offset, now, r.invisible_ms, r.fifo);
                push_delivery(&mut lines, &key, *offset, &e);
                batch.push((*offset, record.clone(), e));
            }
            if result.next_begin_offset > next {
                next = result.next_begin_offset;
                b.offsets
                    .commit_offset(&r.group, &r.topic, qid, next as i64);
            }
        }
        rest_num += max_offset.saturating_sub(next) as i64;
        if batch.is_empty() {
            continue;
        }
        let start = batch.iter().map(|(o, _, _)| *o).min().unwrap_or(0);
        sep(&mut start_info);
        start_info.push_str(&format!("{retry_flag} {qid} {start}"));
        sep(&mut offset_info);
        offset_info.push_str(&format!("{retry_flag} {qid} "));
        for (i, (offset, record, e)) in batch.into_iter().enumerate() {
            if i > 0 {
                offset_info.push(',');
            }
            offset_info.push_str(&offset.to_string());
            if r.fifo {
                sep(&mut order_info);
                order_info.push_str(&format!("{retry_flag} qo{qid}%{offset} {}", e.redeliveries));
            }
            messages.push(popped(
                b, record, qid, offset, start, revive_qid, retry_flag, e,
            ));
        }
    }
    if let Err(e) = journal.append(&lines, state) {
        warn!("writing the pop journal failed: {e}");
    }
    drop(t);
    for (record, reconsume) in to_dlq {
        if let Err(why) = send_to_dlq(b, &r.group, &record, reconsume) {
            warn!(group = %r.group, topic = %r.topic, "cannot move a message to the DLQ: {why}");
        }
    }
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    PopResult {
        status: if messages.is_empty() {
            PopStatus::NoMessage
        } else {
            PopStatus::Found
        },
        messages,
        pop_time_ms: now,
        invisible_ms: r.invisible_ms,
        revive_qid,
        rest_num,
        start_offset_info: non_empty(start_info),
        msg_offset_info: non_empty(offset_info),
        order_count_info: non_empty(order_info),
    }
}

fn sep(s: &mut String) {
    if !s.is_empty() {
        s.push(';');
    }
}

#[allow(clippy::too_many_arguments)]
fn popped(
    b: &BrokerInner,
    record: Bytes,
    queue_id: i32,
    offset: u64,
    start_offset: u64,
    revive_qid: i32,
    retry_flag: &str,
    e: InFlight,
) -> PoppedMessage {
    let (stored_reconsume, commit_log_offset, sys_flag) = match RecordView::parse(&record) {
        Ok(v) => (v.reconsume_times, v.physical_offset, v.sys_flag),
        Err(_) => (0, -1, 0),
    };
    let reconsume_times = stored_reconsume.saturating_add(e.redeliveries as i32);
    let record = if reconsume_times != stored_reconsume {
        let mut copy = BytesMut::from(&record[..]);
        let pos = reconsume_times_position(sys_flag);
        if let Some(slot) = copy.get_mut(pos..pos + 4) {
            slot.copy_from_slice(&reconsume_times.to_be_bytes());
        }
        copy.freeze()
    } else {
        record
    };
    let handle = ReceiptHandle {
        start_offset: start_offset as i64,
        pop_time_ms: e.pop_time_ms,
        invisible_ms: e.invisible_ms,
        revive_qid,
        retry_flag: retry_flag.to_owned(),
        broker_name: b.config.broker_name.clone(),
        queue_id,
        queue_offset: Some(offset as i64),
        commit_log_offset: Some(commit_log_offset),
    };
    PoppedMessage {
        record,
        queue_id,
        queue_offset: offset,
        commit_log_offset: commit_log_offset.max(0) as u64,
        reconsume_times,
        delivery_attempt: e.redeliveries + 1,
        pop_time_ms: e.pop_time_ms,
        invisible_ms: e.invisible_ms,
        receipt_handle: handle.encode(),
    }
}

/// Re-puts a message that used up its attempts to `%DLQ%<group>`.
fn send_to_dlq(
    b: &BrokerInner,
    group: &str,
    record: &Bytes,
    reconsume_times: u32,
) -> std::result::Result<(), String> {
    let (mut rec, _) = MessageRecord::decode_bytes(record).map_err(|e| e.to_string())?;
    let dlq = names::dlq_topic(group);
    b.topics
        .create_in_send_back(
            &dlq,
            names::DLQ_NUMS_PER_GROUP,
            perm::READ | perm::WRITE,
            false,
            0,
        )
        .map_err(|e| e.to_string())?;
    let mut props = rec.properties_map();
    if props.get(keys::RETRY_TOPIC).is_none() {
        props.insert(keys::RETRY_TOPIC, rec.topic.as_str());
    }
    if props.get(keys::ORIGIN_MESSAGE_ID).is_none() {
        if let Some(id) = props.uniq_key().map(str::to_owned) {
            props.insert(keys::ORIGIN_MESSAGE_ID, id);
        }
    }
    rec.version = MessageVersion::for_topic_len(dlq.len());
    rec.topic = dlq;
    rec.queue_id = 0;
    rec.reconsume_times = reconsume_times as i32;
    rec.store_host = b.store_host;
    rec.set_properties(&props);
    let mut buf = BytesMut::with_capacity(rec.encoded_len());
    rec.encode_into(&mut buf).map_err(|e| e.to_string())?;
    b.store.append(&mut buf).map_err(|e| e.to_string())?;
    Ok(())
}

/// The checks of an ack or change: topic, queue id (MESSAGE_ILLEGAL), offset within the queue
/// (NO_MESSAGE).
fn check_ack(b: &BrokerInner, topic: &str, queue_id: i32, offset: i64) -> Result<(), PopError> {
    let config = b.topics.select(topic).ok_or_else(|| {
        PopError::TopicNotExist(format!("topic[{topic}] not exist, apply first please!"))
    })?;
    if queue_id < 0 || queue_id >= config.read_queue_nums {
        return Err(PopError::MessageIllegal(format!(
            "queueId{queue_id} is illegal, topic:{topic} topicConfig.readQueueNums:{}",
            config.read_queue_nums
        )));
    }
    let min = b.store.min_offset(topic, queue_id) as i64;
    let max = b.store.max_offset(topic, queue_id) as i64;
    if offset < min || offset > max {
        return Err(PopError::NoMessage(format!(
            "offset is illegal, key:{topic}@{queue_id}, commit:{offset}, store:{min},{max}"
        )));
    }
    Ok(())
}

pub(crate) fn ack(
    b: &BrokerInner,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    h: &ReceiptHandle,
) -> Result<AckOutcome, PopError> {
    check_ack(b, topic, queue_id, offset)?;
    let key: QueueKey = (group.to_owned(), topic.to_owned(), queue_id);
    let offset = offset as u64;
    let mut t = lock(&b.pop.table);
    let Table { state, journal } = &mut *t;
    let outcome = state.ack(&key, offset, h.pop_time_ms, h.invisible_ms);
    if outcome == AckOutcome::Acked {
        let mut line = String::new();
        push_removal(&mut line, &key, offset);
        if let Err(e) = journal.append(&line, state) {
            warn!("writing the pop journal failed: {e}");
        }
    }
    drop(t);
    // A FIFO queue may be unlocked now.
    b.pop.notify_arrival(topic);
    Ok(outcome)
}

pub(crate) fn change_invisible(
    b: &BrokerInner,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    h: &ReceiptHandle,
    invisible_ms: i64,
) -> Result<ChangedInvisible, PopError> {
    check_ack(b, topic, queue_id, offset)?;
    let key: QueueKey = (group.to_owned(), topic.to_owned(), queue_id);
    let offset_u = offset as u64;
    let now = now_ms();
    let mut t = lock(&b.pop.table);
    let Table { state, journal } = &mut *t;
    let e = state
        .change_invisible(
            &key,
            offset_u,
            h.pop_time_ms,
            h.invisible_ms,
            now,
            invisible_ms.max(1),
        )
        .map_err(|why| {
            PopError::NoMessage(match why {
                AckOutcome::Stale => format!(
                    "the receipt handle of {topic}@{queue_id}:{offset} is stale: the message was redelivered or its invisible time changed"
                ),
                _ => format!("no message in flight at {topic}@{queue_id}:{offset} (acked already?)"),
            })
        })?;
    let mut line = String::new();
    push_delivery(&mut line, &key, offset_u, &e);
    if let Err(err) = journal.append(&line, state) {
        warn!("writing the pop journal failed: {err}");
    }
    drop(t);
    b.pop.notify_arrival(topic);
    let mut new = h.clone();
    new.pop_time_ms = e.pop_time_ms;
    new.invisible_ms = e.invisible_ms;
    if new.queue_offset.is_none() {
        new.queue_offset = Some(offset);
    }
    Ok(ChangedInvisible {
        pop_time_ms: e.pop_time_ms,
        invisible_ms: e.invisible_ms,
        revive_qid: h.revive_qid,
        receipt_handle: new.encode(),
    })
}

/// A random number for queue selection, without a PRNG dependency.
fn random_u32() -> u32 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u32(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 16) as u32
}

/// After a crash the committed pop offsets (flushed periodically) may be behind messages the
/// journal shows in flight; move them past those so new pops do not deliver them early.
pub(crate) fn raise_pop_offsets(b: &BrokerInner) {
    for ((group, topic, qid), max) in b.pop.max_in_flight_offsets() {
        let committed = b.offsets.query_offset(&group, &topic, qid).unwrap_or(-1);
        if committed <= max as i64 {
            b.offsets.commit_offset(&group, &topic, qid, max as i64 + 1);
        }
    }
}
