//! Long polling: parked pulls woken by sends, timing out, released by closed connections, bounded.

use std::time::Duration;

use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::PullMessageResponseHeader;
use apogee_remoting::{RemotingClient, RemotingConfig};

use crate::common::*;

/// FLAG_SUSPEND | FLAG_SUBSCRIPTION.
const SUSPEND_FLAGS: i32 = 0x2 | 0x4;

#[tokio::test]
async fn parked_pull_is_answered_by_the_next_send() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    assert_eq!(
        b.call(send_v2(&send_header("LP", 0, &props(&[])), b"old"))
            .await
            .code,
        SUCCESS
    );

    let mut h = pull_header("G", "LP", 0, 1);
    h.sys_flag = SUSPEND_FLAGS;
    h.suspend_timeout_millis = 60_000;
    let client = b.client.clone();
    let addr = b.addr.clone();
    let parked = tokio::spawn(async move {
        client
            .invoke(&addr, pull(&h), Duration::from_secs(90))
            .await
            .unwrap()
    });
    b.handle.wait_parked_pulls(1).await;
    assert!(!parked.is_finished());

    let sent = b
        .call(send_v2(&send_header("LP", 0, &props(&[])), b"new"))
        .await;
    assert_eq!(sent.code, SUCCESS);
    // The answer comes from the send, long before the 60 s suspension would end.
    let resp = tokio::time::timeout(Duration::from_secs(20), parked)
        .await
        .expect("woken by the send")
        .unwrap();
    assert_eq!(resp.code, SUCCESS, "{resp:?}");
    let recs = records(&resp.body);
    assert_eq!(recs.len(), 1);
    assert_eq!(&recs[0].body[..], b"new");
    let ph: PullMessageResponseHeader = resp.decode_header().unwrap();
    assert_eq!(ph.next_begin_offset, 2);
    assert_eq!(b.handle.parked_pulls(), 0);
    b.stop().await;
}

#[tokio::test]
async fn parked_pull_with_a_tag_filter_ignores_unmatched_sends() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let mut h = pull_header("G", "LPT", 0, 0);
    h.sys_flag = SUSPEND_FLAGS;
    h.suspend_timeout_millis = 60_000;
    h.subscription = Some("Wanted".into());
    assert_eq!(
        b.call(send_v2(&send_header("LPT", 0, &props(&[])), b"create"))
            .await
            .code,
        SUCCESS
    );
    h.queue_offset = 1;
    let client = b.client.clone();
    let addr = b.addr.clone();
    let parked = tokio::spawn(async move {
        client
            .invoke(&addr, pull(&h), Duration::from_secs(90))
            .await
            .unwrap()
    });
    b.handle.wait_parked_pulls(1).await;
    let other = props(&[("TAGS", "Other")]);
    assert_eq!(
        b.call(send_v2(&send_header("LPT", 0, &other), b"skip"))
            .await
            .code,
        SUCCESS
    );
    // Parked again, now waiting past the unmatched entry.
    b.handle.wait_parked_pulls(1).await;
    assert!(!parked.is_finished());
    let wanted = props(&[("TAGS", "Wanted")]);
    assert_eq!(
        b.call(send_v2(&send_header("LPT", 0, &wanted), b"take"))
            .await
            .code,
        SUCCESS
    );
    let resp = tokio::time::timeout(Duration::from_secs(20), parked)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.code, SUCCESS);
    let recs = records(&resp.body);
    assert_eq!(recs.len(), 1);
    assert_eq!(&recs[0].body[..], b"take");
    b.stop().await;
}

#[tokio::test]
async fn parked_pull_times_out_with_pull_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    assert_eq!(
        b.call(send_v2(&send_header("LQ", 0, &props(&[])), b"m"))
            .await
            .code,
        SUCCESS
    );
    let mut h = pull_header("G", "LQ", 0, 1);
    h.sys_flag = SUSPEND_FLAGS;
    h.suspend_timeout_millis = 150;
    let resp = b.call(pull(&h)).await;
    assert_eq!(resp.code, PULL_NOT_FOUND, "{resp:?}");
    let ph: PullMessageResponseHeader = resp.decode_header().unwrap();
    assert_eq!(ph.next_begin_offset, 1);
    assert_eq!(b.handle.parked_pulls(), 0);
    b.stop().await;
}

#[tokio::test]
async fn short_polling_waits_its_period_then_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.long_polling_enable = false;
    c.short_polling_time_ms = 100;
    let b = TestBroker::start(c).await;
    assert_eq!(
        b.call(send_v2(&send_header("SP", 0, &props(&[])), b"m"))
            .await
            .code,
        SUCCESS
    );
    let mut h = pull_header("G", "SP", 0, 1);
    h.sys_flag = SUSPEND_FLAGS;
    h.suspend_timeout_millis = 60_000;
    let resp = b.call(pull(&h)).await;
    assert_eq!(resp.code, PULL_NOT_FOUND);
    b.stop().await;
}

#[tokio::test]
async fn closing_the_connection_releases_its_parked_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    assert_eq!(
        b.call(send_v2(&send_header("LC", 0, &props(&[])), b"m"))
            .await
            .code,
        SUCCESS
    );
    let consumer = RemotingClient::new(RemotingConfig::default());
    for queue in 0..3 {
        let mut h = pull_header("G", "LC", queue, if queue == 0 { 1 } else { 0 });
        h.sys_flag = SUSPEND_FLAGS;
        h.suspend_timeout_millis = 60_000;
        let c = consumer.clone();
        let addr = b.addr.clone();
        tokio::spawn(async move {
            let _ = c.invoke(&addr, pull(&h), Duration::from_secs(90)).await;
        });
    }
    b.handle.wait_parked_pulls(3).await;
    consumer.close();
    b.handle.wait_parked_pulls(0).await;
    b.stop().await;
}

#[tokio::test]
async fn parked_pulls_are_capped_and_answered_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_parked_pulls = 1;
    let b = TestBroker::start(c).await;
    assert_eq!(
        b.call(send_v2(&send_header("LS", 0, &props(&[])), b"m"))
            .await
            .code,
        SUCCESS
    );
    let mut h = pull_header("G", "LS", 0, 1);
    h.sys_flag = SUSPEND_FLAGS;
    h.suspend_timeout_millis = 60_000;
    let client = b.client.clone();
    let addr = b.addr.clone();
    let h1 = h.clone();
    let first = tokio::spawn(async move {
        client
            .invoke(&addr, pull(&h1), Duration::from_secs(90))
            .await
    });
    b.handle.wait_parked_pulls(1).await;
    // Over the cap: answered at once.
    let second = b.call(pull(&h)).await;
    assert_eq!(second.code, PULL_NOT_FOUND);
    assert!(!first.is_finished());

    // The client goes away; the broker must stop without waiting out the 60 s suspension.
    b.client.close();
    assert!(first.await.unwrap().is_err());
    tokio::time::timeout(Duration::from_secs(20), b.handle.shutdown())
        .await
        .expect("shutdown does not wait for the suspension")
        .unwrap();
}

#[tokio::test]
async fn shutdown_answers_parked_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    assert_eq!(
        b.call(send_v2(&send_header("LX", 0, &props(&[])), b"m"))
            .await
            .code,
        SUCCESS
    );
    let mut h = pull_header("G", "LX", 0, 1);
    h.sys_flag = SUSPEND_FLAGS;
    h.suspend_timeout_millis = 60_000;
    let client = b.client.clone();
    let addr = b.addr.clone();
    let parked = tokio::spawn(async move {
        client
            .invoke(&addr, pull(&h), Duration::from_secs(90))
            .await
    });
    b.handle.wait_parked_pulls(1).await;
    let TestBroker { handle, client, .. } = b;
    tokio::time::timeout(Duration::from_secs(20), handle.shutdown())
        .await
        .unwrap()
        .unwrap();
    let resp = parked
        .await
        .unwrap()
        .expect("answered before the connection closed");
    assert_eq!(resp.code, PULL_NOT_FOUND);
    client.close();
}
