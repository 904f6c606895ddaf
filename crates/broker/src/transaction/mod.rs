//! Transactional messages, broker side (RocketMQ's `TransactionalMessageBridge`,
//! `TransactionalMessageServiceImpl` and `EndTransactionProcessor`).
//!
//! A half message is stored in `RMQ_SYS_TRANS_HALF_TOPIC` queue 0 with its real topic and queue
//! in properties, so no consumer of the real topic sees it. END_TRANSACTION commits it (writes the
//! real message) or rolls it back; either way an op record in `RMQ_SYS_TRANS_OP_HALF_TOPIC` (tag
//! `d`, body `<half queue offset>,`) marks it resolved. The check service ([`check`]) scans the
//! half queue from the progress of group `CID_RMQ_SYS_TRANS` and asks a live producer of the
//! message's group about every old unresolved one. All of it lives in the CommitLog, the two
//! queues and the consumer offsets, so resolution survives restarts.

pub(crate) mod check;

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError, RwLock};

use apogee_protocol::codes::perm;
use apogee_protocol::codes::request_code::CHECK_TRANSACTION_STATE;
use apogee_protocol::header::CheckTransactionStateRequestHeader;
use apogee_protocol::message::{
    keys, sysflag, MessageProperties, MessageRecord, MessageVersion, OffsetMsgId, TransactionType,
};
use apogee_protocol::RemotingCommand;
use apogee_store::StoreError;
use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use crate::broker::BrokerInner;
use crate::local::TransactionCheckHook;
use crate::manager::{lock, now_ms};
use crate::names::{TRANS_CHECK_MAX_TIME_TOPIC, TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC};

/// Tag of op records (`TransactionalMessageUtil.REMOVE_TAG`).
pub const REMOVE_TAG: &str = "d";
/// Ends every half-queue offset in an op record's body.
const OFFSET_SEPARATOR: char = ',';
/// Queues of TRANS_CHECK_MAX_TIME_TOPIC (`TCMT_QUEUE_NUMS`).
const CHECK_MAX_TIME_TOPIC_QUEUE_NUMS: i32 = 1;
/// Transactions whose outcome is remembered in memory, newest first: enough to recognize a late
/// or repeated END_TRANSACTION and the re-queued copies of a resolved half message.
const REMEMBERED_OUTCOMES: usize = 100_000;
/// Half-queue copies of one transaction (its original and the copies each check-back re-queues)
/// that one resolution marks done.
const MAX_COPIES: usize = 64;

/// Counters of the transaction machinery, readable (and awaitable) through
/// [`BrokerHandle::transaction_stats`](crate::BrokerHandle::transaction_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransactionStats {
    /// Half messages committed (the real message written).
    pub committed: u64,
    pub rolled_back: u64,
    /// END_TRANSACTION requests for an already resolved transaction (nothing written again).
    pub repeated_ends: u64,
    /// Check-backs issued: the half message was re-queued with one more TRANSACTION_CHECK_TIMES.
    pub checks: u64,
    /// Check-backs that found no live producer of the message's group.
    pub checks_without_producer: u64,
    /// Half messages moved to TRANS_CHECK_MAX_TIME_TOPIC.
    pub discarded: u64,
    /// Completed scans of the half queue.
    pub check_runs: u64,
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Commit,
    Rollback,
}

/// The broker's transaction state beyond the store: recent outcomes and counters.
pub(crate) struct Transactions {
    outcomes: Mutex<Outcomes>,
    stats: watch::Sender<TransactionStats>,
    /// Where check-backs go when no remoting producer of the group is connected (an embedded
    /// endpoint's own producers, e.g. gRPC clients).
    check_hook: RwLock<Option<TransactionCheckHook>>,
}

/// Outcomes by transaction id (the message's UNIQ_KEY), bounded, oldest forgotten first.
#[derive(Default)]
struct Outcomes {
    by_id: HashMap<String, Outcome>,
    order: VecDeque<String>,
}

impl Transactions {
    pub fn new() -> Self {
        Self {
            outcomes: Mutex::new(Outcomes::default()),
            stats: watch::channel(TransactionStats::default()).0,
            check_hook: RwLock::new(None),
        }
    }

    pub fn set_check_hook(&self, hook: Option<TransactionCheckHook>) {
        *self
            .check_hook
            .write()
            .unwrap_or_else(PoisonError::into_inner) = hook;
    }

    pub fn check_hook(&self) -> Option<TransactionCheckHook> {
        self.check_hook
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The remembered outcome of transaction `id`.
    pub fn outcome(&self, id: &str) -> Option<Outcome> {
        lock(&self.outcomes).by_id.get(id).copied()
    }

    /// Remembers the first outcome of `id`; returns the one already known, if any.
    pub fn remember(&self, id: &str, outcome: Outcome) -> Option<Outcome> {
        let mut o = lock(&self.outcomes);
        if let Some(known) = o.by_id.get(id) {
            return Some(*known);
        }
        if o.order.len() >= REMEMBERED_OUTCOMES {
            if let Some(oldest) = o.order.pop_front() {
                o.by_id.remove(&oldest);
            }
        }
        o.by_id.insert(id.to_owned(), outcome);
        o.order.push_back(id.to_owned());
        None
    }

    pub fn count(&self, change: impl FnOnce(&mut TransactionStats)) {
        self.stats.send_modify(change);
    }

    pub fn stats(&self) -> TransactionStats {
        *self.stats.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<TransactionStats> {
        self.stats.subscribe()
    }
}

/// Rewrites a message into its half form (`parseHalfMessageInner`): the real topic and queue go
/// to REAL_TOPIC and REAL_QID, the UNIQ_KEY to `__transactionId__`, the transaction type is
/// reset to NOT_TYPE so the store dispatches the record, into the half topic's queue 0.
pub(crate) fn make_half(record: &mut MessageRecord, props: &mut MessageProperties) {
    if let Some(id) = props
        .uniq_key()
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
    {
        props.insert(keys::TRANSACTION_ID, id);
    }
    props.insert(keys::REAL_TOPIC, record.topic.as_str());
    props.insert(keys::REAL_QID, record.queue_id.to_string());
    record.sys_flag =
        sysflag::reset_transaction_value(record.sys_flag, sysflag::TRANSACTION_NOT_TYPE);
    record.topic = TRANS_HALF_TOPIC.to_owned();
    record.version = MessageVersion::for_topic_len(record.topic.len());
    record.queue_id = 0;
    record.properties = props.to_bytes();
}

/// The real topic and queue of a half message.
pub(crate) fn real_queue(half: &MessageRecord) -> Result<(String, i32), String> {
    let topic = half
        .property(keys::REAL_TOPIC)
        .filter(|t| !t.is_empty())
        .ok_or("the half message has no REAL_TOPIC")?
        .into_owned();
    let queue_id = half
        .property(keys::REAL_QID)
        .and_then(|q| q.trim().parse::<i32>().ok())
        .ok_or("the half message has no valid REAL_QID")?;
    Ok((topic, queue_id))
}

/// A stored record copied field by field into `topic`, properties replaced.
fn copy_to(half: &MessageRecord, topic: &str, queue_id: i32, properties: Bytes) -> MessageRecord {
    let mut r = MessageRecord::new(topic, half.body.clone(), properties);
    r.queue_id = queue_id;
    r.flag = half.flag;
    r.sys_flag = half.sys_flag;
    r.born_timestamp = half.born_timestamp;
    r.born_host = half.born_host;
    r.store_host = half.store_host;
    r.reconsume_times = half.reconsume_times;
    r
}

/// The real message a commit writes (`endMessageTransaction`): the half message in its real topic
/// and queue, transaction type COMMIT, PREPAREDTRANSACTIONOFFSET pointing at the half message.
///
/// The properties are kept byte for byte. A Java broker does the same in effect: it removes
/// REAL_TOPIC, REAL_QID and TRAN_MSG from the property map only after the properties string it
/// stores was built, so consumers see those properties there too.
pub(crate) fn committed_record(half: &MessageRecord) -> Result<MessageRecord, String> {
    let (topic, queue_id) = real_queue(half)?;
    let mut r = copy_to(half, &topic, queue_id, half.properties.clone());
    r.sys_flag = sysflag::reset_transaction_value(half.sys_flag, sysflag::TRANSACTION_COMMIT_TYPE);
    r.prepared_transaction_offset = half.physical_offset;
    Ok(r)
}

/// The copy of a half message a check-back (or an immunity pass) appends to the end of its
/// queue (`renewHalfMessageInner`), with updated properties.
pub(crate) fn requeued_record(half: &MessageRecord, props: &MessageProperties) -> MessageRecord {
    copy_to(half, &half.topic, half.queue_id, props.to_bytes())
}

/// The record a half message checked too often becomes (`DefaultTransactionalMessageCheckListener`).
pub(crate) fn discarded_record(half: &MessageRecord) -> MessageRecord {
    copy_to(half, TRANS_CHECK_MAX_TIME_TOPIC, 0, half.properties.clone())
}

/// An op record saying that the half messages at `half_offsets` of half queue `queue_id` are
/// resolved (`TransactionalMessageBridge.makeOpMessageInner`).
pub(crate) fn op_record(
    queue_id: i32,
    half_offsets: &[u64],
    uniq_key: String,
    store_host: SocketAddr,
    now_ms: i64,
) -> MessageRecord {
    let mut body = String::with_capacity(half_offsets.len() * 8);
    for o in half_offsets {
        let _ = write!(body, "{o}{OFFSET_SEPARATOR}");
    }
    let mut props = MessageProperties::with_capacity(3);
    props.set_tags(REMOVE_TAG);
    props.insert(keys::WAIT, "false");
    props.set_uniq_key(uniq_key);
    let mut r = MessageRecord::new(TRANS_OP_HALF_TOPIC, Bytes::from(body), props.to_bytes());
    r.queue_id = queue_id;
    r.born_timestamp = now_ms;
    r.born_host = store_host;
    r.store_host = store_host;
    r
}

/// The half-queue offsets an op record's body lists (`"12,13,"`; pre-5.x brokers wrote `"12"`).
/// Unparsable parts are skipped.
pub(crate) fn parse_op_body(body: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(body)
        .split(OFFSET_SEPARATOR)
        .filter_map(|part| part.trim().parse().ok())
        .collect()
}

/// How long a half message with CHECK_IMMUNITY_TIME_IN_SECONDS = `value` is left alone by the
/// check service: the value in seconds, or `timeout_ms` when it does not parse.
pub(crate) fn immunity_ms(value: &str, timeout_ms: i64) -> i64 {
    match value.trim().parse::<i64>() {
        Ok(s) => s.saturating_mul(1000),
        Err(_) => timeout_ms,
    }
}

/// CHECK_TRANSACTION_STATE for the re-queued copy `copy` (as stored: its queue and physical
/// offsets set), as `AbstractTransactionalMessageCheckListener.sendCheckMessage` builds it. The
/// header's topic is the half topic, as Java sends it; the body is the copy with its real topic
/// and queue restored.
pub(crate) fn check_request(
    copy: &MessageRecord,
    broker_name: &str,
    store_host: SocketAddr,
) -> Result<RemotingCommand, String> {
    let (topic, queue_id) = real_queue(copy)?;
    let uniq = copy.uniq_key().map(|k| k.into_owned());
    let header = CheckTransactionStateRequestHeader {
        topic: Some(copy.topic.clone()),
        tran_state_table_offset: copy.queue_offset,
        commit_log_offset: copy.physical_offset,
        msg_id: uniq.clone(),
        transaction_id: uniq,
        offset_msg_id: Some(OffsetMsgId::new(store_host, copy.physical_offset).to_string()),
        broker_name: Some(broker_name.to_owned()),
    };
    let mut body_record = copy.clone();
    body_record.version = MessageVersion::for_topic_len(topic.len());
    body_record.topic = topic;
    body_record.queue_id = queue_id;
    let body = body_record
        .encode()
        .map_err(|e| format!("cannot encode the check-back body: {e}"))?;
    Ok(RemotingCommand::request_with_header(CHECK_TRANSACTION_STATE, &header).with_body(body))
}

/// Where an append landed, for one record.
pub(crate) struct Stored {
    pub physical_offset: u64,
    pub queue_offset: u64,
    pub store_timestamp_ms: i64,
}

/// Appends one record (no flush wait: these writes are `waitStoreMsgOK=false` in Java).
pub(crate) fn append(b: &BrokerInner, record: &MessageRecord) -> Result<Stored, StoreError> {
    let mut buf = BytesMut::with_capacity(record.encoded_len());
    record
        .encode_into(&mut buf)
        .map_err(|e| StoreError::MessageIllegal(e.to_string()))?;
    let res = b.store.append(&mut buf)?;
    let physical_offset = res
        .physical_offsets
        .first()
        .copied()
        .ok_or_else(|| StoreError::MessageIllegal("nothing appended".into()))?;
    Ok(Stored {
        physical_offset,
        queue_offset: res.queue_offset,
        store_timestamp_ms: res.store_timestamp_ms,
    })
}

/// The half message stored at `commit_log_offset`, if that is one.
pub(crate) fn half_at(b: &BrokerInner, commit_log_offset: i64) -> Option<MessageRecord> {
    let offset = u64::try_from(commit_log_offset).ok()?;
    let raw = b.store.message_at(offset)?;
    let (record, _) = MessageRecord::decode_bytes(&raw).ok()?;
    (record.topic == TRANS_HALF_TOPIC && record.physical_offset == commit_log_offset)
        .then_some(record)
}

/// Writes the op record that marks `half` resolved, listing every copy of its transaction in
/// the half queue (found through the UNIQ_KEY index) so that no copy is checked back again.
pub(crate) fn mark_resolved(b: &BrokerInner, half: &MessageRecord) -> Result<(), StoreError> {
    let mut offsets = vec![u64::try_from(half.queue_offset).unwrap_or(0)];
    if let Some(id) = half.uniq_key() {
        for raw in b
            .store
            .query_by_key(TRANS_HALF_TOPIC, &id, MAX_COPIES, 0, i64::MAX)
        {
            if let Ok((copy, _)) = MessageRecord::decode_bytes(&raw) {
                if copy.queue_id == half.queue_id && copy.uniq_key().as_deref() == Some(&*id) {
                    offsets.push(u64::try_from(copy.queue_offset).unwrap_or(0));
                }
            }
        }
    }
    offsets.sort_unstable();
    offsets.dedup();
    write_op(b, half.queue_id, &offsets)
}

/// Appends an op record for `half_offsets` of half queue `queue_id`.
pub(crate) fn write_op(
    b: &BrokerInner,
    queue_id: i32,
    half_offsets: &[u64],
) -> Result<(), StoreError> {
    let record = op_record(
        queue_id,
        half_offsets,
        b.uniq_ids.next_id(),
        b.store_host,
        now_ms(),
    );
    append(b, &record).map(|_| ())
}

/// Whether the real topic already holds the committed message of transaction `id` (a commit
/// repeated after the broker forgot the outcome, e.g. across a restart).
pub(crate) fn already_committed(b: &BrokerInner, real_topic: &str, id: &str) -> bool {
    b.store
        .query_by_key(real_topic, id, MAX_COPIES, 0, i64::MAX)
        .iter()
        .filter_map(|raw| MessageRecord::decode_bytes(raw).ok())
        .any(|(r, _)| {
            TransactionType::from_sys_flag(r.sys_flag) == TransactionType::Commit
                && r.uniq_key().as_deref() == Some(id)
        })
}

/// Moves a half message to TRANS_CHECK_MAX_TIME_TOPIC (creating that topic on first use).
pub(crate) fn discard(b: &BrokerInner, half: &MessageRecord) -> Result<(), String> {
    b.topics
        .create_in_send_back(
            TRANS_CHECK_MAX_TIME_TOPIC,
            CHECK_MAX_TIME_TOPIC_QUEUE_NUMS,
            perm::READ | perm::WRITE,
            false,
            0,
        )
        .map_err(|e| e.to_string())?;
    append(b, &discarded_record(half))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn host(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), port)
    }

    fn sent(topic: &str, queue_id: i32) -> (MessageRecord, MessageProperties) {
        let mut props = MessageProperties::new();
        props.set_tags("TagA");
        props.set_keys(["k1", "k2"]);
        props.set_uniq_key("UNIQ1");
        props.insert(keys::TRAN_MSG, "true");
        props.insert(keys::PGROUP, "PG");
        let mut r = MessageRecord::new(topic, Bytes::from_static(b"body"), props.to_bytes());
        r.queue_id = queue_id;
        r.flag = 5;
        r.sys_flag = sysflag::TRANSACTION_PREPARED_TYPE | sysflag::MULTI_TAGS_FLAG;
        r.born_timestamp = 1_000;
        r.born_host = host(1);
        r.store_host = host(2);
        r.reconsume_times = 2;
        (r, props)
    }

    #[test]
    fn half_form_moves_the_message_to_queue_0_of_the_half_topic() {
        let (mut r, mut props) = sent("Orders", 3);
        make_half(&mut r, &mut props);
        assert_eq!(r.topic, TRANS_HALF_TOPIC);
        assert_eq!(r.queue_id, 0);
        assert_eq!(
            TransactionType::from_sys_flag(r.sys_flag),
            TransactionType::NotType
        );
        assert_eq!(
            r.sys_flag & sysflag::MULTI_TAGS_FLAG,
            sysflag::MULTI_TAGS_FLAG
        );
        assert_eq!(r.property(keys::REAL_TOPIC).as_deref(), Some("Orders"));
        assert_eq!(r.property(keys::REAL_QID).as_deref(), Some("3"));
        assert_eq!(r.property(keys::TRANSACTION_ID).as_deref(), Some("UNIQ1"));
        assert_eq!(r.property(keys::TRAN_MSG).as_deref(), Some("true"));
        assert_eq!(real_queue(&r).unwrap(), ("Orders".to_owned(), 3));
    }

    #[test]
    fn commit_restores_topic_queue_and_properties_with_commit_type() {
        let (mut r, mut props) = sent("Orders", 3);
        make_half(&mut r, &mut props);
        r.physical_offset = 4_096;
        r.queue_offset = 7;
        let c = committed_record(&r).unwrap();
        assert_eq!(c.topic, "Orders");
        assert_eq!(c.queue_id, 3);
        assert_eq!(
            TransactionType::from_sys_flag(c.sys_flag),
            TransactionType::Commit
        );
        assert_eq!(c.prepared_transaction_offset, 4_096);
        assert_eq!(c.properties, r.properties);
        assert_eq!((c.flag, c.born_timestamp, c.reconsume_times), (5, 1_000, 2));
        assert_eq!((c.born_host, c.store_host), (host(1), host(2)));
        assert_eq!(&c.body[..], b"body");
        assert!(c.body_crc_matches());
    }

    #[test]
    fn a_half_message_without_real_topic_cannot_be_committed() {
        let (r, _) = sent("Orders", 3);
        assert!(committed_record(&r).is_err());
        let mut bad = r.clone();
        let mut p = bad.properties_map();
        p.insert(keys::REAL_TOPIC, "T");
        p.insert(keys::REAL_QID, "x");
        bad.set_properties(&p);
        assert!(real_queue(&bad).is_err());
    }

    #[test]
    fn op_records_list_offsets_comma_terminated_with_tag_d() {
        let r = op_record(0, &[12, 13], "OPID".into(), host(9), 77);
        assert_eq!(r.topic, TRANS_OP_HALF_TOPIC);
        assert_eq!(&r.body[..], b"12,13,");
        assert_eq!(r.tags().as_deref(), Some(REMOVE_TAG));
        assert_eq!(r.property(keys::WAIT).as_deref(), Some("false"));
        assert_eq!(r.uniq_key().as_deref(), Some("OPID"));
        assert_eq!((r.born_timestamp, r.store_host), (77, host(9)));
        assert_eq!(parse_op_body(&r.body), vec![12, 13]);
    }

    #[test]
    fn op_bodies_of_old_and_new_brokers_parse() {
        assert_eq!(parse_op_body(b"42"), vec![42]);
        assert_eq!(parse_op_body(b"1,2,3,"), vec![1, 2, 3]);
        assert_eq!(parse_op_body(b"x,4,,-1,"), vec![4]);
        assert!(parse_op_body(b"").is_empty());
    }

    #[test]
    fn immunity_is_seconds_or_the_timeout_when_unparsable() {
        assert_eq!(immunity_ms("10", 6_000), 10_000);
        assert_eq!(immunity_ms(" 2 ", 6_000), 2_000);
        assert_eq!(immunity_ms("soon", 6_000), 6_000);
    }

    #[test]
    fn check_request_carries_the_copy_offsets_and_the_real_topic_in_its_body() {
        let (mut r, mut props) = sent("Orders", 3);
        make_half(&mut r, &mut props);
        r.queue_offset = 9;
        r.physical_offset = 8_192;
        let req = check_request(&r, "broker-a", host(10911)).unwrap();
        assert_eq!(req.code, CHECK_TRANSACTION_STATE);
        let h: CheckTransactionStateRequestHeader = req.decode_header().unwrap();
        assert_eq!(h.topic.as_deref(), Some(TRANS_HALF_TOPIC));
        assert_eq!(h.tran_state_table_offset, 9);
        assert_eq!(h.commit_log_offset, 8_192);
        assert_eq!(h.msg_id.as_deref(), Some("UNIQ1"));
        assert_eq!(h.transaction_id.as_deref(), Some("UNIQ1"));
        assert_eq!(
            h.offset_msg_id,
            Some(OffsetMsgId::new(host(10911), 8_192).to_string())
        );
        assert_eq!(h.broker_name.as_deref(), Some("broker-a"));
        let (body, _) = MessageRecord::decode(&req.body).unwrap();
        assert_eq!(body.topic, "Orders");
        assert_eq!(body.queue_id, 3);
        assert_eq!(body.queue_offset, 9);
        assert_eq!(body.physical_offset, 8_192);
        assert_eq!(body.property(keys::PGROUP).as_deref(), Some("PG"));
    }

    #[test]
    fn discarded_and_requeued_copies_keep_the_message() {
        let (mut r, mut props) = sent("Orders", 3);
        make_half(&mut r, &mut props);
        let d = discarded_record(&r);
        assert_eq!(
            (d.topic.as_str(), d.queue_id),
            (TRANS_CHECK_MAX_TIME_TOPIC, 0)
        );
        assert_eq!(d.properties, r.properties);
        props.insert(keys::TRANSACTION_CHECK_TIMES, "1");
        let q = requeued_record(&r, &props);
        assert_eq!((q.topic.as_str(), q.queue_id), (TRANS_HALF_TOPIC, 0));
        assert_eq!(
            q.property(keys::TRANSACTION_CHECK_TIMES).as_deref(),
            Some("1")
        );
        assert_eq!((q.flag, q.born_timestamp), (5, 1_000));
    }

    #[test]
    fn outcomes_keep_the_first_resolution() {
        let t = Transactions::new();
        assert_eq!(t.remember("a", Outcome::Commit), None);
        assert_eq!(t.remember("a", Outcome::Rollback), Some(Outcome::Commit));
        assert_eq!(t.outcome("a"), Some(Outcome::Commit));
        assert_eq!(t.outcome("b"), None);
    }
}
