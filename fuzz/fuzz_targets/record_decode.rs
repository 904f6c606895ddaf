//! Arbitrary bytes as a pull-reply body (stored records back to back) and as a batch send body. The
//! decoders must return errors, never panic; a record that decodes must re-encode to the same bytes
//! (when its topic is UTF-8: other topics decode lossily, as Java's decoder does).
#![no_main]

use apogee_protocol::message::batch::decode_batch;
use apogee_protocol::message::record::{MessageRecord, RecordView};
use apogee_protocol::message::properties::MessageProperties;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for view in RecordView::iter(data) {
        let Ok(view) = view else { break };
        let _ = view.verify_body_crc();
        let _ = MessageProperties::decode(view.properties);
    }
    let bytes = Bytes::copy_from_slice(data);
    let utf8_topic = RecordView::parse(data)
        .map(|v| std::str::from_utf8(v.topic).is_ok())
        .unwrap_or(false);
    if let (true, Ok((rec, used))) = (utf8_topic, MessageRecord::decode_bytes(&bytes)) {
        let again = rec.encode().expect("a decoded record re-encodes");
        assert_eq!(&again[..], &data[..used]);
    }
    let _ = decode_batch(&bytes);
});
