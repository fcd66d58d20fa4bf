//! Typed request and response headers: the ext fields of the requests the broker serves.
//!
//! Every request header has a `parse(&RemotingCommand)` that reads the ext fields (a missing or
//! malformed required field is a [`HeaderError`], which the broker answers with `SYSTEM_ERROR`);
//! every response header has a `write_to(&mut RemotingCommand)` that adds its ext fields.
//!
//! SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320) carry the send header under one-letter
//! keys; [`SendMessageRequestHeader::parse_v2`] maps them onto the V1 fields:
//!
//! ```text
//! a producerGroup   e queueId        i properties         m batch
//! b topic           f sysFlag        j reconsumeTimes     n brokerName
//! c defaultTopic    g bornTimestamp  k unitMode
//! d defaultTopicQueueNums  h flag    l maxReconsumeTimes
//! ```

use super::codes::request;
use super::command::{HeaderError, RemotingCommand};

/// The send header (SEND_MESSAGE, SEND_MESSAGE_V2, SEND_BATCH_MESSAGE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendMessageRequestHeader {
    pub producer_group: String,
    pub topic: String,
    pub default_topic: String,
    pub default_topic_queue_nums: i32,
    /// Negative: the broker picks a writable queue.
    pub queue_id: i32,
    pub sys_flag: i32,
    pub born_timestamp_ms: i64,
    pub flag: i32,
    pub properties: Option<String>,
    pub reconsume_times: Option<i32>,
    pub unit_mode: bool,
    pub max_reconsume_times: Option<i32>,
    pub batch: bool,
    pub broker_name: Option<String>,
}

/// Key names of the send header in one of its two spellings.
struct SendKeys {
    producer_group: &'static str,
    topic: &'static str,
    default_topic: &'static str,
    default_topic_queue_nums: &'static str,
    queue_id: &'static str,
    sys_flag: &'static str,
    born_timestamp: &'static str,
    flag: &'static str,
    properties: &'static str,
    reconsume_times: &'static str,
    unit_mode: &'static str,
    max_reconsume_times: &'static str,
    batch: &'static str,
    broker_name: &'static str,
}

const SEND_KEYS_V1: SendKeys = SendKeys {
    producer_group: "producerGroup",
    topic: "topic",
    default_topic: "defaultTopic",
    default_topic_queue_nums: "defaultTopicQueueNums",
    queue_id: "queueId",
    sys_flag: "sysFlag",
    born_timestamp: "bornTimestamp",
    flag: "flag",
    properties: "properties",
    reconsume_times: "reconsumeTimes",
    unit_mode: "unitMode",
    max_reconsume_times: "maxReconsumeTimes",
    batch: "batch",
    broker_name: "bname",
};

const SEND_KEYS_V2: SendKeys = SendKeys {
    producer_group: "a",
    topic: "b",
    default_topic: "c",
    default_topic_queue_nums: "d",
    queue_id: "e",
    sys_flag: "f",
    born_timestamp: "g",
    flag: "h",
    properties: "i",
    reconsume_times: "j",
    unit_mode: "k",
    max_reconsume_times: "l",
    batch: "m",
    broker_name: "n",
};

impl SendMessageRequestHeader {
    /// Parses the header the way Java does: by request code (10 → V1 keys, 310/320 → V2 keys).
    /// A SEND_BATCH_MESSAGE is always a batch.
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        match cmd.code {
            request::SEND_MESSAGE_V2 | request::SEND_BATCH_MESSAGE => {
                let mut header = Self::parse_v2(cmd)?;
                header.batch |= cmd.code == request::SEND_BATCH_MESSAGE;
                Ok(header)
            }
            _ => Self::parse_v1(cmd),
        }
    }

    /// The V1 spelling (long key names).
    pub fn parse_v1(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Self::parse_with(cmd, &SEND_KEYS_V1)
    }

    /// The V2 spelling (one-letter keys).
    pub fn parse_v2(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Self::parse_with(cmd, &SEND_KEYS_V2)
    }

    fn parse_with(cmd: &RemotingCommand, keys: &SendKeys) -> Result<Self, HeaderError> {
        Ok(Self {
            producer_group: cmd.ext_str(keys.producer_group)?.to_owned(),
            topic: cmd.ext_str(keys.topic)?.to_owned(),
            default_topic: cmd.ext_str(keys.default_topic)?.to_owned(),
            default_topic_queue_nums: cmd.ext_num(keys.default_topic_queue_nums)?,
            queue_id: cmd.ext_num(keys.queue_id)?,
            sys_flag: cmd.ext_num(keys.sys_flag)?,
            born_timestamp_ms: cmd.ext_num(keys.born_timestamp)?,
            flag: cmd.ext_num(keys.flag)?,
            properties: cmd.ext(keys.properties).map(str::to_owned),
            reconsume_times: cmd.ext_num_opt(keys.reconsume_times)?,
            unit_mode: cmd.ext_bool(keys.unit_mode).unwrap_or(false),
            max_reconsume_times: cmd.ext_num_opt(keys.max_reconsume_times)?,
            batch: cmd.ext_bool(keys.batch).unwrap_or(false),
            broker_name: cmd.ext(keys.broker_name).map(str::to_owned),
        })
    }

    /// Writes the header with V1 keys (`v2 == false`) or V2 keys: what producers send.
    pub fn write_to(&self, cmd: &mut RemotingCommand, v2: bool) {
        let keys = if v2 { &SEND_KEYS_V2 } else { &SEND_KEYS_V1 };
        let mut put = |k: &str, v: String| {
            cmd.ext_fields.insert(k.to_owned(), v);
        };
        put(keys.producer_group, self.producer_group.clone());
        put(keys.topic, self.topic.clone());
        put(keys.default_topic, self.default_topic.clone());
        put(
            keys.default_topic_queue_nums,
            self.default_topic_queue_nums.to_string(),
        );
        put(keys.queue_id, self.queue_id.to_string());
        put(keys.sys_flag, self.sys_flag.to_string());
        put(keys.born_timestamp, self.born_timestamp_ms.to_string());
        put(keys.flag, self.flag.to_string());
        if let Some(p) = &self.properties {
            put(keys.properties, p.clone());
        }
        if let Some(r) = self.reconsume_times {
            put(keys.reconsume_times, r.to_string());
        }
        put(keys.unit_mode, self.unit_mode.to_string());
        if let Some(m) = self.max_reconsume_times {
            put(keys.max_reconsume_times, m.to_string());
        }
        if self.batch {
            put(keys.batch, "true".to_owned());
        }
        if let Some(b) = &self.broker_name {
            put(keys.broker_name, b.clone());
        }
    }
}

/// The send response header (every send code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendMessageResponseHeader {
    /// Offset message id; comma-joined for a batch.
    pub msg_id: String,
    pub queue_id: i32,
    /// Offset of the (first) message in its queue.
    pub queue_offset: i64,
    pub transaction_id: Option<String>,
    pub msg_region: String,
    pub trace_on: bool,
}

impl SendMessageResponseHeader {
    pub fn write_to(&self, cmd: &mut RemotingCommand) {
        let ext = &mut cmd.ext_fields;
        ext.insert("msgId".to_owned(), self.msg_id.clone());
        ext.insert("queueId".to_owned(), self.queue_id.to_string());
        ext.insert("queueOffset".to_owned(), self.queue_offset.to_string());
        if let Some(t) = &self.transaction_id {
            ext.insert("transactionId".to_owned(), t.clone());
        }
        ext.insert("MSG_REGION".to_owned(), self.msg_region.clone());
        ext.insert("TRACE_ON".to_owned(), self.trace_on.to_string());
    }
}

/// PullSysFlag bits.
pub mod pull_sys_flag {
    pub const COMMIT_OFFSET: i32 = 0x1;
    pub const SUSPEND: i32 = 0x2;
    pub const SUBSCRIPTION: i32 = 0x4;
    pub const CLASS_FILTER: i32 = 0x8;
    pub const LITE_PULL: i32 = 0x10;
}

/// PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullMessageRequestHeader {
    pub consumer_group: String,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub max_msg_nums: i32,
    pub sys_flag: i32,
    /// Valid when `sys_flag` has COMMIT_OFFSET; 0 when absent.
    pub commit_offset: i64,
    pub suspend_timeout_ms: i64,
    pub subscription: Option<String>,
    /// 0 when absent (Go sends 0 anyway).
    pub sub_version: i64,
    pub expression_type: Option<String>,
    pub max_msg_bytes: Option<i32>,
}

impl PullMessageRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            consumer_group: cmd.ext_str("consumerGroup")?.to_owned(),
            topic: cmd.ext_str("topic")?.to_owned(),
            queue_id: cmd.ext_num("queueId")?,
            queue_offset: cmd.ext_num("queueOffset")?,
            max_msg_nums: cmd.ext_num("maxMsgNums")?,
            sys_flag: cmd.ext_num("sysFlag")?,
            commit_offset: cmd.ext_num_opt("commitOffset")?.unwrap_or(0),
            suspend_timeout_ms: cmd.ext_num("suspendTimeoutMillis")?,
            subscription: cmd.ext("subscription").map(str::to_owned),
            sub_version: cmd.ext_num_opt("subVersion")?.unwrap_or(0),
            expression_type: cmd.ext("expressionType").map(str::to_owned),
            max_msg_bytes: cmd.ext_num_opt("maxMsgBytes")?,
        })
    }

    pub fn write_to(&self, cmd: &mut RemotingCommand) {
        let ext = &mut cmd.ext_fields;
        ext.insert("consumerGroup".to_owned(), self.consumer_group.clone());
        ext.insert("topic".to_owned(), self.topic.clone());
        ext.insert("queueId".to_owned(), self.queue_id.to_string());
        ext.insert("queueOffset".to_owned(), self.queue_offset.to_string());
        ext.insert("maxMsgNums".to_owned(), self.max_msg_nums.to_string());
        ext.insert("sysFlag".to_owned(), self.sys_flag.to_string());
        ext.insert("commitOffset".to_owned(), self.commit_offset.to_string());
        ext.insert(
            "suspendTimeoutMillis".to_owned(),
            self.suspend_timeout_ms.to_string(),
        );
        if let Some(s) = &self.subscription {
            ext.insert("subscription".to_owned(), s.clone());
        }
        ext.insert("subVersion".to_owned(), self.sub_version.to_string());
        if let Some(e) = &self.expression_type {
            ext.insert("expressionType".to_owned(), e.clone());
        }
        if let Some(m) = self.max_msg_bytes {
            ext.insert("maxMsgBytes".to_owned(), m.to_string());
        }
    }
}

/// The pull response header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullMessageResponseHeader {
    pub suggest_which_broker_id: u64,
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
}

impl PullMessageResponseHeader {
    pub fn write_to(&self, cmd: &mut RemotingCommand) {
        let ext = &mut cmd.ext_fields;
        ext.insert(
            "suggestWhichBrokerId".to_owned(),
            self.suggest_which_broker_id.to_string(),
        );
        ext.insert(
            "nextBeginOffset".to_owned(),
            self.next_begin_offset.to_string(),
        );
        ext.insert("minOffset".to_owned(), self.min_offset.to_string());
        ext.insert("maxOffset".to_owned(), self.max_offset.to_string());
    }
}

/// QUERY_CONSUMER_OFFSET (14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryConsumerOffsetRequestHeader {
    pub consumer_group: String,
    pub topic: String,
    pub queue_id: i32,
    /// 5.x; absent means "yes".
    pub set_zero_if_not_found: Option<bool>,
}

impl QueryConsumerOffsetRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            consumer_group: cmd.ext_str("consumerGroup")?.to_owned(),
            topic: cmd.ext_str("topic")?.to_owned(),
            queue_id: cmd.ext_num("queueId")?,
            set_zero_if_not_found: cmd.ext_bool("setZeroIfNotFound"),
        })
    }
}

/// UPDATE_CONSUMER_OFFSET (15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateConsumerOffsetRequestHeader {
    pub consumer_group: String,
    pub topic: String,
    pub queue_id: i32,
    pub commit_offset: i64,
}

impl UpdateConsumerOffsetRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            consumer_group: cmd.ext_str("consumerGroup")?.to_owned(),
            topic: cmd.ext_str("topic")?.to_owned(),
            queue_id: cmd.ext_num("queueId")?,
            commit_offset: cmd.ext_num("commitOffset")?,
        })
    }
}

/// GET_MAX_OFFSET (30), GET_MIN_OFFSET (31), GET_EARLIEST_MSG_STORETIME (32): one queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicQueueRequestHeader {
    pub topic: String,
    pub queue_id: i32,
}

impl TopicQueueRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            topic: cmd.ext_str("topic")?.to_owned(),
            queue_id: cmd.ext_num("queueId")?,
        })
    }
}

/// SEARCH_OFFSET_BY_TIMESTAMP (29).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchOffsetRequestHeader {
    pub topic: String,
    pub queue_id: i32,
    pub timestamp_ms: i64,
    /// `LOWER` (default) or `UPPER`, case-insensitive.
    pub boundary_type: Option<String>,
}

impl SearchOffsetRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            topic: cmd.ext_str("topic")?.to_owned(),
            queue_id: cmd.ext_num("queueId")?,
            timestamp_ms: cmd.ext_num("timestamp")?,
            boundary_type: cmd.ext("boundaryType").map(str::to_owned),
        })
    }
}

/// GET_CONSUMER_LIST_BY_GROUP (38) and NOTIFY_CONSUMER_IDS_CHANGED (40).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupHeader {
    pub consumer_group: String,
}

impl ConsumerGroupHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            consumer_group: cmd.ext_str("consumerGroup")?.to_owned(),
        })
    }

    pub fn write_to(&self, cmd: &mut RemotingCommand) {
        cmd.ext_fields
            .insert("consumerGroup".to_owned(), self.consumer_group.clone());
    }
}

/// UNREGISTER_CLIENT (35).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnregisterClientRequestHeader {
    pub client_id: String,
    pub producer_group: Option<String>,
    pub consumer_group: Option<String>,
}

impl UnregisterClientRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            client_id: cmd.ext_str("clientID")?.to_owned(),
            producer_group: cmd.ext("producerGroup").map(str::to_owned),
            consumer_group: cmd.ext("consumerGroup").map(str::to_owned),
        })
    }
}

/// UPDATE_AND_CREATE_TOPIC (17).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateTopicRequestHeader {
    pub topic: String,
    pub default_topic: Option<String>,
    pub read_queue_nums: u32,
    pub write_queue_nums: u32,
    pub perm: u32,
    pub topic_filter_type: String,
    pub topic_sys_flag: u32,
    pub order: bool,
    /// 5.x attribute string such as `+message.type=NORMAL`.
    pub attributes: Option<String>,
}

impl CreateTopicRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            topic: cmd.ext_str("topic")?.to_owned(),
            default_topic: cmd.ext("defaultTopic").map(str::to_owned),
            read_queue_nums: cmd.ext_num("readQueueNums")?,
            write_queue_nums: cmd.ext_num("writeQueueNums")?,
            perm: cmd.ext_num("perm")?,
            topic_filter_type: cmd
                .ext("topicFilterType")
                .unwrap_or("SINGLE_TAG")
                .to_owned(),
            topic_sys_flag: cmd.ext_num_opt("topicSysFlag")?.unwrap_or(0),
            order: cmd.ext_bool("order").unwrap_or(false),
            attributes: cmd.ext("attributes").map(str::to_owned),
        })
    }
}

/// QUERY_MESSAGE (12). The ext field `_UNIQUE_KEY_QUERY=true` (not part of the header class in
/// Java) marks a query by UNIQ_KEY, which the broker answers with at most
/// `defaultQueryMaxNum` (32) records whatever `maxNum` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryMessageRequestHeader {
    pub topic: String,
    pub key: String,
    pub max_num: i32,
    pub begin_timestamp_ms: i64,
    pub end_timestamp_ms: i64,
    pub unique_key_query: bool,
}

/// The ext field that marks a QUERY_MESSAGE by UNIQ_KEY (`MixAll.UNIQUE_MSG_QUERY_FLAG`).
pub const UNIQUE_MSG_QUERY_FLAG: &str = "_UNIQUE_KEY_QUERY";

impl QueryMessageRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            topic: cmd.ext_str("topic")?.to_owned(),
            key: cmd.ext_str("key")?.to_owned(),
            max_num: cmd.ext_num("maxNum")?,
            begin_timestamp_ms: cmd.ext_num("beginTimestamp")?,
            end_timestamp_ms: cmd.ext_num("endTimestamp")?,
            // Java compares the string with "true" exactly.
            unique_key_query: cmd.ext(UNIQUE_MSG_QUERY_FLAG) == Some("true"),
        })
    }

    /// What clients send.
    pub fn write_to(&self, cmd: &mut RemotingCommand) {
        let ext = &mut cmd.ext_fields;
        ext.insert("topic".to_owned(), self.topic.clone());
        ext.insert("key".to_owned(), self.key.clone());
        ext.insert("maxNum".to_owned(), self.max_num.to_string());
        ext.insert(
            "beginTimestamp".to_owned(),
            self.begin_timestamp_ms.to_string(),
        );
        ext.insert("endTimestamp".to_owned(), self.end_timestamp_ms.to_string());
        if self.unique_key_query {
            ext.insert(UNIQUE_MSG_QUERY_FLAG.to_owned(), "true".to_owned());
        }
    }
}

/// The QUERY_MESSAGE response header (on QUERY_NOT_FOUND too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryMessageResponseHeader {
    pub index_last_update_timestamp_ms: i64,
    pub index_last_update_phy_offset: i64,
}

impl QueryMessageResponseHeader {
    pub fn write_to(&self, cmd: &mut RemotingCommand) {
        let ext = &mut cmd.ext_fields;
        ext.insert(
            "indexLastUpdateTimestamp".to_owned(),
            self.index_last_update_timestamp_ms.to_string(),
        );
        ext.insert(
            "indexLastUpdatePhyoffset".to_owned(),
            self.index_last_update_phy_offset.to_string(),
        );
    }
}

/// VIEW_MESSAGE_BY_ID (33): the CommitLog offset decoded from an offset message id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewMessageRequestHeader {
    pub offset: i64,
    /// 5.x clients add it; the broker does not need it.
    pub topic: Option<String>,
}

impl ViewMessageRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            offset: cmd.ext_num("offset")?,
            topic: cmd.ext("topic").map(str::to_owned),
        })
    }
}

/// CONSUMER_SEND_MSG_BACK (36): a consumer returns a message it failed to consume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerSendMsgBackRequestHeader {
    /// CommitLog (physical) offset of the consumed message.
    pub offset: i64,
    pub group: String,
    /// 0: the broker picks `3 + reconsumeTimes`; > 0: that level; < 0: straight to the DLQ.
    pub delay_level: i32,
    /// The client's message id; the broker does not need it.
    pub origin_msg_id: Option<String>,
    /// The topic the message was consumed from; the broker does not need it.
    pub origin_topic: Option<String>,
    pub unit_mode: bool,
    /// The client's limit; when absent the group's `retryMaxTimes` applies.
    pub max_reconsume_times: Option<i32>,
}

impl ConsumerSendMsgBackRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            offset: cmd.ext_num("offset")?,
            group: cmd.ext_str("group")?.to_owned(),
            delay_level: cmd.ext_num("delayLevel")?,
            origin_msg_id: cmd.ext("originMsgId").map(str::to_owned),
            origin_topic: cmd.ext("originTopic").map(str::to_owned),
            unit_mode: cmd.ext_bool("unitMode").unwrap_or(false),
            max_reconsume_times: cmd.ext_num_opt("maxReconsumeTimes")?,
        })
    }
}

/// END_TRANSACTION (37): a producer commits or rolls back a half message (REMOTING.md §3.14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndTransactionRequestHeader {
    pub producer_group: String,
    /// The half message's offset in `RMQ_SYS_TRANS_HALF_TOPIC` (the send response's
    /// `queueOffset`).
    pub tran_state_table_offset: i64,
    /// The half message's CommitLog offset (decoded from the send response's offset id).
    pub commit_log_offset: i64,
    /// 0 unknown, 8 commit, 12 rollback (the sysFlag transaction values).
    pub commit_or_rollback: i32,
    pub from_transaction_check: bool,
    pub msg_id: String,
    pub transaction_id: Option<String>,
    /// The real topic (5.x clients).
    pub topic: Option<String>,
}

impl EndTransactionRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            producer_group: cmd.ext_str("producerGroup")?.to_owned(),
            tran_state_table_offset: cmd.ext_num("tranStateTableOffset")?,
            commit_log_offset: cmd.ext_num("commitLogOffset")?,
            commit_or_rollback: cmd.ext_num("commitOrRollback")?,
            from_transaction_check: cmd.ext_bool("fromTransactionCheck").unwrap_or(false),
            // Required by Java; an absent id only loses a log detail here.
            msg_id: cmd.ext("msgId").unwrap_or_default().to_owned(),
            transaction_id: cmd.ext("transactionId").map(str::to_owned),
            topic: cmd.ext("topic").map(str::to_owned),
        })
    }

    pub fn write_to(&self, cmd: &mut RemotingCommand) {
        let ext = &mut cmd.ext_fields;
        ext.insert("producerGroup".to_owned(), self.producer_group.clone());
        ext.insert(
            "tranStateTableOffset".to_owned(),
            self.tran_state_table_offset.to_string(),
        );
        ext.insert(
            "commitLogOffset".to_owned(),
            self.commit_log_offset.to_string(),
        );
        ext.insert(
            "commitOrRollback".to_owned(),
            self.commit_or_rollback.to_string(),
        );
        ext.insert(
            "fromTransactionCheck".to_owned(),
            self.from_transaction_check.to_string(),
        );
        ext.insert("msgId".to_owned(), self.msg_id.clone());
        if let Some(t) = &self.transaction_id {
            ext.insert("transactionId".to_owned(), t.clone());
        }
        if let Some(t) = &self.topic {
            ext.insert("topic".to_owned(), t.clone());
        }
    }
}

/// CHECK_TRANSACTION_STATE (39), broker → producer, oneway: "what became of this half
/// message?" The body is the half message as a stored record (REMOTING.md §3.14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckTransactionStateRequestHeader {
    pub topic: Option<String>,
    pub tran_state_table_offset: i64,
    pub commit_log_offset: i64,
    pub msg_id: Option<String>,
    pub transaction_id: Option<String>,
    pub offset_msg_id: Option<String>,
    /// The broker's name (`bname`, 5.x).
    pub broker_name: Option<String>,
}

impl CheckTransactionStateRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            topic: cmd.ext("topic").map(str::to_owned),
            tran_state_table_offset: cmd.ext_num("tranStateTableOffset")?,
            commit_log_offset: cmd.ext_num("commitLogOffset")?,
            msg_id: cmd.ext("msgId").map(str::to_owned),
            transaction_id: cmd.ext("transactionId").map(str::to_owned),
            offset_msg_id: cmd.ext("offsetMsgId").map(str::to_owned),
            broker_name: cmd.ext("bname").map(str::to_owned),
        })
    }

    pub fn write_to(&self, cmd: &mut RemotingCommand) {
        let ext = &mut cmd.ext_fields;
        let optional = [
            ("topic", &self.topic),
            ("msgId", &self.msg_id),
            ("transactionId", &self.transaction_id),
            ("offsetMsgId", &self.offset_msg_id),
            ("bname", &self.broker_name),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                ext.insert(key.to_owned(), v.clone());
            }
        }
        ext.insert(
            "tranStateTableOffset".to_owned(),
            self.tran_state_table_offset.to_string(),
        );
        ext.insert(
            "commitLogOffset".to_owned(),
            self.commit_log_offset.to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_keys_map_onto_v1_fields() {
        let header = SendMessageRequestHeader {
            producer_group: "PG".into(),
            topic: "TopicA".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: 2,
            sys_flag: 0,
            born_timestamp_ms: 1_718_000_000_000,
            flag: 7,
            properties: Some("TAGS\u{1}a\u{2}".into()),
            reconsume_times: Some(0),
            unit_mode: false,
            max_reconsume_times: None,
            batch: false,
            broker_name: Some("broker-a".into()),
        };
        let mut v2 = RemotingCommand::request(request::SEND_MESSAGE_V2);
        header.write_to(&mut v2, true);
        assert_eq!(v2.ext("b"), Some("TopicA"));
        assert_eq!(SendMessageRequestHeader::parse(&v2).unwrap(), header);

        let mut v1 = RemotingCommand::request(request::SEND_MESSAGE);
        header.write_to(&mut v1, false);
        assert_eq!(v1.ext("topic"), Some("TopicA"));
        assert_eq!(SendMessageRequestHeader::parse(&v1).unwrap(), header);

        let mut batch = RemotingCommand::request(request::SEND_BATCH_MESSAGE);
        header.write_to(&mut batch, true);
        assert!(SendMessageRequestHeader::parse(&batch).unwrap().batch);
    }

    #[test]
    fn missing_and_malformed_fields_are_errors() {
        let cmd = RemotingCommand::request(request::PULL_MESSAGE)
            .with_ext("consumerGroup", "G")
            .with_ext("topic", "T")
            .with_ext("queueId", "x");
        assert_eq!(
            PullMessageRequestHeader::parse(&cmd),
            Err(HeaderError::Invalid {
                field: "queueId",
                value: "x".into()
            })
        );
        let cmd = RemotingCommand::request(request::SEND_MESSAGE_V2).with_ext("a", "PG");
        assert_eq!(
            SendMessageRequestHeader::parse(&cmd),
            Err(HeaderError::Missing("b"))
        );
    }
}
