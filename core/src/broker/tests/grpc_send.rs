//! SendMessage, EndTransaction and the transaction check over gRPC (see `grpc.rs` for the
//! shared helpers).

use super::grpc::*;
use super::*;
use crate::broker::grpc::message::timestamp_of_ms;
use crate::broker::grpc::transaction::decode_transaction_id;
use crate::broker::grpc::{v2, CallId, GrpcOutput, GrpcReply, GrpcRequest};
use crate::broker::transaction::TransactionConfig;
use crate::message::keys;
use crate::store::QueueOffset;

/// A message of `topic` with id `id` and body `body`, nothing else set.
fn message(topic: &str, id: &str, body: &[u8]) -> v2::Message {
    v2::Message {
        topic: Some(resource(topic)),
        user_properties: Default::default(),
        system_properties: Some(v2::SystemProperties {
            message_id: id.to_owned(),
            message_type: v2::MessageType::Normal as i32,
            body_encoding: v2::Encoding::Identity as i32,
            born_timestamp: Some(timestamp_of_ms(T0 as i64 - 5)),
            born_host: "producer-host".to_owned(),
            ..Default::default()
        }),
        body: body.to_vec(),
    }
}

fn sys(m: &mut v2::Message) -> &mut v2::SystemProperties {
    m.system_properties.as_mut().unwrap()
}

fn send(h: &mut Harness, call: u64, messages: Vec<v2::Message>) -> v2::SendMessageResponse {
    let request = GrpcRequest::SendMessage(v2::SendMessageRequest { messages });
    match h.grpc_call(call, meta("p1"), request) {
        GrpcReply::SendMessage(r) => r,
        other => panic!("{other:?}"),
    }
}

fn code_of(status: &Option<v2::Status>) -> v2::Code {
    v2::Code::try_from(status.as_ref().expect("a status").code).expect("a known code")
}

fn end(
    h: &mut Harness,
    call: u64,
    topic: &str,
    id: &str,
    transaction_id: &str,
    resolution: v2::TransactionResolution,
    source: v2::TransactionSource,
) -> v2::Code {
    let request = GrpcRequest::EndTransaction(v2::EndTransactionRequest {
        topic: Some(resource(topic)),
        message_id: id.to_owned(),
        transaction_id: transaction_id.to_owned(),
        resolution: resolution as i32,
        source: source as i32,
        trace_context: String::new(),
    });
    match h.grpc_call(call, meta("p1"), request) {
        GrpcReply::EndTransaction(r) => code_of(&r.status),
        other => panic!("{other:?}"),
    }
}

fn stored(h: &Harness, topic: &str, queue_id: i32) -> Vec<MessageRecord> {
    let got = h
        .broker
        .store()
        .get(topic, queue_id, QueueOffset(0), 1_000, &|_| true)
        .unwrap();
    got.records
        .iter()
        .map(|b| MessageRecord::decode(b, true).unwrap())
        .collect()
}

#[test]
fn a_message_is_stored_with_the_properties_the_proxy_gives_it() {
    let mut h = Harness::new(test_config());
    create_topic(&mut h, GRPC_TOPIC, 4, None);
    let mut m = message(GRPC_TOPIC, "01ABCDEF", b"hello");
    sys(&mut m).tag = Some("TagA".to_owned());
    sys(&mut m).keys = vec!["k1".to_owned(), "k2".to_owned()];
    sys(&mut m).queue_id = 2;
    m.user_properties
        .insert("color".to_owned(), "red".to_owned());
    let r = send(&mut h, 1, vec![m]);
    assert_eq!(code_of(&r.status), v2::Code::Ok);
    assert_eq!(r.entries.len(), 1);
    let entry = &r.entries[0];
    assert_eq!(code_of(&entry.status), v2::Code::Ok);
    assert_eq!(entry.message_id, "01ABCDEF", "the client's id, unchanged");
    assert_eq!(entry.offset, 0);
    assert!(entry.transaction_id.is_empty());

    let records = stored(&h, GRPC_TOPIC, 2);
    assert_eq!(records.len(), 1, "on the client's queue");
    let record = &records[0];
    assert_eq!(&record.body[..], b"hello");
    assert_eq!(record.properties.get(keys::TAGS), Some("TagA"));
    assert_eq!(record.properties.get(keys::KEYS), Some("k1 k2"));
    assert_eq!(record.properties.get(keys::UNIQ_KEY), Some("01ABCDEF"));
    assert_eq!(record.properties.get("color"), Some("red"));
    assert_eq!(record.born_timestamp_ms, T0 as i64 - 5);
    assert_eq!(record.born_host.ip(), meta("p1").peer.ip());
}

#[test]
fn bad_messages_get_the_proxys_codes_each_in_its_own_entry() {
    let mut config = test_config();
    config.auto_create_topic_enable = false;
    let mut h = Harness::new(config);
    create_topic(&mut h, GRPC_TOPIC, 4, None);
    let ok = || message(GRPC_TOPIC, "01OK", b"x");
    let with = |f: &dyn Fn(&mut v2::Message)| {
        let mut m = ok();
        f(&mut m);
        m
    };
    let cases: Vec<(v2::Message, v2::Code)> = vec![
        (
            with(&|m| m.body.clear()),
            // Not MESSAGE_BODY_EMPTY: the Rust 5.0.0 client panics on that code.
            v2::Code::BadRequest,
        ),
        (
            with(&|m| m.body = vec![0; 4 * 1024 * 1024 + 1]),
            v2::Code::MessageBodyTooLarge,
        ),
        (
            with(&|m| sys(m).tag = Some("a|b".to_owned())),
            v2::Code::IllegalMessageTag,
        ),
        (
            with(&|m| sys(m).tag = Some("  ".to_owned())),
            v2::Code::IllegalMessageTag,
        ),
        (
            with(&|m| sys(m).keys = vec!["bad\u{1}key".to_owned()]),
            v2::Code::IllegalMessageKey,
        ),
        (
            with(&|m| sys(m).message_group = Some("g".repeat(64))),
            v2::Code::IllegalMessageGroup,
        ),
        (
            with(&|m| {
                sys(m).delivery_timestamp =
                    Some(timestamp_of_ms(T0 as i64 + 24 * 3600 * 1000 + 60_000))
            }),
            v2::Code::IllegalDeliveryTime,
        ),
        (
            with(&|m| sys(m).message_id = " ".to_owned()),
            v2::Code::IllegalMessageId,
        ),
        (
            with(&|m| {
                m.user_properties
                    .insert("UNIQ_KEY".to_owned(), "forged".to_owned());
            }),
            v2::Code::IllegalMessagePropertyKey,
        ),
        (
            with(&|m| m.topic = Some(resource("bad topic!"))),
            v2::Code::IllegalTopic,
        ),
        (with(&|m| m.topic = None), v2::Code::IllegalTopic),
        (
            with(&|m| m.system_properties = None),
            v2::Code::IllegalMessageId,
        ),
        (
            with(&|m| m.topic = Some(resource("Nowhere"))),
            v2::Code::TopicNotFound,
        ),
    ];
    for (i, (m, want)) in cases.into_iter().enumerate() {
        let r = send(&mut h, 10 + i as u64, vec![m]);
        assert_eq!(r.entries.len(), 1, "case {i}");
        assert_eq!(code_of(&r.entries[0].status), want, "case {i}: {r:?}");
        assert_eq!(code_of(&r.status), want, "case {i}");
    }
    // Nothing of it was stored; good messages are still served.
    assert!((0..4).all(|q| stored(&h, GRPC_TOPIC, q).is_empty()));

    // One call, a good and a bad message: an entry each, in order, and MULTIPLE_RESULTS.
    let r = send(&mut h, 50, vec![ok(), with(&|m| m.body.clear()), ok()]);
    assert_eq!(code_of(&r.status), v2::Code::MultipleResults);
    let codes: Vec<v2::Code> = r.entries.iter().map(|e| code_of(&e.status)).collect();
    assert_eq!(
        codes,
        [v2::Code::Ok, v2::Code::BadRequest, v2::Code::Ok],
        "{r:?}"
    );
    // A call without messages.
    let r = send(&mut h, 51, vec![]);
    assert_eq!(code_of(&r.status), v2::Code::MessageCorrupted);
}

#[test]
fn a_fifo_group_keeps_one_queue_and_its_order() {
    let mut h = Harness::new(test_config());
    create_topic(&mut h, "FifoTopic", 8, Some("+message.type=FIFO"));
    let fifo = |id: &str, group: &str, queue_id: i32| {
        let mut m = message("FifoTopic", id, id.as_bytes());
        sys(&mut m).message_type = v2::MessageType::Fifo as i32;
        sys(&mut m).message_group = Some(group.to_owned());
        sys(&mut m).queue_id = queue_id;
        m
    };
    // No usable queue from the client: the group's hash decides, the same every time.
    for (i, id) in ["a1", "a2", "a3", "a4"].iter().enumerate() {
        let r = send(&mut h, 1 + i as u64, vec![fifo(id, "order-1", 99)]);
        assert_eq!(code_of(&r.status), v2::Code::Ok, "{r:?}");
    }
    let queues: Vec<Vec<String>> = (0..8)
        .map(|q| {
            stored(&h, "FifoTopic", q)
                .iter()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect()
        })
        .collect();
    let used: Vec<&Vec<String>> = queues.iter().filter(|q| !q.is_empty()).collect();
    assert_eq!(used, [&vec!["a1", "a2", "a3", "a4"]], "{queues:?}");
    let record = &stored(
        &h,
        "FifoTopic",
        queues.iter().position(|q| !q.is_empty()).unwrap() as i32,
    )[0];
    assert_eq!(
        record
            .properties
            .get(crate::broker::grpc::message::SHARDING_KEY),
        Some("order-1")
    );
    // The client's own queue is kept when it is writable.
    let r = send(&mut h, 10, vec![fifo("b1", "order-2", 5)]);
    assert_eq!(code_of(&r.status), v2::Code::Ok);
    assert_eq!(
        stored(&h, "FifoTopic", 5)
            .last()
            .unwrap()
            .properties
            .get(keys::UNIQ_KEY),
        Some("b1")
    );
}

#[test]
fn the_message_type_attribute_is_checked_on_create_and_on_send() {
    let mut h = Harness::new(test_config());
    create_topic(&mut h, "FifoTopic", 2, Some("+message.type=FIFO"));
    let r = send(&mut h, 1, vec![message("FifoTopic", "01N", b"x")]);
    assert_eq!(
        code_of(&r.entries[0].status),
        v2::Code::MessagePropertyConflictWithType
    );
    assert!(stored(&h, "FifoTopic", 0).is_empty() && stored(&h, "FifoTopic", 1).is_empty());

    create_topic(&mut h, "MixedTopic", 2, Some("+message.type=MIXED"));
    let mut delayed = message("MixedTopic", "01D", b"x");
    sys(&mut delayed).delivery_timestamp = Some(timestamp_of_ms(T0 as i64 + 10_000));
    let r = send(&mut h, 2, vec![message("MixedTopic", "01N", b"x"), delayed]);
    assert_eq!(code_of(&r.status), v2::Code::Ok, "{r:?}");

    // An unknown value is refused, as RocketMQ's broker refuses a value outside the set.
    let create = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC)
        .with_ext("topic", "OddTopic")
        .with_ext("readQueueNums", 2)
        .with_ext("writeQueueNums", 2)
        .with_ext("perm", 6)
        .with_ext("topicFilterType", "SINGLE_TAG")
        .with_ext("order", "false")
        .with_ext("attributes", "+message.type=URGENT");
    let answer = h.call(1, create);
    assert_eq!(answer.code, response::SYSTEM_ERROR);
    let remark = answer.remark.unwrap_or_default();
    assert!(
        remark.contains("not in set") && remark.contains("URGENT"),
        "{remark}"
    );
    assert!(!h.broker.topics.topics.contains_key("OddTopic"));
}

#[test]
fn a_delayed_message_waits_in_the_timer() {
    let mut h = Harness::new(test_config());
    create_topic(&mut h, GRPC_TOPIC, 1, None);
    let mut m = message(GRPC_TOPIC, "01DELAY", b"later");
    sys(&mut m).message_type = v2::MessageType::Delay as i32;
    sys(&mut m).delivery_timestamp = Some(timestamp_of_ms(T0 as i64 + 30_000));
    let r = send(&mut h, 1, vec![m]);
    assert_eq!(code_of(&r.status), v2::Code::Ok, "{r:?}");
    assert!(stored(&h, GRPC_TOPIC, 0).is_empty(), "not before its time");
}

fn transactional(topic: &str, id: &str, body: &[u8]) -> v2::Message {
    let mut m = message(topic, id, body);
    sys(&mut m).message_type = v2::MessageType::Transaction as i32;
    m
}

#[test]
fn a_transaction_commits_or_rolls_back_by_its_id() {
    let mut h = Harness::new(test_config());
    create_topic(&mut h, "TxTopic", 1, Some("+message.type=TRANSACTION"));
    let r = send(&mut h, 1, vec![transactional("TxTopic", "01T1", b"one")]);
    assert_eq!(code_of(&r.status), v2::Code::Ok, "{r:?}");
    let tx1 = r.entries[0].transaction_id.clone();
    assert!(decode_transaction_id(&tx1).is_some(), "{tx1}");
    let r = send(&mut h, 2, vec![transactional("TxTopic", "01T2", b"two")]);
    let tx2 = r.entries[0].transaction_id.clone();
    assert!(
        stored(&h, "TxTopic", 0).is_empty(),
        "half messages are invisible"
    );
    // The client is now a producer of group = topic, for the check.
    assert!(h.broker.gateway.clients["p1"]
        .producer_topics
        .contains("TxTopic"));

    use v2::TransactionResolution::{Commit, Rollback};
    use v2::TransactionSource::SourceClient;
    assert_eq!(
        end(&mut h, 3, "TxTopic", "01T1", &tx1, Commit, SourceClient),
        v2::Code::Ok
    );
    assert_eq!(
        end(&mut h, 4, "TxTopic", "01T2", &tx2, Rollback, SourceClient),
        v2::Code::Ok
    );
    let bodies: Vec<Vec<u8>> = stored(&h, "TxTopic", 0)
        .iter()
        .map(|r| r.body.to_vec())
        .collect();
    assert_eq!(bodies, [b"one".to_vec()]);
    assert_eq!(
        stored(&h, "TxTopic", 0)[0].properties.get(keys::UNIQ_KEY),
        Some("01T1")
    );

    // Malformed ids, and an id naming no half message.
    for bad in ["", "xyz", "0000000000000000000000000000000G"] {
        assert_eq!(
            end(&mut h, 5, "TxTopic", "01T1", bad, Commit, SourceClient),
            v2::Code::InvalidTransactionId,
            "{bad:?}"
        );
    }
    let nowhere = crate::broker::grpc::transaction::encode_transaction_id(1 << 40, 0);
    assert_ne!(
        end(&mut h, 6, "TxTopic", "01T1", &nowhere, Commit, SourceClient),
        v2::Code::Ok
    );
    assert_eq!(stored(&h, "TxTopic", 0).len(), 1);
}

#[test]
fn an_orphaned_transaction_is_asked_of_the_client_over_telemetry() {
    let mut config = test_config();
    config.transaction = TransactionConfig {
        timeout_ms: 6_000,
        check_interval_ms: 2_000,
        check_max: 15,
    };
    let mut h = Harness::new(config);
    create_topic(&mut h, "TxTopic", 1, None);
    let settings = v2::TelemetryCommand {
        status: None,
        command: Some(v2::telemetry_command::Command::Settings(v2::Settings {
            client_type: Some(v2::ClientType::Producer as i32),
            pub_sub: Some(v2::settings::PubSub::Publishing(v2::Publishing {
                topics: vec![resource("TxTopic")],
                max_body_size: 0,
                validate_message_type: true,
            })),
            ..Default::default()
        })),
    };
    h.telemetry(100, meta("p1"), settings);
    let mut m = transactional("TxTopic", "01ORPHAN", b"pending");
    sys(&mut m).tag = Some("TagT".to_owned());
    let r = send(&mut h, 1, vec![m]);
    assert_eq!(code_of(&r.status), v2::Code::Ok, "{r:?}");

    h.advance_to(T0 + 5_000);
    let outputs = grpc_outputs(h.advance_to(T0 + 60_000));
    let (stream, command) = outputs
        .iter()
        .find_map(|o| match o {
            GrpcOutput::Telemetry { stream, command } => match &command.command {
                Some(v2::telemetry_command::Command::RecoverOrphanedTransactionCommand(c)) => {
                    Some((*stream, c.clone()))
                }
                _ => None,
            },
            _ => None,
        })
        .unwrap_or_else(|| panic!("no check: {outputs:?}"));
    assert_eq!(stream, CallId(100), "on the client's Telemetry stream");
    let message = command.message.expect("the full message");
    assert_eq!(message.topic, Some(resource("TxTopic")));
    assert_eq!(&message.body[..], b"pending");
    let props = message.system_properties.unwrap();
    assert_eq!(props.message_id, "01ORPHAN");
    assert_eq!(props.tag.as_deref(), Some("TagT"));
    assert_eq!(props.message_type, v2::MessageType::Transaction as i32);
    assert!(
        message.user_properties.is_empty(),
        "{:?}",
        message.user_properties
    );
    assert!(stored(&h, "TxTopic", 0).is_empty());

    // The client's answer to the check commits it.
    assert_eq!(
        end(
            &mut h,
            2,
            "TxTopic",
            "01ORPHAN",
            &command.transaction_id,
            v2::TransactionResolution::Commit,
            v2::TransactionSource::SourceServerCheck,
        ),
        v2::Code::Ok
    );
    let records = stored(&h, "TxTopic", 0);
    assert_eq!(records.len(), 1);
    assert_eq!(&records[0].body[..], b"pending");
}
