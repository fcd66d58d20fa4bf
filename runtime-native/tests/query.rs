//! QUERY_MESSAGE and VIEW_MESSAGE_BY_ID with the unmodified RocketMQ Rust client
//! (`rocketmq-client-rust` 1.0.0) against `vostok standalone`: query by key, by UNIQ_KEY and by
//! offset message id, through the producer's public `query_message` / `view_message`, before
//! and after a restart.
//!
//! The broker runs with small index files (broker.conf `maxHashSlotNum`, `maxIndexNum`) so the
//! messages of the test fill several files and collide in slots.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use rocketmq_client_rust::{DefaultMQProducer, SendStatus};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use tokio::task::block_in_place;
use tokio::time::{sleep, timeout, Instant};

use common::*;

const TEST_TIMEOUT: Duration = Duration::from_secs(120);
const QUEUES: usize = 4;
/// Messages sent to the queried topic.
const MESSAGES: usize = 12;

async fn start_producer(namesrv: &str) -> DefaultMQProducer {
    start_producer_in(namesrv, &unique("pg")).await
}

/// Creates `topic` and waits for its route.
async fn ensure_topic(producer: &mut DefaultMQProducer, topic: &str) {
    producer
        .create_topic("TBW102", topic, QUEUES as i32, HashMap::new())
        .await
        .expect("create topic");
    wait_for_publish_route(producer, topic, QUEUES).await;
}

fn body(topic: &str, seq: usize) -> Vec<u8> {
    format!("{topic} message {seq}").into_bytes()
}

/// What a send reported.
struct Sent {
    uniq_id: String,
    offset_msg_id: String,
}

async fn send(producer: &DefaultMQProducer, topic: &str, seq: usize, keys: Vec<String>) -> Sent {
    let message = Message::builder()
        .topic(topic)
        .tags("TagA")
        .keys(keys)
        .body(body(topic, seq))
        .build_unchecked();
    let result = producer
        .send(message)
        .await
        .expect("send")
        .expect("a send result");
    assert_eq!(result.send_status, SendStatus::SendOk);
    Sent {
        uniq_id: result.msg_id.expect("msg id").to_string(),
        offset_msg_id: result.offset_msg_id.expect("offset msg id"),
    }
}

/// The sequence numbers of the messages a query returned, asserting each is of `topic`.
fn seqs_of(topic: &str, messages: &[MessageExt]) -> BTreeSet<usize> {
    let prefix = format!("{topic} message ");
    messages
        .iter()
        .map(|m| {
            assert_eq!(m.topic().as_str(), topic);
            let text = String::from_utf8_lossy(m.message.body_slice()).into_owned();
            text.strip_prefix(&prefix)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected body {text:?}"))
        })
        .collect()
}

async fn query(
    producer: &mut DefaultMQProducer,
    topic: &str,
    key: &str,
) -> Result<BTreeSet<usize>, String> {
    producer
        .query_message(topic, key, 32, 0, i64::MAX as u64)
        .await
        .map(|r| seqs_of(topic, r.message_list()))
        .map_err(|e| e.to_string())
}

/// Checks every query the test makes; `sent` is what was sent to `topic_a`.
async fn check_queries(
    producer: &mut DefaultMQProducer,
    topic_a: &str,
    topic_b: &str,
    sent: &[Sent],
) {
    let all: BTreeSet<usize> = (0..MESSAGES).collect();
    assert_eq!(query(producer, topic_a, "shared").await, Ok(all));
    for seq in [0, 5, MESSAGES - 1] {
        let key = format!("key-{seq}");
        assert_eq!(
            query(producer, topic_a, &key).await,
            Ok(BTreeSet::from([seq])),
            "{key}"
        );
    }
    // The same key in another topic answers only for that topic.
    assert_eq!(
        query(producer, topic_b, "shared").await,
        Ok(BTreeSet::from([0]))
    );
    assert!(query(producer, topic_a, "no-such-key").await.is_err());
    // By UNIQ_KEY: a client msgId is not an offset id, so view_message falls back to
    // QUERY_MESSAGE with the unique-key flag.
    let by_uniq = producer
        .view_message(topic_a, &sent[3].uniq_id)
        .await
        .expect("view by UNIQ_KEY");
    assert_eq!(by_uniq.message.body_slice(), &body(topic_a, 3)[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_by_key_and_view_by_id_before_and_after_a_restart() {
    let run = async {
        let mut broker = block_in_place(|| {
            Standalone::start_with(BrokerOptions {
                broker_conf: Some("maxHashSlotNum=16\nmaxIndexNum=32\n".to_owned()),
                ..Default::default()
            })
        });
        let mut producer = start_producer(&broker.namesrv_addr).await;
        let (topic_a, topic_b) = (unique("QueryA"), unique("QueryB"));
        ensure_topic(&mut producer, &topic_a).await;
        ensure_topic(&mut producer, &topic_b).await;

        let mut sent = Vec::new();
        for seq in 0..MESSAGES {
            let keys = vec![format!("key-{seq}"), "shared".to_owned()];
            sent.push(send(&producer, &topic_a, seq, keys).await);
        }
        send(&producer, &topic_b, 0, vec!["shared".to_owned()]).await;
        let index_files = std::fs::read_dir(broker.data_dir.join("index"))
            .expect("index directory")
            .count();
        assert!(index_files > 1, "{index_files} index files: none rolled");

        check_queries(&mut producer, &topic_a, &topic_b, &sent).await;

        // VIEW_MESSAGE_BY_ID at the address inside the offset message id.
        for seq in [0, 7] {
            let viewed = producer
                .view_message(&topic_a, &sent[seq].offset_msg_id)
                .await
                .expect("view by offset msg id");
            assert_eq!(viewed.message.body_slice(), &body(&topic_a, seq)[..]);
            assert_eq!(viewed.topic().as_str(), topic_a);
            assert_eq!(viewed.msg_id.as_str(), sent[seq].offset_msg_id);
            assert_eq!(
                viewed.message.property("UNIQ_KEY").map(|k| k.to_string()),
                Some(sent[seq].uniq_id.clone())
            );
        }
        producer.shutdown().await;

        block_in_place(|| broker.restart());
        let mut producer = start_producer(&broker.namesrv_addr).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while producer
            .fetch_publish_message_queues(&topic_a)
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "route missing after restart");
            sleep(Duration::from_millis(200)).await;
        }
        check_queries(&mut producer, &topic_a, &topic_b, &sent).await;
        producer.shutdown().await;
    };
    if timeout(TEST_TIMEOUT, run).await.is_err() {
        panic!("query test did not finish within {TEST_TIMEOUT:?}");
    }
}
