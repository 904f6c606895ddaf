//! Transactional messages on the wire: half messages, END_TRANSACTION, check-backs to a producer
//! connection, discard after the max checks, and what survives a restart.

use apogee_protocol::body::{HeartbeatData, JsonBody, ProducerData};
use apogee_protocol::codes::request_code as rc;
use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::{
    CheckTransactionStateRequestHeader, EndTransactionRequestHeader, SendMessageResponseHeader,
};
use apogee_protocol::message::{sysflag, MessageRecord, OffsetMsgId, TransactionType};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{HandlerFuture, RemotingClient, RemotingConfig, RequestContext};
use tokio::sync::mpsc;

use crate::common::*;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

const HALF: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
const OP: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
const CHECK_MAX: &str = "TRANS_CHECK_MAX_TIME_TOPIC";

/// A half message for `topic` queue `queue_id` from producer group PG.
fn half_send(topic: &str, queue_id: i32, uniq: &str) -> RemotingCommand {
    let p = props(&[
        ("TRAN_MSG", "true"),
        ("PGROUP", "PG"),
        ("UNIQ_KEY", uniq),
        ("TAGS", "TagA"),
        ("KEYS", "order-1 order-2"),
        ("WAIT", "true"),
    ]);
    let mut h = send_header(topic, queue_id, &p);
    h.sys_flag = sysflag::TRANSACTION_PREPARED_TYPE;
    // Born now: the check service gives up half messages older than the file retention.
    h.born_timestamp = now_ms();
    send_v2(&h, b"tx-body")
}

/// What END_TRANSACTION needs from a half message's send reply.
#[derive(Debug, Clone)]
struct Half {
    queue_offset: i64,
    commit_log_offset: i64,
    uniq: String,
}

async fn send_half(b: &TestBroker, topic: &str, queue_id: i32, uniq: &str) -> Half {
    let r = b.call(half_send(topic, queue_id, uniq)).await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let h: SendMessageResponseHeader = r.decode_header().unwrap();
    assert_eq!(h.queue_id, queue_id, "the reply names the real queue");
    assert_eq!(h.transaction_id.as_deref(), Some(uniq));
    Half {
        queue_offset: h.queue_offset,
        commit_log_offset: OffsetMsgId::parse(&h.msg_id).unwrap().physical_offset,
        uniq: uniq.to_owned(),
    }
}

fn end(half: &Half, state: i32, from_check: bool) -> RemotingCommand {
    let header = EndTransactionRequestHeader {
        topic: Some("TxT".into()),
        producer_group: "PG".into(),
        tran_state_table_offset: half.queue_offset,
        commit_log_offset: half.commit_log_offset,
        commit_or_rollback: state,
        from_transaction_check: from_check,
        msg_id: half.uniq.clone(),
        transaction_id: Some(half.uniq.clone()),
    };
    RemotingCommand::request_with_header(rc::END_TRANSACTION, &header)
}

/// Every record of a queue (up to 32), read without waiting.
async fn read_queue(b: &TestBroker, topic: &str, queue_id: i32) -> Vec<MessageRecord> {
    read_queue_from(b, topic, queue_id, 0).await
}

async fn read_queue_from(
    b: &TestBroker,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> Vec<MessageRecord> {
    let r = b
        .call(pull(&pull_header("CG_TX", topic, queue_id, offset)))
        .await;
    if r.code != SUCCESS {
        return Vec::new();
    }
    records(&r.body)
}

/// A producer connection of group PG that hands every CHECK_TRANSACTION_STATE to the test.
async fn connect_producer(
    b: &TestBroker,
) -> (
    RemotingClient,
    mpsc::UnboundedReceiver<(CheckTransactionStateRequestHeader, MessageRecord)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = RemotingClient::with_handler(
        RemotingConfig::default(),
        move |_ctx: RequestContext, req: RemotingCommand| {
            if req.code == rc::CHECK_TRANSACTION_STATE {
                let h: CheckTransactionStateRequestHeader = req.decode_header().unwrap();
                let (m, _) = MessageRecord::decode(&req.body).unwrap();
                let _ = tx.send((h, m));
            }
            HandlerFuture::no_reply()
        },
    );
    let data = HeartbeatData {
        client_id: "127.0.0.1@tx-producer".into(),
        producer_data_set: vec![ProducerData {
            group_name: "PG".into(),
        }],
        ..HeartbeatData::default()
    };
    let r = client
        .invoke(
            &b.addr,
            RemotingCommand::request(rc::HEART_BEAT).with_body(data.encode().unwrap()),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, SUCCESS);
    (client, rx)
}

/// A broker that checks every 50 ms, half messages being old enough at once.
fn checking_config(dir: &std::path::Path, check_max: i32) -> apogee_broker::BrokerConfig {
    let mut c = config(dir);
    c.transaction_check_interval_ms = 50;
    c.transaction_timeout_ms = 0;
    c.transaction_check_max = check_max;
    c
}

#[tokio::test]
async fn a_half_message_is_invisible_until_commit_then_visible_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let half = send_half(&b, "TxT", 2, "UNIQ-COMMIT").await;
    assert_eq!(half.queue_offset, 0);
    assert!(read_queue(&b, "TxT", 2).await.is_empty());

    let stored = read_queue(&b, HALF, 0).await;
    assert_eq!(stored.len(), 1);
    let h = &stored[0];
    assert_eq!(h.property("REAL_TOPIC").as_deref(), Some("TxT"));
    assert_eq!(h.property("REAL_QID").as_deref(), Some("2"));
    assert_eq!(
        h.property("__transactionId__").as_deref(),
        Some("UNIQ-COMMIT")
    );
    assert_eq!(
        TransactionType::from_sys_flag(h.sys_flag),
        TransactionType::NotType
    );
    assert_eq!(h.physical_offset, half.commit_log_offset);

    let r = b
        .call(end(&half, sysflag::TRANSACTION_COMMIT_TYPE, false))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let visible = read_queue(&b, "TxT", 2).await;
    assert_eq!(visible.len(), 1);
    let m = &visible[0];
    assert_eq!(&m.body[..], b"tx-body");
    assert_eq!(m.uniq_key().as_deref(), Some("UNIQ-COMMIT"));
    assert_eq!(m.tags().as_deref(), Some("TagA"));
    assert_eq!(m.keys().collect::<Vec<_>>(), ["order-1", "order-2"]);
    assert_eq!(m.property("PGROUP").as_deref(), Some("PG"));
    assert_eq!(m.flag, 7);
    assert_eq!(
        TransactionType::from_sys_flag(m.sys_flag),
        TransactionType::Commit
    );
    assert_eq!(m.prepared_transaction_offset, half.commit_log_offset);

    let ops = read_queue(&b, OP, 0).await;
    assert_eq!(ops.len(), 1);
    assert_eq!(&ops[0].body[..], b"0,");
    assert_eq!(ops[0].tags().as_deref(), Some("d"));

    // A repeated commit (say, a late answer to a check-back) writes nothing new.
    let r = b
        .call(end(&half, sysflag::TRANSACTION_COMMIT_TYPE, true))
        .await;
    assert_eq!(r.code, SUCCESS);
    assert_eq!(read_queue(&b, "TxT", 2).await.len(), 1);
    let s = b.handle.transaction_stats();
    assert_eq!((s.committed, s.repeated_ends), (1, 1));
    b.stop().await;
}

#[tokio::test]
async fn a_rolled_back_message_is_never_visible() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let half = send_half(&b, "TxT", 0, "UNIQ-ROLLBACK").await;
    let r = b
        .call(end(&half, sysflag::TRANSACTION_ROLLBACK_TYPE, false))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    assert_eq!(read_queue(&b, OP, 0).await.len(), 1);
    let r = b
        .call(end(&half, sysflag::TRANSACTION_COMMIT_TYPE, false))
        .await;
    assert_eq!(r.code, SYSTEM_ERROR);
    assert!(r.remark.unwrap().contains("rolled back"));
    assert!(read_queue(&b, "TxT", 0).await.is_empty());
    assert_eq!(b.handle.transaction_stats().rolled_back, 1);
    b.stop().await;
}

#[tokio::test]
async fn end_transaction_must_name_the_half_message_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let half = send_half(&b, "TxT", 1, "UNIQ-VERIFY").await;
    let commit = sysflag::TRANSACTION_COMMIT_TYPE;

    let mut wrong_group = end(&half, commit, false);
    wrong_group.ext_fields.insert("producerGroup", "OTHER");
    let r = b.call(wrong_group).await;
    assert_eq!(
        (r.code, r.remark.as_deref()),
        (SYSTEM_ERROR, Some("The producer group wrong"))
    );

    let wrong_offset = Half {
        queue_offset: 5,
        ..half.clone()
    };
    let r = b.call(end(&wrong_offset, commit, false)).await;
    assert_eq!(
        r.remark.as_deref(),
        Some("The transaction state table offset wrong")
    );

    // A plain message is no half message; neither is the middle of a record.
    let plain = b
        .call(send_v2(&send_header("Plain", 0, &props(&[])), b"x"))
        .await;
    let plain: SendMessageResponseHeader = plain.decode_header().unwrap();
    for commit_log_offset in [
        OffsetMsgId::parse(&plain.msg_id).unwrap().physical_offset,
        half.commit_log_offset + 3,
        -1,
    ] {
        let r = b
            .call(end(
                &Half {
                    commit_log_offset,
                    ..half.clone()
                },
                commit,
                false,
            ))
            .await;
        assert_eq!(
            (r.code, r.remark.as_deref()),
            (
                SYSTEM_ERROR,
                Some("Find prepared transaction message failed")
            )
        );
    }

    // Unknown (0) changes nothing and, like Java, gets no answer; oneway as producers send it.
    let mut unknown = end(&half, sysflag::TRANSACTION_NOT_TYPE, false);
    unknown.mark_oneway();
    b.client.invoke_oneway(&b.addr, unknown).await.unwrap();
    // Malformed headers are answered.
    let r = b.call(RemotingCommand::request(rc::END_TRANSACTION)).await;
    assert_eq!(r.code, SYSTEM_ERROR);
    assert!(read_queue(&b, "TxT", 1).await.is_empty());
    assert!(read_queue(&b, OP, 0).await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn a_custom_immunity_time_refuses_a_late_producer_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    // Born long ago (the test header's born timestamp), immune for 6 s only.
    let p = props(&[
        ("TRAN_MSG", "true"),
        ("PGROUP", "PG"),
        ("UNIQ_KEY", "UNIQ-LATE"),
        ("CHECK_IMMUNITY_TIME_IN_SECONDS", "6"),
    ]);
    let r = b.call(send_v2(&send_header("TxT", 0, &p), b"x")).await;
    let h: SendMessageResponseHeader = r.decode_header().unwrap();
    let half = Half {
        queue_offset: h.queue_offset,
        commit_log_offset: OffsetMsgId::parse(&h.msg_id).unwrap().physical_offset,
        uniq: "UNIQ-LATE".into(),
    };
    let r = b
        .call(end(&half, sysflag::TRANSACTION_COMMIT_TYPE, false))
        .await;
    assert_eq!(r.code, ILLEGAL_OPERATION);
    // The answer to a check-back is accepted.
    let r = b
        .call(end(&half, sysflag::TRANSACTION_COMMIT_TYPE, true))
        .await;
    assert_eq!(r.code, SUCCESS);
    assert_eq!(read_queue(&b, "TxT", 0).await.len(), 1);
    b.stop().await;
}

#[tokio::test]
async fn reject_transaction_message_refuses_half_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.reject_transaction_message = true;
    let b = TestBroker::start(c).await;
    let r = b.call(half_send("TxT", 0, "UNIQ-REJECT")).await;
    assert_eq!(r.code, NO_PERMISSION, "{r:?}");
    assert!(r
        .remark
        .unwrap()
        .contains("transaction message is forbidden"));
    b.stop().await;
}

#[tokio::test]
async fn an_unanswered_half_message_is_checked_back_then_discarded_after_the_max() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(checking_config(dir.path(), 2)).await;
    let (_producer, mut checks) = connect_producer(&b).await;
    let half = send_half(&b, "TxT", 3, "UNIQ-MAX").await;

    let (h1, m1) = checks.recv().await.unwrap();
    assert_eq!(h1.topic.as_deref(), Some(HALF));
    assert_eq!(h1.msg_id.as_deref(), Some("UNIQ-MAX"));
    assert_eq!(h1.transaction_id.as_deref(), Some("UNIQ-MAX"));
    assert_eq!(h1.broker_name.as_deref(), Some("broker-a"));
    // The check names the re-queued copy at the end of the half queue.
    assert_eq!(h1.tran_state_table_offset, half.queue_offset + 1);
    assert_ne!(h1.commit_log_offset, half.commit_log_offset);
    assert_eq!(
        h1.offset_msg_id,
        Some(
            OffsetMsgId::new(
                b.handle.broker_addr().parse().unwrap(),
                h1.commit_log_offset
            )
            .to_string()
        )
    );
    assert_eq!((m1.topic.as_str(), m1.queue_id), ("TxT", 3));
    assert_eq!(m1.physical_offset, h1.commit_log_offset);
    assert_eq!(m1.property("TRANSACTION_CHECK_TIMES").as_deref(), Some("1"));
    assert_eq!(m1.uniq_key().as_deref(), Some("UNIQ-MAX"));
    assert_eq!(&m1.body[..], b"tx-body");

    let (h2, m2) = checks.recv().await.unwrap();
    assert_eq!(h2.tran_state_table_offset, half.queue_offset + 2);
    assert_eq!(m2.property("TRANSACTION_CHECK_TIMES").as_deref(), Some("2"));

    b.handle.wait_transaction_stats(|s| s.discarded == 1).await;
    let dropped = read_queue(&b, CHECK_MAX, 0).await;
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].uniq_key().as_deref(), Some("UNIQ-MAX"));
    assert_eq!(dropped[0].property("REAL_TOPIC").as_deref(), Some("TxT"));
    // Later scans leave it alone.
    let runs = b.handle.transaction_stats().check_runs;
    b.handle
        .wait_transaction_stats(|s| s.check_runs >= runs + 2)
        .await;
    assert!(checks.try_recv().is_err());
    assert_eq!(b.handle.transaction_stats().checks, 2);
    assert!(read_queue(&b, "TxT", 3).await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn the_answer_to_a_check_back_resolves_every_copy() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(checking_config(dir.path(), 15)).await;
    let (producer, mut checks) = connect_producer(&b).await;
    send_half(&b, "TxT", 0, "UNIQ-ANSWER").await;
    // Let it be checked twice: two copies exist, the answer names the last.
    checks.recv().await.unwrap();
    let (check, _) = checks.recv().await.unwrap();
    let answer = Half {
        queue_offset: check.tran_state_table_offset,
        commit_log_offset: check.commit_log_offset,
        uniq: "UNIQ-ANSWER".into(),
    };
    let mut request = end(&answer, sysflag::TRANSACTION_COMMIT_TYPE, true);
    request.mark_oneway();
    producer.invoke_oneway(&b.addr, request).await.unwrap();
    b.handle.wait_transaction_stats(|s| s.committed == 1).await;
    let runs = b.handle.transaction_stats().check_runs;
    b.handle
        .wait_transaction_stats(|s| s.check_runs >= runs + 2)
        .await;
    // A check of the second copy may have been on its way; none after the commit was seen.
    let late = std::iter::from_fn(|| checks.try_recv().ok()).count();
    assert!(late <= 1, "{late} checks after the commit");
    let runs = b.handle.transaction_stats().check_runs;
    b.handle
        .wait_transaction_stats(|s| s.check_runs >= runs + 2)
        .await;
    assert!(checks.try_recv().is_err());
    assert_eq!(read_queue(&b, "TxT", 0).await.len(), 1);
    b.stop().await;
}

#[tokio::test]
async fn a_commit_after_a_restart_still_finds_its_half_message() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(config(dir.path())).await;
    let half = send_half(&b, "TxT", 1, "UNIQ-RESTART").await;
    b.stop().await;

    let b = TestBroker::start(config(dir.path())).await;
    assert!(read_queue(&b, "TxT", 1).await.is_empty());
    let r = b
        .call(end(&half, sysflag::TRANSACTION_COMMIT_TYPE, false))
        .await;
    assert_eq!(r.code, SUCCESS, "{r:?}");
    let visible = read_queue(&b, "TxT", 1).await;
    assert_eq!(visible.len(), 1);
    assert_eq!(visible[0].uniq_key().as_deref(), Some("UNIQ-RESTART"));
    b.stop().await;

    // The outcome is forgotten with the process, but the committed message is not: a repeated
    // commit after another restart writes nothing.
    let b = TestBroker::start(config(dir.path())).await;
    let r = b
        .call(end(&half, sysflag::TRANSACTION_COMMIT_TYPE, true))
        .await;
    assert_eq!(r.code, SUCCESS);
    assert_eq!(read_queue(&b, "TxT", 1).await.len(), 1);
    assert_eq!(b.handle.transaction_stats().repeated_ends, 1);
    b.stop().await;
}

#[tokio::test]
async fn check_backs_resume_after_a_restart_with_their_count() {
    let dir = tempfile::tempdir().unwrap();
    // Checks go on without a producer while the broker restarts: no discard meanwhile.
    let b = TestBroker::start(checking_config(dir.path(), 100_000)).await;
    let (producer, mut checks) = connect_producer(&b).await;
    send_half(&b, "TxT", 2, "UNIQ-RESUME").await;
    let (first, _) = checks.recv().await.unwrap();
    producer.close();
    b.stop().await;
    assert!(
        std::fs::read_to_string(dir.path().join("config/consumerOffset.json"))
            .unwrap()
            .contains("RMQ_SYS_TRANS_HALF_TOPIC@CID_RMQ_SYS_TRANS")
    );

    let b = TestBroker::start(checking_config(dir.path(), 100_000)).await;
    let (producer, mut checks) = connect_producer(&b).await;
    let (next, m) = checks.recv().await.unwrap();
    assert!(next.tran_state_table_offset > first.tran_state_table_offset);
    let times: i32 = m
        .property("TRANSACTION_CHECK_TIMES")
        .unwrap()
        .parse()
        .unwrap();
    assert!(times >= 2, "check count restarted at {times}");
    let answer = Half {
        queue_offset: next.tran_state_table_offset,
        commit_log_offset: next.commit_log_offset,
        uniq: "UNIQ-RESUME".into(),
    };
    let r = producer
        .invoke(
            &b.addr,
            end(&answer, sysflag::TRANSACTION_COMMIT_TYPE, true),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, SUCCESS);
    assert_eq!(read_queue(&b, "TxT", 2).await.len(), 1);
    producer.close();
    b.stop().await;
}

#[tokio::test]
async fn among_many_half_messages_only_the_unresolved_old_one_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.transaction_check_interval_ms = 50;
    c.transaction_timeout_ms = 60_000;
    let b = TestBroker::start(c).await;
    let (producer, mut checks) = connect_producer(&b).await;
    let long_ago = now_ms() - 70_000;
    let mut halves = Vec::new();
    for n in 0..40 {
        let uniq = format!("MANY-{n}");
        let mut request = half_send("TxMany", n % 4, &uniq);
        if n == 5 || n == 20 {
            // Old enough to be checked; #5 asks for a long immunity instead.
            request.ext_fields.insert("g", long_ago.to_string());
        }
        if n == 5 {
            let mut h = apogee_protocol::header::SendMessageRequestHeader::from_ext_fields_v2(
                &request.ext_fields,
            )
            .unwrap();
            let mut p = apogee_protocol::message::MessageProperties::decode_str(
                h.properties.as_deref().unwrap(),
            );
            p.insert("CHECK_IMMUNITY_TIME_IN_SECONDS", "3600");
            h.properties = Some(p.encode_to_string());
            request = send_v2(&h, b"tx-body");
        }
        let r = b.call(request).await;
        let h: SendMessageResponseHeader = r.decode_header().unwrap();
        halves.push(Half {
            queue_offset: h.queue_offset,
            commit_log_offset: OffsetMsgId::parse(&h.msg_id).unwrap().physical_offset,
            uniq,
        });
    }
    for (n, half) in halves.iter().enumerate() {
        if n != 5 && n != 20 {
            let r = b
                .call(end(half, sysflag::TRANSACTION_COMMIT_TYPE, false))
                .await;
            assert_eq!(r.code, SUCCESS, "{n}: {r:?}");
        }
    }
    let (check, m) = checks.recv().await.unwrap();
    assert_eq!(m.uniq_key().as_deref(), Some("MANY-20"));
    let answer = Half {
        queue_offset: check.tran_state_table_offset,
        commit_log_offset: check.commit_log_offset,
        uniq: "MANY-20".into(),
    };
    let r = producer
        .invoke(
            &b.addr,
            end(&answer, sysflag::TRANSACTION_COMMIT_TYPE, true),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(r.code, SUCCESS);
    // #5 is within its immunity: re-queued by every scan, never checked, and its producer's
    // own (original) commit is still accepted.
    let runs = b.handle.transaction_stats().check_runs;
    b.handle
        .wait_transaction_stats(|s| s.check_runs >= runs + 2)
        .await;
    let r = b
        .call(end(&halves[5], sysflag::TRANSACTION_COMMIT_TYPE, false))
        .await;
    assert_eq!(r.code, SUCCESS);
    let runs = b.handle.transaction_stats().check_runs;
    b.handle
        .wait_transaction_stats(|s| s.check_runs >= runs + 3)
        .await;
    while let Ok((_, m)) = checks.try_recv() {
        assert_eq!(m.uniq_key().as_deref(), Some("MANY-20"));
    }
    let runs = b.handle.transaction_stats().check_runs;
    b.handle
        .wait_transaction_stats(|s| s.check_runs >= runs + 2)
        .await;
    assert!(checks.try_recv().is_err());
    let mut seen = std::collections::BTreeSet::new();
    for queue_id in 0..4 {
        for m in read_queue(&b, "TxMany", queue_id).await {
            assert!(
                seen.insert(m.uniq_key().unwrap().into_owned()),
                "twice: {m:?}"
            );
        }
    }
    assert_eq!(seen.len(), 40);
    assert_eq!(b.handle.transaction_stats().committed, 40);
    let copies = read_queue_from(&b, HALF, 0, 40).await;
    let original = halves[5].queue_offset.to_string();
    assert!(copies
        .iter()
        .any(|c| c.uniq_key().as_deref() == Some("MANY-5")
            && c.property("TRAN_PREPARED_QUEUE_OFFSET").as_deref() == Some(original.as_str())));
    assert!(copies
        .iter()
        .all(|c| c.uniq_key().as_deref() != Some("MANY-5")
            || c.property("TRANSACTION_CHECK_TIMES").is_none()));
    producer.close();
    b.stop().await;
}
