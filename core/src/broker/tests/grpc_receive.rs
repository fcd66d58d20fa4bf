//! ReceiveMessage, AckMessage, ChangeInvisibleDuration, ForwardMessageToDeadLetterQueue and
//! QueryAssignment over gRPC (see `grpc.rs` for the shared helpers).

use super::grpc::*;
use super::*;
use crate::broker::grpc::message::{duration_of_ms, md5_digest};
use crate::broker::grpc::receive::ReceiptHandle;
use crate::broker::grpc::{v2, CallId, GrpcReply, GrpcRequest};
use v2::receive_message_response::Content;

const INVISIBLE_MS: u64 = 5_000;

fn with_topic(queues: u32, attributes: Option<&str>) -> Harness {
    let mut h = Harness::new(test_config());
    create_topic(&mut h, GRPC_TOPIC, queues, attributes);
    h
}

fn send(h: &mut Harness, queue_id: i32, body: &str, tag: &str) {
    let answer = h.call(1, send_v2(GRPC_TOPIC, queue_id, body.as_bytes(), tag));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
}

fn set_group(h: &mut Harness, json: serde_json::Value) {
    let update = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
        .with_body(serde_json::to_vec(&json).unwrap());
    assert_eq!(h.call(1, update).code, response::SUCCESS);
}

fn receive_request(batch: i32, poll_ms: Option<u64>) -> v2::ReceiveMessageRequest {
    v2::ReceiveMessageRequest {
        group: Some(resource(GRPC_GROUP)),
        message_queue: Some(v2::MessageQueue {
            topic: Some(resource(GRPC_TOPIC)),
            id: 0,
            ..Default::default()
        }),
        filter_expression: Some(v2::FilterExpression {
            r#type: v2::FilterType::Tag as i32,
            expression: "*".into(),
        }),
        batch_size: batch,
        invisible_duration: Some(duration_of_ms(INVISIBLE_MS)),
        auto_renew: false,
        long_polling_timeout: poll_ms.map(duration_of_ms),
        attempt_id: None,
    }
}

fn frames_of(reply: GrpcReply) -> Vec<v2::ReceiveMessageResponse> {
    match reply {
        GrpcReply::ReceiveMessage(frames) => frames,
        other => panic!("{other:?}"),
    }
}

/// Checks the framing (status first, delivery timestamp last, nothing empty) and returns the
/// status code and messages.
fn parse_frames(frames: &[v2::ReceiveMessageResponse]) -> (v2::Code, Vec<v2::Message>) {
    assert!(frames.len() >= 2, "{frames:?}");
    assert!(frames.iter().all(|f| f.content.is_some()));
    let Some(Content::Status(s)) = &frames[0].content else {
        panic!("status first: {frames:?}")
    };
    assert!(matches!(
        frames.last().unwrap().content,
        Some(Content::DeliveryTimestamp(_))
    ));
    let messages: Vec<v2::Message> = frames[1..frames.len() - 1]
        .iter()
        .map(|f| match &f.content {
            Some(Content::Message(m)) => m.clone(),
            other => panic!("a message frame: {other:?}"),
        })
        .collect();
    let code = v2::Code::try_from(s.code).unwrap();
    if code != v2::Code::Ok {
        assert!(messages.is_empty());
    }
    (code, messages)
}

fn receive(
    h: &mut Harness,
    call: u64,
    request: v2::ReceiveMessageRequest,
) -> (v2::Code, Vec<v2::Message>) {
    let reply = h.grpc_call(call, meta("c1"), GrpcRequest::ReceiveMessage(request));
    parse_frames(&frames_of(reply))
}

fn handle_of(m: &v2::Message) -> String {
    m.system_properties
        .as_ref()
        .unwrap()
        .receipt_handle
        .clone()
        .unwrap()
}

fn attempt_of(m: &v2::Message) -> i32 {
    m.system_properties
        .as_ref()
        .unwrap()
        .delivery_attempt
        .unwrap()
}

fn body_of(m: &v2::Message) -> String {
    String::from_utf8(m.body.clone()).unwrap()
}

fn ack(h: &mut Harness, call: u64, handles: &[String]) -> v2::AckMessageResponse {
    let request = v2::AckMessageRequest {
        group: Some(resource(GRPC_GROUP)),
        topic: Some(resource(GRPC_TOPIC)),
        entries: handles
            .iter()
            .map(|handle| v2::AckMessageEntry {
                message_id: "id".into(),
                receipt_handle: handle.clone(),
                lite_topic: None,
            })
            .collect(),
    };
    match h.grpc_call(call, meta("c1"), GrpcRequest::AckMessage(request)) {
        GrpcReply::AckMessage(r) => r,
        other => panic!("{other:?}"),
    }
}

fn change(
    h: &mut Harness,
    call: u64,
    handle: &str,
    invisible: Option<u64>,
) -> v2::ChangeInvisibleDurationResponse {
    let request = v2::ChangeInvisibleDurationRequest {
        group: Some(resource(GRPC_GROUP)),
        topic: Some(resource(GRPC_TOPIC)),
        receipt_handle: handle.to_owned(),
        invisible_duration: invisible.map(duration_of_ms),
        message_id: "id".into(),
        lite_topic: None,
        suspend: None,
    };
    match h.grpc_call(
        call,
        meta("c1"),
        GrpcRequest::ChangeInvisibleDuration(request),
    ) {
        GrpcReply::ChangeInvisibleDuration(r) => r,
        other => panic!("{other:?}"),
    }
}

fn code(s: &Option<v2::Status>) -> v2::Code {
    v2::Code::try_from(s.as_ref().expect("a status").code).unwrap()
}

#[test]
fn a_receive_frames_its_messages_and_acked_ones_never_return() {
    let mut h = with_topic(4, None);
    for i in 0..3 {
        send(&mut h, i, &format!("m{i}"), "TagA");
    }
    let (status, messages) = receive(&mut h, 1, receive_request(32, Some(0)));
    assert_eq!(status, v2::Code::Ok);
    let mut bodies: Vec<String> = messages.iter().map(body_of).collect();
    bodies.sort();
    assert_eq!(bodies, ["m0", "m1", "m2"], "every queue is read");
    for m in &messages {
        let sys = m.system_properties.as_ref().unwrap();
        assert_eq!(m.topic.as_ref().unwrap().name, GRPC_TOPIC);
        assert_eq!(sys.tag.as_deref(), Some("TagA"));
        assert_eq!(sys.delivery_attempt, Some(1));
        assert_eq!(sys.invisible_duration, Some(duration_of_ms(INVISIBLE_MS)));
        assert_eq!(sys.body_digest, Some(md5_digest(&m.body)));
        let handle = ReceiptHandle::parse(&handle_of(m)).expect("a handle we can read back");
        assert_eq!(handle.queue_offset(), sys.queue_offset.unwrap());
        assert!(handle.commit_log_offset >= 0);
    }
    let handles: Vec<String> = messages.iter().map(handle_of).collect();
    let acked = ack(&mut h, 2, &handles);
    assert_eq!(code(&acked.status), v2::Code::Ok);
    assert_eq!(acked.entries.len(), 3);
    assert!(acked
        .entries
        .iter()
        .all(|e| code(&e.status) == v2::Code::Ok));
    // Acked twice: the handle names nothing in flight any more.
    let again = ack(&mut h, 3, &handles[..1]);
    assert_eq!(
        code(&again.entries[0].status),
        v2::Code::InvalidReceiptHandle
    );
    assert_eq!(code(&again.status), v2::Code::InvalidReceiptHandle);
    step(&mut h, T0 + INVISIBLE_MS + 2_000);
    let (status, messages) = receive(&mut h, 4, receive_request(32, Some(0)));
    assert_eq!(status, v2::Code::MessageNotFound);
    assert!(messages.is_empty());
}

#[test]
fn an_unacked_message_comes_back_with_the_next_delivery_attempt_and_change_gives_a_new_handle() {
    let mut h = with_topic(1, None);
    send(&mut h, 0, "m0", "t");
    let (_, first) = receive(&mut h, 1, receive_request(1, Some(0)));
    assert_eq!(attempt_of(&first[0]), 1);
    step(&mut h, T0 + INVISIBLE_MS + 2_000);
    let (status, second) = receive(&mut h, 2, receive_request(1, Some(0)));
    assert_eq!(status, v2::Code::Ok);
    assert_eq!(body_of(&second[0]), "m0");
    assert_eq!(attempt_of(&second[0]), 2);
    // The first delivery's handle expired.
    let late = ack(&mut h, 3, &[handle_of(&first[0])]);
    assert_eq!(
        code(&late.entries[0].status),
        v2::Code::InvalidReceiptHandle
    );

    let old = handle_of(&second[0]);
    let changed = change(&mut h, 4, &old, Some(30_000));
    assert_eq!(code(&changed.status), v2::Code::Ok);
    assert!(!changed.receipt_handle.is_empty());
    assert_ne!(changed.receipt_handle, old);
    // Past the old invisible time it stays hidden.
    let now = h.now_ms + INVISIBLE_MS + 2_000;
    step(&mut h, now);
    let (status, _) = receive(&mut h, 5, receive_request(1, Some(0)));
    assert_eq!(status, v2::Code::MessageNotFound);
    let stale = ack(&mut h, 6, std::slice::from_ref(&old));
    assert_eq!(
        code(&stale.entries[0].status),
        v2::Code::InvalidReceiptHandle
    );
    let acked = ack(&mut h, 7, &[changed.receipt_handle]);
    assert_eq!(code(&acked.status), v2::Code::Ok);
}

#[test]
fn past_max_attempts_a_message_goes_to_the_dlq() {
    let mut h = with_topic(1, None);
    set_group(
        &mut h,
        serde_json::json!({"groupName": GRPC_GROUP, "retryMaxTimes": 1}),
    );
    send(&mut h, 0, "m0", "t");
    let (_, first) = receive(&mut h, 1, receive_request(1, Some(0)));
    assert_eq!(attempt_of(&first[0]), 1);
    step(&mut h, T0 + INVISIBLE_MS + 2_000);
    let (_, second) = receive(&mut h, 2, receive_request(1, Some(0)));
    assert_eq!(attempt_of(&second[0]), 2);
    let now = h.now_ms + INVISIBLE_MS + 2_000;
    step(&mut h, now);
    let (status, _) = receive(&mut h, 3, receive_request(1, Some(0)));
    assert_eq!(status, v2::Code::MessageNotFound);
    assert_eq!(bodies(&h, &format!("%DLQ%{GRPC_GROUP}"), 0), ["m0"]);
}

#[test]
fn a_long_poll_ends_before_the_calls_deadline_or_when_a_message_arrives() {
    let mut h = with_topic(1, None);
    let mut m = meta("c1");
    m.deadline_ms = Some(T0 + 5_000);
    // Rust 5.0.0: the deadline equals the long-polling timeout.
    let outputs = h.grpc(
        1,
        m.clone(),
        GrpcRequest::ReceiveMessage(receive_request(1, Some(5_000))),
    );
    assert!(reply_to(&outputs, CallId(1)).is_none(), "held");
    let outputs = grpc_outputs(h.advance_to(T0 + 3_900));
    assert!(reply_to(&outputs, CallId(1)).is_none(), "still held");
    let outputs = grpc_outputs(h.advance_to(T0 + 4_000));
    let reply = reply_to(&outputs, CallId(1)).expect("answered a second before the deadline");
    assert_eq!(parse_frames(&frames_of(reply)).0, v2::Code::MessageNotFound);

    m.deadline_ms = Some(h.now_ms + 20_000);
    let outputs = h.grpc(
        2,
        m,
        GrpcRequest::ReceiveMessage(receive_request(1, Some(15_000))),
    );
    assert!(reply_to(&outputs, CallId(2)).is_none(), "held");
    h.broker
        .handle_request(h.now_ms, ConnId(1), send_v2(GRPC_TOPIC, 0, b"late", "t"));
    let outputs = grpc_outputs(h.drain());
    let reply = reply_to(&outputs, CallId(2)).expect("the arrival answers the held receive");
    let (status, messages) = parse_frames(&frames_of(reply));
    assert_eq!(status, v2::Code::Ok);
    assert_eq!(body_of(&messages[0]), "late");
}

#[test]
fn receives_with_bad_input_get_clear_statuses() {
    let mut h = with_topic(1, None);
    let mut r = receive_request(0, Some(0));
    assert_eq!(receive(&mut h, 1, r.clone()).0, v2::Code::BadRequest);
    r.batch_size = 33;
    assert_eq!(receive(&mut h, 2, r.clone()).0, v2::Code::BadRequest);
    r.batch_size = 1;
    r.invisible_duration = Some(duration_of_ms(100));
    assert_eq!(
        receive(&mut h, 3, r.clone()).0,
        v2::Code::IllegalInvisibleTime
    );
    r.invisible_duration = None;
    assert_eq!(
        receive(&mut h, 4, r.clone()).0,
        v2::Code::IllegalInvisibleTime
    );
    // auto_renew (push consumers) needs none.
    r.auto_renew = true;
    assert_eq!(receive(&mut h, 5, r.clone()).0, v2::Code::MessageNotFound);
    r.filter_expression = Some(v2::FilterExpression {
        r#type: v2::FilterType::Sql as i32,
        expression: "a >".into(),
    });
    assert_eq!(
        receive(&mut h, 6, r.clone()).0,
        v2::Code::IllegalFilterExpression
    );
    let mut unknown = receive_request(1, Some(0));
    unknown.message_queue.as_mut().unwrap().topic = Some(resource("NoSuchTopic"));
    assert_eq!(receive(&mut h, 7, unknown).0, v2::Code::TopicNotFound);
    let mut no_group = receive_request(1, Some(0));
    no_group.group = None;
    assert_eq!(
        receive(&mut h, 8, no_group).0,
        v2::Code::IllegalConsumerGroup
    );
    // Without a long-polling timeout and with too little time left (the proxy's rule).
    let mut m = meta("c1");
    m.deadline_ms = Some(T0 + 2_000);
    let reply = h.grpc_call(9, m, GrpcRequest::ReceiveMessage(receive_request(1, None)));
    assert_eq!(
        parse_frames(&frames_of(reply)).0,
        v2::Code::IllegalPollingTime
    );

    for (call, handle) in [(10, "garbage"), (11, ""), (12, "1 2 3 4 0 broker-a 0 5 9")] {
        let r = ack(&mut h, call, &[handle.to_owned()]);
        assert_eq!(
            code(&r.entries[0].status),
            v2::Code::InvalidReceiptHandle,
            "{handle}"
        );
    }
    let r = change(&mut h, 13, "garbage", Some(1_000));
    assert_eq!(code(&r.status), v2::Code::InvalidReceiptHandle);
    assert!(r.receipt_handle.is_empty());
    send(&mut h, 0, "m0", "t");
    let (_, messages) = receive(&mut h, 14, receive_request(1, Some(0)));
    let handle = handle_of(&messages[0]);
    assert_eq!(
        code(&change(&mut h, 15, &handle, None).status),
        v2::Code::IllegalInvisibleTime
    );
    assert_eq!(
        code(&change(&mut h, 16, &handle, Some(13 * 3_600_000)).status),
        v2::Code::IllegalInvisibleTime
    );
    // One good and one bad entry: each has its own status.
    let both = ack(&mut h, 17, &[handle, "garbage".to_owned()]);
    assert_eq!(code(&both.entries[0].status), v2::Code::Ok);
    assert_eq!(
        code(&both.entries[1].status),
        v2::Code::InvalidReceiptHandle
    );
    assert_eq!(code(&both.status), v2::Code::MultipleResults);
}

fn assignments(h: &mut Harness, call: u64, topic: &str) -> v2::QueryAssignmentResponse {
    let request = v2::QueryAssignmentRequest {
        topic: Some(resource(topic)),
        group: Some(resource(GRPC_GROUP)),
        endpoints: Some(access_point()),
    };
    match h.grpc_call(call, meta("c1"), GrpcRequest::QueryAssignment(request)) {
        GrpcReply::QueryAssignment(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn assignments_are_one_per_broker_or_one_per_queue_for_fifo_groups() {
    let mut h = with_topic(4, None);
    let r = assignments(&mut h, 1, GRPC_TOPIC);
    assert_eq!(code(&r.status), v2::Code::Ok);
    let ids: Vec<i32> = r
        .assignments
        .iter()
        .map(|a| a.message_queue.as_ref().unwrap().id)
        .collect();
    assert_eq!(ids, [-1]);
    let queue = r.assignments[0].message_queue.as_ref().unwrap();
    assert_eq!(queue.permission, v2::Permission::ReadWrite as i32);
    let broker = queue.broker.as_ref().unwrap();
    assert_eq!(broker.endpoints.as_ref(), Some(&access_point()));
    assert_eq!(broker.name, h.broker.config.broker_name);

    set_group(
        &mut h,
        serde_json::json!({"groupName": GRPC_GROUP, "consumeMessageOrderly": true}),
    );
    let r = assignments(&mut h, 2, GRPC_TOPIC);
    let ids: Vec<i32> = r
        .assignments
        .iter()
        .map(|a| a.message_queue.as_ref().unwrap().id)
        .collect();
    assert_eq!(ids, [0, 1, 2, 3]);

    assert_eq!(
        code(&assignments(&mut h, 3, "NoSuchTopic").status),
        v2::Code::TopicNotFound
    );
    let mut create = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", "WriteOnly")
        .with_ext("readQueueNums", 4)
        .with_ext("writeQueueNums", 4)
        .with_ext("perm", 2);
    create = create.with_ext("topicFilterType", "SINGLE_TAG");
    assert_eq!(h.call(1, create).code, response::SUCCESS);
    assert_eq!(
        code(&assignments(&mut h, 4, "WriteOnly").status),
        v2::Code::Forbidden
    );
}

#[test]
fn a_fifo_group_receives_in_order_and_a_forwarded_message_goes_to_the_dlq() {
    let mut h = with_topic(1, Some("+message.type=FIFO"));
    for i in 0..3 {
        send(&mut h, 0, &format!("m{i}"), "t");
    }
    let mut r = receive_request(1, Some(0));
    r.attempt_id = Some("a1".into());
    let (status, first) = receive(&mut h, 1, r.clone());
    assert_eq!(status, v2::Code::Ok);
    assert_eq!(body_of(&first[0]), "m0");
    // The queue stays with the batch in flight.
    r.attempt_id = Some("a2".into());
    assert_eq!(receive(&mut h, 2, r.clone()).0, v2::Code::MessageNotFound);
    let forward = v2::ForwardMessageToDeadLetterQueueRequest {
        group: Some(resource(GRPC_GROUP)),
        topic: Some(resource(GRPC_TOPIC)),
        receipt_handle: handle_of(&first[0]),
        message_id: "id".into(),
        delivery_attempt: 3,
        max_delivery_attempts: 3,
        lite_topic: None,
    };
    match h.grpc_call(
        3,
        meta("c1"),
        GrpcRequest::ForwardMessageToDeadLetterQueue(forward.clone()),
    ) {
        GrpcReply::ForwardMessageToDeadLetterQueue(f) => {
            assert_eq!(code(&f.status), v2::Code::Ok)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(bodies(&h, &format!("%DLQ%{GRPC_GROUP}"), 0), ["m0"]);
    // Forwarded counts as acked: the next message comes.
    r.attempt_id = Some("a3".into());
    let (_, next) = receive(&mut h, 4, r.clone());
    assert_eq!(body_of(&next[0]), "m1");
    // A redelivery of the same batch (no ack) comes with the next attempt.
    step(&mut h, T0 + INVISIBLE_MS + 1_000);
    r.attempt_id = Some("a4".into());
    let (_, again) = receive(&mut h, 5, r.clone());
    assert_eq!(body_of(&again[0]), "m1");
    assert_eq!(attempt_of(&again[0]), 2);
    let mut garbage = forward;
    garbage.receipt_handle = "nonsense".into();
    match h.grpc_call(
        6,
        meta("c1"),
        GrpcRequest::ForwardMessageToDeadLetterQueue(garbage),
    ) {
        GrpcReply::ForwardMessageToDeadLetterQueue(f) => {
            assert_eq!(code(&f.status), v2::Code::InvalidReceiptHandle)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_compressed_body_is_delivered_inflated() {
    let mut h = with_topic(1, None);
    let plain = b"hello hello hello hello hello".repeat(10);
    let compressed = miniz_oxide::deflate::compress_to_vec_zlib(&plain, 6);
    let mut req = send_v2(GRPC_TOPIC, 0, &compressed, "t");
    req.ext_fields
        .insert("f".to_owned(), sys_flag_compressed().to_string());
    let answer = h.call(1, req);
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let (_, messages) = receive(&mut h, 2, receive_request(1, Some(0)));
    assert_eq!(messages[0].body, plain);
    assert_eq!(
        messages[0].system_properties.as_ref().unwrap().body_digest,
        Some(md5_digest(&plain))
    );
}

fn sys_flag_compressed() -> i32 {
    crate::message::sys_flag::COMPRESSED
}

#[test]
fn a_receive_filters_by_tag_or_by_sql() {
    let mut config = test_config();
    config.enable_property_filter = true;
    let mut h = Harness::new(config);
    create_topic(&mut h, GRPC_TOPIC, 1, None);
    for (body, tag, color) in [
        ("a", "TagA", "blue"),
        ("b", "TagB", "red"),
        ("c", "TagA", "red"),
    ] {
        let props = props(&[("TAGS", tag), ("color", color), ("WAIT", "true")]);
        let req = send_request(
            request::SEND_MESSAGE_V2,
            GRPC_TOPIC,
            0,
            body.as_bytes(),
            &props,
        );
        assert_eq!(h.call(1, req).code, response::SUCCESS);
    }
    let mut tags = receive_request(32, Some(0));
    tags.filter_expression = Some(v2::FilterExpression {
        r#type: v2::FilterType::Tag as i32,
        expression: "TagA".into(),
    });
    let (_, messages) = receive(&mut h, 1, tags);
    assert_eq!(messages.iter().map(body_of).collect::<Vec<_>>(), ["a", "c"]);

    let mut sql = receive_request(32, Some(0));
    sql.group = Some(resource("SqlGroup"));
    sql.filter_expression = Some(v2::FilterExpression {
        r#type: v2::FilterType::Sql as i32,
        expression: "color = 'red'".into(),
    });
    let (_, messages) = receive(&mut h, 2, sql);
    assert_eq!(messages.iter().map(body_of).collect::<Vec<_>>(), ["b", "c"]);
    // Users' properties arrive as user properties, RocketMQ's own do not.
    assert_eq!(
        messages[0].user_properties.get("color").map(String::as_str),
        Some("red")
    );
    assert!(!messages[0].user_properties.contains_key("TAGS"));
}

#[test]
fn namespaces_wrap_the_topic_and_group_of_receives_and_acks() {
    let mut h = Harness::new(test_config());
    create_topic(&mut h, "ns1%GrpcTopic", 1, None);
    let answer = h.call(1, send_v2("ns1%GrpcTopic", 0, b"x", "t"));
    assert_eq!(answer.code, response::SUCCESS);
    let mut m = meta("c1");
    m.namespace = "ns1".into();
    let reply = h.grpc_call(
        1,
        m.clone(),
        GrpcRequest::ReceiveMessage(receive_request(1, Some(0))),
    );
    let (status, messages) = parse_frames(&frames_of(reply));
    assert_eq!(status, v2::Code::Ok);
    let topic = messages[0].topic.as_ref().unwrap();
    assert_eq!(
        (topic.resource_namespace.as_str(), topic.name.as_str()),
        ("ns1", GRPC_TOPIC)
    );
    assert!(h
        .broker
        .offsets
        .query("ns1%GrpcTopic", "ns1%GrpcGroup", 0)
        .is_some());
    let request = v2::AckMessageRequest {
        group: Some(resource(GRPC_GROUP)),
        topic: Some(resource(GRPC_TOPIC)),
        entries: vec![v2::AckMessageEntry {
            message_id: "id".into(),
            receipt_handle: handle_of(&messages[0]),
            lite_topic: None,
        }],
    };
    match h.grpc_call(2, m, GrpcRequest::AckMessage(request)) {
        GrpcReply::AckMessage(r) => assert_eq!(code(&r.status), v2::Code::Ok),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_orderly_message_popped_past_max_attempts_goes_to_the_dlq_and_its_queue_goes_on() {
    let mut h = with_topic(1, None);
    set_group(
        &mut h,
        serde_json::json!({
            "groupName": GRPC_GROUP,
            "consumeMessageOrderly": true,
            "retryMaxTimes": 1
        }),
    );
    send(&mut h, 0, "m0", "t");
    send(&mut h, 0, "m1", "t");
    let (_, first) = receive(&mut h, 1, receive_request(1, Some(0)));
    assert_eq!(
        (body_of(&first[0]).as_str(), attempt_of(&first[0])),
        ("m0", 1)
    );
    step(&mut h, T0 + INVISIBLE_MS + 1_000);
    let (_, second) = receive(&mut h, 2, receive_request(1, Some(0)));
    assert_eq!(
        (body_of(&second[0]).as_str(), attempt_of(&second[0])),
        ("m0", 2)
    );
    let now = h.now_ms + INVISIBLE_MS + 1_000;
    step(&mut h, now);
    // A third attempt is past the group's two: dead-lettered, not delivered.
    let (status, third) = receive(&mut h, 3, receive_request(1, Some(0)));
    assert_eq!(status, v2::Code::MessageNotFound, "{third:?}");
    assert_eq!(bodies(&h, &format!("%DLQ%{GRPC_GROUP}"), 0), ["m0"]);
    let (_, next) = receive(&mut h, 4, receive_request(1, Some(0)));
    assert_eq!(
        (body_of(&next[0]).as_str(), attempt_of(&next[0])),
        ("m1", 1)
    );
}
