//! SendMessage, EndTransaction and the transaction check over gRPC (see `grpc.rs` for the
//! shared helpers).

#[allow(unused_imports)]
use super::grpc::*;
