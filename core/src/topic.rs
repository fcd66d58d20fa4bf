//! Topic configuration shared by the Broker (which owns topics) and the NameServer (which serves
//! routes built from them). Field names follow RocketMQ's JSON (`TopicConfig`, `DataVersion`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::remoting::lenient;

/// Topic and broker permission bits (`perm`).
pub mod perm {
    /// May serve as a template for auto-creation (TBW102).
    pub const INHERIT: u32 = 1;
    pub const WRITE: u32 = 2;
    pub const READ: u32 = 4;
    pub const PRIORITY: u32 = 8;
    pub const READ_WRITE: u32 = READ | WRITE;
}

/// The default topic auto-creation clones.
pub const AUTO_CREATE_TOPIC_KEY: &str = "TBW102";
pub const RETRY_GROUP_TOPIC_PREFIX: &str = "%RETRY%";
pub const DLQ_GROUP_TOPIC_PREFIX: &str = "%DLQ%";

/// RocketMQ's system topics (`TopicValidator`): not counted in a broker's "today" totals,
/// refused by topic deletion.
pub const SYSTEM_TOPICS: &[&str] = &[
    AUTO_CREATE_TOPIC_KEY,
    "SCHEDULE_TOPIC_XXXX",
    "BenchmarkTest",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRACE_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
];

/// Whether `topic` is one of RocketMQ's system topics (the list above, or the `rmq_sys_`
/// prefix: the timer's and POP's own topics).
pub fn is_system_topic(topic: &str) -> bool {
    SYSTEM_TOPICS.contains(&topic) || topic.starts_with("rmq_sys_")
}

/// RocketMQ's `TopicConfig`. Read as fastjson reads it (`remoting::lenient`: a Java broker's
/// registration, a topics file): the name is required, a missing field takes Java's default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    #[serde(deserialize_with = "lenient::string")]
    pub topic_name: String,
    #[serde(default = "sixteen", deserialize_with = "lenient::u32")]
    pub read_queue_nums: u32,
    #[serde(default = "sixteen", deserialize_with = "lenient::u32")]
    pub write_queue_nums: u32,
    #[serde(default = "read_write", deserialize_with = "lenient::u32")]
    pub perm: u32,
    /// `SINGLE_TAG` or `MULTI_TAG`.
    #[serde(default = "single_tag", deserialize_with = "topic_filter_type")]
    pub topic_filter_type: String,
    #[serde(default, deserialize_with = "lenient::u32")]
    pub topic_sys_flag: u32,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub order: bool,
    #[serde(default, deserialize_with = "lenient::string_map")]
    pub attributes: BTreeMap<String, String>,
}

fn single_tag() -> String {
    "SINGLE_TAG".to_owned()
}

/// Java's `TopicConfig.defaultReadQueueNums` / `defaultWriteQueueNums`.
fn sixteen() -> u32 {
    16
}

fn read_write() -> u32 {
    perm::READ_WRITE
}

/// A `TopicFilterType` by name or ordinal; an unknown name is `SINGLE_TAG` (fastjson leaves the
/// field at its default).
fn topic_filter_type<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(lenient::opt_enum::<D, lenient::TopicFilterType>(d)?.unwrap_or_else(single_tag))
}

impl TopicConfig {
    /// A readable and writable topic with `queue_nums` read and write queues.
    pub fn new(topic_name: impl Into<String>, queue_nums: u32) -> Self {
        Self {
            topic_name: topic_name.into(),
            read_queue_nums: queue_nums,
            write_queue_nums: queue_nums,
            perm: perm::READ_WRITE,
            topic_filter_type: single_tag(),
            topic_sys_flag: 0,
            order: false,
            attributes: BTreeMap::new(),
        }
    }
}

/// Version of a broker's topic table; bumped on every change. NameServers only compare it for
/// equality.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataVersion {
    #[serde(default, deserialize_with = "lenient::i64")]
    pub state_version: i64,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub timestamp: i64,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub counter: i64,
}

impl DataVersion {
    pub fn bump(&mut self, now_ms: u64) {
        self.counter += 1;
        self.timestamp = now_ms as i64;
    }
}

/// Longest ordinary topic name, in bytes (a V1 stored record's topic length is one signed byte).
pub const TOPIC_NAME_MAX_BYTES: usize = 127;
/// Longest retry or DLQ topic name, in bytes (a group name of up to 120 bytes plus its prefix).
pub const GROUP_TOPIC_NAME_MAX_BYTES: usize = 255;

/// Topic names: RocketMQ allows `[%|a-zA-Z0-9_-]`, at most 127 bytes.
pub fn validate_topic_name(topic: &str) -> Result<(), String> {
    validate_name(topic, TOPIC_NAME_MAX_BYTES)
}

/// A topic name of RocketMQ's characters, at most `max_bytes` long.
pub fn validate_name(topic: &str, max_bytes: usize) -> Result<(), String> {
    if topic.is_empty() {
        return Err("the topic name is empty".to_owned());
    }
    if topic.len() > max_bytes {
        return Err(format!(
            "the topic name is longer than {max_bytes} bytes: {} bytes",
            topic.len()
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')))
    {
        return Err(format!(
            "the topic name {topic:?} contains the illegal character {c:?}"
        ));
    }
    Ok(())
}
