//! EndTransaction, the orphan-transaction check over Telemetry, and RecallMessage.
//!
//! (Not yet served: answered NOT_IMPLEMENTED.)

use super::status::status;
use super::v2::{self, Code};
use super::{CallId, ClientRef, GrpcReply};
use crate::broker::Broker;
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;
use crate::ConnId;

/// What an END_TRANSACTION of a call waits for.
#[derive(Debug)]
pub(crate) struct EndPending {}

impl<S: SegmentStorage> Broker<S> {
    pub(super) fn grpc_end_transaction(
        &mut self,
        _now_ms: u64,
        call: CallId,
        _client: &ClientRef,
        _request: v2::EndTransactionRequest,
    ) {
        self.gateway.reply(
            call,
            GrpcReply::EndTransaction(v2::EndTransactionResponse {
                status: Some(status(
                    Code::NotImplemented,
                    "EndTransaction is not served yet",
                )),
            }),
        );
    }

    pub(super) fn grpc_end_transaction_answered(
        &mut self,
        _now_ms: u64,
        _call: CallId,
        _pending: EndPending,
        _response: RemotingCommand,
    ) {
    }

    /// The broker asks a producer about a half message: a RecoverOrphanedTransactionCommand
    /// on the client's Telemetry stream.
    pub(super) fn grpc_check_transaction(
        &mut self,
        _now_ms: u64,
        _conn: ConnId,
        _command: RemotingCommand,
    ) {
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
