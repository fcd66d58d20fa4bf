//! Subscription groups: RocketMQ's `SubscriptionGroupConfig` per consumer group, persisted as
//! `config/subscriptionGroup.json` in the `SubscriptionGroupManager` shape, auto-created on first
//! use (heartbeat, CONSUMER_SEND_MSG_BACK) when `autoCreateSubscriptionGroup` is on, plus the admin
//! requests UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200) and GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201).
//!
//! File and GET_ALL body:
//!
//! ```text
//! {"subscriptionGroupTable":{"G1":{"groupName":"G1","consumeEnable":true,…,"retryQueueNums":1,
//!   "retryMaxTimes":16,…}},"forbiddenTable":{},"dataVersion":{"stateVersion":0,"timestamp":…,"counter":…}}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Broker, BrokerError};
use crate::remoting::codes::response;
use crate::remoting::lenient;
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;
use crate::topic::{perm, DataVersion, TopicConfig, RETRY_GROUP_TOPIC_PREFIX};

pub(super) const SUBSCRIPTION_GROUPS_PATH: &str = "config/subscriptionGroup.json";

fn yes() -> bool {
    true
}
fn one_i32() -> i32 {
    1
}
fn one_i64() -> i64 {
    1
}
fn sixteen() -> i32 {
    16
}
fn fifteen() -> i64 {
    15
}

/// RocketMQ's `SubscriptionGroupConfig`; a field missing from JSON (or null) takes RocketMQ's
/// default, and every field is read as fastjson reads it (`remoting::lenient`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupConfig {
    #[serde(deserialize_with = "lenient::string")]
    pub group_name: String,
    #[serde(default = "yes", deserialize_with = "lenient::bool")]
    pub consume_enable: bool,
    #[serde(default = "yes", deserialize_with = "lenient::bool")]
    pub consume_from_min_enable: bool,
    #[serde(default = "yes", deserialize_with = "lenient::bool")]
    pub consume_broadcast_enable: bool,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub consume_message_orderly: bool,
    /// Queues of the group's `%RETRY%` topic; 0 means failed messages are dropped.
    #[serde(default = "one_i32", deserialize_with = "lenient::i32")]
    pub retry_queue_nums: i32,
    /// Reconsume limit when a send-back names none.
    #[serde(default = "sixteen", deserialize_with = "lenient::i32")]
    pub retry_max_times: i32,
    #[serde(default, deserialize_with = "lenient::i64")]
    pub broker_id: i64,
    #[serde(default = "one_i64", deserialize_with = "lenient::i64")]
    pub which_broker_when_consume_slowly: i64,
    #[serde(default = "yes", deserialize_with = "lenient::bool")]
    pub notify_consumer_ids_changed_enable: bool,
    #[serde(default, deserialize_with = "lenient::i32")]
    pub group_sys_flag: i32,
    #[serde(default = "fifteen", deserialize_with = "lenient::i64")]
    pub consume_timeout_minute: i64,
    #[serde(default, deserialize_with = "lenient::string_map")]
    pub attributes: BTreeMap<String, String>,
}

impl SubscriptionGroupConfig {
    /// A group with RocketMQ's defaults.
    pub fn new(group_name: &str) -> Self {
        Self {
            group_name: group_name.to_owned(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: 1,
            retry_max_times: 16,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: 15,
            attributes: BTreeMap::new(),
        }
    }
}

/// The file shape and the GET_ALL_SUBSCRIPTIONGROUP_CONFIG body.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SubscriptionGroupWrapper {
    #[serde(default)]
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    /// Per-group forbidden topics; kept as RocketMQ writes it, not enforced.
    #[serde(default)]
    pub forbidden_table: BTreeMap<String, BTreeMap<String, i32>>,
    #[serde(default)]
    pub data_version: DataVersion,
}

/// Every subscription group the broker knows.
#[derive(Debug, Default)]
pub(super) struct GroupTable {
    groups: BTreeMap<String, SubscriptionGroupConfig>,
    forbidden: BTreeMap<String, BTreeMap<String, i32>>,
    data_version: DataVersion,
    /// The last write of the file failed: retried periodically.
    pub unsaved: bool,
}

impl GroupTable {
    pub fn load<S: SegmentStorage>(storage: &S) -> Result<Self, BrokerError> {
        let Some(wrapper): Option<SubscriptionGroupWrapper> =
            super::load_json_config(storage, SUBSCRIPTION_GROUPS_PATH)?
        else {
            return Ok(Self::default());
        };
        Ok(Self {
            groups: wrapper.subscription_group_table,
            forbidden: wrapper.forbidden_table,
            data_version: wrapper.data_version,
            unsaved: false,
        })
    }

    fn to_json(&self) -> Vec<u8> {
        let wrapper = SubscriptionGroupWrapper {
            subscription_group_table: self.groups.clone(),
            forbidden_table: self.forbidden.clone(),
            data_version: self.data_version.clone(),
        };
        serde_json::to_vec(&wrapper).unwrap_or_default()
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// A slave takes its master's groups (SlaveSynchronize) when their version differs.
    /// Returns whether anything changed.
    pub(super) fn replace_groups_from_master(&mut self, wrapper: SubscriptionGroupWrapper) -> bool {
        if wrapper.data_version == self.groups.data_version {
            return false;
        }
        self.groups.groups = wrapper.subscription_group_table;
        self.groups.forbidden = wrapper.forbidden_table;
        self.groups.data_version = wrapper.data_version;
        self.persist_groups();
        true
    }

    /// Every subscription group this broker knows.
    pub fn subscription_groups(&self) -> &BTreeMap<String, SubscriptionGroupConfig> {
        &self.groups.groups
    }

    fn put_group(&mut self, now_ms: u64, config: SubscriptionGroupConfig) {
        self.groups.groups.insert(config.group_name.clone(), config);
        self.groups.data_version.bump(now_ms);
        self.persist_groups();
    }

    /// Removes a subscription group's config (DELETE_SUBSCRIPTIONGROUP); `false` when unknown.
    pub(super) fn delete_group(&mut self, now_ms: u64, group: &str) -> bool {
        if self.groups.groups.remove(group).is_none() {
            return false;
        }
        self.groups.forbidden.remove(group);
        self.groups.data_version.bump(now_ms);
        self.persist_groups();
        true
    }

    /// Writes `config/subscriptionGroup.json`. A failed write is not fatal for serving; the
    /// periodic persist retries it.
    pub(super) fn persist_groups(&mut self) {
        let json = self.groups.to_json();
        self.groups.unsaved = self
            .store
            .storage_mut()
            .replace(SUBSCRIPTION_GROUPS_PATH, &json)
            .is_err();
    }

    /// RocketMQ's `findSubscriptionGroupConfig`: the group's config, created with the defaults
    /// when unknown and `autoCreateSubscriptionGroup` is on. A name that could not make a valid
    /// `%RETRY%` topic is never created.
    pub(super) fn find_or_create_group(
        &mut self,
        now_ms: u64,
        group: &str,
    ) -> Option<SubscriptionGroupConfig> {
        if let Some(existing) = self.groups.groups.get(group) {
            return Some(existing.clone());
        }
        if !self.config.auto_create_subscription_group
            || super::topics::validate_topic(&format!("{RETRY_GROUP_TOPIC_PREFIX}{group}")).is_err()
        {
            return None;
        }
        let config = SubscriptionGroupConfig::new(group);
        self.put_group(now_ms, config.clone());
        Some(config)
    }

    /// RocketMQ's `createTopicInSendMessageBackMethod`: the existing topic, or a new one with
    /// `queue_nums` queues and `perm`, persisted and registered at once.
    pub(super) fn ensure_topic_for_send_back(
        &mut self,
        now_ms: u64,
        topic: &str,
        queue_nums: u32,
        perm: u32,
        topic_sys_flag: u32,
    ) -> TopicConfig {
        if let Some(existing) = self.topics.topics.get(topic) {
            return existing.clone();
        }
        let mut config = TopicConfig::new(topic, queue_nums);
        config.perm = perm;
        config.topic_sys_flag = topic_sys_flag;
        self.put_topic(now_ms, config.clone());
        config
    }

    /// Heartbeat side of a consumer group: its subscription group (auto-created) and its
    /// `%RETRY%` topic with the group's `retryQueueNums` queues, read-write. Nothing when the
    /// group is unknown and auto-creation is off, as RocketMQ's heartbeat does.
    pub(super) fn ensure_group_on_heartbeat(&mut self, now_ms: u64, group: &str) {
        let Some(config) = self.find_or_create_group(now_ms, group) else {
            return;
        };
        let queue_nums = config.retry_queue_nums.max(0) as u32;
        if queue_nums == 0 {
            return;
        }
        self.ensure_topic_for_send_back(
            now_ms,
            &format!("{RETRY_GROUP_TOPIC_PREFIX}{group}"),
            queue_nums,
            perm::READ_WRITE,
            0,
        );
    }

    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200): body = a `SubscriptionGroupConfig`.
    pub(super) fn handle_update_subscription_group(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> RemotingCommand {
        let config: SubscriptionGroupConfig =
            match lenient::from_body(&req.body, "SubscriptionGroupConfig") {
                Ok(c) => c,
                Err(e) => {
                    return RemotingCommand::response_to(req, response::SYSTEM_ERROR, Some(e));
                }
            };
        if let Err(reason) = super::topics::validate_topic(&format!(
            "{RETRY_GROUP_TOPIC_PREFIX}{}",
            config.group_name
        )) {
            return RemotingCommand::response_to(
                req,
                response::INVALID_PARAMETER,
                Some(format!(
                    "the group name {:?} is not valid: {reason}",
                    config.group_name
                )),
            );
        }
        self.put_group(now_ms, config);
        RemotingCommand::response_to(req, response::SUCCESS, None)
    }

    /// GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201).
    pub(super) fn handle_get_all_subscription_groups(
        &mut self,
        req: &RemotingCommand,
    ) -> RemotingCommand {
        RemotingCommand::response_to(req, response::SUCCESS, None).with_body(self.groups.to_json())
    }
}
