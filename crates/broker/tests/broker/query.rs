//! QUERY_MESSAGE by key and unique key, VIEW_MESSAGE_BY_ID.

use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{
    QueryMessageRequestHeader, SendMessageResponseHeader, ViewMessageRequestHeader,
};
use apogee_protocol::message::OffsetMsgId;
use apogee_protocol::RemotingCommand;

use crate::common::*;

fn query(topic: &str, key: &str, unique: bool) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::QUERY_MESSAGE,
        &QueryMessageRequestHeader {
            topic: topic.into(),
            key: key.into(),
            max_num: 32,
            begin_timestamp: 0,
            end_timestamp: i64::MAX,
            unique_key_query: unique.then_some(true),
        },
    )
}

fn view(offset: i64) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::VIEW_MESSAGE_BY_ID,
        &ViewMessageRequestHeader {
            topic: None,
            offset,
        },
    )
}

#[tokio::test]
async fn query_by_key_and_unique_key_and_view_by_offset_id() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let mut ids = Vec::new();
    for (i, keys) in ["order-1 shared", "order-2 shared", "order-3"]
        .iter()
        .enumerate()
    {
        let uniq = format!("UNIQ{i:04}");
        let p = props(&[("KEYS", keys), ("UNIQ_KEY", &uniq)]);
        let r = b
            .call(send_v2(&send_header("TK", 0, &p), keys.as_bytes()))
            .await;
        assert_eq!(r.code, SUCCESS);
        ids.push(
            r.decode_header::<SendMessageResponseHeader>()
                .unwrap()
                .msg_id,
        );
    }

    let r = b.call(query("TK", "order-2", false)).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let recs = records(&r.body);
    assert_eq!(recs.len(), 1);
    assert_eq!(&recs[0].body[..], b"order-2 shared");

    let r = b.call(query("TK", "shared", false)).await;
    assert_eq!(records(&r.body).len(), 2);

    let r = b.call(query("TK", "UNIQ0002", true)).await;
    assert_eq!(r.code, SUCCESS);
    assert_eq!(&records(&r.body)[0].body[..], b"order-3");

    let r = b.call(query("TK", "missing", false)).await;
    assert_eq!(r.code, QUERY_NOT_FOUND);
    assert_eq!(
        b.call(query("Other", "order-1", false)).await.code,
        QUERY_NOT_FOUND
    );

    let off = OffsetMsgId::parse(&ids[1]).unwrap().physical_offset;
    let r = b.call(view(off)).await;
    assert_eq!(r.code, SUCCESS);
    let recs = records(&r.body);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].physical_offset, off);
    assert_eq!(recs[0].uniq_key().as_deref(), Some("UNIQ0001"));

    // Offsets that do not start a record, or lie beyond the log.
    for bad in [off + 1, -1, 1 << 40] {
        let r = b.call(view(bad)).await;
        assert_eq!(r.code, SYSTEM_ERROR, "{bad}");
    }
    b.stop().await;
}
