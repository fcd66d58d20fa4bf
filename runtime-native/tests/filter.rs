//! Tag and SQL92 filtering against `vostok standalone` with `enablePropertyFilter=true`, over
//! raw remoting frames and with the unmodified RocketMQ Rust client (`rocketmq-client-rust`
//! 1.0.0) (RocketMQ conformance: tag, SQL).
#![recursion_limit = "256"]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketmq_client_rust::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, MQPushConsumer,
    MessageListenerConcurrently, MessageSelector, SendStatus,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use tokio::task::block_in_place;
use tokio::time::{sleep, timeout};

use common::*;

const TOPIC: &str = "FilterTopic";

fn started() -> (Standalone, RawConn) {
    let broker = Standalone::start_with(BrokerOptions {
        broker_conf: Some("enablePropertyFilter=true\n".to_owned()),
        ..BrokerOptions::default()
    });
    let conn = RawConn::connect(&broker.broker_addr);
    (broker, conn)
}

/// SEND_MESSAGE_V2 to queue 0 with a tag and user properties.
fn send(conn: &mut RawConn, tag: &str, props: &[(&str, &str)], body: &[u8]) {
    let mut all = vec![("TAGS", tag), ("WAIT", "true")];
    all.extend_from_slice(props);
    let ext = [
        ("a", "filter-test-producer".to_string()),
        ("b", TOPIC.to_string()),
        ("c", "TBW102".to_string()),
        ("d", "4".to_string()),
        ("e", "0".to_string()),
        ("f", "0".to_string()),
        ("g", "0".to_string()),
        ("h", "0".to_string()),
        ("i", encode_properties(&all)),
        ("j", "0".to_string()),
        ("k", "false".to_string()),
        ("m", "false".to_string()),
    ];
    let f = conn.request(code::SEND_MESSAGE_V2, &ext, body);
    assert_eq!(f.code(), 0, "send failed: {:?}", f.header);
}

fn pull(conn: &mut RawConn, expression_type: &str, expression: &str) -> Frame {
    let mut ext = pull_ext("filter-group", TOPIC, 0, 0);
    for (k, v) in ext.iter_mut() {
        match *k {
            "subscription" => *v = expression.to_owned(),
            "expressionType" => *v = expression_type.to_owned(),
            _ => {}
        }
    }
    conn.request(code::PULL_MESSAGE, &ext, &[])
}

fn bodies(f: &Frame) -> Vec<String> {
    decode_records(&f.body)
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

#[test]
fn sql_filter_by_property_between_in_and_is_null() {
    let (_broker, mut conn) = started();
    for i in 0..6 {
        let a = i.to_string();
        let colour = if i % 2 == 0 { "red" } else { "blue" };
        send(
            &mut conn,
            "tagA",
            &[("a", &a), ("colour", colour)],
            a.as_bytes(),
        );
    }
    send(&mut conn, "tagB", &[], b"bare");

    let f = pull(
        &mut conn,
        "SQL92",
        "a BETWEEN 1 AND 4 AND colour IN ('red')",
    );
    assert_eq!(f.code(), 0, "{:?}", f.header);
    assert_eq!(bodies(&f), ["2", "4"]);
    let f = pull(&mut conn, "SQL92", "a IS NULL OR a >= 5");
    assert_eq!(bodies(&f), ["5", "bare"]);
    let f = pull(&mut conn, "sql92", "TAGS <> 'tagA' AND colour IS NULL");
    assert_eq!(bodies(&f), ["bare"]);
}

#[test]
fn sql_filter_invalid_expression_is_refused() {
    let (_broker, mut conn) = started();
    send(&mut conn, "t", &[], b"x");
    let f = pull(&mut conn, "SQL92", "a BETWEEN 1");
    assert_eq!(f.code(), 23, "SUBSCRIPTION_PARSE_FAILED: {:?}", f.header);
    assert_eq!(f.remark(), "parse the consumer's subscription failed");

    let body = serde_json::json!({
        "clientId": "c1",
        "group": "filter-group",
        "subscriptionData": {"topic": TOPIC, "subString": "a IN ()", "expressionType": "SQL92"}
    });
    let f = conn.request(46, &[], &serde_json::to_vec(&body).unwrap());
    assert_eq!(f.code(), 23, "CHECK_CLIENT_CONFIG: {:?}", f.header);
    assert!(
        f.remark().starts_with("Invalid MessageSelector. "),
        "{}",
        f.remark()
    );
}

#[test]
fn tag_filter_with_colliding_hash_codes_is_settled_by_the_client() {
    // "Aa" and "BB" have the same Java String.hashCode: the broker, which only sees the
    // ConsumeQueue's code, returns both; a client's exact tag check keeps them apart.
    let (_broker, mut conn) = started();
    send(&mut conn, "Aa", &[], b"aa");
    send(&mut conn, "BB", &[], b"bb");
    send(&mut conn, "Cc", &[], b"cc");
    let f = pull(&mut conn, "TAG", "Aa");
    assert_eq!(bodies(&f), ["aa", "bb"]);
    let exact: Vec<String> = decode_records(&f.body)
        .into_iter()
        .filter(|r| r.properties.iter().any(|(k, v)| k == "TAGS" && v == "Aa"))
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(exact, ["aa"]);
}

/// Records the body of every delivered message and acknowledges it.
#[derive(Clone, Default)]
struct Collect {
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Collect {
    fn snapshot(&self) -> Vec<String> {
        let mut bodies = self.bodies.lock().expect("listener lock").clone();
        bodies.sort();
        bodies
    }
}

impl MessageListenerConcurrently for Collect {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeConcurrentlyStatus> {
        let mut bodies = self.bodies.lock().expect("listener lock");
        for m in msgs {
            bodies.push(String::from_utf8_lossy(m.message.body_slice()).into_owned());
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// A push consumer of the real client subscribed with an SQL92 selector receives exactly the
/// messages whose user properties match, across all queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_filter_push_consumer_with_the_real_client_gets_only_matching_messages() {
    let body = async {
        let broker = block_in_place(|| {
            Standalone::start_with(BrokerOptions {
                broker_conf: Some("enablePropertyFilter=true\n".to_owned()),
                ..BrokerOptions::default()
            })
        });
        let topic = "SqlClientTopic";
        let group = "SqlClientGroup";
        block_in_place(|| {
            create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, 2);
            // The group's retry topic has a route before the consumer starts, so the client
            // does not wait for a route refresh.
            create_topic(
                &broker.broker_addr,
                &broker.namesrv_addr,
                &format!("%RETRY%{group}"),
                1,
            );
        });

        let mut producer = start_producer_in(&broker.namesrv_addr, "SqlClientProducer").await;
        wait_for_publish_route(&mut producer, topic, 2).await;
        let mut expected = Vec::new();
        for a in 0..8 {
            for color in ["red", "blue"] {
                let body = format!("{a}-{color}");
                if (3..=5).contains(&a) && color == "red" {
                    expected.push(body.clone());
                }
                let message = Message::builder()
                    .topic(topic)
                    .tags("TagS")
                    .body_slice(body.as_bytes())
                    .raw_property("a", a.to_string())
                    .expect("user property is allowed")
                    .raw_property("color", color)
                    .expect("user property is allowed")
                    .build_unchecked();
                let sent = producer
                    .send(message)
                    .await
                    .expect("send succeeds")
                    .expect("send returns a result");
                assert_eq!(sent.send_status, SendStatus::SendOk);
            }
        }
        // Messages without the properties never match.
        let bare = Message::builder()
            .topic(topic)
            .tags("TagS")
            .body_slice(b"bare")
            .build_unchecked();
        producer.send(bare).await.expect("send succeeds");
        expected.sort();
        assert_eq!(expected, ["3-red", "4-red", "5-red"]);

        let listener = Collect::default();
        let mut consumer = push_consumer_builder(&broker.namesrv_addr, group).build();
        consumer
            .subscribe_with_selector(
                topic,
                Some(MessageSelector::by_sql(
                    "a BETWEEN 3 AND 5 AND color = 'red'",
                )),
            )
            .await
            .expect("subscribes with an SQL92 selector");
        consumer.register_message_listener_concurrently(listener.clone());
        consumer.start().await.expect("consumer starts");

        let seen = listener.clone();
        wait_until(
            "the matching messages arrive",
            Duration::from_secs(30),
            || seen.snapshot().len() >= expected.len(),
        )
        .await;
        // Nothing else may follow.
        sleep(Duration::from_secs(1)).await;
        assert_eq!(listener.snapshot(), expected);

        consumer.shutdown().await;
        producer.shutdown().await;
    };
    if timeout(Duration::from_secs(60), body).await.is_err() {
        panic!("the SQL92 push consumer test did not finish in time");
    }
}

/// Vostok's own push consumer subscribed with an SQL92 selector receives exactly the matching
/// messages; one whose selector does not compile is refused before it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_filter_push_consumer_with_the_vostok_client_gets_only_matching_messages() {
    use vostok::client::{
        ClientError, ConsumeFromWhere, ConsumeStatus, Message as VostokMessage, MessageExt,
        Producer, PushConsumer,
    };
    let body = async {
        let broker = block_in_place(|| {
            Standalone::start_with(BrokerOptions {
                broker_conf: Some("enablePropertyFilter=true\n".to_owned()),
                ..BrokerOptions::default()
            })
        });
        let topic = "SqlVostokTopic";
        let group = "SqlVostokGroup";
        block_in_place(|| {
            create_topic(&broker.broker_addr, &broker.namesrv_addr, topic, 2);
            create_topic(
                &broker.broker_addr,
                &broker.namesrv_addr,
                &format!("%RETRY%{group}"),
                1,
            );
        });

        let producer = Producer::builder()
            .namesrv_addr(&broker.namesrv_addr)
            .group("SqlVostokProducer")
            .send_timeout(Duration::from_secs(10))
            .build()
            .expect("producer builds")
            .start()
            .await
            .expect("producer starts");
        let mut expected = Vec::new();
        for a in 0..8 {
            for color in ["red", "blue"] {
                let body = format!("{a}-{color}");
                if (3..=5).contains(&a) && color == "red" {
                    expected.push(body.clone());
                }
                let message = VostokMessage::new(topic, body.into_bytes())
                    .with_tags("TagS")
                    .with_property("a", &a.to_string())
                    .with_property("color", color);
                producer.send(message).await.expect("send succeeds");
            }
        }
        producer
            .send(VostokMessage::new(topic, &b"bare"[..]).with_tags("TagS"))
            .await
            .expect("send succeeds");
        expected.sort();

        let invalid = PushConsumer::builder()
            .namesrv_addr(&broker.namesrv_addr)
            .group(group)
            .subscribe_sql(topic, "a BETWEEN 3")
            .listener(|_messages: Vec<MessageExt>| async { ConsumeStatus::ConsumeSuccess })
            .build()
            .expect("push consumer builds")
            .start()
            .await;
        assert!(
            matches!(&invalid, Err(ClientError::InvalidSubscription(m)) if m.starts_with("Invalid MessageSelector. ")),
            "an invalid selector is refused at subscribe time"
        );

        let received: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = received.clone();
        let consumer = PushConsumer::builder()
            .namesrv_addr(&broker.namesrv_addr)
            .group(group)
            .subscribe_sql(topic, "a BETWEEN 3 AND 5 AND color = 'red'")
            .consume_from(ConsumeFromWhere::FirstOffset)
            .listener(move |messages: Vec<MessageExt>| {
                let sink = sink.clone();
                async move {
                    let mut sink = sink.lock().expect("sink lock");
                    for m in &messages {
                        sink.push(String::from_utf8_lossy(m.body()).into_owned());
                    }
                    ConsumeStatus::ConsumeSuccess
                }
            })
            .build()
            .expect("push consumer builds")
            .start()
            .await
            .expect("push consumer starts");
        let snapshot = || {
            let mut got = received.lock().expect("sink lock").clone();
            got.sort();
            got
        };
        wait_until(
            "the matching messages arrive",
            Duration::from_secs(30),
            || snapshot().len() >= expected.len(),
        )
        .await;
        // Nothing else may follow.
        sleep(Duration::from_secs(1)).await;
        assert_eq!(snapshot(), expected);

        consumer.shutdown().await;
        producer.shutdown().await;
    };
    if timeout(Duration::from_secs(60), body).await.is_err() {
        panic!("the SQL92 push consumer test with the Vostok client did not finish in time");
    }
}
