//! Request–reply (RocketMQ 4.6+): SEND_REPLY_MESSAGE (324) and SEND_REPLY_MESSAGE_V2 (325), and
//! PUSH_REPLY_MESSAGE_TO_CLIENT (326) to the requester.
//!
//! A requester sends an ordinary message carrying `CORRELATION_ID`, `REPLY_TO_CLIENT` (its client
//! id) and `TTL`; the broker stamps `CLUSTER` on it. The consumer that handles it builds a reply
//! for `<CLUSTER>_REPLY_TOPIC` with the same properties and `MSG_TYPE=reply`, which its producer
//! sends with code 324/325. The broker then, as Apache's `ReplyMessageProcessor`:
//!
//! ```text
//! replier ──325──▶ broker: checks as a send (topic, permission, queue id)
//!                   │ storeReplyMessageEnable: stores it in <cluster>_REPLY_TOPIC
//!                   ├──326──▶ the requester's connection (found by REPLY_TO_CLIENT among the
//!                   │         producers' heartbeats), properties + PUSH_REPLY_TIME
//!                   │◀── its answer (or 10 s, or the connection closes)
//! replier ◀─────────┘ SUCCESS (msgId "0", queue offset 0 unless stored), or SYSTEM_ERROR
//!                     "push reply message to <id>fail." / "... channel of <id> not found."
//! ```
//!
//! The reply topic is created at start with one queue (as Apache's TopicConfigManager does), so
//! a replier's producer finds its route. The stored copy does not wait for a SYNC_FLUSH group
//! commit: the answer says whether the requester got the reply, not whether it is durable.
//! Unlike Apache, `bornHost` and `storeHost` in the push header are plain `ip:port` (Java
//! writes `InetSocketAddress.toString()`, `/ip:port`, which Java clients tolerate and the
//! Rust client refuses).

use std::collections::BTreeMap;

use super::send::REGION_ID;
use super::topics::validate_topic;
use super::{Broker, BrokerOutput, FlushDiskType};
use crate::message::{MessageRecord, Properties};
use crate::remoting::codes::{request, response};
use crate::remoting::headers::{SendMessageRequestHeader, SendMessageResponseHeader};
use crate::remoting::{HeaderError, RemotingCommand};
use crate::store::SegmentStorage;
use crate::topic::{perm, TopicConfig};
use crate::ConnId;

/// `<brokerClusterName>` + this: where replies are stored (`MixAll.REPLY_TOPIC_POSTFIX`).
pub const REPLY_TOPIC_SUFFIX: &str = "_REPLY_TOPIC";
/// How long the broker waits for the requester to answer a push (Apache's `Broker2Client`).
pub(super) const PUSH_REPLY_TIMEOUT_MS: u64 = 10_000;

/// Message properties of request–reply (`MessageConst`).
pub mod properties {
    pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
    pub const CORRELATION_ID: &str = "CORRELATION_ID";
    pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
    pub const MSG_TYPE: &str = "MSG_TYPE";
}

/// A reply pushed to its requester, waiting for the requester's answer.
#[derive(Debug)]
struct PendingReply {
    /// The replier's connection and request: answered when the push completes.
    replier: ConnId,
    request: RemotingCommand,
    requester: ConnId,
    requester_id: String,
    /// The answer's header once the push succeeded (with the stored copy's id and offset).
    header: SendMessageResponseHeader,
    deadline_ms: u64,
}

/// Pushes in flight, by the opaque of the PUSH_REPLY_MESSAGE_TO_CLIENT request.
#[derive(Debug, Default)]
pub(super) struct PendingReplies {
    by_opaque: BTreeMap<i32, PendingReply>,
}

impl PendingReplies {
    pub fn earliest_deadline_ms(&self) -> Option<u64> {
        self.by_opaque.values().map(|p| p.deadline_ms).min()
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// `<cluster>_REPLY_TOPIC`.
    pub(super) fn reply_topic(&self) -> String {
        format!("{}{REPLY_TOPIC_SUFFIX}", self.config.broker_cluster_name)
    }

    /// The reply topic exists from the start, with one queue, read and write.
    pub(super) fn ensure_reply_topic(&mut self, now_ms: u64) {
        let topic = self.reply_topic();
        if validate_topic(&topic).is_ok() && !self.topics.topics.contains_key(&topic) {
            self.add_start_topic(now_ms, TopicConfig::new(topic, 1));
        }
    }

    /// SEND_REPLY_MESSAGE (324) and SEND_REPLY_MESSAGE_V2 (325). `Ok(None)`: answered once the
    /// push to the requester completes.
    pub(super) fn handle_send_reply(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
    ) -> Result<Option<RemotingCommand>, HeaderError> {
        let h = if req.code == request::SEND_REPLY_MESSAGE_V2 {
            SendMessageRequestHeader::parse_v2(req)?
        } else {
            SendMessageRequestHeader::parse_v1(req)?
        };
        let refuse =
            |code, remark: String| Ok(Some(RemotingCommand::response_to(req, code, Some(remark))));
        // The send checks (Apache's msgCheck): topic name, existence or auto-creation, write
        // permission, queue id.
        if let Err(reason) = validate_topic(&h.topic) {
            return refuse(response::INVALID_PARAMETER, reason);
        }
        let topic = match self.topic_for_send(
            now_ms,
            &h.topic,
            &h.default_topic,
            h.default_topic_queue_nums,
        ) {
            Ok(t) => t,
            Err((code, remark)) => return refuse(code, remark),
        };
        if topic.perm & perm::WRITE == 0 {
            return refuse(
                response::NO_PERMISSION,
                format!("the topic[{}] sending message is forbidden", h.topic),
            );
        }
        let queue_limit = i64::from(topic.write_queue_nums.max(topic.read_queue_nums));
        if i64::from(h.queue_id) >= queue_limit {
            return refuse(
                response::INVALID_PARAMETER,
                format!(
                    "request queueId[{}] is illegal, topic: {} writeQueueNums: {} readQueueNums: {}",
                    h.queue_id, h.topic, topic.write_queue_nums, topic.read_queue_nums
                ),
            );
        }
        let queue_id = if h.queue_id < 0 {
            self.rng.below(u64::from(topic.write_queue_nums.max(1))) as i32
        } else {
            h.queue_id
        };
        let properties = Properties::parse(h.properties.as_deref().unwrap_or(""));

        let mut header = SendMessageResponseHeader {
            // Apache answers "0" when nothing was stored: clients decode the id.
            msg_id: "0".to_owned(),
            queue_id,
            queue_offset: 0,
            transaction_id: None,
            msg_region: REGION_ID.to_owned(),
            trace_on: true,
        };
        if self.config.store_reply_message_enable {
            self.store_reply(now_ms, conn, req, &h, queue_id, &properties, &mut header);
        }

        let requester_id = properties
            .get(properties::REPLY_TO_CLIENT)
            .map(str::to_owned);
        let Some(requester_id) = requester_id else {
            return Ok(Some(reply_response(
                req,
                Err(format!(
                    "reply message properties[{}] is null",
                    properties::REPLY_TO_CLIENT
                )),
                header,
            )));
        };
        let Some(requester) = self.producer_connection_of(&requester_id) else {
            return Ok(Some(reply_response(
                req,
                Err(format!(
                    "push reply message fail, channel of <{requester_id}> not found."
                )),
                header,
            )));
        };
        let mut pushed = properties;
        pushed.insert(properties::PUSH_REPLY_TIME, now_ms.to_string());
        let opaque = self.next_opaque();
        let mut push = RemotingCommand::request(request::PUSH_REPLY_MESSAGE_TO_CLIENT)
            .with_ext("producerGroup", h.producer_group.as_str())
            .with_ext("topic", h.topic.as_str())
            .with_ext("defaultTopic", h.default_topic.as_str())
            .with_ext("defaultTopicQueueNums", h.default_topic_queue_nums)
            .with_ext("queueId", h.queue_id)
            .with_ext("sysFlag", h.sys_flag)
            .with_ext("bornTimestamp", h.born_timestamp_ms)
            .with_ext("flag", h.flag)
            .with_ext("properties", pushed.encode())
            .with_ext("reconsumeTimes", h.reconsume_times.unwrap_or(0))
            .with_ext("unitMode", h.unit_mode)
            .with_ext("bornHost", self.born_host(conn).to_string())
            .with_ext("storeHost", self.store_host().to_string())
            .with_ext("storeTimestamp", now_ms)
            .with_body(req.body.clone());
        push.opaque = opaque;
        self.outputs.push_back(BrokerOutput::Send {
            conn: requester,
            command: push,
        });
        self.pending_replies.by_opaque.insert(
            opaque,
            PendingReply {
                replier: conn,
                request: req.clone(),
                requester,
                requester_id,
                header,
                deadline_ms: now_ms.saturating_add(PUSH_REPLY_TIMEOUT_MS),
            },
        );
        Ok(None)
    }

    /// Stores the reply in its topic (`storeReplyMessageEnable`), as it came: Apache adds
    /// nothing to a reply's properties. A failure is only logged by Apache: the answer still
    /// says whether the push worked.
    #[allow(clippy::too_many_arguments)]
    fn store_reply(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
        h: &SendMessageRequestHeader,
        queue_id: i32,
        properties: &Properties,
        header: &mut SendMessageResponseHeader,
    ) {
        if self.durability_failure.is_some() || self.disk_full_response(req).is_some() {
            return;
        }
        let record = MessageRecord {
            queue_id,
            flag: h.flag,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: h.sys_flag,
            born_timestamp_ms: h.born_timestamp_ms,
            born_host: self.born_host(conn),
            store_timestamp_ms: now_ms as i64,
            store_host: self.store_host(),
            reconsume_times: h.reconsume_times.unwrap_or(0),
            prepared_transaction_offset: 0,
            body: req.body.clone(),
            topic: h.topic.clone(),
            properties: properties.clone(),
        };
        let Ok(put) = self.store.put(record) else {
            return;
        };
        header.msg_id = super::ids::offset_msg_id(self.store_host(), put.physical_offset.0);
        header.queue_offset = put.queue_offset.0 as i64;
        self.wake_held_pulls(now_ms, &h.topic, queue_id);
        match self.config.flush_disk_type {
            FlushDiskType::AsyncFlush => self.after_async_put(),
            FlushDiskType::SyncFlush => self.request_sync_if_idle(),
        }
    }

    /// The connection of the producer client `client_id` that sent the latest heartbeat
    /// (Apache's `ProducerManager.findChannel`).
    fn producer_connection_of(&self, client_id: &str) -> Option<ConnId> {
        self.clients
            .producers
            .values()
            .flat_map(|channels| channels.iter())
            .filter(|(_, c)| c.client_id == client_id)
            .max_by_key(|(conn, c)| (c.last_update_ms, **conn))
            .map(|(conn, _)| *conn)
    }

    /// A response on `conn`: the answer to a push of ours, if it is one.
    pub(super) fn handle_client_response(&mut self, conn: ConnId, command: &RemotingCommand) {
        let ours = self
            .pending_replies
            .by_opaque
            .get(&command.opaque)
            .is_some_and(|p| p.requester == conn);
        if !ours {
            // Answers to our own oneway notifications never come; anything else is stray.
            return;
        }
        if let Some(p) = self.pending_replies.by_opaque.remove(&command.opaque) {
            let outcome = if command.code == response::SUCCESS {
                Ok(())
            } else {
                Err(format!("push reply message to {}fail.", p.requester_id))
            };
            self.answer_reply(p, outcome);
        }
    }

    /// Pushes the requester did not answer in time fail.
    pub(super) fn expire_pending_replies(&mut self, now_ms: u64) {
        let expired: Vec<i32> = self
            .pending_replies
            .by_opaque
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(opaque, _)| *opaque)
            .collect();
        for opaque in expired {
            if let Some(p) = self.pending_replies.by_opaque.remove(&opaque) {
                let remark = format!("push reply message to {}fail.", p.requester_id);
                self.answer_reply(p, Err(remark));
            }
        }
    }

    /// A connection closed: pushes to it fail at once; replies from it need no answer.
    pub(super) fn drop_connection_replies(&mut self, conn: ConnId) {
        self.pending_replies
            .by_opaque
            .retain(|_, p| p.replier != conn);
        let failed: Vec<i32> = self
            .pending_replies
            .by_opaque
            .iter()
            .filter(|(_, p)| p.requester == conn)
            .map(|(opaque, _)| *opaque)
            .collect();
        for opaque in failed {
            if let Some(p) = self.pending_replies.by_opaque.remove(&opaque) {
                let remark = format!("push reply message to {}fail.", p.requester_id);
                self.answer_reply(p, Err(remark));
            }
        }
    }

    fn answer_reply(&mut self, p: PendingReply, outcome: Result<(), String>) {
        let response = reply_response(&p.request, outcome, p.header);
        self.reply(p.replier, &p.request, response);
    }
}

/// The replier's answer: SUCCESS with the header, or SYSTEM_ERROR with Apache's remark (and the
/// header only when the reply was stored, as Apache fills it then).
fn reply_response(
    req: &RemotingCommand,
    outcome: Result<(), String>,
    header: SendMessageResponseHeader,
) -> RemotingCommand {
    let stored = header.msg_id != "0";
    let (mut response, with_header) = match outcome {
        Ok(()) => (
            RemotingCommand::response_to(req, response::SUCCESS, None),
            true,
        ),
        Err(remark) => (
            RemotingCommand::response_to(req, response::SYSTEM_ERROR, Some(remark)),
            stored,
        ),
    };
    if with_header {
        header.write_to(&mut response);
    }
    response
}
