//! Transactional messages against `vostok standalone`, with the unmodified RocketMQ Rust client
//! (`rocketmq-client-rust` 1.0.0, `TransactionMQProducer`) and Vostok's own
//! `TransactionProducer`: commit is delivered, rollback never; an unknown outcome is settled by
//! the broker's check-back (commit or rollback); when the producer that sent a half message dies
//! the check reaches another producer of its group; the state survives a broker restart.
//!
//! The broker runs with a short `transactionTimeOut` / `transactionCheckInterval` so each test
//! takes a few seconds. What consumers can see is read broker-side with raw PULL_MESSAGE
//! requests, and with the RocketMQ client a push consumer of the topic must receive exactly the
//! committed messages.

mod common;

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketmq_client_rust::LocalTransactionState as RmqState;
use rocketmq_client_rust::TransactionMQProducer;
use rocketmq_client_rust::{
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, MQPushConsumer,
    MessageListenerConcurrently, TransactionListener,
};
use rocketmq_model::common::message::message_ext::MessageExt as RmqMessageExt;
use rocketmq_model::common::message::message_single::Message as RmqMessage;
use rocketmq_model::common::message::MessageTrait;
use tokio::task::block_in_place;
use tokio::time::{sleep, timeout};
use vostok::client::{
    LocalTransactionState, Message, MessageExt, Producer, SendResult, TransactionProducer,
};

use common::*;

/// First check after 1.5 s, then every 0.5 s, at most 40 checks (20 s: a restart fits).
const TIMEOUT_MS: u64 = 1_500;
const INTERVAL_MS: u64 = 500;
const BROKER_CONF: &str =
    "transactionTimeOut=1500\ntransactionCheckInterval=500\ntransactionCheckMax=40\n";
/// Bound for a whole test.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a message that must appear may take (the first check comes after TIMEOUT_MS).
const APPEAR_LIMIT: Duration = Duration::from_secs(15);

fn start_broker() -> Standalone {
    Standalone::start_with(BrokerOptions {
        broker_conf: Some(BROKER_CONF.to_owned()),
        ..Default::default()
    })
}

/// Bodies of every message a consumer of `topic` can get (all four queues), sorted.
fn visible_bodies(broker_addr: &str, topic: &str) -> Vec<String> {
    let mut conn = RawConn::connect(broker_addr);
    let mut bodies = Vec::new();
    for queue_id in 0..4 {
        let max = max_offset(&mut conn, topic, queue_id);
        for record in pull_all(&mut conn, "tx_reader", topic, queue_id, max) {
            bodies.push(String::from_utf8_lossy(&record.body).into_owned());
        }
    }
    bodies.sort();
    bodies
}

async fn wait_visible(broker_addr: &str, topic: &str, expected: &[&str]) {
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    let what = format!("{topic} to hold exactly {expected:?}");
    wait_until(&what, APPEAR_LIMIT, || {
        block_in_place(|| visible_bodies(broker_addr, topic)) == expected
    })
    .await;
}

/// Waits long enough for several checks to have happened, then asserts what is visible.
async fn assert_settled(broker_addr: &str, topic: &str, expected: &[&str]) {
    sleep(Duration::from_millis(TIMEOUT_MS + 4 * INTERVAL_MS)).await;
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(
        block_in_place(|| visible_bodies(broker_addr, topic)),
        expected
    );
}

// ---- the RocketMQ Rust client ----

/// Decides by body: `commit…` / `rollback…` at once, `later-commit…` / `later-rollback…`
/// unknown first and then by the check (unless `undecided`: every check stays unknown).
#[derive(Default)]
struct BodyListener {
    checks: Arc<AtomicUsize>,
    undecided: bool,
}

impl TransactionListener for BodyListener {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _arg: Option<&(dyn Any + Send + Sync)>,
    ) -> RmqState {
        let body = msg.get_body().map(|b| b.to_vec()).unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        if body.starts_with("commit") {
            RmqState::CommitMessage
        } else if body.starts_with("rollback") {
            RmqState::RollbackMessage
        } else {
            RmqState::Unknown
        }
    }

    fn check_local_transaction(&self, msg: &RmqMessageExt) -> RmqState {
        self.checks.fetch_add(1, Ordering::SeqCst);
        let body = msg.body().map(|b| b.to_vec()).unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        if self.undecided {
            RmqState::Unknown
        } else if body.starts_with("later-commit") {
            RmqState::CommitMessage
        } else if body.starts_with("later-rollback") {
            RmqState::RollbackMessage
        } else {
            RmqState::Unknown
        }
    }
}

async fn start_rmq_producer(
    namesrv: &str,
    group: &str,
    listener: BodyListener,
) -> TransactionMQProducer {
    let mut producer = TransactionMQProducer::builder(client_runtime("tx-producer"))
        .producer_group(group.to_string())
        .name_server_addr(namesrv.to_string())
        .send_msg_timeout(10_000)
        .transaction_listener(listener)
        .build();
    producer
        .start()
        .await
        .expect("transactional producer starts");
    producer
}

async fn rmq_send(producer: &TransactionMQProducer, topic: &str, body: &str) {
    let message = RmqMessage::builder()
        .topic(topic)
        .tags("Tx")
        .body_slice(body.as_bytes())
        .build_unchecked();
    let result = producer
        .send_message_in_transaction::<(), _>(message, None)
        .await
        .expect("the half message is sent");
    assert!(result.send_result.is_some(), "{result:?}");
}

/// Bodies a RocketMQ push consumer received, in arrival order.
#[derive(Clone, Default)]
struct Consumed(Arc<Mutex<Vec<String>>>);

impl Consumed {
    fn sorted(&self) -> Vec<String> {
        let mut v = self.0.lock().expect("consumed lock").clone();
        v.sort();
        v
    }
}

impl MessageListenerConcurrently for Consumed {
    fn consume_message(
        &self,
        msgs: &[&RmqMessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> rocketmq_client_rust::ClientResult<ConsumeConcurrentlyStatus> {
        for m in msgs {
            self.0
                .lock()
                .expect("consumed lock")
                .push(String::from_utf8_lossy(m.message.body_slice()).into_owned());
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// A RocketMQ push consumer of `topic` from its first offset, recording what it receives.
async fn start_rmq_consumer(
    namesrv: &str,
    topic: &str,
) -> (rocketmq_client_rust::DefaultMQPushConsumer, Consumed) {
    let consumed = Consumed::default();
    let mut consumer = push_consumer_builder(namesrv, &unique("cg_tx")).build();
    consumer
        .subscribe(topic, "*")
        .await
        .expect("push consumer subscribes");
    consumer.register_message_listener_concurrently(consumed.clone());
    consumer.start().await.expect("push consumer starts");
    (consumer, consumed)
}

/// Waits until `consumed` holds exactly `expected` (sorted), then a little longer to see that
/// nothing else arrives.
async fn assert_consumed(consumed: &Consumed, expected: &[&str]) {
    let want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    let seen = consumed.clone();
    let wanted = want.clone();
    wait_until(
        "the committed messages are consumed",
        APPEAR_LIMIT,
        move || seen.sorted() == wanted,
    )
    .await;
    sleep(Duration::from_millis(TIMEOUT_MS + 2 * INTERVAL_MS)).await;
    assert_eq!(
        consumed.sorted(),
        want,
        "exactly the committed messages are consumed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_client_commit_is_delivered_and_rollback_never() {
    let broker = start_broker();
    let topic = unique("TxCommit");
    timeout(TEST_TIMEOUT, async {
        let checks = Arc::new(AtomicUsize::new(0));
        let mut producer = start_rmq_producer(
            &broker.namesrv_addr,
            &unique("pg_tx"),
            BodyListener {
                checks: checks.clone(),
                undecided: false,
            },
        )
        .await;
        rmq_send(&producer, &topic, "commit-1").await;
        rmq_send(&producer, &topic, "rollback-1").await;
        wait_visible(&broker.broker_addr, &topic, &["commit-1"]).await;
        let (mut consumer, consumed) = start_rmq_consumer(&broker.namesrv_addr, &topic).await;
        assert_consumed(&consumed, &["commit-1"]).await;
        assert_settled(&broker.broker_addr, &topic, &["commit-1"]).await;
        consumer.shutdown().await;
        assert_eq!(
            checks.load(Ordering::SeqCst),
            0,
            "nothing was left to check"
        );
        producer.shutdown().await;
    })
    .await
    .expect("test finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_client_unknown_is_settled_by_the_check() {
    let broker = start_broker();
    let topic = unique("TxCheck");
    timeout(TEST_TIMEOUT, async {
        let checks = Arc::new(AtomicUsize::new(0));
        let mut producer = start_rmq_producer(
            &broker.namesrv_addr,
            &unique("pg_tx"),
            BodyListener {
                checks: checks.clone(),
                undecided: false,
            },
        )
        .await;
        rmq_send(&producer, &topic, "later-commit-1").await;
        rmq_send(&producer, &topic, "later-rollback-1").await;
        // Invisible until the check: never before the transaction timeout.
        sleep(Duration::from_millis(TIMEOUT_MS / 2)).await;
        assert!(block_in_place(|| visible_bodies(&broker.broker_addr, &topic)).is_empty());
        wait_visible(&broker.broker_addr, &topic, &["later-commit-1"]).await;
        let (mut consumer, consumed) = start_rmq_consumer(&broker.namesrv_addr, &topic).await;
        assert_consumed(&consumed, &["later-commit-1"]).await;
        assert_settled(&broker.broker_addr, &topic, &["later-commit-1"]).await;
        consumer.shutdown().await;
        assert!(checks.load(Ordering::SeqCst) >= 2, "both were checked");
        producer.shutdown().await;
    })
    .await
    .expect("test finishes in time");
}

// ---- Vostok's TransactionProducer ----

/// The executor of the Vostok tests: the argument says what the local transaction did.
fn by_arg(
    _message: &Message,
    _stored: &SendResult,
    arg: Option<&(dyn Any + Send + Sync)>,
) -> LocalTransactionState {
    arg.and_then(|a| a.downcast_ref::<LocalTransactionState>())
        .copied()
        .unwrap_or(LocalTransactionState::Unknow)
}

/// A checker answering by body prefix and counting its calls.
fn body_checker(
    checks: Arc<AtomicUsize>,
) -> impl Fn(&MessageExt) -> LocalTransactionState + Send + Sync + 'static {
    move |half: &MessageExt| {
        checks.fetch_add(1, Ordering::SeqCst);
        let body = String::from_utf8_lossy(half.body());
        if body.starts_with("later-commit") {
            LocalTransactionState::CommitMessage
        } else if body.starts_with("later-rollback") {
            LocalTransactionState::RollbackMessage
        } else {
            LocalTransactionState::Unknow
        }
    }
}

async fn start_vostok_producer(
    namesrv: &str,
    group: &str,
    instance: &str,
    checker: impl Fn(&MessageExt) -> LocalTransactionState + Send + Sync + 'static,
) -> TransactionProducer {
    Producer::builder()
        .namesrv_addr(namesrv)
        .group(group)
        .instance_name(instance)
        .heartbeat_interval(Duration::from_millis(200))
        .send_timeout(Duration::from_secs(10))
        .build_transactional(by_arg, checker)
        .expect("valid settings")
        .start()
        .await
        .expect("starts")
}

async fn vostok_send(
    producer: &TransactionProducer,
    topic: &str,
    body: &str,
    state: LocalTransactionState,
) {
    let result = producer
        .send_message_in_transaction(Message::new(topic, body.to_owned()), Some(Box::new(state)))
        .await
        .expect("the half message is sent");
    assert_eq!(result.local_state, state);
    assert!(result.send_result.transaction_id.is_some());
}

/// Makes a producer known to the broker before a check needs it: learn the broker from the
/// topic's route, then leave time for heartbeats.
async fn register(producer: &TransactionProducer, topic: &str) {
    producer
        .producer()
        .queues(topic)
        .await
        .expect("the topic has a route");
    sleep(Duration::from_millis(1_500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vostok_producer_commit_rollback_and_checks() {
    let broker = start_broker();
    let topic = unique("TxVostok");
    let group = unique("pg_tx");
    timeout(TEST_TIMEOUT, async {
        let checks = Arc::new(AtomicUsize::new(0));
        let producer = start_vostok_producer(
            &broker.namesrv_addr,
            &group,
            "p1",
            body_checker(checks.clone()),
        )
        .await;
        use LocalTransactionState::*;
        vostok_send(&producer, &topic, "commit-1", CommitMessage).await;
        vostok_send(&producer, &topic, "rollback-1", RollbackMessage).await;
        vostok_send(&producer, &topic, "later-commit-1", Unknow).await;
        vostok_send(&producer, &topic, "later-rollback-1", Unknow).await;
        wait_visible(&broker.broker_addr, &topic, &["commit-1"]).await;
        wait_visible(&broker.broker_addr, &topic, &["commit-1", "later-commit-1"]).await;
        assert_settled(&broker.broker_addr, &topic, &["commit-1", "later-commit-1"]).await;
        assert!(checks.load(Ordering::SeqCst) >= 2);
        producer.shutdown().await;
    })
    .await
    .expect("test finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_reaches_another_producer_when_the_sender_dies() {
    let broker = start_broker();
    let topic = unique("TxDies");
    let group = unique("pg_tx");
    timeout(TEST_TIMEOUT, async {
        // The sender: a RocketMQ client that leaves its transaction unknown and goes away.
        let sender_checks = Arc::new(AtomicUsize::new(0));
        let mut sender = start_rmq_producer(
            &broker.namesrv_addr,
            &group,
            BodyListener {
                checks: sender_checks.clone(),
                undecided: true,
            },
        )
        .await;
        rmq_send(&sender, &topic, "later-commit-from-dead").await;
        // A Vostok producer of the same group lives on.
        let survivor_checks = Arc::new(AtomicUsize::new(0));
        let survivor = start_vostok_producer(
            &broker.namesrv_addr,
            &group,
            "survivor",
            body_checker(survivor_checks.clone()),
        )
        .await;
        register(&survivor, &topic).await;
        assert!(block_in_place(|| visible_bodies(&broker.broker_addr, &topic)).is_empty());
        sender.shutdown().await;
        wait_visible(&broker.broker_addr, &topic, &["later-commit-from-dead"]).await;
        assert!(survivor_checks.load(Ordering::SeqCst) >= 1);
        assert_settled(&broker.broker_addr, &topic, &["later-commit-from-dead"]).await;

        // The same with two Vostok producers, the first one vanishing without a goodbye
        // answer: its checker would never commit.
        let topic = unique("TxDies");
        let dead = start_vostok_producer(&broker.namesrv_addr, &group, "dead", |_: &MessageExt| {
            LocalTransactionState::Unknow
        })
        .await;
        vostok_send(
            &dead,
            &topic,
            "later-commit-2",
            LocalTransactionState::Unknow,
        )
        .await;
        dead.shutdown().await;
        wait_visible(&broker.broker_addr, &topic, &["later-commit-2"]).await;
        survivor.shutdown().await;
    })
    .await
    .expect("test finishes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_survive_a_broker_restart() {
    let mut broker = start_broker();
    let topic = unique("TxRestart");
    let group = unique("pg_tx");
    timeout(TEST_TIMEOUT, async {
        let before =
            start_vostok_producer(&broker.namesrv_addr, &group, "before", |_: &MessageExt| {
                LocalTransactionState::Unknow
            })
            .await;
        use LocalTransactionState::*;
        vostok_send(&before, &topic, "commit-1", CommitMessage).await;
        vostok_send(&before, &topic, "rollback-1", RollbackMessage).await;
        vostok_send(&before, &topic, "later-commit-1", Unknow).await;
        vostok_send(&before, &topic, "later-rollback-1", Unknow).await;
        wait_visible(&broker.broker_addr, &topic, &["commit-1"]).await;
        before.shutdown().await;
        block_in_place(|| broker.restart());

        let decide = Arc::new(AtomicBool::new(false));
        let checks = Arc::new(AtomicUsize::new(0));
        let checker = {
            let decide = decide.clone();
            let inner = body_checker(checks.clone());
            move |half: &MessageExt| {
                if decide.load(Ordering::SeqCst) {
                    inner(half)
                } else {
                    LocalTransactionState::Unknow
                }
            }
        };
        let after = start_vostok_producer(&broker.namesrv_addr, &group, "after", checker).await;
        register(&after, &topic).await;
        assert_eq!(
            block_in_place(|| visible_bodies(&broker.broker_addr, &topic)),
            ["commit-1"],
            "nothing committed again, nothing decided yet"
        );
        decide.store(true, Ordering::SeqCst);
        wait_visible(&broker.broker_addr, &topic, &["commit-1", "later-commit-1"]).await;
        assert_settled(&broker.broker_addr, &topic, &["commit-1", "later-commit-1"]).await;
        after.shutdown().await;
    })
    .await
    .expect("test finishes in time");
}
