//! Consumer groups known to the broker (`SubscriptionGroupManager`) and
//! `config/subscriptionGroup.json`. Unknown groups are created on first use when
//! `autoCreateSubscriptionGroup` is on, as RocketMQ does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use apogee_protocol::body::{DataVersion, SubscriptionGroupConfig, SubscriptionGroupWrapper};
use tracing::info;

use crate::config::BrokerConfig;
use crate::error::Result;
use crate::manager::{lock, now_ms};
use crate::names::*;
use crate::persist;

pub struct SubscriptionGroupManager {
    state: Mutex<SubscriptionGroupWrapper>,
    persist_lock: Mutex<()>,
    path: PathBuf,
    /// `autoCreateSubscriptionGroup`, changeable at runtime (UPDATE_BROKER_CONFIG).
    auto_create: AtomicBool,
}

impl SubscriptionGroupManager {
    pub fn load(config: &BrokerConfig) -> Result<Self> {
        let path = config.config_dir().join("subscriptionGroup.json");
        let mut table = BTreeMap::new();
        for group in [
            TOOLS_CONSUMER_GROUP,
            FILTERSRV_CONSUMER_GROUP,
            SELF_TEST_CONSUMER_GROUP,
            ONS_HTTP_PROXY_GROUP,
            CID_ONSAPI_PULL_GROUP,
            CID_ONSAPI_PERMISSION_GROUP,
            CID_ONSAPI_OWNER_GROUP,
            CID_SYS_RMQ_TRANS,
        ] {
            table.insert(group.to_owned(), SubscriptionGroupConfig::new(group));
        }
        let mut wrapper = SubscriptionGroupWrapper {
            data_version: DataVersion::new(now_ms()),
            forbidden_table: BTreeMap::new(),
            subscription_group_table: table,
        };
        if let Some(saved) = persist::read_json::<SubscriptionGroupWrapper>(&path)? {
            wrapper
                .subscription_group_table
                .extend(saved.subscription_group_table);
            wrapper.forbidden_table = saved.forbidden_table;
            wrapper.data_version = saved.data_version;
        }
        Ok(Self {
            state: Mutex::new(wrapper),
            persist_lock: Mutex::new(()),
            path,
            auto_create: AtomicBool::new(config.auto_create_subscription_group),
        })
    }

    pub fn auto_create(&self) -> bool {
        self.auto_create.load(Ordering::Relaxed)
    }

    pub fn set_auto_create(&self, on: bool) {
        self.auto_create.store(on, Ordering::Relaxed);
    }

    /// The group's config without creating it.
    pub fn get(&self, group: &str) -> Option<SubscriptionGroupConfig> {
        lock(&self.state)
            .subscription_group_table
            .get(group)
            .cloned()
    }

    pub fn contains(&self, group: &str) -> bool {
        lock(&self.state)
            .subscription_group_table
            .contains_key(group)
    }

    /// `findSubscriptionGroupConfig`: the group's config, created with defaults when unknown and
    /// auto-create is on (and the name is valid).
    pub fn find_or_create(&self, group: &str) -> Result<Option<SubscriptionGroupConfig>> {
        let created = {
            let mut s = lock(&self.state);
            if let Some(c) = s.subscription_group_table.get(group) {
                return Ok(Some(c.clone()));
            }
            if !self.auto_create() || validate_group(group).is_err() {
                return Ok(None);
            }
            let c = SubscriptionGroupConfig::new(group);
            s.subscription_group_table
                .insert(group.to_owned(), c.clone());
            s.data_version.next_version(now_ms(), 0);
            c
        };
        info!(group, "auto-created subscription group");
        self.persist()?;
        Ok(Some(created))
    }

    /// Creates or replaces a group (admin).
    pub fn update(&self, config: SubscriptionGroupConfig) -> Result<()> {
        {
            let mut s = lock(&self.state);
            s.subscription_group_table
                .insert(config.group_name.clone(), config);
            s.data_version.next_version(now_ms(), 0);
        }
        self.persist()
    }

    /// Removes a group; false when it was unknown.
    pub fn delete(&self, group: &str) -> Result<bool> {
        {
            let mut s = lock(&self.state);
            if s.subscription_group_table.remove(group).is_none() {
                return Ok(false);
            }
            s.forbidden_table.remove(group);
            s.data_version.next_version(now_ms(), 0);
        }
        self.persist()?;
        Ok(true)
    }

    /// Whether `group` is forbidden the permission bit at `index` on `topic`.
    pub fn is_forbidden(&self, group: &str, topic: &str, index: u32) -> bool {
        lock(&self.state)
            .forbidden_table
            .get(group)
            .and_then(|t| t.get(topic))
            .map(|bits| bits & (1 << index) != 0)
            .unwrap_or(false)
    }

    pub fn wrapper(&self) -> SubscriptionGroupWrapper {
        lock(&self.state).clone()
    }

    pub fn persist(&self) -> Result<()> {
        let _guard = lock(&self.persist_lock);
        let snapshot = self.wrapper();
        persist::write_json(&self.path, &snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, auto: bool) -> BrokerConfig {
        BrokerConfig {
            data_dir: dir.to_path_buf(),
            auto_create_subscription_group: auto,
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn unknown_groups_are_created_when_allowed_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let m = SubscriptionGroupManager::load(&config(dir.path(), true)).unwrap();
        assert!(m.contains(TOOLS_CONSUMER_GROUP));
        let g = m.find_or_create("CG").unwrap().unwrap();
        assert_eq!((g.retry_max_times, g.retry_queue_nums), (16, 1));
        assert!(m.find_or_create("bad group").unwrap().is_none());
        let again = SubscriptionGroupManager::load(&config(dir.path(), false)).unwrap();
        assert!(again.contains("CG"));
        assert!(again.find_or_create("Other").unwrap().is_none());
        assert!(again.delete("CG").unwrap());
        assert!(!again.delete("CG").unwrap());
    }
}
