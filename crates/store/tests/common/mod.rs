//! Shared by the crash and torn-write suites: deterministic records that can be rebuilt from their id
//! alone (so any record found after a crash is checked byte for byte), a raw walk of the CommitLog
//! files, and the checks every recovered store must pass.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::RwLock;

use apogee_protocol::message::properties::{keys, MessageProperties};
use apogee_protocol::message::record::{
    patch_physical_offset, patch_queue_offset, patch_store_timestamp, peek_record, MessageRecord,
    RecordHead, RecordView,
};
use apogee_store::{MessageStore, StoreConfig};
use bytes::Bytes;

/// Spawning a child forks this process, and for a moment the child holds a copy of every open
/// descriptor, the store `lock` of other tests included, until its exec closes them (which the kernel
/// does after `spawn` may already have returned). Tests run in parallel: opens wait until a spawned
/// child has shown it runs the new program, or they could find their own directory locked.
static SPAWN: RwLock<()> = RwLock::new(());

/// Opens a store, never while a child is between fork and exec.
pub fn open(config: StoreConfig) -> MessageStore {
    let _no_fork_in_progress = SPAWN.read().unwrap_or_else(|p| p.into_inner());
    MessageStore::open(config).unwrap()
}

/// Spawns `cmd` with its stdout piped and returns once the child has printed its first non-empty
/// line (the test harness's greeting), i.e. once it runs the new program.
pub fn spawn(cmd: &mut Command) -> (Child, BufReader<ChildStdout>) {
    let _forking = SPAWN.write().unwrap_or_else(|p| p.into_inner());
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    while first.trim().is_empty() {
        first.clear();
        assert!(out.read_line(&mut first).unwrap() > 0, "child said nothing");
    }
    (child, out)
}

/// Two topics: a short one (V1 records) and one longer than 127 bytes (V2 records).
pub fn topics() -> [String; 2] {
    ["CrashT".to_string(), format!("Long{}", "x".repeat(150))]
}

/// A record's identity, written at the start of its body: `r<round>t<thread>s<seq>|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    pub round: u32,
    pub thread: u32,
    pub seq: u32,
}

/// SplitMix64: a fixed-seed PRNG, so every run draws the same "random" numbers.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

impl Id {
    fn seed(&self) -> u64 {
        (self.round as u64) << 40 ^ (self.thread as u64) << 20 ^ self.seq as u64
    }

    pub fn topic(&self) -> String {
        topics()[(self.thread % 2) as usize].clone()
    }

    pub fn queue_id(&self) -> i32 {
        ((self.thread + self.seq) % 3) as i32
    }

    /// Varied sizes (a few bytes to ~3 KiB) and contents, all derived from the id.
    pub fn body(&self) -> Vec<u8> {
        let mut rng = Rng(self.seed());
        let mut body = format!("r{}t{}s{}|", self.round, self.thread, self.seq).into_bytes();
        let filler = match rng.range(0, 9) {
            0 => 0,
            1..=6 => rng.range(1, 300),
            _ => rng.range(300, 3000),
        };
        body.extend((0..filler).map(|_| rng.next_u64() as u8));
        body
    }

    /// Keys of the record, if any: one or two tokens unique to the record, on two records in three.
    pub fn keys(&self) -> Vec<String> {
        match self.seq % 3 {
            0 => vec![self.key("a"), self.key("b")],
            1 => vec![self.key("a")],
            _ => Vec::new(),
        }
    }

    fn key(&self, which: &str) -> String {
        format!("k{which}-{}-{}-{}", self.round, self.thread, self.seq)
    }

    pub fn uniq_key(&self) -> String {
        format!("U-{}-{}-{}", self.round, self.thread, self.seq)
    }

    /// The record as a producer sends it (offsets and store time zero).
    pub fn record(&self) -> Vec<u8> {
        let mut props = MessageProperties::new();
        props.set_tags(format!("Tag{}", self.thread));
        let keys = self.keys();
        if !keys.is_empty() {
            props.insert(keys::KEYS, keys.join(" "));
        }
        props.set_uniq_key(self.uniq_key());
        let mut rec = MessageRecord::new(self.topic(), Bytes::from(self.body()), props.to_bytes());
        rec.queue_id = self.queue_id();
        rec.flag = self.seq as i32;
        rec.born_timestamp = 1_700_000_000_000 + self.seq as i64;
        // One in five from an IPv6 host: longer records with other SYSFLAG bits.
        rec.born_host = match self.seq % 5 {
            0 => "[::1]:5000".parse().unwrap(),
            _ => "10.0.0.1:5000".parse().unwrap(),
        };
        rec.store_host = "10.0.0.2:10911".parse().unwrap();
        rec.encode().unwrap().to_vec()
    }

    /// The record exactly as the store must hold it at `physical` / `queue_offset`.
    pub fn stored(&self, physical: u64, queue_offset: u64, store_ts: i64) -> Vec<u8> {
        let mut rec = self.record();
        patch_queue_offset(&mut rec, queue_offset as i64).unwrap();
        patch_physical_offset(&mut rec, physical as i64).unwrap();
        patch_store_timestamp(&mut rec, store_ts).unwrap();
        rec
    }

    /// Parses the id back from a stored body.
    pub fn from_body(body: &[u8]) -> Option<Id> {
        let end = body.iter().position(|b| *b == b'|')?;
        let s = std::str::from_utf8(&body[..end]).ok()?;
        let s = s.strip_prefix('r')?;
        let (round, rest) = s.split_once('t')?;
        let (thread, seq) = rest.split_once('s')?;
        Some(Id {
            round: round.parse().ok()?,
            thread: thread.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// A record as found in the log.
#[derive(Debug, Clone)]
pub struct Found {
    pub offset: u64,
    pub bytes: Bytes,
}

/// Walks the CommitLog through the store's API from its min to its max offset. Every record must
/// parse, match its BODYCRC and carry its own offset; blank fillers must end exactly at a segment
/// boundary; the walk must end exactly at the max offset.
pub fn walk_log(store: &MessageStore) -> Vec<Found> {
    let seg = store.config().commitlog_segment_bytes;
    let end = store.commitlog_max_offset();
    let mut at = store.commitlog_min_offset();
    let mut out = Vec::new();
    while at < end {
        let bytes = store
            .message_at(at)
            .unwrap_or_else(|| panic!("no record at {at} (log ends at {end})"));
        match peek_record(&bytes).unwrap() {
            RecordHead::Blank { total_size } => {
                assert_eq!(
                    (at + total_size as u64) % seg,
                    0,
                    "blank at {at} does not end at a segment boundary"
                );
                at += total_size as u64;
            }
            RecordHead::Message { .. } => {
                let v = RecordView::parse(&bytes).unwrap();
                assert!(v.body_crc_matches(), "record at {at}: BODYCRC mismatch");
                assert_eq!(
                    v.physical_offset, at as i64,
                    "PHYSICALOFFSET of the record at {at}"
                );
                at += bytes.len() as u64;
                out.push(Found {
                    offset: at - bytes.len() as u64,
                    bytes,
                });
            }
        }
    }
    assert_eq!(
        at, end,
        "the last record must end exactly at the log's max offset"
    );
    out
}

/// The newest CommitLog segment file, by name.
pub fn newest_segment(root: &Path) -> (u64, PathBuf) {
    let mut segs: Vec<(u64, PathBuf)> = fs::read_dir(root.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            Some((name.parse::<u64>().ok()?, e.path()))
        })
        .collect();
    segs.sort();
    segs.pop().expect("no commitlog segment")
}

/// Nothing follows the last record: no segment file starts past `max_offset`, and every byte of the
/// newest one after it is zero.
pub fn assert_tail_is_zero(root: &Path, max_offset: u64) {
    let (start, path) = newest_segment(root);
    assert!(
        start <= max_offset,
        "segment {} starts past the log's end {max_offset}",
        path.display()
    );
    let data = fs::read(&path).unwrap();
    let from = (max_offset - start) as usize;
    if let Some(i) = data[from..].iter().position(|b| *b != 0) {
        panic!(
            "byte {} after the log's end {max_offset} is not zero",
            max_offset + i as u64
        );
    }
}

/// Records found on disk by reading the segment files directly (the store closed or dead): offset and
/// length of every valid record, in log order.
pub fn records_on_disk(root: &Path, segment_bytes: u64) -> Vec<(u64, usize)> {
    let mut segs: Vec<(u64, PathBuf)> = fs::read_dir(root.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u64>().ok()?, e.path())))
        .collect();
    segs.sort();
    let mut out = Vec::new();
    for (start, path) in segs {
        let data = fs::read(&path).unwrap();
        assert_eq!(data.len() as u64, segment_bytes);
        let mut pos = 0usize;
        while pos + 8 <= data.len() {
            match peek_record(&data[pos..]) {
                Ok(RecordHead::Message { .. }) => match RecordView::parse(&data[pos..]) {
                    Ok(v) if v.body_crc_matches() => {
                        out.push((start + pos as u64, v.total_size()));
                        pos += v.total_size();
                    }
                    _ => break,
                },
                _ => break,
            }
        }
    }
    out
}

/// Checks everything a recovered store promises about the records it holds, and returns them by id
/// with (physical offset, queue offset):
/// - the log is a contiguous run of valid records ending at the max offset, zeros after it;
/// - every record is one of ours, byte for byte, and appears once;
/// - per queue, QUEUEOFFSETs in log order are 0, 1, 2... and the consume queue serves exactly those
///   records at exactly those offsets, with max offset = count;
/// - every key and unique key of every record is found by lookup.
pub fn check_store(store: &MessageStore) -> HashMap<Id, (u64, u64)> {
    let root = store.config().root_dir.clone();
    let log = walk_log(store);
    assert_tail_is_zero(&root, store.commitlog_max_offset());
    let mut by_id = HashMap::new();
    let mut per_queue: BTreeMap<(String, i32), Vec<&Found>> = BTreeMap::new();
    for f in &log {
        let v = RecordView::parse(&f.bytes).unwrap();
        let id = Id::from_body(v.body)
            .unwrap_or_else(|| panic!("record at {} is not one of ours", f.offset));
        let expected = id.stored(f.offset, v.queue_offset as u64, v.store_timestamp);
        assert!(
            f.bytes[..] == expected[..],
            "record {id:?} at {} differs from what was sent",
            f.offset
        );
        assert!(
            by_id
                .insert(id, (f.offset, v.queue_offset as u64))
                .is_none(),
            "record {id:?} stored twice"
        );
        per_queue
            .entry((v.topic().into_owned(), v.queue_id))
            .or_default()
            .push(f);
    }
    let queues: Vec<(String, i32)> = per_queue.keys().cloned().collect();
    let mut listed = store.queues();
    listed.retain(|q| store.max_offset(&q.0, q.1) > 0);
    assert_eq!(listed, queues, "queues with records");
    for ((topic, q), recs) in &per_queue {
        assert_eq!(store.min_offset(topic, *q), 0);
        assert_eq!(
            store.max_offset(topic, *q),
            recs.len() as u64,
            "max offset of {}/{q}",
            &topic[..topic.len().min(12)]
        );
        for (n, f) in recs.iter().enumerate() {
            let v = RecordView::parse(&f.bytes).unwrap();
            assert_eq!(
                v.queue_offset, n as i64,
                "QUEUEOFFSET of the record at {}",
                f.offset
            );
            let served = store
                .message_at_queue_offset(topic, *q, n as u64)
                .unwrap_or_else(|| panic!("queue offset {n} of queue {q} not served"));
            assert_eq!(served, f.bytes, "queue {q} offset {n}");
        }
    }
    // Per writer thread, the surviving records are a prefix of what it sent: a record is never
    // present while an earlier one of the same thread is missing.
    let mut seqs: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
    for id in by_id.keys() {
        seqs.entry((id.round, id.thread)).or_default().push(id.seq);
    }
    for ((r, t), mut s) in seqs {
        s.sort_unstable();
        let n = s.len() as u32;
        assert!(
            s.iter().copied().eq(s[0]..s[0] + n),
            "round {r} thread {t}: records are not contiguous: {s:?}"
        );
    }
    // Every key lookup walks every index file: check a spread-out sample of a big log (soak runs).
    let step = (log.len() / 10_000).max(1);
    for f in log.iter().step_by(step).chain(log.last()) {
        let v = RecordView::parse(&f.bytes).unwrap();
        let id = Id::from_body(v.body).unwrap();
        assert_found_once(store, &id);
    }
    by_id
}

/// Every key and the unique key of `id` finds exactly its one record.
pub fn assert_found_once(store: &MessageStore, id: &Id) {
    for key in id.keys().into_iter().chain([id.uniq_key()]) {
        let found = store.query_by_key(&id.topic(), &key, 10, 0, i64::MAX);
        assert_eq!(found.len(), 1, "lookup of key {key} of {id:?}");
        let v = RecordView::parse(&found[0]).unwrap();
        assert_eq!(Id::from_body(v.body), Some(*id), "lookup of key {key}");
    }
}

/// No key of `id` finds anything.
pub fn assert_not_found(store: &MessageStore, id: &Id) {
    for key in id.keys().into_iter().chain([id.uniq_key()]) {
        let found = store.query_by_key(&id.topic(), &key, 10, 0, i64::MAX);
        assert!(
            found.is_empty(),
            "key {key} of the cut record {id:?} is still found"
        );
    }
}

/// Appends a fresh record and proves it lands at the log's end (or, if it does not fit there, at the
/// next segment behind a blank) with the next queue offset, reads back, and is found by key.
pub fn assert_fresh_append_lands_at_the_end(store: &MessageStore, id: Id) {
    let seg = store.config().commitlog_segment_bytes;
    let end = store.commitlog_max_offset();
    let qmax = store.max_offset(&id.topic(), id.queue_id());
    let mut rec = id.record();
    let len = rec.len() as u64;
    let res = store.append_blocking(&mut rec).unwrap();
    let at = res.physical_offsets[0];
    if end % seg + len + 8 <= seg {
        assert_eq!(at, end, "a fresh append must land at the log's end");
    } else {
        assert_eq!(
            at,
            (end / seg + 1) * seg,
            "a fresh append that does not fit moves on"
        );
    }
    assert_eq!(res.queue_offset, qmax);
    assert_eq!(store.commitlog_max_offset(), at + len);
    let back = store
        .message_at_queue_offset(&id.topic(), id.queue_id(), qmax)
        .unwrap();
    let v = RecordView::parse(&back).unwrap();
    assert_eq!(&back[..], &id.stored(at, qmax, v.store_timestamp)[..]);
    assert_found_once(store, &id);
}

/// Ids of `ids` not in `set`.
pub fn missing<'a>(
    ids: impl IntoIterator<Item = &'a Id>,
    set: &HashMap<Id, (u64, u64)>,
) -> Vec<Id> {
    let seen: HashSet<&Id> = set.keys().collect();
    ids.into_iter()
        .filter(|i| !seen.contains(i))
        .copied()
        .collect()
}
