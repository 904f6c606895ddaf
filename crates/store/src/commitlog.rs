//! The CommitLog: one append-only log of stored records, split into preallocated segments.
//!
//! One writer (proved by holding a [`WriterToken`], which lives inside the store's append mutex)
//! reserves space, copies records in and publishes the new write position; readers only look below
//! the published position, so they never see a half-written record.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use crate::error::{Result, StoreError};
use crate::flush::Flushable;
use crate::segment::{file_name, parse_file_name, Segment};
use crate::warm::{WarmFence, WarmStep, Warmer};

/// Magic of the filler record at the end of a full segment.
pub const BLANK_MAGIC: u32 = 0xCBD4_3194;
/// A record is written only if this many bytes stay free after it, for a blank filler.
pub const END_FILE_MIN_BLANK_BYTES: u64 = 8;
/// How far ahead of a write the writer brings segment pages into the page cache (see
/// [`Segment::prefault`]). Large enough to make the zero-writes cheap, small enough that a flush
/// rarely writes many zero pages that are overwritten soon after.
const PREFAULT_BYTES: u64 = 512 * 1024;
/// Writes of at least this many bytes go through `pwrite` instead of the mapping: the kernel then
/// fills whole fresh pages in bulk, and pages never dirtied through the mapping need no TLB
/// shootdown when the flusher writes them back (costly inter-processor interrupts in a VM).
const PWRITE_MIN_BYTES: usize = 8 * 1024;

/// The flusher unmaps written pages once at least this much was written since it last did.
const UNMAP_MIN_BYTES: u64 = 1 << 20;

/// Proof that the caller is the single writer. Only the store creates one, inside its append mutex.
pub(crate) struct WriterToken(());

impl WriterToken {
    pub(crate) fn new() -> WriterToken {
        WriterToken(())
    }
}

pub(crate) struct CommitLog {
    dir: PathBuf,
    segment_bytes: u64,
    segments: RwLock<Vec<Arc<Segment>>>,
    /// Published end of the log.
    write_pos: AtomicU64,
    /// Bytes below this offset (and above the write position) were prefaulted by the writer.
    prefaulted: AtomicU64,
    /// First offset still stored (start of the oldest segment, or later after recovery of an
    /// empty log).
    min_offset: AtomicU64,
    /// Set when the log must not take writes (failed fsync, disk full); the reason is kept.
    read_only: AtomicBool,
    read_only_reason: Mutex<String>,
    /// Keeps the writer and the extent warmer (sync flush) off each other's bytes.
    fence: WarmFence,
    /// Whether the writer prefaults pages ahead of itself (off when the warmer does that job).
    prefault_ahead: AtomicBool,
    /// Sync flush: the extent warmer, run by the flusher between rounds.
    warmer: Mutex<Option<Warmer>>,
    /// Whole pages below this offset were dropped from the mapping before a flush (see
    /// [`Segment::unmap`]); the flusher moves it.
    unmapped: AtomicU64,
}

/// What a recovery scan learns about one record: its length, and whether it is valid.
pub(crate) enum ScanStep {
    /// A valid record of this many bytes.
    Record(u64),
    /// The blank filler: continue at the next segment.
    Blank,
    /// End of the log (zeros) or an invalid record.
    End,
}

impl CommitLog {
    pub fn new(dir: &Path, segment_bytes: u64) -> CommitLog {
        CommitLog {
            dir: dir.to_path_buf(),
            segment_bytes,
            segments: RwLock::new(Vec::new()),
            write_pos: AtomicU64::new(0),
            prefaulted: AtomicU64::new(0),
            min_offset: AtomicU64::new(0),
            read_only: AtomicBool::new(false),
            read_only_reason: Mutex::new(String::new()),
            fence: WarmFence::new(),
            prefault_ahead: AtomicBool::new(true),
            warmer: Mutex::new(None),
            unmapped: AtomicU64::new(0),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Maps every segment on disk. Names must be contiguous multiples of the segment size.
    pub fn load(&self) -> Result<()> {
        fs::create_dir_all(&self.dir).map_err(|e| StoreError::io(self.dir.display(), e))?;
        let mut names: Vec<u64> = fs::read_dir(&self.dir)
            .map_err(|e| StoreError::io(self.dir.display(), e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(parse_file_name))
            .collect();
        names.sort_unstable();
        let mut segs = Vec::with_capacity(names.len());
        for (i, start) in names.iter().enumerate() {
            if start % self.segment_bytes != 0 {
                return Err(StoreError::Corrupt(format!(
                    "commitlog segment {} is not a multiple of the segment size {}; \
                     was the store created with another commitlog_segment_bytes?",
                    file_name(*start),
                    self.segment_bytes
                )));
            }
            if i > 0 && *start != names[i - 1] + self.segment_bytes {
                return Err(StoreError::Corrupt(format!(
                    "commitlog segment {} is missing (found {} after {})",
                    file_name(names[i - 1] + self.segment_bytes),
                    file_name(*start),
                    file_name(names[i - 1])
                )));
            }
            let path = self.dir.join(file_name(*start));
            let seg = Segment::open(&path, *start, self.segment_bytes as usize)
                .map_err(|e| StoreError::io(path.display(), e))?;
            segs.push(Arc::new(seg));
        }
        let min = names.first().copied().unwrap_or(0);
        self.min_offset.store(min, Ordering::Release);
        self.write_pos.store(min, Ordering::Release);
        self.unmapped.store(min, Ordering::Release);
        // Until recovery finds the real end, treat every loaded segment as data.
        self.fence
            .raise(names.last().map_or(min, |s| s + self.segment_bytes));
        *self.segments.write().unwrap_or_else(|p| p.into_inner()) = segs;
        Ok(())
    }

    pub fn min_offset(&self) -> u64 {
        self.min_offset.load(Ordering::Acquire)
    }

    pub fn max_offset(&self) -> u64 {
        self.write_pos.load(Ordering::Acquire)
    }

    #[cfg(test)]
    pub fn segment_count(&self) -> usize {
        self.segments.read().map(|s| s.len()).unwrap_or(0)
    }

    pub fn segments(&self) -> Vec<Arc<Segment>> {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn segment_for(&self, offset: u64) -> Option<Arc<Segment>> {
        let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
        let first = segs.first()?;
        if offset < first.start() {
            return None;
        }
        let idx = ((offset - first.start()) / self.segment_bytes) as usize;
        segs.get(idx).cloned()
    }

    // ---- recovery ------------------------------------------------------------------------------

    /// Walks records from `from` using `step` to validate each one (given the bytes from the record's
    /// start to the end of its segment and the record's offset), calling `on_record(offset, bytes)`
    /// for every valid record. Returns the end of the last valid record. Only before writes start.
    pub fn scan(
        &self,
        from: u64,
        mut step: impl FnMut(&[u8], u64) -> ScanStep,
        mut on_record: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<u64> {
        let segs = self.segments();
        let Some(first) = segs.first() else {
            return Ok(from);
        };
        let last_end = segs.last().map(|s| s.end()).unwrap_or(0);
        let mut pos = from.clamp(first.start(), last_end);
        while pos < last_end {
            let Some(seg) = self.segment_for(pos) else {
                break;
            };
            let in_seg = (pos - seg.start()) as usize;
            // SAFETY: recovery runs before the store accepts writes or serves reads.
            let rest = unsafe { seg.slice(in_seg, seg.len() - in_seg) };
            match step(rest, pos) {
                ScanStep::Record(len) => {
                    on_record(pos, &rest[..len as usize])?;
                    pos += len;
                }
                ScanStep::Blank => pos = seg.end(),
                ScanStep::End => break,
            }
        }
        Ok(pos)
    }

    /// Makes `end` the write position: zeroes the rest of its segment, deletes newer segments.
    pub fn truncate_to(&self, end: u64) -> Result<()> {
        let mut segs = self.segments.write().unwrap_or_else(|p| p.into_inner());
        while let Some(last) = segs.last() {
            // Keep the segment containing `end` (or ending exactly at it).
            if last.start() > end || (last.start() == end && segs.len() > 1) {
                last.mark_deleted();
                segs.pop();
            } else {
                break;
            }
        }
        if let Some(last) = segs.last() {
            if end >= last.start() && end < last.end() {
                let pos = (end - last.start()) as usize;
                // SAFETY: before the store accepts writes or serves reads.
                unsafe { last.zero(pos, last.len()) };
                last.sync()
                    .map_err(|e| StoreError::io(last.path().display(), e))?;
            }
        }
        self.write_pos.store(end, Ordering::Release);
        self.prefaulted.store(end, Ordering::Relaxed);
        self.unmapped.store(end, Ordering::Release);
        self.fence.reset(end);
        if segs.is_empty() {
            self.min_offset.store(end, Ordering::Release);
        }
        Ok(())
    }

    // ---- writing -------------------------------------------------------------------------------

    /// Finds room for `len` contiguous bytes: if they don't fit in the current segment with room for
    /// a blank filler after them, fills the segment with a blank record and moves to a new one.
    /// Returns the offset where the bytes go. Nothing is published.
    pub fn reserve(&self, _w: &mut WriterToken, len: u64) -> Result<u64> {
        if self.read_only.load(Ordering::Acquire) {
            return Err(StoreError::ServiceNotAvailable(self.read_only_reason()));
        }
        if len + END_FILE_MIN_BLANK_BYTES > self.segment_bytes {
            return Err(StoreError::MessageIllegal(format!(
                "{len} bytes do not fit in a commitlog segment of {} bytes",
                self.segment_bytes
            )));
        }
        let pos = self.max_offset();
        let seg = match self.segment_for(pos) {
            Some(seg) => seg,
            None => self.create_segment(pos)?,
        };
        let remaining = seg.end() - pos;
        if len + END_FILE_MIN_BLANK_BYTES <= remaining {
            return Ok(pos);
        }
        // Blank filler: TOTALSIZE = what is left, then the blank magic.
        self.fence.enter(pos + END_FILE_MIN_BLANK_BYTES);
        let mut blank = [0u8; 8];
        blank[0..4].copy_from_slice(&(remaining as u32).to_be_bytes());
        blank[4..8].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
        // SAFETY: single writer (token), and the range is above the published position.
        unsafe { seg.write((pos - seg.start()) as usize, &blank) };
        let next = seg.end();
        self.create_segment(next)?;
        // The filler is complete: publish it so the log stays contiguous for readers and flush.
        self.write_pos.store(next, Ordering::Release);
        Ok(next)
    }

    fn create_segment(&self, start: u64) -> Result<Arc<Segment>> {
        let path = self.dir.join(file_name(start));
        let seg = match Segment::create(&path, start, self.segment_bytes as usize) {
            Ok(seg) => Arc::new(seg),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                let _ = fs::remove_file(&path);
                return Err(StoreError::ServiceNotAvailable(format!(
                    "disk full: cannot create commitlog segment {}",
                    path.display()
                )));
            }
            Err(e) => return Err(StoreError::io(path.display(), e)),
        };
        let mut segs = self.segments.write().unwrap_or_else(|p| p.into_inner());
        if segs.is_empty() {
            self.min_offset.store(start, Ordering::Release);
        }
        segs.push(Arc::clone(&seg));
        Ok(seg)
    }

    /// Copies `data` to `pos` (returned by [`CommitLog::reserve`]); not yet visible to readers.
    pub fn write(&self, _w: &mut WriterToken, pos: u64, data: &[u8]) -> Result<()> {
        let seg = self
            .segment_for(pos)
            .ok_or_else(|| StoreError::Corrupt(format!("no commitlog segment for offset {pos}")))?;
        let in_seg = (pos - seg.start()) as usize;
        if in_seg + data.len() > seg.len() {
            return Err(StoreError::Corrupt(format!(
                "write of {} bytes at {pos} crosses the segment end",
                data.len()
            )));
        }
        let end = pos + data.len() as u64;
        let prefaulted = self.prefaulted.load(Ordering::Relaxed);
        let prefault = data.len() < PWRITE_MIN_BYTES
            && end > prefaulted.max(self.fence.warmed())
            && self.prefault_ahead.load(Ordering::Relaxed);
        let prefault_to = if prefault {
            seg.end().min(end + PREFAULT_BYTES)
        } else {
            end
        };
        self.fence.enter(prefault_to);
        if data.len() >= PWRITE_MIN_BYTES {
            // SAFETY: single writer (token); readers only see bytes below the published position.
            return unsafe { seg.write_through_file(in_seg, data) }
                .map_err(|e| StoreError::io(seg.path().display(), e));
        }
        if prefault {
            // Never below `pos`: everything from `pos` on is unwritten, anything below may be data.
            let from = prefaulted.max(pos);
            let to = prefault_to;
            // SAFETY: single writer (token); `from..to` is above every byte written so far.
            // A failure only loses the speed-up: the mapping still works.
            let res = unsafe { seg.prefault((from - seg.start()) as usize, (to - from) as usize) };
            match res {
                // SAFETY: as above; the range lies within the segment.
                Ok(()) => unsafe {
                    seg.populate((from - seg.start()) as usize, (to - from) as usize)
                },
                Err(e) => tracing::debug!("prefaulting {}: {e}", seg.path().display()),
            }
            self.prefaulted.store(to, Ordering::Relaxed);
        }
        // SAFETY: single writer (token); readers only see bytes below the published position.
        unsafe { seg.write(in_seg, data) };
        Ok(())
    }

    /// Sync flush with extent warming: the warmer leaves the pages ahead cached and clean, and any
    /// zeros the writer dirtied ahead of itself would ride along in the next group-commit fsync.
    pub fn set_prefault_ahead(&self, on: bool) {
        self.prefault_ahead.store(on, Ordering::Relaxed);
    }

    /// Sync flush: the flusher warms extents ahead of the writer between rounds (see
    /// [`crate::warm`]); the writer then leaves prefaulting to it.
    pub fn set_warmer(&self, w: Warmer) {
        self.set_prefault_ahead(false);
        *self.warmer.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
    }

    /// Warms the next chunk ahead of the writer (see [`crate::warm`]).
    fn warm_step(&self, warmer: &mut Warmer) -> WarmStep {
        if self.read_only.load(Ordering::Acquire) {
            return WarmStep::Idle;
        }
        match warmer.step(&self.fence, |offset| self.segment_for(offset)) {
            Ok(step) => step,
            Err(e) => {
                tracing::info!("commitlog extent warming switched off: {e}");
                WarmStep::Idle
            }
        }
    }

    /// Makes everything below `end` visible to readers.
    pub fn publish(&self, _w: &mut WriterToken, end: u64) {
        self.write_pos.store(end, Ordering::Release);
    }

    // ---- reading -------------------------------------------------------------------------------

    /// `len` bytes at `offset` without copying, if they are published and still stored.
    pub fn read(&self, offset: u64, len: usize) -> Option<Bytes> {
        if offset < self.min_offset() || offset + len as u64 > self.max_offset() {
            return None;
        }
        let seg = self.segment_for(offset)?;
        let in_seg = (offset - seg.start()) as usize;
        if in_seg + len > seg.len() {
            return None;
        }
        // SAFETY: the range is below the published write position, and published records are never
        // rewritten (recovery truncation happens before any reader exists).
        Some(unsafe { seg.bytes(in_seg, len) })
    }

    /// The 4-byte TOTALSIZE at `offset`, if published.
    pub fn read_size(&self, offset: u64) -> Option<u32> {
        let b = self.read(offset, 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    // ---- flushing and retention -------------------------------------------------------------

    pub fn set_read_only(&self, reason: String) {
        *self
            .read_only_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = reason;
        self.read_only.store(true, Ordering::Release);
    }

    fn read_only_reason(&self) -> String {
        self.read_only_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Deletes the oldest segment if `should_delete(segment)` says so and it is not the one being
    /// written. Returns whether one was deleted.
    pub fn delete_oldest_if(&self, should_delete: impl FnOnce(&Segment) -> bool) -> bool {
        let mut segs = self.segments.write().unwrap_or_else(|p| p.into_inner());
        if segs.len() < 2 {
            return false;
        }
        if !should_delete(&segs[0]) {
            return false;
        }
        let seg = segs.remove(0);
        seg.mark_deleted();
        if let Some(first) = segs.first() {
            self.min_offset.store(first.start(), Ordering::Release);
        }
        true
    }
}

impl Flushable for CommitLog {
    fn write_position(&self) -> u64 {
        self.max_offset()
    }

    fn sync_range(&self, from: u64, to: u64) -> std::io::Result<()> {
        let segs = self.segments();
        // Pages below `to` (the published position when the flush started) are never written
        // again: drop them from the mapping so writeback need not write-protect them one by one.
        let unmapped = self.unmapped.load(Ordering::Acquire);
        if to >= unmapped + UNMAP_MIN_BYTES {
            for seg in segs.iter().filter(|s| s.end() > unmapped && s.start() < to) {
                let a = unmapped.max(seg.start());
                let b = to.min(seg.end());
                seg.unmap((a - seg.start()) as usize, (b - a) as usize);
            }
            self.unmapped.store(to / 4096 * 4096, Ordering::Release);
        }
        for seg in segs {
            if seg.end() > from && seg.start() < to {
                seg.sync()?;
            }
        }
        Ok(())
    }

    fn between_rounds(&self) {
        if let Some(w) = self
            .warmer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            self.warm_step(w);
        }
    }

    fn on_flush_error(&self, err: &std::io::Error) {
        tracing::error!("commitlog fdatasync failed, refusing further writes: {err}");
        self.set_read_only(format!("commitlog flush failed: {err}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(log: &CommitLog, w: &mut WriterToken, data: &[u8]) -> u64 {
        let pos = log.reserve(w, data.len() as u64).unwrap();
        log.write(w, pos, data).unwrap();
        log.publish(w, pos + data.len() as u64);
        pos
    }

    #[test]
    fn a_record_that_does_not_fit_moves_to_a_new_segment_behind_a_blank() {
        let dir = tempfile::tempdir().unwrap();
        let log = CommitLog::new(dir.path(), 100);
        log.load().unwrap();
        let mut w = WriterToken::new();
        assert_eq!(put(&log, &mut w, &[1u8; 60]), 0);
        // 60 + 40 + 8 > 100: goes to the next segment.
        assert_eq!(put(&log, &mut w, &[2u8; 40]), 100);
        assert_eq!(log.segment_count(), 2);
        let blank = log.read(60, 8).unwrap();
        assert_eq!(&blank[0..4], &40u32.to_be_bytes());
        assert_eq!(&blank[4..8], &BLANK_MAGIC.to_be_bytes());
        assert_eq!(&log.read(100, 40).unwrap()[..], &[2u8; 40][..]);
        assert_eq!(log.max_offset(), 140);
    }

    #[test]
    fn unpublished_bytes_are_invisible_to_readers() {
        let dir = tempfile::tempdir().unwrap();
        let log = CommitLog::new(dir.path(), 1000);
        log.load().unwrap();
        let mut w = WriterToken::new();
        let pos = log.reserve(&mut w, 10).unwrap();
        log.write(&mut w, pos, &[7u8; 10]).unwrap();
        assert!(log.read(0, 10).is_none());
        log.publish(&mut w, 10);
        assert!(log.read(0, 10).is_some());
        assert!(log.read(5, 10).is_none(), "past the end");
    }

    #[test]
    fn too_large_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = CommitLog::new(dir.path(), 100);
        log.load().unwrap();
        let mut w = WriterToken::new();
        assert!(matches!(
            log.reserve(&mut w, 93),
            Err(StoreError::MessageIllegal(_))
        ));
    }

    #[test]
    fn missing_middle_segment_is_reported_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let log = CommitLog::new(dir.path(), 100);
        log.load().unwrap();
        let mut w = WriterToken::new();
        for _ in 0..3 {
            put(&log, &mut w, &[1u8; 90]);
        }
        drop(log);
        fs::remove_file(dir.path().join(file_name(100))).unwrap();
        let log = CommitLog::new(dir.path(), 100);
        let err = log.load().unwrap_err().to_string();
        assert!(err.contains("00000000000000000100"), "{err}");
    }

    #[test]
    fn scan_stops_at_invalid_data_and_truncate_zeroes_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = CommitLog::new(dir.path(), 100);
        log.load().unwrap();
        let mut w = WriterToken::new();
        // "records": first byte is the length, 0 = end, 0xFF = garbage.
        put(&log, &mut w, &[10, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        put(&log, &mut w, &[5, 2, 2, 2, 2]);
        put(&log, &mut w, &[0xFF, 3, 3]);
        drop(log);
        let log = CommitLog::new(dir.path(), 100);
        log.load().unwrap();
        let mut seen = Vec::new();
        let end = log
            .scan(
                0,
                |b, _| match b[0] {
                    0 | 0xFF => ScanStep::End,
                    n => ScanStep::Record(n as u64),
                },
                |off, bytes| {
                    seen.push((off, bytes.len()));
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(seen, vec![(0, 10), (10, 5)]);
        assert_eq!(end, 15);
        log.truncate_to(end).unwrap();
        assert_eq!(log.max_offset(), 15);
        let seg = &log.segments()[0];
        assert_eq!(unsafe { seg.slice(15, 3) }, &[0, 0, 0]);
    }

    #[test]
    fn retention_never_deletes_the_segment_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let log = CommitLog::new(dir.path(), 100);
        log.load().unwrap();
        let mut w = WriterToken::new();
        for _ in 0..3 {
            put(&log, &mut w, &[1u8; 90]);
        }
        assert!(log.delete_oldest_if(|_| true));
        assert!(log.delete_oldest_if(|_| true));
        assert!(!log.delete_oldest_if(|_| true));
        assert_eq!(log.min_offset(), 200);
        assert!(log.read(0, 10).is_none());
        assert!(log.read(200, 10).is_some());
    }

    #[test]
    fn the_flusher_warms_ahead_of_the_writer_between_rounds_without_touching_records() {
        let dir = tempfile::tempdir().unwrap();
        let seg_bytes = 16u64 << 20;
        let log = CommitLog::new(dir.path(), seg_bytes);
        log.load().unwrap();
        log.set_warmer(Warmer::new(4 << 20, seg_bytes));
        let mut w = WriterToken::new();
        let record = vec![0x5Au8; 3000];
        let mut end = 0;
        for round in 0..40 {
            for _ in 0..20 {
                end = put(&log, &mut w, &record) + record.len() as u64;
            }
            log.sync_range(0, end).unwrap();
            log.between_rounds();
            let warmed = log.fence.warmed();
            if round > 0 {
                assert!(
                    warmed > end,
                    "round {round}: warmed {warmed} <= written {end}"
                );
            }
            assert!(warmed <= end + (4 << 20) + crate::warm::WARM_CHUNK);
        }
        // Every record is intact in the mapping and in the file; the warmed tail is zeros.
        let file = std::fs::read(dir.path().join(file_name(0))).unwrap();
        for at in (0..end as usize).step_by(record.len()) {
            assert_eq!(&file[at..at + record.len()], &record[..], "record at {at}");
            assert_eq!(&log.read(at as u64, record.len()).unwrap()[..], &record[..]);
        }
        assert!(file[end as usize..log.fence.warmed() as usize]
            .iter()
            .all(|&b| b == 0));
        // The writer leaves the pages ahead to the warmer.
        assert!(!log.prefault_ahead.load(Ordering::Relaxed));
    }
}
