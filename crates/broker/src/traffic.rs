//! Traffic counters for metrics and the web page: messages and bytes in per topic, out per topic
//! and group, and request latency per request code. The hot path is a read-locked map lookup and
//! relaxed atomic adds; a map entry is allocated once, the first time a key is seen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A message count and a byte count.
#[derive(Default, Debug)]
pub struct Counter {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
}

impl Counter {
    fn add(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// (messages, bytes)
    pub fn get(&self) -> (u64, u64) {
        (
            self.messages.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// Upper bounds (milliseconds) of the request latency buckets, as RocketMQ 5's
/// `rocketmq_rpc_latency` view; the last bucket is +Inf.
pub const RPC_BUCKETS_MS: [u64; 8] = [1, 3, 5, 7, 10, 100, 1_000, 3_000];

/// A latency histogram with fixed buckets (cumulated when rendered).
#[derive(Default, Debug)]
pub struct Histogram {
    /// Non-cumulative counts; index `RPC_BUCKETS_MS.len()` is the overflow bucket.
    pub buckets: [AtomicU64; RPC_BUCKETS_MS.len() + 1],
    pub count: AtomicU64,
    pub sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe_us(&self, us: u64) {
        let ms_ceil = us.div_ceil(1_000);
        let i = RPC_BUCKETS_MS
            .iter()
            .position(|&b| ms_ceil <= b)
            .unwrap_or(RPC_BUCKETS_MS.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

type OutMap = HashMap<String, HashMap<String, Arc<Counter>>>;

#[derive(Default)]
pub struct Traffic {
    /// topic -> stored messages and bytes.
    input: RwLock<HashMap<String, Arc<Counter>>>,
    /// topic -> group -> delivered messages and bytes.
    output: RwLock<OutMap>,
    /// (request code, response code) -> latency.
    rpc: RwLock<HashMap<(i32, i32), Arc<Histogram>>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Traffic {
    pub fn record_in(&self, topic: &str, messages: u64, bytes: u64) {
        if let Some(c) = read(&self.input).get(topic) {
            c.add(messages, bytes);
            return;
        }
        write(&self.input)
            .entry(topic.to_owned())
            .or_default()
            .add(messages, bytes);
    }

    pub fn record_out(&self, topic: &str, group: &str, messages: u64, bytes: u64) {
        if let Some(c) = read(&self.output).get(topic).and_then(|g| g.get(group)) {
            c.add(messages, bytes);
            return;
        }
        write(&self.output)
            .entry(topic.to_owned())
            .or_default()
            .entry(group.to_owned())
            .or_default()
            .add(messages, bytes);
    }

    pub fn record_rpc(&self, request_code: i32, response_code: i32, us: u64) {
        let key = (request_code, response_code);
        if let Some(h) = read(&self.rpc).get(&key) {
            h.observe_us(us);
            return;
        }
        write(&self.rpc).entry(key).or_default().observe_us(us);
    }

    /// (topic, messages, bytes), sorted by topic.
    pub fn inputs(&self) -> Vec<(String, u64, u64)> {
        let mut v: Vec<_> = read(&self.input)
            .iter()
            .map(|(t, c)| {
                let (m, b) = c.get();
                (t.clone(), m, b)
            })
            .collect();
        v.sort();
        v
    }

    /// (topic, group, messages, bytes), sorted.
    pub fn outputs(&self) -> Vec<(String, String, u64, u64)> {
        let mut v: Vec<_> = read(&self.output)
            .iter()
            .flat_map(|(t, groups)| {
                groups.iter().map(move |(g, c)| {
                    let (m, b) = c.get();
                    (t.clone(), g.clone(), m, b)
                })
            })
            .collect();
        v.sort();
        v
    }

    /// ((request code, response code), histogram), sorted by codes.
    pub fn rpc(&self) -> Vec<((i32, i32), Arc<Histogram>)> {
        let mut v: Vec<_> = read(&self.rpc)
            .iter()
            .map(|(k, h)| (*k, Arc::clone(h)))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Forgets a deleted topic's series.
    pub fn remove_topic(&self, topic: &str) {
        write(&self.input).remove(topic);
        write(&self.output).remove(topic);
    }

    /// Forgets a deleted group's series.
    pub fn remove_group(&self, group: &str) {
        for groups in write(&self.output).values_mut() {
            groups.remove(group);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_per_key_and_histogram_buckets_by_upper_bound() {
        let t = Traffic::default();
        t.record_in("A", 2, 10);
        t.record_in("A", 1, 5);
        t.record_in("B", 1, 1);
        assert_eq!(t.inputs(), vec![("A".into(), 3, 15), ("B".into(), 1, 1)]);
        t.record_out("A", "G", 1, 7);
        t.record_out("A", "G", 1, 7);
        t.record_out("A", "H", 1, 7);
        assert_eq!(
            t.outputs(),
            vec![
                ("A".into(), "G".into(), 2, 14),
                ("A".into(), "H".into(), 1, 7)
            ]
        );
        t.record_rpc(10, 0, 500); // 0.5 ms -> <= 1 ms
        t.record_rpc(10, 0, 3_000); // 3 ms -> <= 3 ms
        t.record_rpc(10, 0, 9_000_000); // overflow
        let rpc = t.rpc();
        let h = &rpc[0].1;
        let counts: Vec<u64> = h
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, vec![1, 1, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(h.count.load(Ordering::Relaxed), 3);
        t.remove_group("G");
        assert_eq!(t.outputs().len(), 1);
        t.remove_topic("A");
        assert_eq!(t.inputs().len(), 1);
        assert!(t.outputs().is_empty());
    }
}
