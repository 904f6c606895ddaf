//! `MessageStore`: the small API the broker drives (append, read from a queue offset, look up by key,
//! flush, "new data" notifications), over the CommitLog, consume queues and index.
//!
//! Appends are serialized by one mutex (the single writer); everything a record needs that does not
//! depend on its final position (parsing, validation) happens before the mutex is taken. Consume-queue
//! and index entries are written under the same mutex, so a record is readable through its queue the
//! moment it is published.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apogee_protocol::message::hash::tags_code;
use apogee_protocol::message::properties::{self, keys};
use apogee_protocol::message::record::{
    self, patch_physical_offset, patch_queue_offset, patch_store_timestamp, peek_record,
    RecordHead, RecordView,
};
use apogee_protocol::message::sysflag::TransactionType;
use bytes::Bytes;

use crate::checkpoint::{Checkpoint, CheckpointData};
use crate::commitlog::{CommitLog, ScanStep, WriterToken};
use crate::config::{FlushDiskType, StoreConfig};
use crate::consume_queue::{ConsumeQueue, CqEntry};
use crate::error::{Result, StoreError};
use crate::flush::{self, FlushCallback, FlushStats, Flusher};
use crate::index::{IndexMark, IndexService};
use crate::warm::Warmer;
use crate::SCHEDULE_TOPIC;

/// Called after every append with (topic, queueId, new max logical offset): the long-polling hook.
pub type AppendListener = Arc<dyn Fn(&str, i32, u64) + Send + Sync>;

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// CommitLog offset of each record, in order.
    pub physical_offsets: Vec<u64>,
    /// Logical offset of the first record in its queue (0 if the records are not dispatched, as
    /// prepared or rolled-back transaction records are not).
    pub queue_offset: u64,
    pub store_timestamp_ms: i64,
    /// End of the last record: durable once the flushed offset reaches it.
    pub end_offset: u64,
    pub wrote_bytes: u64,
}

/// RocketMQ's `GetMessageStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMessageStatus {
    Found,
    NoMatchedMessage,
    MessageWasRemoving,
    OffsetFoundNull,
    OffsetOverflowBadly,
    OffsetOverflowOne,
    OffsetTooSmall,
    NoMatchedLogicQueue,
    NoMessageInQueue,
}

#[derive(Debug, Clone)]
pub struct GetMessageResult {
    pub status: GetMessageStatus,
    pub next_begin_offset: u64,
    pub min_offset: u64,
    pub max_offset: u64,
    /// Records exactly as stored, without copying.
    pub messages: Vec<Bytes>,
    /// Logical offset of each returned record.
    pub queue_offsets: Vec<u64>,
    pub total_bytes: usize,
}

/// Which end of a run of equal timestamps `search_offset_by_timestamp` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BoundaryType {
    #[default]
    Lower,
    Upper,
}

/// A predicate on a stored record's bytes, for reads that filter beyond the tags code.
pub type RecordFilter<'a> = &'a dyn Fn(&[u8]) -> bool;

/// How many consume-queue entries one `get_messages` call scans at most while filtering.
const MAX_SCAN_ENTRIES: u64 = 800;

pub struct MessageStore {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct Inner {
    config: StoreConfig,
    commitlog: Arc<CommitLog>,
    queues: RwLock<HashMap<String, HashMap<i32, Arc<ConsumeQueue>>>>,
    index: IndexService,
    writer: Mutex<WriterToken>,
    flusher: Arc<Flusher>,
    checkpoint: Mutex<Checkpoint>,
    listener: RwLock<Option<AppendListener>>,
    last_store_timestamp_ms: AtomicI64,
    disk_full: AtomicBool,
    closed: AtomicBool,
    stop: (Mutex<bool>, Condvar),
    _lock_file: File,
}

/// What one record contributes to dispatch, found before the append mutex is taken.
struct Prepared {
    rel_pos: usize,
    size: u32,
    /// Length of PROPERTIES, the record's last field (indexing reads it without parsing again).
    properties_len: usize,
    tags_code: i64,
    /// `DELAY` of a `SCHEDULE_TOPIC_XXXX` record: its tagsCode is its delivery time, known only
    /// once the store timestamp is.
    delay_level: Option<i32>,
    dispatched: bool,
    indexed: bool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl MessageStore {
    /// Opens (or creates) the store at `config.root_dir`, recovering from a crash if the last run did
    /// not stop cleanly, and starts its flush and retention threads.
    pub fn open(config: StoreConfig) -> Result<MessageStore> {
        config.validate().map_err(StoreError::Config)?;
        let root = config.root_dir.clone();
        fs::create_dir_all(&root).map_err(|e| StoreError::io(root.display(), e))?;
        let lock_file = take_lock(&root)?;
        let abort_path = root.join("abort");
        let crashed = abort_path.exists();
        let (checkpoint, cp) = Checkpoint::open(&root.join("checkpoint"))
            .map_err(|e| StoreError::io(root.join("checkpoint").display(), e))?;

        let commitlog = Arc::new(CommitLog::new(
            &root.join("commitlog"),
            config.commitlog_segment_bytes,
        ));
        commitlog.load()?;
        let log_min = commitlog.min_offset();
        let log_end_bound = commitlog
            .segments()
            .last()
            .map(|s| s.end())
            .unwrap_or(log_min);
        // Every queue and index entry for records below `from` is durable; re-dispatch starts there.
        let from = cp
            .map(|c| c.dispatch_flushed_offset)
            .unwrap_or(log_min)
            .clamp(log_min, log_end_bound);
        // Records below `from` are dispatched, but the log there is re-read from the start of the
        // segment holding the last durable record: bytes below the checkpoint can still be torn (the
        // CommitLog's flushed offset may lag the queues') or damaged. That stretch only repairs queue
        // entries; the index is fed from `from` on.
        let durable = cp
            .map(|c| c.commitlog_flushed_offset.min(from))
            .unwrap_or(log_min)
            .max(log_min);
        let seg_bytes = config.commitlog_segment_bytes;
        let verify_from = if durable > log_min {
            ((durable - 1) / seg_bytes * seg_bytes).max(log_min)
        } else {
            log_min
        };
        if crashed {
            tracing::warn!(
                "store at {} did not stop cleanly; recovering from offset {from}",
                root.display()
            );
        }

        let index = IndexService::new(
            &root.join("index"),
            config.index_slots,
            config.index_entries,
        );
        let index_mark = cp.map(|c| IndexMark {
            file_offset: c.index_file_offset,
            count: c.index_count,
        });
        // Without a checkpoint the whole log is re-indexed, so all index files go.
        let index_intact = index.load(
            if from == log_min && cp.is_none() {
                None
            } else {
                index_mark
            },
            crashed,
        )?;
        if !index_intact {
            tracing::warn!(
                "index files named by the checkpoint are missing; re-indexing the whole log"
            );
            index.load(None, false)?;
        }

        let inner = Inner {
            flusher: Arc::new(Flusher::new(
                config.flush_disk_type,
                config.flush_interval_ms,
                config.flush_least_bytes,
                from,
            )),
            commitlog,
            queues: RwLock::new(HashMap::new()),
            index,
            writer: Mutex::new(WriterToken::new()),
            checkpoint: Mutex::new(checkpoint),
            listener: RwLock::new(None),
            last_store_timestamp_ms: AtomicI64::new(0),
            disk_full: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stop: (Mutex::new(false), Condvar::new()),
            _lock_file: lock_file,
            config,
        };
        let repair_from = inner.load_queues(from)?;
        if !index_intact {
            inner.reindex(log_min, from);
        }
        let end = inner.redispatch(verify_from.min(repair_from), from)?;
        if end < from {
            tracing::warn!("recovery: the log is damaged at {end}, below the checkpoint ({from})");
            inner.cut_queues_at(end)?;
        }
        // Also drops entries of records in segments that vanished (`from` was clamped to the log).
        inner.index.cut_from(end)?;
        inner.commitlog.truncate_to(end)?;
        // What was read back may sit only in the page cache of a process that died: make it durable
        // before counting it as flushed.
        use crate::flush::Flushable;
        inner
            .commitlog
            .sync_range(verify_from.min(repair_from).min(from), end)
            .map_err(|e| StoreError::io(inner.commitlog.dir().display(), e))?;
        inner.flusher.set_flushed(end);
        inner.write_checkpoint()?;

        let mut f =
            File::create(&abort_path).map_err(|e| StoreError::io(abort_path.display(), e))?;
        let _ = writeln!(f, "{}", std::process::id());
        f.sync_all()
            .map_err(|e| StoreError::io(abort_path.display(), e))?;
        sync_dir(&root);

        // Refuse writes from the start on a disk already over the limit, not from the first
        // cleaner run.
        if let Some(used) = disk_used_percent(&inner.config.root_dir) {
            inner.note_disk_use(used);
        }
        let inner = Arc::new(inner);
        let mut threads = Vec::new();
        threads.push(
            flush::spawn(inner.flusher.clone(), inner.commitlog.clone())
                .map_err(|e| StoreError::io("flush thread", e))?,
        );
        for (name, job) in [
            ("apogee-dispatch-flush", Job::DispatchFlush),
            ("apogee-clean", Job::Clean),
        ] {
            let inner = inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || inner.background(job))
                    .map_err(|e| StoreError::io(name, e))?,
            );
        }
        // Sync flush only: under async flush a warmer measured slower (its mapped pages cost TLB
        // shootdowns at writeback, and it competes with the writer for the second core).
        if inner.config.commitlog_warm_ahead_bytes > 0
            && inner.config.flush_disk_type == FlushDiskType::Sync
        {
            inner.commitlog.set_warmer(Warmer::new(
                inner.config.commitlog_warm_ahead_bytes,
                inner.config.commitlog_segment_bytes,
            ));
        }
        Ok(MessageStore {
            inner,
            threads: Mutex::new(threads),
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    pub fn set_append_listener(&self, listener: AppendListener) {
        *self
            .inner
            .listener
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    /// Appends one record, or a batch of records of one topic and queue, given in stored format
    /// (QUEUEOFFSET, PHYSICALOFFSET and STORETIMESTAMP are filled in here). Returns as soon as the
    /// records are readable; durability is [`MessageStore::wait_durable`]'s business.
    pub fn append(&self, records: &mut [u8]) -> Result<AppendResult> {
        self.inner.append(records)
    }

    /// Calls `cb(true)` once everything below `end_offset` is durable (at once under async flush
    /// when the caller does not need to wait: use [`MessageStore::flush_disk_type`] to decide).
    pub fn wait_durable(&self, end_offset: u64, cb: FlushCallback) {
        self.inner.flusher.wait_for(end_offset, cb);
    }

    /// Appends and, under sync flush, blocks until the records are durable (or the sync-flush
    /// timeout passes: `FlushTimeout`).
    pub fn append_blocking(&self, records: &mut [u8]) -> Result<AppendResult> {
        let res = self.append(records)?;
        if self.inner.config.flush_disk_type == FlushDiskType::Sync {
            let (tx, rx) = mpsc::sync_channel(1);
            self.wait_durable(
                res.end_offset,
                Box::new(move |ok| {
                    let _ = tx.send(ok);
                }),
            );
            let timeout = self.inner.config.sync_flush_timeout_ms;
            match rx.recv_timeout(Duration::from_millis(timeout)) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(StoreError::ServiceNotAvailable(
                        "commitlog flush failed".into(),
                    ))
                }
                Err(_) => return Err(StoreError::FlushTimeout(timeout)),
            }
        }
        Ok(res)
    }

    pub fn flush_disk_type(&self) -> FlushDiskType {
        self.inner.config.flush_disk_type
    }

    /// Every CommitLog byte below this offset is durable.
    pub fn flushed_offset(&self) -> u64 {
        self.inner.flusher.flushed_offset()
    }

    /// CommitLog flush rounds (fdatasync calls, one per segment touched) and the time they took.
    pub fn commitlog_flush_stats(&self) -> FlushStats {
        self.inner.flusher.stats()
    }

    /// Reads up to `max_count` records (and about `max_bytes`) from a queue, starting at logical
    /// `offset`, keeping those whose tags code passes `filter`.
    pub fn get_messages(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        max_count: usize,
        max_bytes: usize,
        filter: &dyn Fn(i64) -> bool,
    ) -> GetMessageResult {
        self.inner
            .get_messages(topic, queue_id, offset, max_count, max_bytes, filter, None)
    }

    /// Like [`MessageStore::get_messages`], with a second filter on the stored record itself
    /// (RocketMQ's `isMatchedByCommitLog`, used by SQL92 property filters). It sees each record
    /// whose tags code passed `tags_filter`, before the record counts against the limits; records
    /// it rejects are skipped like tag mismatches. Without it the read path is the tags-only one.
    #[allow(clippy::too_many_arguments)]
    pub fn get_messages_matching(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        max_count: usize,
        max_bytes: usize,
        tags_filter: &dyn Fn(i64) -> bool,
        record_filter: Option<RecordFilter<'_>>,
    ) -> GetMessageResult {
        self.inner.get_messages(
            topic,
            queue_id,
            offset,
            max_count,
            max_bytes,
            tags_filter,
            record_filter,
        )
    }

    pub fn max_offset(&self, topic: &str, queue_id: i32) -> u64 {
        self.inner
            .queue(topic, queue_id)
            .map(|q| q.max_offset())
            .unwrap_or(0)
    }

    pub fn min_offset(&self, topic: &str, queue_id: i32) -> u64 {
        self.inner
            .queue(topic, queue_id)
            .map(|q| q.min_offset())
            .unwrap_or(0)
    }

    pub fn commitlog_min_offset(&self) -> u64 {
        self.inner.commitlog.min_offset()
    }

    pub fn commitlog_max_offset(&self) -> u64 {
        self.inner.commitlog.max_offset()
    }

    /// The stored record at CommitLog `offset`.
    pub fn message_at(&self, offset: u64) -> Option<Bytes> {
        self.inner.message_at(offset)
    }

    /// The consume-queue entry at logical `offset` of a queue (`None` past its end or below its
    /// start). For `SCHEDULE_TOPIC_XXXX` the tagsCode is the delivery time.
    pub fn queue_entry(&self, topic: &str, queue_id: i32, offset: u64) -> Option<CqEntry> {
        self.inner.queue(topic, queue_id)?.get(offset)
    }

    /// The record at logical `offset` of a queue.
    pub fn message_at_queue_offset(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
    ) -> Option<Bytes> {
        let e = self.inner.queue(topic, queue_id)?.get(offset)?;
        self.inner
            .commitlog
            .read(e.commitlog_offset, e.size as usize)
    }

    /// Records of `topic` whose KEYS or UNIQ_KEY contain `key`, stored within the window, newest
    /// first.
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin_ms: i64,
        end_ms: i64,
    ) -> Vec<Bytes> {
        let full = format!("{topic}#{key}");
        let mut out = Vec::new();
        for off in self
            .inner
            .index
            .lookup(&full, max.saturating_mul(2), begin_ms, end_ms)
        {
            if out.len() >= max {
                break;
            }
            let Some(rec) = self.inner.message_at(off) else {
                continue;
            };
            let Ok(view) = RecordView::parse(&rec) else {
                continue;
            };
            if view.topic != topic.as_bytes() {
                continue;
            }
            let uniq = properties::find_str(view.properties, keys::UNIQ_KEY);
            let matches = uniq.as_deref() == Some(key)
                || properties::find_str(view.properties, keys::KEYS)
                    .map(|ks| properties::split_keys(&ks).any(|k| k == key))
                    .unwrap_or(false);
            if matches {
                out.push(rec);
            }
        }
        out
    }

    /// The logical offset in a queue closest to `timestamp_ms` by store time: with `Lower`, the first
    /// record stored at or after it; with `Upper`, the last record stored at or before it. Beyond the
    /// ends, the queue's min or max offset.
    pub fn search_offset_by_timestamp(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp_ms: i64,
        boundary: BoundaryType,
    ) -> u64 {
        let Some(q) = self.inner.queue(topic, queue_id) else {
            return 0;
        };
        let (min, max) = (q.min_offset(), q.max_offset());
        let time_at = |o: u64| -> Option<i64> {
            let e = q.get(o)?;
            self.inner.store_time_at(e.commitlog_offset)
        };
        match boundary {
            BoundaryType::Lower => {
                // First offset with time >= ts.
                let (mut lo, mut hi) = (min, max);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match time_at(mid) {
                        Some(t) if t < timestamp_ms => lo = mid + 1,
                        _ => hi = mid,
                    }
                }
                lo
            }
            BoundaryType::Upper => {
                // Last offset with time <= ts.
                let (mut lo, mut hi) = (min, max);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match time_at(mid) {
                        Some(t) if t <= timestamp_ms => lo = mid + 1,
                        _ => hi = mid,
                    }
                }
                if lo > min {
                    lo - 1
                } else {
                    min
                }
            }
        }
    }

    /// Store time of the oldest record still in a queue.
    pub fn earliest_message_time(&self, topic: &str, queue_id: i32) -> Option<i64> {
        let q = self.inner.queue(topic, queue_id)?;
        let e = q.get(q.min_offset())?;
        self.inner.store_time_at(e.commitlog_offset)
    }

    /// Every (topic, queueId) the store holds.
    pub fn queues(&self) -> Vec<(String, i32)> {
        let queues = self.inner.queues.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, i32)> = queues
            .iter()
            .flat_map(|(t, qs)| qs.keys().map(move |q| (t.clone(), *q)))
            .collect();
        out.sort();
        out
    }

    /// Removes a topic's queues from memory and disk. Its records stay in the CommitLog until
    /// retention removes their segments.
    pub fn delete_topic(&self, topic: &str) {
        let _w = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        let removed = self
            .inner
            .queues
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(topic);
        if let Some(qs) = removed {
            for q in qs.values() {
                q.destroy();
            }
        }
        let dir = self.inner.consume_queue_root().join(topic);
        let _ = fs::remove_dir_all(dir);
    }

    /// One retention pass with the given clock and disk use (the cleaner thread passes real ones).
    pub fn run_retention(&self, now: SystemTime, disk_used_percent: u8) -> usize {
        self.inner.run_retention(now, disk_used_percent, false)
    }

    /// Deletes the CommitLog segments past the reserved time now, whatever the hour (mqadmin
    /// `deleteExpiredCommitLog`), and trims queues and index to match. Returns the segments
    /// deleted.
    pub fn delete_expired_now(&self, now: SystemTime) -> usize {
        let used = disk_used_percent(&self.inner.config.root_dir).unwrap_or(0);
        self.inner.run_retention(now, used, true)
    }

    /// Deletes consume-queue files whose entries all point below the CommitLog's first offset
    /// and moves queue minimums past entries whose records are gone (mqadmin `cleanExpiredCQ`).
    /// Queue offsets keep their numbering.
    pub fn clean_expired_consume_queues(&self) {
        self.inner.trim_queues_and_index();
    }

    /// Deletes the queues of every topic for which `keep` says no (mqadmin `cleanUnusedTopic`:
    /// the broker keeps its configured and system topics). Records stay in the CommitLog until
    /// retention. Returns the topics removed, sorted.
    pub fn clean_unused_topics(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let topics: Vec<String> = self
            .inner
            .queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|t| !keep(t))
            .cloned()
            .collect();
        let mut removed = Vec::new();
        for t in topics {
            // Asked again at the moment of deletion: a topic created meanwhile stays.
            if !keep(&t) {
                self.delete_topic(&t);
                removed.push(t);
            }
        }
        removed.sort();
        removed
    }

    /// Whether appends are refused because the disk is (nearly) full.
    pub fn is_disk_full(&self) -> bool {
        self.inner.disk_full.load(Ordering::Acquire)
    }

    /// Stops the background threads, flushes everything, writes the checkpoint and removes the
    /// `abort` marker: the next open is a clean one.
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Wait for an append in progress; none can start after `closed`.
        drop(self.inner.writer.lock().unwrap_or_else(|p| p.into_inner()));
        {
            let (m, c) = &self.inner.stop;
            *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
            c.notify_all();
        }
        self.inner.flusher.shutdown();
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = t.join();
        }
        self.inner.write_checkpoint()?;
        let abort = self.inner.config.root_dir.join("abort");
        if let Err(e) = fs::remove_file(&abort) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(StoreError::io(abort.display(), e));
            }
        }
        sync_dir(&self.inner.config.root_dir);
        Ok(())
    }
}

impl Drop for MessageStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!("closing the store failed: {e}");
        }
    }
}

#[derive(Clone, Copy)]
enum Job {
    DispatchFlush,
    Clean,
}

impl Inner {
    fn consume_queue_root(&self) -> PathBuf {
        self.config.root_dir.join("consumequeue")
    }

    fn queue(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        self.queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)?
            .get(&queue_id)
            .cloned()
    }

    fn queue_or_create(&self, topic: &str, queue_id: i32) -> Arc<ConsumeQueue> {
        if let Some(q) = self.queue(topic, queue_id) {
            return q;
        }
        let mut queues = self.queues.write().unwrap_or_else(|p| p.into_inner());
        queues
            .entry(topic.to_string())
            .or_default()
            .entry(queue_id)
            .or_insert_with(|| {
                Arc::new(ConsumeQueue::new(
                    &self.consume_queue_root(),
                    topic,
                    queue_id,
                    self.config.consume_queue_entries_per_file,
                ))
            })
            .clone()
    }

    /// Loads every consume queue on disk, cut to entries for records below `cut`, and drops a last
    /// entry that does not match the record it points at (a torn entry). Returns where re-dispatch
    /// must start to restore the dropped entries (`u64::MAX` when none was dropped): the end of the
    /// last good entry's record, or the log's start for a queue left empty.
    fn load_queues(&self, cut: u64) -> Result<u64> {
        let mut repair_from = u64::MAX;
        let root = self.consume_queue_root();
        let topics = match fs::read_dir(&root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(repair_from),
            Err(e) => return Err(StoreError::io(root.display(), e)),
        };
        for t in topics.filter_map(|e| e.ok()) {
            let Some(topic) = t.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(qdirs) = fs::read_dir(t.path()) else {
                continue;
            };
            for qd in qdirs.filter_map(|e| e.ok()) {
                let Some(qid) = qd.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                let q = self.queue_or_create(&topic, qid);
                let loaded = q.load(cut)?;
                let mut max = loaded;
                while max > q.min_offset() {
                    let ok = q
                        .get(max - 1)
                        .map(|e| self.entry_matches(&e, &topic, qid, max - 1))
                        .unwrap_or(false);
                    if ok {
                        break;
                    }
                    max -= 1;
                    q.cut_to(max)?;
                }
                if max < loaded {
                    let good_end = max
                        .checked_sub(1)
                        .and_then(|last| q.get(last))
                        .map(|e| e.commitlog_offset + e.size as u64);
                    repair_from =
                        repair_from.min(good_end.unwrap_or_else(|| self.commitlog.min_offset()));
                }
            }
        }
        Ok(repair_from)
    }

    /// Every consume queue, snapshotted so that no lock is held while working on them.
    fn all_queues(&self) -> Vec<Arc<ConsumeQueue>> {
        self.queues
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flat_map(|qs| qs.values().cloned())
            .collect()
    }

    /// Recovery found the log damaged at `end`, below the checkpoint: drops every queue entry for a
    /// record at or past it.
    fn cut_queues_at(&self, end: u64) -> Result<()> {
        for q in self.all_queues() {
            let mut max = q.max_offset();
            while max > q.min_offset() && q.get(max - 1).is_some_and(|e| e.commitlog_offset >= end)
            {
                max -= 1;
            }
            if max < q.max_offset() {
                q.cut_to(max)?;
            }
        }
        Ok(())
    }

    fn entry_matches(&self, e: &CqEntry, topic: &str, queue_id: i32, logical: u64) -> bool {
        let Some(seg_bytes) = self.read_unpublished(e.commitlog_offset, e.size as usize) else {
            return false;
        };
        match RecordView::parse(&seg_bytes) {
            Ok(v) => {
                v.topic == topic.as_bytes()
                    && v.queue_id == queue_id
                    && v.queue_offset == logical as i64
                    && v.total_size() == e.size as usize
            }
            Err(_) => false,
        }
    }

    /// Reads log bytes during recovery, before the write position is set.
    fn read_unpublished(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let seg = self
            .commitlog
            .segments()
            .into_iter()
            .find(|s| s.start() <= offset && offset < s.end())?;
        let pos = (offset - seg.start()) as usize;
        if pos + len > seg.len() {
            return None;
        }
        // SAFETY: recovery, before the store accepts writes.
        Some(unsafe { seg.slice(pos, len) }.to_vec())
    }

    /// One recovery scan step: is the record at `pos` (`rest` runs to its segment's end) whole?
    fn scan_step(&self, rest: &[u8], pos: u64) -> ScanStep {
        match peek_record(rest) {
            Ok(RecordHead::Blank { .. }) => ScanStep::Blank,
            Ok(RecordHead::Message { .. }) => match RecordView::parse(rest) {
                Ok(v)
                    if (!self.config.check_crc_on_recover || v.body_crc_matches())
                        && v.physical_offset == pos as i64 =>
                {
                    ScanStep::Record(v.total_size() as u64)
                }
                _ => ScanStep::End,
            },
            Err(_) => ScanStep::End,
        }
    }

    /// Scans the log from `scan_from`, dispatching every valid record (records below `from` only to
    /// consume queues that lack them); returns the end of the last valid record.
    fn redispatch(&self, scan_from: u64, from: u64) -> Result<u64> {
        let mut last_ts = 0i64;
        let mut last_queue = None;
        let end = self.commitlog.scan(
            scan_from.min(from),
            |rest, pos| self.scan_step(rest, pos),
            |offset, bytes| {
                let v = RecordView::parse(bytes)
                    .map_err(|e| StoreError::Corrupt(format!("record at {offset}: {e}")))?;
                last_ts = last_ts.max(v.store_timestamp);
                self.dispatch_recovered(offset, &v, offset >= from, &mut last_queue)
            },
        )?;
        self.last_store_timestamp_ms
            .store(last_ts, Ordering::Release);
        Ok(end)
    }

    /// Re-indexes the records in `[from, to)` (the index was lost). Never cuts the log: a bad record
    /// only ends the re-indexing, with a warning.
    fn reindex(&self, from: u64, to: u64) {
        let result = self.commitlog.scan(
            from,
            |rest, pos| {
                if pos >= to {
                    ScanStep::End
                } else {
                    self.scan_step(rest, pos)
                }
            },
            |offset, bytes| {
                if let Ok(v) = RecordView::parse(bytes) {
                    if TransactionType::from_sys_flag(v.sys_flag) != TransactionType::Rollback {
                        let topic = String::from_utf8_lossy(v.topic);
                        self.index_record(&topic, v.properties, offset, v.store_timestamp);
                    }
                }
                Ok(())
            },
        );
        match result {
            Ok(end) if end < to => {
                tracing::warn!("re-indexing stopped at a damaged record at {end}, below {to}")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("re-indexing failed: {e}"),
        }
    }

    /// Dispatches one record met by the recovery scan (to the index too when `index`). `last`
    /// caches the queue of the previous record: records of one queue come in runs (batches), and
    /// the map lookup is not free.
    fn dispatch_recovered(
        &self,
        offset: u64,
        v: &RecordView<'_>,
        index: bool,
        last: &mut Option<Arc<ConsumeQueue>>,
    ) -> Result<()> {
        let topic = String::from_utf8_lossy(v.topic);
        let tx = TransactionType::from_sys_flag(v.sys_flag);
        if matches!(tx, TransactionType::NotType | TransactionType::Commit) {
            let q = match last.take() {
                Some(q) if q.queue_id() == v.queue_id && q.topic() == topic => q,
                _ => self.queue_or_create(&topic, v.queue_id),
            };
            *last = Some(Arc::clone(&q));
            let logical = v.queue_offset.max(0) as u64;
            if logical < q.max_offset() {
                // Already dispatched (idempotent re-dispatch); a different record there is not.
                if q.get(logical).is_some_and(|e| e.commitlog_offset != offset) {
                    tracing::warn!(
                        "recovery: {topic}/{} holds another record at offset {logical}; \
                         skipping the record at {offset}",
                        v.queue_id
                    );
                }
            } else {
                q.append(
                    logical,
                    CqEntry {
                        commitlog_offset: offset,
                        size: v.total_size() as u32,
                        tags_code: schedule_delay_level(&topic, v.properties)
                            .and_then(|l| {
                                self.config
                                    .delay_levels
                                    .deliver_timestamp_ms(l, v.store_timestamp)
                            })
                            .unwrap_or_else(|| {
                                tags_code(properties::find_str(v.properties, keys::TAGS).as_deref())
                            }),
                    },
                )?;
            }
        }
        if index && tx != TransactionType::Rollback {
            self.index_record(&topic, v.properties, offset, v.store_timestamp);
        }
        Ok(())
    }

    fn index_record(&self, topic: &str, props: &[u8], offset: u64, store_ts: i64) {
        let put = |key: &str| {
            if key.is_empty() {
                return;
            }
            if let Err(e) = self.index.put_topic_key(topic, key, offset, store_ts) {
                tracing::warn!("indexing {topic}#{key} failed: {e}");
            }
        };
        for (name, value) in properties::iter(props) {
            if name == keys::UNIQ_KEY.as_bytes() {
                put(&utf8_text(value));
            } else if name == keys::KEYS.as_bytes() {
                let value = utf8_text(value);
                for k in properties::split_keys(&value) {
                    put(k);
                }
            }
        }
    }

    fn append(&self, records: &mut [u8]) -> Result<AppendResult> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::ServiceNotAvailable("store is shut down".into()));
        }
        if self.disk_full.load(Ordering::Acquire) {
            return Err(StoreError::ServiceNotAvailable(format!(
                "disk full: the broker's disk use is over diskSpaceWarningLevelRatio ({}%)",
                self.config.disk_deny_write_ratio_percent
            )));
        }
        // Parse and validate before taking the writer mutex.
        let mut prepared = Vec::new();
        let mut topic: Option<(String, i32)> = None;
        let mut pos = 0usize;
        while pos < records.len() {
            let v = RecordView::parse(&records[pos..])
                .map_err(|e| StoreError::MessageIllegal(format!("record at byte {pos}: {e}")))?;
            if v.body.len() > self.config.max_message_body_bytes {
                return Err(StoreError::MessageIllegal(format!(
                    "body of {} bytes exceeds the limit of {} bytes",
                    v.body.len(),
                    self.config.max_message_body_bytes
                )));
            }
            let t = std::str::from_utf8(v.topic)
                .map_err(|_| StoreError::MessageIllegal("topic is not UTF-8".into()))?;
            match &topic {
                None => topic = Some((t.to_string(), v.queue_id)),
                Some((t0, q0)) if t0 == t && *q0 == v.queue_id => {}
                Some(_) => {
                    return Err(StoreError::MessageIllegal(
                        "a batch must hold records of one topic and queue".into(),
                    ))
                }
            }
            let tx = TransactionType::from_sys_flag(v.sys_flag);
            prepared.push(Prepared {
                rel_pos: pos,
                size: v.total_size() as u32,
                properties_len: v.properties.len(),
                tags_code: tags_code(properties::find_str(v.properties, keys::TAGS).as_deref()),
                delay_level: schedule_delay_level(t, v.properties),
                dispatched: matches!(tx, TransactionType::NotType | TransactionType::Commit),
                indexed: tx != TransactionType::Rollback,
            });
            pos += v.total_size();
        }
        let Some((topic, queue_id)) = topic else {
            return Err(StoreError::MessageIllegal("no record to append".into()));
        };

        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::ServiceNotAvailable("store is shut down".into()));
        }
        let q = self.queue_or_create(&topic, queue_id);
        let first_queue_offset = q.max_offset();
        let base = self.commitlog.reserve(&mut w, records.len() as u64)?;
        let ts = now_ms().max(self.last_store_timestamp_ms.load(Ordering::Acquire));
        let mut next_qo = first_queue_offset;
        for p in &prepared {
            let rec = &mut records[p.rel_pos..p.rel_pos + p.size as usize];
            let qo = if p.dispatched {
                next_qo += 1;
                next_qo - 1
            } else {
                0
            };
            patch(rec, qo, base + p.rel_pos as u64, ts)?;
        }
        self.commitlog.write(&mut w, base, records)?;
        let end = base + records.len() as u64;
        self.commitlog.publish(&mut w, end);
        self.last_store_timestamp_ms.store(ts, Ordering::Release);
        for (qo, p) in (first_queue_offset..).zip(prepared.iter().filter(|p| p.dispatched)) {
            q.append(
                qo,
                CqEntry {
                    commitlog_offset: base + p.rel_pos as u64,
                    size: p.size,
                    tags_code: p
                        .delay_level
                        .and_then(|l| self.config.delay_levels.deliver_timestamp_ms(l, ts))
                        .unwrap_or(p.tags_code),
                },
            )?;
        }
        for p in prepared.iter().filter(|p| p.indexed) {
            let end = p.rel_pos + p.size as usize;
            let props = &records[end - p.properties_len..end];
            self.index_record(&topic, props, base + p.rel_pos as u64, ts);
        }
        drop(w);

        self.flusher.note_appended(end);
        let new_max = q.max_offset();
        if new_max > first_queue_offset {
            if let Some(l) = self
                .listener
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                l(&topic, queue_id, new_max);
            }
        }
        Ok(AppendResult {
            physical_offsets: prepared.iter().map(|p| base + p.rel_pos as u64).collect(),
            queue_offset: if prepared.iter().any(|p| p.dispatched) {
                first_queue_offset
            } else {
                0
            },
            store_timestamp_ms: ts,
            end_offset: end,
            wrote_bytes: records.len() as u64,
        })
    }

    fn message_at(&self, offset: u64) -> Option<Bytes> {
        let size = self.commitlog.read_size(offset)? as usize;
        self.commitlog.read(offset, size)
    }

    fn store_time_at(&self, offset: u64) -> Option<i64> {
        let head = self.commitlog.read(offset, record::BORN_HOST_POSITION)?;
        let sys_flag = i32::from_be_bytes([head[36], head[37], head[38], head[39]]);
        let at = record::store_timestamp_position(sys_flag);
        let b = self.commitlog.read(offset + at as u64, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Some(i64::from_be_bytes(a))
    }

    #[allow(clippy::too_many_arguments)]
    fn get_messages(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        max_count: usize,
        max_bytes: usize,
        filter: &dyn Fn(i64) -> bool,
        record_filter: Option<RecordFilter<'_>>,
    ) -> GetMessageResult {
        let mut res = GetMessageResult {
            status: GetMessageStatus::NoMatchedLogicQueue,
            next_begin_offset: 0,
            min_offset: 0,
            max_offset: 0,
            messages: Vec::new(),
            queue_offsets: Vec::new(),
            total_bytes: 0,
        };
        let Some(q) = self.queue(topic, queue_id) else {
            return res;
        };
        let (min, max) = (q.min_offset(), q.max_offset());
        res.min_offset = min;
        res.max_offset = max;
        if max == 0 {
            res.status = GetMessageStatus::NoMessageInQueue;
            return res;
        }
        if offset < min {
            res.status = GetMessageStatus::OffsetTooSmall;
            res.next_begin_offset = min;
            return res;
        }
        if offset == max {
            res.status = GetMessageStatus::OffsetOverflowOne;
            res.next_begin_offset = offset;
            return res;
        }
        if offset > max {
            res.status = GetMessageStatus::OffsetOverflowBadly;
            res.next_begin_offset = max;
            return res;
        }
        let scan_end = max.min(offset + MAX_SCAN_ENTRIES.max(max_count as u64));
        let mut next = offset;
        let mut missing = false;
        while next < scan_end && res.messages.len() < max_count {
            let Some(e) = q.get(next) else {
                missing = true;
                break;
            };
            if e.size == i32::MAX as u32 {
                next += 1; // blank filler entry
                continue;
            }
            if !filter(e.tags_code) {
                next += 1;
                continue;
            }
            if !res.messages.is_empty() && res.total_bytes + e.size as usize > max_bytes {
                break;
            }
            match self.commitlog.read(e.commitlog_offset, e.size as usize) {
                Some(b) if record_filter.is_some_and(|keep| !keep(&b)) => {}
                Some(b) => {
                    res.total_bytes += b.len();
                    res.messages.push(b);
                    res.queue_offsets.push(next);
                }
                None => {
                    missing = true;
                    if e.commitlog_offset < self.commitlog.min_offset() {
                        // Retention removed it: skip ahead.
                        next += 1;
                        continue;
                    }
                    break;
                }
            }
            next += 1;
        }
        res.next_begin_offset = next;
        res.status = if !res.messages.is_empty() {
            GetMessageStatus::Found
        } else if missing && next == offset {
            GetMessageStatus::OffsetFoundNull
        } else if missing {
            GetMessageStatus::MessageWasRemoving
        } else {
            GetMessageStatus::NoMatchedMessage
        };
        res
    }

    fn write_checkpoint(&self) -> Result<()> {
        // A consistent cut: everything dispatched below `d` is in the queues and index.
        let (d, mark, ts) = {
            let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            (
                self.commitlog.max_offset(),
                self.index.mark(),
                self.last_store_timestamp_ms.load(Ordering::Acquire),
            )
        };
        for q in self.all_queues() {
            q.flush()?;
        }
        self.index.flush()?;
        let data = CheckpointData {
            commitlog_flushed_offset: self.flusher.flushed_offset(),
            dispatch_flushed_offset: d,
            physic_msg_timestamp_ms: ts.max(0) as u64,
            index_msg_timestamp_ms: ts.max(0) as u64,
            index_file_offset: mark.file_offset,
            index_count: mark.count,
        };
        self.checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(data)
            .map_err(|e| StoreError::io("checkpoint", e))
    }

    fn background(&self, job: Job) {
        let interval = Duration::from_millis(match job {
            Job::DispatchFlush => self.config.dispatch_flush_interval_ms,
            Job::Clean => self.config.clean_interval_ms,
        });
        loop {
            {
                let (m, c) = &self.stop;
                let stopped = m.lock().unwrap_or_else(|p| p.into_inner());
                let (stopped, _) = c
                    .wait_timeout_while(stopped, interval, |s| !*s)
                    .unwrap_or_else(|p| p.into_inner());
                if *stopped {
                    return;
                }
            }
            match job {
                Job::DispatchFlush => {
                    if let Err(e) = self.write_checkpoint() {
                        tracing::error!("flushing queues and checkpoint failed: {e}");
                    }
                }
                Job::Clean => {
                    let used = disk_used_percent(&self.config.root_dir).unwrap_or(0);
                    self.run_retention(SystemTime::now(), used, false);
                }
            }
        }
    }

    /// Turns writes off while disk use is at or over the deny ratio, and on again below it.
    fn note_disk_use(&self, used: u8) {
        let limit = self.config.disk_deny_write_ratio_percent;
        let full = used >= limit;
        if full != self.disk_full.swap(full, Ordering::AcqRel) {
            if full {
                tracing::error!(
                    "disk use {used}% is over diskSpaceWarningLevelRatio ({limit}%): refusing \
                     writes until space is freed or the ratio raised"
                );
            } else {
                tracing::info!("disk use {used}%: accepting writes again");
            }
        }
    }

    /// `manual`: expired segments go whatever the hour (an operator asked).
    fn run_retention(&self, now: SystemTime, used: u8, manual: bool) -> usize {
        let c = &self.config;
        self.note_disk_use(used);
        let reserve = Duration::from_secs(c.file_reserved_hours * 3600);
        let hour_ok = manual || c.delete_when_hours.contains(&local_hour(now));
        let mut deleted = 0;
        loop {
            let force = used >= c.disk_force_clean_ratio_percent;
            let by_time_ok = hour_ok || used >= c.disk_clean_ratio_percent;
            let did = self.commitlog.delete_oldest_if(|seg| {
                let expired = fs::metadata(seg.path())
                    .and_then(|m| m.modified())
                    .map(|m| now.duration_since(m).unwrap_or_default() >= reserve)
                    .unwrap_or(false);
                force || (expired && by_time_ok)
            });
            if !did {
                break;
            }
            deleted += 1;
            // One segment per pass when forced: disk use is re-measured next time.
            if force {
                break;
            }
        }
        if deleted > 0 {
            let min = self.trim_queues_and_index();
            tracing::info!(
                "retention removed {deleted} commitlog segment(s); log now starts at {min}"
            );
        }
        deleted
    }

    /// Drops consume-queue and index files (and queue minimums) below the CommitLog's first
    /// offset, which it returns.
    fn trim_queues_and_index(&self) -> u64 {
        let min = self.commitlog.min_offset();
        for q in self.all_queues() {
            q.delete_below(min);
        }
        self.index.delete_below(min);
        min
    }
}

/// The `DELAY` level of a record of `SCHEDULE_TOPIC_XXXX` (its queue entry carries the delivery
/// time); `None` for other topics.
fn schedule_delay_level(topic: &str, props: &[u8]) -> Option<i32> {
    if topic != SCHEDULE_TOPIC {
        return None;
    }
    properties::find_str(props, keys::DELAY)?
        .trim()
        .parse()
        .ok()
}

/// Text of a property value: valid UTF-8 (the usual case) is checked by the fast validator and
/// borrowed; anything else is decoded lossily, as Java would.
fn utf8_text(v: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(v) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(v),
    }
}

fn patch(rec: &mut [u8], queue_offset: u64, physical_offset: u64, ts: i64) -> Result<()> {
    let bad = |e: apogee_protocol::ProtocolError| StoreError::MessageIllegal(e.to_string());
    patch_queue_offset(rec, queue_offset as i64).map_err(bad)?;
    patch_physical_offset(rec, physical_offset as i64).map_err(bad)?;
    patch_store_timestamp(rec, ts).map_err(bad)?;
    Ok(())
}

fn take_lock(root: &Path) -> Result<File> {
    let path = root.join("lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(path.display(), e))?;
    // SAFETY: flock on an owned descriptor.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StoreError::Locked(root.display().to_string()));
    }
    Ok(f)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Percentage of the file system holding `dir` that is in use, as `df` reports it.
fn disk_used_percent(dir: &Path) -> Option<u8> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and an out-pointer to a zeroed struct.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    // As `df` counts it: blocks reserved for root are neither used nor available to us.
    let used = st.f_blocks.saturating_sub(st.f_bfree) as u128;
    let usable = used + st.f_bavail as u128;
    if usable == 0 {
        return None;
    }
    Some(((used * 100).div_ceil(usable)).min(100) as u8)
}

/// Hour of the day (0-23) of `now` in the machine's local time zone (`TZ`, else /etc/localtime),
/// as RocketMQ's `deleteWhen` is read; UTC if the C library cannot tell.
pub fn local_hour(now: SystemTime) -> u32 {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let utc = ((secs / 3600) % 24) as u32;
    let Ok(t) = libc::time_t::try_from(secs) else {
        return utc;
    };
    // SAFETY: localtime_r writes only into the zeroed struct we own; it reads the time-zone
    // database under its own lock.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return utc;
    }
    u32::try_from(tm.tm_hour)
        .ok()
        .filter(|h| *h < 24)
        .unwrap_or(utc)
}
