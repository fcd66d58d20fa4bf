//! From a topic's route to the queues a producer writes and a consumer reads (Java's
//! `topicRouteData2TopicPublishInfo` / `topicRouteData2TopicSubscribeInfo`).

use super::MessageQueue;
use crate::namesrv::route::TopicRouteData;
use crate::topic::perm;

/// A topic's writable queues and its round-robin counter (`TopicPublishInfo`).
#[derive(Clone, Debug)]
pub(super) struct PublishInfo {
    pub topic: String,
    /// Writable queues of brokers with a master, brokers in name order.
    pub queues: Vec<MessageQueue>,
    /// `sendWhichQueue`: the last index handed out.
    send_which_queue: u32,
}

impl PublishInfo {
    /// The publish info of `route`; `start` seeds the round-robin counter (Java: a random int).
    pub fn from_route(topic: &str, route: &TopicRouteData, start: u32) -> Self {
        let mut queues = Vec::new();
        if let Some(conf) = route.order_topic_conf.as_deref().filter(|c| !c.is_empty()) {
            // "brokerA:4;brokerB:4": ordered topics list their queues explicitly.
            for item in conf.split(';') {
                let mut parts = item.split(':');
                if let (Some(name), Some(Ok(nums))) =
                    (parts.next(), parts.next().map(|n| n.trim().parse::<i32>()))
                {
                    queues.extend((0..nums).map(|i| MessageQueue::new(topic, name, i)));
                }
            }
        } else {
            let mut datas: Vec<_> = route.queue_datas.iter().collect();
            datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
            for qd in datas {
                if qd.perm & perm::WRITE == 0 {
                    continue;
                }
                let has_master = route
                    .broker_datas
                    .iter()
                    .any(|bd| bd.broker_name == qd.broker_name && bd.broker_addrs.contains_key(&0));
                if !has_master {
                    continue;
                }
                queues.extend(
                    (0..qd.write_queue_nums as i32)
                        .map(|i| MessageQueue::new(topic, qd.broker_name.clone(), i)),
                );
            }
        }
        Self {
            topic: topic.to_owned(),
            queues,
            send_which_queue: start,
        }
    }

    /// Keeps the round-robin position of an earlier publish info of the same topic.
    pub fn inherit_counter(&mut self, old: &PublishInfo) {
        self.send_which_queue = old.send_which_queue;
    }

    /// `sendWhichQueue.incrementAndGet()` (masked positive by the callers).
    pub fn next_index(&mut self) -> u32 {
        self.send_which_queue = self.send_which_queue.wrapping_add(1);
        self.send_which_queue
    }

    /// Number of queues of `broker_name` (`getQueueIdByBroker`).
    pub fn write_queue_nums(&self, broker_name: &str) -> i32 {
        self.queues
            .iter()
            .filter(|q| q.broker_name == broker_name)
            .count() as i32
    }

    /// `selectOneMessageQueue(lastBrokerName)`: round-robin, avoiding `last_broker` if another
    /// broker has a queue.
    pub fn select(&mut self, last_broker: Option<&str>) -> Option<MessageQueue> {
        let len = self.queues.len();
        if len == 0 {
            return None;
        }
        if let Some(last) = last_broker {
            for _ in 0..len {
                let pos = (self.next_index() & 0x7FFF_FFFF) as usize % len;
                if self.queues[pos].broker_name != last {
                    return Some(self.queues[pos].clone());
                }
            }
        }
        let pos = (self.next_index() & 0x7FFF_FFFF) as usize % len;
        Some(self.queues[pos].clone())
    }
}

/// The readable queues of `route` for `topic`, sorted (`topicRouteData2TopicSubscribeInfo`).
pub(super) fn subscribe_queues(topic: &str, route: &TopicRouteData) -> Vec<MessageQueue> {
    let mut queues: Vec<MessageQueue> = route
        .queue_datas
        .iter()
        .filter(|qd| qd.perm & perm::READ != 0)
        .flat_map(|qd| {
            (0..qd.read_queue_nums as i32)
                .map(move |i| MessageQueue::new(topic, qd.broker_name.clone(), i))
        })
        .collect();
    queues.sort();
    queues
}

/// The route of the default topic adapted for `topic` (Java's auto-create path): every queue
/// count capped at `default_queue_nums`.
pub(super) fn default_topic_route(
    route: &TopicRouteData,
    default_queue_nums: i32,
) -> TopicRouteData {
    let mut route = route.clone();
    for qd in &mut route.queue_datas {
        let nums = (default_queue_nums.max(0) as u32).min(qd.read_queue_nums);
        qd.read_queue_nums = nums;
        qd.write_queue_nums = nums;
    }
    route
}
