//! The broker's topics (`TopicConfigManager`): the system topics every RocketMQ broker has, the
//! auto-create rules of the send path, admin updates, and `config/topics.json`.
//!
//! Every change bumps the data version, is persisted, and wakes the registration task so name
//! servers learn about it right away.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use apogee_protocol::body::{DataVersion, TopicConfig, TopicConfigSerializeWrapper};
use apogee_protocol::codes::perm;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::config::BrokerConfig;
use crate::error::Result;
use crate::manager::{lock, now_ms};
use crate::names::{self, *};
use crate::persist;

struct State {
    table: BTreeMap<String, TopicConfig>,
    data_version: DataVersion,
}

pub struct TopicConfigManager {
    state: Mutex<State>,
    /// Serializes writers of the file; a snapshot is taken after acquiring it, so the last write
    /// always holds the newest state.
    persist_lock: Mutex<()>,
    path: PathBuf,
    /// System topics beyond [`names::STATIC_SYSTEM_TOPICS`]: this broker's cluster- and
    /// broker-name topics and the like.
    system_topics: HashSet<String>,
    /// `autoCreateTopicEnable`, changeable at runtime (UPDATE_BROKER_CONFIG).
    auto_create_topic_enable: AtomicBool,
    changed: Arc<Notify>,
}

/// The outcome of an auto-create attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub config: TopicConfig,
    /// False when the topic already existed.
    pub created: bool,
}

impl TopicConfigManager {
    /// The system topics, overlaid with what `topics.json` holds.
    pub fn load(config: &BrokerConfig, changed: Arc<Notify>) -> Result<Self> {
        let path = config.config_dir().join("topics.json");
        let mut table = BTreeMap::new();
        let mut system_topics = HashSet::new();
        let mut put = |tc: TopicConfig| {
            system_topics.insert(tc.topic_name.clone());
            table.insert(tc.topic_name.clone(), tc);
        };
        let with_queues = |name: &str, queues: i32, perm: i32| TopicConfig {
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm,
            ..TopicConfig::new(name)
        };
        let rw = perm::READ | perm::WRITE;
        put(with_queues(SELF_TEST_TOPIC, 1, rw));
        if config.auto_create_topic_enable {
            put(with_queues(
                AUTO_CREATE_TOPIC_KEY_TOPIC,
                config.default_topic_queue_nums,
                perm::INHERIT | rw,
            ));
        }
        put(with_queues(BENCHMARK_TOPIC, 1024, rw));
        let cluster_perm = perm::INHERIT | if config.cluster_topic_enable { rw } else { 0 };
        put(TopicConfig {
            perm: cluster_perm,
            ..TopicConfig::new(config.broker_cluster_name.as_str())
        });
        let broker_perm = perm::INHERIT | if config.broker_topic_enable { rw } else { 0 };
        put(with_queues(&config.broker_name, 1, broker_perm));
        put(with_queues(OFFSET_MOVED_EVENT, 1, rw));
        put(with_queues(SCHEDULE_TOPIC, SCHEDULE_TOPIC_QUEUE_NUM, rw));
        put(with_queues(TIMER_TOPIC, 1, rw));
        put(with_queues(
            &format!("{}_{REPLY_TOPIC_POSTFIX}", config.broker_cluster_name),
            1,
            rw,
        ));
        put(with_queues(
            &names::revive_topic(&config.broker_cluster_name),
            8,
            rw,
        ));
        put(with_queues(
            &format!("{SYNC_BROKER_MEMBER_GROUP_PREFIX}{}", config.broker_name),
            1,
            perm::INHERIT,
        ));
        put(with_queues(TRANS_HALF_TOPIC, 1, rw));
        put(with_queues(TRANS_OP_HALF_TOPIC, 1, rw));

        let mut data_version = DataVersion::new(now_ms());
        if let Some(saved) = persist::read_json::<TopicConfigSerializeWrapper>(&path)? {
            info!(
                topics = saved.topic_config_table.len(),
                "loaded {}",
                path.display()
            );
            table.extend(saved.topic_config_table);
            data_version = saved.data_version;
        }
        Ok(Self {
            state: Mutex::new(State {
                table,
                data_version,
            }),
            persist_lock: Mutex::new(()),
            path,
            system_topics,
            auto_create_topic_enable: AtomicBool::new(config.auto_create_topic_enable),
            changed,
        })
    }

    pub fn auto_create_topic_enable(&self) -> bool {
        self.auto_create_topic_enable.load(Ordering::Relaxed)
    }

    /// Turns auto-creation from TBW102 on or off. As in RocketMQ, turning it on only helps when
    /// TBW102 exists (it is made at startup when the setting was on then).
    pub fn set_auto_create_topic_enable(&self, on: bool) {
        self.auto_create_topic_enable.store(on, Ordering::Relaxed);
    }

    pub fn select(&self, topic: &str) -> Option<TopicConfig> {
        lock(&self.state).table.get(topic).cloned()
    }

    pub fn contains(&self, topic: &str) -> bool {
        lock(&self.state).table.contains_key(topic)
    }

    pub fn is_order_topic(&self, topic: &str) -> bool {
        lock(&self.state)
            .table
            .get(topic)
            .map(|t| t.order)
            .unwrap_or(false)
    }

    pub fn is_system_topic(&self, topic: &str) -> bool {
        STATIC_SYSTEM_TOPICS.contains(&topic)
            || topic.starts_with(SYSTEM_TOPIC_PREFIX)
            || self.system_topics.contains(topic)
    }

    pub fn data_version(&self) -> DataVersion {
        lock(&self.state).data_version
    }

    pub fn topic_names(&self) -> Vec<String> {
        lock(&self.state).table.keys().cloned().collect()
    }

    /// Moves the data version on without changing a topic, so name servers take the next
    /// registration's topic data again (after a change to `brokerPermission`).
    pub fn bump_data_version(&self) {
        lock(&self.state).data_version.next_version(now_ms(), 0);
    }

    /// Everything, as registered with name servers and served by GET_ALL_TOPIC_CONFIG.
    pub fn wrapper(&self) -> TopicConfigSerializeWrapper {
        let s = lock(&self.state);
        TopicConfigSerializeWrapper {
            data_version: s.data_version,
            topic_config_table: s.table.clone(),
        }
    }

    /// The send path's auto-create (`createTopicInSendMessageMethod`): a new topic inherits from
    /// `default_topic` when that topic carries PERM_INHERIT, with `min(requested, template write
    /// queues)` queues and the template's perm minus INHERIT. `None` when it cannot be created.
    pub fn create_in_send(
        &self,
        topic: &str,
        default_topic: &str,
        requested_queue_nums: i32,
        topic_sys_flag: i32,
    ) -> Result<Option<Created>> {
        let created = {
            let mut s = lock(&self.state);
            if let Some(existing) = s.table.get(topic) {
                return Ok(Some(Created {
                    config: existing.clone(),
                    created: false,
                }));
            }
            let Some(template) = s.table.get(default_topic) else {
                warn!(
                    topic,
                    default_topic, "cannot create topic: the default topic does not exist"
                );
                return Ok(None);
            };
            let mut template_perm = template.perm;
            if default_topic == AUTO_CREATE_TOPIC_KEY_TOPIC && !self.auto_create_topic_enable() {
                template_perm = perm::READ | perm::WRITE;
            }
            if !perm::is_inherited(template_perm) {
                warn!(
                    topic,
                    default_topic,
                    perm = template_perm,
                    "cannot create topic: the default topic has no inherit permission"
                );
                return Ok(None);
            }
            let queues = requested_queue_nums.min(template.write_queue_nums).max(0);
            let config = TopicConfig {
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: template_perm & !perm::INHERIT,
                topic_sys_flag,
                topic_filter_type: template.topic_filter_type,
                ..TopicConfig::new(topic)
            };
            s.table.insert(topic.to_owned(), config.clone());
            s.data_version.next_version(now_ms(), 0);
            config
        };
        info!(
            topic,
            default_topic,
            queues = created.write_queue_nums,
            "auto-created topic"
        );
        self.after_change()?;
        Ok(Some(Created {
            config: created,
            created: true,
        }))
    }

    /// Creates a topic for retries, DLQs and the like (`createTopicInSendMessageBackMethod`): an
    /// existing topic is returned as is, except that its order flag follows `order`.
    pub fn create_in_send_back(
        &self,
        topic: &str,
        queue_nums: i32,
        perm: i32,
        order: bool,
        topic_sys_flag: i32,
    ) -> Result<Created> {
        let outcome = {
            let mut s = lock(&self.state);
            match s.table.get_mut(topic) {
                Some(existing) if existing.order == order => {
                    return Ok(Created {
                        config: existing.clone(),
                        created: false,
                    })
                }
                Some(existing) => {
                    existing.order = order;
                    let config = existing.clone();
                    s.data_version.next_version(now_ms(), 0);
                    Created {
                        config,
                        created: false,
                    }
                }
                None => {
                    let config = TopicConfig {
                        read_queue_nums: queue_nums,
                        write_queue_nums: queue_nums,
                        perm,
                        order,
                        topic_sys_flag,
                        ..TopicConfig::new(topic)
                    };
                    s.table.insert(topic.to_owned(), config.clone());
                    s.data_version.next_version(now_ms(), 0);
                    Created {
                        config,
                        created: true,
                    }
                }
            }
        };
        if outcome.created {
            info!(topic, queue_nums, "created topic");
        }
        self.after_change()?;
        Ok(outcome)
    }

    /// Creates or replaces a topic (admin). Returns false when nothing changed.
    pub fn update(&self, config: TopicConfig) -> Result<bool> {
        {
            let mut s = lock(&self.state);
            if s.table.get(&config.topic_name) == Some(&config) {
                return Ok(false);
            }
            info!(topic = %config.topic_name, "topic config updated");
            s.table.insert(config.topic_name.clone(), config);
            s.data_version.next_version(now_ms(), 0);
        }
        self.after_change()?;
        Ok(true)
    }

    /// Removes a topic's config. Returns false when there was none.
    pub fn delete(&self, topic: &str) -> Result<bool> {
        {
            let mut s = lock(&self.state);
            if s.table.remove(topic).is_none() {
                return Ok(false);
            }
            s.data_version.next_version(now_ms(), 0);
        }
        info!(topic, "topic deleted");
        self.after_change()?;
        Ok(true)
    }

    fn after_change(&self) -> Result<()> {
        self.changed.notify_one();
        self.persist()
    }

    /// Writes `topics.json`.
    pub fn persist(&self) -> Result<()> {
        let _guard = lock(&self.persist_lock);
        let snapshot = self.wrapper();
        persist::write_json(&self.path, &snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(dir: &std::path::Path, auto: bool) -> TopicConfigManager {
        let config = BrokerConfig {
            data_dir: dir.to_path_buf(),
            auto_create_topic_enable: auto,
            ..BrokerConfig::default()
        };
        TopicConfigManager::load(&config, Arc::new(Notify::new())).unwrap()
    }

    #[test]
    fn system_topics_are_present_with_rocketmq_settings() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path(), true);
        let tbw = m.select("TBW102").unwrap();
        assert_eq!(
            (tbw.perm, tbw.write_queue_nums, tbw.read_queue_nums),
            (7, 8, 8)
        );
        assert_eq!(
            m.select("SCHEDULE_TOPIC_XXXX").unwrap().write_queue_nums,
            18
        );
        let cluster = m.select("DefaultCluster").unwrap();
        assert_eq!((cluster.perm, cluster.write_queue_nums), (7, 16));
        assert_eq!(m.select("broker-a").unwrap().write_queue_nums, 1);
        for t in [
            "SELF_TEST_TOPIC",
            "OFFSET_MOVED_EVENT",
            "RMQ_SYS_TRANS_HALF_TOPIC",
            "RMQ_SYS_TRANS_OP_HALF_TOPIC",
            "DefaultCluster_REPLY_TOPIC",
            "rmq_sys_REVIVE_LOG_DefaultCluster",
        ] {
            assert!(m.contains(t), "{t}");
            assert!(m.is_system_topic(t), "{t}");
        }
        assert!(!m.is_system_topic("UserTopic"));
        let without = manager(tempfile::tempdir().unwrap().path(), false);
        assert!(!without.contains("TBW102"));
    }

    #[test]
    fn auto_create_takes_min_queues_and_drops_inherit() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path(), true);
        let v0 = m.data_version();
        let c = m
            .create_in_send("NewTopic", "TBW102", 4, 0)
            .unwrap()
            .unwrap();
        assert!(c.created);
        assert_eq!(
            (
                c.config.write_queue_nums,
                c.config.read_queue_nums,
                c.config.perm
            ),
            (4, 4, 6)
        );
        assert!(m.data_version().counter > v0.counter);
        let c = m.create_in_send("Big", "TBW102", 100, 0).unwrap().unwrap();
        assert_eq!(c.config.write_queue_nums, 8);
        let again = m
            .create_in_send("NewTopic", "TBW102", 2, 0)
            .unwrap()
            .unwrap();
        assert!(!again.created);
        assert_eq!(again.config.write_queue_nums, 4);
        // A template without inherit permission, or none at all, creates nothing.
        assert!(m.create_in_send("X", "NewTopic", 4, 0).unwrap().is_none());
        assert!(m.create_in_send("X", "Missing", 4, 0).unwrap().is_none());
    }

    #[test]
    fn topics_persist_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = manager(dir.path(), true);
            m.create_in_send("Kept", "TBW102", 3, 0).unwrap();
            let mut t = m.select("Kept").unwrap();
            t.order = true;
            assert!(m.update(t.clone()).unwrap());
            assert!(!m.update(t).unwrap());
            m.create_in_send_back("%RETRY%G", 1, 6, false, 0).unwrap();
        }
        let m = manager(dir.path(), true);
        let kept = m.select("Kept").unwrap();
        assert_eq!(kept.write_queue_nums, 3);
        assert!(kept.order);
        assert!(m.contains("%RETRY%G"));
        assert!(m.delete("Kept").unwrap());
        assert!(!m.delete("Kept").unwrap());
        assert!(!manager(dir.path(), true).contains("Kept"));
    }
}
