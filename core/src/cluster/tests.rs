//! The pure cluster: scenarios run end to end, faults have their RocketMQ consequences, the JSON
//! contract holds, and a seed plus timed actions replays exactly.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn action(json: &str) -> Action {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn count(events: &[Event], pred: impl Fn(&EventKind) -> bool) -> usize {
    events.iter().filter(|e| pred(&e.kind)).count()
}

/// FNV-1a over the events' JSON: a digest of a whole history.
fn digest(events: &[Event]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in serde_json::to_string(events).unwrap().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Queue id → owners of the scenario topic's queues in group g1.
fn owners(cluster: &Cluster) -> BTreeMap<(String, i32), Vec<String>> {
    let snapshot = cluster.snapshot();
    let group = snapshot.groups.iter().find(|g| g.name == "g1").unwrap();
    group
        .queues
        .iter()
        .filter(|q| q.topic == TOPIC)
        .map(|q| ((q.broker.clone(), q.queue_id), q.owners.clone()))
        .collect()
}

fn owned_by(owners: &BTreeMap<(String, i32), Vec<String>>, id: &str) -> usize {
    owners
        .values()
        .filter(|o| o.iter().any(|x| x == id))
        .count()
}

/// Runs the scripted session: actions at fixed virtual times.
fn session(seed: u64, scenario: &str, script: &[(u64, &str)]) -> (Vec<Event>, String) {
    let mut cluster = Cluster::new(seed, scenario).unwrap();
    let mut events = Vec::new();
    for (at_ms, json) in script {
        let wait = at_ms - cluster.now_ms();
        events.extend(cluster.run_for(wait));
        cluster.apply(action(json)).unwrap();
    }
    events.extend(cluster.run_for(5_000));
    (events, serde_json::to_string(&cluster.snapshot()).unwrap())
}

/// Goal: the same seed and the same actions at the same virtual times give byte-identical
/// events and snapshots; another seed gives another history.
#[test]
fn same_seed_and_actions_replay_identically() {
    let script = [
        (2_000, r#"{"action":"add_consumer","group":"g1"}"#),
        (3_500, r#"{"action":"send","count":10,"tag":"A"}"#),
        (
            4_000,
            r#"{"action":"consumer_behaviour","id":"consumer-1","behaviour":"fail"}"#,
        ),
        (5_000, r#"{"action":"partition","id":"consumer-2"}"#),
        (6_000, r#"{"action":"kill_broker","id":"broker-b"}"#),
        (7_000, r#"{"action":"heal","id":"consumer-2"}"#),
        (8_000, r#"{"action":"restart_broker","id":"broker-b"}"#),
        (9_000, r#"{"action":"stop_consumer","id":"consumer-3"}"#),
    ];
    let (events_a, snapshot_a) = session(42, "two-brokers", &script);
    let (events_b, snapshot_b) = session(42, "two-brokers", &script);
    assert!(events_a.len() > 500, "{} events", events_a.len());
    assert_eq!(digest(&events_a), digest(&events_b));
    assert_eq!(snapshot_a, snapshot_b);

    let (events_c, snapshot_c) = session(43, "two-brokers", &script);
    assert_ne!(digest(&events_a), digest(&events_c));
    assert_ne!(snapshot_a, snapshot_c);
}

/// Goal: the scenarios start as named: topic, queues, brokers, producers and group members; the
/// basic one produces, stores, flushes, pulls, consumes and commits.
#[test]
fn scenarios_start_as_described() {
    for (name, brokers, queues, consumers) in [
        ("basic", 1, 4, 2),
        ("rebalance", 1, 8, 3),
        ("retry-dlq", 1, 4, 2),
        ("two-brokers", 2, 4, 2),
    ] {
        let mut cluster = Cluster::new(1, name).unwrap();
        cluster.run_for(3_000);
        let snapshot = cluster.snapshot();
        assert_eq!(snapshot.scenario, name);
        let broker_nodes = snapshot
            .nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Broker)
            .count();
        assert_eq!(broker_nodes, brokers, "{name}");
        let topic = snapshot.topics.iter().find(|t| t.name == TOPIC).unwrap();
        assert_eq!(topic.queues.len(), brokers * queues, "{name}");
        let group = &snapshot.groups[0];
        assert_eq!(group.consumers.len(), consumers, "{name}");
        // Once settled, every queue has exactly one owner.
        for ((broker, queue_id), owners) in owners(&cluster) {
            assert_eq!(owners.len(), 1, "{name} {broker}/{queue_id}: {owners:?}");
        }
    }
    assert_eq!(
        Cluster::new(1, "nope").err(),
        Some(ClusterError::UnknownScenario("nope".to_owned()))
    );

    let mut cluster = Cluster::new(5, "basic").unwrap();
    let events = cluster.run_for(10_000);
    let sent = count(&events, |k| matches!(k, EventKind::Sent { .. }));
    let consumed = count(
        &events,
        |k| matches!(k, EventKind::Consumed { status, .. } if status == "ok"),
    );
    assert!(sent >= 20, "{sent} sent");
    assert!(consumed + 2 >= sent, "{consumed} consumed of {sent}");
    for kind in [
        "stored",
        "flushed",
        "pulled",
        "committed",
        "rebalanced",
        "message",
    ] {
        assert!(
            events
                .iter()
                .any(|e| serde_json::to_value(e).unwrap()["kind"] == kind),
            "no {kind} event"
        );
    }
    // Every sent message was stored with the same id, queue and offset.
    let stored: BTreeSet<(String, i32, i64)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Stored {
                msg_id,
                queue_id,
                queue_offset,
                ..
            } => Some((msg_id.clone(), *queue_id, *queue_offset)),
            _ => None,
        })
        .collect();
    for e in &events {
        if let EventKind::Sent {
            msg_id,
            queue_id,
            queue_offset,
            ..
        } = &e.kind
        {
            assert!(stored.contains(&(msg_id.clone(), *queue_id, *queue_offset)));
        }
    }
    // Lag stays small while both consumers keep up.
    let snapshot = cluster.snapshot();
    for queue in &snapshot.groups[0].queues {
        assert!(queue.lag <= 3, "{queue:?}");
    }
    let broker = &snapshot.brokers[0];
    assert!(broker.flushed_offset <= broker.written_offset);
    assert!(broker.written_offset > 0);
    let cq = broker
        .consume_queues
        .iter()
        .find(|q| q.topic == TOPIC && q.queue_id == 0)
        .unwrap();
    assert_eq!(cq.entries.len() as u64, cq.max_offset.min(32));
    // ConsumeQueue entries point at records of their queue in the CommitLog.
    let last = cq.entries.last().unwrap();
    let record = &cluster.commitlog("broker-a", last.commitlog_offset, 1)[0];
    assert_eq!(record.commitlog_offset, last.commitlog_offset);
    assert_eq!(record.size, last.size);
    assert_eq!((record.topic.as_str(), record.queue_id), (TOPIC, 0));
    assert_eq!(record.queue_offset as u64, last.queue_offset);
    assert_eq!(record.tags.as_deref(), Some("TagA"));
}

/// Goal: a consumer joining the group takes queues away from the others (averagely: 2/1/1).
#[test]
fn adding_a_consumer_changes_ownership() {
    let mut cluster = Cluster::new(3, "basic").unwrap();
    cluster.run_for(3_000);
    let before = owners(&cluster);
    assert_eq!(owned_by(&before, "consumer-1"), 2);
    assert_eq!(owned_by(&before, "consumer-2"), 2);
    cluster
        .apply(action(r#"{"action":"add_consumer","group":"g1"}"#))
        .unwrap();
    let events = cluster.run_for(6_000);
    let after = owners(&cluster);
    assert_eq!(owned_by(&after, "consumer-3"), 1, "{after:?}");
    assert_eq!(
        owned_by(&after, "consumer-1") + owned_by(&after, "consumer-2"),
        3
    );
    assert!(after.values().all(|o| o.len() == 1), "{after:?}");
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::Rebalanced { consumer, queues, .. } if consumer == "consumer-3" && !queues.is_empty()
    )));
    // The new consumer consumes.
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::Consumed { consumer, .. } if consumer == "consumer-3"
    )));
}

/// Goal: a killed consumer's queues are orphaned until the broker expires its channel (no
/// heartbeat for 120 s), then the survivors take them; a stopped consumer unregisters and the
/// group rebalances at once.
#[test]
fn killing_a_consumer_rebalances_after_channel_expiry() {
    let mut cluster = Cluster::new(9, "rebalance").unwrap();
    cluster.run_for(3_000);
    let before = owners(&cluster);
    let orphaned = owned_by(&before, "consumer-2");
    assert!(orphaned >= 2, "{before:?}");
    cluster
        .apply(action(r#"{"action":"kill_consumer","id":"consumer-2"}"#))
        .unwrap();
    cluster.run_for(30_000);
    let during = owners(&cluster);
    let unowned = during.values().filter(|o| o.is_empty()).count();
    assert_eq!(unowned, orphaned, "{during:?}");

    let events = cluster.run_for(120_000);
    let after = owners(&cluster);
    assert!(after.values().all(|o| o.len() == 1), "{after:?}");
    assert_eq!(owned_by(&after, "consumer-2"), 0);
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::Rebalanced { consumer, .. } if consumer == "consumer-1" || consumer == "consumer-3"
    )));
    // The backlog of the orphaned queues is consumed.
    cluster.run_for(10_000);
    let snapshot = cluster.snapshot();
    for queue in snapshot.groups[0]
        .queues
        .iter()
        .filter(|q| q.topic == TOPIC)
    {
        assert!(queue.lag <= 3, "{queue:?}");
    }

    // A graceful stop unregisters: the rest of the group takes over within a rebalance.
    cluster
        .apply(action(r#"{"action":"stop_consumer","id":"consumer-3"}"#))
        .unwrap();
    cluster.run_for(1_000);
    let stopped = owners(&cluster);
    assert_eq!(owned_by(&stopped, "consumer-1"), 8, "{stopped:?}");
}

/// Goal: a failing consumer's messages walk %RETRY%g1 with a growing reconsume count, then land
/// in %DLQ%g1 after MAX_RECONSUME_TIMES retries; the snapshot counts both.
#[test]
fn failing_consumer_sends_messages_through_retry_to_the_dlq() {
    let mut cluster = Cluster::new(11, "retry-dlq").unwrap();
    let events = cluster.run_for(30_000);
    let dlq: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Dlq { group, msg_id } if group == "g1" => Some(msg_id.clone()),
            _ => None,
        })
        .collect();
    assert!(!dlq.is_empty(), "nothing reached the DLQ");
    // Each dead letter was retried 1, 2, 3 times first.
    for msg_id in &dlq {
        let tries: Vec<i32> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Retry {
                    msg_id: id,
                    reconsume_times,
                    ..
                } if id == msg_id => Some(*reconsume_times),
                _ => None,
            })
            .collect();
        assert_eq!(tries, vec![1, 2, 3, 4], "{msg_id}");
    }
    // The failing consumer never acknowledged anything; the healthy one did.
    assert_eq!(
        count(&events, |k| matches!(
            k,
            EventKind::Consumed { consumer, status, .. } if consumer == "consumer-1" && status == "ok"
        )),
        0
    );
    assert!(
        count(&events, |k| matches!(
            k,
            EventKind::Consumed { consumer, status, .. } if consumer == "consumer-2" && status == "ok"
        )) > 0
    );
    let snapshot = cluster.snapshot();
    let group = &snapshot.groups[0];
    assert!(group.retry_messages > 0);
    assert_eq!(group.dlq_messages, dlq.len() as u64);
    assert!(snapshot
        .topics
        .iter()
        .any(|t| t.name == "%DLQ%g1" && t.queues.iter().map(|q| q.max_offset).sum::<u64>() > 0));

    // Once it behaves, nothing more goes to the DLQ.
    cluster
        .apply(action(
            r#"{"action":"consumer_behaviour","id":"consumer-1","behaviour":"ok"}"#,
        ))
        .unwrap();
    cluster.run_for(15_000);
    let events = cluster.run_for(20_000);
    assert_eq!(count(&events, |k| matches!(k, EventKind::Dlq { .. })), 0);
}

/// Goal: a killed broker loses only what it had not flushed; restarted, it serves every
/// flushed record again and the producer and consumers carry on.
#[test]
fn restarting_a_broker_keeps_flushed_messages() {
    let mut cluster = Cluster::new(21, "basic").unwrap();
    cluster.run_for(10_000);
    let flushed = cluster.snapshot().brokers[0].flushed_offset;
    assert!(flushed > 0);
    let before: Vec<RecordView> = cluster
        .commitlog("broker-a", 0, 10_000)
        .into_iter()
        .filter(|r| r.commitlog_offset + r.size <= flushed)
        .collect();
    assert!(before.len() >= 10);
    cluster
        .apply(action(r#"{"action":"kill_broker","id":"broker-a"}"#))
        .unwrap();
    assert!(cluster.commitlog("broker-a", 0, 10).is_empty());
    let events = cluster.run_for(3_000);
    assert!(events.iter().any(|e| e.kind
        == EventKind::NodeDown {
            id: "broker-a".to_owned()
        }));
    assert!(!cluster.snapshot().brokers[0].up);
    assert_eq!(count(&events, |k| matches!(k, EventKind::Sent { .. })), 0);

    cluster
        .apply(action(r#"{"action":"restart_broker","id":"broker-a"}"#))
        .unwrap();
    let after = cluster.commitlog("broker-a", 0, 10_000);
    assert!(after.len() >= before.len());
    assert_eq!(&after[..before.len()], &before[..]);
    assert!(cluster.snapshot().brokers[0].written_offset >= flushed);

    // Producers find the broker again and consumers resume.
    let events = cluster.run_for(15_000);
    assert!(count(&events, |k| matches!(k, EventKind::Sent { .. })) > 5);
    assert!(
        count(
            &events,
            |k| matches!(k, EventKind::Consumed { status, .. } if status == "ok")
        ) > 5
    );
    assert!(cluster
        .apply(action(r#"{"action":"restart_broker","id":"broker-a"}"#))
        .is_err());
}

/// Goal: with two brokers, killing one moves the producer's sends to the other.
#[test]
fn two_brokers_survive_losing_one() {
    let mut cluster = Cluster::new(4, "two-brokers").unwrap();
    let events = cluster.run_for(8_000);
    let brokers: BTreeSet<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Sent { broker, .. } => Some(broker.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(brokers.len(), 2, "{brokers:?}");
    cluster
        .apply(action(r#"{"action":"kill_broker","id":"broker-b"}"#))
        .unwrap();
    cluster.run_for(2_000);
    let events = cluster.run_for(10_000);
    let sent: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Sent { broker, .. } => Some(broker.as_str()),
            _ => None,
        })
        .collect();
    assert!(sent.len() > 10);
    assert!(sent.iter().all(|b| *b == "broker-a"), "{sent:?}");
}

/// Goal: a partitioned consumer's frames are dropped (no consumption), and after healing it
/// consumes again.
#[test]
fn partition_drops_frames_until_healed() {
    let mut cluster = Cluster::new(8, "basic").unwrap();
    cluster.run_for(3_000);
    cluster
        .apply(action(r#"{"action":"partition","id":"consumer-1"}"#))
        .unwrap();
    let events = cluster.run_for(6_000);
    assert!(events.iter().any(|e| e.kind
        == EventKind::Partitioned {
            id: "consumer-1".to_owned()
        }));
    assert!(count(&events, |k| matches!(k, EventKind::Dropped { .. })) > 0);
    let pulled_by_1 = |events: &[Event]| {
        count(
            events,
            |k| matches!(k, EventKind::Pulled { consumer, .. } if consumer == "consumer-1"),
        )
    };
    assert_eq!(pulled_by_1(&events), 0);
    let node = cluster
        .snapshot()
        .nodes
        .into_iter()
        .find(|n| n.id == "consumer-1")
        .unwrap();
    assert!(node.partitioned);
    cluster
        .apply(action(r#"{"action":"heal","id":"consumer-1"}"#))
        .unwrap();
    let events = cluster.run_for(40_000);
    assert!(pulled_by_1(&events) > 0);
}

/// Goal: the strategy picker switches every consumer of the group; by-circle interleaves.
#[test]
fn set_strategy_reallocates() {
    let mut cluster = Cluster::new(2, "rebalance").unwrap();
    cluster.run_for(3_000);
    cluster
        .apply(action(
            r#"{"action":"set_strategy","group":"g1","strategy":"circle"}"#,
        ))
        .unwrap();
    cluster.run_for(8_000);
    let snapshot = cluster.snapshot();
    assert_eq!(snapshot.groups[0].strategy, Strategy::Circle);
    let owners = owners(&cluster);
    // Queue i goes to consumer i % 3: neighbours never share an owner.
    let list: Vec<&Vec<String>> = owners.values().collect();
    for pair in list.windows(2) {
        assert_ne!(pair[0], pair[1], "{owners:?}");
    }
    assert!(cluster
        .apply(action(
            r#"{"action":"set_strategy","group":"nope","strategy":"circle"}"#
        ))
        .is_err());
}

/// Goal: the JSON shapes the page relies on: every action of the contract parses, events carry
/// `t_ms` and `kind`, snapshots and records have the contract's fields.
#[test]
fn json_contract() {
    for json in [
        r#"{"action":"add_producer"}"#,
        r#"{"action":"remove_producer","id":"producer-1"}"#,
        r#"{"action":"add_consumer","group":"g1"}"#,
        r#"{"action":"stop_consumer","id":"consumer-2"}"#,
        r#"{"action":"kill_consumer","id":"consumer-1"}"#,
        r#"{"action":"kill_broker","id":"broker-a"}"#,
        r#"{"action":"restart_broker","id":"broker-a"}"#,
        r#"{"action":"partition","id":"consumer-3"}"#,
        r#"{"action":"heal","id":"consumer-3"}"#,
        r#"{"action":"send","count":10,"tag":"A"}"#,
        r#"{"action":"send","count":1}"#,
        r#"{"action":"consumer_behaviour","id":"consumer-3","behaviour":"slow"}"#,
        r#"{"action":"set_strategy","group":"g1","strategy":"consistent_hash"}"#,
    ] {
        let parsed = action(json);
        let back: serde_json::Value = serde_json::to_value(&parsed).unwrap();
        let original: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(back, original);
    }
    let mut cluster = Cluster::new(1, "basic").unwrap();
    cluster.run_for(3_000);
    cluster
        .apply(action(r#"{"action":"add_producer"}"#))
        .unwrap();
    cluster.run_for(1_000);
    cluster
        .apply(action(r#"{"action":"send","count":3}"#))
        .unwrap();
    cluster
        .apply(action(r#"{"action":"remove_producer","id":"producer-1"}"#))
        .unwrap();
    let events = cluster.run_for(2_000);
    let events: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    assert!(events
        .iter()
        .all(|e| e["t_ms"].is_u64() && e["kind"].is_string()));
    let message = events.iter().find(|e| e["kind"] == "message").unwrap();
    for key in ["from", "to", "code", "bytes", "deliver_ms"] {
        assert!(!message[key].is_null(), "message lacks {key}");
    }
    let snapshot = serde_json::to_value(cluster.snapshot()).unwrap();
    for key in [
        "now_ms",
        "seed",
        "scenario",
        "nodes",
        "topics",
        "groups",
        "brokers",
        "in_flight",
    ] {
        assert!(!snapshot[key].is_null(), "snapshot lacks {key}");
    }
    let producer = snapshot["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "producer-1")
        .unwrap();
    assert_eq!(producer["kind"], "producer");
    assert_eq!(producer["up"], false);
    let queue = &snapshot["groups"][0]["queues"][0];
    for key in [
        "broker",
        "topic",
        "queue_id",
        "owner",
        "committed_offset",
        "max_offset",
        "lag",
    ] {
        assert!(queue.get(key).is_some(), "group queue lacks {key}");
    }
    let record = serde_json::to_value(&cluster.commitlog("broker-a", 0, 1)[0]).unwrap();
    for key in [
        "commitlog_offset",
        "size",
        "topic",
        "queue_id",
        "queue_offset",
        "tags",
        "keys",
        "body_preview",
        "born_ms",
        "store_ms",
        "msg_id",
    ] {
        assert!(record.get(key).is_some(), "record lacks {key}");
    }
    // Bad actions are errors, never panics.
    for json in [
        r#"{"action":"kill_broker","id":"consumer-1"}"#,
        r#"{"action":"stop_consumer","id":"broker-a"}"#,
        r#"{"action":"kill_consumer","id":"nobody"}"#,
        r#"{"action":"send","count":100000}"#,
        r#"{"action":"add_consumer","group":"%bad"}"#,
    ] {
        assert!(cluster.apply(action(json)).is_err(), "{json}");
    }
}

/// Simulated events per second (run with `--release --ignored --nocapture`).
#[test]
#[ignore]
fn events_per_second() {
    let mut cluster = Cluster::new(1, "basic").unwrap();
    let mut events = 0usize;
    let mut steps = 0usize;
    let mut elapsed = std::time::Duration::ZERO;
    // Ten virtual minutes, snapshotting every virtual second as the page does.
    for _ in 0..600 {
        let start = std::time::Instant::now();
        events += cluster.run_for(1_000).len();
        let _ = serde_json::to_string(&cluster.snapshot()).unwrap();
        elapsed += start.elapsed();
        steps += 1;
    }
    println!(
        "{events} events over {steps} virtual seconds in {:.3} s: {:.0} events/s, {:.0}x real time",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        steps as f64 / elapsed.as_secs_f64()
    );
}
