//! The timer service's core driven step by step with a chosen clock, over a real store.

use apogee_protocol::message::RecordView;
use apogee_store::StoreConfig;

use super::*;
use crate::reput::REPUT_FROM;

const P: i64 = 1000;

fn store_config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::for_tests(dir);
    c.commitlog_segment_bytes = 64 << 20;
    c.consume_queue_entries_per_file = 300_000;
    c.index_slots = 1 << 16;
    c.index_entries = 1 << 20;
    c.timer_wheel_slots = 7 * 24 * 3600;
    c.timer_roll_window_slots = 2 * 24 * 3600;
    c.timer_log_file_bytes = 64 << 20;
    // Checkpoints only when a test asks (or the changed slots force one).
    c.timer_flush_interval_ms = 3_600_000;
    c.timer_max_dirty_slots = 4096;
    c
}

fn open_store(dir: &std::path::Path) -> Arc<MessageStore> {
    Arc::new(MessageStore::open(store_config(dir)).unwrap())
}

/// A record as the send path leaves a timer message: in the timer topic with its real address.
fn timer_record(uniq: &str, real_topic: &str, out_ms: i64, extra: &[(&str, &str)]) -> BytesMut {
    let mut p = MessageProperties::new();
    p.insert(keys::TIMER_OUT_MS, out_ms.to_string());
    p.insert(keys::TIMER_DELIVER_MS, (out_ms + P).to_string());
    p.insert(keys::REAL_TOPIC, real_topic);
    p.insert(keys::REAL_QID, "1");
    p.insert(keys::TAGS, "tag");
    p.set_uniq_key(uniq);
    for (k, v) in extra {
        p.insert(*k, *v);
    }
    let mut r = MessageRecord::new(
        TIMER_TOPIC,
        Bytes::copy_from_slice(uniq.as_bytes()),
        p.to_bytes(),
    );
    r.born_timestamp = 1;
    r.born_host = "127.0.0.1:1".parse().unwrap();
    r.store_host = "127.0.0.1:10911".parse().unwrap();
    let mut b = BytesMut::new();
    r.encode_into(&mut b).unwrap();
    b
}

fn put(store: &MessageStore, uniq: &str, real_topic: &str, out_ms: i64) -> u64 {
    let mut b = timer_record(uniq, real_topic, out_ms, &[]);
    store.append(&mut b).unwrap().physical_offsets[0]
}

/// Records of `topic`/1 from offset 0.
fn delivered(store: &MessageStore, topic: &str) -> Vec<Bytes> {
    store
        .get_messages(topic, 1, 0, 10_000, usize::MAX, &|_| true)
        .messages
}

fn uniq_of(rec: &Bytes) -> String {
    RecordView::parse(rec)
        .unwrap()
        .uniq_key()
        .unwrap()
        .into_owned()
}

/// Runs steps at `now` until nothing more is due or waiting.
fn settle(core: &mut TimerCore, now: i64) {
    for _ in 0..10_000 {
        if core.step(now) > now {
            return;
        }
    }
    panic!("the timer core never settled");
}

#[test]
fn a_timer_is_delivered_once_its_tick_ends_with_its_properties() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let t0 = now_ms().div_euclid(P) * P;
    let mut core = TimerCore::open_at(Arc::clone(&store), t0).unwrap();
    let out = t0 + 5 * P;
    let src = put(&store, "U1", "REAL", out);
    settle(&mut core, t0 + P);
    assert_eq!(core.stats().enqueue_offset, 1);
    // The tick of TIMER_OUT_MS ends one precision later: not before.
    settle(&mut core, out + P - 1);
    assert!(delivered(&store, "REAL").is_empty());
    settle(&mut core, out + P);
    let got = delivered(&store, "REAL");
    assert_eq!(got.len(), 1);
    let v = RecordView::parse(&got[0]).unwrap();
    assert_eq!(v.queue_id, 1);
    assert_eq!(v.uniq_key().as_deref(), Some("U1"));
    assert_eq!(v.body, b"U1");
    assert_eq!(v.property(keys::REAL_TOPIC), None);
    assert_eq!(v.property(keys::REAL_QID), None);
    assert_eq!(
        v.property(keys::TIMER_OUT_MS).as_deref(),
        Some(out.to_string().as_str())
    );
    assert_eq!(
        v.property(REPUT_FROM).as_deref(),
        Some(src.to_string().as_str())
    );
    assert!(v.property(keys::TIMER_DEQUEUE_MS).is_some());
    assert_eq!(
        v.tags_code(),
        RecordView::parse(&store.message_at(src).unwrap())
            .unwrap()
            .tags_code()
    );
    assert_eq!(core.stats().delivered, 1);
    settle(&mut core, out + 10 * P);
    assert_eq!(delivered(&store, "REAL").len(), 1);
}

#[test]
fn a_delete_marker_cancels_its_target_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
    let t0 = now_ms().div_euclid(P) * P;
    let mut core = TimerCore::open_at(Arc::clone(&store), t0).unwrap();
    let out = t0 + 3 * P;
    put(&store, "KEEP", "REAL", out);
    put(&store, "DROP", "REAL", out);
    put(&store, "DROP", "OTHER", out);
    settle(&mut core, t0);
    assert_eq!(
        cancel_timer(&store, host, "REAL", "DROP", t0).unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        cancel_timer(&store, host, "REAL", "NOPE", t0).unwrap(),
        CancelOutcome::NotFound
    );
    assert_eq!(
        cancel_timer(&store, host, "REAL", "KEEP", out + P).unwrap(),
        CancelOutcome::TooLate
    );
    settle(&mut core, out + P);
    let kept: Vec<String> = delivered(&store, "REAL").iter().map(uniq_of).collect();
    assert_eq!(kept, ["KEEP"]);
    assert_eq!(delivered(&store, "OTHER").len(), 1);
    assert_eq!(core.stats().cancelled, 1);
}

#[test]
fn a_crash_after_delivering_neither_loses_nor_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let t0 = now_ms().div_euclid(P) * P;
    {
        let mut core = TimerCore::open_at(Arc::clone(&store), t0).unwrap();
        for i in 0..20 {
            put(&store, &format!("A{i}"), "REAL", t0 + (1 + i % 4) * P);
        }
        for i in 0..5 {
            put(&store, &format!("B{i}"), "REAL", t0 + 30 * P);
        }
        // Ticks t0+1 .. t0+4 delivered, then the process dies without a checkpoint.
        settle(&mut core, t0 + 10 * P);
        assert_eq!(delivered(&store, "REAL").len(), 20);
    }
    // Restarted later: the delivered ticks are walked again from the old checkpoint.
    let mut core = TimerCore::open_at(Arc::clone(&store), t0 + 12 * P).unwrap();
    settle(&mut core, t0 + 12 * P);
    assert_eq!(delivered(&store, "REAL").len(), 20);
    assert_eq!(core.stats().delivered, 0);
    settle(&mut core, t0 + 31 * P);
    let mut got: Vec<String> = delivered(&store, "REAL").iter().map(uniq_of).collect();
    got.sort();
    let mut want: Vec<String> = (0..20)
        .map(|i| format!("A{i}"))
        .chain((0..5).map(|i| format!("B{i}")))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_timer_beyond_the_roll_window_goes_round_again_and_arrives_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = store_config(dir.path());
    c.timer_wheel_slots = 64;
    c.timer_roll_window_slots = 8;
    let store = Arc::new(MessageStore::open(c).unwrap());
    let t0 = now_ms().div_euclid(P) * P;
    let mut core = TimerCore::open_at(Arc::clone(&store), t0).unwrap();
    let out = t0 + 20 * P;
    put(&store, "FAR", "REAL", out);
    let mut now = t0;
    while now <= out + P {
        settle(&mut core, now);
        let n = delivered(&store, "REAL").len();
        assert_eq!(n, usize::from(now >= out + P), "at {}", now - t0);
        now += P;
    }
    let v_bytes = delivered(&store, "REAL");
    let v = RecordView::parse(&v_bytes[0]).unwrap();
    assert_eq!(v.property(keys::TIMER_ROLL_TIMES).as_deref(), Some("2"));
    // Each roll went through the timer topic.
    assert_eq!(store.max_offset(TIMER_TOPIC, 0), 3);
}

/// 200,000 pending timers far in the future: the service's memory holds the changed slots (at
/// most `timer_max_dirty_slots`) and nothing per timer; the units are on disk.
#[test]
fn two_hundred_thousand_pending_timers_keep_memory_bounded() {
    const N: usize = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let t0 = now_ms().div_euclid(P) * P;
    let mut core = TimerCore::open_at(Arc::clone(&store), t0).unwrap();
    let mut batch = BytesMut::new();
    for i in 0..N {
        // Spread over 40,000 distinct seconds a day ahead.
        let out = t0 + (86_400 + (i % 40_000) as i64) * P;
        batch.extend_from_slice(&timer_record(&format!("K{i:07}"), "FAR", out, &[]));
        if batch.len() > 256 * 1024 || i + 1 == N {
            store.append(&mut batch).unwrap();
            batch.clear();
        }
    }
    let mut peak = 0;
    while core.stats().enqueue_offset < N as u64 {
        core.step(t0);
        peak = peak.max(core.stats().memory_entries);
    }
    assert!(peak <= 4096, "peak of {peak} entries in memory");
    assert_eq!(core.timer.log_write_pos(), (N * 48) as u64);
    core.checkpoint();
    assert_eq!(core.stats().memory_entries, 0);
    assert_eq!(core.timer.slot(t0 / P + 86_400).unwrap().unwrap().count, 5);
    assert!(delivered(&store, "FAR").is_empty());
}
