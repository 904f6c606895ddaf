//! Store benchmark (no harness): append throughput under async flush, group-commit sync flush with
//! many writers, reading a queue back through `get_messages`, and recovery time after a crash.
//!
//! ```sh
//! cargo bench -p apogee-store --bench store                 # everything, about a minute
//! cargo bench -p apogee-store --bench store -- append read  # only some sections
//! APOGEE_BENCH_RECOVERY_GIB=4 cargo bench -p apogee-store --bench store -- recovery
//! ```
//!
//! Sections: `append`, `sync` (both of `sync-threads`: 64 blocking writer threads, and `sync-cb`:
//! appends in flight answered by callbacks), `read`, `recovery`. Knobs (environment):
//! - `APOGEE_BENCH_DIR`: where stores are created (default: the system temp dir unless it is tmpfs,
//!   else cargo's target tmp dir). Must be on the disk being measured.
//! - `APOGEE_BENCH_APPEND_GIB` (2): bytes appended per append variant.
//! - `APOGEE_BENCH_BATCH` (16): records per append call in the batched variant.
//! - `APOGEE_BENCH_SINGLE` (1): 0 skips the one-record-per-call append variant.
//! - `APOGEE_BENCH_SYNC_SECS` (5), `APOGEE_BENCH_SYNC_WRITERS` (64): the sync-flush run.
//! - `APOGEE_BENCH_WARM_MIB` (32): sync-flush extent warming ahead of the writer; 0 = off.
//! - `APOGEE_BENCH_READ_GIB` (1): size of the queue read back.
//! - `APOGEE_BENCH_RECOVERY_GIB` (1): size of the log recovered after the crash.
//! - `APOGEE_BENCH_DROP_CACHES` (0): 1 = also time recovery with a cold page cache (needs root).
//!
//! Records are 1024 bytes each as stored (topic, TAGS and a unique UNIQ_KEY per record, so the
//! index works as it would for real producers). Every figure is printed with the load average
//! before and after it: other processes on the machine skew the numbers.

use std::env;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use apogee_protocol::message::properties::MessageProperties;
use apogee_protocol::message::record::MessageRecord;
use apogee_store::{FlushDiskType, MessageStore, StoreConfig};
use bytes::Bytes;

const RECORD_BYTES: usize = 1024;
const GIB: u64 = 1 << 30;
const QUEUES: usize = 8;
const UNIQ_PREFIX: &str = "7F000001000042A1";

// ---- records -------------------------------------------------------------------------------

/// A batch of encoded records of one queue, reused for every append: the store patches offsets
/// and the store time in place, and `stamp` gives each record a fresh UNIQ_KEY.
struct Batch {
    buf: Vec<u8>,
    /// Where each record's 16-hex-digit counter sits.
    counters: Vec<usize>,
}

impl Batch {
    fn new(topic: &str, queue_id: i32, n: usize) -> Batch {
        let one = |body_len: usize| -> Vec<u8> {
            let mut props = MessageProperties::new();
            props.set_tags("TagA");
            props.set_uniq_key(format!("{UNIQ_PREFIX}{:016X}", 0));
            let mut rec =
                MessageRecord::new(topic, Bytes::from(vec![b'm'; body_len]), props.to_bytes());
            rec.queue_id = queue_id;
            rec.born_timestamp = 1_700_000_000_000;
            rec.born_host = "10.0.0.1:5000".parse().expect("address");
            rec.store_host = "10.0.0.2:10911".parse().expect("address");
            rec.encode().expect("encode").to_vec()
        };
        let overhead = one(0).len();
        let rec = one(RECORD_BYTES - overhead);
        assert_eq!(rec.len(), RECORD_BYTES);
        let at =
            find(&rec, UNIQ_PREFIX.as_bytes()).expect("uniq key in record") + UNIQ_PREFIX.len();
        let mut buf = Vec::with_capacity(n * RECORD_BYTES);
        let mut counters = Vec::with_capacity(n);
        for i in 0..n {
            counters.push(i * RECORD_BYTES + at);
            buf.extend_from_slice(&rec);
        }
        Batch { buf, counters }
    }

    fn stamp(&mut self, counter: &mut u64) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &at in &self.counters {
            let c = *counter;
            *counter += 1;
            for (i, b) in self.buf[at..at + 16].iter_mut().enumerate() {
                *b = HEX[((c >> (60 - 4 * i)) & 0xF) as usize];
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Appends `bytes` (rounded up to whole batches) spread over `QUEUES` queues of `topic`.
fn fill(store: &MessageStore, topic: &str, queues: usize, batch: usize, bytes: u64) -> u64 {
    let mut batches: Vec<Batch> = (0..queues)
        .map(|q| Batch::new(topic, q as i32, batch))
        .collect();
    let mut counter = 0u64;
    let mut written = 0u64;
    let mut i = 0usize;
    while written < bytes {
        let b = &mut batches[i % queues];
        b.stamp(&mut counter);
        store.append(&mut b.buf).expect("append");
        written += b.buf.len() as u64;
        i += 1;
    }
    written
}

// ---- environment ---------------------------------------------------------------------------

fn env_f64(name: &str, default: f64) -> f64 {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn fs_type(dir: &Path) -> (String, bool) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return ("?".into(), false);
    };
    // SAFETY: valid C string and a zeroed out-struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return ("?".into(), false);
    }
    let name = match st.f_type as i64 {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        other => return (format!("{other:#x}"), false),
    };
    (name.into(), name == "tmpfs")
}

/// Sectors written to the block device holding `dir` so far (all processes), in bytes.
fn disk_written_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata(dir).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let stats = fs::read_to_string("/proc/diskstats").ok()?;
    stats.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && f[0] == major.to_string() && f[1] == minor.to_string())
            .then(|| f[9].parse::<u64>().ok().map(|s| s * 512))
            .flatten()
    })
}

fn bench_root() -> PathBuf {
    if let Ok(d) = env::var("APOGEE_BENCH_DIR") {
        return PathBuf::from(d);
    }
    let tmp = env::temp_dir();
    if !fs_type(&tmp).1 {
        return tmp;
    }
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

fn config(dir: &Path, mode: FlushDiskType) -> StoreConfig {
    let d = StoreConfig::default();
    StoreConfig {
        root_dir: dir.to_path_buf(),
        flush_disk_type: mode,
        commitlog_warm_ahead_bytes: (env_f64(
            "APOGEE_BENCH_WARM_MIB",
            (d.commitlog_warm_ahead_bytes >> 20) as f64,
        ) as u64)
            << 20,
        flush_least_bytes: env_f64(
            "APOGEE_BENCH_FLUSH_LEAST_KIB",
            (d.flush_least_bytes / 1024) as f64,
        ) as u64
            * 1024,
        ..d
    }
}

// ---- results -------------------------------------------------------------------------------

struct Figure {
    name: String,
    value: String,
    detail: String,
    target: String,
    load: String,
}

struct Report {
    figures: Vec<Figure>,
}

impl Report {
    fn add(&mut self, name: &str, value: String, detail: String, target: &str, load0: &str) {
        let f = Figure {
            name: name.into(),
            value,
            detail,
            target: target.into(),
            load: format!("{load0} -> {}", load_average()),
        };
        println!(
            "  {:<44} {:>14}  {}  [target {}; load {}]",
            f.name, f.value, f.detail, f.target, f.load
        );
        self.figures.push(f);
    }

    fn print(&self) {
        let w = |f: fn(&Figure) -> &str| self.figures.iter().map(|x| f(x).len()).max().unwrap_or(0);
        let (wn, wv, wd, wt) = (
            w(|f| &f.name),
            w(|f| &f.value),
            w(|f| &f.detail),
            w(|f| &f.target),
        );
        println!();
        println!(
            "{:<wn$}  {:>wv$}  {:<wd$}  {:<wt$}  load average (1 5 15 min) before -> after",
            "figure", "value", "detail", "target"
        );
        for f in &self.figures {
            println!(
                "{:<wn$}  {:>wv$}  {:<wd$}  {:<wt$}  {}",
                f.name, f.value, f.detail, f.target, f.load
            );
        }
    }
}

fn gbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

fn fresh_dir(root: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("bench dir");
    d
}

// ---- sections ------------------------------------------------------------------------------

fn bench_append(root: &Path, report: &mut Report) {
    let bytes = (env_f64("APOGEE_BENCH_APPEND_GIB", 2.0) * GIB as f64) as u64;
    let batch = env_f64("APOGEE_BENCH_BATCH", 16.0).max(1.0) as usize;
    let single = env_f64("APOGEE_BENCH_SINGLE", 1.0) != 0.0;
    for per_call in [1usize, batch] {
        if per_call == 1 && !single {
            continue;
        }
        let dir = fresh_dir(root, "append");
        let load0 = load_average();
        let store = MessageStore::open(config(&dir, FlushDiskType::Async)).expect("open");
        let disk0 = disk_written_bytes(&dir);
        let t0 = Instant::now();
        let written = fill(&store, "BenchAppend", QUEUES, per_call, bytes);
        let append_s = t0.elapsed().as_secs_f64();
        store.close().expect("close");
        let durable_s = t0.elapsed().as_secs_f64();
        let disk = match (disk0, disk_written_bytes(&dir)) {
            (Some(a), Some(b)) => format!(
                "; disk writes {:.2}x the log",
                (b - a) as f64 / written as f64
            ),
            _ => String::new(),
        };
        let records = written / RECORD_BYTES as u64;
        report.add(
            &format!("async append, {per_call} record(s)/call"),
            format!("{:.2} GB/s", gbps(written, append_s)),
            format!(
                "{:.2} M records/s; {:.2} GiB in {:.2} s; incl. final flush {:.2} GB/s{disk}",
                records as f64 / append_s / 1e6,
                written as f64 / GIB as f64,
                append_s,
                gbps(written, durable_s)
            ),
            ">= 1.5 GB/s",
            &load0,
        );
        drop(store);
        let _ = fs::remove_dir_all(&dir);
    }
}

fn bench_sync(root: &Path, report: &mut Report) {
    let secs = env_f64("APOGEE_BENCH_SYNC_SECS", 5.0);
    let writers = env_f64("APOGEE_BENCH_SYNC_WRITERS", 64.0).max(1.0) as usize;
    let dir = fresh_dir(root, "sync");
    let store = Arc::new(MessageStore::open(config(&dir, FlushDiskType::Sync)).expect("open"));
    // Warm the segment's first pages so the run measures steady state, not the first faults.
    fill(&store, "BenchWarm", 1, 16, 8 << 20);
    let load0 = load_average();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(writers + 1));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (store, stop, done, start) =
                (store.clone(), stop.clone(), done.clone(), start.clone());
            std::thread::spawn(move || {
                let mut b = Batch::new("BenchSync", (w % QUEUES) as i32, 1);
                let mut counter = (w as u64) << 40;
                let mut lat_us = Vec::with_capacity(1 << 16);
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    b.stamp(&mut counter);
                    let t = Instant::now();
                    store.append_blocking(&mut b.buf).expect("append");
                    lat_us.push(t.elapsed().as_micros() as u32);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                lat_us
            })
        })
        .collect();
    let flushes0 = store.commitlog_flush_stats();
    start.wait();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let n0 = done.load(Ordering::Relaxed);
    let f1 = store.commitlog_flush_stats();
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<u32> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("writer"))
        .collect();
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)));
    let bytes = n0 * RECORD_BYTES as u64;
    let flushes = f1.rounds - flushes0.rounds;
    let fsync_us = (f1.total_sync_us - flushes0.total_sync_us) as f64 / flushes.max(1) as f64;
    report.add(
        &format!("sync flush, {writers} writers, 1 record/call"),
        format!("{:.0} MB/s", bytes as f64 / elapsed / 1e6),
        format!(
            "{:.0} k records/s; {:.0} fsyncs/s of {fsync_us:.0} us, {:.1} records/fsync; \
             latency p50 {} us, p99 {} us",
            n0 as f64 / elapsed / 1e3,
            flushes as f64 / elapsed,
            n0 as f64 / flushes.max(1) as f64,
            pct(0.50).copied().unwrap_or(0),
            pct(0.99).copied().unwrap_or(0)
        ),
        ">= 300 MB/s",
        &load0,
    );
    if let Ok(store) = Arc::try_unwrap(store) {
        store.close().expect("close");
    }
    let _ = fs::remove_dir_all(&dir);
}

/// Group commit as a broker drives it: `drivers` threads each keep `in_flight` appends waiting for
/// their fsync through `wait_durable` callbacks, instead of one blocked thread per producer.
fn bench_sync_callbacks(root: &Path, report: &mut Report, drivers: usize, in_flight: usize) {
    use std::sync::mpsc;
    let secs = env_f64("APOGEE_BENCH_SYNC_SECS", 5.0);
    let dir = fresh_dir(root, "sync-cb");
    let store = Arc::new(MessageStore::open(config(&dir, FlushDiskType::Sync)).expect("open"));
    fill(&store, "BenchWarm", 1, 16, 8 << 20);
    let load0 = load_average();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(drivers + 1));
    let handles: Vec<_> = (0..drivers)
        .map(|d| {
            let (store, stop, done, start) =
                (store.clone(), stop.clone(), done.clone(), start.clone());
            std::thread::spawn(move || {
                let mut b = Batch::new("BenchSyncCb", (d % QUEUES) as i32, 1);
                let mut counter = (d as u64) << 40;
                let (tx, rx) = mpsc::channel::<Instant>();
                let mut lat_us = Vec::with_capacity(1 << 16);
                let mut outstanding = 0usize;
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    while outstanding < in_flight {
                        b.stamp(&mut counter);
                        let t = Instant::now();
                        let res = store.append(&mut b.buf).expect("append");
                        let tx = tx.clone();
                        store.wait_durable(
                            res.end_offset,
                            Box::new(move |ok| {
                                assert!(ok, "flush failed");
                                let _ = tx.send(t);
                            }),
                        );
                        outstanding += 1;
                    }
                    // Block for one completion, then take every other one already there.
                    let Ok(t) = rx.recv() else { break };
                    for t in std::iter::once(t).chain(rx.try_iter()) {
                        lat_us.push(t.elapsed().as_micros() as u32);
                        outstanding -= 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                while outstanding > 0 && rx.recv().is_ok() {
                    outstanding -= 1;
                }
                lat_us
            })
        })
        .collect();
    let flushes0 = store.commitlog_flush_stats();
    start.wait();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let n0 = done.load(Ordering::Relaxed);
    let f1 = store.commitlog_flush_stats();
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<u32> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("driver"))
        .collect();
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)));
    let bytes = n0 * RECORD_BYTES as u64;
    let flushes = f1.rounds - flushes0.rounds;
    let fsync_us = (f1.total_sync_us - flushes0.total_sync_us) as f64 / flushes.max(1) as f64;
    report.add(
        &format!("sync flush, {drivers}x{in_flight} in flight via callbacks"),
        format!("{:.0} MB/s", bytes as f64 / elapsed / 1e6),
        format!(
            "{:.0} k records/s; {:.0} fsyncs/s of {fsync_us:.0} us, {:.1} records/fsync; \
             latency p50 {} us, p99 {} us",
            n0 as f64 / elapsed / 1e3,
            flushes as f64 / elapsed,
            n0 as f64 / flushes.max(1) as f64,
            pct(0.50).copied().unwrap_or(0),
            pct(0.99).copied().unwrap_or(0)
        ),
        ">= 300 MB/s",
        &load0,
    );
    if let Ok(store) = Arc::try_unwrap(store) {
        store.close().expect("close");
    }
    let _ = fs::remove_dir_all(&dir);
}

/// What the machine does right now without the store: first touch of fresh memory (the price of
/// every new page-cache page), 64 KiB pwrites into a fresh preallocated file (page cache only),
/// and fdatasync after 4 KiB and 64 KiB writes. Printed once, for reading the other figures.
fn baseline(root: &Path) {
    let n = 256usize << 20;
    let t = Instant::now();
    let mut v: Vec<u8> = Vec::with_capacity(n);
    v.resize(n, 1);
    std::hint::black_box(&v);
    let touch = gbps(n as u64, t.elapsed().as_secs_f64());
    drop(v);
    let path = root.join("baseline");
    let Ok(f) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
    else {
        return;
    };
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    // SAFETY: fallocate on an owned descriptor.
    unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, n as libc::off_t) };
    let chunk = vec![7u8; 64 * 1024];
    let t = Instant::now();
    for i in 0..n / chunk.len() {
        let _ = f.write_all_at(&chunk, (i * chunk.len()) as u64);
    }
    let pw = gbps(n as u64, t.elapsed().as_secs_f64());
    let _ = f.sync_data();
    let fsync_us = |len: usize, base: usize| {
        let buf = vec![9u8; len];
        let t = Instant::now();
        for i in 0..50 {
            let _ = f.write_all_at(&buf, (base + i * len) as u64);
            let _ = f.sync_data();
        }
        t.elapsed().as_secs_f64() * 1e6 / 50.0
    };
    // Over blocks already written (no extent conversion), as the flusher meets them mostly.
    let f4 = fsync_us(4096, 0);
    let f64k = fsync_us(64 * 1024, 0);
    drop(f);
    let _ = fs::remove_file(&path);
    println!(
        "machine now: first touch of new memory {touch:.2} GB/s; 64 KiB pwrite into a new file \
         {pw:.2} GB/s; write+fdatasync 4 KiB {f4:.0} us, 64 KiB {f64k:.0} us"
    );
}

fn read_pass(store: &MessageStore, topic: &str, copy: bool) -> (u64, f64) {
    let max = store.max_offset(topic, 0);
    let mut sink = vec![0u8; 256 * 1024];
    let mut at = 0usize;
    let mut off = 0u64;
    let mut bytes = 0u64;
    let all = |_: i64| true;
    let t0 = Instant::now();
    while off < max {
        let r = store.get_messages(topic, 0, off, 32, 256 * 1024, &all);
        for m in &r.messages {
            bytes += m.len() as u64;
            if copy {
                if at + m.len() > sink.len() {
                    std::hint::black_box(&sink);
                    at = 0;
                }
                sink[at..at + m.len()].copy_from_slice(m);
                at += m.len();
            }
        }
        std::hint::black_box(&r);
        if r.next_begin_offset <= off {
            break;
        }
        off = r.next_begin_offset;
    }
    (bytes, t0.elapsed().as_secs_f64())
}

fn bench_read(root: &Path, report: &mut Report) {
    let bytes = (env_f64("APOGEE_BENCH_READ_GIB", 1.0) * GIB as f64) as u64;
    let dir = fresh_dir(root, "read");
    let store = MessageStore::open(config(&dir, FlushDiskType::Async)).expect("open");
    fill(&store, "BenchRead", 1, 16, bytes);
    store.close().expect("close");
    drop(store);
    // Reopened: the records are in the page cache but not mapped by this store yet.
    let store = MessageStore::open(config(&dir, FlushDiskType::Async)).expect("reopen");
    for (name, copy) in [
        ("queue read-back + copy, fresh mapping", true),
        ("queue read-back + copy, mapped", true),
        ("queue read-back, zero-copy handles only", false),
    ] {
        let load0 = load_average();
        let (n, s) = read_pass(&store, "BenchRead", copy);
        report.add(
            name,
            format!("{:.2} GB/s", gbps(n, s)),
            format!(
                "{:.2} M records/s; {:.2} GiB in {:.2} s; 32 records per get_messages",
                n as f64 / RECORD_BYTES as f64 / s / 1e6,
                n as f64 / GIB as f64,
                s
            ),
            ">= 3 GB/s",
            &load0,
        );
    }
    store.close().expect("close");
    drop(store);
    let _ = fs::remove_dir_all(&dir);
}

/// Child process: writes a log, waits until it is flushed, says so, and waits to be killed.
fn crash_writer() {
    let dir = PathBuf::from(env::var("APOGEE_BENCH_CHILD_DIR").expect("dir"));
    let bytes: u64 = env::var("APOGEE_BENCH_CHILD_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("bytes");
    let checkpoints = env::var("APOGEE_BENCH_CHILD_CHECKPOINTS").as_deref() == Ok("1");
    let mut cfg = config(&dir, FlushDiskType::Async);
    if !checkpoints {
        // No checkpoint after the one written at open: recovery must scan the whole log.
        cfg.dispatch_flush_interval_ms = 86_400_000;
    }
    let store = MessageStore::open(cfg).expect("open");
    let t0 = Instant::now();
    let written = fill(&store, "BenchRecover", QUEUES, 16, bytes);
    let write_s = t0.elapsed().as_secs_f64();
    while store.flushed_offset() < store.commitlog_max_offset() {
        std::thread::sleep(Duration::from_millis(20));
    }
    if checkpoints {
        // Let a dispatch flush write a checkpoint that covers everything.
        std::thread::sleep(Duration::from_millis(2 * 1000 + 200));
    }
    println!(
        "READY {} {} {write_s}",
        store.commitlog_max_offset(),
        written / RECORD_BYTES as u64
    );
    let _ = std::io::stdout().flush();
    // Never closed: the parent kills this process with SIGKILL.
    std::mem::forget(store);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// CPU seconds (user + system) and major page faults of the calling thread so far.
fn thread_usage() -> (f64, i64) {
    // SAFETY: getrusage fills a zeroed struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_majflt)
}

fn drop_caches() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::sync() };
    fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn bench_recovery(root: &Path, report: &mut Report) {
    let gib = env_f64("APOGEE_BENCH_RECOVERY_GIB", 1.0);
    let bytes = (gib * GIB as f64) as u64;
    let cold = env_f64("APOGEE_BENCH_DROP_CACHES", 0.0) > 0.0;
    let mut cases = vec![
        ("full scan", false, false),
        ("checkpoint current", true, false),
    ];
    if cold {
        cases.push(("full scan, cold page cache", false, true));
    }
    for (what, checkpoints, cold) in cases {
        let dir = fresh_dir(root, "recovery");
        let mut child = Command::new(env::current_exe().expect("exe"))
            .env("APOGEE_BENCH_CHILD", "crash-writer")
            .env("APOGEE_BENCH_CHILD_DIR", &dir)
            .env("APOGEE_BENCH_CHILD_BYTES", bytes.to_string())
            .env(
                "APOGEE_BENCH_CHILD_CHECKPOINTS",
                if checkpoints { "1" } else { "0" },
            )
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("child output");
        let mut it = line.split_whitespace().skip(1);
        let end: u64 = it.next().and_then(|s| s.parse().ok()).expect("end offset");
        let records: u64 = it.next().and_then(|s| s.parse().ok()).expect("records");
        child.kill().expect("SIGKILL"); // SIGKILL: no close, no flush, abort file stays
        child.wait().expect("wait");
        assert!(
            dir.join("abort").exists(),
            "abort marker must survive the crash"
        );
        if cold && !drop_caches() {
            println!("  (cannot drop caches: not root?) skipping the cold case");
            let _ = fs::remove_dir_all(&dir);
            continue;
        }
        let load0 = load_average();
        let (cpu0, majflt0) = thread_usage();
        let t0 = Instant::now();
        let store = MessageStore::open(config(&dir, FlushDiskType::Async)).expect("recover");
        let secs = t0.elapsed().as_secs_f64();
        let (cpu1, majflt1) = thread_usage();
        assert_eq!(store.commitlog_max_offset(), end, "recovery lost records");
        let in_queues: u64 = (0..QUEUES as i32)
            .map(|q| store.max_offset("BenchRecover", q))
            .sum();
        assert_eq!(in_queues, records, "queues after recovery");
        report.add(
            &format!("recovery after SIGKILL, {what}"),
            format!("{secs:.2} s"),
            format!(
                "{:.2} GiB log, {:.2} M records; {:.2} GB/s; on CPU {:.2} s, {} major faults",
                end as f64 / GIB as f64,
                records as f64 / 1e6,
                gbps(end, secs),
                cpu1 - cpu0,
                majflt1 - majflt0
            ),
            if gib >= 4.0 {
                "4 GiB < 5 s"
            } else {
                "4 GiB < 5 s (scaled)"
            },
            &load0,
        );
        store.close().expect("close");
        drop(store);
        let _ = fs::remove_dir_all(&dir);
    }
}

fn main() {
    if env::var("APOGEE_BENCH_CHILD").as_deref() == Ok("crash-writer") {
        crash_writer();
        return;
    }
    let wanted: Vec<String> = env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |s: &str| wanted.is_empty() || wanted.iter().any(|w| w == s);
    let root = bench_root().join(format!("apogee-store-bench-{}", std::process::id()));
    fs::create_dir_all(&root).expect("bench root");
    let (fs_name, tmpfs) = fs_type(&root);
    println!(
        "apogee-store benchmark: {} CPUs, records of {RECORD_BYTES} bytes, dir {} ({fs_name}{})",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        root.display(),
        if tmpfs { ", NOT a real disk" } else { "" }
    );
    println!("load average at start: {}", load_average());
    baseline(&root);
    let mut report = Report {
        figures: Vec::new(),
    };
    let t0 = Instant::now();
    if run("append") {
        bench_append(&root, &mut report);
    }
    if run("sync") || run("sync-threads") {
        bench_sync(&root, &mut report);
    }
    if run("sync") || run("sync-cb") {
        bench_sync_callbacks(&root, &mut report, 2, 32);
    }
    if run("read") {
        bench_read(&root, &mut report);
    }
    if run("recovery") {
        bench_recovery(&root, &mut report);
    }
    let _ = fs::remove_dir_all(&root);
    report.print();
    println!(
        "load average at end: {}; total {:.1} s",
        load_average(),
        t0.elapsed().as_secs_f64()
    );
}
