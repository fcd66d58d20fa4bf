//! Every request a client sends, built from plain inputs so golden tests can pin their bytes.
//!
//! All requests are JSON-header commands with language `JAVA`, version 479, flag 0 (the oneway
//! bit is added by the caller for oneway sends) and opaque 0 (set when queued). Ext keys follow
//! the Java 4.9 request headers (REMOTING.md §3); fields Java leaves null are absent.
//!
//! | Code | Request | Ext fields | Body |
//! |---:|---|---|---|
//! | 105 | GET_ROUTEINFO_BY_TOPIC | topic | |
//! | 310 / 320 | SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE | a…m (V2 send header) | message / batch |
//! | 11 / 361 | PULL_MESSAGE / LITE_PULL_MESSAGE | consumerGroup topic queueId queueOffset maxMsgNums sysFlag commitOffset suspendTimeoutMillis [subscription] subVersion expressionType | |
//! | 14 | QUERY_CONSUMER_OFFSET | consumerGroup topic queueId | |
//! | 15 | UPDATE_CONSUMER_OFFSET | consumerGroup topic queueId commitOffset | |
//! | 30 / 31 | GET_MAX_OFFSET / GET_MIN_OFFSET | topic queueId | |
//! | 29 | SEARCH_OFFSET_BY_TIMESTAMP | topic queueId timestamp | |
//! | 38 | GET_CONSUMER_LIST_BY_GROUP | consumerGroup | |
//! | 34 | HEART_BEAT | | HeartbeatData JSON |
//! | 35 | UNREGISTER_CLIENT | clientID [producerGroup] [consumerGroup] | |
//! | 36 | CONSUMER_SEND_MSG_BACK | offset group delayLevel originMsgId originTopic unitMode maxReconsumeTimes | |
//! | 41 / 42 | LOCK_BATCH_MQ / UNLOCK_BATCH_MQ | | `{"clientId","consumerGroup","mqSet":[…],"onlyThisBroker":false}` |
//!
//! HeartbeatData is written with keys in alphabetical order, as fastjson does. Java keeps
//! `tagsSet` and `codeSet` in `HashSet`s; their order is reproduced ([`java_hash_set_order`]).
//! The order of the producer, consumer and subscription sets depends on Java identity hashes
//! and is not reproducible: they are written sorted by name.

use bytes::Bytes;
use serde::Serialize;

use crate::message::tag_hash_code;
use crate::remoting::codes::request;
use crate::remoting::headers::{
    ConsumerGroupHeader, PullMessageRequestHeader, SendMessageRequestHeader,
};
use crate::remoting::RemotingCommand;

/// The producer group Java clients always add to their heartbeats.
pub const CLIENT_INNER_PRODUCER_GROUP: &str = "CLIENT_INNER_PRODUCER";

/// GET_ROUTEINFO_BY_TOPIC (105).
pub fn get_route_info(topic: &str) -> RemotingCommand {
    RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic)
}

/// SEND_MESSAGE_V2 (310), or SEND_BATCH_MESSAGE (320) when `header.batch`; V2 (one-letter)
/// keys either way.
pub fn send_message(header: &SendMessageRequestHeader, body: Bytes) -> RemotingCommand {
    let code = if header.batch {
        request::SEND_BATCH_MESSAGE
    } else {
        request::SEND_MESSAGE_V2
    };
    let mut cmd = RemotingCommand::request(code).with_body(body);
    header.write_to(&mut cmd, true);
    // Java 4.9 clients send no `m` (batch) key: the code says it is a batch.
    cmd.ext_fields.remove("m");
    cmd
}

/// PULL_MESSAGE (11), or LITE_PULL_MESSAGE (361) when `lite`.
pub fn pull_message(header: &PullMessageRequestHeader, lite: bool) -> RemotingCommand {
    let code = if lite {
        request::LITE_PULL_MESSAGE
    } else {
        request::PULL_MESSAGE
    };
    let mut cmd = RemotingCommand::request(code);
    header.write_to(&mut cmd);
    cmd
}

/// QUERY_CONSUMER_OFFSET (14).
pub fn query_consumer_offset(group: &str, topic: &str, queue_id: i32) -> RemotingCommand {
    RemotingCommand::request(request::QUERY_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
}

/// UPDATE_CONSUMER_OFFSET (15).
pub fn update_consumer_offset(
    group: &str,
    topic: &str,
    queue_id: i32,
    commit_offset: i64,
) -> RemotingCommand {
    RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
        .with_ext("commitOffset", commit_offset)
}

/// GET_MAX_OFFSET (30).
pub fn get_max_offset(topic: &str, queue_id: i32) -> RemotingCommand {
    RemotingCommand::request(request::GET_MAX_OFFSET)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
}

/// GET_MIN_OFFSET (31).
pub fn get_min_offset(topic: &str, queue_id: i32) -> RemotingCommand {
    RemotingCommand::request(request::GET_MIN_OFFSET)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
}

/// SEARCH_OFFSET_BY_TIMESTAMP (29).
pub fn search_offset_by_timestamp(
    topic: &str,
    queue_id: i32,
    timestamp_ms: i64,
) -> RemotingCommand {
    RemotingCommand::request(request::SEARCH_OFFSET_BY_TIMESTAMP)
        .with_ext("topic", topic)
        .with_ext("queueId", queue_id)
        .with_ext("timestamp", timestamp_ms)
}

/// GET_CONSUMER_LIST_BY_GROUP (38).
pub fn get_consumer_list_by_group(group: &str) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP);
    ConsumerGroupHeader {
        consumer_group: group.to_owned(),
    }
    .write_to(&mut cmd);
    cmd
}

/// HEART_BEAT (34).
pub fn heartbeat(data: &HeartbeatData) -> RemotingCommand {
    RemotingCommand::request(request::HEART_BEAT).with_body(data.to_json().into_bytes())
}

/// UNREGISTER_CLIENT (35).
pub fn unregister_client(
    client_id: &str,
    producer_group: Option<&str>,
    consumer_group: Option<&str>,
) -> RemotingCommand {
    let mut cmd =
        RemotingCommand::request(request::UNREGISTER_CLIENT).with_ext("clientID", client_id);
    if let Some(group) = producer_group {
        cmd = cmd.with_ext("producerGroup", group);
    }
    if let Some(group) = consumer_group {
        cmd = cmd.with_ext("consumerGroup", group);
    }
    cmd
}

/// END_TRANSACTION (37): commit, roll back or leave open a half message. Sent oneway.
pub fn end_transaction(
    header: &crate::remoting::headers::EndTransactionRequestHeader,
    remark: Option<String>,
) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::END_TRANSACTION);
    header.write_to(&mut cmd);
    cmd.remark = remark;
    cmd
}

/// CONSUMER_SEND_MSG_BACK (36) fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendBackRequest {
    /// Physical (CommitLog) offset of the consumed message.
    pub offset: i64,
    pub group: String,
    /// 0: the broker decides (3 + reconsumeTimes); > 0 explicit; < 0 straight to the DLQ.
    pub delay_level: i32,
    pub origin_msg_id: String,
    pub origin_topic: String,
    pub max_reconsume_times: i32,
}

/// CONSUMER_SEND_MSG_BACK (36).
pub fn consumer_send_msg_back(req: &SendBackRequest) -> RemotingCommand {
    RemotingCommand::request(request::CONSUMER_SEND_MSG_BACK)
        .with_ext("offset", req.offset)
        .with_ext("group", &req.group)
        .with_ext("delayLevel", req.delay_level)
        .with_ext("originMsgId", &req.origin_msg_id)
        .with_ext("originTopic", &req.origin_topic)
        .with_ext("unitMode", false)
        .with_ext("maxReconsumeTimes", req.max_reconsume_times)
}

/// One queue in a lock body (`MessageQueue` JSON, keys in alphabetical order as fastjson
/// writes them).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LockQueue<'a> {
    broker_name: &'a str,
    queue_id: i32,
    topic: &'a str,
}

/// LockBatchRequestBody / UnlockBatchRequestBody (REMOTING.md §5.6).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LockBody<'a> {
    client_id: &'a str,
    consumer_group: &'a str,
    mq_set: Vec<LockQueue<'a>>,
    only_this_broker: bool,
}

fn lock_body(group: &str, client_id: &str, queues: &[super::MessageQueue]) -> Vec<u8> {
    let body = LockBody {
        client_id,
        consumer_group: group,
        mq_set: queues
            .iter()
            .map(|q| LockQueue {
                broker_name: &q.broker_name,
                queue_id: q.queue_id,
                topic: &q.topic,
            })
            .collect(),
        only_this_broker: false,
    };
    // Plain strings and numbers always serialize.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// LOCK_BATCH_MQ (41): no header, a LockBatchRequestBody naming `queues` (all of one broker).
pub fn lock_batch_mq(
    group: &str,
    client_id: &str,
    queues: &[super::MessageQueue],
) -> RemotingCommand {
    RemotingCommand::request(request::LOCK_BATCH_MQ).with_body(lock_body(group, client_id, queues))
}

/// UNLOCK_BATCH_MQ (42): no header, an UnlockBatchRequestBody naming `queues`.
pub fn unlock_batch_mq(
    group: &str,
    client_id: &str,
    queues: &[super::MessageQueue],
) -> RemotingCommand {
    RemotingCommand::request(request::UNLOCK_BATCH_MQ)
        .with_body(lock_body(group, client_id, queues))
}

/// RocketMQ's `ConsumeType` for heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ConsumeType {
    /// Pull and lite-pull consumers.
    #[serde(rename = "CONSUME_ACTIVELY")]
    Actively,
    /// Push consumers.
    #[serde(rename = "CONSUME_PASSIVELY")]
    Passively,
    /// POP consumers: the broker balances the group (RocketMQ 5).
    #[serde(rename = "CONSUME_POP")]
    Pop,
}

/// RocketMQ's `MessageModel`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum MessageModel {
    /// Each message to one consumer of the group; offsets on the broker.
    #[default]
    #[serde(rename = "CLUSTERING")]
    Clustering,
    /// Each message to every consumer; offsets kept locally.
    #[serde(rename = "BROADCASTING")]
    Broadcasting,
}

/// RocketMQ's `ConsumeFromWhere`: where a group with no committed offset starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ConsumeFromWhere {
    #[default]
    #[serde(rename = "CONSUME_FROM_LAST_OFFSET")]
    LastOffset,
    #[serde(rename = "CONSUME_FROM_FIRST_OFFSET")]
    FirstOffset,
    #[serde(rename = "CONSUME_FROM_TIMESTAMP")]
    Timestamp,
}

/// The expression type of subscriptions whose selector is an SQL92 property filter.
pub const EXPRESSION_TYPE_SQL92: &str = "SQL92";

/// One subscription as a heartbeat carries it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionData {
    pub class_filter_mode: bool,
    pub code_set: Vec<i32>,
    pub expression_type: String,
    pub sub_string: String,
    pub sub_version: i64,
    pub tags_set: Vec<String>,
    pub topic: String,
}

impl SubscriptionData {
    /// A TAG subscription of `topic` to `expression` (`*` or `tagA || tagB`), versioned
    /// `sub_version` (Java: the subscribe time in ms). Tags are trimmed, empty ones dropped,
    /// and kept in Java `HashSet` order.
    pub fn tag(topic: &str, expression: &str, sub_version: i64) -> Self {
        let trimmed = expression.trim();
        let (sub_string, tags) = if trimmed.is_empty() || trimmed == "*" {
            ("*".to_owned(), Vec::new())
        } else {
            let mut tags: Vec<String> = Vec::new();
            for tag in trimmed.split("||").map(str::trim).filter(|t| !t.is_empty()) {
                if !tags.iter().any(|t| t == tag) {
                    tags.push(tag.to_owned());
                }
            }
            (trimmed.to_owned(), tags)
        };
        let mut codes: Vec<i32> = Vec::new();
        for tag in &tags {
            let code = tag_hash_code(tag) as i32;
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        let tags_set = java_hash_set_order(tags, |t| tag_hash_code(t) as i32);
        let code_set = java_hash_set_order(codes, |c| *c);
        Self {
            class_filter_mode: false,
            code_set,
            expression_type: "TAG".to_owned(),
            sub_string,
            sub_version,
            tags_set,
            topic: topic.to_owned(),
        }
    }

    /// An SQL92 subscription of `topic` to `expression` (a property selector the broker
    /// evaluates), versioned `sub_version`. No tags or codes: the broker does all the
    /// filtering. Fails when `expression` does not compile.
    pub fn sql92(
        topic: &str,
        expression: &str,
        sub_version: i64,
    ) -> Result<Self, crate::filter::FilterError> {
        crate::filter::SqlFilter::compile(expression)?;
        Ok(Self {
            class_filter_mode: false,
            code_set: Vec::new(),
            expression_type: EXPRESSION_TYPE_SQL92.to_owned(),
            sub_string: expression.to_owned(),
            sub_version,
            tags_set: Vec::new(),
            topic: topic.to_owned(),
        })
    }

    /// Whether a message with `tags` passes this subscription (the client-side exact tag
    /// filter: a message without tags passes only `*`). SQL92 subscriptions were filtered by
    /// the broker and pass everything.
    pub fn matches(&self, tags: Option<&str>) -> bool {
        if self.sub_string == "*" || self.expression_type != "TAG" {
            return true;
        }
        tags.is_some_and(|t| self.tags_set.iter().any(|s| s == t))
    }
}

/// One consumer group as a heartbeat carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    pub consume_from_where: ConsumeFromWhere,
    pub consume_type: ConsumeType,
    pub group_name: String,
    pub message_model: MessageModel,
    pub subscription_data_set: Vec<SubscriptionData>,
    pub unit_mode: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProducerData<'a> {
    group_name: &'a str,
}

/// The HEART_BEAT body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatData {
    pub client_id: String,
    /// Producer groups (written sorted).
    pub producer_groups: Vec<String>,
    /// Consumer groups (written sorted by group name, subscriptions by topic).
    pub consumers: Vec<ConsumerData>,
}

impl HeartbeatData {
    /// The JSON body: `clientID`, `consumerDataSet`, `heartbeatFingerprint` 0,
    /// `producerDataSet`, `withoutSub` false (REMOTING.md §5.4).
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            #[serde(rename = "clientID")]
            client_id: &'a str,
            consumer_data_set: Vec<ConsumerData>,
            heartbeat_fingerprint: i64,
            producer_data_set: Vec<ProducerData<'a>>,
            without_sub: bool,
        }
        let mut producers: Vec<&str> = self.producer_groups.iter().map(String::as_str).collect();
        producers.sort_unstable();
        producers.dedup();
        let mut consumers = self.consumers.clone();
        consumers.sort_by(|a, b| a.group_name.cmp(&b.group_name));
        for consumer in &mut consumers {
            consumer
                .subscription_data_set
                .sort_by(|a, b| a.topic.cmp(&b.topic));
        }
        let body = Body {
            client_id: &self.client_id,
            consumer_data_set: consumers,
            heartbeat_fingerprint: 0,
            producer_data_set: producers
                .into_iter()
                .map(|group_name| ProducerData { group_name })
                .collect(),
            without_sub: false,
        };
        // Plain structs of strings, numbers and vectors always serialize.
        serde_json::to_string(&body).unwrap_or_default()
    }
}

/// The iteration order of a Java `HashSet` holding `items` (inserted in this order, no
/// duplicates) whose `hashCode()` is `hash`: by bucket `(h ^ (h >>> 16)) & (capacity - 1)`,
/// then insertion order; capacity 16 doubling whenever the size passes 3/4 of it.
pub fn java_hash_set_order<T>(items: Vec<T>, hash: impl Fn(&T) -> i32) -> Vec<T> {
    let mut capacity: usize = 16;
    while items.len() > capacity * 3 / 4 {
        capacity *= 2;
    }
    let mut keyed: Vec<(usize, usize, T)> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let h = hash(&item) as u32;
            let spread = h ^ (h >> 16);
            (spread as usize & (capacity - 1), i, item)
        })
        .collect();
    keyed.sort_by_key(|(bucket, i, _)| (*bucket, *i));
    keyed.into_iter().map(|(_, _, item)| item).collect()
}
