//! One consume queue: the (topic, queueId) index into the CommitLog, 20-byte entries addressed by
//! logical offset. Written only by the store's single writer; read by anyone.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::error::{Result, StoreError};
use crate::segment::{file_name, parse_file_name, Segment};

pub const CQ_ENTRY_BYTES: u64 = 20;
/// How far ahead of the next entry the writer brings queue-file pages into the page cache (see
/// `Segment::prefault`).
const CQ_PREFAULT_BYTES: u64 = 64 * 1024;

/// One consume-queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    pub commitlog_offset: u64,
    pub size: u32,
    pub tags_code: i64,
}

impl CqEntry {
    fn encode(&self) -> [u8; CQ_ENTRY_BYTES as usize] {
        let mut b = [0u8; CQ_ENTRY_BYTES as usize];
        b[0..8].copy_from_slice(&self.commitlog_offset.to_be_bytes());
        b[8..12].copy_from_slice(&self.size.to_be_bytes());
        b[12..20].copy_from_slice(&self.tags_code.to_be_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> CqEntry {
        let mut o = [0u8; 8];
        o.copy_from_slice(&b[0..8]);
        let mut s = [0u8; 4];
        s.copy_from_slice(&b[8..12]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[12..20]);
        CqEntry {
            commitlog_offset: u64::from_be_bytes(o),
            size: u32::from_be_bytes(s),
            tags_code: i64::from_be_bytes(t),
        }
    }

    /// Entries that were never written are all zero; a blank filler has size `i32::MAX`.
    pub(crate) fn is_written(&self) -> bool {
        self.size != 0
    }
}

pub(crate) struct ConsumeQueue {
    topic: String,
    queue_id: i32,
    dir: PathBuf,
    entries_per_file: u64,
    /// Contiguous files, oldest first.
    files: RwLock<Vec<Arc<Segment>>>,
    /// Next logical offset to write; entries below it are published.
    max_offset: AtomicU64,
    /// First logical offset still readable.
    min_offset: AtomicU64,
    /// Entries below this logical offset are durable.
    flushed_offset: AtomicU64,
    /// File bytes below this position (and at or above the next entry) were prefaulted.
    prefaulted: AtomicU64,
}

impl ConsumeQueue {
    pub fn new(root: &Path, topic: &str, queue_id: i32, entries_per_file: u64) -> ConsumeQueue {
        ConsumeQueue {
            topic: topic.to_string(),
            queue_id,
            dir: root.join(topic).join(queue_id.to_string()),
            entries_per_file,
            files: RwLock::new(Vec::new()),
            max_offset: AtomicU64::new(0),
            min_offset: AtomicU64::new(0),
            flushed_offset: AtomicU64::new(0),
            prefaulted: AtomicU64::new(0),
        }
    }

    fn file_bytes(&self) -> u64 {
        self.entries_per_file * CQ_ENTRY_BYTES
    }

    /// Loads the files on disk and cuts every entry at or past `cut_commitlog_offset` (and anything
    /// after the first never-written entry). Returns the new max logical offset.
    pub fn load(&self, cut_commitlog_offset: u64) -> Result<u64> {
        let mut names: Vec<u64> = match fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(parse_file_name))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StoreError::io(self.dir.display(), e)),
        };
        names.sort_unstable();
        let fb = self.file_bytes();
        let mut files = Vec::with_capacity(names.len());
        for (i, start) in names.iter().enumerate() {
            if start % fb != 0 || (i > 0 && *start != names[i - 1] + fb) {
                return Err(StoreError::Corrupt(format!(
                    "consume queue {}/{}: file {} is not contiguous with its predecessor",
                    self.topic,
                    self.queue_id,
                    file_name(*start)
                )));
            }
            let path = self.dir.join(file_name(*start));
            let seg = Segment::open(&path, *start, fb as usize)
                .map_err(|e| StoreError::io(path.display(), e))?;
            files.push(Arc::new(seg));
        }
        let first_logical = names.first().map(|s| s / CQ_ENTRY_BYTES).unwrap_or(0);
        let end_logical = names.last().map(|s| (s + fb) / CQ_ENTRY_BYTES).unwrap_or(0);
        *self.files.write().unwrap_or_else(|p| p.into_inner()) = files;

        // Entries are written in log order, so "written and below the cut" holds for a prefix of the
        // queue: binary search for its end.
        let (mut lo, mut hi) = (first_logical, end_logical);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let keep = self
                .read_raw(mid)
                .map(|e| e.is_written() && e.commitlog_offset < cut_commitlog_offset)
                .unwrap_or(false);
            if keep {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        self.cut_to(lo)?;
        self.min_offset.store(first_logical, Ordering::Release);
        self.flushed_offset.store(lo, Ordering::Release);
        Ok(lo)
    }

    /// Cuts the queue so that `max` is the next logical offset: zeroes the rest of its file and
    /// deletes later files. Only before the store accepts writes.
    pub fn cut_to(&self, max: u64) -> Result<()> {
        let fb = self.file_bytes();
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        let cut_byte = max * CQ_ENTRY_BYTES;
        while let Some(last) = files.last() {
            if last.start() >= cut_byte && last.start() > 0 && files.len() > 1 {
                last.mark_deleted();
                files.pop();
            } else {
                break;
            }
        }
        if let Some(last) = files.last() {
            if cut_byte >= last.start() && cut_byte < last.start() + fb {
                let pos = (cut_byte - last.start()) as usize;
                // SAFETY: recovery runs before any reader or writer exists.
                unsafe { last.zero(pos, fb as usize) };
                last.sync()
                    .map_err(|e| StoreError::io(last.path().display(), e))?;
            }
        }
        self.max_offset.store(max, Ordering::Release);
        self.prefaulted.store(cut_byte, Ordering::Relaxed);
        Ok(())
    }

    /// Reads an entry without checking that it is published (recovery only).
    fn read_raw(&self, logical: u64) -> Option<CqEntry> {
        let seg = self.file_for(logical)?;
        let pos = (logical * CQ_ENTRY_BYTES - seg.start()) as usize;
        // SAFETY: called at load, before any writer exists, or below the published max.
        let b = unsafe { seg.slice(pos, CQ_ENTRY_BYTES as usize) };
        Some(CqEntry::decode(b))
    }

    fn file_for(&self, logical: u64) -> Option<Arc<Segment>> {
        let byte = logical.checked_mul(CQ_ENTRY_BYTES)?;
        let files = self.files.read().unwrap_or_else(|p| p.into_inner());
        let first = files.first()?;
        if byte < first.start() {
            return None;
        }
        let idx = ((byte - first.start()) / self.file_bytes()) as usize;
        files.get(idx).cloned()
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn queue_id(&self) -> i32 {
        self.queue_id
    }

    pub fn max_offset(&self) -> u64 {
        self.max_offset.load(Ordering::Acquire)
    }

    pub fn min_offset(&self) -> u64 {
        self.min_offset.load(Ordering::Acquire)
    }

    /// Appends the entry for logical offset `logical`, which must be the current max (gaps are filled
    /// with blank entries, as RocketMQ does for a queue that restarts above zero).
    ///
    /// Single writer only (the store's append lock).
    pub fn append(&self, logical: u64, entry: CqEntry) -> Result<()> {
        let max = self.max_offset();
        if logical < max {
            return Err(StoreError::Corrupt(format!(
                "consume queue {}/{}: entry {logical} written twice (max {max})",
                self.topic, self.queue_id
            )));
        }
        if max == 0 && logical > 0 && self.files.read().map(|f| f.is_empty()).unwrap_or(true) {
            // A queue whose first file starts above zero: begin at that file, not at 0.
            self.min_offset
                .store(logical - logical % self.entries_per_file, Ordering::Release);
            self.max_offset
                .store(logical - logical % self.entries_per_file, Ordering::Release);
        }
        let mut at = self.max_offset();
        while at < logical {
            self.write_entry(
                at,
                CqEntry {
                    commitlog_offset: 0,
                    size: i32::MAX as u32,
                    tags_code: 0,
                },
            )?;
            at += 1;
        }
        self.write_entry(logical, entry)?;
        self.max_offset.store(logical + 1, Ordering::Release);
        Ok(())
    }

    fn write_entry(&self, logical: u64, entry: CqEntry) -> Result<()> {
        let seg = match self.file_for(logical) {
            Some(seg) => seg,
            None => self.create_file_for(logical)?,
        };
        let byte = logical * CQ_ENTRY_BYTES;
        let end = byte + CQ_ENTRY_BYTES;
        let prefaulted = self.prefaulted.load(Ordering::Relaxed);
        if end > prefaulted {
            let from = prefaulted.max(byte);
            let to = seg.end().min(end + CQ_PREFAULT_BYTES);
            // SAFETY: single writer; entries from `byte` on were never written. A failure only
            // loses the speed-up.
            let res = unsafe { seg.prefault((from - seg.start()) as usize, (to - from) as usize) };
            if let Err(e) = res {
                tracing::debug!("prefaulting {}: {e}", seg.path().display());
            }
            self.prefaulted.store(to, Ordering::Relaxed);
        }
        let pos = (byte - seg.start()) as usize;
        // SAFETY: single writer; readers only read below the published max, which this entry is not.
        unsafe { seg.write(pos, &entry.encode()) };
        Ok(())
    }

    fn create_file_for(&self, logical: u64) -> Result<Arc<Segment>> {
        fs::create_dir_all(&self.dir).map_err(|e| StoreError::io(self.dir.display(), e))?;
        let fb = self.file_bytes();
        let start = logical * CQ_ENTRY_BYTES / fb * fb;
        let path = self.dir.join(file_name(start));
        let seg = Arc::new(
            Segment::create(&path, start, fb as usize)
                .map_err(|e| StoreError::io(path.display(), e))?,
        );
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = files.last() {
            if last.end() != start {
                return Err(StoreError::Corrupt(format!(
                    "consume queue {}/{}: new file {} does not follow {}",
                    self.topic,
                    self.queue_id,
                    file_name(start),
                    file_name(last.start())
                )));
            }
        }
        files.push(Arc::clone(&seg));
        Ok(seg)
    }

    /// The entry at `logical`, if published and not removed by retention.
    pub fn get(&self, logical: u64) -> Option<CqEntry> {
        if logical >= self.max_offset() || logical < self.min_offset() {
            return None;
        }
        self.read_raw(logical)
    }

    /// Makes every published entry durable.
    pub fn flush(&self) -> Result<()> {
        let max = self.max_offset();
        let flushed = self.flushed_offset.load(Ordering::Acquire);
        if max <= flushed {
            return Ok(());
        }
        let lo = flushed * CQ_ENTRY_BYTES;
        let hi = max * CQ_ENTRY_BYTES;
        let files: Vec<Arc<Segment>> = {
            let files = self.files.read().unwrap_or_else(|p| p.into_inner());
            files
                .iter()
                .filter(|s| s.end() > lo && s.start() < hi)
                .cloned()
                .collect()
        };
        for seg in files {
            // Entries below `hi` are never written again: unmapped first, their pages need no
            // write-protection one by one at writeback (see `Segment::unmap`).
            let (a, b) = (lo.max(seg.start()), hi.min(seg.end()));
            seg.unmap((a - seg.start()) as usize, (b - a) as usize);
            seg.sync()
                .map_err(|e| StoreError::io(seg.path().display(), e))?;
        }
        self.flushed_offset.store(max, Ordering::Release);
        Ok(())
    }

    /// Retention: drops whole files whose entries all point below `min_commitlog_offset` and moves
    /// the min offset to the first entry still in the log.
    pub fn delete_below(&self, min_commitlog_offset: u64) {
        let max = self.max_offset();
        {
            let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
            while files.len() > 1 {
                let first = &files[0];
                let last_logical = first.end() / CQ_ENTRY_BYTES - 1;
                let pos = (last_logical * CQ_ENTRY_BYTES - first.start()) as usize;
                // SAFETY: a non-last file is full and published.
                let e = CqEntry::decode(unsafe { first.slice(pos, CQ_ENTRY_BYTES as usize) });
                if e.commitlog_offset + e.size as u64 <= min_commitlog_offset && last_logical < max
                {
                    first.mark_deleted();
                    files.remove(0);
                } else {
                    break;
                }
            }
        }
        // Move min past entries of the remaining first file that are gone from the log.
        let mut min = self.min_offset().max(
            self.files
                .read()
                .ok()
                .and_then(|f| f.first().map(|s| s.start() / CQ_ENTRY_BYTES))
                .unwrap_or(0),
        );
        while min < max {
            match self.read_raw(min) {
                Some(e)
                    if e.commitlog_offset < min_commitlog_offset || e.size == i32::MAX as u32 =>
                {
                    min += 1
                }
                _ => break,
            }
        }
        self.min_offset.store(min, Ordering::Release);
    }

    /// Removes the queue's files from disk (topic deletion).
    pub fn destroy(&self) {
        let mut files = self.files.write().unwrap_or_else(|p| p.into_inner());
        for f in files.drain(..) {
            f.mark_deleted();
        }
        self.max_offset.store(0, Ordering::Release);
        self.min_offset.store(0, Ordering::Release);
        self.prefaulted.store(0, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub fn file_count(&self) -> usize {
        self.files.read().map(|f| f.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> CqEntry {
        CqEntry {
            commitlog_offset: n * 100,
            size: 100,
            tags_code: n as i64 - 5,
        }
    }

    #[test]
    fn entry_layout_is_twenty_big_endian_bytes() {
        let e = CqEntry {
            commitlog_offset: 0x0102030405060708,
            size: 138,
            tags_code: -1,
        };
        let b = e.encode();
        assert_eq!(&b[0..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[8..12], &[0, 0, 0, 138]);
        assert_eq!(&b[12..20], &[0xFF; 8]);
        assert_eq!(CqEntry::decode(&b), e);
    }

    #[test]
    fn appended_entries_are_read_back_across_files_and_after_reload() {
        let dir = tempfile::tempdir().unwrap();
        let cq = ConsumeQueue::new(dir.path(), "T", 3, 8);
        for n in 0..30 {
            cq.append(n, entry(n)).unwrap();
        }
        assert_eq!(cq.max_offset(), 30);
        assert_eq!(cq.file_count(), 4);
        assert_eq!(cq.get(17), Some(entry(17)));
        assert_eq!(cq.get(30), None);
        cq.flush().unwrap();
        drop(cq);
        let cq = ConsumeQueue::new(dir.path(), "T", 3, 8);
        assert_eq!(cq.load(u64::MAX).unwrap(), 30);
        for n in 0..30 {
            assert_eq!(cq.get(n), Some(entry(n)));
        }
    }

    #[test]
    fn load_cuts_entries_at_or_past_the_commitlog_cut() {
        let dir = tempfile::tempdir().unwrap();
        let cq = ConsumeQueue::new(dir.path(), "T", 0, 8);
        for n in 0..20 {
            cq.append(n, entry(n)).unwrap();
        }
        drop(cq);
        let cq = ConsumeQueue::new(dir.path(), "T", 0, 8);
        // Records from offset 1250 on were lost: entries 13.. point at or past it.
        assert_eq!(cq.load(1250).unwrap(), 13);
        assert_eq!(cq.get(12), Some(entry(12)));
        assert_eq!(cq.get(13), None);
        assert_eq!(cq.file_count(), 2);
        // Writing continues right after the cut.
        cq.append(13, entry(99)).unwrap();
        assert_eq!(cq.get(13), Some(entry(99)));
    }

    #[test]
    fn writing_an_offset_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cq = ConsumeQueue::new(dir.path(), "T", 0, 8);
        cq.append(0, entry(0)).unwrap();
        assert!(cq.append(0, entry(0)).is_err());
    }

    #[test]
    fn retention_drops_whole_files_below_the_log_minimum() {
        let dir = tempfile::tempdir().unwrap();
        let cq = ConsumeQueue::new(dir.path(), "T", 0, 8);
        for n in 0..30 {
            cq.append(n, entry(n)).unwrap();
        }
        // Log now starts at 1000: entries 0..=9 are gone; file 0 (0..8) can go, file 1 stays.
        cq.delete_below(1000);
        assert_eq!(cq.file_count(), 3);
        assert_eq!(cq.min_offset(), 10);
        assert_eq!(cq.get(9), None);
        assert_eq!(cq.get(10), Some(entry(10)));
    }
}
