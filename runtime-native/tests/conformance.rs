//! RocketMQ conformance cases (apache/rocketmq-e2e, see OPERATIONS.md §2.1) reproduced against
//! `vostok standalone` with the unmodified RocketMQ Rust client (`rocketmq-client-rust` 1.0.0)
//! and with Vostok's own client. Each test is named `<suite case>_<what it asserts>`.
//!
//! Where each case is reproduced (here unless a module is named):
//!
//! | Case | Test |
//! |---|---|
//! | ClusterTest: 3 groups each get everything | `cluster_test_three_groups_each_receive_everything` |
//! | ClusterTest: 3 consumers of one clustering group share 100 | `cluster_test_one_clustering_group_shares_the_messages`, `real_client::two_consumers_of_one_group_split_the_queues`, `client::two_push_consumers_of_a_group_split_the_queues` |
//! | ClusterTest (v4): broadcast consumers of one group each get all | `real_client::broadcast_consumers_each_receive_everything`, `client::broadcast_consumers_each_receive_everything` |
//! | LoadBalancingTest (v4): 4 consumers → 1/4 each, stop 2 → 1/2, add 2 → 1/4 | `load_balancing_test_scale_in_and_out_keeps_the_shares_even` |
//! | SqlFilterTest: `price>20` → 10; unknown property → 0; no filter (`TRUE`) → all | `sql_filter_test_price_above_20_and_unknown_property` |
//! | SqlFilterTest: BETWEEN, IN, IS NULL, AND | `filter::sql_filter_by_property_between_in_and_is_null`, `filter::sql_filter_push_consumer_with_the_real_client_gets_only_matching_messages`, `filter::sql_filter_push_consumer_with_the_vostok_client_gets_only_matching_messages` |
//! | TagFilterTest: `A\|\|B`, `*`, spaces, absent tag, long tag, case | `tag_filter_test_expressions_with_the_real_client` |
//! | TagFilterTest: same hash code | `filter::tag_filter_with_colliding_hash_codes_is_settled_by_the_client` |
//! | PushConsumerRetryTest (v4): RECONSUME_LATER ladder, DLQ | `retry::retry_then_dead_letter_queue_with_the_real_client`, `client::reconsume_later_redelivers_the_message` |
//! | PushConsumerRetryTest (v4): maxReconsumeTimes=0 (concurrent) → no retry, DLQ | `push_consumer_retry_test_max_reconsume_times_zero_goes_straight_to_the_dlq` |
//! | PushConsumerRetryTest (v4): a listener exception means retry | `push_consumer_retry_test_listener_exception_means_retry` |
//! | PushConsumerRetryTest: half fail first, the retried half matches | `push_consumer_retry_test_half_fail_first_and_the_retried_half_matches` |
//! | OffsetTest (v4): CONSUME_FROM_FIRST_OFFSET reads all | `offset_test_new_group_consume_from_first_offset_reads_all` |
//! | OffsetTest (v4): CONSUME_FROM_LAST_OFFSET with a backlog in memory reads it | `offset_test_new_group_consume_from_last_offset_still_consumes_the_backlog`, `offset_test_new_group_consume_from_last_offset_skips_a_backlog_on_disk` |
//! | OffsetTest (v4): a pull consumer that does not commit reads again | `offset_test_pull_consumer_without_commit_reads_the_messages_again`, `offset_test_real_lite_pull_consumer_without_commit_reads_the_messages_again` |
//! | OffsetTest: a committed group resumes | `real_client::committed_offsets_survive_a_broker_restart`, `client::pull_consumer_commits_and_a_successor_resumes` |
//! | CONSUME_FROM_TIMESTAMP | `offset_test_new_group_consume_from_timestamp_starts_there` |
//! | ResetOffsetTest: reset to the beginning / to the latest | `reset_offset_test_admin_command_rewinds_a_running_group`, `reset_offset_test_real_admin_rewinds_a_running_real_consumer` |
//!
//! Intervals are shortened where RocketMQ has a knob: the Vostok client rebalances every second
//! and commits every 200 ms; the retry tests' broker has a 1 s `messageDelayLevel` ladder, so a
//! first retry (level 3) comes after 1 s instead of 10 s.
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
    ConsumeFromWhere, ConsumeStatus, Message, MessageExt, Producer, PullConsumer, PushConsumer,
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
    broker_with_queues(conf, topic, QUEUES, groups)
}

/// A broker with `topic` of `queues` queues (and the group's retry topics) routed.
fn broker_with_queues(conf: Option<&str>, topic: &str, queues: u32, groups: &[&str]) -> Standalone {
    block_in_place(|| {
        let broker = Standalone::start_with(BrokerOptions {
            broker_conf: conf.map(str::to_owned),
            ..BrokerOptions::default()
        });
        create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, queues);
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
    wait_committed_to_end_of(broker, group, topic, QUEUES).await
}

/// [`wait_committed_to_end`] for a topic of `queues` queues.
async fn wait_committed_to_end_of(broker: &Standalone, group: &str, topic: &str, queues: u32) {
    let addr = broker.broker_addr.clone();
    let (group, topic) = (group.to_owned(), topic.to_owned());
    wait_until(
        "the group commits every queue to its end",
        Duration::from_secs(20),
        move || {
            block_in_place(|| {
                let mut conn = RawConn::connect(&addr);
                (0..queues as i32).all(|q| {
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

// ---------------------------------------------------------------------------------------------
// LoadBalancingTest and ClusterTest (one clustering group) with the Vostok client
// ---------------------------------------------------------------------------------------------

/// Queues of the load-balancing topics: 8, as the suite's `createTopic` makes them.
const BALANCED_QUEUES: u32 = 8;

/// A Vostok push consumer of `topic` in clustering mode that rebalances every second (instead
/// of every 20 s) and commits every 200 ms, so group changes settle within the test.
async fn group_member(
    broker: &Standalone,
    group: &str,
    topic: &str,
    sink: &Bodies,
) -> PushConsumer {
    let sink = sink.clone();
    PushConsumer::builder()
        .namesrv_addr(&broker.namesrv_addr)
        .group(group)
        .subscribe(topic, "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .rebalance_interval(Duration::from_secs(1))
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
        })
        .build()
        .expect("push consumer builds")
        .start()
        .await
        .expect("push consumer starts")
}

/// Waits until `members` own disjoint sets of `topic`'s queues that together are all `queues`
/// queues, split as evenly as the averaging strategy splits them. (The group's retry topic is
/// split among them too; it is not counted.)
async fn wait_split(members: &[&PushConsumer], topic: &str, queues: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        let mut owners = Vec::new();
        for m in members {
            let owned: Vec<_> = m
                .assigned_queues()
                .await
                .expect("assigned queues")
                .into_iter()
                .filter(|q| q.topic == topic)
                .collect();
            sizes.push(owned.len());
            owners.push(owned.iter().map(|q| q.queue_id).collect::<Vec<_>>());
            all.extend(owned);
        }
        let total = all.len();
        all.sort();
        all.dedup();
        let (low, high) = (queues / members.len(), queues.div_ceil(members.len()));
        if total == queues && all.len() == queues && sizes.iter().all(|s| (low..=high).contains(s))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queues were not split among {} consumers: {owners:?}",
            members.len()
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// How many bodies of `sink` start with `prefix-`.
fn count_of(sink: &Bodies, prefix: &str) -> usize {
    let prefix = format!("{prefix}-");
    sink.0
        .lock()
        .expect("bodies lock")
        .iter()
        .filter(|b| b.starts_with(&prefix))
        .count()
}

/// Bodies of `prefix` over all `sinks`, sorted (duplicates kept).
fn union_of(sinks: &[&Bodies], prefix: &str) -> Vec<String> {
    let prefix = format!("{prefix}-");
    let mut all: Vec<String> = sinks
        .iter()
        .flat_map(|s| s.sorted())
        .filter(|b| b.starts_with(&prefix))
        .collect();
    all.sort();
    all
}

/// Waits until `sinks` together hold `n` bodies of `prefix`.
async fn wait_union(sinks: &[&Bodies], prefix: &str, n: usize) {
    let sinks: Vec<Bodies> = sinks.iter().map(|s| (*s).clone()).collect();
    let prefix = prefix.to_owned();
    wait_until(
        "the batch is consumed by the group",
        Duration::from_secs(30),
        move || {
            let refs: Vec<&Bodies> = sinks.iter().collect();
            union_of(&refs, &prefix).len() >= n
        },
    )
    .await;
}

/// Asserts that batch `prefix` of `n` messages went to `sinks` once each, about evenly: every
/// consumer got some, and each count lies within 10 % of `n / sinks.len()`.
fn assert_balanced(sinks: &[&Bodies], prefix: &str, n: usize) {
    assert_eq!(
        union_of(sinks, prefix),
        names(prefix, 0..n),
        "batch {prefix}: every message once"
    );
    let counts: Vec<usize> = sinks.iter().map(|s| count_of(s, prefix)).collect();
    let share = n / sinks.len();
    let tolerance = share / 10;
    for c in &counts {
        assert!(
            *c > 0 && c.abs_diff(share) <= tolerance,
            "batch {prefix}: counts {counts:?}, expected about {share} each"
        );
    }
}

/// LoadBalancingTest (v4): 4 consumers of a group get about 1/4 of 240 messages each; with 2
/// of them stopped the other 2 get about 1/2 each of the next 240; with 2 added back, about 1/4
/// each again (Vostok client, rebalancing every second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancing_test_scale_in_and_out_keeps_the_shares_even() {
    bounded("the load-balancing test", Duration::from_secs(90), async {
        let topic = "BalanceTopic";
        let group = "BalanceGroup";
        let n = 240;
        let broker = broker_with_queues(None, topic, BALANCED_QUEUES, &[group]);
        let producer = vostok_producer(&broker).await;
        let sinks: Vec<Bodies> = (0..6).map(|_| Bodies::default()).collect();
        let mut members = Vec::new();
        for sink in &sinks[..4] {
            members.push(group_member(&broker, group, topic, sink).await);
        }

        // Four consumers.
        wait_split(
            &members.iter().collect::<Vec<_>>(),
            topic,
            BALANCED_QUEUES as usize,
        )
        .await;
        vostok_send(&producer, topic, "a", 0..n).await;
        let four: Vec<&Bodies> = sinks[..4].iter().collect();
        wait_union(&four, "a", n).await;
        wait_committed_to_end_of(&broker, group, topic, BALANCED_QUEUES).await;
        sleep(SETTLE).await;
        assert_balanced(&four, "a", n);

        // Two of them stop: the other two take their queues.
        for m in members.drain(2..) {
            m.shutdown().await;
        }
        wait_split(
            &members.iter().collect::<Vec<_>>(),
            topic,
            BALANCED_QUEUES as usize,
        )
        .await;
        vostok_send(&producer, topic, "b", 0..n).await;
        let two: Vec<&Bodies> = sinks[..2].iter().collect();
        wait_union(&two, "b", n).await;
        wait_committed_to_end_of(&broker, group, topic, BALANCED_QUEUES).await;
        sleep(SETTLE).await;
        assert_balanced(&two, "b", n);
        assert_eq!(
            union_of(&four, "a"),
            names("a", 0..n),
            "nothing of the first batch again"
        );

        // Two new consumers join.
        for sink in &sinks[4..] {
            members.push(group_member(&broker, group, topic, sink).await);
        }
        wait_split(
            &members.iter().collect::<Vec<_>>(),
            topic,
            BALANCED_QUEUES as usize,
        )
        .await;
        vostok_send(&producer, topic, "c", 0..n).await;
        let now: Vec<&Bodies> = [&sinks[0], &sinks[1], &sinks[4], &sinks[5]].to_vec();
        wait_union(&now, "c", n).await;
        sleep(SETTLE).await;
        assert_balanced(&now, "c", n);
        let everyone: Vec<&Bodies> = sinks.iter().collect();
        for (prefix, _) in [("a", 0), ("b", 1), ("c", 2)] {
            assert_eq!(
                union_of(&everyone, prefix),
                names(prefix, 0..n),
                "batch {prefix} once over the whole run"
            );
        }
        for m in members {
            m.shutdown().await;
        }
        producer.shutdown().await;
    })
    .await;
}

/// ClusterTest: 3 consumers of one clustering group, started and split before anything is
/// sent, share 100 messages: each gets some, none is delivered twice, and together they get
/// all 100 (Vostok client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_test_one_clustering_group_shares_the_messages() {
    bounded(
        "the one-group cluster test",
        Duration::from_secs(60),
        async {
            let topic = "ClusterShareTopic";
            let group = "ClusterShareGroup";
            let n = 100;
            let broker = broker_with_queues(None, topic, BALANCED_QUEUES, &[group]);
            let producer = vostok_producer(&broker).await;
            let sinks: Vec<Bodies> = (0..3).map(|_| Bodies::default()).collect();
            let mut members = Vec::new();
            for sink in &sinks {
                members.push(group_member(&broker, group, topic, sink).await);
            }
            wait_split(
                &members.iter().collect::<Vec<_>>(),
                topic,
                BALANCED_QUEUES as usize,
            )
            .await;
            vostok_send(&producer, topic, "m", 0..n).await;
            let all: Vec<&Bodies> = sinks.iter().collect();
            wait_union(&all, "m", n).await;
            sleep(SETTLE).await;
            assert_eq!(
                union_of(&all, "m"),
                names("m", 0..n),
                "each message exactly once"
            );
            for sink in &sinks {
                assert!(sink.len() > 0, "every consumer gets a share");
            }
            for m in members {
                m.shutdown().await;
            }
            producer.shutdown().await;
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// OffsetTest with a pull consumer that never commits
// ---------------------------------------------------------------------------------------------

/// Polls `consumer` until `n` messages came (at most 20 s); their bodies, sorted.
async fn poll_n(consumer: &PullConsumer, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "polled only {got:?} of {n}"
        );
        for m in consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll")
        {
            got.push(String::from_utf8_lossy(m.body()).into_owned());
        }
    }
    got.sort();
    got
}

/// OffsetTest (v4): a pull consumer that never commits its offsets (auto-commit off, no
/// `commit`) reads the same messages again when it is started anew (Vostok lite pull
/// consumer); the group has no committed offset on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_test_pull_consumer_without_commit_reads_the_messages_again() {
    bounded(
        "the uncommitted pull consumer test",
        Duration::from_secs(60),
        async {
            let topic = "OffsetPullTopic";
            let group = "OffsetPullGroup";
            let broker = broker(None, topic, &[group]);
            let producer = vostok_producer(&broker).await;
            vostok_send(&producer, topic, "m", 0..10).await;
            let start = || async {
                PullConsumer::builder()
                    .namesrv_addr(&broker.namesrv_addr)
                    .group(group)
                    .subscribe(topic, "*")
                    .consume_from(ConsumeFromWhere::FirstOffset)
                    .auto_commit(false)
                    .rebalance_interval(Duration::from_secs(1))
                    .broker_suspend_max_time(Duration::from_secs(1))
                    .build()
                    .expect("pull consumer builds")
                    .start()
                    .await
                    .expect("pull consumer starts")
            };
            for round in 0..2 {
                let consumer = start().await;
                assert_eq!(
                    poll_n(&consumer, 10).await,
                    names("m", 0..10),
                    "round {round}"
                );
                // Nothing more: each message once per run.
                assert!(consumer
                    .poll(Duration::from_millis(500))
                    .await
                    .expect("poll")
                    .is_empty());
                consumer.shutdown().await;
                let committed = block_in_place(|| {
                    let mut conn = RawConn::connect(&broker.broker_addr);
                    (0..QUEUES as i32)
                        .map(|q| committed_offset(&mut conn, group, topic, q))
                        .collect::<Vec<_>>()
                });
                assert!(
                    committed.iter().all(|c| c.unwrap_or(0) == 0),
                    "round {round}: nothing committed, yet the broker has {committed:?}"
                );
            }
            producer.shutdown().await;
        },
    )
    .await;
}

/// OffsetTest (v4) with the real client: a `DefaultLitePullConsumer` with auto-commit off that
/// never commits reads the same messages again after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_test_real_lite_pull_consumer_without_commit_reads_the_messages_again() {
    use rocketmq_client_rust::DefaultLitePullConsumer;
    bounded(
        "the uncommitted real lite pull consumer test",
        Duration::from_secs(60),
        async {
            let topic = "OffsetRealPullTopic";
            let group = "OffsetRealPullGroup";
            let broker = broker(None, topic, &[group]);
            let producer = real_producer(&broker, topic).await;
            for i in 0..10 {
                real_send(&producer, topic, "T", &format!("m-{i:03}")).await;
            }
            for round in 0..2 {
                let consumer = DefaultLitePullConsumer::builder(client_runtime("offset-pull"))
                    .consumer_group(group)
                    .name_server_addr(broker.namesrv_addr.clone())
                    .consume_from_where(RealFrom::ConsumeFromFirstOffset)
                    .poll_timeout_millis(500)
                    // Shutdown waits for the pull held by the broker: hold it 1 s, not 20 s.
                    .broker_suspend_max_time_millis(1_000)
                    .consumer_timeout_millis_when_suspend(3_000)
                    .auto_commit(false)
                    .build()
                    .expect("lite pull consumer builds");
                consumer
                    .subscribe_with_expression(topic, "*")
                    .await
                    .expect("lite pull consumer subscribes");
                consumer.start().await.expect("lite pull consumer starts");
                let mut got = Vec::new();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                while got.len() < 10 {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "round {round}: polled only {got:?}"
                    );
                    for m in consumer.poll_with_timeout(500).await {
                        got.push(String::from_utf8_lossy(m.message.body_slice()).into_owned());
                    }
                }
                got.sort();
                assert_eq!(got, names("m", 0..10), "round {round}");
                consumer.shutdown().await;
                let committed = block_in_place(|| {
                    let mut conn = RawConn::connect(&broker.broker_addr);
                    (0..QUEUES as i32)
                        .map(|q| committed_offset(&mut conn, group, topic, q))
                        .collect::<Vec<_>>()
                });
                assert!(
                    committed.iter().all(|c| c.unwrap_or(0) == 0),
                    "round {round}: nothing committed, yet the broker has {committed:?}"
                );
            }
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// PushConsumerRetryTest (v4)
// ---------------------------------------------------------------------------------------------

/// broker.conf whose delay ladder is 1 s at every level, so a retry (level 3 + reconsume
/// times) comes after 1 s instead of 10 s, 30 s, ….
const FAST_RETRY_CONF: &str =
    "messageDelayLevel=1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s\n";

/// One delivery: body and reconsume times.
#[derive(Clone, Default)]
struct Deliveries(Arc<Mutex<Vec<(String, i32)>>>);

impl Deliveries {
    fn push(&self, m: &MessageExt) {
        self.0.lock().expect("deliveries lock").push((
            String::from_utf8_lossy(m.body()).into_owned(),
            m.reconsume_times(),
        ));
    }

    fn snapshot(&self) -> Vec<(String, i32)> {
        let mut v = self.0.lock().expect("deliveries lock").clone();
        v.sort();
        v
    }

    /// Bodies delivered with `times` reconsume times, sorted.
    fn with_times(&self, times: i32) -> Vec<String> {
        self.snapshot()
            .into_iter()
            .filter(|(_, t)| *t == times)
            .map(|(b, _)| b)
            .collect()
    }
}

/// A Vostok push consumer of `topic` (one message per listener call) whose listener records
/// every delivery and answers with `decide(body, reconsume_times)`; a `decide` that panics is a
/// listener that throws.
async fn retrying_consumer(
    broker: &Standalone,
    group: &str,
    topic: &str,
    max_reconsume_times: Option<i32>,
    deliveries: &Deliveries,
    decide: fn(&str, i32) -> ConsumeStatus,
) -> PushConsumer {
    let sink = deliveries.clone();
    let mut builder = PushConsumer::builder()
        .namesrv_addr(&broker.namesrv_addr)
        .group(group)
        .subscribe(topic, "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .persist_offset_interval(Duration::from_millis(200))
        .broker_suspend_max_time(Duration::from_secs(1))
        .listener(move |messages: Vec<MessageExt>| {
            let sink = sink.clone();
            async move {
                let mut status = ConsumeStatus::ConsumeSuccess;
                for m in &messages {
                    sink.push(m);
                    let body = String::from_utf8_lossy(m.body()).into_owned();
                    if decide(&body, m.reconsume_times()) == ConsumeStatus::ReconsumeLater {
                        status = ConsumeStatus::ReconsumeLater;
                    }
                }
                status
            }
        });
    if let Some(max) = max_reconsume_times {
        builder = builder.max_reconsume_times(max);
    }
    builder
        .build()
        .expect("push consumer builds")
        .start()
        .await
        .expect("push consumer starts")
}

/// GET_MAX_OFFSET of `topic` queue 0, or 0 while the topic does not exist.
fn max_offset_or_zero(addr: &str, topic: &str) -> i64 {
    let mut conn = RawConn::connect(addr);
    let f = conn.request(
        code::GET_MAX_OFFSET,
        &[("topic", topic.to_string()), ("queueId", "0".to_string())],
        &[],
    );
    if f.code() == 0 {
        f.ext_i64("offset").unwrap_or(0)
    } else {
        0
    }
}

/// PushConsumerRetryTest (v4): with maxReconsumeTimes=0 a concurrent consumer's failed
/// message is not retried within the window; the broker sends the first send-back straight to
/// `%DLQ%<group>` (reconsume times 0 ≥ max 0), and the retry topic stays empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_consumer_retry_test_max_reconsume_times_zero_goes_straight_to_the_dlq() {
    bounded("the max-reconsume-0 test", Duration::from_secs(60), async {
        let topic = "RetryZeroTopic";
        let group = "RetryZeroGroup";
        let broker = broker(Some(FAST_RETRY_CONF), topic, &[group]);
        let deliveries = Deliveries::default();
        let consumer = retrying_consumer(&broker, group, topic, Some(0), &deliveries, |_, _| {
            ConsumeStatus::ReconsumeLater
        })
        .await;
        let producer = vostok_producer(&broker).await;
        vostok_send(&producer, topic, "m", 0..6).await;
        let dlq = format!("%DLQ%{group}");
        let addr = broker.broker_addr.clone();
        let dlq_topic = dlq.clone();
        wait_until(
            "every message reaches the DLQ",
            Duration::from_secs(20),
            || block_in_place(|| max_offset_or_zero(&addr, &dlq_topic)) >= 6,
        )
        .await;
        // With a 1 s ladder a retry would come within 1 s; give it three.
        sleep(Duration::from_secs(3)).await;
        assert_eq!(
            deliveries.snapshot(),
            names("m", 0..6)
                .into_iter()
                .map(|b| (b, 0))
                .collect::<Vec<_>>(),
            "each message delivered once, never retried"
        );
        let (dead, retried) = block_in_place(|| {
            let mut conn = RawConn::connect(&broker.broker_addr);
            let max = max_offset(&mut conn, &dlq, 0);
            let dead = pull_all(&mut conn, "dlq-reader", &dlq, 0, max);
            let retried = max_offset_or_zero(&broker.broker_addr, &format!("%RETRY%{group}"));
            (dead, retried)
        });
        let mut dead_bodies: Vec<String> = dead
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
        dead_bodies.sort();
        assert_eq!(
            dead_bodies,
            names("m", 0..6),
            "the DLQ holds each message once"
        );
        assert_eq!(retried, 0, "nothing went through the retry topic");
        consumer.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

/// Dead letters resent by an operator (`vostok admin resend-dlq`, the dashboard's "resend" of a
/// DLQ message): the chosen messages reach the group again under their original topic, and
/// only that group; an id not in the DLQ is an error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_resend_through_admin_reaches_the_group_again() {
    bounded("the DLQ resend test", Duration::from_secs(60), async {
        let topic = "ResendTopic";
        let group = "ResendGroup";
        let broker = broker(Some(FAST_RETRY_CONF), topic, &[group, "ResendOtherGroup"]);
        // The downstream is broken at first: every delivery fails and, with a max of 0
        // reconsume times, goes straight to the DLQ.
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (flag, sink) = (broken.clone(), seen.clone());
        let consumer = PushConsumer::builder()
            .namesrv_addr(&broker.namesrv_addr)
            .group(group)
            .subscribe(topic, "*")
            .consume_from(ConsumeFromWhere::FirstOffset)
            .max_reconsume_times(0)
            .persist_offset_interval(Duration::from_millis(200))
            .broker_suspend_max_time(Duration::from_secs(1))
            .listener(move |messages: Vec<MessageExt>| {
                let (flag, sink) = (flag.clone(), sink.clone());
                async move {
                    for m in &messages {
                        sink.lock().expect("seen lock").push((
                            String::from_utf8_lossy(m.body()).into_owned(),
                            m.topic().to_owned(),
                        ));
                    }
                    if flag.load(std::sync::atomic::Ordering::SeqCst) {
                        ConsumeStatus::ReconsumeLater
                    } else {
                        ConsumeStatus::ConsumeSuccess
                    }
                }
            })
            .build()
            .expect("push consumer builds")
            .start()
            .await
            .expect("push consumer starts");
        let other = Bodies::default();
        let other_consumer = vostok_consumer(
            &broker,
            "ResendOtherGroup",
            topic,
            ConsumeFromWhere::FirstOffset,
            None,
            &other,
        )
        .await;
        let producer = vostok_producer(&broker).await;
        let mut sent = Vec::new();
        for i in 0..4 {
            let result = producer
                .send(Message::new(topic, format!("m{i}").into_bytes()).with_tags("T"))
                .await
                .expect("send succeeds");
            sent.push(result.msg_id);
        }
        let dlq = format!("%DLQ%{group}");
        let addr = broker.broker_addr.clone();
        wait_until(
            "every message reaches the DLQ",
            Duration::from_secs(20),
            || block_in_place(|| max_offset_or_zero(&addr, &dlq)) >= 4,
        )
        .await;
        other.wait_for("the other group's copies", 4).await;
        broken.store(false, std::sync::atomic::Ordering::SeqCst);
        let deliveries_of = |body: &str| {
            seen.lock()
                .expect("seen lock")
                .iter()
                .filter(|(b, _)| b == body)
                .count()
        };

        let admin = |args: &[&str]| {
            block_in_place(|| {
                std::process::Command::new(env!("CARGO_BIN_EXE_vostok"))
                    .args([
                        "admin",
                        "resend-dlq",
                        "-n",
                        &broker.namesrv_addr,
                        "-g",
                        group,
                    ])
                    .args(args)
                    .output()
                    .expect("run vostok admin")
            })
        };
        // One message, by the id its producer got.
        let output = admin(&["-i", &sent[1]]);
        assert!(output.status.success(), "{output:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains(&sent[1]));
        wait_until("m1 is delivered again", Duration::from_secs(10), || {
            deliveries_of("m1") == 2
        })
        .await;
        sleep(SETTLE).await;
        for other_body in ["m0", "m2", "m3"] {
            assert_eq!(deliveries_of(other_body), 1, "{other_body} was not resent");
        }

        // Everything: each message once more (the DLQ keeps its copies).
        let output = admin(&[]);
        assert!(output.status.success(), "{output:?}");
        wait_until("all are delivered again", Duration::from_secs(10), || {
            ["m0", "m1", "m2", "m3"]
                .iter()
                .map(|b| deliveries_of(b))
                .collect::<Vec<_>>()
                == [2, 3, 2, 2]
        })
        .await;
        sleep(SETTLE).await;
        let seen_now = seen.lock().expect("seen lock").clone();
        assert_eq!(seen_now.len(), 9, "no further deliveries: {seen_now:?}");
        assert!(
            seen_now.iter().all(|(_, t)| t == topic),
            "resent messages arrive under their original topic: {seen_now:?}"
        );
        assert_eq!(other.len(), 4, "the other group got nothing again");

        let output = admin(&["-i", "NOT-A-DEAD-LETTER"]);
        assert!(!output.status.success(), "{output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("NOT-A-DEAD-LETTER"),
            "{output:?}"
        );
        consumer.shutdown().await;
        other_consumer.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

/// PushConsumerRetryTest (v4): a listener that throws (here: panics) means RECONSUME_LATER;
/// every message comes back once through the retry topic and then succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_consumer_retry_test_listener_exception_means_retry() {
    bounded(
        "the listener-panic retry test",
        Duration::from_secs(60),
        async {
            let topic = "RetryPanicTopic";
            let group = "RetryPanicGroup";
            let broker = broker(Some(FAST_RETRY_CONF), topic, &[group]);
            let deliveries = Deliveries::default();
            let consumer =
                retrying_consumer(&broker, group, topic, None, &deliveries, |_, times| {
                    if times == 0 {
                        panic!("the listener fails on the first delivery");
                    }
                    ConsumeStatus::ConsumeSuccess
                })
                .await;
            let producer = vostok_producer(&broker).await;
            vostok_send(&producer, topic, "m", 0..6).await;
            let seen = deliveries.clone();
            wait_until("every message retried", Duration::from_secs(20), || {
                seen.with_times(1).len() >= 6
            })
            .await;
            sleep(SETTLE).await;
            assert_eq!(deliveries.with_times(0), names("m", 0..6));
            assert_eq!(deliveries.with_times(1), names("m", 0..6));
            assert_eq!(deliveries.snapshot().len(), 12, "no third delivery");
            consumer.shutdown().await;
            producer.shutdown().await;
        },
    )
    .await;
}

/// PushConsumerRetryTest: half of the messages fail on their first delivery; exactly that
/// half comes back (reconsume times 1), and first deliveries plus retries match what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_consumer_retry_test_half_fail_first_and_the_retried_half_matches() {
    bounded("the half-retry test", Duration::from_secs(60), async {
        let topic = "RetryHalfTopic";
        let group = "RetryHalfGroup";
        let broker = broker(Some(FAST_RETRY_CONF), topic, &[group]);
        let deliveries = Deliveries::default();
        fn fails_first(body: &str) -> bool {
            body.ends_with(['0', '2', '4', '6', '8'])
        }
        let consumer =
            retrying_consumer(&broker, group, topic, None, &deliveries, |body, times| {
                if times == 0 && fails_first(body) {
                    ConsumeStatus::ReconsumeLater
                } else {
                    ConsumeStatus::ConsumeSuccess
                }
            })
            .await;
        let producer = vostok_producer(&broker).await;
        let n = 10;
        vostok_send(&producer, topic, "m", 0..n).await;
        let failed: Vec<String> = names("m", 0..n)
            .into_iter()
            .filter(|b| fails_first(b))
            .collect();
        assert_eq!(failed.len(), n / 2);
        let seen = deliveries.clone();
        wait_until("the failed half retried", Duration::from_secs(20), || {
            seen.with_times(1).len() >= n / 2
        })
        .await;
        sleep(SETTLE).await;
        assert_eq!(
            deliveries.with_times(0),
            names("m", 0..n),
            "every first delivery"
        );
        assert_eq!(
            deliveries.with_times(1),
            failed,
            "exactly the failed half again"
        );
        assert_eq!(deliveries.snapshot().len(), n + n / 2, "nothing else");
        consumer.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// SqlFilterTest with the real client
// ---------------------------------------------------------------------------------------------

/// SqlFilterTest (both suites), on a broker with enablePropertyFilter=true: over 10 messages
/// with price=10 and 10 with price=30, `price>20` gets exactly the 10 dearer ones, a filter on
/// a property no message has gets nothing, and `TRUE` (no filter) gets all 20 (real client, one
/// group per selector).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_filter_test_price_above_20_and_unknown_property() {
    use rocketmq_client_rust::MessageSelector;
    bounded("the SQL filter test", Duration::from_secs(60), async {
        let topic = "SqlPriceTopic";
        let (dear, unknown, all) = ("SqlPriceGroup", "SqlUnknownGroup", "SqlTrueGroup");
        let broker = broker(
            Some("enablePropertyFilter=true\n"),
            topic,
            &[dear, unknown, all],
        );
        let producer = real_producer(&broker, topic).await;
        for (price, prefix) in [(10, "cheap"), (30, "dear")] {
            for i in 0..10 {
                let body = format!("{prefix}-{i:03}");
                let message = RealMessage::builder()
                    .topic(topic)
                    .tags("T")
                    .body_slice(body.as_bytes())
                    .raw_property("price", price.to_string())
                    .expect("user property is allowed")
                    .build_unchecked();
                let sent = producer
                    .send(message)
                    .await
                    .expect("send succeeds")
                    .expect("send returns a result");
                assert_eq!(sent.send_status, SendStatus::SendOk, "{body}");
            }
        }
        let mut running = Vec::new();
        for (group, sql) in [(dear, "price > 20"), (unknown, "weight > 0"), (all, "TRUE")] {
            let sink = Bodies::default();
            let mut consumer = push_consumer_builder(&broker.namesrv_addr, group)
                .consume_from_where(RealFrom::ConsumeFromFirstOffset)
                .build();
            consumer
                .subscribe_with_selector(topic, Some(MessageSelector::by_sql(sql)))
                .await
                .expect("subscribes with an SQL92 selector");
            consumer.register_message_listener_concurrently(sink.clone());
            consumer.start().await.expect("consumer starts");
            running.push((consumer, sink));
        }
        running[0].1.wait_for("the dear messages", 10).await;
        running[2].1.wait_for("every message", 20).await;
        // The other group has had as long; both must stay as they are.
        wait_committed_to_end(&broker, unknown, topic).await;
        sleep(SETTLE).await;
        assert_eq!(running[0].1.sorted(), names("dear", 0..10), "price > 20");
        assert_eq!(
            running[1].1.sorted(),
            Vec::<String>::new(),
            "unknown property"
        );
        let mut everything = names("cheap", 0..10);
        everything.extend(names("dear", 0..10));
        assert_eq!(running[2].1.sorted(), everything, "TRUE");
        for (mut c, _) in running {
            c.shutdown().await;
        }
    })
    .await;
}
