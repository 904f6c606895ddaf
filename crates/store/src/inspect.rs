//! Read-only inspection of a store directory, for `apogee store inspect`: CommitLog segments,
//! records, consume queues, a full verification, and the checkpoint.
//!
//! Files are opened and mapped read-only and no lock is taken, so nothing here changes a byte and the
//! inspector works on a stopped or crashed store. (On a running store it sees a moment's state, and a
//! tail still being written may show as damage.) Parsing is the store's own: records through
//! `RecordView`/`peek_record`, queue entries through `CqEntry::decode`, checkpoint slots through the
//! checkpoint module.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use apogee_protocol::message::hash::tags_code;
use apogee_protocol::message::properties::keys;
use apogee_protocol::message::record::{peek_record, RecordHead, RecordView};
use apogee_protocol::message::sysflag::TransactionType;
use memmap2::Mmap;

use crate::checkpoint::{check_slot, CheckpointData, SLOT_BYTES};
use crate::consume_queue::{CqEntry, CQ_ENTRY_BYTES};
use crate::error::{Result, StoreError};
use crate::segment::{file_name, parse_file_name};

/// Queue entries whose tags code is a delivery time rather than a tags hash.
const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// Size of a blank filler entry in a consume queue.
const CQ_BLANK_SIZE: u32 = i32::MAX as u32;
/// How far past the apparent end of the log `verify` looks for stray data.
const TAIL_CHECK_BYTES: usize = 4 * 1024 * 1024;

/// One file mapped read-only. Bytes past the file's length read as absent (a segment shorter than
/// its configured size is one whose creation was cut short; the store extends it with zeros).
struct MappedFile {
    start: u64,
    path: PathBuf,
    file_bytes: u64,
    map: Option<Mmap>,
}

impl MappedFile {
    fn open(path: &Path, start: u64) -> Result<MappedFile> {
        let file = File::open(path).map_err(|e| StoreError::io(path.display(), e))?;
        let file_bytes = file
            .metadata()
            .map_err(|e| StoreError::io(path.display(), e))?
            .len();
        let map = if file_bytes == 0 {
            None
        } else {
            // SAFETY: a read-only shared mapping. The store never shrinks a file it has mapped (it
            // preallocates, zeroes and unlinks), so the mapped range stays backed.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| StoreError::io(path.display(), e))?;
            let _ = map.advise(memmap2::Advice::Sequential);
            Some(map)
        };
        Ok(MappedFile {
            start,
            path: path.to_path_buf(),
            file_bytes,
            map,
        })
    }

    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    fn name(&self) -> String {
        file_name(self.start)
    }
}

/// Numbered files (`00000000000000000000` ...) in `dir`, sorted by the offset in their name.
fn numbered_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(dir.display(), e)),
    };
    let mut out: Vec<(u64, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let start = e.file_name().to_str().and_then(parse_file_name)?;
            Some((start, e.path()))
        })
        .collect();
    out.sort_unstable_by_key(|(s, _)| *s);
    Ok(out)
}

/// A stored record as the inspector shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    /// Where the record starts in the CommitLog.
    pub offset: u64,
    pub size: u32,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    /// PHYSICALOFFSET as stored; equals `offset` in a sound log.
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp_ms: i64,
    pub store_timestamp_ms: i64,
    pub tags: Option<String>,
    pub keys: Option<String>,
    pub uniq_key: Option<String>,
    pub body_len: usize,
    /// BODYCRC matches the body.
    pub crc_ok: bool,
}

impl RecordSummary {
    fn new(offset: u64, v: &RecordView<'_>) -> RecordSummary {
        RecordSummary {
            offset,
            size: v.total_size() as u32,
            topic: v.topic().into_owned(),
            queue_id: v.queue_id,
            queue_offset: v.queue_offset,
            physical_offset: v.physical_offset,
            sys_flag: v.sys_flag,
            born_timestamp_ms: v.born_timestamp,
            store_timestamp_ms: v.store_timestamp,
            tags: v.tags().map(|t| t.into_owned()),
            keys: v.property(keys::KEYS).map(|t| t.into_owned()),
            uniq_key: v.uniq_key().map(|t| t.into_owned()),
            body_len: v.body.len(),
            crc_ok: v.body_crc_matches(),
        }
    }
}

/// What a walk of the CommitLog meets, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogItem {
    Record(RecordSummary),
    /// The filler that ends a full segment.
    Blank {
        offset: u64,
        len: u64,
    },
    /// Zeros where a record would start: the end of the data (in the last segment, the end of the
    /// log; in an older segment, damage).
    End {
        offset: u64,
        last_segment: bool,
    },
    /// Bytes that are not a valid record; the walk resumes at the next segment.
    Damaged {
        offset: u64,
        reason: String,
    },
    /// Segment files missing between `from` and `to`.
    Missing {
        from: u64,
        to: u64,
    },
}

/// How the data of a segment ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentState {
    /// Ends with a blank filler: the writer moved on to the next segment.
    Full,
    /// Ends with zeros: the segment being written (or, for an older segment, damage).
    Open,
    /// Stops at bytes that are not a valid record.
    Damaged(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub name: String,
    pub start: u64,
    pub file_bytes: u64,
    pub records: u64,
    pub first_store_timestamp_ms: Option<i64>,
    pub last_store_timestamp_ms: Option<i64>,
    /// CommitLog offset where the segment's records end.
    pub write_position: u64,
    pub state: SegmentState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub topic: String,
    pub queue_id: i32,
    pub files: usize,
    pub entries_per_file: u64,
    /// First logical offset whose record is still in the CommitLog.
    pub min_offset: u64,
    /// First entry never written: the next logical offset.
    pub max_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDump {
    pub info: QueueInfo,
    /// (logical offset, entry), from the requested offset on.
    pub entries: Vec<(u64, CqEntry)>,
}

/// One checkpoint slot: its sequence number and data, or why it is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSlot {
    pub index: usize,
    pub state: std::result::Result<(u64, CheckpointData), String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    /// None if the file does not exist.
    pub file_bytes: Option<u64>,
    pub slots: Vec<CheckpointSlot>,
    /// The slot the store would use: the valid one with the higher sequence number.
    pub newest: Option<usize>,
}

impl CheckpointReport {
    pub fn newest_data(&self) -> Option<CheckpointData> {
        let i = self.newest?;
        self.slots.get(i)?.state.as_ref().ok().map(|(_, d)| *d)
    }
}

/// Something wrong that `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, relative to the store root.
    pub file: String,
    /// CommitLog offset, or logical offset for a queue entry.
    pub offset: Option<u64>,
    pub what: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: usize,
    pub log_min_offset: u64,
    /// End of the last valid record of the newest segment.
    pub log_end_offset: u64,
    pub records: u64,
    pub record_bytes: u64,
    pub blanks: u64,
    pub crc_errors: u64,
    pub queues: usize,
    pub queue_entries: u64,
    /// Records in the log whose queue has no entry for them yet (dispatch was behind at a crash;
    /// recovery adds them).
    pub undispatched_records: u64,
    /// `abort` exists: the store is running or did not stop cleanly.
    pub abort_present: bool,
    pub problem_count: u64,
    /// The first problems found, up to the limit given to `verify`.
    pub problems: Vec<Problem>,
    /// Things worth knowing that are not damage.
    pub notes: Vec<String>,
}

impl VerifyReport {
    pub fn is_damaged(&self) -> bool {
        self.problem_count > 0
    }

    fn problem(&mut self, limit: usize, file: String, offset: Option<u64>, what: String) {
        self.problem_count += 1;
        if self.problems.len() < limit {
            self.problems.push(Problem { file, offset, what });
        }
    }
}

/// What one step of a segment walk finds at a position.
enum Step<'a> {
    Record(RecordView<'a>),
    Blank(u64),
    End,
    Bad(String),
}

/// How a segment walk stopped.
enum SegStop {
    Blank(u64),
    Zeros,
    Bad(String),
    /// The callback asked to stop.
    Caller,
}

fn step_at(bytes: &[u8], pos: usize, segment_bytes: u64) -> Step<'_> {
    let rest = bytes.get(pos..).unwrap_or(&[]);
    if rest.len() < 4 || rest[..4] == [0u8; 4] {
        return Step::End;
    }
    match peek_record(rest) {
        Err(e) => Step::Bad(e.to_string()),
        Ok(RecordHead::Blank { total_size }) => {
            if pos as u64 + total_size as u64 == segment_bytes {
                Step::Blank(total_size as u64)
            } else {
                Step::Bad(format!(
                    "blank filler of {total_size} bytes at segment position {pos} does not end \
                     at the segment end ({segment_bytes})"
                ))
            }
        }
        Ok(RecordHead::Message { .. }) => match RecordView::parse(rest) {
            Ok(v) => Step::Record(v),
            Err(e) => Step::Bad(e.to_string()),
        },
    }
}

struct QueueFiles {
    topic: String,
    queue_id: i32,
    entries_per_file: u64,
    files: Vec<MappedFile>,
}

impl QueueFiles {
    fn first_logical(&self) -> u64 {
        self.files
            .first()
            .map(|f| f.start / CQ_ENTRY_BYTES)
            .unwrap_or(0)
    }

    fn end_logical(&self) -> u64 {
        self.files
            .last()
            .map(|f| f.start / CQ_ENTRY_BYTES + f.file_bytes / CQ_ENTRY_BYTES)
            .unwrap_or(0)
    }

    fn entry(&self, logical: u64) -> Option<CqEntry> {
        let byte = logical.checked_mul(CQ_ENTRY_BYTES)?;
        let i = self
            .files
            .partition_point(|f| f.start <= byte)
            .checked_sub(1)?;
        let f = self.files.get(i)?;
        let pos = usize::try_from(byte - f.start).ok()?;
        let b = f.bytes().get(pos..pos + CQ_ENTRY_BYTES as usize)?;
        Some(CqEntry::decode(b))
    }

    /// The first entry never written, scanning from the first file.
    fn max_offset(&self) -> u64 {
        let mut at = self.first_logical();
        let end = self.end_logical();
        while at < end {
            match self.entry(at) {
                Some(e) if e.is_written() => at += 1,
                _ => break,
            }
        }
        at
    }
}

/// A read-only view of a store directory.
pub struct Inspector {
    root: PathBuf,
    segment_bytes: u64,
    segments: Vec<MappedFile>,
}

impl Inspector {
    /// Maps every CommitLog segment under `root` read-only. The segment size is taken from the
    /// files (they are all created at full size).
    pub fn open(root: impl AsRef<Path>) -> Result<Inspector> {
        let root = root.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(StoreError::io(
                root.display(),
                io::Error::new(io::ErrorKind::NotFound, "no such store directory"),
            ));
        }
        let mut segments = Vec::new();
        for (start, path) in numbered_files(&root.join("commitlog"))? {
            segments.push(MappedFile::open(&path, start)?);
        }
        let by_size = segments.iter().map(|s| s.file_bytes).max().unwrap_or(0);
        // A store with one short segment (creation cut short) still names its next one by the
        // configured size: prefer the spacing of the names when it is smaller than the files.
        let by_names = segments
            .windows(2)
            .map(|w| w[1].start - w[0].start)
            .min()
            .unwrap_or(u64::MAX);
        let segment_bytes = by_size.max(1).min(by_names);
        Ok(Inspector {
            root,
            segment_bytes,
            segments,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// CommitLog segment size as found on disk.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// `abort` exists: the store is running or did not stop cleanly.
    pub fn abort_present(&self) -> bool {
        self.root.join("abort").exists()
    }

    /// First offset of the oldest segment, and end of the newest segment's file range.
    pub fn log_bounds(&self) -> (u64, u64) {
        let min = self.segments.first().map(|s| s.start).unwrap_or(0);
        let max = self
            .segments
            .last()
            .map(|s| s.start + self.segment_bytes)
            .unwrap_or(0);
        (min, max)
    }

    fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn segment_index(&self, offset: u64) -> Option<usize> {
        let i = self
            .segments
            .partition_point(|s| s.start <= offset)
            .checked_sub(1)?;
        (offset < self.segments[i].start + self.segment_bytes).then_some(i)
    }

    /// Walks segment `idx` from byte `pos`, calling `on_record` for every valid record until it
    /// returns false. Returns where and how the walk stopped.
    fn walk_segment<'a>(
        &'a self,
        idx: usize,
        mut pos: usize,
        on_record: &mut dyn FnMut(u64, &RecordView<'a>) -> bool,
    ) -> (u64, SegStop) {
        let seg = &self.segments[idx];
        let bytes = seg.bytes();
        loop {
            let at = seg.start + pos as u64;
            match step_at(bytes, pos, self.segment_bytes) {
                Step::Record(v) => {
                    if !on_record(at, &v) {
                        return (at, SegStop::Caller);
                    }
                    pos += v.total_size();
                }
                Step::Blank(len) => return (at, SegStop::Blank(len)),
                Step::End => return (at, SegStop::Zeros),
                Step::Bad(reason) => return (at, SegStop::Bad(reason)),
            }
        }
    }

    /// Walks the log from `from` (a record boundary; `None` = the oldest record), calling `f` for
    /// every item until it returns false or the log ends.
    pub fn walk(&self, from: Option<u64>, f: &mut dyn FnMut(LogItem) -> bool) {
        let from = from.unwrap_or(self.log_bounds().0);
        let Some(mut idx) = self.segment_index(from) else {
            return;
        };
        let mut pos = (from - self.segments[idx].start) as usize;
        loop {
            let last = idx + 1 == self.segments.len();
            let mut go_on = true;
            let (at, stop) = self.walk_segment(idx, pos, &mut |off, v| {
                go_on = f(LogItem::Record(RecordSummary::new(off, v)));
                go_on
            });
            let item = match stop {
                SegStop::Caller => return,
                SegStop::Blank(len) => LogItem::Blank { offset: at, len },
                SegStop::Zeros => LogItem::End {
                    offset: at,
                    last_segment: last,
                },
                SegStop::Bad(reason) => LogItem::Damaged { offset: at, reason },
            };
            if !f(item) || last {
                return;
            }
            let expected = self.segments[idx].start + self.segment_bytes;
            idx += 1;
            pos = 0;
            if self.segments[idx].start != expected
                && !f(LogItem::Missing {
                    from: expected,
                    to: self.segments[idx].start,
                })
            {
                return;
            }
        }
    }

    /// One line per CommitLog segment.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        (0..self.segments.len())
            .map(|idx| {
                let mut records = 0u64;
                let mut first = None;
                let mut last = None;
                let (at, stop) = self.walk_segment(idx, 0, &mut |_, v| {
                    records += 1;
                    first.get_or_insert(v.store_timestamp);
                    last = Some(v.store_timestamp);
                    true
                });
                let seg = &self.segments[idx];
                SegmentInfo {
                    name: seg.name(),
                    start: seg.start,
                    file_bytes: seg.file_bytes,
                    records,
                    first_store_timestamp_ms: first,
                    last_store_timestamp_ms: last,
                    write_position: at,
                    state: match stop {
                        SegStop::Blank(_) => SegmentState::Full,
                        SegStop::Zeros | SegStop::Caller => SegmentState::Open,
                        SegStop::Bad(reason) => SegmentState::Damaged(reason),
                    },
                }
            })
            .collect()
    }

    /// Every (topic, queueId) that has a consume-queue directory.
    pub fn queue_ids(&self) -> Result<Vec<(String, i32)>> {
        let root = self.root.join("consumequeue");
        let topics = match fs::read_dir(&root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(root.display(), e)),
        };
        let mut out = Vec::new();
        for t in topics.filter_map(|e| e.ok()) {
            let Some(topic) = t.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(qdirs) = fs::read_dir(t.path()) else {
                continue;
            };
            for qd in qdirs.filter_map(|e| e.ok()) {
                if let Some(qid) = qd.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                    out.push((topic.clone(), qid));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn open_queue(&self, topic: &str, queue_id: i32) -> Result<QueueFiles> {
        let dir = self
            .root
            .join("consumequeue")
            .join(topic)
            .join(queue_id.to_string());
        let mut files = Vec::new();
        for (start, path) in numbered_files(&dir)? {
            files.push(MappedFile::open(&path, start)?);
        }
        let entries_per_file = files
            .iter()
            .map(|f| f.file_bytes / CQ_ENTRY_BYTES)
            .max()
            .unwrap_or(0);
        Ok(QueueFiles {
            topic: topic.to_string(),
            queue_id,
            entries_per_file,
            files,
        })
    }

    fn queue_info(&self, q: &QueueFiles) -> QueueInfo {
        let max = q.max_offset();
        // As the store does: the minimum moves past entries whose records retention removed.
        let log_min = self.log_bounds().0;
        let mut min = q.first_logical();
        while min < max {
            match q.entry(min) {
                Some(e) if e.commitlog_offset < log_min || e.size == CQ_BLANK_SIZE => min += 1,
                _ => break,
            }
        }
        QueueInfo {
            topic: q.topic.clone(),
            queue_id: q.queue_id,
            files: q.files.len(),
            entries_per_file: q.entries_per_file,
            min_offset: min,
            max_offset: max,
        }
    }

    /// Min and max offsets of every consume queue.
    pub fn queues(&self) -> Result<Vec<QueueInfo>> {
        self.queue_ids()?
            .into_iter()
            .map(|(t, q)| Ok(self.queue_info(&self.open_queue(&t, q)?)))
            .collect()
    }

    /// Up to `limit` written entries of one queue from logical offset `from` (default: its min).
    pub fn queue(
        &self,
        topic: &str,
        queue_id: i32,
        from: Option<u64>,
        limit: usize,
    ) -> Result<QueueDump> {
        let q = self.open_queue(topic, queue_id)?;
        let info = self.queue_info(&q);
        let mut entries = Vec::new();
        let mut at = from.unwrap_or(info.min_offset).max(q.first_logical());
        while at < info.max_offset && entries.len() < limit {
            if let Some(e) = q.entry(at) {
                entries.push((at, e));
            }
            at += 1;
        }
        Ok(QueueDump { info, entries })
    }

    /// Both checkpoint slots.
    pub fn checkpoint(&self) -> Result<CheckpointReport> {
        let path = self.root.join("checkpoint");
        let bytes = match fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io(path.display(), e)),
        };
        let file_bytes = bytes.as_ref().map(|b| b.len() as u64);
        let mut buf = bytes.unwrap_or_default();
        buf.resize(buf.len().max(2 * SLOT_BYTES), 0);
        let slots: Vec<CheckpointSlot> = (0..2)
            .map(|i| CheckpointSlot {
                index: i,
                state: if file_bytes.unwrap_or(0) < ((i + 1) * SLOT_BYTES) as u64 {
                    Err("missing (file too short)".into())
                } else {
                    check_slot(&buf[i * SLOT_BYTES..(i + 1) * SLOT_BYTES])
                },
            })
            .collect();
        let newest = slots
            .iter()
            .filter_map(|s| s.state.as_ref().ok().map(|(seq, _)| (*seq, s.index)))
            // The store prefers slot 0 on a tie.
            .max_by_key(|(seq, i)| (*seq, std::cmp::Reverse(*i)))
            .map(|(_, i)| i);
        Ok(CheckpointReport {
            file_bytes,
            slots,
            newest,
        })
    }

    /// Walks the whole log and every consume queue, checking each record's layout, CRC and offsets
    /// and each queue entry against the record it points at. Keeps the first `max_problems`.
    pub fn verify(&self, max_problems: usize) -> Result<VerifyReport> {
        let mut r = VerifyReport {
            segments: self.segments.len(),
            log_min_offset: self.log_bounds().0,
            abort_present: self.abort_present(),
            ..VerifyReport::default()
        };
        let lim = max_problems;
        let cl = |s: &MappedFile| self.rel(&s.path);

        // ---- CommitLog ---------------------------------------------------------------------
        let mut next_queue_offset: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut log_end = r.log_min_offset;
        for idx in 0..self.segments.len() {
            let seg = &self.segments[idx];
            let last = idx + 1 == self.segments.len();
            if idx > 0 {
                let expected = self.segments[idx - 1].start + self.segment_bytes;
                if seg.start != expected {
                    r.problem(
                        lim,
                        cl(seg),
                        Some(expected),
                        format!(
                            "segment {} is missing (found {} next)",
                            file_name(expected),
                            seg.name()
                        ),
                    );
                }
            }
            if seg.file_bytes != self.segment_bytes {
                r.problem(
                    lim,
                    cl(seg),
                    None,
                    format!(
                        "file is {} bytes, other segments are {}",
                        seg.file_bytes, self.segment_bytes
                    ),
                );
            }
            let mut found: Vec<Problem> = Vec::new();
            let mut records = 0u64;
            let mut bytes = 0u64;
            let mut crc_errors = 0u64;
            let (at, stop) = self.walk_segment(idx, 0, &mut |off, v| {
                records += 1;
                bytes += v.total_size() as u64;
                let mut bad = |what: String| {
                    found.push(Problem {
                        file: cl(seg),
                        offset: Some(off),
                        what,
                    })
                };
                if !v.body_crc_matches() {
                    crc_errors += 1;
                    bad(format!(
                        "BODYCRC {:#010X} does not match the body: a crash recovery scanning \
                         this record would cut the log here",
                        v.body_crc
                    ));
                }
                if v.physical_offset != off as i64 {
                    bad(format!(
                        "PHYSICALOFFSET is {} but the record is at {off}",
                        v.physical_offset
                    ));
                }
                let tx = TransactionType::from_sys_flag(v.sys_flag);
                if matches!(tx, TransactionType::NotType | TransactionType::Commit) {
                    let key = (v.topic().into_owned(), v.queue_id);
                    if let Some(next) = next_queue_offset.get(&key) {
                        if v.queue_offset != *next {
                            bad(format!(
                                "QUEUEOFFSET {} of {}/{} does not follow {}",
                                v.queue_offset,
                                key.0,
                                key.1,
                                next - 1
                            ));
                        }
                    }
                    next_queue_offset.insert(key, v.queue_offset + 1);
                }
                true
            });
            r.records += records;
            r.record_bytes += bytes;
            r.crc_errors += crc_errors;
            for p in found {
                r.problem(lim, p.file, p.offset, p.what);
            }
            match stop {
                SegStop::Blank(_) => {
                    r.blanks += 1;
                    if last {
                        log_end = seg.start + self.segment_bytes;
                        r.notes.push(
                            "the newest segment is full; the next append creates a new one".into(),
                        );
                    }
                }
                SegStop::Zeros | SegStop::Caller => {
                    if last {
                        log_end = at;
                        let pos = (at - seg.start) as usize;
                        let tail = seg.bytes().get(pos..).unwrap_or(&[]);
                        let tail = &tail[..tail.len().min(TAIL_CHECK_BYTES)];
                        if let Some(i) = tail.iter().position(|&b| b != 0) {
                            r.problem(
                                lim,
                                cl(seg),
                                Some(at + i as u64),
                                format!(
                                    "non-zero bytes after the end of the log at {at}: a record \
                                     header there may be damaged, hiding the records after it"
                                ),
                            );
                        }
                    } else {
                        r.problem(
                            lim,
                            cl(seg),
                            Some(at),
                            "zeros before the segment end without a blank filler".into(),
                        );
                    }
                }
                SegStop::Bad(reason) => {
                    if last {
                        log_end = at;
                    }
                    r.problem(
                        lim,
                        cl(seg),
                        Some(at),
                        format!(
                            "not a valid record ({reason}); the rest of the segment is unreadable"
                        ),
                    );
                }
            }
        }
        r.log_end_offset = log_end;

        // ---- Checkpoint --------------------------------------------------------------------
        let cp = self.checkpoint()?;
        match cp.newest_data() {
            None if !self.segments.is_empty() => {
                r.notes
                    .push("no valid checkpoint slot: recovery would rescan the whole log".into());
            }
            None => {}
            Some(d) => {
                if d.commitlog_flushed_offset > log_end {
                    r.problem(
                        lim,
                        "checkpoint".into(),
                        Some(d.commitlog_flushed_offset),
                        format!(
                            "says the log is durable up to {} but its records end at {log_end}",
                            d.commitlog_flushed_offset
                        ),
                    );
                }
                if d.dispatch_flushed_offset > log_end {
                    r.problem(
                        lim,
                        "checkpoint".into(),
                        Some(d.dispatch_flushed_offset),
                        format!(
                            "says records are dispatched up to {} but the log ends at {log_end}",
                            d.dispatch_flushed_offset
                        ),
                    );
                }
            }
        }

        // ---- Consume queues ----------------------------------------------------------------
        let ids = self.queue_ids()?;
        r.queues = ids.len();
        let mut seen: BTreeSet<(String, i32)> = BTreeSet::new();
        for (topic, qid) in ids {
            let q = self.open_queue(&topic, qid)?;
            self.verify_queue(&q, log_end, &mut r, lim);
            let max = q.max_offset() as i64;
            let key = (topic, qid);
            if let Some(next) = next_queue_offset.get(&key) {
                if *next > max {
                    r.undispatched_records += (*next - max) as u64;
                }
            }
            seen.insert(key);
        }
        for (key, next) in &next_queue_offset {
            if !seen.contains(key) {
                r.undispatched_records += (*next).max(0) as u64;
            }
        }
        if r.undispatched_records > 0 {
            let msg = format!(
                "{} record(s) in the log have no consume-queue entry yet",
                r.undispatched_records
            );
            if r.abort_present {
                r.notes
                    .push(format!("{msg}; the next open's recovery adds them"));
            } else {
                r.problem(
                    lim,
                    "consumequeue".into(),
                    None,
                    format!("{msg}, although the store stopped cleanly"),
                );
            }
        }
        if r.abort_present {
            r.notes
                .push("abort file present: the store is running or did not stop cleanly".into());
        }
        Ok(r)
    }

    fn verify_queue(&self, q: &QueueFiles, log_end: u64, r: &mut VerifyReport, lim: usize) {
        let name = |logical: u64| {
            let byte = logical * CQ_ENTRY_BYTES;
            let i = q
                .files
                .partition_point(|f| f.start <= byte)
                .saturating_sub(1);
            q.files
                .get(i)
                .map(|f| self.rel(&f.path))
                .unwrap_or_else(|| format!("consumequeue/{}/{}", q.topic, q.queue_id))
        };
        let per_file = q.entries_per_file * CQ_ENTRY_BYTES;
        for (i, f) in q.files.iter().enumerate() {
            if f.file_bytes != per_file || (per_file > 0 && f.start % per_file != 0) {
                r.problem(
                    lim,
                    self.rel(&f.path),
                    None,
                    format!(
                        "file of {} bytes at {} does not fit files of {per_file} bytes",
                        f.file_bytes, f.start
                    ),
                );
            }
            if i > 0 && f.start != q.files[i - 1].start + q.files[i - 1].file_bytes {
                r.problem(
                    lim,
                    self.rel(&f.path),
                    None,
                    "not contiguous with the previous queue file".into(),
                );
            }
        }
        let log_min = self.log_bounds().0;
        let check_tags = q.topic != SCHEDULE_TOPIC;
        let max = q.max_offset();
        for logical in q.first_logical()..max {
            let Some(e) = q.entry(logical) else { break };
            if e.size == CQ_BLANK_SIZE {
                continue;
            }
            r.queue_entries += 1;
            if e.commitlog_offset < log_min {
                continue; // retention removed the record
            }
            if e.commitlog_offset + e.size as u64 > log_end {
                r.problem(
                    lim,
                    name(logical),
                    Some(logical),
                    format!(
                        "entry points at {}+{} past the end of the log ({log_end})",
                        e.commitlog_offset, e.size
                    ),
                );
                continue;
            }
            let what = match self.record_at(e.commitlog_offset) {
                Step::Record(v) => {
                    let mut diffs = Vec::new();
                    if v.total_size() != e.size as usize {
                        diffs.push(format!("size {} vs {}", e.size, v.total_size()));
                    }
                    if v.topic != q.topic.as_bytes() || v.queue_id != q.queue_id {
                        diffs.push(format!("record is of {}/{}", v.topic(), v.queue_id));
                    }
                    if v.queue_offset != logical as i64 {
                        diffs.push(format!("record's QUEUEOFFSET is {}", v.queue_offset));
                    }
                    if check_tags {
                        let code = tags_code(v.tags().as_deref());
                        if code != e.tags_code {
                            diffs.push(format!("tags code {} vs {code}", e.tags_code));
                        }
                    }
                    (!diffs.is_empty()).then(|| diffs.join(", "))
                }
                Step::Blank(_) => Some("points at a blank filler".into()),
                Step::End => Some("points at zeros".into()),
                Step::Bad(reason) => {
                    Some(format!("points at bytes that are not a record: {reason}"))
                }
            };
            if let Some(what) = what {
                r.problem(
                    lim,
                    name(logical),
                    Some(logical),
                    format!("entry -> {}: {what}", e.commitlog_offset),
                );
            }
        }
        // Nothing may follow the first unwritten entry.
        let end = q.end_logical();
        let mut at = max;
        while at < end {
            if let Some(e) = q.entry(at) {
                if e.is_written() || e.commitlog_offset != 0 || e.tags_code != 0 {
                    r.problem(
                        lim,
                        name(at),
                        Some(at),
                        format!("data after the queue's end at entry {max}"),
                    );
                    break;
                }
            }
            at += 1;
        }
    }

    fn record_at(&self, offset: u64) -> Step<'_> {
        let Some(idx) = self.segment_index(offset) else {
            return Step::Bad("no segment holds this offset".into());
        };
        let seg = &self.segments[idx];
        step_at(
            seg.bytes(),
            (offset - seg.start) as usize,
            self.segment_bytes,
        )
    }
}
