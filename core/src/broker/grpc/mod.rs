//! RocketMQ 5's gRPC protocol (`apache.rocketmq.v2.MessagingService`) served by the broker
//! itself: the mapping of each call onto the broker's own remoting requests, as pure logic.
//!
//! Apache RocketMQ serves its 5.x clients through a separate Proxy process that turns every gRPC
//! call into remoting requests to its brokers. Vostok does the same translation inside the
//! broker, with no network hop: each gRPC client gets a *virtual connection* (a [`ConnId`] from a
//! range drivers never hand out, [`GRPC_CONN_BASE`]), the gateway writes remoting commands on it
//! as a remoting client would, and the broker's answers on that connection come back here
//! instead of going to a socket:
//!
//! ```text
//!   driver (tonic)                    core: Broker
//!   ──────────────                    ─────────────────────────────────────────────────
//!   call ──handle_grpc_call──────────▶ gateway ──RemotingCommand on the client's conn──▶ serve_request
//!                                        ▲                                                 │
//!   reply ◀──BrokerOutput::Grpc──────── gateway ◀──Send{conn ≥ GRPC_CONN_BASE} (poll_output)┘
//! ```
//!
//! A remoting request the gateway wrote is matched to its call by its opaque ([`Pending`]); a
//! request the broker writes to the client (CHECK_TRANSACTION_STATE) becomes a Telemetry
//! command. Everything a call needs beyond one request (several messages of one SendMessage,
//! the frames of a ReceiveMessage stream) is kept in the pending entry.
//!
//! The driver owns the transport (HTTP/2, TLS, deadlines) and hands in decoded prost messages;
//! answers leave as [`GrpcOutput`]s, each naming the call or Telemetry stream it belongs to.
//! Results travel as a `Status` inside the response with the gRPC status OK, as the clients
//! expect (see the `status` helpers); only malformed streams end with a gRPC error.
//!
//! Modules, one per part of the protocol:
//! * [`route`]: QueryRoute, from the broker's own topic table;
//! * [`telemetry`]: Telemetry settings, Heartbeat and NotifyClientTermination: who the client
//!   is, registered with the broker as a remoting client would be;
//! * [`send`], [`transaction`]: SendMessage, EndTransaction and the orphan-transaction check;
//! * [`receive`], [`ack`], [`assignment`]: ReceiveMessage (broker POP), AckMessage,
//!   ChangeInvisibleDuration, ForwardMessageToDeadLetterQueue, QueryAssignment;
//! * [`relay`]: mqadmin's `consumerStatus` and `consumeMessage` relayed to a client's Telemetry
//!   stream;
//! * [`message`]: stored messages as gRPC `Message`s, and resource names.

pub mod ack;
pub mod assignment;
pub mod message;
pub mod receive;
pub mod relay;
pub mod route;
pub mod send;
pub mod status;
pub mod telemetry;
pub mod transaction;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use super::Broker;
use crate::remoting::RemotingCommand;
use crate::store::SegmentStorage;
use crate::ConnId;

pub use vostok_proto::v2;

/// Virtual connections of gRPC clients are numbered from here. Drivers number their sockets
/// from 1 upwards, so the two ranges never meet.
pub const GRPC_CONN_BASE: u64 = 1 << 62;

/// A gRPC client that has made no call and holds no Telemetry stream for this long is gone:
/// its virtual connection is closed (RocketMQ expires a silent remoting channel after 120 s).
pub const CLIENT_IDLE_EXPIRY_MS: u64 = 120_000;

/// Identifies one gRPC call (or Telemetry stream) of a driver. Chosen by the driver, never
/// reused by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

/// What the driver knows of a call from its transport and metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallMeta {
    /// `x-mq-client-id`: the key that ties a client's calls and Telemetry stream together.
    /// Empty when the client sent none (every official client sends it).
    pub client_id: String,
    /// The peer's address (the born host of what it sends).
    pub peer: SocketAddr,
    /// `x-mq-namespace`, empty when absent; a resource's own namespace comes first.
    pub namespace: String,
    /// `x-mq-language` (`JAVA`, `GO`, `PYTHON`, `HTTP` for Node, `RUST`), for what the broker
    /// shows of the client.
    pub language: String,
    /// `x-mq-client-version`.
    pub client_version: String,
    /// When the call's deadline (`grpc-timeout`) passes, epoch ms; `None` without one. A long
    /// poll is answered before it.
    pub deadline_ms: Option<u64>,
}

/// A unary or server-streaming call, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum GrpcRequest {
    QueryRoute(v2::QueryRouteRequest),
    Heartbeat(v2::HeartbeatRequest),
    SendMessage(v2::SendMessageRequest),
    QueryAssignment(v2::QueryAssignmentRequest),
    ReceiveMessage(v2::ReceiveMessageRequest),
    AckMessage(v2::AckMessageRequest),
    ForwardMessageToDeadLetterQueue(v2::ForwardMessageToDeadLetterQueueRequest),
    EndTransaction(v2::EndTransactionRequest),
    NotifyClientTermination(v2::NotifyClientTerminationRequest),
    ChangeInvisibleDuration(v2::ChangeInvisibleDurationRequest),
    RecallMessage(v2::RecallMessageRequest),
}

/// The answer to a [`GrpcRequest`], of the same kind.
#[derive(Clone, Debug, PartialEq)]
pub enum GrpcReply {
    QueryRoute(v2::QueryRouteResponse),
    Heartbeat(v2::HeartbeatResponse),
    SendMessage(v2::SendMessageResponse),
    QueryAssignment(v2::QueryAssignmentResponse),
    /// Every frame of the answer stream, in order: a status, the messages, then the
    /// `delivery_timestamp` frame. The driver writes them and ends the stream.
    ReceiveMessage(Vec<v2::ReceiveMessageResponse>),
    AckMessage(v2::AckMessageResponse),
    ForwardMessageToDeadLetterQueue(v2::ForwardMessageToDeadLetterQueueResponse),
    EndTransaction(v2::EndTransactionResponse),
    NotifyClientTermination(v2::NotifyClientTerminationResponse),
    ChangeInvisibleDuration(v2::ChangeInvisibleDurationResponse),
    RecallMessage(v2::RecallMessageResponse),
}

/// A gRPC status that ends a call or stream at the transport level (the protocol's own errors
/// travel inside responses instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportError {
    /// The gRPC status code (3 INVALID_ARGUMENT, …).
    pub code: i32,
    pub message: String,
}

/// gRPC's INVALID_ARGUMENT.
pub const GRPC_INVALID_ARGUMENT: i32 = 3;

/// What the broker asks its gRPC driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum GrpcOutput {
    /// Answer a call (and, for ReceiveMessage, write its frames and end the stream).
    Reply { call: CallId, reply: GrpcReply },
    /// Write a command on a Telemetry stream, which stays open.
    Telemetry {
        stream: CallId,
        command: Box<v2::TelemetryCommand>,
    },
    /// End a Telemetry stream with a transport error.
    EndStream {
        stream: CallId,
        error: TransportError,
    },
}

/// One gRPC client instance (one `x-mq-client-id`).
#[derive(Debug)]
pub(crate) struct GrpcClient {
    /// Its virtual connection to the broker.
    pub(crate) conn: ConnId,
    pub(crate) meta: CallMeta,
    /// The last Settings it sent on Telemetry, if any.
    pub(crate) settings: Option<v2::Settings>,
    /// Its open Telemetry streams.
    pub(crate) streams: BTreeSet<CallId>,
    /// The consumer group it last named (Heartbeat or Settings).
    pub(crate) group: Option<String>,
    pub(crate) client_type: Option<v2::ClientType>,
    /// Topics it publishes to: from its Settings and from what it sent. Transactional ones are
    /// its producer groups (the proxy's rule: a transactional message's producer group is its
    /// topic), so the broker can ask it about orphaned transactions.
    pub(crate) producer_topics: BTreeSet<String>,
    /// The last call or stream activity.
    pub(crate) last_seen_ms: u64,
}

/// A relayed admin request waiting for the client's answer on Telemetry.
#[derive(Debug)]
pub(crate) struct RelayedCommand {
    /// The client's virtual connection: the broker's relay expects the answer on it.
    pub(crate) conn: ConnId,
    /// The broker's request, which the answer answers.
    pub(crate) request: RemotingCommand,
    /// When the broker's relay gives up waiting.
    pub(crate) deadline_ms: u64,
}

/// What a remoting request written by the gateway is waiting for.
#[derive(Debug)]
pub(crate) struct Pending {
    /// The call its answer belongs to (`None`: the gateway's own request, e.g. a heartbeat,
    /// whose answer is dropped).
    pub(crate) call: Option<CallId>,
    pub(crate) what: PendingKind,
}

/// Per-call context of a request in flight; each module owns its variant.
#[derive(Debug)]
pub(crate) enum PendingKind {
    /// The answer is not needed.
    Ignored,
    Send(send::SendPending),
    EndTransaction(transaction::EndPending),
    Receive(receive::ReceivePending),
    Ack(ack::AckPending),
    ChangeInvisible(ack::ChangePending),
    ForwardToDlq(ack::ForwardPending),
}

/// The gateway's state inside the broker.
#[derive(Debug, Default)]
pub(crate) struct Gateway {
    /// Clients by `x-mq-client-id`.
    pub(crate) clients: BTreeMap<String, GrpcClient>,
    /// Virtual connection → client id.
    pub(crate) by_conn: BTreeMap<ConnId, String>,
    /// Open Telemetry stream → client id.
    pub(crate) streams: BTreeMap<CallId, String>,
    /// Requests in flight by opaque.
    pub(crate) pending: BTreeMap<i32, Pending>,
    /// The virtual connection each request in flight was written on, so a client's requests
    /// are forgotten with it (a POP held for a client that went away is never answered).
    pub(crate) pending_conns: BTreeMap<i32, ConnId>,
    /// Multi-request calls (a SendMessage of several messages): per call, what has come back.
    pub(crate) sends: BTreeMap<CallId, send::SendCall>,
    /// AckMessage calls of several entries: per call, the entries answered so far.
    pub(crate) acks: BTreeMap<CallId, ack::AckCall>,
    /// Admin requests relayed to a client's Telemetry stream, by the nonce they carry
    /// ([`relay`]).
    pub(crate) relayed: BTreeMap<String, RelayedCommand>,
    pub(crate) next_nonce: u64,
    next_opaque: i32,
    next_conn: u64,
    /// Outputs waiting for `poll_output`.
    pub(crate) outputs: VecDeque<GrpcOutput>,
}

impl Gateway {
    pub(crate) fn is_grpc_conn(conn: ConnId) -> bool {
        conn.0 >= GRPC_CONN_BASE
    }

    fn next_opaque(&mut self) -> i32 {
        // Positive, wrapping far below any realistic number of requests in flight.
        self.next_opaque = if self.next_opaque >= i32::MAX - 1 {
            1
        } else {
            self.next_opaque + 1
        };
        self.next_opaque
    }

    /// The client key of a call: its client id, or its address when it sent none.
    pub(crate) fn client_key(meta: &CallMeta) -> String {
        if meta.client_id.is_empty() {
            format!("@{}", meta.peer)
        } else {
            meta.client_id.clone()
        }
    }

    pub(crate) fn reply(&mut self, call: CallId, reply: GrpcReply) {
        self.outputs.push_back(GrpcOutput::Reply { call, reply });
    }

    /// The earliest instant a client may expire.
    pub(crate) fn next_expiry_ms(&self) -> Option<u64> {
        self.clients
            .values()
            .filter(|c| c.streams.is_empty())
            .map(|c| c.last_seen_ms + CLIENT_IDLE_EXPIRY_MS)
            .min()
    }
}

impl<S: SegmentStorage> Broker<S> {
    /// A unary call (or a ReceiveMessage call) arrived. Its answer leaves as
    /// [`GrpcOutput::Reply`] with the same `call`, now or later (a long poll, a send waiting for
    /// durability).
    pub fn handle_grpc_call(
        &mut self,
        now_ms: u64,
        call: CallId,
        meta: CallMeta,
        request: GrpcRequest,
    ) {
        self.metrics.latest_ms = now_ms;
        let client = self.grpc_client(now_ms, &meta);
        match request {
            GrpcRequest::QueryRoute(r) => self.grpc_query_route(now_ms, call, &meta, r),
            GrpcRequest::Heartbeat(r) => self.grpc_heartbeat(now_ms, call, &client, r),
            GrpcRequest::NotifyClientTermination(r) => {
                self.grpc_notify_termination(now_ms, call, &client, r)
            }
            GrpcRequest::SendMessage(r) => self.grpc_send_message(now_ms, call, &client, r),
            GrpcRequest::EndTransaction(r) => self.grpc_end_transaction(now_ms, call, &client, r),
            GrpcRequest::RecallMessage(r) => self.grpc_recall_message(now_ms, call, &client, r),
            GrpcRequest::ReceiveMessage(r) => self.grpc_receive_message(now_ms, call, &client, r),
            GrpcRequest::AckMessage(r) => self.grpc_ack_message(now_ms, call, &client, r),
            GrpcRequest::ChangeInvisibleDuration(r) => {
                self.grpc_change_invisible_duration(now_ms, call, &client, r)
            }
            GrpcRequest::ForwardMessageToDeadLetterQueue(r) => {
                self.grpc_forward_to_dlq(now_ms, call, &client, r)
            }
            GrpcRequest::QueryAssignment(r) => self.grpc_query_assignment(now_ms, call, &client, r),
        }
        self.pump_replication(now_ms);
    }

    /// A Telemetry stream opened. Nothing is written on it until the client sends Settings.
    pub fn handle_grpc_stream_opened(&mut self, now_ms: u64, stream: CallId, meta: CallMeta) {
        let client = self.grpc_client(now_ms, &meta);
        self.gateway.streams.insert(stream, client.key.clone());
        if let Some(c) = self.gateway.clients.get_mut(&client.key) {
            c.streams.insert(stream);
        }
    }

    /// A command arrived on a Telemetry stream.
    pub fn handle_grpc_telemetry(
        &mut self,
        now_ms: u64,
        stream: CallId,
        command: v2::TelemetryCommand,
    ) {
        self.metrics.latest_ms = now_ms;
        let Some(key) = self.gateway.streams.get(&stream).cloned() else {
            return;
        };
        if let Some(c) = self.gateway.clients.get_mut(&key) {
            c.last_seen_ms = now_ms;
        }
        self.grpc_telemetry_command(now_ms, stream, &key, command);
        self.pump_replication(now_ms);
    }

    /// A Telemetry stream ended (the client closed it or went away).
    pub fn handle_grpc_stream_closed(&mut self, now_ms: u64, stream: CallId) {
        let Some(key) = self.gateway.streams.remove(&stream) else {
            return;
        };
        if let Some(c) = self.gateway.clients.get_mut(&key) {
            c.streams.remove(&stream);
            // Its idle time starts now.
            c.last_seen_ms = now_ms;
        }
    }

    /// The next gRPC output, if any (also returned through `poll_output` as
    /// [`BrokerOutput::Grpc`]).
    pub(crate) fn poll_grpc_output(&mut self) -> Option<GrpcOutput> {
        self.gateway.outputs.pop_front()
    }

    /// The client of a call, made on its first call: a virtual connection the broker sees as
    /// one more remoting client.
    pub(crate) fn grpc_client(&mut self, now_ms: u64, meta: &CallMeta) -> ClientRef {
        let key = Gateway::client_key(meta);
        if let Some(c) = self.gateway.clients.get_mut(&key) {
            c.last_seen_ms = now_ms;
            // The address of its latest call (a reconnect may change the port).
            c.meta.peer = meta.peer;
            return ClientRef {
                key,
                conn: c.conn,
                meta: meta.clone(),
            };
        }
        self.gateway.next_conn += 1;
        let conn = ConnId(GRPC_CONN_BASE + self.gateway.next_conn);
        self.handle_connected(now_ms, conn, meta.peer);
        self.gateway.by_conn.insert(conn, key.clone());
        self.gateway.clients.insert(
            key.clone(),
            GrpcClient {
                conn,
                meta: meta.clone(),
                settings: None,
                streams: BTreeSet::new(),
                group: None,
                client_type: None,
                producer_topics: BTreeSet::new(),
                last_seen_ms: now_ms,
            },
        );
        ClientRef {
            key,
            conn,
            meta: meta.clone(),
        }
    }

    /// Writes `command` on the client's virtual connection, as a remoting client would, and
    /// remembers what its answer is for.
    pub(crate) fn grpc_submit(
        &mut self,
        now_ms: u64,
        conn: ConnId,
        mut command: RemotingCommand,
        pending: Pending,
    ) {
        let opaque = self.gateway.next_opaque();
        command.opaque = opaque;
        self.gateway.pending.insert(opaque, pending);
        self.gateway.pending_conns.insert(opaque, conn);
        self.serve_request(now_ms, conn, command);
    }

    /// A `Send` output on a virtual connection: the answer to a request of the gateway, or a
    /// request of the broker to the client.
    pub(crate) fn grpc_conn_output(&mut self, now_ms: u64, conn: ConnId, command: RemotingCommand) {
        if command.is_response() {
            self.gateway.pending_conns.remove(&command.opaque);
            let Some(pending) = self.gateway.pending.remove(&command.opaque) else {
                return;
            };
            self.grpc_answered(now_ms, pending, command);
        } else {
            self.grpc_broker_request(now_ms, conn, command);
        }
    }

    fn grpc_answered(&mut self, now_ms: u64, pending: Pending, response: RemotingCommand) {
        let Some(call) = pending.call else {
            return;
        };
        match pending.what {
            PendingKind::Ignored => {}
            PendingKind::Send(p) => self.grpc_send_answered(now_ms, call, p, response),
            PendingKind::EndTransaction(p) => {
                self.grpc_end_transaction_answered(now_ms, call, p, response)
            }
            PendingKind::Receive(p) => self.grpc_receive_answered(now_ms, call, p, response),
            PendingKind::Ack(p) => self.grpc_ack_answered(now_ms, call, p, response),
            PendingKind::ChangeInvisible(p) => {
                self.grpc_change_invisible_answered(now_ms, call, p, response)
            }
            PendingKind::ForwardToDlq(p) => {
                self.grpc_forward_to_dlq_answered(now_ms, call, p, response)
            }
        }
    }

    /// A request the broker writes to a gRPC client: a transaction check, a running-info request
    /// and a direct consumption go to the client's Telemetry stream; a consumer list change
    /// needs nothing (POP needs no rebalancing); anything else is answered as a client that does
    /// not support it would.
    fn grpc_broker_request(&mut self, now_ms: u64, conn: ConnId, command: RemotingCommand) {
        use crate::remoting::codes::{request, response};
        match command.code {
            request::CHECK_TRANSACTION_STATE => self.grpc_check_transaction(now_ms, conn, command),
            request::NOTIFY_CONSUMER_IDS_CHANGED => {}
            request::GET_CONSUMER_RUNNING_INFO | request::CONSUME_MESSAGE_DIRECTLY => {
                self.grpc_relay_to_client(now_ms, conn, command)
            }
            _ => {
                if command.is_oneway() {
                    return;
                }
                let answer = RemotingCommand::response_to(
                    &command,
                    response::REQUEST_CODE_NOT_SUPPORTED,
                    Some(format!(
                        "request code {} is not supported by a gRPC client",
                        command.code
                    )),
                );
                self.serve_request(now_ms, conn, answer);
            }
        }
    }

    /// Closes the virtual connections of clients that went silent.
    pub(crate) fn grpc_expire_clients(&mut self, now_ms: u64) {
        self.grpc_expire_relayed(now_ms);
        let expired: Vec<String> = self
            .gateway
            .clients
            .iter()
            .filter(|(_, c)| {
                c.streams.is_empty() && now_ms >= c.last_seen_ms + CLIENT_IDLE_EXPIRY_MS
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.grpc_drop_client(now_ms, &key);
        }
    }

    /// The broker closes a virtual connection (it does so for a client it refuses): the client
    /// is forgotten; its next call makes a new one.
    pub(crate) fn grpc_close_conn(&mut self, now_ms: u64, conn: ConnId) {
        if let Some(key) = self.gateway.by_conn.get(&conn).cloned() {
            self.grpc_drop_client(now_ms, &key);
        }
    }

    /// Forgets a client and closes its virtual connection.
    pub(crate) fn grpc_drop_client(&mut self, now_ms: u64, key: &str) {
        let Some(client) = self.gateway.clients.remove(key) else {
            return;
        };
        self.gateway.by_conn.remove(&client.conn);
        self.gateway.relayed.retain(|_, r| r.conn != client.conn);
        let orphaned: Vec<i32> = self
            .gateway
            .pending_conns
            .iter()
            .filter(|(_, c)| **c == client.conn)
            .map(|(opaque, _)| *opaque)
            .collect();
        for opaque in orphaned {
            self.gateway.pending_conns.remove(&opaque);
            // Only a receive waits (a long poll); its call still gets its frames, so the driver
            // forgets it too.
            if let Some(Pending {
                call: Some(call),
                what: PendingKind::Receive(_),
            }) = self.gateway.pending.remove(&opaque)
            {
                let frames = receive::status_frames(
                    now_ms,
                    status::status(v2::Code::BadRequest, "the client terminated"),
                );
                self.gateway.reply(call, GrpcReply::ReceiveMessage(frames));
            }
        }
        for stream in &client.streams {
            self.gateway.streams.remove(stream);
        }
        self.handle_disconnected(now_ms, client.conn);
    }
}

/// A call's client: its key, its virtual connection and the call's metadata.
#[derive(Clone, Debug)]
pub(crate) struct ClientRef {
    pub(crate) key: String,
    pub(crate) conn: ConnId,
    pub(crate) meta: CallMeta,
}
