//! ACK_MESSAGE (200051), BATCH_ACK_MESSAGE (200151) and CHANGE_MESSAGE_INVISIBLETIME (200053)
//! (RocketMQ's `AckMessageProcessor` and `ChangeInvisibleTimeProcessor`).
//!
//! An ack names its checkpoint by its receipt handle. An ack of a message still in flight
//! writes an ack record to the checkpoint's revive queue; one of a message no longer in
//! flight (acked before, brought back already, or never handed out) answers SUCCESS and
//! writes nothing, as it has nothing left to do. Under SYNC_FLUSH the answer waits until the
//! ack record is durable.

use super::super::{Broker, FlushDiskType, WaitingSend};
use super::checkpoints::CkKey;
use super::order::OrderAck;
use super::records::PopCheckPoint;
use crate::remoting::codes::response;
use crate::remoting::pop::{
    AckMessageRequestHeader, BatchAckMessageRequestBody, ChangeInvisibleTimeResponseHeader,
    ExtraInfo, ORDER_REVIVE_QUEUE_ID,
};
use crate::remoting::{HeaderError, RemotingCommand};
use crate::store::{CommitLogOffset, SegmentStorage};
use crate::ConnId;

/// Why an ack or change of invisible time names no message of this broker: `Err` is the
/// answer's code and remark.
type Refusal = (i32, String);

impl<S: SegmentStorage> Broker<S> {
    /// The checks an ack runs: the topic exists, the queue id is one of its queues, the
    /// offset lies in the queue (`past_end`: whether the queue's end itself counts, as for an
    /// ack but not a change of invisible time).
    fn ack_checks(
        &self,
        topic: &str,
        queue_id: i32,
        offset: i64,
        past_end: bool,
    ) -> Result<(), Refusal> {
        let Some(config) = self.topics.topics.get(topic) else {
            return Err((
                response::TOPIC_NOT_EXIST,
                format!("topic[{topic}] not exist, apply first please!"),
            ));
        };
        if queue_id < 0 || i64::from(queue_id) >= i64::from(config.read_queue_nums) {
            return Err((
                response::MESSAGE_ILLEGAL,
                format!(
                    "queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{}]",
                    config.read_queue_nums
                ),
            ));
        }
        let min = self.store.min_offset(topic, queue_id).0 as i64;
        let max = self.store.max_offset(topic, queue_id).0 as i64;
        if offset < min || offset > max || (!past_end && offset == max) {
            return Err((
                response::NO_MESSAGE,
                format!(
                    "offset is illegal, key:{topic}@{queue_id}, commit:{offset}, store:{min},{max}"
                ),
            ));
        }
        Ok(())
    }

    /// ACK_MESSAGE (200051). `Ok(None)`: answered once the ack is durable.
    pub(in crate::broker) fn handle_ack_message(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
    ) -> Result<Option<RemotingCommand>, HeaderError> {
        let h = AckMessageRequestHeader::parse(req)?;
        let handle = ExtraInfo::parse(&h.extra_info)?;
        if let Some(refused) = self.pop_write_refused() {
            return Ok(Some(RemotingCommand::response_to(
                req,
                response::SERVICE_NOT_AVAILABLE,
                Some(refused),
            )));
        }
        if let Err((code, remark)) = self.ack_checks(&h.topic, h.queue_id, h.offset, true) {
            return Ok(Some(RemotingCommand::response_to(req, code, Some(remark))));
        }
        if handle.revive_qid == ORDER_REVIVE_QUEUE_ID {
            return Ok(Some(self.ack_orderly(
                now_ms,
                req,
                &h.topic,
                &h.consumer_group,
                h.queue_id,
                h.offset,
                handle.pop_time_ms,
            )));
        }
        let key = CkKey {
            topic: h.topic.clone(),
            group: h.consumer_group.clone(),
            queue_id: h.queue_id,
            start_offset: handle.ck_start_offset,
            pop_time_ms: handle.pop_time_ms,
            broker_name: handle.broker_name.clone(),
        };
        let answer = RemotingCommand::response_to(req, response::SUCCESS, None);
        match self.write_ack(now_ms, &key, &[h.offset]) {
            Ok(Some(end)) => Ok(self.answer_when_durable(conn, req, answer, end)),
            Ok(None) => Ok(Some(answer)),
            Err(e) => Ok(Some(self.store_error_response(req, &e))),
        }
    }

    /// BATCH_ACK_MESSAGE (200151): every entry acks the offsets of its bit set.
    pub(in crate::broker) fn handle_batch_ack_message(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
    ) -> Result<Option<RemotingCommand>, HeaderError> {
        if req.body.is_empty() {
            return Ok(Some(RemotingCommand::response_to(
                req,
                response::NO_MESSAGE,
                Some("body is empty".to_owned()),
            )));
        }
        let body: BatchAckMessageRequestBody = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(e) => {
                return Ok(Some(RemotingCommand::response_to(
                    req,
                    response::SYSTEM_ERROR,
                    Some(format!("the batch ack body does not parse: {e}")),
                )))
            }
        };
        if body.acks.is_empty() {
            return Ok(Some(RemotingCommand::response_to(
                req,
                response::NO_MESSAGE,
                Some("no ack in the body".to_owned()),
            )));
        }
        if let Some(refused) = self.pop_write_refused() {
            return Ok(Some(RemotingCommand::response_to(
                req,
                response::SERVICE_NOT_AVAILABLE,
                Some(refused),
            )));
        }
        let broker_name = body
            .broker_name
            .clone()
            .unwrap_or_else(|| self.config.broker_name.clone());
        let mut last_end = None;
        for entry in &body.acks {
            let topic = entry.retry.real_topic(&entry.topic, &entry.consumer_group);
            if !self.topics.topics.contains_key(&topic) {
                continue;
            }
            let min = self.store.min_offset(&topic, entry.queue_id).0 as i64;
            let max = self.store.max_offset(&topic, entry.queue_id).0 as i64;
            let offsets: Vec<i64> = entry
                .offsets()
                .into_iter()
                .filter(|o| *o >= min && *o <= max)
                .collect();
            if entry.revive_qid == ORDER_REVIVE_QUEUE_ID {
                for offset in offsets {
                    self.ack_orderly_offset(
                        now_ms,
                        &topic,
                        &entry.consumer_group,
                        entry.queue_id,
                        offset,
                        entry.pop_time_ms,
                    );
                }
                continue;
            }
            let key = CkKey {
                topic,
                group: entry.consumer_group.clone(),
                queue_id: entry.queue_id,
                start_offset: entry.start_offset,
                pop_time_ms: entry.pop_time_ms,
                broker_name: broker_name.clone(),
            };
            match self.write_ack(now_ms, &key, &offsets) {
                Ok(Some(end)) => last_end = Some(end),
                Ok(None) => {}
                Err(e) => return Ok(Some(self.store_error_response(req, &e))),
            }
        }
        let answer = RemotingCommand::response_to(req, response::SUCCESS, None);
        match last_end {
            Some(end) => Ok(self.answer_when_durable(conn, req, answer, end)),
            None => Ok(Some(answer)),
        }
    }

    /// Under SYNC_FLUSH, holds an answer until the CommitLog is durable up to `end` (its ack
    /// or checkpoint records; one group commit covers every waiting answer, as for sends).
    pub(super) fn answer_when_durable(
        &mut self,
        conn: ConnId,
        req: &RemotingCommand,
        answer: RemotingCommand,
        end: u64,
    ) -> Option<RemotingCommand> {
        if self.config.flush_disk_type != FlushDiskType::SyncFlush || req.is_oneway() {
            self.pop_written();
            return Some(answer);
        }
        self.waiting_sends.push(WaitingSend {
            end: CommitLogOffset(end),
            conn,
            response: answer,
            durable_needed: true,
            replica_deadline_ms: None,
            replica_failed: false,
        });
        self.release_durable_sends();
        self.request_sync_if_idle();
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn ack_orderly(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
        topic: &str,
        group: &str,
        queue_id: i32,
        offset: i64,
        pop_time_ms: i64,
    ) -> RemotingCommand {
        match self.ack_orderly_offset(now_ms, topic, group, queue_id, offset, pop_time_ms) {
            OrderAck::NotInBatch => RemotingCommand::response_to(
                req,
                response::MESSAGE_ILLEGAL,
                Some(format!(
                    "offset {offset} is not in the batch popped at {pop_time_ms} from {topic}@{queue_id}"
                )),
            ),
            OrderAck::Commit(_) | OrderAck::Ignored => {
                RemotingCommand::response_to(req, response::SUCCESS, None)
            }
        }
    }

    /// An orderly ack: below the committed offset it is old news; otherwise the batch's first
    /// unacked offset becomes the group's, and a consumer held on the queue may take it.
    fn ack_orderly_offset(
        &mut self,
        now_ms: u64,
        topic: &str,
        group: &str,
        queue_id: i32,
        offset: i64,
        pop_time_ms: i64,
    ) -> OrderAck {
        if self
            .offsets
            .query(topic, group, queue_id)
            .is_some_and(|committed| offset < committed)
        {
            return OrderAck::Ignored;
        }
        let result = self
            .pop
            .order
            .ack(topic, group, queue_id, offset, pop_time_ms);
        if let OrderAck::Commit(next) = result {
            let written = self.store.written_offset().0;
            self.offsets
                .commit_when_durable(topic, group, queue_id, next, written);
            if !self
                .pop
                .order
                .blocked(topic, group, queue_id, now_ms as i64, None)
            {
                self.wake_held_pops(now_ms, topic, queue_id);
            }
        }
        result
    }

    /// CHANGE_MESSAGE_INVISIBLETIME (200053): the message stays invisible for
    /// `invisibleTime` from now. A new checkpoint holds it (its handle is built from this
    /// answer's `popTime`, `invisibleTime`, `reviveQid`), then the old one is acked.
    pub(in crate::broker) fn handle_change_invisible_time(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
    ) -> Result<Option<RemotingCommand>, HeaderError> {
        let h = AckMessageRequestHeader::parse(req)?;
        let invisible_time_ms: i64 = req.ext_num("invisibleTime")?;
        let handle = ExtraInfo::parse(&h.extra_info)?;
        let refuse = |code: i32, remark: String| {
            let mut answer = RemotingCommand::response_to(req, code, Some(remark));
            ChangeInvisibleTimeResponseHeader::default().write_to(&mut answer);
            Ok(Some(answer))
        };
        if let Some(refused) = self.pop_write_refused() {
            return refuse(response::SERVICE_NOT_AVAILABLE, refused);
        }
        if invisible_time_ms < 0 {
            return refuse(
                response::INVALID_PARAMETER,
                format!("invisibleTime {invisible_time_ms} must not be negative"),
            );
        }
        if let Err((code, remark)) = self.ack_checks(&h.topic, h.queue_id, h.offset, false) {
            return refuse(code, remark);
        }
        if handle.revive_qid == ORDER_REVIVE_QUEUE_ID {
            let committed = self.offsets.query(&h.topic, &h.consumer_group, h.queue_id);
            let mut answer = RemotingCommand::response_to(req, response::SUCCESS, None);
            if committed.is_some_and(|c| h.offset < c) {
                ChangeInvisibleTimeResponseHeader::default().write_to(&mut answer);
                return Ok(Some(answer));
            }
            let visible_at = now_ms as i64 + invisible_time_ms;
            let Some(pop_time) = self.pop.order.change_invisible(
                &h.topic,
                &h.consumer_group,
                h.queue_id,
                h.offset,
                handle.pop_time_ms,
                visible_at,
            ) else {
                return refuse(
                    response::NO_MESSAGE,
                    "the message is not in flight any more".to_owned(),
                );
            };
            ChangeInvisibleTimeResponseHeader {
                pop_time_ms: pop_time,
                invisible_time_ms: visible_at - pop_time,
                revive_qid: ORDER_REVIVE_QUEUE_ID,
            }
            .write_to(&mut answer);
            return Ok(Some(answer));
        }
        let old = CkKey {
            topic: h.topic.clone(),
            group: h.consumer_group.clone(),
            queue_id: h.queue_id,
            start_offset: handle.ck_start_offset,
            pop_time_ms: handle.pop_time_ms,
            broker_name: handle.broker_name.clone(),
        };
        if !self.pop.checkpoints.is_pending(&old, h.offset) {
            // RocketMQ would write the new checkpoint anyway and deliver the message twice.
            return refuse(
                response::NO_MESSAGE,
                format!(
                    "the message {}@{}@{} is not in flight under this handle any more: it was acknowledged or has been delivered again",
                    h.topic, h.queue_id, h.offset
                ),
            );
        }
        let revive_qid = self
            .pop
            .checkpoints
            .get(&old)
            .map_or(handle.revive_qid, |c| c.revive_qid);
        // The new checkpoint must not share the old one's key (a change in the millisecond
        // of the POP, for the first message of its read): its ack would close both.
        let mut pop_time_ms = now_ms as i64;
        while self
            .pop
            .checkpoints
            .get(&CkKey {
                start_offset: h.offset,
                pop_time_ms,
                ..old.clone()
            })
            .is_some()
        {
            pop_time_ms += 1;
        }
        let ck = PopCheckPoint {
            bit_map: 0,
            broker_name: Some(handle.broker_name.clone()),
            group: h.consumer_group.clone(),
            queue_offset_diff: vec![0],
            invisible_time_ms,
            num: 1,
            pop_time_ms,
            queue_id: h.queue_id,
            revive_time_ms: pop_time_ms + invisible_time_ms,
            revive_offset: 0,
            start_offset: h.offset,
            topic: h.topic.clone(),
        };
        if let Err(e) = self.write_checkpoint(now_ms, ck, revive_qid) {
            let mut answer = self.store_error_response(req, &e);
            ChangeInvisibleTimeResponseHeader::default().write_to(&mut answer);
            return Ok(Some(answer));
        }
        let end = match self.write_ack(now_ms, &old, &[h.offset]) {
            Ok(end) => end.unwrap_or_else(|| self.store.written_offset().0),
            Err(e) => {
                let mut answer = self.store_error_response(req, &e);
                ChangeInvisibleTimeResponseHeader::default().write_to(&mut answer);
                return Ok(Some(answer));
            }
        };
        let mut answer = RemotingCommand::response_to(req, response::SUCCESS, None);
        ChangeInvisibleTimeResponseHeader {
            pop_time_ms,
            invisible_time_ms,
            revive_qid,
        }
        .write_to(&mut answer);
        Ok(self.answer_when_durable(conn, req, answer, end))
    }
}
