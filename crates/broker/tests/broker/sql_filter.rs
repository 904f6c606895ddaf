//! SQL92 property filtering end to end: pulls carrying the expression, heartbeat-registered
//! subscriptions, CHECK_CLIENT_CONFIG, the enablePropertyFilter switch, and long polling.

use std::time::Duration;

use apogee_protocol::body::{
    CheckClientRequestBody, ConsumerData, HeartbeatData, JsonBody, SubscriptionData,
};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::PullMessageResponseHeader;
use apogee_protocol::RemotingCommand;
use bytes::Bytes;

use crate::common::*;

/// FLAG_SUSPEND | FLAG_SUBSCRIPTION.
const SUSPEND_FLAGS: i32 = 0x2 | 0x4;

/// Sends one message per entry: its body and its user properties.
async fn send_all(b: &TestBroker, topic: &str, messages: &[(&str, &[(&str, &str)])]) {
    for (body, pairs) in messages {
        let r = b
            .call(send_v2(
                &send_header(topic, 0, &props(pairs)),
                body.as_bytes(),
            ))
            .await;
        assert_eq!(r.code, SUCCESS, "{r:?}");
    }
}

fn sql_pull(group: &str, topic: &str, offset: i64, expr: &str) -> RemotingCommand {
    let mut h = pull_header(group, topic, 0, offset);
    h.expression_type = Some("SQL92".into());
    h.subscription = Some(expr.into());
    pull(&h)
}

fn bodies(resp: &RemotingCommand) -> Vec<String> {
    records(&resp.body)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

fn next_offset(resp: &RemotingCommand) -> i64 {
    let h: PullMessageResponseHeader = resp.decode_header().unwrap();
    h.next_begin_offset
}

/// The shop's messages: price and region as user properties, some with tags.
const SHOP: &[(&str, &[(&str, &str)])] = &[
    (
        "cheap-eu",
        &[("price", "5"), ("region", "eu"), ("TAGS", "TagA")],
    ),
    (
        "dear-eu",
        &[("price", "50"), ("region", "eu"), ("TAGS", "TagB")],
    ),
    ("dear-us", &[("price", "70"), ("region", "us")]),
    ("no-price", &[("region", "eu")]),
    ("bad-price", &[("price", "n/a"), ("region", "eu")]),
    (
        "dear-eu-2",
        &[("price", "99"), ("region", "eu"), ("TAGS", "TagA")],
    ),
];

#[tokio::test]
async fn pull_with_sql92_returns_only_matching_messages() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    send_all(&b, "SQ", SHOP).await;

    let resp = b
        .call(sql_pull("G", "SQ", 0, "price > 10 AND region = 'eu'"))
        .await;
    assert_eq!(resp.code, SUCCESS, "{resp:?}");
    assert_eq!(bodies(&resp), ["dear-eu", "dear-eu-2"]);
    assert_eq!(next_offset(&resp), 6);

    // The built-in TAGS property, IS NULL and IN.
    let resp = b.call(sql_pull("G", "SQ", 0, "TAGS = 'TagA'")).await;
    assert_eq!(bodies(&resp), ["cheap-eu", "dear-eu-2"]);
    let resp = b
        .call(sql_pull("G", "SQ", 0, "TAGS IS NULL AND price IS NOT NULL"))
        .await;
    assert_eq!(bodies(&resp), ["dear-us", "bad-price"]);
    let resp = b
        .call(sql_pull(
            "G",
            "SQ",
            0,
            "region IN ('us', 'apac') OR price BETWEEN 1 AND 5",
        ))
        .await;
    assert_eq!(bodies(&resp), ["cheap-eu", "dear-us"]);

    // One message per pull: the next offset is just past the match.
    let mut h = pull_header("G", "SQ", 0, 0);
    h.expression_type = Some("SQL92".into());
    h.subscription = Some("price >= 50".into());
    h.max_msg_nums = 1;
    let resp = b.call(pull(&h)).await;
    assert_eq!(bodies(&resp), ["dear-eu"]);
    assert_eq!(next_offset(&resp), 2);

    // Nothing matching in what is left: retry at once from past the scanned entries.
    let resp = b.call(sql_pull("G", "SQ", 3, "price > 1000")).await;
    assert_eq!(resp.code, PULL_RETRY_IMMEDIATELY);
    assert_eq!(resp.remark.as_deref(), Some("NO_MATCHED_MESSAGE"));
    assert_eq!(next_offset(&resp), 6);
    // At the end of the queue: nothing found, as for any pull.
    let resp = b.call(sql_pull("G", "SQ", 6, "price > 1")).await;
    assert_eq!(resp.code, PULL_NOT_FOUND);
    b.stop().await;
}

#[tokio::test]
async fn bad_sql92_in_a_pull_is_refused_with_the_parser_message() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    send_all(&b, "SB", &[("m", &[("a", "1")])]).await;
    for (expr, needle) in [
        ("a >", "column 4"),
        ("a > 'x'", "only numbers are ordered"),
        ("a = 1 b", "or the end"),
        ("", "empty"),
    ] {
        let resp = b.call(sql_pull("G", "SB", 0, expr)).await;
        assert_eq!(resp.code, SUBSCRIPTION_PARSE_FAILED, "{expr:?}: {resp:?}");
        let remark = resp.remark.unwrap_or_default();
        assert!(
            remark.starts_with("parse the consumer's subscription failed")
                && remark.contains(needle),
            "{expr:?}: {remark}"
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn property_filter_off_refuses_sql92_as_rocketmq_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.enable_property_filter = false;
    let b = TestBroker::start(c).await;
    send_all(&b, "SO", &[("m", &[("a", "1")])]).await;
    let resp = b.call(sql_pull("G", "SO", 0, "a = 1")).await;
    assert_eq!(resp.code, SYSTEM_ERROR);
    assert_eq!(
        resp.remark.as_deref(),
        Some("The broker does not support consumer to filter message by SQL92")
    );
    let resp = b.call(check_client("SO", "SQL92", "a = 1")).await;
    assert_eq!(resp.code, SYSTEM_ERROR);
    // Tags still work.
    let resp = b.call(pull(&pull_header("G", "SO", 0, 0))).await;
    assert_eq!(resp.code, SUCCESS);
    b.stop().await;
}

fn check_client(topic: &str, expression_type: &str, expr: &str) -> RemotingCommand {
    let body = CheckClientRequestBody {
        client_id: Some("10.0.0.9@1".into()),
        group: Some("CG".into()),
        namespace: None,
        subscription_data: Some(SubscriptionData {
            topic: topic.into(),
            sub_string: expr.into(),
            expression_type: expression_type.into(),
            sub_version: 1,
            ..SubscriptionData::default()
        }),
    };
    RemotingCommand::request(rc::CHECK_CLIENT_CONFIG).with_body(body.encode().unwrap())
}

#[tokio::test]
async fn check_client_config_refuses_a_bad_expression_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;

    let resp = b
        .call(check_client("T", "SQL92", "a > 5 AND b IN ('x')"))
        .await;
    assert_eq!((resp.code, resp.remark.as_deref()), (SUCCESS, None));

    let resp = b.call(check_client("T", "SQL92", "a > 5 AND")).await;
    assert_eq!(resp.code, SUBSCRIPTION_PARSE_FAILED);
    assert_eq!(
        resp.remark.as_deref(),
        Some(
            "invalid SQL92 expression at column 10: expected a value, a property name or `(`, \
             found the end of the expression"
        )
    );
    let resp = b.call(check_client("T", "SQL92", "")).await;
    assert_eq!(resp.code, SUBSCRIPTION_PARSE_FAILED);
    let resp = b.call(check_client("T", "JSON", "$.a")).await;
    assert_eq!(resp.code, SUBSCRIPTION_PARSE_FAILED);
    assert!(resp.remark.unwrap().contains("JSON"));

    // Tag subscriptions need no check; nor does a body without a subscription.
    let resp = b.call(check_client("T", "TAG", "||")).await;
    assert_eq!(resp.code, SUCCESS);
    let empty =
        RemotingCommand::request(rc::CHECK_CLIENT_CONFIG).with_body(Bytes::from_static(b"{}"));
    assert_eq!(b.call(empty).await.code, SUCCESS);
    let garbage =
        RemotingCommand::request(rc::CHECK_CLIENT_CONFIG).with_body(Bytes::from_static(b"{\"sub"));
    assert_eq!(b.call(garbage).await.code, SYSTEM_ERROR);
    let none = RemotingCommand::request(rc::CHECK_CLIENT_CONFIG);
    assert_eq!(b.call(none).await.code, SYSTEM_ERROR);
    b.stop().await;
}

/// A HEART_BEAT of a push consumer of `group` with one SQL92 subscription.
fn sql_heartbeat(group: &str, topic: &str, expr: &str, version: i64) -> RemotingCommand {
    let data = HeartbeatData {
        client_id: "10.0.0.9@1".into(),
        consumer_data_set: vec![ConsumerData {
            group_name: group.into(),
            subscription_data_set: vec![
                SubscriptionData {
                    topic: topic.into(),
                    sub_string: expr.into(),
                    expression_type: "SQL92".into(),
                    sub_version: version,
                    ..SubscriptionData::default()
                },
                subscription(&format!("%RETRY%{group}"), "*"),
            ],
            ..ConsumerData::default()
        }],
        ..HeartbeatData::default()
    };
    RemotingCommand::request(rc::HEART_BEAT).with_body(data.encode().unwrap())
}

/// A pull that relies on the heartbeat-registered subscription (no FLAG_SUBSCRIPTION).
fn registered_pull(group: &str, topic: &str, offset: i64, sub_version: i64) -> RemotingCommand {
    let mut h = pull_header(group, topic, 0, offset);
    h.sys_flag = 0;
    h.subscription = None;
    h.expression_type = None;
    h.sub_version = sub_version;
    pull(&h)
}

#[tokio::test]
async fn heartbeat_registered_sql_subscription_filters_pulls_without_the_expression() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    send_all(&b, "SH", SHOP).await;

    let hb = b
        .call(sql_heartbeat("HG", "SH", "price > 60 OR TAGS = 'TagB'", 5))
        .await;
    assert_eq!(hb.code, SUCCESS);
    let resp = b.call(registered_pull("HG", "SH", 0, 5)).await;
    assert_eq!(resp.code, SUCCESS, "{resp:?}");
    assert_eq!(bodies(&resp), ["dear-eu", "dear-us", "dear-eu-2"]);

    // The client's subscription is newer than the broker's (checked before the filter's own
    // version, which follows the subscription's).
    let resp = b.call(registered_pull("HG", "SH", 0, 6)).await;
    assert_eq!(resp.code, SUBSCRIPTION_NOT_LATEST);
    // A newer subscription replaces the filter.
    b.call(sql_heartbeat("HG", "SH", "region = 'us'", 6)).await;
    let resp = b.call(registered_pull("HG", "SH", 0, 6)).await;
    assert_eq!(bodies(&resp), ["dear-us"]);

    // A bad expression: the heartbeat succeeds (as in RocketMQ), the pull reports why.
    let hb = b.call(sql_heartbeat("BG", "SH", "price >> 5", 1)).await;
    assert_eq!(hb.code, SUCCESS);
    let resp = b.call(registered_pull("BG", "SH", 0, 1)).await;
    assert_eq!(resp.code, FILTER_DATA_NOT_EXIST);
    let remark = resp.remark.unwrap();
    assert!(
        remark.starts_with("The broker's consumer filter data is not exist!")
            && remark.contains("column 8"),
        "{remark}"
    );
    b.stop().await;
}

#[tokio::test]
async fn heartbeat_registered_sql_with_property_filter_off_is_a_system_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.enable_property_filter = false;
    let b = TestBroker::start(c).await;
    send_all(&b, "SX", &[("m", &[("a", "1")])]).await;
    assert_eq!(
        b.call(sql_heartbeat("XG", "SX", "a = 1", 1)).await.code,
        SUCCESS
    );
    let resp = b.call(registered_pull("XG", "SX", 0, 1)).await;
    assert_eq!(resp.code, SYSTEM_ERROR);
    assert_eq!(
        resp.remark.as_deref(),
        Some("The broker does not support consumer to filter message by SQL92")
    );
    b.stop().await;
}

#[tokio::test]
async fn parked_sql_pull_is_not_woken_by_a_non_matching_message() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    send_all(&b, "SL", &[("first", &[("kind", "old")])]).await;

    let mut h = pull_header("G", "SL", 0, 1);
    h.sys_flag = SUSPEND_FLAGS;
    h.suspend_timeout_millis = 60_000;
    h.expression_type = Some("SQL92".into());
    h.subscription = Some("kind = 'wanted' AND n > 1".into());
    let client = b.client.clone();
    let addr = b.addr.clone();
    let parked = tokio::spawn(async move {
        client
            .invoke(&addr, pull(&h), Duration::from_secs(90))
            .await
            .unwrap()
    });
    b.handle.wait_parked_pulls(1).await;

    send_all(
        &b,
        "SL",
        &[
            ("skip-kind", &[("kind", "other"), ("n", "5")]),
            ("skip-n", &[("kind", "wanted"), ("n", "1")]),
        ],
    )
    .await;
    // Still parked, waiting past the unmatched entries.
    b.handle.wait_parked_pulls(1).await;
    assert!(!parked.is_finished());

    send_all(&b, "SL", &[("take", &[("kind", "wanted"), ("n", "2")])]).await;
    let resp = tokio::time::timeout(Duration::from_secs(20), parked)
        .await
        .expect("woken by the matching send")
        .unwrap();
    assert_eq!(resp.code, SUCCESS, "{resp:?}");
    assert_eq!(bodies(&resp), ["take"]);
    assert_eq!(next_offset(&resp), 4);
    assert_eq!(b.handle.parked_pulls(), 0);
    b.stop().await;
}

#[tokio::test]
async fn parked_sql_pull_times_out_with_no_match_when_nothing_matches() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    send_all(&b, "ST", &[("first", &[("kind", "old")])]).await;
    let mut h = pull_header("G", "ST", 0, 1);
    h.sys_flag = SUSPEND_FLAGS;
    h.suspend_timeout_millis = 300;
    h.expression_type = Some("SQL92".into());
    h.subscription = Some("kind = 'wanted'".into());
    let client = b.client.clone();
    let addr = b.addr.clone();
    let parked = tokio::spawn(async move {
        client
            .invoke(&addr, pull(&h), Duration::from_secs(30))
            .await
            .unwrap()
    });
    b.handle.wait_parked_pulls(1).await;
    send_all(&b, "ST", &[("skip", &[("kind", "other")])]).await;
    let resp = parked.await.unwrap();
    // The unmatched entry is stepped over, so the client does not read it again.
    assert_eq!(resp.code, PULL_RETRY_IMMEDIATELY, "{resp:?}");
    assert_eq!(next_offset(&resp), 2);
    b.stop().await;
}
