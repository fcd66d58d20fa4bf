//! POP_MESSAGE (200050), PEEK_MESSAGE (200052), NOTIFICATION (200054) and POLLING_INFO
//! (200055), with long polling (RocketMQ's `PopMessageProcessor`, `PeekMessageProcessor`,
//! `NotificationProcessor`, `PollingInfoProcessor`, `PopLongPollingService`).
//!
//! A POP with `queueId` −1 visits the topic's readable queues from a random one, round robin,
//! and the group's POP retry topics: first in `popFromRetryProbability` percent of requests,
//! otherwise after the topic when it did not fill the batch. Each queue read writes a
//! checkpoint and moves the group's offset past what it read. Nothing found and `pollTime` >
//! 0: the request is held until a message arrives for its topic or `bornTime + pollTime`,
//! then run again (nothing found then: POLLING_TIMEOUT, 210).

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::super::clients::Subscription;
use super::super::Broker;
use super::records::PopCheckPoint;
use crate::message::MessageRecord;
use crate::remoting::codes::response;
use crate::remoting::pop::{
    encode_msg_offset_info, encode_start_offset_info, pop_retry_topic, ExtraInfo,
    NotificationRequestHeader, PopMessageRequestHeader, PopMessageResponseHeader, QueueKey,
    RetryFlag, INIT_MODE_MAX, POP_CK_PROPERTY, POP_MAX_MSG_NUMS,
};
use crate::remoting::{HeaderError, RemotingCommand};
use crate::store::{QueueOffset, SegmentStorage};
use crate::topic::{perm, TopicConfig};
use crate::ConnId;

/// A request answered more than this late (`now − bornTime − pollTime`) is answered
/// POLLING_TIMEOUT at once: its client has given up (`isTimeoutTooMuch`).
const BORN_TIME_SLACK_MS: i64 = 500;
/// A held request this close to its deadline is not held (`PopLongPollingService.polling`).
const HOLD_MARGIN_MS: i64 = 50;

/// A held POP or NOTIFICATION.
#[derive(Clone, Debug)]
pub struct HeldPop {
    pub conn: ConnId,
    pub request: RemotingCommand,
    pub deadline_ms: u64,
}

/// Held requests by (topic, group, queue id as sent: −1 for "any").
#[derive(Debug, Default)]
pub struct HeldPops {
    by_key: BTreeMap<(String, String, i32), VecDeque<HeldPop>>,
    total: usize,
}

impl HeldPops {
    pub fn earliest_deadline_ms(&self) -> Option<u64> {
        self.by_key
            .values()
            .flat_map(|q| q.iter().map(|h| h.deadline_ms))
            .min()
    }

    pub fn count(&self, topic: &str, group: &str, queue_id: i32) -> usize {
        self.by_key
            .get(&(topic.to_owned(), group.to_owned(), queue_id))
            .map_or(0, VecDeque::len)
    }

    fn push(&mut self, key: (String, String, i32), held: HeldPop) {
        self.by_key.entry(key).or_default().push_back(held);
        self.total += 1;
    }

    /// The oldest held request of every key `pred` accepts.
    fn take_first_where(&mut self, pred: impl Fn(&(String, String, i32)) -> bool) -> Vec<HeldPop> {
        let mut out = Vec::new();
        for (key, queue) in self.by_key.iter_mut() {
            if pred(key) {
                if let Some(h) = queue.pop_front() {
                    out.push(h);
                }
            }
        }
        self.by_key.retain(|_, q| !q.is_empty());
        self.total -= out.len();
        out
    }

    /// Every held request `pred` accepts, in key then arrival order.
    fn take_all_where(&mut self, pred: impl Fn(&HeldPop) -> bool) -> Vec<HeldPop> {
        let mut out = Vec::new();
        for queue in self.by_key.values_mut() {
            let (taken, kept): (VecDeque<_>, VecDeque<_>) =
                std::mem::take(queue).into_iter().partition(|h| pred(h));
            out.extend(taken);
            *queue = kept;
        }
        self.by_key.retain(|_, q| !q.is_empty());
        self.total -= out.len();
        out
    }

    pub fn drop_connection(&mut self, conn: ConnId) {
        self.take_all_where(|h| h.conn == conn);
    }
}

/// What one POP collected over the queues it read.
#[derive(Debug, Default)]
pub(super) struct PopBatch {
    pub records: Vec<Bytes>,
    pub start_infos: Vec<(QueueKey, i64)>,
    pub msg_infos: Vec<(QueueKey, Vec<i64>)>,
    pub order_counts: Vec<String>,
    pub rest: i64,
    /// Where the last checkpoint written ends in the CommitLog.
    pub ck_end: u64,
}

/// One queue's read for a POP: where it started, where the group's position goes past it, the
/// queue's end, and the records handed out with their offsets.
pub(super) struct QueueRead {
    pub offset: i64,
    pub next: i64,
    pub max: i64,
    pub records: Vec<Bytes>,
    pub offsets: Vec<i64>,
}

/// What every queue read of one POP shares.
pub(super) struct PopRequest<'a> {
    pub header: &'a PopMessageRequestHeader,
    pub subscription: &'a Subscription,
    pub pop_time_ms: i64,
    pub revive_qid: i32,
}

fn pop_answer(req: &RemotingCommand, code: i32, remark: impl Into<String>) -> RemotingCommand {
    let mut answer = RemotingCommand::response_to(req, code, Some(remark.into()));
    PopMessageResponseHeader::default().write_to(&mut answer);
    answer
}

impl<S: SegmentStorage> Broker<S> {
    /// The checks every POP-family read runs first, in RocketMQ's order: the topic, its read
    /// permission, the queue id, the group. `Err` is the answer.
    fn pop_family_checks(
        &mut self,
        now_ms: u64,
        topic: &str,
        group: &str,
        queue_id: i32,
    ) -> Result<TopicConfig, (i32, String)> {
        if self.config.broker_permission & perm::READ == 0 {
            return Err((
                response::NO_PERMISSION,
                format!(
                    "the broker[{}] popping message is forbidden",
                    self.config.broker_ip1
                ),
            ));
        }
        let Some(config) = self.topics.topics.get(topic).cloned() else {
            return Err((
                response::TOPIC_NOT_EXIST,
                format!("topic[{topic}] not exist, apply first please!"),
            ));
        };
        if config.perm & perm::READ == 0 {
            return Err((
                response::NO_PERMISSION,
                format!("the topic[{topic}] peeking message is forbidden"),
            ));
        }
        if queue_id >= 0 && queue_id as i64 >= i64::from(config.read_queue_nums) {
            return Err((
                response::INVALID_PARAMETER,
                format!(
                    "queueId[{queue_id}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{}]",
                    config.read_queue_nums
                ),
            ));
        }
        match self.find_or_create_group(now_ms, group) {
            None => Err((
                response::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group [{group}] does not exist"),
            )),
            Some(g) if !g.consume_enable => Err((
                response::NO_PERMISSION,
                format!("subscription group no permission, {group}"),
            )),
            Some(_) => Ok(config),
        }
    }

    /// The POP retry topics of (topic, group) that exist, V2 first.
    pub(super) fn pop_retry_topics(&self, topic: &str, group: &str) -> Vec<String> {
        [true, false]
            .into_iter()
            .map(|v2| pop_retry_topic(topic, group, v2))
            .filter(|t| self.topics.topics.contains_key(t))
            .collect()
    }

    /// The group's position in a queue for a POP: its committed offset (never below the
    /// queue's first), else where `init_mode` starts it, committed at once
    /// (`getPopOffset`/`getInitOffset`). MAX starts at the last message, or at 0 while the
    /// queue's first message is still in memory, as a new group's offset query does.
    pub(super) fn pop_offset(
        &mut self,
        topic: &str,
        group: &str,
        queue_id: i32,
        init_mode: i32,
        commit_init: bool,
    ) -> i64 {
        let min = self.store.min_offset(topic, queue_id).0 as i64;
        if let Some(committed) = self.offsets.query(topic, group, queue_id) {
            return committed.max(min);
        }
        let retry = topic.starts_with(crate::topic::RETRY_GROUP_TOPIC_PREFIX);
        let init = if init_mode != INIT_MODE_MAX || retry {
            min
        } else if min == 0 && self.first_message_in_memory(topic, queue_id) {
            0
        } else {
            (self.store.max_offset(topic, queue_id).0 as i64 - 1).max(min)
        };
        if commit_init {
            let written = self.store.written_offset().0;
            self.offsets
                .commit_when_durable(topic, group, queue_id, init, written);
        }
        init
    }

    /// POP_MESSAGE (200050). `Ok(None)`: held.
    pub(in crate::broker) fn handle_pop_message(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
        may_hold: bool,
    ) -> Result<Option<RemotingCommand>, HeaderError> {
        let mut h = PopMessageRequestHeader::parse(req)?;
        if h.born_time_ms == 0 {
            h.born_time_ms = now_ms as i64;
        }
        if now_ms as i64 - h.born_time_ms - h.poll_time_ms > BORN_TIME_SLACK_MS {
            return Ok(Some(pop_answer(
                req,
                response::POLLING_TIMEOUT,
                format!(
                    "the broker[{}] pop message is timeout too much",
                    self.config.broker_ip1
                ),
            )));
        }
        if let Some(refused) = self.pop_write_refused() {
            return Ok(Some(pop_answer(
                req,
                response::SERVICE_NOT_AVAILABLE,
                refused,
            )));
        }
        if h.max_msg_nums > POP_MAX_MSG_NUMS {
            return Ok(Some(pop_answer(
                req,
                response::INVALID_PARAMETER,
                format!(
                    "the broker[{}] pop message's num is greater than {POP_MAX_MSG_NUMS}",
                    self.config.broker_ip1
                ),
            )));
        }
        if h.invisible_time_ms < 0 {
            return Ok(Some(pop_answer(
                req,
                response::INVALID_PARAMETER,
                format!("invisibleTime {} must not be negative", h.invisible_time_ms),
            )));
        }
        let topic_config =
            match self.pop_family_checks(now_ms, &h.topic, &h.consumer_group, h.queue_id) {
                Ok(c) => c,
                Err((code, remark)) => return Ok(Some(pop_answer(req, code, remark))),
            };
        let subscription =
            Subscription::parse(h.exp.as_deref().unwrap_or("*"), h.exp_type.as_deref(), 0);
        if subscription
            .selector
            .as_ref()
            .is_some_and(|s| s.filter().is_none())
        {
            return Ok(Some(pop_answer(
                req,
                response::SUBSCRIPTION_PARSE_FAILED,
                "parse the consumer's subscription failed",
            )));
        }
        if !subscription.is_tag() && !self.config.enable_property_filter {
            return Ok(Some(pop_answer(
                req,
                response::SYSTEM_ERROR,
                super::super::filter::unsupported_remark(&subscription.expression_type),
            )));
        }

        let random_q = self.rng.below(100) as i64;
        let revive_qid = if h.order {
            crate::remoting::pop::ORDER_REVIVE_QUEUE_ID
        } else {
            let qid = self.pop.next_revive_qid % self.config.pop.revive_queue_num.max(1);
            self.pop.next_revive_qid = self.pop.next_revive_qid.wrapping_add(1);
            qid as i32
        };
        let request = PopRequest {
            header: &h,
            subscription: &subscription,
            pop_time_ms: now_ms as i64,
            revive_qid,
        };
        let want = h.max_msg_nums.max(0) as usize;
        let mut batch = PopBatch::default();
        let retry_topics = if h.order {
            Vec::new()
        } else {
            self.pop_retry_topics(&h.topic, &h.consumer_group)
        };
        let retry_first = random_q < i64::from(self.config.pop.pop_from_retry_probability_percent);
        if retry_first {
            for retry in &retry_topics {
                self.pop_from_topic(now_ms, &request, retry, -1, want, &mut batch);
            }
        }
        let queues = i64::from(topic_config.read_queue_nums.max(1));
        if h.queue_id >= 0 {
            self.pop_from_queue(now_ms, &request, &h.topic, h.queue_id, want, &mut batch);
        } else {
            for i in 0..queues {
                let queue_id = ((random_q + i) % queues) as i32;
                self.pop_from_queue(now_ms, &request, &h.topic, queue_id, want, &mut batch);
            }
        }
        if !retry_first {
            for retry in &retry_topics {
                self.pop_from_topic(now_ms, &request, retry, -1, want, &mut batch);
            }
        }

        if batch.records.is_empty() {
            if may_hold && h.poll_time_ms > 0 {
                let deadline = h.born_time_ms + h.poll_time_ms;
                if now_ms as i64 > deadline - HOLD_MARGIN_MS {
                    return Ok(Some(self.pop_empty_answer(req, &h, revive_qid, &batch)));
                }
                let key = (h.topic.clone(), h.consumer_group.clone(), h.queue_id);
                if self.pop.held.total >= self.config.pop.max_pop_polling_size
                    || self.pop.held.count(&key.0, &key.1, key.2) > self.config.pop.pop_polling_size
                {
                    return Ok(Some(pop_answer(
                        req,
                        response::POLLING_FULL,
                        "POLLING_FULL",
                    )));
                }
                self.pop.held.push(
                    key,
                    HeldPop {
                        conn,
                        request: req.clone(),
                        deadline_ms: deadline.max(0) as u64,
                    },
                );
                return Ok(None);
            }
            return Ok(Some(self.pop_empty_answer(req, &h, revive_qid, &batch)));
        }

        let bytes: usize = batch.records.iter().map(Bytes::len).sum();
        let mut body = BytesMut::with_capacity(bytes);
        for record in &batch.records {
            body.extend_from_slice(record);
        }
        let system = self.is_system_topic(&h.topic);
        self.stats.on_get(
            now_ms,
            &self.config.broker_cluster_name,
            &h.topic,
            &h.consumer_group,
            system,
            batch.records.len() as u64,
            bytes as u64,
        );
        let mut answer = RemotingCommand::response_to(req, response::SUCCESS, Some("FOUND".into()));
        PopMessageResponseHeader {
            pop_time_ms: now_ms as i64,
            invisible_time_ms: h.invisible_time_ms,
            revive_qid,
            rest_num: batch.rest,
            start_offset_info: Some(encode_start_offset_info(&batch.start_infos)),
            msg_offset_info: Some(encode_msg_offset_info(&batch.msg_infos)),
            order_count_info: h.order.then(|| batch.order_counts.join(";")),
        }
        .write_to(&mut answer);
        answer.body = body.freeze();
        if batch.rest > 0 {
            // More is waiting: let another held consumer of the same key take it.
            let key = (h.topic.clone(), h.consumer_group.clone(), h.queue_id);
            let woken = self.pop.held.take_first_where(|k| *k == key);
            self.rerun_held_pops(now_ms, woken, true);
        }
        // Under SYNC_FLUSH the answer waits for its checkpoints: a power loss then never
        // brings back early what was handed out.
        if batch.ck_end > 0 {
            return Ok(self.answer_when_durable(conn, req, answer, batch.ck_end));
        }
        self.pop_written();
        Ok(Some(answer))
    }

    fn pop_empty_answer(
        &self,
        req: &RemotingCommand,
        h: &PopMessageRequestHeader,
        revive_qid: i32,
        batch: &PopBatch,
    ) -> RemotingCommand {
        let mut answer = RemotingCommand::response_to(
            req,
            response::POLLING_TIMEOUT,
            Some("NO_MESSAGE_IN_QUEUE".into()),
        );
        PopMessageResponseHeader {
            pop_time_ms: 0,
            invisible_time_ms: h.invisible_time_ms,
            revive_qid,
            rest_num: batch.rest,
            start_offset_info: None,
            msg_offset_info: None,
            order_count_info: None,
        }
        .write_to(&mut answer);
        answer
    }

    /// Why this broker takes no POP-family writes now: a slave (POP runs on its master, as
    /// RocketMQ's revive does), or a store that failed to make data durable.
    pub(super) fn pop_write_refused(&self) -> Option<String> {
        if self.is_slave() {
            return Some("POP is served by the master of this broker group".to_owned());
        }
        self.durability_failure.as_ref().map(|reason| {
            format!(
                "the store cannot make data durable ({reason}); restart the broker once the disk is healthy"
            )
        })
    }

    /// Every queue of `topic` (a POP retry topic).
    fn pop_from_topic(
        &mut self,
        now_ms: u64,
        request: &PopRequest<'_>,
        topic: &str,
        _queue_id: i32,
        want: usize,
        batch: &mut PopBatch,
    ) {
        let queues = self
            .topics
            .topics
            .get(topic)
            .map_or(0, |c| c.read_queue_nums);
        for queue_id in 0..queues as i32 {
            self.pop_from_queue(now_ms, request, topic, queue_id, want, batch);
        }
    }

    /// The read every POP of one queue starts with: the group's position, up to what the batch
    /// still wants, through its filter. `None`: nothing to hand out (what is left is counted in
    /// `batch.rest`; a range filtered out entirely is passed at once, as nothing of it can come
    /// back).
    pub(super) fn read_queue_for_pop(
        &mut self,
        request: &PopRequest<'_>,
        topic: &str,
        queue_id: i32,
        want: usize,
        batch: &mut PopBatch,
    ) -> Option<QueueRead> {
        let h = request.header;
        let group = h.consumer_group.as_str();
        let offset = self.pop_offset(topic, group, queue_id, h.init_mode, true);
        let max = self.store.max_offset(topic, queue_id).0 as i64;
        let left = want.saturating_sub(batch.records.len());
        let read = (left > 0)
            .then(|| {
                self.get_filtered(
                    topic,
                    queue_id,
                    QueueOffset(offset.max(0) as u64),
                    left as u32,
                    request.subscription,
                )
                .ok()
            })
            .flatten();
        let Some(result) = read else {
            batch.rest += (max - offset).max(0);
            return None;
        };
        let next = result.next_begin_offset.0 as i64;
        if result.records.is_empty() {
            if next > offset && result.damaged.is_none() {
                let written = self.store.written_offset().0;
                self.offsets
                    .commit_when_durable(topic, group, queue_id, next, written);
            }
            batch.rest += (max - next.max(offset)).max(0);
            return None;
        }
        let offsets = result
            .records
            .iter()
            .map(|r| crate::message::RecordView::parse(r, false).map(|v| v.queue_offset))
            .collect::<Result<Vec<i64>, _>>()
            .ok()?;
        Some(QueueRead {
            offset,
            next,
            max,
            records: result.records,
            offsets,
        })
    }

    /// Reads one queue for a POP (`popMsgFromQueue`): up to what the batch still wants, from
    /// the group's position; writes the checkpoint and moves the position past what was read.
    fn pop_from_queue(
        &mut self,
        now_ms: u64,
        request: &PopRequest<'_>,
        topic: &str,
        queue_id: i32,
        want: usize,
        batch: &mut PopBatch,
    ) {
        let h = request.header;
        let group = h.consumer_group.as_str();
        if h.order {
            self.pop_orderly_from_queue(now_ms, request, topic, queue_id, want, batch);
            return;
        }
        let Some(QueueRead {
            offset,
            next,
            max,
            records,
            offsets,
        }) = self.read_queue_for_pop(request, topic, queue_id, want, batch)
        else {
            return;
        };
        let ck = PopCheckPoint {
            bit_map: 0,
            broker_name: Some(self.config.broker_name.clone()),
            group: group.to_owned(),
            queue_offset_diff: offsets.iter().map(|o| o - offset).collect(),
            invisible_time_ms: h.invisible_time_ms,
            num: offsets.len() as i32,
            pop_time_ms: request.pop_time_ms,
            queue_id,
            revive_time_ms: request.pop_time_ms + h.invisible_time_ms,
            revive_offset: 0,
            start_offset: offset,
            topic: topic.to_owned(),
        };
        // No checkpoint, no messages: what is handed out must be able to come back.
        let Ok(ck_end) = self.write_checkpoint(now_ms, ck, request.revive_qid) else {
            batch.rest += (max - offset).max(0);
            return;
        };
        self.offsets
            .commit_when_durable(topic, group, queue_id, next, ck_end);
        batch.ck_end = batch.ck_end.max(ck_end);
        let flag = RetryFlag::of_topic(topic);
        for (record, queue_offset) in records.iter().zip(&offsets) {
            if flag == RetryFlag::Normal {
                batch.records.push(record.clone());
                continue;
            }
            // A redelivery: its record is re-encoded under the topic asked for, carrying its
            // receipt handle (the client cannot build it from the offset lists' flag alone).
            let Ok(mut message) = MessageRecord::decode(record, false) else {
                continue;
            };
            if !message.properties.contains(POP_CK_PROPERTY) {
                let handle = ExtraInfo {
                    ck_start_offset: offset,
                    pop_time_ms: request.pop_time_ms,
                    invisible_time_ms: h.invisible_time_ms,
                    revive_qid: request.revive_qid,
                    retry: flag,
                    broker_name: self.config.broker_name.clone(),
                    queue_id,
                    msg_queue_offset: Some(*queue_offset),
                };
                message.properties.insert(POP_CK_PROPERTY, handle.encode());
            }
            message.topic = h.topic.clone();
            match message.encode_to_vec() {
                Ok(bytes) => batch.records.push(Bytes::from(bytes)),
                Err(_) => continue,
            }
        }
        batch.start_infos.push(((flag, queue_id), offset));
        batch.msg_infos.push(((flag, queue_id), offsets));
        batch.rest += (max - next).max(0);
    }

    /// A message arrived in (topic, queue): wake one held request of every group holding on
    /// that queue or on any queue of the topic (and of the topic a V2 retry topic retries).
    pub(in crate::broker) fn wake_held_pops(&mut self, now_ms: u64, topic: &str, queue_id: i32) {
        if self.pop.held.total == 0 {
            return;
        }
        let normal = crate::remoting::pop::topic_of_v2_retry(topic)
            .unwrap_or(topic)
            .to_owned();
        let woken = self.pop.held.take_first_where(|(t, _, q)| {
            *t == normal && (*q < 0 || (*q == queue_id && normal == topic))
        });
        self.rerun_held_pops(now_ms, woken, true);
    }

    /// A group's messages came back or a queue of its was unblocked: wake one held request
    /// of each of its keys.
    pub(super) fn wake_held_pops_of_group(&mut self, now_ms: u64, group: &str) {
        if self.pop.held.total == 0 {
            return;
        }
        let woken = self.pop.held.take_first_where(|(_, g, _)| g == group);
        self.rerun_held_pops(now_ms, woken, true);
    }

    /// Held requests whose deadline passed (`all`: every one, at shutdown) run once more and
    /// are answered.
    pub(in crate::broker) fn expire_held_pops(&mut self, now_ms: u64, all: bool) {
        let due = self
            .pop
            .held
            .take_all_where(|h| all || h.deadline_ms <= now_ms);
        self.rerun_held_pops(now_ms, due, false);
    }

    fn rerun_held_pops(&mut self, now_ms: u64, held: Vec<HeldPop>, may_hold: bool) {
        for h in held {
            let result = match h.request.code {
                crate::remoting::codes::request::NOTIFICATION => {
                    self.handle_notification(now_ms, h.conn, &h.request, may_hold)
                }
                _ => self.handle_pop_message(now_ms, h.conn, &h.request, may_hold),
            };
            let answer = match result {
                Ok(Some(answer)) => answer,
                Ok(None) => continue,
                Err(e) => pop_answer(
                    &h.request,
                    response::SYSTEM_ERROR,
                    format!("bad request header: {e}"),
                ),
            };
            self.metrics
                .on_request(now_ms, h.conn, &h.request, Some(answer.code));
            self.reply(h.conn, &h.request, answer);
        }
    }

    /// PEEK_MESSAGE (200052): what a POP would get, without taking it.
    pub(in crate::broker) fn handle_peek_message(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let topic = req.ext_str("topic")?.to_owned();
        let group = req.ext_str("consumerGroup")?.to_owned();
        let queue_id: i32 = req.ext_num("queueId")?;
        let max_msg_nums: i32 = req.ext_num("maxMsgNums")?;
        let config = match self.pop_family_checks(now_ms, &topic, &group, queue_id) {
            Ok(c) => c,
            Err((code, remark)) => return Ok(pop_answer(req, code, remark)),
        };
        let want = max_msg_nums.clamp(0, POP_MAX_MSG_NUMS) as usize;
        let random_q = self.rng.below(100);
        let everything = Subscription::parse("*", None, 0);
        let mut queues: Vec<(String, i32)> = Vec::new();
        let retry: Vec<(String, i32)> = self
            .pop_retry_topics(&topic, &group)
            .into_iter()
            .flat_map(|t| {
                let n = self.topics.topics.get(&t).map_or(0, |c| c.read_queue_nums);
                (0..n as i32).map(move |q| (t.clone(), q))
            })
            .collect();
        let retry_first = random_q.is_multiple_of(5);
        if retry_first {
            queues.extend(retry.iter().cloned());
        }
        if queue_id >= 0 {
            queues.push((topic.clone(), queue_id));
        } else {
            let n = u64::from(config.read_queue_nums.max(1));
            queues.extend((0..n).map(|i| (topic.clone(), ((random_q + i) % n) as i32)));
        }
        if !retry_first {
            queues.extend(retry);
        }
        let mut records = Vec::new();
        let mut rest = 0i64;
        for (t, q) in queues {
            let offset = self.pop_offset(&t, &group, q, 0, false);
            let max = self.store.max_offset(&t, q).0 as i64;
            let left = want.saturating_sub(records.len());
            if left == 0 {
                rest += (max - offset).max(0);
                continue;
            }
            if let Ok(r) =
                self.get_filtered(&t, q, QueueOffset(offset as u64), left as u32, &everything)
            {
                rest += (max - r.next_begin_offset.0 as i64).max(0);
                records.extend(r.records);
            }
        }
        if records.is_empty() {
            let mut answer = RemotingCommand::response_to(
                req,
                response::PULL_NOT_FOUND,
                Some("NO_MESSAGE_IN_QUEUE".into()),
            );
            PopMessageResponseHeader {
                rest_num: rest,
                ..Default::default()
            }
            .write_to(&mut answer);
            return Ok(answer);
        }
        let mut body = BytesMut::new();
        for r in &records {
            body.extend_from_slice(r);
        }
        let mut answer = RemotingCommand::response_to(req, response::SUCCESS, Some("FOUND".into()));
        PopMessageResponseHeader {
            rest_num: rest,
            ..Default::default()
        }
        .write_to(&mut answer);
        answer.body = body.freeze();
        Ok(answer)
    }

    /// NOTIFICATION (200054): whether a POP would find something, held like a POP until it
    /// would. Answers `hasMsg` and `pollingFull`.
    pub(in crate::broker) fn handle_notification(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
        may_hold: bool,
    ) -> Result<Option<RemotingCommand>, HeaderError> {
        let mut h = NotificationRequestHeader::parse(req)?;
        if h.born_time_ms == 0 {
            h.born_time_ms = now_ms as i64;
        }
        let answer = |has_msg: bool, full: bool| {
            RemotingCommand::response_to(req, response::SUCCESS, None)
                .with_ext("hasMsg", has_msg)
                .with_ext("pollingFull", full)
        };
        let config = match self.pop_family_checks(now_ms, &h.topic, &h.consumer_group, h.queue_id) {
            Ok(c) => c,
            Err((code, remark)) => {
                return Ok(Some(RemotingCommand::response_to(req, code, Some(remark))))
            }
        };
        let mut queues: Vec<(String, i32)> = if h.queue_id >= 0 {
            vec![(h.topic.clone(), h.queue_id)]
        } else {
            (0..config.read_queue_nums as i32)
                .map(|q| (h.topic.clone(), q))
                .collect()
        };
        if !h.order {
            for t in self.pop_retry_topics(&h.topic, &h.consumer_group) {
                let n = self.topics.topics.get(&t).map_or(0, |c| c.read_queue_nums);
                queues.extend((0..n as i32).map(|q| (t.clone(), q)));
            }
        }
        let has_msg = queues.iter().any(|(t, q)| {
            let blocked = h.order
                && self.pop.order.blocked(
                    t,
                    &h.consumer_group,
                    *q,
                    now_ms as i64,
                    h.attempt_id.as_deref(),
                );
            let offset = self
                .offsets
                .query(t, &h.consumer_group, *q)
                .unwrap_or_else(|| self.store.min_offset(t, *q).0 as i64);
            !blocked && (self.store.max_offset(t, *q).0 as i64) > offset
        });
        if has_msg || !may_hold || h.poll_time_ms <= 0 {
            return Ok(Some(answer(has_msg, false)));
        }
        let deadline = h.born_time_ms + h.poll_time_ms;
        if now_ms as i64 > deadline - HOLD_MARGIN_MS {
            return Ok(Some(answer(false, false)));
        }
        let key = (h.topic.clone(), h.consumer_group.clone(), h.queue_id);
        if self.pop.held.total >= self.config.pop.max_pop_polling_size
            || self.pop.held.count(&key.0, &key.1, key.2) > self.config.pop.pop_polling_size
        {
            return Ok(Some(answer(false, true)));
        }
        self.pop.held.push(
            key,
            HeldPop {
                conn,
                request: req.clone(),
                deadline_ms: deadline.max(0) as u64,
            },
        );
        Ok(None)
    }

    /// POLLING_INFO (200055): how many POPs are held for (topic, group, queue id as sent).
    pub(in crate::broker) fn handle_polling_info(
        &mut self,
        now_ms: u64,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, HeaderError> {
        let topic = req.ext_str("topic")?.to_owned();
        let group = req.ext_str("consumerGroup")?.to_owned();
        let queue_id: i32 = req.ext_num("queueId")?;
        if let Err((code, remark)) = self.pop_family_checks(now_ms, &topic, &group, queue_id) {
            return Ok(RemotingCommand::response_to(req, code, Some(remark)));
        }
        let held = self
            .pop
            .held
            .by_key
            .iter()
            .filter(|((t, g, q), _)| *t == topic && *g == group && *q == queue_id)
            .flat_map(|(_, held)| held.iter())
            .filter(|h| h.request.code == crate::remoting::codes::request::POP_MESSAGE)
            .count();
        Ok(RemotingCommand::response_to(req, response::SUCCESS, None).with_ext("pollingNum", held))
    }
}
