//! Index files: hash chains from `topic#key` to CommitLog offsets, in RocketMQ's IndexFile layout
//! (40-byte header, hash slots, 20-byte entries). See docs/storage-format.md, "Index".
//!
//! Written by the store's single writer and read by queries; one RwLock guards both, because index
//! writes are short and queries rare.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::error::{Result, StoreError};
use crate::segment::{file_name, parse_file_name, Segment};

const HEADER_BYTES: usize = 40;
const SLOT_BYTES: usize = 4;
const ENTRY_BYTES: usize = 20;

/// Java `String.hashCode` made non-negative the way RocketMQ's index does.
fn key_hash(key: &str) -> u32 {
    non_negative(apogee_protocol::message::hash::java_string_hash(key))
}

/// `key_hash(topic + "#" + key)` without building the string (Java's hash folds UTF-16 units
/// left to right, so the parts can be folded in turn).
fn topic_key_hash(topic: &str, key: &str) -> u32 {
    if topic.is_ascii() && key.is_ascii() {
        // ASCII: each byte is one UTF-16 unit.
        let h = topic
            .bytes()
            .chain(std::iter::once(b'#'))
            .chain(key.bytes())
            .fold(0i32, |h, b| h.wrapping_mul(31).wrapping_add(i32::from(b)));
        return non_negative(h);
    }
    let h = topic
        .encode_utf16()
        .chain("#".encode_utf16())
        .chain(key.encode_utf16())
        .fold(0i32, |h, unit| {
            h.wrapping_mul(31).wrapping_add(i32::from(unit))
        });
    non_negative(h)
}

fn non_negative(h: i32) -> u32 {
    if h == i32::MIN {
        0
    } else {
        h.unsigned_abs()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Header {
    begin_timestamp_ms: i64,
    end_timestamp_ms: i64,
    begin_phy_offset: i64,
    end_phy_offset: i64,
    hash_slot_count: i32,
    /// Next entry number; starts at 1 (entry 0 is never used, so a slot value of 0 means empty).
    index_count: i32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[0..8].copy_from_slice(&self.begin_timestamp_ms.to_be_bytes());
        b[8..16].copy_from_slice(&self.end_timestamp_ms.to_be_bytes());
        b[16..24].copy_from_slice(&self.begin_phy_offset.to_be_bytes());
        b[24..32].copy_from_slice(&self.end_phy_offset.to_be_bytes());
        b[32..36].copy_from_slice(&self.hash_slot_count.to_be_bytes());
        b[36..40].copy_from_slice(&self.index_count.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Header {
        Header {
            begin_timestamp_ms: i64_at(b, 0),
            end_timestamp_ms: i64_at(b, 8),
            begin_phy_offset: i64_at(b, 16),
            end_phy_offset: i64_at(b, 24),
            hash_slot_count: i32_at(b, 32),
            index_count: i32_at(b, 36),
        }
    }
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    key_hash: u32,
    phy_offset: i64,
    time_diff_s: i32,
    prev_index: i32,
}

impl Entry {
    fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[0..4].copy_from_slice(&self.key_hash.to_be_bytes());
        b[4..12].copy_from_slice(&self.phy_offset.to_be_bytes());
        b[12..16].copy_from_slice(&self.time_diff_s.to_be_bytes());
        b[16..20].copy_from_slice(&self.prev_index.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Entry {
        Entry {
            key_hash: i32_at(b, 0) as u32,
            phy_offset: i64_at(b, 4),
            time_diff_s: i32_at(b, 12),
            prev_index: i32_at(b, 16),
        }
    }

    fn is_blank(&self) -> bool {
        self.key_hash == 0 && self.phy_offset == 0 && self.time_diff_s == 0 && self.prev_index == 0
    }
}

struct IndexFile {
    seg: Arc<Segment>,
    slots: u32,
    entries: u32,
    header: Header,
}

impl IndexFile {
    fn file_bytes(slots: u32, entries: u32) -> usize {
        HEADER_BYTES + slots as usize * SLOT_BYTES + entries as usize * ENTRY_BYTES
    }

    fn slot_pos(&self, slot: u32) -> usize {
        HEADER_BYTES + slot as usize * SLOT_BYTES
    }

    fn entry_pos(&self, n: u32) -> usize {
        HEADER_BYTES + self.slots as usize * SLOT_BYTES + n as usize * ENTRY_BYTES
    }

    fn read_slot(&self, slot: u32) -> i32 {
        // SAFETY: every access to index files happens under the service's lock.
        i32_at(
            unsafe { self.seg.slice(self.slot_pos(slot), SLOT_BYTES) },
            0,
        )
    }

    fn write_slot(&self, slot: u32, value: i32) {
        // SAFETY: under the service's write lock.
        unsafe { self.seg.write(self.slot_pos(slot), &value.to_be_bytes()) }
    }

    fn read_entry(&self, n: u32) -> Entry {
        // SAFETY: under the service's lock.
        Entry::decode(unsafe { self.seg.slice(self.entry_pos(n), ENTRY_BYTES) })
    }

    fn write_entry(&self, n: u32, e: &Entry) {
        // SAFETY: under the service's write lock.
        unsafe { self.seg.write(self.entry_pos(n), &e.encode()) }
    }

    fn write_header(&self) {
        // SAFETY: under the service's write lock.
        unsafe { self.seg.write(0, &self.header.encode()) }
    }

    fn is_full(&self) -> bool {
        self.header.index_count as u32 >= self.entries
    }

    fn put(&mut self, hash: u32, phy_offset: u64, store_timestamp_ms: i64) {
        let n = self.header.index_count.max(1) as u32;
        if self.header.begin_timestamp_ms == 0 || n == 1 {
            self.header.begin_timestamp_ms = store_timestamp_ms;
            self.header.begin_phy_offset = phy_offset as i64;
        }
        let slot = hash % self.slots;
        let prev = self.read_slot(slot);
        let prev = if prev <= 0 || prev as u32 >= n {
            0
        } else {
            prev
        };
        let diff_s = ((store_timestamp_ms - self.header.begin_timestamp_ms) / 1000).max(0);
        let entry = Entry {
            key_hash: hash,
            phy_offset: phy_offset as i64,
            time_diff_s: i32::try_from(diff_s).unwrap_or(i32::MAX),
            prev_index: prev,
        };
        self.write_entry(n, &entry);
        self.write_slot(slot, n as i32);
        self.header.index_count = n as i32 + 1;
        self.header.hash_slot_count = self.header.hash_slot_count.saturating_add(1);
        self.header.end_phy_offset = phy_offset as i64;
        self.header.end_timestamp_ms = store_timestamp_ms;
        self.write_header();
    }

    /// Walks the chain for `hash`, newest first, collecting offsets whose time is in the window.
    fn lookup(&self, hash: u32, begin_ms: i64, end_ms: i64, max: usize, out: &mut Vec<u64>) {
        let mut n = self.read_slot(hash % self.slots);
        let count = self.header.index_count;
        let mut steps = 0u32;
        while n > 0 && n < count && out.len() < max && steps < self.entries {
            let e = self.read_entry(n as u32);
            let t = self.header.begin_timestamp_ms + e.time_diff_s as i64 * 1000;
            // Stored times are truncated to seconds: allow the window's start that second of slack.
            if e.key_hash == hash && t >= begin_ms - 999 && t <= end_ms && e.phy_offset >= 0 {
                out.push(e.phy_offset as u64);
            }
            if e.prev_index >= n {
                break; // a damaged link: never loop
            }
            n = e.prev_index;
            steps += 1;
        }
    }
}

/// Position of the index at a checkpoint: which file, and how many of its entries are durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct IndexMark {
    pub file_offset: u64,
    pub count: u32,
}

pub(crate) struct IndexService {
    dir: PathBuf,
    slots: u32,
    entries: u32,
    files: RwLock<Vec<IndexFile>>,
}

impl IndexService {
    pub fn new(dir: &Path, slots: u32, entries: u32) -> IndexService {
        IndexService {
            dir: dir.to_path_buf(),
            slots: slots.max(1),
            entries: entries.max(2),
            files: RwLock::new(Vec::new()),
        }
    }

    /// Loads the index files. With `mark` (a valid checkpoint), files created after it are deleted and
    /// the newest one is cut back to its durable entries; when `rebuild_slots` (after a crash), that
    /// file's hash slots are rebuilt from those entries, since slot writes after the checkpoint may
    /// have reached the disk without the entries they point to. Without a mark every file is deleted
    /// and the caller re-indexes the whole log.
    ///
    /// Returns whether the file the mark names was found. When it was not (the index directory was
    /// deleted or damaged by hand) the index misses records below the checkpoint, and the caller must
    /// start over: load again without a mark and re-index the whole log.
    pub fn load(&self, mark: Option<IndexMark>, rebuild_slots: bool) -> Result<bool> {
        let mut names: Vec<u64> = match fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(parse_file_name))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StoreError::io(self.dir.display(), e)),
        };
        names.sort_unstable();
        let size = IndexFile::file_bytes(self.slots, self.entries);
        let mut files = Vec::new();
        for start in names {
            let path = self.dir.join(file_name(start));
            let keep = match mark {
                None => false,
                Some(m) if m.count == 0 => start < m.file_offset,
                Some(m) => start <= m.file_offset,
            };
            if !keep {
                fs::remove_file(&path).map_err(|e| StoreError::io(path.display(), e))?;
                continue;
            }
            let seg =
                Segment::open(&path, start, size).map_err(|e| StoreError::io(path.display(), e))?;
            // SAFETY: loading happens before the store is shared.
            let header = Header::decode(unsafe { seg.slice(0, HEADER_BYTES) });
            files.push(IndexFile {
                seg: Arc::new(seg),
                slots: self.slots,
                entries: self.entries,
                header,
            });
        }
        let mut intact = true;
        if let Some(m) = mark.filter(|m| m.count > 0) {
            match files.last_mut() {
                // The header counts every entry written; fewer than the mark means the file is not
                // the one the checkpoint saw (e.g. a re-index that did not finish).
                Some(last)
                    if last.seg.start() == m.file_offset
                        && last.header.index_count >= m.count as i32 =>
                {
                    cut_to(last, m.count, rebuild_slots)?
                }
                _ => intact = false,
            }
        }
        *self.files.write().unwrap_or_else(|p| p.into_inner()) = files;
        Ok(intact)
    }

    /// Recovery cut the log at `offset`: drops every entry for a record at or past it (entries are in
    /// log order), so that re-indexing after the cut does not meet stale ones. Only before the store
    /// accepts writes.
    pub fn cut_from(&self, offset: u64) -> Result<()> {
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        while files
            .last()
            .is_some_and(|f| f.header.index_count > 1 && f.header.begin_phy_offset as u64 >= offset)
        {
            if let Some(f) = files.pop() {
                f.seg.mark_deleted();
            }
        }
        let Some(f) = files.last_mut() else {
            return Ok(());
        };
        // First entry number whose record is at or past `offset`.
        let (mut lo, mut hi) = (1u32, f.header.index_count.max(1) as u32);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if (f.read_entry(mid).phy_offset as u64) < offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < f.header.index_count.max(1) as u32 {
            cut_to(f, lo, true)?;
        }
        Ok(())
    }

    /// The durable-position mark to store in a checkpoint (taken under the store's writer lock).
    pub fn mark(&self) -> IndexMark {
        let files = self.files.read().unwrap_or_else(|p| p.into_inner());
        match files.last() {
            Some(f) => IndexMark {
                file_offset: f.seg.start(),
                count: f.header.index_count.max(1) as u32,
            },
            None => IndexMark::default(),
        }
    }

    /// Indexes `key` (already `topic#key`) for the record at `phy_offset`.
    #[cfg(test)]
    pub fn put(&self, key: &str, phy_offset: u64, store_timestamp_ms: i64) -> Result<()> {
        self.put_hash(key_hash(key), phy_offset, store_timestamp_ms)
    }

    /// Indexes `topic#key` (the append path: no string is built).
    pub fn put_topic_key(
        &self,
        topic: &str,
        key: &str,
        phy_offset: u64,
        store_timestamp_ms: i64,
    ) -> Result<()> {
        self.put_hash(topic_key_hash(topic, key), phy_offset, store_timestamp_ms)
    }

    fn put_hash(&self, hash: u32, phy_offset: u64, store_timestamp_ms: i64) -> Result<()> {
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        let need_new = files.last().map(|f| f.is_full()).unwrap_or(true);
        if need_new {
            if let Some(full) = files.last() {
                // A sealed file never changes again: make it durable before moving on.
                full.seg
                    .sync()
                    .map_err(|e| StoreError::io(full.seg.path().display(), e))?;
            }
            let start = match files.last() {
                Some(f) if f.seg.start() >= phy_offset => f.seg.start() + 1,
                _ => phy_offset,
            };
            fs::create_dir_all(&self.dir).map_err(|e| StoreError::io(self.dir.display(), e))?;
            let path = self.dir.join(file_name(start));
            let size = IndexFile::file_bytes(self.slots, self.entries);
            let seg = Segment::create(&path, start, size)
                .map_err(|e| StoreError::io(path.display(), e))?;
            let f = IndexFile {
                seg: Arc::new(seg),
                slots: self.slots,
                entries: self.entries,
                header: Header {
                    index_count: 1,
                    ..Header::default()
                },
            };
            f.write_header();
            files.push(f);
        }
        if let Some(f) = files.last_mut() {
            f.put(hash, phy_offset, store_timestamp_ms);
        }
        Ok(())
    }

    /// CommitLog offsets of records indexed under `key` within the time window, newest first, without
    /// duplicates. Hashes collide: the caller checks each record's real keys.
    pub fn lookup(&self, key: &str, max: usize, begin_ms: i64, end_ms: i64) -> Vec<u64> {
        let hash = key_hash(key);
        let files = self.files.read().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for f in files.iter().rev() {
            if out.len() >= max {
                break;
            }
            let h = f.header;
            if h.index_count <= 1
                || h.end_timestamp_ms < begin_ms - 999
                || h.begin_timestamp_ms > end_ms
            {
                continue;
            }
            f.lookup(hash, begin_ms, end_ms, max, &mut out);
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|o| seen.insert(*o));
        out
    }

    pub fn flush(&self) -> Result<()> {
        // Not under the lock: every append's index put takes it, and an fdatasync of a large
        // index file can take milliseconds (it used to stall all appends once a second).
        let last = {
            let files = self.files.read().unwrap_or_else(|p| p.into_inner());
            files.last().map(|f| Arc::clone(&f.seg))
        };
        if let Some(seg) = last {
            seg.sync()
                .map_err(|e| StoreError::io(seg.path().display(), e))?;
        }
        Ok(())
    }

    /// Retention: removes files whose newest indexed record is below the log's minimum offset.
    pub fn delete_below(&self, min_commitlog_offset: u64) {
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        while files.len() > 1 && (files[0].header.end_phy_offset as u64) < min_commitlog_offset {
            let f = files.remove(0);
            f.seg.mark_deleted();
        }
    }

    #[cfg(test)]
    pub fn file_count(&self) -> usize {
        self.files.read().map(|f| f.len()).unwrap_or(0)
    }
}

/// Cuts `f` back to `count` entries (zeroing any written after) and, if asked, rebuilds its slots.
fn cut_to(f: &mut IndexFile, count: u32, rebuild_slots: bool) -> Result<()> {
    let count = count.min(f.entries);
    let mut n = count;
    while n < f.entries && !f.read_entry(n).is_blank() {
        f.write_entry(
            n,
            &Entry {
                key_hash: 0,
                phy_offset: 0,
                time_diff_s: 0,
                prev_index: 0,
            },
        );
        n += 1;
    }
    if rebuild_slots {
        // SAFETY: before the store is shared.
        unsafe { f.seg.zero(HEADER_BYTES, f.slot_pos(f.slots)) };
        for i in 1..count {
            let e = f.read_entry(i);
            f.write_slot(e.key_hash % f.slots, i as i32);
        }
    }
    f.header.index_count = count as i32;
    if count > 1 {
        let last = f.read_entry(count - 1);
        f.header.end_phy_offset = last.phy_offset;
        f.header.end_timestamp_ms = f.header.begin_timestamp_ms + last.time_diff_s as i64 * 1000;
    }
    f.write_header();
    f.seg
        .sync()
        .map_err(|e| StoreError::io(f.seg.path().display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn topic_key_hash_equals_the_hash_of_the_joined_string() {
        for (t, k) in [
            ("T", "k"),
            ("TopicTest", "UNIQ-0A0B0C0D0E0F"),
            ("主题", "clé-ключ"),
            ("", ""),
            ("%RETRY%group", "x y"),
        ] {
            assert_eq!(
                topic_key_hash(t, k),
                key_hash(&format!("{t}#{k}")),
                "{t}#{k}"
            );
        }
    }

    #[test]
    fn header_and_entry_layouts_are_pinned() {
        let h = Header {
            begin_timestamp_ms: 1,
            end_timestamp_ms: 2,
            begin_phy_offset: 3,
            end_phy_offset: 4,
            hash_slot_count: 5,
            index_count: 6,
        };
        let b = h.encode();
        assert_eq!(b[7], 1);
        assert_eq!(b[15], 2);
        assert_eq!(b[23], 3);
        assert_eq!(b[31], 4);
        assert_eq!(b[35], 5);
        assert_eq!(b[39], 6);
        assert_eq!(Header::decode(&b), h);
        let e = Entry {
            key_hash: 0x01020304,
            phy_offset: 0x05,
            time_diff_s: 7,
            prev_index: 9,
        };
        let b = e.encode();
        assert_eq!(&b[0..4], &[1, 2, 3, 4]);
        assert_eq!(b[11], 5);
        assert_eq!(b[15], 7);
        assert_eq!(b[19], 9);
        assert_eq!(Entry::decode(&b), e);
    }

    #[test]
    fn lookup_finds_every_record_of_a_key_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let idx = IndexService::new(dir.path(), 8, 1000);
        for i in 0..50u64 {
            let key = if i % 5 == 0 { "T#order-1" } else { "T#other" };
            idx.put(key, i * 100, T0 + i as i64 * 1000).unwrap();
        }
        let found = idx.lookup("T#order-1", 100, 0, i64::MAX);
        assert_eq!(
            found,
            vec![4500, 4000, 3500, 3000, 2500, 2000, 1500, 1000, 500, 0]
        );
        assert_eq!(idx.lookup("T#order-1", 3, 0, i64::MAX).len(), 3);
        // Time window: records 10..=20 s after T0.
        let windowed = idx.lookup("T#order-1", 100, T0 + 10_000, T0 + 20_000);
        assert_eq!(windowed, vec![2000, 1500, 1000]);
        assert!(idx.lookup("T#missing", 100, 0, i64::MAX).is_empty());
    }

    #[test]
    fn full_files_roll_over_and_lookups_span_them() {
        let dir = tempfile::tempdir().unwrap();
        let idx = IndexService::new(dir.path(), 4, 10);
        for i in 0..35u64 {
            idx.put("T#k", i * 10, T0).unwrap();
        }
        assert_eq!(idx.file_count(), 4);
        assert_eq!(idx.lookup("T#k", 100, 0, i64::MAX).len(), 35);
    }

    #[test]
    fn reload_at_a_checkpoint_cuts_later_entries_and_keeps_chains_whole() {
        let dir = tempfile::tempdir().unwrap();
        let idx = IndexService::new(dir.path(), 4, 1000);
        for i in 0..10u64 {
            idx.put("T#k", i * 10, T0).unwrap();
        }
        let mark = idx.mark();
        idx.flush().unwrap();
        for i in 10..15u64 {
            idx.put("T#k", i * 10, T0).unwrap();
        }
        drop(idx);
        let idx = IndexService::new(dir.path(), 4, 1000);
        idx.load(Some(mark), true).unwrap();
        let found = idx.lookup("T#k", 100, 0, i64::MAX);
        assert_eq!(found, (0..10u64).rev().map(|i| i * 10).collect::<Vec<_>>());
        // Re-indexing continues the same chains.
        idx.put("T#k", 100, T0).unwrap();
        assert_eq!(idx.lookup("T#k", 100, 0, i64::MAX).len(), 11);
    }

    #[test]
    fn files_created_after_the_checkpoint_are_deleted_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let idx = IndexService::new(dir.path(), 4, 5);
        for i in 0..4u64 {
            idx.put("T#k", i, T0).unwrap();
        }
        let mark = idx.mark();
        for i in 4..12u64 {
            idx.put("T#k", i, T0).unwrap();
        }
        assert_eq!(idx.file_count(), 3);
        drop(idx);
        let idx = IndexService::new(dir.path(), 4, 5);
        idx.load(Some(mark), true).unwrap();
        assert_eq!(idx.file_count(), 1);
        assert_eq!(idx.lookup("T#k", 100, 0, i64::MAX), vec![3, 2, 1, 0]);
    }

    #[test]
    fn cut_from_drops_entries_at_or_past_the_offset_and_keeps_older_chains_whole() {
        let dir = tempfile::tempdir().unwrap();
        let idx = IndexService::new(dir.path(), 4, 10);
        // 25 records, two keys each: three files, the last one partly filled.
        for i in 0..25u64 {
            idx.put("T#k", i * 10, T0).unwrap();
            idx.put(&format!("T#own-{i}"), i * 10, T0).unwrap();
        }
        assert_eq!(idx.file_count(), 6);
        idx.cut_from(125).unwrap();
        let expected: Vec<u64> = (0..13u64).rev().map(|i| i * 10).collect();
        assert_eq!(idx.lookup("T#k", 100, 0, i64::MAX), expected);
        assert!(idx.lookup("T#own-13", 100, 0, i64::MAX).is_empty());
        assert_eq!(idx.lookup("T#own-12", 100, 0, i64::MAX), vec![120]);
        // Files holding only cut records are gone; indexing continues after the cut.
        assert_eq!(idx.file_count(), 3);
        idx.put("T#k", 130, T0).unwrap();
        assert_eq!(idx.lookup("T#k", 1, 0, i64::MAX), vec![130]);
        // Cutting past the end changes nothing.
        idx.cut_from(10_000).unwrap();
        assert_eq!(idx.lookup("T#k", 100, 0, i64::MAX).len(), 14);
    }

    #[test]
    fn load_reports_an_index_that_lacks_what_the_checkpoint_saw() {
        let dir = tempfile::tempdir().unwrap();
        let idx = IndexService::new(dir.path(), 4, 100);
        for i in 0..10u64 {
            idx.put("T#k", i * 10, T0).unwrap();
        }
        let mark = idx.mark();
        idx.flush().unwrap();
        drop(idx);
        let idx = IndexService::new(dir.path(), 4, 100);
        assert!(idx.load(Some(mark), true).unwrap());
        // A file of that name with fewer entries than the mark is not the one the mark saw.
        let short = IndexMark {
            count: mark.count + 5,
            ..mark
        };
        let idx = IndexService::new(dir.path(), 4, 100);
        assert!(!idx.load(Some(short), true).unwrap());
        std::fs::remove_dir_all(dir.path()).unwrap();
        let idx = IndexService::new(dir.path(), 4, 100);
        assert!(!idx.load(Some(mark), true).unwrap());
        assert!(idx.load(Some(IndexMark::default()), true).unwrap());
    }
}
