//! SIGKILL crash test of the sync-flush durability promise: every acknowledged append survives a
//! crash, recovery after recovery.
//!
//! The writer is this test binary itself: run with `APOGEE_CRASH_CHILD=<dir>` and the filter
//! `crash_child_writer`, it opens the store at `<dir>` and appends from several threads until it is
//! killed, printing one `ACK` line per acknowledged append. The parent kills it with SIGKILL after a
//! random (fixed-seed) number of acknowledgements, or while it is still recovering, several times over
//! the same directory, then reopens the store itself and checks everything.
//!
//! SIGKILL kills the process, not the machine: the page cache survives, so this proves the recovery
//! logic (torn tails, queues and index rebuilt from the log, offsets continuing), not the fsync
//! ordering against power loss; tests/torn.rs edits the files the way a power cut or a bad disk
//! would. `APOGEE_SOAK=1` runs many more rounds (minutes instead of seconds).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use apogee_store::{FlushDiskType, MessageStore, StoreConfig, StoreError};
use common::{Id, Rng};

const CHILD_ENV: &str = "APOGEE_CRASH_CHILD";
const ROUND_ENV: &str = "APOGEE_CRASH_ROUND";
const WRITER_THREADS: u32 = 4;
/// A runaway child (parent gone) stops on its own after this many appends per thread.
const MAX_SEQ: u32 = 20_000;

const FLUSH_ENV: &str = "APOGEE_CRASH_FLUSH";

fn config(dir: &Path, flush: FlushDiskType) -> StoreConfig {
    let mut cfg = StoreConfig::for_tests(dir);
    cfg.flush_disk_type = flush;
    // 64 KiB segments (for_tests) and ~0.1-3 KiB records: a rollover every few dozen records, so
    // kills land around blank fillers and fresh segments too. Checkpoints every 50 ms: kills land
    // both just before and well after one.
    cfg
}

fn flush_name(flush: FlushDiskType) -> &'static str {
    match flush {
        FlushDiskType::Sync => "sync",
        FlushDiskType::Async => "async",
    }
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    id: Id,
    physical: u64,
    queue_offset: u64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut it = line.strip_prefix("ACK ")?.split(' ');
    let mut n = || it.next()?.parse::<u64>().ok();
    Some(Ack {
        id: Id {
            round: n()? as u32,
            thread: n()? as u32,
            seq: n()? as u32,
        },
        physical: n()?,
        queue_offset: n()?,
    })
}

/// The writer side, active only in the child process.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u32 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let flush = match std::env::var(FLUSH_ENV).as_deref() {
        Ok("async") => FlushDiskType::Async,
        _ => FlushDiskType::Sync,
    };
    let say = |line: String| {
        // One write per line: a line is either whole in the pipe or absent. A failed write means
        // the parent is gone: stop.
        let mut out = std::io::stdout().lock();
        if out
            .write_all(line.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            std::process::exit(3);
        }
    };
    say("OPENING\n".into());
    let store = Arc::new(MessageStore::open(config(Path::new(&dir), flush)).unwrap());
    say(format!("OPENED {}\n", store.commitlog_max_offset()));
    let threads: Vec<_> = (0..WRITER_THREADS)
        .map(|thread| {
            let store = store.clone();
            std::thread::spawn(move || {
                for seq in 0..MAX_SEQ {
                    let id = Id { round, thread, seq };
                    match store.append_blocking(&mut id.record()) {
                        Ok(res) => say(format!(
                            "ACK {round} {thread} {seq} {} {}\n",
                            res.physical_offsets[0], res.queue_offset
                        )),
                        // Not acknowledged; the record may still be durable. Carry on.
                        Err(StoreError::FlushTimeout(_)) => {}
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Never reached in a normal run: the parent kills first.
    std::process::exit(4);
}

enum KillAt {
    /// As soon as the child says it is opening the store: usually mid-recovery.
    Opening,
    /// After this many acknowledgements of the round.
    Acks(usize),
}

/// Runs one child round and kills it; returns the acknowledgements it printed.
fn run_round(dir: &Path, flush: FlushDiskType, round: u32, kill_at: KillAt) -> (Vec<Ack>, bool) {
    let (mut child, out) = common::spawn(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir)
            .env(ROUND_ENV, round.to_string())
            .env(FLUSH_ENV, flush_name(flush))
            .stderr(Stdio::inherit()),
    );
    let mut lines = out.lines();
    let mut acks = Vec::new();
    let mut opened = false;
    let mut killed = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("OPENED") {
            opened = true;
        } else if let Some(a) = parse_ack(&line) {
            acks.push(a);
        }
        let now = match kill_at {
            KillAt::Opening => line.ends_with("OPENING"),
            KillAt::Acks(n) => acks.len() >= n,
        };
        if now {
            // SAFETY: plain kill(2) on our own child's pid.
            let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
            assert_eq!(rc, 0);
            killed = true;
            break;
        }
    }
    // Whatever the child printed before it died was acknowledged too.
    for line in lines {
        let line = line.unwrap();
        if line.starts_with("OPENED") {
            opened = true;
        } else if let Some(a) = parse_ack(&line) {
            acks.push(a);
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "child of round {round} ended on its own: {status}");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "round {round}: {status}"
    );
    (acks, opened)
}

/// Kills a writer over the same directory round after round, then checks the store.
fn kill_rounds(flush: FlushDiskType, rounds: u32, max_acks: u64, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let mut acks: Vec<Ack> = Vec::new();
    for round in 0..rounds {
        // One round in four dies while opening the store, i.e. during recovery of the last crash.
        let kill_at = if round % 4 == 2 {
            KillAt::Opening
        } else {
            KillAt::Acks(rng.range(20, max_acks) as usize)
        };
        let (got, opened) = run_round(dir.path(), flush, round, kill_at);
        if opened {
            assert!(
                dir.path().join("abort").exists(),
                "a killed store leaves its abort marker"
            );
        }
        // Appends of one thread are acknowledged in order.
        let mut last: HashMap<u32, u32> = HashMap::new();
        for a in &got {
            assert_eq!(a.id.round, round);
            if let Some(prev) = last.insert(a.id.thread, a.id.seq) {
                assert!(prev < a.id.seq);
            }
        }
        acks.extend(got);
    }
    assert!(acks.len() >= 100, "only {} acknowledgements", acks.len());

    let store = common::open(config(dir.path(), flush));
    let held = common::check_store(&store);
    for a in &acks {
        let Some(&(physical, queue_offset)) = held.get(&a.id) else {
            panic!("acknowledged record {:?} was lost", a.id);
        };
        assert_eq!(
            (physical, queue_offset),
            (a.physical, a.queue_offset),
            "acknowledged record {:?} moved",
            a.id
        );
    }
    // Segments rolled over during the run, so recovery crossed blank fillers.
    assert!(store.commitlog_max_offset() > 3 * store.config().commitlog_segment_bytes);
    common::assert_fresh_append_lands_at_the_end(
        &store,
        Id {
            round: rounds,
            thread: 0,
            seq: 0,
        },
    );
    store.close().unwrap();
    assert!(
        !dir.path().join("abort").exists(),
        "a clean close removes the abort marker"
    );
    drop(store);

    // A clean reopen sees the same store.
    let store = common::open(config(dir.path(), flush));
    let again = common::check_store(&store);
    assert_eq!(again.len(), held.len() + 1);
}

fn soak() -> bool {
    std::env::var("APOGEE_SOAK").is_ok_and(|v| v == "1")
}

/// Ten kills (a few seconds); `APOGEE_SOAK=1`: a hundred, with longer rounds (about two minutes).
#[test]
fn sync_flush_keeps_every_acknowledged_record_across_repeated_sigkills() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    if soak() {
        kill_rounds(FlushDiskType::Sync, 100, 3000, 0x5EED_50A4);
    } else {
        kill_rounds(FlushDiskType::Sync, 10, 1000, 0x5EED_C0DE);
    }
}

/// Under async flush an append is acknowledged from the page cache, which a process crash does not
/// lose: every acknowledged record must survive SIGKILL here too. The checkpoints of this mode often
/// have a CommitLog flushed offset behind the dispatched one, which recovery must handle.
#[test]
fn async_flush_keeps_every_appended_record_across_process_kills() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    if soak() {
        kill_rounds(FlushDiskType::Async, 100, 5000, 0x00A5_50A4);
    } else {
        kill_rounds(FlushDiskType::Async, 6, 2000, 0x00A5_C0DE);
    }
}
