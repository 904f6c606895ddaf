//! The generated schema is the wire contract: these tests fail if an RPC, a field number, a type
//! or an enum value drifts from apache/rocketmq-apis.

#[path = "support/schema_dump.rs"]
mod schema_dump;

use apogee_grpc::pb;
use prost::Message;
use prost_types::FileDescriptorSet;

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(apogee_grpc::FILE_DESCRIPTOR_SET)
        .expect("embedded descriptor set decodes")
}

/// Every RPC of `MessagingService` in apache/rocketmq-apis, with (client, server) streaming.
const MESSAGING_SERVICE_RPCS: [(&str, bool, bool); 17] = [
    ("QueryRoute", false, false),
    ("Heartbeat", false, false),
    ("SendMessage", false, false),
    ("QueryAssignment", false, false),
    ("ReceiveMessage", false, true),
    ("AckMessage", false, false),
    ("ForwardMessageToDeadLetterQueue", false, false),
    ("PullMessage", false, true),
    ("UpdateOffset", false, false),
    ("GetOffset", false, false),
    ("QueryOffset", false, false),
    ("EndTransaction", false, false),
    ("Telemetry", true, true),
    ("NotifyClientTermination", false, false),
    ("ChangeInvisibleDuration", false, false),
    ("RecallMessage", false, false),
    ("SyncLiteSubscription", false, false),
];

#[test]
fn descriptor_declares_every_messaging_service_rpc_with_its_streaming_shape() {
    let set = descriptor_set();
    let service = set
        .file
        .iter()
        .filter(|f| f.package() == "apache.rocketmq.v2")
        .flat_map(|f| f.service.iter())
        .find(|s| s.name() == "MessagingService")
        .expect("MessagingService is declared");
    let mut declared: Vec<(&str, bool, bool)> = service
        .method
        .iter()
        .map(|m| (m.name(), m.client_streaming(), m.server_streaming()))
        .collect();
    declared.sort();
    let mut expected = MESSAGING_SERVICE_RPCS.to_vec();
    expected.sort();
    assert_eq!(declared, expected);
}

#[test]
fn schema_matches_the_upstream_wire_facts() {
    let golden: Vec<&str> = include_str!("golden/rocketmq_v2_schema.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .collect();
    let ours = schema_dump::schema_lines(&descriptor_set());
    let missing: Vec<&&str> = golden
        .iter()
        .filter(|l| !ours.iter().any(|o| o == **l))
        .collect();
    let extra: Vec<&String> = ours
        .iter()
        .filter(|o| !golden.contains(&o.as_str()))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "schema drift\nmissing from ours: {missing:#?}\nnot upstream: {extra:#?}"
    );
    assert_eq!(ours.len(), golden.len());
}

/// `TelemetryCommand{status{OK, "OK"}, settings{client_type PRODUCER, publishing{max_body_size 4 MiB}}}`
/// encoded by hand from the field numbers: status = 1, settings = 2; Status.code = 1,
/// Status.message = 2; Settings.client_type = 1, Settings.publishing = 5;
/// Publishing.max_body_size = 2.
const GOLDEN_SETTINGS_REPLY: [u8; 21] = [
    0x0A, 0x08, // status, 8 bytes
    0x08, 0xA0, 0x9C, 0x01, // code 20000
    0x12, 0x02, b'O', b'K', // message "OK"
    0x12, 0x09, // settings, 9 bytes
    0x08, 0x01, // client_type PRODUCER
    0x2A, 0x05, // publishing, 5 bytes
    0x10, 0x80, 0x80, 0x80, 0x02, // max_body_size 4194304
];

fn settings_reply() -> pb::TelemetryCommand {
    pb::TelemetryCommand {
        status: Some(pb::Status {
            code: pb::Code::Ok as i32,
            message: "OK".into(),
        }),
        command: Some(pb::telemetry_command::Command::Settings(pb::Settings {
            client_type: Some(pb::ClientType::Producer as i32),
            pub_sub: Some(pb::settings::PubSub::Publishing(pb::Publishing {
                max_body_size: 4 * 1024 * 1024,
                ..Default::default()
            })),
            ..Default::default()
        })),
    }
}

#[test]
fn telemetry_settings_reply_encodes_to_the_golden_bytes_and_back() {
    assert_eq!(settings_reply().encode_to_vec(), GOLDEN_SETTINGS_REPLY);
    assert_eq!(
        pb::TelemetryCommand::decode(&GOLDEN_SETTINGS_REPLY[..]).expect("golden decodes"),
        settings_reply()
    );
}

#[test]
fn every_truncation_of_the_settings_reply_fails_or_decodes_to_less() {
    let full = settings_reply();
    for cut in 0..GOLDEN_SETTINGS_REPLY.len() {
        if let Ok(partial) = pb::TelemetryCommand::decode(&GOLDEN_SETTINGS_REPLY[..cut]) {
            assert_ne!(
                partial, full,
                "a {cut}-byte prefix decoded to the whole message"
            );
        }
    }
}

/// An empty receive: `ReceiveMessageResponse{status{MESSAGE_NOT_FOUND}}` (oneof content, status = 1).
#[test]
fn empty_receive_status_encodes_to_the_golden_bytes() {
    let item = pb::ReceiveMessageResponse {
        content: Some(pb::receive_message_response::Content::Status(pb::Status {
            code: pb::Code::MessageNotFound as i32,
            message: String::new(),
        })),
    };
    let golden = [0x0A, 0x04, 0x08, 0xD1, 0xBB, 0x02];
    assert_eq!(item.encode_to_vec(), golden);
    assert_eq!(
        pb::ReceiveMessageResponse::decode(&golden[..]).expect("decodes"),
        item
    );
    for cut in 1..golden.len() {
        assert!(
            pb::ReceiveMessageResponse::decode(&golden[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn result_codes_keep_their_upstream_numbers() {
    assert_eq!(pb::Code::Ok as i32, 20000);
    assert_eq!(pb::Code::ClientIdRequired as i32, 40017);
    assert_eq!(pb::Code::MessageNotFound as i32, 40401);
    assert_eq!(pb::Code::TooManyRequests as i32, 42900);
    assert_eq!(pb::Code::InternalServerError as i32, 50001);
    assert_eq!(pb::Code::NotImplemented as i32, 50100);
}
