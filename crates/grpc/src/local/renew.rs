//! Local mode's renewal runner: extends the push consumers' handles tracked in [`Renewals`]
//! through the broker's POP API (see [`crate::renew`] for the rules).

use std::sync::{Arc, Weak};
use std::time::Instant;

use apogee_broker::pop::PopApi;
use tracing::debug;

pub use crate::renew::{Key, RenewConfig, Renewals, Round, Tracked};

/// Renews due handles every `config.period` until `renewals` is dropped.
pub(super) async fn run(renewals: Weak<Renewals>, pop: PopApi, config: RenewConfig) {
    let mut ticker = tokio::time::interval(config.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(renewals) = renewals.upgrade() else {
            return;
        };
        renew_due(&renewals, &pop, &config, Instant::now());
    }
}

/// One renewal round at `now`.
pub(super) fn renew_due(renewals: &Renewals, pop: &PopApi, config: &RenewConfig, now: Instant) {
    let round = renewals.due(now, config.ahead, config.max);
    if round.expired > 0 {
        debug!(
            count = round.expired,
            "receipt handles renewed for the maximum time"
        );
    }
    let slice_ms = i64::try_from(config.slice.as_millis()).unwrap_or(i64::MAX);
    for (key, tracked) in round.renew {
        match pop.change_invisible(
            &tracked.group,
            &tracked.topic,
            &tracked.current,
            None,
            slice_ms,
        ) {
            Ok(changed) => renewals.renewed(
                &key,
                &tracked.current,
                changed.receipt_handle,
                now + config.slice,
            ),
            Err(error) => {
                debug!(group = %tracked.group, %error, "receipt handle renewal failed; dropped");
                renewals.forget(&key);
            }
        }
    }
}

/// Gives a departed client's messages back soon.
pub(super) fn release(renewals: &Renewals, pop: &PopApi, config: &RenewConfig, client_id: &str) {
    let clear_ms = i64::try_from(config.clear.as_millis()).unwrap_or(i64::MAX);
    for t in renewals.drop_client(client_id) {
        if let Err(error) = pop.change_invisible(&t.group, &t.topic, &t.current, None, clear_ms) {
            debug!(%client_id, %error, "cannot release a message of a departed client");
        }
    }
}

/// Starts the renewal task once (needs a tokio runtime; the first auto-renewed receive runs in
/// one).
pub(super) fn ensure_task(
    started: &std::sync::OnceLock<()>,
    renewals: &Arc<Renewals>,
    pop: PopApi,
    config: RenewConfig,
) {
    started.get_or_init(|| {
        tokio::spawn(run(Arc::downgrade(renewals), pop, config));
    });
}
