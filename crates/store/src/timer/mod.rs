//! The timer store: timer messages wait here, on disk, until their tick comes.
//!
//! A timer log of fixed-size units (one per timer record, chained per tick), a wheel file of one
//! slot per tick, and a checkpoint; placement of new units, replay after a crash and the walk of due
//! ticks. Synchronous and single-owner: the broker's timer service drives it from one thread.
//! Memory does not grow with the number of pending timers (units and slots are read from disk on
//! demand; only slots changed since the last checkpoint are held). Layouts and recovery:
//! docs/storage-format.md, "Timer".

mod format;
mod log;
mod wheel;

use std::path::Path;

pub use format::{
    Slot, TimerCheckpointData, TimerUnit, FLAG_DELETE, FLAG_ROLL, NO_POS, SLOT_BYTES, UNIT_BYTES,
};

use crate::config::StoreConfig;
use crate::error::{Result, StoreError};
use log::TimerLog;
use wheel::{TimerCheckpointFile, TimerWheel};

/// The timer settings of a [`StoreConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerConfig {
    pub precision_ms: u64,
    pub wheel_slots: u64,
    pub roll_window_slots: u64,
    pub log_file_bytes: u64,
    pub max_dirty_slots: usize,
}

impl TimerConfig {
    pub fn from_store(c: &StoreConfig) -> TimerConfig {
        TimerConfig {
            precision_ms: c.timer_precision_ms,
            wheel_slots: c.timer_wheel_slots,
            roll_window_slots: c.timer_roll_window_slots,
            log_file_bytes: c.timer_log_file_bytes,
            max_dirty_slots: c.timer_max_dirty_slots,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.precision_ms == 0 || self.precision_ms > u32::MAX as u64 {
            return Err(StoreError::Config(format!(
                "timer precision {} ms is out of range",
                self.precision_ms
            )));
        }
        if self.wheel_slots > u32::MAX as u64
            || self.roll_window_slots == 0
            || self.roll_window_slots + 2 > self.wheel_slots
        {
            return Err(StoreError::Config(format!(
                "timer roll window ({}) must be positive and at least 2 below the wheel's {} slots",
                self.roll_window_slots, self.wheel_slots
            )));
        }
        Ok(())
    }
}

/// Where [`TimerStore::add`] put a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub pos: u64,
    pub tick: i64,
    /// The record is due beyond the roll window: when this tick comes it goes back to the timer
    /// topic instead of being delivered.
    pub rolled: bool,
}

/// What [`TimerStore::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovered {
    /// A checkpoint was found (otherwise the store starts from the log's first unit).
    pub from_checkpoint: bool,
    /// Units written after the checkpoint and linked into the wheel again.
    pub replayed_units: u64,
    /// Where the log's valid units ended.
    pub log_end: u64,
}

pub struct TimerStore {
    cfg: TimerConfig,
    log: TimerLog,
    wheel: TimerWheel,
    checkpoint: TimerCheckpointFile,
    enqueue_offset: u64,
    /// The first tick not fully delivered.
    cursor: i64,
    /// `None`: the cursor's walk has not started; `Some(pos)`: the next unit to handle.
    walk: Option<i64>,
    saved: Option<TimerCheckpointData>,
    recovered: Recovered,
}

impl TimerStore {
    /// Opens (or creates) the timer files under `root` and recovers: the log is cut at its last
    /// valid unit and the units written after the checkpoint are linked again. Without a
    /// checkpoint the enqueue offset starts at `first_queue_offset` and the cursor at the earlier
    /// of the current tick and the oldest tick in the log.
    pub fn open(
        root: &Path,
        cfg: TimerConfig,
        now_ms: i64,
        first_queue_offset: u64,
    ) -> Result<TimerStore> {
        cfg.validate()?;
        let (checkpoint, data) = TimerCheckpointFile::open(&root.join("timercheck"))?;
        if let Some(d) = data {
            if d.precision_ms as u64 != cfg.precision_ms || d.wheel_slots as u64 != cfg.wheel_slots
            {
                return Err(StoreError::Config(format!(
                    "the timer wheel under {} was built with a precision of {} ms and {} slots; \
                     the configuration asks for {} ms and {} slots",
                    root.display(),
                    d.precision_ms,
                    d.wheel_slots,
                    cfg.precision_ms,
                    cfg.wheel_slots
                )));
            }
        }
        let mut log = TimerLog::open(&root.join("timerlog"), cfg.log_file_bytes)?;
        let wheel = TimerWheel::open(&root.join("timerwheel"), cfg.wheel_slots)?;
        let now_tick = now_ms.div_euclid(cfg.precision_ms as i64);
        let (from, enqueue_offset, cursor, walk) = match data {
            Some(d) => (
                d.log_end.max(log.min_pos()),
                d.enqueue_offset,
                d.cursor,
                (d.walk_pos >= 0).then_some(d.walk_pos),
            ),
            None => (log.min_pos(), first_queue_offset, now_tick, None),
        };
        let end = log.valid_end(from);
        log.cut(end)?;
        let mut store = TimerStore {
            cfg,
            log,
            wheel,
            checkpoint,
            enqueue_offset,
            cursor,
            walk,
            saved: data,
            recovered: Recovered {
                from_checkpoint: data.is_some(),
                replayed_units: 0,
                log_end: end,
            },
        };
        let mut min_tick = i64::MAX;
        let mut pos = from;
        while pos < end {
            let unit = store.log.read(pos)?;
            store.relink(pos, &unit)?;
            store.enqueue_offset = store.enqueue_offset.max(unit.queue_offset + 1);
            min_tick = min_tick.min(unit.tick);
            store.recovered.replayed_units += 1;
            pos += UNIT_BYTES as u64;
        }
        if data.is_none() {
            store.cursor = store.cursor.min(min_tick);
        }
        if store.recovered.replayed_units > 0 {
            tracing::info!(
                "timer store: linked {} unit(s) written after the last checkpoint",
                store.recovered.replayed_units
            );
        }
        store.checkpoint()?;
        Ok(store)
    }

    /// Links a replayed unit into its slot unless the slot already covers it.
    fn relink(&mut self, pos: u64, unit: &TimerUnit) -> Result<()> {
        let pos_i = pos as i64;
        match self.wheel.raw(unit.tick)? {
            Some(s) if s.tick == unit.tick && s.last_pos >= pos_i => {}
            Some(s) if s.tick == unit.tick => {
                if unit.prev_pos != s.last_pos {
                    tracing::warn!(
                        "timer replay: unit at {pos} follows {} but its slot ends at {}",
                        unit.prev_pos,
                        s.last_pos
                    );
                }
                self.wheel.put(Slot {
                    last_pos: pos_i,
                    count: s.count.saturating_add(1),
                    ..s
                });
            }
            _ => {
                if unit.prev_pos != NO_POS {
                    tracing::warn!(
                        "timer replay: unit at {pos} follows {} but its slot holds no chain",
                        unit.prev_pos
                    );
                }
                self.wheel.put(Slot {
                    tick: unit.tick,
                    first_pos: pos_i,
                    last_pos: pos_i,
                    count: 1,
                });
            }
        }
        Ok(())
    }

    pub fn config(&self) -> &TimerConfig {
        &self.cfg
    }

    pub fn recovered(&self) -> Recovered {
        self.recovered
    }

    /// The tick a `TIMER_OUT_MS` falls in.
    pub fn tick_of(&self, ms: i64) -> i64 {
        ms.div_euclid(self.cfg.precision_ms as i64)
    }

    /// When `tick` is due: the end of its interval.
    pub fn due_ms(&self, tick: i64) -> i64 {
        tick.saturating_add(1)
            .saturating_mul(self.cfg.precision_ms as i64)
    }

    /// The next timer-queue offset to enqueue.
    pub fn enqueue_offset(&self) -> u64 {
        self.enqueue_offset
    }

    /// Moves the enqueue offset past records that get no unit (not timer records, or below the
    /// queue's first offset).
    pub fn skip_to(&mut self, queue_offset: u64) {
        self.enqueue_offset = self.enqueue_offset.max(queue_offset);
    }

    /// The first tick not fully delivered.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Whether the walk of the cursor's tick has started.
    pub fn walk_started(&self) -> bool {
        self.walk.is_some()
    }

    /// Whether the cursor's tick is due at `now_ms`.
    pub fn is_due(&self, now_ms: i64) -> bool {
        self.due_ms(self.cursor) <= now_ms
    }

    /// The tick a record due at `tick` goes to, and whether it is rolled.
    pub fn place(&self, tick: i64) -> (i64, bool) {
        let c = self.cursor;
        let roll = self.cfg.roll_window_slots as i64;
        let min = if self.walk.is_some() { c + 1 } else { c };
        if tick.saturating_sub(c) >= roll {
            (c + roll, true)
        } else if tick < min {
            (min, false)
        } else {
            (tick, false)
        }
    }

    /// Appends the unit of the timer record at `queue_offset` (CommitLog `commitlog_offset`,
    /// `size` bytes) due at `out_ms` (its `TIMER_OUT_MS`) and chains it into its slot; the enqueue
    /// offset moves past it.
    pub fn add(
        &mut self,
        queue_offset: u64,
        commitlog_offset: u64,
        size: u32,
        out_ms: i64,
        delete: bool,
    ) -> Result<Placement> {
        let (tick, rolled) = self.place(self.tick_of(out_ms));
        let prev = self.wheel.get(tick)?;
        let mut flags = 0;
        if delete {
            flags |= FLAG_DELETE;
        }
        if rolled {
            flags |= FLAG_ROLL;
        }
        let unit = TimerUnit {
            flags,
            tick,
            queue_offset,
            commitlog_offset,
            size,
            prev_pos: prev.map(|s| s.last_pos).unwrap_or(NO_POS),
        };
        let pos = self.log.append(&unit)?;
        let pos_i = pos as i64;
        self.wheel.put(match prev {
            Some(s) => Slot {
                last_pos: pos_i,
                count: s.count.saturating_add(1),
                ..s
            },
            None => Slot {
                tick,
                first_pos: pos_i,
                last_pos: pos_i,
                count: 1,
            },
        });
        self.enqueue_offset = self.enqueue_offset.max(queue_offset + 1);
        Ok(Placement { pos, tick, rolled })
    }

    /// The next unit of the cursor tick's walk (newest first), starting the walk if needed.
    /// `None` when the tick has no (more) units: the cursor has then moved to the next tick. A
    /// unit that cannot be read ends its chain, with an error in the log.
    pub fn walk_next(&mut self) -> Result<Option<(u64, TimerUnit)>> {
        let pos = match self.walk {
            Some(p) => p,
            None => {
                let head = self
                    .wheel
                    .get(self.cursor)?
                    .map(|s| s.last_pos)
                    .unwrap_or(NO_POS);
                self.walk = Some(head);
                head
            }
        };
        if pos < 0 {
            self.finish_tick();
            return Ok(None);
        }
        match self.log.read(pos as u64) {
            Ok(u) if u.tick == self.cursor => Ok(Some((pos as u64, u))),
            Ok(u) => {
                tracing::error!(
                    "timer walk of tick {}: the unit at {pos} belongs to tick {}; \
                     the rest of the chain is lost",
                    self.cursor,
                    u.tick
                );
                self.finish_tick();
                Ok(None)
            }
            Err(e) => {
                tracing::error!(
                    "timer walk of tick {}: {e}; the rest of the chain is lost",
                    self.cursor
                );
                self.finish_tick();
                Ok(None)
            }
        }
    }

    /// Marks the unit [`TimerStore::walk_next`] returned as handled. Returns true when it was the
    /// tick's last unit (the cursor has moved to the next tick).
    pub fn walk_done(&mut self, unit: &TimerUnit) -> bool {
        if unit.prev_pos < 0 {
            self.finish_tick();
            true
        } else {
            self.walk = Some(unit.prev_pos);
            false
        }
    }

    fn finish_tick(&mut self) {
        self.cursor += 1;
        self.walk = None;
    }

    /// Calls `f` with every unit of the cursor tick's chain that the walk has already passed,
    /// newest first (to rebuild the tick's delete set when a walk resumes after a restart).
    pub fn for_each_walked(&self, mut f: impl FnMut(u64, &TimerUnit)) -> Result<()> {
        let Some(stop) = self.walk else {
            return Ok(());
        };
        let Some(slot) = self.wheel.get(self.cursor)? else {
            return Ok(());
        };
        let mut pos = slot.last_pos;
        while pos >= 0 && pos != stop {
            let u = self.log.read(pos as u64)?;
            f(pos as u64, &u);
            pos = u.prev_pos;
        }
        Ok(())
    }

    /// The chain of `tick`, if it has one.
    pub fn slot(&self, tick: i64) -> Result<Option<Slot>> {
        self.wheel.get(tick)
    }

    /// The unit at `pos`.
    pub fn unit_at(&self, pos: u64) -> Result<TimerUnit> {
        self.log.read(pos)
    }

    /// Entries held in memory: wheel slots changed since the last checkpoint.
    pub fn memory_entries(&self) -> usize {
        self.wheel.dirty_count()
    }

    /// The changed slots have reached their limit: checkpoint now.
    pub fn needs_checkpoint(&self) -> bool {
        self.wheel.dirty_count() >= self.cfg.max_dirty_slots
    }

    /// Position where the next unit goes.
    pub fn log_write_pos(&self) -> u64 {
        self.log.write_pos()
    }

    pub fn log_file_count(&self) -> usize {
        self.log.file_count()
    }

    /// Syncs the log, writes the changed slots, writes the checkpoint (when anything changed), and
    /// deletes log files whose units are all behind the cursor.
    pub fn checkpoint(&mut self) -> Result<()> {
        let d = TimerCheckpointData {
            log_end: self.log.write_pos(),
            enqueue_offset: self.enqueue_offset,
            cursor: self.cursor,
            walk_pos: self.walk.unwrap_or(NO_POS),
            precision_ms: self.cfg.precision_ms as u32,
            wheel_slots: self.cfg.wheel_slots as u32,
        };
        if self.saved == Some(d) && self.wheel.dirty_count() == 0 {
            return Ok(());
        }
        self.log.sync()?;
        self.wheel.flush()?;
        self.checkpoint.write(&d)?;
        self.saved = Some(d);
        let deleted = self.log.delete_expired(self.cursor, d.log_end)?;
        if deleted > 0 {
            tracing::debug!("timer store: deleted {deleted} delivered timer log file(s)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
