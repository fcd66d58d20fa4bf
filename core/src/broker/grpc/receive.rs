//! ReceiveMessage: a broker POP on the client's virtual connection, its answer as a stream of
//! frames (status, messages, delivery timestamp).
//!
//! (Not yet served: answered NOT_IMPLEMENTED.)

use super::message::timestamp_of_ms;
use super::status::status;
use super::v2::{self, Code};
use super::{CallId, ClientRef, GrpcReply};
use crate::broker::Broker;
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;

/// What a POP_MESSAGE of a call waits for.
#[derive(Debug)]
pub(crate) struct ReceivePending {}

impl<S: SegmentStorage> Broker<S> {
    pub(super) fn grpc_receive_message(
        &mut self,
        now_ms: u64,
        call: CallId,
        _client: &ClientRef,
        _request: v2::ReceiveMessageRequest,
    ) {
        let frames = vec![
            v2::ReceiveMessageResponse {
                content: Some(v2::receive_message_response::Content::Status(status(
                    Code::NotImplemented,
                    "ReceiveMessage is not served yet",
                ))),
            },
            v2::ReceiveMessageResponse {
                content: Some(v2::receive_message_response::Content::DeliveryTimestamp(
                    timestamp_of_ms(now_ms as i64),
                )),
            },
        ];
        self.gateway.reply(call, GrpcReply::ReceiveMessage(frames));
    }

    pub(super) fn grpc_receive_answered(
        &mut self,
        _now_ms: u64,
        _call: CallId,
        _pending: ReceivePending,
        _response: RemotingCommand,
    ) {
    }
}
