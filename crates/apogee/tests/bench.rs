//! `apogee bench` end to end: a real `apogee standalone` on loopback ports and a temp dir, then the
//! bench binary against it, checking the JSON result's counts and percentiles.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The standalone server, killed when dropped.
struct Server {
    child: Child,
    namesrv: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn standalone(dir: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_apogee"))
        .args(["standalone", "--data-dir"])
        .arg(dir)
        .args([
            "--namesrv-listen",
            "127.0.0.1:0",
            "--broker-listen",
            "127.0.0.1:0",
            "--broker-ip",
            "127.0.0.1",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ])
        .arg("--config")
        .arg(common::write_test_config(&dir.with_extension("toml"), ""))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let namesrv = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("namesrv="))
        .unwrap_or_else(|| panic!("no namesrv in ready line {line:?}"))
        .to_owned();
    Server { child, namesrv }
}

fn bench(server: &Server, out: &Path, extra: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_apogee"))
        .args(["bench", "-n", &server.namesrv, "--json-out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "bench failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap()
}

fn assert_ordered(latency: &Value) {
    let p = |k: &str| {
        latency[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {latency}"))
    };
    assert!(p("count") > 0, "{latency}");
    assert!(
        p("p50") <= p("p99") && p("p99") <= p("p999") && p("p999") <= p("max"),
        "{latency}"
    );
}

#[test]
fn closed_run_receives_every_message_sent_and_percentiles_are_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let server = standalone(&dir.path().join("data"));
    let json = bench(
        &server,
        &dir.path().join("live.json"),
        &[
            "--topic",
            "BenchLive",
            "--queues",
            "4",
            "--message-size",
            "256",
            "--mode",
            "async",
            "--in-flight",
            "8",
            "--rate",
            "2000",
            "--warmup-secs",
            "0",
            "--duration-secs",
            "2",
        ],
    );
    let sent = json["messages_sent"].as_u64().unwrap();
    assert!(sent > 1000, "{json}");
    assert_eq!(json["messages_received"].as_u64(), Some(sent), "{json}");
    assert_eq!(json["drained"], Value::Bool(true));
    assert_eq!(json["send"]["errors"].as_u64(), Some(0), "{json}");
    assert_eq!(
        json["send"]["bytes"].as_u64(),
        Some(json["send"]["messages"].as_u64().unwrap() * 256)
    );
    assert!(json["consume"]["messages"].as_u64().unwrap() > 0, "{json}");
    assert_ordered(&json["send_latency_us"]);
    assert_ordered(&json["end_to_end_latency_us"]);

    // The backlog mode on the same server: a batch prefill, then a timed read of all of it.
    let json = bench(
        &server,
        &dir.path().join("catch_up.json"),
        &[
            "--topic",
            "BenchBacklog",
            "--queues",
            "4",
            "--message-size",
            "512",
            "--mode",
            "batch",
            "--batch-size",
            "50",
            "--catch-up",
            "3000",
        ],
    );
    assert_eq!(json["messages_sent"].as_u64(), Some(3000), "{json}");
    assert_eq!(json["messages_received"].as_u64(), Some(3000), "{json}");
    assert_eq!(
        json["consume"]["bytes"].as_u64(),
        Some(3000 * 512),
        "{json}"
    );
    assert!(
        json["consume"]["mb_per_sec"].as_f64().unwrap() > 0.0,
        "{json}"
    );
}
