//! The producer against scripted NameServer and broker answers.

use super::*;
use crate::client::fault::not_available_duration_ms;
use crate::client::producer::java_string_hash;
use crate::client::{
    ClientConfig, ClientError, Message, MessageQueue, Producer, ProducerConfig, QueueSelector,
    SendId, SendMode, SendResult, SendStatus,
};
use crate::remoting::codes::{request, response};

const BROKER_A: &str = "127.0.0.1:10911";
const BROKER_B: &str = "127.0.0.1:10921";

fn config(fault: bool) -> ProducerConfig {
    ProducerConfig {
        client: ClientConfig {
            namesrv_addrs: vec![NAMESRV.to_owned()],
            instance_name: "p".to_owned(),
            seed: 7,
            ..ClientConfig::default()
        },
        producer_group: "PG".to_owned(),
        send_latency_fault_enable: fault,
        ..ProducerConfig::default()
    }
}

fn drain(p: &mut Producer) -> Vec<ClientOutput> {
    std::iter::from_fn(|| p.poll_output()).collect()
}

fn done(outputs: &[ClientOutput]) -> Vec<(SendId, Result<SendResult, ClientError>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ClientOutput::SendDone { id, result } => Some((*id, result.clone())),
            _ => None,
        })
        .collect()
}

/// The broker's success answer to a send request.
fn send_ok(request: &RemotingCommand, offset: i64) -> RemotingCommand {
    let queue_id = request.ext("e").unwrap_or("0").to_owned();
    RemotingCommand::response_to(request, response::SUCCESS, None)
        .with_ext("msgId", "7F0000010000291F0000000000000000")
        .with_ext("queueId", queue_id)
        .with_ext("queueOffset", offset)
        .with_ext("MSG_REGION", "DefaultRegion")
        .with_ext("TRACE_ON", "true")
}

/// A producer that knows `TopicA` on brokers a and b (4 queues each).
fn ready(fault: bool) -> Producer {
    let mut p = Producer::new(config(fault), T0);
    p.refresh_route(T0, "TopicA");
    let out = sends(&drain(&mut p));
    assert_eq!(out.len(), 1);
    let (addr, req) = &out[0];
    assert_eq!(addr, NAMESRV);
    assert_eq!(req.code, request::GET_ROUTEINFO_BY_TOPIC);
    let r = route(&[("broker-a", BROKER_A), ("broker-b", BROKER_B)], 4);
    p.handle_response(T0, NAMESRV, through_wire(&route_response(req, &r)));
    p
}

/// Sends one message and returns the request written.
fn send_one(p: &mut Producer, now: u64, mode: SendMode) -> (SendId, String, RemotingCommand) {
    let id = p.send(now, Message::new("TopicA", "x"), mode);
    let out = sends(&drain(p));
    assert_eq!(out.len(), 1, "{out:?}");
    let (addr, req) = out.into_iter().next().unwrap();
    (id, addr, req)
}

/// Goal: queues are chosen round-robin over every writable queue (brokers in name order) from a
/// seeded start, and a success answer completes the send with both ids, queue and offset.
#[test]
fn round_robin_and_success() {
    let mut p = ready(false);
    assert_eq!(p.topic_queues("TopicA").len(), 8);
    let mut picks = Vec::new();
    for i in 0..8 {
        let (id, addr, req) = send_one(&mut p, T0, SendMode::Sync);
        assert_eq!(req.code, request::SEND_MESSAGE_V2);
        let queue_id: i32 = req.ext_num("e").unwrap();
        picks.push((addr.clone(), queue_id));
        p.handle_response(T0 + 1, &addr, through_wire(&send_ok(&req, i)));
        let results = done(&drain(&mut p));
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].0, id);
        let result = results[0].1.clone().unwrap();
        assert_eq!(result.status, SendStatus::SendOk);
        assert_eq!(result.queue_offset, i);
        assert_eq!(result.queue.queue_id, queue_id);
        assert_eq!(result.offset_msg_id, "7F0000010000291F0000000000000000");
        let props = crate::message::Properties::parse(req.ext("i").unwrap());
        assert_eq!(props.get("UNIQ_KEY"), Some(result.msg_id.as_str()));
        assert_eq!(props.get("WAIT"), Some("true"));
        assert_eq!(result.region_id.as_deref(), Some("DefaultRegion"));
        assert!(result.trace_on);
    }
    // Eight consecutive sends visit the eight queues once each, in cyclic order.
    let mut sorted = picks.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 8, "{picks:?}");
    let all: Vec<(String, i32)> = [BROKER_A, BROKER_B]
        .iter()
        .flat_map(|b| (0..4).map(move |q| (b.to_string(), q)))
        .collect();
    let start = all.iter().position(|x| *x == picks[0]).unwrap();
    for (k, pick) in picks.iter().enumerate() {
        assert_eq!(*pick, all[(start + k) % 8]);
    }
}

/// Goal: a retryable broker answer (SYSTEM_BUSY) retries on the other broker; a
/// non-retryable one (MESSAGE_ILLEGAL) fails at once with the broker's code and remark.
#[test]
fn retry_on_another_broker_then_fail_fast() {
    let mut p = ready(false);
    let (id, addr, req) = send_one(&mut p, T0, SendMode::Sync);
    let busy =
        RemotingCommand::response_to(&req, response::SYSTEM_BUSY, Some("[REJECTREQUEST]".into()));
    p.handle_response(T0 + 5, &addr, through_wire(&busy));
    let out = drain(&mut p);
    assert!(done(&out).is_empty());
    let retry = sends(&out);
    assert_eq!(retry.len(), 1);
    assert_ne!(retry[0].0, addr, "the retry goes to the other broker");
    assert_eq!(
        retry[0].1.ext("i"),
        req.ext("i"),
        "same message, same UNIQ_KEY"
    );
    p.handle_response(T0 + 6, &retry[0].0, through_wire(&send_ok(&retry[0].1, 9)));
    let results = done(&drain(&mut p));
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, id);
    assert!(results[0].1.is_ok());

    let (id, addr, req) = send_one(&mut p, T0 + 10, SendMode::Sync);
    let illegal =
        RemotingCommand::response_to(&req, response::MESSAGE_ILLEGAL, Some("too big".into()));
    p.handle_response(T0 + 11, &addr, through_wire(&illegal));
    let results = done(&drain(&mut p));
    assert_eq!(
        results,
        vec![(
            id,
            Err(ClientError::Broker {
                code: response::MESSAGE_ILLEGAL,
                remark: "too big".into()
            })
        )]
    );
}

/// Goal: sync sends stop after 1 + 2 attempts and report the last error; a closed connection
/// counts as a failed attempt.
#[test]
fn retries_are_bounded() {
    let mut p = ready(false);
    let (id, mut addr, mut req) = send_one(&mut p, T0, SendMode::Sync);
    for attempt in 0..3 {
        if attempt == 2 {
            p.handle_connection_closed(T0 + 3, &addr);
        } else {
            let err =
                RemotingCommand::response_to(&req, response::SYSTEM_ERROR, Some("boom".into()));
            p.handle_response(T0 + 1, &addr, err);
        }
        let out = drain(&mut p);
        if attempt < 2 {
            let next = sends(&out);
            assert_eq!(next.len(), 1);
            (addr, req) = next.into_iter().next().unwrap();
        } else {
            assert!(sends(&out).is_empty());
            let results = done(&out);
            assert_eq!(results.len(), 1);
            assert_eq!(results[0].0, id);
            assert!(matches!(
                results[0].1,
                Err(ClientError::ConnectionClosed { .. })
            ));
        }
    }
}

/// Goal: `sendMsgTimeout` (3 s) is enforced: an unanswered send completes with a timeout at
/// the deadline, exactly once, and a late answer is ignored.
#[test]
fn send_timeout() {
    let mut p = ready(false);
    let (id, addr, req) = send_one(&mut p, T0, SendMode::Async);
    assert_eq!(p.poll_timeout(), Some(T0 + 1_000), "first heartbeat");
    p.handle_timeout(T0 + 1_000);
    drain(&mut p);
    assert_eq!(p.poll_timeout(), Some(T0 + 3_000));
    p.handle_timeout(T0 + 2_999);
    assert!(done(&drain(&mut p)).is_empty());
    p.handle_timeout(T0 + 3_000);
    let results = done(&drain(&mut p));
    assert_eq!(
        results,
        vec![(id, Err(ClientError::Timeout { timeout_ms: 3_000 }))]
    );
    p.handle_response(T0 + 3_001, &addr, send_ok(&req, 1));
    assert!(done(&drain(&mut p)).is_empty());
}

/// Goal: an unknown topic falls back to the default topic's route with at most 4 queues; a
/// topic whose route and default route are both missing fails with "No route info".
#[test]
fn default_topic_route_and_no_route() {
    let mut p = Producer::new(config(false), T0);
    let id = p.send(T0, Message::new("NewTopic", "x"), SendMode::Sync);
    let out = sends(&drain(&mut p));
    assert_eq!(out[0].1.ext("topic"), Some("NewTopic"));
    let missing =
        RemotingCommand::response_to(&out[0].1, response::TOPIC_NOT_EXIST, Some("no".into()));
    p.handle_response(T0, NAMESRV, missing);
    let out = sends(&drain(&mut p));
    assert_eq!(out[0].1.ext("topic"), Some("TBW102"));
    let r = route(&[("broker-a", BROKER_A)], 8);
    p.handle_response(T0, NAMESRV, route_response(&out[0].1, &r));
    let out = sends(&drain(&mut p));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, BROKER_A);
    assert_eq!(out[0].1.ext("b"), Some("NewTopic"));
    assert_eq!(out[0].1.ext("c"), Some("TBW102"));
    assert!(out[0].1.ext_num::<i32>("e").unwrap() < 4);
    assert_eq!(p.topic_queues("NewTopic").len(), 4);
    p.handle_response(T0 + 1, BROKER_A, send_ok(&out[0].1, 0));
    assert!(done(&drain(&mut p))[0].1.is_ok());
    let _ = id;

    let id = p.send(T0, Message::new("Nowhere", "x"), SendMode::Sync);
    for _ in 0..2 {
        let out = sends(&drain(&mut p));
        let missing = RemotingCommand::response_to(&out[0].1, response::TOPIC_NOT_EXIST, None);
        p.handle_response(T0, NAMESRV, missing);
    }
    let results = done(&drain(&mut p));
    assert_eq!(
        results,
        vec![(
            id,
            Err(ClientError::NoRoute {
                topic: "Nowhere".into()
            })
        )]
    );
}

/// Goal: ordered sends go where the selector says (Java's SelectMessageQueueByHash) and are
/// not retried on another queue; explicit-queue sends likewise.
#[test]
fn selector_and_explicit_queue_do_not_retry() {
    let mut p = ready(false);
    let hash = java_string_hash("order-42");
    let expected = (hash % 8).unsigned_abs() as usize;
    let queues = p.topic_queues("TopicA");
    let id = p.send_with_selector(
        T0,
        Message::new("TopicA", "x"),
        QueueSelector::ByHash(hash),
        SendMode::Sync,
    );
    let out = sends(&drain(&mut p));
    assert_eq!(out.len(), 1);
    let (addr, req) = &out[0];
    let want = &queues[expected];
    assert_eq!(req.ext_num::<i32>("e").unwrap(), want.queue_id);
    assert_eq!(
        addr,
        if want.broker_name == "broker-a" {
            BROKER_A
        } else {
            BROKER_B
        }
    );
    let busy = RemotingCommand::response_to(req, response::SYSTEM_BUSY, None);
    p.handle_response(T0 + 1, addr, busy);
    let out = drain(&mut p);
    assert!(sends(&out).is_empty(), "no retry for ordered sends");
    assert_eq!(done(&out)[0].0, id);
    assert!(done(&out)[0].1.is_err());

    // A custom selector and an explicit queue.
    p.send_with_selector(
        T0,
        Message::new("TopicA", "x"),
        QueueSelector::Custom(Box::new(|qs: &[MessageQueue]| qs.len() - 1)),
        SendMode::Sync,
    );
    let out = sends(&drain(&mut p));
    assert_eq!(
        (out[0].0.as_str(), out[0].1.ext("e")),
        (BROKER_B, Some("3"))
    );
    p.send_to_queue(
        T0,
        Message::new("TopicA", "x"),
        MessageQueue::new("TopicA", "broker-a", 2),
        SendMode::Sync,
    );
    let out = sends(&drain(&mut p));
    assert_eq!(
        (out[0].0.as_str(), out[0].1.ext("e")),
        (BROKER_A, Some("2"))
    );
}

/// Goal: a oneway send carries the oneway flag and completes at once with offset -1.
#[test]
fn oneway_completes_at_once() {
    let mut p = ready(false);
    let id = p.send(T0, Message::new("TopicA", "x"), SendMode::Oneway);
    let out = drain(&mut p);
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert!(s[0].1.is_oneway());
    let results = done(&out);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, id);
    let result = results[0].1.clone().unwrap();
    assert_eq!(result.queue_offset, -1);
    assert!(result.offset_msg_id.is_empty());
    assert_eq!(
        p.poll_timeout(),
        Some(T0 + 1_000),
        "nothing waits for an answer"
    );
}

/// Goal: RocketMQ's latency table, and with fault avoidance on, a broker that failed (isolated
/// for 10 minutes) or answered slowly (550 ms → 30 s) is skipped until its window ends.
#[test]
fn latency_fault_avoidance() {
    assert_eq!(not_available_duration_ms(0), 0);
    assert_eq!(not_available_duration_ms(99), 0);
    assert_eq!(not_available_duration_ms(550), 30_000);
    assert_eq!(not_available_duration_ms(1_999), 60_000);
    assert_eq!(not_available_duration_ms(2_000), 120_000);
    assert_eq!(not_available_duration_ms(3_000), 180_000);
    assert_eq!(not_available_duration_ms(30_000), 600_000);

    let mut p = ready(true);
    // Find a send that goes to broker-a, and make broker-a answer slowly (600 ms).
    let (addr, req) = loop {
        let (_, addr, req) = send_one(&mut p, T0, SendMode::Sync);
        if addr == BROKER_A {
            break (addr, req);
        }
        p.handle_response(T0, &addr, send_ok(&req, 0));
        drain(&mut p);
    };
    p.handle_response(T0 + 600, &addr, send_ok(&req, 0));
    drain(&mut p);
    for _ in 0..8 {
        let (_, addr, req) = send_one(&mut p, T0 + 1_000, SendMode::Sync);
        assert_eq!(addr, BROKER_B, "broker-a is avoided for 30 s");
        p.handle_response(T0 + 1_000, &addr, send_ok(&req, 0));
        drain(&mut p);
    }
    let mut seen_a = false;
    for _ in 0..8 {
        let (_, addr, req) = send_one(&mut p, T0 + 600 + 30_000, SendMode::Sync);
        seen_a |= addr == BROKER_A;
        p.handle_response(T0 + 30_600, &addr, send_ok(&req, 0));
        drain(&mut p);
    }
    assert!(seen_a, "broker-a is back after its window");
}

/// Goal: invalid messages fail at once without touching the network.
#[test]
fn invalid_messages_fail_at_once() {
    let mut p = ready(false);
    let empty = p.send(T0, Message::new("TopicA", ""), SendMode::Sync);
    let bad_topic = p.send(T0, Message::new("bad topic", "x"), SendMode::Sync);
    let delayed_batch = p.send_batch(
        T0,
        vec![Message::new("TopicA", "x").with_delay_level(3)],
        SendMode::Sync,
    );
    let mixed = p.send_batch(
        T0,
        vec![Message::new("TopicA", "x"), Message::new("TopicB", "y")],
        SendMode::Sync,
    );
    let none = p.send_batch(T0, vec![], SendMode::Sync);
    let out = drain(&mut p);
    assert!(sends(&out).is_empty());
    let results = done(&out);
    let ids: Vec<SendId> = results.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![empty, bad_topic, delayed_batch, mixed, none]);
    assert!(results
        .iter()
        .all(|(_, r)| matches!(r, Err(ClientError::InvalidMessage(_)))));
}

/// Goal: heartbeats go to every known master every 30 s with the producer group and
/// CLIENT_INNER_PRODUCER; the route is refreshed every 30 s; shutdown fails what is in flight
/// and unregisters.
#[test]
fn heartbeat_refresh_and_shutdown() {
    let mut p = ready(false);
    p.handle_timeout(T0 + 1_000);
    let out = sends(&drain(&mut p));
    let beats: Vec<&(String, RemotingCommand)> = out
        .iter()
        .filter(|(_, c)| c.code == request::HEART_BEAT)
        .collect();
    assert_eq!(beats.len(), 2);
    let body = String::from_utf8(beats[0].1.body.to_vec()).unwrap();
    assert_eq!(
        body,
        r#"{"clientID":"127.0.0.1@p","consumerDataSet":[],"heartbeatFingerprint":0,"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"},{"groupName":"PG"}],"withoutSub":false}"#
    );
    p.handle_timeout(T0 + 30_000);
    let out = sends(&drain(&mut p));
    assert!(out
        .iter()
        .any(|(a, c)| a == NAMESRV && c.code == request::GET_ROUTEINFO_BY_TOPIC));

    let (id, _, _) = send_one(&mut p, T0 + 30_001, SendMode::Sync);
    p.shutdown(T0 + 30_002);
    let out = drain(&mut p);
    assert_eq!(done(&out), vec![(id, Err(ClientError::ShutDown))]);
    let unregisters: Vec<_> = sends(&out)
        .into_iter()
        .filter(|(_, c)| c.code == request::UNREGISTER_CLIENT)
        .collect();
    assert_eq!(unregisters.len(), 2);
    assert_eq!(unregisters[0].1.ext("producerGroup"), Some("PG"));
    let late = p.send(T0 + 30_003, Message::new("TopicA", "x"), SendMode::Sync);
    assert_eq!(
        done(&drain(&mut p)),
        vec![(late, Err(ClientError::ShutDown))]
    );
}

/// Goal: a transactional send marks the half message (TRAN_MSG, PGROUP, sysFlag prepared, no
/// delay); END_TRANSACTION goes oneway to the broker that stored it with the offsets of the send
/// result; a broker's check surfaces as an event and its answer goes back to that broker.
#[test]
fn transactional_send_end_and_check() {
    use crate::client::{LocalTransactionState, TransactionCheck};
    use crate::message::{keys, sys_flag, MessageRecord, Properties};
    use crate::remoting::headers::{
        CheckTransactionStateRequestHeader, EndTransactionRequestHeader, SendMessageRequestHeader,
    };

    let mut p = ready(false);
    let id = p.send_in_transaction(T0, Message::new("TopicA", "pay").with_delay_level(3));
    let out = sends(&drain(&mut p));
    let (addr, req) = out.into_iter().next().expect("a send");
    let header = SendMessageRequestHeader::parse(&req).unwrap();
    assert_eq!(
        header.sys_flag & sys_flag::TRANSACTION_MASK,
        sys_flag::TRANSACTION_PREPARED
    );
    let props = Properties::parse(header.properties.as_deref().unwrap());
    assert_eq!(props.get(keys::TRAN_MSG), Some("true"));
    assert_eq!(props.get(keys::PGROUP), Some("PG"));
    assert_eq!(props.get(keys::DELAY), None);
    let offset_id = crate::message::offset_msg_id("127.0.0.1:10911".parse().unwrap(), 4_096);
    let answer = send_ok(&req, 5)
        .with_ext("msgId", &offset_id)
        .with_ext("transactionId", "TX1");
    p.handle_response(T0 + 1, &addr, through_wire(&answer));
    let results = done(&drain(&mut p));
    assert_eq!(results[0].0, id);
    let sent = results[0].1.clone().expect("sent");

    p.end_transaction(T0 + 2, &sent, LocalTransactionState::CommitMessage, None)
        .unwrap();
    let out = sends(&drain(&mut p));
    assert_eq!(out.len(), 1);
    let (end_addr, end) = &out[0];
    assert_eq!(end_addr, &addr, "to the broker that stored it");
    assert!(end.is_oneway());
    assert_eq!(end.code, request::END_TRANSACTION);
    let h = EndTransactionRequestHeader::parse(&through_wire(end)).unwrap();
    assert_eq!(h.producer_group, "PG");
    assert_eq!(h.tran_state_table_offset, 5);
    assert_eq!(h.commit_log_offset, 4_096);
    assert_eq!(h.commit_or_rollback, sys_flag::TRANSACTION_COMMIT);
    assert!(!h.from_transaction_check);
    assert_eq!(h.msg_id, sent.msg_id);
    assert_eq!(h.transaction_id.as_deref(), Some("TX1"));

    // A check from broker b about a half message of this group.
    let check_request = |group: &str| {
        let mut properties = Properties::new();
        properties.insert(keys::PGROUP, group);
        properties.insert(keys::UNIQ_KEY, "U1");
        let record = MessageRecord {
            queue_id: 2,
            flag: 0,
            queue_offset: 7,
            physical_offset: 8_192,
            sys_flag: 0,
            born_timestamp_ms: T0 as i64,
            born_host: "127.0.0.1:5000".parse().unwrap(),
            store_timestamp_ms: T0 as i64,
            store_host: "127.0.0.1:10921".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: bytes::Bytes::from_static(b"pay"),
            topic: "TopicA".to_owned(),
            properties,
        };
        let mut body = BytesMut::new();
        record.encode(&mut body).unwrap();
        let mut cmd =
            RemotingCommand::request(request::CHECK_TRANSACTION_STATE).with_body(body.freeze());
        CheckTransactionStateRequestHeader {
            topic: Some("TopicA".into()),
            tran_state_table_offset: 7,
            commit_log_offset: 8_192,
            msg_id: Some("U1".into()),
            transaction_id: Some("U1".into()),
            offset_msg_id: None,
            broker_name: Some("broker-b".into()),
        }
        .write_to(&mut cmd);
        cmd.mark_oneway();
        through_wire(&cmd)
    };
    p.handle_request(T0 + 3, BROKER_B, check_request("OTHER"));
    assert!(drain(&mut p).is_empty(), "another group's check is ignored");
    p.handle_request(T0 + 3, BROKER_B, check_request("PG"));
    let checks: Vec<TransactionCheck> = drain(&mut p)
        .into_iter()
        .filter_map(|o| match o {
            ClientOutput::TransactionCheck { check } => Some(check),
            _ => None,
        })
        .collect();
    assert_eq!(checks.len(), 1);
    let check = &checks[0];
    assert_eq!(check.broker_addr, BROKER_B);
    assert_eq!(&check.message.body()[..], b"pay");
    assert_eq!(check.message.queue.broker_name, "broker-b");
    p.answer_check(T0 + 4, check, LocalTransactionState::RollbackMessage);
    let out = sends(&drain(&mut p));
    let (answer_addr, answer) = &out[0];
    assert_eq!(answer_addr, BROKER_B);
    let h = EndTransactionRequestHeader::parse(&through_wire(answer)).unwrap();
    assert!(h.from_transaction_check);
    assert_eq!(h.commit_or_rollback, sys_flag::TRANSACTION_ROLLBACK);
    assert_eq!((h.tran_state_table_offset, h.commit_log_offset), (7, 8_192));
    assert_eq!(h.msg_id, "U1");
}
