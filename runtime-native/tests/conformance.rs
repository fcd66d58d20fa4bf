//! RocketMQ conformance cases (apache/rocketmq-e2e, see OPERATIONS.md §2.1) reproduced against
//! `vostok standalone` with the unmodified RocketMQ Rust client (`rocketmq-client-rust` 1.0.0)
//! and with Vostok's own client. Each test is named `<suite case>_<what it asserts>`.
//!
//! Cases already reproduced elsewhere (not repeated here):
//!
//! | Case | Test |
//! |---|---|
//! | ClusterTest: one clustering group shares | `real_client::two_consumers_of_one_group_split_the_queues`, `client::two_push_consumers_of_a_group_split_the_queues` |
//! | ClusterTest (v4): broadcast consumers of one group each get all | `real_client::broadcast_consumers_each_receive_everything`, `client::broadcast_consumers_each_receive_everything` |
//! | LoadBalancingTest: consumers share the queues | `real_client::two_consumers_of_one_group_split_the_queues` |
//! | SqlFilterTest | `filter::sql_filter_push_consumer_with_the_real_client_gets_only_matching_messages`, `filter::sql_filter_push_consumer_with_the_vostok_client_gets_only_matching_messages`, `filter::sql_filter_by_property_between_in_and_is_null` |
//! | TagFilterTest: same hash code | `filter::tag_filter_with_colliding_hash_codes_is_settled_by_the_client` |
//! | PushConsumerRetryTest (v4, RECONSUME_LATER ladder, DLQ) | `retry::retry_then_dead_letter_queue_with_the_real_client`, `client::reconsume_later_redelivers_the_message` |
//! | OffsetTest: a committed group resumes | `real_client::committed_offsets_survive_a_broker_restart`, `client::pull_consumer_commits_and_a_successor_resumes` |
#![recursion_limit = "256"]

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketmq_client_rust::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQProducer, MQPushConsumer,
    MessageListenerConcurrently, SendStatus,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere as RealFrom;
use rocketmq_model::common::message::message_ext::MessageExt as RealMessageExt;
use rocketmq_model::common::message::message_single::Message as RealMessage;
use tokio::task::block_in_place;
use tokio::time::{sleep, timeout};
use vostok::client::{
    ConsumeFromWhere, ConsumeStatus, Message, MessageExt, Producer, PushConsumer,
};

use common::*;

/// Queues of every test topic.
const QUEUES: u32 = 2;
/// How long to keep listening for messages that must not come.
const SETTLE: Duration = Duration::from_millis(1500);

/// broker.conf where nothing counts as "in memory": a new group is never told offset 0, so
/// CONSUME_FROM_* decides, as on a RocketMQ broker whose backlog is older than RAM holds.
const ON_DISK_CONF: &str = "accessMessageInMemoryMaxRatio=0\n";

async fn bounded<F: Future<Output = ()>>(name: &str, limit: Duration, body: F) {
    if timeout(limit, body).await.is_err() {
        panic!("{name} did not finish within {limit:?}");
    }
}

/// A broker with `topic` (and the group's retry topics) routed.
fn broker(conf: Option<&str>, topic: &str, groups: &[&str]) -> Standalone {
    block_in_place(|| {
        let broker = Standalone::start_with(BrokerOptions {
            broker_conf: conf.map(str::to_owned),
            ..BrokerOptions::default()
        });
        create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, QUEUES);
        for group in groups {
            create_topic(
                &broker.broker_addr,
                &broker.namesrv_addr,
                &format!("%RETRY%{group}"),
                1,
            );
        }
        broker
    })
}

/// Bodies received, in arrival order.
#[derive(Clone, Default)]
struct Bodies(Arc<Mutex<Vec<String>>>);

impl Bodies {
    fn push(&self, body: &[u8]) {
        self.0
            .lock()
            .expect("bodies lock")
            .push(String::from_utf8_lossy(body).into_owned());
    }

    fn sorted(&self) -> Vec<String> {
        let mut v = self.0.lock().expect("bodies lock").clone();
        v.sort();
        v
    }

    fn len(&self) -> usize {
        self.0.lock().expect("bodies lock").len()
    }

    /// How often each body arrived.
    fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for b in self.0.lock().expect("bodies lock").iter() {
            *counts.entry(b.clone()).or_insert(0) += 1;
        }
        counts
    }

    async fn wait_for(&self, what: &str, n: usize) {
        let me = self.clone();
        wait_until(what, Duration::from_secs(30), || me.len() >= n).await;
    }
}

impl MessageListenerConcurrently for Bodies {
    fn consume_message(
        &self,
        msgs: &[&RealMessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeConcurrentlyStatus> {
        for m in msgs {
            self.push(m.message.body_slice());
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    let mut v: Vec<String> = range.map(|i| format!("{prefix}-{i:03}")).collect();
    v.sort();
    v
}

async fn real_producer(broker: &Standalone, topic: &str) -> DefaultMQProducer {
    let mut producer = start_producer_in(&broker.namesrv_addr, &unique("Producer")).await;
    wait_for_publish_route(&mut producer, topic, QUEUES as usize).await;
    producer
}

async fn real_send(producer: &DefaultMQProducer, topic: &str, tag: &str, body: &str) {
    let message = RealMessage::builder()
        .topic(topic)
        .tags(tag)
        .body_slice(body.as_bytes())
        .build_unchecked();
    let sent = producer
        .send(message)
        .await
        .unwrap_or_else(|e| panic!("send of {body} failed: {e}"))
        .expect("send returns a result");
    assert_eq!(sent.send_status, SendStatus::SendOk, "{body}");
}

async fn vostok_producer(broker: &Standalone) -> Producer {
    Producer::builder()
        .namesrv_addr(&broker.namesrv_addr)
        .group(&unique("VostokProducer"))
        .send_timeout(Duration::from_secs(10))
        .build()
        .expect("producer builds")
        .start()
        .await
        .expect("producer starts")
}

async fn vostok_send(
    producer: &Producer,
    topic: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
) {
    for i in range {
        let body = format!("{prefix}-{i:03}");
        producer
            .send(Message::new(topic, body.into_bytes()).with_tags("T"))
            .await
            .expect("send succeeds");
    }
}

/// A real-client push consumer of `topic` with `expression`, starting `from`.
async fn real_consumer(
    broker: &Standalone,
    group: &str,
    topic: &str,
    expression: &str,
    from: RealFrom,
    sink: &Bodies,
) -> rocketmq_client_rust::DefaultMQPushConsumer {
    let mut consumer = push_consumer_builder(&broker.namesrv_addr, group)
        .consume_from_where(from)
        .build();
    consumer
        .subscribe(topic, expression)
        .await
        .expect("push consumer subscribes");
    consumer.register_message_listener_concurrently(sink.clone());
    consumer.start().await.expect("push consumer starts");
    consumer
}

/// A Vostok push consumer of `topic` (all tags) starting `from`, committing every 200 ms; its
/// long polls are held at most 1 s, so an idle queue's position is committed within a second.
async fn vostok_consumer(
    broker: &Standalone,
    group: &str,
    topic: &str,
    from: ConsumeFromWhere,
    timestamp_ms: Option<u64>,
    sink: &Bodies,
) -> PushConsumer {
    let sink = sink.clone();
    let mut builder = PushConsumer::builder()
        .namesrv_addr(&broker.namesrv_addr)
        .group(group)
        .subscribe(topic, "*")
        .consume_from(from)
        .persist_offset_interval(Duration::from_millis(200))
        .broker_suspend_max_time(Duration::from_secs(1))
        .listener(move |messages: Vec<MessageExt>| {
            let sink = sink.clone();
            async move {
                for m in &messages {
                    sink.push(m.body());
                }
                ConsumeStatus::ConsumeSuccess
            }
        });
    if let Some(ts) = timestamp_ms {
        builder = builder.consume_timestamp_ms(ts);
    }
    builder
        .build()
        .expect("push consumer builds")
        .start()
        .await
        .expect("push consumer starts")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Waits until `group` has a committed offset equal to the max offset on every queue.
async fn wait_committed_to_end(broker: &Standalone, group: &str, topic: &str) {
    let addr = broker.broker_addr.clone();
    let (group, topic) = (group.to_owned(), topic.to_owned());
    wait_until(
        "the group commits every queue to its end",
        Duration::from_secs(20),
        move || {
            block_in_place(|| {
                let mut conn = RawConn::connect(&addr);
                (0..QUEUES as i32).all(|q| {
                    let max = max_offset(&mut conn, &topic, q);
                    committed_offset(&mut conn, &group, &topic, q) == Some(max)
                })
            })
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// OffsetTest
// ---------------------------------------------------------------------------------------------

/// OffsetTest (v4): a new group with CONSUME_FROM_LAST_OFFSET and a 100-message backlog still
/// consumes all 100, because the broker answers its offset query with 0 while the queue
/// starts at 0 and message 0 is in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_test_new_group_consume_from_last_offset_still_consumes_the_backlog() {
    bounded(
        "the CONSUME_FROM_LAST_OFFSET backlog test",
        Duration::from_secs(60),
        async {
            let topic = "OffsetLastTopic";
            let group = "OffsetLastGroup";
            let broker = broker(None, topic, &[group]);
            let producer = real_producer(&broker, topic).await;
            for i in 0..100 {
                real_send(&producer, topic, "T", &format!("m-{i:03}")).await;
            }
            let sink = Bodies::default();
            let mut consumer = real_consumer(
                &broker,
                group,
                topic,
                "*",
                RealFrom::ConsumeFromLastOffset,
                &sink,
            )
            .await;
            sink.wait_for("the whole backlog", 100).await;
            sleep(SETTLE).await;
            assert_eq!(sink.sorted(), names("m", 0..100));
            consumer.shutdown().await;
        },
    )
    .await;
}

/// OffsetTest counterpart: when message 0 is no longer "in memory" (here
/// accessMessageInMemoryMaxRatio=0), a new CONSUME_FROM_LAST_OFFSET group starts at the end and
/// gets only what is sent after it started (Vostok client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_test_new_group_consume_from_last_offset_skips_a_backlog_on_disk() {
    bounded(
        "the CONSUME_FROM_LAST_OFFSET on-disk test",
        Duration::from_secs(60),
        async {
            let topic = "OffsetDiskTopic";
            let group = "OffsetDiskGroup";
            let broker = broker(Some(ON_DISK_CONF), topic, &[group]);
            let producer = vostok_producer(&broker).await;
            vostok_send(&producer, topic, "old", 0..10).await;
            let sink = Bodies::default();
            let consumer = vostok_consumer(
                &broker,
                group,
                topic,
                ConsumeFromWhere::LastOffset,
                None,
                &sink,
            )
            .await;
            // The start offsets are known once the consumer committed them (the max, 5 per queue).
            wait_committed_to_end(&broker, group, topic).await;
            vostok_send(&producer, topic, "new", 0..6).await;
            sink.wait_for("the new messages", 6).await;
            sleep(SETTLE).await;
            assert_eq!(sink.sorted(), names("new", 0..6));
            consumer.shutdown().await;
            producer.shutdown().await;
        },
    )
    .await;
}

/// OffsetTest (v4): a new group with CONSUME_FROM_FIRST_OFFSET reads all 10 messages even
/// when the broker does not hand out offset 0 itself (real client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_test_new_group_consume_from_first_offset_reads_all() {
    bounded(
        "the CONSUME_FROM_FIRST_OFFSET test",
        Duration::from_secs(60),
        async {
            let topic = "OffsetFirstTopic";
            let group = "OffsetFirstGroup";
            let broker = broker(Some(ON_DISK_CONF), topic, &[group]);
            let producer = real_producer(&broker, topic).await;
            for i in 0..10 {
                real_send(&producer, topic, "T", &format!("m-{i:03}")).await;
            }
            let sink = Bodies::default();
            let mut consumer = real_consumer(
                &broker,
                group,
                topic,
                "*",
                RealFrom::ConsumeFromFirstOffset,
                &sink,
            )
            .await;
            sink.wait_for("all 10", 10).await;
            sleep(SETTLE).await;
            assert_eq!(sink.sorted(), names("m", 0..10));
            consumer.shutdown().await;
        },
    )
    .await;
}

/// CONSUME_FROM_TIMESTAMP: a new group starts at the first message stored at or after the
/// timestamp (Vostok client; SEARCH_OFFSET_BY_TIMESTAMP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_test_new_group_consume_from_timestamp_starts_there() {
    bounded(
        "the CONSUME_FROM_TIMESTAMP test",
        Duration::from_secs(60),
        async {
            let topic = "OffsetTimeTopic";
            let group = "OffsetTimeGroup";
            let broker = broker(Some(ON_DISK_CONF), topic, &[group]);
            let producer = vostok_producer(&broker).await;
            vostok_send(&producer, topic, "before", 0..6).await;
            sleep(Duration::from_millis(50)).await;
            let from = now_ms();
            sleep(Duration::from_millis(50)).await;
            vostok_send(&producer, topic, "after", 0..6).await;
            let sink = Bodies::default();
            let consumer = vostok_consumer(
                &broker,
                group,
                topic,
                ConsumeFromWhere::Timestamp,
                Some(from),
                &sink,
            )
            .await;
            sink.wait_for("the messages after the timestamp", 6).await;
            sleep(SETTLE).await;
            assert_eq!(sink.sorted(), names("after", 0..6));
            consumer.shutdown().await;
            producer.shutdown().await;
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// ResetOffsetTest
// ---------------------------------------------------------------------------------------------

/// ResetOffsetTest: `vostok admin reset-offset` to a time before everything makes a running
/// Vostok consumer group consume everything again, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_offset_test_admin_command_rewinds_a_running_group() {
    bounded(
        "the reset-offset command test",
        Duration::from_secs(60),
        async {
            let topic = "ResetCliTopic";
            let group = "ResetCliGroup";
            let broker = broker(None, topic, &[group]);
            let producer = vostok_producer(&broker).await;
            let before = now_ms();
            vostok_send(&producer, topic, "m", 0..10).await;
            let sink = Bodies::default();
            let consumer = vostok_consumer(
                &broker,
                group,
                topic,
                ConsumeFromWhere::FirstOffset,
                None,
                &sink,
            )
            .await;
            sink.wait_for("the first pass", 10).await;
            wait_committed_to_end(&broker, group, topic).await;

            let output = block_in_place(|| {
                std::process::Command::new(env!("CARGO_BIN_EXE_vostok"))
                    .args(["admin", "reset-offset", "-n", &broker.namesrv_addr])
                    .args(["-g", group, "-t", topic, "-s", &before.to_string()])
                    .output()
                    .expect("vostok admin runs")
            });
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "reset-offset failed: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(stdout.starts_with("#brokerName"), "{stdout}");
            assert_eq!(stdout.lines().count(), 1 + QUEUES as usize, "{stdout}");
            for line in stdout.lines().skip(1) {
                assert!(
                    line.trim_end().ends_with(" 0"),
                    "every queue back to 0: {stdout}"
                );
            }

            sink.wait_for("the second pass", 20).await;
            sleep(SETTLE).await;
            let counts = sink.counts();
            assert_eq!(
                counts.keys().cloned().collect::<Vec<_>>(),
                names("m", 0..10)
            );
            assert!(
                counts.values().all(|n| *n == 2),
                "each message twice: {counts:?}"
            );

            // Forward to the end with -s -1: nothing more arrives; messages sent now do.
            let output = block_in_place(|| {
                std::process::Command::new(env!("CARGO_BIN_EXE_vostok"))
                    .args(["admin", "reset-offset", "-n", &broker.namesrv_addr])
                    .args(["-g", group, "-t", topic, "-s", "-1"])
                    .output()
                    .expect("vostok admin runs")
            });
            assert!(output.status.success());
            vostok_send(&producer, topic, "z", 0..2).await;
            sink.wait_for("the messages after the reset to the end", 22)
                .await;
            sleep(SETTLE).await;
            assert_eq!(sink.len(), 22);

            // An unknown group cannot be reset.
            let output = block_in_place(|| {
                std::process::Command::new(env!("CARGO_BIN_EXE_vostok"))
                    .args(["admin", "reset-offset", "-n", &broker.namesrv_addr])
                    .args(["-g", "NoSuchGroup", "-t", topic, "-s", "now"])
                    .output()
                    .expect("vostok admin runs")
            });
            assert!(!output.status.success());
            assert!(
                String::from_utf8_lossy(&output.stderr).contains("not exist"),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            consumer.shutdown().await;
            producer.shutdown().await;
        },
    )
    .await;
}

/// ResetOffsetTest with the real client on both sides: `DefaultMQAdminExt`
/// resetOffsetByTimestamp rewinds a running `DefaultMQPushConsumer` group, which consumes
/// everything again (after the client's own 10 s pause for in-flight work).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_offset_test_real_admin_rewinds_a_running_real_consumer() {
    use rocketmq_client_rust::{DefaultMQAdminExt, OffsetAdmin};
    bounded(
        "the real-client reset test",
        Duration::from_secs(90),
        async {
            let topic = "ResetRealTopic";
            let group = "ResetRealGroup";
            let broker = broker(None, topic, &[group]);
            let producer = real_producer(&broker, topic).await;
            let before = now_ms();
            for i in 0..10 {
                real_send(&producer, topic, "T", &format!("m-{i:03}")).await;
            }
            let sink = Bodies::default();
            let mut consumer = real_consumer(
                &broker,
                group,
                topic,
                "*",
                RealFrom::ConsumeFromFirstOffset,
                &sink,
            )
            .await;
            sink.wait_for("the first pass", 10).await;
            wait_committed_to_end(&broker, group, topic).await;

            let mut admin = DefaultMQAdminExt::new(client_runtime("admin"));
            admin.set_namesrv_addr(broker.namesrv_addr.as_str());
            admin.start().await.expect("admin starts");
            let table = admin
                .reset_offset_by_timestamp(None, topic.into(), group.into(), before, true)
                .await
                .expect("the reset succeeds");
            assert_eq!(table.len(), QUEUES as usize, "{table:?}");
            assert!(table.values().all(|o| *o == 0), "{table:?}");

            sink.wait_for("the second pass", 20).await;
            sleep(SETTLE).await;
            let counts = sink.counts();
            assert!(
                counts.values().all(|n| *n == 2),
                "each message twice: {counts:?}"
            );
            consumer.shutdown().await;
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// ClusterTest and TagFilterTest with the real client
// ---------------------------------------------------------------------------------------------

/// ClusterTest: consumers in three different groups each receive every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_test_three_groups_each_receive_everything() {
    bounded("the three-groups test", Duration::from_secs(60), async {
        let topic = "ClusterTopic";
        let groups = ["ClusterG1", "ClusterG2", "ClusterG3"];
        let broker = broker(None, topic, &groups);
        let producer = real_producer(&broker, topic).await;
        for i in 0..30 {
            real_send(&producer, topic, "T", &format!("m-{i:03}")).await;
        }
        let mut consumers = Vec::new();
        let mut sinks = Vec::new();
        for group in groups {
            let sink = Bodies::default();
            consumers.push(
                real_consumer(
                    &broker,
                    group,
                    topic,
                    "*",
                    RealFrom::ConsumeFromFirstOffset,
                    &sink,
                )
                .await,
            );
            sinks.push(sink);
        }
        for sink in &sinks {
            sink.wait_for("every message in every group", 30).await;
        }
        sleep(SETTLE).await;
        for sink in &sinks {
            assert_eq!(sink.sorted(), names("m", 0..30));
        }
        for mut c in consumers {
            c.shutdown().await;
        }
    })
    .await;
}

/// TagFilterTest (both suites): `A||B`, `*`, spaces around `||`, a tag nobody sent, a very
/// long tag, and case sensitivity (BB ≠ bb), each with a new real-client group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_filter_test_expressions_with_the_real_client() {
    bounded("the tag filter test", Duration::from_secs(60), async {
        let topic = "TagTopic";
        let long_tag = "L".repeat(1000);
        let cases: Vec<(&str, String, Vec<&str>)> = vec![
            ("TagOr", "TagA||TagB".to_owned(), vec!["TagA", "TagB"]),
            (
                "TagStar",
                "*".to_owned(),
                vec!["TagA", "TagB", "BB", "bb", "long"],
            ),
            (
                "TagSpaces",
                " TagA || TagB ".to_owned(),
                vec!["TagA", "TagB"],
            ),
            ("TagNone", "TagC".to_owned(), vec![]),
            ("TagCase", "BB".to_owned(), vec!["BB"]),
            ("TagLong", long_tag.clone(), vec!["long"]),
        ];
        let groups: Vec<&str> = cases.iter().map(|(g, _, _)| *g).collect();
        let broker = broker(None, topic, &groups);
        let producer = real_producer(&broker, topic).await;
        for (tag, label) in [
            ("TagA", "TagA"),
            ("TagB", "TagB"),
            ("BB", "BB"),
            ("bb", "bb"),
            (long_tag.as_str(), "long"),
        ] {
            for i in 0..3 {
                real_send(&producer, topic, tag, &format!("{label}-{i:03}")).await;
            }
        }
        let mut running = Vec::new();
        for (group, expression, _) in &cases {
            let sink = Bodies::default();
            let consumer = real_consumer(
                &broker,
                group,
                topic,
                expression,
                RealFrom::ConsumeFromFirstOffset,
                &sink,
            )
            .await;
            running.push((consumer, sink));
        }
        for ((_, _, labels), (_, sink)) in cases.iter().zip(&running) {
            sink.wait_for("the subscribed tags", labels.len() * 3).await;
        }
        sleep(SETTLE).await;
        for ((group, _, labels), (_, sink)) in cases.iter().zip(&running) {
            let mut expected: Vec<String> = labels.iter().flat_map(|l| names(l, 0..3)).collect();
            expected.sort();
            assert_eq!(sink.sorted(), expected, "group {group}");
        }
        for (mut c, _) in running {
            c.shutdown().await;
        }
    })
    .await;
}
