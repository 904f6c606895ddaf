use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use super::*;

const P: i64 = 1000;

fn cfg() -> TimerConfig {
    TimerConfig {
        precision_ms: P as u64,
        wheel_slots: 64,
        roll_window_slots: 16,
        // 10 units per file.
        log_file_bytes: 10 * UNIT_BYTES as u64 + 7,
        max_dirty_slots: 8,
    }
}

/// Opens at "now" = the start of tick 1000.
fn open(dir: &Path) -> TimerStore {
    TimerStore::open(dir, cfg(), 1000 * P, 0).unwrap()
}

/// Walks every due tick up to `now_ms`, returning (tick, commitlog offset, flags) in walk order.
fn drain(t: &mut TimerStore, now_ms: i64) -> Vec<(i64, u64, u32)> {
    let mut out = Vec::new();
    while t.is_due(now_ms) {
        let tick = t.cursor();
        if let Some((_, u)) = t.walk_next().unwrap() {
            out.push((tick, u.commitlog_offset, u.flags));
            t.walk_done(&u);
        }
    }
    out
}

#[test]
fn units_are_walked_per_tick_newest_first_once_their_tick_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = open(dir.path());
    assert_eq!(t.cursor(), 1000);
    // TIMER_OUT_MS values: ticks 1002, 1001, 1002.
    assert_eq!(t.add(0, 100, 50, 1002 * P, false).unwrap().tick, 1002);
    assert_eq!(t.add(1, 200, 50, 1001 * P + 999, false).unwrap().tick, 1001);
    t.add(2, 300, 50, 1002 * P + 1, false).unwrap();
    assert_eq!(t.enqueue_offset(), 3);
    assert_eq!(t.slot(1002).unwrap().unwrap().count, 2);
    // Tick 1001 is due only at the end of its interval.
    assert!(drain(&mut t, 1002 * P - 1).is_empty());
    assert_eq!(drain(&mut t, 1002 * P), vec![(1001, 200, 0)]);
    assert_eq!(t.cursor(), 1002);
    assert_eq!(
        drain(&mut t, 1003 * P),
        vec![(1002, 300, 0), (1002, 100, 0)]
    );
    assert_eq!(t.cursor(), 1003);
}

#[test]
fn placement_keeps_chains_frozen_once_walked_and_rolls_far_units() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = open(dir.path());
    // In the past: the cursor's tick.
    assert_eq!(t.add(0, 1, 1, 5 * P, false).unwrap().tick, 1000);
    // At or beyond cursor + roll window: rolled to cursor + window.
    let far = t.add(1, 2, 1, (1000 + 16) * P, false).unwrap();
    assert_eq!((far.tick, far.rolled), (1016, true));
    let near = t.add(2, 3, 1, (1000 + 15) * P, false).unwrap();
    assert_eq!((near.tick, near.rolled), (1015, false));
    // Once the walk of the cursor's tick started, a late unit goes to the next tick.
    let (_, u) = t.walk_next().unwrap().unwrap();
    assert!(t.walk_started());
    assert_eq!(t.add(3, 4, 1, 999 * P, true).unwrap().tick, 1001);
    assert!(t.walk_done(&u));
    assert_eq!(t.cursor(), 1001);
    let got = drain(&mut t, 1100 * P);
    assert_eq!(
        got,
        vec![(1001, 4, FLAG_DELETE), (1015, 3, 0), (1016, 2, FLAG_ROLL)]
    );
}

#[test]
fn a_slot_left_by_an_earlier_lap_of_the_wheel_starts_a_new_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = open(dir.path());
    t.add(0, 10, 1, 1003 * P, false).unwrap();
    drain(&mut t, 1060 * P);
    // 1003 + 64 lands in the same slot, which still holds tick 1003.
    let p = t.add(1, 20, 1, 1067 * P, false).unwrap();
    let s = t.slot(1067).unwrap().unwrap();
    assert_eq!(
        (s.first_pos, s.last_pos, s.count),
        (p.pos as i64, p.pos as i64, 1)
    );
    assert_eq!(t.unit_at(p.pos).unwrap().prev_pos, NO_POS);
    assert_eq!(drain(&mut t, 1100 * P), vec![(1067, 20, 0)]);
}

#[test]
fn state_survives_a_clean_reopen_including_a_walk_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut t = open(dir.path());
        for i in 0..5u64 {
            t.add(i, 100 + i, 1, 1001 * P, false).unwrap();
        }
        t.add(5, 200, 1, 1002 * P, false).unwrap();
        drain(&mut t, 1001 * P); // tick 1000: nothing
        let (_, u) = t.walk_next().unwrap().unwrap();
        assert_eq!(u.commitlog_offset, 104);
        t.walk_done(&u);
        t.checkpoint().unwrap();
    }
    let mut t = TimerStore::open(dir.path(), cfg(), 5000 * P, 0).unwrap();
    assert_eq!(t.recovered().replayed_units, 0);
    assert_eq!((t.cursor(), t.enqueue_offset()), (1001, 6));
    assert!(t.walk_started());
    let mut walked = Vec::new();
    t.for_each_walked(|_, u| walked.push(u.commitlog_offset))
        .unwrap();
    assert_eq!(walked, vec![104]);
    let got: Vec<u64> = drain(&mut t, 1003 * P).iter().map(|x| x.1).collect();
    assert_eq!(got, vec![103, 102, 101, 100, 200]);
}

#[test]
fn units_written_after_the_last_checkpoint_are_linked_again_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut t = open(dir.path());
        t.add(0, 100, 1, 1005 * P, false).unwrap();
        t.checkpoint().unwrap();
        // Not checkpointed: the slots of these exist only in memory when the process dies.
        t.add(1, 101, 1, 1005 * P, false).unwrap();
        t.add(2, 102, 1, 1007 * P, false).unwrap();
        t.log.sync().unwrap();
    }
    let mut t = open(dir.path());
    let r = t.recovered();
    assert!(r.from_checkpoint);
    assert_eq!(r.replayed_units, 2);
    assert_eq!(t.enqueue_offset(), 3);
    assert_eq!(t.slot(1005).unwrap().unwrap().count, 2);
    let got: Vec<u64> = drain(&mut t, 1010 * P).iter().map(|x| x.1).collect();
    assert_eq!(got, vec![101, 100, 102]);
}

#[test]
fn a_wheel_file_ahead_of_the_checkpoint_is_not_linked_twice() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut t = open(dir.path());
        t.add(0, 100, 1, 1005 * P, false).unwrap();
        t.checkpoint().unwrap();
        t.add(1, 101, 1, 1005 * P, false).unwrap();
        t.add(2, 102, 1, 1005 * P, false).unwrap();
        // A checkpoint that died after writing the wheel, before writing timercheck.
        t.log.sync().unwrap();
        t.wheel.flush().unwrap();
    }
    let mut t = open(dir.path());
    assert_eq!(t.recovered().replayed_units, 2);
    assert_eq!(t.slot(1005).unwrap().unwrap().count, 3);
    let got: Vec<u64> = drain(&mut t, 1010 * P).iter().map(|x| x.1).collect();
    assert_eq!(got, vec![102, 101, 100]);
}

#[test]
fn a_torn_tail_is_cut_and_stale_units_beyond_it_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let torn_at;
    {
        let mut t = open(dir.path());
        t.checkpoint().unwrap();
        for i in 0..6u64 {
            t.add(i, 100 + i, 1, 1003 * P, false).unwrap();
        }
        t.log.sync().unwrap();
        torn_at = 3 * UNIT_BYTES as u64;
    }
    // Tear the fourth unit: units 5 and 6 behind it are intact but must not count.
    let f = OpenOptions::new()
        .write(true)
        .open(dir.path().join("timerlog/00000000000000000000"))
        .unwrap();
    f.write_all_at(&[0xAB; 9], torn_at + 20).unwrap();
    drop(f);
    {
        let mut t = open(dir.path());
        assert_eq!(t.recovered().log_end, torn_at);
        assert_eq!(t.recovered().replayed_units, 3);
        assert_eq!(t.enqueue_offset(), 3);
        assert_eq!(t.log_write_pos(), torn_at);
        // One new unit, then a crash: the old units 5 and 6 must stay dead.
        t.add(3, 900, 1, 1003 * P, false).unwrap();
        t.log.sync().unwrap();
    }
    let mut t = open(dir.path());
    assert_eq!(t.recovered().log_end, torn_at + UNIT_BYTES as u64);
    let got: Vec<u64> = drain(&mut t, 1010 * P).iter().map(|x| x.1).collect();
    assert_eq!(got, vec![900, 102, 101, 100]);
}

#[test]
fn the_log_rolls_over_files_and_delivered_files_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = open(dir.path());
    for i in 0..25u64 {
        t.add(i, i, 1, (1001 + (i as i64 % 3)) * P, false).unwrap();
    }
    // A unit far ahead keeps the newest file alive.
    t.add(25, 999, 1, 1012 * P, false).unwrap();
    t.checkpoint().unwrap();
    assert_eq!(t.log_file_count(), 3);
    assert!(dir.path().join("timerlog/00000000000000000480").exists());
    let got = drain(&mut t, 1005 * P);
    assert_eq!(got.len(), 25);
    t.checkpoint().unwrap();
    // Files of ticks 1001-1003 go; the newest (holding the log end) stays.
    assert_eq!(t.log_file_count(), 1);
    drop(t);
    let mut t = open(dir.path());
    assert_eq!(drain(&mut t, 1020 * P), vec![(1012, 999, 0)]);
}

#[test]
fn without_a_checkpoint_the_whole_log_is_linked_and_the_cursor_starts_at_its_oldest_tick() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut t = open(dir.path());
        t.add(0, 100, 1, 1002 * P, false).unwrap();
        t.add(1, 101, 1, 1004 * P, false).unwrap();
        t.checkpoint().unwrap();
    }
    std::fs::remove_file(dir.path().join("timercheck")).unwrap();
    std::fs::remove_file(dir.path().join("timerwheel")).unwrap();
    let mut t = TimerStore::open(dir.path(), cfg(), 1003 * P, 0).unwrap();
    assert!(!t.recovered().from_checkpoint);
    assert_eq!(t.cursor(), 1002);
    assert_eq!(t.enqueue_offset(), 2);
    assert_eq!(
        drain(&mut t, 1010 * P),
        vec![(1002, 100, 0), (1004, 101, 0)]
    );
}

#[test]
fn a_changed_precision_or_slot_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let mut c = cfg();
    c.precision_ms = 500;
    assert!(matches!(
        TimerStore::open(dir.path(), c, 0, 0),
        Err(StoreError::Config(_))
    ));
    let mut c = cfg();
    c.wheel_slots = 128;
    assert!(matches!(
        TimerStore::open(dir.path(), c, 0, 0),
        Err(StoreError::Config(_))
    ));
    let mut c = cfg();
    c.roll_window_slots = 63;
    assert!(TimerStore::open(tempfile::tempdir().unwrap().path(), c, 0, 0).is_err());
}

#[test]
fn memory_holds_only_the_slots_changed_since_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.log_file_bytes = 1 << 20;
    let mut t = TimerStore::open(dir.path(), c, 1000 * P, 0).unwrap();
    for i in 0..5000u64 {
        t.add(i, i, 1, (1001 + (i as i64 % 15)) * P, false).unwrap();
        if t.needs_checkpoint() {
            t.checkpoint().unwrap();
        }
        assert!(t.memory_entries() <= 8);
    }
    t.checkpoint().unwrap();
    assert_eq!(t.memory_entries(), 0);
    assert_eq!(drain(&mut t, 1100 * P).len(), 5000);
}
