//! Delay levels: a message with DELAY waits in SCHEDULE_TOPIC_XXXX and reaches its topic once,
//! after its delay; delivery offsets survive a graceful restart and a SIGKILL.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use apogee_broker::BrokerConfig;
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{GetTopicConfigRequestHeader, SendMessageResponseHeader};
use apogee_protocol::message::{java_string_hash, MessageRecord};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{RemotingClient, RemotingConfig};

use crate::common::*;

/// Anything requests can be sent to: an in-process test broker or one in another process.
pub trait Caller {
    fn call(&self, request: RemotingCommand) -> impl Future<Output = RemotingCommand>;
}

impl Caller for TestBroker {
    fn call(&self, request: RemotingCommand) -> impl Future<Output = RemotingCommand> {
        TestBroker::call(self, request)
    }
}

/// A broker in another process.
pub struct Remote {
    addr: String,
    client: RemotingClient,
}

impl Remote {
    pub fn connect(addr: String) -> Remote {
        Remote {
            addr,
            client: RemotingClient::new(RemotingConfig::default()),
        }
    }
}

impl Caller for Remote {
    async fn call(&self, request: RemotingCommand) -> RemotingCommand {
        self.client
            .invoke(&self.addr, request, TIMEOUT)
            .await
            .expect("response")
    }
}

/// How long a test waits for a delivery before failing.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(20);

/// A test broker with short custom delay levels.
pub fn delay_config(dir: &Path, levels: &str) -> BrokerConfig {
    let mut c = config(dir);
    c.message_delay_level = levels.into();
    c
}

/// Every record of `topic`/`queue_id` from offset 0 (pulled by a tools group).
pub async fn all_records(b: &impl Caller, topic: &str, queue_id: i32) -> Vec<MessageRecord> {
    let mut out = Vec::new();
    loop {
        let mut h = pull_header("TOOLS_CONSUMER", topic, queue_id, out.len() as i64);
        h.sys_flag = 0x4;
        let r = b.call(pull(&h)).await;
        if r.code != SUCCESS {
            return out;
        }
        let got = records(&r.body);
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

/// Polls `check` every 50 ms until it yields a value, failing after [`DELIVERY_DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let polled = async {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
            if let Some(v) = check().await {
                return v;
            }
        }
    };
    tokio::time::timeout(DELIVERY_DEADLINE, polled)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits until `topic`/`queue_id` holds at least `n` records and returns them.
pub async fn wait_records(
    b: &impl Caller,
    topic: &str,
    queue_id: i32,
    n: usize,
) -> Vec<MessageRecord> {
    wait_for(&format!("{n} record(s) in {topic}/{queue_id}"), || async {
        let recs = all_records(b, topic, queue_id).await;
        (recs.len() >= n).then_some(recs)
    })
    .await
}

pub fn uniq_keys(recs: &[MessageRecord]) -> Vec<String> {
    let mut keys: Vec<String> = recs
        .iter()
        .map(|r| r.uniq_key().expect("UNIQ_KEY").into_owned())
        .collect();
    keys.sort();
    keys
}

async fn send_delayed(b: &impl Caller, topic: &str, uniq: &str, level: &str) -> RemotingCommand {
    let p = props(&[
        ("UNIQ_KEY", uniq),
        ("DELAY", level),
        ("TAGS", "TagD"),
        ("KEYS", "k1 k2"),
        ("WAIT", "true"),
    ]);
    b.call(send_v2(&send_header(topic, 0, &p), uniq.as_bytes()))
        .await
}

#[tokio::test]
async fn a_delayed_message_waits_in_its_level_queue_then_arrives_once_with_its_properties() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(delay_config(dir.path(), "1s 2s 3s")).await;
    let r = send_delayed(&b, "DT", "D0000001", "1").await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let h: SendMessageResponseHeader = r.decode_header().unwrap();
    // The response names the real queue.
    assert_eq!(h.queue_id, 0);
    assert_eq!(h.transaction_id.as_deref(), Some("D0000001"));

    // Waiting: in the level's queue, not in the topic.
    let waiting = all_records(&b, "SCHEDULE_TOPIC_XXXX", 0).await;
    assert_eq!(waiting.len(), 1);
    let w = &waiting[0];
    assert_eq!(w.property("REAL_TOPIC").as_deref(), Some("DT"));
    assert_eq!(w.property("REAL_QID").as_deref(), Some("0"));
    assert_eq!(w.property("DELAY").as_deref(), Some("1"));
    assert!(all_records(&b, "DT", 0).await.is_empty());

    let got = wait_records(&b, "DT", 0, 1).await;
    let m = &got[0];
    assert!(
        m.store_timestamp >= w.store_timestamp + 1000,
        "delivered {} ms after it was stored",
        m.store_timestamp - w.store_timestamp
    );
    assert_eq!(&m.body[..], b"D0000001");
    assert_eq!(m.uniq_key().as_deref(), Some("D0000001"));
    assert_eq!(m.tags().as_deref(), Some("TagD"));
    assert_eq!(m.keys().collect::<Vec<_>>(), ["k1", "k2"]);
    assert_eq!(m.property("DELAY"), None);
    assert_eq!(m.property("REAL_TOPIC").as_deref(), Some("DT"));
    assert_eq!(
        m.property("REPUT_FROM").as_deref(),
        Some(w.physical_offset.to_string().as_str())
    );
    assert_eq!((m.flag, m.born_timestamp), (w.flag, w.born_timestamp));
    assert_ne!(m.physical_offset, w.physical_offset);
    // The tags code was computed again: a tag subscription sees it.
    let mut tagged = pull_header("CGD", "DT", 0, 0);
    tagged.subscription = Some("TagD".into());
    assert_eq!(records(&b.call(pull(&tagged)).await.body).len(), 1);
    let h = send_delayed(&b, "DT", "D0000002", "9").await;
    assert_eq!(h.code, SUCCESS);
    // Above the highest level: clamped to it.
    let clamped = all_records(&b, "SCHEDULE_TOPIC_XXXX", 2).await;
    assert_eq!(clamped.len(), 1);
    assert_eq!(clamped[0].property("DELAY").as_deref(), Some("3"));

    // Delivered once: the level's offset moved past it and nothing else came.
    wait_for("the level-1 offset", || async {
        (b.handle.delay_offsets().get(&1) == Some(&1)).then_some(())
    })
    .await;
    assert_eq!(all_records(&b, "DT", 0).await.len(), 1);
    assert_eq!(java_string_hash("TagD") as i64, m.tags_code());
    b.stop().await;
}

#[tokio::test]
async fn a_batch_cannot_carry_a_delay_level() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let mut cmd = send_batch("BT", 0, &[(b"a", "BAT00001"), (b"b", "BAT00002")]);
    cmd.ext_fields.insert(
        "i",
        props(&[("UNIQ_KEY", "X"), ("DELAY", "2")]).encode_to_string(),
    );
    let r = b.call(cmd).await;
    assert_eq!(r.code, MESSAGE_ILLEGAL, "{r:?}");
    b.stop().await;
}

#[tokio::test]
async fn delay_offsets_survive_a_graceful_restart_without_loss_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let c = delay_config(dir.path(), "1s 4s");
    let b = TestBroker::start(c.clone()).await;
    for u in ["G0000001", "G0000002"] {
        assert_eq!(send_delayed(&b, "RT1", u, "1").await.code, SUCCESS);
    }
    assert_eq!(send_delayed(&b, "RT1", "G0000003", "2").await.code, SUCCESS);
    wait_records(&b, "RT1", 0, 2).await;
    b.stop().await;
    let text = std::fs::read_to_string(dir.path().join("config/delayOffset.json")).unwrap();
    assert!(text.contains(r#""offsetTable":{1:2"#), "{text}");
    assert!(text.contains(r#""dataVersion":{"#), "{text}");

    let b = TestBroker::start(c).await;
    let got = wait_records(&b, "RT1", 0, 3).await;
    assert_eq!(uniq_keys(&got), ["G0000001", "G0000002", "G0000003"]);
    wait_for("level 2 to be done", || async {
        (b.handle.delay_offsets().get(&2) == Some(&1)).then_some(())
    })
    .await;
    assert_eq!(all_records(&b, "RT1", 0).await.len(), 3);
    b.stop().await;
}

const CHILD_ENV: &str = "APOGEE_DELAY_CRASH_CHILD";

fn crash_config(dir: &Path) -> BrokerConfig {
    let mut c = delay_config(dir, "1s 3s");
    // The child never writes its offsets: everything it delivered is "after the last persist".
    c.flush_delay_offset_interval_ms = 3_600_000;
    c
}

/// The broker that gets killed, active only in the child process: prints its port and serves
/// until SIGKILL.
#[tokio::test]
async fn delay_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let b = TestBroker::start(crash_config(Path::new(&dir))).await;
    println!("PORT {}", b.handle.local_addr().port());
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

#[tokio::test]
async fn a_sigkill_between_delivery_and_offset_persist_neither_loses_nor_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["delay::delay_crash_child", "--exact", "--nocapture"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let port = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
            .find_map(|l| {
                l.strip_prefix("PORT ")
                    .and_then(|p| p.trim().parse::<u16>().ok())
            })
    })
    .await
    .unwrap()
    .expect("the child broker prints its port");
    let remote = Remote::connect(format!("127.0.0.1:{port}"));

    for u in ["C0000001", "C0000002", "C0000003"] {
        assert_eq!(send_delayed(&remote, "CT", u, "1").await.code, SUCCESS);
    }
    assert_eq!(
        send_delayed(&remote, "CT", "C0000004", "2").await.code,
        SUCCESS
    );
    wait_records(&remote, "CT", 0, 3).await;
    child.kill().unwrap();
    child.wait().unwrap();
    remote.client.close();
    assert!(!dir.path().join("config/delayOffset.json").exists());

    let b = TestBroker::start(crash_config(dir.path())).await;
    let got = wait_records(&b, "CT", 0, 4).await;
    assert_eq!(
        uniq_keys(&got),
        ["C0000001", "C0000002", "C0000003", "C0000004"]
    );
    wait_for("both levels to be done", || async {
        let o = b.handle.delay_offsets();
        (o.get(&1) == Some(&3) && o.get(&2) == Some(&1)).then_some(())
    })
    .await;
    assert_eq!(all_records(&b, "CT", 0).await.len(), 4);
    b.stop().await;
}

/// The topic config of `topic` as JSON text.
pub async fn topic_config(b: &impl Caller, topic: &str) -> String {
    let r = b
        .call(RemotingCommand::request_with_header(
            rc::GET_TOPIC_CONFIG,
            &GetTopicConfigRequestHeader {
                topic: topic.into(),
            },
        ))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    String::from_utf8_lossy(&r.body).into_owned()
}
