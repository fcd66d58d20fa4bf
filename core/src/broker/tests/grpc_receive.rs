//! ReceiveMessage, AckMessage, ChangeInvisibleDuration, ForwardMessageToDeadLetterQueue and
//! QueryAssignment over gRPC (see `grpc.rs` for the shared helpers).

#[allow(unused_imports)]
use super::grpc::*;
