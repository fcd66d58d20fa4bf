//! POP consumers in the world: a group shares the topic's queues, unacknowledged messages come
//! back through the POP retry topic after their invisible time, and a seed replays exactly.

use std::collections::BTreeSet;

use super::*;

fn action(json: &str) -> Action {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn run_script(
    seed: u64,
    scenario: &str,
    script: &[(u64, &str)],
    tail_ms: u64,
) -> (Vec<Event>, Cluster) {
    let mut cluster = Cluster::new(seed, scenario).unwrap();
    let mut events = Vec::new();
    for (at_ms, json) in script {
        let wait = at_ms - cluster.now_ms();
        events.extend(cluster.run_for(wait));
        cluster.apply(action(json)).unwrap();
    }
    events.extend(cluster.run_for(tail_ms));
    (events, cluster)
}

fn pop_group(cluster: &Cluster, name: &str) -> PopGroupView {
    cluster
        .snapshot()
        .pop_groups
        .into_iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("no POP group {name}"))
}

/// Goal: the same seed and POP actions at the same virtual times give byte-identical events
/// and snapshots; another seed another history.
#[test]
fn pop_session_replays_identically() {
    let script = [
        (1_500, r#"{"action":"add_pop_consumer","group":"pg1"}"#),
        (2_000, r#"{"action":"send","count":12,"tag":"A"}"#),
        (
            3_000,
            r#"{"action":"pop_fail_next","id":"pop-consumer-1","count":2}"#,
        ),
        (
            4_000,
            r#"{"action":"consumer_behaviour","id":"pop-consumer-2","behaviour":"slow"}"#,
        ),
        (6_000, r#"{"action":"kill_consumer","id":"pop-consumer-4"}"#),
        (8_000, r#"{"action":"stop_consumer","id":"pop-consumer-3"}"#),
    ];
    let (events_a, cluster_a) = run_script(42, "pop", &script, 10_000);
    let (events_b, cluster_b) = run_script(42, "pop", &script, 10_000);
    let json_a = serde_json::to_string(&events_a).unwrap();
    assert_eq!(json_a, serde_json::to_string(&events_b).unwrap());
    assert_eq!(
        serde_json::to_string(&cluster_a.snapshot()).unwrap(),
        serde_json::to_string(&cluster_b.snapshot()).unwrap()
    );
    for kind in ["popped", "pop_acked", "pop_expired", "pop_revived"] {
        assert!(json_a.contains(&format!(r#""kind":"{kind}""#)), "no {kind}");
    }
    let (events_c, _) = run_script(43, "pop", &script, 10_000);
    assert_ne!(json_a, serde_json::to_string(&events_c).unwrap());
}

/// Goal: a message the consumer leaves unacknowledged is hidden until its invisible time, then
/// the broker brings it back through `%RETRY%pg1+TopicTest` with reconsume times 1, and a
/// member of the group receives it again from there.
#[test]
fn unacked_message_comes_back_after_its_invisible_time() {
    let mut cluster = Cluster::new(7, "pop").unwrap();
    let events = cluster.run_for(20_000);
    let (msg_id, popped_ms, until) = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Popped {
                msg_id,
                consumer,
                reconsume_times: 0,
                will_ack: false,
                invisible_until_ms,
                ..
            } => {
                assert_eq!(consumer, "pop-consumer-3");
                Some((msg_id.clone(), e.t_ms, *invisible_until_ms))
            }
            _ => None,
        })
        .expect("the failing consumer received a message");
    assert!(
        until >= popped_ms + POP_INVISIBLE_MS - 10 && until <= popped_ms + POP_INVISIBLE_MS,
        "{popped_ms} {until}"
    );
    let expired = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::PopExpired { msg_id: m, .. } if *m == msg_id))
        .expect("expired");
    assert_eq!(expired.t_ms, until);
    let revived = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::PopRevived { msg_id: m, .. } if *m == msg_id))
        .expect("revived");
    assert!(
        revived.t_ms >= until,
        "revived at {} before {until}",
        revived.t_ms
    );
    let EventKind::PopRevived {
        topic,
        reconsume_times,
        group,
        ..
    } = &revived.kind
    else {
        unreachable!()
    };
    assert_eq!(topic, &pop_retry_topic("pg1"));
    assert_eq!(topic, "%RETRY%pg1+TopicTest");
    assert_eq!((group.as_str(), *reconsume_times), ("pg1", 1));
    // Nobody had it between popped and its invisible time; after, someone gets it again.
    assert!(!events.iter().any(|e| e.t_ms > popped_ms
        && e.t_ms < until
        && matches!(&e.kind, EventKind::Popped { msg_id: m, .. } if *m == msg_id)));
    let again = events
        .iter()
        .find(|e| {
            e.t_ms >= revived.t_ms
                && matches!(&e.kind, EventKind::Popped { msg_id: m, reconsume_times: 1, topic, .. }
                    if *m == msg_id && topic == "%RETRY%pg1+TopicTest")
        })
        .expect("received again");
    assert!(again.t_ms >= revived.t_ms);
    // The snapshot shows the retry topic's contents.
    let group = pop_group(&cluster, "pg1");
    assert_eq!(group.retry_topic, "%RETRY%pg1+TopicTest");
    assert!(group.retry_total >= 1);
    assert!(group
        .retry_messages
        .iter()
        .any(|m| m.msg_id == msg_id && m.reconsume_times == 1));
}

/// Goal: the group's consumers share the topic's queues (the broker, not a rebalance, balances
/// them): every queue is read by more than one consumer, every consumer reads several queues,
/// and the `ok` ones acknowledge what they receive.
#[test]
fn pop_consumers_share_the_queues() {
    let mut cluster = Cluster::new(3, "pop").unwrap();
    let events = cluster.run_for(20_000);
    let group = pop_group(&cluster, "pg1");
    let topic_queues: Vec<&PopQueueView> =
        group.queues.iter().filter(|q| q.topic == TOPIC).collect();
    assert_eq!(topic_queues.len(), 4);
    assert!(
        topic_queues.iter().all(|q| q.popped_by.len() >= 2),
        "{topic_queues:?}"
    );
    assert_eq!(group.consumers.len(), 3);
    for consumer in &group.consumers {
        let queues: BTreeSet<i32> = topic_queues
            .iter()
            .filter(|q| q.popped_by.contains_key(&consumer.id))
            .map(|q| q.queue_id)
            .collect();
        assert!(queues.len() >= 2, "{}: {queues:?}", consumer.id);
        assert!(consumer.in_flight.len() <= POP_MAX_HELD);
        for held in &consumer.in_flight {
            assert!(held.invisible_until_ms > cluster.now_ms());
        }
        match consumer.behaviour {
            Behaviour::Fail => assert_eq!(consumer.acked, 0),
            _ => assert!(consumer.acked + 2 >= consumer.popped, "{consumer:?}"),
        }
    }
    // Nothing is acknowledged twice, and no POP ack failed.
    let acked: Vec<(String, i32, i64)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PopAcked {
                topic,
                queue_id,
                queue_offset,
                ..
            } => Some((topic.clone(), *queue_id, *queue_offset)),
            _ => None,
        })
        .collect();
    let unique: BTreeSet<&(String, i32, i64)> = acked.iter().collect();
    assert!(acked.len() > 10);
    assert_eq!(unique.len(), acked.len());
    assert!(!events
        .iter()
        .any(|e| matches!(e.kind, EventKind::PopAckFailed { .. })));
    // The scenario has no push group.
    assert!(cluster.snapshot().groups.is_empty());
}

/// Goal: `pop_fail_next` leaves exactly that many messages unacknowledged; a stopped POP
/// consumer receives nothing more; a killed one's messages come back after their invisible
/// time.
#[test]
fn fail_next_stop_and_kill_pop_consumers() {
    let mut cluster = Cluster::new(11, "basic").unwrap();
    cluster.run_for(1_000);
    cluster
        .apply(action(r#"{"action":"add_pop_consumer","group":"pg2"}"#))
        .unwrap();
    cluster
        .apply(action(
            r#"{"action":"pop_fail_next","id":"pop-consumer-1","count":2}"#,
        ))
        .unwrap();
    let events = cluster.run_for(6_000);
    let not_acked: Vec<&Event> = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Popped {
                    will_ack: false,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(not_acked.len(), 2);
    let node = cluster
        .snapshot()
        .nodes
        .into_iter()
        .find(|n| n.id == "pop-consumer-1")
        .unwrap();
    assert_eq!(node.kind, NodeKind::PopConsumer);
    assert_eq!(node.group.as_deref(), Some("pg2"));
    // The push group g1 and the POP group pg2 read the same topic independently.
    assert!(events
        .iter()
        .any(|e| matches!(e.kind, EventKind::Consumed { .. })));

    cluster
        .apply(action(
            r#"{"action":"stop_consumer","id":"pop-consumer-1"}"#,
        ))
        .unwrap();
    cluster
        .apply(action(r#"{"action":"add_pop_consumer","group":"pg2"}"#))
        .unwrap();
    let events = cluster.run_for(3_000);
    assert!(!events.iter().any(|e| matches!(&e.kind,
        EventKind::Popped { consumer, .. } if consumer == "pop-consumer-1")));
    let stopped = pop_group(&cluster, "pg2");
    assert_eq!(stopped.consumers[0].state, "stopped");

    cluster
        .apply(action(
            r#"{"action":"consumer_behaviour","id":"pop-consumer-2","behaviour":"fail"}"#,
        ))
        .unwrap();
    let events = cluster.run_for(2_000);
    let held: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Popped {
                msg_id, will_ack, ..
            } => {
                assert!(!will_ack);
                Some(msg_id.clone())
            }
            _ => None,
        })
        .collect();
    assert!(!held.is_empty());
    cluster
        .apply(action(
            r#"{"action":"kill_consumer","id":"pop-consumer-2"}"#,
        ))
        .unwrap();
    cluster
        .apply(action(r#"{"action":"add_pop_consumer","group":"pg2"}"#))
        .unwrap();
    let events = cluster.run_for(POP_INVISIBLE_MS + 5_000);
    for msg_id in &held {
        assert!(events.iter().any(|e| matches!(&e.kind,
            EventKind::PopRevived { msg_id: m, reconsume_times: 1, .. } if m == msg_id)));
        assert!(events.iter().any(|e| matches!(&e.kind,
            EventKind::PopAcked { msg_id: m, consumer, .. }
                if m == msg_id && consumer == "pop-consumer-3")));
    }
}

/// Goal: the new actions' JSON shapes, the POP parts of the snapshot, and bad POP actions are
/// errors.
#[test]
fn pop_json_contract() {
    for json in [
        r#"{"action":"add_pop_consumer","group":"pg1"}"#,
        r#"{"action":"pop_fail_next","id":"pop-consumer-1","count":3}"#,
    ] {
        let back = serde_json::to_value(action(json)).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(json).unwrap()
        );
    }
    let mut cluster = Cluster::new(1, "pop").unwrap();
    cluster.run_for(8_000);
    let snapshot = serde_json::to_value(cluster.snapshot()).unwrap();
    let group = &snapshot["pop_groups"][0];
    for key in [
        "name",
        "retry_topic",
        "consumers",
        "queues",
        "retry_messages",
        "retry_total",
    ] {
        assert!(!group[key].is_null(), "POP group lacks {key}");
    }
    let consumer = &group["consumers"][0];
    for key in [
        "id",
        "state",
        "behaviour",
        "fail_next",
        "in_flight",
        "popped",
        "acked",
        "expired",
    ] {
        assert!(!consumer[key].is_null(), "POP consumer lacks {key}");
    }
    let node = snapshot["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "pop-consumer-1")
        .unwrap();
    assert_eq!(node["kind"], "pop_consumer");
    assert_eq!(node["behaviour"], "ok");
    // Older snapshots (no `pop_groups`) still parse.
    let mut old = serde_json::to_value(Cluster::new(1, "basic").unwrap().snapshot()).unwrap();
    old.as_object_mut().unwrap().remove("pop_groups");
    let parsed: Snapshot = serde_json::from_value(old).unwrap();
    assert!(parsed.pop_groups.is_empty());
    for json in [
        r#"{"action":"add_pop_consumer","group":"bad+name"}"#,
        r#"{"action":"pop_fail_next","id":"producer-1","count":1}"#,
        r#"{"action":"pop_fail_next","id":"nobody","count":1}"#,
        r#"{"action":"add_consumer","group":"pg1"}"#,
    ] {
        assert!(cluster.apply(action(json)).is_err(), "{json}");
    }
    let mut basic = Cluster::new(1, "basic").unwrap();
    assert!(basic
        .apply(action(r#"{"action":"add_pop_consumer","group":"g1"}"#))
        .is_err());
    assert!(basic
        .apply(action(
            r#"{"action":"pop_fail_next","id":"consumer-1","count":1}"#
        ))
        .is_err());
}
