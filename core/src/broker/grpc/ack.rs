//! AckMessage, ChangeInvisibleDuration and ForwardMessageToDeadLetterQueue: the broker's
//! ACK_MESSAGE, CHANGE_MESSAGE_INVISIBLETIME and CONSUMER_SEND_MSG_BACK, on the receipt
//! handles ReceiveMessage gave out ([`ReceiptHandle`]).
//!
//! Followed: RocketMQ 5.3.3's proxy, `AckMessageActivity`, `ChangeInvisibleDurationActivity`,
//! `ForwardMessageToDLQActivity` and `ConsumerProcessor`/`ProducerProcessor`:
//! * a handle that does not decode, or whose invisible time has passed, is
//!   INVALID_RECEIPT_HANDLE before the broker is asked (`ReceiptHandle.isExpired`);
//! * a handle that decodes but names nothing in flight (acked already, brought back already, of
//!   another group) is INVALID_RECEIPT_HANDLE too: the broker would answer such an ack SUCCESS
//!   and write nothing, and the proxy relays that; a clear refusal tells a client its ack came
//!   too late;
//! * one result entry per ack entry; the response's status is the entry's for one entry, OK when
//!   all are OK, else MULTIPLE_RESULTS;
//! * a forward is a send-back with delay level −1 (straight to `%DLQ%<group>`) of the message at
//!   the handle's CommitLog offset, then an ack of the handle; the client hears the send-back's
//!   result.

use super::message::{ms_of_duration, wrap_namespace};
use super::receive::{ReceiptHandle, MAX_INVISIBLE_MS};
use super::status::{is_ok, of_remoting, ok, status};
use super::v2::{self, Code};
use super::{CallId, ClientRef, GrpcReply, Pending, PendingKind};
use crate::broker::pop::checkpoints::CkKey;
use crate::broker::Broker;
use crate::remoting::codes::{request, response};
use crate::remoting::pop::{
    AckMessageRequestHeader, ChangeInvisibleTimeResponseHeader, ExtraInfo, ORDER_REVIVE_QUEUE_ID,
};
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;
use crate::ConnId;

/// One entry of an AckMessage in flight.
#[derive(Debug)]
pub(crate) struct AckPending {
    index: usize,
}

/// An AckMessage's entries, answered once every one is.
#[derive(Debug)]
pub(crate) struct AckCall {
    entries: Vec<v2::AckMessageResultEntry>,
    /// Entries still waiting for the broker.
    waiting: usize,
}

#[derive(Debug)]
pub(crate) struct ChangePending {
    /// The handle being replaced: the new one keeps its queue, flag and CommitLog offset.
    old: ReceiptHandle,
}

#[derive(Debug)]
pub(crate) struct ForwardPending {
    /// The ack that follows a successful send-back, on the client's connection.
    ack: RemotingCommand,
    conn: ConnId,
}

/// The group, the topic read (the POP retry topic of a redelivery) and the handle of an ack or
/// change, or why there is none.
struct Target {
    group: String,
    real_topic: String,
    handle: ReceiptHandle,
}

fn invalid_handle(message: impl Into<String>) -> v2::Status {
    status(Code::InvalidReceiptHandle, message)
}

/// A broker's answer to an ack or change: codes that say the handle names nothing any more
/// become INVALID_RECEIPT_HANDLE.
fn ack_status(response: &RemotingCommand) -> v2::Status {
    match response.code {
        response::NO_MESSAGE | response::MESSAGE_ILLEGAL => invalid_handle(
            response
                .remark
                .clone()
                .unwrap_or_else(|| "the receipt handle names no message in flight".to_owned()),
        ),
        code => of_remoting(code, response.remark.as_deref()),
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// Decodes and checks a handle against the call's group and topic.
    fn grpc_ack_target(
        &self,
        now_ms: u64,
        client: &ClientRef,
        group: Option<&v2::Resource>,
        topic: Option<&v2::Resource>,
        receipt_handle: &str,
        check_expiry: bool,
    ) -> Result<Target, v2::Status> {
        let namespace = client.meta.namespace.as_str();
        let group = match group {
            Some(g) if !g.name.is_empty() => wrap_namespace(g, namespace),
            _ => {
                return Err(status(
                    Code::IllegalConsumerGroup,
                    "the request names no consumer group",
                ))
            }
        };
        let topic = match topic {
            Some(t) if !t.name.is_empty() => wrap_namespace(t, namespace),
            _ => return Err(status(Code::IllegalTopic, "the request names no topic")),
        };
        let Some(handle) = ReceiptHandle::parse(receipt_handle) else {
            return Err(invalid_handle(format!(
                "the receipt handle {receipt_handle:?} is not one this broker gave out"
            )));
        };
        if handle.info.broker_name != self.config.broker_name {
            return Err(invalid_handle(format!(
                "the receipt handle belongs to broker {}, not {}",
                handle.info.broker_name, self.config.broker_name
            )));
        }
        if check_expiry && handle.visible_at_ms() <= now_ms as i64 {
            return Err(invalid_handle("the receipt handle is expired"));
        }
        let real_topic = handle.info.retry.real_topic(&topic, &group);
        if !self.topics.topics.contains_key(&real_topic) {
            return Err(status(
                Code::TopicNotFound,
                format!("topic {real_topic} does not exist"),
            ));
        }
        // An orderly handle's batch lives in the order table, which the broker checks itself.
        if handle.info.revive_qid != ORDER_REVIVE_QUEUE_ID {
            let key = CkKey {
                topic: real_topic.clone(),
                group: group.clone(),
                queue_id: handle.info.queue_id,
                start_offset: handle.info.ck_start_offset,
                pop_time_ms: handle.info.pop_time_ms,
                broker_name: handle.info.broker_name.clone(),
            };
            if !self.pop.checkpoints.is_pending(&key, handle.queue_offset()) {
                return Err(invalid_handle(
                    "the message is not in flight under this receipt handle: it was acknowledged, or has been delivered again",
                ));
            }
        }
        Ok(Target {
            group,
            real_topic,
            handle,
        })
    }

    fn ack_command(code: i32, target: &Target) -> RemotingCommand {
        let mut command = RemotingCommand::request(code);
        AckMessageRequestHeader {
            consumer_group: target.group.clone(),
            topic: target.real_topic.clone(),
            queue_id: target.handle.info.queue_id,
            extra_info: target.handle.info.encode(),
            offset: target.handle.queue_offset(),
        }
        .write_to(&mut command);
        command
    }

    pub(super) fn grpc_ack_message(
        &mut self,
        now_ms: u64,
        call: CallId,
        client: &ClientRef,
        request: v2::AckMessageRequest,
    ) {
        if request.entries.is_empty() {
            return self.gateway.reply(
                call,
                GrpcReply::AckMessage(v2::AckMessageResponse {
                    status: Some(status(Code::BadRequest, "the request has no entries")),
                    entries: Vec::new(),
                }),
            );
        }
        let mut entries = Vec::with_capacity(request.entries.len());
        let mut commands = Vec::new();
        for (index, entry) in request.entries.iter().enumerate() {
            let target = self.grpc_ack_target(
                now_ms,
                client,
                request.group.as_ref(),
                request.topic.as_ref(),
                &entry.receipt_handle,
                true,
            );
            let entry_status = match target {
                Ok(target) => {
                    commands.push((index, Self::ack_command(request::ACK_MESSAGE, &target)));
                    // Replaced by the broker's answer.
                    status(Code::InternalServerError, "no answer from the broker")
                }
                Err(s) => s,
            };
            entries.push(v2::AckMessageResultEntry {
                message_id: entry.message_id.clone(),
                receipt_handle: entry.receipt_handle.clone(),
                status: Some(entry_status),
            });
        }
        self.gateway.acks.insert(
            call,
            AckCall {
                entries,
                waiting: commands.len(),
            },
        );
        if commands.is_empty() {
            return self.grpc_ack_finish(call);
        }
        for (index, command) in commands {
            self.grpc_submit(
                now_ms,
                client.conn,
                command,
                Pending {
                    call: Some(call),
                    what: PendingKind::Ack(AckPending { index }),
                },
            );
        }
    }

    pub(super) fn grpc_ack_answered(
        &mut self,
        _now_ms: u64,
        call: CallId,
        pending: AckPending,
        response: RemotingCommand,
    ) {
        let Some(ack) = self.gateway.acks.get_mut(&call) else {
            return;
        };
        if let Some(entry) = ack.entries.get_mut(pending.index) {
            entry.status = Some(ack_status(&response));
        }
        ack.waiting = ack.waiting.saturating_sub(1);
        if ack.waiting == 0 {
            self.grpc_ack_finish(call);
        }
    }

    fn grpc_ack_finish(&mut self, call: CallId) {
        let Some(ack) = self.gateway.acks.remove(&call) else {
            return;
        };
        let statuses: Vec<&v2::Status> = ack
            .entries
            .iter()
            .filter_map(|e| e.status.as_ref())
            .collect();
        let overall = if statuses.len() == 1 {
            statuses[0].clone()
        } else if statuses.iter().all(|s| is_ok(s)) {
            ok()
        } else {
            status(Code::MultipleResults, "some entries failed: see each entry")
        };
        self.gateway.reply(
            call,
            GrpcReply::AckMessage(v2::AckMessageResponse {
                status: Some(overall),
                entries: ack.entries,
            }),
        );
    }

    pub(super) fn grpc_change_invisible_duration(
        &mut self,
        now_ms: u64,
        call: CallId,
        client: &ClientRef,
        request: v2::ChangeInvisibleDurationRequest,
    ) {
        let refuse = |s: v2::Status| {
            GrpcReply::ChangeInvisibleDuration(v2::ChangeInvisibleDurationResponse {
                status: Some(s),
                receipt_handle: String::new(),
            })
        };
        // The proxy's `validateInvisibleTime` without a minimum: a push consumer's nack asks
        // for its retry back-off, which may be short.
        let invisible_ms = match request.invisible_duration.as_ref() {
            Some(d) if d.seconds >= 0 && d.nanos >= 0 && ms_of_duration(d) <= MAX_INVISIBLE_MS => {
                ms_of_duration(d)
            }
            Some(d) => {
                return self.gateway.reply(
                    call,
                    refuse(status(
                        Code::IllegalInvisibleTime,
                        format!(
                            "the invisible duration {}s {}ns is out of range [0, {MAX_INVISIBLE_MS} ms]",
                            d.seconds, d.nanos
                        ),
                    )),
                )
            }
            None => {
                return self.gateway.reply(
                    call,
                    refuse(status(
                        Code::IllegalInvisibleTime,
                        "the request sets no invisible_duration",
                    )),
                )
            }
        };
        let target = match self.grpc_ack_target(
            now_ms,
            client,
            request.group.as_ref(),
            request.topic.as_ref(),
            &request.receipt_handle,
            true,
        ) {
            Ok(t) => t,
            Err(s) => return self.gateway.reply(call, refuse(s)),
        };
        let mut command = Self::ack_command(request::CHANGE_MESSAGE_INVISIBLETIME, &target);
        command
            .ext_fields
            .insert("invisibleTime".to_owned(), invisible_ms.to_string());
        self.grpc_submit(
            now_ms,
            client.conn,
            command,
            Pending {
                call: Some(call),
                what: PendingKind::ChangeInvisible(ChangePending { old: target.handle }),
            },
        );
    }

    pub(super) fn grpc_change_invisible_answered(
        &mut self,
        _now_ms: u64,
        call: CallId,
        pending: ChangePending,
        response: RemotingCommand,
    ) {
        let header = ChangeInvisibleTimeResponseHeader::parse(&response).ok();
        let reply = match (response.code, header) {
            (response::SUCCESS, Some(h)) if h.pop_time_ms > 0 => {
                let old = pending.old;
                let offset = old.queue_offset();
                // The broker's new checkpoint starts at the message itself (an orderly
                // batch keeps its pop time and start).
                let ck_start_offset = if h.revive_qid == ORDER_REVIVE_QUEUE_ID {
                    old.info.ck_start_offset
                } else {
                    offset
                };
                let handle = ReceiptHandle {
                    info: ExtraInfo {
                        ck_start_offset,
                        pop_time_ms: h.pop_time_ms,
                        invisible_time_ms: h.invisible_time_ms,
                        revive_qid: h.revive_qid,
                        ..old.info
                    },
                    commit_log_offset: old.commit_log_offset,
                };
                v2::ChangeInvisibleDurationResponse {
                    status: Some(ok()),
                    receipt_handle: handle.encode(),
                }
            }
            // SUCCESS without a new checkpoint: an orderly message already acked.
            (response::SUCCESS, _) => v2::ChangeInvisibleDurationResponse {
                status: Some(invalid_handle("the message was acknowledged already")),
                receipt_handle: String::new(),
            },
            _ => v2::ChangeInvisibleDurationResponse {
                status: Some(ack_status(&response)),
                receipt_handle: String::new(),
            },
        };
        self.gateway
            .reply(call, GrpcReply::ChangeInvisibleDuration(reply));
    }

    pub(super) fn grpc_forward_to_dlq(
        &mut self,
        now_ms: u64,
        call: CallId,
        client: &ClientRef,
        request: v2::ForwardMessageToDeadLetterQueueRequest,
    ) {
        let refuse = |s: v2::Status| {
            GrpcReply::ForwardMessageToDeadLetterQueue(
                v2::ForwardMessageToDeadLetterQueueResponse { status: Some(s) },
            )
        };
        // No expiry check (as the proxy): a FIFO push consumer forwards after retrying locally
        // for as long as its back-off says, which may outlast the invisible time.
        let target = match self.grpc_ack_target(
            now_ms,
            client,
            request.group.as_ref(),
            request.topic.as_ref(),
            &request.receipt_handle,
            false,
        ) {
            Ok(t) => t,
            Err(s) => return self.gateway.reply(call, refuse(s)),
        };
        if target.handle.commit_log_offset < 0 {
            return self.gateway.reply(
                call,
                refuse(invalid_handle("the receipt handle has no CommitLog offset")),
            );
        }
        let mut send_back = RemotingCommand::request(request::CONSUMER_SEND_MSG_BACK)
            .with_ext("offset", target.handle.commit_log_offset)
            .with_ext("group", &target.group)
            .with_ext("delayLevel", -1)
            .with_ext("originTopic", &target.real_topic)
            .with_ext("maxReconsumeTimes", 0)
            .with_ext("unitMode", false);
        if !request.message_id.is_empty() {
            send_back = send_back.with_ext("originMsgId", &request.message_id);
        }
        let ack = Self::ack_command(request::ACK_MESSAGE, &target);
        self.grpc_submit(
            now_ms,
            client.conn,
            send_back,
            Pending {
                call: Some(call),
                what: PendingKind::ForwardToDlq(ForwardPending {
                    ack,
                    conn: client.conn,
                }),
            },
        );
    }

    pub(super) fn grpc_forward_to_dlq_answered(
        &mut self,
        now_ms: u64,
        call: CallId,
        pending: ForwardPending,
        response: RemotingCommand,
    ) {
        let status = of_remoting(response.code, response.remark.as_deref());
        if is_ok(&status) {
            // The message now lives in the DLQ: the group is done with it. The ack's answer
            // is not waited for (as the proxy); a lost ack brings the message back once, and
            // the client forwards it again.
            self.grpc_submit(
                now_ms,
                pending.conn,
                pending.ack,
                Pending {
                    call: None,
                    what: PendingKind::Ignored,
                },
            );
        }
        self.gateway.reply(
            call,
            GrpcReply::ForwardMessageToDeadLetterQueue(
                v2::ForwardMessageToDeadLetterQueueResponse {
                    status: Some(status),
                },
            ),
        );
    }
}
