//! RocketMQ 5's gRPC protocol served by the broker ([`crate::broker::grpc`]): routes,
//! Telemetry settings, heartbeats and the clients' virtual connections. The helpers here are
//! shared by the send and receive tests (`grpc_send.rs`, `grpc_receive.rs`).

use super::*;
use crate::broker::grpc::{
    v2, CallId, CallMeta, GrpcOutput, GrpcReply, GrpcRequest, CLIENT_IDLE_EXPIRY_MS, GRPC_CONN_BASE,
};

pub(super) const GRPC_TOPIC: &str = "GrpcTopic";
pub(super) const GRPC_GROUP: &str = "GrpcGroup";

/// The metadata of a call from client `client_id`.
pub(super) fn meta(client_id: &str) -> CallMeta {
    CallMeta {
        client_id: client_id.to_owned(),
        peer: peer(9),
        namespace: String::new(),
        language: "RUST".to_owned(),
        client_version: "5.0.0".to_owned(),
        deadline_ms: None,
    }
}

pub(super) fn resource(name: &str) -> v2::Resource {
    v2::Resource {
        resource_namespace: String::new(),
        name: name.to_owned(),
    }
}

/// The access point a client dialled.
pub(super) fn access_point() -> v2::Endpoints {
    v2::Endpoints {
        scheme: v2::AddressScheme::IPv4 as i32,
        addresses: vec![v2::Address {
            host: "127.0.0.1".to_owned(),
            port: 8081,
        }],
    }
}

/// Creates `topic` with `queues` queues and the attribute string `attributes`.
pub(super) fn create_topic(h: &mut Harness, topic: &str, queues: u32, attributes: Option<&str>) {
    let mut create = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", topic)
        .with_ext("defaultTopic", "TBW102")
        .with_ext("readQueueNums", queues)
        .with_ext("writeQueueNums", queues)
        .with_ext("perm", 6)
        .with_ext("topicFilterType", "SINGLE_TAG")
        .with_ext("order", "false");
    if let Some(a) = attributes {
        create = create.with_ext("attributes", a);
    }
    assert_eq!(h.call(1, create).code, response::SUCCESS);
}

/// Every gRPC output in `outputs`.
pub(super) fn grpc_outputs(outputs: Vec<BrokerOutput>) -> Vec<GrpcOutput> {
    outputs
        .into_iter()
        .filter_map(|o| match o {
            BrokerOutput::Grpc(g) => Some(g),
            _ => None,
        })
        .collect()
}

/// The reply to `call` among `outputs`, if there is one.
pub(super) fn reply_to(outputs: &[GrpcOutput], call: CallId) -> Option<GrpcReply> {
    outputs.iter().find_map(|o| match o {
        GrpcOutput::Reply { call: c, reply } if *c == call => Some(reply.clone()),
        _ => None,
    })
}

impl Harness {
    /// Makes a gRPC call and returns every gRPC output it caused (the driver's side of the
    /// broker's other outputs is answered: syncs complete at once).
    pub(super) fn grpc(
        &mut self,
        call: u64,
        meta: CallMeta,
        request: GrpcRequest,
    ) -> Vec<GrpcOutput> {
        self.broker
            .handle_grpc_call(self.now_ms, CallId(call), meta, request);
        let outputs = self.drain();
        let mut grpc = Vec::new();
        let mut rest = Vec::new();
        for o in outputs {
            match o {
                BrokerOutput::Grpc(g) => grpc.push(g),
                other => rest.push(other),
            }
        }
        answer_syncs_collecting(self, rest, &mut grpc);
        grpc
    }

    /// Makes a gRPC call that must be answered at once.
    pub(super) fn grpc_call(
        &mut self,
        call: u64,
        meta: CallMeta,
        request: GrpcRequest,
    ) -> GrpcReply {
        let outputs = self.grpc(call, meta, request);
        reply_to(&outputs, CallId(call)).unwrap_or_else(|| panic!("no reply: {outputs:?}"))
    }

    /// Writes a Telemetry command on stream `stream` (opened first if new) and returns the
    /// gRPC outputs.
    pub(super) fn telemetry(
        &mut self,
        stream: u64,
        meta: CallMeta,
        command: v2::TelemetryCommand,
    ) -> Vec<GrpcOutput> {
        self.broker
            .handle_grpc_stream_opened(self.now_ms, CallId(stream), meta);
        self.broker
            .handle_grpc_telemetry(self.now_ms, CallId(stream), command);
        grpc_outputs(self.drain())
    }
}

/// Completes the syncs among `outputs` (and the ones they lead to), collecting gRPC outputs.
fn answer_syncs_collecting(
    h: &mut Harness,
    outputs: Vec<BrokerOutput>,
    grpc: &mut Vec<GrpcOutput>,
) {
    let mut pending = outputs;
    while !pending.is_empty() {
        let mut next = Vec::new();
        for o in pending {
            match o {
                BrokerOutput::Sync(request) => {
                    h.broker.handle_synced(h.now_ms, request.up_to);
                }
                BrokerOutput::Checkpoint(request) => {
                    h.broker.handle_checkpoint_written(h.now_ms, &request);
                }
                _ => continue,
            }
            for o in h.drain() {
                match o {
                    BrokerOutput::Grpc(g) => grpc.push(g),
                    other => next.push(other),
                }
            }
        }
        pending = next;
    }
}

fn route(h: &mut Harness, call: u64, topic: &str) -> v2::QueryRouteResponse {
    let request = GrpcRequest::QueryRoute(v2::QueryRouteRequest {
        topic: Some(resource(topic)),
        endpoints: Some(access_point()),
    });
    match h.grpc_call(call, meta("c1"), request) {
        GrpcReply::QueryRoute(r) => r,
        other => panic!("{other:?}"),
    }
}

fn code(status: &Option<v2::Status>) -> v2::Code {
    v2::Code::try_from(status.as_ref().expect("a status").code).expect("a known code")
}

#[test]
fn a_route_lists_the_topics_queues_at_the_access_point() {
    let mut h = Harness::new(test_config());
    create_topic(&mut h, GRPC_TOPIC, 4, None);
    let r = route(&mut h, 1, GRPC_TOPIC);
    assert_eq!(code(&r.status), v2::Code::Ok);
    let ids: Vec<i32> = r.message_queues.iter().map(|q| q.id).collect();
    assert_eq!(ids, [0, 1, 2, 3]);
    for q in &r.message_queues {
        assert_eq!(q.permission, v2::Permission::ReadWrite as i32);
        let broker = q.broker.as_ref().unwrap();
        assert_eq!(broker.id, 0, "the master");
        assert_eq!(broker.name, h.broker.config.broker_name);
        assert_eq!(broker.endpoints.as_ref(), Some(&access_point()));
        assert_eq!(q.topic.as_ref().unwrap().name, GRPC_TOPIC);
        // No message.type attribute: everything is accepted.
        assert_eq!(q.accept_message_types, [1, 2, 3, 4]);
    }
}

#[test]
fn a_routes_types_follow_the_message_type_attribute() {
    let mut h = Harness::new(test_config());
    create_topic(&mut h, "FifoTopic", 2, Some("+message.type=FIFO"));
    let r = route(&mut h, 1, "FifoTopic");
    assert_eq!(code(&r.status), v2::Code::Ok);
    assert!(r
        .message_queues
        .iter()
        .all(|q| q.accept_message_types == [v2::MessageType::Fifo as i32]));
}

#[test]
fn unknown_and_illegal_topics_have_no_route() {
    let mut h = Harness::new(test_config());
    assert_eq!(
        code(&route(&mut h, 1, "Nowhere").status),
        v2::Code::TopicNotFound
    );
    assert_eq!(
        code(&route(&mut h, 2, "bad topic!").status),
        v2::Code::IllegalTopic
    );
    let no_endpoints = GrpcRequest::QueryRoute(v2::QueryRouteRequest {
        topic: Some(resource("Nowhere")),
        endpoints: None,
    });
    match h.grpc_call(3, meta("c1"), no_endpoints) {
        GrpcReply::QueryRoute(r) => assert_eq!(code(&r.status), v2::Code::IllegalAccessPoint),
        other => panic!("{other:?}"),
    }
}

fn settings_of(outputs: &[GrpcOutput], stream: u64) -> (v2::Status, v2::Settings) {
    outputs
        .iter()
        .find_map(|o| match o {
            GrpcOutput::Telemetry { stream: s, command } if *s == CallId(stream) => {
                match &command.command {
                    Some(v2::telemetry_command::Command::Settings(settings)) => {
                        Some((command.status.clone().unwrap(), settings.clone()))
                    }
                    _ => None,
                }
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no settings reply: {outputs:?}"))
}

fn settings_command(
    pub_sub: v2::settings::PubSub,
    client_type: v2::ClientType,
) -> v2::TelemetryCommand {
    v2::TelemetryCommand {
        status: None,
        command: Some(v2::telemetry_command::Command::Settings(v2::Settings {
            client_type: Some(client_type as i32),
            pub_sub: Some(pub_sub),
            ..Default::default()
        })),
    }
}

#[test]
fn a_producers_settings_come_back_with_a_retry_policy_and_a_body_limit() {
    let mut h = Harness::new(test_config());
    // Node sends no max_body_size: an echo would make every send fail on the client.
    let publishing = v2::settings::PubSub::Publishing(v2::Publishing {
        topics: vec![resource(GRPC_TOPIC)],
        max_body_size: 0,
        validate_message_type: false,
    });
    let out = h.telemetry(
        100,
        meta("p1"),
        settings_command(publishing, v2::ClientType::Producer),
    );
    let (status, settings) = settings_of(&out, 100);
    assert_eq!(status.code, v2::Code::Ok as i32);
    let policy = settings.backoff_policy.unwrap();
    assert_eq!(policy.max_attempts, 3);
    assert!(matches!(
        policy.strategy,
        Some(v2::retry_policy::Strategy::ExponentialBackoff(_))
    ));
    let Some(v2::settings::PubSub::Publishing(p)) = settings.pub_sub else {
        panic!("publishing expected");
    };
    assert_eq!(p.max_body_size, 4 * 1024 * 1024);
    assert!(p.validate_message_type);
    assert_eq!(settings.metric.map(|m| m.on), Some(false));
    // The stream stays open: nothing ends it.
    assert!(!out
        .iter()
        .any(|o| matches!(o, GrpcOutput::EndStream { .. })));
}

#[test]
fn a_consumers_settings_carry_the_groups_retry_policy_and_fifo_flag() {
    let mut h = Harness::new(test_config());
    let group = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).with_body(
        serde_json::to_vec(&serde_json::json!({
            "groupName": GRPC_GROUP,
            "consumeMessageOrderly": true,
            "retryMaxTimes": 5,
        }))
        .unwrap(),
    );
    assert_eq!(h.call(1, group).code, response::SUCCESS);
    let subscription = v2::settings::PubSub::Subscription(v2::Subscription {
        group: Some(resource(GRPC_GROUP)),
        subscriptions: vec![v2::SubscriptionEntry {
            topic: Some(resource(GRPC_TOPIC)),
            expression: Some(v2::FilterExpression {
                r#type: v2::FilterType::Tag as i32,
                expression: "*".to_owned(),
            }),
        }],
        ..Default::default()
    });
    let out = h.telemetry(
        100,
        meta("c1"),
        settings_command(subscription, v2::ClientType::PushConsumer),
    );
    let (status, settings) = settings_of(&out, 100);
    assert_eq!(status.code, v2::Code::Ok as i32);
    let policy = settings.backoff_policy.unwrap();
    assert_eq!(policy.max_attempts, 6, "retryMaxTimes + 1");
    let Some(v2::retry_policy::Strategy::CustomizedBackoff(backoff)) = policy.strategy else {
        panic!("a customized back-off expected");
    };
    assert_eq!(backoff.next.first().map(|d| d.seconds), Some(1));
    assert_eq!(backoff.next.last().map(|d| d.seconds), Some(7200));
    let Some(v2::settings::PubSub::Subscription(s)) = settings.pub_sub else {
        panic!("subscription expected");
    };
    assert_eq!(s.fifo, Some(true));
    assert_eq!(s.receive_batch_size, Some(32));
    assert_eq!(s.long_polling_timeout.map(|d| d.seconds), Some(20));

    // The client is registered with the broker as a POP consumer of the group.
    let list = h.call(
        1,
        RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP)
            .with_ext("consumerGroup", GRPC_GROUP),
    );
    assert_eq!(list.code, response::SUCCESS, "{list:?}");
    let ids: serde_json::Value = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(ids["consumerIdList"], serde_json::json!(["c1"]));
}

#[test]
fn settings_without_publishing_or_subscription_end_the_stream() {
    let mut h = Harness::new(test_config());
    let command = v2::TelemetryCommand {
        status: None,
        command: Some(v2::telemetry_command::Command::Settings(
            v2::Settings::default(),
        )),
    };
    let out = h.telemetry(100, meta("c1"), command);
    assert!(matches!(
        out.as_slice(),
        [GrpcOutput::EndStream { stream: CallId(100), error }] if error.code == 3
    ));
}

#[test]
fn a_heartbeat_is_answered_ok_and_a_terminated_client_is_forgotten() {
    let mut h = Harness::new(test_config());
    let heartbeat = GrpcRequest::Heartbeat(v2::HeartbeatRequest {
        group: Some(resource(GRPC_GROUP)),
        client_type: v2::ClientType::SimpleConsumer as i32,
    });
    match h.grpc_call(1, meta("c1"), heartbeat) {
        GrpcReply::Heartbeat(r) => assert_eq!(code(&r.status), v2::Code::Ok),
        other => panic!("{other:?}"),
    }
    let list = || {
        RemotingCommand::request(request::GET_CONSUMER_LIST_BY_GROUP)
            .with_ext("consumerGroup", GRPC_GROUP)
    };
    assert_eq!(h.call(1, list()).code, response::SUCCESS);
    let bye = GrpcRequest::NotifyClientTermination(v2::NotifyClientTerminationRequest {
        group: Some(resource(GRPC_GROUP)),
    });
    match h.grpc_call(2, meta("c1"), bye) {
        GrpcReply::NotifyClientTermination(r) => assert_eq!(code(&r.status), v2::Code::Ok),
        other => panic!("{other:?}"),
    }
    // No consumer of the group is left.
    assert_ne!(h.call(1, list()).code, response::SUCCESS);
}

#[test]
fn a_silent_client_expires_and_its_virtual_connection_closes() {
    let mut h = Harness::new(test_config());
    let heartbeat = GrpcRequest::Heartbeat(v2::HeartbeatRequest {
        group: Some(resource(GRPC_GROUP)),
        client_type: v2::ClientType::SimpleConsumer as i32,
    });
    h.grpc_call(1, meta("c1"), heartbeat);
    assert!(h.broker.gateway.clients["c1"].conn.0 > GRPC_CONN_BASE);
    let due = h.broker.poll_timeout().unwrap();
    assert!(due <= h.now_ms + CLIENT_IDLE_EXPIRY_MS);
    h.advance_to(h.now_ms + CLIENT_IDLE_EXPIRY_MS);
    assert!(h.broker.gateway.clients.is_empty());
    assert!(h.broker.gateway.by_conn.is_empty());
}

#[test]
fn a_terminated_clients_held_receive_is_answered_and_forgotten() {
    let mut h = Harness::new(test_config());
    create_topic(&mut h, GRPC_TOPIC, 2, None);
    let receive = GrpcRequest::ReceiveMessage(v2::ReceiveMessageRequest {
        group: Some(resource(GRPC_GROUP)),
        message_queue: Some(v2::MessageQueue {
            topic: Some(resource(GRPC_TOPIC)),
            id: -1,
            permission: v2::Permission::ReadWrite as i32,
            broker: None,
            accept_message_types: vec![],
        }),
        filter_expression: None,
        batch_size: 8,
        invisible_duration: Some(vostok_proto::prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        auto_renew: false,
        long_polling_timeout: Some(vostok_proto::prost_types::Duration {
            seconds: 20,
            nanos: 0,
        }),
        attempt_id: None,
    });
    let mut m = meta("c1");
    m.deadline_ms = Some(h.now_ms + 30_000);
    // Nothing to receive: the POP is held.
    let out = h.grpc(1, m.clone(), receive);
    assert!(reply_to(&out, CallId(1)).is_none(), "{out:?}");
    assert_eq!(h.broker.gateway.pending.len(), 1);
    let bye = GrpcRequest::NotifyClientTermination(v2::NotifyClientTerminationRequest {
        group: Some(resource(GRPC_GROUP)),
    });
    let out = h.grpc(2, m, bye);
    match reply_to(&out, CallId(1)) {
        Some(GrpcReply::ReceiveMessage(frames)) => assert!(frames.len() == 2, "{frames:?}"),
        other => panic!("the held receive is answered: {other:?}"),
    }
    assert!(reply_to(&out, CallId(2)).is_some());
    assert!(h.broker.gateway.pending.is_empty());
    assert!(h.broker.gateway.pending_conns.is_empty());
}

/// Opens stream 100 for client `c1` with consumer settings of the group: registered with the
/// broker as a consumer, as mqadmin finds it.
fn consumer_with_stream(h: &mut Harness) {
    let subscription = v2::settings::PubSub::Subscription(v2::Subscription {
        group: Some(resource(GRPC_GROUP)),
        subscriptions: vec![v2::SubscriptionEntry {
            topic: Some(resource(GRPC_TOPIC)),
            expression: None,
        }],
        ..Default::default()
    });
    h.telemetry(
        100,
        meta("c1"),
        settings_command(subscription, v2::ClientType::PushConsumer),
    );
}

/// The server command written on stream 100 among `outputs`.
fn server_command(outputs: &[BrokerOutput]) -> v2::telemetry_command::Command {
    outputs
        .iter()
        .find_map(|o| match o {
            BrokerOutput::Grpc(GrpcOutput::Telemetry { stream, command })
                if *stream == CallId(100) =>
            {
                command.command.clone()
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no command on the stream: {outputs:?}"))
}

#[test]
fn consumer_status_reaches_a_grpc_client_as_a_stack_trace_request() {
    let mut h = Harness::new(test_config());
    create_topic(&mut h, GRPC_TOPIC, 2, None);
    consumer_with_stream(&mut h);
    let ask = RemotingCommand::request(request::GET_CONSUMER_RUNNING_INFO)
        .with_ext("consumerGroup", GRPC_GROUP)
        .with_ext("clientId", "c1")
        .with_ext("jstackEnable", "true");
    let outputs = h.request(2, ask);
    assert!(
        responses_on(&outputs, 2).is_empty(),
        "answered by the client"
    );
    let v2::telemetry_command::Command::PrintThreadStackTraceCommand(print) =
        server_command(&outputs)
    else {
        panic!("a stack trace request");
    };
    let answer = v2::TelemetryCommand {
        status: Some(crate::broker::grpc::status::ok()),
        command: Some(v2::telemetry_command::Command::ThreadStackTrace(
            v2::ThreadStackTrace {
                nonce: print.nonce,
                thread_stack_trace: Some("\"main\" RUNNABLE".to_owned()),
            },
        )),
    };
    h.broker
        .handle_grpc_telemetry(h.now_ms, CallId(100), answer);
    let back = responses_on(&h.drain(), 2);
    assert_eq!(back.len(), 1, "the admin gets the client's answer");
    assert_eq!(back[0].code, response::SUCCESS);
    let info: serde_json::Value = serde_json::from_slice(&back[0].body).unwrap();
    assert_eq!(info["jstack"], "\"main\" RUNNABLE");
}

#[test]
fn consume_message_reaches_a_grpc_client_as_a_verification_with_the_message() {
    let mut h = Harness::new(test_config());
    create_topic(&mut h, GRPC_TOPIC, 2, None);
    let sent = h.call(1, send_v2(GRPC_TOPIC, 0, b"verify me", "tagV"));
    assert_eq!(sent.code, response::SUCCESS);
    let msg_id = sent.ext("msgId").unwrap().to_owned();
    consumer_with_stream(&mut h);
    let ask = RemotingCommand::request(request::CONSUME_MESSAGE_DIRECTLY)
        .with_ext("consumerGroup", GRPC_GROUP)
        .with_ext("clientId", "c1")
        .with_ext("msgId", &msg_id);
    let outputs = h.request(2, ask);
    let v2::telemetry_command::Command::VerifyMessageCommand(verify) = server_command(&outputs)
    else {
        panic!("a verification request");
    };
    let message = verify.message.unwrap();
    assert_eq!(message.body, b"verify me");
    assert_eq!(
        message.system_properties.unwrap().tag.as_deref(),
        Some("tagV")
    );
    let answer = v2::TelemetryCommand {
        status: Some(crate::broker::grpc::status::ok()),
        command: Some(v2::telemetry_command::Command::VerifyMessageResult(
            v2::VerifyMessageResult {
                nonce: verify.nonce,
            },
        )),
    };
    h.broker
        .handle_grpc_telemetry(h.now_ms, CallId(100), answer);
    let back = responses_on(&h.drain(), 2);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].code, response::SUCCESS);
    let result: serde_json::Value = serde_json::from_slice(&back[0].body).unwrap();
    assert_eq!(result["consumeResult"], "CR_SUCCESS");
    assert_eq!(result["remark"], "from gRPC client");
}

#[test]
fn a_grpc_client_without_a_stream_is_no_relay_target() {
    let mut h = Harness::new(test_config());
    create_topic(&mut h, GRPC_TOPIC, 2, None);
    let heartbeat = GrpcRequest::Heartbeat(v2::HeartbeatRequest {
        group: Some(resource(GRPC_GROUP)),
        client_type: v2::ClientType::SimpleConsumer as i32,
    });
    h.grpc_call(1, meta("c1"), heartbeat);
    let ask = RemotingCommand::request(request::GET_CONSUMER_RUNNING_INFO)
        .with_ext("consumerGroup", GRPC_GROUP)
        .with_ext("clientId", "c1");
    let answer = h.call(2, ask);
    assert_eq!(answer.code, response::SYSTEM_ERROR);
    assert!(answer.remark.unwrap().contains("Telemetry"));
}
