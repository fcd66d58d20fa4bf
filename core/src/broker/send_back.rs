//! CONSUMER_SEND_MSG_BACK (36): a consumer hands back a message it failed to consume, and the
//! broker stores a copy for redelivery through `%RETRY%<group>` or, once the message has been
//! reconsumed too often, parks it in `%DLQ%<group>`. Follows RocketMQ's
//! `AbstractSendMessageProcessor.consumerSendMsgBack`:
//!
//! 1. the subscription group (auto-created when allowed) must exist, else
//!    SUBSCRIPTION_GROUP_NOT_EXIST (26); a group with `retryQueueNums` 0 drops the message
//!    (SUCCESS);
//! 2. `%RETRY%<group>` is created with `retryQueueNums` queues, read-write (a unit-mode request
//!    marks it unit-sub); a retry topic that is not writable answers NO_PERMISSION (16);
//! 3. the original is read at the header's CommitLog `offset`; none there → SYSTEM_ERROR (1)
//!    "look message by offset failed, <offset>";
//! 4. the limit is the request's `maxReconsumeTimes` (clients ≥ V3_4_9) or the group's
//!    `retryMaxTimes`; `reconsumeTimes >= limit` or `delayLevel < 0` → `%DLQ%<group>` (one
//!    queue, read-write) with `DELAY=0`; otherwise `%RETRY%<group>` on a random retry queue with
//!    `DELAY = delayLevel`, or `3 + reconsumeTimes` when the request says 0 (10 s, 30 s, 1 min, …);
//! 5. the copy keeps body, flag, sysFlag, properties (tags, keys, UNIQ_KEY), born timestamp and
//!    host and store host; it gains `RETRY_TOPIC` = the original topic (unless already set),
//!    `ORIGIN_MESSAGE_ID` = the original's offset message id (unless already set), `WAIT=false`,
//!    and `reconsumeTimes + 1`.
//!
//! The copy is written with the same store put as an ordinary send, so whatever routes messages
//! carrying `DELAY` (the schedule topic) applies to it too.

use super::ids::offset_msg_id;
use super::Broker;
use crate::message::properties::PROPERTIES_LEN_MAX;
use crate::message::{keys, MessageRecord};
use crate::remoting::codes::response;
use crate::remoting::headers::ConsumerSendMsgBackRequestHeader;
use crate::remoting::{HeaderError, RemotingCommand};
use crate::store::{CommitLogOffset, SegmentStorage};
use crate::topic::{perm, DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX};

/// Queues of a `%DLQ%` topic (`DLQ_NUMS_PER_GROUP`).
const DLQ_QUEUE_NUMS: u32 = 1;
/// Clients older than V3_4_9 do not send a meaningful `maxReconsumeTimes`.
const MAX_RECONSUME_TIMES_MIN_VERSION: i32 = 121;
/// The delay level of a first retry; later retries add the reconsume count.
const FIRST_RETRY_DELAY_LEVEL: i32 = 3;
/// `TopicSysFlag.FLAG_UNIT_SUB`: a retry topic created for a unit-mode consumer.
const TOPIC_SYS_FLAG_UNIT_SUB: u32 = 0x2;

/// Where a sent-back message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum SendBackTarget {
    /// `%RETRY%<group>` after this delay level.
    Retry { delay_level: i32 },
    /// `%DLQ%<group>`, no delay.
    DeadLetter,
}

/// RocketMQ's choice between retry and dead letter for a message consumed `reconsume_times`
/// times so far.
pub(super) fn send_back_target(
    reconsume_times: i32,
    max_reconsume_times: i32,
    delay_level: i32,
) -> SendBackTarget {
    if reconsume_times >= max_reconsume_times || delay_level < 0 {
        SendBackTarget::DeadLetter
    } else if delay_level == 0 {
        SendBackTarget::Retry {
            delay_level: FIRST_RETRY_DELAY_LEVEL.saturating_add(reconsume_times),
        }
    } else {
        SendBackTarget::Retry { delay_level }
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// CONSUMER_SEND_MSG_BACK (36).
    pub(super) fn handle_consumer_send_msg_back(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let h = ConsumerSendMsgBackRequestHeader::parse(req)?;
        let reply = |code: i32, remark: Option<String>| -> Result<RemotingCommand, HeaderError> {
            Ok(RemotingCommand::response_to(req, code, remark))
        };
        let Some(group) = self.find_or_create_group(now_ms, &h.group) else {
            return reply(
                response::SUBSCRIPTION_GROUP_NOT_EXIST,
                Some(format!("subscription group not exist, {} ", h.group)),
            );
        };
        if let Some(reason) = &self.durability_failure {
            return reply(
                response::SERVICE_NOT_AVAILABLE,
                Some(format!(
                    "the store cannot make messages durable ({reason}); restart the broker once the disk is healthy"
                )),
            );
        }
        if group.retry_queue_nums <= 0 {
            // The group wants no retries: the failed message is dropped.
            return reply(response::SUCCESS, None);
        }
        let retry_topic = format!("{RETRY_GROUP_TOPIC_PREFIX}{}", h.group);
        let topic_sys_flag = if h.unit_mode {
            TOPIC_SYS_FLAG_UNIT_SUB
        } else {
            0
        };
        let retry_config = self.ensure_topic_for_send_back(
            now_ms,
            &retry_topic,
            group.retry_queue_nums as u32,
            perm::READ_WRITE,
            topic_sys_flag,
        );
        if retry_config.perm & perm::WRITE == 0 {
            return reply(
                response::NO_PERMISSION,
                Some(format!(
                    "the topic[{retry_topic}] sending message is forbidden"
                )),
            );
        }
        let original = u64::try_from(h.offset)
            .ok()
            .and_then(|offset| {
                self.store
                    .read_record(CommitLogOffset(offset))
                    .ok()
                    .flatten()
            })
            .and_then(|bytes| MessageRecord::decode(&bytes, false).ok());
        let Some(original) = original else {
            return reply(
                response::SYSTEM_ERROR,
                Some(format!("look message by offset failed, {}", h.offset)),
            );
        };

        let max_reconsume_times = match h.max_reconsume_times {
            Some(max) if req.version >= MAX_RECONSUME_TIMES_MIN_VERSION => max,
            _ => group.retry_max_times,
        };
        let mut properties = original.properties.clone();
        if properties.get(keys::RETRY_TOPIC).is_none() {
            properties.insert(keys::RETRY_TOPIC, original.topic.clone());
        }
        properties.insert(keys::WAIT, "false");
        let (topic, queue_id) =
            match send_back_target(original.reconsume_times, max_reconsume_times, h.delay_level) {
                SendBackTarget::DeadLetter => {
                    let dlq_topic = format!("{DLQ_GROUP_TOPIC_PREFIX}{}", h.group);
                    self.ensure_topic_for_send_back(
                        now_ms,
                        &dlq_topic,
                        DLQ_QUEUE_NUMS,
                        perm::READ_WRITE,
                        0,
                    );
                    properties.insert(keys::DELAY, "0");
                    let queue_id = self.rng.below(u64::from(DLQ_QUEUE_NUMS)) as i32;
                    (dlq_topic, queue_id)
                }
                SendBackTarget::Retry { delay_level } => {
                    properties.insert(keys::DELAY, delay_level.to_string());
                    let queues = retry_config.write_queue_nums.max(1);
                    (retry_topic, self.rng.below(u64::from(queues)) as i32)
                }
            };
        let keep_origin = properties
            .get(keys::ORIGIN_MESSAGE_ID)
            .is_some_and(|id| !id.trim().is_empty());
        if !keep_origin {
            let original_offset = u64::try_from(original.physical_offset).unwrap_or(0);
            properties.insert(
                keys::ORIGIN_MESSAGE_ID,
                offset_msg_id(original.store_host, original_offset),
            );
        }
        if properties.encode().len() > PROPERTIES_LEN_MAX {
            return reply(
                response::SYSTEM_ERROR,
                Some("PROPERTIES_SIZE_EXCEEDED".to_owned()),
            );
        }
        if let Some(refused) = self.disk_full_response(req) {
            return Ok(refused);
        }
        let original_topic = original
            .properties
            .get(keys::RETRY_TOPIC)
            .unwrap_or(&original.topic)
            .to_owned();
        let record = MessageRecord {
            queue_id,
            topic: topic.clone(),
            properties,
            queue_offset: 0,
            physical_offset: 0,
            store_timestamp_ms: now_ms as i64,
            reconsume_times: original.reconsume_times.saturating_add(1),
            prepared_transaction_offset: 0,
            ..original
        };
        // The same put as an ordinary send (send.rs), so delay routing applies here too.
        if let Err(e) = self.put_with_delay_routing(record) {
            return Ok(self.store_error_response(req, &e));
        }
        self.stats.on_send_back(now_ms, &original_topic, &h.group);
        if topic.starts_with(DLQ_GROUP_TOPIC_PREFIX) {
            self.metrics.on_dlq(&h.group, &original_topic);
        }
        self.wake_held_pulls(now_ms, &topic, queue_id);
        if self.config.flush_disk_type == super::FlushDiskType::AsyncFlush {
            self.after_async_put();
        }
        reply(response::SUCCESS, None)
    }
}
