//! SendMessage: each message written as a SEND_MESSAGE_V2 on the client's virtual connection.
//!
//! (Not yet served: every message is answered NOT_IMPLEMENTED.)

use super::status::status;
use super::v2::{self, Code};
use super::{CallId, ClientRef, GrpcReply};
use crate::broker::Broker;
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;

/// What one SEND_MESSAGE_V2 of a call waits for.
#[derive(Debug)]
pub(crate) struct SendPending {
    /// The message's index in the request.
    pub(crate) index: usize,
}

/// A SendMessage call's results so far.
#[derive(Debug, Default)]
pub(crate) struct SendCall {
    pub(crate) entries: Vec<Option<v2::SendResultEntry>>,
}

impl<S: SegmentStorage> Broker<S> {
    pub(super) fn grpc_send_message(
        &mut self,
        _now_ms: u64,
        call: CallId,
        _client: &ClientRef,
        request: v2::SendMessageRequest,
    ) {
        let entries = request
            .messages
            .iter()
            .map(|m| v2::SendResultEntry {
                status: Some(status(
                    Code::NotImplemented,
                    "SendMessage is not served yet",
                )),
                message_id: m
                    .system_properties
                    .as_ref()
                    .map(|p| p.message_id.clone())
                    .unwrap_or_default(),
                ..Default::default()
            })
            .collect();
        self.gateway.reply(
            call,
            GrpcReply::SendMessage(v2::SendMessageResponse {
                status: Some(status(
                    Code::NotImplemented,
                    "SendMessage is not served yet",
                )),
                entries,
            }),
        );
    }

    pub(super) fn grpc_send_answered(
        &mut self,
        _now_ms: u64,
        _call: CallId,
        _pending: SendPending,
        _response: RemotingCommand,
    ) {
    }
}
