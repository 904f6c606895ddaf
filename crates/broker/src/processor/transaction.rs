//! END_TRANSACTION (37): RocketMQ's `EndTransactionProcessor`. Producers send it oneway after
//! their local transaction (and in answer to CHECK_TRANSACTION_STATE, `fromTransactionCheck`);
//! a response is built anyway for the callers that wait for one. Commit writes the real message
//! and an op record, rollback only the op record, an unknown state changes nothing.
//!
//! Beyond Java: a transaction resolved once is not resolved again (a repeated commit does not
//! write a second real message), and the op record covers every copy of the half message the
//! check service re-queued, so none of them is checked back later.

use std::sync::Arc;

use apogee_protocol::codes::response_code::*;
use apogee_protocol::header::EndTransactionRequestHeader;
use apogee_protocol::message::{keys, sysflag, MessageRecord};
use apogee_protocol::RemotingCommand;
use apogee_remoting::{HandlerFuture, RequestContext};
use apogee_store::StoreError;
use tracing::{debug, info, warn};

use super::{header, respond, success};
use crate::broker::BrokerInner;
use crate::manager::now_ms;
use crate::transaction::{self, Outcome};

pub(crate) fn handle(
    b: &Arc<BrokerInner>,
    ctx: RequestContext,
    req: RemotingCommand,
) -> HandlerFuture {
    HandlerFuture::ready(end_transaction(b, &ctx, &req))
}

fn end_transaction(
    b: &BrokerInner,
    ctx: &RequestContext,
    req: &RemotingCommand,
) -> Option<RemotingCommand> {
    let h: EndTransactionRequestHeader = match header(req) {
        Ok(h) => h,
        Err(response) => return Some(response),
    };
    if b.config.broker_id != 0 {
        warn!("end transaction on a slave is forbidden");
        return Some(respond(
            SLAVE_NOT_AVAILABLE,
            "message store is slave mode, so end transaction is forbidden",
        ));
    }
    let outcome = match h.commit_or_rollback {
        sysflag::TRANSACTION_COMMIT_TYPE => Outcome::Commit,
        sysflag::TRANSACTION_ROLLBACK_TYPE => Outcome::Rollback,
        state => {
            // Unknown (0) leaves the half message to the check service; anything else is noise.
            debug!(
                producer = %ctx.peer_addr(),
                state,
                from_check = h.from_transaction_check,
                msg_id = %h.msg_id,
                remark = ?req.remark,
                "end transaction without an outcome"
            );
            return None;
        }
    };
    if h.from_transaction_check || outcome == Outcome::Rollback {
        info!(
            producer = %ctx.peer_addr(),
            ?outcome,
            from_check = h.from_transaction_check,
            msg_id = %h.msg_id,
            remark = ?req.remark,
            "end transaction"
        );
    }
    Some(resolve(b, &h, outcome).unwrap_or_else(|response| response))
}

fn resolve(
    b: &BrokerInner,
    h: &EndTransactionRequestHeader,
    outcome: Outcome,
) -> Result<RemotingCommand, RemotingCommand> {
    let half = transaction::half_at(b, h.commit_log_offset)
        .ok_or_else(|| respond(SYSTEM_ERROR, "Find prepared transaction message failed"))?;
    if immunity_expired(b, h, &half) {
        warn!(
            msg_id = %h.msg_id,
            commit_log_offset = h.commit_log_offset,
            "end transaction after the message's check immunity time: left to the check-back"
        );
        return Err(respond(
            ILLEGAL_OPERATION,
            "the check immunity time of the message has passed; its outcome is asked by a check-back",
        ));
    }
    verify(&half, h)?;
    let id = half
        .uniq_key()
        .map(|k| k.into_owned())
        .unwrap_or_else(|| h.msg_id.clone());
    let known = b.transactions.outcome(&id);
    match (known, outcome) {
        (Some(Outcome::Commit), Outcome::Rollback) => {
            return Err(respond(
                SYSTEM_ERROR,
                format!("transaction {id} is already committed"),
            ))
        }
        (Some(Outcome::Rollback), Outcome::Commit) => {
            return Err(respond(
                SYSTEM_ERROR,
                format!("transaction {id} is already rolled back"),
            ))
        }
        (Some(_), _) => {
            b.transactions.count(|s| s.repeated_ends += 1);
            mark_resolved(b, &half);
            return Ok(success());
        }
        (None, _) => {}
    }
    if outcome == Outcome::Commit {
        let real = transaction::committed_record(&half)
            .map_err(|why| respond(SYSTEM_ERROR, format!("cannot commit: {why}")))?;
        if transaction::already_committed(b, &real.topic, &id) {
            b.transactions.count(|s| s.repeated_ends += 1);
        } else {
            transaction::append(b, &real).map_err(|e| store_error(b, e))?;
            b.transactions.count(|s| s.committed += 1);
        }
    } else {
        b.transactions.count(|s| s.rolled_back += 1);
    }
    b.transactions.remember(&id, outcome);
    mark_resolved(b, &half);
    Ok(success())
}

/// Writes the op record; the outcome stands even if that fails (the half message would only be
/// checked back again, as in Java).
fn mark_resolved(b: &BrokerInner, half: &MessageRecord) {
    if let Err(e) = transaction::mark_resolved(b, half) {
        warn!(offset = half.queue_offset, error = %e, "cannot write a transaction op record");
    }
}

/// `rejectCommitOrRollback`: a producer's own END_TRANSACTION arriving after the message's
/// custom check immunity time is refused, the check-back decides instead.
fn immunity_expired(
    b: &BrokerInner,
    h: &EndTransactionRequestHeader,
    half: &MessageRecord,
) -> bool {
    if h.from_transaction_check {
        return false;
    }
    let Some(value) = half
        .property(keys::CHECK_IMMUNITY_TIME_IN_SECONDS)
        .filter(|v| !v.is_empty())
    else {
        return false;
    };
    let timeout_ms = i64::try_from(b.config.transaction_timeout_ms).unwrap_or(i64::MAX);
    // Here an unparsable or short value means the timeout, as in Java's `getImmunityTime`.
    let immunity_ms = value
        .trim()
        .parse::<i64>()
        .map_or(0, |s| s.saturating_mul(1000))
        .max(timeout_ms);
    now_ms() - half.born_timestamp > immunity_ms
}

/// `checkPrepareMessage`: the half message must be the one the producer names.
fn verify(half: &MessageRecord, h: &EndTransactionRequestHeader) -> Result<(), RemotingCommand> {
    if half.property(keys::PGROUP).as_deref() != Some(h.producer_group.as_str()) {
        return Err(respond(SYSTEM_ERROR, "The producer group wrong"));
    }
    if half.queue_offset != h.tran_state_table_offset {
        return Err(respond(
            SYSTEM_ERROR,
            "The transaction state table offset wrong",
        ));
    }
    if half.physical_offset != h.commit_log_offset {
        return Err(respond(SYSTEM_ERROR, "The commit log offset wrong"));
    }
    Ok(())
}

/// `sendFinalMessage`'s put-status mapping.
fn store_error(b: &BrokerInner, e: StoreError) -> RemotingCommand {
    match e {
        StoreError::MessageIllegal(_) | StoreError::PropertiesTooLarge(_) => respond(
            MESSAGE_ILLEGAL,
            format!(
                "The message is illegal, maybe msg body or properties length not matched. msg body length limit {}B, msg properties length limit 32KB.",
                b.config.max_message_size_bytes
            ),
        ),
        StoreError::ServiceNotAvailable(why) => respond(
            SERVICE_NOT_AVAILABLE,
            format!("Service not available now. ({why})"),
        ),
        other => respond(SYSTEM_ERROR, other.to_string()),
    }
}
