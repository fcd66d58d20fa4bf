//! Timer messages (RocketMQ 5.x `TIMER_DELIVER_MS` / `TIMER_DELAY_MS`) with the unmodified
//! RocketMQ Rust client (`rocketmq-client-rust` 1.0.0) and the Vostok client against
//! `vostok standalone`: messages due in 2 s and 4 s appear in their topic no earlier than their
//! time and within a tolerance after it, across a graceful restart and across a SIGKILL; a time
//! beyond `timerMaxDelaySec` is refused and one in the past is delivered at once.
//!
//! Arrival is watched broker-side with raw GET_MAX_OFFSET / PULL_MESSAGE requests every 50 ms,
//! so client timers (rebalance, pull back-off) do not blur the measurement.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rocketmq_client_rust::{DefaultMQProducer, SendStatus};
use rocketmq_model::common::message::message_single::Message;
use tokio::task::block_in_place;
use tokio::time::{sleep, timeout, Instant};

use common::*;

/// Latest acceptable arrival after the delivery time.
const TOLERANCE: Duration = Duration::from_millis(1_500);
/// Bound for the whole test.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
const QUEUES: i32 = 4;

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The instant the wall clock reaches `deliver_ms` (measured now; the two clocks agree for the
/// few seconds a test lasts). Measured in nanoseconds: with the wall clock cut to whole
/// milliseconds the instant would come up to 1 ms late, and a timer delivered exactly on time
/// would look early.
fn instant_of(deliver_ms: u64) -> Instant {
    let now = Instant::now();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let deliver_ns = u128::from(deliver_ms) * 1_000_000;
    now + Duration::from_nanos(deliver_ns.saturating_sub(now_ns) as u64)
}

/// Sends with the RocketMQ client; returns the instant before the send.
async fn send_rocketmq(producer: &mut DefaultMQProducer, message: Message) -> Instant {
    let before = Instant::now();
    let result = producer
        .send(message)
        .await
        .expect("timer send succeeds")
        .expect("a sync send returns a result");
    assert_eq!(result.send_status, SendStatus::SendOk, "{result:?}");
    before
}

async fn vostok_producer(namesrv: &str) -> vostok::client::Producer {
    vostok::client::Producer::builder()
        .namesrv_addr(namesrv)
        .group(&unique("pg_timer"))
        .send_timeout(Duration::from_secs(10))
        .build()
        .expect("producer builds")
        .start()
        .await
        .expect("producer starts")
}

/// Sends two timers from each client (due in 2 s and 4 s, absolute and relative); returns each
/// body with its delivery instant.
async fn send_timers(broker: &Standalone, topic: &str, run: &str) -> Vec<(String, Instant)> {
    let mut due = Vec::new();
    let mut producer = start_producer_in(&broker.namesrv_addr, &unique("pg_timer")).await;
    let body = format!("{run}-rocketmq-2s");
    let deliver_ms = epoch_ms() + 2_000;
    let message = Message::builder()
        .topic(topic)
        .tags("Timer")
        .body_slice(body.as_bytes())
        .deliver_time_ms(deliver_ms)
        .build_unchecked();
    send_rocketmq(&mut producer, message).await;
    due.push((body, instant_of(deliver_ms)));
    let body = format!("{run}-rocketmq-4s");
    let message = Message::builder()
        .topic(topic)
        .tags("Timer")
        .body_slice(body.as_bytes())
        .delay_millis(4_000)
        .build_unchecked();
    let before = send_rocketmq(&mut producer, message).await;
    due.push((body, before + Duration::from_secs(4)));
    producer.shutdown().await;

    let producer = vostok_producer(&broker.namesrv_addr).await;
    let body = format!("{run}-vostok-2s");
    let deliver_ms = epoch_ms() + 2_000;
    let message = vostok::client::Message::new(topic, body.clone().into_bytes())
        .with_tags("Timer")
        .with_deliver_time_ms(deliver_ms);
    let result = producer.send(message).await.expect("vostok timer send");
    assert_eq!(result.status, vostok::client::SendStatus::SendOk);
    due.push((body, instant_of(deliver_ms)));
    let body = format!("{run}-vostok-4s");
    let message = vostok::client::Message::new(topic, body.clone().into_bytes())
        .with_tags("Timer")
        .with_delay_ms(4_000);
    let before = Instant::now();
    let result = producer.send(message).await.expect("vostok timer send");
    assert_eq!(result.status, vostok::client::SendStatus::SendOk);
    due.push((body, before + Duration::from_secs(4)));
    producer.shutdown().await;

    let now = block_in_place(|| stored_messages(&broker.broker_addr, topic, QUEUES));
    assert!(
        now.is_empty(),
        "nothing is in the topic before its time: {now:?}"
    );
    due
}

/// Every timer arrives in time, then exactly once each with its tags, the bookkeeping added.
async fn expect_all(broker: &Standalone, topic: &str, due: &[(String, Instant)]) {
    let mut sorted = due.to_vec();
    sorted.sort_by_key(|(_, at)| *at);
    for (body, at) in &sorted {
        expect_arrival(broker, topic, QUEUES, body, *at, TOLERANCE).await;
    }
    sleep(Duration::from_millis(1_200)).await;
    let messages = block_in_place(|| stored_messages(&broker.broker_addr, topic, QUEUES));
    let mut bodies: Vec<&str> = messages.iter().map(|(b, _)| b.as_str()).collect();
    let mut expected: Vec<&str> = due.iter().map(|(b, _)| b.as_str()).collect();
    expected.sort();
    bodies.dedup();
    assert_eq!(bodies, expected);
    for (_, properties) in &messages {
        assert_eq!(properties.get("TAGS").map(String::as_str), Some("Timer"));
        assert!(properties.contains_key("TIMER_OUT_MS"), "{properties:?}");
        assert_eq!(
            properties.get("REAL_TOPIC").map(String::as_str),
            Some(topic)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_arrive_in_time_across_a_restart() {
    let mut broker = block_in_place(Standalone::start);
    let body = async {
        let topic = "TimerTopic";
        block_in_place(|| create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, 4));
        let due = send_timers(&broker, topic, "restart").await;
        let sent = Instant::now();
        block_in_place(|| broker.restart());
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "the restart took too long for the test to mean anything"
        );
        expect_all(&broker, topic, &due).await;
        // Exactly once after a graceful restart.
        let messages = block_in_place(|| stored_messages(&broker.broker_addr, topic, QUEUES));
        assert_eq!(messages.len(), due.len(), "{messages:?}");
    };
    if timeout(TEST_TIMEOUT, body).await.is_err() {
        panic!("the timer test did not finish within {TEST_TIMEOUT:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_arrive_in_time_across_a_sigkill() {
    let mut broker = block_in_place(Standalone::start);
    let body = async {
        let topic = "TimerKillTopic";
        block_in_place(|| create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, 4));
        let due = send_timers(&broker, topic, "kill").await;
        let sent = Instant::now();
        block_in_place(|| {
            broker.kill();
            broker.spawn_again();
        });
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "the restart took too long for the test to mean anything"
        );
        // At least once each, never early (a crash may deliver again, never loses).
        expect_all(&broker, topic, &due).await;
    };
    if timeout(TEST_TIMEOUT, body).await.is_err() {
        panic!("the timer test did not finish within {TEST_TIMEOUT:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_time_is_immediate_and_a_far_one_refused() {
    let broker = block_in_place(Standalone::start);
    let body = async {
        let topic = "TimerEdgeTopic";
        block_in_place(|| create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, 4));
        let mut producer = start_producer_in(&broker.namesrv_addr, &unique("pg_timer")).await;
        let message = Message::builder()
            .topic(topic)
            .body_slice(b"past")
            .deliver_time_ms(epoch_ms() - 20_000)
            .build_unchecked();
        let before = send_rocketmq(&mut producer, message).await;
        expect_arrival(&broker, topic, QUEUES, "past", before, TOLERANCE).await;

        // RocketMQ's default maximum: 3 days.
        let message = Message::builder()
            .topic(topic)
            .body_slice(b"far")
            .deliver_time_ms(epoch_ms() + 3 * 24 * 3_600_000 + 60_000)
            .build_unchecked();
        let refused = producer.send(message).await;
        assert!(refused.is_err(), "{refused:?}");
        producer.shutdown().await;
        // The answer itself: MESSAGE_ILLEGAL with RocketMQ's remark; nothing stored.
        block_in_place(|| {
            let mut conn = RawConn::connect(&broker.broker_addr);
            let properties = encode_properties(&[("TIMER_DELAY_SEC", "259201")]);
            let answer = conn.request(310, &send_v2_ext(topic, 0, properties), b"far");
            assert_eq!(answer.code(), 13, "{}", answer.remark());
            assert!(
                answer.remark().starts_with(
                    "timer message illegal, the delay time should not be bigger than the max \
                     delay 259200000ms"
                ),
                "{}",
                answer.remark()
            );
            assert_eq!(max_offset(&mut conn, "rmq_sys_wheel_timer", 0), 0);
        });
    };
    if timeout(TEST_TIMEOUT, body).await.is_err() {
        panic!("the timer test did not finish within {TEST_TIMEOUT:?}");
    }
}
