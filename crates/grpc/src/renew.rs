//! Receipt-handle renewal for push consumers, shared by local and cluster mode. A push consumer
//! receives with `auto_renew` and no invisible time: the server picks one and, like the proxy's
//! `DefaultReceiptHandleManager`, keeps extending it while the client works on the message. Each
//! handle received that way is tracked here under the handle the client holds; every `period`
//! the handles due within `ahead` get `slice` more invisible time from the broker (each backend
//! has its own runner), and the new handle is kept. The client's ack, nack
//! (ChangeInvisibleDuration) or DLQ forward stops the renewal and uses the latest handle; a
//! client that leaves gets its messages back after `clear` instead of after a whole slice; a
//! handle renewed for `max` is left to expire.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use apogee_broker::pop::PoppedMessage;

/// The proxy's renewal settings (`ProxyConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewConfig {
    /// Invisible time of an auto-renewed receive.
    pub invisible: Duration,
    /// How often due handles are renewed (`renewSchedulePeriodMillis`, 5 s).
    pub period: Duration,
    /// A handle is renewed once it would turn visible within this (`renewAheadTimeMillis`, 10 s).
    pub ahead: Duration,
    /// Invisible time each renewal grants (`renewSliceTimeMillis`, 60 s).
    pub slice: Duration,
    /// Renewal stops this long after the receive (`renewMaxTimeMillis`, 3 h).
    pub max: Duration,
    /// Invisible time left to the messages of a client that leaves
    /// (`invisibleTimeMillisWhenClear`, 1 s).
    pub clear: Duration,
    /// Handles tracked at once; receives beyond it are not renewed.
    pub max_handles: usize,
}

impl Default for RenewConfig {
    fn default() -> Self {
        Self {
            invisible: Duration::from_millis(crate::convert::AUTO_RENEW_INVISIBLE_MS as u64),
            period: Duration::from_secs(5),
            ahead: Duration::from_secs(10),
            slice: Duration::from_secs(60),
            max: Duration::from_secs(3 * 3600),
            clear: Duration::from_secs(1),
            max_handles: 1_000_000,
        }
    }
}

/// One message being renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub client_id: String,
    pub group: String,
    pub topic: String,
    /// The broker's latest handle.
    pub current: String,
    pub received_at: Instant,
    pub visible_at: Instant,
}

/// Key: (group, the handle the client was given).
pub type Key = (String, String);

/// The handles being renewed. A std mutex: no lock is held across an `.await`.
#[derive(Debug, Default)]
pub struct Renewals {
    table: Mutex<HashMap<Key, Tracked>>,
}

/// What one renewal round must do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Due for renewal: key and the handle to renew.
    pub renew: Vec<(Key, Tracked)>,
    /// Renewed for too long: dropped from the table.
    pub expired: usize,
}

impl Renewals {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Tracked>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts renewing `handle`, received by `client_id` invisible for `invisible` from `now`.
    /// False when the table is full.
    #[allow(clippy::too_many_arguments)]
    pub fn track(
        &self,
        client_id: &str,
        group: &str,
        topic: &str,
        handle: &str,
        invisible: Duration,
        now: Instant,
        max_handles: usize,
    ) -> bool {
        let mut table = self.lock();
        if table.len() >= max_handles {
            return false;
        }
        table.insert(
            (group.to_owned(), handle.to_owned()),
            Tracked {
                client_id: client_id.to_owned(),
                group: group.to_owned(),
                topic: topic.to_owned(),
                current: handle.to_owned(),
                received_at: now,
                visible_at: now + invisible,
            },
        );
        true
    }

    /// Starts renewing the handles of `popped`, received now by push consumer `client_id`, each
    /// invisible for the time it was popped with. Handles past `max_handles` are not renewed
    /// (logged once per call).
    pub fn track_popped(
        &self,
        client_id: &str,
        group: &str,
        topic: &str,
        popped: &[PoppedMessage],
        max_handles: usize,
    ) {
        let now = Instant::now();
        let mut refused = 0usize;
        for m in popped {
            let invisible = Duration::from_millis(m.invisible_ms.max(0) as u64);
            if !self.track(
                client_id,
                group,
                topic,
                &m.receipt_handle,
                invisible,
                now,
                max_handles,
            ) {
                refused += 1;
            }
        }
        if refused > 0 {
            tracing::warn!(
                client_id,
                refused,
                "too many receipt handles to renew; not renewed"
            );
        }
    }

    /// Stops renewing the message the client knows as `handle`; returns the handle to use for
    /// it now (the latest renewal's), or `handle` itself if it was not renewed.
    pub fn take(&self, group: &str, handle: &str) -> String {
        self.lock()
            .remove(&(group.to_owned(), handle.to_owned()))
            .map_or_else(|| handle.to_owned(), |t| t.current)
    }

    /// The latest handle of `key`, if it is tracked.
    pub fn current(&self, key: &Key) -> Option<String> {
        self.lock().get(key).map(|t| t.current.clone())
    }

    /// Stops renewing everything of `client_id`; returns what was tracked.
    pub fn drop_client(&self, client_id: &str) -> Vec<Tracked> {
        let mut table = self.lock();
        let keys: Vec<Key> = table
            .iter()
            .filter(|(_, t)| t.client_id == client_id)
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().filter_map(|k| table.remove(k)).collect()
    }

    /// The handles to renew at `now`; drops those renewed past `max`.
    pub fn due(&self, now: Instant, ahead: Duration, max: Duration) -> Round {
        let mut table = self.lock();
        let before = table.len();
        table.retain(|_, t| now.saturating_duration_since(t.received_at) < max);
        let expired = before - table.len();
        let renew = table
            .iter()
            .filter(|(_, t)| t.visible_at.saturating_duration_since(now) <= ahead)
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        Round { renew, expired }
    }

    /// Records a renewal of `key` (if the client has not acked it meanwhile).
    pub fn renewed(&self, key: &Key, was: &str, current: String, visible_at: Instant) {
        if let Some(t) = self.lock().get_mut(key) {
            if t.current == was {
                t.current = current;
                t.visible_at = visible_at;
            }
        }
    }

    /// Forgets `key` (its renewal failed: the message is gone or delivered again).
    pub fn forget(&self, key: &Key) {
        self.lock().remove(key);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn track(r: &Renewals, client: &str, handle: &str, now: Instant) {
        assert!(r.track(client, "G", "T", handle, 30 * S, now, 16));
    }

    #[test]
    fn handles_come_due_ahead_of_their_visibility_and_move_on_when_renewed() {
        let r = Renewals::default();
        let t0 = Instant::now();
        track(&r, "c1", "h1", t0);
        assert!(r.due(t0 + 19 * S, 10 * S, 3600 * S).renew.is_empty());
        let round = r.due(t0 + 20 * S, 10 * S, 3600 * S);
        assert_eq!(round.renew.len(), 1);
        let (key, tracked) = &round.renew[0];
        assert_eq!(tracked.current, "h1");
        r.renewed(key, "h1", "h1'".into(), t0 + 80 * S);
        assert!(r.due(t0 + 69 * S, 10 * S, 3600 * S).renew.is_empty());
        assert_eq!(r.take("G", "h1"), "h1'", "the ack uses the latest handle");
        assert!(r.is_empty());
        assert_eq!(r.take("G", "unknown"), "unknown");
    }

    #[test]
    fn a_renewal_racing_an_ack_does_not_resurrect_the_entry() {
        let r = Renewals::default();
        let t0 = Instant::now();
        track(&r, "c1", "h1", t0);
        let round = r.due(t0 + 25 * S, 10 * S, 3600 * S);
        assert_eq!(r.take("G", "h1"), "h1");
        r.renewed(&round.renew[0].0, "h1", "h1'".into(), t0 + 85 * S);
        assert!(r.is_empty());
    }

    #[test]
    fn renewal_stops_after_the_max_time_and_when_the_client_leaves() {
        let r = Renewals::default();
        let t0 = Instant::now();
        track(&r, "c1", "h1", t0);
        track(&r, "c2", "h2", t0);
        let gone = r.drop_client("c2");
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].current, "h2");
        let round = r.due(t0 + 3600 * S, 10 * S, 3600 * S);
        assert_eq!(round.expired, 1);
        assert!(round.renew.is_empty());
        assert!(r.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let r = Renewals::default();
        let t0 = Instant::now();
        assert!(r.track("c", "G", "T", "h1", S, t0, 1));
        assert!(!r.track("c", "G", "T", "h2", S, t0, 1));
    }
}
