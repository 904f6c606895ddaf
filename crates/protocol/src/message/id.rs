//! Message ids, both rendered as upper-case hex.
//!
//! * offsetMsgId (broker-made): store host address + port + the record's CommitLog offset, so a
//!   broker can find the record from the id alone (VIEW_MESSAGE_BY_ID). 32 hex chars for IPv4
//!   hosts, 56 for IPv6.
//! * `UNIQ_KEY` (client-made, the id users see): a fixed per-process prefix (ip, pid, a random
//!   int) + milliseconds since the start of the current month + a wrapping counter.
//!
//! Deviation: Java measures the month in the JVM's local time zone; we use UTC. Only the
//! approximate time recovered from an id depends on it, and that is used for loose query ranges.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{ProtocolError, Result};

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `bytes` as upper-case hex (RocketMQ's `UtilAll.bytes2string`).
pub fn write_hex_upper(bytes: &[u8], out: &mut String) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
        out.push(char::from(HEX_UPPER[usize::from(b & 0x0F)]));
    }
}

/// `bytes` as upper-case hex.
pub fn hex_upper(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    write_hex_upper(bytes, &mut out);
    out
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Decodes hex (either case) into `out`, which must be exactly half as long as `hex`.
pub fn decode_hex_into(hex: &[u8], out: &mut [u8]) -> Result<()> {
    if hex.len() != out.len() * 2 {
        return Err(ProtocolError::InvalidMessageId(format!(
            "expected {} hex chars, got {}",
            out.len() * 2,
            hex.len()
        )));
    }
    for (slot, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (hex_value(pair[0]), hex_value(pair[1])) else {
            return Err(ProtocolError::InvalidMessageId(format!(
                "not hex: {:?}",
                String::from_utf8_lossy(pair)
            )));
        };
        *slot = hi << 4 | lo;
    }
    Ok(())
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack listener reports for IPv4
/// peers) turned into plain IPv4, as Java's `InetAddress` does. Call it on peer addresses before
/// storing them, so records, offsetMsgIds and what Java clients recompute all agree.
pub fn normalize_host(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => addr,
        },
        v4 => v4,
    }
}

/// The broker-made message id: where the record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OffsetMsgId {
    pub store_host: SocketAddr,
    pub physical_offset: i64,
}

/// Hex length of an offsetMsgId with an IPv4 store host (16 bytes).
pub const OFFSET_MSG_ID_V4_LEN: usize = 32;
/// Hex length of an offsetMsgId with an IPv6 store host (28 bytes).
pub const OFFSET_MSG_ID_V6_LEN: usize = 56;

impl OffsetMsgId {
    pub const fn new(store_host: SocketAddr, physical_offset: i64) -> Self {
        Self {
            store_host,
            physical_offset,
        }
    }

    /// 32 or 56.
    pub const fn hex_len(&self) -> usize {
        match self.store_host {
            SocketAddr::V4(_) => OFFSET_MSG_ID_V4_LEN,
            SocketAddr::V6(_) => OFFSET_MSG_ID_V6_LEN,
        }
    }

    /// Appends the id to `out` without intermediate allocation.
    pub fn write_to(&self, out: &mut String) {
        let mut raw = [0u8; 28];
        let len = match self.store_host {
            SocketAddr::V4(a) => {
                raw[..4].copy_from_slice(&a.ip().octets());
                raw[4..8].copy_from_slice(&u32::from(a.port()).to_be_bytes());
                raw[8..16].copy_from_slice(&self.physical_offset.to_be_bytes());
                16
            }
            SocketAddr::V6(a) => {
                raw[..16].copy_from_slice(&a.ip().octets());
                raw[16..20].copy_from_slice(&u32::from(a.port()).to_be_bytes());
                raw[20..28].copy_from_slice(&self.physical_offset.to_be_bytes());
                28
            }
        };
        write_hex_upper(&raw[..len], out);
    }

    /// Parses an id (either hex case). 32 chars mean IPv4, 56 IPv6; anything else is an error.
    pub fn parse(id: &str) -> Result<Self> {
        let hex = id.as_bytes();
        let ip_len = match hex.len() {
            OFFSET_MSG_ID_V4_LEN => 4,
            OFFSET_MSG_ID_V6_LEN => 16,
            n => {
                return Err(ProtocolError::InvalidMessageId(format!(
                    "offsetMsgId must be 32 or 56 hex chars, got {n}"
                )))
            }
        };
        let mut raw = [0u8; 28];
        let raw = &mut raw[..ip_len + 12];
        decode_hex_into(hex, raw)?;
        let mut port_bytes = [0u8; 4];
        port_bytes.copy_from_slice(&raw[ip_len..ip_len + 4]);
        let port = u16::try_from(i32::from_be_bytes(port_bytes)).map_err(|_| {
            ProtocolError::InvalidMessageId(format!(
                "port {} out of range",
                i32::from_be_bytes(port_bytes)
            ))
        })?;
        let mut offset_bytes = [0u8; 8];
        offset_bytes.copy_from_slice(&raw[ip_len + 4..ip_len + 12]);
        let physical_offset = i64::from_be_bytes(offset_bytes);
        let store_host = if ip_len == 4 {
            let mut ip = [0u8; 4];
            ip.copy_from_slice(&raw[..4]);
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))
        } else {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&raw[..16]);
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
        };
        Ok(Self {
            store_host,
            physical_offset,
        })
    }
}

impl fmt::Display for OffsetMsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(self.hex_len());
        self.write_to(&mut out);
        f.write_str(&out)
    }
}

impl FromStr for OffsetMsgId {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// The offsetMsgId of a record stored at `physical_offset` on `store_host`.
pub fn offset_msg_id(store_host: SocketAddr, physical_offset: i64) -> String {
    OffsetMsgId::new(store_host, physical_offset).to_string()
}

const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 → (year, month 1..=12). Proleptic Gregorian, any sign.
fn civil_from_days(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// (year, month 1..=12, day) → days since 1970-01-01.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Epoch milliseconds of 00:00:00.000 UTC on the first day of the month containing `now_ms`.
pub fn month_start_utc_ms(now_ms: i64) -> i64 {
    let (year, month) = civil_from_days(now_ms.div_euclid(MS_PER_DAY));
    days_from_civil(year, month, 1) * MS_PER_DAY
}

/// Epoch milliseconds of the start of the month before the one starting at `month_start_ms`.
fn previous_month_start_utc_ms(month_start_ms: i64) -> i64 {
    month_start_utc_ms(month_start_ms - 1)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Hex length of a `UNIQ_KEY` made on an IPv4 host (16 bytes).
pub const UNIQ_ID_V4_LEN: usize = 32;
/// Hex length of a `UNIQ_KEY` made on an IPv6 host (28 bytes).
pub const UNIQ_ID_V6_LEN: usize = 56;

/// Makes `UNIQ_KEY` ids. One per process is enough; it is shared across threads (`&self` methods,
/// an atomic counter, no locks).
#[derive(Debug)]
pub struct UniqIdGenerator {
    prefix: String,
    counter: AtomicU32,
}

impl UniqIdGenerator {
    /// A generator with an explicit prefix: `ip` (IPv4-mapped addresses become IPv4), `pid`
    /// (Java keeps its low 16 bits) and `discriminator` (Java: the class loader's hash code).
    pub fn with_prefix(ip: IpAddr, pid: u32, discriminator: i32) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let mut raw = Vec::with_capacity(22);
        match ip {
            IpAddr::V4(v4) => raw.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => raw.extend_from_slice(&v6.octets()),
        }
        raw.extend_from_slice(&(pid as u16).to_be_bytes());
        raw.extend_from_slice(&discriminator.to_be_bytes());
        Self {
            prefix: hex_upper(&raw),
            counter: AtomicU32::new(0),
        }
    }

    /// A generator for this process: this pid and a random discriminator. Without an address,
    /// uses a fake IPv4 made of the low 4 bytes of the current time, as Java does.
    pub fn new(ip: Option<IpAddr>) -> Self {
        let ip = ip.unwrap_or_else(|| {
            let t = now_ms().to_be_bytes();
            IpAddr::V4(Ipv4Addr::new(t[4], t[5], t[6], t[7]))
        });
        let discriminator = RandomState::new().build_hasher().finish() as i32;
        Self::with_prefix(ip, std::process::id(), discriminator)
    }

    /// The fixed hex prefix (20 or 44 chars).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A new id stamped with the current time.
    pub fn next_id(&self) -> String {
        self.next_id_at(now_ms())
    }

    /// A new id stamped with `now_ms` (epoch milliseconds).
    pub fn next_id_at(&self, now_ms: i64) -> String {
        // Java stores (int)(now - monthStart); a month is < 2^32 ms, so the low 32 bits suffice.
        let since_month_ms = (now_ms - month_start_utc_ms(now_ms)) as u32;
        let counter = self.counter.fetch_add(1, Ordering::Relaxed) as u16;
        let mut tail = [0u8; 6];
        tail[..4].copy_from_slice(&since_month_ms.to_be_bytes());
        tail[4..].copy_from_slice(&counter.to_be_bytes());
        let mut id = String::with_capacity(self.prefix.len() + 12);
        id.push_str(&self.prefix);
        write_hex_upper(&tail, &mut id);
        id
    }
}

/// The fields of a `UNIQ_KEY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UniqIdParts {
    pub ip: IpAddr,
    /// Low 16 bits of the producer's pid.
    pub pid: u16,
    pub discriminator: i32,
    /// Milliseconds since the start of the month the id was made in.
    pub since_month_ms: u32,
    pub counter: u16,
}

impl UniqIdParts {
    /// Parses a 32- or 56-char id (either hex case).
    pub fn parse(id: &str) -> Result<Self> {
        let hex = id.as_bytes();
        let ip_len = match hex.len() {
            UNIQ_ID_V4_LEN => 4,
            UNIQ_ID_V6_LEN => 16,
            n => {
                return Err(ProtocolError::InvalidMessageId(format!(
                    "UNIQ_KEY must be 32 or 56 hex chars, got {n}"
                )))
            }
        };
        let mut raw = [0u8; 28];
        let raw = &mut raw[..ip_len + 12];
        decode_hex_into(hex, raw)?;
        let ip = if ip_len == 4 {
            let mut ip = [0u8; 4];
            ip.copy_from_slice(&raw[..4]);
            IpAddr::V4(Ipv4Addr::from(ip))
        } else {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&raw[..16]);
            IpAddr::V6(Ipv6Addr::from(ip))
        };
        let rest = &raw[ip_len..];
        Ok(Self {
            ip,
            pid: u16::from_be_bytes([rest[0], rest[1]]),
            discriminator: i32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]),
            since_month_ms: u32::from_be_bytes([rest[6], rest[7], rest[8], rest[9]]),
            counter: u16::from_be_bytes([rest[10], rest[11]]),
        })
    }

    /// The approximate creation time in epoch ms, judged from `now_ms` as Java's
    /// `getNearlyTimeFromID` does: this month, or last month if that would be in the future.
    pub fn nearly_time_ms(&self, now_ms: i64) -> i64 {
        let span = i64::from(self.since_month_ms);
        let mut month_start = month_start_utc_ms(now_ms);
        if month_start + span >= now_ms {
            month_start = previous_month_start_utc_ms(month_start);
        }
        month_start + span
    }
}

/// The approximate creation time (epoch ms) of a `UNIQ_KEY`, relative to `now_ms`.
pub fn uniq_id_nearly_time_ms(id: &str, now_ms: i64) -> Result<i64> {
    Ok(UniqIdParts::parse(id)?.nearly_time_ms(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port))
    }

    #[test]
    fn offset_msg_id_golden_for_ipv4() {
        // 10.0.0.1 | port 10911 (0x2A9F) as an int | offset 138 (0x8A) as a long.
        let id = OffsetMsgId::new(v4([10, 0, 0, 1], 10911), 138);
        assert_eq!(id.to_string(), "0A00000100002A9F000000000000008A");
        assert_eq!(
            offset_msg_id(v4([192, 168, 1, 20], 10911), 0x1234_5678_9ABC),
            "C0A8011400002A9F0000123456789ABC"
        );
    }

    #[test]
    fn offset_msg_id_golden_for_ipv6() {
        let host = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 10911, 0, 0));
        let id = OffsetMsgId::new(host, 1 << 40);
        let text = id.to_string();
        assert_eq!(text.len(), 56);
        assert_eq!(
            text,
            "0000000000000000000000000000000100002A9F0000010000000000"
        );
        assert_eq!(OffsetMsgId::parse(&text).unwrap(), id);
    }

    #[test]
    fn offset_msg_id_round_trips_and_accepts_lower_case() {
        for id in [
            OffsetMsgId::new(v4([127, 0, 0, 1], 0), 0),
            OffsetMsgId::new(v4([255, 255, 255, 255], 65535), i64::MAX),
            OffsetMsgId::new(v4([1, 2, 3, 4], 8080), -1),
        ] {
            let text = id.to_string();
            assert_eq!(text, text.to_uppercase());
            assert_eq!(text.parse::<OffsetMsgId>().unwrap(), id);
            assert_eq!(OffsetMsgId::parse(&text.to_lowercase()).unwrap(), id);
        }
    }

    #[test]
    fn offset_msg_id_parse_rejects_bad_length_chars_and_port() {
        assert!(OffsetMsgId::parse("").is_err());
        assert!(OffsetMsgId::parse("0A00000100002A9F000000000000008").is_err());
        assert!(OffsetMsgId::parse("0A00000100002A9F000000000000008G").is_err());
        // Multi-byte UTF-8 of the right byte length must not panic.
        assert!(OffsetMsgId::parse("ééééééééééééééééAAAAAAAAAAAAAAAA").is_err());
        // Port 0x00010000 does not fit a port.
        assert!(OffsetMsgId::parse("0A00000100010000000000000000008A").is_err());
    }

    #[test]
    fn normalize_host_turns_ipv4_mapped_into_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:10911".parse().unwrap();
        assert_eq!(normalize_host(mapped), v4([10, 0, 0, 1], 10911));
        let real_v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        assert_eq!(normalize_host(real_v6), real_v6);
        assert_eq!(normalize_host(v4([1, 2, 3, 4], 5)), v4([1, 2, 3, 4], 5));
    }

    #[test]
    fn month_start_is_computed_in_utc() {
        // 2024-02-15T12:00:00Z → 2024-02-01T00:00:00Z.
        assert_eq!(month_start_utc_ms(1_707_998_400_000), 1_706_745_600_000);
        // Exactly on the boundary, and one ms before it (2023-12-31T23:59:59.999Z).
        assert_eq!(month_start_utc_ms(1_704_067_200_000), 1_704_067_200_000);
        assert_eq!(
            previous_month_start_utc_ms(1_704_067_200_000),
            1_701_388_800_000
        );
        assert_eq!(month_start_utc_ms(1_704_067_199_999), 1_701_388_800_000);
        // Leap day 2024-02-29 belongs to February; 2024-03-01 starts March.
        assert_eq!(month_start_utc_ms(1_709_251_200_000 - 1), 1_706_745_600_000);
        assert_eq!(month_start_utc_ms(1_709_251_200_000), 1_709_251_200_000);
        // Before the epoch: 1969-12-15 → 1969-12-01.
        assert_eq!(month_start_utc_ms(-1_468_800_000), -2_678_400_000);
    }

    #[test]
    fn uniq_id_has_the_java_layout() {
        let generator =
            UniqIdGenerator::with_prefix(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 0x1_2345, -2);
        assert_eq!(generator.prefix(), "7F0000012345FFFFFFFE");
        // 2024-02-15T12:00:00.000Z is 14.5 days = 1_252_800_000 ms (0x4AAC_3600) into February.
        let id = generator.next_id_at(1_707_998_400_000);
        assert_eq!(id, "7F0000012345FFFFFFFE4AAC36000000");
        let id2 = generator.next_id_at(1_707_998_400_000);
        assert_eq!(&id2[28..], "0001");
    }

    #[test]
    fn uniq_id_is_32_upper_hex_unique_and_keeps_its_prefix() {
        let generator = UniqIdGenerator::new(Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))));
        let prefix = generator.prefix().to_owned();
        assert_eq!(prefix.len(), 20);
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = generator.next_id();
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
                "{id}"
            );
            assert!(id.starts_with(&prefix));
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn uniq_id_generator_is_shared_across_threads_without_duplicates() {
        let generator = Arc::new(UniqIdGenerator::new(None));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let g = Arc::clone(&generator);
                std::thread::spawn(move || {
                    (0..2000).map(|_| g.next_id_at(1_000)).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for h in handles {
            for id in h.join().unwrap() {
                assert!(seen.insert(id));
            }
        }
        assert_eq!(seen.len(), 8000);
    }

    #[test]
    fn uniq_id_counter_wraps_after_65536_ids() {
        let generator = UniqIdGenerator::with_prefix(IpAddr::V4(Ipv4Addr::LOCALHOST), 1, 1);
        generator
            .counter
            .store(u32::from(u16::MAX), Ordering::Relaxed);
        assert!(generator.next_id_at(0).ends_with("FFFF"));
        assert!(generator.next_id_at(0).ends_with("0000"));
    }

    #[test]
    fn uniq_id_with_ipv6_host_is_56_chars_and_parses_back() {
        let ip: IpAddr = "2001:db8::7".parse().unwrap();
        let generator = UniqIdGenerator::with_prefix(ip, 77, 5);
        let id = generator.next_id_at(1_707_998_400_123);
        assert_eq!(id.len(), 56);
        let parts = UniqIdParts::parse(&id).unwrap();
        assert_eq!(parts.ip, ip);
        assert_eq!(parts.pid, 77);
        assert_eq!(parts.discriminator, 5);
        assert_eq!(parts.since_month_ms, 1_252_800_123);
        assert_eq!(parts.counter, 0);
        // An IPv4-mapped address is written as IPv4, as Java would see it.
        let mapped = UniqIdGenerator::with_prefix("::ffff:1.2.3.4".parse().unwrap(), 1, 1);
        assert_eq!(&mapped.prefix()[..8], "01020304");
    }

    #[test]
    fn uniq_id_nearly_time_recovers_the_creation_time() {
        let generator = UniqIdGenerator::with_prefix(IpAddr::V4(Ipv4Addr::LOCALHOST), 1, 1);
        let made_ms = 1_707_998_400_123; // 2024-02-15T12:00:00.123Z
        let id = generator.next_id_at(made_ms);
        // Read later the same month.
        assert_eq!(
            uniq_id_nearly_time_ms(&id, made_ms + 3_600_000).unwrap(),
            made_ms
        );
        // Read early next month: the span would lie in the future, so it is last month's.
        assert_eq!(
            uniq_id_nearly_time_ms(&id, 1_709_251_200_000 + 1000).unwrap(),
            made_ms
        );
    }

    #[test]
    fn uniq_id_parse_rejects_bad_input() {
        assert!(UniqIdParts::parse("").is_err());
        assert!(UniqIdParts::parse("7F0000012345FFFFFFFE4AAC6A00000").is_err());
        assert!(UniqIdParts::parse("7F0000012345FFFFFFFE4AAC6A00000Z").is_err());
    }
}
