//! Orderly consumption against `vostok standalone` (conformance: order, and the orderly cases of
//! retry): ordered sends by order id consumed in order per order id by Vostok's orderly push
//! consumer and by the published RocketMQ Rust client's (`MessageListenerOrderly`); two orderly
//! consumers of one group never own one queue at once and the survivor takes over; SUSPEND
//! redelivers locally with reconsumeTimes + 1 and, past the orderly max, the message lands in
//! `%DLQ%<group>`.
//!
//! Every test starts its own broker on free loopback ports with a fresh data directory, is bounded
//! in time and uses short client intervals (rebalance, lock refresh, suspend) to stay fast.
#![recursion_limit = "256"]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::block_in_place;
use tokio::time::{sleep, timeout, Instant};
use vostok::client::{
    ConsumeFromWhere, ConsumeOrderlyContext, ConsumeOrderlyStatus, Message, MessageExt, Producer,
    PushConsumer,
};

use common::*;

const TEST_TIMEOUT: Duration = Duration::from_secs(60);
const QUEUES: u32 = 4;
/// Order ids per test and steps per order.
const ORDERS: usize = 8;
const STEPS: usize = 5;

async fn bounded<F: Future<Output = ()>>(name: &str, limit: Duration, body: F) {
    if timeout(limit, body).await.is_err() {
        panic!("{name}: test did not finish within {limit:?}");
    }
}

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

/// Sends `STEPS` steps of each of `ORDERS` orders, interleaved, each order's steps to one queue
/// (selected by the order id, as RocketMQ's `SelectMessageQueueByHash`). Returns the broker
/// name.
async fn send_orders(producer: &Producer, topic: &str) -> String {
    let mut broker_name = String::new();
    for step in 0..STEPS {
        for order in 0..ORDERS {
            let message = Message::new(topic, format!("order-{order}-step-{step}"))
                .with_keys(&format!("order-{order}"));
            let result = producer
                .send_orderly(message, &format!("order-{order}"))
                .await
                .unwrap_or_else(|e| panic!("ordered send {order}/{step}: {e}"));
            broker_name = result.queue.broker_name.clone();
        }
    }
    broker_name
}

/// One delivery seen by a listener.
#[derive(Clone, Debug)]
struct Seen {
    consumer: usize,
    queue_id: i32,
    queue_offset: i64,
    body: String,
    reconsume_times: i32,
    at: Instant,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn push(&self, seen: Seen) {
        self.0.lock().expect("log lock").push(seen);
    }
    fn snapshot(&self) -> Vec<Seen> {
        self.0.lock().expect("log lock").clone()
    }
    fn bodies(&self) -> BTreeSet<String> {
        self.snapshot().into_iter().map(|s| s.body).collect()
    }
}

/// Per order id, the steps in the order they were consumed (from bodies `order-<o>-step-<s>`).
fn steps_per_order(seen: &[Seen]) -> BTreeMap<usize, Vec<usize>> {
    let mut by_order: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for s in seen {
        let parts: Vec<&str> = s.body.split('-').collect();
        if let [_, order, _, step] = parts.as_slice() {
            by_order
                .entry(order.parse().expect("order id"))
                .or_default()
                .push(step.parse().expect("step"));
        }
    }
    by_order
}

fn assert_in_order_per_order(seen: &[Seen], who: &str) {
    let by_order = steps_per_order(seen);
    assert_eq!(by_order.len(), ORDERS, "{who}: orders seen {by_order:?}");
    for (order, steps) in by_order {
        // A queue handed over may be consumed again from its committed offset, but steps never
        // go backwards past one already consumed.
        let mut deduped = steps.clone();
        deduped.dedup();
        assert_eq!(
            deduped,
            (0..STEPS).collect::<Vec<_>>(),
            "{who}: order {order} consumed as {steps:?}"
        );
    }
    // Within each queue, offsets are consumed ascending.
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for s in seen {
        if let Some(prev) = last.insert(s.queue_id, s.queue_offset) {
            assert!(
                s.queue_offset > prev,
                "{who}: queue {} went from {prev} to {}",
                s.queue_id,
                s.queue_offset
            );
        }
    }
}

/// A Vostok orderly consumer numbered `n` that logs every delivery and answers with `answer`.
async fn vostok_orderly(
    namesrv: &str,
    group: &str,
    topic: &str,
    n: usize,
    log: &Log,
    answer: fn(&MessageExt) -> ConsumeOrderlyStatus,
    tune: impl FnOnce(vostok::client::PushConsumerBuilder) -> vostok::client::PushConsumerBuilder,
) -> PushConsumer {
    let sink = log.clone();
    let builder = PushConsumer::builder()
        .namesrv_addr(namesrv)
        .group(group)
        .subscribe(topic, "*")
        .consume_from(ConsumeFromWhere::FirstOffset)
        .rebalance_interval(Duration::from_secs(1))
        .lock_interval(Duration::from_secs(1))
        .unlock_delay(Duration::from_millis(500))
        .listener_orderly(
            move |messages: Vec<MessageExt>, ctx: &mut ConsumeOrderlyContext| {
                let mut status = ConsumeOrderlyStatus::Success;
                for m in &messages {
                    assert_eq!(m.queue.queue_id, ctx.message_queue().queue_id);
                    sink.push(Seen {
                        consumer: n,
                        queue_id: m.queue.queue_id,
                        queue_offset: m.queue_offset(),
                        body: String::from_utf8_lossy(m.body()).into_owned(),
                        reconsume_times: m.reconsume_times(),
                        at: Instant::now(),
                    });
                    if answer(m) != ConsumeOrderlyStatus::Success {
                        status = ConsumeOrderlyStatus::SuspendCurrentQueueAMoment;
                    }
                }
                status
            },
        );
    tune(builder)
        .build()
        .expect("orderly consumer builds")
        .start()
        .await
        .expect("orderly consumer starts")
}

fn succeed(_: &MessageExt) -> ConsumeOrderlyStatus {
    ConsumeOrderlyStatus::Success
}

fn all_bodies() -> BTreeSet<String> {
    (0..ORDERS)
        .flat_map(|o| (0..STEPS).map(move |s| format!("order-{o}-step-{s}")))
        .collect()
}

/// Conformance: order (OrderMessageTest, partition order per sharding key) with Vostok's
/// orderly consumer. Method: 8 orders × 5 steps sent with the order id as sharding key; one
/// orderly consumer; every step is consumed, in step order per order and in offset order per
/// queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_per_order_id_with_the_vostok_orderly_consumer() {
    bounded("order_per_order_id_vostok", TEST_TIMEOUT, async {
        let topic = unique("OrdV");
        let group = unique("GOrdV");
        let broker = broker_with_topic(&topic);
        let producer = producer(&broker.namesrv_addr).await;
        send_orders(&producer, &topic).await;
        let log = Log::default();
        let consumer = vostok_orderly(
            &broker.namesrv_addr,
            &group,
            &topic,
            0,
            &log,
            succeed,
            |b| b,
        )
        .await;
        wait_until("every step consumed", Duration::from_secs(30), || {
            log.bodies() == all_bodies()
        })
        .await;
        let seen = log.snapshot();
        assert_eq!(
            seen.len(),
            ORDERS * STEPS,
            "no duplicates with one consumer"
        );
        assert_in_order_per_order(&seen, "vostok");
        let locked = consumer.locked_queues().await.expect("locked queues");
        assert_eq!(
            locked.iter().filter(|q| q.topic == topic).count(),
            QUEUES as usize,
            "{locked:?}"
        );
        consumer.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

/// Conformance: order, with the published RocketMQ Rust client's orderly push consumer
/// (`MessageListenerOrderly`, which locks queues with LOCK_BATCH_MQ). Method as above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_per_order_id_with_the_rocketmq_orderly_consumer() {
    use rocketmq_client_rust::MQPushConsumer;
    bounded("order_per_order_id_rocketmq", TEST_TIMEOUT, async {
        let topic = unique("OrdR");
        let group = unique("GOrdR");
        let broker = broker_with_topic(&topic);
        let producer = producer(&broker.namesrv_addr).await;
        send_orders(&producer, &topic).await;
        let log = Log::default();
        let sink = log.clone();
        let mut consumer = push_consumer_builder(&broker.namesrv_addr, &group).build();
        consumer
            .subscribe(topic.as_str(), "*")
            .await
            .expect("rocketmq consumer subscribes");
        consumer.register_message_listener_orderly(
            move |msgs: &[&rocketmq_model::common::message::message_ext::MessageExt],
                  _ctx: &mut rocketmq_client_rust::ConsumeOrderlyContext| {
                for m in msgs {
                    sink.push(Seen {
                        consumer: 0,
                        queue_id: m.queue_id(),
                        queue_offset: m.queue_offset(),
                        body: String::from_utf8_lossy(m.message.body_slice()).into_owned(),
                        reconsume_times: m.reconsume_times(),
                        at: Instant::now(),
                    });
                }
                Ok(rocketmq_client_rust::ConsumeOrderlyStatus::Success)
            },
        );
        consumer.start().await.expect("rocketmq consumer starts");
        wait_until("every step consumed", Duration::from_secs(40), || {
            log.bodies() == all_bodies()
        })
        .await;
        assert_in_order_per_order(&log.snapshot(), "rocketmq-client-rust");
        consumer.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

/// LOCK_BATCH_MQ for every queue of `topic` as client `client_id` of `group`, raw; returns the
/// queue ids granted.
fn raw_lock(
    broker: &Standalone,
    broker_name: &str,
    group: &str,
    topic: &str,
    client_id: &str,
) -> BTreeSet<i64> {
    block_in_place(|| {
        let mut conn = RawConn::connect(&broker.broker_addr);
        let mq: Vec<_> = (0..QUEUES)
            .map(|q| serde_json::json!({"brokerName": broker_name, "queueId": q, "topic": topic}))
            .collect();
        let body = serde_json::json!({
            "clientId": client_id, "consumerGroup": group, "mqSet": mq, "onlyThisBroker": false
        });
        let f = conn.request(41, &[], &serde_json::to_vec(&body).expect("json"));
        assert_eq!(f.code(), 0, "LOCK_BATCH_MQ failed: {}", f.remark());
        let answer: serde_json::Value = serde_json::from_slice(&f.body).expect("lock answer");
        answer["lockOKMQSet"]
            .as_array()
            .expect("lockOKMQSet")
            .iter()
            .map(|q| q["queueId"].as_i64().expect("queueId"))
            .collect()
    })
}

/// Conformance: order with load balancing. Two orderly consumers of one group never hold the
/// lock of the same queue (their locked queues, sampled every 100 ms, are disjoint; an
/// outsider's LOCK_BATCH_MQ gets nothing) and between them consume every step in order; once
/// one shuts down (unlocking its queues) the survivor locks all four and consumes new steps
/// of every queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_two_consumers_never_share_a_queue_and_the_survivor_takes_over() {
    bounded("order_exclusive_queues", TEST_TIMEOUT, async {
        let topic = unique("OrdX");
        let group = unique("GOrdX");
        let broker = broker_with_topic(&topic);
        let producer = producer(&broker.namesrv_addr).await;
        let log = Log::default();
        let a = vostok_orderly(
            &broker.namesrv_addr,
            &group,
            &topic,
            0,
            &log,
            succeed,
            |b| b,
        )
        .await;
        let b = vostok_orderly(
            &broker.namesrv_addr,
            &group,
            &topic,
            1,
            &log,
            succeed,
            |b| b,
        )
        .await;
        let broker_name = send_orders(&producer, &topic).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut split = false;
        loop {
            let la: BTreeSet<_> = a
                .locked_queues()
                .await
                .expect("a")
                .into_iter()
                .filter(|q| q.topic == topic)
                .collect();
            let lb: BTreeSet<_> = b
                .locked_queues()
                .await
                .expect("b")
                .into_iter()
                .filter(|q| q.topic == topic)
                .collect();
            assert!(la.is_disjoint(&lb), "both hold a queue: {la:?} / {lb:?}");
            split |= la.len() == 2 && lb.len() == 2;
            if split && log.bodies() == all_bodies() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no 2/2 split with everything consumed: {la:?} / {lb:?}"
            );
            sleep(Duration::from_millis(100)).await;
        }
        assert!(
            raw_lock(&broker, &broker_name, &group, &topic, "127.0.0.1@intruder").is_empty(),
            "an outsider got a lock held by the group's consumers"
        );
        assert_in_order_per_order(&log.snapshot(), "two consumers");
        let consumers: BTreeSet<usize> = log.snapshot().iter().map(|s| s.consumer).collect();
        assert_eq!(consumers.len(), 2, "both consumed");

        a.shutdown().await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let locked = b.locked_queues().await.expect("b");
            if locked.iter().filter(|q| q.topic == topic).count() == QUEUES as usize {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the survivor holds only {locked:?}"
            );
            sleep(Duration::from_millis(100)).await;
        }
        for order in 0..ORDERS {
            let message = Message::new(&topic, format!("late-{order}"));
            producer
                .send_orderly(message, &format!("order-{order}"))
                .await
                .expect("late send");
        }
        wait_until(
            "the survivor consumes every late step",
            Duration::from_secs(15),
            || {
                let late: BTreeSet<(usize, String)> = log
                    .snapshot()
                    .into_iter()
                    .filter(|s| s.body.starts_with("late-"))
                    .map(|s| (s.consumer, s.body))
                    .collect();
                late.len() == ORDERS && late.iter().all(|(c, _)| *c == 1)
            },
        )
        .await;
        b.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

fn suspend_bad(m: &MessageExt) -> ConsumeOrderlyStatus {
    if m.body().as_ref() == b"bad" {
        ConsumeOrderlyStatus::SuspendCurrentQueueAMoment
    } else {
        ConsumeOrderlyStatus::Success
    }
}

/// Conformance: retry, orderly (PushConsumerRetryTest: orderly SUSPEND redelivers after the
/// suspend time; the first message always fails, the following ones are blocked until it
/// reaches the DLQ, then everything else is received). Method: "bad" then three good messages
/// in one queue; suspend time 300 ms, orderly max 2: "bad" is delivered with reconsumeTimes 0,
/// 1, 2 at least 300 ms apart, nothing else meanwhile, then lands in `%DLQ%<group>` (pulled
/// from there with its original body, topic and msgId) and the good ones follow in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_suspend_redelivers_then_the_orderly_max_moves_it_to_the_dlq() {
    bounded("order_suspend_dlq", TEST_TIMEOUT, async {
        let topic = unique("OrdS");
        let group = unique("GOrdS");
        let broker = broker_with_topic(&topic);
        let producer = producer(&broker.namesrv_addr).await;
        let mut bad_id = String::new();
        for body in ["bad", "good-1", "good-2", "good-3"] {
            let r = producer
                .send_orderly(Message::new(&topic, body), "one-order")
                .await
                .expect("send");
            if body == "bad" {
                bad_id = r.msg_id.clone();
            }
        }
        let log = Log::default();
        let consumer = vostok_orderly(
            &broker.namesrv_addr,
            &group,
            &topic,
            0,
            &log,
            suspend_bad,
            |b| {
                b.suspend_current_queue_time(Duration::from_millis(300))
                    .max_reconsume_times(2)
            },
        )
        .await;
        wait_until(
            "the good messages after the bad one",
            Duration::from_secs(20),
            || log.bodies().contains("good-3"),
        )
        .await;
        let seen = log.snapshot();
        let got: Vec<(String, i32)> = seen
            .iter()
            .map(|s| (s.body.clone(), s.reconsume_times))
            .collect();
        assert_eq!(
            got,
            vec![
                ("bad".to_owned(), 0),
                ("bad".to_owned(), 1),
                ("bad".to_owned(), 2),
                ("good-1".to_owned(), 0),
                ("good-2".to_owned(), 0),
                ("good-3".to_owned(), 0),
            ]
        );
        for pair in seen[..3].windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(
                gap >= Duration::from_millis(280),
                "redelivered after {gap:?}"
            );
        }
        let dead = block_in_place(|| {
            let mut conn = RawConn::connect(&broker.broker_addr);
            pull_all(&mut conn, "dlq-reader", &format!("%DLQ%{group}"), 0, 1)
        });
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].body, b"bad");
        let props: BTreeMap<_, _> = dead[0].properties.iter().cloned().collect();
        assert_eq!(props.get("RETRY_TOPIC"), Some(&topic));
        assert_eq!(props.get("UNIQ_KEY"), Some(&bad_id));
        consumer.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}

/// Conformance: retry, orderly, with the published RocketMQ Rust client: its orderly consumer
/// suspends locally (reconsumeTimes 0, 1, 2 with maxReconsumeTimes 2), then sends the message
/// to `%RETRY%<group>`, which Vostok's broker routes to `%DLQ%<group>` because the group holds
/// queue locks; the messages behind it follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_suspend_then_dlq_with_the_rocketmq_orderly_consumer() {
    use rocketmq_client_rust::MQPushConsumer;
    bounded("order_suspend_dlq_rocketmq", TEST_TIMEOUT, async {
        let topic = unique("OrdSR");
        let group = unique("GOrdSR");
        let broker = broker_with_topic(&topic);
        let producer = producer(&broker.namesrv_addr).await;
        for body in ["bad", "good-1", "good-2"] {
            producer
                .send_orderly(Message::new(&topic, body), "one-order")
                .await
                .expect("send");
        }
        let log = Log::default();
        let sink = log.clone();
        let mut consumer = push_consumer_builder(&broker.namesrv_addr, &group)
            .max_reconsume_times(2)
            .suspend_current_queue_time_millis(300)
            .build();
        consumer
            .subscribe(topic.as_str(), "*")
            .await
            .expect("rocketmq consumer subscribes");
        consumer.register_message_listener_orderly(
            move |msgs: &[&rocketmq_model::common::message::message_ext::MessageExt],
                  _ctx: &mut rocketmq_client_rust::ConsumeOrderlyContext| {
                let mut status = rocketmq_client_rust::ConsumeOrderlyStatus::Success;
                for m in msgs {
                    let body = String::from_utf8_lossy(m.message.body_slice()).into_owned();
                    if body == "bad" {
                        status =
                            rocketmq_client_rust::ConsumeOrderlyStatus::SuspendCurrentQueueAMoment;
                    }
                    sink.push(Seen {
                        consumer: 0,
                        queue_id: m.queue_id(),
                        queue_offset: m.queue_offset(),
                        body,
                        reconsume_times: m.reconsume_times(),
                        at: Instant::now(),
                    });
                }
                Ok(status)
            },
        );
        consumer.start().await.expect("rocketmq consumer starts");
        wait_until(
            "the good messages after the bad one",
            Duration::from_secs(40),
            || log.bodies().contains("good-2"),
        )
        .await;
        let got: Vec<(String, i32)> = log
            .snapshot()
            .into_iter()
            .map(|s| (s.body, s.reconsume_times))
            .collect();
        assert_eq!(
            got,
            vec![
                ("bad".to_owned(), 0),
                ("bad".to_owned(), 1),
                ("bad".to_owned(), 2),
                ("good-1".to_owned(), 0),
                ("good-2".to_owned(), 0),
            ]
        );
        let dead = block_in_place(|| {
            let mut conn = RawConn::connect(&broker.broker_addr);
            pull_all(&mut conn, "dlq-reader", &format!("%DLQ%{group}"), 0, 1)
        });
        assert_eq!(dead[0].body, b"bad");
        let retried = block_in_place(|| {
            let mut conn = RawConn::connect(&broker.broker_addr);
            max_offset(&mut conn, &format!("%RETRY%{group}"), 0)
        });
        assert_eq!(retried, 0, "nothing stays in the retry topic");
        consumer.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}
