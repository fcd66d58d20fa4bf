//! Vostok's own POP consumer (`vostok::client::SimpleConsumer`) against `vostok standalone`:
//! two consumers of one group share a topic (every message once), a message not acknowledged
//! comes back after its invisible time with reconsume times 1, a change of invisible time
//! holds a message back longer and its new receipt handle acknowledges it.
//!
//! Every test starts its own broker on free loopback ports with a fresh data directory and is
//! bounded in time.
#![recursion_limit = "256"]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use tokio::task::block_in_place;
use tokio::time::{timeout, Instant};
use vostok::client::{
    ConsumeInitMode, Message, Producer, ReceivedMessage, SendStatus, SimpleConsumer,
};

use common::*;

const QUEUES: u32 = 4;
/// A receive waits this long on the broker when nothing is there.
const AWAIT: Duration = Duration::from_secs(1);

/// Runs a test body with a deadline.
async fn bounded<F: Future<Output = ()>>(name: &str, limit: Duration, body: F) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    if timeout(limit, body).await.is_err() {
        panic!("{name}: test did not finish within {limit:?}");
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

async fn simple_consumer(namesrv: &str, group: &str, topic: &str) -> SimpleConsumer {
    SimpleConsumer::builder()
        .namesrv_addr(namesrv)
        .group(group)
        .subscribe(topic, "*")
        .init_mode(ConsumeInitMode::Min)
        .await_duration(AWAIT)
        .build()
        .expect("simple consumer builds")
        .start()
        .await
        .expect("simple consumer starts")
}

async fn send_bodies(producer: &Producer, topic: &str, bodies: &[String]) {
    for body in bodies {
        let sent = producer
            .send(Message::new(topic, body.clone()).with_keys(body))
            .await
            .expect("send");
        assert_eq!(sent.status, SendStatus::SendOk);
    }
}

fn body_of(m: &ReceivedMessage) -> String {
    String::from_utf8_lossy(m.body()).into_owned()
}

/// Goal: two simple consumers of one group receive every message of a four-queue topic
/// exactly once between them, and every ack is accepted; afterwards nothing comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_share_a_group_every_message_once() {
    bounded("two_consumers_share", Duration::from_secs(90), async {
        let topic = unique("PopShared");
        let group = unique("GPopShared");
        let broker = broker_with_topic(&topic);
        let producer = producer(&broker.namesrv_addr).await;
        let bodies: Vec<String> = (0..40).map(|i| format!("shared-{i}")).collect();
        send_bodies(&producer, &topic, &bodies).await;

        let consumers = [
            simple_consumer(&broker.namesrv_addr, &group, &topic).await,
            simple_consumer(&broker.namesrv_addr, &group, &topic).await,
        ];
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut per_consumer = [0usize; 2];
        let deadline = Instant::now() + Duration::from_secs(40);
        while seen.len() < bodies.len() {
            assert!(
                Instant::now() < deadline,
                "only {} of {} messages received",
                seen.len(),
                bodies.len()
            );
            // Both ask at once, so they compete for the same queues.
            let (a, b) = tokio::join!(
                consumers[0].receive(7, Duration::from_secs(60)),
                consumers[1].receive(7, Duration::from_secs(60)),
            );
            for (i, batch) in [a, b].into_iter().enumerate() {
                for m in batch.expect("receive") {
                    assert_eq!(m.topic(), topic);
                    assert_eq!(m.reconsume_times(), 0);
                    assert_eq!(m.keys(), Some(body_of(&m).as_str()));
                    assert_eq!(m.broker_name(), m.queue.broker_name);
                    *seen.entry(body_of(&m)).or_default() += 1;
                    per_consumer[i] += 1;
                    consumers[i].ack(&m).await.expect("ack accepted");
                }
            }
        }
        // A while longer: nothing was left unacknowledged, so nothing comes back.
        for _ in 0..3 {
            for consumer in &consumers {
                let more = consumer
                    .receive(32, Duration::from_secs(60))
                    .await
                    .expect("receive");
                for m in more {
                    *seen.entry(body_of(&m)).or_default() += 1;
                }
            }
        }
        let expected: BTreeSet<String> = bodies.iter().cloned().collect();
        assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), expected);
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "delivered more than once: {twice:?}");
        assert_eq!(per_consumer[0] + per_consumer[1], bodies.len());
        for consumer in &consumers {
            consumer.shutdown().await;
        }
        producer.shutdown().await;
    })
    .await;
}

/// Goal: a message not acknowledged comes back after its invisible time (not before), with
/// reconsume times 1, the same message id and the POP retry topic as its queue, and its new
/// handle acknowledges it; a message whose invisible time was extended stays away until the
/// new time; one whose handle was changed is acknowledged with the new handle and never
/// comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_come_back_and_changes_of_invisible_time_hold_them() {
    bounded("unacked_come_back", Duration::from_secs(90), async {
        let topic = unique("PopRevive");
        let group = unique("GPopRevive");
        let broker = broker_with_topic(&topic);
        let producer = producer(&broker.namesrv_addr).await;
        let bodies: Vec<String> = ["forgotten", "extended", "changed-then-acked"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        send_bodies(&producer, &topic, &bodies).await;
        let first = simple_consumer(&broker.namesrv_addr, &group, &topic).await;
        let second = simple_consumer(&broker.namesrv_addr, &group, &topic).await;

        let mut got: BTreeMap<String, ReceivedMessage> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.len() < bodies.len() {
            assert!(
                Instant::now() < deadline,
                "first delivery incomplete: {got:?}"
            );
            for m in first
                .receive(32, Duration::from_secs(3))
                .await
                .expect("receive")
            {
                assert!(got.insert(body_of(&m), m).is_none(), "delivered twice");
            }
        }
        let popped_at = Instant::now();
        let forgotten = got.remove("forgotten").unwrap();
        let mut extended = got.remove("extended").unwrap();
        let mut changed = got.remove("changed-then-acked").unwrap();
        let old_handle = extended.receipt_handle().clone();
        first
            .change_invisible_duration(&mut extended, Duration::from_secs(12))
            .await
            .expect("invisible time extended");
        let extended_at = Instant::now();
        assert_ne!(extended.receipt_handle(), &old_handle);
        assert_eq!(extended.receipt_handle().info().invisible_time_ms, 12_000);
        assert_eq!(
            extended.receipt_handle().info().ck_start_offset,
            extended.queue_offset()
        );
        first
            .change_invisible_duration(&mut changed, Duration::from_secs(20))
            .await
            .expect("invisible time changed");
        first.ack(&changed).await.expect("ack with the new handle");

        // The other consumer of the group gets what comes back.
        let mut back: BTreeMap<String, (ReceivedMessage, Duration)> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(40);
        while back.len() < 2 {
            assert!(
                Instant::now() < deadline,
                "redeliveries missing, got {:?}",
                back.keys()
            );
            for m in second
                .receive(32, Duration::from_secs(60))
                .await
                .expect("receive")
            {
                let body = body_of(&m);
                assert_ne!(body, "changed-then-acked", "an acked message came back");
                let since = match body.as_str() {
                    "forgotten" => popped_at.elapsed(),
                    _ => extended_at.elapsed(),
                };
                second.ack(&m).await.expect("ack of a redelivery");
                assert!(back.insert(body, (m, since)).is_none(), "back twice");
            }
        }
        let (again, after) = &back["forgotten"];
        assert!(
            *after >= Duration::from_millis(2_000),
            "back after {after:?}, before its invisible time"
        );
        assert_eq!(again.reconsume_times(), 1);
        assert_eq!(again.msg_id(), forgotten.msg_id());
        assert_eq!(again.topic(), topic);
        assert!(
            again.queue.topic.starts_with(&format!("%RETRY%{group}")),
            "read from {}",
            again.queue.topic
        );
        assert!(again.property("1ST_POP_TIME").is_some());
        let (again, after) = &back["extended"];
        assert!(
            *after >= Duration::from_millis(11_500),
            "extended message back after {after:?}, before its new invisible time"
        );
        assert_eq!(again.reconsume_times(), 1);
        assert_eq!(again.msg_id(), extended.msg_id());

        // Everything acknowledged: nothing more comes.
        for _ in 0..3 {
            let more = second
                .receive(32, Duration::from_secs(60))
                .await
                .expect("receive");
            assert!(
                more.is_empty(),
                "unexpected: {:?}",
                more.iter().map(body_of).collect::<Vec<_>>()
            );
        }
        first.shutdown().await;
        second.shutdown().await;
        producer.shutdown().await;
    })
    .await;
}
