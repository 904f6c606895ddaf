//! The pop journal, `<data>/pop/journal`: an append-only text file of in-flight changes that
//! rebuilds the [`PopState`] after a restart. One line per change:
//!
//! ```text
//! D <popTime> <invisibleTime> <redeliveries> <fifo 0|1> <group> <topic> <queueId> <offset>
//! A <group> <topic> <queueId> <offset>
//! ```
//!
//! `D` (delivery) sets the entry of a message (first delivery, redelivery or a changed invisible
//! time); `A` removes it (acked, sent to the DLQ, or its record is gone). Group and topic names
//! cannot contain spaces. Replay applies the lines in order and skips any it cannot parse (a line
//! torn by a crash). The file is compacted on open and whenever it has grown by
//! `compact_after_bytes` since the last compaction: the live entries are written to a temp file,
//! synced, and renamed over the journal, so memory and disk stay bounded by what is in flight.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::state::{InFlight, PopState, QueueKey};

pub const FILE_NAME: &str = "journal";

pub struct Journal {
    path: PathBuf,
    file: File,
    grown_bytes: u64,
    compact_after_bytes: u64,
}

impl Journal {
    /// Opens (creating) the journal in `dir`, replays it, and compacts it.
    pub fn open(dir: &Path, compact_after_bytes: u64) -> io::Result<(Journal, PopState)> {
        fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let mut state = PopState::new();
        match fs::read(&path) {
            Ok(bytes) => replay(&String::from_utf8_lossy(&bytes), &mut state),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let file = write_compacted(&path, &state)?;
        Ok((
            Journal {
                path,
                file,
                grown_bytes: 0,
                compact_after_bytes,
            },
            state,
        ))
    }

    /// Appends `lines` with one write (a killed process keeps whole writes), compacting when the
    /// file has grown enough.
    pub fn append(&mut self, lines: &str, state: &PopState) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        self.file.write_all(lines.as_bytes())?;
        self.grown_bytes += lines.len() as u64;
        if self.grown_bytes >= self.compact_after_bytes {
            self.compact(state)?;
        }
        Ok(())
    }

    pub fn compact(&mut self, state: &PopState) -> io::Result<()> {
        self.file = write_compacted(&self.path, state)?;
        self.grown_bytes = 0;
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Writes the live entries to a temp file, syncs it, renames it over `path`, and reopens the
/// result for appending.
fn write_compacted(path: &Path, state: &PopState) -> io::Result<File> {
    let mut text = String::with_capacity(state.len() * 64);
    for (key, offset, entry) in state.entries() {
        push_delivery(&mut text, key, offset, entry);
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    OpenOptions::new().append(true).open(path)
}

pub fn push_delivery(out: &mut String, key: &QueueKey, offset: u64, e: &InFlight) {
    let _ = writeln!(
        out,
        "D {} {} {} {} {} {} {} {}",
        e.pop_time_ms,
        e.invisible_ms,
        e.redeliveries,
        u8::from(e.fifo),
        key.0,
        key.1,
        key.2,
        offset
    );
}

pub fn push_removal(out: &mut String, key: &QueueKey, offset: u64) {
    let _ = writeln!(out, "A {} {} {} {}", key.0, key.1, key.2, offset);
}

/// Applies journal lines to `state`, skipping malformed ones.
pub fn replay(text: &str, state: &mut PopState) {
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["D", pt, it, n, fifo, g, t, q, o] => {
                let parsed = (|| {
                    Some((
                        InFlight {
                            pop_time_ms: pt.parse().ok()?,
                            invisible_ms: it.parse().ok()?,
                            redeliveries: n.parse().ok()?,
                            fifo: *fifo == "1",
                        },
                        q.parse::<i32>().ok()?,
                        o.parse::<u64>().ok()?,
                    ))
                })();
                if let Some((entry, q, o)) = parsed {
                    state.restore(&((*g).to_owned(), (*t).to_owned(), q), o, entry);
                }
            }
            ["A", g, t, q, o] => {
                if let (Ok(q), Ok(o)) = (q.parse::<i32>(), o.parse::<u64>()) {
                    state.remove(&((*g).to_owned(), (*t).to_owned(), q), o);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(q: i32) -> QueueKey {
        ("G".into(), "T".into(), q)
    }

    #[test]
    fn replay_rebuilds_deliveries_and_removals_and_skips_torn_lines() {
        let mut text = String::new();
        let mut s = PopState::new();
        let a = s.deliver(&key(0), 1, 100, 300, false);
        push_delivery(&mut text, &key(0), 1, &a);
        let b = s.deliver(&key(1), 2, 100, 300, true);
        push_delivery(&mut text, &key(1), 2, &b);
        push_removal(&mut text, &key(0), 1);
        assert_eq!(
            text,
            "D 100 300 0 0 G T 0 1\nD 100 300 0 1 G T 1 2\nA G T 0 1\n"
        );
        text.push_str("D 5 6 7");
        let mut back = PopState::new();
        replay(&text, &mut back);
        assert_eq!(back.len(), 1);
        assert_eq!(back.get(&key(1), 2), Some(b));
    }

    #[test]
    fn reopening_compacts_to_the_live_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut s) = Journal::open(dir.path(), 1 << 20).unwrap();
        let mut lines = String::new();
        for o in 0..10 {
            let e = s.deliver(&key(0), o, 1, 2, false);
            push_delivery(&mut lines, &key(0), o, &e);
        }
        for o in 0..9 {
            s.remove(&key(0), o);
            push_removal(&mut lines, &key(0), o);
        }
        j.append(&lines, &s).unwrap();
        drop(j);
        let (_j, back) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(back.len(), 1);
        assert!(back.get(&key(0), 9).is_some());
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text, "D 1 2 0 0 G T 0 9\n");
    }

    #[test]
    fn growth_past_the_limit_compacts_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, mut s) = Journal::open(dir.path(), 64).unwrap();
        let mut lines = String::new();
        let e = s.deliver(&key(0), 0, 1, 2, false);
        push_delivery(&mut lines, &key(0), 0, &e);
        s.remove(&key(0), 0);
        push_removal(&mut lines, &key(0), 0);
        for _ in 0..4 {
            j.append(&lines, &s).unwrap();
        }
        let len = fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        assert!(len < 64, "{len}");
    }
}
