//! Parked pulls (RocketMQ's `PullRequestHoldService`): a pull that found nothing and allows
//! suspension waits here, keyed by topic and queue, until the store reports new data for that
//! queue, its suspend time passes, its connection closes, or the broker stops.
//!
//! A parked pull is just a oneshot receiver held by the request's own future: nothing polls, no
//! thread waits. The table is bounded (`max_parked_pulls`), and an entry leaves it when woken or
//! when its future is dropped, so closed connections leave nothing behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch};

use crate::manager::lock;

/// Why a parked pull woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The queue grew past the offset the pull waits for.
    Arrived,
    /// The broker is stopping: answer now.
    Shutdown,
}

struct Waiter {
    id: u64,
    /// Wake once the queue's max offset exceeds this.
    offset: u64,
    /// Short polling waits out its time even when messages arrive.
    wake_on_arrival: bool,
    tx: oneshot::Sender<Wake>,
}

#[derive(Default)]
struct Table {
    /// topic -> queue id -> waiters.
    queues: HashMap<String, HashMap<i32, Vec<Waiter>>>,
    next_id: u64,
    shut_down: bool,
}

pub struct PullHoldService {
    table: Mutex<Table>,
    /// Entries in `table`; read without the lock on every append.
    parked: AtomicUsize,
    max_parked: usize,
    /// The parked count, published for whoever wants to await a value (tests, embedders).
    published: watch::Sender<usize>,
}

/// A pull waiting in the table. Dropping it takes it out.
pub struct Parked {
    service: Arc<PullHoldService>,
    topic: String,
    queue_id: i32,
    id: u64,
    rx: oneshot::Receiver<Wake>,
}

impl Parked {
    /// Resolves when woken; a dropped sender (never expected) reads as a shutdown.
    pub async fn woken(&mut self) -> Wake {
        (&mut self.rx).await.unwrap_or(Wake::Shutdown)
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.service.remove(&self.topic, self.queue_id, self.id);
    }
}

impl PullHoldService {
    pub fn new(max_parked: usize) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(Table::default()),
            parked: AtomicUsize::new(0),
            max_parked,
            published: watch::Sender::new(0),
        })
    }

    /// Parks a pull of `topic`/`queue_id` waiting for an offset above `offset`. `None` when the
    /// table is full or the broker is stopping: the caller answers at once.
    pub fn park(
        self: &Arc<Self>,
        topic: &str,
        queue_id: i32,
        offset: u64,
        wake_on_arrival: bool,
    ) -> Option<Parked> {
        let mut t = lock(&self.table);
        if t.shut_down || self.parked.load(Ordering::Acquire) >= self.max_parked {
            return None;
        }
        t.next_id += 1;
        let id = t.next_id;
        let (tx, rx) = oneshot::channel();
        t.queues
            .entry(topic.to_owned())
            .or_default()
            .entry(queue_id)
            .or_default()
            .push(Waiter {
                id,
                offset,
                wake_on_arrival,
                tx,
            });
        self.parked.fetch_add(1, Ordering::AcqRel);
        self.publish();
        Some(Parked {
            service: Arc::clone(self),
            topic: topic.to_owned(),
            queue_id,
            id,
            rx,
        })
    }

    /// The store's append hook: wakes the pulls of this queue waiting below `max_offset`.
    pub fn notify(&self, topic: &str, queue_id: i32, max_offset: u64) {
        if self.parked.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut t = lock(&self.table);
        let Some(queues) = t.queues.get_mut(topic) else {
            return;
        };
        let Some(waiters) = queues.get_mut(&queue_id) else {
            return;
        };
        let mut woken = 0;
        let mut keep = Vec::with_capacity(waiters.len());
        for w in waiters.drain(..) {
            if w.wake_on_arrival && max_offset > w.offset {
                // The receiver may be gone already; its Drop then finds nothing to remove.
                let _ = w.tx.send(Wake::Arrived);
                woken += 1;
            } else {
                keep.push(w);
            }
        }
        *waiters = keep;
        if waiters.is_empty() {
            queues.remove(&queue_id);
            if queues.is_empty() {
                t.queues.remove(topic);
            }
        }
        self.parked.fetch_sub(woken, Ordering::AcqRel);
        self.publish();
    }

    /// Wakes every parked pull and refuses new ones.
    pub fn shutdown(&self) {
        let mut t = lock(&self.table);
        t.shut_down = true;
        let queues = std::mem::take(&mut t.queues);
        let mut n = 0;
        for waiter in queues.into_values().flat_map(|q| q.into_values()).flatten() {
            let _ = waiter.tx.send(Wake::Shutdown);
            n += 1;
        }
        self.parked.fetch_sub(n, Ordering::AcqRel);
        self.publish();
    }

    /// Pulls parked now.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Acquire)
    }

    /// Resolves once exactly `n` pulls are parked.
    pub async fn wait_parked(&self, n: usize) {
        let mut rx = self.published.subscribe();
        let _ = rx.wait_for(|&v| v == n).await;
    }

    /// Called with the table lock held, so published values follow the order of changes.
    fn publish(&self) {
        self.published
            .send_replace(self.parked.load(Ordering::Acquire));
    }

    fn remove(&self, topic: &str, queue_id: i32, id: u64) {
        let mut t = lock(&self.table);
        let Some(queues) = t.queues.get_mut(topic) else {
            return;
        };
        let Some(waiters) = queues.get_mut(&queue_id) else {
            return;
        };
        let before = waiters.len();
        waiters.retain(|w| w.id != id);
        let removed = before - waiters.len();
        if waiters.is_empty() {
            queues.remove(&queue_id);
            if queues.is_empty() {
                t.queues.remove(topic);
            }
        }
        self.parked.fetch_sub(removed, Ordering::AcqRel);
        if removed > 0 {
            self.publish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn arrival_wakes_only_waiters_below_the_new_max() {
        let s = PullHoldService::new(10);
        let mut a = s.park("T", 0, 5, true).unwrap();
        let mut b = s.park("T", 0, 7, true).unwrap();
        let _other_queue = s.park("T", 1, 0, true).unwrap();
        assert_eq!(s.parked(), 3);
        s.notify("T", 0, 6);
        assert_eq!(a.woken().await, Wake::Arrived);
        assert_eq!(s.parked(), 2);
        s.notify("T", 0, 8);
        assert_eq!(b.woken().await, Wake::Arrived);
        assert_eq!(s.parked(), 1);
    }

    #[tokio::test]
    async fn dropped_waiters_leave_the_table_and_the_cap_is_enforced() {
        let s = PullHoldService::new(2);
        let a = s.park("T", 0, 0, true).unwrap();
        let _b = s.park("T", 0, 0, true).unwrap();
        assert!(s.park("T", 0, 0, true).is_none());
        drop(a);
        assert_eq!(s.parked(), 1);
        assert!(s.park("U", 3, 0, true).is_some());
    }

    #[tokio::test]
    async fn short_polling_waiters_ignore_arrivals_but_not_shutdown() {
        let s = PullHoldService::new(10);
        let mut w = s.park("T", 0, 0, false).unwrap();
        s.notify("T", 0, 100);
        assert_eq!(s.parked(), 1);
        s.shutdown();
        assert_eq!(w.woken().await, Wake::Shutdown);
        assert_eq!(s.parked(), 0);
        assert!(s.park("T", 0, 0, true).is_none());
    }
}
