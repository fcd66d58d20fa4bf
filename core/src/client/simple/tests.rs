//! The simple consumer against scripted NameServer and broker answers: POP answers are built
//! by hand (records back to back, RocketMQ's offset lists and receipt handles).

use bytes::Bytes;

use super::*;
use crate::client::tests::{route, route_response, sends, through_wire, NAMESRV, T0};
use crate::message::{MessageRecord, Properties};
use crate::remoting::pop::{encode_msg_offset_info, encode_start_offset_info};

const BROKER_A: &str = "127.0.0.1:10911";
const BROKER_B: &str = "127.0.0.1:10921";
/// The broker's clock when it answers POPs in these tests.
const POP_TIME: i64 = T0 as i64 + 7;

fn config() -> SimpleConsumerConfig {
    SimpleConsumerConfig {
        client: ClientConfig {
            namesrv_addrs: vec![NAMESRV.to_owned()],
            instance_name: "s".to_owned(),
            seed: 5,
            ..ClientConfig::default()
        },
        consumer_group: "G".to_owned(),
        ..SimpleConsumerConfig::default()
    }
}

fn drain(c: &mut SimpleConsumer) -> Vec<ClientOutput> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

fn find(out: &[ClientOutput], code: i32) -> Vec<(String, RemotingCommand)> {
    sends(out)
        .into_iter()
        .filter(|(_, c)| c.code == code)
        .collect()
}

fn one(out: &[ClientOutput], code: i32) -> (String, RemotingCommand) {
    let found = find(out, code);
    assert_eq!(found.len(), 1, "expected one request {code} in {out:?}");
    let (addr, command) = found.into_iter().next().unwrap();
    (addr, through_wire(&command))
}

fn results(out: Vec<ClientOutput>) -> Vec<(SimpleCallId, SimpleResult)> {
    out.into_iter()
        .filter_map(|o| match o {
            ClientOutput::SimpleDone { id, result } => Some((id, result)),
            _ => None,
        })
        .collect()
}

fn received(out: Vec<ClientOutput>, id: SimpleCallId) -> Result<Vec<ReceivedMessage>, ClientError> {
    let mut done = results(out);
    assert_eq!(done.len(), 1, "one result expected: {done:?}");
    match done.remove(0) {
        (got, SimpleResult::Received(result)) if got == id => result,
        other => panic!("not the receive's result: {other:?}"),
    }
}

fn acked(out: Vec<ClientOutput>, id: SimpleCallId) -> Result<(), ClientError> {
    match results(out).pop() {
        Some((got, SimpleResult::Acked(result))) if got == id => result,
        other => panic!("not the ack's result: {other:?}"),
    }
}

fn changed(out: Vec<ClientOutput>, id: SimpleCallId) -> Result<ReceiptHandle, ClientError> {
    match results(out).pop() {
        Some((got, SimpleResult::InvisibleChanged(result))) if got == id => result,
        other => panic!("not the change's result: {other:?}"),
    }
}

fn record(topic: &str, queue_id: i32, offset: i64, body: &str) -> MessageRecord {
    let mut properties = Properties::new();
    properties.insert("UNIQ_KEY", format!("UNIQ{offset:028}"));
    properties.insert("TAGS", "tagA");
    properties.insert("KEYS", format!("k{offset}"));
    MessageRecord {
        queue_id,
        flag: 0,
        queue_offset: offset,
        physical_offset: 1_000 + offset * 100,
        sys_flag: 0,
        born_timestamp_ms: T0 as i64,
        born_host: "127.0.0.1:5000".parse().unwrap(),
        store_timestamp_ms: T0 as i64,
        store_host: BROKER_A.parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::from(body.to_owned()),
        topic: topic.to_owned(),
        properties,
    }
}

/// A redelivered record as the broker returns it: rewritten to the topic, with its own
/// POP_CK (V2 retry flag 2, the retry queue's id and offset) and the first pop's time.
fn retry_record(offset: i64, body: &str, first_pop: i64) -> MessageRecord {
    let mut r = record("TopicA", 0, offset, body);
    r.reconsume_times = 1;
    r.properties.insert(
        POP_CK_PROPERTY,
        format!("{offset} {POP_TIME} 60000 3 2 broker-a 0 {offset}"),
    );
    r.properties
        .insert(FIRST_POP_TIME_PROPERTY, first_pop.to_string());
    r
}

/// A FOUND answer: `records` back to back and RocketMQ's header.
fn found(
    req: &RemotingCommand,
    records: &[MessageRecord],
    start: &str,
    msgs: &str,
    invisible_ms: i64,
) -> RemotingCommand {
    let mut body = Vec::new();
    for r in records {
        body.extend(r.encode_to_vec().unwrap());
    }
    let mut answer = RemotingCommand::response_to(req, response::SUCCESS, Some("FOUND".into()));
    PopMessageResponseHeader {
        pop_time_ms: POP_TIME,
        invisible_time_ms: invisible_ms,
        revive_qid: 3,
        rest_num: 0,
        start_offset_info: Some(start.to_owned()),
        msg_offset_info: Some(msgs.to_owned()),
        order_count_info: None,
    }
    .write_to(&mut answer);
    through_wire(&answer.with_body(body))
}

/// An answer with `code` and the four numbers every POP answer carries.
fn empty(req: &RemotingCommand, code: i32, remark: &str) -> RemotingCommand {
    let mut answer = RemotingCommand::response_to(req, code, Some(remark.to_owned()));
    PopMessageResponseHeader::default().write_to(&mut answer);
    through_wire(&answer)
}

/// A started consumer of `TopicA` (`tagA || tagB`) that knows the route: `brokers` each with
/// four queues. Returns it and what it sent after the route (heartbeats).
fn started(
    config: SimpleConsumerConfig,
    brokers: &[(&str, &str)],
) -> (SimpleConsumer, Vec<ClientOutput>) {
    let mut c = SimpleConsumer::new(config, T0);
    c.subscribe(T0, "TopicA", "tagA || tagB").unwrap();
    c.start(T0);
    let out = drain(&mut c);
    let (addr, query) = one(&out, request::GET_ROUTEINFO_BY_TOPIC);
    assert_eq!(addr, NAMESRV);
    assert_eq!(query.ext("topic"), Some("TopicA"));
    let r = route(brokers, 4);
    c.handle_response(T0, NAMESRV, through_wire(&route_response(&query, &r)));
    let out = drain(&mut c);
    for (addr, beat) in find(&out, request::HEART_BEAT) {
        c.handle_response(T0, &addr, RemotingCommand::response_to(&beat, 0, None));
    }
    (c, out)
}

/// Receives once and returns the POP sent (address, request).
fn receive(
    c: &mut SimpleConsumer,
    now_ms: u64,
    max: usize,
    invisible_ms: u64,
) -> (SimpleCallId, String, RemotingCommand) {
    let id = c.receive(now_ms, max, invisible_ms);
    let out = drain(c);
    let (addr, pop) = one(&out, request::POP_MESSAGE);
    (id, addr, pop)
}

/// Goal: the POP carries RocketMQ 5's fields (any queue, the subscription's expression, the
/// await duration as poll time, the injected clock as born time), and receives take the
/// topic's brokers in turn; heartbeats name the group as a POP consumer.
#[test]
fn receive_pops_any_queue_of_each_broker_in_turn() {
    let mut cfg = config();
    cfg.init_mode = ConsumeInitMode::Min;
    let (mut c, out) = started(cfg, &[("broker-a", BROKER_A), ("broker-b", BROKER_B)]);
    let beats = find(&out, request::HEART_BEAT);
    assert_eq!(beats.len(), 2, "one heartbeat per broker");
    let body = String::from_utf8(beats[0].1.body.to_vec()).unwrap();
    assert!(
        body.contains(r#""consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","consumeType":"CONSUME_POP","groupName":"G","messageModel":"CLUSTERING""#),
        "{body}"
    );
    assert!(body.contains(r#""subString":"tagA || tagB""#), "{body}");

    let (_, addr, pop) = receive(&mut c, T0 + 100, 16, 30_000);
    assert_eq!(addr, BROKER_A);
    for (key, value) in [
        ("consumerGroup", "G"),
        ("topic", "TopicA"),
        ("queueId", "-1"),
        ("maxMsgNums", "16"),
        ("invisibleTime", "30000"),
        ("pollTime", "15000"),
        ("bornTime", &(T0 + 100).to_string()),
        ("initMode", "0"),
        ("expType", "TAG"),
        ("exp", "tagA || tagB"),
        ("order", "false"),
    ] {
        assert_eq!(pop.ext(key), Some(value), "{key}");
    }
    assert_eq!(pop.ext("attemptId"), None);
    let (_, addr, pop) = receive(&mut c, T0 + 200, 1, 30_000);
    assert_eq!(addr, BROKER_B);
    assert_eq!(pop.ext("maxMsgNums"), Some("1"));
    let (_, addr, _) = receive(&mut c, T0 + 300, 1, 30_000);
    assert_eq!(addr, BROKER_A);
    // Default init mode: MAX, as RocketMQ 5's proxy pops.
    let (mut c, _) = started(config(), &[("broker-a", BROKER_A)]);
    let (_, _, pop) = receive(&mut c, T0, 1, 30_000);
    assert_eq!(pop.ext("initMode"), Some("1"));
}

/// Goal: handles of records without POP_CK are built from startOffsetInfo/msgOffsetInfo of
/// their `<flag>@<queueId>` (the offset at the record's position in its queue's list) with
/// the name of the broker asked; a redelivered record keeps its own POP_CK and is acked on
/// the POP retry topic; topics are the one asked for; 1ST_POP_TIME set only when absent.
#[test]
fn found_answers_build_receipt_handles_as_rocketmq_clients_do() {
    let (mut c, _) = started(config(), &[("broker-a", BROKER_A)]);
    let (id, _, pop) = receive(&mut c, T0, 32, 60_000);
    let records = [
        retry_record(5, "again", T0 as i64 - 60_000),
        record("TopicA", 2, 10, "m10"),
        record("TopicA", 2, 11, "m11"),
        record("TopicA", 3, 40, "m40"),
    ];
    let start = encode_start_offset_info(&[
        ((RetryFlag::RetryV2, 0), 5),
        ((RetryFlag::Normal, 2), 9),
        ((RetryFlag::Normal, 3), 40),
    ]);
    let msgs = encode_msg_offset_info(&[
        ((RetryFlag::RetryV2, 0), vec![5]),
        ((RetryFlag::Normal, 2), vec![10, 11]),
        ((RetryFlag::Normal, 3), vec![40]),
    ]);
    c.handle_response(
        T0 + 10,
        BROKER_A,
        found(&pop, &records, &start, &msgs, 60_000),
    );
    let messages = received(drain(&mut c), id).unwrap();
    let handles: Vec<&str> = messages
        .iter()
        .map(|m| m.receipt_handle().as_str())
        .collect();
    assert_eq!(
        handles,
        vec![
            format!("5 {POP_TIME} 60000 3 2 broker-a 0 5"),
            format!("9 {POP_TIME} 60000 3 0 broker-a 2 10"),
            format!("9 {POP_TIME} 60000 3 0 broker-a 2 11"),
            format!("40 {POP_TIME} 60000 3 0 broker-a 3 40"),
        ]
    );
    for m in &messages {
        assert_eq!(m.topic(), "TopicA");
        assert_eq!(
            m.property(POP_CK_PROPERTY),
            Some(m.receipt_handle().as_str())
        );
        assert_eq!(m.served_by, BROKER_A);
        assert_eq!(m.receipt_handle().invisible_until_ms(), POP_TIME + 60_000);
    }
    let retry = &messages[0];
    assert_eq!(
        retry.queue,
        MessageQueue::new("%RETRY%G+TopicA", "broker-a", 0)
    );
    assert_eq!(retry.reconsume_times(), 1);
    assert_eq!(retry.msg_id(), format!("UNIQ{:028}", 5));
    assert_eq!(
        retry.property(FIRST_POP_TIME_PROPERTY),
        Some((T0 as i64 - 60_000).to_string().as_str()),
        "a redelivery keeps its first pop time"
    );
    assert_eq!(retry.ack_topic("G"), "%RETRY%G+TopicA");
    let normal = &messages[2];
    assert_eq!(normal.queue, MessageQueue::new("TopicA", "broker-a", 2));
    assert_eq!(&normal.body()[..], b"m11");
    assert_eq!(normal.tags(), Some("tagA"));
    assert_eq!(normal.keys(), Some("k11"));
    assert_eq!(normal.queue_offset(), 11);
    assert_eq!(normal.reconsume_times(), 0);
    assert_eq!(
        normal.property(FIRST_POP_TIME_PROPERTY),
        Some(POP_TIME.to_string().as_str())
    );
    assert_eq!(normal.ack_offset(), 11);
}

/// Goal: a broker that returns retry records under their own topic (no POP_CK) gets handles
/// with the topic's retry flag; an answer without startOffsetInfo (an old broker) falls back
/// to the record's own offset; lists that do not cover a record are a malformed answer.
#[test]
fn handles_of_unrewritten_retry_records_old_brokers_and_bad_lists() {
    let (mut c, _) = started(config(), &[("broker-a", BROKER_A)]);
    let (id, _, pop) = receive(&mut c, T0, 32, 60_000);
    let records = [record("%RETRY%G_TopicA", 0, 7, "r")];
    c.handle_response(
        T0,
        BROKER_A,
        found(&pop, &records, "1 0 6", "1 0 7", 60_000),
    );
    let messages = received(drain(&mut c), id).unwrap();
    assert_eq!(
        messages[0].receipt_handle().as_str(),
        format!("6 {POP_TIME} 60000 3 1 broker-a 0 7")
    );
    assert_eq!(messages[0].topic(), "TopicA");
    assert_eq!(messages[0].queue.topic, "%RETRY%G_TopicA");

    let (id, _, pop) = receive(&mut c, T0, 32, 60_000);
    let records = [record("TopicA", 1, 3, "old")];
    c.handle_response(T0, BROKER_A, found(&pop, &records, "", "", 60_000));
    let messages = received(drain(&mut c), id).unwrap();
    assert_eq!(
        messages[0].receipt_handle().as_str(),
        format!("3 {POP_TIME} 60000 3 0 broker-a 1 3")
    );

    let (id, _, pop) = receive(&mut c, T0, 32, 60_000);
    let records = [record("TopicA", 1, 3, "a"), record("TopicA", 1, 4, "b")];
    c.handle_response(
        T0,
        BROKER_A,
        found(&pop, &records, "0 1 3", "0 1 3", 60_000),
    );
    let error = received(drain(&mut c), id).unwrap_err();
    assert!(
        matches!(error, ClientError::MalformedResponse(_)),
        "{error:?}"
    );

    let (id, _, pop) = receive(&mut c, T0, 32, 60_000);
    c.handle_response(
        T0,
        BROKER_A,
        found(&pop, &records, "0 2 3", "0 1 3,4", 60_000),
    );
    let error = received(drain(&mut c), id).unwrap_err();
    assert!(
        matches!(error, ClientError::MalformedResponse(_)),
        "{error:?}"
    );
}

/// Goal: POLLING_FULL, POLLING_TIMEOUT and PULL_NOT_FOUND are "nothing now", other codes an
/// error with the broker's code and remark.
#[test]
fn empty_answers_are_empty_results_and_other_codes_errors() {
    let (mut c, _) = started(config(), &[("broker-a", BROKER_A)]);
    for code in [
        response::POLLING_FULL,
        response::POLLING_TIMEOUT,
        response::PULL_NOT_FOUND,
    ] {
        let (id, _, pop) = receive(&mut c, T0, 32, 60_000);
        c.handle_response(
            T0 + 15_000,
            BROKER_A,
            empty(&pop, code, "NO_MESSAGE_IN_QUEUE"),
        );
        assert_eq!(
            received(drain(&mut c), id).unwrap(),
            Vec::new(),
            "code {code}"
        );
    }
    let (id, _, pop) = receive(&mut c, T0, 32, 60_000);
    let remark = "topic[TopicA] not exist, apply first please!";
    c.handle_response(T0, BROKER_A, empty(&pop, response::TOPIC_NOT_EXIST, remark));
    assert_eq!(
        received(drain(&mut c), id),
        Err(ClientError::Broker {
            code: response::TOPIC_NOT_EXIST,
            remark: remark.to_owned()
        })
    );
}

/// Goal: a message whose invisible time ran out before its answer was handled is not handed
/// out (it is already coming back), the others are.
#[test]
fn messages_already_visible_again_are_dropped() {
    let (mut c, _) = started(config(), &[("broker-a", BROKER_A)]);
    let (id, _, pop) = receive(&mut c, T0, 32, 2_000);
    let records = [record("TopicA", 0, 1, "late")];
    let answer = found(&pop, &records, "0 0 1", "0 0 1", 2_000);
    c.handle_response(POP_TIME as u64 + 2_000, BROKER_A, answer.clone());
    assert_eq!(received(drain(&mut c), id).unwrap(), Vec::new());
    let (id, _, pop) = receive(&mut c, T0, 32, 2_000);
    let mut answer = answer;
    answer.opaque = pop.opaque;
    c.handle_response(POP_TIME as u64 + 1_999, BROKER_A, answer);
    assert_eq!(received(drain(&mut c), id).unwrap().len(), 1);
}

/// Pops one message of `record` with a fresh handle and returns it.
fn pop_one(
    c: &mut SimpleConsumer,
    record: MessageRecord,
    start: &str,
    msgs: &str,
) -> ReceivedMessage {
    let (id, _, pop) = receive(c, T0, 1, 60_000);
    c.handle_response(T0, BROKER_A, found(&pop, &[record], start, msgs, 60_000));
    received(drain(c), id).unwrap().pop().unwrap()
}

/// Goal: ACK_MESSAGE names the topic read (the POP retry topic for a redelivery), the queue
/// and offset of the handle and the handle itself, goes to the master of the handle's broker;
/// 0 is done, other codes an error carrying the code.
#[test]
fn acks_name_the_topic_read_and_the_handle() {
    let (mut c, _) = started(config(), &[("broker-a", BROKER_A)]);
    let normal = pop_one(&mut c, record("TopicA", 2, 10, "n"), "0 2 9", "0 2 10");
    let id = c.ack(T0 + 50, &normal);
    let (addr, ack) = one(&drain(&mut c), request::ACK_MESSAGE);
    assert_eq!(addr, BROKER_A);
    for (key, value) in [
        ("consumerGroup", "G"),
        ("topic", "TopicA"),
        ("queueId", "2"),
        ("offset", "10"),
        (
            "extraInfo",
            &format!("9 {POP_TIME} 60000 3 0 broker-a 2 10"),
        ),
    ] {
        assert_eq!(ack.ext(key), Some(value), "{key}");
    }
    c.handle_response(
        T0 + 60,
        BROKER_A,
        RemotingCommand::response_to(&ack, 0, None),
    );
    assert_eq!(acked(drain(&mut c), id), Ok(()));

    let retry = pop_one(&mut c, retry_record(5, "r", T0 as i64), "2 0 5", "2 0 5");
    let id = c.ack(T0 + 70, &retry);
    let (_, ack) = one(&drain(&mut c), request::ACK_MESSAGE);
    assert_eq!(ack.ext("topic"), Some("%RETRY%G+TopicA"));
    assert_eq!(ack.ext("queueId"), Some("0"));
    assert_eq!(ack.ext("offset"), Some("5"));
    assert_eq!(ack.ext("extraInfo"), Some(retry.receipt_handle().as_str()));
    let answer = RemotingCommand::response_to(&ack, response::NO_MESSAGE, Some("no msg".into()));
    assert_eq!(
        acked(drain_after(&mut c, T0 + 80, answer), id),
        Err(ClientError::Broker {
            code: response::NO_MESSAGE,
            remark: "no msg".to_owned()
        })
    );
}

fn drain_after(c: &mut SimpleConsumer, now_ms: u64, answer: RemotingCommand) -> Vec<ClientOutput> {
    c.handle_response(now_ms, BROKER_A, through_wire(&answer));
    drain(c)
}

/// Goal: CHANGE_MESSAGE_INVISIBLETIME carries the ack's fields and the new time; the new
/// handle is built as clients build it (start offset = the message's offset, the answer's
/// popTime/invisibleTime/reviveQid, the flag of the topic named) and later acks use it.
#[test]
fn change_invisible_duration_builds_the_new_handle() {
    let (mut c, _) = started(config(), &[("broker-a", BROKER_A)]);
    let mut message = pop_one(&mut c, record("TopicA", 2, 11, "n"), "0 2 9", "0 2 11");
    let id = c.change_invisible_duration(T0 + 100, &message, 45_000);
    let (addr, change) = one(&drain(&mut c), request::CHANGE_MESSAGE_INVISIBLETIME);
    assert_eq!(addr, BROKER_A);
    for (key, value) in [
        ("consumerGroup", "G"),
        ("topic", "TopicA"),
        ("queueId", "2"),
        ("offset", "11"),
        ("invisibleTime", "45000"),
        (
            "extraInfo",
            &format!("9 {POP_TIME} 60000 3 0 broker-a 2 11"),
        ),
    ] {
        assert_eq!(change.ext(key), Some(value), "{key}");
    }
    let mut answer = RemotingCommand::response_to(&change, 0, None);
    ChangeInvisibleTimeResponseHeader {
        pop_time_ms: T0 as i64 + 101,
        invisible_time_ms: 45_000,
        revive_qid: 3,
    }
    .write_to(&mut answer);
    let handle = changed(drain_after(&mut c, T0 + 101, answer), id).unwrap();
    assert_eq!(
        handle.as_str(),
        format!("11 {} 45000 3 0 broker-a 2 11", T0 + 101)
    );
    message.set_receipt_handle(handle.clone());
    assert_eq!(message.property(POP_CK_PROPERTY), Some(handle.as_str()));
    c.ack(T0 + 200, &message);
    let (_, ack) = one(&drain(&mut c), request::ACK_MESSAGE);
    assert_eq!(ack.ext("extraInfo"), Some(handle.as_str()));
    assert_eq!(ack.ext("offset"), Some("11"));

    // A redelivery's new handle keeps the retry flag of the topic named.
    let retry = pop_one(&mut c, retry_record(6, "r", T0 as i64), "2 0 6", "2 0 6");
    let id = c.change_invisible_duration(T0 + 300, &retry, 1_000);
    let (_, change) = one(&drain(&mut c), request::CHANGE_MESSAGE_INVISIBLETIME);
    assert_eq!(change.ext("topic"), Some("%RETRY%G+TopicA"));
    let mut answer = RemotingCommand::response_to(&change, 0, None);
    ChangeInvisibleTimeResponseHeader {
        pop_time_ms: T0 as i64 + 301,
        invisible_time_ms: 1_000,
        revive_qid: 3,
    }
    .write_to(&mut answer);
    let handle = changed(drain_after(&mut c, T0 + 301, answer), id).unwrap();
    assert_eq!(
        handle.as_str(),
        format!("6 {} 1000 3 2 broker-a 0 6", T0 + 301)
    );

    // Refused: the code comes back.
    let id = c.change_invisible_duration(T0 + 400, &retry, 1_000);
    let (_, change) = one(&drain(&mut c), request::CHANGE_MESSAGE_INVISIBLETIME);
    let mut answer = RemotingCommand::response_to(&change, response::NO_MESSAGE, None);
    ChangeInvisibleTimeResponseHeader::default().write_to(&mut answer);
    assert!(matches!(
        changed(drain_after(&mut c, T0 + 401, answer), id),
        Err(ClientError::Broker { code: 208, .. })
    ));
}

/// Goal: a POP unanswered past the await duration plus the request timeout fails with a
/// timeout, and its broker is passed over while another holds the topic; a closed connection
/// fails what was in flight on it.
#[test]
fn timeouts_and_closed_connections_fail_calls_and_pass_brokers_over() {
    let (mut c, _) = started(config(), &[("broker-a", BROKER_A), ("broker-b", BROKER_B)]);
    let (id, addr, _) = receive(&mut c, T0, 32, 60_000);
    assert_eq!(addr, BROKER_A);
    let deadline = T0 + 15_000 + 3_000;
    assert_eq!(c.poll_timeout(), Some(deadline));
    c.handle_timeout(deadline - 1);
    assert!(results(drain(&mut c)).is_empty());
    c.handle_timeout(deadline);
    let out = drain(&mut c);
    assert!(
        !find(&out, request::GET_ROUTEINFO_BY_TOPIC).is_empty(),
        "routes are asked for at once"
    );
    assert_eq!(
        received(out, id),
        Err(ClientError::Timeout { timeout_ms: 18_000 })
    );
    // Round robin would pick broker-b, then broker-a: broker-a is passed over twice.
    for _ in 0..2 {
        let (_, addr, _) = receive(&mut c, deadline, 32, 60_000);
        assert_eq!(addr, BROKER_B);
    }
    let (id, _, _) = receive(&mut c, deadline, 32, 60_000);
    c.handle_connection_closed(deadline + 1, BROKER_B);
    let done = results(drain(&mut c));
    assert_eq!(
        done.len(),
        3,
        "every POP in flight to broker-b fails: {done:?}"
    );
    assert!(done.iter().any(|(got, r)| *got == id
        && matches!(r, SimpleResult::Received(Err(ClientError::ConnectionClosed { addr })) if addr == BROKER_B)));
    // Both passed over: round robin among all again.
    let (_, addr, _) = receive(&mut c, deadline + 2, 32, 60_000);
    assert!(addr == BROKER_A || addr == BROKER_B);
}

/// Goal: a receive before the route is known waits for it; a topic without a route fails
/// with NoRoute; acks time out after the request timeout.
#[test]
fn receives_wait_for_routes_and_acks_time_out() {
    let mut c = SimpleConsumer::new(config(), T0);
    c.subscribe(T0, "TopicA", "*").unwrap();
    c.start(T0);
    let out = drain(&mut c);
    let (_, query) = one(&out, request::GET_ROUTEINFO_BY_TOPIC);
    let id = c.receive(T0 + 1, 4, 10_000);
    assert!(
        sends(&drain(&mut c)).is_empty(),
        "one route query in flight is enough"
    );
    let r = route(&[("broker-a", BROKER_A)], 4);
    c.handle_response(T0 + 2, NAMESRV, through_wire(&route_response(&query, &r)));
    let out = drain(&mut c);
    let (_, pop) = one(&out, request::POP_MESSAGE);
    assert_eq!(pop.ext("exp"), Some("*"));
    assert_eq!(pop.ext("bornTime"), Some((T0 + 2).to_string().as_str()));
    c.handle_response(T0 + 3, BROKER_A, empty(&pop, response::POLLING_TIMEOUT, ""));
    assert_eq!(received(drain(&mut c), id).unwrap(), Vec::new());

    // A topic the NameServer does not know.
    c.subscribe(T0 + 10, "Missing", "*").unwrap();
    let out = drain(&mut c);
    let (_, query) = one(&out, request::GET_ROUTEINFO_BY_TOPIC);
    // Round robin over the topics (sorted): TopicA, then Missing, which waits for its route.
    let (_, _, pop) = receive(&mut c, T0 + 11, 4, 10_000);
    assert_eq!(pop.ext("topic"), Some("TopicA"));
    let id = c.receive(T0 + 11, 4, 10_000);
    assert!(find(&drain(&mut c), request::POP_MESSAGE).is_empty());
    let missing = RemotingCommand::response_to(&query, response::TOPIC_NOT_EXIST, None);
    c.handle_response(T0 + 12, NAMESRV, missing);
    assert_eq!(
        received(drain(&mut c), id),
        Err(ClientError::NoRoute {
            topic: "Missing".to_owned()
        })
    );
    let (_, _, pop) = receive(&mut c, T0 + 13, 4, 10_000);
    assert_eq!(pop.ext("topic"), Some("TopicA"));

    // An ack nobody answers (to the master of the handle's broker; nothing else to try).
    c.unsubscribe(T0 + 14, "Missing");
    let mut message = pop_one(&mut c, record("TopicA", 0, 0, "x"), "0 0 0", "0 0 0");
    message.message.served_by.clear();
    let id = c.ack(T0 + 20, &message);
    drain(&mut c);
    c.handle_timeout(T0 + 20 + 3_000);
    assert_eq!(
        acked(drain(&mut c), id),
        Err(ClientError::Timeout { timeout_ms: 3_000 })
    );
}

/// Goal: bad calls fail at once (batch size, no subscription, not started, shut down);
/// shutdown fails what is in flight and unregisters the group.
#[test]
fn bad_calls_fail_at_once_and_shutdown_fails_what_waits() {
    let mut idle = SimpleConsumer::new(config(), T0);
    let id = idle.receive(T0, 1, 1_000);
    assert!(matches!(
        received(drain(&mut idle), id),
        Err(ClientError::InvalidMessage(_))
    ));
    idle.start(T0);
    drain(&mut idle);
    let id = idle.receive(T0, 1, 1_000);
    assert!(matches!(
        received(drain(&mut idle), id),
        Err(ClientError::InvalidMessage(m)) if m.contains("no topic")
    ));
    assert!(matches!(
        idle.subscribe_sql(T0, "TopicA", "a >"),
        Err(ClientError::InvalidSubscription(_))
    ));

    let (mut c, _) = started(config(), &[("broker-a", BROKER_A)]);
    for max in [0, 33] {
        let id = c.receive(T0, max, 1_000);
        assert!(matches!(
            received(drain(&mut c), id),
            Err(ClientError::InvalidMessage(_))
        ));
    }
    let message = pop_one(&mut c, record("TopicA", 0, 1, "x"), "0 0 1", "0 0 1");
    let (pending, _, _) = receive(&mut c, T0, 32, 60_000);
    let ack = c.ack(T0, &message);
    drain(&mut c);
    c.shutdown(T0 + 1);
    let out = drain(&mut c);
    let (addr, unregister) = one(&out, request::UNREGISTER_CLIENT);
    assert_eq!(addr, BROKER_A);
    assert_eq!(unregister.ext("consumerGroup"), Some("G"));
    let done = results(out);
    assert!(done
        .iter()
        .any(|(id, r)| *id == pending
            && matches!(r, SimpleResult::Received(Err(ClientError::ShutDown)))));
    assert!(done
        .iter()
        .any(|(id, r)| *id == ack && matches!(r, SimpleResult::Acked(Err(ClientError::ShutDown)))));
    let id = c.ack(T0 + 2, &message);
    assert_eq!(acked(drain(&mut c), id), Err(ClientError::ShutDown));
    assert!(c.subscribe(T0 + 2, "TopicB", "*").is_err());
}

/// Goal: routes are refreshed and heartbeats sent on their periods.
#[test]
fn routes_and_heartbeats_are_periodic() {
    let (mut c, _) = started(config(), &[("broker-a", BROKER_A)]);
    assert_eq!(c.poll_timeout(), Some(T0 + 30_000));
    c.handle_timeout(T0 + 30_000);
    let out = drain(&mut c);
    assert_eq!(find(&out, request::GET_ROUTEINFO_BY_TOPIC).len(), 1);
    assert_eq!(find(&out, request::HEART_BEAT).len(), 1);
}

/// Goal: an orderly consumer pops with `order=true` and an `attemptId`; a POP after one that
/// got no answer (a timeout) carries the same attempt to the same broker, a POP after an
/// answered one a new attempt; reconsume times come from `orderCountInfo`.
#[test]
fn orderly_receives_carry_an_attempt_id_reused_after_a_lost_answer() {
    let mut cfg = config();
    cfg.orderly = true;
    let (mut c, _) = started(cfg, &[("broker-a", BROKER_A)]);
    let (id, _, pop) = receive(&mut c, T0, 4, 60_000);
    assert_eq!(pop.ext("order"), Some("true"));
    let first = pop.ext("attemptId").expect("an attempt id").to_owned();
    // No answer: the receive fails, and the next POP is the same attempt.
    c.handle_timeout(T0 + 18_000);
    assert!(received(drain(&mut c), id).is_err());
    let (id, _, pop) = receive(&mut c, T0 + 18_000, 4, 60_000);
    assert_eq!(pop.ext("attemptId"), Some(first.as_str()));
    // Answered: the batch, counted from orderCountInfo (offset 10 handed out twice before).
    let records = [
        record("TopicA", 2, 10, "m10"),
        record("TopicA", 2, 11, "m11"),
    ];
    let mut answer = found(&pop, &records, "0 2 10", "0 2 10,11", 60_000);
    answer
        .ext_fields
        .insert("orderCountInfo".to_owned(), "0 qo2%10 2;0 2 0".to_owned());
    c.handle_response(T0 + 18_010, BROKER_A, answer);
    let messages = received(drain(&mut c), id).unwrap();
    let counts: Vec<(i64, i32)> = messages
        .iter()
        .map(|m| (m.ack_offset(), m.reconsume_times()))
        .collect();
    assert_eq!(counts, vec![(10, 2), (11, 0)]);
    let (_, _, pop) = receive(&mut c, T0 + 18_020, 4, 60_000);
    let next = pop.ext("attemptId").expect("an attempt id");
    assert_ne!(next, first, "an answered attempt is not used again");
    // A plain consumer sends neither.
    let (mut c, _) = started(config(), &[("broker-a", BROKER_A)]);
    let (_, _, pop) = receive(&mut c, T0, 4, 60_000);
    assert_eq!(pop.ext("order"), Some("false"));
    assert_eq!(pop.ext("attemptId"), None);
}
