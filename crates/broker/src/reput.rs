//! Re-putting a waiting message where it was going. The delay-level and timer services both copy a
//! stored record into a new record for another topic, and after a crash both must find out whether
//! they already did: the copy carries `REPUT_FROM` = the CommitLog offset of the record it was made
//! from, and [`already_reput`] looks for it through the index (docs/storage-format.md, "Delay
//! levels").

use apogee_protocol::message::{MessageProperties, MessageRecord, RecordView};
use apogee_store::MessageStore;
use bytes::{Bytes, BytesMut};

/// Property stamped on every re-put record: the CommitLog offset of the record it was made from.
pub const REPUT_FROM: &str = "REPUT_FROM";

/// Copies of one `UNIQ_KEY` looked at by [`already_reput`]: retries of one message share it.
const MAX_SAME_KEY: usize = 256;

/// The stored bytes of a copy of `v` (stored at `source_offset`) for `topic`/`queue_id` with
/// `props`: body, flag, sysflag, born time and host, store host and reconsume times as they were.
pub(crate) fn encode_reput(
    v: &RecordView<'_>,
    source_offset: u64,
    topic: &str,
    queue_id: i32,
    mut props: MessageProperties,
) -> Result<BytesMut, String> {
    props.insert(REPUT_FROM, source_offset.to_string());
    let mut r = MessageRecord::new(topic, Bytes::copy_from_slice(v.body), props.to_bytes());
    r.queue_id = queue_id;
    r.flag = v.flag;
    r.sys_flag = v.sys_flag;
    r.born_timestamp = v.born_timestamp;
    r.born_host = v.born_host;
    r.store_host = v.store_host;
    r.reconsume_times = v.reconsume_times;
    let mut out = BytesMut::with_capacity(r.encoded_len());
    r.encode_into(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Whether `target_topic` holds a copy of the record at `source_offset` (its `REPUT_FROM`), among
/// the records with `uniq_key` stored since `since_ms`.
pub(crate) fn already_reput(
    store: &MessageStore,
    target_topic: &str,
    uniq_key: &str,
    source_offset: u64,
    since_ms: i64,
) -> bool {
    let want = source_offset.to_string();
    store
        .query_by_key(target_topic, uniq_key, MAX_SAME_KEY, since_ms, i64::MAX)
        .iter()
        .filter_map(|rec| RecordView::parse(rec).ok())
        .any(|v| v.property(REPUT_FROM).as_deref() == Some(want.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_protocol::message::properties::keys;
    use apogee_store::StoreConfig;

    fn record(topic: &str, props: &[(&str, &str)]) -> BytesMut {
        let p: MessageProperties = props.iter().map(|(k, v)| (*k, *v)).collect();
        let mut r = MessageRecord::new(topic, Bytes::from_static(b"body"), p.to_bytes());
        r.flag = 9;
        r.reconsume_times = 2;
        r.born_timestamp = 1_700_000_000_000;
        r.born_host = "10.0.0.1:5000".parse().unwrap();
        r.store_host = "10.0.0.2:10911".parse().unwrap();
        let mut b = BytesMut::new();
        r.encode_into(&mut b).unwrap();
        b
    }

    #[test]
    fn a_copy_keeps_the_message_and_is_found_by_its_source_offset_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = MessageStore::open(StoreConfig::for_tests(dir.path())).unwrap();
        let mut src = record("WAIT", &[(keys::UNIQ_KEY, "U1"), (keys::TAGS, "t")]);
        let at = store.append(&mut src).unwrap().physical_offsets[0];
        let stored = store.message_at(at).unwrap();
        let v = RecordView::parse(&stored).unwrap();
        assert!(!already_reput(&store, "REAL", "U1", at, 0));

        // Another copy of the same UNIQ_KEY (say an earlier retry) does not count.
        let mut other = encode_reput(&v, at + 1, "REAL", 0, v.properties_map()).unwrap();
        store.append(&mut other).unwrap();
        assert!(!already_reput(&store, "REAL", "U1", at, 0));

        let mut copy = encode_reput(&v, at, "REAL", 3, v.properties_map()).unwrap();
        let copy_at = store.append(&mut copy).unwrap().physical_offsets[0];
        assert!(already_reput(&store, "REAL", "U1", at, 0));
        assert!(!already_reput(&store, "OTHER", "U1", at, 0));

        let back = store.message_at(copy_at).unwrap();
        let c = RecordView::parse(&back).unwrap();
        assert_eq!(c.topic(), "REAL");
        assert_eq!((c.queue_id, c.flag, c.reconsume_times), (3, 9, 2));
        assert_eq!(
            (c.born_timestamp, c.born_host),
            (v.born_timestamp, v.born_host)
        );
        assert_eq!(c.store_host, v.store_host);
        assert_eq!(c.body, b"body");
        assert_eq!(c.uniq_key().as_deref(), Some("U1"));
        assert_eq!(
            c.property(REPUT_FROM).as_deref(),
            Some(at.to_string().as_str())
        );
        assert!(c.body_crc_matches());
    }
}
