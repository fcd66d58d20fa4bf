//! RocketMQ 5's producers over gRPC against `vostok standalone`, no proxy: the official Rust
//! client (crate `rocketmq` 5.0.0) and Node.js client (rocketmq-client-nodejs 1.0.8, scripts in
//! tests/grpc-node) send normal, FIFO, delayed and transactional messages; a remoting client
//! (PULL_MESSAGE) reads what was stored, with body, tag, keys and properties as sent.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rocketmq::conf::{ClientOption, ProducerOption};
use rocketmq::model::message::MessageBuilder;
use rocketmq::model::transaction::{Transaction, TransactionResolution};
use rocketmq::Producer;
use serde_json::Value;
use tokio::time::timeout;
use vostok_proto::v2;
use vostok_proto::v2::messaging_service_client::MessagingServiceClient;

use common::*;

const TEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONSUMER_GROUP: &str = "RemotingReader";

fn client_option(grpc_addr: &str) -> ClientOption {
    let mut option = ClientOption::default();
    option.set_access_url(grpc_addr);
    option.set_timeout(Duration::from_secs(5));
    option
}

fn producer_option(topic: &str) -> ProducerOption {
    let mut option = ProducerOption::default();
    option.set_topics(vec![topic]);
    option
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// UPDATE_AND_CREATE_TOPIC on the broker with an attribute string (`+message.type=FIFO`).
/// The gRPC route is the broker's own topic table, so no NameServer round is awaited.
fn create_typed_topic(broker: &Standalone, topic: &str, queues: u32, attributes: &str) {
    let mut conn = RawConn::connect(&broker.broker_addr);
    let f = conn.request(
        17,
        &[
            ("topic", topic.to_string()),
            ("defaultTopic", "TBW102".to_string()),
            ("readQueueNums", queues.to_string()),
            ("writeQueueNums", queues.to_string()),
            ("perm", "6".to_string()),
            ("topicFilterType", "SINGLE_TAG".to_string()),
            ("topicSysFlag", "0".to_string()),
            ("order", "false".to_string()),
            ("attributes", attributes.to_string()),
        ],
        &[],
    );
    assert_eq!(f.code(), 0, "UPDATE_AND_CREATE_TOPIC: {:?}", f.header);
}

/// Everything stored in `topic`'s queues, read by a remoting client (PULL_MESSAGE).
fn consume(broker: &Standalone, topic: &str, queues: i32) -> Vec<StoredRecord> {
    let mut conn = RawConn::connect(&broker.broker_addr);
    let mut out = Vec::new();
    for q in 0..queues {
        let max = max_offset(&mut conn, topic, q);
        out.extend(pull_all(&mut conn, CONSUMER_GROUP, topic, q, max));
    }
    out
}

/// Reads `topic` until `done` holds for what is stored, or fails after `limit`.
fn consume_until(
    broker: &Standalone,
    topic: &str,
    queues: i32,
    limit: Duration,
    done: impl Fn(&[StoredRecord]) -> bool,
) -> Vec<StoredRecord> {
    let deadline = Instant::now() + limit;
    loop {
        let records = consume(broker, topic, queues);
        if done(&records) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: not there within {limit:?}; stored: {}",
            records.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn prop<'a>(record: &'a StoredRecord, key: &str) -> Option<&'a str> {
    record
        .properties
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn by_id<'a>(records: &'a [StoredRecord], id: &str) -> &'a StoredRecord {
    records
        .iter()
        .find(|r| prop(r, "UNIQ_KEY") == Some(id))
        .unwrap_or_else(|| panic!("message {id} not stored"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_message_reaches_a_remoting_consumer_with_tag_keys_and_properties() {
    let broker = Standalone::start();
    create_topic(&broker.broker_addr, &broker.namesrv_addr, "NormalTopic", 4);
    let id = timeout(TEST_TIMEOUT, async {
        let mut producer = Producer::new(
            producer_option("NormalTopic"),
            client_option(&broker.grpc_addr),
        )
        .unwrap();
        producer.start().await.expect("starts");
        let message = MessageBuilder::builder()
            .set_topic("NormalTopic")
            .set_body(b"hello over grpc".to_vec())
            .set_tag("TagA")
            .set_keys(vec!["key-1", "key-2"])
            .set_properties(HashMap::from([("color", "red"), ("size", "L")]))
            .build()
            .unwrap();
        let receipt = producer.send(message).await.expect("sent");
        producer.shutdown().await.expect("shuts down");
        receipt.message_id().to_owned()
    })
    .await
    .expect("within the test timeout");
    assert!(!id.is_empty());
    let records = consume(&broker, "NormalTopic", 4);
    assert_eq!(records.len(), 1);
    let r = by_id(&records, &id);
    assert_eq!(r.body, b"hello over grpc");
    assert_eq!(prop(r, "TAGS"), Some("TagA"));
    assert_eq!(prop(r, "KEYS"), Some("key-1 key-2"));
    assert_eq!(prop(r, "color"), Some("red"));
    assert_eq!(prop(r, "size"), Some("L"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_fifo_messages_keep_their_order_per_message_group() {
    let broker = Standalone::start();
    create_typed_topic(&broker, "FifoTopic", 4, "+message.type=FIFO");
    let sent: Vec<(String, String)> = timeout(TEST_TIMEOUT, async {
        let mut producer = Producer::new(
            producer_option("FifoTopic"),
            client_option(&broker.grpc_addr),
        )
        .unwrap();
        producer.start().await.expect("starts");
        let mut sent = Vec::new();
        for i in 0..12 {
            let group = ["g-a", "g-b", "g-c"][i % 3];
            let body = format!("{group}-{i}");
            let message =
                MessageBuilder::fifo_message_builder("FifoTopic", body.clone().into_bytes(), group)
                    .build()
                    .unwrap();
            producer.send(message).await.expect("sent");
            sent.push((group.to_owned(), body));
        }
        producer.shutdown().await.expect("shuts down");
        sent
    })
    .await
    .expect("within the test timeout");
    let records = consume(&broker, "FifoTopic", 4);
    assert_eq!(records.len(), sent.len());
    // Per group: one queue, in send order.
    let mut stored: BTreeMap<String, Vec<(i32, String)>> = BTreeMap::new();
    for r in &records {
        let group = prop(r, "__SHARDINGKEY")
            .expect("the message group")
            .to_owned();
        stored
            .entry(group)
            .or_default()
            .push((r.queue_id, String::from_utf8_lossy(&r.body).into_owned()));
    }
    for (group, got) in &stored {
        let queues: Vec<i32> = got.iter().map(|(q, _)| *q).collect();
        assert!(
            queues.windows(2).all(|w| w[0] == w[1]),
            "{group}: {queues:?}"
        );
        let bodies: Vec<&str> = got.iter().map(|(_, b)| b.as_str()).collect();
        let want: Vec<&str> = sent
            .iter()
            .filter(|(g, _)| g == group)
            .map(|(_, b)| b.as_str())
            .collect();
        assert_eq!(bodies, want, "{group}");
    }
    assert_eq!(stored.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_delayed_message_is_delivered_not_before_its_time() {
    let broker = Standalone::start();
    create_typed_topic(&broker, "DelayTopic", 2, "+message.type=DELAY");
    // The Rust client sends whole seconds.
    let due_s = now_ms() / 1000 + 4;
    timeout(TEST_TIMEOUT, async {
        let mut producer = Producer::new(
            producer_option("DelayTopic"),
            client_option(&broker.grpc_addr),
        )
        .unwrap();
        producer.start().await.expect("starts");
        let message = MessageBuilder::delay_message_builder("DelayTopic", b"later".to_vec(), due_s)
            .build()
            .unwrap();
        producer.send(message).await.expect("sent");
        producer.shutdown().await.expect("shuts down");
    })
    .await
    .expect("within the test timeout");
    assert!(
        consume(&broker, "DelayTopic", 2).is_empty(),
        "not visible before its time"
    );
    let records = consume_until(&broker, "DelayTopic", 2, Duration::from_secs(20), |r| {
        !r.is_empty()
    });
    assert!(
        now_ms() >= due_s * 1000,
        "delivered at {} before {}",
        now_ms(),
        due_s * 1000
    );
    assert_eq!(records[0].body, b"later");
}

fn checker_recording(
    seen: Arc<Mutex<Vec<String>>>,
) -> Box<rocketmq::model::transaction::TransactionChecker> {
    Box::new(move |_transaction_id, message| {
        seen.lock().unwrap().push(message.message_id().to_owned());
        TransactionResolution::COMMIT
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_transactions_commit_and_roll_back() {
    let broker = Standalone::start();
    create_typed_topic(&broker, "TxTopic", 2, "+message.type=TRANSACTION");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (committed, rolled_back) = timeout(TEST_TIMEOUT, async {
        let mut producer = Producer::new_transaction_producer(
            producer_option("TxTopic"),
            client_option(&broker.grpc_addr),
            checker_recording(seen.clone()),
        )
        .unwrap();
        producer.start().await.expect("starts");
        let commit = producer
            .send_transaction_message(
                MessageBuilder::transaction_message_builder("TxTopic", b"commit me".to_vec())
                    .set_tag("TxTag")
                    .build()
                    .unwrap(),
            )
            .await
            .expect("half sent");
        let rollback = producer
            .send_transaction_message(
                MessageBuilder::transaction_message_builder("TxTopic", b"roll me back".to_vec())
                    .build()
                    .unwrap(),
            )
            .await
            .expect("half sent");
        assert!(!commit.transaction_id().is_empty());
        let ids = (
            commit.message_id().to_owned(),
            rollback.message_id().to_owned(),
        );
        assert!(
            consume(&broker, "TxTopic", 2).is_empty(),
            "half messages are invisible"
        );
        commit.commit().await.expect("committed");
        rollback.rollback().await.expect("rolled back");
        producer.shutdown().await.expect("shuts down");
        ids
    })
    .await
    .expect("within the test timeout");
    let records = consume(&broker, "TxTopic", 2);
    assert_eq!(records.len(), 1, "only the committed one");
    let r = by_id(&records, &committed);
    assert_eq!(r.body, b"commit me");
    assert_eq!(prop(r, "TAGS"), Some("TxTag"));
    assert!(records
        .iter()
        .all(|r| prop(r, "UNIQ_KEY") != Some(rolled_back.as_str())));
    assert!(seen.lock().unwrap().is_empty(), "no check was needed");
}

/// A broker that checks open transactions after 1 s, every 0.5 s.
fn quick_check_broker() -> Standalone {
    Standalone::start_with(BrokerOptions {
        broker_conf: Some("transactionTimeOut=1000\ntransactionCheckInterval=500\n".to_owned()),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_rust_transaction_is_checked_back_and_the_checker_commits_it() {
    let broker = quick_check_broker();
    create_typed_topic(&broker, "TxTopic", 2, "+message.type=TRANSACTION");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let id = timeout(TEST_TIMEOUT, async {
        let mut producer = Producer::new_transaction_producer(
            producer_option("TxTopic"),
            client_option(&broker.grpc_addr),
            checker_recording(seen.clone()),
        )
        .unwrap();
        producer.start().await.expect("starts");
        let open = producer
            .send_transaction_message(
                MessageBuilder::transaction_message_builder("TxTopic", b"decided later".to_vec())
                    .build()
                    .unwrap(),
            )
            .await
            .expect("half sent");
        let id = open.message_id().to_owned();
        // Neither committed nor rolled back: the broker asks the producer.
        drop(open);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !seen.lock().unwrap().contains(&id) {
            assert!(Instant::now() < deadline, "the checker was never asked");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The checker's COMMIT travels back as EndTransaction before the producer stops.
        let records = tokio::task::block_in_place(|| {
            consume_until(&broker, "TxTopic", 2, Duration::from_secs(10), |r| {
                !r.is_empty()
            })
        });
        producer.shutdown().await.expect("shuts down");
        assert_eq!(records[0].body, b"decided later");
        id
    })
    .await
    .expect("within the test timeout");
    let records = consume(&broker, "TxTopic", 2);
    assert_eq!(records.len(), 1, "committed once");
    assert_eq!(prop(&records[0], "UNIQ_KEY"), Some(id.as_str()));
}

/// A raw gRPC client on the broker's port, for what no official client sends.
async fn raw_client(grpc_addr: &str) -> MessagingServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_addr}"))
        .expect("a URI")
        .connect()
        .await
        .expect("connects");
    MessagingServiceClient::new(channel)
}

fn raw_message(topic: &str, id: &str, body: Vec<u8>) -> v2::Message {
    v2::Message {
        topic: Some(v2::Resource {
            resource_namespace: String::new(),
            name: topic.to_owned(),
        }),
        user_properties: HashMap::new(),
        system_properties: Some(v2::SystemProperties {
            message_id: id.to_owned(),
            message_type: v2::MessageType::Normal as i32,
            ..Default::default()
        }),
        body,
    }
}

async fn raw_send(
    client: &mut MessagingServiceClient<tonic::transport::Channel>,
    message: v2::Message,
) -> v2::SendMessageResponse {
    let mut request = tonic::Request::new(v2::SendMessageRequest {
        messages: vec![message],
    });
    request
        .metadata_mut()
        .insert("x-mq-client-id", "raw-client".parse().unwrap());
    client
        .send_message(request)
        .await
        .expect("answered with gRPC OK")
        .into_inner()
}

fn code(response: &v2::SendMessageResponse) -> (i32, i32) {
    (
        response.status.as_ref().map_or(0, |s| s.code),
        response.entries[0].status.as_ref().map_or(0, |s| s.code),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sends_get_clear_statuses_and_the_port_keeps_serving() {
    let broker = Standalone::start();
    create_topic(&broker.broker_addr, &broker.namesrv_addr, "NormalTopic", 2);
    create_typed_topic(&broker, "FifoOnly", 2, "+message.type=FIFO");
    timeout(TEST_TIMEOUT, async {
        let mut client = raw_client(&broker.grpc_addr).await;
        let cases: Vec<(v2::Message, v2::Code)> = vec![
            (
                raw_message("NormalTopic", "01A", Vec::new()),
                v2::Code::BadRequest,
            ),
            (
                raw_message("NormalTopic", "01B", vec![b'x'; 4 * 1024 * 1024 + 1]),
                v2::Code::MessageBodyTooLarge,
            ),
            (
                raw_message("NoSuchTopic!", "01C", b"x".to_vec()),
                v2::Code::IllegalTopic,
            ),
            (
                raw_message("NormalTopic", "", b"x".to_vec()),
                v2::Code::IllegalMessageId,
            ),
            (
                raw_message("FifoOnly", "01D", b"x".to_vec()),
                v2::Code::MessagePropertyConflictWithType,
            ),
            (
                v2::Message {
                    topic: None,
                    user_properties: HashMap::new(),
                    system_properties: None,
                    body: vec![0xFF; 3],
                },
                v2::Code::IllegalTopic,
            ),
        ];
        for (message, want) in cases {
            let r = raw_send(&mut client, message).await;
            assert_eq!(r.entries.len(), 1);
            assert_eq!(code(&r), (want as i32, want as i32), "{r:?}");
        }
        // Still served: a good message goes through.
        let r = raw_send(
            &mut client,
            raw_message("NormalTopic", "01GOOD", b"fine".to_vec()),
        )
        .await;
        assert_eq!(
            code(&r),
            (v2::Code::Ok as i32, v2::Code::Ok as i32),
            "{r:?}"
        );
        assert_eq!(r.entries[0].message_id, "01GOOD");
        // An EndTransaction with a made-up id.
        let mut end = tonic::Request::new(v2::EndTransactionRequest {
            topic: Some(v2::Resource {
                resource_namespace: String::new(),
                name: "NormalTopic".to_owned(),
            }),
            message_id: "01GOOD".to_owned(),
            transaction_id: "not-a-transaction".to_owned(),
            resolution: v2::TransactionResolution::Commit as i32,
            source: v2::TransactionSource::SourceClient as i32,
            trace_context: String::new(),
        });
        end.metadata_mut()
            .insert("x-mq-client-id", "raw-client".parse().unwrap());
        let r = client
            .end_transaction(end)
            .await
            .expect("answered")
            .into_inner();
        assert_eq!(
            r.status.map(|s| s.code),
            Some(v2::Code::InvalidTransactionId as i32)
        );
    })
    .await
    .expect("within the test timeout");
    let records = consume(&broker, "NormalTopic", 2);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].body, b"fine");
}

/// Runs a Node producer script and parses its JSON report.
fn node_report(script: &str, args: &[&str]) -> Value {
    let out = run_node(script, args, Duration::from_secs(25));
    assert!(
        out.status.success(),
        "node {script} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no report: {stdout}"));
    serde_json::from_str(line).expect("JSON report")
}

#[test]
fn node_normal_fifo_and_delayed_messages_are_stored_as_sent() {
    let broker = Standalone::start();
    create_topic(&broker.broker_addr, &broker.namesrv_addr, "NodeTopic", 2);
    create_typed_topic(&broker, "NodeFifo", 2, "+message.type=FIFO");
    create_typed_topic(&broker, "NodeDelay", 2, "+message.type=DELAY");
    let report = node_report(
        "producer.mjs",
        &[&broker.grpc_addr, "NodeTopic", "NodeFifo", "NodeDelay"],
    );

    let normal_id = report["normal"].as_str().unwrap();
    let records = consume(&broker, "NodeTopic", 2);
    let r = by_id(&records, normal_id);
    assert_eq!(r.body, b"from node");
    assert_eq!(prop(r, "TAGS"), Some("NodeTag"));
    assert_eq!(prop(r, "KEYS"), Some("nk1 nk2"));
    assert_eq!(prop(r, "origin"), Some("node"));

    let fifo: Vec<&str> = report["fifo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let records = consume(&broker, "NodeFifo", 2);
    let mut by_group: BTreeMap<&str, Vec<&StoredRecord>> = BTreeMap::new();
    for r in &records {
        by_group
            .entry(prop(r, "__SHARDINGKEY").unwrap())
            .or_default()
            .push(r);
    }
    for (group, stored) in &by_group {
        let ids: Vec<&str> = stored
            .iter()
            .map(|r| prop(r, "UNIQ_KEY").unwrap())
            .collect();
        let want: Vec<&str> = fifo
            .iter()
            .copied()
            .filter(|id| {
                records.iter().any(|r| {
                    prop(r, "UNIQ_KEY") == Some(id) && prop(r, "__SHARDINGKEY") == Some(group)
                })
            })
            .collect();
        assert_eq!(ids, want, "{group} in send order");
        assert!(stored.windows(2).all(|w| w[0].queue_id == w[1].queue_id));
    }
    assert_eq!(records.len(), fifo.len());

    let due_ms = report["delayDueMs"].as_i64().unwrap();
    let delayed = consume_until(&broker, "NodeDelay", 2, Duration::from_secs(20), |r| {
        !r.is_empty()
    });
    assert!(now_ms() >= due_ms, "delivered before its time");
    assert_eq!(prop(&delayed[0], "UNIQ_KEY"), report["delay"].as_str());
    assert_eq!(
        prop(&delayed[0], "TIMER_DELIVER_MS").and_then(|v| v.parse::<i64>().ok()),
        Some(due_ms)
    );
}

#[test]
fn node_transactions_commit_roll_back_and_answer_the_check() {
    let broker = quick_check_broker();
    create_typed_topic(&broker, "NodeTx", 2, "+message.type=TRANSACTION");
    let report = node_report("transaction.mjs", &[&broker.grpc_addr, "NodeTx"]);
    let committed = report["committed"].as_str().unwrap();
    let rolled_back = report["rolledBack"].as_str().unwrap();
    let checked = report["checked"].as_str().unwrap();
    assert_eq!(report["checkerSaw"].as_str(), Some(checked));
    let records = consume_until(&broker, "NodeTx", 2, Duration::from_secs(10), |r| {
        r.len() >= 2
    });
    let ids: Vec<&str> = records.iter().filter_map(|r| prop(r, "UNIQ_KEY")).collect();
    assert!(ids.contains(&committed), "{ids:?}");
    assert!(ids.contains(&checked), "{ids:?}");
    assert!(!ids.contains(&rolled_back), "{ids:?}");
    assert_eq!(records.len(), 2);
}
