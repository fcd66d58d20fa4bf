//! The protocol's `Status` values and the broker's answers mapped onto them.
//!
//! Every response, result entry and stream carries a status with a non-zero code: several
//! clients fail on a missing one (Python raises, Rust 5.0.0 reports "server do not return
//! status"). Only codes of the protocol's first set are sent: the Rust 5.0.0 client panics on a
//! code its enum lacks (40019–40021, 40404, 41302, 42901, 42902), so an empty body is answered
//! with BAD_REQUEST rather than MESSAGE_BODY_EMPTY.

use super::v2::{self, Code};
use crate::remoting::codes::response;

/// A status with `code` and `message`.
pub fn status(code: Code, message: impl Into<String>) -> v2::Status {
    v2::Status {
        code: code as i32,
        message: message.into(),
    }
}

/// `OK`.
pub fn ok() -> v2::Status {
    status(Code::Ok, "OK")
}

/// The status of a broker's remoting answer: its code mapped as RocketMQ's proxy maps it,
/// with the broker's remark as the message.
pub fn of_remoting(code: i32, remark: Option<&str>) -> v2::Status {
    let grpc = match code {
        response::SUCCESS => Code::Ok,
        response::FLUSH_DISK_TIMEOUT => Code::MasterPersistenceTimeout,
        response::FLUSH_SLAVE_TIMEOUT => Code::SlavePersistenceTimeout,
        response::SLAVE_NOT_AVAILABLE => Code::HaNotAvailable,
        response::TOPIC_NOT_EXIST => Code::TopicNotFound,
        response::SUBSCRIPTION_GROUP_NOT_EXIST => Code::ConsumerGroupNotFound,
        response::NO_PERMISSION => Code::Forbidden,
        response::MESSAGE_ILLEGAL | response::INVALID_PARAMETER => Code::BadRequest,
        response::SYSTEM_BUSY => Code::TooManyRequests,
        response::REQUEST_CODE_NOT_SUPPORTED => Code::NotImplemented,
        response::SERVICE_NOT_AVAILABLE => Code::Forbidden,
        response::SUBSCRIPTION_NOT_LATEST
        | response::SUBSCRIPTION_NOT_EXIST
        | response::SUBSCRIPTION_PARSE_FAILED => Code::IllegalFilterExpression,
        _ => Code::InternalServerError,
    };
    let message = match (grpc, remark) {
        (Code::Ok, _) => "OK".to_owned(),
        (_, Some(r)) if !r.is_empty() => r.to_owned(),
        _ => format!("the broker answered code {code}"),
    };
    status(grpc, message)
}

/// Whether a status is OK.
pub fn is_ok(status: &v2::Status) -> bool {
    status.code == Code::Ok as i32
}
