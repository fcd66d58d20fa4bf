//! RocketMQ client logic as sans-IO state machines: producers and consumers that run the same way
//! under the native runtime, the simulator and the playground.

/// One queue of a topic on one broker: what producers choose among and consumers rebalance.
///
/// Ordered by topic, broker name, then queue id, as RocketMQ sorts queues before allocating them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageQueue {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
}

impl std::fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MessageQueue [topic={}, brokerName={}, queueId={}]",
            self.topic, self.broker_name, self.queue_id
        )
    }
}
