//! AckMessage, ChangeInvisibleDuration and ForwardMessageToDeadLetterQueue: the broker's
//! ACK_MESSAGE, CHANGE_MESSAGE_INVISIBLETIME and a send to the group's DLQ, on the receipt
//! handles ReceiveMessage gave out.
//!
//! (Not yet served: answered NOT_IMPLEMENTED.)

use super::status::status;
use super::v2::{self, Code};
use super::{CallId, ClientRef, GrpcReply};
use crate::broker::Broker;
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;

#[derive(Debug)]
pub(crate) struct AckPending {}

#[derive(Debug)]
pub(crate) struct ChangePending {}

#[derive(Debug)]
pub(crate) struct ForwardPending {}

impl<S: SegmentStorage> Broker<S> {
    pub(super) fn grpc_ack_message(
        &mut self,
        _now_ms: u64,
        call: CallId,
        _client: &ClientRef,
        request: v2::AckMessageRequest,
    ) {
        let entries = request
            .entries
            .iter()
            .map(|e| v2::AckMessageResultEntry {
                message_id: e.message_id.clone(),
                receipt_handle: e.receipt_handle.clone(),
                status: Some(status(Code::NotImplemented, "AckMessage is not served yet")),
            })
            .collect();
        self.gateway.reply(
            call,
            GrpcReply::AckMessage(v2::AckMessageResponse {
                status: Some(status(Code::NotImplemented, "AckMessage is not served yet")),
                entries,
            }),
        );
    }

    pub(super) fn grpc_ack_answered(
        &mut self,
        _now_ms: u64,
        _call: CallId,
        _pending: AckPending,
        _response: RemotingCommand,
    ) {
    }

    pub(super) fn grpc_change_invisible_duration(
        &mut self,
        _now_ms: u64,
        call: CallId,
        _client: &ClientRef,
        _request: v2::ChangeInvisibleDurationRequest,
    ) {
        self.gateway.reply(
            call,
            GrpcReply::ChangeInvisibleDuration(v2::ChangeInvisibleDurationResponse {
                status: Some(status(
                    Code::NotImplemented,
                    "ChangeInvisibleDuration is not served yet",
                )),
                receipt_handle: String::new(),
            }),
        );
    }

    pub(super) fn grpc_change_invisible_answered(
        &mut self,
        _now_ms: u64,
        _call: CallId,
        _pending: ChangePending,
        _response: RemotingCommand,
    ) {
    }

    pub(super) fn grpc_forward_to_dlq(
        &mut self,
        _now_ms: u64,
        call: CallId,
        _client: &ClientRef,
        _request: v2::ForwardMessageToDeadLetterQueueRequest,
    ) {
        self.gateway.reply(
            call,
            GrpcReply::ForwardMessageToDeadLetterQueue(
                v2::ForwardMessageToDeadLetterQueueResponse {
                    status: Some(status(
                        Code::NotImplemented,
                        "ForwardMessageToDeadLetterQueue is not served yet",
                    )),
                },
            ),
        );
    }

    pub(super) fn grpc_forward_to_dlq_answered(
        &mut self,
        _now_ms: u64,
        _call: CallId,
        _pending: ForwardPending,
        _response: RemotingCommand,
    ) {
    }
}
