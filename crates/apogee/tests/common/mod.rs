//! Helpers for tests that run the real `apogee` binary: start `apogee standalone` on ephemeral
//! loopback ports and wait for its ready line, stop it with SIGTERM or SIGKILL, and build the
//! requests a RocketMQ client would send.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use apogee_protocol::codes::request_code as rc;
use apogee_protocol::header::{
    PullMessageRequestHeader, PullMessageResponseHeader, SendMessageRequestHeader,
};
use apogee_protocol::message::{MessageProperties, MessageRecord};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{RemotingClient, RemotingConfig};
use bytes::Bytes;

/// Generous: a debug build on a loaded machine may take a while to open its store.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// `[broker]` settings every test server gets: 64 MiB log segments and a small index keep each
/// server's files (preallocated) small, and the disk-use limits are raised to 100% so that a test
/// never depends on how full the machine's disk is (retention has its own tests in the store).
pub const TEST_BROKER_SETTINGS: &str = "mappedFileSizeCommitLog = 67108864
maxHashSlotNum = 16384
maxIndexNum = 65536
consumeQueueEntriesPerFile = 16384
diskMaxUsedSpaceRatio = 100
diskSpaceCleanForciblyRatio = 100
diskSpaceWarningLevelRatio = 100
";
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes a TOML config at `path` with `TEST_BROKER_SETTINGS` and more `[broker]` lines; returns
/// the path, for `--config`.
pub fn write_test_config(path: &Path, broker_settings: &str) -> PathBuf {
    std::fs::write(
        path,
        format!("[broker]\n{TEST_BROKER_SETTINGS}{broker_settings}\n"),
    )
    .expect("config file");
    path.to_path_buf()
}

/// One `apogee standalone` process with sync flush (an acknowledged send is on disk).
pub struct Server {
    pid: u32,
    /// Delivers the exit status; a thread owns the child and waits on it.
    exited: mpsc::Receiver<ExitStatus>,
    status: Option<ExitStatus>,
    pub data_dir: PathBuf,
    pub stderr_path: PathBuf,
    pub namesrv: String,
    pub broker: String,
}

impl Server {
    /// Starts `apogee standalone` on `data_dir` and waits for its ready line. Its stderr goes to
    /// a numbered log file next to `data_dir`, its configuration (`TEST_BROKER_SETTINGS`) to a
    /// numbered TOML file there.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, "")
    }

    /// [`Server::start`] with more `[broker]` settings (TOML lines).
    pub fn start_with(data_dir: &Path, broker_settings: &str) -> Server {
        let parent = data_dir.parent().expect("data dir has a parent");
        let n = std::fs::read_dir(parent).map(|d| d.count()).unwrap_or(0);
        let stderr_path = parent.join(format!("apogee-{n}.log"));
        let stderr = std::fs::File::create(&stderr_path).expect("log file");
        let config_path =
            write_test_config(&parent.join(format!("apogee-{n}.toml")), broker_settings);
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
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("apogee starts");
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout piped");
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains(" ready: ") {
                    let _ = line_tx.send(line);
                }
            }
        });
        let (exit_tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        let mut server = Server {
            pid,
            exited,
            status: None,
            data_dir: data_dir.to_path_buf(),
            stderr_path,
            namesrv: String::new(),
            broker: String::new(),
        };
        let line = match line_rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                server.signal("KILL");
                panic!("no ready line from apogee; stderr:\n{}", server.stderr());
            }
        };
        let field = |name: &str| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} missing from {line:?}"))
                .to_owned()
        };
        server.namesrv = field("namesrv=");
        server.broker = field("broker=");
        server
    }

    /// Sends a signal with the shell's `kill` builtin (no libc dependency, no /bin/kill needed).
    fn signal(&self, name: &str) {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{name} {}", self.pid))
            .status()
            .expect("sh runs")
            .success();
        assert!(ok, "kill -{name} {} failed", self.pid);
    }

    fn wait_exit(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let status = self
            .exited
            .recv_timeout(STOP_TIMEOUT)
            .unwrap_or_else(|_| panic!("apogee did not exit; stderr:\n{}", self.stderr()));
        self.status = Some(status);
        status
    }

    /// Still running (has not exited).
    pub fn is_alive(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.exited.try_recv() {
            Ok(status) => {
                self.status = Some(status);
                false
            }
            Err(_) => true,
        }
    }

    /// SIGTERM; the process must exit 0 and must not have panicked.
    pub fn stop(mut self) {
        self.signal("TERM");
        let status = self.wait_exit();
        assert_eq!(
            status.code(),
            Some(0),
            "apogee exit after SIGTERM; stderr:\n{}",
            self.stderr()
        );
        self.assert_no_panic();
    }

    /// SIGKILL: no flush, no persistence, no clean close.
    pub fn kill(mut self) {
        self.signal("KILL");
        let status = self.wait_exit();
        assert_eq!(status.code(), None, "killed by a signal");
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn assert_no_panic(&self) {
        let err = self.stderr();
        assert!(!err.contains("panicked"), "apogee panicked:\n{err}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed test must not leave the process behind.
        if self.is_alive() {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("kill -KILL {}", self.pid))
                .status();
        }
    }
}

pub fn client() -> RemotingClient {
    RemotingClient::new(RemotingConfig::default())
}

pub async fn call(
    client: &RemotingClient,
    addr: &str,
    request: RemotingCommand,
) -> RemotingCommand {
    client
        .invoke(addr, request, CALL_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("no response from {addr}: {e}"))
}

pub fn props(pairs: &[(&str, &str)]) -> MessageProperties {
    pairs.iter().map(|(k, v)| (*k, *v)).collect()
}

/// A producer's SEND_MESSAGE header (long names), auto-creating with 4 queues.
pub fn send_header(
    topic: &str,
    queue_id: i32,
    props: &MessageProperties,
) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "PG_TEST".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some(props.encode_to_string()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        max_reconsume_times: None,
        broker_name: None,
    }
}

pub fn send(topic: &str, queue_id: i32, props: &MessageProperties, body: &[u8]) -> RemotingCommand {
    RemotingCommand::request_with_header(rc::SEND_MESSAGE, &send_header(topic, queue_id, props))
        .with_body(Bytes::copy_from_slice(body))
}

pub fn pull_header(
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        // FLAG_SUBSCRIPTION: the expression travels with the pull; no suspension.
        sys_flag: 0x4,
        commit_offset: 0,
        suspend_timeout_millis: 0,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
        request_source: None,
        proxy_forward_client_id: None,
    }
}

pub fn pull(group: &str, topic: &str, queue_id: i32, offset: i64) -> RemotingCommand {
    RemotingCommand::request_with_header(
        rc::PULL_MESSAGE,
        &pull_header(group, topic, queue_id, offset),
    )
}

/// Every record of a queue from `offset` on, following `nextBeginOffset`, plus the raw bodies of
/// the pull responses (the stored bytes).
pub async fn pull_all(
    client: &RemotingClient,
    addr: &str,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> (Vec<MessageRecord>, Vec<u8>) {
    let mut offset = 0;
    let mut records = Vec::new();
    let mut raw = Vec::new();
    loop {
        let r = call(client, addr, pull(group, topic, queue_id, offset)).await;
        if r.code != 0 {
            // PULL_NOT_FOUND (19) at the end of the queue.
            assert_eq!(r.code, 19, "pull {topic}/{queue_id}@{offset}: {r:?}");
            return (records, raw);
        }
        let h: PullMessageResponseHeader = r.decode_header().expect("pull response header");
        raw.extend_from_slice(&r.body);
        for rec in MessageRecord::decode_all(&r.body) {
            records.push(rec.expect("valid record"));
        }
        assert!(h.next_begin_offset > offset, "pull made progress");
        offset = h.next_begin_offset;
    }
}
