//! The in-flight table of POP consumption as a plain state machine: which popped messages are
//! invisible until when, how often each was delivered, and which receipt is the current one. No
//! I/O and no clock: every call takes `now_ms`, so the rules are tested directly.
//!
//! A message is identified by (group, topic, queue id, queue offset). Its current delivery is
//! identified by (popTime, invisibleTime), the two values every receipt handle carries: an ack or
//! a change of invisible time naming an older delivery does not touch the newer one.

use std::collections::{BTreeMap, HashMap};

/// (group, topic, queue id).
pub type QueueKey = (String, String, i32);

/// One popped, not yet acked message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// When the current delivery was made (or its invisible time last changed), ms.
    pub pop_time_ms: i64,
    /// How long the current delivery stays invisible, from `pop_time_ms`.
    pub invisible_ms: i64,
    /// Deliveries before the current one (0 on the first delivery): the reconsume count.
    pub redeliveries: u32,
    /// Popped by a FIFO (`order`) pop: the queue stays locked while it is invisible.
    pub fifo: bool,
}

impl InFlight {
    pub fn visible_at_ms(&self) -> i64 {
        self.pop_time_ms.saturating_add(self.invisible_ms)
    }

    pub fn is_due(&self, now_ms: i64) -> bool {
        self.visible_at_ms() <= now_ms
    }
}

/// What an ack found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The current delivery was acked; the message will not come back.
    Acked,
    /// The message is in flight under a newer delivery (redelivered or its invisible time
    /// changed): this handle is stale and the newer delivery stays.
    Stale,
    /// Nothing in flight at that offset: acked already, never popped, or sent to the DLQ.
    NotInFlight,
}

#[derive(Debug, Default)]
pub struct PopState {
    queues: HashMap<QueueKey, BTreeMap<u64, InFlight>>,
    count: usize,
}

impl PopState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages in flight across every queue.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn get(&self, key: &QueueKey, offset: u64) -> Option<InFlight> {
        self.queues.get(key)?.get(&offset).copied()
    }

    /// Offsets of `key` whose invisible time has passed, lowest first, at most `max`.
    pub fn due(&self, key: &QueueKey, now_ms: i64, max: usize) -> Vec<(u64, InFlight)> {
        self.queues
            .get(key)
            .map(|q| {
                q.iter()
                    .filter(|(_, e)| e.is_due(now_ms))
                    .take(max)
                    .map(|(o, e)| (*o, *e))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A FIFO queue is locked while any of its messages is in flight and still invisible.
    pub fn is_locked(&self, key: &QueueKey, now_ms: i64) -> bool {
        self.queues
            .get(key)
            .is_some_and(|q| q.values().any(|e| !e.is_due(now_ms)))
    }

    /// Records a delivery of `offset` at `now_ms`: a first delivery, or a redelivery of a due
    /// message (its count goes up by one). Returns the new entry.
    pub fn deliver(
        &mut self,
        key: &QueueKey,
        offset: u64,
        now_ms: i64,
        invisible_ms: i64,
        fifo: bool,
    ) -> InFlight {
        let q = self.queues.entry(key.clone()).or_default();
        let entry = match q.get(&offset) {
            Some(old) => InFlight {
                pop_time_ms: now_ms,
                invisible_ms,
                redeliveries: old.redeliveries.saturating_add(1),
                fifo,
            },
            None => {
                self.count += 1;
                InFlight {
                    pop_time_ms: now_ms,
                    invisible_ms,
                    redeliveries: 0,
                    fifo,
                }
            }
        };
        q.insert(offset, entry);
        entry
    }

    /// Puts an entry back as it was (journal replay).
    pub fn restore(&mut self, key: &QueueKey, offset: u64, entry: InFlight) {
        if self
            .queues
            .entry(key.clone())
            .or_default()
            .insert(offset, entry)
            .is_none()
        {
            self.count += 1;
        }
    }

    /// Acks the delivery named by (`pop_time_ms`, `invisible_ms`).
    pub fn ack(
        &mut self,
        key: &QueueKey,
        offset: u64,
        pop_time_ms: i64,
        invisible_ms: i64,
    ) -> AckOutcome {
        match self.get(key, offset) {
            None => AckOutcome::NotInFlight,
            Some(e) if e.pop_time_ms != pop_time_ms || e.invisible_ms != invisible_ms => {
                AckOutcome::Stale
            }
            Some(_) => {
                self.remove(key, offset);
                AckOutcome::Acked
            }
        }
    }

    /// Drops an entry whatever its delivery (sent to the DLQ, or its record is gone).
    pub fn remove(&mut self, key: &QueueKey, offset: u64) -> Option<InFlight> {
        let q = self.queues.get_mut(key)?;
        let removed = q.remove(&offset);
        if q.is_empty() {
            self.queues.remove(key);
        }
        if removed.is_some() {
            self.count -= 1;
        }
        removed
    }

    /// Gives the delivery named by (`pop_time_ms`, `invisible_ms`) a new invisible time counted
    /// from `now_ms`. `Err` with what an ack would have found when the handle is not current.
    pub fn change_invisible(
        &mut self,
        key: &QueueKey,
        offset: u64,
        pop_time_ms: i64,
        invisible_ms: i64,
        now_ms: i64,
        new_invisible_ms: i64,
    ) -> Result<InFlight, AckOutcome> {
        let q = self.queues.get_mut(key).ok_or(AckOutcome::NotInFlight)?;
        let e = q.get_mut(&offset).ok_or(AckOutcome::NotInFlight)?;
        if e.pop_time_ms != pop_time_ms || e.invisible_ms != invisible_ms {
            return Err(AckOutcome::Stale);
        }
        let mut new_pop_time_ms = now_ms;
        if new_pop_time_ms == e.pop_time_ms && new_invisible_ms == e.invisible_ms {
            // Same handle again would be indistinguishable from the old one; keep it unique.
            new_pop_time_ms += 1;
        }
        e.pop_time_ms = new_pop_time_ms;
        e.invisible_ms = new_invisible_ms;
        Ok(*e)
    }

    /// The earliest time after `now_ms` a message of `group`/`topic` in one of `queue_ids`
    /// becomes visible again (a parked pop wakes then).
    pub fn next_visible_ms(
        &self,
        group: &str,
        topic: &str,
        queue_ids: &[i32],
        now_ms: i64,
    ) -> Option<i64> {
        self.queues
            .iter()
            .filter(|((g, t, q), _)| g == group && t == topic && queue_ids.contains(q))
            .flat_map(|(_, q)| q.values().map(InFlight::visible_at_ms))
            .filter(|&at| at > now_ms)
            .min()
    }

    /// Every entry, for compaction.
    pub fn entries(&self) -> impl Iterator<Item = (&QueueKey, u64, &InFlight)> {
        self.queues
            .iter()
            .flat_map(|(k, q)| q.iter().map(move |(o, e)| (k, *o, e)))
    }

    /// The highest in-flight offset of a queue.
    pub fn max_offset(&self, key: &QueueKey) -> Option<u64> {
        self.queues.get(key)?.keys().next_back().copied()
    }

    /// Forgets a group (deleted) or a topic (deleted).
    pub fn retain(&mut self, keep: impl Fn(&QueueKey) -> bool) {
        self.queues.retain(|k, _| keep(k));
        self.count = self.queues.values().map(BTreeMap::len).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> QueueKey {
        ("G".into(), "T".into(), 0)
    }

    #[test]
    fn a_delivery_is_invisible_until_its_time_then_due_with_one_more_redelivery() {
        let mut s = PopState::new();
        let e = s.deliver(&key(), 5, 1_000, 300, false);
        assert_eq!((e.pop_time_ms, e.redeliveries), (1_000, 0));
        assert!(s.due(&key(), 1_299, 10).is_empty());
        assert_eq!(s.due(&key(), 1_300, 10), vec![(5, e)]);
        let again = s.deliver(&key(), 5, 1_400, 300, false);
        assert_eq!((again.pop_time_ms, again.redeliveries), (1_400, 1));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn ack_with_the_current_handle_removes_and_a_stale_one_does_not() {
        let mut s = PopState::new();
        s.deliver(&key(), 1, 1_000, 300, false);
        s.deliver(&key(), 1, 1_300, 300, false);
        assert_eq!(s.ack(&key(), 1, 1_000, 300), AckOutcome::Stale);
        assert_eq!(s.len(), 1);
        assert_eq!(s.ack(&key(), 1, 1_300, 300), AckOutcome::Acked);
        assert_eq!(s.ack(&key(), 1, 1_300, 300), AckOutcome::NotInFlight);
        assert!(s.is_empty());
    }

    #[test]
    fn change_invisible_counts_from_now_and_makes_the_old_handle_stale() {
        let mut s = PopState::new();
        s.deliver(&key(), 2, 1_000, 300, false);
        let e = s
            .change_invisible(&key(), 2, 1_000, 300, 1_100, 5_000)
            .unwrap();
        assert_eq!(
            (e.pop_time_ms, e.invisible_ms, e.visible_at_ms()),
            (1_100, 5_000, 6_100)
        );
        assert!(s.due(&key(), 1_300, 10).is_empty());
        assert_eq!(
            s.change_invisible(&key(), 2, 1_000, 300, 1_200, 10),
            Err(AckOutcome::Stale)
        );
        assert_eq!(s.ack(&key(), 2, 1_000, 300), AckOutcome::Stale);
        // Changing within the same millisecond to the same time still yields a new handle.
        let same = s
            .change_invisible(&key(), 2, 1_100, 5_000, 1_100, 5_000)
            .unwrap();
        assert_eq!(same.pop_time_ms, 1_101);
    }

    #[test]
    fn a_queue_is_locked_while_anything_is_invisible() {
        let mut s = PopState::new();
        assert!(!s.is_locked(&key(), 0));
        s.deliver(&key(), 0, 1_000, 300, true);
        s.deliver(&key(), 1, 1_000, 500, true);
        assert!(s.is_locked(&key(), 1_300));
        assert!(!s.is_locked(&key(), 1_500));
        assert_eq!(s.next_visible_ms("G", "T", &[0], 1_000), Some(1_300));
        assert_eq!(s.next_visible_ms("G", "T", &[0], 1_300), Some(1_500));
        assert_eq!(s.next_visible_ms("G", "T", &[1], 1_000), None);
        assert_eq!(s.max_offset(&key()), Some(1));
    }

    #[test]
    fn due_is_ordered_and_limited_and_remove_forgets() {
        let mut s = PopState::new();
        for o in [9, 3, 7] {
            s.deliver(&key(), o, 0, 1, false);
        }
        let due: Vec<u64> = s.due(&key(), 10, 2).into_iter().map(|(o, _)| o).collect();
        assert_eq!(due, [3, 7]);
        s.remove(&key(), 3);
        assert_eq!(s.len(), 2);
        s.retain(|k| k.0 != "G");
        assert!(s.is_empty());
    }
}
