//! Cluster mode's renewal of push consumers' receipt handles (the rules are in [`crate::renew`]):
//! a due handle gets CHANGE_MESSAGE_INVISIBLETIME from the broker named in it, the call
//! ChangeInvisibleDuration makes, and the broker's new handle replaces it in the table.
//!
//! A renewal call is a network round trip, so a client's ack (or nack, or DLQ forward) can
//! arrive while one is under way; it then waits for the call to finish and uses the handle the
//! broker answered with, since the handle it would otherwise use is no longer current.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use apogee_broker::pop::PoppedMessage;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tracing::debug;

use super::{lock, Inner};
use crate::pb;
use crate::renew::{Key, RenewConfig, Renewals};

/// Renewal calls under way at once in one round.
const MAX_CONCURRENT_RENEWALS: usize = 32;

/// The push consumers' handles of one [`super::RemoteBackend`] and their renewal task.
#[derive(Default)]
pub(super) struct Renewal {
    table: Renewals,
    config: RwLock<RenewConfig>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Keys whose renewal call is under way. Locked before the table, never the other way.
    busy: Mutex<HashSet<Key>>,
    /// Woken whenever a renewal call finishes.
    done: Notify,
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Renewal {
    pub(super) fn config(&self) -> RenewConfig {
        *self.config.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes effect for the task if set before the first auto-renewed receive.
    pub(super) fn set_config(&self, config: RenewConfig) {
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
    }

    /// The invisible time of an auto-renewed receive.
    pub(super) fn invisible_ms(&self) -> i64 {
        i64::try_from(self.config().invisible.as_millis()).unwrap_or(i64::MAX)
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Starts renewing the handles of `popped`, received by push consumer `client_id`, and the
    /// renewal task if it is not running yet.
    pub(super) fn track(
        &self,
        inner: Weak<Inner>,
        client_id: &str,
        group: &str,
        topic: &str,
        popped: &[PoppedMessage],
    ) {
        let config = self.config();
        {
            let mut task = lock(&self.task);
            if task.is_none() {
                *task = Some(tokio::spawn(run(inner, config)));
            }
        }
        self.table
            .track_popped(client_id, group, topic, popped, config.max_handles);
    }

    /// Stops renewing the message the client knows as `handle` and returns the handle to use
    /// for it now; waits (at most `wait`) for a renewal call of it under way.
    pub(super) async fn take(&self, group: &str, handle: &str, wait: Duration) -> String {
        let key = (group.to_owned(), handle.to_owned());
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            {
                let busy = lock(&self.busy);
                if !busy.contains(&key) {
                    return self.table.take(group, handle);
                }
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                debug!(
                    group,
                    "a renewal call outlasted the wait; using the latest handle"
                );
                return self.table.take(group, handle);
            }
        }
    }

    /// Marks `key` busy if it is still tracked with handle `current`.
    fn begin(&self, key: &Key, current: &str) -> bool {
        let mut busy = lock(&self.busy);
        if self.table.current(key).as_deref() != Some(current) {
            return false;
        }
        busy.insert(key.clone())
    }

    fn end(&self, key: &Key) {
        lock(&self.busy).remove(key);
        self.done.notify_waiters();
    }

    /// Stops the renewal task.
    pub(super) fn stop(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// Renews due handles every `config.period` until the backend is dropped.
async fn run(inner: Weak<Inner>, config: RenewConfig) {
    let mut ticker = tokio::time::interval(config.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        renew_due(&inner, &config, Instant::now()).await;
    }
}

/// One renewal round at `now`.
async fn renew_due(inner: &Arc<Inner>, config: &RenewConfig, now: Instant) {
    let round = inner.renewal.table.due(now, config.ahead, config.max);
    if round.expired > 0 {
        debug!(
            count = round.expired,
            "receipt handles renewed for the maximum time"
        );
    }
    let slice_ms = i64::try_from(config.slice.as_millis()).unwrap_or(i64::MAX);
    let mut calls = JoinSet::new();
    for (key, tracked) in round.renew {
        if calls.len() >= MAX_CONCURRENT_RENEWALS {
            calls.join_next().await;
        }
        if !inner.renewal.begin(&key, &tracked.current) {
            continue;
        }
        let inner = inner.clone();
        let visible_at = now + config.slice;
        calls.spawn(async move {
            let result = inner
                .change_invisible(&tracked.group, &tracked.topic, &tracked.current, slice_ms)
                .await;
            match result {
                Ok(handle) => {
                    inner
                        .renewal
                        .table
                        .renewed(&key, &tracked.current, handle, visible_at);
                }
                // The broker may answer next round.
                Err(error) if error.code == pb::Code::ProxyTimeout => {
                    debug!(group = %tracked.group, error = %error.message, "receipt handle renewal failed; retried");
                }
                Err(error) => {
                    debug!(group = %tracked.group, error = %error.message, "receipt handle renewal refused; dropped");
                    inner.renewal.table.forget(&key);
                }
            }
            inner.renewal.end(&key);
        });
    }
    while calls.join_next().await.is_some() {}
}

/// Gives a departed client's messages back soon (after `clear`).
pub(super) async fn release(inner: &Inner, client_id: &str) {
    let clear_ms = i64::try_from(inner.renewal.config().clear.as_millis()).unwrap_or(i64::MAX);
    for t in inner.renewal.table.drop_client(client_id) {
        if let Err(error) = inner
            .change_invisible(&t.group, &t.topic, &t.current, clear_ms)
            .await
        {
            debug!(%client_id, error = %error.message, "cannot release a message of a departed client");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(renewal: &Renewal) -> Key {
        assert!(renewal.table.track(
            "c1",
            "G",
            "T",
            "h1",
            Duration::from_secs(30),
            Instant::now(),
            16
        ));
        ("G".to_owned(), "h1".to_owned())
    }

    #[tokio::test]
    async fn an_ack_during_a_renewal_call_waits_for_it_and_gets_the_new_handle() {
        let renewal = Arc::new(Renewal::default());
        let key = tracked(&renewal);
        assert!(renewal.begin(&key, "h1"));
        let waiting = {
            let renewal = renewal.clone();
            tokio::spawn(async move { renewal.take("G", "h1", Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the ack waits for the call");
        renewal
            .table
            .renewed(&key, "h1", "h1'".into(), Instant::now());
        renewal.end(&key);
        assert_eq!(waiting.await.expect("joined"), "h1'");
        assert!(renewal.table.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_ack_waits_no_longer_than_its_bound_for_a_stuck_call() {
        let renewal = Renewal::default();
        let key = tracked(&renewal);
        assert!(renewal.begin(&key, "h1"));
        assert_eq!(renewal.take("G", "h1", Duration::from_secs(3)).await, "h1");
        assert!(renewal.table.is_empty());
    }

    #[tokio::test]
    async fn a_handle_acked_before_its_renewal_starts_is_not_renewed() {
        let renewal = Renewal::default();
        let key = tracked(&renewal);
        assert_eq!(renewal.take("G", "h1", Duration::ZERO).await, "h1");
        assert!(!renewal.begin(&key, "h1"));
        assert!(lock(&renewal.busy).is_empty());
    }
}
