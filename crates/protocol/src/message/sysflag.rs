//! `MessageSysFlag`: the bit set stored in a record's SYSFLAG field and carried in the send header's
//! `sysFlag`. It says whether the body is compressed (and how), the transaction state, whether the
//! born and store hosts are IPv6 (which changes the record layout), and the inner-batch marks.

use crate::error::Result;
use crate::message::compression::CompressionType;

/// Bit 0: the body is compressed; bits 8..=10 say with what (0 means ZLIB, the pre-5.x default).
pub const COMPRESSED_FLAG: i32 = 0x1;
/// Set by the broker when the topic's filter type is MULTI_TAG.
pub const MULTI_TAGS_FLAG: i32 = 0x1 << 1;

/// Bits 2..=3: the transaction type.
pub const TRANSACTION_NOT_TYPE: i32 = 0;
pub const TRANSACTION_PREPARED_TYPE: i32 = 0x1 << 2;
pub const TRANSACTION_COMMIT_TYPE: i32 = 0x2 << 2;
pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0x3 << 2;
/// Mask of the transaction type bits (equal to the rollback value, as in Java).
pub const TRANSACTION_TYPE_MASK: i32 = TRANSACTION_ROLLBACK_TYPE;

/// BORNHOST is 16 address bytes + 4 port bytes instead of 4 + 4.
pub const BORNHOST_V6_FLAG: i32 = 0x1 << 4;
/// STOREHOST is 16 address bytes + 4 port bytes instead of 4 + 4.
pub const STOREHOSTADDRESS_V6_FLAG: i32 = 0x1 << 5;
/// Inner batch: the body still holds several messages to unwrap.
pub const NEED_UNWRAP_FLAG: i32 = 0x1 << 6;
/// Inner batch: stored as one record with a batch consume queue.
pub const INNER_BATCH_FLAG: i32 = 0x1 << 7;

/// Compression type bits (8..=10).
pub const COMPRESSION_LZ4_TYPE: i32 = 0x1 << 8;
pub const COMPRESSION_ZSTD_TYPE: i32 = 0x2 << 8;
pub const COMPRESSION_ZLIB_TYPE: i32 = 0x3 << 8;
/// Mask of the compression type bits (Java's `COMPRESSION_TYPE_COMPARATOR`).
pub const COMPRESSION_TYPE_MASK: i32 = 0x7 << 8;
/// Shift that turns the masked bits into the type value (1 LZ4, 2 ZSTD, 3 ZLIB).
pub const COMPRESSION_TYPE_SHIFT: u32 = 8;

/// Both host-family bits; the record codec derives them from the hosts themselves.
pub const HOST_V6_FLAGS: i32 = BORNHOST_V6_FLAG | STOREHOSTADDRESS_V6_FLAG;

/// Transaction state held in bits 2..=3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TransactionType {
    #[default]
    NotType,
    Prepared,
    Commit,
    Rollback,
}

impl TransactionType {
    /// The type encoded in `sys_flag` (every value of the two bits is a valid type).
    pub const fn from_sys_flag(sys_flag: i32) -> Self {
        match sys_flag & TRANSACTION_TYPE_MASK {
            TRANSACTION_PREPARED_TYPE => TransactionType::Prepared,
            TRANSACTION_COMMIT_TYPE => TransactionType::Commit,
            TRANSACTION_ROLLBACK_TYPE => TransactionType::Rollback,
            _ => TransactionType::NotType,
        }
    }

    /// The bits of this type, already shifted into place.
    pub const fn bits(self) -> i32 {
        match self {
            TransactionType::NotType => TRANSACTION_NOT_TYPE,
            TransactionType::Prepared => TRANSACTION_PREPARED_TYPE,
            TransactionType::Commit => TRANSACTION_COMMIT_TYPE,
            TransactionType::Rollback => TRANSACTION_ROLLBACK_TYPE,
        }
    }
}

/// The raw transaction bits of `sys_flag` (Java's `getTransactionValue`).
pub const fn transaction_value(sys_flag: i32) -> i32 {
    sys_flag & TRANSACTION_TYPE_MASK
}

/// `sys_flag` with its transaction bits replaced by `transaction_bits` (Java's `resetTransactionValue`).
pub const fn reset_transaction_value(sys_flag: i32, transaction_bits: i32) -> i32 {
    (sys_flag & !TRANSACTION_TYPE_MASK) | (transaction_bits & TRANSACTION_TYPE_MASK)
}

/// `sys_flag` with `ty` as its transaction type.
pub const fn with_transaction_type(sys_flag: i32, ty: TransactionType) -> i32 {
    reset_transaction_value(sys_flag, ty.bits())
}

pub const fn is_compressed(sys_flag: i32) -> bool {
    sys_flag & COMPRESSED_FLAG != 0
}

/// Clears bit 0 only, as consumers do after decompressing; the type bits are left alone, like Java.
pub const fn clear_compressed_flag(sys_flag: i32) -> i32 {
    sys_flag & !COMPRESSED_FLAG
}

/// `sys_flag` marked as compressed with `ty` (bit 0 set, type bits replaced).
pub const fn with_compression(sys_flag: i32, ty: CompressionType) -> i32 {
    (sys_flag & !COMPRESSION_TYPE_MASK) | COMPRESSED_FLAG | ty.sys_flag_bits()
}

/// The compression of a body carrying `sys_flag`: `None` when bit 0 is clear, ZLIB when the type
/// bits are 0 (legacy producers), an error for the unassigned type values 4..=7.
pub fn compression_type(sys_flag: i32) -> Result<Option<CompressionType>> {
    CompressionType::from_sys_flag(sys_flag)
}

pub const fn born_host_is_v6(sys_flag: i32) -> bool {
    sys_flag & BORNHOST_V6_FLAG != 0
}

pub const fn store_host_is_v6(sys_flag: i32) -> bool {
    sys_flag & STOREHOSTADDRESS_V6_FLAG != 0
}

pub const fn is_inner_batch(sys_flag: i32) -> bool {
    sys_flag & INNER_BATCH_FLAG != 0
}

pub const fn needs_unwrap(sys_flag: i32) -> bool {
    sys_flag & NEED_UNWRAP_FLAG != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysflag_bits_have_rocketmq_values() {
        assert_eq!(COMPRESSED_FLAG, 0x1);
        assert_eq!(MULTI_TAGS_FLAG, 0x2);
        assert_eq!(
            [
                TRANSACTION_NOT_TYPE,
                TRANSACTION_PREPARED_TYPE,
                TRANSACTION_COMMIT_TYPE,
                TRANSACTION_ROLLBACK_TYPE
            ],
            [0x0, 0x4, 0x8, 0xC]
        );
        assert_eq!(BORNHOST_V6_FLAG, 0x10);
        assert_eq!(STOREHOSTADDRESS_V6_FLAG, 0x20);
        assert_eq!(NEED_UNWRAP_FLAG, 0x40);
        assert_eq!(INNER_BATCH_FLAG, 0x80);
        assert_eq!(
            [
                COMPRESSION_LZ4_TYPE,
                COMPRESSION_ZSTD_TYPE,
                COMPRESSION_ZLIB_TYPE,
                COMPRESSION_TYPE_MASK
            ],
            [0x100, 0x200, 0x300, 0x700]
        );
    }

    #[test]
    fn transaction_type_round_trips_through_the_sysflag_and_keeps_other_bits() {
        for ty in [
            TransactionType::NotType,
            TransactionType::Prepared,
            TransactionType::Commit,
            TransactionType::Rollback,
        ] {
            let flag = with_transaction_type(COMPRESSED_FLAG | BORNHOST_V6_FLAG | 0xC, ty);
            assert_eq!(TransactionType::from_sys_flag(flag), ty);
            assert_eq!(
                flag & !TRANSACTION_TYPE_MASK,
                COMPRESSED_FLAG | BORNHOST_V6_FLAG
            );
        }
        assert_eq!(transaction_value(0x1 | 0x8), 0x8);
        assert_eq!(reset_transaction_value(0x4 | 0x100, 0x8), 0x8 | 0x100);
    }

    #[test]
    fn compression_type_follows_the_type_bits_with_legacy_zlib_for_zero() {
        assert_eq!(compression_type(0).unwrap(), None);
        // Type bits without bit 0 mean "not compressed".
        assert_eq!(compression_type(COMPRESSION_LZ4_TYPE).unwrap(), None);
        assert_eq!(
            compression_type(COMPRESSED_FLAG).unwrap(),
            Some(CompressionType::Zlib)
        );
        assert_eq!(compression_type(0x101).unwrap(), Some(CompressionType::Lz4));
        assert_eq!(
            compression_type(0x201).unwrap(),
            Some(CompressionType::Zstd)
        );
        // 769 = 0x301 is what a Java producer sends for a ZLIB body (reference §10.2).
        assert_eq!(compression_type(769).unwrap(), Some(CompressionType::Zlib));
        for bad in 4..=7 {
            assert!(compression_type(COMPRESSED_FLAG | (bad << 8)).is_err());
        }
    }

    #[test]
    fn with_compression_sets_bit_zero_and_replaces_the_type_bits() {
        let flag = with_compression(
            COMPRESSION_TYPE_MASK | INNER_BATCH_FLAG,
            CompressionType::Zstd,
        );
        assert_eq!(
            flag,
            COMPRESSED_FLAG | COMPRESSION_ZSTD_TYPE | INNER_BATCH_FLAG
        );
        assert!(is_compressed(flag));
        let cleared = clear_compressed_flag(flag);
        assert!(!is_compressed(cleared));
        assert_eq!(cleared & COMPRESSION_TYPE_MASK, COMPRESSION_ZSTD_TYPE);
    }

    #[test]
    fn host_and_batch_predicates_read_their_bits() {
        assert!(born_host_is_v6(0x10) && !store_host_is_v6(0x10));
        assert!(store_host_is_v6(0x20) && !born_host_is_v6(0x20));
        assert!(is_inner_batch(0x80) && !needs_unwrap(0x80));
        assert!(needs_unwrap(0x40));
    }
}
