//! Config files under `<data>/config/`, written atomically: a temp file beside the target, fsync,
//! rename over the target, fsync of the directory. A crash leaves either the old file or the new
//! one, never a torn mix.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use apogee_protocol::body::JsonBody;

use crate::error::{BrokerError, Result};

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| BrokerError::Config(format!("{} has no parent folder", path.display())))?;
    fs::create_dir_all(dir).map_err(|e| BrokerError::io(dir.display(), e))?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    {
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(tmp)
            .map_err(|e| BrokerError::io(tmp.display(), e))?;
        f.write_all(bytes)
            .map_err(|e| BrokerError::io(tmp.display(), e))?;
        f.sync_all()
            .map_err(|e| BrokerError::io(tmp.display(), e))?;
    }
    fs::rename(tmp, path).map_err(|e| BrokerError::io(path.display(), e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes a body type as fastjson would (what a Java broker reads back too).
pub fn write_json<T: JsonBody>(path: &Path, value: &T) -> Result<()> {
    let bytes = value
        .encode()
        .map_err(|source| BrokerError::BadConfigFile {
            path: path.display().to_string(),
            source,
        })?;
    write_atomic(path, &bytes)
}

/// Reads a body type; `None` when the file does not exist (or is empty: never written).
pub fn read_json<T: JsonBody>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BrokerError::io(path.display(), e)),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    T::decode(&bytes)
        .map(Some)
        .map_err(|source| BrokerError::BadConfigFile {
            path: path.display().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_protocol::body::KVTable;

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config").join("t.json");
        let mut t = KVTable::default();
        t.table.insert("a".into(), "1".into());
        write_json(&path, &t).unwrap();
        t.table.insert("b".into(), "2".into());
        write_json(&path, &t).unwrap();
        let back: KVTable = read_json(&path).unwrap().unwrap();
        assert_eq!(back, t);
        assert!(!dir.path().join("config").join("t.json.tmp").exists());
    }

    #[test]
    fn missing_file_reads_as_none_and_garbage_as_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_json::<KVTable>(&dir.path().join("nope.json"))
            .unwrap()
            .is_none());
        let bad = dir.path().join("bad.json");
        fs::write(&bad, b"{not json").unwrap();
        assert!(read_json::<KVTable>(&bad).is_err());
    }
}
