//! Black-box tests with the unmodified, published RocketMQ Rust client (`rocketmq-client-rust`
//! 1.0.0) against `vostok standalone`.
//!
//! Every test starts its own broker on free loopback ports with a fresh data directory, is bounded
//! in time (it fails with a message naming the step that timed out) and uses unique topic and group
//! names. Broker-side state (max offsets, committed offsets, stored records) is read with the raw
//! frame client in `common`, so assertions do not depend on client-side caches.
//!
//! These tests are written to pass against a real Apache RocketMQ broker as well.
#![recursion_limit = "256"]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketmq_client_rust::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultLitePullConsumer,
    DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer, MessageListenerConcurrently,
    MessageQueueListener, SendResult, SendStatus,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use tokio::task::block_in_place;
use tokio::time::{sleep, timeout, Instant};

use common::*;

/// Default bound for one test.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for tests that must wait for client timers (rebalance, offset persistence) or restart.
const SLOW_TEST_TIMEOUT: Duration = Duration::from_secs(150);
/// Queues per test topic (RocketMQ's default).
const QUEUES: usize = 4;
/// Time to keep listening after the expected messages arrived, to catch duplicates.
const SETTLE: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// Client plumbing
// ---------------------------------------------------------------------------------------------

/// Runs a test body with a deadline.
async fn bounded<F: Future<Output = ()>>(name: &str, limit: Duration, body: F) {
    if timeout(limit, body).await.is_err() {
        panic!("{name}: test did not finish within {limit:?}");
    }
}

fn start_broker(options: BrokerOptions) -> Standalone {
    block_in_place(|| Standalone::start_with(options))
}

async fn start_producer(namesrv: &str) -> DefaultMQProducer {
    start_producer_in(namesrv, &unique("pg")).await
}

/// Creates `topic` with [`QUEUES`] queues and waits until its route is published.
///
/// Uses UPDATE_AND_CREATE_TOPIC through the client's admin call; if the broker does not offer it,
/// falls back to RocketMQ's auto-creation (a send with TBW102 as default topic) with one warm-up
/// message that carries no `seq` property, which every test ignores.
async fn ensure_topic(producer: &mut DefaultMQProducer, topic: &str) {
    if let Err(error) = producer
        .create_topic("TBW102", topic, QUEUES as i32, HashMap::new())
        .await
    {
        eprintln!("create_topic({topic}) failed ({error}); creating it by auto-creation instead");
        let warmup = Message::builder()
            .topic(topic)
            .tags("Warmup")
            .body_slice(b"warmup")
            .build_unchecked();
        let result = producer.send(warmup).await;
        assert!(
            matches!(&result, Ok(Some(r)) if r.send_status == SendStatus::SendOk),
            "auto-creating {topic} by sending failed: {result:?}"
        );
    }
    wait_for_publish_route(producer, topic, QUEUES).await;
}

fn test_message(topic: &str, seq: usize) -> Message {
    let mut builder = Message::builder()
        .topic(topic)
        .tags(tag_for(seq))
        .keys(keys_for(seq))
        .body(body_for(seq));
    for (k, v) in props_for(seq) {
        builder = builder
            .raw_property(k, v)
            .expect("user property is allowed");
    }
    builder.build_unchecked()
}

/// What a consumer saw of one message.
#[derive(Clone, Debug)]
struct Received {
    seq: usize,
    body: Vec<u8>,
    tags: Option<String>,
    keys: Option<Vec<String>>,
    properties: HashMap<String, String>,
    queue_id: i32,
    queue_offset: i64,
}

impl Received {
    fn from_ext(m: &MessageExt) -> Option<Received> {
        let inner = &m.message;
        let seq = inner.property("seq")?.parse().ok()?;
        Some(Received {
            seq,
            body: inner.body_slice().to_vec(),
            tags: inner.tags().map(str::to_string),
            keys: inner.keys(),
            properties: m
                .properties()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            queue_id: m.queue_id(),
            queue_offset: m.queue_offset(),
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
        assert_eq!(self.keys.as_ref(), Some(&keys_for(seq)), "keys of {seq}");
        for (k, v) in props_for(seq) {
            assert_eq!(
                self.properties.get(&k),
                Some(&v),
                "user property {k:?} of message {seq} differs"
            );
        }
    }
}

/// A concurrent listener that records every message carrying a `seq` property.
#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
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
}

impl MessageListenerConcurrently for Collector {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeConcurrentlyStatus> {
        let mut received = self.received.lock().expect("collector lock");
        for m in msgs {
            if let Some(r) = Received::from_ext(m) {
                received.push(r);
            }
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// One rebalance report: (ids of all queues, ids of the queues assigned to this consumer).
type QueueChange = (BTreeSet<i32>, BTreeSet<i32>);

/// Records the latest queue assignment a push consumer reported for one topic. (A clustering
/// consumer also gets assignments for its `%RETRY%group` topic; those are ignored.)
#[derive(Clone, Default)]
struct AssignmentTracker {
    topic: String,
    assigned: Arc<Mutex<BTreeSet<i32>>>,
    /// Every (all queues, assigned queues) the client reported, for failure messages.
    history: Arc<Mutex<Vec<QueueChange>>>,
}

impl AssignmentTracker {
    fn new(topic: &str) -> AssignmentTracker {
        AssignmentTracker {
            topic: topic.to_string(),
            ..Default::default()
        }
    }

    fn get(&self) -> BTreeSet<i32> {
        self.assigned.lock().expect("tracker lock").clone()
    }

    fn history(&self) -> Vec<QueueChange> {
        self.history.lock().expect("tracker lock").clone()
    }
}

impl MessageQueueListener for AssignmentTracker {
    fn message_queue_changed(
        &self,
        topic: &str,
        mq_all: &HashSet<MessageQueue>,
        mq_assigned: &HashSet<MessageQueue>,
    ) {
        if topic != self.topic {
            return;
        }
        let assigned: BTreeSet<i32> = mq_assigned.iter().map(|q| q.queue_id()).collect();
        self.history.lock().expect("tracker lock").push((
            mq_all.iter().map(|q| q.queue_id()).collect(),
            assigned.clone(),
        ));
        *self.assigned.lock().expect("tracker lock") = assigned;
    }
}

async fn start_push_consumer(
    namesrv: &str,
    group: &str,
    topic: &str,
    model: MessageModel,
    collector: &Collector,
    tracker: Option<&AssignmentTracker>,
) -> DefaultMQPushConsumer {
    let mut builder = push_consumer_builder(namesrv, group).message_model(model);
    if let Some(tracker) = tracker {
        builder = builder.message_queue_listener(Some(Arc::new(tracker.clone())));
    }
    let mut consumer = builder.build();
    consumer
        .subscribe(topic, "*")
        .await
        .expect("push consumer subscribes");
    consumer.register_message_listener_concurrently(collector.clone());
    consumer.start().await.expect("push consumer starts");
    consumer
}

/// Sends messages `seqs` synchronously and returns their results.
async fn send_all(
    producer: &DefaultMQProducer,
    topic: &str,
    seqs: impl IntoIterator<Item = usize>,
) -> Vec<SendResult> {
    let mut results = Vec::new();
    for seq in seqs {
        let result = producer
            .send(test_message(topic, seq))
            .await
            .unwrap_or_else(|e| panic!("sync send of message {seq} failed: {e}"))
            .unwrap_or_else(|| panic!("sync send of message {seq} returned no result"));
        assert_eq!(result.send_status, SendStatus::SendOk, "message {seq}");
        results.push(result);
    }
    results
}

/// Max offset of every queue of `topic`, read from the broker with raw frames.
fn broker_max_offsets(broker_addr: &str, topic: &str) -> Vec<i64> {
    let mut conn = RawConn::connect(broker_addr);
    (0..QUEUES as i32)
        .map(|q| max_offset(&mut conn, topic, q))
        .collect()
}

/// Committed offset of every queue of `topic` for `group` (None where none is stored).
fn broker_committed_offsets(broker_addr: &str, group: &str, topic: &str) -> Vec<Option<i64>> {
    let mut conn = RawConn::connect(broker_addr);
    (0..QUEUES as i32)
        .map(|q| committed_offset(&mut conn, group, topic, q))
        .collect()
}

/// GET_CONSUMER_LIST_BY_GROUP (38) as the broker answers it, for diagnostics.
fn consumer_ids(broker_addr: &str, group: &str) -> String {
    let mut conn = RawConn::connect(broker_addr);
    let f = conn.request(38, &[("consumerGroup", group.to_string())], &[]);
    format!("code {} {}", f.code(), String::from_utf8_lossy(&f.body))
}

fn assert_exactly_once(collector: &Collector, expected: &BTreeSet<usize>, who: &str) {
    let seqs = collector.seqs();
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

// ---------------------------------------------------------------------------------------------
// 1. sync, async and oneway sends
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_async_and_oneway_sends_succeed() {
    bounded("sync_async_and_oneway_sends_succeed", TEST_TIMEOUT, async {
        let broker = start_broker(BrokerOptions::default());
        let topic = unique("RcSend");
        let mut producer = start_producer(&broker.namesrv_addr).await;
        ensure_topic(&mut producer, &topic).await;
        let before: i64 = block_in_place(|| broker_max_offsets(&broker.broker_addr, &topic))
            .iter()
            .sum();

        // Sync.
        let mut placed: Vec<(i32, u64)> = Vec::new();
        for result in send_all(&producer, &topic, 0..4).await {
            let id = result.msg_id.clone().expect("sync send returns a msg id");
            assert!(!id.is_empty(), "sync send returns a non-empty msg id");
            let mq = result
                .message_queue
                .clone()
                .expect("sync send returns its queue");
            assert_eq!(mq.topic_str(), topic);
            placed.push((mq.queue_id(), result.queue_offset));
        }

        // Async with a callback.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for seq in 10..14 {
            let tx = tx.clone();
            producer
                .send_with_callback_timeout(
                    test_message(&topic, seq),
                    move |result, error| {
                        let outcome = match (result, error) {
                            (Some(r), None) => Ok(r.clone()),
                            (_, Some(e)) => Err(e.to_string()),
                            (None, None) => Err("callback got neither result nor error".into()),
                        };
                        let _ = tx.send((seq, outcome));
                    },
                    10_000,
                )
                .await
                .unwrap_or_else(|e| panic!("async send {seq} was not accepted: {e}"));
        }
        drop(tx);
        let mut async_done = BTreeSet::new();
        while let Some((seq, outcome)) = rx.recv().await {
            let result = outcome.unwrap_or_else(|e| panic!("async send {seq} failed: {e}"));
            assert_eq!(result.send_status, SendStatus::SendOk, "async send {seq}");
            assert!(
                result.msg_id.as_ref().is_some_and(|id| !id.is_empty()),
                "async send {seq} returns a msg id"
            );
            let mq = result
                .message_queue
                .clone()
                .expect("async send returns its queue");
            placed.push((mq.queue_id(), result.queue_offset));
            async_done.insert(seq);
        }
        assert_eq!(
            async_done,
            (10..14).collect(),
            "every async callback ran once"
        );

        // Oneway.
        for seq in 20..24 {
            producer
                .send_oneway(test_message(&topic, seq))
                .await
                .unwrap_or_else(|e| panic!("oneway send {seq} failed: {e}"));
        }

        // Acknowledged sends landed at distinct offsets below each queue's max offset, and the
        // oneway messages were stored too.
        let distinct: BTreeSet<(i32, u64)> = placed.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            placed.len(),
            "two sends share a queue offset: {placed:?}"
        );
        let broker_addr = broker.broker_addr.clone();
        let topic2 = topic.clone();
        wait_until("all 12 messages stored", Duration::from_secs(15), || {
            let max = block_in_place(|| broker_max_offsets(&broker_addr, &topic2));
            max.iter().sum::<i64>() == before + 12
        })
        .await;
        let max = block_in_place(|| broker_max_offsets(&broker.broker_addr, &topic));
        for (q, off) in &placed {
            assert!(
                (*off as i64) < max[*q as usize],
                "offset {off} on queue {q} is not below max {}",
                max[*q as usize]
            );
        }
        producer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. batch send
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_send_stores_every_message_in_order() {
    bounded(
        "batch_send_stores_every_message_in_order",
        TEST_TIMEOUT,
        async {
            let broker = start_broker(BrokerOptions::default());
            let topic = unique("RcBatch");
            let mut producer = start_producer(&broker.namesrv_addr).await;
            ensure_topic(&mut producer, &topic).await;

            let seqs: Vec<usize> = (0..5).collect();
            let batch: Vec<Message> = seqs.iter().map(|&s| test_message(&topic, s)).collect();
            let result = producer
                .send_batch(batch)
                .await
                .unwrap_or_else(|e| panic!("batch send failed: {e}"));
            assert_eq!(result.send_status, SendStatus::SendOk);
            let ids: Vec<String> = result
                .msg_id
                .as_deref()
                .expect("batch send returns msg ids")
                .split(',')
                .map(str::to_string)
                .collect();
            assert_eq!(ids.len(), 5, "one msg id per batch entry: {ids:?}");
            let mq = result
                .message_queue
                .clone()
                .expect("batch send returns its queue");
            let first = result.queue_offset as i64;

            // The broker stored the entries consecutively, byte-exact, each with its own UNIQ_KEY.
            let records = block_in_place(|| {
                let mut conn = RawConn::connect(&broker.broker_addr);
                let max = max_offset(&mut conn, &topic, mq.queue_id());
                assert_eq!(max, first + 5, "queue max offset after the batch");
                pull_all(&mut conn, "rc-batch-verifier", &topic, mq.queue_id(), max)
            });
            let batch_records: Vec<_> = records
                .into_iter()
                .filter(|r| r.queue_offset >= first)
                .collect();
            assert_eq!(batch_records.len(), 5);
            for (i, r) in batch_records.iter().enumerate() {
                assert_eq!(r.queue_offset, first + i as i64);
                assert_eq!(r.body, body_for(seqs[i]), "body of batch entry {i}");
                let props: HashMap<_, _> = r.properties.iter().cloned().collect();
                assert_eq!(props.get("TAGS"), Some(&tag_for(seqs[i])));
                assert_eq!(props.get("KEYS"), Some(&keys_for(seqs[i]).join(" ")));
                assert_eq!(props.get("seq"), Some(&seqs[i].to_string()));
                assert_eq!(
                    props.get("UNIQ_KEY"),
                    Some(&ids[i]),
                    "UNIQ_KEY of entry {i}"
                );
            }
            producer.shutdown().await;
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. clustering push consumer, exactly once, byte-exact
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clustering_push_consumer_receives_everything_exactly_once() {
    bounded("clustering_push_consumer", TEST_TIMEOUT, async {
        let broker = start_broker(BrokerOptions::default());
        let topic = unique("RcPush");
        let group = unique("cg_push");
        let mut producer = start_producer(&broker.namesrv_addr).await;
        ensure_topic(&mut producer, &topic).await;

        let n = 40;
        let results = send_all(&producer, &topic, 0..n).await;
        let uniq_ids: HashMap<usize, String> = results
            .iter()
            .enumerate()
            .map(|(seq, r)| (seq, r.msg_id.as_ref().expect("msg id").to_string()))
            .collect();

        let collector = Collector::default();
        let mut consumer = start_push_consumer(
            &broker.namesrv_addr,
            &group,
            &topic,
            MessageModel::Clustering,
            &collector,
            None,
        )
        .await;
        wait_until(
            &format!("{n} messages consumed"),
            Duration::from_secs(40),
            || collector.distinct() == n,
        )
        .await;
        sleep(SETTLE).await;
        assert_exactly_once(&collector, &(0..n).collect(), "push consumer");
        for r in collector.snapshot() {
            r.assert_exact();
            assert_eq!(
                r.properties.get("UNIQ_KEY"),
                uniq_ids.get(&r.seq),
                "UNIQ_KEY of {} matches the id the send returned",
                r.seq
            );
            assert!(r.queue_id >= 0 && (r.queue_id as usize) < QUEUES);
            assert!(r.queue_offset >= 0);
        }
        consumer.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 4. two consumers of one group split the queues
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_of_one_group_split_the_queues() {
    bounded("two_consumers_split", SLOW_TEST_TIMEOUT, async {
        let broker = start_broker(BrokerOptions::default());
        let topic = unique("RcSplit");
        let group = unique("cg_split");
        let mut producer = start_producer(&broker.namesrv_addr).await;
        ensure_topic(&mut producer, &topic).await;

        let (ca, cb) = (Collector::default(), Collector::default());
        let (ta, tb) = (
            AssignmentTracker::new(&topic),
            AssignmentTracker::new(&topic),
        );
        let mut a = start_push_consumer(
            &broker.namesrv_addr,
            &group,
            &topic,
            MessageModel::Clustering,
            &ca,
            Some(&ta),
        )
        .await;
        let mut b = start_push_consumer(
            &broker.namesrv_addr,
            &group,
            &topic,
            MessageModel::Clustering,
            &cb,
            Some(&tb),
        )
        .await;

        // Stable split: disjoint, both non-empty, covering every queue. The broker notifies the
        // first consumer when the second joins; the client's periodic rebalance (20 s) is the
        // fallback.
        let split_deadline = Instant::now() + Duration::from_secs(70);
        loop {
            let (sa, sb) = (ta.get(), tb.get());
            if !sa.is_empty()
                && !sb.is_empty()
                && sa.is_disjoint(&sb)
                && sa.union(&sb).count() == QUEUES
            {
                break;
            }
            if Instant::now() >= split_deadline {
                let ids = block_in_place(|| consumer_ids(&broker.broker_addr, &group));
                panic!(
                    "the two consumers did not split the queues within 70 s: A has {sa:?}, B has \
                     {sb:?}; the broker lists consumers {ids:?}; A's history (all, assigned): \
                     {:?}; B's history: {:?}",
                    ta.history(),
                    tb.history()
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
        let (sa, sb) = (ta.get(), tb.get());

        let n = 40;
        let results = send_all(&producer, &topic, 0..n).await;
        let queue_of: HashMap<usize, i32> = results
            .iter()
            .enumerate()
            .map(|(seq, r)| (seq, r.message_queue.as_ref().expect("queue").queue_id()))
            .collect();
        wait_until(
            &format!("{n} messages consumed"),
            Duration::from_secs(40),
            || ca.distinct() + cb.distinct() >= n,
        )
        .await;
        sleep(SETTLE).await;

        let (ra, rb) = (ca.seqs(), cb.seqs());
        assert!(!ra.is_empty(), "consumer A got nothing (assignment {sa:?})");
        assert!(!rb.is_empty(), "consumer B got nothing (assignment {sb:?})");
        let mut all: Vec<usize> = ra.iter().chain(rb.iter()).copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..n).collect::<Vec<_>>(),
            "union is all, without duplicates"
        );
        for seq in &ra {
            assert!(
                sa.contains(&queue_of[seq]),
                "A got {seq} from a queue it does not own"
            );
        }
        for seq in &rb {
            assert!(
                sb.contains(&queue_of[seq]),
                "B got {seq} from a queue it does not own"
            );
        }
        a.shutdown().await;
        b.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 5. broadcasting
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_consumers_each_receive_everything() {
    bounded("broadcast", TEST_TIMEOUT, async {
        let broker = start_broker(BrokerOptions::default());
        let topic = unique("RcBroadcast");
        let group = unique("cg_bcast");
        let mut producer = start_producer(&broker.namesrv_addr).await;
        ensure_topic(&mut producer, &topic).await;

        let (ca, cb) = (Collector::default(), Collector::default());
        let mut a = start_push_consumer(
            &broker.namesrv_addr,
            &group,
            &topic,
            MessageModel::Broadcasting,
            &ca,
            None,
        )
        .await;
        let mut b = start_push_consumer(
            &broker.namesrv_addr,
            &group,
            &topic,
            MessageModel::Broadcasting,
            &cb,
            None,
        )
        .await;

        let n = 20;
        send_all(&producer, &topic, 0..n).await;
        wait_until(
            "both broadcast consumers got everything",
            Duration::from_secs(40),
            || ca.distinct() == n && cb.distinct() == n,
        )
        .await;
        sleep(SETTLE).await;
        let expected: BTreeSet<usize> = (0..n).collect();
        assert_exactly_once(&ca, &expected, "broadcast consumer A");
        assert_exactly_once(&cb, &expected, "broadcast consumer B");
        for r in ca.snapshot().iter().chain(cb.snapshot().iter()) {
            r.assert_exact();
        }
        a.shutdown().await;
        b.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 6. lite pull consumer
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lite_pull_consumer_reads_messages() {
    bounded("lite_pull", TEST_TIMEOUT, async {
        let broker = start_broker(BrokerOptions::default());
        let topic = unique("RcLitePull");
        let mut producer = start_producer(&broker.namesrv_addr).await;
        ensure_topic(&mut producer, &topic).await;
        let n = 20;
        send_all(&producer, &topic, 0..n).await;

        let consumer = DefaultLitePullConsumer::builder(client_runtime("lite-pull"))
            .consumer_group(unique("cg_lite"))
            .name_server_addr(broker.namesrv_addr.clone())
            .pull_batch_size(8)
            .poll_timeout_millis(1_000)
            .auto_commit(false)
            .build()
            .expect("lite pull consumer builds");
        consumer
            .set_sub_expression_for_assign(&topic, "*")
            .await
            .expect("set subscription for assign");
        consumer.start().await.expect("lite pull consumer starts");
        let queues = consumer
            .fetch_message_queues(&topic)
            .await
            .expect("fetch message queues");
        assert_eq!(queues.len(), QUEUES, "queues of {topic}: {queues:?}");
        consumer
            .assign(queues.clone())
            .await
            .expect("assign queues");
        for q in &queues {
            consumer.seek(q, 0).await.expect("seek to 0");
        }

        let mut got: BTreeMap<usize, Vec<Received>> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(40);
        while got.len() < n {
            assert!(
                Instant::now() < deadline,
                "lite pull got only {:?} of {n} messages",
                got.keys().collect::<Vec<_>>()
            );
            for m in consumer.poll_with_timeout(1_000).await {
                if let Some(r) = Received::from_ext(&m) {
                    got.entry(r.seq).or_default().push(r);
                }
            }
        }
        assert_eq!(
            got.keys().copied().collect::<Vec<_>>(),
            (0..n).collect::<Vec<_>>()
        );
        for (seq, copies) in &got {
            assert_eq!(copies.len(), 1, "message {seq} polled more than once");
            copies[0].assert_exact();
        }
        consumer.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

/// Finding of the drop-in work: the broker notified every member of a group but the one that
/// just registered, so a subscribe-mode lite pull consumer got its queues, and a push consumer
/// its `%RETRY%` queue, only at the client's periodic rebalance (20 s). RocketMQ notifies every
/// member, the new one included; both are served within a few seconds of start.
const SERVED_AFTER_START: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_mode_lite_pull_consumer_is_served_soon_after_start() {
    use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
    bounded("lite_pull_subscribe", TEST_TIMEOUT, async {
        let broker = start_broker(BrokerOptions::default());
        let topic = unique("RcLiteSub");
        let mut producer = start_producer(&broker.namesrv_addr).await;
        ensure_topic(&mut producer, &topic).await;
        let n = 8;
        send_all(&producer, &topic, 0..n).await;

        let consumer = DefaultLitePullConsumer::builder(client_runtime("lite-sub"))
            .consumer_group(unique("cg_lite_sub"))
            .name_server_addr(broker.namesrv_addr.clone())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .poll_timeout_millis(500)
            .build()
            .expect("lite pull consumer builds");
        consumer.subscribe(&topic).await.expect("subscribe");
        let started = Instant::now();
        consumer.start().await.expect("lite pull consumer starts");
        let mut got: BTreeSet<usize> = BTreeSet::new();
        let mut first_after = None;
        while got.len() < n && started.elapsed() < Duration::from_secs(40) {
            for m in consumer.poll_with_timeout(500).await {
                if let Some(r) = Received::from_ext(&m) {
                    first_after.get_or_insert_with(|| started.elapsed());
                    got.insert(r.seq);
                }
            }
        }
        let first_after = first_after.expect("the lite pull consumer got no message in 40 s");
        assert!(
            first_after < SERVED_AFTER_START,
            "first message {first_after:?} after start (RocketMQ: about a second)"
        );
        assert_eq!(got, (0..n).collect::<BTreeSet<_>>());
        consumer.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_consumer_gets_its_retry_queue_soon_after_start() {
    bounded("retry_queue_assigned", TEST_TIMEOUT, async {
        let broker = start_broker(BrokerOptions::default());
        let topic = unique("RcRetryQ");
        let group = unique("cg_retry_q");
        let mut producer = start_producer(&broker.namesrv_addr).await;
        ensure_topic(&mut producer, &topic).await;
        let retry = AssignmentTracker::new(&format!("%RETRY%{group}"));
        let collector = Collector::default();
        let started = Instant::now();
        let mut consumer = start_push_consumer(
            &broker.namesrv_addr,
            &group,
            &topic,
            MessageModel::Clustering,
            &collector,
            Some(&retry),
        )
        .await;
        while retry.get().is_empty() && started.elapsed() < Duration::from_secs(40) {
            sleep(Duration::from_millis(50)).await;
        }
        let assigned_after = started.elapsed();
        assert_eq!(retry.get(), BTreeSet::from([0]), "{:?}", retry.history());
        assert!(
            assigned_after < SERVED_AFTER_START,
            "retry queue assigned {assigned_after:?} after start (RocketMQ: about a second)"
        );
        consumer.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 7. committed offsets survive a broker restart
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_broker_restart() {
    bounded("offsets_survive_restart", SLOW_TEST_TIMEOUT, async {
        let mut broker = start_broker(BrokerOptions::default());
        let topic = unique("RcRestart");
        let group = unique("cg_restart");
        let mut producer = start_producer(&broker.namesrv_addr).await;
        ensure_topic(&mut producer, &topic).await;

        // Phase 1: consume everything that exists.
        let old = 20;
        send_all(&producer, &topic, 0..old).await;
        let first = Collector::default();
        let mut consumer = start_push_consumer(
            &broker.namesrv_addr,
            &group,
            &topic,
            MessageModel::Clustering,
            &first,
            None,
        )
        .await;
        wait_until("phase 1 consumed", Duration::from_secs(40), || {
            first.distinct() == old
        })
        .await;

        // Deterministic hand-over: wait until the broker itself holds committed offsets equal to
        // every queue's max offset (the client persists every 5 s) before touching anything.
        let max_before = block_in_place(|| broker_max_offsets(&broker.broker_addr, &topic));
        let expected: Vec<Option<i64>> = max_before.iter().map(|&m| Some(m)).collect();
        let broker_addr = broker.broker_addr.clone();
        let (g, t) = (group.clone(), topic.clone());
        wait_until(
            "committed offsets to reach the max offsets",
            Duration::from_secs(30),
            || block_in_place(|| broker_committed_offsets(&broker_addr, &g, &t)) == expected,
        )
        .await;
        consumer.shutdown().await;
        producer.shutdown().await;

        // Graceful stop, restart on the same data directory.
        block_in_place(|| broker.restart());

        // The broker remembers both the messages and the committed offsets.
        let (max_after, committed_after) = block_in_place(|| {
            (
                broker_max_offsets(&broker.broker_addr, &topic),
                broker_committed_offsets(&broker.broker_addr, &group, &topic),
            )
        });
        assert_eq!(
            max_after, max_before,
            "max offsets changed across the restart"
        );
        assert_eq!(
            committed_after, expected,
            "committed offsets lost across the restart"
        );

        // Phase 2: a new consumer of the same group gets only the new messages.
        let mut producer = start_producer(&broker.namesrv_addr).await;
        wait_for_publish_route(&mut producer, &topic, QUEUES).await;
        let new: Vec<usize> = (100..110).collect();
        send_all(&producer, &topic, new.iter().copied()).await;
        let second = Collector::default();
        let mut consumer = start_push_consumer(
            &broker.namesrv_addr,
            &group,
            &topic,
            MessageModel::Clustering,
            &second,
            None,
        )
        .await;
        wait_until("phase 2 consumed", Duration::from_secs(40), || {
            second.distinct() >= new.len()
        })
        .await;
        sleep(SETTLE).await;
        assert_exactly_once(
            &second,
            &new.iter().copied().collect(),
            "consumer after restart",
        );
        consumer.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 8. a body over maxMessageSize
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_message_size_is_rejected_and_broker_keeps_serving() {
    bounded("max_message_size", TEST_TIMEOUT, async {
        let broker = start_broker(BrokerOptions {
            broker_conf: Some("maxMessageSize=1024\n".to_string()),
            ..Default::default()
        });
        let topic = unique("RcTooBig");
        let mut producer = start_producer(&broker.namesrv_addr).await;
        ensure_topic(&mut producer, &topic).await;
        let before: i64 = block_in_place(|| broker_max_offsets(&broker.broker_addr, &topic))
            .iter()
            .sum();

        // 2000 bytes: over the broker's 1024, under the client's own 4 MiB limit and under the
        // 4 KiB compression threshold, so the broker sees exactly this body.
        let big = Message::builder()
            .topic(topic.as_str())
            .tags("Big")
            .body(vec![b'z'; 2000])
            .build_unchecked();
        match producer.send(big).await {
            Ok(result) => panic!("oversized body was accepted: {result:?}"),
            Err(error) => assert_eq!(
                error.broker_response_code(),
                Some(resp::MESSAGE_ILLEGAL),
                "oversized body must be refused with MESSAGE_ILLEGAL (13), got: {error}"
            ),
        }

        let small = send_all(&producer, &topic, [0]).await;
        assert_eq!(small.len(), 1);
        let after: i64 = block_in_place(|| broker_max_offsets(&broker.broker_addr, &topic))
            .iter()
            .sum();
        assert_eq!(after, before + 1, "only the normal message was stored");
        producer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// request–reply: the client's request API, a replier built on MessageUtil::create_reply_message
// ---------------------------------------------------------------------------------------------

/// Request messages a consumer received, for the replier task to answer.
#[derive(Clone, Default)]
struct RequestInbox {
    pending: Arc<Mutex<Vec<MessageExt>>>,
}

impl MessageListenerConcurrently for RequestInbox {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeConcurrentlyStatus> {
        let mut pending = self.pending.lock().expect("inbox lock");
        pending.extend(msgs.iter().map(|m| (*m).clone()));
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_round_trips_and_a_reply_to_a_gone_requester_is_refused() {
    bounded("request_reply", TEST_TIMEOUT, async {
        use rocketmq_client_rust::MessageUtil;
        use rocketmq_model::common::message::MessageTrait;

        let broker = start_broker(BrokerOptions::default());
        let topic = unique("RcRequest");
        let group = unique("cg_replier");
        let mut requester = start_producer(&broker.namesrv_addr).await;
        ensure_topic(&mut requester, &topic).await;

        let inbox = RequestInbox::default();
        let mut consumer = push_consumer_builder(&broker.namesrv_addr, &group).build();
        consumer
            .subscribe(&topic, "*")
            .await
            .expect("replier subscribes");
        consumer.register_message_listener_concurrently(inbox.clone());
        consumer.start().await.expect("replier consumer starts");

        // The replier answers every request "re:<body>" with its own producer.
        let replier = start_producer(&broker.namesrv_addr).await;
        let replier_inbox = inbox.clone();
        let replies = tokio::spawn(async move {
            let mut sent = 0;
            let deadline = Instant::now() + Duration::from_secs(45);
            while sent < 3 && Instant::now() < deadline {
                let batch = std::mem::take(&mut *replier_inbox.pending.lock().expect("inbox lock"));
                for request in batch {
                    if request.message.property("warmup").is_some()
                        || request.message.tags() == Some("Warmup")
                    {
                        continue;
                    }
                    let body = format!(
                        "re:{}",
                        String::from_utf8_lossy(request.message.body_slice())
                    );
                    let reply =
                        MessageUtil::create_reply_message(&request.message, body.as_bytes())
                            .expect("the request carries CLUSTER");
                    let result = replier.send(reply).await;
                    assert!(
                        matches!(&result, Ok(Some(r)) if r.send_status == SendStatus::SendOk),
                        "the reply was not acknowledged: {result:?}"
                    );
                    sent += 1;
                }
                sleep(Duration::from_millis(20)).await;
            }
            replier
        });

        for i in 0..3 {
            let request = Message::builder()
                .topic(&topic)
                .tags("Request")
                .body(format!("q{i}"))
                .build_unchecked();
            let reply = requester
                .request(request, 20_000)
                .await
                .unwrap_or_else(|e| panic!("request {i} got no reply: {e}"));
            let body = reply.get_body().map(|b| b.to_vec()).unwrap_or_default();
            assert_eq!(String::from_utf8_lossy(&body), format!("re:q{i}"));
        }
        let replier = replies.await.expect("replier task");

        // Each reply was also stored in the cluster's reply topic (storeReplyMessageEnable).
        let mut conn = RawConn::connect(&broker.broker_addr);
        assert_eq!(max_offset(&mut conn, "DefaultCluster_REPLY_TOPIC", 0), 3);

        // A reply whose requester is gone: the replier is told, and nothing hangs.
        let mut orphan = Message::builder()
            .topic("DefaultCluster_REPLY_TOPIC")
            .body_slice(b"late")
            .build_unchecked();
        for (k, v) in [
            ("MSG_TYPE", "reply"),
            ("REPLY_TO_CLIENT", "127.0.0.1@gone"),
            ("CORRELATION_ID", "c-gone"),
            ("CLUSTER", "DefaultCluster"),
        ] {
            orphan.put_property(k.into(), v.into());
        }
        let refused = replier.send(orphan).await;
        assert!(refused.is_err(), "{refused:?}");
        // Stored still, once per attempt (the producer retries a SYSTEM_ERROR, as Java's does).
        let stored = max_offset(&mut conn, "DefaultCluster_REPLY_TOPIC", 0);
        assert!(stored > 3, "{stored}");
        // The client redacts the broker's remark; the same reply over a raw frame shows it.
        let properties = "MSG_TYPE\u{1}reply\u{2}REPLY_TO_CLIENT\u{1}127.0.0.1@gone\u{2}";
        let raw = conn.request(
            325,
            &[
                ("a", "pg".to_owned()),
                ("b", "DefaultCluster_REPLY_TOPIC".to_owned()),
                ("c", "TBW102".to_owned()),
                ("d", "4".to_owned()),
                ("e", "0".to_owned()),
                ("f", "0".to_owned()),
                ("g", "0".to_owned()),
                ("h", "0".to_owned()),
                ("i", properties.to_owned()),
            ],
            b"late",
        );
        assert_eq!(raw.code(), 1, "{:?}", raw.header);
        assert_eq!(
            raw.remark(),
            "push reply message fail, channel of <127.0.0.1@gone> not found."
        );
        assert_eq!(
            max_offset(&mut conn, "DefaultCluster_REPLY_TOPIC", 0),
            stored + 1
        );

        consumer.shutdown().await;
        requester.shutdown().await;
        let mut replier = replier;
        replier.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// message trace: clients with trace enabled, `vostok admin queryMsgTraceById`
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_message_shows_its_send_and_consumption_in_query_msg_trace_by_id() {
    bounded("message_trace", SLOW_TEST_TIMEOUT, async {
        let broker = start_broker(BrokerOptions {
            broker_conf: Some("traceTopicEnable=true\n".to_owned()),
            ..BrokerOptions::default()
        });
        let topic = unique("RcTraced");
        let producer_group = unique("pg_traced");
        let consumer_group = unique("cg_traced");
        let mut traced = rocketmq_client_rust::ClientConfig::default();
        traced.set_enable_trace(true);

        let mut producer = DefaultMQProducer::builder(client_runtime("producer"))
            .client_config(traced.clone())
            .producer_group(producer_group.clone())
            .name_server_addr(broker.namesrv_addr.clone())
            .send_msg_timeout(10_000)
            .build();
        producer.start().await.expect("traced producer starts");
        ensure_topic(&mut producer, &topic).await;
        let sent = send_all(&producer, &topic, [0]).await;
        let msg_id = sent[0].msg_id.as_ref().expect("msg id").to_string();

        let collector = Collector::default();
        let mut consumer = push_consumer_builder(&broker.namesrv_addr, &consumer_group)
            .client_config(traced)
            .name_server_addr(broker.namesrv_addr.clone())
            .build();
        consumer.subscribe(&topic, "*").await.expect("subscribes");
        consumer.register_message_listener_concurrently(collector.clone());
        consumer.start().await.expect("traced consumer starts");
        wait_until("the message consumed", Duration::from_secs(40), || {
            collector.distinct() == 1
        })
        .await;

        // Traces are sent in batches (every 5 s at most): ask until both sides are there.
        let vostok = env!("CARGO_BIN_EXE_vostok");
        let deadline = Instant::now() + Duration::from_secs(60);
        let stdout = loop {
            let out = std::process::Command::new(vostok)
                .args([
                    "admin",
                    "queryMsgTraceById",
                    "-n",
                    &broker.namesrv_addr,
                    "-i",
                    &msg_id,
                ])
                .output()
                .expect("vostok admin runs");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let complete = stdout.contains("#ProducerGroup") && stdout.contains("#ConsumerGroup");
            if complete || Instant::now() > deadline {
                assert!(
                    out.status.success(),
                    "queryMsgTraceById failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                break stdout;
            }
            sleep(Duration::from_secs(1)).await;
        };
        let pub_row = stdout
            .lines()
            .find(|l| l.starts_with("Pub "))
            .unwrap_or_else(|| panic!("no Pub row:\n{stdout}"));
        let fields: Vec<&str> = pub_row.split_whitespace().collect();
        assert_eq!(fields[1], producer_group, "{stdout}");
        assert_eq!(fields[2], "127.0.0.1", "{stdout}");
        assert_eq!(fields.last(), Some(&"success"), "{stdout}");
        let sub_row = stdout
            .lines()
            .find(|l| l.starts_with("Sub "))
            .unwrap_or_else(|| panic!("no Sub row:\n{stdout}"));
        let fields: Vec<&str> = sub_row.split_whitespace().collect();
        assert_eq!(fields[1], consumer_group, "{stdout}");
        assert_eq!(fields.last(), Some(&"success"), "{stdout}");
        // The trace topic is the broker's, created at start with one queue.
        let mut conn = RawConn::connect(&broker.broker_addr);
        assert!(max_offset(&mut conn, "RMQ_SYS_TRACE_TOPIC", 0) >= 2);

        consumer.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// ACL 1.0: the client's AclClientRPCHook, raw frames, hot reload
// ---------------------------------------------------------------------------------------------

/// A producer signing with `access_key`/`secret_key`.
async fn start_signed_producer(
    namesrv: &str,
    access_key: &str,
    secret_key: &str,
) -> DefaultMQProducer {
    use rocketmq_client_rust::{AclClientRPCHook, SessionCredentials};
    let hook = Arc::new(AclClientRPCHook::new(SessionCredentials::with_keys(
        access_key.to_owned(),
        secret_key.to_owned(),
    )));
    let mut producer = DefaultMQProducer::builder(client_runtime("producer"))
        .producer_group(unique("pg_acl"))
        .name_server_addr(namesrv.to_string())
        .send_msg_timeout(10_000)
        .retry_times_when_send_failed(0)
        .rpc_hook(hook)
        .build();
    producer.start().await.expect("signed producer starts");
    producer
}

/// `ext` signed as the client hook signs: the sorted values and the body.
fn signed_ext(
    ext: &[(&str, String)],
    body: &[u8],
    key: &str,
    secret: &str,
) -> Vec<(&'static str, String)> {
    let mut fields: Vec<(String, String)> = ext
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    fields.push(("AccessKey".to_owned(), key.to_owned()));
    fields.sort();
    let mut content: Vec<u8> = fields
        .iter()
        .flat_map(|(_, v)| v.as_bytes().to_vec())
        .collect();
    content.extend_from_slice(body);
    let signature = vostok_core::acl::sign(&content, secret);
    fields.push(("Signature".to_owned(), signature));
    fields
        .into_iter()
        .map(|(k, v)| (&*Box::leak(k.into_boxed_str()), v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_signed_requests_by_permission_refusals_and_a_reloaded_file() {
    bounded("acl", SLOW_TEST_TIMEOUT, async {
        let conf = tempfile::tempdir().expect("conf dir");
        let acl_file = conf.path().join("plain_acl.yml");
        let accounts = "accounts:\n  - accessKey: appUser1\n    secretKey: appSecret1\n    defaultTopicPerm: PUB|SUB\n    defaultGroupPerm: SUB\n    topicPerms:\n      - RcSecret=DENY\n  - accessKey: adminUser\n    secretKey: adminSecret\n    admin: true\n";
        std::fs::write(&acl_file, accounts).expect("write ACL file");
        let broker = start_broker(BrokerOptions {
            broker_conf: Some(format!("aclEnable=true\naclPlainFile={}\n", acl_file.display())),
            ..BrokerOptions::default()
        });
        let ns = broker.namesrv_addr.clone();
        let topic = unique("RcAcl");

        // The admin account creates the topics (UPDATE_AND_CREATE_TOPIC needs admin).
        let mut admin = start_signed_producer(&ns, "adminUser", "adminSecret").await;
        ensure_topic(&mut admin, &topic).await;
        ensure_topic(&mut admin, "RcSecret").await;

        // Allowed: an ordinary account sends and consumes.
        let producer = start_signed_producer(&ns, "appUser1", "appSecret1").await;
        send_all(&producer, &topic, 0..4).await;
        let collector = Collector::default();
        let hook = Arc::new(rocketmq_client_rust::AclClientRPCHook::new(
            rocketmq_client_rust::SessionCredentials::with_keys("appUser1", "appSecret1"),
        ));
        let mut consumer = push_consumer_builder(&ns, &unique("cg_acl"))
            .rpc_hook(Some(hook))
            .build();
        consumer.subscribe(&topic, "*").await.expect("subscribes");
        consumer.register_message_listener_concurrently(collector.clone());
        consumer.start().await.expect("signed consumer starts");
        wait_until("4 messages consumed", Duration::from_secs(40), || collector.distinct() == 4).await;

        // Denied by permission, and with a wrong secret: errors, nothing stored.
        let mut conn = RawConn::connect(&broker.broker_addr);
        let mut admin_max_offset = |t: &str, q: i32| {
            let ask = [("topic", t.to_owned()), ("queueId", q.to_string())];
            let answer = conn.request(30, &signed_ext(&ask, b"", "adminUser", "adminSecret"), b"");
            assert_eq!(answer.code(), 0, "{}", answer.remark());
            answer.ext_i64("offset").expect("offset")
        };
        let stored = |f: &mut dyn FnMut(&str, i32) -> i64, t: &str| -> i64 {
            (0..QUEUES as i32).map(|q| f(t, q)).sum()
        };
        assert_eq!(stored(&mut admin_max_offset, "RcSecret"), 0);
        assert!(producer.send(test_message("RcSecret", 9)).await.is_err());
        let wrong = start_signed_producer(&ns, "appUser1", "not-the-secret").await;
        assert!(wrong.send(test_message(&topic, 10)).await.is_err());
        assert_eq!(stored(&mut admin_max_offset, &topic), 4, "nothing stored from refused sends");
        assert_eq!(stored(&mut admin_max_offset, "RcSecret"), 0);

        // Raw frames: no key, an unknown key, with RocketMQ's remarks.
        let ask = [("topic", topic.clone()), ("queueId", "0".to_owned())];
        let unsigned = conn.request(30, &ask, b"");
        assert_eq!(unsigned.code(), 1);
        assert!(unsigned
            .remark()
            .starts_with("org.apache.rocketmq.acl.common.AclException: No accessKey is configured"));
        let ghost = conn.request(30, &signed_ext(&ask, b"", "ghostUser1", "whatever1"), b"");
        assert!(ghost.remark().contains("No acl config for ghostUser1"), "{}", ghost.remark());

        // Hot reload: a new account and a white-listed address, picked up without a restart.
        let reloaded = format!(
            "globalWhiteRemoteAddresses:\n  - 127.0.0.*\n{accounts}  - accessKey: newUser99\n    secretKey: newSecret99\n    defaultTopicPerm: PUB\n"
        );
        std::fs::write(&acl_file, reloaded).expect("rewrite ACL file");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if conn.request(30, &ask, b"").code() == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the changed ACL file was not read again");
            sleep(Duration::from_millis(250)).await;
        }
        // A file that cannot be used leaves the ACL as it was.
        std::fs::write(&acl_file, "accounts:\n  - accessKey: short\n").expect("rewrite");
        sleep(Duration::from_secs(6)).await;
        assert_eq!(conn.request(30, &ask, b"").code(), 0, "the last good ACL still holds");

        // mqadmin updateAclConfig (50): written to the file (which the broker then reads again).
        let update = [
            ("accessKey", "viaAdmin1".to_owned()),
            ("secretKey", "viaSecret1".to_owned()),
            ("defaultTopicPerm", "PUB".to_owned()),
        ];
        let answer = conn.request(50, &signed_ext(&update, b"", "adminUser", "adminSecret"), b"");
        assert_eq!(answer.code(), 0, "{}", answer.remark());
        let written = std::fs::read_to_string(&acl_file).expect("ACL file");
        assert!(written.contains("viaAdmin1") && written.contains("newUser99"), "{written}");

        consumer.shutdown().await;
        for mut p in [producer, wrong, admin] {
            p.shutdown().await;
        }
    })
    .await;
}
