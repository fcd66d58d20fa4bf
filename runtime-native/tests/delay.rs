//! Delay levels with the unmodified RocketMQ Rust client (`rocketmq-client-rust` 1.0.0) against
//! `vostok standalone`: a delayed message appears in its topic no earlier than its level's delay
//! and within a tolerance after it, also across a broker restart in the middle of the delay.
//!
//! Arrival is watched broker-side with raw GET_MAX_OFFSET / PULL_MESSAGE requests every 50 ms,
//! so client timers (rebalance, pull back-off) do not blur the measurement.

mod common;

use std::time::Duration;

use rocketmq_client_rust::{DefaultMQProducer, SendStatus};
use rocketmq_model::common::message::message_single::Message;
use tokio::task::block_in_place;
use tokio::time::{sleep, timeout, Instant};

use common::*;

/// Latest acceptable arrival after the delay has passed.
const TOLERANCE: Duration = Duration::from_millis(1_500);
/// Bound for the whole test.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn start_producer(namesrv: &str) -> DefaultMQProducer {
    start_producer_in(namesrv, "pg_delay").await
}

/// Sends a message with a delay level; returns its queue id and the instant before the send
/// (the broker's store time, which starts the delay, is later).
async fn send_delayed(
    producer: &mut DefaultMQProducer,
    topic: &str,
    body: &str,
    level: i32,
) -> (i32, Instant) {
    let message = Message::builder()
        .topic(topic)
        .tags("Delayed")
        .body_slice(body.as_bytes())
        .delay_level(level)
        .build_unchecked();
    let before = Instant::now();
    let result = producer
        .send(message)
        .await
        .expect("delayed send succeeds")
        .expect("a sync send returns a result");
    assert_eq!(result.send_status, SendStatus::SendOk, "{result:?}");
    let queue = result.message_queue.expect("the send names its queue");
    assert_eq!(queue.topic_str(), topic, "the client sees its own topic");
    (queue.queue_id(), before)
}

/// Every queue's max offset, read broker-side.
fn max_offsets(broker_addr: &str, topic: &str) -> Vec<i64> {
    let mut conn = RawConn::connect(broker_addr);
    (0..4).map(|q| max_offset(&mut conn, topic, q)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_levels_arrive_in_time_and_survive_a_restart() {
    let mut broker = block_in_place(Standalone::start);
    let body = async {
        let topic = "DelayTopic";
        block_in_place(|| create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, 4));
        let mut producer = start_producer(&broker.namesrv_addr).await;

        // Level 1 (1 s) and level 2 (5 s), sent together.
        let (_, sent_1s) = send_delayed(&mut producer, topic, "level-1", 1).await;
        let (queue_5s, sent_5s) = send_delayed(&mut producer, topic, "level-2", 2).await;
        assert_eq!(
            block_in_place(|| max_offsets(&broker.broker_addr, topic)),
            [0, 0, 0, 0],
            "nothing is in the topic before its delay"
        );
        expect_arrival(
            &broker,
            topic,
            4,
            "level-1",
            sent_1s + Duration::from_secs(1),
            TOLERANCE,
        )
        .await;

        // Restart in the middle of the 5 s delay.
        producer.shutdown().await;
        block_in_place(|| broker.restart());
        let restarted = Instant::now();
        assert!(
            restarted < sent_5s + Duration::from_secs(5),
            "the restart took too long for the test to mean anything"
        );
        expect_arrival(
            &broker,
            topic,
            4,
            "level-2",
            sent_5s + Duration::from_secs(5),
            TOLERANCE,
        )
        .await;

        // Exactly once each after a graceful restart, DELAY gone, the real queue kept.
        sleep(Duration::from_millis(1_200)).await;
        let messages = block_in_place(|| stored_messages(&broker.broker_addr, topic, 4));
        let bodies: Vec<&str> = messages.iter().map(|(b, _)| b.as_str()).collect();
        assert_eq!(bodies, ["level-1", "level-2"]);
        for (_, properties) in &messages {
            assert_eq!(properties.get("DELAY"), None, "{properties:?}");
            assert_eq!(
                properties.get("REAL_TOPIC").map(String::as_str),
                Some(topic)
            );
            assert_eq!(properties.get("TAGS").map(String::as_str), Some("Delayed"));
        }
        let offsets = block_in_place(|| max_offsets(&broker.broker_addr, topic));
        assert!(offsets[queue_5s as usize] >= 1, "{offsets:?}");
    };
    if timeout(TEST_TIMEOUT, body).await.is_err() {
        panic!("the delay test did not finish within {TEST_TIMEOUT:?}");
    }
}
