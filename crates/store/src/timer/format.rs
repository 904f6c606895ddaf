//! Byte layouts of the timer files: the 48-byte timer-log unit, the 32-byte wheel slot and the
//! 64-byte checkpoint slot. Pure encode/decode; docs/storage-format.md, "Timer", is the reference.

use apogee_protocol::message::crc32_masked;

/// Bytes of one timer-log unit.
pub const UNIT_BYTES: usize = 48;
/// Bytes of one wheel slot.
pub const SLOT_BYTES: usize = 32;
/// Bytes of one checkpoint slot (the file holds two).
pub const CHECKPOINT_SLOT_BYTES: usize = 64;

const UNIT_MAGIC: u32 = 0x544C_5531; // "TLU1"
const CHECKPOINT_MAGIC: u32 = 0x4154_4331; // "ATC1"
const CHECKPOINT_VERSION: u32 = 1;

/// The unit marks its record's `TIMER_DEL_UNIQKEY` as deleted instead of being delivered.
pub const FLAG_DELETE: u32 = 1;
/// The unit's record is due later than the wheel reaches: it goes back to the timer topic.
pub const FLAG_ROLL: u32 = 2;
/// "No unit": the end of a chain, or a walk that has not started.
pub const NO_POS: i64 = -1;

/// One timer-log unit: a timer record chained into the slot of a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerUnit {
    pub flags: u32,
    /// Tick of the slot the unit is chained into.
    pub tick: i64,
    /// Logical offset of the record in `rmq_sys_wheel_timer`/0.
    pub queue_offset: u64,
    /// CommitLog offset of the record.
    pub commitlog_offset: u64,
    /// Its TOTALSIZE.
    pub size: u32,
    /// Position of the previous unit of the same chain, [`NO_POS`] for the first.
    pub prev_pos: i64,
}

impl TimerUnit {
    pub fn is_delete(&self) -> bool {
        self.flags & FLAG_DELETE != 0
    }

    pub fn is_roll(&self) -> bool {
        self.flags & FLAG_ROLL != 0
    }

    pub fn encode(&self) -> [u8; UNIT_BYTES] {
        let mut b = [0u8; UNIT_BYTES];
        b[0..4].copy_from_slice(&UNIT_MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..16].copy_from_slice(&self.tick.to_be_bytes());
        b[16..24].copy_from_slice(&self.queue_offset.to_be_bytes());
        b[24..32].copy_from_slice(&self.commitlog_offset.to_be_bytes());
        b[32..36].copy_from_slice(&self.size.to_be_bytes());
        b[36..44].copy_from_slice(&self.prev_pos.to_be_bytes());
        let crc = crc32_masked(&b[..44]);
        b[44..48].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes a unit, checking its length, magic and CRC; the error says what is wrong.
    pub fn decode(b: &[u8]) -> Result<TimerUnit, String> {
        let b = b
            .get(..UNIT_BYTES)
            .ok_or_else(|| format!("{} bytes, a unit has {UNIT_BYTES}", b.len()))?;
        let magic = u32_at(b, 0);
        if magic != UNIT_MAGIC {
            return Err(format!("bad unit magic {magic:#010X}"));
        }
        let crc = crc32_masked(&b[..44]);
        if u32_at(b, 44) != crc {
            return Err(format!(
                "unit CRC {:#010X} does not match {crc:#010X}",
                u32_at(b, 44)
            ));
        }
        Ok(TimerUnit {
            flags: u32_at(b, 4),
            tick: i64_at(b, 8),
            queue_offset: u64_at(b, 16),
            commitlog_offset: u64_at(b, 24),
            size: u32_at(b, 32),
            prev_pos: i64_at(b, 36),
        })
    }
}

/// One wheel slot: the chain of units of one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub tick: i64,
    pub first_pos: i64,
    pub last_pos: i64,
    pub count: u32,
}

impl Slot {
    pub fn encode(&self) -> [u8; SLOT_BYTES] {
        let mut b = [0u8; SLOT_BYTES];
        b[0..8].copy_from_slice(&self.tick.to_be_bytes());
        b[8..16].copy_from_slice(&self.first_pos.to_be_bytes());
        b[16..24].copy_from_slice(&self.last_pos.to_be_bytes());
        b[24..28].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32_masked(&b[..28]);
        b[28..32].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// `Ok(None)` for an all-zero (never written) slot.
    pub fn decode(b: &[u8]) -> Result<Option<Slot>, String> {
        let b = b
            .get(..SLOT_BYTES)
            .ok_or_else(|| format!("{} bytes, a slot has {SLOT_BYTES}", b.len()))?;
        if b.iter().all(|&x| x == 0) {
            return Ok(None);
        }
        let crc = crc32_masked(&b[..28]);
        if u32_at(b, 28) != crc {
            return Err(format!(
                "slot CRC {:#010X} does not match {crc:#010X}",
                u32_at(b, 28)
            ));
        }
        Ok(Some(Slot {
            tick: i64_at(b, 0),
            first_pos: i64_at(b, 8),
            last_pos: i64_at(b, 16),
            count: u32_at(b, 24),
        }))
    }
}

/// What the timer checkpoint records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerCheckpointData {
    /// Every unit below this position is durable and linked in the wheel file.
    pub log_end: u64,
    /// Records of the timer queue below this offset have their units below `log_end`.
    pub enqueue_offset: u64,
    /// The first tick not fully delivered.
    pub cursor: i64,
    /// Next unit to deliver in the cursor's chain; [`NO_POS`]: the walk has not started.
    pub walk_pos: i64,
    pub precision_ms: u32,
    pub wheel_slots: u32,
}

pub fn encode_checkpoint(seq: u64, d: &TimerCheckpointData) -> [u8; CHECKPOINT_SLOT_BYTES] {
    let mut b = [0u8; CHECKPOINT_SLOT_BYTES];
    b[0..4].copy_from_slice(&CHECKPOINT_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&CHECKPOINT_VERSION.to_be_bytes());
    b[8..16].copy_from_slice(&seq.to_be_bytes());
    b[16..24].copy_from_slice(&d.log_end.to_be_bytes());
    b[24..32].copy_from_slice(&d.enqueue_offset.to_be_bytes());
    b[32..40].copy_from_slice(&d.cursor.to_be_bytes());
    b[40..48].copy_from_slice(&d.walk_pos.to_be_bytes());
    b[48..52].copy_from_slice(&d.precision_ms.to_be_bytes());
    b[52..56].copy_from_slice(&d.wheel_slots.to_be_bytes());
    let crc = crc32_masked(&b[..60]);
    b[60..64].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Decodes one checkpoint slot into (sequence, data), or says why it holds none.
pub fn decode_checkpoint(b: &[u8]) -> Result<(u64, TimerCheckpointData), String> {
    let b = b
        .get(..CHECKPOINT_SLOT_BYTES)
        .ok_or_else(|| format!("{} bytes, a checkpoint slot has 64", b.len()))?;
    if b.iter().all(|&x| x == 0) {
        return Err("empty".into());
    }
    if u32_at(b, 0) != CHECKPOINT_MAGIC {
        return Err(format!("bad magic {:#010X}", u32_at(b, 0)));
    }
    if u32_at(b, 4) != CHECKPOINT_VERSION {
        return Err(format!("unknown version {}", u32_at(b, 4)));
    }
    let crc = crc32_masked(&b[..60]);
    if u32_at(b, 60) != crc {
        return Err(format!(
            "CRC {:#010X} does not match {crc:#010X}",
            u32_at(b, 60)
        ));
    }
    Ok((
        u64_at(b, 8),
        TimerCheckpointData {
            log_end: u64_at(b, 16),
            enqueue_offset: u64_at(b, 24),
            cursor: i64_at(b, 32),
            walk_pos: i64_at(b, 40),
            precision_ms: u32_at(b, 48),
            wheel_slots: u32_at(b, 52),
        },
    ))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    u64_at(b, at) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> TimerUnit {
        TimerUnit {
            flags: FLAG_DELETE,
            tick: 1_700_000_123,
            queue_offset: 42,
            commitlog_offset: 0x0102_0304_0506,
            size: 321,
            prev_pos: 96,
        }
    }

    #[test]
    fn unit_round_trips_and_pins_its_layout() {
        let u = unit();
        let b = u.encode();
        assert_eq!(TimerUnit::decode(&b), Ok(u));
        assert_eq!(&b[0..4], b"TLU1");
        assert_eq!(&b[4..8], &[0, 0, 0, 1]);
        assert_eq!(i64_at(&b, 8), 1_700_000_123);
        assert_eq!(u64_at(&b, 16), 42);
        assert_eq!(&b[24..32], &[0, 0, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06]);
        assert_eq!(&b[32..36], &[0, 0, 0x01, 0x41]);
        assert_eq!(i64_at(&b, 36), 96);
        assert_eq!(u32_at(&b, 44), crc32fast::hash(&b[..44]) & 0x7FFF_FFFF);
        let first = TimerUnit {
            prev_pos: NO_POS,
            ..u
        }
        .encode();
        assert_eq!(&first[36..44], &[0xFF; 8]);
    }

    #[test]
    fn every_truncation_and_any_flipped_byte_of_a_unit_is_an_error() {
        let b = unit().encode();
        for n in 0..UNIT_BYTES {
            assert!(TimerUnit::decode(&b[..n]).is_err(), "truncated at {n}");
        }
        for i in 0..UNIT_BYTES {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(TimerUnit::decode(&c).is_err(), "flipped byte {i}");
        }
        assert!(TimerUnit::decode(&[0u8; UNIT_BYTES]).is_err());
    }

    #[test]
    fn slot_round_trips_zero_is_empty_and_damage_is_an_error() {
        let s = Slot {
            tick: 99,
            first_pos: 0,
            last_pos: 480,
            count: 11,
        };
        let b = s.encode();
        assert_eq!(Slot::decode(&b), Ok(Some(s)));
        assert_eq!(i64_at(&b, 0), 99);
        assert_eq!(i64_at(&b, 16), 480);
        assert_eq!(u32_at(&b, 24), 11);
        assert_eq!(Slot::decode(&[0u8; SLOT_BYTES]), Ok(None));
        for n in 0..SLOT_BYTES {
            assert!(Slot::decode(&b[..n]).is_err(), "truncated at {n}");
        }
        let mut c = b;
        c[20] ^= 1;
        assert!(Slot::decode(&c).is_err());
    }

    #[test]
    fn checkpoint_slot_round_trips_and_pins_its_layout() {
        let d = TimerCheckpointData {
            log_end: 4800,
            enqueue_offset: 100,
            cursor: 1_700_000_000,
            walk_pos: NO_POS,
            precision_ms: 1000,
            wheel_slots: 604_800,
        };
        let b = encode_checkpoint(7, &d);
        assert_eq!(decode_checkpoint(&b), Ok((7, d)));
        assert_eq!(&b[0..4], b"ATC1");
        assert_eq!(&b[4..8], &[0, 0, 0, 1]);
        assert_eq!(u64_at(&b, 16), 4800);
        assert_eq!(u64_at(&b, 24), 100);
        assert_eq!(&b[40..48], &[0xFF; 8]);
        assert_eq!(u32_at(&b, 48), 1000);
        assert_eq!(u32_at(&b, 52), 604_800);
        assert_eq!(&b[56..60], &[0; 4]);
        for n in 0..CHECKPOINT_SLOT_BYTES {
            assert!(decode_checkpoint(&b[..n]).is_err(), "truncated at {n}");
        }
        let mut c = b;
        c[30] ^= 4;
        assert!(decode_checkpoint(&c).is_err());
        assert!(decode_checkpoint(&[0u8; 64]).is_err());
    }
}
