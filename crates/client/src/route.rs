//! From a topic's route to the queues a producer writes and a consumer reads: pure functions
//! over `TopicRouteData`, following `MQClientInstance.topicRouteData2TopicPublishInfo` and
//! `topicRouteData2TopicSubscribeInfo`.

use std::sync::atomic::{AtomicU32, Ordering};

use apogee_protocol::body::{MessageQueue, TopicRouteData, MASTER_ID};
use apogee_protocol::codes::perm;

/// The queues a producer may write for one topic, and the round-robin position shared by every
/// producer of the instance.
#[derive(Debug)]
pub struct TopicPublishInfo {
    /// Writable queues of brokers with a live master, broker by broker in name order.
    pub queues: Vec<MessageQueue>,
    /// The queue list came from an `orderTopicConf` (fixed per-broker queue counts).
    pub order_topic: bool,
    /// False for the auto-create fallback built from `TBW102`'s route.
    pub have_route: bool,
    index: AtomicU32,
}

impl Clone for TopicPublishInfo {
    fn clone(&self) -> Self {
        Self {
            queues: self.queues.clone(),
            order_topic: self.order_topic,
            have_route: self.have_route,
            index: AtomicU32::new(self.index.load(Ordering::Relaxed)),
        }
    }
}

impl TopicPublishInfo {
    pub fn new(queues: Vec<MessageQueue>, order_topic: bool, have_route: bool) -> Self {
        Self {
            queues,
            order_topic,
            have_route,
            index: AtomicU32::new(crate::util::random_u64() as u32),
        }
    }

    /// Sets the round-robin position (tests want a known starting queue).
    pub fn with_start_index(self, index: u32) -> Self {
        self.index.store(index, Ordering::Relaxed);
        self
    }

    /// True when there is at least one queue to write.
    pub fn ok(&self) -> bool {
        !self.queues.is_empty()
    }

    /// The next queue position, advancing the shared counter.
    pub fn next_index(&self) -> usize {
        self.index.fetch_add(1, Ordering::Relaxed) as usize
    }

    /// The next queue in round-robin order.
    pub fn select_one(&self) -> Option<&MessageQueue> {
        if self.queues.is_empty() {
            return None;
        }
        let i = self.next_index() % self.queues.len();
        self.queues.get(i)
    }

    /// The next queue (in round-robin order, trying each at most once) that `accept` takes.
    pub fn select_where(
        &self,
        mut accept: impl FnMut(&MessageQueue) -> bool,
    ) -> Option<&MessageQueue> {
        let n = self.queues.len();
        (0..n).find_map(|_| {
            let mq = self.queues.get(self.next_index() % n)?;
            accept(mq).then_some(mq)
        })
    }
}

/// The route with its queue and broker lists sorted by broker name, so that two answers of the
/// name server compare equal when they describe the same route.
pub fn normalize_route(mut route: TopicRouteData) -> TopicRouteData {
    route
        .queue_datas
        .sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    route
        .broker_datas
        .sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    route
}

/// The writable queues of `topic`: with an `orderTopicConf` (`"brokerA:4;brokerB:4"`) exactly
/// those; otherwise, for each writable queue data (in broker-name order) whose broker has a
/// master, queue ids `0..writeQueueNums`.
pub fn publish_info_from_route(topic: &str, route: &TopicRouteData) -> TopicPublishInfo {
    if let Some(conf) = route.order_topic_conf.as_deref().filter(|c| !c.is_empty()) {
        let mut queues = Vec::new();
        for item in conf.split(';') {
            let Some((broker, nums)) = item.split_once(':') else {
                continue;
            };
            let nums: i32 = nums.trim().parse().unwrap_or(0);
            for qid in 0..nums.max(0) {
                queues.push(MessageQueue::new(topic, broker.trim(), qid));
            }
        }
        return TopicPublishInfo::new(queues, true, true);
    }
    let mut qds: Vec<_> = route.queue_datas.iter().collect();
    qds.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    let mut queues = Vec::new();
    for qd in qds {
        if !perm::is_writeable(qd.perm) {
            continue;
        }
        let has_master = route
            .broker_datas
            .iter()
            .find(|bd| bd.broker_name == qd.broker_name)
            .is_some_and(|bd| bd.broker_addrs.contains_key(&MASTER_ID));
        if !has_master {
            continue;
        }
        for qid in 0..qd.write_queue_nums.max(0) {
            queues.push(MessageQueue::new(topic, qd.broker_name.clone(), qid));
        }
    }
    TopicPublishInfo::new(queues, false, true)
}

/// The readable queues of `topic`, sorted: queue ids `0..readQueueNums` of every readable
/// queue data.
pub fn subscribe_queues_from_route(topic: &str, route: &TopicRouteData) -> Vec<MessageQueue> {
    let mut queues: Vec<MessageQueue> = route
        .queue_datas
        .iter()
        .filter(|qd| perm::is_readable(qd.perm))
        .flat_map(|qd| {
            (0..qd.read_queue_nums.max(0))
                .map(move |qid| MessageQueue::new(topic, qd.broker_name.clone(), qid))
        })
        .collect();
    queues.sort();
    queues.dedup();
    queues
}

/// `TBW102`'s route reshaped for auto-creating `topic`: each broker's queue count becomes
/// `min(default_topic_queue_nums, readQueueNums)` for reading and writing, as the Java producer
/// does before its first send to a new topic.
pub fn default_route_for_new_topic(
    mut template: TopicRouteData,
    default_topic_queue_nums: i32,
) -> TopicRouteData {
    for qd in &mut template.queue_datas {
        let n = default_topic_queue_nums.min(qd.read_queue_nums);
        qd.read_queue_nums = n;
        qd.write_queue_nums = n;
    }
    template
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_protocol::body::{BrokerData, QueueData};
    use std::collections::BTreeMap;

    fn broker(name: &str, with_master: bool) -> BrokerData {
        let mut addrs = BTreeMap::new();
        if with_master {
            addrs.insert(0, format!("{name}-host:10911"));
        }
        addrs.insert(1, format!("{name}-slave:10911"));
        BrokerData {
            broker_addrs: addrs,
            broker_name: name.into(),
            cluster: "c".into(),
            ..Default::default()
        }
    }

    fn qd(name: &str, perm: i32, read: i32, write: i32) -> QueueData {
        QueueData {
            broker_name: name.into(),
            perm,
            read_queue_nums: read,
            write_queue_nums: write,
            topic_sys_flag: 0,
        }
    }

    fn names(q: &[MessageQueue]) -> Vec<String> {
        q.iter()
            .map(|m| format!("{}:{}", m.broker_name, m.queue_id))
            .collect()
    }

    #[test]
    fn publish_queues_skip_unwritable_and_masterless_brokers() {
        let route = TopicRouteData {
            broker_datas: vec![broker("b", true), broker("a", true), broker("c", false)],
            queue_datas: vec![
                qd("b", 6, 2, 2),
                qd("a", 6, 3, 2),
                qd("c", 6, 2, 2),
                qd("d", 4, 2, 2),
            ],
            ..Default::default()
        };
        let info = publish_info_from_route("T", &route);
        assert_eq!(names(&info.queues), vec!["a:0", "a:1", "b:0", "b:1"]);
        assert!(!info.order_topic);
        assert!(info.have_route);
    }

    #[test]
    fn order_topic_conf_fixes_the_queue_list() {
        let route = TopicRouteData {
            order_topic_conf: Some("b:2;a:1".into()),
            ..Default::default()
        };
        let info = publish_info_from_route("T", &route);
        assert_eq!(names(&info.queues), vec!["b:0", "b:1", "a:0"]);
        assert!(info.order_topic);
    }

    #[test]
    fn subscribe_queues_are_the_readable_ones_sorted() {
        let route = TopicRouteData {
            queue_datas: vec![qd("b", 6, 2, 4), qd("a", 2, 2, 2), qd("c", 4, 1, 0)],
            ..Default::default()
        };
        assert_eq!(
            names(&subscribe_queues_from_route("T", &route)),
            vec!["b:0", "b:1", "c:0"]
        );
    }

    #[test]
    fn default_route_caps_queue_counts_at_the_producer_default() {
        let route = TopicRouteData {
            queue_datas: vec![qd("a", 7, 8, 8), qd("b", 7, 2, 2)],
            broker_datas: vec![broker("a", true), broker("b", true)],
            ..Default::default()
        };
        let shaped = default_route_for_new_topic(route, 4);
        let info = publish_info_from_route("New", &shaped);
        assert_eq!(
            names(&info.queues),
            vec!["a:0", "a:1", "a:2", "a:3", "b:0", "b:1"]
        );
        assert!(info.queues.iter().all(|q| q.topic == "New"));
    }

    #[test]
    fn round_robin_visits_every_queue_in_turn() {
        let info = TopicPublishInfo::new(
            vec![
                MessageQueue::new("T", "a", 0),
                MessageQueue::new("T", "a", 1),
            ],
            false,
            true,
        )
        .with_start_index(u32::MAX);
        // The counter wraps without skipping or panicking.
        let picks: Vec<i32> = (0..4)
            .map(|_| info.select_one().unwrap().queue_id)
            .collect();
        assert_eq!(picks, vec![1, 0, 1, 0]);
    }
}
