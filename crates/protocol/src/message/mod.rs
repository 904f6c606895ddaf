//! Stored message records and everything a record carries: the byte layout RocketMQ appends to its
//! CommitLog and returns verbatim in pull, pop, query and view replies, the sysflag bits, the
//! properties string, SEND_BATCH_MESSAGE bodies, body compression, message ids and Java's hashes.
//!
//! Decoders here never panic on garbage: every length is checked against the bytes at hand.

pub mod batch;
pub mod compression;
pub mod hash;
pub mod id;
pub mod properties;
pub mod record;
pub mod sysflag;

pub use batch::{decode_batch, encode_batch, BatchEntry, BatchEntryView, BatchViews};
pub use compression::CompressionType;
pub use hash::{java_string_hash, tags_code};
pub use id::{normalize_host, OffsetMsgId, UniqIdGenerator, UniqIdParts};
pub use properties::{keys, MessageProperties};
pub use record::{MessageRecord, MessageVersion, RecordHead, RecordView, RecordViews, Records};
pub use sysflag::TransactionType;

/// CRC32 (IEEE) of `data` with the sign bit cleared, as RocketMQ's `UtilAll.crc32` stores it in
/// BODYCRC: Java keeps it in an `int` and masks with `0x7FFFFFFF` so it is never negative.
pub fn crc32_masked(data: &[u8]) -> u32 {
    crc32fast::hash(data) & 0x7FFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_masked_clears_the_sign_bit_of_the_ieee_crc() {
        // CRC32("123456789") = 0xCBF43926, the standard check value; masked it loses bit 31.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32_masked(b"123456789"), 0x4BF4_3926);
        assert_eq!(crc32_masked(b""), 0);
    }
}
