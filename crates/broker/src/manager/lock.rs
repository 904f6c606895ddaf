//! Queue locks of orderly consumers (`RebalanceLockManager`): group -> queue -> owner. A lock not
//! renewed for `lockMaxLiveTime` (60 s) is free for another client; the owner renews it by locking
//! again. Time is passed in, so expiry is tested without waiting.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use apogee_protocol::body::MessageQueue;

use crate::manager::lock;

#[derive(Debug, Clone)]
struct LockEntry {
    client_id: String,
    last_update_ms: i64,
}

pub struct RebalanceLockManager {
    table: Mutex<HashMap<String, HashMap<MessageQueue, LockEntry>>>,
    max_live_ms: i64,
}

impl RebalanceLockManager {
    pub fn new(max_live_ms: u64) -> Self {
        Self {
            table: Mutex::new(HashMap::new()),
            max_live_ms: i64::try_from(max_live_ms).unwrap_or(i64::MAX),
        }
    }

    fn expired(&self, e: &LockEntry, now_ms: i64) -> bool {
        now_ms.saturating_sub(e.last_update_ms) > self.max_live_ms
    }

    /// Locks what it can for `client_id` and returns the queues it now holds: its own locks are
    /// renewed, free or expired ones taken over, those of another live client left alone.
    pub fn try_lock_batch(
        &self,
        group: &str,
        mqs: &BTreeSet<MessageQueue>,
        client_id: &str,
        now_ms: i64,
    ) -> BTreeSet<MessageQueue> {
        let mut table = lock(&self.table);
        let locks = table.entry(group.to_owned()).or_default();
        let mut locked = BTreeSet::new();
        for mq in mqs {
            match locks.get_mut(mq) {
                None => {
                    locks.insert(
                        mq.clone(),
                        LockEntry {
                            client_id: client_id.to_owned(),
                            last_update_ms: now_ms,
                        },
                    );
                    locked.insert(mq.clone());
                }
                Some(e) => {
                    let mine = e.client_id == client_id;
                    if mine || now_ms.saturating_sub(e.last_update_ms) > self.max_live_ms {
                        if !mine {
                            tracing::info!(group, %mq, old = %e.client_id, new = client_id, "taking over an expired queue lock");
                        }
                        e.client_id = client_id.to_owned();
                        e.last_update_ms = now_ms;
                        locked.insert(mq.clone());
                    }
                }
            }
        }
        locked
    }

    /// Releases the queues `client_id` holds; locks of other clients stay.
    pub fn unlock_batch(&self, group: &str, mqs: &BTreeSet<MessageQueue>, client_id: &str) {
        let mut table = lock(&self.table);
        if let Some(locks) = table.get_mut(group) {
            for mq in mqs {
                if locks.get(mq).is_some_and(|e| e.client_id == client_id) {
                    locks.remove(mq);
                }
            }
            if locks.is_empty() {
                table.remove(group);
            }
        }
    }

    /// Whether `client_id` holds a live lock on `mq`.
    pub fn is_locked(&self, group: &str, mq: &MessageQueue, client_id: &str, now_ms: i64) -> bool {
        lock(&self.table)
            .get(group)
            .and_then(|l| l.get(mq))
            .is_some_and(|e| e.client_id == client_id && !self.expired(e, now_ms))
    }

    /// True when the group holds no live lock (then its retries are not orderly).
    pub fn is_lock_all_expired(&self, group: &str, now_ms: i64) -> bool {
        lock(&self.table)
            .get(group)
            .is_none_or(|l| l.values().all(|e| self.expired(e, now_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mqs(ids: &[i32]) -> BTreeSet<MessageQueue> {
        ids.iter()
            .map(|&i| MessageQueue::new("T", "b", i))
            .collect()
    }

    #[test]
    fn owner_keeps_and_renews_its_locks_others_are_refused() {
        let m = RebalanceLockManager::new(60_000);
        assert_eq!(m.try_lock_batch("G", &mqs(&[0, 1]), "c1", 0), mqs(&[0, 1]));
        assert_eq!(m.try_lock_batch("G", &mqs(&[1, 2]), "c2", 1_000), mqs(&[2]));
        // Renewal at 50 s keeps queue 0 alive past the original 60 s.
        assert_eq!(m.try_lock_batch("G", &mqs(&[0]), "c1", 50_000), mqs(&[0]));
        assert!(m.try_lock_batch("G", &mqs(&[0]), "c2", 100_000).is_empty());
        assert!(m.is_locked("G", &MessageQueue::new("T", "b", 0), "c1", 100_000));
        // Another group is independent.
        assert_eq!(m.try_lock_batch("H", &mqs(&[0]), "c2", 1_000), mqs(&[0]));
    }

    #[test]
    fn expired_locks_are_taken_over() {
        let m = RebalanceLockManager::new(60_000);
        m.try_lock_batch("G", &mqs(&[0]), "c1", 0);
        assert!(m.try_lock_batch("G", &mqs(&[0]), "c2", 60_000).is_empty());
        assert!(!m.is_lock_all_expired("G", 60_000));
        assert_eq!(m.try_lock_batch("G", &mqs(&[0]), "c2", 60_001), mqs(&[0]));
        assert!(!m.is_locked("G", &MessageQueue::new("T", "b", 0), "c1", 60_001));
        assert!(m.is_lock_all_expired("G", 200_000));
        assert!(m.is_lock_all_expired("Unknown", 0));
    }

    #[test]
    fn unlock_only_releases_the_owners_locks() {
        let m = RebalanceLockManager::new(60_000);
        m.try_lock_batch("G", &mqs(&[0, 1]), "c1", 0);
        m.unlock_batch("G", &mqs(&[0]), "c2");
        assert!(m.try_lock_batch("G", &mqs(&[0]), "c2", 1).is_empty());
        m.unlock_batch("G", &mqs(&[0, 1]), "c1");
        assert_eq!(m.try_lock_batch("G", &mqs(&[0, 1]), "c2", 2), mqs(&[0, 1]));
    }
}
