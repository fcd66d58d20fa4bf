//! The broker's gRPC gateway (`vostok_core::broker::grpc`) fed arbitrary call sequences: calls
//! decoded by prost from fuzzed bytes (as the transport hands them in), and structured calls of
//! every kind on a few topics and groups — sends (normal, FIFO, delay, transactional), receives,
//! acks and changes of invisible time on the receipt handles the broker gave out (or mangled
//! ones), transaction ends on the ids it gave out (or mangled ones), Telemetry settings,
//! heartbeats and terminations — with an advancing clock and syncs.
//!
//! Asserted: nothing panics; every call gets exactly one reply, of its own kind, by the time the
//! clock has passed every long poll; every reply, result entry and stream carries a status with
//! a code of the protocol; a ReceiveMessage stream is a status frame, messages, then the
//! delivery timestamp frame, with no empty frame; SendMessage and AckMessage answer one entry
//! per entry, in order.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vostok_core::broker::grpc::{v2, CallId, CallMeta, GrpcOutput, GrpcReply, GrpcRequest};
use vostok_core::broker::{Broker, BrokerOutput};
use vostok_core::store::MemStorage;
use vostok_fuzz::small_broker_config;
use vostok_proto::prost::Message as _;

const TOPICS: [&str; 3] = ["TopicA", "FifoTopic", "Nowhere"];
const GROUPS: [&str; 2] = ["GroupA", "GroupB"];
const T0: u64 = 1_718_000_000_000;

#[derive(Debug, Arbitrary)]
enum Op {
    /// A call whose message is whatever prost makes of the bytes.
    Raw {
        kind: u8,
        client: u8,
        bytes: Vec<u8>,
    },
    Send {
        client: u8,
        topic: u8,
        kind: u8,
        body: Vec<u8>,
        tag: Option<String>,
        group: Option<String>,
        delay_s: Option<u16>,
        count: u8,
    },
    Receive {
        client: u8,
        group: u8,
        topic: u8,
        batch: i8,
        invisible_s: Option<u8>,
        poll_s: Option<u8>,
        queue: i8,
    },
    /// Acks (or changes the invisible time of) a handle the broker gave out, maybe mangled.
    Ack {
        client: u8,
        pick: u8,
        change_s: Option<u8>,
        mangle: Option<(u8, u8)>,
    },
    End {
        client: u8,
        pick: u8,
        commit: bool,
        mangle: Option<(u8, u8)>,
    },
    Settings {
        client: u8,
        stream: u8,
        consumer: bool,
        group: u8,
    },
    Heartbeat {
        client: u8,
        group: u8,
    },
    Terminate {
        client: u8,
    },
    Advance {
        ms: u16,
    },
}

fn resource(name: &str) -> Option<v2::Resource> {
    Some(v2::Resource {
        resource_namespace: String::new(),
        name: name.to_owned(),
    })
}

fn endpoints() -> Option<v2::Endpoints> {
    Some(v2::Endpoints {
        scheme: v2::AddressScheme::IPv4 as i32,
        addresses: vec![v2::Address {
            host: "127.0.0.1".to_owned(),
            port: 8081,
        }],
    })
}

fn duration_s(s: u8) -> vostok_proto::prost_types::Duration {
    vostok_proto::prost_types::Duration {
        seconds: i64::from(s),
        nanos: 0,
    }
}

fn mangled(text: &str, mangle: Option<(u8, u8)>) -> String {
    let Some((at, byte)) = mangle else {
        return text.to_owned();
    };
    let mut bytes = text.as_bytes().to_vec();
    if bytes.is_empty() {
        return String::from_utf8_lossy(&[byte]).into_owned();
    }
    let i = usize::from(at) % bytes.len();
    bytes[i] = byte;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Which reply kind a request wants.
fn kind_of(request: &GrpcRequest) -> &'static str {
    match request {
        GrpcRequest::QueryRoute(_) => "QueryRoute",
        GrpcRequest::Heartbeat(_) => "Heartbeat",
        GrpcRequest::SendMessage(_) => "SendMessage",
        GrpcRequest::QueryAssignment(_) => "QueryAssignment",
        GrpcRequest::ReceiveMessage(_) => "ReceiveMessage",
        GrpcRequest::AckMessage(_) => "AckMessage",
        GrpcRequest::ForwardMessageToDeadLetterQueue(_) => "Forward",
        GrpcRequest::EndTransaction(_) => "EndTransaction",
        GrpcRequest::NotifyClientTermination(_) => "Notify",
        GrpcRequest::ChangeInvisibleDuration(_) => "ChangeInvisible",
        GrpcRequest::RecallMessage(_) => "Recall",
    }
}

fn reply_kind(reply: &GrpcReply) -> &'static str {
    match reply {
        GrpcReply::QueryRoute(_) => "QueryRoute",
        GrpcReply::Heartbeat(_) => "Heartbeat",
        GrpcReply::SendMessage(_) => "SendMessage",
        GrpcReply::QueryAssignment(_) => "QueryAssignment",
        GrpcReply::ReceiveMessage(_) => "ReceiveMessage",
        GrpcReply::AckMessage(_) => "AckMessage",
        GrpcReply::ForwardMessageToDeadLetterQueue(_) => "Forward",
        GrpcReply::EndTransaction(_) => "EndTransaction",
        GrpcReply::NotifyClientTermination(_) => "Notify",
        GrpcReply::ChangeInvisibleDuration(_) => "ChangeInvisible",
        GrpcReply::RecallMessage(_) => "Recall",
    }
}

/// A status is present and its code is one of the protocol's.
fn check_status(status: &Option<v2::Status>, what: &str) {
    let status = status
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no status"));
    assert!(
        v2::Code::try_from(status.code).is_ok() && status.code != 0,
        "{what}: code {} is not one of the protocol's",
        status.code
    );
}

struct Harness {
    broker: Broker<MemStorage>,
    now_ms: u64,
    next_call: u64,
    /// Calls not answered yet: call → (kind, entries expected).
    waiting: BTreeMap<u64, (&'static str, usize)>,
    /// Receipt handles (topic, group, message id, handle) and transaction ids seen.
    handles: Vec<(String, String, String, String)>,
    transactions: Vec<(String, String, String)>,
}

impl Harness {
    fn new() -> Self {
        let mut config = small_broker_config();
        config.namesrv_addrs.clear();
        let mut broker = Broker::new(config, MemStorage::default(), T0).expect("broker opens");
        for (topic, attributes) in [("TopicA", ""), ("FifoTopic", "+message.type=FIFO")] {
            let mut create = vostok_core::remoting::RemotingCommand::request(
                vostok_core::remoting::codes::request::UPDATE_AND_CREATE_TOPIC,
            )
            .with_ext("topic", topic)
            .with_ext("readQueueNums", 2)
            .with_ext("writeQueueNums", 2)
            .with_ext("perm", 6);
            if !attributes.is_empty() {
                create = create.with_ext("attributes", attributes);
            }
            create.opaque = 1;
            broker.handle_connected(T0, vostok_core::ConnId(1), "127.0.0.1:1".parse().unwrap());
            broker.handle_request(T0, vostok_core::ConnId(1), create);
        }
        let mut h = Self {
            broker,
            now_ms: T0,
            next_call: 1,
            waiting: BTreeMap::new(),
            handles: Vec::new(),
            transactions: Vec::new(),
        };
        h.drain();
        h
    }

    fn meta(&self, client: u8) -> CallMeta {
        CallMeta {
            client_id: format!("client-{}", client % 4),
            peer: "127.0.0.1:50000".parse().unwrap(),
            namespace: String::new(),
            language: "RUST".to_owned(),
            client_version: "5.0.0".to_owned(),
            deadline_ms: Some(self.now_ms + 30_000),
        }
    }

    fn call(&mut self, client: u8, request: GrpcRequest) {
        let call = self.next_call;
        self.next_call += 1;
        let entries = match &request {
            GrpcRequest::SendMessage(r) => r.messages.len(),
            GrpcRequest::AckMessage(r) => r.entries.len(),
            _ => 0,
        };
        self.waiting.insert(call, (kind_of(&request), entries));
        let meta = self.meta(client);
        self.broker
            .handle_grpc_call(self.now_ms, CallId(call), meta, request);
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Raw {
                kind,
                client,
                bytes,
            } => {
                let b = bytes.as_slice();
                let request = match kind % 11 {
                    0 => v2::QueryRouteRequest::decode(b).map(GrpcRequest::QueryRoute),
                    1 => v2::HeartbeatRequest::decode(b).map(GrpcRequest::Heartbeat),
                    2 => v2::SendMessageRequest::decode(b).map(GrpcRequest::SendMessage),
                    3 => v2::QueryAssignmentRequest::decode(b).map(GrpcRequest::QueryAssignment),
                    4 => v2::ReceiveMessageRequest::decode(b).map(GrpcRequest::ReceiveMessage),
                    5 => v2::AckMessageRequest::decode(b).map(GrpcRequest::AckMessage),
                    6 => v2::ForwardMessageToDeadLetterQueueRequest::decode(b)
                        .map(GrpcRequest::ForwardMessageToDeadLetterQueue),
                    7 => v2::EndTransactionRequest::decode(b).map(GrpcRequest::EndTransaction),
                    8 => v2::NotifyClientTerminationRequest::decode(b)
                        .map(GrpcRequest::NotifyClientTermination),
                    9 => v2::ChangeInvisibleDurationRequest::decode(b)
                        .map(GrpcRequest::ChangeInvisibleDuration),
                    _ => v2::RecallMessageRequest::decode(b).map(GrpcRequest::RecallMessage),
                };
                // An undecodable message never reaches the broker (the transport refuses it).
                if let Ok(request) = request {
                    self.call(client, request);
                }
            }
            Op::Send {
                client,
                topic,
                kind,
                body,
                tag,
                group,
                delay_s,
                count,
            } => {
                let topic = TOPICS[usize::from(topic) % TOPICS.len()];
                let message_type = match kind % 4 {
                    0 => v2::MessageType::Normal,
                    1 => v2::MessageType::Fifo,
                    2 => v2::MessageType::Delay,
                    _ => v2::MessageType::Transaction,
                };
                let messages = (0..(count % 3) + 1)
                    .map(|i| v2::Message {
                        topic: resource(topic),
                        user_properties: Default::default(),
                        system_properties: Some(v2::SystemProperties {
                            tag: tag.clone(),
                            message_id: format!("01{:032X}", self.next_call * 4 + u64::from(i)),
                            message_type: message_type as i32,
                            message_group: group.clone(),
                            delivery_timestamp: delay_s.map(|s| {
                                vostok_proto::prost_types::Timestamp {
                                    seconds: ((self.now_ms / 1000) + u64::from(s)) as i64,
                                    nanos: 0,
                                }
                            }),
                            body_encoding: v2::Encoding::Identity as i32,
                            ..Default::default()
                        }),
                        body: body.clone(),
                    })
                    .collect();
                self.call(
                    client,
                    GrpcRequest::SendMessage(v2::SendMessageRequest { messages }),
                );
            }
            Op::Receive {
                client,
                group,
                topic,
                batch,
                invisible_s,
                poll_s,
                queue,
            } => {
                let topic = TOPICS[usize::from(topic) % TOPICS.len()];
                let request = v2::ReceiveMessageRequest {
                    group: resource(GROUPS[usize::from(group) % GROUPS.len()]),
                    message_queue: Some(v2::MessageQueue {
                        topic: resource(topic),
                        id: i32::from(queue % 4),
                        permission: v2::Permission::ReadWrite as i32,
                        broker: Some(v2::Broker {
                            name: "broker-a".to_owned(),
                            id: 0,
                            endpoints: endpoints(),
                        }),
                        accept_message_types: vec![],
                    }),
                    filter_expression: Some(v2::FilterExpression {
                        r#type: v2::FilterType::Tag as i32,
                        expression: "*".to_owned(),
                    }),
                    batch_size: i32::from(batch),
                    invisible_duration: invisible_s.map(duration_s),
                    auto_renew: invisible_s.is_none(),
                    long_polling_timeout: poll_s.map(duration_s),
                    attempt_id: None,
                };
                self.call(client, GrpcRequest::ReceiveMessage(request));
            }
            Op::Ack {
                client,
                pick,
                change_s,
                mangle,
            } => {
                let Some((topic, group, id, handle)) = (!self.handles.is_empty())
                    .then(|| self.handles[usize::from(pick) % self.handles.len()].clone())
                else {
                    return;
                };
                let handle = mangled(&handle, mangle);
                let request = match change_s {
                    Some(s) => {
                        GrpcRequest::ChangeInvisibleDuration(v2::ChangeInvisibleDurationRequest {
                            group: resource(&group),
                            topic: resource(&topic),
                            receipt_handle: handle,
                            invisible_duration: Some(duration_s(s)),
                            message_id: id,
                            lite_topic: None,
                            suspend: None,
                        })
                    }
                    None => GrpcRequest::AckMessage(v2::AckMessageRequest {
                        group: resource(&group),
                        topic: resource(&topic),
                        entries: vec![v2::AckMessageEntry {
                            message_id: id,
                            receipt_handle: handle,
                            lite_topic: None,
                        }],
                    }),
                };
                self.call(client, request);
            }
            Op::End {
                client,
                pick,
                commit,
                mangle,
            } => {
                let Some((topic, id, tx)) = (!self.transactions.is_empty()).then(|| {
                    self.transactions[usize::from(pick) % self.transactions.len()].clone()
                }) else {
                    return;
                };
                let request = v2::EndTransactionRequest {
                    topic: resource(&topic),
                    message_id: id,
                    transaction_id: mangled(&tx, mangle),
                    resolution: if commit {
                        v2::TransactionResolution::Commit
                    } else {
                        v2::TransactionResolution::Rollback
                    } as i32,
                    source: v2::TransactionSource::SourceClient as i32,
                    trace_context: String::new(),
                };
                self.call(client, GrpcRequest::EndTransaction(request));
            }
            Op::Settings {
                client,
                stream,
                consumer,
                group,
            } => {
                let pub_sub = if consumer {
                    v2::settings::PubSub::Subscription(v2::Subscription {
                        group: resource(GROUPS[usize::from(group) % GROUPS.len()]),
                        subscriptions: vec![v2::SubscriptionEntry {
                            topic: resource(TOPICS[usize::from(group) % TOPICS.len()]),
                            expression: None,
                        }],
                        ..Default::default()
                    })
                } else {
                    v2::settings::PubSub::Publishing(v2::Publishing {
                        topics: resource("TopicA").into_iter().collect(),
                        ..Default::default()
                    })
                };
                let stream = CallId(1_000_000 + u64::from(stream % 4));
                let meta = self.meta(client);
                self.broker
                    .handle_grpc_stream_opened(self.now_ms, stream, meta);
                self.broker.handle_grpc_telemetry(
                    self.now_ms,
                    stream,
                    v2::TelemetryCommand {
                        status: None,
                        command: Some(v2::telemetry_command::Command::Settings(v2::Settings {
                            pub_sub: Some(pub_sub),
                            ..Default::default()
                        })),
                    },
                );
            }
            Op::Heartbeat { client, group } => self.call(
                client,
                GrpcRequest::Heartbeat(v2::HeartbeatRequest {
                    group: resource(GROUPS[usize::from(group) % GROUPS.len()]),
                    client_type: v2::ClientType::SimpleConsumer as i32,
                }),
            ),
            Op::Terminate { client } => self.call(
                client,
                GrpcRequest::NotifyClientTermination(v2::NotifyClientTerminationRequest {
                    group: None,
                }),
            ),
            Op::Advance { ms } => {
                self.now_ms += u64::from(ms) * 4;
                self.broker.handle_timeout(self.now_ms);
            }
        }
    }

    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(output) = self.broker.poll_output() {
                progressed = true;
                match output {
                    BrokerOutput::Grpc(g) => self.grpc_output(g),
                    BrokerOutput::Sync(request) => {
                        self.broker.handle_synced(self.now_ms, request.up_to)
                    }
                    BrokerOutput::Checkpoint(request) => {
                        self.broker.handle_checkpoint_written(self.now_ms, &request)
                    }
                    _ => {}
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn grpc_output(&mut self, output: GrpcOutput) {
        match output {
            GrpcOutput::Reply { call, reply } => {
                let (kind, entries) = self
                    .waiting
                    .remove(&call.0)
                    .unwrap_or_else(|| panic!("a reply to call {} which waits for none", call.0));
                assert_eq!(reply_kind(&reply), kind, "a reply of another kind");
                self.check_reply(&reply, entries);
            }
            GrpcOutput::Telemetry { command, .. } => {
                if let Some(v2::telemetry_command::Command::Settings(_)) = &command.command {
                    check_status(&command.status, "settings reply");
                }
            }
            GrpcOutput::EndStream { .. } => {}
        }
    }

    fn check_reply(&mut self, reply: &GrpcReply, entries: usize) {
        match reply {
            GrpcReply::QueryRoute(r) => check_status(&r.status, "QueryRoute"),
            GrpcReply::Heartbeat(r) => check_status(&r.status, "Heartbeat"),
            GrpcReply::QueryAssignment(r) => check_status(&r.status, "QueryAssignment"),
            GrpcReply::ForwardMessageToDeadLetterQueue(r) => check_status(&r.status, "Forward"),
            GrpcReply::EndTransaction(r) => check_status(&r.status, "EndTransaction"),
            GrpcReply::NotifyClientTermination(r) => check_status(&r.status, "Notify"),
            GrpcReply::ChangeInvisibleDuration(r) => check_status(&r.status, "ChangeInvisible"),
            GrpcReply::RecallMessage(r) => check_status(&r.status, "Recall"),
            GrpcReply::SendMessage(r) => {
                check_status(&r.status, "SendMessage");
                assert_eq!(r.entries.len(), entries, "one send entry per message");
                for e in &r.entries {
                    check_status(&e.status, "SendResultEntry");
                    if !e.transaction_id.is_empty() {
                        self.transactions.push((
                            "TopicA".to_owned(),
                            e.message_id.clone(),
                            e.transaction_id.clone(),
                        ));
                    }
                }
            }
            GrpcReply::AckMessage(r) => {
                check_status(&r.status, "AckMessage");
                assert_eq!(r.entries.len(), entries, "one ack entry per entry");
                for e in &r.entries {
                    check_status(&e.status, "AckMessageResultEntry");
                }
            }
            GrpcReply::ReceiveMessage(frames) => {
                use v2::receive_message_response::Content;
                assert!(
                    frames.len() >= 2,
                    "a status and a delivery timestamp at least"
                );
                assert!(
                    matches!(
                        frames.first().and_then(|f| f.content.as_ref()),
                        Some(Content::Status(_))
                    ),
                    "the first frame is the status"
                );
                assert!(
                    matches!(
                        frames.last().and_then(|f| f.content.as_ref()),
                        Some(Content::DeliveryTimestamp(_))
                    ),
                    "the last frame is the delivery timestamp"
                );
                for frame in frames {
                    match &frame.content {
                        None => panic!("a frame without content"),
                        Some(Content::Status(s)) => check_status(&Some(s.clone()), "receive"),
                        Some(Content::Message(m)) => {
                            let p = m.system_properties.as_ref().expect("system properties");
                            let handle = p.receipt_handle.clone().expect("a receipt handle");
                            let topic =
                                m.topic.as_ref().map(|t| t.name.clone()).unwrap_or_default();
                            for group in GROUPS {
                                self.handles.push((
                                    topic.clone(),
                                    group.to_owned(),
                                    p.message_id.clone(),
                                    handle.clone(),
                                ));
                            }
                        }
                        Some(Content::DeliveryTimestamp(_)) => {}
                    }
                }
                self.handles.truncate(64);
            }
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut h = Harness::new();
    for op in ops.into_iter().take(48) {
        h.apply(op);
        h.drain();
    }
    // Past every long poll (at most the call's 30 s deadline): every call is answered.
    for _ in 0..8 {
        h.now_ms += 10_000;
        h.broker.handle_timeout(h.now_ms);
        h.drain();
    }
    assert!(
        h.waiting.is_empty(),
        "calls never answered: {:?}",
        h.waiting
    );
});
