//! The body of SEND_BATCH_MESSAGE (reference §3.7): messages back to back, each
//!
//! ```text
//! TOTALSIZE i32 | MAGICCODE i32 (0) | BODYCRC i32 (0) | FLAG i32 | BODYLEN i32 + BODY | PROPLEN i16 + PROPERTIES
//! ```
//!
//! The store expands each entry into a full record using the batch's topic, queue and hosts.
//! Like RocketMQ's reader, decoding walks the entries by their length fields and does not insist
//! that TOTALSIZE agrees (it is exposed for logging); lengths are still bounds-checked.

use std::borrow::Cow;

use bytes::{BufMut, Bytes};

use crate::error::{ProtocolError, Result};
use crate::message::properties::{self, MessageProperties};
use crate::message::record::MAX_PROPERTIES_LEN;

/// Bytes of an entry besides its body and properties.
pub const BATCH_ENTRY_FIXED_LEN: usize = 4 + 4 + 4 + 4 + 4 + 2;

/// One message of a batch, owning its parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchEntry {
    pub flag: i32,
    pub body: Bytes,
    /// The raw properties string of this message.
    pub properties: Bytes,
}

impl BatchEntry {
    pub fn new(flag: i32, body: Bytes, properties: &MessageProperties) -> Self {
        Self {
            flag,
            body,
            properties: properties.to_bytes(),
        }
    }

    pub fn encoded_len(&self) -> usize {
        BATCH_ENTRY_FIXED_LEN + self.body.len() + self.properties.len()
    }

    fn check_encodable(&self) -> Result<usize> {
        if self.properties.len() > MAX_PROPERTIES_LEN {
            return Err(ProtocolError::InvalidBody(format!(
                "batch entry properties of {} bytes exceed {MAX_PROPERTIES_LEN}",
                self.properties.len()
            )));
        }
        let len = self.encoded_len();
        if len > i32::MAX as usize {
            return Err(ProtocolError::InvalidBody(format!(
                "batch entry of {len} bytes exceeds i32::MAX"
            )));
        }
        Ok(len)
    }

    /// Appends this entry; MAGICCODE and BODYCRC are written as 0, as Java producers do.
    pub fn encode_into<B: BufMut>(&self, buf: &mut B) -> Result<()> {
        let len = self.check_encodable()?;
        if buf.remaining_mut() < len {
            return Err(ProtocolError::Truncated {
                what: "output buffer for a batch entry",
                needed: len - buf.remaining_mut(),
            });
        }
        self.put(buf, len);
        Ok(())
    }

    fn put<B: BufMut>(&self, buf: &mut B, len: usize) {
        buf.put_i32(len as i32);
        buf.put_i32(0);
        buf.put_i32(0);
        buf.put_i32(self.flag);
        buf.put_i32(self.body.len() as i32);
        buf.put_slice(&self.body);
        buf.put_u16(self.properties.len() as u16);
        buf.put_slice(&self.properties);
    }

    pub fn properties_map(&self) -> MessageProperties {
        MessageProperties::decode(&self.properties)
    }

    pub fn property(&self, name: &str) -> Option<Cow<'_, str>> {
        properties::find_str(&self.properties, name)
    }
}

/// Bytes [`encode_batch`] writes for `entries`.
pub fn encoded_batch_len(entries: &[BatchEntry]) -> usize {
    entries.iter().map(BatchEntry::encoded_len).sum()
}

/// Appends a batch body. Checks every entry (and the room in `buf`) before writing anything.
pub fn encode_batch<B: BufMut>(entries: &[BatchEntry], buf: &mut B) -> Result<()> {
    let mut total = 0usize;
    for entry in entries {
        total = total.saturating_add(entry.check_encodable()?);
    }
    if buf.remaining_mut() < total {
        return Err(ProtocolError::Truncated {
            what: "output buffer for a batch body",
            needed: total - buf.remaining_mut(),
        });
    }
    for entry in entries {
        entry.put(buf, entry.encoded_len());
    }
    Ok(())
}

/// One entry of a batch body, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchEntryView<'a> {
    /// TOTALSIZE as the producer wrote it (not relied upon).
    pub declared_total_size: i32,
    pub flag: i32,
    pub body: &'a [u8],
    pub properties: &'a [u8],
    /// Bytes this entry occupies in the batch body.
    pub encoded_len: usize,
}

impl<'a> BatchEntryView<'a> {
    /// Parses the entry at the start of `buf`.
    pub fn parse(buf: &'a [u8]) -> Result<Self> {
        let mut pos = 0usize;
        let declared_total_size = read_i32(buf, &mut pos, "batch entry TOTALSIZE")?;
        let _magic = read_i32(buf, &mut pos, "batch entry MAGICCODE")?;
        let _body_crc = read_i32(buf, &mut pos, "batch entry BODYCRC")?;
        let flag = read_i32(buf, &mut pos, "batch entry FLAG")?;
        let body_len = read_i32(buf, &mut pos, "batch entry BODYLEN")?;
        let body_len = usize::try_from(body_len).map_err(|_| {
            ProtocolError::InvalidBody(format!("negative batch entry BODYLEN {body_len}"))
        })?;
        let body = take(buf, &mut pos, body_len, "batch entry BODY")?;
        let mut len_bytes = [0u8; 2];
        len_bytes.copy_from_slice(take(buf, &mut pos, 2, "batch entry PROPLEN")?);
        let properties_len = i16::from_be_bytes(len_bytes);
        let properties_len = usize::try_from(properties_len).map_err(|_| {
            ProtocolError::InvalidBody(format!("negative batch entry PROPLEN {properties_len}"))
        })?;
        let properties = take(buf, &mut pos, properties_len, "batch entry PROPERTIES")?;
        Ok(Self {
            declared_total_size,
            flag,
            body,
            properties,
            encoded_len: pos,
        })
    }

    pub fn property(&self, name: &str) -> Option<Cow<'a, str>> {
        properties::find_str(self.properties, name)
    }

    pub fn properties_map(&self) -> MessageProperties {
        MessageProperties::decode(self.properties)
    }

    pub fn to_entry(&self) -> BatchEntry {
        BatchEntry {
            flag: self.flag,
            body: Bytes::copy_from_slice(self.body),
            properties: Bytes::copy_from_slice(self.properties),
        }
    }
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize, what: &'static str) -> Result<&'a [u8]> {
    let end = pos
        .checked_add(n)
        .ok_or(ProtocolError::Truncated { what, needed: n })?;
    let bytes = buf.get(*pos..end).ok_or(ProtocolError::Truncated {
        what,
        needed: end.saturating_sub(buf.len()),
    })?;
    *pos = end;
    Ok(bytes)
}

fn read_i32(buf: &[u8], pos: &mut usize, what: &'static str) -> Result<i32> {
    let mut arr = [0u8; 4];
    arr.copy_from_slice(take(buf, pos, 4, what)?);
    Ok(i32::from_be_bytes(arr))
}

/// Entries of a batch body, borrowed. Yields an error once and then stops.
#[derive(Debug, Clone)]
pub struct BatchViews<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Iterates the entries of a batch body without copying.
pub fn batch_views(body: &[u8]) -> BatchViews<'_> {
    BatchViews {
        rest: body,
        failed: false,
    }
}

impl<'a> Iterator for BatchViews<'a> {
    type Item = Result<BatchEntryView<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match BatchEntryView::parse(self.rest) {
            Ok(view) => {
                self.rest = self.rest.get(view.encoded_len..).unwrap_or_default();
                Some(Ok(view))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Decodes a whole batch body; bodies and properties share `body`'s memory. An empty body, or any
/// entry that runs past the end, is an error.
pub fn decode_batch(body: &Bytes) -> Result<Vec<BatchEntry>> {
    if body.is_empty() {
        return Err(ProtocolError::InvalidBody("empty batch body".into()));
    }
    let mut entries = Vec::new();
    let mut pos = 0usize;
    for view in batch_views(body) {
        let view = view?;
        let body_start = pos + 20;
        let properties_start = body_start + view.body.len() + 2;
        entries.push(BatchEntry {
            flag: view.flag,
            body: body.slice(body_start..body_start + view.body.len()),
            properties: body.slice(properties_start..properties_start + view.properties.len()),
        });
        pos += view.encoded_len;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::properties::keys;

    fn entries() -> Vec<BatchEntry> {
        let mut p1 = MessageProperties::new();
        p1.set_tags("TagA");
        p1.set_uniq_key("7F0000010A8C18B4AAC2650DB5A40000");
        let mut p2 = MessageProperties::new();
        p2.set_keys(["k1", "k2"]);
        vec![
            BatchEntry::new(0, Bytes::from_static(b"first"), &p1),
            BatchEntry::new(7, Bytes::from_static(b""), &p2),
            BatchEntry::new(-1, Bytes::from(vec![0xAB; 300]), &MessageProperties::new()),
        ]
    }

    fn encoded(entries: &[BatchEntry]) -> Bytes {
        let mut buf = Vec::new();
        encode_batch(entries, &mut buf).unwrap();
        Bytes::from(buf)
    }

    #[test]
    fn batch_entry_golden_bytes() {
        let entry = BatchEntry {
            flag: 5,
            body: Bytes::from_static(b"hi"),
            properties: Bytes::from_static(b"TAGS\x01A\x02"),
        };
        let mut buf = Vec::new();
        entry.encode_into(&mut buf).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(&31i32.to_be_bytes()); // 22 fixed + 2 body + 7 properties
        expected.extend_from_slice(&0i32.to_be_bytes()); // MAGICCODE
        expected.extend_from_slice(&0i32.to_be_bytes()); // BODYCRC
        expected.extend_from_slice(&5i32.to_be_bytes()); // FLAG
        expected.extend_from_slice(&2i32.to_be_bytes()); // BODYLEN
        expected.extend_from_slice(b"hi");
        expected.extend_from_slice(&7i16.to_be_bytes()); // PROPLEN
        expected.extend_from_slice(b"TAGS\x01A\x02");
        assert_eq!(expected.len(), 31);
        assert_eq!(buf, expected);
        assert_eq!(entry.encoded_len(), 31);
    }

    #[test]
    fn batch_round_trips_and_shares_memory() {
        let entries = entries();
        let body = encoded(&entries);
        assert_eq!(body.len(), encoded_batch_len(&entries));
        let decoded = decode_batch(&body).unwrap();
        assert_eq!(decoded, entries);
        assert_eq!(decoded[0].property(keys::TAGS).as_deref(), Some("TagA"));
        assert_eq!(
            decoded[1].properties_map().keys().collect::<Vec<_>>(),
            vec!["k1", "k2"]
        );
        let range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
        assert!(range.contains(&(decoded[2].body.as_ptr() as usize)));
        let views: Vec<_> = batch_views(&body).collect::<Result<_>>().unwrap();
        assert_eq!(views.len(), 3);
        assert_eq!(views[1].flag, 7);
        assert_eq!(views[2].to_entry(), entries[2]);
    }

    #[test]
    fn every_truncation_of_a_single_entry_batch_is_an_error() {
        let body = encoded(&entries()[..1]);
        for cut in 0..body.len() {
            assert!(decode_batch(&body.slice(..cut)).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn every_truncation_inside_an_entry_of_a_multi_entry_batch_is_an_error() {
        let entries = entries();
        let body = encoded(&entries);
        let mut boundaries = vec![0usize];
        for e in &entries {
            boundaries.push(boundaries.last().copied().unwrap_or(0) + e.encoded_len());
        }
        for cut in 0..body.len() {
            let result = decode_batch(&body.slice(..cut));
            if boundaries.contains(&cut) && cut > 0 {
                assert!(result.is_ok(), "cut at entry boundary {cut}");
            } else {
                assert!(result.is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn negative_lengths_are_errors_not_panics() {
        let body = encoded(&entries()[..1]).to_vec();
        let mut bad_body_len = body.clone();
        bad_body_len[16..20].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(decode_batch(&Bytes::from(bad_body_len)).is_err());
        let mut huge_body_len = body.clone();
        huge_body_len[16..20].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_batch(&Bytes::from(huge_body_len)).is_err());
        let prop_len_pos = 20 + 5;
        let mut bad_prop_len = body;
        bad_prop_len[prop_len_pos..prop_len_pos + 2].copy_from_slice(&(-2i16).to_be_bytes());
        assert!(decode_batch(&Bytes::from(bad_prop_len)).is_err());
    }

    #[test]
    fn declared_total_size_is_not_required_to_match() {
        let mut body = encoded(&entries()[..1]).to_vec();
        body[..4].copy_from_slice(&999i32.to_be_bytes());
        let views: Vec<_> = batch_views(&body).collect::<Result<_>>().unwrap();
        assert_eq!(views[0].declared_total_size, 999);
        assert_eq!(views[0].body, b"first");
    }

    #[test]
    fn empty_batch_body_is_an_error() {
        assert!(decode_batch(&Bytes::new()).is_err());
    }

    #[test]
    fn encode_rejects_oversized_properties_and_small_buffers_without_writing() {
        let big = BatchEntry {
            flag: 0,
            body: Bytes::new(),
            properties: Bytes::from(vec![b'a'; 32768]),
        };
        let mut buf = Vec::new();
        assert!(encode_batch(&[entries()[0].clone(), big], &mut buf).is_err());
        assert!(buf.is_empty());
        let mut small = [0u8; 10];
        let mut slice = &mut small[..];
        assert!(encode_batch(&entries(), &mut slice).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678u32;
        for len in 0..200 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            let _ = decode_batch(&Bytes::from(data));
        }
    }
}
