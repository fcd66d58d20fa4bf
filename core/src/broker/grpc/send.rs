//! SendMessage: each message written as a SEND_MESSAGE_V2 on the client's virtual connection.
//!
//! The mapping follows RocketMQ's proxy (`SendMessageActivity`): the client's message id becomes
//! `UNIQ_KEY` (and is returned unchanged), the tag `TAGS`, the keys `KEYS` (space-joined), the
//! message group the sharding key, a delivery timestamp `TIMER_DELIVER_MS` (the broker's timer
//! wheel), and a TRANSACTION message a half message (`TRAN_MSG`) whose producer group is its
//! topic. The checks and their codes are the proxy's too, with two differences:
//! * an empty body is BAD_REQUEST rather than MESSAGE_BODY_EMPTY, a code the Rust 5.0.0 client
//!   does not know (it panics on unknown codes);
//! * each message of a call is checked and sent on its own, so one bad message fails its own
//!   entry only (the proxy fails the whole call). The call's status is then the one code all
//!   entries share, or MULTIPLE_RESULTS when they differ, as the proxy sums them up.
//!
//! Queues: a FIFO message goes to the client's queue when that queue is writable (every client
//! picks it from the message group, so one group keeps one queue), else to a stable hash of its
//! group; others go to the client's queue when writable, else the broker picks one.

use std::collections::BTreeMap;

use super::message::{ms_of_timestamp, wrap_namespace, SHARDING_KEY, TIMER_DELIVER_MS};
use super::route::accepted_message_types;
use super::status::{of_remoting, status};
use super::transaction::encode_transaction_id;
use super::v2::{self, Code};
use super::{CallId, ClientRef, GrpcReply, Pending, PendingKind};
use crate::broker::Broker;
use crate::client::requests::send_message;
use crate::message::{decode_offset_msg_id, keys, sys_flag, tag_hash_code, Properties};
use crate::remoting::codes::response;
use crate::remoting::headers::SendMessageRequestHeader;
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;
use crate::topic::{perm, validate_topic_name};

/// A delivery timestamp may be at most this far ahead (the proxy's `maxDelayTimeMills`).
pub const MAX_DELAY_MS: i64 = 24 * 3600 * 1000;
/// A message group must be shorter than this (the proxy's `maxMessageGroupSize`).
pub const MAX_MESSAGE_GROUP_BYTES: usize = 64;
/// At most this many user properties (the proxy's `userPropertyMaxNum`).
pub const MAX_USER_PROPERTIES: usize = 128;
/// User properties, tag and keys together at most this large (the proxy's
/// `maxUserPropertySize`).
pub const MAX_USER_PROPERTY_BYTES: usize = 16 * 1024;

/// What one SEND_MESSAGE_V2 of a call waits for.
#[derive(Debug)]
pub(crate) struct SendPending {
    /// The message's index in the request.
    pub(crate) index: usize,
    /// The client's message id, returned unchanged.
    pub(crate) message_id: String,
    /// A half message: its answer carries a transaction id.
    pub(crate) transactional: bool,
}

/// A SendMessage call's results so far.
#[derive(Debug, Default)]
pub(crate) struct SendCall {
    pub(crate) entries: Vec<Option<v2::SendResultEntry>>,
}

/// A message ready to be written: the remoting header and body.
struct Prepared {
    header: SendMessageRequestHeader,
    body: Vec<u8>,
    transactional: bool,
}

/// The failed entry of a message.
fn failed(code: Code, message: impl Into<String>, message_id: &str) -> v2::SendResultEntry {
    v2::SendResultEntry {
        status: Some(status(code, message)),
        message_id: message_id.to_owned(),
        ..Default::default()
    }
}

/// Whether a text holds a control character (the proxy refuses them in tags, keys, groups and
/// properties).
fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// The message type a message is sent as, from what it carries (the rule of RocketMQ's
/// `TopicMessageType.parseFromMessageProperty`: transaction before delay before FIFO).
fn sent_type(sys: &v2::SystemProperties) -> v2::MessageType {
    if sys.message_type == v2::MessageType::Transaction as i32 {
        v2::MessageType::Transaction
    } else if sys.delivery_timestamp.is_some() {
        v2::MessageType::Delay
    } else if sys.message_group.as_deref().is_some_and(|g| !g.is_empty()) {
        v2::MessageType::Fifo
    } else {
        v2::MessageType::Normal
    }
}

impl<S: SegmentStorage> Broker<S> {
    pub(super) fn grpc_send_message(
        &mut self,
        now_ms: u64,
        call: CallId,
        client: &ClientRef,
        request: v2::SendMessageRequest,
    ) {
        if request.messages.is_empty() {
            // The proxy's answer to a call with no message.
            self.gateway.reply(
                call,
                GrpcReply::SendMessage(v2::SendMessageResponse {
                    status: Some(status(Code::MessageCorrupted, "no message to send")),
                    entries: Vec::new(),
                }),
            );
            return;
        }
        let count = request.messages.len();
        let mut prepared = Vec::with_capacity(count);
        let mut entries = Vec::with_capacity(count);
        for message in &request.messages {
            let message_id = message
                .system_properties
                .as_ref()
                .map(|p| p.message_id.clone())
                .unwrap_or_default();
            match self.grpc_prepare_send(now_ms, client, message) {
                Ok(p) => {
                    entries.push(None);
                    prepared.push(Some((p, message_id)));
                }
                Err(entry) => {
                    entries.push(Some(entry));
                    prepared.push(None);
                }
            }
        }
        self.gateway.sends.insert(call, SendCall { entries });
        for (index, p) in prepared.into_iter().enumerate() {
            let Some((p, message_id)) = p else {
                continue;
            };
            if p.transactional && self.grpc_add_producer_topic(&client.key, &p.header.topic) {
                // The broker asks a producer of group = topic about an orphaned half message:
                // this client becomes one before its first half message is stored.
                self.grpc_register(now_ms, &client.key);
            }
            let command = send_message(&p.header, p.body.into());
            self.grpc_submit(
                now_ms,
                client.conn,
                command,
                Pending {
                    call: Some(call),
                    what: PendingKind::Send(SendPending {
                        index,
                        message_id,
                        transactional: p.transactional,
                    }),
                },
            );
        }
        self.grpc_send_finish(call);
    }

    /// Adds a topic to a client's producer topics; whether it is new.
    fn grpc_add_producer_topic(&mut self, key: &str, topic: &str) -> bool {
        self.gateway
            .clients
            .get_mut(key)
            .is_some_and(|c| c.producer_topics.insert(topic.to_owned()))
    }

    /// Checks one message and builds its SEND_MESSAGE_V2, or the failed entry.
    fn grpc_prepare_send(
        &self,
        now_ms: u64,
        client: &ClientRef,
        message: &v2::Message,
    ) -> Result<Prepared, v2::SendResultEntry> {
        let default_sys = v2::SystemProperties::default();
        let sys = message.system_properties.as_ref().unwrap_or(&default_sys);
        let id = sys.message_id.as_str();
        let Some(topic) = message.topic.as_ref().filter(|t| !t.name.is_empty()) else {
            return Err(failed(Code::IllegalTopic, "the message names no topic", id));
        };
        if let Err(reason) = validate_topic_name(&topic.name) {
            return Err(failed(Code::IllegalTopic, reason, id));
        }
        let topic = wrap_namespace(topic, &client.meta.namespace);
        if message.body.is_empty() {
            return Err(failed(Code::BadRequest, "message body cannot be empty", id));
        }
        let max_body = self.store.config().max_message_size_bytes as usize;
        if message.body.len() > max_body {
            return Err(failed(
                Code::MessageBodyTooLarge,
                format!(
                    "message body of {} bytes exceeds the max {max_body}",
                    message.body.len()
                ),
                id,
            ));
        }
        if message.user_properties.len() > MAX_USER_PROPERTIES {
            return Err(failed(
                Code::MessagePropertiesTooLarge,
                format!("too many user properties, max is {MAX_USER_PROPERTIES}"),
                id,
            ));
        }
        // Sorted, so the stored properties never depend on a hash order.
        let user: BTreeMap<&String, &String> = message.user_properties.iter().collect();
        let mut user_bytes = 0usize;
        for (k, v) in &user {
            if super::message::is_reserved_key(k) {
                return Err(failed(
                    Code::IllegalMessagePropertyKey,
                    format!("property is used by system: {k}"),
                    id,
                ));
            }
            if k.is_empty() || has_control(k) || has_control(v) {
                return Err(failed(
                    Code::IllegalMessagePropertyKey,
                    format!("property {k:?} is empty or holds a control character"),
                    id,
                ));
            }
            user_bytes += k.len() + v.len();
        }
        if let Some(tag) = sys.tag.as_deref() {
            if !tag.is_empty() && (tag.trim().is_empty() || tag.contains('|') || has_control(tag)) {
                return Err(failed(
                    Code::IllegalMessageTag,
                    "tag cannot be blank nor contain '|' or a control character",
                    id,
                ));
            }
            user_bytes += tag.len();
        }
        for key in &sys.keys {
            if !key.is_empty() && (key.trim().is_empty() || has_control(key)) {
                return Err(failed(
                    Code::IllegalMessageKey,
                    "key cannot be blank nor contain a control character",
                    id,
                ));
            }
            user_bytes += key.len();
        }
        if user_bytes > MAX_USER_PROPERTY_BYTES {
            return Err(failed(
                Code::MessagePropertiesTooLarge,
                format!("the user properties, tag and keys exceed {MAX_USER_PROPERTY_BYTES} bytes"),
                id,
            ));
        }
        if id.trim().is_empty() {
            return Err(failed(
                Code::IllegalMessageId,
                "message id cannot be empty",
                id,
            ));
        }
        let group = sys.message_group.as_deref().filter(|g| !g.is_empty());
        if let Some(group) = group {
            if group.trim().is_empty()
                || group.len() >= MAX_MESSAGE_GROUP_BYTES
                || has_control(group)
            {
                return Err(failed(
                    Code::IllegalMessageGroup,
                    format!(
                        "message group must be shorter than {MAX_MESSAGE_GROUP_BYTES} bytes, \
                         not blank, without control characters"
                    ),
                    id,
                ));
            }
        }
        let deliver_ms = sys.delivery_timestamp.as_ref().map(ms_of_timestamp);
        if let Some(at) = deliver_ms {
            if at - now_ms as i64 > MAX_DELAY_MS {
                return Err(failed(
                    Code::IllegalDeliveryTime,
                    format!("the delivery time is more than {MAX_DELAY_MS} ms ahead"),
                    id,
                ));
            }
        }
        let kind = sent_type(sys);
        let config = self.topics.topics.get(&topic);
        if let Some(config) = config {
            // The proxy's `DefaultTopicMessageTypeValidator`: a message must be of the topic's
            // declared type (a MIXED topic, or one declaring none, takes all four).
            let accepted = accepted_message_types(config).unwrap_or_default();
            if !accepted.contains(&kind) {
                return Err(failed(
                    Code::MessagePropertyConflictWithType,
                    format!(
                        "TopicMessageType validate failed, the topic {topic} accepts {:?}, \
                         but the message is {}",
                        accepted.iter().map(|t| t.as_str_name()).collect::<Vec<_>>(),
                        kind.as_str_name()
                    ),
                    id,
                ));
            }
        }

        let mut properties = Properties::new();
        for (k, v) in user {
            properties.insert(k, v.clone());
        }
        if let Some(tag) = sys.tag.as_deref().filter(|t| !t.is_empty()) {
            properties.insert(keys::TAGS, tag);
        }
        let joined: Vec<&str> = sys
            .keys
            .iter()
            .map(String::as_str)
            .filter(|k| !k.is_empty())
            .collect();
        if !joined.is_empty() {
            properties.insert(keys::KEYS, joined.join(" "));
        }
        properties.insert(keys::UNIQ_KEY, id);
        if let Some(group) = group {
            properties.insert(SHARDING_KEY, group);
        }
        if let Some(at) = deliver_ms {
            properties.insert(TIMER_DELIVER_MS, at.to_string());
        }
        let transactional = kind == v2::MessageType::Transaction;
        let mut flags = 0;
        if transactional {
            properties.insert(keys::TRAN_MSG, "true");
            properties.insert(keys::PGROUP, topic.as_str());
            flags |= sys_flag::TRANSACTION_PREPARED;
        }
        if sys.body_encoding == v2::Encoding::Gzip as i32 {
            flags |= sys_flag::COMPRESSED;
        }
        let queue_id = config.map_or(-1, |config| {
            let writable = config.perm & perm::WRITE != 0 && config.write_queue_nums > 0;
            let client_queue =
                (writable && sys.queue_id >= 0 && (sys.queue_id as u32) < config.write_queue_nums)
                    .then_some(sys.queue_id);
            match (client_queue, group) {
                (Some(q), _) => q,
                (None, Some(group)) if writable => {
                    tag_hash_code(group).rem_euclid(i64::from(config.write_queue_nums)) as i32
                }
                _ => -1,
            }
        });
        let born_timestamp_ms = sys
            .born_timestamp
            .as_ref()
            .map(ms_of_timestamp)
            .filter(|&ms| ms > 0)
            .unwrap_or(now_ms as i64);
        Ok(Prepared {
            header: SendMessageRequestHeader {
                producer_group: topic.clone(),
                topic,
                default_topic: crate::topic::AUTO_CREATE_TOPIC_KEY.to_owned(),
                default_topic_queue_nums: 4,
                queue_id,
                sys_flag: flags,
                born_timestamp_ms,
                flag: 0,
                properties: Some(properties.encode()),
                reconsume_times: None,
                unit_mode: false,
                max_reconsume_times: None,
                batch: false,
                broker_name: None,
            },
            body: message.body.clone(),
            transactional,
        })
    }

    pub(super) fn grpc_send_answered(
        &mut self,
        _now_ms: u64,
        call: CallId,
        pending: SendPending,
        response: RemotingCommand,
    ) {
        let mut entry = v2::SendResultEntry {
            status: Some(of_remoting(response.code, response.remark.as_deref())),
            message_id: pending.message_id,
            ..Default::default()
        };
        if response.code == response::SUCCESS {
            entry.offset = response
                .ext("queueOffset")
                .and_then(|o| o.parse().ok())
                .unwrap_or_default();
            if pending.transactional {
                // Everything EndTransaction needs travels in the id: the half message's
                // CommitLog offset (from the offset message id) and its queue offset.
                let commit_log_offset = response
                    .ext("msgId")
                    .and_then(|id| decode_offset_msg_id(id).ok())
                    .map(|(_, offset)| offset);
                match commit_log_offset {
                    Some(offset) => {
                        entry.transaction_id = encode_transaction_id(offset, entry.offset as u64);
                    }
                    None => {
                        entry.status = Some(status(
                            Code::InternalServerError,
                            "the broker's answer names no half message offset",
                        ));
                    }
                }
            }
        }
        if let Some(send) = self.gateway.sends.get_mut(&call) {
            if let Some(slot) = send.entries.get_mut(pending.index) {
                *slot = Some(entry);
            }
        }
        self.grpc_send_finish(call);
    }

    /// Answers a SendMessage call once every message has its entry.
    fn grpc_send_finish(&mut self, call: CallId) {
        let done = self
            .gateway
            .sends
            .get(&call)
            .is_some_and(|s| s.entries.iter().all(Option::is_some));
        if !done {
            return;
        }
        let Some(send) = self.gateway.sends.remove(&call) else {
            return;
        };
        let entries: Vec<v2::SendResultEntry> = send.entries.into_iter().flatten().collect();
        let mut codes: Vec<i32> = entries
            .iter()
            .map(|e| e.status.as_ref().map_or(0, |s| s.code))
            .collect();
        codes.dedup();
        let top = if codes.len() == 1 {
            let first = entries[0].status.clone().unwrap_or_default();
            if first.code == Code::Ok as i32 {
                status(Code::Ok, "OK")
            } else {
                first
            }
        } else {
            status(Code::MultipleResults, "MULTIPLE_RESULTS")
        };
        self.gateway.reply(
            call,
            GrpcReply::SendMessage(v2::SendMessageResponse {
                status: Some(top),
                entries,
            }),
        );
    }
}
