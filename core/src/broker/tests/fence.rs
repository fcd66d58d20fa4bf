//! The recovery fence: after a power loss took the tail of a queue, positions from before the
//! restart (consumers' pull offsets, committed offsets, the broker's own readers' progress)
//! never make anyone skip the messages stored at those offsets again.

use super::*;
use crate::broker::fence::{FENCE_RETIRE_MS, RECOVERY_FENCE_PATH};
use crate::broker::schedule::{DELAY_OFFSET_PATH, SCHEDULE_TOPIC};
use crate::broker::timer::checkpoint::{TimerCheckpoint, TIMER_CHECKPOINT_PATH};
use crate::broker::timer::{TimerConfig, TIMER_DELAY_SEC, TIMER_TOPIC};
use crate::broker::transaction::{TRANSACTION_OFFSET_PATH, TRANS_HALF_TOPIC};
use crate::message::{keys, sys_flag};
use crate::store::segment::FaultOp;
use crate::store::{PowerLoss, StorageError};

const PULL_FLAGS: i32 = pull_sys_flag::SUBSCRIPTION;

/// The storage as a power cut leaves it: nothing un-synced survives.
fn power_cut(h: &Harness) -> MemStorage {
    let mut storage = h.broker.store().storage().clone();
    storage.power_loss(PowerLoss::DropUnsynced, &mut crate::rng::SeededRng::new(1));
    storage
}

/// The storage as a process crash leaves it: everything written survives.
fn process_crash(h: &Harness) -> MemStorage {
    h.broker.store().storage().clone()
}

fn send(h: &mut Harness, topic: &str, body: &str) {
    let resp = h.call(1, send_v2(topic, 0, body.as_bytes(), "t"));
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
}

fn pull(h: &mut Harness, conn: u64, group: &str, offset: i64) -> RemotingCommand {
    h.call(
        conn,
        pull_request(group, "TopicA", 0, offset, PULL_FLAGS, Some("*")),
    )
}

fn pull_committing(h: &mut Harness, group: &str, offset: i64, commit: i64) -> RemotingCommand {
    let flags = PULL_FLAGS | pull_sys_flag::COMMIT_OFFSET;
    h.call(
        2,
        pull_request(group, "TopicA", 0, offset, flags, Some("*")).with_ext("commitOffset", commit),
    )
}

fn commit(h: &mut Harness, group: &str, offset: i64) {
    let update = RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", "TopicA")
        .with_ext("queueId", 0)
        .with_ext("commitOffset", offset);
    assert_eq!(h.call(2, update).code, response::SUCCESS);
}

fn pulled_bodies(resp: &RemotingCommand) -> Vec<String> {
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    decode_records(&resp.body)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

fn next_begin(resp: &RemotingCommand) -> Option<i64> {
    resp.ext("nextBeginOffset").and_then(|v| v.parse().ok())
}

/// Three durable messages, three more lost with the power; group G1 had pulled all six and
/// committed 5 (the offsets table is written whole and durably, so it survives).
fn queue_cut_behind_a_consumer() -> MemStorage {
    queue_cut_behind_consumers(|_| {})
}

/// [`queue_cut_behind_a_consumer`], with `before` run on the broker before the cut.
fn queue_cut_behind_consumers(before: impl FnOnce(&mut Harness)) -> MemStorage {
    let mut h = Harness::new(test_config());
    before(&mut h);
    for body in ["d0", "d1", "d2"] {
        send(&mut h, "TopicA", body);
    }
    sync_all(&mut h);
    for body in ["u3", "u4", "u5"] {
        send(&mut h, "TopicA", body);
    }
    assert_eq!(pulled_bodies(&pull(&mut h, 2, "G1", 0)).len(), 6);
    pull_committing(&mut h, "G1", 6, 5);
    assert_eq!(h.broker.consumer_offset("TopicA", "G1", 0), Some(5));
    // The offsets are persisted; the flush this period asks for never completes.
    h.advance_to(T0 + OFFSET_PERSIST_INTERVAL_MS);
    power_cut(&h)
}

#[test]
fn a_stale_pull_after_a_power_loss_restarts_at_the_recovered_end() {
    // Goal: a consumer whose position is beyond what recovery kept is sent back to the
    // recovered end, even once new messages have raised the queue past its position, and
    // receives every new message; commits beyond the end are clamped until it has read there.
    let storage = queue_cut_behind_a_consumer();
    let mut h = Harness::with_storage(test_config(), storage, T0 + 10_000);
    assert_eq!(h.broker.store().max_offset("TopicA", 0).0, 3);
    assert_eq!(h.broker.recovered_max_offset("TopicA", 0), Some(3));
    assert_eq!(
        h.broker.consumer_offset("TopicA", "G1", 0),
        Some(3),
        "the committed offset is lowered to the recovered end"
    );
    let saved = h
        .broker
        .store()
        .storage()
        .read_all("config/consumerOffsets.json")
        .unwrap()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(
        json["offsetTable"]["TopicA@G1"]["0"], 3,
        "and written at once"
    );

    for body in ["n3", "n4", "n5", "n6"] {
        send(&mut h, "TopicA", body);
    }
    // Before the group reads at or below 3, a commit of 5 is taken as 3.
    commit(&mut h, "G1", 5);
    assert_eq!(h.broker.consumer_offset("TopicA", "G1", 0), Some(3));
    let moved = pull_committing(&mut h, "G1", 5, 5);
    assert_eq!(moved.code, response::PULL_OFFSET_MOVED, "{moved:?}");
    assert_eq!(next_begin(&moved), Some(3));
    assert_eq!(h.broker.consumer_offset("TopicA", "G1", 0), Some(3));
    // Another group that never went past the end is not concerned.
    assert_eq!(
        pulled_bodies(&pull(&mut h, 3, "G2", 1)),
        ["d1", "d2", "n3", "n4", "n5", "n6"]
    );

    assert_eq!(
        pulled_bodies(&pull(&mut h, 2, "G1", 3)),
        ["n3", "n4", "n5", "n6"]
    );
    // Passed: its positions are trusted from now on.
    assert_eq!(pulled_bodies(&pull(&mut h, 2, "G1", 5)), ["n5", "n6"]);
    commit(&mut h, "G1", 5);
    assert_eq!(h.broker.consumer_offset("TopicA", "G1", 0), Some(5));
}

#[test]
fn a_long_poll_at_the_recovered_end_passes_the_fence() {
    let storage = queue_cut_behind_a_consumer();
    let mut h = Harness::with_storage(test_config(), storage, T0 + 10_000);
    let flags = PULL_FLAGS | pull_sys_flag::SUSPEND;
    let held = h.request(2, pull_request("G1", "TopicA", 0, 3, flags, Some("*")));
    assert!(held.is_empty(), "held at the end: {held:?}");
    let out = h.request(1, send_v2("TopicA", 0, b"n3", "t"));
    let woken = responses_on(&out, 2);
    assert_eq!(pulled_bodies(&woken[0]), ["n3"]);
    send(&mut h, "TopicA", "n4");
    send(&mut h, "TopicA", "n5");
    assert_eq!(pulled_bodies(&pull(&mut h, 2, "G1", 4)), ["n4", "n5"]);
}

#[test]
fn a_queue_recovered_empty_sends_stale_positions_to_zero() {
    let mut h = Harness::new(test_config());
    // The group exists before the cut: it may hold positions from then.
    assert_eq!(
        h.call(2, heartbeat("c1", "G1", "TopicA", "*")).code,
        response::SUCCESS
    );
    send(&mut h, "TopicA", "lost0");
    send(&mut h, "TopicA", "lost1");
    // The topic table is written at once; the messages never reach the disk.
    let storage = power_cut(&h);
    let mut h = Harness::with_storage(test_config(), storage, T0 + 1_000);
    assert_eq!(h.broker.store().max_offset("TopicA", 0).0, 0);
    for body in ["n0", "n1", "n2"] {
        send(&mut h, "TopicA", body);
    }
    let moved = pull(&mut h, 2, "G1", 2);
    assert_eq!(moved.code, response::PULL_OFFSET_MOVED);
    assert_eq!(next_begin(&moved), Some(0));
    assert_eq!(pulled_bodies(&pull(&mut h, 2, "G1", 0)), ["n0", "n1", "n2"]);
}

#[test]
fn a_broadcasting_group_passes_per_consumer() {
    // Each consumer of a broadcasting group keeps its own position: one consumer reading from
    // the recovered end proves nothing about another's.
    let broadcasting_heartbeat = |client: &str| {
        let mut hb = heartbeat(client, "GB", "TopicA", "*");
        let body: serde_json::Value = serde_json::from_slice(&hb.body).unwrap();
        let text = serde_json::to_string(&body)
            .unwrap()
            .replace("CLUSTERING", "BROADCASTING");
        hb.body = Bytes::from(text);
        hb
    };
    // GB's consumers were there before the cut, and come back after it.
    let storage = queue_cut_behind_consumers(|h| {
        assert_eq!(
            h.call(4, broadcasting_heartbeat("c4")).code,
            response::SUCCESS
        );
    });
    let mut h = Harness::with_storage(test_config(), storage, T0 + 10_000);
    for (conn, client) in [(2, "c2"), (3, "c3")] {
        assert_eq!(
            h.call(conn, broadcasting_heartbeat(client)).code,
            response::SUCCESS
        );
    }
    for body in ["n3", "n4", "n5", "n6"] {
        send(&mut h, "TopicA", body);
    }
    assert_eq!(pulled_bodies(&pull(&mut h, 2, "GB", 3)).len(), 4);
    let other = pull(&mut h, 3, "GB", 5);
    assert_eq!(other.code, response::PULL_OFFSET_MOVED);
    assert_eq!(next_begin(&other), Some(3));
    assert_eq!(pulled_bodies(&pull(&mut h, 2, "GB", 5)), ["n5", "n6"]);
}

#[test]
fn a_reset_by_the_broker_passes_the_fence() {
    let storage = queue_cut_behind_a_consumer();
    let mut config = test_config();
    // Queues the group never committed can be reset too.
    config.use_server_side_reset_offset = true;
    let mut h = Harness::with_storage(config, storage, T0 + 10_000);
    assert_eq!(
        h.call(2, heartbeat("c2", "G1", "TopicA", "*")).code,
        response::SUCCESS
    );
    for body in ["n3", "n4", "n5", "n6"] {
        send(&mut h, "TopicA", body);
    }
    let reset = RemotingCommand::request(request::INVOKE_BROKER_TO_RESET_OFFSET)
        .with_ext("topic", "TopicA")
        .with_ext("group", "G1")
        .with_ext("timestamp", -1)
        .with_ext("isForce", true);
    assert_eq!(h.call(1, reset).code, response::SUCCESS);
    assert_eq!(h.broker.consumer_offset("TopicA", "G1", 0), Some(7));
    send(&mut h, "TopicA", "n7");
    assert_eq!(pulled_bodies(&pull(&mut h, 2, "G1", 7)), ["n7"]);
}

#[test]
fn a_clean_restart_changes_nothing_for_consumers() {
    let mut h = Harness::new(test_config());
    for i in 0..6 {
        send(&mut h, "TopicA", &format!("m{i}"));
    }
    assert_eq!(pulled_bodies(&pull(&mut h, 2, "G1", 0)).len(), 6);
    pull_committing(&mut h, "G1", 6, 4);
    h.broker.shutdown(h.now_ms);
    let out = h.drain();
    answer_syncs(&mut h, out);
    h.broker.store_mut().close_inline().unwrap();
    let storage = process_crash(&h);

    let mut h = Harness::with_storage(test_config(), storage, T0 + 1_000);
    // Nothing can have been lost: no fence at all, so even a position taken from the max
    // offset after the restart (CONSUME_FROM_LAST_OFFSET) is served at once.
    assert_eq!(h.broker.recovered_max_offset("TopicA", 0), None);
    assert_eq!(h.broker.consumer_offset("TopicA", "G1", 0), Some(4));
    send(&mut h, "TopicA", "m6");
    // Positions at or below the end, for this group and a newcomer, are served as before.
    assert_eq!(pulled_bodies(&pull(&mut h, 2, "G1", 5)), ["m5", "m6"]);
    assert_eq!(pulled_bodies(&pull(&mut h, 3, "G2", 6)), ["m6"]);
    assert_eq!(pull(&mut h, 2, "G3", 7).code, response::PULL_NOT_FOUND);
    send(&mut h, "TopicA", "m7");
    assert_eq!(pulled_bodies(&pull(&mut h, 3, "G4", 7)), ["m7"]);
    commit(&mut h, "G1", 7);
    assert_eq!(h.broker.consumer_offset("TopicA", "G1", 0), Some(7));
}

fn delayed(body: &str) -> RemotingCommand {
    send_request(
        request::SEND_MESSAGE_V2,
        "TopicA",
        0,
        body.as_bytes(),
        &props(&[("TAGS", "t"), ("WAIT", "true"), (keys::DELAY, "1")]),
    )
}

#[test]
fn delayed_messages_sent_after_a_cut_schedule_queue_are_delivered_across_crashes() {
    // Goal: delayOffset.json ahead of what recovery kept of SCHEDULE_TOPIC_XXXX never makes
    // the schedule skip the delayed messages stored at those offsets after the restart, even
    // when the process crashes again before the offsets' next periodic write.
    let mut h = Harness::new(test_config());
    h.call(1, delayed("old"));
    sync_all(&mut h);
    step(&mut h, T0 + 1_000);
    assert_eq!(bodies(&h, "TopicA", 0), ["old"]);
    let mut storage = power_cut(&h);
    // Level 1 had delivered up to offset 4 before the power went.
    storage
        .replace(DELAY_OFFSET_PATH, br#"{"offsetTable":{"1":4}}"#)
        .unwrap();

    let mut h = Harness::with_storage(test_config(), storage, T0 + 2_000);
    assert_eq!(h.broker.store().max_offset(SCHEDULE_TOPIC, 0).0, 1);
    assert_eq!(h.broker.delay_offset(1), 1);
    for body in ["n1", "n2", "n3"] {
        assert_eq!(h.call(1, delayed(body)).code, response::SUCCESS);
    }
    sync_all(&mut h);
    // The process dies before the delay is up and before the offsets' periodic write.
    let storage = process_crash(&h);

    let mut h = Harness::with_storage(test_config(), storage, T0 + 2_100);
    assert_eq!(h.broker.store().max_offset(SCHEDULE_TOPIC, 0).0, 4);
    step(&mut h, T0 + 2_100);
    step(&mut h, T0 + 4_000);
    let delivered = bodies(&h, "TopicA", 0);
    for body in ["n1", "n2", "n3"] {
        assert!(delivered.iter().any(|b| b == body), "{delivered:?}");
    }
}

fn timer_config() -> BrokerConfig {
    let mut config = test_config();
    config.timer = TimerConfig {
        max_delay_sec: 3_600,
        log_segment_bytes: 52 * 64,
        ..TimerConfig::default()
    };
    config
}

fn timed(body: &str, sec: &str) -> RemotingCommand {
    send_request(
        request::SEND_MESSAGE_V2,
        "TopicA",
        0,
        body.as_bytes(),
        &props(&[("TAGS", "t"), ("WAIT", "true"), (TIMER_DELAY_SEC, sec)]),
    )
}

/// A power cut after which the timer checkpoint says queue offsets up to 5 were entered,
/// ahead of what the cut left of the timer queue.
fn power_cut_with_timer_ahead(h: &Harness, cp: TimerCheckpoint) -> MemStorage {
    let mut storage = power_cut(h);
    let ahead = TimerCheckpoint {
        last_timer_queue_offset: 5,
        master_timer_queue_offset: 5,
        ..cp
    };
    storage
        .replace(TIMER_CHECKPOINT_PATH, &ahead.encode())
        .unwrap();
    storage
}

#[test]
fn timer_messages_sent_after_a_cut_timer_queue_are_delivered_across_crashes() {
    // Goal: a timercheck counting more of rmq_sys_wheel_timer than recovery kept never makes the
    // timer skip the timer messages stored at those queue offsets after the restart.
    let mut h = Harness::new(timer_config());
    assert_eq!(h.call(1, timed("old", "1")).code, response::SUCCESS);
    sync_all(&mut h);
    for at in (T0..=T0 + 3_000).step_by(100) {
        step(&mut h, at);
    }
    assert_eq!(bodies(&h, "TopicA", 0), ["old"]);
    let cp = h.broker.timer_stats().checkpoint;
    assert_eq!(cp.last_timer_queue_offset, 1);
    // The timer had entered queue offsets up to 5 before the power went.
    let storage = power_cut_with_timer_ahead(&h, cp);

    let mut h = Harness::with_storage(timer_config(), storage, T0 + 3_100);
    assert_eq!(h.broker.store().max_offset(TIMER_TOPIC, 0).0, 1);
    assert_eq!(h.broker.timer_stats().enqueued_queue_offset, 1);
    assert_eq!(h.broker.timer_stats().checkpoint.last_timer_queue_offset, 1);
    for body in ["n1", "n2"] {
        assert_eq!(h.call(1, timed(body, "2")).code, response::SUCCESS);
    }
    sync_all(&mut h);
    assert_eq!(h.broker.timer_stats().pending, 2);
    // The process dies before the next timer checkpoint.
    let storage = process_crash(&h);

    let mut h = Harness::with_storage(timer_config(), storage, T0 + 3_200);
    assert_eq!(h.broker.timer_stats().pending, 2, "both are in the wheel");
    for at in (T0 + 3_200..=T0 + 7_000).step_by(100) {
        step(&mut h, at);
    }
    let mut delivered = bodies(&h, "TopicA", 0);
    delivered.sort();
    assert_eq!(delivered, ["n1", "n2", "old"]);
}

#[test]
fn timer_messages_sent_after_a_cut_are_delivered_without_another_crash() {
    let mut h = Harness::new(timer_config());
    assert_eq!(h.call(1, timed("old", "1")).code, response::SUCCESS);
    sync_all(&mut h);
    for at in (T0..=T0 + 3_000).step_by(100) {
        step(&mut h, at);
    }
    let cp = h.broker.timer_stats().checkpoint;
    let storage = power_cut_with_timer_ahead(&h, cp);
    let mut h = Harness::with_storage(timer_config(), storage, T0 + 3_100);
    assert_eq!(h.call(1, timed("n1", "1")).code, response::SUCCESS);
    for at in (T0 + 3_100..=T0 + 6_000).step_by(100) {
        step(&mut h, at);
    }
    let mut delivered = bodies(&h, "TopicA", 0);
    delivered.sort();
    assert_eq!(delivered, ["n1", "old"]);
}

fn producer_heartbeat() -> RemotingCommand {
    let body = serde_json::json!({
        "clientID": "p1",
        "producerDataSet": [{"groupName": "PG"}, {"groupName": "CLIENT_INNER_PRODUCER"}],
        "consumerDataSet": []
    });
    RemotingCommand::request(request::HEART_BEAT)
        .with_body(Bytes::from(serde_json::to_vec(&body).unwrap()))
}

#[test]
fn half_messages_sent_after_a_cut_half_queue_are_checked_and_committed_across_crashes() {
    // Goal: transactionOffset.json ahead of what recovery kept of the half queue never makes
    // the broker forget the half messages stored at those offsets after the restart.
    let mut storage = MemStorage::default();
    storage
        .replace(TRANSACTION_OFFSET_PATH, br#"{"halfOffset":5,"opOffset":5}"#)
        .unwrap();
    let mut h = Harness::with_storage(test_config(), storage, T0);
    assert_eq!(
        h.call(1, half("TopicA", 1, b"pay", "U1")).code,
        response::SUCCESS
    );
    sync_all(&mut h);
    assert_eq!(h.broker.store().max_offset(TRANS_HALF_TOPIC, 0).0, 1);
    assert_eq!(h.broker.pending_transactions(), vec![(0, 0)]);
    // The process dies before the progress' periodic write.
    let storage = process_crash(&h);

    let mut h = Harness::with_storage(test_config(), storage, T0 + 1_000);
    assert_eq!(
        h.broker.pending_transactions(),
        vec![(0, 0)],
        "not forgotten"
    );
    h.call(2, producer_heartbeat());
    let outputs = h.advance_to(T0 + 6_000);
    let check = outputs
        .iter()
        .find_map(|o| match o {
            BrokerOutput::Send { conn, command }
                if command.code == request::CHECK_TRANSACTION_STATE =>
            {
                Some((conn.0, command.clone()))
            }
            _ => None,
        })
        .expect("the half is checked");
    assert_eq!(check.0, 2);
    let header =
        crate::remoting::headers::CheckTransactionStateRequestHeader::parse(&check.1).unwrap();
    let mut end = RemotingCommand::request(request::END_TRANSACTION);
    crate::remoting::headers::EndTransactionRequestHeader {
        producer_group: "PG".into(),
        tran_state_table_offset: header.tran_state_table_offset,
        commit_log_offset: header.commit_log_offset,
        commit_or_rollback: sys_flag::TRANSACTION_COMMIT,
        from_transaction_check: true,
        msg_id: header.msg_id.clone().unwrap(),
        transaction_id: header.transaction_id.clone(),
        topic: None,
    }
    .write_to(&mut end);
    h.call(2, end);
    assert_eq!(bodies(&h, "TopicA", 1), ["pay"]);
}

#[test]
fn a_group_that_appears_after_the_crash_is_fenced_too() {
    // The broker cannot tell a new group from one whose records did not reach the disk: a
    // group starting at the max offset after the crash is sent back to the fence and re-reads
    // what was stored since the restart. A re-delivery, never a skip.
    let storage = queue_cut_behind_a_consumer();
    let mut h = Harness::with_storage(test_config(), storage, T0 + 10_000);
    for body in ["n3", "n4", "n5"] {
        send(&mut h, "TopicA", body);
    }
    let moved = pull(&mut h, 3, "GNew", 6);
    assert_eq!(moved.code, response::PULL_OFFSET_MOVED, "{moved:?}");
    assert_eq!(next_begin(&moved), Some(3));
    assert_eq!(
        pulled_bodies(&pull(&mut h, 3, "GNew", 3)),
        ["n3", "n4", "n5"]
    );
}

#[test]
fn a_fence_not_passed_holds_across_a_second_crash_and_a_clean_restart() {
    // Goal: a consumer that does not pull between two crashes keeps its old position; the
    // second recovery may end above that position (new messages filled the queue), and only
    // the fence kept from the first crash still sends it back. Method: cut behind G1 (fence
    // 3), store n3 durably and cut again (recovered max 4 > nothing read by G1 since), then
    // close cleanly and reopen.
    let storage = queue_cut_behind_a_consumer();
    let mut h = Harness::with_storage(test_config(), storage, T0 + 10_000);
    send(&mut h, "TopicA", "n3");
    sync_all(&mut h);
    let storage = power_cut(&h);
    let mut h = Harness::with_storage(test_config(), storage, T0 + 20_000);
    assert_eq!(h.broker.recovered_max_offset("TopicA", 0), Some(4));
    send(&mut h, "TopicA", "n4");
    sync_all(&mut h);
    h.broker.shutdown(h.now_ms);
    let out = h.drain();
    answer_syncs(&mut h, out);
    h.broker.store_mut().close_inline().unwrap();
    let storage = process_crash(&h);

    let mut h = Harness::with_storage(test_config(), storage, T0 + 30_000);
    // G1 last read up to 5 before the first crash: sent back to 3, not served from 5.
    let moved = pull(&mut h, 2, "G1", 5);
    assert_eq!(moved.code, response::PULL_OFFSET_MOVED, "{moved:?}");
    assert_eq!(next_begin(&moved), Some(3));
    assert_eq!(pulled_bodies(&pull(&mut h, 2, "G1", 3)), ["n3", "n4"]);
    // That instance passed; the fence stays for the group's other instances, and is written
    // with the offsets until it retires.
    assert_eq!(pull(&mut h, 2, "G1", 5).code, response::PULL_NOT_FOUND);
    assert_eq!(pull(&mut h, 3, "G1", 5).code, response::PULL_OFFSET_MOVED);
    let fence_of_queue = |h: &Harness| {
        let saved = h
            .broker
            .store()
            .storage()
            .read_all(RECOVERY_FENCE_PATH)
            .unwrap()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&saved).unwrap();
        json["fences"]
            .as_array()
            .unwrap()
            .iter()
            // Every group's fence ("*"): G1 has no entry of its own.
            .find(|f| f["topic"] == "TopicA" && f["queueId"] == 0 && f["group"] == "*")
            .map(|f| f["offset"].as_u64().unwrap())
    };
    h.advance_to(h.now_ms + OFFSET_PERSIST_INTERVAL_MS);
    assert_eq!(fence_of_queue(&h), Some(3));
    // No bite for FENCE_RETIRE_MS: retired, and every position is served again.
    h.advance_to(h.now_ms + FENCE_RETIRE_MS + OFFSET_PERSIST_INTERVAL_MS);
    assert_eq!(fence_of_queue(&h), None);
    assert_eq!(pull(&mut h, 4, "G1", 5).code, response::PULL_NOT_FOUND);
}

#[test]
fn another_instance_of_the_group_is_fenced_until_it_reads_below_the_fence() {
    // Goal: while a group re-balances after the restart, one instance reading from the fence
    // does not make another instance's old position trusted (that instance would skip the
    // messages stored at the reused offsets). Method: instance c1 heartbeats and reads from 3;
    // instance c2 pulls at its old position 5 and commits 5.
    let storage = queue_cut_behind_a_consumer();
    let mut h = Harness::with_storage(test_config(), storage, T0 + 10_000);
    for (conn, client) in [(2, "c1"), (3, "c2")] {
        let hb = heartbeat(client, "G1", "TopicA", "*");
        assert_eq!(h.call(conn, hb).code, response::SUCCESS);
    }
    for body in ["n3", "n4", "n5", "n6"] {
        send(&mut h, "TopicA", body);
    }
    assert_eq!(pulled_bodies(&pull(&mut h, 2, "G1", 3)).len(), 4);
    let flags = PULL_FLAGS | pull_sys_flag::COMMIT_OFFSET;
    let stale = h.call(
        3,
        pull_request("G1", "TopicA", 0, 5, flags, Some("*")).with_ext("commitOffset", 5),
    );
    assert_eq!(stale.code, response::PULL_OFFSET_MOVED, "{stale:?}");
    assert_eq!(next_begin(&stale), Some(3));
    assert_eq!(h.broker.consumer_offset("TopicA", "G1", 0), Some(3));
}

/// After a cut behind G1 (fence 3): instance c1 (conn 2) heartbeats and reads n3..n5 from 3.
/// Returns the broker and c1's heartbeat.
fn instance_c1_read_past_the_fence() -> (Harness, RemotingCommand) {
    let storage = queue_cut_behind_a_consumer();
    let mut h = Harness::with_storage(test_config(), storage, T0 + 10_000);
    let c1 = heartbeat("c1", "G1", "TopicA", "*");
    assert_eq!(h.call(2, c1.clone()).code, response::SUCCESS);
    for body in ["n3", "n4", "n5"] {
        send(&mut h, "TopicA", body);
    }
    assert_eq!(pulled_bodies(&pull(&mut h, 2, "G1", 3)).len(), 3);
    (h, c1)
}

#[test]
fn an_instance_that_passed_is_bound_by_the_next_crash_only() {
    // Goal: a second crash does not send an instance that read past the first fence back to
    // it (that would re-deliver everything since); an instance that never passed it still is.
    // Method: cut behind G1 (fence 3); instance c1 reads n3..n5 from 3; everything is synced;
    // a second crash recovers up to 6.
    let (mut h, c1) = instance_c1_read_past_the_fence();
    sync_all(&mut h);
    let later = h.now_ms + OFFSET_PERSIST_INTERVAL_MS;
    step(&mut h, later);
    let storage = power_cut(&h);

    let mut h = Harness::with_storage(test_config(), storage, T0 + 30_000);
    assert_eq!(h.broker.recovered_max_offset("TopicA", 0), Some(6));
    assert_eq!(h.call(2, c1).code, response::SUCCESS);
    let c2 = heartbeat("c2", "G1", "TopicA", "*");
    assert_eq!(h.call(3, c2).code, response::SUCCESS);
    // c1's position 6 is its own: served (nothing new yet).
    assert_eq!(pull(&mut h, 2, "G1", 6).code, response::PULL_NOT_FOUND);
    // c2 never read past the first fence: its old position 5 goes back to 3.
    let stale = pull(&mut h, 3, "G1", 5);
    assert_eq!(stale.code, response::PULL_OFFSET_MOVED, "{stale:?}");
    assert_eq!(next_begin(&stale), Some(3));
}

#[test]
fn a_committed_offset_vouches_for_a_pass_that_never_reached_the_disk() {
    // Goal: if the record of an instance's pass is lost (its write failed), the group's
    // committed offset still keeps a second crash from sending the group back below it: only
    // an instance that passed can have committed above the fence. Method: as above, then drop
    // the passes from the file before the second crash.
    let (mut h, c1) = instance_c1_read_past_the_fence();
    pull_committing(&mut h, "G1", 6, 6);
    sync_all(&mut h);
    let later = h.now_ms + OFFSET_PERSIST_INTERVAL_MS;
    step(&mut h, later);
    let mut storage = power_cut(&h);
    let saved = storage.read_all(RECOVERY_FENCE_PATH).unwrap().unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(json["passed"].as_array().map(Vec::len), Some(1));
    json["passed"] = serde_json::json!([]);
    storage
        .replace(RECOVERY_FENCE_PATH, &serde_json::to_vec(&json).unwrap())
        .unwrap();

    let mut h = Harness::with_storage(test_config(), storage, T0 + 30_000);
    assert_eq!(h.call(2, c1).code, response::SUCCESS);
    assert_eq!(h.broker.consumer_offset("TopicA", "G1", 0), Some(6));
    assert_eq!(pull(&mut h, 2, "G1", 6).code, response::PULL_NOT_FOUND);
}

fn pull_topic(
    h: &mut Harness,
    conn: u64,
    group: &str,
    topic: &str,
    offset: i64,
) -> RemotingCommand {
    h.call(
        conn,
        pull_request(group, topic, 0, offset, PULL_FLAGS, Some("*")),
    )
}

/// TopicB is created while config writes fail with a full disk (its config never reaches the
/// disk), receives b0..b2 and G1 reads all three; then the power goes: the restarted broker
/// knows neither TopicB nor its queue (sim seed 80017434).
fn queue_lost_whole_behind_a_consumer() -> MemStorage {
    let mut h = Harness::new(test_config());
    send(&mut h, "TopicA", "a0");
    sync_all(&mut h);
    h.broker
        .store_mut()
        .storage_mut()
        .set_fault(FaultOp::Replace, Some(StorageError::NoSpace));
    for body in ["b0", "b1", "b2"] {
        send(&mut h, "TopicB", body);
    }
    assert_eq!(
        pulled_bodies(&pull_topic(&mut h, 2, "G1", "TopicB", 0)),
        ["b0", "b1", "b2"]
    );
    let mut storage = power_cut(&h);
    // Space is freed before the restart.
    storage.set_fault(FaultOp::Replace, None);
    assert!(
        storage
            .contents("config/topics.json")
            .is_none_or(|t| !String::from_utf8_lossy(t).contains("TopicB")),
        "the topic's config never reached the disk"
    );
    storage
}

#[test]
fn a_queue_unknown_at_a_crash_start_is_fenced_at_zero() {
    // Goal: a queue whose creation and every message went with the power recovered nothing;
    // a consumer's position on it from before the crash is sent back to 0 once the queue is
    // created again, and never skips the new messages at the reused offsets 0, 1, 2.
    let storage = queue_lost_whole_behind_a_consumer();
    let mut h = Harness::with_storage(test_config(), storage, T0 + 10_000);
    assert_eq!(h.broker.recovered_max_offset("TopicB", 0), None);
    for body in ["n0", "n1", "n2", "n3"] {
        send(&mut h, "TopicB", body);
    }
    // Before G1 reads at 0, its commit of 3 is taken as 0.
    let update = RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET)
        .with_ext("consumerGroup", "G1")
        .with_ext("topic", "TopicB")
        .with_ext("queueId", 0)
        .with_ext("commitOffset", 3);
    assert_eq!(h.call(2, update).code, response::SUCCESS);
    assert_eq!(h.broker.consumer_offset("TopicB", "G1", 0), Some(0));
    let moved = pull_topic(&mut h, 2, "G1", "TopicB", 3);
    assert_eq!(moved.code, response::PULL_OFFSET_MOVED, "{moved:?}");
    assert_eq!(next_begin(&moved), Some(0));
    assert_eq!(
        pulled_bodies(&pull_topic(&mut h, 2, "G1", "TopicB", 0)),
        ["n0", "n1", "n2", "n3"]
    );
    // A queue the start knew keeps its own fence: its recovered end, not 0.
    assert_eq!(pull(&mut h, 3, "G2", 1).code, response::PULL_NOT_FOUND);
    // The unknown queues' fence is kept across restarts until it retires, like the others.
    h.advance_to(h.now_ms + OFFSET_PERSIST_INTERVAL_MS);
    let saved = h.broker.store().storage().read_all(RECOVERY_FENCE_PATH);
    let json: serde_json::Value = serde_json::from_slice(&saved.unwrap().unwrap()).unwrap();
    assert_eq!(json["unknownQueues"]["offset"], 0);
    h.advance_to(h.now_ms + FENCE_RETIRE_MS + OFFSET_PERSIST_INTERVAL_MS);
    for body in ["c0", "c1"] {
        send(&mut h, "TopicC", body);
    }
    assert_eq!(
        pulled_bodies(&pull_topic(&mut h, 4, "G3", "TopicC", 1)),
        ["c1"]
    );
}

#[test]
fn a_queue_unknown_at_a_crash_start_and_not_read_stays_fenced_across_a_second_crash() {
    let storage = queue_lost_whole_behind_a_consumer();
    let mut h = Harness::with_storage(test_config(), storage, T0 + 10_000);
    for body in ["n0", "n1", "n2", "n3"] {
        send(&mut h, "TopicB", body);
    }
    sync_all(&mut h);
    let later = h.now_ms + OFFSET_PERSIST_INTERVAL_MS;
    step(&mut h, later);
    let storage = power_cut(&h);
    let mut h = Harness::with_storage(test_config(), storage, T0 + 30_000);
    assert_eq!(h.broker.recovered_max_offset("TopicB", 0), Some(4));
    let moved = pull_topic(&mut h, 2, "G1", "TopicB", 3);
    assert_eq!(moved.code, response::PULL_OFFSET_MOVED, "{moved:?}");
    assert_eq!(next_begin(&moved), Some(0));
}
