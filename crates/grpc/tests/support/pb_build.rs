//! Request pieces the gRPC integration tests build again and again.

use apogee_grpc::pb;

pub fn resource(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    })
}

/// A message with tag `TagA`, key `k1`, user property `color=blue` and body `body of <id>`;
/// `group` is the FIFO message group.
pub fn message(topic: &str, id: &str, kind: pb::MessageType, group: Option<&str>) -> pb::Message {
    pb::Message {
        topic: resource(topic),
        user_properties: [("color".to_owned(), "blue".to_owned())].into(),
        system_properties: Some(pb::SystemProperties {
            tag: Some("TagA".into()),
            keys: vec!["k1".into()],
            message_id: id.into(),
            body_encoding: pb::Encoding::Identity as i32,
            message_type: kind as i32,
            message_group: group.map(str::to_owned),
            ..Default::default()
        }),
        body: format!("body of {id}").into_bytes(),
    }
}
