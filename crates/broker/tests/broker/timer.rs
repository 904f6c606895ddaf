//! Timer messages (TIMER_DELIVER_MS, TIMER_DELAY_SEC, TIMER_DELAY_MS): delivered at, not before,
//! their time; bounded by timerMaxDelaySec; kept across a restart; cancellable.

use std::path::Path;

use apogee_broker::{BrokerConfig, CancelOutcome};
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::SendMessageResponseHeader;
use apogee_protocol::RemotingCommand;

use crate::common::*;
use crate::delay::{all_records, uniq_keys, wait_for, wait_records};

/// A broker with 100 ms timer ticks.
fn timer_config(dir: &Path) -> BrokerConfig {
    let mut c = config(dir);
    c.timer_precision_ms = 100;
    c.message_delay_level = "1s 2s".into();
    c
}

fn now_ms() -> i64 {
    apogee_broker::manager::now_ms()
}

async fn send_timer(
    b: &TestBroker,
    topic: &str,
    uniq: &str,
    prop: (&str, &str),
) -> RemotingCommand {
    let p = props(&[("UNIQ_KEY", uniq), ("TAGS", "TT"), prop]);
    b.call(send_v2(&send_header(topic, 1, &p), uniq.as_bytes()))
        .await
}

#[tokio::test]
async fn timer_messages_arrive_at_and_not_before_their_time() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(timer_config(dir.path())).await;
    let sent_at = now_ms();
    let deliver_at = sent_at + 1_250;
    let at = deliver_at.to_string();
    let r = send_timer(&b, "TM", "T0000001", ("TIMER_DELIVER_MS", &at)).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let h: SendMessageResponseHeader = r.decode_header().unwrap();
    assert_eq!(h.queue_id, 1);
    assert_eq!(
        send_timer(&b, "TM", "T0000002", ("TIMER_DELAY_SEC", "1"))
            .await
            .code,
        SUCCESS
    );
    assert_eq!(
        send_timer(&b, "TM", "T0000003", ("TIMER_DELAY_MS", "700"))
            .await
            .code,
        SUCCESS
    );
    // Waiting in the timer topic with their real address and rounded time.
    let waiting = all_records(&b, "rmq_sys_wheel_timer", 0).await;
    assert_eq!(waiting.len(), 3);
    assert_eq!(waiting[0].property("REAL_TOPIC").as_deref(), Some("TM"));
    assert_eq!(waiting[0].property("REAL_QID").as_deref(), Some("1"));
    let rounded = if deliver_at % 100 == 0 {
        deliver_at - 100
    } else {
        deliver_at / 100 * 100
    };
    assert_eq!(
        waiting[0].property("TIMER_OUT_MS").as_deref(),
        Some(rounded.to_string().as_str())
    );
    assert!(all_records(&b, "TM", 1).await.is_empty());

    let got = wait_records(&b, "TM", 1, 3).await;
    assert_eq!(uniq_keys(&got), ["T0000001", "T0000002", "T0000003"]);
    for m in &got {
        let due = match m.uniq_key().as_deref() {
            Some("T0000001") => deliver_at,
            Some("T0000002") => sent_at + 1_000,
            _ => sent_at + 700,
        };
        assert!(
            m.store_timestamp >= due,
            "{:?} arrived {} ms early",
            m.uniq_key(),
            due - m.store_timestamp
        );
        assert_eq!(m.property("REAL_TOPIC"), None);
        assert_eq!(m.property("REAL_QID"), None);
        assert!(m.property("TIMER_OUT_MS").is_some());
        assert_eq!(m.tags().as_deref(), Some("TT"));
        assert_eq!(m.queue_id, 1);
    }
    let stats = b.handle.timer_stats().unwrap();
    assert_eq!(stats.delivered, 3);
    b.stop().await;
}

#[tokio::test]
async fn a_timer_beyond_three_days_is_refused_and_a_past_one_is_delivered_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let too_far = (now_ms() + 259_200_000 + 60_000).to_string();
    let r = send_timer(&b, "TF", "F0000001", ("TIMER_DELIVER_MS", &too_far)).await;
    assert_eq!(r.code, MESSAGE_ILLEGAL, "{r:?}");
    assert!(r.remark.unwrap().contains("259200000ms"));
    let r = send_timer(&b, "TF", "F0000002", ("TIMER_DELAY_SEC", "259260")).await;
    assert_eq!(r.code, MESSAGE_ILLEGAL);
    let r = send_timer(&b, "TF", "F0000003", ("TIMER_DELAY_SEC", "later")).await;
    assert_eq!(r.code, MESSAGE_ILLEGAL);
    // Three days exactly is fine.
    let r = send_timer(&b, "TF", "F0000004", ("TIMER_DELAY_SEC", "259000")).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    // A time already past: an ordinary message, there at once.
    let past = (now_ms() - 5_000).to_string();
    let r = send_timer(&b, "TF", "F0000005", ("TIMER_DELIVER_MS", &past)).await;
    assert_eq!(r.code, SUCCESS);
    let now = all_records(&b, "TF", 1).await;
    assert_eq!(uniq_keys(&now), ["F0000005"]);
    assert_eq!(now[0].property("TIMER_OUT_MS"), None);
    b.stop().await;
}

#[tokio::test]
async fn a_delay_level_wins_over_timer_properties() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(timer_config(dir.path())).await;
    let p = props(&[
        ("UNIQ_KEY", "W0000001"),
        ("DELAY", "1"),
        ("TIMER_DELAY_SEC", "100000"),
    ]);
    assert_eq!(
        b.call(send_v2(&send_header("TW", 0, &p), b"w")).await.code,
        SUCCESS
    );
    assert!(all_records(&b, "rmq_sys_wheel_timer", 0).await.is_empty());
    let got = wait_records(&b, "TW", 0, 1).await;
    assert_eq!(got[0].property("TIMER_DELAY_SEC"), None);
    assert_eq!(got[0].property("DELAY"), None);
    b.stop().await;
}

#[tokio::test]
async fn pending_timers_survive_a_restart_and_arrive_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = timer_config(dir.path());
    let b = TestBroker::start(c.clone()).await;
    let early = (now_ms() + 300).to_string();
    let late = (now_ms() + 2_500).to_string();
    assert_eq!(
        send_timer(&b, "TR", "R0000001", ("TIMER_DELIVER_MS", &early))
            .await
            .code,
        SUCCESS
    );
    assert_eq!(
        send_timer(&b, "TR", "R0000002", ("TIMER_DELIVER_MS", &late))
            .await
            .code,
        SUCCESS
    );
    wait_records(&b, "TR", 1, 1).await;
    b.stop().await;
    assert!(dir.path().join("store/timercheck").exists());
    assert!(dir.path().join("store/timerwheel").exists());

    let b = TestBroker::start(c).await;
    let got = wait_records(&b, "TR", 1, 2).await;
    assert_eq!(uniq_keys(&got), ["R0000001", "R0000002"]);
    let late_ms: i64 = late.parse().unwrap();
    assert!(got
        .iter()
        .all(|m| m.uniq_key().as_deref() != Some("R0000002") || m.store_timestamp >= late_ms));
    wait_for("the timer cursor to pass the late tick", || async {
        let s = b.handle.timer_stats().unwrap();
        ((s.cursor_tick + 1) * 100 > late_ms).then_some(())
    })
    .await;
    assert_eq!(all_records(&b, "TR", 1).await.len(), 2);
    b.stop().await;
}

#[tokio::test]
async fn cancelled_timers_are_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(timer_config(dir.path())).await;
    let at = (now_ms() + 1_500).to_string();
    for u in ["X0000001", "X0000002", "X0000003"] {
        assert_eq!(
            send_timer(&b, "TX", u, ("TIMER_DELIVER_MS", &at))
                .await
                .code,
            SUCCESS
        );
    }
    // Cancelled by the broker's own API (what gRPC RecallMessage will use)...
    assert_eq!(
        b.handle
            .cancel_timer_message("TX", "X0000001")
            .await
            .unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        b.handle
            .cancel_timer_message("TX", "NOSUCHID")
            .await
            .unwrap(),
        CancelOutcome::NotFound
    );
    // ... and by a client's delete marker for the same time (RocketMQ 5.x).
    let marker = props(&[
        ("TIMER_DELIVER_MS", &at),
        ("TIMER_DEL_UNIQKEY", "TX+X0000002"),
    ]);
    assert_eq!(
        b.call(send_v2(&send_header("TX", 1, &marker), b"0"))
            .await
            .code,
        SUCCESS
    );
    let got = wait_records(&b, "TX", 1, 1).await;
    let at_ms: i64 = at.parse().unwrap();
    wait_for("the timer cursor to pass the tick", || async {
        let s = b.handle.timer_stats().unwrap();
        ((s.cursor_tick + 1) * 100 > at_ms).then_some(())
    })
    .await;
    assert_eq!(uniq_keys(&got), ["X0000003"]);
    assert_eq!(uniq_keys(&all_records(&b, "TX", 1).await), ["X0000003"]);
    assert_eq!(b.handle.timer_stats().unwrap().cancelled, 2);
    // A marker for a time already past is refused.
    let stale = props(&[("TIMER_DELIVER_MS", "5"), ("TIMER_DEL_UNIQKEY", "TX+X")]);
    assert_eq!(
        b.call(send_v2(&send_header("TX", 1, &stale), b"0"))
            .await
            .code,
        MESSAGE_ILLEGAL
    );
    b.stop().await;
}

#[tokio::test]
async fn timers_are_refused_when_the_wheel_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.timer_wheel_enable = false;
    let b = TestBroker::start(c).await;
    assert!(b.handle.timer_stats().is_none());
    let r = send_timer(&b, "TO", "O0000001", ("TIMER_DELAY_SEC", "5")).await;
    assert_eq!(r.code, SYSTEM_ERROR);
    assert!(r.remark.unwrap().contains("timerWheelEnable"));
    b.stop().await;
}
