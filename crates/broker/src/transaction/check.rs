//! The check-back service (`TransactionalMessageCheckService` and
//! `TransactionalMessageServiceImpl.check`). Every `transactionCheckInterval` it walks each half
//! queue from the progress of group `CID_RMQ_SYS_TRANS`, reading the op queue alongside to learn
//! which half messages are resolved. An unresolved one older than `transactionTimeOut` is
//! re-queued at the end of the half queue with one more TRANSACTION_CHECK_TIMES and a
//! CHECK_TRANSACTION_STATE goes to one live producer of its group; past `transactionCheckMax`
//! checks it is moved to TRANS_CHECK_MAX_TIME_TOPIC instead. The per-message decision is the
//! plain function [`judge`]; the walk does store reads and appends on a blocking thread.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use apogee_protocol::message::{keys, MessageRecord};
use apogee_protocol::RemotingCommand;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::{
    append, check_request, discard, immunity_ms, parse_op_body, requeued_record, write_op,
    REMOVE_TAG,
};
use crate::broker::BrokerInner;
use crate::manager::now_ms;
use crate::names::{CID_SYS_RMQ_TRANS, TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC};

/// One scan of one queue stops after this long (`MAX_PROCESS_TIME_LIMIT`).
const MAX_SCAN_MS: i64 = 60_000;
/// Check-backs one scan issues at most; the rest wait for the next scan.
const MAX_CHECKS_PER_SCAN: usize = 2_000;
/// Op records read per store call (`OP_MSG_PULL_NUMS`).
const OP_BATCH: usize = 32;
/// Op records one scan of a queue holds at most.
const MAX_OPS_PER_SCAN: usize = 100_000;
/// How long sending one check-back may wait for room on its connection (Java: 10 ms oneway).
const CHECK_SEND_TIMEOUT: Duration = Duration::from_millis(500);

/// Runs scans every `transactionCheckInterval` until `stop` (on a master only).
pub(crate) async fn run(inner: Arc<BrokerInner>, mut stop: watch::Receiver<bool>) {
    if inner.config.broker_id != 0 {
        // Only a master checks transactions back (a slave's half queue is a replica).
        return;
    }
    loop {
        // Read each round: UPDATE_BROKER_CONFIG may change it.
        let period = Duration::from_millis(inner.live.transaction_check_interval_ms().max(10));
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let b = Arc::clone(&inner);
        let checks = match tokio::task::spawn_blocking(move || scan(&b, now_ms())).await {
            Ok(checks) => checks,
            Err(e) => {
                warn!(error = %e, "transaction check scan failed");
                continue;
            }
        };
        send_checks(&inner, checks).await;
        inner.transactions.count(|s| s.check_runs += 1);
    }
}

/// A check-back to send: the producer group asked and the request.
pub(crate) struct CheckBack {
    group: Option<String>,
    request: RemotingCommand,
}

/// Sends each check-back oneway to one live member of its producer group.
async fn send_checks(b: &BrokerInner, checks: Vec<CheckBack>) {
    let mut sends = JoinSet::new();
    for check in checks {
        let conn = check
            .group
            .as_deref()
            .and_then(|g| b.producers.available_channel(g));
        let Some(conn) = conn else {
            if check_locally(b, &check) {
                continue;
            }
            warn!(group = ?check.group, "transaction check-back: no live producer of the group");
            b.transactions.count(|s| s.checks_without_producer += 1);
            continue;
        };
        sends.spawn(async move {
            let sent = tokio::time::timeout(CHECK_SEND_TIMEOUT, conn.invoke_oneway(check.request));
            match sent.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(peer = %conn.peer_addr(), error = %e, "cannot send a transaction check-back")
                }
                Err(_) => debug!(peer = %conn.peer_addr(), "transaction check-back send timed out"),
            }
        });
    }
    while sends.join_next().await.is_some() {}
}

/// Hands a check-back to the embedded endpoint's hook, if one is set; true if it reached one of
/// that endpoint's producers.
fn check_locally(b: &BrokerInner, check: &CheckBack) -> bool {
    let (Some(hook), Some(group)) = (b.transactions.check_hook(), check.group.as_deref()) else {
        return false;
    };
    match crate::local::local_check(group, &check.request) {
        Some(local) => hook(local),
        None => {
            warn!(
                group,
                "transaction check-back: cannot read back its own request"
            );
            false
        }
    }
}

/// The settings a decision depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub timeout_ms: i64,
    pub check_max: i32,
    /// Half messages born longer ago than this are given up (`fileReservedTime`).
    pub reserved_ms: i64,
}

/// What a half message tells the decision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HalfFacts<'a> {
    pub born_ms: i64,
    pub stored_ms: i64,
    /// TRANSACTION_CHECK_TIMES, when present and numeric.
    pub check_times: Option<i32>,
    /// CHECK_IMMUNITY_TIME_IN_SECONDS, when present.
    pub immunity: Option<&'a str>,
}

/// What to do with an unresolved half message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Checked too often or too old: move it to TRANS_CHECK_MAX_TIME_TOPIC.
    Discard,
    /// Too young: stop this queue's scan here and come back next time.
    Later,
    /// Within its own immunity time: re-queue it to the end and go on.
    Immune,
    /// Check it back; the copy carries this TRANSACTION_CHECK_TIMES.
    Check { times: i32 },
}

/// The decision for one unresolved half message, as Java's `check` loop takes it. `scan_start_ms`
/// is when the scan began: records stored since then (including this scan's own re-queued
/// copies) wait for the next scan.
pub(crate) fn judge(half: &HalfFacts, now_ms: i64, scan_start_ms: i64, limits: &Limits) -> Verdict {
    let age_ms = now_ms - half.born_ms;
    if half.check_times.is_some_and(|t| t >= limits.check_max) || age_ms > limits.reserved_ms {
        return Verdict::Discard;
    }
    if half.stored_ms >= scan_start_ms {
        return Verdict::Later;
    }
    match half.immunity {
        Some(value) if age_ms <= immunity_ms(value, limits.timeout_ms) => return Verdict::Immune,
        Some(_) => {}
        None if (0..=limits.timeout_ms).contains(&age_ms) => return Verdict::Later,
        None => {}
    }
    Verdict::Check {
        times: half.check_times.map_or(1, |t| t.saturating_add(1)),
    }
}

/// One pass over every half queue; returns the check-backs to send.
pub(crate) fn scan(b: &BrokerInner, start_ms: i64) -> Vec<CheckBack> {
    let limits = Limits {
        timeout_ms: i64::try_from(b.config.transaction_timeout_ms).unwrap_or(i64::MAX),
        check_max: b.config.transaction_check_max,
        reserved_ms: i64::try_from(b.store.config().file_reserved_hours)
            .unwrap_or(i64::MAX / 3_600_000)
            .saturating_mul(3_600_000),
    };
    let queues = b
        .topics
        .select(TRANS_HALF_TOPIC)
        .map_or(0, |c| c.read_queue_nums);
    let mut checks = Vec::new();
    for queue_id in 0..queues {
        scan_queue(b, queue_id, start_ms, &limits, &mut checks);
    }
    checks
}

/// The consume progress of the check service on a queue, at least the queue's min offset.
fn progress(b: &BrokerInner, topic: &str, queue_id: i32) -> u64 {
    let min = b.store.min_offset(topic, queue_id);
    b.offsets
        .query_offset(CID_SYS_RMQ_TRANS, topic, queue_id)
        .and_then(|o| u64::try_from(o).ok())
        .map_or(min, |o| o.max(min))
}

/// The op records read during one scan of a half queue (`fillOpRemoveMap` state).
struct OpLog {
    queue_id: i32,
    /// Half offsets below this are already passed.
    half_start: u64,
    start: u64,
    /// Next op offset to read.
    next: u64,
    read: usize,
    /// Resolved half offset -> the op record saying so.
    removed: HashMap<u64, u64>,
    /// Op record -> the half offsets it resolves that the scan has not reached yet.
    pending: BTreeMap<u64, HashSet<u64>>,
    /// Op records with nothing left to do.
    done: Vec<u64>,
    /// Half offsets resolved by op records but already passed (immunity copies refer to them).
    passed: HashSet<u64>,
}

impl OpLog {
    fn new(queue_id: i32, half_start: u64, op_start: u64) -> Self {
        Self {
            queue_id,
            half_start,
            start: op_start,
            next: op_start,
            read: 0,
            removed: HashMap::new(),
            pending: BTreeMap::new(),
            done: Vec::new(),
            passed: HashSet::new(),
        }
    }

    /// Reads the next batch of op records; false when there was nothing more to read.
    fn read_more(&mut self, b: &BrokerInner) -> bool {
        if self.read >= MAX_OPS_PER_SCAN {
            return false;
        }
        let got = b.store.get_messages(
            TRANS_OP_HALF_TOPIC,
            self.queue_id,
            self.next,
            OP_BATCH,
            usize::MAX,
            &|_| true,
        );
        let before = self.next;
        for (raw, op_offset) in got.messages.iter().zip(got.queue_offsets.iter().copied()) {
            // Entries the store passed over (unreadable) have nothing to say.
            self.done.extend(self.next..op_offset);
            self.next = op_offset + 1;
            self.read += 1;
            self.add(raw, op_offset);
        }
        if got.next_begin_offset > self.next {
            self.done.extend(self.next..got.next_begin_offset);
            self.next = got.next_begin_offset;
        }
        self.next > before
    }

    fn add(&mut self, raw: &bytes::Bytes, op_offset: u64) {
        let Ok((op, _)) = MessageRecord::decode_bytes(raw) else {
            warn!(op_offset, "unreadable transaction op record");
            self.done.push(op_offset);
            return;
        };
        if op.tags().as_deref() != Some(REMOVE_TAG) {
            warn!(op_offset, tags = ?op.tags(), "transaction op record with an unknown tag");
            self.done.push(op_offset);
            return;
        }
        let mut open = HashSet::new();
        for half_offset in parse_op_body(&op.body) {
            if half_offset < self.half_start {
                self.passed.insert(half_offset);
            } else {
                self.removed.insert(half_offset, op_offset);
                open.insert(half_offset);
            }
        }
        if open.is_empty() {
            self.done.push(op_offset);
        } else {
            self.pending.insert(op_offset, open);
        }
    }

    /// Whether the half message at `half_offset` is resolved; consumes that knowledge.
    fn take(&mut self, half_offset: u64) -> bool {
        let Some(op_offset) = self.removed.remove(&half_offset) else {
            return false;
        };
        if let Some(open) = self.pending.get_mut(&op_offset) {
            open.remove(&half_offset);
            if open.is_empty() {
                self.pending.remove(&op_offset);
                self.done.push(op_offset);
            }
        }
        true
    }

    /// Whether the original (`TRAN_PREPARED_QUEUE_OFFSET`) of an immunity copy is resolved.
    fn original_resolved(&mut self, original: u64) -> bool {
        self.take(original) || self.passed.contains(&original)
    }

    /// The new op progress: past every op record done, up to the first one still pending
    /// (`calculateOpOffset`).
    fn progress(&mut self) -> u64 {
        self.done.sort_unstable();
        let mut p = self.start;
        for o in &self.done {
            if *o == p {
                p += 1;
            } else if *o > p {
                break;
            }
        }
        p
    }
}

/// Scans half queue `queue_id` once and moves its progress (and the op queue's) forward.
fn scan_queue(
    b: &BrokerInner,
    queue_id: i32,
    start_ms: i64,
    limits: &Limits,
    checks: &mut Vec<CheckBack>,
) {
    let half_start = progress(b, TRANS_HALF_TOPIC, queue_id);
    let op_start = progress(b, TRANS_OP_HALF_TOPIC, queue_id);
    let mut ops = OpLog::new(queue_id, half_start, op_start);
    ops.read_more(b);
    let mut i = half_start;
    loop {
        if now_ms() - start_ms > MAX_SCAN_MS || checks.len() >= MAX_CHECKS_PER_SCAN {
            break;
        }
        if ops.take(i) {
            i += 1;
            continue;
        }
        let Some(raw) = b
            .store
            .message_at_queue_offset(TRANS_HALF_TOPIC, queue_id, i)
        else {
            let min = b.store.min_offset(TRANS_HALF_TOPIC, queue_id);
            if i < min {
                i = min;
                continue;
            }
            if i + 1 < b.store.max_offset(TRANS_HALF_TOPIC, queue_id) {
                warn!(offset = i, "half message unreadable, skipped");
                i += 1;
                continue;
            }
            break;
        };
        let half = match MessageRecord::decode_bytes(&raw) {
            Ok((r, _)) => r,
            Err(e) => {
                warn!(offset = i, error = %e, "half message undecodable, skipped");
                i += 1;
                continue;
            }
        };
        if resolved_elsewhere(b, &mut ops, &half) {
            // Resolved through another copy of its transaction: record it for this copy too,
            // so the knowledge survives a restart.
            if let Err(e) = write_op(b, queue_id, &[i]) {
                warn!(offset = i, error = %e, "cannot write a transaction op record");
                break;
            }
            i += 1;
            continue;
        }
        let props = half.properties_map();
        let facts = HalfFacts {
            born_ms: half.born_timestamp,
            stored_ms: half.store_timestamp,
            check_times: props
                .get(keys::TRANSACTION_CHECK_TIMES)
                .and_then(|t| t.trim().parse().ok()),
            immunity: props.get(keys::CHECK_IMMUNITY_TIME_IN_SECONDS),
        };
        let verdict = judge(&facts, now_ms(), start_ms, limits);
        if matches!(verdict, Verdict::Discard | Verdict::Check { .. }) && ops.read_more(b) {
            // Op records not read yet may resolve it: read them, then look at it again.
            continue;
        }
        match verdict {
            Verdict::Later => break,
            Verdict::Discard => {
                info!(
                    offset = i,
                    uniq_key = ?half.uniq_key(),
                    real_topic = ?half.property(keys::REAL_TOPIC),
                    "half message checked too many times (or too old): moved to TRANS_CHECK_MAX_TIME_TOPIC"
                );
                if let Err(e) = discard(b, &half) {
                    warn!(offset = i, error = %e, "cannot discard a half message");
                    break;
                }
                b.transactions.count(|s| s.discarded += 1);
            }
            Verdict::Immune => {
                let mut props = props;
                if !props.contains_key(keys::TRAN_PREPARED_QUEUE_OFFSET) {
                    props.insert(keys::TRAN_PREPARED_QUEUE_OFFSET, i.to_string());
                }
                if let Err(e) = append(b, &requeued_record(&half, &props)) {
                    warn!(offset = i, error = %e, "cannot re-queue a half message");
                    break;
                }
            }
            Verdict::Check { times } => {
                let mut props = props;
                props.insert(keys::TRANSACTION_CHECK_TIMES, times.to_string());
                let mut copy = requeued_record(&half, &props);
                let stored = match append(b, &copy) {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(offset = i, error = %e, "cannot re-queue a half message");
                        break;
                    }
                };
                copy.queue_offset = i64::try_from(stored.queue_offset).unwrap_or(i64::MAX);
                copy.physical_offset = i64::try_from(stored.physical_offset).unwrap_or(i64::MAX);
                copy.store_timestamp = stored.store_timestamp_ms;
                b.transactions.count(|s| s.checks += 1);
                info!(
                    offset = i,
                    copy_offset = stored.queue_offset,
                    times,
                    uniq_key = ?half.uniq_key(),
                    "checking back a transaction"
                );
                match check_request(&copy, &b.config.broker_name, b.store_host) {
                    Ok(request) => checks.push(CheckBack {
                        group: props.get(keys::PGROUP).map(str::to_owned),
                        request,
                    }),
                    Err(e) => warn!(offset = i, error = %e, "cannot build a check-back"),
                }
            }
        }
        i += 1;
    }
    if i != half_start {
        b.offsets
            .commit_offset(CID_SYS_RMQ_TRANS, TRANS_HALF_TOPIC, queue_id, i as i64);
    }
    let op_progress = ops.progress();
    if op_progress != op_start {
        b.offsets.commit_offset(
            CID_SYS_RMQ_TRANS,
            TRANS_OP_HALF_TOPIC,
            queue_id,
            op_progress as i64,
        );
    }
}

/// Whether `half` is known resolved other than by an op record for its own offset: its
/// transaction's outcome is remembered, or it is an immunity copy whose original is resolved.
fn resolved_elsewhere(b: &BrokerInner, ops: &mut OpLog, half: &MessageRecord) -> bool {
    if half
        .uniq_key()
        .is_some_and(|id| b.transactions.outcome(&id).is_some())
    {
        return true;
    }
    half.property(keys::TRAN_PREPARED_QUEUE_OFFSET)
        .and_then(|o| o.trim().parse::<u64>().ok())
        .is_some_and(|original| ops.original_resolved(original))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        timeout_ms: 6_000,
        check_max: 15,
        reserved_ms: 72 * 3_600_000,
    };

    fn facts(born_ms: i64, check_times: Option<i32>) -> HalfFacts<'static> {
        HalfFacts {
            born_ms,
            stored_ms: born_ms,
            check_times,
            immunity: None,
        }
    }

    #[test]
    fn young_half_messages_wait() {
        let now = 100_000;
        assert_eq!(
            judge(&facts(now - 6_000, None), now, now, &LIMITS),
            Verdict::Later
        );
        assert_eq!(
            judge(&facts(now - 6_001, None), now, now, &LIMITS),
            Verdict::Check { times: 1 }
        );
    }

    #[test]
    fn check_times_count_up_to_the_max_then_the_message_is_discarded() {
        let now = 100_000;
        let old = now - 10_000;
        assert_eq!(
            judge(&facts(old, Some(1)), now, now, &LIMITS),
            Verdict::Check { times: 2 }
        );
        assert_eq!(
            judge(&facts(old, Some(14)), now, now, &LIMITS),
            Verdict::Check { times: 15 }
        );
        assert_eq!(
            judge(&facts(old, Some(15)), now, now, &LIMITS),
            Verdict::Discard
        );
    }

    #[test]
    fn records_stored_since_the_scan_began_wait_for_the_next_scan() {
        let now = 100_000;
        let mut f = facts(now - 60_000, Some(3));
        f.stored_ms = now - 5;
        assert_eq!(judge(&f, now, now - 10, &LIMITS), Verdict::Later);
    }

    #[test]
    fn half_messages_older_than_the_retention_are_given_up() {
        let now = LIMITS.reserved_ms + 10_000;
        assert_eq!(judge(&facts(1, None), now, now, &LIMITS), Verdict::Discard);
    }

    #[test]
    fn a_custom_immunity_time_replaces_the_timeout() {
        let now = 100_000;
        let mut f = facts(now - 8_000, None);
        f.immunity = Some("10");
        assert_eq!(judge(&f, now, now, &LIMITS), Verdict::Immune);
        f.immunity = Some("5");
        assert_eq!(judge(&f, now, now, &LIMITS), Verdict::Check { times: 1 });
        f.immunity = Some("junk");
        assert_eq!(judge(&f, now, now, &LIMITS), Verdict::Check { times: 1 });
    }

    #[test]
    fn a_birth_in_the_future_is_checked_at_once() {
        let now = 100_000;
        assert_eq!(
            judge(&facts(now + 50_000, None), now, now + 60_000, &LIMITS),
            Verdict::Check { times: 1 }
        );
    }

    #[test]
    fn op_progress_stops_at_the_first_pending_op_record() {
        let mut ops = OpLog::new(0, 10, 5);
        ops.done = vec![7, 5, 6, 9];
        assert_eq!(ops.progress(), 8);
        ops.removed.insert(12, 8);
        ops.pending.insert(8, HashSet::from([12]));
        assert!(ops.take(12));
        assert!(!ops.take(12));
        assert_eq!(ops.progress(), 10);
    }
}
