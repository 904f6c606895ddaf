//! Delay levels (RocketMQ's `ScheduleMessageService`) and the put-time rewrite of delayed and timer
//! messages (`HookUtils.handleScheduleMessage`).
//!
//! [`handle_schedule_message`] sends a message with `DELAY` > 0 to `SCHEDULE_TOPIC_XXXX` (queue
//! level - 1) and a timer message to `rmq_sys_wheel_timer`. The schedule service walks each level's
//! queue (its consume-queue tagsCode is the delivery time, computed by the store) and re-puts due
//! messages to their real topic. Its per-level offsets live in `config/delayOffset.json`; crash
//! safety (no loss, no duplicate) is described in docs/storage-format.md, "Delay levels".

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use apogee_protocol::body::{DataVersion, JsonBody};
use apogee_protocol::codes::response_code::{MESSAGE_ILLEGAL, SYSTEM_ERROR};
use apogee_protocol::message::properties::keys;
use apogee_protocol::message::{MessageProperties, RecordView, TransactionType};
use apogee_protocol::RemotingCommand;
use apogee_store::{DelayLevels, MessageStore, StoreConfig};
use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};

use crate::error::{BrokerError, Result};
use crate::manager::{lock, now_ms};
use crate::names::{SCHEDULE_TOPIC, TIMER_TOPIC, TRANS_HALF_TOPIC};
use crate::processor::respond;
use crate::reput::{already_reput, encode_reput};
use crate::worker::Worker;

/// How often a level's queue is looked at while nothing is due (`DELAY_FOR_A_WHILE`).
const POLL_MS: u64 = 100;
/// Back-off after a failed re-put (`DELAY_FOR_A_PERIOD`).
const BACKOFF_MS: i64 = 10_000;
/// Re-puts per level and step: a long backlog does not starve the other levels.
const MAX_PER_STEP: usize = 1024;

/// The `DELAY` level of a message (0 when absent or not a number, as RocketMQ reads it).
pub(crate) fn delay_level(props: &MessageProperties) -> i32 {
    props
        .get(keys::DELAY)
        .and_then(|d| d.trim().parse().ok())
        .unwrap_or(0)
}

/// `HookUtils.handleScheduleMessage`: rewrites a non-transactional (or committed) message with a
/// delay level to `SCHEDULE_TOPIC_XXXX`, or with a future timer to `rmq_sys_wheel_timer`; the
/// level wins over timer properties. `Err` is the response to send (MESSAGE_ILLEGAL for a bad or
/// too long timer, SYSTEM_ERROR when timers are disabled).
pub(crate) fn handle_schedule_message(
    cfg: &StoreConfig,
    props: &mut MessageProperties,
    topic: &mut String,
    queue_id: &mut i32,
    sys_flag: i32,
    now_ms: i64,
) -> std::result::Result<(), RemotingCommand> {
    if !matches!(
        TransactionType::from_sys_flag(sys_flag),
        TransactionType::NotType | TransactionType::Commit
    ) {
        return Ok(());
    }
    if topic.as_str() != TIMER_TOPIC && is_timer_message(props) {
        if !cfg.timer_wheel_enable {
            return Err(respond(
                SYSTEM_ERROR,
                "accurate timer message is not enabled, timerWheelEnable is false",
            ));
        }
        transform_timer_message(cfg, props, topic, queue_id, now_ms)?;
    }
    let level = delay_level(props);
    if level > 0 {
        let level = level.min(cfg.delay_levels.max_level());
        props.insert(keys::DELAY, level.to_string());
        props.insert(keys::REAL_TOPIC, topic.as_str());
        props.insert(keys::REAL_QID, queue_id.to_string());
        *topic = SCHEDULE_TOPIC.to_owned();
        *queue_id = level - 1;
    }
    Ok(())
}

/// `HookUtils.checkIfTimerMessage`: with a delay level the timer properties are dropped (the level
/// wins); a message already through the timer (`TIMER_OUT_MS`) is not a timer message again.
fn is_timer_message(props: &mut MessageProperties) -> bool {
    if delay_level(props) > 0 {
        props.remove(keys::TIMER_DELIVER_MS);
        props.remove(keys::TIMER_DELAY_SEC);
        props.remove(keys::TIMER_DELAY_MS);
        return false;
    }
    if props.contains_key(keys::TIMER_OUT_MS) {
        return false;
    }
    props.contains_key(keys::TIMER_DELIVER_MS)
        || props.contains_key(keys::TIMER_DELAY_MS)
        || props.contains_key(keys::TIMER_DELAY_SEC)
}

fn timer_illegal(cfg: &StoreConfig) -> RemotingCommand {
    respond(
        MESSAGE_ILLEGAL,
        format!(
            "timer message illegal, the delay time should not be bigger than the max delay {}ms; \
             or if set del msg, the delay time should be bigger than the current time",
            cfg.timer_max_delay_sec.saturating_mul(1000)
        ),
    )
}

/// Rounds a delivery time to the timer precision as RocketMQ does: down to a multiple, and an
/// exact multiple one tick earlier (the tick is delivered at its end).
pub(crate) fn round_deliver_ms(deliver_ms: i64, precision_ms: i64) -> i64 {
    if deliver_ms % precision_ms == 0 {
        deliver_ms - precision_ms
    } else {
        deliver_ms.div_euclid(precision_ms) * precision_ms
    }
}

/// `HookUtils.transformTimerMessage`.
fn transform_timer_message(
    cfg: &StoreConfig,
    props: &mut MessageProperties,
    topic: &mut String,
    queue_id: &mut i32,
    now_ms: i64,
) -> std::result::Result<(), RemotingCommand> {
    let parse = |k: &str| props.get(k).map(|v| v.trim().parse::<i64>());
    let deliver_ms = if let Some(sec) = parse(keys::TIMER_DELAY_SEC) {
        sec.ok()
            .and_then(|s| s.checked_mul(1000))
            .and_then(|ms| now_ms.checked_add(ms))
    } else if let Some(ms) = parse(keys::TIMER_DELAY_MS) {
        ms.ok().and_then(|ms| now_ms.checked_add(ms))
    } else {
        parse(keys::TIMER_DELIVER_MS).and_then(|r| r.ok())
    };
    let Some(deliver_ms) = deliver_ms else {
        return Err(timer_illegal(cfg));
    };
    if deliver_ms > now_ms {
        let max_ms = cfg.timer_max_delay_sec.saturating_mul(1000);
        if (deliver_ms - now_ms) as u64 > max_ms {
            return Err(timer_illegal(cfg));
        }
        let out_ms = round_deliver_ms(deliver_ms, cfg.timer_precision_ms as i64);
        props.insert(keys::TIMER_OUT_MS, out_ms.to_string());
        props.insert(keys::REAL_TOPIC, topic.as_str());
        props.insert(keys::REAL_QID, queue_id.to_string());
        *topic = TIMER_TOPIC.to_owned();
        *queue_id = 0;
    } else if props.contains_key(keys::TIMER_DEL_UNIQKEY) {
        return Err(timer_illegal(cfg));
    }
    Ok(())
}

/// `config/delayOffset.json`: RocketMQ's `DelayOffsetSerializeWrapper`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DelayOffsetSerializeWrapper {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_version: Option<DataVersion>,
    /// Level -> the next offset of its queue to deliver.
    pub offset_table: BTreeMap<i32, i64>,
}

impl JsonBody for DelayOffsetSerializeWrapper {}

/// The delivery state, driven one step at a time (by the service's thread, or by a test).
pub(crate) struct ScheduleCore {
    store: Arc<MessageStore>,
    levels: DelayLevels,
    path: PathBuf,
    /// Level -> next offset to deliver.
    offsets: BTreeMap<i32, i64>,
    data_version: DataVersion,
    /// The table changed since it was last written.
    dirty: bool,
    /// End of the newest re-put in the CommitLog.
    reput_end: u64,
    /// A snapshot waiting for its re-puts to become durable before it is written.
    candidate: Option<(BTreeMap<i32, i64>, u64)>,
    persist_interval_ms: i64,
    last_persist_ms: i64,
    /// Entries due at or before this moment may have been delivered before the start.
    started_ms: i64,
    /// CommitLog end when the service started.
    start_log_end: u64,
    /// Level -> no attempt before this time (after a failed re-put).
    backoff_until: BTreeMap<i32, i64>,
}

impl ScheduleCore {
    pub fn load(
        store: Arc<MessageStore>,
        config_dir: PathBuf,
        persist_interval_ms: u64,
    ) -> Result<ScheduleCore> {
        let path = config_dir.join("delayOffset.json");
        let saved = crate::persist::read_json::<DelayOffsetSerializeWrapper>(&path)?;
        let levels = store.config().delay_levels.clone();
        let now = now_ms();
        let (offsets, data_version) = match saved {
            Some(w) => (
                w.offset_table,
                w.data_version.unwrap_or_else(|| DataVersion::new(now)),
            ),
            None => (BTreeMap::new(), DataVersion::new(now)),
        };
        Ok(ScheduleCore {
            start_log_end: store.commitlog_max_offset(),
            store,
            levels,
            path,
            offsets,
            data_version,
            dirty: false,
            reput_end: 0,
            candidate: None,
            persist_interval_ms: persist_interval_ms as i64,
            last_persist_ms: now,
            started_ms: now,
            backoff_until: BTreeMap::new(),
        })
    }

    /// Next offset to deliver of each level.
    pub fn offsets(&self) -> BTreeMap<i32, i64> {
        self.offsets.clone()
    }

    /// Delivers what is due at `now` on every level, writes the offsets when their interval has
    /// passed; returns when to run again.
    pub fn step(&mut self, now: i64) -> i64 {
        let mut next = now + POLL_MS as i64;
        for level in 1..=self.levels.max_level() {
            if self.backoff_until.get(&level).is_some_and(|t| *t > now) {
                continue;
            }
            match self.deliver_level(level, now) {
                Ok(Some(due)) => next = next.min(due),
                Ok(None) => {}
                Err(e) => {
                    warn!("delay level {level}: {e}; retrying in {BACKOFF_MS} ms");
                    self.backoff_until.insert(level, now + BACKOFF_MS);
                }
            }
        }
        if now - self.last_persist_ms >= self.persist_interval_ms {
            self.last_persist_ms = now;
            if let Err(e) = self.persist_durable() {
                error!("writing {} failed: {e}", self.path.display());
            }
        }
        next.max(now)
    }

    /// RocketMQ's `correctDeliverTimestamp`: a delivery time further ahead than the level's delay
    /// (the clock went back) counts as now.
    fn correct(&self, level: i32, deliver_ms: i64, now: i64) -> i64 {
        let delay = self.levels.delay_ms(level).unwrap_or(0) as i64;
        if deliver_ms > now.saturating_add(delay) {
            now
        } else {
            deliver_ms
        }
    }

    /// Re-puts the due head of one level's queue. `Ok(Some(t))`: the next entry is due at `t`
    /// (or there is more to do now).
    fn deliver_level(&mut self, level: i32, now: i64) -> std::result::Result<Option<i64>, String> {
        let queue_id = level - 1;
        let min = self.store.min_offset(SCHEDULE_TOPIC, queue_id);
        let max = self.store.max_offset(SCHEDULE_TOPIC, queue_id);
        let saved = self.offsets.get(&level).copied().unwrap_or(0).max(0) as u64;
        let mut off = saved.clamp(min, max.max(min));
        let mut result = Ok(None);
        let mut done = 0;
        while off < max {
            if done >= MAX_PER_STEP {
                result = Ok(Some(now));
                break;
            }
            let Some(e) = self.store.queue_entry(SCHEDULE_TOPIC, queue_id, off) else {
                off += 1;
                continue;
            };
            let deliver = self.correct(level, e.tags_code, now);
            if deliver > now {
                result = Ok(Some(deliver));
                break;
            }
            match self.deliver_one(e.commitlog_offset, deliver) {
                Ok(()) => {}
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
            off += 1;
            done += 1;
        }
        if self.offsets.get(&level).copied().unwrap_or(0) != off as i64 {
            self.offsets.insert(level, off as i64);
            self.dirty = true;
        }
        result
    }

    /// Re-puts the schedule record at `offset` (due at `deliver`) to its real topic, unless it
    /// was re-put before a restart. Records that cannot be delivered are skipped with a warning.
    fn deliver_one(&mut self, offset: u64, deliver: i64) -> std::result::Result<(), String> {
        let Some(rec) = self.store.message_at(offset) else {
            warn!("delay message at {offset} is gone from the log; skipped");
            return Ok(());
        };
        let v = match RecordView::parse(&rec) {
            Ok(v) => v,
            Err(e) => {
                warn!("delay message at {offset} cannot be read ({e}); skipped");
                return Ok(());
            }
        };
        let mut props = v.properties_map();
        let real_topic = props.get(keys::REAL_TOPIC).map(str::to_owned);
        let real_qid = props
            .get(keys::REAL_QID)
            .and_then(|q| q.trim().parse::<i32>().ok());
        let (Some(topic), Some(queue_id)) = (real_topic, real_qid) else {
            warn!("delay message at {offset} has no REAL_TOPIC/REAL_QID; skipped");
            return Ok(());
        };
        if topic == TRANS_HALF_TOPIC {
            error!("delay message at {offset} is going to {topic}; discarded");
            return Ok(());
        }
        if deliver <= self.started_ms && offset < self.start_log_end {
            if let Some(uniq) = v.uniq_key() {
                if already_reput(&self.store, &topic, &uniq, offset, v.store_timestamp) {
                    debug!("delay message at {offset} was delivered before the restart");
                    return Ok(());
                }
            }
        }
        props.remove(keys::DELAY);
        props.remove(keys::TIMER_DELIVER_MS);
        props.remove(keys::TIMER_DELAY_SEC);
        let mut bytes = encode_reput(&v, offset, &topic, queue_id, props)?;
        let r = self
            .store
            .append(&mut bytes)
            .map_err(|e| format!("re-putting the message at {offset} to {topic} failed: {e}"))?;
        self.reput_end = self.reput_end.max(r.end_offset);
        Ok(())
    }

    /// Writes the offsets whose re-puts are durable (see the module doc): the current table when
    /// the log is flushed past the newest re-put, else the last snapshot that is.
    fn persist_durable(&mut self) -> Result<()> {
        let flushed = self.store.flushed_offset();
        if self.reput_end <= flushed {
            self.candidate = None;
            if self.dirty {
                self.dirty = false;
                let table = self.offsets.clone();
                self.write(table)?;
            }
            return Ok(());
        }
        if let Some((table, end)) = self.candidate.take() {
            if end > flushed {
                self.candidate = Some((table, end));
                return Ok(());
            }
            self.write(table)?;
        }
        self.candidate = Some((self.offsets.clone(), self.reput_end));
        Ok(())
    }

    fn write(&mut self, offset_table: BTreeMap<i32, i64>) -> Result<()> {
        self.data_version.next_version(now_ms(), 0);
        let w = DelayOffsetSerializeWrapper {
            data_version: Some(self.data_version),
            offset_table,
        };
        crate::persist::write_json(&self.path, &w)
    }

    /// At shutdown: waits (briefly) for the re-puts to be durable, then writes the offsets.
    pub fn persist_at_shutdown(&mut self) {
        if self.reput_end > self.store.flushed_offset() {
            let (tx, rx) = mpsc::sync_channel(1);
            self.store.wait_durable(
                self.reput_end,
                Box::new(move |ok| {
                    let _ = tx.send(ok);
                }),
            );
            let _ = rx.recv_timeout(Duration::from_secs(2));
        }
        if let Err(e) = self.persist_durable() {
            error!("writing {} failed: {e}", self.path.display());
        }
    }
}

/// The running schedule service.
pub(crate) struct ScheduleService {
    core: Arc<Mutex<ScheduleCore>>,
    worker: Worker,
}

impl ScheduleService {
    pub fn start(core: ScheduleCore) -> Result<ScheduleService> {
        info!(
            levels = core.levels.max_level(),
            "schedule service starting, delay offsets {:?}", core.offsets
        );
        let core = Arc::new(Mutex::new(core));
        let c = Arc::clone(&core);
        let worker = Worker::spawn("apogee-schedule", move || {
            let now = now_ms();
            let next = lock(&c).step(now);
            Duration::from_millis((next - now).clamp(1, POLL_MS as i64) as u64)
        })
        .map_err(|e| BrokerError::io("schedule service thread", e))?;
        Ok(ScheduleService { core, worker })
    }

    pub fn core(&self) -> &Arc<Mutex<ScheduleCore>> {
        &self.core
    }

    /// Stops delivering and writes the offsets.
    pub fn shutdown(mut self) {
        self.worker.stop();
        lock(&self.core).persist_at_shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> MessageProperties {
        pairs.iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn cfg() -> StoreConfig {
        StoreConfig::default()
    }

    fn run(
        p: &mut MessageProperties,
        sys_flag: i32,
        now: i64,
    ) -> std::result::Result<(String, i32), RemotingCommand> {
        let mut topic = "T".to_owned();
        let mut q = 3;
        handle_schedule_message(&cfg(), p, &mut topic, &mut q, sys_flag, now)?;
        Ok((topic, q))
    }

    #[test]
    fn a_delay_level_goes_to_its_schedule_queue_clamped_to_the_highest_level() {
        let mut p = props(&[("DELAY", "3")]);
        assert_eq!(run(&mut p, 0, 0).unwrap(), (SCHEDULE_TOPIC.into(), 2));
        assert_eq!(p.get("REAL_TOPIC"), Some("T"));
        assert_eq!(p.get("REAL_QID"), Some("3"));
        let mut p = props(&[("DELAY", "99")]);
        assert_eq!(run(&mut p, 0, 0).unwrap(), (SCHEDULE_TOPIC.into(), 17));
        assert_eq!(p.get("DELAY"), Some("18"));
        for d in ["0", "-1", "x"] {
            let mut p = props(&[("DELAY", d)]);
            assert_eq!(run(&mut p, 0, 0).unwrap(), ("T".into(), 3), "{d}");
        }
        // A prepared transaction message is left alone; a committed one is delayed.
        let mut p = props(&[("DELAY", "1")]);
        assert_eq!(run(&mut p, 0x4, 0).unwrap(), ("T".into(), 3));
        assert_eq!(run(&mut p, 0x8, 0).unwrap(), (SCHEDULE_TOPIC.into(), 0));
    }

    #[test]
    fn a_timer_goes_to_the_timer_topic_with_its_rounded_time() {
        let now = 1_700_000_000_300;
        let mut p = props(&[("TIMER_DELIVER_MS", "1700000005500")]);
        assert_eq!(run(&mut p, 0, now).unwrap(), (TIMER_TOPIC.into(), 0));
        assert_eq!(p.get("TIMER_OUT_MS"), Some("1700000005000"));
        assert_eq!(p.get("REAL_TOPIC"), Some("T"));
        assert_eq!(p.get("REAL_QID"), Some("3"));
        // An exact multiple is moved one tick earlier: the tick is delivered at its end.
        let mut p = props(&[("TIMER_DELIVER_MS", "1700000005000")]);
        run(&mut p, 0, now).unwrap();
        assert_eq!(p.get("TIMER_OUT_MS"), Some("1700000004000"));
        let mut p = props(&[("TIMER_DELAY_SEC", "10")]);
        run(&mut p, 0, now).unwrap();
        assert_eq!(p.get("TIMER_OUT_MS"), Some("1700000010000"));
        let mut p = props(&[("TIMER_DELAY_MS", "1500")]);
        run(&mut p, 0, now).unwrap();
        assert_eq!(p.get("TIMER_OUT_MS"), Some("1700000001000"));
    }

    #[test]
    fn timers_in_the_past_too_far_or_malformed_and_levels_winning() {
        let now = 1_700_000_000_000;
        // Past or now: an ordinary message.
        let mut p = props(&[("TIMER_DELIVER_MS", "1700000000000")]);
        assert_eq!(run(&mut p, 0, now).unwrap(), ("T".into(), 3));
        assert!(!p.contains_key("TIMER_OUT_MS"));
        // Exactly the max delay is accepted, one ms more is not.
        let max = 259_200_000i64;
        let mut p = props(&[("TIMER_DELIVER_MS", &(now + max).to_string())]);
        assert!(run(&mut p, 0, now).is_ok());
        let mut p = props(&[("TIMER_DELIVER_MS", &(now + max + 1).to_string())]);
        let err = run(&mut p, 0, now).unwrap_err();
        assert_eq!(err.code, MESSAGE_ILLEGAL);
        assert!(err.remark.unwrap().contains("259200000ms"));
        let mut p = props(&[("TIMER_DELAY_SEC", "soon")]);
        assert_eq!(run(&mut p, 0, now).unwrap_err().code, MESSAGE_ILLEGAL);
        // A delete marker for a time already past is refused.
        let mut p = props(&[("TIMER_DELIVER_MS", "5"), ("TIMER_DEL_UNIQKEY", "T+U")]);
        assert_eq!(run(&mut p, 0, now).unwrap_err().code, MESSAGE_ILLEGAL);
        // A level wins; the timer properties go.
        let mut p = props(&[("DELAY", "2"), ("TIMER_DELAY_SEC", "100000000")]);
        assert_eq!(run(&mut p, 0, now).unwrap(), (SCHEDULE_TOPIC.into(), 1));
        assert!(!p.contains_key("TIMER_DELAY_SEC"));
        // Already through the timer (a send-back of a delivered timer message): not again.
        let mut p = props(&[("TIMER_DELAY_SEC", "10"), ("TIMER_OUT_MS", "1")]);
        assert_eq!(run(&mut p, 0, now).unwrap(), ("T".into(), 3));
        // Disabled timers are refused.
        let mut c = cfg();
        c.timer_wheel_enable = false;
        let (mut topic, mut q) = ("T".to_owned(), 0);
        let mut p = props(&[("TIMER_DELAY_SEC", "10")]);
        let err = handle_schedule_message(&c, &mut p, &mut topic, &mut q, 0, now).unwrap_err();
        assert_eq!(err.code, SYSTEM_ERROR);
    }

    #[test]
    fn delay_offsets_file_has_rocketmqs_shape() {
        let w = DelayOffsetSerializeWrapper {
            data_version: Some(DataVersion {
                counter: 3,
                state_version: 0,
                timestamp: 1_700_000_000_000,
            }),
            offset_table: [(1, 12), (3, 40)].into_iter().collect(),
        };
        let text = String::from_utf8(w.encode().unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},"offsetTable":{1:12,3:40}}"#
        );
        assert_eq!(
            DelayOffsetSerializeWrapper::decode(text.as_bytes()).unwrap(),
            w
        );
        let old = DelayOffsetSerializeWrapper::decode(br#"{"offsetTable":{"2":7}}"#).unwrap();
        assert_eq!(old.offset_table.get(&2), Some(&7));
    }
}
