//! Messages as the application sends and receives them.

use bytes::Bytes;

use super::MessageQueue;
use crate::message::{keys, offset_msg_id, MessageRecord, Properties};

/// A message to send (RocketMQ's `Message`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub body: Bytes,
    /// User properties plus the well-known ones (TAGS, KEYS, DELAY, …). The producer adds
    /// UNIQ_KEY and WAIT.
    pub properties: Properties,
    /// Opaque user int stored with the message.
    pub flag: i32,
}

impl Message {
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            body: body.into(),
            properties: Properties::new(),
            flag: 0,
        }
    }

    /// Sets the TAGS property.
    pub fn with_tags(mut self, tags: &str) -> Self {
        self.properties.insert(keys::TAGS, tags);
        self
    }

    /// Sets the KEYS property (space-separated keys).
    pub fn with_keys(mut self, keys_text: &str) -> Self {
        self.properties.insert(keys::KEYS, keys_text);
        self
    }

    /// Sets a property.
    pub fn with_property(mut self, name: &str, value: &str) -> Self {
        self.properties.insert(name, value);
        self
    }

    /// Sets the delay level (`DELAY`).
    pub fn with_delay_level(mut self, level: i32) -> Self {
        self.properties.insert(keys::DELAY, level.to_string());
        self
    }

    /// Sets an absolute delivery time, epoch ms (`TIMER_DELIVER_MS`, a RocketMQ 5.x timer
    /// message). A time in the past is delivered at once; the broker refuses one further ahead
    /// than its `timerMaxDelaySec`.
    pub fn with_deliver_time_ms(mut self, deliver_time_ms: u64) -> Self {
        self.properties
            .insert("TIMER_DELIVER_MS", deliver_time_ms.to_string());
        self
    }

    /// Sets a delivery delay from the send in ms (`TIMER_DELAY_MS`, a timer message).
    pub fn with_delay_ms(mut self, delay_ms: u64) -> Self {
        self.properties
            .insert("TIMER_DELAY_MS", delay_ms.to_string());
        self
    }

    pub fn tags(&self) -> Option<&str> {
        self.properties.get(keys::TAGS)
    }
}

/// A received message (RocketMQ's `MessageExt`): the decoded stored record and the queue it was
/// pulled from. For a message of the group's retry topic, `record.topic` is already restored to
/// the original topic (RETRY_TOPIC property), as Java does before delivery; `queue` stays the
/// queue it was pulled from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageExt {
    pub queue: MessageQueue,
    pub record: MessageRecord,
    /// The broker address that served the pull: the master's, or a slave's (suggested by the
    /// broker, or while the master does not answer). Empty for a message not pulled.
    pub served_by: String,
}

impl MessageExt {
    /// The client message id: UNIQ_KEY, or the offset id when the producer set none.
    pub fn msg_id(&self) -> String {
        match self.record.properties.get(keys::UNIQ_KEY) {
            Some(id) => id.to_owned(),
            None => self.offset_msg_id(),
        }
    }

    /// The broker's id of the stored record (store host + physical offset).
    pub fn offset_msg_id(&self) -> String {
        offset_msg_id(self.record.store_host, self.record.physical_offset as u64)
    }

    pub fn topic(&self) -> &str {
        &self.record.topic
    }

    pub fn body(&self) -> &Bytes {
        &self.record.body
    }

    pub fn tags(&self) -> Option<&str> {
        self.record.properties.get(keys::TAGS)
    }

    pub fn keys(&self) -> Option<&str> {
        self.record.properties.get(keys::KEYS)
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        self.record.properties.get(name)
    }

    /// Offset of the message in `queue`.
    pub fn queue_offset(&self) -> i64 {
        self.record.queue_offset
    }

    pub fn reconsume_times(&self) -> i32 {
        self.record.reconsume_times
    }

    /// Encoded size of the body: what the size flow-control threshold counts (as Java).
    pub fn body_len(&self) -> usize {
        self.record.body.len()
    }
}
