//! Torn writes and damaged files: the store is closed cleanly (everything checkpointed) or dies
//! without closing (a checkpoint halfway through the writes, the rest only in the log), then its files
//! are damaged on disk the way a crash or a bad disk would, and it is reopened. Recovery must end the
//! log at the last valid record before the damage, cut queues and index to match, and take new appends.
//!
//! The dying writer is this test binary itself, run with `APOGEE_TORN_CHILD=<dir>` and the filter
//! `torn_child_writer`: it exits without closing the store, leaving the `abort` marker behind.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use apogee_protocol::message::record::RecordView;
use apogee_store::{MessageStore, StoreConfig};
use common::{check_store, Id, Rng};

const CHILD_ENV: &str = "APOGEE_TORN_CHILD";
const THREADS: u32 = 4;
const SEQS: u32 = 40;

fn open(dir: &Path) -> MessageStore {
    common::open(config(dir))
}

fn config(dir: &Path) -> StoreConfig {
    let mut cfg = StoreConfig::for_tests(dir);
    // No checkpoint but the ones written at open and close: what is past the checkpoint is known.
    cfg.dispatch_flush_interval_ms = 3_600_000;
    cfg
}

/// The records every test starts with, in append order (one writer, round 0).
fn ids() -> Vec<Id> {
    (0..SEQS)
        .flat_map(|seq| {
            (0..THREADS).map(move |thread| Id {
                round: 0,
                thread,
                seq,
            })
        })
        .collect()
}

/// Appends the first half, closes, reopens and appends the second half. Returns the store still open.
fn write_records(dir: &Path) -> MessageStore {
    let all = ids();
    let (first, second) = all.split_at(all.len() / 2);
    let store = open(dir);
    for id in first {
        store.append(&mut id.record()).unwrap();
    }
    store.close().unwrap();
    drop(store);
    let store = open(dir);
    for id in second {
        store.append(&mut id.record()).unwrap();
    }
    store
}

/// The dying writer, active only in the child process.
#[test]
fn torn_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = write_records(Path::new(&dir));
    // Exit without closing: no final checkpoint, the abort marker stays. The page cache keeps
    // what was written, as after a process crash.
    std::mem::forget(store);
    std::process::exit(0);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// `close()`: checkpoint at the log's end.
    Clean,
    /// The process died: the checkpoint is where the second half started.
    Crash,
}

/// Writes the records and stops the store as asked. Returns (offset, length) of every record, in
/// append order.
fn fill(dir: &Path, stop: Stop) -> Vec<(u64, usize)> {
    match stop {
        Stop::Clean => {
            let store = write_records(dir);
            store.close().unwrap();
        }
        Stop::Crash => {
            let (mut child, mut out) = common::spawn(
                Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "torn_child_writer", "--test-threads=1"])
                    .env(CHILD_ENV, dir),
            );
            let mut rest = String::new();
            out.read_to_string(&mut rest).unwrap();
            let status = child.wait().unwrap();
            assert!(status.success(), "{status}");
            assert!(dir.join("abort").exists());
        }
    }
    let recs = common::records_on_disk(dir, config(dir).commitlog_segment_bytes);
    assert_eq!(recs.len(), ids().len());
    // The newest segment holds several records, so damage to its tail leaves some before it.
    let (start, _) = common::newest_segment(dir);
    assert!(start > 0, "the log spans several segments");
    assert!(recs.iter().filter(|r| r.0 >= start).count() >= 3);
    recs
}

fn segment_path(dir: &Path, offset: u64) -> (PathBuf, u64) {
    let seg = config(dir).commitlog_segment_bytes;
    let start = offset / seg * seg;
    (
        dir.join("commitlog").join(format!("{start:020}")),
        offset - start,
    )
}

fn write_at(path: &Path, pos: u64, data: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(data, pos).unwrap();
    f.sync_all().unwrap();
}

/// Damages the files with `damage`, reopens, and proves the store recovered to the records before
/// `ids()[lost_from]`: everything before it intact, everything from it gone (log, queues and keys),
/// the log ending where that record started, new appends landing there; and all of it again after a
/// clean reopen.
fn recover_after(stop: Stop, lost_from: usize, damage: impl FnOnce(&Path, &[(u64, usize)])) {
    let dir = tempfile::tempdir().unwrap();
    let recs = fill(dir.path(), stop);
    damage(dir.path(), &recs);
    let all = ids();
    let store = open(dir.path());
    let end = recs.get(lost_from).map(|r| r.0).unwrap_or_else(|| {
        let (o, l) = recs[recs.len() - 1];
        o + l as u64
    });
    assert_eq!(store.commitlog_max_offset(), end, "{stop:?}: the log's end");
    let held = check_store(&store);
    let mut kept: Vec<Id> = held.keys().copied().collect();
    kept.sort_by_key(|id| held[id].0);
    assert_eq!(kept, all[..lost_from], "{stop:?}: records kept");
    for id in &all[lost_from..] {
        common::assert_not_found(&store, id);
    }
    // The segment files are whole again.
    let (_, newest) = common::newest_segment(dir.path());
    assert_eq!(
        fs::metadata(&newest).unwrap().len(),
        store.config().commitlog_segment_bytes
    );
    // New appends continue right there, with the queue offsets of the records that were cut.
    for (n, id) in all[lost_from..].iter().enumerate().take(3) {
        let fresh = Id {
            round: 1,
            thread: id.thread,
            seq: id.seq,
        };
        common::assert_fresh_append_lands_at_the_end(&store, fresh);
        if n == 0 {
            assert_eq!(held.len(), lost_from);
        }
    }
    for id in &all[lost_from..] {
        common::assert_not_found(&store, id);
    }
    let count = store_record_count(&store);
    store.close().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(check_store(&store).len(), count);
}

fn store_record_count(store: &MessageStore) -> usize {
    common::walk_log(store).len()
}

fn last(recs: &[(u64, usize)]) -> usize {
    recs.len() - 1
}

#[test]
fn a_newest_segment_truncated_mid_record_is_extended_and_recovers_to_the_record_before() {
    for stop in [Stop::Clean, Stop::Crash] {
        recover_after(stop, ids().len() - 1, |dir, recs| {
            let (offset, len) = recs[last(recs)];
            let (path, pos) = segment_path(dir, offset);
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(pos + len as u64 / 2).unwrap();
            f.sync_all().unwrap();
        });
    }
}

#[test]
fn a_newest_segment_truncated_to_nothing_loses_only_its_own_records() {
    for stop in [Stop::Clean, Stop::Crash] {
        let dir = tempfile::tempdir().unwrap();
        let recs = fill(dir.path(), stop);
        let (start, _) = common::newest_segment(dir.path());
        let first_lost = recs.iter().position(|r| r.0 >= start).unwrap();
        drop(dir);
        recover_after(stop, first_lost, |dir, _| {
            let (_, path) = common::newest_segment(dir);
            OpenOptions::new()
                .write(true)
                .open(path)
                .unwrap()
                .set_len(0)
                .unwrap();
        });
    }
}

#[test]
fn garbage_over_the_tail_record_is_cut() {
    for stop in [Stop::Clean, Stop::Crash] {
        recover_after(stop, ids().len() - 1, |dir, recs| {
            let (offset, len) = recs[last(recs)];
            let mut rng = Rng(offset);
            let garbage: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let (path, pos) = segment_path(dir, offset);
            write_at(&path, pos, &garbage);
        });
    }
}

#[test]
fn garbage_over_the_last_two_records_cuts_both() {
    for stop in [Stop::Clean, Stop::Crash] {
        recover_after(stop, ids().len() - 2, |dir, recs| {
            let (offset, _) = recs[last(recs) - 1];
            let (o2, l2) = recs[last(recs)];
            let len = (o2 + l2 as u64 - offset) as usize;
            let garbage: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let (path, pos) = segment_path(dir, offset);
            write_at(&path, pos, &garbage);
        });
    }
}

/// Flips one bit in the middle of the body of the record at `offset`.
fn flip_body_byte(dir: &Path, offset: u64) {
    let (path, pos) = segment_path(dir, offset);
    let mut rec = vec![0u8; 8192];
    let f = fs::File::open(&path).unwrap();
    let n = f.read_at(&mut rec, pos).unwrap();
    let v = RecordView::parse(&rec[..n]).unwrap();
    let body_at = v.body.as_ptr() as usize - rec.as_ptr() as usize;
    let flip_at = body_at + v.body.len() / 2;
    write_at(&path, pos + flip_at as u64, &[rec[flip_at] ^ 0x01]);
}

#[test]
fn a_flipped_byte_in_the_last_body_fails_the_crc_and_is_cut() {
    for stop in [Stop::Clean, Stop::Crash] {
        recover_after(stop, ids().len() - 1, |dir, recs| {
            flip_body_byte(dir, recs[last(recs)].0)
        });
    }
}

#[test]
fn garbage_after_the_last_record_is_zeroed_and_nothing_is_lost() {
    for stop in [Stop::Clean, Stop::Crash] {
        recover_after(stop, ids().len(), |dir, recs| {
            let (offset, len) = recs[last(recs)];
            let (path, pos) = segment_path(dir, offset + len as u64);
            // Looks like the start of a record: a size and the V1 magic, then junk.
            let mut junk = vec![0u8; 300];
            junk[0..4].copy_from_slice(&300u32.to_be_bytes());
            junk[4..8].copy_from_slice(&0xDAA3_20A7u32.to_be_bytes());
            for (i, b) in junk.iter_mut().enumerate().skip(8) {
                *b = (i * 13) as u8;
            }
            write_at(&path, pos, &junk);
        });
    }
}

/// File and position of the entry for the newest record of the queue that holds the last record.
fn tail_queue_entry(dir: &Path) -> (PathBuf, u64) {
    let all = ids();
    let tail = all[all.len() - 1];
    let count = all
        .iter()
        .filter(|i| i.topic() == tail.topic() && i.queue_id() == tail.queue_id())
        .count() as u64;
    let file_bytes = config(dir).consume_queue_entries_per_file * 20;
    let byte = (count - 1) * 20;
    let start = byte / file_bytes * file_bytes;
    let path = dir
        .join("consumequeue")
        .join(tail.topic())
        .join(tail.queue_id().to_string())
        .join(format!("{start:020}"));
    assert!(path.exists(), "{}", path.display());
    (path, byte - start)
}

#[test]
fn a_queue_tail_entry_with_a_zeroed_offset_is_repaired_from_the_log() {
    for stop in [Stop::Clean, Stop::Crash] {
        recover_after(stop, ids().len(), |dir, _| {
            let (path, pos) = tail_queue_entry(dir);
            write_at(&path, pos, &[0u8; 8]);
        });
    }
}

#[test]
fn a_queue_tail_entry_that_never_reached_the_disk_is_repaired_from_the_log() {
    for stop in [Stop::Clean, Stop::Crash] {
        recover_after(stop, ids().len(), |dir, _| {
            let (path, pos) = tail_queue_entry(dir);
            write_at(&path, pos, &[0u8; 20]);
        });
    }
}

#[test]
fn a_queue_tail_entry_pointing_past_the_log_is_repaired_from_the_log() {
    for stop in [Stop::Clean, Stop::Crash] {
        recover_after(stop, ids().len(), |dir, _| {
            let (path, pos) = tail_queue_entry(dir);
            write_at(&path, pos, &0x00FF_FFFF_FFFF_u64.to_be_bytes());
        });
    }
}

fn damage_both_checkpoint_slots(dir: &Path) {
    let path = dir.join("checkpoint");
    assert_eq!(fs::metadata(&path).unwrap().len(), 128);
    write_at(&path, 20, &[0xEE]);
    write_at(&path, 64 + 20, &[0xEE]);
}

#[test]
fn a_checkpoint_with_both_slots_damaged_redispatches_the_whole_log() {
    for stop in [Stop::Clean, Stop::Crash] {
        recover_after(stop, ids().len(), |dir, _| {
            damage_both_checkpoint_slots(dir)
        });
    }
}

#[test]
fn without_a_checkpoint_queues_and_index_are_rebuilt_from_the_log_alone() {
    for stop in [Stop::Clean, Stop::Crash] {
        recover_after(stop, ids().len(), |dir, _| {
            damage_both_checkpoint_slots(dir);
            fs::remove_dir_all(dir.join("consumequeue")).unwrap();
            fs::remove_dir_all(dir.join("index")).unwrap();
        });
    }
}

#[test]
fn a_deleted_index_directory_is_rebuilt_from_the_log() {
    for stop in [Stop::Clean, Stop::Crash] {
        recover_after(stop, ids().len(), |dir, _| {
            fs::remove_dir_all(dir.join("index")).unwrap();
        });
    }
}

#[test]
fn a_stale_copy_of_an_earlier_record_over_the_tail_is_cut() {
    for stop in [Stop::Clean, Stop::Crash] {
        recover_after(stop, ids().len() - 1, |dir, recs| {
            // A whole, CRC-valid record, but not the one that belongs here: its PHYSICALOFFSET
            // gives it away.
            let (old, old_len) = recs[last(recs) - 4];
            let (old_path, old_pos) = segment_path(dir, old);
            let mut copy = vec![0u8; old_len];
            fs::File::open(&old_path)
                .unwrap()
                .read_exact_at(&mut copy, old_pos)
                .unwrap();
            let (offset, _) = recs[last(recs)];
            let (path, pos) = segment_path(dir, offset);
            write_at(&path, pos, &copy);
        });
    }
}

const CHECKPOINT_MAGIC: u32 = 0x4150_4B31;

/// Rewrites both checkpoint slots with the newest one's data, `commitLogFlushedOffset` replaced.
fn set_checkpoint_flushed_offset(dir: &Path, flushed: u64) {
    let path = dir.join("checkpoint");
    let mut cp = fs::read(&path).unwrap();
    let seq = |s: &[u8]| u64::from_be_bytes(s[8..16].try_into().unwrap());
    let newest = if seq(&cp[..64]) >= seq(&cp[64..]) {
        0
    } else {
        64
    };
    let mut slot = cp[newest..newest + 64].to_vec();
    assert_eq!(&slot[0..4], &CHECKPOINT_MAGIC.to_be_bytes());
    slot[16..24].copy_from_slice(&flushed.to_be_bytes());
    let s = seq(&slot) + 1;
    slot[8..16].copy_from_slice(&s.to_be_bytes());
    let crc = crc32fast::hash(&slot[..60]) & 0x7FFF_FFFF;
    slot[60..64].copy_from_slice(&crc.to_be_bytes());
    cp[..64].copy_from_slice(&slot);
    cp[64..].copy_from_slice(&slot);
    write_at(&path, 0, &cp);
}

#[test]
fn a_log_tail_lost_below_the_dispatch_checkpoint_is_cut_at_the_flushed_offset() {
    // Async flush and a power cut: queues and index reached the disk up to the log's end (the
    // checkpoint of a clean close says so), the CommitLog only up to an earlier flush, in the
    // segment before the newest. The checkpoint's commitLogFlushedOffset tells recovery where to
    // start checking.
    let dir = tempfile::tempdir().unwrap();
    let recs = fill(dir.path(), Stop::Clean);
    let (newest, _) = common::newest_segment(dir.path());
    let lost_from = recs.iter().position(|r| r.0 >= newest).unwrap() - 3;
    drop(dir);
    recover_after(Stop::Clean, lost_from, |dir, recs| {
        // Torn pages: every record from the flushed offset on kept its header but not all of its
        // body, so the queue entries pointing at them still look right.
        for &(offset, _) in &recs[lost_from..] {
            flip_body_byte(dir, offset);
        }
        set_checkpoint_flushed_offset(dir, recs[lost_from].0);
    });
}

#[test]
fn a_deleted_newest_segment_loses_only_its_own_records() {
    for stop in [Stop::Clean, Stop::Crash] {
        let dir = tempfile::tempdir().unwrap();
        let recs = fill(dir.path(), stop);
        let (start, _) = common::newest_segment(dir.path());
        let first_lost = recs.iter().position(|r| r.0 >= start).unwrap();
        drop(dir);
        recover_after(stop, first_lost, |dir, _| {
            let (_, path) = common::newest_segment(dir);
            fs::remove_file(path).unwrap();
        });
    }
}

#[test]
fn a_torn_tail_entry_of_a_quiet_queue_is_repaired_from_an_older_segment() {
    // Recovery re-reads only the newest segment below the checkpoint; a queue whose last record is
    // older needs the re-dispatch to reach back to it.
    let dir = tempfile::tempdir().unwrap();
    let store = write_records(dir.path());
    let seg = store.config().commitlog_segment_bytes;
    let quiet_end = store.commitlog_max_offset();
    // Topic 0 only (even thread) until the log is a segment further: topic 1's queues go quiet.
    let mut seq = 0;
    while store.commitlog_max_offset() / seg <= quiet_end / seg + 1 {
        let id = Id {
            round: 2,
            thread: 0,
            seq,
        };
        store.append(&mut id.record()).unwrap();
        seq += 1;
    }
    store.close().unwrap();
    drop(store);
    let (path, pos) = tail_queue_entry(dir.path());
    assert!(ids().last().unwrap().thread % 2 == 1, "a topic 1 queue");
    write_at(&path, pos, &[0u8; 8]);

    let store = open(dir.path());
    let held = check_store(&store);
    assert_eq!(held.len(), ids().len() + seq as usize);
    common::assert_fresh_append_lands_at_the_end(
        &store,
        Id {
            round: 3,
            thread: 1,
            seq: 0,
        },
    );
}
