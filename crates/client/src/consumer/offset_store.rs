//! Where a consumer keeps its offsets: on the brokers for clustering consumers
//! (QUERY/UPDATE_CONSUMER_OFFSET, batched and sent every 5 s), or in a local file for
//! broadcasting consumers (`~/.rocketmq_offsets/<clientId>/<group>/offsets.json`, the layout and
//! JSON form Java's `LocalFileOffsetStore` uses, written atomically).
//!
//! An offset is the next one to consume.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use apogee_protocol::body::{JsonBody, MessageQueue};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::error::{ClientError, Result};
use crate::instance::ClientInstance;
use crate::util::lock;

/// Where [`OffsetStore::read_offset`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadOffsetType {
    /// Only the in-memory table.
    ReadFromMemory,
    /// Only the broker (or file); the answer also replaces the in-memory value.
    ReadFromStore,
    /// Memory, then the broker (or file) when memory has nothing.
    MemoryFirstThenStore,
}

/// The file body (`OffsetSerializeWrapper`): `{"offsetTable":{{"brokerName":..,"queueId":..,"topic":..}:offset}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OffsetSerializeWrapper {
    pub offset_table: BTreeMap<MessageQueue, i64>,
}

impl JsonBody for OffsetSerializeWrapper {}

fn update_table(
    table: &Mutex<HashMap<MessageQueue, i64>>,
    mq: &MessageQueue,
    offset: i64,
    increase_only: bool,
) {
    let mut t = lock(table);
    match t.get_mut(mq) {
        Some(old) if increase_only => *old = (*old).max(offset),
        Some(old) => *old = offset,
        None => {
            t.insert(mq.clone(), offset);
        }
    }
}

/// Offsets kept on the brokers (`RemoteBrokerOffsetStore`).
#[derive(Debug)]
pub struct RemoteOffsetStore {
    instance: ClientInstance,
    /// The group as it travels.
    group: String,
    table: Mutex<HashMap<MessageQueue, i64>>,
}

impl RemoteOffsetStore {
    pub fn new(instance: ClientInstance, wire_group: impl Into<String>) -> Self {
        Self {
            instance,
            group: wire_group.into(),
            table: Mutex::new(HashMap::new()),
        }
    }

    pub fn update_offset(&self, mq: &MessageQueue, offset: i64, increase_only: bool) {
        update_table(&self.table, mq, offset, increase_only);
    }

    /// The offset of `mq`, `None` when there is none (the broker answered QUERY_NOT_FOUND).
    pub async fn read_offset(&self, mq: &MessageQueue, how: ReadOffsetType) -> Result<Option<i64>> {
        if how != ReadOffsetType::ReadFromStore {
            if let Some(o) = lock(&self.table).get(mq).copied() {
                return Ok(Some(o));
            }
            if how == ReadOffsetType::ReadFromMemory {
                return Ok(None);
            }
        }
        let found = self.instance.query_consumer_offset(&self.group, mq).await?;
        if let Some(o) = found {
            self.update_offset(mq, o, false);
        }
        Ok(found)
    }

    /// Sends the offsets of `mqs` to their brokers (oneway, as the periodic persistence does, or
    /// waiting for each answer), and forgets offsets of queues not in `mqs`. Returns the first
    /// failure after trying every queue.
    pub async fn persist_all(&self, mqs: &[MessageQueue], oneway: bool) -> Result<()> {
        let snapshot: Vec<(MessageQueue, i64)> = {
            let mut t = lock(&self.table);
            t.retain(|mq, _| mqs.contains(mq));
            t.iter().map(|(mq, o)| (mq.clone(), *o)).collect()
        };
        let mut first_error = None;
        for (mq, offset) in snapshot {
            if let Err(e) = self
                .instance
                .update_consumer_offset(&self.group, &mq, offset, oneway)
                .await
            {
                debug!(queue = %mq, error = %e, "offset persist failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Sends one queue's offset and waits for the broker.
    pub async fn persist(&self, mq: &MessageQueue) -> Result<()> {
        let offset = lock(&self.table).get(mq).copied();
        match offset {
            Some(o) => {
                self.instance
                    .update_consumer_offset(&self.group, mq, o, false)
                    .await
            }
            None => Ok(()),
        }
    }

    pub fn remove_offset(&self, mq: &MessageQueue) {
        lock(&self.table).remove(mq);
    }

    /// The in-memory offsets.
    pub fn offsets(&self) -> HashMap<MessageQueue, i64> {
        lock(&self.table).clone()
    }
}

/// Offsets kept in a local file (`LocalFileOffsetStore`), for broadcasting consumers.
#[derive(Debug)]
pub struct LocalFileOffsetStore {
    path: PathBuf,
    table: Mutex<HashMap<MessageQueue, i64>>,
}

impl LocalFileOffsetStore {
    /// The default root: `$HOME/.rocketmq_offsets` (Java: `user.home`).
    pub fn default_dir() -> PathBuf {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".rocketmq_offsets")
    }

    /// A store at `<dir>/<client_id>/<group>/offsets.json` (`dir` defaults to
    /// [`default_dir`](Self::default_dir)).
    pub fn new(dir: Option<&Path>, client_id: &str, wire_group: &str) -> Self {
        let root = dir.map_or_else(Self::default_dir, Path::to_path_buf);
        Self {
            path: root.join(client_id).join(wire_group).join("offsets.json"),
            table: Mutex::new(HashMap::new()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn bak_path(&self) -> PathBuf {
        self.path.with_extension("json.bak")
    }

    /// Reads the file (or, if it is missing or unreadable, the `.bak` copy the previous write
    /// left) into memory. A store without files is empty, not an error.
    pub fn load(&self) -> Result<()> {
        if let Some(wrapper) = self.read_file()? {
            let mut t = lock(&self.table);
            for (mq, offset) in wrapper.offset_table {
                t.insert(mq, offset);
            }
        }
        Ok(())
    }

    fn read_file(&self) -> Result<Option<OffsetSerializeWrapper>> {
        for path in [self.path.clone(), self.bak_path()] {
            match fs::read(&path) {
                Ok(bytes) if !bytes.is_empty() => match OffsetSerializeWrapper::decode(&bytes) {
                    Ok(w) => return Ok(Some(w)),
                    Err(e) => warn!(path = %path.display(), error = %e, "unreadable offsets file"),
                },
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ClientError::Io(e)),
            }
        }
        Ok(None)
    }

    pub fn update_offset(&self, mq: &MessageQueue, offset: i64, increase_only: bool) {
        update_table(&self.table, mq, offset, increase_only);
    }

    /// The offset of `mq`; "store" means the file.
    pub fn read_offset(&self, mq: &MessageQueue, how: ReadOffsetType) -> Result<Option<i64>> {
        if how != ReadOffsetType::ReadFromStore {
            if let Some(o) = lock(&self.table).get(mq).copied() {
                return Ok(Some(o));
            }
            if how == ReadOffsetType::ReadFromMemory {
                return Ok(None);
            }
        }
        let found = self
            .read_file()?
            .and_then(|w| w.offset_table.get(mq).copied());
        if let Some(o) = found {
            self.update_offset(mq, o, false);
        }
        Ok(found)
    }

    /// Writes the offsets of `mqs` to the file atomically: a temporary file is written and
    /// synced, the current file becomes `offsets.json.bak`, and the temporary file is renamed
    /// into place.
    pub fn persist_all(&self, mqs: &[MessageQueue]) -> Result<()> {
        let wrapper = OffsetSerializeWrapper {
            offset_table: lock(&self.table)
                .iter()
                .filter(|(mq, _)| mqs.contains(mq))
                .map(|(mq, o)| (mq.clone(), *o))
                .collect(),
        };
        if wrapper.offset_table.is_empty() {
            return Ok(());
        }
        self.write_atomically(&wrapper.encode()?)
    }

    /// Writes every known offset.
    pub fn persist_everything(&self) -> Result<()> {
        let all: Vec<MessageQueue> = lock(&self.table).keys().cloned().collect();
        self.persist_all(&all)
    }

    fn write_atomically(&self, content: &[u8]) -> Result<()> {
        let dir = self
            .path
            .parent()
            .ok_or_else(|| ClientError::InvalidArgument("offsets file has no directory".into()))?;
        fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(content)?;
            f.sync_all()?;
        }
        if self.path.exists() {
            fs::rename(&self.path, self.bak_path())?;
        }
        fs::rename(&tmp, &self.path)?;
        // Make the renames durable; not every platform can open a directory, so best effort.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    pub fn remove_offset(&self, mq: &MessageQueue) {
        lock(&self.table).remove(mq);
    }

    pub fn offsets(&self) -> HashMap<MessageQueue, i64> {
        lock(&self.table).clone()
    }
}

/// A consumer's offset store.
#[derive(Debug)]
pub enum OffsetStore {
    Remote(RemoteOffsetStore),
    Local(LocalFileOffsetStore),
}

impl OffsetStore {
    pub fn update_offset(&self, mq: &MessageQueue, offset: i64, increase_only: bool) {
        match self {
            OffsetStore::Remote(s) => s.update_offset(mq, offset, increase_only),
            OffsetStore::Local(s) => s.update_offset(mq, offset, increase_only),
        }
    }

    pub async fn read_offset(&self, mq: &MessageQueue, how: ReadOffsetType) -> Result<Option<i64>> {
        match self {
            OffsetStore::Remote(s) => s.read_offset(mq, how).await,
            OffsetStore::Local(s) => s.read_offset(mq, how),
        }
    }

    /// Persists the offsets of `mqs`; for the remote store `oneway` skips waiting for brokers.
    pub async fn persist_all(&self, mqs: &[MessageQueue], oneway: bool) -> Result<()> {
        match self {
            OffsetStore::Remote(s) => s.persist_all(mqs, oneway).await,
            OffsetStore::Local(s) => persist_local(s, mqs.to_vec()).await,
        }
    }

    /// Persists one queue's offset, waiting for the broker.
    pub async fn persist(&self, mq: &MessageQueue) -> Result<()> {
        match self {
            OffsetStore::Remote(s) => s.persist(mq).await,
            OffsetStore::Local(s) => persist_local(s, s.offsets().into_keys().collect()).await,
        }
    }

    pub fn remove_offset(&self, mq: &MessageQueue) {
        match self {
            OffsetStore::Remote(s) => s.remove_offset(mq),
            OffsetStore::Local(s) => s.remove_offset(mq),
        }
    }

    pub fn offsets(&self) -> HashMap<MessageQueue, i64> {
        match self {
            OffsetStore::Remote(s) => s.offsets(),
            OffsetStore::Local(s) => s.offsets(),
        }
    }
}

/// File writes and fsync block; they run on the blocking pool with a snapshot of the table.
async fn persist_local(s: &LocalFileOffsetStore, mqs: Vec<MessageQueue>) -> Result<()> {
    let copy = LocalFileOffsetStore {
        path: s.path.clone(),
        table: Mutex::new(s.offsets()),
    };
    tokio::task::spawn_blocking(move || copy.persist_all(&mqs))
        .await
        .map_err(|e| ClientError::IllegalState(format!("offset persist task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq(q: i32) -> MessageQueue {
        MessageQueue::new("TopicTest", "broker-a", q)
    }

    #[test]
    fn local_store_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalFileOffsetStore::new(Some(dir.path()), "10.0.0.5@123", "G1");
        assert_eq!(
            a.path(),
            dir.path()
                .join("10.0.0.5@123")
                .join("G1")
                .join("offsets.json")
        );
        a.update_offset(&mq(0), 12, false);
        a.update_offset(&mq(1), 30, false);
        a.persist_all(&[mq(0), mq(1)]).unwrap();

        let b = LocalFileOffsetStore::new(Some(dir.path()), "10.0.0.5@123", "G1");
        b.load().unwrap();
        assert_eq!(
            b.read_offset(&mq(0), ReadOffsetType::ReadFromMemory)
                .unwrap(),
            Some(12)
        );
        assert_eq!(
            b.read_offset(&mq(1), ReadOffsetType::ReadFromStore)
                .unwrap(),
            Some(30)
        );
        assert_eq!(
            b.read_offset(&mq(2), ReadOffsetType::MemoryFirstThenStore)
                .unwrap(),
            None
        );
    }

    #[test]
    fn local_file_uses_javas_object_keyed_form() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalFileOffsetStore::new(Some(dir.path()), "c", "g");
        s.update_offset(&mq(0), 12, false);
        s.persist_all(&[mq(0)]).unwrap();
        let text = fs::read_to_string(s.path()).unwrap();
        assert_eq!(
            text,
            r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"TopicTest"}:12}}"#
        );
    }

    #[test]
    fn local_store_reads_a_file_written_by_java() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalFileOffsetStore::new(Some(dir.path()), "c", "g");
        fs::create_dir_all(s.path().parent().unwrap()).unwrap();
        fs::write(
            s.path(),
            r#"{"offsetTable":{{"brokerName":"broker-a","queueId":1,"topic":"TopicTest"}:99,{"brokerName":"broker-a","queueId":0,"topic":"TopicTest"}:7}}"#,
        )
        .unwrap();
        s.load().unwrap();
        assert_eq!(s.offsets().get(&mq(1)), Some(&99));
        assert_eq!(s.offsets().get(&mq(0)), Some(&7));
    }

    #[test]
    fn a_second_write_keeps_the_previous_file_as_backup() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalFileOffsetStore::new(Some(dir.path()), "c", "g");
        s.update_offset(&mq(0), 1, false);
        s.persist_all(&[mq(0)]).unwrap();
        s.update_offset(&mq(0), 2, false);
        s.persist_all(&[mq(0)]).unwrap();
        // A corrupt main file falls back to the backup.
        fs::write(s.path(), b"{not json").unwrap();
        let t = LocalFileOffsetStore::new(Some(dir.path()), "c", "g");
        t.load().unwrap();
        assert_eq!(t.offsets().get(&mq(0)), Some(&1));
        assert!(!s.path().with_extension("json.tmp").exists());
    }

    #[test]
    fn increase_only_never_moves_an_offset_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalFileOffsetStore::new(Some(dir.path()), "c", "g");
        s.update_offset(&mq(0), 10, true);
        s.update_offset(&mq(0), 5, true);
        assert_eq!(s.offsets().get(&mq(0)), Some(&10));
        s.update_offset(&mq(0), 5, false);
        assert_eq!(s.offsets().get(&mq(0)), Some(&5));
    }

    #[test]
    fn a_missing_file_loads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalFileOffsetStore::new(Some(dir.path()), "c", "g");
        s.load().unwrap();
        assert!(s.offsets().is_empty());
    }
}
