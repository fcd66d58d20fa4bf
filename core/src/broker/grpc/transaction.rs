//! EndTransaction, the orphan-transaction check over Telemetry, and RecallMessage.
//!
//! A transactional message is stored as a half message whose producer group is its topic (the
//! proxy's rule), so the broker's END_TRANSACTION and its check need no state of the gateway:
//! the `transaction_id` SendMessage returns carries the half message's CommitLog offset and
//! queue offset (see [`encode_transaction_id`]), which is what END_TRANSACTION names. The
//! broker's CHECK_TRANSACTION_STATE to a gRPC client becomes a RecoverOrphanedTransactionCommand
//! on one of the client's Telemetry streams, with the full message (the Rust 5.0.0 client
//! unwraps it) and a transaction id made the same way; the client answers with EndTransaction
//! (SOURCE_SERVER_CHECK).

use super::message::{to_grpc_message, wrap_namespace};
use super::status::{of_remoting, status};
use super::v2::{self, Code};
use super::{CallId, ClientRef, GrpcOutput, GrpcReply, Pending, PendingKind};
use crate::broker::Broker;
use crate::client::requests::end_transaction;
use crate::message::{keys, sys_flag, MessageRecord};
use crate::remoting::headers::{CheckTransactionStateRequestHeader, EndTransactionRequestHeader};
use crate::remoting::RemotingCommand;
use crate::store::{CommitLogOffset, SegmentStorage};
use crate::topic::validate_topic_name;
use crate::ConnId;

/// The property the broker stores a half message's transaction id in (RocketMQ's
/// `__transactionId__`).
const HALF_TRANSACTION_ID: &str = "__transactionId__";

/// What an END_TRANSACTION of a call waits for.
#[derive(Debug)]
pub(crate) struct EndPending {}

/// The transaction id of a half message: its CommitLog offset and its queue offset in the half
/// topic, 16 upper-case hex digits each.
pub fn encode_transaction_id(commit_log_offset: u64, tran_state_table_offset: u64) -> String {
    format!("{commit_log_offset:016X}{tran_state_table_offset:016X}")
}

/// The offsets of [`encode_transaction_id`], `None` for anything else.
pub fn decode_transaction_id(id: &str) -> Option<(i64, i64)> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let commit_log = u64::from_str_radix(&id[..16], 16).ok()?;
    let table = u64::from_str_radix(&id[16..], 16).ok()?;
    Some((i64::try_from(commit_log).ok()?, i64::try_from(table).ok()?))
}

impl<S: SegmentStorage> Broker<S> {
    pub(super) fn grpc_end_transaction(
        &mut self,
        now_ms: u64,
        call: CallId,
        client: &ClientRef,
        request: v2::EndTransactionRequest,
    ) {
        let refuse = |this: &mut Self, code: Code, message: String| {
            this.gateway.reply(
                call,
                GrpcReply::EndTransaction(v2::EndTransactionResponse {
                    status: Some(status(code, message)),
                }),
            );
        };
        let Some(topic) = request.topic.as_ref().filter(|t| !t.name.is_empty()) else {
            return refuse(self, Code::IllegalTopic, "no topic named".to_owned());
        };
        if let Err(reason) = validate_topic_name(&topic.name) {
            return refuse(self, Code::IllegalTopic, reason);
        }
        let topic = wrap_namespace(topic, &client.meta.namespace);
        let Some((commit_log_offset, tran_state_table_offset)) =
            decode_transaction_id(&request.transaction_id)
        else {
            return refuse(
                self,
                Code::InvalidTransactionId,
                format!("transaction id {:?} is not valid", request.transaction_id),
            );
        };
        let commit_or_rollback = match v2::TransactionResolution::try_from(request.resolution) {
            Ok(v2::TransactionResolution::Commit) => sys_flag::TRANSACTION_COMMIT,
            Ok(v2::TransactionResolution::Rollback) => sys_flag::TRANSACTION_ROLLBACK,
            _ => {
                return refuse(
                    self,
                    Code::BadRequest,
                    format!(
                        "resolution {} is neither COMMIT nor ROLLBACK",
                        request.resolution
                    ),
                )
            }
        };
        let header = EndTransactionRequestHeader {
            producer_group: topic.clone(),
            tran_state_table_offset,
            commit_log_offset,
            commit_or_rollback,
            from_transaction_check: request.source
                == v2::TransactionSource::SourceServerCheck as i32,
            msg_id: request.message_id.clone(),
            transaction_id: Some(request.transaction_id.clone()),
            topic: Some(topic),
        };
        // Written as a request (a remoting producer sends it oneway), so the broker's answer
        // tells the client whether the half message was found.
        let command = end_transaction(&header, None);
        self.grpc_submit(
            now_ms,
            client.conn,
            command,
            Pending {
                call: Some(call),
                what: PendingKind::EndTransaction(EndPending {}),
            },
        );
    }

    pub(super) fn grpc_end_transaction_answered(
        &mut self,
        _now_ms: u64,
        call: CallId,
        _pending: EndPending,
        response: RemotingCommand,
    ) {
        self.gateway.reply(
            call,
            GrpcReply::EndTransaction(v2::EndTransactionResponse {
                status: Some(of_remoting(response.code, response.remark.as_deref())),
            }),
        );
    }

    /// The broker asks a producer about a half message: a RecoverOrphanedTransactionCommand
    /// on the client's Telemetry stream.
    pub(super) fn grpc_check_transaction(
        &mut self,
        _now_ms: u64,
        conn: ConnId,
        command: RemotingCommand,
    ) {
        let Ok(header) = CheckTransactionStateRequestHeader::parse(&command) else {
            return;
        };
        let Some(key) = self.gateway.by_conn.get(&conn).cloned() else {
            return;
        };
        let Some(client) = self.gateway.clients.get(&key) else {
            return;
        };
        // A client without a Telemetry stream cannot be asked; the broker checks again later.
        let Some(&stream) = client.streams.iter().next() else {
            return;
        };
        let namespace = client.meta.namespace.clone();
        let Some(record) = self.grpc_checked_message(&command, &header) else {
            return;
        };
        let (Ok(commit_log_offset), Ok(table_offset)) = (
            u64::try_from(header.commit_log_offset),
            u64::try_from(header.tran_state_table_offset),
        ) else {
            return;
        };
        let body = record.body.clone();
        let mut message = to_grpc_message(&record, body, &namespace);
        // The broker's own bookkeeping of the half message, not something the client set.
        message.user_properties.remove(HALF_TRANSACTION_ID);
        self.gateway.outputs.push_back(GrpcOutput::Telemetry {
            stream,
            command: Box::new(v2::TelemetryCommand {
                status: None,
                command: Some(
                    v2::telemetry_command::Command::RecoverOrphanedTransactionCommand(
                        v2::RecoverOrphanedTransactionCommand {
                            message: Some(message),
                            transaction_id: encode_transaction_id(commit_log_offset, table_offset),
                        },
                    ),
                ),
            }),
        });
    }

    /// The message a check asks about, in its real topic: from the check's body, or else read
    /// from the store at the half message's CommitLog offset.
    fn grpc_checked_message(
        &self,
        command: &RemotingCommand,
        header: &CheckTransactionStateRequestHeader,
    ) -> Option<MessageRecord> {
        if let Ok(record) = MessageRecord::decode(&command.body, false) {
            return Some(record);
        }
        let offset = u64::try_from(header.commit_log_offset).ok()?;
        let bytes = self.store.read_record(CommitLogOffset(offset)).ok()??;
        let mut record = MessageRecord::decode(&bytes, false).ok()?;
        if let Some(topic) = record.properties.get(keys::REAL_TOPIC) {
            record.topic = topic.to_owned();
        }
        if let Some(queue) = record
            .properties
            .get(keys::REAL_QID)
            .and_then(|q| q.parse().ok())
        {
            record.queue_id = queue;
        }
        Some(record)
    }

    pub(super) fn grpc_recall_message(
        &mut self,
        _now_ms: u64,
        call: CallId,
        _client: &ClientRef,
        _request: v2::RecallMessageRequest,
    ) {
        self.gateway.reply(
            call,
            GrpcReply::RecallMessage(v2::RecallMessageResponse {
                status: Some(status(
                    Code::NotImplemented,
                    "RecallMessage is not served yet",
                )),
                message_id: String::new(),
            }),
        );
    }
}
