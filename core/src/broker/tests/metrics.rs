//! The metric values of [`Broker::metrics_snapshot`]: what a few sends, pulls, commits and
//! late answers leave in the counters, histograms and gauges.

use super::*;
use crate::broker::metrics::{MessageType, MESSAGE_SIZE_BOUNDS_BYTES};

fn commit(h: &mut Harness, topic: &str, group: &str, offset: i64) {
    let cmd = RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET)
        .with_ext("topic", topic)
        .with_ext("consumerGroup", group)
        .with_ext("queueId", "0")
        .with_ext("commitOffset", offset);
    assert_eq!(h.call(3, cmd).code, response::SUCCESS);
}

#[test]
fn sends_and_pulls_count_in_out_size_and_lag() {
    // Goal: messages and stored bytes in per topic and type, one size sample per put, messages
    // out per group, and the lag, inflight and ready gauges from committed and pulled offsets.
    // Method: 5 sends of 100 bytes and one of 2 KiB, a pull of all of them by G, a commit of
    // 4; a delayed send counts as `delay`.
    let mut h = Harness::new(test_config());
    for _ in 0..5 {
        assert_eq!(h.call(1, send_v2("TopicA", 0, &[7; 100], "t")).code, 0);
    }
    assert_eq!(h.call(1, send_v2("TopicA", 0, &[7; 2048], "t")).code, 0);
    let stored: u64 = h.broker.store().written_offset().0;

    let pulled = h.call(
        2,
        pull_request("G", "TopicA", 0, 0, pull_sys_flag::SUBSCRIPTION, Some("*")),
    );
    assert_eq!(decode_records(&pulled.body).len(), 6);
    commit(&mut h, "TopicA", "G", 4);

    h.now_ms += 3_000;
    let snap = h.broker.metrics_snapshot(h.now_ms);
    assert_eq!(snap.cluster, "DefaultCluster");
    assert_eq!(snap.node_id, "broker-a");
    let a: Vec<_> = snap
        .messages_in
        .iter()
        .filter(|s| s.topic == "TopicA")
        .collect();
    assert_eq!(a.len(), 1, "{:?}", snap.messages_in);
    assert_eq!(a[0].message_type, MessageType::Normal);
    assert!(!a[0].is_system);
    assert_eq!(a[0].counters.messages, 6);
    // Throughput counts the stored records: every byte written to the CommitLog.
    assert_eq!(a[0].counters.bytes, stored);
    let size = a[0].counters.size;
    assert_eq!(size.count(), 6);
    assert_eq!(size.counts[0], 5, "100-byte bodies stay under 1 KiB stored");
    assert_eq!(size.counts[1], 1, "a 2 KiB body lands in the 4 KiB bucket");
    assert_eq!(size.sum, stored);
    assert!(MESSAGE_SIZE_BOUNDS_BYTES[0] == 1024);

    let out: Vec<_> = snap
        .messages_out
        .iter()
        .filter(|s| s.topic == "TopicA")
        .collect();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].consumer_group, "G");
    assert_eq!(out[0].counters.messages, 6);
    assert_eq!(out[0].counters.bytes, stored);

    let lag = snap
        .consumers
        .iter()
        .find(|c| c.consumer_group == "G" && c.topic == "TopicA")
        .expect("G has consumer gauges");
    assert_eq!(lag.lag_messages, 2);
    assert_eq!(lag.inflight_messages, 2, "pulled to 6, committed 4");
    assert_eq!(lag.ready_messages, 0);
    assert_eq!(lag.lag_latency_ms, 3_000);
    assert_eq!(lag.queueing_latency_ms, 0);
    assert!(!lag.is_retry);

    // Answered at once: 0 ms, per request and response code.
    let sends = snap
        .rpc_latency
        .iter()
        .find(|r| r.request_code == request::SEND_MESSAGE_V2)
        .unwrap();
    assert_eq!(sends.response_code, response::SUCCESS);
    assert_eq!(sends.latency_ms.count(), 6);
    assert_eq!(sends.latency_ms.counts[0], 6);
    assert!(snap.topic_number >= 1);
    assert_eq!(snap.broker_permission, 6);
    assert!(
        snap.storage_flush_behind_bytes > 0,
        "ASYNC_FLUSH: nothing synced yet"
    );
    assert_eq!(snap.storage_dispatch_behind_bytes, 0);
    assert_eq!(snap.storage_message_reserve_time_ms, Some(3_000));

    // A delay level makes it a `delay` message.
    let delayed = send_request(
        request::SEND_MESSAGE_V2,
        "TopicA",
        0,
        b"later",
        &props(&[("DELAY", "1"), ("WAIT", "true")]),
    );
    assert_eq!(h.call(1, delayed).code, 0);
    let snap = h.broker.metrics_snapshot(h.now_ms);
    let delay = snap
        .messages_in
        .iter()
        .find(|s| s.topic == "TopicA" && s.message_type == MessageType::Delay)
        .expect("a delay sample");
    assert_eq!(delay.counters.messages, 1);
}

#[test]
fn a_long_poll_is_measured_to_the_send_that_answers_it() {
    // Goal: a held pull's latency runs from its arrival to the input that produced its answer.
    let mut h = Harness::new(test_config());
    h.call(1, send_v2("TopicA", 0, b"first", "t"));
    let held = h.request(
        2,
        pull_request(
            "G",
            "TopicA",
            0,
            1,
            pull_sys_flag::SUBSCRIPTION | pull_sys_flag::SUSPEND,
            Some("*"),
        ),
    );
    assert!(responses_on(&held, 2).is_empty());
    h.now_ms += 250;
    let outputs = h.request(1, send_v2("TopicA", 0, b"wake", "t"));
    assert_eq!(responses_on(&outputs, 2).len(), 1);
    let snap = h.broker.metrics_snapshot(h.now_ms);
    let pulls = snap
        .rpc_latency
        .iter()
        .find(|r| r.request_code == request::PULL_MESSAGE)
        .expect("the pull was measured");
    assert_eq!(pulls.response_code, response::SUCCESS);
    assert_eq!(pulls.latency_ms.count(), 1);
    assert_eq!(pulls.latency_ms.sum, 250);
    // 250 ms falls in the (100, 1000] bucket.
    assert_eq!(pulls.latency_ms.counts[6], 1);
}

#[test]
fn connections_dlq_and_transactions_are_counted() {
    // Goal: heartbeats show as producer and consumer connections; a retry beyond its limit as a
    // DLQ send; END_TRANSACTION as commits and rollbacks, unresolved halves as half messages.
    let mut h = Harness::new(test_config());
    assert_eq!(h.call(2, heartbeat("c1", "G", "TopicA", "*")).code, 0);
    let snap = h.broker.metrics_snapshot(h.now_ms);
    assert_eq!(snap.consumer_connections.len(), 1);
    let c = &snap.consumer_connections[0];
    assert_eq!((c.consumer_group.as_str(), c.count), ("G", 1));
    assert_eq!(c.consume_mode, "push");
    assert_eq!(
        snap.producer_connections
            .iter()
            .map(|p| p.count)
            .sum::<u64>(),
        1,
        "the heartbeat's CLIENT_INNER_PRODUCER"
    );

    // A retry send past its reconsume limit goes to %DLQ%G.
    let mut retry = send_request(
        request::SEND_MESSAGE_V2,
        "%RETRY%G",
        0,
        b"poison",
        &props(&[("WAIT", "true")]),
    );
    // `j`: reconsumeTimes, beyond the default limit of 16.
    retry.ext_fields.insert("j".into(), "17".into());
    assert_eq!(h.call(1, retry).code, 0);
    let snap = h.broker.metrics_snapshot(h.now_ms);
    assert_eq!(snap.send_to_dlq.len(), 1, "{:?}", snap.send_to_dlq);
    assert_eq!(snap.send_to_dlq[0].consumer_group, "G");
    assert_eq!(snap.send_to_dlq[0].messages, 1);
    // Retry and DLQ topics are not counted as messages in.
    assert!(snap.messages_in.iter().all(|s| !s.topic.starts_with('%')));

    let mut halves = Vec::new();
    for (i, uniq) in ["u1", "u2", "u3"].iter().enumerate() {
        let answer = h.call(1, half("TxTopic", 0, format!("tx-{i}").as_bytes(), uniq));
        assert_eq!(answer.code, 0);
        halves.push((answer, *uniq));
    }
    assert_eq!(h.broker.metrics_snapshot(h.now_ms).half_messages, 3);
    for ((answer, uniq), state) in halves
        .iter()
        .zip([sys_flag::TRANSACTION_COMMIT, sys_flag::TRANSACTION_ROLLBACK])
    {
        let (_, offset) =
            crate::message::decode_offset_msg_id(answer.ext("msgId").unwrap()).unwrap();
        let mut end = RemotingCommand::request(request::END_TRANSACTION);
        crate::remoting::headers::EndTransactionRequestHeader {
            producer_group: "PG".into(),
            tran_state_table_offset: answer.ext("queueOffset").unwrap().parse().unwrap(),
            commit_log_offset: offset as i64,
            commit_or_rollback: state,
            from_transaction_check: false,
            msg_id: (*uniq).to_owned(),
            transaction_id: Some((*uniq).to_owned()),
            topic: None,
        }
        .write_to(&mut end);
        assert_eq!(h.call(1, end).code, response::SUCCESS);
    }
    let snap = h.broker.metrics_snapshot(h.now_ms);
    assert_eq!(snap.half_messages, 1);
    assert_eq!(snap.commit_messages, vec![("TxTopic".to_owned(), 1)]);
    assert_eq!(snap.rollback_messages, vec![("TxTopic".to_owned(), 1)]);
    let tx = snap
        .messages_in
        .iter()
        .find(|s| s.message_type == MessageType::Transaction)
        .expect("half messages count as transaction messages in");
    assert_eq!(tx.counters.messages, 3);
}
