//! The wheel file (one slot per tick, tick t in slot t mod S) and the timer checkpoint file.
//!
//! Slot changes stay in memory until [`TimerWheel::flush`], which the checkpoint runs after the
//! timer log is synced: the file on disk only ever points at durable units.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{
    decode_checkpoint, encode_checkpoint, Slot, TimerCheckpointData, CHECKPOINT_SLOT_BYTES,
    SLOT_BYTES,
};
use crate::error::{Result, StoreError};

pub(crate) struct TimerWheel {
    path: PathBuf,
    file: File,
    slots: u64,
    dirty: HashMap<u64, Slot>,
}

impl TimerWheel {
    pub fn open(path: &Path, slots: u64) -> Result<TimerWheel> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StoreError::io(path.display(), e))?;
        let want = slots * SLOT_BYTES as u64;
        let len = file
            .metadata()
            .map_err(|e| StoreError::io(path.display(), e))?
            .len();
        if len == 0 {
            file.set_len(want)
                .and_then(|_| file.sync_all())
                .map_err(|e| StoreError::io(path.display(), e))?;
            if let Some(dir) = path.parent() {
                super::log::sync_dir(dir);
            }
        } else if len != want {
            return Err(StoreError::Config(format!(
                "{} holds {} slots but timer_wheel_slots is {slots}",
                path.display(),
                len / SLOT_BYTES as u64
            )));
        }
        Ok(TimerWheel {
            path: path.to_path_buf(),
            file,
            slots,
            dirty: HashMap::new(),
        })
    }

    pub fn index(&self, tick: i64) -> u64 {
        tick.rem_euclid(self.slots as i64) as u64
    }

    /// What the slot of `tick` holds, whatever tick that is (`None`: empty). A damaged slot reads
    /// as empty, with an error in the log: its units cannot be found any more.
    pub fn raw(&self, tick: i64) -> Result<Option<Slot>> {
        let idx = self.index(tick);
        if let Some(s) = self.dirty.get(&idx) {
            return Ok(Some(*s));
        }
        let mut b = [0u8; SLOT_BYTES];
        self.file
            .read_exact_at(&mut b, idx * SLOT_BYTES as u64)
            .map_err(|e| StoreError::io(self.path.display(), e))?;
        match Slot::decode(&b) {
            Ok(s) => Ok(s),
            Err(e) => {
                tracing::error!(
                    "timer wheel slot {idx} in {} is damaged ({e}); treating it as empty",
                    self.path.display()
                );
                Ok(None)
            }
        }
    }

    /// The chain of `tick`, if its slot holds that tick.
    pub fn get(&self, tick: i64) -> Result<Option<Slot>> {
        Ok(self.raw(tick)?.filter(|s| s.tick == tick))
    }

    pub fn put(&mut self, slot: Slot) {
        let idx = self.index(slot.tick);
        self.dirty.insert(idx, slot);
    }

    pub fn dirty_count(&self) -> usize {
        self.dirty.len()
    }

    /// Writes the changed slots and syncs the file.
    pub fn flush(&mut self) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        for (idx, s) in &self.dirty {
            self.file
                .write_all_at(&s.encode(), idx * SLOT_BYTES as u64)
                .map_err(|e| StoreError::io(self.path.display(), e))?;
        }
        self.file
            .sync_data()
            .map_err(|e| StoreError::io(self.path.display(), e))?;
        self.dirty.clear();
        Ok(())
    }
}

/// `timercheck`: two slots written alternately, the valid one with the higher sequence wins.
pub(crate) struct TimerCheckpointFile {
    path: PathBuf,
    file: File,
    seq: u64,
    current_slot: usize,
}

impl TimerCheckpointFile {
    pub fn open(path: &Path) -> Result<(TimerCheckpointFile, Option<TimerCheckpointData>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StoreError::io(path.display(), e))?;
        let mut buf = [0u8; 2 * CHECKPOINT_SLOT_BYTES];
        let len = file
            .metadata()
            .map_err(|e| StoreError::io(path.display(), e))?
            .len() as usize;
        let n = len.min(buf.len());
        if n > 0 {
            file.read_exact_at(&mut buf[..n], 0)
                .map_err(|e| StoreError::io(path.display(), e))?;
        }
        let a = decode_checkpoint(&buf[..CHECKPOINT_SLOT_BYTES]).ok();
        let b = decode_checkpoint(&buf[CHECKPOINT_SLOT_BYTES..]).ok();
        let best = match (a, b) {
            (Some(a), Some(b)) => Some(if a.0 >= b.0 { (0, a) } else { (1, b) }),
            (Some(a), None) => Some((0, a)),
            (None, Some(b)) => Some((1, b)),
            (None, None) => None,
        };
        let (current_slot, seq, data) = match best {
            Some((slot, (seq, d))) => (slot, seq, Some(d)),
            None => (1, 0, None),
        };
        Ok((
            TimerCheckpointFile {
                path: path.to_path_buf(),
                file,
                seq,
                current_slot,
            },
            data,
        ))
    }

    pub fn write(&mut self, data: &TimerCheckpointData) -> Result<()> {
        let slot = 1 - self.current_slot;
        let seq = self.seq + 1;
        self.file
            .write_all_at(
                &encode_checkpoint(seq, data),
                (slot * CHECKPOINT_SLOT_BYTES) as u64,
            )
            .and_then(|_| self.file.sync_data())
            .map_err(|e| StoreError::io(self.path.display(), e))?;
        self.seq = seq;
        self.current_slot = slot;
        Ok(())
    }
}
