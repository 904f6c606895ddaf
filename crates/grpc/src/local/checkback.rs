//! Transaction check-back for gRPC producers. The broker's check service asks the hook installed
//! here about a half message whose producer group has no remoting producer connected; a 5.x
//! producer's group is the topic, so the question goes as a `RecoverOrphanedTransactionCommand`
//! down the Telemetry stream of one producer that declared the topic, taking them in turn. The
//! client answers with EndTransaction (source SERVER_CHECK), which resolves the half message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use apogee_broker::local::{LocalServices, LocalTransactionCheck};
use tracing::debug;

use super::to_pb_message;
use crate::pb;
use crate::session::SessionRegistry;

/// Routes the broker's check-backs to `sessions`' producers (replacing any earlier hook).
pub(super) fn install(services: &LocalServices, sessions: &Arc<SessionRegistry>) {
    let sessions = Arc::downgrade(sessions);
    let turn = AtomicUsize::new(0);
    services.set_transaction_check_hook(Some(Arc::new(move |check| {
        deliver(&sessions, &turn, check)
    })));
}

/// The command a producer is asked with.
pub(crate) fn recover_command(check: &LocalTransactionCheck) -> pb::TelemetryCommand {
    pb::TelemetryCommand {
        status: None,
        command: Some(
            pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(
                pb::RecoverOrphanedTransactionCommand {
                    message: Some(to_pb_message(&check.message)),
                    transaction_id: check.transaction_handle.clone(),
                },
            ),
        ),
    }
}

/// Queues the check on one producer of the group, trying the others if its queue is full.
fn deliver(
    sessions: &Weak<SessionRegistry>,
    turn: &AtomicUsize,
    check: LocalTransactionCheck,
) -> bool {
    let Some(sessions) = sessions.upgrade() else {
        return false;
    };
    let producers = sessions.producers_of(&check.producer_group);
    if producers.is_empty() {
        return false;
    }
    let command = recover_command(&check);
    let first = turn.fetch_add(1, Ordering::Relaxed);
    for i in 0..producers.len() {
        let client_id = &producers[(first + i) % producers.len()];
        match sessions.push_command(client_id, command.clone()) {
            Ok(()) => {
                debug!(%client_id, group = %check.producer_group, "transaction check-back sent");
                return true;
            }
            Err(error) => debug!(%client_id, %error, "cannot send a transaction check-back"),
        }
    }
    false
}
