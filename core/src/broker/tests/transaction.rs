//! Transactions: half messages invisible until committed, commit visible once, rollback never,
//! check-back to a live producer after the timeout, the maximum check count, restarts.

use super::*;
use crate::broker::transaction::{
    TransactionConfig, TRANSACTION_OFFSET_PATH, TRANS_CHECK_MAX_TIME_TOPIC, TRANS_HALF_TOPIC,
    TRANS_OP_HALF_TOPIC,
};
use crate::message::{decode_offset_msg_id, keys, sys_flag};
use crate::remoting::headers::{CheckTransactionStateRequestHeader, EndTransactionRequestHeader};
use crate::store::{PowerLoss, QueueOffset};

const TIMEOUT_MS: u64 = 6_000;
const INTERVAL_MS: u64 = 2_000;

fn tx_config(check_max: u32) -> BrokerConfig {
    let mut config = test_config();
    config.transaction = TransactionConfig {
        timeout_ms: TIMEOUT_MS,
        check_interval_ms: INTERVAL_MS,
        check_max,
    };
    config
}

/// What the producer keeps from the send response to end the transaction.
#[derive(Clone, Debug)]
struct Sent {
    queue_offset: i64,
    commitlog_offset: i64,
    msg_id: String,
}

fn send_half(h: &mut Harness, conn: u64, topic: &str, body: &[u8], uniq: &str) -> Sent {
    let resp = h.call(conn, half(topic, 1, body, uniq));
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(resp.ext("queueId"), Some("1"), "the real queue is reported");
    assert_eq!(resp.ext("transactionId"), Some(uniq));
    let (_, offset) = decode_offset_msg_id(resp.ext("msgId").unwrap()).unwrap();
    Sent {
        queue_offset: resp.ext("queueOffset").unwrap().parse().unwrap(),
        commitlog_offset: offset as i64,
        msg_id: uniq.to_owned(),
    }
}

fn end_tx(sent: &Sent, state: i32, from_check: bool) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(request::END_TRANSACTION);
    EndTransactionRequestHeader {
        producer_group: "PG".into(),
        tran_state_table_offset: sent.queue_offset,
        commit_log_offset: sent.commitlog_offset,
        commit_or_rollback: state,
        from_transaction_check: from_check,
        msg_id: sent.msg_id.clone(),
        transaction_id: Some(sent.msg_id.clone()),
        topic: None,
    }
    .write_to(&mut cmd);
    cmd
}

fn producer_heartbeat(client_id: &str) -> RemotingCommand {
    let body = serde_json::json!({
        "clientID": client_id,
        "producerDataSet": [{"groupName": "PG"}, {"groupName": "CLIENT_INNER_PRODUCER"}],
        "consumerDataSet": []
    });
    RemotingCommand::request(request::HEART_BEAT)
        .with_body(Bytes::from(serde_json::to_vec(&body).unwrap()))
}

fn records(h: &Harness, topic: &str, queue_id: i32) -> Vec<MessageRecord> {
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

/// CHECK_TRANSACTION_STATE requests among `outputs`, with the connection each went to.
fn checks(outputs: &[BrokerOutput]) -> Vec<(u64, RemotingCommand)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            BrokerOutput::Send { conn, command }
                if command.code == request::CHECK_TRANSACTION_STATE =>
            {
                Some((conn.0, command.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Answers syncs like a driver until none is asked for.
fn answer_syncs(h: &mut Harness, mut outputs: Vec<BrokerOutput>) -> Vec<BrokerOutput> {
    let mut all = Vec::new();
    loop {
        let pending = syncs(&outputs);
        all.extend(outputs);
        if pending.is_empty() {
            return all;
        }
        for sync in pending {
            for range in &sync.ranges {
                h.broker
                    .store_mut()
                    .storage_mut()
                    .sync(&range.path, range.start, range.end)
                    .unwrap();
            }
            h.broker.handle_synced(h.now_ms, sync.up_to);
        }
        outputs = h.drain();
    }
}

fn step(h: &mut Harness, now_ms: u64) -> Vec<BrokerOutput> {
    let outputs = h.advance_to(now_ms);
    answer_syncs(h, outputs)
}

/// What a producer answering a check sends back.
fn answer_check(check: &RemotingCommand, state: i32) -> RemotingCommand {
    let header = CheckTransactionStateRequestHeader::parse(check).unwrap();
    let sent = Sent {
        queue_offset: header.tran_state_table_offset,
        commitlog_offset: header.commit_log_offset,
        msg_id: header.msg_id.unwrap(),
    };
    end_tx(&sent, state, true)
}

#[test]
fn a_half_message_is_stored_in_the_half_topic_and_invisible() {
    let mut h = Harness::new(tx_config(15));
    send_half(&mut h, 1, "TopicA", b"pay", "U1");
    assert_eq!(h.broker.store().max_offset("TopicA", 1).0, 0);
    let stored = records(&h, TRANS_HALF_TOPIC, 0);
    assert_eq!(stored.len(), 1);
    let half = &stored[0];
    assert_eq!(half.properties.get(keys::REAL_TOPIC), Some("TopicA"));
    assert_eq!(half.properties.get(keys::REAL_QID), Some("1"));
    assert_eq!(half.properties.get("__transactionId__"), Some("U1"));
    assert_eq!(half.sys_flag & sys_flag::TRANSACTION_MASK, 0);
    assert_eq!(h.broker.pending_transactions(), vec![(0, 0)]);
    // Nobody may send to the system topics.
    for topic in [
        TRANS_HALF_TOPIC,
        TRANS_OP_HALF_TOPIC,
        TRANS_CHECK_MAX_TIME_TOPIC,
    ] {
        assert_eq!(
            h.call(1, send_v2(topic, 0, b"x", "t")).code,
            response::NO_PERMISSION
        );
    }
}

#[test]
fn commit_puts_the_message_in_its_topic_once() {
    let mut h = Harness::new(tx_config(15));
    let sent = send_half(&mut h, 1, "TopicA", b"pay", "U1");
    let resp = h.call(1, end_tx(&sent, sys_flag::TRANSACTION_COMMIT, false));
    assert_eq!(resp.code, response::SUCCESS);
    let committed = records(&h, "TopicA", 1);
    assert_eq!(committed.len(), 1);
    let msg = &committed[0];
    assert_eq!(&msg.body[..], b"pay");
    assert_eq!(msg.properties.get(keys::UNIQ_KEY), Some("U1"));
    assert_eq!(msg.properties.get(keys::TRAN_MSG), None);
    assert_eq!(msg.properties.get(keys::REAL_TOPIC), None);
    assert_eq!(
        msg.sys_flag & sys_flag::TRANSACTION_MASK,
        sys_flag::TRANSACTION_COMMIT
    );
    assert_eq!(msg.prepared_transaction_offset, sent.commitlog_offset);
    assert_eq!(bodies(&h, TRANS_OP_HALF_TOPIC, 0), ["0"]);
    // A repeated commit, a late rollback and a check afterwards change nothing.
    h.call(1, end_tx(&sent, sys_flag::TRANSACTION_COMMIT, true));
    h.call(1, end_tx(&sent, sys_flag::TRANSACTION_ROLLBACK, false));
    h.call(1, producer_heartbeat("p1"));
    let outputs = step(&mut h, T0 + 60_000);
    assert!(checks(&outputs).is_empty());
    assert_eq!(records(&h, "TopicA", 1).len(), 1);
    assert!(h.broker.pending_transactions().is_empty());
}

#[test]
fn rollback_is_never_delivered_and_unknown_waits_for_the_check() {
    let mut h = Harness::new(tx_config(15));
    let rolled = send_half(&mut h, 1, "TopicA", b"no", "U1");
    let unknown = send_half(&mut h, 1, "TopicA", b"maybe", "U2");
    // END_TRANSACTION is oneway as clients send it: no answer.
    let mut oneway = end_tx(&rolled, sys_flag::TRANSACTION_ROLLBACK, false);
    oneway.mark_oneway();
    assert!(responses_on(&h.request(1, oneway), 1).is_empty());
    let mut unknown_end = end_tx(&unknown, sys_flag::TRANSACTION_NOT_TYPE, false);
    unknown_end.mark_oneway();
    h.request(1, unknown_end);
    assert_eq!(bodies(&h, TRANS_OP_HALF_TOPIC, 0), ["0"]);
    assert_eq!(h.broker.pending_transactions(), vec![(1, 0)]);
    h.call(1, end_tx(&rolled, sys_flag::TRANSACTION_COMMIT, false));
    assert!(bodies(&h, "TopicA", 1).is_empty(), "a rollback is final");
}

#[test]
fn end_transaction_checks_what_it_names() {
    let mut h = Harness::new(tx_config(15));
    let sent = send_half(&mut h, 1, "TopicA", b"pay", "U1");
    let mut wrong_group = end_tx(&sent, sys_flag::TRANSACTION_COMMIT, false);
    wrong_group
        .ext_fields
        .insert("producerGroup".into(), "OTHER".into());
    assert_eq!(h.call(1, wrong_group).code, response::SYSTEM_ERROR);
    let bad_offset = Sent {
        commitlog_offset: sent.commitlog_offset + 1,
        ..sent.clone()
    };
    assert_eq!(
        h.call(1, end_tx(&bad_offset, sys_flag::TRANSACTION_COMMIT, false))
            .code,
        response::SYSTEM_ERROR
    );
    let bad_queue_offset = Sent {
        queue_offset: 9,
        ..sent.clone()
    };
    assert_eq!(
        h.call(
            1,
            end_tx(&bad_queue_offset, sys_flag::TRANSACTION_COMMIT, false)
        )
        .code,
        response::SYSTEM_ERROR
    );
    assert_eq!(
        h.call(1, end_tx(&sent, 5, false)).code,
        response::SYSTEM_ERROR
    );
    let missing = RemotingCommand::request(request::END_TRANSACTION);
    assert_eq!(h.call(1, missing).code, response::SYSTEM_ERROR);
    // A normal message is no half message.
    let normal = h.call(1, send_v2("TopicA", 0, b"plain", "t"));
    let (_, offset) = decode_offset_msg_id(normal.ext("msgId").unwrap()).unwrap();
    let not_half = Sent {
        queue_offset: 0,
        commitlog_offset: offset as i64,
        msg_id: "X".into(),
    };
    assert_eq!(
        h.call(1, end_tx(&not_half, sys_flag::TRANSACTION_COMMIT, false))
            .code,
        response::SYSTEM_ERROR
    );
    assert!(bodies(&h, "TopicA", 1).is_empty());
    assert_eq!(h.broker.pending_transactions(), vec![(0, 0)]);
}

#[test]
fn an_unanswered_half_is_checked_after_the_timeout_and_commit_answers_it() {
    let mut h = Harness::new(tx_config(15));
    h.call(2, producer_heartbeat("p1"));
    let sent = send_half(&mut h, 1, "TopicA", b"pay", "U1");
    assert_eq!(
        h.broker.poll_timeout().map(|t| t <= T0 + TIMEOUT_MS),
        Some(true)
    );
    assert!(
        checks(&step(&mut h, T0 + TIMEOUT_MS - 1)).is_empty(),
        "not early"
    );
    let outputs = step(&mut h, T0 + TIMEOUT_MS);
    let sent_checks = checks(&outputs);
    assert_eq!(sent_checks.len(), 1);
    let (conn, check) = &sent_checks[0];
    assert_eq!(*conn, 2, "to the live producer of the group");
    assert!(check.is_oneway());
    let header = CheckTransactionStateRequestHeader::parse(check).unwrap();
    assert_eq!(header.topic.as_deref(), Some("TopicA"));
    assert_eq!(header.tran_state_table_offset, sent.queue_offset);
    assert_eq!(header.msg_id.as_deref(), Some("U1"));
    assert_eq!(header.transaction_id.as_deref(), Some("U1"));
    assert_eq!(header.broker_name.as_deref(), Some("broker-a"));
    let body = MessageRecord::decode(&check.body, true).unwrap();
    assert_eq!(body.topic, "TopicA");
    assert_eq!(body.queue_id, 1);
    assert_eq!(&body.body[..], b"pay");
    assert_eq!(body.properties.get(keys::PGROUP), Some("PG"));
    assert_eq!(body.physical_offset, header.commit_log_offset);
    assert_eq!(h.broker.pending_transactions(), vec![(0, 1)]);

    // Checked again every interval while unanswered.
    assert!(checks(&step(&mut h, T0 + TIMEOUT_MS + INTERVAL_MS - 1)).is_empty());
    let again = checks(&step(&mut h, T0 + TIMEOUT_MS + INTERVAL_MS));
    assert_eq!(again.len(), 1);
    h.call(2, answer_check(&again[0].1, sys_flag::TRANSACTION_COMMIT));
    assert_eq!(bodies(&h, "TopicA", 1), ["pay"]);
    // The answer to the older check is a repeat.
    h.call(2, answer_check(check, sys_flag::TRANSACTION_COMMIT));
    assert_eq!(bodies(&h, "TopicA", 1), ["pay"]);
    assert!(checks(&step(&mut h, T0 + 60_000)).is_empty());
}

#[test]
fn a_check_answered_with_rollback_is_never_delivered() {
    let mut h = Harness::new(tx_config(15));
    h.call(2, producer_heartbeat("p1"));
    send_half(&mut h, 1, "TopicA", b"no", "U1");
    let found = checks(&step(&mut h, T0 + TIMEOUT_MS));
    h.call(2, answer_check(&found[0].1, sys_flag::TRANSACTION_ROLLBACK));
    assert!(checks(&step(&mut h, T0 + 60_000)).is_empty());
    assert!(bodies(&h, "TopicA", 1).is_empty());
    assert!(h.broker.pending_transactions().is_empty());
}

#[test]
fn checks_rotate_among_producers_and_skip_a_gone_one() {
    let mut h = Harness::new(tx_config(15));
    h.call(2, producer_heartbeat("p1"));
    h.call(3, producer_heartbeat("p2"));
    send_half(&mut h, 1, "TopicA", b"pay", "U1");
    let first = checks(&step(&mut h, T0 + TIMEOUT_MS));
    let second = checks(&step(&mut h, T0 + TIMEOUT_MS + INTERVAL_MS));
    assert_ne!(first[0].0, second[0].0, "another member is asked next");
    // The producer that was asked last dies: the next check reaches the other.
    let survivor = first[0].0;
    h.broker.handle_disconnected(h.now_ms, ConnId(second[0].0));
    let third = checks(&step(&mut h, T0 + TIMEOUT_MS + 2 * INTERVAL_MS));
    let fourth = checks(&step(&mut h, T0 + TIMEOUT_MS + 3 * INTERVAL_MS));
    assert_eq!(third[0].0, survivor);
    assert_eq!(fourth[0].0, survivor);
    h.call(
        survivor,
        answer_check(&fourth[0].1, sys_flag::TRANSACTION_COMMIT),
    );
    assert_eq!(bodies(&h, "TopicA", 1), ["pay"]);
}

#[test]
fn after_the_maximum_checks_the_half_is_given_up() {
    let mut h = Harness::new(tx_config(3));
    h.call(2, producer_heartbeat("p1"));
    let sent = send_half(&mut h, 1, "TopicA", b"lost", "U1");
    let mut sent_checks = 0;
    for i in 0..10 {
        sent_checks += checks(&step(&mut h, T0 + TIMEOUT_MS + i * INTERVAL_MS)).len();
    }
    assert_eq!(sent_checks, 3);
    assert!(h.broker.pending_transactions().is_empty());
    assert_eq!(bodies(&h, TRANS_CHECK_MAX_TIME_TOPIC, 0), ["lost"]);
    // A late commit finds it given up.
    h.call(2, end_tx(&sent, sys_flag::TRANSACTION_COMMIT, false));
    assert!(bodies(&h, "TopicA", 1).is_empty());
}

#[test]
fn checks_count_without_a_producer_and_state_survives_restarts() {
    let mut h = Harness::new(tx_config(15));
    let committed = send_half(&mut h, 1, "TopicA", b"a", "U1");
    let rolled = send_half(&mut h, 1, "TopicA", b"b", "U2");
    let open = send_half(&mut h, 1, "TopicA", b"c", "U3");
    h.call(1, end_tx(&committed, sys_flag::TRANSACTION_COMMIT, false));
    h.call(1, end_tx(&rolled, sys_flag::TRANSACTION_ROLLBACK, false));
    // No producer is connected: the check counts (as in RocketMQ) but goes nowhere.
    assert!(checks(&step(&mut h, T0 + TIMEOUT_MS)).is_empty());
    assert_eq!(h.broker.pending_transactions(), vec![(2, 1)]);
    h.now_ms = T0 + TIMEOUT_MS + 100;
    h.broker.shutdown(h.now_ms);
    let outputs = h.drain();
    answer_syncs(&mut h, outputs);
    let storage = h.broker.store().storage().clone();
    let saved = storage.read_all(TRANSACTION_OFFSET_PATH).unwrap().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(json["halfOffset"], 2, "{json}");

    let mut h = Harness::with_storage(tx_config(15), storage, T0 + TIMEOUT_MS + 200);
    assert_eq!(h.broker.pending_transactions(), vec![(2, 1)]);
    h.call(2, producer_heartbeat("p1"));
    assert!(checks(&step(&mut h, T0 + TIMEOUT_MS + INTERVAL_MS - 1)).is_empty());
    let found = checks(&step(&mut h, T0 + TIMEOUT_MS + INTERVAL_MS));
    assert_eq!(found.len(), 1);
    let header = CheckTransactionStateRequestHeader::parse(&found[0].1).unwrap();
    assert_eq!(header.tran_state_table_offset, open.queue_offset);
    h.call(2, answer_check(&found[0].1, sys_flag::TRANSACTION_COMMIT));
    assert_eq!(bodies(&h, "TopicA", 1), ["a", "c"]);

    // A process crash (written bytes kept, nothing persisted since): nothing is checked or
    // committed again.
    let storage = h.broker.store().storage().clone();
    let mut h = Harness::with_storage(tx_config(15), storage, T0 + 30_000);
    assert!(h.broker.pending_transactions().is_empty());
    h.call(2, producer_heartbeat("p1"));
    assert!(checks(&step(&mut h, T0 + 90_000)).is_empty());
    assert_eq!(bodies(&h, "TopicA", 1), ["a", "c"]);
}

#[test]
fn progress_is_persisted_only_once_durable_and_a_power_loss_checks_again() {
    let mut h = Harness::new(tx_config(15));
    let sent = send_half(&mut h, 1, "TopicA", b"a", "U1");
    // Everything so far durable.
    let sync = h.broker.store().sync_request().unwrap();
    answer_syncs(&mut h, vec![BrokerOutput::Sync(sync)]);
    h.call(1, end_tx(&sent, sys_flag::TRANSACTION_COMMIT, false));
    // The commit and its op are not synced: the progress file must not claim them.
    let _unanswered = h.advance_to(T0 + 10_000);
    assert_eq!(
        h.broker
            .store()
            .storage()
            .read_all(TRANSACTION_OFFSET_PATH)
            .unwrap(),
        None
    );
    let mut storage = h.broker.store().storage().clone();
    storage.power_loss(PowerLoss::DropUnsynced, &mut crate::rng::SeededRng::new(3));
    let mut h = Harness::with_storage(tx_config(15), storage, T0 + 11_000);
    assert!(bodies(&h, "TopicA", 1).is_empty(), "the commit was lost");
    assert_eq!(
        h.broker.pending_transactions(),
        vec![(0, 0)],
        "not forgotten"
    );
    h.call(2, producer_heartbeat("p1"));
    let found = checks(&step(&mut h, T0 + 11_000));
    assert_eq!(found.len(), 1, "checked again");
    h.call(2, answer_check(&found[0].1, sys_flag::TRANSACTION_COMMIT));
    assert_eq!(bodies(&h, "TopicA", 1), ["a"]);
    // Once durable, the file records it.
    step(&mut h, T0 + 20_000);
    step(&mut h, T0 + 30_000);
    let saved = h
        .broker
        .store()
        .storage()
        .read_all(TRANSACTION_OFFSET_PATH)
        .unwrap()
        .expect("written once durable");
    let json: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(json["halfOffset"], 2, "{json}");
}

#[test]
fn a_batch_cannot_be_transactional() {
    let mut h = Harness::new(tx_config(15));
    let mut cmd = send_request(request::SEND_BATCH_MESSAGE, "TopicA", 0, b"", "");
    cmd.ext_fields
        .insert("f".into(), sys_flag::TRANSACTION_PREPARED.to_string());
    assert_eq!(h.call(1, cmd).code, response::MESSAGE_ILLEGAL);
}

#[test]
fn a_committed_timer_message_waits_for_its_time() {
    let mut h = Harness::new(tx_config(15));
    let due_ms = T0 + 10_000;
    let due = due_ms.to_string();
    let mut cmd = send_request(
        request::SEND_MESSAGE_V2,
        "TopicA",
        1,
        b"later",
        &props(&[
            ("WAIT", "true"),
            (keys::TRAN_MSG, "true"),
            (keys::PGROUP, "PG"),
            (keys::UNIQ_KEY, "U1"),
            (crate::broker::timer::TIMER_DELIVER_MS, &due),
        ]),
    );
    cmd.ext_fields
        .insert("f".into(), sys_flag::TRANSACTION_PREPARED.to_string());
    let resp = h.call(1, cmd);
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let (_, offset) = decode_offset_msg_id(resp.ext("msgId").unwrap()).unwrap();
    let sent = Sent {
        queue_offset: resp.ext("queueOffset").unwrap().parse().unwrap(),
        commitlog_offset: offset as i64,
        msg_id: "U1".into(),
    };
    let resp = h.call(1, end_tx(&sent, sys_flag::TRANSACTION_COMMIT, false));
    assert_eq!(resp.code, response::SUCCESS);
    assert!(
        records(&h, "TopicA", 1).is_empty(),
        "the commit enters the timer, not the topic"
    );
    step(&mut h, due_ms - 1_000);
    assert!(records(&h, "TopicA", 1).is_empty(), "never early");
    step(&mut h, due_ms + 1_000);
    assert_eq!(bodies(&h, "TopicA", 1), ["later"]);
}
