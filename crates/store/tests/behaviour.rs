//! Behaviour suite of the store through its public API: append, read back by queue offset, key
//! lookup, time search, reopen after a clean stop, retention and disk-full refusal.

use std::time::{Duration, SystemTime};

use apogee_protocol::message::properties::{keys, MessageProperties};
use apogee_protocol::message::record::{MessageRecord, RecordView};
use apogee_store::{
    BoundaryType, FlushDiskType, GetMessageStatus, MessageStore, StoreConfig, StoreError,
};
use bytes::Bytes;

fn record(
    topic: &str,
    queue_id: i32,
    body: &[u8],
    tag: Option<&str>,
    key: Option<&str>,
) -> Vec<u8> {
    let mut props = MessageProperties::new();
    if let Some(t) = tag {
        props.set_tags(t);
    }
    if let Some(k) = key {
        props.insert(keys::KEYS, k);
    }
    props.set_uniq_key(format!("UNIQ-{}", String::from_utf8_lossy(body)));
    let mut rec = MessageRecord::new(topic, Bytes::copy_from_slice(body), props.to_bytes());
    rec.queue_id = queue_id;
    rec.born_timestamp = 1_700_000_000_000;
    rec.born_host = "10.0.0.1:5000".parse().unwrap();
    rec.store_host = "10.0.0.2:10911".parse().unwrap();
    rec.encode().unwrap().to_vec()
}

fn open(dir: &std::path::Path) -> MessageStore {
    MessageStore::open(StoreConfig::for_tests(dir)).unwrap()
}

/// The test configuration with RocketMQ's disk-use ratios (75, 85, 90) instead of 100%.
fn with_default_ratios(dir: &std::path::Path) -> StoreConfig {
    let d = StoreConfig::default();
    StoreConfig {
        disk_clean_ratio_percent: d.disk_clean_ratio_percent,
        disk_force_clean_ratio_percent: d.disk_force_clean_ratio_percent,
        disk_deny_write_ratio_percent: d.disk_deny_write_ratio_percent,
        ..StoreConfig::for_tests(dir)
    }
}

fn all(_: i64) -> bool {
    true
}

fn bodies(store: &MessageStore, topic: &str, q: i32, from: u64, n: usize) -> Vec<Vec<u8>> {
    let res = store.get_messages(topic, q, from, n, usize::MAX, &all);
    res.messages
        .iter()
        .map(|m| RecordView::parse(m).unwrap().body.to_vec())
        .collect()
}

#[test]
fn appended_records_are_read_back_in_queue_order_with_offsets_filled_in() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..10 {
        let mut r = record("T", 1, format!("m{i}").as_bytes(), None, None);
        let res = store.append(&mut r).unwrap();
        assert_eq!(res.queue_offset, i);
    }
    assert_eq!(store.max_offset("T", 1), 10);
    assert_eq!(store.min_offset("T", 1), 0);
    let res = store.get_messages("T", 1, 3, 4, usize::MAX, &all);
    assert_eq!(res.status, GetMessageStatus::Found);
    assert_eq!(res.next_begin_offset, 7);
    for (i, m) in res.messages.iter().enumerate() {
        let v = RecordView::parse(m).unwrap();
        assert_eq!(v.body, format!("m{}", i + 3).as_bytes());
        assert_eq!(v.queue_offset, i as i64 + 3);
        assert_eq!(store.message_at(v.physical_offset as u64).unwrap(), *m);
        assert!(v.store_timestamp > 0);
    }
}

#[test]
fn out_of_range_offsets_get_rocketmq_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(
        store.get_messages("T", 0, 0, 1, usize::MAX, &all).status,
        GetMessageStatus::NoMatchedLogicQueue
    );
    for i in 0..3 {
        store.append(&mut record("T", 0, &[i], None, None)).unwrap();
    }
    let r = store.get_messages("T", 0, 3, 1, usize::MAX, &all);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetMessageStatus::OffsetOverflowOne, 3)
    );
    let r = store.get_messages("T", 0, 9, 1, usize::MAX, &all);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetMessageStatus::OffsetOverflowBadly, 3)
    );
}

#[test]
fn tag_filter_skips_entries_and_reports_no_match() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..6u8 {
        let tag = if i % 2 == 0 { "TagA" } else { "TagB" };
        store
            .append(&mut record("T", 0, &[b'0' + i], Some(tag), None))
            .unwrap();
    }
    let code_a = apogee_protocol::message::hash::tags_code(Some("TagA"));
    let only_a = move |c: i64| c == code_a;
    let r = store.get_messages("T", 0, 0, 10, usize::MAX, &only_a);
    let got: Vec<u8> = r
        .messages
        .iter()
        .map(|m| RecordView::parse(m).unwrap().body[0])
        .collect();
    assert_eq!(got, b"024");
    assert_eq!(r.next_begin_offset, 6);
    let none = |_: i64| false;
    let r = store.get_messages("T", 0, 0, 10, usize::MAX, &none);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetMessageStatus::NoMatchedMessage, 6)
    );
}

#[test]
fn max_bytes_limits_a_read_but_always_returns_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for _ in 0..5 {
        store
            .append(&mut record("T", 0, &[7u8; 500], None, None))
            .unwrap();
    }
    let r = store.get_messages("T", 0, 0, 10, 1200, &all);
    assert_eq!(r.messages.len(), 1);
    let r = store.get_messages("T", 0, 0, 10, 10, &all);
    assert_eq!(r.messages.len(), 1);
}

#[test]
fn records_survive_a_clean_reopen_and_writing_continues() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        for i in 0..200u32 {
            let q = (i % 4) as i32;
            store
                .append(&mut record(
                    "T",
                    q,
                    &i.to_be_bytes(),
                    None,
                    Some(&format!("k{i}")),
                ))
                .unwrap();
        }
        store.close().unwrap();
    }
    assert!(!dir.path().join("abort").exists());
    let store = open(dir.path());
    for q in 0..4 {
        assert_eq!(store.max_offset("T", q), 50);
        let got = bodies(&store, "T", q, 0, 100);
        assert_eq!(got.len(), 50);
        for (n, b) in got.iter().enumerate() {
            assert_eq!(b, &((n as u32) * 4 + q as u32).to_be_bytes());
        }
    }
    let found = store.query_by_key("T", "k77", 10, 0, i64::MAX);
    assert_eq!(found.len(), 1);
    assert_eq!(
        RecordView::parse(&found[0]).unwrap().body,
        77u32.to_be_bytes()
    );
    let res = store
        .append(&mut record("T", 0, b"after", None, None))
        .unwrap();
    assert_eq!(res.queue_offset, 50);
}

#[test]
fn records_roll_over_segments_behind_blank_fillers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // 64 KiB segments, ~1.1 KiB records: several segments.
    for i in 0..200u32 {
        store
            .append(&mut record("T", 0, &[i as u8; 1000], None, None))
            .unwrap();
    }
    let segs = std::fs::read_dir(dir.path().join("commitlog"))
        .unwrap()
        .count();
    assert!(segs >= 3, "{segs} segments");
    let got = bodies(&store, "T", 0, 0, 200);
    assert_eq!(got.len(), 200);
    assert!(got.iter().enumerate().all(|(i, b)| b[0] == i as u8));
}

#[test]
fn lookup_by_key_and_unique_id_checks_the_real_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(&mut record("T", 0, b"a", None, Some("order-1 order-2")))
        .unwrap();
    store
        .append(&mut record("T", 0, b"b", None, Some("order-2")))
        .unwrap();
    store
        .append(&mut record("U", 0, b"c", None, Some("order-2")))
        .unwrap();
    assert_eq!(store.query_by_key("T", "order-2", 10, 0, i64::MAX).len(), 2);
    assert_eq!(store.query_by_key("T", "order-1", 10, 0, i64::MAX).len(), 1);
    assert_eq!(store.query_by_key("U", "order-2", 10, 0, i64::MAX).len(), 1);
    assert_eq!(store.query_by_key("T", "UNIQ-b", 10, 0, i64::MAX).len(), 1);
    assert!(store
        .query_by_key("T", "order-3", 10, 0, i64::MAX)
        .is_empty());
}

#[test]
fn search_by_timestamp_finds_the_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut times = Vec::new();
    for i in 0..5u8 {
        let res = store.append(&mut record("T", 0, &[i], None, None)).unwrap();
        times.push(res.store_timestamp_ms);
    }
    let t2 = times[2];
    let lower = store.search_offset_by_timestamp("T", 0, t2, BoundaryType::Lower);
    let upper = store.search_offset_by_timestamp("T", 0, t2, BoundaryType::Upper);
    assert!(times[lower as usize] >= t2 && (lower == 0 || times[lower as usize - 1] < t2));
    assert!(times[upper as usize] <= t2 && (upper == 4 || times[upper as usize + 1] > t2));
    assert_eq!(
        store.search_offset_by_timestamp("T", 0, 0, BoundaryType::Lower),
        0
    );
    assert_eq!(
        store.search_offset_by_timestamp("T", 0, i64::MAX, BoundaryType::Lower),
        5
    );
    assert_eq!(store.earliest_message_time("T", 0), Some(times[0]));
}

#[test]
fn sync_flush_acknowledges_after_the_data_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::for_tests(dir.path());
    cfg.flush_disk_type = FlushDiskType::Sync;
    let store = std::sync::Arc::new(MessageStore::open(cfg).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25u8 {
                    let res = store
                        .append_blocking(&mut record("T", t, &[i], None, None))
                        .unwrap();
                    assert!(store.flushed_offset() >= res.end_offset);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for t in 0..8 {
        assert_eq!(store.max_offset("T", t), 25);
    }
}

#[test]
fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    assert!(matches!(
        MessageStore::open(StoreConfig::for_tests(dir.path())),
        Err(StoreError::Locked(_))
    ));
}

#[test]
fn malformed_records_are_refused_without_touching_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut bad = record("T", 0, b"x", None, None);
    bad[0] ^= 0x40; // TOTALSIZE no longer matches
    assert!(matches!(
        store.append(&mut bad),
        Err(StoreError::MessageIllegal(_))
    ));
    let mut mixed = record("T", 0, b"x", None, None);
    mixed.extend(record("T", 1, b"y", None, None));
    assert!(matches!(
        store.append(&mut mixed),
        Err(StoreError::MessageIllegal(_))
    ));
    assert_eq!(store.commitlog_max_offset(), 0);
}

#[test]
fn retention_deletes_old_segments_and_moves_queue_minimums() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = with_default_ratios(dir.path());
    cfg.file_reserved_hours = 1;
    let store = MessageStore::open(cfg).unwrap();
    // Whatever this machine's disk holds, the test drives the ratio from here on.
    assert_eq!(store.run_retention(SystemTime::now(), 10), 0);
    for i in 0..300u32 {
        store
            .append(&mut record("T", 0, &[i as u8; 1000], None, None))
            .unwrap();
    }
    // A moment past the reserve time that is not the delete hour (04 local time), and one that is.
    let mut later = SystemTime::now() + Duration::from_secs(2 * 3600);
    while hour_of(later) == 4 {
        later += Duration::from_secs(3600);
    }
    let mut delete_hour = later;
    while hour_of(delete_hour) != 4 {
        delete_hour += Duration::from_secs(3600);
    }
    // Expired, but neither the delete hour nor a full-ish disk: nothing goes.
    assert_eq!(store.run_retention(later, 10), 0);
    // Disk over the clean ratio: expired segments go at any hour.
    assert!(store.run_retention(later, 80) > 0);
    // At the delete hour they go with a quiet disk too.
    for i in 0..100u32 {
        store
            .append(&mut record("T", 0, &[i as u8; 1000], None, None))
            .unwrap();
    }
    assert!(store.run_retention(delete_hour, 10) > 0);
    let min = store.min_offset("T", 0);
    assert!(min > 0);
    let r = store.get_messages("T", 0, 0, 1, usize::MAX, &all);
    assert_eq!(
        (r.status, r.next_begin_offset),
        (GetMessageStatus::OffsetTooSmall, min)
    );
    let r = store.get_messages("T", 0, min, 1, usize::MAX, &all);
    assert_eq!(r.status, GetMessageStatus::Found);
    // The segment being written is never deleted.
    assert!(store.commitlog_max_offset() > store.commitlog_min_offset());
}

fn hour_of(t: SystemTime) -> u32 {
    apogee_store::local_hour(t)
}

#[test]
fn a_full_disk_refuses_appends_with_service_not_available_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(with_default_ratios(dir.path())).unwrap();
    // Whatever this machine's disk holds, the test drives the ratio from here on.
    store.run_retention(SystemTime::now(), 50);
    store
        .append(&mut record("T", 0, b"before", None, None))
        .unwrap();
    store.run_retention(SystemTime::now(), 95);
    assert!(store.is_disk_full());
    let err = store
        .append(&mut record("T", 0, b"x", None, None))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ServiceNotAvailable(ref m) if m.contains("disk full")),
        "{err}"
    );
    // Stored data is untouched and readable.
    assert_eq!(bodies(&store, "T", 0, 0, 10), vec![b"before".to_vec()]);
    store.run_retention(SystemTime::now(), 50);
    store
        .append(&mut record("T", 0, b"after", None, None))
        .unwrap();
}

#[test]
fn the_refusal_threshold_is_the_configured_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(StoreConfig {
        disk_deny_write_ratio_percent: 97,
        ..StoreConfig::for_tests(dir.path())
    })
    .unwrap();
    store.run_retention(SystemTime::now(), 96);
    assert!(!store.is_disk_full());
    store.append(&mut record("T", 0, b"a", None, None)).unwrap();
    store.run_retention(SystemTime::now(), 97);
    let err = store
        .append(&mut record("T", 0, b"b", None, None))
        .unwrap_err();
    assert!(err.to_string().contains("(97%)"), "{err}");
}

#[test]
fn a_disk_already_over_the_ratio_refuses_writes_from_the_open() {
    let dir = tempfile::tempdir().unwrap();
    // Any file system holding a temp dir has at least one block in use: 1% is always reached.
    let store = MessageStore::open(StoreConfig {
        disk_deny_write_ratio_percent: 1,
        ..StoreConfig::for_tests(dir.path())
    })
    .unwrap();
    assert!(store.is_disk_full());
    assert!(store.append(&mut record("T", 0, b"a", None, None)).is_err());
}

#[test]
fn the_append_listener_hears_every_new_max_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    store.set_append_listener(std::sync::Arc::new(move |t: &str, q: i32, max: u64| {
        tx.lock().unwrap().send((t.to_string(), q, max)).unwrap();
    }));
    store.append(&mut record("T", 2, b"x", None, None)).unwrap();
    assert_eq!(rx.recv().unwrap(), ("T".to_string(), 2, 1));
}

#[test]
fn deleting_a_topic_removes_its_queues() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(&mut record("T", 0, b"x", None, None)).unwrap();
    store.append(&mut record("U", 0, b"y", None, None)).unwrap();
    store.delete_topic("T");
    assert_eq!(store.queues(), vec![("U".to_string(), 0)]);
    assert_eq!(store.max_offset("T", 0), 0);
    assert!(!dir.path().join("consumequeue").join("T").exists());
}

#[test]
fn record_filter_sees_tag_matches_only_and_skips_what_it_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..6u8 {
        let tag = if i < 4 { "TagA" } else { "TagB" };
        store
            .append(&mut record("T", 0, &[b'0' + i], Some(tag), None))
            .unwrap();
    }
    let code_a = apogee_protocol::message::hash::tags_code(Some("TagA"));
    let only_a = move |c: i64| c == code_a;
    let seen = std::cell::RefCell::new(Vec::new());
    let odd_body = |rec: &[u8]| {
        let b = RecordView::parse(rec).unwrap().body[0];
        seen.borrow_mut().push(b);
        (b - b'0') % 2 == 1
    };
    let r = store.get_messages_matching("T", 0, 0, 10, usize::MAX, &only_a, Some(&odd_body));
    let got: Vec<u8> = r
        .messages
        .iter()
        .map(|m| RecordView::parse(m).unwrap().body[0])
        .collect();
    assert_eq!(got, b"13");
    assert_eq!(r.queue_offsets, [1, 3]);
    assert_eq!(r.next_begin_offset, 6);
    // Only the records whose tags code passed were read and shown to the record filter.
    assert_eq!(&seen.borrow()[..], b"0123");

    let reject_all = |_: &[u8]| false;
    let r = store.get_messages_matching("T", 0, 2, 10, usize::MAX, &all, Some(&reject_all));
    assert_eq!(
        (r.status, r.next_begin_offset, r.messages.len()),
        (GetMessageStatus::NoMatchedMessage, 6, 0)
    );
    // Without a record filter the read is the tags-only one.
    let r = store.get_messages_matching("T", 0, 0, 2, usize::MAX, &all, None);
    assert_eq!((r.messages.len(), r.next_begin_offset), (2, 2));
}

/// 2023-11-14 22:13:20 UTC.
const FIXED: u64 = 1_700_000_000;

#[test]
fn delete_hours_are_read_in_the_machines_time_zone() {
    if std::env::var_os("APOGEE_TZ_CHILD").is_some() {
        // In the child: TZ says local time is UTC+5 (a POSIX rule, no time-zone database needed).
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(FIXED);
        assert_eq!(apogee_store::local_hour(t), 3);
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "delete_hours_are_read_in_the_machines_time_zone",
            "--test-threads=1",
        ])
        .env("APOGEE_TZ_CHILD", "1")
        .env("TZ", "XXX-5")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // And the child really ran the check.
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}

#[test]
fn an_operator_can_delete_expired_segments_at_any_hour_and_drop_unused_topics() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::for_tests(dir.path());
    cfg.file_reserved_hours = 1;
    let store = MessageStore::open(cfg).unwrap();
    for i in 0..300u32 {
        store
            .append(&mut record("T", 0, &[i as u8; 1000], None, None))
            .unwrap();
    }
    store
        .append(&mut record("Gone", 1, b"old", None, None))
        .unwrap();
    // Not yet past the reserved time: nothing goes, at any hour.
    assert_eq!(store.delete_expired_now(SystemTime::now()), 0);
    // Past it, outside the delete hour: an operator's request deletes all but the last segment.
    let mut later = SystemTime::now() + Duration::from_secs(2 * 3600);
    while hour_of(later) == 4 {
        later += Duration::from_secs(3600);
    }
    let before = store.commitlog_max_offset();
    assert!(store.delete_expired_now(later) > 0);
    let min = store.min_offset("T", 0);
    assert!(min > 0);
    assert_eq!(store.commitlog_max_offset(), before);
    // The consume queues were trimmed with it; cleaning them again changes nothing.
    store.clean_expired_consume_queues();
    assert_eq!(store.min_offset("T", 0), min);
    let r = store.get_messages("T", 0, min, 1, usize::MAX, &all);
    assert_eq!(r.status, GetMessageStatus::Found);

    let removed = store.clean_unused_topics(|t| t == "T");
    assert_eq!(removed, ["Gone"]);
    assert!(!store.queues().iter().any(|(t, _)| t == "Gone"));
    assert!(!dir.path().join("consumequeue").join("Gone").exists());
    assert_eq!(store.min_offset("T", 0), min);
    assert_eq!(store.max_offset("T", 0), 300);
    assert!(store.clean_unused_topics(|t| t == "T").is_empty());
}
