//! Black-box tests of Vostok's own Rust client (`vostok::client`) against `vostok standalone`,
//! and of its wire compatibility with the published RocketMQ Rust client
//! (`rocketmq-client-rust` 1.0.0) in both directions.
//!
//! Every test starts its own broker on free loopback ports with a fresh data directory, is bounded
//! in time (it fails naming the step that timed out) and uses unique topic and group names.
//! Broker-side state (max offsets, committed offsets, stored records) is read with the raw frame
//! client in `common`, so assertions do not depend on client-side caches.
#![recursion_limit = "256"]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::block_in_place;
use tokio::time::{sleep, timeout, Instant};
use vostok::client::{
    ConsumeFromWhere, ConsumeStatus, Message, MessageExt, MessageModel, MessageQueue, Producer,
    PullConsumer, PushConsumer, SendResult, SendStatus,
};

use common::*;

/// Default bound for one test.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Queues per test topic (RocketMQ's default).
const QUEUES: u32 = 4;
/// Time to keep listening after the expected messages arrived, to catch duplicates.
const SETTLE: Duration = Duration::from_secs(2);

/// Runs a test body with a deadline. Client logs go to the test output (`RUST_LOG`).
async fn bounded<F: Future<Output = ()>>(name: &str, limit: Duration, body: F) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    if timeout(limit, body).await.is_err() {
        panic!("{name}: test did not finish within {limit:?}");
    }
}

/// Polls `check` every 50 ms until it returns true; panics with `what` at the deadline.
async fn wait_until<F: FnMut() -> bool>(what: &str, limit: Duration, mut check: F) {
    let deadline = Instant::now() + limit;
    while !check() {
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// A broker with `topic` created with [`QUEUES`] queues and its route published.
fn broker_with_topic(topic: &str) -> Standalone {
    block_in_place(|| {
        let broker = Standalone::start();
        create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, QUEUES);
        broker
    })
}

async fn producer(namesrv: &str) -> Producer {
    Producer::builder()
        .namesrv_addr(namesrv)
        .group(&unique("pg"))
        .send_timeout(Duration::from_secs(10))
        .build()
        .expect("producer builds")
        .start()
        .await
        .expect("producer starts")
}

// ---------------------------------------------------------------------------------------------
// Test messages (their parts are in `common`).

fn test_message(topic: &str, seq: usize) -> Message {
    let mut m = Message::new(topic, body_for(seq))
        .with_tags(&tag_for(seq))
        .with_keys(&keys_for(seq).join(" "));
    for (k, v) in props_for(seq) {
        m = m.with_property(&k, &v);
    }
    m
}

/// What a consumer saw of one message, from either client.
#[derive(Clone, Debug)]
struct Received {
    seq: usize,
    body: Vec<u8>,
    tags: Option<String>,
    keys: Option<String>,
    properties: BTreeMap<String, String>,
    topic: String,
    /// The topic of the queue it was pulled from (`%RETRY%<group>` for a redelivery).
    queue_topic: String,
    queue_id: i32,
    queue_offset: i64,
    reconsume_times: i32,
    msg_id: String,
}

impl Received {
    fn from_vostok(m: &MessageExt) -> Option<Received> {
        let seq = m.property("seq")?.parse().ok()?;
        Some(Received {
            seq,
            body: m.body().to_vec(),
            tags: m.tags().map(str::to_owned),
            keys: m.keys().map(str::to_owned),
            properties: m
                .record
                .properties
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            topic: m.topic().to_owned(),
            queue_topic: m.queue.topic.clone(),
            queue_id: m.queue.queue_id,
            queue_offset: m.queue_offset(),
            reconsume_times: m.reconsume_times(),
            msg_id: m.msg_id(),
        })
    }

    fn from_rocketmq(m: &rocketmq_model::common::message::message_ext::MessageExt) -> Option<Self> {
        let inner = &m.message;
        let seq = inner.property("seq")?.parse().ok()?;
        Some(Received {
            seq,
            body: inner.body_slice().to_vec(),
            tags: inner.tags().map(str::to_string),
            keys: inner.keys().map(|k| k.join(" ")),
            properties: m
                .properties()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            topic: inner.topic().to_string(),
            queue_topic: inner.topic().to_string(),
            queue_id: m.queue_id(),
            queue_offset: m.queue_offset(),
            reconsume_times: m.reconsume_times(),
            msg_id: m
                .property("UNIQ_KEY")
                .map(|id| id.to_string())
                .unwrap_or_else(|| m.msg_id().to_string()),
        })
    }

    /// Asserts that body, tag, keys and user properties are exactly what was sent.
    fn assert_exact(&self) {
        let seq = self.seq;
        assert_eq!(self.body, body_for(seq), "body of message {seq} differs");
        assert_eq!(
            self.tags.as_deref(),
            Some(tag_for(seq).as_str()),
            "tag of {seq}"
        );
        assert_eq!(
            self.keys.as_deref(),
            Some(keys_for(seq).join(" ").as_str()),
            "keys of {seq}"
        );
        for (k, v) in props_for(seq) {
            assert_eq!(
                self.properties.get(&k),
                Some(&v),
                "user property {k:?} of message {seq} differs"
            );
        }
    }
}

/// Records every message carrying a `seq` property.
#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    fn push(&self, r: Received) {
        self.received.lock().expect("collector lock").push(r);
    }

    fn snapshot(&self) -> Vec<Received> {
        self.received.lock().expect("collector lock").clone()
    }

    fn distinct(&self) -> usize {
        self.snapshot()
            .iter()
            .map(|r| r.seq)
            .collect::<BTreeSet<_>>()
            .len()
    }

    fn seqs(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.snapshot().iter().map(|r| r.seq).collect();
        v.sort_unstable();
        v
    }

    fn assert_exactly_once(&self, expected: &BTreeSet<usize>, who: &str) {
        let seqs = self.seqs();
        let distinct: BTreeSet<usize> = seqs.iter().copied().collect();
        assert_eq!(
            &distinct, expected,
            "{who}: set of received messages differs"
        );
        assert_eq!(
            seqs.len(),
            expected.len(),
            "{who}: duplicates received: {seqs:?}"
        );
    }
}

/// A push consumer of `topic` from its first offset, collecting into `collector`.
async fn push_consumer(
    namesrv: &str,
    group: &str,
    topic: &str,
    model: MessageModel,
    collector: &Collector,
) -> PushConsumer {
    let sink = collector.clone();
    PushConsumer::builder()
        .namesrv_addr(namesrv)
        .group(group)
        .subscribe(topic, "*")
        .message_model(model)
        .consume_from(ConsumeFromWhere::FirstOffset)
        .rebalance_interval(Duration::from_secs(1))
        .listener(move |messages: Vec<MessageExt>| {
            let sink = sink.clone();
            async move {
                for m in &messages {
                    if let Some(r) = Received::from_vostok(m) {
                        sink.push(r);
                    }
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

fn broker_max_offsets(broker_addr: &str, topic: &str) -> Vec<i64> {
    block_in_place(|| {
        let mut conn = RawConn::connect(broker_addr);
        (0..QUEUES as i32)
            .map(|q| max_offset(&mut conn, topic, q))
            .collect()
    })
}

fn assert_send_ok(result: &SendResult, topic: &str, what: &str) {
    assert_eq!(result.status, SendStatus::SendOk, "{what}");
    assert!(!result.msg_id.is_empty(), "{what}: a msg id");
    assert_eq!(result.queue.topic, topic, "{what}: queue topic");
    assert!(
        (0..QUEUES as i32).contains(&result.queue.queue_id),
        "{what}: queue {}",
        result.queue
    );
}

// ---------------------------------------------------------------------------------------------
// 1. every kind of send, consumed exactly once by a push consumer

/// Goal: sync, async (futures and callbacks), oneway and batch sends all store their messages,
/// and a push consumer delivers each exactly once with its body, tags, keys and properties
/// intact. Method: send 23 messages five ways, check the results and the broker's max offsets,
/// then consume from the first offset and keep listening a little for duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_send_is_consumed_exactly_once() {
    bounded("every_kind_of_send", TEST_TIMEOUT, async {
        let topic = unique("CSend");
        let broker = broker_with_topic(&topic);
        let producer = producer(&broker.namesrv_addr).await;
        let mut placed: BTreeSet<(i32, i64)> = BTreeSet::new();
        let mut place = |r: &SendResult| {
            assert!(
                placed.insert((r.queue.queue_id, r.queue_offset)),
                "two sends share {} offset {}",
                r.queue,
                r.queue_offset
            );
        };

        // Sync.
        for seq in 0..5 {
            let r = producer
                .send(test_message(&topic, seq))
                .await
                .unwrap_or_else(|e| panic!("sync send {seq}: {e}"));
            assert_send_ok(&r, &topic, &format!("sync send {seq}"));
            place(&r);
        }
        // Async futures: all submitted before any is awaited.
        let futures: Vec<_> = (5..10)
            .map(|seq| producer.send_async(test_message(&topic, seq)))
            .collect();
        for (seq, future) in (5..10).zip(futures) {
            let r = future
                .await
                .unwrap_or_else(|e| panic!("async send {seq}: {e}"));
            assert_send_ok(&r, &topic, &format!("async send {seq}"));
            place(&r);
        }
        // Callbacks.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for seq in 10..13 {
            let tx = tx.clone();
            producer.send_with_callback(test_message(&topic, seq), move |result| {
                let _ = tx.send((seq, result));
            });
        }
        drop(tx);
        let mut called_back = BTreeSet::new();
        while let Some((seq, result)) = rx.recv().await {
            let r = result.unwrap_or_else(|e| panic!("callback send {seq}: {e}"));
            assert_send_ok(&r, &topic, &format!("callback send {seq}"));
            place(&r);
            called_back.insert(seq);
        }
        assert_eq!(called_back, (10..13).collect(), "every callback ran once");
        // Oneway.
        for seq in 13..18 {
            producer
                .send_oneway(test_message(&topic, seq))
                .await
                .unwrap_or_else(|e| panic!("oneway send {seq}: {e}"));
        }
        // Batch: one queue, consecutive offsets.
        let batch: Vec<Message> = (18..23).map(|seq| test_message(&topic, seq)).collect();
        let r = producer.send_batch(batch).await.expect("batch send");
        assert_send_ok(&r, &topic, "batch send");
        assert_eq!(
            r.msg_id.split(',').count(),
            5,
            "one id per batched message: {}",
            r.msg_id
        );
        for i in 0..5 {
            place(&SendResult {
                queue_offset: r.queue_offset + i,
                ..r.clone()
            });
        }

        let n = 23;
        let broker_addr = broker.broker_addr.clone();
        let topic2 = topic.clone();
        wait_until("all 23 messages stored", Duration::from_secs(10), || {
            broker_max_offsets(&broker_addr, &topic2)
                .iter()
                .sum::<i64>()
                == n as i64
        })
        .await;
        let max = broker_max_offsets(&broker.broker_addr, &topic);
        for (q, offset) in &placed {
            assert!(
                *offset < max[*q as usize],
                "offset {offset} of queue {q} not stored"
            );
        }

        let collector = Collector::default();
        let consumer = push_consumer(
            &broker.namesrv_addr,
            &unique("cg"),
            &topic,
            MessageModel::Clustering,
            &collector,
        )
        .await;
        wait_until("23 messages consumed", Duration::from_secs(20), || {
            collector.distinct() == n
        })
        .await;
        sleep(SETTLE).await;
        collector.assert_exactly_once(&(0..n).collect(), "push consumer");
        for r in collector.snapshot() {
            r.assert_exact();
            assert_eq!(r.topic, topic);
            assert_eq!(r.reconsume_times, 0);
            assert_eq!(r.properties.get("UNIQ_KEY"), Some(&r.msg_id));
        }
        consumer.shutdown().await;
        producer.shutdown().await;
        // A shut-down producer refuses politely.
        let refused = producer.send(test_message(&topic, 99)).await;
        assert_eq!(refused, Err(vostok::client::ClientError::ShutDown));
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. two consumers of one group split the queues

/// Goal: two push consumers of one group split the topic's queues between them (rebalance) and
/// together receive every message exactly once. Method: start both, wait until their
/// assignments are disjoint and cover all queues, send 40 messages, check each consumer only
/// saw its own queues and the union is exactly the 40.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_push_consumers_of_a_group_split_the_queues() {
    bounded("two_consumers_split", TEST_TIMEOUT, async {
        let topic = unique("CSplit");
        let group = unique("cg_split");
        let broker = broker_with_topic(&topic);
        let (ca, cb) = (Collector::default(), Collector::default());
        let own = |queues: Vec<MessageQueue>| -> BTreeSet<i32> {
            queues
                .into_iter()
                .filter(|q| q.topic == topic)
                .map(|q| q.queue_id)
                .collect()
        };
        let a = push_consumer(
            &broker.namesrv_addr,
            &group,
            &topic,
            MessageModel::Clustering,
            &ca,
        )
        .await;
        // The second joins once the first runs: the broker keeps the subscription version of
        // the latest heartbeat, so the later (newer) one must heartbeat last.
        let deadline = Instant::now() + Duration::from_secs(10);
        while own(a.assigned_queues().await.expect("a runs")).len() < QUEUES as usize {
            assert!(
                Instant::now() < deadline,
                "the first consumer never took the queues"
            );
            sleep(Duration::from_millis(50)).await;
        }
        let b = push_consumer(
            &broker.namesrv_addr,
            &group,
            &topic,
            MessageModel::Clustering,
            &cb,
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let (qa, qb) = loop {
            let qa = own(a.assigned_queues().await.expect("a runs"));
            let qb = own(b.assigned_queues().await.expect("b runs"));
            let all: BTreeSet<i32> = qa.union(&qb).copied().collect();
            if qa.len() == 2 && qb.len() == 2 && all.len() == QUEUES as usize {
                break (qa, qb);
            }
            assert!(
                Instant::now() < deadline,
                "queues never split: a={qa:?} b={qb:?}"
            );
            sleep(Duration::from_millis(100)).await;
        };

        let producer = producer(&broker.namesrv_addr).await;
        let n = 40;
        for seq in 0..n {
            producer
                .send(test_message(&topic, seq))
                .await
                .unwrap_or_else(|e| panic!("send {seq}: {e}"));
        }
        wait_until(
            "40 messages consumed by the group",
            Duration::from_secs(20),
            || ca.distinct() + cb.distinct() >= n,
        )
        .await;
        sleep(SETTLE).await;
        let all = Collector::default();
        for r in ca.snapshot().into_iter().chain(cb.snapshot()) {
            all.push(r);
        }
        all.assert_exactly_once(&(0..n).collect(), "the group");
        assert!(
            ca.distinct() > 0 && cb.distinct() > 0,
            "both consumers got messages"
        );
        for r in ca.snapshot() {
            assert!(
                qa.contains(&r.queue_id),
                "a got queue {} outside {qa:?}",
                r.queue_id
            );
        }
        for r in cb.snapshot() {
            assert!(
                qb.contains(&r.queue_id),
                "b got queue {} outside {qb:?}",
                r.queue_id
            );
        }
        a.shutdown().await;
        b.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. ordered sends

/// Goal: sends through a queue selector land on one queue, in sending order; the hash selector
/// picks the queue Java's `SelectMessageQueueByHash` picks. Method: 20 sends with one sharding
/// key, 5 with a closure picking the last queue; compare the results and the stored records
/// (read with raw pulls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_sends_land_on_one_queue_in_order() {
    bounded("ordered_sends", TEST_TIMEOUT, async {
        let topic = unique("COrder");
        let broker = broker_with_topic(&topic);
        let producer = producer(&broker.namesrv_addr).await;
        let key = "order-42";
        // Java: abs("order-42".hashCode() % 4).
        let java_hash = key
            .encode_utf16()
            .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(u as i32));
        let expected_queue = (java_hash % QUEUES as i32).abs();
        let mut offsets = Vec::new();
        for seq in 0..20 {
            let r = producer
                .send_orderly(test_message(&topic, seq), key)
                .await
                .unwrap_or_else(|e| panic!("ordered send {seq}: {e}"));
            assert_eq!(r.queue.queue_id, expected_queue, "ordered send {seq}");
            offsets.push(r.queue_offset);
        }
        assert_eq!(
            offsets,
            (0..20).collect::<Vec<i64>>(),
            "consecutive offsets"
        );
        for seq in 20..25 {
            let r = producer
                .send_with_selector(test_message(&topic, seq), |queues| queues.len() - 1)
                .await
                .unwrap_or_else(|e| panic!("selector send {seq}: {e}"));
            assert_eq!(r.queue.queue_id, QUEUES as i32 - 1, "selector send {seq}");
        }
        let queues = producer.queues(&topic).await.expect("queues");
        assert_eq!(queues.len(), QUEUES as usize);
        let stored = block_in_place(|| {
            let mut conn = RawConn::connect(&broker.broker_addr);
            let in_order = pull_all(&mut conn, "check", &topic, expected_queue, 20);
            let last = pull_all(&mut conn, "check", &topic, QUEUES as i32 - 1, 5);
            (in_order, last)
        });
        let seqs_of = |records: &[StoredRecord]| -> Vec<usize> {
            records
                .iter()
                .map(|r| {
                    let props: BTreeMap<_, _> = r.properties.iter().cloned().collect();
                    props["seq"].parse().expect("seq property")
                })
                .collect()
        };
        assert_eq!(seqs_of(&stored.0), (0..20).collect::<Vec<_>>());
        let last = seqs_of(&stored.1);
        assert_eq!(&last[last.len() - 5..], &[20, 21, 22, 23, 24]);
        producer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 4. pull consumer: poll, commit, resume, seek

/// Goal: a lite pull consumer polls what is stored, commits its positions to the broker, and a
/// new consumer of the group resumes exactly there; seek moves a queue's position back. Method:
/// 20 messages; the first consumer polls at least 8, commits and stops; the broker's committed
/// offsets must equal its positions; the second gets exactly the rest; then seeks queue 0 back
/// to 0 and gets its first message again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_consumer_commits_and_a_successor_resumes() {
    bounded("pull_consumer", TEST_TIMEOUT, async {
        let topic = unique("CPull");
        let group = unique("cg_pull");
        let broker = broker_with_topic(&topic);
        let producer = producer(&broker.namesrv_addr).await;
        let n = 20;
        for seq in 0..n {
            producer
                .send(test_message(&topic, seq))
                .await
                .unwrap_or_else(|e| panic!("send {seq}: {e}"));
        }
        let start = || async {
            PullConsumer::builder()
                .namesrv_addr(&broker.namesrv_addr)
                .group(&group)
                .consume_from(ConsumeFromWhere::FirstOffset)
                .auto_commit(false)
                .pull_batch_size(4)
                .build()
                .expect("pull consumer builds")
                .start()
                .await
                .expect("pull consumer starts")
        };
        let first = start().await;
        let queues = first.queues(&topic).await.expect("queues of the topic");
        assert_eq!(queues.len(), QUEUES as usize, "{queues:?}");
        first.assign(queues.clone()).await.expect("assign");
        let got_first = Collector::default();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got_first.distinct() < 8 {
            assert!(
                Instant::now() < deadline,
                "first consumer polled {:?}",
                got_first.seqs()
            );
            let polled = first.poll(Duration::from_millis(500)).await.expect("poll");
            assert!(polled.len() <= 4, "poll returns at most pull_batch_size");
            for m in &polled {
                got_first.push(Received::from_vostok(m).expect("a test message"));
            }
        }
        let mut positions = BTreeMap::new();
        for q in &queues {
            positions.insert(
                q.queue_id,
                first
                    .committed_offset(q)
                    .await
                    .expect("running")
                    .unwrap_or(0),
            );
        }
        first.commit().await.expect("commit");
        first.shutdown().await;
        let committed = block_in_place(|| {
            let mut conn = RawConn::connect(&broker.broker_addr);
            (0..QUEUES as i32)
                .map(|q| {
                    (
                        q,
                        committed_offset(&mut conn, &group, &topic, q).unwrap_or(0),
                    )
                })
                .collect::<BTreeMap<_, _>>()
        });
        assert_eq!(
            committed, positions,
            "the broker holds the consumer's positions"
        );
        for r in got_first.snapshot() {
            assert!(
                r.queue_offset < positions[&r.queue_id],
                "polled past its position"
            );
            r.assert_exact();
        }

        let second = start().await;
        second.assign(queues.clone()).await.expect("assign");
        let got_second = Collector::default();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got_first.distinct() + got_second.distinct() < n {
            assert!(
                Instant::now() < deadline,
                "second consumer polled {:?}",
                got_second.seqs()
            );
            for m in second.poll(Duration::from_millis(500)).await.expect("poll") {
                got_second.push(Received::from_vostok(&m).expect("a test message"));
            }
        }
        for r in got_second.snapshot() {
            assert!(
                r.queue_offset >= positions[&r.queue_id],
                "message {} at {} was committed already",
                r.seq,
                r.queue_offset
            );
        }
        let all = Collector::default();
        for r in got_first
            .snapshot()
            .into_iter()
            .chain(got_second.snapshot())
        {
            all.push(r);
        }
        all.assert_exactly_once(&(0..n).collect(), "the two pull consumers");

        // Seek queue 0 back to its start: its first message comes again.
        let q0 = queues
            .iter()
            .find(|q| q.queue_id == 0)
            .expect("queue 0")
            .clone();
        let first_of_q0 = all
            .snapshot()
            .into_iter()
            .find(|r| r.queue_id == 0 && r.queue_offset == 0)
            .expect("queue 0 holds messages");
        second.seek(&q0, 0).await.expect("seek");
        let deadline = Instant::now() + Duration::from_secs(10);
        'again: loop {
            assert!(Instant::now() < deadline, "seek did not redeliver offset 0");
            for m in second.poll(Duration::from_millis(500)).await.expect("poll") {
                if m.queue.queue_id == 0 && m.queue_offset() == 0 {
                    assert_eq!(m.msg_id(), first_of_q0.msg_id);
                    break 'again;
                }
            }
        }
        second.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 5. broadcasting

/// Goal: in broadcasting mode every consumer of a group receives every message. Method: two
/// consumers of one group, 20 messages, each must see all 20 exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_consumers_each_receive_everything() {
    bounded("broadcast", TEST_TIMEOUT, async {
        let topic = unique("CBroadcast");
        let group = unique("cg_bc");
        let broker = broker_with_topic(&topic);
        let (ca, cb) = (Collector::default(), Collector::default());
        let a = push_consumer(
            &broker.namesrv_addr,
            &group,
            &topic,
            MessageModel::Broadcasting,
            &ca,
        )
        .await;
        // The second joins once the first runs (see two_push_consumers_of_a_group_split_the_queues).
        let deadline = Instant::now() + Duration::from_secs(10);
        while a.assigned_queues().await.expect("a runs").len() < QUEUES as usize {
            assert!(
                Instant::now() < deadline,
                "the first consumer never took the queues"
            );
            sleep(Duration::from_millis(50)).await;
        }
        let b = push_consumer(
            &broker.namesrv_addr,
            &group,
            &topic,
            MessageModel::Broadcasting,
            &cb,
        )
        .await;
        let producer = producer(&broker.namesrv_addr).await;
        let n = 20;
        for seq in 0..n {
            producer
                .send(test_message(&topic, seq))
                .await
                .unwrap_or_else(|e| panic!("send {seq}: {e}"));
        }
        wait_until("both consumers got all 20", Duration::from_secs(20), || {
            ca.distinct() == n && cb.distinct() == n
        })
        .await;
        sleep(SETTLE).await;
        ca.assert_exactly_once(&(0..n).collect(), "broadcast consumer a");
        cb.assert_exactly_once(&(0..n).collect(), "broadcast consumer b");
        a.shutdown().await;
        b.shutdown().await;
        // Broadcasting offsets stay with the consumer: all 20 messages are behind them.
        let local = a.local_offsets();
        assert_eq!(local.values().sum::<i64>(), n as i64, "{local:?}");
        // Broadcasting keeps offsets locally: nothing committed on the broker.
        let committed = block_in_place(|| {
            let mut conn = RawConn::connect(&broker.broker_addr);
            (0..QUEUES as i32)
                .filter_map(|q| committed_offset(&mut conn, &group, &topic, q))
                .count()
        });
        assert_eq!(committed, 0, "broadcasting commits nothing to the broker");
        producer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 6. ReconsumeLater

/// Goal: a batch answered `ReconsumeLater` is delivered again, marked as a redelivery, under its
/// original topic, and nothing is lost. Method: the listener refuses every message the first
/// time; each must come back once with `reconsume_times` 1 and is then accepted. The broker
/// takes CONSUMER_SEND_MSG_BACK: the copies in `%RETRY%<group>` (which the consumer subscribes
/// automatically) are the broker's (`WAIT=false`), not the client's fallback re-send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconsume_later_redelivers_the_message() {
    bounded("reconsume_later", TEST_TIMEOUT, async {
        let topic = unique("CRetry");
        let group = unique("cg_retry");
        let broker = broker_with_topic(&topic);
        let collector = Collector::default();
        let sink = collector.clone();
        let consumer = PushConsumer::builder()
            .namesrv_addr(&broker.namesrv_addr)
            .group(&group)
            .subscribe(&topic, "*")
            .consume_from(ConsumeFromWhere::FirstOffset)
            // The retry topic is created by the broker on the first heartbeat, after the
            // consumer's first route query: a short refresh finds it within the test's time.
            .route_refresh_interval(Duration::from_secs(1))
            .listener(move |messages: Vec<MessageExt>| {
                let sink = sink.clone();
                async move {
                    let mut status = ConsumeStatus::ConsumeSuccess;
                    for m in &messages {
                        if let Some(r) = Received::from_vostok(m) {
                            if r.reconsume_times == 0 {
                                status = ConsumeStatus::ReconsumeLater;
                            }
                            sink.push(r);
                        }
                    }
                    status
                }
            })
            .build()
            .expect("builds")
            .start()
            .await
            .expect("starts");
        let producer = producer(&broker.namesrv_addr).await;
        let n = 5;
        for seq in 0..n {
            producer
                .send(test_message(&topic, seq))
                .await
                .unwrap_or_else(|e| panic!("send {seq}: {e}"));
        }
        wait_until("every message redelivered", Duration::from_secs(40), || {
            collector
                .snapshot()
                .iter()
                .filter(|r| r.reconsume_times == 1)
                .count()
                >= n
        })
        .await;
        sleep(SETTLE).await;
        let all = collector.snapshot();
        for seq in 0..n {
            let copies: Vec<&Received> = all.iter().filter(|r| r.seq == seq).collect();
            let times: Vec<i32> = copies.iter().map(|r| r.reconsume_times).collect();
            assert_eq!(times, vec![0, 1], "deliveries of {seq}");
            for r in &copies {
                assert_eq!(r.topic, topic, "delivered under its original topic");
                r.assert_exact();
            }
            assert_eq!(copies[0].queue_topic, topic);
            assert_eq!(
                copies[1].queue_topic,
                format!("%RETRY%{group}"),
                "redelivered through the group's retry topic"
            );
        }
        let retry_topic = format!("%RETRY%{group}");
        let stored = block_in_place(|| {
            let mut conn = RawConn::connect(&broker.broker_addr);
            let max = max_offset(&mut conn, &retry_topic, 0);
            pull_all(&mut conn, "inspector", &retry_topic, 0, max)
        });
        assert_eq!(stored.len(), n, "one broker-made copy per message");
        for record in &stored {
            let props: BTreeMap<&str, &str> = record
                .properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(props.get("WAIT"), Some(&"false"), "{props:?}");
            assert_eq!(props.get("RETRY_TOPIC"), Some(&topic.as_str()));
            assert_eq!(
                props.get("RECONSUME_TIME"),
                None,
                "not the client's re-send"
            );
        }
        consumer.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 7. interoperability with rocketmq-client-rust

mod rocketmq {
    pub use rocketmq_client_rust::{
        ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, MQPushConsumer,
        MessageListenerConcurrently, SendStatus,
    };
    pub use rocketmq_model::common::message::message_ext::MessageExt;
    pub use rocketmq_model::common::message::message_single::Message;
}

/// The collector as a listener of the RocketMQ client.
impl rocketmq::MessageListenerConcurrently for Collector {
    fn consume_message(
        &self,
        msgs: &[&rocketmq::MessageExt],
        _context: &rocketmq::ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<rocketmq::ConsumeConcurrentlyStatus> {
        for m in msgs {
            if let Some(r) = Received::from_rocketmq(m) {
                self.push(r);
            }
        }
        Ok(rocketmq::ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// Goal: what Vostok's producer sends, the RocketMQ Rust client reads byte for byte (sync and
/// batch sends), so the wire format is RocketMQ's. Method: 10 single sends and a batch of 5; a
/// `DefaultMQPushConsumer` from the first offset must receive all 15 intact, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_client_reads_what_vostok_sends() {
    bounded("vostok_to_rocketmq", TEST_TIMEOUT, async {
        let topic = unique("CInteropOut");
        let broker = broker_with_topic(&topic);
        let producer = producer(&broker.namesrv_addr).await;
        let mut ids = BTreeMap::new();
        for seq in 0..10 {
            let r = producer
                .send(test_message(&topic, seq))
                .await
                .unwrap_or_else(|e| panic!("send {seq}: {e}"));
            ids.insert(seq, r.msg_id);
        }
        let batch = producer
            .send_batch((10..15).map(|seq| test_message(&topic, seq)).collect())
            .await
            .expect("batch send");
        for (seq, id) in (10..15).zip(batch.msg_id.split(',')) {
            ids.insert(seq, id.to_owned());
        }
        producer.shutdown().await;

        use rocketmq::MQPushConsumer as _;
        let collector = Collector::default();
        let mut consumer = push_consumer_builder(&broker.namesrv_addr, &unique("cg_rmq")).build();
        consumer
            .subscribe(&topic, "*")
            .await
            .expect("rocketmq consumer subscribes");
        consumer.register_message_listener_concurrently(collector.clone());
        consumer.start().await.expect("rocketmq consumer starts");
        wait_until(
            "rocketmq consumer got all 15",
            Duration::from_secs(30),
            || collector.distinct() == 15,
        )
        .await;
        sleep(SETTLE).await;
        collector.assert_exactly_once(&(0..15).collect(), "rocketmq push consumer");
        for r in collector.snapshot() {
            r.assert_exact();
            assert_eq!(r.topic, topic);
            assert_eq!(Some(&r.msg_id), ids.get(&r.seq), "UNIQ_KEY of {}", r.seq);
        }
        consumer.shutdown().await;
    })
    .await;
}

/// Goal: what the RocketMQ Rust client sends, Vostok's push consumer delivers intact. Method:
/// `DefaultMQProducer` sends 15 messages; a Vostok push consumer from the first offset must
/// receive each exactly once with body, tags, keys and properties as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vostok_consumer_reads_what_rocketmq_sends() {
    bounded("rocketmq_to_vostok", TEST_TIMEOUT, async {
        let topic = unique("CInteropIn");
        let broker = broker_with_topic(&topic);
        let mut producer = start_producer_in(&broker.namesrv_addr, &unique("pg_rmq")).await;
        let n = 15;
        let mut ids = BTreeMap::new();
        for seq in 0..n {
            let mut builder = rocketmq::Message::builder()
                .topic(&topic)
                .tags(tag_for(seq))
                .keys(keys_for(seq))
                .body(body_for(seq));
            for (k, v) in props_for(seq) {
                builder = builder.raw_property(k, v).expect("user property");
            }
            let result = producer
                .send(builder.build_unchecked())
                .await
                .unwrap_or_else(|e| panic!("rocketmq send {seq}: {e}"))
                .unwrap_or_else(|| panic!("rocketmq send {seq} returned no result"));
            assert_eq!(result.send_status, rocketmq::SendStatus::SendOk);
            ids.insert(seq, result.msg_id.map(|id| id.to_string()));
        }
        producer.shutdown().await;

        let collector = Collector::default();
        let consumer = push_consumer(
            &broker.namesrv_addr,
            &unique("cg_in"),
            &topic,
            MessageModel::Clustering,
            &collector,
        )
        .await;
        wait_until("15 messages consumed", Duration::from_secs(20), || {
            collector.distinct() == n
        })
        .await;
        sleep(SETTLE).await;
        collector.assert_exactly_once(&(0..n).collect(), "vostok push consumer");
        for r in collector.snapshot() {
            r.assert_exact();
            assert_eq!(
                Some(Some(r.msg_id.clone())),
                ids.get(&r.seq).cloned(),
                "msg id of {}",
                r.seq
            );
        }
        consumer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 8. the injected clock

/// A clock one day ahead of the system clock (never going backwards, like the system one).
struct AheadClock(vostok::client::SystemClock);

impl vostok::client::Clock for AheadClock {
    fn now_ms(&self) -> u64 {
        self.0.now_ms() + 86_400_000
    }
}

/// Goal: the client reads time only from its injected clock (what the simulator relies on).
/// Method: a producer with a clock one day ahead sends a message; the stored record's born
/// timestamp is a day ahead too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injected_clock_stamps_what_is_sent() {
    bounded("injected_clock", TEST_TIMEOUT, async {
        let topic = unique("CClock");
        let broker = broker_with_topic(&topic);
        let producer = Producer::builder()
            .namesrv_addr(&broker.namesrv_addr)
            .clock(Arc::new(AheadClock(Default::default())))
            .build()
            .expect("builds")
            .start()
            .await
            .expect("starts");
        let before_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64;
        let queues = producer.queues(&topic).await.expect("queues");
        let r = producer
            .send_to_queue(test_message(&topic, 0), queues[1].clone())
            .await
            .expect("send to queue 1");
        assert_eq!(r.queue.queue_id, 1);
        producer.shutdown().await;
        let (frame, _) = block_in_place(|| {
            let mut conn = RawConn::connect(&broker.broker_addr);
            pull(&mut conn, "check", &topic, 1, 0)
        });
        assert_eq!(frame.code(), 0, "pull: {:?}", frame.header);
        let record = vostok_core::message::MessageRecord::decode(&frame.body.clone().into(), true)
            .expect("a stored record");
        let ahead_ms = record.born_timestamp_ms - before_ms;
        assert!(
            (86_400_000 - 60_000..86_400_000 + 60_000).contains(&ahead_ms),
            "born timestamp {} is {ahead_ms} ms from now",
            record.born_timestamp_ms
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 9. nobody listening

/// Goal: a producer whose NameServer cannot be reached fails its sends promptly with an error
/// (it neither hangs nor panics) and shuts down promptly. Method: a NameServer address nobody
/// listens on; a sync send and a oneway send must fail within the send timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_fail_cleanly_when_no_namesrv_answers() {
    bounded("no_namesrv", TEST_TIMEOUT, async {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = closed.local_addr().expect("local addr").to_string();
        drop(closed);
        let producer = Producer::builder()
            .namesrv_addr(&addr)
            .send_timeout(Duration::from_secs(2))
            .build()
            .expect("builds")
            .start()
            .await
            .expect("starts");
        let started = Instant::now();
        let sync = producer.send(test_message("Nowhere", 0)).await;
        assert!(sync.is_err(), "sync send without a NameServer: {sync:?}");
        let oneway = producer.send_oneway(test_message("Nowhere", 1)).await;
        assert!(
            oneway.is_err(),
            "oneway send without a NameServer: {oneway:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "failing took {:?}",
            started.elapsed()
        );
        let stopping = Instant::now();
        producer.shutdown().await;
        assert!(
            stopping.elapsed() < Duration::from_secs(4),
            "shutdown took {:?}",
            stopping.elapsed()
        );
    })
    .await;
}
