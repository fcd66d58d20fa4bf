//! RocketMQ 5's consumers on `vostok standalone`'s gRPC port, with the official clients: the
//! Rust `rocketmq` 5.0.0 SimpleConsumer, and rocketmq-client-nodejs 1.0.8's SimpleConsumer and
//! PushConsumer (scripts in `tests/grpc-node`). Messages are put with remoting sends, so each
//! test also checks that what a remoting producer sent arrives over gRPC intact. Each test has
//! its own broker.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rocketmq::conf::{ClientOption, SimpleConsumerOption};
use rocketmq::model::common::{FilterExpression, FilterType};
use rocketmq::SimpleConsumer;
use serde_json::Value;
use tokio::time::timeout;

use common::*;

const TEST_TIMEOUT: Duration = Duration::from_secs(40);
const NODE_LIMIT: Duration = Duration::from_secs(40);
/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP.
const UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: i32 = 200;

/// A standalone broker that takes sends whatever the disk's usage, with small files: the
/// machines these tests share may run with a nearly full disk, and this file tests
/// consumption, not disk limits.
fn start() -> Standalone {
    Standalone::start_with(BrokerOptions {
        broker_conf: Some(
            "diskSpaceWarningLevelRatio=100\nmappedFileSizeCommitLog=16777216\n\
             mappedFileSizeConsumeQueue=60000\n"
                .to_owned(),
        ),
        ..Default::default()
    })
}

fn client_option(grpc_addr: &str) -> ClientOption {
    let mut option = ClientOption::default();
    option.set_access_url(grpc_addr);
    option.set_timeout(Duration::from_secs(5));
    // Also the call's deadline (5.0.0 adds no margin): the broker answers a second before.
    option.set_long_polling_timeout(Duration::from_secs(3));
    option
}

/// Creates (or updates) a subscription group with the given settings.
fn create_group(broker_addr: &str, config: Value) {
    let mut conn = RawConn::connect(broker_addr);
    let f = conn.request(
        UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
        &[],
        &serde_json::to_vec(&config).unwrap(),
    );
    assert_eq!(f.code(), 0, "group update: {:?}", f.header);
}

/// Sends `body` with a tag, keys and a user property over remoting.
fn send_with_properties(
    conn: &mut RawConn,
    topic: &str,
    queue_id: i32,
    body: &str,
    extra: &[(&str, &str)],
) {
    let mut props = vec![
        ("TAGS", "TagA"),
        ("KEYS", "k1 k2"),
        ("color", "blue"),
        ("WAIT", "true"),
    ];
    props.extend_from_slice(extra);
    let ext = send_v2_ext(topic, queue_id, encode_properties(&props));
    let f = conn.request(code::SEND_MESSAGE_V2, &ext, body.as_bytes());
    assert_eq!(f.code(), 0, "send: {:?}", f.header);
}

fn dlq_bodies(broker_addr: &str, group: &str) -> Vec<String> {
    let mut conn = RawConn::connect(broker_addr);
    let dlq = format!("%DLQ%{group}");
    let max = max_offset(&mut conn, &dlq, 0);
    pull_all(&mut conn, "dlq-reader", &dlq, 0, max)
        .into_iter()
        .map(|r| String::from_utf8(r.body).unwrap())
        .collect()
}

fn node_json(out: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in {stdout}"));
    serde_json::from_str(line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_simple_consumer_receives_acks_and_sees_unacked_messages_again() {
    let broker = start();
    create_topic(&broker.broker_addr, &broker.namesrv_addr, "RecvTopic", 4);
    let mut conn = RawConn::connect(&broker.broker_addr);
    for i in 0..4 {
        send_with_properties(&mut conn, "RecvTopic", i, &format!("m{i}"), &[]);
    }
    timeout(TEST_TIMEOUT, async {
        let mut option = SimpleConsumerOption::default();
        option.set_consumer_group("RustGroup");
        option.set_topics(vec!["RecvTopic"]);
        let mut consumer = SimpleConsumer::new(option, client_option(&broker.grpc_addr)).unwrap();
        consumer.start().await.expect("the consumer starts");
        let all = FilterExpression::new(FilterType::Tag, "*");

        let mut first = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while first.len() < 4 && Instant::now() < deadline {
            for m in consumer
                .receive_with("RecvTopic", &all, 16, Duration::from_secs(2))
                .await
                .expect("receive")
            {
                let body = String::from_utf8(m.body().to_vec()).unwrap();
                // Sent over remoting, received over gRPC: tag, keys and properties intact.
                assert_eq!(m.tag(), Some("TagA"));
                assert_eq!(m.keys(), ["k1", "k2"]);
                assert_eq!(
                    m.properties().get("color").map(String::as_str),
                    Some("blue")
                );
                assert_eq!(m.topic(), "RecvTopic");
                assert_eq!(m.delivery_attempt(), 1);
                if body != "m0" {
                    consumer.ack(&m).await.expect("ack");
                }
                first.insert(body, m);
            }
        }
        assert_eq!(first.keys().collect::<Vec<_>>(), ["m0", "m1", "m2", "m3"]);

        // m0 was not acked: it comes back after its 2 s, with the next delivery attempt.
        let mut again = None;
        let deadline = Instant::now() + Duration::from_secs(15);
        while again.is_none() && Instant::now() < deadline {
            for m in consumer
                .receive_with("RecvTopic", &all, 16, Duration::from_secs(2))
                .await
                .expect("receive")
            {
                assert_eq!(m.body(), b"m0", "only the unacked message returns");
                again = Some(m);
            }
        }
        let again = again.expect("the unacked message is delivered again");
        assert_eq!(again.delivery_attempt(), 2);
        consumer.ack(&again).await.expect("ack of the redelivery");
        let rest = consumer
            .receive_with("RecvTopic", &all, 16, Duration::from_secs(2))
            .await
            .expect("receive");
        assert!(rest.is_empty(), "everything was acked");
        consumer.shutdown().await.expect("shutdown");
    })
    .await
    .expect("within the test timeout");
}

#[test]
fn a_node_simple_consumer_changes_invisible_time_and_the_broker_dead_letters_past_max_attempts() {
    let broker = start();
    create_topic(&broker.broker_addr, &broker.namesrv_addr, "NodeSimple", 4);
    // Two attempts: the retried message's second delivery is its last.
    create_group(
        &broker.broker_addr,
        serde_json::json!({"groupName": "NodeSimpleGroup", "retryMaxTimes": 1}),
    );
    let mut conn = RawConn::connect(&broker.broker_addr);
    for i in 0..4 {
        send_with_properties(&mut conn, "NodeSimple", i, &format!("n{i}"), &[]);
    }
    let out = run_node(
        "simple-consumer.mjs",
        &[
            &broker.grpc_addr,
            "NodeSimple",
            "NodeSimpleGroup",
            "4",
            "n2",
        ],
        NODE_LIMIT,
    );
    let result = node_json(&out);
    let messages = result["messages"].as_array().unwrap();
    let mut bodies: Vec<&str> = messages
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["n0", "n1", "n2", "n3"]);
    for m in messages {
        assert_eq!(m["tag"], "TagA");
        assert_eq!(m["keys"], serde_json::json!(["k1", "k2"]));
        assert_eq!(m["properties"]["color"], "blue");
        assert_eq!(m["attempt"], 1);
    }
    assert_eq!(result["redelivered"]["body"], "n2");
    assert_eq!(result["redelivered"]["attempt"], 2);
    assert_eq!(
        result["afterDlq"], 0,
        "past max attempts nothing is delivered"
    );
    assert_eq!(dlq_bodies(&broker.broker_addr, "NodeSimpleGroup"), ["n2"]);
}

#[test]
fn a_node_push_consumer_consumes_everything_and_a_failed_message_is_retried() {
    let broker = start();
    create_topic(&broker.broker_addr, &broker.namesrv_addr, "NodePush", 4);
    let mut conn = RawConn::connect(&broker.broker_addr);
    for i in 0..8 {
        send_with_properties(&mut conn, "NodePush", i % 4, &format!("p{i}"), &[]);
    }
    let out = run_node(
        "push-consumer.mjs",
        &[&broker.grpc_addr, "NodePush", "NodePushGroup", "8", "p5"],
        NODE_LIMIT,
    );
    let result = node_json(&out);
    let consumed = result["consumed"].as_array().unwrap();
    let mut succeeded: Vec<&str> = consumed
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    succeeded.sort();
    succeeded.dedup();
    assert_eq!(succeeded.len(), 8, "{consumed:?}");
    let retried: Vec<i64> = consumed
        .iter()
        .filter(|m| m["body"] == "p5")
        .map(|m| m["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(
        retried,
        [1, 2],
        "the failed message came back once: {consumed:?}"
    );
}

#[test]
fn a_node_push_consumer_of_an_orderly_group_consumes_each_message_group_in_order() {
    let broker = start();
    create_topic(&broker.broker_addr, &broker.namesrv_addr, "NodeFifo", 2);
    create_group(
        &broker.broker_addr,
        serde_json::json!({"groupName": "NodeFifoGroup", "consumeMessageOrderly": true}),
    );
    let mut conn = RawConn::connect(&broker.broker_addr);
    // Two message groups, one per queue, as a FIFO producer hashes them.
    for i in 0..6 {
        let group = if i % 2 == 0 { "g0" } else { "g1" };
        send_with_properties(
            &mut conn,
            "NodeFifo",
            i % 2,
            &format!("{group}-{i}"),
            &[("__SHARDINGKEY", group)],
        );
    }
    let out = run_node(
        "push-consumer.mjs",
        &[&broker.grpc_addr, "NodeFifo", "NodeFifoGroup", "6"],
        NODE_LIMIT,
    );
    let result = node_json(&out);
    let consumed = result["consumed"].as_array().unwrap();
    for group in ["g0", "g1"] {
        let order: Vec<&str> = consumed
            .iter()
            .filter(|m| m["messageGroup"] == group)
            .map(|m| m["body"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = (0..6)
            .filter(|i| (i % 2 == 0) == (group == "g0"))
            .map(|i| format!("{group}-{i}"))
            .collect();
        assert_eq!(order, expected, "{consumed:?}");
    }
}

#[test]
fn a_fifo_push_consumer_forwards_a_message_it_keeps_failing_to_the_dlq_and_goes_on_in_order() {
    let broker = start();
    create_topic(&broker.broker_addr, &broker.namesrv_addr, "NodeFifoDlq", 1);
    // Node 1.0.8 reads only an exponential back-off from the Settings reply; with the
    // customized one the broker sends it keeps no retry policy and forwards a failed FIFO
    // message at once (one attempt). retryMaxTimes 1 keeps the test quick for clients that
    // do read it (two attempts, one local retry after 1 s).
    create_group(
        &broker.broker_addr,
        serde_json::json!({
            "groupName": "NodeFifoDlqGroup",
            "consumeMessageOrderly": true,
            "retryMaxTimes": 1
        }),
    );
    let mut conn = RawConn::connect(&broker.broker_addr);
    for i in 0..4 {
        send_with_properties(
            &mut conn,
            "NodeFifoDlq",
            0,
            &format!("f{i}"),
            &[("__SHARDINGKEY", "g")],
        );
    }
    let out = run_node(
        "push-consumer.mjs",
        &[
            &broker.grpc_addr,
            "NodeFifoDlq",
            "NodeFifoDlqGroup",
            "3",
            "f1",
            "always",
        ],
        NODE_LIMIT,
    );
    let result = node_json(&out);
    let consumed: Vec<(String, i64)> = result["consumed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["body"].as_str().unwrap().to_owned(),
                m["attempt"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, i64)> = [("f0", 1), ("f1", 1), ("f2", 1), ("f3", 1)]
        .iter()
        .map(|(b, a)| (b.to_string(), *a))
        .collect();
    assert_eq!(consumed, expected);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let dlq = dlq_bodies(&broker.broker_addr, "NodeFifoDlqGroup");
        if dlq == ["f1"] {
            break;
        }
        assert!(Instant::now() < deadline, "DLQ holds {dlq:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Declares `topic` a FIFO topic (`updateTopic -a +message.type=FIFO`), keeping its queues.
fn make_fifo_topic(broker_addr: &str, topic: &str, queues: u32) {
    const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    let mut conn = RawConn::connect(broker_addr);
    let ext = [
        ("topic", topic.to_owned()),
        ("defaultTopic", "TBW102".to_owned()),
        ("readQueueNums", queues.to_string()),
        ("writeQueueNums", queues.to_string()),
        ("perm", "6".to_owned()),
        ("topicFilterType", "SINGLE_TAG".to_owned()),
        ("order", "false".to_owned()),
        ("attributes", "+message.type=FIFO".to_owned()),
    ];
    let f = conn.request(UPDATE_AND_CREATE_TOPIC, &ext, &[]);
    assert_eq!(f.code(), 0, "topic update: {:?}", f.header);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_simple_consumer_of_a_fifo_topic_gets_each_message_group_in_order() {
    let broker = start();
    create_topic(&broker.broker_addr, &broker.namesrv_addr, "RecvFifo", 2);
    make_fifo_topic(&broker.broker_addr, "RecvFifo", 2);
    let mut conn = RawConn::connect(&broker.broker_addr);
    for i in 0..6 {
        let group = if i % 2 == 0 { "g0" } else { "g1" };
        send_with_properties(
            &mut conn,
            "RecvFifo",
            i % 2,
            &format!("{group}-{i}"),
            &[("__SHARDINGKEY", group)],
        );
    }
    timeout(TEST_TIMEOUT, async {
        let mut option = SimpleConsumerOption::default();
        option.set_consumer_group("RustFifoGroup");
        option.set_topics(vec!["RecvFifo"]);
        let mut consumer = SimpleConsumer::new(option, client_option(&broker.grpc_addr)).unwrap();
        consumer.start().await.expect("the consumer starts");
        let all = FilterExpression::new(FilterType::Tag, "*");
        let mut order: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
        let mut skipped_once = false;
        let deadline = Instant::now() + Duration::from_secs(25);
        while order.values().map(Vec::len).sum::<usize>() < 9 && Instant::now() < deadline {
            for m in consumer
                .receive_with("RecvFifo", &all, 4, Duration::from_secs(2))
                .await
                .expect("receive")
            {
                let group = m.message_group().expect("a message group").to_owned();
                let body = String::from_utf8(m.body().to_vec()).unwrap();
                order
                    .entry(group)
                    .or_default()
                    .push((body.clone(), m.delivery_attempt()));
                // The first message of g0 is left unacked once: its queue waits for it.
                if body == "g0-0" && !skipped_once {
                    skipped_once = true;
                    continue;
                }
                consumer.ack(&m).await.expect("ack");
            }
        }
        let got =
            |group: &str| -> Vec<(String, i32)> { order.get(group).cloned().unwrap_or_default() };
        let expect = |items: &[(&str, i32)]| -> Vec<(String, i32)> {
            items.iter().map(|(b, a)| (b.to_string(), *a)).collect()
        };
        // g0-0 unacked holds its queue: nothing after it is committed, so once its invisible
        // time passes the whole batch comes again, in order, with the next attempt (an
        // orderly POP commits only up to the first unacked message, as RocketMQ's does).
        assert_eq!(
            got("g0"),
            expect(&[
                ("g0-0", 1),
                ("g0-2", 1),
                ("g0-4", 1),
                ("g0-0", 2),
                ("g0-2", 2),
                ("g0-4", 2)
            ]),
            "{order:?}"
        );
        assert_eq!(
            got("g1"),
            expect(&[("g1-1", 1), ("g1-3", 1), ("g1-5", 1)]),
            "{order:?}"
        );
        consumer.shutdown().await.expect("shutdown");
    })
    .await
    .expect("within the test timeout");
}
