//! Latency-based fault avoidance for producers (RocketMQ's `MQFaultStrategy` with
//! `LatencyFaultToleranceImpl`): after each send the broker's latency maps to a period during
//! which it is not chosen; a failed send isolates it. A plain state machine over an explicit
//! clock, so every decision is testable without sockets or sleeps.

use std::collections::HashMap;
use std::sync::Mutex;

use apogee_protocol::body::MessageQueue;

use crate::route::TopicPublishInfo;
use crate::util::lock;

/// Latency thresholds (ms) of RocketMQ 4.x `MQFaultStrategy.latencyMax`.
pub const DEFAULT_LATENCY_MAX_MS: [u64; 7] = [50, 100, 550, 1_000, 2_000, 3_000, 15_000];
/// Not-available periods (ms) for each threshold (`MQFaultStrategy.notAvailableDuration`).
pub const DEFAULT_NOT_AVAILABLE_MS: [u64; 7] = [0, 0, 30_000, 60_000, 120_000, 180_000, 600_000];
/// The latency a failed send counts as when it isolates a broker (4.x: 30 s, which the tables
/// above turn into 600 s of isolation).
pub const ISOLATION_LATENCY_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FaultItem {
    latency_ms: u64,
    /// The broker may be chosen again from this time on.
    available_from_ms: i64,
}

/// Chooses the queue for each send attempt and remembers slow or failed brokers.
#[derive(Debug)]
pub struct FaultStrategy {
    enabled: bool,
    latency_max_ms: Vec<u64>,
    not_available_ms: Vec<u64>,
    items: Mutex<HashMap<String, FaultItem>>,
}

impl FaultStrategy {
    /// RocketMQ's tables; `enabled` is the producer's `sendLatencyFaultEnable` (off by default).
    pub fn new(enabled: bool) -> Self {
        Self::with_tables(
            enabled,
            DEFAULT_LATENCY_MAX_MS.to_vec(),
            DEFAULT_NOT_AVAILABLE_MS.to_vec(),
        )
    }

    /// Custom tables: `latency_max_ms[i]` and above maps to `not_available_ms[i]`. Extra entries
    /// of the longer table are ignored.
    pub fn with_tables(
        enabled: bool,
        latency_max_ms: Vec<u64>,
        not_available_ms: Vec<u64>,
    ) -> Self {
        let n = latency_max_ms.len().min(not_available_ms.len());
        Self {
            enabled,
            latency_max_ms: latency_max_ms[..n].to_vec(),
            not_available_ms: not_available_ms[..n].to_vec(),
            items: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// How long a broker with this send latency is avoided: the period of the highest threshold
    /// the latency reaches, 0 below the first.
    pub fn not_available_duration_ms(&self, latency_ms: u64) -> u64 {
        self.latency_max_ms
            .iter()
            .zip(&self.not_available_ms)
            .rev()
            .find(|(max, _)| latency_ms >= **max)
            .map_or(0, |(_, d)| *d)
    }

    /// Records a send to `broker` that took `latency_ms`; `isolation` marks a failed send, which
    /// is treated as [`ISOLATION_LATENCY_MS`]. A no-op when fault avoidance is off. The avoidance
    /// period only ever extends.
    pub fn update(&self, broker: &str, latency_ms: u64, isolation: bool, now_ms: i64) {
        if !self.enabled {
            return;
        }
        let duration = self.not_available_duration_ms(if isolation {
            ISOLATION_LATENCY_MS
        } else {
            latency_ms
        });
        let until = now_ms.saturating_add(i64::try_from(duration).unwrap_or(i64::MAX));
        let mut items = lock(&self.items);
        let item = items.entry(broker.to_owned()).or_insert(FaultItem {
            latency_ms,
            available_from_ms: 0,
        });
        item.latency_ms = latency_ms;
        if duration > 0 && until > item.available_from_ms {
            item.available_from_ms = until;
        }
    }

    /// Whether `broker` may be chosen at `now_ms` (always true when fault avoidance is off).
    pub fn is_available(&self, broker: &str, now_ms: i64) -> bool {
        if !self.enabled {
            return true;
        }
        lock(&self.items)
            .get(broker)
            .is_none_or(|item| now_ms >= item.available_from_ms)
    }

    /// Picks the queue for an attempt. `last_broker` is the broker of the previous (failed)
    /// attempt of the same send. In round-robin order it prefers, in turn: an available broker
    /// other than the last one, any available broker, any broker other than the last one, and
    /// finally whatever queue comes next. Without fault avoidance every broker counts as
    /// available.
    pub fn select_queue(
        &self,
        info: &TopicPublishInfo,
        last_broker: Option<&str>,
        now_ms: i64,
    ) -> Option<MessageQueue> {
        let not_last = |mq: &MessageQueue| last_broker != Some(mq.broker_name.as_str());
        if self.enabled {
            let found = info
                .select_where(|mq| not_last(mq) && self.is_available(&mq.broker_name, now_ms))
                .or_else(|| info.select_where(|mq| self.is_available(&mq.broker_name, now_ms)));
            if let Some(mq) = found {
                return Some(mq.clone());
            }
        }
        info.select_where(not_last)
            .or_else(|| info.select_one())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(brokers: &[&str], per_broker: i32) -> TopicPublishInfo {
        let queues = brokers
            .iter()
            .flat_map(|b| (0..per_broker).map(move |q| MessageQueue::new("T", *b, q)))
            .collect();
        TopicPublishInfo::new(queues, false, true).with_start_index(0)
    }

    #[test]
    fn latency_maps_to_rocketmq_not_available_durations() {
        let f = FaultStrategy::new(true);
        let table: &[(u64, u64)] = &[
            (0, 0),
            (49, 0),
            (50, 0),
            (100, 0),
            (549, 0),
            (550, 30_000),
            (999, 30_000),
            (1_000, 60_000),
            (2_000, 120_000),
            (2_999, 120_000),
            (3_000, 180_000),
            (14_999, 180_000),
            (15_000, 600_000),
            (u64::MAX, 600_000),
        ];
        for (latency, want) in table {
            assert_eq!(
                f.not_available_duration_ms(*latency),
                *want,
                "latency {latency}"
            );
        }
    }

    #[test]
    fn a_failed_send_isolates_the_broker_for_the_isolation_period() {
        let f = FaultStrategy::new(true);
        f.update("a", 5, true, 1_000);
        assert!(!f.is_available("a", 1_000));
        assert!(!f.is_available("a", 1_000 + 599_999));
        assert!(f.is_available("a", 1_000 + 600_000));
        assert!(f.is_available("b", 1_000));
    }

    #[test]
    fn a_fast_send_does_not_shorten_an_isolation() {
        let f = FaultStrategy::new(true);
        f.update("a", 5, true, 0);
        f.update("a", 10, false, 100);
        assert!(!f.is_available("a", 200));
    }

    #[test]
    fn a_slow_send_makes_the_broker_unavailable_for_a_while() {
        let f = FaultStrategy::new(true);
        f.update("a", 600, false, 0);
        assert!(!f.is_available("a", 29_999));
        assert!(f.is_available("a", 30_000));
    }

    #[test]
    fn disabled_strategy_ignores_latency_and_only_avoids_the_last_broker() {
        let f = FaultStrategy::new(false);
        f.update("a", 5, true, 0);
        assert!(f.is_available("a", 0));
        let i = info(&["a", "b"], 2);
        // Start index 0 points at a:0, but the last attempt failed on a.
        let mq = f.select_queue(&i, Some("a"), 0).unwrap();
        assert_eq!(mq.broker_name, "b");
    }

    #[test]
    fn selection_skips_isolated_brokers() {
        let f = FaultStrategy::new(true);
        f.update("a", 5, true, 0);
        let i = info(&["a", "b", "c"], 1);
        for _ in 0..6 {
            let mq = f.select_queue(&i, None, 1).unwrap();
            assert_ne!(mq.broker_name, "a");
        }
    }

    #[test]
    fn selection_prefers_available_over_not_last() {
        let f = FaultStrategy::new(true);
        f.update("b", 5, true, 0);
        let i = info(&["a", "b"], 1);
        // a failed last time but b is isolated: a is still the better choice.
        assert_eq!(f.select_queue(&i, Some("a"), 1).unwrap().broker_name, "a");
    }

    #[test]
    fn selection_falls_back_to_any_queue_when_all_brokers_are_isolated() {
        let f = FaultStrategy::new(true);
        f.update("a", 5, true, 0);
        f.update("b", 5, true, 0);
        let i = info(&["a", "b"], 1);
        assert_eq!(f.select_queue(&i, Some("a"), 1).unwrap().broker_name, "b");
        let single = info(&["a"], 2);
        assert!(f.select_queue(&single, Some("a"), 1).is_some());
    }

    #[test]
    fn selection_of_an_empty_route_is_none() {
        let f = FaultStrategy::new(true);
        assert!(f.select_queue(&info(&[], 0), None, 0).is_none());
    }

    #[test]
    fn without_failures_selection_is_round_robin() {
        let f = FaultStrategy::new(true);
        let i = info(&["a", "b"], 2);
        let picks: Vec<String> = (0..4)
            .map(|_| {
                let q = f.select_queue(&i, None, 0).unwrap();
                format!("{}:{}", q.broker_name, q.queue_id)
            })
            .collect();
        assert_eq!(picks, vec!["a:0", "a:1", "b:0", "b:1"]);
    }
}
