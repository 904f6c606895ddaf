//! The timer log: fixed-size units appended to files of equal size named by their first position.
//! Units are read one at a time with `pread`, so nothing of the log is held in memory beyond one
//! open descriptor per file and, per file, the highest tick it holds once that was needed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{TimerUnit, UNIT_BYTES};
use crate::error::{Result, StoreError};

pub(crate) struct TimerLog {
    dir: PathBuf,
    /// Bytes per file, a multiple of [`UNIT_BYTES`].
    file_bytes: u64,
    files: BTreeMap<u64, File>,
    /// Position of the next unit.
    write_pos: u64,
    /// Files written since the last sync.
    unsynced: BTreeSet<u64>,
    /// Highest tick in each full file, computed when cleaning first needs it.
    max_tick: BTreeMap<u64, i64>,
}

fn file_name(start: u64) -> String {
    format!("{start:020}")
}

impl TimerLog {
    /// Opens every file of the log; the write position is set by [`TimerLog::cut`].
    pub fn open(dir: &Path, file_bytes: u64) -> Result<TimerLog> {
        let file_bytes = (file_bytes / UNIT_BYTES as u64).max(1) * UNIT_BYTES as u64;
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir.display(), e))?;
        let mut files = BTreeMap::new();
        let rd = fs::read_dir(dir).map_err(|e| StoreError::io(dir.display(), e))?;
        for entry in rd {
            let entry = entry.map_err(|e| StoreError::io(dir.display(), e))?;
            let name = entry.file_name();
            let Some(start) = name.to_str().and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            if start % file_bytes != 0 {
                return Err(StoreError::Config(format!(
                    "timer log file {} does not start at a multiple of timer_log_file_bytes \
                     ({file_bytes}): the setting changed since the file was written",
                    entry.path().display()
                )));
            }
            let path = entry.path();
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| StoreError::io(path.display(), e))?;
            files.insert(start, f);
        }
        Ok(TimerLog {
            dir: dir.to_path_buf(),
            file_bytes,
            files,
            write_pos: 0,
            unsynced: BTreeSet::new(),
            max_tick: BTreeMap::new(),
        })
    }

    pub fn write_pos(&self) -> u64 {
        self.write_pos
    }

    /// Position of the first unit still on disk.
    pub fn min_pos(&self) -> u64 {
        self.files.keys().next().copied().unwrap_or(self.write_pos)
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    fn file_start(&self, pos: u64) -> u64 {
        pos - pos % self.file_bytes
    }

    fn path(&self, start: u64) -> PathBuf {
        self.dir.join(file_name(start))
    }

    /// Reads the unit at `pos` (a multiple of [`UNIT_BYTES`]).
    pub fn read(&self, pos: u64) -> Result<TimerUnit> {
        let start = self.file_start(pos);
        let f = self.files.get(&start).ok_or_else(|| {
            StoreError::Corrupt(format!("timer log file for position {pos} is missing"))
        })?;
        let mut b = [0u8; UNIT_BYTES];
        f.read_exact_at(&mut b, pos - start)
            .map_err(|e| StoreError::io(self.path(start).display(), e))?;
        TimerUnit::decode(&b)
            .map_err(|e| StoreError::Corrupt(format!("timer log unit at {pos}: {e}")))
    }

    /// End of the valid units from `from` on: the first position holding no valid unit.
    pub fn valid_end(&self, from: u64) -> u64 {
        let mut pos = from;
        let mut buf = vec![0u8; 64 * UNIT_BYTES];
        loop {
            let start = self.file_start(pos);
            let Some(f) = self.files.get(&start) else {
                return pos;
            };
            let rel = pos - start;
            let want = ((self.file_bytes - rel) as usize).min(buf.len());
            let got = match read_up_to(f, &mut buf[..want], rel) {
                Ok(n) => n,
                Err(_) => return pos,
            };
            let mut i = 0;
            while i + UNIT_BYTES <= got {
                if TimerUnit::decode(&buf[i..i + UNIT_BYTES]).is_err() {
                    return pos + i as u64;
                }
                i += UNIT_BYTES;
            }
            if i == 0 {
                return pos;
            }
            pos += i as u64;
        }
    }

    /// Makes `end` the write position: the rest of its file reads as zeros (truncated and
    /// re-extended, so no stale unit past `end` can look valid later) and later files are deleted.
    pub fn cut(&mut self, end: u64) -> Result<()> {
        let start = self.file_start(end);
        let later: Vec<u64> = self.files.range(start + 1..).map(|(s, _)| *s).collect();
        for s in later {
            self.files.remove(&s);
            self.max_tick.remove(&s);
            let p = self.path(s);
            fs::remove_file(&p).map_err(|e| StoreError::io(p.display(), e))?;
        }
        if let Some(f) = self.files.get(&start) {
            let p = self.path(start);
            f.set_len(end - start)
                .and_then(|_| f.set_len(self.file_bytes))
                .and_then(|_| f.sync_all())
                .map_err(|e| StoreError::io(p.display(), e))?;
        }
        sync_dir(&self.dir);
        self.write_pos = end;
        Ok(())
    }

    /// Appends `unit` at the write position and returns that position.
    pub fn append(&mut self, unit: &TimerUnit) -> Result<u64> {
        let pos = self.write_pos;
        let start = self.file_start(pos);
        if !self.files.contains_key(&start) {
            let p = self.path(start);
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .map_err(|e| StoreError::io(p.display(), e))?;
            f.set_len(self.file_bytes)
                .map_err(|e| StoreError::io(p.display(), e))?;
            sync_dir(&self.dir);
            self.files.insert(start, f);
        }
        let f = self
            .files
            .get(&start)
            .ok_or_else(|| StoreError::Corrupt(format!("timer log file {start} vanished")))?;
        f.write_all_at(&unit.encode(), pos - start)
            .map_err(|e| StoreError::io(self.path(start).display(), e))?;
        self.unsynced.insert(start);
        self.write_pos = pos + UNIT_BYTES as u64;
        Ok(pos)
    }

    /// Makes every appended unit durable.
    pub fn sync(&mut self) -> Result<()> {
        for start in std::mem::take(&mut self.unsynced) {
            if let Some(f) = self.files.get(&start) {
                f.sync_data()
                    .map_err(|e| StoreError::io(self.path(start).display(), e))?;
            }
        }
        Ok(())
    }

    /// Deletes the oldest files while every unit in them has a tick below `cursor`, never the
    /// file holding `keep_from` or any later one. Returns how many went.
    pub fn delete_expired(&mut self, cursor: i64, keep_from: u64) -> Result<usize> {
        let keep_start = self.file_start(keep_from.min(self.write_pos));
        let mut deleted = 0;
        while let Some((&start, _)) = self.files.iter().next() {
            if start >= keep_start {
                break;
            }
            let max = match self.max_tick.get(&start) {
                Some(m) => *m,
                None => {
                    let m = self.scan_max_tick(start)?;
                    self.max_tick.insert(start, m);
                    m
                }
            };
            if max >= cursor {
                break;
            }
            self.files.remove(&start);
            self.max_tick.remove(&start);
            self.unsynced.remove(&start);
            let p = self.path(start);
            if let Err(e) = fs::remove_file(&p) {
                if e.kind() != ErrorKind::NotFound {
                    return Err(StoreError::io(p.display(), e));
                }
            }
            deleted += 1;
        }
        Ok(deleted)
    }

    fn scan_max_tick(&self, start: u64) -> Result<i64> {
        let Some(f) = self.files.get(&start) else {
            return Ok(i64::MIN);
        };
        let mut max = i64::MIN;
        let mut buf = vec![0u8; 4096 * UNIT_BYTES];
        let mut rel = 0u64;
        while rel < self.file_bytes {
            let want = ((self.file_bytes - rel) as usize).min(buf.len());
            let got = read_up_to(f, &mut buf[..want], rel)
                .map_err(|e| StoreError::io(self.path(start).display(), e))?;
            let mut i = 0;
            while i + UNIT_BYTES <= got {
                match TimerUnit::decode(&buf[i..i + UNIT_BYTES]) {
                    Ok(u) => max = max.max(u.tick),
                    Err(_) => return Ok(max),
                }
                i += UNIT_BYTES;
            }
            if i == 0 {
                break;
            }
            rel += i as u64;
        }
        Ok(max)
    }
}

/// Reads as much of `buf` as the file holds at `offset`.
fn read_up_to(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
