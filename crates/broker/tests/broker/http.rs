//! The HTTP server: `/metrics` values and the JSON API checked against what was sent and pulled,
//! and (with `APOGEE_BROWSER_TESTS=1`) the web page rendered by headless Chromium.

use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::SUCCESS;
use apogee_protocol::header::{SendMessageResponseHeader, UpdateConsumerOffsetRequestHeader};
use apogee_protocol::RemotingCommand;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const TOPIC: &str = "WebT";
const GROUP: &str = "WebG";
const SENT: usize = 5;
const COMMITTED: i64 = 2;

/// (status, body) of a request `method target`.
async fn request(addr: &str, method: &str, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("{method} {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    let text = String::from_utf8(buf).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .expect("content length");
    if method != "HEAD" {
        assert_eq!(len, body.len(), "Content-Length matches the body");
    }
    (status, body.to_owned())
}

async fn get_json(addr: &str, target: &str) -> (u16, Value) {
    let (status, body) = request(addr, "GET", target).await;
    (status, serde_json::from_str(&body).expect("JSON body"))
}

/// The value of the one sample of `name` whose labels include every `labels` pair.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
    found.first().copied()
}

/// A broker with `SENT` messages in queue 0 of `TOPIC`, all pulled by `GROUP`, which committed
/// offset `COMMITTED`. Returns the broker, its HTTP server and the offsetMsgIds.
async fn broker_with_traffic(
    dir: &std::path::Path,
) -> (TestBroker, apogee_broker::http::HttpServer, Vec<String>) {
    let b = TestBroker::start(config(dir)).await;
    let http = b
        .handle
        .start_http("127.0.0.1:0")
        .await
        .expect("http starts");
    let mut ids = Vec::new();
    for i in 0..SENT {
        let key = format!("web-key-{i}");
        let uniq = format!("WEBUNIQ{i:04}");
        let p = props(&[("KEYS", &key), ("UNIQ_KEY", &uniq), ("TAGS", "T")]);
        let body = format!("body-{i}");
        let r = b
            .call(send_v2(&send_header(TOPIC, 0, &p), body.as_bytes()))
            .await;
        assert_eq!(r.code, SUCCESS, "{r:?}");
        ids.push(
            r.decode_header::<SendMessageResponseHeader>()
                .unwrap()
                .msg_id,
        );
    }
    let r = b.call(pull(&pull_header(GROUP, TOPIC, 0, 0))).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    assert_eq!(records(&r.body).len(), SENT);
    let r = b
        .call(RemotingCommand::request_with_header(
            rc::UPDATE_CONSUMER_OFFSET,
            &UpdateConsumerOffsetRequestHeader {
                consumer_group: GROUP.into(),
                topic: TOPIC.into(),
                queue_id: 0,
                commit_offset: COMMITTED,
            },
        ))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    (b, http, ids)
}

#[tokio::test]
async fn metrics_count_sent_and_pulled_messages_and_group_diff_is_the_unconsumed_count() {
    let dir = tempfile::tempdir().unwrap();
    let (b, http, _) = broker_with_traffic(dir.path()).await;
    let addr = http.local_addr().to_string();
    let (status, m) = request(&addr, "GET", "/metrics").await;
    assert_eq!(status, 200);

    let topic = [("topic", TOPIC)];
    assert_eq!(
        sample(&m, "rocketmq_messages_in_total", &topic),
        Some(SENT as f64)
    );
    let (_, cluster) = get_json(&addr, "/api/cluster.json").await;
    let log_bytes = cluster["brokers"][0]["commitLogMaxOffset"]
        .as_f64()
        .unwrap();
    assert!(log_bytes > 0.0);
    assert_eq!(
        sample(&m, "rocketmq_throughput_in_total", &topic),
        Some(log_bytes),
        "bytes in are the records appended to the empty CommitLog"
    );
    let tg = [("topic", TOPIC), ("consumer_group", GROUP)];
    assert_eq!(
        sample(&m, "rocketmq_messages_out_total", &tg),
        Some(SENT as f64)
    );
    assert_eq!(
        sample(&m, "rocketmq_throughput_out_total", &tg),
        Some(log_bytes)
    );
    let unconsumed = (SENT as i64 - COMMITTED) as f64;
    assert_eq!(
        sample(&m, "rocketmq_consumer_lag_messages", &tg),
        Some(unconsumed)
    );
    assert!(sample(&m, "rocketmq_consumer_lag_latency", &tg).is_some());
    assert_eq!(
        sample(
            &m,
            "rocketmq_group_diff",
            &[
                ("group", GROUP),
                ("topic", TOPIC),
                ("countOfOnlineConsumers", "0"),
                ("msgModel", "CLUSTERING")
            ]
        ),
        Some(unconsumed)
    );
    let send = [("request_code", "310"), ("response_code", "0")];
    assert_eq!(
        sample(&m, "rocketmq_rpc_latency_count", &send),
        Some(SENT as f64)
    );
    assert_eq!(
        sample(
            &m,
            "rocketmq_rpc_latency_bucket",
            &[("request_code", "310"), ("le", "+Inf")]
        ),
        Some(SENT as f64)
    );
    assert_eq!(sample(&m, "rocketmq_storage_size", &[]), Some(log_bytes));
    assert!(sample(&m, "rocketmq_storage_flush_behind_bytes", &[]).is_some());
    assert!(sample(&m, "rocketmq_storage_flush_latency_count", &[]).is_some());
    for family in [
        "rocketmq_messages_in_total counter",
        "rocketmq_rpc_latency histogram",
        "rocketmq_group_diff gauge",
    ] {
        assert!(m.contains(&format!("# TYPE {family}\n")), "{family}");
    }

    // Series of a deleted group go away.
    let r = b
        .call(RemotingCommand::request_with_header(
            rc::DELETE_SUBSCRIPTIONGROUP,
            &apogee_protocol::header::DeleteSubscriptionGroupRequestHeader {
                group_name: GROUP.into(),
                clean_offset: true,
            },
        ))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let (_, m) = request(&addr, "GET", "/metrics").await;
    assert_eq!(sample(&m, "rocketmq_messages_out_total", &tg), None);
    assert_eq!(sample(&m, "rocketmq_group_diff", &[("group", GROUP)]), None);

    drop(http);
    b.stop().await;
}

#[tokio::test]
async fn json_api_reports_queues_progress_and_finds_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (b, http, ids) = broker_with_traffic(dir.path()).await;
    let addr = http.local_addr().to_string();

    let (status, c) = get_json(&addr, "/api/cluster.json").await;
    assert_eq!(status, 200);
    assert_eq!(c["cluster"], b.handle.config().broker_cluster_name.as_str());
    assert_eq!(c["brokers"][0]["addr"], b.handle.broker_addr());
    assert_eq!(c["brokers"][0]["putMessages"], SENT as u64);

    let (_, t) = get_json(&addr, "/api/topics.json").await;
    let topic = t["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["topic"] == TOPIC)
        .expect("topic listed");
    assert_eq!(topic["queues"][0]["minOffset"], 0);
    assert_eq!(topic["queues"][0]["maxOffset"], SENT as u64);
    assert_eq!(topic["queues"][1]["maxOffset"], 0);

    let (_, g) = get_json(&addr, "/api/groups.json").await;
    let group = g["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["group"] == GROUP && x["topic"] == TOPIC)
        .expect("group listed");
    assert_eq!(group["lag"], SENT as u64 - COMMITTED as u64);
    assert_eq!(group["queues"][0]["consumerOffset"], COMMITTED);
    assert_eq!(group["queues"][0]["brokerOffset"], SENT as u64);
    assert_eq!(group["queues"][1]["lag"], 0);

    let (_, s) = get_json(&addr, "/api/stats").await;
    assert_eq!(s["messagesIn"], SENT as u64);
    assert_eq!(s["messagesOut"], SENT as u64);

    // By offsetMsgId, by client msgId (with topic), by key.
    let (status, m) = get_json(&addr, &format!("/api/message?id={}", ids[1])).await;
    assert_eq!(status, 200);
    assert_eq!(m["messages"][0]["body"], "body-1");
    assert_eq!(m["messages"][0]["offsetMsgId"], ids[1].as_str());
    assert_eq!(m["messages"][0]["msgId"], "WEBUNIQ0001");
    let (status, m) = get_json(&addr, "/api/message?id=WEBUNIQ0003&topic=WebT").await;
    assert_eq!(status, 200);
    assert_eq!(m["messages"][0]["body"], "body-3");
    assert_eq!(m["messages"][0]["queueOffset"], 3);
    let (status, m) = get_json(&addr, "/api/messages?topic=WebT&key=web-key-4").await;
    assert_eq!(status, 200);
    assert_eq!(m["messages"].as_array().unwrap().len(), 1);
    assert_eq!(m["messages"][0]["keys"], "web-key-4");
    let (status, _) = get_json(&addr, "/api/message?id=00000000000000000000000000000000").await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&addr, "/api/messages?topic=WebT").await;
    assert_eq!(status, 400);

    let (status, page) = request(&addr, "GET", "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>Apogee broker</title>"));
    assert!(!page.contains("src=\"http"), "no external assets");
    let (status, body) = request(&addr, "HEAD", "/metrics").await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(request(&addr, "GET", "/nope").await.0, 404);
    assert_eq!(request(&addr, "POST", "/metrics").await.0, 405);

    drop(http);
    b.stop().await;
}

/// Loads the page in headless Chromium and checks what it shows against the broker's state.
/// Needs `APOGEE_BROWSER_TESTS=1` and a `chromium` binary (or `APOGEE_CHROMIUM=/path`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_page_in_headless_chromium_shows_queues_lag_and_found_message() {
    if std::env::var("APOGEE_BROWSER_TESTS").as_deref() != Ok("1") {
        eprintln!("skipped: set APOGEE_BROWSER_TESTS=1 (needs chromium) to run the browser test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (b, http, _) = broker_with_traffic(dir.path()).await;
    let url = format!("http://{}/?topic={TOPIC}&key=web-key-4", http.local_addr());
    let profile = tempfile::tempdir().unwrap();
    let chromium = std::env::var("APOGEE_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .arg("90")
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--virtual-time-budget=5000",
                "--dump-dom",
            ])
            .arg(profile_arg)
            .arg(url)
            .output()
            .expect("chromium runs")
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-loaded=\"true\""),
        "page loaded its data; stderr:\n{}\ndom:\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains(&format!(
            "data-topic=\"{TOPIC}\" data-queue=\"0\" data-min=\"0\" data-max=\"{SENT}\""
        )),
        "queue 0 with its offsets: {dom}"
    );
    assert!(
        dom.contains(&format!(
            "class=\"group-total\" data-group=\"{GROUP}\" data-topic=\"{TOPIC}\" data-lag=\"{}\"",
            SENT as i64 - COMMITTED
        )),
        "group lag: {dom}"
    );
    assert!(
        dom.contains(&format!(
            "class=\"broker\" data-name=\"{}\"",
            b.handle.config().broker_name
        )),
        "broker row: {dom}"
    );
    assert!(
        dom.contains("<pre class=\"m-body\">body-4</pre>"),
        "message found by key: {dom}"
    );
    drop(http);
    b.stop().await;
}
