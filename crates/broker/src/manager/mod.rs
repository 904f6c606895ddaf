//! The broker's state, one manager per concern. Each guards its tables with a std mutex held only
//! for a table operation, never across an `.await`, so managers can be called from async code.

pub mod client;
pub mod lock;
pub mod offset;
pub mod subscription;
pub mod topic;

use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub use client::{
    ClientChannel, ConsumerManager, ConsumerRegistration, Membership, ProducerManager,
};
pub use lock::RebalanceLockManager;
pub use offset::ConsumerOffsetManager;
pub use subscription::SubscriptionGroupManager;
pub use topic::TopicConfigManager;

/// Locks a mutex, recovering from poisoning: the tables stay consistent between operations, and a
/// panicked request must not take the broker down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
