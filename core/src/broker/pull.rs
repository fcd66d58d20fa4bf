//! PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361), with long polling.
//!
//! A pull that finds nothing (19) and may be suspended is held until a message arrives in its
//! queue or its deadline passes; either way it is run again without suspension and answered
//! with that result (REMOTING.md §3.5 step 7).

use std::collections::BTreeMap;

use bytes::BytesMut;

use super::clients::Subscription;
use super::Broker;
use crate::remoting::codes::response;
use crate::remoting::headers::{
    pull_sys_flag, PullMessageRequestHeader, PullMessageResponseHeader,
};
use crate::remoting::{HeaderError, RemotingCommand};
use crate::store::{GetStatus, QueueOffset, SegmentStorage};
use crate::topic::perm;
use crate::ConnId;

/// Most messages one pull returns (`maxTransferCountOnMessageInMemory`).
const MAX_PULL_MESSAGES: i32 = 32;
/// How long a pull is held when long polling is off (`shortPollingTimeMills`).
const SHORT_POLLING_MS: u64 = 1_000;

/// A suspended pull.
#[derive(Clone, Debug)]
pub(super) struct HeldPull {
    pub conn: ConnId,
    pub request: RemotingCommand,
    pub queue_offset: i64,
    pub deadline_ms: u64,
}

/// Suspended pulls by (topic, queue id).
#[derive(Debug, Default)]
pub(super) struct HeldPulls {
    pub by_queue: BTreeMap<(String, i32), Vec<HeldPull>>,
}

impl HeldPulls {
    pub fn earliest_deadline_ms(&self) -> Option<u64> {
        self.by_queue
            .values()
            .flat_map(|v| v.iter().map(|p| p.deadline_ms))
            .min()
    }

    pub fn drop_connection(&mut self, conn: ConnId) {
        self.by_queue.retain(|_, held| {
            held.retain(|p| p.conn != conn);
            !held.is_empty()
        });
    }

    /// Removes and returns every held pull matching `pred`, in queue then arrival order.
    pub fn take_where(
        &mut self,
        mut pred: impl FnMut(&(String, i32), &HeldPull) -> bool,
    ) -> Vec<HeldPull> {
        let mut taken = Vec::new();
        self.by_queue.retain(|key, held| {
            let (out, keep): (Vec<_>, Vec<_>) =
                std::mem::take(held).into_iter().partition(|p| pred(key, p));
            taken.extend(out);
            *held = keep;
            !held.is_empty()
        });
        taken
    }
}

fn respond(req: &RemotingCommand, code: i32, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::response_to(req, code, Some(remark.into()))
}

impl<S: SegmentStorage> Broker<S> {
    /// Runs a pull. `first` is the request's first execution (commit the piggy-backed offset);
    /// `may_suspend` lets a not-found result be held. `Ok(None)`: the pull is now held.
    pub(super) fn run_pull(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
        first: bool,
        may_suspend: bool,
    ) -> Result<Option<RemotingCommand>, HeaderError> {
        let h = PullMessageRequestHeader::parse(req)?;
        if let Some(reason) = self.replication_refused() {
            // Its log and its master's differ: what it holds past the point they part is not
            // the group's, so it serves nothing until emptied.
            return Ok(Some(respond(
                req,
                response::SERVICE_NOT_AVAILABLE,
                format!("this slave serves no reads: {reason}"),
            )));
        }
        let group = self.clients.consumers.get(&h.consumer_group);
        if group.is_none() && !self.config.auto_create_subscription_group {
            return Ok(Some(respond(
                req,
                response::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group [{}] does not exist", h.consumer_group),
            )));
        }
        let broadcasting = group.is_some_and(|g| g.is_broadcasting());
        let Some(topic) = self.topics.topics.get(&h.topic) else {
            return Ok(Some(respond(
                req,
                response::TOPIC_NOT_EXIST,
                format!("topic[{}] not exist, apply first please!", h.topic),
            )));
        };
        if topic.perm & perm::READ == 0 {
            return Ok(Some(respond(
                req,
                response::NO_PERMISSION,
                format!("the topic[{}] pulling message is forbidden", h.topic),
            )));
        }
        if h.queue_id < 0 || h.queue_id as i64 >= i64::from(topic.read_queue_nums) {
            return Ok(Some(respond(
                req,
                response::INVALID_PARAMETER,
                format!(
                    "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}]",
                    h.queue_id, h.topic, topic.read_queue_nums
                ),
            )));
        }
        let subscription = if h.sys_flag & pull_sys_flag::SUBSCRIPTION != 0 {
            let sub = Subscription::parse(
                h.subscription.as_deref().unwrap_or("*"),
                h.expression_type.as_deref(),
                h.sub_version,
            );
            if sub.selector.as_ref().is_some_and(|s| s.filter().is_none()) {
                return Ok(Some(respond(
                    req,
                    response::SUBSCRIPTION_PARSE_FAILED,
                    "parse the consumer's subscription failed",
                )));
            }
            sub
        } else {
            let Some(sub) = self.clients.subscription(&h.consumer_group, &h.topic) else {
                return Ok(Some(respond(
                    req,
                    response::SUBSCRIPTION_NOT_EXIST,
                    format!(
                        "the consumer's subscription not exist, group: {} topic: {}",
                        h.consumer_group, h.topic
                    ),
                )));
            };
            if sub.sub_version < h.sub_version {
                return Ok(Some(respond(
                    req,
                    response::SUBSCRIPTION_NOT_LATEST,
                    format!(
                        "the consumer's subscription not latest, group: {} topic: {}",
                        h.consumer_group, h.topic
                    ),
                )));
            }
            // RocketMQ keeps no filter data for a heartbeat's expression that did not compile.
            if sub.selector.as_ref().is_some_and(|s| s.filter().is_none()) {
                return Ok(Some(respond(
                    req,
                    response::FILTER_DATA_NOT_EXIST,
                    "The broker's consumer filter data is not exist!Your expression may be wrong!",
                )));
            }
            sub.clone()
        };
        if !subscription.is_tag() && !self.config.enable_property_filter {
            return Ok(Some(respond(
                req,
                response::SYSTEM_ERROR,
                super::filter::unsupported_remark(&subscription.expression_type),
            )));
        }

        let max_count = h.max_msg_nums.clamp(1, MAX_PULL_MESSAGES) as u32;
        let requested = QueueOffset(h.queue_offset.max(0) as u64);
        // A position beyond what recovery kept predates the restart ([`super::fence`]); the
        // piggy-backed commit is clamped by the fence as it stood before this pull.
        let holder = self.fence_holder(&h.consumer_group, conn);
        let commit_offset = self.recovery_fence.clamp_commit(
            &h.topic,
            h.queue_id,
            &h.consumer_group,
            &holder,
            h.commit_offset,
        );
        let fenced = self.recovery_fence.check_pull(
            now_ms,
            &h.topic,
            h.queue_id,
            &h.consumer_group,
            holder,
            requested.0,
        );
        if let Some(recovered_max) = fenced {
            if first && h.sys_flag & pull_sys_flag::COMMIT_OFFSET != 0 && !broadcasting {
                self.offsets
                    .commit(&h.topic, &h.consumer_group, h.queue_id, commit_offset);
            }
            return Ok(Some(self.fenced_pull_response(
                req,
                &h.topic,
                h.queue_id,
                recovered_max,
            )));
        }
        let result =
            match self.get_filtered(&h.topic, h.queue_id, requested, max_count, &subscription) {
                Ok(r) => r,
                Err(e) => {
                    return Ok(Some(respond(
                        req,
                        response::SYSTEM_ERROR,
                        format!("reading the queue failed: {e}"),
                    )))
                }
            };
        // The store ends a pull before a record that failed its check on every read, so a
        // record whose bytes changed on the medium or on the way from it is never served.
        let corrupt = result
            .damaged
            .as_ref()
            .map(|reason| format!("RECORD_CHECK_FAILED: {reason}"));
        let (code, next_begin) = match result.status {
            // The first record failed its check: nothing to serve. NOT_FOUND with the same
            // offset makes RocketMQ clients pull that offset again (NO_NEW_MSG), and suspending
            // the pull backs them off instead of spinning; the offset never moves past it.
            _ if corrupt.is_some() && result.records.is_empty() => {
                (response::PULL_NOT_FOUND, h.queue_offset)
            }
            GetStatus::Found => (response::SUCCESS, result.next_begin_offset.0 as i64),
            GetStatus::NoMatchedMessage | GetStatus::MessageWasRemoving => (
                response::PULL_RETRY_IMMEDIATELY,
                result.next_begin_offset.0 as i64,
            ),
            GetStatus::OffsetOverflowOne => (response::PULL_NOT_FOUND, h.queue_offset),
            GetStatus::OffsetFoundNull => {
                (response::PULL_NOT_FOUND, result.next_begin_offset.0 as i64)
            }
            GetStatus::NoMessageInQueue | GetStatus::NoMatchedLogicQueue => {
                if h.queue_offset == 0 {
                    (response::PULL_NOT_FOUND, 0)
                } else {
                    (response::PULL_OFFSET_MOVED, 0)
                }
            }
            GetStatus::OffsetTooSmall => (response::PULL_OFFSET_MOVED, result.min_offset.0 as i64),
            GetStatus::OffsetOverflowBadly => {
                (response::PULL_OFFSET_MOVED, result.max_offset.0 as i64)
            }
        };

        if first && h.sys_flag & pull_sys_flag::COMMIT_OFFSET != 0 && !broadcasting {
            self.offsets
                .commit(&h.topic, &h.consumer_group, h.queue_id, commit_offset);
        }

        if code == response::PULL_NOT_FOUND
            && may_suspend
            && h.sys_flag & pull_sys_flag::SUSPEND != 0
        {
            let hold_ms = if self.config.long_polling_enable {
                (h.suspend_timeout_ms.max(0) as u64).min(self.config.long_polling_max_hold_ms)
            } else {
                SHORT_POLLING_MS
            };
            self.held_pulls
                .by_queue
                .entry((h.topic.clone(), h.queue_id))
                .or_default()
                .push(HeldPull {
                    conn,
                    request: req.clone(),
                    queue_offset: h.queue_offset,
                    deadline_ms: now_ms.saturating_add(hold_ms),
                });
            return Ok(None);
        }

        let suggest_which_broker_id = self.suggest_which_broker_id(&h.consumer_group, &result);
        let mut response = RemotingCommand::response_to(req, code, None);
        PullMessageResponseHeader {
            suggest_which_broker_id,
            next_begin_offset: next_begin,
            min_offset: result.min_offset.0 as i64,
            max_offset: result.max_offset.0 as i64,
        }
        .write_to(&mut response);
        if code == response::SUCCESS || code == response::PULL_NOT_FOUND {
            let bytes: usize = result.records.iter().map(|r| r.len()).sum();
            let system = self.is_system_topic(&h.topic);
            let found = if code == response::SUCCESS {
                result.records.len() as u64
            } else {
                0
            };
            self.stats.on_get(
                now_ms,
                &self.config.broker_cluster_name,
                &h.topic,
                &h.consumer_group,
                system,
                found,
                bytes as u64,
            );
            self.metrics.on_pull(
                &h.consumer_group,
                &h.topic,
                h.queue_id,
                found,
                bytes as u64,
                next_begin.max(0) as u64,
            );
        }
        if code == response::SUCCESS {
            let mut body = BytesMut::with_capacity(result.records.iter().map(|r| r.len()).sum());
            for record in &result.records {
                body.extend_from_slice(record);
            }
            response.body = body.freeze();
        } else {
            response.remark = Some(match &corrupt {
                // Core has no log channel: the reason travels in the remark, which the client
                // and the simulator's trace record.
                Some(reason) => reason.clone(),
                None => match result.status {
                    GetStatus::OffsetOverflowOne => "OFFSET_OVERFLOW_ONE",
                    GetStatus::OffsetFoundNull => "OFFSET_FOUND_NULL",
                    GetStatus::NoMessageInQueue => "NO_MESSAGE_IN_QUEUE",
                    GetStatus::NoMatchedLogicQueue => "NO_MATCHED_LOGIC_QUEUE",
                    GetStatus::OffsetTooSmall => "OFFSET_TOO_SMALL",
                    GetStatus::OffsetOverflowBadly => "OFFSET_OVERFLOW_BADLY",
                    GetStatus::NoMatchedMessage => "NO_MATCHED_MESSAGE",
                    GetStatus::MessageWasRemoving => "MESSAGE_WAS_REMOVING",
                    GetStatus::Found => "FOUND",
                }
                .to_owned(),
            });
        }
        Ok(Some(response))
    }

    /// Which member of the group the consumer should pull from next, as RocketMQ 4.9's
    /// `PullMessageProcessor` decides it: with `slaveReadEnable` off always the master (0);
    /// with it on, the group's `whichBrokerWhenConsumeSlowly` (1) when the consumer has fallen
    /// further behind the CommitLog's end than `accessMessageInMemoryMaxRatio` of the
    /// machine's memory (`isSuggestPullingFromSlave`: it reads from disk now, so let a slave
    /// bear it), else the group's `brokerId` (0). A slave answers the same way, so a consumer
    /// that came to it while the master was away goes back once the master is reachable.
    /// RocketMQ also judges a pull that returned nothing "slow" by the whole CommitLog's size;
    /// here only what was returned counts.
    fn suggest_which_broker_id(&self, group: &str, result: &crate::store::GetResult) -> u64 {
        if !self.config.replication.slave_read_enable {
            return 0;
        }
        let (broker_id, when_slow) = self.subscription_groups().get(group).map_or((0, 1), |g| {
            (g.broker_id, g.which_broker_when_consume_slowly)
        });
        let memory_bytes = self.in_memory_bytes();
        let behind_bytes = result
            .records
            .last()
            .and_then(|r| crate::message::RecordView::parse(r, false).ok())
            .map(|v| {
                self.store
                    .written_offset()
                    .0
                    .saturating_sub(v.physical_offset.max(0) as u64)
            });
        let slow = behind_bytes.is_some_and(|behind| behind > memory_bytes);
        let id = if slow { when_slow } else { broker_id };
        id.max(0) as u64
    }

    /// Re-runs a held pull (no suspension, no offset commit) and answers it.
    fn answer_held_pull(&mut self, now_ms: u64, held: HeldPull) {
        let response = match self.run_pull(now_ms, held.conn, &held.request, false, false) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => RemotingCommand::response_to(
                &held.request,
                response::SYSTEM_ERROR,
                Some(e.to_string()),
            ),
        };
        self.reply(held.conn, &held.request, response);
    }

    /// A message arrived in (topic, queue): answer the pulls waiting for it.
    pub(super) fn wake_held_pulls(&mut self, now_ms: u64, topic: &str, queue_id: i32) {
        self.wake_held_pops(now_ms, topic, queue_id);
        let key = (topic.to_owned(), queue_id);
        if !self.held_pulls.by_queue.contains_key(&key) {
            return;
        }
        let max = self.store.max_offset(topic, queue_id).0 as i64;
        let woken = self
            .held_pulls
            .take_where(|k, p| *k == key && p.queue_offset < max);
        for held in woken {
            self.answer_held_pull(now_ms, held);
        }
    }

    /// Records arrived in any queue (a slave's replicated appends): answer every held pull
    /// whose queue now has what it waits for. RocketMQ's slaves leave such pulls to their
    /// 5 s hold check; a consumer that moved to a slave would wait that long for each message.
    pub(super) fn wake_all_held_pulls(&mut self, now_ms: u64) {
        let keys: Vec<(String, i32)> = self.held_pulls.by_queue.keys().cloned().collect();
        for (topic, queue_id) in keys {
            self.wake_held_pulls(now_ms, &topic, queue_id);
        }
    }

    /// Answers held pulls whose deadline has passed (`all`: every held pull, at shutdown).
    pub(super) fn expire_held_pulls(&mut self, now_ms: u64, all: bool) {
        let due = self
            .held_pulls
            .take_where(|_, p| all || p.deadline_ms <= now_ms);
        for held in due {
            self.answer_held_pull(now_ms, held);
        }
    }
}
