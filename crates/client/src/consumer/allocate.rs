//! Rebalance allocation strategies: which of a topic's queues this consumer takes, given every
//! queue and every consumer id of the group. Pure functions with RocketMQ's exact results
//! (`client/consumer/rebalance/*`), so Rust and Java consumers of one group agree.
//!
//! Callers pass both lists sorted (queues by topic, broker, id; ids as strings), as
//! `RebalanceImpl` does; a consumer missing from the id list gets nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use apogee_protocol::body::MessageQueue;

use crate::util::md5;

/// How a group splits queues among its consumers.
pub trait AllocateStrategy: Send + Sync + fmt::Debug {
    /// RocketMQ's strategy name (`AVG`, `AVG_BY_CIRCLE`, ...).
    fn name(&self) -> &str;

    /// The queues `current_id` takes out of `queues`, given every consumer of the group.
    fn allocate(
        &self,
        group: &str,
        current_id: &str,
        queues: &[MessageQueue],
        consumer_ids: &[String],
    ) -> Vec<MessageQueue>;
}

/// The position of `current_id` among `consumer_ids`, if both lists are non-empty and it is
/// there (`AbstractAllocateMessageQueueStrategy.check`).
fn position(current_id: &str, queues: &[MessageQueue], consumer_ids: &[String]) -> Option<usize> {
    if current_id.is_empty() || queues.is_empty() || consumer_ids.is_empty() {
        return None;
    }
    consumer_ids.iter().position(|c| c == current_id)
}

/// `AllocateMessageQueueAveragely` ("AVG", the default): contiguous ranges; the first
/// `queues % consumers` consumers take one queue more.
#[derive(Debug, Clone, Copy, Default)]
pub struct Averagely;

impl AllocateStrategy for Averagely {
    fn name(&self) -> &str {
        "AVG"
    }

    fn allocate(
        &self,
        _group: &str,
        current_id: &str,
        queues: &[MessageQueue],
        consumer_ids: &[String],
    ) -> Vec<MessageQueue> {
        let Some(index) = position(current_id, queues, consumer_ids) else {
            return Vec::new();
        };
        let (n, c) = (queues.len(), consumer_ids.len());
        let rem = n % c;
        let size = if n <= c {
            1
        } else if rem > 0 && index < rem {
            n / c + 1
        } else {
            n / c
        };
        let start = if rem > 0 && index < rem {
            index * size
        } else {
            index * size + rem
        };
        let range = size.min(n.saturating_sub(start));
        queues.iter().skip(start).take(range).cloned().collect()
    }
}

/// `AllocateMessageQueueAveragelyByCircle` ("AVG_BY_CIRCLE"): queue `i` goes to consumer
/// `i % consumers`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AveragelyByCircle;

impl AllocateStrategy for AveragelyByCircle {
    fn name(&self) -> &str {
        "AVG_BY_CIRCLE"
    }

    fn allocate(
        &self,
        _group: &str,
        current_id: &str,
        queues: &[MessageQueue],
        consumer_ids: &[String],
    ) -> Vec<MessageQueue> {
        let Some(index) = position(current_id, queues, consumer_ids) else {
            return Vec::new();
        };
        let c = consumer_ids.len();
        queues
            .iter()
            .enumerate()
            .filter(|(i, _)| i % c == index)
            .map(|(_, q)| q.clone())
            .collect()
    }
}

/// `AllocateMessageQueueConsistentHash` ("CONSISTENT_HASH"): a ring with `virtual_nodes`
/// points per consumer at `hash("<id>-<i>")`; a queue goes to the first point at or after
/// `hash(queue.to_string())`, wrapping around. The hash is RocketMQ's default: the first four
/// bytes of MD5 (UTF-8) as an unsigned big-endian number. Consumers that lose or gain members
/// keep most of their queues.
#[derive(Debug, Clone, Copy)]
pub struct ConsistentHash {
    pub virtual_nodes: usize,
}

impl Default for ConsistentHash {
    /// RocketMQ's default of 10 virtual nodes.
    fn default() -> Self {
        Self { virtual_nodes: 10 }
    }
}

impl ConsistentHash {
    pub fn new(virtual_nodes: usize) -> Self {
        Self { virtual_nodes }
    }

    /// The ring hash of a key.
    pub fn hash(key: &str) -> u64 {
        let d = md5(key.as_bytes());
        u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
    }
}

impl AllocateStrategy for ConsistentHash {
    fn name(&self) -> &str {
        "CONSISTENT_HASH"
    }

    fn allocate(
        &self,
        _group: &str,
        current_id: &str,
        queues: &[MessageQueue],
        consumer_ids: &[String],
    ) -> Vec<MessageQueue> {
        if position(current_id, queues, consumer_ids).is_none() {
            return Vec::new();
        }
        // Java's TreeMap: a later node on the same point replaces the earlier one, and a
        // consumer id listed twice continues its replica numbering.
        let mut ring: BTreeMap<u64, &str> = BTreeMap::new();
        for id in consumer_ids {
            let existing = ring.values().filter(|v| **v == id.as_str()).count();
            for i in 0..self.virtual_nodes {
                ring.insert(Self::hash(&format!("{id}-{}", i + existing)), id.as_str());
            }
        }
        queues
            .iter()
            .filter(|q| {
                let h = Self::hash(&q.to_string());
                ring.range(h..)
                    .next()
                    .or_else(|| ring.iter().next())
                    .is_some_and(|(_, owner)| *owner == current_id)
            })
            .cloned()
            .collect()
    }
}

/// `AllocateMessageQueueByConfig` ("CONFIG"): a fixed list, whatever the group looks like.
#[derive(Debug, Clone, Default)]
pub struct ByConfig {
    pub queues: Vec<MessageQueue>,
}

impl AllocateStrategy for ByConfig {
    fn name(&self) -> &str {
        "CONFIG"
    }

    fn allocate(
        &self,
        _group: &str,
        _current_id: &str,
        _queues: &[MessageQueue],
        _consumer_ids: &[String],
    ) -> Vec<MessageQueue> {
        self.queues.clone()
    }
}

/// `AllocateMessageQueueByMachineRoom` ("MACHINE_ROOM"): only queues of brokers named
/// `<room>@<name>` with a room in `rooms` are shared, `queues / consumers` each in contiguous
/// ranges, and the remainder one by one to the first consumers.
#[derive(Debug, Clone, Default)]
pub struct ByMachineRoom {
    pub rooms: BTreeSet<String>,
}

impl ByMachineRoom {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(rooms: I) -> Self {
        Self {
            rooms: rooms.into_iter().map(Into::into).collect(),
        }
    }
}

impl AllocateStrategy for ByMachineRoom {
    fn name(&self) -> &str {
        "MACHINE_ROOM"
    }

    fn allocate(
        &self,
        _group: &str,
        current_id: &str,
        queues: &[MessageQueue],
        consumer_ids: &[String],
    ) -> Vec<MessageQueue> {
        let Some(index) = position(current_id, queues, consumer_ids) else {
            return Vec::new();
        };
        let in_rooms: Vec<&MessageQueue> = queues
            .iter()
            .filter(|q| {
                // Java's split("@") must give exactly two parts.
                let mut parts = q.broker_name.split('@');
                matches!((parts.next(), parts.next(), parts.next()), (Some(room), Some(_), None) if self.rooms.contains(room))
            })
            .collect();
        let c = consumer_ids.len();
        let per = in_rooms.len() / c;
        let rem = in_rooms.len() % c;
        let mut out: Vec<MessageQueue> = in_rooms
            .iter()
            .skip(per * index)
            .take(per)
            .map(|q| (*q).clone())
            .collect();
        if rem > index {
            if let Some(q) = in_rooms.get(index + per * c) {
                out.push((*q).clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(broker: &str, n: i32) -> Vec<MessageQueue> {
        (0..n)
            .map(|i| MessageQueue::new("TopicTest", broker, i))
            .collect()
    }

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("10.0.0.{i}@1")).collect()
    }

    fn qids(q: &[MessageQueue]) -> Vec<i32> {
        q.iter().map(|m| m.queue_id).collect()
    }

    /// Every consumer's share, in consumer order.
    fn shares(s: &dyn AllocateStrategy, q: &[MessageQueue], cids: &[String]) -> Vec<Vec<i32>> {
        cids.iter()
            .map(|c| qids(&s.allocate("G", c, q, cids)))
            .collect()
    }

    #[test]
    fn averagely_gives_contiguous_ranges_with_the_remainder_first() {
        // (queues, consumers, expected shares)
        let table: Vec<(i32, usize, Vec<Vec<i32>>)> = vec![
            (8, 3, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7]]),
            (8, 2, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]),
            (4, 4, vec![vec![0], vec![1], vec![2], vec![3]]),
            (3, 5, vec![vec![0], vec![1], vec![2], vec![], vec![]]),
            (7, 3, vec![vec![0, 1, 2], vec![3, 4], vec![5, 6]]),
            (1, 1, vec![vec![0]]),
            (
                10,
                4,
                vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7], vec![8, 9]],
            ),
        ];
        for (n, c, want) in table {
            assert_eq!(
                shares(&Averagely, &queues("b", n), &ids(c)),
                want,
                "{n} queues, {c} consumers"
            );
        }
    }

    #[test]
    fn averagely_by_circle_deals_queues_in_turn() {
        let table: Vec<(i32, usize, Vec<Vec<i32>>)> = vec![
            (8, 3, vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]),
            (3, 5, vec![vec![0], vec![1], vec![2], vec![], vec![]]),
            (4, 2, vec![vec![0, 2], vec![1, 3]]),
        ];
        for (n, c, want) in table {
            assert_eq!(
                shares(&AveragelyByCircle, &queues("b", n), &ids(c)),
                want,
                "{n}/{c}"
            );
        }
    }

    #[test]
    fn consistent_hash_matches_rocketmq_md5_ring() {
        // Expected shares computed with RocketMQ's algorithm (MD5 ring, 10 virtual nodes).
        let q = queues("broker-a", 8);
        assert_eq!(
            shares(&ConsistentHash::default(), &q, &ids(3)),
            vec![vec![1, 4, 5], vec![0, 6, 7], vec![2, 3]]
        );
        assert_eq!(
            shares(&ConsistentHash::default(), &q, &ids(2)),
            vec![vec![1, 2, 4, 5], vec![0, 3, 6, 7]]
        );
        assert_eq!(
            shares(&ConsistentHash::new(3), &q, &ids(2)),
            vec![vec![0, 1, 6, 7], vec![2, 3, 4, 5]]
        );
        assert_eq!(ConsistentHash::hash("a"), 214_005_177);
        assert_eq!(ConsistentHash::hash("10.0.0.1@1-0"), 2_998_294_157);
    }

    #[test]
    fn consistent_hash_without_virtual_nodes_assigns_nothing() {
        let q = queues("b", 4);
        assert!(ConsistentHash::new(0)
            .allocate("G", "10.0.0.1@1", &q, &ids(1))
            .is_empty());
    }

    #[test]
    fn every_queue_is_assigned_exactly_once() {
        let strategies: Vec<Box<dyn AllocateStrategy>> = vec![
            Box::new(Averagely),
            Box::new(AveragelyByCircle),
            Box::new(ConsistentHash::default()),
        ];
        for s in &strategies {
            for n in 1..12 {
                for c in 1..6 {
                    let q = queues("b", n);
                    let all: Vec<i32> = shares(s.as_ref(), &q, &ids(c)).concat();
                    let mut sorted = all.clone();
                    sorted.sort_unstable();
                    assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "{} {n}/{c}", s.name());
                }
            }
        }
    }

    #[test]
    fn a_consumer_missing_from_the_list_gets_nothing() {
        let q = queues("b", 4);
        let strategies: Vec<Box<dyn AllocateStrategy>> = vec![
            Box::new(Averagely),
            Box::new(AveragelyByCircle),
            Box::new(ConsistentHash::default()),
            Box::new(ByMachineRoom::new(["room1"])),
        ];
        for s in &strategies {
            assert!(
                s.allocate("G", "stranger@1", &q, &ids(2)).is_empty(),
                "{}",
                s.name()
            );
            assert!(
                s.allocate("G", "10.0.0.1@1", &[], &ids(2)).is_empty(),
                "{}",
                s.name()
            );
            assert!(
                s.allocate("G", "10.0.0.1@1", &q, &[]).is_empty(),
                "{}",
                s.name()
            );
        }
    }

    #[test]
    fn by_config_returns_its_list() {
        let fixed = vec![MessageQueue::new("T", "b", 3)];
        let s = ByConfig {
            queues: fixed.clone(),
        };
        assert_eq!(s.allocate("G", "anyone", &queues("b", 8), &ids(2)), fixed);
    }

    #[test]
    fn by_machine_room_shares_only_queues_of_its_rooms() {
        let mut q = Vec::new();
        q.extend(queues("room1@broker-a", 3));
        q.extend(queues("room2@broker-b", 2));
        q.extend(queues("broker-c", 2));
        q.extend(queues("room1@x@y", 1));
        q.sort();
        let s = ByMachineRoom::new(["room1", "room2"]);
        let cids = ids(2);
        let a: Vec<String> = s
            .allocate("G", &cids[0], &q, &cids)
            .iter()
            .map(|m| format!("{}:{}", m.broker_name, m.queue_id))
            .collect();
        let b: Vec<String> = s
            .allocate("G", &cids[1], &q, &cids)
            .iter()
            .map(|m| format!("{}:{}", m.broker_name, m.queue_id))
            .collect();
        // Five queues in the rooms: two each in order, the fifth to the first consumer.
        assert_eq!(
            a,
            vec!["room1@broker-a:0", "room1@broker-a:1", "room2@broker-b:1"]
        );
        assert_eq!(b, vec!["room1@broker-a:2", "room2@broker-b:0"]);
        let only_room2 = ByMachineRoom::new(["room2"]);
        assert_eq!(
            qids(&only_room2.allocate("G", &cids[0], &q, &cids)),
            vec![0]
        );
        assert_eq!(
            qids(&only_room2.allocate("G", &cids[1], &q, &cids)),
            vec![1]
        );
    }

    #[test]
    fn strategy_names_are_rocketmqs() {
        assert_eq!(Averagely.name(), "AVG");
        assert_eq!(AveragelyByCircle.name(), "AVG_BY_CIRCLE");
        assert_eq!(ConsistentHash::default().name(), "CONSISTENT_HASH");
        assert_eq!(ByConfig::default().name(), "CONFIG");
        assert_eq!(ByMachineRoom::default().name(), "MACHINE_ROOM");
    }
}
