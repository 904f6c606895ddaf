//! Body compression as RocketMQ producers apply it: ZLIB (java.util.zip Deflater, zlib-wrapped
//! deflate), LZ4 in the *frame* format (lz4-java's `LZ4FrameOutputStream`) and ZSTD frames
//! (zstd-jni streams). The sysflag's type bits say which one a body uses.
//!
//! Decompression reads at most a caller-chosen number of output bytes, so a small hostile body
//! cannot expand into gigabytes.

use std::borrow::Cow;
use std::io::{Read, Write};

use crate::error::{ProtocolError, Result};
use crate::message::sysflag;

/// `compressMsgBodyOverHowmuch`: Java producers compress non-batch bodies of at least this size.
pub const DEFAULT_COMPRESS_OVER_BYTES: usize = 4096;
/// Java producers' default `compressLevel`.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 5;

/// The body codecs RocketMQ knows. ZLIB is also what a compressed body with type bits 0 means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompressionType {
    Lz4,
    Zstd,
    Zlib,
}

impl CompressionType {
    /// The value Java's `CompressionType` carries (1 LZ4, 2 ZSTD, 3 ZLIB).
    pub const fn value(self) -> i32 {
        match self {
            CompressionType::Lz4 => 1,
            CompressionType::Zstd => 2,
            CompressionType::Zlib => 3,
        }
    }

    pub fn from_value(value: i32) -> Result<Self> {
        match value {
            1 => Ok(CompressionType::Lz4),
            2 => Ok(CompressionType::Zstd),
            3 => Ok(CompressionType::Zlib),
            other => Err(ProtocolError::Compression(format!(
                "unknown compression type value {other}"
            ))),
        }
    }

    /// The bits this type occupies in a sysflag (`value << 8`).
    pub const fn sys_flag_bits(self) -> i32 {
        self.value() << sysflag::COMPRESSION_TYPE_SHIFT
    }

    /// The name Java uses (`rocketmq.message.compressType`).
    pub const fn name(self) -> &'static str {
        match self {
            CompressionType::Lz4 => "LZ4",
            CompressionType::Zstd => "ZSTD",
            CompressionType::Zlib => "ZLIB",
        }
    }

    /// Parses a Java `compressType` name, case-insensitively.
    pub fn from_name(name: &str) -> Result<Self> {
        [
            CompressionType::Lz4,
            CompressionType::Zstd,
            CompressionType::Zlib,
        ]
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| ProtocolError::Compression(format!("unknown compression type {name:?}")))
    }

    /// The codec of a body with `sys_flag`: `None` unless bit 0 is set; type bits 0 mean ZLIB.
    pub fn from_sys_flag(sys_flag: i32) -> Result<Option<Self>> {
        if !sysflag::is_compressed(sys_flag) {
            return Ok(None);
        }
        let value = (sys_flag & sysflag::COMPRESSION_TYPE_MASK) >> sysflag::COMPRESSION_TYPE_SHIFT;
        if value == 0 {
            return Ok(Some(CompressionType::Zlib));
        }
        Self::from_value(value).map(Some)
    }

    /// Compresses `data`. `level` is clamped to each codec's range (ZLIB 0..=9, ZSTD 1..=22) and
    /// ignored by LZ4, whose Java codec has no level either.
    pub fn compress(self, data: &[u8], level: i32) -> Result<Vec<u8>> {
        let io_err =
            |e: std::io::Error| ProtocolError::Compression(format!("{}: {e}", self.name()));
        match self {
            CompressionType::Zlib => {
                let level = level.clamp(0, 9) as u32;
                let mut encoder = flate2::write::ZlibEncoder::new(
                    Vec::with_capacity(data.len() / 2 + 16),
                    flate2::Compression::new(level),
                );
                encoder.write_all(data).map_err(io_err)?;
                encoder.finish().map_err(io_err)
            }
            CompressionType::Lz4 => {
                let mut encoder =
                    lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(data.len() / 2 + 32));
                encoder.write_all(data).map_err(io_err)?;
                encoder
                    .finish()
                    .map_err(|e| ProtocolError::Compression(format!("LZ4: {e}")))
            }
            CompressionType::Zstd => {
                zstd::stream::encode_all(data, level.clamp(1, 22)).map_err(io_err)
            }
        }
    }

    /// Decompresses `data`, failing (never panicking) on empty, corrupt or truncated input and
    /// when the output would exceed `max_output_bytes`.
    pub fn decompress(self, data: &[u8], max_output_bytes: usize) -> Result<Vec<u8>> {
        let io_err =
            |e: std::io::Error| ProtocolError::Compression(format!("{}: {e}", self.name()));
        if data.is_empty() {
            // Every codec's output has a header, so nothing at all is never a compressed body.
            return Err(ProtocolError::Compression(format!(
                "{}: empty input",
                self.name()
            )));
        }
        match self {
            CompressionType::Zlib => zlib_decompress(data, max_output_bytes),
            CompressionType::Lz4 => lz4_decompress(data, max_output_bytes),
            CompressionType::Zstd => {
                let decoder = zstd::stream::read::Decoder::with_buffer(data).map_err(io_err)?;
                read_limited(decoder, max_output_bytes, data.len(), self)
            }
        }
    }
}

impl std::fmt::Display for CompressionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads all of `reader`, refusing more than `max_output_bytes`.
fn read_limited<R: Read>(
    reader: R,
    max_output_bytes: usize,
    input_len: usize,
    ty: CompressionType,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(input_len.saturating_mul(4).min(max_output_bytes));
    let limit = u64::try_from(max_output_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| ProtocolError::Compression(format!("{}: {e}", ty.name())))?;
    if out.len() > max_output_bytes {
        return Err(over_limit(ty, max_output_bytes));
    }
    Ok(out)
}

fn over_limit(ty: CompressionType, max_output_bytes: usize) -> ProtocolError {
    ProtocolError::Compression(format!(
        "{}: decompressed body exceeds the limit of {max_output_bytes} bytes",
        ty.name()
    ))
}

/// Inflates a zlib stream, requiring its end (Adler-32 trailer included), as Java's
/// `InflaterInputStream` does; `flate2`'s readers would accept a cut stream as a short one.
fn zlib_decompress(data: &[u8], max_output_bytes: usize) -> Result<Vec<u8>> {
    let ty = CompressionType::Zlib;
    let limit = max_output_bytes.saturating_add(1);
    let mut inflater = flate2::Decompress::new(true);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).clamp(64, limit.max(64)));
    loop {
        if out.len() == out.capacity() {
            if out.len() >= limit {
                return Err(over_limit(ty, max_output_bytes));
            }
            out.reserve_exact(out.capacity().max(64).min(limit - out.len()));
        }
        let before = (inflater.total_in(), inflater.total_out());
        let consumed = usize::try_from(before.0).unwrap_or(usize::MAX);
        let input = data.get(consumed..).unwrap_or_default();
        let status = inflater
            .decompress_vec(input, &mut out, flate2::FlushDecompress::None)
            .map_err(|e| ProtocolError::Compression(format!("ZLIB: {e}")))?;
        if out.len() > max_output_bytes {
            return Err(over_limit(ty, max_output_bytes));
        }
        match status {
            flate2::Status::StreamEnd => return Ok(out),
            flate2::Status::Ok | flate2::Status::BufError => {
                let stalled = (inflater.total_in(), inflater.total_out()) == before;
                if stalled && out.len() < out.capacity() {
                    return Err(ProtocolError::Compression("ZLIB: truncated stream".into()));
                }
            }
        }
    }
}

const LZ4_FRAME_MAGIC: u32 = 0x184D_2204;

/// Length of the LZ4 frame at the start of `data`, found by walking its structure (header, block
/// sizes, end mark, checksums) without decompressing. Fails if `data` is not an LZ4 frame or ends
/// inside one.
fn lz4_frame_len(data: &[u8]) -> Result<usize> {
    let truncated = || ProtocolError::Compression("LZ4: truncated frame".into());
    let le_u32 = |pos: usize| -> Option<u32> {
        let b = data.get(pos..pos.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if le_u32(0).ok_or_else(truncated)? != LZ4_FRAME_MAGIC {
        return Err(ProtocolError::Compression("LZ4: not an LZ4 frame".into()));
    }
    let flags = *data.get(4).ok_or_else(truncated)?;
    if flags >> 6 != 0b01 {
        return Err(ProtocolError::Compression(
            "LZ4: unsupported frame version".into(),
        ));
    }
    let block_checksum = flags & 0x10 != 0;
    let content_size = flags & 0x08 != 0;
    let content_checksum = flags & 0x04 != 0;
    let dict_id = flags & 0x01 != 0;
    // Magic, FLG, BD, optional content size and dictionary id, header checksum.
    let mut pos = 4 + 2 + if content_size { 8 } else { 0 } + if dict_id { 4 } else { 0 } + 1;
    loop {
        let size = le_u32(pos).ok_or_else(truncated)?;
        pos += 4;
        if size == 0 {
            break;
        }
        let len = (size & 0x7FFF_FFFF) as usize + if block_checksum { 4 } else { 0 };
        pos = pos.checked_add(len).ok_or_else(truncated)?;
    }
    if content_checksum {
        pos += 4;
    }
    if pos > data.len() {
        return Err(truncated());
    }
    Ok(pos)
}

/// Decodes one or more LZ4 frames back to back (lz4-java reads concatenated frames too). The frame
/// reader treats a cut at a block boundary as a clean end, so each frame is checked whole first.
fn lz4_decompress(data: &[u8], max_output_bytes: usize) -> Result<Vec<u8>> {
    let ty = CompressionType::Lz4;
    let limit = u64::try_from(max_output_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(max_output_bytes));
    let mut rest = data;
    while !rest.is_empty() {
        let len = lz4_frame_len(rest)?;
        let (frame, tail) = rest.split_at(len);
        let room = limit.saturating_sub(out.len() as u64);
        lz4_flex::frame::FrameDecoder::new(frame)
            .take(room)
            .read_to_end(&mut out)
            .map_err(|e| ProtocolError::Compression(format!("LZ4: {e}")))?;
        if out.len() > max_output_bytes {
            return Err(over_limit(ty, max_output_bytes));
        }
        rest = tail;
    }
    Ok(out)
}

/// Compresses `body` with `ty` and returns it with the sysflag a producer would send.
pub fn compress_body(
    body: &[u8],
    sys_flag: i32,
    ty: CompressionType,
    level: i32,
) -> Result<(Vec<u8>, i32)> {
    let compressed = ty.compress(body, level)?;
    Ok((compressed, sysflag::with_compression(sys_flag, ty)))
}

/// The plain body of a message: decompressed when `sys_flag` says it is compressed, borrowed
/// otherwise.
pub fn decompress_body(
    body: &[u8],
    sys_flag: i32,
    max_output_bytes: usize,
) -> Result<Cow<'_, [u8]>> {
    match CompressionType::from_sys_flag(sys_flag)? {
        None => Ok(Cow::Borrowed(body)),
        Some(ty) => ty.decompress(body, max_output_bytes).map(Cow::Owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [CompressionType; 3] = [
        CompressionType::Lz4,
        CompressionType::Zstd,
        CompressionType::Zlib,
    ];

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect()
    }

    #[test]
    fn every_codec_round_trips_empty_small_and_large_bodies() {
        for ty in ALL {
            for len in [0usize, 1, 100, 5000, 300_000] {
                let data = sample(len);
                let compressed = ty.compress(&data, DEFAULT_COMPRESSION_LEVEL).unwrap();
                let back = ty.decompress(&compressed, len).unwrap();
                assert_eq!(back, data, "{ty} len {len}");
            }
        }
    }

    #[test]
    fn zlib_output_is_zlib_wrapped_like_java_deflater() {
        let compressed = CompressionType::Zlib
            .compress(b"hello hello hello", 5)
            .unwrap();
        // CMF 0x78 (deflate, 32 KiB window) and a header checksum divisible by 31.
        assert_eq!(compressed[0], 0x78);
        assert_eq!(
            (u16::from(compressed[0]) << 8 | u16::from(compressed[1])) % 31,
            0
        );
    }

    #[test]
    fn zlib_decodes_a_stream_made_by_java_deflater() {
        // new Deflater(5) over "hello": a plain zlib stream (fixed Huffman block + Adler-32).
        let java = [
            0x78, 0x5e, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x06, 0x2c, 0x02, 0x15,
        ];
        assert_eq!(
            CompressionType::Zlib.decompress(&java, 100).unwrap(),
            b"hello"
        );
    }

    #[test]
    fn lz4_output_is_a_frame_with_the_lz4_frame_magic() {
        let compressed = CompressionType::Lz4.compress(b"hello", 5).unwrap();
        assert_eq!(&compressed[..4], &[0x04, 0x22, 0x4D, 0x18]);
    }

    #[test]
    fn lz4_decodes_frames_laid_out_as_lz4_java_writes_them() {
        // LZ4FrameOutputStream defaults: FLG 0x60 (version 1, independent blocks), BD 0x70 (4 MiB
        // blocks), header checksum 0x73; "hello" does not compress, so one raw block (high bit).
        let plain = [
            0x04, 0x22, 0x4D, 0x18, 0x60, 0x70, 0x73, 0x05, 0x00, 0x00, 0x80, b'h', b'e', b'l',
            b'l', b'o', 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(
            CompressionType::Lz4.decompress(&plain, 100).unwrap(),
            b"hello"
        );
        // The same with a content checksum (FLG 0x64, HC 0xB9, XXH32("hello") = 0xFB0077F9).
        let checked = [
            0x04, 0x22, 0x4D, 0x18, 0x64, 0x70, 0xB9, 0x05, 0x00, 0x00, 0x80, b'h', b'e', b'l',
            b'l', b'o', 0x00, 0x00, 0x00, 0x00, 0xF9, 0x77, 0x00, 0xFB,
        ];
        assert_eq!(
            CompressionType::Lz4.decompress(&checked, 100).unwrap(),
            b"hello"
        );
        for cut in 0..checked.len() {
            assert!(
                CompressionType::Lz4
                    .decompress(&checked[..cut], 100)
                    .is_err(),
                "cut {cut}"
            );
        }
        let mut two_frames = plain.to_vec();
        two_frames.extend_from_slice(&plain);
        assert_eq!(
            CompressionType::Lz4.decompress(&two_frames, 100).unwrap(),
            b"hellohello"
        );
    }

    #[test]
    fn zstd_output_is_a_frame_with_the_zstd_magic() {
        let compressed = CompressionType::Zstd.compress(b"hello", 5).unwrap();
        assert_eq!(&compressed[..4], &[0x28, 0xB5, 0x2F, 0xFD]);
    }

    #[test]
    fn decompression_rejects_output_over_the_limit() {
        let data = vec![0u8; 1 << 20];
        for ty in ALL {
            let compressed = ty.compress(&data, 5).unwrap();
            assert!(compressed.len() < 64 * 1024, "{ty} compresses zeros well");
            let err = ty.decompress(&compressed, (1 << 20) - 1).unwrap_err();
            assert!(matches!(err, ProtocolError::Compression(_)), "{ty}: {err}");
            assert_eq!(ty.decompress(&compressed, 1 << 20).unwrap().len(), 1 << 20);
        }
    }

    #[test]
    fn decompression_of_garbage_or_truncated_input_is_an_error() {
        let data = sample(10_000);
        for ty in ALL {
            assert!(
                ty.decompress(b"definitely not compressed", 1 << 20)
                    .is_err(),
                "{ty}"
            );
            let compressed = ty.compress(&data, 5).unwrap();
            for cut in [0, 1, compressed.len() / 2, compressed.len() - 1] {
                let result = ty.decompress(&compressed[..cut], 1 << 20);
                assert!(result.is_err(), "{ty} cut at {cut} of {}", compressed.len());
            }
        }
    }

    #[test]
    fn decompression_never_panics_on_any_prefix_or_bit_flip() {
        let data = sample(3000);
        for ty in ALL {
            let compressed = ty.compress(&data, 5).unwrap();
            for cut in 0..compressed.len() {
                let _ = ty.decompress(&compressed[..cut], 1 << 16);
            }
            for i in 0..compressed.len() {
                let mut bad = compressed.clone();
                bad[i] ^= 0x5A;
                if let Ok(out) = ty.decompress(&bad, 1 << 16) {
                    assert!(out.len() <= 1 << 16);
                }
            }
        }
    }

    #[test]
    fn decompress_body_follows_the_sysflag() {
        let data = sample(6000);
        let (compressed, flag) = compress_body(&data, 0, CompressionType::Lz4, 5).unwrap();
        assert_eq!(flag, 0x101);
        assert_eq!(
            decompress_body(&compressed, flag, 10_000).unwrap().as_ref(),
            &data[..]
        );
        // Not compressed: handed back as is.
        assert!(matches!(
            decompress_body(&data, 0, 10).unwrap(),
            Cow::Borrowed(_)
        ));
        // Legacy: COMPRESSED with type bits 0 is ZLIB.
        let zlib = CompressionType::Zlib.compress(&data, 5).unwrap();
        assert_eq!(
            decompress_body(&zlib, sysflag::COMPRESSED_FLAG, 10_000)
                .unwrap()
                .as_ref(),
            &data[..]
        );
        assert!(decompress_body(&zlib, sysflag::COMPRESSED_FLAG | 0x400, 10_000).is_err());
    }

    #[test]
    fn names_and_values_match_java() {
        for ty in ALL {
            assert_eq!(CompressionType::from_value(ty.value()).unwrap(), ty);
            assert_eq!(
                CompressionType::from_name(&ty.name().to_lowercase()).unwrap(),
                ty
            );
        }
        assert_eq!(CompressionType::Zlib.sys_flag_bits(), 0x300);
        assert!(CompressionType::from_value(4).is_err());
        assert!(CompressionType::from_name("snappy").is_err());
    }
}
