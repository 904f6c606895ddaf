//! The CommitLog flusher: one thread that makes appended bytes durable.
//!
//! Sync mode is group commit: a writer registers "tell me when offset X is durable" and the flusher
//! answers every waiter registered before it started an fdatasync once that fdatasync returns, so one
//! fsync serves all of them. Async mode flushes on a timer, or early once enough bytes are dirty.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::FlushDiskType;

/// Called with `true` once the offset it waited for is durable, `false` if the flush failed (the
/// store is then read-only) or the store shut down first.
pub type FlushCallback = Box<dyn FnOnce(bool) + Send>;

/// CommitLog flush statistics since the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Flush rounds (each one fdatasync per segment it touched).
    pub rounds: u64,
    /// Time spent in those rounds, microseconds.
    pub total_sync_us: u64,
}

/// What the flusher needs from the log it flushes.
pub(crate) trait Flushable: Send + Sync + 'static {
    /// The published write position: every byte below it is appended.
    fn write_position(&self) -> u64;
    /// Makes `[from, to)` durable.
    fn sync_range(&self, from: u64, to: u64) -> std::io::Result<()>;
    /// Called by the sync-flush loop after each round's waiters were answered, while their writers
    /// queue again: room for upkeep that should not sit inside an fdatasync's wait.
    fn between_rounds(&self) {}
    /// Called after a failed sync: the log must stop accepting writes.
    fn on_flush_error(&self, err: &std::io::Error);
}

struct State {
    waiters: Vec<(u64, FlushCallback)>,
    dirty_signal: bool,
    shutdown: bool,
    /// While the flusher gathers a sync batch: wake it once this many waiters are queued.
    gather_target: usize,
}

/// Async flush: the flusher is woken before its next tick only once this much is dirty. Between
/// ticks the page cache holds the records (they survive a crash of the process, not of the machine,
/// as with RocketMQ's async flush); flushing every few KiB would cost an fdatasync, and TLB
/// shootdowns for the pages written through the mapping, per few records.
const ASYNC_EARLY_FLUSH_BYTES: u64 = 64 << 20;
/// Async flush: at least this often everything dirty is flushed, however little
/// (`flushCommitLogThoroughInterval`).
const ASYNC_THOROUGH_INTERVAL: Duration = Duration::from_secs(10);

/// Longest a sync batch waits for more writers, whatever the last fsync took.
const MAX_GATHER: Duration = Duration::from_micros(500);

/// How many waiters the next sync batch should wait for: the writers served by the last fsync
/// plus those that queued while it ran (disjoint groups: a served writer waits for its callback).
/// Gathering them into one fsync instead of alternating half-batches doubles what each fsync
/// carries. After a gather that timed out, only what actually came.
fn next_gather_target(served: usize, arrived_during_sync: usize, timed_out: bool) -> usize {
    if timed_out {
        served.max(1)
    } else {
        (served + arrived_during_sync).max(1)
    }
}

pub(crate) struct Flusher {
    state: Mutex<State>,
    cond: Condvar,
    flushed: AtomicU64,
    /// fdatasync rounds run so far, and the time they took (statistics for benchmarks and metrics).
    syncs: AtomicU64,
    sync_us: AtomicU64,
    failed: AtomicBool,
    mode: FlushDiskType,
    interval: Duration,
    /// Async: a tick flushes only if this much is dirty (`flushCommitLogLeastPages`), or the
    /// thorough interval has passed.
    least_bytes: u64,
    /// Async: dirty bytes that wake the flusher before its tick.
    early_bytes: u64,
}

impl Flusher {
    pub fn new(mode: FlushDiskType, interval_ms: u64, least_bytes: u64, flushed: u64) -> Flusher {
        Flusher {
            state: Mutex::new(State {
                waiters: Vec::new(),
                dirty_signal: false,
                shutdown: false,
                gather_target: 0,
            }),
            cond: Condvar::new(),
            flushed: AtomicU64::new(flushed),
            syncs: AtomicU64::new(0),
            sync_us: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            mode,
            interval: Duration::from_millis(interval_ms.max(1)),
            least_bytes,
            early_bytes: least_bytes.max(ASYNC_EARLY_FLUSH_BYTES),
        }
    }

    /// Everything below this offset is durable.
    pub fn flushed_offset(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// Flush rounds run so far (one fdatasync per segment touched) and their total duration.
    pub fn stats(&self) -> FlushStats {
        FlushStats {
            rounds: self.syncs.load(Ordering::Relaxed),
            total_sync_us: self.sync_us.load(Ordering::Relaxed),
        }
    }

    /// Sets the durable offset after recovery, before the flusher thread starts.
    pub fn set_flushed(&self, offset: u64) {
        self.flushed.store(offset, Ordering::Release);
    }

    /// Calls `cb` once `offset` is durable (at once if it already is).
    pub fn wait_for(&self, offset: u64, cb: FlushCallback) {
        if self.failed.load(Ordering::Acquire) {
            cb(false);
            return;
        }
        if self.flushed_offset() >= offset {
            cb(true);
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.shutdown {
            drop(st);
            cb(false);
            return;
        }
        st.waiters.push((offset, cb));
        // The flusher sleeps only with no waiter queued, or while gathering a batch.
        let wake =
            st.waiters.len() == 1 || (st.gather_target > 0 && st.waiters.len() >= st.gather_target);
        drop(st);
        if wake {
            self.cond.notify_one();
        }
    }

    /// Async mode: tells the flusher that `write_position` bytes exist, so it can start before its
    /// tick when a lot is dirty.
    pub fn note_appended(&self, write_position: u64) {
        if self.mode == FlushDiskType::Async
            && write_position.saturating_sub(self.flushed_offset()) >= self.early_bytes
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if !st.dirty_signal {
                st.dirty_signal = true;
                drop(st);
                self.cond.notify_one();
            }
        }
    }

    /// The flusher thread's body; returns after [`Flusher::shutdown`], having flushed everything.
    pub fn run(&self, log: &dyn Flushable) {
        let mut expected = 1usize;
        let mut last_sync = Duration::ZERO;
        let mut last_thorough = Instant::now();
        loop {
            let (batch, shutdown, timed_out, signalled) = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                while st.waiters.is_empty() && !st.dirty_signal && !st.shutdown {
                    let (guard, timeout) = self
                        .cond
                        .wait_timeout(st, self.interval)
                        .unwrap_or_else(|p| p.into_inner());
                    st = guard;
                    if timeout.timed_out() {
                        break;
                    }
                }
                // Group commit: give the writers of the last round a moment (a fraction of an
                // fsync) to queue again, so that one fsync serves all of them.
                let mut timed_out = false;
                if self.mode == FlushDiskType::Sync
                    && !st.waiters.is_empty()
                    && st.waiters.len() < expected
                    && !st.shutdown
                {
                    let deadline = Instant::now() + (last_sync / 2).min(MAX_GATHER);
                    st.gather_target = expected;
                    while st.waiters.len() < expected && !st.shutdown {
                        let now = Instant::now();
                        if now >= deadline {
                            timed_out = true;
                            break;
                        }
                        st = self
                            .cond
                            .wait_timeout(st, deadline - now)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                    st.gather_target = 0;
                }
                let signalled = std::mem::take(&mut st.dirty_signal);
                (
                    std::mem::take(&mut st.waiters),
                    st.shutdown,
                    timed_out,
                    signalled,
                )
            };
            // Every waiter in `batch` registered an offset that was already published, so the
            // position read now covers all of them.
            let target = log.write_position();
            let from = self.flushed_offset();
            if self.mode == FlushDiskType::Async
                && batch.is_empty()
                && !shutdown
                && !signalled
                && target.saturating_sub(from) < self.least_bytes
                && last_thorough.elapsed() < ASYNC_THOROUGH_INTERVAL
            {
                // A tick with too little dirty: wait for more (RocketMQ's least pages).
                continue;
            }
            if self.mode == FlushDiskType::Async {
                last_thorough = Instant::now();
            }
            let ok = if target > from && !self.failed.load(Ordering::Acquire) {
                self.syncs.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let res = log.sync_range(from, target);
                last_sync = started.elapsed();
                self.sync_us
                    .fetch_add(last_sync.as_micros() as u64, Ordering::Relaxed);
                match res {
                    Ok(()) => {
                        self.flushed.store(target, Ordering::Release);
                        true
                    }
                    Err(e) => {
                        self.failed.store(true, Ordering::Release);
                        log.on_flush_error(&e);
                        false
                    }
                }
            } else {
                !self.failed.load(Ordering::Acquire)
            };
            if self.mode == FlushDiskType::Sync && !batch.is_empty() {
                let arrived = self.state.lock().map(|st| st.waiters.len()).unwrap_or(0);
                expected = next_gather_target(batch.len(), arrived, timed_out);
            }
            let answered = !batch.is_empty();
            for (offset, cb) in batch {
                cb(ok && self.flushed_offset() >= offset);
            }
            if self.mode == FlushDiskType::Sync && answered && ok {
                log.between_rounds();
            }
            if shutdown {
                let rest = {
                    let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                    std::mem::take(&mut st.waiters)
                };
                for (offset, cb) in rest {
                    cb(self.flushed_offset() >= offset);
                }
                return;
            }
        }
    }

    pub fn shutdown(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.shutdown = true;
        drop(st);
        self.cond.notify_all();
    }
}

/// Runs `flusher` on its own thread over `log`.
pub(crate) fn spawn(
    flusher: Arc<Flusher>,
    log: Arc<dyn Flushable>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("apogee-flush".into())
        .spawn(move || flusher.run(log.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    struct FakeLog {
        pos: AtomicU64,
        syncs: AtomicU64,
        fail: AtomicBool,
        errors: AtomicU64,
        /// Every call of `between_rounds`, with the number of syncs run by then.
        upkeep: Mutex<Vec<u64>>,
    }

    impl Flushable for FakeLog {
        fn write_position(&self) -> u64 {
            self.pos.load(Ordering::Acquire)
        }
        fn sync_range(&self, _from: u64, _to: u64) -> std::io::Result<()> {
            self.syncs.fetch_add(1, Ordering::AcqRel);
            if self.fail.load(Ordering::Acquire) {
                Err(std::io::Error::other("EIO"))
            } else {
                Ok(())
            }
        }
        fn between_rounds(&self) {
            self.upkeep
                .lock()
                .unwrap()
                .push(self.syncs.load(Ordering::Acquire));
        }
        fn on_flush_error(&self, _err: &std::io::Error) {
            self.errors.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn fake() -> Arc<FakeLog> {
        Arc::new(FakeLog {
            pos: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            fail: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            upkeep: Mutex::new(Vec::new()),
        })
    }

    #[test]
    fn upkeep_runs_after_answered_sync_rounds_only() {
        let log = fake();
        let flusher = Arc::new(Flusher::new(FlushDiskType::Sync, 10_000, 0, 0));
        let h = spawn(flusher.clone(), log.clone()).unwrap();
        for i in 1..=3u64 {
            log.pos.store(i * 10, Ordering::Release);
            let (tx, rx) = mpsc::channel();
            flusher.wait_for(i * 10, Box::new(move |ok| tx.send(ok).unwrap()));
            assert!(rx.recv().unwrap());
        }
        flusher.shutdown();
        h.join().unwrap();
        // Once per round, each after that round's fsync (never before the first one).
        let upkeep = log.upkeep.lock().unwrap().clone();
        assert_eq!(upkeep.len() as u64, log.syncs.load(Ordering::Acquire));
        assert!(upkeep
            .iter()
            .zip(1..)
            .all(|(&synced, round)| synced == round));

        // Async flush has no rounds to fit upkeep between.
        let log = fake();
        let flusher = Arc::new(Flusher::new(FlushDiskType::Async, 10_000, 0, 0));
        let h = spawn(flusher.clone(), log.clone()).unwrap();
        log.pos.store(10, Ordering::Release);
        let (tx, rx) = mpsc::channel();
        flusher.note_appended(10);
        flusher.wait_for(10, Box::new(move |ok| tx.send(ok).unwrap()));
        flusher.shutdown();
        assert!(rx.recv().unwrap());
        h.join().unwrap();
        assert!(log.syncs.load(Ordering::Acquire) >= 1);
        assert!(log.upkeep.lock().unwrap().is_empty());
    }

    #[test]
    fn sync_waiters_are_answered_after_a_covering_flush() {
        let log = fake();
        let flusher = Arc::new(Flusher::new(FlushDiskType::Sync, 10_000, 0, 0));
        let h = spawn(flusher.clone(), log.clone()).unwrap();
        let (tx, rx) = mpsc::channel();
        for i in 1..=100u64 {
            log.pos.store(i * 10, Ordering::Release);
            let tx = tx.clone();
            flusher.wait_for(i * 10, Box::new(move |ok| tx.send((i, ok)).unwrap()));
        }
        let mut got: Vec<(u64, bool)> = (0..100).map(|_| rx.recv().unwrap()).collect();
        got.sort();
        assert!(got.iter().all(|(_, ok)| *ok));
        assert_eq!(flusher.flushed_offset(), 1000);
        // Group commit: far fewer fsyncs than waiters (at least one).
        let syncs = log.syncs.load(Ordering::Acquire);
        assert!((1..=100).contains(&syncs));
        flusher.shutdown();
        h.join().unwrap();
    }

    #[test]
    fn gather_target_joins_the_served_and_the_newly_queued_writers() {
        // Two cohorts of 32 alternating: the next batch waits for all 64.
        assert_eq!(next_gather_target(32, 32, false), 64);
        // One cohort: wait for it to come back.
        assert_eq!(next_gather_target(64, 0, false), 64);
        // A gather that timed out: writers left; expect only what came.
        assert_eq!(next_gather_target(40, 5, true), 40);
        // A lone writer never waits for anyone.
        assert_eq!(next_gather_target(1, 0, false), 1);
        assert_eq!(next_gather_target(0, 0, true), 1);
    }

    #[test]
    fn an_already_durable_offset_is_answered_at_once() {
        let flusher = Flusher::new(FlushDiskType::Sync, 10_000, 0, 500);
        let (tx, rx) = mpsc::channel();
        flusher.wait_for(400, Box::new(move |ok| tx.send(ok).unwrap()));
        assert!(rx.try_recv().unwrap());
    }

    #[test]
    fn a_failed_fsync_fails_waiters_and_all_later_ones() {
        let log = fake();
        log.fail.store(true, Ordering::Release);
        let flusher = Arc::new(Flusher::new(FlushDiskType::Sync, 10_000, 0, 0));
        let h = spawn(flusher.clone(), log.clone()).unwrap();
        log.pos.store(10, Ordering::Release);
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        flusher.wait_for(10, Box::new(move |ok| tx.send(ok).unwrap()));
        assert!(!rx.recv().unwrap());
        assert_eq!(log.errors.load(Ordering::Acquire), 1);
        flusher.wait_for(10, Box::new(move |ok| tx2.send(ok).unwrap()));
        assert!(!rx.recv().unwrap());
        flusher.shutdown();
        h.join().unwrap();
    }

    #[test]
    fn async_dirty_signal_is_raised_only_past_the_threshold() {
        let mut flusher = Flusher::new(FlushDiskType::Async, 3_600_000, 100, 0);
        assert_eq!(flusher.early_bytes, ASYNC_EARLY_FLUSH_BYTES);
        flusher.early_bytes = 100;
        flusher.note_appended(99);
        assert!(!flusher.state.lock().unwrap().dirty_signal);
        flusher.note_appended(100);
        assert!(flusher.state.lock().unwrap().dirty_signal);
        let sync = Flusher::new(FlushDiskType::Sync, 3_600_000, 100, 0);
        sync.note_appended(1000);
        assert!(!sync.state.lock().unwrap().dirty_signal);
    }

    #[test]
    fn async_mode_answers_waiters_and_flushes_everything_on_shutdown() {
        let log = fake();
        // A long interval: only the dirty signal or shutdown can trigger a flush.
        let mut flusher = Flusher::new(FlushDiskType::Async, 3_600_000, 100, 0);
        flusher.early_bytes = 100;
        let flusher = Arc::new(flusher);
        let h = spawn(flusher.clone(), log.clone()).unwrap();
        log.pos.store(150, Ordering::Release);
        flusher.note_appended(150);
        let (tx, rx) = mpsc::channel();
        flusher.wait_for(150, Box::new(move |ok| tx.send(ok).unwrap()));
        assert!(rx.recv().unwrap());
        log.pos.store(160, Ordering::Release);
        flusher.shutdown();
        h.join().unwrap();
        assert_eq!(flusher.flushed_offset(), 160);
    }
}
