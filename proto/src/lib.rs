//! The messages of RocketMQ 5's gRPC protocol (`apache.rocketmq.v2`), generated with prost from
//! this crate's `proto/` files at build time; with the `transport` feature also the tonic
//! server and client of `MessagingService`.
//!
//! The `.proto` files declare what the 5.x clients send and read (see their comments); the
//! broker's mapping of these calls onto its own requests is `vostok_core::grpc`.

#![allow(clippy::all, missing_docs)]

/// `apache.rocketmq.v2`: the generated types.
pub mod v2 {
    include!(concat!(env!("OUT_DIR"), "/apache.rocketmq.v2.rs"));
}

/// The encoding the messages implement (`prost::Message::encode`, `decode`).
pub use prost;
/// The well-known types the messages use (`Duration`, `Timestamp`).
pub use prost_types;
