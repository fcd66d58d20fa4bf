//! Retry and dead-letter queue with the unmodified RocketMQ Rust client (`rocketmq-client-rust`
//! 1.0.0) against `vostok standalone` (conformance: retry). A push consumer that always answers
//! RECONSUME_LATER gets its message back from `%RETRY%<group>` with reconsumeTimes 1 (after delay
//! level 3, 10 s, whenever the broker schedules delayed messages), and once its
//! maxReconsumeTimes (1 here, to stay fast) is reached the broker parks the message in
//! `%DLQ%<group>`, where it can be pulled and queried.
#![recursion_limit = "256"]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketmq_client_rust::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, MQPushConsumer,
    MessageListenerConcurrently, SendStatus,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use tokio::task::block_in_place;
use tokio::time::{sleep, timeout, Instant};

use common::*;

const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Delay level 3, the first retry's delay.
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(10);
/// QUERY_MESSAGE's request code.
const QUERY_MESSAGE: i32 = 12;

/// One delivery: the topic the client reports, reconsume times, body and when it arrived.
#[derive(Clone, Debug)]
struct Delivery {
    topic: String,
    reconsume_times: i32,
    body: Vec<u8>,
    at: Instant,
}

/// Records every delivery and always asks for a later retry.
#[derive(Clone, Default)]
struct AlwaysLater {
    deliveries: Arc<Mutex<Vec<Delivery>>>,
}

impl AlwaysLater {
    fn snapshot(&self) -> Vec<Delivery> {
        self.deliveries.lock().expect("listener lock").clone()
    }
}

impl MessageListenerConcurrently for AlwaysLater {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeConcurrentlyStatus> {
        let mut deliveries = self.deliveries.lock().expect("listener lock");
        for m in msgs {
            deliveries.push(Delivery {
                topic: m.topic().to_string(),
                reconsume_times: m.reconsume_times(),
                body: m.message.body_slice().to_vec(),
                at: Instant::now(),
            });
        }
        Ok(ConsumeConcurrentlyStatus::ReconsumeLater)
    }
}

fn property<'a>(record: &'a StoredRecord, name: &str) -> Option<&'a str> {
    record
        .properties
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_then_dead_letter_queue_with_the_real_client() {
    let body = async {
        let broker = block_in_place(|| Standalone::start_with(BrokerOptions::default()));
        let topic = "RetryTopic";
        let group = "RetryGroup";
        let retry_topic = format!("%RETRY%{group}");
        let dlq_topic = format!("%DLQ%{group}");
        block_in_place(|| {
            create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, 1);
            // The route of the group's retry topic exists before the consumer starts, so the
            // client does not wait for its next route refresh (30 s) to pull it.
            create_topic(&broker.broker_addr, &broker.namesrv_addr, &retry_topic, 1);
        });

        let mut producer = start_producer_in(&broker.namesrv_addr, "RetryProducer").await;
        let message = Message::builder()
            .topic(topic)
            .tags("TagR")
            .keys(vec!["retry-key-1".to_string()])
            .body_slice(b"fails every time")
            .build_unchecked();
        let sent = producer
            .send(message)
            .await
            .expect("send succeeds")
            .expect("send returns a result");
        assert_eq!(sent.send_status, SendStatus::SendOk);
        let offset_msg_id = sent.offset_msg_id.clone().expect("offset msg id");

        let listener = AlwaysLater::default();
        let mut consumer = push_consumer_builder(&broker.namesrv_addr, group)
            .max_reconsume_times(1)
            .build();
        consumer.subscribe(topic, "*").await.expect("subscribes");
        consumer.register_message_listener_concurrently(listener.clone());
        consumer.start().await.expect("consumer starts");

        let mut conn = block_in_place(|| RawConn::connect(&broker.broker_addr));
        wait_until(
            "the message reaches the DLQ",
            Duration::from_secs(25),
            || {
                block_in_place(|| {
                    let f = conn.request(
                        30,
                        &[("topic", dlq_topic.clone()), ("queueId", "0".to_string())],
                        &[],
                    );
                    f.code() == 0 && f.ext_i64("offset") == Some(1)
                })
            },
        )
        .await;
        // Nothing more may arrive once the message is dead.
        sleep(Duration::from_secs(1)).await;
        let deliveries = listener.snapshot();
        assert_eq!(deliveries.len(), 2, "{deliveries:?}");
        assert_eq!(deliveries[0].reconsume_times, 0);
        assert_eq!(deliveries[1].reconsume_times, 1);
        for d in &deliveries {
            assert_eq!(d.topic, topic, "the client restores the original topic");
            assert_eq!(d.body, b"fails every time");
        }
        // When the broker schedules delayed messages the retry took at least level 3's delay.
        let scheduled = block_in_place(|| max_offset(&mut conn, "SCHEDULE_TOPIC_XXXX", 2)) > 0;
        if scheduled {
            let waited = deliveries[1].at - deliveries[0].at;
            assert!(
                waited >= FIRST_RETRY_DELAY - Duration::from_millis(500),
                "the retry came back after {waited:?}"
            );
        }

        // The broker (not the client's re-send fallback) wrote the retry and the dead letter:
        // WAIT=false and the original's offset message id as ORIGIN_MESSAGE_ID.
        let (f, retried) = block_in_place(|| pull(&mut conn, "inspector", &retry_topic, 0, 0));
        assert_eq!(f.code(), 0, "{:?}", f.header);
        assert_eq!(retried.len(), 1, "{retried:?}");
        assert_eq!(property(&retried[0], "WAIT"), Some("false"));
        assert_eq!(property(&retried[0], "RETRY_TOPIC"), Some(topic));
        assert_eq!(
            property(&retried[0], "ORIGIN_MESSAGE_ID"),
            Some(offset_msg_id.as_str())
        );
        assert_eq!(property(&retried[0], "RECONSUME_TIME"), None);

        let (f, dead) = block_in_place(|| pull(&mut conn, "dlq-reader", &dlq_topic, 0, 0));
        assert_eq!(f.code(), 0, "the DLQ is readable: {:?}", f.header);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].topic, dlq_topic);
        assert_eq!(dead[0].body, b"fails every time");
        assert_eq!(property(&dead[0], "WAIT"), Some("false"));
        assert_eq!(property(&dead[0], "DELAY"), Some("0"));
        assert_eq!(property(&dead[0], "RETRY_TOPIC"), Some(topic));
        assert_eq!(
            property(&dead[0], "ORIGIN_MESSAGE_ID"),
            Some(offset_msg_id.as_str())
        );

        // Queryable by key in the DLQ.
        let f = block_in_place(|| {
            conn.request(
                QUERY_MESSAGE,
                &[
                    ("topic", dlq_topic.clone()),
                    ("key", "retry-key-1".to_string()),
                    ("maxNum", "32".to_string()),
                    ("beginTimestamp", "0".to_string()),
                    ("endTimestamp", i64::MAX.to_string()),
                ],
                &[],
            )
        });
        assert_eq!(f.code(), 0, "{:?}", f.header);
        let found = decode_records(&f.body);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].topic, dlq_topic);

        consumer.shutdown().await;
        producer.shutdown().await;
    };
    if timeout(TEST_TIMEOUT, body).await.is_err() {
        panic!("retry_then_dead_letter_queue_with_the_real_client did not finish in time");
    }
}
