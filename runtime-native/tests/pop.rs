//! POP consumption against `vostok standalone`: the unmodified RocketMQ Rust client
//! (`rocketmq-client-rust` 1.0.0, a push consumer with broker-side balancing, which pops,
//! batch-acks and changes invisible time) and raw POP frames for what a client library hides:
//! a consumer that dies holding messages, a restart (SIGKILL) with messages in flight.
#![recursion_limit = "256"]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketmq_client_rust::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, MQPushConsumer,
    MessageListenerConcurrently,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use tokio::task::block_in_place;
use tokio::time::{sleep, timeout};

use common::*;

const TEST_TIMEOUT: Duration = Duration::from_secs(90);
const POP_MESSAGE: i32 = 200_050;
const ACK_MESSAGE: i32 = 200_051;
const POLLING_TIMEOUT: i64 = 210;
/// Every group reads in POP mode without an admin call first.
const POP_CONF: &str = "defaultMessageRequestMode=POP\n";

/// Who consumed what: consumer index → bodies, and every delivery's reconsume times.
#[derive(Clone, Default)]
struct Seen {
    by_consumer: Arc<Mutex<BTreeMap<usize, Vec<String>>>>,
    reconsumes: Arc<Mutex<Vec<(String, i32)>>>,
}

struct Listener {
    index: usize,
    seen: Seen,
    /// Bodies this listener fails once (RECONSUME_LATER), so they come back.
    fail_once: Arc<Mutex<BTreeSet<String>>>,
}

impl MessageListenerConcurrently for Listener {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeConcurrentlyStatus> {
        let mut fail = false;
        for m in msgs {
            let body = String::from_utf8_lossy(m.message.body_slice()).into_owned();
            self.seen
                .reconsumes
                .lock()
                .unwrap()
                .push((body.clone(), m.reconsume_times()));
            if self.fail_once.lock().unwrap().remove(&body) {
                fail = true;
                continue;
            }
            self.seen
                .by_consumer
                .lock()
                .unwrap()
                .entry(self.index)
                .or_default()
                .push(body);
        }
        Ok(if fail {
            ConsumeConcurrentlyStatus::ReconsumeLater
        } else {
            ConsumeConcurrentlyStatus::ConsumeSuccess
        })
    }
}

fn pop_ext(
    topic: &str,
    group: &str,
    invisible_ms: i64,
    poll_ms: i64,
) -> Vec<(&'static str, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    vec![
        ("consumerGroup", group.to_owned()),
        ("topic", topic.to_owned()),
        ("queueId", "-1".to_owned()),
        ("maxMsgNums", "32".to_owned()),
        ("invisibleTime", invisible_ms.to_string()),
        ("pollTime", poll_ms.to_string()),
        ("bornTime", now.to_string()),
        ("initMode", "0".to_owned()),
        ("expType", "TAG".to_owned()),
        ("exp", "*".to_owned()),
    ]
}

/// The ext fields of an ACK_MESSAGE for one popped message.
type AckFields = Vec<(&'static str, String)>;

/// One raw POP: the answer, and per record its body and the ack fields a client derives.
fn raw_pop(
    conn: &mut RawConn,
    topic: &str,
    group: &str,
    invisible_ms: i64,
) -> (Frame, Vec<(String, AckFields)>) {
    let f = conn.request(POP_MESSAGE, &pop_ext(topic, group, invisible_ms, 0), &[]);
    if f.code() != 0 {
        return (f, Vec::new());
    }
    let starts: BTreeMap<String, String> = f
        .ext("startOffsetInfo")
        .unwrap_or_default()
        .split(';')
        .filter_map(|item| {
            let mut p = item.split(' ');
            let (flag, q, start) = (p.next()?, p.next()?, p.next()?);
            Some((format!("{flag}@{q}"), start.to_owned()))
        })
        .collect();
    let (pop_time, invisible, revive) = (
        f.ext("popTime").unwrap(),
        f.ext("invisibleTime").unwrap(),
        f.ext("reviveQid").unwrap(),
    );
    let acks = decode_records(&f.body)
        .into_iter()
        .map(|r| {
            let body = String::from_utf8_lossy(&r.body).into_owned();
            let (handle, real_topic) = match r.properties.iter().find(|(k, _)| k == "POP_CK") {
                Some((_, ck)) => (ck.clone(), format!("%RETRY%{group}+{topic}")),
                None => (
                    format!(
                        "{} {pop_time} {invisible} {revive} 0 broker-a {} {}",
                        starts[&format!("0@{}", r.queue_id)],
                        r.queue_id,
                        r.queue_offset
                    ),
                    topic.to_owned(),
                ),
            };
            let ext = vec![
                ("consumerGroup", group.to_owned()),
                ("topic", real_topic),
                ("queueId", r.queue_id.to_string()),
                ("extraInfo", handle),
                ("offset", r.queue_offset.to_string()),
            ];
            (body, ext)
        })
        .collect();
    (f, acks)
}

async fn send_all(namesrv: &str, topic: &str, bodies: &[String]) {
    let mut producer = start_producer_in(namesrv, &unique("PopProducer")).await;
    for body in bodies {
        let message = Message::builder()
            .topic(topic)
            .tags("TagP")
            .body_slice(body.as_bytes())
            .build_unchecked();
        producer
            .send(message)
            .await
            .expect("send succeeds")
            .expect("send returns a result");
    }
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_push_consumers_in_pop_mode_share_one_queue_and_failed_messages_come_back() {
    let body = async {
        let broker = block_in_place(|| {
            Standalone::start_with(BrokerOptions {
                broker_conf: Some(POP_CONF.to_owned()),
                ..Default::default()
            })
        });
        let topic = "PopShared";
        let group = "PopSharedGroup";
        block_in_place(|| create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, 1));
        let seen = Seen::default();
        let fail_once = Arc::new(Mutex::new(BTreeSet::from(["pop-7".to_owned()])));
        let mut consumers = Vec::new();
        for index in 0..3 {
            let mut consumer = push_consumer_builder(&broker.namesrv_addr, group)
                .client_rebalance(false)
                .pop_batch_nums(4)
                .build();
            consumer.subscribe(topic, "*").await.expect("subscribes");
            consumer.register_message_listener_concurrently(Listener {
                index,
                seen: seen.clone(),
                fail_once: fail_once.clone(),
            });
            consumer.start().await.expect("consumer starts");
            consumers.push(consumer);
        }
        let bodies: Vec<String> = (0..60).map(|i| format!("pop-{i}")).collect();
        // Spread over time, so held POPs of every consumer are woken.
        for chunk in bodies.chunks(6) {
            send_all(&broker.namesrv_addr, topic, chunk).await;
            sleep(Duration::from_millis(100)).await;
        }
        wait_until("every message consumed", Duration::from_secs(60), || {
            let got: BTreeSet<String> = seen
                .by_consumer
                .lock()
                .unwrap()
                .values()
                .flatten()
                .cloned()
                .collect();
            got.len() == bodies.len()
        })
        .await;
        let by_consumer = seen.by_consumer.lock().unwrap().clone();
        let all: Vec<&String> = by_consumer.values().flatten().collect();
        let distinct: BTreeSet<&String> = all.iter().copied().collect();
        assert_eq!(distinct.len(), 60);
        assert_eq!(
            all.len(),
            60,
            "a message was consumed twice: {by_consumer:?}"
        );
        assert!(
            by_consumer.values().filter(|v| !v.is_empty()).count() >= 2,
            "one queue, shared by several consumers: {by_consumer:?}"
        );
        // The failed message came back once, counted.
        let reconsumes = seen.reconsumes.lock().unwrap().clone();
        let of7: Vec<i32> = reconsumes
            .iter()
            .filter(|(b, _)| b == "pop-7")
            .map(|(_, r)| *r)
            .collect();
        assert_eq!(of7, vec![0, 1], "{reconsumes:?}");
        for mut c in consumers {
            c.shutdown().await;
        }
    };
    timeout(TEST_TIMEOUT, body).await.expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_dies_holding_messages_gives_them_back_and_a_restart_keeps_them_in_flight()
{
    let body = async {
        let mut broker = block_in_place(Standalone::start);
        let topic = "PopDies";
        let group = "PopDiesGroup";
        block_in_place(|| create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, 2));
        let bodies: Vec<String> = (0..6).map(|i| format!("held-{i}")).collect();
        send_all(&broker.namesrv_addr, topic, &bodies).await;

        // A consumer pops everything, acks two, and dies (its connection goes away).
        let acked: BTreeSet<String> = block_in_place(|| {
            let mut conn = RawConn::connect(&broker.broker_addr);
            let (f, popped) = raw_pop(&mut conn, topic, group, 8_000);
            assert_eq!(f.code(), 0, "{:?}", f.header);
            assert_eq!(popped.len(), 6);
            popped
                .iter()
                .take(2)
                .map(|(body, ext)| {
                    assert_eq!(conn.request(ACK_MESSAGE, ext, &[]).code(), 0);
                    body.clone()
                })
                .collect()
        });
        // SIGKILL with the other four in flight; the restart keeps them invisible.
        block_in_place(|| {
            broker.kill();
            broker.spawn_again();
        });
        let mut conn = block_in_place(|| RawConn::connect(&broker.broker_addr));
        let (f, early) = block_in_place(|| raw_pop(&mut conn, topic, group, 4_000));
        assert_eq!(
            f.code(),
            POLLING_TIMEOUT,
            "in flight across the restart: {early:?}"
        );

        let mut back = BTreeMap::new();
        wait_until(
            "the unacked messages come back",
            Duration::from_secs(20),
            || {
                block_in_place(|| {
                    let (_, got) = raw_pop(&mut conn, topic, group, 30_000);
                    for (body, ext) in got {
                        back.insert(body, ext);
                    }
                });
                back.len() >= 4
            },
        )
        .await;
        let expected: BTreeSet<String> = bodies
            .iter()
            .filter(|b| !acked.contains(*b))
            .cloned()
            .collect();
        assert_eq!(back.keys().cloned().collect::<BTreeSet<_>>(), expected);
        // Acked after their redelivery: nothing more comes.
        block_in_place(|| {
            for ext in back.values() {
                assert_eq!(conn.request(ACK_MESSAGE, ext, &[]).code(), 0);
            }
        });
        sleep(Duration::from_secs(2)).await;
        let (f, _) = block_in_place(|| raw_pop(&mut conn, topic, group, 30_000));
        assert_eq!(f.code(), POLLING_TIMEOUT);
    };
    timeout(TEST_TIMEOUT, body).await.expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orderly_pop_keeps_queue_order_with_two_consumers() {
    let body = async {
        let broker = block_in_place(Standalone::start);
        let topic = "PopOrderly";
        let group = "PopOrderlyGroup";
        block_in_place(|| create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, 1));
        let bodies: Vec<String> = (0..20).map(|i| format!("ordered-{i:02}")).collect();
        send_all(&broker.namesrv_addr, topic, &bodies).await;
        let consumed = block_in_place(|| {
            let mut conns = [
                RawConn::connect(&broker.broker_addr),
                RawConn::connect(&broker.broker_addr),
            ];
            let mut consumed: Vec<String> = Vec::new();
            let mut turns = 0;
            while consumed.len() < bodies.len() {
                turns += 1;
                assert!(turns < 400, "orderly consumption stalled at {consumed:?}");
                // Both consumers ask; only the one holding no batch of the queue may get one.
                let mut batches = Vec::new();
                for conn in conns.iter_mut() {
                    let mut ext = pop_ext(topic, group, 30_000, 0);
                    ext.push(("order", "true".to_owned()));
                    ext[3] = ("maxMsgNums", "3".to_owned());
                    let f = conn.request(POP_MESSAGE, &ext, &[]);
                    if f.code() == 0 {
                        batches.push((f.ext("popTime").unwrap(), decode_records(&f.body)));
                    }
                }
                assert!(batches.len() <= 1, "two batches of one queue in flight");
                let Some((pop_time, records)) = batches.pop() else {
                    continue;
                };
                for r in &records {
                    consumed.push(String::from_utf8_lossy(&r.body).into_owned());
                    let ext = vec![
                        ("consumerGroup", group.to_owned()),
                        ("topic", topic.to_owned()),
                        ("queueId", r.queue_id.to_string()),
                        (
                            "extraInfo",
                            format!(
                                "{} {pop_time} 30000 999 0 broker-a {} {}",
                                records[0].queue_offset, r.queue_id, r.queue_offset
                            ),
                        ),
                        ("offset", r.queue_offset.to_string()),
                    ];
                    assert_eq!(conns[0].request(ACK_MESSAGE, &ext, &[]).code(), 0);
                }
            }
            consumed
        });
        assert_eq!(consumed, bodies, "queue order, each once");
    };
    timeout(TEST_TIMEOUT, body).await.expect("test timed out");
}
