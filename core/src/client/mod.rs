//! RocketMQ client logic as sans-IO state machines: producers and consumers that run the same way
//! under the native runtime, the simulator and the playground.
//!
//! * [`Producer`] — route cache, round-robin queue choice, latency fault avoidance, retries on
//!   another broker, queue selectors, batches, oneway and async completion.
//! * [`PushConsumer`] — heartbeat, rebalance ([`allocate`]), offsets, the long-poll pull loop,
//!   process queues with flow control, send-back for retry.
//! * [`orderly`] — orderly consumption for the [`PushConsumer`] with an [`OrderlyConfig`]:
//!   queue locks (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ) and the one-batch-per-queue consume loop.
//! * [`PullConsumer`] — the "lite pull" consumer: assign or subscribe, `poll`, commit.
//! * [`SimpleConsumer`] — RocketMQ 5's POP consumer: `receive`, `ack`,
//!   `change_invisible_duration`; the broker balances the group.
//! * [`requests`] — the request builders (every byte a client sends is built there).
//!
//! Calling discipline (the same as the core's Broker and NameServer):
//! 1. feed it: application calls (`send`, `subscribe`, `handle_consume_result`, …) and network
//!    inputs (`handle_response`, `handle_request`, `handle_connection_closed`, `handle_timeout`),
//!    each with the current `now_ms` (epoch ms, never going backwards);
//! 2. drain `poll_output()` until `None`, doing what each [`ClientOutput`] says;
//! 3. sleep until `poll_timeout()` or the next input, whichever comes first.
//!
//! Peers are named by address string (`"127.0.0.1:10911"`); the driver maps an address to a
//! connection, opening one on first use. The state machine assigns every request's `opaque`
//! (unique among its own requests in flight, starting at 1), so a driver must not share one
//! connection between two state machines without remapping opaques.
//!
//! Wire identity: requests are what a Java 4.9 client sends — language `JAVA`, the same codes,
//! header keys and flags, JSON header encoding — with `version` 479 (V5_3_3, like the Java 5.3.3
//! client; [`crate::remoting::command::VOSTOK_VERSION_ORDINAL`]). The Java 5.x-only optional
//! keys `bname`, `ns`, `nsd`, `oway`, `lo` are not sent. Send uses SEND_MESSAGE_V2 (310) and
//! SEND_BATCH_MESSAGE (320). Bodies over 4 KiB are **not** compressed (RocketMQ's
//! `compressMsgBodyOverHowmuch` is not implemented): every broker accepts uncompressed bodies.
//! Property strings are written in the iteration order of Java's `HashMap`, so they match a
//! Java producer's byte for byte; the JSON header's ext fields are in key order (the codec's),
//! where Java uses its HashMap's order — receivers read them by key.
//!
//! Transactions: [`Producer::send_in_transaction`] sends a half message,
//! [`Producer::end_transaction`] ends it; a broker's CHECK_TRANSACTION_STATE comes out as
//! [`ClientOutput::TransactionCheck`], answered with [`Producer::answer_check`].
//!
//! Not implemented: body compression, pulling
//! from slaves (`suggestWhichBrokerId` is ignored: pulls go to the master), SQL92
//! subscriptions, and message tracing.

pub mod allocate;
mod base;
mod engine;
mod fault;
pub mod lite_pull;
pub mod message;
pub mod orderly;
pub mod producer;
pub mod push;
pub mod requests;
mod route;
pub mod simple;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};

use crate::remoting::RemotingCommand;

pub use allocate::AllocateStrategy;
pub use lite_pull::{PullConsumer, PullConsumerConfig};
pub use message::{Message, MessageExt};
pub use orderly::{ConsumeOrderlyStatus, OrderlyConfig};
pub use producer::{
    LocalTransactionState, Producer, ProducerConfig, QueueSelector, SendId, SendMode, SendResult,
    SendStatus, TransactionCheck,
};
pub use push::{ConsumeStatus, ConsumeToken, PushConsumer, PushConsumerConfig};
pub use simple::{
    ConsumeInitMode, ReceiptHandle, ReceivedMessage, SimpleCallId, SimpleConsumer,
    SimpleConsumerConfig, SimpleResult,
};

/// One queue of a topic on one broker: what producers choose among and consumers rebalance.
///
/// Ordered by topic, broker name, then queue id, as RocketMQ sorts queues before allocating them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageQueue {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
}

impl MessageQueue {
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: i32) -> Self {
        Self {
            topic: topic.into(),
            broker_name: broker_name.into(),
            queue_id,
        }
    }
}

impl std::fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MessageQueue [topic={}, brokerName={}, queueId={}]",
            self.topic, self.broker_name, self.queue_id
        )
    }
}

/// Settings shared by every client state machine (RocketMQ's `ClientConfig`).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// NameServer addresses (`host:port`). One is used at a time, starting at a seeded random
    /// index, moving to the next after a failure (as Java).
    pub namesrv_addrs: Vec<String>,
    /// This client's IP: the first part of the client id and of every UNIQ_KEY.
    pub client_ip: IpAddr,
    /// The second part of the client id. Java turns the default `DEFAULT` into
    /// `<pid>#<nanoTime>`; drivers should do the same (the core reads no pid or clock).
    pub instance_name: String,
    /// Optional third part of the client id.
    pub unit_name: Option<String>,
    /// Route refresh period (`pollNameServerInterval`).
    pub poll_namesrv_interval_ms: u64,
    /// Heartbeat period (`heartbeatBrokerInterval`).
    pub heartbeat_broker_interval_ms: u64,
    /// Timeout of requests other than sends and pulls (route queries, offsets, heartbeats…).
    pub request_timeout_ms: u64,
    /// Seed of every random choice (queue round-robin start, NameServer choice, UNIQ_KEY
    /// prefix).
    pub seed: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            namesrv_addrs: Vec::new(),
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            instance_name: "DEFAULT".to_owned(),
            unit_name: None,
            poll_namesrv_interval_ms: 30_000,
            heartbeat_broker_interval_ms: 30_000,
            request_timeout_ms: 3_000,
            seed: 0,
        }
    }
}

impl ClientConfig {
    /// `<clientIP>@<instanceName>[@<unitName>]` (REMOTING.md §4.11).
    pub fn client_id(&self) -> String {
        let mut id = format!("{}@{}", self.client_ip, self.instance_name);
        if let Some(unit) = &self.unit_name {
            id.push('@');
            id.push_str(unit);
        }
        id
    }
}

/// What a client state machine asks its driver (or application) to do.
#[derive(Debug)]
pub enum ClientOutput {
    /// Write `command` to the peer at `addr`, connecting first if needed. Unless the command is
    /// oneway, its response must come back through `handle_response(now_ms, addr, response)`.
    /// If the connection cannot be made or closes, call `handle_connection_closed(now_ms,
    /// addr)`: every request in flight to `addr` then fails at once.
    Send {
        addr: String,
        command: RemotingCommand,
    },
    /// A send call of the [`Producer`] finished: exactly one per [`SendId`].
    SendDone {
        id: SendId,
        result: Result<SendResult, ClientError>,
    },
    /// [`Producer`]: a broker asks what became of a half message (CHECK_TRANSACTION_STATE).
    /// Ask the application's checker, then call [`Producer::answer_check`].
    TransactionCheck { check: TransactionCheck },
    /// [`PushConsumer`]: hand these messages (at most `consume_message_batch_max_size`, all of
    /// one queue) to the listener, then report with `handle_consume_result(now_ms, token,
    /// status)` (orderly consumers: `handle_consume_orderly_result`; they never have two
    /// batches of one queue out at once).
    Consume {
        token: ConsumeToken,
        queue: MessageQueue,
        messages: Vec<MessageExt>,
    },
    /// [`PullConsumer`]: messages are buffered; `poll` returns them.
    MessagesAvailable,
    /// A broadcasting consumer's local offsets changed (every `persist_offset_interval_ms` and
    /// at shutdown): the driver may persist them and give them back at the next start.
    PersistLocalOffsets {
        offsets: std::collections::BTreeMap<MessageQueue, i64>,
    },
    /// [`SimpleConsumer`]: a `receive`, `ack` or `change_invisible_duration` call finished:
    /// exactly one per [`SimpleCallId`].
    SimpleDone {
        id: SimpleCallId,
        result: SimpleResult,
    },
}

/// Why a client call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The broker or NameServer answered with a non-success code.
    #[error("CODE: {code}  DESC: {remark}")]
    Broker { code: i32, remark: String },
    /// No answer in time (`sendMsgTimeout` for sends).
    #[error("request timed out after {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    /// Neither the topic's route nor the default topic's could be found.
    #[error("No route info of this topic: {topic}")]
    NoRoute { topic: String },
    /// The connection to the peer failed or closed with the request in flight.
    #[error("connection to {addr} closed")]
    ConnectionClosed { addr: String },
    /// The application's input is invalid (empty batch, mixed topics, bad topic name, …).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The response could not be understood.
    #[error("malformed response: {0}")]
    MalformedResponse(String),
    /// The state machine was shut down.
    #[error("the client is shut down")]
    ShutDown,
    /// A subscription's selector does not compile (an SQL92 expression with a syntax error).
    #[error("{0}")]
    InvalidSubscription(String),
}

/// The inputs and outputs every client state machine shares, so one driver loop (native,
/// simulated or in the browser) can run a [`Producer`], a [`PushConsumer`] or a
/// [`PullConsumer`] alike. Each method is the type's inherent method of the same name.
pub trait ClientStateMachine {
    /// A response to a request this client sent to `addr`.
    fn handle_response(&mut self, now_ms: u64, addr: &str, command: RemotingCommand);
    /// A request a broker sent this client.
    fn handle_request(&mut self, now_ms: u64, addr: &str, command: RemotingCommand);
    /// The connection to `addr` failed or closed.
    fn handle_connection_closed(&mut self, now_ms: u64, addr: &str);
    /// Runs the timers that are due.
    fn handle_timeout(&mut self, now_ms: u64);
    /// Starts a clean shutdown (unregister; offsets committed where the client keeps them).
    fn shutdown(&mut self, now_ms: u64);
    /// The next thing to do.
    fn poll_output(&mut self) -> Option<ClientOutput>;
    /// The next instant `handle_timeout` must be called.
    fn poll_timeout(&self) -> Option<u64>;
}

/// Implements [`ClientStateMachine`] by calling the type's inherent methods (which take
/// precedence over trait methods in `Type::method` paths).
macro_rules! client_state_machine {
    ($machine:ty) => {
        impl ClientStateMachine for $machine {
            fn handle_response(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
                <$machine>::handle_response(self, now_ms, addr, command)
            }
            fn handle_request(&mut self, now_ms: u64, addr: &str, command: RemotingCommand) {
                <$machine>::handle_request(self, now_ms, addr, command)
            }
            fn handle_connection_closed(&mut self, now_ms: u64, addr: &str) {
                <$machine>::handle_connection_closed(self, now_ms, addr)
            }
            fn handle_timeout(&mut self, now_ms: u64) {
                <$machine>::handle_timeout(self, now_ms)
            }
            fn shutdown(&mut self, now_ms: u64) {
                <$machine>::shutdown(self, now_ms)
            }
            fn poll_output(&mut self) -> Option<ClientOutput> {
                <$machine>::poll_output(self)
            }
            fn poll_timeout(&self) -> Option<u64> {
                <$machine>::poll_timeout(self)
            }
        }
    };
}

client_state_machine!(Producer);
client_state_machine!(PushConsumer);
client_state_machine!(PullConsumer);
client_state_machine!(SimpleConsumer);
