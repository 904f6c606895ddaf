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
    /// Sync flush only: how far ahead of the writer the flusher turns the segment's preallocated
    /// blocks into written zeros between group commits, so most of them need no metadata write
    /// (see `warm.rs`). 0 switches it off (the writer then prefaults for itself).
    pub commitlog_warm_ahead_bytes: u64,
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
    /// Hours of the day (0-23, the machine's local time zone) when expired segments are deleted
    /// (`deleteWhen`: "04", or several as "04;16"); see [`parse_delete_when`].
    pub delete_when_hours: Vec<u32>,
    /// How often the cleaner looks for expired segments.
    pub clean_interval_ms: u64,
    /// Above this disk use expired segments are deleted at any hour (`diskMaxUsedSpaceRatio`), percent.
    pub disk_clean_ratio_percent: u8,
    /// Above this disk use the oldest segments are deleted even if not expired, percent.
    pub disk_force_clean_ratio_percent: u8,
    /// Above this disk use appends are refused, percent.
    pub disk_deny_write_ratio_percent: u8,
    /// The delay of each delay level (`messageDelayLevel`); dispatch needs it for the tagsCode of
    /// `SCHEDULE_TOPIC_XXXX` entries (their delivery time).
    pub delay_levels: DelayLevels,
    /// Timer messages (`TIMER_DELIVER_MS` and friends) are accepted (`timerWheelEnable`).
    pub timer_wheel_enable: bool,
    /// Length of one timer tick (`timerPrecisionMs`).
    pub timer_precision_ms: u64,
    /// Longest accepted timer delay (`timerMaxDelaySec`).
    pub timer_max_delay_sec: u64,
    /// Slots of the timer wheel file, one per tick (RocketMQ: seven days of ticks).
    pub timer_wheel_slots: u64,
    /// Units for ticks this far past the cursor or more are rolled (`timerRollWindowSlot`); must be
    /// below `timer_wheel_slots`.
    pub timer_roll_window_slots: u64,
    /// Size of one timer log file (`mappedFileSizeTimerLog`), rounded down to whole units.
    pub timer_log_file_bytes: u64,
    /// The timer checkpoint is written this often when something changed.
    pub timer_flush_interval_ms: u64,
    /// Changed wheel slots kept in memory before a checkpoint is forced.
    pub timer_max_dirty_slots: usize,
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
            commitlog_warm_ahead_bytes: 32 * 1024 * 1024,
            flush_interval_ms: 500,
            flush_least_bytes: 16 * 1024,
            sync_flush_timeout_ms: 5_000,
            dispatch_flush_interval_ms: 1_000,
            max_message_body_bytes: 4 * 1024 * 1024,
            check_crc_on_recover: true,
            file_reserved_hours: 72,
            delete_when_hours: vec![4],
            clean_interval_ms: 10_000,
            disk_clean_ratio_percent: 75,
            disk_force_clean_ratio_percent: 85,
            disk_deny_write_ratio_percent: 90,
            delay_levels: DelayLevels::default(),
            timer_wheel_enable: true,
            timer_precision_ms: 1_000,
            timer_max_delay_sec: 3 * 24 * 3600,
            timer_wheel_slots: 7 * 24 * 3600,
            timer_roll_window_slots: 2 * 24 * 3600,
            timer_log_file_bytes: 64 * 1024 * 1024,
            timer_flush_interval_ms: 1_000,
            timer_max_dirty_slots: 4096,
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
            // segments or refuse its writes. Tests drive retention through `run_retention` instead,
            // and the ratios are at 100% so that even the check at open never trips on a nearly
            // full machine; retention tests set RocketMQ's ratios themselves.
            clean_interval_ms: 3_600_000,
            disk_clean_ratio_percent: 100,
            disk_force_clean_ratio_percent: 100,
            disk_deny_write_ratio_percent: 100,
            timer_wheel_slots: 4096,
            timer_roll_window_slots: 1024,
            timer_log_file_bytes: 48 * 1024,
            timer_flush_interval_ms: 50,
            ..Self::default()
        }
    }

    /// Checks the settings that depend on each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.timer_precision_ms == 0 {
            return Err("timer_precision_ms must be positive".into());
        }
        if self.timer_roll_window_slots == 0
            || self.timer_roll_window_slots + 2 > self.timer_wheel_slots
        {
            return Err(format!(
                "timer_roll_window_slots ({}) must be positive and at least 2 below \
                 timer_wheel_slots ({})",
                self.timer_roll_window_slots, self.timer_wheel_slots
            ));
        }
        if self.timer_wheel_slots > u32::MAX as u64 {
            return Err("timer_wheel_slots must fit in 32 bits".into());
        }
        if self.timer_log_file_bytes < 48 {
            return Err("timer_log_file_bytes must hold at least one unit".into());
        }
        for (name, v) in [
            ("diskMaxUsedSpaceRatio", self.disk_clean_ratio_percent),
            (
                "diskSpaceCleanForciblyRatio",
                self.disk_force_clean_ratio_percent,
            ),
            (
                "diskSpaceWarningLevelRatio",
                self.disk_deny_write_ratio_percent,
            ),
        ] {
            if !(1..=100).contains(&v) {
                return Err(format!("{name} ({v}) must be a percentage from 1 to 100"));
            }
        }
        if self.delete_when_hours.is_empty() || self.delete_when_hours.iter().any(|&h| h > 23) {
            return Err(format!(
                "deleteWhen must name hours 0-23, not {:?}",
                self.delete_when_hours
            ));
        }
        if self.clean_interval_ms == 0 {
            return Err("cleanResourceInterval must be positive".into());
        }
        Ok(())
    }
}

/// Parses RocketMQ's `deleteWhen`: hours of the day (0-23) separated by `;`, e.g. `"04"` or
/// `"04;16"`.
pub fn parse_delete_when(text: &str) -> Result<Vec<u32>, String> {
    let mut hours = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u32>() {
            Ok(h) if h < 24 => hours.push(h),
            _ => {
                return Err(format!(
                    "bad hour {part:?} in deleteWhen {text:?}: expected hours 0-23 separated by ';'"
                ))
            }
        }
    }
    if hours.is_empty() {
        return Err(format!("no hour in deleteWhen {text:?}"));
    }
    Ok(hours)
}

/// The delay of each level, RocketMQ's `messageDelayLevel`: level 1 is the first entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayLevels {
    delays_ms: Vec<u64>,
}

/// RocketMQ's default `messageDelayLevel`.
pub const DEFAULT_MESSAGE_DELAY_LEVEL: &str =
    "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

impl Default for DelayLevels {
    fn default() -> Self {
        // The default string is known good; an empty table is the fallback that cannot happen.
        DelayLevels::parse(DEFAULT_MESSAGE_DELAY_LEVEL).unwrap_or(DelayLevels {
            delays_ms: Vec::new(),
        })
    }
}

impl DelayLevels {
    /// Parses `"1s 5s 10m 2h 1d"`: durations separated by spaces, each a whole number with unit
    /// `s`, `m`, `h` or `d`.
    pub fn parse(text: &str) -> Result<DelayLevels, String> {
        let mut delays_ms = Vec::new();
        for token in text.split_whitespace() {
            let bad =
                || format!("bad delay level {token:?} in {text:?}: expected e.g. 5s, 2m, 1h, 1d");
            let (num, unit) = token.split_at(token.len().saturating_sub(1));
            let unit_ms: u64 = match unit {
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(bad()),
            };
            let n: u64 = num.parse().map_err(|_| bad())?;
            delays_ms.push(n.checked_mul(unit_ms).ok_or_else(bad)?);
        }
        if delays_ms.is_empty() {
            return Err(format!("no delay level in {text:?}"));
        }
        Ok(DelayLevels { delays_ms })
    }

    /// The highest level.
    pub fn max_level(&self) -> i32 {
        self.delays_ms.len() as i32
    }

    /// The delay of `level` (1-based); `None` outside 1..=max.
    pub fn delay_ms(&self, level: i32) -> Option<u64> {
        let i = usize::try_from(level).ok()?.checked_sub(1)?;
        self.delays_ms.get(i).copied()
    }

    /// Delivery time of a record stored at `store_timestamp_ms` with `DELAY` = `level` (clamped to
    /// the highest level); `None` for a level below 1 (not a delayed record).
    pub fn deliver_timestamp_ms(&self, level: i32, store_timestamp_ms: i64) -> Option<i64> {
        if level < 1 {
            return None;
        }
        let delay = self.delay_ms(level.min(self.max_level())).unwrap_or(1_000);
        Some(store_timestamp_ms.saturating_add(delay as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_delay_levels_are_rocketmqs_eighteen() {
        let d = DelayLevels::default();
        assert_eq!(d.max_level(), 18);
        assert_eq!(d.delay_ms(1), Some(1_000));
        assert_eq!(d.delay_ms(5), Some(60_000));
        assert_eq!(d.delay_ms(18), Some(7_200_000));
        assert_eq!(d.delay_ms(0), None);
        assert_eq!(d.delay_ms(19), None);
        assert_eq!(d.deliver_timestamp_ms(3, 1_000), Some(11_000));
        // Above the highest level: clamped to it.
        assert_eq!(d.deliver_timestamp_ms(40, 0), Some(7_200_000));
        assert_eq!(d.deliver_timestamp_ms(0, 5), None);
        assert_eq!(d.deliver_timestamp_ms(-1, 5), None);
    }

    #[test]
    fn custom_delay_levels_parse_and_bad_ones_are_refused() {
        let d = DelayLevels::parse(" 1s  2s 1d ").unwrap();
        assert_eq!(d.max_level(), 3);
        assert_eq!(d.delay_ms(3), Some(86_400_000));
        for bad in ["", "1x", "s", "-1s", "1.5s", "1s 2"] {
            assert!(DelayLevels::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timer_settings_are_checked_together() {
        assert!(StoreConfig::default().validate().is_ok());
        assert!(StoreConfig::for_tests("/tmp/x").validate().is_ok());
        let mut c = StoreConfig::default();
        c.timer_roll_window_slots = c.timer_wheel_slots;
        assert!(c.validate().is_err());
        c = StoreConfig::default();
        c.timer_precision_ms = 0;
        assert!(c.validate().is_err());
    }
}
