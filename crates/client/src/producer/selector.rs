//! Choosing the queue of a send yourself, the way ordered messages are sent: every message of
//! one order key goes to the same queue, and a queue keeps order.
//!
//! [`SelectByHash`] hashes keys with Java's `hashCode`, so a Rust and a Java producer put the
//! same key on the same queue.

use apogee_protocol::body::MessageQueue;
use apogee_protocol::message::java_string_hash;

use crate::message::Message;

/// Picks one of `queues` (the topic's writable queues, in route order) for `msg`, given the
/// caller's `arg` (typically an order or sharding key). `None` refuses the send.
pub trait QueueSelector<A: ?Sized>: Send + Sync {
    fn select(&self, queues: &[MessageQueue], msg: &Message, arg: &A) -> Option<MessageQueue>;
}

impl<A: ?Sized, F> QueueSelector<A> for F
where
    F: Fn(&[MessageQueue], &Message, &A) -> Option<MessageQueue> + Send + Sync,
{
    fn select(&self, queues: &[MessageQueue], msg: &Message, arg: &A) -> Option<MessageQueue> {
        self(queues, msg, arg)
    }
}

/// Java's `hashCode` of a value, for the types that are common order keys.
pub trait JavaHashCode {
    fn java_hash_code(&self) -> i32;
}

impl JavaHashCode for str {
    fn java_hash_code(&self) -> i32 {
        java_string_hash(self)
    }
}

impl JavaHashCode for String {
    fn java_hash_code(&self) -> i32 {
        java_string_hash(self)
    }
}

/// `Integer.hashCode`: the value itself.
impl JavaHashCode for i32 {
    fn java_hash_code(&self) -> i32 {
        *self
    }
}

/// `Long.hashCode`: the two halves xor-ed.
impl JavaHashCode for i64 {
    fn java_hash_code(&self) -> i32 {
        (*self ^ ((*self as u64) >> 32) as i64) as i32
    }
}

/// As a Java `long` holding the same bits.
impl JavaHashCode for u64 {
    fn java_hash_code(&self) -> i32 {
        (*self as i64).java_hash_code()
    }
}

/// As a Java `long` holding the value.
impl JavaHashCode for u32 {
    fn java_hash_code(&self) -> i32 {
        i64::from(*self).java_hash_code()
    }
}

impl<T: JavaHashCode + ?Sized> JavaHashCode for &T {
    fn java_hash_code(&self) -> i32 {
        (**self).java_hash_code()
    }
}

/// RocketMQ's `SelectMessageQueueByHash`: queue `|hashCode(arg) % n|`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelectByHash;

impl SelectByHash {
    /// The queue index for a hash over `n` queues, as Java computes it (Java's `%` keeps the
    /// sign of the dividend, then the absolute value is taken).
    pub fn index(hash: i32, n: usize) -> Option<usize> {
        let n = i32::try_from(n).ok().filter(|n| *n > 0)?;
        usize::try_from((hash % n).unsigned_abs()).ok()
    }
}

impl<A: JavaHashCode + ?Sized> QueueSelector<A> for SelectByHash {
    fn select(&self, queues: &[MessageQueue], _msg: &Message, arg: &A) -> Option<MessageQueue> {
        let i = Self::index(arg.java_hash_code(), queues.len())?;
        queues.get(i).cloned()
    }
}

/// RocketMQ's `SelectMessageQueueByRandom`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelectByRandom;

impl<A: ?Sized> QueueSelector<A> for SelectByRandom {
    fn select(&self, queues: &[MessageQueue], _msg: &Message, _arg: &A) -> Option<MessageQueue> {
        if queues.is_empty() {
            return None;
        }
        let i = crate::util::random_u64() as usize % queues.len();
        queues.get(i).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(n: i32) -> Vec<MessageQueue> {
        (0..n).map(|i| MessageQueue::new("T", "b", i)).collect()
    }

    #[test]
    fn hash_index_follows_java_remainder_then_abs() {
        // (hash, n, index)
        let table: &[(i32, usize, usize)] = &[
            (0, 4, 0),
            (5, 4, 1),
            (-5, 4, 1),
            (-8, 4, 0),
            (i32::MIN, 3, 2),
            (i32::MAX, 3, 1),
            (2_598_919, 8, 7),
        ];
        for (hash, n, want) in table {
            assert_eq!(SelectByHash::index(*hash, *n), Some(*want), "{hash} % {n}");
        }
        assert_eq!(SelectByHash::index(1, 0), None);
    }

    #[test]
    fn java_hash_codes_of_common_keys() {
        assert_eq!("TagA".java_hash_code(), 2_598_919);
        assert_eq!(String::from("hello").java_hash_code(), 99_162_322);
        assert_eq!(42i32.java_hash_code(), 42);
        assert_eq!(42i64.java_hash_code(), 42);
        assert_eq!((-1i64).java_hash_code(), 0);
        assert_eq!((1i64 << 32).java_hash_code(), 1);
        assert_eq!(u64::MAX.java_hash_code(), 0);
    }

    #[test]
    fn same_key_always_selects_the_same_queue() {
        let qs = queues(8);
        let m = Message::new("T", "x");
        let a = SelectByHash.select(&qs, &m, "order-42").unwrap();
        let b = SelectByHash
            .select(&qs, &m, &String::from("order-42"))
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.queue_id as usize,
            SelectByHash::index(java_string_hash("order-42"), 8).unwrap()
        );
        let by_id = SelectByHash.select(&qs, &m, &10i64).unwrap();
        assert_eq!(by_id.queue_id, 2);
    }

    #[test]
    fn closures_are_selectors() {
        let first = |qs: &[MessageQueue], _: &Message, _: &()| qs.first().cloned();
        assert_eq!(
            first
                .select(&queues(3), &Message::new("T", "x"), &())
                .unwrap()
                .queue_id,
            0
        );
        assert!(SelectByRandom
            .select(&queues(0), &Message::new("T", "x"), &())
            .is_none());
    }
}
