//! Delay levels: routing into `SCHEDULE_TOPIC_XXXX`, delivery when due (never early, in order),
//! clamping, the offsets file, restarts and crashes.

use std::cell::RefCell;

use super::*;
use crate::broker::schedule::{
    parse_message_delay_level, DEFAULT_MESSAGE_DELAY_LEVEL_MS, DELAY_OFFSET_PATH, SCHEDULE_TOPIC,
};
use crate::broker::topics::TOPICS_PATH;
use crate::message::{keys, tag_hash_code};
use crate::store::{MemStorage, PowerLoss, QueueOffset};

fn delayed(topic: &str, queue_id: i32, body: &[u8], level: &str) -> RemotingCommand {
    send_request(
        request::SEND_MESSAGE_V2,
        topic,
        queue_id,
        body,
        &props(&[("TAGS", "t"), ("WAIT", "true"), (keys::DELAY, level)]),
    )
}

/// Records of a queue, with their ConsumeQueue tags codes.
fn queue_records(h: &Harness, topic: &str, queue_id: i32) -> Vec<(MessageRecord, i64)> {
    let codes = RefCell::new(Vec::new());
    let got = h
        .broker
        .store()
        .get(topic, queue_id, QueueOffset(0), 1_000, &|code| {
            codes.borrow_mut().push(code);
            true
        })
        .unwrap();
    got.records
        .iter()
        .map(|b| MessageRecord::decode(b, true).unwrap())
        .zip(codes.into_inner())
        .collect()
}

fn bodies(h: &Harness, topic: &str, queue_id: i32) -> Vec<String> {
    queue_records(h, topic, queue_id)
        .into_iter()
        .map(|(r, _)| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

#[test]
fn default_levels_parse_from_rocketmqs_string() {
    let parsed =
        parse_message_delay_level("1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h")
            .unwrap();
    assert_eq!(parsed, DEFAULT_MESSAGE_DELAY_LEVEL_MS.to_vec());
    assert_eq!(parse_message_delay_level("2d").unwrap(), vec![172_800_000]);
    for bad in [
        "",
        "   ",
        "1x",
        "s",
        "1.5s",
        "-1s",
        "5",
        "99999999999999999999h",
    ] {
        assert!(parse_message_delay_level(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn schedule_topic_exists_with_a_queue_per_level_and_cannot_be_sent_to() {
    let mut h = Harness::new(test_config());
    let topic = h
        .broker
        .topics()
        .get(SCHEDULE_TOPIC)
        .cloned()
        .expect("exists");
    assert_eq!((topic.read_queue_nums, topic.write_queue_nums), (18, 18));
    assert_eq!(topic.perm, crate::topic::perm::READ_WRITE);
    let resp = h.call(1, send_v2(SCHEDULE_TOPIC, 0, b"x", "t"));
    assert_eq!(resp.code, response::NO_PERMISSION);
}

#[test]
fn each_level_delivers_after_its_delay_and_never_early() {
    let mut h = Harness::new(test_config());
    for level in 1..=18u32 {
        let resp = h.call(
            1,
            delayed(
                "TopicA",
                1,
                format!("m{level}").as_bytes(),
                &level.to_string(),
            ),
        );
        assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
        // Java reports the requested queue and the offset in the schedule queue.
        assert_eq!(resp.ext("queueId"), Some("1"));
        assert_eq!(resp.ext("queueOffset"), Some("0"));
        let stored = queue_records(&h, SCHEDULE_TOPIC, level as i32 - 1);
        assert_eq!(stored.len(), 1);
        let (record, tags_code) = &stored[0];
        assert_eq!(record.properties.get(keys::REAL_TOPIC), Some("TopicA"));
        assert_eq!(record.properties.get(keys::REAL_QID), Some("1"));
        assert_eq!(
            record.properties.get(keys::DELAY),
            Some(level.to_string().as_str())
        );
        let due = T0 + DEFAULT_MESSAGE_DELAY_LEVEL_MS[level as usize - 1];
        assert_eq!(*tags_code, due as i64, "the tags code is the delivery time");
    }
    assert!(bodies(&h, "TopicA", 1).is_empty());
    for level in 1..=18usize {
        let due = T0 + DEFAULT_MESSAGE_DELAY_LEVEL_MS[level - 1];
        // The broker asks to be woken no later than the next delivery.
        let wake = h.broker.poll_timeout().expect("a delivery is pending");
        assert!(wake <= due, "level {level}: woken at {wake}, due {due}");
        step(&mut h, due - 1);
        assert_eq!(
            bodies(&h, "TopicA", 1).len(),
            level - 1,
            "level {level} early"
        );
        step(&mut h, due);
        let delivered = queue_records(&h, "TopicA", 1);
        assert_eq!(
            delivered.len(),
            level,
            "level {level} not delivered when due"
        );
        let (record, tags_code) = &delivered[level - 1];
        assert_eq!(record.body.as_ref(), format!("m{level}").as_bytes());
        assert_eq!(record.store_timestamp_ms, due as i64);
        assert_eq!(record.born_timestamp_ms, (T0 - 5) as i64);
        assert_eq!(record.properties.get(keys::DELAY), None);
        assert_eq!(record.properties.get(keys::REAL_TOPIC), Some("TopicA"));
        assert_eq!(record.properties.get(keys::REAL_QID), Some("1"));
        assert_eq!(*tags_code, tag_hash_code("t"));
        assert_eq!(h.broker.delay_offset(level as u32), 1);
    }
    // Everything delivered and, after the next persist period, persisted: the schedule no
    // longer wakes the broker.
    // (The CommitLog is flushed within the thorough interval, then the next period writes.)
    step(&mut h, T0 + 7_200_000 + 20_000);
    step(&mut h, T0 + 7_200_000 + 40_000);
    assert_eq!(h.broker.schedule.deadline_ms(), None);
}

#[test]
fn a_level_delivers_in_order_and_wakes_a_held_pull() {
    let mut h = Harness::new(test_config());
    for i in 0..5u64 {
        h.now_ms = T0 + i * 100;
        let resp = h.call(1, delayed("TopicA", 0, format!("m{i}").as_bytes(), "2"));
        assert_eq!(resp.queue_offset(), i as i64);
    }
    // A consumer waits on the real queue.
    h.call(3, heartbeat("c1", "G1", "TopicA", "*"));
    let held = h.request(
        3,
        pull_request("G1", "TopicA", 0, 0, pull_sys_flag::SUSPEND, Some("*")),
    );
    assert!(responses_on(&held, 3).is_empty(), "the pull is held");
    let outputs = h.advance_to(T0 + 5_250);
    let answers = responses_on(&outputs, 3);
    assert_eq!(answers.len(), 1, "the delivery wakes the pull");
    assert_eq!(answers[0].code, response::SUCCESS);
    assert_eq!(bodies(&h, "TopicA", 0), ["m0", "m1", "m2"]);
    assert_eq!(h.broker.poll_timeout().map(|t| t <= T0 + 5_300), Some(true));
    step(&mut h, T0 + 5_400);
    assert_eq!(bodies(&h, "TopicA", 0), ["m0", "m1", "m2", "m3", "m4"]);
}

trait QueueOffsetExt {
    fn queue_offset(&self) -> i64;
}

impl QueueOffsetExt for RemotingCommand {
    fn queue_offset(&self) -> i64 {
        self.ext("queueOffset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1)
    }
}

#[test]
fn levels_above_the_highest_are_clamped() {
    let mut h = Harness::new(test_config());
    h.call(1, delayed("TopicA", 0, b"x", "99"));
    let stored = queue_records(&h, SCHEDULE_TOPIC, 17);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0.properties.get(keys::DELAY), Some("18"));

    let mut config = test_config();
    config.store.message_delay_level_ms = vec![1_000, 2_000];
    let mut h = Harness::new(config);
    let topic = &h.broker.topics()[SCHEDULE_TOPIC];
    assert_eq!(
        topic.read_queue_nums, 18,
        "never fewer queues than RocketMQ's 18"
    );
    h.call(1, delayed("TopicA", 0, b"y", "5"));
    assert_eq!(queue_records(&h, SCHEDULE_TOPIC, 1).len(), 1);
    step(&mut h, T0 + 1_999);
    assert!(bodies(&h, "TopicA", 0).is_empty());
    step(&mut h, T0 + 2_000);
    assert_eq!(bodies(&h, "TopicA", 0), ["y"]);
}

#[test]
fn level_zero_negative_or_garbage_is_not_delayed() {
    let mut h = Harness::new(test_config());
    for (i, level) in ["0", "-3", "abc", ""].iter().enumerate() {
        let resp = h.call(1, delayed("TopicA", 0, format!("m{i}").as_bytes(), level));
        assert_eq!(resp.code, response::SUCCESS);
        assert_eq!(resp.queue_offset(), i as i64);
    }
    assert_eq!(bodies(&h, "TopicA", 0), ["m0", "m1", "m2", "m3"]);
    assert!(h.broker.store().max_offset(SCHEDULE_TOPIC, 0).0 == 0);
}

#[test]
fn restart_mid_delay_resumes_without_redelivery() {
    let mut h = Harness::new(test_config());
    h.call(1, delayed("TopicA", 0, b"a", "1"));
    h.call(1, delayed("TopicA", 0, b"b", "2"));
    step(&mut h, T0 + 1_000);
    assert_eq!(bodies(&h, "TopicA", 0), ["a"]);
    h.now_ms = T0 + 1_500;
    h.broker.shutdown(h.now_ms);
    let outputs = h.drain();
    answer_syncs(&mut h, outputs);
    let storage = h.broker.store().storage().clone();
    let saved = storage
        .read_all(DELAY_OFFSET_PATH)
        .unwrap()
        .expect("written");
    let json: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(json["offsetTable"]["1"], 1);
    assert_eq!(json["offsetTable"]["2"], 0);

    let mut h = Harness::with_storage(test_config(), storage, T0 + 3_000);
    assert_eq!(h.broker.delay_offset(1), 1);
    step(&mut h, T0 + 4_999);
    assert_eq!(
        bodies(&h, "TopicA", 0),
        ["a"],
        "no re-delivery, nothing early"
    );
    step(&mut h, T0 + 5_000);
    assert_eq!(bodies(&h, "TopicA", 0), ["a", "b"]);
}

#[test]
fn a_delivery_to_a_topic_whose_creation_was_lost_gives_it_a_config_again() {
    // Goal (simulator seed 60002930): a delayed send auto-created its topic, but the creation
    // never reached the disk before the broker stopped; the message itself waited in
    // SCHEDULE_TOPIC_XXXX, so the next start found no queue of the topic to restore. When the
    // delay ends the message goes into its topic, which must then get a config (written and
    // registered), or no route ever leads a consumer to it. Method: drop the topic from the
    // written table, restart, let the delay end.
    let mut h = Harness::new(test_config());
    h.call(1, delayed("TopicA", 0, b"a", "1"));
    let mut storage = h.broker.store().storage().clone();
    let table = storage
        .read_all(TOPICS_PATH)
        .unwrap()
        .expect("topics written");
    let mut json: serde_json::Value = serde_json::from_slice(&table).unwrap();
    json["topicConfigTable"]
        .as_object_mut()
        .expect("a topic table")
        .remove("TopicA")
        .expect("TopicA was created");
    storage
        .replace(TOPICS_PATH, &serde_json::to_vec(&json).unwrap())
        .unwrap();

    let mut h = Harness::with_storage(test_config(), storage, T0 + 100);
    assert!(
        !h.broker.topics().contains_key("TopicA"),
        "nothing to restore it from"
    );
    step(&mut h, T0 + 1_000);
    assert_eq!(bodies(&h, "TopicA", 0), ["a"]);
    let config = h.broker.topics().get("TopicA").expect("a config again");
    assert_eq!(
        config.write_queue_nums,
        test_config().default_topic_queue_nums
    );
    let table = h
        .broker
        .store()
        .storage()
        .read_all(TOPICS_PATH)
        .unwrap()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&table).unwrap();
    assert!(
        json["topicConfigTable"].get("TopicA").is_some(),
        "and written"
    );
}

#[test]
fn offsets_are_persisted_periodically_once_durable() {
    let mut h = Harness::new(test_config());
    h.call(1, delayed("TopicA", 0, b"a", "1"));
    // Delivered, but the syncs go unanswered yet: the re-put is not durable.
    let mut unanswered = h.advance_to(T0 + 1_000);
    unanswered.extend(h.advance_to(T0 + 10_000));
    let storage = h.broker.store().storage();
    assert_eq!(storage.read_all(DELAY_OFFSET_PATH).unwrap(), None);
    answer_syncs(&mut h, unanswered);
    step(&mut h, T0 + 10_001);
    step(&mut h, T0 + 20_000);
    let saved = h
        .broker
        .store()
        .storage()
        .read_all(DELAY_OFFSET_PATH)
        .unwrap()
        .expect("written once durable");
    let json: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(json["offsetTable"]["1"], 1);
}

#[test]
fn a_crash_redelivers_but_never_loses_or_delivers_early() {
    let mut h = Harness::new(test_config());
    h.call(1, delayed("TopicA", 0, b"a", "1"));
    h.call(1, delayed("TopicA", 0, b"b", "2"));
    // Both sends made durable, then "a" delivered but the power fails before any sync.
    let sync = h
        .broker
        .store()
        .sync_request()
        .expect("the sends wait for a sync");
    answer_syncs(&mut h, vec![BrokerOutput::Sync(sync)]);
    h.advance_to(T0 + 1_000);
    assert_eq!(bodies(&h, "TopicA", 0), ["a"]);
    let mut storage = h.broker.store().storage().clone();
    storage.power_loss(PowerLoss::DropUnsynced, &mut crate::rng::SeededRng::new(7));

    let mut h = Harness::with_storage(test_config(), storage, T0 + 2_000);
    assert!(
        bodies(&h, "TopicA", 0).is_empty(),
        "the re-put was lost with the power"
    );
    step(&mut h, T0 + 2_000);
    assert_eq!(bodies(&h, "TopicA", 0), ["a"], "delivered again");
    step(&mut h, T0 + 4_999);
    assert_eq!(bodies(&h, "TopicA", 0), ["a"], "b is not early");
    step(&mut h, T0 + 5_000);
    assert_eq!(bodies(&h, "TopicA", 0), ["a", "b"]);

    // A process crash (written bytes survive) before the offsets were persisted: delivered
    // again, at least once.
    let storage = h.broker.store().storage().clone();
    let h = Harness::with_storage(test_config(), storage, T0 + 6_000);
    let mut h = h;
    step(&mut h, T0 + 6_000);
    let after = bodies(&h, "TopicA", 0);
    assert!(after.len() >= 2 && after[..2] == ["a", "b"], "{after:?}");
}

#[test]
fn an_offsets_file_ahead_of_the_queue_is_brought_back() {
    let mut storage = MemStorage::default();
    storage
        .replace(DELAY_OFFSET_PATH, br#"{"offsetTable":{"1":7}}"#)
        .unwrap();
    let mut h = Harness::with_storage(test_config(), storage, T0);
    assert_eq!(h.broker.delay_offset(1), 0);
    h.call(1, delayed("TopicA", 0, b"a", "1"));
    step(&mut h, T0 + 1_000);
    assert_eq!(bodies(&h, "TopicA", 0), ["a"]);
}

#[test]
fn offsets_file_round_trips_and_reads_javas_unquoted_keys() {
    let mut h = Harness::new(test_config());
    for level in ["1", "1", "3"] {
        h.call(1, delayed("TopicA", 0, b"x", level));
    }
    step(&mut h, T0 + 10_000);
    step(&mut h, T0 + 20_000);
    let storage = h.broker.store().storage().clone();
    let saved = storage.read_all(DELAY_OFFSET_PATH).unwrap().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    let table = json["offsetTable"].as_object().unwrap();
    assert_eq!(table.len(), 18, "every level: {json}");
    assert_eq!(
        (&table["1"], &table["2"], &table["3"]),
        (&2.into(), &0.into(), &1.into())
    );
    let h = Harness::with_storage(test_config(), storage, T0 + 30_000);
    assert_eq!(
        (
            h.broker.delay_offset(1),
            h.broker.delay_offset(2),
            h.broker.delay_offset(3)
        ),
        (2, 0, 1)
    );

    // What a Java broker writes.
    let mut storage = MemStorage::default();
    let java = "{\n\t\"offsetTable\":{2:0,1:0,3:0},\n\t\"dataVersion\":{\"counter\":1,\"stateVersion\":0,\"timestamp\":1}\n}";
    storage.replace(DELAY_OFFSET_PATH, java.as_bytes()).unwrap();
    let h = Harness::with_storage(test_config(), storage, T0);
    assert_eq!(h.broker.delay_offset(1), 0);

    // A corrupt file stops the broker rather than re-delivering everything.
    let mut storage = MemStorage::default();
    storage
        .replace(DELAY_OFFSET_PATH, b"{\"offsetTable\":")
        .unwrap();
    match Broker::new(test_config(), storage, T0) {
        Err(BrokerError::CorruptConfig { path, .. }) => assert_eq!(path, DELAY_OFFSET_PATH),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a corrupt delayOffset.json was accepted"),
    }
}

#[test]
fn shutdown_writes_offsets_once_the_final_sync_is_done() {
    let mut h = Harness::new(test_config());
    h.call(1, delayed("TopicA", 0, b"a", "1"));
    let mut unanswered = h.advance_to(T0 + 1_000);
    assert_eq!(bodies(&h, "TopicA", 0), ["a"]);
    h.broker.shutdown(T0 + 1_000);
    unanswered.extend(h.drain());
    let read = |h: &Harness| {
        h.broker
            .store()
            .storage()
            .read_all(DELAY_OFFSET_PATH)
            .unwrap()
    };
    assert_eq!(read(&h), None, "the re-put is not durable yet");
    answer_syncs(&mut h, unanswered);
    let saved = read(&h).expect("written after the final sync");
    let json: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(json["offsetTable"]["1"], 1);
}

#[test]
fn deliveries_wait_while_the_store_cannot_make_data_durable() {
    let mut h = Harness::new(test_config());
    h.call(1, delayed("TopicA", 0, b"a", "1"));
    h.broker.handle_sync_failed(T0, "the disk went away");
    h.advance_to(T0 + 1_000);
    assert!(bodies(&h, "TopicA", 0).is_empty());
    let wake = h.broker.schedule.deadline_ms().expect("still pending");
    assert!(wake > T0 + 1_000, "no busy polling: woken at {wake}");
}

/// The retry ladder of CONSUMER_SEND_MSG_BACK goes through the same routing: the first retry
/// (level 3) waits 10 s in the schedule topic, then arrives in `%RETRY%<group>`.
#[test]
fn send_back_retries_wait_for_their_delay_level() {
    let mut h = Harness::new(test_config());
    let sent = h.call(1, send_v2("TopicA", 0, b"payload", "t"));
    let msg_id = sent.ext("msgId").unwrap().to_owned();
    let (_, offset) = crate::message::decode_offset_msg_id(&msg_id).unwrap();
    h.now_ms = T0 + 1_000;
    let reply = h.call(
        2,
        RemotingCommand::request(request::CONSUMER_SEND_MSG_BACK)
            .with_ext("offset", offset as i64)
            .with_ext("group", "G")
            .with_ext("delayLevel", 0)
            .with_ext("originMsgId", msg_id.as_str())
            .with_ext("originTopic", "TopicA")
            .with_ext("unitMode", false),
    );
    assert_eq!(reply.code, response::SUCCESS, "{:?}", reply.remark);
    assert_eq!(queue_records(&h, SCHEDULE_TOPIC, 2).len(), 1, "level 3");
    step(&mut h, T0 + 10_999);
    assert!(bodies(&h, "%RETRY%G", 0).is_empty(), "not before 10 s");
    step(&mut h, T0 + 11_000);
    let retried = queue_records(&h, "%RETRY%G", 0);
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].0.body.as_ref(), b"payload");
    assert_eq!(retried[0].0.reconsume_times, 1);
    assert_eq!(retried[0].0.properties.get(keys::DELAY), None);
}

#[test]
fn a_damaged_head_waits_for_a_good_read_and_is_never_passed_over() {
    // Goal: a delayed message whose stored bytes read back wrong is neither delivered damaged
    // nor skipped: its level waits, and delivers it, then the rest in order, once it reads
    // right. Method: two level-2 (5 s) messages; every read of a body byte of the first comes
    // back flipped until the fault is cleared.
    let mut h = Harness::new(test_config());
    for i in 0..2u64 {
        h.now_ms = T0 + i * 100;
        h.call(1, delayed("TopicA", 0, format!("late-{i}").as_bytes(), "2"));
    }
    let (path, pos) = commitlog_position_of(&h, b"late-0");
    let pos = pos + 2;
    h.broker
        .store_mut()
        .storage_mut()
        .flip_on_read(&path, pos, 0x01);
    step(&mut h, T0 + 8_000);
    assert!(
        bodies(&h, "TopicA", 0).is_empty(),
        "nothing passes the damaged head"
    );

    h.broker
        .store_mut()
        .storage_mut()
        .flip_on_read(&path, pos, 0);
    step(&mut h, T0 + 10_000);
    assert_eq!(bodies(&h, "TopicA", 0), ["late-0", "late-1"]);
}
