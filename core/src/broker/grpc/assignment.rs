//! QueryAssignment: where a push consumer receives from.
//!
//! (Not yet served: answered NOT_IMPLEMENTED.)

use super::status::status;
use super::v2::{self, Code};
use super::{CallId, ClientRef, GrpcReply};
use crate::broker::Broker;
use crate::store::SegmentStorage;

impl<S: SegmentStorage> Broker<S> {
    pub(super) fn grpc_query_assignment(
        &mut self,
        _now_ms: u64,
        call: CallId,
        _client: &ClientRef,
        _request: v2::QueryAssignmentRequest,
    ) {
        self.gateway.reply(
            call,
            GrpcReply::QueryAssignment(v2::QueryAssignmentResponse {
                status: Some(status(
                    Code::NotImplemented,
                    "QueryAssignment is not served yet",
                )),
                assignments: Vec::new(),
            }),
        );
    }
}
