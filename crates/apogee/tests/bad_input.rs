//! Hostile and careless clients against the real binary: malformed frames close their own
//! connection, malformed or illegal requests get RocketMQ's error code with a remark, and
//! meanwhile a well-behaved client on another connection keeps working, the process never
//! panics, and messages stored before the abuse read back byte for byte.

mod common;

use std::time::Duration;

use apogee_protocol::body::{JsonBody, SubscriptionGroupConfig};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{CreateTopicRequestHeader, GetRouteInfoRequestHeader};
use apogee_protocol::message::batch::{encode_batch, BatchEntry};
use apogee_protocol::RemotingCommand;
use apogee_remoting::RemotingClient;
use bytes::{Bytes, BytesMut};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_FRAME_BYTES: u32 = 16 * 1024 * 1024;
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// A raw frame: length, serialize type and header length, header, body.
fn frame(serialize_type: u8, header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(&((u32::from(serialize_type) << 24) | header.len() as u32).to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    out
}

/// Writes `bytes` on a fresh connection and requires the server to close it without a reply.
async fn closes_without_reply(addr: &str, what: &str, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // The server may close before it has read everything: a failed write is fine.
    let _ = s.write_all(bytes).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    match read {
        Err(_) => panic!("{what}: the connection to {addr} stayed open"),
        // EOF or reset: closed either way.
        Ok(_) => assert!(got.is_empty(), "{what}: got a reply {got:?}"),
    }
}

/// The stored messages a test checks after the abuse: 3 queues of `Kept`, with properties.
async fn store_reference_messages(c: &RemotingClient, broker: &str) -> Vec<(i32, Vec<u8>)> {
    for i in 0..30 {
        let p = props(&[
            ("TAGS", "Kept"),
            ("KEYS", &format!("kept-{i}")),
            ("color", ["red", "green", "blue"][i % 3]),
        ]);
        let body = format!("kept message {i} {}", "x".repeat(i * 10));
        let r = call(c, broker, send("Kept", (i % 3) as i32, &p, body.as_bytes())).await;
        assert_eq!(r.code, SUCCESS, "{r:?}");
    }
    let mut raw = Vec::new();
    for q in 0..3 {
        let (records, bytes) = pull_all(c, broker, "CG_KEPT", "Kept", q).await;
        assert_eq!(records.len(), 10);
        raw.push((q, bytes));
    }
    raw
}

async fn assert_reference_messages_unchanged(
    c: &RemotingClient,
    broker: &str,
    before: &[(i32, Vec<u8>)],
) {
    for (q, bytes) in before {
        let (_, now) = pull_all(c, broker, "CG_KEPT", "Kept", *q).await;
        assert_eq!(&now, bytes, "queue {q} reads back differently");
    }
}

/// The well-behaved client's round: a send and a pull of it, on its own connection.
async fn good_client_works(c: &RemotingClient, broker: &str, namesrv: &str, n: usize) {
    let body = format!("good {n}");
    let r = call(
        c,
        broker,
        send("Good", 0, &props(&[("TAGS", "G")]), body.as_bytes()),
    )
    .await;
    assert_eq!(r.code, SUCCESS, "good send {n}: {r:?}");
    let (records, _) = pull_all(c, broker, "CG_GOOD", "Good", 0).await;
    assert_eq!(records.last().map(|r| &r.body[..]), Some(body.as_bytes()));
    let route = call(
        c,
        namesrv,
        RemotingCommand::request_with_header(
            rc::GET_ROUTEINFO_BY_TOPIC,
            &GetRouteInfoRequestHeader {
                topic: "Good".into(),
                accept_standard_json_only: None,
                zone_name: None,
                zone_mode: None,
            },
        ),
    )
    .await;
    assert_eq!(route.code, SUCCESS, "route {n}: {route:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_their_connection_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"));
    let good = client();
    let before = store_reference_messages(&good, &server.broker).await;
    good_client_works(&good, &server.broker, &server.namesrv, 0).await;

    // Another well-behaved client sends and pulls on its own connection all through the abuse.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let busy = {
        let broker = server.broker.clone();
        tokio::spawn(async move {
            let c = client();
            let mut rounds = 0u64;
            while !*stop_rx.borrow_and_update() {
                let body = format!("busy {rounds}");
                let r = call(&c, &broker, send("Busy", 0, &props(&[]), body.as_bytes())).await;
                assert_eq!(r.code, SUCCESS, "busy send {rounds}: {r:?}");
                let h: apogee_protocol::header::SendMessageResponseHeader =
                    r.decode_header().unwrap();
                let r = call(&c, &broker, pull("CG_BUSY", "Busy", 0, h.queue_offset)).await;
                assert_eq!(r.code, SUCCESS, "busy pull {rounds}: {r:?}");
                rounds += 1;
            }
            c.close();
            rounds
        })
    };

    // A whole frame (a waiting half frame is legal) whose content is noise.
    let mut pseudo_random = 4092u32.to_be_bytes().to_vec();
    pseudo_random.extend((0u32..4092).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let valid_json = br#"{"code":34,"flag":0,"language":"JAVA","opaque":1,"version":0}"#;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("pseudo-random bytes", pseudo_random),
        ("a length of 2^31-1", 0x7fff_ffffu32.to_be_bytes().to_vec()),
        ("a negative length", 0xffff_fff0u32.to_be_bytes().to_vec()),
        ("one byte over the 16 MiB frame limit", {
            let mut v = (MAX_FRAME_BYTES - 4 + 1).to_be_bytes().to_vec();
            v.extend_from_slice(&[0; 64]);
            v
        }),
        ("a length too short for the header length", {
            let mut v = 2u32.to_be_bytes().to_vec();
            v.extend_from_slice(&[0, 0]);
            v
        }),
        ("a header length beyond the frame", {
            let mut v = 8u32.to_be_bytes().to_vec();
            v.extend_from_slice(&1000u32.to_be_bytes());
            v.extend_from_slice(&[b'{'; 4]);
            v
        }),
        (
            "a JSON header that does not parse",
            frame(0, br#"{"code":10,"flag":0,"#, b""),
        ),
        (
            "a JSON header that is not an object",
            frame(0, b"[1,2,3]", b""),
        ),
        (
            "a JSON header with a string code",
            frame(0, br#"{"code":"ten","flag":0}"#, b""),
        ),
        ("an unknown serialize type", frame(7, valid_json, b"")),
        (
            "a truncated ROCKETMQ binary header",
            frame(1, &[0, 10, 0, 0], b""),
        ),
    ];
    for (i, (what, bytes)) in cases.iter().enumerate() {
        for addr in [&server.broker, &server.namesrv] {
            closes_without_reply(addr, what, bytes).await;
        }
        assert!(server.is_alive(), "apogee died after {what}");
        good_client_works(&good, &server.broker, &server.namesrv, i + 1).await;
    }

    // Half a frame, then the peer goes away: nothing to answer, nothing to break.
    for addr in [&server.broker, &server.namesrv] {
        let mut s = TcpStream::connect(addr.as_str()).await.unwrap();
        let f = frame(0, valid_json, b"body");
        s.write_all(&f[..f.len() / 2]).await.unwrap();
        drop(s);
    }
    good_client_works(&good, &server.broker, &server.namesrv, 100).await;
    let _ = stop_tx.send(true);
    let rounds = busy.await.expect("the busy client never failed");
    assert!(rounds > 0);
    assert_reference_messages_unchanged(&good, &server.broker, &before).await;
    good.close();
    server.stop();
}

/// A request with these extFields and body, as a client that builds headers by hand might send.
fn raw_request(code: i32, fields: &[(&str, &str)], body: &[u8]) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code);
    for (k, v) in fields {
        cmd.ext_fields.insert(*k, *v);
    }
    cmd.with_body(Bytes::copy_from_slice(body))
}

const SEND_FIELDS: &[(&str, &str)] = &[
    ("producerGroup", "PG"),
    ("topic", "Abuse"),
    ("defaultTopic", "TBW102"),
    ("defaultTopicQueueNums", "4"),
    ("queueId", "0"),
    ("sysFlag", "0"),
    ("bornTimestamp", "1700000000000"),
    ("flag", "0"),
];

const PULL_FIELDS: &[(&str, &str)] = &[
    ("consumerGroup", "CG_ABUSE"),
    ("topic", "Abuse"),
    ("queueId", "0"),
    ("queueOffset", "0"),
    ("maxMsgNums", "32"),
    ("sysFlag", "4"),
    ("commitOffset", "0"),
    ("suspendTimeoutMillis", "0"),
    ("subscription", "*"),
    ("subVersion", "0"),
];

/// `base` with `key` removed (`None`) or set to `value`.
fn fields_with<'a>(
    base: &[(&'a str, &'a str)],
    key: &'a str,
    value: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<_> = base.iter().copied().filter(|(k, _)| *k != key).collect();
    if let Some(value) = value {
        v.push((key, value));
    }
    v
}

struct Expect {
    what: String,
    request: RemotingCommand,
    code: i32,
    /// A word the remark must contain (case-insensitive).
    remark_has: &'static str,
}

fn expect(
    what: impl Into<String>,
    request: RemotingCommand,
    code: i32,
    remark_has: &'static str,
) -> Expect {
    Expect {
        what: what.into(),
        request,
        code,
        remark_has,
    }
}

#[tokio::test]
async fn bad_requests_get_rocketmq_error_codes_with_remarks() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"));
    let c = client();
    let before = store_reference_messages(&c, &server.broker).await;
    // The topic the field tests aim at exists, so only the broken field can be the problem.
    let r = call(&c, &server.broker, send("Abuse", 0, &props(&[]), b"first")).await;
    assert_eq!(r.code, SUCCESS);

    let mut cases = vec![
        expect(
            "a send without any header field",
            raw_request(rc::SEND_MESSAGE, &[], b"x"),
            SYSTEM_ERROR,
            "producerGroup",
        ),
        expect(
            "an unknown request code",
            raw_request(54_321, &[], b""),
            REQUEST_CODE_NOT_SUPPORTED,
            "54321",
        ),
        expect(
            "a send to a topic whose template does not exist",
            raw_request(
                rc::SEND_MESSAGE,
                &fields_with(
                    &fields_with(SEND_FIELDS, "topic", Some("NoSuchTopic")),
                    "defaultTopic",
                    Some("NoTemplate"),
                ),
                b"x",
            ),
            TOPIC_NOT_EXIST,
            "NoSuchTopic",
        ),
        expect(
            "a send to queue 99 of a 4-queue topic",
            raw_request(
                rc::SEND_MESSAGE,
                &fields_with(SEND_FIELDS, "queueId", Some("99")),
                b"x",
            ),
            INVALID_PARAMETER,
            "queueId",
        ),
        expect(
            "a body one byte over the 4 MiB message limit",
            raw_request(
                rc::SEND_MESSAGE,
                SEND_FIELDS,
                &vec![b'b'; MAX_MESSAGE_BYTES + 1],
            ),
            MESSAGE_ILLEGAL,
            "4194304",
        ),
        expect(
            "a batch whose body is not a batch",
            raw_request(
                rc::SEND_MESSAGE,
                &fields_with(SEND_FIELDS, "batch", Some("true")),
                &[0, 0, 0, 200, 1, 2, 3],
            ),
            MESSAGE_ILLEGAL,
            "batch",
        ),
        expect(
            "an offset commit for an unknown topic",
            raw_request(
                rc::UPDATE_CONSUMER_OFFSET,
                &[
                    ("consumerGroup", "CG_KEPT"),
                    ("topic", "NoSuchTopic"),
                    ("queueId", "0"),
                    ("commitOffset", "1"),
                ],
                b"",
            ),
            TOPIC_NOT_EXIST,
            "NoSuchTopic",
        ),
        expect(
            "an offset query for an unknown topic",
            raw_request(
                rc::QUERY_CONSUMER_OFFSET,
                &[
                    ("consumerGroup", "CG_KEPT"),
                    ("topic", "NoSuchTopic"),
                    ("queueId", "0"),
                ],
                b"",
            ),
            QUERY_NOT_FOUND,
            "not found",
        ),
        expect(
            "a pull of an unknown topic",
            raw_request(
                rc::PULL_MESSAGE,
                &fields_with(PULL_FIELDS, "topic", Some("NoSuchTopic")),
                b"",
            ),
            TOPIC_NOT_EXIST,
            "NoSuchTopic",
        ),
        expect(
            "a pull of queue 99",
            raw_request(
                rc::PULL_MESSAGE,
                &fields_with(PULL_FIELDS, "queueId", Some("99")),
                b"",
            ),
            INVALID_PARAMETER,
            "queueId",
        ),
        expect(
            "a pull with an unparsable subscription",
            raw_request(
                rc::PULL_MESSAGE,
                &fields_with(
                    &fields_with(PULL_FIELDS, "expressionType", Some("SQL92")),
                    "subscription",
                    Some("a >"),
                ),
                b"",
            ),
            SUBSCRIPTION_PARSE_FAILED,
            "invalid SQL92 expression",
        ),
        expect(
            "a heartbeat whose body is not JSON",
            raw_request(rc::HEART_BEAT, &[], b"{not json"),
            SYSTEM_ERROR,
            "",
        ),
    ];

    // Each required send field missing, then each numeric one not a number.
    for (key, _) in SEND_FIELDS {
        cases.push(expect(
            format!("a send without {key}"),
            raw_request(rc::SEND_MESSAGE, &fields_with(SEND_FIELDS, key, None), b"x"),
            SYSTEM_ERROR,
            key,
        ));
    }
    for key in [
        "defaultTopicQueueNums",
        "queueId",
        "sysFlag",
        "bornTimestamp",
        "flag",
    ] {
        cases.push(expect(
            format!("a send with {key}=abc"),
            raw_request(
                rc::SEND_MESSAGE,
                &fields_with(SEND_FIELDS, key, Some("abc")),
                b"x",
            ),
            SYSTEM_ERROR,
            key,
        ));
    }
    for (key, _) in PULL_FIELDS.iter().filter(|(k, _)| *k != "subscription") {
        cases.push(expect(
            format!("a pull without {key}"),
            raw_request(rc::PULL_MESSAGE, &fields_with(PULL_FIELDS, key, None), b""),
            SYSTEM_ERROR,
            key,
        ));
    }
    for key in [
        "queueId",
        "queueOffset",
        "maxMsgNums",
        "sysFlag",
        "commitOffset",
        "suspendTimeoutMillis",
        "subVersion",
    ] {
        cases.push(expect(
            format!("a pull with {key}=x1"),
            raw_request(
                rc::PULL_MESSAGE,
                &fields_with(PULL_FIELDS, key, Some("x1")),
                b"",
            ),
            SYSTEM_ERROR,
            key,
        ));
    }

    // Illegal names: topics with forbidden characters or too long, groups likewise.
    let long_topic = "t".repeat(128);
    for topic in ["bad topic", "bad/topic", "t\u{e9}", long_topic.as_str(), ""] {
        cases.push(expect(
            format!("a send to the illegal topic {topic:?}"),
            raw_request(
                rc::SEND_MESSAGE,
                &fields_with(SEND_FIELDS, "topic", Some(topic)),
                b"x",
            ),
            INVALID_PARAMETER,
            "topic",
        ));
        let create = CreateTopicRequestHeader {
            topic: topic.into(),
            default_topic: "TBW102".into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            perm: 6,
            topic_filter_type: "SINGLE_TAG".into(),
            topic_sys_flag: None,
            order: false,
            attributes: None,
            force: false,
        };
        cases.push(expect(
            format!("creating the illegal topic {topic:?}"),
            RemotingCommand::request_with_header(rc::UPDATE_AND_CREATE_TOPIC, &create),
            INVALID_PARAMETER,
            "topic",
        ));
    }
    cases.push(expect(
        "a send to the system topic SCHEDULE_TOPIC_XXXX",
        raw_request(
            rc::SEND_MESSAGE,
            &fields_with(SEND_FIELDS, "topic", Some("SCHEDULE_TOPIC_XXXX")),
            b"x",
        ),
        NO_PERMISSION,
        "SCHEDULE_TOPIC_XXXX",
    ));
    let long_group = "g".repeat(121);
    for group in ["bad group", "bad/group", long_group.as_str()] {
        cases.push(expect(
            format!("a pull for the illegal group {group:?}"),
            raw_request(
                rc::PULL_MESSAGE,
                &fields_with(PULL_FIELDS, "consumerGroup", Some(group)),
                b"",
            ),
            SUBSCRIPTION_GROUP_NOT_EXIST,
            "group",
        ));
        cases.push(expect(
            format!("an offset commit for the illegal group {group:?}"),
            raw_request(
                rc::UPDATE_CONSUMER_OFFSET,
                &[
                    ("consumerGroup", group),
                    ("topic", "Abuse"),
                    ("queueId", "0"),
                    ("commitOffset", "1"),
                ],
                b"",
            ),
            SUBSCRIPTION_GROUP_NOT_EXIST,
            "group",
        ));
        let config = SubscriptionGroupConfig::new(group);
        cases.push(expect(
            format!("creating the illegal group {group:?}"),
            RemotingCommand::request(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(config.encode().unwrap()),
            INVALID_PARAMETER,
            "group",
        ));
    }

    let route_of = |topic: &str| {
        RemotingCommand::request_with_header(
            rc::GET_ROUTEINFO_BY_TOPIC,
            &GetRouteInfoRequestHeader {
                topic: topic.into(),
                accept_standard_json_only: None,
                zone_name: None,
                zone_mode: None,
            },
        )
    };
    let namesrv_cases = vec![
        expect(
            "a route query for an unknown topic",
            route_of("NoSuchTopic"),
            TOPIC_NOT_EXIST,
            "NoSuchTopic",
        ),
        expect(
            "a route query without a topic",
            raw_request(rc::GET_ROUTEINFO_BY_TOPIC, &[], b""),
            SYSTEM_ERROR,
            "topic",
        ),
        expect(
            "a broker registration whose body is garbage",
            raw_request(
                rc::REGISTER_BROKER,
                &[
                    ("brokerName", "b"),
                    ("brokerAddr", "127.0.0.1:1"),
                    ("clusterName", "c"),
                    ("haServerAddr", "127.0.0.1:2"),
                    ("brokerId", "0"),
                    ("compressed", "false"),
                    ("bodyCrc32", "0"),
                ],
                b"\x00garbage",
            ),
            SYSTEM_ERROR,
            "",
        ),
    ];

    let mut failures = Vec::new();
    let all = cases
        .into_iter()
        .map(|c| (&server.broker, c))
        .chain(namesrv_cases.into_iter().map(|c| (&server.namesrv, c)));
    for (i, (addr, case)) in all.enumerate() {
        let r = call(&c, addr, case.request).await;
        let remark = r.remark.clone().unwrap_or_default();
        if r.code != case.code
            || remark.trim().is_empty()
            || !remark
                .to_lowercase()
                .contains(&case.remark_has.to_lowercase())
        {
            failures.push(format!(
                "{}: got code {} remark {remark:?}, want code {} with {:?}",
                case.what, r.code, case.code, case.remark_has
            ));
        }
        // The same connection keeps working after every refusal.
        if i % 5 == 0 {
            let ok = call(
                &c,
                &server.broker,
                send("Abuse", 0, &props(&[]), b"still fine"),
            )
            .await;
            assert_eq!(ok.code, SUCCESS, "after {}: {ok:?}", case.what);
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong answers:\n{}",
        failures.len(),
        failures.join("\n")
    );

    assert!(server.is_alive());
    assert_reference_messages_unchanged(&c, &server.broker, &before).await;
    // The largest legal body still goes through.
    let r = call(
        &c,
        &server.broker,
        raw_request(
            rc::SEND_MESSAGE,
            SEND_FIELDS,
            &vec![b'b'; MAX_MESSAGE_BYTES],
        ),
    )
    .await;
    assert_eq!(r.code, SUCCESS, "a 4 MiB body: {:?}", r.remark);
    // A valid batch still goes through on the same connection.
    let entries: Vec<BatchEntry> = (0..3)
        .map(|i| {
            BatchEntry::new(
                0,
                Bytes::from(format!("batch {i}")),
                &props(&[("TAGS", "B")]),
            )
        })
        .collect();
    let mut body = BytesMut::new();
    encode_batch(&entries, &mut body).unwrap();
    // As the C++ client sends it: SEND_MESSAGE with batch=true.
    let r = call(
        &c,
        &server.broker,
        raw_request(
            rc::SEND_MESSAGE,
            &fields_with(SEND_FIELDS, "batch", Some("true")),
            &body,
        ),
    )
    .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    c.close();
    server.stop();
}
