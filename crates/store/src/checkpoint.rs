//! The checkpoint: how far the CommitLog and the dispatched queues are known to be durable.
//!
//! Two 64-byte slots; each write goes to the slot that does not hold the newest valid copy, so a torn
//! write can only damage the older one. Layout in docs/storage-format.md, "Checkpoint".

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: u32 = 0x4150_4B31; // "APK1"
const VERSION: u32 = 1;
pub(crate) const SLOT_BYTES: usize = 64;
const CRC_AT: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckpointData {
    /// Every CommitLog byte below this offset is durable.
    pub commitlog_flushed_offset: u64,
    /// Every queue and index entry for records below this offset is durable.
    pub dispatch_flushed_offset: u64,
    pub physic_msg_timestamp_ms: u64,
    pub index_msg_timestamp_ms: u64,
    /// The newest index file (named by this offset) ...
    pub index_file_offset: u64,
    /// ... holds this many durable entries (entry numbers below it are intact).
    pub index_count: u32,
}

pub(crate) struct Checkpoint {
    file: File,
    seq: u64,
    /// Slot holding the newest valid copy.
    current_slot: usize,
    data: CheckpointData,
}

impl Checkpoint {
    /// Opens or creates the file. `None` data means no valid copy was found (new store, or both slots
    /// damaged): the caller recovers from the start of the log.
    pub fn open(path: &Path) -> io::Result<(Checkpoint, Option<CheckpointData>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut buf = [0u8; 2 * SLOT_BYTES];
        let len = file.metadata()?.len() as usize;
        if len > 0 {
            let n = len.min(buf.len());
            file.read_exact_at(&mut buf[..n], 0)?;
        }
        let slots = [decode(&buf[..SLOT_BYTES]), decode(&buf[SLOT_BYTES..])];
        let best = match slots {
            [Some(a), Some(b)] => Some(if a.0 >= b.0 { (0, a) } else { (1, b) }),
            [Some(a), None] => Some((0, a)),
            [None, Some(b)] => Some((1, b)),
            [None, None] => None,
        };
        let (current_slot, seq, data) = match best {
            Some((slot, (seq, data))) => (slot, seq, Some(data)),
            None => (1, 0, None),
        };
        Ok((
            Checkpoint {
                file,
                seq,
                current_slot,
                data: data.unwrap_or_default(),
            },
            data,
        ))
    }

    /// Writes `data` durably into the other slot.
    pub fn write(&mut self, data: CheckpointData) -> io::Result<()> {
        let slot = 1 - self.current_slot;
        let seq = self.seq + 1;
        let bytes = encode(seq, &data);
        self.file.write_all_at(&bytes, (slot * SLOT_BYTES) as u64)?;
        self.file.sync_data()?;
        self.seq = seq;
        self.current_slot = slot;
        self.data = data;
        Ok(())
    }
}

fn encode(seq: u64, d: &CheckpointData) -> [u8; SLOT_BYTES] {
    let mut b = [0u8; SLOT_BYTES];
    b[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&VERSION.to_be_bytes());
    b[8..16].copy_from_slice(&seq.to_be_bytes());
    b[16..24].copy_from_slice(&d.commitlog_flushed_offset.to_be_bytes());
    b[24..32].copy_from_slice(&d.dispatch_flushed_offset.to_be_bytes());
    b[32..40].copy_from_slice(&d.physic_msg_timestamp_ms.to_be_bytes());
    b[40..48].copy_from_slice(&d.index_msg_timestamp_ms.to_be_bytes());
    b[48..56].copy_from_slice(&d.index_file_offset.to_be_bytes());
    b[56..60].copy_from_slice(&d.index_count.to_be_bytes());
    let crc = crc32fast::hash(&b[..CRC_AT]) & 0x7FFF_FFFF;
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn decode(b: &[u8]) -> Option<(u64, CheckpointData)> {
    check_slot(b).ok()
}

/// Decodes one slot into (sequence, data), or says why it holds no valid checkpoint (the inspector
/// shows the reason). `b` must be at least [`SLOT_BYTES`] long.
pub(crate) fn check_slot(b: &[u8]) -> Result<(u64, CheckpointData), String> {
    if b.iter().all(|&x| x == 0) {
        return Err("empty (all zero)".into());
    }
    if u32_at(b, 0) != MAGIC {
        return Err(format!("bad magic {:#010X}", u32_at(b, 0)));
    }
    if u32_at(b, 4) != VERSION {
        return Err(format!("unknown version {}", u32_at(b, 4)));
    }
    let crc = crc32fast::hash(&b[..CRC_AT]) & 0x7FFF_FFFF;
    if u32_at(b, CRC_AT) != crc {
        return Err(format!(
            "CRC {:#010X} does not match the slot's {crc:#010X}",
            u32_at(b, CRC_AT)
        ));
    }
    Ok((
        u64_at(b, 8),
        CheckpointData {
            commitlog_flushed_offset: u64_at(b, 16),
            dispatch_flushed_offset: u64_at(b, 24),
            physic_msg_timestamp_ms: u64_at(b, 32),
            index_msg_timestamp_ms: u64_at(b, 40),
            index_file_offset: u64_at(b, 48),
            index_count: u32_at(b, 56),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: u64) -> CheckpointData {
        CheckpointData {
            commitlog_flushed_offset: n,
            dispatch_flushed_offset: n / 2,
            physic_msg_timestamp_ms: 1_700_000_000_000 + n,
            index_msg_timestamp_ms: 1_700_000_000_000,
            index_file_offset: n * 3,
            index_count: n as u32 + 1,
        }
    }

    #[test]
    fn new_file_has_no_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (_cp, d) = Checkpoint::open(&dir.path().join("checkpoint")).unwrap();
        assert_eq!(d, None);
    }

    #[test]
    fn newest_write_wins_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint");
        let (mut cp, _) = Checkpoint::open(&path).unwrap();
        for n in 1..=5 {
            cp.write(data(n * 100)).unwrap();
        }
        drop(cp);
        let (_cp, d) = Checkpoint::open(&path).unwrap();
        assert_eq!(d, Some(data(500)));
    }

    #[test]
    fn a_torn_newest_slot_falls_back_to_the_older_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint");
        let (mut cp, _) = Checkpoint::open(&path).unwrap();
        cp.write(data(100)).unwrap(); // slot 0
        cp.write(data(200)).unwrap(); // slot 1
        drop(cp);
        // Corrupt one byte of slot 1's payload.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xFF], (SLOT_BYTES + 20) as u64).unwrap();
        drop(f);
        let (mut cp, d) = Checkpoint::open(&path).unwrap();
        assert_eq!(d, Some(data(100)));
        // The next write goes to the damaged slot and becomes the newest.
        cp.write(data(300)).unwrap();
        drop(cp);
        assert_eq!(Checkpoint::open(&path).unwrap().1, Some(data(300)));
    }

    #[test]
    fn golden_slot_layout() {
        let b = encode(7, &data(100));
        assert_eq!(&b[0..4], b"APK1");
        assert_eq!(&b[4..8], &[0, 0, 0, 1]);
        assert_eq!(u64_at(&b, 8), 7);
        assert_eq!(u64_at(&b, 16), 100);
        assert_eq!(u64_at(&b, 24), 50);
        assert_eq!(u64_at(&b, 48), 300);
        assert_eq!(u32_at(&b, 56), 101);
        assert_eq!(u32_at(&b, 60), crc32fast::hash(&b[..60]) & 0x7FFF_FFFF);
    }
}
