//! Counters and latency histograms shared between the load tasks and the once-a-second reporter,
//! the clock that stamps bodies, and the JSON result.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms hold exactly (larger values are clamped to it): 10 minutes.
const MAX_LATENCY_US: u64 = 600_000_000;

/// First bytes of every benchmark body: the intended send time, then this marker, so that
/// foreign messages on the topic are counted but never mistaken for timestamps.
pub const BODY_MARKER: &[u8; 8] = b"APGBENCH";
/// Bytes of a body taken by the timestamp and the marker.
pub const BODY_HEADER_LEN: usize = 16;

/// Converts monotonic instants to wall-clock microseconds, so that a timestamp written into a body
/// by a producer can be compared with the receive time anywhere on the same machine.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_epoch_us: u64,
}

impl Clock {
    pub fn new() -> Self {
        let base = Instant::now();
        let base_epoch_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Self {
            base,
            base_epoch_us,
        }
    }

    pub fn epoch_us(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.base);
        self.base_epoch_us
            .saturating_add(u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
    }
}

/// Writes the benchmark header into `body` (no-op when the body is too short to hold it).
pub fn stamp_body(body: &mut [u8], intended_epoch_us: u64) {
    if let Some(head) = body.get_mut(..BODY_HEADER_LEN) {
        head[..8].copy_from_slice(&intended_epoch_us.to_le_bytes());
        head[8..].copy_from_slice(BODY_MARKER);
    }
}

/// The intended send time stamped in a benchmark body, if it is one.
pub fn read_stamp(body: &[u8]) -> Option<u64> {
    let head = body.get(..BODY_HEADER_LEN)?;
    if &head[8..] != BODY_MARKER {
        return None;
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&head[..8]);
    Some(u64::from_le_bytes(ts))
}

pub fn new_histogram() -> Histogram<u64> {
    // Three significant digits from 1 µs to MAX_LATENCY_US; the bounds are constants, so this
    // cannot fail, but fall back to an auto-resizing histogram rather than panic.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .or_else(|_| Histogram::new(3))
        .unwrap_or_else(|_| unreachable_histogram())
}

#[cold]
fn unreachable_histogram() -> Histogram<u64> {
    // `Histogram::new(3)` only fails for a precision above 5.
    match Histogram::new(2) {
        Ok(h) => h,
        Err(e) => panic!("hdrhistogram rejected constant parameters: {e}"),
    }
}

pub fn record(hist: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
}

/// What one side (send or consume) counted. Totals include warm-up and drain; `measured_*` only
/// what fell inside the measurement window.
#[derive(Default)]
pub struct Side {
    pub total_msgs: AtomicU64,
    pub total_bytes: AtomicU64,
    pub measured_msgs: AtomicU64,
    pub measured_bytes: AtomicU64,
    pub errors: AtomicU64,
    /// Send latency (producers) or end-to-end latency (consumers), measured window only.
    pub latency: Mutex<Option<Histogram<u64>>>,
}

impl Side {
    pub fn add(&self, msgs: u64, bytes: u64, measured: bool) {
        self.total_msgs.fetch_add(msgs, Ordering::Relaxed);
        self.total_bytes.fetch_add(bytes, Ordering::Relaxed);
        if measured {
            self.measured_msgs.fetch_add(msgs, Ordering::Relaxed);
            self.measured_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Adds a task's local histogram (tasks record locally and merge now and then, so that the
    /// hot path takes no lock).
    pub fn merge(&self, local: &mut Histogram<u64>) {
        if local.is_empty() {
            return;
        }
        let mut guard = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(h) => {
                if h.add(&*local).is_err() {
                    // Same bounds everywhere; an error would mean a value beyond them, which
                    // `record` clamps. Count it rather than lose the whole merge silently.
                    self.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => *guard = Some(local.clone()),
        }
        local.reset();
    }

    pub fn latency_summary(&self) -> Option<LatencySummary> {
        let guard = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().and_then(LatencySummary::of)
    }

    pub fn p99_us(&self) -> Option<u64> {
        let guard = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.99))
    }

    pub fn summary(&self, secs: f64) -> Throughput {
        let msgs = self.measured_msgs.load(Ordering::Relaxed);
        let bytes = self.measured_bytes.load(Ordering::Relaxed);
        Throughput::new(
            msgs,
            bytes,
            secs,
            self.total_msgs.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        Some(Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        })
    }
}

/// Throughput over the measurement window. MB are 10^6 bytes of message body.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub messages: u64,
    pub bytes: u64,
    pub secs: f64,
    pub msg_per_sec: f64,
    pub mb_per_sec: f64,
    /// Every message counted, warm-up and drain included.
    pub total_messages: u64,
    pub errors: u64,
}

impl Throughput {
    pub fn new(messages: u64, bytes: u64, secs: f64, total_messages: u64, errors: u64) -> Self {
        let secs_nz = if secs > 0.0 { secs } else { f64::INFINITY };
        Self {
            messages,
            bytes,
            secs,
            msg_per_sec: messages as f64 / secs_nz,
            mb_per_sec: bytes as f64 / 1e6 / secs_nz,
            total_messages,
            errors,
        }
    }
}

/// `/proc/loadavg`'s three averages (empty where there is no such file).
pub fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| {
            s.split_whitespace()
                .take(3)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_foreign_bodies_are_not_stamps() {
        let mut body = vec![0u8; 32];
        stamp_body(&mut body, 1_700_000_000_123_456);
        assert_eq!(read_stamp(&body), Some(1_700_000_000_123_456));
        assert_eq!(read_stamp(&[0u8; 32]), None);
        assert_eq!(read_stamp(b"short"), None);
        let mut short = vec![0u8; 10];
        stamp_body(&mut short, 5);
        assert_eq!(short, vec![0u8; 10]);
    }

    #[test]
    fn percentiles_are_ordered_and_merging_adds_counts() {
        let side = Side::default();
        let mut local = new_histogram();
        for us in 1..=1000u64 {
            record(&mut local, Duration::from_micros(us));
        }
        side.merge(&mut local);
        assert!(local.is_empty());
        record(&mut local, Duration::from_secs(3600));
        side.merge(&mut local);
        let s = side.latency_summary().unwrap();
        assert_eq!(s.count, 1001);
        assert!(s.p50 <= s.p99 && s.p99 <= s.p999 && s.p999 <= s.max);
        assert!((495..=505).contains(&s.p50), "{s:?}");
        assert!(s.max >= MAX_LATENCY_US - MAX_LATENCY_US / 1000);
    }

    #[test]
    fn throughput_uses_decimal_megabytes_and_survives_zero_seconds() {
        let t = Throughput::new(2000, 2_000_000, 2.0, 2500, 1);
        assert_eq!(t.msg_per_sec, 1000.0);
        assert_eq!(t.mb_per_sec, 1.0);
        let z = Throughput::new(1, 1, 0.0, 1, 0);
        assert_eq!(z.msg_per_sec, 0.0);
    }

    #[test]
    fn clock_is_monotonic_in_microseconds() {
        let c = Clock::new();
        let now = Instant::now();
        let later = now + Duration::from_millis(3);
        assert_eq!(c.epoch_us(later) - c.epoch_us(now), 3000);
    }
}
