//! Admin requests the broker passes on to a live consumer and whose answer it passes back:
//! GET_CONSUMER_RUNNING_INFO (307, mqadmin consumerStatus) and CONSUME_MESSAGE_DIRECTLY (309,
//! mqadmin consumeMessage / the dashboard's "resend").
//!
//! ```text
//!  admin ──307/309──▶ broker ──same code, same header, new opaque──▶ consumer (by group + clientId)
//!  admin ◀──the consumer's answer as it is (code, remark, body)── broker ◀──────┘
//! ```
//!
//! As RocketMQ's `callConsumer`: the consumer is found by group and client id (not online:
//! SYSTEM_ERROR), its answer goes back untouched (so each client's own body shape reaches the
//! tool that understands it), and an answer that takes longer than 10 s is CONSUME_MSG_TIMEOUT.
//! For 309 the body the consumer gets is the stored record the offset message id names.

use std::collections::BTreeMap;

use super::Broker;
use crate::message::msg_id::decode_offset_msg_id;
use crate::remoting::codes::{request, response};
use crate::remoting::{HeaderError, RemotingCommand};
use crate::store::{CommitLogOffset, SegmentStorage};
use crate::ConnId;

/// How long the consumer has to answer (RocketMQ's `callClient` timeout).
pub const RELAY_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug)]
struct Relay {
    admin: ConnId,
    request: RemotingCommand,
    consumer: ConnId,
    what: String,
    deadline_ms: u64,
}

/// Relayed requests in flight, by the opaque the broker gave them.
#[derive(Debug, Default)]
pub(super) struct Relays {
    by_opaque: BTreeMap<i32, Relay>,
}

impl Relays {
    pub fn earliest_deadline_ms(&self) -> Option<u64> {
        self.by_opaque.values().map(|r| r.deadline_ms).min()
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// GET_CONSUMER_RUNNING_INFO (307) and CONSUME_MESSAGE_DIRECTLY (309): `None` once relayed
    /// (the answer comes with the consumer's).
    pub(super) fn handle_relay(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        req: &RemotingCommand,
    ) -> Result<Option<RemotingCommand>, HeaderError> {
        let group = req.ext_str("consumerGroup")?.to_owned();
        let client_id = req.ext("clientId").unwrap_or("").to_owned();
        let what = format!("{group} {client_id}");
        let consumer = self.clients.consumers.get(&group).and_then(|g| {
            g.channels
                .iter()
                .find(|(_, ch)| ch.client_id == client_id)
                .map(|(c, _)| *c)
        });
        let Some(consumer) = consumer else {
            return Ok(Some(RemotingCommand::response_to(
                req,
                response::SYSTEM_ERROR,
                Some(format!("The Consumer <{group}> <{client_id}> not online")),
            )));
        };
        let mut relayed = RemotingCommand::request(req.code);
        relayed.ext_fields = req.ext_fields.clone();
        relayed.body = req.body.clone();
        if req.code == request::CONSUME_MESSAGE_DIRECTLY {
            relayed
                .ext_fields
                .insert("brokerName".to_owned(), self.config.broker_name.clone());
            let msg_id = req.ext("msgId").unwrap_or("");
            let record = decode_offset_msg_id(msg_id).ok().and_then(|(_, offset)| {
                self.store
                    .read_record(CommitLogOffset(offset))
                    .ok()
                    .flatten()
            });
            match record {
                Some(record) => relayed.body = record,
                None => {
                    return Ok(Some(RemotingCommand::response_to(
                        req,
                        response::SYSTEM_ERROR,
                        Some(format!("can not find message by the id {msg_id}")),
                    )))
                }
            }
        }
        relayed.opaque = self.next_opaque();
        self.relays.by_opaque.insert(
            relayed.opaque,
            Relay {
                admin: conn,
                request: req.clone(),
                consumer,
                what,
                deadline_ms: now_ms + RELAY_TIMEOUT_MS,
            },
        );
        self.outputs.push_back(super::BrokerOutput::Send {
            conn: consumer,
            command: relayed,
        });
        Ok(None)
    }

    /// A response from a client: the answer to a relayed request goes back to its admin.
    /// Returns whether it was one.
    pub(super) fn relay_answered(&mut self, conn: ConnId, answer: &RemotingCommand) -> bool {
        let ours = self
            .relays
            .by_opaque
            .get(&answer.opaque)
            .is_some_and(|r| r.consumer == conn);
        if !ours {
            return false;
        }
        let Some(relay) = self.relays.by_opaque.remove(&answer.opaque) else {
            return false;
        };
        let mut back =
            RemotingCommand::response_to(&relay.request, answer.code, answer.remark.clone());
        back.ext_fields = answer.ext_fields.clone();
        back.body = answer.body.clone();
        self.reply(relay.admin, &relay.request, back);
        true
    }

    /// Relays whose consumer did not answer in time: CONSUME_MSG_TIMEOUT.
    pub(super) fn expire_relays(&mut self, now_ms: u64) {
        let expired: Vec<i32> = self
            .relays
            .by_opaque
            .iter()
            .filter(|(_, r)| r.deadline_ms <= now_ms)
            .map(|(opaque, _)| *opaque)
            .collect();
        for opaque in expired {
            if let Some(r) = self.relays.by_opaque.remove(&opaque) {
                let remark = format!(
                    "consumer <{}> Timeout: no answer within {RELAY_TIMEOUT_MS} ms",
                    r.what
                );
                let answer = RemotingCommand::response_to(
                    &r.request,
                    response::CONSUME_MSG_TIMEOUT,
                    Some(remark),
                );
                self.reply(r.admin, &r.request, answer);
            }
        }
    }

    /// A connection closed: its relays as admin are dropped, those waiting on it as consumer
    /// are answered SYSTEM_ERROR.
    pub(super) fn drop_connection_relays(&mut self, conn: ConnId) {
        self.relays.by_opaque.retain(|_, r| r.admin != conn);
        let failed: Vec<i32> = self
            .relays
            .by_opaque
            .iter()
            .filter(|(_, r)| r.consumer == conn)
            .map(|(opaque, _)| *opaque)
            .collect();
        for opaque in failed {
            if let Some(r) = self.relays.by_opaque.remove(&opaque) {
                let answer = RemotingCommand::response_to(
                    &r.request,
                    response::SYSTEM_ERROR,
                    Some(format!(
                        "invoke consumer <{}> Exception: its connection closed",
                        r.what
                    )),
                );
                self.reply(r.admin, &r.request, answer);
            }
        }
    }
}
