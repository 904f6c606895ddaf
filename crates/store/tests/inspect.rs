//! The read-only inspector against a store written through the public API: it sees what the store
//! wrote, finds damage a byte flip causes, and changes nothing on disk.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use apogee_protocol::message::properties::{keys, MessageProperties};
use apogee_protocol::message::record::{MessageRecord, BODY_LENGTH_POSITION_IPV4};
use apogee_store::inspect::{Inspector, LogItem, SegmentState};
use apogee_store::{MessageStore, StoreConfig};
use bytes::Bytes;

const SEGMENT_BYTES: u64 = 64 * 1024;

fn record(topic: &str, queue_id: i32, i: usize) -> Vec<u8> {
    let mut props = MessageProperties::new();
    props.set_tags(["even", "odd"][i % 2]);
    props.insert(keys::KEYS, format!("k{i} order-{}", i / 10));
    props.set_uniq_key(format!("UNIQ-{topic}-{i}"));
    let body = Bytes::from(vec![b'a' + (i % 26) as u8; 300 + i % 7]);
    let mut rec = MessageRecord::new(topic, body, props.to_bytes());
    rec.queue_id = queue_id;
    rec.born_timestamp = 1_700_000_000_000;
    rec.born_host = "10.0.0.1:5000".parse().unwrap();
    rec.store_host = "10.0.0.2:10911".parse().unwrap();
    rec.encode().unwrap().to_vec()
}

/// Writes `n` records alternating between T/0 and U/1, closes the store, returns the offsets.
fn write_store(dir: &Path, n: usize) -> Vec<u64> {
    let store = MessageStore::open(StoreConfig::for_tests(dir)).unwrap();
    let mut offsets = Vec::new();
    for i in 0..n {
        let (t, q) = if i % 3 == 2 { ("U", 1) } else { ("T", 0) };
        let res = store.append(&mut record(t, q, i)).unwrap();
        offsets.push(res.physical_offsets[0]);
    }
    store.close().unwrap();
    offsets
}

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(
                    e.path(),
                    (fs::read(e.path()).unwrap(), meta.modified().unwrap()),
                );
            }
        }
    }
    out
}

fn flip_byte(path: &Path, at: u64) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x5A], at).unwrap();
}

fn segment_path(dir: &Path, offset: u64) -> (PathBuf, u64) {
    let start = offset / SEGMENT_BYTES * SEGMENT_BYTES;
    (
        dir.join("commitlog").join(format!("{start:020}")),
        offset - start,
    )
}

#[test]
fn segments_list_every_record_and_end_at_the_write_position() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_store(dir.path(), 600);
    let insp = Inspector::open(dir.path()).unwrap();
    assert_eq!(insp.segment_bytes(), SEGMENT_BYTES);
    let segs = insp.segments();
    assert!(segs.len() >= 3, "{} segments", segs.len());
    assert_eq!(segs.iter().map(|s| s.records).sum::<u64>(), 600);
    for s in &segs[..segs.len() - 1] {
        assert_eq!(s.state, SegmentState::Full);
        assert_eq!(s.file_bytes, SEGMENT_BYTES);
        assert!(s.first_store_timestamp_ms <= s.last_store_timestamp_ms);
    }
    let last = segs.last().unwrap();
    assert_eq!(last.state, SegmentState::Open);
    let store = MessageStore::open(StoreConfig::for_tests(dir.path())).unwrap();
    assert_eq!(last.write_position, store.commitlog_max_offset());
    assert_eq!(segs[0].start, offsets[0]);
}

#[test]
fn records_walk_in_log_order_with_blank_fillers_between_segments() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_store(dir.path(), 600);
    let insp = Inspector::open(dir.path()).unwrap();
    let mut items = Vec::new();
    insp.walk(None, &mut |it| {
        items.push(it);
        true
    });
    let recs: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            LogItem::Record(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(recs.iter().map(|r| r.offset).collect::<Vec<_>>(), offsets);
    let r5 = &recs[5];
    assert_eq!(
        (r5.topic.as_str(), r5.queue_id, r5.queue_offset),
        ("U", 1, 1)
    );
    assert_eq!(r5.tags.as_deref(), Some("odd"));
    assert_eq!(r5.keys.as_deref(), Some("k5 order-0"));
    assert_eq!(r5.uniq_key.as_deref(), Some("UNIQ-U-5"));
    assert_eq!(r5.body_len, 305);
    assert!(recs
        .iter()
        .all(|r| r.crc_ok && r.physical_offset == r.offset as i64));
    let blanks = items
        .iter()
        .filter(|i| matches!(i, LogItem::Blank { .. }))
        .count();
    assert_eq!(blanks, insp.segments().len() - 1);
    assert!(matches!(
        items.last(),
        Some(LogItem::End {
            last_segment: true,
            ..
        })
    ));

    // Starting in the middle, and stopping early.
    let mut got = Vec::new();
    insp.walk(Some(offsets[400]), &mut |it| {
        if let LogItem::Record(r) = it {
            got.push(r.offset);
        }
        got.len() < 3
    });
    assert_eq!(got, offsets[400..403]);
}

#[test]
fn queues_show_min_max_and_entries_pointing_at_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_store(dir.path(), 600);
    let insp = Inspector::open(dir.path()).unwrap();
    let qs = insp.queues().unwrap();
    let summary: Vec<_> = qs
        .iter()
        .map(|q| (q.topic.as_str(), q.queue_id, q.min_offset, q.max_offset))
        .collect();
    assert_eq!(summary, vec![("T", 0, 0, 400), ("U", 1, 0, 200)]);
    let d = insp.queue("U", 1, Some(10), 5).unwrap();
    assert_eq!(d.entries.len(), 5);
    let (lo, e) = d.entries[0];
    assert_eq!(lo, 10);
    // U/1 holds records 2, 5, 8, ...: its entry 10 is record 32.
    assert_eq!(e.commitlog_offset, offsets[32]);
    assert_eq!(
        e.tags_code,
        apogee_protocol::message::hash::tags_code(Some("even"))
    );
    assert!(insp.queue("nope", 0, None, 5).unwrap().info.files == 0);
}

#[test]
fn checkpoint_shows_both_slots_and_the_newest_matches_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), 50);
    let insp = Inspector::open(dir.path()).unwrap();
    let c = insp.checkpoint().unwrap();
    assert_eq!(c.file_bytes, Some(128));
    assert_eq!(c.slots.len(), 2);
    let d = c.newest_data().unwrap();
    let end = insp.segments().last().unwrap().write_position;
    assert_eq!(d.commitlog_flushed_offset, end);
    assert_eq!(d.dispatch_flushed_offset, end);
}

#[test]
fn verify_finds_nothing_wrong_in_a_cleanly_closed_store_and_changes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), 600);
    let before = snapshot(dir.path());
    let insp = Inspector::open(dir.path()).unwrap();
    let r = insp.verify(10).unwrap();
    assert!(!r.is_damaged(), "{:#?}", r.problems);
    assert_eq!(r.records, 600);
    assert_eq!(r.queues, 2);
    assert_eq!(r.queue_entries, 600);
    assert_eq!(r.undispatched_records, 0);
    assert!(!r.abort_present);
    insp.segments();
    insp.queues().unwrap();
    insp.checkpoint().unwrap();
    drop(insp);
    assert_eq!(
        snapshot(dir.path()),
        before,
        "the inspector changed the store"
    );
}

#[test]
fn verify_catches_a_flipped_body_byte_at_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_store(dir.path(), 600);
    let victim = offsets[250];
    let (path, pos) = segment_path(dir.path(), victim);
    flip_byte(&path, pos + BODY_LENGTH_POSITION_IPV4 as u64 + 4 + 17);
    let r = Inspector::open(dir.path()).unwrap().verify(10).unwrap();
    assert!(r.is_damaged());
    assert_eq!(r.crc_errors, 1);
    assert_eq!(r.problem_count, 1, "{:#?}", r.problems);
    assert_eq!(r.problems[0].offset, Some(victim));
    assert!(
        r.problems[0].what.contains("BODYCRC"),
        "{}",
        r.problems[0].what
    );
    // The layout is intact, so the walk went on and still counts every record.
    assert_eq!(r.records, 600);
}

#[test]
fn verify_catches_a_damaged_header_and_the_records_it_hides() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_store(dir.path(), 600);
    let victim = offsets[598];
    let (path, pos) = segment_path(dir.path(), victim);
    // MAGICCODE of the second-to-last record.
    flip_byte(&path, pos + 5);
    let r = Inspector::open(dir.path()).unwrap().verify(10).unwrap();
    assert!(r.is_damaged());
    let whats: Vec<_> = r
        .problems
        .iter()
        .map(|p| (p.file.clone(), p.offset, p.what.clone()))
        .collect();
    assert!(
        whats
            .iter()
            .any(|(_, o, w)| *o == Some(victim) && w.contains("not a valid record")),
        "{whats:#?}"
    );
    // The checkpoint says more was durable, and the queues point past the readable end.
    assert!(
        whats.iter().any(|(f, _, _)| f == "checkpoint"),
        "{whats:#?}"
    );
    assert!(
        whats
            .iter()
            .any(|(f, _, w)| f.starts_with("consumequeue") && w.contains("past the end")),
        "{whats:#?}"
    );
    assert_eq!(r.log_end_offset, victim);
}

#[test]
fn verify_catches_a_queue_entry_that_points_at_the_wrong_record() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), 60);
    // Entry 3 of T/0: change its commitlog offset's low byte.
    let path = dir
        .path()
        .join("consumequeue/T/0")
        .join(format!("{:020}", 0));
    flip_byte(&path, 3 * 20 + 7);
    let r = Inspector::open(dir.path()).unwrap().verify(10).unwrap();
    assert!(r.is_damaged());
    assert_eq!(r.problems[0].offset, Some(3), "{:#?}", r.problems);
    assert!(r.problems[0].file.starts_with("consumequeue/T/0/"));
}

#[test]
fn a_missing_directory_is_an_error_and_an_empty_store_is_clean() {
    assert!(Inspector::open("/nonexistent/apogee/store").is_err());
    let dir = tempfile::tempdir().unwrap();
    let insp = Inspector::open(dir.path()).unwrap();
    assert!(insp.segments().is_empty());
    let r = insp.verify(10).unwrap();
    assert!(!r.is_damaged());
    assert_eq!(r.records, 0);
}
