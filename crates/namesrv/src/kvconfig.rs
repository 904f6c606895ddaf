//! The name server's KV config (namespace -> key -> value), kept in memory and persisted after
//! every change to one JSON file, `{"configTable":{ns:{k:v}}}`, as Java's `KVConfigManager` does.
//!
//! Writes are atomic: the new content goes to a temp file beside the target, is fsynced, renamed
//! over the target, and the directory is fsynced, so a crash leaves either the old or the new file.
//! A change is applied in memory only once it is on disk.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use apogee_protocol::body::{JsonBody, KVConfigSerializeWrapper};
use tracing::info;

use crate::error::NamesrvError;

/// The namespace whose entries give ordered topics their `orderTopicConf`
/// (`NamesrvUtil.NAMESPACE_ORDER_TOPIC_CONFIG`).
pub const NAMESPACE_ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

type Table = BTreeMap<String, BTreeMap<String, String>>;

/// The KV store. Reads never wait for disk I/O; writers are serialized.
#[derive(Debug)]
pub struct KvConfigManager {
    /// `None`: in memory only.
    path: Option<PathBuf>,
    table: RwLock<Table>,
    /// Held across "compute the new table, write it, publish it" so writes reach the disk in
    /// the order they are published.
    write_lock: Mutex<()>,
}

impl KvConfigManager {
    /// Loads `path` (a missing or empty file is an empty store). A file that cannot be read or
    /// parsed is an error rather than an empty store, so a bad file is never silently overwritten.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, NamesrvError> {
        let path = path.into();
        let table = match fs::read(&path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Table::new(),
            Ok(bytes) => {
                KVConfigSerializeWrapper::decode(&bytes)
                    .map_err(|e| NamesrvError::KvConfigCorrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?
                    .config_table
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Table::new(),
            Err(source) => {
                return Err(NamesrvError::Io {
                    context: format!("reading KV config {}", path.display()),
                    source,
                })
            }
        };
        info!(path = %path.display(), namespaces = table.len(), "KV config loaded");
        Ok(Self {
            path: Some(path),
            table: RwLock::new(table),
            write_lock: Mutex::new(()),
        })
    }

    /// A store that is never written to disk.
    pub fn in_memory() -> Self {
        Self {
            path: None,
            table: RwLock::new(Table::new()),
            write_lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn get(&self, namespace: &str, key: &str) -> Option<String> {
        self.read().get(namespace)?.get(key).cloned()
    }

    /// Every entry of `namespace`, `None` if it has none.
    pub fn list(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.read().get(namespace).cloned()
    }

    /// The whole store.
    pub fn snapshot(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.read().clone()
    }

    /// Sets `key` in `namespace` and persists. Blocks on disk I/O.
    pub fn put(&self, namespace: &str, key: &str, value: &str) -> Result<(), NamesrvError> {
        self.update(|table| {
            let ns = table.entry(namespace.to_owned()).or_default();
            if ns.get(key).map(String::as_str) == Some(value) {
                return false;
            }
            ns.insert(key.to_owned(), value.to_owned());
            true
        })?;
        info!(namespace, key, value, "KV config put");
        Ok(())
    }

    /// Removes `key` from `namespace` (an emptied namespace goes too) and persists. Returns
    /// whether the key existed. Blocks on disk I/O.
    pub fn delete(&self, namespace: &str, key: &str) -> Result<bool, NamesrvError> {
        let existed = self.update(|table| {
            let Some(ns) = table.get_mut(namespace) else {
                return false;
            };
            let existed = ns.remove(key).is_some();
            if ns.is_empty() {
                table.remove(namespace);
            }
            existed
        })?;
        if existed {
            info!(namespace, key, "KV config deleted");
        }
        Ok(existed)
    }

    /// Applies `change` to a copy; when it reports a change, persists the copy and publishes it.
    fn update(&self, change: impl FnOnce(&mut Table) -> bool) -> Result<bool, NamesrvError> {
        let _writer = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = self.read().clone();
        if !change(&mut next) {
            return Ok(false);
        }
        if let Some(path) = &self.path {
            let wrapper = KVConfigSerializeWrapper {
                config_table: next.clone(),
            };
            let bytes = wrapper.encode().map_err(|e| NamesrvError::Io {
                context: "encoding KV config".into(),
                source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            })?;
            write_atomically(path, &bytes).map_err(|source| NamesrvError::Io {
                context: format!("writing KV config {}", path.display()),
                source,
            })?;
        }
        *self.write() = next;
        Ok(true)
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new content, never a mix.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(&dir)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_delete_by_namespace() {
        let kv = KvConfigManager::in_memory();
        assert_eq!(kv.get("ns", "k"), None);
        kv.put("ns", "k", "v").unwrap();
        kv.put("ns", "k2", "v2").unwrap();
        kv.put("other", "k", "x").unwrap();
        assert_eq!(kv.get("ns", "k").as_deref(), Some("v"));
        assert_eq!(kv.get("other", "k").as_deref(), Some("x"));
        assert_eq!(kv.list("ns").unwrap().len(), 2);
        assert!(kv.delete("ns", "k").unwrap());
        assert!(!kv.delete("ns", "k").unwrap());
        assert!(kv.delete("ns", "k2").unwrap());
        assert_eq!(kv.list("ns"), None);
        assert!(!kv.delete("missing", "k").unwrap());
    }

    #[test]
    fn changes_are_persisted_as_java_shaped_json_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("kvConfig.json");
        let kv = KvConfigManager::load(&path).unwrap();
        kv.put("ORDER_TOPIC_CONFIG", "T1", "b:4").unwrap();
        kv.put("ns", "k", "v").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            r#"{"configTable":{"ORDER_TOPIC_CONFIG":{"T1":"b:4"},"ns":{"k":"v"}}}"#
        );
        assert!(!dir.path().join("sub").join("kvConfig.json.tmp").exists());

        kv.delete("ns", "k").unwrap();
        drop(kv);
        let kv = KvConfigManager::load(&path).unwrap();
        assert_eq!(kv.get("ORDER_TOPIC_CONFIG", "T1").as_deref(), Some("b:4"));
        assert_eq!(kv.list("ns"), None);
    }

    #[test]
    fn a_java_written_file_with_whitespace_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvConfig.json");
        fs::write(
            &path,
            "{\n\t\"configTable\":{\n\t\t\"ns\":{\n\t\t\t\"a\":\"1\"\n\t\t}\n\t}\n}",
        )
        .unwrap();
        let kv = KvConfigManager::load(&path).unwrap();
        assert_eq!(kv.get("ns", "a").as_deref(), Some("1"));
    }

    #[test]
    fn missing_or_empty_file_is_an_empty_store_and_a_corrupt_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvConfig.json");
        assert!(KvConfigManager::load(&path).unwrap().snapshot().is_empty());
        fs::write(&path, "  \n").unwrap();
        assert!(KvConfigManager::load(&path).unwrap().snapshot().is_empty());
        fs::write(&path, "{\"configTable\":{\"ns\":").unwrap();
        let err = KvConfigManager::load(&path).unwrap_err();
        assert!(matches!(err, NamesrvError::KvConfigCorrupt { .. }), "{err}");
    }

    #[test]
    fn a_failed_write_leaves_memory_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvConfig.json");
        let kv = KvConfigManager::load(&path).unwrap();
        // A non-empty directory where the file should be: the rename over it fails.
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), "keep").unwrap();
        assert!(matches!(
            kv.put("ns", "k", "v"),
            Err(NamesrvError::Io { .. })
        ));
        assert_eq!(kv.get("ns", "k"), None);
    }
}
