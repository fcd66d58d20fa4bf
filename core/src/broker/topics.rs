//! The topic table (persisted as `config/topics.json` in RocketMQ's
//! `TopicConfigSerializeWrapper` shape), auto-creation, UPDATE_AND_CREATE_TOPIC (17) and
//! GET_ALL_TOPIC_CONFIG (21).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Broker, BrokerError};
use crate::remoting::codes::response;
use crate::remoting::headers::CreateTopicRequestHeader;
use crate::remoting::{HeaderError, RemotingCommand};
use crate::store::SegmentStorage;
use crate::topic::{
    perm, validate_topic_name, DataVersion, TopicConfig, AUTO_CREATE_TOPIC_KEY,
    DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX,
};

pub(super) const TOPICS_PATH: &str = "config/topics.json";

/// Topics no producer may send to (REMOTING.md §3.3 step 3).
const NOT_ALLOWED_SEND_TOPICS: &[&str] = &[
    "SCHEDULE_TOPIC_XXXX",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
];

pub(super) fn is_send_forbidden_topic(topic: &str) -> bool {
    NOT_ALLOWED_SEND_TOPICS.contains(&topic)
}

/// Retry and DLQ names may be up to 255 bytes (group names are up to 120 plus the prefix).
pub(super) fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) || topic.starts_with(DLQ_GROUP_TOPIC_PREFIX) {
        return crate::topic::validate_name(topic, crate::topic::GROUP_TOPIC_NAME_MAX_BYTES);
    }
    validate_topic_name(topic)
}

/// `TopicConfigSerializeWrapper`: the file shape and the GET_ALL_TOPIC_CONFIG body.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TopicConfigSerializeWrapper {
    #[serde(default)]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    #[serde(default)]
    pub data_version: DataVersion,
}

/// Every topic the broker owns and the version NameServers compare.
#[derive(Debug, Default)]
pub(super) struct TopicTable {
    pub topics: BTreeMap<String, TopicConfig>,
    pub data_version: DataVersion,
    /// The last write of `config/topics.json` failed (disk full, EIO): retried periodically,
    /// or a topic created meanwhile would be gone after a restart.
    pub unsaved: bool,
}

impl TopicTable {
    pub fn load<S: SegmentStorage>(storage: &S) -> Result<Self, BrokerError> {
        let Some(wrapper): Option<TopicConfigSerializeWrapper> =
            super::load_json_config(storage, TOPICS_PATH)?
        else {
            return Ok(Self::default());
        };
        Ok(Self {
            topics: wrapper.topic_config_table,
            data_version: wrapper.data_version,
            unsaved: false,
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        let wrapper = TopicConfigSerializeWrapper {
            topic_config_table: self.topics.clone(),
            data_version: self.data_version.clone(),
        };
        serde_json::to_vec(&wrapper).unwrap_or_default()
    }
}

/// Parses RocketMQ's attribute string (`+key=value,+key2=value2`; `-key` deletes).
fn parse_attributes(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|item| {
            let item = item.trim().strip_prefix('+')?;
            let (k, v) = item.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The values the `message.type` topic attribute takes (RocketMQ 5's `TopicMessageType`, whose
/// placeholder UNSPECIFIED is left out: a topic declaring it would accept no message).
pub const MESSAGE_TYPES: &[&str] = &["NORMAL", "FIFO", "DELAY", "TRANSACTION", "MIXED"];

/// Checks the `message.type` attribute of a topic being created: one of [`MESSAGE_TYPES`],
/// spelled exactly, as RocketMQ's enum attribute compares it.
fn validate_message_type_attribute(attributes: &BTreeMap<String, String>) -> Result<(), String> {
    let Some(value) = attributes.get(super::grpc::route::MESSAGE_TYPE_ATTRIBUTE) else {
        return Ok(());
    };
    if MESSAGE_TYPES.contains(&value.as_str()) {
        return Ok(());
    }
    Err(format!(
        "attribute message.type: value {value:?} is not in set: [{}]",
        MESSAGE_TYPES.join(", ")
    ))
}

impl<S: SegmentStorage> Broker<S> {
    /// A slave takes its master's topics (SlaveSynchronize) when their version differs, and
    /// registers them so routes list the slave. Returns whether anything changed.
    pub(super) fn replace_topics_from_master(
        &mut self,
        wrapper: TopicConfigSerializeWrapper,
    ) -> bool {
        if wrapper.data_version == self.topics.data_version {
            return false;
        }
        self.topics.topics = wrapper.topic_config_table;
        self.topics.data_version = wrapper.data_version;
        self.persist_topics();
        self.register_with_namesrvs();
        true
    }

    /// Adds or replaces a topic: bumps the data version, persists the table and re-registers
    /// with every NameServer at once so routes appear quickly.
    pub(super) fn put_topic(&mut self, now_ms: u64, config: TopicConfig) {
        self.topics.topics.insert(config.topic_name.clone(), config);
        self.topics.data_version.bump(now_ms);
        self.persist_topics();
        self.register_with_namesrvs();
    }

    /// Adds a topic the broker makes at start (TBW102, the reply and trace topics): persisted,
    /// and registered with the first periodic registration, which follows at once.
    pub(super) fn add_start_topic(&mut self, now_ms: u64, config: TopicConfig) {
        self.topics.topics.insert(config.topic_name.clone(), config);
        self.topics.data_version.bump(now_ms);
        self.persist_topics();
    }

    pub(super) fn persist_topics(&mut self) {
        let json = self.topics.to_json();
        // A failed config write is not fatal for serving; the periodic persist retries it.
        self.topics.unsaved = self
            .store
            .storage_mut()
            .replace(TOPICS_PATH, &json)
            .is_err();
    }

    /// Gives every topic the store holds queues of but the topic table lacks (its creation
    /// was never written: the disk was full or failing, then the broker stopped) a config
    /// again, so its messages are routed and consumed. Queue count: what auto-creation gives,
    /// and at least every queue the store has.
    pub(super) fn restore_topics_from_store(&mut self, now_ms: u64) {
        let missing: Vec<(String, u32)> = self
            .store
            .topics()
            .filter(|t| !self.topics.topics.contains_key(*t))
            .map(|t| {
                let queues = self
                    .store
                    .queue_ids(t)
                    .into_iter()
                    .max()
                    .map_or(0, |q| q.max(0) as u32 + 1);
                (t.to_owned(), queues)
            })
            .collect();
        let mut restored = false;
        for (topic, queues) in missing {
            let Some(config) = self.restored_topic_config(&topic, queues) else {
                continue;
            };
            self.topics.topics.insert(topic, config);
            self.topics.data_version.bump(now_ms);
            restored = true;
        }
        if restored {
            self.persist_topics();
        }
    }

    /// The delay-level, timer and transaction services put a message into its real topic,
    /// which the topic table may lack: the topic was auto-created by the send, and the broker
    /// stopped before that creation reached the disk (the send itself went to the service's own
    /// topic, so the start that followed found no queue of it to restore). Without a config the
    /// topic is never registered and its messages never reach a consumer, so it gets one now,
    /// registered at once, as [`Self::restore_topics_from_store`] does at start.
    pub(super) fn ensure_topic_of_delivered(&mut self, now_ms: u64, topic: &str, queue_id: i32) {
        if self.topics.topics.contains_key(topic) {
            return;
        }
        let queues = queue_id.max(0) as u32 + 1;
        if let Some(config) = self.restored_topic_config(topic, queues) {
            self.put_topic(now_ms, config);
        }
    }

    /// The config a topic found in the store (or delivered to) without one gets: `queues`
    /// queues at least, as many as auto-creation gives for an ordinary topic; none for a name
    /// that is not a valid topic or that sends may not use.
    fn restored_topic_config(&self, topic: &str, queues: u32) -> Option<TopicConfig> {
        if is_send_forbidden_topic(topic)
            || topic == crate::broker::timer::TIMER_TOPIC
            || validate_topic(topic).is_err()
        {
            return None;
        }
        let group_topic = topic.starts_with(RETRY_GROUP_TOPIC_PREFIX)
            || topic.starts_with(DLQ_GROUP_TOPIC_PREFIX);
        let queue_nums = if group_topic {
            queues.max(1)
        } else {
            queues.max(self.config.default_topic_queue_nums.max(1))
        };
        Some(TopicConfig::new(topic, queue_nums))
    }

    /// Ensures TBW102 exists when auto-creation is on (REMOTING.md §6.2), and the message trace
    /// topic (one queue, as Apache's TopicConfigManager makes it) when `traceTopicEnable`.
    pub(super) fn ensure_system_topics(&mut self, now_ms: u64) {
        let trace_topic = self.config.msg_trace_topic_name.clone();
        if self.config.trace_topic_enable
            && validate_topic(&trace_topic).is_ok()
            && !self.topics.topics.contains_key(&trace_topic)
        {
            self.add_start_topic(now_ms, TopicConfig::new(trace_topic, 1));
        }
        if self.config.auto_create_topic_enable
            && !self.topics.topics.contains_key(AUTO_CREATE_TOPIC_KEY)
        {
            let mut tbw = TopicConfig::new(
                AUTO_CREATE_TOPIC_KEY,
                self.config.default_topic_queue_nums.max(1),
            );
            tbw.perm = perm::READ_WRITE | perm::INHERIT;
            self.add_start_topic(now_ms, tbw);
        }
    }

    /// The retry (or DLQ) topic of a group, created with one queue when missing.
    pub(super) fn ensure_group_topic(&mut self, now_ms: u64, topic: &str) -> TopicConfig {
        if let Some(existing) = self.topics.topics.get(topic) {
            return existing.clone();
        }
        let config = TopicConfig::new(topic, 1);
        self.put_topic(now_ms, config.clone());
        config
    }

    /// The config of `topic` for a send, auto-creating it from `default_topic` when allowed.
    /// `Err` is the response code and remark.
    pub(super) fn topic_for_send(
        &mut self,
        now_ms: u64,
        topic: &str,
        default_topic: &str,
        default_topic_queue_nums: i32,
    ) -> Result<TopicConfig, (i32, String)> {
        if let Some(existing) = self.topics.topics.get(topic) {
            return Ok(existing.clone());
        }
        if topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) || topic.starts_with(DLQ_GROUP_TOPIC_PREFIX)
        {
            return Ok(self.ensure_group_topic(now_ms, topic));
        }
        let not_exist = || {
            (
                response::TOPIC_NOT_EXIST,
                format!("topic[{topic}] not exist, apply first please!"),
            )
        };
        let template = self
            .topics
            .topics
            .get(default_topic)
            .cloned()
            .ok_or_else(not_exist)?;
        // A TBW102 left over from a time auto-creation was on no longer counts as a template.
        let tbw_disabled =
            default_topic == AUTO_CREATE_TOPIC_KEY && !self.config.auto_create_topic_enable;
        let inheritable = template.perm & perm::INHERIT != 0 && !tbw_disabled;
        if !inheritable {
            return Err(not_exist());
        }
        let queue_nums = (default_topic_queue_nums.max(1) as u32).min(template.write_queue_nums);
        let mut config = TopicConfig::new(topic, queue_nums.max(1));
        config.perm = template.perm & !perm::INHERIT;
        config.topic_filter_type = template.topic_filter_type.clone();
        self.put_topic(now_ms, config.clone());
        Ok(config)
    }

    /// UPDATE_AND_CREATE_TOPIC (17).
    pub(super) fn handle_create_topic(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let header = CreateTopicRequestHeader::parse(req)?;
        if let Err(reason) = validate_topic(&header.topic) {
            return Ok(RemotingCommand::response_to(
                req,
                response::INVALID_PARAMETER,
                Some(reason),
            ));
        }
        let system = header.topic == AUTO_CREATE_TOPIC_KEY
            || is_send_forbidden_topic(&header.topic)
            || header.topic.to_ascii_lowercase().starts_with("rmq_sys_");
        if system {
            return Ok(RemotingCommand::response_to(
                req,
                response::INVALID_PARAMETER,
                Some(format!(
                    "The topic[{}] is conflict with system topic.",
                    header.topic
                )),
            ));
        }
        let attributes = header
            .attributes
            .as_deref()
            .map(parse_attributes)
            .unwrap_or_default();
        if let Err(reason) = validate_message_type_attribute(&attributes) {
            // RocketMQ's broker refuses an attribute value outside its set while storing the
            // topic, and answers SYSTEM_ERROR with the reason.
            return Ok(RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some(reason),
            ));
        }
        let config = TopicConfig {
            topic_name: header.topic.clone(),
            read_queue_nums: header.read_queue_nums,
            write_queue_nums: header.write_queue_nums,
            perm: header.perm,
            topic_filter_type: header.topic_filter_type.clone(),
            topic_sys_flag: header.topic_sys_flag,
            order: header.order,
            attributes,
        };
        self.put_topic(now_ms, config);
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None))
    }

    /// GET_ALL_TOPIC_CONFIG (21).
    pub(super) fn handle_get_all_topic_config(&mut self, req: &RemotingCommand) -> RemotingCommand {
        RemotingCommand::response_to(req, response::SUCCESS, None).with_body(self.topics.to_json())
    }
}
