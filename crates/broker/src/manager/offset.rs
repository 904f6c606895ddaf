//! Committed consumer offsets (`ConsumerOffsetManager`), keyed `topic@group` as in RocketMQ's
//! `config/consumerOffset.json`. Commits only touch memory; a background task persists the table
//! every `flushConsumerOffsetInterval` and at shutdown.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use apogee_protocol::body::ConsumerOffsetSerializeWrapper;

use crate::config::BrokerConfig;
use crate::error::Result;
use crate::manager::lock;
use crate::persist;

/// Separates topic and group in a table key.
pub const TOPIC_GROUP_SEPARATOR: char = '@';

pub fn key(topic: &str, group: &str) -> String {
    format!("{topic}{TOPIC_GROUP_SEPARATOR}{group}")
}

/// Splits a `topic@group` key (at the last `@`: topics and groups cannot contain one).
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    key.rsplit_once(TOPIC_GROUP_SEPARATOR)
}

pub struct ConsumerOffsetManager {
    offsets: Mutex<BTreeMap<String, BTreeMap<i32, i64>>>,
    /// Where each group's pulls have got to (memory only, for consume stats).
    pull_offsets: Mutex<HashMap<String, HashMap<i32, i64>>>,
    dirty: AtomicBool,
    persist_lock: Mutex<()>,
    path: PathBuf,
}

impl ConsumerOffsetManager {
    pub fn load(config: &BrokerConfig) -> Result<Self> {
        let path = config.config_dir().join("consumerOffset.json");
        let offsets = persist::read_json::<ConsumerOffsetSerializeWrapper>(&path)?
            .map(|w| w.offset_table)
            .unwrap_or_default();
        Ok(Self {
            offsets: Mutex::new(offsets),
            pull_offsets: Mutex::new(HashMap::new()),
            dirty: AtomicBool::new(false),
            persist_lock: Mutex::new(()),
            path,
        })
    }

    pub fn commit_offset(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        lock(&self.offsets)
            .entry(key(topic, group))
            .or_default()
            .insert(queue_id, offset);
        self.dirty.store(true, Ordering::Release);
    }

    pub fn commit_pull_offset(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        lock(&self.pull_offsets)
            .entry(key(topic, group))
            .or_default()
            .insert(queue_id, offset);
    }

    /// The committed offset, `None` when the group has none for the queue.
    pub fn query_offset(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        lock(&self.offsets)
            .get(&key(topic, group))
            .and_then(|q| q.get(&queue_id))
            .copied()
    }

    pub fn query_pull_offset(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        lock(&self.pull_offsets)
            .get(&key(topic, group))
            .and_then(|q| q.get(&queue_id))
            .copied()
    }

    /// Topics `group` has offsets for.
    pub fn topics_of_group(&self, group: &str) -> BTreeSet<String> {
        lock(&self.offsets)
            .keys()
            .filter_map(|k| split_key(k))
            .filter(|(_, g)| *g == group)
            .map(|(t, _)| t.to_owned())
            .collect()
    }

    /// Groups with offsets on `topic`.
    pub fn groups_of_topic(&self, topic: &str) -> BTreeSet<String> {
        lock(&self.offsets)
            .keys()
            .filter_map(|k| split_key(k))
            .filter(|(t, _)| *t == topic)
            .map(|(_, g)| g.to_owned())
            .collect()
    }

    pub fn remove_group(&self, group: &str) {
        lock(&self.offsets).retain(|k, _| split_key(k).map(|(_, g)| g != group).unwrap_or(true));
        lock(&self.pull_offsets)
            .retain(|k, _| split_key(k).map(|(_, g)| g != group).unwrap_or(true));
        self.dirty.store(true, Ordering::Release);
    }

    pub fn remove_topic(&self, topic: &str) {
        lock(&self.offsets).retain(|k, _| split_key(k).map(|(t, _)| t != topic).unwrap_or(true));
        lock(&self.pull_offsets)
            .retain(|k, _| split_key(k).map(|(t, _)| t != topic).unwrap_or(true));
        self.dirty.store(true, Ordering::Release);
    }

    pub fn wrapper(&self) -> ConsumerOffsetSerializeWrapper {
        ConsumerOffsetSerializeWrapper {
            data_version: None,
            offset_table: lock(&self.offsets).clone(),
        }
    }

    /// Writes the table if anything changed since the last write.
    pub fn persist_if_dirty(&self) -> Result<()> {
        if self.dirty.load(Ordering::Acquire) {
            self.persist()?;
        }
        Ok(())
    }

    pub fn persist(&self) -> Result<()> {
        let _guard = lock(&self.persist_lock);
        self.dirty.store(false, Ordering::Release);
        let snapshot = self.wrapper();
        let result = persist::write_json(&self.path, &snapshot);
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_commit_query_and_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        let m = ConsumerOffsetManager::load(&config).unwrap();
        assert_eq!(m.query_offset("G", "T", 0), None);
        m.commit_offset("G", "T", 0, 12);
        m.commit_offset("G", "T", 3, 30);
        m.commit_offset("H", "T", 0, 1);
        assert_eq!(m.query_offset("G", "T", 3), Some(30));
        assert_eq!(
            m.topics_of_group("G").into_iter().collect::<Vec<_>>(),
            ["T"]
        );
        assert_eq!(m.groups_of_topic("T").len(), 2);
        m.persist_if_dirty().unwrap();
        let text = std::fs::read_to_string(dir.path().join("config/consumerOffset.json")).unwrap();
        assert!(text.contains(r#""T@G":{0:12,3:30}"#), "{text}");
        let back = ConsumerOffsetManager::load(&config).unwrap();
        assert_eq!(back.query_offset("G", "T", 0), Some(12));
        back.remove_group("G");
        assert_eq!(back.query_offset("G", "T", 0), None);
        assert_eq!(back.query_offset("H", "T", 0), Some(1));
    }
}
