//! QUERY_CONSUMER_OFFSET's "new group on a young queue starts at 0" quirk and
//! INVOKE_BROKER_TO_RESET_OFFSET with its RESET_CONSUMER_CLIENT_OFFSET notifications.

use super::*;
use crate::remoting::reset_offset::{decode_offset_table, QueueKey};
use crate::store::retention::HOUR_MS;

fn query(group: &str, queue_id: i32) -> RemotingCommand {
    RemotingCommand::request(request::QUERY_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", "TopicA")
        .with_ext("queueId", queue_id)
}

fn commit(h: &mut Harness, group: &str, queue_id: i32, offset: i64) {
    let update = RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET)
        .with_ext("consumerGroup", group)
        .with_ext("topic", "TopicA")
        .with_ext("queueId", queue_id)
        .with_ext("commitOffset", offset);
    assert_eq!(h.call(1, update).code, response::SUCCESS);
}

fn reset(group: &str, timestamp_ms: i64, force: bool) -> RemotingCommand {
    RemotingCommand::request(request::INVOKE_BROKER_TO_RESET_OFFSET)
        .with_ext("topic", "TopicA")
        .with_ext("group", group)
        .with_ext("timestamp", timestamp_ms)
        .with_ext("isForce", force)
}

fn answer(resp: &RemotingCommand) -> (i32, Option<&str>) {
    (resp.code, resp.ext("offset"))
}

#[test]
fn new_group_on_a_young_queue_is_told_offset_zero() {
    // Goal: OffsetTest "CONSUME_FROM_LAST_OFFSET with a backlog still consumes all": message 0
    // is near the CommitLog's end, so a group with nothing committed is answered 0.
    let mut h = Harness::new(test_config());
    for i in 0..100 {
        h.call(1, send_v2("TopicA", 0, format!("m{i}").as_bytes(), "t"));
    }
    assert_eq!(
        answer(&h.call(1, query("New", 0))),
        (response::SUCCESS, Some("0"))
    );
    // 5.x clients may ask not to get the 0.
    let resp = h.call(1, query("New", 0).with_ext("setZeroIfNotFound", false));
    assert_eq!(resp.code, response::QUERY_NOT_FOUND);
    // An empty queue has no message 0: not found, and the client starts at max (0).
    assert_eq!(h.call(1, query("New", 1)).code, response::QUERY_NOT_FOUND);
    // A committed offset wins.
    commit(&mut h, "New", 0, 42);
    assert_eq!(
        answer(&h.call(1, query("New", 0))),
        (response::SUCCESS, Some("42"))
    );
}

#[test]
fn message_zero_far_behind_the_commitlog_end_is_on_disk() {
    // Goal: with more than accessMessageInMemoryMaxRatio of RAM written after message 0, a new
    // group is not found and CONSUME_FROM_LAST_OFFSET starts at the end.
    let mut config = test_config();
    config.total_physical_memory_bytes = 10_000;
    config.access_message_in_memory_max_ratio_percent = 40;
    let mut h = Harness::new(config);
    h.call(1, send_v2("TopicA", 0, b"first", "t"));
    assert_eq!(
        answer(&h.call(1, query("New", 0))),
        (response::SUCCESS, Some("0"))
    );
    // 4 000 bytes of budget; each record is well over 100 bytes.
    for _ in 0..40 {
        h.call(1, send_v2("TopicA", 1, &[7u8; 100], "t"));
    }
    assert_eq!(h.call(1, query("New", 0)).code, response::QUERY_NOT_FOUND);
    // Ratio 0: nothing counts as in memory.
    let mut config = test_config();
    config.access_message_in_memory_max_ratio_percent = 0;
    let mut h = Harness::new(config);
    h.call(1, send_v2("TopicA", 0, b"first", "t"));
    assert_eq!(h.call(1, query("New", 0)).code, response::QUERY_NOT_FOUND);
}

#[test]
fn queue_whose_min_offset_moved_past_zero_is_not_found() {
    let mut config = test_config();
    config.store.commitlog_segment_bytes = 2048;
    config.store.consume_queue_units_per_segment = 4;
    config.retention.file_reserved_time_ms = HOUR_MS;
    config.retention.delete_when_hours = (0..24).collect();
    let mut h = Harness::new(config);
    for i in 0..60 {
        h.call(1, send_v2("TopicA", 0, format!("m-{i:04}").as_bytes(), "t"));
    }
    h.broker.store_mut().sync_inline().expect("sync");
    h.advance_to(T0 + HOUR_MS + 20_000);
    assert!(h.broker.store().min_offset("TopicA", 0).0 > 0);
    assert_eq!(h.call(1, query("New", 0)).code, response::QUERY_NOT_FOUND);
}

/// Sends `n` messages to each of queues 0 and 1 of TopicA at `now_ms`.
fn send_at(h: &mut Harness, now_ms: u64, n: usize) {
    h.advance_to(now_ms);
    for i in 0..n {
        for q in 0..2 {
            h.call(
                1,
                send_v2("TopicA", q, format!("{now_ms}-{i}").as_bytes(), "t"),
            );
        }
    }
}

fn table_of(body: &Bytes) -> Vec<(i32, i64)> {
    decode_offset_table(body)
        .expect("offset table decodes")
        .into_iter()
        .map(|(q, o)| {
            assert_eq!(
                (q.topic.as_str(), q.broker_name.as_str()),
                ("TopicA", "broker-a")
            );
            (q.queue_id, o)
        })
        .collect()
}

#[test]
fn reset_by_timestamp_commits_notifies_every_channel_and_answers_the_table() {
    let mut h = Harness::new(test_config());
    send_at(&mut h, T0, 3);
    send_at(&mut h, T0 + 10_000, 2);
    // Two consumers of G on two connections, one of another group.
    h.call(2, heartbeat("c2", "G", "TopicA", "*"));
    h.call(3, heartbeat("c3", "G", "TopicA", "*"));
    h.call(4, heartbeat("c4", "Other", "TopicA", "*"));
    // Only 4 queues exist by default creation: commit all of them.
    let queues = h.broker.topics()["TopicA"].write_queue_nums as i32;
    for q in 0..queues {
        let end = h.broker.store().max_offset("TopicA", q).0 as i64;
        commit(&mut h, "G", q, end);
    }

    let out = h.request(1, reset("G", (T0 + 5_000) as i64, false));
    let resp = &responses_on(&out, 1)[0];
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let mut expected = vec![(0, 3), (1, 3)];
    expected.extend((2..queues).map(|q| (q, 0)));
    assert_eq!(table_of(&resp.body), expected);
    for conn in [2, 3] {
        let notes = requests_on(&out, conn);
        assert_eq!(notes.len(), 1, "{out:?}");
        let note = &notes[0];
        assert_eq!(note.code, request::RESET_CONSUMER_CLIENT_OFFSET);
        assert!(note.is_oneway());
        assert_eq!(note.ext("topic"), Some("TopicA"));
        assert_eq!(note.ext("group"), Some("G"));
        assert_eq!(
            note.ext("timestamp"),
            Some((T0 + 5_000).to_string().as_str())
        );
        assert_eq!(table_of(&note.body), expected);
    }
    assert!(requests_on(&out, 4).is_empty(), "other groups are not told");
    assert_eq!(h.broker.consumer_offset("TopicA", "G", 0), Some(3));
    assert_eq!(h.broker.consumer_offset("TopicA", "G", 1), Some(3));

    // Not forced: a target ahead of the committed offset keeps the committed one.
    let resp = h.call(1, reset("G", -1, false));
    assert_eq!(table_of(&resp.body)[..2], [(0, 3), (1, 3)]);
    // Forced: −1 is the max offset.
    let resp = h.call(1, reset("G", -1, true));
    assert_eq!(table_of(&resp.body)[..2], [(0, 5), (1, 5)]);
    // Before everything: the min offset.
    let resp = h.call(1, reset("G", 0, true));
    assert_eq!(table_of(&resp.body)[..2], [(0, 0), (1, 0)]);
    assert_eq!(h.broker.consumer_offset("TopicA", "G", 1), Some(0));
}

#[test]
fn reset_refusals_match_rocketmq() {
    let mut h = Harness::new(test_config());
    send_at(&mut h, T0, 1);
    // Unknown topic.
    let resp = h.call(1, reset("G", 0, true).with_ext("topic", "NoSuchTopic"));
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert!(resp
        .remark
        .unwrap_or_default()
        .contains("no topic in this broker"));
    // A queue the group never committed: "group not exist".
    h.call(2, heartbeat("c2", "G", "TopicA", "*"));
    commit(&mut h, "G", 0, 1);
    let resp = h.call(1, reset("G", 0, true));
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    assert_eq!(
        resp.remark.as_deref(),
        Some("THe consumer group <G> not exist")
    );
    // Everything committed but nobody online.
    let mut h = Harness::new(test_config());
    send_at(&mut h, T0, 1);
    let queues = h.broker.topics()["TopicA"].write_queue_nums as i32;
    for q in 0..queues {
        commit(&mut h, "G", q, 1);
    }
    let resp = h.call(1, reset("G", 0, true));
    assert_eq!(resp.code, response::CONSUMER_NOT_ONLINE);
    assert_eq!(
        h.broker.consumer_offset("TopicA", "G", 0),
        Some(1),
        "unchanged"
    );
    // A header without a timestamp.
    let mut bad = reset("G", 0, true);
    bad.ext_fields.remove("timestamp");
    assert_eq!(h.call(1, bad).code, response::SYSTEM_ERROR);
}

#[test]
fn server_side_reset_works_offline_and_per_queue() {
    let mut config = test_config();
    config.use_server_side_reset_offset = true;
    let mut h = Harness::new(config);
    send_at(&mut h, T0, 4);
    let resp = h.call(1, reset("G", 0, false));
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(table_of(&resp.body)[..2], [(0, 0), (1, 0)]);
    assert_eq!(h.broker.consumer_offset("TopicA", "G", 1), Some(0));
    let resp = h.call(
        1,
        reset("G", -1, true)
            .with_ext("queueId", 1)
            .with_ext("offset", 2),
    );
    assert_eq!(
        decode_offset_table(&resp.body).unwrap(),
        vec![(
            QueueKey {
                broker_name: "broker-a".into(),
                queue_id: 1,
                topic: "TopicA".into()
            },
            2
        )]
    );
    assert_eq!(h.broker.consumer_offset("TopicA", "G", 1), Some(2));
    assert_eq!(h.broker.consumer_offset("TopicA", "G", 0), Some(0));
}
