//! Feeds arbitrary bytes to the frame decoder as a connection would: repeatedly split frames off a
//! buffer until it is incomplete or an error closes the "connection". Any panic is a bug; a decoded
//! command must also survive a re-encode and decode unchanged.
#![no_main]

use apogee_protocol::RemotingCommand;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(cmd)) = RemotingCommand::decode_frame(&mut buf, 1 << 20) {
        if let Ok(bytes) = cmd.to_bytes() {
            let again = RemotingCommand::decode_bytes(&bytes).expect("re-encoded frame decodes");
            assert_eq!(again.code, cmd.code);
            assert_eq!(again.opaque, cmd.opaque);
            assert_eq!(again.ext_fields, cmd.ext_fields);
            assert_eq!(again.body, cmd.body);
        }
    }
});
