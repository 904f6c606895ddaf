//! Delay levels in the store: a SCHEDULE_TOPIC_XXXX entry's tagsCode is its delivery time, at
//! append and when recovery dispatches the record again.

use apogee_protocol::message::hash::tags_code;
use apogee_protocol::message::properties::{keys, MessageProperties};
use apogee_protocol::message::record::MessageRecord;
use apogee_store::{DelayLevels, MessageStore, StoreConfig, SCHEDULE_TOPIC};
use bytes::Bytes;

fn record(topic: &str, queue_id: i32, delay: Option<&str>) -> Vec<u8> {
    let mut props = MessageProperties::new();
    props.set_tags("TagS");
    if let Some(d) = delay {
        props.insert(keys::DELAY, d);
    }
    props.set_uniq_key("U");
    let mut rec = MessageRecord::new(topic, Bytes::from_static(b"x"), props.to_bytes());
    rec.queue_id = queue_id;
    rec.born_host = "10.0.0.1:5000".parse().unwrap();
    rec.store_host = "10.0.0.2:10911".parse().unwrap();
    rec.encode().unwrap().to_vec()
}

fn config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::for_tests(dir);
    c.delay_levels = DelayLevels::parse("1s 5s").unwrap();
    c
}

#[test]
fn a_schedule_entry_carries_its_delivery_time_and_other_entries_their_tag_hash() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let r = store
        .append(&mut record(SCHEDULE_TOPIC, 1, Some("2")))
        .unwrap();
    let e = store.queue_entry(SCHEDULE_TOPIC, 1, 0).unwrap();
    assert_eq!(e.tags_code, r.store_timestamp_ms + 5_000);
    // Above the highest level: the highest level's delay.
    let r = store
        .append(&mut record(SCHEDULE_TOPIC, 1, Some("7")))
        .unwrap();
    assert_eq!(
        store.queue_entry(SCHEDULE_TOPIC, 1, 1).unwrap().tags_code,
        r.store_timestamp_ms + 5_000
    );
    // No level, or another topic: the tag hash.
    let hash = tags_code(Some("TagS"));
    store.append(&mut record(SCHEDULE_TOPIC, 1, None)).unwrap();
    store
        .append(&mut record(SCHEDULE_TOPIC, 1, Some("0")))
        .unwrap();
    store.append(&mut record("Plain", 0, Some("2"))).unwrap();
    assert_eq!(
        store.queue_entry(SCHEDULE_TOPIC, 1, 2).unwrap().tags_code,
        hash
    );
    assert_eq!(
        store.queue_entry(SCHEDULE_TOPIC, 1, 3).unwrap().tags_code,
        hash
    );
    assert_eq!(store.queue_entry("Plain", 0, 0).unwrap().tags_code, hash);
    assert_eq!(store.queue_entry(SCHEDULE_TOPIC, 1, 4), None);
}

#[test]
fn recovery_dispatches_a_schedule_entry_with_its_delivery_time_again() {
    let dir = tempfile::tempdir().unwrap();
    let stored_at;
    {
        let store = MessageStore::open(config(dir.path())).unwrap();
        stored_at = store
            .append(&mut record(SCHEDULE_TOPIC, 0, Some("1")))
            .unwrap()
            .store_timestamp_ms;
        store.close().unwrap();
    }
    // The queue's entry is lost (zeroed); recovery rebuilds it from the log.
    let cq = dir
        .path()
        .join("consumequeue")
        .join(SCHEDULE_TOPIC)
        .join("0")
        .join("00000000000000000000");
    let len = std::fs::metadata(&cq).unwrap().len() as usize;
    std::fs::write(&cq, vec![0u8; len]).unwrap();
    let store = MessageStore::open(config(dir.path())).unwrap();
    let e = store.queue_entry(SCHEDULE_TOPIC, 0, 0).unwrap();
    assert_eq!(e.tags_code, stored_at + 1_000);
}
