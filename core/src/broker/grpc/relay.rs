//! Admin requests the broker relays to a gRPC consumer, answered over its Telemetry stream:
//! GET_CONSUMER_RUNNING_INFO (307, mqadmin `consumerStatus`) becomes a
//! PrintThreadStackTraceCommand, CONSUME_MESSAGE_DIRECTLY (309, mqadmin `consumeMessage`, the
//! dashboard's resend) a VerifyMessageCommand with the message; the client's ThreadStackTrace or
//! VerifyMessageResult, matched by its nonce, becomes the remoting answer the broker passes back
//! to the admin tool ([`crate::broker::relay`]).
//!
//! Followed: RocketMQ 5.3.3's proxy (`GrpcClientChannel`, `ClientActivity`): the running info
//! is a ConsumerRunningInfo holding only the client's thread stacks (`jstack`); a verification
//! is a ConsumeMessageDirectlyResult whose result follows the client's status (OK: CR_SUCCESS,
//! FAILED_TO_CONSUME_MESSAGE: CR_LATER, MESSAGE_CORRUPTED: CR_RETURN_NULL) with the remark
//! "from gRPC client". Java and Node clients answer stack requests; most answer verifications
//! NOT_IMPLEMENTED, which is passed on as it comes. A client with no Telemetry stream open is
//! answered SYSTEM_ERROR at once; one that never answers is the broker's relay timeout.

use super::message::to_grpc_message;
use super::v2::{self, Code};
use super::{GrpcOutput, RelayedCommand};
use crate::broker::relay::RELAY_TIMEOUT_MS;
use crate::broker::Broker;
use crate::message::MessageRecord;
use crate::remoting::codes::{request, response};
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;
use crate::ConnId;

impl<S: SegmentStorage> Broker<S> {
    /// A relayed 307 or 309 for the client on `conn`: written on its Telemetry stream.
    pub(super) fn grpc_relay_to_client(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        command: RemotingCommand,
    ) {
        let client = self
            .gateway
            .by_conn
            .get(&conn)
            .and_then(|key| self.gateway.clients.get(key));
        let Some((stream, namespace)) = client.and_then(|c| {
            c.streams
                .iter()
                .next()
                .map(|s| (*s, c.meta.namespace.clone()))
        }) else {
            let answer = RemotingCommand::response_to(
                &command,
                response::SYSTEM_ERROR,
                Some("the gRPC client has no Telemetry stream open".to_owned()),
            );
            return self.serve_request(now_ms, conn, answer);
        };
        self.gateway.next_nonce += 1;
        let nonce = format!("{}-{}", self.config.broker_name, self.gateway.next_nonce);
        let telemetry = if command.code == request::GET_CONSUMER_RUNNING_INFO {
            v2::telemetry_command::Command::PrintThreadStackTraceCommand(
                v2::PrintThreadStackTraceCommand {
                    nonce: nonce.clone(),
                },
            )
        } else {
            let Ok(record) = MessageRecord::decode(&command.body, false) else {
                let answer = RemotingCommand::response_to(
                    &command,
                    response::SYSTEM_ERROR,
                    Some("the message to verify does not decode".to_owned()),
                );
                return self.serve_request(now_ms, conn, answer);
            };
            let body = record.body.clone();
            v2::telemetry_command::Command::VerifyMessageCommand(v2::VerifyMessageCommand {
                nonce: nonce.clone(),
                message: Some(to_grpc_message(&record, body, &namespace)),
            })
        };
        self.gateway.relayed.insert(
            nonce,
            RelayedCommand {
                conn,
                request: command,
                deadline_ms: now_ms + RELAY_TIMEOUT_MS,
            },
        );
        self.gateway.outputs.push_back(GrpcOutput::Telemetry {
            stream,
            command: Box::new(v2::TelemetryCommand {
                status: None,
                command: Some(telemetry),
            }),
        });
    }

    /// The client's ThreadStackTrace: the running info the admin asked for.
    pub(super) fn grpc_thread_stack_trace(
        &mut self,
        now_ms: u64,
        status: Option<v2::Status>,
        trace: v2::ThreadStackTrace,
    ) {
        let Some(relayed) = self.gateway.relayed.remove(&trace.nonce) else {
            return;
        };
        let code = status.map_or(Code::Ok as i32, |s| s.code);
        let answer = if code == Code::Ok as i32 {
            let info = serde_json::json!({
                "jstack": trace.thread_stack_trace.unwrap_or_default(),
                "mqPopTable": {},
                "mqTable": {},
                "properties": {},
                "statusTable": {},
                "subscriptionSet": [],
                "userConsumerInfo": {},
            });
            RemotingCommand::response_to(&relayed.request, response::SUCCESS, None)
                .with_body(info.to_string().into_bytes())
        } else {
            RemotingCommand::response_to(
                &relayed.request,
                response::SYSTEM_ERROR,
                Some(format!("the gRPC client answered code {code}")),
            )
        };
        self.serve_request(now_ms, relayed.conn, answer);
    }

    /// The client's VerifyMessageResult: the direct consumption's result.
    pub(super) fn grpc_verify_message_result(
        &mut self,
        now_ms: u64,
        status: Option<v2::Status>,
        result: v2::VerifyMessageResult,
    ) {
        let Some(relayed) = self.gateway.relayed.remove(&result.nonce) else {
            return;
        };
        let code = status.map_or(Code::Ok as i32, |s| s.code);
        let consume_result = match v2::Code::try_from(code) {
            Ok(Code::Ok) => Some("CR_SUCCESS"),
            Ok(Code::FailedToConsumeMessage) => Some("CR_LATER"),
            Ok(Code::MessageCorrupted) => Some("CR_RETURN_NULL"),
            _ => None,
        };
        let body = serde_json::json!({
            "autoCommit": true,
            "consumeResult": consume_result,
            "order": false,
            "remark": "from gRPC client",
            "spentTimeMills": 0,
        });
        let answer = RemotingCommand::response_to(&relayed.request, response::SUCCESS, None)
            .with_body(body.to_string().into_bytes());
        self.serve_request(now_ms, relayed.conn, answer);
    }

    /// Forgets relayed commands past the broker's relay timeout (it has answered the admin).
    pub(super) fn grpc_expire_relayed(&mut self, now_ms: u64) {
        self.gateway.relayed.retain(|_, r| r.deadline_ms > now_ms);
    }
}
