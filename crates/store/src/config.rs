//! Every tunable of the store in one place, with RocketMQ's defaults and unit-suffixed names.

use std::path::PathBuf;

/// When an append is acknowledged: RocketMQ's `flushDiskType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushDiskType {
    /// Acknowledge once the record is in the page cache; a flusher makes it durable shortly after.
    #[default]
    Async,
    /// Acknowledge only after an fdatasync that covers the record (shared by concurrent writers).
    Sync,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Root folder: commitlog/, consumequeue/, index/, checkpoint, abort, lock.
    pub root_dir: PathBuf,
    /// Size of one CommitLog segment (`mappedFileSizeCommitLog`).
    pub commitlog_segment_bytes: u64,
    /// Entries per consume-queue file (`mappedFileSizeConsumeQueue` / 20).
    pub consume_queue_entries_per_file: u64,
    /// Hash slots per index file (`maxHashSlotNum`).
    pub index_slots: u32,
    /// Entries per index file (`maxIndexNum`).
    pub index_entries: u32,
    pub flush_disk_type: FlushDiskType,
    /// Async flush period (`flushIntervalCommitLog`).
    pub flush_interval_ms: u64,
    /// Async flush starts early once this much is dirty (`flushCommitLogLeastPages` x 4 KiB).
    pub flush_least_bytes: u64,
    /// How long a sync-flush append waits before answering FLUSH_DISK_TIMEOUT (`syncFlushTimeout`).
    pub sync_flush_timeout_ms: u64,
    /// Consume queues and index are flushed, then the checkpoint written, this often.
    pub dispatch_flush_interval_ms: u64,
    /// Largest message body accepted (`maxMessageSize`).
    pub max_message_body_bytes: usize,
    /// Verify body CRCs while scanning the log at recovery (`checkCRCOnRecover`).
    pub check_crc_on_recover: bool,
    /// Segments whose newest record is older than this are deleted (`fileReservedTime`).
    pub file_reserved_hours: u64,
    /// Hour of the day (local clock of the machine, 0-23) when expired segments are deleted (`deleteWhen`).
    pub delete_when_hour: u32,
    /// How often the cleaner looks for expired segments.
    pub clean_interval_ms: u64,
    /// Above this disk use expired segments are deleted at any hour (`diskMaxUsedSpaceRatio`), percent.
    pub disk_clean_ratio_percent: u8,
    /// Above this disk use the oldest segments are deleted even if not expired, percent.
    pub disk_force_clean_ratio_percent: u8,
    /// Above this disk use appends are refused, percent.
    pub disk_deny_write_ratio_percent: u8,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            root_dir: PathBuf::from("./data/store"),
            commitlog_segment_bytes: 1024 * 1024 * 1024,
            consume_queue_entries_per_file: 300_000,
            index_slots: 5_000_000,
            index_entries: 20_000_000,
            flush_disk_type: FlushDiskType::Async,
            flush_interval_ms: 500,
            flush_least_bytes: 16 * 1024,
            sync_flush_timeout_ms: 5_000,
            dispatch_flush_interval_ms: 1_000,
            max_message_body_bytes: 4 * 1024 * 1024,
            check_crc_on_recover: true,
            file_reserved_hours: 72,
            delete_when_hour: 4,
            clean_interval_ms: 10_000,
            disk_clean_ratio_percent: 75,
            disk_force_clean_ratio_percent: 85,
            disk_deny_write_ratio_percent: 90,
        }
    }
}

impl StoreConfig {
    /// A small configuration for tests: tiny segments so that rollover and retention are exercised.
    pub fn for_tests(root_dir: impl Into<PathBuf>) -> Self {
        Self {
            root_dir: root_dir.into(),
            commitlog_segment_bytes: 64 * 1024,
            consume_queue_entries_per_file: 64,
            index_slots: 64,
            index_entries: 256,
            flush_interval_ms: 50,
            dispatch_flush_interval_ms: 50,
            // The cleaner measures the real disk: on a busy machine it would delete a test's
            // segments or refuse its writes. Tests drive retention through `run_retention` instead.
            clean_interval_ms: 3_600_000,
            ..Self::default()
        }
    }
}
