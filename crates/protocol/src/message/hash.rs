//! Java's `String.hashCode`, which RocketMQ uses as the tag code stored in consume-queue entries and
//! as the key hash of the index file. It runs over UTF-16 code units with wrapping `int` arithmetic,
//! so non-BMP characters count as two units, exactly as in Java.

/// `s.hashCode()` as Java computes it: `h = 31 * h + c` over UTF-16 code units, wrapping at 32 bits.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The tag code of a message: 0 when it has no tag (absent or empty), else the Java hash of the tag
/// string, sign-extended to the 8-byte consume-queue field.
pub fn tags_code(tags: Option<&str>) -> i64 {
    match tags {
        None | Some("") => 0,
        Some(tags) => i64::from(java_string_hash(tags)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_known_values() {
        // h = 84; 84*31+97 = 2701; 2701*31+103 = 83834; 83834*31+65 = 2598919.
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        // Well-known Java values.
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("Hello World"), -862_545_276);
    }

    #[test]
    fn java_hash_wraps_like_a_java_int() {
        // "polygenelubricants".hashCode() is the classic Integer.MIN_VALUE example.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn java_hash_counts_utf16_units_not_bytes_or_chars() {
        // U+00E9 is one unit (233) though two UTF-8 bytes.
        assert_eq!(java_string_hash("\u{e9}"), 233);
        // U+1F600 is the surrogate pair D83D DE00: 0xD83D * 31 + 0xDE00.
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
        assert_eq!(java_string_hash("中"), 0x4E2D);
    }

    #[test]
    fn tags_code_is_zero_without_a_tag_and_sign_extended_otherwise() {
        assert_eq!(tags_code(None), 0);
        assert_eq!(tags_code(Some("")), 0);
        assert_eq!(tags_code(Some("TagA")), 2_598_919);
        assert_eq!(tags_code(Some("polygenelubricants")), -2_147_483_648i64);
        assert_eq!(tags_code(Some("Hello World")), -862_545_276i64);
    }
}
