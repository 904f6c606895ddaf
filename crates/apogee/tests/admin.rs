//! `apogee admin` against a real `apogee standalone`: topics, sends and the three message queries,
//! consumer progress after a commit, cluster listing, JSON output, and the exit codes.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use apogee_client::{ClientConfig, ClientInstance, MessageQueue};
use serde_json::Value;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `apogee standalone`; killed on drop.
struct Server {
    child: Child,
    namesrv: String,
    broker: String,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let log = std::fs::File::create(data_dir.with_extension("log")).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_apogee"))
            .args(["standalone", "--data-dir"])
            .arg(data_dir)
            .args(["--namesrv-listen", "127.0.0.1:0"])
            .args(["--broker-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(["--broker-ip", "127.0.0.1"])
            .args(["--grpc-listen", "127.0.0.1:0"])
            .args(["--flush-disk-type", "sync"])
            .arg("--config")
            .arg(common::write_test_config(
                &data_dir.with_extension("toml"),
                "",
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("apogee starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains(" ready: ") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("no ready line from apogee");
            }
        };
        let field = |name: &str| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} missing from {line:?}"))
                .to_owned()
        };
        Server {
            namesrv: field("namesrv="),
            broker: field("broker="),
            child,
        }
    }

    /// Runs `apogee admin -n <namesrv> <args>`.
    fn admin(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_apogee"))
            .args(["admin", "-n", &self.namesrv, "--timeoutMillis", "10000"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("apogee admin runs")
    }

    /// Runs an admin command that must succeed, returning its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.admin(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "apogee admin {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs an admin command with `--json` that must succeed, returning the parsed output.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Commits `offset` for `group` on one queue, as a consumer does.
fn commit_offset(namesrv: &str, group: &str, mq: &MessageQueue, offset: i64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut config = ClientConfig::new(namesrv);
        config.instance_name = "admin-test-consumer".into();
        let inst = ClientInstance::new_unshared(config).expect("instance");
        inst.update_topic_route(&mq.topic).await.expect("route");
        inst.update_consumer_offset(group, mq, offset, false)
            .await
            .expect("commit");
        inst.shutdown().await;
    });
}

#[test]
fn admin_commands_work_against_a_standalone_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = Server::start(&data);

    // clusterList shows the broker; --json parses.
    let clusters = server.json(&["clusterList"]);
    let brokers = clusters.as_array().expect("array");
    assert!(
        brokers
            .iter()
            .any(|b| b["brokerName"] == "broker-a" && b["addr"] == server.broker.as_str()),
        "{clusters}"
    );
    assert!(server.ok(&["clusterList"]).contains(&server.broker));

    // updateTopic, then topicList and topicRoute show it.
    server.ok(&[
        "updateTopic",
        "-t",
        "AdminTopic",
        "-c",
        "DefaultCluster",
        "-r",
        "2",
        "-w",
        "2",
    ]);
    let list = server.json(&["topicList"]);
    assert!(
        list["topicList"]
            .as_array()
            .expect("topicList")
            .iter()
            .any(|t| t == "AdminTopic"),
        "{list}"
    );
    let route = server.json(&["topicRoute", "-t", "AdminTopic"]);
    assert_eq!(route["queueDatas"][0]["readQueueNums"], 2, "{route}");
    assert_eq!(route["queueDatas"][0]["writeQueueNums"], 2, "{route}");
    assert!(server
        .ok(&["topicRoute", "-t", "AdminTopic"])
        .contains("broker-a"));

    // Three sends to queue 1; the first is looked up three ways.
    let sent = server.json(&[
        "sendMessage",
        "-t",
        "AdminTopic",
        "-p",
        "hello-admin",
        "-k",
        "key-1",
        "-c",
        "TagA",
        "-b",
        "broker-a",
        "-i",
        "1",
    ]);
    assert_eq!(sent["sendStatus"], "SEND_OK", "{sent}");
    assert_eq!(sent["queueId"], 1);
    assert_eq!(sent["queueOffset"], 0);
    let msg_id = sent["msgId"].as_str().expect("msgId").to_owned();
    let offset_msg_id = sent["offsetMsgId"]
        .as_str()
        .expect("offsetMsgId")
        .to_owned();
    for body in ["second", "third"] {
        server.json(&[
            "sendMessage",
            "-t",
            "AdminTopic",
            "-p",
            body,
            "-b",
            "broker-a",
            "-i",
            "1",
        ]);
    }

    let by_offset_id = server.json(&["queryMsgById", "-i", &offset_msg_id]);
    assert_eq!(by_offset_id[0]["body"], "hello-admin", "{by_offset_id}");
    assert_eq!(by_offset_id[0]["msgId"], msg_id.as_str());
    assert_eq!(by_offset_id[0]["tags"], "TagA");

    let by_uniq_key = server.json(&["queryMsgById", "-i", &msg_id, "-t", "AdminTopic"]);
    assert_eq!(
        by_uniq_key[0]["offsetMsgId"],
        offset_msg_id.as_str(),
        "{by_uniq_key}"
    );

    let by_key = server.json(&["queryMsgByKey", "-t", "AdminTopic", "-k", "key-1"]);
    assert_eq!(by_key.as_array().map(Vec::len), Some(1), "{by_key}");
    assert_eq!(by_key[0]["msgId"], msg_id.as_str());
    assert!(server
        .ok(&["queryMsgByKey", "-t", "AdminTopic", "-k", "key-1"])
        .contains(&msg_id));

    let by_queue_offset = server.json(&[
        "queryMsgByOffset",
        "-t",
        "AdminTopic",
        "-b",
        "broker-a",
        "-i",
        "1",
        "-o",
        "2",
    ]);
    assert_eq!(by_queue_offset[0]["body"], "third", "{by_queue_offset}");

    let consumed = server.json(&["consumeMessage", "-t", "AdminTopic", "-c", "10"]);
    assert_eq!(consumed.as_array().map(Vec::len), Some(3), "{consumed}");

    // A consumer of a new group commits offset 1 of 3 on queue 1: the diff is 2.
    server.ok(&["updateSubGroup", "-g", "AdminGroup", "-c", "DefaultCluster"]);
    let mq = MessageQueue::new("AdminTopic", "broker-a", 1);
    commit_offset(&server.namesrv, "AdminGroup", &mq, 1);
    let progress = server.json(&["consumerProgress", "-g", "AdminGroup", "-t", "AdminTopic"]);
    assert_eq!(progress["diffTotal"], 2, "{progress}");
    let q1 = progress["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["queueId"] == 1)
        .cloned()
        .expect("queue 1 listed");
    assert_eq!(q1["brokerOffset"], 3);
    assert_eq!(q1["consumerOffset"], 1);
    assert_eq!(q1["diff"], 2);
    let text = server.ok(&["consumerProgress", "-g", "AdminGroup", "-t", "AdminTopic"]);
    assert!(text.contains("Diff Total: 2"), "{text}");

    // Reset to the beginning: the broker-side reset or the per-queue fallback, named.
    let reset = server.json(&[
        "resetOffsetByTime",
        "-g",
        "AdminGroup",
        "-t",
        "AdminTopic",
        "-s",
        "0",
    ]);
    assert!(reset["brokers"]["broker-a"].is_string(), "{reset}");
    let progress = server.json(&["consumerProgress", "-g", "AdminGroup", "-t", "AdminTopic"]);
    assert_eq!(progress["diffTotal"], 3, "{progress}");

    // Broker config and runtime status.
    let config = server.json(&["getBrokerConfig", "-b", &server.broker]);
    assert_eq!(config[&server.broker]["brokerName"], "broker-a", "{config}");
    let status = server.json(&["brokerStatus", "-b", &server.broker]);
    assert!(status.get("brokerVersionDesc").is_some(), "{status}");

    // Storage maintenance: nothing is past the reserved time and every stored topic is known.
    let deleted = server.json(&["deleteExpiredCommitLog", "-c", "DefaultCluster"]);
    assert_eq!(
        deleted["brokers"][0]["broker"],
        server.broker.as_str(),
        "{deleted}"
    );
    assert!(
        deleted["brokers"][0]["result"]
            .as_str()
            .unwrap()
            .contains("deleted 0"),
        "{deleted}"
    );
    let cleaned = server.ok(&["cleanExpiredCQ", "-b", &server.broker]);
    assert!(cleaned.starts_with("cleanExpiredCQ success"), "{cleaned}");
    let unused = server.ok(&["cleanUnusedTopic", "-b", &server.broker]);
    assert!(
        unused.contains("removed the queues of 0 unused topic(s)"),
        "{unused}"
    );

    // Groups.
    server.ok(&["updateSubGroup", "-g", "AdminGroup2", "-b", &server.broker]);
    server.ok(&["deleteSubGroup", "-g", "AdminGroup2", "-b", &server.broker]);

    // A failed request exits 1 and prints the code and the remark.
    let out = server.admin(&["topicRoute", "-t", "NoSuchTopic"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TOPIC_NOT_EXIST (17)"), "{err}");
    assert!(err.contains("NoSuchTopic"), "{err}");

    // A usage error exits 2.
    let out = server.admin(&["updateTopic", "-t", "X"]);
    assert_eq!(out.status.code(), Some(2));
    let out = server.admin(&["noSuchCommand"]);
    assert_eq!(out.status.code(), Some(2));

    // deleteTopic removes it from the name server.
    server.ok(&["deleteTopic", "-t", "AdminTopic", "-c", "DefaultCluster"]);
    let out = server.admin(&["topicRoute", "-t", "AdminTopic"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn admin_exits_1_when_the_name_server_is_unreachable() {
    let out = Command::new(env!("CARGO_BIN_EXE_apogee"))
        .args(["admin", "-n", "127.0.0.1:1", "topicList"])
        .output()
        .expect("apogee admin runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"));
}
