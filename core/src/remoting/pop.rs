//! The POP family's headers and bodies (RocketMQ 5): POP_MESSAGE (200050), ACK_MESSAGE
//! (200051), PEEK_MESSAGE (200052), CHANGE_MESSAGE_INVISIBLETIME (200053), NOTIFICATION
//! (200054), POLLING_INFO (200055), BATCH_ACK_MESSAGE (200151), QUERY_ASSIGNMENT (400) and
//! SET_MESSAGE_REQUEST_MODE (401), and the text formats clients parse out of a POP answer.
//!
//! Followed: RocketMQ 5.3.3's `PopMessageRequestHeader` and its siblings, `ExtraInfoUtil` (the
//! receipt handle and the per-queue offset lists), `BatchAckMessageRequestBody` and
//! `KeyBuilder.buildPopRetryTopic`; what `rocketmq-client-rust` 1.0.0 sends and needs back.
//!
//! A POP answer's receipt handle (`POP_CK`, "extraInfo"), eight fields joined by one space:
//!
//! ```text
//! <ckStartOffset> <popTime> <invisibleTime> <reviveQid> <retryFlag> <brokerName> <queueId> <msgQueueOffset>
//!       i64          i64         i64           i32      0|1|2       string      i32       i64
//! ```
//!
//! and its per-queue lists, items joined by `;`, three tokens per item joined by one space:
//!
//! ```text
//! startOffsetInfo  "<retryFlag> <queueId> <startOffset>"         e.g. "1 0 5;0 2 10"
//! msgOffsetInfo    "<retryFlag> <queueId> <o1>,<o2>,..."         e.g. "1 0 5;0 2 10,11,13"
//! orderCountInfo   "<retryFlag> qo<queueId>%<offset> <count>"    per offset with a count,
//!                  "<retryFlag> <queueId> <minCount>"            then one per queue
//! ```
//!
//! `retryFlag`: 0 the topic itself, 1 a V1 POP retry topic `%RETRY%<group>_<topic>`, 2 a V2 one
//! `%RETRY%<group>+<topic>`.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{HeaderError, RemotingCommand};
use crate::topic::RETRY_GROUP_TOPIC_PREFIX;

/// Most messages one POP may ask for; more is INVALID_PARAMETER (29).
pub const POP_MAX_MSG_NUMS: i32 = 32;
/// The `reviveQid` of an orderly POP: nothing goes to the revive log (`POP_ORDER_REVIVE_QUEUE`).
pub const ORDER_REVIVE_QUEUE_ID: i32 = 999;
/// The property a POP answer puts on a record read from a POP retry topic: its receipt handle.
pub const POP_CK_PROPERTY: &str = "POP_CK";
/// The property a revive sets on a message's first redelivery: when it was first popped.
pub const FIRST_POP_TIME_PROPERTY: &str = "1ST_POP_TIME";

/// Which topic a POP read: the group's topic itself or one of its POP retry topics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RetryFlag {
    /// The topic itself.
    #[default]
    Normal = 0,
    /// `%RETRY%<group>_<topic>`.
    RetryV1 = 1,
    /// `%RETRY%<group>+<topic>`.
    RetryV2 = 2,
}

impl RetryFlag {
    /// The flag of a topic actually read (`ExtraInfoUtil.getRetry`).
    pub fn of_topic(topic: &str) -> Self {
        if !topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
            RetryFlag::Normal
        } else if topic.contains('+') {
            RetryFlag::RetryV2
        } else {
            RetryFlag::RetryV1
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RetryFlag::Normal => "0",
            RetryFlag::RetryV1 => "1",
            RetryFlag::RetryV2 => "2",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "0" => Some(RetryFlag::Normal),
            "1" => Some(RetryFlag::RetryV1),
            "2" => Some(RetryFlag::RetryV2),
            _ => None,
        }
    }

    /// The topic a message with this flag was read from, given the group and its topic
    /// (`ExtraInfoUtil.getRealTopic`).
    pub fn real_topic(self, topic: &str, group: &str) -> String {
        match self {
            RetryFlag::Normal => topic.to_owned(),
            RetryFlag::RetryV1 => pop_retry_topic(topic, group, false),
            RetryFlag::RetryV2 => pop_retry_topic(topic, group, true),
        }
    }
}

/// The POP retry topic of `group` on `topic` (`KeyBuilder.buildPopRetryTopic`): V1
/// `%RETRY%<group>_<topic>` (RocketMQ's default) or V2 `%RETRY%<group>+<topic>`.
pub fn pop_retry_topic(topic: &str, group: &str, v2: bool) -> String {
    let separator = if v2 { '+' } else { '_' };
    format!("{RETRY_GROUP_TOPIC_PREFIX}{group}{separator}{topic}")
}

/// The topic a V2 POP retry topic retries (`%RETRY%<group>+<topic>` → `topic`); V1 names cannot
/// be split unambiguously (both sides may hold `_`).
pub fn topic_of_v2_retry(retry_topic: &str) -> Option<&str> {
    retry_topic
        .strip_prefix(RETRY_GROUP_TOPIC_PREFIX)?
        .split_once('+')
        .map(|(_, topic)| topic)
}

/// A receipt handle (module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraInfo {
    pub ck_start_offset: i64,
    pub pop_time_ms: i64,
    pub invisible_time_ms: i64,
    pub revive_qid: i32,
    pub retry: RetryFlag,
    pub broker_name: String,
    pub queue_id: i32,
    /// Absent in the seven-field form.
    pub msg_queue_offset: Option<i64>,
}

impl ExtraInfo {
    /// Parses a handle. RocketMQ's broker reads fields 0–3 and 5; a handle with fewer than seven
    /// fields, or one of those not a number, is refused. Fields past the eighth (a client's own
    /// additions) are ignored.
    pub fn parse(text: &str) -> Result<Self, HeaderError> {
        let invalid = || HeaderError::Invalid {
            field: "extraInfo",
            value: text.to_owned(),
        };
        let fields: Vec<&str> = text.split(' ').collect();
        if fields.len() < 7 {
            return Err(invalid());
        }
        let num = |i: usize| fields[i].trim().parse::<i64>().map_err(|_| invalid());
        Ok(Self {
            ck_start_offset: num(0)?,
            pop_time_ms: num(1)?,
            invisible_time_ms: num(2)?,
            revive_qid: i32::try_from(num(3)?).map_err(|_| invalid())?,
            retry: RetryFlag::parse(fields[4]).ok_or_else(invalid)?,
            broker_name: fields[5].to_owned(),
            queue_id: i32::try_from(num(6)?).map_err(|_| invalid())?,
            msg_queue_offset: match fields.get(7) {
                Some(f) => Some(f.trim().parse().map_err(|_| invalid())?),
                None => None,
            },
        })
    }

    pub fn encode(&self) -> String {
        let mut out = format!(
            "{} {} {} {} {} {} {}",
            self.ck_start_offset,
            self.pop_time_ms,
            self.invisible_time_ms,
            self.revive_qid,
            self.retry.as_str(),
            self.broker_name,
            self.queue_id
        );
        if let Some(offset) = self.msg_queue_offset {
            out.push(' ');
            out.push_str(&offset.to_string());
        }
        out
    }
}

/// One item's key in the per-queue lists: `<retryFlag>@<queueId>` in RocketMQ's maps.
pub type QueueKey = (RetryFlag, i32);

/// `startOffsetInfo`: where each queue's read started.
pub fn encode_start_offset_info(items: &[(QueueKey, i64)]) -> String {
    items
        .iter()
        .map(|((flag, queue_id), offset)| format!("{} {queue_id} {offset}", flag.as_str()))
        .collect::<Vec<_>>()
        .join(";")
}

/// `msgOffsetInfo`: the queue offsets of each queue's returned records, in body order.
pub fn encode_msg_offset_info(items: &[(QueueKey, Vec<i64>)]) -> String {
    items
        .iter()
        .map(|((flag, queue_id), offsets)| {
            let list = offsets
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            format!("{} {queue_id} {list}", flag.as_str())
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// `orderCountInfo` for one queue: an item per offset delivered before (its count), then the
/// queue's smallest count for clients that read only that.
pub fn encode_order_count_info(key: QueueKey, counts: &[(i64, i32)], out: &mut Vec<String>) {
    let (flag, queue_id) = key;
    let mut min = i32::MAX;
    for (offset, count) in counts {
        if *count > 0 {
            out.push(format!("{} qo{queue_id}%{offset} {count}", flag.as_str()));
        }
        min = min.min(*count);
    }
    if counts.is_empty() {
        min = 0;
    }
    out.push(format!("{} {queue_id} {min}", flag.as_str()));
}

fn split_item(item: &str) -> Option<(RetryFlag, &str, &str)> {
    let mut parts = item.split(' ');
    let flag = RetryFlag::parse(parts.next()?)?;
    let queue = parts.next()?;
    let value = parts.next()?;
    Some((flag, queue, value))
}

/// Parses `startOffsetInfo`. A malformed item or a key seen twice is an error, as in clients.
pub fn parse_start_offset_info(text: &str) -> Option<BTreeMap<QueueKey, i64>> {
    let mut out = BTreeMap::new();
    for item in text.split(';').filter(|i| !i.is_empty()) {
        let (flag, queue, value) = split_item(item)?;
        let key = (flag, queue.parse().ok()?);
        if out.insert(key, value.parse().ok()?).is_some() {
            return None;
        }
    }
    Some(out)
}

/// Parses `msgOffsetInfo`.
pub fn parse_msg_offset_info(text: &str) -> Option<BTreeMap<QueueKey, Vec<i64>>> {
    let mut out = BTreeMap::new();
    for item in text.split(';').filter(|i| !i.is_empty()) {
        let (flag, queue, value) = split_item(item)?;
        let offsets = value
            .split(',')
            .map(|o| o.parse().ok())
            .collect::<Option<Vec<i64>>>()?;
        if out.insert((flag, queue.parse().ok()?), offsets).is_some() {
            return None;
        }
    }
    Some(out)
}

/// Parses `orderCountInfo` into (per offset: (flag, queue, offset) → count, per queue → count).
pub fn parse_order_count_info(text: &str) -> Option<OrderCounts> {
    let mut counts = OrderCounts::default();
    for item in text.split(';').filter(|i| !i.is_empty()) {
        let (flag, queue, value) = split_item(item)?;
        let count: i32 = value.parse().ok()?;
        if let Some(rest) = queue.strip_prefix("qo") {
            let (queue_id, offset) = rest.split_once('%')?;
            counts
                .by_offset
                .insert((flag, queue_id.parse().ok()?, offset.parse().ok()?), count);
        } else {
            counts.by_queue.insert((flag, queue.parse().ok()?), count);
        }
    }
    Some(counts)
}

/// A parsed `orderCountInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderCounts {
    pub by_offset: BTreeMap<(RetryFlag, i32, i64), i32>,
    pub by_queue: BTreeMap<QueueKey, i32>,
}

impl OrderCounts {
    /// How often the message at `offset` was delivered before this time.
    pub fn count(&self, flag: RetryFlag, queue_id: i32, offset: i64) -> i32 {
        self.by_offset
            .get(&(flag, queue_id, offset))
            .or_else(|| self.by_queue.get(&(flag, queue_id)))
            .copied()
            .unwrap_or(0)
    }
}

/// POP_MESSAGE (200050).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PopMessageRequestHeader {
    pub consumer_group: String,
    pub topic: String,
    /// Negative: every readable queue of the topic on this broker.
    pub queue_id: i32,
    pub max_msg_nums: i32,
    pub invisible_time_ms: i64,
    /// Long-polling budget; 0 or less: answer at once.
    pub poll_time_ms: i64,
    /// The client's clock when it sent; absent or 0: the broker's own now.
    pub born_time_ms: i64,
    /// 0 (MIN): a group new to a queue starts at its first message; 1 (MAX): at its last.
    pub init_mode: i32,
    pub exp_type: Option<String>,
    pub exp: Option<String>,
    pub order: bool,
    pub attempt_id: Option<String>,
}

/// `ConsumeInitMode.MIN`.
pub const INIT_MODE_MIN: i32 = 0;
/// `ConsumeInitMode.MAX`.
pub const INIT_MODE_MAX: i32 = 1;

impl PopMessageRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            consumer_group: cmd.ext_str("consumerGroup")?.to_owned(),
            topic: cmd.ext_str("topic")?.to_owned(),
            queue_id: cmd.ext_num("queueId")?,
            max_msg_nums: cmd.ext_num("maxMsgNums")?,
            invisible_time_ms: cmd.ext_num("invisibleTime")?,
            poll_time_ms: cmd.ext_num("pollTime")?,
            born_time_ms: cmd.ext_num_opt("bornTime")?.unwrap_or(0),
            init_mode: cmd.ext_num("initMode")?,
            exp_type: cmd.ext("expType").map(str::to_owned),
            exp: cmd.ext("exp").map(str::to_owned),
            order: cmd.ext_bool("order").unwrap_or(false),
            attempt_id: cmd.ext("attemptId").map(str::to_owned),
        })
    }

    pub fn write_to(&self, cmd: &mut RemotingCommand) {
        let ext = &mut cmd.ext_fields;
        ext.insert("consumerGroup".to_owned(), self.consumer_group.clone());
        ext.insert("topic".to_owned(), self.topic.clone());
        ext.insert("queueId".to_owned(), self.queue_id.to_string());
        ext.insert("maxMsgNums".to_owned(), self.max_msg_nums.to_string());
        ext.insert(
            "invisibleTime".to_owned(),
            self.invisible_time_ms.to_string(),
        );
        ext.insert("pollTime".to_owned(), self.poll_time_ms.to_string());
        ext.insert("bornTime".to_owned(), self.born_time_ms.to_string());
        ext.insert("initMode".to_owned(), self.init_mode.to_string());
        if let Some(t) = &self.exp_type {
            ext.insert("expType".to_owned(), t.clone());
        }
        if let Some(e) = &self.exp {
            ext.insert("exp".to_owned(), e.clone());
        }
        ext.insert("order".to_owned(), self.order.to_string());
        if let Some(a) = &self.attempt_id {
            ext.insert("attemptId".to_owned(), a.clone());
        }
    }
}

/// The POP (and PEEK) answer's header. The four numbers are on every answer, errors included:
/// clients decode them before looking at the code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PopMessageResponseHeader {
    pub pop_time_ms: i64,
    pub invisible_time_ms: i64,
    pub revive_qid: i32,
    pub rest_num: i64,
    pub start_offset_info: Option<String>,
    pub msg_offset_info: Option<String>,
    pub order_count_info: Option<String>,
}

impl PopMessageResponseHeader {
    pub fn write_to(&self, cmd: &mut RemotingCommand) {
        let ext = &mut cmd.ext_fields;
        ext.insert("popTime".to_owned(), self.pop_time_ms.to_string());
        ext.insert(
            "invisibleTime".to_owned(),
            self.invisible_time_ms.to_string(),
        );
        ext.insert("reviveQid".to_owned(), self.revive_qid.to_string());
        ext.insert("restNum".to_owned(), self.rest_num.to_string());
        for (key, value) in [
            ("startOffsetInfo", &self.start_offset_info),
            ("msgOffsetInfo", &self.msg_offset_info),
            ("orderCountInfo", &self.order_count_info),
        ] {
            if let Some(v) = value {
                ext.insert(key.to_owned(), v.clone());
            }
        }
    }

    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            pop_time_ms: cmd.ext_num("popTime")?,
            invisible_time_ms: cmd.ext_num("invisibleTime")?,
            revive_qid: cmd.ext_num("reviveQid")?,
            rest_num: cmd.ext_num("restNum")?,
            start_offset_info: cmd.ext("startOffsetInfo").map(str::to_owned),
            msg_offset_info: cmd.ext("msgOffsetInfo").map(str::to_owned),
            order_count_info: cmd.ext("orderCountInfo").map(str::to_owned),
        })
    }
}

/// ACK_MESSAGE (200051); with `invisible_time_ms`, CHANGE_MESSAGE_INVISIBLETIME (200053).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckMessageRequestHeader {
    pub consumer_group: String,
    /// The topic the message was read from: a POP retry topic for a redelivery.
    pub topic: String,
    pub queue_id: i32,
    pub extra_info: String,
    pub offset: i64,
}

impl AckMessageRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            consumer_group: cmd.ext_str("consumerGroup")?.to_owned(),
            topic: cmd.ext_str("topic")?.to_owned(),
            queue_id: cmd.ext_num("queueId")?,
            extra_info: cmd.ext_str("extraInfo")?.to_owned(),
            offset: cmd.ext_num("offset")?,
        })
    }

    pub fn write_to(&self, cmd: &mut RemotingCommand) {
        let ext = &mut cmd.ext_fields;
        ext.insert("consumerGroup".to_owned(), self.consumer_group.clone());
        ext.insert("topic".to_owned(), self.topic.clone());
        ext.insert("queueId".to_owned(), self.queue_id.to_string());
        ext.insert("extraInfo".to_owned(), self.extra_info.clone());
        ext.insert("offset".to_owned(), self.offset.to_string());
    }
}

/// The CHANGE_MESSAGE_INVISIBLETIME answer's header (on every answer, errors included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeInvisibleTimeResponseHeader {
    pub pop_time_ms: i64,
    pub invisible_time_ms: i64,
    pub revive_qid: i32,
}

impl ChangeInvisibleTimeResponseHeader {
    pub fn write_to(&self, cmd: &mut RemotingCommand) {
        let ext = &mut cmd.ext_fields;
        ext.insert("popTime".to_owned(), self.pop_time_ms.to_string());
        ext.insert(
            "invisibleTime".to_owned(),
            self.invisible_time_ms.to_string(),
        );
        ext.insert("reviveQid".to_owned(), self.revive_qid.to_string());
    }

    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            pop_time_ms: cmd.ext_num("popTime")?,
            invisible_time_ms: cmd.ext_num("invisibleTime")?,
            revive_qid: cmd.ext_num("reviveQid")?,
        })
    }
}

/// NOTIFICATION (200054): is there anything to pop?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRequestHeader {
    pub consumer_group: String,
    pub topic: String,
    pub queue_id: i32,
    pub poll_time_ms: i64,
    pub born_time_ms: i64,
    pub order: bool,
    pub attempt_id: Option<String>,
}

impl NotificationRequestHeader {
    pub fn parse(cmd: &RemotingCommand) -> Result<Self, HeaderError> {
        Ok(Self {
            consumer_group: cmd.ext_str("consumerGroup")?.to_owned(),
            topic: cmd.ext_str("topic")?.to_owned(),
            queue_id: cmd.ext_num("queueId")?,
            poll_time_ms: cmd.ext_num("pollTime")?,
            born_time_ms: cmd.ext_num_opt("bornTime")?.unwrap_or(0),
            order: cmd.ext_bool("order").unwrap_or(false),
            attempt_id: cmd.ext("attemptId").map(str::to_owned),
        })
    }
}

/// BATCH_ACK_MESSAGE (200151)'s body: `{"acks":[...],"brokerName":"..."}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchAckMessageRequestBody {
    #[serde(default)]
    pub acks: Vec<BatchAck>,
    #[serde(default)]
    pub broker_name: Option<String>,
}

/// One checkpoint's acks in a batch: bit `i` of `bit_set` acks offset `start_offset + i`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAck {
    #[serde(rename = "c", alias = "consumerGroup")]
    pub consumer_group: String,
    /// The group's topic, not the retry topic (`retry` says which was read).
    #[serde(rename = "t", alias = "topic")]
    pub topic: String,
    #[serde(rename = "r", alias = "retry", with = "retry_flag_text")]
    pub retry: RetryFlag,
    #[serde(rename = "so", alias = "startOffset")]
    pub start_offset: i64,
    #[serde(rename = "q", alias = "queueId")]
    pub queue_id: i32,
    #[serde(rename = "rq", alias = "reviveQueueId")]
    pub revive_qid: i32,
    #[serde(rename = "pt", alias = "popTime")]
    pub pop_time_ms: i64,
    #[serde(rename = "it", alias = "invisibleTime")]
    pub invisible_time_ms: i64,
    #[serde(rename = "b", alias = "bitSet", with = "bit_set")]
    pub bit_set: Vec<u8>,
}

impl BatchAck {
    /// The offsets this entry acks, ascending.
    pub fn offsets(&self) -> Vec<i64> {
        let mut out = Vec::new();
        for (byte_index, byte) in self.bit_set.iter().enumerate() {
            for bit in 0..8 {
                if byte & (1 << bit) != 0 {
                    out.push(self.start_offset + (byte_index * 8 + bit) as i64);
                }
            }
        }
        out
    }

    /// The bit set of `offsets` relative to `start_offset` (`java.util.BitSet.toByteArray`:
    /// little-endian, trailing zero bytes dropped).
    pub fn bits_of(start_offset: i64, offsets: &[i64]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for offset in offsets {
            let Ok(i) = usize::try_from(offset - start_offset) else {
                continue;
            };
            if bytes.len() <= i / 8 {
                bytes.resize(i / 8 + 1, 0);
            }
            bytes[i / 8] |= 1 << (i % 8);
        }
        bytes
    }
}

/// `r` is a string (`"0"`) in what Java and Rust send; a number is taken too.
mod retry_flag_text {
    use super::RetryFlag;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(flag: &RetryFlag, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(flag.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RetryFlag, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let text = match &value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(D::Error::custom("retry flag must be \"0\", \"1\" or \"2\"")),
        };
        RetryFlag::parse(&text).ok_or_else(|| D::Error::custom(format!("bad retry flag {text}")))
    }
}

/// `b`: Java sends the base64 of `BitSet.toByteArray()`, `rocketmq-client-rust` a JSON array of
/// byte values; both are read. Written as Java writes it.
mod bit_set {
    use base64::Engine;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(text) => base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| D::Error::custom(format!("bit set is not base64: {e}"))),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_i64()
                        .filter(|b| (-128..=255).contains(b))
                        .map(|b| b as u8)
                        .ok_or_else(|| D::Error::custom("bit set bytes must be numbers"))
                })
                .collect(),
            serde_json::Value::Null => Ok(Vec::new()),
            _ => Err(D::Error::custom("bit set must be base64 text or an array")),
        }
    }
}

/// Encodes a bit set as Java's fastjson does (base64 text).
pub fn encode_bit_set(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A consumer group's request mode on a topic (SET_MESSAGE_REQUEST_MODE, 401).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageRequestMode {
    #[default]
    #[serde(rename = "PULL")]
    Pull,
    #[serde(rename = "POP")]
    Pop,
}

/// SET_MESSAGE_REQUEST_MODE (401)'s body, also one entry of `config/messageRequestMode.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetMessageRequestModeBody {
    pub consumer_group: String,
    #[serde(default)]
    pub mode: MessageRequestMode,
    #[serde(default)]
    pub pop_share_queue_num: i32,
    pub topic: String,
}

/// QUERY_ASSIGNMENT (400)'s body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryAssignmentRequestBody {
    pub topic: String,
    pub consumer_group: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub strategy_name: Option<String>,
    #[serde(default)]
    pub message_model: Option<String>,
}

/// One queue assigned by QUERY_ASSIGNMENT, with the mode the client reads it in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueueAssignment {
    pub message_queue: AssignedQueue,
    pub mode: MessageRequestMode,
}

/// A `MessageQueue` in an assignment (queue id −1: "any queue of this broker, POP picks").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedQueue {
    pub broker_name: String,
    pub queue_id: i32,
    pub topic: String,
}

/// QUERY_ASSIGNMENT's answer body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryAssignmentResponseBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_queue_assignments: Option<Vec<MessageQueueAssignment>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_handles_round_trip_and_bad_ones_are_refused() {
        let text = "10 1700000000000 60000 3 1 broker-a 0 12";
        let info = ExtraInfo::parse(text).unwrap();
        assert_eq!(info.retry, RetryFlag::RetryV1);
        assert_eq!(info.msg_queue_offset, Some(12));
        assert_eq!(info.encode(), text);
        let seven = ExtraInfo::parse("10 1 2 3 0 b 4").unwrap();
        assert_eq!(seven.msg_queue_offset, None);
        // A client's ninth field is ignored.
        assert!(ExtraInfo::parse("10 1 2 3 0 b 4 5 7").is_ok());
        for bad in [
            "",
            "1 2 3",
            "x 1 2 3 0 b 4 5",
            "1 2 3 4 9 b 4 5",
            "1 2 3 4 0 b q",
        ] {
            assert!(ExtraInfo::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn offset_infos_use_rocketmqs_text_and_refuse_duplicates() {
        let start =
            encode_start_offset_info(&[((RetryFlag::RetryV1, 0), 5), ((RetryFlag::Normal, 2), 10)]);
        assert_eq!(start, "1 0 5;0 2 10");
        let msgs = encode_msg_offset_info(&[
            ((RetryFlag::RetryV1, 0), vec![5]),
            ((RetryFlag::Normal, 2), vec![10, 11, 13]),
        ]);
        assert_eq!(msgs, "1 0 5;0 2 10,11,13");
        assert_eq!(
            parse_msg_offset_info(&msgs).unwrap()[&(RetryFlag::Normal, 2)],
            vec![10, 11, 13]
        );
        assert_eq!(parse_start_offset_info(&start).unwrap().len(), 2);
        assert!(parse_start_offset_info("0 1 5;0 1 6").is_none());
        let mut items = Vec::new();
        encode_order_count_info((RetryFlag::Normal, 3), &[(5, 2), (6, 0)], &mut items);
        let text = items.join(";");
        assert_eq!(text, "0 qo3%5 2;0 3 0");
        let counts = parse_order_count_info(&text).unwrap();
        assert_eq!(counts.count(RetryFlag::Normal, 3, 5), 2);
        assert_eq!(counts.count(RetryFlag::Normal, 3, 6), 0);
    }

    #[test]
    fn batch_acks_read_javas_base64_and_rusts_byte_arrays() {
        let java = r#"{"acks":[{"b":"BQI=","c":"G1","it":60000,"pt":1700000000000,"q":3,"r":"0","rq":1,"so":10,"t":"T1"}],"brokerName":"broker-a"}"#;
        let body: BatchAckMessageRequestBody = serde_json::from_str(java).unwrap();
        assert_eq!(body.acks[0].offsets(), vec![10, 12, 19]);
        let rust = r#"{"brokerName":"broker-a","acks":[{"c":"G1","t":"T1","r":"0","so":10,"q":3,"rq":1,"pt":1700000000000,"it":60000,"b":[5,2,0,0,0,0,0,0]}]}"#;
        let body2: BatchAckMessageRequestBody = serde_json::from_str(rust).unwrap();
        assert_eq!(body2.acks[0].offsets(), vec![10, 12, 19]);
        assert_eq!(BatchAck::bits_of(10, &[10, 12, 19]), vec![5, 2]);
        let long = r#"{"acks":[{"bitSet":"AQ==","consumerGroup":"G","invisibleTime":1,"popTime":2,"queueId":0,"retry":"2","reviveQueueId":0,"startOffset":7,"topic":"T"}]}"#;
        let body3: BatchAckMessageRequestBody = serde_json::from_str(long).unwrap();
        assert_eq!(body3.acks[0].retry, RetryFlag::RetryV2);
        assert_eq!(body3.acks[0].offsets(), vec![7]);
    }

    #[test]
    fn pop_retry_topics_are_named_as_rocketmq_names_them() {
        assert_eq!(pop_retry_topic("T", "G", false), "%RETRY%G_T");
        assert_eq!(pop_retry_topic("T", "G", true), "%RETRY%G+T");
        assert_eq!(RetryFlag::of_topic("%RETRY%G+T"), RetryFlag::RetryV2);
        assert_eq!(RetryFlag::of_topic("%RETRY%G_T"), RetryFlag::RetryV1);
        assert_eq!(RetryFlag::of_topic("T"), RetryFlag::Normal);
        assert_eq!(topic_of_v2_retry("%RETRY%G+T"), Some("T"));
        assert_eq!(RetryFlag::RetryV1.real_topic("T", "G"), "%RETRY%G_T");
    }

    #[test]
    fn assignment_bodies_have_rocketmqs_shape() {
        let body = QueryAssignmentResponseBody {
            message_queue_assignments: Some(vec![MessageQueueAssignment {
                message_queue: AssignedQueue {
                    broker_name: "broker-a".into(),
                    queue_id: -1,
                    topic: "T1".into(),
                },
                mode: MessageRequestMode::Pop,
            }]),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"messageQueueAssignments":[{"messageQueue":{"brokerName":"broker-a","queueId":-1,"topic":"T1"},"mode":"POP"}]}"#
        );
        assert_eq!(
            serde_json::to_string(&QueryAssignmentResponseBody::default()).unwrap(),
            "{}"
        );
        let mode: SetMessageRequestModeBody = serde_json::from_str(
            r#"{"topic":"T","consumerGroup":"G","mode":"POP","popShareQueueNum":2}"#,
        )
        .unwrap();
        assert_eq!(mode.mode, MessageRequestMode::Pop);
    }
}
