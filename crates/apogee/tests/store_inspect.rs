//! `apogee store inspect` end to end: a store written through the store's API and closed, then the
//! binary run on it, checking tables, JSON and exit codes, including `verify` on a corrupted byte.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};

use apogee_protocol::message::properties::MessageProperties;
use apogee_protocol::message::record::{MessageRecord, BODY_LENGTH_POSITION_IPV4};
use apogee_store::{MessageStore, StoreConfig};
use bytes::Bytes;
use serde_json::Value;

fn record(topic: &str, queue_id: i32, i: usize) -> Vec<u8> {
    let mut props = MessageProperties::new();
    props.set_tags("TagA");
    props.set_uniq_key(format!("UNIQ{i:04}"));
    let mut rec = MessageRecord::new(topic, Bytes::from(vec![b'x'; 200]), props.to_bytes());
    rec.queue_id = queue_id;
    rec.born_timestamp = 1_700_000_000_000;
    rec.born_host = "10.0.0.1:5000".parse().unwrap();
    rec.store_host = "10.0.0.2:10911".parse().unwrap();
    rec.encode().unwrap().to_vec()
}

/// 400 records (T/0 and T/1 alternating) over several 64 KiB segments; returns their offsets.
fn write_store(dir: &Path) -> Vec<u64> {
    let store = MessageStore::open(StoreConfig::for_tests(dir)).unwrap();
    let offsets = (0..400)
        .map(|i| {
            store
                .append(&mut record("T", (i % 2) as i32, i))
                .unwrap()
                .physical_offsets[0]
        })
        .collect();
    store.close().unwrap();
    offsets
}

fn apogee(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_apogee"))
        .args(args)
        .output()
        .unwrap()
}

fn inspect(dir: &Path, args: &[&str]) -> (i32, String) {
    let mut all = vec!["store", "inspect", "--dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = apogee(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some(),
        "killed by a signal; stderr: {stderr}"
    );
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

fn inspect_json(dir: &Path, args: &[&str]) -> (i32, Value) {
    let mut a = args.to_vec();
    a.push("--json");
    let (code, out) = inspect(dir, &a);
    (
        code,
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")),
    )
}

#[test]
fn segments_table_and_json_agree_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_store(dir.path());
    let (code, text) = inspect(dir.path(), &["segments"]);
    assert_eq!(code, 0);
    assert!(text.contains("segment(s) of 65536 bytes"), "{text}");
    assert!(text.contains("00000000000000000000"), "{text}");
    assert!(text.contains("full") && text.contains("open"), "{text}");

    let (code, v) = inspect_json(dir.path(), &["segments"]);
    assert_eq!(code, 0);
    let segs = v["segments"].as_array().unwrap();
    let total: u64 = segs.iter().map(|s| s["records"].as_u64().unwrap()).sum();
    assert_eq!(total, 400);
    let last = segs.last().unwrap();
    assert_eq!(last["state"], "open");
    assert!(last["write_position"].as_u64().unwrap() > *offsets.last().unwrap());
}

#[test]
fn records_dump_fields_and_pages_with_from_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_store(dir.path());
    let (code, text) = inspect(dir.path(), &["records", "--limit", "3"]);
    assert_eq!(code, 0);
    assert!(text.contains("tags=TagA"), "{text}");
    assert!(text.contains("uniq=UNIQ0002"), "{text}");
    assert!(
        text.contains(&format!("more from --from {}", offsets[3])),
        "{text}"
    );

    let from = offsets[10].to_string();
    let (code, v) = inspect_json(dir.path(), &["records", "--from", &from, "--limit", "2"]);
    assert_eq!(code, 0);
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["offset"].as_u64(), Some(offsets[10]));
    assert_eq!(recs[0]["queue_id"], 0);
    assert_eq!(recs[0]["queue_offset"], 5);
    assert_eq!(recs[0]["topic"], "T");
    assert_eq!(recs[0]["body_len"], 200);
    assert_eq!(recs[0]["crc_ok"], true);
    assert_eq!(v["next_offset"].as_u64(), Some(offsets[12]));

    let (code, _) = inspect(dir.path(), &["records", "--from", "999999999"]);
    assert_eq!(code, 2, "an offset outside the log is a usage error");
}

#[test]
fn queue_entries_and_offsets_are_printed() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_store(dir.path());
    let (code, text) = inspect(
        dir.path(),
        &["queue", "--topic", "T", "--queue-id", "1", "--limit", "4"],
    );
    assert_eq!(code, 0);
    assert!(text.contains("min offset 0, max offset 200"), "{text}");
    let (_, v) = inspect_json(
        dir.path(),
        &[
            "queue",
            "--topic",
            "T",
            "--queue-id",
            "1",
            "--from",
            "7",
            "--limit",
            "1",
        ],
    );
    assert_eq!(v["max_offset"], 200);
    let e = &v["entries"][0];
    assert_eq!(e["offset"], 7);
    assert_eq!(e["commitlog_offset"].as_u64(), Some(offsets[15]));
    let (_, v) = inspect_json(dir.path(), &["queues"]);
    assert_eq!(v["queues"].as_array().unwrap().len(), 2);
    let (code, _) = inspect(dir.path(), &["queue", "--topic", "X", "--queue-id", "0"]);
    assert_eq!(code, 2);
}

#[test]
fn checkpoint_prints_both_slots() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path());
    let (code, text) = inspect(dir.path(), &["checkpoint"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("slot 0:") && text.contains("slot 1:"),
        "{text}"
    );
    assert!(text.contains("(newest"), "{text}");
    let (_, v) = inspect_json(dir.path(), &["checkpoint"]);
    let newest = v["newest"].as_u64().unwrap() as usize;
    assert_eq!(v["slots"][newest]["valid"], true);
}

#[test]
fn verify_passes_a_clean_store_and_fails_on_a_corrupted_byte() {
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_store(dir.path());
    let (code, text) = inspect(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("records: 400"), "{text}");
    assert!(text.contains("result: OK"), "{text}");

    // One body byte of record 123.
    let seg = offsets[123] / 65536 * 65536;
    let path = dir.path().join("commitlog").join(format!("{seg:020}"));
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let at = offsets[123] - seg + BODY_LENGTH_POSITION_IPV4 as u64 + 4 + 50;
    f.write_all_at(b"y", at).unwrap();
    drop(f);

    let (code, text) = inspect(dir.path(), &["verify"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("result: DAMAGED"), "{text}");
    assert!(
        text.contains(&format!("@ {}: BODYCRC", offsets[123])),
        "{text}"
    );
    let (code, v) = inspect_json(dir.path(), &["verify"]);
    assert_eq!(code, 1);
    assert_eq!(v["ok"], false);
    assert_eq!(v["crc_errors"], 1);
    assert_eq!(v["problems"][0]["offset"].as_u64(), Some(offsets[123]));
}

#[test]
fn inspect_leaves_no_lock_or_other_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path());
    fs::remove_file(dir.path().join("lock")).unwrap();
    let names = |p: &Path| {
        let mut v: Vec<_> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = names(dir.path());
    for what in ["segments", "records", "queues", "verify", "checkpoint"] {
        assert_eq!(inspect(dir.path(), &[what]).0, 0, "{what}");
    }
    assert_eq!(names(dir.path()), before);
}

#[test]
fn a_missing_store_directory_exits_3() {
    let (code, _) = inspect(Path::new("/nonexistent/apogee"), &["segments"]);
    assert_eq!(code, 3);
}

#[test]
fn proxy_rejects_unknown_flags_and_needs_name_servers() {
    let out = apogee(&["proxy", "--some-flag", "x"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_apogee"))
        .args(["proxy", "--grpc-listen", "127.0.0.1:0"])
        .env_remove("NAMESRV_ADDR")
        .output()
        .expect("apogee runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("name servers"), "{err}");
    let out = apogee(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("apogee "));
}
